/*
 * superimap-dispatcher: pops new-mail and user events from the Redis queues
 * and delivers them as signed webhooks (docs/architecture.md section 5,
 * docs/dispatcher.md). This file wires the node lifecycle (core/node) to the
 * scheduler (dispatch.c); the other files of cmd/dispatcher/ are its parts:
 *
 *   dispatch.c  claims over the owned shards, shard upkeep, metrics, lifecycle
 *   owner.c     which shards this dispatcher owns: placement, leases, fencing
 *   job.c       one claimed event: payload, signing, request, recorded result
 *   queue.c     the queue's Lua scripts and other Redis calls, typed
 *   core/deliver  libcurl multi on libev, SSRF guard at connect time
 *   partners.c  partner settings cache (URLs, keys, schedule, concurrency)
 *   breaker.c   circuit breaker per webhook URL
 *   wake.c      si:wake subscriber: idle shards are claimed at once
 *   tracer.c    tracer mail to tracer users of the owned shards
 *   policy.h    delivery policy constants job.c and dispatch.c share
 *
 * Delivery guarantees (what a receiver may rely on):
 *
 * - At least once. An event is claimed with a lease (visibility timeout:
 *   1.5 x SUPERIMAP_WEBHOOK_TIMEOUT_MS + 1 s) and leaves the queue only
 *   when its result is recorded: acked after a 2xx (or a 403, 410, or no URL),
 *   rescheduled, or moved to dead letters. If a dispatcher dies, freezes or
 *   loses Redis mid-delivery, the lease expires and any dispatcher requeues
 *   the event (on start first, then every few seconds). A receiver may thus
 *   see an event twice; every attempt carries the same id (webhook-id and the
 *   body's "id"), so it deduplicates on it.
 * - Results are fenced. Each claim increments the event's attempt count, and
 *   ack/retry/dead apply only for the current attempt: a late result of an
 *   expired lease changes nothing (it is still logged).
 * - Signed at each attempt with a fresh timestamp: the body's "signature"
 *   (the original's HMAC of timestamp + sha1 under the API key) and Standard
 *   Webhooks headers (one "v1," signature per live webhook secret).
 * - Retries after a failed attempt (network error, timeout, 5xx, 429, any
 *   other non-2xx except 403 and 410) follow the partner's schedule, by
 *   default 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h (about a
 *   day; 10 attempts), each delay +-10% jitter. A 429 or 503 with Retry-After
 *   waits at least that long (up to a day). After the last attempt the event
 *   is a dead letter: kept with its payload (10,000 per shard, 30 days) and
 *   replayable with its id unchanged (event_replay.lua).
 * - 403: the receiver refuses the user: it is archived (unless it is a tracer
 *   user), the event acked. 410: that event type's URL is disabled until the
 *   partner sets one again; later events of that type go to dead letters.
 * - Fairness: one event per partner per round in each shard, at most
 *   webhook_concurrency (default 8) requests per partner, and a circuit
 *   breaker per URL (open after 5 consecutive failures, one probe per period
 *   from 30 s doubling to 10 min), so a slow or dead receiver cannot hold the
 *   slots other partners need.
 * - Order is not guaranteed (the original did not guarantee it either).
 * - A delivered event's hash is kept 7 days without its payload, so the
 *   same id enqueued again within that time is ignored.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stddef.h>

#include <curl/curl.h>
#include <ev.h>

#include "cmd/dispatcher/dispatch.h"
#include "core/config.h"
#include "core/log.h"
#include "core/node.h"

/* The one dispatcher of this process; hooks run before it exists, so they
 * check. */
struct app {
    struct dispatcher *d;
};

static struct app app;

static void on_ready(struct node *n, void *data)
{
    (void)n;
    struct app *a = data;
    if (a->d != NULL)
        dispatch_resume(a->d);
}

static void on_unready(struct node *n, void *data)
{
    (void)n;
    struct app *a = data;
    if (a->d != NULL)
        dispatch_pause(a->d);
}

static void on_drained(void *data)
{
    node_drained(data);
}

static void drain(struct node *n, void *data)
{
    struct app *a = data;
    if (a->d == NULL)
        node_drained(n);
    else
        dispatch_drain(a->d, on_drained, n);
}

static void describe(struct node *n, const char **argv, int *argc, void *data)
{
    (void)n;
    struct app *a = data;
    if (a->d != NULL)
        dispatch_describe(a->d, argv, argc);
}

static int prepare(const struct config *cfg, struct node_opts *opts)
{
    (void)cfg;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise libcurl");
        return 1;
    }
    opts->hooks.on_ready = on_ready;
    opts->hooks.on_unready = on_unready;
    opts->hooks.drain = drain;
    opts->hooks.describe = describe;
    opts->hooks.data = &app;
    return 0;
}

static int start(struct node *n, void *data)
{
    struct app *a = data;
    /* node_main() runs the default loop. */
    a->d = dispatch_new(ev_default_loop(0), n);
    if (a->d == NULL)
        return 1;
    if (node_is_ready(n)) /* Redis became ready before we existed */
        dispatch_resume(a->d);
    return 0;
}

static void finish(struct node *n, void *data)
{
    (void)n;
    struct app *a = data;
    dispatch_free(a->d);
    a->d = NULL;
    curl_global_cleanup();
}

int main(int argc, char **argv)
{
    static const struct node_main_spec spec = {
        .role = "dispatcher",
        .program = "superimap-dispatcher",
        .summary = "Delivers superimap events to partners' webhook URLs, signed, at least "
                   "once, with retries, backoff and dead letters.",
        .config_role = CONFIG_ROLE_DISPATCHER,
        .prepare = prepare,
        .start = start,
        .finish = finish,
    };
    return node_main(argc, argv, &spec);
}
