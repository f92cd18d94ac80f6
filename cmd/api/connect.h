/*
 * cmd/api/connect.h: the pure parts of the connect pages (the original's
 * /users/connect/new, /users/connect/callback and /users/disconnect/new):
 * signed links, the partner's success= and failure= parameters, redirects
 * with an error appended, the OAuth 2.0 authorization request (RFC 6749
 * section 4.1) with PKCE S256 (RFC 7636), token and userinfo answers, the
 * email claim of an ID token (OpenID Connect Core 1.0 section 2), the
 * record of one connect flow kept in Redis, cookies and HTML escaping.
 *
 * No civetweb, no Redis, no logging, no clock: unit tests and the fuzzer
 * (tests/fuzz/fuzz_connect.c) drive it directly. Every function is safe on
 * any thread; strings returned are new (xfree() them) and never NULL unless
 * the contract says so.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_CONNECT_H
#define CMD_API_CONNECT_H

#include <stddef.h>
#include <stdint.h>

#include "core/schema.h"

#define CONNECT_SIG_LEN   43        /* base64url of an HMAC-SHA256, unpadded */
#define CONNECT_LINK_TTL  (30 * 60) /* seconds a link is valid, as the original */
#define CONNECT_SKEW_S    60        /* a link from up to this far ahead is accepted */
#define CONNECT_STATE_TTL (10 * 60) /* seconds a connect flow (OAuth2 state, form) lives */
#define CONNECT_URL_MAX   2048      /* bytes of a success or failure URL */
#define CONNECT_COOKIE    "superimap_connect"

/* ---- Outcomes ---- */

/* What one request to a connect page ended in: a metric label, and for
 * failures the error= added to the failure URL. */
enum connect_result {
    CONNECT_REDIRECTED,     /* sent to the provider's consent page */
    CONNECT_FORM,           /* the PLAIN form shown */
    CONNECT_CONNECTED,      /* connected (callback or form) */
    CONNECT_DISCONNECTED,   /* disconnected */
    CONNECT_INVALID_LINK,   /* malformed or forged link, unknown user */
    CONNECT_EXPIRED,        /* a real link, too old */
    CONNECT_USED,           /* a real link, followed before */
    CONNECT_INVALID_STATE,  /* callback or form without a live flow */
    CONNECT_BROWSER,        /* the flow belongs to another browser (cookie) */
    CONNECT_DENIED,         /* the user said no at the provider */
    CONNECT_PROVIDER_ERROR, /* the provider sent another error to the callback */
    CONNECT_TOKEN_ERROR,    /* the token endpoint refused the code */
    CONNECT_UNAVAILABLE,    /* the provider could not be reached, or failed */
    CONNECT_NO_REFRESH,     /* no refresh token came */
    CONNECT_NO_EMAIL,       /* no email address came */
    CONNECT_EMAIL_TAKEN,    /* another user of the connection has that email */
    CONNECT_USER_GONE,      /* the user was archived or deleted meanwhile */
    CONNECT_LOGIN_REFUSED,  /* the IMAP server refused the PLAIN form's login */
    CONNECT_RATE_LIMITED,   /* too many PLAIN form logins */
    CONNECT_SERVER_ERROR,   /* Redis or encryption failed, or a misconfiguration */
    CONNECT_RESULTS
};

/* The result's name: "redirected", ..., "invalid_link", "access_denied". */
const char *connect_result_str(enum connect_result r);

/* ---- Signed links ---- */

/* The signature of a link of kind ("connect" or "disconnect") for user uid
 * made at ts (unix seconds): base64url HMAC-SHA256 under key of
 * "<kind>\n<uid>\n<ts>", NUL-terminated in out ("" when OpenSSL failed). */
void connect_link_sig(const unsigned char key[32], const char *kind, const char *uid, int64_t ts,
                      char out[CONNECT_SIG_LEN + 1]);

/* A link's query string, parsed. success and failure are NULL when absent;
 * a value given but refused by connect_url_ok() is dropped and counted in
 * bad_urls (the partner's own URLs are used instead). */
struct connect_link {
    char uid[SCHEMA_UID_LEN + 1];
    int64_t ts;
    char sig[CONNECT_SIG_LEN + 1];
    char *success, *failure;
    int bad_urls;
};

/*
 * Parses the query q[0..n) of a link: user_id, ts and sig, and the
 * partner's success= and failure=, also when the partner appended them
 * with a second '?' (the original README's sample did:
 * "...&sig=X?success=https://a/ok&failure=..."). Returns 0, or
 * -SIMAP_EINVAL when user_id, ts or sig is missing or malformed (success
 * and failure are then still filled, for the caller's failure redirect
 * when it finds the user another way). connect_link_free() it either way.
 */
int connect_link_parse(const char *q, size_t n, struct connect_link *out);

void connect_link_free(struct connect_link *l);

enum connect_link_check {
    CONNECT_LINK_OK,
    CONNECT_LINK_FORGED,  /* the signature does not match */
    CONNECT_LINK_EXPIRED, /* a real link, older than CONNECT_LINK_TTL or from the future */
};

/* Checks l's signature for kind in constant time, then its age at now_s. */
enum connect_link_check connect_link_verify(const unsigned char key[32], const char *kind,
                                            const struct connect_link *l, int64_t now_s);

/* ---- Redirects ---- */

/* 1 when url is an absolute http:// or https:// URL with a host (no
 * protocol-relative "//host", no javascript:, no backslash, user info,
 * whitespace or control character), at most CONNECT_URL_MAX bytes. */
int connect_url_ok(const char *url);

/* url with "error=<error>" added to its query ('?' or '&' as needed, before
 * any '#fragment'); error is percent-encoded. */
char *connect_url_with_error(const char *url, const char *error);

/* Copies into out (cap >= 2) a provider's error code reduced to what a URL
 * and a log line can hold as is: [A-Za-z0-9_.-], at most 64 bytes; anything
 * else, or nothing, gives "provider_error". */
void connect_error_code(const char *s, char *out, size_t cap);

/* ---- The authorization request ---- */

/* s percent-encoded for a URL query (RFC 3986 unreserved characters kept). */
char *connect_pct_encode(const char *s);

/* A PKCE code verifier (32 random bytes, base64url: 43 characters). */
char *connect_pkce_verifier(void);

/* The S256 code challenge of verifier: base64url(SHA-256(verifier)). */
char *connect_pkce_challenge(const char *verifier);

struct connect_authz {
    const char *authorize_url; /* the provider's, may hold a query already */
    const char *client_id, *redirect_uri, *scope, *state, *code_challenge;
    const char *login_hint; /* NULL or "": left out */
    const char *extra_json; /* the provider's oauth2_authorize_params: a JSON object of
                                strings, or NULL / "" */
};

/* The URL to send the browser to, or NULL when extra_json is not a JSON
 * object whose values are all strings. */
char *connect_authorize_url(const struct connect_authz *a);

/* 1 when json[0..n) is a JSON object of at most 16 members whose names are
 * 1 to 64 of [A-Za-z0-9_.-] and whose values are strings of at most 256
 * bytes, the names not ones connect_authorize_url() sets itself. */
int connect_params_json_ok(const char *json, size_t n);

/* ---- Answers of the provider ---- */

/* A token endpoint's JSON answer (RFC 6749 sections 5.1 and 5.2). Strings
 * are NULL when absent; expires_in is 0 when absent. */
struct connect_tokens {
    char *access_token, *refresh_token, *id_token, *error;
    int64_t expires_in;
};

/* Parses body[0..n). Returns 0, or -SIMAP_EPROTO when it is not a JSON
 * object. connect_tokens_free() it either way (it wipes the tokens). */
int connect_tokens_parse(const char *body, size_t n, struct connect_tokens *out);

void connect_tokens_free(struct connect_tokens *t);

/* The "email" claim of an ID token's payload, else "preferred_username"
 * when it holds an '@'; NULL when there is none or jwt is malformed. The
 * signature is not checked: the token came straight from the provider's
 * token endpoint (OpenID Connect Core 1.0 section 3.1.3.7, item 6). */
char *connect_id_token_email(const char *jwt);

/* The "email" member of a userinfo answer, or NULL. */
char *connect_userinfo_email(const char *body, size_t n);

/* ---- The record of one connect flow ---- */

/* What a flow remembers between the link and the callback (or the form's
 * post); kept sealed in Redis for CONNECT_STATE_TTL seconds. */
struct connect_flow {
    char uid[SCHEMA_UID_LEN + 1];
    char browser[65]; /* SHA-256 hex of the browser's cookie */
    char *success;    /* the partner's success URL ("" when none) */
    char *failure;    /* the partner's failure URL ("" when none) */
    char *verifier;   /* the PKCE verifier ("" for a PLAIN form) */
};

/* The flow as text (form-encoded), to be sealed. */
char *connect_flow_encode(const struct connect_flow *f);

/* Parses text made by connect_flow_encode(). 0 or -SIMAP_EINVAL;
 * connect_flow_free() it either way. */
int connect_flow_decode(const char *text, size_t n, struct connect_flow *out);

void connect_flow_free(struct connect_flow *f);

/* ---- Browser and HTML ---- */

/* Finds cookie name in a Cookie header (NULL: none) and copies its value
 * into out when it is 16 to outlen - 1 of [A-Za-z0-9_-]. 1 when found. */
int connect_cookie_get(const char *header, const char *name, char *out, size_t outlen);

/* s with & < > " ' escaped for HTML text and attribute values. */
char *connect_html_escape(const char *s);

#endif
