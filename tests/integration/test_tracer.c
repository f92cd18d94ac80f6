/*
 * Tracer mail end to end against a real MTA: a fleet (system.h: Redis,
 * Dovecot, api, watcher, dispatcher, receiver) whose Dovecot also takes LMTP
 * and SASL from a private Postfix (postfix.h: submission with AUTH through
 * Dovecot, delivery over LMTP). The provider's SMTP server is that Postfix
 * (set through the admin API), the user is made a tracer user through the
 * partner API, and the dispatcher sends a tracer every second:
 *
 * - a PLAIN user's tracer is submitted (AUTH PLAIN), delivered, detected by
 *   the watcher with its latency, shown detected by GET /admin/api/tracers,
 *   counted in the metrics, and never announced as a webhook; it stays in
 *   the mailbox (tracer_delete is off by default);
 * - a provider with tracer_delete has its tracers deleted once detected
 *   (UID STORE \Deleted, UID EXPUNGE: Dovecot has UIDPLUS), and nothing
 *   else: another message the user marked \Deleted stays;
 * - an OAuth2 user's (connected at the test provider; Dovecot's oauth2
 *   passdb checks its access token there) is submitted with XOAUTH2 through
 *   Postfix's SASL (Dovecot's auth), delivered into the mailbox its IMAP
 *   login watches, detected with its latency and never announced;
 * - an unreachable SMTP server (a closed port) and a refused login (a wrong
 *   password) are classified, counted once per round, never retried;
 * - a tracer delivered where its user's watcher cannot see it (another
 *   mailbox) is reported missing after the deadline;
 * - then every tracer series the alert rules and the Grafana dashboard name
 *   is exported, and promtool has nothing to say about the nodes' metrics.
 *
 * Needs root and Debian's postfix and dovecot-lmtpd (make deps); without
 * them the suite fails, saying what to install.
 *
 * SPDX-License-Identifier: MIT
 */
#include <unistd.h>

#include "tests/integration/postfix.h"
#include "tests/integration/prom_fixture.h"
#include "tests/integration/system.h"

#define TRACER_ENV \
    "SUPERIMAP_TRACER_INTERVAL_SEC=1", "SUPERIMAP_TRACER_DEADLINE_SEC=4", "SUPERIMAP_LOG_LEVEL=info"

static struct sys fleet;
static struct postfix pf;
static struct sys_user user;

static int setup(void **state)
{
    (void)state;
    char why[200];
    if (geteuid() == 0 && !postfix_available(why, sizeof why)) {
        fprintf(stderr, "test_tracer needs a real MTA: %s\n", why);
        return -1;
    }
    static const char *const api_env[] = {TRACER_ENV, NULL};
    static const char *const dispatcher_env[] = {TRACER_ENV, "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                                                 "SUPERIMAP_TRACER_ALLOW_PRIVATE=1", NULL};
    const struct sys_opts o = {
        .mta = 1, .oauth2 = 1, .api_env = api_env, .dispatcher_env = dispatcher_env};
    if (sys_start_dovecot(&fleet, &o) < 0)
        return -1;
    if (fleet.skipped)
        return 0;
    return postfix_start(&pf, &fleet.dv);
}

static int teardown(void **state)
{
    (void)state;
    postfix_stop(&pf);
    return sys_stop_started(&fleet);
}

/* PATCHes provider code's SMTP server (port <= 0: Postfix's). */
static void smtp_server_of(const char *code, int port)
{
    struct api_resp r = {0};
    char path[160], body[160];
    snprintf(path, sizeof path, "/admin/api/providers/%s", code);
    snprintf(body, sizeof body,
             "{\"smtp_host\":\"127.0.0.1\",\"smtp_port\":%d,\"smtp_tls\":\"none\"}",
             port > 0 ? port : pf.port);
    assert_int_equal(sys_admin(&fleet, &r, "PATCH", path, body), 200);
    api_resp_free(&r);
}

/* smtp_server_of() for SYS_DOVECOT. */
static void smtp_server(int port)
{
    smtp_server_of(SYS_DOVECOT, port);
}

/* PATCHes a user through the partner API. */
static void patch_user_of(const struct sys_user *u, const char *json)
{
    struct api_resp r = {0};
    char path[160];
    snprintf(path, sizeof path, "/api/v1/connections/%s/users/%s", u->code, u->tag);
    assert_int_equal(sys_api(&fleet, &r, "PATCH", path, json), 200);
    api_resp_free(&r);
}

/* PATCHes the tracer user. */
static void patch_user(const char *json)
{
    patch_user_of(&user, json);
}

static double dispatcher_metric(const char *series)
{
    double v = harness_metric(fleet.dispatcher[0].p.port, series);
    return v < 0 ? 0 : v;
}

/* Polls until the dispatcher's series reaches want; its value. */
static double wait_dispatcher_metric(const char *series, double want, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    double v = dispatcher_metric(series);
    while (v < want && harness_now_ms() < deadline) {
        harness_poll_pause();
        v = dispatcher_metric(series);
    }
    return v;
}

/* Polls GET /admin/api/tracers until a tracer of provider code has status;
 * its latency_ms into *latency (-1 when null). 0, or -1 at the deadline. */
static int wait_tracer_of(const char *code, const char *status, long long *latency, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    struct api_resp r = {0};
    int found = -1;
    for (;;) {
        if (sys_admin(&fleet, &r, "GET", "/admin/api/tracers?limit=50", NULL) == 200) {
            openapi_check(&r, "GET", "/admin/api/tracers");
            yajl_val provs = json_get(r.json, "providers");
            for (size_t i = 0; YAJL_IS_ARRAY(provs) && i < provs->u.array.len; i++) {
                yajl_val p = provs->u.array.values[i];
                if (strcmp(json_get_str(p, "code"), code) != 0)
                    continue;
                yajl_val ts = json_get(p, "tracers");
                for (size_t j = 0; found < 0 && j < ts->u.array.len; j++) {
                    yajl_val t = ts->u.array.values[j];
                    if (strcmp(json_get_str(t, "status"), status) != 0)
                        continue;
                    int64_t v = -1;
                    if (latency != NULL)
                        *latency = json_get_int(t, "latency_ms", &v) == 0 ? v : -1;
                    found = 0;
                }
            }
        }
        if (found == 0 || harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    api_resp_free(&r);
    return found;
}

/* wait_tracer_of() for SYS_DOVECOT. */
static int wait_tracer(const char *status, long long *latency, int ms)
{
    return wait_tracer_of(SYS_DOVECOT, status, latency, ms);
}

/* A tracer of provider code was counted sent by the dispatcher, its SMTP
 * time observed there and its latency by the watcher. */
static void assert_tracer_counted(const char *code)
{
    char series[160];
    snprintf(series, sizeof series, "superimap_tracer_sent_total{provider=\"%s\",result=\"sent\"}",
             code);
    assert_true(dispatcher_metric(series) >= 1);
    snprintf(series, sizeof series,
             "superimap_tracer_latency_seconds_count{provider=\"%s\",stage=\"submitted\"}", code);
    assert_true(dispatcher_metric(series) >= 1);
    snprintf(series, sizeof series,
             "superimap_tracer_latency_seconds_count{provider=\"%s\",stage=\"detected\"}", code);
    assert_true(harness_metric(fleet.watcher[0].p.port, series) >= 1);
}

/* How many messages in login's INBOX have a TRACER subject; -1 when doveadm
 * fails. */
static int tracers_in_mailbox(const char *login, char *out, size_t outlen)
{
    if (dovecot_fetch(&fleet.dv, login, "flags hdr", out, outlen) < 0)
        return -1;
    int n = 0;
    for (const char *p = strstr(out, "Subject: TRACER: "); p != NULL;
         p = strstr(p + 1, "Subject: TRACER: "))
        n++;
    return n;
}

static void test_a_plain_users_tracer_is_detected_with_its_latency_and_not_announced(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    assert_int_equal(sys_add_user(&fleet, "tracer-user", &user), 0);
    assert_int_equal(sys_wait_user_state(&fleet, &user, "watching", sys_ms(20000)), 0);
    smtp_server(0);
    char json[160];
    snprintf(json, sizeof json, "{\"email\":\"%s@example.com\",\"enable_tracer\":true}",
             user.login);
    patch_user(json);

    long long latency = -1;
    if (wait_tracer("detected", &latency, 20000) < 0)
        sys_dump_logs(&fleet, 30);
    assert_int_equal(wait_tracer("detected", &latency, 0), 0);
    assert_true(latency >= 0 && latency < sys_ms(20000));
    fprintf(stderr, "tracer latency (send -> detected, PLAIN, Postfix -> Dovecot): %lld ms\n",
            latency);
    assert_tracer_counted(SYS_DOVECOT);
    assert_true(postfix_log_count(&pf, "sasl_method=PLAIN") >= 1);
    char out[8192];
    assert_int_equal(dovecot_fetch(&fleet.dv, user.login, "hdr", out, sizeof out), 0);
    assert_non_null(strstr(out, "X-Superimap-Tracer: "));
    assert_non_null(strstr(out, "Subject: TRACER: ")); /* tracer_delete is off */
    /* A second later: still no webhook for any tracer. */
    sys_wait_hooks(&fleet, "new_mail", user.tag, 0, 1, sys_ms(1000));
    assert_int_equal(sys_count_hooks(&fleet, "new_mail", user.tag, 0), 0);
}

#define OAUTH2_BACK \
    "&success=https%3A%2F%2Fpartner.test%2Fok&failure=https%3A%2F%2Fpartner.test%2Fko"

static void test_an_oauth2_users_tracer_is_sent_with_xoauth2_and_detected(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    struct sys_user u;
    assert_int_equal(sys_create_user(&fleet, SYS_OAUTH2, "tracer-oauth2", &u), 0);
    struct api_resp r = {0};
    assert_int_equal(sys_get_user(&fleet, &u, &r), 200);
    char link[4096];
    assert_non_null(jstr(&r, "connect_url"));
    snprintf(link, sizeof link, "%s%s", jstr(&r, "connect_url"), OAUTH2_BACK);
    api_resp_free(&r);
    /* Consent at the test provider as the user's Dovecot login. */
    struct browser b;
    browser_open(&b, fleet.api.p.port);
    char cb[8192];
    assert_int_equal(browser_consent(&b, fleet.idp.port, link, u.login, "allow", cb, sizeof cb), 0);
    struct page p = {0};
    browser_visit(&b, cb, NULL, &p);
    assert_int_equal(p.status, 302);
    page_free(&p);
    browser_close(&b);
    assert_int_equal(sys_wait_user_state(&fleet, &u, "watching", sys_ms(20000)), 0);

    smtp_server_of(SYS_OAUTH2, 0);
    char json[160];
    snprintf(json, sizeof json, "{\"email\":\"%s\",\"enable_tracer\":true}", u.login);
    patch_user_of(&u, json);
    long long latency = -1;
    if (wait_tracer_of(SYS_OAUTH2, "detected", &latency, 20000) < 0)
        sys_dump_logs(&fleet, 30);
    assert_int_equal(wait_tracer_of(SYS_OAUTH2, "detected", &latency, 0), 0);
    assert_true(latency >= 0 && latency < sys_ms(20000));
    fprintf(stderr, "tracer latency (send -> detected, OAuth2, Postfix -> Dovecot): %lld ms\n",
            latency);
    assert_true(postfix_log_count(&pf, "sasl_method=XOAUTH2") >= 1);
    assert_tracer_counted(SYS_OAUTH2);
    char out[8192];
    assert_int_equal(dovecot_fetch(&fleet.dv, u.login, "hdr", out, sizeof out), 0);
    assert_non_null(strstr(out, "Subject: TRACER: "));
    sys_wait_hooks(&fleet, "new_mail", u.tag, 0, 1, sys_ms(1000));
    assert_int_equal(sys_count_hooks(&fleet, "new_mail", u.tag, 0), 0);

    /* No more tracers for it: the tests below count SYS_DOVECOT's. */
    assert_int_equal(
        sys_admin(&fleet, &r, "PATCH", "/admin/api/providers/" SYS_OAUTH2, "{\"smtp_host\":\"\"}"),
        200);
    api_resp_free(&r);
}

#define DEL_PROVIDER "DOVECOT-DEL"

static void test_tracer_delete_removes_the_tracers_and_nothing_else(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    struct api_resp r = {0};
    assert_int_equal(sys_admin(&fleet, &r, "GET", "/admin/api/providers/" SYS_DOVECOT, NULL), 200);
    assert_true(YAJL_IS_FALSE(json_get(r.json, "tracer_delete")));
    api_resp_free(&r);

    /* Like SYS_DOVECOT, deleting tracers: set before a session loads it. */
    assert_int_equal(sys_add_connection(&fleet, DEL_PROVIDER, 0), 0);
    const char *path = "/admin/api/providers/" DEL_PROVIDER;
    assert_int_equal(sys_admin(&fleet, &r, "PATCH", path, "{\"tracer_delete\":\"maybe\"}"), 400);
    api_resp_free(&r);
    char body[200];
    snprintf(body, sizeof body,
             "{\"smtp_host\":\"127.0.0.1\",\"smtp_port\":%d,\"smtp_tls\":\"none\","
             "\"tracer_delete\":true}",
             pf.port);
    assert_int_equal(sys_admin(&fleet, &r, "PATCH", path, body), 200);
    openapi_check(&r, "PATCH", "/admin/api/providers/{code}");
    assert_true(YAJL_IS_TRUE(json_get(r.json, "tracer_delete")));
    api_resp_free(&r);
    struct sys_user u;
    assert_int_equal(sys_add_user_on(&fleet, DEL_PROVIDER, "tracer-delete", &u), 0);
    assert_int_equal(sys_wait_user_state(&fleet, &u, "watching", sys_ms(20000)), 0);

    /* Other mail, which the user's client then marks \Deleted: a plain
     * EXPUNGE would remove it too. */
    assert_true(sys_deliver(&fleet, &u, 100) >= 0);
    assert_int_equal(sys_wait_hooks(&fleet, "new_mail", u.tag, 1, 1, sys_ms(20000)), 1);
    assert_int_equal(dovecot_flag_all(&fleet.dv, u.login, "\\Deleted"), 0);

    char json[160];
    snprintf(json, sizeof json, "{\"email\":\"%s@example.com\",\"enable_tracer\":true}", u.login);
    patch_user_of(&u, json);
    if (wait_tracer_of(DEL_PROVIDER, "detected", NULL, 20000) < 0)
        sys_dump_logs(&fleet, 30);
    assert_int_equal(wait_tracer_of(DEL_PROVIDER, "detected", NULL, 0), 0);

    /* No more tracers sent: every one on its way is detected and deleted. */
    assert_int_equal(sys_admin(&fleet, &r, "PATCH", path, "{\"smtp_host\":\"\"}"), 200);
    api_resp_free(&r);
    static char out[1 << 16];
    long long deadline = harness_now_ms() + sys_ms(20000);
    int left = tracers_in_mailbox(u.login, out, sizeof out);
    while (left != 0 && harness_now_ms() < deadline) {
        harness_poll_pause();
        left = tracers_in_mailbox(u.login, out, sizeof out);
    }
    if (left != 0)
        sys_dump_logs(&fleet, 30);
    assert_int_equal(left, 0);
    const char *other = strstr(out, "Subject: System test ");
    assert_non_null(other);
    assert_non_null(strstr(out, "\\Deleted"));
    assert_true(strstr(out, "\\Deleted") < other);
    assert_null(strstr(other + 1, "Subject: "));
    /* The tracers were never announced: the one webhook is the other mail's. */
    assert_int_equal(sys_wait_hooks(&fleet, "new_mail", u.tag, 0, 2, sys_ms(1000)), 1);
}

static void test_smtp_failures_are_classified_and_never_retried_in_a_loop(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    char series[128];
    /* Nothing listens there: refused at connect. */
    smtp_server(harness_free_port());
    snprintf(series, sizeof series,
             "superimap_tracer_sent_total{provider=\"%s\",result=\"connect\"}", SYS_DOVECOT);
    assert_true(wait_dispatcher_metric(series, 1, 10000) >= 1);
    double before = dispatcher_metric(series);
    long long t0 = harness_now_ms();
    wait_dispatcher_metric(series, before + 100, 3000); /* 3 s of rounds of 1 s */
    double rounds = (double)(harness_now_ms() - t0) / 1000.0 + 1;
    assert_true(dispatcher_metric(series) - before <= rounds);

    /* Postfix again, with a password Dovecot refuses. */
    smtp_server(0);
    patch_user("{\"login_password\":\"not-the-password\"}");
    snprintf(series, sizeof series, "superimap_tracer_sent_total{provider=\"%s\",result=\"auth\"}",
             SYS_DOVECOT);
    assert_true(wait_dispatcher_metric(series, 1, 10000) >= 1);
    assert_int_equal(wait_tracer("failed", NULL, 5000), 0);
}

static void test_a_tracer_that_never_arrives_is_reported_missing(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    /* Submitted as the user, delivered to a mailbox nobody watches. */
    char json[160];
    snprintf(json, sizeof json, "{\"login_password\":\"pass%s\",\"email\":\"user16@example.com\"}",
             user.login + 4);
    patch_user(json);
    char series[128];
    snprintf(series, sizeof series, "superimap_tracer_missing_total{provider=\"%s\"}", SYS_DOVECOT);
    if (wait_dispatcher_metric(series, 1, 15000) < 1)
        sys_dump_logs(&fleet, 30);
    assert_true(dispatcher_metric(series) >= 1);
    assert_int_equal(wait_tracer("missing", NULL, 5000), 0);
}

/* After the tests above, every tracer series exists: promtool has nothing
 * to say about the watcher's and the dispatcher's /metrics, and every
 * superimap_tracer_* metric the alert rules and the Grafana dashboard name
 * is one of theirs (test_monitoring checks the other metrics). */
static void test_tracer_series_fit_the_alerts_and_the_dashboard(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    char promtool[512];
    assert_int_equal(prom_tool(promtool, sizeof promtool), 0);
    static struct prom_names names;
    names.text[0] = '\0';
    prom_check_node(promtool, fleet.redis.dir, &fleet.watcher[0], &names);
    prom_check_node(promtool, fleet.redis.dir, &fleet.dispatcher[0], &names);
    assert_int_equal(
        prom_check_names("docker/prometheus/alerts.yml", &names, "superimap_tracer_", NULL), 2);
    assert_true(
        prom_check_names("docker/grafana/superimap.json", &names, "superimap_tracer_", NULL) >= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_plain_users_tracer_is_detected_with_its_latency_and_not_announced),
        cmocka_unit_test(test_an_oauth2_users_tracer_is_sent_with_xoauth2_and_detected),
        cmocka_unit_test(test_tracer_delete_removes_the_tracers_and_nothing_else),
        cmocka_unit_test(test_smtp_failures_are_classified_and_never_retried_in_a_loop),
        cmocka_unit_test(test_a_tracer_that_never_arrives_is_reported_missing),
        cmocka_unit_test(test_tracer_series_fit_the_alerts_and_the_dashboard),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
