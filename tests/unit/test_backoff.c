/*
 * Unit tests of core/backoff: the capped doubling window, full jitter taken
 * from the random argument, reset, and no overflow however long it runs.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/backoff.h"

static void test_window_doubles_from_base_until_cap(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 1000, 300000);
    int64_t want = 1000;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(backoff_ceiling(&b), want);
        /* random == ceiling is the largest delay the window allows. */
        assert_int_equal(backoff_next(&b, (uint64_t)want), want);
        assert_int_equal(b.attempt, i + 1);
        want = want * 2 > 300000 ? 300000 : want * 2;
    }
    assert_int_equal(backoff_ceiling(&b), 300000);
}

static void test_delay_is_random_reduced_into_window(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 1000, 300000);
    assert_int_equal(backoff_next(&b, 0), 0);    /* window [0, 1000] */
    assert_int_equal(backoff_next(&b, 2001), 0); /* window [0, 2000] */
    assert_int_equal(backoff_next(&b, 12345), 12345 % 4001);
    assert_int_equal(backoff_next(&b, UINT64_MAX), (int64_t)(UINT64_MAX % 8001));

    /* Every delay of a long run stays inside the window of its attempt. */
    uint64_t s = 0x2545f4914f6cdd1dULL;
    backoff_reset(&b);
    for (int i = 0; i < 200; i++) {
        int64_t ceiling = backoff_ceiling(&b);
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int64_t d = backoff_next(&b, s);
        assert_in_range(d, 0, ceiling);
    }
}

static void test_reset_returns_to_base_window(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 250, 60000);
    for (int i = 0; i < 10; i++)
        backoff_next(&b, 0);
    assert_int_equal(backoff_ceiling(&b), 60000);
    backoff_reset(&b);
    assert_int_equal(b.attempt, 0);
    assert_int_equal(backoff_ceiling(&b), 250);
    assert_int_equal(backoff_next(&b, 250), 250);
    assert_int_equal(backoff_next(&b, 501), 0);
}

static void test_no_overflow_after_1000_attempts(void **state)
{
    (void)state;
    /* Built with -fsanitize=undefined, any signed overflow or bad shift here
     * aborts the test. */
    const int64_t bases[] = {1, 1000, INT64_MAX / 3, INT64_MAX - 1, INT64_MAX};
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        struct backoff b;
        backoff_init(&b, bases[i], INT64_MAX);
        int64_t want = bases[i]; /* doubled with saturation, independently */
        for (int a = 0; a < 1000; a++) {
            assert_true(backoff_ceiling(&b) == want);
            assert_true(backoff_next(&b, (uint64_t)want) == want);
            want = want > INT64_MAX / 2 ? INT64_MAX : want * 2;
        }
        assert_int_equal(b.attempt, 1000);
        assert_true(backoff_ceiling(&b) == INT64_MAX);
        for (int a = 0; a < 1000; a++) {
            int64_t d = backoff_next(&b, UINT64_MAX - (uint64_t)a);
            assert_true(d >= 0);
        }
        assert_int_equal(b.attempt, 2000);
    }
}

static void test_attempt_counter_saturates(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 100, 1000);
    b.attempt = UINT32_MAX - 1; /* as if it had failed for ever */
    assert_int_equal(backoff_next(&b, 1000), 1000);
    assert_int_equal(b.attempt, UINT32_MAX);
    assert_int_equal(backoff_next(&b, 1000), 1000);
    assert_int_equal(b.attempt, UINT32_MAX);
}

static void test_cap_below_base_caps_every_delay(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 5000, 1000);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(backoff_ceiling(&b), 1000);
        assert_int_equal(backoff_next(&b, 1000), 1000);
    }
}

static void test_zero_or_negative_settings_give_zero_delay(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 0, 1000);
    for (int i = 0; i < 70; i++)
        assert_int_equal(backoff_next(&b, UINT64_MAX), 0);
    backoff_init(&b, -5, -7);
    assert_int_equal(b.base_ms, 0);
    assert_int_equal(b.cap_ms, 0);
    assert_int_equal(backoff_next(&b, 12345), 0);
    backoff_init(&b, 100, -1);
    assert_int_equal(backoff_next(&b, 12345), 0);
}

static void test_next_rand_stays_in_window_and_spreads(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 1000, 300000);
    int64_t min = INT64_MAX, max = -1, sum = 0;
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        backoff_reset(&b);
        int64_t d = backoff_next_rand(&b);
        assert_in_range(d, 0, 1000);
        min = d < min ? d : min;
        max = d > max ? d : max;
        sum += d;
    }
    /* Uniform on [0, 1000]: the mean's standard deviation is about 6.5, so
     * these bounds fail only if the draws are not spread over the window. */
    assert_in_range(sum / n, 400, 600);
    assert_true(min < 100);
    assert_true(max > 900);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_doubles_from_base_until_cap),
        cmocka_unit_test(test_delay_is_random_reduced_into_window),
        cmocka_unit_test(test_reset_returns_to_base_window),
        cmocka_unit_test(test_no_overflow_after_1000_attempts),
        cmocka_unit_test(test_attempt_counter_saturates),
        cmocka_unit_test(test_cap_below_base_caps_every_delay),
        cmocka_unit_test(test_zero_or_negative_settings_give_zero_delay),
        cmocka_unit_test(test_next_rand_stays_in_window_and_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
