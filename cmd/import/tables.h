/*
 * cmd/import/tables: the original SuperIMAP's four tables, read from the
 * CSV files psql's \copy ... CSV HEADER writes, turned into superimap's
 * records: partners (keeping their API keys), IMAP providers, partner
 * connections and users (with their mail cursor). The same records the api
 * writes (core/keys seals them, scripts/lua/ writes them), so the api, the
 * watchers and the dispatchers take them as their own.
 *
 * Each row is imported whole, updated whole or refused with its reason; a
 * second run leaves unchanged rows untouched and updates those that changed
 * (a user's mail cursor only forward: scripts/lua/user_import.lua). One
 * blocking Redis connection (core/rsync), one thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_IMPORT_TABLES_H
#define CMD_IMPORT_TABLES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct crypto_keys;
struct rsync;

enum import_table {
    IMPORT_PARTNERS,
    IMPORT_PROVIDERS,
    IMPORT_CONNECTIONS,
    IMPORT_USERS,
    IMPORT_TABLES
};

/* What one run did to one table. */
struct import_counts {
    long imported;  /* written (dry run: would be) */
    long updated;   /* there already and changed to the row (dry run: would be) */
    long unchanged; /* already there with the same values */
    long refused;   /* not written; each printed with its reason */
};

/* One run's settings, borrowed for the run. */
struct import_opts {
    const char *dir;     /* the four CSV files */
    const char *old_key; /* the original's ENCRYPTION_KEY */
    size_t old_key_len;
    struct rsync *rs;               /* the target Redis */
    const struct crypto_keys *keys; /* superimap's key ring */
    uint32_t shards;                /* si:meta's shard count */
    int dry_run;                    /* read Redis, write nothing */
    FILE *out;                      /* the report: refused rows, would-be writes */
};

/* The file of table t in the export ("partners.csv", ...). */
const char *import_table_file(enum import_table t);

/*
 * Imports the four tables in order (partners, providers, connections,
 * users) and fills counts. Returns 0 when every row was read (refused rows
 * included), -SIMAP_EINVAL when a file is missing, unreadable, not CSV or
 * lacks a required column (printed to stderr; every file is read and
 * checked before anything is written, so nothing was), or -SIMAP_ECONN when
 * Redis failed (printed; the rows before were written whole, and a new run
 * completes the rest).
 */
int import_run(const struct import_opts *o, struct import_counts counts[IMPORT_TABLES]);

#endif
