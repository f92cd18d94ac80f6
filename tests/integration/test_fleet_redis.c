/*
 * Redis restart under load (docs/architecture.md sections 3 and 6, "No mail
 * lost"): 3 superimap-watchers hold 300 users on
 * superimap-fake-imapd against a redis-server with an append-only file
 * (appendfsync always), while mail is appended at a steady 40 messages a
 * second, round robin over the users. Redis is killed (SIGKILL) twice:
 *
 *   restarted at once: sessions ride it out or come back;
 *   down for longer than the fence limit (INCARNATION_FENCE_MS): every
 *   watcher fences itself and takes its users again under a new
 *   generation once Redis is back.
 *
 * After each: every user is watched again, by exactly one watcher (its
 * lease names a running watcher, the watchers' IDLE sessions add up to the
 * users), fake-imapd never saw two concurrent sessions of one user, and
 * every appended message gives exactly one new_mail event (its id, by
 * (user, UID), in the partner's ready list once, and no other). The time
 * from Redis answering again until every user is watched is printed.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <signal.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/incarnation.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/fleet_mail_fixture.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID    "5"
#define NUSERS 300
#define NW     3
#define RATE   40 /* appended messages per second */

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc w[NW];
static const char *const names[NW] = {"rw1", "rw2", "rw3"};

/* Every fsync'd write survives a SIGKILL: what Redis acknowledged is there
 * after the restart. */
static const char *const aof_args[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};

static struct fleet_mail fm = {.redis = &redis,
                               .srv = &srv,
                               .w = w,
                               .names = names,
                               .nw = NW,
                               .nusers = NUSERS,
                               .rate = RATE,
                               .pid = PID};

static int suite_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=300", "SUPERIMAP_LOG_LEVEL=warn", NULL};
    if (fx_init() < 0 || harness_redis_start_args(&redis, aof_args) < 0 ||
        fakeimap_prepare(&srv, 0) < 0)
        return -1;
    return fakeimap_start(&srv, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    return fx_suite_stop(&redis, &srv);
}

/* fake-imapd's most concurrent sessions of any one user, since it started. */
static void assert_one_session_per_user(void)
{
    assert_int_equal(fakeimap_stat(&srv, "max_sessions_per_user"), 1);
}

/* ---- The scenario ---- */

/* The AOF file Redis appends to now (appendonlydir/<name>.<seq>.incr.aof,
 * the newest one). 0 or -1. */
static int aof_incr_path(char *out, size_t outlen)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/appendonlydir", redis.dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    time_t newest = 0;
    int found = -1;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        struct stat st;
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (n > 9 && strcmp(e->d_name + n - 9, ".incr.aof") == 0 && stat(path, &st) == 0 &&
            (found < 0 || st.st_mtime >= newest)) {
            newest = st.st_mtime;
            snprintf(out, outlen, "%s", path);
            found = 0;
        }
    }
    closedir(d);
    return found;
}

/* Size of the AOF file now: cutting it back to this later loses every
 * write made after this point. */
static off_t aof_mark(char *aof, size_t aoflen)
{
    struct stat st;
    assert_int_equal(aof_incr_path(aof, aoflen), 0);
    assert_int_equal(stat(aof, &st), 0);
    return st.st_size;
}

/* SIGKILL: no shutdown save; with appendfsync always the AOF holds every
 * acknowledged write. With aof, it is then cut back to keep bytes: the
 * writes after aof_mark() are lost, as a machine crash loses up to a second
 * of them under appendfsync everysec (docs/architecture.md section 6). */
static void kill_redis(const char *aof, off_t keep)
{
    harness_redis_kill(&redis, 1);
    if (aof == NULL)
        return;
    struct stat st;
    assert_int_equal(stat(aof, &st), 0);
    fprintf(stderr, "fleet_redis: %lld bytes of AOF lost\n", (long long)(st.st_size - keep));
    assert_int_equal(truncate(aof, keep), 0);
}

static long long logins_before;

/* Starts Redis again (mail arriving all along) and waits until every user
 * is watched again. */
static void restarted(const char *what)
{
    assert_int_equal(harness_redis_restart(&redis), 0);
    long long ms = fm_wait_all_watched(&fm, 45000, 1);
    fprintf(stderr,
            "fleet_redis: %s: all %d users watched again %.1f s after Redis answered; %lld IMAP "
            "logins since the kill\n",
            what, NUSERS, ms / 1000.0, fakeimap_stat(&srv, "logins") - logins_before);
    assert_one_session_per_user();
}

static void kill_and_restart(int down_ms, const char *what)
{
    logins_before = fakeimap_stat(&srv, "logins");
    kill_redis(NULL, 0);
    fm_pump_for(&fm, down_ms);
    restarted(what);
}

static void test_fleet_survives_redis_restarts_under_load(void **state)
{
    (void)state;
    fm_add_users(&fm, &redis, "rr");
    const char *env[] = {"SUPERIMAP_IMAP_LOGINS_PER_SEC=5000", "SUPERIMAP_MAX_MOVES_PER_SEC=500",
                         "SUPERIMAP_LOG_LEVEL=info", NULL};
    for (int i = 0; i < NW; i++)
        assert_int_equal(harness_node_start(&w[i], &redis, "superimap-watcher", names[i], env), 0);
    /* No mail before every user has its baseline: a message already in the
     * mailbox when the watcher first looks is old mail, never announced. */
    long long ms = fm_wait_all_watched(&fm, 30000, 0);
    fm.next_due = harness_now_ms();
    int counts[FM_MAX_W];
    fm_all_watched(&fm, counts);
    fprintf(stderr, "fleet_redis: 3 watchers hold %d/%d/%d of %d users after %.1f s\n", counts[0],
            counts[1], counts[2], NUSERS, ms / 1000.0);

    double moves[NW]; /* hand-overs while the fleet formed */
    for (int i = 0; i < NW; i++)
        moves[i] = harness_metric(w[i].port, "superimap_watcher_moves_total");

    fm_pump_for(&fm, 2000);
    kill_and_restart(0, "killed and restarted at once");
    fm_pump_for(&fm, 2000);
    kill_and_restart(INCARNATION_FENCE_MS - INCARNATION_RENEW_MS - 2000,
                     "down 3 s, within the fence limit");
    fm_pump_for(&fm, 2000);
    logins_before = fakeimap_stat(&srv, "logins");
    kill_redis(NULL, 0);
    fm_pump_for(&fm, INCARNATION_FENCE_MS + 1500);
    assert_int_equal(harness_redis_restart(&redis), 0);
    char aof[700];
    off_t keep = aof_mark(aof, sizeof aof);
    ms = fm_wait_all_watched(&fm, 45000, 1);
    fprintf(stderr,
            "fleet_redis: down 11.5 s, past the fence limit: all %d users watched again %.1f s "
            "after Redis answered; %lld IMAP logins since the kill\n",
            NUSERS, ms / 1000.0, fakeimap_stat(&srv, "logins") - logins_before);
    for (int i = 0; i < NW; i++)
        assert_true(harness_metric(w[i].port, "superimap_watcher_fences_total") >= 1);
    assert_one_session_per_user();

    /* Every write of that recovery lost: the new generations, their alive
     * keys, every lease taken again. */
    fm_pump_for(&fm, 500);
    logins_before = fakeimap_stat(&srv, "logins");
    kill_redis(aof, keep);
    restarted("lost the writes of that recovery (generations, alive keys, leases)");

    /* A second of steady work lost: cursors and the events with them. */
    fm_pump_for(&fm, 2000);
    keep = aof_mark(aof, sizeof aof);
    fm_pump_for(&fm, 1000);
    logins_before = fakeimap_stat(&srv, "logins");
    kill_redis(aof, keep);
    restarted("lost its last second of writes (cursors, events)");
    fm_pump_for(&fm, 1000);

    fm_wait_every_message_once(&fm, 20000);
    assert_one_session_per_user();
    /* Placement never changed: no watcher saw itself alone after an outage. */
    for (int i = 0; i < NW; i++)
        assert_int_equal(harness_metric(w[i].port, "superimap_watcher_moves_total"), moves[i]);
    fm_stop_watchers(&fm); /* a clean stop after all that */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_survives_redis_restarts_under_load),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
