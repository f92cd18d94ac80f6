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

#include "core/err.h"
#include "core/fleet.h"
#include "core/reaper.h"
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

/* One queue shard, as far as ownership goes. */
struct oshard {
    int k;
    unsigned placed : 1;    /* placement gives it to this dispatcher */
    unsigned owned : 1;     /* its si:{k}:owner lease is ours: claims allowed */
    unsigned acquiring : 1; /* lease_acquire in flight */
    unsigned releasing : 1; /* placed elsewhere: lease_release once its calls are answered */
    int64_t next_acquire;   /* mono ms: a held lease is asked for again */
};

struct owner {
    struct ev_loop *loop;
    struct node *node;
    struct owner_hooks h;
    int nshards;
    struct oshard *shards;
    int redis_up; /* between owner_ready() and owner_pause() */
    int draining; /* owner_release_all() was called */
    int closing;  /* owner_close() was called */
    struct fleet *fleet;
    struct reaper *reaper; /* frees a dead peer's leases when its connection closes */
    struct incarnation *inc;
    char (*unit_ids)[12]; /* "0".."N-1" */
    const char **units;   /* pointers into unit_ids */
    int nowned;
    int nplaced;          /* shards the last placement gave us */
    int place_due;        /* placement postponed (our beat not seen yet) */
    int64_t placed_at;    /* mono ms */
    int64_t refreshed_at; /* mono ms of the last re-read asked for (our beat unseen) */
    int64_t last_tick;    /* mono ms of the last tick: a long gap means a frozen loop */
    void (*done)(void *data);
    void *done_data;
    struct metric *m_owned, *m_acquired, *m_released, *m_fenced, *m_shards_lost;
};

/* One lease_acquire in flight, preceded on the same connection by a GET of
 * the lease (whom a takeover takes from), or one lease_release of a shard
 * placed elsewhere. Each is a core/rreq without owner: the owner outlives
 * them but for rconn's shutdown, whose answers rreq drops; every request
 * holds a reference until its release. */
struct acquire_call {
    struct rreq holder; /* GET of the lease */
    struct rreq call;   /* lease_acquire or lease_release */
    struct owner *o;
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

static void set_owned(struct owner *o, struct oshard *sh, int owned)
{
    if (sh->owned == (unsigned)owned)
        return;
    sh->owned = owned ? 1 : 0;
    o->nowned += owned ? 1 : -1;
    metric_set(o->m_owned, o->nowned);
    o->h.on_owned(sh->k, owned, o->h.data);
}

/* No call on the shard's queue is waiting for Redis. */
static int shard_idle(const struct owner *o, const struct oshard *sh)
{
    return o->h.is_idle(sh->k, o->h.data);
}

/* Gives a shard placed elsewhere back. A release Redis did not take would
 * leave the lease ours for as long as we live (the new owner waits for our
 * alive key): it is sent again unless the shard came back meanwhile. */
static void on_handed_over(struct rreq *req, struct redisReply *reply, int err)
{
    struct acquire_call *c = RREQ_CONTAINER(req, struct acquire_call, call);
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        struct owner *o = c->o;
        struct oshard *sh = &o->shards[c->k];
        if (!o->draining && !sh->placed && !sh->owned && !sh->acquiring &&
            incarnation_is_live(o->inc) && c->gen == incarnation_generation(o->inc)) {
            log_warn("lease_release failed; sending it again shard=%d err=\"%s\"", c->k,
                     err < 0 ? err_str(err) : "unexpected reply");
            sh->releasing = 1;
        }
    }
}

/* Sends lease_release for sh: as part of drain (drain), or answered to
 * on_handed_over when drain is NULL. */
static void release(struct owner *o, struct oshard *sh, struct lease_drain *drain)
{
    char key[SCHEMA_SHARD_KEY_MAX];
    schema_key_owner(key, (uint32_t)sh->k);
    set_owned(o, sh, 0);
    sh->releasing = 0;
    metric_inc(o->m_released);
    log_info("queue shard released shard=%d token=%s", sh->k, incarnation_token(o->inc));
    if (drain != NULL) {
        lease_drain_release(drain, node_redis(o->node), key);
        return;
    }
    struct acquire_call *c = xcalloc(1, sizeof *c);
    c->o = o;
    c->k = sh->k;
    c->gen = incarnation_generation(o->inc);
    c->refs = 1;
    rreq_start(&c->call, NULL, on_handed_over, release_call);
    if (lease_release(node_redis(o->node), o->inc, key, rreq_on_reply, &c->call) < 0) {
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

static void took(struct owner *o, struct oshard *sh, const char *was)
{
    const char *token = incarnation_token(o->inc);
    metric_inc(o->m_acquired);
    set_owned(o, sh, 1);
    if (was[0] != '\0' && strcmp(was, token) != 0)
        log_info("queue shard taken over shard=%d from=%s token=%s", sh->k, was, token);
    else
        log_info("queue shard acquired shard=%d token=%s", sh->k, token);
    if (o->nowned == o->nplaced)
        log_info("queue shards owned: every shard placed here shards=%d", o->nowned);
}

static void on_acquired(struct rreq *req, struct redisReply *reply, int err)
{
    struct acquire_call *c = RREQ_CONTAINER(req, struct acquire_call, call);
    struct owner *o = c->o;
    struct oshard *sh = &o->shards[c->k];
    sh->acquiring = 0;
    int64_t now = time_mono_ms();
    enum lease_answer ans = lease_answer_of(reply, err);
    if (ans == LEASE_FAILED) {
        log_warn("lease_acquire failed shard=%d err=\"%s\"", c->k,
                 err < 0 ? err_str(err) : "unexpected reply");
        sh->next_acquire = now + OWNER_RETRY_MS;
    } else if (ans == LEASE_FENCED) {
        lease_fence(o->inc, c->gen);
    } else if (c->gen != incarnation_generation(o->inc) || !incarnation_is_live(o->inc)) {
        /* An answer for an older generation: its token is no longer ours. */
    } else if (ans == LEASE_BUSY) {
        log_debug("queue shard held by another dispatcher shard=%d holder=%s", c->k, c->was);
        sh->next_acquire = now + OWNER_RETRY_MS;
    } else if (!sh->placed || o->draining) {
        release(o, sh, NULL); /* placed elsewhere while we asked */
    } else if (!sh->owned) {
        took(o, sh, c->was);
    }
}

static void acquire(struct owner *o, struct oshard *sh)
{
    char key[SCHEMA_SHARD_KEY_MAX];
    schema_key_owner(key, (uint32_t)sh->k);
    struct acquire_call *c = xcalloc(1, sizeof *c);
    c->o = o;
    c->k = sh->k;
    c->gen = incarnation_generation(o->inc);
    c->refs = 2;
    rreq_start(&c->holder, NULL, on_holder, release_holder);
    if (rconn_command(node_redis(o->node), rreq_on_reply, &c->holder, "GET %s", key) < 0)
        rreq_abort(&c->holder);
    rreq_start(&c->call, NULL, on_acquired, release_call);
    if (lease_acquire(node_redis(o->node), o->inc, (uint32_t)sh->k, key, rreq_on_reply, &c->call) <
        0) {
        rreq_abort(&c->call);
        sh->next_acquire = time_mono_ms() + OWNER_RETRY_MS;
        return;
    }
    sh->acquiring = 1;
}

/* Brings the leases in line with the placement. */
static void reconcile(struct owner *o, int64_t now)
{
    if (o->draining || o->closing || !o->redis_up)
        return;
    int live = incarnation_is_live(o->inc);
    for (int k = 0; k < o->nshards; k++) {
        struct oshard *sh = &o->shards[k];
        if (sh->placed && sh->releasing) {
            /* Placed back before it was released: the lease is still ours. */
            sh->releasing = 0;
            set_owned(o, sh, 1);
        } else if (sh->placed && !sh->owned && !sh->acquiring && live && now >= sh->next_acquire) {
            acquire(o, sh);
        } else if (!sh->placed && sh->owned) {
            /* Claims stop now; the lease goes once the shard's calls are
             * answered (its deliveries need no lease: their results are
             * fenced by their attempt). */
            set_owned(o, sh, 0);
            sh->releasing = 1;
        }
        if (sh->releasing && shard_idle(o, sh))
            release(o, sh, NULL);
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

static void place(struct owner *o)
{
    if (o->draining || o->closing || !fleet_loaded(o->fleet))
        return;
    size_t nn;
    const struct fleet_node *nodes = fleet_nodes(o->fleet, &nn);
    size_t self = nn;
    for (size_t i = 0; i < nn; i++)
        if (strcmp(nodes[i].id, node_id(o->node)) == 0)
            self = i;
    int64_t now = time_mono_ms();
    if (self == nn) {
        /* Our own beat is not seen yet: keep what we have, read again. */
        o->place_due = 1;
        if (now - o->refreshed_at >= 1000) {
            o->refreshed_at = now;
            fleet_refresh(o->fleet);
        }
        return;
    }
    o->place_due = 0;
    o->placed_at = now;
    struct fleet_node *bounded = shard_bounds(nodes, nn, o->nshards);
    int32_t *owner = xmalloc((size_t)o->nshards * sizeof *owner);
    if (fleet_place(bounded, nn, o->units, (size_t)o->nshards, owner, NULL) == 0) {
        int mine = 0;
        for (int k = 0; k < o->nshards; k++) {
            o->shards[k].placed = owner[k] == (int32_t)self;
            mine += o->shards[k].placed;
        }
        if (mine != o->nplaced)
            log_info("queue shards placed dispatchers=%zu here=%d owned=%d", nn, mine, o->nowned);
        o->nplaced = mine;
    }
    xfree(owner);
    xfree(bounded);
    reconcile(o, now);
}

static void on_fleet_change(struct fleet *f, void *data)
{
    struct owner *o = data;
    size_t nn;
    fleet_nodes(f, &nn);
    log_info("dispatchers changed: placing queue shards again dispatchers=%zu", nn);
    place(o);
}

static void on_live(struct incarnation *inc, void *data)
{
    (void)inc;
    struct owner *o = data;
    reaper_live(o->reaper);
    for (int k = 0; k < o->nshards; k++)
        o->shards[k].next_acquire = 0;
    reconcile(o, time_mono_ms());
}

static void on_fenced(struct incarnation *inc, const char *why, void *data)
{
    (void)inc;
    struct owner *o = data;
    int had = o->nowned;
    for (int k = 0; k < o->nshards; k++) {
        struct oshard *sh = &o->shards[k];
        set_owned(o, sh, 0);
        sh->releasing = 0; /* the new generation's token holds nothing to release */
    }
    metric_inc(o->m_fenced);
    metric_add(o->m_shards_lost, had);
    log_warn("fenced: claims stopped on every queue shard; taking them again under a new "
             "generation why=\"%s\" shards=%d",
             why, had);
}

int owner_may_act(struct owner *o)
{
    if (!incarnation_is_live(o->inc))
        return 0;
    int64_t gap = time_mono_ms() - o->last_tick;
    if (o->last_tick > 0 && gap > STALL_MS) {
        log_warn("event loop was frozen: our alive keys may have expired stalled_ms=%" PRId64, gap);
        incarnation_fence(o->inc, incarnation_generation(o->inc), "event loop was frozen");
        return 0;
    }
    return 1;
}

void owner_loop_ran(struct owner *o, int64_t now)
{
    o->last_tick = now;
}

struct owner *owner_new(struct ev_loop *loop, struct node *n, int nshards,
                        const struct owner_hooks *hooks)
{
    struct owner *o = xcalloc(1, sizeof *o);
    o->loop = loop;
    o->node = n;
    o->h = *hooks;
    o->nshards = nshards;
    o->shards = xcalloc((size_t)nshards, sizeof *o->shards);
    for (int k = 0; k < nshards; k++)
        o->shards[k].k = k;
    o->unit_ids = xcalloc((size_t)o->nshards, sizeof *o->unit_ids);
    o->units = xcalloc((size_t)o->nshards, sizeof *o->units);
    for (int k = 0; k < o->nshards; k++) {
        snprintf(o->unit_ids[k], sizeof o->unit_ids[k], "%d", k);
        o->units[k] = o->unit_ids[k];
    }
    struct fleet_opts fo = {.role = "dispatcher", .self_id = node_id(o->node)};
    struct fleet_hooks fh = {.on_change = on_fleet_change, .data = o};
    o->fleet = fleet_new(o->loop, node_redis(o->node), &fo, &fh);
    struct incarnation_hooks ih = {.on_live = on_live, .on_fenced = on_fenced, .data = o};
    o->inc = incarnation_new(o->loop, node_redis(o->node), node_id(o->node), o->nshards, &ih);
    struct metrics *m = node_metrics(o->node);
    struct reaper_opts ro = {
        .role = "dispatcher", .self_id = node_id(o->node), .shards = o->nshards, .metrics = m};
    o->reaper = reaper_new(o->loop, node_redis(o->node), o->fleet, o->inc, &ro);
    o->m_owned = metrics_gauge(m, "superimap_dispatcher_shards_owned",
                               "Queue shards whose owner lease this dispatcher holds", NULL);
    o->m_acquired = metrics_counter(m, "superimap_dispatcher_shard_acquisitions_total",
                                    "Queue shard leases taken (start, rebalance, takeover)", NULL);
    o->m_released = metrics_counter(m, "superimap_dispatcher_shard_releases_total",
                                    "Queue shard leases given back (rebalance, drain)", NULL);
    o->m_shards_lost =
        metrics_counter(m, "superimap_dispatcher_shard_losses_total",
                        "Queue shards dropped by a self-fencing (their lease may have gone to "
                        "another dispatcher)",
                        NULL);
    o->m_fenced =
        metrics_counter(m, "superimap_dispatcher_fences_total",
                        "Times this dispatcher fenced itself and dropped every shard", NULL);
    return o;
}

void owner_close(struct owner *o)
{
    o->closing = 1;
}

void owner_free(struct owner *o)
{
    if (o == NULL)
        return;
    reaper_free(o->reaper);
    fleet_free(o->fleet);
    incarnation_free(o->inc);
    xfree(o->units);
    xfree(o->unit_ids);
    xfree(o->shards);
    xfree(o);
}

void owner_ready(struct owner *o)
{
    /* The leases may be gone with a restart that lost writes, and another
     * dispatcher may have taken one: claim nothing until each is confirmed
     * (lease_acquire answers 1 for a lease that is still ours). */
    o->redis_up = 1;
    for (int k = 0; k < o->nshards; k++) {
        set_owned(o, &o->shards[k], 0); /* a shard being released stays so */
        o->shards[k].next_acquire = 0;
    }
    incarnation_start(o->inc);
    fleet_start(o->fleet);
    reaper_start(o->reaper);
    reconcile(o, time_mono_ms());
}

void owner_pause(struct owner *o)
{
    o->redis_up = 0;
}

int owner_count(const struct owner *o)
{
    return o->nowned;
}

void owner_tick(struct owner *o, int64_t now)
{
    if (o->place_due || now - o->placed_at >= OWNER_REBALANCE_MS)
        place(o);
    else
        reconcile(o, now);
}

static void on_retired(void *data)
{
    struct owner *o = data;
    log_info("queue shard leases released and alive keys deleted");
    void (*done)(void *) = o->done;
    o->done = NULL;
    if (done != NULL)
        done(o->done_data);
}

void owner_release_all(struct owner *o, void (*done)(void *data), void *data)
{
    o->draining = 1;
    o->done = done;
    o->done_data = data;
    struct lease_drain *drain = lease_drain_start(o->inc, on_retired, o);
    int n = o->nowned;
    o->nplaced = 0;
    for (int k = 0; k < o->nshards; k++) {
        struct oshard *sh = &o->shards[k];
        sh->placed = 0;
        /* At once, calls in flight or not: claims answered from here on are
         * given back unsent (draining), so the survivors can start now. */
        if (sh->owned || sh->releasing)
            release(o, sh, drain);
    }
    log_info("draining: queue shard leases released shards=%d", n);
    /* After the node's state=draining beat and the releases (one FIFO):
     * every other dispatcher re-reads the fleet now and takes the shards. */
    fleet_announce(o->fleet);
    lease_drain_finish(drain);
}
