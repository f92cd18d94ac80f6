/*
 * Unit tests of core/json: strict UTF-8 and its sanitizer, the checked
 * generator, and the bounded parser with its accessors.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "core/err.h"

/* A byte string with its length: test tables hold embedded NULs. */
struct bytes {
    const char *s;
    size_t n;
};
/* Expands to the initializers of a struct bytes: {B("...")}. */
#define B(lit) lit, sizeof(lit) - 1

static const struct bytes well_formed[] = {
    {B("")},
    {B("plain ascii")},
    {B("a\0b")},             /* U+0000 is a character */
    {B("\x7f")},             /* U+007F */
    {B("\xC2\x80")},         /* U+0080, first 2-byte */
    {B("\xC3\xA9")},         /* é */
    {B("\xDF\xBF")},         /* U+07FF */
    {B("\xE0\xA0\x80")},     /* U+0800, first 3-byte */
    {B("\xE2\x82\xAC")},     /* € */
    {B("\xED\x9F\xBF")},     /* U+D7FF, just below the surrogates */
    {B("\xEE\x80\x80")},     /* U+E000, just above */
    {B("\xEF\xBF\xBF")},     /* U+FFFF */
    {B("\xF0\x90\x80\x80")}, /* U+10000, first 4-byte */
    {B("\xF0\x9F\x98\x80")}, /* 😀 */
    {B("\xF4\x8F\xBF\xBF")}, /* U+10FFFF, the last */
};

static const struct bytes ill_formed[] = {
    {B("\xC0\x80")},         /* overlong U+0000 */
    {B("\xC1\xBF")},         /* overlong U+007F */
    {B("\xE0\x80\x80")},     /* overlong 3-byte */
    {B("\xE0\x9F\xBF")},     /* overlong U+07FF */
    {B("\xF0\x80\x80\x80")}, /* overlong 4-byte */
    {B("\xF0\x8F\xBF\xBF")}, /* overlong U+FFFF */
    {B("\xED\xA0\x80")},     /* U+D800, high surrogate */
    {B("\xED\xBF\xBF")},     /* U+DFFF, low surrogate */
    {B("\xF4\x90\x80\x80")}, /* U+110000 */
    {B("\xF5\x80\x80\x80")}, /* F5 never starts a sequence */
    {B("\xF8\x88\x80\x80\x80")},
    {B("\xFE")},
    {B("\xFF")},
    {B("\xC3")},         /* truncated 2-byte */
    {B("\xE2\x82")},     /* truncated 3-byte */
    {B("\xF0\x9F\x98")}, /* truncated 4-byte */
    {B("\x80")},         /* lone continuation */
    {B("\xBF")},
    {B("\xC3\x41")},        /* lead then ASCII */
    {B("ok\xE2\x82(more")}, /* truncated in the middle */
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- UTF-8 ---- */

static void test_utf8_valid_accepts_every_boundary_code_point(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(well_formed); i++) {
        if (!json_utf8_valid(well_formed[i].s, well_formed[i].n))
            fail_msg("well-formed case %zu rejected", i);
    }
    assert_true(json_utf8_valid(NULL, 0));
}

static void test_utf8_valid_rejects_overlong_surrogate_and_truncated(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(ill_formed); i++) {
        if (json_utf8_valid(ill_formed[i].s, ill_formed[i].n))
            fail_msg("ill-formed case %zu accepted", i);
    }
    /* A valid prefix does not make the rest valid. */
    assert_false(json_utf8_valid("abc\xC0", 4));
}

static void expect_sanitized(const char *in, size_t n, const char *want, size_t wantlen)
{
    size_t len = 12345;
    char *out = json_utf8_sanitize(in, n, &len);
    assert_int_equal(len, wantlen);
    assert_memory_equal(out, want, wantlen);
    assert_int_equal(out[len], '\0');
    assert_true(json_utf8_valid(out, len));
    xfree(out);
}

#define FFFD                       "\xEF\xBF\xBD"
#define EXPECT_SANITIZED(in, want) expect_sanitized(in, sizeof(in) - 1, want, sizeof(want) - 1)

static void test_sanitize_replaces_each_maximal_subpart(void **state)
{
    (void)state;
    EXPECT_SANITIZED("a\xC0\x80z", "a" FFFD FFFD "z");         /* C0 is never a lead */
    EXPECT_SANITIZED("\xED\xA0\x80", FFFD FFFD FFFD);          /* surrogate: 3 bytes, 3 U+FFFD */
    EXPECT_SANITIZED("\xE0\x80\x80", FFFD FFFD FFFD);          /* overlong */
    EXPECT_SANITIZED("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* above U+10FFFF */
    EXPECT_SANITIZED("\xF5\x80", FFFD FFFD);
    EXPECT_SANITIZED("x\xF0\x9F\x98", "x" FFFD); /* truncated at the end: one */
    EXPECT_SANITIZED("\xF0\x9F\x98"
                     "A",
                     FFFD "A");              /* truncated mid-text: one */
    EXPECT_SANITIZED("\x80\xBF", FFFD FFFD); /* lone continuations */
    /* Unicode 15 table 3-8, the reference example of maximal subparts. */
    EXPECT_SANITIZED("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
                     "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d");
}

static void test_sanitize_keeps_valid_text_and_embedded_nul(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(well_formed); i++)
        expect_sanitized(well_formed[i].s, well_formed[i].n, well_formed[i].s, well_formed[i].n);
    EXPECT_SANITIZED("a\0\xFF"
                     "b",
                     "a\0" FFFD "b");
    size_t len = 99;
    char *out = json_utf8_sanitize(NULL, 0, &len);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    xfree(out);
}

static void test_sanitize_output_always_validates(void **state)
{
    (void)state;
    /* Deterministic pseudo-random bytes, biased to the interesting range. */
    uint32_t x = 2463534242u;
    char in[64];
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(round % (int)sizeof in);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            in[i] = (char)((x & 1) ? 0x80 + (x >> 8) % 0x80 : (x >> 8) % 0x80);
        }
        size_t len;
        char *out = json_utf8_sanitize(in, n, &len);
        if (!json_utf8_valid(out, len))
            fail_msg("round %d: sanitized output is not valid UTF-8", round);
        if (json_utf8_valid(in, n) && (len != n || memcmp(in, out, n) != 0))
            fail_msg("round %d: valid input was changed", round);
        xfree(out);
    }
}

/* ---- Generator ---- */

/* Finishes g, expects success, and returns the text (xfree() it). */
static char *finish_ok(struct json_gen *g)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(json_gen_finish(g, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    json_gen_free(g);
    return out;
}

static void test_gen_builds_nested_object_compactly(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "s", "x");
    json_gen_key_int(g, "i", -42);
    json_gen_key_bool(g, "t", 7);
    json_gen_key_bool(g, "f", 0);
    json_gen_key_null(g, "n");
    json_gen_key_str(g, "absent", NULL);
    json_gen_key_double(g, "d", 0.25);
    json_gen_key_array(g, "a");
    json_gen_int(g, 1);
    json_gen_str(g, "two");
    json_gen_object_open(g);
    json_gen_object_close(g);
    json_gen_array_close(g);
    json_gen_key_object(g, "o");
    json_gen_key_strn(g, "k", "value", 2);
    json_gen_object_close(g);
    json_gen_object_close(g);
    char *out = finish_ok(g);
    assert_string_equal(out,
                        "{\"s\":\"x\",\"i\":-42,\"t\":true,\"f\":false,\"n\":null,"
                        "\"absent\":null,\"d\":0.25,\"a\":[1,\"two\",{}],\"o\":{\"k\":\"va\"}}");
    xfree(out);
}

static void test_gen_escapes_quotes_backslash_and_control_chars(void **state)
{
    (void)state;
    static const char in[] = "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f";
    struct json_gen *g = json_gen_new(4096);
    json_gen_strn(g, in, sizeof in - 1);
    char *out = finish_ok(g);
    /* '/' and DEL need no escape (RFC 8259 section 7). */
    assert_string_equal(out, "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001F\x7f\"");
    xfree(out);
}

static void test_gen_embedded_nul_becomes_u0000(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_strn(g, "body", "a\0b\0", 4);
    json_gen_object_close(g);
    char *out = finish_ok(g);
    assert_string_equal(out, "{\"body\":\"a\\u0000b\\u0000\"}");
    xfree(out);
}

static void test_gen_passes_non_ascii_through_unescaped(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "cl\xC3\xA9", "\xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
    json_gen_object_close(g);
    char *out = finish_ok(g);
    assert_string_equal(out, "{\"cl\xC3\xA9\":\"\xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\"}");
    xfree(out);
}

static void test_gen_rejects_invalid_utf8_in_strings_and_keys(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(ill_formed); i++) {
        struct json_gen *g = json_gen_new(4096);
        assert_int_equal(json_gen_array_open(g), 0);
        if (json_gen_strn(g, ill_formed[i].s, ill_formed[i].n) != -SIMAP_EINVAL)
            fail_msg("ill-formed case %zu emitted as a string", i);
        char *out = (char *)1;
        assert_int_equal(json_gen_finish(g, &out, NULL), -SIMAP_EINVAL);
        assert_null(out);
        json_gen_free(g);
    }
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    assert_int_equal(json_gen_key_str(g, "\xED\xA0\x80", "v"), -SIMAP_EINVAL);
    json_gen_free(g);
}

static void test_gen_first_error_is_sticky(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    assert_int_equal(json_gen_key_str(g, "bad", "\xC0\x80"), -SIMAP_EINVAL);
    /* Later, otherwise valid calls report the first error and write nothing. */
    assert_int_equal(json_gen_key_str(g, "ok", "fine"), -SIMAP_EINVAL);
    assert_int_equal(json_gen_object_close(g), -SIMAP_EINVAL);
    char *out = (char *)1;
    size_t len = 7;
    assert_int_equal(json_gen_finish(g, &out, &len), -SIMAP_EINVAL);
    assert_null(out);
    assert_int_equal(len, 0);
    json_gen_free(g);
}

/* Runs one misuse sequence: every step up to the last succeeds, the last
 * fails with want. */
static void expect_order_error(const char *what, int (*steps[])(struct json_gen *), size_t n,
                               int want)
{
    struct json_gen *g = json_gen_new(4096);
    for (size_t i = 0; i + 1 < n; i++)
        if (steps[i](g) != 0)
            fail_msg("%s: step %zu failed", what, i);
    if (steps[n - 1](g) != want)
        fail_msg("%s: last step did not fail as expected", what);
    char *out = NULL;
    assert_int_equal(json_gen_finish(g, &out, NULL), want);
    json_gen_free(g);
}

static int key_a(struct json_gen *g)
{
    return json_gen_key(g, "a");
}

static int int_1(struct json_gen *g)
{
    return json_gen_int(g, 1);
}

static void test_gen_rejects_calls_out_of_order(void **state)
{
    (void)state;
    int (*key_in_array[])(struct json_gen *) = {json_gen_array_open, key_a};
    int (*value_for_key[])(struct json_gen *) = {json_gen_object_open, int_1};
    int (*close_wrong_kind[])(struct json_gen *) = {json_gen_array_open, json_gen_object_close};
    int (*dangling_key[])(struct json_gen *) = {json_gen_object_open, key_a, json_gen_object_close};
    int (*two_keys[])(struct json_gen *) = {json_gen_object_open, key_a, key_a};
    int (*close_at_top[])(struct json_gen *) = {json_gen_array_close};
    int (*key_at_top[])(struct json_gen *) = {key_a};
    int (*second_value[])(struct json_gen *) = {int_1, int_1};
    expect_order_error("key in array", key_in_array, 2, -SIMAP_ESTATE);
    expect_order_error("value where key due", value_for_key, 2, -SIMAP_ESTATE);
    expect_order_error("close wrong kind", close_wrong_kind, 2, -SIMAP_ESTATE);
    expect_order_error("dangling key", dangling_key, 3, -SIMAP_ESTATE);
    expect_order_error("two keys", two_keys, 3, -SIMAP_ESTATE);
    expect_order_error("close at top", close_at_top, 1, -SIMAP_ESTATE);
    expect_order_error("key at top", key_at_top, 1, -SIMAP_ESTATE);
    expect_order_error("second top-level value", second_value, 2, -SIMAP_ESTATE);
}

static void test_gen_finish_refuses_incomplete_and_repeated(void **state)
{
    (void)state;
    char *out = NULL;
    struct json_gen *g = json_gen_new(4096);
    assert_int_equal(json_gen_finish(g, &out, NULL), -SIMAP_ESTATE); /* nothing written */
    json_gen_free(g);

    g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_array(g, "a");
    assert_int_equal(json_gen_finish(g, &out, NULL), -SIMAP_ESTATE); /* still open */
    assert_null(out);
    json_gen_free(g);

    g = json_gen_new(4096);
    assert_int_equal(json_gen_int(g, 5), 0);
    assert_int_equal(json_gen_finish(g, &out, NULL), 0);
    assert_string_equal(out, "5");
    xfree(out);
    assert_int_equal(json_gen_finish(g, &out, NULL), -SIMAP_ESTATE);
    assert_int_equal(json_gen_null(g), -SIMAP_ESTATE);
    json_gen_free(g);
    json_gen_free(NULL);
}

static char *gen_one_double(double v, int *rc)
{
    struct json_gen *g = json_gen_new(4096);
    char *out = NULL;
    *rc = json_gen_double(g, v);
    if (*rc == 0)
        *rc = json_gen_finish(g, &out, NULL);
    json_gen_free(g);
    return out;
}

static void test_gen_double_is_shortest_round_trip_and_refuses_nan(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0.1, "0.1"},
        {3.0, "3"},
        {-0.5, "-0.5"},
        {1e300, "1e+300"},
        {1e-7, "1e-07"},
        {1.0 / 3, "0.3333333333333333"},
        {123456789.125, "123456789.125"},
    };
    int rc;
    for (size_t i = 0; i < COUNT(cases); i++) {
        char *out = gen_one_double(cases[i].v, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(out, cases[i].want);
        assert_true(strtod(out, NULL) == cases[i].v);
        xfree(out);
    }
    assert_null(gen_one_double(NAN, &rc));
    assert_int_equal(rc, -SIMAP_EINVAL);
    assert_null(gen_one_double(INFINITY, &rc));
    assert_int_equal(rc, -SIMAP_EINVAL);
    assert_null(gen_one_double(-INFINITY, &rc));
    assert_int_equal(rc, -SIMAP_EINVAL);
}

static void test_gen_int64_extremes(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    json_gen_array_open(g);
    json_gen_int(g, INT64_MIN);
    json_gen_int(g, INT64_MAX);
    json_gen_int(g, 0);
    json_gen_array_close(g);
    char *out = finish_ok(g);
    assert_string_equal(out, "[-9223372036854775808,9223372036854775807,0]");
    xfree(out);
}

static void test_gen_raw_inserts_checked_json_verbatim(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    static const char env[] = " {\"x\" : [1, \"\xC3\xA9\"]}\n";
    assert_int_equal(json_gen_key_raw(g, "envelope", env, sizeof env - 1), 0);
    json_gen_key_array(g, "list");
    assert_int_equal(json_gen_raw(g, "42", 2), 0);
    assert_int_equal(json_gen_raw(g, "null", 4), 0);
    json_gen_array_close(g);
    json_gen_object_close(g);
    char *out = finish_ok(g);
    assert_string_equal(out, "{\"envelope\":{\"x\" : [1, \"\xC3\xA9\"]},\"list\":[42,null]}");
    xfree(out);
}

static void test_gen_raw_refuses_anything_but_one_value(void **state)
{
    (void)state;
    static const struct bytes bad[] = {
        {B("")},        {B("   ")},          {B("{\"x\":")}, {B("1 2")},    {B("[1]x")},
        {B("{'a':1}")}, {B("\"\xC0\x80\"")}, {B("[1,\0]")},  {B("/*c*/1")}, {B("\"\xED\xA0\x80\"")},
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        struct json_gen *g = json_gen_new(4096);
        json_gen_array_open(g);
        if (json_gen_raw(g, bad[i].s, bad[i].n) != -SIMAP_EINVAL)
            fail_msg("raw case %zu accepted", i);
        json_gen_free(g);
    }
}

static void test_gen_output_past_max_is_too_big(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(16);
    json_gen_object_open(g);
    assert_int_equal(json_gen_key_str(g, "k", "0123456789abcdef"), -SIMAP_ETOOBIG);
    assert_int_equal(json_gen_object_close(g), -SIMAP_ETOOBIG);
    char *out = NULL;
    assert_int_equal(json_gen_finish(g, &out, NULL), -SIMAP_ETOOBIG);
    json_gen_free(g);

    /* Exactly max bytes fit. */
    g = json_gen_new(9);
    json_gen_str(g, "1234567");
    out = finish_ok(g);
    assert_string_equal(out, "\"1234567\"");
    xfree(out);
}

static void test_gen_nesting_past_limit_is_too_big(void **state)
{
    (void)state;
    struct json_gen *g = json_gen_new(4096);
    for (int i = 0; i < JSON_GEN_MAX_DEPTH; i++)
        assert_int_equal(json_gen_array_open(g), 0);
    assert_int_equal(json_gen_array_open(g), -SIMAP_ETOOBIG);
    json_gen_free(g);

    g = json_gen_new(4096);
    for (int i = 0; i < JSON_GEN_MAX_DEPTH; i++)
        json_gen_array_open(g);
    for (int i = 0; i < JSON_GEN_MAX_DEPTH; i++)
        assert_int_equal(json_gen_array_close(g), 0);
    char *out = finish_ok(g);
    assert_int_equal(strlen(out), 2 * JSON_GEN_MAX_DEPTH);
    xfree(out);
}

/* ---- Parser ---- */

static yajl_val parse_ok(const char *text)
{
    yajl_val v = NULL;
    char err[128] = "unset";
    int rc = json_parse(text, strlen(text), JSON_DEFAULT_DEPTH, &v, err, sizeof err);
    if (rc != 0)
        fail_msg("parse of %s failed: %s", text, err);
    assert_string_equal(err, "");
    assert_non_null(v);
    return v;
}

/* Parses text expecting code; returns the message in err. */
static void parse_fails(const char *text, size_t len, size_t depth, int code, char *err,
                        size_t errlen)
{
    yajl_val v = (yajl_val)1;
    int rc = json_parse(text, len, depth, &v, err, errlen);
    if (rc != code)
        fail_msg("parse of %.40s gave %d, want %d (%s)", text, rc, code, err);
    assert_null(v);
    if (err != NULL && errlen > 0) {
        assert_true(err[0] != '\0');
        assert_null(strchr(err, '\n'));
    }
}

static void test_gen_then_parse_round_trips_tricky_strings(void **state)
{
    (void)state;
    static const char *const strings[] = {
        "",
        "plain",
        "q\"uote",
        "back\\slash",
        "ctl\x01\x02\x1f",
        "nl\nand\ttab",
        "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
        "</script>",
        "\\u0000 as text",
    };
    struct json_gen *g = json_gen_new(1 << 16);
    json_gen_object_open(g);
    char key[16];
    for (size_t i = 0; i < COUNT(strings); i++) {
        snprintf(key, sizeof key, "k%zu", i);
        json_gen_key_str(g, key, strings[i]);
    }
    json_gen_key_int(g, "min", INT64_MIN);
    json_gen_key_int(g, "max", INT64_MAX);
    json_gen_key_bool(g, "yes", 1);
    json_gen_key_double(g, "pi", 3.141592653589793);
    json_gen_object_close(g);
    char *text = finish_ok(g);

    yajl_val v = NULL;
    assert_int_equal(json_parse_object(text, strlen(text), 4, &v, NULL, 0), 0);
    for (size_t i = 0; i < COUNT(strings); i++) {
        snprintf(key, sizeof key, "k%zu", i);
        assert_non_null(json_get_str(v, key));
        assert_string_equal(json_get_str(v, key), strings[i]);
    }
    int64_t n = 0;
    assert_int_equal(json_get_int(v, "min", &n), 0);
    assert_true(n == INT64_MIN);
    assert_int_equal(json_get_int(v, "max", &n), 0);
    assert_true(n == INT64_MAX);
    int b = 0;
    assert_int_equal(json_get_bool(v, "yes", &b), 0);
    assert_int_equal(b, 1);
    yajl_val pi = json_get(v, "pi");
    assert_true(YAJL_IS_DOUBLE(pi));
    assert_true(YAJL_GET_DOUBLE(pi) == 3.141592653589793);
    json_free(v);
    xfree(text);
}

static void test_parse_accessors_distinguish_missing_and_wrong_type(void **state)
{
    (void)state;
    yajl_val v = parse_ok("{\"s\":\"str\",\"i\":7,\"f\":1.5,\"t\":true,\"F\":false,\"n\":null,"
                          "\"o\":{\"inner\":\"x\"},\"a\":[1,2,3]}");
    assert_string_equal(json_get_str(v, "s"), "str");
    assert_null(json_get_str(v, "i"));       /* not a string */
    assert_null(json_get_str(v, "n"));       /* null is not a string */
    assert_null(json_get_str(v, "missing")); /* absent */

    int64_t n = 99;
    assert_int_equal(json_get_int(v, "i", &n), 0);
    assert_int_equal(n, 7);
    n = 99;
    assert_int_equal(json_get_int(v, "missing", &n), -SIMAP_ENOTFOUND);
    assert_int_equal(json_get_int(v, "f", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "s", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "n", &n), -SIMAP_EINVAL);
    assert_int_equal(n, 99); /* unchanged on error */

    int b = 5;
    assert_int_equal(json_get_bool(v, "t", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(json_get_bool(v, "F", &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(json_get_bool(v, "missing", &b), -SIMAP_ENOTFOUND);
    assert_int_equal(json_get_bool(v, "i", &b), -SIMAP_EINVAL);

    yajl_val o = json_get(v, "o");
    assert_true(YAJL_IS_OBJECT(o));
    assert_string_equal(json_get_str(o, "inner"), "x");
    yajl_val a = json_get(v, "a");
    assert_true(YAJL_IS_ARRAY(a));
    assert_int_equal(a->u.array.len, 3);
    assert_int_equal(json_val_int(a->u.array.values[2], &n), 0);
    assert_int_equal(n, 3);
    /* Accessors on a non-object or NULL find nothing. */
    assert_null(json_get(a, "x"));
    assert_null(json_get(NULL, "x"));
    assert_int_equal(json_get_int(NULL, "x", &n), -SIMAP_ENOTFOUND);
    json_free(v);
    json_free(NULL);
}

static void test_parse_numbers_outside_int64_are_not_integers(void **state)
{
    (void)state;
    yajl_val v = parse_ok("{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                          "\"over\":9223372036854775808,\"under\":-9223372036854775809,"
                          "\"huge\":123456789012345678901234567890,\"exp\":1e3,\"dot\":1.0,"
                          "\"negzero\":-0,\"inf\":1e400}");
    int64_t n = 0;
    assert_int_equal(json_get_int(v, "max", &n), 0);
    assert_true(n == INT64_MAX);
    assert_int_equal(json_get_int(v, "min", &n), 0);
    assert_true(n == INT64_MIN);
    n = 42;
    assert_int_equal(json_get_int(v, "over", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "under", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "huge", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "exp", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "dot", &n), -SIMAP_EINVAL);
    assert_int_equal(json_get_int(v, "inf", &n), -SIMAP_EINVAL);
    assert_int_equal(n, 42);
    assert_int_equal(json_get_int(v, "negzero", &n), 0);
    assert_int_equal(n, 0);
    json_free(v);
}

static void test_parse_syntax_errors_give_one_line_with_offset(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"", "premature EOF near byte 0"},
        {"{", "premature EOF near byte 1"},
        {"{\"a\":}", "unallowed token at this point in JSON text near byte 6"},
        {"{} x", "trailing garbage near byte 4"},
        {"{'a':1}", "lexical error: invalid char in json text near byte 2"},
        {"[1,]", "parse error: unallowed token"},
        {"{\"a\" 1}", "separated by a colon"},
        {"\"open", "premature EOF"},
        {"{\"a\":\"\\x\"}", "lexical error: inside a string, '\\' occurs before a character"},
        {"[01]", "parse error: after array element, I expect ',' or ']' near byte 3"},
    };
    char err[160];
    for (size_t i = 0; i < COUNT(cases); i++) {
        parse_fails(cases[i].text, strlen(cases[i].text), 64, -SIMAP_EINVAL, err, sizeof err);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err, cases[i].want);
    }
}

static void test_parse_rejects_invalid_utf8_and_nul_bytes(void **state)
{
    (void)state;
    char err[128];
    for (size_t i = 0; i < COUNT(ill_formed); i++) {
        char text[64];
        int n =
            snprintf(text, sizeof text, "{\"k\":\"%.*s\"}", (int)ill_formed[i].n, ill_formed[i].s);
        parse_fails(text, (size_t)n, 64, -SIMAP_EINVAL, err, sizeof err);
        if (strstr(err, "invalid UTF-8 at byte ") == NULL)
            fail_msg("case %zu: %s", i, err);
    }
    parse_fails("{\"k\":\"\xC0\x80\"}", 10, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "invalid UTF-8 at byte 6");
    /* A NUL byte would end yajl's copy early and hide what follows. */
    parse_fails("{\"a\":1}\0{", 9, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "NUL byte at byte 7");
}

static void test_parse_rejects_deep_nesting_before_building(void **state)
{
    (void)state;
    enum { DEEP = 10000 };
    static char text[2 * DEEP];
    char err[128];
    memset(text, '[', DEEP);
    memset(text + DEEP, ']', DEEP);
    parse_fails(text, sizeof text, 64, -SIMAP_ETOOBIG, err, sizeof err);
    assert_string_equal(err, "nesting deeper than 64 at byte 64");
    /* Even when asked for more, the recursion-safe cap holds. */
    parse_fails(text, sizeof text, (size_t)-1, -SIMAP_ETOOBIG, err, sizeof err);
    assert_string_equal(err, "nesting deeper than 1024 at byte 1024");

    /* Exactly max_depth is fine; one more is not; objects count too. */
    char ok[2 * 64 + 1];
    memset(ok, '[', 64);
    memset(ok + 64, ']', 64);
    yajl_val v = NULL;
    assert_int_equal(json_parse(ok, 128, 64, &v, err, sizeof err), 0);
    json_free(v);
    parse_fails(ok, 128, 63, -SIMAP_ETOOBIG, err, sizeof err);
    parse_fails("{\"a\":{\"b\":{}}}", 14, 2, -SIMAP_ETOOBIG, err, sizeof err);
    assert_string_equal(err, "nesting deeper than 2 at byte 10");
}

static void test_parse_brackets_inside_strings_do_not_count(void **state)
{
    (void)state;
    yajl_val v = NULL;
    static const char text[] = "{\"a\":\"[[[[{{{{\\\"[[[[\",\"b\":\"\\\\\"}";
    char err[128] = "";
    assert_int_equal(json_parse(text, sizeof text - 1, 1, &v, err, sizeof err), 0);
    assert_string_equal(json_get_str(v, "a"), "[[[[{{{{\"[[[[");
    assert_string_equal(json_get_str(v, "b"), "\\");
    json_free(v);
    /* Comments could hide brackets from the count: refused. */
    parse_fails("/*\"*/[[[[\"\"]]]]", 15, 2, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "comments are not JSON, at byte 0");
}

static void test_parse_rejects_duplicate_keys(void **state)
{
    (void)state;
    char err[128];
    /* Decision: RFC 8259 leaves duplicates to the implementation (yajl_tree
     * keeps both, lookups see the first); two readers of one body could
     * disagree, so the parse fails instead. */
    parse_fails("{\"a\":1,\"a\":2}", 13, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "duplicate key \"a\"");
    parse_fails("{\"o\":[{\"x\":1,\"y\":2,\"x\":3}]}", 27, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "duplicate key \"x\"");

    /* Many keys (the sorted path), one duplicate far apart. */
    char text[1024];
    size_t n = 0;
    text[n++] = '{';
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "\"k%d\":%d,", i, i);
    n += (size_t)snprintf(text + n, sizeof text - n, "\"k3\":0}");
    parse_fails(text, n, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "duplicate key \"k3\"");

    /* The same key in different objects is fine. */
    yajl_val v = parse_ok("{\"a\":{\"a\":1},\"b\":[{\"a\":2},{\"a\":3}]}");
    json_free(v);
}

static void test_parse_rejects_u0000_and_unpaired_surrogates(void **state)
{
    (void)state;
    char err[128];
    parse_fails("{\"tag\":\"admin\\u0000x\"}", 22, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "\\u0000 in a string at byte 13");
    parse_fails("{\"a\\u0000\":1}", 13, 64, -SIMAP_EINVAL, err, sizeof err);
    parse_fails("[\"\\udc00\"]", 10, 64, -SIMAP_EINVAL, err, sizeof err);
    assert_string_equal(err, "unpaired surrogate escape at byte 2");
    parse_fails("[\"\\ud800\"]", 10, 64, -SIMAP_EINVAL, err, sizeof err);
    parse_fails("[\"\\ud800\\u0041\"]", 16, 64, -SIMAP_EINVAL, err, sizeof err);
    parse_fails("[\"\\ud800\\ud800\"]", 16, 64, -SIMAP_EINVAL, err, sizeof err);

    /* A proper pair decodes; an escaped backslash before "u0000" is text. */
    yajl_val v = parse_ok("{\"e\":\"\\ud83d\\ude00\",\"lit\":\"\\\\u0000\",\"A\":\"\\u00e9\"}");
    assert_string_equal(json_get_str(v, "e"), "\xF0\x9F\x98\x80");
    assert_string_equal(json_get_str(v, "lit"), "\\u0000");
    assert_string_equal(json_get_str(v, "A"), "\xC3\xA9");
    json_free(v);
}

static void test_parse_object_refuses_other_top_level_values(void **state)
{
    (void)state;
    static const char *const others[] = {"[1]", "42", "\"s\"", "null", "true"};
    char err[128];
    for (size_t i = 0; i < COUNT(others); i++) {
        yajl_val v = (yajl_val)1;
        assert_int_equal(json_parse_object(others[i], strlen(others[i]), 64, &v, err, sizeof err),
                         -SIMAP_EINVAL);
        assert_null(v);
        assert_string_equal(err, "top-level value must be an object");
        /* json_parse() itself takes any value. */
        v = parse_ok(others[i]);
        json_free(v);
    }
}

static void test_parse_reads_only_len_bytes_of_unterminated_input(void **state)
{
    (void)state;
    static const char mem[] = {'{', '"', 'a', '"', ':', '1', '}', 'X', 'Y'};
    yajl_val v = NULL;
    assert_int_equal(json_parse(mem, 7, 64, &v, NULL, 0), 0);
    int64_t n = 0;
    assert_int_equal(json_get_int(v, "a", &n), 0);
    assert_int_equal(n, 1);
    json_free(v);
    /* NULL message buffer on failure is fine too. */
    assert_int_equal(json_parse(mem, 9, 64, &v, NULL, 0), -SIMAP_EINVAL);
    assert_null(v);
}

static void test_parse_error_message_truncation_keeps_utf8_whole(void **state)
{
    (void)state;
    char err[19];
    /* The duplicate key is quoted in the message; err is too short for it
     * and would end mid-character. */
    static const char text[] = "{\"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\":1,"
                               "\"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\":2}";
    yajl_val v = NULL;
    assert_int_equal(json_parse(text, sizeof text - 1, 64, &v, err, sizeof err), -SIMAP_EINVAL);
    assert_true(strncmp(err, "duplicate key \"", 15) == 0);
    assert_true(json_utf8_valid(err, strlen(err)));
    assert_int_equal(strlen(err), 17); /* 15 + one whole "é"; half of the next cut */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_accepts_every_boundary_code_point),
        cmocka_unit_test(test_utf8_valid_rejects_overlong_surrogate_and_truncated),
        cmocka_unit_test(test_sanitize_replaces_each_maximal_subpart),
        cmocka_unit_test(test_sanitize_keeps_valid_text_and_embedded_nul),
        cmocka_unit_test(test_sanitize_output_always_validates),
        cmocka_unit_test(test_gen_builds_nested_object_compactly),
        cmocka_unit_test(test_gen_escapes_quotes_backslash_and_control_chars),
        cmocka_unit_test(test_gen_embedded_nul_becomes_u0000),
        cmocka_unit_test(test_gen_passes_non_ascii_through_unescaped),
        cmocka_unit_test(test_gen_rejects_invalid_utf8_in_strings_and_keys),
        cmocka_unit_test(test_gen_first_error_is_sticky),
        cmocka_unit_test(test_gen_rejects_calls_out_of_order),
        cmocka_unit_test(test_gen_finish_refuses_incomplete_and_repeated),
        cmocka_unit_test(test_gen_double_is_shortest_round_trip_and_refuses_nan),
        cmocka_unit_test(test_gen_int64_extremes),
        cmocka_unit_test(test_gen_raw_inserts_checked_json_verbatim),
        cmocka_unit_test(test_gen_raw_refuses_anything_but_one_value),
        cmocka_unit_test(test_gen_output_past_max_is_too_big),
        cmocka_unit_test(test_gen_nesting_past_limit_is_too_big),
        cmocka_unit_test(test_gen_then_parse_round_trips_tricky_strings),
        cmocka_unit_test(test_parse_accessors_distinguish_missing_and_wrong_type),
        cmocka_unit_test(test_parse_numbers_outside_int64_are_not_integers),
        cmocka_unit_test(test_parse_syntax_errors_give_one_line_with_offset),
        cmocka_unit_test(test_parse_rejects_invalid_utf8_and_nul_bytes),
        cmocka_unit_test(test_parse_rejects_deep_nesting_before_building),
        cmocka_unit_test(test_parse_brackets_inside_strings_do_not_count),
        cmocka_unit_test(test_parse_rejects_duplicate_keys),
        cmocka_unit_test(test_parse_rejects_u0000_and_unpaired_surrogates),
        cmocka_unit_test(test_parse_object_refuses_other_top_level_values),
        cmocka_unit_test(test_parse_reads_only_len_bytes_of_unterminated_input),
        cmocka_unit_test(test_parse_error_message_truncation_keeps_utf8_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
