/*
 * cmd/watcher/provider: the IMAP providers sessions connect to, read from
 * si:provider:<code> (core/schema.h "Provider fields") and cached, with what
 * protects a provider from us:
 *
 *   - a login rate limit per provider (SUPERIMAP_IMAP_LOGINS_PER_SEC, a token
 *     bucket with a tenth of a second of burst), so a restart or a fence
 *     never storms a provider with logins;
 *   - max_connections: sessions holding a connection to the provider at once
 *     (0: no limit). Sessions that wait because the provider is at that
 *     limit are told once (limited()), counted in the gauge
 *     superimap_watcher_users_provider_limited{provider="<code>"}, and the
 *     provider logs one line when users start waiting for its limit and one
 *     when none waits for it any more;
 *   - a throttling backoff shared by the provider's sessions: after [LIMIT],
 *     [UNAVAILABLE] or "too many connections", no new login starts before a
 *     jittered delay that doubles up to the session backoff cap, and resets
 *     after a successful login.
 *
 * Sessions wait for their turn in a FIFO per provider (struct
 * provider_waiter, embedded in the session); the provider calls go() from
 * its timer, never from inside providers_enqueue(). A provider record is
 * loaded on first use and re-read when older than PROVIDER_REFRESH_MS; its
 * host is resolved then, off the loop (core/resolver): a slow DNS delays
 * that provider's logins, never the sessions already running. A refresh that
 * cannot resolve keeps the address it had.
 *
 * Runs on the loop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_PROVIDER_H
#define CMD_WATCHER_PROVIDER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ev_loop;
struct metrics;
struct providers;
struct rconn;

#define PROVIDER_REFRESH_MS     60000
#define PROVIDER_CODE_MAX       64
#define PROVIDER_IDLE_RENEW_S   1500 /* 25 min, below RFC 2177's 29 */
#define PROVIDER_MAILBOX_POLL_S 60   /* STATUS of a user's other mailboxes without NOTIFY */

enum provider_tls { PROVIDER_TLS_IMPLICIT, PROVIDER_TLS_STARTTLS, PROVIDER_TLS_NONE };
enum provider_auth { PROVIDER_AUTH_PLAIN, PROVIDER_AUTH_OAUTH2 };
enum provider_token_auth {
    PROVIDER_TOKEN_POST,
    PROVIDER_TOKEN_BASIC
}; /* client secret: body | Basic */
enum provider_sasl { PROVIDER_SASL_XOAUTH2, PROVIDER_SASL_OAUTHBEARER };

struct oauth_req;

/* What a session reads; the rest is internal. Valid until providers_free(). */
struct provider {
    char code[PROVIDER_CODE_MAX + 1];
    char *host; /* imap_host, for TLS SNI and certificate checks */
    int port;
    enum provider_tls tls;
    enum provider_auth auth;
    int idle_renew_s;    /* re-issue IDLE this often, 60..1740 */
    int max_connections; /* 0: unlimited */
    int tracer_delete;   /* tracer mails of tracer users are deleted once detected */
    int mailbox_poll_s;  /* without NOTIFY: a user's other mailboxes checked this often, 10..3600 */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* OAuth2 (auth oauth2) */
    char *token_url;                     /* oauth2_token_url; NULL when unset */
    enum provider_token_auth token_auth; /* oauth2_token_auth: post (default) | basic */
    enum provider_sasl sasl;             /* sasl: xoauth2 (default) | oauthbearer */
    /* Token refreshes of this provider: kept by cmd/watcher/oauth.c */
    int refreshing;                      /* in flight */
    struct oauth_req *rq_head, *rq_tail; /* waiting for a slot */
};

/* A session waiting to connect; embedded in it. */
struct provider_waiter {
    struct provider_waiter *prev, *next; /* internal: FIFO links */
    struct provider *p;                  /* internal: whose FIFO */
    /* Called once per enqueue, from the loop: err 0 with a connection slot
     * and a login token taken (call provider_release() when the connection
     * ends), or err < 0 and no slot: -SIMAP_ENOTFOUND no such provider,
     * -SIMAP_EIO its host does not resolve, -SIMAP_EINVAL a malformed record. */
    void (*go)(struct provider_waiter *w, struct provider *p, int err, void *data);
    /* Optional (NULL: not told): called at most once per enqueue, from the
     * loop, when w starts waiting because the provider is at its
     * max_connections; go() follows later as usual. */
    void (*limited)(struct provider_waiter *w, void *data);
    void *data;
    unsigned is_limited : 1; /* internal: counted as waiting for the limit */
};

struct providers_opts {
    int logins_per_sec;     /* per provider */
    int64_t backoff_min_ms; /* throttling backoff */
    int64_t backoff_max_ms;
    struct metrics *metrics; /* for the per-provider gauge; NULL: none */
};

struct providers *providers_new(struct ev_loop *loop, struct rconn *rc,
                                const struct providers_opts *opts);

/* Releases every provider. Waiters still queued are dropped without a call.
 * Pending Redis callbacks must only see -SIMAP_ESHUTDOWN afterwards. */
void providers_free(struct providers *ps);

/*
 * Queues w (whose go and data are set) for provider code (copied). go runs
 * later, exactly once, unless providers_cancel(w) comes first. w must not be
 * queued already.
 */
void providers_enqueue(struct providers *ps, const char *code, struct provider_waiter *w);

/* Takes w out of its FIFO if it is queued; no-op otherwise. */
void providers_cancel(struct provider_waiter *w);

/* 1 while w is queued. */
int providers_is_queued(const struct provider_waiter *w);

/* A connection that go() allowed has ended: frees its slot. */
void provider_release(struct providers *ps, struct provider *p);

/* The provider throttled us: no new login before a backoff delay. */
void provider_throttled(struct providers *ps, struct provider *p);

/* A login succeeded: the throttling backoff starts over. */
void provider_login_ok(struct provider *p);

#endif
