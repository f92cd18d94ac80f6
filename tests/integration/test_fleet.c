/*
 * Fleet of superimap-watchers on superimap-fake-imapd (docs/architecture.md
 * section 3: membership, placement, leases), in one sequence over 600 users:
 *
 *   3 watchers: every user watched by exactly one (its lease names a live
 *   watcher, fake-imapd sees one session), each within +-15% of a third;
 *   a 4th joins: about a quarter move to it, no user ever has two sessions
 *   (fake-imapd's max_sessions_per_user stays 1), mail appended during the
 *   move gives one event each;
 *   kill -9 of one: the survivors take its users as soon as its Redis
 *   connection is seen closed (core/reaper; the takeover time is printed),
 *   mail appended in the gap is delivered once each;
 *   SIGTERM of another: its users are taken over within 10 s, exactly once.
 *
 * Then, on a fresh key space, capacities 100 and 300 split 400 users 100/300
 * and 500 more users are reported as overflow (metric, log, user state);
 * overflow is sticky (issue #15 point 13): the 500 admitted last are the
 * ones left out, not one of the 400 watched before loses its watcher, and
 * when the 100 watcher leaves, the 300 admitted first are the ones watched.
 * And SIGSTOP of one of 2 watchers past its alive keys: the other takes
 * over when they expire (its connection stays open: it is not reaped);
 * SIGCONT: it fences itself and rejoins; every message once.
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

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID   "7"
#define USERS 600
#define NW    4

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc w[NW];
static const char *const names[NW] = {"fw1", "fw2", "fw3", "fw4"};
static int alive[NW];
static int mails[USERS]; /* messages appended per user */

static const char *const env_base[] = {"SUPERIMAP_IMAP_LOGINS_PER_SEC=5000",
                                       "SUPERIMAP_MAX_MOVES_PER_SEC=500",
                                       "SUPERIMAP_LOG_LEVEL=info", NULL};

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=1000", "SUPERIMAP_LOG_LEVEL=warn", NULL};
    return fx_suite_start(&redis, &srv, 0, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    return fx_suite_stop(&redis, &srv);
}

static void uid_of(int i, char out[32])
{
    snprintf(out, 32, "0000000000000000000f%04d", i);
}

/* Creates users [from, to) over one pipelined connection, admitted in index
 * order (their si:{k}:users score, as prelude/admit.lua writes it). */
static void create_users(int from, int to)
{
    redisContext *c = harness_redis_connect(&redis);
    assert_non_null(c);
    for (int i = from; i < to; i++) {
        char uid[32], login[16], pass[16], aad[96], key[128], k[16];
        uid_of(i, uid);
        snprintf(login, sizeof login, "user%d", i + 1);
        snprintf(pass, sizeof pass, "pass%d", i + 1);
        snprintf(aad, sizeof aad, "si:user:%s:secret", uid);
        char *sealed = NULL;
        assert_int_equal(crypto_encrypt(fx_keys, pass, strlen(pass), aad, &sealed), 0);
        snprintf(k, sizeof k, "%u", fx_shard(uid));
        snprintf(key, sizeof key, "si:{%s}:user:%s", k, uid);
        const char *argv[] = {"HSET", key,   "uid",      uid,   "pid",    PID,    "code",     "fl",
                              "tag",  login, "username", login, "secret", sealed, "archived", "0"};
        redisAppendCommandArgv(c, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
        redisAppendCommand(c, "ZADD si:{%s}:users %d %s", k, i + 1, uid);
        redisAppendCommand(c, "XADD si:changes * uid %s k %s op create", uid, k);
        xfree(sealed);
    }
    for (int i = 0; i < 3 * (to - from); i++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    redisFree(c);
}

static void start_watcher(int i, const char *max_users)
{
    static char cap[NW][64];
    snprintf(cap[i], sizeof cap[i], "SUPERIMAP_MAX_USERS=%s", max_users);
    const char *env[] = {env_base[0], env_base[1], env_base[2], cap[i], NULL};
    assert_int_equal(harness_node_start(&w[i], &redis, "superimap-watcher", names[i], env), 0);
    alive[i] = 1;
}

/* Counts, per watcher, the users whose lease it holds; users without a lease
 * or with a lease of no running watcher count in *orphans. */
static void lease_counts(int n, int counts[NW], int *orphans)
{
    redisContext *c = harness_redis_connect(&redis);
    assert_non_null(c);
    for (int i = 0; i < NW; i++)
        counts[i] = 0;
    *orphans = 0;
    for (int u = 0; u < n; u++) {
        char uid[32];
        uid_of(u, uid);
        redisAppendCommand(c, "GET si:{%u}:lease:%s", fx_shard(uid), uid);
    }
    for (int u = 0; u < n; u++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        int found = 0;
        if (r->type == REDIS_REPLY_STRING) {
            for (int i = 0; i < NW; i++) {
                size_t l = strlen(names[i]);
                if (alive[i] && strncmp(r->str, names[i], l) == 0 && r->str[l] == ':') {
                    counts[i]++;
                    found = 1;
                }
            }
        }
        *orphans += !found;
        freeReplyObject(r);
    }
    redisFree(c);
}

/* Sessions in IDLE over the running watchers. */
static double watching_total(void)
{
    double t = 0;
    for (int i = 0; i < NW; i++)
        if (alive[i])
            t += harness_metric(w[i].port, "superimap_watcher_sessions_watching");
    return t;
}

/* Waits until every running watcher sees all running ones and the users
 * placed on each are the sessions it holds in IDLE. Returns 0 or -1. */
static int wait_settled(int ms)
{
    long long deadline = harness_now_ms() + ms;
    int nalive = 0;
    for (int i = 0; i < NW; i++)
        nalive += alive[i];
    do {
        int ok = 1;
        for (int i = 0; i < NW && ok; i++) {
            if (!alive[i])
                continue;
            ok = harness_metric(w[i].port, "superimap_watcher_fleet_watchers") == nalive &&
                 harness_metric(w[i].port, "superimap_watcher_users_placed") ==
                     harness_metric(w[i].port, "superimap_watcher_sessions_watching");
        }
        if (ok)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "fleet not settled after %d ms\n", ms);
    return -1;
}

/* Waits until every one of the first n users is watched by a running watcher
 * (leases) and the running watchers report n sessions in IDLE. Returns the
 * ms it took, or -1. */
static long long wait_all_watched(int n, int ms)
{
    long long t0 = harness_now_ms(), deadline = t0 + ms;
    int counts[NW], orphans = n;
    double watching = 0;
    do {
        lease_counts(n, counts, &orphans);
        watching = watching_total();
        if (orphans == 0 && watching == n)
            return harness_now_ms() - t0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "not all watched after %d ms: orphans=%d watching=%g\n", ms, orphans, watching);
    return -1;
}

static void append_mail(int u)
{
    char login[16], m[160];
    snprintf(login, sizeof login, "user%d", u + 1);
    int len =
        snprintf(m, sizeof m, "From: f@example.com\r\nSubject: %d/%d\r\n\r\nx\r\n", u, mails[u]);
    assert_int_equal(fakeimap_append(&srv, login, m, (size_t)len, NULL), 0);
    mails[u]++;
}

/* Waits until every user's ready list holds exactly mails[u] events (none
 * lost, none duplicated: event ids are per message). */
static void wait_mail_exactly_once(int n, int ms)
{
    long long deadline = harness_now_ms() + ms;
    int bad = 0, first_bad = -1;
    long long got_bad = 0;
    for (;;) {
        redisContext *c = harness_redis_connect(&redis);
        assert_non_null(c);
        for (int u = 0; u < n; u++) {
            char uid[32];
            uid_of(u, uid);
            redisAppendCommand(c, "LRANGE si:{%u}:ready:%s 0 -1", fx_shard(uid), PID);
        }
        bad = 0;
        for (int u = 0; u < n; u++) {
            redisReply *r = NULL;
            assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
            char uid[32];
            uid_of(u, uid);
            long long cnt = 0;
            for (size_t e = 0; e < r->elements; e++)
                cnt += strncmp(r->element[e]->str, uid, strlen(uid)) == 0;
            if (cnt > mails[u])
                fail_msg("user %s: %lld events for %d messages (duplicate)", uid, cnt, mails[u]);
            if (cnt != mails[u]) {
                if (bad++ == 0) {
                    first_bad = u;
                    got_bad = cnt;
                }
            }
            freeReplyObject(r);
        }
        redisFree(c);
        if (bad == 0)
            return;
        if (harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    fail_msg("%d users short of events; first user %d: %lld of %d", bad, first_bad, got_bad,
             mails[first_bad]);
}

static void assert_one_session_per_user(void)
{
    long long max = fakeimap_stat(&srv, "max_sessions_per_user");
    if (max != 1)
        fail_msg("fake-imapd saw %lld concurrent sessions of one user", max);
}

static void test_fleet_places_moves_and_takes_over_users(void **state)
{
    (void)state;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_int_equal(fx_provider(&redis, "fl", host, port, "none"), 0);
    create_users(0, USERS);

    /* Three watchers: each user exactly once, spread within +-15%. */
    for (int i = 0; i < 3; i++)
        start_watcher(i, "10000");
    assert_int_equal(wait_settled(30000), 0);
    long long ms = wait_all_watched(USERS, 30000);
    assert_true(ms >= 0);
    int counts[NW], orphans;
    lease_counts(USERS, counts, &orphans);
    assert_int_equal(orphans, 0);
    fprintf(stderr, "fleet: 3 watchers hold %d/%d/%d of %d users\n", counts[0], counts[1],
            counts[2], USERS);
    for (int i = 0; i < 3; i++)
        assert_in_range(counts[i], USERS / 3 * 85 / 100, USERS / 3 * 115 / 100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(harness_metric(w[i].port, "superimap_watcher_sessions_watching"),
                         counts[i]);
    assert_one_session_per_user();

    /* A fourth joins while mail arrives for every user. */
    int before[NW];
    memcpy(before, counts, sizeof before);
    start_watcher(3, "10000");
    for (int u = 0; u < USERS; u++)
        append_mail(u);
    assert_int_equal(fx_wait_metric(w[3].port, "superimap_watcher_sessions_watching",
                                    USERS / 4 * 60 / 100, 20000),
                     0);
    assert_int_equal(wait_settled(20000), 0);
    ms = wait_all_watched(USERS, 20000);
    assert_true(ms >= 0);
    for (int u = 0; u < USERS; u += 2)
        append_mail(u);
    wait_mail_exactly_once(USERS, 15000);
    lease_counts(USERS, counts, &orphans);
    fprintf(stderr, "fleet: after a join %d/%d/%d/%d (%.1f%% moved)\n", counts[0], counts[1],
            counts[2], counts[3], 100.0 * counts[3] / USERS);
    assert_in_range(counts[3], USERS / 4 * 60 / 100, USERS / 4 * 140 / 100);
    for (int i = 0; i < 3; i++)
        assert_true(counts[i] <= before[i]); /* users only moved to the new one */
    assert_one_session_per_user();

    /* kill -9 of one: the survivors take its users. */
    harness_proc_signal(&w[0], SIGKILL);
    harness_proc_wait(&w[0], 5000);
    alive[0] = 0;
    long long t0 = harness_now_ms();
    for (int u = 0; u < USERS; u++)
        append_mail(u);
    ms = wait_all_watched(USERS, 45000);
    assert_true(ms >= 0);
    fprintf(stderr, "fleet: takeover after kill -9 of a watcher with %d users: %.1f s\n", counts[0],
            (double)(harness_now_ms() - t0) / 1000.0);
    /* Taken because its connection closed, not because its keys expired:
     * one of the three survivors (the 4th joined above) said so. */
    int reaped = 0;
    for (int i = 1; i < NW; i++)
        reaped += harness_log_contains(&w[i], "its leases are free\" peer=fw1 ");
    assert_true(reaped >= 1);
    wait_mail_exactly_once(USERS, 15000);
    assert_one_session_per_user();

    /* SIGTERM drain of another: taken over within 10 s, exactly once. */
    lease_counts(USERS, counts, &orphans);
    int drained = counts[1];
    harness_proc_signal(&w[1], SIGTERM);
    t0 = harness_now_ms();
    assert_int_equal(harness_proc_wait(&w[1], 10000), 0);
    assert_int_equal(w[1].exit_code, 0);
    alive[1] = 0;
    for (int u = 0; u < USERS; u += 3)
        append_mail(u);
    ms = wait_all_watched(USERS, 10000);
    assert_true(ms >= 0);
    long long took = harness_now_ms() - t0;
    fprintf(stderr, "fleet: drain of a watcher with %d users taken over in %.1f s\n", drained,
            (double)took / 1000.0);
    assert_true(took <= 10000);
    wait_mail_exactly_once(USERS, 15000);
    assert_one_session_per_user();

    harness_proc_stop(&w[2]);
    harness_proc_stop(&w[3]);
    alive[2] = alive[3] = 0;
}

static void test_capacities_100_and_300_split_400_users_and_report_overflow(void **state)
{
    (void)state;
    redisReply *r = fx_cmd(&redis, "FLUSHALL");
    freeReplyObject(r);
    memset(mails, 0, sizeof mails);
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_int_equal(fx_provider(&redis, "fl", host, port, "none"), 0);
    create_users(0, 400);
    start_watcher(0, "100");
    start_watcher(1, "300");
    assert_int_equal(wait_settled(30000), 0);
    assert_true(wait_all_watched(400, 30000) >= 0);
    int counts[NW], orphans;
    lease_counts(400, counts, &orphans);
    assert_int_equal(counts[0], 100);
    assert_int_equal(counts[1], 300);
    assert_int_equal(harness_metric(w[0].port, "superimap_watcher_users_unassigned"), 0);
    static char lease_before[400][96];
    for (int u = 0; u < 400; u++) {
        char uid[32];
        uid_of(u, uid);
        harness_redis_get(&redis, lease_before[u], sizeof lease_before[u], "GET si:{%u}:lease:%s",
                          fx_shard(uid), uid);
    }

    /* 500 more than the fleet can take: reported, not silently unserved. */
    create_users(400, 900);
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            fx_wait_metric(w[i].port, "superimap_watcher_users_unassigned", 500, 15000), 0);
    assert_int_equal(harness_wait_log(&w[0], "users over capacity stay unwatched", 15000), 0);
    assert_int_equal(wait_settled(15000), 0);
    lease_counts(900, counts, &orphans);
    assert_int_equal(counts[0], 100);
    assert_int_equal(counts[1], 300);
    assert_int_equal(orphans, 500);
    /* Sticky: the users left out are the 500 admitted last; each of the 400
     * kept the watcher it had (ranked by hash instead, about 44 % of them
     * would have been pushed out by the newcomers). */
    for (int u = 0; u < 900; u++) {
        char uid[32], holder[96], st[32];
        uid_of(u, uid);
        fx_user_field(&redis, uid, "state", st, sizeof st);
        harness_redis_get(&redis, holder, sizeof holder, "GET si:{%u}:lease:%s", fx_shard(uid),
                          uid);
        if (u < 400 && (strcmp(st, "unassigned") == 0 || strcmp(holder, lease_before[u]) != 0))
            fail_msg("user %d, admitted before the fleet was full, lost its watcher: state %s, "
                     "lease %s (was %s)",
                     u, st, holder, lease_before[u]);
        if (u >= 400 && strcmp(st, "unassigned") != 0)
            fail_msg("user %d, admitted into a full fleet, is %s, not unassigned", u, st);
    }

    /* The 100 watcher leaves: room for 300, which go to the 300 admitted
     * first; the 100 after them join the overflow. */
    harness_proc_stop(&w[0]);
    alive[0] = 0;
    assert_int_equal(fx_wait_metric(w[1].port, "superimap_watcher_users_unassigned", 600, 30000),
                     0);
    assert_int_equal(wait_settled(30000), 0);
    assert_true(wait_all_watched(300, 30000) >= 0);
    lease_counts(900, counts, &orphans);
    assert_int_equal(counts[1], 300);
    assert_int_equal(orphans, 600);
    harness_proc_stop(&w[1]);
    alive[1] = 0;
}

/* SIGSTOP past the alive keys' life: the other watcher takes over; SIGCONT:
 * the woken one fences itself (its stale token can record nothing: every
 * message still gives exactly one event) and rejoins. */
static void test_paused_watcher_fences_itself_and_rejoins(void **state)
{
    (void)state;
    redisReply *r = fx_cmd(&redis, "FLUSHALL");
    freeReplyObject(r);
    memset(mails, 0, sizeof mails);
    const int n = 100;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_int_equal(fx_provider(&redis, "fl", host, port, "none"), 0);
    create_users(0, n);
    start_watcher(0, "10000");
    start_watcher(1, "10000");
    assert_int_equal(wait_settled(30000), 0);
    assert_true(wait_all_watched(n, 30000) >= 0);
    int counts[NW], orphans;
    lease_counts(n, counts, &orphans);
    int paused = counts[0];
    assert_true(paused > 0);

    /* Frozen past its alive keys: the other watcher takes every user. */
    harness_proc_signal(&w[0], SIGSTOP);
    alive[0] = 0;
    long long t0 = harness_now_ms();
    assert_true(wait_all_watched(n, 45000) >= 0);
    fprintf(stderr, "fleet: users of a paused watcher (%d) taken over in %.1f s\n", paused,
            (double)(harness_now_ms() - t0) / 1000.0);
    /* Its connection stayed open: its keys expired, nobody reaped it. */
    assert_false(harness_log_contains(&w[1], "its leases are free\" peer=fw1 "));
    for (int u = 0; u < n; u++)
        append_mail(u);
    wait_mail_exactly_once(n, 15000);

    /* Woken: it fences itself (no event with its old token), then rejoins
     * and gets its share back by graceful moves. */
    harness_proc_signal(&w[0], SIGCONT);
    alive[0] = 1;
    assert_int_equal(harness_wait_log(&w[0], "fenced: every session dropped", 15000), 0);
    assert_int_equal(wait_settled(30000), 0);
    assert_true(wait_all_watched(n, 30000) >= 0);
    lease_counts(n, counts, &orphans);
    assert_true(counts[0] > 0);
    assert_int_equal(counts[0] + counts[1], n);
    for (int u = 0; u < n; u++)
        append_mail(u);
    wait_mail_exactly_once(n, 15000);
    harness_proc_stop(&w[0]);
    harness_proc_stop(&w[1]);
    alive[0] = alive[1] = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_places_moves_and_takes_over_users),
        cmocka_unit_test(test_capacities_100_and_300_split_400_users_and_report_overflow),
        cmocka_unit_test(test_paused_watcher_fences_itself_and_rejoins),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
