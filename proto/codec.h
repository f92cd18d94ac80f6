/*
 * proto/codec: the one implementation of base64 (RFC 4648 section 4),
 * base64url (section 5) and hex (section 8) in the tree. Encoding and the
 * strict decoders go through OpenSSL's EVP_EncodeBlock()/EVP_DecodeBlock();
 * the loose decoder is the one lenient reader of mail (RFC 2045 base64,
 * RFC 2047 "B" words) and of Standard Webhooks secrets.
 *
 * It lives in proto/ because proto/ needs it (mime_words, envelope, webhook)
 * and may depend only on libc, OpenSSL, yajl and core/{err,buf,json}; core/
 * (crypto) and cmd/ may use proto/. Pure functions: no I/O, no state.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_CODEC_H
#define PROTO_CODEC_H

#include <stddef.h>

/* Characters of the standard base64 of n bytes, padding included. */
#define CODEC_B64_LEN(n) ((((n) + 2) / 3) * 4)

/* ---- Base64 ---- */

/*
 * Returns n bytes as standard, padded base64 (RFC 4648 section 4) in a new
 * NUL-terminated string (xfree() it), its length in *outlen (may be NULL),
 * or NULL when that length would not fit a size_t.
 */
char *codec_b64_encode(const void *data, size_t n, size_t *outlen);

/* Writes the standard, padded base64 of n bytes and a NUL into out, which
 * holds CODEC_B64_LEN(n) + 1 bytes; returns CODEC_B64_LEN(n). For callers
 * that place the text inside a larger buffer. */
size_t codec_b64_encode_to(const void *data, size_t n, char *out);

/* The same as base64url without padding (RFC 4648 section 5). */
char *codec_b64url_encode(const void *data, size_t n, size_t *outlen);

/*
 * Decodes len characters of standard base64. Strict: length a multiple of 4,
 * padding only at the end, no whitespace, unused bits zero (the input must be
 * the canonical encoding of its bytes). On success returns 0 and a new buffer
 * in *out (NUL-terminated for convenience; xfree() it) with its length in
 * *outlen; otherwise -SIMAP_EINVAL and *out NULL.
 */
int codec_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* The same for base64url (- and _ for + and /), with or without the padding
 * (RFC 4648 section 5 allows both); the standard alphabet's + and / are
 * refused. */
int codec_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* Flags of codec_b64_decode_loose(). */
#define CODEC_B64_MIME 1 /* skip SP, HTAB, CR, LF; "=" anywhere ends a quantum */

/*
 * Decodes n characters of standard-alphabet base64 leniently into out (cap
 * bytes): no length or padding rule and unused bits ignored, so unpadded
 * input decodes. Without CODEC_B64_MIME every character must be in the
 * alphabet (the caller strips trailing padding); with it whitespace is
 * skipped and each "=" drops the bits of the quantum in progress, so words
 * made of padded chunks ("aGk=aGk=") decode. Returns 0 with the byte count in
 * *outlen, -SIMAP_EINVAL at a character it does not accept, or -SIMAP_ETOOBIG
 * when the output would exceed cap (at most n * 3 / 4 bytes are written).
 */
int codec_b64_decode_loose(const char *s, size_t n, int flags, unsigned char *out, size_t cap,
                           size_t *outlen);

/* ---- Hex ---- */

/* Writes n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void codec_hex_encode(const void *data, size_t n, char *out);

/*
 * Decodes len hex digits (either case) into out, which holds cap bytes, and
 * stores the byte count in *outlen (may be NULL). Returns 0, -SIMAP_EINVAL (odd
 * length or a non-hex character) or -SIMAP_ETOOBIG (cap < len / 2); out may
 * be partly written on error.
 */
int codec_hex_decode(const char *hex, size_t len, void *out, size_t cap, size_t *outlen);

/* Returns the value of the hex digit c (either case), or -1. */
int codec_hex_value(int c);

#endif
