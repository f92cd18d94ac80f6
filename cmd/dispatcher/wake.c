/*
 * cmd/dispatcher/wake: the si:wake subscriber (see wake.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/wake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "core/err.h"
#include "core/log.h"
#include "core/redis_url.h"
#include "core/schema.h"
#include "core/sentinel.h"

#define RETRY_SEC 1.0

struct wake {
    struct ev_loop *loop;
    struct wake_opts opts;
    struct redis_addr addr;
    redisAsyncContext *ac;    /* NULL while disconnected */
    struct sentinel_ask *ask; /* redis+sentinel://: asking where the primary is */
    ev_timer retry;
    int closing;
    int was_up; /* for one log line per change */
};

static void connect_now(struct wake *w);

static void schedule_retry(struct wake *w)
{
    if (w->closing)
        return;
    ev_timer_stop(w->loop, &w->retry);
    ev_timer_set(&w->retry, RETRY_SEC, 0.);
    ev_timer_start(w->loop, &w->retry);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    connect_now(t->data);
}

static void on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct wake *w = privdata;
    redisReply *reply = r;
    if (w->closing || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    const redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        if (!w->was_up)
            log_info("wake-up channel subscribed channel=" SCHEMA_CHANNEL_WAKE);
        w->was_up = 1;
        w->opts.on_subscribed(w->opts.data);
    } else if (strcmp(kind->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        char *end;
        long k = strtol(reply->element[2]->str, &end, 10);
        if (end != reply->element[2]->str && *end == '\0' && k >= 0 && k < 1 << 20)
            w->opts.on_shard((int)k, w->opts.data);
    }
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct wake *w = privdata;
    redisReply *reply = r;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !w->closing)
        log_warn("wake-up channel: AUTH refused err=\"%s\"", reply->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct wake *w = ac->data;
    if (status != REDIS_OK) {
        w->ac = NULL; /* hiredis frees it after this callback */
        schedule_retry(w);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct wake *w = ac->data;
    w->ac = NULL; /* freed by hiredis */
    if (w->closing)
        return;
    if (w->was_up)
        log_warn("wake-up channel lost; claiming by periodic sweep until it is back");
    w->was_up = 0;
    schedule_retry(w);
}

static void connect_to(struct wake *w);

static void on_primary(void *data, int code, const char *host, int port, const char *why)
{
    struct wake *w = data;
    w->ask = NULL;
    if (code < 0) {
        if (w->was_up)
            log_warn("wake-up channel: no sentinel named the primary err=\"%s\"", why);
        schedule_retry(w);
        return;
    }
    snprintf(w->addr.host, sizeof w->addr.host, "%s", host);
    w->addr.port = port;
    connect_to(w);
}

/* Sentinels: ask them where the primary is first, every time. (Published
 * messages reach replicas too, so a subscription left on a demoted primary
 * still hears them until it is closed.) */
static void connect_now(struct wake *w)
{
    if (w->addr.nsentinels == 0) {
        connect_to(w);
        return;
    }
    w->ask = sentinel_ask_start(w->loop, &w->addr, RETRY_SEC, on_primary, w);
}

static void connect_to(struct wake *w)
{
    redisAsyncContext *ac = w->addr.is_unix ? redisAsyncConnectUnix(w->addr.path)
                                            : redisAsyncConnect(w->addr.host, w->addr.port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(w);
        return;
    }
    ac->data = w;
    if (redisLibevAttach(w->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(w);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    w->ac = ac;
    /* Queued until connected; AUTH first when there is a password. */
    if (w->addr.password[0] != '\0')
        redisAsyncCommand(ac, on_auth, w, "AUTH %s", w->addr.password);
    redisAsyncCommand(ac, on_message, w, "SUBSCRIBE " SCHEMA_CHANNEL_WAKE);
}

struct wake *wake_new(struct ev_loop *loop, const struct wake_opts *opts)
{
    struct wake *w = xcalloc(1, sizeof *w);
    char err[160];
    if (redis_url_parse(opts->redis_url, opts->redis_password, &w->addr, err, sizeof err) < 0) {
        log_error("wake-up channel: bad Redis URL err=\"%s\"", err);
        xfree(w);
        return NULL;
    }
    if (opts->redis_sentinel_password != NULL)
        snprintf(w->addr.sentinel_password, sizeof w->addr.sentinel_password, "%s",
                 opts->redis_sentinel_password);
    w->loop = loop;
    w->opts = *opts;
    ev_timer_init(&w->retry, on_retry, RETRY_SEC, 0.);
    w->retry.data = w;
    connect_now(w);
    return w;
}

void wake_free(struct wake *w)
{
    if (w == NULL)
        return;
    w->closing = 1;
    ev_timer_stop(w->loop, &w->retry);
    sentinel_ask_cancel(w->ask);
    if (w->ac != NULL)
        redisAsyncFree(w->ac); /* runs on_disconnect and the pending callbacks, all no-ops */
    memset(w->addr.password, 0, sizeof w->addr.password);
    memset(w->addr.sentinel_password, 0, sizeof w->addr.sentinel_password);
    xfree(w);
}
