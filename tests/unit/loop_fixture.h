/*
 * tests/unit/loop_fixture.h: for the unit tests of the asynchronous clients
 * (core/rconn, core/rreq, core/fleet, core/lease): a private redis-server
 * with a libev loop and an rconn on it, and running the loop until a test's
 * callbacks have counted enough, with a deadline. Header-only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_UNIT_LOOP_FIXTURE_H
#define TESTS_UNIT_LOOP_FIXTURE_H

#include <ev.h>

#include "core/rconn.h"
#include "tests/unit/redis_fixture.h"

static void loop_fixture_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    *(int *)w->data = 1;
}

/* Runs the loop until *counter >= target or seconds pass; 1 if reached. */
static __attribute__((unused)) int run_until(struct ev_loop *loop, const int *counter, int target,
                                             double seconds)
{
    int expired = 0;
    ev_timer t;
    ev_timer_init(&t, loop_fixture_deadline, seconds, 0.);
    t.data = &expired;
    ev_timer_start(loop, &t);
    while (*counter < target && !expired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return *counter >= target;
}

/* Starts fx's redis-server, a new loop and an rconn named "test" on it.
 * Returns 0, or -1 with whatever was made left for loop_rconn_close(). */
static __attribute__((unused)) int loop_rconn_open(struct redis_fixture *fx, struct ev_loop **loop,
                                                   struct rconn **rc)
{
    *loop = NULL;
    *rc = NULL;
    if (redis_fixture_start(fx, NULL) < 0)
        return -1;
    *loop = ev_loop_new(EVFLAG_AUTO);
    struct rconn_opts o = {.url = fx->url, .name = "test"};
    *rc = *loop != NULL ? rconn_new(*loop, &o) : NULL;
    return *rc != NULL ? 0 : -1;
}

/* Frees what loop_rconn_open() made, letting the loop run the rconn's last
 * callbacks, and stops the server. */
static __attribute__((unused)) void loop_rconn_close(struct redis_fixture *fx, struct ev_loop *loop,
                                                     struct rconn *rc)
{
    rconn_free(rc);
    if (loop != NULL) {
        ev_run(loop, EVRUN_NOWAIT);
        ev_loop_destroy(loop);
    }
    redis_fixture_stop(fx);
}

#endif
