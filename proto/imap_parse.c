/*
 * proto/imap_parse: incremental IMAP response parser (RFC 3501 sections 7
 * and 9; RFC 2177, RFC 5530, RFC 7162, RFC 7888, RFC 3516).
 *
 * Two layers. The framer (this file, imap_parse_feed) is the only resumable
 * part: it copies line text into one bounded buffer and literal bytes into
 * their own bounded buffers, deciding at each line end whether the response
 * goes on (the line ends in a literal announcement) or is complete. It looks
 * at each byte once, so any split of the input frames the same way. When a
 * response is complete, the recursive-descent parser of imap_response.c
 * reads the whole of it in one pass, taking each literal's bytes over
 * without copying them again. imap_free.c releases what it built.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/imap_parse.h"
#include "proto/imap_parse_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"

/* A line buffer grown past this is freed after its response, not kept. */
#define KEEP_TEXT_CAP 4096

/* ---- Errors ---- */

int imap_set_error(struct imap_parser *p, int code, const char *fmt, ...)
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

void *imap_grow_array(void *items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    size_t ncap = *cap ? *cap * 2 : 4;
    *cap = ncap;
    return xrealloc(items, ncap * size);
}

/* ---- Framing ---- */

enum imap_cond imap_cond_from_word(const char *s, size_t n)
{
    if (imap_word_eq(s, n, "OK"))
        return IMAP_COND_OK;
    if (imap_word_eq(s, n, "NO"))
        return IMAP_COND_NO;
    if (imap_word_eq(s, n, "BAD"))
        return IMAP_COND_BAD;
    if (imap_word_eq(s, n, "PREAUTH"))
        return IMAP_COND_PREAUTH;
    if (imap_word_eq(s, n, "BYE"))
        return IMAP_COND_BYE;
    return IMAP_COND_NONE;
}

/*
 * Classifies a response by its first line (n bytes, line end excluded),
 * reading the same tokens the parser reads: "+" and tags are one line of
 * text, "* OK|NO|BAD|PREAUTH|BYE" too, any other "*" line is data.
 */
static enum imap_frame_mode classify(const char *s, size_t n)
{
    if (n == 0 || s[0] != '*')
        return IMAP_MODE_TEXT;
    size_t i = 1;
    while (i < n && s[i] == ' ')
        i++;
    size_t start = i;
    while (i < n && imap_is_atom_char((unsigned char)s[i]))
        i++;
    return imap_cond_from_word(s + start, i - start) != IMAP_COND_NONE ? IMAP_MODE_TEXT
                                                                       : IMAP_MODE_DATA;
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
    while (start > 0 && imap_is_digit((unsigned char)s[start - 1]))
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
    p->lits = imap_grow_array(p->lits, p->nlits, &p->lits_cap, sizeof *p->lits);
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
    p->mode = IMAP_MODE_UNKNOWN;
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
    if (p->mode == IMAP_MODE_UNKNOWN) {
        if (n == 0) { /* an empty line between responses */
            buf_reset(&p->text);
            return 0;
        }
        p->mode = classify(line, n);
    }
    uint64_t size;
    if (p->mode != IMAP_MODE_DATA || !literal_at_end(line, n, &size))
        return 1;
    size_t room = p->max_literal + p->max_line;
    if (room < p->max_literal)
        room = SIZE_MAX;
    if (size > p->max_literal)
        return imap_set_error(p, -SIMAP_ETOOBIG, "literal of %llu bytes over the limit of %zu",
                              (unsigned long long)size, p->max_literal);
    if (size > room - p->lit_total)
        return imap_set_error(p, -SIMAP_ETOOBIG, "literals of one response over %zu bytes", room);
    buf_init(&p->lit, (size_t)size);
    p->in_literal = 1;
    p->lit_left = (size_t)size;
    if (size == 0)
        finish_literal(p);
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
    p->mode = IMAP_MODE_UNKNOWN;
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
                return imap_set_error(p, -SIMAP_ETOOBIG, "literal overflow");
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
            return imap_set_error(p, -SIMAP_EPROTO, "NUL byte outside a literal");
        if (chunk > room || buf_append(&p->text, data + i, chunk) < 0)
            return imap_set_error(p, -SIMAP_ETOOBIG, "response text longer than %zu bytes",
                                  p->max_line);
        i += chunk;
        if (nl == NULL)
            break;
        int rc = end_of_line(p);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            rc = imap_response_parse(p, out);
            reset_response(p);
            *consumed = i;
            return rc;
        }
    }
    *consumed = n;
    return IMAP_AGAIN;
}
