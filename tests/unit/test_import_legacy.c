/*
 * Unit tests of cmd/import/legacy: values the openssl command encrypted as
 * Gibberish did (`openssl enc -aes-256-cbc -md md5 -a`, MIME base64 over
 * several lines, and Ruby's Base64.encode64 with its trailing line break),
 * legacy plaintext taken as it is, and Gibberish values that do not open
 * (another key, damaged ciphertext, a cut one).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/import/legacy.c"
#include "core/err.h"
#include "core/keys.h"

#define KEY "k3y"

/* printf 'a refresh token ...' | openssl enc -aes-256-cbc -md md5 -a -salt -pass file:k */
static const char long_token[] =
    "U2FsdGVkX1/Zga9vAvGlyCdwZpwuX8+riO0lXWwKsDF4jLWVkOJ7Upsgz0/SNJzp\n"
    "AkJifnzBN2bkeAGXC81bGcjVbpq1Ng9+FTmpxvJ3EoRoXpUBDIQw8rrAMwex1GZA\n"
    "SmZsBC5EsRVKBpiIP3xKCQ==";
static const char long_plain[] =
    "a refresh token long enough to need two lines of base64 output, surely more than 64";

static void expect(const char *value, enum legacy_kind kind, const char *plain)
{
    char *out = (char *)"unset";
    assert_int_equal(legacy_open(KEY, strlen(KEY), value, &out), kind);
    if (plain == NULL) {
        assert_null(out);
    } else {
        assert_non_null(out);
        assert_string_equal(out, plain);
    }
    keys_wipe_free(out);
}

static void test_opens_what_openssl_enc_made(void **state)
{
    (void)state;
    expect(long_token, LEGACY_DECRYPTED, long_plain);
    expect("U2FsdGVkX1+11VEyeZeiZ6/gW3Usi85uOUK0yrxtvss=", LEGACY_DECRYPTED, "pw");
    /* Ruby's Base64.encode64 ends with a line break. */
    expect("U2FsdGVkX1+11VEyeZeiZ6/gW3Usi85uOUK0yrxtvss=\n", LEGACY_DECRYPTED, "pw");
}

static void test_plaintext_rows_are_taken_as_they_are(void **state)
{
    (void)state;
    static const char *const plain[] = {"password",   "pass word", "abcd", "x",
                                        "p@ss:w0rd!", "U2FsdGVk",  "a\nb"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        expect(plain[i], LEGACY_PLAIN, plain[i]);
}

static void test_gibberish_values_that_do_not_open_are_broken(void **state)
{
    (void)state;
    /* Another key ("other"): the padding check fails. */
    expect("U2FsdGVkX1+ntynAruooOWPAT2bdeJpphsDiPtsAu+E=", LEGACY_BROKEN, NULL);
    /* A flipped ciphertext byte, a cut block, salt without ciphertext. */
    expect("U2FsdGVkX1+11VEyeZeiZ6/gW3Usi85uOUK0yrxtvsA=", LEGACY_BROKEN, NULL);
    expect("U2FsdGVkX1+11VEyeZeiZ6/gW3Usi85uOUK0", LEGACY_BROKEN, NULL);
    expect("U2FsdGVkX1+11VEyeZeiZw==", LEGACY_BROKEN, NULL);
    /* Not base64 any more (a cut line), though it starts as Gibberish's. */
    expect("U2FsdGVkX1+11VEyeZeiZ6/gW3Usi85uOUK0yrxtvs", LEGACY_BROKEN, NULL);
    expect("U2FsdGVkX1+11VEy*eZeiZ6/gW3Usi85uOUK0yrxtvss=", LEGACY_BROKEN, NULL);
    char other[] = "k3z";
    char *out;
    assert_int_equal(legacy_open(other, 3, long_token, &out), LEGACY_BROKEN);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_what_openssl_enc_made),
        cmocka_unit_test(test_plaintext_rows_are_taken_as_they_are),
        cmocka_unit_test(test_gibberish_values_that_do_not_open_are_broken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
