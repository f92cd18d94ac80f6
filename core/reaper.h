/*
 * core/reaper: a peer that died is noticed by its closed Redis connection,
 * not by its alive keys' expiry (docs/architecture.md section 3).
 *
 * A process that dies (kill -9, a crash, an OOM kill) has its sockets closed
 * by the kernel at once, and Redis drops its connections. Each node names
 * its control connection "si:<role>:<token>" (CLIENT SETNAME, renamed at
 * every new generation), and every REAPER_POLL_MS reads CLIENT LIST. A peer
 * of the same role that is a member of the fleet, whose named connection
 * this node has seen and now does not see for REAPER_GRACE_MS, has died:
 * its generation's alive keys are deleted, it leaves the role's zset and
 * the epoch is bumped, all in one script fenced by this node's own alive key
 * (node_reap.lua). Its leases are then free (lease_acquire takes a lease
 * whose holder's alive key is gone) and every node re-reads the membership
 * at its next epoch poll: its users (or shards) are placed and taken at
 * once, not after the alive keys' 15 s.
 *
 * What stays with the alive keys and self-fencing: a peer that is frozen
 * (SIGSTOP), partitioned from Redis or whose loop hangs keeps its
 * connection open in Redis' eyes, so it is never reaped here. A peer whose
 * connection dropped for longer than the grace but which is alive (Redis
 * closed it, a network cut) is reaped: it finds its alive keys gone at its
 * next renewal and fences itself (a new generation), the same as a
 * partition, with two sessions for one user for at most a renewal period.
 *
 * Observations are forgotten whenever this node's own connection is new (a
 * reconnect, or a restart of Redis), since every peer then reconnects too
 * and may take a moment longer than the grace; a peer is judged only from
 * listings made on one connection that carried this node's name. The
 * reaper acts only while this node's incarnation is live, and the script
 * changes nothing when the peer's alive keys are gone already (it left
 * cleanly or fenced itself, or Redis lost them in a restart).
 *
 * Runs on the loop; every Redis call goes through the node's rconn.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_REAPER_H
#define CORE_REAPER_H

struct ev_loop;
struct fleet;
struct incarnation;
struct metrics;
struct reaper;
struct rconn;

#define REAPER_POLL_MS  500
#define REAPER_GRACE_MS 1000

struct reaper_opts {
    const char *role;        /* "watcher" or "dispatcher" */
    const char *self_id;     /* this node's id */
    int shards;              /* alive keys per generation */
    int grace_ms;            /* <= 0: REAPER_GRACE_MS */
    int poll_ms;             /* <= 0: REAPER_POLL_MS */
    struct metrics *metrics; /* superimap_fleet_peers_reaped_total; may be NULL */
};

/* Borrows loop, rc, fleet and inc (they outlive the reaper); copies opts. */
struct reaper *reaper_new(struct ev_loop *loop, struct rconn *rc, struct fleet *fleet,
                          struct incarnation *inc, const struct reaper_opts *opts);

/* Starts the polling (idempotent). */
void reaper_start(struct reaper *r);

/* This node's incarnation just went live under a generation: names the
 * connection now rather than at the next poll, so that peers see it (and
 * could reap it) as early as possible. */
void reaper_live(struct reaper *r);

/* Stops it; answers still owed are dropped. Accepts NULL. */
void reaper_free(struct reaper *r);

#endif
