/*
 * superimap-watcher against superimap-fake-imapd, for what a real server
 * cannot be made to do on demand: a stale lease (another incarnation took
 * the user) makes record_mail refuse and the watcher fence itself and come
 * back under a new generation; a lost alive key fences it within one
 * renewal; a UIDVALIDITY change gives a new baseline without announcing old
 * mail; users over capacity are visibly unassigned and promoted when a slot
 * frees; throttling and refused logins show as throttled and auth_failed
 * and heal.
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

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID "9"

static struct redis_srv redis;
static struct fakeimap srv;

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=50", NULL};
    return fx_suite_start(&redis, &srv, 1, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    return fx_suite_stop(&redis, &srv);
}

static int setup(void **state)
{
    (void)state;
    return fx_suite_reset(&redis, &srv);
}

/* The watcher of the running test. It lives here, not on the test's stack:
 * a failed assertion leaves the test function at once and teardown must
 * still find the process to stop it (fake-imapd is the whole suite's, so
 * harness_stop_all() waits for the suite's end). */
static struct proc w;

static int teardown(void **state)
{
    (void)state;
    harness_proc_stop(&w);
    memset(&w, 0, sizeof w);
    return 0;
}

static int start_watcher(const char *const *more)
{
    static char ca[400];
    snprintf(ca, sizeof ca, "SUPERIMAP_CA_FILE=%s", srv.cert);
    const char *env[16] = {ca,
                           "SUPERIMAP_IMAP_BACKOFF_MIN_MS=50",
                           "SUPERIMAP_IMAP_BACKOFF_MAX_MS=500",
                           "SUPERIMAP_IMAP_COMMAND_TIMEOUT_MS=2000",
                           "SUPERIMAP_IMAP_CONNECT_TIMEOUT_MS=2000",
                           "SUPERIMAP_LOG_COMPONENTS=imap"};
    int n = 6;
    for (const char *const *m = more; m != NULL && *m != NULL && n < 15; m++)
        env[n++] = *m;
    env[n] = NULL;
    return harness_node_start(&w, &redis, "superimap-watcher", "w1", env);
}

/* Provider "fk" on the plain listener (tls none) and "fks" on implicit TLS. */
static void providers(void)
{
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, "fk", host, port, "none"), 0);
    port = fakeimap_port(&srv, 1, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, "fks", "127.0.0.1", port, "implicit"), 0);
}

static void user(const char *uid, const char *code, int n)
{
    char login[16], pass[16];
    snprintf(login, sizeof login, "user%d", n);
    snprintf(pass, sizeof pass, "pass%d", n);
    assert_int_equal(fx_user(&redis, uid, PID, code, login, login, pass), 0);
}

static uint32_t append(const char *login, int n)
{
    char m[256];
    int len = snprintf(m, sizeof m, "From: a@example.com\r\nSubject: m%d\r\n\r\nbody %d\r\n", n, n);
    uint32_t uid = 0;
    assert_int_equal(fakeimap_append(&srv, login, m, (size_t)len, &uid), 0);
    return uid;
}

/* Runs a formatted Redis command and returns its reply as text in out. */
static void get(char *out, size_t outlen, const char *fmt, ...)
{
    redisContext *c = harness_redis_connect(&redis);
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    out[0] = '\0';
    if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, outlen, "%lld", r->integer);
    else if (r->str != NULL)
        snprintf(out, outlen, "%s", r->str);
    freeReplyObject(r);
}

static void lease_of(const char *uid, char *out, size_t outlen)
{
    assert_int_equal(
        harness_redis_get(&redis, out, outlen, "GET si:{%u}:lease:%s", fx_shard(uid), uid), 0);
}

/* Polls until fake-imapd has no session of login. */
static int wait_no_session(const char *login, int ms)
{
    long long deadline = harness_now_ms() + ms;
    int cur = -1, max = 0;
    do {
        if (fakeimap_sessions(&srv, login, &cur, &max) == 0 && cur == 0)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    return -1;
}

static void test_stale_lease_cannot_record_and_watcher_comes_back(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000f001";
    providers();
    user(uid, "fk", 1);
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    char lease[128];
    lease_of(uid, lease, sizeof lease);
    assert_int_equal(strncmp(lease, "w1:", 3), 0);
    long long gen = atoll(lease + 3);
    unsigned k = fx_shard(uid);

    /* Another incarnation took the user (as after our alive key vanished). */
    char out[64];
    get(out, sizeof out, "SET si:{%u}:alive:intruder:1 1 PX 60000", k);
    get(out, sizeof out, "SET si:{%u}:lease:%s intruder:1", k, uid);
    uint32_t muid = append("user1", 1);
    assert_true(muid > 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_stale_total", 1, 10000), 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_fences_total", 1, 10000), 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_generation", (double)gen + 1, 10000),
                     0);
    /* Nothing was published, and the session is gone while the intruder lives. */
    assert_int_equal(fx_ready_count(&redis, uid, PID), 0);
    assert_int_equal(wait_no_session("user1", 10000), 0);
    lease_of(uid, lease, sizeof lease);
    assert_string_equal(lease, "intruder:1");
    assert_true(harness_metric(w.port, "superimap_watcher_lease_busy_total") >= 1);

    /* The intruder dies: the watcher takes the user and records the mail once. */
    get(out, sizeof out, "DEL si:{%u}:alive:intruder:1", k);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 10000), 0);
    lease_of(uid, lease, sizeof lease);
    assert_int_equal(strncmp(lease, "w1:", 3), 0);
    assert_true(atoll(lease + 3) > gen);
    char ids[256], want[256];
    assert_int_equal(fx_ready_ids(&redis, uid, PID, ids, sizeof ids), 1);
    char cur[32];
    get(cur, sizeof cur, "HGET si:{%u}:cur:%s uidvalidity", k, uid);
    snprintf(want, sizeof want, "%s.%s.%u", uid, cur, muid);
    assert_string_equal(ids, want);
    int now = 0, max = 0;
    assert_int_equal(fakeimap_sessions(&srv, "user1", &now, &max), 0);
    assert_true(max <= 1);
    harness_proc_stop(&w);
}

static void test_lost_alive_key_fences_within_a_renewal(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000f002";
    providers();
    user(uid, "fks", 2);
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    char lease[128], out[64];
    lease_of(uid, lease, sizeof lease);
    long long gen = atoll(lease + 3);
    get(out, sizeof out, "DEL si:{%u}:alive:%s", fx_shard(uid), lease);
    long long t0 = harness_now_ms();
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_fences_total", 1, 8000), 0);
    assert_true(harness_now_ms() - t0 <= 7000); /* one renewal period, plus slack */
    assert_int_equal(harness_wait_log(&w, "self-fencing", 1000), 0);
    /* The new generation holds the user and watches again. */
    long long deadline = harness_now_ms() + 10000;
    do {
        lease_of(uid, lease, sizeof lease);
        if (strncmp(lease, "w1:", 3) == 0 && atoll(lease + 3) > gen)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_true(atoll(lease + 3) > gen);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    char alive[160];
    get(alive, sizeof alive, "EXISTS si:{%u}:alive:%s", fx_shard(uid), lease);
    assert_string_equal(alive, "1");
    append("user2", 1);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 10000), 0);
    int now = 0, max = 0;
    assert_int_equal(fakeimap_sessions(&srv, "user2", &now, &max), 0);
    assert_true(max <= 1);
    harness_proc_stop(&w);
}

static void test_uidvalidity_change_gives_new_baseline(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000f003";
    providers();
    user(uid, "fk", 3);
    append("user3", 0); /* old mail: never announced */
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    uint32_t m1 = append("user3", 1);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 10000), 0);
    char uv1[32];
    get(uv1, sizeof uv1, "HGET si:{%u}:cur:%s uidvalidity", fx_shard(uid), uid);

    assert_int_equal(fakeimap_set_uidvalidity(&srv, "user3", 777), 0);
    long long deadline = harness_now_ms() + 10000;
    char uv[32] = "";
    do {
        get(uv, sizeof uv, "HGET si:{%u}:cur:%s uidvalidity", fx_shard(uid), uid);
        if (strcmp(uv, "777") == 0)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_string_equal(uv, "777");
    assert_int_equal(harness_log_count(&w, "new mailbox baseline"), 2); /* first sight, then 777 */
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    uint32_t m2 = append("user3", 2);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 2, 10000), 0);
    char ids[512], want[512];
    assert_int_equal(fx_ready_ids(&redis, uid, PID, ids, sizeof ids), 2);
    snprintf(want, sizeof want, "%s.%s.%u %s.777.%u", uid, uv1, m1, uid, m2);
    assert_string_equal(ids, want);
    harness_proc_stop(&w);
}

static void test_users_over_capacity_are_unassigned_then_promoted(void **state)
{
    (void)state;
    const char *uids[3] = {"00000000000000000000f004", "00000000000000000000f005",
                           "00000000000000000000f006"};
    providers();
    for (int i = 0; i < 3; i++)
        user(uids[i], "fk", 4 + i);
    const char *const more[] = {"SUPERIMAP_MAX_USERS=2", NULL};
    assert_int_equal(start_watcher(more), 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_sessions_watching", 2, 10000), 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_users_unassigned", 1, 5000), 0);
    int unassigned = -1, watching = 0;
    long long deadline = harness_now_ms() + 5000;
    do {
        watching = 0;
        unassigned = -1;
        for (int i = 0; i < 3; i++) {
            char st[32];
            fx_user_field(&redis, uids[i], "state", st, sizeof st);
            if (strcmp(st, "unassigned") == 0)
                unassigned = i;
            watching += strcmp(st, "watching") == 0;
        }
        if (unassigned >= 0 && watching == 2)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_true(unassigned >= 0);
    assert_int_equal(watching, 2);
    assert_int_equal(harness_wait_log(&w, "users over capacity stay unwatched", 12000), 0);
    assert_int_equal(harness_metric(w.port, "superimap_watcher_sessions"), 2);

    /* A watched user leaves: the unassigned one takes its place. */
    int gone = unassigned == 0 ? 1 : 0;
    assert_int_equal(fx_archive(&redis, uids[gone]), 0);
    assert_int_equal(fx_wait_user_field(&redis, uids[unassigned], "state", "watching", 5000), 0);
    assert_int_equal(harness_metric(w.port, "superimap_watcher_users_unassigned"), 0);
    harness_proc_stop(&w);
}

/* A Redis written by schema 1 kept each shard's users to watch in a set. A
 * watcher of schema 2 migrates it before it starts (core/node.c): the sets
 * become zsets scored by each user's connected_at, the version is bumped,
 * and placement follows that order: with room for 2 of 3, the two connected
 * first are watched and the last one is unassigned. */
static void test_schema_1_is_migrated_and_its_users_ranked_by_connected_at(void **state)
{
    (void)state;
    const char *uids[3] = {"00000000000000000000f011", "00000000000000000000f012",
                           "00000000000000000000f013"};
    const char *connected_at[3] = {"3000", "1000", "2000"};
    providers();
    for (int i = 0; i < 3; i++)
        user(uids[i], "fk", 11 + i);
    char out[64];
    for (int i = 0; i < 3; i++) {
        unsigned k = fx_shard(uids[i]);
        get(out, sizeof out, "DEL si:{%u}:users", k);
        get(out, sizeof out, "SADD si:{%u}:users %s", k, uids[i]);
        get(out, sizeof out, "HSET si:{%u}:user:%s connected_at %s", k, uids[i], connected_at[i]);
    }
    get(out, sizeof out, "HSET si:meta schema_version 1 shards 64 created_at 1");

    const char *const more[] = {"SUPERIMAP_MAX_USERS=2", NULL};
    assert_int_equal(start_watcher(more), 0);
    assert_int_equal(harness_wait_log(&w, "migrated the Redis schema", 10000), 0);
    get(out, sizeof out, "HGET si:meta schema_version");
    assert_string_equal(out, "2");
    for (int i = 0; i < 3; i++) {
        unsigned k = fx_shard(uids[i]);
        get(out, sizeof out, "TYPE si:{%u}:users", k);
        assert_string_equal(out, "zset");
        get(out, sizeof out, "ZSCORE si:{%u}:users %s", k, uids[i]);
        assert_string_equal(out, connected_at[i]);
    }
    assert_int_equal(fx_wait_user_field(&redis, uids[1], "state", "watching", 10000), 0);
    assert_int_equal(fx_wait_user_field(&redis, uids[2], "state", "watching", 10000), 0);
    assert_int_equal(fx_wait_user_field(&redis, uids[0], "state", "unassigned", 10000), 0);
    harness_proc_stop(&w);
}

/* An archive and a restore the watcher reads in one poll of si:changes: the
 * user is a member again by then, but its cursor_epoch went up twice, so
 * the running session could not write its cursor any more. It must start
 * again under the new epoch, and mail after that be announced. */
static void test_archive_and_restore_read_in_one_poll_restart_the_session(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000f009";
    unsigned k = fx_shard(uid);
    providers();
    user(uid, "fk", 9);
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);
    append("user9", 1);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 10000), 0);
    long long logins = fakeimap_stat(&srv, "logins");

    /* Both as user_archive.lua and user_restore.lua write them, in one
     * transaction, so that one XREAD returns both entries. */
    redisContext *c = harness_redis_connect(&redis);
    assert_non_null(c);
    const char *cmds[] = {"MULTI",
                          "HSET si:{%u}:user:%s archived 1 state archived",
                          "HINCRBY si:{%u}:user:%s cursor_epoch 1",
                          "ZREM si:{%u}:users %s",
                          "XADD si:changes * uid %s k %u op archive",
                          "HSET si:{%u}:user:%s archived 0 state idle",
                          "HINCRBY si:{%u}:user:%s cursor_epoch 1",
                          "DEL si:{%u}:cur:%s",
                          "ZADD si:{%u}:users 1 %s",
                          "XADD si:changes * uid %s k %u op restore",
                          "EXEC"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        redisReply *r = strncmp(cmds[i], "XADD", 4) == 0 ? redisCommand(c, cmds[i], uid, k)
                        : strchr(cmds[i], '%') != NULL   ? redisCommand(c, cmds[i], k, uid)
                                                         : redisCommand(c, cmds[i]);
        assert_non_null(r);
        assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
    redisFree(c);

    /* A new session (a new login) that writes a cursor in the new epoch. */
    assert_int_equal(fakeimap_wait_stat(&srv, "logins", logins + 1, 10000), 0);
    char epoch[16], cur[16];
    long long deadline = harness_now_ms() + 10000;
    do {
        fx_user_field(&redis, uid, "cursor_epoch", epoch, sizeof epoch);
        get(cur, sizeof cur, "HGET si:{%u}:cur:%s epoch", k, uid);
        if (strcmp(epoch, cur) == 0)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_string_equal(cur, epoch);
    append("user9", 2);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 2, 10000), 0);
}

static void test_throttling_and_refused_login_show_and_heal(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000f007";
    providers();
    user(uid, "fk", 7);
    assert_int_equal(fakeimap_faults(&srv, 1.0, 3, "limit"), 0);
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "throttled", 10000), 0);
    assert_true(
        harness_metric(w.port, "superimap_watcher_session_errors_total{kind=\"throttled\"}") >= 1);
    assert_int_equal(fakeimap_faults(&srv, 0, 1, "none"), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 10000), 0);

    /* Correct credentials refused: auth_failed, and the process lives on. */
    assert_int_equal(fakeimap_faults(&srv, 1.0, 3, "authfail"), 0);
    assert_true(fakeimap_kick(&srv, "user7") >= 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "auth_failed", 10000), 0);
    char err[256];
    fx_user_field(&redis, uid, "last_error", err, sizeof err);
    assert_non_null(strstr(err, "login refused"));
    assert_int_equal(harness_http_get(w.port, "/healthz", NULL, 0), 200);
    harness_proc_stop(&w);
}


static void test_xoauth2_logs_in_with_the_stored_access_token(void **state)
{
    (void)state;
    const char *good = "00000000000000000000f008", *bad = "00000000000000000000f009";
    providers();
    char out[64];
    get(out, sizeof out, "HSET si:provider:fk auth oauth2");
    /* The secret is the refresh token; the login uses the access token. */
    long long later = (long long)time(NULL) * 1000 + 3600000;
    assert_int_equal(fx_user(&redis, good, PID, "fk", "t8", "user8", "refresh-user8"), 0);
    assert_int_equal(fx_user_access_token(&redis, good, "token-user8", later), 0);
    assert_int_equal(fx_user(&redis, bad, PID, "fk", "t9", "user9", "refresh-user9"), 0);
    assert_int_equal(fx_user_access_token(&redis, bad, "token-user1", later), 0);
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, good, "state", "watching", 10000), 0);
    /* A refused token (error challenge, empty answer, NO [AUTHENTICATIONFAILED]) is
     * refreshed once; this provider has no token endpoint, so the user ends in error. */
    char err[256];
    long long deadline = harness_now_ms() + 10000;
    do {
        fx_user_field(&redis, bad, "last_error", err, sizeof err);
        if (strstr(err, "oauth2_client_id") == NULL)
            harness_poll_pause();
    } while (strstr(err, "oauth2_client_id") == NULL && harness_now_ms() < deadline);
    assert_non_null(strstr(err, "oauth2_client_id"));
    fx_user_field(&redis, bad, "state", out, sizeof out);
    assert_string_equal(out, "error");
    assert_true(harness_log_contains(&w, "refreshing it once"));
    append("user8", 1);
    assert_int_equal(fx_wait_ready(&redis, good, PID, 1, 10000), 0);
    harness_proc_stop(&w);
}

static void test_logins_are_rate_limited_per_provider(void **state)
{
    (void)state;
    enum { N = 12, RATE = 4 };
    providers();
    for (int i = 0; i < N; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "0000000000000000000a%04d", i);
        user(uid, "fk", 20 + i);
    }
    const char *const more[] = {"SUPERIMAP_IMAP_LOGINS_PER_SEC=4", NULL};
    assert_int_equal(start_watcher(more), 0);
    assert_int_equal(fakeimap_wait_stat(&srv, "logins", 1, 10000), 0);
    long long first = harness_now_ms();
    assert_int_equal(fakeimap_wait_stat(&srv, "logins", N, 15000), 0);
    long long spread = harness_now_ms() - first;
    /* One login of burst, then one every 1/RATE s: (N - 1) / RATE s at least. */
    assert_true(spread >= (N - 1) * 1000 / RATE - 300);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_sessions_watching", N, 10000), 0);
    harness_proc_stop(&w);
}

static void test_no_credentials_without_the_tls_the_provider_requires(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000f010";
    struct fakeimap bare; /* no certificate: no STARTTLS offered */
    assert_int_equal(fakeimap_prepare(&bare, 0), 0);
    assert_int_equal(fakeimap_start(&bare, NULL), 0);
    const char *host;
    int port = fakeimap_port(&bare, 0, 0, &host);
    assert_int_equal(fx_provider(&redis, "bare", host, port, "starttls"), 0);
    user(uid, "bare", 10);
    assert_int_equal(start_watcher(NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "error", 10000), 0);
    char err[256];
    fx_user_field(&redis, uid, "last_error", err, sizeof err);
    assert_non_null(strstr(err, "no STARTTLS"));
    assert_int_equal(fakeimap_stat(&bare, "logins"), 0);
    assert_int_equal(fakeimap_stat(&bare, "login_failures"), 0);
    harness_proc_stop(&w);
    assert_int_equal(fakeimap_stop(&bare, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stale_lease_cannot_record_and_watcher_comes_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_alive_key_fences_within_a_renewal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uidvalidity_change_gives_new_baseline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_users_over_capacity_are_unassigned_then_promoted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_schema_1_is_migrated_and_its_users_ranked_by_connected_at, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_archive_and_restore_read_in_one_poll_restart_the_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttling_and_refused_login_show_and_heal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_xoauth2_logs_in_with_the_stored_access_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_logins_are_rate_limited_per_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_credentials_without_the_tls_the_provider_requires,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
