/*
 * Unit tests of core/offload: a job runs on another thread and its done on
 * the loop's, never inside offload_run(); one job at a time; offload_free()
 * before the done hands the job back without calling done (the ASan build
 * checks nothing leaks).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <pthread.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/offload.h"
#include "tests/unit/loop_fixture.h"

struct job {
    pthread_t ran_on;
    uint64_t n, sum;
};

static int dones;
static pthread_t done_on;
static struct job *done_job;

static void work(void *arg)
{
    struct job *j = arg;
    j->ran_on = pthread_self();
    for (uint64_t i = 1; i <= j->n; i++)
        j->sum += i;
}

static void done(void *job, void *data)
{
    assert_ptr_equal(data, &dones);
    dones++;
    done_on = pthread_self();
    done_job = job;
}

static void reset(void)
{
    dones = 0;
    done_job = NULL;
}

static void test_job_runs_on_a_thread_and_done_on_the_loop(void **state)
{
    (void)state;
    reset();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct offload *o = offload_new(loop, done, &dones);
    struct job j = {.n = 1000000};
    assert_int_equal(offload_run(o, work, &j), 0);
    assert_int_equal(dones, 0); /* never inside offload_run() */
    assert_true(offload_busy(o));
    assert_true(run_until(loop, &dones, 1, 10.0));
    assert_int_equal(dones, 1);
    assert_ptr_equal(done_job, &j);
    assert_true(j.sum == 1000000ULL * 1000001ULL / 2);
    assert_false(pthread_equal(j.ran_on, pthread_self()));
    assert_true(pthread_equal(done_on, pthread_self()));
    assert_false(offload_busy(o));
    assert_null(offload_free(o));
    ev_loop_destroy(loop);
}

static void test_one_job_at_a_time_until_its_done(void **state)
{
    (void)state;
    reset();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct offload *o = offload_new(loop, done, &dones);
    struct job a = {.n = 10}, b = {.n = 20};
    assert_int_equal(offload_run(o, work, &a), 0);
    /* Refused even once the thread finished: the done has not run yet. */
    assert_int_equal(offload_run(o, work, &b), -SIMAP_ESTATE);
    assert_true(run_until(loop, &dones, 1, 10.0));
    assert_ptr_equal(done_job, &a);
    assert_int_equal(offload_run(o, work, &b), 0);
    assert_true(run_until(loop, &dones, 2, 10.0));
    assert_ptr_equal(done_job, &b);
    assert_true(a.sum == 55 && b.sum == 210);
    assert_null(offload_free(o));
    ev_loop_destroy(loop);
}

static void test_free_before_the_done_hands_the_job_back(void **state)
{
    (void)state;
    reset();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct offload *o = offload_new(loop, done, &dones);
    struct job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->n = 5000000;
    assert_int_equal(offload_run(o, work, j), 0);
    struct job *back = offload_free(o); /* waits for the thread */
    assert_ptr_equal(back, j);
    assert_true(back->sum == 5000000ULL * 5000001ULL / 2);
    assert_int_equal(dones, 0);
    free(back);
    ev_run(loop, EVRUN_NOWAIT); /* nothing of the offload is left to run */
    assert_int_equal(dones, 0);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_runs_on_a_thread_and_done_on_the_loop),
        cmocka_unit_test(test_one_job_at_a_time_until_its_done),
        cmocka_unit_test(test_free_before_the_done_hands_the_job_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
