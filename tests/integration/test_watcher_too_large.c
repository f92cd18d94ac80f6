/*
 * Mail over SUPERIMAP_MAX_EMAIL_SIZE against superimap-fake-imapd and a real
 * redis-server: its too_large event carries the SHA-1 of the message's bytes
 * (computed here independently), which the watcher reads in parts
 * (BODY.PEEK[]<offset.length>, at most the limit each) and hashes without
 * keeping them; a message whose size is a multiple of the part ends with an
 * empty part. A session in IDLE keeps no parser (docs/performance.md): one
 * made anew for a message just under the limit reads it whole, twice.
 * Dovecot is tested in test_watcher_dovecot.
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

#include "core/crypto.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID   "9"
#define LIMIT 65536 /* SUPERIMAP_MAX_EMAIL_SIZE: also the size of a part */

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc w;

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=5", NULL};
    return fx_suite_start(&redis, &srv, 0, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    return fx_suite_stop(&redis, &srv);
}

static int setup(void **state)
{
    (void)state;
    if (fx_suite_reset(&redis, &srv) < 0)
        return -1;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    if (port <= 0 || fx_provider(&redis, "fk", host, port, "none") < 0)
        return -1;
    const char *env[] = {"SUPERIMAP_MAX_EMAIL_SIZE=65536", "SUPERIMAP_IMAP_BACKOFF_MIN_MS=50",
                         "SUPERIMAP_IMAP_BACKOFF_MAX_MS=500",
                         "SUPERIMAP_IMAP_COMMAND_TIMEOUT_MS=5000", NULL};
    return harness_node_start(&w, &redis, "superimap-watcher", "w1", env);
}

static int teardown(void **state)
{
    (void)state;
    harness_proc_stop(&w);
    return 0;
}

/* A message of exactly n bytes: a header, then lines of varied digits. */
static char *message(size_t n)
{
    char *m = malloc(n);
    assert_non_null(m);
    int hl = snprintf(m, n, "From: a@example.com\r\nSubject: big %zu\r\n\r\n", n);
    for (size_t i = (size_t)hl; i < n; i++)
        m[i] = (i + 2) % 76 == 0 ? '\r' : (i + 1) % 76 == 0 ? '\n' : (char)('0' + (i * 7) % 10);
    return m;
}

/* Appends a message of n bytes to user1's INBOX while uid watches, and
 * checks its event: too_large, the size, no body, and the SHA-1 of the
 * bytes; the watcher asked for parts bodies (fake-imapd's count). */
static void check_big_mail(const char *uid, size_t n, long long parts)
{
    assert_int_equal(fx_user(&redis, uid, PID, "fk", "t1", "user1", "pass1"), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    long long bodies = fakeimap_stat(&srv, "bodies");
    char *m = message(n);
    uint32_t muid = 0;
    assert_int_equal(fakeimap_append(&srv, "user1", m, n, &muid), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 15000), 0);

    char want[CRYPTO_SHA1_HEX_LEN + 1], sha1[CRYPTO_SHA1_HEX_LEN + 1], eid[128], uv[32];
    assert_int_equal(crypto_sha1_hex(m, n, want), 0);
    free(m);
    assert_int_equal(harness_redis_get(&redis, uv, sizeof uv, "HGET si:{%u}:cur:%s uidvalidity",
                                       fx_shard(uid), uid),
                     0);
    snprintf(eid, sizeof eid, "%s.%s.%u", uid, uv, (unsigned)muid);
    yajl_val v = fx_event(&redis, uid, eid, sha1);
    assert_non_null(v);
    assert_string_equal(sha1, want);
    assert_string_equal(json_get_str(v, "sha1"), want);
    int b = 0;
    assert_int_equal(json_get_bool(v, "too_large", &b), 0);
    assert_int_equal(b, 1);
    assert_true(YAJL_IS_NULL(json_get(v, "rfc822")));
    int64_t size = 0;
    assert_int_equal(json_get_int(v, "size", &size), 0);
    assert_int_equal(size, (int64_t)n);
    json_free(v);
    assert_int_equal(fakeimap_stat(&srv, "bodies") - bodies, parts);
    assert_int_equal(fakeimap_stat(&srv, "nonpeek"), 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_mail_too_large_total", 1, 5000), 0);
}

static void test_too_large_mail_carries_the_sha1_of_its_bytes(void **state)
{
    (void)state;
    /* 300,000 bytes: parts of 65,536 bytes, the fifth short. */
    check_big_mail("00000000000000000000e001", 300000, 5);
}

static void test_a_multiple_of_the_part_ends_with_an_empty_part(void **state)
{
    (void)state;
    /* 131,072 bytes: two whole parts, then an empty one says it ended. */
    check_big_mail("00000000000000000000e002", 2 * LIMIT, 3);
}

/* Waits until fake-imapd has received more than n IDLE commands. */
static void wait_idles_over(long long n)
{
    long long deadline = harness_now_ms() + 15000;
    while (fakeimap_stat(&srv, "idles") <= n) {
        if (harness_now_ms() > deadline)
            fail_msg("no IDLE past %lld after 15 s", n);
        harness_poll_pause();
    }
}

/* The parser an idle session freed is made again when mail ends the IDLE:
 * a body of nearly the limit (one literal over many reads) comes whole into
 * the event, for a first message and for one after the session went back
 * to IDLE (and freed its parser again). */
static void test_mail_after_idle_freed_the_parser_comes_whole(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000e003";
    assert_int_equal(fx_user(&redis, uid, PID, "fk", "t1", "user1", "pass1"), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    char uv[32];
    assert_int_equal(harness_redis_get(&redis, uv, sizeof uv, "HGET si:{%u}:cur:%s uidvalidity",
                                       fx_shard(uid), uid),
                     0);
    for (int i = 0; i < 2; i++) {
        size_t n = LIMIT - 100 - (size_t)i;
        long long idles = fakeimap_stat(&srv, "idles");
        char *m = message(n);
        uint32_t muid = 0;
        assert_int_equal(fakeimap_append(&srv, "user1", m, n, &muid), 0);
        assert_int_equal(fx_wait_ready(&redis, uid, PID, i + 1, 15000), 0);
        char eid[128];
        snprintf(eid, sizeof eid, "%s.%s.%u", uid, uv, (unsigned)muid);
        yajl_val v = fx_event(&redis, uid, eid, NULL);
        assert_non_null(v);
        const char *text = json_get_str(v, "rfc822");
        assert_non_null(text);
        assert_int_equal(strlen(text), n);
        assert_memory_equal(text, m, n);
        json_free(v);
        free(m);
        wait_idles_over(idles); /* back in IDLE before the next one */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_too_large_mail_carries_the_sha1_of_its_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_multiple_of_the_part_ends_with_an_empty_part, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mail_after_idle_freed_the_parser_comes_whole, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
