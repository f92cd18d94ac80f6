/*
 * Unit tests of core/hrw: FNV-1a reference values and shards, the portable
 * logarithm, and the properties placement relies on: weighted shares,
 * minimal disruption on membership and weight changes, top-k order
 * consistent with top-1, zero weight never chosen, determinism.
 *
 * The file includes core/hrw.c to reach det_log().
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

#include "core/hrw.c"

#define NKEYS 100000

/* FNV-1a 64 written from the specification, independently of hrw.c. */
static uint64_t ref_fnv1a64(const char *s)
{
    uint64_t h = 14695981039346656037ULL; /* offset basis */
    for (; *s; s++) {
        h = h ^ (uint64_t)(unsigned char)*s;
        h = h * 1099511628211ULL; /* 2^40 + 2^8 + 0xb3 */
    }
    return h;
}

static void key_name(char *buf, size_t len, int i)
{
    snprintf(buf, len, "user-%d", i);
}

static size_t top1(const char *key, const struct hrw_node *nodes, size_t n)
{
    size_t idx = (size_t)-1;
    int rc = hrw_top_k(key, nodes, n, 1, &idx);
    assert_int_equal(rc, 1);
    assert_true(idx < n);
    return idx;
}

/* ---- Hashes and shards ---- */

static void test_fnv1a64_matches_reference_values(void **state)
{
    (void)state;
    assert_true(hrw_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    assert_true(hrw_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(hrw_fnv1a64("foobar", 6) == 0x85944171f73967e8ULL); /* FNV test suite */
    assert_true(ref_fnv1a64("") == 0xcbf29ce484222325ULL);
    assert_true(ref_fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        key_name(key, sizeof(key), i);
        assert_true(hrw_fnv1a64(key, strlen(key)) == ref_fnv1a64(key));
    }
}

static void test_shard_is_fnv1a64_mod_shards(void **state)
{
    (void)state;
    static const char *const ids[] = {"", "a", "u_1", "7f3c2a9e-1b4d-4c6f-9a8e-2d5b7c1e0f34",
                                      "alice@example.com"};
    static const uint32_t counts[] = {1, 2, 16, 64, 1000, 4294967295u};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t j = 0; j < sizeof(counts) / sizeof(counts[0]); j++) {
            uint32_t want = (uint32_t)(ref_fnv1a64(ids[i]) % counts[j]);
            assert_int_equal(hrw_shard(ids[i], counts[j]), want);
        }
    }
    /* Worked by hand: 0xaf63dc4c8601ec8c mod 64 = 0x0c. */
    assert_int_equal(hrw_shard("a", 64), 12);
    assert_int_equal(hrw_shard("", 64), 0x25);
}

static void test_hash64_is_fnv1a_then_fmix64_and_avalanches(void **state)
{
    (void)state;
    assert_true(hrw_hash64("a", 1) == hrw_fmix64(0xaf63dc4c8601ec8cULL));
    /* Keys differing in one character differ in about half the output bits. */
    char a[32], b[32];
    long total = 0;
    for (int i = 0; i < 1000; i++) {
        key_name(a, sizeof(a), i);
        key_name(b, sizeof(b), i + 1);
        uint64_t x = hrw_hash64(a, strlen(a)) ^ hrw_hash64(b, strlen(b));
        int bits = 0;
        for (; x; x &= x - 1)
            bits++;
        total += bits;
    }
    assert_in_range(total / 1000, 29, 35);
}

/* ---- Portable logarithm and scores ---- */

static void test_det_log_agrees_with_libm(void **state)
{
    (void)state;
    double xs[] = {1.0 / 9007199254740992.0,
                   1e-300,
                   1e-10,
                   0.001,
                   0.1,
                   0.25,
                   0.5,
                   0.7071067811865475,
                   0.7071067811865476,
                   0.9,
                   0.999999,
                   1.0 - 1.0 / 9007199254740992.0};
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
        double got = det_log(xs[i]), want = log(xs[i]);
        double tol = fabs(want) * 4e-16 + 1e-300;
        if (fabs(got - want) > tol)
            fail_msg("det_log(%.17g) = %.17g, libm %.17g", xs[i], got, want);
    }
    uint64_t s = 88172645463325252ULL;
    for (int i = 0; i < 100000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        double got = det_log(u), want = log(u);
        assert_true(got < 0.0);
        if (fabs(got - want) > fabs(want) * 4e-16)
            fail_msg("det_log(%.17g) = %.17g, libm %.17g", u, got, want);
    }
}

static void test_score_is_positive_and_scales_with_weight(void **state)
{
    (void)state;
    uint64_t kh = hrw_hash64("user-1", 6), nh = hrw_hash64("w1", 2);
    double s1 = hrw_score(kh, nh, 1), s3 = hrw_score(kh, nh, 3);
    assert_true(s1 > 0.0);
    assert_true(s3 > s1);
    assert_true(fabs(s3 - 3.0 * s1) <= s3 * 1e-15);
    assert_true(hrw_score(kh, nh, 0) == 0.0);
    /* Extreme hashes map inside (0, 1): finite, positive scores. */
    assert_true(hrw_score(0, 0, UINT32_MAX) > 0.0);
    assert_true(hrw_score(UINT64_MAX, UINT64_MAX, 1) > 0.0);
    assert_true(hrw_score(kh, nh, 1) != hrw_score(nh, kh, 1)); /* asymmetric */
}

/* ---- Placement ---- */

static void check_shares(const struct hrw_node *nodes, size_t n)
{
    long count[8] = {0};
    double total_w = 0;
    char key[32];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        total_w += nodes[i].weight;
    for (int i = 0; i < NKEYS; i++) {
        key_name(key, sizeof(key), i);
        count[top1(key, nodes, n)]++;
    }
    for (size_t i = 0; i < n; i++) {
        double want = NKEYS * nodes[i].weight / total_w;
        if (fabs((double)count[i] - want) > 0.03 * want)
            fail_msg("node %s got %ld keys, want %.0f +- 3%%", nodes[i].id, count[i], want);
    }
}

static void test_equal_weights_share_keys_equally(void **state)
{
    (void)state;
    const struct hrw_node nodes[] = {{"w1", 1}, {"w2", 1}, {"w3", 1}};
    check_shares(nodes, 3);
    const struct hrw_node big[] = {
        {"watcher-a:1", 20000}, {"watcher-b:1", 20000}, {"watcher-c:1", 20000}};
    check_shares(big, 3);
}

static void test_weights_1_2_3_get_weighted_shares(void **state)
{
    (void)state;
    const struct hrw_node nodes[] = {{"w1", 1}, {"w2", 2}, {"w3", 3}};
    check_shares(nodes, 3);
    const struct hrw_node caps[] = {{"n-1", 5000}, {"n-2", 10000}, {"n-3", 15000}, {"n-4", 0}};
    check_shares(caps, 4);
}

static void test_adding_a_node_moves_a_quarter_only_to_it(void **state)
{
    (void)state;
    const struct hrw_node before[] = {{"w1", 1}, {"w2", 1}, {"w3", 1}};
    const struct hrw_node after[] = {{"w1", 1}, {"w2", 1}, {"w3", 1}, {"w4", 1}};
    char key[32];
    long moved = 0;
    for (int i = 0; i < NKEYS; i++) {
        key_name(key, sizeof(key), i);
        size_t a = top1(key, before, 3), b = top1(key, after, 4);
        if (a != b) {
            assert_int_equal(b, 3); /* only ever to the new node */
            moved++;
        }
    }
    assert_in_range(moved, NKEYS / 4 - NKEYS / 100 * 3, NKEYS / 4 + NKEYS / 100 * 3);
}

static void test_removing_a_node_moves_only_its_keys(void **state)
{
    (void)state;
    const struct hrw_node before[] = {{"w1", 1}, {"w2", 2}, {"w3", 3}};
    const struct hrw_node after[] = {{"w1", 1}, {"w3", 3}};
    const size_t map[] = {0, 2}; /* after[i] is before[map[i]] */
    char key[32];
    long moved = 0;
    for (int i = 0; i < NKEYS; i++) {
        key_name(key, sizeof(key), i);
        size_t a = top1(key, before, 3), b = map[top1(key, after, 2)];
        if (a != 1)
            assert_int_equal(a, b);
        else
            moved++;
    }
    assert_in_range(moved, NKEYS / 3 - NKEYS / 100 * 3, NKEYS / 3 + NKEYS / 100 * 3);
}

static void test_raising_a_weight_moves_keys_only_to_that_node(void **state)
{
    (void)state;
    struct hrw_node nodes[] = {{"w1", 100}, {"w2", 100}, {"w3", 100}};
    size_t *owner = xmalloc(NKEYS * sizeof(*owner));
    char key[32];
    for (int i = 0; i < NKEYS; i++) {
        key_name(key, sizeof(key), i);
        owner[i] = top1(key, nodes, 3);
    }
    nodes[1].weight = 200;
    long moved = 0;
    for (int i = 0; i < NKEYS; i++) {
        key_name(key, sizeof(key), i);
        size_t now = top1(key, nodes, 3);
        if (now != owner[i]) {
            assert_int_equal(now, 1);
            moved++;
        }
    }
    /* From 1/3 to 2/4 of the keys: about 1/6 move. */
    assert_in_range(moved, NKEYS / 6 - NKEYS / 100 * 3, NKEYS / 6 + NKEYS / 100 * 3);
    xfree(owner);
}

static void test_top_k_is_ordered_and_consistent_with_top_1(void **state)
{
    (void)state;
    const struct hrw_node nodes[] = {{"w1", 1}, {"w2", 2}, {"w3", 3}, {"w4", 1}, {"w5", 5}};
    char key[32];
    for (int i = 0; i < 2000; i++) {
        size_t idx[5], first;
        key_name(key, sizeof(key), i);
        assert_int_equal(hrw_top_k(key, nodes, 5, 5, idx), 5);
        first = top1(key, nodes, 5);
        assert_int_equal(idx[0], first);

        /* A permutation, in strictly decreasing score order. */
        uint64_t kh = hrw_hash64(key, strlen(key));
        unsigned seen = 0;
        double prev = INFINITY;
        for (int j = 0; j < 5; j++) {
            assert_true(idx[j] < 5);
            assert_false(seen & (1u << idx[j]));
            seen |= 1u << idx[j];
            const char *id = nodes[idx[j]].id;
            double sc = hrw_score(kh, hrw_hash64(id, strlen(id)), nodes[idx[j]].weight);
            assert_true(sc < prev);
            prev = sc;
        }

        /* Spill-over: without the first choice, the new first is the old
         * second, and shorter k is a prefix. */
        struct hrw_node rest[4];
        size_t back[4], n = 0;
        for (size_t j = 0; j < 5; j++) {
            if (j != first) {
                back[n] = j;
                rest[n++] = nodes[j];
            }
        }
        assert_int_equal(back[top1(key, rest, 4)], idx[1]);
        size_t two[2];
        assert_int_equal(hrw_top_k(key, nodes, 5, 2, two), 2);
        assert_memory_equal(two, idx, sizeof(two));
    }
}

static void test_top_k_with_many_nodes_uses_heap_and_matches_prefix(void **state)
{
    (void)state;
    struct hrw_node nodes[40];
    char names[40][24];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "node-%02d", i);
        nodes[i].id = names[i];
        nodes[i].weight = (uint32_t)(1 + i % 4);
    }
    size_t all[40], few[3];
    assert_int_equal(hrw_top_k("user-7", nodes, 40, 40, all), 40);
    assert_int_equal(hrw_top_k("user-7", nodes, 40, 3, few), 3);
    assert_memory_equal(all, few, sizeof(few));
    assert_int_equal(all[0], top1("user-7", nodes, 40));
    unsigned char seen[40] = {0};
    for (int i = 0; i < 40; i++) {
        assert_false(seen[all[i]]);
        seen[all[i]] = 1;
    }
}

static void test_zero_weight_node_is_never_chosen(void **state)
{
    (void)state;
    const struct hrw_node nodes[] = {{"w1", 1}, {"draining", 0}, {"w3", 1}};
    char key[32];
    for (int i = 0; i < 10000; i++) {
        size_t idx[3] = {7, 7, 7};
        key_name(key, sizeof(key), i);
        assert_int_equal(hrw_top_k(key, nodes, 3, 3, idx), 2);
        assert_int_not_equal(idx[0], 1);
        assert_int_not_equal(idx[1], 1);
        assert_int_equal(idx[2], 7); /* untouched past the count */
    }
    const struct hrw_node none[] = {{"a", 0}, {"b", 0}};
    size_t idx[2];
    assert_int_equal(hrw_top_k("user-1", none, 2, 2, idx), 0);
    assert_int_equal(hrw_top_k("user-1", none, 0, 2, idx), 0);
}

static void test_placement_ignores_node_order_and_string_addresses(void **state)
{
    (void)state;
    const struct hrw_node fwd[] = {{"w1", 3}, {"w2", 1}, {"w3", 2}, {"w4", 2}};
    char copies[4][8];
    struct hrw_node rev[4];
    for (int i = 0; i < 4; i++) {
        strcpy(copies[i], fwd[3 - i].id); /* same ids, other addresses */
        rev[i].id = copies[i];
        rev[i].weight = fwd[3 - i].weight;
    }
    char key[32];
    for (int i = 0; i < 5000; i++) {
        size_t a[4], b[4];
        key_name(key, sizeof(key), i);
        assert_int_equal(hrw_top_k(key, fwd, 4, 4, a), 4);
        assert_int_equal(hrw_top_k(key, rev, 4, 4, b), 4);
        for (int j = 0; j < 4; j++)
            assert_string_equal(fwd[a[j]].id, rev[b[j]].id);
        assert_int_equal(top1(key, fwd, 4), a[0]); /* same answer again */
    }
}

static void test_equal_scores_break_ties_by_id_then_index(void **state)
{
    (void)state;
    const struct hrw_node nodes[] = {{"same", 1}, {"same", 1}};
    size_t idx[2];
    assert_int_equal(hrw_top_k("k", nodes, 2, 2, idx), 2);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);

    /* Distinct ids never tie in practice, so check the rule directly. */
    const struct hrw_node ids[] = {{"b", 1}, {"a", 1}};
    assert_true(ranks_above(ids, 1.0, 1, 1.0, 0)); /* "a" before "b" */
    assert_false(ranks_above(ids, 1.0, 0, 1.0, 1));
    assert_true(ranks_above(ids, 2.0, 0, 1.0, 1));   /* score first */
    assert_true(ranks_above(nodes, 1.0, 0, 1.0, 1)); /* same id: lower index */
    assert_false(ranks_above(nodes, 1.0, 1, 1.0, 0));
}

static void test_top_k_rejects_bad_arguments(void **state)
{
    (void)state;
    const struct hrw_node nodes[] = {{"w1", 1}, {NULL, 1}};
    size_t idx[2];
    assert_int_equal(hrw_top_k(NULL, nodes, 1, 1, idx), -SIMAP_EINVAL);
    assert_int_equal(hrw_top_k("k", nodes, 2, 1, idx), -SIMAP_EINVAL);
    assert_int_equal(hrw_top_k("k", NULL, 1, 1, idx), -SIMAP_EINVAL);
    assert_int_equal(hrw_top_k("k", nodes, 1, 1, NULL), -SIMAP_EINVAL);
    assert_int_equal(hrw_top_k("k", nodes, 1, 0, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv1a64_matches_reference_values),
        cmocka_unit_test(test_shard_is_fnv1a64_mod_shards),
        cmocka_unit_test(test_hash64_is_fnv1a_then_fmix64_and_avalanches),
        cmocka_unit_test(test_det_log_agrees_with_libm),
        cmocka_unit_test(test_score_is_positive_and_scales_with_weight),
        cmocka_unit_test(test_equal_weights_share_keys_equally),
        cmocka_unit_test(test_weights_1_2_3_get_weighted_shares),
        cmocka_unit_test(test_adding_a_node_moves_a_quarter_only_to_it),
        cmocka_unit_test(test_removing_a_node_moves_only_its_keys),
        cmocka_unit_test(test_raising_a_weight_moves_keys_only_to_that_node),
        cmocka_unit_test(test_top_k_is_ordered_and_consistent_with_top_1),
        cmocka_unit_test(test_top_k_with_many_nodes_uses_heap_and_matches_prefix),
        cmocka_unit_test(test_zero_weight_node_is_never_chosen),
        cmocka_unit_test(test_placement_ignores_node_order_and_string_addresses),
        cmocka_unit_test(test_equal_scores_break_ties_by_id_then_index),
        cmocka_unit_test(test_top_k_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
