/*
 * A provider's max_connections against superimap-fake-imapd: with a cap of
 * 3 and 10 users of that provider, the server never sees more than 3
 * connections at once; 3 users are watched and the other 7 wait in the
 * provider's FIFO (cmd/watcher/provider.h), shown as
 * "waiting_provider_limit" and counted by the gauge
 * superimap_watcher_users_provider_limited{provider="cap"}, with one log
 * line for the provider. When a connection ends, the longest-waiting user
 * takes its slot (and its state moves on to watching) and the one that lost
 * it queues at the back, so kicking one watched user at a time brings a
 * user never watched before each time, until all 10 have been. Once the
 * waiting users are archived, none waits: the gauge is 0 and the provider
 * logs that it has room again.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_api_client.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID        "9"
#define NUSERS     10
#define CAP        3
#define UID_PREFIX "00000000000000000000c"

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc watcher, api;
static int watcher_up, api_up;

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=20", NULL};
    return fx_suite_start(&redis, &srv, 0, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    return fx_suite_stop(&redis, &srv);
}

static int setup(void **state)
{
    (void)state;
    return fx_suite_reset(&redis, &srv);
}

static int teardown(void **state)
{
    (void)state;
    if (watcher_up)
        harness_proc_stop(&watcher);
    if (api_up)
        harness_proc_stop(&api);
    watcher_up = api_up = 0;
    return 0;
}

static void uid_of(int i, char *out, size_t outlen)
{
    snprintf(out, outlen, UID_PREFIX "%03d", i + 1);
}

/* Which users hold a fake-imapd session now (in[i] = 1); returns how many. */
static int sessions_now(int in[NUSERS])
{
    int n = 0;
    for (int i = 0; i < NUSERS; i++) {
        char login[16];
        int cur = -1, max = 0;
        snprintf(login, sizeof login, "user%d", i + 1);
        assert_int_equal(fakeimap_sessions(&srv, login, &cur, &max), 0);
        in[i] = cur > 0;
        n += in[i];
    }
    return n;
}

#define LIMITED_GAUGE "superimap_watcher_users_provider_limited{provider=\"cap\"}"

/* Users whose state is "watching" now (in[i] = 1); returns how many, and the
 * count of "waiting_provider_limit" ones in *waiting. */
static int watching_now(int in[NUSERS], int *waiting)
{
    int n = 0;
    *waiting = 0;
    for (int i = 0; i < NUSERS; i++) {
        char uid[48], st[64];
        uid_of(i, uid, sizeof uid);
        fx_user_field(&redis, uid, "state", st, sizeof st);
        in[i] = strcmp(st, "watching") == 0;
        n += in[i];
        *waiting += strcmp(st, "waiting_provider_limit") == 0;
    }
    return n;
}

/* Polls until CAP users are watching and the others show
 * waiting_provider_limit. 0 or -1. */
static int wait_others_waiting(int ms)
{
    long long deadline = harness_now_ms() + ms;
    int in[NUSERS], waiting = 0, n = 0;
    do {
        n = watching_now(in, &waiting);
        if (n == CAP && waiting == NUSERS - CAP)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "%d watching, %d waiting_provider_limit after %d ms\n", n, waiting, ms);
    return -1;
}

/* Polls until exactly CAP users are watching, each with one fake-imapd
 * session, none of them user skip (-1: any); fills in[]. 0 or -1. */
static int wait_cap_watching(int in[NUSERS], int skip, int ms)
{
    long long deadline = harness_now_ms() + ms;
    do {
        int con[NUSERS], connecting;
        int n = watching_now(in, &connecting);
        if (n == CAP && sessions_now(con) == CAP && (skip < 0 || !in[skip])) {
            int same = 1;
            for (int i = 0; i < NUSERS; i++)
                same = same && con[i] == in[i];
            if (same)
                return 0;
        }
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    return -1;
}

static void test_max_connections_caps_sessions_and_queues_users_fifo(void **state)
{
    (void)state;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, "cap", host, port, "none"), 0);
    char out[64];
    assert_int_equal(
        harness_redis_get(&redis, out, sizeof out, "HSET si:provider:cap max_connections %d", CAP),
        0);
    assert_int_equal(fx_numbered_users(&redis, UID_PREFIX, NUSERS, PID, "cap"), 0);
    const char *env[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=50", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=200",
                         NULL};
    assert_int_equal(harness_node_start(&watcher, &redis, "superimap-watcher", "w1", env), 0);
    watcher_up = 1;

    int in[NUSERS];
    assert_int_equal(wait_cap_watching(in, -1, 10000), 0);
    /* The others wait, visibly waiting for the provider's limit, counted,
     * and no fourth connection opens. */
    assert_int_equal(wait_others_waiting(5000), 0);
    assert_int_equal(fx_wait_metric(watcher.port, LIMITED_GAUGE, NUSERS - CAP, 5000), 0);
    int waiting = 0;
    long long deadline = harness_now_ms() + 1000;
    while (harness_now_ms() < deadline) {
        int now[NUSERS];
        assert_int_equal(watching_now(now, &waiting), CAP);
        assert_int_equal(waiting, NUSERS - CAP);
        assert_true(harness_metric(watcher.port, LIMITED_GAUGE) == NUSERS - CAP);
        harness_poll_pause();
    }
    assert_int_equal(harness_log_count(&watcher, "provider at its connection limit"), 1);
    assert_int_equal(harness_log_count(&watcher, "provider has room again"), 0);
    assert_int_equal(fakeimap_stat(&srv, "max_sessions"), CAP);
    assert_int_equal(fakeimap_stat(&srv, "logins"), CAP);

    /* A freed slot goes to the longest-waiting user; the kicked one queues
     * behind the others. Each kick brings a user never watched before. */
    int ever[NUSERS];
    memcpy(ever, in, sizeof ever);
    for (int round = 0; round < NUSERS - CAP; round++) {
        int victim = -1;
        for (int i = 0; i < NUSERS && victim < 0; i++)
            if (in[i])
                victim = i;
        assert_true(victim >= 0);
        char login[16];
        snprintf(login, sizeof login, "user%d", victim + 1);
        assert_int_equal(fakeimap_kick(&srv, login), 1);
        if (wait_cap_watching(in, victim, 5000) < 0)
            fail_msg("round %d: no new user took user%d's slot", round, victim + 1);
        int fresh = 0;
        for (int i = 0; i < NUSERS; i++)
            if (in[i] && !ever[i]) {
                fresh++;
                ever[i] = 1;
            }
        if (fresh != 1)
            fail_msg("round %d: %d never-watched users took one slot", round, fresh);
    }
    for (int i = 0; i < NUSERS; i++)
        assert_true(ever[i]);
    assert_true(fakeimap_stat(&srv, "max_sessions") <= CAP);
    assert_int_equal(fakeimap_stat(&srv, "max_sessions_per_user"), 1);
    /* The users kicked last wait again; the provider stayed limited all along. */
    assert_int_equal(wait_others_waiting(5000), 0);
    assert_true(harness_metric(watcher.port, LIMITED_GAUGE) == NUSERS - CAP);
    assert_int_equal(harness_log_count(&watcher, "provider has room again"), 0);

    /* No user waits any more: the gauge drops to 0, one line says so. */
    for (int i = 0; i < NUSERS; i++)
        if (!in[i]) {
            char uid[48];
            uid_of(i, uid, sizeof uid);
            assert_int_equal(fx_archive(&redis, uid), 0);
        }
    assert_int_equal(harness_wait_log(&watcher, "provider has room again", 5000), 0);
    assert_true(harness_metric(watcher.port, LIMITED_GAUGE) == 0);
    assert_int_equal(harness_log_count(&watcher, "provider has room again"), 1);
    assert_int_equal(harness_log_count(&watcher, "provider at its connection limit"), 1);
}

/* The state of the user tagged tag, as the partner API shows it (checked
 * against web/openapi.json), into st. */
static void api_state(const char *key, const char *tag, char *st, size_t stlen)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v2/connections/CAPAPI/users/%s", tag);
    struct api_resp r = {0};
    char hdr[160];
    snprintf(hdr, sizeof hdr, "x-api-key: %s", key);
    const char *hs[] = {hdr, NULL};
    api_call(&r, api.port, "GET", path, NULL, NULL, 0, hs);
    EXPECT(&r, 200, "GET", "/api/v2/connections/{code}/users/{tag}");
    snprintf(st, stlen, "%s", jstr(&r, "state") ? jstr(&r, "state") : "");
    api_resp_free(&r);
}

/* Users made through the api, one connection allowed: the partner API shows
 * the second user as waiting_provider_limit, then watching once the first
 * is archived and its connection ends. */
static void test_the_api_shows_users_waiting_for_the_provider_limit(void **state)
{
    (void)state;
    start_api(&api, &redis, "a1", NULL);
    api_up = 1;
    make_provider(api.port, "CAPAPI", "plain");
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    char out[64];
    assert_int_equal(harness_redis_get(&redis, out, sizeof out,
                                       "HSET si:provider:CAPAPI imap_host %s imap_port %d "
                                       "max_connections 1",
                                       host, port),
                     0);
    char *key = make_partner(api.port, "cap", NULL);
    make_connection(api.port, key, "CAPAPI");
    for (int i = 1; i <= 2; i++) {
        char form[160];
        snprintf(form, sizeof form,
                 "tag=t%d&email=user%d%%40localhost&login_username=user%d&login_password=pass%d", i,
                 i, i, i);
        struct api_resp r = {0};
        api_form(&r, api.port, "POST", "/api/v2/connections/CAPAPI/users", key, form);
        EXPECT(&r, 201, "POST", "/api/v2/connections/{code}/users");
        api_resp_free(&r);
    }
    const char *env[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=50", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=200",
                         NULL};
    assert_int_equal(harness_node_start(&watcher, &redis, "superimap-watcher", "w1", env), 0);
    watcher_up = 1;

    char st1[64] = "", st2[64] = "";
    long long deadline = harness_now_ms() + 10000;
    int first = 0;
    while (harness_now_ms() < deadline && first == 0) {
        api_state(key, "t1", st1, sizeof st1);
        api_state(key, "t2", st2, sizeof st2);
        if (strcmp(st1, "watching") == 0 && strcmp(st2, "waiting_provider_limit") == 0)
            first = 1;
        else if (strcmp(st2, "watching") == 0 && strcmp(st1, "waiting_provider_limit") == 0)
            first = 2;
        else
            harness_poll_pause();
    }
    if (first == 0)
        fail_msg("states t1=%s t2=%s, not one watching and one waiting_provider_limit", st1, st2);

    /* The watched user leaves: the waiting one takes the connection. */
    struct api_resp r = {0};
    char hdr[160], path[128];
    snprintf(hdr, sizeof hdr, "x-api-key: %s", key);
    snprintf(path, sizeof path, "/api/v2/connections/CAPAPI/users/t%d", first);
    const char *hs[] = {hdr, NULL};
    api_call(&r, api.port, "DELETE", path, NULL, NULL, 0, hs);
    assert_true(r.status >= 200 && r.status < 300);
    api_resp_free(&r);
    const char *other = first == 1 ? "t2" : "t1";
    char st[64] = "";
    deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        api_state(key, other, st, sizeof st);
        if (strcmp(st, "watching") == 0)
            break;
        harness_poll_pause();
    }
    assert_string_equal(st, "watching");
    assert_true(harness_metric(watcher.port, "superimap_watcher_users_provider_limited{provider="
                                             "\"CAPAPI\"}") == 0);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_max_connections_caps_sessions_and_queues_users_fifo,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_api_shows_users_waiting_for_the_provider_limit,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
