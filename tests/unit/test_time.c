/*
 * Unit tests of core/time.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/time.h"

static void test_iso_format_is_utc_with_milliseconds(void **state)
{
    (void)state;
    char out[TIME_ISO_LEN];
    assert_string_equal(time_format_iso(0, out), "1970-01-01T00:00:00.000Z");
    assert_string_equal(time_format_iso(1738324800123LL, out), "2025-01-31T12:00:00.123Z");
    assert_string_equal(time_format_iso(951782400999LL, out), "2000-02-29T00:00:00.999Z");
}

static void test_wall_clock_matches_time(void **state)
{
    (void)state;
    int64_t before = (int64_t)time(NULL) * 1000;
    int64_t now = time_now_ms();
    int64_t after = ((int64_t)time(NULL) + 1) * 1000;
    assert_true(now >= before && now <= after);
}

static void test_monotonic_never_goes_back(void **state)
{
    (void)state;
    int64_t prev = time_mono_ms();
    for (int i = 0; i < 100000; i++) {
        int64_t t = time_mono_ms();
        assert_true(t >= prev);
        prev = t;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso_format_is_utc_with_milliseconds),
        cmocka_unit_test(test_wall_clock_matches_time),
        cmocka_unit_test(test_monotonic_never_goes_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
