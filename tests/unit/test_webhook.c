/*
 * Unit tests of proto/webhook: the Standard Webhooks signature against the
 * specification's published test vector, the original's body signature
 * against a value computed outside this code base, body assembly, whsec_
 * secret decoding, and Retry-After in its two forms (seconds and the three
 * HTTP-date formats), with hostile input.
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

#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "proto/webhook.h"

/* ---- Standard Webhooks ---- */

/* The test vector published with the Standard Webhooks specification (and
 * used by every reference library's test suite). */
#define SW_SECRET  "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID      "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS      1614265330
#define SW_PAYLOAD "{\"test\": 2432232314}"
#define SW_SIG     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_std_signature_matches_published_vector(void **state)
{
    (void)state;
    unsigned char key[WEBHOOK_SECRET_MAX];
    size_t keylen = 0;
    assert_int_equal(webhook_secret_decode(SW_SECRET, key, sizeof key, &keylen), 0);
    assert_int_equal(keylen, 24);
    char sig[WEBHOOK_STD_SIG_LEN];
    assert_int_equal(
        webhook_std_sign(key, keylen, SW_ID, SW_TS, SW_PAYLOAD, strlen(SW_PAYLOAD), sig), 0);
    assert_string_equal(sig, SW_SIG);

    /* Any change of id, timestamp, body or key changes it. */
    assert_int_equal(
        webhook_std_sign(key, keylen, "msg_x", SW_TS, SW_PAYLOAD, strlen(SW_PAYLOAD), sig), 0);
    assert_string_not_equal(sig, SW_SIG);
    assert_int_equal(
        webhook_std_sign(key, keylen, SW_ID, SW_TS + 1, SW_PAYLOAD, strlen(SW_PAYLOAD), sig), 0);
    assert_string_not_equal(sig, SW_SIG);
    assert_int_equal(
        webhook_std_sign(key, keylen, SW_ID, SW_TS, SW_PAYLOAD, strlen(SW_PAYLOAD) - 1, sig), 0);
    assert_string_not_equal(sig, SW_SIG);
    key[0] ^= 1;
    assert_int_equal(
        webhook_std_sign(key, keylen, SW_ID, SW_TS, SW_PAYLOAD, strlen(SW_PAYLOAD), sig), 0);
    assert_string_not_equal(sig, SW_SIG);
}

/* The streaming HMAC agrees with core/crypto's one-shot HMAC for keys of
 * every length around the SHA-256 block size (longer keys are hashed first)
 * and for large bodies. */
static void test_std_signature_agrees_with_one_shot_hmac(void **state)
{
    (void)state;
    static const size_t keylens[] = {0, 1, 32, 63, 64, 65, 200};
    size_t bodylen = 300000;
    char *body = malloc(bodylen);
    assert_non_null(body);
    for (size_t i = 0; i < bodylen; i++)
        body[i] = (char)(i * 7 + 3);
    unsigned char key[200];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(255 - i);
    for (size_t k = 0; k < sizeof keylens / sizeof keylens[0]; k++) {
        for (size_t n = 0; n <= bodylen; n += bodylen / 3) {
            char sig[WEBHOOK_STD_SIG_LEN];
            assert_int_equal(webhook_std_sign(key, keylens[k], "evt.1", 42, body, n, sig), 0);
            char *msg = malloc(n + 16);
            int h = snprintf(msg, 16, "evt.1.42.");
            memcpy(msg + h, body, n);
            unsigned char mac[CRYPTO_SHA256_LEN];
            assert_int_equal(crypto_hmac_sha256(key, keylens[k], msg, (size_t)h + n, mac), 0);
            char *b64 = crypto_b64_encode(mac, sizeof mac);
            assert_memory_equal(sig, "v1,", 3);
            assert_string_equal(sig + 3, b64);
            xfree(b64);
            free(msg);
        }
    }
    free(body);
}

static void test_secret_decode_accepts_padded_and_unpadded_base64(void **state)
{
    (void)state;
    unsigned char key[WEBHOOK_SECRET_MAX];
    size_t n = 0;
    /* 32 bytes 0..31, padded (44 characters) and not. */
    unsigned char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)i;
    char *b64 = crypto_b64_encode(raw, sizeof raw);
    char secret[80];
    snprintf(secret, sizeof secret, "whsec_%s", b64);
    assert_int_equal(webhook_secret_decode(secret, key, sizeof key, &n), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(key, raw, 32);
    secret[strlen(secret) - 1] = '\0'; /* drop the one '=' */
    assert_int_equal(webhook_secret_decode(secret, key, sizeof key, &n), 0);
    assert_int_equal(n, 32);
    assert_memory_equal(key, raw, 32);
    xfree(b64);
}

static void test_secret_decode_rejects_malformed_secrets(void **state)
{
    (void)state;
    unsigned char key[WEBHOOK_SECRET_MAX];
    size_t n = 0;
    assert_int_equal(webhook_secret_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, sizeof key, &n),
                     -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_", key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_====", key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_ab*d", key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_abcde", key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_ab=c", key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode("whsec_ab===", key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode(NULL, key, sizeof key, &n), -SIMAP_EINVAL);
    assert_int_equal(webhook_secret_decode(SW_SECRET, key, 23, &n), -SIMAP_ETOOBIG);
}

/* ---- The original's body signature and the body ---- */

static void test_body_signature_is_original_hmac_of_timestamp_and_sha1(void **state)
{
    (void)state;
    char sig[WEBHOOK_SIG_HEX_LEN + 1];
    /* Expected value computed with Python's hmac module:
     * hmac.new(b"test-api-key", b"1700000000" + sha1, sha256).hexdigest() */
    assert_int_equal(webhook_body_signature("test-api-key", 12, 1700000000,
                                            "da39a3ee5e6b4b0d3255bfef95601890afd80709", sig),
                     0);
    assert_string_equal(sig, "6f503871e72d2e9a9d9e9bf44329c846af728613c1dcb39024609020064f3df5");
    assert_int_equal(webhook_body_signature("test-api-key", 12, 1700000001,
                                            "da39a3ee5e6b4b0d3255bfef95601890afd80709", sig),
                     0);
    assert_string_not_equal(sig,
                            "6f503871e72d2e9a9d9e9bf44329c846af728613c1dcb39024609020064f3df5");
    assert_int_equal(webhook_body_signature("k", 1, -1, "x", sig), -SIMAP_EINVAL);
    assert_int_equal(webhook_body_signature("k", 1, 1, NULL, sig), -SIMAP_EINVAL);
}

static char *build(const char *payload, int64_t ts, const char *sig, size_t max, int *rc)
{
    struct buf b;
    buf_init(&b, max);
    *rc = webhook_body_build(payload, strlen(payload), ts, sig, &b);
    char *s = buf_steal(&b);
    return s;
}

static void test_body_wraps_payload_members_with_timestamp_and_signature(void **state)
{
    (void)state;
    int rc;
    char *s = build("{\"sha1\":\"ab\",\"user_tag\":\"u\"}", 1700000000, "0f", 1 << 16, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(
        s, "{\"timestamp\":1700000000,\"sha1\":\"ab\",\"user_tag\":\"u\",\"signature\":\"0f\"}");
    xfree(s);

    s = build(" \n{ \"a\" : [1, {\"b\": \"}\"}] }\r\n ", 5, "sig", 1 << 16, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "{\"timestamp\":5, \"a\" : [1, {\"b\": \"}\"}] ,\"signature\":\"sig\"}");
    xfree(s);

    s = build("{ \t}", 7, "x", 1 << 16, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "{\"timestamp\":7,\"signature\":\"x\"}");
    xfree(s);
}

static void test_body_rejects_payload_that_is_not_an_object(void **state)
{
    (void)state;
    static const char *const bad[] = {"",       "   ",      "{",   "}",   "[1]",
                                      "\"{}\"", "{\"a\":1", "x{}", "{}x", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc;
        char *s = build(bad[i], 1, "s", 1 << 16, &rc);
        if (rc != -SIMAP_EINVAL)
            fail_msg("payload '%s' gave %d", bad[i], rc);
        assert_string_equal(s, "");
        xfree(s);
    }
}

static void test_body_too_big_leaves_buffer_as_it_was(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 40);
    assert_int_equal(buf_puts(&b, "keep"), 0);
    const char *payload = "{\"k\":\"0123456789012345678901234567890\"}";
    assert_int_equal(webhook_body_build(payload, strlen(payload), 1, "s", &b), -SIMAP_ETOOBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    buf_free(&b);
}

/* ---- Retry-After ---- */

#define NOW_MS 784111777000LL /* Sun, 06 Nov 1994 08:49:37 GMT */

static int64_t ra(const char *v, int *rc)
{
    int64_t d = -12345;
    *rc = webhook_retry_after(v, strlen(v), NOW_MS, &d);
    return d;
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    int rc;
    assert_int_equal(ra("120", &rc), 120000);
    assert_int_equal(rc, 0);
    assert_int_equal(ra("0", &rc), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(ra(" \t7 ", &rc), 7000);
    assert_int_equal(rc, 0);
    /* Huge values are capped, not overflowed. */
    assert_int_equal(ra("99999999999999999999999999999", &rc), 1000000000LL * 1000);
    assert_int_equal(rc, 0);
    static const char *const bad[] = {"", " ", "-5", "1.5", "12a", "+3", "0x10", "1 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t d = ra(bad[i], &rc);
        if (rc != -SIMAP_EINVAL)
            fail_msg("'%s' accepted as %lld", bad[i], (long long)d);
    }
}

static void test_retry_after_http_date_in_all_three_forms(void **state)
{
    (void)state;
    int rc;
    /* The three forms of RFC 9110 section 5.6.7, 90 s after NOW_MS. */
    assert_int_equal(ra("Sun, 06 Nov 1994 08:51:07 GMT", &rc), 90000);
    assert_int_equal(rc, 0);
    assert_int_equal(ra("Sunday, 06-Nov-94 08:51:07 GMT", &rc), 90000);
    assert_int_equal(rc, 0);
    assert_int_equal(ra("Sun Nov  6 08:51:07 1994", &rc), 90000);
    assert_int_equal(rc, 0);
    assert_int_equal(ra("Sun Nov 16 08:49:37 1994", &rc), 10LL * 86400 * 1000);
    assert_int_equal(rc, 0);
    /* A date in the past means now. */
    assert_int_equal(ra("Sat, 05 Nov 1994 08:49:37 GMT", &rc), 0);
    assert_int_equal(rc, 0);
    /* Leap day, year end. */
    int64_t d;
    int64_t leap = 1709251199LL * 1000; /* 2024-02-29T23:59:59Z */
    assert_int_equal(webhook_retry_after("Thu, 29 Feb 2024 23:59:59 GMT", 29, leap - 5000, &d), 0);
    assert_int_equal(d, 5000);
    int64_t eoy = 1735689599LL * 1000; /* 2024-12-31T23:59:59Z */
    assert_int_equal(webhook_retry_after("Tue, 31 Dec 2024 23:59:59 GMT", 29, eoy - 1000, &d), 0);
    assert_int_equal(d, 1000);
    /* Far future dates are capped at 10^9 s. */
    assert_int_equal(webhook_retry_after("Tue, 31 Dec 2024 23:59:59 GMT", 29, 0, &d), 0);
    assert_int_equal(d, 1000000000LL * 1000);
}

static void test_retry_after_rejects_malformed_dates(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 30 Feb 1994 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTx",
        "Sun, 06 Nov 1994 08:49:37",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Funday, 06-Nov-94 08:49:37 GMT",
        "Sun,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc;
        int64_t d = ra(bad[i], &rc);
        if (rc != -SIMAP_EINVAL)
            fail_msg("'%s' accepted as %lld", bad[i], (long long)d);
    }
}

/* Every prefix of a valid value is parsed from a copy of exactly that length
 * (so ASan catches any read past it) and only the full one is a date. */
static void test_retry_after_never_reads_past_length(void **state)
{
    (void)state;
    static const char *const good[] = {"Sun, 06 Nov 1994 08:51:07 GMT",
                                       "Sunday, 06-Nov-94 08:51:07 GMT",
                                       "Sun Nov  6 08:51:07 1994"};
    for (size_t g = 0; g < 3; g++) {
        size_t n = strlen(good[g]);
        for (size_t cut = 0; cut <= n; cut++) {
            char *copy = malloc(cut ? cut : 1);
            memcpy(copy, good[g], cut);
            int64_t d;
            int rc = webhook_retry_after(copy, cut, NOW_MS, &d);
            if (cut == n) {
                assert_int_equal(rc, 0);
                assert_int_equal(d, 90000);
            } else {
                assert_int_equal(rc, -SIMAP_EINVAL);
            }
            free(copy);
        }
    }
}

static void test_retry_after_two_digit_year_is_within_fifty_years(void **state)
{
    (void)state;
    int64_t d;
    /* At 2026, "30" is 2030 and "90" is 1990 (past: delay 0). */
    int64_t now = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    assert_int_equal(webhook_retry_after("Tuesday, 01-Jan-30 00:00:00 GMT", 31, now, &d), 0);
    assert_int_equal(d, (1893456000LL - 1767225600LL) * 1000); /* 2030-01-01 */
    assert_int_equal(webhook_retry_after("Monday, 01-Jan-90 00:00:00 GMT", 30, now, &d), 0);
    assert_int_equal(d, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_std_signature_matches_published_vector),
        cmocka_unit_test(test_std_signature_agrees_with_one_shot_hmac),
        cmocka_unit_test(test_secret_decode_accepts_padded_and_unpadded_base64),
        cmocka_unit_test(test_secret_decode_rejects_malformed_secrets),
        cmocka_unit_test(test_body_signature_is_original_hmac_of_timestamp_and_sha1),
        cmocka_unit_test(test_body_wraps_payload_members_with_timestamp_and_signature),
        cmocka_unit_test(test_body_rejects_payload_that_is_not_an_object),
        cmocka_unit_test(test_body_too_big_leaves_buffer_as_it_was),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_http_date_in_all_three_forms),
        cmocka_unit_test(test_retry_after_rejects_malformed_dates),
        cmocka_unit_test(test_retry_after_never_reads_past_length),
        cmocka_unit_test(test_retry_after_two_digit_year_is_within_fifty_years),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
