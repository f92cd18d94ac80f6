/*
 * cmd/api/command.h: what superimap-api's commands (`rekey`, `reindex`,
 * `admin-user`) share before their own work: the configuration read and
 * logging begun, then the scripts and a blocking Redis connection; and the
 * position a resumable one saved.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_COMMAND_H
#define CMD_API_COMMAND_H

struct config;
struct rsync;

/* Reads the api's configuration into *cfg and begins logging as component
 * ("rekey"). 0, or 2 (the exit status of bad configuration) after printing
 * every error, prefixed with program, on stderr. */
int command_begin(const char *program, const char *component, struct config *cfg);

/* The scripts' digests (scripts_init()) and a blocking connection to cfg's
 * Redis: rsync_free() it, then scripts_shutdown(). NULL when either fails. */
struct rsync *command_redis(const struct config *cfg);

/* The SCAN cursor a resumable command (rekey, reindex) saved in field
 * cursor of hash state_key into cursor ("0" when none, or when restart),
 * saying so on stdout when it resumes. 0 or -SIMAP_ECONN. */
int command_resume(struct rsync *rs, const char *state_key, int restart, char cursor[32]);

#endif
