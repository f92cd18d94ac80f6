/*
 * cmd/watcher/leases: the watcher's lease manager, beside the dispatcher's
 * cmd/dispatcher/owner.c. It decides which users this watcher holds and
 * runs one imap_session for each:
 *
 *   users.c (who should be watched) + core/fleet (which watchers are live
 *   and active, their capacities) --placement (fleet_place, within a
 *   second of a membership change or of users coming or going, and every
 *   60 s anyway; computed on a thread of its own through core/offload, so
 *   a million users do not stall the sessions, and applied on the
 *   loop)--> each user is
 *        another watcher's: ELSEWHERE (a session held here is handed over:
 *             LOGOUT, lease_release, at most SUPERIMAP_MAX_MOVES_PER_SEC)
 *        nobody's (the fleet is over capacity): UNASSIGNED (state
 *             "unassigned" in the user hash, a gauge, a log line)
 *        ours: PENDING --incarnation live--> ACQUIRING (lease_acquire)
 *               1: HELD, an imap_session runs
 *               0: WAITING, another live incarnation holds it; tried again
 *                  every LEASE_RETRY_MS (its holder may die: then its alive
 *                  key expires and the lease is ours)
 *              -1: our alive key is gone: fence
 *   fence (core/incarnation): every session dropped at once, every held
 *   user back to PENDING, taken again under the new generation
 *   drain (SIGTERM): sessions LOGOUT, leases released (core/lease's drain),
 *   alive keys deleted
 *   Redis reconnect: every held session confirms its lease and compares its
 *   cursor with Redis' (imap_session_recheck): a Redis restarted from an
 *   older state makes it fetch again what Redis lost
 *
 * Every watcher computes the same placement from the same inputs; while
 * views differ for a moment (a join seen by one watcher first), leases keep
 * two watchers from ever holding one user at once: the new owner waits
 * (WAITING) until the old one releases or dies.
 *
 * Depends on: cmd/watcher/users (the registry it makes and hooks into),
 * cmd/watcher/imap_session, core/fleet, core/incarnation, core/lease,
 * core/offload, core/rconn, core/metrics; the struct watcher it is given (loop, Redis,
 * config, metrics), whose inc and users it fills in and whose on_lost_lease
 * hook it sets. Runs on the loop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_LEASES_H
#define CMD_WATCHER_LEASES_H

struct leases;
struct metrics;
struct watcher;

/*
 * Returns a new lease manager for w, registering its metrics in metrics and
 * making w->inc (the incarnation) and w->users (the users registry), whose
 * hooks it takes; starts its one-second tick. Nothing is asked of Redis
 * before leases_ready(). Release with leases_free().
 */
struct leases *leases_new(struct watcher *w, struct metrics *metrics);

/* Redis answers (at start, and again after each reconnect): takes a
 * generation, reads users and fleet; after a reconnect every held session
 * checks its lease and cursor. */
void leases_ready(struct leases *l);

/*
 * Drain: logs every session out, releases every lease, deletes the alive
 * keys, then calls done(data) (exactly once, from the loop, unless the
 * process stops first). No lease is taken afterwards.
 */
void leases_drain(struct leases *l, void (*done)(void *data), void *data);

/* Users placement gives this watcher, and users over the fleet's capacity. */
int leases_placed(const struct leases *l);
int leases_unassigned(const struct leases *l);

/* Drops every session at once, frees the registry, the fleet view, the
 * incarnation and l (w->users and w->inc become NULL). Accepts NULL. */
void leases_free(struct leases *l);

#endif
