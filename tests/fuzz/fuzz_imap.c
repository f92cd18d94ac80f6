/*
 * libFuzzer driver for proto/imap_parse, with a round trip through
 * proto/imap_cmd's quoting.
 *
 * 1. The input is parsed as a server's byte stream three ways: whole, in
 *    chunks whose sizes come from the input's own bytes, and (for inputs up
 *    to 2 KiB) byte by byte. All three must give equal responses and end
 *    the same way (same error, or the same "need more"), every response
 *    must satisfy the header's contract (strings NUL-terminated, UIDs and
 *    FETCH sequence numbers non-zero, no literal past the limit), and every
 *    response is freed, so a leak fails the run.
 * 2. The input's first two NUL-separated pieces become a user name and a
 *    password for imap_cmd_login() (LITERAL+ / LITERAL- from the first
 *    byte); the command, its tag replaced by "*", is parsed back and must
 *    give both strings unchanged.
 *
 * Small limits (4 KiB literals and lines) let the fuzzer reach the limit
 * paths. Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "proto/imap_cmd.h"
#include "proto/imap_parse.h"
#include "tests/unit/imap_equal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_LITERAL 4096
#define FUZZ_MAX_LINE    4096

static void check(int ok)
{
    if (!ok)
        abort();
}

/* ---- Contract checks ---- */

static void check_str(const struct imap_str *s)
{
    if (s->data == NULL)
        check(s->len == 0);
    else
        check(s->data[s->len] == '\0');
}

static void check_strlist(const struct imap_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        check(l->items[i].data != NULL);
        check_str(&l->items[i]);
    }
}

static void check_addrlist(const struct imap_addrlist *l)
{
    check(!l->is_nil || l->n == 0);
    for (size_t i = 0; i < l->n; i++) {
        check_str(&l->items[i].name);
        check_str(&l->items[i].adl);
        check_str(&l->items[i].mailbox);
        check_str(&l->items[i].host);
    }
}

/* depth: how many lists enclose v; a list among v is depth + 1 deep, and
 * none is deeper than IMAP_MAX_DEPTH. */
static void check_values(const struct imap_value *v, size_t n, int depth)
{
    for (size_t i = 0; i < n; i++) {
        check(v[i].type != IMAP_VALUE_LIST || depth + 1 <= IMAP_MAX_DEPTH);
        check_str(&v[i].str);
        check((v[i].str.data == NULL) ==
              (v[i].type == IMAP_VALUE_NIL || v[i].type == IMAP_VALUE_LIST));
        check(v[i].type == IMAP_VALUE_LIST || v[i].n == 0);
        check_values(v[i].items, v[i].n, depth + 1);
    }
}

static void check_response(const struct imap_response *r)
{
    check(r->kind >= IMAP_RESP_CONTINUE && r->kind <= IMAP_RESP_OTHER);
    check_str(&r->tag);
    check((r->kind == IMAP_RESP_TAGGED) == (r->tag.data != NULL));
    check_str(&r->code.name);
    check_str(&r->code.arg);
    check_strlist(&r->code.list);
    check(r->code.kind == IMAP_CODE_NONE || r->code.name.data != NULL);
    check_str(&r->text);
    check_strlist(&r->list);
    const struct imap_fetch *f = &r->fetch;
    if (r->kind == IMAP_RESP_FETCH)
        check(r->number != 0);
    if (f->has & IMAP_FETCH_UID)
        check(f->uid != 0);
    check_strlist(&f->flags);
    check_str(&f->internaldate);
    check_str(&f->envelope.date);
    check_str(&f->envelope.subject);
    check_addrlist(&f->envelope.from);
    check_addrlist(&f->envelope.sender);
    check_addrlist(&f->envelope.reply_to);
    check_addrlist(&f->envelope.to);
    check_addrlist(&f->envelope.cc);
    check_addrlist(&f->envelope.bcc);
    check_str(&f->envelope.in_reply_to);
    check_str(&f->envelope.message_id);
    check_str(&f->body);
    check(f->body.len <= (FUZZ_MAX_LITERAL > FUZZ_MAX_LINE ? FUZZ_MAX_LITERAL : FUZZ_MAX_LINE));
    check_str(&f->body_section);
    check(!(f->has & IMAP_FETCH_BODY) || f->body_section.data != NULL);
    check_strlist(&f->gm_labels);
    check(r->kind == IMAP_RESP_VANISHED || (r->vanished.n == 0 && !r->vanished.earlier));
    for (size_t i = 0; i < r->vanished.n; i++)
        check(r->vanished.ranges[i].first != 0 &&
              r->vanished.ranges[i].first <= r->vanished.ranges[i].last);
    check_str(&r->status.mailbox);
    for (size_t i = 0; i < r->search.n; i++)
        check(r->search.items[i] != 0);
    check_str(&r->name);
    check_values(r->values, r->nvalues, 0);
}

/* ---- Feeding ---- */

struct run {
    struct imap_response **v;
    size_t n, cap;
    int rc; /* first error, IMAP_AGAIN if bytes are held, else 0 */
};

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        imap_response_free(r->v[i]);
    free(r->v);
}

static void feed(struct imap_parser *p, const char *s, size_t n, struct run *r)
{
    while (r->rc == 0) {
        size_t used = 0;
        struct imap_response *resp = NULL;
        int rc = imap_parse_feed(p, s, n, &used, &resp);
        if (rc < 0) {
            check(resp == NULL);
            check(rc == -SIMAP_EPROTO || rc == -SIMAP_ETOOBIG);
            check(imap_parser_errstr(p)[0] != '\0');
            r->rc = rc;
            return;
        }
        if (rc == IMAP_AGAIN) {
            check(resp == NULL && used == n);
            return;
        }
        check(rc == 0 && resp != NULL && used <= n);
        check(imap_parser_buffered(p) == 0);
        check_response(resp);
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 16;
            r->v = realloc(r->v, r->cap * sizeof *r->v);
            check(r->v != NULL);
        }
        r->v[r->n++] = resp;
        s += used;
        n -= used;
        if (n == 0)
            return;
    }
}

/* how: 0 whole, 1 chunks sized by the input's bytes, 2 byte by byte. */
static void run_parse(const uint8_t *data, size_t size, int how, struct run *r)
{
    memset(r, 0, sizeof *r);
    struct imap_parser *p = imap_parser_new(FUZZ_MAX_LITERAL, FUZZ_MAX_LINE);
    check(p != NULL);
    const char *s = (const char *)data;
    size_t off = 0;
    for (size_t k = 0; off < size && r->rc == 0; k++) {
        size_t chunk = size - off;
        if (how == 1)
            chunk = 1 + ((size_t)data[(k * 7 + 3) % size] * 131 + k) % 257;
        else if (how == 2)
            chunk = 1;
        if (chunk > size - off)
            chunk = size - off;
        feed(p, s + off, chunk, r);
        off += chunk;
    }
    if (r->rc == 0 && imap_parser_buffered(p) > 0)
        r->rc = IMAP_AGAIN;
    imap_parser_free(p);
}

static void check_same(const struct run *a, const struct run *b)
{
    check(a->rc == b->rc);
    check(a->n == b->n);
    for (size_t i = 0; i < a->n; i++)
        check(imap_response_equal(a->v[i], b->v[i]));
}

/* ---- Quoting round trip ---- */

static void round_trip_login(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return;
    unsigned flags = data[0] & (IMAP_CMD_LITERAL_PLUS | IMAP_CMD_LITERAL_MINUS);
    char *copy = malloc(size + 1);
    check(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    const char *user = copy;
    const char *pass = copy + strlen(copy);
    if ((size_t)(pass - copy) < size - 1)
        pass++; /* after the first NUL */

    struct buf b;
    buf_init(&b, 65536);
    struct imap_cmd_sync sync;
    int rc = imap_cmd_login(&b, &sync, "A0001", user, pass, flags);
    check(rc == 0);
    check(sync.n <= 2);
    for (size_t i = 0; i < sync.n; i++)
        check(sync.at[i] >= 2 && sync.at[i] <= b.len && b.data[sync.at[i] - 1] == '\n' &&
              b.data[sync.at[i] - 3] == '}');
    b.data[4] = '*'; /* "A0001 LOGIN" -> "A000* LOGIN": an untagged response */
    struct imap_parser *p = imap_parser_new(65536, 65536);
    size_t used = 0;
    struct imap_response *r = NULL;
    rc = imap_parse_feed(p, b.data + 4, b.len - 4, &used, &r);
    check(rc == 0 && used == b.len - 4);
    check(r->kind == IMAP_RESP_OTHER && r->nvalues == 2);
    check(r->values[0].type == IMAP_VALUE_STRING && r->values[1].type == IMAP_VALUE_STRING);
    check(r->values[0].str.len == strlen(user));
    check(memcmp(r->values[0].str.data, user, strlen(user)) == 0);
    check(r->values[1].str.len == strlen(pass));
    check(memcmp(r->values[1].str.data, pass, strlen(pass)) == 0);
    imap_response_free(r);
    imap_parser_free(p);
    buf_free(&b);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run whole, chunked;
    run_parse(data, size, 0, &whole);
    run_parse(data, size, 1, &chunked);
    check_same(&whole, &chunked);
    run_free(&chunked);
    if (size <= 2048) {
        struct run bytes;
        run_parse(data, size, 2, &bytes);
        check_same(&whole, &bytes);
        run_free(&bytes);
    }
    run_free(&whole);
    round_trip_login(data, size);
    return 0;
}
