/*
 * Unit tests of proto/civil: days from civil dates against known Unix days
 * (the epoch, leap days, century rules, dates before 1970).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proto/civil.h"

static void test_days_match_known_dates(void **state)
{
    (void)state;
    assert_int_equal(civil_days_from(1970, 1, 1), 0);
    assert_int_equal(civil_days_from(1970, 1, 2), 1);
    assert_int_equal(civil_days_from(1969, 12, 31), -1);
    assert_int_equal(civil_days_from(2000, 2, 29), 11016);
    assert_int_equal(civil_days_from(2000, 3, 1), 11017);
    assert_int_equal(civil_days_from(2015, 6, 11), 16597); /* 1434000000 / 86400 */
    assert_int_equal(civil_days_from(2100, 3, 1) - civil_days_from(2100, 2, 28), 1);
    assert_int_equal(civil_days_from(2038, 1, 19), 24855); /* 2^31 s falls on it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_match_known_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
