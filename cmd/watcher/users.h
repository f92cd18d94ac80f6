/*
 * cmd/watcher/users: the users this watcher should consider, kept in memory
 * (docs/architecture.md section 4): loaded from every shard's
 * si:{k}:users zset, then kept current from the si:changes stream, read with
 * XREAD (no BLOCK: the node's one rconn is shared) every second, with a full
 * resync every few minutes that catches anything the stream lost (it is
 * trimmed with MAXLEN ~).
 *
 * A stream entry names a user (uid, op); whatever the op, the registry asks
 * the user's shard zset (ZSCORE) and adds or removes the user to match,
 * so entries may be replayed or reordered without harm. An "update", an
 * "archive" or a "restore" of a user that is a member when asked is
 * reported as a change (its credentials or provider may differ, or an
 * archive and a restore read in one poll raised its cursor_epoch: the
 * session starts again).
 *
 * Each user carries its score there, the time it was admitted (scripts/lua/
 * prelude/admit.lua), by which the lease manager ranks users for placement.
 *
 * Resync: the stream position is noted first, then every shard zset is read
 * (ZRANGE WITHSCORES, pipelined); users seen are added, users not seen in any are
 * removed (only when every read succeeded), then the stream is read again
 * from the noted position, so a change made during the resync is applied
 * after it.
 *
 * Runs on the loop. Hooks are called from Redis reply callbacks.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_USERS_H
#define CMD_WATCHER_USERS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct pool;
struct rconn;
struct users;

/* Longest user id accepted from Redis (schema ids are 24 hex digits). */
#define USERS_UID_MAX 64

/* Full resync period. */
#define USERS_RESYNC_MS (5 * 60 * 1000)
/* Change stream poll period. */
#define USERS_POLL_MS   1000

/* One user to watch. Owned by the registry; data belongs to the hooks. */
struct user_entry {
    struct user_entry *next; /* internal: hash chain */
    uint32_t k;              /* shard */
    uint32_t seen;           /* internal: resync mark */
    int64_t admitted;        /* its si:{k}:users score: ms it was admitted */
    void *data;              /* the lease manager's state for this user */
    char uid[];              /* NUL-terminated */
};

struct users_hooks {
    /* A user joined the set (its entry is in the registry already). */
    void (*on_add)(struct user_entry *u, void *data);
    /* A user left the set; the entry is freed when this returns. */
    void (*on_remove)(struct user_entry *u, void *data);
    /* A member's record was updated: restart what depends on it. */
    void (*on_change)(struct user_entry *u, void *data);
    void *data;
};

/* Returns a new, empty registry; borrows loop, rc and pool (the entries'
 * memory: it must outlive the registry), copies hooks. */
struct users *users_new(struct ev_loop *loop, struct rconn *rc, struct pool *pool, int shards,
                        const struct users_hooks *hooks);

/* Releases the registry and every entry, without calling on_remove (the
 * caller frees its data first with users_foreach()). Pending Redis callbacks
 * must only see -SIMAP_ESHUTDOWN afterwards. Accepts NULL. */
void users_free(struct users *us);

/* Redis is usable: starts the first load, or resumes polling. */
void users_start(struct users *us);

/* Number of users in the registry. */
size_t users_count(const struct users *us);

/* Returns the entry of uid, or NULL. */
struct user_entry *users_find(const struct users *us, const char *uid);

/* Calls fn for every entry, in no particular order. fn must not add or
 * remove users. */
void users_foreach(struct users *us, void (*fn)(struct user_entry *u, void *data), void *data);

/* 1 once the first full load has completed. */
int users_loaded(const struct users *us);

#endif
