/*
 * core/sentinel: the primary's address from Redis Sentinels (see
 * sentinel.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "core/err.h"

/* The answer to get-master-addr-by-name: {host, port}, or nil when the
 * sentinel does not watch that master. 0 with host and port, else -1 with
 * why. */
static int take_answer(const redisReply *r, char *host, size_t hostcap, int *port, char *why,
                       size_t whylen)
{
    if (r == NULL) {
        snprintf(why, whylen, "no answer");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "%s", r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(why, whylen, "does not know this master");
        return -1;
    }
    long p = strtol(r->element[1]->str, NULL, 10);
    if (p <= 0 || p > 65535 || r->element[0]->len == 0 || r->element[0]->len >= hostcap) {
        snprintf(why, whylen, "answered an unusable address");
        return -1;
    }
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = (int)p;
    return 0;
}

/* Appends "host:port: why" to the reasons so far. */
static void add_reason(char *err, size_t errlen, const struct redis_sentinel *sn, const char *why)
{
    size_t n = strlen(err);
    if (n < errlen)
        snprintf(err + n, errlen - n, "%s%s:%d: %s", n ? "; " : "", sn->host, sn->port, why);
}

/* ---- Blocking ---- */

/* Asks one sentinel; 0 with the answer in a, else -1 with why. */
static int ask_one(const struct redis_addr *a, const struct redis_sentinel *sn,
                   const struct timeval *tv, char *host, size_t hostcap, int *port, char *why,
                   size_t whylen)
{
    redisContext *c = redisConnectWithTimeout(sn->host, sn->port, *tv);
    if (c == NULL || c->err) {
        snprintf(why, whylen, "%s", c ? c->errstr : "cannot allocate a hiredis context");
        redisFree(c);
        return -1;
    }
    int ret = -1;
    redisReply *r = NULL;
    if (redisSetTimeout(c, *tv) != REDIS_OK) {
        snprintf(why, whylen, "%s", c->errstr);
        goto out;
    }
    if (a->sentinel_password[0] != '\0') {
        r = redisCommand(c, "AUTH %s", a->sentinel_password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "AUTH: %s", r ? r->str : c->errstr);
            goto out;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", a->master);
    if (r == NULL)
        snprintf(why, whylen, "%s", c->errstr);
    else
        ret = take_answer(r, host, hostcap, port, why, whylen);
out:
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ret;
}

int sentinel_resolve(struct redis_addr *a, int timeout_ms, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    err[0] = '\0';
    for (int i = 0; i < a->nsentinels; i++) {
        char host[sizeof a->host], why[256];
        int port;
        if (ask_one(a, &a->sentinels[i], &tv, host, sizeof host, &port, why, sizeof why) == 0) {
            memcpy(a->host, host, sizeof host);
            a->port = port;
            return 0;
        }
        add_reason(err, errlen, &a->sentinels[i], why);
    }
    if (a->nsentinels == 0)
        snprintf(err, errlen, "no sentinels");
    return -SIMAP_ECONN;
}

/* ---- On the loop ---- */

struct sentinel_ask {
    struct ev_loop *loop;
    const struct redis_addr *a;
    double timeout_s;
    sentinel_cb *cb;
    void *data;
    int next;              /* the sentinel to ask after the current one */
    redisAsyncContext *ac; /* the current one's link, or NULL */
    ev_timer timer;        /* the start, then each sentinel's deadline */
    char reasons[512];
};

static void try_next(struct sentinel_ask *q);

/* Drops the current link; its callbacks, run by hiredis now or later, see
 * that it is no longer q->ac and do nothing. */
static void drop(struct sentinel_ask *q)
{
    redisAsyncContext *ac = q->ac;
    q->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

static void finish(struct sentinel_ask *q, int rc, const char *host, int port, const char *why)
{
    ev_timer_stop(q->loop, &q->timer);
    drop(q);
    q->cb(q->data, rc, host, port, why);
    xfree(q);
}

/* The current sentinel failed with why: on to the next. */
static void failed(struct sentinel_ask *q, const char *why)
{
    add_reason(q->reasons, sizeof q->reasons, &q->a->sentinels[q->next - 1], why);
    drop(q);
    try_next(q);
}

static void on_answer(redisAsyncContext *ac, void *r, void *privdata)
{
    struct sentinel_ask *q = privdata;
    if (ac->data == NULL || q->ac != ac)
        return; /* dropped */
    char host[sizeof q->a->host], why[256];
    int port;
    if (take_answer(r, host, sizeof host, &port, why, sizeof why) == 0)
        finish(q, 0, host, port, NULL);
    else
        failed(q, why);
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct sentinel_ask *q = privdata;
    if (ac->data == NULL || q->ac != ac)
        return;
    redisReply *reply = r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof why, "AUTH: %s", reply ? reply->str : "no answer");
        failed(q, why);
        return;
    }
    redisAsyncCommand(ac, on_answer, q, "SENTINEL get-master-addr-by-name %s", q->a->master);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct sentinel_ask *q = ac->data;
    if (q == NULL || q->ac != ac || status == REDIS_OK)
        return;
    char why[256];
    snprintf(why, sizeof why, "%s", ac->errstr);
    q->ac = NULL; /* hiredis frees it when this returns, after failing the
                   * queued command, whose callback must then do nothing */
    ((redisAsyncContext *)ac)->data = NULL;
    add_reason(q->reasons, sizeof q->reasons, &q->a->sentinels[q->next - 1], why);
    try_next(q);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct sentinel_ask *q = ac->data;
    if (q == NULL || q->ac != ac)
        return;
    q->ac = NULL; /* hiredis frees it when this returns */
    add_reason(q->reasons, sizeof q->reasons, &q->a->sentinels[q->next - 1],
               "closed the connection");
    try_next(q);
}

static void try_next(struct sentinel_ask *q)
{
    ev_timer_stop(q->loop, &q->timer);
    while (q->next < q->a->nsentinels) {
        const struct redis_sentinel *sn = &q->a->sentinels[q->next++];
        redisAsyncContext *ac = redisAsyncConnect(sn->host, sn->port);
        if (ac == NULL || ac->err) {
            add_reason(q->reasons, sizeof q->reasons, sn, ac ? ac->errstr : "out of memory");
            if (ac != NULL)
                redisAsyncFree(ac);
            continue;
        }
        if (redisLibevAttach(q->loop, ac) != REDIS_OK) {
            add_reason(q->reasons, sizeof q->reasons, sn, "cannot attach to the loop");
            redisAsyncFree(ac);
            continue;
        }
        ac->data = q;
        q->ac = ac;
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        if (q->a->sentinel_password[0] != '\0')
            redisAsyncCommand(ac, on_auth, q, "AUTH %s", q->a->sentinel_password);
        else
            redisAsyncCommand(ac, on_answer, q, "SENTINEL get-master-addr-by-name %s",
                              q->a->master);
        ev_timer_set(&q->timer, q->timeout_s, 0.);
        ev_timer_start(q->loop, &q->timer);
        return;
    }
    finish(q, -SIMAP_ECONN, NULL, 0, q->reasons[0] ? q->reasons : "no sentinels");
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct sentinel_ask *q = t->data;
    if (q->ac == NULL) { /* the start */
        try_next(q);
        return;
    }
    failed(q, "timed out");
}

struct sentinel_ask *sentinel_ask_start(struct ev_loop *loop, const struct redis_addr *a,
                                        double timeout_s, sentinel_cb *cb, void *data)
{
    if (a->nsentinels == 0)
        return NULL;
    struct sentinel_ask *q = xcalloc(1, sizeof *q);
    q->loop = loop;
    q->a = a;
    q->timeout_s = timeout_s > 0 ? timeout_s : 1.0;
    q->cb = cb;
    q->data = data;
    ev_timer_init(&q->timer, on_timer, 0., 0.);
    q->timer.data = q;
    ev_timer_start(loop, &q->timer);
    return q;
}

void sentinel_ask_cancel(struct sentinel_ask *q)
{
    if (q == NULL)
        return;
    ev_timer_stop(q->loop, &q->timer);
    drop(q);
    xfree(q);
}

/* ---- +switch-master ---- */

#define WATCH_RETRY_S 1.0

/* One subscription per sentinel: the sentinels do not switch at once (the
 * leader of a failover may announce it seconds after the others, at the end
 * of its reconfiguration), and the first announcement is the one to act on,
 * as the old primary takes writes until it is demoted. */
struct watch_link {
    struct sentinel_watch *w;
    int i; /* the sentinel's index in w->a */
    redisAsyncContext *ac;
    ev_timer retry;
};

struct sentinel_watch {
    struct ev_loop *loop;
    const struct redis_addr *a;
    sentinel_switch_cb *cb;
    void *data;
    struct watch_link links[REDIS_SENTINELS_MAX];
};

static void watch_connect(struct watch_link *l);

static void watch_drop(struct watch_link *l)
{
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

static void watch_later(struct watch_link *l)
{
    ev_timer_stop(l->w->loop, &l->retry);
    ev_timer_set(&l->retry, WATCH_RETRY_S, 0.);
    ev_timer_start(l->w->loop, &l->retry);
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */
static void on_switch_message(redisAsyncContext *ac, void *r, void *privdata)
{
    struct watch_link *l = privdata;
    if (ac->data == NULL || l->ac != ac)
        return;
    redisReply *reply = r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        watch_drop(l); /* refused (AUTH?): again later */
        watch_later(l);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return; /* the subscription's confirmation */
    char name[128], oldip[256], newip[256];
    int oldport, newport;
    if (sscanf(reply->element[2]->str, "%127s %255s %d %255s %d", name, oldip, &oldport, newip,
               &newport) != 5 ||
        strcmp(name, l->w->a->master) != 0 || newport <= 0 || newport > 65535)
        return;
    l->w->cb(l->w->data, newip, newport);
}

static void on_watch_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct watch_link *l = privdata;
    if (ac->data == NULL || l->ac != ac)
        return;
    redisReply *reply = r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        watch_drop(l);
        watch_later(l);
    }
}

static void on_watch_connect(const redisAsyncContext *ac, int status)
{
    struct watch_link *l = ac->data;
    if (l == NULL || l->ac != ac || status == REDIS_OK)
        return;
    l->ac = NULL; /* hiredis frees it when this returns */
    ((redisAsyncContext *)ac)->data = NULL;
    watch_later(l);
}

static void on_watch_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct watch_link *l = ac->data;
    if (l == NULL || l->ac != ac)
        return;
    l->ac = NULL;
    watch_later(l);
}

static void watch_connect(struct watch_link *l)
{
    const struct redis_addr *a = l->w->a;
    const struct redis_sentinel *sn = &a->sentinels[l->i];
    redisAsyncContext *ac = redisAsyncConnect(sn->host, sn->port);
    if (ac == NULL || ac->err || redisLibevAttach(l->w->loop, ac) != REDIS_OK) {
        if (ac != NULL)
            redisAsyncFree(ac);
        watch_later(l);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisAsyncSetConnectCallback(ac, on_watch_connect);
    redisAsyncSetDisconnectCallback(ac, on_watch_disconnect);
    if (a->sentinel_password[0] != '\0')
        redisAsyncCommand(ac, on_watch_auth, l, "AUTH %s", a->sentinel_password);
    redisAsyncCommand(ac, on_switch_message, l, "SUBSCRIBE +switch-master");
}

static void on_watch_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    watch_connect(t->data);
}

struct sentinel_watch *sentinel_watch_start(struct ev_loop *loop, const struct redis_addr *a,
                                            sentinel_switch_cb *cb, void *data)
{
    if (a->nsentinels == 0)
        return NULL;
    struct sentinel_watch *w = xcalloc(1, sizeof *w);
    w->loop = loop;
    w->a = a;
    w->cb = cb;
    w->data = data;
    for (int i = 0; i < a->nsentinels; i++) {
        struct watch_link *l = &w->links[i];
        l->w = w;
        l->i = i;
        ev_timer_init(&l->retry, on_watch_retry, WATCH_RETRY_S, 0.);
        l->retry.data = l;
        watch_connect(l);
    }
    return w;
}

void sentinel_watch_stop(struct sentinel_watch *w)
{
    if (w == NULL)
        return;
    for (int i = 0; i < w->a->nsentinels; i++) {
        ev_timer_stop(w->loop, &w->links[i].retry);
        watch_drop(&w->links[i]);
    }
    xfree(w);
}

int sentinel_role_is_primary(const struct redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
}

int sentinel_error_is_replica(const char *err)
{
    return err != NULL && (strncmp(err, "READONLY", 8) == 0 || strncmp(err, "MASTERDOWN", 10) == 0);
}
