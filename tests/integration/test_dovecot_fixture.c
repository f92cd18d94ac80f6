/*
 * The Dovecot fixture (dovecot.h) for several mailboxes per user, through a
 * raw IMAP client built on proto/imap_cmd and proto/imap_parse (so the new
 * commands and responses are proven against a real server): Dovecot
 * announces NOTIFY, SPECIAL-USE, CONDSTORE and QRESYNC; LIST RETURN
 * (SPECIAL-USE) shows Junk with \Junk exactly once after
 * dovecot_mailbox("create"), and not before; after NOTIFY SET, a delivery
 * into Junk (dovecot_deliver_to) during IDLE on INBOX gives
 * "* STATUS Junk (... UIDNEXT 2 ...)" and one into INBOX an EXISTS;
 * dovecot_deliver_to into a missing mailbox lands in INBOX, into INBOX it
 * stores the bytes dovecot_deliver stores; dovecot_status,
 * rename and delete; ENABLE QRESYNC then EXAMINE (QRESYNC (uv modseq))
 * answers an expunge with VANISHED (EARLIER) and the new mail with a FETCH;
 * UID FETCH ... (CHANGEDSINCE n) returns only what changed.
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
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "proto/imap_cmd.h"
#include "proto/imap_parse.h"
#include "tests/integration/dovecot.h"
#include "tests/integration/harness.h"

static struct dovecot dv;
static int have_dovecot;
static char skip_why[128];

#define NEED_DOVECOT() DOVECOT_NEED(have_dovecot, skip_why)

static int suite_setup(void **state)
{
    (void)state;
    have_dovecot = dovecot_available(skip_why, sizeof skip_why);
    if (!have_dovecot)
        return 0;
    return dovecot_start(&dv, 8);
}

static int suite_teardown(void **state)
{
    (void)state;
    if (have_dovecot)
        dovecot_stop(&dv);
    return 0;
}

/* ---- A raw IMAP client ---- */

struct client {
    int fd;
    struct imap_parser *p;
    struct imap_tagger tags;
    char tag[IMAP_TAG_SIZE];
    char in[8192]; /* read but not yet parsed: in[off..len) */
    size_t off, len;
};

/* The next response, waiting up to ms; NULL on a timeout or error. */
static struct imap_response *next_response(struct client *c, int ms)
{
    long long deadline = harness_now_ms() + harness_ms(ms);
    for (;;) {
        if (c->off < c->len) {
            size_t used = 0;
            struct imap_response *r = NULL;
            int rc = imap_parse_feed(c->p, c->in + c->off, c->len - c->off, &used, &r);
            c->off += used;
            if (rc < 0)
                fail_msg("parse error: %s", imap_parser_errstr(c->p));
            if (rc == 0)
                return r;
        }
        if (harness_now_ms() > deadline)
            return NULL;
        ssize_t n = read(c->fd, c->in, sizeof c->in); /* 1 s receive timeout */
        if (n == 0)
            fail_msg("server closed the connection");
        c->off = 0;
        c->len = n > 0 ? (size_t)n : 0;
    }
}

static void send_buf(struct client *c, struct buf *b)
{
    assert_int_equal(write(c->fd, b->data, b->len), (ssize_t)b->len);
    buf_reset(b);
}

/* Untagged responses up to the tagged answer of the last command. */
struct answer {
    struct imap_response *v[64];
    size_t n;
    struct imap_response *tagged;
};

static void answer_free(struct answer *a)
{
    for (size_t i = 0; i < a->n; i++)
        imap_response_free(a->v[i]);
    imap_response_free(a->tagged);
    memset(a, 0, sizeof *a);
}

/* Reads until the tagged answer to c->tag (10 s): fails the test on a
 * timeout; untagged ones past 64 are dropped. */
static void read_answer(struct client *c, struct answer *a)
{
    memset(a, 0, sizeof *a);
    for (;;) {
        struct imap_response *r = next_response(c, 10000);
        if (r == NULL)
            fail_msg("no answer to %s", c->tag);
        if (r->kind == IMAP_RESP_TAGGED && strcmp(r->tag.data, c->tag) == 0) {
            a->tagged = r;
            return;
        }
        if (a->n < sizeof a->v / sizeof a->v[0])
            a->v[a->n++] = r;
        else
            imap_response_free(r);
    }
}

/* Builds a command with call (which appends to cmd_ under the new tag, named
 * tag), sends it, reads its answer into *a and expects OK. */
#define COMMAND(c, a, call)                                    \
    do {                                                       \
        struct buf cmd_;                                       \
        buf_init(&cmd_, 4096);                                 \
        imap_tag_next(&(c)->tags, (c)->tag);                   \
        const char *tag = (c)->tag;                            \
        assert_int_equal((call), 0);                           \
        send_buf((c), &cmd_);                                  \
        buf_free(&cmd_);                                       \
        read_answer((c), (a));                                 \
        if ((a)->tagged->cond != IMAP_COND_OK)                 \
            fail_msg("%s: %s", #call, (a)->tagged->text.data); \
    } while (0)

static void client_open(struct client *c, const char *user, const char *pass)
{
    memset(c, 0, sizeof *c);
    c->fd = harness_connect_loopback(dv.port_plain);
    assert_true(c->fd >= 0);
    c->p = imap_parser_new(1 << 20, 65536);
    struct imap_response *greeting = next_response(c, 10000);
    assert_non_null(greeting);
    assert_int_equal(greeting->cond, IMAP_COND_OK);
    imap_response_free(greeting);
    struct answer a;
    COMMAND(c, &a, imap_cmd_login(&cmd_, NULL, tag, user, pass, 0));
    answer_free(&a);
}

static void client_close(struct client *c)
{
    close(c->fd);
    imap_parser_free(c->p);
}

/* How many LIST responses in a name mailbox name with attr among their
 * attributes (attr NULL: any). */
static int list_count(const struct answer *a, const char *name, const char *attr)
{
    int count = 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct imap_response *r = a->v[i];
        if (r->kind != IMAP_RESP_LIST || r->nvalues < 3 || r->values[2].str.data == NULL ||
            strcmp(r->values[2].str.data, name) != 0)
            continue;
        int has = attr == NULL;
        for (size_t k = 0; k < r->values[0].n; k++) {
            const struct imap_str *s = &r->values[0].items[k].str;
            if (attr != NULL && s->data != NULL && strcasecmp(s->data, attr) == 0)
                has = 1;
        }
        count += has;
    }
    return count;
}

static size_t make_mail(char *out, size_t outlen, const char *user, int n)
{
    int len = snprintf(out, outlen,
                       "From: sender@example.com\r\n"
                       "To: %s@example.com\r\n"
                       "Subject: mail %d\r\n"
                       "Message-ID: <f%d.%s@example.com>\r\n"
                       "\r\n"
                       "Body %d.\r\n",
                       user, n, n, user, n);
    return (size_t)len;
}

static void deliver_to(const char *user, const char *mailbox, int n)
{
    char mail[1024];
    size_t len = make_mail(mail, sizeof mail, user, n);
    assert_int_equal(dovecot_deliver_to(&dv, user, mailbox, mail, len), 0);
}

/* ---- Tests ---- */

static void test_capabilities_announce_notify_special_use_and_qresync(void **state)
{
    (void)state;
    NEED_DOVECOT();
    struct client c;
    client_open(&c, "user1", "pass1");
    struct answer a;
    COMMAND(&c, &a, imap_cmd_capability(&cmd_, tag));
    assert_int_equal(a.n, 1);
    assert_int_equal(a.v[0]->kind, IMAP_RESP_CAPABILITY);
    static const char *const want[] = {"NOTIFY",  "SPECIAL-USE", "CONDSTORE",
                                       "QRESYNC", "ENABLE",      "LIST-STATUS"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!imap_strlist_has(&a.v[0]->list, want[i]))
            fail_msg("Dovecot does not announce %s", want[i]);
    }
    answer_free(&a);
    client_close(&c);
}

static void test_list_shows_junk_with_its_attribute_once_it_exists(void **state)
{
    (void)state;
    NEED_DOVECOT();
    struct client c;
    client_open(&c, "user2", "pass2");
    struct answer a;
    COMMAND(&c, &a, imap_cmd_list_all(&cmd_, tag, 1));
    assert_int_equal(list_count(&a, "INBOX", NULL), 1);
    assert_int_equal(list_count(&a, "Junk", NULL), 0);
    answer_free(&a);
    unsigned long uidnext = 99, messages = 99;
    assert_int_equal(dovecot_status(&dv, "user2", "Junk", &uidnext, &messages), -1);

    assert_int_equal(dovecot_mailbox(&dv, "user2", "create", "Junk", NULL), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user2", "create", "Receipts", NULL), 0);
    COMMAND(&c, &a, imap_cmd_list_all(&cmd_, tag, 1));
    assert_int_equal(list_count(&a, "Junk", NULL), 1);
    assert_int_equal(list_count(&a, "Junk", "\\Junk"), 1);
    assert_int_equal(list_count(&a, "Receipts", NULL), 1);
    assert_int_equal(list_count(&a, "Receipts", "\\Junk"), 0);
    answer_free(&a);
    /* without RETURN (SPECIAL-USE) Dovecot still lists the attribute */
    COMMAND(&c, &a, imap_cmd_list_all(&cmd_, tag, 0));
    assert_int_equal(list_count(&a, "Junk", NULL), 1);
    answer_free(&a);
    assert_int_equal(dovecot_status(&dv, "user2", "Junk", &uidnext, &messages), 0);
    assert_int_equal(uidnext, 1);
    assert_int_equal(messages, 0);

    /* STATUS with and without HIGHESTMODSEQ, parsed */
    deliver_to("user2", "Junk", 1);
    COMMAND(&c, &a, imap_cmd_status(&cmd_, tag, "Junk", 1));
    assert_int_equal(a.n, 1);
    assert_int_equal(a.v[0]->kind, IMAP_RESP_STATUS);
    assert_string_equal(a.v[0]->status.mailbox.data, "Junk");
    assert_int_equal(a.v[0]->status.has,
                     IMAP_STATUS_UIDNEXT | IMAP_STATUS_UIDVALIDITY | IMAP_STATUS_HIGHESTMODSEQ);
    assert_int_equal(a.v[0]->status.uidnext, 2);
    assert_true(a.v[0]->status.highestmodseq > 0);
    answer_free(&a);
    COMMAND(&c, &a, imap_cmd_status(&cmd_, tag, "Receipts", 0));
    assert_int_equal(a.v[0]->status.has, IMAP_STATUS_UIDNEXT | IMAP_STATUS_UIDVALIDITY);
    answer_free(&a);

    /* rename and delete: LIST follows, doveadm status refuses the old name */
    assert_int_equal(dovecot_mailbox(&dv, "user2", "rename", "Receipts", "Bills"), 0);
    assert_int_equal(dovecot_status(&dv, "user2", "Receipts", NULL, NULL), -1);
    assert_int_equal(dovecot_status(&dv, "user2", "Bills", &uidnext, NULL), 0);
    assert_int_equal(dovecot_mailbox(&dv, "user2", "delete", "Junk", NULL), 0);
    COMMAND(&c, &a, imap_cmd_list_all(&cmd_, tag, 1));
    assert_int_equal(list_count(&a, "Junk", NULL), 0);
    assert_int_equal(list_count(&a, "Receipts", NULL), 0);
    assert_int_equal(list_count(&a, "Bills", NULL), 1);
    answer_free(&a);
    assert_int_equal(dovecot_mailbox(&dv, "user2", "move", "Bills", NULL), -1);
    client_close(&c);
}

/* Waits (10 s) for an untagged response that pred accepts; frees the rest. */
static int wait_untagged(struct client *c, int (*pred)(const struct imap_response *),
                         struct imap_response **got)
{
    long long deadline = harness_now_ms() + harness_ms(10000);
    while (harness_now_ms() < deadline) {
        struct imap_response *r = next_response(c, 500);
        if (r == NULL)
            continue;
        if (pred(r)) {
            *got = r;
            return 0;
        }
        imap_response_free(r);
    }
    return -1;
}

static int is_junk_status(const struct imap_response *r)
{
    return r->kind == IMAP_RESP_STATUS && strcmp(r->status.mailbox.data, "Junk") == 0;
}

static int is_exists(const struct imap_response *r)
{
    return r->kind == IMAP_RESP_EXISTS;
}

static void test_notify_reports_new_mail_in_junk_during_idle(void **state)
{
    (void)state;
    NEED_DOVECOT();
    assert_int_equal(dovecot_mailbox(&dv, "user3", "create", "Junk", NULL), 0);
    struct client c;
    client_open(&c, "user3", "pass3");
    struct answer a;
    COMMAND(&c, &a, imap_cmd_examine(&cmd_, NULL, tag, "INBOX", 0));
    answer_free(&a);
    const char *others[] = {"Junk"};
    COMMAND(&c, &a, imap_cmd_notify_set(&cmd_, tag, others, 1));
    answer_free(&a);

    struct buf b;
    buf_init(&b, 4096);
    imap_tag_next(&c.tags, c.tag);
    assert_int_equal(imap_cmd_idle(&b, c.tag), 0);
    send_buf(&c, &b);
    struct imap_response *r = next_response(&c, 10000);
    assert_non_null(r);
    assert_int_equal(r->kind, IMAP_RESP_CONTINUE);
    imap_response_free(r);

    deliver_to("user3", "Junk", 1);
    if (wait_untagged(&c, is_junk_status, &r) < 0)
        fail_msg("no * STATUS Junk after a delivery into Junk");
    assert_true(r->status.has & IMAP_STATUS_UIDNEXT);
    assert_int_equal(r->status.uidnext, 2);
    imap_response_free(r);
    unsigned long uidnext = 0, messages = 0;
    assert_int_equal(dovecot_status(&dv, "user3", "Junk", &uidnext, &messages), 0);
    assert_int_equal(uidnext, 2);
    assert_int_equal(messages, 1);
    assert_int_equal(dovecot_status(&dv, "user3", "INBOX", NULL, &messages), 0);
    assert_int_equal(messages, 0);

    deliver_to("user3", "INBOX", 2);
    if (wait_untagged(&c, is_exists, &r) < 0)
        fail_msg("no EXISTS after a delivery into INBOX");
    assert_int_equal(r->number, 1);
    imap_response_free(r);

    assert_int_equal(imap_cmd_done(&b), 0);
    send_buf(&c, &b);
    read_answer(&c, &a);
    assert_int_equal(a.tagged->cond, IMAP_COND_OK);
    answer_free(&a);
    buf_free(&b);
    client_close(&c);
}

static void test_lda_into_a_missing_mailbox_delivers_to_inbox(void **state)
{
    (void)state;
    NEED_DOVECOT();
    deliver_to("user4", "Junk", 1);
    unsigned long uidnext = 0, messages = 0;
    assert_int_equal(dovecot_status(&dv, "user4", "INBOX", &uidnext, &messages), 0);
    assert_int_equal(messages, 1);
    assert_int_equal(uidnext, 2);
    assert_int_equal(dovecot_status(&dv, "user4", "Junk", NULL, NULL), -1);
}

static void test_lda_into_inbox_stores_what_dovecot_deliver_stores(void **state)
{
    (void)state;
    NEED_DOVECOT();
    char mail[1024], by_lda[4096], by_save[4096];
    size_t len = make_mail(mail, sizeof mail, "user6", 1);
    assert_int_equal(dovecot_deliver_to(&dv, "user6", "INBOX", mail, len), 0);
    assert_int_equal(dovecot_deliver(&dv, "user7", mail, len), 0);
    assert_int_equal(dovecot_fetch(&dv, "user6", "uid size.physical text", by_lda, sizeof by_lda),
                     0);
    assert_int_equal(dovecot_fetch(&dv, "user7", "uid size.physical text", by_save, sizeof by_save),
                     0);
    assert_non_null(strstr(by_lda, "Subject: mail 1"));
    assert_string_equal(by_lda, by_save);
}

static int find_kind(const struct answer *a, enum imap_resp_kind kind)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i]->kind == kind)
            return (int)i;
    }
    return -1;
}

/* HIGHESTMODSEQ from an OK [HIGHESTMODSEQ n] of a, or 0. */
static uint64_t highestmodseq(const struct answer *a, uint32_t *uidvalidity)
{
    uint64_t m = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i]->code.kind == IMAP_CODE_HIGHESTMODSEQ)
            m = a->v[i]->code.modseq;
        if (a->v[i]->code.kind == IMAP_CODE_UIDVALIDITY)
            *uidvalidity = a->v[i]->code.number;
    }
    return m;
}

static void test_qresync_examine_gives_vanished_earlier_and_changed_mail(void **state)
{
    (void)state;
    NEED_DOVECOT();
    for (int i = 1; i <= 3; i++)
        deliver_to("user5", "INBOX", i);
    struct client c;
    client_open(&c, "user5", "pass5");
    struct answer a;
    COMMAND(&c, &a, imap_cmd_enable(&cmd_, tag, "QRESYNC"));
    int i = find_kind(&a, IMAP_RESP_OTHER);
    assert_true(i >= 0);
    assert_string_equal(a.v[i]->name.data, "ENABLED");
    answer_free(&a);
    COMMAND(&c, &a, imap_cmd_select_condstore(&cmd_, NULL, tag, "INBOX", 0));
    uint32_t uv = 0;
    uint64_t before = highestmodseq(&a, &uv);
    assert_true(before > 0 && uv != 0);
    answer_free(&a);

    /* UID 2 expunged in this session: VANISHED, not EXPUNGE, with QRESYNC */
    COMMAND(&c, &a, imap_cmd_uid_store_deleted(&cmd_, tag, 2));
    answer_free(&a);
    COMMAND(&c, &a, imap_cmd_uid_expunge(&cmd_, tag, 2));
    i = find_kind(&a, IMAP_RESP_VANISHED);
    assert_true(i >= 0);
    assert_int_equal(a.v[i]->vanished.earlier, 0);
    assert_int_equal(a.v[i]->vanished.n, 1);
    assert_int_equal(a.v[i]->vanished.ranges[0].first, 2);
    assert_int_equal(a.v[i]->vanished.ranges[0].last, 2);
    answer_free(&a);
    deliver_to("user5", "INBOX", 4);
    COMMAND(&c, &a, imap_cmd_noop(&cmd_, tag)); /* the session learns of UID 4 */
    assert_true(find_kind(&a, IMAP_RESP_EXISTS) >= 0);
    answer_free(&a);

    /* CHANGEDSINCE: only UID 4 changed since before (2 is gone) */
    COMMAND(&c, &a, imap_cmd_uid_fetch_envelopes_ext(&cmd_, tag, 1, 0, before));
    size_t fetches = 0;
    for (size_t k = 0; k < a.n; k++) {
        if (a.v[k]->kind != IMAP_RESP_FETCH)
            continue;
        fetches++;
        assert_int_equal(a.v[k]->fetch.uid, 4);
        assert_true(a.v[k]->fetch.has & IMAP_FETCH_MODSEQ);
        assert_true(a.v[k]->fetch.has & IMAP_FETCH_ENVELOPE);
        assert_string_equal(a.v[k]->fetch.envelope.subject.data, "mail 4");
    }
    assert_int_equal(fetches, 1);
    answer_free(&a);
    client_close(&c);

    /* a new session resyncs from before: VANISHED (EARLIER) 2 and UID 4 */
    client_open(&c, "user5", "pass5");
    COMMAND(&c, &a, imap_cmd_enable(&cmd_, tag, "QRESYNC"));
    answer_free(&a);
    COMMAND(&c, &a, imap_cmd_examine_qresync(&cmd_, NULL, tag, "INBOX", 0, uv, before));
    i = find_kind(&a, IMAP_RESP_VANISHED);
    assert_true(i >= 0);
    assert_int_equal(a.v[i]->vanished.earlier, 1);
    assert_int_equal(a.v[i]->vanished.n, 1);
    assert_int_equal(a.v[i]->vanished.ranges[0].first, 2);
    assert_int_equal(a.v[i]->vanished.ranges[0].last, 2);
    fetches = 0;
    for (size_t k = 0; k < a.n; k++) {
        if (a.v[k]->kind == IMAP_RESP_FETCH) {
            fetches++;
            assert_int_equal(a.v[k]->fetch.uid, 4);
            assert_true(a.v[k]->fetch.modseq > before);
        }
    }
    assert_int_equal(fetches, 1);
    answer_free(&a);
    client_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capabilities_announce_notify_special_use_and_qresync),
        cmocka_unit_test(test_list_shows_junk_with_its_attribute_once_it_exists),
        cmocka_unit_test(test_notify_reports_new_mail_in_junk_during_idle),
        cmocka_unit_test(test_lda_into_a_missing_mailbox_delivers_to_inbox),
        cmocka_unit_test(test_lda_into_inbox_stores_what_dovecot_deliver_stores),
        cmocka_unit_test(test_qresync_examine_gives_vanished_earlier_and_changed_mail),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
