/*
 * Unit tests of core/fleet placement: determinism whatever the input order,
 * equal and weighted shares, the 100/300 capacity split, overflow counted,
 * capacity never exceeded, minimal movement on join and leave, equality with
 * the slow definition. And membership against a real redis-server
 * (tests/unit/redis_fixture.h): live, active nodes only, a change seen
 * through the epoch counter (and not before it), a dead node dropped when
 * its beat expires, the announce INCRs the epoch.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "core/err.h"
#include "core/fleet.h"
#include "core/hrw.h"
#include "core/rconn.h"
#include "tests/unit/loop_fixture.h"
#include "tests/unit/redis_fixture.h"

#define NUNITS 3000

struct units {
    char (*ids)[32];
    const char **ptrs;
    size_t n;
};

/* Unit ids shaped like user ids (24 hex digits), from a fixed LCG. */
static void units_make(struct units *u, size_t n, uint64_t seed)
{
    u->ids = xmalloc(n * sizeof *u->ids);
    u->ptrs = xmalloc(n * sizeof *u->ptrs);
    u->n = n;
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t y = x * 0x9e3779b97f4a7c15ULL;
        snprintf(u->ids[i], sizeof u->ids[i], "%016llx%08llx", (unsigned long long)x,
                 (unsigned long long)(y >> 32));
        u->ptrs[i] = u->ids[i];
    }
}

static void units_free(struct units *u)
{
    xfree(u->ids);
    xfree(u->ptrs);
}

/* Places and returns each unit's node id (NULL for overflow), in unit order. */
static const char **place_ids(const struct fleet_node *nodes, size_t n, const struct units *u,
                              size_t *overflow)
{
    int32_t *owner = xmalloc(u->n * sizeof *owner);
    assert_int_equal(fleet_place(nodes, n, u->ptrs, u->n, owner, overflow), 0);
    const char **ids = xmalloc(u->n * sizeof *ids);
    for (size_t i = 0; i < u->n; i++) {
        assert_true(owner[i] >= -1 && owner[i] < (int32_t)n);
        ids[i] = owner[i] < 0 ? NULL : nodes[owner[i]].id;
    }
    xfree(owner);
    return ids;
}

static size_t count_on(const char **ids, size_t n, const char *node)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != NULL && strcmp(ids[i], node) == 0)
            c++;
    return c;
}

static void test_placement_ignores_order_of_nodes_and_units(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, NUNITS, 1);
    struct fleet_node a[] = {{"w1", 1000}, {"w2", 1000}, {"w3", 1000}};
    struct fleet_node b[] = {{"w3", 1000}, {"w1", 1000}, {"w2", 1000}};
    size_t oa = 99, ob = 99;
    const char **pa = place_ids(a, 3, &u, &oa);
    /* Reverse the units and rotate the nodes: same unit -> node map. */
    struct units r;
    units_make(&r, NUNITS, 1);
    for (size_t i = 0; i < NUNITS; i++)
        r.ptrs[i] = u.ids[NUNITS - 1 - i];
    const char **pb = place_ids(b, 3, &r, &ob);
    assert_int_equal(oa, 0);
    assert_int_equal(ob, 0);
    for (size_t i = 0; i < NUNITS; i++)
        assert_string_equal(pa[i], pb[NUNITS - 1 - i]);
    /* Capacities exactly filled, so spill-over happened (HRW alone is not
     * that even), and still every result matched. */
    assert_int_equal(count_on(pa, NUNITS, "w1"), 1000);
    assert_int_equal(count_on(pa, NUNITS, "w3"), 1000);
    xfree(pa);
    xfree(pb);
    units_free(&u);
    units_free(&r);
}

static void test_equal_capacities_share_within_15_percent(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, NUNITS, 2);
    struct fleet_node nodes[] = {{"watcher-a", 10000}, {"watcher-b", 10000}, {"watcher-c", 10000}};
    size_t over = 99;
    const char **p = place_ids(nodes, 3, &u, &over);
    assert_int_equal(over, 0);
    size_t total = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t c = count_on(p, NUNITS, nodes[i].id);
        assert_in_range(c, 850, 1150); /* 1000 +- 15% */
        total += c;
    }
    assert_int_equal(total, NUNITS);
    xfree(p);
    units_free(&u);
}

static void test_capacities_100_and_300_split_400_units_exactly(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, 400, 3);
    struct fleet_node nodes[] = {{"small", 100}, {"big", 300}};
    size_t over = 99;
    const char **p = place_ids(nodes, 2, &u, &over);
    assert_int_equal(over, 0);
    assert_int_equal(count_on(p, 400, "small"), 100);
    assert_int_equal(count_on(p, 400, "big"), 300);
    xfree(p);
    units_free(&u);
}

static void test_weights_give_capacity_shares_when_room_is_ample(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, 4000, 4);
    struct fleet_node nodes[] = {{"small", 10000}, {"big", 30000}};
    const char **p = place_ids(nodes, 2, &u, NULL);
    size_t small = count_on(p, 4000, "small");
    assert_in_range(small, 850, 1150); /* 1000 +- 15% */
    assert_int_equal(count_on(p, 4000, "big"), 4000 - small);
    xfree(p);
    units_free(&u);
}

static void test_units_over_fleet_capacity_are_counted_as_overflow(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, 900, 5);
    struct fleet_node nodes[] = {{"small", 100}, {"big", 300}};
    size_t over = 0;
    const char **p = place_ids(nodes, 2, &u, &over);
    assert_int_equal(over, 500);
    assert_int_equal(count_on(p, 900, "small"), 100);
    assert_int_equal(count_on(p, 900, "big"), 300);
    size_t none = 0;
    for (size_t i = 0; i < 900; i++)
        none += p[i] == NULL;
    assert_int_equal(none, 500);
    xfree(p);
    /* No node at all: everything overflows. */
    p = place_ids(nodes, 0, &u, &over);
    assert_int_equal(over, 900);
    xfree(p);
    units_free(&u);
}

/* Issue #15 point 13: a full fleet's overflow is sticky when units are ranked
 * by admission. 400 units ranked 0..399 fill two nodes of 150; then 50 new
 * units (ranks 400..449) arrive, with ids whose hashes fall anywhere in the
 * hash order: every one of the 300 placed before keeps its node, the new
 * ones overflow. Unranked (the old order), some placed units are pushed out
 * by new ones. Then 30 placed units leave: the 30 longest waiting take
 * their room, in rank order. */
static void test_ranked_overflow_is_sticky(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, 450, 11);
    int64_t *ranks = xmalloc(u.n * sizeof *ranks);
    for (size_t i = 0; i < u.n; i++)
        ranks[i] = (int64_t)i;
    struct fleet_node nodes[] = {{"a", 150}, {"b", 150}};
    int32_t *before = xmalloc(u.n * sizeof *before);
    int32_t *after = xmalloc(u.n * sizeof *after);
    size_t over = 0;

    assert_int_equal(fleet_place_ranked(nodes, 2, u.ptrs, ranks, 400, before, &over), 0);
    assert_int_equal(over, 100);
    assert_int_equal(fleet_place_ranked(nodes, 2, u.ptrs, ranks, 450, after, &over), 0);
    assert_int_equal(over, 150);
    for (size_t i = 0; i < 400; i++)
        assert_int_equal(after[i], before[i]); /* nobody placed moves or is pushed out */
    for (size_t i = 400; i < 450; i++)
        assert_int_equal(after[i], -1);

    /* Without ranks the 50 new units take places from units placed before. */
    assert_int_equal(fleet_place(nodes, 2, u.ptrs, 400, before, NULL), 0);
    assert_int_equal(fleet_place(nodes, 2, u.ptrs, 450, after, NULL), 0);
    size_t pushed_out = 0;
    for (size_t i = 0; i < 400; i++)
        pushed_out += before[i] >= 0 && after[i] < 0;
    assert_true(pushed_out > 0);

    /* 30 placed units leave (removed from the input by swapping in the
     * waiting ones' ranks): the 30 lowest-ranked waiting units get in. */
    assert_int_equal(fleet_place_ranked(nodes, 2, u.ptrs, ranks, 450, before, NULL), 0);
    struct units left;
    units_make(&left, 450, 11);
    int64_t *lranks = xmalloc(left.n * sizeof *lranks);
    size_t m = 0, removed = 0;
    for (size_t i = 0; i < 450; i++) {
        if (before[i] >= 0 && removed < 30) {
            removed++;
            continue;
        }
        left.ptrs[m] = u.ptrs[i];
        lranks[m++] = ranks[i];
    }
    int32_t *later = xmalloc(m * sizeof *later);
    assert_int_equal(fleet_place_ranked(nodes, 2, left.ptrs, lranks, m, later, &over), 0);
    assert_int_equal(over, 120);
    for (size_t j = 0; j < m; j++) {
        if (lranks[j] < 300 || lranks[j] >= 450)
            continue;
        /* Waiting units were ranks 300..449 (the first 300 were placed). */
        if (lranks[j] < 330)
            assert_true(later[j] >= 0);
        else
            assert_int_equal(later[j], -1);
    }
    xfree(later);
    xfree(lranks);
    units_free(&left);
    xfree(after);
    xfree(before);
    xfree(ranks);
    units_free(&u);
}

static void test_zero_capacity_node_gets_nothing(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, 500, 6);
    struct fleet_node nodes[] = {{"a", 0}, {"b", 1000}};
    size_t over = 9;
    const char **p = place_ids(nodes, 2, &u, &over);
    assert_int_equal(over, 0);
    assert_int_equal(count_on(p, 500, "a"), 0);
    xfree(p);
    units_free(&u);
}

static void test_join_moves_about_a_quarter_only_to_the_new_node(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, NUNITS, 7);
    struct fleet_node three[] = {{"w1", 10000}, {"w2", 10000}, {"w3", 10000}};
    struct fleet_node four[] = {{"w1", 10000}, {"w2", 10000}, {"w3", 10000}, {"w4", 10000}};
    const char **before = place_ids(three, 3, &u, NULL);
    const char **after = place_ids(four, 4, &u, NULL);
    size_t moved = 0;
    for (size_t i = 0; i < NUNITS; i++) {
        if (strcmp(before[i], after[i]) != 0) {
            moved++;
            assert_string_equal(after[i], "w4");
        }
    }
    assert_in_range(moved, 600, 900); /* a quarter: 750 */
    /* Leave: w4 goes again, only its units move, back where they were. */
    const char **back = place_ids(three, 3, &u, NULL);
    for (size_t i = 0; i < NUNITS; i++) {
        if (strcmp(after[i], "w4") != 0)
            assert_string_equal(back[i], after[i]);
        assert_string_equal(back[i], before[i]);
    }
    xfree(before);
    xfree(after);
    xfree(back);
    units_free(&u);
}

static void test_leave_moves_only_the_leavers_units(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, NUNITS, 8);
    struct fleet_node three[] = {{"w1", 2000}, {"w2", 2000}, {"w3", 2000}};
    struct fleet_node two[] = {{"w1", 2000}, {"w3", 2000}};
    const char **before = place_ids(three, 3, &u, NULL);
    const char **after = place_ids(two, 2, &u, NULL);
    size_t moved = 0;
    for (size_t i = 0; i < NUNITS; i++) {
        if (strcmp(before[i], "w2") == 0)
            moved++;
        else
            assert_string_equal(after[i], before[i]);
    }
    assert_in_range(moved, 850, 1150);
    xfree(before);
    xfree(after);
    units_free(&u);
}

static void test_tight_capacity_is_never_exceeded(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, NUNITS, 9);
    struct fleet_node nodes[] = {{"w1", 1010}, {"w2", 1010}, {"w3", 1010}};
    size_t over = 9;
    const char **p = place_ids(nodes, 3, &u, &over);
    assert_int_equal(over, 0);
    for (size_t i = 0; i < 3; i++)
        assert_true(count_on(p, NUNITS, nodes[i].id) <= 1010);
    xfree(p);
    units_free(&u);
}

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    uint64_t hx = hrw_hash64(x, strlen(x)), hy = hrw_hash64(y, strlen(y));
    if (hx != hy)
        return hx < hy ? -1 : 1;
    return strcmp(x, y);
}

/* The definition, computed the slow way: units in key-hash order, each to the
 * node with room of highest hrw_score() (nodes given in id order). */
static void reference_place(const struct fleet_node *nodes, size_t n, const struct units *u,
                            const char **out)
{
    const char **sorted = xmalloc(u->n * sizeof *sorted);
    memcpy(sorted, u->ptrs, u->n * sizeof *sorted);
    qsort(sorted, u->n, sizeof *sorted, cmp_str);
    uint32_t room[8];
    for (size_t p = 0; p < n; p++)
        room[p] = nodes[p].capacity;
    for (size_t q = 0; q < u->n; q++) {
        uint64_t kh = hrw_hash64(sorted[q], strlen(sorted[q]));
        size_t bp = n;
        double best = 0;
        for (size_t p = 0; p < n; p++) {
            if (room[p] == 0)
                continue;
            double sc =
                hrw_score(kh, hrw_hash64(nodes[p].id, strlen(nodes[p].id)), nodes[p].capacity);
            if (bp == n || sc > best) {
                best = sc;
                bp = p;
            }
        }
        size_t i = (size_t)(sorted[q] - u->ids[0]) / sizeof u->ids[0];
        out[i] = bp == n ? NULL : nodes[bp].id;
        if (bp < n)
            room[bp]--;
    }
    xfree(sorted);
}

static void test_placement_equals_the_slow_definition_with_mixed_capacities(void **state)
{
    (void)state;
    struct units u;
    units_make(&u, NUNITS, 10);
    /* Sorted by id; three capacities, two nodes each; 2,400 places for
     * 3,000 units: every node fills up, spill-over and overflow happen. */
    struct fleet_node nodes[] = {{"a", 200}, {"b", 600}, {"c", 200},
                                 {"d", 400}, {"e", 600}, {"f", 400}};
    const char **want = xmalloc(NUNITS * sizeof *want);
    reference_place(nodes, 6, &u, want);
    size_t over = 0;
    const char **got = place_ids(nodes, 6, &u, &over);
    size_t none = 0;
    for (size_t i = 0; i < NUNITS; i++) {
        if (want[i] == NULL) {
            assert_null(got[i]);
            none++;
        } else {
            assert_non_null(got[i]);
            assert_string_equal(got[i], want[i]);
        }
    }
    assert_int_equal(over, none);
    assert_int_equal(over, 600);
    assert_int_equal(count_on(got, NUNITS, "a"), 200);
    xfree(want);
    xfree(got);
    units_free(&u);
}

static void test_place_rejects_bad_arguments(void **state)
{
    (void)state;
    struct fleet_node nodes[] = {{"a", 1}, {NULL, 1}};
    const char *units[] = {"u1", NULL};
    int32_t owner[2];
    assert_int_equal(fleet_place(NULL, 1, units, 1, owner, NULL), -SIMAP_EINVAL);
    assert_int_equal(fleet_place(nodes, 1, NULL, 1, owner, NULL), -SIMAP_EINVAL);
    assert_int_equal(fleet_place(nodes, 1, units, 1, NULL, NULL), -SIMAP_EINVAL);
    assert_int_equal(fleet_place(nodes, 2, units, 1, owner, NULL), -SIMAP_EINVAL);
    assert_int_equal(fleet_place(nodes, 1, units, 2, owner, NULL), -SIMAP_EINVAL);
    size_t over = 9;
    assert_int_equal(fleet_place(nodes, 1, units, 0, owner, &over), 0);
    assert_int_equal(over, 0);
    assert_int_equal(fleet_place(nodes, 1, units, 1, owner, &over), 0);
    assert_int_equal(owner[0], 0);
}

/* ---- Membership against redis-server ---- */

struct mctx {
    struct redis_fixture fx;
    struct ev_loop *loop;
    struct rconn *rc;
    struct fleet *f;
    int changes;
};

static int setup_redis(void **state)
{
    struct mctx *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    *state = t;
    return loop_rconn_open(&t->fx, &t->loop, &t->rc);
}

static int teardown_redis(void **state)
{
    struct mctx *t = *state;
    if (t == NULL)
        return 0;
    fleet_free(t->f);
    loop_rconn_close(&t->fx, t->loop, t->rc);
    free(t);
    return 0;
}

static void on_change(struct fleet *f, void *data)
{
    (void)f;
    ((struct mctx *)data)->changes++;
}

static long long redis_now_ms(const struct redis_fixture *fx)
{
    redisReply *r = redis_fixture_cmd(fx, "TIME");
    assert_non_null(r);
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

/* A node as core/node's heartbeat writes it. */
static void add_node(const struct redis_fixture *fx, const char *id, long long hb, const char *cap,
                     const char *st)
{
    redisReply *r = redis_fixture_cmd(fx, "ZADD si:watchers %lld %s", hb, id);
    freeReplyObject(r);
    r = redis_fixture_cmd(fx, "HSET si:node:%s role watcher capacity %s state %s", id, cap, st);
    freeReplyObject(r);
}

static void start_fleet(struct mctx *t, int dead_ms)
{
    struct fleet_opts o = {.role = "watcher",
                           .self_id = "a",
                           .dead_ms = dead_ms,
                           .epoch_poll_ms = 50,
                           .full_read_ms = 60000};
    struct fleet_hooks h = {.on_change = on_change, .data = t};
    t->f = fleet_new(t->loop, t->rc, &o, &h);
    fleet_start(t->f);
    assert_true(run_until(t->loop, &t->changes, 1, 5.0));
    assert_true(fleet_loaded(t->f));
}

static void test_membership_keeps_live_active_nodes_sorted_by_id(void **state)
{
    struct mctx *t = *state;
    long long now = redis_now_ms(&t->fx);
    add_node(&t->fx, "d", now, "300", "active");
    add_node(&t->fx, "a", now - 1000, "100", "active");
    add_node(&t->fx, "b", now - 20000, "100", "active"); /* dead */
    add_node(&t->fx, "c", now, "100", "draining");
    add_node(&t->fx, "e", now, "0", "active"); /* no capacity */
    start_fleet(t, 0);
    size_t n = 0;
    const struct fleet_node *nodes = fleet_nodes(t->f, &n);
    assert_int_equal(n, 2);
    assert_string_equal(nodes[0].id, "a");
    assert_int_equal(nodes[0].capacity, 100);
    assert_string_equal(nodes[1].id, "d");
    assert_int_equal(nodes[1].capacity, 300);
    const struct fleet_member *m = fleet_members(t->f, &n);
    assert_int_equal(n, 4); /* a, c, d, e: live */
    assert_string_equal(m[1].id, "c");
    assert_true(m[1].draining);
    assert_false(m[0].draining);
    /* fleet_start() announced itself. */
    redisReply *r = redis_fixture_cmd(&t->fx, "GET si:watcher:epoch");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_true(atoll(r->str) >= 1);
    freeReplyObject(r);
    assert_int_equal(fleet_version(t->f), 1);
}

static void test_membership_change_is_seen_through_the_epoch_only(void **state)
{
    struct mctx *t = *state;
    long long now = redis_now_ms(&t->fx);
    add_node(&t->fx, "a", now, "100", "active");
    start_fleet(t, 0);
    size_t n = 0;
    fleet_nodes(t->f, &n);
    assert_int_equal(n, 1);
    /* A join without an epoch change: not read (full reads are 60 s apart). */
    add_node(&t->fx, "b", now, "100", "active");
    int never = 0;
    run_until(t->loop, &never, 1, 0.5);
    fleet_nodes(t->f, &n);
    assert_int_equal(n, 1);
    assert_int_equal(t->changes, 1);
    /* The epoch moves: read within a few polls. */
    redisReply *r = redis_fixture_cmd(&t->fx, "INCR si:watcher:epoch");
    freeReplyObject(r);
    assert_true(run_until(t->loop, &t->changes, 2, 3.0));
    const struct fleet_node *nodes = fleet_nodes(t->f, &n);
    assert_int_equal(n, 2);
    assert_string_equal(nodes[1].id, "b");
    /* Draining is a change too. */
    r = redis_fixture_cmd(&t->fx, "HSET si:node:b state draining");
    freeReplyObject(r);
    r = redis_fixture_cmd(&t->fx, "INCR si:watcher:epoch");
    freeReplyObject(r);
    assert_true(run_until(t->loop, &t->changes, 3, 3.0));
    fleet_nodes(t->f, &n);
    assert_int_equal(n, 1);
}

static void test_membership_drops_a_node_when_its_beat_expires(void **state)
{
    struct mctx *t = *state;
    long long now = redis_now_ms(&t->fx);
    add_node(&t->fx, "a", now + 60000, "100", "active"); /* stays live */
    add_node(&t->fx, "b", now - 700, "100", "active");   /* dead 300 ms from now */
    start_fleet(t, 1000);
    size_t n = 0;
    fleet_nodes(t->f, &n);
    assert_int_equal(n, 2);
    double t0 = fixture_now();
    /* No epoch change: the read scheduled at its expiry finds it dead. */
    assert_true(run_until(t->loop, &t->changes, 2, 3.0));
    assert_true(fixture_now() - t0 < 2.0);
    const struct fleet_node *nodes = fleet_nodes(t->f, &n);
    assert_int_equal(n, 1);
    assert_string_equal(nodes[0].id, "a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_ignores_order_of_nodes_and_units),
        cmocka_unit_test(test_equal_capacities_share_within_15_percent),
        cmocka_unit_test(test_capacities_100_and_300_split_400_units_exactly),
        cmocka_unit_test(test_weights_give_capacity_shares_when_room_is_ample),
        cmocka_unit_test(test_units_over_fleet_capacity_are_counted_as_overflow),
        cmocka_unit_test(test_ranked_overflow_is_sticky),
        cmocka_unit_test(test_zero_capacity_node_gets_nothing),
        cmocka_unit_test(test_join_moves_about_a_quarter_only_to_the_new_node),
        cmocka_unit_test(test_leave_moves_only_the_leavers_units),
        cmocka_unit_test(test_tight_capacity_is_never_exceeded),
        cmocka_unit_test(test_placement_equals_the_slow_definition_with_mixed_capacities),
        cmocka_unit_test(test_place_rejects_bad_arguments),
        cmocka_unit_test_setup_teardown(test_membership_keeps_live_active_nodes_sorted_by_id,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(test_membership_change_is_seen_through_the_epoch_only,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(test_membership_drops_a_node_when_its_beat_expires,
                                        setup_redis, teardown_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
