/*
 * The api's worker threads under clients that hold them: webhook tests that
 * wait for a dispatcher that is not running, connections that never finish
 * their headers, requests that promise a body and never send it. Each time
 * /healthz, another partner and the admin API must still be answered while
 * the others wait (the api runs 16 worker threads, as in production).
 *
 * The attackers connect from 127.0.0.2 (a loopback address of their own),
 * the well-behaved clients from 127.0.0.1: the bounds are per client address.
 * Each test prints the times it measured.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAITERS    24
#define SLOW_HEADS 40
#define SLOW_BODY  20

static struct redis_srv redis;
static struct proc api;
static char *key_a, *key_b;
static long long pid_a;

/* The suite's api: 16 threads; its waiting webhook tests come 24 at once
 * from one address, which the bound on slow connections must not judge (on
 * a loaded machine a worker may look at a connection before its request
 * arrives): that bound is test_slow_clients_do_not_hold_every_thread's, on
 * an api of its own with the defaults. */
static const char *const slow_env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                                       "SUPERIMAP_API_RATE_LIMIT=0",
                                       "SUPERIMAP_API_THREADS=16",
                                       "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                                       "SUPERIMAP_API_CLIENT_PENDING=0",
                                       NULL};
static const char *const slowloris_env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                                            "SUPERIMAP_API_RATE_LIMIT=0",
                                            "SUPERIMAP_API_THREADS=16", NULL};

static int suite_setup(void **state)
{
    (void)state;
    if (harness_redis_start(&redis) < 0 ||
        harness_node_start(&api, &redis, "superimap-api", "api-slow", slow_env) < 0 ||
        harness_wait_http(api.port, "/readyz", 200, 10000) < 0)
        return -1;
    return 0;
}

static int suite_teardown(void **state)
{
    (void)state;
    free(key_a);
    free(key_b);
    return api_suite_stop(&redis);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    free(key_a);
    free(key_b);
    key_a = make_partner(api.port, "A", &pid_a);
    key_b = make_partner(api.port, "B", NULL);
    return 0;
}

/* ---- Status checks, one place each ---- */

/* A webhook test's answer: 200 with a result, or 202 still pending. */
static void expect_test_answer(const struct api_resp *r)
{
    if (r->status != 200 && r->status != 202)
        fail_msg("webhook-test: want 200 or 202, got %d: %.300s", r->status,
                 r->body ? r->body : "");
    assert_non_null(jstr(r, "id"));
}

/* A create answered as such. */
static void expect_created(const struct api_resp *r)
{
    if (r->status != 201)
        fail_msg("want 201, got %d: %.300s", r->status, r->body ? r->body : "");
}

/* A body refused because its client already sends as many as it may. */
static int is_too_many_pending(const struct api_resp *r)
{
    return r->status == 429 && r->body != NULL && strstr(r->body, "too_many_pending") != NULL;
}

/* A wrong key. */
static void expect_unauthorized(const struct api_resp *r)
{
    if (r->status != 401)
        fail_msg("want 401, got %d: %.300s", r->status, r->body ? r->body : "");
}

/* The answer to a slow client the api turns away at once: 503 for a
 * connection (closed before its headers were read), 401 for a wrong key
 * (before its body was read), 429 for one body too many; 0 is a reset (the
 * api closed while request bytes were unread). */
static int is_turned_away(int status)
{
    return status == 503 || status == 401 || status == 429 || status == 0;
}

/* ---- A raw client: connect from a chosen loopback address ---- */

static int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    /* A refused connection may already be closed: that is its answer. */
    (void)!send(fd, s, n, MSG_NOSIGNAL);
}

enum peer_state { PEER_OPEN, PEER_ANSWERED, PEER_CLOSED };

/* What the server did with fd so far, without waiting: nothing (open), an
 * answer (its status in *status; 0 for a reset), or a close without one. */
static enum peer_state peer_state(int fd, int *status)
{
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return PEER_OPEN;
    if (n < 0) {
        *status = 0;
        return PEER_ANSWERED;
    }
    if (n == 0)
        return PEER_CLOSED;
    buf[n] = '\0';
    *status = strncmp(buf, "HTTP/1.", 7) == 0 ? atoi(buf + 9) : -1;
    return PEER_ANSWERED;
}

/* GET path from 127.0.0.1 with extra header lines, waiting up to 120 s (so
 * that the time of a blocked api is measured, not a client timeout). The
 * status, or -1; *ms is how long the answer took. */
static int timed_get(int port, const char *path, const char *headers, long long *ms)
{
    long long t0 = harness_now_ms();
    int fd = connect_from("127.0.0.1", port);
    char req[1024];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n",
             path, headers);
    send_all(fd, req);
    char buf[256];
    size_t got = 0;
    while (got < 12 && harness_now_ms() < t0 + 120000) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *ms = harness_now_ms() - t0;
    buf[got] = '\0';
    return got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 ? atoi(buf + 9) : -1;
}

/* ---- Waiting webhook tests ---- */

struct waiter {
    pthread_t th;
    struct api_resp r;
    long long done_ms;
};

static void *wait_test(void *arg)
{
    struct waiter *w = arg;
    api_json(&w->r, api.port, "POST", "/api/v2/webhook-test?wait_ms=10000", key_a, NULL);
    w->done_ms = harness_now_ms();
    return NULL;
}

static long long test_events(long long pid)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "si:*:evt:test.%lld.*", pid);
    redisReply *r = rcmd(&redis, "KEYS %s", pattern);
    long long n = (long long)r->elements;
    freeReplyObject(r);
    return n;
}

static void test_waiting_webhook_tests_leave_threads_for_everyone_else(void **state)
{
    (void)state;
    /* No dispatcher runs: every test that waits waits its whole 10 s. */
    static struct waiter w[WAITERS];
    long long t0 = harness_now_ms();
    for (int i = 0; i < WAITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        assert_int_equal(pthread_create(&w[i].th, NULL, wait_test, &w[i]), 0);
    }
    /* Every test is in the queue once its event is: 16 threads' worth at
     * least (the old api stopped there, every thread waiting). */
    long long deadline = harness_now_ms() + 20000;
    while (test_events(pid_a) < 16 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_true(test_events(pid_a) >= 16);

    long long ms_health, ms_partner, ms_admin;
    char hb[256];
    snprintf(hb, sizeof hb, "x-api-key: %s\r\n", key_b);
    int st_health = timed_get(api.port, "/healthz", "", &ms_health);
    int st_partner = timed_get(api.port, "/api/v2/connections", hb, &ms_partner);
    int st_admin = timed_get(api.port, "/admin/api/partners",
                             "Authorization: Bearer " TEST_ADMIN_TOKEN "\r\n", &ms_admin);
    long long others_done = harness_now_ms();
    for (int i = 0; i < WAITERS; i++)
        pthread_join(w[i].th, NULL);
    print_message("24 waiting webhook tests: /healthz %lld ms, another partner %lld ms, admin "
                  "%lld ms\n",
                  ms_health, ms_partner, ms_admin);
    assert_int_equal(st_health, 200);
    assert_int_equal(st_partner, 200);
    assert_int_equal(st_admin, 200);

    /* The tests that waited ended after the others were answered; the rest
     * were answered pending at once, each with its event to poll. */
    int waited = 0, answered_at_once = 0;
    for (int i = 0; i < WAITERS; i++) {
        expect_test_answer(&w[i].r);
        if (w[i].done_ms - t0 >= 10000) {
            waited++;
            assert_true(others_done < w[i].done_ms);
        } else {
            assert_string_equal(jstr(&w[i].r, "result"), "pending");
            answered_at_once++;
        }
        api_resp_free(&w[i].r);
    }
    print_message("%d tests waited, %d answered pending at once\n", waited, answered_at_once);
    assert_true(waited >= 1);
    assert_true(waited <= 4); /* SUPERIMAP_API_TEST_WAITERS */
    assert_true(harness_metric(api.port, "superimap_api_webhook_tests_not_waited_total") ==
                answered_at_once);
    assert_int_equal(test_events(pid_a), WAITERS);
}

/* ---- Slow clients ---- */

static void test_slow_clients_do_not_hold_every_thread(void **state)
{
    (void)state;
    struct proc own;
    start_api(&own, &redis, "api-slowloris", slowloris_env);
    int heads[SLOW_HEADS], bodies[SLOW_BODY];
    char req[512];
    /* Headers that never end. */
    for (int i = 0; i < SLOW_HEADS; i++) {
        heads[i] = connect_from("127.0.0.2", own.port);
        send_all(heads[i], "GET /api/v2/connections HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    }
    /* Bodies of 60 KB that stop after 1 byte: with a valid key, a wrong
     * one, and none (the key could be in the body, as the original allowed). */
    for (int i = 0; i < SLOW_BODY; i++) {
        char key[128] = "";
        if (i < 10)
            snprintf(key, sizeof key, "x-api-key: %s\r\n", key_a);
        else if (i < 15)
            snprintf(key, sizeof key, "x-api-key: wrong-key-%d\r\n", i);
        snprintf(req, sizeof req,
                 "POST /api/v2/connections HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
                 "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 61440\r\n"
                 "\r\ni",
                 key);
        bodies[i] = connect_from("127.0.0.2", own.port);
        send_all(bodies[i], req);
    }

    long long ms_health, ms_partner;
    char hb[256];
    snprintf(hb, sizeof hb, "x-api-key: %s\r\n", key_b);
    int st_health = timed_get(own.port, "/healthz", "", &ms_health);
    int st_partner = timed_get(own.port, "/api/v2/connections", hb, &ms_partner);

    /* None of the slow connections the api took has timed out yet (a
     * timeout closes, or answers other than turned away): the answers came
     * while they still held their threads. */
    int open = 0, turned_away = 0, timed_out = 0, status = 0;
    for (int i = 0; i < SLOW_HEADS; i++) {
        enum peer_state s = peer_state(heads[i], &status);
        open += s == PEER_OPEN;
        turned_away += s == PEER_ANSWERED && is_turned_away(status);
        timed_out += s == PEER_CLOSED || (s == PEER_ANSWERED && !is_turned_away(status));
    }
    print_message("slow clients: /healthz %lld ms, a partner's request %lld ms; %d slow "
                  "connections still open, %d turned away, %d timed out\n",
                  ms_health, ms_partner, open, turned_away, timed_out);
    assert_int_equal(st_health, 200);
    assert_int_equal(st_partner, 200);
    assert_int_equal(timed_out, 0);
    assert_true(open >= 1);

    /* A wrong key is answered without waiting for the body (or the
     * connection was turned away before its headers were read). */
    for (int i = 10; i < 15; i++) {
        long long deadline = harness_now_ms() + 5000;
        enum peer_state s;
        while ((s = peer_state(bodies[i], &status)) == PEER_OPEN && harness_now_ms() < deadline)
            harness_poll_pause();
        if (s != PEER_ANSWERED || !is_turned_away(status))
            fail_msg("a wrong key with a slow body: state %d, status %d", s, status);
    }
    for (int i = 0; i < SLOW_HEADS; i++)
        close(heads[i]);
    for (int i = 0; i < SLOW_BODY; i++)
        close(bodies[i]);
    assert_true(harness_proc_wait(&own, 0) == -1);
    harness_proc_stop(&own);
}

/* ---- Behind a proxy ---- */

/* The api behind a trusted proxy (here the test itself, on 127.0.0.1):
 * bodies are bounded per client the proxy forwards for, not per proxy. */
static void test_behind_a_proxy_each_client_is_bounded_alone(void **state)
{
    (void)state;
    struct proc proxied;
    const char *env[] = {
        "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_API_RATE_LIMIT=0",
        "SUPERIMAP_TRUSTED_PROXIES=127.0.0.1",     "SUPERIMAP_API_CLIENT_PENDING=1",
        "SUPERIMAP_API_REQUEST_TIMEOUT_MS=60000",  NULL};
    start_api(&proxied, &redis, "api-proxied", env);
    /* Client 203.0.113.7 starts a body and stops (for a minute). */
    int slow = connect_from("127.0.0.1", proxied.port);
    char req[512];
    snprintf(req, sizeof req,
             "POST /api/v2/connections HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: %s\r\n"
             "X-Forwarded-For: 203.0.113.7\r\nContent-Type: application/x-www-form-urlencoded\r\n"
             "Content-Length: 100\r\n\r\ni",
             key_a);
    send_all(slow, req);
    char key_hdr[128];
    snprintf(key_hdr, sizeof key_hdr, "x-api-key: %s", key_a);
    const char *same[] = {key_hdr, "X-Forwarded-For: 203.0.113.7", NULL};
    const char *other[] = {key_hdr, "X-Forwarded-For: 203.0.113.8", NULL};
    const char *form = "imap_provider_code=NONE";
    struct api_resp r = {0};
    /* Once its slow body is being read, its next body is refused... */
    long long deadline = harness_now_ms() + 30000;
    for (;;) {
        int st = 0;
        if (peer_state(slow, &st) != PEER_OPEN) {
            /* The slow body was the one turned away: our previous request's
             * body was being read when it came (one pending per client). */
            close(slow);
            slow = connect_from("127.0.0.1", proxied.port);
            send_all(slow, req);
        }
        api_call(&r, proxied.port, "POST", "/api/v2/connections",
                 "application/x-www-form-urlencoded", form, strlen(form), same);
        if (is_too_many_pending(&r) || harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    if (!is_too_many_pending(&r)) {
        int st = 0;
        enum peer_state ps = peer_state(slow, &st);
        fail_msg("a second body of one client: want 429, got %d (its slow body: state %d, "
                 "status %d)",
                 r.status, ps, st);
    }
    /* ...while another client behind the same proxy goes on. */
    api_call(&r, proxied.port, "POST", "/api/v2/connections", "application/x-www-form-urlencoded",
             form, strlen(form), other);
    if (is_too_many_pending(&r) || r.status < 0)
        fail_msg("another client behind the proxy: got %d", r.status);
    close(slow);
    harness_proc_stop(&proxied);
    api_resp_free(&r);
}

/* ---- A key in the body ---- */

static void test_a_key_given_only_in_the_body_still_works(void **state)
{
    (void)state;
    /* As the original took it: the body is read first, then the key checked. */
    make_provider(api.port, "PLAIN", "plain");
    char form[256];
    snprintf(form, sizeof form, "api_key=%s&imap_provider_code=PLAIN", key_a);
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v2/connections", NULL, form);
    expect_created(&r);
    api_form(&r, api.port, "POST", "/api/v2/connections", NULL,
             "api_key=not-a-key&imap_provider_code=PLAIN");
    expect_unauthorized(&r);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_waiting_webhook_tests_leave_threads_for_everyone_else, setup),
        cmocka_unit_test_setup(test_slow_clients_do_not_hold_every_thread, setup),
        cmocka_unit_test_setup(test_behind_a_proxy_each_client_is_bounded_alone, setup),
        cmocka_unit_test_setup(test_a_key_given_only_in_the_body_still_works, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
