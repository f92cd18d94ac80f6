/*
 * cmd/api/admin_session: signing in to the dashboard and out of it.
 *
 *   GET  /admin/login        the sign-in page (a form: username, password)
 *   POST /admin/login        303 to /admin/ with the session cookie, or the
 *                            page again with why (401; 429 for a client
 *                            address that failed too often)
 *   POST /admin/logout       ends the session (its CSRF token as the form
 *                            field csrf_token or the X-CSRF-Token header),
 *                            303 to /admin/login
 *   GET  /admin/api/session  the session's user, CSRF token and ends
 *
 * A session is 32 random bytes (base64url) in the si_admin cookie
 * (HttpOnly, SameSite=Strict, Path=/admin; Secure behind TLS); Redis keeps
 * only its SHA-256 (si:asess:<hex>), with the account, a CSRF token and its
 * times (admin_store.h). Every request that brings it renews its idle end.
 *
 * Lockout: a username (known or not) with SUPERIMAP_ADMIN_LOCKOUT_FAILURES
 * failed sign-ins is refused for SUPERIMAP_ADMIN_LOCKOUT_SEC, its password
 * not even checked; the failures of a client address also spend its bucket
 * of cmd/api/client.h (429 once empty). A wrong password and an unknown
 * username get the same words and the same work (an unknown name is
 * checked against a hash nobody's password matches); a right password of a
 * disabled account is told so. At most a quarter of the worker threads
 * (2 at least) hash at once (503 past it): each scrypt takes 32 MiB at the
 * default cost. Every outcome is logged (never the password)
 * and counted in superimap_admin_logins_total{result}.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/admin_session.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cmd/api/api.h"
#include "cmd/api/client.h"
#include "cmd/api/connect.h"
#include "cmd/api/reply.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"

#define COOKIE_MAX 64 /* a cookie value read: 43 characters */

static const char msg_wrong[] = "Wrong username or password.";

const char *admin_result_str(enum admin_result result)
{
    static const char *const names[ADMIN_RESULTS] = {"ok", "failed", "locked", "disabled"};
    return (unsigned)result < ADMIN_RESULTS ? names[result] : "failed";
}

/* ---- The session of a request ---- */

/* The SHA-256 hex of the session cookie r brings into hex; 0 when none. */
static int cookie_hash(struct req *r, char hex[CRYPTO_SHA256_HEX_LEN + 1])
{
    char cookie[COOKIE_MAX];
    if (!connect_cookie_get(mg_get_header(r->conn, "Cookie"), ADMIN_COOKIE, cookie, sizeof cookie))
        return 0;
    return crypto_sha256_hex(cookie, strlen(cookie), hex) == 0;
}

int admin_session_find(struct req *r, struct admin_session *out)
{
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    if (!cookie_hash(r, hex))
        return 0;
    const struct config *cfg = r->api->cfg;
    int rc =
        admin_store_touch(r->rs, hex, time_now_ms(), (int64_t)cfg->admin_session_idle_sec * 1000,
                          (int64_t)cfg->admin_session_max_sec * 1000, out);
    if (rc == -SIMAP_ENOTFOUND)
        return 0;
    return rc < 0 ? -SIMAP_ECONN : 1;
}

/* "; Secure" when the browser reached the api over TLS, itself or through
 * the proxy SUPERIMAP_PUBLIC_URL names. */
static const char *secure_flag(struct req *r)
{
    int tls =
        mg_get_request_info(r->conn)->is_ssl || strncmp(r->api->cfg->public_url, "https:", 6) == 0;
    return tls ? "; Secure" : "";
}

/* ---- The sign-in page ---- */

/* The page, with message (NULL: none) in #login-error and the username
 * typed (NULL: none) kept. No script, no inline style: the dashboard's CSP
 * allows neither. */
static int login_page(struct req *r, int status, const char *message, const char *username)
{
    char *msg = connect_html_escape(message != NULL ? message : "");
    char *user = connect_html_escape(username != NULL ? username : "");
    struct buf b;
    buf_init(&b, 16384);
    buf_printf(&b, "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>superimap: sign in</title>\n"
                   "<link rel=\"stylesheet\" href=\"/admin/admin.css\">\n</head>\n"
                   "<body class=\"login\">\n<main>\n<h1>superimap</h1>\n"
                   "<form method=\"post\" action=\"/admin/login\" id=\"login-form\">\n");
    if (message != NULL)
        buf_printf(&b, "<p id=\"login-error\" class=\"error\" role=\"alert\">%s</p>\n", msg);
    buf_printf(&b,
               "<label for=\"username\">Username</label>\n"
               "<input id=\"username\" name=\"username\" autocomplete=\"username\" required "
               "maxlength=\"%d\" value=\"%s\"%s>\n"
               "<label for=\"password\">Password</label>\n"
               "<input id=\"password\" name=\"password\" type=\"password\" "
               "autocomplete=\"current-password\" required%s>\n"
               "<button type=\"submit\">Sign in</button>\n</form>\n</main>\n</body>\n</html>\n",
               ADMIN_NAME_MAX, user, *user == '\0' ? " autofocus" : "",
               *user != '\0' ? " autofocus" : "");
    xfree(msg);
    xfree(user);
    int rc = reply_html(r, status, b.data, NULL);
    buf_free(&b);
    return rc;
}

static int login_form(struct req *r)
{
    return login_page(r, 200, NULL, NULL);
}

/* ---- Signing in ---- */

static int counted(struct req *r, enum admin_result result)
{
    metric_inc(r->api->m_admin_logins[result]);
    return 0;
}

static int locked_page(struct req *r, int64_t until, int64_t now, const char *username)
{
    char msg[160];
    long long minutes = (until - now + 59999) / 60000;
    snprintf(msg, sizeof msg,
             "Too many failed sign-ins for this account; try again in %lld minute%s.", minutes,
             minutes == 1 ? "" : "s");
    return login_page(r, 401, msg, username);
}

/* A failed sign-in of lower (known or not) from addr: counted for the name
 * and the address, then the page. */
static int failed(struct req *r, const char *lower, const char *addr, const char *username)
{
    const struct config *cfg = r->api->cfg;
    int64_t now = time_now_ms(), until = 0;
    int count = 0;
    client_guard_failed(r->api->clients, addr, time_mono_ms());
    if (lower != NULL &&
        admin_store_failed(r->rs, lower, now, cfg->admin_lockout_failures,
                           (int64_t)cfg->admin_lockout_sec * 1000, &count, &until) < 0)
        return login_page(r, 503, "The data store is not reachable; try again shortly.", username);
    if (until > 0) {
        counted(r, ADMIN_RESULT_LOCKED);
        log_warn("admin sign-in refused: locked user=%s addr=%s failures=%d until=%lld", lower,
                 addr, count, (long long)until);
        return locked_page(r, until, now, username);
    }
    counted(r, ADMIN_RESULT_FAILED);
    log_warn("admin sign-in failed user=%s addr=%s failures=%d", lower ? lower : "(invalid)", addr,
             count);
    return login_page(r, 401, msg_wrong, username);
}

/* The session begins: its cookie, and the browser to /admin/. */
static int begin(struct req *r, const char *lower, const char *hash, const char *addr,
                 const char *username)
{
    const struct config *cfg = r->api->cfg;
    char *cookie = crypto_token(32), *csrf = crypto_token(32);
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    int64_t now = time_now_ms(), until = 0;
    int rc;
    if (crypto_sha256_hex(cookie, strlen(cookie), hex) < 0) {
        rc = login_page(r, 500, "The sign-in failed; try again.", username);
        goto done;
    }
    struct admin_new_session s = {.lower = lower,
                                  .hash = hash,
                                  .key_hex = hex,
                                  .csrf = csrf,
                                  .addr = addr,
                                  .idle_ms = (int64_t)cfg->admin_session_idle_sec * 1000,
                                  .max_ms = (int64_t)cfg->admin_session_max_sec * 1000};
    rc = admin_store_login(r->rs, &s, now, &until);
    if (rc == ADMIN_LOGIN_OK) {
        counted(r, ADMIN_RESULT_OK);
        log_info("admin signed in user=%s addr=%s", lower, addr);
        char header[256];
        snprintf(header, sizeof header,
                 "Set-Cookie: " ADMIN_COOKIE "=%s; Path=/admin; HttpOnly; SameSite=Strict%s\r\n",
                 cookie, secure_flag(r));
        rc = reply_see_other(r, "/admin/", header);
    } else if (rc == ADMIN_LOGIN_DISABLED) {
        counted(r, ADMIN_RESULT_DISABLED);
        log_warn("admin sign-in refused: disabled user=%s addr=%s", lower, addr);
        rc = login_page(r, 401, "This account is disabled.", username);
    } else if (rc == ADMIN_LOGIN_LOCKED) {
        counted(r, ADMIN_RESULT_LOCKED);
        log_warn("admin sign-in refused: locked user=%s addr=%s", lower, addr);
        rc = locked_page(r, until, now, username);
    } else if (rc >= 0) { /* deleted, or its password changed, meanwhile */
        counted(r, ADMIN_RESULT_FAILED);
        log_warn("admin sign-in failed: account changed meanwhile user=%s addr=%s", lower, addr);
        rc = login_page(r, 401, msg_wrong, username);
    } else {
        rc = login_page(r, 503, "The data store is not reachable; try again shortly.", username);
    }
done:
    crypto_wipe_str(&cookie);
    crypto_wipe_str(&csrf);
    return rc;
}

static int login(struct req *r)
{
    const struct api *a = r->api;
    char addr[CLIENT_ADDR_MAX];
    client_addr(a->clients, mg_get_request_info(r->conn)->remote_addr,
                mg_get_header(r->conn, "X-Forwarded-For"), addr);
    const char *username = "", *password = "";
    (void)param_text(params_get(&r->params, "username"), &username);
    (void)param_text(params_get(&r->params, "password"), &password);
    int64_t wait = client_guard_wait(a->clients, addr, time_mono_ms());
    if (wait > 0) {
        metric_inc(a->m_auth_blocked);
        log_warn("admin sign-in refused: too many failures from the address addr=%s", addr);
        char msg[160];
        snprintf(msg, sizeof msg,
                 "Too many failed sign-ins from your address; try again in %lld seconds.",
                 (long long)(wait + 999) / 1000);
        return login_page(r, 429, msg, NULL);
    }
    char lower[ADMIN_NAME_MAX + 1];
    if (!admin_name_lower(username, lower))
        return failed(r, NULL, addr, NULL);
    int64_t until;
    if (admin_store_locked_until(r->rs, lower, time_now_ms(), &until) < 0)
        return login_page(r, 503, "The data store is not reachable; try again shortly.", username);
    if (until > 0) {
        client_guard_failed(a->clients, addr, time_mono_ms());
        counted(r, ADMIN_RESULT_LOCKED);
        log_warn("admin sign-in refused: locked user=%s addr=%s until=%lld", lower, addr,
                 (long long)until);
        return locked_page(r, until, time_now_ms(), username);
    }
    struct rec acct;
    int rc = admin_store_get(r->rs, lower, &acct);
    if (rc == -SIMAP_ECONN) {
        rec_free(&acct);
        return login_page(r, 503, "The data store is not reachable; try again shortly.", username);
    }
    if (client_gate_enter(a->hashing, "scrypt", 0) != 0) {
        rec_free(&acct);
        return login_page(r, 503, "Too many sign-ins at once; try again in a moment.", username);
    }
    /* The same scrypt work whether the account exists or not. */
    const char *hash = rc == 0 ? rec_get(&acct, "hash") : a->admin_dummy_hash;
    size_t n = strlen(password);
    int verified = crypto_password_verify(hash, password, n);
    client_gate_leave(a->hashing, "scrypt");
    if (rc == 0 && verified == -SIMAP_EINVAL)
        log_error("admin account has a malformed password hash user=%s", lower);
    int ok = verified == 1 && rc == 0 && admin_password_ok(n);
    int sent = ok ? begin(r, lower, hash, addr, username) : failed(r, lower, addr, username);
    rec_free(&acct);
    return sent;
}

/* ---- Signing out, the session ---- */

/* The CSRF token r brings: the X-CSRF-Token header, else the form field
 * csrf_token; "" when neither. */
static const char *csrf_presented(struct req *r)
{
    const char *h = mg_get_header(r->conn, "X-CSRF-Token");
    if (h != NULL)
        return h;
    const char *f = "";
    (void)param_text(params_get(&r->params, "csrf_token"), &f);
    return f;
}

static int logout(struct req *r)
{
    static const char expire[] =
        "Set-Cookie: " ADMIN_COOKIE "=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict\r\n";
    struct admin_session s;
    int rc = admin_session_find(r, &s);
    if (rc < 0)
        return login_page(r, 503, "The data store is not reachable; try again shortly.", NULL);
    if (rc == 0)
        return reply_see_other(r, "/admin/login", expire);
    const char *given = csrf_presented(r);
    if (!crypto_equal(given, strlen(given), s.csrf, strlen(s.csrf))) {
        log_warn("admin sign-out refused: no valid CSRF token user=%s", s.lower);
        return reply_html(r, 403,
                          "<!doctype html><title>Refused</title><p>The request was refused: it "
                          "did not carry this session's CSRF token.</p>",
                          NULL);
    }
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    if (cookie_hash(r, hex) && admin_store_logout(r->rs, hex, s.lower) < 0)
        return login_page(r, 503, "The data store is not reachable; try again shortly.", NULL);
    log_info("admin signed out user=%s", s.lower);
    return reply_see_other(r, "/admin/login", expire);
}

static int session(struct req *r)
{
    struct admin_session s;
    int rc = admin_session_find(r, &s);
    if (rc < 0)
        return reply_unavailable(r);
    if (rc == 0)
        return reply_error(r, 401, "unauthorized", NULL,
                           "no dashboard session: sign in at /admin/login");
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_str(g, "username", s.lower);
    json_gen_key_str(g, "csrf_token", s.csrf);
    json_gen_key_int(g, "expires_at", s.expires_at);
    json_gen_key_int(g, "idle_expires_at", s.idle_until);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

const struct route routes_admin_session[] = {
    {"GET", "/admin/login", AUTH_NONE, login_form},
    {"POST", "/admin/login", AUTH_NONE, login},
    {"POST", "/admin/logout", AUTH_NONE, logout},
    {"GET", "/admin/api/session", AUTH_NONE, session},
    {NULL, NULL, AUTH_NONE, NULL},
};
