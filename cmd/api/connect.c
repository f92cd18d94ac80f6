/*
 * cmd/api/connect: the pure parts of the connect pages (connect.h has the
 * contract): signed links, redirect URLs, the OAuth 2.0 authorization
 * request with PKCE (RFC 6749 section 4.1, RFC 7636), token, ID token and
 * userinfo answers, the flow record, cookies (RFC 6265) and HTML escaping.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/api/params.h"
#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"

#define OUT_MAX (64 * 1024) /* any URL or text made here */

/* ---- Outcomes ---- */

const char *connect_result_str(enum connect_result r)
{
    static const char *const names[CONNECT_RESULTS] = {"redirected",
                                                       "form",
                                                       "connected",
                                                       "disconnected",
                                                       "invalid_link",
                                                       "link_expired",
                                                       "link_used",
                                                       "invalid_state",
                                                       "browser_mismatch",
                                                       "access_denied",
                                                       "provider_error",
                                                       "token_error",
                                                       "provider_unavailable",
                                                       "no_refresh_token",
                                                       "no_email",
                                                       "email_taken",
                                                       "user_gone",
                                                       "login_refused",
                                                       "rate_limited",
                                                       "server_error"};
    return r >= 0 && r < CONNECT_RESULTS ? names[r] : "server_error";
}

/* ---- Signed links ---- */

void connect_link_sig(const unsigned char key[32], const char *kind, const char *uid, int64_t ts,
                      char out[CONNECT_SIG_LEN + 1])
{
    char msg[128];
    int n = snprintf(msg, sizeof msg, "%s\n%s\n%lld", kind, uid, (long long)ts);
    unsigned char mac[CRYPTO_SHA256_LEN];
    out[0] = '\0';
    if (n < 0 || (size_t)n >= sizeof msg || crypto_hmac_sha256(key, 32, msg, (size_t)n, mac) < 0)
        return;
    char *b64 = crypto_b64url_encode(mac, sizeof mac);
    snprintf(out, CONNECT_SIG_LEN + 1, "%s", b64);
    xfree(b64);
}

static int is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* A URL parameter accepted for success= or failure=: *dst gets a copy, or
 * stays NULL and bad counts it. */
static void take_url(const struct params *p, const char *name, char **dst, int *bad)
{
    const struct param *v = params_get(p, name);
    if (v == NULL || v->type != PARAM_STR || v->len == 0)
        return;
    if (connect_url_ok(v->value))
        *dst = xstrdup(v->value);
    else
        (*bad)++;
}

int connect_link_parse(const char *q, size_t n, struct connect_link *out)
{
    memset(out, 0, sizeof *out);
    if (n > OUT_MAX)
        return -SIMAP_EINVAL;
    /* The README sample of the original appended "?success=" to a URL that
     * had a query already: that '?' separates parameters like '&'. */
    char *copy = xmalloc(n + 1);
    memcpy(copy, q, n);
    copy[n] = '\0';
    for (char *s = copy; (s = strchr(s, '?')) != NULL; s++) {
        if (strncmp(s + 1, "success=", 8) == 0 || strncmp(s + 1, "failure=", 8) == 0) {
            *s = '&';
            break;
        }
    }
    struct params p;
    params_init(&p);
    int rc = params_parse_form(&p, copy, n, NULL, 0);
    xfree(copy);
    if (rc < 0) {
        params_free(&p);
        return -SIMAP_EINVAL;
    }
    take_url(&p, "success", &out->success, &out->bad_urls);
    take_url(&p, "failure", &out->failure, &out->bad_urls);
    const struct param *uid = params_get(&p, "user_id");
    const struct param *ts = params_get(&p, "ts");
    const struct param *sig = params_get(&p, "sig");
    int64_t t = 0;
    rc = -SIMAP_EINVAL;
    if (uid != NULL && uid->len == SCHEMA_UID_LEN && is_hex_lower(uid->value, uid->len) &&
        ts != NULL && param_int(ts, 0, INT64_MAX / 2, &t) == 0 && sig != NULL &&
        sig->len == CONNECT_SIG_LEN && params_is_token(sig->value, CONNECT_SIG_LEN, "_-")) {
        memcpy(out->uid, uid->value, SCHEMA_UID_LEN + 1);
        out->ts = t;
        memcpy(out->sig, sig->value, CONNECT_SIG_LEN + 1);
        rc = 0;
    }
    params_free(&p);
    return rc;
}

void connect_link_free(struct connect_link *l)
{
    xfree(l->success);
    xfree(l->failure);
    memset(l, 0, sizeof *l);
}

enum connect_link_check connect_link_verify(const unsigned char key[32], const char *kind,
                                            const struct connect_link *l, int64_t now_s)
{
    char want[CONNECT_SIG_LEN + 1];
    connect_link_sig(key, kind, l->uid, l->ts, want);
    if (want[0] == '\0' || !crypto_equal(want, strlen(want), l->sig, strlen(l->sig)))
        return CONNECT_LINK_FORGED;
    if (l->ts > now_s + CONNECT_SKEW_S || now_s - l->ts > CONNECT_LINK_TTL)
        return CONNECT_LINK_EXPIRED;
    return CONNECT_LINK_OK;
}

/* ---- Redirects ---- */

int connect_url_ok(const char *url)
{
    size_t n = strlen(url);
    if (n > CONNECT_URL_MAX)
        return 0;
    size_t scheme;
    if (strncasecmp(url, "http://", 7) == 0)
        scheme = 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        scheme = 8;
    else
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f || c == '\\' || c == '"' || c == '<' || c == '>')
            return 0;
    }
    size_t host = strcspn(url + scheme, "/?#");
    if (host == 0 || memchr(url + scheme, '@', host) != NULL)
        return 0;
    return url[scheme] != ':';
}

char *connect_url_with_error(const char *url, const char *error)
{
    size_t frag = strcspn(url, "#");
    const char *q = memchr(url, '?', frag);
    const char *sep = "&";
    if (q == NULL)
        sep = "?";
    else if (url[frag - 1] == '?' || url[frag - 1] == '&')
        sep = "";
    char *enc = connect_pct_encode(error);
    struct buf b;
    buf_init(&b, OUT_MAX * 2);
    buf_append(&b, url, frag);
    buf_printf(&b, "%serror=%s%s", sep, enc, url + frag);
    xfree(enc);
    return buf_steal(&b);
}

void connect_error_code(const char *s, char *out, size_t cap)
{
    size_t n = s != NULL ? strlen(s) : 0;
    int ok = n > 0 && n <= 64 && n < cap && params_is_token(s, 64, "_.-");
    snprintf(out, cap, "%s", ok ? s : "provider_error");
}

/* ---- The authorization request ---- */

static void pct_append(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
}

char *connect_pct_encode(const char *s)
{
    struct buf b;
    buf_init(&b, OUT_MAX * 3);
    pct_append(&b, s);
    return buf_steal(&b);
}

char *connect_pkce_verifier(void)
{
    return crypto_token(32);
}

char *connect_pkce_challenge(const char *verifier)
{
    unsigned char d[CRYPTO_SHA256_LEN];
    if (crypto_sha256(verifier, strlen(verifier), d) < 0)
        return xstrdup("");
    return crypto_b64url_encode(d, sizeof d);
}

static void query_param(struct buf *b, int *first, const char *name, const char *value)
{
    buf_puts(b, *first ? "" : "&");
    *first = 0;
    pct_append(b, name);
    buf_puts(b, "=");
    pct_append(b, value);
}

/* Names connect_authorize_url() sets itself: extra parameters may not. */
static const char *const own_params[] = {"response_type",
                                         "client_id",
                                         "redirect_uri",
                                         "scope",
                                         "state",
                                         "code_challenge",
                                         "code_challenge_method",
                                         "login_hint",
                                         NULL};

static int is_own_param(const char *name)
{
    for (const char *const *p = own_params; *p != NULL; p++)
        if (strcmp(*p, name) == 0)
            return 1;
    return 0;
}

int connect_params_json_ok(const char *json, size_t n)
{
    yajl_val v = NULL;
    if (json_parse_object(json, n, 4, &v, NULL, 0) < 0)
        return 0;
    int ok = v->u.object.len <= 16;
    for (size_t i = 0; ok && i < v->u.object.len; i++) {
        const char *k = v->u.object.keys[i];
        yajl_val x = v->u.object.values[i];
        ok = params_is_token(k, 64, "_.-") && !is_own_param(k) && YAJL_IS_STRING(x) &&
             strlen(x->u.string) <= 256;
    }
    json_free(v);
    return ok;
}

char *connect_authorize_url(const struct connect_authz *a)
{
    yajl_val extra = NULL;
    if (a->extra_json != NULL && *a->extra_json != '\0') {
        if (!connect_params_json_ok(a->extra_json, strlen(a->extra_json)) ||
            json_parse_object(a->extra_json, strlen(a->extra_json), 4, &extra, NULL, 0) < 0)
            return NULL;
    }
    struct buf b;
    buf_init(&b, OUT_MAX);
    size_t frag = strcspn(a->authorize_url, "#");
    buf_append(&b, a->authorize_url, frag);
    const char *q = memchr(a->authorize_url, '?', frag);
    if (q == NULL)
        buf_puts(&b, "?");
    else if (frag > 0 && a->authorize_url[frag - 1] != '?' && a->authorize_url[frag - 1] != '&')
        buf_puts(&b, "&");
    int first = 1;
    query_param(&b, &first, "response_type", "code");
    query_param(&b, &first, "client_id", a->client_id);
    query_param(&b, &first, "redirect_uri", a->redirect_uri);
    if (a->scope != NULL && *a->scope != '\0')
        query_param(&b, &first, "scope", a->scope);
    query_param(&b, &first, "state", a->state);
    query_param(&b, &first, "code_challenge", a->code_challenge);
    query_param(&b, &first, "code_challenge_method", "S256");
    if (a->login_hint != NULL && *a->login_hint != '\0')
        query_param(&b, &first, "login_hint", a->login_hint);
    for (size_t i = 0; extra != NULL && i < extra->u.object.len; i++)
        query_param(&b, &first, extra->u.object.keys[i], extra->u.object.values[i]->u.string);
    json_free(extra);
    return buf_steal(&b);
}

/* ---- Answers of the provider ---- */

static char *dup_member(yajl_val obj, const char *key)
{
    const char *s = json_get_str(obj, key);
    return s != NULL && *s != '\0' ? xstrdup(s) : NULL;
}

int connect_tokens_parse(const char *body, size_t n, struct connect_tokens *out)
{
    memset(out, 0, sizeof *out);
    yajl_val v = NULL;
    if (json_parse_object(body, n, 16, &v, NULL, 0) < 0)
        return -SIMAP_EPROTO;
    out->access_token = dup_member(v, "access_token");
    out->refresh_token = dup_member(v, "refresh_token");
    out->id_token = dup_member(v, "id_token");
    out->error = dup_member(v, "error");
    int64_t e = 0;
    if (json_get_int(v, "expires_in", &e) == 0 && e > 0 && e < 100L * 365 * 86400)
        out->expires_in = e;
    json_free(v);
    return 0;
}

void connect_tokens_free(struct connect_tokens *t)
{
    crypto_wipe_str(&t->access_token);
    crypto_wipe_str(&t->refresh_token);
    crypto_wipe_str(&t->id_token);
    xfree(t->error);
    memset(t, 0, sizeof *t);
}

/* A plausible address: printable, one '@' with text on both sides. */
static int looks_like_email(const char *s)
{
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    return n >= 3 && n <= 320 && at != NULL && at != s && at[1] != '\0' &&
           strchr(at + 1, '@') == NULL && params_is_printable(s, n) && strchr(s, ' ') == NULL;
}

static char *email_of(yajl_val obj, const char *const *claims)
{
    for (const char *const *c = claims; *c != NULL; c++) {
        const char *s = json_get_str(obj, *c);
        if (s != NULL && looks_like_email(s))
            return xstrdup(s);
    }
    return NULL;
}

char *connect_id_token_email(const char *jwt)
{
    const char *p = strchr(jwt, '.');
    if (p == NULL)
        return NULL;
    p++;
    const char *end = strchr(p, '.');
    if (end == NULL || end == p || (size_t)(end - p) > OUT_MAX)
        return NULL;
    unsigned char *payload = NULL;
    size_t len = 0;
    if (crypto_b64url_decode(p, (size_t)(end - p), &payload, &len) < 0)
        return NULL;
    yajl_val v = NULL;
    char *email = NULL;
    if (json_parse_object((const char *)payload, len, 16, &v, NULL, 0) == 0) {
        static const char *const claims[] = {"email", "preferred_username", NULL};
        email = email_of(v, claims);
    }
    json_free(v);
    xfree(payload);
    return email;
}

char *connect_userinfo_email(const char *body, size_t n)
{
    yajl_val v = NULL;
    if (json_parse_object(body, n, 16, &v, NULL, 0) < 0)
        return NULL;
    static const char *const claims[] = {"email", NULL};
    char *email = email_of(v, claims);
    json_free(v);
    return email;
}

/* ---- The record of one connect flow ---- */

char *connect_flow_encode(const struct connect_flow *f)
{
    struct buf b;
    buf_init(&b, OUT_MAX * 4);
    int first = 1;
    query_param(&b, &first, "uid", f->uid);
    query_param(&b, &first, "browser", f->browser);
    query_param(&b, &first, "success", f->success ? f->success : "");
    query_param(&b, &first, "failure", f->failure ? f->failure : "");
    query_param(&b, &first, "verifier", f->verifier ? f->verifier : "");
    return buf_steal(&b);
}

static char *dup_param(const struct params *p, const char *name)
{
    const struct param *v = params_get(p, name);
    return xstrdup(v != NULL ? v->value : "");
}

int connect_flow_decode(const char *text, size_t n, struct connect_flow *out)
{
    memset(out, 0, sizeof *out);
    struct params p;
    params_init(&p);
    int rc = params_parse_form(&p, text, n, NULL, 0);
    const struct param *uid = params_get(&p, "uid");
    const struct param *br = params_get(&p, "browser");
    if (rc == 0 && uid != NULL && uid->len == SCHEMA_UID_LEN && br != NULL &&
        br->len == sizeof out->browser - 1) {
        memcpy(out->uid, uid->value, uid->len + 1);
        memcpy(out->browser, br->value, br->len + 1);
    } else {
        rc = -SIMAP_EINVAL;
    }
    out->success = dup_param(&p, "success");
    out->failure = dup_param(&p, "failure");
    out->verifier = dup_param(&p, "verifier");
    params_free(&p);
    return rc;
}

void connect_flow_free(struct connect_flow *f)
{
    xfree(f->success);
    xfree(f->failure);
    crypto_wipe_str(&f->verifier);
    memset(f, 0, sizeof *f);
}

/* ---- Browser and HTML ---- */

int connect_cookie_get(const char *header, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *p = header; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        size_t len = strcspn(p, ";");
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = len - nlen - 1;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen < 16 || vlen >= outlen)
                return 0;
            for (size_t i = 0; i < vlen; i++) {
                char c = v[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-'))
                    return 0;
            }
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 1;
        }
        p += len;
    }
    return 0;
}

char *connect_html_escape(const char *s)
{
    struct buf b;
    buf_init(&b, OUT_MAX * 6);
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&':
            buf_puts(&b, "&amp;");
            break;
        case '<':
            buf_puts(&b, "&lt;");
            break;
        case '>':
            buf_puts(&b, "&gt;");
            break;
        case '"':
            buf_puts(&b, "&quot;");
            break;
        case '\'':
            buf_puts(&b, "&#39;");
            break;
        default:
            buf_append(&b, p, 1);
        }
    }
    return buf_steal(&b);
}
