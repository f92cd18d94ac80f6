/*
 * redis+sentinel:// (core/sentinel, core/rconn, core/rsync) against a real
 * group (tests/integration/sentinel_fixture.h: a primary, a replica, three
 * sentinels): the sentinels name the primary, blocking and on a loop, and
 * say why when they cannot; rsync (the api's client) follows a planned
 * SENTINEL FAILOVER; rconn (every node's client) follows a kill -9 of the
 * primary, counts the change, and its writes land on the promoted replica;
 * it leaves a hung primary as soon as the sentinels announce the switch; and
 * rconn_script_acked() (SUPERIMAP_REDIS_MIN_REPLICAS_ACK) answers only once
 * the replica has the write, or -SIMAP_EREPLICAS when too few replicas do.
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
#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/rconn.h"
#include "core/redis_url.h"
#include "core/rsync.h"
#include "core/sentinel.h"
#include "tests/integration/harness.h"
#include "tests/integration/sentinel_fixture.h"
#include "tests/unit/loop_fixture.h"

static struct sentinel_group g;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return sg_start(&g);
}

static int teardown(void **state)
{
    (void)state;
    sg_stop(&g);
    return 0;
}

/* The value of key on the data node at port, as a number, or -1. */
static long long value_at(int port, const char *key)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "GET %s", key);
    redisReply *r = sg_cmd(port, cmd);
    long long v = r != NULL && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

/* Polls until the sentinels name port as the primary and it says so. */
static void wait_primary(int port, int ms)
{
    long long deadline = harness_now_ms() + ms;
    for (;;) {
        redisReply *r = sg_cmd(port, "ROLE");
        int is_primary = sentinel_role_is_primary(r);
        freeReplyObject(r);
        if (is_primary && sg_primary_port(&g) == port)
            return;
        if (harness_now_ms() >= deadline)
            fail_msg("127.0.0.1:%d not the primary after %d ms", port, ms);
        harness_poll_pause();
    }
}

static void test_sentinels_name_the_primary_or_say_why_not(void **state)
{
    (void)state;
    struct redis_addr a;
    char err[512];
    assert_int_equal(redis_url_parse(g.url, NULL, &a, err, sizeof err), 0);
    assert_int_equal(sentinel_resolve(&a, 1000, err, sizeof err), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, g.data[0].port);

    /* A master they do not watch; then no sentinel at all: every one tried,
     * each named with its reason. */
    snprintf(a.master, sizeof a.master, "other");
    assert_int_equal(sentinel_resolve(&a, 1000, err, sizeof err), -SIMAP_ECONN);
    assert_non_null(strstr(err, "does not know this master"));
    char bad[200];
    int p1 = harness_free_port(), p2 = harness_free_port();
    snprintf(bad, sizeof bad, "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/" SG_MASTER, p1, p2);
    assert_int_equal(redis_url_parse(bad, NULL, &a, err, sizeof err), 0);
    assert_int_equal(sentinel_resolve(&a, 1000, err, sizeof err), -SIMAP_ECONN);
    char p1s[16], p2s[16];
    snprintf(p1s, sizeof p1s, ":%d:", p1);
    snprintf(p2s, sizeof p2s, ":%d:", p2);
    assert_non_null(strstr(err, p1s));
    assert_non_null(strstr(err, p2s));
}

struct answer {
    int n, rc, port;
    char why[512];
};

static void on_answer(void *data, int rc, const char *host, int port, const char *why)
{
    struct answer *an = data;
    an->n++;
    an->rc = rc;
    an->port = rc == 0 && strcmp(host, "127.0.0.1") == 0 ? port : -1;
    snprintf(an->why, sizeof an->why, "%s", why ? why : "");
}

static void test_asking_on_the_loop(void **state)
{
    (void)state;
    struct redis_addr a;
    char err[256];
    assert_int_equal(redis_url_parse(g.url, NULL, &a, err, sizeof err), 0);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct answer an = {0};
    assert_non_null(sentinel_ask_start(loop, &a, 1.0, on_answer, &an));
    assert_int_equal(an.n, 0); /* never from inside the call */
    assert_true(run_until(loop, &an.n, 1, 10.0));
    assert_int_equal(an.rc, 0);
    assert_int_equal(an.port, g.data[0].port);

    /* The first sentinel is down: the next one answers. */
    a.sentinels[0].port = harness_free_port();
    memset(&an, 0, sizeof an);
    assert_non_null(sentinel_ask_start(loop, &a, 1.0, on_answer, &an));
    assert_true(run_until(loop, &an.n, 1, 10.0));
    assert_int_equal(an.rc, 0);
    assert_int_equal(an.port, g.data[0].port);

    snprintf(a.master, sizeof a.master, "other");
    memset(&an, 0, sizeof an);
    assert_non_null(sentinel_ask_start(loop, &a, 1.0, on_answer, &an));
    assert_true(run_until(loop, &an.n, 1, 10.0));
    assert_int_equal(an.rc, -SIMAP_ECONN);
    assert_non_null(strstr(an.why, "does not know this master"));

    /* Cancelled before it answers: the callback never runs. */
    memset(&an, 0, sizeof an);
    struct sentinel_ask *q = sentinel_ask_start(loop, &a, 1.0, on_answer, &an);
    sentinel_ask_cancel(q);
    int never = 0;
    run_until(loop, &never, 1, 0.3);
    assert_int_equal(an.n, 0);
    ev_loop_destroy(loop);
}

static void test_rsync_follows_a_planned_failover(void **state)
{
    (void)state;
    struct rsync_opts o = {.url = g.url, .timeout_ms = 1000};
    struct rsync *rs = rsync_new(&o);
    assert_non_null(rs);
    redisReply *r = rsync_command(rs, "SET k 1");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(value_at(g.data[0].port, "k"), 1);

    assert_int_equal(sg_failover(&g, 15000), 0);
    wait_primary(g.data[1].port, 20000);
    /* Until the sentinels reconfigure the old primary it still takes writes
     * (Redis then drops them: Sentinel's failover is not coordinated); once
     * it is a replica, its clients are closed and writes refused. */
    long long until = harness_now_ms() + 20000;
    for (;;) {
        redisReply *role = sg_cmd(g.data[0].port, "ROLE");
        int demoted = role != NULL && role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
                      strcmp(role->element[0]->str, "slave") == 0;
        freeReplyObject(role);
        if (demoted)
            break;
        if (harness_now_ms() >= until)
            fail_msg("the old primary was not made a replica within 20 s");
        harness_poll_pause();
    }
    /* Writes fail for the switch at most, then land on the new primary. */
    long long deadline = harness_now_ms() + 15000;
    int ok = 0;
    while (!ok && harness_now_ms() < deadline) {
        r = rsync_command(rs, "SET k 2");
        ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (!ok)
            harness_poll_pause();
    }
    assert_true(ok);
    assert_int_equal(value_at(g.data[1].port, "k"), 2);
    rsync_free(rs);
}

struct writes {
    int done, ok;
};

static void on_set(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct writes *w = privdata;
    w->done++;
    w->ok += err == 0 && reply != NULL && reply->type == REDIS_REPLY_STATUS;
}

/* The write of key went to the promoted replica, the rconn counted one
 * change of primary; then it and its loop are freed. */
static void moved_to_the_replica(struct ev_loop *loop, struct rconn *rc, const char *key)
{
    assert_int_equal(value_at(g.data[1].port, key), 2);
    struct rconn_stats st;
    rconn_stats(rc, &st);
    assert_int_equal(st.primary_changes, 1);
    rconn_free(rc);
    int never = 0;
    run_until(loop, &never, 1, 0.1);
    ev_loop_destroy(loop);
}

static void test_rconn_follows_a_killed_primary(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rconn_opts o = {.url = g.url, .name = "test", .connect_timeout_ms = 1000};
    struct rconn *rc = rconn_new(loop, &o);
    assert_non_null(rc);
    struct writes w = {0};
    assert_int_equal(rconn_command(rc, on_set, &w, "SET a 1"), 0);
    assert_true(run_until(loop, &w.done, 1, 10.0));
    assert_int_equal(w.ok, 1);
    assert_int_equal(value_at(g.data[0].port, "a"), 1);

    kill(g.data[0].pid, SIGKILL);
    waitpid(g.data[0].pid, NULL, 0);
    g.data[0].pid = 0;
    long long t0 = harness_now_ms();
    /* One write every 100 ms until one lands (the earlier ones fail while
     * no primary is elected, or time out). */
    while (w.ok < 2 && harness_now_ms() < t0 + 30000) {
        int before = w.done;
        assert_int_equal(rconn_command(rc, on_set, &w, "SET a 2"), 0);
        run_until(loop, &w.done, before + 1, 10.0);
        if (w.ok < 2) {
            int never = 0;
            run_until(loop, &never, 1, 0.1);
        }
    }
    printf("sentinel: a write landed %lld ms after the primary was killed\n",
           harness_now_ms() - t0);
    assert_int_equal(w.ok, 2);
    moved_to_the_replica(loop, rc, "a");
}

/* A primary that hangs (SIGSTOP) keeps its connections open: the nodes
 * would notice only when a command times out (30 s here). The sentinels'
 * +switch-master announcement moves them at once. */
static void test_rconn_leaves_a_hung_primary_when_the_sentinels_switch(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rconn_opts o = {
        .url = g.url, .name = "test", .connect_timeout_ms = 1000, .command_timeout_ms = 30000};
    struct rconn *rc = rconn_new(loop, &o);
    assert_non_null(rc);
    struct writes w = {0};
    assert_int_equal(rconn_command(rc, on_set, &w, "SET h 1"), 0);
    assert_true(run_until(loop, &w.done, 1, 10.0));
    assert_int_equal(w.ok, 1);

    kill(g.data[0].pid, SIGSTOP);
    long long t0 = harness_now_ms();
    while (w.ok < 2 && harness_now_ms() < t0 + 20000) {
        int before = w.done;
        assert_int_equal(rconn_command(rc, on_set, &w, "SET h 2"), 0);
        run_until(loop, &w.done, before + 1, 20.0);
    }
    long long took = harness_now_ms() - t0;
    printf("sentinel: a write landed %lld ms after the primary hung\n", took);
    assert_int_equal(w.ok, 2);
    assert_true(took < 20000); /* the command timeout (30 s) played no part */
    moved_to_the_replica(loop, rc, "h");
}

struct acked {
    int done, err;
    long long value;
    long long ms; /* submission to callback */
    long long t0;
};

static void on_acked(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct acked *a = privdata;
    a->done++;
    a->err = err;
    a->value = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -100;
    a->ms = harness_now_ms() - a->t0;
}

/* Runs lease_acquire for lease:u as token t (its alive key set first) by
 * rconn_script_acked() on an rconn asking for min_acks replicas. */
static struct acked acquire_acked(int min_acks, const char *u, struct rconn_stats *st)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rconn_opts o = {.url = g.url,
                           .name = "test",
                           .connect_timeout_ms = 1000,
                           .command_timeout_ms = 2000,
                           .min_replicas_ack = min_acks};
    struct rconn *rc = rconn_new(loop, &o);
    assert_non_null(rc);
    struct writes w = {0};
    assert_int_equal(rconn_command(rc, on_set, &w, "SET alive:t 1"), 0);
    assert_true(run_until(loop, &w.done, 1, 10.0));
    char lease[64];
    snprintf(lease, sizeof lease, "lease:%s", u);
    const char *argv[] = {lease, "alive:t", "t"};
    struct acked a = {.t0 = harness_now_ms()};
    assert_int_equal(rconn_script_acked(rc, on_acked, &a, "lease_acquire", 2, 3, argv, NULL), 0);
    assert_int_equal(a.done, 0); /* never from inside the start function */
    assert_true(run_until(loop, &a.done, 1, 10.0));
    rconn_stats(rc, st);
    rconn_free(rc);
    int never = 0;
    run_until(loop, &never, 1, 0.1);
    ev_loop_destroy(loop);
    return a;
}

static long long wait_calls(void)
{
    return sg_info_int(g.data[0].port, "INFO commandstats", "cmdstat_wait:calls=");
}

static void test_acked_scripts_wait_for_replicas(void **state)
{
    (void)state;
    struct rconn_stats st;
    /* Off: no WAIT is sent. */
    struct acked a = acquire_acked(0, "u0", &st);
    assert_int_equal(a.err, 0);
    assert_int_equal(a.value, 1);
    assert_int_equal(wait_calls(), -1);

    /* One replica asked, one there: the reply (copied while WAIT ran) comes
     * after the replica has the write. */
    a = acquire_acked(1, "u1", &st);
    assert_int_equal(a.err, 0);
    assert_int_equal(a.value, 1);
    assert_int_equal(wait_calls(), 1);
    assert_int_equal(st.wait_short, 0);
    redisReply *r = sg_cmd(g.data[1].port, "GET lease:u1");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "t");
    freeReplyObject(r);

    /* Two asked, one there: WAIT gives up after its timeout (a quarter of
     * the 2,000 ms command timeout) and the caller gets -SIMAP_EREPLICAS;
     * the write did happen on the primary. */
    a = acquire_acked(2, "u2", &st);
    printf("sentinel: WAIT 2 with one replica answered after %lld ms\n", a.ms);
    assert_int_equal(a.err, -SIMAP_EREPLICAS);
    assert_int_equal(a.value, -100);
    assert_int_equal(st.wait_short, 1);
    assert_true(a.ms >= 450);
    r = sg_cmd(g.data[0].port, "EXISTS lease:u2");
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sentinels_name_the_primary_or_say_why_not, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_asking_on_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rsync_follows_a_planned_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rconn_follows_a_killed_primary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rconn_leaves_a_hung_primary_when_the_sentinels_switch,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_acked_scripts_wait_for_replicas, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
