/*
 * core/incarnation: generation, per-shard alive keys, self-fencing (see
 * incarnation.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/incarnation.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

#define TICK_SEC 1.0

enum inc_state {
    INC_NONE,    /* no generation, or fenced: INCR due */
    INC_GEN,     /* INCR si:gen in flight */
    INC_ALIVE,   /* generation known, alive keys being set */
    INC_LIVE,    /* renewing */
    INC_RETIRED, /* drained: alive keys deleted, nothing more */
};

struct incarnation {
    struct ev_loop *loop;
    struct rconn *rc;
    char *node_id;
    int shards;
    struct incarnation_hooks hooks;

    enum inc_state state;
    uint64_t gen;
    char token[160];
    unsigned epoch;        /* bumps with each generation: late answers are ignored */
    ev_timer tick;         /* every TICK_SEC: fence check, renewal, retries */
    int64_t last_ok_mono;  /* sending time of the last fully successful round */
    int64_t last_try_mono; /* sending time of the last round */
    int round_in_flight;
    int renew_failed; /* the last renewal round failed: the next goes on the next tick */
    char stale[160];  /* a fenced generation's token whose alive keys a DEL round has
                         not deleted yet ("" when none) */

    void (*retire_done)(void *data);
    void *retire_data;
    int retire_now; /* retire with nothing to delete: done on the next tick */
};

/* One pipelined round of per-shard commands: SET, PEXPIRE or DEL. */
enum round_kind { ROUND_SET, ROUND_RENEW, ROUND_DEL, ROUND_RETIRE };

struct round {
    struct incarnation *inc;
    unsigned epoch;
    enum round_kind kind;
    char token[160]; /* whose alive keys */
    int remaining;   /* replies still due */
    int failed;      /* errors, timeouts, unexpected replies */
    int gone;        /* PEXPIRE answered 0: the key had expired */
    int64_t sent_mono;
};

static void fence(struct incarnation *inc, const char *why);
static void start_generation(struct incarnation *inc);

void incarnation_alive_key(const struct incarnation *inc, uint32_t k, char *out, size_t outlen)
{
    char key[SCHEMA_KEY_MAX];
    schema_key_alive(key, k, inc->token);
    snprintf(out, outlen, "%s", key);
}

static void round_done(struct incarnation *inc, struct round *r)
{
    switch (r->kind) {
    case ROUND_SET:
        if (r->epoch != inc->epoch || inc->state != INC_ALIVE)
            return;
        if (r->failed) {
            log_warn("cannot set alive keys; retrying generation=%" PRIu64, inc->gen);
            return; /* the next tick sends the round again */
        }
        inc->state = INC_LIVE;
        inc->last_ok_mono = r->sent_mono;
        log_info("incarnation live token=%s shards=%d", inc->token, inc->shards);
        if (inc->hooks.on_live != NULL)
            inc->hooks.on_live(inc, inc->hooks.data);
        return;
    case ROUND_RENEW:
        if (r->epoch != inc->epoch || inc->state != INC_LIVE)
            return;
        if (r->gone) {
            fence(inc, "an alive key had expired");
            return;
        }
        inc->renew_failed = r->failed > 0;
        if (!r->failed)
            inc->last_ok_mono = r->sent_mono;
        return;
    case ROUND_DEL:
        if (!r->failed && strcmp(r->token, inc->stale) == 0)
            inc->stale[0] = '\0';
        return;
    case ROUND_RETIRE:
        if (inc->retire_done != NULL) {
            void (*done)(void *) = inc->retire_done;
            inc->retire_done = NULL;
            done(inc->retire_data);
        }
        return;
    }
}

static void on_round_reply(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct round *r = privdata;
    r->remaining--;
    if (err == -SIMAP_ESHUTDOWN) {
        if (r->remaining == 0)
            xfree(r);
        return; /* the incarnation may be gone already */
    }
    if (err < 0 || reply == NULL) {
        r->failed++;
    } else if (r->kind == ROUND_RENEW) {
        if (reply->type != REDIS_REPLY_INTEGER)
            r->failed++;
        else if (reply->integer == 0)
            r->gone++;
    } else if (r->kind == ROUND_SET && reply->type != REDIS_REPLY_STATUS) {
        r->failed++;
    }
    if (r->remaining > 0)
        return;
    struct incarnation *inc = r->inc;
    if (r->kind != ROUND_DEL)
        inc->round_in_flight = 0;
    round_done(inc, r);
    xfree(r);
}

/* Sends one command per shard for the alive keys of token (a ROUND_DEL
 * may name a fenced generation; the others name the current one); returns 0
 * when every one was queued. */
static int send_round(struct incarnation *inc, enum round_kind kind, const char *token)
{
    struct round *r = xcalloc(1, sizeof *r);
    r->inc = inc;
    r->epoch = inc->epoch;
    r->kind = kind;
    snprintf(r->token, sizeof r->token, "%s", token);
    r->sent_mono = time_mono_ms();
    r->remaining = 1; /* held by this function until every command is queued */
    char key[SCHEMA_KEY_MAX], ttl[16];
    snprintf(ttl, sizeof ttl, "%d", INCARNATION_ALIVE_TTL_MS);
    for (int k = 0; k < inc->shards; k++) {
        schema_key_alive(key, (uint32_t)k, r->token);
        int rc;
        r->remaining++;
        if (kind == ROUND_SET)
            rc = rconn_command(inc->rc, on_round_reply, r, "SET %s 1 PX %s", key, ttl);
        else if (kind == ROUND_RENEW)
            rc = rconn_command(inc->rc, on_round_reply, r, "PEXPIRE %s %s", key, ttl);
        else
            rc = rconn_command(inc->rc, on_round_reply, r, "DEL %s", key);
        if (rc < 0) {
            r->remaining--;
            r->failed++;
        }
    }
    if (kind != ROUND_DEL) {
        inc->round_in_flight = 1;
        inc->last_try_mono = r->sent_mono;
    }
    /* Release this function's hold; the round may already be complete when
     * nothing could be queued (then it ends here, from the caller's tick). */
    int ok = r->failed == 0;
    r->remaining--;
    if (r->remaining == 0) {
        if (kind != ROUND_DEL)
            inc->round_in_flight = 0;
        if (kind == ROUND_RETIRE) {
            inc->retire_now = 1; /* done() must not run inside incarnation_retire() */
            ev_timer_stop(inc->loop, &inc->tick);
            ev_timer_set(&inc->tick, 0., 0.);
            ev_timer_start(inc->loop, &inc->tick);
        }
        xfree(r);
    }
    return ok ? 0 : -1;
}

static void fence(struct incarnation *inc, const char *why)
{
    if (inc->state != INC_LIVE && inc->state != INC_ALIVE)
        return;
    log_warn("self-fencing: dropping every session token=%s why=\"%s\"", inc->token, why);
    inc->epoch++;
    inc->state = INC_NONE;
    inc->round_in_flight = 0;
    if (inc->hooks.on_fenced != NULL)
        inc->hooks.on_fenced(inc, why, inc->hooks.data);
    /* The old generation's remaining alive keys go, so its leases are free
     * for the new one at once rather than after their 15 s. Redis may be
     * out of reach (that is often why we fence): until a DEL round
     * succeeds, the new generation sends it again before its own keys. */
    snprintf(inc->stale, sizeof inc->stale, "%s", inc->token);
    send_round(inc, ROUND_DEL, inc->stale);
    start_generation(inc);
}

void incarnation_fence(struct incarnation *inc, uint64_t gen, const char *why)
{
    if (gen != inc->gen)
        return;
    fence(inc, why);
}

static void on_incr(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct incarnation *inc = privdata;
    if (inc->state != INC_GEN)
        return;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0) {
        log_warn("cannot take a generation from si:gen err=\"%s\"",
                 err < 0 ? err_str(err) : "unexpected reply");
        inc->state = INC_NONE; /* the next tick tries again */
        return;
    }
    inc->epoch++;
    inc->gen = (uint64_t)reply->integer;
    snprintf(inc->token, sizeof inc->token, "%s:%" PRIu64, inc->node_id, inc->gen);
    inc->state = INC_ALIVE;
    inc->renew_failed = 0;
    if (inc->stale[0] != '\0')
        send_round(inc, ROUND_DEL, inc->stale); /* before our leases are asked for */
    send_round(inc, ROUND_SET, inc->token);
}

static void start_generation(struct incarnation *inc)
{
    if (inc->state != INC_NONE)
        return;
    if (rconn_command(inc->rc, on_incr, inc, "INCR %s", SCHEMA_KEY_GEN) == 0)
        inc->state = INC_GEN;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct incarnation *inc = w->data;
    if (inc->retire_now) {
        inc->retire_now = 0;
        if (inc->retire_done != NULL) {
            void (*done)(void *) = inc->retire_done;
            inc->retire_done = NULL;
            done(inc->retire_data);
        }
        return;
    }
    int64_t now = time_mono_ms();
    switch (inc->state) {
    case INC_NONE:
        start_generation(inc);
        break;
    case INC_GEN:
    case INC_RETIRED:
        break;
    case INC_ALIVE:
        if (inc->round_in_flight)
            break;
        if (inc->stale[0] != '\0')
            send_round(inc, ROUND_DEL, inc->stale);
        send_round(inc, ROUND_SET, inc->token);
        break;
    case INC_LIVE:
        if (now - inc->last_ok_mono >= INCARNATION_FENCE_MS) {
            fence(inc, "no renewal succeeded for 10 s");
            break;
        }
        /* After a failed round (Redis restarting, a blip) the next goes at
         * once, not a renewal period later: the fence limit counts from
         * the last success, and a blip must not use up most of it. */
        if (!inc->round_in_flight &&
            (inc->renew_failed || now - inc->last_try_mono >= INCARNATION_RENEW_MS))
            send_round(inc, ROUND_RENEW, inc->token);
        break;
    }
}

struct incarnation *incarnation_new(struct ev_loop *loop, struct rconn *rc, const char *node_id,
                                    int shards, const struct incarnation_hooks *hooks)
{
    struct incarnation *inc = xcalloc(1, sizeof *inc);
    inc->loop = loop;
    inc->rc = rc;
    inc->node_id = xstrdup(node_id);
    inc->shards = shards;
    if (hooks != NULL)
        inc->hooks = *hooks;
    inc->state = INC_NONE;
    ev_timer_init(&inc->tick, on_tick, TICK_SEC, TICK_SEC);
    inc->tick.data = inc;
    return inc;
}

void incarnation_free(struct incarnation *inc)
{
    if (inc == NULL)
        return;
    ev_timer_stop(inc->loop, &inc->tick);
    xfree(inc->node_id);
    xfree(inc);
}

void incarnation_start(struct incarnation *inc)
{
    if (inc->state == INC_RETIRED)
        return;
    if (!ev_is_active(&inc->tick))
        ev_timer_start(inc->loop, &inc->tick);
    start_generation(inc);
}

int incarnation_is_live(const struct incarnation *inc)
{
    return inc->state == INC_LIVE;
}

const char *incarnation_token(const struct incarnation *inc)
{
    return inc->token;
}

uint64_t incarnation_generation(const struct incarnation *inc)
{
    return inc->gen;
}

void incarnation_retire(struct incarnation *inc, void (*done)(void *data), void *data)
{
    enum inc_state was = inc->state;
    inc->state = INC_RETIRED;
    inc->epoch++;
    inc->retire_done = done;
    inc->retire_data = data;
    ev_timer_stop(inc->loop, &inc->tick);
    if (inc->gen == 0 || was == INC_NONE || was == INC_GEN) {
        /* Nothing of ours is alive (or a fence already deleted it). */
        inc->retire_now = 1;
        ev_timer_set(&inc->tick, 0., 0.);
        ev_timer_start(inc->loop, &inc->tick);
        return;
    }
    send_round(inc, ROUND_RETIRE, inc->token);
}
