/*
 * superimap-dispatcher against a real redis-server and the test receiver
 * (tests/integration/receiver.c, which checks both signatures with its own
 * code): delivery of new_mail and user events, at most once per id on the
 * happy path, both signatures, retries on the schedule (time scaled by
 * SUPERIMAP_WEBHOOK_TIME_DIVISOR), Retry-After, 403 archiving, 410
 * disabling, dead letters and replay, secret rotation, bad data, the SSRF
 * guard, the delivery log and metrics.
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
#include <time.h>

#include <cmocka.h>

#include "core/keys.h"
#include "tests/integration/harness.h"
#include "tests/integration/receiver.h"
#include "tests/integration/test_dispatcher_fixture.h"

static struct redis_srv redis;
static redisContext *rc;
static struct receiver *rx;
static char base[64];

#define DIVISOR "100" /* 5 s -> 50 ms, 30 s -> 300 ms, 2 min -> 1.2 s */

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
    return dx_case_start(rc, 1, &rx, base);
}

static int teardown(void **state)
{
    (void)state;
    return dx_case_stop(&rx);
}

/* Starts a dispatcher with the test settings plus extra (NULL-terminated). */
static void start_dispatcher(struct proc *p, const char *id, const char *extra1, const char *extra2)
{
    const char *env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                         "SUPERIMAP_WEBHOOK_TIME_DIVISOR=" DIVISOR,
                         "SUPERIMAP_WEBHOOK_TIMEOUT_MS=5000",
                         extra1,
                         extra2,
                         NULL};
    if (extra1 == NULL)
        env[3] = NULL;
    assert_int_equal(harness_node_start(p, &redis, "superimap-dispatcher", id, env), 0);
    assert_int_equal(harness_wait_http(p->port, "/readyz", 200, 10000), 0);
}

/* Polls an integer Redis query until it equals want or ms pass. */
static long long wait_int(long long want, int ms, const char *fmt, const char *arg)
{
    long long deadline = harness_now_ms() + ms, v;
    while ((v = wf_int(rc, fmt, arg)) != want && harness_now_ms() < deadline)
        harness_poll_pause();
    return v;
}

/* Polls the event's state until it is want or ms pass; returns it in out. */
static const char *wait_state(const char *uid, const char *eid, const char *want, int ms, char *out,
                              size_t n)
{
    char key[256];
    snprintf(key, sizeof key, "si:{%d}:evt:%s", wf_shard(uid), eid);
    long long deadline = harness_now_ms() + ms;
    while (strcmp(wf_hget(rc, key, "state", out, n), want) != 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    return out;
}

static const char *evt_field(const char *uid, const char *eid, const char *field, char *out,
                             size_t n)
{
    char key[256];
    snprintf(key, sizeof key, "si:{%d}:evt:%s", wf_shard(uid), eid);
    return wf_hget(rc, key, field, out, n);
}

/* Reads the delivery log of pid: returns the XRANGE reply. */
static redisReply *delivery_log(const char *pid)
{
    return wf_cmd(rc, "XRANGE si:log:%s - +", pid);
}

/* The value of field in one XRANGE entry ("" if absent). */
static const char *log_field(const redisReply *entry, const char *field)
{
    const redisReply *f = entry->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (strcmp(f->element[i]->str, field) == 0)
            return f->element[i + 1]->str;
    return "";
}

/* A partner with fresh credentials registered with the receiver. */
static void partner(const char *pid, const char *f1, const char *v1)
{
    dx_partner(rc, rx, base, pid, f1, v1, NULL, NULL);
}

/* ---- Happy path ---- */

static void test_thousand_events_over_ten_partners_each_delivered_once_signed(void **state)
{
    (void)state;
    enum { PARTNERS = 10, PER = 100 };
    char pids[PARTNERS][12];
    static char eids[PARTNERS * PER][128];
    for (int p = 0; p < PARTNERS; p++) {
        snprintf(pids[p], sizeof pids[p], "%d", p + 1);
        partner(pids[p], NULL, NULL);
    }
    /* Half enqueued before the dispatcher starts, half while it runs. */
    int n = 0;
    for (int i = 0; i < PER / 2; i++)
        for (int p = 0; p < PARTNERS; p++) {
            char uid[25], tag[32];
            wf_uid(uid, (unsigned)(p * 1000 + i % 7));
            snprintf(tag, sizeof tag, "tag-%d-%d", p, i % 7);
            assert_int_equal(wf_new_mail(rc, pids[p], uid, tag, (unsigned)i + 1, 1024, eids[n++]),
                             1);
        }
    struct proc d;
    start_dispatcher(&d, "d1", NULL, NULL);
    for (int i = PER / 2; i < PER; i++)
        for (int p = 0; p < PARTNERS; p++) {
            char uid[25], tag[32];
            wf_uid(uid, (unsigned)(p * 1000 + i % 7));
            snprintf(tag, sizeof tag, "tag-%d-%d", p, i % 7);
            assert_int_equal(wf_new_mail(rc, pids[p], uid, tag, (unsigned)i + 1, 1024, eids[n++]),
                             1);
        }
    assert_int_equal(receiver_wait(rx, NULL, PARTNERS * PER, 30000), PARTNERS * PER);

    static struct receiver_request reqs[PARTNERS * PER + 10];
    size_t got = receiver_requests(rx, reqs, sizeof reqs / sizeof reqs[0]);
    assert_int_equal(got, PARTNERS * PER);
    for (size_t i = 0; i < got; i++) {
        struct receiver_request *r = &reqs[i];
        if (!r->json_ok || !r->body_sig_ok || !r->std_sig_ok)
            fail_msg("request %zu (%s): json %d body signature %d standard signature %d", i, r->id,
                     r->json_ok, r->body_sig_ok, r->std_sig_ok);
        assert_int_equal(r->nsigs, 1);
        assert_string_equal(r->id, r->body_id); /* stable id in header and body */
        assert_int_equal(r->ts, r->body_ts);
        assert_string_equal(r->event, "new_mail");
        assert_string_equal(r->content_type, "application/json");
        assert_memory_equal(r->user_agent, "superimap/", 10);
        assert_non_null(strstr(r->path, "/new_mail"));
        /* Sent to its own partner's URL. */
        char want_prefix[64];
        snprintf(want_prefix, sizeof want_prefix, "/hook/%s/", r->pid);
        assert_memory_equal(r->path, want_prefix, strlen(want_prefix));
        for (size_t j = 0; j < i; j++)
            if (strcmp(reqs[j].id, r->id) == 0)
                fail_msg("%s delivered twice", r->id);
    }
    /* Every id we enqueued arrived. */
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 0; j < got && !found; j++)
            found = strcmp(reqs[j].id, eids[i]) == 0;
        if (!found)
            fail_msg("%s never delivered", eids[i]);
    }
    /* The queue is empty and each event is marked delivered, payload gone. */
    char uid[25], st[32];
    wf_uid(uid, 0);
    assert_string_equal(wait_state(uid, eids[0], "delivered", 5000, st, sizeof st), "delivered");
    assert_string_equal(evt_field(uid, eids[0], "payload", st, sizeof st), "");
    assert_string_equal(evt_field(uid, eids[0], "last_status", st, sizeof st), "200");
    for (int k = 0; k < WF_SHARDS; k++) {
        char key[64];
        snprintf(key, sizeof key, "si:{%d}:inflight", k);
        assert_int_equal(wait_int(0, 5000, "ZCARD %s", key), 0);
        snprintf(key, sizeof key, "si:{%d}:ready_partners", k);
        assert_int_equal(wf_int(rc, "LLEN %s", key), 0);
    }
    /* The delivery log has one "delivered" entry per event of the partner. */
    redisReply *log = delivery_log("1");
    assert_int_equal(log->elements, PER);
    assert_string_equal(log_field(log->element[0], "result"), "delivered");
    assert_string_equal(log_field(log->element[0], "status"), "200");
    assert_string_equal(log_field(log->element[0], "attempt"), "1");
    assert_string_equal(log_field(log->element[0], "type"), "new_mail");
    assert_string_equal(log_field(log->element[0], "error"), "");
    freeReplyObject(log);
    harness_proc_stop(&d);
}

/* A 200 KiB message: its payload is too long to come with the claim (the
 * dispatcher reads it with HGET) and must arrive byte for byte. */
static void test_large_message_delivered_intact(void **state)
{
    (void)state;
    partner("6", NULL, NULL);
    char uid[25], eid[128];
    wf_uid(uid, 600);
    assert_int_equal(wf_new_mail(rc, "6", uid, "big", 1, 200 * 1024, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-big", NULL, NULL);
    assert_int_equal(receiver_wait(rx, "6", 1, 10000), 1);
    struct receiver_request r;
    assert_int_equal(receiver_requests(rx, &r, 1), 1);
    assert_true(r.json_ok && r.body_sig_ok && r.std_sig_ok);
    assert_true(r.body_len > 200 * 1024);
    size_t len = 0;
    char *body = receiver_body(rx, 0, &len);
    yajl_val root = NULL;
    char err[128];
    assert_int_equal(json_parse_object(body, len, 16, &root, err, sizeof err), 0);
    const char *rfc822 = json_get_str(root, "rfc822");
    assert_non_null(rfc822);
    char sha1[41];
    crypto_sha1_hex(rfc822, strlen(rfc822), sha1);
    assert_string_equal(sha1, json_get_str(root, "sha1"));
    assert_true(strlen(rfc822) >= 200 * 1024);
    json_free(root);
    free(body);
    harness_proc_stop(&d);
}

/* Two dispatchers split the shards between them (each claims only from the
 * shards it owns): each event goes out once, and both take part. Takeovers
 * (drain, kill -9, SIGSTOP) are in test_dispatcher_fleet.c. */
static void test_two_dispatchers_split_the_shards_without_duplicates(void **state)
{
    (void)state;
    enum { EVENTS = 600 };
    partner("2", "webhook_concurrency", "64");
    struct proc d1, d2;
    start_dispatcher(&d1, "d-two-1", NULL, NULL);
    start_dispatcher(&d2, "d-two-2", NULL, NULL);
    const char *owned = "superimap_dispatcher_shards_owned";
    long long until = harness_now_ms() + 20000;
    double o1, o2;
    while ((o1 = harness_metric(d1.port, owned)) + (o2 = harness_metric(d2.port, owned)) != 64 ||
           o1 == 0 || o2 == 0) {
        assert_true(harness_now_ms() < until);
        harness_poll_pause();
    }
    printf("two dispatchers own %.0f and %.0f of 64 shards\n", o1, o2);
    for (unsigned i = 0; i < EVENTS; i++) {
        char uid[25], eid[128];
        wf_uid(uid, 200 + i % 31);
        assert_int_equal(wf_new_mail(rc, "2", uid, "two", i + 1, 300, eid), 1);
    }
    assert_int_equal(receiver_wait(rx, "2", EVENTS, 20000), EVENTS);
    static struct receiver_request reqs[EVENTS + 50];
    size_t n = receiver_requests(rx, reqs, sizeof reqs / sizeof reqs[0]);
    assert_int_equal(n, EVENTS); /* none twice */
    double delivered[2] = {0, 0};
    struct proc *ds[2] = {&d1, &d2};
    const char *series = "superimap_webhook_deliveries_total{result=\"delivered\"}";
    long long deadline = harness_now_ms() + 10000;
    do { /* the last answers may still be on their way back to the dispatchers */
        for (int i = 0; i < 2; i++)
            delivered[i] = harness_metric(ds[i]->port, series);
        if (delivered[0] + delivered[1] == EVENTS)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    printf("two dispatchers: %.0f and %.0f of %d events\n", delivered[0], delivered[1], EVENTS);
    assert_true(delivered[0] > 0 && delivered[1] > 0);
    assert_true(delivered[0] + delivered[1] == EVENTS);
    harness_proc_stop(&d1);
    harness_proc_stop(&d2);
}

/* ---- User events (the api enqueues them) ---- */

static void test_user_connected_and_disconnected_are_delivered_with_their_keys(void **state)
{
    (void)state;
    partner("7", NULL, NULL);
    char uid[25], sha1[41];
    wf_uid(uid, 77);
    char eid1[128], eid2[128];
    snprintf(eid1, sizeof eid1, "%s.connected.1700000000000", uid);
    snprintf(eid2, sizeof eid2, "%s.disconnected.1700000001000", uid);
    char *p1 = wf_user_payload("user_connected", eid1, "alice", sha1);
    assert_int_equal(wf_enqueue_raw(rc, eid1, "7", "user_connected", uid, "alice", sha1, p1, NULL),
                     1);
    char *p2 = wf_user_payload("user_disconnected", eid2, "alice", sha1);
    assert_int_equal(
        wf_enqueue_raw(rc, eid2, "7", "user_disconnected", uid, "alice", sha1, p2, NULL), 1);
    /* Enqueueing the same id again is a no-op (the api may retry). */
    assert_int_equal(wf_enqueue_raw(rc, eid1, "7", "user_connected", uid, "alice", sha1, p1, NULL),
                     0);
    xfree(p1);
    xfree(p2);
    struct proc d;
    start_dispatcher(&d, "d-user", NULL, NULL);
    assert_int_equal(receiver_wait(rx, "7", 2, 10000), 2);
    struct receiver_request reqs[4];
    assert_int_equal(receiver_requests(rx, reqs, 4), 2);
    for (int i = 0; i < 2; i++) {
        struct receiver_request *r = &reqs[i];
        assert_true(r->body_sig_ok && r->std_sig_ok);
        char *body = receiver_body(rx, (size_t)i, NULL);
        assert_non_null(body);
        char tagsha[41];
        crypto_sha1_hex("alice", 5, tagsha);
        assert_non_null(strstr(body, tagsha)); /* sha1 of the tag, as the original */
        assert_non_null(strstr(body, "\"user_tag\":\"alice\""));
        assert_non_null(strstr(body, "\"imap_provider_code\":\"gmail\""));
        if (strcmp(r->event, "user_connected") == 0) {
            assert_string_equal(r->id, eid1);
            assert_non_null(strstr(r->path, "/user_connected"));
            assert_non_null(strstr(body, "\"email\":\"alice@x.test\""));
        } else {
            assert_string_equal(r->event, "user_disconnected");
            assert_string_equal(r->id, eid2);
            assert_non_null(strstr(r->path, "/user_disconnected"));
            assert_null(strstr(body, "\"email\""));
        }
        free(body);
    }
    harness_proc_stop(&d);
}

static void test_credentials_in_a_webhook_url_are_sent_as_basic_auth_and_never_logged(void **state)
{
    (void)state;
    /* As the api and superimap-import store it: the URL with the password
     * masked, the userinfo sealed beside it. */
    char url[256], *shown, *sealed;
    snprintf(url, sizeof url, "http://hook%%40user:s3cr%%3At@%s/hook/15/new_mail", base + 7);
    assert_int_equal(
        keys_seal_partner_url(wf_keys(), "15", "new_mail_webhook_url", url, &shown, &sealed), 0);
    char want_shown[256];
    snprintf(want_shown, sizeof want_shown, "http://hook%%40user:***@%s/hook/15/new_mail",
             base + 7);
    assert_string_equal(shown, want_shown);
    partner("15", "new_mail_webhook_url_userinfo", sealed);
    freeReplyObject(wf_cmd(rc, "HSET si:partner:15 new_mail_webhook_url %s", shown));
    xfree(shown);
    xfree(sealed);
    char uid[25], eid[128];
    wf_uid(uid, 1501);
    assert_int_equal(wf_new_mail(rc, "15", uid, "cred", 1, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-cred", "SUPERIMAP_LOG_LEVEL=debug", NULL);
    assert_int_equal(receiver_wait(rx, "15", 1, 10000), 1);
    struct receiver_request r;
    assert_int_equal(receiver_requests(rx, &r, 1), 1);
    char *b64 = crypto_b64_encode("hook@user:s3cr:t", 16);
    char want[160];
    snprintf(want, sizeof want, "Basic %s", b64);
    xfree(b64);
    assert_string_equal(r.authorization, want);
    assert_true(r.std_sig_ok);
    harness_proc_stop(&d);
    assert_false(harness_log_contains(&d, "s3cr"));
}

static void test_user_reauth_required_goes_to_its_url_else_the_disconnected_one(void **state)
{
    (void)state;
    char own[300];
    snprintf(own, sizeof own, "%s/hook/9/user_reauth_required", base);
    partner("8", NULL, NULL);
    partner("9", "user_reauth_required_webhook_url", own);
    char uid[25], sha1[41];
    wf_uid(uid, 78);
    for (int i = 0; i < 2; i++) {
        const char *pid = i == 0 ? "8" : "9";
        char eid[128];
        snprintf(eid, sizeof eid, "%s.reauth.170000000%d000", uid, i);
        char *p = wf_user_payload("user_reauth_required", eid, "bob", sha1);
        assert_int_equal(
            wf_enqueue_raw(rc, eid, pid, "user_reauth_required", uid, "bob", sha1, p, NULL), 1);
        xfree(p);
    }
    struct proc d;
    start_dispatcher(&d, "d-reauth", NULL, NULL);
    assert_int_equal(receiver_wait(rx, "8", 1, 10000), 1);
    assert_int_equal(receiver_wait(rx, "9", 1, 10000), 1);
    struct receiver_request reqs[4];
    assert_int_equal(receiver_requests(rx, reqs, 4), 2);
    for (int i = 0; i < 2; i++) {
        struct receiver_request *r = &reqs[i];
        assert_true(r->body_sig_ok && r->std_sig_ok);
        assert_string_equal(r->event, "user_reauth_required");
        if (strcmp(r->pid, "8") == 0)
            assert_non_null(strstr(r->path, "/8/user_disconnected"));
        else
            assert_non_null(strstr(r->path, "/9/user_reauth_required"));
    }
    harness_proc_stop(&d);
}

/* ---- Retries ---- */

/* Milliseconds between the receipts of requests i-1 and i. */
static long long gap_ms(const struct receiver_request *r, int i)
{
    return (r[i].mono_us - r[i - 1].mono_us) / 1000;
}

static void test_three_500s_then_delivered_on_fourth_on_schedule(void **state)
{
    (void)state;
    partner("3", NULL, NULL);
    struct receiver_rule rule = {.fail_first = 3, .fail_status = 500};
    receiver_set_rule(rx, "3", &rule);
    char uid[25], eid[128];
    wf_uid(uid, 3);
    assert_int_equal(wf_new_mail(rc, "3", uid, "bob", 1, 2000, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-retry", NULL, NULL);
    assert_int_equal(receiver_wait(rx, "3", 4, 15000), 4);
    char st[32];
    assert_string_equal(wait_state(uid, eid, "delivered", 5000, st, sizeof st), "delivered");
    struct receiver_request r[5];
    assert_int_equal(receiver_requests(rx, r, 5), 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(r[i].id, eid);                /* the same id every time */
        assert_true(r[i].body_sig_ok && r[i].std_sig_ok); /* re-signed each time */
        assert_int_equal(r[i].status, i < 3 ? 500 : 200);
    }
    /* ... with the send time: 1.5 s passed between the first and the last. */
    assert_true(r[3].ts >= r[0].ts + 1);
    assert_int_equal(r[3].body_ts, r[3].ts);
    /* The default schedule (README "Retries") 5 s, 30 s, 2 min, divided by 100, +-10% jitter,
     * plus the promotion tick and a claim round trip. */
    static const long long want[] = {0, 50, 300, 1200};
    for (int i = 1; i < 4; i++) {
        long long g = gap_ms(r, i);
        /* Never early (that would break the schedule); late only within a
         * bound loose enough for a loaded machine. */
        if (g < want[i] * 9 / 10 - 5 || g > want[i] * 3 + 2000)
            fail_msg("gap before attempt %d: %lld ms, want about %lld ms", i + 1, g, want[i]);
    }
    redisReply *log = delivery_log("3");
    assert_int_equal(log->elements, 4);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(log_field(log->element[i], "result"), "retry");
        assert_string_equal(log_field(log->element[i], "status"), "500");
        assert_string_equal(log_field(log->element[i], "error"), "HTTP 500: receiver says no");
        assert_true(atoll(log_field(log->element[i], "next_at")) > 0);
        assert_int_equal(atoi(log_field(log->element[i], "attempt")), i + 1);
    }
    assert_string_equal(log_field(log->element[3], "result"), "delivered");
    assert_string_equal(log_field(log->element[3], "attempt"), "4");
    freeReplyObject(log);
    assert_string_equal(evt_field(uid, eid, "attempts", st, sizeof st), "4");
    harness_proc_stop(&d);
}

static void test_retry_after_is_honoured_in_seconds_and_http_date(void **state)
{
    (void)state;
    partner("4", NULL, NULL);
    partner("5", NULL, NULL);
    /* 120 s and a date 120 s ahead, both 1.2 s once divided by 100, where the
     * schedule alone would wait 50 ms. */
    struct receiver_rule r429 = {.fail_first = 1, .fail_status = 429, .retry_after = "120"};
    receiver_set_rule(rx, "4", &r429);
    time_t later = time(NULL) + 121;
    struct tm tm;
    gmtime_r(&later, &tm);
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    struct receiver_rule r503 = {.fail_first = 1, .fail_status = 503, .retry_after = date};
    receiver_set_rule(rx, "5", &r503);
    char uid4[25], uid5[25], eid4[128], eid5[128];
    wf_uid(uid4, 4);
    wf_uid(uid5, 5);
    assert_int_equal(wf_new_mail(rc, "4", uid4, "c", 1, 100, eid4), 1);
    assert_int_equal(wf_new_mail(rc, "5", uid5, "d", 1, 100, eid5), 1);
    struct proc d;
    start_dispatcher(&d, "d-ra", NULL, NULL);
    assert_int_equal(receiver_wait(rx, NULL, 4, 15000), 4);
    struct receiver_request r[4];
    assert_int_equal(receiver_requests(rx, r, 4), 4);
    for (const char *pid = "4"; pid != NULL; pid = strcmp(pid, "4") == 0 ? "5" : NULL) {
        int a = -1, b = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(r[i].pid, pid) == 0) {
                if (a < 0)
                    a = i;
                else
                    b = i;
            }
        assert_true(a >= 0 && b > a);
        long long g = (r[b].mono_us - r[a].mono_us) / 1000;
        if (g < 1000 || g > 6000) /* never early; late only as a loaded machine makes it */
            fail_msg("partner %s: retried after %lld ms, want about 1200 (Retry-After)", pid, g);
        assert_int_equal(r[b].status, 200);
    }
    harness_proc_stop(&d);
}

/* ---- 403, 410 ---- */

static void test_403_archives_user_but_keeps_tracer_user(void **state)
{
    (void)state;
    partner("8", NULL, NULL);
    struct receiver_rule rule = {.status = 403};
    receiver_set_rule(rx, "8", &rule);
    char uid[25], tuid[25], eid[128], teid[128];
    wf_uid(uid, 800);
    wf_uid(tuid, 801);
    wf_user(rc, uid, "8", "carol", 0);
    wf_user(rc, tuid, "8", "tracy", 1);
    assert_int_equal(wf_new_mail(rc, "8", uid, "carol", 1, 100, eid), 1);
    assert_int_equal(wf_new_mail(rc, "8", tuid, "tracy", 1, 100, teid), 1);
    struct proc d;
    start_dispatcher(&d, "d-403", NULL, NULL);
    char st[64], key[128];
    assert_string_equal(wait_state(uid, eid, "delivered", 10000, st, sizeof st), "delivered");
    assert_string_equal(wait_state(tuid, teid, "delivered", 10000, st, sizeof st), "delivered");
    assert_int_equal(receiver_count(rx, "8"), 2); /* acked: no retry */
    snprintf(key, sizeof key, "si:{%d}:user:%s", wf_shard(uid), uid);
    assert_string_equal(wf_hget(rc, key, "archived", st, sizeof st), "1");
    assert_string_equal(wf_hget(rc, key, "state", st, sizeof st), "archived");
    assert_string_equal(wf_hget(rc, key, "last_error", st, sizeof st), "webhook answered 403");
    assert_int_equal(wf_int(rc, "ZRANK si:{%d}:users %s", wf_shard(uid), uid), -1);
    assert_int_equal(wf_int(rc, "EXISTS si:tag:8:gmail:carol"), 0);
    assert_int_equal(wf_int(rc, "XLEN si:changes"), 1);
    snprintf(key, sizeof key, "si:{%d}:user:%s", wf_shard(tuid), tuid);
    assert_string_equal(wf_hget(rc, key, "archived", st, sizeof st), "0");
    assert_true(wf_int(rc, "ZRANK si:{%d}:users %s", wf_shard(tuid), tuid) >= 0);
    redisReply *log = delivery_log("8");
    assert_int_equal(log->elements, 2);
    int archived = 0, refused = 0;
    for (size_t i = 0; i < 2; i++) {
        const char *res = log_field(log->element[i], "result");
        assert_string_equal(log_field(log->element[i], "status"), "403");
        archived +=
            strcmp(res, "archived") == 0 && strcmp(log_field(log->element[i], "tag"), "carol") == 0;
        refused +=
            strcmp(res, "refused") == 0 && strcmp(log_field(log->element[i], "tag"), "tracy") == 0;
    }
    assert_int_equal(archived, 1);
    assert_int_equal(refused, 1);
    freeReplyObject(log);
    harness_proc_stop(&d);
}

static void test_410_disables_url_and_later_events_become_dead_letters(void **state)
{
    (void)state;
    partner("9", NULL, NULL);
    struct receiver_rule rule = {.fail_first = 1, .fail_status = 410};
    receiver_set_rule(rx, "9", &rule);
    char uid[25], eid[128], eid2[128];
    wf_uid(uid, 900);
    assert_int_equal(wf_new_mail(rc, "9", uid, "dan", 1, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-410", NULL, NULL);
    char st[256];
    assert_string_equal(wait_state(uid, eid, "delivered", 10000, st, sizeof st), "delivered");
    wf_hget(rc, "si:partner:9", "new_mail_webhook_disabled", st, sizeof st);
    assert_non_null(strstr(st, "410"));
    assert_non_null(strstr(st, "/hook/9/new_mail"));
    /* The next new_mail event is not sent: it waits in dead letters, replayable
     * once the partner sets a URL again. user_connected still goes out. */
    assert_int_equal(wf_new_mail(rc, "9", uid, "dan", 2, 100, eid2), 1);
    assert_string_equal(wait_state(uid, eid2, "dead", 10000, st, sizeof st), "dead");
    assert_non_null(
        strstr(evt_field(uid, eid2, "last_error", st, sizeof st), "webhook URL disabled"));
    char sha1[41], ceid[128];
    snprintf(ceid, sizeof ceid, "%s.connected.5", uid);
    char *p = wf_user_payload("user_connected", ceid, "dan", sha1);
    assert_int_equal(wf_enqueue_raw(rc, ceid, "9", "user_connected", uid, "dan", sha1, p, NULL), 1);
    xfree(p);
    assert_string_equal(wait_state(uid, ceid, "delivered", 10000, st, sizeof st), "delivered");
    assert_int_equal(receiver_count(rx, "9"), 2);
    redisReply *log = delivery_log("9");
    assert_true(log->elements >= 1);
    assert_string_equal(log_field(log->element[0], "result"), "gone");
    assert_string_equal(log_field(log->element[0], "status"), "410");
    freeReplyObject(log);
    harness_proc_stop(&d);
}

/* ---- Dead letters and replay ---- */

static void test_exhausted_retries_dead_letter_then_replay_same_id(void **state)
{
    (void)state;
    partner("11", "retry_schedule", "1,2"); /* 3 attempts: 10 ms, 20 ms apart */
    struct receiver_rule rule = {.status = 500};
    receiver_set_rule(rx, "11", &rule);
    char uid[25], eid[128];
    wf_uid(uid, 1100);
    assert_int_equal(wf_new_mail(rc, "11", uid, "erin", 1, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-dead", NULL, NULL);
    char st[256];
    assert_string_equal(wait_state(uid, eid, "dead", 10000, st, sizeof st), "dead");
    assert_int_equal(receiver_count(rx, "11"), 3);
    int k = wf_shard(uid);
    assert_true(wf_int(rc, "ZSCORE si:{%d}:dead %s", k, eid) > 0);
    assert_true(strlen(evt_field(uid, eid, "payload", st, sizeof st)) > 10); /* kept */
    assert_non_null(strstr(evt_field(uid, eid, "last_error", st, sizeof st),
                           "retries exhausted after 3 attempts: HTTP 500"));
    redisReply *log = delivery_log("11");
    assert_int_equal(log->elements, 3);
    assert_string_equal(log_field(log->element[2], "result"), "dead");
    freeReplyObject(log);

    /* The receiver recovers; the partner replays the dead letter. */
    struct receiver_rule ok = {0};
    receiver_set_rule(rx, "11", &ok);
    char ek[256], dead[64], rl[64], rp[64];
    snprintf(ek, sizeof ek, "si:{%d}:evt:%s", k, eid);
    snprintf(dead, sizeof dead, "si:{%d}:dead", k);
    snprintf(rl, sizeof rl, "si:{%d}:ready:11", k);
    snprintf(rp, sizeof rp, "si:{%d}:ready_partners", k);
    redisReply *r = wf_cmd(rc, "EVAL %s 4 %s %s %s %s %s 11", script_find("event_replay")->body, ek,
                           dead, rl, rp, eid);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_string_equal(wait_state(uid, eid, "delivered", 10000, st, sizeof st), "delivered");
    struct receiver_request reqs[5];
    assert_int_equal(receiver_requests(rx, reqs, 5), 4);
    assert_string_equal(reqs[3].id, eid);
    assert_int_equal(reqs[3].status, 200);
    assert_true(reqs[3].body_sig_ok && reqs[3].std_sig_ok);
    harness_proc_stop(&d);
}

/* ---- Secret rotation ---- */

static void test_rotation_signs_with_new_and_old_secret(void **state)
{
    (void)state;
    char whsec[64], old[64];
    wf_whsec(whsec, sizeof whsec);
    wf_whsec(old, sizeof old);
    char *sealed_old = wf_seal_partner("12", "webhook_secret_old", old);
    char until[32];
    snprintf(until, sizeof until, "%lld", (long long)time(NULL) * 1000 + 3600000);
    wf_partner(rc, "12", base, "rotating-key-0123456789", whsec, "webhook_secret_old", sealed_old,
               "webhook_secret_old_until", until, NULL);
    xfree(sealed_old);
    receiver_add_partner(rx, "12", "rotating-key-0123456789", whsec, old);
    char uid[25], eid[128];
    wf_uid(uid, 1200);
    assert_int_equal(wf_new_mail(rc, "12", uid, "fay", 1, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-rot", NULL, NULL);
    assert_int_equal(receiver_wait(rx, "12", 1, 10000), 1);
    struct receiver_request r;
    assert_int_equal(receiver_requests(rx, &r, 1), 1);
    assert_int_equal(r.nsigs, 2);
    assert_true(r.std_sig_ok);
    assert_true(r.std_sig_old_ok);
    assert_true(r.body_sig_ok);
    harness_proc_stop(&d);
}

/* ---- Bad data ---- */

static void test_bad_events_become_dead_letters_and_dispatcher_goes_on(void **state)
{
    (void)state;
    partner("13", NULL, NULL);
    char uid[25];
    wf_uid(uid, 1300);
    int k = wf_shard(uid);
    char dead_key[64];
    snprintf(dead_key, sizeof dead_key, "si:{%d}:dead", k);
    /* 1: a payload that does not decrypt; 2: one sealed for another event
     * (wrong AAD); 3: a payload that is not a JSON object; 4: an id in the
     * ready list without its hash. */
    char e1[128], e2[128], e3[128], e4[128], good[128];
    snprintf(e1, sizeof e1, "%s.7.1", uid);
    snprintf(e2, sizeof e2, "%s.7.2", uid);
    snprintf(e3, sizeof e3, "%s.7.3", uid);
    snprintf(e4, sizeof e4, "%s.7.4", uid);
    assert_int_equal(
        wf_enqueue_raw(rc, e1, "13", "new_mail", uid, "g", "ab", NULL, "v1:00000000:AAAA:BBBB"), 1);
    char aad[256], *sealed = NULL;
    snprintf(aad, sizeof aad, "si:evt:%s", e1);
    assert_int_equal(crypto_encrypt(wf_keys(), "{}", 2, aad, &sealed), 0);
    assert_int_equal(wf_enqueue_raw(rc, e2, "13", "new_mail", uid, "g", "ab", NULL, sealed), 1);
    xfree(sealed);
    assert_int_equal(wf_enqueue_raw(rc, e3, "13", "new_mail", uid, "g", "ab", "not json", NULL), 1);
    freeReplyObject(wf_cmd(rc, "LPUSH si:{%d}:ready:13 %s", k, e4));
    assert_int_equal(wf_new_mail(rc, "13", uid, "g", 5, 100, good), 1);
    struct proc d;
    start_dispatcher(&d, "d-bad", NULL, NULL);
    char st[256];
    assert_string_equal(wait_state(uid, good, "delivered", 10000, st, sizeof st), "delivered");
    assert_string_equal(wait_state(uid, e1, "dead", 5000, st, sizeof st), "dead");
    assert_non_null(strstr(evt_field(uid, e1, "last_error", st, sizeof st), "cannot be decrypted"));
    assert_string_equal(wait_state(uid, e2, "dead", 5000, st, sizeof st), "dead");
    assert_non_null(strstr(evt_field(uid, e2, "last_error", st, sizeof st), "cannot be decrypted"));
    assert_string_equal(wait_state(uid, e3, "dead", 5000, st, sizeof st), "dead");
    assert_string_equal(evt_field(uid, e3, "last_error", st, sizeof st),
                        "payload is not a JSON object");
    assert_string_equal(wait_state(uid, e4, "dead", 5000, st, sizeof st), "dead");
    assert_string_equal(evt_field(uid, e4, "last_error", st, sizeof st), "event data missing");
    assert_int_equal(wf_int(rc, "ZCARD si:{%d}:dead", k), 4);
    assert_int_equal(receiver_count(rx, "13"), 1); /* only the good one went out */
    /* Events of a partner that does not exist (deleted meanwhile): dead
     * letters, however many were waiting for its settings. */
    char ghost_eid[128];
    for (unsigned i = 1; i <= 200; i++)
        assert_int_equal(wf_new_mail(rc, "404", uid, "g", 100 + i, 100, ghost_eid), 1);
    assert_string_equal(wait_state(uid, ghost_eid, "dead", 10000, st, sizeof st), "dead");
    assert_string_equal(evt_field(uid, ghost_eid, "last_error", st, sizeof st),
                        "partner not found");
    assert_int_equal(wait_int(204, 10000, "ZCARD %s", dead_key), 204);
    assert_int_equal(harness_proc_wait(&d, 0), -1); /* still running */
    assert_int_equal(harness_http_get(d.port, "/readyz", NULL, 0), 200);
    harness_proc_stop(&d);
}

/* ---- SSRF guard ---- */

static void test_ssrf_guard_refuses_loopback_before_connecting(void **state)
{
    (void)state;
    struct receiver *rx6 = receiver_start("::1", 1, 0);
    assert_non_null(rx6);
    char base6[64];
    snprintf(base6, sizeof base6, "http://[::1]:%d", receiver_port(rx6));
    wf_partner(rc, "14", base, "k14-0123456789abcdef", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "retry_schedule", "1", NULL);
    wf_partner(rc, "15", base6, "k15-0123456789abcdef", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "retry_schedule", "1", NULL);
    char uid[25], eid14[128], eid15[128];
    wf_uid(uid, 1400);
    assert_int_equal(wf_new_mail(rc, "14", uid, "h", 1, 100, eid14), 1);
    assert_int_equal(wf_new_mail(rc, "15", uid, "h", 2, 100, eid15), 1);
    /* No SUPERIMAP_WEBHOOK_ALLOW_PRIVATE here. */
    struct proc d;
    const char *env[] = {"SUPERIMAP_WEBHOOK_TIME_DIVISOR=" DIVISOR, NULL};
    assert_int_equal(harness_node_start(&d, &redis, "superimap-dispatcher", "d-ssrf", env), 0);
    char st[512];
    assert_string_equal(wait_state(uid, eid14, "dead", 10000, st, sizeof st), "dead");
    assert_string_equal(wait_state(uid, eid15, "dead", 10000, st, sizeof st), "dead");
    /* Refused before connecting: neither receiver saw a connection. */
    assert_int_equal(receiver_connections(rx), 0);
    assert_int_equal(receiver_connections(rx6), 0);
    static const char *const want[] = {"127.0.0.1 is loopback", "::1 is loopback"};
    static const char *const pids[] = {"14", "15"};
    for (int p = 0; p < 2; p++) {
        redisReply *log = delivery_log(pids[p]);
        assert_int_equal(log->elements, 2); /* two failed attempts, then dead */
        for (size_t i = 0; i < 2; i++) {
            const char *err = log_field(log->element[i], "error");
            assert_non_null(strstr(err, "refused by the SSRF guard before connecting"));
            if (strstr(err, want[p]) == NULL)
                fail_msg("partner %s: error \"%s\" does not name %s", pids[p], err, want[p]);
            assert_string_equal(log_field(log->element[i], "status"), "0");
        }
        assert_string_equal(log_field(log->element[0], "result"), "retry");
        assert_string_equal(log_field(log->element[1], "result"), "dead");
        freeReplyObject(log);
    }
    harness_proc_stop(&d);
    receiver_stop(rx6);
}

/* ---- Transport rules ---- */

/* Redirects are not followed, proxy variables are ignored, and a long
 * response is read up to 64 KiB and then dropped without changing its
 * status. */
static void test_no_redirect_no_proxy_and_long_response_cut(void **state)
{
    (void)state;
    partner("17", "retry_schedule", "1");
    partner("19", NULL, NULL);
    char elsewhere[128];
    snprintf(elsewhere, sizeof elsewhere, "%s/hook/18/elsewhere", base);
    struct receiver_rule redirect = {.status = 302, .location = elsewhere};
    receiver_set_rule(rx, "17", &redirect);
    struct receiver_rule big = {.body_bytes = 1 << 20};
    receiver_set_rule(rx, "19", &big);
    char uid[25], eid17[128], eid19[128];
    wf_uid(uid, 1700);
    assert_int_equal(wf_new_mail(rc, "17", uid, "r", 1, 100, eid17), 1);
    assert_int_equal(wf_new_mail(rc, "19", uid, "r", 2, 100, eid19), 1);
    /* Every proxy variable points at a port where nothing listens. */
    struct proc d;
    const char *env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                         "SUPERIMAP_WEBHOOK_TIME_DIVISOR=" DIVISOR,
                         "http_proxy=http://127.0.0.1:1",
                         "HTTPS_PROXY=http://127.0.0.1:1",
                         "ALL_PROXY=http://127.0.0.1:1",
                         "all_proxy=http://127.0.0.1:1",
                         NULL};
    assert_int_equal(harness_node_start(&d, &redis, "superimap-dispatcher", "d-rules", env), 0);
    char st[256];
    assert_string_equal(wait_state(uid, eid19, "delivered", 10000, st, sizeof st), "delivered");
    assert_string_equal(evt_field(uid, eid19, "last_status", st, sizeof st), "200");
    assert_string_equal(wait_state(uid, eid17, "dead", 10000, st, sizeof st), "dead");
    assert_int_equal(receiver_count(rx, "17"), 2);
    assert_int_equal(receiver_count(rx, "18"), 0); /* the Location was never followed */
    redisReply *log = delivery_log("17");
    assert_int_equal(log->elements, 2);
    assert_string_equal(log_field(log->element[0], "status"), "302");
    assert_string_equal(log_field(log->element[0], "result"), "retry");
    freeReplyObject(log);
    log = delivery_log("19");
    assert_int_equal(log->elements, 1);
    assert_string_equal(log_field(log->element[0], "result"), "delivered");
    freeReplyObject(log);
    harness_proc_stop(&d);
}

/* ---- Metrics ---- */

/* The value of a series line ("name{labels} " at a line start), -1 if none. */
static double metric(const char *text, const char *series)
{
    for (const char *p = strstr(text, series); p != NULL; p = strstr(p + 1, series))
        if (p == text || p[-1] == '\n')
            return atof(p + strlen(series));
    return -1;
}

static void test_metrics_count_results_attempts_and_queue_depth(void **state)
{
    (void)state;
    partner("16", "retry_schedule", "3600"); /* the failed event stays in retry for an hour */
    struct receiver_rule rule = {.fail_first = 1, .fail_status = 502};
    receiver_set_rule(rx, "16", &rule);
    char uid[25], eid[128];
    wf_uid(uid, 1600);
    for (unsigned i = 1; i <= 5; i++)
        assert_int_equal(wf_new_mail(rc, "16", uid, "m", i, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-metrics", NULL, NULL);
    assert_int_equal(receiver_wait(rx, "16", 5, 10000), 5);
    static char body[1 << 20];
    long long deadline = harness_now_ms() + 10000;
    char series[96];
    snprintf(series, sizeof series, "superimap_queue_events{shard=\"%d\",state=\"retry\"} ",
             wf_shard(uid));
    do {
        assert_int_equal(harness_http_get(d.port, "/metrics", body, sizeof body), 200);
        if (metric(body, series) == 1 &&
            metric(body, "superimap_webhook_deliveries_total{result=\"delivered\"} ") == 4)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_true(metric(body, "superimap_webhook_deliveries_total{result=\"delivered\"} ") == 4);
    assert_true(metric(body, "superimap_webhook_deliveries_total{result=\"retry\"} ") == 1);
    assert_true(metric(body, "superimap_webhook_deliveries_total{result=\"dead\"} ") == 0);
    assert_true(metric(body, "superimap_webhook_requests_total ") == 5);
    assert_true(metric(body, "superimap_webhook_request_duration_seconds_count ") == 5);
    assert_true(metric(body, series) == 1);
    snprintf(series, sizeof series, "superimap_queue_events{shard=\"%d\",state=\"ready\"} ",
             wf_shard(uid));
    assert_true(metric(body, series) == 0);
    assert_non_null(strstr(body, "superimap_queue_oldest_ready_seconds{shard=\"0\"} "));
    assert_true(metric(body, "superimap_webhook_circuits{state=\"open\"} ") == 0);
    assert_true(metric(body, "superimap_webhook_circuits{state=\"closed\"} ") >= 1);
    assert_true(metric(body, "superimap_webhook_inflight ") == 0);
    harness_proc_stop(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_thousand_events_over_ten_partners_each_delivered_once_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_message_delivered_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_dispatchers_split_the_shards_without_duplicates,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_user_connected_and_disconnected_are_delivered_with_their_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_credentials_in_a_webhook_url_are_sent_as_basic_auth_and_never_logged, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_user_reauth_required_goes_to_its_url_else_the_disconnected_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_500s_then_delivered_on_fourth_on_schedule, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_is_honoured_in_seconds_and_http_date,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_403_archives_user_but_keeps_tracer_user, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_410_disables_url_and_later_events_become_dead_letters,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exhausted_retries_dead_letter_then_replay_same_id,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_signs_with_new_and_old_secret, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_events_become_dead_letters_and_dispatcher_goes_on,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ssrf_guard_refuses_loopback_before_connecting, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_redirect_no_proxy_and_long_response_cut, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_metrics_count_results_attempts_and_queue_depth, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
