/*
 * cmd/dispatcher/owner: queue-shard ownership through core/fleet placement
 * and si:{k}:owner leases under core/incarnation (see owner.h).
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
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

/* One lease_acquire in flight: the dispatcher may be gone when Redis
 * answers with -SIMAP_ESHUTDOWN, so the call carries what it needs. */
struct acquire_call {
    struct dispatcher *d;
    int k;
    uint64_t gen;
};

static void owner_key(int k, char *out, size_t outlen)
{
    snprintf(out, outlen, "si:{%d}:owner", k);
}

static void set_owned(struct dispatcher *d, struct shard *sh, int owned)
{
    if (sh->owned == (unsigned)owned)
        return;
    sh->owned = owned ? 1 : 0;
    d->nowned += owned ? 1 : -1;
    metric_set(d->m_owned, d->nowned);
    if (owned) {
        /* Expired leases first, then claims (DESIGN.md section 4). */
        sh->started = 0;
        sh->next_requeue = 0;
    } else {
        sh->wants = 0;
    }
}

static void release(struct dispatcher *d, struct shard *sh, rconn_cb *cb)
{
    char key[SCHEMA_KEY_MAX];
    owner_key(sh->keys.k, key, sizeof key);
    const char *argv[] = {key, incarnation_token(d->inc)};
    set_owned(d, sh, 0);
    metric_inc(d->m_released);
    if (rconn_script(node_redis(d->node), cb, d, "lease_release", 1, 2, argv, NULL) == 0 &&
        cb != NULL)
        d->releases_pending++;
}

static void on_acquired(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct acquire_call c = *(struct acquire_call *)privdata;
    xfree(privdata);
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct dispatcher *d = c.d;
    struct shard *sh = &d->shards[c.k];
    sh->acquiring = 0;
    int64_t now = time_mono_ms();
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        log_warn("lease_acquire failed shard=%d err=\"%s\"", c.k,
                 err < 0 ? err_str(err) : "unexpected reply");
        sh->next_acquire = now + OWNER_RETRY_MS;
        return;
    }
    if (reply->integer < 0) {
        incarnation_fence(d->inc, c.gen, "lease_acquire found our alive key gone");
        return;
    }
    /* An answer for an older generation: its token is no longer ours. */
    if (c.gen != incarnation_generation(d->inc) || !incarnation_is_live(d->inc))
        return;
    if (reply->integer == 0) {
        log_debug("shard held by another dispatcher shard=%d", c.k);
        sh->next_acquire = now + OWNER_RETRY_MS;
        return;
    }
    if (!sh->placed || d->draining) {
        release(d, sh, NULL); /* placed elsewhere while we asked */
        return;
    }
    if (sh->owned)
        return;
    metric_inc(d->m_acquired);
    log_debug("queue shard taken shard=%d", c.k);
    set_owned(d, sh, 1);
    if (d->nowned == d->nplaced)
        log_info("queue shards owned: every shard placed here shards=%d", d->nowned);
}

static void acquire(struct dispatcher *d, struct shard *sh)
{
    char key[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX];
    owner_key(sh->keys.k, key, sizeof key);
    incarnation_alive_key(d->inc, (uint32_t)sh->keys.k, alive, sizeof alive);
    const char *argv[] = {key, alive, incarnation_token(d->inc)};
    struct acquire_call *c = xmalloc(sizeof *c);
    c->d = d;
    c->k = sh->keys.k;
    c->gen = incarnation_generation(d->inc);
    if (rconn_script(node_redis(d->node), on_acquired, c, "lease_acquire", 2, 3, argv, NULL) < 0) {
        xfree(c);
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
        if (sh->placed && !sh->owned && !sh->acquiring && live && now >= sh->next_acquire)
            acquire(d, sh);
        else if (!sh->placed && sh->owned) {
            log_debug("queue shard handed over (placed on another dispatcher) shard=%d", k);
            release(d, sh, NULL);
        }
    }
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
        fleet_refresh(d->fleet);
        return;
    }
    d->place_due = 0;
    d->placed_at = now;
    int32_t *owner = xmalloc((size_t)d->nshards * sizeof *owner);
    if (fleet_place(nodes, nn, d->units, (size_t)d->nshards, owner, NULL) == 0) {
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
    for (int k = 0; k < d->nshards; k++)
        set_owned(d, &d->shards[k], 0);
    metric_inc(d->m_fenced);
    log_warn("fenced: claims stopped on every queue shard; taking them again under a new "
             "generation why=\"%s\" shards=%d",
             why, had);
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
        set_owned(d, &d->shards[k], 0);
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

static void on_released(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct dispatcher *d = privdata;
    if (--d->releases_pending == 0)
        incarnation_retire(d->inc, on_retired, d);
}

void owner_release_all(struct dispatcher *d, void (*done)(void *data), void *data)
{
    d->owner_done = done;
    d->owner_done_data = data;
    d->releases_pending = 1; /* held until every release is queued */
    int n = d->nowned;
    d->nplaced = 0;
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        sh->placed = 0;
        if (sh->owned)
            release(d, sh, on_released);
    }
    log_info("draining: queue shard leases released shards=%d", n);
    /* After the node's state=draining beat and the releases (one FIFO):
     * every other dispatcher re-reads the fleet now and takes the shards. */
    fleet_announce(d->fleet);
    if (--d->releases_pending == 0)
        incarnation_retire(d->inc, on_retired, d);
}
