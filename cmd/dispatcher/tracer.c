/*
 * cmd/dispatcher/tracer: tracer mail rounds, submissions and deadlines (see
 * tracer.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/tracer.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/config.h"
#include "core/crypto.h"
#include "core/deliver.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

#define TRACER_ID_HEX   20       /* as the original's SecureRandom.hex(10) */
#define PICK_PER_SHARD  "16"     /* users tracer_pick looks at per shard */
#define RECORD_TTL_SEC  "604800" /* a record lives 7 days */
#define RECENT_KEPT     "99"     /* si:tracers:<code> keeps 100 */
#define SMTP_TIMEOUT_MS 60000    /* a whole submission */
#define SMTP_CONNECT_MS 10000    /* its TCP (and TLS) connect */
#define CODE_MAX        64       /* provider codes (cmd/api input_is_code) */
#define FIELD_MAX       256      /* email, username */

/* One user tracer_pick offered; the sealed secrets are copied. */
struct cand {
    int k;
    char uid[SCHEMA_UID_LEN + 1];
    char code[CODE_MAX + 1];
    char email[FIELD_MAX];
    char username[FIELD_MAX];
    char *secret, *token; /* sealed as stored; xfree */
};

/* A tracer submitted and awaiting detection. */
struct pending {
    int k;
    char id[TRACER_ID_HEX + 1];
    char code[CODE_MAX + 1];
    int64_t deadline; /* mono ms */
    struct pending *next;
};

/*
 * One Redis call or submission in flight: a shard's tracer_pick (c.k), then
 * for a chosen user the provider's hash, the record, the submission; or a
 * deadline check (p). t is NULL once the sender is freed (the call is
 * orphaned: its callback only frees it), so rconn may answer after
 * tracer_free().
 */
struct call {
    struct tracers *t;
    struct cand c;    /* the user */
    struct pending p; /* the tracer */
    char *msg;        /* the message until deliver_mail() takes it */
    size_t msg_len;
    char url[320];           /* smtp[s]://host:port/ehlo-name */
    int starttls;            /* STARTTLS required */
    char *password, *bearer; /* the opened credential; wiped once submitted */
    struct call *prev, *next;
};

struct tracers {
    struct ev_loop *loop;
    struct rconn *redis;
    const struct crypto_keys *keys;
    struct metrics *metrics;
    const char *ca_file;
    struct deliver *smtp;
    int nshards;
    int (*is_owned)(int k, void *data);
    void *data;
    int64_t deadline_ms;
    ev_timer timer;
    int stopped;

    int picking; /* tracer_pick replies awaited this round */
    struct cand *cands;
    size_t ncands, cap;

    struct pending *pending;
    struct call *calls;
};

/* ---- Calls ---- */

static struct call *call_new(struct tracers *t)
{
    struct call *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->next = t->calls;
    if (t->calls != NULL)
        t->calls->prev = c;
    t->calls = c;
    return c;
}

static void cand_clear(struct cand *c)
{
    xfree(c->secret);
    xfree(c->token);
    c->secret = c->token = NULL;
}

static void call_free(struct call *c)
{
    struct tracers *t = c->t;
    if (t != NULL) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            t->calls = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
    }
    cand_clear(&c->c);
    xfree(c->msg);
    crypto_wipe_str(&c->password);
    crypto_wipe_str(&c->bearer);
    xfree(c);
}

/* ---- Metrics ---- */

static void count(struct tracers *t, const char *name, const char *help, const char *code,
                  const char *result)
{
    char labels[CODE_MAX + 48];
    if (result != NULL)
        snprintf(labels, sizeof labels, "provider=\"%s\",result=\"%s\"", code, result);
    else
        snprintf(labels, sizeof labels, "provider=\"%s\"", code);
    metric_inc(metrics_counter(t->metrics, name, help, labels));
}

#define SENT_TOTAL "superimap_tracer_sent_total"
#define SENT_HELP                                                                                  \
    "Tracer mails submitted by provider and result (sent, auth, connect, tls, rejected, timeout, " \
    "credentials, error)"
#define MISSING_TOTAL "superimap_tracer_missing_total"
#define MISSING_HELP  "Tracer mails submitted and not detected by their deadline"

/* ---- Result of a submission ---- */

/* The class of a failed submission, from libcurl's code. */
static const char *classify(const struct deliver_result *res)
{
    switch ((CURLcode)res->code) {
    case CURLE_OK:
        return "sent";
    case CURLE_LOGIN_DENIED:
        return "auth";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return "connect";
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        return "tls";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        /* A command answered 4xx or 5xx (MAIL FROM, RCPT TO, DATA). */
        return res->status >= 400 ? "rejected" : "error";
    default:
        return "error";
    }
}

static void record_result(struct tracers *t, const struct pending *p, const char *result,
                          const char *error, int64_t ms)
{
    char key[SCHEMA_KEY_MAX], msbuf[24];
    schema_key_tracer(key, (uint32_t)p->k, p->id);
    snprintf(msbuf, sizeof msbuf, "%lld", (long long)ms);
    const char *argv[] = {"HSET", key, "result", result, "error", error, "smtp_ms", msbuf};
    rconn_command_argv(t->redis, NULL, NULL, 8, argv, NULL);
}

static void on_submitted(const struct deliver_result *res, void *data)
{
    struct call *c = data;
    struct tracers *t = c->t;
    const char *result = classify(res);
    if (t != NULL) {
        record_result(t, &c->p, result, res->error, res->latency_ms);
        count(t, SENT_TOTAL, SENT_HELP, c->p.code, result);
        if (res->code == 0) {
            log_info("tracer sent tracer=%s acct=%s provider=%s smtp_ms=%lld", c->p.id, c->c.uid,
                     c->p.code, (long long)res->latency_ms);
            char labels[CODE_MAX + 32];
            snprintf(labels, sizeof labels, "provider=\"%s\",stage=\"submitted\"", c->p.code);
            metric_observe(metrics_histogram(t->metrics, "superimap_tracer_latency_seconds",
                                             "Tracer mails by stage: submitted (SMTP, dispatcher), "
                                             "detected (sent to detected, watcher)",
                                             labels, metrics_tracer_bounds, metrics_tracer_nbounds),
                           (double)res->latency_ms / 1000.0);
            struct pending *p = xmalloc(sizeof *p);
            *p = c->p;
            p->deadline = time_mono_ms() + t->deadline_ms;
            p->next = t->pending;
            t->pending = p;
        } else {
            log_warn("tracer not sent tracer=%s acct=%s provider=%s result=%s smtp_status=%ld "
                     "error=\"%s\"",
                     c->p.id, c->c.uid, c->p.code, result, res->status, res->error);
        }
    }
    call_free(c);
}

/* tracer_sent answered: the record exists, submit. */
static void on_recorded(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct call *c = privdata;
    struct tracers *t = c->t;
    if (t == NULL || err < 0 || reply == NULL || reply->type != REDIS_REPLY_STRING) {
        if (t != NULL)
            log_warn("tracer not sent: its record failed tracer=%s err=\"%s\"", c->p.id,
                     err_str(err < 0 ? err : -SIMAP_EREPLY));
        call_free(c);
        return;
    }
    char list[SCHEMA_KEY_MAX], item[SCHEMA_SHARD_KEY_MAX + TRACER_ID_HEX];
    schema_key_tracers(list, c->p.code);
    snprintf(item, sizeof item, "%d:%s", c->p.k, c->p.id);
    const char *push[] = {"LPUSH", list, item};
    const char *trim[] = {"LTRIM", list, "0", RECENT_KEPT};
    rconn_command_argv(t->redis, NULL, NULL, 3, push, NULL);
    rconn_command_argv(t->redis, NULL, NULL, 4, trim, NULL);
    struct deliver_mail m = {
        .url = c->url,
        .starttls = c->starttls,
        .from = c->c.email,
        .rcpt = c->c.email,
        .username = c->c.username,
        .password = c->password,
        .bearer = c->bearer,
        .ca_file = t->ca_file,
    };
    char *msg = c->msg;
    c->msg = NULL;
    int r = deliver_mail(t->smtp, &m, msg, c->msg_len, on_submitted, c);
    crypto_wipe_str(&c->password); /* libcurl keeps its own copies */
    crypto_wipe_str(&c->bearer);
    if (r < 0) {
        record_result(t, &c->p, "error", err_str(r), 0);
        count(t, SENT_TOTAL, SENT_HELP, c->p.code, "error");
        log_warn("tracer not sent tracer=%s provider=%s err=\"%s\"", c->p.id, c->p.code,
                 err_str(r));
        call_free(c);
    }
}

/* ---- Building a submission ---- */

/* The message: RFC 5322, CRLF line ends, ASCII only. */
static char *tracer_message(const char *email, const char *id, size_t *len)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    size_t cap = 2 * strlen(email) + 3 * TRACER_ID_HEX + 512;
    char *m = xmalloc(cap);
    int n = snprintf(m, cap,
                     "From: <%s>\r\n"
                     "To: <%s>\r\n"
                     "Subject: TRACER: %s\r\n"
                     "X-Superimap-Tracer: %s\r\n"
                     "Message-ID: <%s.tracer@superimap>\r\n"
                     "Date: %s\r\n"
                     "MIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n"
                     "\r\n"
                     "TRACER: %s\r\n"
                     "\r\n"
                     "A tracer mail of superimap: it proves that mail sent to this mailbox\r\n"
                     "becomes a recorded event. It is not announced to the partner.\r\n",
                     email, email, id, id, id, date, id);
    *len = (size_t)n;
    return m;
}

/* Opens the user's credential for its provider's auth into c; a reason
 * when it cannot. */
static const char *open_credential(struct tracers *t, struct call *c, int oauth2)
{
    char aad[SCHEMA_KEY_MAX];
    if (oauth2) {
        if (c->c.token == NULL || *c->c.token == '\0')
            return "no access token yet";
        schema_aad_user_access_token(aad, c->c.uid);
        if (crypto_decrypt(t->keys, c->c.token, aad, &c->bearer, NULL) < 0)
            return "the access token does not open";
        if (c->c.email[0] != '\0')
            snprintf(c->c.username, sizeof c->c.username, "%s", c->c.email);
        return NULL;
    }
    if (c->c.secret == NULL || *c->c.secret == '\0')
        return "no password";
    schema_aad_user_secret(aad, c->c.uid);
    if (crypto_decrypt(t->keys, c->c.secret, aad, &c->password, NULL) < 0)
        return "the password does not open";
    if (c->c.username[0] == '\0')
        snprintf(c->c.username, sizeof c->c.username, "%s", c->c.email);
    return NULL;
}

static const char *field(const redisReply *h, const char *name)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0 &&
            h->element[i + 1]->type == REDIS_REPLY_STRING)
            return h->element[i + 1]->str;
    return "";
}

/* The provider's hash arrived: build the submission and record it. */
static void on_provider(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct call *c = privdata;
    struct tracers *t = c->t;
    if (t == NULL || err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        call_free(c);
        return;
    }
    const char *host = field(reply, "smtp_host"), *port = field(reply, "smtp_port");
    const char *tls = field(reply, "smtp_tls"), *domain = field(reply, "smtp_domain");
    if (*host == '\0' || *port == '\0') {
        log_debug("no tracer: the provider has no smtp_host provider=%s", c->c.code);
        call_free(c);
        return;
    }
    char raw[TRACER_ID_HEX / 2];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, c->p.id);
    c->p.k = c->c.k;
    snprintf(c->p.code, sizeof c->p.code, "%s", c->c.code);
    const char *why = strchr(c->c.email, '@') == NULL
                          ? "the user has no email address"
                          : open_credential(t, c, strcmp(field(reply, "auth"), "oauth2") == 0);
    if (why != NULL) {
        log_warn("tracer not sent acct=%s provider=%s result=credentials why=\"%s\"", c->c.uid,
                 c->c.code, why);
        count(t, SENT_TOTAL, SENT_HELP, c->c.code, "credentials");
        call_free(c);
        return;
    }
    int v6 = strchr(host, ':') != NULL;
    snprintf(c->url, sizeof c->url, "%s://%s%s%s:%s/%s",
             strcmp(tls, "implicit") == 0 ? "smtps" : "smtp", v6 ? "[" : "", host, v6 ? "]" : "",
             port, domain);
    c->starttls = *tls == '\0' || strcmp(tls, "starttls") == 0;
    c->msg = tracer_message(c->c.email, c->p.id, &c->msg_len);
    char key[SCHEMA_KEY_MAX];
    schema_key_tracer(key, (uint32_t)c->p.k, c->p.id);
    const char *argv[] = {key, c->c.uid, c->c.code, RECORD_TTL_SEC};
    if (rconn_script(t->redis, on_recorded, c, "tracer_sent", 1, 4, argv, NULL) < 0)
        call_free(c);
}

/* ---- A round ---- */

static void send_one(struct tracers *t, struct cand *cd)
{
    struct call *c = call_new(t);
    c->c = *cd;
    cd->secret = cd->token = NULL; /* the call owns them now */
    char key[SCHEMA_KEY_MAX];
    schema_key_provider(key, c->c.code);
    const char *argv[] = {"HGETALL", key};
    if (rconn_command_argv(t->redis, on_provider, c, 2, argv, NULL) < 0)
        call_free(c);
}

/* Every shard answered: one random candidate per provider. */
static void pick_done(struct tracers *t)
{
    for (size_t i = t->ncands; i > 1; i--) { /* Fisher-Yates */
        uint32_t r;
        crypto_random(&r, sizeof r);
        size_t j = r % i;
        struct cand tmp = t->cands[i - 1];
        t->cands[i - 1] = t->cands[j];
        t->cands[j] = tmp;
    }
    for (size_t i = 0; i < t->ncands; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(t->cands[j].code, t->cands[i].code) == 0;
        if (!seen)
            send_one(t, &t->cands[i]);
    }
    for (size_t i = 0; i < t->ncands; i++)
        cand_clear(&t->cands[i]);
    t->ncands = 0;
}

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    snprintf(dst, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
}

static void on_picked(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct call *c = privdata;
    struct tracers *t = c->t;
    if (t == NULL) {
        call_free(c);
        return;
    }
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        log_warn("tracer_pick failed shard=%d err=\"%s\"", c->c.k,
                 err_str(err < 0 ? err : -SIMAP_EREPLY));
    for (size_t i = 0; reply != NULL && reply->type == REDIS_REPLY_ARRAY && i + 5 < reply->elements;
         i += 6) {
        redisReply **e = reply->element + i;
        if (e[0]->type != REDIS_REPLY_STRING || e[0]->len > SCHEMA_UID_LEN ||
            e[1]->type != REDIS_REPLY_STRING || e[1]->len == 0 || e[1]->len > CODE_MAX)
            continue;
        if (t->ncands == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 16;
            t->cands = xrealloc(t->cands, t->cap * sizeof *t->cands);
        }
        struct cand *cd = &t->cands[t->ncands++];
        memset(cd, 0, sizeof *cd);
        cd->k = c->c.k;
        copy_str(cd->uid, sizeof cd->uid, e[0]);
        copy_str(cd->code, sizeof cd->code, e[1]);
        copy_str(cd->email, sizeof cd->email, e[2]);
        copy_str(cd->username, sizeof cd->username, e[3]);
        cd->secret = xstrdup(e[4]->type == REDIS_REPLY_STRING ? e[4]->str : "");
        cd->token = xstrdup(e[5]->type == REDIS_REPLY_STRING ? e[5]->str : "");
    }
    call_free(c);
    if (--t->picking == 0)
        pick_done(t);
}

/* ---- Deadlines ---- */

static void on_checked(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct call *c = privdata;
    struct tracers *t = c->t;
    if (t != NULL && err == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
        reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_NIL &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        char key[SCHEMA_KEY_MAX], now[24];
        schema_key_tracer(key, (uint32_t)c->p.k, c->p.id);
        snprintf(now, sizeof now, "%lld", (long long)time_now_ms());
        const char *argv[] = {"HSET", key, "missing_at", now};
        rconn_command_argv(t->redis, NULL, NULL, 4, argv, NULL);
        count(t, MISSING_TOTAL, MISSING_HELP, c->p.code, NULL);
        log_warn("tracer missing: not detected by its deadline tracer=%s provider=%s "
                 "deadline_ms=%lld",
                 c->p.id, c->p.code, (long long)t->deadline_ms);
    }
    call_free(c);
}

/* Tracers past their deadline: missing unless detected meanwhile. */
static void check_deadlines(struct tracers *t, int64_t now)
{
    struct pending **pp = &t->pending;
    while (*pp != NULL) {
        struct pending *p = *pp;
        if (p->deadline > now) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        struct call *c = call_new(t);
        c->p = *p;
        xfree(p);
        char key[SCHEMA_KEY_MAX];
        schema_key_tracer(key, (uint32_t)c->p.k, c->p.id);
        const char *argv[] = {"HMGET", key, "detected_at", "sent_at"};
        if (rconn_command_argv(t->redis, on_checked, c, 4, argv, NULL) < 0)
            call_free(c);
    }
}

static void on_round(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tracers *t = w->data;
    if (t->stopped || !rconn_is_connected(t->redis))
        return;
    check_deadlines(t, time_mono_ms());
    if (t->picking > 0)
        return; /* the last round is still reading */
    for (int k = 0; k < t->nshards; k++) {
        if (!t->is_owned(k, t->data))
            continue;
        struct call *c = call_new(t);
        c->c.k = k;
        char set[SCHEMA_SHARD_KEY_MAX], users[SCHEMA_SHARD_KEY_MAX];
        schema_key_tracer_users(set, (uint32_t)k);
        schema_key_shard_users(users, (uint32_t)k);
        const char *argv[] = {set, users, PICK_PER_SHARD};
        if (rconn_script(t->redis, on_picked, c, "tracer_pick", 2, 3, argv, NULL) < 0)
            call_free(c);
        else
            t->picking++;
    }
}

/* ---- Life cycle ---- */

struct tracers *tracer_new(const struct tracer_opts *o)
{
    const struct config *cfg = o->cfg;
    if (cfg->tracer_interval_sec <= 0)
        return NULL;
    struct deliver_opts dopts = {
        .timeout_ms = SMTP_TIMEOUT_MS,
        .connect_timeout_ms = SMTP_CONNECT_MS,
        .allow_private = cfg->tracer_allow_private,
        .allow_var = "SUPERIMAP_TRACER_ALLOW_PRIVATE",
        .user_agent = "superimap",
    };
    struct deliver *smtp = deliver_new(o->loop, &dopts);
    if (smtp == NULL)
        return NULL;
    struct tracers *t = xcalloc(1, sizeof *t);
    t->loop = o->loop;
    t->redis = o->redis;
    t->keys = o->keys;
    t->metrics = o->metrics;
    t->ca_file = cfg->ca_file;
    t->smtp = smtp;
    t->nshards = o->nshards;
    t->is_owned = o->is_owned;
    t->data = o->data;
    int64_t interval_ms = (int64_t)cfg->tracer_interval_sec * 1000;
    t->deadline_ms =
        cfg->tracer_deadline_sec > 0 ? (int64_t)cfg->tracer_deadline_sec * 1000 : 2 * interval_ms;
    ev_timer_init(&t->timer, on_round, (double)cfg->tracer_interval_sec,
                  (double)cfg->tracer_interval_sec);
    t->timer.data = t;
    ev_timer_start(t->loop, &t->timer);
    log_info("tracer mail on interval_sec=%d deadline_ms=%lld allow_private=%d",
             cfg->tracer_interval_sec, (long long)t->deadline_ms, cfg->tracer_allow_private);
    return t;
}

void tracer_stop(struct tracers *t)
{
    if (t == NULL)
        return;
    t->stopped = 1;
    ev_timer_stop(t->loop, &t->timer);
}

void tracer_free(struct tracers *t)
{
    if (t == NULL)
        return;
    tracer_stop(t);
    deliver_free(t->smtp); /* submissions call back now, with t still whole */
    for (struct call *c = t->calls; c != NULL; c = c->next)
        c->t = NULL; /* Redis may still answer: orphaned */
    while (t->pending != NULL) {
        struct pending *p = t->pending;
        t->pending = p->next;
        xfree(p);
    }
    for (size_t i = 0; i < t->ncands; i++)
        cand_clear(&t->cands[i]);
    xfree(t->cands);
    xfree(t);
}
