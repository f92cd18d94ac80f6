/*
 * cmd/watcher/provider: provider cache, login rate limit, connection cap and
 * throttling backoff (see provider.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/backoff.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/resolver.h"
#include "core/schema.h"
#include "core/time.h"

#define RETRY_MS         5000 /* a failed load or resolution is tried again after this */
#define RESOLVER_THREADS 4    /* providers resolved at once */

enum load_state { LOAD_NONE, LOAD_PENDING, LOAD_OK, LOAD_FAILED };

/* A provider record as read, before its host is resolved. */
struct record {
    char *host;
    int port;
    enum provider_tls tls;
    enum provider_auth auth;
    int idle_renew_s;
    int max_connections;
    char *token_url; /* NULL when unset */
    enum provider_token_auth token_auth;
    enum provider_sasl sasl;
    int tracer_delete;
    int mailbox_poll_s;
};

struct prov {
    struct provider pub; /* first: sessions see this part */
    struct providers *ps;
    struct prov *next;
    enum load_state state;
    int err;                     /* of a failed load, for go() */
    int64_t loaded_mono;         /* when the record was last read */
    int loading;                 /* a reload is in flight (state may stay LOAD_OK) */
    struct record rec;           /* read, its host being resolved */
    struct resolve *resolving;   /* that lookup */
    struct provider_waiter head; /* FIFO sentinel */
    size_t queued;
    int active;               /* connections holding a slot */
    size_t limited;           /* of the queued, those waiting for max_connections */
    struct metric *m_limited; /* gauge of limited */
    double tokens;            /* login tokens, up to burst */
    int64_t tokens_mono;      /* when tokens was last topped up */
    struct backoff throttle;
    int64_t throttled_until;
    ev_timer timer; /* next dispatch: a token, the end of a throttle, a retry */
};

struct providers {
    struct ev_loop *loop;
    struct rconn *rc;
    struct resolver *resolver;
    struct providers_opts opts;
    struct prov *list;
};

static void dispatch(struct prov *p);

static struct prov *prov_of(struct provider *pub)
{
    return (struct prov *)(void *)pub;
}

static double burst(const struct providers *ps)
{
    double b = ps->opts.logins_per_sec / 10.0;
    return b < 1.0 ? 1.0 : b;
}

/* ---- Loading ---- */

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void record_clear(struct record *rec)
{
    xfree(rec->host);
    xfree(rec->token_url);
    memset(rec, 0, sizeof *rec);
}

/* Fills rec from an HGETALL reply; returns 0 or -SIMAP_EINVAL. */
static int parse_record(struct record *rec, const redisReply *r)
{
    const char *host = NULL, *port = NULL, *tls = NULL, *auth = NULL, *renew = NULL, *maxc = NULL,
               *turl = NULL, *tauth = NULL, *sasl = NULL, *tdel = NULL, *mpoll = NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "imap_host") == 0)
            host = v->str;
        else if (strcmp(f->str, "imap_port") == 0)
            port = v->str;
        else if (strcmp(f->str, "tls") == 0)
            tls = v->str;
        else if (strcmp(f->str, "auth") == 0)
            auth = v->str;
        else if (strcmp(f->str, "idle_renew_s") == 0)
            renew = v->str;
        else if (strcmp(f->str, "max_connections") == 0)
            maxc = v->str;
        else if (strcmp(f->str, "oauth2_token_url") == 0)
            turl = v->str;
        else if (strcmp(f->str, "oauth2_token_auth") == 0)
            tauth = v->str;
        else if (strcmp(f->str, "sasl") == 0)
            sasl = v->str;
        else if (strcmp(f->str, "tracer_delete") == 0)
            tdel = v->str;
        else if (strcmp(f->str, "mailbox_poll_s") == 0)
            mpoll = v->str;
    }
    long n;
    if (host == NULL || host[0] == '\0' || strlen(host) > 255)
        return -SIMAP_EINVAL;
    enum provider_tls t = PROVIDER_TLS_IMPLICIT;
    if (tls != NULL && tls[0] != '\0') {
        if (strcmp(tls, "implicit") == 0 || strcmp(tls, "ssl") == 0 || strcmp(tls, "tls") == 0)
            t = PROVIDER_TLS_IMPLICIT;
        else if (strcmp(tls, "starttls") == 0)
            t = PROVIDER_TLS_STARTTLS;
        else if (strcmp(tls, "none") == 0)
            t = PROVIDER_TLS_NONE;
        else
            return -SIMAP_EINVAL;
    }
    long portv = t == PROVIDER_TLS_IMPLICIT ? 993 : 143;
    if (port != NULL && port[0] != '\0' && parse_int(port, 1, 65535, &portv) < 0)
        return -SIMAP_EINVAL;
    enum provider_auth a = PROVIDER_AUTH_PLAIN;
    if (auth != NULL && strcmp(auth, "oauth2") == 0)
        a = PROVIDER_AUTH_OAUTH2;
    else if (auth != NULL && auth[0] != '\0' && strcmp(auth, "plain") != 0)
        return -SIMAP_EINVAL;
    long renew_s = PROVIDER_IDLE_RENEW_S;
    if (renew != NULL && renew[0] != '\0') {
        if (parse_int(renew, 1, 86400, &n) < 0)
            return -SIMAP_EINVAL;
        renew_s = n < 60 ? 60 : n > 1740 ? 1740 : n;
    }
    long poll_s = PROVIDER_MAILBOX_POLL_S;
    if (mpoll != NULL && mpoll[0] != '\0') {
        if (parse_int(mpoll, 1, 86400, &n) < 0)
            return -SIMAP_EINVAL;
        poll_s = n < 10 ? 10 : n > 3600 ? 3600 : n;
    }
    long max_conn = 0;
    if (maxc != NULL && maxc[0] != '\0' && parse_int(maxc, 0, 100000000, &max_conn) < 0)
        return -SIMAP_EINVAL;
    enum provider_token_auth ta = PROVIDER_TOKEN_POST;
    if (tauth != NULL && strcmp(tauth, "basic") == 0)
        ta = PROVIDER_TOKEN_BASIC;
    else if (tauth != NULL && tauth[0] != '\0' && strcmp(tauth, "post") != 0)
        return -SIMAP_EINVAL;
    enum provider_sasl sm = PROVIDER_SASL_XOAUTH2;
    if (sasl != NULL && strcmp(sasl, "oauthbearer") == 0)
        sm = PROVIDER_SASL_OAUTHBEARER;
    else if (sasl != NULL && sasl[0] != '\0' && strcmp(sasl, "xoauth2") != 0)
        return -SIMAP_EINVAL;

    record_clear(rec);
    rec->host = xstrdup(host);
    rec->port = (int)portv;
    rec->tls = t;
    rec->auth = a;
    rec->idle_renew_s = (int)renew_s;
    rec->max_connections = (int)max_conn;
    rec->token_url = turl != NULL && turl[0] != '\0' ? xstrdup(turl) : NULL;
    rec->token_auth = ta;
    rec->sasl = sm;
    rec->tracer_delete = tdel != NULL && strcmp(tdel, "1") == 0;
    rec->mailbox_poll_s = (int)poll_s;
    return 0;
}

/* Moves rec, resolved to sa, into what sessions read. */
static void apply_record(struct prov *p, struct record *rec, const struct sockaddr *sa,
                         socklen_t salen)
{
    struct provider *pub = &p->pub;
    memcpy(&pub->addr, sa, salen);
    pub->addrlen = salen;
    xfree(pub->host);
    pub->host = rec->host;
    pub->port = rec->port;
    pub->tls = rec->tls;
    pub->auth = rec->auth;
    pub->idle_renew_s = rec->idle_renew_s;
    pub->max_connections = rec->max_connections;
    xfree(pub->token_url);
    pub->token_url = rec->token_url;
    pub->token_auth = rec->token_auth;
    pub->sasl = rec->sasl;
    pub->tracer_delete = rec->tracer_delete;
    pub->mailbox_poll_s = rec->mailbox_poll_s;
    rec->host = rec->token_url = NULL;
}

static void fail_waiters(struct prov *p, int err)
{
    while (p->head.next != &p->head) {
        struct provider_waiter *w = p->head.next;
        providers_cancel(w);
        w->go(w, &p->pub, err, w->data);
    }
}

/* A load ended: rc 0 (p->pub holds the new values) or why it failed. */
static void loaded(struct prov *p, int rc)
{
    p->loading = 0;
    p->loaded_mono = time_mono_ms();
    if (rc == 0) {
        if (p->state != LOAD_OK)
            log_info("provider loaded code=%s host=%s port=%d tls=%s", p->pub.code, p->pub.host,
                     p->pub.port,
                     p->pub.tls == PROVIDER_TLS_IMPLICIT   ? "implicit"
                     : p->pub.tls == PROVIDER_TLS_STARTTLS ? "starttls"
                                                           : "none");
        p->state = LOAD_OK;
        dispatch(p);
        return;
    }
    if (p->state == LOAD_OK && rc == -SIMAP_EIO) {
        /* A transient failure to refresh keeps the values we have. */
        dispatch(p);
        return;
    }
    p->state = LOAD_FAILED;
    p->err = rc;
    fail_waiters(p, rc);
}

static void on_resolved(void *data, int rc, const struct sockaddr *sa, socklen_t salen,
                        const char *why)
{
    struct prov *p = data;
    p->resolving = NULL;
    if (rc == 0 && salen <= sizeof p->pub.addr) {
        apply_record(p, &p->rec, sa, salen);
        loaded(p, 0);
        return;
    }
    log_warn("cannot resolve IMAP host code=%s host=%s err=\"%s\"", p->pub.code, p->rec.host,
             rc == 0 ? "address too long" : why);
    record_clear(&p->rec);
    loaded(p, -SIMAP_EIO);
}

static void on_record(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct prov *p = privdata;
    int rc2;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        log_warn("cannot read provider code=%s err=\"%s\"", p->pub.code,
                 err < 0 ? err_str(err) : "unexpected reply");
        rc2 = -SIMAP_EIO;
    } else if (reply->elements == 0) {
        log_warn("no such provider code=%s", p->pub.code);
        rc2 = -SIMAP_ENOTFOUND;
    } else {
        rc2 = parse_record(&p->rec, reply);
        if (rc2 == -SIMAP_EINVAL)
            log_warn("malformed provider record code=%s", p->pub.code);
    }
    if (rc2 == 0) {
        /* Resolved off the loop: a slow DNS stalls only this provider's
         * (re)load, never the sessions. */
        p->resolving = resolver_lookup(p->ps->resolver, p->rec.host, p->rec.port, on_resolved, p);
        if (p->resolving != NULL)
            return;
        record_clear(&p->rec);
        rc2 = -SIMAP_EINVAL;
    }
    loaded(p, rc2);
}

static void load(struct prov *p)
{
    if (p->loading)
        return;
    char key[SCHEMA_KEY_MAX];
    schema_key_provider(key, p->pub.code);
    if (rconn_command(p->ps->rc, on_record, p, "HGETALL %s", key) == 0) {
        p->loading = 1;
        if (p->state != LOAD_OK)
            p->state = LOAD_PENDING;
    }
}

/* ---- Dispatch ---- */

static void arm(struct prov *p, int64_t ms)
{
    ev_timer_stop(p->ps->loop, &p->timer);
    ev_timer_set(&p->timer, (double)(ms < 1 ? 1 : ms) / 1000.0, 0.);
    ev_timer_start(p->ps->loop, &p->timer);
}

/* The provider is at max_connections with users queued: tells the waiters
 * not told yet. They are the FIFO's tail (a waiter always joins at the
 * tail, and the limit stops dispatch at the head), so the walk stops at the
 * first one already told. */
static void mark_limited(struct prov *p)
{
    size_t before = p->limited;
    for (struct provider_waiter *w = p->head.prev; w != &p->head && !w->is_limited; w = w->prev) {
        w->is_limited = 1;
        p->limited++;
        if (w->limited != NULL)
            w->limited(w, w->data);
    }
    if (p->limited == before)
        return;
    metric_set(p->m_limited, (double)p->limited);
    if (before == 0)
        log_warn("provider at its connection limit; users wait code=%s max_connections=%d "
                 "waiting=%zu",
                 p->pub.code, p->pub.max_connections, p->limited);
}

static void dispatch(struct prov *p)
{
    struct providers *ps = p->ps;
    if (p->state == LOAD_FAILED) {
        fail_waiters(p, p->err);
        return;
    }
    if (p->state != LOAD_OK)
        return;
    int64_t now = time_mono_ms();
    if (now < p->throttled_until) {
        if (p->queued > 0)
            arm(p, p->throttled_until - now);
        return;
    }
    double rate = ps->opts.logins_per_sec;
    p->tokens += (double)(now - p->tokens_mono) * rate / 1000.0;
    if (p->tokens > burst(ps))
        p->tokens = burst(ps);
    p->tokens_mono = now;
    while (p->head.next != &p->head) {
        if (p->pub.max_connections > 0 && p->active >= p->pub.max_connections) {
            mark_limited(p);
            return; /* provider_release() dispatches again */
        }
        if (p->tokens < 1.0) {
            arm(p, (int64_t)((1.0 - p->tokens) * 1000.0 / rate) + 1);
            return;
        }
        p->tokens -= 1.0;
        p->active++;
        struct provider_waiter *w = p->head.next;
        providers_cancel(w);
        w->go(w, &p->pub, 0, w->data);
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct prov *p = t->data;
    if (p->state == LOAD_FAILED && time_mono_ms() - p->loaded_mono >= RETRY_MS) {
        p->state = LOAD_NONE;
        load(p);
        return;
    }
    dispatch(p);
}

/* The provider's series of superimap_watcher_users_provider_limited. */
static struct metric *limited_gauge(struct metrics *m, const char *code)
{
    char labels[16 + 2 * PROVIDER_CODE_MAX];
    size_t n = 0;
    n += (size_t)snprintf(labels, sizeof labels, "provider=\"");
    for (const char *c = code; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            labels[n++] = '\\';
        labels[n++] = *c == '\n' ? ' ' : *c;
    }
    labels[n++] = '"';
    labels[n] = '\0';
    return metrics_gauge(m, "superimap_watcher_users_provider_limited",
                         "Users waiting because their provider is at its max_connections", labels);
}

void providers_enqueue(struct providers *ps, const char *code, struct provider_waiter *w)
{
    struct prov *p = ps->list;
    while (p != NULL && strcmp(p->pub.code, code) != 0)
        p = p->next;
    if (p == NULL) {
        p = xcalloc(1, sizeof *p);
        snprintf(p->pub.code, sizeof p->pub.code, "%s", code);
        p->ps = ps;
        p->head.next = p->head.prev = &p->head;
        p->tokens = burst(ps);
        p->tokens_mono = time_mono_ms();
        backoff_init(&p->throttle, ps->opts.backoff_min_ms, ps->opts.backoff_max_ms);
        ev_timer_init(&p->timer, on_timer, 0., 0.);
        p->timer.data = p;
        p->m_limited = limited_gauge(ps->opts.metrics, p->pub.code);
        p->next = ps->list;
        ps->list = p;
    }
    w->p = &p->pub;
    w->is_limited = 0;
    w->prev = p->head.prev;
    w->next = &p->head;
    p->head.prev->next = w;
    p->head.prev = w;
    p->queued++;
    int64_t now = time_mono_ms();
    if (p->state == LOAD_NONE ||
        (p->state == LOAD_OK && now - p->loaded_mono >= PROVIDER_REFRESH_MS))
        load(p);
    if (p->state == LOAD_FAILED && now - p->loaded_mono >= RETRY_MS) {
        p->state = LOAD_NONE;
        load(p);
    }
    /* go() never runs from here: the timer dispatches on the next loop turn. */
    if (!ev_is_active(&p->timer))
        arm(p, 0);
}

void providers_cancel(struct provider_waiter *w)
{
    if (w->next == NULL)
        return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
    struct prov *p = prov_of(w->p);
    p->queued--;
    if (!w->is_limited)
        return;
    w->is_limited = 0;
    p->limited--;
    metric_set(p->m_limited, (double)p->limited);
    if (p->limited == 0)
        log_info("provider has room again; no user waits for its connection limit code=%s",
                 p->pub.code);
}

int providers_is_queued(const struct provider_waiter *w)
{
    return w->next != NULL;
}

void provider_release(struct providers *ps, struct provider *pub)
{
    (void)ps;
    struct prov *p = prov_of(pub);
    if (p->active > 0)
        p->active--;
    if (p->queued > 0 && !ev_is_active(&p->timer))
        arm(p, 0);
}

void provider_throttled(struct providers *ps, struct provider *pub)
{
    struct prov *p = prov_of(pub);
    int64_t now = time_mono_ms();
    if (now < p->throttled_until)
        return; /* one answer per throttling window counts */
    int64_t delay = backoff_next_rand(&p->throttle);
    if (delay < ps->opts.backoff_min_ms / 2)
        delay = ps->opts.backoff_min_ms / 2;
    p->throttled_until = now + delay;
    log_warn("provider throttles us; pausing logins code=%s delay_ms=%lld", pub->code,
             (long long)delay);
}

void provider_login_ok(struct provider *pub)
{
    backoff_reset(&prov_of(pub)->throttle);
}

/* ---- Life ---- */

struct providers *providers_new(struct ev_loop *loop, struct rconn *rc,
                                const struct providers_opts *opts)
{
    struct providers *ps = xcalloc(1, sizeof *ps);
    ps->loop = loop;
    ps->rc = rc;
    ps->opts = *opts;
    ps->resolver = resolver_new(loop, RESOLVER_THREADS);
    if (ps->opts.logins_per_sec < 1)
        ps->opts.logins_per_sec = 1;
    return ps;
}

void providers_free(struct providers *ps)
{
    if (ps == NULL)
        return;
    struct prov *p = ps->list;
    while (p != NULL) {
        struct prov *next = p->next;
        ev_timer_stop(ps->loop, &p->timer);
        if (p->resolving != NULL)
            resolver_cancel(p->resolving);
        record_clear(&p->rec);
        while (p->head.next != &p->head)
            providers_cancel(p->head.next);
        xfree(p->pub.host);
        xfree(p->pub.token_url);
        xfree(p);
        p = next;
    }
    resolver_free(ps->resolver);
    xfree(ps);
}
