/*
 * Unit tests of core/rreq against a real redis-server (tests/unit/redis_fixture.h):
 * a reply reaches its callback only while its owner holds on and has not
 * moved on; the shutdown is dropped unless asked for; release runs exactly
 * once per request in every case.
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

#include "core/err.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "tests/unit/loop_fixture.h"
#include "tests/unit/redis_fixture.h"

struct tctx {
    struct redis_fixture fx;
    struct ev_loop *loop;
    struct rconn *rc;
};

/* An owner as callers have one: heap-allocated, embedding its rreq_owner. */
struct owner {
    struct rreq_owner reqs;
    int answers;
    long long last;
    int last_err;
};

/* One call, embedding its request; counts on shared counters. */
struct call {
    struct rreq req;
    struct owner *o;
    int *released;
};

static struct call *call_of(struct rreq *req)
{
    return (struct call *)(void *)((char *)req - offsetof(struct call, req));
}

static void on_answer(struct rreq *req, struct redisReply *reply, int err)
{
    struct call *c = call_of(req);
    c->o->answers++;
    c->o->last_err = err;
    c->o->last = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
}

static void release_call(struct rreq *req)
{
    struct call *c = call_of(req);
    (*c->released)++;
    free(c);
}

static int send_incr(struct tctx *t, struct owner *o, int *released)
{
    struct call *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->o = o;
    c->released = released;
    rreq_start(&c->req, &o->reqs, on_answer, release_call);
    int r = rconn_command(t->rc, rreq_on_reply, &c->req, "INCR n");
    if (r < 0)
        rreq_abort(&c->req);
    return r;
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

/* ---- Tests ---- */

static void test_fresh_reply_reaches_callback_once_then_release(void **state)
{
    struct tctx *t = *state;
    struct owner o = {0};
    rreq_owner_init(&o.reqs, 0);
    int released = 0;
    assert_int_equal(send_incr(t, &o, &released), 0);
    assert_int_equal(send_incr(t, &o, &released), 0);
    assert_int_equal(rreq_owner_pending(&o.reqs), 2);
    assert_int_equal(o.answers, 0); /* never from inside the start function */
    assert_true(run_until(t->loop, &released, 2, 5.0));
    assert_int_equal(o.answers, 2);
    assert_int_equal(o.last, 2);
    assert_int_equal(o.last_err, 0);
    assert_int_equal(rreq_owner_pending(&o.reqs), 0);
}

static void test_answers_sent_before_move_on_are_dropped(void **state)
{
    struct tctx *t = *state;
    struct owner o = {0};
    rreq_owner_init(&o.reqs, 0);
    int released = 0;
    assert_int_equal(send_incr(t, &o, &released), 0);
    assert_int_equal(send_incr(t, &o, &released), 0);
    rreq_owner_move_on(&o.reqs);
    assert_int_equal(send_incr(t, &o, &released), 0);
    assert_true(run_until(t->loop, &released, 3, 5.0));
    assert_int_equal(o.answers, 1); /* only the one sent after */
    assert_int_equal(o.last, 3);    /* the two dropped ones did run in Redis */
    assert_int_equal(rreq_owner_pending(&o.reqs), 0);
}

static void test_cancelled_owner_can_be_freed_before_its_answers(void **state)
{
    struct tctx *t = *state;
    struct owner *o = calloc(1, sizeof *o);
    assert_non_null(o);
    rreq_owner_init(&o->reqs, 0);
    int released = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(send_incr(t, o, &released), 0);
    rreq_owner_cancel(&o->reqs);
    assert_int_equal(rreq_owner_pending(&o->reqs), 0);
    free(o); /* the answers must not touch it (ASan and valgrind would see it) */
    assert_true(run_until(t->loop, &released, 3, 5.0));
    assert_int_equal(released, 3);
}

static void test_abort_releases_without_callback(void **state)
{
    (void)state;
    struct owner o = {0};
    rreq_owner_init(&o.reqs, 0);
    int released = 0;
    struct call *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->o = &o;
    c->released = &released;
    rreq_start(&c->req, &o.reqs, on_answer, release_call);
    assert_int_equal(rreq_owner_pending(&o.reqs), 1);
    rreq_abort(&c->req);
    assert_int_equal(released, 1);
    assert_int_equal(o.answers, 0);
    assert_int_equal(rreq_owner_pending(&o.reqs), 0);
}

static void test_shutdown_is_dropped_unless_the_owner_asks_for_it(void **state)
{
    struct tctx *t = *state;
    struct owner quiet = {0}, seeing = {0};
    rreq_owner_init(&quiet.reqs, 0);
    rreq_owner_init(&seeing.reqs, RREQ_SEE_SHUTDOWN);
    int released = 0;
    /* Not connected yet: both wait in rconn's queue. */
    assert_int_equal(send_incr(t, &quiet, &released), 0);
    assert_int_equal(send_incr(t, &seeing, &released), 0);
    rconn_free(t->rc);
    t->rc = NULL;
    assert_int_equal(released, 2);
    assert_int_equal(quiet.answers, 0);
    assert_int_equal(seeing.answers, 1);
    assert_int_equal(seeing.last_err, -SIMAP_ESHUTDOWN);
}

static int ownerless_answers;

static void on_ownerless(struct rreq *req, struct redisReply *reply, int err)
{
    (void)req;
    (void)reply;
    (void)err;
    ownerless_answers++;
}

static void test_request_without_owner_filters_only_the_shutdown(void **state)
{
    struct tctx *t = *state;
    struct rreq a, b;
    ownerless_answers = 0;
    rreq_start(&a, NULL, on_ownerless, NULL);
    assert_int_equal(rconn_command(t->rc, rreq_on_reply, &a, "PING"), 0);
    assert_true(run_until(t->loop, &ownerless_answers, 1, 5.0));
    rreq_start(&b, NULL, on_ownerless, NULL);
    assert_int_equal(rconn_command(t->rc, rreq_on_reply, &b, "PING"), 0);
    rconn_free(t->rc);
    t->rc = NULL;
    assert_int_equal(ownerless_answers, 1);
}

/* A callback that moves its owner on drops the answers still owed. */
static void on_answer_move_on(struct rreq *req, struct redisReply *reply, int err)
{
    on_answer(req, reply, err);
    rreq_owner_move_on(&call_of(req)->o->reqs);
}

static void test_callback_may_move_its_owner_on(void **state)
{
    struct tctx *t = *state;
    struct owner o = {0};
    rreq_owner_init(&o.reqs, 0);
    int released = 0;
    struct call *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->o = &o;
    c->released = &released;
    rreq_start(&c->req, &o.reqs, on_answer_move_on, release_call);
    assert_int_equal(rconn_command(t->rc, rreq_on_reply, &c->req, "INCR n"), 0);
    assert_int_equal(send_incr(t, &o, &released), 0);
    assert_true(run_until(t->loop, &released, 2, 5.0));
    assert_int_equal(o.answers, 1);
    assert_int_equal(o.last, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_init("test_rreq", "-", LL_WARN, LOG_FORMAT_TEXT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_reply_reaches_callback_once_then_release, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_answers_sent_before_move_on_are_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_owner_can_be_freed_before_its_answers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_releases_without_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_is_dropped_unless_the_owner_asks_for_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_without_owner_filters_only_the_shutdown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_callback_may_move_its_owner_on, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
