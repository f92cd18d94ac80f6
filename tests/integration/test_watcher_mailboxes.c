/*
 * superimap-watcher watching several mailboxes per user over one connection
 * (docs/watcher.md "Several mailboxes"), against a private Dovecot (which
 * announces NOTIFY and SPECIAL-USE) and a private redis-server:
 *
 *   - a user watching INBOX and \Junk gets one webhook per message in each,
 *     Junk's with "mailbox" and "special_use" and an id of its own; a user
 *     watching INBOX only never sees Junk's mail (no cursor for it either);
 *     news of Junk comes through NOTIFY (no STATUS command sent);
 *   - a watched mailbox that does not exist, or is renamed or deleted while
 *     watched, shows in the user's mailboxes_missing, and the others go on
 *     being watched;
 *   - mail that arrived in both mailboxes while the watcher was stopped is
 *     announced exactly once after it starts again.
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

#define PID  "7"
#define CODE "dv"

static struct redis_srv redis;
static struct dovecot dv;
static int have_dovecot;
static char skip_why[128];

static int suite_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (fx_init() < 0 || harness_redis_start(&redis) < 0)
        return -1;
    have_dovecot = dovecot_available(skip_why, sizeof skip_why);
    if (!have_dovecot)
        return 0;
    return dovecot_start(&dv, 8);
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

static int start_watcher(struct proc *p)
{
    const char *env[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=100", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=1000",
                         "SUPERIMAP_LOG_COMPONENTS=imap", NULL};
    return harness_node_start(p, &redis, "superimap-watcher", "w1", env);
}

/* A user of provider CODE (plain IMAP) watching mailboxes (a JSON list as
 * the api stores it; NULL: INBOX only). */
static void add_user(const char *uid, const char *login, const char *mailboxes)
{
    char pass[16];
    snprintf(pass, sizeof pass, "pass%s", login + 4);
    assert_int_equal(fx_user(&redis, uid, PID, CODE, login, login, pass), 0);
    if (mailboxes != NULL)
        assert_int_equal(fx_user_mailboxes(&redis, uid, mailboxes), 0);
}

static size_t make_mail(char *out, size_t outlen, const char *user, const char *tag)
{
    return (size_t)snprintf(out, outlen,
                            "From: Someone <someone@example.com>\r\n"
                            "To: %s@example.com\r\n"
                            "Subject: %s\r\n"
                            "Message-ID: <%s.%s@example.com>\r\n"
                            "\r\n"
                            "Body of %s.\r\n",
                            user, tag, tag, user, tag);
}

static void deliver(const char *user, const char *mailbox, const char *tag)
{
    char mail[1024];
    size_t n = make_mail(mail, sizeof mail, user, tag);
    assert_int_equal(dovecot_deliver_to(&dv, user, mailbox, mail, n), 0);
}

/* "m" and the first 8 hex digits of the SHA-1 of a mailbox as configured:
 * the tail of its events' ids. */
static void box_tag(const char *spec, char out[16])
{
    char hex[41];
    assert_int_equal(crypto_sha1_hex(spec, strlen(spec), hex), 0);
    snprintf(out, 16, "m%.8s", hex);
}

/* uid's event with subject tag, waited for (json_free() it). */
static yajl_val wait_event(const char *uid, const char *tag, int ms)
{
    yajl_val v = fx_wait_event_by_subject(&redis, PID, uid, tag, ms);
    if (v == NULL)
        fail_msg("user %s: no event with subject %s", uid, tag);
    return v;
}

static void test_inbox_and_junk_one_webhook_each(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *both = "00000000000000000000b001", *inbox = "00000000000000000000b002";
    assert_int_equal(fx_provider(&redis, CODE, "127.0.0.1", dv.port_plain, "none"), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user1", "create", "Junk", NULL), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user2", "create", "Junk", NULL), 0);
    add_user(both, "user1", "[\"INBOX\",\"\\\\Junk\"]");
    add_user(inbox, "user2", NULL);
    struct proc w;
    assert_int_equal(start_watcher(&w), 0);
    assert_int_equal(fx_wait_user_field(&redis, both, "state", "watching", 15000), 0);
    assert_int_equal(fx_wait_user_field(&redis, inbox, "state", "watching", 15000), 0);

    deliver("user2", "Junk", "u2-junk");
    deliver("user2", "INBOX", "u2-inbox");
    deliver("user1", "Junk", "u1-junk");
    deliver("user1", "INBOX", "u1-inbox");

    yajl_val vi = wait_event(both, "u1-inbox", 15000);
    yajl_val vj = wait_event(both, "u1-junk", 15000);
    /* INBOX: as before, no mailbox member, the original's id. */
    assert_null(json_get(vi, "mailbox"));
    char want[128];
    int64_t uv = 0, muid = 0;
    assert_int_equal(json_get_int(vi, "uidvalidity", &uv), 0);
    assert_int_equal(json_get_int(vi, "uid", &muid), 0);
    snprintf(want, sizeof want, "%s.%lld.%lld", both, (long long)uv, (long long)muid);
    assert_string_equal(json_get_str(vi, "id"), want);
    /* Junk: its name, the attribute it was chosen by, an id of its own. */
    assert_string_equal(json_get_str(vj, "mailbox"), "Junk");
    assert_string_equal(json_get_str(vj, "special_use"), "\\Junk");
    char tag[16];
    box_tag("\\Junk", tag);
    assert_int_equal(json_get_int(vj, "uidvalidity", &uv), 0);
    assert_int_equal(json_get_int(vj, "uid", &muid), 0);
    snprintf(want, sizeof want, "%s.%lld.%lld.%s", both, (long long)uv, (long long)muid, tag);
    assert_string_equal(json_get_str(vj, "id"), want);
    json_free(vi);
    json_free(vj);

    /* The INBOX-only user: its INBOX mail, never Junk's (it has no cursor
     * for Junk: it never looked there). */
    yajl_val v2 = wait_event(inbox, "u2-inbox", 15000);
    json_free(v2);
    int n = 0;
    assert_null(fx_event_by_subject(&redis, PID, inbox, "u2-junk", &n));
    char out[64];
    assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HEXISTS si:{%u}:cur:%s %s",
                                       fx_shard(inbox), inbox, "last_uid:\\Junk"),
                     0);
    assert_string_equal(out, "0");
    /* One of each for user1: nothing announced twice. */
    vj = fx_event_by_subject(&redis, PID, both, "u1-junk", &n);
    assert_int_equal(n, 1);
    json_free(vj);
    vi = fx_event_by_subject(&redis, PID, both, "u1-inbox", &n);
    assert_int_equal(n, 1);
    json_free(vi);
    /* Dovecot has NOTIFY: Junk's news came without a STATUS poll. */
    assert_int_equal(harness_metric(w.port, "superimap_watcher_mailbox_status_total"), 0);
    assert_true(harness_metric(w.port, "superimap_watcher_mailbox_notify_total") >= 1);
    harness_proc_stop(&w);
}

static void test_missing_renamed_and_deleted_mailboxes_are_reported(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000b003";
    assert_int_equal(fx_provider(&redis, CODE, "127.0.0.1", dv.port_plain, "none"), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user3", "create", "Work", NULL), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user3", "create", "Receipts", NULL), 0);
    add_user(uid, "user3", "[\"INBOX\",\"Work\",\"Receipts\",\"Nowhere\"]");
    struct proc w;
    assert_int_equal(start_watcher(&w), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "[\"Nowhere\"]", 15000),
                     0);
    deliver("user3", "Work", "work-1");
    json_free(wait_event(uid, "work-1", 15000));

    /* Renamed and deleted while watched: seen at the next connection (a
     * change of the user reconnects it), the rest still watched. */
    assert_int_equal(dovecot_mailbox(&dv, "user3", "rename", "Work", "Work-old"), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user3", "delete", "Receipts", NULL), 0);
    assert_int_equal(fx_touch_user(&redis, uid), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing",
                                        "[\"Work\",\"Receipts\",\"Nowhere\"]", 15000),
                     0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    deliver("user3", "INBOX", "inbox-1");
    json_free(wait_event(uid, "inbox-1", 15000));

    /* Back again: the field goes. */
    assert_int_equal(dovecot_mailbox(&dv, "user3", "rename", "Work-old", "Work"), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user3", "create", "Receipts", NULL), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user3", "create", "Nowhere", NULL), 0);
    assert_int_equal(fx_touch_user(&redis, uid), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "", 15000), 0);
    harness_proc_stop(&w);
}

static void test_mail_while_stopped_is_announced_once(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *uid = "00000000000000000000b004";
    assert_int_equal(fx_provider(&redis, CODE, "127.0.0.1", dv.port_plain, "none"), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user4", "create", "Junk", NULL), 0);
    add_user(uid, "user4", "[\"INBOX\",\"\\\\Junk\"]");
    struct proc w;
    assert_int_equal(start_watcher(&w), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    deliver("user4", "Junk", "before-j");
    deliver("user4", "INBOX", "before-i");
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 2, 15000), 0);
    /* SIGTERM drains: lease released, so the next start takes it at once. */
    harness_proc_signal(&w, SIGTERM);
    assert_int_equal(harness_proc_wait(&w, 10000), 0);
    assert_int_equal(w.exit_code, 0);

    deliver("user4", "Junk", "gap-j1");
    deliver("user4", "INBOX", "gap-i1");
    deliver("user4", "Junk", "gap-j2");
    assert_int_equal(start_watcher(&w), 0);
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 5, 15000), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    /* A last message in each, then exactly 7 events, each once. */
    deliver("user4", "Junk", "after-j");
    deliver("user4", "INBOX", "after-i");
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 7, 15000), 0);
    static const char *const tags[] = {"before-j", "before-i", "gap-j1", "gap-i1",
                                       "gap-j2",   "after-j",  "after-i"};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        int n = 0;
        yajl_val v = fx_event_by_subject(&redis, PID, uid, tags[i], &n);
        if (n != 1)
            fail_msg("%s announced %d times", tags[i], n);
        json_free(v);
    }
    assert_int_equal(fx_ready_count(&redis, uid, PID), 7);
    harness_proc_stop(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inbox_and_junk_one_webhook_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_renamed_and_deleted_mailboxes_are_reported,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail_while_stopped_is_announced_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
