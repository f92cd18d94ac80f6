/*
 * cmd/api/rekey: `superimap-api rekey`. Walks every hash with encrypted
 * fields (SCAN ... TYPE hash: partners' api_key, api_key_old,
 * webhook_secret, webhook_secret_old; connections' oauth2_client_secret;
 * users' secret and oauth2_access_token; events' payload, core/schema.h),
 * opens each envelope still under an old key id of the ring
 * (crypto_needs_rotation()) and seals it again under the current key, put
 * in place by scripts/lua/rekey_swap.lua (compare and set per hash, so a
 * field written meanwhile keeps its newer value).
 *
 * Resumable: the SCAN cursor is saved in si:rekey after each batch, and a
 * run starts from it (--restart: from the beginning); rotating an envelope
 * twice is impossible, since only old-key envelopes are touched. Paced at
 * --rate secrets per second. si:rekey's `old` field is what
 * superimap_secrets_old_key exports (cmd/api/states.c): the secrets under
 * an old key that the last complete pass left (--count: all it found,
 * writing nothing).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/rekey.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cmd/api/command.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/schema.h"
#include "core/scripts.h"
#include "core/time.h"

#define PROGRAM       "superimap-api rekey"
#define REKEY_STATE   SCHEMA_KEY_REKEY
#define FIELDS_MAX    4
#define DEFAULT_RATE  500
#define DEFAULT_BATCH 500

static const char usage[] =
    "Usage: superimap-api rekey [--rate N] [--batch N] [--max N] [--count] [--restart]\n"
    "Re-encrypts every secret still under an old key (SUPERIMAP_ENCRYPTION_OLD_KEYS) with\n"
    "SUPERIMAP_ENCRYPTION_KEY, resuming where an interrupted run stopped.\n"
    "  --rate N    at most N secrets re-encrypted per second (default 500)\n"
    "  --batch N   keys asked of each SCAN, the unit a resumed run starts again from\n"
    "              (default 500)\n"
    "  --max N     stop after N secrets (run again to continue)\n"
    "  --count     count the secrets under an old key; write nothing else\n"
    "  --restart   start from the beginning, not from a saved position\n";

struct rekey {
    struct rsync *rs;
    struct crypto_keys *keys;
    long rate, batch, max;
    int count_only;
    long rotated, old, failed, raced;
    int64_t t0;
};

/* The encrypted fields of hash key and the AAD of each, by the key's form;
 * returns how many (0: not a hash with secrets). */
static int fields_of(const char *key, const char *names[FIELDS_MAX],
                     char aads[FIELDS_MAX][SCHEMA_KEY_MAX])
{
    char a[SCHEMA_KEY_MAX], b[SCHEMA_KEY_MAX];
    unsigned k;
    int end = 0;
    if (sscanf(key, "si:partner:%127[^:]%n", a, &end) == 1 && key[end] == '\0') {
        static const char *const f[] = {"api_key", "api_key_old", "webhook_secret",
                                        "webhook_secret_old"};
        for (int i = 0; i < 4; i++) {
            names[i] = f[i];
            if (schema_aad_partner(aads[i], a, f[i]) < 0)
                return 0;
        }
        return 4;
    }
    if (sscanf(key, "si:conn:%127[^:]:%127[^:]%n", a, b, &end) == 2 && key[end] == '\0') {
        names[0] = "oauth2_client_secret";
        return schema_aad_conn_secret(aads[0], a, b) < 0 ? 0 : 1;
    }
    if (sscanf(key, "si:{%u}:user:%127[^:]%n", &k, a, &end) == 2 && key[end] == '\0') {
        names[0] = "secret";
        names[1] = "oauth2_access_token";
        return schema_aad_user_secret(aads[0], a) < 0 ||
                       schema_aad_user_access_token(aads[1], a) < 0
                   ? 0
                   : 2;
    }
    if (sscanf(key, "si:{%u}:evt:%n", &k, &end) == 1 && end > 0 && key[end] != '\0') {
        names[0] = "payload";
        return schema_aad_event(aads[0], key + end) < 0 ? 0 : 1;
    }
    return 0;
}

/* Sleeps as long as the run is ahead of --rate. */
static void pace(const struct rekey *rk)
{
    int64_t due = rk->t0 + (int64_t)rk->rotated * 1000 / rk->rate;
    int64_t now = time_mono_ms();
    if (due > now) {
        struct timespec ts = {.tv_sec = (due - now) / 1000,
                              .tv_nsec = (long)((due - now) % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Re-encrypts the old-key secrets of hash key. 0, or -SIMAP_ECONN. */
static int rekey_hash(struct rekey *rk, const char *key)
{
    const char *names[FIELDS_MAX];
    char aads[FIELDS_MAX][SCHEMA_KEY_MAX];
    int n = fields_of(key, names, aads);
    if (n == 0)
        return 0;
    const char *argv[2 + FIELDS_MAX];
    argv[0] = "HMGET";
    argv[1] = key;
    for (int i = 0; i < n; i++)
        argv[2 + i] = names[i];
    redisReply *rep = rsync_command_argv(rk->rs, 2 + n, argv, NULL);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)n) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    const char *swap[1 + 3 * FIELDS_MAX];
    char *made[FIELDS_MAX];
    int m = 0, nswap = 1;
    swap[0] = key;
    for (int i = 0; i < n; i++) {
        const redisReply *v = rep->element[i];
        if (v->type != REDIS_REPLY_STRING || v->len == 0 ||
            crypto_needs_rotation(rk->keys, v->str) == 0)
            continue;
        rk->old++;
        if (rk->count_only)
            continue;
        char *plain = NULL, *sealed = NULL;
        size_t len = 0;
        if (crypto_decrypt(rk->keys, v->str, aads[i], &plain, &len) < 0 ||
            crypto_encrypt(rk->keys, plain, len, aads[i], &sealed) < 0) {
            log_warn("rekey: cannot open a secret (an unknown key, or damaged) key=%s field=%s",
                     key, names[i]);
            rk->failed++;
        } else {
            made[m++] = sealed;
            swap[nswap++] = names[i];
            swap[nswap++] = v->str;
            swap[nswap++] = sealed;
        }
        if (plain != NULL) {
            crypto_wipe(plain, len);
            xfree(plain);
        }
    }
    int rc = 0;
    if (m > 0) {
        redisReply *r = rsync_script(rk->rs, "rekey_swap", 1, nswap, swap, NULL);
        if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
            rc = -SIMAP_ECONN;
        } else {
            rk->rotated += r->integer;
            rk->raced += m - r->integer;
        }
        freeReplyObject(r);
    }
    for (int i = 0; i < m; i++)
        xfree(made[i]);
    freeReplyObject(rep);
    if (m > 0)
        pace(rk);
    return rc;
}

/* The pass from cursor on; 0 when complete, 1 when stopped at --max (the
 * position saved), -SIMAP_ECONN. */
static int sweep(struct rekey *rk, char cursor[32])
{
    do {
        redisReply *rep =
            rsync_command(rk->rs, "SCAN %s MATCH si:* COUNT %ld TYPE hash", cursor, rk->batch);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(rep);
            return -SIMAP_ECONN;
        }
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            if (rk->max > 0 && rk->rotated >= rk->max) {
                /* Resume at this batch: what it already did is not old now. */
                freeReplyObject(rep);
                return 1;
            }
            if (rekey_hash(rk, keys->element[i]->str) < 0) {
                freeReplyObject(rep);
                return -SIMAP_ECONN;
            }
        }
        snprintf(cursor, 32, "%s", rep->element[0]->str);
        freeReplyObject(rep);
        if (!rk->count_only)
            freeReplyObject(rsync_command(rk->rs, "HSET " REKEY_STATE " cursor %s", cursor));
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static int run(struct rekey *rk, int restart)
{
    char cursor[32];
    if (command_resume(rk->rs, REKEY_STATE, rk->count_only || restart, cursor) < 0)
        return -SIMAP_ECONN;
    int rc = sweep(rk, cursor);
    if (rc != 0)
        return rc;
    /* A complete pass: what it left under an old key, for the metric. */
    long left = rk->count_only ? rk->old : rk->failed;
    redisReply *r = rsync_command(rk->rs, "HSET " REKEY_STATE " cursor 0 old %ld at %lld", left,
                                  (long long)time_now_ms());
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
    freeReplyObject(r);
    return ok ? 0 : -SIMAP_ECONN;
}

/* A positive number of argument s, or -1. */
static long positive(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0 ? v : -1;
}

int rekey_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct rekey rk = {.rate = DEFAULT_RATE, .batch = DEFAULT_BATCH};
    int restart = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--count") == 0) {
            rk.count_only = 1;
        } else if (strcmp(argv[i], "--restart") == 0) {
            restart = 1;
        } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc &&
                   (rk.rate = positive(argv[++i])) > 0) {
            continue;
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc &&
                   (rk.batch = positive(argv[++i])) > 0) {
            continue;
        } else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc &&
                   (rk.max = positive(argv[++i])) > 0) {
            continue;
        } else {
            fprintf(stderr, PROGRAM ": unknown or bad argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    struct config cfg;
    if (command_begin(PROGRAM, "rekey", &cfg) != 0)
        return 2;
    char err[256];
    if (crypto_keys_init(&rk.keys, cfg.encryption_key, cfg.encryption_old_keys, err, sizeof err) <
        0) {
        fprintf(stderr, PROGRAM ": bad SUPERIMAP_ENCRYPTION_KEY: %s\n", err);
        log_shutdown();
        return 2;
    }
    rk.rs = command_redis(&cfg);
    int status = 3;
    if (rk.rs != NULL) {
        rk.t0 = time_mono_ms();
        int rc = run(&rk, restart);
        if (rc < 0)
            fprintf(stderr, PROGRAM ": Redis failed: %s\n", rsync_errstr(rk.rs));
        printf("%s: %ld under an old key, %ld re-encrypted, %ld written meanwhile (kept), "
               "%ld not opened, in %lld ms\n",
               rc < 0    ? "failed"
               : rc == 1 ? "stopped at --max (run again to continue)"
                         : "done",
               rk.old, rk.rotated, rk.raced, rk.failed, (long long)(time_mono_ms() - rk.t0));
        status = rc < 0 ? 3 : rk.failed > 0 ? 1 : 0;
    }
    rsync_free(rk.rs);
    scripts_shutdown();
    crypto_keys_free(rk.keys);
    log_shutdown();
    return status;
}
