/*
 * cmd/api/keys: API keys and webhook secrets (see keys.h). An API key is 32
 * random bytes, base64url (43 characters); Redis never holds it in clear:
 * si:apikey:<sha256 hex> names its partner and the partner hash keeps it
 * encrypted.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/keys.h"

#include <string.h>

#include "cmd/api/api.h"
#include "core/crypto.h"
#include "core/err.h"

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
static char *open_aad(const struct api *a, const char *aad, const char *envelope)
{
    char *plain = NULL;
    if (envelope == NULL || *envelope == '\0' ||
        crypto_decrypt(a->keys, envelope, aad, &plain, NULL) < 0)
        return NULL;
    return plain;
}

/* Seals plain with aad: a new string, or NULL. */
static char *seal_aad(const struct api *a, const char *aad, const char *plain)
{
    char *env = NULL;
    if (crypto_encrypt(a->keys, plain, strlen(plain), aad, &env) < 0)
        return NULL;
    return env;
}

char *keys_open_partner(const struct api *a, const char *pid, const char *field,
                        const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    return schema_aad_partner(aad, pid, field) < 0 ? NULL : open_aad(a, aad, envelope);
}

char *keys_seal_partner(const struct api *a, const char *pid, const char *field, const char *plain)
{
    char aad[SCHEMA_KEY_MAX];
    return schema_aad_partner(aad, pid, field) < 0 ? NULL : seal_aad(a, aad, plain);
}

/* The AAD of user uid's encrypted field ("secret" or "oauth2_access_token"). */
static int user_aad(char aad[SCHEMA_KEY_MAX], const char *uid, const char *field)
{
    return strcmp(field, "secret") == 0 ? schema_aad_user_secret(aad, uid)
                                        : schema_aad_user_access_token(aad, uid);
}

char *keys_seal_user(const struct api *a, const char *uid, const char *field, const char *plain)
{
    char aad[SCHEMA_KEY_MAX];
    if (plain == NULL || *plain == '\0')
        return xstrdup("");
    return user_aad(aad, uid, field) < 0 ? NULL : seal_aad(a, aad, plain);
}

char *keys_open_user(const struct api *a, const char *uid, const char *field, const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    return user_aad(aad, uid, field) < 0 ? NULL : open_aad(a, aad, envelope);
}

char *keys_open_conn_secret(const struct api *a, const char *pid, const char *code,
                            const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    return schema_aad_conn_secret(aad, pid, code) < 0 ? NULL : open_aad(a, aad, envelope);
}

void keys_wipe_free(char *s)
{
    if (s != NULL) {
        crypto_wipe(s, strlen(s));
        xfree(s);
    }
}
