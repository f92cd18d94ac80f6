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

/* A wrong key whose padding happens to check out (about one salt in 256)
 * decrypts to bytes that are no password: still broken, never imported. */
static void test_a_wrong_key_that_passes_the_padding_check_is_still_broken(void **state)
{
    (void)state;
    static const char right[] = "right-key", wrong[] = "k3z", plain[] = "wrong-key-pass";
    unsigned char raw[8 + SALT_LEN + 2 * BLOCK];
    memcpy(raw, "Salted__", 8);
    int found = 0;
    for (uint32_t s = 0; s < 100000 && !found; s++) {
        for (int i = 0; i < SALT_LEN; i++)
            raw[8 + i] = (unsigned char)((s >> (8 * (i % 4))) + (unsigned)i);
        unsigned char key[32], iv[BLOCK], back[2 * BLOCK];
        int n = 0, fin = 0;
        EVP_BytesToKey(EVP_aes_256_cbc(), EVP_md5(), raw + 8, (const unsigned char *)right,
                       (int)strlen(right), 1, key, iv);
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, iv), 1);
        assert_int_equal(
            EVP_EncryptUpdate(c, raw + 16, &n, (const unsigned char *)plain, (int)strlen(plain)),
            1);
        assert_int_equal(EVP_EncryptFinal_ex(c, raw + 16 + n, &fin), 1);
        int ctlen = n + fin;
        /* Does the wrong key's padding check out, with no NUL (the old test)? */
        EVP_BytesToKey(EVP_aes_256_cbc(), EVP_md5(), raw + 8, (const unsigned char *)wrong,
                       (int)strlen(wrong), 1, key, iv);
        assert_int_equal(EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, iv), 1);
        int m = 0, mf = 0;
        int padded = EVP_DecryptUpdate(c, back, &m, raw + 16, ctlen) == 1 &&
                     EVP_DecryptFinal_ex(c, back + m, &mf) == 1;
        EVP_CIPHER_CTX_free(c);
        if (!padded || memchr(back, '\0', (size_t)(m + mf)) != NULL)
            continue;
        found = 1;
        char b64[128];
        EVP_EncodeBlock((unsigned char *)b64, raw, 16 + ctlen);
        char *out = (char *)"unset";
        assert_int_equal(legacy_open(wrong, strlen(wrong), b64, &out), LEGACY_BROKEN);
        assert_null(out);
        /* And the right key still opens it. */
        assert_int_equal(legacy_open(right, strlen(right), b64, &out), LEGACY_DECRYPTED);
        assert_string_equal(out, plain);
        keys_wipe_free(out);
    }
    assert_true(found);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_what_openssl_enc_made),
        cmocka_unit_test(test_plaintext_rows_are_taken_as_they_are),
        cmocka_unit_test(test_gibberish_values_that_do_not_open_are_broken),
        cmocka_unit_test(test_a_wrong_key_that_passes_the_padding_check_is_still_broken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
