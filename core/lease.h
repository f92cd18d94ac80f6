/*
 * core/lease: one unit's lease held under an incarnation
 * (docs/architecture.md section 3): a watcher's user (si:{k}:lease:<uid>) or a dispatcher's
 * queue shard (si:{k}:owner). What the watcher's lease manager
 * (cmd/watcher/leases.c) and the dispatcher's shard owner
 * (cmd/dispatcher/owner.c) do alike:
 *
 *   acquire  lease_acquire with the caller's alive key in the unit's shard
 *            and its token; the answer decoded by lease_answer_of():
 *              1 ACQUIRED  the lease is ours (it was free, ours already, or
 *                          its holder's alive key is gone: the holder died)
 *              0 BUSY      another live incarnation holds it: ask again later
 *             -1 FENCED    our own alive key is gone: lease_fence()
 *   release  lease_release: deletes the lease only if it is still ours
 *   drain    release every lease, then retire the incarnation (delete its
 *            alive keys) once Redis has answered them all
 *
 * Depends on: core/incarnation (token, alive keys, fence, retire),
 * core/rconn and the scripts lease_acquire.lua, lease_release.lua. Runs on
 * the loop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_LEASE_H
#define CORE_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "core/rconn.h"

struct incarnation;
struct lease_drain;
struct redisReply;

/* lease_acquire's answer. */
enum lease_answer {
    LEASE_ACQUIRED, /* 1 */
    LEASE_BUSY,     /* 0 */
    LEASE_FENCED,   /* -1 */
    LEASE_FAILED,   /* no answer (err < 0), an error reply, or another reply */
};

/* Decodes lease_acquire's reply (reply and err as given to an rconn_cb). */
enum lease_answer lease_answer_of(const struct redisReply *reply, int err);

/*
 * Sends lease_acquire for key (core/schema's schema_key_lease() or
 * schema_key_owner()), a unit of shard k, under inc's current token
 * and alive key; cb gets the reply (decode it with lease_answer_of()).
 * Returns 0, or a negative error when it cannot be queued (cb is then never
 * called).
 */
int lease_acquire(struct rconn *rc, const struct incarnation *inc, uint32_t k, const char *key,
                  rconn_cb *cb, void *privdata);

/* Sends lease_release for key under inc's current token; cb (may be NULL)
 * gets the reply (1 released, 0 not ours). Returns as rconn_script(). */
int lease_release(struct rconn *rc, const struct incarnation *inc, const char *key, rconn_cb *cb,
                  void *privdata);

/* lease_acquire answered FENCED for generation gen: fences inc (an answer
 * for an older generation is ignored by incarnation_fence()). */
void lease_fence(struct incarnation *inc, uint64_t gen);

/*
 * Drain: starts releasing every lease of inc. Release each with
 * lease_drain_release(), then call lease_drain_finish() once: when Redis
 * has answered every release (at once if there were none), inc is retired
 * (incarnation_retire(inc, retired, data): its alive keys deleted, so what
 * it still held is free at once) and the drain freed. retired is called
 * exactly once, never from inside these calls, unless the process stops
 * first (rconn freed: then never).
 */
struct lease_drain *lease_drain_start(struct incarnation *inc, void (*retired)(void *data),
                                      void *data);

/* Sends lease_release for key as part of the drain. Returns as
 * lease_release(). */
int lease_drain_release(struct lease_drain *dr, struct rconn *rc, const char *key);

/* Every release is sent: retire once they are answered. dr is freed
 * eventually; do not use it after this call. */
void lease_drain_finish(struct lease_drain *dr);

#endif
