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

struct dispatcher;

#define OWNER_REBALANCE_MS 10000
#define OWNER_RETRY_MS     1000 /* a shard held by another live dispatcher */

/* Sets up membership, incarnation and metrics for d (its shards exist). */
void owner_init(struct dispatcher *d);

/* Releases what owner_init() made. Pending Redis callbacks must then only
 * see -SIMAP_ESHUTDOWN (the rconn is freed after). */
void owner_free(struct dispatcher *d);

/* Redis is usable (at start and after each reconnect): starts or resumes
 * membership and the incarnation, and takes every owned shard again. */
void owner_ready(struct dispatcher *d);

/* 1 when owned shards may be acted on (claims, requeues, promotion, stats)
 * now: the incarnation is live and the loop was not frozen since its last
 * tick long enough for our alive keys to expire (then it fences, and
 * returns 0). d->last_tick is the dispatcher's to set. */
int owner_may_act(struct dispatcher *d);

/* From the dispatcher's tick: placement when due, acquisitions to retry,
 * releases of shards placed elsewhere whose calls are answered. */
void owner_tick(struct dispatcher *d, int64_t now);

/* Drain: stops every shard, releases the leases and deletes the alive keys;
 * then done(data), exactly once, never from inside this call. */
void owner_release_all(struct dispatcher *d, void (*done)(void *data), void *data);

#endif
