/*
 * superimap-watcher's OAuth2 token lifecycle against real servers: a private
 * Dovecot whose oauth2 passdb validates every XOAUTH2 / OAUTHBEARER login by
 * introspection at superimap-fake-oauth2d, that provider (grants, refreshes,
 * rotation, revocation, injected errors, counters) and a private
 * redis-server. Proves: a user with only a refresh token logs in and its mail
 * is announced; short-lived access tokens are refreshed in the background
 * without a reconnect or a lost event, and a rotated refresh token is
 * stored; a revoked grant gives state reauth_required, the user out of the
 * watch set and a user_reauth_required event; a 429 with Retry-After is
 * waited out; a refresh storm stays under SUPERIMAP_OAUTH2_MAX_REFRESHES per
 * provider; OAUTHBEARER works and a refused access token is refreshed once;
 * the token endpoint is behind the SSRF guard (loopback refused without
 * SUPERIMAP_OAUTH2_ALLOW_PRIVATE).
 * No token ever appears in the watcher's log.
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

#include "tests/integration/dovecot.h"
#include "tests/integration/fakeoauth.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID    "9"
#define CODE   "go"
#define CLIENT "cid-watcher"
#define SECRET "client-secret-4f1d"
#define USERS  8

static struct redis_srv redis;
static struct dovecot dv;
static struct fakeoauth idp;
static int have_dovecot;
static char skip_why[128];

static int suite_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (fx_init() < 0 || harness_redis_start(&redis) < 0)
        return -1;
    const char *args[] = {"--client", CLIENT ":" SECRET, NULL};
    if (fakeoauth_start(&idp, args) < 0)
        return -1;
    have_dovecot = dovecot_available(skip_why, sizeof skip_why);
    if (!have_dovecot)
        return 0;
    char url[300];
    fakeoauth_url(&idp, "/introspect", url, sizeof url);
    return dovecot_start_oauth2(&dv, USERS, url);
}

static int suite_teardown(void **state)
{
    (void)state;
    harness_stop_all();
    if (have_dovecot)
        dovecot_stop(&dv);
    fakeoauth_stop(&idp);
    harness_redis_stop(&redis);
    fx_shutdown();
    return 0;
}

static int setup(void **state)
{
    (void)state;
    char out[64];
    if (fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"none\",\"count\":0}") < 0 ||
        fakeoauth_config(&idp, "{\"access_ttl\":3600,\"rotate_refresh\":false}") < 0)
        return -1;
    return harness_redis_get(&redis, out, sizeof out, "FLUSHALL");
}

/* Each test's watcher; stopped by teardown (the provider, Dovecot and Redis
 * live for the whole suite). */
static struct proc w;

static int teardown(void **state)
{
    (void)state;
    if (w.pid > 0)
        harness_proc_stop(&w);
    memset(&w, 0, sizeof w);
    return 0;
}

#define NEED_DOVECOT() DOVECOT_NEED(have_dovecot, skip_why)

/* Provider CODE on Dovecot's plaintext port with the provider's token URL;
 * token_auth post|basic, sasl xoauth2|oauthbearer; and PID's connection to it. */
static void provider(const char *token_auth, const char *sasl)
{
    char url[300];
    fakeoauth_url(&idp, "/token", url, sizeof url);
    assert_int_equal(fx_provider(&redis, CODE, "127.0.0.1", dv.port_plain, "none"), 0);
    redisReply *rep = fx_cmd(&redis,
                             "HSET si:provider:%s auth oauth2 oauth2_token_url %s "
                             "oauth2_token_auth %s sasl %s",
                             CODE, url, token_auth, sasl);
    assert_non_null(rep);
    freeReplyObject(rep);
    assert_int_equal(fx_oauth2_conn(&redis, PID, CODE, CLIENT, SECRET), 0);
}

/* A user of mailbox userN@example.com with a fresh grant's refresh token
 * only (as imported from the original); the token in refresh. */
static void user(const char *uid, int n, char *refresh, size_t rlen)
{
    char email[64], tag[16];
    snprintf(email, sizeof email, "user%d@example.com", n);
    snprintf(tag, sizeof tag, "t%d", n);
    assert_int_equal(fakeoauth_grant(&idp, CLIENT, SECRET, email, refresh, rlen, NULL, 0), 0);
    assert_int_equal(fx_user(&redis, uid, PID, CODE, tag, email, refresh), 0);
}

/* The watcher, allowed to reach the provider on loopback unless more says
 * SUPERIMAP_OAUTH2_ALLOW_PRIVATE itself. */
static int start_watcher(struct proc *p, const char *const *more)
{
    const char *env[16] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=100",
                           "SUPERIMAP_IMAP_BACKOFF_MAX_MS=1000",
                           "SUPERIMAP_LOG_COMPONENTS=imap,oauth"};
    int n = 3, guard_set = 0;
    for (const char *const *m = more; m != NULL && *m != NULL; m++)
        guard_set |= strncmp(*m, "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=", 31) == 0;
    if (!guard_set)
        env[n++] = "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1";
    for (const char *const *m = more; m != NULL && *m != NULL && n < 15; m++)
        env[n++] = *m;
    env[n] = NULL;
    return harness_node_start(p, &redis, "superimap-watcher", "w-oauth", env);
}

static void deliver(int n, int k)
{
    char user[64], msg[512];
    snprintf(user, sizeof user, "user%d@example.com", n);
    int len = snprintf(msg, sizeof msg,
                       "From: a@example.com\r\nTo: %s\r\nSubject: oauth %d\r\n"
                       "Message-ID: <oauth%d.%d@example.com>\r\n\r\nbody %d\r\n",
                       user, k, n, k, k);
    assert_int_equal(dovecot_deliver(&dv, user, msg, (size_t)len), 0);
}

/* Fails when the watcher's log holds token (a secret that must never be
 * logged). */
static void assert_not_logged(const struct proc *p, const char *token)
{
    assert_true(strlen(token) > 8);
    assert_false(harness_log_contains(p, token));
}

static void test_refresh_storm_is_capped_per_provider(void **state)
{
    (void)state;
    NEED_DOVECOT();
    provider("post", "xoauth2");
    char refresh[128];
    for (int i = 1; i <= USERS; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "0000000000000000000b%04d", i);
        user(uid, i, refresh, sizeof refresh);
    }
    long long ok0 = fakeoauth_stat(&idp, "token.refresh_token.ok");
    assert_int_equal(fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"slow\","
                                            "\"count\":8,\"delay_ms\":300}"),
                     0);
    const char *more[] = {"SUPERIMAP_OAUTH2_MAX_REFRESHES=2", NULL};
    assert_int_equal(start_watcher(&w, more), 0);
    assert_int_equal(fakeoauth_wait_stat(&idp, "token.refresh_token.ok", ok0 + USERS, 20000), 0);
    assert_int_equal(fx_wait_metric(w.port, "superimap_watcher_sessions_watching", USERS, 20000),
                     0);
    long long most = fakeoauth_stat(&idp, "token_max_concurrent");
    assert_true(most >= 1);
    assert_true(most <= 2);
    assert_int_equal(harness_metric(w.port,
                                    "superimap_watcher_oauth2_refreshes_total{provider=\"" CODE
                                    "\",result=\"ok\"}"),
                     USERS);
    harness_proc_stop(&w);
}

static void test_user_with_only_a_refresh_token_logs_in_and_mail_is_announced(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c001";
    provider("basic", "xoauth2");
    char refresh[128], access[256];
    user(uid, 1, refresh, sizeof refresh);
    long long ok0 = fakeoauth_stat(&idp, "token.refresh_token.ok");
    assert_int_equal(start_watcher(&w, NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    assert_int_equal(fakeoauth_stat(&idp, "token.refresh_token.ok"), ok0 + 1);
    fx_user_opened(&redis, uid, "oauth2_access_token", access, sizeof access);
    assert_true(strncmp(access, "at_", 3) == 0);
    char exp[32];
    fx_user_field(&redis, uid, "oauth2_expires_at", exp, sizeof exp);
    assert_true(atoll(exp) > (long long)time(NULL) * 1000 + 3000 * 1000);
    deliver(1, 1);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 15000), 0);
    assert_not_logged(&w, refresh);
    assert_not_logged(&w, access);
    assert_not_logged(&w, SECRET);
    harness_proc_stop(&w);
}

static void
test_short_lived_tokens_are_refreshed_without_reconnecting_and_rotation_is_kept(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c002";
    assert_int_equal(fakeoauth_config(&idp, "{\"access_ttl\":3,\"rotate_refresh\":true}"), 0);
    provider("post", "xoauth2");
    char first[128];
    user(uid, 2, first, sizeof first);
    long long ok0 = fakeoauth_stat(&idp, "token.refresh_token.ok");
    assert_int_equal(start_watcher(&w, NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    deliver(2, 1);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 15000), 0);
    /* The login's refresh and two more in the background, at 80-90% of 3 s. */
    assert_int_equal(fakeoauth_wait_stat(&idp, "token.refresh_token.ok", ok0 + 3, 20000), 0);
    deliver(2, 2);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 2, 15000), 0);
    /* One login for all of it: the session was never dropped. */
    assert_int_equal(harness_metric(w.port, "superimap_watcher_logins_total"), 1);
    /* The refresh token in Redis is the latest the provider rotated to. */
    char stored[128], out[512];
    fx_user_opened(&redis, uid, "secret", stored, sizeof stored);
    assert_true(strncmp(stored, "rt_", 3) == 0);
    assert_string_not_equal(stored, first);
    char body[200];
    snprintf(body, sizeof body, "token=%s", stored);
    assert_int_equal(fakeoauth_post(&idp, "/introspect", "application/x-www-form-urlencoded", body,
                                    out, sizeof out, NULL, 0),
                     200);
    assert_non_null(strstr(out, "\"active\":true"));
    assert_not_logged(&w, first);
    assert_not_logged(&w, stored);
    harness_proc_stop(&w);
}

static void test_revoked_grant_gives_reauth_required_and_an_event(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c003";
    assert_int_equal(fakeoauth_config(&idp, "{\"access_ttl\":3}"), 0);
    provider("post", "xoauth2");
    char refresh[128], body[200];
    user(uid, 3, refresh, sizeof refresh);
    assert_int_equal(start_watcher(&w, NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    snprintf(body, sizeof body, "token=%s", refresh);
    assert_int_equal(fakeoauth_post(&idp, "/revoke", "application/x-www-form-urlencoded", body,
                                    NULL, 0, NULL, 0),
                     200);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "reauth_required", 15000), 0);
    char out[512];
    assert_int_equal(
        harness_redis_get(&redis, out, sizeof out, "ZSCORE si:{%u}:users %s", fx_shard(uid), uid),
        0);
    assert_string_equal(out, ""); /* not listed */
    fx_user_field(&redis, uid, "last_error", out, sizeof out);
    assert_non_null(strstr(out, "invalid_grant"));
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 5000), 0);
    char ids[128];
    assert_int_equal(fx_ready_ids(&redis, uid, PID, ids, sizeof ids), 1);
    assert_non_null(strstr(ids, ".reauth."));
    char sha1[41];
    yajl_val ev = fx_event(&redis, uid, ids, sha1);
    assert_non_null(ev);
    assert_string_equal(fx_json_str(ev, "event", NULL), "user_reauth_required");
    assert_string_equal(fx_json_str(ev, "user_tag", NULL), "t3");
    assert_string_equal(fx_json_str(ev, "imap_provider_code", NULL), CODE);
    assert_string_equal(fx_json_str(ev, "id", NULL), ids);
    assert_non_null(strstr(fx_json_str(ev, "reason", NULL), "invalid_grant"));
    char want[41];
    assert_int_equal(crypto_sha1_hex("t3", 2, want), 0);
    assert_string_equal(fx_json_str(ev, "sha1", NULL), want);
    assert_string_equal(sha1, want);
    json_free(ev);
    assert_int_equal(
        harness_redis_get(&redis, out, sizeof out, "HGET si:{%u}:evt:%s type", fx_shard(uid), ids),
        0);
    assert_string_equal(out, "user_reauth_required");
    assert_int_equal(
        fx_wait_metric(w.port, "superimap_watcher_oauth2_reauth_required_total", 1, 5000), 0);
    /* Connecting again (what a connect callback writes: a new refresh token,
     * connected_at, the users zset, a change entry; state left as it was) makes
     * the user watched again. */
    char fresh[128], aad[128];
    assert_int_equal(
        fakeoauth_grant(&idp, CLIENT, SECRET, "user3@example.com", fresh, sizeof fresh, NULL, 0),
        0);
    snprintf(aad, sizeof aad, "si:user:%s:secret", uid);
    char *sealed = NULL;
    assert_int_equal(crypto_encrypt(fx_keys, fresh, strlen(fresh), aad, &sealed), 0);
    unsigned k = fx_shard(uid);
    freeReplyObject(fx_cmd(&redis, "HSET si:{%u}:user:%s secret %s connected_at %lld", k, uid,
                           sealed, (long long)time(NULL) * 1000));
    xfree(sealed);
    freeReplyObject(fx_cmd(&redis, "ZADD si:{%u}:users 0 %s", k, uid));
    freeReplyObject(
        fx_cmd(&redis, "XADD si:changes MAXLEN ~ 100000 * uid %s k %u op update", uid, k));
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    harness_proc_stop(&w);
}

static void test_429_with_retry_after_is_waited_out(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c004";
    provider("post", "xoauth2");
    char refresh[128];
    user(uid, 4, refresh, sizeof refresh);
    long long ok0 = fakeoauth_stat(&idp, "token.refresh_token.ok");
    long long r0 = fakeoauth_stat(&idp, "token.refresh_token.429");
    assert_int_equal(fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"429\","
                                            "\"count\":1,\"retry_after\":2}"),
                     0);
    assert_int_equal(start_watcher(&w, NULL), 0);
    assert_int_equal(fakeoauth_wait_stat(&idp, "token.refresh_token.429", r0 + 1, 15000), 0);
    long long t429 = harness_now_ms();
    assert_int_equal(fakeoauth_wait_stat(&idp, "token.refresh_token.ok", ok0 + 1, 15000), 0);
    long long waited = harness_now_ms() - t429;
    assert_true(waited >= 1800);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    harness_proc_stop(&w);
}

static void test_oauthbearer_and_a_refused_access_token_is_refreshed_once(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c005";
    provider("post", "oauthbearer");
    char refresh[128];
    user(uid, 5, refresh, sizeof refresh);
    /* A token the provider never issued, far from expiry: used first. */
    assert_int_equal(fx_user_access_token(&redis, uid, "at_not_issued_by_anyone",
                                          (long long)time(NULL) * 1000 + 3600000),
                     0);
    long long ok0 = fakeoauth_stat(&idp, "token.refresh_token.ok");
    assert_int_equal(start_watcher(&w, NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    assert_int_equal(fakeoauth_stat(&idp, "token.refresh_token.ok"), ok0 + 1);
    assert_true(harness_log_contains(&w, "refreshing it once"));
    struct proc dlog = {0};
    snprintf(dlog.log, sizeof dlog.log, "%.250s/dovecot.log", dv.dir);
    assert_int_equal(harness_wait_log(&dlog, "user=<user5@example.com>, method=OAUTHBEARER", 5000),
                     0);
    deliver(5, 1);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 1, 15000), 0);
    harness_proc_stop(&w);
}

static void test_token_endpoint_on_loopback_is_refused_without_allow_private(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c006";
    provider("post", "xoauth2");
    char refresh[128];
    user(uid, 6, refresh, sizeof refresh);
    long long calls0 = fakeoauth_stat(&idp, "token_calls");
    const char *more[] = {"SUPERIMAP_OAUTH2_ALLOW_PRIVATE=0", NULL};
    assert_int_equal(start_watcher(&w, more), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "error", 15000), 0);
    char err[512];
    fx_user_field(&redis, uid, "last_error", err, sizeof err);
    assert_non_null(strstr(err, "SSRF guard"));
    assert_non_null(strstr(err, "127.0.0.1 is loopback"));
    assert_non_null(strstr(err, "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1"));
    assert_int_equal(fakeoauth_stat(&idp, "token_calls"), calls0); /* never connected */
    assert_int_equal(fx_wait_metric(w.port,
                                    "superimap_watcher_oauth2_refreshes_total{provider=\"" CODE
                                    "\",result=\"config\"}",
                                    1, 5000),
                     0);
}

/* SIGTERM while a refresh is at a slow provider that rotates refresh
 * tokens: the drain waits for the answer and stores the new refresh token
 * before the watcher exits (the provider has revoked the old one by then:
 * an aborted refresh left the user with a dead grant). */
static void test_drain_waits_for_a_refresh_in_flight_and_keeps_the_rotated_token(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000c009";
    assert_int_equal(fakeoauth_config(&idp, "{\"access_ttl\":3600,\"rotate_refresh\":true}"), 0);
    provider("post", "xoauth2");
    char first[128];
    user(uid, 3, first, sizeof first);
    assert_int_equal(fakeoauth_inject(&idp, "{\"endpoint\":\"token\",\"error\":\"slow\","
                                            "\"count\":1,\"delay_ms\":2000}"),
                     0);
    assert_int_equal(start_watcher(&w, NULL), 0);
    /* The first login's refresh is at the provider, which sits on it. */
    assert_int_equal(fakeoauth_wait_stat(&idp, "token_concurrent", 1, 15000), 0);
    harness_proc_signal(&w, SIGTERM);
    assert_int_equal(harness_proc_wait(&w, 30000), 0);
    assert_int_equal(w.exit_code, 0);
    assert_true(harness_log_contains(&w, "waiting for token refreshes in flight"));

    char stored[128], out[512], body[200];
    fx_user_opened(&redis, uid, "secret", stored, sizeof stored);
    assert_string_not_equal(stored, first);
    snprintf(body, sizeof body, "token=%s", stored);
    assert_int_equal(fakeoauth_post(&idp, "/introspect", "application/x-www-form-urlencoded", body,
                                    out, sizeof out, NULL, 0),
                     200);
    assert_non_null(strstr(out, "\"active\":true"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refresh_storm_is_capped_per_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_user_with_only_a_refresh_token_logs_in_and_mail_is_announced, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_short_lived_tokens_are_refreshed_without_reconnecting_and_rotation_is_kept, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_revoked_grant_gives_reauth_required_and_an_event,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_with_retry_after_is_waited_out, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_oauthbearer_and_a_refused_access_token_is_refreshed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_token_endpoint_on_loopback_is_refused_without_allow_private, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_drain_waits_for_a_refresh_in_flight_and_keeps_the_rotated_token, setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
