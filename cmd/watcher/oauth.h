/*
 * cmd/watcher/oauth: OAuth2 token refreshes (RFC 6749 section 6) for the
 * sessions of auth=oauth2 providers, on the loop with core/deliver (libcurl
 * multi on libev, the SSRF guard at connect time; SUPERIMAP_OAUTH2_ALLOW_PRIVATE
 * lets tests use loopback).
 *
 * A refresh POSTs grant_type=refresh_token to the provider's
 * oauth2_token_url, the client authenticated in the body (client_id,
 * client_secret) or with HTTP Basic (provider field oauth2_token_auth), and
 * reads the answer with proto/oauth2. At most SUPERIMAP_OAUTH2_MAX_REFRESHES
 * run at once per provider; the others wait in the provider's FIFO (kept in
 * struct provider), so a fleet restart does not storm a token endpoint.
 *
 * Never logs a token or a secret: requests and answers are only measured.
 *
 * Runs on the loop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_OAUTH_H
#define CMD_WATCHER_OAUTH_H

#include <stdint.h>

#include "proto/oauth2.h"

struct config;
struct ev_loop;
struct metrics;
struct oauth;
struct oauth_req;
struct provider;

/* What one refresh needs; every string is copied. */
struct oauth_params {
    struct provider *prov; /* token_url, token_auth, the per-provider cap; must outlive the call */
    const char *client_id, *client_secret, *refresh_token;
    const char *uid; /* for log lines */
};

/* The outcome; valid only during the callback. */
struct oauth_result {
    enum oauth2_outcome outcome;
    const char *why;           /* for logs and last_error; never holds a token */
    int64_t retry_after_ms;    /* Retry-After of a 429/503, else -1 */
    const char *access_token;  /* OAUTH2_OK */
    const char *refresh_token; /* OAUTH2_OK and the provider rotated it, else NULL */
    int64_t expires_in;        /* OAUTH2_OK: seconds, 0 when the provider did not say */
};

typedef void oauth_cb(const struct oauth_result *res, void *data);

/* Returns the engine, or NULL (logged) when libcurl cannot make a multi
 * handle. curl_global_init() must have run. */
struct oauth *oauth_new(struct ev_loop *loop, const struct config *cfg, struct metrics *m);

/* Ends every refresh (each callback not cancelled runs once, outcome
 * OAUTH2_RETRY "shutting down") and frees the engine. Accepts NULL. Call
 * before the providers are freed. */
void oauth_free(struct oauth *o);

/*
 * Starts a refresh (or queues it behind the provider's cap). Returns 0 and
 * the request in *out: cb runs exactly once, later, from the loop, unless
 * oauth_cancel(*out) comes first; or a negative error (-SIMAP_EINVAL: the
 * provider has no token URL or an argument is missing; -SIMAP_EIO: libcurl
 * refused it) and cb is never called.
 */
int oauth_refresh(struct oauth *o, const struct oauth_params *p, oauth_cb *cb, void *data,
                  struct oauth_req **out);

/* The caller no longer wants r's answer: cb will not be called. A request
 * in flight runs to its end (its answer is dropped), a queued one is freed. */
void oauth_cancel(struct oauth_req *r);

/* Refreshes started and not yet finished, queued ones excluded. */
int oauth_inflight(const struct oauth *o);

/*
 * When to refresh an access token that lives lifetime_s seconds from
 * now_ms: at 80% to 90% of its life (jitter in [0, 1) picks the point), and
 * no later than 60 s before it expires when it lives longer than 2 minutes.
 * Returns wall-clock ms.
 */
int64_t oauth_refresh_due(int64_t now_ms, int64_t lifetime_s, double jitter);

#endif
