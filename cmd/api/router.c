/*
 * cmd/api/router: reads one request (path, query, body under a 64 KiB cap,
 * JSON or form content), finds its route, authenticates it, calls the
 * handler. The route tables are the routes_*.c files'; the answers are
 * reply.c's.
 *
 * Order of checks, so the answer names the first real problem: path (400) →
 * route (404, 405) → query (400) → declared body size (413) → credentials
 * given in a header or the query (401, 429) → body (408 too slow, 429 too
 * many bodies from one client address, 413, 415, 400) → credentials given in
 * the body → the route's own checks. A client without a valid key never
 * makes the api wait for its body.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/router.h"

#include <string.h>
#include <strings.h>

#include "cmd/api/api.h"
#include "cmd/api/auth.h"
#include "cmd/api/client.h"
#include "cmd/api/reply.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/http.h"
#include "core/metrics.h"
#include "core/time.h"

/* ---- Route matching ---- */

/* 1 when segment seg matches literal lit, or lit followed by ".json". */
static int literal_matches(const char *lit, size_t litlen, const char *seg, size_t seglen)
{
    if (seglen == litlen && memcmp(seg, lit, litlen) == 0)
        return 1;
    return seglen == litlen + 5 && memcmp(seg, lit, litlen) == 0 &&
           memcmp(seg + litlen, ".json", 5) == 0;
}

/* The version a path segment names ("v1", "v2"), or 0. */
static int version_of(const char *seg, size_t len)
{
    if (len == 2 && seg[0] == 'v' && (seg[1] == '1' || seg[1] == '2'))
        return seg[1] - '0';
    return 0;
}

/* Matches r->path against pattern; fills r->arg on success. */
static int pattern_matches(struct req *r, const char *pattern)
{
    size_t i = 0;
    size_t narg = 0;
    const char *p = pattern;
    while (*p) {
        if (*p == '/') {
            p++;
            continue;
        }
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (i >= r->path.n)
            return 0;
        if (*p == ':') {
            if (narg == sizeof r->arg / sizeof r->arg[0])
                return 0;
            r->arg[narg++] = r->path.seg[i];
        } else if (len == 3 && memcmp(p, "{v}", 3) == 0) {
            if (version_of(r->path.seg[i], r->path.len[i]) == 0)
                return 0;
        } else if (!literal_matches(p, len, r->path.seg[i], r->path.len[i])) {
            return 0;
        }
        i++;
        p += len;
    }
    if (i != r->path.n)
        return 0;
    r->narg = narg;
    return 1;
}

const struct route *const route_tables[] = {
    routes_partner,    routes_events,        routes_providers,   routes_partners,
    routes_fleet,      routes_tracers,       routes_users,       routes_connect,
    routes_deliveries, routes_admin_session, routes_admin_users, NULL};

/* Finds the route; *path_known tells a 405 from a 404. */
static const struct route *find_route(struct req *r, int *path_known)
{
    *path_known = 0;
    for (size_t t = 0; route_tables[t] != NULL; t++) {
        for (const struct route *rt = route_tables[t]; rt->method != NULL; rt++) {
            if (!pattern_matches(r, rt->pattern))
                continue;
            *path_known = 1;
            if (strcmp(rt->method, r->method) == 0)
                return rt;
        }
    }
    return NULL;
}

/* ---- Body and parameters ---- */

enum body_kind { BODY_NONE, BODY_JSON, BODY_FORM, BODY_OTHER };

/* Classifies Content-Type; a charset other than UTF-8 counts as other. */
static enum body_kind content_kind(const char *ct)
{
    if (ct == NULL || *ct == '\0')
        return BODY_NONE;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    enum body_kind k = BODY_OTHER;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        k = BODY_JSON;
    else if (n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
        k = BODY_FORM;
    const char *cs = NULL;
    for (const char *q = ct; *q != '\0' && cs == NULL; q++)
        if (strncasecmp(q, "charset=", 8) == 0)
            cs = q;
    if (cs != NULL) {
        cs += 8;
        if (*cs == '"')
            cs++;
        if (strncasecmp(cs, "utf-8", 5) != 0 && strncasecmp(cs, "utf8", 4) != 0)
            return BODY_OTHER;
    }
    return k;
}

/* 413 when the declared body is over API_BODY_MAX, before reading any. */
static int check_declared_size(struct req *r)
{
    const struct mg_request_info *ri = mg_get_request_info(r->conn);
    if (ri->content_length > API_BODY_MAX)
        return reply_error(r, 413, "too_large", NULL, "request body over %d bytes", API_BODY_MAX);
    return 0;
}

/* Reads the body into b (max API_BODY_MAX) within
 * SUPERIMAP_API_REQUEST_TIMEOUT_MS. Returns 0, or 413 / 408 / 400 after
 * replying. */
static int read_body(struct req *r, struct buf *b)
{
    const struct mg_request_info *ri = mg_get_request_info(r->conn);
    if (ri->content_length == 0)
        return 0;
    int64_t deadline = time_mono_ms() + r->api->cfg->api_request_timeout_ms;
    char chunk[8192];
    for (;;) {
        int n = mg_read(r->conn, chunk, sizeof chunk);
        if (n > 0 && buf_append(b, chunk, (size_t)n) < 0)
            return reply_error(r, 413, "too_large", NULL, "request body over %d bytes",
                               API_BODY_MAX);
        if (ri->content_length > 0 && b->len == (size_t)ri->content_length)
            return 0;
        if (n == 0 && ri->content_length < 0)
            return 0; /* chunked: its end */
        /* Short of Content-Length: civetweb's read timed out, or the
         * client stopped. */
        if (n <= 0 || time_mono_ms() >= deadline)
            return reply_error(r, 408, "request_timeout", NULL,
                               "the request body did not arrive in %d ms",
                               r->api->cfg->api_request_timeout_ms);
    }
}

/* Reads the body under the client address's bound on pending connections
 * and bodies (main.c): a slow sender holds a worker thread while it reads. */
static int read_body_gated(struct req *r, struct buf *b)
{
    const struct api *a = r->api;
    char addr[CLIENT_ADDR_MAX];
    client_addr(a->clients, mg_get_request_info(r->conn)->remote_addr,
                mg_get_header(r->conn, "X-Forwarded-For"), addr);
    if (client_gate_enter(a->pending, addr, 0) != 0) {
        metric_inc(a->m_slow_bodies);
        char body[256];
        int n = snprintf(body, sizeof body,
                         "{\"error\":{\"code\":\"too_many_pending\",\"message\":\"%s "
                         "already has %d slow connections or request bodies; send requests "
                         "whole, or fewer at once\"}}",
                         addr, a->cfg->api_client_pending);
        return reply_json(r, 429, body, (size_t)n, "Retry-After: 1\r\n");
    }
    int rc = read_body(r, b);
    client_gate_leave(a->pending, addr);
    return rc;
}

static int load_query(struct req *r)
{
    const struct mg_request_info *ri = mg_get_request_info(r->conn);
    char err[256] = "";
    if (ri->query_string != NULL &&
        params_parse_form(&r->params, ri->query_string, strlen(ri->query_string), err, sizeof err) <
            0)
        return reply_error(r, 400, "invalid_parameter", NULL, "query string: %s", err);
    return 0;
}

static int load_body(struct req *r)
{
    char err[256] = "";
    struct buf body;
    buf_init(&body, API_BODY_MAX);
    int rc = read_body_gated(r, &body);
    r->body_read = rc == 0;
    if (rc != 0) {
        buf_free(&body);
        return rc;
    }
    enum body_kind kind = content_kind(mg_get_header(r->conn, "Content-Type"));
    if (body.len > 0) {
        if (kind == BODY_JSON) {
            if (params_parse_json(&r->params, body.data, body.len, err, sizeof err) < 0)
                rc = reply_error(r, 400, "invalid_json", NULL, "request body: %s", err);
        } else if (kind == BODY_FORM) {
            if (params_parse_form(&r->params, body.data, body.len, err, sizeof err) < 0)
                rc = reply_error(r, 400, "invalid_parameter", NULL, "request body: %s", err);
        } else {
            rc = reply_error(r, 415, "unsupported_media_type", NULL,
                             "send application/json or application/x-www-form-urlencoded "
                             "(UTF-8)");
        }
    } else if (kind == BODY_OTHER) {
        rc = reply_error(r, 415, "unsupported_media_type", NULL,
                         "send application/json or application/x-www-form-urlencoded (UTF-8)");
    }
    buf_free(&body);
    return rc;
}

static int authenticate(struct req *r, const struct route *rt)
{
    if (rt->auth == AUTH_PARTNER)
        return auth_partner(r);
    if (rt->auth == AUTH_ADMIN)
        return auth_admin(r);
    return 0;
}

/* Credentials that come in headers or the query are checked before the body
 * is read, so a client without a valid key cannot hold a worker thread with
 * a slow body; a key sent only in the body (as the original allowed) is
 * checked after it. */
static int load_and_authenticate(struct req *r, const struct route *rt)
{
    int rc;
    if ((rc = load_query(r)) != 0 || (rc = check_declared_size(r)) != 0)
        return rc;
    int early = rt->auth == AUTH_ADMIN || (rt->auth == AUTH_PARTNER && auth_key_presented(r));
    if (early && (rc = authenticate(r, rt)) != 0)
        return rc;
    if ((rc = load_body(r)) != 0)
        return rc;
    return early ? 0 : authenticate(r, rt);
}

/* ---- Entry point ---- */

static void count(const struct api *a, int status, int64_t started)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        metric_inc(a->m_status[cls]);
    metric_observe(a->m_latency, (double)(time_mono_ms() - started) / 1000.0);
}

int router_handle(struct mg_connection *conn, void *cbdata)
{
    struct req r;
    memset(&r, 0, sizeof r);
    r.conn = conn;
    r.api = cbdata;
    r.rs = http_thread_data(conn);
    r.started_ms = time_mono_ms();
    params_init(&r.params);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    r.method = ri->request_method;
    const char *uri = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    r.is_admin = strncmp(uri, "/admin/", 7) == 0;
    char err[256] = "";
    int status;
    int path_known;
    const struct route *rt;
    int split = path_split(&r.path, uri, strlen(uri), err, sizeof err);
    /* Every answer under /api/v1 or /api/v2, unknown routes included, is in
     * that version's manner. */
    if (split == 0 && r.path.n >= 2 && r.path.len[0] == 3 && memcmp(r.path.seg[0], "api", 3) == 0)
        r.version = version_of(r.path.seg[1], r.path.len[1]);
    if (split < 0) {
        status = reply_error(&r, 400, "invalid_path", NULL, "%s", err);
    } else if ((rt = find_route(&r, &path_known)) == NULL) {
        if (path_known)
            status = reply_error(&r, 405, "method_not_allowed", NULL, "%s is not allowed here",
                                 r.method);
        else
            status = reply_error(&r, 404, "not_found", NULL, "no such API route");
    } else if ((status = load_and_authenticate(&r, rt)) != 0) {
        /* replied */
    } else {
        status = rt->fn(&r);
    }
    /* A body left unread is not read after the answer either (civetweb would,
     * to keep the connection): the connection closes instead. */
    if (!r.body_read && ri->content_length != 0)
        mg_disable_connection_keep_alive(conn);
    count(r.api, status, r.started_ms);
    if (r.partner.api_key != NULL) {
        size_t n = strlen(r.partner.api_key);
        memset(r.partner.api_key, 0, n);
        xfree(r.partner.api_key);
    }
    params_free(&r.params);
    path_free(&r.path);
    return status;
}
