/*
 * Unit tests of cmd/api/connect: signed links (forged, expired, from the
 * future), the partner's success= and failure= (also after a second '?'),
 * redirect URLs and the error appended to them, the authorization request
 * with PKCE S256 (RFC 7636 appendix B's vector), token answers, the email
 * of an ID token, the flow record, cookies and HTML escaping. The module is
 * part of superimap-api, so its sources are included here.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/api/connect.c"
#include "cmd/api/params.c"

static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
#define UID "0123456789abcdef01234567"

/* The query of a fresh link of kind for UID at ts, plus tail. */
static void link_query(char *out, size_t n, const char *kind, int64_t ts, const char *tail)
{
    char sig[CONNECT_SIG_LEN + 1];
    connect_link_sig(key, kind, UID, ts, sig);
    snprintf(out, n, "user_id=" UID "&ts=%lld&sig=%s%s", (long long)ts, sig, tail);
}

static void test_link_signed_and_checked(void **state)
{
    (void)state;
    char q[512];
    link_query(q, sizeof q, "connect", 1000, "");
    struct connect_link l;
    assert_int_equal(connect_link_parse(q, strlen(q), &l), 0);
    assert_string_equal(l.uid, UID);
    assert_int_equal(l.ts, 1000);
    assert_int_equal(connect_link_verify(key, "connect", &l, 1000), CONNECT_LINK_OK);
    assert_int_equal(connect_link_verify(key, "connect", &l, 1000 + CONNECT_LINK_TTL),
                     CONNECT_LINK_OK);
    assert_int_equal(connect_link_verify(key, "connect", &l, 1001 + CONNECT_LINK_TTL),
                     CONNECT_LINK_EXPIRED);
    assert_int_equal(connect_link_verify(key, "connect", &l, 1000 - CONNECT_SKEW_S - 1),
                     CONNECT_LINK_EXPIRED);
    /* A connect link does not disconnect, nor does another key sign it. */
    assert_int_equal(connect_link_verify(key, "disconnect", &l, 1000), CONNECT_LINK_FORGED);
    unsigned char other[32];
    memcpy(other, key, sizeof other);
    other[0] ^= 1;
    assert_int_equal(connect_link_verify(other, "connect", &l, 1000), CONNECT_LINK_FORGED);
    connect_link_free(&l);
}

static void test_link_forged_by_changing_any_part(void **state)
{
    (void)state;
    char q[512];
    link_query(q, sizeof q, "connect", 1000, "");
    struct connect_link l;
    assert_int_equal(connect_link_parse(q, strlen(q), &l), 0);
    l.ts = 1001;
    assert_int_equal(connect_link_verify(key, "connect", &l, 1001), CONNECT_LINK_FORGED);
    l.ts = 1000;
    l.uid[0] = '1';
    assert_int_equal(connect_link_verify(key, "connect", &l, 1000), CONNECT_LINK_FORGED);
    l.uid[0] = '0';
    l.sig[5] = l.sig[5] == 'A' ? 'B' : 'A';
    assert_int_equal(connect_link_verify(key, "connect", &l, 1000), CONNECT_LINK_FORGED);
    connect_link_free(&l);
}

static void test_link_malformed_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "user_id=" UID "&ts=1",
        "user_id=" UID "&sig=abc",
        "user_id=XYZ&ts=1&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "user_id=" UID "&ts=-1&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "user_id=" UID "&ts=1&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "user_id=" UID "&ts=1&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "user_id=%zz",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct connect_link l;
        assert_int_equal(connect_link_parse(bad[i], strlen(bad[i]), &l), -SIMAP_EINVAL);
        connect_link_free(&l);
    }
}

static void test_link_success_failure_after_second_question_mark(void **state)
{
    (void)state;
    char q[1024];
    link_query(q, sizeof q, "connect", 1000,
               "?success=https://partner.example/ok?x=1&failure=https://partner.example/ko");
    struct connect_link l;
    assert_int_equal(connect_link_parse(q, strlen(q), &l), 0);
    assert_int_equal(connect_link_verify(key, "connect", &l, 1000), CONNECT_LINK_OK);
    assert_string_equal(l.success, "https://partner.example/ok?x=1");
    assert_string_equal(l.failure, "https://partner.example/ko");
    connect_link_free(&l);

    link_query(q, sizeof q, "connect", 1000,
               "&failure=https%3A%2F%2Fp.example%2Fko%3Fa%3D1%26b%3D2");
    assert_int_equal(connect_link_parse(q, strlen(q), &l), 0);
    assert_null(l.success);
    assert_string_equal(l.failure, "https://p.example/ko?a=1&b=2");
    connect_link_free(&l);
}

static void test_link_refuses_unsafe_redirects(void **state)
{
    (void)state;
    static const char *const tails[] = {
        "&success=//evil.example/x",
        "&success=javascript:alert(1)",
        "&success=/relative",
        "&success=https://user@evil.example/",
        "&success=https:/\\evil.example",
        "&success=https://",
        "&success=http://a.example/%0d%0aX",
        "&success=data:text/html,x",
        "&success=https://:80/",
    };
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        char q[512];
        link_query(q, sizeof q, "connect", 1000, tails[i]);
        struct connect_link l;
        assert_int_equal(connect_link_parse(q, strlen(q), &l), 0);
        assert_null(l.success);
        assert_int_equal(l.bad_urls, 1);
        connect_link_free(&l);
    }
}

static void test_url_with_error_appended(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"https://p.example/ko", "https://p.example/ko?error=access_denied"},
        {"https://p.example/ko?a=1", "https://p.example/ko?a=1&error=access_denied"},
        {"https://p.example/ko?", "https://p.example/ko?error=access_denied"},
        {"https://p.example/ko?a=1&", "https://p.example/ko?a=1&error=access_denied"},
        {"https://p.example/ko#top", "https://p.example/ko?error=access_denied#top"},
        {"https://p.example/ko?a=1#t?x", "https://p.example/ko?a=1&error=access_denied#t?x"},
        {"/failure.html", "/failure.html?error=access_denied"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *u = connect_url_with_error(cases[i][0], "access_denied");
        assert_string_equal(u, cases[i][1]);
        xfree(u);
    }
    char *u = connect_url_with_error("https://p.example/", "a b&c");
    assert_string_equal(u, "https://p.example/?error=a%20b%26c");
    xfree(u);
}

static void test_error_code_reduced(void **state)
{
    (void)state;
    char out[80];
    connect_error_code("access_denied", out, sizeof out);
    assert_string_equal(out, "access_denied");
    connect_error_code("bad\r\nheader", out, sizeof out);
    assert_string_equal(out, "provider_error");
    connect_error_code(NULL, out, sizeof out);
    assert_string_equal(out, "provider_error");
    connect_error_code("", out, sizeof out);
    assert_string_equal(out, "provider_error");
}

/* RFC 7636 appendix B. */
static void test_pkce_s256_rfc7636_vector(void **state)
{
    (void)state;
    char *c = connect_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    assert_string_equal(c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    xfree(c);
    char *v = connect_pkce_verifier();
    char *w = connect_pkce_verifier();
    assert_int_equal(strlen(v), 43);
    assert_string_not_equal(v, w);
    xfree(v);
    xfree(w);
}

static void test_authorize_url_built(void **state)
{
    (void)state;
    struct connect_authz a = {
        .authorize_url = "https://accounts.google.com/o/oauth2/v2/auth",
        .client_id = "id 1",
        .redirect_uri = "https://imap.example.com/users/connect/callback",
        .scope = "https://mail.google.com/ openid email",
        .state = "S",
        .code_challenge = "C",
        .login_hint = "a+b@example.com",
        .extra_json = "{\"access_type\":\"offline\",\"prompt\":\"consent\"}",
    };
    char *u = connect_authorize_url(&a);
    assert_string_equal(
        u, "https://accounts.google.com/o/oauth2/v2/auth?response_type=code&client_id=id%201"
           "&redirect_uri=https%3A%2F%2Fimap.example.com%2Fusers%2Fconnect%2Fcallback"
           "&scope=https%3A%2F%2Fmail.google.com%2F%20openid%20email&state=S"
           "&code_challenge=C&code_challenge_method=S256&login_hint=a%2Bb%40example.com"
           "&access_type=offline&prompt=consent");
    xfree(u);
    a.authorize_url = "http://127.0.0.1:9/authorize?tenant=x";
    a.login_hint = NULL;
    a.extra_json = NULL;
    a.scope = "";
    u = connect_authorize_url(&a);
    assert_string_equal(u, "http://127.0.0.1:9/authorize?tenant=x&response_type=code"
                           "&client_id=id%201&redirect_uri=https%3A%2F%2Fimap.example.com%2F"
                           "users%2Fconnect%2Fcallback&state=S&code_challenge=C"
                           "&code_challenge_method=S256");
    xfree(u);
}

static void test_authorize_params_checked(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]", "{\"a\":1}", "{\"state\":\"x\"}", "{\"a b\":\"x\"}", "{\"a\":{\"b\":\"c\"}}", "nope",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(connect_params_json_ok(bad[i], strlen(bad[i])));
    assert_true(connect_params_json_ok("{}", 2));
    assert_true(connect_params_json_ok("{\"prompt\":\"consent\"}", 20));
    struct connect_authz a = {.authorize_url = "https://x.example/a",
                              .client_id = "c",
                              .redirect_uri = "r",
                              .state = "s",
                              .code_challenge = "c",
                              .extra_json = "{\"state\":\"evil\"}"};
    assert_null(connect_authorize_url(&a));
}

static void test_tokens_parsed(void **state)
{
    (void)state;
    const char *body = "{\"access_token\":\"at\",\"token_type\":\"Bearer\",\"expires_in\":3599,"
                       "\"refresh_token\":\"rt\",\"id_token\":\"x.y.z\",\"scope\":\"s\"}";
    struct connect_tokens t;
    assert_int_equal(connect_tokens_parse(body, strlen(body), &t), 0);
    assert_string_equal(t.access_token, "at");
    assert_string_equal(t.refresh_token, "rt");
    assert_string_equal(t.id_token, "x.y.z");
    assert_null(t.error);
    assert_int_equal(t.expires_in, 3599);
    connect_tokens_free(&t);
    const char *err = "{\"error\":\"invalid_grant\",\"error_description\":\"bad code\"}";
    assert_int_equal(connect_tokens_parse(err, strlen(err), &t), 0);
    assert_string_equal(t.error, "invalid_grant");
    assert_null(t.access_token);
    connect_tokens_free(&t);
    assert_int_equal(connect_tokens_parse("<html>", 6, &t), -SIMAP_EPROTO);
    connect_tokens_free(&t);
    assert_int_equal(connect_tokens_parse("{\"expires_in\":\"x\"}", 18, &t), 0);
    assert_int_equal(t.expires_in, 0);
    connect_tokens_free(&t);
}

/* A JWT with payload json (header and signature are not looked at). */
static char *jwt(const char *json)
{
    char *p = crypto_b64url_encode(json, strlen(json));
    size_t n = strlen(p) + 32;
    char *out = xmalloc(n);
    snprintf(out, n, "eyJhbGciOiJSUzI1NiJ9.%s.c2ln", p);
    xfree(p);
    return out;
}

static void test_id_token_email_claims(void **state)
{
    (void)state;
    char *t = jwt("{\"sub\":\"1\",\"email\":\"a@example.com\"}");
    char *e = connect_id_token_email(t);
    assert_string_equal(e, "a@example.com");
    xfree(e);
    xfree(t);
    t = jwt("{\"sub\":\"1\",\"preferred_username\":\"b@contoso.com\"}");
    e = connect_id_token_email(t);
    assert_string_equal(e, "b@contoso.com");
    xfree(e);
    xfree(t);
    t = jwt("{\"sub\":\"1\",\"preferred_username\":\"not an email\"}");
    assert_null(connect_id_token_email(t));
    xfree(t);
    assert_null(connect_id_token_email("nodots"));
    assert_null(connect_id_token_email("a.!!!.c"));
    assert_null(connect_id_token_email("a..c"));
    const char *info = "{\"email\":\"c@example.com\",\"sub\":\"2\"}";
    e = connect_userinfo_email(info, strlen(info));
    assert_string_equal(e, "c@example.com");
    xfree(e);
    assert_null(connect_userinfo_email("{\"sub\":\"2\"}", 11));
}

static void test_flow_record_round_trip(void **state)
{
    (void)state;
    char ok[] = "https://p.example/ok?a=1&b=2", ko[] = "", ver[] = "v-erifier_";
    struct connect_flow f = {.uid = UID, .success = ok, .failure = ko, .verifier = ver};
    memset(f.browser, 'a', 64);
    f.browser[64] = '\0';
    char *text = connect_flow_encode(&f);
    struct connect_flow g;
    assert_int_equal(connect_flow_decode(text, strlen(text), &g), 0);
    assert_string_equal(g.uid, UID);
    assert_string_equal(g.browser, f.browser);
    assert_string_equal(g.success, f.success);
    assert_string_equal(g.failure, "");
    assert_string_equal(g.verifier, "v-erifier_");
    connect_flow_free(&g);
    xfree(text);
    assert_int_equal(connect_flow_decode("uid=1", 5, &g), -SIMAP_EINVAL);
    connect_flow_free(&g);
}

static void test_cookie_found(void **state)
{
    (void)state;
    char v[64];
    assert_true(connect_cookie_get("a=b; superimap_connect=0123456789abcdefXYZ_-; c=d",
                                   CONNECT_COOKIE, v, sizeof v));
    assert_string_equal(v, "0123456789abcdefXYZ_-");
    assert_false(connect_cookie_get("superimap_connect=short", CONNECT_COOKIE, v, sizeof v));
    assert_false(connect_cookie_get("superimap_connect=0123456789abcdef;x", "other", v, sizeof v));
    assert_false(
        connect_cookie_get("superimap_connect=0123456789abc\"def", CONNECT_COOKIE, v, sizeof v));
    assert_false(connect_cookie_get(NULL, CONNECT_COOKIE, v, sizeof v));
    assert_false(
        connect_cookie_get("xsuperimap_connect=0123456789abcdef", CONNECT_COOKIE, v, sizeof v));
}

static void test_html_escaped(void **state)
{
    (void)state;
    char *s = connect_html_escape("<a href=\"x\">'&'</a>");
    assert_string_equal(s, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    xfree(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_signed_and_checked),
        cmocka_unit_test(test_link_forged_by_changing_any_part),
        cmocka_unit_test(test_link_malformed_refused),
        cmocka_unit_test(test_link_success_failure_after_second_question_mark),
        cmocka_unit_test(test_link_refuses_unsafe_redirects),
        cmocka_unit_test(test_url_with_error_appended),
        cmocka_unit_test(test_error_code_reduced),
        cmocka_unit_test(test_pkce_s256_rfc7636_vector),
        cmocka_unit_test(test_authorize_url_built),
        cmocka_unit_test(test_authorize_params_checked),
        cmocka_unit_test(test_tokens_parsed),
        cmocka_unit_test(test_id_token_email_claims),
        cmocka_unit_test(test_flow_record_round_trip),
        cmocka_unit_test(test_cookie_found),
        cmocka_unit_test(test_html_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
