/*
 * cmd/dispatcher/queue: typed Redis calls of the dispatcher (see queue.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "core/schema.h"
#include "core/stat.h"
#include "core/time.h"

enum op_kind { OP_CLAIM, OP_INT, OP_TRACER, OP_PAIR, OP_STATS, OP_REPLY, OP_NONE };

/* One call in flight, tagged for its queue (core/rreq): queue_free() lets go
 * of it. */
struct op {
    struct rreq req; /* first: released by rreq_xfree() */
    enum op_kind kind;
    union {
        queue_claim_cb *claim;
        queue_int_cb *i;
        queue_pair_cb *pair;
        queue_stats_cb *stats;
        queue_reply_cb *reply;
    } cb;
    void *data;
};

struct queue {
    struct rconn *rc;
    struct rreq_owner ops; /* the calls in flight; they see rconn's shutdown */
};

void queue_shard_init(struct queue_shard *s, int k)
{
    s->k = k;
    schema_key_shard_prefix(s->prefix, (uint32_t)k);
    schema_key_ready_partners(s->ready_partners, (uint32_t)k);
    schema_key_inflight(s->inflight, (uint32_t)k);
    schema_key_retry(s->retry, (uint32_t)k);
    schema_key_dead(s->dead, (uint32_t)k);
}

struct queue *queue_new(struct rconn *rc)
{
    struct queue *q = xcalloc(1, sizeof *q);
    q->rc = rc;
    rreq_owner_init(&q->ops, RREQ_SEE_SHUTDOWN);
    return q;
}

void queue_free(struct queue *q)
{
    if (q == NULL)
        return;
    rreq_owner_cancel(&q->ops); /* rconn frees them on their replies */
    xfree(q);
}

int queue_pending(const struct queue *q)
{
    return rreq_owner_pending(&q->ops);
}

/* ---- Tracking ---- */

static struct op *op_new(enum op_kind kind, void *data)
{
    struct op *o = xcalloc(1, sizeof *o);
    o->kind = kind;
    o->data = data;
    return o;
}

static long long as_int(const redisReply *r, int *ok)
{
    if (r == NULL) {
        *ok = 0;
        return 0;
    }
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING) {
        char *end;
        long long v = strtoll(r->str, &end, 10);
        if (end != r->str && *end == '\0')
            return v;
    }
    *ok = 0;
    return 0;
}

static const char *as_str(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "";
}

static void deliver_claim(struct op *o, redisReply *reply, int err)
{
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        o->cb.claim(NULL, err < 0 ? err : -SIMAP_EREPLY, o->data);
        return;
    }
    int ok = 1;
    struct queue_claimed c = {.more = as_int(reply->element[0], &ok) != 0};
    redisReply *sk = reply->element[1];
    const char **skipped = xcalloc(sk->elements + 1, sizeof *skipped);
    for (size_t i = 0; i < sk->elements; i++)
        skipped[c.nskipped++] = as_str(sk->element[i]);
    size_t n = reply->elements - 2;
    struct queue_event *ev = xcalloc(n + 1, sizeof *ev);
    for (size_t i = 0; i < n; i++) {
        redisReply *e = reply->element[i + 2];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 11) {
            ok = 0;
            break;
        }
        struct queue_event *x = &ev[c.nevents++];
        x->id = as_str(e->element[0]);
        x->pid = as_str(e->element[1]);
        x->type = as_str(e->element[2]);
        x->uid = as_str(e->element[3]);
        x->code = as_str(e->element[4]);
        x->tag = as_str(e->element[5]);
        x->sha1 = as_str(e->element[6]);
        x->payload = as_str(e->element[7]);
        int aok = 1;
        x->attempt = (int)as_int(e->element[8], &aok);
        int cok = 1;
        x->created_at = as_int(e->element[9], &cok);
        if (!cok)
            x->created_at = 0;
        int lok = 1;
        x->payload_len = as_int(e->element[10], &lok);
        if (!lok)
            x->payload_len = (int64_t)strlen(x->payload);
        if (!aok || x->id[0] == '\0' || x->pid[0] == '\0')
            ok = 0;
    }
    c.skipped = skipped;
    c.events = ev;
    /* A malformed reply still hands over what parsed: those events are
     * leased, and dropping them would only delay them to their lease end. */
    o->cb.claim(&c, ok ? 0 : -SIMAP_EREPLY, o->data);
    xfree(skipped);
    xfree(ev);
}

/* A reply for a queue that still holds on (core/rreq dropped the others). */
static void on_reply(struct rreq *req, redisReply *reply, int err)
{
    struct op *o = RREQ_CONTAINER(req, struct op, req);
    int ok = 1;
    switch (o->kind) {
    case OP_CLAIM:
        deliver_claim(o, reply, err);
        break;
    case OP_INT: {
        long long v = err < 0 ? 0 : as_int(reply, &ok);
        o->cb.i(v, err < 0 ? err : (ok ? 0 : -SIMAP_EREPLY), o->data);
        break;
    }
    case OP_TRACER: /* HGET: "1" is a tracer; nil, "" or "0" are not */
        o->cb.i(err == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING &&
                    strcmp(reply->str, "1") == 0,
                err, o->data);
        break;
    case OP_PAIR: {
        long long a = 0, b = -1;
        if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
            a = as_int(reply->element[0], &ok);
            b = as_int(reply->element[1], &ok);
        } else {
            ok = 0;
        }
        o->cb.pair(a, b, err < 0 ? err : (ok ? 0 : -SIMAP_EREPLY), o->data);
        break;
    }
    case OP_STATS: {
        struct queue_stats st = {0};
        if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 5) {
            st.ready = as_int(reply->element[0], &ok);
            st.inflight = as_int(reply->element[1], &ok);
            st.retry = as_int(reply->element[2], &ok);
            st.dead = as_int(reply->element[3], &ok);
            st.oldest_ready_ms = as_int(reply->element[4], &ok);
        } else {
            ok = 0;
        }
        o->cb.stats(ok ? &st : NULL, err < 0 ? err : (ok ? 0 : -SIMAP_EREPLY), o->data);
        break;
    }
    case OP_REPLY:
        o->cb.reply(reply, err, o->data);
        break;
    case OP_NONE:
        break;
    }
}

/* Sends a script call tracked by o (rconn_script_acked() when is_acked);
 * frees o when it cannot start. */
static int send_script_as(struct queue *q, struct op *o, int is_acked, const char *name, int nkeys,
                          int argc, const char **argv, const size_t *argvlen)
{
    rreq_start(&o->req, &q->ops, on_reply, rreq_xfree);
    int rc =
        is_acked
            ? rconn_script_acked(q->rc, rreq_on_reply, &o->req, name, nkeys, argc, argv, argvlen)
            : rconn_script(q->rc, rreq_on_reply, &o->req, name, nkeys, argc, argv, argvlen);
    if (rc < 0)
        rreq_abort(&o->req);
    return rc;
}

static int send_script(struct queue *q, struct op *o, const char *name, int nkeys, int argc,
                       const char **argv, const size_t *argvlen)
{
    return send_script_as(q, o, 0, name, nkeys, argc, argv, argvlen);
}

static int send_argv(struct queue *q, struct op *o, int argc, const char **argv,
                     const size_t *argvlen)
{
    rreq_start(&o->req, &q->ops, on_reply, rreq_xfree);
    int rc = rconn_command_argv(q->rc, rreq_on_reply, &o->req, argc, argv, argvlen);
    if (rc < 0)
        rreq_abort(&o->req);
    return rc;
}

static int evt_key(char out[SCHEMA_KEY_MAX], const struct queue_shard *s, const char *eid)
{
    return schema_key_event(out, (uint32_t)s->k, eid) < 0 ? -SIMAP_EINVAL : 0;
}

/* ---- Claim ---- */

int queue_claim(struct queue *q, const struct queue_shard *s, int64_t lease_ms, int max,
                int default_free, int64_t inline_max, size_t npairs, const char *const *pids,
                const int *free, queue_claim_cb *cb, void *data)
{
    char lease[24], maxs[16], def[16], inl[24];
    snprintf(inl, sizeof inl, "%lld", (long long)inline_max);
    snprintf(lease, sizeof lease, "%lld", (long long)lease_ms);
    snprintf(maxs, sizeof maxs, "%d", max);
    snprintf(def, sizeof def, "%d", default_free);
    size_t argc = 8 + 2 * npairs;
    const char **argv = xcalloc(argc, sizeof *argv);
    char(*frees)[12] = xcalloc(npairs + 1, sizeof *frees);
    argv[0] = s->ready_partners;
    argv[1] = s->inflight;
    argv[2] = s->prefix;
    argv[3] = "";
    argv[4] = lease;
    argv[5] = maxs;
    argv[6] = def;
    argv[7] = inl;
    for (size_t i = 0; i < npairs; i++) {
        snprintf(frees[i], sizeof frees[i], "%d", free[i] < 0 ? 0 : free[i]);
        argv[8 + 2 * i] = pids[i];
        argv[9 + 2 * i] = frees[i];
    }
    struct op *o = op_new(OP_CLAIM, data);
    o->cb.claim = cb;
    int rc = send_script(q, o, "event_claim", 2, (int)argc, argv, NULL);
    xfree(frees);
    xfree(argv);
    return rc;
}

int queue_payload(struct queue *q, const struct queue_shard *s, const char *eid, queue_reply_cb *cb,
                  void *data)
{
    char key[SCHEMA_KEY_MAX];
    if (evt_key(key, s, eid) < 0)
        return -SIMAP_EINVAL;
    const char *argv[] = {"HGET", key, "payload"};
    struct op *o = op_new(OP_REPLY, data);
    o->cb.reply = cb;
    return send_argv(q, o, 3, argv, NULL);
}

/* ---- Results ---- */

int queue_ack(struct queue *q, const struct queue_shard *s, const char *eid, int attempt,
              int64_t keep_ms, long status, queue_int_cb *cb, void *data)
{
    char key[SCHEMA_KEY_MAX], att[16], keep[24], st[16], now[24];
    if (evt_key(key, s, eid) < 0)
        return -SIMAP_EINVAL;
    snprintf(att, sizeof att, "%d", attempt);
    snprintf(keep, sizeof keep, "%lld", (long long)keep_ms);
    snprintf(st, sizeof st, "%ld", status);
    snprintf(now, sizeof now, "%lld", (long long)time_now_ms());
    const char *argv[] = {key, s->inflight, eid, att, keep, st, now};
    struct op *o = op_new(OP_INT, data);
    o->cb.i = cb;
    return send_script_as(q, o, 1, "event_ack", 2, 7, argv, NULL);
}

int queue_retry(struct queue *q, const struct queue_shard *s, const char *eid, int attempt,
                int64_t delay_ms, long status, const char *error, int counted, queue_int_cb *cb,
                void *data)
{
    char key[SCHEMA_KEY_MAX], att[16], delay[24], st[16];
    if (evt_key(key, s, eid) < 0)
        return -SIMAP_EINVAL;
    snprintf(att, sizeof att, "%d", attempt);
    snprintf(delay, sizeof delay, "%lld", (long long)(delay_ms < 0 ? 0 : delay_ms));
    snprintf(st, sizeof st, "%ld", status);
    const char *argv[] = {key,   s->inflight,         s->retry, eid, att, delay, st,
                          error, counted ? "1" : "0", ""};
    struct op *o = op_new(OP_INT, data);
    o->cb.i = cb;
    return send_script(q, o, "event_retry", 3, 10, argv, NULL);
}

int queue_dead(struct queue *q, const struct queue_shard *s, const char *eid, int attempt,
               long status, const char *error, int cap, int64_t keep_ms, queue_int_cb *cb,
               void *data)
{
    char key[SCHEMA_KEY_MAX], att[16], st[16], caps[16], keep[24];
    if (evt_key(key, s, eid) < 0)
        return -SIMAP_EINVAL;
    snprintf(att, sizeof att, "%d", attempt);
    snprintf(st, sizeof st, "%ld", status);
    snprintf(caps, sizeof caps, "%d", cap);
    snprintf(keep, sizeof keep, "%lld", (long long)keep_ms);
    const char *argv[] = {key,   s->inflight, s->dead, eid,       att, st,
                          error, caps,        keep,    s->prefix, ""};
    struct op *o = op_new(OP_INT, data);
    o->cb.i = cb;
    return send_script(q, o, "event_dead", 3, 11, argv, NULL);
}

/* ---- Maintenance ---- */

int queue_requeue(struct queue *q, const struct queue_shard *s, int batch, queue_pair_cb *cb,
                  void *data)
{
    char b[16];
    snprintf(b, sizeof b, "%d", batch);
    const char *argv[] = {s->inflight, s->ready_partners, s->prefix, "", b};
    struct op *o = op_new(OP_PAIR, data);
    o->cb.pair = cb;
    return send_script(q, o, "requeue_expired", 2, 5, argv, NULL);
}

int queue_promote(struct queue *q, const struct queue_shard *s, int batch, int64_t dead_keep_ms,
                  queue_pair_cb *cb, void *data)
{
    char b[16], keep[24];
    snprintf(b, sizeof b, "%d", batch);
    snprintf(keep, sizeof keep, "%lld", (long long)dead_keep_ms);
    const char *argv[] = {s->retry, s->ready_partners, s->dead, s->prefix, "", b, keep};
    struct op *o = op_new(OP_PAIR, data);
    o->cb.pair = cb;
    return send_script(q, o, "promote_due", 3, 7, argv, NULL);
}

int queue_stats(struct queue *q, const struct queue_shard *s, queue_stats_cb *cb, void *data)
{
    const char *argv[] = {s->ready_partners, s->inflight, s->retry, s->dead, s->prefix, ""};
    struct op *o = op_new(OP_STATS, data);
    o->cb.stats = cb;
    return send_script(q, o, "event_stats", 4, 6, argv, NULL);
}

/* ---- Partners, users, log ---- */

int queue_partner(struct queue *q, const char *pid, queue_reply_cb *cb, void *data)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_partner(key, pid) < 0)
        return -SIMAP_EINVAL;
    const char *argv[] = {"HGETALL", key};
    struct op *o = op_new(OP_REPLY, data);
    o->cb.reply = cb;
    return send_argv(q, o, 2, argv, NULL);
}

int queue_user_is_tracer(struct queue *q, int k, const char *uid, queue_int_cb *cb, void *data)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_user(key, (uint32_t)k, uid) < 0)
        return -SIMAP_EINVAL;
    const char *argv[] = {"HGET", key, "enable_tracer"};
    struct op *o = op_new(OP_TRACER, data);
    o->cb.i = cb;
    return send_argv(q, o, 3, argv, NULL);
}

int queue_archive_user(struct queue *q, int k, const char *uid, const char *reason,
                       queue_int_cb *cb, void *data)
{
    char user[SCHEMA_KEY_MAX], users[SCHEMA_SHARD_KEY_MAX], ks[16];
    if (schema_key_user(user, (uint32_t)k, uid) < 0)
        return -SIMAP_EINVAL;
    schema_key_shard_users(users, (uint32_t)k);
    snprintf(ks, sizeof ks, "%d", k);
    const char *argv[] = {user, users, SCHEMA_KEY_CHANGES, uid, ks, reason};
    struct op *o = op_new(OP_INT, data);
    o->cb.i = cb;
    return send_script(q, o, "user_archive", 3, 6, argv, NULL);
}

int queue_disable_url(struct queue *q, const char *pid, const char *url_field, const char *url,
                      const char *disabled_field, const char *reason, queue_int_cb *cb, void *data)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_partner(key, pid) < 0)
        return -SIMAP_EINVAL;
    const char *argv[] = {key, url_field, url, disabled_field, reason};
    struct op *o = op_new(OP_INT, data);
    o->cb.i = cb;
    return send_script(q, o, "event_gone", 1, 5, argv, NULL);
}

int queue_log(struct queue *q, const struct queue_log_entry *e)
{
    char key[SCHEMA_KEY_MAX], att[16], st[16], lat[24], next[24];
    if (schema_key_log(key, e->pid) < 0)
        return -SIMAP_EINVAL;
    snprintf(att, sizeof att, "%d", e->attempt);
    snprintf(st, sizeof st, "%ld", e->status);
    snprintf(lat, sizeof lat, "%lld", (long long)e->latency_ms);
    if (e->next_at > 0)
        snprintf(next, sizeof next, "%lld", (long long)e->next_at);
    else
        next[0] = '\0';
    const char *argv[] = {"XADD",   key,      "MAXLEN",  "~",       "100000",     "*",
                          "id",     e->id,    "type",    e->type,   "uid",        e->uid,
                          "tag",    e->tag,   "code",    e->code,   "attempt",    att,
                          "status", st,       "result",  e->result, "latency_ms", lat,
                          "error",  e->error, "next_at", next};
    struct op *o = op_new(OP_NONE, NULL);
    return send_argv(q, o, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
}

int queue_stat(struct queue *q, struct stat_call *c)
{
    struct op *o = op_new(OP_NONE, NULL);
    return send_script(q, o, "stat_add", 1, c->argc, c->argv, NULL);
}

int queue_circuit(struct queue *q, const struct queue_circuit *c)
{
    char sha[CRYPTO_SHA256_HEX_LEN + 1], key[SCHEMA_KEY_MAX];
    if (crypto_sha256_hex(c->url, strlen(c->url), sha) < 0 || schema_key_circuit(key, sha) < 0)
        return -SIMAP_EINVAL;
    char failures[16], opened[24], until[24], now[24], keep[24];
    snprintf(failures, sizeof failures, "%d", c->failures);
    snprintf(opened, sizeof opened, "%lld", (long long)c->opened_at);
    snprintf(until, sizeof until, "%lld", (long long)c->until);
    snprintf(now, sizeof now, "%lld", (long long)c->now);
    snprintf(keep, sizeof keep, "%lld", (long long)c->keep_ms);
    const char *hset[] = {"HSET",     key,      "url",        c->url, "state", c->state,
                          "failures", failures, "opened_at",  opened, "until", until,
                          "node",     c->node,  "updated_at", now};
    int is_closed = strcmp(c->state, "closed") == 0;
    const char *expire[] = {is_closed ? "PEXPIRE" : "PERSIST", key, keep};
    const char *zadd[] = {"ZADD", SCHEMA_KEY_CIRCUITS, now, sha};
    int rc = send_argv(q, op_new(OP_NONE, NULL), (int)(sizeof hset / sizeof hset[0]), hset, NULL);
    if (rc == 0)
        rc = send_argv(q, op_new(OP_NONE, NULL), is_closed ? 3 : 2, expire, NULL);
    if (rc == 0)
        rc = send_argv(q, op_new(OP_NONE, NULL), 4, zadd, NULL);
    return rc;
}
