/*
 * superimap-fake-imapd spoken to over plain sockets and TLS, transcripts
 * checked line by line (or byte for byte where literals are involved), as
 * curl's tests/data/test800 does: logins, EXAMINE, EXISTS pushed to IDLE
 * sessions, UID FETCH with ENVELOPE, BODY.PEEK[] and its parts, \Seen, STARTTLS and
 * implicit TLS, the session counters, every fault kind at rate 1, UIDVALIDITY
 * changes, kicks, 2,000 idle connections over two addresses, SIGTERM.
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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/imapc.h"

#define WAIT_MS IMAPC_WAIT_MS

/* The server most tests share: plain and implicit TLS on 127.0.0.1 and
 * 127.0.0.2, STARTTLS offered, users user1..user100. */
static struct fakeimap srv;

/* Connects to the shared server's first plain listener and reads the greeting. */
static void client_plain(struct imapc *c)
{
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    imapc_open(c, host, port, NULL);
    imapc_expect_prefix(c, "* OK [CAPABILITY IMAP4rev1 ");
}

static void client_login(struct imapc *c, const char *user, const char *pass)
{
    imapc_send(c, "L1 LOGIN %s %s\r\n", user, pass);
    imapc_expect_prefix(c, "L1 OK [CAPABILITY IMAP4rev1");
}

static void client_examine(struct imapc *c, const char *cmd)
{
    imapc_send(c, "E1 %s INBOX\r\n", cmd);
    const char *l;
    while ((l = imapc_line(c, WAIT_MS)) != NULL && strncmp(l, "E1 ", 3) != 0)
        ;
    assert_non_null(l);
    assert_non_null(strstr(l, "E1 OK ["));
}

/* ---- Fixture ---- */

static int group_setup(void **state)
{
    (void)state;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* the idle-connection test opens 2,000 sockets */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    if (fakeimap_prepare(&srv, 1) < 0)
        return -1;
    const char *extra[] = {"SUPERIMAP_FAKE_ADDRS=127.0.0.1-2", "SUPERIMAP_FAKE_TLS_PORT=0",
                           "SUPERIMAP_FAKE_USERS=100", "SUPERIMAP_FAKE_XOAUTH2_PREFIX=at_", NULL};
    return fakeimap_start(&srv, extra);
}

static int group_teardown(void **state)
{
    (void)state;
    int code = fakeimap_stop(&srv, 0);
    harness_stop_all();
    if (code != 0) {
        fprintf(stderr, "superimap-fake-imapd exited with %d on SIGTERM\n", code);
        return -1;
    }
    return 0;
}

/* Faults off and IDLE offered before each test. */
static int setup(void **state)
{
    (void)state;
    char reply[64];
    if (fakeimap_request(&srv, "CAPS IDLE", reply, sizeof reply) != 0)
        return -1;
    return fakeimap_faults(&srv, 0, 1, "none");
}

/* ---- Logins ---- */

static void test_capability_lists_idle_literal_plus_sasl_ir_starttls(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    imapc_send(&c, "a1 CAPABILITY\r\n");
    imapc_expect_line(&c, "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT STARTTLS "
                          "AUTH=PLAIN AUTH=XOAUTH2");
    imapc_expect_line(&c, "a1 OK CAPABILITY completed");
    imapc_send(&c, "a2 NOOP\r\n");
    imapc_expect_line(&c, "a2 OK NOOP completed");
    imapc_send(&c, "a3 FROBNICATE\r\n");
    imapc_expect_line(&c, "a3 BAD Unknown command");
    imapc_send(&c, "a4 EXAMINE INBOX\r\n");
    imapc_expect_line(&c, "a4 BAD Command not valid in this state");
    imapc_send(&c, "a5 LOGOUT\r\n");
    imapc_expect_line(&c, "* BYE superimap-fake-imapd logging out");
    imapc_expect_line(&c, "a5 OK LOGOUT completed");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
}

static void test_caps_noidle_hides_idle_and_refuses_it(void **state)
{
    (void)state;
    char reply[64];
    assert_int_equal(fakeimap_request(&srv, "CAPS", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK idle");
    assert_int_equal(fakeimap_request(&srv, "CAPS NOIDLE", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK noidle");
    assert_int_equal(fakeimap_request(&srv, "CAPS SOMETIMES", reply, sizeof reply), 1);
    assert_int_equal(fakeimap_reset(&srv), 0);
    struct imapc c;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    imapc_open(&c, host, port, NULL);
    imapc_expect_line(&c,
                      "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID UNSELECT STARTTLS AUTH=PLAIN "
                      "AUTH=XOAUTH2] superimap-fake-imapd ready");
    imapc_send(&c, "a1 LOGIN user2 pass2\r\n");
    imapc_expect_line(&c, "a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID UNSELECT] Logged in");
    client_examine(&c, "EXAMINE");
    imapc_send(&c, "a2 IDLE\r\n");
    imapc_expect_line(&c, "a2 BAD IDLE not supported");
    imapc_send(&c, "a3 NOOP\r\n");
    imapc_expect_line(&c, "a3 OK NOOP completed");
    assert_int_equal(fakeimap_stat(&srv, "idles"), 1);
    assert_int_equal(fakeimap_stat(&srv, "noops"), 1);
    assert_true(fakeimap_stat(&srv, "max_sessions") >= 1);
    assert_int_equal(fakeimap_request(&srv, "CAPS IDLE", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK idle");
    imapc_send(&c, "a4 CAPABILITY\r\n");
    imapc_expect_line(&c, "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT");
    imapc_expect_line(&c, "a4 OK CAPABILITY completed");
    imapc_send(&c, "a5 IDLE\r\n");
    imapc_expect_line(&c, "+ idling");
    imapc_close(&c);
}

static void test_login_accepts_atoms_quoted_strings_and_literals(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    imapc_send(&c, "a1 LOGIN user1 pass1\r\n");
    imapc_expect_line(&c,
                      "a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT] Logged in");
    imapc_close(&c);

    client_plain(&c);
    imapc_send(&c, "a1 LOGIN \"user2\" \"pass2\"\r\n");
    imapc_expect_prefix(&c, "a1 OK ");
    imapc_close(&c);

    /* A synchronizing literal waits for "+", a LITERAL+ one does not. */
    client_plain(&c);
    imapc_send(&c, "a1 LOGIN {5}\r\n");
    imapc_expect_line(&c, "+ Ready for literal data");
    imapc_send(&c, "user3 {5+}\r\npass3\r\n");
    imapc_expect_prefix(&c, "a1 OK ");
    imapc_close(&c);

    /* A password with a quote and a backslash: escapes in a quoted string. */
    char reply[256];
    assert_int_equal(fakeimap_request(&srv, "USER quoter pa\"s\\s", reply, sizeof reply), 0);
    client_plain(&c);
    imapc_send(&c, "a1 LOGIN quoter \"pa\\\"s\\\\s\"\r\n");
    imapc_expect_prefix(&c, "a1 OK ");
    imapc_close(&c);
}

static void test_commands_split_byte_by_byte_or_pipelined_give_same_answers(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    /* Every byte its own segment: the framing must resume anywhere, a
     * literal's count and data included. */
    static const char login[] = "b1 LOGIN {5}\r\nuser2 \"pass2\"\r\n";
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (size_t i = 0; i < sizeof login - 1; i++) {
        assert_int_equal(send(c.fd, login + i, 1, MSG_NOSIGNAL), 1);
        if (login[i] == '\n' && i < 16)
            imapc_expect_line(&c, "+ Ready for literal data");
    }
    imapc_expect_prefix(&c, "b1 OK [CAPABILITY ");
    /* Three commands in one segment, answered in order. */
    imapc_send(&c, "p1 NOOP\r\np2 EXAMINE INBOX\r\np3 LOGOUT\r\n");
    imapc_expect_line(&c, "p1 OK NOOP completed");
    const char *l;
    while ((l = imapc_line(&c, WAIT_MS)) != NULL && strncmp(l, "p2 ", 3) != 0)
        assert_int_equal(l[0], '*');
    assert_non_null(l);
    imapc_expect_line(&c, "* BYE superimap-fake-imapd logging out");
    imapc_expect_line(&c, "p3 OK LOGOUT completed");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
}

static void test_login_refuses_wrong_password_and_unknown_user(void **state)
{
    (void)state;
    long long failures = fakeimap_stat(&srv, "login_failures");
    struct imapc c;
    client_plain(&c);
    imapc_send(&c, "a1 LOGIN user1 wrong\r\n");
    imapc_expect_line(&c, "a1 NO [AUTHENTICATIONFAILED] Authentication failed.");
    imapc_send(&c, "a2 LOGIN user101 pass101\r\n"); /* past SUPERIMAP_FAKE_USERS */
    imapc_expect_line(&c, "a2 NO [AUTHENTICATIONFAILED] Authentication failed.");
    imapc_send(&c, "a3 LOGIN user1\r\n");
    imapc_expect_line(&c, "a3 BAD Invalid arguments");
    imapc_send(&c, "a4 LOGIN user1 pass1\r\n");
    imapc_expect_prefix(&c, "a4 OK ");
    imapc_close(&c);
    assert_int_equal(fakeimap_stat(&srv, "login_failures"), failures + 2);
}

static void test_authenticate_plain_with_sasl_ir_and_continuation(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    /* base64("\0user4\0pass4") */
    imapc_send(&c, "a1 AUTHENTICATE PLAIN AHVzZXI0AHBhc3M0\r\n");
    imapc_expect_prefix(&c, "a1 OK [CAPABILITY IMAP4rev1");
    imapc_close(&c);

    client_plain(&c);
    imapc_send(&c, "a1 AUTHENTICATE PLAIN\r\n");
    imapc_expect_line(&c, "+ ");
    imapc_send(&c, "AHVzZXI0AHBhc3M0\r\n");
    imapc_expect_prefix(&c, "a1 OK ");
    imapc_close(&c);

    client_plain(&c);
    imapc_send(&c, "a1 AUTHENTICATE PLAIN\r\n");
    imapc_expect_line(&c, "+ ");
    imapc_send(&c, "*\r\n");
    imapc_expect_line(&c, "a1 BAD Authentication canceled");
    /* base64("\0user4\0nope") */
    imapc_send(&c, "a2 AUTHENTICATE PLAIN AHVzZXI0AG5vcGU=\r\n");
    imapc_expect_line(&c, "a2 NO [AUTHENTICATIONFAILED] Authentication failed.");
    imapc_close(&c);
}

static void test_authenticate_xoauth2_accepts_token_of_user(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    /* base64("user=user5\1auth=Bearer token-user5\1\1") */
    imapc_send(&c, "a1 AUTHENTICATE XOAUTH2 "
                   "dXNlcj11c2VyNQFhdXRoPUJlYXJlciB0b2tlbi11c2VyNQEB\r\n");
    imapc_expect_prefix(&c, "a1 OK [CAPABILITY IMAP4rev1");
    imapc_close(&c);

    /* With SUPERIMAP_FAKE_XOAUTH2_PREFIX=at_, a provider's access token too. */
    client_plain(&c);
    /* base64("user=user5\1auth=Bearer at_from_the_provider\1\1") */
    imapc_send(&c, "a1 AUTHENTICATE XOAUTH2 "
                   "dXNlcj11c2VyNQFhdXRoPUJlYXJlciBhdF9mcm9tX3RoZV9wcm92aWRlcgEB\r\n");
    imapc_expect_prefix(&c, "a1 OK [CAPABILITY IMAP4rev1");
    imapc_close(&c);

    /* A wrong token: Google's error challenge, an empty answer, then NO. */
    client_plain(&c);
    /* base64("user=user5\1auth=Bearer token-user6\1\1") */
    imapc_send(&c, "a1 AUTHENTICATE XOAUTH2 "
                   "dXNlcj11c2VyNQFhdXRoPUJlYXJlciB0b2tlbi11c2VyNgEB\r\n");
    imapc_expect_line(&c,
                      "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21h"
                      "aWwuZ29vZ2xlLmNvbS8ifQ==");
    imapc_send(&c, "\r\n");
    imapc_expect_line(&c, "a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)");
    imapc_close(&c);
}

/* ---- Mailbox ---- */

static void test_examine_reports_counts_uidvalidity_uidnext_read_only(void **state)
{
    (void)state;
    static const char m[] = "Subject: x\r\n\r\nbody\r\n";
    uint32_t uid = 0;
    assert_int_equal(fakeimap_append(&srv, "user6", m, sizeof m - 1, &uid), 0);
    assert_int_equal(uid, 1);
    assert_int_equal(fakeimap_append(&srv, "user6", m, sizeof m - 1, &uid), 0);
    assert_int_equal(uid, 2);
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user6", "pass6");
    imapc_send(&c, "a1 EXAMINE INBOX\r\n");
    imapc_expect_line(&c, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    imapc_expect_line(&c, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    imapc_expect_line(&c, "* 2 EXISTS");
    imapc_expect_line(&c, "* 2 RECENT");
    imapc_expect_line(&c, "* OK [UNSEEN 1] First unseen");
    imapc_expect_line(&c, "* OK [UIDVALIDITY 1] UIDs valid");
    imapc_expect_line(&c, "* OK [UIDNEXT 3] Predicted next UID");
    imapc_expect_line(&c, "a1 OK [READ-ONLY] EXAMINE completed");
    imapc_send(&c, "a2 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)\r\n");
    imapc_expect_line(&c, "* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 1 UNSEEN 2)");
    imapc_expect_line(&c, "a2 OK STATUS completed");
    imapc_send(&c, "a3 EXAMINE Drafts\r\n");
    imapc_expect_line(&c, "a3 NO [NONEXISTENT] Mailbox doesn't exist");
    imapc_send(&c, "a4 LIST \"\" *\r\n");
    imapc_expect_line(&c, "* LIST (\\HasNoChildren) \"/\" INBOX");
    imapc_expect_line(&c, "a4 OK LIST completed");
    imapc_close(&c);
}

static void test_append_pushes_exists_to_idle_and_selected_sessions(void **state)
{
    (void)state;
    struct imapc idle, sel, other;
    client_plain(&idle);
    client_login(&idle, "user7", "pass7");
    client_examine(&idle, "EXAMINE");
    imapc_send(&idle, "i1 IDLE\r\n");
    imapc_expect_line(&idle, "+ idling");
    client_plain(&sel);
    client_login(&sel, "user7", "pass7");
    client_examine(&sel, "SELECT");
    client_plain(&other);
    client_login(&other, "user8", "pass8");
    client_examine(&other, "EXAMINE");

    static const char m[] = "Subject: new\r\n\r\nhello\r\n";
    assert_int_equal(fakeimap_append(&srv, "user7", m, sizeof m - 1, NULL), 0);
    imapc_expect_line(&idle, "* 1 EXISTS");
    imapc_expect_line(&idle, "* 1 RECENT");
    imapc_expect_line(&sel, "* 1 EXISTS");
    imapc_expect_line(&sel, "* 1 RECENT");
    assert_null(imapc_line(&other, 200)); /* another user's session hears nothing */

    imapc_send(&idle, "DONE\r\n");
    imapc_expect_line(&idle, "i1 OK IDLE terminated");
    imapc_send(&idle, "i2 IDLE\r\n");
    imapc_expect_line(&idle, "+ idling");
    imapc_send(&idle, "NOPE\r\n");
    imapc_expect_line(&idle, "i2 BAD Expected DONE");
    imapc_close(&idle);
    imapc_close(&sel);
    imapc_close(&other);
}

/* A message with quotes, a group, an 8-bit subject, NUL and 8-bit bytes. */
static const char msg_hard[] = "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
                               "From: \"Fred Foobar\" <foobar@Blurdybloop.example>\r\n"
                               "Subject: Caf\xe9 \"au lait\"\r\n"
                               "To: mooch@owatagu.example, Team: a@b.example, c@d.example;\r\n"
                               "Cc: =?ISO-8859-1?Q?Andr=E9?= <andre@example.org>,\r\n"
                               " bare@example.net (Bare Name)\r\n"
                               "Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
                               "In-Reply-To: <parent@example>\r\n"
                               "\r\n"
                               "binary: \0\x01\xff\xfe end\r\n";

static void test_uid_fetch_envelope_and_body_peek_are_byte_exact(void **state)
{
    (void)state;
    size_t n = sizeof msg_hard - 1;
    uint32_t uid;
    assert_int_equal(fakeimap_append(&srv, "user9", msg_hard, n, &uid), 0);
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user9", "pass9");
    client_examine(&c, "EXAMINE");
    imapc_send(&c, "f1 UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])\r\n");
    char want[4096];
    int len = snprintf(
        want, sizeof want,
        "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE %zu ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 "
        "-0800\" {14}\r\nCaf\xe9 \"au lait\" ((\"Fred Foobar\" NIL \"foobar\" "
        "\"Blurdybloop.example\")) ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
        "((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) ((NIL NIL \"mooch\" "
        "\"owatagu.example\")(NIL NIL \"Team\" NIL)(NIL NIL \"a\" \"b.example\")(NIL NIL \"c\" "
        "\"d.example\")(NIL NIL NIL NIL)) ((\"=?ISO-8859-1?Q?Andr=E9?=\" NIL \"andre\" "
        "\"example.org\")(\"Bare Name\" NIL \"bare\" \"example.net\")) NIL \"<parent@example>\" "
        "\"<B27397-0100000@Blurdybloop.example>\") BODY[] {%zu}\r\n",
        n, n);
    imapc_expect_bytes(&c, want, (size_t)len);
    imapc_expect_bytes(&c, msg_hard, n);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "f1 OK Fetch completed");

    /* The stored bytes are what was appended, and PEEK set no \Seen. */
    char *data;
    size_t dlen;
    assert_int_equal(fakeimap_message(&srv, "user9", uid, &data, &dlen), 0);
    assert_int_equal(dlen, n);
    assert_memory_equal(data, msg_hard, n);
    free(data);
    assert_int_equal(fakeimap_is_seen(&srv, "user9", uid), 0);
    imapc_close(&c);
}

static void test_body_without_peek_sets_seen_only_when_selected(void **state)
{
    (void)state;
    static const char m[] = "Subject: s\r\n\r\nx\r\n";
    uint32_t uid;
    assert_int_equal(fakeimap_append(&srv, "user10", m, sizeof m - 1, &uid), 0);
    long long seen0 = fakeimap_stat(&srv, "seen_sets");
    long long nonpeek0 = fakeimap_stat(&srv, "nonpeek");
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user10", "pass10");
    client_examine(&c, "EXAMINE"); /* read-only: BODY[] must not set \Seen */
    imapc_send(&c, "f1 UID FETCH %u (BODY[])\r\n", (unsigned)uid);
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[] {17}");
    imapc_expect_bytes(&c, m, sizeof m - 1);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "f1 OK Fetch completed");
    assert_int_equal(fakeimap_is_seen(&srv, "user10", uid), 0);
    assert_int_equal(fakeimap_stat(&srv, "nonpeek"), nonpeek0 + 1);

    client_examine(&c, "SELECT");
    imapc_send(&c, "f2 UID FETCH %u (BODY.PEEK[HEADER])\r\n", (unsigned)uid);
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[HEADER] {14}");
    imapc_expect_bytes(&c, "Subject: s\r\n\r\n", 14);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "f2 OK Fetch completed");
    assert_int_equal(fakeimap_is_seen(&srv, "user10", uid), 0);
    imapc_send(&c, "f3 UID FETCH %u (BODY[TEXT])\r\n", (unsigned)uid);
    imapc_expect_line(&c, "* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[TEXT] {3}");
    imapc_expect_bytes(&c, "x\r\n", 3);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "f3 OK Fetch completed");
    assert_int_equal(fakeimap_is_seen(&srv, "user10", uid), 1);
    assert_int_equal(fakeimap_stat(&srv, "seen_sets"), seen0 + 1);
    imapc_close(&c);
}

/* RFC 3501 6.4.5 partial fetches: BODY.PEEK[]<offset.length> answers
 * BODY[]<offset> with at most length bytes from offset, shorter at the end,
 * empty past it; BODY[]<...> too. Each part counts as a body sent. */
static void test_partial_body_fetches_give_parts_from_the_offset(void **state)
{
    (void)state;
    static const char m[] = "Subject: p\r\n\r\n0123456789\r\n";
    uint32_t uid;
    assert_int_equal(fakeimap_append(&srv, "user21", m, sizeof m - 1, &uid), 0);
    long long bodies0 = fakeimap_stat(&srv, "bodies");
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user21", "pass21");
    client_examine(&c, "EXAMINE");
    imapc_send(&c, "p1 UID FETCH %u BODY.PEEK[]<0.10>\r\n", (unsigned)uid);
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[]<0> {10}");
    imapc_expect_bytes(&c, m, 10);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "p1 OK Fetch completed");
    imapc_send(&c, "p2 UID FETCH %u (UID BODY.PEEK[]<20.10>)\r\n", (unsigned)uid);
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[]<20> {6}");
    imapc_expect_bytes(&c, m + 20, 6);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "p2 OK Fetch completed");
    imapc_send(&c, "p3 UID FETCH %u body[]<26.10>\r\n", (unsigned)uid);
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[]<26> {0}");
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "p3 OK Fetch completed");
    imapc_send(&c, "p4 UID FETCH %u BODY.PEEK[]<1.0>\r\n", (unsigned)uid);
    imapc_expect_line(&c, "p4 BAD Invalid fetch items");
    assert_int_equal(fakeimap_stat(&srv, "bodies"), bodies0 + 3);
    assert_int_equal(fakeimap_is_seen(&srv, "user21", uid), 0);
    imapc_close(&c);
}

static void test_uid_fetch_ranges_star_and_sequence_numbers(void **state)
{
    (void)state;
    static const char m[] = "Subject: r\r\n\r\n";
    for (int i = 0; i < 3; i++)
        assert_int_equal(fakeimap_append(&srv, "user11", m, sizeof m - 1, NULL), 0);
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user11", "pass11");
    client_examine(&c, "EXAMINE");
    /* Past the last UID, "n:*" still names the last message (RFC 3501 6.4.8). */
    imapc_send(&c, "f1 UID FETCH 9:* (UID)\r\n");
    imapc_expect_line(&c, "* 3 FETCH (UID 3)");
    imapc_expect_line(&c, "f1 OK Fetch completed");
    imapc_send(&c, "f2 UID FETCH 3,1:1,2 RFC822.SIZE\r\n");
    imapc_expect_line(&c, "* 1 FETCH (UID 1 RFC822.SIZE 14)");
    imapc_expect_line(&c, "* 2 FETCH (UID 2 RFC822.SIZE 14)");
    imapc_expect_line(&c, "* 3 FETCH (UID 3 RFC822.SIZE 14)");
    imapc_expect_line(&c, "f2 OK Fetch completed");
    imapc_send(&c, "f3 FETCH 2 (FLAGS)\r\n");
    imapc_expect_line(&c, "* 2 FETCH (FLAGS (\\Recent))");
    imapc_expect_line(&c, "f3 OK Fetch completed");
    imapc_send(&c, "f4 UID FETCH 1 (INTERNALDATE)\r\n");
    const char *l = imapc_line(&c, WAIT_MS);
    assert_non_null(l);
    int day, year, hh, mm, ss;
    char mon[4];
    assert_int_equal(sscanf(l, "* 1 FETCH (UID 1 INTERNALDATE \"%2d-%3s-%4d %2d:%2d:%2d +0000\")",
                            &day, mon, &year, &hh, &mm, &ss),
                     6);
    imapc_expect_line(&c, "f4 OK Fetch completed");
    imapc_send(&c, "f5 UID FETCH 1 (BODYSTRUCTURE)\r\n");
    imapc_expect_line(&c, "f5 BAD Invalid fetch items");
    imapc_send(&c, "f6 FETCH 7 (UID)\r\n");
    imapc_expect_line(&c, "f6 BAD Invalid message set");
    imapc_close(&c);
    assert_true(fakeimap_stat(&srv, "fetches") >= 4);
}

/* ---- TLS ---- */

static void test_starttls_then_login_over_tls(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    imapc_send(&c, "t1 STARTTLS\r\n");
    imapc_expect_line(&c, "t1 OK Begin TLS negotiation now");
    imapc_handshake(&c, srv.cert);
    imapc_send(&c, "t2 CAPABILITY\r\n");
    imapc_expect_line(&c, "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT AUTH=PLAIN "
                          "AUTH=XOAUTH2");
    imapc_expect_line(&c, "t2 OK CAPABILITY completed");
    imapc_send(&c, "t3 STARTTLS\r\n");
    imapc_expect_line(&c, "t3 BAD STARTTLS not available");
    client_login(&c, "user12", "pass12");
    client_examine(&c, "EXAMINE");
    imapc_close(&c);
}

static void test_implicit_tls_greets_and_fetches(void **state)
{
    (void)state;
    const char *host;
    int port = fakeimap_port(&srv, 1, 1, &host); /* on 127.0.0.2 */
    assert_true(port > 0);
    assert_string_equal(host, "127.0.0.2");
    static const char m[] = "Subject: tls\r\n\r\nover tls\r\n";
    assert_int_equal(fakeimap_append(&srv, "user13", m, sizeof m - 1, NULL), 0);
    struct imapc c;
    imapc_open(&c, host, port, srv.cert);
    imapc_expect_line(&c, "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT AUTH=PLAIN "
                          "AUTH=XOAUTH2] superimap-fake-imapd ready");
    client_login(&c, "user13", "pass13");
    client_examine(&c, "EXAMINE");
    imapc_send(&c, "f1 UID FETCH 1 BODY.PEEK[]\r\n");
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[] {26}");
    imapc_expect_bytes(&c, m, sizeof m - 1);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "f1 OK Fetch completed");
    imapc_send(&c, "i1 IDLE\r\n");
    imapc_expect_line(&c, "+ idling");
    assert_int_equal(fakeimap_append(&srv, "user13", m, sizeof m - 1, NULL), 0);
    imapc_expect_line(&c, "* 2 EXISTS");
    imapc_close(&c);
}

static void test_require_tls_disables_login_until_starttls(void **state)
{
    (void)state;
    struct fakeimap f;
    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    snprintf(f.cert, sizeof f.cert, "%s", srv.cert); /* reuse the shared certificate */
    snprintf(f.key, sizeof f.key, "%s", srv.key);
    const char *extra[] = {"SUPERIMAP_FAKE_REQUIRE_TLS=1", NULL};
    assert_int_equal(fakeimap_start(&f, extra), 0);
    struct imapc c;
    imapc_open(&c, "127.0.0.1", fakeimap_port(&f, 0, 0, NULL), NULL);
    imapc_expect_line(&c, "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT STARTTLS "
                          "LOGINDISABLED AUTH=PLAIN AUTH=XOAUTH2] superimap-fake-imapd ready");
    imapc_send(&c, "a1 LOGIN user1 pass1\r\n");
    imapc_expect_line(&c, "a1 NO [PRIVACYREQUIRED] Use STARTTLS first.");
    imapc_send(&c, "a2 STARTTLS\r\n");
    imapc_expect_line(&c, "a2 OK Begin TLS negotiation now");
    imapc_handshake(&c, srv.cert);
    imapc_send(&c, "a3 LOGIN user1 pass1\r\n");
    imapc_expect_prefix(&c, "a3 OK ");
    imapc_close(&c);
    assert_int_equal(fakeimap_stop(&f, 0), 0);
}

/* ---- Counters ---- */

static void test_sessions_counter_tracks_current_and_max_per_user(void **state)
{
    (void)state;
    struct imapc c[3];
    for (int i = 0; i < 3; i++) {
        client_plain(&c[i]);
        client_login(&c[i], "user14", "pass14");
    }
    int cur, max;
    assert_int_equal(fakeimap_sessions(&srv, "user14", &cur, &max), 0);
    assert_int_equal(cur, 3);
    assert_int_equal(max, 3);
    assert_true(fakeimap_stat(&srv, "max_sessions_per_user") >= 3);
    imapc_close(&c[0]);
    long long deadline = harness_now_ms() + WAIT_MS;
    do {
        assert_int_equal(fakeimap_sessions(&srv, "user14", &cur, &max), 0);
    } while (cur != 2 && harness_now_ms() < deadline && (harness_poll_pause(), 1));
    assert_int_equal(cur, 2);
    assert_int_equal(max, 3);
    assert_int_equal(fakeimap_kick(&srv, "user14"), 2);
    imapc_expect_line(&c[1], "* BYE [UNAVAILABLE] Kicked");
    assert_true(imapc_eof(&c[1], WAIT_MS));
    assert_true(imapc_eof(&c[2], WAIT_MS));
    imapc_close(&c[1]);
    imapc_close(&c[2]);
    assert_int_equal(fakeimap_sessions(&srv, "user14", &cur, &max), 0);
    assert_int_equal(cur, 0);
    assert_int_equal(fakeimap_reset(&srv), 0);
    assert_int_equal(fakeimap_sessions(&srv, "user14", &cur, &max), 0);
    assert_int_equal(max, 0);
    assert_int_equal(fakeimap_stat(&srv, "logins"), 0);
}

static void test_max_sessions_per_user_answers_limit(void **state)
{
    (void)state;
    struct fakeimap f;
    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    const char *extra[] = {"SUPERIMAP_FAKE_MAX_SESSIONS_PER_USER=2", NULL};
    assert_int_equal(fakeimap_start(&f, extra), 0);
    /* One login at a time: sent together, the server may read the third
     * before the second (it did, under ASan beside other work). */
    struct imapc c[3];
    for (int i = 0; i < 3; i++) {
        imapc_open(&c[i], "127.0.0.1", fakeimap_port(&f, 0, 0, NULL), NULL);
        imapc_expect_prefix(&c[i], "* OK ");
        imapc_send(&c[i], "a1 LOGIN user1 pass1\r\n");
        if (i < 2)
            imapc_expect_prefix(&c[i], "a1 OK ");
    }
    imapc_expect_line(&c[2], "a1 NO [LIMIT] Too many simultaneous connections.");
    for (int i = 0; i < 3; i++)
        imapc_close(&c[i]);
    assert_int_equal(fakeimap_stop(&f, 0), 0);
}

/* ---- UIDVALIDITY ---- */

static void test_uidvalidity_change_renumbers_and_closes_selected_sessions(void **state)
{
    (void)state;
    static const char m[] = "Subject: u\r\n\r\n";
    for (int i = 0; i < 2; i++)
        assert_int_equal(fakeimap_append(&srv, "user15", m, sizeof m - 1, NULL), 0);
    struct imapc c, d;
    client_plain(&c);
    client_login(&c, "user15", "pass15");
    client_examine(&c, "EXAMINE");
    client_plain(&d); /* logged in, nothing selected: unaffected */
    client_login(&d, "user15", "pass15");
    assert_int_equal(fakeimap_set_uidvalidity(&srv, "user15", 77), 0);
    imapc_expect_line(&c, "* BYE [UNAVAILABLE] UIDVALIDITY changed");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
    imapc_send(&d, "e1 EXAMINE INBOX\r\n");
    imapc_expect_line(&d, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    imapc_expect_line(&d, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    imapc_expect_line(&d, "* 2 EXISTS");
    imapc_expect_line(&d, "* 2 RECENT");
    imapc_expect_line(&d, "* OK [UNSEEN 1] First unseen");
    imapc_expect_line(&d, "* OK [UIDVALIDITY 77] UIDs valid");
    imapc_expect_line(&d, "* OK [UIDNEXT 5] Predicted next UID");
    imapc_expect_line(&d, "e1 OK [READ-ONLY] EXAMINE completed");
    imapc_send(&d, "f1 UID FETCH 1:* (UID)\r\n");
    imapc_expect_line(&d, "* 1 FETCH (UID 3)");
    imapc_expect_line(&d, "* 2 FETCH (UID 4)");
    imapc_expect_line(&d, "f1 OK Fetch completed");
    imapc_close(&d);
    char reply[128];
    assert_int_equal(fakeimap_request(&srv, "UIDVALIDITY nobody 5", reply, sizeof reply), 1);
}

/* ---- Faults ---- */

static void test_fault_bad_no_gibberish_answer_commands(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "bad"), 0);
    imapc_send(&c, "a1 NOOP\r\n");
    imapc_expect_line(&c, "a1 BAD Fault injected");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "no"), 0);
    imapc_send(&c, "a2 NOOP\r\n");
    imapc_expect_line(&c, "a2 NO Fault injected");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "gibberish"), 0);
    imapc_send(&c, "a3 NOOP\r\n");
    const char *l = imapc_line(&c, WAIT_MS);
    assert_non_null(l);
    assert_true(strncmp(l, "* ", 2) == 0 && strstr(l, "NOOP") == NULL);
    imapc_expect_line(&c, "a3 OK NOOP completed");
    imapc_close(&c);
    char reply[512];
    assert_int_equal(fakeimap_request(&srv, "FAULTS", reply, sizeof reply), 0);
    assert_non_null(strstr(reply, " bad=1 no=1 gibberish="));
}

static void test_fault_bye_drop_halfopen_at_connect(void **state)
{
    (void)state;
    struct imapc c;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "bye"), 0);
    imapc_open(&c, host, port, NULL);
    imapc_expect_line(&c, "* BYE [UNAVAILABLE] Fault injected");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);

    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "drop"), 0);
    imapc_open(&c, host, port, NULL);
    assert_true(imapc_eof(&c, WAIT_MS));
    assert_int_equal(c.len, 0); /* not a byte */
    imapc_close(&c);

    long long sessions = fakeimap_stat(&srv, "sessions");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "halfopen"), 0);
    imapc_open(&c, host, port, NULL);
    assert_int_equal(fakeimap_wait_stat(&srv, "sessions", sessions + 1, WAIT_MS), 0);
    assert_int_equal(fakeimap_faults(&srv, 0, 1, "none"), 0);
    imapc_send(&c, "a1 NOOP\r\n");
    assert_null(imapc_line(&c, 300)); /* open, silent */
    assert_int_equal(c.len, 0);
    imapc_close(&c);
}

static void test_fault_halfopen_and_bye_mid_session(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user16", "pass16");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "halfopen"), 0);
    imapc_send(&c, "a1 NOOP\r\n");
    assert_null(imapc_line(&c, 300));
    assert_false(imapc_eof(&c, 10));
    imapc_close(&c);

    assert_int_equal(fakeimap_faults(&srv, 0, 1, "none"), 0);
    client_plain(&c);
    client_login(&c, "user16", "pass16");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "bye"), 0);
    imapc_send(&c, "a1 NOOP\r\n");
    imapc_expect_line(&c, "* BYE [UNAVAILABLE] Fault injected");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
}

static void test_fault_noinbox_and_uidshift_on_examine(void **state)
{
    (void)state;
    static const char m[] = "Subject: f\r\n\r\n";
    for (int i = 0; i < 2; i++)
        assert_int_equal(fakeimap_append(&srv, "user17", m, sizeof m - 1, NULL), 0);
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user17", "pass17");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "noinbox"), 0);
    imapc_send(&c, "e1 EXAMINE INBOX\r\n");
    imapc_expect_line(&c, "e1 NO [NONEXISTENT] Mailbox doesn't exist");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "uidshift"), 0);
    imapc_send(&c, "e2 EXAMINE INBOX\r\n");
    const char *l;
    int saw = 0;
    while ((l = imapc_line(&c, WAIT_MS)) != NULL && strncmp(l, "e2 ", 3) != 0) {
        saw += strcmp(l, "* OK [UIDVALIDITY 2] UIDs valid") == 0;
        saw += strcmp(l, "* OK [UIDNEXT 5] Predicted next UID") == 0;
    }
    assert_int_equal(saw, 2);
    assert_int_equal(fakeimap_faults(&srv, 0, 1, "none"), 0);
    imapc_send(&c, "f1 UID FETCH 1:* (UID)\r\n");
    imapc_expect_line(&c, "* 1 FETCH (UID 3)");
    imapc_expect_line(&c, "* 2 FETCH (UID 4)");
    imapc_expect_line(&c, "f1 OK Fetch completed");
    imapc_close(&c);
}

static void test_fault_trickle_sends_body_in_small_pieces(void **state)
{
    (void)state;
    char m[400];
    memset(m, 'x', sizeof m);
    memcpy(m, "Subject: t\r\n\r\n", 14);
    memcpy(m + sizeof m - 2, "\r\n", 2);
    assert_int_equal(fakeimap_append(&srv, "user18", m, sizeof m, NULL), 0);
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user18", "pass18");
    client_examine(&c, "EXAMINE");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "trickle"), 0);
    c.reads = 0;
    imapc_send(&c, "f1 UID FETCH 1 BODY.PEEK[]\r\n");
    imapc_expect_line(&c, "* 1 FETCH (UID 1 BODY[] {400}");
    imapc_expect_bytes(&c, m, sizeof m);
    imapc_expect_line(&c, ")");
    imapc_expect_line(&c, "f1 OK Fetch completed");
    if (c.reads < 20) /* 400+ bytes, a few at a time */
        fail_msg("the answer came in %d reads", c.reads);
    imapc_close(&c);
}

static void test_fault_authfail_and_limit(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "authfail"), 0);
    imapc_send(&c, "a1 LOGIN user19 pass19\r\n");
    imapc_expect_line(&c, "a1 NO [AUTHENTICATIONFAILED] Authentication failed.");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "limit"), 0);
    imapc_send(&c, "a2 LOGIN user19 pass19\r\n");
    imapc_expect_line(&c, "a2 NO [LIMIT] Too many simultaneous connections.");
    imapc_close(&c);
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    imapc_open(&c, host, port, NULL);
    imapc_expect_line(&c, "* BYE [UNAVAILABLE] Server busy, try later");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
}

static void test_fault_gibberish_then_drop_while_idle(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    client_login(&c, "user20", "pass20");
    client_examine(&c, "EXAMINE");
    imapc_send(&c, "i1 IDLE\r\n");
    imapc_expect_line(&c, "+ idling");
    static const char m[] = "Subject: d\r\n\r\n";
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "gibberish"), 0);
    assert_int_equal(fakeimap_append(&srv, "user20", m, sizeof m - 1, NULL), 0);
    const char *l = imapc_line(&c, WAIT_MS);
    assert_non_null(l);
    assert_true(strncmp(l, "* ", 2) == 0 && strstr(l, "EXISTS") == NULL);
    imapc_expect_line(&c, "* 1 EXISTS");
    imapc_expect_line(&c, "* 1 RECENT");
    assert_int_equal(fakeimap_faults(&srv, 1.0, 1, "drop"), 0);
    assert_int_equal(fakeimap_append(&srv, "user20", m, sizeof m - 1, NULL), 0);
    assert_true(imapc_eof(&c, WAIT_MS));
    assert_int_equal(c.len, 0); /* no EXISTS: dropped instead */
    imapc_close(&c);
}

static void test_faults_are_deterministic_for_a_seed(void **state)
{
    (void)state;
    char run[2][41];
    for (int r = 0; r < 2; r++) {
        struct imapc c;
        client_plain(&c);
        assert_int_equal(fakeimap_faults(&srv, 0.5, 42, "bad,no"), 0);
        for (int i = 0; i < 40; i++) {
            imapc_send(&c, "n%d NOOP\r\n", i);
            const char *l = imapc_line(&c, WAIT_MS);
            assert_non_null(l);
            run[r][i] = strstr(l, " OK ") ? 'o' : strstr(l, " BAD ") ? 'b' : 'n';
        }
        run[r][40] = '\0';
        imapc_close(&c);
    }
    assert_string_equal(run[0], run[1]);
    assert_non_null(strchr(run[0], 'o'));
    assert_non_null(strchr(run[0], 'b'));
    assert_non_null(strchr(run[0], 'n'));
}

/* ---- Robustness ---- */

static void test_overlong_command_gets_bye_and_close(void **state)
{
    (void)state;
    struct imapc c;
    client_plain(&c);
    char big[9000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    imapc_send(&c, "a1 NOOP %s", big);
    imapc_expect_line(&c, "* BYE [ALERT] Command too long");
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);

    client_plain(&c);
    imapc_send(&c, "a1 LOGIN {99999}\r\n");
    imapc_expect_line(&c, "* BYE [ALERT] Command too long");
    imapc_close(&c);

    client_plain(&c);
    imapc_send(&c, "a1 LOGIN \"unterminated\r\n");
    imapc_expect_line(&c, "a1 BAD Invalid command syntax");
    imapc_send(&c, "(bad-tag NOOP\r\n");
    imapc_expect_line(&c, "* BAD Missing or invalid command");
    imapc_close(&c);
}

static void test_control_channel_rejects_bad_requests(void **state)
{
    (void)state;
    char reply[256];
    assert_int_equal(fakeimap_request(&srv, "FROB", reply, sizeof reply), 1);
    assert_int_equal(fakeimap_request(&srv, "FAULTS 2 1 bad", reply, sizeof reply), 1);
    assert_int_equal(fakeimap_request(&srv, "FAULTS 0.1 1 bogus", reply, sizeof reply), 1);
    assert_int_equal(fakeimap_append(&srv, "bad/name", "x", 1, NULL), -1);
    assert_int_equal(fakeimap_request(&srv, "MESSAGE user1 999", reply, sizeof reply), 1);
    assert_int_equal(fakeimap_request(&srv, "PING", reply, sizeof reply), 0);
    assert_string_equal(reply, "OK pong");
    assert_int_equal(fakeimap_append(&srv, "alice@example.org", "x", 1, NULL), 0);
    struct imapc c;
    client_plain(&c);
    client_login(&c, "alice@example.org", "pass-alice@example.org");
    imapc_close(&c);
}

/* ---- Scale ---- */

static void test_holds_2000_idle_connections_over_two_addresses(void **state)
{
    (void)state;
    enum { PER_ADDR = 1000 };
    static int fds[2 * PER_ADDR];
    long long base = fakeimap_stat(&srv, "sessions");
    int n = 0;
    for (int a = 0; a < 2; a++) {
        const char *host;
        int port = fakeimap_port(&srv, 0, a, &host);
        assert_true(port > 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &sa.sin_addr);
        for (int i = 0; i < PER_ADDR; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            assert_true(fd >= 0);
            if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
                fail_msg("connection %d to %s failed: %s", n, host, strerror(errno));
            fds[n++] = fd;
        }
    }
    assert_int_equal(fakeimap_wait_stat(&srv, "sessions", base + n, 20000), 0);
    /* Every one is a live session: the last one still answers. */
    char greeting[256];
    struct pollfd p = {fds[n - 1], POLLIN, 0};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    assert_true(read(fds[n - 1], greeting, sizeof greeting) > 0);
    assert_int_equal(strncmp(greeting, "* OK ", 5), 0);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    long long deadline = harness_now_ms() + 20000;
    while (fakeimap_stat(&srv, "sessions") > base && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(fakeimap_stat(&srv, "sessions"), base);
}

/* ---- Life cycle ---- */

static void test_sigterm_with_sessions_open_exits_zero(void **state)
{
    (void)state;
    struct fakeimap f;
    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    assert_int_equal(fakeimap_start(&f, NULL), 0);
    static const char m[] = "Subject: q\r\n\r\n";
    assert_int_equal(fakeimap_append(&f, "user1", m, sizeof m - 1, NULL), 0);
    struct imapc c;
    imapc_open(&c, "127.0.0.1", fakeimap_port(&f, 0, 0, NULL), NULL);
    imapc_expect_prefix(&c, "* OK ");
    client_login(&c, "user1", "pass1");
    client_examine(&c, "EXAMINE");
    imapc_send(&c, "i1 IDLE\r\n");
    imapc_expect_line(&c, "+ idling");
    assert_int_equal(fakeimap_stop(&f, 1), 0); /* keeps the directory for the checks below */
    assert_true(imapc_eof(&c, WAIT_MS));
    imapc_close(&c);
    assert_true(harness_log_contains(&f.proc, "stopped exit_code=0"));
    struct stat st;
    assert_int_equal(stat(f.control, &st), -1); /* the socket file is gone */
    fakeimap_stop(&f, 0);
}

static void test_faults_configured_from_the_environment(void **state)
{
    (void)state;
    struct fakeimap f;
    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    const char *extra[] = {"SUPERIMAP_FAKE_FAULTS=noinbox", "SUPERIMAP_FAKE_FAULT_RATE=1",
                           "SUPERIMAP_FAKE_FAULT_SEED=5", NULL};
    assert_int_equal(fakeimap_start(&f, extra), 0);
    char reply[512];
    assert_int_equal(fakeimap_request(&f, "FAULTS", reply, sizeof reply), 0);
    assert_int_equal(strncmp(reply, "OK rate=1 seed=5 list=noinbox bad=0 ", 36), 0);
    struct imapc c;
    imapc_open(&c, "127.0.0.1", fakeimap_port(&f, 0, 0, NULL), NULL);
    imapc_expect_prefix(&c, "* OK ");
    client_login(&c, "user3", "pass3");
    imapc_send(&c, "e1 EXAMINE INBOX\r\n");
    imapc_expect_line(&c, "e1 NO [NONEXISTENT] Mailbox doesn't exist");
    imapc_close(&c);
    assert_int_equal(fakeimap_stat(&f, "faults"), 1);
    assert_int_equal(fakeimap_stop(&f, 0), 0);
}

static void test_bad_fault_list_refuses_to_start(void **state)
{
    (void)state;
    struct fakeimap f;
    assert_int_equal(fakeimap_prepare(&f, 0), 0);
    const char *extra[] = {"SUPERIMAP_FAKE_FAULTS=bad,bogus", NULL};
    assert_int_equal(fakeimap_start(&f, extra), -1);
    assert_int_equal(harness_proc_wait(&f.proc, WAIT_MS), 0);
    assert_int_equal(f.proc.exit_code, 2);
    assert_true(harness_log_contains(&f.proc, "SUPERIMAP_FAKE_FAULTS"));
    fakeimap_stop(&f, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_capability_lists_idle_literal_plus_sasl_ir_starttls, setup),
        cmocka_unit_test_setup(test_caps_noidle_hides_idle_and_refuses_it, setup),
        cmocka_unit_test_setup(test_login_accepts_atoms_quoted_strings_and_literals, setup),
        cmocka_unit_test_setup(test_commands_split_byte_by_byte_or_pipelined_give_same_answers,
                               setup),
        cmocka_unit_test_setup(test_login_refuses_wrong_password_and_unknown_user, setup),
        cmocka_unit_test_setup(test_authenticate_plain_with_sasl_ir_and_continuation, setup),
        cmocka_unit_test_setup(test_authenticate_xoauth2_accepts_token_of_user, setup),
        cmocka_unit_test_setup(test_examine_reports_counts_uidvalidity_uidnext_read_only, setup),
        cmocka_unit_test_setup(test_append_pushes_exists_to_idle_and_selected_sessions, setup),
        cmocka_unit_test_setup(test_uid_fetch_envelope_and_body_peek_are_byte_exact, setup),
        cmocka_unit_test_setup(test_body_without_peek_sets_seen_only_when_selected, setup),
        cmocka_unit_test_setup(test_partial_body_fetches_give_parts_from_the_offset, setup),
        cmocka_unit_test_setup(test_uid_fetch_ranges_star_and_sequence_numbers, setup),
        cmocka_unit_test_setup(test_starttls_then_login_over_tls, setup),
        cmocka_unit_test_setup(test_implicit_tls_greets_and_fetches, setup),
        cmocka_unit_test_setup(test_require_tls_disables_login_until_starttls, setup),
        cmocka_unit_test_setup(test_sessions_counter_tracks_current_and_max_per_user, setup),
        cmocka_unit_test_setup(test_max_sessions_per_user_answers_limit, setup),
        cmocka_unit_test_setup(test_uidvalidity_change_renumbers_and_closes_selected_sessions,
                               setup),
        cmocka_unit_test_setup(test_fault_bad_no_gibberish_answer_commands, setup),
        cmocka_unit_test_setup(test_fault_bye_drop_halfopen_at_connect, setup),
        cmocka_unit_test_setup(test_fault_halfopen_and_bye_mid_session, setup),
        cmocka_unit_test_setup(test_fault_noinbox_and_uidshift_on_examine, setup),
        cmocka_unit_test_setup(test_fault_trickle_sends_body_in_small_pieces, setup),
        cmocka_unit_test_setup(test_fault_authfail_and_limit, setup),
        cmocka_unit_test_setup(test_fault_gibberish_then_drop_while_idle, setup),
        cmocka_unit_test_setup(test_faults_are_deterministic_for_a_seed, setup),
        cmocka_unit_test_setup(test_overlong_command_gets_bye_and_close, setup),
        cmocka_unit_test_setup(test_control_channel_rejects_bad_requests, setup),
        cmocka_unit_test_setup(test_holds_2000_idle_connections_over_two_addresses, setup),
        cmocka_unit_test_setup(test_sigterm_with_sessions_open_exits_zero, setup),
        cmocka_unit_test_setup(test_faults_configured_from_the_environment, setup),
        cmocka_unit_test_setup(test_bad_fault_list_refuses_to_start, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
