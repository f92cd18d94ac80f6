/*
 * core/keys: API keys, webhook secrets and sealed fields (see keys.h). An
 * API key is 32 random bytes, base64url (43 characters); Redis never holds
 * it in clear: si:apikey:<sha256 hex> names its partner and the partner hash
 * keeps it encrypted.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/keys.h"

#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "core/err.h"

#define API_KEY_LEN      43 /* base64url of 32 bytes, unpadded */
#define ORIGINAL_KEY_LEN 20 /* SecureRandom.hex(10) */

int keys_lookup(const char *api_key, char lookup[SCHEMA_KEY_MAX])
{
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    if (crypto_sha256_hex(api_key, strlen(api_key), hex) < 0)
        return -SIMAP_ECRYPTO;
    schema_key_apikey(lookup, hex);
    return 0;
}

char *keys_new_api_key(char lookup[SCHEMA_KEY_MAX])
{
    char *key = crypto_token(32);
    if (keys_lookup(key, lookup) < 0)
        lookup[0] = '\0';
    return key;
}

int keys_api_key_acceptable(const char *api_key)
{
    size_t n = strlen(api_key);
    if (n == ORIGINAL_KEY_LEN)
        return strspn(api_key, "0123456789abcdef") == n;
    if (n != API_KEY_LEN)
        return 0;
    return strspn(api_key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

char *keys_new_webhook_secret(void)
{
    unsigned char raw[32];
    crypto_random(raw, sizeof raw);
    char *b64 = crypto_b64_encode(raw, sizeof raw);
    crypto_wipe(raw, sizeof raw);
    size_t n = strlen(b64);
    char *s = xmalloc(n + 7);
    memcpy(s, "whsec_", 6);
    memcpy(s + 6, b64, n + 1);
    crypto_wipe(b64, n);
    xfree(b64);
    return s;
}

/* Opens envelope with aad: a new string, or NULL when empty or unopenable. */
static char *open_aad(const struct crypto_keys *keys, const char *aad, const char *envelope)
{
    char *plain = NULL;
    if (envelope == NULL || *envelope == '\0' ||
        crypto_decrypt(keys, envelope, aad, &plain, NULL) < 0)
        return NULL;
    return plain;
}

char *keys_open_partner(const struct crypto_keys *keys, const char *pid, const char *field,
                        const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    return schema_aad_partner(aad, pid, field) < 0 ? NULL : open_aad(keys, aad, envelope);
}

/* Encrypts plain under aad; "" stays "" when empty_stays is set. */
static char *seal(const struct crypto_keys *keys, const char *aad, const char *plain,
                  int empty_stays)
{
    if (empty_stays && *plain == '\0')
        return xstrdup("");
    char *env = NULL;
    if (crypto_encrypt(keys, plain, strlen(plain), aad, &env) < 0)
        return NULL;
    return env;
}

char *keys_seal_partner(const struct crypto_keys *keys, const char *pid, const char *field,
                        const char *plain)
{
    char aad[SCHEMA_KEY_MAX];
    if (schema_aad_partner(aad, pid, field) < 0)
        return NULL;
    return seal(keys, aad, plain, 0);
}

/* The userinfo of url: its offset in *at and its length (0 when none):
 * what lies between "scheme://" and the last '@' of the authority. */
static size_t url_userinfo(const char *url, size_t *at)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return 0;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    const char *last = NULL;
    for (const char *q = p; q < p + auth; q++)
        if (*q == '@')
            last = q;
    if (last == NULL)
        return 0;
    *at = (size_t)(p - url);
    return (size_t)(last - p);
}

/* The "<field>_userinfo" name. */
static int userinfo_field(char out[SCHEMA_KEY_MAX], const char *field)
{
    int n = snprintf(out, SCHEMA_KEY_MAX, "%s_userinfo", field);
    return n > 0 && n < SCHEMA_KEY_MAX ? 0 : -SIMAP_EINVAL;
}

int keys_seal_partner_url(const struct crypto_keys *keys, const char *pid, const char *field,
                          const char *url, char **shown, char **sealed)
{
    *shown = *sealed = NULL;
    char name[SCHEMA_KEY_MAX];
    if (userinfo_field(name, field) < 0)
        return -SIMAP_ECRYPTO;
    size_t at = 0, len = url_userinfo(url, &at);
    if (len == 0 && (at == 0 || url[at] != '@')) {
        *shown = xstrdup(url);
        *sealed = xstrdup("");
        return 0;
    }
    char *info = xmalloc(len + 1);
    memcpy(info, url + at, len);
    info[len] = '\0';
    *sealed = keys_seal_partner(keys, pid, name, info);
    const char *colon = memchr(url + at, ':', len);
    size_t keep = colon != NULL ? (size_t)(colon - (url + at)) + 1 : 0; /* "user:" */
    crypto_wipe(info, len);
    xfree(info);
    if (*sealed == NULL)
        return -SIMAP_ECRYPTO;
    size_t rest = strlen(url + at + len);
    *shown = xmalloc(at + keep + 3 + rest + 1);
    memcpy(*shown, url, at + keep);
    memcpy(*shown + at + keep, "***", 3);
    memcpy(*shown + at + keep + 3, url + at + len, rest + 1);
    return 0;
}

char *keys_open_partner_url(const struct crypto_keys *keys, const char *pid, const char *field,
                            const char *shown, const char *sealed)
{
    if (sealed == NULL || *sealed == '\0')
        return xstrdup(shown);
    char name[SCHEMA_KEY_MAX];
    size_t at = 0, len = url_userinfo(shown, &at);
    if (userinfo_field(name, field) < 0 || at == 0)
        return NULL;
    char *info = keys_open_partner(keys, pid, name, sealed);
    if (info == NULL)
        return NULL;
    size_t ilen = strlen(info), rest = strlen(shown + at + len);
    char *url = xmalloc(at + ilen + rest + 1);
    memcpy(url, shown, at);
    memcpy(url + at, info, ilen);
    memcpy(url + at + ilen, shown + at + len, rest + 1);
    keys_wipe_free(info);
    return url;
}

/* The AAD of user uid's encrypted field ("secret" or "oauth2_access_token"). */
static int user_aad(char aad[SCHEMA_KEY_MAX], const char *uid, const char *field)
{
    return strcmp(field, "secret") == 0 ? schema_aad_user_secret(aad, uid)
                                        : schema_aad_user_access_token(aad, uid);
}

char *keys_seal_user(const struct crypto_keys *keys, const char *uid, const char *field,
                     const char *plain)
{
    char aad[SCHEMA_KEY_MAX];
    if (plain == NULL)
        plain = "";
    return user_aad(aad, uid, field) < 0 ? NULL : seal(keys, aad, plain, 1);
}

char *keys_open_user(const struct crypto_keys *keys, const char *uid, const char *field,
                     const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    return user_aad(aad, uid, field) < 0 ? NULL : open_aad(keys, aad, envelope);
}

char *keys_seal_conn_secret(const struct crypto_keys *keys, const char *pid, const char *code,
                            const char *secret)
{
    char aad[SCHEMA_KEY_MAX];
    if (schema_aad_conn_secret(aad, pid, code) < 0)
        return NULL;
    return seal(keys, aad, secret, 1);
}

char *keys_open_conn_secret(const struct crypto_keys *keys, const char *pid, const char *code,
                            const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    return schema_aad_conn_secret(aad, pid, code) < 0 ? NULL : open_aad(keys, aad, envelope);
}

void keys_wipe_free(char *s)
{
    if (s != NULL) {
        crypto_wipe(s, strlen(s));
        xfree(s);
    }
}
