/*
 * superimap-watcher watching several mailboxes against superimap-fake-imapd,
 * whose profiles turn each IMAP extension on or off (README "fake-imapd"):
 *
 *   - without NOTIFY the other mailboxes are checked with STATUS every
 *     provider mailbox_poll_s, and their mail is announced; with NOTIFY no
 *     STATUS is sent and the news comes pushed, and a deletion it reports
 *     is checked and reported at once;
 *   - Gmail (X-GM-EXT-1): a message under two watched labels is announced
 *     once, with gmail_msgid, gmail_thrid and gmail_labels;
 *   - a mailbox deleted while watched is noticed by the next STATUS round and
 *     reported, the other mailboxes still watched; the report goes once it is
 *     back (also for a watcher started afresh) or no longer watched;
 *   - faults on LIST, NOTIFY, STATUS and EXAMINE end the connection, and the
 *     mail of both mailboxes is still announced exactly once.
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

#define PID  "9"
#define CODE "fk"

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc w;

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=20", NULL};
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
    return fx_suite_reset(&redis, &srv);
}

static int teardown(void **state)
{
    (void)state;
    harness_proc_stop(&w);
    memset(&w, 0, sizeof w);
    return 0;
}

static void start_watcher(void)
{
    const char *env[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=50", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=500",
                         "SUPERIMAP_IMAP_COMMAND_TIMEOUT_MS=2000", "SUPERIMAP_LOG_COMPONENTS=imap",
                         NULL};
    assert_int_equal(harness_node_start(&w, &redis, "superimap-watcher", "w1", env), 0);
}

/* Provider CODE on the plain listener, its other mailboxes checked every
 * poll_s seconds without NOTIFY. */
static void provider(int poll_s)
{
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, CODE, host, port, "none"), 0);
    redisReply *r = fx_cmd(&redis, "HSET si:provider:%s mailbox_poll_s %d", CODE, poll_s);
    freeReplyObject(r);
}

static void user(const char *uid, int n, const char *mailboxes)
{
    char login[16], pass[16];
    snprintf(login, sizeof login, "user%d", n);
    snprintf(pass, sizeof pass, "pass%d", n);
    assert_int_equal(fx_user(&redis, uid, PID, CODE, login, login, pass), 0);
    assert_int_equal(fx_user_mailboxes(&redis, uid, mailboxes), 0);
}

static size_t mail(char *out, size_t outlen, const char *subject)
{
    return (size_t)snprintf(out, outlen,
                            "From: a@example.com\r\nSubject: %s\r\nMessage-ID: <%s@example.com>"
                            "\r\n\r\nbody of %s\r\n",
                            subject, subject, subject);
}

static void append_to(const char *login, const char *mailbox, const char *subject)
{
    char m[256];
    size_t n = mail(m, sizeof m, subject);
    assert_int_equal(fakeimap_append_to(&srv, login, mailbox, m, n, NULL), 0);
}

static yajl_val wait_event(const char *uid, const char *subject, int ms)
{
    yajl_val v = fx_wait_event_by_subject(&redis, PID, uid, subject, ms);
    if (v == NULL)
        fail_msg("user %s: no event with subject %s", uid, subject);
    return v;
}

/* Exactly one event of uid with this subject. */
static void assert_once(const char *uid, const char *subject)
{
    int n = 0;
    json_free(fx_event_by_subject(&redis, PID, uid, subject, &n));
    if (n != 1)
        fail_msg("user %s: %d events with subject %s, not 1", uid, n, subject);
}

static void test_other_mailboxes_polled_with_status_without_notify(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000c001";
    assert_int_equal(fakeimap_profiles(&srv, "special-use"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user1", "create", "Spam", NULL, "\\Junk"), 0);
    provider(10);
    user(uid, 1, "[\"INBOX\",\"\\\\Junk\"]");
    start_watcher();
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    /* Watching is written once IDLE began. A round without news costs its
     * STATUS and the IDLE after it: no FETCH or EXAMINE of INBOX, whose
     * news comes as EXISTS anyway. */
    long long fetches = fakeimap_stat(&srv, "cmd_uid_fetch");
    long long examines = fakeimap_stat(&srv, "cmd_examine");
    long long status = fakeimap_stat(&srv, "cmd_status");
    long long idles = fakeimap_stat(&srv, "idles");
    assert_int_equal(fakeimap_wait_stat(&srv, "cmd_status", status + 1, 20000), 0);
    assert_int_equal(fakeimap_wait_stat(&srv, "idles", idles + 1, 5000), 0);
    assert_int_equal(fakeimap_stat(&srv, "cmd_uid_fetch"), fetches);
    assert_int_equal(fakeimap_stat(&srv, "cmd_examine"), examines);
    append_to("user1", "Spam", "spam-1");
    yajl_val v = wait_event(uid, "spam-1", 25000);
    assert_string_equal(json_get_str(v, "mailbox"), "Spam");
    assert_string_equal(json_get_str(v, "special_use"), "\\Junk");
    json_free(v);
    assert_true(fakeimap_stat(&srv, "cmd_status") >= 1);
    assert_int_equal(fakeimap_stat(&srv, "cmd_notify"), 0);
    assert_true(harness_metric(w.port, "superimap_watcher_mailbox_status_total") >= 1);
    /* INBOX as ever, from IDLE. */
    append_to("user1", "INBOX", "inbox-1");
    v = wait_event(uid, "inbox-1", 15000);
    assert_null(json_get(v, "mailbox"));
    json_free(v);
    assert_once(uid, "spam-1");
}

static void test_notify_pushes_news_without_status(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000c002";
    assert_int_equal(fakeimap_profiles(&srv, "notify,special-use"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user2", "create", "Junk", NULL, "\\Junk"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user2", "create", "Work", NULL, NULL), 0);
    provider(3600);
    user(uid, 2, "[\"INBOX\",\"\\\\Junk\",\"Work\"]");
    start_watcher();
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    /* A STATUS round is an hour away: only NOTIFY can bring these. */
    append_to("user2", "Work", "work-1");
    append_to("user2", "Junk", "junk-1");
    json_free(wait_event(uid, "work-1", 15000));
    json_free(wait_event(uid, "junk-1", 15000));
    append_to("user2", "Work", "work-2");
    json_free(wait_event(uid, "work-2", 15000));
    assert_int_equal(fakeimap_stat(&srv, "cmd_status"), 0);
    assert_true(fakeimap_stat(&srv, "cmd_notify") >= 1);
    assert_int_equal(fx_ready_count(&redis, uid, PID), 3);
    /* A deletion NOTIFY reports (a LIST response) is checked at once with
     * STATUS, not at the next round an hour away. */
    assert_int_equal(fakeimap_mailbox(&srv, "user2", "delete", "Work", NULL, NULL), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "[\"Work\"]", 15000), 0);
    append_to("user2", "Junk", "junk-2");
    json_free(wait_event(uid, "junk-2", 15000));
}

static void test_gmail_message_under_two_labels_announced_once(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000c003";
    assert_int_equal(fakeimap_profiles(&srv, "notify,x-gm-ext-1"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user3", "create", "Work", NULL, NULL), 0);
    provider(3600);
    user(uid, 3, "[\"INBOX\",\"Work\"]");
    start_watcher();
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    char m[256];
    size_t n = mail(m, sizeof m, "labelled");
    const char *labels[] = {"INBOX", "Work"};
    uint64_t msgid = 0;
    uint32_t uids[2];
    assert_int_equal(fakeimap_append_labels(&srv, "user3", labels, 2, m, n, &msgid, uids), 0);
    assert_true(msgid > 0);
    yajl_val v = wait_event(uid, "labelled", 15000);
    char want[24];
    snprintf(want, sizeof want, "%llu", (unsigned long long)msgid);
    assert_string_equal(json_get_str(v, "gmail_msgid"), want);
    assert_non_null(json_get_str(v, "gmail_thrid"));
    yajl_val labs = json_get(v, "gmail_labels");
    assert_true(YAJL_IS_ARRAY(labs));
    json_free(v);
    /* A message in Work only comes after it: once Work's copy of the first
     * was passed, both are settled. */
    n = mail(m, sizeof m, "work-only");
    const char *work[] = {"Work"};
    assert_int_equal(fakeimap_append_labels(&srv, "user3", work, 1, m, n, NULL, NULL), 0);
    json_free(wait_event(uid, "work-only", 15000));
    assert_once(uid, "labelled");
    assert_int_equal(fx_ready_count(&redis, uid, PID), 2);
}

static void test_mailbox_deleted_while_watched_is_reported(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000c004";
    assert_int_equal(fakeimap_profiles(&srv, "none"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user4", "create", "Work", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user4", "create", "Receipts", NULL, NULL), 0);
    provider(10);
    user(uid, 4, "[\"INBOX\",\"Work\",\"Receipts\"]");
    start_watcher();
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    /* One STATUS round finds Work gone and Receipts' news. */
    assert_int_equal(fakeimap_mailbox(&srv, "user4", "delete", "Work", NULL, NULL), 0);
    append_to("user4", "Receipts", "receipt-1");
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "[\"Work\"]", 25000), 0);
    json_free(wait_event(uid, "receipt-1", 15000));
    append_to("user4", "INBOX", "inbox-1");
    json_free(wait_event(uid, "inbox-1", 15000));
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 1000), 0);

    /* A watcher started afresh reads the field Redis holds: back again, it
     * goes; and a user who now watches INBOX alone never keeps one. */
    harness_proc_signal(&w, SIGTERM); /* drains: the lease is free for the next one */
    assert_int_equal(harness_proc_wait(&w, 10000), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user4", "create", "Work", NULL, NULL), 0);
    start_watcher();
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "", 15000), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user4", "delete", "Work", NULL, NULL), 0);
    assert_int_equal(fx_touch_user(&redis, uid), 0); /* a new connection LISTs at once */
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "[\"Work\"]", 15000), 0);
    assert_int_equal(fx_user_mailboxes(&redis, uid, "[\"INBOX\"]"), 0);
    assert_int_equal(fx_touch_user(&redis, uid), 0);
    assert_int_equal(fx_wait_user_field(&redis, uid, "mailboxes_missing", "", 15000), 0);
}

static void test_faults_lose_and_repeat_nothing(void **state)
{
    (void)state;
    const char *uid = "00000000000000000000c005";
    assert_int_equal(fakeimap_profiles(&srv, "notify,special-use"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, "user5", "create", "Junk", NULL, "\\Junk"), 0);
    provider(10);
    user(uid, 5, "[\"INBOX\",\"\\\\Junk\"]");
    start_watcher();
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    assert_int_equal(fakeimap_faults(&srv, 0.3, 7, "bad,no,bye,drop"), 0);
    char subject[32];
    for (int i = 0; i < 6; i++) {
        snprintf(subject, sizeof subject, "junk-%d", i);
        append_to("user5", "Junk", subject);
        snprintf(subject, sizeof subject, "inbox-%d", i);
        append_to("user5", "INBOX", subject);
    }
    assert_int_equal(fx_wait_ready(&redis, uid, PID, 12, 60000), 0);
    assert_int_equal(fakeimap_faults(&srv, 0, 1, "none"), 0);
    assert_true(fakeimap_stat(&srv, "faults") > 0);
    for (int i = 0; i < 6; i++) {
        snprintf(subject, sizeof subject, "junk-%d", i);
        assert_once(uid, subject);
        snprintf(subject, sizeof subject, "inbox-%d", i);
        assert_once(uid, subject);
    }
    assert_int_equal(fx_ready_count(&redis, uid, PID), 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_other_mailboxes_polled_with_status_without_notify,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_pushes_news_without_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmail_message_under_two_labels_announced_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_deleted_while_watched_is_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_faults_lose_and_repeat_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
