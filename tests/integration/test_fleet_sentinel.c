/*
 * Redis failovers under load (redis+sentinel://, docs/architecture.md
 * sections 3 and 6, "No mail lost"), on groups of
 * tests/integration/sentinel_fixture.h (three sentinels, down-after 500 ms):
 *
 *   1. Watchers alone: 2 superimap-watchers hold 100 users on
 *      superimap-fake-imapd (a primary and one replica) while mail is
 *      appended at 20 messages a second; the primary is killed (SIGKILL)
 *      and the replica, which may lack the primary's last writes
 *      (replication is asynchronous), promoted. Every user is watched again
 *      by exactly one watcher, fake-imapd never saw two sessions of one
 *      user, no user moved, and every message gave exactly one new_mail
 *      event in the new primary.
 *   2. A whole fleet (tests/integration/system.h: api, 2 watchers, 1
 *      dispatcher, the webhook receiver checking both signatures) on a
 *      primary and two replicas, mail at 10 a second, the api read every
 *      100 ms throughout:
 *      a. kill -9 of the primary: every message announced, none under a
 *         second webhook-id; then the old primary comes back, the sentinels
 *         make it a replica, and no node ever sends it a script or WAIT or
 *         meets its READONLY (its commandstats and errorstats stay clean)
 *         or names it as the primary (superimap_redis_primary_info);
 *      b. a planned SENTINEL FAILOVER, on Dovecot when it is usable: the
 *         same checks;
 *      c. kill -9 with SUPERIMAP_REDIS_MIN_REPLICAS_ACK=1: no message
 *         recorded twice (the watchers' record_mail successes equal the
 *         messages), and only webhooks claimed on the old primary (sent
 *         before the nodes moved) are sent again, under their id; they are
 *         counted.
 *      In each, the api may fail reads during the switch but never answers
 *      500, and answers every read after it; fake-imapd never sees two
 *      sessions of one user; each node counts exactly one failover. The
 *      pause (kill to the first webhook of a message delivered after it)
 *      and the latencies around it are printed.
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
#include "tests/integration/system.h"
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

static int setup_watchers(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=100", "SUPERIMAP_LOG_LEVEL=warn", NULL};
    if (fx_init() < 0 || sg_start(&g) < 0)
        return -1;
    sg_redis_srv(&g, 0, &primary);
    sg_redis_srv(&g, 1, &replica);
    if (fakeimap_prepare(&srv, 0) < 0)
        return -1;
    return fakeimap_start(&srv, extra);
}

static int teardown_watchers(void **state)
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

/* ---- 2. A whole fleet ---- */

#define F_USERS         8
#define F_SEND_EVERY    100   /* ms between two messages, round robin */
#define F_READ_EVERY    100   /* ms between two reads through the api */
#define F_SWITCH_MS     45000 /* kill to every node on the new primary */
#define F_FLOW_MS       30000 /* ... to a message delivered after that announced */
#define F_ANNOUNCE_MS   30000 /* the last delivery to every message announced */
#define F_REJOIN_MS     45000 /* old primary restarted to replicating */
#define F_HOOK_DELAY    100   /* the receiver's answer time: webhooks are in flight at a kill */
#define F_HOOK_ENV      "SUPERIMAP_WEBHOOK_TIMEOUT_MS=2000" /* lease 4 s */
#define F_ACK_ENV       "SUPERIMAP_REDIS_MIN_REPLICAS_ACK=1"
/* The sentinels' down-after: at 500 ms a loaded machine saw a freshly
 * promoted primary judged down and failed over again. */
#define F_DOWN_AFTER_MS 1000

static struct sys fleet;
static struct sys_user fusers[F_USERS];
static struct sys_pace pace;
static long long next_read_ms;
static int on_dovecot;

/* The api's answers to the reads made through a scenario. */
static struct {
    int n, ok, errors500;
    long long window_end;              /* ms when every node had moved and mail flowed; 0 before */
    int after, after_ok, after_status; /* reads after it; the first non-200 status */
} rd;

static int start_fleet(int acked, int dovecot)
{
    static const char *const dispatcher_plain[] = {F_HOOK_ENV, NULL};
    static const char *const dispatcher_acked[] = {F_HOOK_ENV, F_ACK_ENV, NULL};
    static const char *const watcher_acked[] = {F_ACK_ENV, NULL};
    memset(&rd, 0, sizeof rd);
    pace = (struct sys_pace){.users = fusers, .n = F_USERS, .every_ms = F_SEND_EVERY};
    next_read_ms = 0;
    on_dovecot = dovecot;
    if (sg_start_n(&g, 2, F_DOWN_AFTER_MS) < 0)
        return -1;
    const struct sys_opts o = {.watchers = 2,
                               .dispatchers = 1,
                               .dovecot_users = dovecot ? F_USERS : -1,
                               .fake_imapd = !dovecot,
                               .redis_url = g.url,
                               .watcher_env = acked ? watcher_acked : NULL,
                               .dispatcher_env = acked ? dispatcher_acked : dispatcher_plain};
    if (sys_start(&fleet, &o) < 0 ||
        sys_add_users(&fleet, dovecot ? SYS_DOVECOT : SYS_FAKE, "sentinel", F_USERS, fusers) < 0)
        return -1;
    const struct receiver_rule slow = {.delay_ms = F_HOOK_DELAY};
    receiver_set_rule(fleet.rx, SYS_HOOK_MAIL, &slow);
    return 0;
}

static int setup_fleet(void **state)
{
    (void)state;
    return start_fleet(0, 0);
}

static int setup_fleet_acked(void **state)
{
    (void)state;
    return start_fleet(1, 0);
}

static int setup_fleet_dovecot(void **state)
{
    (void)state;
    char why[128];
    int dovecot = dovecot_available(why, sizeof why);
    if (!dovecot)
        fprintf(stderr, "fake-imapd instead of Dovecot: %s\n", why);
    return start_fleet(0, dovecot);
}

static int teardown_fleet(void **state)
{
    (void)state;
    int rc = sys_stop(&fleet);
    sg_stop(&g);
    return rc;
}

/* A read of a user through the api when one is due: none may answer 500;
 * after the switch window every one must answer 200. */
static void read_api(void)
{
    long long now = harness_now_ms();
    if (now < next_read_ms)
        return;
    next_read_ms = now + F_READ_EVERY;
    struct api_resp r = {0};
    int status = sys_get_user(&fleet, &fusers[rd.n % F_USERS], &r);
    api_resp_free(&r);
    rd.n++;
    rd.ok += status == 200;
    rd.errors500 += status == 500;
    if (rd.window_end != 0) {
        rd.after++;
        rd.after_ok += status == 200;
        if (status != 200 && rd.after_status == 0)
            rd.after_status = status;
    }
}

/* Delivers the next message when one is due, reads the webhooks that came
 * and the api. */
static void keep_sending(void)
{
    assert_int_equal(sys_pace_step(&fleet, &pace), 0);
    read_api();
}

static void send_for(int ms)
{
    long long until = harness_now_ms() + ms;
    while (harness_now_ms() < until)
        keep_sending();
}

static struct sys_node *fleet_node(int i)
{
    return i == 0 ? &fleet.api : i <= 2 ? &fleet.watcher[i - 1] : &fleet.dispatcher[0];
}

#define F_NODES 4 /* api, 2 watchers, dispatcher */

/* The number of nodes whose series reads value. */
static int nodes_at(const char *series, double value)
{
    int n = 0;
    for (int i = 0; i < F_NODES; i++)
        n += harness_metric(fleet_node(i)->p.port, series) == value;
    return n;
}

/* The number of nodes whose superimap_redis_primary_info names port as
 * (value 1) or as no longer (0) the primary. */
static int nodes_on(int port, double value)
{
    char series[128];
    snprintf(series, sizeof series, "superimap_redis_primary_info{address=\"127.0.0.1:%d\"}", port);
    return nodes_at(series, value);
}

/* The number of nodes that counted at least one failover. */
static int nodes_failed_over(void)
{
    int n = 0;
    for (int i = 0; i < F_NODES; i++)
        n += harness_metric(fleet_node(i)->p.port, "superimap_redis_failovers_total") >= 1;
    return n;
}

/* The failovers the nodes counted, all together. */
static double failovers_sum(void)
{
    double n = 0;
    for (int i = 0; i < F_NODES; i++)
        n += harness_metric(fleet_node(i)->p.port, "superimap_redis_failovers_total");
    return n;
}

/* The sum of series over the watchers. */
static double watchers_sum(const char *series)
{
    return harness_metric(fleet.watcher[0].p.port, series) +
           harness_metric(fleet.watcher[1].p.port, series);
}

struct switched {
    long long t0;        /* kill, or the sentinels' agreement to fail over (ms) */
    double moved_s;      /* ... to every node on the new primary */
    long long moved_ms;  /* when that was seen (ms) */
    double pause_s;      /* ... to the first webhook of a message delivered after t0 */
    size_t before, sent; /* messages delivered before t0, and in all */
    int raw;             /* webhooks sent again under their id */
    int old, now;        /* ports of the old and new primary */
};

static void kill_old_primary(void)
{
    kill(g.data[0].pid, SIGKILL);
    waitpid(g.data[0].pid, NULL, 0);
    g.data[0].pid = 0;
}

/* Mail flows for 3 s; the primary is killed (or a failover asked); mail
 * keeps flowing until every node has moved to the new primary and a message
 * delivered after that is announced, then 3 s more. Checks every message
 * announced under one id, the api's answers, one session per user on
 * fake-imapd, and that each node counted one failover and names the new
 * primary. */
static void run_switch(const char *scenario, int planned, struct switched *sw)
{
    memset(sw, 0, sizeof *sw);
    send_for(3000);
    sw->old = g.data[0].port;
    assert_int_equal(sg_primary_port(&g), sw->old);
    sw->before = fleet.nmails;
    if (planned)
        assert_int_equal(sg_failover(&g, sys_ms(15000)), 0);
    else
        kill_old_primary();
    sw->t0 = harness_now_ms();

    long long deadline = sw->t0 + sys_ms(F_SWITCH_MS), next_check = 0;
    int moved = 0;
    while (!moved && harness_now_ms() < deadline) {
        keep_sending();
        if (harness_now_ms() < next_check)
            continue;
        next_check = harness_now_ms() + 100;
        sw->now = sg_primary_port(&g);
        moved = sw->now > 0 && sw->now != sw->old && nodes_on(sw->now, 1) == F_NODES;
    }
    if (!moved) {
        sys_dump_logs(&fleet, 30);
        fail_msg("%s: the nodes were not all on a new primary within %d ms (primary port %d)",
                 scenario, sys_ms(F_SWITCH_MS), sg_primary_port(&g));
    }
    long long moved_ms = sw->moved_ms = harness_now_ms();
    sw->moved_s = (double)(moved_ms - sw->t0) / 1000.0;
    deadline = moved_ms + sys_ms(F_FLOW_MS);
    while (sys_first_webhook_after(&fleet, moved_ms) == 0 && harness_now_ms() < deadline)
        keep_sending();
    assert_true(sys_first_webhook_after(&fleet, moved_ms) > 0);
    rd.window_end = harness_now_ms();
    send_for(3000);
    sw->sent = fleet.nmails;
    if (sys_check_every_message_once(&fleet, sys_ms(F_ANNOUNCE_MS), scenario, &sw->raw) < 0)
        fail_msg("%s", fleet.why);
    sw->pause_s = (double)(sys_first_webhook_after(&fleet, sw->t0) - sw->t0) / 1000.0;

    printf("%s: api reads: %d, %d answered 200, %d after the switch (%d answered 200, first "
           "other status %d)\n",
           scenario, rd.n, rd.ok, rd.after, rd.after_ok, rd.after_status);
    assert_int_equal(rd.errors500, 0);
    assert_true(rd.after > 0);
    assert_int_equal(rd.after_ok, rd.after);
    if (!on_dovecot)
        assert_int_equal(fakeimap_stat(&fleet.fake, "max_sessions_per_user"), 1);
    /* A loaded machine may see a second failover: the nodes follow the
     * sentinels wherever they went. */
    sw->now = sg_primary_port(&g);
    assert_int_equal(nodes_failed_over(), F_NODES);
    assert_int_equal(nodes_on(sw->now, 1), F_NODES);
    assert_int_equal(nodes_on(sw->old, 0), F_NODES);
}

/* Prints the switch's figures and the latencies before it and around it. */
static void print_switch(const char *scenario, const struct switched *sw)
{
    double p50, p99, max, p50_around, p99_around, max_around;
    sys_latency(&fleet, 0, sw->before, &p50, &p99, &max);
    size_t around = sw->before > 10 ? sw->before - 10 : 0;
    sys_latency(&fleet, around, sw->sent, &p50_around, &p99_around, &max_around);
    printf(
        "%s: %zu messages to %d users (%zu before), every node on the new primary after "
        "%.1f s, first webhook of a message delivered after it %.1f s after (the pause); "
        "%d sent again under their id; %.0f record_mail successes; %.0f failovers counted by the "
        "nodes; latency before p50 %.0f "
        "ms, p99 %.0f ms, max %.0f ms; from 1 s before the switch on p50 %.0f ms, p99 %.0f "
        "ms, max %.0f ms\n",
        scenario, sw->sent, F_USERS, sw->before, sw->moved_s, sw->pause_s, sw->raw,
        watchers_sum("superimap_watcher_mail_recorded_total"), failovers_sum(), p50, p99, max,
        p50_around, p99_around, max_around);
}

/* The old primary is started again: the sentinels make it a replica of the
 * new one, and while mail flows no node sends it a command of ours (a
 * script, WAIT) or meets its READONLY: it only replicates. */
static void old_primary_comes_back_as_a_replica(const struct switched *sw)
{
    assert_int_equal(sg_restart_data(&g, 0), 0);
    long long deadline = harness_now_ms() + sys_ms(F_REJOIN_MS);
    int replicating = 0;
    while (!replicating && harness_now_ms() < deadline) {
        keep_sending();
        replicating =
            sg_info_int(sw->old, "INFO replication", "master_port:") == sg_primary_port(&g) &&
            sg_info_int(sw->old, "INFO replication", "master_sync_in_progress:") == 0;
    }
    if (!replicating)
        fail_msg("the old primary was not made a replica of the new one within %d ms",
                 sys_ms(F_REJOIN_MS));
    double rejoined_s = (double)(harness_now_ms() - sw->t0) / 1000.0;
    send_for(3000);
    redisReply *stats = sg_cmd(sw->old, "INFO commandstats");
    redisReply *errors = sg_cmd(sw->old, "INFO errorstats");
    assert_non_null(stats);
    assert_non_null(errors);
    assert_int_equal(stats->type, REDIS_REPLY_STRING);
    assert_int_equal(errors->type, REDIS_REPLY_STRING);
    assert_null(strstr(stats->str, "cmdstat_evalsha:"));
    assert_null(strstr(stats->str, "cmdstat_eval:"));
    assert_null(strstr(stats->str, "cmdstat_wait:"));
    assert_null(strstr(errors->str, "errorstat_READONLY"));
    freeReplyObject(stats);
    freeReplyObject(errors);
    assert_int_equal(nodes_on(sw->old, 0), F_NODES);
    assert_int_equal(nodes_on(sg_primary_port(&g), 1), F_NODES);
    printf("old primary: replicating from the new one %.1f s after the kill; no script, WAIT or "
           "READONLY seen there\n",
           rejoined_s);
    if (sys_check_every_message_once(&fleet, sys_ms(F_ANNOUNCE_MS), "rejoined", &(int){0}) < 0)
        fail_msg("%s", fleet.why);
}

static void test_primary_killed_every_message_once(void **state)
{
    (void)state;
    struct switched sw;
    run_switch("sentinel kill", 0, &sw);
    print_switch("sentinel kill", &sw);
    old_primary_comes_back_as_a_replica(&sw);
}

static void test_planned_failover_every_message_once(void **state)
{
    (void)state;
    struct switched sw;
    const char *name = on_dovecot ? "sentinel failover (Dovecot)" : "sentinel failover";
    run_switch(name, 1, &sw);
    print_switch(name, &sw);
}

static void test_primary_killed_with_replica_acks_records_once(void **state)
{
    (void)state;
    struct switched sw;
    run_switch("sentinel kill, MIN_REPLICAS_ACK=1", 0, &sw);
    print_switch("sentinel kill, MIN_REPLICAS_ACK=1", &sw);
    /* Each message recorded once: what a watcher recorded was on a
     * replica before the session went on, so the promoted one has it. */
    assert_true(watchers_sum("superimap_watcher_mail_recorded_total") <= (double)sw.sent);
    /* Sent again: only webhooks claimed on the old primary, whose ack it
     * did not acknowledge: the dispatcher sent them before it moved. */
    int again = 0;
    for (size_t i = 0; i < fleet.nmails; i++) {
        const struct sys_mail *m = &fleet.mails[i];
        if (m->announced > 1) {
            again++;
            assert_true(m->first_us / 1000 < sw.moved_ms);
        }
    }
    printf("sentinel kill, MIN_REPLICAS_ACK=1: %d webhooks in flight at the kill sent again "
           "(same id); short WAITs: watchers %.0f, dispatcher %.0f\n",
           again, watchers_sum("superimap_redis_wait_short_total"),
           harness_metric(fleet.dispatcher[0].p.port, "superimap_redis_wait_short_total"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fleet_survives_a_failover_under_load, setup_watchers,
                                        teardown_watchers),
        cmocka_unit_test_setup_teardown(test_primary_killed_every_message_once, setup_fleet,
                                        teardown_fleet),
        cmocka_unit_test_setup_teardown(test_planned_failover_every_message_once,
                                        setup_fleet_dovecot, teardown_fleet),
        cmocka_unit_test_setup_teardown(test_primary_killed_with_replica_acks_records_once,
                                        setup_fleet_acked, teardown_fleet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
