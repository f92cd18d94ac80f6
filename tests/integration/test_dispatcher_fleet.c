/*
 * Three superimap-dispatchers sharing the queue shards (docs/architecture.md section 5,
 * cmd/dispatcher/owner.c), against a real redis-server and the test
 * receiver: every shard's lease si:{k}:owner is held by one live
 * incarnation "<node>:<g>" of a running dispatcher (its alive key in that
 * shard exists) and each dispatcher owns some; events enqueued into every
 * shard reach the receiver once each (counted by webhook-id). Then one
 * dispatcher goes: SIGTERM (its shards are taken over within 5 s: it
 * releases its leases and deletes its alive keys), kill -9 (taken over once
 * its alive keys expire, within 30 s), or SIGSTOP past the alive keys'
 * life (taken over; on SIGCONT it fences itself and holds none of the
 * shards it lost). Events enqueued meanwhile are delivered, none twice.
 * Takeover times are printed, not asserted.
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

#define NDISP 3
#define PID   "7"

/* The suite's Redis and, per test, the receiver and the dispatchers. */
static struct {
    struct redis_srv redis;
    redisContext *rc;
    struct receiver *rx;
    struct proc d[NDISP];
    const char *ids[NDISP];
    int running[NDISP];      /* counted as live owners */
    char uid[WF_SHARDS][25]; /* a user id in each shard */
    unsigned next_uid;       /* message UID of the next event enqueued */
    int enqueued;
} fx = {.ids = {"d-fleet-a", "d-fleet-b", "d-fleet-c"}};

/* ---- Fixture ---- */

static int suite_setup(void **state)
{
    (void)state;
    /* One user per shard: the events of the tests land in every shard. */
    int found = 0;
    for (unsigned n = 1; found < WF_SHARDS && n < 100000; n++) {
        char uid[25];
        wf_uid(uid, n);
        int k = wf_shard(uid);
        if (fx.uid[k][0] == '\0') {
            memcpy(fx.uid[k], uid, sizeof uid);
            found++;
        }
    }
    return found < WF_SHARDS ? -1 : dx_suite_start(&fx.redis, &fx.rc);
}

static int suite_teardown(void **state)
{
    (void)state;
    return dx_suite_stop(&fx.redis, fx.rc);
}

/* A clean Redis, the receiver (each answer delayed by delay_ms, so that
 * some deliveries are in flight when a dispatcher goes) and NDISP
 * dispatchers, ready. */
static int start_fleet(int delay_ms)
{
    fx.next_uid = 1;
    fx.enqueued = 0;
    char base[64], whsec[64];
    if (dx_case_start(fx.rc, 0, &fx.rx, base) < 0)
        return -1;
    wf_whsec(whsec, sizeof whsec);
    wf_partner(fx.rc, PID, base, "fleet-api-key-0123456789", whsec, "webhook_concurrency", "64",
               NULL);
    receiver_add_partner(fx.rx, PID, "fleet-api-key-0123456789", whsec, NULL);
    struct receiver_rule rule = {.delay_ms = delay_ms};
    receiver_set_rule(fx.rx, PID, &rule);
    const char *env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", "SUPERIMAP_WEBHOOK_TIMEOUT_MS=5000",
                         NULL};
    for (int i = 0; i < NDISP; i++) {
        if (harness_node_start(&fx.d[i], &fx.redis, "superimap-dispatcher", fx.ids[i], env) < 0)
            return -1;
        fx.running[i] = 1;
    }
    for (int i = 0; i < NDISP; i++)
        if (harness_wait_http(fx.d[i].port, "/readyz", 200, 10000) < 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return dx_case_stop(&fx.rx);
}

/* ---- Shard leases ---- */

/* The owners as read now: per running dispatcher, the shards whose lease
 * names a live incarnation of it; bad counts the shards held by nobody
 * live (free, another id, or a token whose alive key is gone). Writes
 * dispatcher i's token into tokens[i] when given. */
struct owners {
    int count[NDISP];
    int bad;
};

static struct owners read_owners(char tokens[][160])
{
    struct owners o = {{0}, 0};
    for (int k = 0; k < WF_SHARDS; k++) {
        char owner[160], id[160], key[64];
        snprintf(key, sizeof key, "si:{%d}:owner", k);
        redisReply *r = wf_cmd(fx.rc, "GET %s", key);
        snprintf(owner, sizeof owner, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
        freeReplyObject(r);
        memcpy(id, owner, sizeof id);
        char *colon = strrchr(id, ':');
        int i = NDISP;
        if (colon != NULL) {
            *colon = '\0';
            for (i = 0; i < NDISP && (!fx.running[i] || strcmp(id, fx.ids[i]) != 0); i++)
                ;
        }
        if (i == NDISP || wf_int(fx.rc, "EXISTS si:{%d}:alive:%s", k, owner) != 1) {
            o.bad++;
            continue;
        }
        o.count[i]++;
        if (tokens != NULL)
            memcpy(tokens[i], owner, 160);
    }
    return o;
}

/* Polls until every shard is held by a live incarnation of a running
 * dispatcher and, when each is set, each running one holds some; returns
 * the ms it took, or fails after ms. */
static long long wait_owned(int each_holds, int ms)
{
    long long t0 = harness_now_ms();
    for (;;) {
        struct owners o = read_owners(NULL);
        int each = 1;
        for (int i = 0; i < NDISP && each_holds; i++)
            each &= !fx.running[i] || o.count[i] > 0;
        if (o.bad == 0 && each)
            return harness_now_ms() - t0;
        if (harness_now_ms() - t0 > ms)
            fail_msg("shards not all owned by the live dispatchers after %d ms: %d held by "
                     "nobody live; owned %d/%d/%d",
                     ms, o.bad, o.count[0], o.count[1], o.count[2]);
        harness_poll_pause();
    }
}

static long long wait_owners(int ms)
{
    return wait_owned(1, ms);
}

/* ---- Events ---- */

/* per new_mail events into every shard. */
static void enqueue_all_shards(int per)
{
    for (int n = 0; n < per; n++)
        for (int k = 0; k < WF_SHARDS; k++) {
            char eid[128];
            assert_int_equal(wf_new_mail(fx.rc, PID, fx.uid[k], "fleet", fx.next_uid++, 200, eid),
                             1);
            fx.enqueued++;
        }
}

static long long over_shards(const char *cmd, const char *what)
{
    long long n = 0;
    for (int k = 0; k < WF_SHARDS; k++)
        n += wf_int(fx.rc, "%s si:{%d}:%s", cmd, k, what);
    return n;
}

/* Waits until every event enqueued so far has reached the receiver and the
 * queues are empty (every result recorded), then checks that each came
 * once: as many requests as events, all webhook-ids distinct. */
static void expect_each_delivered_once(int ms)
{
    long long deadline = harness_now_ms() + ms;
    int got = receiver_wait(fx.rx, PID, fx.enqueued, ms);
    if (got < fx.enqueued)
        fail_msg("%d of %d events delivered after %d ms", got, fx.enqueued, ms);
    while ((over_shards("ZCARD", "inflight") > 0 || over_shards("LLEN", "ready_partners") > 0 ||
            over_shards("ZCARD", "retry") > 0) &&
           harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(over_shards("ZCARD", "inflight"), 0);
    assert_int_equal(over_shards("LLEN", "ready_partners"), 0);
    assert_int_equal(over_shards("ZCARD", "retry"), 0);
    static struct receiver_request reqs[2048];
    size_t n = receiver_requests(fx.rx, reqs, sizeof reqs / sizeof reqs[0]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(reqs[i].id, reqs[j].id) == 0)
                fail_msg("webhook-id %s delivered twice", reqs[i].id);
    assert_int_equal((int)n, fx.enqueued);
}

/* ---- Tests ---- */

static void test_three_dispatchers_split_the_shards_and_deliver_each_event_once(void **state)
{
    (void)state;
    assert_int_equal(start_fleet(0), 0);
    printf("fleet: 3 dispatchers own every shard %lld ms after ready\n", wait_owners(20000));
    struct owners o = read_owners(NULL);
    printf("fleet: shards owned %d, %d, %d\n", o.count[0], o.count[1], o.count[2]);
    enqueue_all_shards(3);
    expect_each_delivered_once(20000);
    double sum = 0;
    for (int i = 0; i < NDISP; i++)
        sum += harness_metric(fx.d[i].port,
                              "superimap_webhook_deliveries_total{result=\"delivered\"}");
    assert_true(sum == fx.enqueued);
    /* Once placement settles (a shard placed elsewhere is released only when
     * its calls are answered, so the first full ownership may still be
     * uneven), the leases, the metrics and si:node:<id> "shards" agree. */
    long long deadline = harness_now_ms() + 12000; /* a heartbeat every 5 s */
    int agree;
    do {
        o = read_owners(NULL);
        agree = o.bad == 0;
        for (int i = 0; i < NDISP; i++) {
            char key[64], v[16];
            snprintf(key, sizeof key, "si:node:%s", fx.ids[i]);
            double owned = harness_metric(fx.d[i].port, "superimap_dispatcher_shards_owned");
            agree &= owned == o.count[i] &&
                     harness_metric(fx.d[i].port,
                                    "superimap_dispatcher_shard_acquisitions_total") >= owned &&
                     atoi(wf_hget(fx.rc, key, "shards", v, sizeof v)) == o.count[i];
        }
        if (!agree)
            harness_poll_pause();
    } while (!agree && harness_now_ms() < deadline);
    printf("fleet: shards owned %d, %d, %d once settled\n", o.count[0], o.count[1], o.count[2]);
    assert_true(agree);
}

static void test_sigterm_hands_the_shards_over_within_5_s(void **state)
{
    (void)state;
    assert_int_equal(start_fleet(200), 0);
    wait_owners(20000);
    enqueue_all_shards(2);
    assert_true(receiver_wait(fx.rx, PID, 16, 10000) >= 16); /* deliveries under way */
    harness_proc_signal(&fx.d[2], SIGTERM);
    fx.running[2] = 0;
    long long took = wait_owners(5000);
    printf("fleet: a drained dispatcher's shards taken over in %lld ms\n", took);
    enqueue_all_shards(1);
    assert_int_equal(harness_proc_wait(&fx.d[2], 15000), 0);
    assert_int_equal(fx.d[2].exit_code, 0);
    assert_true(harness_log_contains(&fx.d[2], "queue shard leases released and alive keys"));
    expect_each_delivered_once(20000);
}

static void test_kill_9_shards_are_taken_over_and_their_events_delivered(void **state)
{
    (void)state;
    assert_int_equal(start_fleet(0), 0);
    wait_owners(20000);
    enqueue_all_shards(1);
    expect_each_delivered_once(20000); /* nothing in flight at the kill */
    /* The survivors have seen its named connection (a peer killed before
     * anyone saw it connected is left to its alive keys' expiry). */
    long long seen_by = harness_now_ms() + 10000;
    while ((harness_metric(fx.d[0].port, "superimap_fleet_peers_seen") < 2 ||
            harness_metric(fx.d[2].port, "superimap_fleet_peers_seen") < 2) &&
           harness_now_ms() < seen_by)
        harness_poll_pause();
    assert_true(harness_metric(fx.d[0].port, "superimap_fleet_peers_seen") >= 2);
    harness_proc_signal(&fx.d[1], SIGKILL);
    assert_int_equal(harness_proc_wait(&fx.d[1], 5000), 0);
    fx.running[1] = 0;
    long long t0 = harness_now_ms();
    enqueue_all_shards(1); /* a third of them wait in the dead one's shards */
    long long took = wait_owners(30000);
    printf("fleet: a killed dispatcher's shards taken over in %lld ms\n", took);
    expect_each_delivered_once(20000);
    printf("fleet: events queued at the kill all delivered %lld ms after it\n",
           harness_now_ms() - t0);
    assert_true(harness_log_contains(&fx.d[0], "queue shard taken over") ||
                harness_log_contains(&fx.d[2], "queue shard taken over"));
    /* Taken because its connection closed (core/reaper), not at the expiry
     * of its alive keys. */
    char reaped[160];
    snprintf(reaped, sizeof reaped, "its leases are free\" peer=%s ", fx.ids[1]);
    assert_true(harness_log_contains(&fx.d[0], reaped) || harness_log_contains(&fx.d[2], reaped));
}

static void test_sigstopped_dispatcher_fences_itself_and_keeps_no_lost_shard(void **state)
{
    (void)state;
    assert_int_equal(start_fleet(0), 0);
    wait_owners(20000);
    enqueue_all_shards(1);
    expect_each_delivered_once(20000);
    char tokens[NDISP][160];
    struct owners o = read_owners(tokens);
    assert_true(o.count[0] > 0);
    char old[160];
    memcpy(old, tokens[0], sizeof old);

    /* Frozen past its alive keys' life: the others take its shards. */
    harness_proc_signal(&fx.d[0], SIGSTOP);
    fx.running[0] = 0;
    enqueue_all_shards(1);
    long long took = wait_owners(30000);
    printf("fleet: a stopped dispatcher's %d shards taken over in %lld ms\n", o.count[0], took);
    expect_each_delivered_once(20000);

    /* Woken: it fences itself; its old token holds nothing, and whatever it
     * holds later it holds under a new generation, alive. */
    enqueue_all_shards(1);
    harness_proc_signal(&fx.d[0], SIGCONT);
    assert_int_equal(
        harness_wait_log(&fx.d[0], "fenced: claims stopped on every queue shard", 15000), 0);
    printf("fleet: the woken dispatcher fenced itself (%s)\n",
           harness_log_contains(&fx.d[0], "event loop was frozen") ? "its loop saw the freeze"
                                                                   : "no renewal for 10 s");
    fx.running[0] = 1;
    for (int k = 0; k < WF_SHARDS; k++) {
        char key[64], v[160];
        snprintf(key, sizeof key, "si:{%d}:owner", k);
        redisReply *r = wf_cmd(fx.rc, "GET %s", key);
        snprintf(v, sizeof v, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
        freeReplyObject(r);
        if (strcmp(v, old) == 0)
            fail_msg("shard %d still names the fenced token %s", k, old);
    }
    wait_owned(0, 10000); /* a shard handed back to it is free for a moment */
    expect_each_delivered_once(20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_three_dispatchers_split_the_shards_and_deliver_each_event_once, teardown),
        cmocka_unit_test_teardown(test_sigterm_hands_the_shards_over_within_5_s, teardown),
        cmocka_unit_test_teardown(test_kill_9_shards_are_taken_over_and_their_events_delivered,
                                  teardown),
        cmocka_unit_test_teardown(test_sigstopped_dispatcher_fences_itself_and_keeps_no_lost_shard,
                                  teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
