/*
 * The Prometheus fit (docker/prometheus/, docker/grafana/) against a live
 * fleet: an api, a watcher and a dispatcher on fake-imapd with mail flowing
 * to a webhook receiver. Checks, with promtool from Debian's prometheus
 * package (scripts/promtool.sh puts it in build/tools; SUPERIMAP_PROMTOOL
 * names another):
 *   - `promtool check metrics` finds nothing to say about the /metrics of
 *     each node, read while mail flows;
 *   - `promtool check config` accepts prometheus.yml, `promtool check rules`
 *     alerts.yml, and `promtool test rules alerts_test.yml` passes (each alert
 *     fires on a synthetic failing series and stays quiet on a healthy one);
 *   - every superimap_* metric named in alerts.yml and in the Grafana
 *     dashboard exists in some node's /metrics (a histogram's _bucket, _sum
 *     and _count count as its name), so a renamed metric cannot leave an
 *     alert silently empty (the tracer series, which exist once tracers
 *     flow, are checked by test_tracer). Series labelled by provider appear once a
 *     provider has them: an OAuth2 user whose token endpoint does not answer
 *     gives the watcher its refresh series.
 * And the stages of a mail: the watcher's EXISTS-to-recorded histogram, the
 * dispatcher's creation-to-claim and creation-to-2xx ones count every mail
 * (a mail's whole time is at least its queue time), and each mail's event id
 * is in the watcher's log line that recorded it, in the dispatcher's that
 * delivered it and in the partner's delivery log.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/prom_fixture.h"

#define USERS 3
#define MAILS 12

static struct sys fleet;
static char promtool[512];

static int setup(void **state)
{
    (void)state;
    if (prom_tool(promtool, sizeof promtool) < 0)
        return -1;
    /* Debug lines: each mail's event id in the watcher's and the
     * dispatcher's logs. */
    static const char *const watcher_env[] = {"SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1",
                                              "SUPERIMAP_LOG_LEVEL=debug", NULL};
    static const char *const dispatcher_env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                                                 "SUPERIMAP_LOG_LEVEL=debug", NULL};
    static const char *const api_env[] = {"SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1", NULL};
    const struct sys_opts o = {.dovecot_users = -1,
                               .fake_imapd = 1,
                               .api_env = api_env,
                               .watcher_env = watcher_env,
                               .dispatcher_env = dispatcher_env};
    return sys_start(&fleet, &o);
}

static int teardown(void **state)
{
    (void)state;
    return sys_stop(&fleet);
}

/* An OAuth2 provider on fake-imapd whose token endpoint refuses connections,
 * and a user of it: the watcher tries to refresh its token (and fails). */
static void add_oauth2_user_without_token_endpoint(void)
{
    char body[1024];
    struct api_resp r = {0};
    snprintf(body, sizeof body,
             "{\"code\":\"MONOAUTH\",\"imap_host\":\"127.0.0.1\",\"imap_port\":%d,"
             "\"tls\":\"none\",\"auth\":\"oauth2\","
             "\"oauth2_authorize_url\":\"https://idp.example/authorize\","
             "\"oauth2_token_url\":\"http://127.0.0.1:1/token\",\"oauth2_scope\":\"email\"}",
             fakeimap_port(&fleet.fake, 0, 0, NULL));
    assert_int_equal(sys_admin(&fleet, &r, "POST", "/admin/api/providers", body), 201);
    api_resp_free(&r);
    assert_int_equal(sys_api(&fleet, &r, "POST", "/api/v2/connections",
                             "{\"imap_provider_code\":\"MONOAUTH\","
                             "\"oauth2_client_id\":\"mon\",\"oauth2_client_secret\":\"mon\"}"),
                     201);
    api_resp_free(&r);
    assert_int_equal(sys_api(&fleet, &r, "POST", "/api/v2/connections/MONOAUTH/users",
                             "{\"tag\":\"mon-oauth\",\"email\":\"user9@example.com\","
                             "\"oauth2_refresh_token\":\"refresh-9\"}"),
                     201);
    api_resp_free(&r);
}

/* Polls a node's /metrics until it has a series of name. 0 or -1. */
static int wait_series(const struct sys_node *n, const char *name, int ms)
{
    static char body[1 << 20];
    char needle[160];
    snprintf(needle, sizeof needle, "\n%s{", name);
    long long deadline = harness_now_ms() + ms;
    do {
        if (harness_http_get(n->p.port, "/metrics", body, sizeof body) == 200 &&
            strstr(body, needle) != NULL)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    return -1;
}

static void test_metrics_rules_and_dashboard_fit_prometheus(void **state)
{
    (void)state;
    add_oauth2_user_without_token_endpoint();
    assert_int_equal(
        wait_series(&fleet.watcher[0], "superimap_watcher_oauth2_refreshes_total", sys_ms(20000)),
        0);
    struct sys_user u[USERS];
    assert_int_equal(sys_add_users(&fleet, SYS_FAKE, "mon", USERS, u), 0);
    for (int i = 0; i < MAILS; i++)
        assert_true(sys_deliver(&fleet, &u[i % USERS], 200) >= 0);
    assert_int_equal(sys_wait_announced(&fleet, MAILS, sys_ms(30000)), MAILS);

    /* Each node's metrics, as they are with mail flowing. */
    static struct prom_names names;
    names.text[0] = '\0';
    const struct sys_node *nodes[3] = {&fleet.api, &fleet.watcher[0], &fleet.dispatcher[0]};
    for (int i = 0; i < 3; i++)
        prom_check_node(promtool, fleet.redis.dir, nodes[i], &names);

    char dir[400], cmd[1200], out[8192];
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    snprintf(dir, sizeof dir, "%s/docker/prometheus", src ? src : ".");
    const char *checks[] = {"check config prometheus.yml", "check rules alerts.yml",
                            "test rules alerts_test.yml"};
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", dir, promtool, checks[i]);
        int rc = harness_sh(cmd, out, sizeof out);
        if (rc != 0)
            fprintf(stderr, "promtool %s (exit %d):\n%s\n", checks[i], rc, out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "SUCCESS"));
    }

    /* Tracer series exist once tracers flow: test_tracer checks those. */
    assert_true(prom_check_names("docker/prometheus/alerts.yml", &names, "superimap_",
                                 "superimap_tracer_") >= 6);
    assert_true(prom_check_names("docker/grafana/superimap.json", &names, "superimap_",
                                 "superimap_tracer_") >= 15);
}

/* One series' value from a node's /metrics; -1 when absent. */
static double series(const struct sys_node *n, const char *name)
{
    return harness_metric(n->p.port, name);
}

static void test_stages_of_a_mail_are_measured_and_its_id_is_logged(void **state)
{
    (void)state;
    struct sys_user u;
    assert_int_equal(sys_add_user_on(&fleet, SYS_FAKE, "stages", &u), 0);
    size_t before = fleet.nmails;
    for (int i = 0; i < 3; i++)
        assert_true(sys_deliver(&fleet, &u, 100) >= 0);
    assert_int_equal(sys_wait_announced(&fleet, before + 3, sys_ms(30000)), before + 3);

    const struct sys_node *w = &fleet.watcher[0], *d = &fleet.dispatcher[0];
    double seen = series(w, "superimap_watcher_new_mail_seconds_count");
    double queued = series(d, "superimap_webhook_queue_seconds_count");
    double done = series(d, "superimap_webhook_delivered_seconds_count");
    assert_true(seen >= (double)fleet.nmails);
    assert_true(queued >= (double)fleet.nmails);
    assert_true(done >= (double)fleet.nmails);
    assert_true(series(d, "superimap_webhook_delivered_seconds_sum") >=
                series(d, "superimap_webhook_queue_seconds_sum"));

    for (size_t i = before; i < fleet.nmails; i++) {
        const char *id = fleet.mails[i].id;
        char needle[200];
        snprintf(needle, sizeof needle, "id=%s", id);
        assert_true(harness_log_contains(&w->p, needle));
        assert_true(harness_log_contains(&d->p, needle));
        char path[240];
        snprintf(path, sizeof path, "/api/v2/events/%s", id);
        struct api_resp r = {0};
        assert_int_equal(sys_api(&fleet, &r, "GET", path, NULL), 200);
        assert_non_null(r.body);
        assert_non_null(strstr(r.body, id));
        api_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_rules_and_dashboard_fit_prometheus),
        cmocka_unit_test(test_stages_of_a_mail_are_measured_and_its_id_is_logged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
