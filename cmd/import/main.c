/*
 * superimap-import: brings the original SuperIMAP's partners, IMAP
 * providers, partner connections and users into superimap's Redis, from
 * the CSV files psql's \copy ... CSV HEADER writes (README "Moving from
 * SuperIMAP"):
 *
 *   superimap-import --from DIR --old-key-file FILE [--dry-run]
 *
 * configured like the other binaries by SUPERIMAP_REDIS_URL,
 * SUPERIMAP_ENCRYPTION_KEY and SUPERIMAP_SHARDS. The original's
 * ENCRYPTION_KEY is read from FILE, never from the command line (where ps
 * would show it). Prints every refused row with its reason, then one line
 * of counts per table.
 *
 * Exit status: 0 every row imported, updated or unchanged; 1 some rows refused; 2
 * bad arguments, configuration or files (nothing written); 3 Redis failed
 * (the rows before were written whole; running again completes the rest).
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/import/tables.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/node.h"
#include "core/rsync.h"
#include "core/schema.h"
#include "core/time.h"

#define PROGRAM     "superimap-import"
#define OLD_KEY_MAX 4096

static const char usage[] =
    "usage: " PROGRAM " --from DIR --old-key-file FILE [--dry-run]\n"
    "\n"
    "Imports the original SuperIMAP's tables, exported as CSV with\n"
    "  psql -c \"\\copy (SELECT * FROM <table>) TO '<table>.csv' CSV HEADER\"\n"
    "for partners, imap_providers, partner_connections and users, into DIR.\n"
    "FILE holds the original's ENCRYPTION_KEY (one line). --dry-run reads\n"
    "everything, writes nothing and prints what it would import or update.\n"
    "A second run updates the rows that changed and leaves the others.\n"
    "Exit status: 0 all imported, updated or unchanged, 1 rows refused, 2 bad\n"
    "arguments, configuration or files, 3 Redis failed.\n";

/* Reads the original's key from path: the file's text without its final
 * line break. Returns a new string or NULL (printed). */
static char *read_old_key(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        fprintf(stderr, PROGRAM ": cannot open --old-key-file %s: %s\n", path, strerror(e));
        return NULL;
    }
    char *key = xmalloc(OLD_KEY_MAX + 1);
    size_t n = fread(key, 1, OLD_KEY_MAX + 1, f);
    fclose(f);
    if (n > 0 && key[n - 1] == '\n')
        n--;
    if (n > 0 && key[n - 1] == '\r')
        n--;
    key[n] = '\0';
    const char *why = n == 0 ? "is empty" : n > OLD_KEY_MAX - 2 ? "is longer than 4 KiB" : NULL;
    if (why == NULL && (memchr(key, '\0', n) != NULL || memchr(key, '\n', n) != NULL))
        why = "holds more than one line";
    if (why != NULL) {
        fprintf(stderr, PROGRAM ": --old-key-file %s %s\n", path, why);
        crypto_wipe(key, OLD_KEY_MAX + 1);
        xfree(key);
        return NULL;
    }
    *len = n;
    return key;
}

/* The fleet's shard count from si:meta, created as a node would when the
 * fleet never ran (not on a dry run). 0 or -1 (printed). */
static int check_meta(struct rsync *rs, const struct config *cfg, int dry_run, uint32_t *shards)
{
    char s[16], v[16];
    snprintf(s, sizeof s, "%d", cfg->shards);
    snprintf(v, sizeof v, "%d", NODE_SCHEMA_VERSION);
    redisReply *rep;
    if (dry_run) {
        rep = rsync_command(rs, "HMGET %s schema_version shards", SCHEMA_KEY_META);
    } else {
        const char *argv[] = {SCHEMA_KEY_META, v, s, SUPERIMAP_VERSION};
        rep = rsync_script(rs, "meta_init", 1, 4, argv, NULL);
    }
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        fprintf(stderr, PROGRAM ": cannot read %s from Redis: %s\n", SCHEMA_KEY_META,
                rep ? (rep->str ? rep->str : "unexpected answer") : rsync_errstr(rs));
        freeReplyObject(rep);
        return -1;
    }
    const char *have_v = rep->element[0]->str ? rep->element[0]->str : v;
    const char *have_s = rep->element[1]->str ? rep->element[1]->str : s;
    int rc = 0;
    if (strcmp(have_v, v) != 0 || strcmp(have_s, s) != 0) {
        fprintf(stderr,
                PROGRAM ": Redis holds schema %s with %s shards; this binary speaks schema %s "
                        "and SUPERIMAP_SHARDS is %s\n",
                have_v, have_s, v, s);
        if (strcmp(have_v, "1") == 0)
            fprintf(stderr, PROGRAM ": start one node of this version to migrate schema 1 (README, "
                                    "\"Upgrading from Redis schema 1\")\n");
        rc = -1;
    }
    *shards = (uint32_t)cfg->shards;
    freeReplyObject(rep);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *dir = NULL, *key_file = NULL;
    int dry_run = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            config_print_help(CONFIG_ROLE_IMPORT, PROGRAM,
                              "Imports the original SuperIMAP's database (see above).", 1);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s (%s)\n", PROGRAM, SUPERIMAP_VERSION, SUPERIMAP_GIT_REV);
            return 0;
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--old-key-file") == 0 && i + 1 < argc) {
            key_file = argv[++i];
        } else {
            fprintf(stderr, PROGRAM ": unknown or incomplete argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (dir == NULL || key_file == NULL) {
        fprintf(stderr, PROGRAM ": --from and --old-key-file are required\n%s", usage);
        return 2;
    }
    struct config cfg;
    struct buf errors;
    buf_init(&errors, 1 << 16);
    if (config_load(&cfg, CONFIG_ROLE_IMPORT, &errors) > 0) {
        fprintf(stderr, PROGRAM ": bad configuration:\n%s(see " PROGRAM " --help)\n", errors.data);
        buf_free(&errors);
        return 2;
    }
    buf_free(&errors);
    log_init(PROGRAM, "import", cfg.log_level, cfg.log_format, cfg.log_components, cfg.log_file);
    config_log(&cfg, CONFIG_ROLE_IMPORT);

    size_t old_len = 0;
    char *old_key = read_old_key(key_file, &old_len);
    struct crypto_keys *keys = NULL;
    char err[256];
    if (old_key != NULL &&
        crypto_keys_init(&keys, cfg.encryption_key, cfg.encryption_old_keys, err, sizeof err) < 0)
        fprintf(stderr, PROGRAM ": bad SUPERIMAP_ENCRYPTION_KEY: %s\n", err);
    struct rsync_opts ro = {
        .url = cfg.redis_url,
        .password = cfg.redis_password,
        .sentinel_password = cfg.redis_sentinel_password,
        .timeout_ms = cfg.redis_timeout_ms,
    };
    struct rsync *rs = keys != NULL ? rsync_new(&ro) : NULL;
    int status = 2;
    uint32_t shards = 0;
    if (rs != NULL) {
        status = 3;
        if (check_meta(rs, &cfg, dry_run, &shards) < 0)
            status = rsync_err(rs) == 0 ? 2 : 3;
        else
            status = 0;
    }
    if (status == 0) {
        struct import_opts o = {
            .dir = dir,
            .old_key = old_key,
            .old_key_len = old_len,
            .rs = rs,
            .keys = keys,
            .shards = shards,
            .dry_run = dry_run,
            .out = stdout,
        };
        struct import_counts c[IMPORT_TABLES];
        int64_t t0 = time_mono_ms();
        int rc = import_run(&o, c);
        int64_t t1 = time_mono_ms();
        long refused = 0;
        for (int i = 0; i < IMPORT_TABLES; i++) {
            const char *file = import_table_file((enum import_table)i);
            printf("%s%.*s: %ld %s, %ld %s, %ld unchanged, %ld refused\n",
                   dry_run ? "dry run: " : "", (int)(strlen(file) - 4), file, c[i].imported,
                   dry_run ? "to import" : "imported", c[i].updated,
                   dry_run ? "to update" : "updated", c[i].unchanged, c[i].refused);
            refused += c[i].refused;
        }
        printf("%s in %lld ms\n", rc == 0 ? "done" : "stopped", (long long)(t1 - t0));
        status = rc == -SIMAP_EINVAL ? 2 : rc < 0 ? 3 : refused > 0 ? 1 : 0;
    }
    rsync_free(rs);
    crypto_keys_free(keys);
    if (old_key != NULL) {
        crypto_wipe(old_key, old_len);
        xfree(old_key);
    }
    log_shutdown();
    return status;
}
