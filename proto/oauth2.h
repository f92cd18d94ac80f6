/*
 * proto/oauth2: the token endpoint's answer (RFC 6749 sections 5.1 and 5.2)
 * read and classified, for the watcher's refreshes. Pure: no I/O, no clock.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_OAUTH2_H
#define PROTO_OAUTH2_H

#include <stddef.h>
#include <stdint.h>

/* Longest token kept (Microsoft's access tokens run to a few KiB). */
#define OAUTH2_TOKEN_MAX 16384
/* Longest body parsed; the caller's HTTP client caps what it reads. */
#define OAUTH2_BODY_MAX  (64 * 1024)

/* What a refresh came to. */
enum oauth2_outcome {
    OAUTH2_OK,      /* a new access token (and maybe a rotated refresh token) */
    OAUTH2_REVOKED, /* invalid_grant: the grant is dead; the user must consent again */
    OAUTH2_CONFIG,  /* invalid_client, unauthorized_client, ...: our set-up is wrong */
    OAUTH2_RETRY,   /* 429, 5xx, a network failure, an unreadable answer: try later */
};

/* A parsed answer. Strings are new (oauth2_token_clear() wipes and frees
 * them), NULL when absent. */
struct oauth2_token {
    char *access_token;
    char *refresh_token; /* only when the provider rotated it */
    int64_t expires_in;  /* seconds; 0 when absent */
    char error[64];      /* the error code of an error answer, "" otherwise */
};

/*
 * Reads body[0..len) answered with HTTP status (0: no answer at all) into
 * *t (zeroed first) and returns the outcome:
 *   2xx with a JSON object holding a string access_token of at most
 *     OAUTH2_TOKEN_MAX bytes (no control characters), token_type Bearer
 *     (any case) when present, expires_in a number >= 0 when present,
 *     refresh_token a string when present                   -> OAUTH2_OK;
 *   400/401 {"error": "invalid_grant"}                       -> OAUTH2_REVOKED;
 *   400/401 with another error code (or none)                -> OAUTH2_CONFIG;
 *   0, 408, 429, 5xx, any other status, a 2xx that breaks
 *     the rules above                                        -> OAUTH2_RETRY.
 * Never fails otherwise; t->error names the error code or what was wrong.
 */
enum oauth2_outcome oauth2_token_parse(long status, const char *body, size_t len,
                                       struct oauth2_token *t);

/* Wipes and frees the strings of t. Accepts NULL. */
void oauth2_token_clear(struct oauth2_token *t);

/* "ok", "revoked", "config", "retry": the metric label of o. */
const char *oauth2_outcome_name(enum oauth2_outcome o);

#endif
