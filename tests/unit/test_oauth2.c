/*
 * proto/oauth2 (token endpoint answers, RFC 6749 sections 5.1 and 5.2) and
 * the watcher's refresh schedule (cmd/watcher/oauth.c oauth_refresh_due()).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/watcher/oauth.c"
#include "proto/oauth2.h"

static enum oauth2_outcome parse(long status, const char *body, struct oauth2_token *t)
{
    return oauth2_token_parse(status, body, body ? strlen(body) : 0, t);
}

static void test_success_with_a_rotated_refresh_token(void **state)
{
    (void)state;
    struct oauth2_token t;
    assert_int_equal(parse(200,
                           "{\"access_token\":\"ya29.a0\",\"token_type\":\"Bearer\","
                           "\"expires_in\":3599,\"refresh_token\":\"1//0g\",\"scope\":\"x\","
                           "\"id_token\":\"h.p.s\"}",
                           &t),
                     OAUTH2_OK);
    assert_string_equal(t.access_token, "ya29.a0");
    assert_string_equal(t.refresh_token, "1//0g");
    assert_int_equal(t.expires_in, 3599);
    oauth2_token_clear(&t);
    assert_null(t.access_token);
    assert_null(t.refresh_token);
}

static void test_success_without_rotation_or_lifetime(void **state)
{
    (void)state;
    struct oauth2_token t;
    /* Microsoft sends the lifetime as a string in places; token_type any case. */
    assert_int_equal(parse(200, "{\"access_token\":\"eyJ0\",\"token_type\":\"bearer\"}", &t),
                     OAUTH2_OK);
    assert_null(t.refresh_token);
    assert_int_equal(t.expires_in, 0);
    oauth2_token_clear(&t);
    assert_int_equal(parse(200,
                           "{\"access_token\":\"eyJ0\",\"expires_in\":\"3600\","
                           "\"refresh_token\":null}",
                           &t),
                     OAUTH2_OK);
    assert_int_equal(t.expires_in, 3600);
    assert_null(t.refresh_token);
    oauth2_token_clear(&t);
}

static void test_invalid_grant_is_revoked_other_400s_are_config(void **state)
{
    (void)state;
    struct oauth2_token t;
    assert_int_equal(parse(400,
                           "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                           "expired or revoked.\"}",
                           &t),
                     OAUTH2_REVOKED);
    assert_string_equal(t.error, "invalid_grant");
    assert_int_equal(parse(401, "{\"error\":\"invalid_client\"}", &t), OAUTH2_CONFIG);
    assert_string_equal(t.error, "invalid_client");
    assert_int_equal(parse(400, "{\"error\":\"unauthorized_client\"}", &t), OAUTH2_CONFIG);
    assert_int_equal(parse(400, "not json", &t), OAUTH2_CONFIG);
    assert_string_equal(t.error, "");
    assert_int_equal(parse(400, NULL, &t), OAUTH2_CONFIG);
    /* An error code with quotes or line breaks is not copied (it goes to logs). */
    assert_int_equal(parse(400, "{\"error\":\"a\\\"b\"}", &t), OAUTH2_CONFIG);
    assert_string_equal(t.error, "");
}

static void test_throttling_server_errors_and_no_answer_are_retried(void **state)
{
    (void)state;
    struct oauth2_token t;
    assert_int_equal(parse(429, "{\"error\":\"rate_limited\"}", &t), OAUTH2_RETRY);
    assert_string_equal(t.error, "rate_limited");
    assert_int_equal(parse(503, "<html>busy</html>", &t), OAUTH2_RETRY);
    assert_int_equal(parse(500, NULL, &t), OAUTH2_RETRY);
    assert_int_equal(parse(0, NULL, &t), OAUTH2_RETRY);
    assert_int_equal(parse(302, "", &t), OAUTH2_RETRY);
    assert_null(t.access_token);
}

static void test_broken_success_answers_are_retried_not_trusted(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"access_token\":\"\"}",
        "{\"access_token\":42}",
        "{\"access_token\":\"a\\u0001b\"}",
        "{\"access_token\":\"a\\nb\"}",
        "{\"access_token\":\"a\",\"token_type\":\"mac\"}",
        "{\"access_token\":\"a\",\"token_type\":7}",
        "{\"access_token\":\"a\",\"expires_in\":-1}",
        "{\"access_token\":\"a\",\"expires_in\":1.5}",
        "{\"access_token\":\"a\",\"expires_in\":\"soon\"}",
        "{\"access_token\":\"a\",\"refresh_token\":\"\"}",
        "{\"access_token\":\"a\",\"refresh_token\":[1]}",
        "{\"access_token\":\"a\",\"access_token\":\"b\"}",
        "{\"access_token\":\"a\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct oauth2_token t;
        if (parse(200, bad[i], &t) != OAUTH2_RETRY)
            fail_msg("accepted: %s", bad[i]);
        assert_null(t.access_token);
        assert_null(t.refresh_token);
        assert_true(t.error[0] != '\0');
    }
}

static void test_huge_tokens_and_bodies_are_refused(void **state)
{
    (void)state;
    size_t n = OAUTH2_TOKEN_MAX + 1;
    char *body = malloc(n + 64);
    assert_non_null(body);
    int off = snprintf(body, 64, "{\"access_token\":\"");
    memset(body + off, 'a', n);
    strcpy(body + off + n, "\"}");
    struct oauth2_token t;
    assert_int_equal(parse(200, body, &t), OAUTH2_RETRY);
    assert_int_equal(oauth2_token_parse(200, body, OAUTH2_BODY_MAX + 1, &t), OAUTH2_RETRY);
    free(body);
}

static void test_every_split_of_a_body_reads_the_same(void **state)
{
    (void)state;
    /* The parser takes the body whole; every prefix either fails or is the
     * complete object: none yields a different token. */
    static const char body[] = "{\"access_token\":\"tok\",\"expires_in\":60}";
    for (size_t i = 0; i < sizeof body - 1; i++) {
        struct oauth2_token t;
        enum oauth2_outcome o = oauth2_token_parse(200, body, i, &t);
        assert_int_equal(o, OAUTH2_RETRY);
        assert_null(t.access_token);
    }
    struct oauth2_token t;
    assert_int_equal(oauth2_token_parse(200, body, sizeof body - 1, &t), OAUTH2_OK);
    assert_string_equal(t.access_token, "tok");
    oauth2_token_clear(&t);
}

static void test_outcome_names(void **state)
{
    (void)state;
    assert_string_equal(oauth2_outcome_name(OAUTH2_OK), "ok");
    assert_string_equal(oauth2_outcome_name(OAUTH2_REVOKED), "revoked");
    assert_string_equal(oauth2_outcome_name(OAUTH2_CONFIG), "config");
    assert_string_equal(oauth2_outcome_name(OAUTH2_RETRY), "retry");
}

static void test_refresh_due_at_80_to_90_percent_and_a_minute_early(void **state)
{
    (void)state;
    int64_t now = 1000000;
    /* An hour: 80..90% is 48..54 min, all earlier than a minute before expiry. */
    assert_int_equal(oauth_refresh_due(now, 3600, 0.0), now + 2880000);
    assert_int_equal(oauth_refresh_due(now, 3600, 0.999), now + 3239640);
    /* 5 minutes: 90% is 4.5 min, later than a minute before expiry: capped. */
    assert_int_equal(oauth_refresh_due(now, 300, 0.0), now + 240000);
    assert_int_equal(oauth_refresh_due(now, 300, 0.999), now + 240000);
    /* Short test lifetimes keep the 80-90% rule. */
    assert_int_equal(oauth_refresh_due(now, 3, 0.5), now + 2550);
    /* Out-of-range jitter is clamped; no lifetime: now. */
    assert_int_equal(oauth_refresh_due(now, 10, -1.0), now + 8000);
    assert_true(oauth_refresh_due(now, 10, 5.0) < now + 9000);
    assert_int_equal(oauth_refresh_due(now, 0, 0.5), now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_with_a_rotated_refresh_token),
        cmocka_unit_test(test_success_without_rotation_or_lifetime),
        cmocka_unit_test(test_invalid_grant_is_revoked_other_400s_are_config),
        cmocka_unit_test(test_throttling_server_errors_and_no_answer_are_retried),
        cmocka_unit_test(test_broken_success_answers_are_retried_not_trusted),
        cmocka_unit_test(test_huge_tokens_and_bodies_are_refused),
        cmocka_unit_test(test_every_split_of_a_body_reads_the_same),
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test(test_refresh_due_at_80_to_90_percent_and_a_minute_early),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
