/*
 * core/lease: lease_acquire's answers decoded, and acquire,
 * release, fence and drain under real incarnations against a real
 * redis-server (tests/unit/redis_fixture.h).
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
#include "core/incarnation.h"
#include "core/lease.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/scripts.h"
#include "tests/unit/loop_fixture.h"
#include "tests/unit/redis_fixture.h"

/* ---- Decoding, keys ---- */

static void test_answer_of_decodes_one_zero_minus_one(void **state)
{
    (void)state;
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    assert_int_equal(lease_answer_of(&r, 0), LEASE_ACQUIRED);
    r.integer = 0;
    assert_int_equal(lease_answer_of(&r, 0), LEASE_BUSY);
    r.integer = -1;
    assert_int_equal(lease_answer_of(&r, 0), LEASE_FENCED);
}

static void test_answer_of_anything_else_is_a_failure(void **state)
{
    (void)state;
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = 2};
    assert_int_equal(lease_answer_of(&r, 0), LEASE_FAILED);
    r.integer = -2;
    assert_int_equal(lease_answer_of(&r, 0), LEASE_FAILED);
    r.integer = 1;
    assert_int_equal(lease_answer_of(&r, -SIMAP_ETIMEDOUT), LEASE_FAILED);
    assert_int_equal(lease_answer_of(NULL, 0), LEASE_FAILED);
    char text[] = "1";
    redisReply s = {.type = REDIS_REPLY_STRING, .str = text, .len = 1};
    assert_int_equal(lease_answer_of(&s, 0), LEASE_FAILED);
    char err[] = "NOSCRIPT";
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = err, .len = 8};
    assert_int_equal(lease_answer_of(&e, 0), LEASE_FAILED);
}

/* ---- Against Redis ---- */

struct tctx {
    struct redis_fixture fx;
    struct ev_loop *loop;
    struct rconn *rc;
};

struct counts {
    int live;
    int fenced;
    int replies;
    int retired;
    enum lease_answer last;
    long long last_int;
};

static void on_live(struct incarnation *inc, void *data)
{
    (void)inc;
    ((struct counts *)data)->live++;
}

static void on_fenced(struct incarnation *inc, const char *why, void *data)
{
    (void)inc;
    (void)why;
    ((struct counts *)data)->fenced++;
}

static void on_reply(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct counts *c = privdata;
    c->last = lease_answer_of(reply, err);
    c->last_int =
        err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -100;
    c->replies++;
}

static void on_retired(void *data)
{
    ((struct counts *)data)->retired++;
}

static void on_loaded(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    if (err == 0)
        (*(int *)privdata)++;
}

static int setup(void **state)
{
    struct tctx *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    *state = t;
    int loaded = 0;
    if (loop_rconn_open(&t->fx, &t->loop, &t->rc) < 0 ||
        rconn_load_scripts(t->rc, on_loaded, &loaded) < 0 || !run_until(t->loop, &loaded, 1, 5.0))
        return -1;
    return 0;
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

static struct incarnation *live_incarnation(struct tctx *t, const char *node, struct counts *c)
{
    struct incarnation_hooks h = {.on_live = on_live, .on_fenced = on_fenced, .data = c};
    struct incarnation *inc = incarnation_new(t->loop, t->rc, node, 4, &h);
    assert_non_null(inc);
    incarnation_start(inc);
    assert_true(run_until(t->loop, &c->live, 1, 5.0));
    assert_true(incarnation_is_live(inc));
    return inc;
}

static enum lease_answer acquire(struct tctx *t, struct incarnation *inc, uint32_t k,
                                 const char *key, struct counts *c)
{
    int want = c->replies + 1;
    assert_int_equal(lease_acquire(t->rc, inc, k, key, on_reply, c), 0);
    assert_true(run_until(t->loop, &c->replies, want, 5.0));
    return c->last;
}

static void test_acquire_busy_release_against_redis(void **state)
{
    struct tctx *t = *state;
    struct counts a = {0}, b = {0};
    struct incarnation *ia = live_incarnation(t, "na", &a);
    struct incarnation *ib = live_incarnation(t, "nb", &b);
    char key[SCHEMA_KEY_MAX];
    schema_key_lease(key, 2, "u1");
    assert_int_equal(acquire(t, ia, 2, key, &a), LEASE_ACQUIRED);
    assert_int_equal(acquire(t, ia, 2, key, &a), LEASE_ACQUIRED); /* ours already */
    assert_int_equal(acquire(t, ib, 2, key, &b), LEASE_BUSY);

    /* Not ours: left alone. */
    int want = b.replies + 1;
    assert_int_equal(lease_release(t->rc, ib, key, on_reply, &b), 0);
    assert_true(run_until(t->loop, &b.replies, want, 5.0));
    assert_int_equal(b.last_int, 0);
    assert_int_equal(redis_fixture_int(&t->fx, "EXISTS %s", key), 1);

    want = a.replies + 1;
    assert_int_equal(lease_release(t->rc, ia, key, on_reply, &a), 0);
    assert_true(run_until(t->loop, &a.replies, want, 5.0));
    assert_int_equal(a.last_int, 1);
    assert_int_equal(redis_fixture_int(&t->fx, "EXISTS %s", key), 0);
    assert_int_equal(acquire(t, ib, 2, key, &b), LEASE_ACQUIRED);
    incarnation_free(ia);
    incarnation_free(ib);
}

static void test_fenced_when_our_alive_key_is_gone(void **state)
{
    struct tctx *t = *state;
    struct counts a = {0};
    struct incarnation *ia = live_incarnation(t, "na", &a);
    char key[SCHEMA_SHARD_KEY_MAX], alive[128];
    schema_key_owner(key, 3);
    incarnation_alive_key(ia, 3, alive, sizeof alive);
    assert_int_equal(redis_fixture_int(&t->fx, "DEL %s", alive), 1);
    assert_int_equal(acquire(t, ia, 3, key, &a), LEASE_FENCED);
    uint64_t gen = incarnation_generation(ia);
    lease_fence(ia, gen);
    assert_int_equal(a.fenced, 1);
    assert_false(incarnation_is_live(ia) && incarnation_generation(ia) == gen);
    incarnation_free(ia);
}

static void test_drain_releases_then_retires(void **state)
{
    struct tctx *t = *state;
    struct counts a = {0};
    struct incarnation *ia = live_incarnation(t, "na", &a);
    char k1[SCHEMA_KEY_MAX], k2[SCHEMA_KEY_MAX], alive[128];
    schema_key_lease(k1, 0, "u1");
    schema_key_lease(k2, 1, "u2");
    assert_int_equal(acquire(t, ia, 0, k1, &a), LEASE_ACQUIRED);
    assert_int_equal(acquire(t, ia, 1, k2, &a), LEASE_ACQUIRED);
    incarnation_alive_key(ia, 1, alive, sizeof alive);
    assert_int_equal(redis_fixture_int(&t->fx, "EXISTS %s", alive), 1);

    struct lease_drain *dr = lease_drain_start(ia, on_retired, &a);
    assert_int_equal(lease_drain_release(dr, t->rc, k1), 0);
    assert_int_equal(lease_drain_release(dr, t->rc, k2), 0);
    lease_drain_finish(dr);
    assert_int_equal(a.retired, 0); /* never from inside the call */
    assert_true(run_until(t->loop, &a.retired, 1, 5.0));
    assert_int_equal(redis_fixture_int(&t->fx, "EXISTS %s %s", k1, k2), 0);
    assert_int_equal(redis_fixture_int(&t->fx, "EXISTS %s", alive), 0);
    incarnation_free(ia);
}

static void test_drain_with_nothing_held_retires_from_the_loop(void **state)
{
    struct tctx *t = *state;
    struct counts a = {0};
    struct incarnation *ia = live_incarnation(t, "na", &a);
    lease_drain_finish(lease_drain_start(ia, on_retired, &a));
    assert_int_equal(a.retired, 0);
    assert_true(run_until(t->loop, &a.retired, 1, 5.0));
    incarnation_free(ia);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_init("test_lease", "-", LL_ERROR, LOG_FORMAT_TEXT, NULL, NULL);
    if (scripts_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_of_decodes_one_zero_minus_one),
        cmocka_unit_test(test_answer_of_anything_else_is_a_failure),
        cmocka_unit_test_setup_teardown(test_acquire_busy_release_against_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_when_our_alive_key_is_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_releases_then_retires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_with_nothing_held_retires_from_the_loop, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    scripts_shutdown();
    log_shutdown();
    return rc;
}
