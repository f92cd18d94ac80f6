/*
 * Unit tests of proto/codec: RFC 4648 vectors for base64, base64url and hex,
 * strict decoding of malformed input and padding, and the loose decoder's
 * MIME leniency (whitespace, "=" inside a word, no padding).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "proto/codec.h"

/* RFC 4648 section 10. */
static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const b64[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
static const char *const b64url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
static const char *const hex[] = {"",         "66",         "666f",        "666f6f",
                                  "666f6f62", "666f6f6261", "666f6f626172"};

static void test_b64_encode_and_decode_match_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        size_t n;
        char *enc = codec_b64_encode(plain[i], strlen(plain[i]), &n);
        assert_string_equal(enc, b64[i]);
        assert_int_equal(n, strlen(b64[i]));
        assert_int_equal(n, CODEC_B64_LEN(strlen(plain[i])));
        xfree(enc);

        char to[16];
        assert_int_equal(codec_b64_encode_to(plain[i], strlen(plain[i]), to), strlen(b64[i]));
        assert_string_equal(to, b64[i]);

        unsigned char *dec;
        assert_int_equal(codec_b64_decode(b64[i], strlen(b64[i]), &dec, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], n);
        assert_int_equal(dec[n], '\0');
        xfree(dec);
    }
}

static void test_b64url_omits_padding_and_decodes_both_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        size_t n;
        char *enc = codec_b64url_encode(plain[i], strlen(plain[i]), &n);
        assert_string_equal(enc, b64url[i]);
        assert_int_equal(n, strlen(b64url[i]));
        xfree(enc);
        const char *forms[] = {b64url[i], b64[i]};
        for (int f = 0; f < 2; f++) {
            unsigned char *dec;
            assert_int_equal(codec_b64url_decode(forms[f], strlen(forms[f]), &dec, &n), 0);
            assert_int_equal(n, strlen(plain[i]));
            assert_memory_equal(dec, plain[i], n);
            xfree(dec);
        }
    }
    /* 0xfb 0xff: "+/8=" in the standard alphabet, "-_8" in base64url. */
    const unsigned char bin[] = {0xfb, 0xff};
    char *std = codec_b64_encode(bin, sizeof(bin), NULL);
    char *url = codec_b64url_encode(bin, sizeof(bin), NULL);
    assert_string_equal(std, "+/8=");
    assert_string_equal(url, "-_8");
    unsigned char *dec;
    size_t n;
    assert_int_equal(codec_b64url_decode(std, strlen(std), &dec, &n), -SIMAP_EINVAL);
    assert_null(dec);
    assert_int_equal(codec_b64_decode(url, strlen(url), &dec, &n), -SIMAP_EINVAL);
    xfree(std);
    xfree(url);
}

static void test_b64_strict_decode_rejects_malformed_input_and_padding(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg=",      /* length not a multiple of 4 */
        "Zg",       /* unpadded */
        "Zg=a",     /* '=' before the end */
        "=Zg=",     /* '=' first */
        "Z===",     /* three pads */
        "Zh==",     /* non-zero unused bits */
        "Zm9=",     /* non-zero unused bits, one pad */
        " Zm9v",    /* whitespace (EVP_DecodeBlock would skip it) */
        "Zm9v\n",   /* line break */
        "Zm9v====", /* a group of padding */
        "Zm.v",     /* outside the alphabet */
        "Zm9-",     /* base64url character */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *dec = (unsigned char *)"x";
        size_t n = 99;
        int rc = codec_b64_decode(bad[i], strlen(bad[i]), &dec, &n);
        if (rc != -SIMAP_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_null(dec);
    }
    unsigned char *dec;
    size_t n;
    assert_int_equal(codec_b64_decode("Zm\0v", 4, &dec, &n), -SIMAP_EINVAL);
    assert_int_equal(codec_b64_decode(NULL, 0, &dec, &n), -SIMAP_EINVAL);
    assert_int_equal(codec_b64url_decode("Zm9vY", 5, &dec, &n), -SIMAP_EINVAL);
    assert_int_equal(codec_b64url_decode("Zg=", 3, &dec, &n), -SIMAP_EINVAL);
}

static void test_b64_round_trips_across_chunk_boundaries(void **state)
{
    (void)state;
    static unsigned char data[10000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 131 + 7);
    const size_t lens[] = {3071, 3072, 3073, 6144, 6145, 10000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t elen, n;
        char *enc = codec_b64_encode(data, lens[i], &elen);
        assert_int_equal(elen, CODEC_B64_LEN(lens[i]));
        unsigned char *dec;
        assert_int_equal(codec_b64_decode(enc, elen, &dec, &n), 0);
        assert_int_equal(n, lens[i]);
        assert_memory_equal(dec, data, n);
        xfree(dec);
        /* The loose decoder reads the same text to the same bytes. */
        unsigned char *loose = xmalloc(lens[i]);
        assert_int_equal(codec_b64_decode_loose(enc, elen, CODEC_B64_MIME, loose, lens[i], &n), 0);
        assert_int_equal(n, lens[i]);
        assert_memory_equal(loose, data, n);
        xfree(loose);
        xfree(enc);
    }
}

static void check_loose(const char *in, int flags, int want_rc, const char *want)
{
    unsigned char out[64];
    size_t n = 12345;
    int rc = codec_b64_decode_loose(in, strlen(in), flags, out, sizeof(out), &n);
    if (rc != want_rc)
        fail_msg("\"%s\": rc %d, want %d", in, rc, want_rc);
    if (rc == 0) {
        assert_int_equal(n, strlen(want));
        assert_memory_equal(out, want, n);
    }
}

static void test_b64_loose_mime_skips_whitespace_and_restarts_at_padding(void **state)
{
    (void)state;
    check_loose("Zm9v\r\nYmFy", CODEC_B64_MIME, 0, "foobar");
    check_loose(" Zm 9v\tYm\nFy ", CODEC_B64_MIME, 0, "foobar");
    check_loose("aGk=aGk=", CODEC_B64_MIME, 0, "hihi");
    check_loose("Zm9vYg", CODEC_B64_MIME, 0, "foob");   /* padding optional */
    check_loose("Zm9vYh==", CODEC_B64_MIME, 0, "foob"); /* unused bits ignored */
    check_loose("", CODEC_B64_MIME, 0, "");
    check_loose("Zm9v*", CODEC_B64_MIME, -SIMAP_EINVAL, NULL);
    check_loose("Zm9-", CODEC_B64_MIME, -SIMAP_EINVAL, NULL);
}

static void test_b64_loose_plain_refuses_whitespace_and_padding(void **state)
{
    (void)state;
    check_loose("Zm9vYmFy", 0, 0, "foobar");
    check_loose("Zm9vYg", 0, 0, "foob");
    check_loose("Zm9v YmFy", 0, -SIMAP_EINVAL, NULL);
    check_loose("Zm9v\nYmFy", 0, -SIMAP_EINVAL, NULL);
    check_loose("aGk=aGk", 0, -SIMAP_EINVAL, NULL);

    unsigned char out[8];
    size_t n = 7;
    assert_int_equal(codec_b64_decode_loose("Zm9vYmFy", 8, 0, out, 5, &n), -SIMAP_ETOOBIG);
    assert_int_equal(n, 7); /* untouched on error */
    assert_int_equal(codec_b64_decode_loose("Zm9vYmFy", 8, CODEC_B64_MIME, out, 4, &n),
                     -SIMAP_ETOOBIG);
    assert_int_equal(codec_b64_decode_loose("Zm9v", 4, 0, out, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(codec_b64_decode_loose(NULL, 1, 0, out, 3, &n), -SIMAP_EINVAL);
}

static void test_hex_matches_rfc4648_vectors_and_rejects_bad_digits(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char enc[16];
        codec_hex_encode(plain[i], strlen(plain[i]), enc);
        assert_string_equal(enc, hex[i]);
        unsigned char dec[8];
        size_t n = 99;
        assert_int_equal(codec_hex_decode(hex[i], strlen(hex[i]), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], n);
    }
    unsigned char back[3];
    size_t n;
    assert_int_equal(codec_hex_decode("ABcdEF", 6, back, sizeof(back), &n), 0);
    assert_int_equal(back[0], 0xab);
    assert_int_equal(back[2], 0xef);
    assert_int_equal(codec_hex_decode("abc", 3, back, sizeof(back), &n), -SIMAP_EINVAL);
    assert_int_equal(codec_hex_decode("0g", 2, back, sizeof(back), &n), -SIMAP_EINVAL);
    assert_int_equal(codec_hex_decode(" 0", 2, back, sizeof(back), &n), -SIMAP_EINVAL);
    assert_int_equal(codec_hex_decode("00112233", 8, back, sizeof(back), &n), -SIMAP_ETOOBIG);
    assert_int_equal(codec_hex_decode(NULL, 0, back, sizeof(back), &n), -SIMAP_EINVAL);

    assert_int_equal(codec_hex_value('0'), 0);
    assert_int_equal(codec_hex_value('9'), 9);
    assert_int_equal(codec_hex_value('a'), 10);
    assert_int_equal(codec_hex_value('F'), 15);
    assert_int_equal(codec_hex_value('g'), -1);
    assert_int_equal(codec_hex_value('/'), -1);
    assert_int_equal(codec_hex_value(0xC3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_encode_and_decode_match_rfc4648_vectors),
        cmocka_unit_test(test_b64url_omits_padding_and_decodes_both_forms),
        cmocka_unit_test(test_b64_strict_decode_rejects_malformed_input_and_padding),
        cmocka_unit_test(test_b64_round_trips_across_chunk_boundaries),
        cmocka_unit_test(test_b64_loose_mime_skips_whitespace_and_restarts_at_padding),
        cmocka_unit_test(test_b64_loose_plain_refuses_whitespace_and_padding),
        cmocka_unit_test(test_hex_matches_rfc4648_vectors_and_rejects_bad_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
