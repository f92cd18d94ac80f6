/*
 * Integration tests of the connect pages (cmd/api/routes_connect.c) with
 * superimap-fake-oauth2d as the OAuth2 provider and superimap-fake-imapd as
 * the PLAIN provider: a "browser" (one libcurl handle with its cookie jar)
 * follows the connect link, the consent page, the callback and the
 * disconnect link, and every refusal is checked: forged, expired and
 * replayed links, wrong, replayed and missing state, a state from another
 * browser, denied consent, the token endpoint refusing the code (what a
 * PKCE mismatch gives) or down. Each refusal must end at the partner's
 * failure URL with the right error= and leave the user as it was; each
 * success at the success URL exactly, the user connected (or disconnected)
 * with its event queued in the same step. Then the same in headless
 * Chromium (tests/browser/connect.mjs), and a connected user watched by
 * superimap-watcher on a Dovecot whose oauth2 passdb asks the provider:
 * the watcher logs in with the access token the callback stored (no
 * refresh) and new mail becomes an event. Also: provider presets.
 *
 * SUPERIMAP_PUBLIC_URL is BROWSER_PUBLIC; the browser (browser.h) reaches
 * it on the api's port through CURLOPT_CONNECT_TO, so every server keeps
 * port 0.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <unistd.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/schema.h"
#include "tests/integration/browser.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/dovecot.h"
#include "tests/integration/fakeoauth.h"
#include "tests/integration/test_watcher_fixture.h"

#define PUBLIC  BROWSER_PUBLIC
#define OK_URL  "https://partner.test/ok?from=superimap"
#define KO_URL  "https://partner.test/ko"
#define CLIENT  "test-client"
#define SECRET  "test-client-secret"
#define ENC_KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define USERS   "/api/v1/connections/{code}/users"
#define USER    "/api/v1/connections/{code}/users/{tag}"

static struct redis_srv redis;
static struct proc api;
static struct fakeoauth idp;
static struct fakeimap imap;
static struct dovecot dv;
static int have_dovecot;
static char skip_why[128];
static char *key; /* the partner's API key */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *s = calloc(1, 1 << 20);
    size_t n = fread(s, 1, (1 << 20) - 1, f);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* ---- Suite ---- */

static int suite_setup(void **state)
{
    (void)state;
    static const char *const env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                                      "SUPERIMAP_API_RATE_LIMIT=0", "SUPERIMAP_PUBLIC_URL=" PUBLIC,
                                      "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1", NULL};
    static const char *const idp_args[] = {"--client", CLIENT ":" SECRET, NULL};
    if (harness_redis_start(&redis) < 0 || fakeoauth_start(&idp, idp_args) < 0 ||
        harness_node_start(&api, &redis, "superimap-api", "api-connect", env) < 0 ||
        harness_wait_http(api.port, "/readyz", 200, 10000) < 0)
        return -1;
    if (fx_init() < 0 || fakeimap_prepare(&imap, 0) < 0 || fakeimap_start(&imap, NULL) < 0)
        return -1;
    have_dovecot = dovecot_available(skip_why, sizeof skip_why);
    char introspect[300];
    fakeoauth_url(&idp, "/introspect", introspect, sizeof introspect);
    return have_dovecot ? dovecot_start_oauth2(&dv, 4, introspect) : 0;
}

static int suite_teardown(void **state)
{
    (void)state;
    fakeimap_stop(&imap, 0);
    if (have_dovecot)
        dovecot_stop(&dv);
    fx_shutdown();
    fakeoauth_stop(&idp);
    free(key);
    return api_suite_stop(&redis);
}

/* A provider FAKE on the test provider (token URL token_url, NULL: its own),
 * PLAIN on fake-imapd, a partner with both connections and its URLs. */
static void world(const char *token_url)
{
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    assert_int_equal(
        fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"500\",\"count\":0}"), 0);
    char body[2048], own[256];
    snprintf(own, sizeof own, "http://127.0.0.1:%d/token", idp.port);
    snprintf(
        body, sizeof body,
        "{\"code\":\"FAKE\",\"imap_host\":\"127.0.0.1\",\"imap_port\":993,\"auth\":\"oauth2\","
        "\"oauth2_authorize_url\":\"http://127.0.0.1:%d/authorize\","
        "\"oauth2_token_url\":\"%s\",\"oauth2_userinfo_url\":\"http://127.0.0.1:%d/userinfo\","
        "\"oauth2_revoke_url\":\"http://127.0.0.1:%d/revoke\",\"oauth2_scope\":\"openid email\","
        "\"oauth2_authorize_params\":{\"prompt\":\"consent\"},\"oauth2_token_auth\":\"basic\"}",
        idp.port, token_url ? token_url : own, idp.port, idp.port);
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", "/admin/api/providers", body);
    EXPECT(&r, 201, "POST", "/admin/api/providers");
    const char *host;
    int port = fakeimap_port(&imap, 0, 0, &host);
    snprintf(body, sizeof body,
             "{\"code\":\"PLAIN\",\"imap_host\":\"%s\",\"imap_port\":%d,\"tls\":\"none\"}", host,
             port);
    admin_json(&r, api.port, "POST", "/admin/api/providers", body);
    EXPECT(&r, 201, "POST", "/admin/api/providers");
    admin_json(&r, api.port, "POST", "/admin/api/partners",
               "{\"name\":\"Acme\",\"new_mail_webhook_url\":\"http://127.0.0.1:9/"
               "n\",\"user_connected_webhook_url\":\"http://127.0.0.1:9/c\","
               "\"user_disconnected_webhook_url\":\"http://127.0.0.1:9/d\","
               "\"success_url\":\"" OK_URL "\",\"failure_url\":\"" KO_URL "\"}");
    EXPECT(&r, 201, "POST", "/admin/api/partners");
    free(key);
    key = strdup(jstr(&r, "api_key"));
    api_form(&r, api.port, "POST", "/api/v1/connections", key,
             "imap_provider_code=FAKE&oauth2_client_id=" CLIENT "&oauth2_client_secret=" SECRET);
    EXPECT(&r, 201, "POST", "/api/v1/connections");
    api_form(&r, api.port, "POST", "/api/v1/connections", key, "imap_provider_code=PLAIN");
    EXPECT(&r, 201, "POST", "/api/v1/connections");
    api_resp_free(&r);
}

/* Creates user tag of connection code; its connect or disconnect URL
 * (kind) into url and its id into uid. */
static void user_link(const char *code, const char *tag, const char *kind, char *url, size_t n,
                      char uid[SCHEMA_UID_LEN + 1])
{
    char path[256], form[256];
    snprintf(path, sizeof path, "/api/v1/connections/%s/users", code);
    snprintf(form, sizeof form, "tag=%s", tag);
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", path, key, form);
    if (r.status == 409) {
        snprintf(path, sizeof path, "/api/v1/connections/%s/users/%s", code, tag);
        api_json(&r, api.port, "GET", path, key, NULL);
    }
    assert_true(r.status == 201 || r.status == 200);
    char field[32];
    snprintf(field, sizeof field, "%s_url", kind);
    snprintf(url, n, "%s", jstr(&r, field));
    const char *u = strstr(url, "user_id=");
    assert_non_null(u);
    snprintf(uid, SCHEMA_UID_LEN + 1, "%s", u + 8);
    assert_int_equal(strncmp(url, PUBLIC "/users/", strlen(PUBLIC "/users/")), 0);
    api_resp_free(&r);
}

/* The number of events of type of user uid in Redis. */
static long long events_of(const char *uid, const char *what)
{
    redisReply *rep = rcmd(&redis, "KEYS si:{%u}:evt:%s.%s.*", hrw_shard(uid, 64), uid, what);
    long long n = rep->type == REDIS_REPLY_ARRAY ? (long long)rep->elements : -1;
    freeReplyObject(rep);
    return n;
}

/* The user is as a new one: not connected, no credentials, no events. */
static void assert_untouched(const char *uid)
{
    char v[4096];
    fx_user_field(&redis, uid, "connected_at", v, sizeof v);
    assert_string_equal(v, "");
    fx_user_field(&redis, uid, "secret", v, sizeof v);
    assert_string_equal(v, "");
    fx_user_field(&redis, uid, "oauth2_access_token", v, sizeof v);
    assert_string_equal(v, "");
    assert_int_equal(events_of(uid, "connected"), 0);
}

/* ---- The browser (tests/integration/browser.h) ---- */

/* Follows a connect link in b to the consent page and answers it; the
 * callback URL the provider sends the browser to into cb. */
static void to_callback_as(struct browser *b, const char *link, const char *email,
                           const char *decision, char *cb, size_t n)
{
    assert_int_equal(browser_consent(b, idp.port, link, email, decision, cb, n), 0);
}

static void to_callback(struct browser *b, const char *link, const char *decision, char *cb,
                        size_t n)
{
    to_callback_as(b, link, "alice@example.com", decision, cb, n);
}

/* Visits url in b and checks it ends at the failure URL with error. */
static void assert_fails(struct browser *b, const char *url, const char *error)
{
    struct page p = {0};
    browser_visit(b, url, NULL, &p);
    char want[256];
    snprintf(want, sizeof want, KO_URL "?error=%s", error);
    if (p.status != 302 || strcmp(p.location, want) != 0)
        fail_msg("%s: want 302 to %s, got %ld to %s (%s)", url, want, p.status, p.location,
                 p.body.p);
    page_free(&p);
}

/* What most tests start from: a fresh world, one user of code with its
 * connect link, and a browser. */
struct start {
    char link[4096], uid[SCHEMA_UID_LEN + 1];
    struct browser b;
};

static void begin(struct start *s, const char *code, const char *tag)
{
    world(NULL);
    user_link(code, tag, "connect", s->link, sizeof s->link, s->uid);
    browser_open(&s->b, api.port);
}

/* ---- OAuth2 ---- */

static void test_oauth2_connect_consent_callback_then_disconnect(void **state)
{
    (void)state;
    struct start s;
    begin(&s, "FAKE", "alice");

    struct page p = {0};
    browser_visit(&s.b, s.link, NULL, &p);
    assert_int_equal(p.status, 302);
    assert_non_null(strstr(p.cookie, "superimap_connect="));
    assert_non_null(strstr(p.cookie, "HttpOnly"));
    assert_non_null(strstr(p.cookie, "SameSite=Lax"));
    char v[4096];
    query_value(p.location, "response_type", v, sizeof v);
    assert_string_equal(v, "code");
    query_value(p.location, "client_id", v, sizeof v);
    assert_string_equal(v, CLIENT);
    query_value(p.location, "redirect_uri", v, sizeof v);
    assert_string_equal(v, PUBLIC "/users/connect/callback");
    query_value(p.location, "scope", v, sizeof v);
    assert_string_equal(v, "openid email");
    query_value(p.location, "code_challenge_method", v, sizeof v);
    assert_string_equal(v, "S256");
    query_value(p.location, "code_challenge", v, sizeof v);
    assert_int_equal(strlen(v), 43);
    query_value(p.location, "prompt", v, sizeof v);
    assert_string_equal(v, "consent");
    query_value(p.location, "state", v, sizeof v);
    assert_true(strlen(v) >= 43);
    query_value(p.location, "login_hint", v, sizeof v);
    assert_string_equal(v, "");
    /* A user whose email is known gets it as the login hint. */
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v1/connections/FAKE/users", key,
             "tag=zed&email=zed%40example.com");
    EXPECT(&r, 201, "POST", USERS);
    char zed[4096];
    snprintf(zed, sizeof zed, "%s", jstr(&r, "connect_url"));
    struct page z = {0};
    browser_visit(&s.b, zed, NULL, &z);
    query_value(z.location, "login_hint", v, sizeof v);
    assert_string_equal(v, "zed@example.com");
    page_free(&z);
    assert_int_equal(events_of(s.uid, "connected"), 0);
    page_free(&p);
    browser_close(&s.b);

    /* The whole flow in a fresh browser with a fresh link. */
    freeReplyObject(rcmd(&redis, "DEL si:link:%s", strstr(s.link, "sig=") + 4));
    browser_open(&s.b, api.port);
    char cb[8192];
    to_callback(&s.b, s.link, "allow", cb, sizeof cb);
    browser_visit(&s.b, cb, NULL, &p);
    assert_int_equal(p.status, 302);
    assert_string_equal(p.location, OK_URL);
    fx_user_field(&redis, s.uid, "connected_at", v, sizeof v);
    assert_true(strlen(v) > 0);
    fx_user_field(&redis, s.uid, "email", v, sizeof v);
    assert_string_equal(v, "alice@example.com");
    fx_user_field(&redis, s.uid, "secret", v, sizeof v);
    assert_int_equal(strncmp(v, "v1:", 3), 0);
    fx_user_field(&redis, s.uid, "oauth2_access_token", v, sizeof v);
    assert_int_equal(strncmp(v, "v1:", 3), 0);
    fx_user_field(&redis, s.uid, "oauth2_expires_at", v, sizeof v);
    assert_true(atoll(v) > harness_now_ms());
    assert_int_equal(events_of(s.uid, "connected"), 1);
    redisReply *rep = rcmd(&redis, "SISMEMBER si:{%u}:users %s", hrw_shard(s.uid, 64), s.uid);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);

    /* The state was single use: the same callback again changes nothing. */
    browser_visit(&s.b, cb, NULL, &p);
    assert_int_equal(p.status, 302);
    assert_string_equal(p.location, KO_URL "?error=invalid_state");
    assert_int_equal(events_of(s.uid, "connected"), 1);

    /* The API shows it connected. */
    api_json(&r, api.port, "GET", "/api/v1/connections/FAKE/users/alice", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "email"), "alice@example.com");
    char dis[4096];
    snprintf(dis, sizeof dis, "%s", jstr(&r, "disconnect_url"));
    api_resp_free(&r);

    /* Disconnect: revoked at the provider, cleared, user_disconnected. */
    browser_visit(&s.b, dis, NULL, &p);
    assert_int_equal(p.status, 302);
    assert_string_equal(p.location, OK_URL);
    fx_user_field(&redis, s.uid, "connected_at", v, sizeof v);
    assert_string_equal(v, "");
    fx_user_field(&redis, s.uid, "secret", v, sizeof v);
    assert_string_equal(v, "");
    fx_user_field(&redis, s.uid, "oauth2_access_token", v, sizeof v);
    assert_string_equal(v, "");
    fx_user_field(&redis, s.uid, "email", v, sizeof v);
    assert_string_equal(v, "");
    assert_int_equal(events_of(s.uid, "disconnected"), 1);
    assert_int_equal(fakeoauth_stat(&idp, "revocations"), 1);
    /* A disconnect link is single use too. */
    browser_visit(&s.b, dis, NULL, &p);
    assert_string_equal(p.location, KO_URL "?error=link_used");
    assert_true(harness_metric(api.port, "superimap_api_connect_total{result=\"connected\"}") >= 1);
    page_free(&p);
    browser_close(&s.b);
}

/* The link of user uid signed as the api does, made at ts. */
static void signed_link(const char *kind, const char *uid, long long ts, char *out, size_t n)
{
    unsigned char raw[32], lk[32], mac[32];
    size_t rl;
    crypto_hex_decode(ENC_KEY, 64, raw, sizeof raw, &rl);
    crypto_hmac_sha256(raw, sizeof raw, "superimap connect links v1", 26, lk);
    char msg[128];
    int ml = snprintf(msg, sizeof msg, "%s\n%s\n%lld", kind, uid, ts);
    crypto_hmac_sha256(lk, sizeof lk, msg, (size_t)ml, mac);
    char *sig = crypto_b64url_encode(mac, sizeof mac);
    snprintf(out, n, PUBLIC "/users/%s/new?user_id=%s&ts=%lld&sig=%s", kind, uid, ts, sig);
    xfree(sig);
}

static void test_links_forged_expired_or_replayed_are_refused(void **state)
{
    (void)state;
    struct start s;
    begin(&s, "FAKE", "bob");
    /* Our signing matches the api's. */
    char mine[4096];
    long long ts = atoll(strstr(s.link, "ts=") + 3);
    signed_link("connect", s.uid, ts, mine, sizeof mine);
    assert_string_equal(mine, s.link);

    char forged[4096];
    snprintf(forged, sizeof forged, "%s", s.link);
    char *c = strstr(forged, "sig=") + 4;
    c[0] = c[0] == 'A' ? 'B' : 'A';
    assert_fails(&s.b, forged, "invalid_link");
    signed_link("disconnect", s.uid, ts, forged, sizeof forged);
    memcpy(strstr(forged, "/disconnect/"), "/connect/", 9);
    memmove(strstr(forged, "/connect/") + 9, strstr(forged, "/connect/") + 12,
            strlen(strstr(forged, "/connect/") + 12) + 1);
    assert_fails(&s.b, forged, "invalid_link");

    char old[4096];
    signed_link("connect", s.uid, harness_now_ms() / 1000 - 31 * 60, old, sizeof old);
    assert_fails(&s.b, old, "link_expired");
    /* The partner's own failure URL, after the original's second '?'. */
    char quirk[8192];
    snprintf(quirk, sizeof quirk, "%s?success=https://p.test/ok&failure=https://p.test/ko?x=1",
             old);
    struct page p = {0};
    browser_visit(&s.b, quirk, NULL, &p);
    assert_string_equal(p.location, "https://p.test/ko?x=1&error=link_expired");
    /* A protocol-relative failure URL is not followed: the partner's is. */
    snprintf(quirk, sizeof quirk, "%s&failure=//evil.test/x", old);
    assert_fails(&s.b, quirk, "link_expired");

    /* An unknown user, or no link at all: a page, not a redirect. */
    browser_visit(&s.b, PUBLIC "/users/connect/new?user_id=zz", NULL, &p);
    assert_int_equal(p.status, 404);
    assert_non_null(strstr(p.body.p, "not valid"));
    browser_visit(&s.b, PUBLIC "/users/connect/new", NULL, &p);
    assert_int_equal(p.status, 404);

    browser_visit(&s.b, s.link, NULL, &p);
    assert_int_equal(p.status, 302);
    assert_fails(&s.b, s.link, "link_used");
    assert_untouched(s.uid);
    page_free(&p);
    browser_close(&s.b);
}

static void test_state_wrong_missing_or_from_another_browser_is_refused(void **state)
{
    (void)state;
    struct start s;
    begin(&s, "FAKE", "carol");
    struct browser other;
    browser_open(&other, api.port);
    char cb[8192];
    to_callback(&s.b, s.link, "allow", cb, sizeof cb);
    char code[4096], st[256], url[8192];
    query_value(cb, "code", code, sizeof code);
    query_value(cb, "state", st, sizeof st);

    snprintf(url, sizeof url, PUBLIC "/users/connect/callback?code=%s&state=nope", code);
    assert_fails(&s.b, url, "invalid_state");
    snprintf(url, sizeof url, PUBLIC "/users/connect/callback?code=%s", code);
    assert_fails(&s.b, url, "invalid_state");
    /* Another browser (no cookie) presenting the state burns it. */
    assert_fails(&other, cb, "browser_mismatch");
    assert_fails(&s.b, cb, "invalid_state");
    /* A browser with no cookie and no state gets a page. */
    struct page p = {0};
    browser_visit(&other, PUBLIC "/users/connect/callback?code=x", NULL, &p);
    assert_int_equal(p.status, 400);
    assert_untouched(s.uid);
    page_free(&p);
    browser_close(&s.b);
    browser_close(&other);
}

static void test_denied_consent_and_token_errors_are_refused(void **state)
{
    (void)state;
    world(NULL);
    char link[4096], uid[SCHEMA_UID_LEN + 1], cb[8192];
    struct browser b;
    browser_open(&b, api.port);

    user_link("FAKE", "dave", "connect", link, sizeof link, uid);
    to_callback(&b, link, "deny", cb, sizeof cb);
    assert_fails(&b, cb, "access_denied");
    assert_untouched(uid);

    /* The token endpoint refusing the code, as it does on a PKCE mismatch. */
    user_link("FAKE", "erin", "connect", link, sizeof link, uid);
    to_callback(&b, link, "allow", cb, sizeof cb);
    assert_int_equal(
        fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"invalid_grant\",\"count\":1}"),
        0);
    assert_fails(&b, cb, "token_error");
    assert_untouched(uid);

    /* The token endpoint failing. */
    user_link("FAKE", "frank", "connect", link, sizeof link, uid);
    to_callback(&b, link, "allow", cb, sizeof cb);
    assert_int_equal(
        fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"500\",\"count\":1}"), 0);
    assert_fails(&b, cb, "provider_unavailable");
    assert_untouched(uid);
    browser_close(&b);

    /* The token endpoint down (nothing listens there). */
    char down[128];
    snprintf(down, sizeof down, "http://127.0.0.1:%d/token", harness_free_port());
    world(down);
    browser_open(&b, api.port);
    user_link("FAKE", "gina", "connect", link, sizeof link, uid);
    to_callback(&b, link, "allow", cb, sizeof cb);
    assert_fails(&b, cb, "provider_unavailable");
    assert_untouched(uid);
    browser_close(&b);
}

/* ---- PLAIN ---- */

/* The hidden state of a form page. */
static void form_state(const struct page *p, char *out, size_t n)
{
    const char *s = strstr(p->body.p, "name=\"state\" value=\"");
    assert_non_null(s);
    s += 20;
    snprintf(out, n, "%.*s", (int)strcspn(s, "\""), s);
}

static void test_plain_form_tries_the_login_before_saving(void **state)
{
    (void)state;
    struct start s;
    begin(&s, "PLAIN", "user1");
    struct browser other;
    browser_open(&other, api.port);
    struct page p = {0};
    browser_visit(&s.b, s.link, NULL, &p);
    assert_int_equal(p.status, 200);
    assert_non_null(strstr(p.body.p, "<form method=\"post\""));
    assert_null(strstr(p.body.p, "<script"));
    char st[256], form[1024];
    form_state(&p, st, sizeof st);

    snprintf(form, sizeof form, "state=%s&username=user1&password=wrong", st);
    browser_visit(&s.b, PUBLIC "/users/connect/new", form, &p);
    assert_int_equal(p.status, 200);
    assert_non_null(strstr(p.body.p, "id=\"error\""));
    assert_non_null(strstr(p.body.p, "did not accept this user name and password"));
    assert_untouched(s.uid);

    /* Another browser cannot post this form. */
    snprintf(form, sizeof form, "state=%s&username=user1&password=pass1", st);
    browser_visit(&other, PUBLIC "/users/connect/new", form, &p);
    assert_int_equal(p.status, 302);
    assert_string_equal(p.location, KO_URL "?error=browser_mismatch");
    assert_untouched(s.uid);

    /* The right password, in a new flow (the other browser burned that one). */
    freeReplyObject(rcmd(&redis, "DEL si:link:%s", strstr(s.link, "sig=") + 4));
    browser_visit(&s.b, s.link, NULL, &p);
    form_state(&p, st, sizeof st);
    snprintf(form, sizeof form, "state=%s&username=user1&password=pass1", st);
    browser_visit(&s.b, PUBLIC "/users/connect/new", form, &p);
    assert_int_equal(p.status, 302);
    assert_string_equal(p.location, OK_URL);
    char v[1024];
    fx_user_field(&redis, s.uid, "connected_at", v, sizeof v);
    assert_true(strlen(v) > 0);
    fx_user_field(&redis, s.uid, "username", v, sizeof v);
    assert_string_equal(v, "user1");
    assert_int_equal(events_of(s.uid, "connected"), 1);
    /* The form's flow is gone once used. */
    browser_visit(&s.b, PUBLIC "/users/connect/new", form, &p);
    assert_string_equal(p.location, KO_URL "?error=invalid_state");
    page_free(&p);
    browser_close(&s.b);
    browser_close(&other);
}

static void test_plain_form_escapes_input_and_is_rate_limited(void **state)
{
    (void)state;
    struct start s;
    begin(&s, "PLAIN", "user2");
    struct page p = {0};
    browser_visit(&s.b, s.link, NULL, &p);
    assert_int_equal(p.status, 200);
    char st[256], form[1024];
    form_state(&p, st, sizeof st);
    double refused =
        harness_metric(api.port, "superimap_api_connect_total{result=\"login_refused\"}");
    for (int i = 0; i < 10; i++) {
        snprintf(form, sizeof form, "state=%s&username=%%3Cb%%3Ex%%22%%3C%%2Fb%%3E&password=no",
                 st);
        browser_visit(&s.b, PUBLIC "/users/connect/new", form, &p);
        assert_int_equal(p.status, 200);
        assert_non_null(strstr(p.body.p, "value=\"&lt;b&gt;x&quot;&lt;/b&gt;\""));
        assert_null(strstr(p.body.p, "<b>x"));
    }
    assert_true(harness_metric(api.port, "superimap_api_connect_total{result=\"login_refused\"}") >=
                refused + 10);
    snprintf(form, sizeof form, "state=%s&username=user2&password=pass2", st);
    browser_visit(&s.b, PUBLIC "/users/connect/new", form, &p);
    assert_int_equal(p.status, 429);
    assert_non_null(strstr(p.body.p, "Too many attempts"));
    assert_untouched(s.uid);
    /* An empty password is asked for again without trying the server. */
    snprintf(form, sizeof form, "state=%s&username=user2&password=", st);
    browser_visit(&s.b, PUBLIC "/users/connect/new", form, &p);
    assert_int_equal(p.status, 200);
    assert_non_null(strstr(p.body.p, "Enter your user name and password."));
    page_free(&p);
    browser_close(&s.b);
}

/* ---- A real browser ---- */

#define CHROMIUM "/usr/bin/chromium"
#define NODE     "/usr/bin/node"

/* Runs argv (with env) to its end within ms; its log into out. The exit
 * code. */
static int run_to_end(const char *name, const char *const *argv, const char *const *env, int ms,
                      char **out)
{
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/%s.log", redis.dir, name);
    assert_int_equal(harness_spawn(&p, argv, env), 0);
    if (harness_proc_wait(&p, ms) < 0) {
        harness_proc_stop(&p);
        fail_msg("%s did not finish within %d ms; log %s", name, ms, p.log);
    }
    *out = slurp(p.log);
    return p.exit_code;
}

/* puppeteer-core 24.x in tests/browser/node_modules (test-only, never
 * committed), installed from the npm registry when missing. */
static void need_puppeteer(const char *dir)
{
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/node_modules/puppeteer-core/package.json", dir);
    if (access(probe, R_OK) == 0)
        return;
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && npm install --no-save --no-package-lock --no-audit --no-fund", dir);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *log = NULL;
    int rc = run_to_end("npm-install", argv, NULL, 300000, &log);
    if (rc != 0 || access(probe, R_OK) != 0)
        fail_msg("npm could not install puppeteer-core into %s (exit %d):\n%s", dir, rc,
                 log ? log : "");
    free(log);
}

static void test_browser_consent_and_plain_form(void **state)
{
    (void)state;
    if (access(CHROMIUM, X_OK) != 0 || access(NODE, X_OK) != 0)
        fail_msg("%s or %s is missing: install the Debian packages chromium and nodejs (make "
                 "deps)",
                 CHROMIUM, NODE);
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    char dir[1024], script[1100];
    snprintf(dir, sizeof dir, "%s/tests/browser", src ? src : ".");
    snprintf(script, sizeof script, "%s/connect.mjs", dir);
    need_puppeteer(dir);

    world(NULL);
    char oauth[4096], deny[4096], plain[4096];
    char oauth_uid[SCHEMA_UID_LEN + 1], deny_uid[SCHEMA_UID_LEN + 1], plain_uid[SCHEMA_UID_LEN + 1];
    user_link("FAKE", "browser1", "connect", oauth, sizeof oauth, oauth_uid);
    user_link("FAKE", "browser2", "connect", deny, sizeof deny, deny_uid);
    user_link("PLAIN", "user3", "connect", plain, sizeof plain, plain_uid);
    static char vars[8][4200];
    snprintf(vars[0], sizeof vars[0], "API_PORT=%d", api.port);
    snprintf(vars[1], sizeof vars[1], "OAUTH_LINK=%s", oauth);
    snprintf(vars[2], sizeof vars[2], "DENY_LINK=%s", deny);
    snprintf(vars[3], sizeof vars[3], "PLAIN_LINK=%s", plain);
    snprintf(vars[4], sizeof vars[4], "HOME=%s", redis.dir);
    snprintf(vars[5], sizeof vars[5], "TMPDIR=%s", redis.dir);
    const char *env[] = {vars[0],
                         vars[1],
                         vars[2],
                         vars[3],
                         vars[4],
                         vars[5],
                         "CHROMIUM=" CHROMIUM,
                         "PLAIN_USER=user3",
                         "PLAIN_PASSWORD=pass3",
                         "PATH=/usr/bin:/bin",
                         NULL};
    const char *argv[] = {NODE, script, NULL};
    char *log = NULL;
    int rc = run_to_end("browser", argv, env, 120000, &log);
    const char *line = log ? strstr(log, "{\"oauth\"") : NULL;
    if (rc != 0 || line == NULL)
        fail_msg("the browser test failed (exit %d):\n%s", rc, log ? log : "");
    yajl_val v = NULL;
    assert_int_equal(json_parse(line, strcspn(line, "\n"), 8, &v, NULL, 0), 0);
    assert_string_equal(json_get_str(v, "oauth"), OK_URL);
    assert_string_equal(json_get_str(v, "deny"), KO_URL "?error=access_denied");
    assert_non_null(strstr(json_get_str(v, "plain_error"), "did not accept"));
    assert_string_equal(json_get_str(v, "plain_saved_after_error"), PUBLIC "/users/connect/new");
    assert_string_equal(json_get_str(v, "plain"), OK_URL);
    json_free(v);
    free(log);

    char f[1024];
    fx_user_field(&redis, oauth_uid, "email", f, sizeof f);
    assert_string_equal(f, "browser@example.com");
    assert_int_equal(events_of(oauth_uid, "connected"), 1);
    assert_untouched(deny_uid);
    fx_user_field(&redis, plain_uid, "username", f, sizeof f);
    assert_string_equal(f, "user3");
    assert_int_equal(events_of(plain_uid, "connected"), 1);
}

/* ---- With the watcher ---- */

static void test_connected_user_is_watched_with_the_tokens_the_callback_stored(void **state)
{
    (void)state;
    DOVECOT_NEED(have_dovecot, skip_why);
    world(NULL);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"code\":\"DOVE\",\"imap_host\":\"127.0.0.1\",\"imap_port\":%d,\"tls\":\"none\","
             "\"auth\":\"oauth2\",\"oauth2_authorize_url\":\"http://127.0.0.1:%d/authorize\","
             "\"oauth2_token_url\":\"http://127.0.0.1:%d/token\","
             "\"oauth2_revoke_url\":\"http://127.0.0.1:%d/revoke\"}",
             dv.port_plain, idp.port, idp.port, idp.port);
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", "/admin/api/providers", body);
    EXPECT(&r, 201, "POST", "/admin/api/providers");
    api_form(&r, api.port, "POST", "/api/v1/connections", key,
             "imap_provider_code=DOVE&oauth2_client_id=" CLIENT "&oauth2_client_secret=" SECRET);
    EXPECT(&r, 201, "POST", "/api/v1/connections");
    api_resp_free(&r);
    char link[4096], uid[SCHEMA_UID_LEN + 1], cb[8192], pid[24];
    user_link("DOVE", "mailbox", "connect", link, sizeof link, uid);
    struct browser b;
    browser_open(&b, api.port);
    to_callback_as(&b, link, "user2@example.com", "allow", cb, sizeof cb);
    struct page p = {0};
    browser_visit(&b, cb, NULL, &p);
    assert_string_equal(p.location, OK_URL);
    page_free(&p);
    browser_close(&b);
    fx_user_field(&redis, uid, "pid", pid, sizeof pid);
    assert_int_equal(fx_ready_count(&redis, uid, pid), 1); /* user_connected */
    char access[512];
    fx_user_opened(&redis, uid, "oauth2_access_token", access, sizeof access);
    assert_true(strlen(access) > 8);

    /* The watcher logs in with the access token as stored: no refresh. */
    long long refreshes = fakeoauth_stat(&idp, "token.refresh_token.ok");
    struct proc w;
    const char *env[] = {"SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1", "SUPERIMAP_IMAP_BACKOFF_MIN_MS=100",
                         NULL};
    assert_int_equal(harness_node_start(&w, &redis, "superimap-watcher", "w-connect", env), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    assert_int_equal(fakeoauth_stat(&idp, "token.refresh_token.ok"), refreshes);
    const char msg[] = "From: a@example.com\r\nTo: user2@example.com\r\nSubject: connected\r\n"
                       "Message-ID: <connected.1@example.com>\r\n\r\nhello\r\n";
    assert_int_equal(dovecot_deliver(&dv, "user2@example.com", msg, sizeof msg - 1), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, pid, 2, 15000), 0); /* + new_mail */
    assert_false(harness_log_contains(&w, access));
    assert_false(harness_log_contains(&api, access));
    harness_proc_stop(&w);
}

/* ---- Provider configuration ---- */

static void test_provider_presets_fill_the_published_values(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", "/admin/api/providers",
               "{\"code\":\"GMAIL_OAUTH2\",\"preset\":\"gmail\"}");
    EXPECT(&r, 201, "POST", "/admin/api/providers");
    assert_string_equal(jstr(&r, "imap_host"), "imap.gmail.com");
    assert_string_equal(jstr(&r, "tls"), "implicit");
    assert_string_equal(jstr(&r, "auth"), "oauth2");
    assert_string_equal(jstr(&r, "sasl"), "xoauth2");
    assert_string_equal(jstr(&r, "oauth2_authorize_url"),
                        "https://accounts.google.com/o/oauth2/v2/auth");
    assert_string_equal(jstr(&r, "oauth2_token_url"), "https://oauth2.googleapis.com/token");
    assert_string_equal(jstr(&r, "oauth2_userinfo_url"),
                        "https://openidconnect.googleapis.com/v1/userinfo");
    assert_string_equal(jstr(&r, "oauth2_revoke_url"), "https://oauth2.googleapis.com/revoke");
    assert_string_equal(jstr(&r, "oauth2_scope"), "https://mail.google.com/ openid email");
    yajl_val params = json_get(r.json, "oauth2_authorize_params");
    assert_string_equal(json_get_str(params, "access_type"), "offline");
    assert_string_equal(json_get_str(params, "prompt"), "consent");
    int64_t port = 0;
    json_get_int(r.json, "imap_port", &port);
    assert_int_equal(port, 993);
    assert_string_equal(jstr(&r, "smtp_host"), "smtp.gmail.com");
    json_get_int(r.json, "smtp_port", &port);
    assert_int_equal(port, 587);
    assert_string_equal(jstr(&r, "smtp_tls"), "starttls");

    admin_json(&r, api.port, "POST", "/admin/api/providers",
               "{\"code\":\"MS\",\"preset\":\"microsoft\",\"sasl\":\"oauthbearer\","
               "\"oauth2_token_auth\":\"basic\"}");
    EXPECT(&r, 201, "POST", "/admin/api/providers");
    assert_string_equal(jstr(&r, "imap_host"), "outlook.office365.com");
    assert_string_equal(jstr(&r, "oauth2_authorize_url"),
                        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize");
    assert_string_equal(jstr(&r, "oauth2_token_url"),
                        "https://login.microsoftonline.com/common/oauth2/v2.0/token");
    assert_string_equal(jstr(&r, "oauth2_scope"),
                        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access openid "
                        "email");
    assert_string_equal(jstr(&r, "sasl"), "oauthbearer");
    assert_string_equal(jstr(&r, "oauth2_token_auth"), "basic");
    assert_string_equal(jstr(&r, "smtp_host"), "smtp.office365.com");
    json_get_int(r.json, "smtp_port", &port);
    assert_int_equal(port, 587);
    assert_string_equal(jstr(&r, "smtp_tls"), "starttls");

    static const char *const bad[][2] = {
        {"{\"code\":\"X\",\"preset\":\"yahoo\"}", "preset"},
        {"{\"code\":\"X\",\"preset\":\"gmail\",\"sasl\":\"plain\"}", "sasl"},
        {"{\"code\":\"X\",\"preset\":\"gmail\",\"oauth2_token_auth\":\"jwt\"}",
         "oauth2_token_auth"},
        {"{\"code\":\"X\",\"preset\":\"gmail\",\"oauth2_authorize_params\":{\"a\":1}}",
         "oauth2_authorize_params"},
        {"{\"code\":\"X\",\"preset\":\"gmail\",\"oauth2_authorize_params\":{\"state\":\"x\"}}",
         "oauth2_authorize_params"},
        {"{\"code\":\"X\",\"preset\":\"gmail\",\"oauth2_revoke_url\":\"ftp://x\"}",
         "oauth2_revoke_url"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        admin_json(&r, api.port, "POST", "/admin/api/providers", bad[i][0]);
        EXPECT(&r, 400, "POST", "/admin/api/providers");
        assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), bad[i][1]);
    }
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_presets_fill_the_published_values),
        cmocka_unit_test(test_oauth2_connect_consent_callback_then_disconnect),
        cmocka_unit_test(test_links_forged_expired_or_replayed_are_refused),
        cmocka_unit_test(test_state_wrong_missing_or_from_another_browser_is_refused),
        cmocka_unit_test(test_denied_consent_and_token_errors_are_refused),
        cmocka_unit_test(test_plain_form_tries_the_login_before_saving),
        cmocka_unit_test(test_plain_form_escapes_input_and_is_rate_limited),
        cmocka_unit_test(test_browser_consent_and_plain_form),
        cmocka_unit_test(test_connected_user_is_watched_with_the_tokens_the_callback_stored),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
