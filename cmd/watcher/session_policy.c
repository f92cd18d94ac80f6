/*
 * cmd/watcher/session_policy: failure classes, the user state they show and
 * reconnect delays of an IMAP session (see session_policy.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cmd/watcher/watcher.h"
#include "proto/imap_parse.h"

static const char *const pub_names[] = {
    "",          "connecting", "watching",        "auth_failed",
    "throttled", "error",      "reauth_required", "waiting_provider_limit"};

const char *policy_kind_name(enum fail_kind k)
{
    switch (k) {
    case F_NET:
        return "network";
    case F_PROTO:
        return "protocol";
    case F_AUTH:
        return "auth";
    case F_THROTTLE:
        return "throttled";
    case F_REDIS:
        return "redis";
    case F_CONFIG:
        return "config";
    case F_REAUTH:
        return "reauth";
    }
    return "?";
}

const char *policy_pub_name(enum pub_state st)
{
    return pub_names[st];
}

enum pub_state policy_pub_state(enum fail_kind kind)
{
    return kind == F_AUTH       ? P_AUTH_FAILED
           : kind == F_THROTTLE ? P_THROTTLED
           : kind == F_REAUTH   ? P_REAUTH_REQUIRED
                                : P_ERROR;
}

/* ---- Classification of refusals ---- */

static int text_has(const struct imap_str *t, const char *needle)
{
    if (t->data == NULL)
        return 0;
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= t->len; i++)
        if (strncasecmp(t->data + i, needle, n) == 0)
            return 1;
    return 0;
}

int policy_is_throttle(const struct imap_response *r)
{
    switch (r->code.kind) {
    case IMAP_CODE_LIMIT:
    case IMAP_CODE_UNAVAILABLE:
    case IMAP_CODE_INUSE:
        return 1;
    default:
        break;
    }
    if (r->code.kind == IMAP_CODE_OTHER && r->code.name.data != NULL &&
        (strcasecmp(r->code.name.data, "THROTTLED") == 0 ||
         strcasecmp(r->code.name.data, "OVERQUOTA") == 0))
        return 1;
    return text_has(&r->text, "too many") || text_has(&r->text, "rate limit") ||
           text_has(&r->text, "try again later") || text_has(&r->text, "throttl");
}

int policy_is_auth_refusal(const struct imap_response *r)
{
    switch (r->code.kind) {
    case IMAP_CODE_AUTHENTICATIONFAILED:
    case IMAP_CODE_AUTHORIZATIONFAILED:
    case IMAP_CODE_EXPIRED:
    case IMAP_CODE_PRIVACYREQUIRED:
    case IMAP_CODE_CONTACTADMIN:
        return 1;
    default:
        return 0;
    }
}

const char *policy_server_text(const struct imap_response *r, char *out, size_t outlen)
{
    size_t j = 0;
    const char *t = r->text.data != NULL ? r->text.data : "";
    for (size_t i = 0; i < r->text.len && j + 1 < outlen && i < 160; i++)
        out[j++] = (t[i] >= 0x20 && t[i] < 0x7f) ? t[i] : '?';
    out[j] = '\0';
    return out;
}

enum fail_kind policy_login_refused(const struct imap_response *r, unsigned *strikes, char *why,
                                    size_t whylen)
{
    char text[200];
    policy_server_text(r, text, sizeof text);
    if (policy_is_throttle(r)) {
        snprintf(why, whylen, "login throttled: %s", text);
        return F_THROTTLE;
    }
    if (r->cond == IMAP_COND_BAD && !policy_is_auth_refusal(r)) {
        snprintf(why, whylen, "login rejected as malformed: %s", text);
        return F_PROTO;
    }
    if (policy_is_auth_refusal(r) || *strikes + 1 >= AUTH_STRIKES) {
        *strikes = AUTH_STRIKES;
        snprintf(why, whylen, "login refused: %s", text);
        return F_AUTH;
    }
    (*strikes)++;
    snprintf(why, whylen, "login refused without a reason code (%d of %d): %s", (int)*strikes,
             AUTH_STRIKES, text);
    return F_PROTO;
}

/* ---- Reconnect delays ---- */

void policy_retry_init(struct session_retry *r, int64_t min_ms, int64_t max_ms)
{
    r->kind = F_NET;
    backoff_init(&r->backoff, min_ms, max_ms);
}

void policy_retry_reset(struct session_retry *r)
{
    backoff_reset(&r->backoff);
}

int64_t policy_redis_retry_delay(int64_t min_ms)
{
    struct backoff b;
    backoff_init(&b, min_ms, min_ms);
    return min_ms / 2 + backoff_next_rand(&b) / 2;
}

int64_t policy_next_delay(struct session_retry *r, enum fail_kind kind, int64_t min_ms,
                          int64_t max_ms)
{
    /* Redis failed, not the IMAP server: nothing to back off from there,
     * and the session must not come back minutes after Redis does. S_WAIT
     * holds until Redis is reachable (the session's timer). */
    if (kind == F_REDIS)
        return policy_redis_retry_delay(min_ms);
    int auth = kind == F_AUTH || kind == F_CONFIG || kind == F_REAUTH;
    int was_auth = r->kind == F_AUTH || r->kind == F_CONFIG || r->kind == F_REAUTH;
    if (auth != was_auth || r->backoff.cap_ms == 0) {
        if (auth)
            backoff_init(&r->backoff, WATCHER_AUTH_BACKOFF_MIN_MS, WATCHER_AUTH_BACKOFF_MAX_MS);
        else
            backoff_init(&r->backoff, min_ms, max_ms);
    }
    r->kind = kind;
    int64_t d = backoff_next_rand(&r->backoff);
    if (auth && d < WATCHER_AUTH_BACKOFF_MIN_MS / 2)
        d = WATCHER_AUTH_BACKOFF_MIN_MS / 2; /* never hammer a refused login */
    return d;
}
