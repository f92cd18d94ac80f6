/*
 * proto/mailboxes: mailbox lists (see mailboxes.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/mailboxes.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/json.h"

/* The attributes in the spelling we store, indexed by enum mailbox_special. */
static const char *const special_names[] = {
    [MB_INBOX] = "\\Inbox",   [MB_ALL] = "\\All",         [MB_ARCHIVE] = "\\Archive",
    [MB_DRAFTS] = "\\Drafts", [MB_FLAGGED] = "\\Flagged", [MB_JUNK] = "\\Junk",
    [MB_SENT] = "\\Sent",     [MB_TRASH] = "\\Trash",
};

/* An attribute echoed in a reason is at most this long. */
#define ECHO_MAX 64

enum mailbox_special mailbox_special_of(const char *attr, size_t len)
{
    if (attr == NULL)
        return MB_NAME;
    for (size_t k = MB_INBOX; k <= MB_TRASH; k++) {
        const char *s = special_names[k];
        if (strlen(s) == len && strncasecmp(s, attr, len) == 0)
            return (enum mailbox_special)k;
    }
    return MB_NAME;
}

void mailboxes_free(struct mailbox_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        xfree(l->items[i].name);
    xfree(l->items);
    l->items = NULL;
    l->n = 0;
}

int mailboxes_inbox_only(const struct mailbox_list *l)
{
    return l != NULL && l->n == 1 && l->items[0].special == MB_INBOX;
}

static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* 1 when s is printable ASCII: safe to echo in a reason, whatever length
 * the caller's buffer cuts it to. */
static int is_printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* Fills *spec from the string s of entry i, or writes why and returns
 * -SIMAP_EINVAL. */
static int read_entry(size_t i, const char *s, struct mailbox_spec *spec, char *why, size_t whylen)
{
    size_t n = strlen(s);
    if (n == 0) {
        snprintf(why, whylen, "mailboxes[%zu]: empty mailbox name", i);
        return -SIMAP_EINVAL;
    }
    if (n > MAILBOX_NAME_MAX) {
        snprintf(why, whylen, "mailboxes[%zu]: longer than %d bytes", i, MAILBOX_NAME_MAX);
        return -SIMAP_EINVAL;
    }
    if (!json_utf8_valid(s, n)) {
        snprintf(why, whylen, "mailboxes[%zu]: not valid UTF-8", i);
        return -SIMAP_EINVAL;
    }
    if (has_control(s, n)) {
        snprintf(why, whylen, "mailboxes[%zu]: control character in a mailbox name", i);
        return -SIMAP_EINVAL;
    }
    if (s[0] == '\\') {
        enum mailbox_special k = mailbox_special_of(s, n);
        if (k == MB_NAME) {
            if (n <= ECHO_MAX && is_printable_ascii(s))
                snprintf(why, whylen, "mailboxes[%zu]: unknown special-use attribute %s", i, s);
            else
                snprintf(why, whylen, "mailboxes[%zu]: unknown special-use attribute", i);
            return -SIMAP_EINVAL;
        }
        spec->special = k;
        spec->name = xstrdup(k == MB_INBOX ? "INBOX" : special_names[k]);
        return 0;
    }
    if (strcasecmp(s, "INBOX") == 0) {
        spec->special = MB_INBOX;
        spec->name = xstrdup("INBOX");
        return 0;
    }
    spec->special = MB_NAME;
    spec->name = xstrdup(s);
    return 0;
}

int mailboxes_from_value(yajl_val v, struct mailbox_list *out, char *why, size_t whylen)
{
    char scratch[1];
    if (why == NULL || whylen == 0) {
        why = scratch;
        whylen = sizeof scratch;
    }
    why[0] = '\0';
    if (out == NULL)
        return -SIMAP_EINVAL;
    out->items = NULL;
    out->n = 0;
    if (v == NULL || !YAJL_IS_ARRAY(v)) {
        snprintf(why, whylen, "mailboxes: must be an array of 1 to %d strings", MAILBOXES_MAX);
        return -SIMAP_EINVAL;
    }
    size_t n = v->u.array.len;
    if (n == 0 || n > MAILBOXES_MAX) {
        snprintf(why, whylen, "mailboxes: must hold 1 to %d entries, not %zu", MAILBOXES_MAX, n);
        return -SIMAP_EINVAL;
    }
    struct mailbox_list l = {xcalloc(n, sizeof *l.items), 0};
    for (size_t i = 0; i < n; i++) {
        yajl_val e = v->u.array.values[i];
        if (e == NULL || !YAJL_IS_STRING(e)) {
            snprintf(why, whylen, "mailboxes[%zu]: must be a string", i);
            goto fail;
        }
        struct mailbox_spec spec;
        if (read_entry(i, e->u.string, &spec, why, whylen) < 0)
            goto fail;
        for (size_t j = 0; j < l.n; j++) {
            if (strcmp(l.items[j].name, spec.name) == 0) {
                snprintf(why, whylen, "mailboxes[%zu]: the same mailbox as mailboxes[%zu]", i, j);
                xfree(spec.name);
                goto fail;
            }
        }
        l.items[l.n++] = spec;
    }
    *out = l;
    return 0;
fail:
    mailboxes_free(&l);
    return -SIMAP_EINVAL;
}

int mailboxes_parse(const char *json, size_t len, struct mailbox_list *out, char *why,
                    size_t whylen)
{
    char scratch[1];
    if (why == NULL || whylen == 0) {
        why = scratch;
        whylen = sizeof scratch;
    }
    why[0] = '\0';
    if (out == NULL)
        return -SIMAP_EINVAL;
    out->items = NULL;
    out->n = 0;
    if (json == NULL || len > MAILBOXES_JSON_MAX) {
        snprintf(why, whylen, "mailboxes: longer than %d bytes", MAILBOXES_JSON_MAX);
        return -SIMAP_EINVAL;
    }
    /* Depth 2 lets an array inside the array through to the clearer
     * "must be a string". */
    yajl_val v = NULL;
    char err[160];
    int rc = json_parse(json, len, 2, &v, err, sizeof err);
    if (rc < 0) {
        /* The parser's message may quote a key of the input. */
        const char *detail = rc == -SIMAP_ETOOBIG      ? "nested too deep"
                             : is_printable_ascii(err) ? err
                                                       : "not JSON";
        snprintf(why, whylen, "mailboxes: must be an array of 1 to %d strings (%s)", MAILBOXES_MAX,
                 detail);
        return -SIMAP_EINVAL;
    }
    rc = mailboxes_from_value(v, out, why, whylen);
    json_free(v);
    return rc;
}

char *mailboxes_to_json(const struct mailbox_list *l)
{
    if (l == NULL)
        return NULL;
    size_t room = 3;
    for (size_t i = 0; i < l->n; i++)
        room += 6 * strlen(l->items[i].name) + 3;
    struct json_gen *g = json_gen_new(room);
    json_gen_array_open(g);
    for (size_t i = 0; i < l->n; i++)
        json_gen_str(g, l->items[i].name);
    json_gen_array_close(g);
    char *out = NULL;
    int rc = json_gen_finish(g, &out, NULL);
    json_gen_free(g);
    return rc == 0 ? out : NULL;
}
