/*
 * A provider's max_connections against superimap-fake-imapd: with a cap of
 * 3 and 10 users of that provider, the server never sees more than 3
 * connections at once; 3 users are watched and the other 7 wait in the
 * provider's FIFO (cmd/watcher/provider.h), shown as "connecting". When a
 * connection ends, the longest-waiting user takes its slot and the one that
 * lost it queues at the back, so kicking one watched user at a time brings a
 * user never watched before each time, until all 10 have been.
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
#include "tests/integration/test_watcher_fixture.h"

#define PID    "9"
#define NUSERS 10
#define CAP    3

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc watcher;
static int watcher_up;

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
    watcher_up = 0;
    return 0;
}

static void uid_of(int i, char *out, size_t outlen)
{
    snprintf(out, outlen, "00000000000000000000c%03d", i + 1);
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

/* Users whose state is "watching" now (in[i] = 1); returns how many, and the
 * count of "connecting" ones in *connecting. */
static int watching_now(int in[NUSERS], int *connecting)
{
    int n = 0;
    *connecting = 0;
    for (int i = 0; i < NUSERS; i++) {
        char uid[48], st[64];
        uid_of(i, uid, sizeof uid);
        fx_user_field(&redis, uid, "state", st, sizeof st);
        in[i] = strcmp(st, "watching") == 0;
        n += in[i];
        *connecting += strcmp(st, "connecting") == 0;
    }
    return n;
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
    for (int i = 0; i < NUSERS; i++) {
        char uid[48], login[16], pass[16];
        uid_of(i, uid, sizeof uid);
        snprintf(login, sizeof login, "user%d", i + 1);
        snprintf(pass, sizeof pass, "pass%d", i + 1);
        assert_int_equal(fx_user(&redis, uid, PID, "cap", login, login, pass), 0);
    }
    const char *env[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=50", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=200",
                         NULL};
    assert_int_equal(harness_node_start(&watcher, &redis, "superimap-watcher", "w1", env), 0);
    watcher_up = 1;

    int in[NUSERS];
    assert_int_equal(wait_cap_watching(in, -1, 10000), 0);
    /* The others wait, visibly connecting, and no fourth connection opens. */
    int connecting = 0;
    long long deadline = harness_now_ms() + 1000;
    while (harness_now_ms() < deadline) {
        int now[NUSERS];
        assert_int_equal(watching_now(now, &connecting), CAP);
        assert_int_equal(connecting, NUSERS - CAP);
        harness_poll_pause();
    }
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_max_connections_caps_sessions_and_queues_users_fifo,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
