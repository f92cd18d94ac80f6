/*
 * End to end, a Gmail-like OAuth2 mailbox on a whole fleet
 * (tests/integration/system.h with opts.oauth2: Redis, Dovecot whose oauth2
 * passdb validates every XOAUTH2 login at superimap-fake-oauth2d, that
 * provider, api, watcher, dispatcher, webhook receiver), driven only as a
 * partner and a user would: the user's connect_url from the partner API is
 * followed in a browser, the user consents at the provider, the callback
 * connects it and sends the browser to the partner's success URL, and
 * user_connected is delivered;
 * mail becomes new_mail webhooks; the access token lives 5 s and is
 * refreshed in the background without a new login or a lost event; the
 * grant is revoked at the provider's /revoke, and the user ends in state
 * reauth_required with a user_reauth_required webhook; the disconnect link
 * gives user_disconnected. Every webhook's signatures are verified by the
 * receiver (sys_report()). The chain runs twice, each on a fleet of its
 * own: with libcurl and a cookie jar (browser.h), and in headless Chromium
 * (tests/browser/connect.mjs, one run per link; the partner's success page
 * is answered inside the browser).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"
#include "tests/integration/test_watcher_fixture.h"

#define TAG        "ana"
#define BACK       "&success=https%3A%2F%2Fpartner.test%2Fok&failure=https%3A%2F%2Fpartner.test%2Fko"
#define ACCESS_TTL 5 /* seconds */
#define WATCHING   "superimap_watcher_sessions_by_state{state=\"watching\"}"
#define REAUTH     "superimap_users{state=\"reauth_required\"}"
#define CONNECTED  "superimap_users{state=\"connected\"}"
#define NOT_CONN   "superimap_users{state=\"not_connected\"}"

static struct sys fleet;

static int setup(void **state)
{
    (void)state;
    const struct sys_opts o = {.oauth2 = 1, .dovecot_users = 4};
    if (fx_init() < 0 || sys_start_dovecot(&fleet, &o) < 0)
        return -1;
    return fleet.skipped ? 0 : fakeoauth_config(&fleet.idp, "{\"access_ttl\":5}");
}

static int teardown(void **state)
{
    (void)state;
    fx_shutdown();
    return sys_stop_started(&fleet);
}

/* The user's field (connect_url, disconnect_url, state...) from the partner
 * API into out. */
static void user_json(const struct sys_user *u, const char *field, char *out, size_t n)
{
    struct api_resp r = {0};
    assert_int_equal(sys_get_user(&fleet, u, &r), 200);
    const char *v = jstr(&r, field);
    assert_non_null(v);
    snprintf(out, n, "%s", v);
    api_resp_free(&r);
}

/* Polls series at port until it equals want or ms pass; 0 or -1. */
static int wait_gauge(int port, const char *series, double want, int ms)
{
    long long deadline = harness_now_ms() + ms;
    double v;
    do {
        v = harness_metric(port, series);
        if (v == want)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "metric %s is %g, not %g, after %d ms\n", series, v, want, ms);
    return -1;
}

#define SUCCESS "https://partner.test/ok"

/* How the user's browser is driven. */
enum driver {
    CURL_JAR, /* libcurl with a cookie jar: every 302 seen (browser.h) */
    CHROMIUM, /* headless Chromium: redirects, cookies and forms its own */
};

/* Visits url in b and checks it ends at the success URL. */
static void visit_to_success(struct browser *b, const char *url)
{
    struct page p = {0};
    browser_visit(b, url, NULL, &p);
    if (p.status != 302 || strcmp(p.location, SUCCESS) != 0)
        fail_msg("%s: want 302 to the success URL, got %ld to %s", url, p.status, p.location);
    page_free(&p);
}

/* One run of tests/browser/connect.mjs in mode (consent: allowed as email;
 * visit) on link; checks Chromium ended at the success URL. */
static void chromium_to_success(const char *mode, const char *link, const char *email)
{
    static char vars[4][8400];
    snprintf(vars[0], sizeof vars[0], "API_PORT=%d", fleet.api.p.port);
    snprintf(vars[1], sizeof vars[1], "LINK=%s", link);
    snprintf(vars[2], sizeof vars[2], "EMAIL=%s", email);
    snprintf(vars[3], sizeof vars[3], "MODE=%s", mode);
    const char *env[] = {vars[0], vars[1], vars[2], vars[3], NULL};
    char name[32];
    snprintf(name, sizeof name, "chromium-%s", mode);
    char *out = browser_chromium(fleet.redis.dir, name, "connect.mjs", env, 120000);
    char line[8192];
    if (browser_output_line(out, "{\"url\"", line, sizeof line) < 0 ||
        strcmp(line, "{\"url\":\"" SUCCESS "\"}") != 0)
        fail_msg("Chromium (%s) did not end at %s:\n%s", mode, SUCCESS, out);
    free(out);
}

/* Follows the connect link with_back as the user u: consent, callback,
 * the success URL. */
static void connect_as(enum driver d, struct browser *b, const char *with_back,
                       const struct sys_user *u)
{
    if (d == CHROMIUM) {
        chromium_to_success("consent", with_back, u->login);
        return;
    }
    char cb[8192];
    assert_int_equal(
        browser_consent(b, fleet.idp.port, with_back, u->login, "allow", cb, sizeof cb), 0);
    visit_to_success(b, cb);
}

static void chain(enum driver d)
{
    SYS_NEED_DOVECOT(&fleet);
    int w = fleet.watcher[0].p.port;
    struct sys_user u;
    assert_int_equal(sys_create_user(&fleet, SYS_OAUTH2, TAG, &u), 0);
    char link[4096], uid[64];
    user_json(&u, "connect_url", link, sizeof link);
    query_value(link, "user_id", uid, sizeof uid);
    assert_true(uid[0] != '\0');

    /* Connect link -> consent -> callback -> user_connected. */
    struct browser b;
    browser_open(&b, fleet.api.p.port);
    char with_back[8192];
    snprintf(with_back, sizeof with_back, "%s%s", link, BACK);
    connect_as(d, &b, with_back, &u);
    assert_int_equal(sys_wait_hooks(&fleet, "user_connected", TAG, 1, 1, sys_ms(15000)), 1);
    assert_int_equal(sys_wait_user_state(&fleet, &u, "watching", sys_ms(20000)), 0);
    assert_int_equal(wait_gauge(w, WATCHING, 1, sys_ms(5000)), 0);
    assert_int_equal(harness_metric(fleet.api.p.port, REAUTH), 0);
    assert_int_equal(wait_gauge(fleet.api.p.port, CONNECTED, 1, sys_ms(15000)), 0);

    /* Mail -> new_mail. */
    long m1 = sys_deliver(&fleet, &u, 0);
    assert_true(m1 >= 0);
    assert_int_equal(sys_wait_mail(&fleet, m1, sys_ms(15000)), 0);

    /* The access token from the callback expires 5 s after it; two refreshes
     * take the session past that. */
    long long ok0 = fakeoauth_stat(&fleet.idp, "token.refresh_token.ok");
    assert_true(ok0 >= 0);
    assert_int_equal(fakeoauth_wait_stat(&fleet.idp, "token.refresh_token.ok", ok0 + 2,
                                         sys_ms(4 * ACCESS_TTL * 1000)),
                     0);
    long m2 = sys_deliver(&fleet, &u, 0);
    assert_true(m2 >= 0);
    assert_int_equal(sys_wait_mail(&fleet, m2, sys_ms(15000)), 0);
    assert_int_equal(harness_metric(w, "superimap_watcher_logins_total"), 1);
    assert_true(harness_metric(w, "superimap_watcher_oauth2_refreshes_total{provider=\"" SYS_OAUTH2
                                  "\",result=\"ok\"}") >= 2);

    /* The grant revoked at the provider -> reauth_required + its webhook. */
    char refresh[256], body[320], access[256];
    fx_user_opened(&fleet.redis, uid, "secret", refresh, sizeof refresh);
    assert_true(strncmp(refresh, "rt_", 3) == 0);
    fx_user_opened(&fleet.redis, uid, "oauth2_access_token", access, sizeof access);
    assert_true(strncmp(access, "at_", 3) == 0);
    snprintf(body, sizeof body, "token=%s", refresh);
    assert_int_equal(fakeoauth_post(&fleet.idp, "/revoke", "application/x-www-form-urlencoded",
                                    body, NULL, 0, NULL, 0),
                     200);
    assert_int_equal(sys_wait_user_state(&fleet, &u, "reauth_required", sys_ms(20000)), 0);
    assert_int_equal(sys_wait_hooks(&fleet, "user_reauth_required", TAG, 1, 1, sys_ms(15000)), 1);
    /* Counted by the api (users_count.lua every STATES_PERIOD_S); the
     * watcher holds no session of it any more. */
    assert_int_equal(wait_gauge(fleet.api.p.port, REAUTH, 1, sys_ms(15000)), 0);
    assert_int_equal(wait_gauge(w, WATCHING, 0, sys_ms(15000)), 0);

    /* The disconnect link -> user_disconnected. */
    user_json(&u, "disconnect_url", link, sizeof link);
    snprintf(with_back, sizeof with_back, "%s%s", link, BACK);
    if (d == CHROMIUM)
        chromium_to_success("visit", with_back, u.login);
    else
        visit_to_success(&b, with_back);
    assert_int_equal(sys_wait_hooks(&fleet, "user_disconnected", TAG, 1, 1, sys_ms(15000)), 1);
    char st[64];
    user_json(&u, "state", st, sizeof st);
    assert_string_equal(st, "idle");
    assert_int_equal(wait_gauge(fleet.api.p.port, REAUTH, 0, sys_ms(15000)), 0);
    assert_int_equal(wait_gauge(fleet.api.p.port, NOT_CONN, 1, sys_ms(15000)), 0);
    assert_int_equal(harness_metric(fleet.api.p.port, CONNECTED), 0);
    browser_close(&b);
    /* No token in any log line. */
    assert_false(harness_log_contains(&fleet.api.p, refresh));
    assert_false(harness_log_contains(&fleet.api.p, access));
    for (int i = 0; i < fleet.nwatchers; i++) {
        assert_false(harness_log_contains(&fleet.watcher[i].p, refresh));
        assert_false(harness_log_contains(&fleet.watcher[i].p, access));
    }
    for (int i = 0; i < fleet.ndispatchers; i++) {
        assert_false(harness_log_contains(&fleet.dispatcher[i].p, refresh));
        assert_false(harness_log_contains(&fleet.dispatcher[i].p, access));
    }

    struct sys_report r;
    if (sys_report(&fleet, &r) != 0)
        fail_msg("%s", fleet.why);
    assert_int_equal(r.announced, 2);
    assert_int_equal(r.duplicates, 0);
    assert_int_equal(r.unknown, 0);
    assert_int_equal(sys_count_hooks(&fleet, "user_connected", TAG, 1), 1);
    assert_int_equal(sys_count_hooks(&fleet, "user_reauth_required", TAG, 1), 1);
}

static void test_chain_with_a_cookie_jar(void **state)
{
    (void)state;
    chain(CURL_JAR);
}

static void test_chain_in_headless_chromium(void **state)
{
    (void)state;
    chain(CHROMIUM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_with_a_cookie_jar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_in_headless_chromium, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
