/*
 * proto/imap_free: releasing parsed IMAP responses and reading their lists.
 * The *_free helpers are shared with the parser (proto/imap_response), which
 * frees what it parsed on error.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/imap_parse_impl.h"

#include <string.h>

#include "core/err.h"

void imap_str_free(struct imap_str *s)
{
    xfree(s->data);
    s->data = NULL;
    s->len = 0;
}

void imap_strlist_free(struct imap_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        imap_str_free(&l->items[i]);
    xfree(l->items);
    l->items = NULL;
    l->n = 0;
}

void imap_value_free(struct imap_value *v)
{
    imap_str_free(&v->str);
    for (size_t i = 0; i < v->n; i++)
        imap_value_free(&v->items[i]);
    xfree(v->items);
    v->items = NULL;
    v->n = 0;
}

void imap_values_free(struct imap_value *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        imap_value_free(&vals[i]);
    xfree(vals);
}

void imap_addrlist_free(struct imap_addrlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        imap_str_free(&l->items[i].name);
        imap_str_free(&l->items[i].adl);
        imap_str_free(&l->items[i].mailbox);
        imap_str_free(&l->items[i].host);
    }
    xfree(l->items);
    l->items = NULL;
    l->n = 0;
    l->is_nil = 0;
}

void imap_envelope_free(struct imap_envelope *e)
{
    imap_str_free(&e->date);
    imap_str_free(&e->subject);
    imap_addrlist_free(&e->from);
    imap_addrlist_free(&e->sender);
    imap_addrlist_free(&e->reply_to);
    imap_addrlist_free(&e->to);
    imap_addrlist_free(&e->cc);
    imap_addrlist_free(&e->bcc);
    imap_str_free(&e->in_reply_to);
    imap_str_free(&e->message_id);
}

static void code_free(struct imap_code *code)
{
    imap_str_free(&code->name);
    imap_str_free(&code->arg);
    imap_strlist_free(&code->list);
}

void imap_response_free(struct imap_response *r)
{
    if (r == NULL)
        return;
    imap_str_free(&r->tag);
    code_free(&r->code);
    imap_str_free(&r->text);
    imap_strlist_free(&r->list);
    imap_strlist_free(&r->fetch.flags);
    imap_str_free(&r->fetch.internaldate);
    imap_envelope_free(&r->fetch.envelope);
    imap_str_free(&r->fetch.body);
    imap_str_free(&r->fetch.body_section);
    imap_strlist_free(&r->fetch.gm_labels);
    imap_str_free(&r->status.mailbox);
    xfree(r->search.items);
    xfree(r->vanished.ranges);
    imap_str_free(&r->name);
    imap_values_free(r->values, r->nvalues);
    xfree(r);
}

int imap_strlist_has(const struct imap_strlist *list, const char *name)
{
    if (list == NULL || name == NULL)
        return 0;
    for (size_t i = 0; i < list->n; i++) {
        if (imap_word_eq(list->items[i].data, list->items[i].len, name))
            return 1;
    }
    return 0;
}
