/*
 * A Redis failover under load (redis+sentinel://, docs/architecture.md
 * sections 3 and 6, "No mail lost"): 2 superimap-watchers hold 100 users on
 * superimap-fake-imapd through a Sentinel group (a primary, a replica, three
 * sentinels: tests/integration/sentinel_fixture.h) while mail is appended at
 * 20 messages a second. The primary is killed (SIGKILL); the sentinels
 * promote the replica, which may lack the primary's last writes
 * (replication is asynchronous). Afterwards every user is watched again by
 * exactly one watcher, fake-imapd never saw two sessions of one user, no
 * user moved, and every appended message gave exactly one new_mail event
 * in the new primary. The time from the kill until every user is watched
 * again is printed.
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
#include <sys/wait.h>

#include <cmocka.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/fleet_mail_fixture.h"
#include "tests/integration/harness.h"
#include "tests/integration/sentinel_fixture.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID    "6"
#define NUSERS 100
#define NW     2
#define RATE   20

static struct sentinel_group g;
static struct redis_srv primary, replica; /* the data nodes, for direct reads */
static struct fakeimap srv;
static struct proc w[NW];
static const char *const names[NW] = {"sw1", "sw2"};
static struct fleet_mail fm = {.redis = &primary,
                               .srv = &srv,
                               .w = w,
                               .names = names,
                               .nw = NW,
                               .nusers = NUSERS,
                               .rate = RATE,
                               .pid = PID};

static int suite_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=100", "SUPERIMAP_LOG_LEVEL=warn", NULL};
    if (fx_init() < 0 || sg_start(&g) < 0)
        return -1;
    sg_redis_srv(&g, 0, &primary);
    sg_redis_srv(&g, 1, &replica);
    if (fakeimap_prepare(&srv, 0) < 0)
        return -1;
    return fakeimap_start(&srv, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    fakeimap_stop(&srv, 0);
    harness_stop_all();
    sg_stop(&g);
    fx_shutdown();
    return 0;
}

static void test_fleet_survives_a_failover_under_load(void **state)
{
    (void)state;
    fm_add_users(&fm, &primary, "sf");
    char url[600];
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", g.url);
    const char *env[] = {url, "SUPERIMAP_IMAP_LOGINS_PER_SEC=5000", "SUPERIMAP_LOG_LEVEL=info",
                         NULL};
    for (int i = 0; i < NW; i++)
        assert_int_equal(harness_node_start(&w[i], &primary, "superimap-watcher", names[i], env),
                         0);
    /* No mail before every user has its first baseline (old mail is never
     * announced). */
    fm_wait_all_watched(&fm, 30000, 0);
    fm.next_due = harness_now_ms();
    double moves[NW];
    for (int i = 0; i < NW; i++)
        moves[i] = harness_metric(w[i].port, "superimap_watcher_moves_total");
    fm_pump_for(&fm, 3000);

    kill(g.data[0].pid, SIGKILL);
    waitpid(g.data[0].pid, NULL, 0);
    g.data[0].pid = 0;
    long long t0 = harness_now_ms();
    fm.redis = &replica;
    /* The sentinels promote the replica; each watcher's link drops and it
     * asks them again; then every user is watched again. */
    long long deadline = t0 + 30000;
    while (sg_primary_port(&g) != g.data[1].port && harness_now_ms() < deadline) {
        fm_pump(&fm);
        harness_poll_pause();
    }
    assert_int_equal(sg_primary_port(&g), g.data[1].port);
    long long promoted = harness_now_ms() - t0;
    int moved = 0;
    while (moved < NW && harness_now_ms() < deadline) {
        fm_pump(&fm);
        harness_poll_pause();
        moved = 0;
        for (int i = 0; i < NW; i++)
            moved += harness_metric(w[i].port, "superimap_redis_failovers_total") == 1;
    }
    assert_int_equal(moved, NW);
    long long followed = harness_now_ms() - t0;
    fm_wait_all_watched(&fm, 45000, 1);
    fprintf(stderr,
            "fleet_sentinel: primary killed: replica promoted after %.1f s, both watchers on it "
            "after %.1f s, all %d users watched again after %.1f s\n",
            (double)promoted / 1000.0, (double)followed / 1000.0, NUSERS,
            (double)(harness_now_ms() - t0) / 1000.0);
    fm_pump_for(&fm, 2000);
    fm_wait_every_message_once(&fm, 30000);
    assert_int_equal(fakeimap_stat(&srv, "max_sessions_per_user"), 1);
    for (int i = 0; i < NW; i++)
        assert_int_equal(harness_metric(w[i].port, "superimap_watcher_moves_total"), moves[i]);
    fm_stop_watchers(&fm); /* a clean stop after all that */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_survives_a_failover_under_load),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
