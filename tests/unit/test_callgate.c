/*
 * Unit tests of cmd/watcher/callgate against a real redis-server
 * (tests/unit/redis_fixture.h): at most max calls are handed to rconn, the
 * others wait in submission order and never time out for the wait; every
 * accepted call gets its callback exactly once, never from inside the start
 * function; callgate_free() ends the waiting ones with -SIMAP_ESHUTDOWN.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "cmd/watcher/callgate.c"
#include "core/err.h"
#include "core/rconn.h"
#include "tests/unit/loop_fixture.h"
#include "tests/unit/redis_fixture.h"

/* Spins Redis for ARGV[1] microseconds (TIME is allowed in scripts since
 * Redis 5's effects replication). */
static const char spin[] = "local s = redis.call('TIME') "
                           "repeat local n = redis.call('TIME') "
                           "until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) >= tonumber(ARGV[1]) "
                           "return 1";

struct tctx {
    struct redis_fixture fx;
    struct ev_loop *loop;
    struct rconn *rc;
};

struct seen {
    int answers;
    int errs[8];
    long long vals[8];
    int max_in_flight;
    struct callgate *g;
};

static void on_answer(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct seen *s = privdata;
    s->errs[s->answers] = err;
    s->vals[s->answers] = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    s->answers++;
}

static int setup(void **state)
{
    struct tctx *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    *state = t;
    return loop_rconn_open(&t->fx, &t->loop, &t->rc);
}

static int teardown(void **state)
{
    struct tctx *t = *state;
    if (t == NULL)
        return 0;
    loop_rconn_close(&t->fx, t->loop, t->rc);
    free(t);
    return 0;
}

static void rpush(struct callgate *g, struct seen *s)
{
    const char *argv[] = {"RPUSH", "l", "x"};
    assert_int_equal(callgate_command_argv(g, on_answer, s, 3, argv, NULL), 0);
    if (callgate_in_flight(g) > s->max_in_flight)
        s->max_in_flight = callgate_in_flight(g);
}

static void test_at_most_max_in_flight_the_rest_wait_in_order(void **state)
{
    struct tctx *t = *state;
    struct callgate *g = callgate_new(t->rc, 2);
    struct seen s = {0};
    for (int i = 0; i < 5; i++)
        rpush(g, &s);
    assert_int_equal(callgate_in_flight(g), 2);
    assert_int_equal(callgate_waiting(g), 3);
    assert_int_equal(s.answers, 0); /* never from inside the start function */
    assert_true(run_until(t->loop, &s.answers, 5, 5.0));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(s.errs[i], 0);
        assert_int_equal(s.vals[i], i + 1); /* RPUSH answers the length: submission order */
    }
    assert_int_equal(s.max_in_flight, 2);
    assert_int_equal(callgate_in_flight(g), 0);
    assert_int_equal(callgate_waiting(g), 0);
    callgate_free(g);
}

static void test_a_waiting_call_does_not_time_out_for_the_wait(void **state)
{
    struct tctx *t = *state;
    /* 300 ms per command; four calls of 200 ms each, one at a time: the last
     * answers 800 ms after its submission, 200 ms after its hand-over. */
    struct rconn_opts o = {.url = t->fx.url, .name = "short", .command_timeout_ms = 300};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    struct callgate *g = callgate_new(rc, 1);
    struct seen s = {0};
    const char *argv[] = {"EVAL", spin, "0", "200000"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(callgate_command_argv(g, on_answer, &s, 4, argv, NULL), 0);
    assert_true(run_until(t->loop, &s.answers, 4, 5.0));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s.errs[i], 0);
        assert_int_equal(s.vals[i], 1);
    }
    callgate_free(g);
    rconn_free(rc);
}

static void test_scripts_pass_through_with_their_arguments_copied(void **state)
{
    struct tctx *t = *state;
    struct callgate *g = callgate_new(t->rc, 1);
    struct seen s = {0};
    char key[16] = "k1", val[16] = "v1";
    const char *argv[] = {"l", "x"};
    rpush(g, &s); /* fills the gate: the script waits */
    const char *set[] = {"SET", key, val};
    assert_int_equal(callgate_command_argv(g, on_answer, &s, 3, set, NULL), 0);
    strcpy(key, "k2"); /* the gate kept its own copy */
    strcpy(val, "v2");
    assert_int_equal(callgate_script(g, on_answer, &s, "no_such_script", 1, 2, argv, NULL), 0);
    assert_true(run_until(t->loop, &s.answers, 3, 5.0));
    assert_int_equal(s.errs[0], 0);
    assert_int_equal(s.errs[1], 0);
    assert_int_equal(s.errs[2], -SIMAP_ENOTFOUND); /* refused by rconn when handed over */
    redisReply *r = redis_fixture_cmd(&t->fx, "GET k1");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "v1");
    freeReplyObject(r);
    callgate_free(g);
}

static void test_free_ends_the_waiting_calls_once(void **state)
{
    struct tctx *t = *state;
    struct callgate *g = callgate_new(t->rc, 1);
    struct seen s = {0};
    for (int i = 0; i < 3; i++)
        rpush(g, &s);
    callgate_free(g); /* the gate lives on until its call in flight answers */
    assert_int_equal(s.answers, 2);
    assert_int_equal(s.errs[0], -SIMAP_ESHUTDOWN);
    assert_int_equal(s.errs[1], -SIMAP_ESHUTDOWN);
    assert_true(run_until(t->loop, &s.answers, 3, 5.0));
    assert_int_equal(s.errs[2], 0);
    assert_int_equal(s.vals[2], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_at_most_max_in_flight_the_rest_wait_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_waiting_call_does_not_time_out_for_the_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scripts_pass_through_with_their_arguments_copied,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_ends_the_waiting_calls_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
