/*
 * superimap-watcher against a server without IDLE (superimap-fake-imapd
 * after "CAPS NOIDLE"): the session polls with NOOP and a fetch every
 * SUPERIMAP_IMAP_POLL_SEC, stays "watching", never sends IDLE, and turns
 * every appended message into exactly one event.
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

#define PID   "9"
#define NMAIL 3

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc watcher;
static int watcher_up;

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=10", NULL};
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
    char reply[64];
    if (watcher_up)
        harness_proc_stop(&watcher);
    watcher_up = 0;
    return fakeimap_request(&srv, "CAPS IDLE", reply, sizeof reply) == 0 ? 0 : -1;
}

static void test_without_idle_polls_with_noop_and_records_each_message_once(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000a001";
    char reply[64];
    assert_int_equal(fakeimap_request(&srv, "CAPS NOIDLE", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK noidle");
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, "fk", host, port, "none"), 0);
    assert_int_equal(fx_user(&redis, uid, PID, "fk", "user1", "user1", "pass1"), 0);

    const char *env[] = {"SUPERIMAP_IMAP_POLL_SEC=1", "SUPERIMAP_IMAP_BACKOFF_MIN_MS=50",
                         "SUPERIMAP_IMAP_BACKOFF_MAX_MS=500", NULL};
    assert_int_equal(harness_node_start(&watcher, &redis, "superimap-watcher", "w1", env), 0);
    watcher_up = 1;
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    /* Polling has begun: a NOOP came after the session was watching. */
    assert_int_equal(fakeimap_wait_stat(&srv, "noops", 1, 5000), 0);

    uint32_t muids[NMAIL];
    for (int i = 0; i < NMAIL; i++) {
        char m[256];
        int len =
            snprintf(m, sizeof m, "From: a@example.com\r\nSubject: p%d\r\n\r\nbody %d\r\n", i, i);
        assert_int_equal(fakeimap_append(&srv, "user1", m, (size_t)len, &muids[i]), 0);
        assert_int_equal(fx_wait_ready(&redis, uid, PID, i + 1, 5000), 0);
    }
    /* Two more polls after the last event: nothing is recorded twice. */
    long long noops = fakeimap_stat(&srv, "noops");
    assert_true(noops >= 1);
    assert_int_equal(fakeimap_wait_stat(&srv, "noops", noops + 2, 5000), 0);

    char ids[1024];
    assert_int_equal(fx_ready_ids(&redis, uid, PID, ids, sizeof ids), NMAIL);
    char *save = NULL, *id = strtok_r(ids, " ", &save);
    for (int i = 0; i < NMAIL; i++, id = strtok_r(NULL, " ", &save)) {
        assert_non_null(id);
        char want[64];
        snprintf(want, sizeof want, ".%u", (unsigned)muids[i]);
        const char *dot = strrchr(id, '.');
        assert_non_null(dot);
        assert_string_equal(dot, want);
        assert_int_equal(strncmp(id, uid, strlen(uid)), 0);
    }
    char st[64];
    fx_user_field(&redis, uid, "state", st, sizeof st);
    assert_string_equal(st, "watching");
    /* No IDLE was ever sent, and the one session was never replaced. */
    assert_int_equal(fakeimap_stat(&srv, "idles"), 0);
    assert_int_equal(fakeimap_stat(&srv, "logins"), 1);
    int cur = -1, max = -1;
    assert_int_equal(fakeimap_sessions(&srv, "user1", &cur, &max), 0);
    assert_int_equal(cur, 1);
    assert_int_equal(max, 1);
    /* The capability came back on request. */
    assert_int_equal(fakeimap_request(&srv, "CAPS IDLE", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK idle");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_without_idle_polls_with_noop_and_records_each_message_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
