/*
 * Unit tests of cmd/api/params: percent-decoding, form and JSON parameters,
 * path splitting, typed reading. The module is part of superimap-api, not of
 * libsuperimap.a, so its source is included here.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/api/params.c"

/* The value and type of a parameter, or "(absent)" and -1. */
static const char *val(const struct params *p, const char *name)
{
    const struct param *q = params_get(p, name);
    return q ? q->value : "(absent)";
}

static int type_of(const struct params *p, const char *name)
{
    const struct param *q = params_get(p, name);
    return q ? (int)q->type : -1;
}

static void test_percent_decode_handles_escapes_and_plus(void **state)
{
    (void)state;
    char out[64];
    size_t n;
    assert_int_equal(params_percent_decode("a%40b+c%2F", 10, 1, out, &n), 0);
    assert_string_equal(out, "a@b c/");
    assert_int_equal(n, 6);
    assert_int_equal(params_percent_decode("a+b", 3, 0, out, &n), 0);
    assert_string_equal(out, "a+b");
    assert_int_equal(params_percent_decode("%e2%9C%93", 9, 0, out, &n), 0);
    assert_string_equal(out, "\xe2\x9c\x93");
    assert_int_equal(params_percent_decode("x%00y", 5, 0, out, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[1], '\0');
}

static void test_percent_decode_rejects_truncated_and_bad_escapes(void **state)
{
    (void)state;
    char out[16];
    size_t n;
    static const char *const bad[] = {"%", "%4", "a%zz", "%g0", "ab%"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(params_percent_decode(bad[i], strlen(bad[i]), 1, out, &n), -SIMAP_EINVAL);
}

static void test_form_parses_pairs_and_later_values_win(void **state)
{
    (void)state;
    struct params p;
    params_init(&p);
    char err[128];
    const char *f = "tag=User+1&email=u%40x.com&&flag&tag=User+2&empty=";
    assert_int_equal(params_parse_form(&p, f, strlen(f), err, sizeof err), 0);
    assert_int_equal(p.n, 4);
    assert_string_equal(val(&p, "tag"), "User 2");
    assert_string_equal(val(&p, "email"), "u@x.com");
    assert_string_equal(val(&p, "flag"), "");
    assert_string_equal(val(&p, "empty"), "");
    assert_null(params_get(&p, "nope"));
    params_free(&p);
}

static void test_form_refuses_nul_bad_utf8_and_names_the_parameter(void **state)
{
    (void)state;
    struct params p;
    params_init(&p);
    char err[128];
    assert_int_equal(params_parse_form(&p, "tag=a%00b", 9, err, sizeof err), -SIMAP_EINVAL);
    assert_non_null(strstr(err, "tag"));
    assert_non_null(strstr(err, "NUL"));
    assert_int_equal(params_parse_form(&p, "tag=%C3%28", 10, err, sizeof err), -SIMAP_EINVAL);
    assert_non_null(strstr(err, "UTF-8"));
    assert_int_equal(params_parse_form(&p, "=x", 2, err, sizeof err), -SIMAP_EINVAL);
    assert_int_equal(params_parse_form(&p, "a%zz=1", 6, err, sizeof err), -SIMAP_EINVAL);
    params_free(&p);
}

static void test_form_caps_the_number_of_parameters(void **state)
{
    (void)state;
    struct params p;
    params_init(&p);
    char form[2048] = "", err[128];
    for (int i = 0; i <= PARAMS_MAX; i++)
        snprintf(form + strlen(form), sizeof form - strlen(form), "k%d=v&", i);
    assert_int_equal(params_parse_form(&p, form, strlen(form), err, sizeof err), -SIMAP_ETOOBIG);
    assert_int_equal(p.n, PARAMS_MAX);
    params_free(&p);
}

static void test_json_keeps_types(void **state)
{
    (void)state;
    struct params p;
    params_init(&p);
    char err[128];
    const char *j = "{\"tag\":\"t\",\"n\":42,\"x\":1.5,\"b\":true,\"f\":false,\"z\":null,"
                    "\"o\":{\"a\":1, \"b\":[\"x\",null,false]},\"l\":[1]}";
    assert_int_equal(params_parse_json(&p, j, strlen(j), err, sizeof err), 0);
    assert_int_equal(type_of(&p, "tag"), PARAM_STR);
    assert_int_equal(type_of(&p, "n"), PARAM_NUM);
    assert_string_equal(val(&p, "n"), "42");
    assert_int_equal(type_of(&p, "b"), PARAM_BOOL);
    assert_int_equal(type_of(&p, "z"), PARAM_NULL);
    assert_int_equal(type_of(&p, "o"), PARAM_OTHER);
    assert_string_equal(val(&p, "o"), "{\"a\":1,\"b\":[\"x\",null,false]}");
    assert_int_equal(type_of(&p, "l"), PARAM_OTHER);
    assert_string_equal(val(&p, "l"), "[1]");
    const char *s;
    assert_int_equal(param_text(params_get(&p, "n"), &s), 0);
    assert_string_equal(s, "42");
    assert_int_equal(param_text(params_get(&p, "x"), &s), -SIMAP_EINVAL);
    assert_int_equal(param_text(params_get(&p, "z"), &s), 0);
    assert_string_equal(s, "");
    assert_int_equal(param_text(params_get(&p, "o"), &s), -SIMAP_EINVAL);
    assert_int_equal(param_text(params_get(&p, "b"), &s), -SIMAP_EINVAL);
    assert_int_equal(param_text(NULL, &s), -SIMAP_ENOTFOUND);
    params_free(&p);
}

static void test_json_refuses_non_objects_duplicates_and_nul(void **state)
{
    (void)state;
    struct params p;
    params_init(&p);
    char err[128];
    static const char *const bad[] = {
        "[1]",     "\"s\"",    "{\"a\":1,\"a\":2}", "{\"a\":\"\\u0000\"}",
        "{\"a\":", "{\"\":1}", "{\"a\":\"\xff\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_true(params_parse_json(&p, bad[i], strlen(bad[i]), err, sizeof err) < 0);
        params_free(&p);
    }
    char deep[256] = "{\"a\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    assert_true(params_parse_json(&p, deep, strlen(deep), err, sizeof err) < 0);
    params_free(&p);
}

static void test_bool_and_int_casts(void **state)
{
    (void)state;
    struct param q = {(char *)"k", (char *)"TRUE", 4, PARAM_STR};
    int b = -1;
    assert_int_equal(param_bool(&q, &b), 0);
    assert_int_equal(b, 1);
    q.value = (char *)"off";
    assert_int_equal(param_bool(&q, &b), 0);
    assert_int_equal(b, 0);
    q.value = (char *)"maybe";
    assert_int_equal(param_bool(&q, &b), -SIMAP_EINVAL);
    q.type = PARAM_NULL;
    q.value = (char *)"";
    assert_int_equal(param_bool(&q, &b), -SIMAP_EINVAL);
    int64_t v;
    struct param n = {(char *)"n", (char *)"-12", 3, PARAM_STR};
    assert_int_equal(param_int(&n, -100, 100, &v), 0);
    assert_int_equal(v, -12);
    assert_int_equal(param_int(&n, 0, 100, &v), -SIMAP_EINVAL);
    n.value = (char *)"99999999999999999999";
    n.len = 20;
    assert_int_equal(param_int(&n, 0, INT64_MAX, &v), -SIMAP_EINVAL);
    n.value = (char *)"9223372036854775807";
    n.len = 19;
    assert_int_equal(param_int(&n, 0, INT64_MAX, &v), 0);
    assert_true(v == INT64_MAX);
    n.value = (char *)"12a";
    n.len = 3;
    assert_int_equal(param_int(&n, 0, 100, &v), -SIMAP_EINVAL);
    n.value = (char *)"1.0";
    n.type = PARAM_NUM;
    assert_int_equal(param_int(&n, 0, 100, &v), -SIMAP_EINVAL);
}

static void test_path_split_decodes_each_segment_alone(void **state)
{
    (void)state;
    struct path p;
    char err[128];
    const char *s = "/api/v1/connections/PLAIN/users/a%2Fb%40c.com?x=%2F";
    assert_int_equal(path_split(&p, s, strlen(s), err, sizeof err), 0);
    assert_int_equal(p.n, 6);
    assert_string_equal(p.seg[5], "a/b@c.com");
    assert_string_equal(p.seg[2], "connections");
    path_free(&p);
    assert_int_equal(path_split(&p, "//a///b/", 8, err, sizeof err), 0);
    assert_int_equal(p.n, 2);
    path_free(&p);
    assert_int_equal(path_split(&p, "/", 1, err, sizeof err), 0);
    assert_int_equal(p.n, 0);
    path_free(&p);
}

static void test_path_split_refuses_nul_bad_utf8_and_excess(void **state)
{
    (void)state;
    struct path p;
    char err[128];
    assert_int_equal(path_split(&p, "/a/b%00c", 8, err, sizeof err), -SIMAP_EINVAL);
    assert_non_null(strstr(err, "NUL"));
    path_free(&p);
    assert_int_equal(path_split(&p, "/a/%ff", 6, err, sizeof err), -SIMAP_EINVAL);
    path_free(&p);
    assert_int_equal(path_split(&p, "/a/%f", 5, err, sizeof err), -SIMAP_EINVAL);
    path_free(&p);
    char many[128] = "";
    for (int i = 0; i <= PATH_MAX_SEGS; i++)
        strcat(many, "/x");
    assert_int_equal(path_split(&p, many, strlen(many), err, sizeof err), -SIMAP_ETOOBIG);
    path_free(&p);
    static char big[PATH_SEG_MAX + 8];
    big[0] = '/';
    memset(big + 1, 'a', PATH_SEG_MAX + 1);
    assert_int_equal(path_split(&p, big, strlen(big), err, sizeof err), -SIMAP_EINVAL);
    path_free(&p);
}

static void test_printable_and_lowering(void **state)
{
    (void)state;
    assert_true(params_is_printable("caf\xc3\xa9 ok", 8));
    assert_false(params_is_printable("a\tb", 3));
    assert_false(params_is_printable("a\x7f", 2));
    char s[] = "MiXeD@Example.COM \xc3\x89";
    assert_string_equal(params_ascii_lower(s), "mixed@example.com \xc3\x89");
}

static void test_token_takes_letters_digits_and_the_given_punctuation(void **state)
{
    (void)state;
    assert_true(params_is_token("PLAIN_1-x", 64, "_-"));
    assert_true(params_is_token("abc.1364.5012", 200, "._-"));
    assert_false(params_is_token("abc.1364", 200, "_-"));
    assert_false(params_is_token("", 64, "_-"));
    assert_false(params_is_token("a b", 64, "_-"));
    assert_false(params_is_token("a/b", 64, "_-"));
    assert_false(params_is_token("caf\xc3\xa9", 64, "_-"));
    assert_true(params_is_token("abcd", 4, ""));
    assert_false(params_is_token("abcde", 4, ""));
}

/* A cursor decodes to the member it was made from, only for the search
 * it continues (its prefix), and nothing else decodes. */
static void test_cursor_round_trips_and_refuses_other_searches(void **state)
{
    (void)state;
    const char member[] = "ealice@example.com\x1f"
                          "0123456789abcdef01234567";
    char *c = params_cursor_encode(member), *m;
    assert_null(strchr(c, '='));
    assert_int_equal(params_cursor_decode(c, "eali", &m), 0);
    assert_string_equal(m, member);
    xfree(m);
    assert_int_equal(params_cursor_decode(c, "", &m), 0);
    xfree(m);
    assert_int_equal(params_cursor_decode(c, "t", &m), -SIMAP_EINVAL);
    assert_null(m);
    assert_int_equal(params_cursor_decode(c, "ealicf", &m), -SIMAP_EINVAL);
    xfree(c);
    static const char *const bad[] = {"", "!!", "YQ=x", "AA", "YWJj+/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(params_cursor_decode(bad[i], "", &m), -SIMAP_EINVAL);
        assert_null(m);
    }
    char *big = xmalloc(PARAMS_CURSOR_MAX + 2);
    memset(big, 'a', PARAMS_CURSOR_MAX + 1);
    big[PARAMS_CURSOR_MAX + 1] = '\0';
    c = params_cursor_encode(big);
    assert_int_equal(params_cursor_decode(c, "", &m), -SIMAP_EINVAL);
    xfree(c);
    xfree(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percent_decode_handles_escapes_and_plus),
        cmocka_unit_test(test_percent_decode_rejects_truncated_and_bad_escapes),
        cmocka_unit_test(test_form_parses_pairs_and_later_values_win),
        cmocka_unit_test(test_form_refuses_nul_bad_utf8_and_names_the_parameter),
        cmocka_unit_test(test_form_caps_the_number_of_parameters),
        cmocka_unit_test(test_json_keeps_types),
        cmocka_unit_test(test_json_refuses_non_objects_duplicates_and_nul),
        cmocka_unit_test(test_bool_and_int_casts),
        cmocka_unit_test(test_path_split_decodes_each_segment_alone),
        cmocka_unit_test(test_path_split_refuses_nul_bad_utf8_and_excess),
        cmocka_unit_test(test_printable_and_lowering),
        cmocka_unit_test(test_token_takes_letters_digits_and_the_given_punctuation),
        cmocka_unit_test(test_cursor_round_trips_and_refuses_other_searches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
