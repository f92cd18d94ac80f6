/*
 * Unit tests of core/crypto: published vectors for the hashes, HMAC and
 * base64 (FIPS 180-2, RFC 4231, RFC 4648, Standard Webhooks), and the
 * envelope's round trips, tamper detection, AAD binding, key rotation and
 * hostile input.
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

#include "core/crypto.h"
#include "core/err.h"

#define KEY_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY_B "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff"
#define KEY_C "5555555555555555555555555555555555555555555555555555555555555555"

static struct crypto_keys *ring(const char *cur, const char *old)
{
    struct crypto_keys *k = NULL;
    char err[256];
    int rc = crypto_keys_init(&k, cur, old, err, sizeof(err));
    if (rc != 0)
        fail_msg("crypto_keys_init: %s", err);
    assert_non_null(k);
    return k;
}

/* A small deterministic generator for test data (not for crypto). */
static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* ---- Hashes and HMAC ---- */

static void check_hmac(const void *key, size_t keylen, const char *data, const char *want_hex)
{
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    unsigned char raw[CRYPTO_SHA256_LEN], want[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_hmac_sha256_hex(key, keylen, data, strlen(data), hex), 0);
    assert_string_equal(hex, want_hex);
    assert_int_equal(crypto_hmac_sha256(key, keylen, data, strlen(data), raw), 0);
    assert_int_equal(crypto_hex_decode(want_hex, strlen(want_hex), want, sizeof(want), NULL), 0);
    assert_memory_equal(raw, want, sizeof(want));
}

static void test_hmac_sha256_matches_rfc4231_case_1(void **state)
{
    (void)state;
    unsigned char key[20];
    memset(key, 0x0b, sizeof(key));
    check_hmac(key, sizeof(key), "Hi There",
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

static void test_hmac_sha256_matches_rfc4231_case_2(void **state)
{
    (void)state;
    check_hmac("Jefe", 4, "what do ya want for nothing?",
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_hmac_sha256_matches_rfc4231_case_6_long_key(void **state)
{
    (void)state;
    unsigned char key[131];
    memset(key, 0xaa, sizeof(key));
    check_hmac(key, sizeof(key), "Test Using Larger Than Block-Size Key - Hash Key First",
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_hmac_sha256_accepts_empty_key_and_message(void **state)
{
    (void)state;
    check_hmac(NULL, 0, "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_sha1_and_sha256_match_fips_abc_vectors(void **state)
{
    (void)state;
    char h1[CRYPTO_SHA1_HEX_LEN + 1], h256[CRYPTO_SHA256_HEX_LEN + 1];
    unsigned char raw[CRYPTO_SHA256_LEN];
    char rawhex[CRYPTO_SHA256_HEX_LEN + 1];

    assert_int_equal(crypto_sha1_hex("abc", 3, h1), 0);
    assert_string_equal(h1, "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_int_equal(crypto_sha256_hex("abc", 3, h256), 0);
    assert_string_equal(h256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(crypto_sha256("abc", 3, raw), 0);
    crypto_hex_encode(raw, sizeof(raw), rawhex);
    assert_string_equal(rawhex, h256);
    assert_int_equal(crypto_sha256_hex(NULL, 0, h256), 0);
    assert_string_equal(h256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* A SHA-1 fed in pieces of every size equals the one-shot digest (FIPS
 * 180 "abc...nopq" two-block vector), and counts what it was fed. */
static void test_sha1_in_pieces_matches_one_shot(void **state)
{
    (void)state;
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    size_t n = sizeof msg - 1;
    char want[CRYPTO_SHA1_HEX_LEN + 1], got[CRYPTO_SHA1_HEX_LEN + 1];
    assert_int_equal(crypto_sha1_hex(msg, n, want), 0);
    assert_string_equal(want, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    for (size_t piece = 1; piece <= n; piece++) {
        struct crypto_sha1 *h = crypto_sha1_new();
        assert_non_null(h);
        assert_int_equal(crypto_sha1_update(h, msg, 0), 0);
        for (size_t at = 0; at < n; at += piece)
            assert_int_equal(crypto_sha1_update(h, msg + at, n - at < piece ? n - at : piece), 0);
        assert_int_equal(crypto_sha1_length(h), n);
        assert_int_equal(crypto_sha1_final_hex(h, got), 0);
        assert_string_equal(got, want);
        crypto_sha1_free(h);
    }
    struct crypto_sha1 *h = crypto_sha1_new();
    assert_int_equal(crypto_sha1_final_hex(h, got), 0);
    assert_string_equal(got, "da39a3ee5e6b4b0d3255bfef95601890afd80709"); /* no bytes */
    crypto_sha1_free(h);
    crypto_sha1_free(NULL);
}

/* Standard Webhooks' published example (standard-webhooks spec and its
 * reference libraries' tests). */
static void test_standard_webhooks_signature_vector(void **state)
{
    (void)state;
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const char *ts = "1614265330";
    const char *payload = "{\"test\": 2432232314}";
    unsigned char *key = NULL, mac[CRYPTO_SHA256_LEN];
    size_t keylen = 0;
    char content[256];

    const char *b64 = secret + strlen("whsec_");
    assert_int_equal(crypto_b64_decode(b64, strlen(b64), &key, &keylen), 0);
    int n = snprintf(content, sizeof(content), "%s.%s.%s", msg_id, ts, payload);
    assert_true(n > 0 && (size_t)n < sizeof(content));
    assert_int_equal(crypto_hmac_sha256(key, keylen, content, (size_t)n, mac), 0);
    char *sig = crypto_b64_encode(mac, sizeof(mac));
    char header[128];
    snprintf(header, sizeof(header), "v1,%s", sig);
    assert_string_equal(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    xfree(sig);
    xfree(key);
}

/* ---- Encodings ---- */

static const char *const rfc4648_plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const rfc4648_b64[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                          "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
static const char *const rfc4648_b64url[] = {"",       "Zg",      "Zm8",     "Zm9v",
                                             "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};

static void test_b64_matches_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648_plain) / sizeof(rfc4648_plain[0]); i++) {
        const char *p = rfc4648_plain[i];
        char *enc = crypto_b64_encode(p, strlen(p));
        assert_string_equal(enc, rfc4648_b64[i]);
        xfree(enc);

        unsigned char *dec = NULL;
        size_t declen = 99;
        assert_int_equal(crypto_b64_decode(rfc4648_b64[i], strlen(rfc4648_b64[i]), &dec, &declen),
                         0);
        assert_int_equal(declen, strlen(p));
        assert_memory_equal(dec, p, declen);
        assert_int_equal(dec[declen], '\0');
        xfree(dec);
    }
}

static void test_b64url_omits_padding_and_decodes_both_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648_plain) / sizeof(rfc4648_plain[0]); i++) {
        const char *p = rfc4648_plain[i];
        char *enc = crypto_b64url_encode(p, strlen(p));
        assert_string_equal(enc, rfc4648_b64url[i]);
        xfree(enc);

        const char *forms[] = {rfc4648_b64url[i], rfc4648_b64[i]};
        for (size_t f = 0; f < 2; f++) {
            unsigned char *dec = NULL;
            size_t declen = 0;
            assert_int_equal(crypto_b64url_decode(forms[f], strlen(forms[f]), &dec, &declen), 0);
            assert_int_equal(declen, strlen(p));
            assert_memory_equal(dec, p, declen);
            xfree(dec);
        }
    }
    /* 0xfb 0xff: '+' and '/' in the standard alphabet, '-' and '_' in url. */
    const unsigned char bin[] = {0xfb, 0xff, 0xbf};
    char *std = crypto_b64_encode(bin, sizeof(bin));
    char *url = crypto_b64url_encode(bin, sizeof(bin));
    assert_string_equal(std, "+/+/");
    assert_string_equal(url, "-_-_");
    xfree(std);
    xfree(url);
}

static void test_b64_decode_rejects_malformed_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg=",        /* length not a multiple of 4 */
        "Zg",         /* unpadded is only for base64url */
        "Z===",       /* three '=' */
        "=Zg=",       /* '=' in front */
        "Zm=v",       /* '=' inside */
        "Zh==",       /* non-zero unused bits: not canonical */
        "Zm9=",       /* non-zero unused bits */
        " Zm9v",      /* whitespace */
        "Zm9v\n",     /* whitespace */
        "Zm9vYmFy==", /* padding after a full group */
        "Zm9-",       /* base64url character */
        "Zm9_",       /* base64url character */
        "Zm9\x80",    /* not ASCII */
        "Zm*v",       /* not in the alphabet */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *dec = (unsigned char *)"sentinel";
        size_t declen = 0;
        int rc = crypto_b64_decode(bad[i], strlen(bad[i]), &dec, &declen);
        if (rc != -SIMAP_EINVAL)
            fail_msg("\"%s\" decoded (rc %d)", bad[i], rc);
        assert_null(dec);
    }
    /* An embedded NUL counts as a character, not the end. */
    unsigned char *dec = NULL;
    size_t declen = 0;
    assert_int_equal(crypto_b64_decode("Zm\0v", 4, &dec, &declen), -SIMAP_EINVAL);
    assert_int_equal(crypto_b64_decode(NULL, 0, &dec, &declen), -SIMAP_EINVAL);
}

static void test_b64url_decode_rejects_malformed_input(void **state)
{
    (void)state;
    static const char *const bad[] = {"Z", "Zm9vY", "Zg=", "Zm9+", "Zm9/", "Zh", "Zm9v=", "Z=g="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *dec = NULL;
        size_t declen = 0;
        int rc = crypto_b64url_decode(bad[i], strlen(bad[i]), &dec, &declen);
        if (rc != -SIMAP_EINVAL)
            fail_msg("\"%s\" decoded (rc %d)", bad[i], rc);
        assert_null(dec);
    }
}

/* Inputs longer than one internal chunk (4096 characters) of every length
 * modulo 3, and a misplaced '=' at a chunk boundary. */
static void test_b64_round_trips_across_chunk_boundaries(void **state)
{
    (void)state;
    uint64_t seed = 0x1234567;
    static unsigned char data[100003];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)xorshift(&seed);
    const size_t lens[] = {3071, 3072, 3073, 6144, 100001, 100002, 100003};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int url = 0; url < 2; url++) {
            char *enc =
                url ? crypto_b64url_encode(data, lens[i]) : crypto_b64_encode(data, lens[i]);
            unsigned char *dec = NULL;
            size_t declen = 0;
            int rc = url ? crypto_b64url_decode(enc, strlen(enc), &dec, &declen)
                         : crypto_b64_decode(enc, strlen(enc), &dec, &declen);
            assert_int_equal(rc, 0);
            assert_int_equal(declen, lens[i]);
            assert_memory_equal(dec, data, lens[i]);
            xfree(dec);
            xfree(enc);
        }
    }
    char *enc = crypto_b64_encode(data, 6144);
    enc[4095] = '=';
    unsigned char *dec = NULL;
    size_t declen = 0;
    assert_int_equal(crypto_b64_decode(enc, strlen(enc), &dec, &declen), -SIMAP_EINVAL);
    xfree(enc);
}

static void test_hex_round_trips_and_rejects_bad_digits(void **state)
{
    (void)state;
    const unsigned char bin[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff};
    char hex[2 * sizeof(bin) + 1];
    unsigned char back[sizeof(bin)];
    size_t n = 0;
    crypto_hex_encode(bin, sizeof(bin), hex);
    assert_string_equal(hex, "0001abcdefff");
    assert_int_equal(crypto_hex_decode("0001ABCDefFF", 12, back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(bin));
    assert_memory_equal(back, bin, sizeof(bin));
    assert_int_equal(crypto_hex_decode("abc", 3, back, sizeof(back), &n), -SIMAP_EINVAL);
    assert_int_equal(crypto_hex_decode("0g", 2, back, sizeof(back), &n), -SIMAP_EINVAL);
    assert_int_equal(crypto_hex_decode(" 0", 2, back, sizeof(back), &n), -SIMAP_EINVAL);
    assert_int_equal(crypto_hex_decode("00112233445566", 14, back, sizeof(back), &n),
                     -SIMAP_ETOOBIG);
}

/* ---- Randomness and comparison ---- */

static void test_equal_compares_contents_and_lengths(void **state)
{
    (void)state;
    assert_int_equal(crypto_equal("abc", 3, "abc", 3), 1);
    assert_int_equal(crypto_equal("abc", 3, "abd", 3), 0);
    assert_int_equal(crypto_equal("abc", 3, "abcd", 4), 0);
    assert_int_equal(crypto_equal("", 0, "", 0), 1);
    assert_int_equal(crypto_equal(NULL, 0, "x", 0), 1);
}

static void test_token_is_base64url_of_requested_bytes_and_unique(void **state)
{
    (void)state;
    char *t1 = crypto_token(32), *t2 = crypto_token(32);
    assert_int_equal(strlen(t1), 43);
    assert_string_not_equal(t1, t2);
    for (const char *c = t1; *c; c++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c));
    unsigned char *raw = NULL;
    size_t n = 0;
    assert_int_equal(crypto_b64url_decode(t1, strlen(t1), &raw, &n), 0);
    assert_int_equal(n, 32);
    xfree(raw);
    xfree(t1);
    xfree(t2);

    char *big = crypto_token(100);
    assert_int_equal(strlen(big), 134);
    xfree(big);
}

static void test_random_fills_the_whole_buffer(void **state)
{
    (void)state;
    /* Each byte stays zero with probability 2^-8 per draw; eight draws make a
     * false failure 2^-64 per byte. */
    unsigned char seen[300] = {0}, buf[300];
    for (int round = 0; round < 8; round++) {
        crypto_random(buf, sizeof(buf));
        for (size_t i = 0; i < sizeof(buf); i++)
            seen[i] |= buf[i];
    }
    for (size_t i = 0; i < sizeof(seen); i++)
        assert_int_not_equal(seen[i], 0);
}

/* ---- Key ring ---- */

static void test_key_id_is_first_8_hex_of_sha256_of_raw_key(void **state)
{
    (void)state;
    unsigned char raw[32], md[32];
    unsigned int mdlen = 0;
    char want[9];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)i; /* KEY_A */
    assert_int_equal(EVP_Digest(raw, sizeof(raw), md, &mdlen, EVP_sha256(), NULL), 1);
    snprintf(want, sizeof(want), "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);

    struct crypto_keys *k = ring(KEY_A, NULL);
    assert_string_equal(crypto_keys_current_id(k), want);
    crypto_keys_free(k);

    /* Upper-case hex is the same key. */
    char upper[] = KEY_A;
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    k = ring(upper, NULL);
    assert_string_equal(crypto_keys_current_id(k), want);
    crypto_keys_free(k);
}

static void test_keys_init_rejects_bad_keys_without_echoing_them(void **state)
{
    (void)state;
    static char sentinel;
    struct crypto_keys *k = (struct crypto_keys *)(void *)&sentinel;
    char err[256];
    const char *short_key = "0011223344556677";
    const char *bad_hex = "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    assert_int_equal(crypto_keys_init(&k, short_key, NULL, err, sizeof(err)), -SIMAP_EINVAL);
    assert_null(k);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, short_key));
    assert_int_equal(crypto_keys_init(&k, bad_hex, NULL, err, sizeof(err)), -SIMAP_EINVAL);
    assert_int_equal(crypto_keys_init(&k, "", NULL, err, sizeof(err)), -SIMAP_EINVAL);
    assert_int_equal(crypto_keys_init(&k, NULL, NULL, err, sizeof(err)), -SIMAP_EINVAL);
    assert_int_equal(crypto_keys_init(&k, KEY_A KEY_B, NULL, err, sizeof(err)), -SIMAP_EINVAL);

    /* The second old key is bad: the message names its position only. */
    assert_int_equal(crypto_keys_init(&k, KEY_A, KEY_B ",deadbeef", err, sizeof(err)),
                     -SIMAP_EINVAL);
    assert_null(k);
    assert_non_null(strstr(err, "old key 2"));
    assert_null(strstr(err, "deadbeef"));
    assert_null(strstr(err, KEY_B));

    /* Works with no room for a message. */
    assert_int_equal(crypto_keys_init(&k, short_key, NULL, NULL, 0), -SIMAP_EINVAL);
}

static void test_keys_init_tolerates_blanks_and_drops_current_from_old(void **state)
{
    (void)state;
    struct crypto_keys *old = ring(KEY_B, NULL), *cur = ring(KEY_A, NULL);
    char *env_b = NULL, *env_a = NULL;
    assert_int_equal(crypto_encrypt(old, "x", 1, NULL, &env_b), 0);
    assert_int_equal(crypto_encrypt(cur, "y", 1, NULL, &env_a), 0);

    struct crypto_keys *k = ring(KEY_A, " " KEY_B " ,, " KEY_A ",");
    assert_int_equal(crypto_needs_rotation(k, env_b), 1);
    assert_int_equal(crypto_needs_rotation(k, env_a), 0);
    crypto_keys_free(k);

    k = ring(KEY_A, "");
    assert_int_equal(crypto_needs_rotation(k, env_b), -SIMAP_ECRYPTO);
    crypto_keys_free(k);

    xfree(env_a);
    xfree(env_b);
    crypto_keys_free(old);
    crypto_keys_free(cur);
    crypto_keys_free(NULL);
}

/* ---- Envelopes ---- */

static void round_trip(const struct crypto_keys *k, const void *plain, size_t n, const char *aad)
{
    char *env = NULL, *out = NULL;
    size_t outlen = 12345;
    assert_int_equal(crypto_encrypt(k, plain, n, aad, &env), 0);
    assert_non_null(env);
    assert_int_equal(crypto_decrypt(k, env, aad, &out, &outlen), 0);
    assert_int_equal(outlen, n);
    if (n > 0)
        assert_memory_equal(out, plain, n);
    assert_int_equal(out[n], '\0');
    xfree(out);
    xfree(env);
}

static void test_encrypt_decrypt_round_trips_empty_small_and_100k(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, NULL);
    static unsigned char big[100 * 1024];
    uint64_t seed = 42;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)xorshift(&seed);

    round_trip(k, NULL, 0, NULL);
    round_trip(k, "", 0, "si:{1}:user:1");
    round_trip(k, "x", 1, NULL);
    round_trip(k, "\0", 1, "aad");
    round_trip(k, "correct horse battery staple", 28, "si:{7}:user:abc");
    round_trip(k, big, sizeof(big), NULL);
    round_trip(k, big, sizeof(big), "si:{7}:evt:u.1.2");
    crypto_keys_free(k);
}

static void test_envelope_has_v1_layout_and_fresh_nonce(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, NULL);
    char *e1 = NULL, *e2 = NULL;
    assert_int_equal(crypto_encrypt(k, "secret", 6, NULL, &e1), 0);
    assert_int_equal(crypto_encrypt(k, "secret", 6, NULL, &e2), 0);

    char prefix[16];
    snprintf(prefix, sizeof(prefix), "v1:%s:", crypto_keys_current_id(k));
    assert_memory_equal(e1, prefix, strlen(prefix));
    const char *nonce = e1 + strlen(prefix);
    const char *colon = strchr(nonce, ':');
    assert_non_null(colon);
    assert_int_equal(colon - nonce, 16);

    unsigned char *ct = NULL;
    size_t ctlen = 0;
    assert_int_equal(crypto_b64_decode(colon + 1, strlen(colon + 1), &ct, &ctlen), 0);
    assert_int_equal(ctlen, 6 + CRYPTO_TAG_LEN);
    assert_true(memcmp(ct, "secret", 6) != 0); /* equal with probability 2^-48 */
    xfree(ct);

    assert_string_not_equal(e1, e2); /* random nonce: same input, new envelope */
    xfree(e1);
    xfree(e2);
    crypto_keys_free(k);
}

static void expect_reject(const struct crypto_keys *k, const char *env, const char *aad)
{
    char *out = (char *)"sentinel";
    size_t outlen = 7;
    int rc = crypto_decrypt(k, env, aad, &out, &outlen);
    if (rc != -SIMAP_ECRYPTO)
        fail_msg("envelope accepted or wrong error (rc %d): %.80s", rc, env);
    assert_null(out);
    assert_int_equal(outlen, 0);
}

/* Decodes the part of env after the field-th ':' (2 nonce, 3 ciphertext),
 * flips bit 0 of byte at (from the end when negative), re-encodes and returns
 * the new envelope: a tamper that stays well-formed. */
static char *flip_bit(const char *env, int field, long at)
{
    const char *p = env;
    for (int i = 0; i < field; i++)
        p = strchr(p, ':') + 1;
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    unsigned char *raw = NULL;
    size_t n = 0;
    assert_int_equal(crypto_b64_decode(p, len, &raw, &n), 0);
    size_t idx = at < 0 ? n - (size_t)(-at) : (size_t)at;
    assert_true(idx < n);
    raw[idx] ^= 1;
    char *b64 = crypto_b64_encode(raw, n);
    xfree(raw);
    size_t head = (size_t)(p - env), tail = strlen(p + len);
    char *out = xmalloc(head + strlen(b64) + tail + 1);
    memcpy(out, env, head);
    memcpy(out + head, b64, strlen(b64));
    memcpy(out + head + strlen(b64), p + len, tail + 1);
    xfree(b64);
    return out;
}

static void test_decrypt_rejects_tampered_nonce_ciphertext_and_tag(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, NULL);
    char *env = NULL;
    assert_int_equal(crypto_encrypt(k, "refresh-token-xyz", 17, "rec", &env), 0);

    char *t = flip_bit(env, 2, 0); /* nonce */
    expect_reject(k, t, "rec");
    xfree(t);
    t = flip_bit(env, 2, -1);
    expect_reject(k, t, "rec");
    xfree(t);
    t = flip_bit(env, 3, 0); /* first ciphertext byte */
    expect_reject(k, t, "rec");
    xfree(t);
    t = flip_bit(env, 3, 16); /* last ciphertext byte */
    expect_reject(k, t, "rec");
    xfree(t);
    t = flip_bit(env, 3, -16); /* first tag byte */
    expect_reject(k, t, "rec");
    xfree(t);
    t = flip_bit(env, 3, -1); /* last tag byte */
    expect_reject(k, t, "rec");
    xfree(t);

    /* And the untouched envelope still opens: the rejections were the tamper. */
    char *out = NULL;
    assert_int_equal(crypto_decrypt(k, env, "rec", &out, NULL), 0);
    assert_string_equal(out, "refresh-token-xyz");
    xfree(out);
    xfree(env);
    crypto_keys_free(k);
}

static void test_decrypt_rejects_tampered_key_id_and_version(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, KEY_B);
    struct crypto_keys *kb = ring(KEY_B, NULL);
    char *env = NULL;
    assert_int_equal(crypto_encrypt(k, "password", 8, NULL, &env), 0);
    char *t = xstrdup(env);

    /* Another key of the ring: known id, wrong key. */
    memcpy(t + 3, crypto_keys_current_id(kb), CRYPTO_KEY_ID_LEN);
    expect_reject(k, t, NULL);
    /* An id no key has. */
    memcpy(t + 3, "00000000", CRYPTO_KEY_ID_LEN);
    expect_reject(k, t, NULL);
    memcpy(t + 3, env + 3, CRYPTO_KEY_ID_LEN);
    /* Version. */
    t[1] = '2';
    expect_reject(k, t, NULL);
    t[1] = '1';
    t[0] = 'V';
    expect_reject(k, t, NULL);
    t[0] = 'v';
    assert_string_equal(t, env);

    xfree(t);
    xfree(env);
    crypto_keys_free(k);
    crypto_keys_free(kb);
}

/* Any one character replaced anywhere must fail: canonical base64 leaves no
 * character that can change without changing the bytes. */
static void test_decrypt_rejects_any_single_character_change(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, NULL);
    char *env = NULL;
    assert_int_equal(crypto_encrypt(k, "hunter2 and more text", 21, "si:{3}:user:9", &env), 0);
    size_t len = strlen(env);
    for (size_t i = 0; i < len; i++) {
        char *t = xstrdup(env);
        const char *subst = "AB:=/+0";
        for (const char *c = subst; *c; c++) {
            if (*c == env[i])
                continue;
            t[i] = *c;
            expect_reject(k, t, "si:{3}:user:9");
        }
        xfree(t);
    }
    /* Truncated at every point. */
    for (size_t i = 0; i < len; i++) {
        char *t = xstrndup(env, i);
        expect_reject(k, t, "si:{3}:user:9");
        xfree(t);
    }
    xfree(env);
    crypto_keys_free(k);
}

static void test_decrypt_rejects_wrong_aad(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, NULL);
    char *env = NULL, *out = NULL;
    assert_int_equal(crypto_encrypt(k, "s3cret", 6, "si:{3}:user:42", &env), 0);
    expect_reject(k, env, "si:{3}:user:43");
    expect_reject(k, env, "si:{3}:user:4");
    expect_reject(k, env, NULL);
    expect_reject(k, env, "");
    assert_int_equal(crypto_decrypt(k, env, "si:{3}:user:42", &out, NULL), 0);
    assert_string_equal(out, "s3cret");
    xfree(out);
    xfree(env);

    /* No AAD: NULL and "" are the same, anything else fails. */
    assert_int_equal(crypto_encrypt(k, "s3cret", 6, NULL, &env), 0);
    assert_int_equal(crypto_decrypt(k, env, "", &out, NULL), 0);
    xfree(out);
    expect_reject(k, env, "si:{3}:user:42");
    xfree(env);
    crypto_keys_free(k);
}

static void test_rotation_old_key_decrypts_and_needs_rotation(void **state)
{
    (void)state;
    struct crypto_keys *before = ring(KEY_A, NULL);
    char *env = NULL, *out = NULL, *env2 = NULL;
    size_t n = 0;
    assert_int_equal(crypto_encrypt(before, "imap-pass", 9, "si:{0}:user:u", &env), 0);
    assert_int_equal(crypto_needs_rotation(before, env), 0);

    /* KEY_B becomes current, KEY_A old. */
    struct crypto_keys *after = ring(KEY_B, KEY_C "," KEY_A);
    assert_int_equal(crypto_needs_rotation(after, env), 1);
    assert_int_equal(crypto_decrypt(after, env, "si:{0}:user:u", &out, &n), 0);
    assert_int_equal(n, 9);
    assert_string_equal(out, "imap-pass");

    /* Re-encrypting moves it to the current key. */
    assert_int_equal(crypto_encrypt(after, out, n, "si:{0}:user:u", &env2), 0);
    assert_int_equal(crypto_needs_rotation(after, env2), 0);
    xfree(out);

    /* Once KEY_A is dropped altogether, its envelopes are refused. */
    struct crypto_keys *dropped = ring(KEY_B, NULL);
    expect_reject(dropped, env, "si:{0}:user:u");
    assert_int_equal(crypto_needs_rotation(dropped, env), -SIMAP_ECRYPTO);
    assert_int_equal(crypto_decrypt(dropped, env2, "si:{0}:user:u", &out, NULL), 0);
    assert_string_equal(out, "imap-pass");
    xfree(out);
    /* The old ring never saw KEY_B. */
    expect_reject(before, env2, "si:{0}:user:u");

    xfree(env);
    xfree(env2);
    crypto_keys_free(before);
    crypto_keys_free(after);
    crypto_keys_free(dropped);
}

static void test_decrypt_rejects_garbage_without_crashing(void **state)
{
    (void)state;
    struct crypto_keys *k = ring(KEY_A, NULL);
    char good_prefix[32];
    snprintf(good_prefix, sizeof(good_prefix), "v1:%s:", crypto_keys_current_id(k));

    static const char *const fixed[] = {
        "",
        "v1",
        "v1:",
        "v1::::",
        "plaintext-password",
        "v1:zzzzzzzz:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        expect_reject(k, fixed[i], NULL);

    /* Right key id, broken bodies. */
    static const char *const bodies[] = {
        "AAAAAAAAAAAAAAAA:",                         /* no ciphertext, no tag */
        "AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAA",     /* 15 bytes: shorter than a tag */
        "AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==", /* exactly a tag, wrong */
        "AAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==",     /* short nonce */
        "AAAAAAAAAAAAAAA*:AAAAAAAAAAAAAAAAAAAAAA==", /* bad nonce base64 */
        "AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA=",  /* bad ciphertext base64 */
        "AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==:AAAA",
        "AAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char env[128];
        snprintf(env, sizeof(env), "%s%s", good_prefix, bodies[i]);
        expect_reject(k, env, NULL);
    }

    /* Huge: 8 MiB of ciphertext, and a 1 MiB nonce field. */
    size_t big = (size_t)8 << 20;
    char *env = xmalloc(big + 64);
    int n = snprintf(env, 64, "%sAAAAAAAAAAAAAAAA:", good_prefix);
    memset(env + n, 'A', big);
    env[(size_t)n + big] = '\0';
    expect_reject(k, env, NULL);
    n = snprintf(env, 64, "%s", good_prefix);
    memset(env + n, 'A', (size_t)1 << 20);
    strcpy(env + n + ((size_t)1 << 20), ":AAAAAAAAAAAAAAAAAAAAAA==");
    expect_reject(k, env, NULL);
    xfree(env);

    /* Random bytes, half of them behind a valid prefix. */
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    char buf[200];
    for (int round = 0; round < 2000; round++) {
        size_t off = (round & 1) ? strlen(good_prefix) : 0;
        memcpy(buf, good_prefix, off);
        size_t len = off + xorshift(&seed) % 150;
        for (size_t i = off; i < len; i++) {
            char c;
            do
                c = (char)(xorshift(&seed) & 0xff);
            while (c == '\0');
            buf[i] = c;
        }
        buf[len] = '\0';
        expect_reject(k, buf, NULL);
        assert_true(crypto_needs_rotation(k, buf) <= 0);
    }

    /* Bad arguments. */
    char *out = NULL;
    assert_int_equal(crypto_decrypt(k, NULL, NULL, &out, NULL), -SIMAP_EINVAL);
    assert_int_equal(crypto_decrypt(NULL, "v1:", NULL, &out, NULL), -SIMAP_EINVAL);
    assert_int_equal(crypto_encrypt(k, NULL, 5, NULL, &out), -SIMAP_EINVAL);
    assert_null(out);
    assert_int_equal(crypto_encrypt(k, "x", CRYPTO_MAX_PLAIN + 1, NULL, &out), -SIMAP_ETOOBIG);
    assert_null(out);
    crypto_keys_free(k);
}

/* ---- Password hashes ---- */

static const struct crypto_scrypt_params cheap = {.log2n = 10, .r = 8, .p = 1};

static void test_password_hash_round_trips_and_refuses_a_wrong_password(void **state)
{
    (void)state;
    static const char pw[] = "correct horse battery staple";
    char *h = crypto_password_hash(pw, strlen(pw), &cheap);
    assert_non_null(h);
    assert_int_equal(strncmp(h, "$scrypt$ln=10,r=8,p=1$", 22), 0);
    assert_int_equal(strlen(h), 22 + 24 + 1 + 44); /* 16-byte salt, 32-byte hash */
    assert_int_equal(crypto_password_verify(h, pw, strlen(pw)), 1);
    assert_int_equal(crypto_password_verify(h, pw, strlen(pw) - 1), 0);
    assert_int_equal(crypto_password_verify(h, "correct horse battery staplE", strlen(pw)), 0);
    assert_int_equal(crypto_password_verify(h, "", 0), 0);
    /* The salt is fresh: the same password never gives the same line. */
    char *h2 = crypto_password_hash(pw, strlen(pw), &cheap);
    assert_string_not_equal(h, h2);
    assert_int_equal(crypto_password_verify(h2, pw, strlen(pw)), 1);
    /* A NUL inside the password counts. */
    static const char nul[] = "abc\0def-ghijkl";
    char *h3 = crypto_password_hash(nul, sizeof nul - 1, &cheap);
    assert_int_equal(crypto_password_verify(h3, nul, sizeof nul - 1), 1);
    assert_int_equal(crypto_password_verify(h3, nul, 3), 0);
    xfree(h);
    xfree(h2);
    xfree(h3);
}

static void test_password_hash_is_standard_scrypt_of_the_stored_salt(void **state)
{
    (void)state;
    /* A line made by hand from OpenSSL's scrypt (RFC 7914) with the second
     * vector's parameters verifies: the stored form is plain scrypt, so
     * another implementation can check it. */
    static const unsigned char salt[16] = "0123456789abcdef";
    unsigned char want[32];
    assert_int_equal(
        EVP_PBE_scrypt("password", 8, salt, sizeof salt, 1024, 8, 16, 64u << 20, want, sizeof want),
        1);
    char *s64 = crypto_b64_encode(salt, sizeof salt);
    char *h64 = crypto_b64_encode(want, sizeof want);
    char stored[256];
    snprintf(stored, sizeof stored, "$scrypt$ln=10,r=8,p=16$%s$%s", s64, h64);
    assert_int_equal(crypto_password_verify(stored, "password", 8), 1);
    assert_int_equal(crypto_password_verify(stored, "passwore", 8), 0);
    xfree(s64);
    xfree(h64);
}

static void test_an_unmatchable_hash_has_the_cost_and_form_but_matches_nothing(void **state)
{
    (void)state;
    char *h = crypto_password_unmatchable(&cheap);
    char *h2 = crypto_password_unmatchable(&cheap);
    struct crypto_scrypt_params p;
    assert_int_equal(crypto_scrypt_params_of(h, &p), 0);
    assert_int_equal(p.log2n, 10);
    assert_string_not_equal(h, h2);
    assert_int_equal(crypto_password_verify(h, "", 0), 0);
    assert_int_equal(crypto_password_verify(h, "0123456789ab", 12), 0);
    struct crypto_scrypt_params bad = {.log2n = 9, .r = 8, .p = 1};
    assert_null(crypto_password_unmatchable(&bad));
    xfree(h);
    xfree(h2);
}

static void test_password_hash_parameters_are_parsed_and_bounded(void **state)
{
    (void)state;
    struct crypto_scrypt_params p;
    char *h = crypto_password_hash("0123456789ab", 12, &cheap);
    assert_int_equal(crypto_scrypt_params_of(h, &p), 0);
    assert_int_equal(p.log2n, 10);
    assert_int_equal(p.r, 8);
    assert_int_equal(p.p, 1);
    xfree(h);
    static const char salt[] = "AAAAAAAAAAAAAAAAAAAAAA==";
    static const char hash[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    char line[256];
    snprintf(line, sizeof line, "$scrypt$ln=15,r=8,p=1$%s$%s", salt, hash);
    assert_int_equal(crypto_scrypt_params_of(line, &p), 0);
    assert_int_equal(p.log2n, 15);
    /* Out of bounds: never hashed, whatever the cost asked. */
    static const char *const params[] = {"ln=9,r=8,p=1",   "ln=21,r=8,p=1",  "ln=15,r=0,p=1",
                                         "ln=15,r=33,p=1", "ln=15,r=8,p=0",  "ln=15,r=8,p=17",
                                         "ln=20,r=8,p=1",  "ln=15,r=8",      "r=8,ln=15,p=1",
                                         "ln=,r=8,p=1",    "ln=150,r=8,p=1", "ln=-1,r=8,p=1"};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        snprintf(line, sizeof line, "$scrypt$%s$%s$%s", params[i], salt, hash);
        if (crypto_scrypt_params_of(line, &p) != -SIMAP_EINVAL)
            fail_msg("accepted %s", line);
        assert_int_equal(crypto_password_verify(line, "x", 1), -SIMAP_EINVAL);
    }
}

static void test_password_verify_refuses_malformed_stored_strings(void **state)
{
    (void)state;
    char *h = crypto_password_hash("0123456789ab", 12, &cheap);
    static const char *const bad[] = {
        "",
        "$scrypt$",
        "$2y$10$abcdefghijklmnopqrstuv",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$",
        "$scrypt$ln=10,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        "=",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAA!==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$"
        "=",
        "$SCRYPT$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (crypto_password_verify(bad[i], "0123456789ab", 12) != -SIMAP_EINVAL)
            fail_msg("accepted %s", bad[i]);
    assert_int_equal(crypto_password_verify(NULL, "x", 1), -SIMAP_EINVAL);
    /* Any one character changed: refused, or a mismatch, never a match. */
    size_t n = strlen(h);
    for (size_t i = 0; i < n; i++) {
        char *c = xstrdup(h);
        c[i] = c[i] == 'B' ? 'C' : 'B';
        if (crypto_password_verify(c, "0123456789ab", 12) == 1)
            fail_msg("matched with character %zu changed: %s", i, c);
        xfree(c);
    }
    xfree(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_sha256_matches_rfc4231_case_1),
        cmocka_unit_test(test_hmac_sha256_matches_rfc4231_case_2),
        cmocka_unit_test(test_hmac_sha256_matches_rfc4231_case_6_long_key),
        cmocka_unit_test(test_hmac_sha256_accepts_empty_key_and_message),
        cmocka_unit_test(test_sha1_and_sha256_match_fips_abc_vectors),
        cmocka_unit_test(test_sha1_in_pieces_matches_one_shot),
        cmocka_unit_test(test_standard_webhooks_signature_vector),
        cmocka_unit_test(test_b64_matches_rfc4648_vectors),
        cmocka_unit_test(test_b64url_omits_padding_and_decodes_both_forms),
        cmocka_unit_test(test_b64_decode_rejects_malformed_input),
        cmocka_unit_test(test_b64url_decode_rejects_malformed_input),
        cmocka_unit_test(test_b64_round_trips_across_chunk_boundaries),
        cmocka_unit_test(test_hex_round_trips_and_rejects_bad_digits),
        cmocka_unit_test(test_equal_compares_contents_and_lengths),
        cmocka_unit_test(test_token_is_base64url_of_requested_bytes_and_unique),
        cmocka_unit_test(test_random_fills_the_whole_buffer),
        cmocka_unit_test(test_key_id_is_first_8_hex_of_sha256_of_raw_key),
        cmocka_unit_test(test_keys_init_rejects_bad_keys_without_echoing_them),
        cmocka_unit_test(test_keys_init_tolerates_blanks_and_drops_current_from_old),
        cmocka_unit_test(test_encrypt_decrypt_round_trips_empty_small_and_100k),
        cmocka_unit_test(test_envelope_has_v1_layout_and_fresh_nonce),
        cmocka_unit_test(test_decrypt_rejects_tampered_nonce_ciphertext_and_tag),
        cmocka_unit_test(test_decrypt_rejects_tampered_key_id_and_version),
        cmocka_unit_test(test_decrypt_rejects_any_single_character_change),
        cmocka_unit_test(test_decrypt_rejects_wrong_aad),
        cmocka_unit_test(test_rotation_old_key_decrypts_and_needs_rotation),
        cmocka_unit_test(test_decrypt_rejects_garbage_without_crashing),
        cmocka_unit_test(test_password_hash_round_trips_and_refuses_a_wrong_password),
        cmocka_unit_test(test_password_hash_is_standard_scrypt_of_the_stored_salt),
        cmocka_unit_test(test_an_unmatchable_hash_has_the_cost_and_form_but_matches_nothing),
        cmocka_unit_test(test_password_hash_parameters_are_parsed_and_bounded),
        cmocka_unit_test(test_password_verify_refuses_malformed_stored_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
