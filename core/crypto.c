/*
 * core/crypto: AES-256-GCM envelopes under a rotating key ring, SHA-1,
 * SHA-256, HMAC-SHA256 (RFC 2104), base64 and base64url (RFC 4648), hex,
 * randomness and constant-time comparison. Everything cryptographic goes
 * through OpenSSL 3's EVP functions; base64 and hex are proto/codec's, kept
 * here under crypto_* names for the callers that use them with keys.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/crypto.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/err.h"
#include "proto/codec.h"

#define ENVELOPE_VERSION   "v1:"
#define NONCE_B64_LEN      16 /* base64 of 12 bytes: no padding needed */
#define MAX_CIPHER_B64_LEN CODEC_B64_LEN(CRYPTO_MAX_PLAIN + CRYPTO_TAG_LEN)

/* ---- Hex and base64: proto/codec under this module's names ---- */

void crypto_hex_encode(const void *data, size_t n, char *out)
{
    codec_hex_encode(data, n, out);
}

int crypto_hex_decode(const char *hex, size_t len, void *out, size_t cap, size_t *outlen)
{
    return codec_hex_decode(hex, len, out, cap, outlen);
}

/* Aborts rather than return NULL: no buffer of n bytes with a base64 length
 * beyond size_t can exist, so this is a caller bug. */
static char *must_encode(char *s, size_t n)
{
    if (s == NULL) {
        fprintf(stderr, "superimap: base64 of %zu bytes does not fit in memory\n", n);
        abort();
    }
    return s;
}

char *crypto_b64_encode(const void *data, size_t n)
{
    return must_encode(codec_b64_encode(data, n, NULL), n);
}

char *crypto_b64url_encode(const void *data, size_t n)
{
    return must_encode(codec_b64url_encode(data, n, NULL), n);
}

int crypto_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    return codec_b64_decode(s, len, out, outlen);
}

int crypto_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    return codec_b64url_decode(s, len, out, outlen);
}

/* ---- Randomness and comparison ---- */

void crypto_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1) {
            fprintf(stderr, "superimap: RAND_bytes failed: no usable random source\n");
            fflush(stderr);
            abort();
        }
        p += chunk;
        n -= (size_t)chunk;
    }
}

int crypto_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return 0;
    if (alen == 0)
        return 1;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

void crypto_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

void crypto_wipe_str(char **p)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, strlen(*p));
        xfree(*p);
        *p = NULL;
    }
}

/* ---- Hashes and MACs ---- */

/* EVP wants a valid pointer even for zero bytes. */
static const unsigned char empty_input[1];

static int digest(const EVP_MD *md, const void *data, size_t n, unsigned char *out)
{
    unsigned int len = 0;
    if (n == 0)
        data = empty_input;
    if (md == NULL || EVP_Digest(data, n, out, &len, md, NULL) != 1)
        return -SIMAP_ECRYPTO;
    return 0;
}

int crypto_sha1_hex(const void *data, size_t n, char *out)
{
    unsigned char md[CRYPTO_SHA1_LEN];
    int rc = digest(EVP_sha1(), data, n, md);
    if (rc == 0)
        crypto_hex_encode(md, sizeof(md), out);
    return rc;
}

struct crypto_sha1 {
    EVP_MD_CTX *ctx;
    uint64_t length;
};

struct crypto_sha1 *crypto_sha1_new(void)
{
    struct crypto_sha1 *h = xcalloc(1, sizeof *h);
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha1(), NULL) != 1) {
        crypto_sha1_free(h);
        return NULL;
    }
    return h;
}

void crypto_sha1_free(struct crypto_sha1 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    xfree(h);
}

int crypto_sha1_update(struct crypto_sha1 *h, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (EVP_DigestUpdate(h->ctx, data, n) != 1)
        return -SIMAP_ECRYPTO;
    h->length += n;
    return 0;
}

uint64_t crypto_sha1_length(const struct crypto_sha1 *h)
{
    return h->length;
}

int crypto_sha1_final_hex(struct crypto_sha1 *h, char *out)
{
    unsigned char md[CRYPTO_SHA1_LEN];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != sizeof md)
        return -SIMAP_ECRYPTO;
    crypto_hex_encode(md, sizeof md, out);
    return 0;
}

int crypto_sha256(const void *data, size_t n, unsigned char *out)
{
    return digest(EVP_sha256(), data, n, out);
}

int crypto_sha256_hex(const void *data, size_t n, char *out)
{
    unsigned char md[CRYPTO_SHA256_LEN];
    int rc = digest(EVP_sha256(), data, n, md);
    if (rc == 0)
        crypto_hex_encode(md, sizeof(md), out);
    return rc;
}

int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                       unsigned char *out)
{
    size_t len = 0;
    /* A NULL key would make the provider reuse a previous key (there is none)
     * and fail; an empty key is legal HMAC, so pass a valid empty one. */
    if (keylen == 0)
        key = empty_input;
    if (n == 0)
        data = empty_input;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, n, out, CRYPTO_SHA256_LEN,
                  &len) == NULL ||
        len != CRYPTO_SHA256_LEN)
        return -SIMAP_ECRYPTO;
    return 0;
}

int crypto_hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t n, char *out)
{
    unsigned char mac[CRYPTO_SHA256_LEN];
    int rc = crypto_hmac_sha256(key, keylen, data, n, mac);
    if (rc == 0)
        crypto_hex_encode(mac, sizeof(mac), out);
    return rc;
}

char *crypto_token(size_t nbytes)
{
    unsigned char stackbuf[64];
    unsigned char *raw = nbytes <= sizeof(stackbuf) ? stackbuf : xmalloc(nbytes);
    crypto_random(raw, nbytes);
    char *s = crypto_b64url_encode(raw, nbytes);
    crypto_wipe(raw, nbytes);
    if (raw != stackbuf)
        xfree(raw);
    return s;
}

/* ---- Key ring ---- */

struct crypto_key {
    unsigned char raw[CRYPTO_KEY_LEN];
    char id[CRYPTO_KEY_ID_LEN + 1]; /* first 8 hex digits of SHA-256(raw) */
};

/* Invariant: ids are unique across cur and old[]; no old key equals cur. */
struct crypto_keys {
    struct crypto_key cur;
    size_t nold;
    struct crypto_key old[]; /* decrypt only */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses [p, p+len) after trimming blanks into k. Returns 0 or -SIMAP_EINVAL. */
static int parse_key(const char *p, size_t len, struct crypto_key *k)
{
    unsigned char md[CRYPTO_SHA256_LEN];
    char idhex[CRYPTO_SHA256_HEX_LEN + 1];
    while (len > 0 && is_space(*p)) {
        p++;
        len--;
    }
    while (len > 0 && is_space(p[len - 1]))
        len--;
    if (len != CRYPTO_KEY_HEX_LEN || crypto_hex_decode(p, len, k->raw, sizeof(k->raw), NULL) != 0)
        return -SIMAP_EINVAL;
    if (crypto_sha256(k->raw, sizeof(k->raw), md) != 0)
        return -SIMAP_EINVAL;
    crypto_hex_encode(md, CRYPTO_KEY_ID_LEN / 2, idhex);
    memcpy(k->id, idhex, CRYPTO_KEY_ID_LEN + 1);
    return 0;
}

static int is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_space(p[i]))
            return 0;
    return 1;
}

int crypto_keys_init(struct crypto_keys **out, const char *current_hex, const char *old_hex_list,
                     char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL) {
        set_err(err, errlen, "no output pointer");
        return -SIMAP_EINVAL;
    }
    *out = NULL;
    if (current_hex == NULL) {
        set_err(err, errlen, "no current key");
        return -SIMAP_EINVAL;
    }

    size_t maxold = 0;
    if (old_hex_list != NULL && old_hex_list[0] != '\0') {
        maxold = 1;
        for (const char *c = old_hex_list; *c; c++)
            maxold += *c == ',';
    }
    struct crypto_keys *keys = xcalloc(1, sizeof(*keys) + maxold * sizeof(keys->old[0]));
    if (parse_key(current_hex, strlen(current_hex), &keys->cur) != 0) {
        set_err(err, errlen,
                "current key must be %zu hex digits (32 bytes, e.g. from openssl rand -hex 32)",
                (size_t)CRYPTO_KEY_HEX_LEN);
        goto fail;
    }

    const char *p = old_hex_list;
    for (size_t entry = 1; p != NULL && *p != '\0'; entry++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!is_blank(p, len)) {
            struct crypto_key *k = &keys->old[keys->nold];
            if (parse_key(p, len, k) != 0) {
                set_err(err, errlen, "old key %zu must be 64 hex digits (32 bytes)", entry);
                goto fail;
            }
            if (CRYPTO_memcmp(k->raw, keys->cur.raw, CRYPTO_KEY_LEN) == 0) {
                crypto_wipe(k, sizeof(*k)); /* the current key is not also old */
            } else {
                int clash = strcmp(k->id, keys->cur.id) == 0;
                for (size_t j = 0; j < keys->nold && !clash; j++)
                    clash = strcmp(k->id, keys->old[j].id) == 0;
                if (clash) {
                    set_err(err, errlen,
                            "old key %zu repeats another key or shares its key id: remove it",
                            entry);
                    goto fail;
                }
                keys->nold++;
            }
        }
        p = comma ? comma + 1 : NULL;
    }
    *out = keys;
    return 0;
fail:
    crypto_wipe(keys, sizeof(*keys) + maxold * sizeof(keys->old[0]));
    xfree(keys);
    return -SIMAP_EINVAL;
}

void crypto_keys_free(struct crypto_keys *keys)
{
    if (keys == NULL)
        return;
    crypto_wipe(keys, sizeof(*keys) + keys->nold * sizeof(keys->old[0]));
    xfree(keys);
}

const char *crypto_keys_current_id(const struct crypto_keys *keys)
{
    return keys->cur.id;
}

/* Returns the key called id (len bytes, not NUL-terminated), or NULL. */
static const struct crypto_key *find_key(const struct crypto_keys *keys, const char *id, size_t len,
                                         int *is_old)
{
    if (len != CRYPTO_KEY_ID_LEN)
        return NULL;
    if (memcmp(keys->cur.id, id, len) == 0) {
        *is_old = 0;
        return &keys->cur;
    }
    for (size_t i = 0; i < keys->nold; i++) {
        if (memcmp(keys->old[i].id, id, len) == 0) {
            *is_old = 1;
            return &keys->old[i];
        }
    }
    return NULL;
}

/* ---- AES-256-GCM ---- */

/* Feeds aad to ctx in int-sized pieces. Returns 1 on success (OpenSSL style). */
static int feed_aad(EVP_CIPHER_CTX *ctx, const char *aad, int encrypting)
{
    size_t n = aad ? strlen(aad) : 0;
    const unsigned char *p = (const unsigned char *)aad;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n, len = 0;
        int ok = encrypting ? EVP_EncryptUpdate(ctx, NULL, &len, p, chunk)
                            : EVP_DecryptUpdate(ctx, NULL, &len, p, chunk);
        if (ok != 1)
            return 0;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 1;
}

/* Encrypts n bytes (n <= CRYPTO_MAX_PLAIN < INT_MAX) into out and writes the
 * tag; GCM is a stream mode, so out has n bytes too. */
static int gcm_seal(const struct crypto_key *k, const unsigned char *nonce, const char *aad,
                    const unsigned char *in, size_t n, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0, ok;
    if (ctx == NULL)
        return -SIMAP_ECRYPTO;
    ok = EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), k->raw, nonce, NULL) == 1 &&
         feed_aad(ctx, aad, 1) && (n == 0 || EVP_EncryptUpdate(ctx, out, &len, in, (int)n) == 1) &&
         (size_t)len == n && EVP_EncryptFinal_ex(ctx, out + len, &fin) == 1 && fin == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -SIMAP_ECRYPTO;
}

/* Decrypts n bytes and checks the tag. Returns 0 or -SIMAP_ECRYPTO. */
static int gcm_open(const struct crypto_key *k, const unsigned char *nonce, const char *aad,
                    const unsigned char *in, size_t n, const unsigned char *tag, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char tagbuf[CRYPTO_TAG_LEN];
    int len = 0, fin = 0, ok;
    if (ctx == NULL)
        return -SIMAP_ECRYPTO;
    memcpy(tagbuf, tag, sizeof(tagbuf)); /* the ctrl takes a non-const pointer */
    ok = EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), k->raw, nonce, NULL) == 1 &&
         feed_aad(ctx, aad, 0) && (n == 0 || EVP_DecryptUpdate(ctx, out, &len, in, (int)n) == 1) &&
         (size_t)len == n &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN, tagbuf) == 1 &&
         EVP_DecryptFinal_ex(ctx, out + len, &fin) == 1 && fin == 0;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -SIMAP_ECRYPTO;
}

/* ---- Envelopes ---- */

int crypto_encrypt(const struct crypto_keys *keys, const void *plain, size_t n, const char *aad,
                   char **out)
{
    if (out != NULL)
        *out = NULL;
    if (keys == NULL || out == NULL || (plain == NULL && n > 0))
        return -SIMAP_EINVAL;
    if (n > CRYPTO_MAX_PLAIN)
        return -SIMAP_ETOOBIG;

    unsigned char nonce[CRYPTO_NONCE_LEN];
    crypto_random(nonce, sizeof(nonce));
    unsigned char *ct = xmalloc(n + CRYPTO_TAG_LEN);
    if (gcm_seal(&keys->cur, nonce, aad, plain, n, ct, ct + n) != 0) {
        crypto_wipe(ct, n + CRYPTO_TAG_LEN); /* may hold partial plaintext state */
        xfree(ct);
        return -SIMAP_ECRYPTO;
    }
    /* One allocation for the whole envelope, base64 written in place: large
     * payloads (25 MiB mails) would otherwise be copied three times. */
    size_t vlen = strlen(ENVELOPE_VERSION);
    size_t nlen = CODEC_B64_LEN(sizeof(nonce)), clen = CODEC_B64_LEN(n + CRYPTO_TAG_LEN);
    char *env = xmalloc(vlen + CRYPTO_KEY_ID_LEN + 1 + nlen + 1 + clen + 1);
    char *p = env;
    memcpy(p, ENVELOPE_VERSION, vlen);
    p += vlen;
    memcpy(p, keys->cur.id, CRYPTO_KEY_ID_LEN);
    p += CRYPTO_KEY_ID_LEN;
    *p++ = ':';
    p += codec_b64_encode_to(nonce, sizeof(nonce), p);
    *p++ = ':';
    codec_b64_encode_to(ct, n + CRYPTO_TAG_LEN, p);
    xfree(ct);
    *out = env;
    return 0;
}

/* The three fields of an envelope, pointing into it. */
struct envelope {
    const char *id;
    size_t idlen;
    const char *nonce;
    size_t noncelen;
    const char *ct;
    size_t ctlen;
};

/* Splits "v1:<id>:<nonce>:<ct>" without decoding. Returns 0 or -SIMAP_ECRYPTO. */
static int split_envelope(const char *s, struct envelope *e)
{
    size_t vlen = strlen(ENVELOPE_VERSION);
    if (strncmp(s, ENVELOPE_VERSION, vlen) != 0)
        return -SIMAP_ECRYPTO;
    e->id = s + vlen;
    const char *c1 = strchr(e->id, ':');
    if (c1 == NULL)
        return -SIMAP_ECRYPTO;
    e->idlen = (size_t)(c1 - e->id);
    e->nonce = c1 + 1;
    const char *c2 = strchr(e->nonce, ':');
    if (c2 == NULL)
        return -SIMAP_ECRYPTO;
    e->noncelen = (size_t)(c2 - e->nonce);
    e->ct = c2 + 1;
    e->ctlen = strlen(e->ct);
    return 0;
}

int crypto_decrypt(const struct crypto_keys *keys, const char *envelope, const char *aad,
                   char **out, size_t *outlen)
{
    struct envelope e;
    const struct crypto_key *k;
    unsigned char *nonce = NULL, *ct = NULL, *plain;
    size_t nn = 0, cn = 0, n;
    int is_old = 0, rc = -SIMAP_ECRYPTO;

    if (out != NULL)
        *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    if (keys == NULL || envelope == NULL || out == NULL)
        return -SIMAP_EINVAL;
    if (split_envelope(envelope, &e) != 0)
        return -SIMAP_ECRYPTO;
    k = find_key(keys, e.id, e.idlen, &is_old);
    /* Bound the sizes before decoding allocates anything. */
    if (k == NULL || e.noncelen != NONCE_B64_LEN || e.ctlen > MAX_CIPHER_B64_LEN)
        return -SIMAP_ECRYPTO;
    if (crypto_b64_decode(e.nonce, e.noncelen, &nonce, &nn) != 0 || nn != CRYPTO_NONCE_LEN)
        goto done;
    if (crypto_b64_decode(e.ct, e.ctlen, &ct, &cn) != 0 || cn < CRYPTO_TAG_LEN)
        goto done;

    n = cn - CRYPTO_TAG_LEN;
    plain = xmalloc(n + 1);
    if (gcm_open(k, nonce, aad, ct, n, ct + n, plain) != 0) {
        crypto_wipe(plain, n + 1); /* unauthenticated plaintext must not leak */
        xfree(plain);
        goto done;
    }
    plain[n] = '\0';
    *out = (char *)plain;
    if (outlen != NULL)
        *outlen = n;
    rc = 0;
done:
    xfree(nonce);
    xfree(ct);
    return rc;
}

int crypto_needs_rotation(const struct crypto_keys *keys, const char *envelope)
{
    struct envelope e;
    int is_old = 0;
    if (keys == NULL || envelope == NULL || split_envelope(envelope, &e) != 0 ||
        find_key(keys, e.id, e.idlen, &is_old) == NULL)
        return -SIMAP_ECRYPTO;
    return is_old;
}

/* ---- Password hashes (scrypt) ---- */

#define SCRYPT_MAX_MEM ((uint64_t)256 << 20)
#define SCRYPT_PREFIX  "$scrypt$"

static int scrypt_params_ok(const struct crypto_scrypt_params *p)
{
    if (p->log2n < CRYPTO_SCRYPT_MIN_LOG2N || p->log2n > CRYPTO_SCRYPT_MAX_LOG2N || p->r < 1 ||
        p->r > 32 || p->p < 1 || p->p > 16)
        return 0;
    return (uint64_t)128 * (uint64_t)p->r * ((uint64_t)1 << p->log2n) <= SCRYPT_MAX_MEM;
}

/* A decimal number of 1 to 2 digits at *s, advancing *s; -1 when there is none. */
static int small_number(const char **s)
{
    int v = 0, digits = 0;
    while (**s >= '0' && **s <= '9' && digits < 3) {
        v = v * 10 + (**s - '0');
        (*s)++;
        digits++;
    }
    return digits == 0 || digits > 2 ? -1 : v;
}

/* Splits stored into its parameters and the base64 of salt and hash. */
static int scrypt_split(const char *stored, struct crypto_scrypt_params *p, const char **salt,
                        size_t *saltlen, const char **hash, size_t *hashlen)
{
    if (stored == NULL || strncmp(stored, SCRYPT_PREFIX, strlen(SCRYPT_PREFIX)) != 0)
        return -SIMAP_EINVAL;
    const char *s = stored + strlen(SCRYPT_PREFIX);
    if (strncmp(s, "ln=", 3) != 0)
        return -SIMAP_EINVAL;
    s += 3;
    p->log2n = small_number(&s);
    if (strncmp(s, ",r=", 3) != 0)
        return -SIMAP_EINVAL;
    s += 3;
    p->r = small_number(&s);
    if (strncmp(s, ",p=", 3) != 0)
        return -SIMAP_EINVAL;
    s += 3;
    p->p = small_number(&s);
    if (*s != '$' || !scrypt_params_ok(p))
        return -SIMAP_EINVAL;
    *salt = s + 1;
    const char *dollar = strchr(*salt, '$');
    if (dollar == NULL)
        return -SIMAP_EINVAL;
    *saltlen = (size_t)(dollar - *salt);
    *hash = dollar + 1;
    *hashlen = strlen(*hash);
    /* 16 to 64 bytes of salt, 32 of hash, as base64. */
    if (*saltlen < 24 || *saltlen > 88 || *hashlen != 44)
        return -SIMAP_EINVAL;
    return 0;
}

int crypto_scrypt_params_of(const char *stored, struct crypto_scrypt_params *out)
{
    const char *salt, *hash;
    size_t sl, hl;
    return scrypt_split(stored, out, &salt, &sl, &hash, &hl);
}

static int scrypt_derive(const char *password, size_t n, const unsigned char *salt, size_t saltlen,
                         const struct crypto_scrypt_params *p,
                         unsigned char out[CRYPTO_SCRYPT_HASH_LEN])
{
    uint64_t N = (uint64_t)1 << p->log2n;
    /* OpenSSL's bound counts V (128 r (N + 2)) and B (128 r p); its default
     * of 32 MiB is just under what ln=15, r=8 needs. */
    uint64_t maxmem = (uint64_t)128 * (uint64_t)p->r * (N + 2 + (uint64_t)p->p) + (1u << 20);
    return EVP_PBE_scrypt(password, n, salt, saltlen, N, (uint64_t)p->r, (uint64_t)p->p, maxmem,
                          out, CRYPTO_SCRYPT_HASH_LEN) == 1
               ? 0
               : -SIMAP_ECRYPTO;
}

/* The stored form of params, salt and hash (wiped). */
static char *scrypt_format(const struct crypto_scrypt_params *params,
                           const unsigned char salt[CRYPTO_SCRYPT_SALT_LEN],
                           unsigned char hash[CRYPTO_SCRYPT_HASH_LEN])
{
    char *s64 = crypto_b64_encode(salt, CRYPTO_SCRYPT_SALT_LEN);
    char *h64 = crypto_b64_encode(hash, CRYPTO_SCRYPT_HASH_LEN);
    crypto_wipe(hash, CRYPTO_SCRYPT_HASH_LEN);
    size_t cap = strlen(s64) + strlen(h64) + 64;
    char *out = xmalloc(cap);
    snprintf(out, cap, SCRYPT_PREFIX "ln=%d,r=%d,p=%d$%s$%s", params->log2n, params->r, params->p,
             s64, h64);
    xfree(s64);
    xfree(h64);
    return out;
}

char *crypto_password_hash(const char *password, size_t n,
                           const struct crypto_scrypt_params *params)
{
    if (password == NULL || params == NULL || !scrypt_params_ok(params))
        return NULL;
    unsigned char salt[CRYPTO_SCRYPT_SALT_LEN], hash[CRYPTO_SCRYPT_HASH_LEN];
    crypto_random(salt, sizeof salt);
    if (scrypt_derive(password, n, salt, sizeof salt, params, hash) < 0)
        return NULL;
    return scrypt_format(params, salt, hash);
}

char *crypto_password_unmatchable(const struct crypto_scrypt_params *params)
{
    if (params == NULL || !scrypt_params_ok(params))
        return NULL;
    unsigned char salt[CRYPTO_SCRYPT_SALT_LEN], hash[CRYPTO_SCRYPT_HASH_LEN];
    crypto_random(salt, sizeof salt);
    crypto_random(hash, sizeof hash);
    return scrypt_format(params, salt, hash);
}

int crypto_password_verify(const char *stored, const char *password, size_t n)
{
    struct crypto_scrypt_params p;
    const char *s64, *h64;
    size_t sl, hl;
    if (password == NULL || scrypt_split(stored, &p, &s64, &sl, &h64, &hl) < 0)
        return -SIMAP_EINVAL;
    unsigned char *salt = NULL, *want = NULL;
    size_t saltlen = 0, wantlen = 0;
    int rc = -SIMAP_EINVAL;
    if (crypto_b64_decode(s64, sl, &salt, &saltlen) == 0 &&
        crypto_b64_decode(h64, hl, &want, &wantlen) == 0 && wantlen == CRYPTO_SCRYPT_HASH_LEN) {
        unsigned char got[CRYPTO_SCRYPT_HASH_LEN];
        rc = scrypt_derive(password, n, salt, saltlen, &p, got);
        if (rc == 0)
            rc = crypto_equal(got, sizeof got, want, wantlen);
        crypto_wipe(got, sizeof got);
    }
    xfree(salt);
    xfree(want);
    return rc;
}
