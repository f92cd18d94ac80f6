/*
 * proto/imap_parse_impl.h: what the three files of the IMAP response parser
 * share, and nothing else may use (the public interface is imap_parse.h):
 *
 *   imap_parse.c     the framer: the parser object and imap_parse_feed()
 *   imap_response.c  the parser of one complete response
 *   imap_free.c      freeing responses, imap_strlist_has()
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_IMAP_PARSE_IMPL_H
#define PROTO_IMAP_PARSE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "proto/imap_parse.h"

enum imap_frame_mode {
    IMAP_MODE_UNKNOWN, /* the first line is not complete yet */
    IMAP_MODE_TEXT,    /* tagged, status or continuation: one line, free text */
    IMAP_MODE_DATA     /* untagged data: a line may end in a literal */
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
    enum imap_frame_mode mode;
    int in_literal;  /* reading a literal's bytes */
    size_t lit_left; /* bytes of it still to come */
    struct buf lit;  /* the literal being read, bounded by its size */
    struct literal *lits;
    size_t nlits, lits_cap;
    size_t lit_total; /* bytes of all literals of this response */
};

/* ---- imap_parse.c ---- */

/* Records the parser's error (the first one sticks) and returns it. */
__attribute__((format(printf, 3, 4))) int imap_set_error(struct imap_parser *p, int code,
                                                         const char *fmt, ...);

/* Makes room for one more element in *items (n in use, *cap allocated). */
void *imap_grow_array(void *items, size_t n, size_t *cap, size_t size);

/* OK, NO, BAD, PREAUTH or BYE (either case) as a condition, else
 * IMAP_COND_NONE. */
enum imap_cond imap_cond_from_word(const char *s, size_t n);

/* ---- imap_response.c ---- */

/*
 * Parses the complete response held in p->text and p->lits into *out (a new
 * response; imap_response_free() it), taking the literals' buffers over.
 * Returns 0, or a negative error recorded in p (*out untouched).
 */
int imap_response_parse(struct imap_parser *p, struct imap_response **out);

/* ---- imap_free.c: each leaves its argument empty ---- */

void imap_str_free(struct imap_str *s);
void imap_strlist_free(struct imap_strlist *l);
void imap_value_free(struct imap_value *v);
void imap_values_free(struct imap_value *vals, size_t n); /* frees vals too */
void imap_addrlist_free(struct imap_addrlist *l);
void imap_envelope_free(struct imap_envelope *e);

/* ---- Character classes ---- */

static inline int imap_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

/* ASCII case-insensitive: s (n bytes) equals the C string word. */
static inline int imap_word_eq(const char *s, size_t n, const char *word)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (word[i] == '\0' ||
            imap_lower((unsigned char)s[i]) != imap_lower((unsigned char)word[i]))
            return 0;
    }
    return word[i] == '\0';
}

/*
 * ATOM-CHAR of RFC 3501, widened as servers need: "\", "*", "%", "]" and
 * 8-bit bytes are allowed (flags, LIST patterns, sequence sets, keywords),
 * so it stops only at SP, controls, "(", ")", "{" and DQUOTE.
 */
static inline int imap_is_atom_char(int ch)
{
    if (ch < 0 || ch <= 0x20 || ch == 0x7f)
        return 0;
    return ch != '(' && ch != ')' && ch != '{' && ch != '"';
}

static inline int imap_is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

#endif
