/*
 * cmd/api/rekey: `superimap-api rekey`, the re-encryption sweep that lets an
 * old SUPERIMAP_ENCRYPTION_KEY be retired (README "Rotating the encryption
 * key").
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_REKEY_H
#define CMD_API_REKEY_H

/* Runs the subcommand; argv[0] is "rekey". Reads the configuration itself,
 * talks to Redis with a blocking connection, and returns the exit status:
 * 0 done (or stopped at --max, resumable), 1 some secrets could not be
 * opened, 2 bad usage or configuration, 3 Redis failed. */
int rekey_main(int argc, char **argv);

#endif
