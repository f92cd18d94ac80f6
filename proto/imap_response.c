/*
 * proto/imap_response: the recursive-descent parser of one complete IMAP
 * response (RFC 3501 section 9 grammar, with RFC 2177, RFC 5530, RFC 7162,
 * RFC 7888, RFC 3516 and Gmail's X-GM-EXT-1 additions). proto/imap_parse's framer calls it once
 * the response's lines and literals are all buffered: it reads the text in
 * one pass and takes each literal's bytes over without copying them again.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/imap_parse_impl.h"

#include <stdint.h>
#include <string.h>

#include "core/err.h"

/* ---- Small helpers ---- */

static void str_set(struct imap_str *s, const char *p, size_t n)
{
    s->data = xmalloc(n + 1);
    if (n > 0)
        memcpy(s->data, p, n);
    s->data[n] = '\0';
    s->len = n;
}

/* Parses n decimal digits (n >= 1, nothing else) no greater than max. */
static int digits_value(const char *s, size_t n, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!imap_is_digit((unsigned char)s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (max - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* ---- Cursor ---- */

struct cursor {
    const char *base; /* start of the response text */
    const char *p;    /* next byte */
    const char *end;  /* one past the text's last byte (an LF) */
    struct imap_parser *ps;
    size_t lit_next; /* next literal to take from ps->lits */
    int depth;       /* open parentheses */
};

static int fail(struct cursor *c, int code, const char *why)
{
    return imap_set_error(c->ps, code, "%s at byte %zu of a response", why,
                          (size_t)(c->p - c->base));
}

/* A syntax error at the cursor: -SIMAP_EPROTO, the position in errstr. */
static int syntax_error(struct cursor *c, const char *why)
{
    return fail(c, -SIMAP_EPROTO, why);
}

static int cur(const struct cursor *c)
{
    return c->p < c->end ? (unsigned char)*c->p : -1;
}

static int at_eol(const struct cursor *c)
{
    int ch = cur(c);
    return ch == '\n' || (ch == '\r' && c->p + 1 < c->end && c->p[1] == '\n');
}

static int eat_eol(struct cursor *c)
{
    if (!at_eol(c))
        return syntax_error(c, "expected end of line");
    if (*c->p == '\r')
        c->p++;
    c->p++;
    return 0;
}

static void skip_sp(struct cursor *c)
{
    while (cur(c) == ' ')
        c->p++;
}

static int need_sp(struct cursor *c)
{
    if (cur(c) != ' ')
        return syntax_error(c, "expected a space");
    skip_sp(c);
    return 0;
}

static int open_paren(struct cursor *c)
{
    if (cur(c) != '(')
        return syntax_error(c, "expected (");
    if (c->depth >= IMAP_MAX_DEPTH)
        return fail(c, -SIMAP_ETOOBIG, "parentheses nested too deep");
    c->depth++;
    c->p++;
    return 0;
}

static int close_paren(struct cursor *c)
{
    if (cur(c) != ')')
        return syntax_error(c, "expected )");
    c->depth--;
    c->p++;
    return 0;
}

/* Scans an atom; returns its length (0 if none). */
static size_t scan_atom(struct cursor *c)
{
    const char *s = c->p;
    while (imap_is_atom_char(cur(c)))
        c->p++;
    return (size_t)(c->p - s);
}

static int parse_number(struct cursor *c, uint64_t max, uint64_t *v)
{
    const char *s = c->p;
    while (imap_is_digit(cur(c)))
        c->p++;
    if (c->p == s)
        return syntax_error(c, "expected a number");
    if (digits_value(s, (size_t)(c->p - s), max, v) < 0) {
        c->p = s;
        return syntax_error(c, "number out of range");
    }
    return 0;
}

/* A 32-bit number; nonzero: refuse 0 (nz-number: UIDs, sequence numbers). */
static int parse_u32(struct cursor *c, int nonzero, uint32_t *v)
{
    uint64_t x;
    const char *s = c->p;
    int rc = parse_number(c, UINT32_MAX, &x);
    if (rc < 0)
        return rc;
    if (nonzero && x == 0) {
        c->p = s;
        return syntax_error(c, "zero where a non-zero number is due");
    }
    *v = (uint32_t)x;
    return 0;
}

static int parse_quoted(struct cursor *c, struct imap_str *out)
{
    const char *s = ++c->p;
    size_t n = 0;
    for (;;) {
        int ch = cur(c);
        if (ch < 0 || ch == '\r' || ch == '\n')
            return syntax_error(c, "unterminated quoted string");
        if (ch == '"')
            break;
        if (ch == '\\') {
            int next = c->p + 1 < c->end ? (unsigned char)c->p[1] : -1;
            if (next < 0 || next == '\r' || next == '\n')
                return syntax_error(c, "unterminated quoted string");
            n += (next == '"' || next == '\\') ? 1 : 2; /* unknown escapes kept as sent */
            c->p += 2;
            continue;
        }
        n++;
        c->p++;
    }
    out->data = xmalloc(n + 1);
    out->len = n;
    size_t j = 0;
    for (const char *q = s; q < c->p; q++) {
        if (*q == '\\' && (q[1] == '"' || q[1] == '\\'))
            q++;
        else if (*q == '\\')
            out->data[j++] = *q++;
        out->data[j++] = *q;
    }
    out->data[j] = '\0';
    c->p++; /* the closing quote */
    return 0;
}

/* "{n}" / "{n+}" / "~{n}" CRLF: takes the next framed literal over. */
static int parse_literal(struct cursor *c, struct imap_str *out)
{
    uint64_t n;
    if (cur(c) == '~')
        c->p++;
    c->p++; /* "{" */
    int rc = parse_number(c, UINT64_MAX, &n);
    if (rc < 0)
        return rc;
    if (cur(c) == '+')
        c->p++;
    if (cur(c) != '}')
        return syntax_error(c, "bad literal announcement");
    c->p++;
    if (!at_eol(c))
        return syntax_error(c, "literal announcement not at end of line");
    if (c->lit_next >= c->ps->nlits)
        return syntax_error(c, "literal missing");
    struct literal *l = &c->ps->lits[c->lit_next];
    if (l->len != n)
        return syntax_error(c, "literal size mismatch");
    eat_eol(c);
    out->data = l->data;
    out->len = l->len;
    l->data = NULL;
    c->lit_next++;
    return 0;
}

#define STR_NIL  1 /* NIL is accepted (nstring) */
#define STR_ATOM 2 /* an atom is accepted (astring) */

static int parse_string(struct cursor *c, struct imap_str *out, int accept)
{
    int ch = cur(c);
    if (ch == '"')
        return parse_quoted(c, out);
    if (ch == '{' || (ch == '~' && c->p + 1 < c->end && c->p[1] == '{'))
        return parse_literal(c, out);
    const char *s = c->p;
    size_t n = scan_atom(c);
    if (n == 0)
        return syntax_error(c, "expected a string");
    if ((accept & STR_NIL) && imap_word_eq(s, n, "NIL")) {
        out->data = NULL;
        out->len = 0;
        return 0;
    }
    if (!(accept & STR_ATOM)) {
        c->p = s;
        return syntax_error(c, "expected a string");
    }
    str_set(out, s, n);
    return 0;
}

/* Any value: NIL, atom, string or parenthesised list (recursion bounded by
 * IMAP_MAX_DEPTH). On error what was parsed stays in v for imap_value_free(). */
static int parse_value(struct cursor *c, struct imap_value *v)
{
    int ch = cur(c);
    if (ch == '(') {
        int rc = open_paren(c);
        if (rc < 0)
            return rc;
        v->type = IMAP_VALUE_LIST;
        size_t cap = 0;
        for (;;) {
            skip_sp(c);
            if (cur(c) == ')')
                break;
            if (at_eol(c) || cur(c) < 0)
                return syntax_error(c, "unbalanced parenthesis");
            v->items = imap_grow_array(v->items, v->n, &cap, sizeof *v->items);
            memset(&v->items[v->n], 0, sizeof v->items[v->n]);
            rc = parse_value(c, &v->items[v->n++]);
            if (rc < 0)
                return rc;
        }
        return close_paren(c);
    }
    if (ch == '"' || ch == '{' || (ch == '~' && c->p + 1 < c->end && c->p[1] == '{')) {
        v->type = IMAP_VALUE_STRING;
        return parse_string(c, &v->str, 0);
    }
    const char *s = c->p;
    size_t n = scan_atom(c);
    if (n == 0)
        return syntax_error(c, "unexpected byte");
    if (imap_word_eq(s, n, "NIL")) {
        v->type = IMAP_VALUE_NIL;
        return 0;
    }
    v->type = IMAP_VALUE_ATOM;
    str_set(&v->str, s, n);
    return 0;
}

/* Values separated by spaces up to the end of the line (consumed). */
static int parse_values_to_eol(struct cursor *c, struct imap_value **vals, size_t *nvals)
{
    size_t cap = 0;
    for (;;) {
        skip_sp(c);
        if (at_eol(c))
            return eat_eol(c);
        if (cur(c) < 0)
            return syntax_error(c, "expected end of line");
        *vals = imap_grow_array(*vals, *nvals, &cap, sizeof **vals);
        memset(&(*vals)[*nvals], 0, sizeof **vals);
        int rc = parse_value(c, &(*vals)[(*nvals)++]);
        if (rc < 0)
            return rc;
    }
}

static void strlist_push(struct imap_strlist *l, size_t *cap, const char *s, size_t n)
{
    l->items = imap_grow_array(l->items, l->n, cap, sizeof *l->items);
    str_set(&l->items[l->n++], s, n);
}

/* Words of s (n bytes) separated by spaces, into l. */
static void split_words(struct imap_strlist *l, const char *s, size_t n)
{
    size_t cap = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < n && s[i] != ' ')
            i++;
        if (i > start)
            strlist_push(l, &cap, s + start, i - start);
    }
}

/* "(" [flag *(SP flag)] ")" */
static int parse_flag_list(struct cursor *c, struct imap_strlist *l)
{
    size_t cap = 0;
    int rc = open_paren(c);
    if (rc < 0)
        return rc;
    for (;;) {
        skip_sp(c);
        if (cur(c) == ')')
            return close_paren(c);
        const char *s = c->p;
        size_t n = scan_atom(c);
        if (n == 0)
            return syntax_error(c, "expected a flag");
        strlist_push(l, &cap, s, n);
    }
}

/* "(" [astring *(SP astring)] ")": X-GM-LABELS, atoms kept as sent. */
static int parse_astring_list(struct cursor *c, struct imap_strlist *l)
{
    size_t cap = 0;
    int rc = open_paren(c);
    if (rc < 0)
        return rc;
    for (;;) {
        skip_sp(c);
        if (cur(c) == ')')
            return close_paren(c);
        if (at_eol(c) || cur(c) < 0)
            return syntax_error(c, "unterminated list");
        l->items = imap_grow_array(l->items, l->n, &cap, sizeof *l->items);
        memset(&l->items[l->n], 0, sizeof l->items[l->n]);
        rc = parse_string(c, &l->items[l->n], STR_ATOM);
        if (rc < 0)
            return rc;
        l->n++;
    }
}

/* ---- Response codes and text ---- */

static const struct {
    const char *name;
    enum imap_code_kind kind;
} code_names[] = {
    {"ALERT", IMAP_CODE_ALERT},
    {"BADCHARSET", IMAP_CODE_BADCHARSET},
    {"CAPABILITY", IMAP_CODE_CAPABILITY},
    {"PARSE", IMAP_CODE_PARSE},
    {"PERMANENTFLAGS", IMAP_CODE_PERMANENTFLAGS},
    {"READ-ONLY", IMAP_CODE_READ_ONLY},
    {"READ-WRITE", IMAP_CODE_READ_WRITE},
    {"TRYCREATE", IMAP_CODE_TRYCREATE},
    {"UIDNEXT", IMAP_CODE_UIDNEXT},
    {"UIDVALIDITY", IMAP_CODE_UIDVALIDITY},
    {"UNSEEN", IMAP_CODE_UNSEEN},
    {"HIGHESTMODSEQ", IMAP_CODE_HIGHESTMODSEQ},
    {"NOMODSEQ", IMAP_CODE_NOMODSEQ},
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
    {"LIMIT", IMAP_CODE_LIMIT},
    {"OVERQUOTA", IMAP_CODE_OVERQUOTA},
    {"ALREADYEXISTS", IMAP_CODE_ALREADYEXISTS},
    {"NONEXISTENT", IMAP_CODE_NONEXISTENT},
};

/*
 * The code between "[" (exclusive) and close (the "]"): an atom, then an
 * optional argument kept raw and interpreted for the codes that carry data.
 */
static int parse_code(struct cursor *c, const char *close, struct imap_code *code)
{
    const char *s = c->p;
    while (c->p < close && *c->p != ' ')
        c->p++;
    size_t n = (size_t)(c->p - s);
    if (n == 0)
        return syntax_error(c, "empty response code");
    str_set(&code->name, s, n);
    code->kind = IMAP_CODE_OTHER;
    for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++) {
        if (imap_word_eq(s, n, code_names[i].name)) {
            code->kind = code_names[i].kind;
            break;
        }
    }
    const char *arg = NULL;
    size_t alen = 0;
    if (c->p < close) {
        while (c->p < close && *c->p == ' ')
            c->p++;
        arg = c->p;
        alen = (size_t)(close - arg);
        str_set(&code->arg, arg, alen);
    }
    uint64_t v;
    switch (code->kind) {
    case IMAP_CODE_UIDNEXT:
    case IMAP_CODE_UIDVALIDITY:
    case IMAP_CODE_UNSEEN:
        if (arg == NULL || digits_value(arg, alen, UINT32_MAX, &v) < 0 || v == 0)
            return syntax_error(c, "bad number in response code");
        code->number = (uint32_t)v;
        break;
    case IMAP_CODE_HIGHESTMODSEQ:
        if (arg == NULL || digits_value(arg, alen, UINT64_MAX, &v) < 0)
            return syntax_error(c, "bad HIGHESTMODSEQ");
        code->modseq = v;
        break;
    case IMAP_CODE_CAPABILITY:
        if (arg != NULL)
            split_words(&code->list, arg, alen);
        break;
    case IMAP_CODE_PERMANENTFLAGS:
        while (alen > 0 && arg[alen - 1] == ' ')
            alen--;
        if (arg == NULL || alen < 2 || arg[0] != '(' || arg[alen - 1] != ')')
            return syntax_error(c, "bad PERMANENTFLAGS");
        split_words(&code->list, arg + 1, alen - 2);
        break;
    default:
        break;
    }
    c->p = close + 1;
    return 0;
}

/*
 * resp-text up to the end of the line: ["[" code "]" [SP]] text. A "[" with
 * no "]" on the line is plain text.
 */
static int parse_resp_text(struct cursor *c, struct imap_response *r)
{
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    if (nl == NULL)
        return syntax_error(c, "expected end of line");
    const char *text_end = nl > c->p && nl[-1] == '\r' ? nl - 1 : nl;
    if (cur(c) == '[') {
        const char *close = memchr(c->p, ']', (size_t)(text_end - c->p));
        if (close != NULL) {
            c->p++;
            int rc = parse_code(c, close, &r->code);
            if (rc < 0)
                return rc;
            if (cur(c) == ' ')
                c->p++;
        }
    }
    if (c->p > text_end)
        c->p = text_end;
    str_set(&r->text, c->p, (size_t)(text_end - c->p));
    c->p = nl + 1;
    return 0;
}

/* After a status word: end of line (no text) or SP resp-text. */
static int parse_cond_rest(struct cursor *c, struct imap_response *r)
{
    if (at_eol(c)) {
        str_set(&r->text, "", 0);
        return eat_eol(c);
    }
    int rc = need_sp(c);
    if (rc < 0)
        return rc;
    return parse_resp_text(c, r);
}

/* ---- FETCH ---- */

/* Envelope strings: nstring, and an atom from a server that omits quotes. */
static int parse_env_string(struct cursor *c, struct imap_str *s)
{
    skip_sp(c);
    return parse_string(c, s, STR_NIL | STR_ATOM);
}

static int parse_address(struct cursor *c, struct imap_address *a)
{
    int rc = open_paren(c);
    if (rc == 0)
        rc = parse_env_string(c, &a->name);
    if (rc == 0)
        rc = parse_env_string(c, &a->adl);
    if (rc == 0)
        rc = parse_env_string(c, &a->mailbox);
    if (rc == 0)
        rc = parse_env_string(c, &a->host);
    if (rc < 0)
        return rc;
    skip_sp(c);
    return close_paren(c);
}

/* "(" 1*address ")" / NIL; an empty list and NIL in place of an address
 * (both seen from real servers) are tolerated, the latter skipped. */
static int parse_addrlist(struct cursor *c, struct imap_addrlist *l)
{
    skip_sp(c);
    if (cur(c) != '(') {
        const char *s = c->p;
        if (!imap_word_eq(s, scan_atom(c), "NIL")) {
            c->p = s;
            return syntax_error(c, "expected an address list");
        }
        l->is_nil = 1;
        return 0;
    }
    int rc = open_paren(c);
    if (rc < 0)
        return rc;
    size_t cap = 0;
    for (;;) {
        skip_sp(c);
        if (cur(c) == ')')
            return close_paren(c);
        if (cur(c) != '(') {
            const char *s = c->p;
            if (imap_word_eq(s, scan_atom(c), "NIL"))
                continue;
            c->p = s;
            return syntax_error(c, "expected an address");
        }
        l->items = imap_grow_array(l->items, l->n, &cap, sizeof *l->items);
        memset(&l->items[l->n], 0, sizeof l->items[l->n]);
        rc = parse_address(c, &l->items[l->n++]);
        if (rc < 0)
            return rc;
    }
}

static int parse_envelope(struct cursor *c, struct imap_envelope *e)
{
    struct imap_addrlist *lists[] = {&e->from, &e->sender, &e->reply_to, &e->to, &e->cc, &e->bcc};
    int rc = open_paren(c);
    if (rc == 0)
        rc = parse_env_string(c, &e->date);
    if (rc == 0)
        rc = parse_env_string(c, &e->subject);
    for (size_t i = 0; rc == 0 && i < sizeof lists / sizeof lists[0]; i++)
        rc = parse_addrlist(c, lists[i]);
    if (rc == 0)
        rc = parse_env_string(c, &e->in_reply_to);
    if (rc == 0)
        rc = parse_env_string(c, &e->message_id);
    if (rc < 0)
        return rc;
    skip_sp(c);
    return close_paren(c);
}

/* A fetch attribute's name: atom characters up to "[", "]" or "<". */
static int is_att_char(int ch)
{
    return imap_is_atom_char(ch) && ch != '[' && ch != ']' && ch != '<';
}

static int parse_att_body(struct cursor *c, struct imap_fetch *f, const char *sec, size_t seclen,
                          int has_origin, uint32_t origin)
{
    struct imap_str body = {NULL, 0};
    int rc = parse_string(c, &body, STR_NIL);
    if (rc < 0)
        return rc;
    imap_str_free(&f->body);
    imap_str_free(&f->body_section);
    f->body = body;
    str_set(&f->body_section, sec, seclen);
    f->has |= IMAP_FETCH_BODY;
    f->has &= ~IMAP_FETCH_BODY_ORIGIN;
    f->body_origin = 0;
    if (has_origin) {
        f->has |= IMAP_FETCH_BODY_ORIGIN;
        f->body_origin = origin;
    }
    return 0;
}

/* One "name[section]<origin> SP value" of a FETCH. */
static int parse_fetch_att(struct cursor *c, struct imap_fetch *f)
{
    const char *name = c->p;
    while (is_att_char(cur(c)))
        c->p++;
    size_t nlen = (size_t)(c->p - name);
    if (nlen == 0)
        return syntax_error(c, "expected a FETCH attribute");
    const char *sec = NULL;
    size_t seclen = 0;
    if (cur(c) == '[') {
        sec = ++c->p;
        while (cur(c) != ']') {
            if (cur(c) < 0 || *c->p == '\r' || *c->p == '\n')
                return syntax_error(c, "unterminated section");
            c->p++;
        }
        seclen = (size_t)(c->p - sec);
        c->p++;
    }
    int has_origin = 0;
    uint32_t origin = 0;
    if (cur(c) == '<') {
        c->p++;
        int rc = parse_u32(c, 0, &origin);
        if (rc < 0)
            return rc;
        if (cur(c) != '>')
            return syntax_error(c, "bad <origin>");
        c->p++;
        has_origin = 1;
    }
    int rc = need_sp(c);
    if (rc < 0)
        return rc;

    if (sec == NULL && imap_word_eq(name, nlen, "UID")) {
        rc = parse_u32(c, 1, &f->uid);
        f->has |= IMAP_FETCH_UID;
    } else if (sec == NULL && imap_word_eq(name, nlen, "FLAGS")) {
        imap_strlist_free(&f->flags);
        rc = parse_flag_list(c, &f->flags);
        f->has |= IMAP_FETCH_FLAGS;
    } else if (sec == NULL && imap_word_eq(name, nlen, "RFC822.SIZE")) {
        rc = parse_number(c, UINT64_MAX, &f->rfc822_size);
        f->has |= IMAP_FETCH_RFC822_SIZE;
    } else if (sec == NULL && imap_word_eq(name, nlen, "INTERNALDATE")) {
        imap_str_free(&f->internaldate);
        rc = parse_string(c, &f->internaldate, STR_NIL);
        f->has |= IMAP_FETCH_INTERNALDATE;
    } else if (sec == NULL && imap_word_eq(name, nlen, "ENVELOPE")) {
        imap_envelope_free(&f->envelope);
        rc = parse_envelope(c, &f->envelope);
        f->has |= IMAP_FETCH_ENVELOPE;
    } else if (sec != NULL &&
               (imap_word_eq(name, nlen, "BODY") || imap_word_eq(name, nlen, "BODY.PEEK"))) {
        rc = parse_att_body(c, f, sec, seclen, has_origin, origin);
    } else if (sec == NULL && imap_word_eq(name, nlen, "RFC822")) {
        rc = parse_att_body(c, f, "", 0, 0, 0);
    } else if (sec == NULL && imap_word_eq(name, nlen, "RFC822.HEADER")) {
        rc = parse_att_body(c, f, "HEADER", 6, 0, 0);
    } else if (sec == NULL && imap_word_eq(name, nlen, "RFC822.TEXT")) {
        rc = parse_att_body(c, f, "TEXT", 4, 0, 0);
    } else if (sec == NULL && imap_word_eq(name, nlen, "MODSEQ")) {
        rc = open_paren(c);
        if (rc == 0)
            rc = parse_number(c, UINT64_MAX, &f->modseq);
        if (rc == 0)
            rc = close_paren(c);
        f->has |= IMAP_FETCH_MODSEQ;
    } else if (sec == NULL && imap_word_eq(name, nlen, "X-GM-MSGID")) {
        rc = parse_number(c, UINT64_MAX, &f->gm_msgid);
        f->has |= IMAP_FETCH_GM_MSGID;
    } else if (sec == NULL && imap_word_eq(name, nlen, "X-GM-THRID")) {
        rc = parse_number(c, UINT64_MAX, &f->gm_thrid);
        f->has |= IMAP_FETCH_GM_THRID;
    } else if (sec == NULL && imap_word_eq(name, nlen, "X-GM-LABELS")) {
        imap_strlist_free(&f->gm_labels);
        rc = parse_astring_list(c, &f->gm_labels);
        f->has |= IMAP_FETCH_GM_LABELS;
    } else {
        struct imap_value skip;
        memset(&skip, 0, sizeof skip);
        rc = parse_value(c, &skip); /* BODYSTRUCTURE, X-GM-RAW, ... */
        imap_value_free(&skip);
    }
    return rc;
}

static int parse_msg_att(struct cursor *c, struct imap_fetch *f)
{
    int rc = open_paren(c);
    if (rc < 0)
        return rc;
    for (;;) {
        skip_sp(c);
        if (cur(c) == ')')
            return close_paren(c);
        if (at_eol(c) || cur(c) < 0)
            return syntax_error(c, "unterminated FETCH");
        rc = parse_fetch_att(c, f);
        if (rc < 0)
            return rc;
    }
}

/* ---- Untagged data ---- */

static int parse_search(struct cursor *c, struct imap_response *r)
{
    size_t cap = 0;
    for (;;) {
        skip_sp(c);
        if (at_eol(c))
            return eat_eol(c);
        if (cur(c) == '(') { /* RFC 7162: "(MODSEQ n)" */
            int rc = open_paren(c);
            if (rc < 0)
                return rc;
            skip_sp(c);
            const char *s = c->p;
            if (!imap_word_eq(s, scan_atom(c), "MODSEQ"))
                return syntax_error(c, "expected MODSEQ");
            rc = need_sp(c);
            if (rc == 0)
                rc = parse_number(c, UINT64_MAX, &r->search.modseq);
            if (rc < 0)
                return rc;
            skip_sp(c);
            rc = close_paren(c);
            if (rc < 0)
                return rc;
            continue;
        }
        uint32_t v = 0;
        int rc = parse_u32(c, 1, &v);
        if (rc < 0)
            return rc;
        if (cur(c) != ' ' && !at_eol(c))
            return syntax_error(c, "bad SEARCH number");
        r->search.items = imap_grow_array(r->search.items, r->search.n, &cap, sizeof v);
        r->search.items[r->search.n++] = v;
    }
}

/* One uid of a VANISHED set: a non-zero number ("*" means nothing there). */
static int parse_vanished_uid(struct cursor *c, uint32_t *v)
{
    if (cur(c) == '*')
        return syntax_error(c, "\"*\" in VANISHED");
    return parse_u32(c, 1, v);
}

/* SP ["(EARLIER)" SP] uid-set (RFC 7162 section 3.2.10), after "VANISHED". */
static int parse_vanished(struct cursor *c, struct imap_response *r)
{
    int rc = need_sp(c);
    if (rc < 0)
        return rc;
    if (cur(c) == '(') {
        rc = open_paren(c);
        if (rc < 0)
            return rc;
        const char *s = c->p;
        if (!imap_word_eq(s, scan_atom(c), "EARLIER")) {
            c->p = s;
            return syntax_error(c, "expected EARLIER");
        }
        rc = close_paren(c);
        if (rc == 0)
            rc = need_sp(c);
        if (rc < 0)
            return rc;
        r->vanished.earlier = 1;
    }
    size_t cap = 0;
    for (;;) {
        struct imap_uid_range range;
        rc = parse_vanished_uid(c, &range.first);
        range.last = range.first;
        if (rc == 0 && cur(c) == ':') {
            c->p++;
            rc = parse_vanished_uid(c, &range.last);
        }
        if (rc < 0)
            return rc;
        if (range.last < range.first) { /* "9:7" is the same set as "7:9" */
            uint32_t t = range.first;
            range.first = range.last;
            range.last = t;
        }
        r->vanished.ranges = imap_grow_array(r->vanished.ranges, r->vanished.n, &cap, sizeof range);
        r->vanished.ranges[r->vanished.n++] = range;
        if (cur(c) != ',')
            break;
        c->p++;
    }
    skip_sp(c);
    return eat_eol(c);
}

static int parse_status(struct cursor *c, struct imap_mailbox_status *st)
{
    int rc = need_sp(c);
    if (rc == 0)
        rc = parse_string(c, &st->mailbox, STR_ATOM);
    if (rc < 0)
        return rc;
    skip_sp(c);
    rc = open_paren(c);
    if (rc < 0)
        return rc;
    for (;;) {
        skip_sp(c);
        if (cur(c) == ')')
            break;
        const char *s = c->p;
        size_t n = scan_atom(c);
        if (n == 0)
            return syntax_error(c, "expected a STATUS item");
        rc = need_sp(c);
        if (rc < 0)
            return rc;
        static const struct {
            const char *name;
            unsigned bit;
        } items[] = {
            {"MESSAGES", IMAP_STATUS_MESSAGES}, {"RECENT", IMAP_STATUS_RECENT},
            {"UIDNEXT", IMAP_STATUS_UIDNEXT},   {"UIDVALIDITY", IMAP_STATUS_UIDVALIDITY},
            {"UNSEEN", IMAP_STATUS_UNSEEN},     {"HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ},
        };
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
            if (imap_word_eq(s, n, items[i].name))
                bit = items[i].bit;
        }
        uint32_t v = 0;
        if (bit == IMAP_STATUS_HIGHESTMODSEQ) {
            rc = parse_number(c, UINT64_MAX, &st->highestmodseq);
        } else if (bit != 0) {
            rc = parse_u32(c, bit == IMAP_STATUS_UIDNEXT || bit == IMAP_STATUS_UIDVALIDITY, &v);
        } else {
            struct imap_value skip;
            memset(&skip, 0, sizeof skip);
            rc = parse_value(c, &skip);
            imap_value_free(&skip);
        }
        if (rc < 0)
            return rc;
        st->has |= bit;
        if (bit == IMAP_STATUS_MESSAGES)
            st->messages = v;
        else if (bit == IMAP_STATUS_RECENT)
            st->recent = v;
        else if (bit == IMAP_STATUS_UIDNEXT)
            st->uidnext = v;
        else if (bit == IMAP_STATUS_UIDVALIDITY)
            st->uidvalidity = v;
        else if (bit == IMAP_STATUS_UNSEEN)
            st->unseen = v;
    }
    rc = close_paren(c);
    if (rc < 0)
        return rc;
    skip_sp(c);
    return eat_eol(c);
}

/* "* <number> <word> ...": EXISTS, RECENT, EXPUNGE, FETCH or other. */
static int parse_numbered(struct cursor *c, struct imap_response *r)
{
    int rc = parse_u32(c, 0, &r->number);
    if (rc == 0)
        rc = need_sp(c);
    if (rc < 0)
        return rc;
    const char *s = c->p;
    size_t n = scan_atom(c);
    if (imap_word_eq(s, n, "EXISTS")) {
        r->kind = IMAP_RESP_EXISTS;
    } else if (imap_word_eq(s, n, "RECENT")) {
        r->kind = IMAP_RESP_RECENT;
    } else if (imap_word_eq(s, n, "EXPUNGE") || imap_word_eq(s, n, "FETCH")) {
        r->kind = imap_word_eq(s, n, "FETCH") ? IMAP_RESP_FETCH : IMAP_RESP_EXPUNGE;
        if (r->number == 0) {
            c->p = s;
            return syntax_error(c, "message sequence number 0");
        }
        if (r->kind == IMAP_RESP_FETCH) {
            rc = need_sp(c);
            if (rc == 0)
                rc = parse_msg_att(c, &r->fetch);
            if (rc < 0)
                return rc;
        }
    } else if (n > 0) {
        r->kind = IMAP_RESP_OTHER;
        r->has_number = 1;
        str_set(&r->name, s, n);
        return parse_values_to_eol(c, &r->values, &r->nvalues);
    } else {
        return syntax_error(c, "expected a word after the number");
    }
    skip_sp(c);
    return eat_eol(c);
}

static int parse_untagged(struct cursor *c, struct imap_response *r)
{
    int rc = need_sp(c);
    if (rc < 0)
        return rc;
    if (imap_is_digit(cur(c)))
        return parse_numbered(c, r);
    const char *s = c->p;
    size_t n = scan_atom(c);
    if (n == 0 || imap_lower((unsigned char)*s) < 'a' || imap_lower((unsigned char)*s) > 'z') {
        c->p = s;
        return syntax_error(c, "expected a response name");
    }
    r->cond = imap_cond_from_word(s, n);
    if (r->cond != IMAP_COND_NONE) {
        r->kind = IMAP_RESP_COND;
        return parse_cond_rest(c, r);
    }
    if (imap_word_eq(s, n, "CAPABILITY")) {
        r->kind = IMAP_RESP_CAPABILITY;
        size_t cap = 0;
        for (;;) {
            skip_sp(c);
            if (at_eol(c))
                return eat_eol(c);
            const char *w = c->p;
            size_t wn = scan_atom(c);
            if (wn == 0)
                return syntax_error(c, "bad capability");
            strlist_push(&r->list, &cap, w, wn);
        }
    }
    if (imap_word_eq(s, n, "FLAGS")) {
        r->kind = IMAP_RESP_FLAGS;
        rc = need_sp(c);
        if (rc == 0)
            rc = parse_flag_list(c, &r->list);
        if (rc < 0)
            return rc;
        skip_sp(c);
        return eat_eol(c);
    }
    if (imap_word_eq(s, n, "SEARCH")) {
        r->kind = IMAP_RESP_SEARCH;
        return parse_search(c, r);
    }
    if (imap_word_eq(s, n, "STATUS")) {
        r->kind = IMAP_RESP_STATUS;
        return parse_status(c, &r->status);
    }
    if (imap_word_eq(s, n, "VANISHED")) {
        r->kind = IMAP_RESP_VANISHED;
        return parse_vanished(c, r);
    }
    if (imap_word_eq(s, n, "LIST"))
        r->kind = IMAP_RESP_LIST;
    else if (imap_word_eq(s, n, "LSUB"))
        r->kind = IMAP_RESP_LSUB;
    else
        r->kind = IMAP_RESP_OTHER;
    str_set(&r->name, s, n);
    return parse_values_to_eol(c, &r->values, &r->nvalues);
}

static int parse_response(struct cursor *c, struct imap_response *r)
{
    int ch = cur(c);
    if (ch == '+') {
        r->kind = IMAP_RESP_CONTINUE;
        c->p++;
        if (cur(c) == ' ')
            c->p++;
        return parse_resp_text(c, r);
    }
    if (ch == '*') {
        c->p++;
        return parse_untagged(c, r);
    }
    /* tag = 1*<any ASTRING-CHAR except "+"> */
    const char *s = c->p;
    while (imap_is_atom_char(cur(c)) && cur(c) != '+')
        c->p++;
    if (c->p == s)
        return syntax_error(c, "expected a tag");
    str_set(&r->tag, s, (size_t)(c->p - s));
    r->kind = IMAP_RESP_TAGGED;
    int rc = need_sp(c);
    if (rc < 0)
        return rc;
    const char *w = c->p;
    size_t n = scan_atom(c);
    r->cond = imap_cond_from_word(w, n);
    if (r->cond != IMAP_COND_OK && r->cond != IMAP_COND_NO && r->cond != IMAP_COND_BAD) {
        c->p = w;
        return syntax_error(c, "expected OK, NO or BAD after the tag");
    }
    return parse_cond_rest(c, r);
}

/* Parses the complete response held in p->text and p->lits into *out. */
int imap_response_parse(struct imap_parser *p, struct imap_response **out)
{
    struct cursor c = {p->text.data, p->text.data, p->text.data + p->text.len, p, 0, 0};
    struct imap_response *r = xcalloc(1, sizeof *r);
    int rc = parse_response(&c, r);
    if (rc == 0 && c.p != c.end)
        rc = syntax_error(&c, "bytes after the end of the response");
    if (rc == 0 && c.lit_next != p->nlits)
        rc = syntax_error(&c, "literal in a place that takes none");
    if (rc < 0) {
        imap_response_free(r);
        return rc;
    }
    *out = r;
    return 0;
}
