/*
 * cmd/dispatcher/owner: queue-shard ownership through core/fleet placement
 * and si:{k}:owner leases under core/incarnation (see owner.h); acquire,
 * release, fence and drain of the leases are core/lease's, shared with the
 * watcher's lease manager (cmd/watcher/leases.c).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/owner.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/dispatcher/dispatch_impl.h"
#include "core/err.h"
#include "core/fleet.h"
#include "core/incarnation.h"
#include "core/lease.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "core/schema.h"
#include "core/time.h"

/* A loop frozen this long may have outlived its alive keys: they live
 * INCARNATION_ALIVE_TTL_MS from the last renewal, and the incarnation
 * fences only after INCARNATION_FENCE_MS without one, checked once a
 * second. */
#define STALL_MS (INCARNATION_ALIVE_TTL_MS - INCARNATION_FENCE_MS - 1000)

/* Placement bounds each dispatcher at its fair share times LOAD_NUM/LOAD_DEN. */
#define LOAD_NUM 5
#define LOAD_DEN 4

/* One lease_acquire in flight, preceded on the same connection by a GET of
 * the lease (whom a takeover takes from), or one lease_release of a shard
 * placed elsewhere. Each is a core/rreq without owner: the dispatcher
 * outlives them but for rconn's shutdown, whose answers rreq drops; every
 * request holds a reference until its release. */
struct acquire_call {
    struct rreq holder; /* GET of the lease */
    struct rreq call;   /* lease_acquire or lease_release */
    struct dispatcher *d;
    int k;
    int refs;
    uint64_t gen;
    char was[160]; /* the holder before us ("": free) */
};

static void call_unref(struct acquire_call *c)
{
    if (--c->refs == 0)
        xfree(c);
}

static void release_holder(struct rreq *req)
{
    call_unref(RREQ_CONTAINER(req, struct acquire_call, holder));
}

static void release_call(struct rreq *req)
{
    call_unref(RREQ_CONTAINER(req, struct acquire_call, call));
}

static void set_owned(struct dispatcher *d, struct shard *sh, int owned)
{
    if (sh->owned == (unsigned)owned)
        return;
    sh->owned = owned ? 1 : 0;
    d->nowned += owned ? 1 : -1;
    metric_set(d->m_owned, d->nowned);
    if (owned) {
        /* Expired leases first, then claims (docs/architecture.md section 5). */
        sh->epoch++;
        sh->started = 0;
        sh->next_requeue = 0;
    } else {
        sh->wants = 0;
        /* The owner reports the shard's depth now: zeros here keep sums
         * over the fleet right. */
        for (int s = 0; s < 4; s++)
            metric_set(sh->m_depth[s], 0);
        metric_set(sh->m_oldest, 0);
    }
}

/* No call on the shard's queue is waiting for Redis. */
static int shard_idle(const struct shard *sh)
{
    return !sh->claiming && !sh->requeuing && !sh->promoting && !sh->counting;
}

/* Gives a shard placed elsewhere back. A release Redis did not take would
 * leave the lease ours for as long as we live (the new owner waits for our
 * alive key): it is sent again unless the shard came back meanwhile. */
static void on_handed_over(struct rreq *req, struct redisReply *reply, int err)
{
    struct acquire_call *c = RREQ_CONTAINER(req, struct acquire_call, call);
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        struct dispatcher *d = c->d;
        struct shard *sh = &d->shards[c->k];
        if (!d->draining && !sh->placed && !sh->owned && !sh->acquiring &&
            incarnation_is_live(d->inc) && c->gen == incarnation_generation(d->inc)) {
            log_warn("lease_release failed; sending it again shard=%d err=\"%s\"", c->k,
                     err < 0 ? err_str(err) : "unexpected reply");
            sh->releasing = 1;
        }
    }
}

/* Sends lease_release for sh: as part of drain (drain), or answered to
 * on_handed_over when drain is NULL. */
static void release(struct dispatcher *d, struct shard *sh, struct lease_drain *drain)
{
    char key[SCHEMA_SHARD_KEY_MAX];
    schema_key_owner(key, (uint32_t)sh->keys.k);
    set_owned(d, sh, 0);
    sh->releasing = 0;
    metric_inc(d->m_released);
    log_info("queue shard released shard=%d token=%s", sh->keys.k, incarnation_token(d->inc));
    if (drain != NULL) {
        lease_drain_release(drain, node_redis(d->node), key);
        return;
    }
    struct acquire_call *c = xcalloc(1, sizeof *c);
    c->d = d;
    c->k = sh->keys.k;
    c->gen = incarnation_generation(d->inc);
    c->refs = 1;
    rreq_start(&c->call, NULL, on_handed_over, release_call);
    if (lease_release(node_redis(d->node), d->inc, key, rreq_on_reply, &c->call) < 0) {
        rreq_abort(&c->call);
        sh->releasing = 1; /* the next tick tries again */
    }
}

static void on_holder(struct rreq *req, struct redisReply *reply, int err)
{
    struct acquire_call *c = RREQ_CONTAINER(req, struct acquire_call, holder);
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING)
        snprintf(c->was, sizeof c->was, "%s", reply->str);
}

static void took(struct dispatcher *d, struct shard *sh, const char *was)
{
    const char *token = incarnation_token(d->inc);
    metric_inc(d->m_acquired);
    set_owned(d, sh, 1);
    if (was[0] != '\0' && strcmp(was, token) != 0)
        log_info("queue shard taken over shard=%d from=%s token=%s", sh->keys.k, was, token);
    else
        log_info("queue shard acquired shard=%d token=%s", sh->keys.k, token);
    if (d->nowned == d->nplaced)
        log_info("queue shards owned: every shard placed here shards=%d", d->nowned);
}

static void on_acquired(struct rreq *req, struct redisReply *reply, int err)
{
    struct acquire_call *c = RREQ_CONTAINER(req, struct acquire_call, call);
    struct dispatcher *d = c->d;
    struct shard *sh = &d->shards[c->k];
    sh->acquiring = 0;
    int64_t now = time_mono_ms();
    enum lease_answer ans = lease_answer_of(reply, err);
    if (ans == LEASE_FAILED) {
        log_warn("lease_acquire failed shard=%d err=\"%s\"", c->k,
                 err < 0 ? err_str(err) : "unexpected reply");
        sh->next_acquire = now + OWNER_RETRY_MS;
    } else if (ans == LEASE_FENCED) {
        lease_fence(d->inc, c->gen);
    } else if (c->gen != incarnation_generation(d->inc) || !incarnation_is_live(d->inc)) {
        /* An answer for an older generation: its token is no longer ours. */
    } else if (ans == LEASE_BUSY) {
        log_debug("queue shard held by another dispatcher shard=%d holder=%s", c->k, c->was);
        sh->next_acquire = now + OWNER_RETRY_MS;
    } else if (!sh->placed || d->draining) {
        release(d, sh, NULL); /* placed elsewhere while we asked */
    } else if (!sh->owned) {
        took(d, sh, c->was);
    }
}

static void acquire(struct dispatcher *d, struct shard *sh)
{
    char key[SCHEMA_SHARD_KEY_MAX];
    schema_key_owner(key, (uint32_t)sh->keys.k);
    struct acquire_call *c = xcalloc(1, sizeof *c);
    c->d = d;
    c->k = sh->keys.k;
    c->gen = incarnation_generation(d->inc);
    c->refs = 2;
    rreq_start(&c->holder, NULL, on_holder, release_holder);
    if (rconn_command(node_redis(d->node), rreq_on_reply, &c->holder, "GET %s", key) < 0)
        rreq_abort(&c->holder);
    rreq_start(&c->call, NULL, on_acquired, release_call);
    if (lease_acquire(node_redis(d->node), d->inc, (uint32_t)sh->keys.k, key, rreq_on_reply,
                      &c->call) < 0) {
        rreq_abort(&c->call);
        sh->next_acquire = time_mono_ms() + OWNER_RETRY_MS;
        return;
    }
    sh->acquiring = 1;
}

/* Brings the leases in line with the placement. */
static void reconcile(struct dispatcher *d, int64_t now)
{
    if (d->draining || d->closing || !d->redis_up)
        return;
    int live = incarnation_is_live(d->inc);
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        if (sh->placed && sh->releasing) {
            /* Placed back before it was released: the lease is still ours. */
            sh->releasing = 0;
            set_owned(d, sh, 1);
        } else if (sh->placed && !sh->owned && !sh->acquiring && live && now >= sh->next_acquire) {
            acquire(d, sh);
        } else if (!sh->placed && sh->owned) {
            /* Claims stop now; the lease goes once the shard's calls are
             * answered (its deliveries need no lease: their results are
             * fenced by their attempt). */
            set_owned(d, sh, 0);
            sh->releasing = 1;
        }
        if (sh->releasing && shard_idle(sh))
            release(d, sh, NULL);
    }
}

/* Placement nodes weighted by capacity and bounded at LOAD_NUM/LOAD_DEN of
 * their fair share of the shards, rounded up. Capacity itself (events in
 * flight) is no bound on shards: a lone dispatcher owns every shard, and
 * the bounds always add up to more than the shards (no overflow). Returns
 * a new array (xfree() it). */
static struct fleet_node *shard_bounds(const struct fleet_node *nodes, size_t nn, int nshards)
{
    uint64_t total = 0, s = (uint64_t)nshards;
    for (size_t i = 0; i < nn; i++)
        total += nodes[i].capacity;
    struct fleet_node *w = xmalloc((nn + 1) * sizeof *w);
    for (size_t i = 0; i < nn; i++) {
        w[i].id = nodes[i].id;
        w[i].capacity = (uint32_t)((s * nodes[i].capacity * LOAD_NUM + total * LOAD_DEN - 1) /
                                   (total * LOAD_DEN));
    }
    return w;
}

static void place(struct dispatcher *d)
{
    if (d->draining || d->closing || !fleet_loaded(d->fleet))
        return;
    size_t nn;
    const struct fleet_node *nodes = fleet_nodes(d->fleet, &nn);
    size_t self = nn;
    for (size_t i = 0; i < nn; i++)
        if (strcmp(nodes[i].id, node_id(d->node)) == 0)
            self = i;
    int64_t now = time_mono_ms();
    if (self == nn) {
        /* Our own beat is not seen yet: keep what we have, read again. */
        d->place_due = 1;
        if (now - d->refreshed_at >= 1000) {
            d->refreshed_at = now;
            fleet_refresh(d->fleet);
        }
        return;
    }
    d->place_due = 0;
    d->placed_at = now;
    struct fleet_node *bounded = shard_bounds(nodes, nn, d->nshards);
    int32_t *owner = xmalloc((size_t)d->nshards * sizeof *owner);
    if (fleet_place(bounded, nn, d->units, (size_t)d->nshards, owner, NULL) == 0) {
        int mine = 0;
        for (int k = 0; k < d->nshards; k++) {
            d->shards[k].placed = owner[k] == (int32_t)self;
            mine += d->shards[k].placed;
        }
        if (mine != d->nplaced)
            log_info("queue shards placed dispatchers=%zu here=%d owned=%d", nn, mine, d->nowned);
        d->nplaced = mine;
    }
    xfree(owner);
    xfree(bounded);
    reconcile(d, now);
}

static void on_fleet_change(struct fleet *f, void *data)
{
    struct dispatcher *d = data;
    size_t nn;
    fleet_nodes(f, &nn);
    log_info("dispatchers changed: placing queue shards again dispatchers=%zu", nn);
    place(d);
}

static void on_live(struct incarnation *inc, void *data)
{
    (void)inc;
    struct dispatcher *d = data;
    for (int k = 0; k < d->nshards; k++)
        d->shards[k].next_acquire = 0;
    reconcile(d, time_mono_ms());
}

static void on_fenced(struct incarnation *inc, const char *why, void *data)
{
    (void)inc;
    struct dispatcher *d = data;
    int had = d->nowned;
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        set_owned(d, sh, 0);
        sh->releasing = 0; /* the new generation's token holds nothing to release */
    }
    metric_inc(d->m_fenced);
    metric_add(d->m_shards_lost, had);
    log_warn("fenced: claims stopped on every queue shard; taking them again under a new "
             "generation why=\"%s\" shards=%d",
             why, had);
}

int owner_may_act(struct dispatcher *d)
{
    if (!incarnation_is_live(d->inc))
        return 0;
    int64_t gap = time_mono_ms() - d->last_tick;
    if (d->last_tick > 0 && gap > STALL_MS) {
        log_warn("event loop was frozen: our alive keys may have expired stalled_ms=%" PRId64, gap);
        incarnation_fence(d->inc, incarnation_generation(d->inc), "event loop was frozen");
        return 0;
    }
    return 1;
}

void owner_init(struct dispatcher *d)
{
    d->unit_ids = xcalloc((size_t)d->nshards, sizeof *d->unit_ids);
    d->units = xcalloc((size_t)d->nshards, sizeof *d->units);
    for (int k = 0; k < d->nshards; k++) {
        snprintf(d->unit_ids[k], sizeof d->unit_ids[k], "%d", k);
        d->units[k] = d->unit_ids[k];
    }
    struct fleet_opts fo = {.role = "dispatcher", .self_id = node_id(d->node)};
    struct fleet_hooks fh = {.on_change = on_fleet_change, .data = d};
    d->fleet = fleet_new(d->loop, node_redis(d->node), &fo, &fh);
    struct incarnation_hooks ih = {.on_live = on_live, .on_fenced = on_fenced, .data = d};
    d->inc = incarnation_new(d->loop, node_redis(d->node), node_id(d->node), d->nshards, &ih);
    struct metrics *m = node_metrics(d->node);
    d->m_owned = metrics_gauge(m, "superimap_dispatcher_shards_owned",
                               "Queue shards whose owner lease this dispatcher holds", NULL);
    d->m_acquired = metrics_counter(m, "superimap_dispatcher_shard_acquisitions_total",
                                    "Queue shard leases taken (start, rebalance, takeover)", NULL);
    d->m_released = metrics_counter(m, "superimap_dispatcher_shard_releases_total",
                                    "Queue shard leases given back (rebalance, drain)", NULL);
    d->m_shards_lost =
        metrics_counter(m, "superimap_dispatcher_shard_losses_total",
                        "Queue shards dropped by a self-fencing (their lease may have gone to "
                        "another dispatcher)",
                        NULL);
    d->m_fenced =
        metrics_counter(m, "superimap_dispatcher_fences_total",
                        "Times this dispatcher fenced itself and dropped every shard", NULL);
}

void owner_free(struct dispatcher *d)
{
    fleet_free(d->fleet);
    incarnation_free(d->inc);
    xfree(d->units);
    xfree(d->unit_ids);
}

void owner_ready(struct dispatcher *d)
{
    /* The leases may be gone with a restart that lost writes, and another
     * dispatcher may have taken one: claim nothing until each is confirmed
     * (lease_acquire answers 1 for a lease that is still ours). */
    for (int k = 0; k < d->nshards; k++) {
        set_owned(d, &d->shards[k], 0); /* a shard being released stays so */
        d->shards[k].next_acquire = 0;
    }
    incarnation_start(d->inc);
    fleet_start(d->fleet);
    reconcile(d, time_mono_ms());
}

void owner_tick(struct dispatcher *d, int64_t now)
{
    if (d->place_due || now - d->placed_at >= OWNER_REBALANCE_MS)
        place(d);
    else
        reconcile(d, now);
}

static void on_retired(void *data)
{
    struct dispatcher *d = data;
    log_info("queue shard leases released and alive keys deleted");
    d->owner_released = 1;
    void (*done)(void *) = d->owner_done;
    d->owner_done = NULL;
    if (done != NULL)
        done(d->owner_done_data);
}

void owner_release_all(struct dispatcher *d, void (*done)(void *data), void *data)
{
    d->owner_done = done;
    d->owner_done_data = data;
    struct lease_drain *drain = lease_drain_start(d->inc, on_retired, d);
    int n = d->nowned;
    d->nplaced = 0;
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        sh->placed = 0;
        /* At once, calls in flight or not: claims answered from here on are
         * given back unsent (draining), so the survivors can start now. */
        if (sh->owned || sh->releasing)
            release(d, sh, drain);
    }
    log_info("draining: queue shard leases released shards=%d", n);
    /* After the node's state=draining beat and the releases (one FIFO):
     * every other dispatcher re-reads the fleet now and takes the shards. */
    fleet_announce(d->fleet);
    lease_drain_finish(drain);
}
