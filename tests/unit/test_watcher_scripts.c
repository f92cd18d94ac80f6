/*
 * The watcher's Redis scripts against a real redis-server: leases fenced by
 * per-shard alive keys, cursor baselines, exactly-once record_mail,
 * lease-checked user state, OAuth2 tokens stored by compare-and-set,
 * reauth_required with its one event, and a node's heartbeat telling it of
 * an operator's drain request.
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
#include <hiredis/hiredis.h>

#include "core/rsync.h"
#include "core/scripts.h"
#include "tests/unit/redis_fixture.h"

static struct redis_fixture fx;
static struct rsync *rs;

static int suite_setup(void **state)
{
    (void)state;
    return redis_fixture_start_scripts(&fx, &rs);
}

static int suite_teardown(void **state)
{
    (void)state;
    redis_fixture_stop_scripts(&fx, rs);
    return 0;
}

static int flush(void **state)
{
    (void)state;
    redisReply *r = rsync_command(rs, "FLUSHALL");
    int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* Runs a script and returns its integer reply (or element 0 of an array). */
static long long run(const char *name, int nkeys, int argc, const char **argv, char *text,
                     size_t textlen)
{
    redisReply *r = rsync_script(rs, name, nkeys, argc, argv, NULL);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", name, r->str);
    long long v;
    if (r->type == REDIS_REPLY_ARRAY) {
        assert_true(r->elements >= 2);
        v = r->element[0]->integer;
        if (text != NULL)
            snprintf(text, textlen, "%s", r->element[1]->str ? r->element[1]->str : "");
    } else {
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        v = r->integer;
    }
    freeReplyObject(r);
    return v;
}

static void set_alive(const char *token)
{
    redisReply *r = rsync_command(rs, "SET si:{3}:alive:%s 1 PX 15000", token);
    assert_non_null(r);
    freeReplyObject(r);
}

static void kill_alive(const char *token)
{
    redisReply *r = rsync_command(rs, "DEL si:{3}:alive:%s", token);
    assert_non_null(r);
    freeReplyObject(r);
}

static long long acquire(const char *token)
{
    char alive[128];
    snprintf(alive, sizeof alive, "si:{3}:alive:%s", token);
    const char *argv[] = {"si:{3}:lease:u1", alive, token};
    return run("lease_acquire", 2, 3, argv, NULL, 0);
}

static void test_lease_goes_to_first_live_holder_only(void **state)
{
    (void)state;
    set_alive("w1:1");
    set_alive("w2:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(acquire("w1:1"), 1); /* re-acquiring one's own lease */
    assert_int_equal(acquire("w2:1"), 0);
    char out[64];
    redisReply *r = rsync_command(rs, "GET si:{3}:lease:u1");
    snprintf(out, sizeof out, "%s", r->str);
    freeReplyObject(r);
    assert_string_equal(out, "w1:1");
}

static void test_lease_taken_over_when_holder_dies(void **state)
{
    (void)state;
    set_alive("w1:1");
    set_alive("w2:1");
    assert_int_equal(acquire("w1:1"), 1);
    kill_alive("w1:1");
    assert_int_equal(acquire("w2:1"), 1);
    /* The old incarnation, revived with a new generation, cannot take it back. */
    set_alive("w1:2");
    assert_int_equal(acquire("w1:2"), 0);
}

static void test_fenced_caller_cannot_acquire(void **state)
{
    (void)state;
    assert_int_equal(acquire("w9:1"), -1); /* no alive key of its own */
    redisReply *r = rsync_command(rs, "EXISTS si:{3}:lease:u1");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

static void test_release_only_own_lease(void **state)
{
    (void)state;
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    const char *other[] = {"si:{3}:lease:u1", "w2:1"};
    assert_int_equal(run("lease_release", 1, 2, other, NULL, 0), 0);
    const char *own[] = {"si:{3}:lease:u1", "w1:1"};
    assert_int_equal(run("lease_release", 1, 2, own, NULL, 0), 1);
    assert_int_equal(run("lease_release", 1, 2, own, NULL, 0), 0);
}

/* cursor_baseline by a session that loaded user u1 in its cursor epoch. */
static long long baseline_in(const char *epoch, const char *token, const char *uidvalidity,
                             const char *last, char *got_last)
{
    char alive[128];
    snprintf(alive, sizeof alive, "si:{3}:alive:%s", token);
    const char *argv[] = {"si:{3}:lease:u1",
                          alive,
                          "si:{3}:cur:u1",
                          "si:{3}:user:u1",
                          token,
                          uidvalidity,
                          last,
                          epoch};
    redisReply *r = rsync_script(rs, "cursor_baseline", 4, 8, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    long long v = r->element[0]->integer;
    if (got_last != NULL)
        strcpy(got_last, r->element[2]->str);
    freeReplyObject(r);
    return v;
}

static long long baseline(const char *token, const char *uidvalidity, const char *last,
                          char *got_last)
{
    return baseline_in("", token, uidvalidity, last, got_last);
}

/* record_mail by a caller whose cursor is seen (the last UID it saw
 * recorded). */
static long long record_from(const char *token, const char *uidvalidity, const char *uid,
                             const char *seen, char *why)
{
    char alive[128], evt[128], eid[96];
    snprintf(alive, sizeof alive, "si:{3}:alive:%s", token);
    snprintf(eid, sizeof eid, "u1.%s.%s", uidvalidity, uid);
    snprintf(evt, sizeof evt, "si:{3}:evt:%s", eid);
    const char *argv[] = {"si:{3}:lease:u1",
                          alive,
                          "si:{3}:cur:u1",
                          evt,
                          "si:{3}:ready:p7",
                          "si:{3}:ready_partners",
                          "si:{3}:user:u1",
                          token,
                          uidvalidity,
                          uid,
                          eid,
                          "p7",
                          seen,
                          "type",
                          "new_mail",
                          "uid",
                          "u1",
                          "payload",
                          "v1:x"};
    return run("record_mail", 7, 19, argv, why, 32);
}

/* record_mail of message uid whose subject is "TRACER: <tracer>"; the
 * reply's third element (latency ms or "") into latency. */
static long long record_tracer(const char *uid, const char *tracer, char *why, char *latency)
{
    char evt[128], eid[96];
    snprintf(eid, sizeof eid, "u1.100.%s", uid);
    snprintf(evt, sizeof evt, "si:{3}:evt:%s", eid);
    const char *argv[] = {"si:{3}:lease:u1",
                          "si:{3}:alive:w1:1",
                          "si:{3}:cur:u1",
                          evt,
                          "si:{3}:ready:p7",
                          "si:{3}:ready_partners",
                          "si:{3}:user:u1",
                          "w1:1",
                          "100",
                          uid,
                          eid,
                          "p7",
                          "0",
                          "type",
                          "new_mail",
                          "code",
                          "DOVE",
                          "tracer",
                          tracer,
                          "payload",
                          "v1:x"};
    redisReply *r = rsync_script(rs, "record_mail", 7, 21, argv, NULL);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("record_mail: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    long long v = r->element[0]->integer;
    snprintf(why, 32, "%s", r->element[1]->str);
    latency[0] = '\0';
    if (r->elements > 2)
        snprintf(latency, 32, "%s", r->element[2]->str);
    freeReplyObject(r);
    return v;
}

/* record_mail by a caller that just started from the cursor. */
static long long record(const char *token, const char *uidvalidity, const char *uid, char *why)
{
    return record_from(token, uidvalidity, uid, "0", why);
}

/* u1 is one of shard 3's users to watch. */
static void watch_u1(void)
{
    freeReplyObject(rsync_command(rs, "ZADD si:{3}:users 0 u1"));
}

static void test_record_mail_exactly_once_in_uid_order(void **state)
{
    (void)state;
    char why[32], last[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(record("w1:1", "100", "5", why), 0);
    assert_string_equal(why, "nocursor");
    assert_int_equal(baseline("w1:1", "100", "4", last), 1);
    assert_int_equal(baseline("w1:1", "100", "9", last), 0); /* kept: returns the cursor */
    assert_string_equal(last, "4");
    assert_int_equal(record("w1:1", "100", "4", why), 0); /* old mail never announced */
    assert_string_equal(why, "old");
    assert_int_equal(record("w1:1", "100", "5", why), 1);
    assert_int_equal(record("w1:1", "100", "5", why), 0); /* a second time: nothing */
    assert_string_equal(why, "old");
    assert_int_equal(record("w1:1", "100", "7", why), 1);
    assert_int_equal(record("w1:1", "100", "6", why), 0); /* below the cursor */

    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 2);
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready_partners"), 1);
    redisReply *r = rsync_command(rs, "HGET si:{3}:evt:u1.100.5 state");
    assert_string_equal(r->str, "ready");
    freeReplyObject(r);
    r = rsync_command(rs, "HGET si:{3}:cur:u1 last_uid");
    assert_string_equal(r->str, "7");
    freeReplyObject(r);
    r = rsync_command(rs, "HGET si:{3}:user:u1 last_email_at");
    assert_true(r->type == REDIS_REPLY_STRING && atoll(r->str) > 0);
    freeReplyObject(r);
}

/* Redis restarted from an older state lost the cursor's last moves (and
 * their events): a later message must not move the cursor past the lost
 * ones before the watcher has examined the mailbox again. */
static void test_record_mail_refuses_a_cursor_behind_the_caller(void **state)
{
    (void)state;
    char why[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(baseline("w1:1", "100", "4", NULL), 1);
    assert_int_equal(record_from("w1:1", "100", "5", "4", why), 1);
    /* The caller saw 5 and 6 recorded; Redis came back holding 5 only. */
    assert_int_equal(record_from("w1:1", "100", "7", "6", why), 0);
    assert_string_equal(why, "behind");
    redisReply *r = rsync_command(rs, "HGET si:{3}:cur:u1 last_uid");
    assert_string_equal(r->str, "5");
    freeReplyObject(r);
    assert_int_equal(redis_fixture_int(&fx, "EXISTS si:{3}:evt:u1.100.7"), 0);
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 1);
    /* Examined again from 5: 6 then 7, each once. */
    assert_int_equal(record_from("w1:1", "100", "6", "5", why), 1);
    assert_int_equal(record_from("w1:1", "100", "7", "6", why), 1);
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 3);
}

/* The race of an archive and a restore within about a second, during a
 * Redis reconnect of the watcher: its session of user u1 never saw the user
 * leave (the change stream was read after both), so after the reconnect it
 * finds the cursor gone, as if Redis had lost it, and puts back the one it
 * started from. The restore deleted that cursor so that the restored user
 * is watched from new mail on: put back, the mail that came while the user
 * was archived would be announced. The user's cursor epoch, raised by the
 * archive and by the restore, refuses the session's write; a cursor of an
 * earlier epoch is not used by record_mail either. */
static void test_session_of_before_archive_and_restore_cannot_put_its_cursor_back(void **state)
{
    (void)state;
    char why[32], last[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    freeReplyObject(rsync_command(rs,
                                  "HSET si:{3}:user:u1 uid u1 pid p7 code PLAIN tag t1 "
                                  "email %s archived 0 connected_at 1",
                                  ""));
    /* The session loaded u1 (no cursor_epoch yet: "") and works from 10. */
    assert_int_equal(baseline_in("", "w1:1", "100", "10", NULL), 1);
    assert_int_equal(record_from("w1:1", "100", "11", "10", why), 1);

    const char *archive[] = {"si:{3}:user:u1", "si:{3}:users", "si:changes", "u1", "3", "api"};
    assert_int_equal(run("user_archive", 3, 6, archive, NULL, 0), 1);
    const char *restore[] = {"si:{3}:user:u1",
                             "si:{3}:users",
                             "si:changes",
                             "si:tag:p7:PLAIN:t1",
                             "si:email:p7:PLAIN:",
                             "u1",
                             "3",
                             "t1",
                             ""};
    redisReply *r = rsync_script(rs, "user_restore", 5, 9, restore, NULL);
    assert_string_equal(r->str, "ok");
    freeReplyObject(r);
    assert_int_equal(redis_fixture_int(&fx, "EXISTS si:{3}:cur:u1"), 0);

    /* The old session's put-back after the reconnect: refused, nothing written. */
    assert_int_equal(baseline_in("", "w1:1", "100", "10", NULL), -2);
    assert_int_equal(redis_fixture_int(&fx, "EXISTS si:{3}:cur:u1"), 0);
    /* Its record of a message that came while u1 was archived. */
    assert_int_equal(record_from("w1:1", "100", "12", "11", why), 0);
    assert_string_equal(why, "nocursor");

    /* Loaded again, in the restore's epoch: watched from new mail on. */
    r = rsync_command(rs, "HGET si:{3}:user:u1 cursor_epoch");
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    assert_int_equal(baseline_in("2", "w1:1", "100", "20", last), 1);
    assert_int_equal(baseline_in("2", "w1:1", "100", "25", last), 0);
    assert_string_equal(last, "20");
    assert_int_equal(record_from("w1:1", "100", "15", "20", why), 0);
    assert_string_equal(why, "old");
    assert_int_equal(record_from("w1:1", "100", "21", "20", why), 1);
    assert_int_equal(redis_fixture_int(&fx, "EXISTS si:{3}:evt:u1.100.12"), 0);
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 2); /* 11 and 21 */

    /* A cursor of an earlier epoch (however it came back) is not used. */
    freeReplyObject(rsync_command(rs, "HSET si:{3}:cur:u1 epoch 1"));
    assert_int_equal(record_from("w1:1", "100", "22", "21", why), 0);
    assert_string_equal(why, "nocursor");
}

/* A tracer of a tracer user is detected (cursor advanced, the sender's
 * record completed with its latency when it is there) and never queued;
 * the same subject to a user without enable_tracer is announced. */
static void test_record_mail_detects_tracers_of_tracer_users_only(void **state)
{
    (void)state;
    char why[32], latency[32], latency_of_bb22[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(baseline("w1:1", "100", "4", NULL), 1);

    assert_int_equal(record_tracer("5", "aa11", why, latency), 1);
    assert_string_equal(why, "recorded"); /* not a tracer user: announced */
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 1);
    assert_int_equal(redis_fixture_int(&fx, "HEXISTS si:{3}:evt:u1.100.5 tracer"), 0);

    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u1 enable_tracer 1"));
    freeReplyObject(rsync_command(rs, "HSET si:{3}:tracer:bb22 uid u1 sent_at 1"));
    assert_int_equal(record_tracer("6", "bb22", why, latency), 1);
    assert_string_equal(why, "tracer");
    assert_true(atoll(latency) > 1000000); /* now - 1 ms since the epoch */
    snprintf(latency_of_bb22, sizeof latency_of_bb22, "%s", latency);
    assert_int_equal(record_tracer("7", "cc33", why, latency), 1); /* sent elsewhere */
    assert_string_equal(why, "tracer");
    assert_string_equal(latency, "");
    assert_int_equal(redis_fixture_int(&fx, "EXISTS si:{3}:tracer:cc33"), 0);
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 1);
    assert_int_equal(redis_fixture_int(&fx, "EXISTS si:{3}:evt:u1.100.6"), 0);
    redisReply *r = rsync_command(rs, "HMGET si:{3}:tracer:bb22 detected_at latency_ms");
    assert_true(atoll(r->element[0]->str) > 1);
    assert_string_equal(r->element[1]->str, latency_of_bb22);
    freeReplyObject(r);
    r = rsync_command(rs, "HGET si:{3}:cur:u1 last_uid");
    assert_string_equal(r->str, "7");
    freeReplyObject(r);
    assert_int_equal(record_tracer("7", "cc33", why, latency), 0); /* once */
    assert_string_equal(why, "old");
}

static void test_stale_holder_cannot_record(void **state)
{
    (void)state;
    char why[32];
    watch_u1();
    set_alive("w1:1");
    set_alive("w2:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(baseline("w1:1", "100", "0", NULL), 1);
    kill_alive("w1:1"); /* w1 froze past its alive key */
    assert_int_equal(acquire("w2:1"), 1);
    set_alive("w1:1"); /* even if its key came back, the lease is w2's */
    assert_int_equal(record("w1:1", "100", "1", why), 0);
    assert_string_equal(why, "stale");
    assert_int_equal(baseline("w1:1", "200", "0", NULL), -1);
    assert_int_equal(record("w2:1", "100", "1", why), 1);
    kill_alive("w2:1"); /* a holder whose own alive key expired is stale too */
    assert_int_equal(record("w2:1", "100", "2", why), 0);
    assert_string_equal(why, "stale");
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 1);
}

static void test_uidvalidity_change_needs_new_baseline(void **state)
{
    (void)state;
    char why[32], last[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(baseline("w1:1", "100", "10", NULL), 1);
    assert_int_equal(record("w1:1", "100", "11", why), 1);
    assert_int_equal(record("w1:1", "200", "12", why), 0);
    assert_string_equal(why, "uidvalidity");
    assert_int_equal(baseline("w1:1", "200", "3", last), 1);
    assert_string_equal(last, "3");
    assert_int_equal(record("w1:1", "200", "3", why), 0);
    assert_int_equal(record("w1:1", "200", "4", why), 1);
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 2);
}

static void test_mail_of_a_user_no_longer_watched_is_not_recorded(void **state)
{
    (void)state;
    char why[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(baseline("w1:1", "100", "0", NULL), 1);
    assert_int_equal(record("w1:1", "100", "1", why), 1);
    /* Archived (or disconnected) through the api: out of the users set,
     * before the watcher has seen the change. */
    freeReplyObject(rsync_command(rs, "ZREM si:{3}:users u1"));
    assert_int_equal(record("w1:1", "100", "2", why), 0);
    assert_string_equal(why, "unwatched");
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 1);
    redisReply *r = rsync_command(rs, "HGET si:{3}:cur:u1 last_uid");
    assert_string_equal(r->str, "1"); /* the cursor did not move */
    freeReplyObject(r);
    watch_u1(); /* watched again: recorded */
    assert_int_equal(record("w1:1", "100", "2", why), 1);
}

/* record_mail of message uid of mailbox (NULL: INBOX) with X-GM-MSGID gm
 * (NULL: none), cursor seen "0"; the reason into why. */
static long long record_in(const char *mailbox, const char *uidvalidity, const char *uid,
                           const char *gm, char *why)
{
    char evt[128], eid[96];
    snprintf(eid, sizeof eid, "u1.%s.%s%s%s", uidvalidity, uid, mailbox ? ".m" : "",
             mailbox ? mailbox : "");
    snprintf(evt, sizeof evt, "si:{3}:evt:%s", eid);
    const char *argv[24] = {"si:{3}:lease:u1",
                            "si:{3}:alive:w1:1",
                            "si:{3}:cur:u1",
                            evt,
                            "si:{3}:ready:p7",
                            "si:{3}:ready_partners",
                            "si:{3}:user:u1",
                            "w1:1",
                            uidvalidity,
                            uid,
                            eid,
                            "p7",
                            "0",
                            "type",
                            "new_mail",
                            "payload",
                            "v1:x"};
    int argc = 17;
    if (mailbox != NULL) {
        argv[argc++] = "mailbox";
        argv[argc++] = mailbox;
    }
    if (gm != NULL) {
        argv[argc++] = "gm_msgid";
        argv[argc++] = gm;
    }
    return run("record_mail", 7, argc, argv, why, 32);
}

static long long baseline_of(const char *mailbox, const char *uidvalidity, const char *last)
{
    const char *argv[] = {"si:{3}:lease:u1",
                          "si:{3}:alive:w1:1",
                          "si:{3}:cur:u1",
                          "si:{3}:user:u1",
                          "w1:1",
                          uidvalidity,
                          last,
                          "",
                          mailbox};
    redisReply *r = rsync_script(rs, "cursor_baseline", 4, 9, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    long long v = r->element[0]->integer;
    freeReplyObject(r);
    return v;
}

/* Each watched mailbox has its own cursor in the user's cursor hash (INBOX
 * keeps the original fields), and a Gmail message seen under a second
 * label advances that label's cursor without a second event. */
static void test_record_mail_keeps_a_cursor_per_mailbox_and_gmail_ids_once(void **state)
{
    (void)state;
    char why[32];
    watch_u1();
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    assert_int_equal(baseline_of("", "100", "4"), 1);
    assert_int_equal(record_in("\\Junk", "200", "1", NULL, why), 0);
    assert_string_equal(why, "nocursor"); /* INBOX's cursor is not Junk's */
    assert_int_equal(baseline_of("\\Junk", "200", "0"), 1);
    assert_int_equal(baseline_of("\\Junk", "200", "9"), 0); /* kept */
    assert_int_equal(record_in("\\Junk", "200", "1", NULL, why), 1);
    assert_int_equal(record_in("\\Junk", "200", "1", NULL, why), 0);
    assert_string_equal(why, "old");
    assert_int_equal(record_in(NULL, "100", "5", NULL, why), 1);
    redisReply *r = rsync_command(rs, "HMGET si:{3}:cur:u1 last_uid uidvalidity last_uid:\\Junk "
                                      "uidvalidity:\\Junk");
    assert_string_equal(r->element[0]->str, "5");
    assert_string_equal(r->element[1]->str, "100");
    assert_string_equal(r->element[2]->str, "1");
    assert_string_equal(r->element[3]->str, "200");
    freeReplyObject(r);
    r = rsync_command(rs, "HGET si:{3}:evt:u1.200.1.m\\Junk mailbox");
    assert_string_equal(r->str, "\\Junk");
    freeReplyObject(r);

    /* Gmail: the same X-GM-MSGID under a second label, once. */
    assert_int_equal(baseline_of("Work", "300", "0"), 1);
    assert_int_equal(record_in(NULL, "100", "6", "1234567890123456789", why), 1);
    assert_int_equal(record_in("Work", "300", "1", "1234567890123456789", why), 1);
    assert_string_equal(why, "duplicate");
    assert_int_equal(record_in("Work", "300", "2", "1234567890123456790", why), 1);
    assert_string_equal(why, "recorded");
    assert_int_equal(redis_fixture_int(&fx, "LLEN si:{3}:ready:p7"), 4);
    r = rsync_command(rs, "HGET si:{3}:cur:u1 last_uid:Work");
    assert_string_equal(r->str, "2"); /* the duplicate's UID was passed too */
    freeReplyObject(r);
    assert_int_equal(redis_fixture_int(&fx, "ZCARD si:{3}:gm:u1"), 2);
    r = rsync_command(rs, "HEXISTS si:{3}:evt:u1.300.1.mWork gm_msgid");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

static void test_user_state_writes_and_clears_missing_mailboxes(void **state)
{
    (void)state;
    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u1 state watching"));
    set_alive("w1:1");
    assert_int_equal(acquire("w1:1"), 1);
    const char *set[] = {"si:{3}:lease:u1",   "si:{3}:alive:w1:1", "si:{3}:user:u1", "w1:1",
                         "mailboxes_missing", "[\"Work\"]"};
    assert_int_equal(run("user_state", 3, 6, set, NULL, 0), 1);
    redisReply *r = rsync_command(rs, "HGET si:{3}:user:u1 mailboxes_missing");
    assert_string_equal(r->str, "[\"Work\"]");
    freeReplyObject(r);
    const char *clear[] = {
        "si:{3}:lease:u1", "si:{3}:alive:w1:1", "si:{3}:user:u1", "w1:1", "mailboxes_missing", ""};
    assert_int_equal(run("user_state", 3, 6, clear, NULL, 0), 1);
    assert_int_equal(redis_fixture_int(&fx, "HEXISTS si:{3}:user:u1 mailboxes_missing"), 0);
}

static void test_user_state_written_by_holder_only(void **state)
{
    (void)state;
    redisReply *r = rsync_command(rs, "HSET si:{3}:user:u1 state idle tag t");
    freeReplyObject(r);
    set_alive("w1:1");
    set_alive("w2:1");
    assert_int_equal(acquire("w1:1"), 1);
    const char *mine[] = {"si:{3}:lease:u1",
                          "si:{3}:alive:w1:1",
                          "si:{3}:user:u1",
                          "w1:1",
                          "state",
                          "watching",
                          "tag",
                          "hijack"};
    assert_int_equal(run("user_state", 3, 8, mine, NULL, 0), 1);
    const char *theirs[] = {
        "si:{3}:lease:u1", "si:{3}:alive:w2:1", "si:{3}:user:u1", "w2:1", "state", "error"};
    assert_int_equal(run("user_state", 3, 6, theirs, NULL, 0), 0);
    r = rsync_command(rs, "HMGET si:{3}:user:u1 state tag");
    assert_string_equal(r->element[0]->str, "watching");
    assert_string_equal(r->element[1]->str, "t"); /* only session fields are writable */
    freeReplyObject(r);
    r = rsync_command(rs, "DEL si:{3}:user:u1");
    freeReplyObject(r);
    assert_int_equal(run("user_state", 3, 8, mine, NULL, 0), -1);
}

static void test_oauth2_tokens_store_only_over_the_secret_refreshed(void **state)
{
    (void)state;
    redisReply *r = rsync_command(rs, "HSET si:{3}:user:u1 secret sealed-rt1 tag t");
    freeReplyObject(r);
    const char *rotated[] = {"si:{3}:user:u1", "sealed-rt1", "sealed-rt2", "sealed-at1", "1000"};
    assert_int_equal(run("oauth2_tokens", 1, 5, rotated, NULL, 0), 1);
    /* A refresh made with the old secret may not overwrite the new one. */
    const char *stale[] = {"si:{3}:user:u1", "sealed-rt1", "sealed-rt3", "sealed-at2", "2000"};
    assert_int_equal(run("oauth2_tokens", 1, 5, stale, NULL, 0), 0);
    const char *kept[] = {"si:{3}:user:u1", "sealed-rt2", "", "sealed-at3", "3000"};
    assert_int_equal(run("oauth2_tokens", 1, 5, kept, NULL, 0), 1);
    r = rsync_command(rs, "HMGET si:{3}:user:u1 secret oauth2_access_token oauth2_expires_at");
    assert_string_equal(r->element[0]->str, "sealed-rt2");
    assert_string_equal(r->element[1]->str, "sealed-at3");
    assert_string_equal(r->element[2]->str, "3000");
    freeReplyObject(r);
    const char *gone[] = {"si:{3}:user:u9", "sealed-rt1", "", "a", "1"};
    assert_int_equal(run("oauth2_tokens", 1, 5, gone, NULL, 0), 0);
}

static long long reauth(const char *secret, const char *eid)
{
    char evt[128];
    snprintf(evt, sizeof evt, "si:{3}:evt:%s", eid);
    const char *argv[] = {"si:{3}:user:u1",
                          "si:{3}:users",
                          evt,
                          "si:{3}:ready:7",
                          "si:{3}:ready_partners",
                          "si:{3}:reauth",
                          secret,
                          "token endpoint answered HTTP 400: invalid_grant",
                          eid,
                          "7",
                          "u1",
                          "sha1hex",
                          "sealed-payload"};
    return run("user_reauth", 6, 13, argv, NULL, 0);
}

static void test_user_reauth_marks_unwatches_and_queues_one_event(void **state)
{
    (void)state;
    redisReply *r = rsync_command(rs, "HSET si:{3}:user:u1 secret sealed-rt1 state watching "
                                      "code GMAIL tag t1 connected_at 5 oauth2_access_token x");
    freeReplyObject(r);
    r = rsync_command(rs, "ZADD si:{3}:users 0 u1");
    freeReplyObject(r);
    /* Refused with a secret the user no longer has (connected again): nothing. */
    assert_int_equal(reauth("sealed-rt0", "u1.reauth.1"), 0);
    assert_int_equal(reauth("sealed-rt1", "u1.reauth.2"), 1);
    r = rsync_command(rs, "HMGET si:{3}:user:u1 state connected_at oauth2_access_token last_error");
    assert_string_equal(r->element[0]->str, "reauth_required");
    assert_string_equal(r->element[1]->str, "");
    assert_string_equal(r->element[2]->str, "");
    assert_non_null(strstr(r->element[3]->str, "invalid_grant"));
    freeReplyObject(r);
    r = rsync_command(rs, "ZSCORE si:{3}:users u1");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = rsync_command(rs, "HMGET si:{3}:evt:u1.reauth.2 type pid uid code tag sha1 payload state");
    assert_string_equal(r->element[0]->str, "user_reauth_required");
    assert_string_equal(r->element[1]->str, "7");
    assert_string_equal(r->element[2]->str, "u1");
    assert_string_equal(r->element[3]->str, "GMAIL");
    assert_string_equal(r->element[4]->str, "t1");
    assert_string_equal(r->element[5]->str, "sha1hex");
    assert_string_equal(r->element[6]->str, "sealed-payload");
    assert_string_equal(r->element[7]->str, "ready");
    freeReplyObject(r);
    r = rsync_command(rs, "LRANGE si:{3}:ready:7 0 -1");
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
    r = rsync_command(rs, "LRANGE si:{3}:ready_partners 0 -1");
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->str, "7");
    freeReplyObject(r);
    /* Refused again (another watcher, a retry): no second event. */
    assert_int_equal(reauth("sealed-rt1", "u1.reauth.3"), 0);
    r = rsync_command(rs, "EXISTS si:{3}:evt:u1.reauth.3");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = rsync_command(rs, "SMEMBERS si:{3}:reauth");
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->str, "u1");
    freeReplyObject(r);
}

/* users_count.lua on shard 3: its answer {users, archived, connected,
 * reauth_required} into out. */
static void users_count(long long out[4])
{
    const char *argv[] = {"si:{3}:count", "si:{3}:users", "si:{3}:reauth", "si:{3}:"};
    redisReply *r = rsync_script(rs, "users_count", 3, 4, argv, NULL);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("users_count: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    for (size_t i = 0; i < 4; i++)
        out[i] = r->element[i]->integer;
    freeReplyObject(r);
}

static void test_users_count_reads_the_counts_and_drops_reauth_users_who_left(void **state)
{
    (void)state;
    long long c[4];
    users_count(c);
    assert_int_equal(c[0] + c[1] + c[2] + c[3], 0);
    freeReplyObject(rsync_command(rs, "HSET si:{3}:count users 9 archived 2"));
    freeReplyObject(rsync_command(rs, "ZADD si:{3}:users 0 u5 0 u6 0 u7"));
    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u1 state reauth_required"));
    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u2 state reauth_required"));
    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u3 state watching"));
    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u5 state reauth_required"));
    freeReplyObject(rsync_command(rs, "SADD si:{3}:reauth u1 u2 u3 u4 u5"));
    /* u3 connected again, u4 was deleted, u5 is watched again (its secret
     * updated through the API): all leave the set. */
    users_count(c);
    assert_int_equal(c[0], 9);
    assert_int_equal(c[1], 2);
    assert_int_equal(c[2], 3);
    assert_int_equal(c[3], 2);
    redisReply *r = rsync_command(rs, "SCARD si:{3}:reauth");
    assert_int_equal(r->integer, 2);
    freeReplyObject(r);
    freeReplyObject(rsync_command(rs, "HSET si:{3}:user:u2 state idle"));
    users_count(c);
    assert_int_equal(c[3], 1);
}

/* One heartbeat of node w1 started at started_at; returns its drain flag. */
static long long beat(const char *started_at)
{
    const char *argv[] = {"si:watchers", "si:node:w1", "w1",         "60000",   "3600000",
                          "role",        "watcher",    "started_at", started_at};
    redisReply *r = rsync_script(rs, "node_heartbeat", 2, 9, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_true(r->element[0]->integer > 0);
    long long drain = r->element[1]->integer;
    freeReplyObject(r);
    return drain;
}

/* A drain asked of a node reaches the incarnation asked at its next
 * heartbeat, never a node restarted under the same id, and never
 * re-creates the hash of a node that left. */
static void test_drain_reaches_the_incarnation_asked_at_its_heartbeat(void **state)
{
    (void)state;
    const char *key[] = {"si:node:w1"};
    redisReply *r = rsync_script(rs, "node_drain", 1, 1, key, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = rsync_command(rs, "EXISTS si:node:w1");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    assert_int_equal(beat("1000"), 0);
    r = rsync_script(rs, "node_drain", 1, 1, key, NULL);
    assert_non_null(r);
    assert_string_equal(r->str, "1000");
    freeReplyObject(r);
    assert_int_equal(beat("1000"), 1);
    assert_int_equal(beat("1000"), 1);
    /* The same id started again before the hash expired. */
    assert_int_equal(beat("2000"), 0);
    r = rsync_command(rs, "PTTL si:node:w1");
    assert_true(r->integer > 0);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lease_goes_to_first_live_holder_only, flush),
        cmocka_unit_test_setup(test_lease_taken_over_when_holder_dies, flush),
        cmocka_unit_test_setup(test_fenced_caller_cannot_acquire, flush),
        cmocka_unit_test_setup(test_release_only_own_lease, flush),
        cmocka_unit_test_setup(test_record_mail_exactly_once_in_uid_order, flush),
        cmocka_unit_test_setup(test_record_mail_keeps_a_cursor_per_mailbox_and_gmail_ids_once,
                               flush),
        cmocka_unit_test_setup(test_user_state_writes_and_clears_missing_mailboxes, flush),
        cmocka_unit_test_setup(test_record_mail_refuses_a_cursor_behind_the_caller, flush),
        cmocka_unit_test_setup(
            test_session_of_before_archive_and_restore_cannot_put_its_cursor_back, flush),
        cmocka_unit_test_setup(test_record_mail_detects_tracers_of_tracer_users_only, flush),
        cmocka_unit_test_setup(test_stale_holder_cannot_record, flush),
        cmocka_unit_test_setup(test_uidvalidity_change_needs_new_baseline, flush),
        cmocka_unit_test_setup(test_mail_of_a_user_no_longer_watched_is_not_recorded, flush),
        cmocka_unit_test_setup(test_user_state_written_by_holder_only, flush),
        cmocka_unit_test_setup(test_oauth2_tokens_store_only_over_the_secret_refreshed, flush),
        cmocka_unit_test_setup(test_drain_reaches_the_incarnation_asked_at_its_heartbeat, flush),
        cmocka_unit_test_setup(test_user_reauth_marks_unwatches_and_queues_one_event, flush),
        cmocka_unit_test_setup(test_users_count_reads_the_counts_and_drops_reauth_users_who_left,
                               flush),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
