/*
 * cmd/api/auth.h: who is calling (the router's check before a handler), and
 * the making and opening of API keys and webhook secrets.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_AUTH_H
#define CMD_API_AUTH_H

#include <stddef.h>

struct api;
struct req;

/* Authenticates the partner of r from the x-api-key header or the api_key
 * parameter and applies its rate limit. Returns 0 with r->partner set, or
 * the status after replying (401, 429, 503). */
int auth_partner(struct req *r);

/* Checks Authorization: Bearer <SUPERIMAP_ADMIN_TOKEN> in constant time.
 * Returns 0, or 401 after replying. */
int auth_admin(struct req *r);

/* Makes a new API key (base64url of 32 random bytes; xfree() it) and the
 * lookup key si:apikey:<sha256 hex> into lookup (SCHEMA_KEY_MAX bytes). */
char *auth_new_api_key(char *lookup, size_t lookuplen);

/* The lookup key of an existing API key. Returns 0 or -SIMAP_ECRYPTO. */
int auth_lookup_key(const char *api_key, char *lookup, size_t lookuplen);

/* Makes a new webhook secret, "whsec_" + base64 of 32 random bytes. */
char *auth_new_webhook_secret(void);

/* Decrypts a partner's encrypted field (api_key, webhook_secret, ...) with
 * its AAD "si:partner:<pid>:<field>". Returns a new string or NULL. */
char *auth_partner_secret(const struct api *a, const char *pid, const char *field,
                          const char *envelope);

#endif
