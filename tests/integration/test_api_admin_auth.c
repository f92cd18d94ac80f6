/*
 * The admin dashboard's accounts and sign-in against a real redis-server and
 * superimap-api: accounts made by the bearer API and by `superimap-api
 * admin-user add` (password on standard input); the sign-in form and its
 * cookie's flags; the admin API with the session's cookie, refused without
 * its CSRF token; the lockout after 5 wrong passwords (the right one refused
 * meanwhile, the same words for an unknown user); a disabled account, a
 * deleted one, a sign-out; the 429 of a client address that failed too
 * often; the security headers on every /admin answer, files included, and a
 * sign-in page without inline script. JSON answers are checked against
 * web/openapi.json.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <sys/stat.h>
#include <unistd.h>

#define ENC_KEY  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define PASSWORD "correct-horse-battery"
#define ADMINS   "/admin/api/admin-users"
#define FORM     "application/x-www-form-urlencoded"

static struct redis_srv redis;
static struct proc api;
static char web[64]; /* a web root of our own: admin/index.html, admin/admin.css */
static char web_env[128];

static const char *env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                            "SUPERIMAP_API_RATE_LIMIT=0",
                            "SUPERIMAP_ADMIN_SCRYPT_LOG2N=10",
                            "SUPERIMAP_API_AUTH_FAILURE_BURST=1000",
                            web_env,
                            NULL};

static int suite_setup(void **state)
{
    (void)state;
    snprintf(web, sizeof web, "/tmp/superimap-admin-web-XXXXXX");
    if (mkdtemp(web) == NULL)
        return -1;
    char dir[128], file[160];
    snprintf(dir, sizeof dir, "%s/admin", web);
    mkdir(dir, 0700);
    snprintf(file, sizeof file, "%s/index.html", dir);
    harness_write_file(file, "<!doctype html><title>dashboard</title><p id=\"app\">app</p>\n");
    snprintf(file, sizeof file, "%s/admin.css", dir);
    harness_write_file(file, "body { margin: 0; }\n");
    snprintf(web_env, sizeof web_env, "SUPERIMAP_WEB_ROOT=%s", web);
    if (harness_redis_start(&redis) < 0 ||
        harness_node_start(&api, &redis, "superimap-api", "api-admin-auth", env) < 0)
        return -1;
    return harness_wait_http(api.port, "/readyz", 200, 10000);
}

static int suite_teardown(void **state)
{
    (void)state;
    char file[160];
    snprintf(file, sizeof file, "%s/admin/index.html", web);
    unlink(file);
    snprintf(file, sizeof file, "%s/admin/admin.css", web);
    unlink(file);
    snprintf(file, sizeof file, "%s/admin", web);
    rmdir(file);
    rmdir(web);
    return api_suite_stop(&redis);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    return 0;
}

/* ---- Helpers ---- */

static void make_admin(const char *name, const char *password)
{
    char body[512];
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", name, password);
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", ADMINS, body);
    EXPECT(&r, 201, "POST", ADMINS);
    api_resp_free(&r);
}

static void sign_in_at(struct api_resp *r, int port, const char *name, const char *password)
{
    char body[512];
    snprintf(body, sizeof body, "username=%s&password=%s", name, password);
    api_call(r, port, "POST", "/admin/login", FORM, body, strlen(body), NULL);
}

static void sign_in(struct api_resp *r, const char *name, const char *password)
{
    sign_in_at(r, api.port, name, password);
}

/* "Cookie: si_admin=<value>" from r's Set-Cookie into out. */
static void cookie_of(const struct api_resp *r, char *out, size_t outlen)
{
    char set[512];
    if (!api_header(r, "Set-Cookie", set, sizeof set))
        fail_msg("no Set-Cookie: %s", r->headers);
    assert_int_equal(strncmp(set, "si_admin=", 9), 0);
    snprintf(out, outlen, "Cookie: %.*s", (int)strcspn(set, ";"), set);
}

/* A session: the cookie header line and its CSRF token. */
struct session {
    char cookie[128];
    char csrf[80];
};

static void session_of(const char *name, struct session *s)
{
    struct api_resp r = {0};
    sign_in(&r, name, PASSWORD);
    assert_int_equal(r.status, 303);
    cookie_of(&r, s->cookie, sizeof s->cookie);
    const char *hs[] = {s->cookie, NULL};
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, hs);
    EXPECT(&r, 200, "GET", "/admin/api/session");
    snprintf(s->csrf, sizeof s->csrf, "%s", jstr(&r, "csrf_token"));
    api_resp_free(&r);
}

/* The text of the page's #login-error, or "" when it has none. */
static void login_error(const struct api_resp *r, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *p = strstr(r->body, "id=\"login-error\"");
    if (p == NULL)
        return;
    p = strchr(p, '>');
    assert_non_null(p);
    snprintf(out, outlen, "%.*s", (int)strcspn(p + 1, "<"), p + 1);
}

/* Fails unless r carries the dashboard's headers; no_store: and
 * Cache-Control: no-store. */
static void assert_admin_headers(const struct api_resp *r, int no_store)
{
    static const char *const want[] = {
        "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        "X-Frame-Options: DENY",
        "Referrer-Policy: same-origin",
        "X-Content-Type-Options: nosniff",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!has_header_prefix(r->headers, want[i]))
            fail_msg("no '%s' in:\n%s", want[i], r->headers);
    if (no_store && !has_header_prefix(r->headers, "Cache-Control: no-store"))
        fail_msg("no Cache-Control: no-store in:\n%s", r->headers);
}

/* Runs `printf '%s\n' stdin_line | superimap-api admin-user args`;
 * its exit code, its output into out. */
static int admin_user(const char *stdin_line, const char *args, char *out, size_t outlen)
{
    char bin[512], cmd[2048];
    harness_bin("superimap-api", bin, sizeof bin);
    snprintf(cmd, sizeof cmd,
             "printf '%%s\\n' '%s' | env SUPERIMAP_REDIS_URL='%s' "
             "SUPERIMAP_ENCRYPTION_KEY=" ENC_KEY " SUPERIMAP_ADMIN_SCRYPT_LOG2N=10 "
             "'%s' admin-user %s 2>&1",
             stdin_line, redis.url, bin, args);
    return harness_sh(cmd, out, outlen);
}

/* ---- Tests ---- */

static void test_accounts_are_made_by_the_bearer_api_and_by_the_command(void **state)
{
    (void)state;
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", ADMINS,
               "{\"username\":\"Ops.Lead@example.org\",\"password\":\"" PASSWORD "\"}");
    EXPECT(&r, 201, "POST", ADMINS);
    assert_string_equal(json_get_str(json_get(r.json, "admin_user"), "username"),
                        "Ops.Lead@example.org");
    assert_null(strstr(r.body, "scrypt"));
    admin_json(&r, api.port, "POST", ADMINS,
               "{\"username\":\"ops.lead@EXAMPLE.org\",\"password\":\"" PASSWORD "\"}");
    EXPECT(&r, 409, "POST", ADMINS);
    admin_json(&r, api.port, "POST", ADMINS,
               "{\"username\":\"two words\",\"password\":\"" PASSWORD "\"}");
    EXPECT(&r, 400, "POST", ADMINS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "username");
    admin_json(&r, api.port, "POST", ADMINS, "{\"username\":\"bob\",\"password\":\"short\"}");
    EXPECT(&r, 400, "POST", ADMINS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "password");
    /* The stored hash is scrypt at the configured cost, never the password. */
    redisReply *h = rcmd(&redis, "HGET si:admin:ops.lead@example.org hash");
    assert_int_equal(strncmp(h->str, "$scrypt$ln=10,r=8,p=1$", 22), 0);
    assert_null(strstr(h->str, PASSWORD));
    freeReplyObject(h);

    char out[4096];
    assert_int_equal(admin_user(PASSWORD, "add night-shift", out, sizeof out), 0);
    assert_non_null(strstr(out, "created"));
    assert_int_equal(admin_user(PASSWORD, "add Night-Shift", out, sizeof out), 1);
    assert_int_equal(admin_user("short", "add day-shift", out, sizeof out), 1);
    assert_non_null(strstr(out, "12 to 1024 bytes"));
    assert_int_equal(admin_user("", "add", out, sizeof out), 2);
    assert_int_equal(admin_user("", "list", out, sizeof out), 0);
    assert_non_null(strstr(out, "night-shift\tenabled"));
    assert_non_null(strstr(out, "Ops.Lead@example.org\tenabled"));
    /* The command's account signs in like the API's. */
    sign_in(&r, "night-shift", PASSWORD);
    assert_int_equal(r.status, 303);
    admin_json(&r, api.port, "GET", ADMINS, NULL);
    EXPECT(&r, 200, "GET", ADMINS);
    yajl_val list = json_get(r.json, "admin_users");
    assert_int_equal(list->u.array.len, 2);
    assert_string_equal(json_get_str(list->u.array.values[1], "username"), "night-shift");
    assert_true(YAJL_IS_STRING(json_get(list->u.array.values[1], "last_login_at")));
    assert_true(YAJL_IS_NULL(json_get(list->u.array.values[0], "last_login_at")));
    assert_int_equal(admin_user("", "disable night-shift", out, sizeof out), 0);
    assert_int_equal(admin_user("", "delete nobody", out, sizeof out), 1);
    api_resp_free(&r);
}

static void test_sign_in_gives_a_strict_cookie_that_the_admin_api_takes_with_csrf(void **state)
{
    (void)state;
    make_admin("alice", PASSWORD);
    struct api_resp r = {0};
    api_call(&r, api.port, "GET", "/admin/login", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_admin_headers(&r, 1);
    assert_true(has_header_prefix(r.headers, "Content-Type: text/html"));
    assert_non_null(strstr(r.body, "name=\"username\""));
    assert_non_null(strstr(r.body, "name=\"password\""));
    assert_non_null(strstr(r.body, "action=\"/admin/login\""));
    assert_null(strstr(r.body, "<script"));
    assert_null(strstr(r.body, "style="));
    assert_null(strstr(r.body, " on")); /* no onclick=, onload=, ... */
    assert_null(strstr(r.body, "login-error"));

    sign_in(&r, "ALICE", PASSWORD);
    assert_int_equal(r.status, 303);
    assert_admin_headers(&r, 1);
    char loc[256], set[512];
    api_header(&r, "Location", loc, sizeof loc);
    assert_string_equal(loc, "/admin/");
    api_header(&r, "Set-Cookie", set, sizeof set);
    assert_int_equal(strlen(set) - strlen(strchr(set, ';')), strlen("si_admin=") + 43);
    assert_non_null(strstr(set, "; Path=/admin"));
    assert_non_null(strstr(set, "; HttpOnly"));
    assert_non_null(strstr(set, "; SameSite=Strict"));
    assert_null(strstr(set, "Secure")); /* plain http, SUPERIMAP_PUBLIC_URL http:// */
    struct session s;
    cookie_of(&r, s.cookie, sizeof s.cookie);
    /* Redis holds the cookie's SHA-256, never the cookie. */
    redisReply *keys = rcmd(&redis, "KEYS si:asess:*");
    assert_int_equal(keys->elements, 1);
    assert_int_equal(strlen(keys->element[0]->str), strlen("si:asess:") + 64);
    assert_null(strstr(keys->element[0]->str, s.cookie + strlen("Cookie: si_admin=")));
    freeReplyObject(keys);

    const char *with_cookie[] = {s.cookie, NULL};
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, with_cookie);
    EXPECT(&r, 200, "GET", "/admin/api/session");
    assert_admin_headers(&r, 1);
    assert_string_equal(jstr(&r, "username"), "alice");
    snprintf(s.csrf, sizeof s.csrf, "%s", jstr(&r, "csrf_token"));
    assert_int_equal(strlen(s.csrf), 43);
    int64_t expires = -1, idle = -1;
    assert_int_equal(json_get_int(r.json, "expires_at", &expires), 0);
    assert_int_equal(json_get_int(r.json, "idle_expires_at", &idle), 0);
    /* The defaults: 30 minutes idle, 12 hours in all (wall clock, ±1 min). */
    assert_true(idle > 0 && idle < expires);
    assert_true(llabs(expires - idle - (43200 - 1800) * 1000LL) < 60000);

    /* The admin API with the cookie: reading needs nothing more. */
    api_call(&r, api.port, "GET", "/admin/api/fleet", NULL, NULL, 0, with_cookie);
    EXPECT(&r, 200, "GET", "/admin/api/fleet");
    assert_admin_headers(&r, 1);
    /* Changing needs the session's CSRF token. */
    static const char body[] = "{\"username\":\"bob\",\"password\":\"" PASSWORD "\"}";
    api_call(&r, api.port, "POST", ADMINS, "application/json", body, strlen(body), with_cookie);
    EXPECT(&r, 403, "POST", ADMINS);
    assert_string_equal(err_code(&r), "csrf");
    assert_admin_headers(&r, 1);
    const char *wrong[] = {s.cookie, "X-CSRF-Token: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                           NULL};
    api_call(&r, api.port, "POST", ADMINS, "application/json", body, strlen(body), wrong);
    EXPECT(&r, 403, "POST", ADMINS);
    char csrf[128];
    snprintf(csrf, sizeof csrf, "X-CSRF-Token: %s", s.csrf);
    const char *right[] = {s.cookie, csrf, NULL};
    api_call(&r, api.port, "POST", ADMINS, "application/json", body, strlen(body), right);
    EXPECT(&r, 201, "POST", ADMINS);
    /* A form posted from elsewhere has no header: refused too. */
    api_call(&r, api.port, "DELETE", ADMINS "/bob", NULL, NULL, 0, with_cookie);
    EXPECT(&r, 403, "DELETE", ADMINS "/{name}");
    api_call(&r, api.port, "DELETE", ADMINS "/bob", NULL, NULL, 0, right);
    EXPECT(&r, 204, "DELETE", ADMINS "/{name}");
    assert_admin_headers(&r, 1);
    /* A made-up cookie is no session. */
    const char *forged[] = {"Cookie: si_admin=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL};
    api_call(&r, api.port, "GET", "/admin/api/fleet", NULL, NULL, 0, forged);
    EXPECT(&r, 401, "GET", "/admin/api/fleet");
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, forged);
    EXPECT(&r, 401, "GET", "/admin/api/session");
    /* The bearer token still works, without a CSRF token. */
    admin_json(&r, api.port, "POST", ADMINS,
               "{\"username\":\"carol\",\"password\":\"" PASSWORD "\"}");
    EXPECT(&r, 201, "POST", ADMINS);
    api_resp_free(&r);
}

static void test_the_dashboard_files_carry_the_headers_and_the_page_needs_a_session(void **state)
{
    (void)state;
    make_admin("alice", PASSWORD);
    struct session s;
    session_of("alice", &s);
    struct api_resp r = {0};
    char loc[256];
    /* Without a session the page sends the browser to the sign-in. */
    static const char *const pages[] = {"/admin/", "/admin/index.html", "/admin"};
    for (size_t i = 0; i < 3; i++) {
        api_call(&r, api.port, "GET", pages[i], NULL, NULL, 0, NULL);
        assert_int_equal(r.status, 303);
        assert_admin_headers(&r, 0);
        api_header(&r, "Location", loc, sizeof loc);
        assert_string_equal(loc, i < 2 ? "/admin/login" : "/admin/");
    }
    const char *with_cookie[] = {s.cookie, NULL};
    api_call(&r, api.port, "GET", "/admin/", NULL, NULL, 0, with_cookie);
    assert_int_equal(r.status, 200);
    assert_admin_headers(&r, 0);
    assert_true(has_header_prefix(r.headers, "Content-Type: text/html"));
    assert_non_null(strstr(r.body, "id=\"app\""));
    /* Style and script files need no session. */
    api_call(&r, api.port, "GET", "/admin/admin.css", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_admin_headers(&r, 0);
    assert_true(has_header_prefix(r.headers, "Content-Type: text/css"));
    assert_string_equal(r.body, "body { margin: 0; }\n");
    /* Nothing outside web/admin/, no dot files, no listing, no writes. */
    static const char *const refused[] = {"/admin/missing.js",          "/admin/.hidden",
                                          "/admin/%2e%2e/openapi.json", "/admin/..%2fopenapi.json",
                                          "/admin//admin.css",          "/admin/a\\b"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        api_call(&r, api.port, "GET", refused[i], NULL, NULL, 0, with_cookie);
        if (r.status != 404)
            fail_msg("GET %s: want 404, got %d", refused[i], r.status);
        assert_admin_headers(&r, 0);
    }
    api_call(&r, api.port, "POST", "/admin/admin.css", NULL, NULL, 0, with_cookie);
    assert_int_equal(r.status, 405);
    /* An unknown admin API route is JSON with the headers too. */
    api_call(&r, api.port, "GET", "/admin/api/nothing-here", NULL, NULL, 0, with_cookie);
    assert_int_equal(r.status, 404);
    assert_admin_headers(&r, 1);
    api_resp_free(&r);
}

static void
test_five_wrong_passwords_lock_the_account_and_say_the_same_as_for_no_account(void **state)
{
    (void)state;
    make_admin("alice", PASSWORD);
    double failed0 = harness_metric(api.port, "superimap_admin_logins_total{result=\"failed\"}");
    double locked0 = harness_metric(api.port, "superimap_admin_logins_total{result=\"locked\"}");
    struct api_resp r = {0};
    char msg[256], unknown[256];
    for (int i = 1; i <= 4; i++) {
        sign_in(&r, "alice", "wrong-password-123");
        assert_int_equal(r.status, 401);
        assert_admin_headers(&r, 1);
        login_error(&r, msg, sizeof msg);
        assert_string_equal(msg, "Wrong username or password.");
        assert_null(strstr(r.headers, "Set-Cookie"));
    }
    /* An unknown user reads exactly the same. */
    sign_in(&r, "mallory", "wrong-password-123");
    assert_int_equal(r.status, 401);
    login_error(&r, unknown, sizeof unknown);
    assert_string_equal(unknown, msg);
    /* The fifth locks; the right password is refused while it lasts. */
    sign_in(&r, "alice", "wrong-password-123");
    assert_int_equal(r.status, 401);
    login_error(&r, msg, sizeof msg);
    assert_string_equal(msg, "Too many failed sign-ins for this account; try again in 15 minutes.");
    sign_in(&r, "alice", PASSWORD);
    assert_int_equal(r.status, 401);
    login_error(&r, msg, sizeof msg);
    assert_string_equal(msg, "Too many failed sign-ins for this account; try again in 15 minutes.");
    assert_null(strstr(r.headers, "Set-Cookie"));
    /* An unknown name locks alike: the words reveal nothing. */
    for (int i = 0; i < 5; i++)
        sign_in(&r, "mallory", "wrong-password-123");
    login_error(&r, unknown, sizeof unknown);
    assert_string_equal(unknown, msg);
    /* Failed: alice 4, mallory 1 + 3 (its fifth locks); locked: alice's
     * fifth and her right password, mallory's fifth and sixth. */
    double failed = harness_metric(api.port, "superimap_admin_logins_total{result=\"failed\"}");
    double locked = harness_metric(api.port, "superimap_admin_logins_total{result=\"locked\"}");
    if (failed != failed0 + 8 || locked != locked0 + 4)
        fail_msg("failed %g -> %g, locked %g -> %g", failed0, failed, locked0, locked);
    assert_true(harness_log_contains(&api, "msg=\"admin sign-in refused: locked\" user=alice"));
    assert_false(harness_log_contains(&api, "wrong-password-123"));
    assert_false(harness_log_contains(&api, PASSWORD));
    /* The lock's end (made now in Redis) lets the right password in. */
    freeReplyObject(rcmd(&redis, "DEL si:admin_fail:alice"));
    sign_in(&r, "alice", PASSWORD);
    assert_int_equal(r.status, 303);
    api_resp_free(&r);
}

static void test_a_disabled_account_cannot_sign_in_and_its_sessions_end(void **state)
{
    (void)state;
    make_admin("alice", PASSWORD);
    struct session s1, s2;
    session_of("alice", &s1);
    session_of("alice", &s2);
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", ADMINS "/alice/disable", NULL);
    EXPECT(&r, 200, "POST", ADMINS "/{name}/disable");
    int disabled = 0;
    assert_int_equal(json_get_bool(json_get(r.json, "admin_user"), "disabled", &disabled), 0);
    assert_true(disabled);
    const char *c1[] = {s1.cookie, NULL}, *c2[] = {s2.cookie, NULL};
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, c1);
    EXPECT(&r, 401, "GET", "/admin/api/session");
    api_call(&r, api.port, "GET", "/admin/api/fleet", NULL, NULL, 0, c2);
    EXPECT(&r, 401, "GET", "/admin/api/fleet");
    char msg[256];
    sign_in(&r, "alice", PASSWORD);
    assert_int_equal(r.status, 401);
    login_error(&r, msg, sizeof msg);
    assert_string_equal(msg, "This account is disabled.");
    /* A wrong password on a disabled account says only that it is wrong. */
    sign_in(&r, "alice", "wrong-password-123");
    login_error(&r, msg, sizeof msg);
    assert_string_equal(msg, "Wrong username or password.");
    admin_json(&r, api.port, "POST", ADMINS "/alice/enable", NULL);
    EXPECT(&r, 200, "POST", ADMINS "/{name}/enable");
    session_of("alice", &s1);
    /* Deleting ends its sessions too. */
    admin_json(&r, api.port, "DELETE", ADMINS "/alice", NULL);
    EXPECT(&r, 204, "DELETE", ADMINS "/{name}");
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, c1);
    EXPECT(&r, 401, "GET", "/admin/api/session");
    admin_json(&r, api.port, "DELETE", ADMINS "/alice", NULL);
    EXPECT(&r, 404, "DELETE", ADMINS "/{name}");
    admin_json(&r, api.port, "POST", ADMINS "/nobody/disable", NULL);
    EXPECT(&r, 404, "POST", ADMINS "/{name}/disable");
    sign_in(&r, "alice", PASSWORD);
    login_error(&r, msg, sizeof msg);
    assert_string_equal(msg, "Wrong username or password.");
    api_resp_free(&r);
}

static void test_sign_out_needs_the_csrf_token_and_ends_the_session(void **state)
{
    (void)state;
    make_admin("alice", PASSWORD);
    struct session s, other;
    session_of("alice", &s);
    session_of("alice", &other);
    struct api_resp r = {0};
    const char *with_cookie[] = {s.cookie, NULL};
    api_call(&r, api.port, "POST", "/admin/logout", FORM, "", 0, with_cookie);
    assert_int_equal(r.status, 403);
    assert_admin_headers(&r, 1);
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, with_cookie);
    assert_int_equal(r.status, 200);
    char form[160];
    snprintf(form, sizeof form, "csrf_token=%s", s.csrf);
    api_call(&r, api.port, "POST", "/admin/logout", FORM, form, strlen(form), with_cookie);
    assert_int_equal(r.status, 303);
    char loc[256], set[256];
    api_header(&r, "Location", loc, sizeof loc);
    assert_string_equal(loc, "/admin/login");
    api_header(&r, "Set-Cookie", set, sizeof set);
    assert_non_null(strstr(set, "si_admin=;"));
    assert_non_null(strstr(set, "Max-Age=0"));
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, with_cookie);
    EXPECT(&r, 401, "GET", "/admin/api/session");
    api_call(&r, api.port, "GET", "/admin/", NULL, NULL, 0, with_cookie);
    assert_int_equal(r.status, 303);
    /* The account's other session goes on. */
    const char *c2[] = {other.cookie, NULL};
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, c2);
    EXPECT(&r, 200, "GET", "/admin/api/session");
    /* The token may come as the header too, as the page's script sends it. */
    char header[128];
    snprintf(header, sizeof header, "X-CSRF-Token: %s", other.csrf);
    const char *c2h[] = {other.cookie, header, NULL};
    api_call(&r, api.port, "POST", "/admin/logout", NULL, NULL, 0, c2h);
    assert_int_equal(r.status, 303);
    api_call(&r, api.port, "GET", "/admin/api/session", NULL, NULL, 0, c2);
    EXPECT(&r, 401, "GET", "/admin/api/session");
    api_resp_free(&r);
}

static void test_behind_tls_the_cookie_is_secure_and_a_failing_address_gets_429(void **state)
{
    (void)state;
    make_admin("alice", PASSWORD);
    struct proc guarded;
    const char *genv[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                          "SUPERIMAP_ADMIN_SCRYPT_LOG2N=10",
                          "SUPERIMAP_API_AUTH_FAILURE_BURST=3",
                          "SUPERIMAP_PUBLIC_URL=https://admin.example.org",
                          web_env,
                          NULL};
    start_api(&guarded, &redis, "api-admin-guarded", genv);
    struct api_resp r = {0};
    /* Behind TLS (SUPERIMAP_PUBLIC_URL https://) the cookie is Secure. */
    sign_in_at(&r, guarded.port, "alice", PASSWORD);
    assert_int_equal(r.status, 303);
    char set[512];
    api_header(&r, "Set-Cookie", set, sizeof set);
    assert_non_null(strstr(set, "; HttpOnly; SameSite=Strict; Secure"));
    /* Three names, so no lock is reached: the address is what is bounded. */
    static const char *const names[] = {"x1", "x2", "x3"};
    for (int i = 0; i < 3; i++) {
        sign_in_at(&r, guarded.port, names[i], "wrong-password-123");
        assert_int_equal(r.status, 401);
    }
    sign_in_at(&r, guarded.port, "alice", PASSWORD);
    assert_int_equal(r.status, 429);
    assert_admin_headers(&r, 1);
    char msg[256];
    login_error(&r, msg, sizeof msg);
    assert_non_null(strstr(msg, "Too many failed sign-ins from your address"));
    harness_proc_stop(&guarded);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_accounts_are_made_by_the_bearer_api_and_by_the_command, setup),
        cmocka_unit_test_setup(
            test_sign_in_gives_a_strict_cookie_that_the_admin_api_takes_with_csrf, setup),
        cmocka_unit_test_setup(
            test_the_dashboard_files_carry_the_headers_and_the_page_needs_a_session, setup),
        cmocka_unit_test_setup(
            test_five_wrong_passwords_lock_the_account_and_say_the_same_as_for_no_account, setup),
        cmocka_unit_test_setup(test_a_disabled_account_cannot_sign_in_and_its_sessions_end, setup),
        cmocka_unit_test_setup(test_sign_out_needs_the_csrf_token_and_ends_the_session, setup),
        cmocka_unit_test_setup(test_behind_tls_the_cookie_is_secure_and_a_failing_address_gets_429,
                               setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
