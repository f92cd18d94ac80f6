/*
 * cmd/api/auth: who is calling. Partners by API key (x-api-key header or
 * api_key parameter, as the original), the admin by bearer token.
 *
 * An API key is 32 random bytes, base64url (43 characters). Redis never holds
 * it in clear: si:apikey:<sha256 hex> names the partner, and the partner hash
 * keeps the key encrypted (AAD "si:partner:<pid>:api_key"). A request's key
 * is hashed, looked up and rate limited in one script (scripts/lua/
 * rate_limit.lua, which also returns the partner's stored keys), then compared in constant time with the decrypted stored
 * key. An unknown key goes through the same decryption and comparison
 * (against a key nobody has), so a wrong key and an unknown key take the same
 * path and the same time; the Redis lookup itself depends only on a SHA-256
 * digest, never on how much of a real key a guess shares.
 *
 * The admin API takes the bearer token (automation) or a dashboard
 * session's cookie (admin_session.c), the latter with its CSRF token in
 * X-CSRF-Token on every method but GET and HEAD.
 *
 * A client address that failed too often (cmd/api/client.h) is answered 429
 * before its key is hashed or looked up.
 *
 * After a rotation the previous key stays valid until api_key_old_until
 * (SUPERIMAP_KEY_ROTATION_GRACE_SEC), its lookup key expiring with it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/api/admin_session.h"
#include "cmd/api/api.h"
#include "cmd/api/client.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"

#define API_KEY_MAX 256 /* longer presented keys are unknown without hashing */

/* 1 when envelope (for pid's field) opens to exactly key; constant time in
 * the key's contents. */
static int key_matches(const struct api *a, const char *pid, const char *field,
                       const char *envelope, const char *key)
{
    char *stored = keys_open_partner(a->keys, pid, field, envelope);
    if (stored == NULL)
        return 0;
    int eq = crypto_equal(stored, strlen(stored), key, strlen(key));
    crypto_wipe(stored, strlen(stored));
    xfree(stored);
    return eq;
}

static const char *presented_key(struct req *r)
{
    const char *h = mg_get_header(r->conn, "x-api-key");
    if (h != NULL && *h != '\0')
        return h;
    const char *p;
    if (param_text(params_get(&r->params, "api_key"), &p) == 0 && *p != '\0')
        return p;
    return NULL;
}

int auth_key_presented(struct req *r)
{
    return presented_key(r) != NULL;
}

static int unauthorized(struct req *r, const char *why)
{
    return reply_error(r, 401, "unauthorized", NULL, "%s", why);
}

/* 429 for a client address that failed too often, before any work. */
static int blocked(struct req *r, const char *addr, int64_t wait_ms)
{
    metric_inc(r->api->m_auth_blocked);
    return reply_retry_later(r, "too_many_failures", wait_ms,
                             "too many failed authentications from %s; retry in %lld ms", addr,
                             (long long)wait_ms);
}

int auth_partner(struct req *r)
{
    const struct api *a = r->api;
    char addr[CLIENT_ADDR_MAX];
    client_addr(a->clients, mg_get_request_info(r->conn)->remote_addr,
                mg_get_header(r->conn, "X-Forwarded-For"), addr);
    int64_t wait = client_guard_wait(a->clients, addr, time_mono_ms());
    if (wait > 0)
        return blocked(r, addr, wait);
    const char *key = presented_key(r);
    if (key == NULL)
        return unauthorized(r, "missing API key: send the x-api-key header or the api_key "
                               "parameter");
    int known = 0, allowed = 1, ok = 0;
    long long retry_ms = 0;
    char pid[24] = "";
    if (strlen(key) <= API_KEY_MAX) {
        char hex[CRYPTO_SHA256_HEX_LEN + 1];
        if (crypto_sha256_hex(key, strlen(key), hex) < 0)
            return reply_error(r, 500, "internal", NULL, "hashing failed");
        struct store_key_hit hit;
        int rc = store_key_lookup(r, hex, a->rate_per_sec, a->rate_burst, &hit);
        if (rc == -SIMAP_ECONN)
            return reply_unavailable(r);
        if (rc == 0) {
            known = 1;
            snprintf(pid, sizeof pid, "%s", hit.pid);
            allowed = hit.allowed;
            retry_ms = hit.retry_ms;
            ok = key_matches(a, pid, "api_key", hit.api_key, key);
            if (!ok && hit.api_key_old != NULL && hit.api_key_old_until > time_now_ms())
                ok = key_matches(a, pid, "api_key_old", hit.api_key_old, key);
        }
        store_key_hit_free(&hit);
    }
    if (!known) {
        /* The same work as a known key, whose result is thrown away. */
        (void)key_matches(a, "0", "api_key", a->dummy_envelope, key);
    }
    if (!ok) {
        client_guard_failed(a->clients, addr, time_mono_ms());
        return unauthorized(r, "invalid API key");
    }
    if (!allowed) {
        metric_inc(a->m_rate_limited);
        return reply_retry_later(r, "rate_limited", retry_ms,
                                 "too many requests for this API key; retry in %lld ms",
                                 (long long)retry_ms);
    }
    snprintf(r->partner.pid, sizeof r->partner.pid, "%s", pid);
    r->partner.api_key = xstrdup(key);
    return 0;
}

/* The bearer token's check, in constant time. */
static int admin_by_token(struct req *r, const char *h)
{
    const char *token = r->api->cfg->admin_token;
    if (token == NULL || *token == '\0')
        return unauthorized(r, "no bearer token is accepted: SUPERIMAP_ADMIN_TOKEN is not set "
                               "(sign in at /admin/login instead)");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return unauthorized(r, "missing admin token: send Authorization: Bearer <token>");
    const char *given = h + 7;
    while (*given == ' ')
        given++;
    /* Compare digests, so the time depends on neither length nor contents. */
    unsigned char d1[CRYPTO_SHA256_LEN], d2[CRYPTO_SHA256_LEN];
    if (crypto_sha256(given, strlen(given), d1) < 0 || crypto_sha256(token, strlen(token), d2) < 0)
        return reply_error(r, 500, "internal", NULL, "hashing failed");
    if (!crypto_equal(d1, sizeof d1, d2, sizeof d2))
        return unauthorized(r, "invalid admin token");
    snprintf(r->admin, sizeof r->admin, "token");
    return 0;
}

int auth_admin(struct req *r)
{
    const char *h = mg_get_header(r->conn, "Authorization");
    if (h != NULL)
        return admin_by_token(r, h);
    struct admin_session s;
    int rc = admin_session_find(r, &s);
    if (rc < 0)
        return reply_unavailable(r);
    if (rc == 0)
        return unauthorized(r, "send Authorization: Bearer <SUPERIMAP_ADMIN_TOKEN>, or sign in "
                               "at /admin/login");
    /* A session's cookie goes with every request the browser makes to the
     * api, so whatever changes state must also prove it comes from the
     * dashboard's own page: the token only that page could read. */
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        const char *given = mg_get_header(r->conn, "X-CSRF-Token");
        if (given == NULL || !crypto_equal(given, strlen(given), s.csrf, strlen(s.csrf))) {
            log_warn("admin request refused: no valid CSRF token user=%s method=%s", s.lower,
                     r->method);
            return reply_error(r, 403, "csrf", NULL,
                               "send this session's CSRF token (GET /admin/api/session) in the "
                               "X-CSRF-Token header");
        }
    }
    snprintf(r->admin, sizeof r->admin, "%s", s.lower);
    return 0;
}
