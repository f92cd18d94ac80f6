/*
 * cmd/dispatcher/owner: which queue shards this dispatcher owns, by the same
 * placement and leases as watchers own users (docs/architecture.md section 3).
 *
 * Membership of the dispatchers comes from core/fleet (role "dispatcher");
 * every dispatcher places the shards, units "0".."N-1", over the live, active
 * ones with fleet_place() (weight = advertised capacity; load bounded at 1.25
 * times the fair share of the shards), so all compute the same owner for
 * each shard. A shard placed here is taken with lease_acquire
 * on si:{k}:owner under this node's incarnation (core/incarnation: one
 * generation, per-shard alive keys, self-fencing), and claimed from only
 * while that lease is held:
 *
 *   placed elsewhere ──placed here──► ACQUIRING ──1──► OWNED: expired leases
 *          ▲                            │   requeued first, then claims
 *          │                            │ 0: a live dispatcher holds it:
 *          │                            │    asked again every second
 *          │                            │ -1: our alive key is gone: fence
 *          └─ lease_release ◄── placed elsewhere (claims stop at once;
 *                               the lease goes once the shard's calls in
 *                               flight are answered; requests in flight
 *                               finish and ack, fenced by their attempt)
 *
 *   fenced: every shard stops at once; the new generation acquires again.
 *   A loop frozen for longer than the alive keys are sure to outlive
 *   (SIGSTOP, swapped out) fences as soon as it runs again, before anything
 *   it queued meanwhile can claim (owner_may_act()).
 *   Logged at info per shard: "queue shard acquired", "queue shard taken
 *   over" (from a holder that died or was fenced), "queue shard released".
 *   Redis reconnected: every shard stops and is acquired again (the lease
 *   may be gone with a restart that lost writes).
 *   drain: every lease released, the alive keys deleted, the fleet told: the
 *   others take the shards at once.
 *
 * Placement runs on membership change and every OWNER_REBALANCE_MS. Runs on
 * the loop, through the node's rconn.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_OWNER_H
#define CMD_DISPATCHER_OWNER_H

#include <stdint.h>

struct ev_loop;
struct node;
struct owner;

#define OWNER_REBALANCE_MS 10000
#define OWNER_RETRY_MS     1000 /* a shard held by another live dispatcher */

/* Callbacks into the scheduler, each called with data on the loop, from
 * inside owner_ready(), owner_tick(), owner_release_all() and owner_may_act()
 * (a fence) or from the owner's own Redis, fleet and incarnation callbacks. */
struct owner_hooks {
    /* Shard k became ours (owned 1: its lease is held; its expired leases
     * are to be requeued before it is claimed from) or stopped being ours
     * (owned 0: claims on it stop now). */
    void (*on_owned)(int k, int owned, void *data);
    /* 1 when no call on shard k's queue is waiting for Redis: a shard placed
     * elsewhere is released only then. */
    int (*is_idle)(int k, void *data);
    void *data;
};

/* Makes the ownership of shards 0..nshards-1 for node n on loop: membership
 * (core/fleet), the incarnation (core/incarnation) and the ownership
 * metrics. Copies hooks. Nothing is acquired before owner_ready(). */
struct owner *owner_new(struct ev_loop *loop, struct node *n, int nshards,
                        const struct owner_hooks *hooks);

/* From here on placement and acquisition stop (the dispatcher is being
 * freed). */
void owner_close(struct owner *o);

/* Releases what owner_new() made. Pending Redis callbacks must then only
 * see -SIMAP_ESHUTDOWN (the rconn is freed after). Accepts NULL. */
void owner_free(struct owner *o);

/* Redis is usable (at start and after each reconnect): starts or resumes
 * membership and the incarnation, and takes every owned shard again. */
void owner_ready(struct owner *o);

/* Redis is lost: no lease is asked for or given back until owner_ready(). */
void owner_pause(struct owner *o);

/* 1 when owned shards may be acted on (claims, requeues, promotion, stats)
 * now: the incarnation is live and the loop was not frozen since its last
 * tick (owner_loop_ran()) long enough for our alive keys to expire (then it
 * fences, and returns 0). */
int owner_may_act(struct owner *o);

/* The dispatcher's tick ran at now (mono ms), after its owner_may_act():
 * the next call measures the loop's gap from here. */
void owner_loop_ran(struct owner *o, int64_t now);

/* From the dispatcher's tick: placement when due, acquisitions to retry,
 * releases of shards placed elsewhere whose calls are answered. */
void owner_tick(struct owner *o, int64_t now);

/* Shards whose lease this dispatcher holds. */
int owner_count(const struct owner *o);

/* Drain: stops every shard, releases the leases and deletes the alive keys;
 * then done(data), exactly once, never from inside this call. */
void owner_release_all(struct owner *o, void (*done)(void *data), void *data);

#endif
