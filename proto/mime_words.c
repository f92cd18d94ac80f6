/*
 * proto/mime_words: lenient RFC 2047 encoded-word decoder to UTF-8 (see the
 * header for the rules), with charset conversion by glibc iconv(3).
 *
 * The input is a sequence of three kinds of pieces:
 *
 *   literal text   -> collected in d->lit, then unfolded and sanitized
 *   encoded-word   -> its decoded bytes collected in d->run while the next
 *                     words share its converter, then converted at once
 *   whitespace     -> after a word, held until the next piece shows whether
 *                     it sits between two words (dropped) or not (literal)
 *
 * At most one of lit and run is non-empty at a time, so flushing the other
 * before appending keeps the output in input order.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/mime_words.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "proto/codec.h"

#define CHARSET_MAX 40 /* longest charset label accepted, "*language" included */

/* ---- Charsets ---- */

/* The converters mail may reach (iconv names). UTF-8 is decoded here. */
enum conv {
    CONV_UTF8,
    CONV_CP1252,
    CONV_ISO8859_2,
    CONV_ISO8859_3,
    CONV_ISO8859_4,
    CONV_ISO8859_5,
    CONV_ISO8859_6,
    CONV_ISO8859_7,
    CONV_ISO8859_8,
    CONV_ISO8859_9,
    CONV_ISO8859_10,
    CONV_ISO8859_13,
    CONV_ISO8859_14,
    CONV_ISO8859_15,
    CONV_ISO8859_16,
    CONV_CP1250,
    CONV_CP1251,
    CONV_CP1253,
    CONV_CP1254,
    CONV_CP1255,
    CONV_CP1256,
    CONV_CP1257,
    CONV_CP1258,
    CONV_KOI8R,
    CONV_KOI8U,
    CONV_CP866,
    CONV_CP874,
    CONV_GB18030,
    CONV_BIG5HKSCS,
    CONV_CP932,
    CONV_EUCJPMS,
    CONV_CP949,
    CONV_ISO2022JP,
    CONV_ISO2022JP2,
    CONV_ISO2022JP3,
    CONV_UTF7,
    CONV_MAC,
    CONV_COUNT
};

static const char *const conv_names[CONV_COUNT] = {
    [CONV_UTF8] = "UTF-8",
    [CONV_CP1252] = "WINDOWS-1252",
    [CONV_ISO8859_2] = "ISO-8859-2",
    [CONV_ISO8859_3] = "ISO-8859-3",
    [CONV_ISO8859_4] = "ISO-8859-4",
    [CONV_ISO8859_5] = "ISO-8859-5",
    [CONV_ISO8859_6] = "ISO-8859-6",
    [CONV_ISO8859_7] = "ISO-8859-7",
    [CONV_ISO8859_8] = "ISO-8859-8",
    [CONV_ISO8859_9] = "ISO-8859-9",
    [CONV_ISO8859_10] = "ISO-8859-10",
    [CONV_ISO8859_13] = "ISO-8859-13",
    [CONV_ISO8859_14] = "ISO-8859-14",
    [CONV_ISO8859_15] = "ISO-8859-15",
    [CONV_ISO8859_16] = "ISO-8859-16",
    [CONV_CP1250] = "WINDOWS-1250",
    [CONV_CP1251] = "WINDOWS-1251",
    [CONV_CP1253] = "WINDOWS-1253",
    [CONV_CP1254] = "WINDOWS-1254",
    [CONV_CP1255] = "WINDOWS-1255",
    [CONV_CP1256] = "WINDOWS-1256",
    [CONV_CP1257] = "WINDOWS-1257",
    [CONV_CP1258] = "WINDOWS-1258",
    [CONV_KOI8R] = "KOI8-R",
    [CONV_KOI8U] = "KOI8-U",
    [CONV_CP866] = "CP866",
    [CONV_CP874] = "WINDOWS-874",
    [CONV_GB18030] = "GB18030",
    [CONV_BIG5HKSCS] = "BIG5-HKSCS",
    [CONV_CP932] = "CP932",
    [CONV_EUCJPMS] = "EUC-JP-MS",
    [CONV_CP949] = "CP949",
    [CONV_ISO2022JP] = "ISO-2022-JP",
    [CONV_ISO2022JP2] = "ISO-2022-JP-2",
    [CONV_ISO2022JP3] = "ISO-2022-JP-3",
    [CONV_UTF7] = "UTF-7",
    [CONV_MAC] = "MACINTOSH",
};

/* Labels (compared without case) and the converter each decodes with. */
static const struct {
    const char *label;
    enum conv conv;
} charsets[] = {
    {"utf-8", CONV_UTF8},
    {"utf8", CONV_UTF8},
    /* ISO-8859-1 and US-ASCII mail routinely carries Windows-1252 bytes */
    {"us-ascii", CONV_CP1252},
    {"ascii", CONV_CP1252},
    {"ansi_x3.4-1968", CONV_CP1252},
    {"iso-8859-1", CONV_CP1252},
    {"iso8859-1", CONV_CP1252},
    {"iso_8859-1", CONV_CP1252},
    {"latin1", CONV_CP1252},
    {"l1", CONV_CP1252},
    {"windows-1252", CONV_CP1252},
    {"cp1252", CONV_CP1252},
    {"x-cp1252", CONV_CP1252},
    {"iso-8859-2", CONV_ISO8859_2},
    {"iso-8859-3", CONV_ISO8859_3},
    {"iso-8859-4", CONV_ISO8859_4},
    {"iso-8859-5", CONV_ISO8859_5},
    {"iso-8859-6", CONV_ISO8859_6},
    {"iso-8859-7", CONV_ISO8859_7},
    {"iso-8859-8", CONV_ISO8859_8},
    {"iso-8859-8-i", CONV_ISO8859_8},
    {"iso-8859-9", CONV_ISO8859_9},
    {"iso-8859-10", CONV_ISO8859_10},
    {"iso-8859-11", CONV_CP874},
    {"iso-8859-13", CONV_ISO8859_13},
    {"iso-8859-14", CONV_ISO8859_14},
    {"iso-8859-15", CONV_ISO8859_15},
    {"iso-8859-16", CONV_ISO8859_16},
    {"latin2", CONV_ISO8859_2},
    {"latin9", CONV_ISO8859_15},
    {"windows-1250", CONV_CP1250},
    {"cp1250", CONV_CP1250},
    {"windows-1251", CONV_CP1251},
    {"cp1251", CONV_CP1251},
    {"windows-1253", CONV_CP1253},
    {"cp1253", CONV_CP1253},
    {"windows-1254", CONV_CP1254},
    {"cp1254", CONV_CP1254},
    {"windows-1255", CONV_CP1255},
    {"cp1255", CONV_CP1255},
    {"windows-1256", CONV_CP1256},
    {"cp1256", CONV_CP1256},
    {"windows-1257", CONV_CP1257},
    {"cp1257", CONV_CP1257},
    {"windows-1258", CONV_CP1258},
    {"cp1258", CONV_CP1258},
    {"koi8-r", CONV_KOI8R},
    {"koi8r", CONV_KOI8R},
    {"koi8-u", CONV_KOI8U},
    {"koi8u", CONV_KOI8U},
    {"ibm866", CONV_CP866},
    {"cp866", CONV_CP866},
    {"windows-874", CONV_CP874},
    {"tis-620", CONV_CP874},
    {"gb2312", CONV_GB18030},
    {"gbk", CONV_GB18030},
    {"gb18030", CONV_GB18030},
    {"x-gbk", CONV_GB18030},
    {"cp936", CONV_GB18030},
    {"euc-cn", CONV_GB18030},
    {"csgb2312", CONV_GB18030},
    {"big5", CONV_BIG5HKSCS},
    {"big5-hkscs", CONV_BIG5HKSCS},
    {"x-x-big5", CONV_BIG5HKSCS},
    {"cn-big5", CONV_BIG5HKSCS},
    {"csbig5", CONV_BIG5HKSCS},
    {"shift_jis", CONV_CP932},
    {"shift-jis", CONV_CP932},
    {"sjis", CONV_CP932},
    {"x-sjis", CONV_CP932},
    {"ms_kanji", CONV_CP932},
    {"csshiftjis", CONV_CP932},
    {"windows-31j", CONV_CP932},
    {"cp932", CONV_CP932},
    {"euc-jp", CONV_EUCJPMS},
    {"x-euc-jp", CONV_EUCJPMS},
    {"euc-kr", CONV_CP949},
    {"ks_c_5601-1987", CONV_CP949},
    {"ks_c_5601", CONV_CP949},
    {"korean", CONV_CP949},
    {"cp949", CONV_CP949},
    {"windows-949", CONV_CP949},
    {"uhc", CONV_CP949},
    {"iso-2022-jp", CONV_ISO2022JP},
    {"csiso2022jp", CONV_ISO2022JP},
    {"iso-2022-jp-2", CONV_ISO2022JP2},
    {"iso-2022-jp-3", CONV_ISO2022JP3},
    {"utf-7", CONV_UTF7},
    {"macintosh", CONV_MAC},
    {"mac", CONV_MAC},
    {"x-mac-roman", CONV_MAC},
};

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Returns the converter for label[0..n), or -1 when unknown. */
static int charset_lookup(const char *label, size_t n)
{
    for (size_t i = 0; i < sizeof charsets / sizeof charsets[0]; i++) {
        const char *l = charsets[i].label;
        size_t k = 0;
        while (k < n && l[k] != '\0' && ascii_lower((unsigned char)label[k]) == l[k])
            k++;
        if (k == n && l[k] == '\0')
            return (int)charsets[i].conv;
    }
    return -1;
}

/* ---- Decoder state ---- */

struct decoder {
    struct buf *out;
    struct buf lit;                  /* literal text not yet emitted */
    struct buf run;                  /* bytes of adjacent words, one converter */
    struct buf word;                 /* bytes of the word being decoded */
    int run_conv;                    /* converter of run; -1 when no run */
    iconv_t cds[CONV_COUNT];         /* opened on first use; (iconv_t)-1 if that failed */
    unsigned char tried[CONV_COUNT]; /* cds[i] was opened (or tried) */
};

static const char fffd[3] = {'\xEF', '\xBF', '\xBD'};

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Appends s[0..n) sanitized to UTF-8. */
static int append_utf8(struct buf *out, const char *s, size_t n)
{
    if (json_utf8_valid(s, n))
        return buf_append(out, s, n);
    size_t len;
    char *t = json_utf8_sanitize(s, n, &len);
    int rc = buf_append(out, t, len);
    xfree(t);
    return rc;
}

/* Emits the collected literal text, unfolded and sanitized. */
static int flush_lit(struct decoder *d)
{
    if (d->lit.len == 0)
        return 0;
    char *p = d->lit.data;
    size_t n = d->lit.len, o = 0;
    for (size_t i = 0; i < n; i++) {
        /* Unfolding: a CRLF or LF goes when SP or TAB follows. */
        if (p[i] == '\r' && i + 2 < n && p[i + 1] == '\n' &&
            (p[i + 2] == ' ' || p[i + 2] == '\t')) {
            i++;
            continue;
        }
        if (p[i] == '\n' && i + 1 < n && (p[i + 1] == ' ' || p[i + 1] == '\t'))
            continue;
        p[o++] = p[i];
    }
    int rc = append_utf8(d->out, p, o);
    buf_reset(&d->lit);
    return rc;
}

/*
 * Appends to out the UTF-8 conversion of in[0..n) by cd. Where the charset
 * cannot map a sequence (EILSEQ), or a sequence is cut short by the end of the
 * input (EINVAL: all input is here, so "need more" means broken), one U+FFFD
 * replaces its first byte and conversion goes on from the next. Ends with the
 * flush that returns a stateful converter (ISO-2022-JP) to its initial state.
 */
static int iconv_append(iconv_t cd, const char *in, size_t n, struct buf *out)
{
    char *ip = (char *)(uintptr_t)in; /* iconv(3) takes char ** but only reads */
    size_t il = n;
    int is_input_done = 0;

    iconv(cd, NULL, NULL, NULL, NULL); /* initial shift state */
    for (;;) {
        size_t avail = out->max - out->len;
        size_t want = il <= (SIZE_MAX - 64) / 4 ? il * 4 + 64 : SIZE_MAX;
        if (want > avail)
            want = avail;
        char *op0 = want > 0 ? buf_reserve(out, want) : NULL;
        if (op0 == NULL)
            return -SIMAP_ETOOBIG;
        char *op = op0;
        size_t ol = want;
        size_t r = is_input_done ? iconv(cd, NULL, NULL, &op, &ol) : iconv(cd, &ip, &il, &op, &ol);
        int e = errno;
        buf_commit(out, (size_t)(op - op0));
        if (r != (size_t)-1) {
            if (is_input_done)
                return 0;
            is_input_done = 1; /* all input converted: flush next */
            continue;
        }
        if (e == E2BIG) {
            if (op == op0) /* not even one character fits */
                return -SIMAP_ETOOBIG;
            continue;
        }
        /* EILSEQ (invalid or unmappable) or EINVAL (truncated at the end) */
        int rc = buf_append(out, fffd, sizeof fffd);
        if (rc < 0)
            return rc;
        if (is_input_done)
            return 0;
        ip++; /* resynchronize on the next byte */
        il--;
    }
}

/* Converts and emits the bytes of the current run of words. iconv's output
 * is checked like everything else, so the result is UTF-8 whatever the
 * converter does. */
static int flush_run(struct decoder *d)
{
    int rc = 0;
    if (d->run_conv < 0)
        return 0;
    if (d->run_conv == CONV_UTF8) {
        rc = append_utf8(d->out, d->run.data, d->run.len);
    } else if (d->run.len > 0) {
        struct buf tmp;
        buf_init(&tmp, d->out->max - d->out->len);
        rc = iconv_append(d->cds[d->run_conv], d->run.data, d->run.len, &tmp);
        if (rc == 0)
            rc = append_utf8(d->out, tmp.data, tmp.len);
        buf_free(&tmp);
    }
    buf_reset(&d->run);
    d->run_conv = -1;
    return rc;
}

/* Returns 1 when converter conv can be used, opening it on first use. */
static int conv_ready(struct decoder *d, int conv)
{
    if (conv == CONV_UTF8)
        return 1;
    if (!d->tried[conv]) {
        d->tried[conv] = 1;
        d->cds[conv] = iconv_open("UTF-8", conv_names[conv]);
    }
    return d->cds[conv] != (iconv_t)-1;
}

/* ---- Encoded-words ---- */

struct word {
    const char *charset; /* label, "*language" cut off */
    size_t charset_len;
    char enc;         /* 'B' or 'Q' */
    const char *text; /* encoded-text */
    size_t text_len;
    size_t len; /* input bytes the word spans */
};

/* Returns 1 when s[i..] starts "=?" that may open another word: "=?="
 * does not (it is base64 padding then "?=", or Q garbage). */
static int at_word_start(const char *s, size_t i, size_t n)
{
    return s[i] == '=' && i + 1 < n && s[i + 1] == '?' && !(i + 2 < n && s[i + 2] == '=');
}

/*
 * Parses the encoded-word that s[0..n) starts with ("=?" already seen).
 * Returns 1 and fills w, or 0 when the syntax is not a word's.
 */
static int parse_word(const char *s, size_t n, struct word *w)
{
    size_t i = 2, lang = 0;
    while (i < n && s[i] != '?') {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7F || i - 2 >= CHARSET_MAX)
            return 0;
        if (c == '*' && lang == 0)
            lang = i;
        i++;
    }
    size_t cs_end = lang ? lang : i;
    if (i >= n || cs_end == 2)
        return 0;
    w->charset = s + 2;
    w->charset_len = cs_end - 2;
    i++; /* '?' */
    if (i + 1 >= n || s[i + 1] != '?')
        return 0;
    switch (s[i]) {
    case 'B':
    case 'b':
        w->enc = 'B';
        break;
    case 'Q':
    case 'q':
        w->enc = 'Q';
        break;
    default:
        return 0;
    }
    i += 2;
    w->text = s + i;

    /* A closed word: text up to the first "?=" on this line, unless the
     * next word starts first. Spaces inside are tolerated (broken Q). */
    for (size_t j = i; j < n; j++) {
        if (s[j] == '?' && j + 1 < n && s[j + 1] == '=') {
            w->text_len = j - i;
            w->len = j + 2;
            return 1;
        }
        if (s[j] == '\r' || s[j] == '\n' || at_word_start(s, j, n))
            break;
    }
    /* No "?=": the text runs to the next whitespace or word. */
    size_t j = i;
    while (j < n && !is_ws(s[j]) && !at_word_start(s, j, n))
        j++;
    if (j == i)
        return 0;
    w->text_len = j - i;
    w->len = j;
    return 1;
}

/* Decodes Q text (RFC 2047 section 4.2) into out; cannot fail but for size.
 * "=" without two hex digits is kept as is. */
static int decode_q(const char *t, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        int hi = i + 2 < n ? codec_hex_value((unsigned char)t[i + 1]) : -1;
        int lo = i + 2 < n ? codec_hex_value((unsigned char)t[i + 2]) : -1;
        if (c == '_') {
            c = ' ';
        } else if (c == '=' && hi >= 0 && lo >= 0) {
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        int rc = buf_append(out, &c, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * Decodes B text (RFC 4648 base64) into out. Lenient on padding: missing
 * "=" is fine, and "=" ends a quantum, so words made of padded chunks
 * ("aGk=aGk=") decode. Whitespace is skipped. Returns 0, -SIMAP_EINVAL on a
 * character outside the alphabet, or -SIMAP_ETOOBIG past out's maximum.
 */
static int decode_b(const char *t, size_t n, struct buf *out)
{
    size_t room = out->max - out->len, got;
    size_t want = n < room ? n : room; /* n characters give fewer bytes */
    char *p = buf_reserve(out, want);
    if (p == NULL)
        return -SIMAP_ETOOBIG;
    int rc = codec_b64_decode_loose(t, n, CODEC_B64_MIME, (unsigned char *)p, want, &got);
    if (rc == 0)
        buf_commit(out, got);
    return rc;
}

/*
 * Tries the encoded-word that s[0..n) starts with. When it is a word this
 * decoder accepts, adds its bytes to the run (first emitting whatever must
 * precede them), stores the input bytes it spans in *len and returns 1.
 * Returns 0 when it is not a word (the caller keeps "=?" as text), or a
 * negative error.
 */
static int take_word(struct decoder *d, const char *s, size_t n, size_t *len)
{
    struct word w;
    if (!parse_word(s, n, &w))
        return 0;
    int conv = charset_lookup(w.charset, w.charset_len);
    if (conv < 0 || !conv_ready(d, conv))
        return 0; /* unknown charset: left as is */
    buf_reset(&d->word);
    int rc = w.enc == 'B' ? decode_b(w.text, w.text_len, &d->word)
                          : decode_q(w.text, w.text_len, &d->word);
    if (rc == -SIMAP_EINVAL)
        return 0;
    if (rc < 0)
        return rc;

    if ((rc = flush_lit(d)) < 0)
        return rc;
    if (d->run_conv != conv && (rc = flush_run(d)) < 0)
        return rc;
    d->run_conv = conv;
    if ((rc = buf_append(&d->run, d->word.data, d->word.len)) < 0)
        return rc;
    *len = w.len;
    return 1;
}

/* The main loop; d is set up and torn down by the caller. */
static int decode(struct decoder *d, const char *s, size_t n)
{
    size_t i = 0, k;
    int rc, is_after_word = 0;

    while (i < n) {
        if (is_after_word) {
            /* Whitespace between two words is dropped; otherwise it falls
             * through to the literal text below. */
            is_after_word = 0;
            size_t j = i;
            while (j < n && is_ws(s[j]))
                j++;
            if (j > i && j < n && at_word_start(s, j, n)) {
                if ((rc = take_word(d, s + j, n - j, &k)) < 0)
                    return rc;
                if (rc == 1) {
                    i = j + k;
                    is_after_word = 1;
                    continue;
                }
            }
        }
        if (at_word_start(s, i, n)) {
            if ((rc = take_word(d, s + i, n - i, &k)) < 0)
                return rc;
            if (rc == 1) {
                i += k;
                is_after_word = 1;
                continue;
            }
        }
        /* Literal text up to the next candidate word. */
        size_t j = i + 1;
        while (j < n && !at_word_start(s, j, n))
            j++;
        if ((rc = flush_run(d)) < 0 || (rc = buf_append(&d->lit, s + i, j - i)) < 0)
            return rc;
        i = j;
    }
    if ((rc = flush_run(d)) < 0)
        return rc;
    return flush_lit(d);
}

/* ---- Public ---- */

int mime_words_decode(const char *s, size_t n, struct buf *out)
{
    if (out == NULL || (s == NULL && n > 0))
        return -SIMAP_EINVAL;

    struct decoder d;
    memset(&d, 0, sizeof d);
    d.out = out;
    d.run_conv = -1;
    /* None of these ever holds more bytes than the input. */
    buf_init(&d.lit, n);
    buf_init(&d.run, n);
    buf_init(&d.word, n);

    int rc = decode(&d, s, n);

    for (size_t c = 0; c < CONV_COUNT; c++) {
        if (d.tried[c] && d.cds[c] != (iconv_t)-1)
            iconv_close(d.cds[c]);
    }
    buf_free(&d.lit);
    buf_free(&d.run);
    buf_free(&d.word);

    return rc;
}
