/*
 * core/fleet: membership and placement of a role's nodes
 * (docs/architecture.md section 3). Watchers place
 * users with it, dispatchers queue shards.
 *
 * Placement (pure, fleet_place()): weighted rendezvous hashing (core/hrw)
 * over the live, active nodes, weight = capacity, with bounded load: units
 * are taken in the order of their hrw_hash64() (then id; a fixed pseudo-random
 * order, cheaper to sort than strings) and each goes to the best-ranked node
 * that still has room; a unit no node has room for is overflow (reported,
 * never dropped silently). Nodes are sorted by id and units by that order
 * first, so every node computes the same answer from the same inputs,
 * whatever order it read them in.
 *
 * Membership (struct fleet): the role's zset (si:watchers, si:dispatchers:
 * node id -> heartbeat ms in Redis TIME, written by core/node every 5 s) and
 * each live node's si:node:<id> hash (capacity, state). A node is live while
 * its heartbeat is within FLEET_DEAD_MS of Redis TIME, and active unless its
 * state is "draining". Time Redis was out of this node's reach does not
 * count: after a failed command, the span from Redis' last answer to its
 * next TIME is a gap nobody may have been able to beat in (Redis restarted,
 * say), and a beat from before the gap counts as that much later (up to
 * the gap's end). So the first node back after an outage longer than the
 * dead limit does not find itself alone and place every unit on itself;
 * a node that died meanwhile is dropped at most the gap's length later.
 * Likewise a beat read once is not forgotten when Redis comes back from an
 * older state (a crash that lost its last writes): the newer one counts.
 * The zset and hashes are read in full:
 *   - when the role's epoch counter si:<role>:epoch changed (polled with
 *     one GET every FLEET_EPOCH_POLL_MS; fleet_announce() INCRs it when this
 *     node joins or changes state, so the others re-read at once),
 *   - every FLEET_FULL_READ_MS, and when the oldest heartbeat read would
 *     pass the dead limit sooner (a dead node is noticed right after it
 *     expires, not up to 10 s later).
 * A change of the live, active set (ids, capacities) calls on_change.
 *
 * Runs on the loop; every Redis call goes through the caller's rconn.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_FLEET_H
#define CORE_FLEET_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct fleet;
struct rconn;

/* Silence after which a node is dead, poll period of the epoch counter and
 * period of the full read. */
#define FLEET_DEAD_MS       15000
#define FLEET_EPOCH_POLL_MS 1000
#define FLEET_FULL_READ_MS  10000

/* Longest node id kept. */
#define FLEET_ID_MAX 128

/* ---- Placement ---- */

/* A candidate node. The caller owns id. */
struct fleet_node {
    const char *id;    /* NUL-terminated, unique */
    uint32_t capacity; /* units it takes at most; also its HRW weight; 0: none */
};

/*
 * Places m units (ids, NUL-terminated; the caller owns them) on the n nodes.
 * Writes owner[i], the index into nodes of unit i's node, or -1 when no node
 * has room (overflow). The result depends only on the set of (id, capacity)
 * pairs and unit ids, not on their order in the arrays. With room for every
 * unit, a node gets about capacity/sum(capacities) of them. Writes the
 * number of overflow units to *overflow when not NULL.
 * Returns 0, or -SIMAP_EINVAL when nodes, units or owner is NULL with a
 * non-zero count, or an id is NULL.
 * Cost: O(m log m) string compares plus O(m * n) hash mixes and one
 * logarithm per unit and distinct capacity; allocates
 * O(m + n) scratch memory.
 */
int fleet_place(const struct fleet_node *nodes, size_t n, const char *const *units, size_t m,
                int32_t *owner, size_t *overflow);

/*
 * fleet_place() with units taken in the order of ranks[i] first (lower
 * first; NULL: all equal), then as fleet_place() does. When the nodes cannot
 * take every unit, the units ranked last overflow, so a caller that ranks
 * units by when they were admitted keeps overflow sticky: a unit admitted
 * into a full fleet overflows itself instead of pushing out one placed
 * before it, and room freed goes to the longest waiting. The order matters
 * only where a node fills up (who spills to a next-best node, who
 * overflows): while every node has room, each unit gets its best node.
 */
int fleet_place_ranked(const struct fleet_node *nodes, size_t n, const char *const *units,
                       const int64_t *ranks, size_t m, int32_t *owner, size_t *overflow);

/* ---- Membership ---- */

/* A live node as last read. */
struct fleet_member {
    char id[FLEET_ID_MAX];
    uint32_t capacity;    /* si:node:<id> capacity (0 when absent or bad) */
    int draining;         /* state is "draining" */
    int64_t heartbeat_ms; /* Redis TIME of its last beat (the newest ever read) */
};

struct fleet_hooks {
    /* The live, active set or a capacity changed (also after the first
     * read). Read it with fleet_nodes(). */
    void (*on_change)(struct fleet *f, void *data);
    void *data;
};

struct fleet_opts {
    const char *role;    /* "watcher" or "dispatcher"; zset si:<role>s, epoch si:<role>:epoch */
    const char *self_id; /* this node's id */
    int dead_ms;         /* <= 0: FLEET_DEAD_MS */
    int epoch_poll_ms;   /* <= 0: FLEET_EPOCH_POLL_MS */
    int full_read_ms;    /* <= 0: FLEET_FULL_READ_MS */
};

/* Returns a new membership view (empty, not loaded); borrows loop and rc,
 * copies opts and hooks. Release with fleet_free(). */
struct fleet *fleet_new(struct ev_loop *loop, struct rconn *rc, const struct fleet_opts *opts,
                        const struct fleet_hooks *hooks);

/* Stops its timer and releases it; pending Redis callbacks then only see
 * -SIMAP_ESHUTDOWN (the rconn is freed after). Accepts NULL. */
void fleet_free(struct fleet *f);

/* Redis is usable: starts the polling, and on the next loop iteration
 * (after the node's first heartbeat, sent from the same ready callback)
 * announces this node (fleet_announce()). Idempotent. */
void fleet_start(struct fleet *f);

/* This node joined or changed state (draining): INCRs the epoch so every
 * node re-reads, and re-reads here too. */
void fleet_announce(struct fleet *f);

/* Re-reads the membership now (e.g. this node's own entry was missing). A
 * read in flight is followed by another one. */
void fleet_refresh(struct fleet *f);

/* 1 once a full read has completed. */
int fleet_loaded(const struct fleet *f);

/* Returns the live members (draining ones too), sorted by id, and their
 * number in *n. Valid until the next loop iteration. */
const struct fleet_member *fleet_members(const struct fleet *f, size_t *n);

/* Returns the live, active members with capacity > 0 as placement nodes,
 * sorted by id, and their number in *n. Valid until the next loop
 * iteration. */
const struct fleet_node *fleet_nodes(const struct fleet *f, size_t *n);

/* Increases by one at each on_change. */
uint64_t fleet_version(const struct fleet *f);

#endif
