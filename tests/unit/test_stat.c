/*
 * Unit tests of core/stat: the latency buckets of the chart counters and
 * the p50/p99 estimate from a minute's (or several minutes' summed) bucket
 * counts.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/stat.h"

static void test_bucket_bounds_are_inclusive(void **state)
{
    (void)state;
    assert_int_equal(stat_bucket(0), 0);
    assert_int_equal(stat_bucket(5), 0);
    assert_int_equal(stat_bucket(6), 1);
    assert_int_equal(stat_bucket(100), 4);
    assert_int_equal(stat_bucket(101), 5);
    assert_int_equal(stat_bucket(60000), STAT_NBOUNDS - 1);
    assert_int_equal(stat_bucket(60001), STAT_NBOUNDS);
    assert_int_equal(stat_bucket(INT64_MAX), STAT_NBOUNDS);
}

static void test_field_names_round_trip(void **state)
{
    (void)state;
    assert_string_equal(stat_bucket_field(0), "lat_5");
    assert_string_equal(stat_bucket_field(4), "lat_100");
    assert_string_equal(stat_bucket_field(STAT_NBOUNDS), "lat_inf");
    for (int i = 0; i < STAT_NBUCKETS; i++)
        assert_int_equal(stat_bucket_of_field(stat_bucket_field(i)), i);
    assert_int_equal(stat_bucket_of_field("delivered"), -1);
    assert_int_equal(stat_bucket_of_field("lat_7"), -1);
}

static void test_minute_of_ms(void **state)
{
    (void)state;
    assert_int_equal(stat_minute(0), 0);
    assert_int_equal(stat_minute(59999), 0);
    assert_int_equal(stat_minute(60000), 1);
    assert_int_equal(stat_minute(1700000000000), 28333333);
}

static void test_quantile_of_nothing_is_unknown(void **state)
{
    (void)state;
    long long c[STAT_NBUCKETS] = {0};
    assert_true(stat_quantile(c, 0.5) < 0);
}

/* 100 latencies in lat_100 (50, 100]: rank 50 is halfway, 75 ms; rank 99
 * is 99 %, 99.5 ms. */
static void test_quantile_interpolates_within_the_bucket(void **state)
{
    (void)state;
    long long c[STAT_NBUCKETS] = {0};
    c[stat_bucket(80)] = 100;
    assert_true(stat_quantile(c, 0.5) > 74.999 && stat_quantile(c, 0.5) < 75.001);
    assert_true(stat_quantile(c, 0.99) > 99.499 && stat_quantile(c, 0.99) < 99.501);
}

/* 90 fast (<= 5 ms) and 10 slow (250, 500]: p50 in the first bucket
 * (2.78 ms), p99 in the slow one: rank 99 is the 9th of 10 there, 475 ms. */
static void test_quantile_across_buckets(void **state)
{
    (void)state;
    long long c[STAT_NBUCKETS] = {0};
    c[0] = 90;
    c[stat_bucket(300)] = 10;
    double p50 = stat_quantile(c, 0.5), p99 = stat_quantile(c, 0.99);
    assert_true(p50 > 2.777 && p50 < 2.778);
    assert_true(p99 > 474.999 && p99 < 475.001);
}

/* Summing the buckets of two minutes gives the quantile of both together. */
static void test_quantile_of_summed_minutes(void **state)
{
    (void)state;
    long long a[STAT_NBUCKETS] = {0}, b[STAT_NBUCKETS] = {0}, sum[STAT_NBUCKETS];
    a[stat_bucket(20)] = 50;   /* (10, 25] */
    b[stat_bucket(2000)] = 50; /* (1000, 2500] */
    for (int i = 0; i < STAT_NBUCKETS; i++)
        sum[i] = a[i] + b[i];
    assert_true(stat_quantile(sum, 0.5) > 24.999 && stat_quantile(sum, 0.5) < 25.001);
    assert_true(stat_quantile(sum, 0.99) > 2469.999 && stat_quantile(sum, 0.99) < 2470.001);
}

/* Ranks beyond the last bound report the last bound, not infinity. */
static void test_quantile_in_the_open_bucket_is_the_last_bound(void **state)
{
    (void)state;
    long long c[STAT_NBUCKETS] = {0};
    c[STAT_NBOUNDS] = 3;
    assert_true(stat_quantile(c, 0.5) == (double)stat_bounds_ms[STAT_NBOUNDS - 1]);
    c[0] = -5; /* a corrupt negative count is ignored */
    assert_true(stat_quantile(c, 0.99) == (double)stat_bounds_ms[STAT_NBOUNDS - 1]);
}

/* The stat_add.lua arguments: the minute's key, the TTL, the pairs, and
 * no more pairs than there is room for. */
static void test_call_arguments(void **state)
{
    (void)state;
    struct stat_call c;
    stat_call_init(&c, 1700000000000);
    stat_call_add(&c, STAT_DELIVERED, 1);
    stat_call_add(&c, stat_bucket_field(stat_bucket(42)), 1);
    assert_int_equal(c.argc, 6);
    assert_string_equal(c.argv[0], "si:stat:28333333");
    assert_string_equal(c.argv[1], "172800");
    assert_string_equal(c.argv[2], "delivered");
    assert_string_equal(c.argv[3], "1");
    assert_string_equal(c.argv[4], "lat_50");
    for (int i = 0; i < STAT_CALL_MAX; i++)
        stat_call_add(&c, STAT_FAILED, 2);
    assert_int_equal(c.argc, 2 + 2 * STAT_CALL_MAX);
    assert_string_equal(c.argv[c.argc - 1], "2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bounds_are_inclusive),
        cmocka_unit_test(test_field_names_round_trip),
        cmocka_unit_test(test_minute_of_ms),
        cmocka_unit_test(test_quantile_of_nothing_is_unknown),
        cmocka_unit_test(test_quantile_interpolates_within_the_bucket),
        cmocka_unit_test(test_quantile_across_buckets),
        cmocka_unit_test(test_quantile_of_summed_minutes),
        cmocka_unit_test(test_quantile_in_the_open_bucket_is_the_last_bound),
        cmocka_unit_test(test_call_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
