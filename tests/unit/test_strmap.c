/*
 * Unit tests of core/strmap: put, get, replace, delete, growth past many
 * doublings, iteration that visits every entry once, freeing values, and
 * keys that collide in a small table.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/strmap.h"

static void test_put_get_replace_and_delete(void **state)
{
    (void)state;
    struct strmap *m = strmap_new();
    int a = 1, b = 2, c = 3;
    assert_int_equal(strmap_size(m), 0);
    assert_null(strmap_get(m, "a"));
    assert_null(strmap_put(m, "a", &a));
    assert_null(strmap_put(m, "b", &b));
    assert_ptr_equal(strmap_get(m, "a"), &a);
    assert_ptr_equal(strmap_get(m, "b"), &b);
    assert_int_equal(strmap_size(m), 2);

    assert_ptr_equal(strmap_put(m, "a", &c), &a); /* replaced: old value back */
    assert_ptr_equal(strmap_get(m, "a"), &c);
    assert_int_equal(strmap_size(m), 2);

    assert_ptr_equal(strmap_del(m, "a"), &c);
    assert_null(strmap_get(m, "a"));
    assert_null(strmap_del(m, "a"));
    assert_int_equal(strmap_size(m), 1);
    assert_ptr_equal(strmap_get(m, "b"), &b);

    assert_null(strmap_put(m, "", &a)); /* the empty key is a key */
    assert_ptr_equal(strmap_get(m, ""), &a);
    strmap_free(m, NULL);
    strmap_free(NULL, NULL);
}

static void test_keys_are_copied(void **state)
{
    (void)state;
    struct strmap *m = strmap_new();
    char key[8] = "k1";
    int v = 7;
    strmap_put(m, key, &v);
    key[1] = '2';
    assert_ptr_equal(strmap_get(m, "k1"), &v);
    assert_null(strmap_get(m, "k2"));
    strmap_free(m, NULL);
}

struct visit {
    int seen[5000];
    size_t calls;
};

static void on_entry(const char *key, void *value, void *data)
{
    struct visit *v = data;
    int i = *(int *)value;
    char want[16];
    snprintf(want, sizeof want, "key-%d", i);
    assert_string_equal(key, want);
    v->seen[i]++;
    v->calls++;
}

static void test_grows_and_iterates_every_entry_once(void **state)
{
    (void)state;
    static int vals[5000];
    struct strmap *m = strmap_new();
    char key[16];
    for (int i = 0; i < 5000; i++) {
        vals[i] = i;
        snprintf(key, sizeof key, "key-%d", i);
        assert_null(strmap_put(m, key, &vals[i]));
    }
    assert_int_equal(strmap_size(m), 5000);
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_ptr_equal(strmap_get(m, key), &vals[i]);
    }
    static struct visit v;
    strmap_each(m, on_entry, &v);
    assert_int_equal(v.calls, 5000);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(v.seen[i], 1);

    /* Delete every other entry, from chains of every length. */
    for (int i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_ptr_equal(strmap_del(m, key), &vals[i]);
    }
    assert_int_equal(strmap_size(m), 2500);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        if (i % 2 == 0)
            assert_null(strmap_get(m, key));
        else
            assert_ptr_equal(strmap_get(m, key), &vals[i]);
    }
    strmap_free(m, NULL);
}

static void test_free_calls_free_value_for_each_value(void **state)
{
    (void)state;
    struct strmap *m = strmap_new();
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        char *v = xmalloc(8);
        strmap_put(m, key, v);
    }
    strmap_free(m, xfree); /* leak checkers (make check-asan, valgrind) verify */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace_and_delete),
        cmocka_unit_test(test_keys_are_copied),
        cmocka_unit_test(test_grows_and_iterates_every_entry_once),
        cmocka_unit_test(test_free_calls_free_value_for_each_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
