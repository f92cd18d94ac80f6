/*
 * Unit tests of proto/imap_parse: RFC 3501 section 8 and RFC 2177 examples,
 * transcripts in the shape Dovecot, Gmail, Outlook and Yahoo send, literals
 * up to and past the limit, and hostile input. Every input is parsed whole,
 * byte by byte, in strides and split at every point (or every step-th point
 * for the big ones), and every way must give the same responses and the same
 * final result.
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

#include "core/err.h"
#include "proto/imap_parse.h"
#include "tests/unit/imap_equal.h"

#define TEST_MAX_LITERAL ((size_t)1 << 20)
#define TEST_MAX_LINE    ((size_t)64 * 1024)

/* ---- Feeding helpers ---- */

/* Responses from one way of feeding, and how it ended: the first error,
 * IMAP_AGAIN when bytes of an unfinished response are held, else 0. */
struct outcome {
    struct imap_response **v;
    size_t n, cap;
    int rc;
};

static void outcome_free(struct outcome *o)
{
    for (size_t i = 0; i < o->n; i++)
        imap_response_free(o->v[i]);
    free(o->v);
    memset(o, 0, sizeof *o);
}

static void push(struct outcome *o, struct imap_response *r)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 8;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        assert_non_null(o->v);
    }
    o->v[o->n++] = r;
}

/* Feeds one piece, taking every response it completes. */
static void feed_piece(struct imap_parser *p, const char *s, size_t n, struct outcome *o)
{
    while (o->rc == 0) {
        size_t used = 12345;
        struct imap_response *r = (struct imap_response *)1;
        int rc = imap_parse_feed(p, s, n, &used, &r);
        if (rc < 0) {
            assert_null(r);
            o->rc = rc;
            return;
        }
        if (rc == IMAP_AGAIN) {
            assert_null(r);
            assert_int_equal(used, n);
            return;
        }
        assert_int_equal(rc, 0);
        assert_non_null(r);
        assert_true(used <= n);
        push(o, r);
        s += used;
        n -= used;
        if (n == 0)
            return;
    }
}

static void finish(struct imap_parser *p, struct outcome *o)
{
    if (o->rc == 0 && imap_parser_buffered(p) > 0)
        o->rc = IMAP_AGAIN;
    imap_parser_free(p);
}

/* Feeds in pieces of stride bytes (the last may be shorter). */
static void feed_stride(const char *in, size_t n, size_t stride, size_t max_lit, size_t max_line,
                        struct outcome *o)
{
    struct imap_parser *p = imap_parser_new(max_lit, max_line);
    assert_non_null(p);
    memset(o, 0, sizeof *o);
    for (size_t off = 0; off < n && o->rc == 0; off += stride)
        feed_piece(p, in + off, n - off < stride ? n - off : stride, o);
    if (n == 0)
        feed_piece(p, in, 0, o);
    finish(p, o);
}

/* Feeds in two pieces, cut at k. */
static void feed_split(const char *in, size_t n, size_t k, size_t max_lit, size_t max_line,
                       struct outcome *o)
{
    struct imap_parser *p = imap_parser_new(max_lit, max_line);
    assert_non_null(p);
    memset(o, 0, sizeof *o);
    feed_piece(p, in, k, o);
    feed_piece(p, in + k, n - k, o);
    finish(p, o);
}

static void expect_same(const struct outcome *ref, const struct outcome *got, const char *how,
                        size_t arg)
{
    if (ref->rc != got->rc || ref->n != got->n)
        fail_msg("fed %s %zu: rc %d, %zu responses; whole: rc %d, %zu responses", how, arg, got->rc,
                 got->n, ref->rc, ref->n);
    for (size_t i = 0; i < ref->n; i++) {
        if (!imap_response_equal(ref->v[i], got->v[i]))
            fail_msg("fed %s %zu: response %zu differs from the whole parse", how, arg, i);
    }
}

/*
 * Parses in[0..n) whole into *ref, then byte by byte, in strides of 2, 3, 7
 * and 61, and split in two at every step-th point, failing unless each way
 * gives exactly *ref. The caller inspects and frees *ref.
 */
static void parse_every_way(const char *in, size_t n, size_t max_lit, size_t max_line, size_t step,
                            struct outcome *ref)
{
    struct outcome got;
    feed_stride(in, n, n > 0 ? n : 1, max_lit, max_line, ref);
    static const size_t strides[] = {1, 2, 3, 7, 61};
    for (size_t i = 0; i < sizeof strides / sizeof strides[0]; i++) {
        feed_stride(in, n, strides[i], max_lit, max_line, &got);
        expect_same(ref, &got, "in strides of", strides[i]);
        outcome_free(&got);
    }
    for (size_t k = 1; k < n; k += step) {
        feed_split(in, n, k, max_lit, max_line, &got);
        expect_same(ref, &got, "split at", k);
        outcome_free(&got);
    }
}

static void parse_str(const char *in, struct outcome *ref)
{
    parse_every_way(in, strlen(in), TEST_MAX_LITERAL, TEST_MAX_LINE, 1, ref);
}

/* Parses in (every way) expecting rc and no response. */
static void expect_failure(const char *in, size_t n, size_t max_lit, size_t max_line, int rc)
{
    struct outcome o;
    parse_every_way(in, n, max_lit, max_line, 1, &o);
    if (o.rc != rc || o.n != 0)
        fail_msg("expected rc %d and no response, got rc %d and %zu responses", rc, o.rc, o.n);
    outcome_free(&o);
}

#define EXPECT_FAILURE(lit, rc) expect_failure(lit, sizeof(lit) - 1, 4096, 4096, (rc))

static void assert_str(const struct imap_str *s, const char *want)
{
    assert_non_null(s->data);
    assert_int_equal(s->len, strlen(want));
    assert_memory_equal(s->data, want, s->len);
    assert_int_equal(s->data[s->len], '\0');
}

static void assert_nil(const struct imap_str *s)
{
    assert_null(s->data);
    assert_int_equal(s->len, 0);
}

static void assert_address(const struct imap_address *a, const char *name, const char *mailbox,
                           const char *host)
{
    if (name != NULL)
        assert_str(&a->name, name);
    else
        assert_nil(&a->name);
    assert_nil(&a->adl);
    if (mailbox != NULL)
        assert_str(&a->mailbox, mailbox);
    else
        assert_nil(&a->mailbox);
    if (host != NULL)
        assert_str(&a->host, host);
    else
        assert_nil(&a->host);
}

/* ---- RFC examples ---- */

/* The header of RFC 3501 section 8's message 12, as its FETCH BODY[HEADER]
 * literal (CRLF line ends, blank line included). */
static const char rfc3501_header[] =
    "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    "From: Terry Gray <gray@cac.washington.edu>\r\n"
    "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    "To: imap@cac.washington.edu\r\n"
    "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    "\r\n";

static void test_rfc3501_section8_session_parses_every_server_line(void **state)
{
    (void)state;
    char in[4096];
    int n = snprintf(
        in, sizeof in,
        "* OK IMAP4rev1 Service Ready\r\n"
        "a001 OK LOGIN completed\r\n"
        "* 18 EXISTS\r\n"
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        "* 2 RECENT\r\n"
        "* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"
        "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
        "a002 OK [READ-WRITE] SELECT completed\r\n"
        "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
        "RFC822.SIZE 4286 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
        "\"IMAP4rev1 WG mtg summary and minutes\" "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((NIL NIL \"imap\" \"cac.washington.edu\")) "
        "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
        "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
        "\"<B27397-0100000@cac.washington.edu>\") "
        "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n"
        "a003 OK FETCH completed\r\n"
        "* 12 FETCH (BODY[HEADER] {%zu}\r\n%s)\r\n"
        "a004 OK FETCH completed\r\n"
        "* 12 FETCH (FLAGS (\\Seen \\Deleted))\r\n"
        "a005 OK +FLAGS completed\r\n"
        "* BYE IMAP4rev1 server logging out\r\n"
        "a006 OK LOGOUT completed\r\n",
        sizeof rfc3501_header - 1, rfc3501_header);
    assert_true(n > 0 && (size_t)n < sizeof in);

    struct outcome o;
    parse_every_way(in, (size_t)n, TEST_MAX_LITERAL, TEST_MAX_LINE, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 16);

    assert_int_equal(o.v[0]->kind, IMAP_RESP_COND);
    assert_int_equal(o.v[0]->cond, IMAP_COND_OK);
    assert_int_equal(o.v[0]->code.kind, IMAP_CODE_NONE);
    assert_str(&o.v[0]->text, "IMAP4rev1 Service Ready");

    assert_int_equal(o.v[1]->kind, IMAP_RESP_TAGGED);
    assert_str(&o.v[1]->tag, "a001");
    assert_int_equal(o.v[1]->cond, IMAP_COND_OK);

    assert_int_equal(o.v[2]->kind, IMAP_RESP_EXISTS);
    assert_int_equal(o.v[2]->number, 18);
    assert_int_equal(o.v[3]->kind, IMAP_RESP_FLAGS);
    assert_int_equal(o.v[3]->list.n, 5);
    assert_str(&o.v[3]->list.items[3], "\\Seen");
    assert_int_equal(o.v[4]->kind, IMAP_RESP_RECENT);
    assert_int_equal(o.v[4]->number, 2);
    assert_int_equal(o.v[5]->code.kind, IMAP_CODE_UNSEEN);
    assert_int_equal(o.v[5]->code.number, 17);
    assert_int_equal(o.v[6]->code.kind, IMAP_CODE_UIDVALIDITY);
    assert_int_equal(o.v[6]->code.number, 3857529045u);
    assert_str(&o.v[6]->text, "UIDs valid");
    assert_int_equal(o.v[7]->code.kind, IMAP_CODE_READ_WRITE);
    assert_str(&o.v[7]->code.name, "READ-WRITE");
    assert_nil(&o.v[7]->code.arg);

    const struct imap_fetch *f = &o.v[8]->fetch;
    assert_int_equal(o.v[8]->kind, IMAP_RESP_FETCH);
    assert_int_equal(o.v[8]->number, 12);
    assert_int_equal(f->has, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_RFC822_SIZE |
                                 IMAP_FETCH_ENVELOPE);
    assert_int_equal(f->flags.n, 1);
    assert_str(&f->flags.items[0], "\\Seen");
    assert_str(&f->internaldate, "17-Jul-1996 02:44:25 -0700");
    assert_int_equal(f->rfc822_size, 4286);
    const struct imap_envelope *e = &f->envelope;
    assert_str(&e->date, "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)");
    assert_str(&e->subject, "IMAP4rev1 WG mtg summary and minutes");
    assert_int_equal(e->from.n, 1);
    assert_address(&e->from.items[0], "Terry Gray", "gray", "cac.washington.edu");
    assert_address(&e->sender.items[0], "Terry Gray", "gray", "cac.washington.edu");
    assert_address(&e->reply_to.items[0], "Terry Gray", "gray", "cac.washington.edu");
    assert_int_equal(e->to.n, 1);
    assert_address(&e->to.items[0], NULL, "imap", "cac.washington.edu");
    assert_int_equal(e->cc.n, 2);
    assert_address(&e->cc.items[0], NULL, "minutes", "CNRI.Reston.VA.US");
    assert_address(&e->cc.items[1], "John Klensin", "KLENSIN", "MIT.EDU");
    assert_true(e->bcc.is_nil);
    assert_int_equal(e->bcc.n, 0);
    assert_nil(&e->in_reply_to);
    assert_str(&e->message_id, "<B27397-0100000@cac.washington.edu>");

    const struct imap_fetch *h = &o.v[10]->fetch;
    assert_int_equal(h->has, IMAP_FETCH_BODY);
    assert_str(&h->body_section, "HEADER");
    assert_int_equal(h->body.len, sizeof rfc3501_header - 1);
    assert_memory_equal(h->body.data, rfc3501_header, h->body.len);

    assert_int_equal(o.v[12]->fetch.flags.n, 2);
    assert_str(&o.v[13]->text, "+FLAGS completed");
    assert_int_equal(o.v[14]->cond, IMAP_COND_BYE);
    assert_str(&o.v[15]->tag, "a006");
    outcome_free(&o);
}

static void test_rfc2177_idle_example(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* FLAGS (\\Deleted \\Seen)\r\n"
              "* 3 EXISTS\r\n"
              "* 0 RECENT\r\n"
              "* OK [UIDVALIDITY 1]\r\n"
              "A001 OK SELECT completed\r\n"
              "+ idling\r\n"
              "* 4 EXISTS\r\n"
              "A002 OK IDLE terminated\r\n"
              "* 4 FETCH (FLAGS (\\Recent) UID 4)\r\n"
              "A003 OK FETCH completed\r\n"
              "* 2 EXPUNGE\r\n"
              "* 3 EXISTS\r\n"
              "+ idling\r\n"
              "A004 OK IDLE terminated\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 14);
    assert_int_equal(o.v[2]->kind, IMAP_RESP_RECENT);
    assert_int_equal(o.v[2]->number, 0);
    /* a response code with no text after it (RFC 2177's own example) */
    assert_int_equal(o.v[3]->code.kind, IMAP_CODE_UIDVALIDITY);
    assert_int_equal(o.v[3]->code.number, 1);
    assert_str(&o.v[3]->text, "");
    assert_int_equal(o.v[5]->kind, IMAP_RESP_CONTINUE);
    assert_str(&o.v[5]->text, "idling");
    assert_int_equal(o.v[6]->kind, IMAP_RESP_EXISTS);
    assert_int_equal(o.v[6]->number, 4);
    assert_int_equal(o.v[8]->fetch.uid, 4);
    assert_int_equal(o.v[10]->kind, IMAP_RESP_EXPUNGE);
    assert_int_equal(o.v[10]->number, 2);
    assert_int_equal(o.v[12]->kind, IMAP_RESP_CONTINUE);
    assert_str(&o.v[13]->text, "IDLE terminated");
    outcome_free(&o);
}

/* ---- Real servers ---- */

static void test_dovecot_greeting_login_and_examine(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
              "STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
              "a1 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT "
              "SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND "
              "URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
              "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
              "BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ "
              "NOTIFY SPECIAL-USE] Logged in\r\n"
              "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
              "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
              "* 3 EXISTS\r\n"
              "* 0 RECENT\r\n"
              "* OK [UNSEEN 2] First unseen.\r\n"
              "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
              "* OK [UIDNEXT 4] Predicted next UID\r\n"
              "* OK [HIGHESTMODSEQ 7] Highest\r\n"
              "a2 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 11);
    const struct imap_response *g = o.v[0];
    assert_int_equal(g->kind, IMAP_RESP_COND);
    assert_int_equal(g->code.kind, IMAP_CODE_CAPABILITY);
    assert_int_equal(g->code.list.n, 9);
    assert_true(imap_strlist_has(&g->code.list, "IDLE"));
    assert_true(imap_strlist_has(&g->code.list, "literal+"));
    assert_true(imap_strlist_has(&g->code.list, "AUTH=PLAIN"));
    assert_false(imap_strlist_has(&g->code.list, "AUTH=XOAUTH2"));
    assert_str(&g->text, "Dovecot (Debian) ready.");
    assert_int_equal(o.v[1]->kind, IMAP_RESP_TAGGED);
    assert_int_equal(o.v[1]->code.kind, IMAP_CODE_CAPABILITY);
    assert_true(imap_strlist_has(&o.v[1]->code.list, "SPECIAL-USE"));
    assert_true(imap_strlist_has(&o.v[1]->code.list, "CONDSTORE"));
    assert_int_equal(o.v[3]->code.kind, IMAP_CODE_PERMANENTFLAGS);
    assert_int_equal(o.v[3]->code.list.n, 0);
    assert_int_equal(o.v[4]->number, 3);
    assert_int_equal(o.v[7]->code.number, 1700000000u);
    assert_int_equal(o.v[8]->code.kind, IMAP_CODE_UIDNEXT);
    assert_int_equal(o.v[8]->code.number, 4);
    assert_int_equal(o.v[9]->code.kind, IMAP_CODE_HIGHESTMODSEQ);
    assert_int_equal(o.v[9]->code.modseq, 7);
    assert_int_equal(o.v[10]->code.kind, IMAP_CODE_READ_ONLY);
    assert_str(&o.v[10]->text, "Examine completed (0.001 + 0.000 secs).");
    outcome_free(&o);
}

static void test_gmail_greeting_capability_and_xoauth2_failure(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* OK Gimap ready for requests from 203.0.113.5 h9mb123456789qkb\r\n"
              "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 "
              "XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER "
              "AUTH=XOAUTH\r\n"
              "A0001 OK Thats all she wrote! h9mb123456789qkb\r\n"
              "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ2"
              "9vZ2xlLmNvbS8ifQ==\r\n"
              "A0002 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
              "* BYE [UNAVAILABLE] Temporary System Error\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 6);
    assert_int_equal(o.v[0]->kind, IMAP_RESP_COND);
    assert_str(&o.v[0]->text, "Gimap ready for requests from 203.0.113.5 h9mb123456789qkb");
    assert_int_equal(o.v[1]->kind, IMAP_RESP_CAPABILITY);
    assert_int_equal(o.v[1]->list.n, 16);
    assert_true(imap_strlist_has(&o.v[1]->list, "AUTH=XOAUTH2"));
    assert_true(imap_strlist_has(&o.v[1]->list, "SASL-IR"));
    assert_int_equal(o.v[3]->kind, IMAP_RESP_CONTINUE);
    assert_int_equal(o.v[3]->code.kind, IMAP_CODE_NONE);
    assert_str(&o.v[3]->text,
               "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21h"
               "aWwuZ29vZ2xlLmNvbS8ifQ==");
    assert_int_equal(o.v[4]->cond, IMAP_COND_NO);
    assert_int_equal(o.v[4]->code.kind, IMAP_CODE_AUTHENTICATIONFAILED);
    assert_str(&o.v[4]->text, "Invalid credentials (Failure)");
    assert_int_equal(o.v[5]->cond, IMAP_COND_BYE);
    assert_int_equal(o.v[5]->code.kind, IMAP_CODE_UNAVAILABLE);
    outcome_free(&o);
}

/* Google's X-GM-EXT-1 page: ids, and labels as atoms, quoted strings and a
 * literal (a label with a CR would need one), kept as sent. */
static void test_gmail_fetch_x_gm_attributes(void **state)
{
    (void)state;
    struct outcome o;
    static const char in[] =
        "* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334866 "
        "X-GM-LABELS (\\Inbox \\Sent Important \"Muy Importante\" \"a \\\"b\\\"\" &AOk-t&AOk-) "
        "UID 4 MODSEQ (4557) RFC822.SIZE 2100 FLAGS ())\r\n"
        "* 2 FETCH (UID 5 X-GM-LABELS () X-GM-MSGID 18446744073709551615)\r\n"
        "* 3 FETCH (X-GM-LABELS (x {3}\r\na\rb \"\") UID 6)\r\n";
    parse_every_way(in, sizeof in - 1, 4096, 4096, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 3);
    const struct imap_fetch *f = &o.v[0]->fetch;
    assert_int_equal(f->has, IMAP_FETCH_UID | IMAP_FETCH_MODSEQ | IMAP_FETCH_RFC822_SIZE |
                                 IMAP_FETCH_FLAGS | IMAP_FETCH_GM_MSGID | IMAP_FETCH_GM_THRID |
                                 IMAP_FETCH_GM_LABELS);
    assert_int_equal(f->uid, 4);
    assert_int_equal(f->modseq, 4557);
    assert_int_equal(f->rfc822_size, 2100);
    assert_int_equal(f->flags.n, 0);
    assert_true(f->gm_thrid == 1278455344230334865ull);
    assert_true(f->gm_msgid == 1278455344230334866ull);
    assert_int_equal(f->gm_labels.n, 6);
    assert_str(&f->gm_labels.items[0], "\\Inbox");
    assert_str(&f->gm_labels.items[1], "\\Sent");
    assert_str(&f->gm_labels.items[2], "Important");
    assert_str(&f->gm_labels.items[3], "Muy Importante");
    assert_str(&f->gm_labels.items[4], "a \"b\"");
    assert_str(&f->gm_labels.items[5], "&AOk-t&AOk-");
    f = &o.v[1]->fetch;
    assert_int_equal(f->has, IMAP_FETCH_UID | IMAP_FETCH_GM_LABELS | IMAP_FETCH_GM_MSGID);
    assert_int_equal(f->gm_labels.n, 0);
    assert_true(f->gm_msgid == UINT64_MAX);
    f = &o.v[2]->fetch;
    assert_int_equal(f->gm_labels.n, 3);
    assert_str(&f->gm_labels.items[0], "x");
    assert_str(&f->gm_labels.items[1], "a\rb");
    assert_str(&f->gm_labels.items[2], "");
    outcome_free(&o);
    EXPECT_FAILURE("* 1 FETCH (X-GM-MSGID 18446744073709551616)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (X-GM-THRID abc)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (X-GM-LABELS \\Inbox)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (X-GM-LABELS (\\Inbox (x)))\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (X-GM-LABELS (\\Inbox\r\n", -SIMAP_EPROTO);
}

/* RFC 7162 section 3.2.5.1's QRESYNC SELECT answer, and VANISHED during a
 * session (without EARLIER). */
static void test_qresync_select_answer_with_vanished_earlier(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* OK [CLOSED]\r\n"
              "* 100 EXISTS\r\n"
              "* OK [UIDVALIDITY 67890007] UIDVALIDITY\r\n"
              "* OK [HIGHESTMODSEQ 90060115205545359] Highest mailbox mod-sequence\r\n"
              "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"
              "* 49 FETCH (UID 117 FLAGS (\\Seen \\Answered) MODSEQ (90060115194045001))\r\n"
              "A02 OK [READ-WRITE] mailbox selected\r\n"
              "* VANISHED 405,407,410,425\r\n"
              "* VANISHED (earlier)  9:7 \r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 9);
    assert_int_equal(o.v[0]->code.kind, IMAP_CODE_OTHER);
    assert_str(&o.v[0]->code.name, "CLOSED");
    assert_true(o.v[3]->code.modseq == 90060115205545359ull);
    const struct imap_response *v = o.v[4];
    assert_int_equal(v->kind, IMAP_RESP_VANISHED);
    assert_int_equal(v->vanished.earlier, 1);
    static const struct imap_uid_range want[] = {
        {41, 41}, {43, 116}, {118, 118}, {120, 211}, {214, 540}};
    assert_int_equal(v->vanished.n, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(v->vanished.ranges[i].first, want[i].first);
        assert_int_equal(v->vanished.ranges[i].last, want[i].last);
    }
    assert_int_equal(o.v[5]->fetch.uid, 117);
    assert_true(o.v[5]->fetch.modseq == 90060115194045001ull);
    assert_int_equal(o.v[7]->kind, IMAP_RESP_VANISHED);
    assert_int_equal(o.v[7]->vanished.earlier, 0);
    assert_int_equal(o.v[7]->vanished.n, 4);
    assert_int_equal(o.v[7]->vanished.ranges[3].first, 425);
    assert_int_equal(o.v[7]->vanished.ranges[3].last, 425);
    assert_int_equal(o.v[8]->vanished.earlier, 1);
    assert_int_equal(o.v[8]->vanished.n, 1);
    assert_int_equal(o.v[8]->vanished.ranges[0].first, 7);
    assert_int_equal(o.v[8]->vanished.ranges[0].last, 9);
    outcome_free(&o);
}

static void test_bad_vanished_responses_are_protocol_errors(void **state)
{
    (void)state;
    EXPECT_FAILURE("* VANISHED\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED (EARLIER)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED (LATER) 1\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED 0\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED 1:*\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED 1,\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED 1:\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED 4294967296\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* VANISHED 1 2\r\n", -SIMAP_EPROTO);
}

/* NOTIFY's "* STATUS" and a poll's answer carry only some items; the mailbox
 * may be an atom, a quoted string or a literal. */
static void test_status_with_some_items_only(void **state)
{
    (void)state;
    struct outcome o;
    static const char in[] = "* STATUS Junk (UIDNEXT 7)\r\n"
                             "* STATUS \"Junk\" (MESSAGES 2 UIDNEXT 3)\r\n"
                             "* STATUS {9}\r\nSpam \"x\"\\ (UIDVALIDITY 9 HIGHESTMODSEQ 12)\r\n"
                             "* STATUS INBOX ()\r\n";
    parse_every_way(in, sizeof in - 1, 4096, 4096, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    const struct imap_mailbox_status *st = &o.v[0]->status;
    assert_str(&st->mailbox, "Junk");
    assert_int_equal(st->has, IMAP_STATUS_UIDNEXT);
    assert_int_equal(st->uidnext, 7);
    assert_int_equal(st->messages, 0);
    st = &o.v[1]->status;
    assert_str(&st->mailbox, "Junk");
    assert_int_equal(st->has, IMAP_STATUS_MESSAGES | IMAP_STATUS_UIDNEXT);
    assert_int_equal(st->messages, 2);
    assert_int_equal(st->uidnext, 3);
    st = &o.v[2]->status;
    assert_str(&st->mailbox, "Spam \"x\"\\");
    assert_int_equal(st->has, IMAP_STATUS_UIDVALIDITY | IMAP_STATUS_HIGHESTMODSEQ);
    assert_int_equal(st->uidvalidity, 9);
    assert_int_equal(st->highestmodseq, 12);
    assert_int_equal(o.v[3]->status.has, 0);
    outcome_free(&o);
    EXPECT_FAILURE("* STATUS Junk (UIDNEXT 0)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* STATUS Junk (UIDNEXT)\r\n", -SIMAP_EPROTO);
}

/* LIST with RFC 6154 attributes (Dovecot, Gmail), NOTIFY's LIST for a
 * deleted mailbox and a renamed one (RFC 5465 section 5.4, OLDNAME). */
static void test_list_with_special_use_attributes(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
              "* LIST (\\HasNoChildren \\Trash) \"/\" \"Deleted Items\"\r\n"
              "* LIST (\\All \\HasNoChildren) \"/\" \"[Gmail]/All Mail\"\r\n"
              "* LIST (\\NonExistent) \"/\" \"Old\"\r\n"
              "* LIST () \"/\" \"New\" (\"OLDNAME\" (\"Old\"))\r\n"
              "* LIST (\\Noselect) NIL \"\"\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(o.v[i]->kind, IMAP_RESP_LIST);
        assert_true(o.v[i]->nvalues >= 3);
        assert_int_equal(o.v[i]->values[0].type, IMAP_VALUE_LIST);
    }
    const struct imap_value *attrs = &o.v[0]->values[0];
    assert_int_equal(attrs->n, 2);
    assert_int_equal(attrs->items[1].type, IMAP_VALUE_ATOM);
    assert_str(&attrs->items[1].str, "\\Junk");
    assert_str(&o.v[0]->values[1].str, "/");
    assert_int_equal(o.v[0]->values[2].type, IMAP_VALUE_ATOM);
    assert_str(&o.v[0]->values[2].str, "Junk");
    assert_str(&o.v[1]->values[0].items[1].str, "\\Trash");
    assert_str(&o.v[1]->values[2].str, "Deleted Items");
    assert_str(&o.v[2]->values[0].items[0].str, "\\All");
    assert_str(&o.v[2]->values[2].str, "[Gmail]/All Mail");
    assert_str(&o.v[3]->values[0].items[0].str, "\\NonExistent");
    assert_int_equal(o.v[4]->values[0].n, 0);
    assert_int_equal(o.v[4]->nvalues, 4);
    assert_str(&o.v[4]->values[3].items[0].str, "OLDNAME");
    assert_str(&o.v[4]->values[3].items[1].items[0].str, "Old");
    assert_int_equal(o.v[5]->values[1].type, IMAP_VALUE_NIL);
    outcome_free(&o);
}

static void test_outlook_envelope_with_encoded_words_and_literal_subject(void **state)
{
    (void)state;
    static const char subject[] = "=?utf-8?B?0J/RgNC40LLQtdGC?= \"quoted\" =?utf-8?Q?caf=C3=A9?=";
    char in[2048];
    int n =
        snprintf(in, sizeof in,
                 "* OK The Microsoft Exchange IMAP4 service is ready. "
                 "[TQBOADIAUABSADEAMQBDAEEAMAAwADAANQAuAG4AYQBtAHAAcgBkADEAMQAuAHAAcgBvAGQA]\r\n"
                 "* 5 FETCH (UID 1234 RFC822.SIZE 54321 ENVELOPE "
                 "(\"Mon, 15 Jan 2024 10:00:00 +0000\" {%zu}\r\n%s "
                 "((\"=?iso-8859-1?Q?Andr=E9_M=FCller?=\" NIL \"andre\" \"example.com\")) "
                 "((\"=?iso-8859-1?Q?Andr=E9_M=FCller?=\" NIL \"andre\" \"example.com\")) "
                 "((\"=?iso-8859-1?Q?Andr=E9_M=FCller?=\" NIL \"andre\" \"example.com\")) "
                 "((\"Ops\" NIL \"ops\" \"contoso.onmicrosoft.com\")) NIL NIL "
                 "\"<AM0PR01MB1234@eurprd01.prod.exchangelabs.com>\" "
                 "\"<AM0PR01MB5678@eurprd01.prod.exchangelabs.com>\"))\r\n"
                 "A0007 NO [THROTTLED] Request is throttled. Suggested Backoff Time: 30000 "
                 "milliseconds\r\n"
                 "* BYE Connection is closed. 13\r\n",
                 sizeof subject - 1, subject);
    assert_true(n > 0 && (size_t)n < sizeof in);
    struct outcome o;
    parse_every_way(in, (size_t)n, TEST_MAX_LITERAL, TEST_MAX_LINE, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    /* a "[" inside the text is text, not a code */
    assert_int_equal(o.v[0]->code.kind, IMAP_CODE_NONE);
    const struct imap_envelope *e = &o.v[1]->fetch.envelope;
    assert_int_equal(o.v[1]->fetch.uid, 1234);
    assert_str(&e->subject, subject);
    assert_address(&e->from.items[0], "=?iso-8859-1?Q?Andr=E9_M=FCller?=", "andre", "example.com");
    assert_address(&e->to.items[0], "Ops", "ops", "contoso.onmicrosoft.com");
    assert_true(e->cc.is_nil);
    assert_str(&e->in_reply_to, "<AM0PR01MB1234@eurprd01.prod.exchangelabs.com>");
    assert_int_equal(o.v[2]->code.kind, IMAP_CODE_OTHER);
    assert_str(&o.v[2]->code.name, "THROTTLED");
    assert_str(&o.v[2]->text, "Request is throttled. Suggested Backoff Time: 30000 milliseconds");
    assert_int_equal(o.v[3]->cond, IMAP_COND_BYE);
    outcome_free(&o);
}

static void test_yahoo_capability_after_login_and_nil_in_odd_places(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* OK [CAPABILITY IMAP4rev1 ID MOVE NAMESPACE XYMHIGHESTMODSEQ UIDPLUS LITERAL+ "
              "CHILDREN X-MSG-EXT UNSELECT OBJECTID] IMAP4rev1 Hello\r\n"
              "* OK [CAPABILITY IMAP4rev1 ID MOVE NAMESPACE XYMHIGHESTMODSEQ UIDPLUS LITERAL+ "
              "CHILDREN X-MSG-EXT UNSELECT OBJECTID IDLE]\r\n"
              "A0002 OK LOGIN completed\r\n"
              "* 9 FETCH (UID 10 RFC822.SIZE 2048 INTERNALDATE NIL ENVELOPE (NIL \"\" "
              "((NIL NIL \"sender\" \"yahoo.com\")) NIL NIL ((NIL NIL \"me\" \"yahoo.com\") NIL) "
              "() NIL NIL NIL) BODY[] NIL)\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    assert_int_equal(o.v[1]->kind, IMAP_RESP_COND);
    assert_int_equal(o.v[1]->code.kind, IMAP_CODE_CAPABILITY);
    assert_true(imap_strlist_has(&o.v[1]->code.list, "IDLE"));
    assert_str(&o.v[1]->text, "");
    const struct imap_fetch *f = &o.v[3]->fetch;
    assert_int_equal(f->uid, 10);
    assert_nil(&f->internaldate);
    assert_nil(&f->envelope.date);
    assert_str(&f->envelope.subject, ""); /* "" is not NIL */
    assert_address(&f->envelope.from.items[0], NULL, "sender", "yahoo.com");
    assert_true(f->envelope.sender.is_nil);
    assert_true(f->envelope.reply_to.is_nil);
    assert_int_equal(f->envelope.to.n, 1); /* the NIL in place of an address is skipped */
    assert_false(f->envelope.cc.is_nil);   /* () is an empty list, not NIL */
    assert_int_equal(f->envelope.cc.n, 0);
    assert_true(f->envelope.bcc.is_nil);
    assert_nil(&f->envelope.message_id);
    assert_true(f->has & IMAP_FETCH_BODY);
    assert_nil(&f->body);
    outcome_free(&o);
}

/* ---- Literals ---- */

static char *make_message(size_t n)
{
    char *m = malloc(n);
    assert_non_null(m);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        m[i] = (char)(x & 0xff);
        if (i % 997 == 0)
            m[i] = '\0';
        if (i % 80 == 78 && i + 1 < n) {
            m[i] = '\r';
            m[++i] = '\n';
        }
    }
    return m;
}

static void test_one_mib_literal_with_nul_and_crlf_is_kept_exactly(void **state)
{
    (void)state;
    size_t len = (size_t)1 << 20;
    char *msg = make_message(len);
    char head[128];
    int hn = snprintf(head, sizeof head, "* 7 FETCH (UID 42 BODY[] {%zu}\r\n", len);
    static const char tail[] = " FLAGS (\\Seen))\r\nA0005 OK FETCH done\r\n";
    size_t n = (size_t)hn + len + sizeof tail - 1;
    char *in = malloc(n);
    assert_non_null(in);
    memcpy(in, head, (size_t)hn);
    memcpy(in + hn, msg, len);
    memcpy(in + hn + len, tail, sizeof tail - 1);

    struct outcome o;
    parse_every_way(in, n, len, 4096, 65521, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 2);
    const struct imap_fetch *f = &o.v[0]->fetch;
    assert_int_equal(f->uid, 42);
    assert_str(&f->body_section, "");
    assert_int_equal(f->body.len, len);
    assert_memory_equal(f->body.data, msg, len);
    assert_int_equal(f->flags.n, 1);
    assert_str(&o.v[1]->tag, "A0005");
    outcome_free(&o);

    /* the cuts right around the literal's first and last byte */
    for (size_t k = (size_t)hn - 3; k < (size_t)hn + 3; k++) {
        struct outcome a, b;
        feed_split(in, n, k, len, 4096, &a);
        feed_split(in, n, k + len, len, 4096, &b);
        assert_int_equal(a.rc, 0);
        assert_int_equal(b.rc, 0);
        assert_int_equal(a.n, 2);
        assert_int_equal(b.n, 2);
        assert_memory_equal(a.v[0]->fetch.body.data, msg, len);
        assert_memory_equal(b.v[0]->fetch.body.data, msg, len);
        outcome_free(&a);
        outcome_free(&b);
    }
    free(in);
    free(msg);
}

static void test_literal_exactly_at_limit_is_accepted(void **state)
{
    (void)state;
    static const char in[] = "* 1 FETCH (BODY[] {16}\r\n0123456789abcdef)\r\n";
    struct outcome o;
    parse_every_way(in, sizeof in - 1, 16, 4096, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 1);
    assert_str(&o.v[0]->fetch.body, "0123456789abcdef");
    outcome_free(&o);
}

static void test_literal_one_byte_over_limit_fails_before_its_bytes_arrive(void **state)
{
    (void)state;
    static const char in[] = "* 1 FETCH (BODY[] {17}\r\n";
    expect_failure(in, sizeof in - 1, 16, 4096, -SIMAP_ETOOBIG);
    /* nothing was allocated for it: only the line is held */
    struct imap_parser *p = imap_parser_new(16, 4096);
    size_t used;
    struct imap_response *r;
    assert_int_equal(imap_parse_feed(p, in, sizeof in - 1, &used, &r), -SIMAP_ETOOBIG);
    assert_int_equal(imap_parser_buffered(p), sizeof in - 1);
    assert_non_null(strstr(imap_parser_errstr(p), "17 bytes"));
    imap_parser_free(p);
}

static void test_huge_literal_counts_are_refused_without_allocating(void **state)
{
    (void)state;
    static const char *const ins[] = {
        "* 1 FETCH (BODY[] {99999999999999999999}\r\n",
        "* 1 FETCH (BODY[] {4294967296}\r\n",
        "* 1 FETCH (BODY[] {18446744073709551615}\r\n",
        "* 1 FETCH (BODY[] {18446744073709551616+}\r\n",
        "* LIST () \"/\" ~{1048577}\r\n",
    };
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++)
        expect_failure(ins[i], strlen(ins[i]), TEST_MAX_LITERAL, 4096, -SIMAP_ETOOBIG);
}

static void test_literal_forms_in_strings(void **state)
{
    (void)state;
    static const char in[] = "* LIST (\\HasNoChildren) \"/\" {5}\r\nIN\"BX\r\n"
                             "* LIST () NIL {4+}\r\na b \r\n"
                             "* LSUB () \".\" ~{3}\r\n\x01\x02\x03\r\n"
                             "* LIST () \"/\" {0}\r\n\r\n";
    struct outcome o;
    parse_every_way(in, sizeof in - 1, 4096, 4096, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    assert_int_equal(o.v[0]->kind, IMAP_RESP_LIST);
    assert_int_equal(o.v[0]->nvalues, 3);
    assert_int_equal(o.v[0]->values[0].type, IMAP_VALUE_LIST);
    assert_int_equal(o.v[0]->values[0].n, 1);
    assert_str(&o.v[0]->values[0].items[0].str, "\\HasNoChildren");
    assert_int_equal(o.v[0]->values[1].type, IMAP_VALUE_STRING);
    assert_str(&o.v[0]->values[2].str, "IN\"BX");
    assert_int_equal(o.v[1]->values[1].type, IMAP_VALUE_NIL);
    assert_str(&o.v[1]->values[2].str, "a b ");
    assert_int_equal(o.v[2]->kind, IMAP_RESP_LSUB);
    assert_str(&o.v[2]->values[2].str, "\x01\x02\x03");
    assert_str(&o.v[3]->values[2].str, "");
    outcome_free(&o);
}

static void test_literal_announcement_in_status_text_is_plain_text(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* OK see {5}\r\nA1 NO bad {3}\r\n+ go on {2}\r\n* LIST () \"/\" \"a {3}\"\r\n", &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    assert_str(&o.v[0]->text, "see {5}");
    assert_str(&o.v[1]->text, "bad {3}");
    assert_str(&o.v[2]->text, "go on {2}");
    assert_str(&o.v[3]->values[2].str, "a {3}");
    outcome_free(&o);
}

/* ---- Strings, codes, FETCH details ---- */

static void test_quoted_strings_unescape_and_keep_8bit_bytes(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* 3 FETCH (ENVELOPE (\"d\" \"a\\\"b\\\\c \xe9t\xc3\xa9 \\x\" NIL NIL NIL NIL NIL "
              "NIL \"\" NIL))\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 1);
    const struct imap_envelope *e = &o.v[0]->fetch.envelope;
    assert_str(&e->subject, "a\"b\\c \xe9t\xc3\xa9 \\x");
    assert_true(e->from.is_nil);
    assert_str(&e->in_reply_to, "");
    assert_nil(&e->message_id);
    outcome_free(&o);
}

static void test_every_rfc5530_code_is_recognised(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum imap_code_kind kind;
    } codes[] = {
        {"ALERT", IMAP_CODE_ALERT},
        {"LIMIT", IMAP_CODE_LIMIT},
        {"UNAVAILABLE", IMAP_CODE_UNAVAILABLE},
        {"AUTHENTICATIONFAILED", IMAP_CODE_AUTHENTICATIONFAILED},
        {"AUTHORIZATIONFAILED", IMAP_CODE_AUTHORIZATIONFAILED},
        {"EXPIRED", IMAP_CODE_EXPIRED},
        {"PRIVACYREQUIRED", IMAP_CODE_PRIVACYREQUIRED},
        {"CONTACTADMIN", IMAP_CODE_CONTACTADMIN},
        {"NOPERM", IMAP_CODE_NOPERM},
        {"INUSE", IMAP_CODE_INUSE},
        {"EXPUNGEISSUED", IMAP_CODE_EXPUNGEISSUED},
        {"CORRUPTION", IMAP_CODE_CORRUPTION},
        {"SERVERBUG", IMAP_CODE_SERVERBUG},
        {"CLIENTBUG", IMAP_CODE_CLIENTBUG},
        {"CANNOT", IMAP_CODE_CANNOT},
        {"OVERQUOTA", IMAP_CODE_OVERQUOTA},
        {"ALREADYEXISTS", IMAP_CODE_ALREADYEXISTS},
        {"NONEXISTENT", IMAP_CODE_NONEXISTENT},
        {"read-only", IMAP_CODE_READ_ONLY},
        {"TRYCREATE", IMAP_CODE_TRYCREATE},
        {"PARSE", IMAP_CODE_PARSE},
        {"NOMODSEQ", IMAP_CODE_NOMODSEQ},
        {"THROTTLED", IMAP_CODE_OTHER},
        {"WEBALERT", IMAP_CODE_OTHER},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char in[128];
        snprintf(in, sizeof in, "A9 NO [%s] text\r\n", codes[i].name);
        struct outcome o;
        parse_str(in, &o);
        assert_int_equal(o.rc, 0);
        assert_int_equal(o.n, 1);
        if (o.v[0]->code.kind != codes[i].kind)
            fail_msg("[%s] gave kind %d", codes[i].name, (int)o.v[0]->code.kind);
        assert_str(&o.v[0]->code.name, codes[i].name);
        assert_str(&o.v[0]->text, "text");
        outcome_free(&o);
    }
}

static void test_unknown_code_keeps_its_atom_and_argument(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* NO [WEBALERT https://accounts.google.com/signin/continue?x=1] Web login "
              "required.\r\n"
              "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
              "* OK [ALERT] System shutdown in 10 minutes\r\n"
              "* OK [BADCHARSET (UTF-8 US-ASCII)] x\r\n"
              "* OK [unterminated text\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 5);
    assert_int_equal(o.v[0]->cond, IMAP_COND_NO);
    assert_str(&o.v[0]->code.name, "WEBALERT");
    assert_str(&o.v[0]->code.arg, "https://accounts.google.com/signin/continue?x=1");
    assert_str(&o.v[0]->text, "Web login required.");
    assert_int_equal(o.v[1]->code.list.n, 3);
    assert_str(&o.v[1]->code.list.items[2], "\\*");
    assert_int_equal(o.v[2]->code.kind, IMAP_CODE_ALERT);
    assert_str(&o.v[2]->text, "System shutdown in 10 minutes");
    assert_int_equal(o.v[3]->code.kind, IMAP_CODE_BADCHARSET);
    assert_str(&o.v[3]->code.arg, "(UTF-8 US-ASCII)");
    assert_int_equal(o.v[4]->code.kind, IMAP_CODE_NONE);
    assert_str(&o.v[4]->text, "[unterminated text");
    outcome_free(&o);
}

static void test_continuation_forms(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("+\r\n+ \r\n+ Ready for literal data\r\n+ [ALERT] read this\r\n+YQ==\r\n", &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 5);
    for (size_t i = 0; i < o.n; i++)
        assert_int_equal(o.v[i]->kind, IMAP_RESP_CONTINUE);
    assert_str(&o.v[0]->text, "");
    assert_str(&o.v[1]->text, "");
    assert_str(&o.v[2]->text, "Ready for literal data");
    assert_int_equal(o.v[3]->code.kind, IMAP_CODE_ALERT);
    assert_str(&o.v[3]->text, "read this");
    assert_str(&o.v[4]->text, "YQ==");
    outcome_free(&o);
}

static void test_fetch_body_sections_origin_and_unknown_attributes(void **state)
{
    (void)state;
    static const char in[] =
        "* 2 FETCH (UID 7 BODY[HEADER.FIELDS (FROM \"TO\")]<0> {6}\r\nFrom:x "
        "BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"7BIT\" 3 1 NIL "
        "NIL NIL NIL)(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 9 1 NIL NIL NIL NIL) "
        "\"ALTERNATIVE\" (\"BOUNDARY\" \"b\") NIL NIL NIL) BINARY[1] ~{3}\r\n\x00\xff\x01 "
        "X-UNKNOWN[1.2]<5> NIL)\r\n"
        "* 3 FETCH (BODY.PEEK[] \"hi\" uid 9)\r\n"
        "* 4 FETCH (RFC822 {2}\r\nab RFC822.HEADER \"h\")\r\n"
        "* 5 FETCH ()\r\n";
    struct outcome o;
    parse_every_way(in, sizeof in - 1, 4096, 4096, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    const struct imap_fetch *f = &o.v[0]->fetch;
    assert_int_equal(f->has, IMAP_FETCH_UID | IMAP_FETCH_BODY | IMAP_FETCH_BODY_ORIGIN);
    assert_str(&f->body_section, "HEADER.FIELDS (FROM \"TO\")");
    assert_int_equal(f->body_origin, 0);
    assert_str(&f->body, "From:x");
    f = &o.v[1]->fetch;
    assert_int_equal(f->has, IMAP_FETCH_BODY | IMAP_FETCH_UID);
    assert_str(&f->body_section, "");
    assert_str(&f->body, "hi");
    assert_int_equal(f->uid, 9);
    f = &o.v[2]->fetch; /* the last body attribute wins */
    assert_str(&f->body_section, "HEADER");
    assert_str(&f->body, "h");
    assert_int_equal(o.v[3]->fetch.has, 0);
    outcome_free(&o);
}

static void test_search_status_and_other_untagged_data(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("* SEARCH 2 84 882\r\n"
              "* SEARCH\r\n"
              "* SEARCH 2 5 (MODSEQ 917162500)\r\n"
              "* STATUS \"INBOX\" (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1 X-FOO (a) UNSEEN 0 "
              "HIGHESTMODSEQ 7011231777)\r\n"
              "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
              "* ENABLED CONDSTORE\r\n"
              "* ID (\"name\" \"Dovecot\")\r\n"
              "* 3 VANISHED-ISH 1:*\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 8);
    assert_int_equal(o.v[0]->kind, IMAP_RESP_SEARCH);
    assert_int_equal(o.v[0]->search.n, 3);
    assert_int_equal(o.v[0]->search.items[2], 882);
    assert_int_equal(o.v[1]->search.n, 0);
    assert_int_equal(o.v[2]->search.n, 2);
    assert_int_equal(o.v[2]->search.modseq, 917162500);
    const struct imap_mailbox_status *st = &o.v[3]->status;
    assert_int_equal(o.v[3]->kind, IMAP_RESP_STATUS);
    assert_str(&st->mailbox, "INBOX");
    assert_int_equal(st->has, IMAP_STATUS_MESSAGES | IMAP_STATUS_UIDNEXT | IMAP_STATUS_UIDVALIDITY |
                                  IMAP_STATUS_UNSEEN | IMAP_STATUS_HIGHESTMODSEQ);
    assert_int_equal(st->messages, 231);
    assert_int_equal(st->uidnext, 44292);
    assert_int_equal(st->uidvalidity, 1);
    assert_int_equal(st->unseen, 0);
    assert_int_equal(st->highestmodseq, 7011231777ull);
    assert_str(&o.v[4]->status.mailbox, "blurdybloop");
    assert_int_equal(o.v[5]->kind, IMAP_RESP_OTHER);
    assert_str(&o.v[5]->name, "ENABLED");
    assert_int_equal(o.v[5]->nvalues, 1);
    assert_int_equal(o.v[6]->values[0].type, IMAP_VALUE_LIST);
    assert_str(&o.v[6]->values[0].items[1].str, "Dovecot");
    assert_true(o.v[7]->has_number);
    assert_int_equal(o.v[7]->number, 3);
    assert_str(&o.v[7]->values[0].str, "1:*");
    outcome_free(&o);
}

static void test_lenient_framing_bare_lf_empty_lines_and_extra_spaces(void **state)
{
    (void)state;
    struct outcome o;
    parse_str("\r\n\n* 4 EXISTS\n\r\n*  OK  [UIDNEXT 9]x\r\n* 1 FETCH ( UID 3  FLAGS ( \\Seen ) )  "
              "\r\nA1 OK\r\n",
              &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 4);
    assert_int_equal(o.v[0]->number, 4);
    assert_int_equal(o.v[1]->code.number, 9);
    assert_str(&o.v[1]->text, "x");
    assert_int_equal(o.v[2]->fetch.uid, 3);
    assert_str(&o.v[3]->text, "");
    outcome_free(&o);
}

static void test_feed_stops_after_each_response(void **state)
{
    (void)state;
    static const char in[] = "* 1 EXISTS\r\n* 2 EXISTS\r\n* 3 EX";
    struct imap_parser *p = imap_parser_new(64, 64);
    size_t used;
    struct imap_response *r;
    assert_int_equal(imap_parse_feed(p, in, sizeof in - 1, &used, &r), 0);
    assert_int_equal(used, 12);
    assert_int_equal(r->number, 1);
    imap_response_free(r);
    assert_int_equal(imap_parse_feed(p, in + 12, sizeof in - 13, &used, &r), 0);
    assert_int_equal(used, 12);
    assert_int_equal(r->number, 2);
    imap_response_free(r);
    assert_int_equal(imap_parse_feed(p, in + 24, sizeof in - 25, &used, &r), IMAP_AGAIN);
    assert_int_equal(used, 6);
    assert_null(r);
    assert_int_equal(imap_parser_buffered(p), 6);
    assert_int_equal(imap_parse_feed(p, "ISTS\r\n", 6, &used, &r), 0);
    assert_int_equal(r->number, 3);
    imap_response_free(r);
    assert_int_equal(imap_parser_buffered(p), 0); /* the watcher may free it now */
    imap_parser_free(p);
}

/* ---- Hostile input ---- */

static void test_empty_input_needs_more(void **state)
{
    (void)state;
    struct imap_parser *p = imap_parser_new(64, 64);
    size_t used = 99;
    struct imap_response *r;
    assert_int_equal(imap_parse_feed(p, NULL, 0, &used, &r), IMAP_AGAIN);
    assert_int_equal(used, 0);
    assert_null(r);
    assert_int_equal(imap_parse_feed(p, "", 0, &used, &r), IMAP_AGAIN);
    assert_int_equal(imap_parser_buffered(p), 0);
    assert_string_equal(imap_parser_errstr(p), "");
    imap_parser_free(p);
    assert_null(imap_parser_new(0, 64));
    assert_null(imap_parser_new(64, 0));
    assert_int_equal(imap_parse_feed(NULL, "x", 1, &used, &r), -SIMAP_EINVAL);
}

static void test_line_without_crlf_fails_once_past_max_line(void **state)
{
    (void)state;
    size_t max = 1000;
    char *in = malloc(max + 1);
    assert_non_null(in);
    memset(in, 'a', max + 1);
    in[0] = '*';
    in[1] = ' ';
    struct outcome o;
    parse_every_way(in, max, 64, max, 97, &o);
    assert_int_equal(o.rc, IMAP_AGAIN); /* exactly max bytes: still waiting */
    outcome_free(&o);
    expect_failure(in, max + 1, 64, max, -SIMAP_ETOOBIG);
    free(in);

    /* and a huge one fed in big pieces stops at the limit */
    size_t big = (size_t)4 << 20;
    char *h = malloc(big);
    assert_non_null(h);
    memset(h, 'x', big);
    struct imap_parser *p = imap_parser_new(64, TEST_MAX_LINE);
    size_t used;
    struct imap_response *r;
    assert_int_equal(imap_parse_feed(p, h, big, &used, &r), -SIMAP_ETOOBIG);
    assert_true(imap_parser_buffered(p) <= TEST_MAX_LINE);
    assert_int_equal(imap_parse_feed(p, "\r\n", 2, &used, &r), -SIMAP_ETOOBIG); /* sticky */
    imap_parser_reset(p);
    assert_int_equal(imap_parse_feed(p, "* 1 EXISTS\r\n", 12, &used, &r), 0);
    assert_int_equal(r->number, 1);
    imap_response_free(r);
    imap_parser_free(p);
    free(h);
}

static void test_nul_bytes_outside_literals_are_protocol_errors(void **state)
{
    (void)state;
    static const char atom[] = "* CAPABILITY IMAP4rev1 ID\0LE\r\n";
    static const char tag[] = "A\0001 OK done\r\n";
    static const char quoted[] = "* LIST () \"/\" \"IN\0BOX\"\r\n";
    expect_failure(atom, sizeof atom - 1, 64, 4096, -SIMAP_EPROTO);
    expect_failure(tag, sizeof tag - 1, 64, 4096, -SIMAP_EPROTO);
    expect_failure(quoted, sizeof quoted - 1, 64, 4096, -SIMAP_EPROTO);
}

static void test_thousand_deep_parentheses_are_refused(void **state)
{
    (void)state;
    char in[2100];
    size_t n = 0;
    n += (size_t)snprintf(in, sizeof in, "* LIST ");
    for (int i = 0; i < 1000; i++)
        in[n++] = '(';
    for (int i = 0; i < 1000; i++)
        in[n++] = ')';
    in[n++] = '\r';
    in[n++] = '\n';
    expect_failure(in, n, 64, 4096, -SIMAP_ETOOBIG);

    /* IMAP_MAX_DEPTH levels are fine, with a value in the deepest (the
     * fuzz driver's own depth check once took that for one level too many:
     * tests/fuzz/corpus_imap/depth-32-with-values) */
    n = (size_t)snprintf(in, sizeof in, "* LIST ");
    for (int i = 0; i < IMAP_MAX_DEPTH; i++)
        in[n++] = '(';
    in[n++] = 'x';
    for (int i = 0; i < IMAP_MAX_DEPTH; i++)
        in[n++] = ')';
    memcpy(in + n, "\r\n", 2);
    n += 2;
    struct outcome o;
    parse_every_way(in, n, 64, 4096, 1, &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.n, 1);
    outcome_free(&o);
}

static void test_unbalanced_parentheses_are_protocol_errors(void **state)
{
    (void)state;
    EXPECT_FAILURE("* LIST (a b\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* LIST (a))\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 1\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 1))\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (ENVELOPE (NIL NIL ((NIL NIL \"a\" \"b\") NIL NIL NIL NIL NIL NIL "
                   "NIL))\r\n",
                   -SIMAP_EPROTO);
    EXPECT_FAILURE("* FLAGS (\\Seen\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* OK [PERMANENTFLAGS (\\Seen] x\r\n", -SIMAP_EPROTO);
}

static void test_garbage_after_tag_is_a_protocol_error(void **state)
{
    (void)state;
    EXPECT_FAILURE("A001 HELLO world\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("A001\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("A001 OKAY\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("A001 PREAUTH x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("A\x01 OK x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("(x) OK\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("*\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* \r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 5\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 5 EXISTS now\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 1) x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* OK [] empty code\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* LIST () \"/\" \"x {3}\r\nabc\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* CAPABILITY IMAP4rev1 {3}\r\nabc\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 1 BODY[] {3}\r\nab", IMAP_AGAIN);
}

static void test_negative_and_overflowing_numbers_are_refused(void **state)
{
    (void)state;
    EXPECT_FAILURE("* -1 EXISTS\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 4294967296 EXISTS\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 99999999999999999999999 EXISTS\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 0 FETCH (UID 1)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 0 EXPUNGE\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 4294967296)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 0)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID -5)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (UID 12abc)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (RFC822.SIZE 18446744073709551616)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* OK [UIDVALIDITY 0] x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* OK [UIDNEXT 4294967296] x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* OK [UIDNEXT -1] x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* OK [UIDVALIDITY] x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* SEARCH 1 0\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* STATUS INBOX (UIDNEXT 4294967296)\r\n", -SIMAP_EPROTO);

    struct outcome o; /* the largest 32-bit UID is fine */
    parse_str("* 1 FETCH (UID 4294967295)\r\n", &o);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.v[0]->fetch.uid, 4294967295u);
    outcome_free(&o);
}

static void test_literal_where_none_is_allowed_or_misplaced_fails(void **state)
{
    (void)state;
    EXPECT_FAILURE("* 1 FETCH (UID {1}\r\n5)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (FLAGS {1}\r\nx)\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (BODY[] {3} x\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 1 FETCH (BODY[] {3x}\r\n", -SIMAP_EPROTO);
    EXPECT_FAILURE("* 5 EXISTS {2}\r\nab\r\n", -SIMAP_EPROTO);
}

static void test_error_is_sticky_until_reset(void **state)
{
    (void)state;
    struct imap_parser *p = imap_parser_new(64, 4096);
    size_t used;
    struct imap_response *r;
    assert_int_equal(imap_parse_feed(p, "A1 WHAT\r\n", 9, &used, &r), -SIMAP_EPROTO);
    assert_non_null(strstr(imap_parser_errstr(p), "at byte 3"));
    assert_int_equal(imap_parse_feed(p, "* 1 EXISTS\r\n", 12, &used, &r), -SIMAP_EPROTO);
    assert_null(r);
    imap_parser_reset(p);
    assert_string_equal(imap_parser_errstr(p), "");
    assert_int_equal(imap_parse_feed(p, "* 1 EXISTS\r\n", 12, &used, &r), 0);
    imap_response_free(r);
    imap_parser_free(p);
    imap_parser_free(NULL);
    imap_response_free(NULL);
}

static void test_response_equal_tells_responses_apart(void **state)
{
    (void)state;
    struct outcome a, b;
    parse_str("* 1 FETCH (UID 5 ENVELOPE (NIL \"\" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", &a);
    parse_str("* 1 FETCH (UID 5 ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n", &b);
    assert_true(imap_response_equal(a.v[0], a.v[0]));
    assert_false(imap_response_equal(a.v[0], b.v[0])); /* "" versus NIL */
    outcome_free(&a);
    outcome_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3501_section8_session_parses_every_server_line),
        cmocka_unit_test(test_rfc2177_idle_example),
        cmocka_unit_test(test_dovecot_greeting_login_and_examine),
        cmocka_unit_test(test_gmail_greeting_capability_and_xoauth2_failure),
        cmocka_unit_test(test_gmail_fetch_x_gm_attributes),
        cmocka_unit_test(test_qresync_select_answer_with_vanished_earlier),
        cmocka_unit_test(test_bad_vanished_responses_are_protocol_errors),
        cmocka_unit_test(test_status_with_some_items_only),
        cmocka_unit_test(test_list_with_special_use_attributes),
        cmocka_unit_test(test_outlook_envelope_with_encoded_words_and_literal_subject),
        cmocka_unit_test(test_yahoo_capability_after_login_and_nil_in_odd_places),
        cmocka_unit_test(test_one_mib_literal_with_nul_and_crlf_is_kept_exactly),
        cmocka_unit_test(test_literal_exactly_at_limit_is_accepted),
        cmocka_unit_test(test_literal_one_byte_over_limit_fails_before_its_bytes_arrive),
        cmocka_unit_test(test_huge_literal_counts_are_refused_without_allocating),
        cmocka_unit_test(test_literal_forms_in_strings),
        cmocka_unit_test(test_literal_announcement_in_status_text_is_plain_text),
        cmocka_unit_test(test_quoted_strings_unescape_and_keep_8bit_bytes),
        cmocka_unit_test(test_every_rfc5530_code_is_recognised),
        cmocka_unit_test(test_unknown_code_keeps_its_atom_and_argument),
        cmocka_unit_test(test_continuation_forms),
        cmocka_unit_test(test_fetch_body_sections_origin_and_unknown_attributes),
        cmocka_unit_test(test_search_status_and_other_untagged_data),
        cmocka_unit_test(test_lenient_framing_bare_lf_empty_lines_and_extra_spaces),
        cmocka_unit_test(test_feed_stops_after_each_response),
        cmocka_unit_test(test_empty_input_needs_more),
        cmocka_unit_test(test_line_without_crlf_fails_once_past_max_line),
        cmocka_unit_test(test_nul_bytes_outside_literals_are_protocol_errors),
        cmocka_unit_test(test_thousand_deep_parentheses_are_refused),
        cmocka_unit_test(test_unbalanced_parentheses_are_protocol_errors),
        cmocka_unit_test(test_garbage_after_tag_is_a_protocol_error),
        cmocka_unit_test(test_negative_and_overflowing_numbers_are_refused),
        cmocka_unit_test(test_literal_where_none_is_allowed_or_misplaced_fails),
        cmocka_unit_test(test_error_is_sticky_until_reset),
        cmocka_unit_test(test_response_equal_tells_responses_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
