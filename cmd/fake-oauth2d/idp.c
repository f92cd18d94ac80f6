/*
 * cmd/fake-oauth2d/idp: the test OAuth2 provider's state and endpoints
 * (see idp.h).
 *
 *   GET  /authorize     consent page (form POSTing back here)
 *   POST /authorize     302 to redirect_uri with code or error=access_denied
 *   POST /token         authorization_code (PKCE S256) and refresh_token grants
 *   GET  /userinfo      {"email","sub"} for a Bearer access token
 *   POST /revoke        token= (a refresh token revokes its access tokens too)
 *   POST /introspect    token= (or a Bearer header) -> {"active":...}
 *   POST /control/config   {"access_ttl","rotate_refresh","clients":[{"id","secret"}],
 *                           "id_token":"email"|"no_email"|"none"}
 *   POST /control/inject   {"endpoint","error":"invalid_grant"|"429"|"500"|"slow",
 *                           "count","retry_after","delay_ms"}
 *   GET  /control/stats    counters
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-oauth2d/idp.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <civetweb.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/http.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"

#define BODY_MAX    (64 * 1024)
#define FIELD_MAX   2048
#define ID_MAX      128
#define EMAIL_MAX   256
#define TOKENS_MAX  200000
#define CLIENTS_MAX 64
#define CODE_TTL_MS (10 * 60 * 1000)

enum endpoint { EP_TOKEN, EP_USERINFO, EP_INTROSPECT, EP_REVOKE, EP_COUNT };
static const char *const endpoint_names[EP_COUNT] = {"token", "userinfo", "introspect", "revoke"};

enum grant { G_CODE, G_REFRESH, G_OTHER, G_COUNT };
static const char *const grant_names[G_COUNT] = {"authorization_code", "refresh_token", "other"};

enum result {
    R_OK,
    R_INVALID_GRANT,
    R_INVALID_CLIENT,
    R_INVALID_REQUEST,
    R_UNSUPPORTED,
    R_429,
    R_500,
    R_COUNT
};
static const char *const result_names[R_COUNT] = {
    "ok", "invalid_grant", "invalid_client", "invalid_request", "unsupported_grant_type", "429",
    "500"};

enum inject_kind { INJ_NONE, INJ_INVALID_GRANT, INJ_429, INJ_500, INJ_SLOW };

struct inject {
    enum inject_kind kind;
    int count;       /* requests still affected */
    int retry_after; /* seconds, for 429; 0: no header */
    int delay_ms;    /* slow: the wait before answering normally */
};

struct client {
    char id[ID_MAX], secret[ID_MAX];
};

struct code {
    char code[48];
    char client[ID_MAX];
    char *redirect_uri, *scope;
    char challenge[128];
    char email[EMAIL_MAX];
    int64_t expires_ms;
    int used;
};

struct token {
    char tok[48];
    int is_refresh;
    int revoked;
    char client[ID_MAX];
    char email[EMAIL_MAX];
    char parent[48]; /* access token: the refresh token it came from */
    char *scope;
    int64_t exp_ms; /* access token: wall-clock expiry */
};

/* The ID token of a token answer: with the email claim (a Google-like
 * provider), without it (the client must ask /userinfo), or none at all. */
enum id_token_kind { ID_TOKEN_EMAIL, ID_TOKEN_NO_EMAIL, ID_TOKEN_NONE };

struct idp {
    pthread_mutex_t mu;
    int access_ttl, rotate_refresh;
    enum id_token_kind id_token; /* what /token answers beside the tokens */
    struct client clients[CLIENTS_MAX];
    int nclients;
    struct code *codes;
    size_t ncodes, codes_cap;
    struct token *tokens;
    size_t ntokens, tokens_cap;
    struct inject inj[EP_COUNT];
    long long token_calls[G_COUNT][R_COUNT];
    int token_concurrent, token_max_concurrent;
    long long revocations, introspections, introspections_active, userinfo, authorize_allow,
        authorize_deny;
};

/* ---- Helpers ---- */

static void random_token(const char *prefix, char *out, size_t cap)
{
    unsigned char raw[16];
    char hex[33];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, hex);
    snprintf(out, cap, "%s%s", prefix, hex);
}

/* Reads the request body into a new NUL-terminated buffer (xfree() it), at
 * most BODY_MAX bytes; NULL when larger. */
static char *read_body(struct mg_connection *conn, size_t *len)
{
    struct buf b;
    buf_init(&b, BODY_MAX + 1);
    char chunk[4096];
    int n;
    while ((n = mg_read(conn, chunk, sizeof chunk)) > 0) {
        if (buf_append(&b, chunk, (size_t)n) < 0) {
            buf_free(&b);
            return NULL;
        }
    }
    if (buf_append(&b, "", 1) < 0) {
        buf_free(&b);
        return NULL;
    }
    *len = b.len - 1;
    char *s = xmalloc(b.len);
    memcpy(s, b.data, b.len);
    buf_free(&b);
    return s;
}

/* Form field name of data[0..len) (urlencoded) into dst; "" when absent.
 * Returns 0, or -1 when the value does not fit. */
static int form(const char *data, size_t len, const char *name, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (data == NULL)
        return 0;
    int n = mg_get_var(data, len, name, dst, cap);
    if (n == -2)
        return -1;
    if (n < 0)
        dst[0] = '\0';
    return 0;
}

static int reply_json_gen(struct mg_connection *conn, int status, struct json_gen *g,
                          const char *extra_headers)
{
    char *out = NULL;
    size_t len = 0;
    if (json_gen_finish(g, &out, &len) < 0) {
        json_gen_free(g);
        return http_reply_error(conn, 500, "internal", "cannot build JSON");
    }
    json_gen_free(g);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\n%s\r\n",
              status, mg_get_response_code_text(NULL, status), len,
              extra_headers ? extra_headers : "");
    mg_write(conn, out, len);
    xfree(out);
    return status;
}

/* RFC 6749 section 5.2 error body. */
static int oauth_error(struct mg_connection *conn, int status, const char *error,
                       const char *description, const char *extra_headers)
{
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "error", error);
    if (description != NULL)
        json_gen_key_str(g, "error_description", description);
    json_gen_object_close(g);
    return reply_json_gen(conn, status, g, extra_headers);
}

static void html_escape(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            buf_puts(b, "&amp;");
            break;
        case '<':
            buf_puts(b, "&lt;");
            break;
        case '>':
            buf_puts(b, "&gt;");
            break;
        case '"':
            buf_puts(b, "&quot;");
            break;
        case '\'':
            buf_puts(b, "&#39;");
            break;
        default:
            buf_append(b, s, 1);
        }
    }
}

static int html_page(struct mg_connection *conn, int status, const char *title, const char *text)
{
    struct buf b;
    buf_init(&b, BODY_MAX);
    buf_puts(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>");
    html_escape(&b, title);
    buf_puts(&b, "</title></head><body><h1>");
    html_escape(&b, title);
    buf_puts(&b, "</h1><p id=\"error\">");
    html_escape(&b, text);
    buf_puts(&b, "</p></body></html>\n");
    int rc = http_reply(conn, status, "text/html; charset=utf-8", b.data, b.len);
    buf_free(&b);
    return rc;
}

static const struct client *find_client(struct idp *o, const char *id)
{
    for (int i = 0; i < o->nclients; i++)
        if (strcmp(o->clients[i].id, id) == 0)
            return &o->clients[i];
    return NULL;
}

static struct token *find_token(struct idp *o, const char *tok)
{
    if (tok[0] == '\0')
        return NULL;
    for (size_t i = 0; i < o->ntokens; i++)
        if (strcmp(o->tokens[i].tok, tok) == 0)
            return &o->tokens[i];
    return NULL;
}

static int token_active(const struct token *t)
{
    return !t->revoked && (t->is_refresh || t->exp_ms > time_now_ms());
}

/* The sub claim: a stable id derived from the email. */
static void sub_of(const char *email, char out[33])
{
    char hex[65];
    crypto_sha256_hex(email, strlen(email), hex);
    memcpy(out, hex, 32);
    out[32] = '\0';
}

/* ---- /authorize ---- */

/* The authorization request's parameters. */
struct authz {
    char response_type[32], client_id[ID_MAX], redirect_uri[FIELD_MAX], scope[FIELD_MAX],
        state[FIELD_MAX], challenge[128], method[16], login_hint[EMAIL_MAX], email[EMAIL_MAX],
        decision[16];
};

static int read_authz(const char *data, size_t len, struct authz *a)
{
    return form(data, len, "response_type", a->response_type, sizeof a->response_type) |
           form(data, len, "client_id", a->client_id, sizeof a->client_id) |
           form(data, len, "redirect_uri", a->redirect_uri, sizeof a->redirect_uri) |
           form(data, len, "scope", a->scope, sizeof a->scope) |
           form(data, len, "state", a->state, sizeof a->state) |
           form(data, len, "code_challenge", a->challenge, sizeof a->challenge) |
           form(data, len, "code_challenge_method", a->method, sizeof a->method) |
           form(data, len, "login_hint", a->login_hint, sizeof a->login_hint) |
           form(data, len, "email", a->email, sizeof a->email) |
           form(data, len, "decision", a->decision, sizeof a->decision);
}

/* Why the request cannot be served, or NULL. */
static const char *authz_invalid(struct idp *o, const struct authz *a)
{
    if (strcmp(a->response_type, "code") != 0)
        return "response_type must be code";
    if (a->redirect_uri[0] == '\0')
        return "redirect_uri is required";
    if (strncmp(a->redirect_uri, "http://", 7) != 0 && strncmp(a->redirect_uri, "https://", 8) != 0)
        return "redirect_uri must be an http(s) URL";
    if (strcmp(a->method, "S256") != 0 || a->challenge[0] == '\0')
        return "PKCE with code_challenge_method=S256 is required";
    pthread_mutex_lock(&o->mu);
    int known = find_client(o, a->client_id) != NULL;
    pthread_mutex_unlock(&o->mu);
    return known ? NULL : "unknown client_id";
}

static void hidden(struct buf *b, const char *name, const char *value)
{
    buf_puts(b, "<input type=\"hidden\" name=\"");
    buf_puts(b, name);
    buf_puts(b, "\" value=\"");
    html_escape(b, value);
    buf_puts(b, "\">\n");
}

static int consent_page(struct mg_connection *conn, const struct authz *a)
{
    struct buf b;
    buf_init(&b, BODY_MAX);
    buf_puts(&b, "<!doctype html><html><head><meta charset=\"utf-8\">"
                 "<title>Consent</title></head><body><h1>Allow access?</h1>\n"
                 "<p>Client <b id=\"client\">");
    html_escape(&b, a->client_id);
    buf_puts(&b, "</b> asks for <span id=\"scope\">");
    html_escape(&b, a->scope);
    buf_puts(&b, "</span>.</p>\n<form id=\"consent\" method=\"post\" action=\"/authorize\">\n");
    hidden(&b, "response_type", a->response_type);
    hidden(&b, "client_id", a->client_id);
    hidden(&b, "redirect_uri", a->redirect_uri);
    hidden(&b, "scope", a->scope);
    hidden(&b, "state", a->state);
    hidden(&b, "code_challenge", a->challenge);
    hidden(&b, "code_challenge_method", a->method);
    buf_puts(&b, "<label>Email <input type=\"text\" id=\"email\" name=\"email\" value=\"");
    html_escape(&b, a->login_hint);
    buf_puts(&b, "\"></label>\n"
                 "<button type=\"submit\" id=\"allow\" name=\"decision\" value=\"allow\">"
                 "Allow</button>\n"
                 "<button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">"
                 "Deny</button>\n</form></body></html>\n");
    int rc = http_reply(conn, 200, "text/html; charset=utf-8", b.data, b.len);
    buf_free(&b);
    return rc;
}

/* 302 to redirect_uri with "k1=v1&k2=v2" appended with ? or &. */
static int redirect(struct mg_connection *conn, const char *uri, const char *k1, const char *v1,
                    const char *state)
{
    char ev1[FIELD_MAX * 3], estate[FIELD_MAX * 3];
    mg_url_encode(v1, ev1, sizeof ev1);
    mg_url_encode(state, estate, sizeof estate);
    struct buf loc;
    buf_init(&loc, FIELD_MAX * 8);
    buf_puts(&loc, uri);
    buf_puts(&loc, strchr(uri, '?') ? "&" : "?");
    buf_puts(&loc, k1);
    buf_puts(&loc, "=");
    buf_puts(&loc, ev1);
    buf_puts(&loc, "&state=");
    buf_puts(&loc, estate);
    buf_append(&loc, "", 1);
    mg_printf(conn,
              "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n"
              "Cache-Control: no-store\r\n\r\n",
              loc.data);
    buf_free(&loc);
    return 302;
}

static int on_authorize(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    int is_post = strcmp(ri->request_method, "POST") == 0;
    if (!is_post && strcmp(ri->request_method, "GET") != 0)
        return html_page(conn, 405, "Method not allowed", "use GET or POST");
    struct authz a;
    char *body = NULL;
    size_t len = 0;
    const char *data = ri->query_string;
    if (is_post) {
        if ((body = read_body(conn, &len)) == NULL)
            return html_page(conn, 413, "Too large", "request body too large");
        data = body;
    } else {
        len = data ? strlen(data) : 0;
    }
    int rc = read_authz(data, len, &a);
    xfree(body);
    if (rc < 0)
        return html_page(conn, 400, "Bad request", "a parameter is too long");
    const char *why = authz_invalid(o, &a);
    if (why != NULL)
        return html_page(conn, 400, "Bad request", why);
    if (!is_post)
        return consent_page(conn, &a);
    if (strcmp(a.decision, "deny") == 0) {
        pthread_mutex_lock(&o->mu);
        o->authorize_deny++;
        pthread_mutex_unlock(&o->mu);
        return redirect(conn, a.redirect_uri, "error", "access_denied", a.state);
    }
    if (strcmp(a.decision, "allow") != 0)
        return html_page(conn, 400, "Bad request", "decision must be allow or deny");
    if (a.email[0] == '\0' || strchr(a.email, '@') == NULL)
        return html_page(conn, 400, "Bad request", "an email address is required");
    struct code c;
    memset(&c, 0, sizeof c);
    random_token("code_", c.code, sizeof c.code);
    snprintf(c.client, sizeof c.client, "%s", a.client_id);
    snprintf(c.challenge, sizeof c.challenge, "%s", a.challenge);
    snprintf(c.email, sizeof c.email, "%s", a.email);
    c.redirect_uri = xstrdup(a.redirect_uri);
    c.scope = xstrdup(a.scope);
    c.expires_ms = time_now_ms() + CODE_TTL_MS;
    pthread_mutex_lock(&o->mu);
    if (o->ncodes >= TOKENS_MAX) {
        pthread_mutex_unlock(&o->mu);
        xfree(c.redirect_uri);
        xfree(c.scope);
        return html_page(conn, 503, "Full", "too many codes");
    }
    if (o->ncodes == o->codes_cap) {
        o->codes_cap = o->codes_cap ? o->codes_cap * 2 : 16;
        o->codes = xrealloc(o->codes, o->codes_cap * sizeof *o->codes);
    }
    o->codes[o->ncodes++] = c;
    o->authorize_allow++;
    pthread_mutex_unlock(&o->mu);
    return redirect(conn, a.redirect_uri, "code", c.code, a.state);
}

/* ---- /token ---- */

/* Adds a token (locked). Returns it, or NULL when full. */
static struct token *add_token(struct idp *o, int is_refresh, const char *client, const char *email,
                               const char *scope, const char *parent)
{
    if (o->ntokens >= TOKENS_MAX)
        return NULL;
    if (o->ntokens == o->tokens_cap) {
        o->tokens_cap = o->tokens_cap ? o->tokens_cap * 2 : 64;
        o->tokens = xrealloc(o->tokens, o->tokens_cap * sizeof *o->tokens);
    }
    struct token *t = &o->tokens[o->ntokens++];
    memset(t, 0, sizeof *t);
    random_token(is_refresh ? "rt_" : "at_", t->tok, sizeof t->tok);
    t->is_refresh = is_refresh;
    snprintf(t->client, sizeof t->client, "%s", client);
    snprintf(t->email, sizeof t->email, "%s", email);
    snprintf(t->parent, sizeof t->parent, "%s", parent ? parent : "");
    t->scope = xstrdup(scope ? scope : "");
    t->exp_ms = is_refresh ? 0 : time_now_ms() + (int64_t)o->access_ttl * 1000;
    return t;
}

/* {"alg":"none"} JWT with iss, sub, aud, iat, exp, and email unless
 * with_email is 0. */
static char *id_token(const char *client, const char *email, int with_email, int ttl)
{
    static const char header[] = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char sub[33];
    sub_of(email, sub);
    int64_t now = time_now_ms() / 1000;
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "iss", "superimap-fake-oauth2d");
    json_gen_key_str(g, "sub", sub);
    json_gen_key_str(g, "aud", client);
    if (with_email) {
        json_gen_key_str(g, "email", email);
        json_gen_key_bool(g, "email_verified", 1);
    }
    json_gen_key_int(g, "iat", now);
    json_gen_key_int(g, "exp", now + ttl);
    json_gen_object_close(g);
    char *payload = NULL;
    size_t plen = 0;
    int rc = json_gen_finish(g, &payload, &plen);
    json_gen_free(g);
    if (rc < 0)
        return NULL;
    char *h64 = crypto_b64url_encode(header, sizeof header - 1);
    char *p64 = crypto_b64url_encode(payload, plen);
    size_t n = strlen(h64) + strlen(p64) + 3;
    char *jwt = xmalloc(n);
    snprintf(jwt, n, "%s.%s.", h64, p64);
    xfree(h64);
    xfree(p64);
    xfree(payload);
    return jwt;
}

/* The client authenticated by Basic or by the body, in id; 0, or -1. */
static int client_auth(struct idp *o, struct mg_connection *conn, const char *body, size_t len,
                       char id[ID_MAX])
{
    char secret[ID_MAX];
    id[0] = '\0';
    const char *h = mg_get_header(conn, "Authorization");
    if (h != NULL && strncasecmp(h, "Basic ", 6) == 0) {
        unsigned char *raw = NULL;
        size_t rlen = 0;
        if (crypto_b64_decode(h + 6, strlen(h + 6), &raw, &rlen) < 0)
            return -1;
        char *colon = memchr(raw, ':', rlen);
        int ok = colon != NULL && memchr(raw, 0, rlen) == NULL;
        if (ok) {
            *colon = '\0';
            /* RFC 6749 2.3.1: both are form-urlencoded before base64. */
            ok = mg_url_decode((char *)raw, (int)strlen((char *)raw), id, ID_MAX, 1) >= 0 &&
                 mg_url_decode(colon + 1, (int)strlen(colon + 1), secret, sizeof secret, 1) >= 0;
        }
        xfree(raw);
        if (!ok)
            return -1;
    } else if (form(body, len, "client_id", id, ID_MAX) < 0 ||
               form(body, len, "client_secret", secret, sizeof secret) < 0) {
        return -1;
    }
    pthread_mutex_lock(&o->mu);
    const struct client *c = find_client(o, id);
    int ok = c != NULL && secret[0] != '\0' && strcmp(c->secret, secret) == 0;
    pthread_mutex_unlock(&o->mu);
    return ok ? 0 : -1;
}

static int pkce_ok(const char *verifier, const char *challenge)
{
    size_t n = strlen(verifier);
    if (n < 43 || n > 128)
        return 0;
    unsigned char d[32];
    if (crypto_sha256(verifier, n, d) < 0)
        return 0;
    char *b = crypto_b64url_encode(d, sizeof d);
    int ok = strcmp(b, challenge) == 0;
    xfree(b);
    return ok;
}

/* Takes the injected fault of endpoint ep, if any (locked inside). */
static struct inject take_inject(struct idp *o, enum endpoint ep)
{
    struct inject none = {INJ_NONE, 0, 0, 0};
    pthread_mutex_lock(&o->mu);
    struct inject *i = &o->inj[ep];
    if (i->kind != INJ_NONE && i->count > 0) {
        none = *i;
        if (--i->count == 0)
            i->kind = INJ_NONE;
    }
    pthread_mutex_unlock(&o->mu);
    return none;
}

/* Answers an injected error; returns 0 when none applies (slow waited). */
static int apply_inject(struct mg_connection *conn, struct inject in, enum result *res)
{
    char hdr[64] = "";
    switch (in.kind) {
    case INJ_NONE:
        return 0;
    case INJ_SLOW: {
        struct timespec ts = {in.delay_ms / 1000, (long)(in.delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* the provider is slow on purpose */
        return 0;
    }
    case INJ_INVALID_GRANT:
        *res = R_INVALID_GRANT;
        return oauth_error(conn, 400, "invalid_grant", "injected", NULL);
    case INJ_429:
        *res = R_429;
        if (in.retry_after > 0)
            snprintf(hdr, sizeof hdr, "Retry-After: %d\r\n", in.retry_after);
        return oauth_error(conn, 429, "rate_limited", "injected", hdr);
    case INJ_500:
        *res = R_500;
        return oauth_error(conn, 500, "server_error", "injected", NULL);
    }
    return 0;
}

static int token_success(struct mg_connection *conn, struct idp *o, const struct token *at,
                         const char *refresh, const char *client)
{
    char *jwt = o->id_token == ID_TOKEN_NONE
                    ? NULL
                    : id_token(client, at->email, o->id_token == ID_TOKEN_EMAIL, o->access_ttl);
    struct json_gen *g = json_gen_new(16384);
    json_gen_object_open(g);
    json_gen_key_str(g, "access_token", at->tok);
    json_gen_key_str(g, "token_type", "Bearer");
    json_gen_key_int(g, "expires_in", o->access_ttl);
    json_gen_key_str(g, "refresh_token", refresh);
    json_gen_key_str(g, "scope", at->scope);
    if (jwt != NULL)
        json_gen_key_str(g, "id_token", jwt);
    json_gen_object_close(g);
    xfree(jwt);
    return reply_json_gen(conn, 200, g, NULL);
}

/* With o->mu held: an access token for email, child of refresh token rtok
 * (NULL: the store is full); unlocks and answers. Sets *res. */
static int issue_locked(struct idp *o, struct mg_connection *conn, const char *client,
                        const char *email, const char *scope, const char *rtok, enum result *res)
{
    struct token *at = rtok ? add_token(o, 0, client, email, scope, rtok) : NULL;
    struct token copy;
    if (at != NULL)
        copy = *at;
    pthread_mutex_unlock(&o->mu);
    if (at == NULL) {
        *res = R_500;
        return oauth_error(conn, 500, "server_error", "token store full", NULL);
    }
    *res = R_OK;
    return token_success(conn, o, &copy, rtok, client);
}

/* The grant itself, after client authentication; sets *res. */
static int grant_code(struct idp *o, struct mg_connection *conn, const char *body, size_t len,
                      const char *client, enum result *res)
{
    char code[64], redirect_uri[FIELD_MAX], verifier[256];
    if (form(body, len, "code", code, sizeof code) < 0 ||
        form(body, len, "redirect_uri", redirect_uri, sizeof redirect_uri) < 0 ||
        form(body, len, "code_verifier", verifier, sizeof verifier) < 0 || code[0] == '\0') {
        *res = R_INVALID_REQUEST;
        return oauth_error(conn, 400, "invalid_request", "code is required", NULL);
    }
    pthread_mutex_lock(&o->mu);
    struct code *c = NULL;
    for (size_t i = 0; i < o->ncodes && c == NULL; i++)
        if (strcmp(o->codes[i].code, code) == 0)
            c = &o->codes[i];
    const char *why = NULL;
    if (c == NULL)
        why = "unknown code";
    else if (c->used)
        why = "code already used";
    else if (c->expires_ms < time_now_ms())
        why = "code expired";
    else if (strcmp(c->client, client) != 0)
        why = "code issued to another client";
    else if (strcmp(c->redirect_uri, redirect_uri) != 0)
        why = "redirect_uri does not match";
    else if (!pkce_ok(verifier, c->challenge))
        why = "code_verifier does not match the challenge";
    if (c != NULL)
        c->used = 1; /* single use, also after a failed attempt */
    if (why != NULL) {
        pthread_mutex_unlock(&o->mu);
        *res = R_INVALID_GRANT;
        return oauth_error(conn, 400, "invalid_grant", why, NULL);
    }
    struct token *rt = add_token(o, 1, client, c->email, c->scope, NULL);
    char rtok[48];
    snprintf(rtok, sizeof rtok, "%s", rt ? rt->tok : "");
    return issue_locked(o, conn, client, c->email, c->scope, rt ? rtok : NULL, res);
}

static int grant_refresh(struct idp *o, struct mg_connection *conn, const char *body, size_t len,
                         const char *client, enum result *res)
{
    char refresh[64];
    if (form(body, len, "refresh_token", refresh, sizeof refresh) < 0 || refresh[0] == '\0') {
        *res = R_INVALID_REQUEST;
        return oauth_error(conn, 400, "invalid_request", "refresh_token is required", NULL);
    }
    pthread_mutex_lock(&o->mu);
    struct token *rt = find_token(o, refresh);
    const char *why = NULL;
    if (rt == NULL || !rt->is_refresh)
        why = "unknown refresh token";
    else if (rt->revoked)
        why = "refresh token revoked";
    else if (strcmp(rt->client, client) != 0)
        why = "refresh token issued to another client";
    if (why != NULL) {
        pthread_mutex_unlock(&o->mu);
        *res = R_INVALID_GRANT;
        return oauth_error(conn, 400, "invalid_grant", why, NULL);
    }
    char email[EMAIL_MAX], rtok[48];
    char *scope = xstrdup(rt->scope);
    snprintf(email, sizeof email, "%s", rt->email);
    snprintf(rtok, sizeof rtok, "%s", rt->tok);
    if (o->rotate_refresh) {
        rt->revoked = 1; /* rt may move when the array grows: not used below */
        struct token *nrt = add_token(o, 1, client, email, scope, NULL);
        if (nrt != NULL)
            snprintf(rtok, sizeof rtok, "%s", nrt->tok);
    }
    int rc = issue_locked(o, conn, client, email, scope, rtok, res);
    xfree(scope);
    return rc;
}

static int on_token(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (strcmp(ri->request_method, "POST") != 0)
        return oauth_error(conn, 405, "invalid_request", "use POST", NULL);
    pthread_mutex_lock(&o->mu);
    if (++o->token_concurrent > o->token_max_concurrent)
        o->token_max_concurrent = o->token_concurrent;
    pthread_mutex_unlock(&o->mu);

    enum grant grant = G_OTHER;
    enum result res = R_INVALID_REQUEST;
    int status;
    size_t len = 0;
    char *body = read_body(conn, &len);
    char gt[64] = "", client[ID_MAX];
    if (body != NULL && form(body, len, "grant_type", gt, sizeof gt) == 0) {
        if (strcmp(gt, "authorization_code") == 0)
            grant = G_CODE;
        else if (strcmp(gt, "refresh_token") == 0)
            grant = G_REFRESH;
    }
    if (body == NULL) {
        status = oauth_error(conn, 413, "invalid_request", "body too large", NULL);
    } else if ((status = apply_inject(conn, take_inject(o, EP_TOKEN), &res)) != 0) {
        /* answered with the injected error */
    } else if (client_auth(o, conn, body, len, client) < 0) {
        res = R_INVALID_CLIENT;
        status = oauth_error(conn, 401, "invalid_client", "client authentication failed",
                             "WWW-Authenticate: Basic realm=\"token\"\r\n");
    } else if (grant == G_CODE) {
        status = grant_code(o, conn, body, len, client, &res);
    } else if (grant == G_REFRESH) {
        status = grant_refresh(o, conn, body, len, client, &res);
    } else {
        res = R_UNSUPPORTED;
        status = oauth_error(conn, 400, "unsupported_grant_type", NULL, NULL);
    }
    xfree(body);
    pthread_mutex_lock(&o->mu);
    o->token_concurrent--;
    o->token_calls[grant][res]++;
    pthread_mutex_unlock(&o->mu);
    return status;
}

/* ---- /userinfo, /revoke, /introspect ---- */

/* The Bearer token of the request into out ("" when none). */
static void bearer(struct mg_connection *conn, char *out, size_t cap)
{
    const char *h = mg_get_header(conn, "Authorization");
    out[0] = '\0';
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0 && strlen(h + 7) < cap)
        snprintf(out, cap, "%s", h + 7);
}

static int on_userinfo(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    enum result res = R_OK;
    int status = apply_inject(conn, take_inject(o, EP_USERINFO), &res);
    if (status != 0)
        return status;
    char tok[128], email[EMAIL_MAX] = "";
    bearer(conn, tok, sizeof tok);
    pthread_mutex_lock(&o->mu);
    o->userinfo++;
    struct token *t = find_token(o, tok);
    if (t != NULL && !t->is_refresh && token_active(t))
        snprintf(email, sizeof email, "%s", t->email);
    pthread_mutex_unlock(&o->mu);
    if (email[0] == '\0')
        return oauth_error(conn, 401, "invalid_token", NULL,
                           "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
    char sub[33];
    sub_of(email, sub);
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "email", email);
    json_gen_key_str(g, "sub", sub);
    json_gen_object_close(g);
    return reply_json_gen(conn, 200, g, NULL);
}

/* The token= of a POST body (or of the query string, or a Bearer header). */
static int token_param(struct mg_connection *conn, char *out, size_t cap)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    size_t len = 0;
    char *body = read_body(conn, &len);
    if (body == NULL)
        return -1;
    int rc = form(body, len, "token", out, cap);
    xfree(body);
    if (rc == 0 && out[0] == '\0' && ri->query_string != NULL)
        rc = form(ri->query_string, strlen(ri->query_string), "token", out, cap);
    if (rc == 0 && out[0] == '\0')
        bearer(conn, out, cap);
    return rc;
}

static int on_revoke(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    enum result res = R_OK;
    int status = apply_inject(conn, take_inject(o, EP_REVOKE), &res);
    if (status != 0)
        return status;
    char tok[128];
    if (token_param(conn, tok, sizeof tok) < 0 || tok[0] == '\0')
        return oauth_error(conn, 400, "invalid_request", "token is required", NULL);
    pthread_mutex_lock(&o->mu);
    o->revocations++;
    struct token *t = find_token(o, tok);
    if (t != NULL) {
        t->revoked = 1;
        if (t->is_refresh)
            for (size_t i = 0; i < o->ntokens; i++)
                if (strcmp(o->tokens[i].parent, tok) == 0)
                    o->tokens[i].revoked = 1;
    }
    pthread_mutex_unlock(&o->mu);
    return http_reply(conn, 200, "application/json", "{}", 2); /* RFC 7009 2.2: always 200 */
}

static int on_introspect(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    enum result res = R_OK;
    int status = apply_inject(conn, take_inject(o, EP_INTROSPECT), &res);
    if (status != 0)
        return status;
    char tok[128];
    if (token_param(conn, tok, sizeof tok) < 0)
        return oauth_error(conn, 400, "invalid_request", "body too large", NULL);
    pthread_mutex_lock(&o->mu);
    o->introspections++;
    struct token *t = find_token(o, tok);
    int active = t != NULL && token_active(t);
    struct token copy;
    if (active) {
        o->introspections_active++;
        copy = *t;
    }
    pthread_mutex_unlock(&o->mu);
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_bool(g, "active", active);
    if (active) {
        char sub[33];
        sub_of(copy.email, sub);
        json_gen_key_str(g, "username", copy.email);
        json_gen_key_str(g, "email", copy.email);
        json_gen_key_str(g, "sub", sub);
        json_gen_key_str(g, "client_id", copy.client);
        json_gen_key_str(g, "token_type", copy.is_refresh ? "refresh_token" : "Bearer");
        if (!copy.is_refresh)
            json_gen_key_int(g, "exp", copy.exp_ms / 1000);
    }
    json_gen_object_close(g);
    return reply_json_gen(conn, 200, g, NULL);
}

/* ---- Control ---- */

static int control_error(struct mg_connection *conn, const char *message)
{
    return http_reply_error(conn, 400, "invalid", message);
}

/* The request's JSON object in *v (json_free() it): returns 0, or the
 * status of the error answer already sent. */
static int read_json(struct mg_connection *conn, yajl_val *v)
{
    size_t len = 0;
    char *body = read_body(conn, &len);
    char err[256];
    if (body == NULL || json_parse_object(body, len, 8, v, err, sizeof err) < 0) {
        xfree(body);
        return control_error(conn, body == NULL ? "body too large" : err);
    }
    xfree(body);
    return 0;
}

static int on_config(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    yajl_val v = NULL;
    int rc0 = read_json(conn, &v);
    if (rc0 != 0)
        return rc0;
    int64_t ttl = -1;
    int rot = -1;
    int rc = json_get_int(v, "access_ttl", &ttl);
    if ((rc < 0 && rc != -SIMAP_ENOTFOUND) || (rc == 0 && (ttl < 1 || ttl > 86400))) {
        json_free(v);
        return control_error(conn, "access_ttl must be 1..86400");
    }
    rc = json_get_bool(v, "rotate_refresh", &rot);
    if (rc < 0 && rc != -SIMAP_ENOTFOUND) {
        json_free(v);
        return control_error(conn, "rotate_refresh must be true or false");
    }
    static const char *const kinds[] = {"email", "no_email", "none"};
    const char *kind = json_get_str(v, "id_token");
    int id_kind = -1;
    for (int i = 0; kind != NULL && i < 3; i++)
        if (strcmp(kind, kinds[i]) == 0)
            id_kind = i;
    if ((kind != NULL && id_kind < 0) || (kind == NULL && json_get(v, "id_token") != NULL)) {
        json_free(v);
        return control_error(conn, "id_token must be email, no_email or none");
    }
    yajl_val clients = json_get(v, "clients");
    if (clients != NULL && !YAJL_IS_ARRAY(clients)) {
        json_free(v);
        return control_error(conn, "clients must be an array");
    }
    for (size_t i = 0; clients != NULL && i < clients->u.array.len; i++) {
        const char *id = json_get_str(clients->u.array.values[i], "id");
        const char *secret = json_get_str(clients->u.array.values[i], "secret");
        if (id == NULL || secret == NULL || idp_add_client(o, id, secret) < 0) {
            json_free(v);
            return control_error(conn, "each client needs an id and a secret (1..127 bytes)");
        }
    }
    json_free(v);
    pthread_mutex_lock(&o->mu);
    if (ttl > 0)
        o->access_ttl = (int)ttl;
    if (rot >= 0)
        o->rotate_refresh = rot;
    if (id_kind >= 0)
        o->id_token = (enum id_token_kind)id_kind;
    pthread_mutex_unlock(&o->mu);
    return http_reply(conn, 200, "application/json", "{\"ok\":true}", 11);
}

static int on_inject(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    yajl_val v = NULL;
    int rc0 = read_json(conn, &v);
    if (rc0 != 0)
        return rc0;
    const char *ep = json_get_str(v, "endpoint"), *error = json_get_str(v, "error");
    int64_t count = 1, retry_after = 0, delay_ms = 2000;
    int e = -1;
    for (int i = 0; ep != NULL && i < EP_COUNT; i++)
        if (strcmp(ep, endpoint_names[i]) == 0)
            e = i;
    enum inject_kind kind = INJ_NONE;
    if (error != NULL && strcmp(error, "invalid_grant") == 0)
        kind = INJ_INVALID_GRANT;
    else if (error != NULL && strcmp(error, "429") == 0)
        kind = INJ_429;
    else if (error != NULL && strcmp(error, "500") == 0)
        kind = INJ_500;
    else if (error != NULL && strcmp(error, "slow") == 0)
        kind = INJ_SLOW;
    int is_none = error != NULL && strcmp(error, "none") == 0;
    int bad = (json_get_int(v, "count", &count) == -SIMAP_EINVAL) ||
              (json_get_int(v, "retry_after", &retry_after) == -SIMAP_EINVAL) ||
              (json_get_int(v, "delay_ms", &delay_ms) == -SIMAP_EINVAL);
    json_free(v);
    if (e < 0)
        return control_error(conn, "endpoint must be token, userinfo, introspect or revoke");
    if (kind == INJ_NONE && !is_none)
        return control_error(conn, "error must be invalid_grant, 429, 500, slow or none");
    if (bad || count < 0 || count > 1000000 || retry_after < 0 || retry_after > 86400 ||
        delay_ms < 0 || delay_ms > 60000)
        return control_error(conn, "count 0..1000000, retry_after 0..86400, delay_ms 0..60000");
    pthread_mutex_lock(&o->mu);
    o->inj[e] = (struct inject){kind, (int)count, (int)retry_after, (int)delay_ms};
    pthread_mutex_unlock(&o->mu);
    return http_reply(conn, 200, "application/json", "{\"ok\":true}", 11);
}

static int on_stats(struct mg_connection *conn, void *cbdata)
{
    struct idp *o = cbdata;
    struct json_gen *g = json_gen_new(16384);
    pthread_mutex_lock(&o->mu);
    json_gen_object_open(g);
    json_gen_key_object(g, "token");
    long long total = 0;
    for (int gi = 0; gi < G_COUNT; gi++) {
        json_gen_key_object(g, grant_names[gi]);
        for (int r = 0; r < R_COUNT; r++) {
            json_gen_key_int(g, result_names[r], o->token_calls[gi][r]);
            total += o->token_calls[gi][r];
        }
        json_gen_object_close(g);
    }
    json_gen_object_close(g);
    json_gen_key_int(g, "token_calls", total);
    json_gen_key_int(g, "token_concurrent", o->token_concurrent);
    json_gen_key_int(g, "token_max_concurrent", o->token_max_concurrent);
    json_gen_key_int(g, "revocations", o->revocations);
    json_gen_key_int(g, "introspections", o->introspections);
    json_gen_key_int(g, "introspections_active", o->introspections_active);
    json_gen_key_int(g, "userinfo", o->userinfo);
    json_gen_key_int(g, "authorize_allow", o->authorize_allow);
    json_gen_key_int(g, "authorize_deny", o->authorize_deny);
    json_gen_key_int(g, "access_ttl", o->access_ttl);
    json_gen_key_bool(g, "rotate_refresh", o->rotate_refresh);
    json_gen_object_close(g);
    pthread_mutex_unlock(&o->mu);
    return reply_json_gen(conn, 200, g, NULL);
}

/* ---- Lifetime ---- */

struct idp *idp_new(int access_ttl, int rotate_refresh)
{
    struct idp *o = xcalloc(1, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    o->access_ttl = access_ttl;
    o->rotate_refresh = rotate_refresh;
    return o;
}

void idp_free(struct idp *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->ncodes; i++) {
        xfree(o->codes[i].redirect_uri);
        xfree(o->codes[i].scope);
    }
    for (size_t i = 0; i < o->ntokens; i++)
        xfree(o->tokens[i].scope);
    xfree(o->codes);
    xfree(o->tokens);
    pthread_mutex_destroy(&o->mu);
    xfree(o);
}

int idp_add_client(struct idp *o, const char *id, const char *secret)
{
    if (id[0] == '\0' || secret[0] == '\0' || strlen(id) >= ID_MAX || strlen(secret) >= ID_MAX)
        return -1;
    pthread_mutex_lock(&o->mu);
    struct client *c = (struct client *)find_client(o, id);
    if (c == NULL && o->nclients < CLIENTS_MAX)
        c = &o->clients[o->nclients++];
    if (c != NULL) {
        snprintf(c->id, sizeof c->id, "%s", id);
        snprintf(c->secret, sizeof c->secret, "%s", secret);
    }
    pthread_mutex_unlock(&o->mu);
    return c != NULL ? 0 : -1;
}

void idp_routes(struct idp *o, struct http_server *srv)
{
    http_route(srv, "/authorize$", on_authorize, o);
    http_route(srv, "/token$", on_token, o);
    http_route(srv, "/userinfo$", on_userinfo, o);
    http_route(srv, "/revoke$", on_revoke, o);
    http_route(srv, "/introspect$", on_introspect, o);
    http_route(srv, "/control/config$", on_config, o);
    http_route(srv, "/control/inject$", on_inject, o);
    http_route(srv, "/control/stats$", on_stats, o);
}
