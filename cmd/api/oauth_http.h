/*
 * cmd/api/oauth_http.h: the api's calls to an OAuth2 provider (token,
 * userinfo, revoke endpoints), blocking, on the request's civetweb worker
 * thread: one libcurl easy handle per call, short timeouts, http and https
 * only, no redirects, the answer capped, and the SSRF guard of the
 * dispatcher's webhooks (core/netguard) on every address connected to,
 * loosened by SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1 (metadata addresses stay
 * refused). curl_global_init() must have run (main.c).
 *
 * Nothing here logs a request's body or headers: they carry codes, tokens
 * and client secrets.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_OAUTH_HTTP_H
#define CMD_API_OAUTH_HTTP_H

#include <stddef.h>

struct api;

#define OAUTH_HTTP_CONNECT_MS 5000        /* TCP and TLS connect */
#define OAUTH_HTTP_TOTAL_MS   10000       /* the whole request */
#define OAUTH_HTTP_BODY_MAX   (64 * 1024) /* answer bytes kept; more fails the call */

/* An answer. body is NUL-terminated (xfree() it, after crypto_wipe(): it
 * may hold tokens); err says why a call failed, for logs (no secrets). */
struct oauth_http_res {
    long status;
    char *body;
    size_t len;
    char err[192];
};

/* What to send: form (NULL: a GET) as application/x-www-form-urlencoded;
 * user and password (NULL: none) as HTTP Basic (RFC 6749 section 2.3.1:
 * the caller form-encodes them first); bearer (NULL: none) as
 * Authorization: Bearer. */
struct oauth_http_req {
    const char *url;
    const char *form;
    const char *user, *password;
    const char *bearer;
};

/* Makes the request. Returns 0 when an HTTP answer came (any status), or
 * -SIMAP_EIO (refused by the guard, no connection, timeout, answer too
 * big; out->err says which). oauth_http_res_free() out either way. */
int oauth_http_call(const struct api *a, const struct oauth_http_req *req,
                    struct oauth_http_res *out);

void oauth_http_res_free(struct oauth_http_res *res);

#endif
