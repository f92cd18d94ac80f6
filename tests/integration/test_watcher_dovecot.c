/*
 * superimap-watcher against a real IMAP server: a private Dovecot (see
 * dovecot.h) and a private redis-server. For each TLS mode (plaintext,
 * STARTTLS, implicit TLS) a watched user gets exactly one new_mail event per
 * delivered message, with the right envelope, sha1 of the exact bytes, UID
 * and UIDVALIDITY, and mail present before the first login is not announced;
 * 8-bit mail that is not UTF-8 carries rfc822_base64; mail above
 * SUPERIMAP_MAX_EMAIL_SIZE gives a too_large event with the SHA-1 of its
 * bytes (read in parts); nothing is marked \Seen;
 * a wrong password gives auth_failed; users added and archived while the
 * watcher runs are picked up and dropped; a restart resumes from the cursor
 * without duplicates.
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

#include "tests/integration/dovecot.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID "7"

static struct redis_srv redis;
static struct dovecot dv;
static int have_dovecot;
static char skip_why[128];
static char ca_env[400];

static int suite_setup(void **state)
{
    (void)state;
    if (fx_init() < 0 || harness_redis_start(&redis) < 0)
        return -1;
    have_dovecot = dovecot_available(skip_why, sizeof skip_why);
    if (!have_dovecot)
        return 0;
    if (dovecot_start(&dv, 8) < 0)
        return -1;
    snprintf(ca_env, sizeof ca_env, "SUPERIMAP_CA_FILE=%s", dv.ca_file);
    return 0;
}

static int suite_teardown(void **state)
{
    (void)state;
    harness_stop_all();
    if (have_dovecot)
        dovecot_stop(&dv);
    harness_redis_stop(&redis);
    fx_shutdown();
    return 0;
}

static int setup(void **state)
{
    (void)state;
    char out[64];
    return harness_redis_get(&redis, out, sizeof out, "FLUSHALL");
}

static int teardown(void **state)
{
    (void)state;
    harness_stop_all();
    return 0;
}

#define NEED_DOVECOT() DOVECOT_NEED(have_dovecot, skip_why)

static int start_watcher(struct proc *p, const char *id, const char *const *more)
{
    const char *env[16] = {ca_env, "SUPERIMAP_IMAP_BACKOFF_MIN_MS=100",
                           "SUPERIMAP_IMAP_BACKOFF_MAX_MS=1000", "SUPERIMAP_LOG_COMPONENTS=imap"};
    int n = 4;
    for (const char *const *m = more; m != NULL && *m != NULL && n < 15; m++)
        env[n++] = *m;
    env[n] = NULL;
    return harness_node_start(p, &redis, "superimap-watcher", id, env);
}

/* A message with an RFC 2047 subject and sender name, CRLF line ends. */
static size_t make_mail(char *out, size_t outlen, const char *user, int n)
{
    int len = snprintf(out, outlen,
                       "From: =?UTF-8?Q?Jos=C3=A9_Garc=C3=ADa?= <jose@example.com>\r\n"
                       "To: %s@example.com\r\n"
                       "Subject: =?UTF-8?B?Q2Fmw6kg4piV?= %d\r\n"
                       "Message-ID: <m%d.%s@example.com>\r\n"
                       "Date: Tue, 4 Mar 2025 10:00:00 +0000\r\n"
                       "\r\n"
                       "Hello %d, this is a test.\r\n",
                       user, n, n, user, n);
    return (size_t)len;
}

static void sha1_of(const void *p, size_t n, char out[41])
{
    assert_int_equal(crypto_sha1_hex(p, n, out), 0);
}

static void assert_no_seen(const char *user)
{
    char out[4096];
    assert_int_equal(dovecot_fetch(&dv, user, "uid flags", out, sizeof out), 0);
    assert_null(strstr(out, "\\Seen"));
}

/* Checks the event of message number n (UID uid) of user. */
static void check_event(const char *uid, const char *user, const char *code, unsigned long uv,
                        unsigned msg_uid, int n)
{
    char mail[2048], eid[128], want_sha1[41], sha1[41];
    size_t len = make_mail(mail, sizeof mail, user, n);
    snprintf(eid, sizeof eid, "%s.%lu.%u", uid, uv, msg_uid);
    sha1_of(mail, len, want_sha1);
    yajl_val v = fx_event(&redis, uid, eid, sha1);
    if (v == NULL)
        fail_msg("no readable event %s", eid);
    assert_string_equal(sha1, want_sha1);
    assert_string_equal(json_get_str(v, "sha1"), want_sha1);
    assert_string_equal(json_get_str(v, "event"), "new_mail");
    assert_string_equal(json_get_str(v, "id"), eid);
    assert_string_equal(json_get_str(v, "imap_provider_code"), code);
    assert_string_equal(json_get_str(v, "user_tag"), user);
    int64_t i;
    assert_int_equal(json_get_int(v, "uid", &i), 0);
    assert_int_equal(i, msg_uid);
    assert_int_equal(json_get_int(v, "uidvalidity", &i), 0);
    assert_int_equal(i, (int64_t)uv);
    assert_int_equal(json_get_int(v, "size", &i), 0);
    assert_int_equal(i, (int64_t)len);
    int b = -1;
    assert_int_equal(json_get_bool(v, "too_large", &b), 0);
    assert_int_equal(b, 0);
    const char *raw = json_get_str(v, "rfc822");
    assert_non_null(raw);
    assert_int_equal(strlen(raw), len);
    assert_memory_equal(raw, mail, len);
    assert_null(json_get(v, "rfc822_base64"));
    char subject[64];
    snprintf(subject, sizeof subject, "=?UTF-8?B?Q2Fmw6kg4piV?= %d", n);
    assert_string_equal(fx_json_str(v, "envelope", "subject", NULL), subject);
    snprintf(subject, sizeof subject, "Caf\xc3\xa9 \xe2\x98\x95 %d", n);
    assert_string_equal(fx_json_str(v, "decoded", "subject", NULL), subject);
    char mid[96];
    snprintf(mid, sizeof mid, "<m%d.%s@example.com>", n, user);
    assert_string_equal(fx_json_str(v, "envelope", "message_id", NULL), mid);
    yajl_val from = json_get(json_get(v, "envelope"), "from");
    assert_true(YAJL_IS_ARRAY(from));
    assert_int_equal(from->u.array.len, 1);
    assert_string_equal(json_get_str(from->u.array.values[0], "mailbox"), "jose");
    assert_string_equal(json_get_str(from->u.array.values[0], "host"), "example.com");
    yajl_val dfrom = json_get(json_get(v, "decoded"), "from");
    assert_true(YAJL_IS_ARRAY(dfrom));
    assert_string_equal(json_get_str(dfrom->u.array.values[0], "name"), "Jos\xc3\xa9 Garc\xc3\xad"
                                                                        "a");
    json_free(v);
}

static void test_one_event_per_message_in_each_tls_mode(void **state)
{
    (void)state;
    NEED_DOVECOT();
    static const struct {
        const char *uid, *user, *code, *tls;
        int tls_port;
    } u[3] = {
        {"00000000000000000000a001", "user1", "dv-plain", "none", 0},
        {"00000000000000000000a002", "user2", "dv-starttls", "starttls", 0},
        {"00000000000000000000a003", "user3", "dv-tls", "implicit", 1},
    };
    char mail[2048];
    unsigned long uv[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx_provider(&redis, u[i].code, "127.0.0.1",
                                     u[i].tls_port ? dv.port_tls : dv.port_plain, u[i].tls),
                         0);
        char pass[16];
        snprintf(pass, sizeof pass, "pass%c", u[i].user[4]);
        assert_int_equal(fx_user(&redis, u[i].uid, PID, u[i].code, u[i].user, u[i].user, pass), 0);
        /* Mail from before the first login is never announced. */
        size_t len = make_mail(mail, sizeof mail, u[i].user, 100);
        assert_int_equal(dovecot_deliver(&dv, u[i].user, mail, len), 0);
        uv[i] = dovecot_uidvalidity(&dv, u[i].user);
        assert_true(uv[i] > 0);
    }
    struct proc w;
    assert_int_equal(start_watcher(&w, "w1", NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx_wait_user_field(&redis, u[i].uid, "state", "watching", 15000), 0);
    char last_login[32];
    fx_user_field(&redis, u[0].uid, "last_login_at", last_login, sizeof last_login);
    assert_true(atoll(last_login) > 0);
    for (int n = 1; n <= 2; n++)
        for (int i = 0; i < 3; i++) {
            size_t len = make_mail(mail, sizeof mail, u[i].user, n);
            assert_int_equal(dovecot_deliver(&dv, u[i].user, mail, len), 0);
        }
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx_wait_ready(&redis, u[i].uid, PID, 2, 15000), 0);
    for (int i = 0; i < 3; i++) {
        char ids[512], want[512];
        assert_int_equal(fx_ready_ids(&redis, u[i].uid, PID, ids, sizeof ids), 2);
        snprintf(want, sizeof want, "%s.%lu.2 %s.%lu.3", u[i].uid, uv[i], u[i].uid, uv[i]);
        assert_string_equal(ids, want);
        check_event(u[i].uid, u[i].user, u[i].code, uv[i], 2, 1);
        check_event(u[i].uid, u[i].user, u[i].code, uv[i], 3, 2);
        char cur[32];
        assert_int_equal(harness_redis_get(&redis, cur, sizeof cur, "HGET si:{%u}:cur:%s last_uid",
                                           fx_shard(u[i].uid), u[i].uid),
                         0);
        assert_string_equal(cur, "3");
        assert_no_seen(u[i].user);
        char last_email[32];
        fx_user_field(&redis, u[i].uid, "last_email_at", last_email, sizeof last_email);
        assert_true(atoll(last_email) > 0);
    }
    assert_true(harness_log_contains(&w, "provider loaded\" code=dv-tls"));
    assert_int_equal(harness_metric(w.port, "superimap_watcher_mail_recorded_total"), 6);
    assert_int_equal(harness_metric(w.port, "superimap_watcher_sessions_watching"), 3);
    harness_proc_stop(&w);
}

static void test_8bit_mail_gets_base64_and_big_mail_too_large(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000b004";
    assert_int_equal(fx_provider(&redis, "dv", "127.0.0.1", dv.port_tls, "implicit"), 0);
    assert_int_equal(fx_user(&redis, uid, PID, "dv", "t4", "user4", "pass4"), 0);
    const char *const more[] = {"SUPERIMAP_MAX_EMAIL_SIZE=4096", NULL};
    struct proc w;
    assert_int_equal(start_watcher(&w, "w1", more), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    unsigned long uv = dovecot_uidvalidity(&dv, "user4");

    static const char latin1[] = "From: a@example.com\r\nTo: b@example.com\r\n"
                                 "Subject: latin-1\r\n"
                                 "Content-Type: text/plain; charset=iso-8859-1\r\n"
                                 "Content-Transfer-Encoding: 8bit\r\n\r\n"
                                 "Caf\xe9 cr\xe8me \xff\r\n";
    size_t n1 = sizeof latin1 - 1;
    assert_int_equal(dovecot_deliver(&dv, "user4", latin1, n1), 0);
    static char big[12000];
    int hl = snprintf(big, sizeof big, "From: a@example.com\r\nSubject: big\r\n\r\n");
    size_t nb = (size_t)hl;
    while (nb + 80 < sizeof big) {
        memcpy(big + nb,
               "0123456789012345678901234567890123456789012345678901234567890123456789\r\n", 72);
        nb += 72;
    }
    assert_int_equal(dovecot_deliver(&dv, "user4", big, nb), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 2, 15000), 0);

    char eid[128], sha1[41], want[41];
    snprintf(eid, sizeof eid, "%s.%lu.1", uid, uv);
    yajl_val v = fx_event(&redis, uid, eid, sha1);
    assert_non_null(v);
    sha1_of(latin1, n1, want);
    assert_string_equal(sha1, want);
    const char *b64 = json_get_str(v, "rfc822_base64");
    assert_non_null(b64);
    unsigned char *raw;
    size_t rawlen;
    assert_int_equal(crypto_b64_decode(b64, strlen(b64), &raw, &rawlen), 0);
    assert_int_equal(rawlen, n1);
    assert_memory_equal(raw, latin1, n1);
    xfree(raw);
    const char *text = json_get_str(v, "rfc822");
    assert_non_null(text);
    assert_non_null(strstr(text, "Caf\xef\xbf\xbd cr")); /* U+FFFD for the bad byte */
    json_free(v);

    snprintf(eid, sizeof eid, "%s.%lu.2", uid, uv);
    v = fx_event(&redis, uid, eid, sha1);
    assert_non_null(v);
    int b = 0;
    assert_int_equal(json_get_bool(v, "too_large", &b), 0);
    assert_int_equal(b, 1);
    assert_true(YAJL_IS_NULL(json_get(v, "rfc822")));
    int64_t size;
    assert_int_equal(json_get_int(v, "size", &size), 0);
    assert_int_equal(size, (int64_t)nb);
    assert_string_equal(fx_json_str(v, "envelope", "subject", NULL), "big");
    /* The SHA-1 of its bytes, read in parts of 4,096 (BODY.PEEK[]<offset.length>). */
    sha1_of(big, nb, want);
    assert_string_equal(sha1, want);
    assert_string_equal(json_get_str(v, "sha1"), want);
    json_free(v);
    assert_int_equal(harness_metric(w.port, "superimap_watcher_mail_too_large_total"), 1);
    assert_no_seen("user4");
    harness_proc_stop(&w);
}

static void test_wrong_password_gives_auth_failed(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *bad = "00000000000000000000c005", *good = "00000000000000000000c006";
    assert_int_equal(fx_provider(&redis, "dv", "127.0.0.1", dv.port_plain, "starttls"), 0);
    assert_int_equal(fx_user(&redis, bad, PID, "dv", "t5", "user5", "wrong \"pass\\word"), 0);
    assert_int_equal(fx_user(&redis, good, PID, "dv", "t6", "user6", "pass6"), 0);
    struct proc w;
    assert_int_equal(start_watcher(&w, "w1", NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, bad, "state", "auth_failed", 15000), 0);
    assert_int_equal(fx_wait_user_field(&redis, good, "state", "watching", 15000), 0);
    char err[256];
    fx_user_field(&redis, bad, "last_error", err, sizeof err);
    assert_non_null(strstr(err, "login refused"));
    assert_true(harness_metric(w.port, "superimap_watcher_session_errors_total{kind=\"auth\"}") >=
                1);
    assert_int_equal(harness_http_get(w.port, "/healthz", NULL, 0), 200);
    assert_false(harness_log_contains(&w, "wrong \"pass"));
    harness_proc_stop(&w);
}

static void test_users_added_and_archived_while_running(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000d007";
    assert_int_equal(fx_provider(&redis, "dv", "127.0.0.1", dv.port_tls, "implicit"), 0);
    struct proc w;
    assert_int_equal(start_watcher(&w, "w1", NULL), 0);
    assert_int_equal(harness_wait_log(&w, "users loaded", 10000), 0);
    long long t0 = harness_now_ms();
    assert_int_equal(fx_user(&redis, uid, PID, "dv", "t7", "user7", "pass7"), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 5000), 0);
    assert_true(harness_now_ms() - t0 < 5000);
    char lease[128];
    assert_int_equal(
        harness_redis_get(&redis, lease, sizeof lease, "GET si:{%u}:lease:%s", fx_shard(uid), uid),
        0);
    assert_int_equal(strncmp(lease, "w1:", 3), 0);

    assert_int_equal(fx_archive(&redis, uid), 0);
    long long deadline = harness_now_ms() + 5000;
    while (harness_metric(w.port, "superimap_watcher_sessions") != 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(harness_metric(w.port, "superimap_watcher_sessions"), 0);
    /* The archived user's lease is given back. */
    deadline = harness_now_ms() + 5000;
    do {
        harness_redis_get(&redis, lease, sizeof lease, "EXISTS si:{%u}:lease:%s", fx_shard(uid),
                          uid);
        if (strcmp(lease, "0") == 0)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_string_equal(lease, "0");
    harness_proc_stop(&w);
}

static void test_restart_resumes_from_cursor_without_duplicates(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000e008";
    char mail[2048];
    assert_int_equal(fx_provider(&redis, "dv", "127.0.0.1", dv.port_plain, "none"), 0);
    assert_int_equal(fx_user(&redis, uid, PID, "dv", "user8", "user8", "pass8"), 0);
    struct proc w;
    assert_int_equal(start_watcher(&w, "w1", NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    size_t len = make_mail(mail, sizeof mail, "user8", 1);
    assert_int_equal(dovecot_deliver(&dv, "user8", mail, len), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 15000), 0);

    /* SIGTERM drains: LOGOUT, lease released, alive keys deleted. */
    harness_proc_signal(&w, SIGTERM);
    assert_int_equal(harness_proc_wait(&w, 10000), 0);
    assert_int_equal(w.exit_code, 0);
    char out[64];
    assert_int_equal(
        harness_redis_get(&redis, out, sizeof out, "EXISTS si:{%u}:lease:%s", fx_shard(uid), uid),
        0);
    assert_string_equal(out, "0");

    /* Mail arriving while nobody watches is found on the next start. */
    len = make_mail(mail, sizeof mail, "user8", 2);
    assert_int_equal(dovecot_deliver(&dv, "user8", mail, len), 0);
    assert_int_equal(start_watcher(&w, "w1", NULL), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 2, 15000), 0);
    len = make_mail(mail, sizeof mail, "user8", 3);
    assert_int_equal(dovecot_deliver(&dv, "user8", mail, len), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 3, 15000), 0);
    unsigned long uv = dovecot_uidvalidity(&dv, "user8");
    char ids[512], want[512];
    assert_int_equal(fx_ready_ids(&redis, uid, PID, ids, sizeof ids), 3);
    snprintf(want, sizeof want, "%s.%lu.1 %s.%lu.2 %s.%lu.3", uid, uv, uid, uv, uid, uv);
    assert_string_equal(ids, want);
    check_event(uid, "user8", "dv", uv, 2, 2);
    assert_int_equal(harness_metric(w.port, "superimap_watcher_mail_duplicates_total"), 0);
    harness_proc_stop(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_event_per_message_in_each_tls_mode, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_8bit_mail_gets_base64_and_big_mail_too_large, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password_gives_auth_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_added_and_archived_while_running, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes_from_cursor_without_duplicates, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
