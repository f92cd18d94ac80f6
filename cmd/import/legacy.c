/*
 * cmd/import/legacy: opens the original's Gibberish AES-256-CBC columns (see
 * legacy.h). A value is Gibberish's when its base64 decodes to "Salted__",
 * 8 bytes of salt and whole blocks of ciphertext; anything else is a legacy
 * plaintext row, which the original also read as it was (its decrypt
 * failures fell back to the raw value).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/import/legacy.h"

#include <string.h>

#include <openssl/evp.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "proto/codec.h"

#define SALT_MAGIC     "Salted__"
#define SALT_MAGIC_B64 "U2FsdGVkX1" /* its base64, as every value starts */
#define SALT_LEN       8
#define BLOCK          16

/* Value bigger than any secret the original stored: not decoded. */
#define VALUE_MAX (64u << 10)

/* MIME base64 (lines of 64 or 60 characters, as openssl enc -a and Ruby's
 * Base64.encode64 write it) of n bytes into a new buffer: the line breaks
 * dropped, the rest strict base64 (proto/codec). -1 when it is not. */
static int decode_mime(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    char *joined = xmalloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\n' && s[i] != '\r')
            joined[m++] = s[i];
    int rc = codec_b64_decode(joined, m, out, outlen);
    xfree(joined);
    return rc < 0 ? -1 : 0;
}

/* Decrypts the ciphertext after magic and salt; -1 when it does not open. */
/* 1 when p[0..n) is UTF-8 text without control characters but tab and line
 * breaks, as every password and token the original stored. */
static int is_text(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
            return 0;
    }
    return json_utf8_valid(p, n);
}

static int decrypt(const char *password, size_t passlen, const unsigned char *salt,
                   const unsigned char *ct, size_t n, char **out)
{
    unsigned char key[32], iv[BLOCK];
    if (EVP_BytesToKey(EVP_aes_256_cbc(), EVP_md5(), salt, (const unsigned char *)password,
                       (int)passlen, 1, key, iv) != (int)sizeof key)
        return -1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    char *plain = xmalloc(n + BLOCK + 1);
    int len = 0, fin = 0, ok = 0;
    if (ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) == 1 &&
        EVP_DecryptUpdate(ctx, (unsigned char *)plain, &len, ct, (int)n) == 1 &&
        EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + len, &fin) == 1)
        ok = 1;
    EVP_CIPHER_CTX_free(ctx);
    crypto_wipe(key, sizeof key);
    crypto_wipe(iv, sizeof iv);
    size_t total = (size_t)len + (size_t)fin;
    plain[total] = '\0';
    /* Gibberish has no MAC: a wrong key passes the padding check about once
     * in 256 values, and gives bytes that are not a password or a token. */
    if (!ok || !is_text(plain, total)) {
        crypto_wipe(plain, n + BLOCK + 1);
        xfree(plain);
        return -1;
    }
    *out = plain;
    return 0;
}

enum legacy_kind legacy_open(const char *password, size_t passlen, const char *value, char **out)
{
    *out = NULL;
    size_t n = strlen(value);
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    if (n > VALUE_MAX || decode_mime(value, n, &raw, &rawlen) < 0 ||
        rawlen < sizeof SALT_MAGIC - 1 + SALT_LEN ||
        memcmp(raw, SALT_MAGIC, sizeof SALT_MAGIC - 1) != 0) {
        xfree(raw);
        /* "Salted__" in base64, but not decodable: damaged, not plaintext. */
        if (strncmp(value, SALT_MAGIC_B64, sizeof SALT_MAGIC_B64 - 1) == 0)
            return LEGACY_BROKEN;
        *out = xstrdup(value);
        return LEGACY_PLAIN;
    }
    const unsigned char *salt = raw + sizeof SALT_MAGIC - 1;
    const unsigned char *ct = salt + SALT_LEN;
    size_t ctlen = rawlen - (sizeof SALT_MAGIC - 1) - SALT_LEN;
    int rc = -1;
    if (ctlen > 0 && ctlen % BLOCK == 0)
        rc = decrypt(password, passlen, salt, ct, ctlen, out);
    xfree(raw);
    return rc == 0 ? LEGACY_DECRYPTED : LEGACY_BROKEN;
}
