/*
 * Unit tests of the delivery queue's Lua scripts (scripts/lua/event_*.lua,
 * requeue_expired.lua, promote_due.lua) against a real, private
 * redis-server: enqueue (idempotent, wake-up), claim (round robin, per
 * partner slots, leases, fencing tokens), ack, retry, dead letters (cap and
 * age), replay, requeue of expired leases, promotion of due retries, stats,
 * the dashboard's per-partner queue, delete of dead letters and the chart
 * counters (stat_add.lua), and a randomized run that checks the queue invariants after every step.
 * Scripts get an explicit clock ("now" arguments) so time is exact.
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
#include <hiredis/hiredis.h>

#include "core/scripts.h"
#include "tests/unit/redis_fixture.h"

static struct redis_fixture fx;
static redisContext *rc;

#define K      "si:{5}:"
#define RP     K "ready_partners"
#define INF    K "inflight"
#define RETRY  K "retry"
#define DEAD   K "dead"
#define T0     1000000000000LL /* the tests' clock, ms */
#define LEASE  30000
#define KEEP   604800000LL
#define DEAD_T 2592000000LL
#define INLINE "5" /* payloads of up to 5 bytes come back inline */

static int setup(void **state)
{
    (void)state;
    if (redis_fixture_start(&fx, NULL) < 0)
        return -1;
    rc = redis_fixture_connect(&fx, 5000);
    return rc == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    redisFree(rc);
    redis_fixture_stop(&fx);
    return 0;
}

static int flush(void **state)
{
    (void)state;
    redisReply *r = redisCommand(rc, "FLUSHALL");
    int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* Runs script name with nkeys keys then arguments, NULL-terminated; returns
 * the reply (freeReplyObject() it). An error reply fails the test unless
 * allow_error. */
static redisReply *vrun(int allow_error, const char *name, int nkeys, va_list ap)
{
    const struct script_source *s = script_find(name);
    if (s == NULL)
        fail_msg("no script %s", name);
    const char *argv[128];
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = s->body;
    argv[argc++] = nk;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 128)
        argv[argc++] = a;
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    assert_non_null(r);
    if (!allow_error && r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", name, r->str);
    return r;
}

static redisReply *run(const char *name, int nkeys, ...)
{
    va_list ap;
    va_start(ap, nkeys);
    redisReply *r = vrun(0, name, nkeys, ap);
    va_end(ap);
    return r;
}

static long long run_int(const char *name, int nkeys, ...)
{
    va_list ap;
    va_start(ap, nkeys);
    redisReply *r = vrun(0, name, nkeys, ap);
    va_end(ap);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static long long cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = -999;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else if (r->type == REDIS_REPLY_NIL)
        v = -1;
    freeReplyObject(r);
    return v;
}

/* HGET as a string into out ("" when absent). */
static const char *hget(const char *key, const char *field, char *out, size_t n)
{
    redisReply *r = redisCommand(rc, "HGET %s %s", key, field);
    assert_non_null(r);
    snprintf(out, n, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return out;
}

static void ms(long long v, char *out)
{
    snprintf(out, 24, "%lld", v);
}

/* Enqueues event eid of partner pid in shard 5 with a payload. */
static long long enqueue(const char *eid, const char *pid, long long created)
{
    char ek[128], rl[64], c[24];
    snprintf(ek, sizeof ek, K "evt:%s", eid);
    snprintf(rl, sizeof rl, K "ready:%s", pid);
    ms(created, c);
    return run_int("event_enqueue", 3, ek, rl, RP, eid, pid, "type", "new_mail", "uid", "u1",
                   "code", "gmail", "tag", "t1", "sha1", "abc", "payload", "v1:xx", "created_at", c,
                   NULL);
}

/* Claims up to max at clock now with default free slots and optional pairs;
 * returns the reply. */
static redisReply *claim(long long now, int max, int default_free, const char *p1, const char *f1)
{
    char n[24], l[24], m[24], d[24];
    ms(now, n);
    ms(LEASE, l);
    ms(max, m);
    ms(default_free, d);
    redisReply *r = p1 ? run("event_claim", 2, RP, INF, K, n, l, m, d, INLINE, p1, f1, NULL)
                       : run("event_claim", 2, RP, INF, K, n, l, m, d, INLINE, NULL);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 2);
    return r;
}

static const char *ev_field(const redisReply *r, size_t i, int f)
{
    assert_true(i + 2 < r->elements);
    const redisReply *e = r->element[i + 2];
    assert_int_equal(e->type, REDIS_REPLY_ARRAY);
    assert_int_equal(e->elements, 11);
    return e->element[f]->str;
}

static long long ack(const char *eid, const char *token)
{
    char ek[128], keep[24];
    snprintf(ek, sizeof ek, K "evt:%s", eid);
    ms(KEEP, keep);
    return run_int("event_ack", 2, ek, INF, eid, token, keep, "200", NULL);
}

static long long retry(const char *eid, const char *token, long long delay, const char *counted,
                       long long now)
{
    char ek[128], d[24], n[24];
    snprintf(ek, sizeof ek, K "evt:%s", eid);
    ms(delay, d);
    ms(now, n);
    return run_int("event_retry", 3, ek, INF, RETRY, eid, token, d, "500", "HTTP 500", counted, n,
                   NULL);
}

static long long dead(const char *eid, const char *token, int cap, long long now)
{
    char ek[128], c[24], n[24], age[24];
    snprintf(ek, sizeof ek, K "evt:%s", eid);
    ms(cap, c);
    ms(now, n);
    ms(DEAD_T, age);
    return run_int("event_dead", 3, ek, INF, DEAD, eid, token, "500", "retries exhausted", c, age,
                   K, n, NULL);
}

/* ---- Enqueue ---- */

static void test_enqueue_stores_queues_and_is_idempotent(void **state)
{
    (void)state;
    assert_int_equal(enqueue("u1.7.1", "42", T0), 1);
    char v[64];
    assert_string_equal(hget(K "evt:u1.7.1", "state", v, sizeof v), "ready");
    assert_string_equal(hget(K "evt:u1.7.1", "attempts", v, sizeof v), "0");
    assert_string_equal(hget(K "evt:u1.7.1", "pid", v, sizeof v), "42");
    assert_string_equal(hget(K "evt:u1.7.1", "payload", v, sizeof v), "v1:xx");
    assert_int_equal(cmd_int("LLEN " K "ready:42"), 1);
    assert_int_equal(cmd_int("LLEN " RP), 1);
    /* The same id again changes nothing. */
    assert_int_equal(enqueue("u1.7.1", "42", T0 + 5), 0);
    assert_int_equal(cmd_int("LLEN " K "ready:42"), 1);
    assert_int_equal(cmd_int("LLEN " RP), 1);
    assert_string_equal(hget(K "evt:u1.7.1", "created_at", v, sizeof v), "1000000000000");
    /* A second event of the partner does not add it to the round robin twice. */
    assert_int_equal(enqueue("u1.7.2", "42", T0), 1);
    assert_int_equal(cmd_int("LLEN " K "ready:42"), 2);
    assert_int_equal(cmd_int("LLEN " RP), 1);
    /* Malformed arguments are an error reply. */
    redisReply *r = redisCommand(rc, "EVAL %s 3 a b c eid", script_find("event_enqueue")->body);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static void test_enqueue_publishes_wake_when_a_partner_becomes_ready(void **state)
{
    (void)state;
    redisContext *sub = redis_fixture_connect(&fx, 2000);
    assert_non_null(sub);
    redisReply *r = redisCommand(sub, "SUBSCRIBE si:wake");
    freeReplyObject(r);
    assert_int_equal(enqueue("a.1.1", "1", T0), 1); /* partner 1 becomes ready: wake */
    assert_int_equal(enqueue("a.1.2", "1", T0), 1); /* partner 1 already ready: none */
    assert_int_equal(enqueue("b.1.1", "2", T0), 1); /* partner 2 becomes ready: wake */
    assert_int_equal(cmd_int("PUBLISH si:wake end"), 1);
    int wakes = 0;
    for (;;) {
        r = NULL;
        assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        int end = strcmp(r->element[2]->str, "end") == 0;
        if (!end) {
            assert_string_equal(r->element[2]->str, "5");
            wakes++;
        }
        freeReplyObject(r);
        if (end)
            break;
    }
    assert_int_equal(wakes, 2);
    redisFree(sub);
}

/* ---- Claim ---- */

static void test_claim_round_robin_over_partners_fifo_within(void **state)
{
    (void)state;
    /* A has 5 events, B 1, C 2, enqueued A first. */
    const char *a[] = {"a.1.1", "a.1.2", "a.1.3", "a.1.4", "a.1.5"};
    for (int i = 0; i < 5; i++)
        enqueue(a[i], "A", T0);
    enqueue("b.1.1", "B", T0);
    enqueue("c.1.1", "C", T0);
    enqueue("c.1.2", "C", T0);
    redisReply *r = claim(T0, 100, 8, NULL, NULL);
    assert_int_equal(r->elements - 2, 8);
    static const char *const want[] = {"a.1.1", "b.1.1", "c.1.1", "a.1.2",
                                       "c.1.2", "a.1.3", "a.1.4", "a.1.5"};
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(ev_field(r, i, 0), want[i]);
        assert_string_equal(ev_field(r, i, 8), "1"); /* attempts, this claim */
    }
    assert_string_equal(ev_field(r, 0, 1), "A");
    assert_string_equal(ev_field(r, 0, 2), "new_mail");
    assert_string_equal(ev_field(r, 0, 3), "u1");
    assert_string_equal(ev_field(r, 0, 4), "gmail");
    assert_string_equal(ev_field(r, 0, 5), "t1");
    assert_string_equal(ev_field(r, 0, 6), "abc");
    assert_string_equal(ev_field(r, 0, 7), "v1:xx");
    assert_string_equal(ev_field(r, 0, 9), "1000000000000");
    assert_int_equal(r->element[0]->integer, 0); /* nothing more */
    freeReplyObject(r);
    assert_int_equal(cmd_int("LLEN " RP), 0);
    assert_int_equal(cmd_int("ZCARD " INF), 8);
    assert_int_equal(cmd_int("ZSCORE " INF " a.1.1"), T0 + LEASE);
    char v[32];
    assert_string_equal(hget(K "evt:a.1.3", "state", v, sizeof v), "inflight");
    /* An empty shard gives nothing. */
    r = claim(T0, 10, 8, NULL, NULL);
    assert_int_equal(r->elements, 2);
    freeReplyObject(r);
}

static void test_claim_honours_batch_size_and_reports_more(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "a.1.%d", i);
        enqueue(id, "A", T0);
    }
    redisReply *r = claim(T0, 3, 8, NULL, NULL);
    assert_int_equal(r->elements - 2, 3);
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
    assert_int_equal(cmd_int("LLEN " K "ready:A"), 2);
    assert_int_equal(cmd_int("LLEN " RP), 1);
}

static void test_claim_skips_partners_without_free_slots(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "a.1.%d", i);
        enqueue(id, "A", T0);
        snprintf(id, sizeof id, "b.1.%d", i);
        enqueue(id, "B", T0);
    }
    /* A has one free slot, B (default) two. */
    redisReply *r = claim(T0, 100, 2, "A", "1");
    assert_int_equal(r->elements - 2, 3);
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(ev_field(r, i, 1), "A") == 0)
            na++;
        else
            nb++;
    }
    assert_int_equal(na, 1);
    assert_int_equal(nb, 2);
    /* Both ran out of slots with events left: both are reported as skipped,
     * and nothing more can be claimed now. */
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[1]->elements, 2);
    freeReplyObject(r);
    assert_int_equal(cmd_int("LLEN " RP), 2);
    /* No slot at all: nothing claimed, nothing lost. */
    r = claim(T0, 100, 0, NULL, NULL);
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[1]->elements, 2);
    freeReplyObject(r);
    assert_int_equal(cmd_int("LLEN " K "ready:A"), 3);
    assert_int_equal(cmd_int("LLEN " K "ready:B"), 2);
    /* A full batch with a claimable partner left says so. */
    r = claim(T0, 1, 8, NULL, NULL);
    assert_int_equal(r->elements - 2, 1);
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
}

static void test_claim_returns_long_payload_by_length_only(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0); /* payload "v1:xx", 5 bytes: inline */
    enqueue("a.1.2", "A", T0);
    assert_int_equal(cmd_int("HSET " K "evt:a.1.2 payload v1:xyz"), 0); /* 6 bytes: not */
    redisReply *r = claim(T0, 10, 8, NULL, NULL);
    assert_int_equal(r->elements - 2, 2);
    assert_string_equal(ev_field(r, 0, 7), "v1:xx");
    assert_int_equal(r->element[2]->element[10]->integer, 5);
    assert_string_equal(ev_field(r, 1, 7), "");
    assert_int_equal(r->element[3]->element[10]->integer, 6);
    freeReplyObject(r);
}

static void test_claim_returns_event_without_hash_with_empty_fields(void **state)
{
    (void)state;
    assert_int_equal(cmd_int("LPUSH " K "ready:9 ghost.1.1"), 1);
    assert_int_equal(cmd_int("RPUSH " RP " 9"), 1);
    redisReply *r = claim(T0, 10, 8, NULL, NULL);
    assert_int_equal(r->elements - 2, 1);
    assert_string_equal(ev_field(r, 0, 0), "ghost.1.1");
    assert_string_equal(ev_field(r, 0, 1), "9");
    assert_string_equal(ev_field(r, 0, 2), "");
    assert_string_equal(ev_field(r, 0, 7), "");
    freeReplyObject(r);
    char v[32];
    assert_string_equal(hget(K "evt:ghost.1.1", "state", v, sizeof v), "inflight");
    /* ... so the caller can dead-letter it like any claimed event. */
    assert_int_equal(dead("ghost.1.1", "1", 10, T0), 1);
}

/* ---- Ack, retry, dead ---- */

static void test_ack_is_fenced_by_attempt_and_drops_payload(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0);
    freeReplyObject(claim(T0, 1, 8, NULL, NULL));
    assert_int_equal(ack("a.1.1", "2"), 0); /* not this claim */
    char v[32];
    assert_string_equal(hget(K "evt:a.1.1", "state", v, sizeof v), "inflight");
    assert_int_equal(ack("a.1.1", "1"), 1);
    assert_string_equal(hget(K "evt:a.1.1", "state", v, sizeof v), "delivered");
    assert_string_equal(hget(K "evt:a.1.1", "last_status", v, sizeof v), "200");
    assert_string_equal(hget(K "evt:a.1.1", "payload", v, sizeof v), "");
    assert_int_equal(cmd_int("ZCARD " INF), 0);
    long long ttl = cmd_int("PTTL " K "evt:a.1.1");
    assert_true(ttl > KEEP - 60000 && ttl <= KEEP);
    assert_int_equal(ack("a.1.1", "1"), 0); /* twice: no-op */
}

static void test_retry_schedules_due_time_and_can_give_attempt_back(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0);
    enqueue("a.1.2", "A", T0);
    freeReplyObject(claim(T0, 2, 8, NULL, NULL));
    assert_int_equal(retry("a.1.1", "7", 5000, "1", T0), 0); /* stale */
    assert_int_equal(retry("a.1.1", "1", 5000, "1", T0), T0 + 5000);
    assert_int_equal(cmd_int("ZSCORE " RETRY " a.1.1"), T0 + 5000);
    assert_int_equal(cmd_int("ZSCORE " INF " a.1.1"), -1);
    char v[64];
    assert_string_equal(hget(K "evt:a.1.1", "state", v, sizeof v), "retry");
    assert_string_equal(hget(K "evt:a.1.1", "last_error", v, sizeof v), "HTTP 500");
    assert_string_equal(hget(K "evt:a.1.1", "next_at", v, sizeof v), "1000000005000");
    assert_string_equal(hget(K "evt:a.1.1", "attempts", v, sizeof v), "1");
    /* Never sent (drain): the attempt is given back. */
    assert_int_equal(retry("a.1.2", "1", 0, "0", T0), T0);
    assert_string_equal(hget(K "evt:a.1.2", "attempts", v, sizeof v), "0");
}

static void test_promote_moves_due_retries_back_first_in_line(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0);
    freeReplyObject(claim(T0, 1, 8, NULL, NULL));
    assert_true(retry("a.1.1", "1", 5000, "1", T0) > 0);
    enqueue("a.1.2", "A", T0 + 1);
    char n[24], age[24];
    ms(DEAD_T, age);
    ms(T0 + 4999, n);
    redisReply *r = run("promote_due", 3, RETRY, RP, DEAD, K, n, "100", age, NULL);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[1]->integer, 1); /* due in 1 ms */
    freeReplyObject(r);
    ms(T0 + 5000, n);
    r = run("promote_due", 3, RETRY, RP, DEAD, K, n, "100", age, NULL);
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->integer, -1);
    freeReplyObject(r);
    /* It waited longest, so it goes out before a.1.2, with attempt 2. */
    r = claim(T0 + 5000, 1, 8, NULL, NULL);
    assert_string_equal(ev_field(r, 0, 0), "a.1.1");
    assert_string_equal(ev_field(r, 0, 8), "2");
    freeReplyObject(r);
}

static void test_promote_batch_limit_reports_more_due(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "a.1.%d", i);
        enqueue(id, "A", T0);
    }
    freeReplyObject(claim(T0, 5, 8, NULL, NULL));
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "a.1.%d", i);
        assert_true(retry(id, "1", 10, "1", T0) > 0);
    }
    char n[24], age[24];
    ms(DEAD_T, age);
    ms(T0 + 100, n);
    redisReply *r = run("promote_due", 3, RETRY, RP, DEAD, K, n, "2", age, NULL);
    assert_int_equal(r->element[0]->integer, 2);
    assert_int_equal(r->element[1]->integer, 0); /* more are due now */
    freeReplyObject(r);
    assert_int_equal(cmd_int("ZCARD " RETRY), 3);
    assert_int_equal(cmd_int("LLEN " RP), 1);
}

static void test_dead_keeps_payload_caps_count_and_age(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "a.1.%d", i);
        enqueue(id, "A", T0);
    }
    freeReplyObject(claim(T0, 4, 8, NULL, NULL));
    assert_int_equal(dead("a.1.0", "9", 3, T0), 0); /* stale */
    assert_int_equal(dead("a.1.0", "1", 3, T0), 1);
    char v[64];
    assert_string_equal(hget(K "evt:a.1.0", "state", v, sizeof v), "dead");
    assert_string_equal(hget(K "evt:a.1.0", "payload", v, sizeof v), "v1:xx");
    assert_string_equal(hget(K "evt:a.1.0", "last_error", v, sizeof v), "retries exhausted");
    assert_int_equal(cmd_int("ZSCORE " DEAD " a.1.0"), T0);
    assert_int_equal(dead("a.1.1", "1", 3, T0 + 1), 1);
    assert_int_equal(dead("a.1.2", "1", 3, T0 + 2), 1);
    /* The fourth passes the cap of 3: the oldest letter and its hash go. */
    assert_int_equal(dead("a.1.3", "1", 3, T0 + 3), 1);
    assert_int_equal(cmd_int("ZCARD " DEAD), 3);
    assert_int_equal(cmd_int("ZSCORE " DEAD " a.1.0"), -1);
    assert_int_equal(cmd_int("EXISTS " K "evt:a.1.0"), 0);
    assert_int_equal(cmd_int("EXISTS " K "evt:a.1.1"), 1);
    /* promote_due drops letters older than the keep time. */
    char n[24], age[24];
    ms(T0 + 1 + 1000, n);
    ms(1000, age);
    redisReply *r = run("promote_due", 3, RETRY, RP, DEAD, K, n, "100", age, NULL);
    freeReplyObject(r);
    assert_int_equal(cmd_int("ZCARD " DEAD), 2); /* a.1.1 (T0+1) dropped */
    assert_int_equal(cmd_int("EXISTS " K "evt:a.1.1"), 0);
    assert_int_equal(cmd_int("EXISTS " K "evt:a.1.2"), 1);
}

static void test_replay_queues_dead_letter_again_with_same_id(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0);
    freeReplyObject(claim(T0, 1, 8, NULL, NULL));
    assert_int_equal(dead("a.1.1", "1", 10, T0), 1);
    const char *ek = K "evt:a.1.1";
    assert_int_equal(run_int("event_replay", 4, ek, DEAD, K "ready:B", RP, "a.1.1", "B", NULL),
                     -1); /* not B's */
    assert_int_equal(run_int("event_replay", 4, ek, DEAD, K "ready:A", RP, "a.1.1", "A", NULL), 1);
    assert_int_equal(cmd_int("ZCARD " DEAD), 0);
    assert_int_equal(run_int("event_replay", 4, ek, DEAD, K "ready:A", RP, "a.1.1", "A", NULL), 0);
    redisReply *r = claim(T0 + 1, 10, 8, NULL, NULL);
    assert_int_equal(r->elements - 2, 1);
    assert_string_equal(ev_field(r, 0, 0), "a.1.1");
    assert_string_equal(ev_field(r, 0, 7), "v1:xx");
    assert_string_equal(ev_field(r, 0, 8), "1");
    freeReplyObject(r);
    assert_int_equal(ack("a.1.1", "1"), 1);
    assert_int_equal(
        run_int("event_replay", 4, K "evt:nope", DEAD, K "ready:A", RP, "nope", "A", NULL), -1);
}

/* ---- Expired leases ---- */

static void test_requeue_returns_expired_leases_and_fences_old_holder(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0);
    enqueue("a.1.2", "A", T0);
    freeReplyObject(claim(T0, 1, 8, NULL, NULL)); /* a.1.1, lease to T0+LEASE */
    enqueue("a.1.3", "A", T0);
    freeReplyObject(claim(T0 + 10000, 1, 8, NULL, NULL)); /* a.1.2, lease to T0+10000+LEASE */
    char n[24];
    ms(T0 + LEASE - 1, n);
    redisReply *r = run("requeue_expired", 2, INF, RP, K, n, "100", NULL);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(r->element[1]->integer, 1);
    freeReplyObject(r);
    ms(T0 + LEASE, n);
    r = run("requeue_expired", 2, INF, RP, K, n, "100", NULL);
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->integer, 10000);
    freeReplyObject(r);
    char v[32];
    assert_string_equal(hget(K "evt:a.1.1", "state", v, sizeof v), "ready");
    /* The old holder's late result is refused... */
    assert_int_equal(ack("a.1.1", "1"), 0);
    /* ... and the event is the next one out, as attempt 2. */
    r = claim(T0 + LEASE, 1, 8, NULL, NULL);
    assert_string_equal(ev_field(r, 0, 0), "a.1.1");
    assert_string_equal(ev_field(r, 0, 8), "2");
    freeReplyObject(r);
    assert_int_equal(ack("a.1.1", "1"), 0);
    assert_int_equal(ack("a.1.1", "2"), 1);
    /* Nothing in flight: -1. */
    assert_int_equal(ack("a.1.2", "1"), 1);
    r = run("requeue_expired", 2, INF, RP, K, n, "100", NULL);
    assert_int_equal(r->element[1]->integer, -1);
    freeReplyObject(r);
}

/* ---- Stats ---- */

static void test_stats_counts_each_state_and_oldest_ready_age(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0 - 3000);
    enqueue("a.1.2", "A", T0 - 1000);
    enqueue("b.1.1", "B", T0 - 5000);
    enqueue("b.1.2", "B", T0);
    enqueue("c.1.1", "C", T0);
    enqueue("c.1.2", "C", T0);
    redisReply *r = claim(T0, 3, 8, NULL, NULL); /* a.1.1, b.1.1, c.1.1 */
    freeReplyObject(r);
    assert_true(retry("a.1.1", "1", 1000, "1", T0) > 0);
    assert_int_equal(dead("b.1.1", "1", 10, T0), 1);
    char n[24];
    ms(T0, n);
    r = run("event_stats", 4, RP, INF, RETRY, DEAD, K, n, NULL);
    assert_int_equal(r->elements, 5);
    assert_int_equal(r->element[0]->integer, 3); /* a.1.2, b.1.2, c.1.2 */
    assert_int_equal(r->element[1]->integer, 1); /* c.1.1 */
    assert_int_equal(r->element[2]->integer, 1);
    assert_int_equal(r->element[3]->integer, 1);
    assert_int_equal(r->element[4]->integer, 1000); /* a.1.2 */
    freeReplyObject(r);
}

/* event_partners (the dashboard's queues): the same depths as event_stats,
 * and per partner its ready and retry events and its oldest one's creation,
 * with the retry set read only up to the limit. */
static void test_partners_per_partner_counts_and_oldest(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0 - 3000);
    enqueue("a.1.2", "A", T0 - 1000);
    enqueue("b.1.1", "B", T0 - 5000);
    enqueue("b.1.2", "B", T0 - 200);
    enqueue("c.1.1", "C", T0 - 100);
    redisReply *r = claim(T0, 2, 8, NULL, NULL); /* a.1.1, b.1.1 */
    freeReplyObject(r);
    assert_true(retry("a.1.1", "1", 1000, "1", T0) > 0);
    assert_true(retry("b.1.1", "1", 2000, "1", T0) > 0);
    char n[24];
    ms(T0, n);
    r = run("event_partners", 4, RP, INF, RETRY, DEAD, K, n, "10", NULL);
    assert_int_equal(r->elements, 6 + 3 * 4);
    assert_int_equal(r->element[0]->integer, 3); /* a.1.2, b.1.2, c.1.1 */
    assert_int_equal(r->element[1]->integer, 0);
    assert_int_equal(r->element[2]->integer, 2);
    assert_int_equal(r->element[3]->integer, 0);
    assert_int_equal(r->element[4]->integer, 1000); /* a.1.2 */
    assert_int_equal(r->element[5]->integer, 1);    /* the retry set read whole */
    /* Each partner once with its counts; A's and B's oldest events are the
     * ones in retry. */
    long long want_oldest[3] = {0};
    for (size_t i = 6; i < r->elements; i += 4) {
        const char *pid = r->element[i]->str;
        long long ready = r->element[i + 1]->integer, rt = r->element[i + 2]->integer;
        long long oldest = atoll(r->element[i + 3]->str);
        assert_int_equal(ready, 1);
        assert_int_equal(rt, pid[0] == 'C' ? 0 : 1);
        want_oldest[pid[0] - 'A'] = oldest;
    }
    assert_int_equal(want_oldest[0], T0 - 3000);
    assert_int_equal(want_oldest[1], T0 - 5000);
    assert_int_equal(want_oldest[2], T0 - 100);
    freeReplyObject(r);
    /* A limit under the retry set's size: only the first due is read. */
    r = run("event_partners", 4, RP, INF, RETRY, DEAD, K, n, "1", NULL);
    assert_int_equal(r->element[5]->integer, 0);
    long long retries = 0;
    for (size_t i = 6; i < r->elements; i += 4)
        retries += r->element[i + 2]->integer;
    assert_int_equal(retries, 1);
    freeReplyObject(r);
}

/* event_delete: a dead letter goes for good; anything else stays. */
static void test_delete_removes_only_dead_letters(void **state)
{
    (void)state;
    enqueue("a.1.1", "A", T0);
    enqueue("a.1.2", "A", T0);
    freeReplyObject(claim(T0, 1, 8, NULL, NULL));
    assert_int_equal(dead("a.1.1", "1", 10, T0), 1);
    assert_int_equal(run_int("event_delete", 2, K "evt:a.1.2", DEAD, "a.1.2", NULL), 0);
    assert_int_equal(cmd_int("EXISTS " K "evt:a.1.2"), 1);
    assert_int_equal(run_int("event_delete", 2, K "evt:a.1.1", DEAD, "a.1.1", NULL), 1);
    assert_int_equal(cmd_int("EXISTS " K "evt:a.1.1"), 0);
    assert_int_equal(cmd_int("ZCARD " DEAD), 0);
    assert_int_equal(run_int("event_delete", 2, K "evt:a.1.1", DEAD, "a.1.1", NULL), -1);
}

/* stat_add: increments, and the key always has its TTL. */
static void test_stat_add_increments_and_expires(void **state)
{
    (void)state;
    assert_int_equal(
        run_int("stat_add", 1, "si:stat:100", "172800", "delivered", "1", "lat_50", "1", NULL), 1);
    assert_int_equal(run_int("stat_add", 1, "si:stat:100", "172800", "delivered", "2", NULL), 1);
    char v[32];
    assert_string_equal(hget("si:stat:100", "delivered", v, sizeof v), "3");
    assert_string_equal(hget("si:stat:100", "lat_50", v, sizeof v), "1");
    long long ttl = cmd_int("TTL si:stat:100");
    assert_true(ttl > 172000 && ttl <= 172800);
}

/* ---- Invariants under a random mix of operations ---- */

/* Checks: a pid is in ready_partners (once) exactly when its list is
 * non-empty; every event is in exactly one of ready lists, inflight, retry,
 * dead, or is delivered; its state field says which. */
static void check_invariants(int nevents, int npartners)
{
    redisReply *r = redisCommand(rc, "LRANGE " RP " 0 -1");
    for (int p = 0; p < npartners; p++) {
        char pid[16], list[64];
        snprintf(pid, sizeof pid, "P%d", p);
        snprintf(list, sizeof list, K "ready:%s", pid);
        int inrp = 0;
        for (size_t i = 0; i < r->elements; i++)
            inrp += strcmp(r->element[i]->str, pid) == 0;
        long long len = cmd_int("LLEN %s", list);
        if (inrp != (len > 0))
            fail_msg("partner %s: %d times in ready_partners, list length %lld", pid, inrp, len);
    }
    freeReplyObject(r);
    for (int e = 0; e < nevents; e++) {
        char eid[32], key[64], st[32];
        snprintf(eid, sizeof eid, "e.1.%d", e);
        snprintf(key, sizeof key, K "evt:%s", eid);
        hget(key, "state", st, sizeof st);
        if (st[0] == '\0')
            continue; /* not enqueued yet */
        char pid[16], list[64];
        hget(key, "pid", pid, sizeof pid);
        snprintf(list, sizeof list, K "ready:%s", pid);
        int in_ready = 0;
        redisReply *l = redisCommand(rc, "LRANGE %s 0 -1", list);
        for (size_t i = 0; i < l->elements; i++)
            in_ready += strcmp(l->element[i]->str, eid) == 0;
        freeReplyObject(l);
        int in_inf = cmd_int("ZSCORE " INF " %s", eid) >= 0;
        int in_retry = cmd_int("ZSCORE " RETRY " %s", eid) >= 0;
        int in_dead = cmd_int("ZSCORE " DEAD " %s", eid) >= 0;
        int delivered = strcmp(st, "delivered") == 0;
        if (in_ready + in_inf + in_retry + in_dead + delivered != 1)
            fail_msg("%s (state %s): ready %d inflight %d retry %d dead %d", eid, st, in_ready,
                     in_inf, in_retry, in_dead);
        int ok = (in_ready && strcmp(st, "ready") == 0) ||
                 (in_inf && strcmp(st, "inflight") == 0) ||
                 (in_retry && strcmp(st, "retry") == 0) || (in_dead && strcmp(st, "dead") == 0) ||
                 delivered;
        if (!ok)
            fail_msg("%s: state %s does not match where it is", eid, st);
    }
}

struct held {
    char eid[32];
    char token[8];
};

static void test_random_operations_keep_queue_invariants(void **state)
{
    (void)state;
    enum { NEV = 60, NP = 4, STEPS = 400 };
    struct held held[NEV];
    int nheld = 0, enq = 0;
    long long now = T0;
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    char n[24], age[24];
    ms(DEAD_T, age);
    for (int step = 0; step < STEPS; step++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int op = (int)(s % 8);
        now += (long long)(s >> 40) % 4000;
        ms(now, n);
        if (op <= 1 && enq < NEV) {
            char eid[32], pid[8];
            snprintf(eid, sizeof eid, "e.1.%d", enq);
            snprintf(pid, sizeof pid, "P%d", (int)((s >> 20) % NP));
            enqueue(eid, pid, now);
            enq++;
        } else if (op == 2) {
            redisReply *r = claim(now, 3, 2, NULL, NULL);
            for (size_t i = 2; i < r->elements && nheld < NEV; i++, nheld++) {
                snprintf(held[nheld].eid, sizeof held[nheld].eid, "%s",
                         r->element[i]->element[0]->str);
                snprintf(held[nheld].token, sizeof held[nheld].token, "%s",
                         r->element[i]->element[8]->str);
            }
            freeReplyObject(r);
        } else if (op >= 3 && op <= 5 && nheld > 0) {
            int h = (int)((s >> 24) % (uint64_t)nheld);
            if (op == 3)
                ack(held[h].eid, held[h].token);
            else if (op == 4)
                retry(held[h].eid, held[h].token, (long long)(s >> 50) % 5000, "1", now);
            else
                dead(held[h].eid, held[h].token, 1000, now);
            held[h] = held[--nheld]; /* a result may be stale: the scripts refuse it */
        } else if (op == 6) {
            freeReplyObject(run("promote_due", 3, RETRY, RP, DEAD, K, n, "5", age, NULL));
        } else {
            freeReplyObject(run("requeue_expired", 2, INF, RP, K, n, "5", NULL));
        }
        check_invariants(NEV, NP);
    }
    assert_true(enq > 10);
}

int main(void)
{
    if (scripts_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_enqueue_stores_queues_and_is_idempotent, flush),
        cmocka_unit_test_setup(test_enqueue_publishes_wake_when_a_partner_becomes_ready, flush),
        cmocka_unit_test_setup(test_claim_round_robin_over_partners_fifo_within, flush),
        cmocka_unit_test_setup(test_claim_honours_batch_size_and_reports_more, flush),
        cmocka_unit_test_setup(test_claim_skips_partners_without_free_slots, flush),
        cmocka_unit_test_setup(test_claim_returns_long_payload_by_length_only, flush),
        cmocka_unit_test_setup(test_claim_returns_event_without_hash_with_empty_fields, flush),
        cmocka_unit_test_setup(test_ack_is_fenced_by_attempt_and_drops_payload, flush),
        cmocka_unit_test_setup(test_retry_schedules_due_time_and_can_give_attempt_back, flush),
        cmocka_unit_test_setup(test_promote_moves_due_retries_back_first_in_line, flush),
        cmocka_unit_test_setup(test_promote_batch_limit_reports_more_due, flush),
        cmocka_unit_test_setup(test_dead_keeps_payload_caps_count_and_age, flush),
        cmocka_unit_test_setup(test_replay_queues_dead_letter_again_with_same_id, flush),
        cmocka_unit_test_setup(test_requeue_returns_expired_leases_and_fences_old_holder, flush),
        cmocka_unit_test_setup(test_stats_counts_each_state_and_oldest_ready_age, flush),
        cmocka_unit_test_setup(test_partners_per_partner_counts_and_oldest, flush),
        cmocka_unit_test_setup(test_delete_removes_only_dead_letters, flush),
        cmocka_unit_test_setup(test_stat_add_increments_and_expires, flush),
        cmocka_unit_test_setup(test_random_operations_keep_queue_invariants, flush),
    };
    int rc_ = cmocka_run_group_tests(tests, setup, teardown);
    scripts_shutdown();
    return rc_;
}
