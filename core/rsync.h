/*
 * core/rsync: one blocking Redis connection (hiredis 0.14 redisContext) for a
 * thread that may block, such as a civetweb worker of superimap-api. Each
 * thread owns its own rsync (made in init_thread, freed in exit_thread); an
 * rsync is never shared between threads.
 *
 * It connects lazily, on the first call, with AUTH and SELECT as the URL
 * says. Every connect and every command is bounded by timeout_ms. After an
 * I/O error or a timeout the connection is discarded (a late reply would be
 * taken for the next command's) and the next call connects again: at most one
 * connect attempt per call, with no sleeping or spinning, so a request fails
 * fast while Redis is down. Before reusing an idle connection, a call checks
 * without blocking that the server has not closed it (a Redis restart), and
 * connects again if it has, so the first request after a restart does not
 * fail.
 *
 * The process must ignore SIGPIPE (every main does), or writing to a
 * connection the server has closed kills it.
 *
 * Calls return the reply for the caller to freeReplyObject(), or NULL with
 * rsync_err() set to:
 *
 *   -SIMAP_ECONN      could not connect, or the connection was lost during the
 *                     call: the command may or may not have run
 *   -SIMAP_ETIMEDOUT  no reply (or no connection) within timeout_ms
 *   -SIMAP_EAUTH      AUTH was refused (rsync_errstr() has Redis' words)
 *   -SIMAP_EREPLY     SELECT was refused
 *   -SIMAP_EINVAL     bad arguments or command format
 *
 * Error replies are replies (type REDIS_REPLY_ERROR), not NULL; for them
 * rsync_err() is -SIMAP_EREPLY and rsync_errstr() the message. rsync_err()
 * and rsync_errstr() describe the last call only: they are 0 and "" after a
 * call that got a non-error reply.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_RSYNC_H
#define CORE_RSYNC_H

#include <stddef.h>

struct redisReply;
struct rsync;
struct script_source;

struct rsync_opts {
    const char *url;               /* SUPERIMAP_REDIS_URL form, see core/redis_url.h; required */
    const char *password;          /* overrides the URL's when not NULL or ""; copied */
    const char *sentinel_password; /* redis+sentinel://: AUTH to the sentinels; copied */
    int timeout_ms;                /* connect, and each command; <= 0: 5,000 */
};

/*
 * Tells every rsync of the process (any thread) that the primary of a
 * redis+sentinel:// address is at host_port ("host:port") now, as the
 * process's loop connection learnt from the sentinels' +switch-master
 * (core/node calls it at each connect): before its next command each rsync
 * drops a connection to another address and connects there, without
 * waiting for the old primary to be demoted (it takes writes, then lost,
 * for seconds after a planned failover). Thread-safe; others ignore it.
 */
void rsync_primary_is(const char *host_port);

/* Returns a new, not yet connected rsync (rsync_free() it), or NULL after
 * logging the reason when opts->url does not parse. Does no I/O. */
struct rsync *rsync_new(const struct rsync_opts *opts);

/* Closes the connection and releases rs. Accepts NULL. */
void rsync_free(struct rsync *rs);

/* Runs a command in hiredis' format (%s, %b with pointer and size_t, ...),
 * blocking up to timeout_ms (plus a connect when needed). Returns a reply
 * (freeReplyObject() it) or NULL; see the header comment for errors. */
struct redisReply *rsync_command(struct rsync *rs, const char *fmt, ...);

/* As rsync_command() with argc arguments; argvlen NULL means strlen() each. */
struct redisReply *rsync_command_argv(struct rsync *rs, int argc, const char **argv,
                                      const size_t *argvlen);

/*
 * Runs the embedded script name (core/scripts.h) by EVALSHA, the first nkeys
 * of the argc arguments being KEYS; on a NOSCRIPT error reply it sends EVAL
 * with the body once (which caches the script in Redis again) and returns
 * that reply. NULL with -SIMAP_ENOTFOUND for an unknown name, -SIMAP_EINVAL
 * when nkeys is not in [0, argc]; otherwise as rsync_command().
 */
struct redisReply *rsync_script(struct rsync *rs, const char *name, int nkeys, int argc,
                                const char **argv, const size_t *argvlen);

/* As rsync_script() with any script source (tests, tools); borrows src. */
struct redisReply *rsync_script_source(struct rsync *rs, const struct script_source *src, int nkeys,
                                       int argc, const char **argv, const size_t *argvlen);

/*
 * SCRIPT LOADs every embedded script. Returns 0, or the first error: -SIMAP_EREPLY
 * with rsync_errstr() "script <name>: <Redis' message>" (a Lua syntax error,
 * or a digest other than script_sha()'s), or a connection error as above.
 * Optional: rsync_script() recovers from NOSCRIPT by itself.
 */
int rsync_load_scripts(struct rsync *rs);

/* As rsync_load_scripts() with the n scripts at srcs; borrows them. */
int rsync_load_script_sources(struct rsync *rs, const struct script_source *srcs, size_t n);

/* The error code (0 or -SIMAP_E*) of the last call. */
int rsync_err(const struct rsync *rs);

/* A description of the last call's error, "" when there was none; valid
 * until the next call on rs. Never contains the password. */
const char *rsync_errstr(const struct rsync *rs);

#endif
