/*
 * Integration tests of the connect pages (cmd/api/routes_connect.c) with
 * superimap-fake-oauth2d as the OAuth2 provider and superimap-fake-imapd as
 * the PLAIN provider: a "browser" (one libcurl handle with its cookie jar)
 * follows the connect link, the consent page, the callback and the
 * disconnect link, and every refusal is checked: forged, expired and
 * replayed links, wrong, replayed and missing state, a state from another
 * browser, denied consent, the token endpoint refusing the code, a real
 * PKCE mismatch, the token endpoint failing, down or at a cloud metadata
 * address, a userinfo endpoint failing. Each refusal must end at the partner's
 * failure URL with the right error= and leave the user as it was; each
 * success at the success URL exactly, the user connected (or disconnected)
 * with its event queued in the same step. Then the same in headless
 * Chromium (tests/browser/connect.mjs), and a connected user watched by
 * superimap-watcher on a Dovecot whose oauth2 passdb asks the provider:
 * the watcher logs in with the access token the callback stored (no
 * refresh) and new mail becomes an event. Also: the email from userinfo
 * when the ID token has none, the PLAIN form over implicit TLS and
 * STARTTLS to Dovecot (and a certificate the api cannot verify), provider
 * presets, and users by state kept exact across every transition.
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
#include "core/scripts.h"
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
#define USERS   "/api/v2/connections/{code}/users"
#define USER    "/api/v2/connections/{code}/users/{tag}"

static struct redis_srv redis;
static struct proc api;
static struct fakeoauth idp;
static struct fakeimap imap;
static struct dovecot dv;
static int have_dovecot;
static char skip_why[128];
static char *key; /* the partner's API key */

/* ---- Suite ---- */

static int suite_setup(void **state)
{
    (void)state;
    static const char *const idp_args[] = {"--client", CLIENT ":" SECRET, NULL};
    if (harness_redis_start(&redis) < 0 || fakeoauth_start(&idp, idp_args) < 0 || fx_init() < 0 ||
        fakeimap_prepare(&imap, 0) < 0 || fakeimap_start(&imap, NULL) < 0)
        return -1;
    have_dovecot = dovecot_available(skip_why, sizeof skip_why);
    char introspect[300];
    fakeoauth_url(&idp, "/introspect", introspect, sizeof introspect);
    if (have_dovecot && dovecot_start_oauth2(&dv, 4, introspect) < 0)
        return -1;
    /* The api trusts the CA of Dovecot's certificate as the watcher does. */
    static char ca_env[400];
    snprintf(ca_env, sizeof ca_env, "SUPERIMAP_CA_FILE=%s", have_dovecot ? dv.ca_file : "");
    const char *const env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                               "SUPERIMAP_API_RATE_LIMIT=0",
                               "SUPERIMAP_PUBLIC_URL=" PUBLIC,
                               "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1",
                               "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                               have_dovecot ? ca_env : NULL,
                               NULL};
    if (harness_node_start(&api, &redis, "superimap-api", "api-connect", env) < 0 ||
        harness_wait_http(api.port, "/readyz", 200, 10000) < 0)
        return -1;
    return 0;
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
    assert_int_equal(
        fakeoauth_inject(&idp, "{\"endpoint\":\"userinfo\",\"error\":\"500\",\"count\":0}"), 0);
    assert_int_equal(fakeoauth_config(&idp, "{\"id_token\":\"email\"}"), 0);
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
    api_form(&r, api.port, "POST", "/api/v2/connections", key,
             "imap_provider_code=FAKE&oauth2_client_id=" CLIENT "&oauth2_client_secret=" SECRET);
    EXPECT(&r, 201, "POST", "/api/v2/connections");
    api_form(&r, api.port, "POST", "/api/v2/connections", key, "imap_provider_code=PLAIN");
    EXPECT(&r, 201, "POST", "/api/v2/connections");
    api_resp_free(&r);
}

/* Creates user tag of connection code; its connect or disconnect URL
 * (kind) into url and its id into uid. */
static void user_link(const char *code, const char *tag, const char *kind, char *url, size_t n,
                      char uid[SCHEMA_UID_LEN + 1])
{
    char path[256], form[256];
    snprintf(path, sizeof path, "/api/v2/connections/%s/users", code);
    snprintf(form, sizeof form, "tag=%s", tag);
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", path, key, form);
    if (r.status == 409) {
        snprintf(path, sizeof path, "/api/v2/connections/%s/users/%s", code, tag);
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
    api_form(&r, api.port, "POST", "/api/v2/connections/FAKE/users", key,
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
    redisReply *rep = rcmd(&redis, "ZSCORE si:{%u}:users %s", hrw_shard(s.uid, 64), s.uid);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    freeReplyObject(rep);

    /* The state was single use: the same callback again changes nothing. */
    browser_visit(&s.b, cb, NULL, &p);
    assert_int_equal(p.status, 302);
    assert_string_equal(p.location, KO_URL "?error=invalid_state");
    assert_int_equal(events_of(s.uid, "connected"), 1);

    /* The API shows it connected. */
    api_json(&r, api.port, "GET", "/api/v2/connections/FAKE/users/alice", key, NULL);
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

/* The provider's ID token names no email (a claim left out, or no ID token
 * at all): the callback asks the userinfo endpoint with the access token.
 * When that fails the user is left as it was and the browser goes to the
 * failure URL: provider_unavailable for a 5xx, no_email for a refusal. */
static void test_email_from_userinfo_when_the_id_token_has_none(void **state)
{
    (void)state;
    static const char *const kinds[] = {"{\"id_token\":\"no_email\"}", "{\"id_token\":\"none\"}"};
    static const char *const tags[] = {"dana", "dave"};
    char cb[8192], v[4096];
    struct page p = {0};
    for (int i = 0; i < 2; i++) {
        struct start s;
        begin(&s, "FAKE", tags[i]);
        assert_int_equal(fakeoauth_config(&idp, kinds[i]), 0);
        long long asked = fakeoauth_stat(&idp, "userinfo");
        to_callback_as(&s.b, s.link, "dana@example.com", "allow", cb, sizeof cb);
        browser_visit(&s.b, cb, NULL, &p);
        if (p.status != 302 || strcmp(p.location, OK_URL) != 0)
            fail_msg("%s: want 302 to %s, got %ld to %s", kinds[i], OK_URL, p.status, p.location);
        assert_int_equal(fakeoauth_stat(&idp, "userinfo"), asked + 1);
        fx_user_field(&redis, s.uid, "email", v, sizeof v);
        assert_string_equal(v, "dana@example.com");
        assert_int_equal(events_of(s.uid, "connected"), 1);
        browser_close(&s.b);
    }

    static const char *const faults[][2] = {
        {"{\"endpoint\":\"userinfo\",\"error\":\"500\",\"count\":1}", "provider_unavailable"},
        {"{\"endpoint\":\"userinfo\",\"error\":\"invalid_grant\",\"count\":1}", "no_email"},
    };
    for (int i = 0; i < 2; i++) {
        struct start s;
        begin(&s, "FAKE", "erin");
        assert_int_equal(fakeoauth_config(&idp, "{\"id_token\":\"no_email\"}"), 0);
        assert_int_equal(fakeoauth_inject(&idp, faults[i][0]), 0);
        to_callback_as(&s.b, s.link, "erin@example.com", "allow", cb, sizeof cb);
        assert_fails(&s.b, cb, faults[i][1]);
        assert_untouched(s.uid);
        fx_user_field(&redis, s.uid, "email", v, sizeof v);
        assert_string_equal(v, "");
        browser_close(&s.b);
    }
    assert_true(harness_metric(
                    api.port, "superimap_api_connect_total{result=\"provider_unavailable\"}") >= 1);
    assert_true(harness_metric(api.port, "superimap_api_connect_total{result=\"no_email\"}") >= 1);
    page_free(&p);
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

    /* A real PKCE mismatch: the code_challenge the provider sees is not
     * the api's (as if the authorize URL were tampered with); the
     * provider refuses the api's verifier. */
    world(NULL);
    user_link("FAKE", "pkce", "connect", link, sizeof link, uid);
    browser_open(&b, api.port);
    struct page p = {0};
    browser_visit(&b, link, NULL, &p);
    assert_int_equal(p.status, 302);
    char auth[8192], challenge[64];
    snprintf(auth, sizeof auth, "%s", p.location);
    query_value(auth, "code_challenge", challenge, sizeof challenge);
    assert_int_equal(strlen(challenge), 43);
    char *c = strstr(auth, challenge);
    c[0] = c[0] == 'A' ? 'B' : 'A';
    long long refused = fakeoauth_stat(&idp, "token.authorization_code.invalid_grant");
    assert_int_equal(
        browser_answer_consent(&b, idp.port, auth, "alice@example.com", "allow", cb, sizeof cb), 0);
    assert_fails(&b, cb, "token_error");
    assert_int_equal(fakeoauth_stat(&idp, "token.authorization_code.invalid_grant"), refused + 1);
    assert_untouched(uid);
    page_free(&p);
    browser_close(&b);

    /* A token endpoint at a cloud metadata address is never stored, even
     * with SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1 (a name that resolves there is
     * refused when connecting: core/netguard). */
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", "/admin/api/providers",
               "{\"code\":\"META\",\"imap_host\":\"127.0.0.1\",\"auth\":\"oauth2\","
               "\"oauth2_authorize_url\":\"https://idp.example/authorize\","
               "\"oauth2_token_url\":\"http://169.254.169.254/token\"}");
    EXPECT(&r, 400, "POST", "/admin/api/providers");
    assert_non_null(strstr(r.body, "oauth2_token_url"));
    api_resp_free(&r);
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

/* Posts the PLAIN form of link in a fresh browser on port with user1's
 * password pw; the answer into p. */
static void post_form(int port, const char *link, const char *pw, struct page *p)
{
    struct browser b;
    browser_open(&b, port);
    browser_visit(&b, link, NULL, p);
    assert_int_equal(p->status, 200);
    char st[256], form[1024];
    form_state(p, st, sizeof st);
    snprintf(form, sizeof form, "state=%s&username=user1&password=%s", st, pw);
    browser_visit(&b, PUBLIC "/users/connect/new", form, p);
    browser_close(&b);
}

/* The form's live login to Dovecot over implicit TLS and over STARTTLS,
 * the certificate verified against SUPERIMAP_CA_FILE (the test's CA): a
 * wrong password shows Dovecot's refusal and saves nothing, the right one
 * connects. An api that does not trust that CA sends no password: the
 * person reads that the server's certificate could not be verified. */
static void test_plain_form_over_tls_and_starttls(void **state)
{
    (void)state;
    DOVECOT_NEED(have_dovecot, skip_why);
    world(NULL);
    static const char *const codes[] = {"DTLS", "DSTART"};
    char body[512];
    struct api_resp r = {0};
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body,
                 "{\"code\":\"%s\",\"imap_host\":\"127.0.0.1\",\"imap_port\":%d,"
                 "\"tls\":\"%s\"}",
                 codes[i], i == 0 ? dv.port_tls : dv.port_plain, i == 0 ? "implicit" : "starttls");
        admin_json(&r, api.port, "POST", "/admin/api/providers", body);
        EXPECT(&r, 201, "POST", "/admin/api/providers");
        snprintf(body, sizeof body, "imap_provider_code=%s", codes[i]);
        api_form(&r, api.port, "POST", "/api/v2/connections", key, body);
        EXPECT(&r, 201, "POST", "/api/v2/connections");
    }
    api_resp_free(&r);

    struct page p = {0};
    char link[4096], uid[SCHEMA_UID_LEN + 1], v[1024];
    for (int i = 0; i < 2; i++) {
        user_link(codes[i], "tls-user", "connect", link, sizeof link, uid);
        post_form(api.port, link, "wrong", &p);
        assert_int_equal(p.status, 200);
        if (strstr(p.body.p, "did not accept this user name and password") == NULL)
            fail_msg("%s, wrong password: %s", codes[i], p.body.p);
        assert_untouched(uid);
        freeReplyObject(rcmd(&redis, "DEL si:link:%s", strstr(link, "sig=") + 4));
        post_form(api.port, link, "pass1", &p);
        if (p.status != 302 || strcmp(p.location, OK_URL) != 0)
            fail_msg("%s, right password: %ld %s %s", codes[i], p.status, p.location, p.body.p);
        fx_user_field(&redis, uid, "username", v, sizeof v);
        assert_string_equal(v, "user1");
        assert_int_equal(events_of(uid, "connected"), 1);
    }

    /* An api without the test's CA trusts only the system's. */
    struct proc untrusting;
    const char *const env[] = {"SUPERIMAP_PUBLIC_URL=" PUBLIC, NULL};
    assert_int_equal(
        harness_node_start(&untrusting, &redis, "superimap-api", "api-connect-no-ca", env), 0);
    assert_int_equal(harness_wait_http(untrusting.port, "/readyz", 200, 10000), 0);
    for (int i = 0; i < 2; i++) {
        user_link(codes[i], "untrusted", "connect", link, sizeof link, uid);
        post_form(untrusting.port, link, "pass1", &p);
        assert_int_equal(p.status, 200);
        if (strstr(p.body.p, "did not prove who it is: its certificate could not be verified") ==
            NULL)
            fail_msg("%s, untrusted certificate: %s", codes[i], p.body.p);
        assert_untouched(uid);
    }
    harness_proc_stop(&untrusting);
    page_free(&p);
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

static void test_browser_consent_and_plain_form(void **state)
{
    (void)state;
    world(NULL);
    char oauth[4096], deny[4096], plain[4096];
    char oauth_uid[SCHEMA_UID_LEN + 1], deny_uid[SCHEMA_UID_LEN + 1], plain_uid[SCHEMA_UID_LEN + 1];
    user_link("FAKE", "browser1", "connect", oauth, sizeof oauth, oauth_uid);
    user_link("FAKE", "browser2", "connect", deny, sizeof deny, deny_uid);
    user_link("PLAIN", "user3", "connect", plain, sizeof plain, plain_uid);
    static char vars[4][4200];
    snprintf(vars[0], sizeof vars[0], "API_PORT=%d", api.port);
    snprintf(vars[1], sizeof vars[1], "OAUTH_LINK=%s", oauth);
    snprintf(vars[2], sizeof vars[2], "DENY_LINK=%s", deny);
    snprintf(vars[3], sizeof vars[3], "PLAIN_LINK=%s", plain);
    const char *env[] = {
        vars[0], vars[1], vars[2], vars[3], "PLAIN_USER=user3", "PLAIN_PASSWORD=pass3", NULL};
    char *log = browser_chromium(redis.dir, "browser", "connect.mjs", env, 120000);
    static char line[16384];
    if (browser_output_line(log, "{\"oauth\"", line, sizeof line) < 0)
        fail_msg("the browser test printed no result:\n%s", log);
    yajl_val v = NULL;
    assert_int_equal(json_parse(line, strlen(line), 8, &v, NULL, 0), 0);
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
    api_form(&r, api.port, "POST", "/api/v2/connections", key,
             "imap_provider_code=DOVE&oauth2_client_id=" CLIENT "&oauth2_client_secret=" SECRET);
    EXPECT(&r, 201, "POST", "/api/v2/connections");
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

/* ---- Users by state ---- */

/* The states of superimap_users{state}, in users_count.lua's order. */
static const char *const state_names[4] = {"archived", "connected", "reauth_required",
                                           "not_connected"};

/* Runs the embedded script name (EVAL of its body, prelude included) with
 * nkeys of the argc strings of argv; the reply (free it). */
static redisReply *run_script(const char *name, int nkeys, int argc, const char *const *argv)
{
    const struct script_source *src = script_find(name);
    assert_non_null(src);
    const char *all[40];
    char nk[8];
    assert_true(argc + 3 <= 40);
    snprintf(nk, sizeof nk, "%d", nkeys);
    all[0] = "EVAL";
    all[1] = src->body;
    all[2] = nk;
    for (int i = 0; i < argc; i++)
        all[3 + i] = argv[i];
    redisReply *r = fx_cmdv(&redis, argc + 3, all, NULL);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", name, r != NULL ? r->str : "no answer");
    return r;
}

/* Calls each with the key and uid of every user hash (SCAN of every
 * si:{k}:user:<uid>). */
static void each_user(void (*each)(const char *key, const char *uid, void *data), void *data)
{
    char cursor[32] = "0";
    do {
        redisReply *r = rcmd(&redis, "SCAN %s MATCH si:{*}:user:* COUNT 1000", cursor);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *k = r->element[1]->element[i]->str;
            each(k, strstr(k, ":user:") + 6, data);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
}

static void count_state(const char *k, const char *uid, void *data)
{
    long long *t = data;
    redisReply *f = rcmd(&redis, "HMGET %s archived state", k);
    char zset[64];
    snprintf(zset, sizeof zset, "%.*s:users", (int)(uid - 6 - k), k);
    redisReply *w = rcmd(&redis, "ZRANK %s %s", zset, uid);
    const char *arch = f->element[0]->str, *st = f->element[1]->str;
    int which = arch != NULL && strcmp(arch, "1") == 0             ? 0
                : w->type == REDIS_REPLY_INTEGER                   ? 1
                : st != NULL && strcmp(st, "reauth_required") == 0 ? 2
                                                                   : 3;
    t[which]++;
    freeReplyObject(f);
    freeReplyObject(w);
}

/* Users by state from the user hashes themselves: archived, else in its
 * shard's users set, else reauth_required by its state, else not
 * connected. */
static void states_by_scan(long long t[4])
{
    memset(t, 0, 4 * sizeof t[0]);
    each_user(count_state, t);
}

/* Users by state as the api counts them: users_count.lua on every shard. */
static void states_counted(long long c[4])
{
    long long users = 0;
    memset(c, 0, 4 * sizeof c[0]);
    for (unsigned k = 0; k < 64; k++) {
        char count[32], users_key[32], reauth[32], prefix[32];
        snprintf(count, sizeof count, "si:{%u}:count", k);
        snprintf(users_key, sizeof users_key, "si:{%u}:users", k);
        snprintf(reauth, sizeof reauth, "si:{%u}:reauth", k);
        snprintf(prefix, sizeof prefix, "si:{%u}:", k);
        const char *argv[] = {count, users_key, reauth, prefix};
        redisReply *r = run_script("users_count", 3, 4, argv);
        assert_int_equal(r->elements, 4);
        users += r->element[0]->integer;
        for (int i = 0; i < 3; i++)
            c[i] += r->element[i + 1]->integer;
        freeReplyObject(r);
    }
    c[3] = users - c[0] - c[1] - c[2];
}

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The index entries a user hash makes, collected. */
struct entries {
    char **v;
    size_t n, cap;
};

static void add_entries(const char *k, const char *uid, void *data)
{
    struct entries *e = data;
    redisReply *f = rcmd(&redis, "HMGET %s email tag username", k);
    for (int j = 0; j < 3; j++) {
        const char *v = f->element[j]->str;
        if (v == NULL || *v == '\0')
            continue;
        if (e->n == e->cap)
            e->v = realloc(e->v, (e->cap = e->cap * 2 + 16) * sizeof *e->v);
        size_t len = strlen(v) + 2 + SCHEMA_UID_LEN + 1;
        char *m = malloc(len);
        snprintf(m, len, "%c%s\x1f%s", "etl"[j], v, uid);
        for (char *c = m; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        e->v[e->n++] = m;
    }
    freeReplyObject(f);
}

/* The admin search index si:ix:user holds exactly the entries the user
 * hashes make: "<e|t|l><lower value>\x1f<uid>" for each non-empty email,
 * tag and login username. */
static void assert_index_exact(const char *after)
{
    struct entries e = {NULL, 0, 0};
    each_user(add_entries, &e);
    char **want = e.v;
    size_t n = e.n;
    if (n > 0)
        qsort(want, n, sizeof *want, by_bytes);
    redisReply *ix = rcmd(&redis, "ZRANGE si:ix:user 0 -1");
    for (size_t i = 0; i < n || i < ix->elements; i++) {
        const char *w = i < n ? want[i] : "(none)";
        const char *g = i < ix->elements ? ix->element[i]->str : "(none)";
        if (strcmp(w, g) != 0)
            fail_msg("after %s: si:ix:user entry %zu is '%s', the user hashes make '%s'", after, i,
                     g, w);
    }
    freeReplyObject(ix);
    for (size_t i = 0; i < n; i++)
        free(want[i]);
    free(want);
}

/* The counts the scripts keep equal the users as they are, and so does the
 * admin search index. */
static void assert_states_exact(const char *after, const long long want[4])
{
    assert_index_exact(after);
    long long t[4], c[4];
    states_by_scan(t);
    states_counted(c);
    for (int i = 0; i < 4; i++) {
        if (t[i] != want[i])
            fail_msg("after %s: %lld users %s by the hashes, the test made %lld", after, t[i],
                     state_names[i], want[i]);
        if (c[i] != t[i])
            fail_msg("after %s: %lld users %s counted, %lld by the hashes", after, c[i],
                     state_names[i], t[i]);
    }
}

/* Connects PLAIN user tag through the form as login/password. */
static void form_connect(const char *tag, const char *login, const char *password)
{
    char link[4096], uid[SCHEMA_UID_LEN + 1], st[256], form[1024];
    user_link("PLAIN", tag, "connect", link, sizeof link, uid);
    struct browser b;
    browser_open(&b, api.port);
    struct page p = {0};
    browser_visit(&b, link, NULL, &p);
    form_state(&p, st, sizeof st);
    snprintf(form, sizeof form, "state=%s&username=%s&password=%s", st, login, password);
    browser_visit(&b, PUBLIC "/users/connect/new", form, &p);
    assert_string_equal(p.location, OK_URL);
    page_free(&p);
    browser_close(&b);
}

/* Follows user tag's disconnect link of connection code. */
static void disconnect(const char *code, const char *tag)
{
    char link[4096], uid[SCHEMA_UID_LEN + 1];
    user_link(code, tag, "disconnect", link, sizeof link, uid);
    struct browser b;
    browser_open(&b, api.port);
    struct page p = {0};
    browser_visit(&b, link, NULL, &p);
    assert_string_equal(p.location, OK_URL);
    page_free(&p);
    browser_close(&b);
}

/* A user of FAKE brought over by superimap-import (its script). */
static void import_user(const char *uid, const char *tag, int archived, int connected)
{
    char pid[32], conn[64], users[72], tagkey[128], emailkey[128], ukey[64], shard[32], cur[64],
        k[8];
    unsigned sh = hrw_shard(uid, 64);
    redisReply *r = rcmd(&redis, "ZRANGE si:partners 0 0");
    snprintf(pid, sizeof pid, "%s", r->element[0]->str);
    freeReplyObject(r);
    snprintf(conn, sizeof conn, "si:conn:%s:FAKE", pid);
    snprintf(users, sizeof users, "%s:users", conn);
    snprintf(tagkey, sizeof tagkey, "si:tag:%s:FAKE:%s", pid, tag);
    snprintf(emailkey, sizeof emailkey, "si:email:%s:FAKE:%s@example.com", pid, tag);
    snprintf(ukey, sizeof ukey, "si:{%u}:user:%s", sh, uid);
    snprintf(shard, sizeof shard, "si:{%u}:users", sh);
    snprintf(cur, sizeof cur, "si:{%u}:cur:%s", sh, uid);
    snprintf(k, sizeof k, "%u", sh);
    char email[96];
    snprintf(email, sizeof email, "%s@example.com", tag);
    const char *argv[] = {conn,
                          users,
                          tagkey,
                          emailkey,
                          ukey,
                          shard,
                          "si:changes",
                          cur,
                          uid,
                          k,
                          tag,
                          email,
                          "",
                          connected ? "v1:sealed-refresh-token" : "",
                          archived ? "1" : "0",
                          "0",
                          tag,
                          pid,
                          "FAKE",
                          connected ? "1700000000000" : "",
                          "",
                          "",
                          "",
                          ""};
    r = run_script("user_import", 8, 24, argv);
    assert_string_equal(r->element[0]->str, "ok");
    freeReplyObject(r);
}

/* Users by state (superimap_users{state}) follow every transition exactly:
 * creates (live, archived, connected on save), the OAuth2 callback and the
 * PLAIN form, archive by DELETE and by PUT, restore by both, a grant that
 * died (user_reauth) and its user disconnected, a disconnect, an import and
 * a connection deleted with its users. After each step the counts the
 * scripts keep (users_count.lua over every shard) equal a scan of the user
 * hashes and what the test made, and the admin search index (si:ix:user)
 * holds exactly the emails, tags and logins of the hashes (changes of them
 * by PUT too); at the end the api's gauges show the counts. */
static void test_users_by_state_stay_exact(void **state)
{
    (void)state;
    world(NULL);
    assert_int_equal(scripts_init(), 0);
    long long want[4] = {0, 0, 0, 0}; /* archived, connected, reauth, not connected */
    assert_states_exact("a fresh world", want);

    struct api_resp r = {0};
    static const char *const creates[][2] = {
        {"FAKE", "tag=s1"},
        {"FAKE", "tag=s2"},
        {"FAKE", "tag=s3"},
        {"FAKE", "tag=s4"},
        {"FAKE", "tag=s5&archived=true"},
        {"PLAIN", "tag=p1&login_username=user1&login_password=pass1"},
        {"PLAIN", "tag=p2"},
        {"PLAIN", "tag=p3"},
    };
    for (size_t i = 0; i < sizeof creates / sizeof creates[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/v2/connections/%s/users", creates[i][0]);
        api_form(&r, api.port, "POST", path, key, creates[i][1]);
        EXPECT(&r, 201, "POST", USERS);
    }
    want[0] = 1, want[1] = 1, want[3] = 6;
    assert_states_exact("creates", want);

    char link[4096], cb[8192], s2[SCHEMA_UID_LEN + 1];
    user_link("FAKE", "s2", "connect", link, sizeof link, s2);
    struct browser b;
    browser_open(&b, api.port);
    to_callback(&b, link, "allow", cb, sizeof cb);
    struct page p = {0};
    browser_visit(&b, cb, NULL, &p);
    assert_string_equal(p.location, OK_URL);
    page_free(&p);
    browser_close(&b);
    form_connect("p2", "user2", "pass2");
    want[1] = 3, want[3] = 4;
    assert_states_exact("connects", want);

    api_json(&r, api.port, "DELETE", "/api/v2/connections/FAKE/users/s3", key, NULL);
    EXPECT(&r, 204, "DELETE", USER);
    api_form(&r, api.port, "PUT", "/api/v2/connections/FAKE/users/s4", key,
             "archived=true&enable_tracer=true");
    EXPECT(&r, 200, "PUT", USER);
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/p3", key, "archived=true");
    EXPECT(&r, 200, "PUT", USER);
    want[0] = 4, want[3] = 1;
    assert_states_exact("archives", want);
    api_form(&r, api.port, "PUT", "/api/v2/connections/FAKE/users/s3", key, "archived=false");
    EXPECT(&r, 200, "PUT", USER);
    api_form(&r, api.port, "PUT", "/api/v2/connections/FAKE/users/s4", key,
             "archived=false&enable_tracer=false");
    EXPECT(&r, 200, "PUT", USER);
    want[0] = 2, want[3] = 3;
    assert_states_exact("restores", want);
    api_form(&r, api.port, "PUT", "/api/v2/connections/FAKE/users/s1", key,
             "tag=S1b&email=S1b@Example.com");
    EXPECT(&r, 200, "PUT", USER);
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/p2", key,
             "login_username=User2b");
    EXPECT(&r, 200, "PUT", USER);
    assert_states_exact("a tag, an email and a login changed", want);

    /* s2's grant dies (what the watcher's refresh does on invalid_grant). */
    unsigned sh = hrw_shard(s2, 64);
    char secret[1024], ukey[64], users[32], evt[96], eid[64], reauth[32], pid[32];
    fx_user_field(&redis, s2, "secret", secret, sizeof secret);
    fx_user_field(&redis, s2, "pid", pid, sizeof pid);
    snprintf(ukey, sizeof ukey, "si:{%u}:user:%s", sh, s2);
    snprintf(users, sizeof users, "si:{%u}:users", sh);
    snprintf(eid, sizeof eid, "%s.reauth.1", s2);
    snprintf(evt, sizeof evt, "si:{%u}:evt:%s", sh, eid);
    snprintf(reauth, sizeof reauth, "si:{%u}:reauth", sh);
    char ready[64], partners[48];
    snprintf(ready, sizeof ready, "si:{%u}:ready:%s", sh, pid);
    snprintf(partners, sizeof partners, "si:{%u}:ready_partners", sh);
    const char *argv[] = {ukey, users, evt, ready,  partners, reauth, secret, "invalid_grant",
                          eid,  pid,   s2,  "sha1", "payload"};
    redisReply *rr = run_script("user_reauth", 6, 13, argv);
    assert_int_equal(rr->integer, 1);
    freeReplyObject(rr);
    disconnect("PLAIN", "p1");
    want[1] = 1, want[2] = 1, want[3] = 4;
    assert_states_exact("a dead grant and a disconnect", want);
    disconnect("FAKE", "s2");
    want[2] = 0, want[3] = 5;
    assert_states_exact("the reauth_required user disconnected", want);

    import_user("aaaaaaaaaaaaaaaaaaaaaaa1", "i1", 0, 1);
    import_user("aaaaaaaaaaaaaaaaaaaaaaa2", "i2", 1, 0);
    import_user("aaaaaaaaaaaaaaaaaaaaaaa3", "i3", 0, 0);
    want[0] = 3, want[1] = 2, want[3] = 6;
    assert_states_exact("an import", want);

    /* PLAIN had p1 (not connected), p2 (connected), p3 (archived). */
    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN", key, NULL);
    assert_true(r.status == 200 || r.status == 204);
    want[0] = 2, want[1] = 1, want[3] = 5;
    assert_states_exact("a connection deleted", want);
    api_resp_free(&r);

    /* The api's gauges, counted off the scrape path every 5 s. */
    for (int i = 0; i < 4; i++) {
        char series[96];
        snprintf(series, sizeof series, "superimap_users{state=\"%s\"}", state_names[i]);
        long long deadline = harness_now_ms() + 15000;
        while (harness_metric(api.port, series) != (double)want[i] && harness_now_ms() < deadline)
            harness_poll_pause();
        if (harness_metric(api.port, series) != (double)want[i])
            fail_msg("%s is %g, not %lld", series, harness_metric(api.port, series), want[i]);
    }
}

/* ---- Provider configuration ---- */

/* The field of user uid's hash, "" when absent (static buffer). */
static const char *user_field(const char *uid, const char *field)
{
    static char out[256];
    redisReply *v = rcmd(&redis, "HGET si:{%u}:user:%s %s", hrw_shard(uid, 64), uid, field);
    snprintf(out, sizeof out, "%s", v->type == REDIS_REPLY_STRING ? v->str : "");
    freeReplyObject(v);
    return out;
}

/* Issue #21: the scripts that make a user live from a connection copy the
 * connection's mailboxes into the user's conn_mailboxes (watchers read only
 * the user's hash): user_create, the PLAIN form's user_connect (a copy gone
 * stale, set by hand here, is made current) and user_import. */
static void test_connect_and_import_copy_the_connection_mailboxes(void **state)
{
    (void)state;
    world(NULL);
    assert_int_equal(scripts_init(), 0);
    struct api_resp r = {0};
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN", key,
             "{\"mailboxes\":[\"INBOX\",\"\\\\Junk\"]}");
    EXPECT(&r, 200, "PUT", "/api/v2/connections/{code}");
    char link[4096], uid[SCHEMA_UID_LEN + 1];
    user_link("PLAIN", "mb", "connect", link, sizeof link, uid);
    assert_string_equal(user_field(uid, "conn_mailboxes"), "[\"INBOX\",\"\\\\Junk\"]");
    freeReplyObject(
        rcmd(&redis, "HSET si:{%u}:user:%s conn_mailboxes stale", hrw_shard(uid, 64), uid));
    form_connect("mb", "user2", "pass2");
    assert_string_equal(user_field(uid, "conn_mailboxes"), "[\"INBOX\",\"\\\\Junk\"]");
    assert_true(*user_field(uid, "connected_at") != '\0');

    /* FAKE gets a list; an imported user copies it. */
    api_json(&r, api.port, "PUT", "/api/v2/connections/FAKE", key, "{\"mailboxes\":[\"\\\\All\"]}");
    EXPECT(&r, 200, "PUT", "/api/v2/connections/{code}");
    const char *iuid = "bbbbbbbbbbbbbbbbbbbbbbb1";
    import_user(iuid, "imb", 0, 1);
    assert_string_equal(user_field(iuid, "conn_mailboxes"), "[\"\\\\All\"]");
    api_json(&r, api.port, "GET", "/api/v2/connections/FAKE/users/imb", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    char got[64];
    yajl_val l = json_get(r.json, "mailboxes");
    assert_true(YAJL_IS_ARRAY(l) && l->u.array.len == 1);
    snprintf(got, sizeof got, "%s", l->u.array.values[0]->u.string);
    assert_string_equal(got, "\\All");
    api_resp_free(&r);
}

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
        cmocka_unit_test(test_email_from_userinfo_when_the_id_token_has_none),
        cmocka_unit_test(test_plain_form_tries_the_login_before_saving),
        cmocka_unit_test(test_plain_form_escapes_input_and_is_rate_limited),
        cmocka_unit_test(test_plain_form_over_tls_and_starttls),
        cmocka_unit_test(test_browser_consent_and_plain_form),
        cmocka_unit_test(test_connected_user_is_watched_with_the_tokens_the_callback_stored),
        cmocka_unit_test(test_users_by_state_stay_exact),
        cmocka_unit_test(test_connect_and_import_copy_the_connection_mailboxes),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
