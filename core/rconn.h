/*
 * core/rconn: one asynchronous Redis connection on a libev loop (hiredis
 * 0.14.1 async API), with what hiredis 0.14 lacks: connect and command
 * timeouts, automatic reconnect with capped, jittered back-off, a bounded
 * queue of commands that waits for the connection, and EVALSHA with a
 * NOSCRIPT fallback.
 *
 * Connection states (edges reported by rconn_on_state(); logged once per
 * change, never per retry):
 *
 *   DISCONNECTED --retry timer--> CONNECTING --TCP/unix up--> HANDSHAKE
 *        ^                            |                          |
 *        |<--- error, AUTH refused, or connect_timeout_ms -------+
 *        |                                                       | replies to
 *        +<--- I/O error, EOF, command timeout --- CONNECTED <---+ AUTH, SELECT
 *                                                                  (or PING)
 *
 * The handshake sends AUTH when a password is set and SELECT when the URL's
 * db is not 0, or PING when neither applies, so "connected" always means
 * that Redis answered; user commands are sent only after it. The retry delay
 * is full-jitter exponential back-off from reconnect_min_ms to
 * reconnect_max_ms, reset by each successful handshake.
 *
 * Every command has a deadline of command_timeout_ms from submission, whether
 * it waits for the connection or for its reply. Commands are kept in one FIFO
 * (submission order is deadline order) watched by one ev_timer.
 *
 * Delivery guarantees for a command accepted by a start function (one that
 * returned 0): its callback runs exactly once, on the loop, never from inside
 * the start function:
 *
 *   err                  reply   meaning
 *   0                    set     Redis replied (not an error reply)
 *   -SIMAP_EREPLY        set     Redis replied with an error reply
 *                                (reply->type == REDIS_REPLY_ERROR)
 *   -SIMAP_ETIMEDOUT     NULL    the deadline passed, queued or sent. If it
 *                                had been sent, the connection is dropped and
 *                                made again (a missing reply means a hung
 *                                link), so a late reply never arrives.
 *   -SIMAP_ECONN         NULL    the connection was lost after the command
 *                                was handed to it: it may or may not have
 *                                run. It is NOT resent; the caller decides
 *                                (our scripts are idempotent or fenced, so
 *                                most callers simply retry).
 *   -SIMAP_ESHUTDOWN     NULL    rconn_free() came first
 *
 * Commands that were never handed to a connection survive reconnects and are
 * sent in submission order once the handshake succeeds.
 *
 * Everything here runs on the loop's thread; an rconn is not thread-safe.
 * The process must ignore SIGPIPE (every main does): writing to a link the
 * server has closed must fail, not kill.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_RCONN_H
#define CORE_RCONN_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct redisReply;
struct rconn;
struct script_source;

/*
 * Result of one command. reply is valid only during the callback (copy what
 * you keep); see the table above for err. The callback may submit commands
 * and may call rconn_free() (the release is then deferred, see there).
 */
typedef void rconn_cb(struct rconn *rc, struct redisReply *reply, int err, void *privdata);

struct rconn_opts {
    const char *url;               /* SUPERIMAP_REDIS_URL form, see core/redis_url.h; required */
    const char *password;          /* overrides the URL's when not NULL or ""; copied */
    const char *sentinel_password; /* redis+sentinel://: AUTH to the sentinels; copied */
    int connect_timeout_ms;        /* connect + AUTH + SELECT; <= 0: 2,000 */
    int command_timeout_ms;        /* submission to reply; <= 0: 5,000 */
    int max_pending;               /* queued + in-flight commands; <= 0: 100,000 */
    int reconnect_min_ms;          /* ceiling of the first retry delay; <= 0: 100 */
    int reconnect_max_ms;          /* cap of any retry delay; <= 0: 1,000 */
    const char *name;              /* names this connection in logs; NULL: "redis"; copied */
    int min_replicas_ack;          /* rconn_script_acked(): replicas WAIT asks for; 0: no WAIT */
};

/* Counters since rconn_new(). */
struct rconn_stats {
    uint64_t connects;   /* handshakes that succeeded */
    uint64_t reconnects; /* of those, the ones after the first */
    uint64_t commands;   /* commands accepted (rconn_load_scripts counts one per script) */
    uint64_t errors;     /* completed with an error other than a timeout, error replies included */
    uint64_t timeouts;   /* completed with -SIMAP_ETIMEDOUT */
    uint64_t pending;    /* queued + in flight now */
    uint64_t primary_changes; /* redis+sentinel://: the sentinels named another primary */
    uint64_t wait_short;      /* rconn_script_acked(): WAITs answered by too few replicas */
};

/*
 * Creates a connection on loop and starts connecting at once (non-blocking;
 * a host name is resolved with a blocking getaddrinfo(), so prefer
 * addresses). Copies what it keeps from opts. Returns NULL, after logging the
 * reason, when opts->url does not parse. The loop must outlive the rconn.
 */
struct rconn *rconn_new(struct ev_loop *loop, const struct rconn_opts *opts);

/*
 * Closes the connection and calls the callback of every pending command
 * exactly once with -SIMAP_ESHUTDOWN, in submission order, then releases
 * everything. Accepts NULL; a second call is a no-op. When called from inside
 * one of this rconn's callbacks, it only marks the rconn closed (every start
 * function then fails with -SIMAP_ESHUTDOWN) and the release happens on the
 * next loop iteration, from an ev_timer: keep the loop running until then.
 */
void rconn_free(struct rconn *rc);

#define RCONN_CLIENT_NAME_MAX 200

/*
 * Names the connection in Redis (CLIENT SETNAME name) now and at every
 * reconnect, before any other command, so CLIENT LIST shows who is
 * connected (core/reaper: a node whose named connection is gone has died).
 * name is copied; printable ASCII without spaces, at most
 * RCONN_CLIENT_NAME_MAX bytes. Returns 0, -SIMAP_EINVAL, or as
 * rconn_command().
 */
int rconn_set_client_name(struct rconn *rc, const char *name);

/* Returns 1 when the handshake has succeeded and the link is up, else 0. */
int rconn_is_connected(const struct rconn *rc);

/*
 * Sets the function called on each change between connected (1) and not
 * connected (0), from the loop, never from inside this call; NULL removes it.
 * cb may submit commands and may call rconn_free().
 */
void rconn_on_state(struct rconn *rc, void (*cb)(struct rconn *rc, int connected, void *data),
                    void *data);

/* Sets the function called with the seconds from submission to reply of each
 * command that got a reply (error replies included), e.g. for a histogram;
 * NULL removes it. It must not call rconn functions. */
void rconn_on_latency(struct rconn *rc, void (*cb)(double seconds, void *data), void *data);

/* Sets the function called, from the loop, each time a WAIT of
 * rconn_script_acked() counts fewer replicas than min_replicas_ack (with the
 * count), e.g. for a counter; NULL removes it. It must not call rconn
 * functions. */
void rconn_on_wait_short(struct rconn *rc, void (*cb)(long long acked, void *data), void *data);

/* Writes the address of the Redis this connection uses now ("host:port", or
 * the socket path), the primary the sentinels named last for
 * redis+sentinel://, into out. */
void rconn_address(const struct rconn *rc, char *out, size_t outlen);

/* Copies the counters into out. */
void rconn_stats(const struct rconn *rc, struct rconn_stats *out);

/*
 * Submits a command in hiredis' format (%s, %b with a pointer and a size_t,
 * %d ...); the arguments are formatted (copied) before return. Returns 0 (cb
 * will run exactly once, later), or without ever calling cb:
 * -SIMAP_EINVAL (bad format or arguments), -SIMAP_ETOOBIG (max_pending
 * commands already pending), -SIMAP_ESHUTDOWN (after rconn_free()).
 * cb may be NULL to ignore the result. Do not send SUBSCRIBE, MONITOR or
 * other commands that change the reply protocol.
 */
int rconn_command(struct rconn *rc, rconn_cb *cb, void *privdata, const char *fmt, ...);

/* As rconn_command() with argc arguments; argvlen NULL means strlen() each.
 * Copies the arguments before return. */
int rconn_command_argv(struct rconn *rc, rconn_cb *cb, void *privdata, int argc, const char **argv,
                       const size_t *argvlen);

/*
 * Runs the embedded script script_name (see core/scripts.h) with the first
 * nkeys of the argc arguments as KEYS and the rest as ARGV, by EVALSHA. If
 * Redis answers NOSCRIPT (restarted or flushed since the scripts were
 * loaded), it sends EVAL with the body once, which also caches the script in
 * Redis again, and delivers that result: cb runs once in every case. After a
 * fallback the script runs after commands submitted behind it (so its
 * callback comes later too): chain on the callback when order matters.
 * Returns as rconn_command(), plus -SIMAP_ENOTFOUND for an unknown
 * script_name, -SIMAP_EINVAL when nkeys is not in [0, argc] and
 * -SIMAP_ECRYPTO if the SHA-1 cannot be computed.
 */
int rconn_script(struct rconn *rc, rconn_cb *cb, void *privdata, const char *script_name, int nkeys,
                 int argc, const char **argv, const size_t *argvlen);

/*
 * As rconn_script(), for the scripts whose write must survive the loss of the
 * primary (record_mail, event_ack): when opts.min_replicas_ack is N > 0, the
 * script's reply is held and `WAIT N <timeout>` sent on this connection (WAIT
 * cannot run inside a script; it waits for every write this connection made
 * so far), timeout a quarter of command_timeout_ms. cb then gets the
 * script's reply when at least N replicas acknowledged, else -SIMAP_EREPLICAS
 * and no reply (the write happened on the primary but may be lost in a
 * failover: repeat it, our scripts are idempotent). A WAIT that gets no
 * answer gives its error (-SIMAP_ECONN, -SIMAP_ETIMEDOUT) with no reply. WAIT
 * blocks this connection in Redis until it answers: commands behind it wait
 * as long (a replica's round trip, or the timeout when replicas are missing).
 * With N = 0 it is rconn_script().
 */
int rconn_script_acked(struct rconn *rc, rconn_cb *cb, void *privdata, const char *script_name,
                       int nkeys, int argc, const char **argv, const size_t *argvlen);

/* As rconn_script() with any script source (tests, tools). Borrows src and
 * its strings until cb has run. */
int rconn_script_source(struct rconn *rc, rconn_cb *cb, void *privdata,
                        const struct script_source *src, int nkeys, int argc, const char **argv,
                        const size_t *argvlen);

/*
 * SCRIPT LOADs every embedded script (one pipelined command each; with no
 * scripts, one PING), and calls cb once when all have answered: err 0 with a
 * status reply "OK" when each load succeeded and Redis returned the digest
 * script_sha() expects; else err -SIMAP_EREPLY with an error reply whose text
 * names the first failing script ("ERR script <name>: <Redis' message>", a Lua
 * syntax error for instance), or err < 0 with no reply when a command got no
 * answer. The reply is made by rconn, valid only during the callback. Returns
 * as rconn_command(); -SIMAP_ETOOBIG if the loads do not all fit.
 * Loading is optional: rconn_script() recovers from NOSCRIPT by itself.
 */
int rconn_load_scripts(struct rconn *rc, rconn_cb *cb, void *privdata);

/* As rconn_load_scripts() with the n scripts at srcs (tests, tools). Borrows
 * srcs and its strings until cb has run. */
int rconn_load_script_sources(struct rconn *rc, rconn_cb *cb, void *privdata,
                              const struct script_source *srcs, size_t n);

#endif
