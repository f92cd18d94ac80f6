/*
 * core/crypto: the only place superimap touches cryptography, all through
 * OpenSSL 3's EVP layer.
 *
 * - At-rest encryption of secrets (passwords, refresh tokens, API keys,
 *   webhook secrets, event payloads) with AES-256-GCM (NIST SP 800-38D) under
 *   a key ring: one current key that encrypts, and old keys that only decrypt,
 *   so SUPERIMAP_ENCRYPTION_KEY can be rotated without a flag day.
 * - SHA-1, SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104, RFC 4231).
 * - Base64 and base64url (RFC 4648 sections 4 and 5), hex: proto/codec's,
 *   under crypto_* names (never NULL: an impossible size aborts).
 * - Random bytes and tokens, constant-time comparison.
 * - Password hashes with scrypt (RFC 7914) for the admin accounts.
 *
 * Envelope of an encrypted value (one line of ASCII, safe in a Redis hash):
 *
 *   v1:<key id>:<nonce>:<ciphertext || tag>
 *    |      |       |            |
 *    |      |       |            +-- standard base64, padded; tag is the last 16 bytes
 *    |      |       +-- standard base64 of the 12-byte random nonce (16 chars)
 *    |      +-- first 8 hex digits of SHA-256(raw key): names the key, reveals nothing
 *    +-- format version
 *
 * The optional AAD (additional authenticated data) is not stored: the caller
 * passes the same string to encrypt and decrypt, binding a secret to its
 * record (the Redis key), so a ciphertext copied to another record fails.
 *
 * Every function is safe to call from any thread; a struct crypto_keys is
 * read-only after crypto_keys_init() and may be shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_CRYPTO_H
#define CORE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_KEY_LEN     32 /* AES-256 key, bytes */
#define CRYPTO_KEY_HEX_LEN 64 /* the same as hex digits */
#define CRYPTO_KEY_ID_LEN  8  /* hex digits of a key id */
#define CRYPTO_NONCE_LEN   12 /* GCM nonce, bytes */
#define CRYPTO_TAG_LEN     16 /* GCM tag, bytes */

/* Largest plaintext crypto_encrypt() takes and crypto_decrypt() returns. */
#define CRYPTO_MAX_PLAIN ((size_t)256 << 20)

#define CRYPTO_SHA1_LEN       20
#define CRYPTO_SHA1_HEX_LEN   40
#define CRYPTO_SHA256_LEN     32
#define CRYPTO_SHA256_HEX_LEN 64

/* ---- Key ring and envelope encryption ---- */

/* Opaque: the current key and any old keys, each with its id. */
struct crypto_keys;

/*
 * Builds a key ring from current_hex (exactly 64 hex digits, either case) and
 * old_hex_list (NULL or "" for none; otherwise comma-separated keys of the
 * same form, spaces around entries and empty entries ignored). An old key
 * equal to the current one is dropped. Key material never appears in err.
 * On success returns 0 and a new ring in *out (crypto_keys_free() it); on
 * failure returns -SIMAP_EINVAL, leaves *out NULL and writes why into err
 * (errlen may be 0).
 */
int crypto_keys_init(struct crypto_keys **out, const char *current_hex, const char *old_hex_list,
                     char *err, size_t errlen);

/* Wipes and frees the ring. Accepts NULL. */
void crypto_keys_free(struct crypto_keys *keys);

/* Returns the id (8 lowercase hex digits) of the current key, for logs.
 * Valid as long as keys is. */
const char *crypto_keys_current_id(const struct crypto_keys *keys);

/*
 * Encrypts n bytes of plain under the current key with a fresh random nonce
 * and returns the envelope as a new string in *out (xfree() it). aad may be
 * NULL, which is the same as "". Nonces are random, so one key should seal
 * at most 2^32 values (NIST SP 800-38D 8.3): rotate well before that.
 * Returns 0, -SIMAP_EINVAL (NULL argument), -SIMAP_ETOOBIG (n over
 * CRYPTO_MAX_PLAIN) or -SIMAP_ECRYPTO (OpenSSL failed); *out is NULL on error.
 */
int crypto_encrypt(const struct crypto_keys *keys, const void *plain, size_t n, const char *aad,
                   char **out);

/*
 * Opens an envelope made by crypto_encrypt() under the current key or any old
 * key, with the same aad (NULL is ""). On success returns 0, the plaintext as
 * a new buffer in *out with a NUL after its last byte (so text can be used as
 * a string; xfree() it, after crypto_wipe() if it is a secret), and its length
 * in *outlen (outlen may be NULL). Returns -SIMAP_ECRYPTO for anything else:
 * bad format or version, unknown key id, wrong aad, any tampering. Untrusted
 * input is fine: it never crashes and never allocates much more than
 * strlen(envelope). Returns -SIMAP_EINVAL for NULL arguments. *out is NULL on
 * error.
 */
int crypto_decrypt(const struct crypto_keys *keys, const char *envelope, const char *aad,
                   char **out, size_t *outlen);

/*
 * Returns 1 when envelope names an old key of the ring (decrypt it and encrypt
 * it again), 0 when it names the current key, -SIMAP_ECRYPTO when it is not a
 * v1 envelope or names a key the ring does not hold. Does not authenticate:
 * crypto_decrypt() still may fail.
 */
int crypto_needs_rotation(const struct crypto_keys *keys, const char *envelope);

/* ---- Hashes and MACs ---- */

/* One-shot digests of n bytes. The _hex variants write lowercase hex and a
 * NUL, so out holds CRYPTO_*_HEX_LEN + 1 bytes. Return 0 or -SIMAP_ECRYPTO
 * (OpenSSL failed; out is then undefined). */
int crypto_sha1_hex(const void *data, size_t n, char *out);
int crypto_sha256(const void *data, size_t n, unsigned char *out);
int crypto_sha256_hex(const void *data, size_t n, char *out);

/* A SHA-1 fed in pieces (a message hashed as it streams in, never kept
 * whole): one EVP context, made by crypto_sha1_new() (NULL when OpenSSL
 * fails) and released by crypto_sha1_free() (accepts NULL). */
struct crypto_sha1;
struct crypto_sha1 *crypto_sha1_new(void);
void crypto_sha1_free(struct crypto_sha1 *h);

/* Adds n bytes. 0 or -SIMAP_ECRYPTO. */
int crypto_sha1_update(struct crypto_sha1 *h, const void *data, size_t n);

/* How many bytes were added so far. */
uint64_t crypto_sha1_length(const struct crypto_sha1 *h);

/* Writes the lowercase hex digest of what was added and a NUL into out
 * (CRYPTO_SHA1_HEX_LEN + 1 bytes); h is spent (only crypto_sha1_free()
 * after). 0 or -SIMAP_ECRYPTO. */
int crypto_sha1_final_hex(struct crypto_sha1 *h, char *out);

/* HMAC-SHA256 of n bytes of data under a keylen-byte key (any length,
 * including 0). out holds CRYPTO_SHA256_LEN bytes, or CRYPTO_SHA256_HEX_LEN + 1
 * for hex. Return 0 or -SIMAP_ECRYPTO. */
int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                       unsigned char *out);
int crypto_hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t n, char *out);

/* ---- Encodings (proto/codec does the work) ---- */

/* Returns n bytes as standard, padded base64 (RFC 4648 section 4) in a new
 * string (xfree() it). Never NULL. */
char *crypto_b64_encode(const void *data, size_t n);

/* Returns n bytes as base64url without padding (RFC 4648 section 5) in a new
 * string (xfree() it). Never NULL. */
char *crypto_b64url_encode(const void *data, size_t n);

/*
 * Decodes len characters of standard base64. Strict: length a multiple of 4,
 * only A-Z a-z 0-9 + /, at most two '=' and only at the end, unused bits zero
 * (one canonical text per value), no whitespace. On success returns 0 and a
 * new buffer in *out (xfree() it) holding *outlen bytes followed by a NUL not
 * counted in *outlen. Returns -SIMAP_EINVAL on malformed input, *out NULL.
 */
int crypto_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* The same for base64url (- and _ for + and /), with or without the padding
 * '=' characters. */
int crypto_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* Writes n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void crypto_hex_encode(const void *data, size_t n, char *out);

/*
 * Decodes len hex digits (either case) into out, which holds cap bytes, and
 * sets *outlen to len / 2 (outlen may be NULL). Returns 0, -SIMAP_EINVAL (odd
 * length or a non-hex character) or -SIMAP_ETOOBIG (cap < len / 2); out may
 * be partly written on error.
 */
int crypto_hex_decode(const char *hex, size_t len, void *out, size_t cap, size_t *outlen);

/* ---- Randomness and comparison ---- */

/* Fills buf with n bytes from OpenSSL's CSPRNG. Aborts the process (with a
 * line on stderr) if the generator fails: nothing can go on without it. */
void crypto_random(void *buf, size_t n);

/* Returns nbytes random bytes as an unpadded base64url string (xfree() it),
 * e.g. 32 bytes for an API key (43 characters). Never NULL. */
char *crypto_token(size_t nbytes);

/* Returns 1 when the two byte strings are equal, else 0. The time taken
 * depends on the lengths but not on the contents (for MACs and tokens). */
int crypto_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Overwrites n bytes at p with zeros in a way the compiler cannot drop.
 * Accepts NULL with n 0. */
void crypto_wipe(void *p, size_t n);

/* Wipes the string *p (xmalloc'ed), frees it and sets *p to NULL. Accepts
 * *p NULL. */
void crypto_wipe_str(char **p);

/* ---- Password hashes (scrypt, RFC 7914) ---- */

/*
 * A stored password hash is one line of ASCII:
 *
 *   $scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>
 *
 * salt and hash in standard, padded base64; the salt is 16 random bytes
 * (16 to 64 accepted), the hash 32 bytes of scrypt(password, salt, N, r, p).
 * Accepted parameters: ln CRYPTO_SCRYPT_MIN_LOG2N to CRYPTO_SCRYPT_MAX_LOG2N,
 * r 1 to 32, p 1 to 16, and 128 * r * N at most 256 MiB (the memory one
 * hash takes).
 */
#define CRYPTO_SCRYPT_MIN_LOG2N 10
#define CRYPTO_SCRYPT_MAX_LOG2N 20
#define CRYPTO_SCRYPT_SALT_LEN  16
#define CRYPTO_SCRYPT_HASH_LEN  32

struct crypto_scrypt_params {
    int log2n; /* N = 2^log2n */
    int r;     /* block size */
    int p;     /* parallelism */
};

/* The parameters of a stored hash into *out. 0, or -SIMAP_EINVAL when stored
 * is not of the form above or its parameters are out of bounds. */
int crypto_scrypt_params_of(const char *stored, struct crypto_scrypt_params *out);

/* The stored form of n bytes of password under params, with a fresh salt: a
 * new string (xfree() it), or NULL when params are out of bounds or OpenSSL
 * failed. Takes 128 * r * N bytes and the time that costs. */
char *crypto_password_hash(const char *password, size_t n,
                           const struct crypto_scrypt_params *params);

/* A stored form of params whose salt and hash bytes are random: verifying
 * any password against it costs what a real hash of params costs and never
 * matches (a 2^-256 chance), without hashing anything now. A new string
 * (xfree() it), or NULL when params are out of bounds. */
char *crypto_password_unmatchable(const struct crypto_scrypt_params *params);

/* 1 when password hashes to stored (compared in constant time), 0 when it
 * does not, -SIMAP_EINVAL when stored is malformed (nothing is hashed),
 * -SIMAP_ECRYPTO when OpenSSL failed. */
int crypto_password_verify(const char *stored, const char *password, size_t n);

#endif
