/*
 * cmd/watcher/watcher.h: what the parts of superimap-watcher share. One
 * struct watcher per process, made by main.c, given to every module here:
 *
 *   main.c         wiring: fd limit, capacity, node hooks
 *   leases.c       the lease manager: placement, leases, fencing, drain
 *   users.c        the users to watch: shards' users sets + si:changes
 *   provider.c     provider cache, login rate limit, throttling backoff
 *   imap_session.c one IMAP state machine per user (with session_*.c,
 *                  imap_conn.c)
 *   tls.c          the OpenSSL client context and non-blocking TLS I/O
 *   event.c        new_mail payloads and the record_mail call
 *   oauth.c        OAuth2 token requests (libcurl multi on the loop)
 *   token.c        one user's token refresh, from Redis to Redis
 *
 * main.c owns the one struct watcher and passes it down by pointer; there
 * is no global to reach. Dependencies run one way (main -> leases ->
 * imap_session -> ...); a lower file reaches an upper one only through a
 * hook it was given (on_lost_lease below).
 *
 * Everything runs on the one libev loop of main(); nothing here is shared
 * with another thread except metrics (atomics).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_WATCHER_H
#define CMD_WATCHER_WATCHER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

struct callgate;
#define WATCHER_PUB_STATES 8 /* values of enum pub_state (session_policy.h) */

struct config;
struct crypto_keys;
struct incarnation;
struct metric;
struct metrics;
struct node;
struct oauth;
struct pool;
struct providers;
struct rconn;
struct users;

/* Auth failures back off from 5 minutes to 6 hours (README, "User states"). */
#define WATCHER_AUTH_BACKOFF_MIN_MS (5 * 60 * 1000)
#define WATCHER_AUTH_BACKOFF_MAX_MS (6 * 3600 * 1000)

/* Session calls in flight on the sessions' connection; the rest wait in
 * the gate (callgate.h). Deep enough to keep Redis busy, shallow enough
 * that no call waits in rconn long enough to time out. */
#define WATCHER_SESSION_CALLS 256

/* Largest IMAP response line text we accept (capability lines, envelopes). */
#define WATCHER_MAX_LINE (256 * 1024)

/* Counters and gauges of the watcher (README, "Watcher"). */
struct watcher_metrics {
    struct metric *sessions;       /* gauge: sessions that hold a lease */
    struct metric *watching;       /* gauge: sessions in IDLE or polling */
    struct metric *unassigned;     /* gauge: users over capacity, unwatched */
    struct metric *users;          /* gauge: users known from Redis */
    struct metric *recorded;       /* counter: new_mail events recorded */
    struct metric *too_large;      /* counter: of those, too_large ones */
    struct metric *duplicates;     /* counter: record_mail said "old" */
    struct metric *stale;          /* counter: record_mail / user_state said "stale" */
    struct metric *box_status;     /* counter: STATUS of another watched mailbox */
    struct metric *box_notify;     /* counter: NOTIFY SET accepted */
    struct metric *box_missing;    /* counter: watched mailboxes not found */
    struct metric *fences;         /* counter: self-fencings */
    struct metric *logins;         /* counter: successful logins */
    struct metric *err_auth;       /* counter: auth failures */
    struct metric *err_throttle;   /* counter: throttling answers */
    struct metric *err_net;        /* counter: network errors and timeouts */
    struct metric *err_proto;      /* counter: protocol errors (malformed, BAD, NO) */
    struct metric *err_redis;      /* counter: Redis errors in a session */
    struct metric *record_latency; /* histogram: EXISTS seen -> record_mail answered */
    struct metric *lease_waits;    /* counter: lease_acquire said "held by another" */
    struct metric *generation;     /* gauge: current generation */
    struct metric *reauth;         /* counter: users moved to reauth_required */
    struct metric *calls_waiting;  /* gauge: session calls waiting in the gate */
    /* gauges: sessions by the state they last wrote, by enum pub_state
     * (index 0, nothing written yet, is not exported) */
    struct metric *by_state[WATCHER_PUB_STATES];
};

struct watcher {
    struct ev_loop *loop;
    struct node *node;
    /* Two Redis connections, so that renewals never wait behind session
     * work: redis is the node's (heartbeat, incarnation, leases, users,
     * providers), sessions carries the sessions' and token jobs' calls, the
     * sessions' through calls (at most WATCHER_SESSION_CALLS in flight). */
    struct rconn *redis;
    struct rconn *sessions;
    struct callgate *calls;
    const struct config *cfg;
    struct crypto_keys *keys;
    struct incarnation *inc;
    struct users *users;
    struct providers *providers;
    struct oauth *oauth; /* token refreshes */
    struct pool *pool;   /* a held user's long-lived objects (core/pool): registry entry,
                            lease slot, session, ids; freed last */
    struct watcher_metrics m;

    int capacity;  /* users this process takes: min(MAX_USERS, fd limit - reserve) */
    long fd_limit; /* RLIMIT_NOFILE in force */
    int shards;    /* SUPERIMAP_SHARDS */
    int nsessions; /* live session objects */
    int nwatching; /* sessions in IDLE or polling */
    int nby_state[WATCHER_PUB_STATES]; /* sessions by the state they last wrote */
    int idle_entries;                  /* sessions that entered IDLE since the last heap trim */

    /*
     * A session can no longer act for its user: a script answered "stale"
     * (the lease names another incarnation). Set by the lease manager; it
     * fences the incarnation (every session is dropped, leases are taken
     * again under a new generation). why is static text.
     */
    void (*on_lost_lease)(struct watcher *w, const char *uid, const char *why);

    /*
     * Token refreshes and their writes still in flight (cmd/watcher/token.c).
     * A drain waits for them: an aborted refresh could lose a refresh token
     * the provider has already rotated. token_idle(token_idle_data) runs
     * once when the count reaches 0 after being set.
     */
    int token_work;
    void (*token_idle)(void *data);
    void *token_idle_data;

    char capacity_text[16];
    char fd_limit_text[24];
    char sessions_text[16];
};

#endif
