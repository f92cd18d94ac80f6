/*
 * tests/integration/fleet_mail_fixture.h: steady mail into a fleet of
 * superimap-watchers on superimap-fake-imapd, and the checks that every user
 * is watched by exactly one of them and that every message gave exactly one
 * new_mail event, for the tests that take Redis away under load
 * (test_fleet_redis: restarts; test_fleet_sentinel: failovers). Users are
 * "00000000000000000r<6 digits>", logins user1.., of partner pid; messages
 * are appended round robin at rate per second while the test waits.
 * Header-only (static functions), like the other fixtures.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_FLEET_MAIL_FIXTURE_H
#define TESTS_INTEGRATION_FLEET_MAIL_FIXTURE_H

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define FM_MAX_USERS 300
#define FM_MAX_MAIL  128 /* per user, far above what a run appends */
#define FM_MAX_W     4

struct fleet_mail {
    const struct redis_srv *redis; /* where the checks read: the primary now */
    struct fakeimap *srv;
    struct proc *w; /* the watchers */
    const char *const *names;
    int nw, nusers, rate;
    const char *pid;
    uint32_t sent[FM_MAX_USERS][FM_MAX_MAIL]; /* UIDs fake-imapd gave each user's messages */
    int nsent[FM_MAX_USERS];
    int next_user;
    long long next_due; /* monotonic ms of the next append */
};

static void fm_uid(int u, char out[32])
{
    snprintf(out, 32, "00000000000000000r%06d", u);
}

/* Provider code on m's fake-imapd (plaintext) and m's users of partner
 * m->pid at it, written in r (logins user1.., passwords pass1..). */
static __attribute__((unused)) void fm_add_users(const struct fleet_mail *m,
                                                 const struct redis_srv *r, const char *code)
{
    const char *host;
    int port = fakeimap_port(m->srv, 0, 0, &host);
    assert_int_equal(fx_provider(r, code, host, port, "none"), 0);
    for (int u = 0; u < m->nusers; u++) {
        char uid[32], login[16], pass[16];
        fm_uid(u, uid);
        snprintf(login, sizeof login, "user%d", u + 1);
        snprintf(pass, sizeof pass, "pass%d", u + 1);
        assert_int_equal(fx_user(r, uid, m->pid, code, login, login, pass), 0);
    }
}

/* Appends every message due by now; called between the checks of every
 * wait, so mail keeps arriving while Redis is away and while the watchers
 * recover. */
static void fm_pump(struct fleet_mail *m)
{
    long long now = harness_now_ms();
    if (m->next_due == 0)
        m->next_due = now;
    while (m->next_due <= now) {
        int u = m->next_user;
        m->next_user = (m->next_user + 1) % m->nusers;
        m->next_due += 1000 / m->rate;
        assert_true(m->nsent[u] < FM_MAX_MAIL);
        char login[16], msg[128];
        snprintf(login, sizeof login, "user%d", u + 1);
        int len = snprintf(msg, sizeof msg, "From: r@example.com\r\nSubject: %d/%d\r\n\r\nx\r\n", u,
                           m->nsent[u]);
        assert_int_equal(fakeimap_append(m->srv, login, msg, (size_t)len, &m->sent[u][m->nsent[u]]),
                         0);
        m->nsent[u]++;
    }
}

/* Lets ms pass while mail arrives. */
static __attribute__((unused)) void fm_pump_for(struct fleet_mail *m, int ms)
{
    long long end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        fm_pump(m);
        harness_poll_pause();
    }
}

/* 1 when every user's lease names the current incarnation of a running
 * watcher, each watcher sees the whole fleet and holds in IDLE exactly the
 * users placement gives it, and those sessions add up to the users;
 * counts[i] gets watcher i's leases. */
static int fm_all_watched(struct fleet_mail *m, int counts[FM_MAX_W])
{
    static const char *argv[FM_MAX_USERS + 1];
    static char keys[FM_MAX_USERS][64];
    argv[0] = "MGET";
    for (int u = 0; u < m->nusers; u++) {
        char uid[32];
        fm_uid(u, uid);
        snprintf(keys[u], sizeof keys[u], "si:{%u}:lease:%s", fx_shard(uid), uid);
        argv[u + 1] = keys[u];
    }
    char token[FM_MAX_W][32];
    for (int i = 0; i < m->nw; i++) {
        counts[i] = 0;
        snprintf(token[i], sizeof token[i], "%s:%.0f", m->names[i],
                 harness_metric(m->w[i].port, "superimap_watcher_generation"));
    }
    redisReply *r = fx_cmdv(m->redis, m->nusers + 1, argv, NULL);
    int held = 0;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)m->nusers) {
        for (size_t u = 0; u < r->elements; u++) {
            const redisReply *e = r->element[u];
            for (int i = 0; e->type == REDIS_REPLY_STRING && i < m->nw; i++) {
                if (strcmp(e->str, token[i]) == 0) {
                    counts[i]++;
                    held++;
                }
            }
        }
    }
    freeReplyObject(r);
    if (held != m->nusers)
        return 0;
    double watching = 0;
    for (int i = 0; i < m->nw; i++) {
        double mine = harness_metric(m->w[i].port, "superimap_watcher_sessions_watching");
        if (harness_metric(m->w[i].port, "superimap_watcher_fleet_watchers") != m->nw ||
            harness_metric(m->w[i].port, "superimap_watcher_users_placed") != mine)
            return 0;
        watching += mine;
    }
    return watching == m->nusers;
}

/* Waits (mail still arriving, if mail) until fm_all_watched(); returns the
 * ms it took, or fails the test after ms. */
static __attribute__((unused)) long long fm_wait_all_watched(struct fleet_mail *m, int ms, int mail)
{
    long long t0 = harness_now_ms(), deadline = t0 + ms;
    int counts[FM_MAX_W] = {0};
    for (;;) {
        if (mail)
            fm_pump(m);
        if (fm_all_watched(m, counts))
            return harness_now_ms() - t0;
        if (harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    fail_msg("users not all watched within %d ms: leases %d/%d/%d of %d", ms, counts[0], counts[1],
             counts[2], m->nusers);
    return -1;
}

/* Checks the ready list against what was sent: returns the messages still
 * without an event (naming the first ten when report); fails at once on a
 * duplicate or an unknown event. */
static int fm_missing_events(struct fleet_mail *m, int report)
{
    static unsigned char seen[FM_MAX_USERS][FM_MAX_MAIL];
    memset(seen, 0, sizeof seen);
    redisContext *c = harness_redis_connect(m->redis);
    assert_non_null(c);
    for (int u = 0; u < m->nusers; u++) {
        char uid[32];
        fm_uid(u, uid);
        redisAppendCommand(c, "LRANGE si:{%u}:ready:%s 0 -1", fx_shard(uid), m->pid);
    }
    int missing = 0;
    for (int u = 0; u < m->nusers; u++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        char uid[32];
        fm_uid(u, uid);
        size_t n = strlen(uid);
        for (size_t e = 0; e < r->elements; e++) {
            /* "<user id>.<uidvalidity>.<message UID>": ids of other users
             * of the shard are skipped. */
            const char *id = r->element[e]->str;
            if (strncmp(id, uid, n) != 0 || id[n] != '.')
                continue;
            const char *dot = strrchr(id, '.');
            uint32_t muid = (uint32_t)strtoul(dot + 1, NULL, 10);
            int j = 0;
            while (j < m->nsent[u] && m->sent[u][j] != muid)
                j++;
            if (j == m->nsent[u])
                fail_msg("event %s for a message never appended", id);
            if (seen[u][j]++)
                fail_msg("event %s recorded twice", id);
        }
        for (int j = 0; j < m->nsent[u]; j++) {
            if (!seen[u][j] && report && missing < 10)
                fprintf(stderr, "fleet: no event for acct=%s uid=%" PRIu32 "\n", uid,
                        m->sent[u][j]);
            missing += !seen[u][j];
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return missing;
}

/* Waits (no more mail) until every message sent has its one event. */
static __attribute__((unused)) void fm_wait_every_message_once(struct fleet_mail *m, int ms)
{
    long long deadline = harness_now_ms() + ms;
    int missing;
    while ((missing = fm_missing_events(m, 0)) > 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    if (missing > 0)
        missing = fm_missing_events(m, 1);
    int total = 0;
    for (int u = 0; u < m->nusers; u++)
        total += m->nsent[u];
    if (missing > 0)
        fail_msg("%d of %d messages without an event after %d ms", missing, total, ms);
    fprintf(stderr, "fleet: %d messages appended, one event each\n", total);
}

/* SIGTERM to every watcher, and each exits 0 within 15 s (sanitizer builds
 * check for leaks on the way out). */
static __attribute__((unused)) void fm_stop_watchers(struct fleet_mail *m)
{
    for (int i = 0; i < m->nw; i++)
        harness_proc_signal(&m->w[i], SIGTERM);
    for (int i = 0; i < m->nw; i++) {
        assert_int_equal(harness_proc_wait(&m->w[i], 15000), 0);
        assert_int_equal(m->w[i].exit_code, 0);
    }
}

#endif
