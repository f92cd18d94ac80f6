/*
 * cmd/watcher/token: one OAuth2 token refresh of one user, from Redis to
 * Redis: reads the connection's client credentials (si:conn:<pid>:<code>)
 * and the user's refresh token (the user's secret), refreshes through
 * cmd/watcher/oauth, then writes the outcome:
 *
 *   ok       oauth2_tokens.lua: the access token and its expiry, and the
 *            rotated refresh token when the provider sent one (a
 *            compare-and-set on the secret the refresh used)
 *   revoked  user_reauth.lua: state reauth_required, out of the users set,
 *            a user_reauth_required event for the partner, at once
 *   else     nothing: the caller retries (Retry-After honoured)
 *
 * A job outlives the session that asked for it: a session that closes or is
 * freed detaches (token_detach) and the job still stores what it gets, so a
 * rotated refresh token is never lost.
 *
 * Runs on the loop.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_TOKEN_H
#define CMD_WATCHER_TOKEN_H

#include <stdint.h>

#include "proto/oauth2.h"

struct provider;
struct token_job;
struct watcher;

/* Whose token; every string is copied. */
struct token_user {
    const char *uid, *pid, *code, *tag;
    uint32_t k;
};

/* What came of it; valid only during the callback. */
struct token_outcome {
    enum oauth2_outcome outcome;
    const char *why;          /* for logs and last_error; never a token */
    int64_t retry_after_ms;   /* -1: none */
    const char *access_token; /* OAUTH2_OK */
    int64_t expires_in;       /* OAUTH2_OK: seconds (3600 when the provider did not say) */
};

typedef void token_cb(void *owner, const struct token_outcome *out);

/* Starts a refresh for u with provider prov (which must outlive the job).
 * Returns the job: cb(owner, ...) runs exactly once, later, from the loop,
 * unless token_detach() comes first; or NULL when Redis refused the first
 * call at once (cb never runs). */
struct token_job *token_refresh(struct watcher *w, struct provider *prov,
                                const struct token_user *u, token_cb *cb, void *owner);

/* The owner goes away: cb will not run; the job still finishes and stores
 * its result. Accepts NULL. */
void token_detach(struct token_job *j);

#endif
