/*
 * core/keys: partner API keys and webhook secrets (making them, checking a
 * key a partner brings, the lookup key of an API key), and sealing or
 * opening the encrypted fields of partners, connections and users with their
 * AAD (core/schema.h). Shared by superimap-api and superimap-import, so both
 * write the same records. Pure: no Redis, no replies; callable from any
 * thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_KEYS_H
#define CORE_KEYS_H

#include "core/schema.h"

struct crypto_keys;

/* Makes a new API key (base64url of 32 random bytes; keys_wipe_free() it)
 * and writes its lookup key si:apikey:<sha256 hex> into lookup ("" if
 * hashing failed). */
char *keys_new_api_key(char lookup[SCHEMA_KEY_MAX]);

/* 1 when api_key may be a partner's key: the form keys_new_api_key() makes
 * (43 base64url characters, 256 bits) or the original SuperIMAP's
 * (SecureRandom.hex(10): 20 lowercase hex digits), else 0. */
int keys_api_key_acceptable(const char *api_key);

/* The lookup key of an existing API key. Returns 0 or -SIMAP_ECRYPTO. */
int keys_lookup(const char *api_key, char lookup[SCHEMA_KEY_MAX]);

/* Makes a new webhook secret, "whsec_" + base64 of 32 random bytes. */
char *keys_new_webhook_secret(void);

/* Decrypts a partner's encrypted field (api_key, webhook_secret, ...).
 * Returns a new string (keys_wipe_free() it), or NULL when envelope is
 * empty or does not open. */
char *keys_open_partner(const struct crypto_keys *keys, const char *pid, const char *field,
                        const char *envelope);

/* Encrypts plain as partner pid's field. Returns a new string or NULL. */
char *keys_seal_partner(const struct crypto_keys *keys, const char *pid, const char *field,
                        const char *plain);

/* A webhook URL as a partner hash keeps it. Credentials in its userinfo
 * ("https://user:pw@host/") are never stored or shown in clear: *shown is
 * url with the password, or a userinfo without one whole, replaced by
 * "***" ("https://user:***@host/"), for the field itself, every API answer
 * and every log line; *sealed is the userinfo encrypted as partner pid's
 * field "<field>_userinfo", for that field ("" when url has none, which
 * clears an old one). The api and superimap-import store URLs through this
 * one function. Returns 0 with two new strings (xfree() them), or
 * -SIMAP_ECRYPTO with neither. */
int keys_seal_partner_url(const struct crypto_keys *keys, const char *pid, const char *field,
                          const char *url, char **shown, char **sealed);

/* The URL to send to: shown with the userinfo sealed holds put back, as
 * keys_seal_partner_url() made them ("" sealed: shown itself). Returns a new
 * string (keys_wipe_free() it), or NULL when sealed does not open. */
char *keys_open_partner_url(const struct crypto_keys *keys, const char *pid, const char *field,
                            const char *shown, const char *sealed);

/* Encrypts plain as user uid's field ("secret": a password or refresh
 * token; "oauth2_access_token"), "" staying "" (no credential). Returns a
 * new string or NULL. */
char *keys_seal_user(const struct crypto_keys *keys, const char *uid, const char *field,
                     const char *plain);

/* Decrypts user uid's field, as keys_open_partner(). */
char *keys_open_user(const struct crypto_keys *keys, const char *uid, const char *field,
                     const char *envelope);

/* Encrypts a connection's oauth2_client_secret, "" staying "". Returns a
 * new string or NULL. */
char *keys_seal_conn_secret(const struct crypto_keys *keys, const char *pid, const char *code,
                            const char *secret);

/* Decrypts the client secret of partner pid's connection to code, as
 * keys_open_partner(). */
char *keys_open_conn_secret(const struct crypto_keys *keys, const char *pid, const char *code,
                            const char *envelope);

/* Overwrites s with zeros and frees it. Accepts NULL. */
void keys_wipe_free(char *s);

#endif
