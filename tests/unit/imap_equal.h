/*
 * Deep comparison of parsed IMAP responses, for the tests and the fuzz driver
 * only (any split of the same bytes must give equal responses): not part of
 * proto/imap_parse's interface. Static functions: include it in one file.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_IMAP_EQUAL_H
#define TESTS_IMAP_EQUAL_H

#include <string.h>

#include "proto/imap_parse.h"

/* Returns 1 if a and b hold the same bytes, NIL equal only to NIL. */
static int imap_str_equal(const struct imap_str *a, const struct imap_str *b)
{
    if (a->data == NULL || b->data == NULL)
        return a->data == NULL && b->data == NULL;
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static int strlist_equal(const struct imap_strlist *a, const struct imap_strlist *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        if (!imap_str_equal(&a->items[i], &b->items[i]))
            return 0;
    }
    return 1;
}

static int addrlist_equal(const struct imap_addrlist *a, const struct imap_addrlist *b)
{
    if (a->is_nil != b->is_nil || a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct imap_address *x = &a->items[i], *y = &b->items[i];
        if (!imap_str_equal(&x->name, &y->name) || !imap_str_equal(&x->adl, &y->adl) ||
            !imap_str_equal(&x->mailbox, &y->mailbox) || !imap_str_equal(&x->host, &y->host))
            return 0;
    }
    return 1;
}

static int envelope_equal(const struct imap_envelope *a, const struct imap_envelope *b)
{
    return imap_str_equal(&a->date, &b->date) && imap_str_equal(&a->subject, &b->subject) &&
           addrlist_equal(&a->from, &b->from) && addrlist_equal(&a->sender, &b->sender) &&
           addrlist_equal(&a->reply_to, &b->reply_to) && addrlist_equal(&a->to, &b->to) &&
           addrlist_equal(&a->cc, &b->cc) && addrlist_equal(&a->bcc, &b->bcc) &&
           imap_str_equal(&a->in_reply_to, &b->in_reply_to) &&
           imap_str_equal(&a->message_id, &b->message_id);
}

static int values_equal(const struct imap_value *a, const struct imap_value *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].type != b[i].type || !imap_str_equal(&a[i].str, &b[i].str) || a[i].n != b[i].n ||
            !values_equal(a[i].items, b[i].items, a[i].n))
            return 0;
    }
    return 1;
}

/* Returns 1 if two responses hold the same data, field by field (deep), else
 * 0. */
static int imap_response_equal(const struct imap_response *a, const struct imap_response *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    const struct imap_fetch *fa = &a->fetch, *fb = &b->fetch;
    const struct imap_mailbox_status *sa = &a->status, *sb = &b->status;
    return a->kind == b->kind && imap_str_equal(&a->tag, &b->tag) && a->cond == b->cond &&
           a->code.kind == b->code.kind && imap_str_equal(&a->code.name, &b->code.name) &&
           imap_str_equal(&a->code.arg, &b->code.arg) && a->code.number == b->code.number &&
           a->code.modseq == b->code.modseq && strlist_equal(&a->code.list, &b->code.list) &&
           imap_str_equal(&a->text, &b->text) && a->number == b->number &&
           a->has_number == b->has_number && strlist_equal(&a->list, &b->list) &&
           fa->has == fb->has && fa->uid == fb->uid && strlist_equal(&fa->flags, &fb->flags) &&
           fa->rfc822_size == fb->rfc822_size &&
           imap_str_equal(&fa->internaldate, &fb->internaldate) &&
           envelope_equal(&fa->envelope, &fb->envelope) && imap_str_equal(&fa->body, &fb->body) &&
           imap_str_equal(&fa->body_section, &fb->body_section) &&
           fa->body_origin == fb->body_origin && fa->modseq == fb->modseq &&
           fa->gm_msgid == fb->gm_msgid && fa->gm_thrid == fb->gm_thrid &&
           strlist_equal(&fa->gm_labels, &fb->gm_labels) &&
           a->vanished.earlier == b->vanished.earlier && a->vanished.n == b->vanished.n &&
           (a->vanished.n == 0 || memcmp(a->vanished.ranges, b->vanished.ranges,
                                         a->vanished.n * sizeof *a->vanished.ranges) == 0) &&
           imap_str_equal(&sa->mailbox, &sb->mailbox) && sa->has == sb->has &&
           sa->messages == sb->messages && sa->recent == sb->recent && sa->uidnext == sb->uidnext &&
           sa->uidvalidity == sb->uidvalidity && sa->unseen == sb->unseen &&
           sa->highestmodseq == sb->highestmodseq && a->search.n == b->search.n &&
           (a->search.n == 0 ||
            memcmp(a->search.items, b->search.items, a->search.n * sizeof *a->search.items) == 0) &&
           a->search.modseq == b->search.modseq && imap_str_equal(&a->name, &b->name) &&
           a->nvalues == b->nvalues && values_equal(a->values, b->values, a->nvalues);
}

#endif
