/*
 * Unit tests of core/buf and core/err.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"

static void test_append_keeps_nul_terminated(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(buf_puts(&b, "hello"), 0);
    assert_int_equal(buf_printf(&b, " %d", 42), 0);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "hello 42");
    buf_free(&b);
}

static void test_append_past_max_fails_and_leaves_buffer(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_puts(&b, "12345678"), 0);
    assert_int_equal(buf_puts(&b, "9"), -SIMAP_ETOOBIG);
    assert_int_equal(buf_printf(&b, "%s", "x"), -SIMAP_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    assert_true(b.cap <= 9);
    buf_free(&b);
}

static void test_huge_append_is_refused_before_allocating(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_append(&b, "x", (size_t)-1), -SIMAP_ETOOBIG);
    assert_null(buf_reserve(&b, (size_t)1 << 30));
    assert_null(b.data);
    buf_free(&b);
}

static void test_consume_moves_rest_down(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    buf_puts(&b, "abcdef");
    buf_consume(&b, 2);
    assert_string_equal(b.data, "cdef");
    buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    buf_shrink(&b);
    assert_null(b.data);
    buf_free(&b);
}

static void test_reserve_commit(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    char *p = buf_reserve(&b, 10);
    assert_non_null(p);
    memcpy(p, "0123", 4);
    buf_commit(&b, 4);
    assert_string_equal(b.data, "0123");
    char *s = buf_steal(&b);
    assert_string_equal(s, "0123");
    assert_null(b.data);
    xfree(s);
    s = buf_steal(&b);
    assert_string_equal(s, "");
    xfree(s);
}

static void test_err_str_covers_every_code(void **state)
{
    (void)state;
    for (int i = 0; i < SIMAP_ERR_MAX; i++) {
        assert_non_null(err_str(-i));
        assert_string_not_equal(err_str(-i), "unknown error");
    }
    assert_string_equal(err_str(-SIMAP_ETIMEDOUT), "timed out");
    assert_string_equal(err_str(SIMAP_ERR_MAX + 5), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_keeps_nul_terminated),
        cmocka_unit_test(test_append_past_max_fails_and_leaves_buffer),
        cmocka_unit_test(test_huge_append_is_refused_before_allocating),
        cmocka_unit_test(test_consume_moves_rest_down),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_err_str_covers_every_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
