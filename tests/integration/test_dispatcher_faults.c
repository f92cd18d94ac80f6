/*
 * superimap-dispatcher under faults, against a real redis-server and the test
 * receiver: one partner's receiver hangs while another's events flow
 * (fairness, with the other partner's p99), kill -9 with events in flight
 * (a new dispatcher delivers every one; duplicates counted), a receiver that
 * keeps failing (the circuit breaker stops sending, then a probe closes it),
 * and SIGTERM while requests are in flight (they finish, nothing is lost).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/integration/harness.h"
#include "tests/integration/receiver.h"
#include "tests/integration/test_dispatcher_fixture.h"

static struct redis_srv redis;
static redisContext *rc;
static struct receiver *rx;
static char base[64];

static int suite_setup(void **state)
{
    (void)state;
    return dx_suite_start(&redis, &rc);
}

static int suite_teardown(void **state)
{
    (void)state;
    return dx_suite_stop(&redis, rc);
}

static int setup(void **state)
{
    (void)state;
    return dx_case_start(rc, 0, &rx, base);
}

static int teardown(void **state)
{
    (void)state;
    return dx_case_stop(&rx);
}

static void start_dispatcher(struct proc *p, const char *id, const char *timeout_ms)
{
    dx_start_dispatcher(p, &redis, id, timeout_ms, "100");
}

static void partner(const char *pid, const char *f1, const char *v1, const char *f2, const char *v2)
{
    dx_partner(rc, rx, base, pid, f1, v1, f2, v2);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* Sum of an integer query (ZCARD, LLEN) over the key si:{k}:<name> of every
 * shard. */
static long long over_shards(const char *cmd, const char *name)
{
    long long sum = 0;
    for (int k = 0; k < WF_SHARDS; k++) {
        char key[64];
        snprintf(key, sizeof key, "si:{%d}:%s", k, name);
        sum += wf_int(rc, "%s %s", cmd, key);
    }
    return sum;
}

/* ---- Fairness ---- */

/* Enqueues n events of partner B (pid 22) numbered from first and returns
 * the p50 and p99 of enqueue-to-receipt, in ms; checks both signatures. */
static void measure_b(unsigned first, int n, long long *p50, long long *p99)
{
    static char eids[500][128];
    static long long enq_us[500];
    static long long lat[500];
    assert_true(n <= 500);
    int before = receiver_count(rx, "22");
    for (int i = 0; i < n; i++) {
        char uid[25];
        wf_uid(uid, 2200 + (unsigned)i % 17);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        enq_us[i] = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        assert_int_equal(wf_new_mail(rc, "22", uid, "b", first + (unsigned)i, 1024, eids[i]), 1);
    }
    assert_int_equal(receiver_wait(rx, "22", before + n, 30000), before + n);
    static struct receiver_request reqs[1200];
    size_t m = receiver_requests(rx, reqs, sizeof reqs / sizeof reqs[0]);
    int nl = 0;
    for (size_t i = 0; i < m; i++) {
        if (strcmp(reqs[i].pid, "22") != 0)
            continue;
        for (int j = 0; j < n; j++)
            if (strcmp(reqs[i].id, eids[j]) == 0) {
                lat[nl++] = (reqs[i].mono_us - enq_us[j]) / 1000;
                assert_true(reqs[i].body_sig_ok && reqs[i].std_sig_ok);
                break;
            }
    }
    assert_int_equal(nl, n);
    qsort(lat, (size_t)nl, sizeof lat[0], cmp_ll);
    *p50 = lat[nl / 2];
    *p99 = lat[nl * 99 / 100];
}

static void test_hanging_receiver_does_not_delay_other_partner(void **state)
{
    (void)state;
    enum { A_EVENTS = 100, B_EVENTS = 500 };
    partner("21", NULL, NULL, NULL, NULL); /* A: will hang */
    partner("22", NULL, NULL, NULL, NULL); /* B */
    struct proc d;
    start_dispatcher(&d, "d-fair", "20000");
    /* Baseline: B alone (its own cap of 8 and this machine's speed). */
    long long base50, base99;
    measure_b(1, B_EVENTS, &base50, &base99);

    /* A's receiver hangs with A's whole cap of requests; B goes again. */
    struct receiver_rule hang = {.hang = 1};
    receiver_set_rule(rx, "21", &hang);
    char eid[128], uid[25];
    for (unsigned i = 0; i < A_EVENTS; i++) {
        wf_uid(uid, 2100 + i % 13);
        assert_int_equal(wf_new_mail(rc, "21", uid, "a", i + 1, 1024, eid), 1);
    }
    assert_int_equal(receiver_wait(rx, "21", 8, 10000), 8);
    long long p50, p99;
    measure_b(1000, B_EVENTS, &p50, &p99);
    printf("fairness: partner B, 500 events: p50 %lld ms, p99 %lld ms alone; p50 %lld ms, "
           "p99 %lld ms while partner A hangs\n",
           base50, base99, p50, p99);
    /* A never got more than its concurrency cap, however many it had. */
    assert_int_equal(receiver_count(rx, "21"), 8);
    /* Fairness is that all of B's events were delivered while every one of
     * A's slots hung (measure_b() waits for each of them). The latencies are
     * printed, not asserted: timings on a shared machine are noise (make
     * bench measures them). */
    harness_proc_stop(&d);
}

/* ---- Crash ---- */

static void test_kill_9_with_events_in_flight_loses_nothing(void **state)
{
    (void)state;
    enum { EVENTS = 400 };
    partner("31", "webhook_concurrency", "50", NULL, NULL);
    struct receiver_rule slow = {.delay_ms = 100};
    receiver_set_rule(rx, "31", &slow);
    static char eids[EVENTS][128];
    for (unsigned i = 0; i < EVENTS; i++) {
        char uid[25];
        wf_uid(uid, 3100 + i % 29);
        assert_int_equal(wf_new_mail(rc, "31", uid, "c", i + 1, 512, eids[i]), 1);
    }
    struct proc d1, d2;
    start_dispatcher(&d1, "d-crash-1", "2000"); /* lease 4 s */
    assert_true(receiver_wait(rx, "31", 100, 15000) >= 100);
    harness_proc_signal(&d1, SIGKILL);
    assert_int_equal(harness_proc_wait(&d1, 5000), 0);
    long long inflight = over_shards("ZCARD", "inflight");
    int before = receiver_count(rx, "31");
    printf("crash: killed with %lld events leased, %d requests received\n", inflight, before);
    assert_true(inflight > 0); /* there was something in flight to lose */

    start_dispatcher(&d2, "d-crash-2", "2000");
    static struct receiver_request reqs[EVENTS * 2];
    long long deadline = harness_now_ms() + 30000;
    int missing = EVENTS;
    size_t n = 0;
    while (missing > 0 && harness_now_ms() < deadline) {
        harness_poll_pause();
        n = receiver_requests(rx, reqs, sizeof reqs / sizeof reqs[0]);
        missing = 0;
        for (int j = 0; j < EVENTS; j++) {
            int found = 0;
            for (size_t i = 0; i < n && !found; i++)
                found = strcmp(reqs[i].id, eids[j]) == 0;
            missing += !found;
        }
    }
    if (missing > 0)
        fail_msg("%d of %d events never delivered after the crash", missing, EVENTS);
    int dups = (int)n - EVENTS;
    printf("crash: all %d events delivered; %d duplicates (at-least-once; bound %lld)\n", EVENTS,
           dups, inflight);
    /* Only what was leased at the kill can come twice. */
    assert_true(dups >= 0 && dups <= inflight);
    /* And the queue ends empty. */
    deadline = harness_now_ms() + 10000;
    while (over_shards("ZCARD", "inflight") > 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(over_shards("ZCARD", "inflight"), 0);
    assert_int_equal(over_shards("LLEN", "ready_partners"), 0);
    assert_int_equal(over_shards("ZCARD", "retry"), 0);
    assert_int_equal(over_shards("ZCARD", "dead"), 0);
    harness_proc_stop(&d2);
}

/* ---- Circuit breaker ---- */

static double metric(const char *text, const char *series)
{
    for (const char *p = strstr(text, series); p != NULL; p = strstr(p + 1, series))
        if (p == text || p[-1] == '\n')
            return atof(p + strlen(series));
    return -1;
}

static int log_count(const char *pid, const char *field, const char *needle)
{
    redisReply *log = wf_cmd(rc, "XRANGE si:log:%s - +", pid);
    int n = 0;
    for (size_t i = 0; i < log->elements; i++) {
        const redisReply *f = log->element[i]->element[1];
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, field) == 0 &&
                strstr(f->element[j + 1]->str, needle) != NULL)
                n++;
    }
    freeReplyObject(log);
    return n;
}

/* Partner pid, one request at a time with retry schedule schedule, whose
 * receiver answers 500; 20 new_mail events queued for it. */
static void failing_partner_with_mail(const char *pid, const char *schedule, unsigned user)
{
    partner(pid, "webhook_concurrency", "1", "retry_schedule", schedule);
    struct receiver_rule down = {.status = 500};
    receiver_set_rule(rx, pid, &down);
    char uid[25], eid[128];
    wf_uid(uid, user);
    for (unsigned i = 1; i <= 20; i++)
        assert_int_equal(wf_new_mail(rc, pid, uid, "d", i, 100, eid), 1);
}

static void test_failing_url_opens_circuit_then_probe_closes_it(void **state)
{
    (void)state;
    /* One request at a time; with time divided by 20 the circuit opens for
     * 1.5 s and the schedule's first retry is 3 minutes away. */
    failing_partner_with_mail("41", "3600", 4100);
    struct proc d;
    dx_start_dispatcher(&d, &redis, "d-breaker", "5000", "20");
    /* 5 failures open the circuit; the other 15 events are deferred without
     * a request and without spending an attempt. */
    long long deadline = harness_now_ms() + 10000;
    while (log_count("41", "result", "deferred") < 15 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(log_count("41", "result", "deferred"), 15);
    assert_int_equal(log_count("41", "error", "circuit open"), 15);
    assert_int_equal(log_count("41", "result", "retry"), 5);
    assert_int_equal(receiver_count(rx, "41"), 5);
    static char body[1 << 20];
    assert_int_equal(harness_http_get(d.port, "/metrics", body, sizeof body), 200);
    deadline = harness_now_ms() + 5000;
    while (metric(body, "superimap_webhook_circuits{state=\"open\"} ") != 1 &&
           harness_now_ms() < deadline) {
        harness_poll_pause();
        harness_http_get(d.port, "/metrics", body, sizeof body);
    }
    assert_true(metric(body, "superimap_webhook_circuits{state=\"open\"} ") == 1);
    assert_true(metric(body, "superimap_webhook_deliveries_total{result=\"deferred\"} ") >= 15);

    /* The receiver recovers: at the end of the open period one deferred event
     * is sent as the probe, succeeds and closes the circuit; the other
     * deferred events follow. The 5 failed ones wait for their retry. */
    struct receiver_rule up = {0};
    receiver_set_rule(rx, "41", &up);
    assert_int_equal(receiver_wait(rx, "41", 20, 15000), 20);
    struct receiver_request reqs[24];
    size_t n = receiver_requests(rx, reqs, 24);
    assert_int_equal(n, 20);
    for (size_t i = 5; i < n; i++)
        assert_int_equal(reqs[i].status, 200);
    deadline = harness_now_ms() + 5000;
    do {
        harness_poll_pause();
        harness_http_get(d.port, "/metrics", body, sizeof body);
    } while (metric(body, "superimap_webhook_circuits{state=\"closed\"} ") != 1 &&
             harness_now_ms() < deadline);
    assert_true(metric(body, "superimap_webhook_circuits{state=\"closed\"} ") == 1);
    assert_true(metric(body, "superimap_webhook_circuits{state=\"open\"} ") == 0);
    assert_int_equal(log_count("41", "result", "delivered"), 15);
    harness_proc_stop(&d);
}

/* A partner whose retry schedule is shorter than the receiver's outage: its
 * events wait for the circuit without becoming dead letters (they were never
 * sent). They used to go dead once they had waited as long as the schedule
 * would have taken (here 2 s / 20 = 100 ms). */
static void test_circuit_open_outlasts_a_short_retry_schedule(void **state)
{
    (void)state;
    failing_partner_with_mail("42", "2", 4200);
    struct proc d;
    dx_start_dispatcher(&d, &redis, "d-hold", "5000", "20");
    /* 5 failures open the circuit (1.5 s); its first probe fails too and
     * opens it for 3 s: every other event has waited far past 100 ms. */
    assert_int_equal(receiver_wait(rx, "42", 6, 15000), 6);
    struct receiver_rule up = {0};
    receiver_set_rule(rx, "42", &up);
    /* Every event is delivered once the next probe succeeds, but for a
     * failed probe that had spent its one retry already (one of the first 5):
     * a dead letter, of an event that was sent. */
    long long deadline = harness_now_ms() + 20000;
    int delivered, dead;
    while ((delivered = log_count("42", "result", "delivered")) +
                   (dead = log_count("42", "result", "dead")) <
               20 &&
           harness_now_ms() < deadline)
        harness_poll_pause();
    printf("hold: %d delivered, %d dead\n", delivered, dead);
    assert_int_equal(log_count("42", "error", "never sent"), 0);
    assert_int_equal(delivered + dead, 20);
    assert_true(dead <= 1);
    harness_proc_stop(&d);
}

/* An outage longer than SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS (1 h, divided
 * by 1,000: 3.6 s): events never sent become dead letters that say why, and
 * not before the hold has passed. */
static void test_circuit_hold_ends_in_dead_letters_that_say_why(void **state)
{
    (void)state;
    long long t0 = harness_now_ms();
    failing_partner_with_mail("43", "36000", 4300);
    char timeout[64], div[64];
    snprintf(timeout, sizeof timeout, "SUPERIMAP_WEBHOOK_TIMEOUT_MS=%s", "5000");
    snprintf(div, sizeof div, "SUPERIMAP_WEBHOOK_TIME_DIVISOR=%s", "1000");
    const char *env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", div, timeout,
                         "SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS=1", NULL};
    struct proc d;
    assert_int_equal(harness_node_start(&d, &redis, "superimap-dispatcher", "d-hold-end", env), 0);
    long long deadline = harness_now_ms() + 20000;
    while (log_count("43", "error", "SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS") == 0 &&
           harness_now_ms() < deadline)
        harness_poll_pause();
    long long took = harness_now_ms() - t0;
    printf("hold: the first event never sent went dead %lld ms after it was queued\n", took);
    assert_true(log_count("43", "error", "SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS") >= 1);
    assert_true(took >= 3600);
    harness_proc_stop(&d);
}

/* ---- Redis restart ---- */

static void test_redis_restart_then_delivers_again(void **state)
{
    (void)state;
    partner("61", NULL, NULL, NULL, NULL);
    char uid[25], eid[128];
    wf_uid(uid, 6100);
    assert_int_equal(wf_new_mail(rc, "61", uid, "f", 1, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-restart", "5000");
    assert_int_equal(receiver_wait(rx, "61", 1, 10000), 1);

    /* Redis goes away (and comes back empty: it keeps no data in tests). */
    harness_redis_kill(&redis, 1);
    assert_int_equal(harness_wait_http(d.port, "/readyz", 503, 10000), 0);
    assert_int_equal(harness_redis_restart(&redis), 0);
    redisFree(rc);
    rc = harness_redis_connect(&redis);
    assert_non_null(rc);
    assert_int_equal(harness_wait_http(d.port, "/readyz", 200, 15000), 0);
    partner("61", NULL, NULL, NULL, NULL);
    assert_int_equal(wf_new_mail(rc, "61", uid, "f", 2, 100, eid), 1);
    assert_int_equal(receiver_wait(rx, "61", 2, 10000), 2);
    struct receiver_request r[2];
    assert_int_equal(receiver_requests(rx, r, 2), 2);
    assert_string_equal(r[1].id, eid);
    assert_true(r[1].body_sig_ok && r[1].std_sig_ok);
    assert_int_equal(harness_proc_wait(&d, 0), -1); /* the same process throughout */
    harness_proc_stop(&d);
}

/* ---- Graceful stop ---- */

static void test_sigterm_finishes_requests_in_flight_and_loses_nothing(void **state)
{
    (void)state;
    partner("51", NULL, NULL, NULL, NULL); /* cap 8 */
    struct receiver_rule slow = {.delay_ms = 500};
    receiver_set_rule(rx, "51", &slow);
    char uid[25], eid[128];
    wf_uid(uid, 5100);
    for (unsigned i = 1; i <= 40; i++)
        assert_int_equal(wf_new_mail(rc, "51", uid, "e", i, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-drain", "5000");
    assert_int_equal(receiver_wait(rx, "51", 8, 10000), 8);
    harness_proc_signal(&d, SIGTERM);
    assert_int_equal(harness_proc_wait(&d, 15000), 0);
    assert_int_equal(d.exit_code, 0);
    int sent = receiver_count(rx, "51");
    assert_true(sent >= 8 && sent < 40);
    /* Nothing is left leased: each request's result was recorded, the rest
     * still wait, ready, with no attempt spent. */
    assert_int_equal(over_shards("ZCARD", "inflight"), 0);
    int k = wf_shard(uid);
    assert_int_equal(wf_int(rc, "LLEN si:{%d}:ready:51", k), 40 - sent);
    redisReply *log = wf_cmd(rc, "XRANGE si:log:51 - +");
    assert_int_equal((int)log->elements, sent);
    freeReplyObject(log);
    assert_true(harness_log_contains(&d, "dispatcher drained"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hanging_receiver_does_not_delay_other_partner, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill_9_with_events_in_flight_loses_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failing_url_opens_circuit_then_probe_closes_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_circuit_open_outlasts_a_short_retry_schedule, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_circuit_hold_ends_in_dead_letters_that_say_why, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_restart_then_delivers_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_finishes_requests_in_flight_and_loses_nothing,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
