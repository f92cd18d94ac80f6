/*
 * Unit tests of the dispatcher's circuit breaker (cmd/dispatcher/breaker.c,
 * compiled in here, as it belongs to the binary, not the library; its string
 * map is core/strmap): opening after consecutive failures, refusing with the time
 * to wait, one probe at a time, closing on success, the doubling and capped
 * open period, and failures of requests that started before it opened.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmd/dispatcher/breaker.c"

#define URL "https://receiver.example/hook"

static void test_opens_after_threshold_consecutive_failures(void **state)
{
    (void)state;
    struct breakers *b = breakers_new(3, 1000, 8000);
    int64_t wait = -1;
    assert_int_equal(breaker_allow(b, URL, 0, &wait), 1);
    breaker_record(b, URL, 0, 0);
    breaker_record(b, URL, 0, 1);
    assert_int_equal(breaker_state(b, URL), BREAKER_CLOSED);
    assert_int_equal(breaker_allow(b, URL, 2, &wait), 1);
    breaker_record(b, URL, 0, 2);
    assert_int_equal(breaker_state(b, URL), BREAKER_OPEN);
    assert_int_equal(breakers_count(b, BREAKER_OPEN), 1);
    assert_int_equal(breaker_allow(b, URL, 500, &wait), 0);
    assert_int_equal(wait, 502); /* opened at 2 for 1000 ms */
    /* Other URLs are not affected. */
    assert_int_equal(breaker_allow(b, "https://other.example/", 500, &wait), 1);
    breakers_free(b);
}

static void test_success_resets_the_failure_count(void **state)
{
    (void)state;
    struct breakers *b = breakers_new(3, 1000, 8000);
    breaker_record(b, URL, 0, 0);
    breaker_record(b, URL, 0, 0);
    breaker_record(b, URL, 1, 0);
    breaker_record(b, URL, 0, 0);
    breaker_record(b, URL, 0, 0);
    assert_int_equal(breaker_state(b, URL), BREAKER_CLOSED);
    breakers_free(b);
}

static void test_one_probe_after_the_period_then_closes_on_success(void **state)
{
    (void)state;
    struct breakers *b = breakers_new(1, 1000, 8000);
    breaker_record(b, URL, 0, 0);
    int64_t wait;
    assert_int_equal(breaker_allow(b, URL, 999, &wait), 0);
    assert_int_equal(breaker_allow(b, URL, 1000, &wait), 1); /* the probe */
    assert_int_equal(breaker_state(b, URL), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_allow(b, URL, 1001, &wait), 0); /* one probe at a time */
    assert_true(wait > 0);
    breaker_record(b, URL, 1, 1200);
    assert_int_equal(breaker_state(b, URL), BREAKER_CLOSED);
    assert_int_equal(breaker_allow(b, URL, 1201, &wait), 1);
    assert_int_equal(breakers_count(b, BREAKER_CLOSED), 1);
    assert_int_equal(breakers_count(b, BREAKER_HALF_OPEN), 0);
    breakers_free(b);
}

static void test_failed_probe_doubles_period_up_to_cap(void **state)
{
    (void)state;
    struct breakers *b = breakers_new(1, 1000, 3000);
    breaker_record(b, URL, 0, 0);
    int64_t now = 0, wait;
    static const int64_t want[] = {2000, 3000, 3000};
    for (int i = 0; i < 3; i++) {
        int64_t period = i == 0 ? 1000 : want[i - 1];
        now += period;
        assert_int_equal(breaker_allow(b, URL, now, &wait), 1);
        breaker_record(b, URL, 0, now); /* probe fails */
        assert_int_equal(breaker_state(b, URL), BREAKER_OPEN);
        assert_int_equal(breaker_allow(b, URL, now, &wait), 0);
        assert_int_equal(wait, want[i]);
    }
    /* A success resets the period to its base. */
    now += 3000;
    assert_int_equal(breaker_allow(b, URL, now, &wait), 1);
    breaker_record(b, URL, 1, now);
    breaker_record(b, URL, 0, now);
    assert_int_equal(breaker_allow(b, URL, now, &wait), 0);
    assert_int_equal(wait, 1000);
    breakers_free(b);
}

static void test_late_failures_while_open_change_nothing(void **state)
{
    (void)state;
    struct breakers *b = breakers_new(1, 1000, 8000);
    breaker_record(b, URL, 0, 0);
    breaker_record(b, URL, 0, 500); /* a request that started before it opened */
    int64_t wait;
    assert_int_equal(breaker_allow(b, URL, 999, &wait), 0);
    assert_int_equal(wait, 1);
    assert_int_equal(breaker_allow(b, URL, 1000, &wait), 1);
    assert_string_equal(breaker_state_str(BREAKER_HALF_OPEN), "half_open");
    breakers_free(b);
}

/* What the change hook saw, in order. */
struct seen {
    int n;
    enum breaker_state state[8];
    int failures[8];
    int64_t opened_at[8], until[8];
};

static void on_change(const struct breaker_change *c, void *data)
{
    struct seen *s = data;
    assert_string_equal(c->url, URL);
    assert_true(s->n < 8);
    s->state[s->n] = c->state;
    s->failures[s->n] = c->failures;
    s->opened_at[s->n] = c->opened_at;
    s->until[s->n] = c->open_until;
    s->n++;
}

/* Every transition, and only transitions, reaches the hook (the dispatcher
 * publishes them to si:circuit:*): open with the failures and the period's
 * end, half-open at the probe, open again with the doubled period, closed. */
static void test_change_hook_sees_every_transition(void **state)
{
    (void)state;
    struct breakers *b = breakers_new(2, 1000, 8000);
    struct seen s = {0};
    breakers_on_change(b, on_change, &s);
    int64_t wait;
    breaker_record(b, URL, 0, 10);
    assert_int_equal(s.n, 0); /* one failure: still closed, nothing to tell */
    breaker_record(b, URL, 0, 20);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.state[0], BREAKER_OPEN);
    assert_int_equal(s.failures[0], 2);
    assert_int_equal(s.opened_at[0], 20);
    assert_int_equal(s.until[0], 1020);
    assert_int_equal(breaker_allow(b, URL, 500, &wait), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(breaker_allow(b, URL, 1020, &wait), 1);
    assert_int_equal(s.state[1], BREAKER_HALF_OPEN);
    breaker_record(b, URL, 0, 1100);
    assert_int_equal(s.state[2], BREAKER_OPEN);
    assert_int_equal(s.until[2], 3100);
    assert_int_equal(breaker_allow(b, URL, 3100, &wait), 1);
    breaker_record(b, URL, 1, 3200);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.state[4], BREAKER_CLOSED);
    assert_int_equal(s.failures[4], 0);
    breaker_record(b, URL, 1, 3300);
    assert_int_equal(s.n, 5); /* closed stays closed: no change */
    breakers_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_threshold_consecutive_failures),
        cmocka_unit_test(test_success_resets_the_failure_count),
        cmocka_unit_test(test_one_probe_after_the_period_then_closes_on_success),
        cmocka_unit_test(test_failed_probe_doubles_period_up_to_cap),
        cmocka_unit_test(test_late_failures_while_open_change_nothing),
        cmocka_unit_test(test_change_hook_sees_every_transition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
