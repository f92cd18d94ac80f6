/*
 * Unit tests of cmd/import/values: psql's timestamps (fractions, offsets,
 * leap days, impossible dates), ids, UIDs up to 2^32 - 1, codes and the
 * original's OAuth2 endpoints.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/import/values.c"

static void expect_time(const char *in, const char *want)
{
    char out[24];
    if (want == NULL) {
        assert_int_equal(values_parse_time(in, out), -1);
    } else {
        assert_int_equal(values_parse_time(in, out), 0);
        assert_string_equal(out, want);
    }
}

static void test_timestamps_as_psql_writes_them(void **state)
{
    (void)state;
    expect_time("", "");
    expect_time("1970-01-01 00:00:00", "0");
    expect_time("2015-06-11 13:42:34", "1434030154000");
    expect_time("2015-06-11 13:42:34.5", "1434030154500");
    expect_time("2015-06-11 13:42:34.123456", "1434030154123");
    expect_time("2015-06-11 15:42:34+02", "1434030154000");
    expect_time("2015-06-11 09:12:34.5-04:30", "1434030154500");
    expect_time("2016-02-29 00:00:00", "1456704000000");
}

static void test_impossible_timestamps_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"yesterday",
                                      "2015-06-11",
                                      "2015-06-11T13:42:34",
                                      "2015-13-01 00:00:00",
                                      "2015-02-29 00:00:00",
                                      "2015-04-31 00:00:00",
                                      "2015-06-11 24:00:00",
                                      "2015-06-11 13:42:34.",
                                      "2015-06-11 13:42:34+2",
                                      "2015-06-11 13:42:34 UTC",
                                      "1969-12-31 23:59:59",
                                      "2015-06-11 13:42:34+02:3",
                                      "+015-06-11 13:42:34",
                                      "2015-06-11 13:42:34+0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_time(bad[i], NULL);
}

static void test_ids_uids_and_codes(void **state)
{
    (void)state;
    assert_true(values_is_id("1"));
    assert_true(values_is_id("123456789012345678"));
    assert_false(values_is_id("0"));
    assert_false(values_is_id("01"));
    assert_false(values_is_id("-1"));
    assert_false(values_is_id("1234567890123456789"));
    assert_false(values_is_id(""));
    uint64_t v;
    assert_int_equal(values_parse_u32("4294967295", 0, UINT32_MAX, &v), 0);
    assert_true(v == 4294967295u);
    assert_int_equal(values_parse_u32("3000000000", 0, UINT32_MAX, &v), 0);
    assert_true(v == 3000000000u);
    assert_int_equal(values_parse_u32("4294967296", 0, UINT32_MAX, &v), -1);
    assert_int_equal(values_parse_u32("0", 1, UINT32_MAX, &v), -1);
    assert_int_equal(values_parse_u32("-5", 0, UINT32_MAX, &v), -1);
    assert_int_equal(values_parse_u32(" 5", 0, UINT32_MAX, &v), -1);
    assert_true(values_is_code("GMAIL_OAUTH2"));
    assert_false(values_is_code("GMAIL OAUTH2"));
    assert_false(values_is_code(""));
    assert_true(values_is_host("smtp.gmail.com"));
    assert_true(values_is_host("::1"));
    assert_false(values_is_host("smtp gmail"));
    assert_false(values_is_host(""));
    assert_true(values_is_true("t"));
    assert_false(values_is_true("f"));
    assert_false(values_is_true(""));
    assert_true(values_has_control("a\nb"));
    assert_false(values_has_control("a b\xc3\xa9"));
}

static void test_oauth2_endpoints_join_the_site(void **state)
{
    (void)state;
    char out[VALUES_URL_MAX + 1];
    values_join_url("https://accounts.google.com", "/o/oauth2/auth", out);
    assert_string_equal(out, "https://accounts.google.com/o/oauth2/auth");
    values_join_url("https://accounts.google.com/", "/o/oauth2/token", out);
    assert_string_equal(out, "https://accounts.google.com/o/oauth2/token");
    values_join_url("https://accounts.google.com", "https://other.example/token", out);
    assert_string_equal(out, "https://other.example/token");
    values_join_url("", "/o/oauth2/auth", out);
    assert_string_equal(out, "/o/oauth2/auth");
    char low[8];
    values_lower("ALICE@Example.COM", low, sizeof low);
    assert_string_equal(low, "alice@e");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamps_as_psql_writes_them),
        cmocka_unit_test(test_impossible_timestamps_are_refused),
        cmocka_unit_test(test_ids_uids_and_codes),
        cmocka_unit_test(test_oauth2_endpoints_join_the_site),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
