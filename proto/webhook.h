/*
 * proto/webhook: the bytes of one webhook request, as the README's
 * "Webhooks" section fixes them; pure functions, no I/O, no clock (time is an argument).
 *
 * Body. An event's payload (core/schema.h "Event fields") is the JSON object
 * of the body without timestamp and signature; each attempt adds both:
 *
 *   {"timestamp":<ts>,<members of the payload>,"signature":"<hex>"}
 *
 *   signature = hex HMAC-SHA256(key = partner API key, msg = "<ts>" + sha1)
 *
 * exactly as the original SuperIMAP (a receiver of the original keeps
 * verifying), with <ts> the send time in Unix seconds as decimal text and
 * sha1 the event's sha1 field (40 hex digits).
 *
 * Headers (Standard Webhooks, https://www.standardwebhooks.com/):
 *
 *   webhook-id: <event id>
 *   webhook-timestamp: <ts>
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + ts + "." + body)>
 *
 * where key is the base64 text after "whsec_" in the partner's webhook
 * secret, decoded. During a secret rotation the header carries one
 * space-separated "v1,..." per secret.
 *
 * Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date in any
 * of its three forms (IMF-fixdate, RFC 850, asctime).
 *
 * Depends on libc, OpenSSL (SHA-256), core/err and core/buf. Every function is
 * thread-safe.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_WEBHOOK_H
#define PROTO_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

struct buf;

#define WEBHOOK_SHA1_HEX_LEN 40 /* the event's sha1 field */
#define WEBHOOK_SIG_HEX_LEN  64 /* the body's signature */
#define WEBHOOK_SECRET_MAX   64 /* bytes of a decoded whsec_ key we accept */
/* One "v1,<base64 of 32 bytes>" and its NUL. */
#define WEBHOOK_STD_SIG_LEN  (3 + 44 + 1)

/*
 * Writes the body signature, 64 lowercase hex digits and a NUL, into out:
 * hex HMAC-SHA256(key[0..keylen), decimal timestamp + sha1). sha1 is the
 * event's field as stored (normally 40 hex digits; any NUL-terminated text is
 * signed as given). Returns 0, -SIMAP_EINVAL (NULL argument or negative
 * timestamp) or -SIMAP_ECRYPTO (OpenSSL failed).
 */
int webhook_body_signature(const void *key, size_t keylen, int64_t timestamp, const char *sha1,
                           char out[WEBHOOK_SIG_HEX_LEN + 1]);

/*
 * Appends to out the body made from payload[0..len): a JSON object, possibly
 * surrounded by JSON whitespace, whose members are copied as they are between
 * a leading "timestamp" member and a trailing "signature" member (see above).
 * signature is the text of webhook_body_signature(). The payload is not
 * parsed (it was authenticated when it was decrypted); only its outer braces
 * are checked. Returns 0; -SIMAP_EINVAL when the payload is not enclosed in
 * { } or an argument is NULL; -SIMAP_ETOOBIG when out's max would be passed
 * (out is then restored to its length at entry).
 */
int webhook_body_build(const char *payload, size_t len, int64_t timestamp, const char *signature,
                       struct buf *out);

/*
 * Decodes a webhook secret "whsec_<base64>" (standard alphabet, padding
 * optional) into key, which holds cap bytes; the length goes to *keylen.
 * Returns 0, or -SIMAP_EINVAL (no whsec_ prefix, bad base64, empty key) or
 * -SIMAP_ETOOBIG (more than cap bytes). key may be partly written on error.
 */
int webhook_secret_decode(const char *secret, unsigned char *key, size_t cap, size_t *keylen);

/*
 * Writes "v1,<base64 HMAC-SHA256(key, id + "." + ts + "." + body)>" and a NUL
 * into out. The three parts are hashed in place (the body is not copied).
 * Returns 0, -SIMAP_EINVAL (NULL argument, negative timestamp) or
 * -SIMAP_ECRYPTO.
 */
int webhook_std_sign(const unsigned char *key, size_t keylen, const char *id, int64_t timestamp,
                     const char *body, size_t len, char out[WEBHOOK_STD_SIG_LEN]);

/*
 * Parses a Retry-After value[0..len) (surrounding spaces and tabs allowed)
 * received at now_ms (Unix ms) into the delay in ms at *delay_ms: the
 * seconds given, or the HTTP-date minus now (0 when the date is past).
 * Delays are capped at 10^9 s before conversion, so nothing overflows.
 * Returns 0, or -SIMAP_EINVAL for anything else (the caller then uses its
 * own schedule). Untrusted input: never reads past len, never allocates.
 */
int webhook_retry_after(const char *value, size_t len, int64_t now_ms, int64_t *delay_ms);

#endif
