/*
 * cmd/api/reindex: `superimap-api reindex`. Walks every hash (SCAN ... TYPE
 * hash) and enters users (si:{k}:user:<uid>) and partners (si:partner:<pid>)
 * in the search indexes, a SCAN batch per call of scripts/lua/ix_backfill.lua,
 * which reads each hash and adds its entries in one step. After a complete
 * pass it walks both indexes (ZRANGEBYLEX, a batch at a time) and drops
 * through scripts/lua/ix_prune.lua the entries whose record no longer holds
 * them (an api of a version without the indexes changed or deleted it after
 * they existed, during a rolling upgrade). The user and partner scripts keep
 * the indexes from then on, so a run is needed once, after upgrading from a
 * version without them; running it again changes nothing.
 *
 * Resumable: the SCAN cursor is saved in si:reindex after each batch, and a
 * run starts from it (--restart: from the beginning). A complete pass
 * writes cursor 0 and what it indexed.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/reindex.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/api/command.h"
#include "core/config.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/schema.h"
#include "core/scripts.h"
#include "core/time.h"

#define PROGRAM       "superimap-api reindex"
#define DEFAULT_BATCH 500
#define BATCH_MAX     10000

static const char usage[] =
    "Usage: superimap-api reindex [--batch N] [--max N] [--restart]\n"
    "Enters every user and partner in the admin dashboard's search indexes (si:ix:user,\n"
    "si:ix:partner), resuming where an interrupted run stopped. Needed once after\n"
    "upgrading from a version without them; the api keeps them from then on.\n"
    "  --batch N   keys asked of each SCAN, the unit a resumed run starts again from\n"
    "              (default 500, at most 10000)\n"
    "  --max N     stop after N SCAN batches (run again to continue)\n"
    "  --restart   start from the beginning, not from a saved position\n";

struct reindex {
    struct rsync *rs;
    uint32_t shards;
    long batch, max;
    long long users, partners, batches, dropped;
};

/* One SCAN batch's keys through ix_backfill. 0 or -SIMAP_ECONN. */
static int index_keys(struct reindex *ri, const redisReply *keys)
{
    if (keys->elements == 0)
        return 0;
    const char **argv = xcalloc(keys->elements, sizeof *argv);
    for (size_t i = 0; i < keys->elements; i++)
        argv[i] = keys->element[i]->str;
    redisReply *rep =
        rsync_script(ri->rs, "ix_backfill", (int)keys->elements, (int)keys->elements, argv, NULL);
    xfree(argv);
    int ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2;
    if (ok) {
        ri->users += rep->element[0]->integer;
        ri->partners += rep->element[1]->integer;
    }
    freeReplyObject(rep);
    return ok ? 0 : -SIMAP_ECONN;
}

/* The pass from cursor on; 0 when complete, 1 when stopped at --max (the
 * position saved), -SIMAP_ECONN. */
static int sweep(struct reindex *ri, char cursor[32])
{
    do {
        if (ri->max > 0 && ri->batches >= ri->max)
            return 1;
        redisReply *rep =
            rsync_command(ri->rs, "SCAN %s MATCH si:* COUNT %ld TYPE hash", cursor, ri->batch);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING || index_keys(ri, rep->element[1]) < 0) {
            freeReplyObject(rep);
            return -SIMAP_ECONN;
        }
        snprintf(cursor, 32, "%s", rep->element[0]->str);
        freeReplyObject(rep);
        ri->batches++;
        freeReplyObject(rsync_command(ri->rs, "HSET " SCHEMA_KEY_REINDEX " cursor %s", cursor));
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* The record of index member m (what follows its last \x1f) into key. 0,
 * or -1 when the member names none. */
static int record_key(const struct reindex *ri, int users, const char *m, char key[SCHEMA_KEY_MAX])
{
    const char *sep = strrchr(m, '\x1f');
    if (sep == NULL)
        return -1;
    const char *id = sep + 1;
    if (!users)
        return schema_key_partner(key, id) < 0 ? -1 : 0;
    return strlen(id) == SCHEMA_UID_LEN && schema_key_user(key, hrw_shard(id, ri->shards), id) >= 0
               ? 0
               : -1;
}

/* Walks index ix (si:ix:user when users, else si:ix:partner) a batch at a
 * time and drops through ix_prune the entries whose record no longer holds
 * them. 0 or -SIMAP_ECONN. */
static int prune(struct reindex *ri, const char *ix, int users)
{
    char *after = NULL;
    for (;;) {
        size_t alen = after != NULL ? strlen(after) : 0;
        char *min = xmalloc(alen + 2), count[24];
        snprintf(min, alen + 2, "%s%s", after != NULL ? "(" : "-", after != NULL ? after : "");
        snprintf(count, sizeof count, "%ld", ri->batch);
        const char *q[] = {"ZRANGEBYLEX", ix, min, "+", "LIMIT", "0", count};
        redisReply *page = rsync_command_argv(ri->rs, 7, q, NULL);
        xfree(min);
        xfree(after);
        after = NULL;
        if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(page);
            return -SIMAP_ECONN;
        }
        size_t n = page->elements;
        if (n == 0) {
            freeReplyObject(page);
            return 0;
        }
        const char **argv = xcalloc(2 * n + 1, sizeof *argv);
        char(*keys)[SCHEMA_KEY_MAX] = xcalloc(n, sizeof *keys);
        argv[0] = ix;
        for (size_t i = 0; i < n; i++) {
            if (record_key(ri, users, page->element[i]->str, keys[i]) < 0)
                snprintf(keys[i], sizeof keys[i], "si:ix:none");
            argv[1 + i] = keys[i];
            argv[1 + n + i] = page->element[i]->str;
        }
        redisReply *rep =
            rsync_script(ri->rs, "ix_prune", (int)n + 1, (int)(2 * n + 1), argv, NULL);
        xfree(keys);
        xfree(argv);
        int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
        if (ok)
            ri->dropped += rep->integer;
        freeReplyObject(rep);
        if (ok && n == (size_t)ri->batch)
            after = xstrndup(page->element[n - 1]->str, page->element[n - 1]->len);
        freeReplyObject(page);
        if (!ok)
            return -SIMAP_ECONN;
        if (after == NULL)
            return 0;
    }
}

static int run(struct reindex *ri, int restart)
{
    char cursor[32];
    if (command_resume(ri->rs, SCHEMA_KEY_REINDEX, restart, cursor) < 0)
        return -SIMAP_ECONN;
    int rc = sweep(ri, cursor);
    if (rc == 0)
        rc = prune(ri, SCHEMA_KEY_IX_USER, 1);
    if (rc == 0)
        rc = prune(ri, SCHEMA_KEY_IX_PARTNER, 0);
    if (rc != 0)
        return rc;
    redisReply *r = rsync_command(ri->rs,
                                  "HSET " SCHEMA_KEY_REINDEX " cursor 0 users %lld partners %lld "
                                  "dropped %lld at %lld",
                                  ri->users, ri->partners, ri->dropped, (long long)time_now_ms());
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
    freeReplyObject(r);
    return ok ? 0 : -SIMAP_ECONN;
}

/* A number of argument s from 1 to max, or -1. */
static long positive(const char *s, long max)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0 && v <= max ? v : -1;
}

int reindex_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct reindex ri = {.batch = DEFAULT_BATCH};
    int restart = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--restart") == 0) {
            restart = 1;
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc &&
                   (ri.batch = positive(argv[++i], BATCH_MAX)) > 0) {
            continue;
        } else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc &&
                   (ri.max = positive(argv[++i], 1L << 30)) > 0) {
            continue;
        } else {
            fprintf(stderr, PROGRAM ": unknown or bad argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    struct config cfg;
    if (command_begin(PROGRAM, "reindex", &cfg) != 0)
        return 2;
    ri.shards = (uint32_t)cfg.shards;
    ri.rs = command_redis(&cfg);
    int status = 3;
    if (ri.rs != NULL) {
        int64_t t0 = time_mono_ms();
        int rc = run(&ri, restart);
        if (rc < 0)
            fprintf(stderr, PROGRAM ": Redis failed: %s\n", rsync_errstr(ri.rs));
        printf("%s: %lld users and %lld partners indexed in %lld SCAN batches, %lld stale "
               "entries dropped, in %lld ms\n",
               rc < 0    ? "failed"
               : rc == 1 ? "stopped at --max (run again to continue)"
                         : "done",
               ri.users, ri.partners, ri.batches, ri.dropped, (long long)(time_mono_ms() - t0));
        status = rc < 0 ? 3 : 0;
    }
    rsync_free(ri.rs);
    scripts_shutdown();
    log_shutdown();
    return status;
}
