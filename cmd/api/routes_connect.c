/*
 * cmd/api/routes_connect: the connect pages a partner's users open in a
 * browser, at the original's addresses (SUPERIMAP_PUBLIC_URL + path):
 *
 *   GET  /users/connect/new?user_id&ts&sig[&success&failure]
 *        OAuth2 provider: 302 to its authorization endpoint (RFC 6749 4.1.1)
 *        with a single-use state bound to this browser by a cookie and a
 *        PKCE S256 challenge (RFC 7636). PLAIN provider: a form (user name,
 *        password; no script) posted back here.
 *   POST /users/connect/new   the PLAIN form: tries the login on the IMAP
 *        server now, saves it only when the server accepts it
 *   GET  /users/connect/callback?code&state | ?error&state   (RFC 6749 4.1.2)
 *        takes the state (once), checks the cookie, exchanges the code with
 *        the PKCE verifier, stores the tokens sealed, connects the user
 *   GET  /users/disconnect/new?user_id&ts&sig[&success&failure]
 *        revokes the refresh token (RFC 7009, best effort), clears the
 *        user's credentials, queues user_disconnected
 *
 * Links are the ones views.c writes into the user's JSON: HMAC-signed,
 * valid 30 minutes, single use. Every way out is a redirect: to the success
 * URL exactly as given (the original added nothing), or to the failure URL
 * with error=<reason> (connect.h's results); the partner's URLs stand in
 * for missing ones, and a page says it in words when there is no URL at
 * all. The user changes only in the one script that connects or
 * disconnects it, so a failure leaves it as it was.
 *
 * No code, token, password or secret reaches a log line.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/api/connect.h"
#include "cmd/api/imap_login.h"
#include "cmd/api/oauth_http.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"

#define FORM_TRIES_MAX  10   /* PLAIN form logins per user per 15 minutes */
#define ACCESS_TTL_S    3600 /* an access token's life when the provider does not say */
#define STATE_TOKEN_MAX 64   /* bytes of a state we look up */
#define PAGE_MAX        (256 * 1024)

/* ---- Pages ---- */

static void count(struct req *r, enum connect_result res)
{
    metric_inc(r->api->m_connect[res]);
}

/* What the person reads when there is no URL to go back to. */
static const char *result_words(enum connect_result res)
{
    switch (res) {
    case CONNECT_CONNECTED:
        return "Your mailbox is connected. You can close this page.";
    case CONNECT_DISCONNECTED:
        return "Your mailbox is disconnected. You can close this page.";
    case CONNECT_INVALID_LINK:
        return "This link is not valid. Ask for a new one.";
    case CONNECT_EXPIRED:
        return "This link has expired. Ask for a new one.";
    case CONNECT_USED:
        return "This link has already been used. Ask for a new one.";
    case CONNECT_INVALID_STATE:
        return "This page has expired or was already used. Start again from a new link.";
    case CONNECT_BROWSER:
        return "This sign-in was started in another browser. Start again from a new link.";
    case CONNECT_DENIED:
        return "Access was not granted, so the mailbox is not connected.";
    case CONNECT_USER_GONE:
        return "This account is no longer available.";
    case CONNECT_EMAIL_TAKEN:
        return "Another account already uses this email address.";
    case CONNECT_UNAVAILABLE:
        return "The mail provider could not be reached. Try again in a few minutes.";
    default:
        return "The mailbox could not be connected. Try again from a new link.";
    }
}

/* A whole page around body (already escaped). */
static int page(struct req *r, int status, const char *title, const char *body, const char *headers)
{
    struct buf b;
    buf_init(&b, PAGE_MAX);
    buf_printf(&b,
               "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
               "<title>%s</title><style>body{font-family:sans-serif;max-width:30em;"
               "margin:3em auto;padding:0 1em}label,input,button{display:block;margin:.4em 0}"
               "input{width:100%%;box-sizing:border-box}.error{color:#a00}</style></head>\n"
               "<body><h1>%s</h1>\n%s\n</body></html>\n",
               title, title, body);
    int rc = reply_html(r, status, b.data, headers);
    buf_free(&b);
    return rc;
}

static int words_page(struct req *r, int status, enum connect_result res)
{
    char body[512];
    snprintf(body, sizeof body, "<p id=\"result\" data-result=\"%s\">%s</p>",
             connect_result_str(res), result_words(res));
    return page(r, status, res == CONNECT_CONNECTED ? "Connected" : "Mailbox connection", body,
                NULL);
}

/* Ends a failed request: to failure with error=<code> (the result's name
 * when code is NULL), or a page saying why when there is no failure URL. */
static int fail(struct req *r, const char *failure, enum connect_result res, const char *code)
{
    count(r, res);
    if (failure != NULL && *failure != '\0') {
        char *url = connect_url_with_error(failure, code ? code : connect_result_str(res));
        int rc = reply_redirect(r, url, NULL);
        xfree(url);
        return rc;
    }
    int status = res == CONNECT_SERVER_ERROR || res == CONNECT_UNAVAILABLE ? 503
                 : res == CONNECT_INVALID_LINK                             ? 404
                                                                           : 400;
    return words_page(r, status, res);
}

/* Ends a request that worked: to success exactly as given, or a page. */
static int succeed(struct req *r, const char *success, enum connect_result res, const char *headers)
{
    count(r, res);
    if (success != NULL && *success != '\0')
        return reply_redirect(r, success, headers);
    return words_page(r, 200, res);
}

/* ---- The browser ---- */

/* The browser's connect cookie into cookie (a new one when it has none) and
 * its SHA-256 hex into browser; the Set-Cookie line into header. */
static void browser_of(struct req *r, char cookie[64], char browser[65], char header[256])
{
    if (!connect_cookie_get(mg_get_header(r->conn, "Cookie"), CONNECT_COOKIE, cookie, 64)) {
        char *fresh = crypto_token(24);
        snprintf(cookie, 64, "%s", fresh);
        xfree(fresh);
    }
    if (crypto_sha256_hex(cookie, strlen(cookie), browser) < 0)
        browser[0] = '\0';
    int secure = strncmp(r->api->cfg->public_url, "https:", 6) == 0;
    snprintf(header, 256,
             "Set-Cookie: %s=%s; Path=/users/; Max-Age=%d; HttpOnly; SameSite=Lax%s\r\n",
             CONNECT_COOKIE, cookie, CONNECT_STATE_TTL, secure ? "; Secure" : "");
}

/* The SHA-256 hex of the cookie the browser sent into browser; 0 when it
 * sent none. */
static int browser_sent(struct req *r, char browser[65])
{
    char cookie[64];
    if (!connect_cookie_get(mg_get_header(r->conn, "Cookie"), CONNECT_COOKIE, cookie,
                            sizeof cookie))
        return 0;
    return crypto_sha256_hex(cookie, strlen(cookie), browser) == 0;
}

/* ---- Links ---- */

/* A followed link and the records it leads to. */
struct link_ctx {
    struct connect_link link;
    struct rec user, partner, provider, conn;
    const char *success, *failure; /* the link's, else the partner's; borrowed */
    int oauth2;
};

static void link_ctx_free(struct link_ctx *c)
{
    connect_link_free(&c->link);
    rec_free(&c->user);
    rec_free(&c->partner);
    rec_free(&c->provider);
    rec_free(&c->conn);
}

/* Checks the link of kind this request followed and reads its user,
 * partner, provider and connection. 0 when it may be used (now marked
 * used), else the status replied. */
static int open_link(struct req *r, const char *kind, struct link_ctx *c)
{
    memset(c, 0, sizeof *c);
    const struct mg_request_info *ri = mg_get_request_info(r->conn);
    const char *q = ri->query_string != NULL ? ri->query_string : "";
    if (connect_link_parse(q, strlen(q), &c->link) < 0)
        return fail(r, NULL, CONNECT_INVALID_LINK, NULL);
    int rc = store_user_by_uid(r, c->link.uid, &c->user);
    if (rc == 0)
        rc = store_partner_get(r, rec_get(&c->user, "pid"), &c->partner);
    if (rc == -SIMAP_ECONN)
        return fail(r, NULL, CONNECT_SERVER_ERROR, NULL);
    if (rc < 0)
        return fail(r, NULL, CONNECT_INVALID_LINK, NULL);
    c->success = c->link.success ? c->link.success : rec_get(&c->partner, "success_url");
    c->failure = c->link.failure ? c->link.failure : rec_get(&c->partner, "failure_url");
    switch (connect_link_verify(r->api->link_key, kind, &c->link, store_time_ms(r) / 1000)) {
    case CONNECT_LINK_FORGED:
        /* Nothing the link says is ours but the user: only the partner's
         * own failure URL is safe to send the browser to. */
        return fail(r, rec_get(&c->partner, "failure_url"), CONNECT_INVALID_LINK, NULL);
    case CONNECT_LINK_EXPIRED:
        return fail(r, c->failure, CONNECT_EXPIRED, NULL);
    case CONNECT_LINK_OK:
        break;
    }
    if (strcmp(rec_get(&c->user, "archived"), "1") == 0)
        return fail(r, c->failure, CONNECT_USER_GONE, NULL);
    const char *pid = rec_get(&c->user, "pid"), *code = rec_get(&c->user, "code");
    rc = store_provider_get(r, code, &c->provider);
    if (rc == 0)
        rc = store_conn_get(r, pid, code, &c->conn);
    if (rc == -SIMAP_ENOTFOUND)
        return fail(r, c->failure, CONNECT_USER_GONE, NULL);
    if (rc < 0)
        return fail(r, c->failure, CONNECT_SERVER_ERROR, NULL);
    c->oauth2 = strcmp(rec_get(&c->provider, "auth"), "oauth2") == 0;
    rc = store_link_use(r, c->link.sig);
    if (rc == -SIMAP_ESTATE)
        return fail(r, c->failure, CONNECT_USED, NULL);
    if (rc < 0)
        return fail(r, c->failure, CONNECT_SERVER_ERROR, NULL);
    return 0;
}

/* ---- The PLAIN form ---- */

static int form_page(struct req *r, int status, const char *state, const char *username,
                     const char *error, const char *headers)
{
    char *st = connect_html_escape(state);
    char *un = connect_html_escape(username);
    char *er = connect_html_escape(error != NULL ? error : "");
    struct buf b;
    buf_init(&b, PAGE_MAX);
    if (error != NULL)
        buf_printf(&b, "<p class=\"error\" id=\"error\" role=\"alert\">%s</p>\n", er);
    buf_printf(&b,
               "<p>Sign in to your mailbox to connect it.</p>\n"
               "<form method=\"post\" action=\"new\">\n"
               "<input type=\"hidden\" name=\"state\" value=\"%s\">\n"
               "<label for=\"username\">User name</label>\n"
               "<input id=\"username\" name=\"username\" value=\"%s\" autocomplete=\"username\" "
               "required>\n"
               "<label for=\"password\">Password</label>\n"
               "<input id=\"password\" name=\"password\" type=\"password\" "
               "autocomplete=\"current-password\" required>\n"
               "<button id=\"connect\" type=\"submit\">Connect</button>\n</form>",
               st, un);
    int rc = page(r, status, "Connect your mailbox", b.data, headers);
    buf_free(&b);
    xfree(st);
    xfree(un);
    xfree(er);
    return rc;
}

/* ---- GET /users/connect/new ---- */

/* The redirect URI registered with the provider: the original's. */
static char *redirect_uri(const struct api *a)
{
    const char *base = a->cfg->public_url;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    size_t len = n + 32;
    char *uri = xmalloc(len);
    snprintf(uri, len, "%.*s/users/connect/callback", (int)n, base);
    return uri;
}

static int connect_new(struct req *r)
{
    struct link_ctx c;
    int rc = open_link(r, "connect", &c);
    if (rc != 0) {
        link_ctx_free(&c);
        return rc;
    }
    char cookie[64], browser[65], set_cookie[256];
    browser_of(r, cookie, browser, set_cookie);
    char *state = crypto_token(32);
    struct connect_flow f;
    memset(&f, 0, sizeof f);
    snprintf(f.uid, sizeof f.uid, "%s", c.link.uid);
    snprintf(f.browser, sizeof f.browser, "%s", browser);
    f.success = xstrdup(c.success);
    f.failure = xstrdup(c.failure);
    f.verifier = c.oauth2 ? connect_pkce_verifier() : xstrdup("");
    char *record = connect_flow_encode(&f);
    rc = store_flow_put(r, state, record);
    if (rc == 0)
        rc = store_browser_put(r, browser, c.failure);
    crypto_wipe_str(&record);
    if (rc < 0) {
        rc = fail(r, c.failure, CONNECT_SERVER_ERROR, NULL);
    } else if (c.oauth2) {
        char *challenge = connect_pkce_challenge(f.verifier);
        char *uri = redirect_uri(r->api);
        const char *client_id = rec_get(&c.conn, "oauth2_client_id");
        struct connect_authz az = {
            .authorize_url = rec_get(&c.provider, "oauth2_authorize_url"),
            .client_id = client_id,
            .redirect_uri = uri,
            .scope = rec_get(&c.provider, "oauth2_scope"),
            .state = state,
            .code_challenge = challenge,
            .login_hint = rec_get(&c.user, "email"),
            .extra_json = rec_get(&c.provider, "oauth2_authorize_params"),
        };
        char *url = *client_id != '\0' ? connect_authorize_url(&az) : NULL;
        if (url == NULL) {
            log_error("connect page cannot build the authorization request (no client id, "
                      "or bad oauth2_authorize_params) pid=%s code=%s",
                      rec_get(&c.user, "pid"), rec_get(&c.user, "code"));
            rc = fail(r, c.failure, CONNECT_SERVER_ERROR, NULL);
        } else {
            count(r, CONNECT_REDIRECTED);
            rc = reply_redirect(r, url, set_cookie);
        }
        xfree(url);
        xfree(uri);
        xfree(challenge);
    } else {
        const char *name = rec_get(&c.user, "username");
        count(r, CONNECT_FORM);
        rc = form_page(r, 200, state, *name ? name : rec_get(&c.user, "email"), NULL, set_cookie);
    }
    connect_flow_free(&f);
    xfree(state);
    link_ctx_free(&c);
    return rc;
}

/* ---- Flows ---- */

/* The flow named by the request's state parameter, taken (deleted) when
 * take, into *f. 0 when it exists and belongs to this browser; else the
 * status replied. */
static int open_flow(struct req *r, int take, struct connect_flow *f)
{
    memset(f, 0, sizeof *f);
    const struct param *st = params_get(&r->params, "state");
    char browser[65] = "";
    int has_browser = browser_sent(r, browser);
    char *record = NULL;
    int rc = -SIMAP_ENOTFOUND;
    if (st != NULL && st->type == PARAM_STR && params_is_token(st->value, STATE_TOKEN_MAX, "_-"))
        rc = store_flow_get(r, st->value, take, &record);
    if (rc == -SIMAP_ECONN)
        return fail(r, NULL, CONNECT_SERVER_ERROR, NULL);
    if (rc == 0 && connect_flow_decode(record, strlen(record), f) < 0)
        rc = -SIMAP_ENOTFOUND;
    crypto_wipe_str(&record);
    if (rc < 0) {
        char *failure = has_browser ? store_browser_failure(r, browser) : NULL;
        rc = fail(r, failure, CONNECT_INVALID_STATE, NULL);
        xfree(failure);
        return rc;
    }
    if (!has_browser || !crypto_equal(browser, strlen(browser), f->browser, strlen(f->browser))) {
        if (!take)
            store_flow_drop(r, st->value);
        return fail(r, f->failure, CONNECT_BROWSER, NULL);
    }
    return 0;
}

/* ---- The provider's endpoints ---- */

/* Adds the client's credentials to form, or to req as HTTP Basic (RFC
 * 6749 section 2.3.1: both form-encoded first) when the provider says
 * oauth2_token_auth=basic. The strings made are kept in owned (xfree()
 * them, wiping owned[1]). */
static void client_auth(const struct rec *prov, const char *client_id, const char *secret,
                        struct buf *form, struct oauth_http_req *req, char *owned[2])
{
    owned[0] = connect_pct_encode(client_id);
    owned[1] = connect_pct_encode(secret != NULL ? secret : "");
    if (strcmp(rec_get(prov, "oauth2_token_auth"), "basic") == 0) {
        req->user = owned[0];
        req->password = owned[1];
    } else {
        buf_printf(form, "&client_id=%s", owned[0]);
        if (secret != NULL && *secret != '\0')
            buf_printf(form, "&client_secret=%s", owned[1]);
    }
}

static void free_auth(char *owned[2])
{
    xfree(owned[0]);
    crypto_wipe_str(&owned[1]);
}

static void wipe_buf(struct buf *b)
{
    if (b->data != NULL)
        crypto_wipe(b->data, b->len);
    buf_free(b);
}

/* Exchanges code at the token endpoint (RFC 6749 4.1.3, RFC 7636 4.5)
 * into *t. Returns CONNECT_CONNECTED when tokens came, else the failure. */
static enum connect_result exchange(struct req *r, const struct rec *u, const struct rec *prov,
                                    const struct rec *conn, const char *code, const char *verifier,
                                    struct connect_tokens *t)
{
    memset(t, 0, sizeof *t);
    char *secret = store_conn_open_secret(r, rec_get(u, "pid"), rec_get(u, "code"), conn);
    char *uri = redirect_uri(r->api);
    char *e_code = connect_pct_encode(code), *e_uri = connect_pct_encode(uri),
         *e_ver = connect_pct_encode(verifier);
    struct buf form;
    buf_init(&form, 64 * 1024);
    buf_printf(&form, "grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s",
               e_code, e_uri, e_ver);
    struct oauth_http_req req = {.url = rec_get(prov, "oauth2_token_url")};
    char *owned[2];
    client_auth(prov, rec_get(conn, "oauth2_client_id"), secret, &form, &req, owned);
    req.form = form.data;
    struct oauth_http_res res;
    int rc = oauth_http_call(r->api, &req, &res);
    free_auth(owned);
    wipe_buf(&form);
    crypto_wipe_str(&e_code);
    xfree(e_uri);
    crypto_wipe_str(&e_ver);
    xfree(uri);
    crypto_wipe_str(&secret);
    enum connect_result out = CONNECT_CONNECTED;
    if (rc < 0) {
        log_warn("connect token endpoint unreachable uid=%s code=%s err=\"%s\"", rec_get(u, "uid"),
                 rec_get(u, "code"), res.err);
        out = CONNECT_UNAVAILABLE;
    } else if (res.status == 429 || res.status >= 500) {
        log_warn("connect token endpoint failed uid=%s code=%s status=%ld", rec_get(u, "uid"),
                 rec_get(u, "code"), res.status);
        out = CONNECT_UNAVAILABLE;
    } else if (connect_tokens_parse(res.body, res.len, t) < 0 || res.status != 200 ||
               t->error != NULL || t->access_token == NULL) {
        char why[80];
        connect_error_code(t->error, why, sizeof why);
        log_info("connect token endpoint refused the code uid=%s code=%s status=%ld error=%s",
                 rec_get(u, "uid"), rec_get(u, "code"), res.status, why);
        out = CONNECT_TOKEN_ERROR;
    }
    oauth_http_res_free(&res);
    return out;
}

/* The user's email into *email (a new string) from the ID token, else the
 * userinfo endpoint. Returns CONNECT_CONNECTED with it, CONNECT_UNAVAILABLE
 * when userinfo could not be reached or failed (429, 5xx), CONNECT_NO_EMAIL
 * when neither named one (no userinfo URL, a refusal, an answer without
 * it). */
static enum connect_result email_of(struct req *r, const struct rec *prov,
                                    const struct connect_tokens *t, char **email)
{
    *email = t->id_token != NULL ? connect_id_token_email(t->id_token) : NULL;
    const char *url = rec_get(prov, "oauth2_userinfo_url");
    if (*email != NULL)
        return CONNECT_CONNECTED;
    if (*url == '\0')
        return CONNECT_NO_EMAIL;
    struct oauth_http_req req = {.url = url, .bearer = t->access_token};
    struct oauth_http_res res;
    enum connect_result out = CONNECT_NO_EMAIL;
    int rc = oauth_http_call(r->api, &req, &res);
    if (rc == 0 && res.status == 200)
        *email = connect_userinfo_email(res.body, res.len);
    else if (rc < 0 || res.status == 429 || res.status >= 500)
        out = CONNECT_UNAVAILABLE;
    if (*email != NULL)
        out = CONNECT_CONNECTED;
    else
        log_warn("connect userinfo gave no email code=%s status=%ld err=\"%s\"",
                 rec_get(prov, "code"), res.status, res.err);
    oauth_http_res_free(&res);
    return out;
}

/* ---- GET /users/connect/callback ---- */

static int connect_callback(struct req *r)
{
    struct connect_flow f;
    int rc = open_flow(r, 1, &f);
    if (rc != 0) {
        connect_flow_free(&f);
        return rc;
    }
    const struct param *err = params_get(&r->params, "error");
    const struct param *code = params_get(&r->params, "code");
    struct rec u, prov, conn;
    memset(&u, 0, sizeof u);
    memset(&prov, 0, sizeof prov);
    memset(&conn, 0, sizeof conn);
    struct connect_tokens t;
    memset(&t, 0, sizeof t);
    char *email = NULL;
    if (err != NULL) {
        char why[80];
        connect_error_code(err->value, why, sizeof why);
        rc = fail(r, f.failure,
                  strcmp(why, "access_denied") == 0 ? CONNECT_DENIED : CONNECT_PROVIDER_ERROR, why);
    } else if (code == NULL || code->type != PARAM_STR || code->len == 0 || code->len > 4096) {
        rc = fail(r, f.failure, CONNECT_PROVIDER_ERROR, "invalid_request");
    } else if ((rc = store_user_by_uid(r, f.uid, &u)) < 0 ||
               strcmp(rec_get(&u, "archived"), "1") == 0 ||
               (rc = store_provider_get(r, rec_get(&u, "code"), &prov)) < 0 ||
               (rc = store_conn_get(r, rec_get(&u, "pid"), rec_get(&u, "code"), &conn)) < 0) {
        rc =
            fail(r, f.failure, rc == -SIMAP_ECONN ? CONNECT_SERVER_ERROR : CONNECT_USER_GONE, NULL);
    } else {
        enum connect_result res = exchange(r, &u, &prov, &conn, code->value, f.verifier, &t);
        if (res == CONNECT_CONNECTED && t.refresh_token == NULL)
            res = CONNECT_NO_REFRESH;
        if (res == CONNECT_CONNECTED)
            res = email_of(r, &prov, &t, &email);
        if (res == CONNECT_CONNECTED) {
            char expires[24];
            snprintf(expires, sizeof expires, "%lld",
                     (long long)(store_time_ms(r) +
                                 1000 * (t.expires_in > 0 ? t.expires_in : ACCESS_TTL_S)));
            struct store_connect_in in = {.secret = t.refresh_token,
                                          .access_token = t.access_token,
                                          .expires_at = expires,
                                          .email = email};
            int queued;
            rc = store_user_connect(r, &u, &in, &queued);
            res = rc == 0                  ? CONNECT_CONNECTED
                  : rc == -SIMAP_ESTATE    ? CONNECT_EMAIL_TAKEN
                  : rc == -SIMAP_ENOTFOUND ? CONNECT_USER_GONE
                                           : CONNECT_SERVER_ERROR;
            if (rc == 0)
                log_info("user connected through the connect page uid=%s pid=%s code=%s "
                         "event=%s",
                         f.uid, rec_get(&u, "pid"), rec_get(&u, "code"),
                         queued ? "queued" : "none");
        }
        rc = res == CONNECT_CONNECTED ? succeed(r, f.success, res, NULL)
                                      : fail(r, f.failure, res, NULL);
    }
    xfree(email);
    connect_tokens_free(&t);
    rec_free(&u);
    rec_free(&prov);
    rec_free(&conn);
    connect_flow_free(&f);
    return rc;
}

/* ---- POST /users/connect/new (the PLAIN form) ---- */

static int connect_form(struct req *r)
{
    struct connect_flow f;
    int rc = open_flow(r, 0, &f);
    if (rc != 0) {
        connect_flow_free(&f);
        return rc;
    }
    const char *state = params_get(&r->params, "state")->value;
    const struct param *un = params_get(&r->params, "username");
    const struct param *pw = params_get(&r->params, "password");
    const char *username = un != NULL && un->type == PARAM_STR ? un->value : "";
    struct rec u, prov;
    memset(&u, 0, sizeof u);
    memset(&prov, 0, sizeof prov);
    long long tries = 0;
    if ((rc = store_user_by_uid(r, f.uid, &u)) < 0 || strcmp(rec_get(&u, "archived"), "1") == 0 ||
        (rc = store_provider_get(r, rec_get(&u, "code"), &prov)) < 0 ||
        strcmp(rec_get(&prov, "auth"), "plain") != 0) {
        store_flow_drop(r, state);
        rc =
            fail(r, f.failure, rc == -SIMAP_ECONN ? CONNECT_SERVER_ERROR : CONNECT_USER_GONE, NULL);
    } else if (*username == '\0' || pw == NULL || pw->type != PARAM_STR || pw->len == 0 ||
               un->len > API_TEXT_MAX || pw->len > API_SECRET_MAX ||
               !params_is_printable(username, un->len)) {
        rc = form_page(r, 200, state, username, "Enter your user name and password.", NULL);
    } else if (store_connect_try(r, f.uid, &tries) < 0) {
        rc = fail(r, f.failure, CONNECT_SERVER_ERROR, NULL);
    } else if (tries > FORM_TRIES_MAX) {
        count(r, CONNECT_RATE_LIMITED);
        rc = form_page(r, 429, state, username,
                       "Too many attempts. Wait 15 minutes, then try again.", NULL);
    } else {
        struct imap_login_target t = {
            .host = rec_get(&prov, "imap_host"),
            .port = atoi(rec_get(&prov, "imap_port")),
            .tls = rec_get(&prov, "tls"),
            .ca_file = r->api->cfg->ca_file,
        };
        char why[512];
        enum imap_login_result lr = imap_login_try(&t, username, pw->value, why, sizeof why);
        if (lr == IMAP_LOGIN_OK) {
            struct store_connect_in in = {
                .secret = pw->value, .access_token = "", .expires_at = "", .username = username};
            int queued;
            rc = store_user_connect(r, &u, &in, &queued);
            enum connect_result res = rc == 0                  ? CONNECT_CONNECTED
                                      : rc == -SIMAP_ESTATE    ? CONNECT_EMAIL_TAKEN
                                      : rc == -SIMAP_ENOTFOUND ? CONNECT_USER_GONE
                                                               : CONNECT_SERVER_ERROR;
            store_flow_drop(r, state);
            if (rc == 0)
                log_info("user connected through the connect form uid=%s pid=%s code=%s "
                         "event=%s",
                         f.uid, rec_get(&u, "pid"), rec_get(&u, "code"),
                         queued ? "queued" : "none");
            rc = rc == 0 ? succeed(r, f.success, res, NULL) : fail(r, f.failure, res, NULL);
        } else {
            count(r, lr == IMAP_LOGIN_REFUSED ? CONNECT_LOGIN_REFUSED : CONNECT_UNAVAILABLE);
            log_info("connect form login failed uid=%s code=%s result=%s", f.uid,
                     rec_get(&u, "code"), lr == IMAP_LOGIN_REFUSED ? "refused" : "unavailable");
            rc = form_page(r, 200, state, username, why, NULL);
        }
    }
    rec_free(&u);
    rec_free(&prov);
    connect_flow_free(&f);
    return rc;
}

/* ---- GET /users/disconnect/new ---- */

/* Revokes the user's refresh token at the provider (RFC 7009), best
 * effort: the result is logged, never the token. */
static void revoke(struct req *r, const struct link_ctx *c)
{
    const char *url = rec_get(&c->provider, "oauth2_revoke_url");
    char *token = *url != '\0' ? store_user_open(r, &c->user, "secret") : NULL;
    if (token == NULL)
        return;
    char *secret =
        store_conn_open_secret(r, rec_get(&c->user, "pid"), rec_get(&c->user, "code"), &c->conn);
    char *e_token = connect_pct_encode(token);
    struct buf form;
    buf_init(&form, 64 * 1024);
    buf_printf(&form, "token=%s&token_type_hint=refresh_token", e_token);
    struct oauth_http_req req = {.url = url};
    char *owned[2];
    client_auth(&c->provider, rec_get(&c->conn, "oauth2_client_id"), secret, &form, &req, owned);
    req.form = form.data;
    struct oauth_http_res res;
    if (oauth_http_call(r->api, &req, &res) == 0)
        log_info("refresh token revoked at the provider uid=%s code=%s status=%ld",
                 rec_get(&c->user, "uid"), rec_get(&c->user, "code"), res.status);
    else
        log_warn("refresh token not revoked at the provider uid=%s code=%s err=\"%s\"",
                 rec_get(&c->user, "uid"), rec_get(&c->user, "code"), res.err);
    oauth_http_res_free(&res);
    free_auth(owned);
    wipe_buf(&form);
    crypto_wipe_str(&e_token);
    crypto_wipe_str(&token);
    crypto_wipe_str(&secret);
}

static int disconnect_new(struct req *r)
{
    struct link_ctx c;
    int rc = open_link(r, "disconnect", &c);
    if (rc != 0) {
        link_ctx_free(&c);
        return rc;
    }
    if (c.oauth2)
        revoke(r, &c);
    int was, queued;
    rc = store_user_disconnect(r, &c.user, c.oauth2, &was, &queued);
    if (rc == 0) {
        log_info("user disconnected through the disconnect page uid=%s pid=%s code=%s "
                 "was_connected=%d event=%s",
                 c.link.uid, rec_get(&c.user, "pid"), rec_get(&c.user, "code"), was,
                 queued ? "queued" : "none");
        rc = succeed(r, c.success, CONNECT_DISCONNECTED, NULL);
    } else {
        rc = fail(r, c.failure, rc == -SIMAP_ENOTFOUND ? CONNECT_USER_GONE : CONNECT_SERVER_ERROR,
                  NULL);
    }
    link_ctx_free(&c);
    return rc;
}

const struct route routes_connect[] = {
    {"GET", "/users/connect/new", AUTH_NONE, connect_new},
    {"POST", "/users/connect/new", AUTH_NONE, connect_form},
    {"GET", "/users/connect/callback", AUTH_NONE, connect_callback},
    {"GET", "/users/disconnect/new", AUTH_NONE, disconnect_new},
    {NULL, NULL, AUTH_NONE, NULL},
};
