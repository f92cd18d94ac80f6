/*
 * cmd/api/cli: what superimap-api's maintenance commands (`rekey`,
 * `reindex`) share: the api's configuration and logging, and one blocking
 * Redis connection with the scripts loaded.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_CLI_H
#define CMD_API_CLI_H

struct config;
struct rsync;

/* Loads the api's configuration into *cfg and starts logging as component
 * of superimap-api. Returns 0, or 2 (the exit status) after printing every
 * problem on stderr after "<program>: bad configuration:". */
int cli_config(const char *program, const char *component, struct config *cfg);

/* Loads the scripts (core/scripts) and connects to cfg's Redis. Returns the
 * connection (rsync_free() it, then scripts_shutdown()), or NULL. */
struct rsync *cli_redis(const struct config *cfg);

/* The SCAN cursor a resumable command saved in field cursor of hash
 * state_key into cursor ("0" when none, or when restart), saying so on
 * stdout when it resumes. 0 or -SIMAP_ECONN. */
int cli_resume(struct rsync *rs, const char *state_key, int restart, char cursor[32]);

#endif
