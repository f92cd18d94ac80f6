/*
 * cmd/watcher/session_store: an IMAP session's Redis calls and when a
 * dropped session is freed (see session_store.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/watcher/callgate.h"
#include "cmd/watcher/event.h"
#include "cmd/watcher/provider.h"
#include "cmd/watcher/watcher.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/incarnation.h"
#include "core/lease.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/pool.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "core/schema.h"
#include "core/stat.h"
#include "core/time.h"
#include "proto/imap_parse.h"
#include "proto/mailboxes.h"

/* ---- Lifetime ---- */

/* Releases the block of pid, code and tag (none before the first LOAD). */
static void release_ids(struct imap_session *s)
{
    struct user_record *u = &s->user;
    if (u->pid == NULL)
        return;
    size_t n = strlen(u->pid) + strlen(u->code) + strlen(u->tag) + 3;
    pool_release(s->w->pool, u->pid, n);
    u->pid = u->code = u->tag = NULL;
}

/* Keeps pid, code and tag in one block of the watcher's pool, owned
 * through pid: an idle session's strings cost one small object, not three
 * malloc chunks among a login storm's garbage. */
static void set_ids(struct imap_session *s, const char *pid, const char *code, const char *tag)
{
    size_t np = strlen(pid) + 1, nc = strlen(code) + 1, nt = strlen(tag) + 1;
    char *b = pool_alloc(s->w->pool, np + nc + nt);
    memcpy(b, pid, np);
    memcpy(b + np, code, nc);
    memcpy(b + np + nc, tag, nt);
    release_ids(s);
    struct user_record *u = &s->user;
    u->pid = b;
    u->code = b + np;
    u->tag = b + np + nc;
}

void session_store_free(struct imap_session *s)
{
    rreq_owner_cancel(&s->redis);
    session_free_msgs(s);
    session_wipe_str(&s->user.username);
    session_wipe_str(&s->user.secret);
    session_wipe_str(&s->user.access);
    session_token_detach(s);
    session_wipe_buf(&s->cont);
    buf_free(&s->conn.out);
    imap_parser_free(s->parser);
    session_boxes_free(s);
    release_ids(s);
    pool_release(s->w->pool, s, sizeof *s + strlen(s->uid) + 1);
}

void session_store_maybe_free(struct imap_session *s)
{
    if (s->state == S_DEAD && s->busy == 0)
        session_store_free(s);
}

void session_store_bury(struct imap_session *s)
{
    /* Answers still owed are dropped by core/rreq: only a callback of ours
     * running now (busy) holds s, and frees it on its way out. */
    rreq_owner_cancel(&s->redis);
    session_store_maybe_free(s);
}

/* ---- Calls ---- */

/* Every Redis call of a session is a core/rreq of s->redis, so an answer
 * for an older connection (the owner moved on in session_close()), for a
 * dropped session (it let go in session_store_bury()) or at shutdown never
 * reaches the session. */
struct sreq {
    struct rreq req; /* first: released by rreq_xfree() */
    struct imap_session *s;
    int want; /* the state the answer is for, or -1: any */
    union {
        session_loaded_cb *loaded;
        session_baseline_cb *baseline;
        session_recorded_cb *recorded;
        session_cursor_cb *cursor;
    } done;
};

static struct sreq *sreq_new(struct imap_session *s, int want, rreq_cb *cb)
{
    struct sreq *r = xcalloc(1, sizeof *r);
    r->s = s;
    r->want = want;
    rreq_start(&r->req, &s->redis, cb, rreq_xfree);
    return r;
}

/* Undoes sreq_new() when the call could not be submitted. */
static void sreq_cancel(struct sreq *r)
{
    rreq_abort(&r->req);
}

/* Opens a Redis callback: returns the session when the answer is for its
 * current state (then call sreq_end() after handling), else NULL. The
 * request, r in *q, stays valid until the callback returns. */
static struct imap_session *sreq_begin(struct rreq *req, struct sreq **q)
{
    struct sreq *r = RREQ_CONTAINER(req, struct sreq, req);
    struct imap_session *s = r->s;
    *q = r;
    if (r->want >= 0 && s->state != (enum sess_state)r->want)
        return NULL;
    s->busy++;
    return s;
}

static void sreq_end(struct imap_session *s)
{
    s->busy--;
    session_store_maybe_free(s);
}

static const char *reply_error(const redisReply *reply, int err)
{
    return err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "unexpected reply");
}

static void lease_keys(const struct imap_session *s, char lease[SCHEMA_KEY_MAX], char *alive,
                       size_t alen)
{
    schema_key_lease(lease, s->k, s->uid);
    incarnation_alive_key(s->w->inc, s->k, alive, alen);
}

/* A script said the lease is another incarnation's: count it and report. */
static void lost_lease(struct imap_session *s, const char *why)
{
    metric_inc(s->w->m.stale);
    s->w->on_lost_lease(s->w, s->uid, why);
}

int session_store_lease_usable(const struct imap_session *s)
{
    return incarnation_is_live(s->w->inc) && incarnation_generation(s->w->inc) == s->gen;
}

/* ---- LOAD ---- */

static char *reply_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}

static void on_user(struct rreq *req, struct redisReply *reply, int err)
{
    struct sreq *q;
    struct imap_session *s = sreq_begin(req, &q);
    if (s == NULL)
        return;
    session_loaded_cb *done = q->done.loaded;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 15) {
        char why[256];
        snprintf(why, sizeof why, "cannot read the user: %s",
                 err < 0 ? err_str(err) : "unexpected reply");
        done(s, F_REDIS, why);
        sreq_end(s);
        return;
    }
    const char *pid = reply_str(reply->element[0]), *code = reply_str(reply->element[1]),
               *tag = reply_str(reply->element[2]), *username = reply_str(reply->element[3]),
               *email = reply_str(reply->element[4]), *secret = reply_str(reply->element[5]),
               *archived = reply_str(reply->element[6]), *access = reply_str(reply->element[7]),
               *exp = reply_str(reply->element[8]), *state = reply_str(reply->element[9]),
               *connected = reply_str(reply->element[10]), *epoch = reply_str(reply->element[11]),
               *boxes = reply_str(reply->element[12]), *conn_boxes = reply_str(reply->element[13]),
               *missing = reply_str(reply->element[14]);
    const char *why = NULL;
    if (pid == NULL || code == NULL || code[0] == '\0' || strlen(code) > PROVIDER_CODE_MAX)
        why = "user record incomplete (pid, code)";
    else if (archived != NULL && strcmp(archived, "1") == 0)
        why = "user is archived";
    if (why == NULL && (username == NULL || username[0] == '\0'))
        username = email;
    if (why == NULL && (username == NULL || username[0] == '\0' || secret == NULL))
        why = "user record has no login or secret";
    if (why != NULL) {
        done(s, F_CONFIG, why);
        sreq_end(s);
        return;
    }
    /* Until it connects again (connected_at set anew by the api). */
    if (state != NULL && strcmp(state, "reauth_required") == 0 &&
        (connected == NULL || connected[0] == '\0')) {
        done(s, F_REAUTH, "the OAuth2 grant was refused: the user must connect again");
        sreq_end(s);
        return;
    }
    char bwhy[200];
    if (session_boxes_load(s, boxes != NULL ? boxes : conn_boxes, missing, bwhy, sizeof bwhy) < 0) {
        char why2[256];
        snprintf(why2, sizeof why2, "the user's mailboxes cannot be read: %s", bwhy);
        done(s, F_CONFIG, why2);
        sreq_end(s);
        return;
    }
    char aad[SCHEMA_KEY_MAX];
    schema_aad_user_secret(aad, s->uid);
    char *plain = NULL;
    size_t plen = 0;
    if (crypto_decrypt(s->w->keys, secret, aad, &plain, &plen) < 0 || memchr(plain, 0, plen)) {
        if (plain != NULL) {
            crypto_wipe(plain, plen);
            xfree(plain);
        }
        done(s, F_CONFIG, "cannot decrypt the user's secret (wrong SUPERIMAP_ENCRYPTION_KEY?)");
        sreq_end(s);
        return;
    }
    struct user_record *u = &s->user;
    set_ids(s, pid, code, tag != NULL ? tag : "");
    session_wipe_str(&u->username);
    session_wipe_str(&u->secret);
    u->username = xstrdup(username);
    u->secret = plain;
    session_wipe_str(&u->access);
    u->access_exp_ms = 0;
    if (access != NULL && access[0] != '\0') {
        /* Unreadable, or holding a NUL: as if absent (a refresh replaces it). */
        size_t alen = 0;
        schema_aad_user_access_token(aad, s->uid);
        if (crypto_decrypt(s->w->keys, access, aad, &u->access, &alen) < 0 ||
            memchr(u->access, 0, alen) != NULL)
            session_wipe_str(&u->access);
        u->access_exp_ms = exp != NULL ? strtoll(exp, NULL, 10) : 0;
    }
    s->cursor_epoch = epoch != NULL ? (uint32_t)strtoul(epoch, NULL, 10) : 0;
    done(s, F_CONFIG, NULL);
    sreq_end(s);
}

int session_store_load_user(struct imap_session *s, session_loaded_cb *done)
{
    struct sreq *r = sreq_new(s, S_LOAD, on_user);
    r->done.loaded = done;
    char user[SCHEMA_KEY_MAX];
    schema_key_user(user, s->k, s->uid);
    const char *argv[] = {"HMGET",
                          user,
                          "pid",
                          "code",
                          "tag",
                          "username",
                          "email",
                          "secret",
                          "archived",
                          "oauth2_access_token",
                          "oauth2_expires_at",
                          "state",
                          "connected_at",
                          "cursor_epoch",
                          "mailboxes",
                          "conn_mailboxes",
                          "mailboxes_missing"};
    int rc = callgate_command_argv(s->w->calls, rreq_on_reply, &r->req,
                                   (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    if (rc < 0)
        sreq_cancel(r);
    return rc;
}

/* ---- publish ---- */

static void on_user_state(struct rreq *req, struct redisReply *reply, int err)
{
    struct sreq *q;
    struct imap_session *s = sreq_begin(req, &q);
    if (s == NULL)
        return;
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        log_warn("user_state refused: the lease is not ours acct=%s", s->uid);
        lost_lease(s, "user_state found another lease holder");
    }
    sreq_end(s);
}

void session_store_publish(struct imap_session *s, enum pub_state st, const char *error, int login)
{
    if (st == s->pub && error == NULL && !login)
        return;
    if (!session_store_lease_usable(s))
        return;
    session_set_pub(s, st);
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], user[SCHEMA_KEY_MAX], now[24];
    lease_keys(s, lease, alive, sizeof alive);
    schema_key_user(user, s->k, s->uid);
    snprintf(now, sizeof now, "%lld", (long long)time_now_ms());
    const char *argv[10] = {
        lease, alive, user, incarnation_token(s->w->inc), "state", policy_pub_name(st)};
    int argc = 6;
    if (error != NULL) {
        argv[argc++] = "last_error";
        argv[argc++] = error;
    }
    if (login) {
        argv[argc++] = "last_login_at";
        argv[argc++] = now;
    }
    struct sreq *r = sreq_new(s, -1, on_user_state);
    if (callgate_script(s->w->calls, rreq_on_reply, &r->req, "user_state", 3, argc, argv, NULL) < 0)
        sreq_cancel(r);
}

int session_store_publish_missing(struct imap_session *s, const char *json)
{
    if (!session_store_lease_usable(s))
        return -SIMAP_ESTATE;
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], user[SCHEMA_KEY_MAX];
    lease_keys(s, lease, alive, sizeof alive);
    schema_key_user(user, s->k, s->uid);
    const char *argv[] = {lease, alive, user, incarnation_token(s->w->inc), "mailboxes_missing",
                          json};
    struct sreq *r = sreq_new(s, -1, on_user_state);
    int rc = callgate_script(s->w->calls, rreq_on_reply, &r->req, "user_state", 3, 6, argv, NULL);
    if (rc < 0)
        sreq_cancel(r);
    return rc;
}

/* ---- BASELINE ---- */

static void on_baseline(struct rreq *req, struct redisReply *reply, int err)
{
    struct sreq *q;
    struct imap_session *s = sreq_begin(req, &q);
    if (s == NULL)
        return;
    session_baseline_cb *done = q->done.baseline;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        char why[256];
        snprintf(why, sizeof why, "cursor_baseline: %s", reply_error(reply, err));
        done(s, why);
        sreq_end(s);
        return;
    }
    long long status = reply->element[0]->integer;
    if (status == -2) {
        done(s, "the user was archived or restored since it was loaded: loading it again");
        sreq_end(s);
        return;
    }
    if (status < 0) {
        lost_lease(s, "cursor_baseline found another lease holder");
        sreq_end(s);
        return;
    }
    const redisReply *last = reply->element[2];
    char *end = NULL;
    unsigned long long v = last->type == REDIS_REPLY_STRING ? strtoull(last->str, &end, 10) : 0;
    if (end == NULL || *end != '\0' || v > UINT32_MAX) {
        done(s, "cursor_baseline returned a malformed cursor");
        sreq_end(s);
        return;
    }
    s->mb.last_uid = s->mb.base_uid = (uint32_t)v;
    if (status == 1)
        log_info("new mailbox baseline acct=%s mailbox=\"%s\" uidvalidity=%" PRIu32
                 " last_uid=%" PRIu32,
                 s->uid, session_box_name(s), s->mb.uidvalidity, s->mb.last_uid);
    done(s, NULL);
    sreq_end(s);
}

/* cursor_baseline's arguments for uidvalidity and last, in the epoch of the
 * user the session loaded. */
static int baseline_call(struct imap_session *s, uint32_t uidvalidity, uint32_t last, rconn_cb *cb,
                         void *privdata)
{
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], cur[SCHEMA_KEY_MAX], user[SCHEMA_KEY_MAX];
    char uv[16], l[16], epoch[16];
    lease_keys(s, lease, alive, sizeof alive);
    schema_key_cur(cur, s->k, s->uid);
    schema_key_user(user, s->k, s->uid);
    snprintf(uv, sizeof uv, "%" PRIu32, uidvalidity);
    snprintf(l, sizeof l, "%" PRIu32, last);
    snprintf(epoch, sizeof epoch, "%" PRIu32, s->cursor_epoch);
    const char *spec = session_box_spec(s);
    const char *argv[] = {lease, alive,           cur, user, incarnation_token(s->w->inc), uv, l,
                          epoch, spec ? spec : ""};
    return callgate_script(s->w->calls, cb, privdata, "cursor_baseline", 4, 9, argv, NULL);
}

int session_store_baseline(struct imap_session *s, session_baseline_cb *done)
{
    struct sreq *r = sreq_new(s, S_BASELINE, on_baseline);
    r->done.baseline = done;
    int rc = baseline_call(s, s->mb.uidvalidity, s->mb.uidnext > 0 ? s->mb.uidnext - 1 : 0,
                           rreq_on_reply, &r->req);
    if (rc < 0)
        sreq_cancel(r);
    return rc;
}

void session_store_put_baseline(struct imap_session *s)
{
    baseline_call(s, s->mb.uidvalidity, s->mb.base_uid, NULL, NULL);
}

/* ---- RECORD ---- */

/* A tracer of this user arrived: counted, and its latency (send to
 * detection, both by Redis's clock) observed when its sender recorded
 * sent_at. */
static void tracer_detected(struct imap_session *s, const struct redisReply *reply)
{
    const struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    const redisReply *lat = reply->elements > 2 ? reply->element[2] : NULL;
    long long ms = lat != NULL && lat->type == REDIS_REPLY_STRING && lat->len > 0
                       ? strtoll(lat->str, NULL, 10)
                       : -1;
    struct metrics *reg = node_metrics(s->w->node);
    char labels[PROVIDER_CODE_MAX + 32];
    snprintf(labels, sizeof labels, "provider=\"%s\"", s->user.code);
    metric_inc(metrics_counter(reg, "superimap_tracer_detected_total",
                               "Tracer mails of tracer users detected (not announced)", labels));
    snprintf(labels, sizeof labels, "provider=\"%s\",stage=\"detected\"", s->user.code);
    if (ms >= 0)
        metric_observe(metrics_histogram(reg, "superimap_tracer_latency_seconds",
                                         "Tracer mails by stage: submitted (SMTP, dispatcher), "
                                         "detected (sent to detected, watcher)",
                                         labels, metrics_tracer_bounds, metrics_tracer_nbounds),
                       (double)ms / 1000.0);
    log_info("tracer detected acct=%s provider=%s uid=%" PRIu32 " latency_ms=%lld", s->uid,
             s->user.code, m->uid, ms);
}

/* The chart counter of new mail (core/stat.h), for the minute it was
 * recorded: one command behind record_mail's answer, sent without waiting
 * for its own. A separate command, not part of record_mail, whose keys stay
 * in the user's shard slot (core/schema.h). */
static void count_mail(struct imap_session *s)
{
    struct stat_call c;
    stat_call_init(&c, time_now_ms());
    stat_call_add(&c, STAT_MAIL, 1);
    if (callgate_script(s->w->calls, NULL, NULL, "stat_add", 1, c.argc, c.argv, NULL) < 0)
        log_debugc("imap", "new mail not counted for the charts acct=%s", s->uid);
}

static void on_recorded(struct rreq *req, struct redisReply *reply, int err)
{
    struct sreq *q;
    struct imap_session *s = sreq_begin(req, &q);
    if (s == NULL)
        return;
    session_recorded_cb *done = q->done.recorded;
    struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    char why[256];
    switch (event_result_of(reply, err)) {
    case EVENT_RECORDED:
        metric_inc(s->w->m.recorded);
        count_mail(s);
        if (s->exists_mono != 0)
            metric_observe(s->w->m.record_latency,
                           (double)(time_mono_ms() - s->exists_mono) / 1000.0);
        log_debugc("imap",
                   "mail recorded acct=%s uidvalidity=%" PRIu32 " uid=%" PRIu32 " id=%s.%" PRIu32
                   ".%" PRIu32,
                   s->uid, s->mb.uidvalidity, m->uid, s->uid, s->mb.uidvalidity, m->uid);
        done(s, STORE_RECORDED, NULL);
        break;
    case EVENT_TRACER:
        tracer_detected(s, reply);
        done(s, STORE_TRACER, NULL);
        break;
    case EVENT_OLD:
        metric_inc(s->w->m.duplicates);
        done(s, STORE_RECORDED, NULL);
        break;
    case EVENT_DUPLICATE:
        log_debugc("imap",
                   "gmail message announced under another label already acct=%s uid=%" PRIu32,
                   s->uid, m->uid);
        done(s, STORE_RECORDED, NULL);
        break;
    case EVENT_UNWATCHED:
        /* Archived or disconnected before users.c has seen it (it drops the
         * session within a second): the message is not announced. */
        log_info("mail not announced: the user is no longer watched acct=%s uid=%" PRIu32, s->uid,
                 m->uid);
        done(s, STORE_SKIPPED, NULL);
        break;
    case EVENT_STALE:
        log_warn("record_mail refused: stale lease acct=%s uid=%" PRIu32, s->uid, m->uid);
        lost_lease(s, "record_mail found the lease gone");
        break;
    case EVENT_BEHIND:
        done(s, STORE_BEHIND, NULL);
        break;
    case EVENT_UIDVALIDITY:
    case EVENT_NOCURSOR:
        done(s, STORE_FAILED, "cursor changed under us; examining again");
        break;
    case EVENT_FAILED:
        snprintf(why, sizeof why, "record_mail: %s", reply_error(reply, err));
        done(s, STORE_FAILED, why);
        break;
    }
    sreq_end(s);
}

int session_store_record(struct imap_session *s, struct pending_msg *m, const struct imap_str *body,
                         int too_large, const char *sha1, session_recorded_cb *done)
{
    struct mail_event ev = {
        .uid = s->uid,
        .k = s->k,
        .pid = s->user.pid,
        .code = s->user.code,
        .tag = s->user.tag,
        .uidvalidity = s->mb.uidvalidity,
        .msg_uid = m->uid,
        .last_uid = s->mb.last_uid,
        .size = m->size,
        .env = (m->env != NULL && (m->env->fetch.has & IMAP_FETCH_ENVELOPE))
                   ? &m->env->fetch.envelope
                   : NULL,
        .raw = body != NULL ? body->data : NULL,
        .raw_len = body != NULL ? body->len : 0,
        .too_large = too_large,
        .sha1 = sha1,
        .mailbox = session_box_spec(s),
        .special_use = session_box_special(s),
        .gm = s->cap_gmail && m->env != NULL ? &m->env->fetch : NULL,
        .gm_dedupe = s->boxes != NULL,
    };
    if (ev.mailbox != NULL)
        ev.mailbox_name = session_box_name(s);
    if (body != NULL && ev.size == 0)
        ev.size = body->len;
    if (too_large)
        metric_inc(s->w->m.too_large);
    char alive[SCHEMA_KEY_MAX];
    incarnation_alive_key(s->w->inc, s->k, alive, sizeof alive);
    struct sreq *r = sreq_new(s, S_RECORD, on_recorded);
    r->done.recorded = done;
    int rc = event_record(s->w->calls, s->w->keys, &ev, incarnation_token(s->w->inc), alive,
                          rreq_on_reply, &r->req);
    imap_response_free(s->mb.body); /* the payload holds its own copy now */
    s->mb.body = NULL;
    if (rc < 0)
        sreq_cancel(r);
    return rc;
}

/* ---- After a Redis reconnect ---- */

static void on_recheck_lease(struct rreq *req, struct redisReply *reply, int err)
{
    struct sreq *q;
    struct imap_session *s = sreq_begin(req, &q);
    if (s == NULL)
        return;
    enum lease_answer ans = lease_answer_of(reply, err); /* failed: checked again next time */
    if ((ans == LEASE_BUSY || ans == LEASE_FENCED) && session_store_lease_usable(s)) {
        static const char held[] = "lease_acquire after a Redis reconnect found another holder";
        static const char gone[] = "lease_acquire after a Redis reconnect found our alive key gone";
        lost_lease(s, ans == LEASE_BUSY ? held : gone);
    }
    sreq_end(s);
}

static void on_recheck_cursor(struct rreq *req, struct redisReply *reply, int err)
{
    struct sreq *q;
    struct imap_session *s = sreq_begin(req, &q);
    if (s == NULL)
        return;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        sreq_end(s); /* failed: the next reconnect checks again */
        return;
    }
    const redisReply *uv = reply->element[0], *last = reply->element[1];
    int missing = uv->type != REDIS_REPLY_STRING || last->type != REDIS_REPLY_STRING;
    unsigned long long ruv = missing ? 0 : strtoull(uv->str, NULL, 10);
    unsigned long long rlast = missing ? 0 : strtoull(last->str, NULL, 10);
    q->done.cursor(s, missing, ruv, rlast);
    sreq_end(s);
}

void session_store_recheck(struct imap_session *s, session_cursor_cb *done)
{
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], cur[SCHEMA_KEY_MAX];
    lease_keys(s, lease, alive, sizeof alive);
    schema_key_cur(cur, s->k, s->uid);
    const char *acquire[] = {lease, alive, incarnation_token(s->w->inc)};
    struct sreq *r = sreq_new(s, -1, on_recheck_lease);
    if (callgate_script(s->w->calls, rreq_on_reply, &r->req, "lease_acquire", 2, 3, acquire, NULL) <
        0)
        sreq_cancel(r);
    const char *spec = session_box_spec(s);
    char fuv[16 + MAILBOX_NAME_MAX], flast[16 + MAILBOX_NAME_MAX];
    snprintf(fuv, sizeof fuv, "uidvalidity%s%s", spec ? ":" : "", spec ? spec : "");
    snprintf(flast, sizeof flast, "last_uid%s%s", spec ? ":" : "", spec ? spec : "");
    const char *hmget[] = {"HMGET", cur, fuv, flast};
    r = sreq_new(s, -1, on_recheck_cursor);
    r->done.cursor = done;
    if (callgate_command_argv(s->w->calls, rreq_on_reply, &r->req, 4, hmget, NULL) < 0)
        sreq_cancel(r);
}
