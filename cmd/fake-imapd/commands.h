/*
 * The IMAP commands of superimap-fake-imapd (commands.c): what each command
 * does, run against the session API of session.h. session.c never calls
 * these by name: server.c sets them as the hooks of its session_env, and a
 * session runs its input through those.
 *
 * Every function here runs on the server's loop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_COMMANDS_H
#define CMD_FAKE_IMAPD_COMMANDS_H

#include <stddef.h>

struct session;

/* Runs one framed input frame[0..len) (a command, DONE after IDLE, or a SASL
 * line, by s->wait). The frame may be changed in place. (session_hooks.run) */
void commands_run(struct session *s, char *frame, size_t len);

/* Adds answers of the FETCH in progress (s->fetch) while little output is
 * queued; ends it with the tagged OK. Returns 1 when it added output.
 * (session_hooks.more) */
int commands_fetch_more(struct session *s);

/* Frees the state of a FETCH in progress (s->fetch); accepts NULL.
 * (session_hooks.more_free) */
void commands_fetch_free(void *fetch);

/* The STATS name of per-command counter i ("cmd_list"), or NULL past the
 * last: session_counters.by_command[i] counts that command. */
const char *commands_stat_name(size_t i);

#endif
