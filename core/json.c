/*
 * core/json: strict UTF-8, a checked yajl generator and a bounded yajl_tree
 * parser (RFC 8259 JSON, RFC 3629 UTF-8). A leaf proto/ may use: it
 * includes only core/err and core/buf (see json.h and docs/layers.md).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "core/buf.h"
#include "core/err.h"

/* ---- yajl allocation through xmalloc (abort on OOM, as everywhere) ---- */

static void *ya_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return xmalloc(n);
}

static void *ya_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return xrealloc(p, n);
}

static void ya_free(void *ctx, void *p)
{
    (void)ctx;
    xfree(p);
}

static const yajl_alloc_funcs ya_funcs = {ya_malloc, ya_realloc, ya_free, NULL};

/* ---- UTF-8 ---- */

/*
 * Returns the length (1..4) of the well-formed sequence at s[0..n), n > 0, or
 * 0 with *bad set to the length of its maximal ill-formed subpart: the
 * longest prefix that could still begin a valid sequence, at least 1 byte.
 * The byte ranges are RFC 3629's table; only the second byte varies.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    size_t need;                   /* continuation bytes */

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c == 0xE0) {
        need = 2;
        lo = 0xA0; /* below: overlong */
    } else if (c >= 0xE1 && c <= 0xEC) {
        need = 2;
    } else if (c == 0xED) {
        need = 2;
        hi = 0x9F; /* above: surrogates */
    } else if (c >= 0xEE && c <= 0xEF) {
        need = 2;
    } else if (c == 0xF0) {
        need = 3;
        lo = 0x90; /* below: overlong */
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 3;
    } else if (c == 0xF4) {
        need = 3;
        hi = 0x8F; /* above: past U+10FFFF */
    } else {
        *bad = 1; /* 80..C1 (continuation, overlong lead), F5..FF */
        return 0;
    }
    size_t i;
    for (i = 1; i <= need && i < n; i++) {
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            break;
    }
    if (i > need)
        return need + 1;
    *bad = i;
    return 0;
}

/* Returns the offset of the first ill-formed byte, or n. */
static size_t utf8_check(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, bad;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, n - i, &bad);
        if (k == 0)
            return i;
        i += k;
    }
    return n;
}

int json_utf8_valid(const char *s, size_t n)
{
    if (n == 0)
        return 1;
    return utf8_check(s, n) == n;
}

char *json_utf8_sanitize(const char *s, size_t n, size_t *outlen)
{
    static const char fffd[3] = {'\xEF', '\xBF', '\xBD'};
    const unsigned char *p = (const unsigned char *)s;
    size_t first = n ? utf8_check(s, n) : 0;
    size_t i, k, bad, len = first;

    /* First pass sizes the result exactly: a 25 MiB mail body should not
     * cost a 75 MiB worst-case allocation. */
    for (i = first; i < n; i += k ? k : bad) {
        k = utf8_seq(p + i, n - i, &bad);
        len += k ? k : sizeof fffd;
    }
    char *out = xmalloc(len + 1);
    if (first > 0)
        memcpy(out, s, first);
    size_t o = first;
    for (i = first; i < n; i += k ? k : bad) {
        k = utf8_seq(p + i, n - i, &bad);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
        } else {
            memcpy(out + o, fffd, sizeof fffd);
            o += sizeof fffd;
        }
    }
    out[o] = '\0';
    if (outlen != NULL)
        *outlen = o;
    return out;
}

/* ---- Generator ---- */

enum gen_frame { FRAME_ARRAY, FRAME_OBJECT };

/*
 * Where the generator is: depth 0 is the top level, where one value may be
 * written (then is_done). Inside an object, want_value tells whether a key
 * was written and its value is due; it is always 0 inside an array. Opening a
 * container pushes a frame; closing it pops and counts as the parent's value.
 */
struct json_gen {
    yajl_gen yg;
    struct buf out; /* filled by on_gen_print(), bounded by max */
    int err;        /* first error; sticky */
    int is_done;    /* the top-level value is complete */
    int want_value;
    size_t depth;
    unsigned char frames[JSON_GEN_MAX_DEPTH]; /* enum gen_frame */
};

static void on_gen_print(void *ctx, const char *str, size_t len)
{
    struct json_gen *g = ctx;
    if (g->err == 0 && buf_append(&g->out, str, len) < 0)
        g->err = -SIMAP_ETOOBIG;
}

struct json_gen *json_gen_new(size_t max)
{
    struct json_gen *g = xcalloc(1, sizeof *g);
    buf_init(&g->out, max);
    g->yg = yajl_gen_alloc(&ya_funcs);
    if (g->yg == NULL) {
        fprintf(stderr, "superimap: yajl_gen_alloc failed\n");
        abort();
    }
    yajl_gen_config(g->yg, yajl_gen_print_callback, on_gen_print, (void *)g);
    yajl_gen_config(g->yg, yajl_gen_validate_utf8, 1);
    return g;
}

void json_gen_free(struct json_gen *g)
{
    if (g == NULL)
        return;
    yajl_gen_free(g->yg);
    buf_free(&g->out);
    xfree(g);
}

static int gen_fail(struct json_gen *g, int code)
{
    if (g->err == 0)
        g->err = code;
    return g->err;
}

/* Maps a yajl status, after an error of the print callback, which wins. */
static int gen_status(struct json_gen *g, yajl_gen_status st)
{
    if (g->err)
        return g->err;
    switch (st) {
    case yajl_gen_status_ok:
        return 0;
    case yajl_gen_invalid_string:
    case yajl_gen_invalid_number:
        return gen_fail(g, -SIMAP_EINVAL);
    case yajl_max_depth_exceeded:
        return gen_fail(g, -SIMAP_ETOOBIG);
    default:
        return gen_fail(g, -SIMAP_ESTATE);
    }
}

/* Checks that a value may be written here. */
static int gen_before_value(struct json_gen *g)
{
    if (g->err)
        return g->err;
    if (g->depth == 0 ? g->is_done : (g->frames[g->depth - 1] == FRAME_OBJECT && !g->want_value))
        return gen_fail(g, -SIMAP_ESTATE);
    return 0;
}

static void gen_after_value(struct json_gen *g)
{
    if (g->depth == 0)
        g->is_done = 1;
    else
        g->want_value = 0;
}

/* Ends a scalar value written with status st. */
static int gen_scalar_done(struct json_gen *g, yajl_gen_status st)
{
    int rc = gen_status(g, st);
    if (rc == 0)
        gen_after_value(g);
    return rc;
}

static int gen_open(struct json_gen *g, enum gen_frame kind)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    if (g->depth == JSON_GEN_MAX_DEPTH)
        return gen_fail(g, -SIMAP_ETOOBIG);
    rc =
        gen_status(g, kind == FRAME_OBJECT ? yajl_gen_map_open(g->yg) : yajl_gen_array_open(g->yg));
    if (rc < 0)
        return rc;
    g->frames[g->depth++] = (unsigned char)kind;
    g->want_value = 0;
    return 0;
}

static int gen_close(struct json_gen *g, enum gen_frame kind)
{
    if (g->err)
        return g->err;
    if (g->depth == 0 || g->frames[g->depth - 1] != kind || g->want_value)
        return gen_fail(g, -SIMAP_ESTATE);
    int rc = gen_status(g, kind == FRAME_OBJECT ? yajl_gen_map_close(g->yg)
                                                : yajl_gen_array_close(g->yg));
    if (rc < 0)
        return rc;
    g->depth--;
    gen_after_value(g);
    return 0;
}

int json_gen_object_open(struct json_gen *g)
{
    return gen_open(g, FRAME_OBJECT);
}

int json_gen_object_close(struct json_gen *g)
{
    return gen_close(g, FRAME_OBJECT);
}

int json_gen_array_open(struct json_gen *g)
{
    return gen_open(g, FRAME_ARRAY);
}

int json_gen_array_close(struct json_gen *g)
{
    return gen_close(g, FRAME_ARRAY);
}

int json_gen_key(struct json_gen *g, const char *key)
{
    if (g->err)
        return g->err;
    if (key == NULL)
        return gen_fail(g, -SIMAP_EINVAL);
    if (g->depth == 0 || g->frames[g->depth - 1] != FRAME_OBJECT || g->want_value)
        return gen_fail(g, -SIMAP_ESTATE);
    size_t n = strlen(key);
    if (!json_utf8_valid(key, n))
        return gen_fail(g, -SIMAP_EINVAL);
    int rc = gen_status(g, yajl_gen_string(g->yg, (const unsigned char *)key, n));
    if (rc == 0)
        g->want_value = 1;
    return rc;
}

int json_gen_strn(struct json_gen *g, const char *s, size_t n)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    if (s == NULL && n > 0)
        return gen_fail(g, -SIMAP_EINVAL);
    /* yajl's own check (yajl_gen_validate_utf8) lets overlongs and
     * surrogates through, so ours runs first. */
    if (!json_utf8_valid(s, n))
        return gen_fail(g, -SIMAP_EINVAL);
    return gen_scalar_done(g, yajl_gen_string(g->yg, (const unsigned char *)(s ? s : ""), n));
}

int json_gen_str(struct json_gen *g, const char *s)
{
    if (s == NULL)
        return json_gen_null(g);
    return json_gen_strn(g, s, strlen(s));
}

int json_gen_int(struct json_gen *g, int64_t v)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    return gen_scalar_done(g, yajl_gen_integer(g->yg, (long long)v));
}

int json_gen_bool(struct json_gen *g, int v)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    return gen_scalar_done(g, yajl_gen_bool(g->yg, v != 0));
}

int json_gen_null(struct json_gen *g)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    return gen_scalar_done(g, yajl_gen_null(g->yg));
}

/* Shortest of %.15g..%.17g that reads back as v: yajl_gen_double() prints
 * %.20g, which turns 0.1 into 0.10000000000000000555. Assumes the C locale
 * (nothing in superimap calls setlocale()). */
static void format_double(double v, char *out, size_t outlen)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

int json_gen_double(struct json_gen *g, double v)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    if (!isfinite(v))
        return gen_fail(g, -SIMAP_EINVAL);
    char num[40];
    format_double(v, num, sizeof num);
    /* yajl_gen_number() copies number text as is, with separators. */
    return gen_scalar_done(g, yajl_gen_number(g->yg, num, strlen(num)));
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Returns 1 when json[0..n) is exactly one JSON value, with optional
 * whitespace around it. */
static int raw_is_one_value(const char *json, size_t n)
{
    if (n == 0 || memchr(json, '\0', n) != NULL || !json_utf8_valid(json, n))
        return 0;
    yajl_alloc_funcs funcs = ya_funcs;
    yajl_handle h = yajl_alloc(NULL, &funcs, NULL); /* no callbacks: validate only */
    if (h == NULL)
        return 0;
    yajl_status st = yajl_parse(h, (const unsigned char *)json, n);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    return st == yajl_status_ok;
}

int json_gen_raw(struct json_gen *g, const char *json, size_t n)
{
    int rc = gen_before_value(g);
    if (rc < 0)
        return rc;
    if (json == NULL || !raw_is_one_value(json, n))
        return gen_fail(g, -SIMAP_EINVAL);
    while (n > 0 && is_json_space(json[n - 1]))
        n--;
    while (is_json_space(*json)) { /* stops at the value, which is there */
        json++;
        n--;
    }
    /* yajl_gen_number() is the one yajl call that emits text verbatim while
     * keeping its separators and state right. */
    return gen_scalar_done(g, yajl_gen_number(g->yg, json, n));
}

int json_gen_key_object(struct json_gen *g, const char *key)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_object_open(g);
}

int json_gen_key_array(struct json_gen *g, const char *key)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_array_open(g);
}

int json_gen_key_str(struct json_gen *g, const char *key, const char *s)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_str(g, s);
}

int json_gen_key_strn(struct json_gen *g, const char *key, const char *s, size_t n)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_strn(g, s, n);
}

int json_gen_key_int(struct json_gen *g, const char *key, int64_t v)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_int(g, v);
}

int json_gen_key_bool(struct json_gen *g, const char *key, int v)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_bool(g, v);
}

int json_gen_key_null(struct json_gen *g, const char *key)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_null(g);
}

int json_gen_key_double(struct json_gen *g, const char *key, double v)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_double(g, v);
}

int json_gen_key_raw(struct json_gen *g, const char *key, const char *json, size_t n)
{
    int rc = json_gen_key(g, key);
    return rc < 0 ? rc : json_gen_raw(g, json, n);
}

int json_gen_finish(struct json_gen *g, char **out, size_t *len)
{
    int rc = g->err;
    if (rc == 0 && !g->is_done)
        rc = -SIMAP_ESTATE;
    g->err = -SIMAP_ESTATE; /* finished: only json_gen_free() from now on */
    if (rc < 0) {
        *out = NULL;
        if (len != NULL)
            *len = 0;
        return rc;
    }
    if (len != NULL)
        *len = g->out.len;
    *out = buf_steal(&g->out);
    return 0;
}

/* ---- Parser ---- */

static int parse_fail(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the message, cut back to whole UTF-8 sequences (a key quoted in it
 * may be truncated mid-character, and the api puts messages in JSON). */
static int parse_fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    err[utf8_check(err, strlen(err))] = '\0';
    return code;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/*
 * One pass over the raw text, before yajl, for what yajl_tree does not
 * check: nesting depth (counted on brackets outside strings, which is exact
 * for any text yajl accepts), \u0000 (yajl_tree would truncate the string),
 * unpaired surrogate escapes (yajl turns "\udc00" into invalid UTF-8 and
 * "\ud800\u0041" into U+10041), and comments, which yajl_tree_parse()
 * enables and which could hide brackets from this count. Malformed escapes
 * are left for yajl to report.
 */
static int prescan(const char *s, size_t n, size_t max_depth, char *err, size_t errlen)
{
    size_t depth = 0;
    int in_string = 0;
    unsigned cp, lo;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!in_string) {
            if (c == '"') {
                in_string = 1;
            } else if (c == '[' || c == '{') {
                if (++depth > max_depth)
                    return parse_fail(-SIMAP_ETOOBIG, err, errlen,
                                      "nesting deeper than %zu at byte %zu", max_depth, i);
            } else if (c == ']' || c == '}') {
                if (depth > 0)
                    depth--;
            } else if (c == '/') {
                return parse_fail(-SIMAP_EINVAL, err, errlen, "comments are not JSON, at byte %zu",
                                  i);
            }
            continue;
        }
        if (c == '"') {
            in_string = 0;
            continue;
        }
        if (c != '\\' || i + 1 >= n)
            continue;
        if (s[i + 1] != 'u' || n - i < 6 || !hex4(s + i + 2, &cp)) {
            i++; /* skip the escaped character ('"' included) */
            continue;
        }
        if (cp == 0)
            return parse_fail(-SIMAP_EINVAL, err, errlen, "\\u0000 in a string at byte %zu", i);
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return parse_fail(-SIMAP_EINVAL, err, errlen, "unpaired surrogate escape at byte %zu",
                              i);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' || !hex4(s + i + 8, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return parse_fail(-SIMAP_EINVAL, err, errlen,
                                  "unpaired surrogate escape at byte %zu", i);
            i += 6;
        }
        i += 5;
    }
    return 0;
}

/* Reports why yajl refused text: yajl_tree_parse()'s message echoes the
 * input over three lines, so the text is parsed again (validation only,
 * the error path only) for a one-line message and the byte offset. */
static int describe_syntax_error(const char *text, size_t len, const char *tree_msg, char *err,
                                 size_t errlen)
{
    yajl_alloc_funcs funcs = ya_funcs;
    yajl_handle h = yajl_alloc(NULL, &funcs, NULL);
    if (h == NULL)
        return parse_fail(-SIMAP_ENOMEM, err, errlen, "out of memory");
    size_t off = len;
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    else
        off = yajl_get_bytes_consumed(h);
    int rc;
    if (st == yajl_status_ok) {
        /* Only an allocation failure inside yajl_tree gets here. */
        rc = parse_fail(-SIMAP_ENOMEM, err, errlen, "%.*s", (int)strcspn(tree_msg, "\n"), tree_msg);
    } else {
        /* "lexical error: invalid char in json text.\n": one line, no
         * final period. yajl counts the offending byte as consumed. */
        unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
        const char *m = msg ? (const char *)msg : "syntax error";
        size_t mlen = strcspn(m, "\n");
        while (mlen > 0 && (m[mlen - 1] == '.' || m[mlen - 1] == ' '))
            mlen--;
        rc = parse_fail(-SIMAP_EINVAL, err, errlen, "%.*s near byte %zu", (int)mlen, m, off);
        if (msg != NULL)
            yajl_free_error(h, msg);
    }
    yajl_free(h);
    return rc;
}

static int cmp_key(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;
    return strcmp(*x, *y);
}

/* Returns a key that appears twice in one object of the tree, or NULL.
 * Recursion is bounded by the depth prescan() allowed. */
static const char *find_duplicate_key(yajl_val v)
{
    const char *dup = NULL;
    if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len && dup == NULL; i++)
            dup = find_duplicate_key(v->u.array.values[i]);
        return dup;
    }
    if (!YAJL_IS_OBJECT(v))
        return NULL;
    size_t n = v->u.object.len;
    const char **keys = v->u.object.keys;
    if (n <= 16) {
        for (size_t i = 1; i < n && dup == NULL; i++)
            for (size_t j = 0; j < i; j++)
                if (strcmp(keys[i], keys[j]) == 0) {
                    dup = keys[i];
                    break;
                }
    } else {
        /* Sorting a copy keeps a 64 KiB body of keys O(n log n). */
        const char **sorted = xmalloc(n * sizeof *sorted);
        memcpy(sorted, keys, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_key);
        for (size_t i = 1; i < n && dup == NULL; i++)
            if (strcmp(sorted[i], sorted[i - 1]) == 0)
                dup = sorted[i];
        xfree(sorted);
    }
    for (size_t i = 0; i < n && dup == NULL; i++)
        dup = find_duplicate_key(v->u.object.values[i]);
    return dup;
}

int json_parse(const char *text, size_t len, size_t max_depth, yajl_val *out, char *err,
               size_t errlen)
{
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (text == NULL && len > 0)
        return parse_fail(-SIMAP_EINVAL, err, errlen, "no input");
    if (text == NULL)
        text = "";
    if (max_depth > JSON_PARSE_MAX_DEPTH)
        max_depth = JSON_PARSE_MAX_DEPTH;

    const char *nul = memchr(text, '\0', len);
    if (nul != NULL)
        return parse_fail(-SIMAP_EINVAL, err, errlen, "NUL byte at byte %zu", (size_t)(nul - text));
    size_t bad = utf8_check(text, len);
    if (bad < len)
        return parse_fail(-SIMAP_EINVAL, err, errlen, "invalid UTF-8 at byte %zu", bad);
    int rc = prescan(text, len, max_depth, err, errlen);
    if (rc < 0)
        return rc;

    char *copy = xstrndup(text, len); /* yajl_tree_parse() wants a C string */
    char tree_msg[256];
    tree_msg[0] = '\0';
    yajl_val v = yajl_tree_parse(copy, tree_msg, sizeof tree_msg);
    xfree(copy);
    if (v == NULL)
        return describe_syntax_error(text, len, tree_msg, err, errlen);

    const char *dup = find_duplicate_key(v);
    if (dup != NULL) {
        rc = parse_fail(-SIMAP_EINVAL, err, errlen, "duplicate key \"%.64s\"", dup);
        yajl_tree_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

int json_parse_object(const char *text, size_t len, size_t max_depth, yajl_val *out, char *err,
                      size_t errlen)
{
    int rc = json_parse(text, len, max_depth, out, err, errlen);
    if (rc < 0)
        return rc;
    if (!YAJL_IS_OBJECT(*out)) {
        yajl_tree_free(*out);
        *out = NULL;
        return parse_fail(-SIMAP_EINVAL, err, errlen, "top-level value must be an object");
    }
    return 0;
}

void json_free(yajl_val v)
{
    yajl_tree_free(v); /* accepts NULL */
}

/* ---- Accessors ---- */

yajl_val json_get(yajl_val obj, const char *key)
{
    if (obj == NULL || !YAJL_IS_OBJECT(obj) || key == NULL)
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

const char *json_get_str(yajl_val obj, const char *key)
{
    yajl_val v = json_get(obj, key);
    return YAJL_IS_STRING(v) ? v->u.string : NULL;
}

int json_val_int(yajl_val v, int64_t *out)
{
    if (!YAJL_IS_NUMBER(v) || v->u.number.r == NULL)
        return -SIMAP_EINVAL;
    /* The number's own text, not yajl's flags: yajl_parse_integer() refuses
     * INT64_MIN. Only -?[0-9]+ is an integer. */
    const char *r = v->u.number.r;
    const char *d = r + (*r == '-');
    if (*d == '\0' || strspn(d, "0123456789") != strlen(d))
        return -SIMAP_EINVAL;
    errno = 0;
    long long x = strtoll(r, NULL, 10);
    if (errno != 0)
        return -SIMAP_EINVAL;
    *out = (int64_t)x;
    return 0;
}

int json_get_int(yajl_val obj, const char *key, int64_t *out)
{
    yajl_val v = json_get(obj, key);
    if (v == NULL)
        return -SIMAP_ENOTFOUND;
    return json_val_int(v, out);
}

int json_get_bool(yajl_val obj, const char *key, int *out)
{
    yajl_val v = json_get(obj, key);
    if (v == NULL)
        return -SIMAP_ENOTFOUND;
    if (YAJL_IS_TRUE(v))
        *out = 1;
    else if (YAJL_IS_FALSE(v))
        *out = 0;
    else
        return -SIMAP_EINVAL;
    return 0;
}
