/*
 * cmd/watcher/session_policy: what an IMAP session does about a failure:
 * its class, the user state it shows, and when to try again. Pure
 * decisions: no I/O, no loop, no Redis.
 *
 *   class     cause                                              state, retry
 *   auth      NO to LOGIN/AUTHENTICATE with [AUTHENTICATIONFAILED] auth_failed,
 *             and the like (RFC 5530), or AUTH_STRIKES code-less  5 min .. 6 h
 *             NOs in a row
 *   throttle  [LIMIT], [UNAVAILABLE], [INUSE], "too many ..."    throttled, the
 *                                                                provider pauses
 *   network   connect/TLS failure, drop, timeout, BYE            error, backoff
 *   protocol  malformed response, BAD, unexpected NO             error, backoff
 *   redis     a Redis call of the session failed                 error, retried
 *                                                                within
 *                                                                BACKOFF_MIN_MS
 *   config    the user or provider record cannot work            error, as auth
 *   reauth    the OAuth2 provider answered invalid_grant to a     reauth_required,
 *             refresh (revoked, expired, password changed)        as auth
 *
 * Network, protocol and throttle backoff is full-jitter exponential from
 * SUPERIMAP_IMAP_BACKOFF_MIN_MS to _MAX_MS (core/backoff), reset when the
 * session is watching again.
 *
 * Depends on: core/backoff, proto/imap_parse (the response's code and text),
 * cmd/watcher/watcher.h (the auth backoff bounds).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_SESSION_POLICY_H
#define CMD_WATCHER_SESSION_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/watcher/watcher.h"
#include "core/backoff.h"

struct imap_response;

/* A NO to LOGIN without [AUTHENTICATIONFAILED] or a like code may be a
 * passing server fault: the login counts as refused (auth_failed, hours of
 * backoff) only after this many in a row. */
#define AUTH_STRIKES 3

/* IDLE refused this many times in a row (the server advertised it): poll. */
#define IDLE_REFUSALS 3

/* What went wrong, for state, backoff and metrics. */
enum fail_kind { F_NET, F_PROTO, F_AUTH, F_THROTTLE, F_REDIS, F_CONFIG, F_REAUTH };

/* The public state written to the user hash ("state"). */
enum pub_state {
    P_NONE,
    P_CONNECTING,
    P_WATCHING,
    P_AUTH_FAILED,
    P_THROTTLED,
    P_ERROR,
    P_REAUTH_REQUIRED,
    P_PROVIDER_LIMIT /* waiting_provider_limit: queued behind the provider's max_connections */
};
_Static_assert(P_PROVIDER_LIMIT + 1 == WATCHER_PUB_STATES, "WATCHER_PUB_STATES counts them");

/* A session's reconnect delays: the backoff of the class it last failed in. */
struct session_retry {
    struct backoff backoff;
    enum fail_kind kind; /* of the last failure (F_NET at first) */
};

/* "network", "auth", ... for logs. */
const char *policy_kind_name(enum fail_kind k);

/* "connecting", "watching", ... ("" for P_NONE). */
const char *policy_pub_name(enum pub_state st);

/* The user state a failure of class kind shows. */
enum pub_state policy_pub_state(enum fail_kind kind);

/* 1 when the response says the server is throttling us. */
int policy_is_throttle(const struct imap_response *r);

/* 1 when a refused login carries a code that means "these credentials". */
int policy_is_auth_refusal(const struct imap_response *r);

/* Classifies a login (LOGIN/AUTHENTICATE) the server did not accept and
 * writes why into why (whylen bytes); counts code-less refusals in
 * *strikes: AUTH_STRIKES of them in a row make an auth failure. */
enum fail_kind policy_login_refused(const struct imap_response *r, unsigned *strikes, char *why,
                                    size_t whylen);

/* Copies the server's text for last_error (printable ASCII, bounded);
 * returns out. */
const char *policy_server_text(const struct imap_response *r, char *out, size_t outlen);

/* Sets r up for network failures: min_ms .. max_ms, the
 * SUPERIMAP_IMAP_BACKOFF_MIN_MS and _MAX_MS the other calls get too. */
void policy_retry_init(struct session_retry *r, int64_t min_ms, int64_t max_ms);

/* The delay before the next attempt after a failure of class kind: auth and
 * config failures back off from WATCHER_AUTH_BACKOFF_MIN_MS to _MAX_MS
 * (never less than half the minimum), Redis failures get
 * policy_redis_retry_delay(), the others min_ms .. max_ms. */
int64_t policy_next_delay(struct session_retry *r, enum fail_kind kind, int64_t min_ms,
                          int64_t max_ms);

/* The session works again: the next failure starts from the first step. */
void policy_retry_reset(struct session_retry *r);

/* A delay in [min_ms/2, min_ms] (the first backoff step): retries after a
 * Redis failure, and while Redis is out of reach. */
int64_t policy_redis_retry_delay(int64_t min_ms);

#endif
