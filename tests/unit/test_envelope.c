/*
 * Unit tests of proto/mime_words (RFC 2047 decoding: the RFC's own examples,
 * headers as Gmail, Outlook, Apple Mail and Thunderbird write them, CJK and
 * Cyrillic charsets, broken real-world words, hostile input) and of
 * proto/envelope (the webhook's "envelope", "decoded", "rfc822" and
 * "rfc822_base64" members, parsed back and compared field by field).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "proto/envelope.h"
#include "proto/mime_words.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Helpers ---- */

/* Decodes in[0..n) into a new string (xfree() it), length in *len. */
static char *decode_n(const char *in, size_t n, size_t *len)
{
    struct buf b;
    buf_init(&b, n * MIME_WORDS_MAX_GROWTH + 1);
    int rc = mime_words_decode(in, n, &b);
    if (rc != 0)
        fail_msg("decode of \"%s\" failed: %s", in, err_str(rc));
    if (!json_utf8_valid(b.data, b.len))
        fail_msg("decode of \"%s\" is not UTF-8", in);
    *len = b.len;
    return buf_steal(&b);
}

struct case_ {
    const char *in;
    const char *want;
};

static void check_cases(const struct case_ *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *got = decode_n(c[i].in, strlen(c[i].in), &len);
        if (strcmp(got, c[i].want) != 0 || len != strlen(c[i].want))
            fail_msg("decode of \"%s\": got \"%s\", want \"%s\"", c[i].in, got, c[i].want);
        xfree(got);
    }
}

/* ---- RFC 2047 ---- */

static void test_rfc2047_section8_examples(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        /* the table of section 8, every row */
        {"(=?ISO-8859-1?Q?a?=)", "(a)"},
        {"(=?ISO-8859-1?Q?a?= b)", "(a b)"},
        {"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"},
        {"(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"},
        {"(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"},
        {"(=?ISO-8859-1?Q?a_b?=)", "(a b)"},
        {"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"},
        /* the header examples above it */
        {"=?US-ASCII?Q?Keith_Moore?=", "Keith Moore"},
        {"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld Jørn Simonsen"},
        {"=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"},
        {"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
         "    =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
         "If you can read this you understand the example."},
        {"=?ISO-8859-1?Q?Olle_J=E4rnefors?=", "Olle Järnefors"},
        {"=?ISO-8859-1?Q?Patrik_F=E4ltstr=F6m?=", "Patrik Fältström"},
        {"Nathaniel Borenstein (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)",
         "Nathaniel Borenstein (םולש ןב ילטפנ)"},
        /* RFC 2231 section 5: language suffix */
        {"=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"},
    };
    check_cases(cases, COUNT(cases));
}

static void test_real_world_mailers(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        /* Gmail: UTF-8 B words, subject and display name */
        {"=?UTF-8?B?8J+OiSBQYXJ0eSB0aW1lIQ==?=", "🎉 Party time!"},
        {"=?UTF-8?B?Sm9zw6kgR2FyY8OtYQ==?=", "José García"},
        /* Outlook: ISO-8859-1 Q folded over two words; Windows-1252 quotes,
         * also under an ISO-8859-1 label */
        {"=?iso-8859-1?Q?R=E9union_d'=E9quipe_-_compte_rendu_de_la_semaine_derni?=\r\n"
         " =?iso-8859-1?Q?=E8re?=",
         "Réunion d'équipe - compte rendu de la semaine dernière"},
        {"=?Windows-1252?Q?It=92s_done?=", "It’s done"},
        {"=?iso-8859-1?Q?Don=92t_forget?=", "Don’t forget"},
        {"RE: =?us-ascii?Q?Quarterly_report?=", "RE: Quarterly report"},
        /* Apple Mail: lowercase utf-8, Q */
        {"=?utf-8?Q?Caf=C3=A9_=E2=98=95?=", "Café ☕"},
        {"=?utf-8?Q?J=C3=B6rg_M=C3=BCller?=", "Jörg Müller"},
        /* Thunderbird: lowercase hex digits */
        {"=?UTF-8?Q?Gr=c3=bc=c3=9fe_aus_M=c3=bcnchen?=", "Grüße aus München"},
        /* Japanese */
        {"=?iso-2022-jp?B?GyRCJUYlOSVIQXc/LhsoQg==?=", "テスト送信"},
        {"Re: =?ISO-2022-JP?B?GyRCMnE1RCROJCpDTiRpJDsbKEI=?=", "Re: 会議のお知らせ"},
        {"=?shift_jis?B?k/qWe4zqgsyMj5a8?=", "日本語の件名"},
        {"=?EUC-JP?B?xvzL3LjspM6378y+?=", "日本語の件名"},
        /* Chinese, Korean */
        {"=?gb2312?B?xOO6w6OsysC95w==?=", "你好，世界"},
        {"=?GBK?B?suLK1NPKvP4=?=", "测试邮件"},
        {"=?big5?B?pKSk5bT6uNU=?=", "中文測試"},
        {"=?euc-kr?B?vsiz58fPvLy/5A==?=", "안녕하세요"},
        {"=?ks_c_5601-1987?B?vsiz58fPvLy/5A==?=", "안녕하세요"},
        /* Cyrillic */
        {"=?koi8-r?B?8NLJ18XULCDNydI=?=", "Привет, мир"},
        {"=?windows-1251?B?zvL3uPIg5+Ag7ODw8g==?=", "Отчёт за март"},
    };
    check_cases(cases, COUNT(cases));
}

static void test_every_documented_charset_is_available(void **state)
{
    (void)state;
    /* One label per converter of the header's list: fails where glibc's
     * gconv modules are missing (a slim container image). */
    static const char *const labels[] = {
        "UTF-8",        "US-ASCII",     "ISO-8859-1",   "ISO-8859-2",    "ISO-8859-3",
        "ISO-8859-4",   "ISO-8859-5",   "ISO-8859-6",   "ISO-8859-7",    "ISO-8859-8",
        "ISO-8859-9",   "ISO-8859-10",  "ISO-8859-11",  "ISO-8859-13",   "ISO-8859-14",
        "ISO-8859-15",  "ISO-8859-16",  "Windows-1250", "Windows-1251",  "Windows-1252",
        "Windows-1253", "Windows-1254", "Windows-1255", "Windows-1256",  "Windows-1257",
        "Windows-1258", "KOI8-R",       "KOI8-U",       "IBM866",        "TIS-620",
        "GB2312",       "GBK",          "GB18030",      "Big5",          "Shift_JIS",
        "EUC-JP",       "EUC-KR",       "ISO-2022-JP",  "ISO-2022-JP-2", "ISO-2022-JP-3",
        "UTF-7",        "macintosh",
    };
    for (size_t i = 0; i < COUNT(labels); i++) {
        char in[80], want[] = "abc xyz";
        snprintf(in, sizeof in, "=?%s?Q?abc_xyz?=", labels[i]);
        size_t len;
        char *got = decode_n(in, strlen(in), &len);
        if (strcmp(got, want) != 0)
            fail_msg("charset %s: \"%s\" gave \"%s\"", labels[i], in, got);
        xfree(got);
    }
}

static void test_char_split_across_words_of_one_charset_decodes_whole(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        /* 😀 = F0 9F 98 80 cut after 3 bytes, B then B */
        {"=?UTF-8?B?8J+Y?= =?UTF-8?B?gA==?=", "😀"},
        /* folded between the halves, Q */
        {"=?utf-8?q?=F0=9F?=\r\n =?utf-8?q?=98=80_smile?=", "😀 smile"},
        /* three words, B, Q and unpadded b, labels in different case */
        {"=?UTF-8?B?8J8=?= =?utf-8?Q?=98?= =?utf8?b?gA?=", "😀"},
        /* 日本 = E6 97 A5 E6 9C AC cut inside the second character */
        {"=?UTF-8?B?5pel5pw=?= =?UTF-8?B?rA==?=", "日本"},
        /* ISO-2022-JP: the second word has no escape of its own */
        {"=?ISO-2022-JP?B?GyRCJUYlOQ==?= =?ISO-2022-JP?B?JUgbKEI=?=", "テスト"},
        /* GB2312 and GBK labels share one converter: 你 = C4 E3 */
        {"=?gb2312?Q?=C4?= =?GBK?Q?=E3?=", "你"},
    };
    check_cases(cases, COUNT(cases));
}

static void test_halves_in_different_charsets_are_not_joined(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        {"=?UTF-8?B?8J+Y?= =?ISO-8859-1?Q?x?=", "\xEF\xBF\xBDx"},
        {"=?UTF-8?B?8J+Y?= plain =?UTF-8?B?gA==?=", "\xEF\xBF\xBD plain \xEF\xBF\xBD"},
    };
    check_cases(cases, COUNT(cases));
}

static void test_lenient_on_broken_words(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        /* lowercase encoding letters and hex */
        {"=?utf-8?q?caf=c3=a9?=", "café"},
        {"=?UTF-8?b?Y2Fmw6k=?=", "café"},
        /* RFC 2231 language suffix */
        {"=?utf-8*en?Q?hello_world?=", "hello world"},
        /* missing "?=" at the end, before text, before the next word */
        {"=?UTF-8?B?Y2Fmw6k=", "café"},
        {"=?utf-8?q?caf=C3=A9 au lait", "café au lait"},
        {"=?utf-8?q?a=?utf-8?q?b?=", "ab"},
        /* spaces inside a closed Q word */
        {"=?iso-8859-1?q?hello world?=", "hello world"},
        /* glued to text on both sides */
        {"Re:=?utf-8?q?caf=C3=A9?=!", "Re:café!"},
        /* base64 without padding, and made of padded chunks */
        {"=?utf-8?b?aGk?=", "hi"},
        {"=?utf-8?b?aGk=aGk=?=", "hihi"},
        /* "=" without two hex digits stays "=" */
        {"=?utf-8?q?100=_=3d=3D=zz=?=", "100= ===zz="},
        /* an empty closed word is nothing */
        {"a =?utf-8?q?\?= b", "a  b"},
    };
    check_cases(cases, COUNT(cases));
}

static void test_malformed_words_are_kept_as_is(void **state)
{
    (void)state;
    static const char *const same[] = {
        "=?",
        "=?=",
        "=?utf-8?",
        "=?utf-8?q",
        "=?utf-8?q?",
        "=?utf-8?x?abc?=",
        "=??q?abc?=",
        "=?utf 8?q?abc?=",
        "=?utf-8?qq?abc?=",
        "=?*en?q?abc?=",
        /* invalid base64 */
        "=?utf-8?b?!!!?=",
        "=?utf-8?b?a-b_?=",
        "=?utf-8?b?w6k\x01?=",
        /* unknown charsets, including names iconv would take as options or
         * paths: only listed charsets are reachable */
        "=?x-unknown?Q?abc?=",
        "=?utf-8//TRANSLIT?Q?abc?=",
        "=?UTF-8,IGNORE?Q?abc?=",
        "=?../../tmp/x?q?abc?=",
        "=?IBM930?B?QUJD?=",
        "=?ISO-2022-CN-EXT?B?QUJD?=",
        /* charset label longer than 40 */
        "=?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?q?abc?=",
        "plain text with ?= and =? in it",
    };
    for (size_t i = 0; i < COUNT(same); i++) {
        size_t len;
        char *got = decode_n(same[i], strlen(same[i]), &len);
        if (strcmp(got, same[i]) != 0)
            fail_msg("\"%s\" became \"%s\"", same[i], got);
        xfree(got);
    }
}

static void test_whitespace_next_to_kept_words_and_text_stays(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        {"=?utf-8?q?a?= =?x-foo?q?b?= =?utf-8?q?c?=", "a =?x-foo?q?b?= c"},
        {"=?utf-8?q?a?= =?utf-8?b?!?= =?utf-8?q?c?=", "a =?utf-8?b?!?= c"},
        {"x =?utf-8?q?a?= y", "x a y"},
        {"  =?utf-8?q?a?=  ", "  a  "},
    };
    check_cases(cases, COUNT(cases));
}

static void test_unmappable_and_ill_formed_bytes_become_replacement(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        /* 0x81 has no Windows-1252 character */
        {"=?windows-1252?q?a=81b?=", "a\xEF\xBF\xBD"
                                     "b"},
        /* GB2312 sequence cut at the end */
        {"=?gb2312?b?xA==?=", "\xEF\xBF\xBD"},
        /* ill-formed UTF-8 inside a word */
        {"=?utf-8?q?=FF=FEok?=", "\xEF\xBF\xBD\xEF\xBF\xBDok"},
        {"=?utf-8?q?=C0=80?=", "\xEF\xBF\xBD\xEF\xBF\xBD"},
        /* 8-bit text outside words */
        {"caf\xE9 =?utf-8?q?ok?=", "caf\xEF\xBF\xBD ok"},
        /* a lone escape in ISO-2022-JP, a cut GB18030 four-byte sequence */
        {"=?iso-2022-jp?q?a=1Bb?=", "a\xEF\xBF\xBD"
                                    "b"},
        {"=?gb18030?q?=81=30?=", "\xEF\xBF\xBD"
                                 "0"},
        /* 8-bit bytes inside a Q word are bytes of its charset */
        {"=?iso-8859-1?q?caf\xE9?=", "café"},
    };
    check_cases(cases, COUNT(cases));
}

static void test_nul_bytes_are_kept(void **state)
{
    (void)state;
    static const char in[] = "=?utf-8?q?a=00b?= c\0d";
    size_t len;
    char *got = decode_n(in, sizeof in - 1, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(got, "a\0b c\0d", 7);
    xfree(got);
}

static void test_folded_lines_are_unfolded(void **state)
{
    (void)state;
    static const struct case_ cases[] = {
        {"Re: a very long subject\r\n that was folded", "Re: a very long subject that was folded"},
        {"tab\n\tfolded", "tab\tfolded"},
        {"=?utf-8?q?a?=\r\n\tplain", "a\tplain"},
        {"not\r\nfolded\r\n", "not\r\nfolded\r\n"},
    };
    check_cases(cases, COUNT(cases));
}

/* A deterministic pseudo-random source (no hidden state between tests). */
static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void test_any_input_gives_utf8_within_growth_bound(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "=?",     "?=",     "?",      "=",      "utf-8", "UTF-8", "iso-2022-jp",
        "gb2312", "koi8-r", "x-none", "?q?",    "?B?",   "_",     "=E9",
        "=F0=9F", "8J+Y",   "gA==",   " ",      "\r\n ", "\t",    "\xFF",
        "\xE9",   "\x1B$B", "%F",     "\x1B(B", "\0",    "abc",   "*en",
    };
    uint32_t seed = 42;
    char in[256];
    for (int round = 0; round < 5000; round++) {
        size_t n = 0;
        int parts = (int)(next_rand(&seed) % 24);
        for (int p = 0; p < parts; p++) {
            const char *pc = pieces[next_rand(&seed) % COUNT(pieces)];
            size_t k = pc[0] == '\0' ? 1 : strlen(pc);
            if (n + k > sizeof in)
                break;
            memcpy(in + n, pc, k);
            n += k;
        }
        struct buf b;
        buf_init(&b, n * MIME_WORDS_MAX_GROWTH);
        assert_int_equal(mime_words_decode(in, n, &b), 0);
        assert_true(json_utf8_valid(b.data, b.len));
        assert_true(b.len <= n * MIME_WORDS_MAX_GROWTH);
        buf_free(&b);
    }
}

static void test_huge_inputs_decode(void **state)
{
    (void)state;
    /* 200,000 adjacent words of one charset: one run, "é" each */
    const char *w = "=?utf-8?b?w6k=?= ";
    size_t wl = strlen(w), count = 200000;
    struct buf in;
    buf_init(&in, wl * count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(buf_append(&in, w, wl), 0);
    size_t len;
    char *got = decode_n(in.data, in.len, &len);
    assert_int_equal(len, 2 * count + 1); /* the last space is not between words */
    for (size_t i = 0; i < count; i++)
        assert_memory_equal(got + 2 * i, "\xC3\xA9", 2);
    assert_int_equal(got[len - 1], ' ');
    xfree(got);

    /* a megabyte of "=?" candidates that are never words */
    buf_free(&in);
    buf_init(&in, (size_t)6 << 20);
    for (size_t i = 0; i < 200000; i++)
        assert_int_equal(buf_puts(&in, "=?a?q?"), 0);
    got = decode_n(in.data, in.len, &len);
    assert_int_equal(len, in.len);
    assert_memory_equal(got, in.data, len);
    xfree(got);

    /* one unclosed word with a megabyte of text */
    buf_reset(&in);
    assert_int_equal(buf_puts(&in, "=?utf-8?q?"), 0);
    for (size_t i = 0; i < (1u << 20); i++)
        assert_int_equal(buf_append(&in, "x", 1), 0);
    got = decode_n(in.data, in.len, &len);
    assert_int_equal(len, 1u << 20);
    assert_int_equal(got[0], 'x');
    assert_int_equal(got[len - 1], 'x');
    xfree(got);
    buf_free(&in);
}

static void test_decode_bounded_output_and_bad_arguments(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4);
    assert_int_equal(mime_words_decode("=?utf-8?q?hello?=", 17, &b), -SIMAP_ETOOBIG);
    buf_reset(&b);
    assert_int_equal(mime_words_decode("=?koi8-r?B?8NLJ18XU?=", 21, &b), -SIMAP_ETOOBIG);
    buf_reset(&b);
    assert_int_equal(mime_words_decode("hello", 5, &b), -SIMAP_ETOOBIG);
    buf_free(&b);

    buf_init(&b, 64);
    assert_int_equal(buf_puts(&b, "kept:"), 0);
    assert_int_equal(mime_words_decode(NULL, 3, &b), -SIMAP_EINVAL);
    assert_int_equal(mime_words_decode("x", 1, NULL), -SIMAP_EINVAL);
    assert_int_equal(mime_words_decode(NULL, 0, &b), 0);
    assert_int_equal(mime_words_decode("=?utf-8?q?=C3=A9?=", 18, &b), 0);
    assert_string_equal(b.data, "kept:é");
    buf_free(&b);
}

/* ---- Envelope fixtures ---- */

/* Initializers of envelope strings and lists. */
/* clang-format off */
#define S(lit)   {lit, sizeof(lit) - 1, 0}
#define NIL      {NULL, 0, 1}
#define LIST(a)  {a, COUNT(a), 0}
#define NIL_LIST {NULL, 0, 1}
/* clang-format on */

/* RFC 3501 section 7.4.2's FETCH example (the ENVELOPE of message 12). */
static const struct envelope_addr rfc_gray[] = {
    {S("Terry Gray"), NIL, S("gray"), S("cac.washington.edu")},
};
static const struct envelope_addr rfc_to[] = {
    {NIL, NIL, S("imap"), S("cac.washington.edu")},
};
static const struct envelope_addr rfc_cc[] = {
    {NIL, NIL, S("minutes"), S("CNRI.Reston.VA.US")},
    {S("John Klensin"), NIL, S("KLENSIN"), S("MIT.EDU")},
};
static const struct envelope rfc_env = {
    S("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"),
    S("IMAP4rev1 WG mtg summary and minutes"),
    LIST(rfc_gray),
    LIST(rfc_gray),
    LIST(rfc_gray),
    LIST(rfc_to),
    LIST(rfc_cc),
    NIL_LIST,
    NIL,
    S("<B27397-0100000@cac.washington.edu>"),
};

/* As Gmail's IMAP server sends a mail from an Apple Mail user. */
static const struct envelope_addr gm_from[] = {
    {S("=?utf-8?Q?J=C3=B6rg_M=C3=BCller?="), NIL, S("joerg"), S("example.de")},
};
static const struct envelope_addr gm_to[] = {
    {S("=?UTF-8?B?Sm9zw6kgR2FyY8OtYQ==?="), NIL, S("jose.garcia"), S("gmail.com")},
    {S("Plain Name"), NIL, S("plain"), S("example.com")},
    {NIL, NIL, S("bare"), S("example.com")},
};
static const struct envelope_addr gm_cc[] = {
    {S("=?koi8-r?B?8NLJ18XULCDNydI=?="), S("@relay.example"), S("ivan"), S("example.ru")},
};
static const struct envelope gm_env = {
    S("Tue, 4 Mar 2025 10:00:00 +0100"),
    S("=?UTF-8?B?8J+OiSBQYXJ0eSB0aW1lIQ==?=\r\n =?utf-8?Q?_Caf=C3=A9_=E2=98=95?="),
    LIST(gm_from),
    LIST(gm_from),
    LIST(gm_from),
    LIST(gm_to),
    LIST(gm_cc),
    NIL_LIST,
    S("<prev@example.de>"),
    S("<CAF+abc123@mail.gmail.com>"),
};

/* Generates {"envelope":...,"decoded":...} for env; returns the text. */
static char *fields_json(const struct envelope *env)
{
    struct json_gen *g = json_gen_new(1 << 20);
    json_gen_object_open(g);
    assert_int_equal(envelope_json_fields(g, env), 0);
    json_gen_object_close(g);
    char *out = NULL;
    assert_int_equal(json_gen_finish(g, &out, NULL), 0);
    json_gen_free(g);
    return out;
}

static yajl_val parse_object(const char *text)
{
    yajl_val v = NULL;
    char err[128];
    int rc = json_parse_object(text, strlen(text), JSON_DEFAULT_DEPTH, &v, err, sizeof err);
    if (rc != 0)
        fail_msg("parse failed: %s in %s", err, text);
    return v;
}

static void assert_keys(yajl_val obj, const char *const *keys, size_t n)
{
    assert_true(YAJL_IS_OBJECT(obj));
    assert_int_equal(obj->u.object.len, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(obj->u.object.keys[i], keys[i]);
}

static const char *const envelope_keys[] = {
    "date", "subject", "from", "sender", "reply_to", "to", "cc", "bcc", "in_reply_to", "message_id",
};
static const char *const raw_addr_keys[] = {"name", "route", "mailbox", "host"};
static const char *const decoded_keys[] = {
    "subject", "from", "sender", "reply_to", "to", "cc", "bcc",
};
static const char *const decoded_addr_keys[] = {"name", "mailbox", "host", "address"};

/* Asserts that v is the string want, or null when want is NULL. */
static void assert_str_or_null(yajl_val v, const char *want)
{
    assert_non_null(v);
    if (want == NULL) {
        assert_true(YAJL_IS_NULL(v));
        return;
    }
    assert_true(YAJL_IS_STRING(v));
    assert_string_equal(YAJL_GET_STRING(v), want);
}

static yajl_val at(yajl_val arr, size_t i)
{
    assert_true(YAJL_IS_ARRAY(arr));
    assert_true(i < arr->u.array.len);
    return arr->u.array.values[i];
}

/* ---- "envelope" ---- */

static void test_envelope_matches_original_serialization_exactly(void **state)
{
    (void)state;
    /* What ActiveSupport's to_json made of Net::IMAP's parse of the RFC 3501
     * example: Struct members in order, nil as null. */
    static const char want[] =
        "{\"date\":\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\","
        "\"subject\":\"IMAP4rev1 WG mtg summary and minutes\","
        "\"from\":[{\"name\":\"Terry Gray\",\"route\":null,\"mailbox\":\"gray\","
        "\"host\":\"cac.washington.edu\"}],"
        "\"sender\":[{\"name\":\"Terry Gray\",\"route\":null,\"mailbox\":\"gray\","
        "\"host\":\"cac.washington.edu\"}],"
        "\"reply_to\":[{\"name\":\"Terry Gray\",\"route\":null,\"mailbox\":\"gray\","
        "\"host\":\"cac.washington.edu\"}],"
        "\"to\":[{\"name\":null,\"route\":null,\"mailbox\":\"imap\","
        "\"host\":\"cac.washington.edu\"}],"
        "\"cc\":[{\"name\":null,\"route\":null,\"mailbox\":\"minutes\","
        "\"host\":\"CNRI.Reston.VA.US\"},"
        "{\"name\":\"John Klensin\",\"route\":null,\"mailbox\":\"KLENSIN\",\"host\":\"MIT.EDU\"}],"
        "\"bcc\":null,\"in_reply_to\":null,"
        "\"message_id\":\"<B27397-0100000@cac.washington.edu>\"}";
    struct json_gen *g = json_gen_new(1 << 16);
    assert_int_equal(envelope_json_envelope(g, &rfc_env), 0);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(json_gen_finish(g, &out, &len), 0);
    json_gen_free(g);
    assert_string_equal(out, want);
    assert_int_equal(len, sizeof want - 1);
    xfree(out);
}

static void test_envelope_keeps_raw_values_and_decoded_decodes_them(void **state)
{
    (void)state;
    char *text = fields_json(&gm_env);
    yajl_val v = parse_object(text);
    static const char *const top[] = {"envelope", "decoded"};
    assert_keys(v, top, COUNT(top));

    yajl_val e = json_get(v, "envelope");
    assert_keys(e, envelope_keys, COUNT(envelope_keys));
    assert_str_or_null(json_get(e, "date"), "Tue, 4 Mar 2025 10:00:00 +0100");
    assert_str_or_null(json_get(e, "subject"), "=?UTF-8?B?8J+OiSBQYXJ0eSB0aW1lIQ==?=\r\n "
                                               "=?utf-8?Q?_Caf=C3=A9_=E2=98=95?=");
    assert_str_or_null(json_get(e, "in_reply_to"), "<prev@example.de>");
    assert_str_or_null(json_get(e, "message_id"), "<CAF+abc123@mail.gmail.com>");
    assert_true(YAJL_IS_NULL(json_get(e, "bcc")));
    static const char *const lists[] = {"from", "sender", "reply_to"};
    for (size_t i = 0; i < COUNT(lists); i++) {
        yajl_val l = json_get(e, lists[i]);
        assert_int_equal(l->u.array.len, 1);
        assert_keys(at(l, 0), raw_addr_keys, COUNT(raw_addr_keys));
        assert_str_or_null(json_get(at(l, 0), "name"), "=?utf-8?Q?J=C3=B6rg_M=C3=BCller?=");
        assert_str_or_null(json_get(at(l, 0), "route"), NULL);
        assert_str_or_null(json_get(at(l, 0), "mailbox"), "joerg");
        assert_str_or_null(json_get(at(l, 0), "host"), "example.de");
    }
    yajl_val to = json_get(e, "to");
    assert_int_equal(to->u.array.len, 3);
    assert_str_or_null(json_get(at(to, 0), "name"), "=?UTF-8?B?Sm9zw6kgR2FyY8OtYQ==?=");
    assert_str_or_null(json_get(at(to, 2), "name"), NULL);
    assert_str_or_null(json_get(at(json_get(e, "cc"), 0), "route"), "@relay.example");

    yajl_val d = json_get(v, "decoded");
    assert_keys(d, decoded_keys, COUNT(decoded_keys));
    assert_str_or_null(json_get(d, "subject"), "🎉 Party time! Café ☕");
    for (size_t i = 0; i < COUNT(lists); i++) {
        yajl_val l = json_get(d, lists[i]);
        assert_int_equal(l->u.array.len, 1);
        assert_keys(at(l, 0), decoded_addr_keys, COUNT(decoded_addr_keys));
        assert_str_or_null(json_get(at(l, 0), "name"), "Jörg Müller");
        assert_str_or_null(json_get(at(l, 0), "mailbox"), "joerg");
        assert_str_or_null(json_get(at(l, 0), "host"), "example.de");
        assert_str_or_null(json_get(at(l, 0), "address"), "joerg@example.de");
    }
    to = json_get(d, "to");
    assert_int_equal(to->u.array.len, 3);
    assert_str_or_null(json_get(at(to, 0), "name"), "José García");
    assert_str_or_null(json_get(at(to, 0), "address"), "jose.garcia@gmail.com");
    assert_str_or_null(json_get(at(to, 1), "name"), "Plain Name");
    assert_str_or_null(json_get(at(to, 2), "name"), NULL);
    assert_str_or_null(json_get(at(to, 2), "address"), "bare@example.com");
    yajl_val cc = json_get(d, "cc");
    assert_str_or_null(json_get(at(cc, 0), "name"), "Привет, мир");
    assert_null(json_get(at(cc, 0), "route"));
    assert_true(YAJL_IS_NULL(json_get(d, "bcc")));

    json_free(v);
    xfree(text);
}

static void test_envelope_nil_everywhere_is_null(void **state)
{
    (void)state;
    static const struct envelope_addr nils[] = {{NIL, NIL, NIL, NIL}};
    const struct envelope env = {
        NIL, NIL, LIST(nils), NIL_LIST, NIL_LIST, NIL_LIST, NIL_LIST, NIL_LIST, NIL, NIL,
    };
    char *text = fields_json(&env);
    yajl_val v = parse_object(text);
    yajl_val e = json_get(v, "envelope");
    assert_keys(e, envelope_keys, COUNT(envelope_keys));
    for (size_t i = 0; i < COUNT(envelope_keys); i++) {
        if (strcmp(envelope_keys[i], "from") != 0)
            assert_true(YAJL_IS_NULL(json_get(e, envelope_keys[i])));
    }
    yajl_val a = at(json_get(e, "from"), 0);
    assert_keys(a, raw_addr_keys, COUNT(raw_addr_keys));
    for (size_t i = 0; i < COUNT(raw_addr_keys); i++)
        assert_true(YAJL_IS_NULL(json_get(a, raw_addr_keys[i])));

    yajl_val d = json_get(v, "decoded");
    assert_keys(d, decoded_keys, COUNT(decoded_keys));
    assert_true(YAJL_IS_NULL(json_get(d, "subject")));
    /* the all-NIL address is a group end marker: no mailbox to list */
    assert_int_equal(json_get(d, "from")->u.array.len, 0);
    assert_true(YAJL_IS_NULL(json_get(d, "to")));
    json_free(v);
    xfree(text);
}

static void test_zeroed_envelope_is_empty_strings_and_lists(void **state)
{
    (void)state;
    struct envelope env;
    memset(&env, 0, sizeof env);
    char *text = fields_json(&env);
    assert_string_equal(text, "{\"envelope\":{\"date\":\"\",\"subject\":\"\",\"from\":[],"
                              "\"sender\":[],\"reply_to\":[],\"to\":[],\"cc\":[],\"bcc\":[],"
                              "\"in_reply_to\":\"\",\"message_id\":\"\"},"
                              "\"decoded\":{\"subject\":\"\",\"from\":[],\"sender\":[],"
                              "\"reply_to\":[],\"to\":[],\"cc\":[],\"bcc\":[]}}");
    xfree(text);
}

static void test_group_markers_raw_kept_decoded_left_out(void **state)
{
    (void)state;
    /* To: undisclosed-recipients:;  Cc: team: alice@a.example, Bob <bob@b.example>; */
    static const struct envelope_addr undisclosed[] = {
        {NIL, NIL, S("undisclosed-recipients"), NIL},
        {NIL, NIL, NIL, NIL},
    };
    static const struct envelope_addr team[] = {
        {NIL, NIL, S("team"), NIL},
        {NIL, NIL, S("alice"), S("a.example")},
        {S("Bob"), NIL, S("bob"), S("b.example")},
        {NIL, NIL, NIL, NIL},
    };
    struct envelope env;
    memset(&env, 0, sizeof env);
    env.to = (struct envelope_addrs)LIST(undisclosed);
    env.cc = (struct envelope_addrs)LIST(team);
    char *text = fields_json(&env);
    yajl_val v = parse_object(text);
    yajl_val e = json_get(v, "envelope");
    yajl_val to = json_get(e, "to");
    assert_int_equal(to->u.array.len, 2);
    assert_str_or_null(json_get(at(to, 0), "mailbox"), "undisclosed-recipients");
    assert_str_or_null(json_get(at(to, 0), "host"), NULL);
    assert_int_equal(json_get(e, "cc")->u.array.len, 4);

    yajl_val d = json_get(v, "decoded");
    assert_int_equal(json_get(d, "to")->u.array.len, 0);
    yajl_val cc = json_get(d, "cc");
    assert_int_equal(cc->u.array.len, 2);
    assert_str_or_null(json_get(at(cc, 0), "address"), "alice@a.example");
    assert_str_or_null(json_get(at(cc, 1), "name"), "Bob");
    assert_str_or_null(json_get(at(cc, 1), "address"), "bob@b.example");
    json_free(v);
    xfree(text);
}

static void test_invalid_utf8_raw_values_are_sanitized(void **state)
{
    (void)state;
    static const struct envelope_addr from[] = {
        {S("Andr\xE9"), NIL,
         S("us\xFF"
           "er"),
         S("ex\xC3.com")},
    };
    struct envelope env;
    memset(&env, 0, sizeof env);
    env.subject = (struct envelope_str)S("caf\xE9 \xF0\x9F\x98");
    env.message_id = (struct envelope_str)S("<\xED\xA0\x80@x>"); /* a surrogate */
    env.from = (struct envelope_addrs)LIST(from);
    char *text = fields_json(&env);
    yajl_val v = parse_object(text);
    yajl_val e = json_get(v, "envelope");
    assert_str_or_null(json_get(e, "subject"), "caf\xEF\xBF\xBD \xEF\xBF\xBD");
    assert_str_or_null(json_get(e, "message_id"), "<\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD@x>");
    yajl_val a = at(json_get(e, "from"), 0);
    assert_str_or_null(json_get(a, "name"), "Andr\xEF\xBF\xBD");
    assert_str_or_null(json_get(a, "mailbox"), "us\xEF\xBF\xBD"
                                               "er");
    assert_str_or_null(json_get(a, "host"), "ex\xEF\xBF\xBD.com");
    yajl_val d = json_get(v, "decoded");
    assert_str_or_null(json_get(d, "subject"), "caf\xEF\xBF\xBD \xEF\xBF\xBD");
    a = at(json_get(d, "from"), 0);
    assert_str_or_null(json_get(a, "address"), "us\xEF\xBF\xBD"
                                               "er@ex\xEF\xBF\xBD.com");
    json_free(v);
    xfree(text);
}

static void test_nul_in_values_is_escaped(void **state)
{
    (void)state;
    struct envelope env;
    memset(&env, 0, sizeof env);
    env.subject = (struct envelope_str)S("a\0b");
    env.date = (struct envelope_str)S("=?utf-8?q?x=00y?=");
    char *text = fields_json(&env);
    /* core/json's parser refuses \u0000, so look at the text itself */
    assert_non_null(strstr(text, "\"subject\":\"a\\u0000b\""));
    assert_non_null(strstr(text, "\"date\":\"=?utf-8?q?x=00y?=\""));
    assert_non_null(strstr(text, "\"decoded\":{\"subject\":\"a\\u0000b\""));
    xfree(text);
}

static void test_bad_arguments_leave_generator_untouched(void **state)
{
    (void)state;
    static const struct envelope_addr bad_addr[] = {{NIL, NIL, {NULL, 3, 0}, NIL}};
    struct envelope bad;
    memset(&bad, 0, sizeof bad);
    bad.subject = (struct envelope_str){NULL, 5, 0};

    struct json_gen *g = json_gen_new(1 << 10);
    assert_int_equal(json_gen_object_open(g), 0);
    assert_int_equal(envelope_json_fields(g, &bad), -SIMAP_EINVAL);
    bad.subject = (struct envelope_str)S("ok");
    bad.cc = (struct envelope_addrs)LIST(bad_addr);
    assert_int_equal(envelope_json_fields(g, &bad), -SIMAP_EINVAL);
    bad.cc = (struct envelope_addrs){NULL, 2, 0};
    assert_int_equal(envelope_json_fields(g, &bad), -SIMAP_EINVAL);
    assert_int_equal(envelope_json_fields(g, NULL), -SIMAP_EINVAL);
    assert_int_equal(envelope_json_envelope(NULL, &rfc_env), -SIMAP_EINVAL);
    assert_int_equal(envelope_json_decoded(g, NULL), -SIMAP_EINVAL);
    assert_int_equal(envelope_json_rfc822(g, NULL, 1), -SIMAP_EINVAL);
    assert_int_equal(envelope_json_rfc822(NULL, "x", 1), -SIMAP_EINVAL);
    /* a NIL value's pointer is never read */
    bad.cc = (struct envelope_addrs){NULL, 7, 1};
    bad.date = (struct envelope_str){NULL, 9, 1};
    assert_int_equal(envelope_json_fields(g, &bad), 0);
    assert_int_equal(json_gen_object_close(g), 0);
    char *out = NULL;
    assert_int_equal(json_gen_finish(g, &out, NULL), 0);
    json_gen_free(g);
    yajl_val v = parse_object(out);
    assert_true(YAJL_IS_NULL(json_get(json_get(v, "envelope"), "cc")));
    assert_true(YAJL_IS_NULL(json_get(json_get(v, "envelope"), "date")));
    json_free(v);
    xfree(out);
}

static void test_generator_limit_is_reported(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(64);
    json_gen_object_open(g);
    assert_int_equal(envelope_json_fields(g, &gm_env), -SIMAP_ETOOBIG);
    assert_int_equal(json_gen_object_close(g), -SIMAP_ETOOBIG);
    char *out = (char *)1;
    assert_int_equal(json_gen_finish(g, &out, NULL), -SIMAP_ETOOBIG);
    assert_null(out);
    json_gen_free(g);

    /* a value where a key is due: the generator's order check */
    g = json_gen_new(1 << 16);
    json_gen_array_open(g);
    assert_int_equal(envelope_json_fields(g, &gm_env), -SIMAP_ESTATE);
    json_gen_free(g);
}

/* ---- "rfc822" ---- */

static const char mail_8bit[] = "From: a\r\nSubject: caf\xE9\r\n\r\nbody \xFF\0 end\r\n";

static void test_rfc822_utf8_message_is_used_as_is(void **state)
{
    (void)state;
    static const char mail[] = "From: a@b\r\nSubject: caf\xC3\xA9\r\n\r\nbody\0with NUL\r\n";
    struct envelope_rfc822 r;
    assert_int_equal(envelope_rfc822_fields(mail, sizeof mail - 1, &r), 1);
    assert_int_equal(r.is_utf8, 1);
    assert_ptr_equal(r.text, mail);
    assert_int_equal(r.text_len, sizeof mail - 1);
    assert_null(r.base64);
    envelope_rfc822_release(&r);
    assert_null(r.text);

    assert_int_equal(envelope_rfc822_fields(NULL, 0, &r), 1);
    assert_int_equal(r.text_len, 0);
    assert_non_null(r.text);
    envelope_rfc822_release(&r);
    envelope_rfc822_release(NULL);
    assert_int_equal(envelope_rfc822_fields(NULL, 2, &r), -SIMAP_EINVAL);
    assert_int_equal(envelope_rfc822_fields("x", 1, NULL), -SIMAP_EINVAL);
}

static void test_rfc822_8bit_message_gives_sanitized_text_and_base64(void **state)
{
    (void)state;
    static const char want_text[] =
        "From: a\r\nSubject: caf\xEF\xBF\xBD\r\n\r\nbody \xEF\xBF\xBD\0 end\r\n";
    struct envelope_rfc822 r;
    assert_int_equal(envelope_rfc822_fields(mail_8bit, sizeof mail_8bit - 1, &r), 0);
    assert_int_equal(r.is_utf8, 0);
    assert_int_equal(r.text_len, sizeof want_text - 1);
    assert_memory_equal(r.text, want_text, r.text_len);
    /* base64 of the exact bytes, computed independently */
    assert_string_equal(r.base64, "RnJvbTogYQ0KU3ViamVjdDogY2Fm6Q0KDQpib2R5IP8AIGVuZA0K");
    assert_int_equal(r.base64_len, strlen(r.base64));
    envelope_rfc822_release(&r);
}

/* Returns the number of bytes base64 b64[0..len) decodes to into out. */
static size_t b64_decode(const char *b64, size_t len, unsigned char *out)
{
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
    assert_true(n >= 0);
    size_t pad = (len > 0 && b64[len - 1] == '=') + (len > 1 && b64[len - 2] == '=');
    return (size_t)n - pad;
}

static void test_rfc822_base64_round_trips_large_binary(void **state)
{
    (void)state;
    /* 5 MiB + 1: past the 3 MiB encoding chunk, not a multiple of 3 */
    size_t n = ((size_t)5 << 20) + 1;
    char *raw = xmalloc(n);
    uint32_t seed = 7;
    for (size_t i = 0; i < n; i++)
        raw[i] = (char)(next_rand(&seed) & 0xFF);
    raw[0] = '\xFF'; /* certainly not UTF-8 */
    struct envelope_rfc822 r;
    assert_int_equal(envelope_rfc822_fields(raw, n, &r), 0);
    assert_int_equal(r.base64_len, (n + 2) / 3 * 4);
    assert_int_equal(strlen(r.base64), r.base64_len);
    unsigned char *back = xmalloc(r.base64_len);
    assert_int_equal(b64_decode(r.base64, r.base64_len, back), n);
    assert_memory_equal(back, raw, n);
    assert_true(json_utf8_valid(r.text, r.text_len));
    xfree(back);
    envelope_rfc822_release(&r);
    xfree(raw);
}

static void test_json_rfc822_adds_base64_only_when_needed(void **state)
{
    (void)state;
    /* UTF-8 with a NUL: "rfc822" only, NUL as \u0000 */
    struct json_gen *g = json_gen_new(1 << 16);
    json_gen_object_open(g);
    assert_int_equal(envelope_json_rfc822(g, "a\0b\xC3\xA9", 5), 0);
    json_gen_object_close(g);
    char *out = NULL;
    assert_int_equal(json_gen_finish(g, &out, NULL), 0);
    json_gen_free(g);
    assert_string_equal(out, "{\"rfc822\":\"a\\u0000b\xC3\xA9\"}");
    xfree(out);

    /* the whole message part of a webhook body in one generator */
    static const char mail[] = "Subject: caf\xE9\r\n\r\nhi\r\n";
    g = json_gen_new(1 << 16);
    json_gen_object_open(g);
    json_gen_key_str(g, "event", "new_mail");
    assert_int_equal(envelope_json_fields(g, &rfc_env), 0);
    assert_int_equal(envelope_json_rfc822(g, mail, sizeof mail - 1), 0);
    json_gen_key_int(g, "uid", 42);
    json_gen_object_close(g);
    assert_int_equal(json_gen_finish(g, &out, NULL), 0);
    json_gen_free(g);
    yajl_val v = parse_object(out);
    static const char *const keys[] = {"event",  "envelope",      "decoded",
                                       "rfc822", "rfc822_base64", "uid"};
    assert_keys(v, keys, COUNT(keys));
    assert_str_or_null(json_get(v, "rfc822"), "Subject: caf\xEF\xBF\xBD\r\n\r\nhi\r\n");
    const char *b64 = json_get_str(v, "rfc822_base64");
    unsigned char back[64];
    assert_int_equal(b64_decode(b64, strlen(b64), back), sizeof mail - 1);
    assert_memory_equal(back, mail, sizeof mail - 1);
    assert_str_or_null(json_get(json_get(v, "decoded"), "subject"),
                       "IMAP4rev1 WG mtg summary and minutes");
    json_free(v);
    xfree(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2047_section8_examples),
        cmocka_unit_test(test_real_world_mailers),
        cmocka_unit_test(test_every_documented_charset_is_available),
        cmocka_unit_test(test_char_split_across_words_of_one_charset_decodes_whole),
        cmocka_unit_test(test_halves_in_different_charsets_are_not_joined),
        cmocka_unit_test(test_lenient_on_broken_words),
        cmocka_unit_test(test_malformed_words_are_kept_as_is),
        cmocka_unit_test(test_whitespace_next_to_kept_words_and_text_stays),
        cmocka_unit_test(test_unmappable_and_ill_formed_bytes_become_replacement),
        cmocka_unit_test(test_nul_bytes_are_kept),
        cmocka_unit_test(test_folded_lines_are_unfolded),
        cmocka_unit_test(test_any_input_gives_utf8_within_growth_bound),
        cmocka_unit_test(test_huge_inputs_decode),
        cmocka_unit_test(test_decode_bounded_output_and_bad_arguments),
        cmocka_unit_test(test_envelope_matches_original_serialization_exactly),
        cmocka_unit_test(test_envelope_keeps_raw_values_and_decoded_decodes_them),
        cmocka_unit_test(test_envelope_nil_everywhere_is_null),
        cmocka_unit_test(test_zeroed_envelope_is_empty_strings_and_lists),
        cmocka_unit_test(test_group_markers_raw_kept_decoded_left_out),
        cmocka_unit_test(test_invalid_utf8_raw_values_are_sanitized),
        cmocka_unit_test(test_nul_in_values_is_escaped),
        cmocka_unit_test(test_bad_arguments_leave_generator_untouched),
        cmocka_unit_test(test_generator_limit_is_reported),
        cmocka_unit_test(test_rfc822_utf8_message_is_used_as_is),
        cmocka_unit_test(test_rfc822_8bit_message_gives_sanitized_text_and_base64),
        cmocka_unit_test(test_rfc822_base64_round_trips_large_binary),
        cmocka_unit_test(test_json_rfc822_adds_base64_only_when_needed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
