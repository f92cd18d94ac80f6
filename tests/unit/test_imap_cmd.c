/*
 * Unit tests of proto/imap_cmd: tags, exact command bytes, quoting versus
 * literals (with the stops a synchronising literal needs, LITERAL+ and
 * LITERAL-), SASL PLAIN and XOAUTH2 against RFC 4616's and Google's
 * published examples, bounded output, and a round trip of every tricky
 * credential through proto/imap_parse.
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
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/err.h"
#include "proto/imap_cmd.h"
#include "proto/imap_parse.h"

#define OUT_MAX 65536

static void assert_buf(const struct buf *b, const char *want)
{
    assert_non_null(b->data);
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
}

static void test_tags_count_up_from_a0001_and_never_give_a0000(void **state)
{
    (void)state;
    struct imap_tagger t = {0};
    char tag[IMAP_TAG_SIZE];
    imap_tag_next(&t, tag);
    assert_string_equal(tag, "A0001");
    imap_tag_next(&t, tag);
    assert_string_equal(tag, "A0002");
    t.last = 9999;
    imap_tag_next(&t, tag);
    assert_string_equal(tag, "A10000");
    t.last = UINT32_MAX - 1;
    imap_tag_next(&t, tag);
    assert_string_equal(tag, "A4294967295");
    imap_tag_next(&t, tag);
    assert_string_equal(tag, "A0001");
}

static void test_simple_commands_are_exact(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(imap_cmd_capability(&b, "A0001"), 0);
    assert_int_equal(imap_cmd_starttls(&b, "A0002"), 0);
    assert_int_equal(imap_cmd_noop(&b, "A0003"), 0);
    assert_int_equal(imap_cmd_idle(&b, "A0004"), 0);
    assert_int_equal(imap_cmd_done(&b), 0);
    assert_int_equal(imap_cmd_logout(&b, "A0005"), 0);
    assert_int_equal(imap_cmd_uid_fetch_envelopes(&b, "A0006", 4294967295u), 0);
    assert_int_equal(imap_cmd_uid_fetch_body(&b, "A0007", 17), 0);
    assert_int_equal(imap_cmd_uid_fetch_body_part(&b, "A0008", 17, 1048576, 65536), 0);
    assert_int_equal(imap_cmd_sasl_empty(&b), 0);
    assert_int_equal(imap_cmd_sasl_cancel(&b), 0);
    assert_int_equal(imap_cmd_uid_store_deleted(&b, "A0009", 17), 0);
    assert_int_equal(imap_cmd_uid_expunge(&b, "A0010", 17), 0);
    assert_int_equal(imap_cmd_select(&b, NULL, "A0011", "INBOX", 0), 0);
    assert_buf(&b, "A0001 CAPABILITY\r\n"
                   "A0002 STARTTLS\r\n"
                   "A0003 NOOP\r\n"
                   "A0004 IDLE\r\n"
                   "DONE\r\n"
                   "A0005 LOGOUT\r\n"
                   "A0006 UID FETCH 4294967295:* (UID RFC822.SIZE ENVELOPE)\r\n"
                   "A0007 UID FETCH 17 BODY.PEEK[]\r\n"
                   "A0008 UID FETCH 17 BODY.PEEK[]<1048576.65536>\r\n"
                   "\r\n"
                   "*\r\n"
                   "A0009 UID STORE 17 +FLAGS.SILENT (\\Deleted)\r\n"
                   "A0010 UID EXPUNGE 17\r\n"
                   "A0011 SELECT \"INBOX\"\r\n");
    buf_free(&b);
}

static void test_examine_and_status_quote_the_mailbox(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync = {7, {0}};
    assert_int_equal(imap_cmd_examine(&b, &sync, "A0001", "INBOX", 0), 0);
    assert_int_equal(sync.n, 0);
    assert_int_equal(imap_cmd_status(&b, "A0002", "INBOX", 0), 0);
    assert_int_equal(imap_cmd_examine(&b, NULL, "A0003", "Boîte", IMAP_CMD_LITERAL_PLUS), 0);
    assert_buf(&b, "A0001 EXAMINE \"INBOX\"\r\n"
                   "A0002 STATUS \"INBOX\" (UIDNEXT UIDVALIDITY)\r\n"
                   "A0003 EXAMINE {6+}\r\nBoîte\r\n");
    /* a literal that needs a stop cannot be built without a sync */
    size_t len = b.len;
    assert_int_equal(imap_cmd_examine(&b, NULL, "A0004", "Boîte", 0), -SIMAP_EINVAL);
    assert_int_equal(b.len, len);
    buf_free(&b);
}

static void test_list_all_with_and_without_special_use(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(imap_cmd_list_all(&b, "A0001", 0), 0);
    assert_int_equal(imap_cmd_list_all(&b, "A0002", 1), 0);
    assert_buf(&b, "A0001 LIST \"\" \"*\"\r\n"
                   "A0002 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
    assert_int_equal(imap_cmd_list_all(&b, "A 3", 1), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_list_all(NULL, "A3", 1), -SIMAP_EINVAL);
    buf_free(&b);
}

static void test_status_asks_uidnext_uidvalidity_and_modseq_with_condstore(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(imap_cmd_status(&b, "A0001", "Junk", 0), 0);
    assert_int_equal(imap_cmd_status(&b, "A0002", "[Gmail]/Spam", 1), 0);
    assert_int_equal(imap_cmd_status(&b, "A0003", "say \"hi\" \\o/", 0), 0);
    assert_int_equal(imap_cmd_status(&b, "A0004", "Bo&AO4-te", 0), 0);
    assert_buf(&b, "A0001 STATUS \"Junk\" (UIDNEXT UIDVALIDITY)\r\n"
                   "A0002 STATUS \"[Gmail]/Spam\" (UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"
                   "A0003 STATUS \"say \\\"hi\\\" \\\\o/\" (UIDNEXT UIDVALIDITY)\r\n"
                   "A0004 STATUS \"Bo&AO4-te\" (UIDNEXT UIDVALIDITY)\r\n");
    /* no sync: a name that needs a literal is refused, nothing written */
    size_t len = b.len;
    assert_int_equal(imap_cmd_status(&b, "A0005", "Boîte", 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_status(&b, "A0005", NULL, 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_status(&b, "", "INBOX", 0), -SIMAP_EINVAL);
    assert_int_equal(b.len, len);
    buf_free(&b);
}

static void test_notify_set_selected_alone_and_with_other_mailboxes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    const char *others[] = {"Junk", "a \"b\""};
    assert_int_equal(imap_cmd_notify_set(&b, "A0001", NULL, 0), 0);
    assert_int_equal(imap_cmd_notify_set(&b, "A0002", others, 1), 0);
    assert_int_equal(imap_cmd_notify_set(&b, "A0003", others, 2), 0);
    assert_buf(&b, "A0001 NOTIFY SET (SELECTED (MessageNew MessageExpunge))\r\n"
                   "A0002 NOTIFY SET (SELECTED (MessageNew MessageExpunge)) "
                   "(MAILBOXES (\"Junk\") (MessageNew MessageExpunge MailboxName))\r\n"
                   "A0003 NOTIFY SET (SELECTED (MessageNew MessageExpunge)) "
                   "(MAILBOXES (\"Junk\" \"a \\\"b\\\"\") (MessageNew MessageExpunge "
                   "MailboxName))\r\n");
    size_t len = b.len;
    const char *bad8[] = {"Junk", "Boîte"};
    const char *badnull[] = {"Junk", NULL};
    assert_int_equal(imap_cmd_notify_set(&b, "A0004", bad8, 2), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_notify_set(&b, "A0004", badnull, 2), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_notify_set(&b, "A0004", NULL, 1), -SIMAP_EINVAL);
    assert_int_equal(b.len, len);
    buf_free(&b);
}

static void test_enable_takes_capability_names_only(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(imap_cmd_enable(&b, "A0001", "QRESYNC"), 0);
    assert_int_equal(imap_cmd_enable(&b, "A0002", "CONDSTORE QRESYNC UTF8=ACCEPT"), 0);
    assert_buf(&b, "A0001 ENABLE QRESYNC\r\n"
                   "A0002 ENABLE CONDSTORE QRESYNC UTF8=ACCEPT\r\n");
    static const char *const bad[] = {"",      " QRESYNC", "QRESYNC ", "A  B", "QRESYNC\r\nA1 NOOP",
                                      "\"X\"", "(X)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(imap_cmd_enable(&b, "A0003", bad[i]), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_enable(&b, "A0003", NULL), -SIMAP_EINVAL);
    buf_free(&b);
}

static void test_examine_and_select_with_condstore_and_qresync(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync = {3, {0}};
    assert_int_equal(imap_cmd_select_condstore(&b, &sync, "A0002", "INBOX", 0), 0);
    assert_int_equal(sync.n, 0);
    assert_int_equal(
        imap_cmd_examine_qresync(&b, NULL, "A0003", "Junk", 0, 67890007u, 90060115205545359ull), 0);
    assert_int_equal(
        imap_cmd_examine_qresync(&b, NULL, "A0004", "INBOX", 0, 4294967295u, INT64_MAX), 0);
    assert_buf(&b, "A0002 SELECT \"INBOX\" (CONDSTORE)\r\n"
                   "A0003 EXAMINE \"Junk\" (QRESYNC (67890007 90060115205545359))\r\n"
                   "A0004 EXAMINE \"INBOX\" (QRESYNC (4294967295 9223372036854775807))\r\n");
    /* an 8-bit name goes as a literal with its stop, the parameters after */
    size_t start = b.len;
    assert_int_equal(imap_cmd_examine_qresync(&b, &sync, "A0005", "Boîte", 0, 7, 9), 0);
    assert_int_equal(sync.n, 1);
    assert_int_equal(sync.at[0], strlen("A0005 EXAMINE {6}\r\n"));
    assert_memory_equal(b.data + start, "A0005 EXAMINE {6}\r\nBoîte (QRESYNC (7 9))\r\n",
                        b.len - start);
    size_t len = b.len;
    assert_int_equal(imap_cmd_examine_qresync(&b, &sync, "A0006", "INBOX", 0, 0, 9), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_examine_qresync(&b, &sync, "A0006", "INBOX", 0, 7, 0), -SIMAP_EINVAL);
    assert_int_equal(
        imap_cmd_examine_qresync(&b, &sync, "A0006", "INBOX", 0, 7, (uint64_t)INT64_MAX + 1),
        -SIMAP_EINVAL);
    assert_int_equal(sync.n, 0);
    assert_int_equal(imap_cmd_select_condstore(&b, NULL, "A0006", "Boîte", 0), -SIMAP_EINVAL);
    assert_int_equal(b.len, len);
    buf_free(&b);
}

static void test_uid_fetch_envelopes_with_gmail_items_and_changedsince(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(imap_cmd_uid_fetch_envelopes_ext(&b, "A0001", 5, 0, 0), 0);
    assert_int_equal(imap_cmd_uid_fetch_envelopes_ext(&b, "A0002", 5, IMAP_CMD_FETCH_GMAIL, 0), 0);
    assert_int_equal(imap_cmd_uid_fetch_envelopes_ext(&b, "A0003", 1, 0, 12345), 0);
    assert_int_equal(
        imap_cmd_uid_fetch_envelopes_ext(&b, "A0004", 9, IMAP_CMD_FETCH_GMAIL, INT64_MAX), 0);
    assert_buf(&b, "A0001 UID FETCH 5:* (UID RFC822.SIZE ENVELOPE)\r\n"
                   "A0002 UID FETCH 5:* (UID RFC822.SIZE ENVELOPE X-GM-MSGID X-GM-THRID "
                   "X-GM-LABELS)\r\n"
                   "A0003 UID FETCH 1:* (UID RFC822.SIZE ENVELOPE) (CHANGEDSINCE 12345)\r\n"
                   "A0004 UID FETCH 9:* (UID RFC822.SIZE ENVELOPE X-GM-MSGID X-GM-THRID "
                   "X-GM-LABELS) (CHANGEDSINCE 9223372036854775807)\r\n");
    size_t len = b.len;
    assert_int_equal(imap_cmd_uid_fetch_envelopes_ext(&b, "A0005", 0, 0, 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_envelopes_ext(&b, "A0005", 1, 0x2u, 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_envelopes_ext(&b, "A0005", 1, 0, (uint64_t)INT64_MAX + 1),
                     -SIMAP_EINVAL);
    assert_int_equal(b.len, len);
    buf_free(&b);
}

static void test_invalid_arguments_are_refused_and_write_nothing(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_noop(&b, ""), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_noop(&b, "A 1"), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_noop(&b, "A+1"), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_noop(&b, "A\r\n1"), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_noop(&b, "A123456789012345"), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_noop(&b, NULL), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_noop(NULL, "A1"), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_envelopes(&b, "A1", 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_body(&b, "A1", 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_store_deleted(&b, "A1", 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_expunge(&b, "A1", 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_body_part(&b, "A1", 0, 0, 1), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_body_part(&b, "A1", 1, 0, 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_body_part(&b, "A1", 1, 4294967296ull, 1), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_login(&b, &sync, "A1", NULL, "x", 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_examine(&b, &sync, "A1", NULL, 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_authenticate_plain(&b, NULL, "A1", "u", "p", 0), -SIMAP_EINVAL);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_uid_fetch_last_asks_for_the_highest_uid_only(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(imap_cmd_uid_fetch_last(&b, "A0009"), 0);
    assert_buf(&b, "A0009 UID FETCH * (UID)\r\n");
    assert_int_equal(imap_cmd_uid_fetch_last(&b, "A 1"), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_uid_fetch_last(NULL, "A1"), -SIMAP_EINVAL);
    assert_buf(&b, "A0009 UID FETCH * (UID)\r\n");
    buf_free(&b);
    buf_init(&b, 20);
    assert_int_equal(imap_cmd_uid_fetch_last(&b, "A0001"), -SIMAP_ETOOBIG);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_login_quotes_plain_ascii(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync = {3, {0}};
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", "joe@example.com", "s3cret pass", 0), 0);
    assert_int_equal(sync.n, 0);
    assert_buf(&b, "A0001 LOGIN \"joe@example.com\" \"s3cret pass\"\r\n");
    buf_reset(&b);
    assert_int_equal(imap_cmd_login(&b, &sync, "A0002", "", "", 0), 0);
    assert_buf(&b, "A0002 LOGIN \"\" \"\"\r\n");
    buf_free(&b);
}

static void test_login_escapes_quote_and_backslash(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", "jo\"e", "p\\a\"ss\\", 0), 0);
    assert_int_equal(sync.n, 0);
    assert_buf(&b, "A0001 LOGIN \"jo\\\"e\" \"p\\\\a\\\"ss\\\\\"\r\n");
    buf_free(&b);
}

static void test_login_non_ascii_password_waits_for_continuation(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    assert_int_equal(buf_puts(&b, "already queued\r\n"), 0);
    size_t start = b.len;
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", "user", "pässwörd", 0), 0);
    static const char first[] = "A0001 LOGIN \"user\" {10}\r\n";
    assert_int_equal(sync.n, 1);
    assert_int_equal(sync.at[0], sizeof first - 1); /* counted from the command's start */
    assert_memory_equal(b.data + start, first, sizeof first - 1);
    assert_string_equal(b.data + start + sync.at[0], "pässwörd\r\n");
    buf_free(&b);
}

static void test_login_crlf_or_8bit_in_both_gives_two_stops(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", "us\xe9r", "a\r\nb", 0), 0);
    assert_int_equal(sync.n, 2);
    assert_buf(&b, "A0001 LOGIN {4}\r\nus\xe9r {4}\r\na\r\nb\r\n");
    assert_int_equal(sync.at[0], strlen("A0001 LOGIN {4}\r\n"));
    assert_int_equal(sync.at[1], strlen("A0001 LOGIN {4}\r\nus\xe9r {4}\r\n"));
    buf_free(&b);
}

static void test_login_literal_plus_and_minus_need_no_stop(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", "u", "ü", IMAP_CMD_LITERAL_PLUS), 0);
    assert_int_equal(sync.n, 0);
    assert_buf(&b, "A0001 LOGIN \"u\" {2+}\r\nü\r\n");
    buf_reset(&b);
    assert_int_equal(imap_cmd_login(&b, &sync, "A0002", "u", "ü", IMAP_CMD_LITERAL_MINUS), 0);
    assert_int_equal(sync.n, 0);
    assert_buf(&b, "A0002 LOGIN \"u\" {2+}\r\nü\r\n");

    /* LITERAL- allows non-synchronising literals only up to 4096 bytes */
    char big[IMAP_LITERAL_MINUS_MAX + 2];
    memset(big, 0xe9, sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_reset(&b);
    assert_int_equal(imap_cmd_login(&b, &sync, "A0003", "u", big, IMAP_CMD_LITERAL_MINUS), 0);
    assert_int_equal(sync.n, 1);
    assert_memory_equal(b.data, "A0003 LOGIN \"u\" {4097}\r\n", sync.at[0]);
    big[IMAP_LITERAL_MINUS_MAX] = '\0';
    buf_reset(&b);
    assert_int_equal(imap_cmd_login(&b, &sync, "A0004", "u", big, IMAP_CMD_LITERAL_MINUS), 0);
    assert_int_equal(sync.n, 0);
    assert_memory_equal(b.data, "A0004 LOGIN \"u\" {4096+}\r\n", 25);
    buf_free(&b);
}

/* Feeds "* LOGIN <args>" (the command with its tag replaced) to the parser:
 * the two values must come back as user and pass, byte for byte. */
static void assert_login_round_trips(const char *user, const char *pass, unsigned flags)
{
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", user, pass, flags), 0);
    b.data[4] = '*'; /* "A0001 LOGIN ..." -> "A000* LOGIN ..." */
    struct imap_parser *p = imap_parser_new(OUT_MAX, OUT_MAX);
    size_t used;
    struct imap_response *r;
    assert_int_equal(imap_parse_feed(p, b.data + 4, b.len - 4, &used, &r), 0);
    assert_int_equal(used, b.len - 4);
    assert_int_equal(r->kind, IMAP_RESP_OTHER);
    assert_int_equal(r->nvalues, 2);
    assert_int_equal(r->values[0].type, IMAP_VALUE_STRING);
    assert_int_equal(r->values[0].str.len, strlen(user));
    assert_memory_equal(r->values[0].str.data, user, strlen(user));
    assert_int_equal(r->values[1].str.len, strlen(pass));
    assert_memory_equal(r->values[1].str.data, pass, strlen(pass));
    imap_response_free(r);
    imap_parser_free(p);
    buf_free(&b);
}

static void test_login_credentials_round_trip_through_the_parser(void **state)
{
    (void)state;
    static const char *const values[] = {
        "plain",    "",          "with space",   "q\"uote",  "back\\slash",
        "\\\"\\\"", "{5}",       "NIL",          "pässwörd", "crlf\r\ninside",
        "lone\rcr", "tab\there", "\xff\xfe\x80", "\"\r\n\\",
    };
    size_t n = sizeof values / sizeof values[0];
    for (size_t i = 0; i < n; i++) {
        assert_login_round_trips(values[i], values[n - 1 - i], 0);
        assert_login_round_trips(values[i], values[i], IMAP_CMD_LITERAL_PLUS);
    }
}

static void test_authenticate_plain_matches_rfc4616_example(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync = {5, {0}};
    assert_int_equal(imap_cmd_authenticate_plain(&b, &sync, "a002", "tim", "tanstaaftanstaaf", 1),
                     0);
    assert_int_equal(sync.n, 0);
    assert_buf(&b, "a002 AUTHENTICATE PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    buf_free(&b);
}

static void test_authenticate_plain_without_sasl_ir_waits_for_continuation(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_authenticate_plain(&b, &sync, "A0002", "tim", "tanstaaftanstaaf", 0),
                     0);
    assert_int_equal(sync.n, 1);
    assert_int_equal(sync.at[0], strlen("A0002 AUTHENTICATE PLAIN\r\n"));
    assert_buf(&b, "A0002 AUTHENTICATE PLAIN\r\nAHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
    buf_free(&b);
}

static void test_authenticate_plain_encodes_any_password_bytes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    static const char pass[] = "p\"\\\r\nässw\xff";
    assert_int_equal(imap_cmd_authenticate_plain(&b, &sync, "A1", "us\"er", pass, 1), 0);
    static const char prefix[] = "A1 AUTHENTICATE PLAIN ";
    assert_memory_equal(b.data, prefix, sizeof prefix - 1);
    const char *b64 = b.data + sizeof prefix - 1;
    size_t b64len = b.len - (sizeof prefix - 1) - 2;
    assert_memory_equal(b64 + b64len, "\r\n", 2);
    unsigned char raw[128];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64len);
    static const char want[] = "\0us\"er\0p\"\\\r\nässw\xff";
    assert_true(n >= (int)sizeof want - 1);
    assert_memory_equal(raw, want, sizeof want - 1); /* n includes base64 padding as zeros */
    buf_free(&b);
}

static void test_xoauth2_matches_googles_documented_example(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A0001", "someuser@example.com",
                                                   "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
                                                   1),
                     0);
    assert_int_equal(sync.n, 0);
    assert_buf(&b, "A0001 AUTHENTICATE XOAUTH2 "
                   "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
                   "YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n");
    buf_reset(&b);
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A0002", "u", "t", 0), 0);
    assert_int_equal(sync.n, 1);
    assert_int_equal(sync.at[0], strlen("A0002 AUTHENTICATE XOAUTH2\r\n"));
    buf_free(&b);
}

static void test_oauthbearer_gs2_header_escapes_and_abort(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(
        imap_cmd_authenticate_oauthbearer(&b, &sync, "A1", "u,s=r@example.com", "tok", 1), 0);
    assert_int_equal(sync.n, 0);
    static const char prefix[] = "A1 AUTHENTICATE OAUTHBEARER ";
    assert_memory_equal(b.data, prefix, sizeof prefix - 1);
    const char *b64 = b.data + sizeof prefix - 1;
    size_t b64len = b.len - (sizeof prefix - 1) - 2;
    unsigned char raw[256];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64len);
    static const char want[] = "n,a=u=2Cs=3Dr@example.com,\x01"
                               "auth=Bearer tok\x01\x01";
    assert_true(n >= (int)sizeof want - 1);
    assert_memory_equal(raw, want, sizeof want - 1);
    buf_reset(&b);
    assert_int_equal(imap_cmd_authenticate_oauthbearer(&b, &sync, "A2", "u", "t", 0), 0);
    assert_int_equal(sync.n, 1);
    assert_int_equal(sync.at[0], strlen("A2 AUTHENTICATE OAUTHBEARER\r\n"));
    buf_reset(&b);
    assert_int_equal(imap_cmd_authenticate_oauthbearer(&b, &sync, "A3", "u", "t\x01", 1),
                     -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_sasl_oauthbearer_abort(&b), 0);
    assert_buf(&b, "AQ==\r\n");
    buf_free(&b);
}

static void test_xoauth2_refuses_separator_and_line_bytes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_MAX);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A1", "u\x01x", "t", 1),
                     -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A1", "u", "t\x01", 1),
                     -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A1", "u", "t\r\n", 1),
                     -SIMAP_EINVAL);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_full_buffer_gives_toobig_and_keeps_contents(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 40);
    assert_int_equal(buf_puts(&b, "0123456789"), 0);
    struct imap_cmd_sync sync = {0, {0}};
    assert_int_equal(imap_cmd_login(&b, &sync, "A0001", "user", "pässwörd-long", 0),
                     -SIMAP_ETOOBIG);
    assert_int_equal(sync.n, 0);
    assert_int_equal(imap_cmd_authenticate_plain(&b, &sync, "A0001", "user", "password", 1),
                     -SIMAP_ETOOBIG);
    assert_int_equal(imap_cmd_uid_fetch_envelopes(&b, "A0001", 1), -SIMAP_ETOOBIG);
    assert_int_equal(imap_cmd_status(&b, "A0001", "INBOX", 0), -SIMAP_ETOOBIG);
    assert_int_equal(imap_cmd_notify_set(&b, "A0001", NULL, 0), -SIMAP_ETOOBIG);
    assert_int_equal(imap_cmd_list_all(&b, "A0001", 1), -SIMAP_ETOOBIG);
    assert_int_equal(imap_cmd_examine_qresync(&b, &sync, "A0001", "INBOX", 0, 1, 1),
                     -SIMAP_ETOOBIG);
    assert_buf(&b, "0123456789");
    assert_int_equal(imap_cmd_noop(&b, "A0001"), 0); /* what fits still goes */
    assert_buf(&b, "0123456789A0001 NOOP\r\n");
    buf_free(&b);
}

static void test_overlong_credentials_are_refused(void **state)
{
    (void)state;
    char *big = malloc(IMAP_CMD_MAX_CREDENTIAL + 2);
    assert_non_null(big);
    memset(big, 'a', IMAP_CMD_MAX_CREDENTIAL + 1);
    big[IMAP_CMD_MAX_CREDENTIAL + 1] = '\0';
    struct buf b;
    buf_init(&b, (size_t)1 << 20);
    struct imap_cmd_sync sync;
    assert_int_equal(imap_cmd_login(&b, &sync, "A1", "u", big, 0), -SIMAP_EINVAL);
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A1", "u", big, 1), -SIMAP_EINVAL);
    big[IMAP_CMD_MAX_CREDENTIAL] = '\0';
    assert_int_equal(imap_cmd_authenticate_xoauth2(&b, &sync, "A1", "u", big, 1), 0);
    buf_free(&b);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags_count_up_from_a0001_and_never_give_a0000),
        cmocka_unit_test(test_simple_commands_are_exact),
        cmocka_unit_test(test_examine_and_status_quote_the_mailbox),
        cmocka_unit_test(test_list_all_with_and_without_special_use),
        cmocka_unit_test(test_status_asks_uidnext_uidvalidity_and_modseq_with_condstore),
        cmocka_unit_test(test_notify_set_selected_alone_and_with_other_mailboxes),
        cmocka_unit_test(test_enable_takes_capability_names_only),
        cmocka_unit_test(test_examine_and_select_with_condstore_and_qresync),
        cmocka_unit_test(test_uid_fetch_envelopes_with_gmail_items_and_changedsince),
        cmocka_unit_test(test_invalid_arguments_are_refused_and_write_nothing),
        cmocka_unit_test(test_uid_fetch_last_asks_for_the_highest_uid_only),
        cmocka_unit_test(test_login_quotes_plain_ascii),
        cmocka_unit_test(test_login_escapes_quote_and_backslash),
        cmocka_unit_test(test_login_non_ascii_password_waits_for_continuation),
        cmocka_unit_test(test_login_crlf_or_8bit_in_both_gives_two_stops),
        cmocka_unit_test(test_login_literal_plus_and_minus_need_no_stop),
        cmocka_unit_test(test_login_credentials_round_trip_through_the_parser),
        cmocka_unit_test(test_authenticate_plain_matches_rfc4616_example),
        cmocka_unit_test(test_authenticate_plain_without_sasl_ir_waits_for_continuation),
        cmocka_unit_test(test_authenticate_plain_encodes_any_password_bytes),
        cmocka_unit_test(test_xoauth2_matches_googles_documented_example),
        cmocka_unit_test(test_xoauth2_refuses_separator_and_line_bytes),
        cmocka_unit_test(test_oauthbearer_gs2_header_escapes_and_abort),
        cmocka_unit_test(test_full_buffer_gives_toobig_and_keeps_contents),
        cmocka_unit_test(test_overlong_credentials_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
