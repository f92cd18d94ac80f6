/*
 * cmd/api/reindex: `superimap-api reindex`, the backfill of the admin
 * dashboard's search indexes (si:ix:user, si:ix:partner) for a Redis
 * written by a version without them (README "Upgrading").
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_REINDEX_H
#define CMD_API_REINDEX_H

/* Runs the subcommand; argv[0] is "reindex". Reads the configuration
 * itself, talks to Redis with a blocking connection, and returns the exit
 * status: 0 done (or stopped at --max, resumable), 2 bad usage or
 * configuration, 3 Redis failed. */
int reindex_main(int argc, char **argv);

#endif
