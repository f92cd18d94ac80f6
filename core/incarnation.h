/*
 * core/incarnation: a node's right to act (docs/architecture.md section 3):
 * watchers hold user leases with it, dispatchers queue-shard leases. An
 * incarnation is one generation g from INCR si:gen; its token "<node>:<g>"
 * is what lease keys hold. It keeps one alive key per shard,
 * si:{k}:alive:<node>:<g>, set with PX 15 s and renewed with PEXPIRE every
 * 5 s, all shards in one pipeline (cost per node, not per user).
 *
 *   NONE --ready--> GEN (INCR si:gen) --> ALIVE (SET ... PX for each shard)
 *                                           |
 *                                           v
 *          +------------------------------ LIVE <--+ renew every 5 s (every
 *          | a renewal finds a key gone,      |     | second after a failed
 *          | or none succeeded for 10 s,      +-----+ round)
 *          | or incarnation_fence()
 *          v
 *        FENCED: on_fenced() (drop every session at once), DEL the old alive
 *        keys, then GEN again: a new generation, on_live(). When Redis was
 *        out of reach for that DEL, the new generation repeats it before
 *        setting its own keys, so the leases of the old one are free to
 *        re-acquire at once, not when its keys expire.
 *
 * The 10 s limit runs on the monotonic clock from the sending of the last
 * fully successful renewal, so it always ends before the 15 s keys can
 * expire: a frozen or cut-off node stops acting before anyone can take
 * its users, and a revived old generation can never act again (its token is
 * gone from every lease it lost).
 *
 * Runs on the loop; every Redis call goes through the node's rconn.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_INCARNATION_H
#define CORE_INCARNATION_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct incarnation;
struct rconn;

/* Alive keys live this long; renewals come every INCARNATION_RENEW_MS and
 * the incarnation fences itself after INCARNATION_FENCE_MS without one. */
#define INCARNATION_ALIVE_TTL_MS 15000
#define INCARNATION_RENEW_MS     5000
#define INCARNATION_FENCE_MS     10000

struct incarnation_hooks {
    /* A new generation's alive keys are all set: leases may be acquired. */
    void (*on_live)(struct incarnation *inc, void *data);
    /* The incarnation lost its right to act: drop every session now, without
     * touching Redis for them. why is static text. */
    void (*on_fenced)(struct incarnation *inc, const char *why, void *data);
    void *data;
};

/*
 * Returns a new incarnation (NONE) for node_id over shards shards; borrows
 * loop and rc, copies node_id and hooks. Release with incarnation_free().
 */
struct incarnation *incarnation_new(struct ev_loop *loop, struct rconn *rc, const char *node_id,
                                    int shards, const struct incarnation_hooks *hooks);

/* Stops its timer and releases it; pending Redis callbacks must then only
 * see -SIMAP_ESHUTDOWN (rconn freed after). Accepts NULL. */
void incarnation_free(struct incarnation *inc);

/* Redis is usable: takes a generation when there is none yet. Idempotent. */
void incarnation_start(struct incarnation *inc);

/* 1 while LIVE: scripts may be called with the token. */
int incarnation_is_live(const struct incarnation *inc);

/* The token "<node>:<g>" ("" before the first generation). Valid until the
 * next generation; copy it to keep it. */
const char *incarnation_token(const struct incarnation *inc);

/* The generation number (0 before the first). */
uint64_t incarnation_generation(const struct incarnation *inc);

/* Writes si:{k}:alive:<token> into out (outlen bytes). */
void incarnation_alive_key(const struct incarnation *inc, uint32_t k, char *out, size_t outlen);

/*
 * A script answered "stale" or -1 for this generation (gen, so a late answer
 * for an older generation is ignored): fence now. why is static text.
 */
void incarnation_fence(struct incarnation *inc, uint64_t gen, const char *why);

/*
 * Drain: stops renewing and deletes this generation's alive keys, so every
 * lease it still holds becomes free at once; calls done(data) when Redis has
 * answered (or failed). done is called exactly once, never from inside this
 * call.
 */
void incarnation_retire(struct incarnation *inc, void (*done)(void *data), void *data);

#endif
