/*
 * proto/imap_parse: incremental IMAP response parser (RFC 3501 sections 7
 * and 9; RFC 2177, RFC 5530, RFC 7162, RFC 7888, RFC 3516).
 *
 * Two layers. The framer (imap_parse_feed) is the only resumable part: it
 * copies line text into one bounded buffer and literal bytes into their own
 * bounded buffers, deciding at each line end whether the response goes on
 * (the line ends in a literal announcement) or is complete. It looks at each
 * byte once, so any split of the input frames the same way. When a response
 * is complete, a recursive-descent parser reads the whole of it in one pass,
 * taking each literal's bytes over without copying them again.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/imap_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"

/* A line buffer grown past this is freed after its response, not kept. */
#define KEEP_TEXT_CAP 4096

enum frame_mode {
    MODE_UNKNOWN, /* the first line is not complete yet */
    MODE_TEXT,    /* tagged, status or continuation: one line, free text */
    MODE_DATA     /* untagged data: a line may end in a literal */
};

struct literal {
    char *data; /* NUL-terminated; NULL once taken by the response */
    size_t len;
};

/*
 * State of the response in progress. text holds its lines (CRLF kept) with
 * the literals left out; lits the literals, in order. While in_literal, the
 * next lit_left input bytes go to lit; then the next line starts at
 * seg_start. Invariants: text.len <= max_line, each literal <= max_literal,
 * lit_total <= max_literal + max_line.
 */
struct imap_parser {
    size_t max_literal;
    size_t max_line;
    int err;          /* sticky error, 0 when none */
    char errstr[128]; /* why, without the server's bytes */
    struct buf text;  /* the response's lines */
    size_t seg_start; /* offset in text of the line being read */
    enum frame_mode mode;
    int in_literal;  /* reading a literal's bytes */
    size_t lit_left; /* bytes of it still to come */
    struct buf lit;  /* the literal being read, bounded by its size */
    struct literal *lits;
    size_t nlits, lits_cap;
    size_t lit_total; /* bytes of all literals of this response */
};

/* ---- Errors ---- */

__attribute__((format(printf, 3, 4))) static int set_error(struct imap_parser *p, int code,
                                                           const char *fmt, ...)
{
    if (p->err != 0)
        return p->err;
    p->err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errstr, sizeof p->errstr, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- Small helpers ---- */

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

/* ASCII case-insensitive: s (n bytes) equals the C string word. */
static int word_eq(const char *s, size_t n, const char *word)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (word[i] == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)word[i]))
            return 0;
    }
    return word[i] == '\0';
}

/*
 * ATOM-CHAR of RFC 3501, widened as servers need: "\", "*", "%", "]" and
 * 8-bit bytes are allowed (flags, LIST patterns, sequence sets, keywords),
 * so it stops only at SP, controls, "(", ")", "{" and DQUOTE.
 */
static int is_atom_char(int ch)
{
    if (ch < 0 || ch <= 0x20 || ch == 0x7f)
        return 0;
    return ch != '(' && ch != ')' && ch != '{' && ch != '"';
}

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

static void str_set(struct imap_str *s, const char *p, size_t n)
{
    s->data = xmalloc(n + 1);
    if (n > 0)
        memcpy(s->data, p, n);
    s->data[n] = '\0';
    s->len = n;
}

static void str_free(struct imap_str *s)
{
    xfree(s->data);
    s->data = NULL;
    s->len = 0;
}

/* Makes room for one more element in *items (n in use, *cap allocated). */
static void *grow_array(void *items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    size_t ncap = *cap ? *cap * 2 : 4;
    *cap = ncap;
    return xrealloc(items, ncap * size);
}

/* Parses n decimal digits (n >= 1, nothing else) no greater than max. */
static int digits_value(const char *s, size_t n, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (max - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* ---- Framing ---- */

static enum imap_cond cond_from_word(const char *s, size_t n)
{
    if (word_eq(s, n, "OK"))
        return IMAP_COND_OK;
    if (word_eq(s, n, "NO"))
        return IMAP_COND_NO;
    if (word_eq(s, n, "BAD"))
        return IMAP_COND_BAD;
    if (word_eq(s, n, "PREAUTH"))
        return IMAP_COND_PREAUTH;
    if (word_eq(s, n, "BYE"))
        return IMAP_COND_BYE;
    return IMAP_COND_NONE;
}

/*
 * Classifies a response by its first line (n bytes, line end excluded),
 * reading the same tokens the parser reads: "+" and tags are one line of
 * text, "* OK|NO|BAD|PREAUTH|BYE" too, any other "*" line is data.
 */
static enum frame_mode classify(const char *s, size_t n)
{
    if (n == 0 || s[0] != '*')
        return MODE_TEXT;
    size_t i = 1;
    while (i < n && s[i] == ' ')
        i++;
    size_t start = i;
    while (i < n && is_atom_char((unsigned char)s[i]))
        i++;
    return cond_from_word(s + start, i - start) != IMAP_COND_NONE ? MODE_TEXT : MODE_DATA;
}

/*
 * Returns 1 if the line s (n bytes, line end excluded) ends in a literal
 * announcement "{n}", "{n+}" or "~{n}" outside any quoted string, storing
 * the size (saturated at UINT64_MAX) in *size; else 0. A line that ends
 * inside a quoted string announces nothing (the parser rejects it).
 */
static int literal_at_end(const char *s, size_t n, uint64_t *size)
{
    if (n < 3 || s[n - 1] != '}')
        return 0;
    int in_quote = 0;
    for (size_t i = 0; i < n; i++) {
        if (in_quote && s[i] == '\\' && i + 1 < n)
            i++;
        else if (s[i] == '"')
            in_quote = !in_quote;
    }
    if (in_quote)
        return 0;
    size_t end = n - 1; /* the "}" */
    if (s[end - 1] == '+')
        end--;
    size_t start = end;
    while (start > 0 && is_digit((unsigned char)s[start - 1]))
        start--;
    if (start == end || start == 0 || s[start - 1] != '{')
        return 0;
    uint64_t x = 0;
    for (size_t i = start; i < end; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    *size = x;
    return 1;
}

static void push_literal(struct imap_parser *p, char *data, size_t len)
{
    p->lits = grow_array(p->lits, p->nlits, &p->lits_cap, sizeof *p->lits);
    p->lits[p->nlits].data = data;
    p->lits[p->nlits].len = len;
    p->nlits++;
    p->lit_total += len;
}

static void finish_literal(struct imap_parser *p)
{
    size_t len = p->lit.len;
    push_literal(p, buf_steal(&p->lit), len);
    p->in_literal = 0;
    p->seg_start = p->text.len;
}

/* Forgets the response in progress (not the error), keeping small buffers. */
static void reset_response(struct imap_parser *p)
{
    if (p->text.cap > KEEP_TEXT_CAP)
        buf_free(&p->text);
    else
        buf_reset(&p->text);
    for (size_t i = 0; i < p->nlits; i++)
        xfree(p->lits[i].data);
    p->nlits = 0;
    p->lit_total = 0;
    buf_free(&p->lit);
    p->in_literal = 0;
    p->lit_left = 0;
    p->seg_start = 0;
    p->mode = MODE_UNKNOWN;
}

/*
 * Called when the line starting at seg_start is complete (its LF in text).
 * Returns 1 when the response is complete, 0 when it goes on (a literal
 * follows, or an empty line was skipped), or a negative error.
 */
static int end_of_line(struct imap_parser *p)
{
    const char *line = p->text.data + p->seg_start;
    size_t n = p->text.len - p->seg_start - 1; /* without the LF */
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (p->mode == MODE_UNKNOWN) {
        if (n == 0) { /* an empty line between responses */
            buf_reset(&p->text);
            return 0;
        }
        p->mode = classify(line, n);
    }
    uint64_t size;
    if (p->mode != MODE_DATA || !literal_at_end(line, n, &size))
        return 1;
    size_t room = p->max_literal + p->max_line;
    if (room < p->max_literal)
        room = SIZE_MAX;
    if (size > p->max_literal)
        return set_error(p, -SIMAP_ETOOBIG, "literal of %llu bytes over the limit of %zu",
                         (unsigned long long)size, p->max_literal);
    if (size > room - p->lit_total)
        return set_error(p, -SIMAP_ETOOBIG, "literals of one response over %zu bytes", room);
    buf_init(&p->lit, (size_t)size);
    p->in_literal = 1;
    p->lit_left = (size_t)size;
    if (size == 0)
        finish_literal(p);
    return 0;
}

/* ---- Parser of one complete response ---- */

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
    return set_error(c->ps, code, "%s at byte %zu of a response", why, (size_t)(c->p - c->base));
}

static int proto(struct cursor *c, const char *why)
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
        return proto(c, "expected end of line");
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
        return proto(c, "expected a space");
    skip_sp(c);
    return 0;
}

static int open_paren(struct cursor *c)
{
    if (cur(c) != '(')
        return proto(c, "expected (");
    if (c->depth >= IMAP_MAX_DEPTH)
        return fail(c, -SIMAP_ETOOBIG, "parentheses nested too deep");
    c->depth++;
    c->p++;
    return 0;
}

static int close_paren(struct cursor *c)
{
    if (cur(c) != ')')
        return proto(c, "expected )");
    c->depth--;
    c->p++;
    return 0;
}

/* Scans an atom; returns its length (0 if none). */
static size_t scan_atom(struct cursor *c)
{
    const char *s = c->p;
    while (is_atom_char(cur(c)))
        c->p++;
    return (size_t)(c->p - s);
}

static int parse_number(struct cursor *c, uint64_t max, uint64_t *v)
{
    const char *s = c->p;
    while (is_digit(cur(c)))
        c->p++;
    if (c->p == s)
        return proto(c, "expected a number");
    if (digits_value(s, (size_t)(c->p - s), max, v) < 0) {
        c->p = s;
        return proto(c, "number out of range");
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
        return proto(c, "zero where a non-zero number is due");
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
            return proto(c, "unterminated quoted string");
        if (ch == '"')
            break;
        if (ch == '\\') {
            int next = c->p + 1 < c->end ? (unsigned char)c->p[1] : -1;
            if (next < 0 || next == '\r' || next == '\n')
                return proto(c, "unterminated quoted string");
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
        return proto(c, "bad literal announcement");
    c->p++;
    if (!at_eol(c))
        return proto(c, "literal announcement not at end of line");
    if (c->lit_next >= c->ps->nlits)
        return proto(c, "literal missing");
    struct literal *l = &c->ps->lits[c->lit_next];
    if (l->len != n)
        return proto(c, "literal size mismatch");
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
        return proto(c, "expected a string");
    if ((accept & STR_NIL) && word_eq(s, n, "NIL")) {
        out->data = NULL;
        out->len = 0;
        return 0;
    }
    if (!(accept & STR_ATOM)) {
        c->p = s;
        return proto(c, "expected a string");
    }
    str_set(out, s, n);
    return 0;
}

static void value_free(struct imap_value *v)
{
    str_free(&v->str);
    for (size_t i = 0; i < v->n; i++)
        value_free(&v->items[i]);
    xfree(v->items);
    v->items = NULL;
    v->n = 0;
}

static void values_free(struct imap_value *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        value_free(&vals[i]);
    xfree(vals);
}

/* Any value: NIL, atom, string or parenthesised list (recursion bounded by
 * IMAP_MAX_DEPTH). On error what was parsed stays in v for value_free(). */
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
                return proto(c, "unbalanced parenthesis");
            v->items = grow_array(v->items, v->n, &cap, sizeof *v->items);
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
        return proto(c, "unexpected byte");
    if (word_eq(s, n, "NIL")) {
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
            return proto(c, "expected end of line");
        *vals = grow_array(*vals, *nvals, &cap, sizeof **vals);
        memset(&(*vals)[*nvals], 0, sizeof **vals);
        int rc = parse_value(c, &(*vals)[(*nvals)++]);
        if (rc < 0)
            return rc;
    }
}

static void strlist_free(struct imap_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        str_free(&l->items[i]);
    xfree(l->items);
    l->items = NULL;
    l->n = 0;
}

static void strlist_push(struct imap_strlist *l, size_t *cap, const char *s, size_t n)
{
    l->items = grow_array(l->items, l->n, cap, sizeof *l->items);
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
            return proto(c, "expected a flag");
        strlist_push(l, &cap, s, n);
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
        return proto(c, "empty response code");
    str_set(&code->name, s, n);
    code->kind = IMAP_CODE_OTHER;
    for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++) {
        if (word_eq(s, n, code_names[i].name)) {
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
            return proto(c, "bad number in response code");
        code->number = (uint32_t)v;
        break;
    case IMAP_CODE_HIGHESTMODSEQ:
        if (arg == NULL || digits_value(arg, alen, UINT64_MAX, &v) < 0)
            return proto(c, "bad HIGHESTMODSEQ");
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
            return proto(c, "bad PERMANENTFLAGS");
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
        return proto(c, "expected end of line");
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

static void envelope_free(struct imap_envelope *e);

static void addrlist_free(struct imap_addrlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        str_free(&l->items[i].name);
        str_free(&l->items[i].adl);
        str_free(&l->items[i].mailbox);
        str_free(&l->items[i].host);
    }
    xfree(l->items);
    l->items = NULL;
    l->n = 0;
    l->is_nil = 0;
}

static void envelope_free(struct imap_envelope *e)
{
    str_free(&e->date);
    str_free(&e->subject);
    addrlist_free(&e->from);
    addrlist_free(&e->sender);
    addrlist_free(&e->reply_to);
    addrlist_free(&e->to);
    addrlist_free(&e->cc);
    addrlist_free(&e->bcc);
    str_free(&e->in_reply_to);
    str_free(&e->message_id);
}

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
        if (!word_eq(s, scan_atom(c), "NIL")) {
            c->p = s;
            return proto(c, "expected an address list");
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
            if (word_eq(s, scan_atom(c), "NIL"))
                continue;
            c->p = s;
            return proto(c, "expected an address");
        }
        l->items = grow_array(l->items, l->n, &cap, sizeof *l->items);
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
    return is_atom_char(ch) && ch != '[' && ch != ']' && ch != '<';
}

static int parse_att_body(struct cursor *c, struct imap_fetch *f, const char *sec, size_t seclen,
                          int has_origin, uint32_t origin)
{
    struct imap_str body = {NULL, 0};
    int rc = parse_string(c, &body, STR_NIL);
    if (rc < 0)
        return rc;
    str_free(&f->body);
    str_free(&f->body_section);
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
        return proto(c, "expected a FETCH attribute");
    const char *sec = NULL;
    size_t seclen = 0;
    if (cur(c) == '[') {
        sec = ++c->p;
        while (cur(c) != ']') {
            if (cur(c) < 0 || *c->p == '\r' || *c->p == '\n')
                return proto(c, "unterminated section");
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
            return proto(c, "bad <origin>");
        c->p++;
        has_origin = 1;
    }
    int rc = need_sp(c);
    if (rc < 0)
        return rc;

    if (sec == NULL && word_eq(name, nlen, "UID")) {
        rc = parse_u32(c, 1, &f->uid);
        f->has |= IMAP_FETCH_UID;
    } else if (sec == NULL && word_eq(name, nlen, "FLAGS")) {
        strlist_free(&f->flags);
        rc = parse_flag_list(c, &f->flags);
        f->has |= IMAP_FETCH_FLAGS;
    } else if (sec == NULL && word_eq(name, nlen, "RFC822.SIZE")) {
        rc = parse_number(c, UINT64_MAX, &f->rfc822_size);
        f->has |= IMAP_FETCH_RFC822_SIZE;
    } else if (sec == NULL && word_eq(name, nlen, "INTERNALDATE")) {
        str_free(&f->internaldate);
        rc = parse_string(c, &f->internaldate, STR_NIL);
        f->has |= IMAP_FETCH_INTERNALDATE;
    } else if (sec == NULL && word_eq(name, nlen, "ENVELOPE")) {
        envelope_free(&f->envelope);
        rc = parse_envelope(c, &f->envelope);
        f->has |= IMAP_FETCH_ENVELOPE;
    } else if (sec != NULL && (word_eq(name, nlen, "BODY") || word_eq(name, nlen, "BODY.PEEK"))) {
        rc = parse_att_body(c, f, sec, seclen, has_origin, origin);
    } else if (sec == NULL && word_eq(name, nlen, "RFC822")) {
        rc = parse_att_body(c, f, "", 0, 0, 0);
    } else if (sec == NULL && word_eq(name, nlen, "RFC822.HEADER")) {
        rc = parse_att_body(c, f, "HEADER", 6, 0, 0);
    } else if (sec == NULL && word_eq(name, nlen, "RFC822.TEXT")) {
        rc = parse_att_body(c, f, "TEXT", 4, 0, 0);
    } else if (sec == NULL && word_eq(name, nlen, "MODSEQ")) {
        rc = open_paren(c);
        if (rc == 0)
            rc = parse_number(c, UINT64_MAX, &f->modseq);
        if (rc == 0)
            rc = close_paren(c);
        f->has |= IMAP_FETCH_MODSEQ;
    } else {
        struct imap_value skip;
        memset(&skip, 0, sizeof skip);
        rc = parse_value(c, &skip); /* BODYSTRUCTURE, X-GM-LABELS, ... */
        value_free(&skip);
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
            return proto(c, "unterminated FETCH");
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
            if (!word_eq(s, scan_atom(c), "MODSEQ"))
                return proto(c, "expected MODSEQ");
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
            return proto(c, "bad SEARCH number");
        r->search.items = grow_array(r->search.items, r->search.n, &cap, sizeof v);
        r->search.items[r->search.n++] = v;
    }
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
            return proto(c, "expected a STATUS item");
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
            if (word_eq(s, n, items[i].name))
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
            value_free(&skip);
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
    if (word_eq(s, n, "EXISTS")) {
        r->kind = IMAP_RESP_EXISTS;
    } else if (word_eq(s, n, "RECENT")) {
        r->kind = IMAP_RESP_RECENT;
    } else if (word_eq(s, n, "EXPUNGE") || word_eq(s, n, "FETCH")) {
        r->kind = word_eq(s, n, "FETCH") ? IMAP_RESP_FETCH : IMAP_RESP_EXPUNGE;
        if (r->number == 0) {
            c->p = s;
            return proto(c, "message sequence number 0");
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
        return proto(c, "expected a word after the number");
    }
    skip_sp(c);
    return eat_eol(c);
}

static int parse_untagged(struct cursor *c, struct imap_response *r)
{
    int rc = need_sp(c);
    if (rc < 0)
        return rc;
    if (is_digit(cur(c)))
        return parse_numbered(c, r);
    const char *s = c->p;
    size_t n = scan_atom(c);
    if (n == 0 || lower((unsigned char)*s) < 'a' || lower((unsigned char)*s) > 'z') {
        c->p = s;
        return proto(c, "expected a response name");
    }
    r->cond = cond_from_word(s, n);
    if (r->cond != IMAP_COND_NONE) {
        r->kind = IMAP_RESP_COND;
        return parse_cond_rest(c, r);
    }
    if (word_eq(s, n, "CAPABILITY")) {
        r->kind = IMAP_RESP_CAPABILITY;
        size_t cap = 0;
        for (;;) {
            skip_sp(c);
            if (at_eol(c))
                return eat_eol(c);
            const char *w = c->p;
            size_t wn = scan_atom(c);
            if (wn == 0)
                return proto(c, "bad capability");
            strlist_push(&r->list, &cap, w, wn);
        }
    }
    if (word_eq(s, n, "FLAGS")) {
        r->kind = IMAP_RESP_FLAGS;
        rc = need_sp(c);
        if (rc == 0)
            rc = parse_flag_list(c, &r->list);
        if (rc < 0)
            return rc;
        skip_sp(c);
        return eat_eol(c);
    }
    if (word_eq(s, n, "SEARCH")) {
        r->kind = IMAP_RESP_SEARCH;
        return parse_search(c, r);
    }
    if (word_eq(s, n, "STATUS")) {
        r->kind = IMAP_RESP_STATUS;
        return parse_status(c, &r->status);
    }
    if (word_eq(s, n, "LIST"))
        r->kind = IMAP_RESP_LIST;
    else if (word_eq(s, n, "LSUB"))
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
    while (is_atom_char(cur(c)) && cur(c) != '+')
        c->p++;
    if (c->p == s)
        return proto(c, "expected a tag");
    str_set(&r->tag, s, (size_t)(c->p - s));
    r->kind = IMAP_RESP_TAGGED;
    int rc = need_sp(c);
    if (rc < 0)
        return rc;
    const char *w = c->p;
    size_t n = scan_atom(c);
    r->cond = cond_from_word(w, n);
    if (r->cond != IMAP_COND_OK && r->cond != IMAP_COND_NO && r->cond != IMAP_COND_BAD) {
        c->p = w;
        return proto(c, "expected OK, NO or BAD after the tag");
    }
    return parse_cond_rest(c, r);
}

/* Parses the complete response held in p->text and p->lits into *out. */
static int parse_complete(struct imap_parser *p, struct imap_response **out)
{
    struct cursor c = {p->text.data, p->text.data, p->text.data + p->text.len, p, 0, 0};
    struct imap_response *r = xcalloc(1, sizeof *r);
    int rc = parse_response(&c, r);
    if (rc == 0 && c.p != c.end)
        rc = proto(&c, "bytes after the end of the response");
    if (rc == 0 && c.lit_next != p->nlits)
        rc = proto(&c, "literal in a place that takes none");
    if (rc < 0) {
        imap_response_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- Public API ---- */

struct imap_parser *imap_parser_new(size_t max_literal, size_t max_line)
{
    if (max_literal == 0 || max_line == 0)
        return NULL;
    struct imap_parser *p = xcalloc(1, sizeof *p);
    p->max_literal = max_literal;
    p->max_line = max_line;
    buf_init(&p->text, max_line);
    buf_init(&p->lit, 0);
    p->mode = MODE_UNKNOWN;
    return p;
}

void imap_parser_free(struct imap_parser *p)
{
    if (p == NULL)
        return;
    reset_response(p);
    buf_free(&p->text);
    xfree(p->lits);
    xfree(p);
}

void imap_parser_reset(struct imap_parser *p)
{
    if (p == NULL)
        return;
    reset_response(p);
    p->err = 0;
    p->errstr[0] = '\0';
}

void imap_parser_shrink(struct imap_parser *p)
{
    if (p == NULL || p->text.len != 0 || p->in_literal || p->nlits != 0)
        return;
    buf_free(&p->text);
    xfree(p->lits);
    p->lits = NULL;
    p->lits_cap = 0;
}

const char *imap_parser_errstr(const struct imap_parser *p)
{
    return p != NULL ? p->errstr : "";
}

size_t imap_parser_buffered(const struct imap_parser *p)
{
    return p != NULL ? p->text.len + p->lit.len + p->lit_total : 0;
}

int imap_parse_feed(struct imap_parser *p, const char *data, size_t n, size_t *consumed,
                    struct imap_response **out)
{
    if (p == NULL || consumed == NULL || out == NULL || (data == NULL && n > 0))
        return -SIMAP_EINVAL;
    *out = NULL;
    *consumed = 0;
    if (p->err != 0)
        return p->err;
    size_t i = 0;
    while (i < n) {
        if (p->in_literal) {
            size_t take = n - i < p->lit_left ? n - i : p->lit_left;
            if (buf_append(&p->lit, data + i, take) < 0) /* cannot happen: max is its size */
                return set_error(p, -SIMAP_ETOOBIG, "literal overflow");
            i += take;
            p->lit_left -= take;
            if (p->lit_left == 0)
                finish_literal(p);
            continue;
        }
        const char *nl = memchr(data + i, '\n', n - i);
        size_t chunk = nl != NULL ? (size_t)(nl - (data + i)) + 1 : n - i;
        /* Which error wins depends on byte positions only, never on how
         * the input was split: a NUL within the limit, else the first byte
         * past it. */
        size_t room = p->max_line - p->text.len;
        if (memchr(data + i, '\0', chunk < room ? chunk : room) != NULL)
            return set_error(p, -SIMAP_EPROTO, "NUL byte outside a literal");
        if (chunk > room || buf_append(&p->text, data + i, chunk) < 0)
            return set_error(p, -SIMAP_ETOOBIG, "response text longer than %zu bytes", p->max_line);
        i += chunk;
        if (nl == NULL)
            break;
        int rc = end_of_line(p);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            rc = parse_complete(p, out);
            reset_response(p);
            *consumed = i;
            return rc;
        }
    }
    *consumed = n;
    return IMAP_AGAIN;
}

/* ---- Freeing and comparing ---- */

static void code_free(struct imap_code *code)
{
    str_free(&code->name);
    str_free(&code->arg);
    strlist_free(&code->list);
}

void imap_response_free(struct imap_response *r)
{
    if (r == NULL)
        return;
    str_free(&r->tag);
    code_free(&r->code);
    str_free(&r->text);
    strlist_free(&r->list);
    strlist_free(&r->fetch.flags);
    str_free(&r->fetch.internaldate);
    envelope_free(&r->fetch.envelope);
    str_free(&r->fetch.body);
    str_free(&r->fetch.body_section);
    str_free(&r->status.mailbox);
    xfree(r->search.items);
    str_free(&r->name);
    values_free(r->values, r->nvalues);
    xfree(r);
}

int imap_strlist_has(const struct imap_strlist *list, const char *name)
{
    if (list == NULL || name == NULL)
        return 0;
    for (size_t i = 0; i < list->n; i++) {
        if (word_eq(list->items[i].data, list->items[i].len, name))
            return 1;
    }
    return 0;
}

int imap_str_equal(const struct imap_str *a, const struct imap_str *b)
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

int imap_response_equal(const struct imap_response *a, const struct imap_response *b)
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
           imap_str_equal(&sa->mailbox, &sb->mailbox) && sa->has == sb->has &&
           sa->messages == sb->messages && sa->recent == sb->recent && sa->uidnext == sb->uidnext &&
           sa->uidvalidity == sb->uidvalidity && sa->unseen == sb->unseen &&
           sa->highestmodseq == sb->highestmodseq && a->search.n == b->search.n &&
           (a->search.n == 0 ||
            memcmp(a->search.items, b->search.items, a->search.n * sizeof *a->search.items) == 0) &&
           a->search.modseq == b->search.modseq && imap_str_equal(&a->name, &b->name) &&
           a->nvalues == b->nvalues && values_equal(a->values, b->values, a->nvalues);
}
