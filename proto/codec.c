/*
 * proto/codec: base64, base64url and hex (RFC 4648), strict and lenient. See
 * codec.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/codec.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"

/* ---- Base64 ---- */

/*
 * EVP_EncodeBlock() and EVP_DecodeBlock() take int lengths and work on whole
 * groups, so both sides go in chunks of whole groups. EVP_DecodeBlock() is
 * lax: it skips leading whitespace, decodes '=' as if it were 'A' anywhere
 * and returns 3 bytes per group whatever the padding. The strict decoder
 * therefore strips the padding bytes itself and re-encodes each decoded
 * chunk: the input is accepted only if it is exactly the canonical encoding
 * of what it decoded to, which rejects bad characters, misplaced '=',
 * whitespace and non-zero unused bits in one rule.
 */
#define B64_CHUNK_BYTES 3072 /* 4096 characters */
#define B64_CHUNK_CHARS (B64_CHUNK_BYTES / 3 * 4)

size_t codec_b64_encode_to(const void *data, size_t n, char *out)
{
    const unsigned char *p = data;
    size_t o = 0;
    while (n > 0) {
        size_t chunk = n > B64_CHUNK_BYTES ? B64_CHUNK_BYTES : n;
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p, (int)chunk);
        p += chunk;
        n -= chunk;
    }
    out[o] = '\0';
    return o;
}

char *codec_b64_encode(const void *data, size_t n, size_t *outlen)
{
    if (n > (SIZE_MAX / 4 - 1) * 3)
        return NULL;
    char *out = xmalloc(CODEC_B64_LEN(n) + 1);
    size_t o = codec_b64_encode_to(data, n, out);
    if (outlen != NULL)
        *outlen = o;
    return out;
}

char *codec_b64url_encode(const void *data, size_t n, size_t *outlen)
{
    size_t len;
    char *s = codec_b64_encode(data, n, &len);
    if (s == NULL)
        return NULL;
    while (len > 0 && s[len - 1] == '=')
        len--;
    s[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+')
            s[i] = '-';
        else if (s[i] == '/')
            s[i] = '_';
    }
    if (outlen != NULL)
        *outlen = len;
    return s;
}

int codec_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    if (out != NULL)
        *out = NULL;
    if (s == NULL || out == NULL || outlen == NULL)
        return -SIMAP_EINVAL;
    if (len % 4 != 0)
        return -SIMAP_EINVAL;
    size_t pad = 0;
    if (len > 0 && s[len - 1] == '=')
        pad = (len > 1 && s[len - 2] == '=') ? 2 : 1;

    unsigned char *buf = xmalloc(len / 4 * 3 + 1);
    char check[B64_CHUNK_CHARS + 1];
    size_t o = 0;
    for (size_t i = 0; i < len; i += B64_CHUNK_CHARS) {
        size_t chunk = len - i > B64_CHUNK_CHARS ? B64_CHUNK_CHARS : len - i;
        int r = EVP_DecodeBlock(buf + o, (const unsigned char *)s + i, (int)chunk);
        if (r < 0 || (size_t)r != chunk / 4 * 3)
            goto bad;
        size_t got = (size_t)r;
        if (i + chunk == len)
            got -= pad;
        int e = EVP_EncodeBlock((unsigned char *)check, buf + o, (int)got);
        if (e < 0 || (size_t)e != chunk || memcmp(check, s + i, chunk) != 0)
            goto bad;
        o += got;
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
bad:
    xfree(buf);
    return -SIMAP_EINVAL;
}

int codec_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    if (out != NULL)
        *out = NULL;
    if (s == NULL || out == NULL || outlen == NULL)
        return -SIMAP_EINVAL;
    size_t padded = len;
    if (len % 4 == 1)
        return -SIMAP_EINVAL;
    if (len % 4 != 0) {
        if (s[len - 1] == '=') /* partly padded: neither form */
            return -SIMAP_EINVAL;
        padded = len + (4 - len % 4);
    }
    char *t = xmalloc(padded + 1);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+' || c == '/') { /* standard alphabet: not ours */
            xfree(t);
            return -SIMAP_EINVAL;
        }
        t[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    for (size_t i = len; i < padded; i++)
        t[i] = '=';
    t[padded] = '\0';
    int rc = codec_b64_decode(t, padded, out, outlen);
    xfree(t);
    return rc;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int is_mime_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Bit by bit rather than EVP_DecodeBlock(): the input has no group structure
 * to rely on (no padding, whitespace, '=' mid-word). */
int codec_b64_decode_loose(const char *s, size_t n, int flags, unsigned char *out, size_t cap,
                           size_t *outlen)
{
    if ((s == NULL && n > 0) || (out == NULL && cap > 0) || outlen == NULL)
        return -SIMAP_EINVAL;
    int mime = (flags & CODEC_B64_MIME) != 0;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (mime && c == '=') {
            acc = 0; /* the leftover bits of a padded quantum are zero */
            bits = 0;
            continue;
        }
        if (mime && is_mime_space(c))
            continue;
        int v = b64_value((unsigned char)c);
        if (v < 0)
            return -SIMAP_EINVAL;
        acc = (acc << 6 | (unsigned)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -SIMAP_ETOOBIG;
            out[o++] = (unsigned char)(acc >> bits & 0xFF);
        }
    }
    *outlen = o;
    return 0;
}

/* ---- Hex ---- */

static const char hex_digits[] = "0123456789abcdef";

int codec_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void codec_hex_encode(const void *data, size_t n, char *out)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[p[i] >> 4];
        out[2 * i + 1] = hex_digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

int codec_hex_decode(const char *hex, size_t len, void *out, size_t cap, size_t *outlen)
{
    unsigned char *o = out;
    if (hex == NULL || (out == NULL && cap > 0) || len % 2 != 0)
        return -SIMAP_EINVAL;
    if (cap < len / 2)
        return -SIMAP_ETOOBIG;
    for (size_t i = 0; i < len; i += 2) {
        int hi = codec_hex_value((unsigned char)hex[i]);
        int lo = codec_hex_value((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -SIMAP_EINVAL;
        o[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    if (outlen != NULL)
        *outlen = len / 2;
    return 0;
}
