/*
 * cmd/import/values: the checks and conversions of the original's column
 * values, as psql's CSV writes them: ids, UIDs, booleans (t/f), timestamps,
 * codes, URLs. Pure functions.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_IMPORT_VALUES_H
#define CMD_IMPORT_VALUES_H

#include <stddef.h>
#include <stdint.h>

#define VALUES_CODE_MAX 64   /* bytes of a provider code, as the api's API_CODE_MAX */
#define VALUES_URL_MAX  2048 /* bytes of a URL, as the api's API_URL_MAX */

/* 1 when s holds a control character (below 0x20, or DEL). */
int values_has_control(const char *s);

/* 1 when s starts with http:// or https://. */
int values_is_http_url(const char *s);

/* 1 when s is a positive decimal id of at most 18 digits, without leading
 * zeros (a Postgres serial). */
int values_is_id(const char *s);

/* A decimal of at most 10 digits in [min, max] into *out: 0, or -1 when
 * it is not one. */
int values_parse_u32(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* 1 when s is a provider code: 1 to VALUES_CODE_MAX letters, digits, '_'
 * or '-'. */
int values_is_code(const char *s);

/* 1 when s is a host name or IP address: 1 to 253 letters, digits, '.',
 * '-', ':' or '_' (the api's check of imap_host and smtp_host). */
int values_is_host(const char *s);

/* 1 for psql's true ("t", or "true"). */
int values_is_true(const char *s);

/*
 * psql's text of a timestamp, "YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]"
 * (UTC without an offset, as Rails stores them), into ms since the epoch as
 * decimal text in out; "" stays "". 0, or -1 when it is not one (out "").
 */
int values_parse_time(const char *s, char out[24]);

/* The original's OAuth2 endpoint into out: path joined to site when it is a
 * path ("/o/oauth2/auth"), else path as it is (a whole URL). */
void values_join_url(const char *site, const char *path, char out[VALUES_URL_MAX + 1]);

/* ASCII lower-case copy of s into out (cap bytes; cut to fit). */
void values_lower(const char *s, char *out, size_t cap);

#endif
