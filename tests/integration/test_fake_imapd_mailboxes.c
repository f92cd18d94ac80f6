/*
 * superimap-fake-imapd beyond INBOX (issue #21), spoken to with a raw IMAP
 * client and checked line by line: folders made, renamed and deleted
 * through the control channel; LIST patterns, STATUS and EXAMINE of any
 * mailbox; each profile (SPECIAL-USE, NOTIFY, CONDSTORE/QRESYNC,
 * X-GM-EXT-1) with what it adds, and none of it without the profile; faults
 * on the new commands and on NOTIFY's pushes; the per-command counters.
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

#include <signal.h>

#include <cmocka.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/imapc.h"

#define WAIT_MS  IMAPC_WAIT_MS
#define QUIET_MS 200 /* a push that should not come: nothing within this */

static struct fakeimap srv;

static const char msg[] = "Subject: m\r\n\r\nbody\r\n";

/* Connects to the first plain listener, logs in as user (password from
 * the user<K> rule) and expects the capabilities caps after login. */
static void login(struct imapc *c, const char *user, const char *caps)
{
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    imapc_open(c, host, port, NULL);
    imapc_expect_prefix(c, "* OK [CAPABILITY IMAP4rev1 ");
    imapc_send(c, "L1 LOGIN %s pass%s\r\n", user, user + 4);
    char want[512];
    snprintf(want, sizeof want,
             "L1 OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT%s] "
             "Logged in",
             caps);
    imapc_expect_line(c, want);
}

/* Sends cmd (tagged t) and reads up to its tagged answer, which must start
 * with want. */
static void run_to_tag(struct imapc *c, const char *t, const char *cmd, const char *want)
{
    imapc_send(c, "%s %s\r\n", t, cmd);
    size_t n = strlen(t);
    const char *l;
    while ((l = imapc_line(c, WAIT_MS)) != NULL && !(strncmp(l, t, n) == 0 && l[n] == ' '))
        ;
    if (l == NULL)
        fail_msg("no tagged answer to %s %s", t, cmd);
    if (strncmp(l + n + 1, want, strlen(want)) != 0)
        fail_msg("%s %s: expected \"%s...\", got \"%s\"", t, cmd, want, l);
}

static void expect_f(struct imapc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void expect_f(struct imapc *c, const char *fmt, ...)
{
    char want[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    imapc_expect_line(c, want);
}

static unsigned uidvalidity(const char *user, const char *mailbox)
{
    long long v = fakeimap_info(&srv, user, mailbox, "uidvalidity");
    assert_true(v > 0);
    return (unsigned)v;
}

/* ---- Fixture ---- */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (fakeimap_prepare(&srv, 0) < 0)
        return -1;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=100", NULL};
    return fakeimap_start(&srv, extra);
}

static int group_teardown(void **state)
{
    (void)state;
    int code = fakeimap_stop(&srv, 0);
    harness_stop_all();
    return code == 0 ? 0 : -1;
}

/* No profile, no fault, counters at zero before each test. */
static int setup(void **state)
{
    (void)state;
    if (fakeimap_profiles(&srv, "none") < 0 || fakeimap_faults(&srv, 0, 1, "none") < 0)
        return -1;
    return fakeimap_reset(&srv);
}

/* ---- Folders without profiles ---- */

static void test_folders_listed_statused_examined_without_profiles(void **state)
{
    (void)state;
    const char *u = "user41";
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Junk", NULL, "\\Junk"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Old Mail", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Old Mail/2020", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Caf\xc3\xa9", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Junk", NULL, NULL), -1); /* taken */
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "inbox", NULL, NULL), -1);
    assert_int_equal(fakeimap_mailbox(&srv, u, "delete", "INBOX", NULL, NULL), -1);
    assert_int_equal(fakeimap_mailbox(&srv, u, "rename", "Nope", "Nope2", NULL), -1);
    uint32_t uid = 0;
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, &uid), 0);
    assert_int_equal(uid, 1);
    assert_int_equal(fakeimap_append_to(&srv, u, "Nope", msg, sizeof msg - 1, &uid), -1);
    assert_int_equal(fakeimap_append(&srv, u, msg, sizeof msg - 1, &uid), 0);
    assert_int_equal(uid, 1);
    char reply[512];
    assert_int_equal(fakeimap_request(&srv, "MAILBOXES user41", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK INBOX Junk:\\Junk Old%20Mail Old%20Mail/2020 Caf\xc3\xa9");

    struct imapc c;
    login(&c, u, ""); /* no profile: the capabilities of before */
    imapc_send(&c, "a1 LIST \"\" \"*\"\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" INBOX");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Junk\""); /* no \Junk: no SPECIAL-USE */
    imapc_expect_line(&c, "* LIST (\\HasChildren) \"/\" \"Old Mail\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Old Mail/2020\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" {5}"); /* 8-bit: a literal */
    imapc_expect_line(&c, "Caf\xc3\xa9");
    imapc_expect_line(&c, "a1 OK LIST completed");
    imapc_send(&c, "a2 LIST \"\" %%\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" INBOX");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Junk\"");
    imapc_expect_line(&c, "* LIST (\\HasChildren) \"/\" \"Old Mail\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" {5}");
    imapc_expect_line(&c, "Caf\xc3\xa9");
    imapc_expect_line(&c, "a2 OK LIST completed");
    imapc_send(&c, "a3 LIST \"Old Mail/\" \"%%\"\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Old Mail/2020\"");
    imapc_expect_line(&c, "a3 OK LIST completed");
    imapc_send(&c, "a4 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
    imapc_expect_line(&c, "a4 BAD Invalid arguments"); /* no LIST-EXTENDED without the profile */

    imapc_send(&c, "s1 STATUS \"Junk\" (MESSAGES UIDNEXT UIDVALIDITY)\r\n");
    expect_f(&c, "* STATUS \"Junk\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %u)", uidvalidity(u, "Junk"));
    imapc_expect_line(&c, "s1 OK STATUS completed");
    imapc_send(&c, "s2 STATUS {4+}\r\nNope (MESSAGES)\r\n");
    imapc_expect_line(&c, "s2 NO [NONEXISTENT] Mailbox doesn't exist");
    imapc_send(&c, "s3 STATUS Junk (HIGHESTMODSEQ)\r\n");
    imapc_expect_line(&c, "s3 BAD Invalid status item");

    imapc_send(&c, "e1 EXAMINE \"Junk\"\r\n");
    imapc_expect_line(&c, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    imapc_expect_line(&c, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    imapc_expect_line(&c, "* 1 EXISTS");
    imapc_expect_line(&c, "* 1 RECENT");
    imapc_expect_line(&c, "* OK [UNSEEN 1] First unseen");
    expect_f(&c, "* OK [UIDVALIDITY %u] UIDs valid", uidvalidity(u, "Junk"));
    imapc_expect_line(&c, "* OK [UIDNEXT 2] Predicted next UID");
    imapc_expect_line(&c, "e1 OK [READ-ONLY] EXAMINE completed"); /* no HIGHESTMODSEQ */
    imapc_send(&c, "f1 UID FETCH 1:* (RFC822.SIZE)\r\n");
    expect_f(&c, "* 1 FETCH (UID 1 RFC822.SIZE %zu)", sizeof msg - 1);
    imapc_expect_line(&c, "f1 OK Fetch completed");
    /* Mail into INBOX is not this session's; mail into Junk is. */
    assert_int_equal(fakeimap_append(&srv, u, msg, sizeof msg - 1, NULL), 0);
    assert_null(imapc_line(&c, QUIET_MS));
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* 2 EXISTS");
    imapc_expect_line(&c, "* 2 RECENT");
    imapc_send(&c, "e2 EXAMINE Nope\r\n");
    imapc_expect_line(&c, "e2 NO [NONEXISTENT] Mailbox doesn't exist");
    imapc_send(&c, "f2 UID FETCH 1:* (UID)\r\n");
    imapc_expect_line(&c, "f2 BAD Command not valid in this state");
    imapc_send(&c, "n1 NOTIFY NONE\r\n");
    imapc_expect_line(&c, "n1 BAD Unknown command");
    imapc_send(&c, "n2 ENABLE QRESYNC\r\n");
    imapc_expect_line(&c, "n2 BAD Unknown command");

    /* A renamed folder lists under its new name, its parent loses its child. */
    assert_int_equal(fakeimap_mailbox(&srv, u, "rename", "Old Mail/2020", "Archive 2020", NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "delete", "Caf\xc3\xa9", NULL, NULL), 0);
    imapc_send(&c, "a5 LIST \"\" *\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" INBOX");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Junk\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Old Mail\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Archive 2020\"");
    imapc_expect_line(&c, "a5 OK LIST completed");
    imapc_close(&c);

    assert_int_equal(fakeimap_stat(&srv, "cmd_list"), 5);
    assert_int_equal(fakeimap_stat(&srv, "cmd_status"), 3);
    assert_int_equal(fakeimap_stat(&srv, "cmd_examine"), 2);
    assert_int_equal(fakeimap_stat(&srv, "cmd_uid_fetch"), 2); /* refused ones too */
    assert_int_equal(fakeimap_stat(&srv, "cmd_notify"), 0);    /* unknown without the profile */
    assert_int_equal(fakeimap_stat(&srv, "cmd_login"), 1);
}

/* ---- SPECIAL-USE ---- */

static void test_special_use_profile_lists_attributes_and_selects_them(void **state)
{
    (void)state;
    const char *u = "user42";
    assert_int_equal(fakeimap_profiles(&srv, "special-use"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Junk", NULL, "\\Junk"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Sent Items", NULL, "\\sent"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Work", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Bad", NULL, "\\Bogus"), -1);
    struct imapc c;
    login(&c, u, " LIST-EXTENDED SPECIAL-USE");
    imapc_send(&c, "a1 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" INBOX");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" \"Work\"");
    imapc_expect_line(&c, "a1 OK LIST completed");
    imapc_send(&c, "a2 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"");
    imapc_expect_line(&c, "a2 OK LIST completed");
    imapc_send(&c, "a3 LIST \"\" Junk\r\n"); /* plain LIST shows them too, as Dovecot does */
    imapc_expect_line(&c, "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"");
    imapc_expect_line(&c, "a3 OK LIST completed");
    imapc_send(&c, "a4 LIST (REMOTE) \"\" \"*\"\r\n");
    imapc_expect_line(&c, "a4 BAD Invalid arguments");
    imapc_send(&c, "a5 LIST \"\" \"*\" RETURN (SPECIAL-USE\r\n");
    imapc_expect_line(&c, "a5 BAD Invalid arguments");
    /* A fault still replaces the new forms of a command. */
    assert_int_equal(fakeimap_faults(&srv, 1, 3, "no"), 0);
    imapc_send(&c, "a6 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
    imapc_expect_line(&c, "a6 NO Fault injected");
    imapc_close(&c);
}

/* ---- NOTIFY ---- */

static void test_notify_pushes_status_and_list_for_watched_mailboxes(void **state)
{
    (void)state;
    const char *u = "user43";
    assert_int_equal(fakeimap_profiles(&srv, "notify"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Junk", NULL, "\\Junk"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Spam", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Other", NULL, NULL), 0);
    unsigned vj = uidvalidity(u, "Junk"), vs = uidvalidity(u, "Spam");
    struct imapc c;
    login(&c, u, " NOTIFY");
    imapc_send(&c, "n1 NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge)) "
                   "(MAILBOXES (\"Junk\" Spam) (MessageNew MessageExpunge MailboxName))\r\n");
    expect_f(&c, "* STATUS \"Junk\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %u)", vj);
    expect_f(&c, "* STATUS \"Spam\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %u)", vs);
    imapc_expect_line(&c, "n1 OK NOTIFY completed");
    run_to_tag(&c, "e1", "EXAMINE INBOX", "OK [READ-ONLY]");
    imapc_send(&c, "i1 IDLE\r\n");
    imapc_expect_line(&c, "+ idling");

    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* STATUS \"Junk\" (MESSAGES 1 UIDNEXT 2)");
    assert_int_equal(fakeimap_append(&srv, u, msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* 1 EXISTS"); /* the selected mailbox: EXISTS as ever */
    imapc_expect_line(&c, "* 1 RECENT");
    /* An unwatched folder says nothing: the next line is Spam's. */
    assert_int_equal(fakeimap_append_to(&srv, u, "Other", msg, sizeof msg - 1, NULL), 0);
    assert_int_equal(fakeimap_append_to(&srv, u, "Spam", msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* STATUS \"Spam\" (MESSAGES 1 UIDNEXT 2)");

    /* Rename and delete of a watched mailbox: LIST responses (RFC 5465 5.4). */
    assert_int_equal(fakeimap_mailbox(&srv, u, "rename", "Junk", "Junk2", NULL), 0);
    imapc_expect_line(&c, "* LIST () \"/\" \"Junk2\" (\"OLDNAME\" (\"Junk\"))");
    assert_int_equal(fakeimap_mailbox(&srv, u, "delete", "Spam", NULL, NULL), 0);
    imapc_expect_line(&c, "* LIST (\\NonExistent) \"/\" \"Spam\"");
    assert_int_equal(fakeimap_mailbox(&srv, u, "delete", "Other", NULL, NULL), 0);
    /* The watch is by name: Junk2 is not watched, a new Junk is. */
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk2", msg, sizeof msg - 1, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Junk", NULL, NULL), 0);
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* STATUS \"Junk\" (MESSAGES 1 UIDNEXT 2)");
    imapc_send(&c, "DONE\r\n");
    imapc_expect_line(&c, "i1 OK IDLE terminated");

    imapc_send(&c, "n2 NOTIFY NONE\r\n");
    imapc_expect_line(&c, "n2 OK NOTIFY completed");
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, NULL), 0);
    assert_null(imapc_line(&c, QUIET_MS));
    imapc_send(&c, "n3 NOTIFY SET (MAILBOXES Junk (MessageNew Bogus))\r\n");
    imapc_expect_line(&c, "n3 NO [BADEVENT (MessageNew MessageExpunge MailboxName)] Unsupported "
                          "event");
    imapc_send(&c, "n4 NOTIFY SET (SUBTREE Junk (MessageNew))\r\n");
    imapc_expect_line(&c, "n4 BAD Invalid arguments");
    imapc_send(&c, "n5 NOTIFY SET (PERSONAL (MessageNew))\r\n"); /* every folder */
    imapc_expect_line(&c, "n5 OK NOTIFY completed");
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk2", msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* STATUS \"Junk2\" (MESSAGES 3 UIDNEXT 4)");
    imapc_close(&c);
    assert_int_equal(fakeimap_stat(&srv, "cmd_notify"), 5);
}

static void test_notify_faults_on_command_and_on_push(void **state)
{
    (void)state;
    const char *u = "user44";
    assert_int_equal(fakeimap_profiles(&srv, "notify"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Junk", NULL, NULL), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Tmp", NULL, NULL), 0);
    struct imapc c, sel;
    login(&c, u, " NOTIFY");
    assert_int_equal(fakeimap_faults(&srv, 1, 7, "bad"), 0);
    imapc_send(&c, "n1 NOTIFY SET (MAILBOXES Junk (MessageNew))\r\n");
    imapc_expect_line(&c, "n1 BAD Fault injected");
    assert_int_equal(fakeimap_faults(&srv, 0, 7, "none"), 0);
    imapc_send(&c, "n2 NOTIFY SET (MAILBOXES Junk (MessageNew))\r\n");
    imapc_expect_line(&c, "n2 OK NOTIFY completed");
    /* A gibberish fault goes before the pushed STATUS. */
    assert_int_equal(fakeimap_faults(&srv, 1, 7, "gibberish"), 0);
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, NULL), 0);
    const char *l = imapc_line(&c, WAIT_MS);
    assert_non_null(l);
    assert_true(l[0] == '*' && strncmp(l, "* STATUS", 8) != 0);
    imapc_expect_line(&c, "* STATUS \"Junk\" (MESSAGES 1 UIDNEXT 2)");
    /* A drop fault at the push closes the connection instead. */
    assert_int_equal(fakeimap_faults(&srv, 1, 7, "drop"), 0);
    assert_int_equal(fakeimap_append_to(&srv, u, "Junk", msg, sizeof msg - 1, NULL), 0);
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
    assert_int_equal(fakeimap_faults(&srv, 0, 7, "none"), 0);

    /* Deleting the selected folder ends the session that has it selected. */
    login(&sel, u, " NOTIFY");
    run_to_tag(&sel, "e1", "EXAMINE Tmp", "OK [READ-ONLY]");
    assert_int_equal(fakeimap_mailbox(&srv, u, "delete", "Tmp", NULL, NULL), 0);
    imapc_expect_line(&sel, "* BYE [UNAVAILABLE] Mailbox deleted");
    assert_true(imapc_eof(&sel, WAIT_MS));
    imapc_close(&sel);
}

/* ---- CONDSTORE and QRESYNC ---- */

static void test_qresync_reports_vanished_and_changes_since_a_modseq(void **state)
{
    (void)state;
    const char *u = "user45";
    assert_int_equal(fakeimap_profiles(&srv, "qresync"), 0);
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Work", NULL, NULL), 0);
    for (int i = 0; i < 3; i++) /* UIDs 1..3, MODSEQ 1..3 */
        assert_int_equal(fakeimap_append_to(&srv, u, "Work", msg, sizeof msg - 1, NULL), 0);
    unsigned v = uidvalidity(u, "Work");
    struct imapc c, d;
    login(&c, u, " ENABLE CONDSTORE QRESYNC");
    imapc_send(&c, "s1 STATUS Work (UIDNEXT HIGHESTMODSEQ)\r\n");
    imapc_expect_line(&c, "* STATUS \"Work\" (UIDNEXT 4 HIGHESTMODSEQ 3)");
    imapc_expect_line(&c, "s1 OK STATUS completed");
    imapc_send(&c, "s2 EXAMINE Work (QRESYNC (%u 1))\r\n", v);
    imapc_expect_line(&c, "s2 BAD Invalid arguments"); /* QRESYNC not enabled yet */
    imapc_send(&c, "s3 ENABLE QRESYNC\r\n");
    imapc_expect_line(&c, "* ENABLED QRESYNC");
    imapc_expect_line(&c, "s3 OK ENABLE completed");
    imapc_send(&c, "s4 EXAMINE Work\r\n");
    imapc_expect_line(&c, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    imapc_expect_line(&c, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    imapc_expect_line(&c, "* 3 EXISTS");
    imapc_expect_line(&c, "* 3 RECENT");
    imapc_expect_line(&c, "* OK [UNSEEN 1] First unseen");
    expect_f(&c, "* OK [UIDVALIDITY %u] UIDs valid", v);
    imapc_expect_line(&c, "* OK [UIDNEXT 4] Predicted next UID");
    imapc_expect_line(&c, "* OK [HIGHESTMODSEQ 3] Highest");
    imapc_expect_line(&c, "s4 OK [READ-ONLY] EXAMINE completed");
    /* An expunge is VANISHED after ENABLE QRESYNC; it takes MODSEQ 4. */
    assert_int_equal(fakeimap_expunge(&srv, u, "Work", 2), 0);
    imapc_expect_line(&c, "* VANISHED 2");
    assert_int_equal(fakeimap_expunge(&srv, u, "Work", 2), -1);
    assert_int_equal(fakeimap_append_to(&srv, u, "Work", msg, sizeof msg - 1, NULL), 0);
    imapc_expect_line(&c, "* 3 EXISTS");
    imapc_expect_line(&c, "* 3 RECENT");
    assert_int_equal(fakeimap_info(&srv, u, "Work", "highestmodseq"), 5);
    imapc_send(&c, "f1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3 VANISHED)\r\n");
    imapc_expect_line(&c, "* VANISHED (EARLIER) 2");
    imapc_expect_line(&c, "* 3 FETCH (UID 4 FLAGS (\\Recent) MODSEQ (5))");
    imapc_expect_line(&c, "f1 OK Fetch completed");
    imapc_send(&c, "f2 UID FETCH 1:* (FLAGS)\r\n"); /* CONDSTORE on: MODSEQ in every FETCH */
    imapc_expect_line(&c, "* 1 FETCH (UID 1 FLAGS (\\Recent) MODSEQ (1))");
    imapc_expect_line(&c, "* 2 FETCH (UID 3 FLAGS (\\Recent) MODSEQ (3))");
    imapc_expect_line(&c, "* 3 FETCH (UID 4 FLAGS (\\Recent) MODSEQ (5))");
    imapc_expect_line(&c, "f2 OK Fetch completed");
    imapc_send(&c, "f3 UID FETCH 3:* (FLAGS) (CHANGEDSINCE 0)\r\n");
    imapc_expect_line(&c, "f3 BAD Invalid fetch items");
    imapc_close(&c);

    /* A reconnecting client resyncs in its SELECT: what vanished and what
     * changed since the MODSEQ it knew, nothing when UIDVALIDITY changed. */
    login(&d, u, " ENABLE CONDSTORE QRESYNC");
    imapc_send(&d, "q1 ENABLE QRESYNC\r\n");
    imapc_expect_line(&d, "* ENABLED QRESYNC");
    imapc_expect_line(&d, "q1 OK ENABLE completed");
    imapc_send(&d, "q2 EXAMINE \"Work\" (QRESYNC (%u 3 1:4))\r\n", v);
    imapc_expect_line(&d, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    imapc_expect_line(&d, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    imapc_expect_line(&d, "* 3 EXISTS");
    imapc_expect_line(&d, "* 3 RECENT");
    imapc_expect_line(&d, "* OK [UNSEEN 1] First unseen");
    expect_f(&d, "* OK [UIDVALIDITY %u] UIDs valid", v);
    imapc_expect_line(&d, "* OK [UIDNEXT 5] Predicted next UID");
    imapc_expect_line(&d, "* OK [HIGHESTMODSEQ 5] Highest");
    imapc_expect_line(&d, "* VANISHED (EARLIER) 2");
    imapc_expect_line(&d, "* 3 FETCH (UID 4 FLAGS (\\Recent) MODSEQ (5))");
    imapc_expect_line(&d, "q2 OK [READ-ONLY] EXAMINE completed");
    imapc_send(&d, "q3 EXAMINE Work (QRESYNC (%u 3))\r\n", v + 1);
    imapc_expect_line(&d, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    imapc_expect_line(&d, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    imapc_expect_line(&d, "* 3 EXISTS");
    imapc_expect_line(&d, "* 3 RECENT");
    imapc_expect_line(&d, "* OK [UNSEEN 1] First unseen");
    expect_f(&d, "* OK [UIDVALIDITY %u] UIDs valid", v);
    imapc_expect_line(&d, "* OK [UIDNEXT 5] Predicted next UID");
    imapc_expect_line(&d, "* OK [HIGHESTMODSEQ 5] Highest");
    imapc_expect_line(&d, "q3 OK [READ-ONLY] EXAMINE completed");
    imapc_close(&d);
    assert_int_equal(fakeimap_stat(&srv, "cmd_enable"), 2);
}

static void test_condstore_alone_and_no_profile(void **state)
{
    (void)state;
    const char *u = "user46";
    assert_int_equal(fakeimap_mailbox(&srv, u, "create", "Work", NULL, NULL), 0);
    assert_int_equal(fakeimap_append_to(&srv, u, "Work", msg, sizeof msg - 1, NULL), 0);
    struct imapc c;
    login(&c, u, "");
    imapc_send(&c, "a1 EXAMINE Work (CONDSTORE)\r\n");
    imapc_expect_line(&c, "a1 BAD Invalid arguments");
    run_to_tag(&c, "a2", "EXAMINE Work", "OK [READ-ONLY]");
    imapc_send(&c, "a3 UID FETCH 1:* (MODSEQ)\r\n");
    imapc_expect_line(&c, "a3 BAD Invalid fetch items");
    imapc_send(&c, "a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)\r\n");
    imapc_expect_line(&c, "a4 BAD Invalid fetch items");
    imapc_close(&c);

    assert_int_equal(fakeimap_profiles(&srv, "condstore"), 0);
    login(&c, u, " ENABLE CONDSTORE");
    imapc_send(&c, "b1 ENABLE QRESYNC CONDSTORE\r\n"); /* QRESYNC is not offered */
    imapc_expect_line(&c, "* ENABLED CONDSTORE");
    imapc_expect_line(&c, "b1 OK ENABLE completed");
    run_to_tag(&c, "b2", "EXAMINE Work (CONDSTORE)", "OK [READ-ONLY]");
    imapc_send(&c, "b3 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n");
    imapc_expect_line(&c, "b3 BAD Invalid fetch items");
    imapc_send(&c, "b4 UID FETCH 1:* (MODSEQ)\r\n");
    imapc_expect_line(&c, "* 1 FETCH (UID 1 MODSEQ (1))");
    imapc_expect_line(&c, "b4 OK Fetch completed");
    imapc_close(&c);
}

/* ---- X-GM-EXT-1 ---- */

static void test_gmail_one_message_under_two_labels_has_one_msgid(void **state)
{
    (void)state;
    const char *u = "user47";
    const char *labels[] = {"INBOX", "Work"};
    uint64_t id = 0, id2 = 0;
    uint32_t uids[2] = {0, 0};
    assert_int_equal(fakeimap_append_labels(&srv, u, labels, 2, msg, sizeof msg - 1, &id, uids), 0);
    assert_true(id > 0);
    assert_int_equal(uids[0], 1);
    assert_int_equal(uids[1], 1);
    const char *twice[] = {"Work", "Work"};
    assert_int_equal(fakeimap_append_labels(&srv, u, twice, 2, msg, sizeof msg - 1, NULL, NULL),
                     -1);
    const char *one[] = {"INBOX"};
    assert_int_equal(fakeimap_append_labels(&srv, u, one, 1, msg, sizeof msg - 1, &id2, NULL), 0);
    assert_true(id2 != id);
    assert_int_equal(fakeimap_append_to(&srv, u, "Work", msg, sizeof msg - 1, NULL), 0);
    struct imapc c;
    login(&c, u, "");
    run_to_tag(&c, "a1", "EXAMINE INBOX", "OK [READ-ONLY]");
    imapc_send(&c, "a2 UID FETCH 1 (X-GM-MSGID)\r\n");
    imapc_expect_line(&c, "a2 BAD Invalid fetch items"); /* not without the profile */
    imapc_close(&c);

    assert_int_equal(fakeimap_profiles(&srv, "x-gm-ext-1"), 0);
    login(&c, u, " X-GM-EXT-1");
    run_to_tag(&c, "b1", "EXAMINE INBOX", "OK [READ-ONLY]");
    imapc_send(&c, "b2 UID FETCH 1:* (X-GM-MSGID X-GM-THRID X-GM-LABELS)\r\n");
    expect_f(&c, "* 1 FETCH (UID 1 X-GM-MSGID %llu X-GM-THRID %llu X-GM-LABELS (\\Inbox \"Work\"))",
             (unsigned long long)id, (unsigned long long)id);
    expect_f(&c, "* 2 FETCH (UID 2 X-GM-MSGID %llu X-GM-THRID %llu X-GM-LABELS (\\Inbox))",
             (unsigned long long)id2, (unsigned long long)id2);
    imapc_expect_line(&c, "b2 OK Fetch completed");
    run_to_tag(&c, "b3", "EXAMINE Work", "OK [READ-ONLY]");
    imapc_send(&c, "b4 FETCH 1:* (X-GM-MSGID X-GM-LABELS)\r\n");
    expect_f(&c, "* 1 FETCH (X-GM-MSGID %llu X-GM-LABELS (\\Inbox \"Work\"))",
             (unsigned long long)id);
    imapc_expect_prefix(&c, "* 2 FETCH (X-GM-MSGID "); /* a plain append: its folder's label */
    assert_non_null(strstr(c.line, " X-GM-LABELS (\"Work\"))"));
    imapc_expect_line(&c, "b4 OK Fetch completed");
    imapc_close(&c);
}

/* ---- Start-up ---- */

static void test_profiles_from_the_environment(void **state)
{
    (void)state;
    struct fakeimap f;
    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    const char *extra[] = {"SUPERIMAP_FAKE_PROFILES=notify,qresync", NULL};
    assert_int_equal(fakeimap_start(&f, extra), 0);
    char reply[256];
    assert_int_equal(fakeimap_request(&f, "PROFILES", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK notify,condstore,qresync");
    assert_int_equal(fakeimap_request(&f, "PROFILES bogus", reply, sizeof reply), 1);
    struct imapc c;
    imapc_open(&c, "127.0.0.1", fakeimap_port(&f, 0, 0, NULL), NULL);
    imapc_expect_line(&c, "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT AUTH=PLAIN "
                          "AUTH=XOAUTH2] superimap-fake-imapd ready"); /* before login: as ever */
    imapc_send(&c, "a1 LOGIN user1 pass1\r\n");
    imapc_expect_line(&c, "a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT ENABLE "
                          "CONDSTORE QRESYNC NOTIFY] Logged in");
    imapc_close(&c);
    assert_int_equal(fakeimap_stop(&f, 0), 0);

    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    const char *bad[] = {"SUPERIMAP_FAKE_PROFILES=notify,imap5", NULL};
    assert_int_equal(fakeimap_start(&f, bad), -1);
    assert_int_equal(harness_proc_wait(&f.proc, WAIT_MS), 0);
    assert_int_equal(f.proc.exit_code, 2);
    assert_true(harness_log_contains(&f.proc, "SUPERIMAP_FAKE_PROFILES"));
    fakeimap_stop(&f, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_folders_listed_statused_examined_without_profiles, setup),
        cmocka_unit_test_setup(test_special_use_profile_lists_attributes_and_selects_them, setup),
        cmocka_unit_test_setup(test_notify_pushes_status_and_list_for_watched_mailboxes, setup),
        cmocka_unit_test_setup(test_notify_faults_on_command_and_on_push, setup),
        cmocka_unit_test_setup(test_qresync_reports_vanished_and_changes_since_a_modseq, setup),
        cmocka_unit_test_setup(test_condstore_alone_and_no_profile, setup),
        cmocka_unit_test_setup(test_gmail_one_message_under_two_labels_has_one_msgid, setup),
        cmocka_unit_test_setup(test_profiles_from_the_environment, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
