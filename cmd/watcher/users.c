/*
 * cmd/watcher/users: the registry of users to watch, from the shards' users
 * sets and the si:changes stream (see users.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/hrw.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

#define XREAD_COUNT     500
#define RESYNC_RETRY_MS 5000
#define STREAM_ID_MAX   48

enum sync_phase {
    SYNC_NONE,     /* not loaded yet */
    SYNC_POSITION, /* XREVRANGE: where the stream ends now */
    SYNC_SETS,     /* ZRANGE of every shard */
    SYNC_DONE,     /* polling the stream */
};

struct users {
    struct ev_loop *loop;
    struct rconn *rc;
    struct pool *pool; /* the entries' memory */
    int shards;
    struct users_hooks hooks;

    /* Intrusive chaining (the entry is the node): core/strmap's separate
     * entry per key cost about 64 bytes more per watched user. */
    struct user_entry **buckets;
    size_t nbuckets; /* a power of 2 */
    size_t count;

    ev_timer tick;
    enum sync_phase phase;
    int loaded;           /* the first full load completed */
    uint32_t sync_mark;   /* entries seen by the current resync carry it */
    int sync_remaining;   /* ZRANGE replies still due */
    int sync_failed;      /* one of them failed */
    int64_t next_sync_ms; /* monotonic time of the next full resync */
    int reading;          /* XREAD in flight */
    int checks;           /* ZSCORE replies still due */
    char last_id[STREAM_ID_MAX];
};

/* ---- Table ---- */

static size_t bucket_of(const struct users *us, const char *uid)
{
    return (size_t)hrw_fnv1a64(uid, strlen(uid)) & (us->nbuckets - 1);
}

struct user_entry *users_find(const struct users *us, const char *uid)
{
    for (struct user_entry *u = us->buckets[bucket_of(us, uid)]; u != NULL; u = u->next)
        if (strcmp(u->uid, uid) == 0)
            return u;
    return NULL;
}

static void entry_release(struct users *us, struct user_entry *u)
{
    pool_release(us->pool, u, sizeof *u + strlen(u->uid) + 1);
}

static void grow(struct users *us)
{
    size_t n = us->nbuckets * 2;
    struct user_entry **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < us->nbuckets; i++) {
        struct user_entry *u = us->buckets[i];
        while (u != NULL) {
            struct user_entry *next = u->next;
            size_t j = (size_t)hrw_fnv1a64(u->uid, strlen(u->uid)) & (n - 1);
            u->next = b[j];
            b[j] = u;
            u = next;
        }
    }
    xfree(us->buckets);
    us->buckets = b;
    us->nbuckets = n;
}

/* A user id we accept: 1 to USERS_UID_MAX letters, digits, '-' or '_'. */
static int uid_ok(const char *s, size_t n)
{
    if (n == 0 || n > USERS_UID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Parses a si:{k}:users score (ms, an integer; Redis may print it as a
 * double); a malformed one ranks first, as 0. */
static int64_t score_ms(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return 0;
    char *end;
    double v = strtod(r->str, &end);
    if (end == r->str || v != v || v < 0 || v > 9e15)
        return 0;
    return (int64_t)v;
}

static struct user_entry *add(struct users *us, const char *uid, size_t n, int64_t admitted)
{
    char tmp[USERS_UID_MAX + 1];
    memcpy(tmp, uid, n);
    tmp[n] = '\0';
    struct user_entry *u = users_find(us, tmp);
    if (u != NULL) {
        u->seen = us->sync_mark;
        u->admitted = admitted;
        return u;
    }
    if (us->count >= us->nbuckets)
        grow(us);
    u = pool_alloc(us->pool, sizeof *u + n + 1);
    memcpy(u->uid, tmp, n + 1);
    u->admitted = admitted;
    u->k = hrw_shard(u->uid, (uint32_t)us->shards);
    u->seen = us->sync_mark;
    size_t b = bucket_of(us, u->uid);
    u->next = us->buckets[b];
    us->buckets[b] = u;
    us->count++;
    if (us->hooks.on_add != NULL)
        us->hooks.on_add(u, us->hooks.data);
    return u;
}

static void remove_entry(struct users *us, struct user_entry *u)
{
    struct user_entry **pp = &us->buckets[bucket_of(us, u->uid)];
    while (*pp != u)
        pp = &(*pp)->next;
    *pp = u->next;
    us->count--;
    if (us->hooks.on_remove != NULL)
        us->hooks.on_remove(u, us->hooks.data);
    entry_release(us, u);
}

size_t users_count(const struct users *us)
{
    return us->count;
}

int users_loaded(const struct users *us)
{
    return us->loaded;
}

void users_foreach(struct users *us, void (*fn)(struct user_entry *u, void *data), void *data)
{
    for (size_t i = 0; i < us->nbuckets; i++)
        for (struct user_entry *u = us->buckets[i]; u != NULL; u = u->next)
            fn(u, data);
}

/* ---- Full resync ---- */

static void sync_finish(struct users *us)
{
    if (us->sync_failed) {
        log_warn("user resync incomplete; retrying users=%zu", us->count);
        us->next_sync_ms = time_mono_ms() + RESYNC_RETRY_MS;
    } else {
        size_t removed = 0;
        for (size_t i = 0; i < us->nbuckets; i++) {
            struct user_entry *u = us->buckets[i];
            while (u != NULL) {
                struct user_entry *next = u->next;
                if (u->seen != us->sync_mark) {
                    remove_entry(us, u);
                    removed++;
                }
                u = next;
            }
        }
        if (!us->loaded)
            log_info("users loaded users=%zu shards=%d", us->count, us->shards);
        else if (removed > 0)
            log_info("user resync removed users no longer listed removed=%zu users=%zu", removed,
                     us->count);
        us->loaded = 1;
        us->next_sync_ms = time_mono_ms() + USERS_RESYNC_MS;
    }
    us->phase = SYNC_DONE;
}

static void on_members(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct users *us = privdata;
    us->sync_remaining--;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        us->sync_failed = 1;
    } else {
        /* member, score, member, score, ... */
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *e = reply->element[i];
            if (e->type != REDIS_REPLY_STRING || !uid_ok(e->str, e->len)) {
                log_warn("ignoring a malformed user id in a users zset len=%zu",
                         e->type == REDIS_REPLY_STRING ? e->len : 0);
                continue;
            }
            add(us, e->str, e->len, score_ms(reply->element[i + 1]));
        }
    }
    if (us->sync_remaining == 0)
        sync_finish(us);
}

/* Reads every shard's zset; sync_finish() runs when all have answered. */
static void read_sets(struct users *us)
{
    us->phase = SYNC_SETS;
    us->sync_mark++;
    us->sync_failed = 0;
    us->sync_remaining = 1; /* held until every ZRANGE is queued */
    for (int k = 0; k < us->shards; k++) {
        us->sync_remaining++;
        char users[SCHEMA_SHARD_KEY_MAX];
        schema_key_shard_users(users, (uint32_t)k);
        if (rconn_command(us->rc, on_members, us, "ZRANGE %s 0 -1 WITHSCORES", users) < 0) {
            us->sync_remaining--;
            us->sync_failed = 1;
        }
    }
    if (--us->sync_remaining == 0)
        sync_finish(us);
}

static void on_position(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct users *us = privdata;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        log_warn("cannot read the si:changes position err=\"%s\"",
                 err < 0 ? err_str(err) : "unexpected reply");
        us->phase = SYNC_NONE;
        return;
    }
    if (reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_ARRAY &&
        reply->element[0]->elements >= 1 &&
        reply->element[0]->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[0]->element[0]->len < STREAM_ID_MAX)
        snprintf(us->last_id, sizeof us->last_id, "%s", reply->element[0]->element[0]->str);
    else
        snprintf(us->last_id, sizeof us->last_id, "0-0");
    read_sets(us);
}

/* The first load starts the stream where it ends now (older changes are in
 * the sets); later resyncs keep the position already read, so changes made
 * meanwhile are applied again after the sets. */
static void start_sync(struct users *us)
{
    if (us->last_id[0] != '\0') {
        read_sets(us);
        return;
    }
    if (rconn_command(us->rc, on_position, us, "XREVRANGE %s + - COUNT 1", SCHEMA_KEY_CHANGES) == 0)
        us->phase = SYNC_POSITION;
}

/* ---- Change stream ---- */

static void poll_changes(struct users *us);

struct check {
    struct users *us;
    int is_update;
    char uid[];
};

static void on_member_check(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct check *c = privdata;
    if (err == -SIMAP_ESHUTDOWN) {
        xfree(c);
        return;
    }
    struct users *us = c->us;
    us->checks--;
    if (err < 0 || reply == NULL ||
        (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
        /* The next resync sets it right. */
        log_warn("cannot check a changed user uid=%s err=\"%s\"", c->uid,
                 err < 0 ? err_str(err) : "unexpected reply");
        us->next_sync_ms = time_mono_ms() + RESYNC_RETRY_MS;
        xfree(c);
        return;
    }
    struct user_entry *u = users_find(us, c->uid);
    if (reply->type == REDIS_REPLY_STRING) {
        if (u == NULL) {
            log_info("user added uid=%s", c->uid);
            add(us, c->uid, strlen(c->uid), score_ms(reply));
        } else {
            u->admitted = score_ms(reply); /* a restore admits it again */
            if (c->is_update && us->hooks.on_change != NULL)
                us->hooks.on_change(u, us->hooks.data);
        }
    } else if (u != NULL) {
        log_info("user removed uid=%s", c->uid);
        remove_entry(us, u);
    }
    xfree(c);
}

/* Returns the value of field name in a stream entry's field list, or NULL. */
static const redisReply *entry_field(const redisReply *fields, const char *name)
{
    if (fields == NULL || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];
        if (f->type == REDIS_REPLY_STRING && strcmp(f->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    }
    return NULL;
}

static void on_changes(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct users *us = privdata;
    us->reading = 0;
    if (err < 0 || reply == NULL) {
        log_debugc("redis", "XREAD si:changes failed err=\"%s\"", err_str(err));
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
        return; /* nil: nothing new */
    const redisReply *stream = reply->element[0];
    if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2 ||
        stream->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    const redisReply *entries = stream->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= STREAM_ID_MAX)
            continue;
        snprintf(us->last_id, sizeof us->last_id, "%s", e->element[0]->str);
        const redisReply *uid = entry_field(e->element[1], "uid");
        const redisReply *op = entry_field(e->element[1], "op");
        if (uid == NULL || !uid_ok(uid->str, uid->len)) {
            log_warn("ignoring a malformed si:changes entry id=%s", us->last_id);
            continue;
        }
        struct check *c = xcalloc(1, sizeof *c + uid->len + 1);
        c->us = us;
        /* An archive and a restore also change what a session loaded (its
         * cursor_epoch): read in one poll, both find the user a member and
         * would leave a session whose cursor writes are all refused. */
        c->is_update =
            op != NULL && (strcmp(op->str, "update") == 0 || strcmp(op->str, "archive") == 0 ||
                           strcmp(op->str, "restore") == 0);
        memcpy(c->uid, uid->str, uid->len);
        uint32_t k = hrw_shard(c->uid, (uint32_t)us->shards);
        char users[SCHEMA_SHARD_KEY_MAX];
        schema_key_shard_users(users, k);
        if (rconn_command(us->rc, on_member_check, c, "ZSCORE %s %s", users, c->uid) < 0) {
            xfree(c);
            us->next_sync_ms = time_mono_ms() + RESYNC_RETRY_MS;
            continue;
        }
        us->checks++;
    }
    /* A full read: more is waiting (a bulk import); read on at once. */
    if (entries->elements >= XREAD_COUNT && us->phase == SYNC_DONE)
        poll_changes(us);
}

static void poll_changes(struct users *us)
{
    char count[16];
    snprintf(count, sizeof count, "%d", XREAD_COUNT);
    if (rconn_command(us->rc, on_changes, us, "XREAD COUNT %s STREAMS %s %s", count,
                      SCHEMA_KEY_CHANGES, us->last_id) == 0)
        us->reading = 1;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct users *us = w->data;
    if (!rconn_is_connected(us->rc))
        return;
    switch (us->phase) {
    case SYNC_NONE:
        start_sync(us);
        return;
    case SYNC_POSITION:
    case SYNC_SETS:
        return;
    case SYNC_DONE:
        break;
    }
    if (us->reading || us->checks > 0)
        return;
    if (time_mono_ms() >= us->next_sync_ms) {
        start_sync(us);
        return;
    }
    poll_changes(us);
}

/* ---- Life ---- */

struct users *users_new(struct ev_loop *loop, struct rconn *rc, struct pool *pool, int shards,
                        const struct users_hooks *hooks)
{
    struct users *us = xcalloc(1, sizeof *us);
    us->loop = loop;
    us->rc = rc;
    us->pool = pool;
    us->shards = shards;
    if (hooks != NULL)
        us->hooks = *hooks;
    us->nbuckets = 1024;
    us->buckets = xcalloc(us->nbuckets, sizeof *us->buckets);
    ev_timer_init(&us->tick, on_tick, USERS_POLL_MS / 1000.0, USERS_POLL_MS / 1000.0);
    us->tick.data = us;
    return us;
}

void users_free(struct users *us)
{
    if (us == NULL)
        return;
    ev_timer_stop(us->loop, &us->tick);
    for (size_t i = 0; i < us->nbuckets; i++) {
        struct user_entry *u = us->buckets[i];
        while (u != NULL) {
            struct user_entry *next = u->next;
            entry_release(us, u);
            u = next;
        }
    }
    xfree(us->buckets);
    xfree(us);
}

void users_start(struct users *us)
{
    if (!ev_is_active(&us->tick))
        ev_timer_start(us->loop, &us->tick);
    if (us->phase == SYNC_NONE)
        start_sync(us);
}
