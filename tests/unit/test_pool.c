/*
 * Unit tests of core/pool: objects are zeroed, aligned and never overlap;
 * one class fills its blocks side by side (what keeps idle sessions' pages
 * dense); a released object is the next one of its class and comes back
 * zeroed; objects over POOL_MAX are ordinary allocations; the count of
 * objects out. Under
 * AddressSanitizer the pool hands out ordinary allocations (pool.h), so the
 * checks of block use are skipped there and the rest still run.
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
#include "core/pool.h"

#define N 500

/* 1 when the pool carves blocks (not an AddressSanitizer build). */
static int pooled(struct pool *p)
{
    void *o = pool_alloc(p, 8);
    int yes = pool_block_bytes(p) > 0;
    pool_release(p, o, 8);
    return yes;
}

static void test_objects_are_zeroed_aligned_and_apart(void **state)
{
    (void)state;
    struct pool *p = pool_new();
    assert_int_equal(pool_block_bytes(p), 0);
    static const size_t sizes[] = {1, 15, 16, 17, 56, 105, 617, 1000, POOL_MAX, POOL_MAX + 1, 5000};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    unsigned char *o[NS][20];
    for (size_t i = 0; i < NS; i++) {
        for (int j = 0; j < 20; j++) {
            o[i][j] = pool_alloc(p, sizes[i]);
            assert_non_null(o[i][j]);
            assert_int_equal((uintptr_t)o[i][j] % _Alignof(max_align_t), 0);
            for (size_t b = 0; b < sizes[i]; b++)
                assert_int_equal(o[i][j][b], 0);
            memset(o[i][j], (int)(i * 20 + j + 1), sizes[i]);
        }
    }
    /* Each object still holds its own bytes: none was written over. */
    for (size_t i = 0; i < NS; i++)
        for (int j = 0; j < 20; j++)
            for (size_t b = 0; b < sizes[i]; b++)
                assert_int_equal(o[i][j][b], (unsigned char)(i * 20 + j + 1));
    assert_int_equal(pool_live(p), NS * 20);
    for (size_t i = 0; i < NS; i++)
        for (int j = 0; j < 20; j++)
            pool_release(p, o[i][j], sizes[i]);
    pool_release(p, NULL, 16);
    assert_int_equal(pool_live(p), 0);
    pool_free(p);
    pool_free(NULL);
}

static void test_one_class_fills_its_blocks(void **state)
{
    (void)state;
    struct pool *p = pool_new();
    if (!pooled(p)) {
        pool_free(p);
        skip();
    }
    size_t before = pool_block_bytes(p);
    char *o[N];
    for (int i = 0; i < N; i++)
        o[i] = pool_alloc(p, 617); /* a session: class 624 */
    /* 500 of 624 bytes need as many blocks as POOL_BLOCK holds, none more. */
    size_t per_block = (POOL_BLOCK - 16) / 624;
    assert_int_equal(pool_block_bytes(p) - before,
                     (size_t)((N + per_block - 1) / per_block) * POOL_BLOCK);
    /* Neighbours within a block are one class size apart. */
    assert_int_equal(o[1] - o[0], 624);
    for (int i = 0; i < N; i++)
        pool_release(p, o[i], 617);
    pool_free(p);
}

static void test_a_released_object_is_reused_zeroed(void **state)
{
    (void)state;
    struct pool *p = pool_new();
    if (!pooled(p)) {
        pool_free(p);
        skip();
    }
    char *a = pool_alloc(p, 40), *b = pool_alloc(p, 40);
    memset(a, 'x', 40);
    size_t blocks = pool_block_bytes(p);
    pool_release(p, a, 40);
    char *c = pool_alloc(p, 33); /* the same class (48) */
    assert_ptr_equal(c, a);
    for (int i = 0; i < 40; i++)
        assert_int_equal(c[i], 0);
    char *d = pool_alloc(p, 64); /* another class: not a */
    assert_true(d != a && d != b);
    assert_int_equal(pool_block_bytes(p), blocks + POOL_BLOCK);
    pool_release(p, b, 40);
    pool_release(p, c, 33);
    pool_release(p, d, 64);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_are_zeroed_aligned_and_apart),
        cmocka_unit_test(test_one_class_fills_its_blocks),
        cmocka_unit_test(test_a_released_object_is_reused_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
