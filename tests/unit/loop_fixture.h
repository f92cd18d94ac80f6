/*
 * tests/unit/loop_fixture.h: running a libev loop until a test's callbacks
 * have counted enough, with a deadline, for the unit tests of the
 * asynchronous clients (core/rconn, core/fleet, core/lease). Header-only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_UNIT_LOOP_FIXTURE_H
#define TESTS_UNIT_LOOP_FIXTURE_H

#include <ev.h>

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

#endif
