/*
 * cmd/watcher/session_token: an OAuth2 session's access token (issue 14,
 * "Token lifecycle in the watcher"):
 *
 *   QUEUED --go--> [TOKEN: refresh] --> CONNECT ... AUTH (XOAUTH2 or
 *   OAUTHBEARER with the access token, SASL-IR when announced)
 *
 * - Before a login: the stored access token (oauth2_access_token) is used
 *   while it has more than TOKEN_MARGIN_MS to live; a user with none (one
 *   imported with only a refresh token) or an old one refreshes first.
 * - While connected (IDLE, polling): a refresh runs in the background at
 *   80-90% of the token's life (oauth_refresh_due(), jittered), so the next
 *   login finds a fresh token; the IMAP connection is not touched.
 * - A login refused with the token: one refresh, then one more login; a
 *   second refusal is an ordinary auth failure.
 * - invalid_grant: state reauth_required (token.c wrote it, with the
 *   user_reauth_required event); the session waits as after an auth failure.
 *   Other refusals (invalid_client, a refused URL) are configuration
 *   failures; 429, 5xx and network failures back off, at least Retry-After.
 *
 * Depends on: cmd/watcher/token (the refresh itself), cmd/watcher/oauth
 * (oauth_refresh_due), session_base.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_impl.h"

#include <stdint.h>

#include "cmd/watcher/oauth.h"
#include "cmd/watcher/session_store.h"
#include "cmd/watcher/token.h"
#include "core/crypto.h"
#include "core/time.h"

/* A stored access token with less life than this is refreshed before a
 * login. */
#define TOKEN_MARGIN_MS       60000
/* A background refresh that failed for a passing reason is tried again
 * after this (or the Retry-After, when longer). */
#define TOKEN_RETRY_MS        30000
/* ... and after a configuration failure, after this. */
#define TOKEN_CONFIG_RETRY_MS (5 * 60 * 1000)

static double jitter(void)
{
    uint32_t r;
    crypto_random(&r, sizeof r);
    return (double)(r % 1000) / 1000.0;
}

static struct token_job *start(struct imap_session *s, token_cb *cb)
{
    struct token_user u = {
        .uid = s->uid, .pid = s->user.pid, .code = s->user.code, .tag = s->user.tag, .k = s->k};
    return token_refresh(s->w, s->prov, &u, cb, s);
}

void session_token_detach(struct imap_session *s)
{
    token_detach(s->tok_job);
    s->tok_job = NULL;
}

/* ---- Before a login (S_TOKEN) ---- */

static void plan(struct imap_session *s, int64_t expires_in_s)
{
    s->tok_due_ms = oauth_refresh_due(time_now_ms(), expires_in_s, jitter());
}

static void on_login_token(void *owner, const struct token_outcome *out)
{
    struct imap_session *s = owner;
    s->tok_job = NULL;
    s->busy++;
    switch (out->outcome) {
    case OAUTH2_OK:
        session_wipe_str(&s->user.access);
        s->user.access = xstrdup(out->access_token);
        s->user.access_exp_ms = time_now_ms() + out->expires_in * 1000;
        plan(s, out->expires_in);
        session_login_connect(s);
        break;
    case OAUTH2_REVOKED:
        session_fail(s, F_REAUTH, "%s", out->why);
        break;
    case OAUTH2_CONFIG:
        session_fail(s, F_CONFIG, "%s", out->why);
        break;
    case OAUTH2_RETRY:
        session_fail_after(s, out->retry_after_ms >= 0 ? F_THROTTLE : F_NET,
                           out->retry_after_ms > 0 ? out->retry_after_ms : 0, "%s", out->why);
        break;
    }
    s->busy--;
    session_store_maybe_free(s);
}

void session_token_login(struct imap_session *s)
{
    int64_t now = time_now_ms();
    if (s->user.access != NULL && !s->tok_force &&
        (s->user.access_exp_ms == 0 || s->user.access_exp_ms - now > TOKEN_MARGIN_MS)) {
        if (s->user.access_exp_ms > 0)
            plan(s, (s->user.access_exp_ms - now) / 1000);
        session_login_connect(s);
        return;
    }
    s->tok_force = 0;
    session_set_state(s, S_TOKEN);
    s->tok_job = start(s, on_login_token);
    if (s->tok_job == NULL)
        session_fail(s, F_REDIS, "cannot read the OAuth2 client: Redis refused the call");
}

int session_token_refused(struct imap_session *s, const char *why)
{
    if (s->tok_forced)
        return 0;
    s->tok_forced = 1;
    s->tok_force = 1;
    session_fail(s, F_NET, "login with the access token refused (refreshing it once): %s", why);
    return 1;
}

/* ---- While connected ---- */

static void on_background_token(void *owner, const struct token_outcome *out)
{
    struct imap_session *s = owner;
    s->tok_job = NULL;
    s->busy++;
    int64_t now = time_now_ms();
    switch (out->outcome) {
    case OAUTH2_OK:
        plan(s, out->expires_in);
        break;
    case OAUTH2_REVOKED:
        session_fail(s, F_REAUTH, "%s", out->why);
        break;
    case OAUTH2_CONFIG:
        s->tok_due_ms = now + TOKEN_CONFIG_RETRY_MS;
        break;
    case OAUTH2_RETRY:
        s->tok_due_ms =
            now + (out->retry_after_ms > TOKEN_RETRY_MS ? out->retry_after_ms : TOKEN_RETRY_MS);
        break;
    }
    if (s->state == S_IDLE)
        session_mailbox_idle_timer(s); /* re-arms for the next refresh */
    s->busy--;
    session_store_maybe_free(s);
}

void session_token_tick(struct imap_session *s)
{
    if (s->prov == NULL || s->prov->auth != PROVIDER_AUTH_OAUTH2 || s->tok_job != NULL ||
        s->tok_due_ms == 0 || s->tok_due_ms > time_now_ms())
        return;
    s->tok_due_ms = 0;
    s->tok_job = start(s, on_background_token);
    if (s->tok_job == NULL)
        s->tok_due_ms = time_now_ms() + TOKEN_RETRY_MS;
}

int64_t session_token_due_in(const struct imap_session *s)
{
    if (s->prov == NULL || s->prov->auth != PROVIDER_AUTH_OAUTH2 || s->tok_job != NULL ||
        s->tok_due_ms == 0)
        return -1;
    int64_t d = s->tok_due_ms - time_now_ms();
    return d > 0 ? d : 0;
}
