/*
 * cmd/api/router: reads one request (path, query, body under a 64 KiB cap,
 * JSON or form content), finds its route, authenticates it, calls the
 * handler. The route tables are the routes_*.c files'; the answers are
 * reply.c's.
 *
 * Order of checks, so the answer names the first real problem: path (400) →
 * route (404, 405) → body size (413) → content type (415) → parameters (400)
 * → credentials (401, 429) → the route's own checks.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/router.h"

#include <string.h>
#include <strings.h>

#include "cmd/api/api.h"
#include "cmd/api/auth.h"
#include "cmd/api/reply.h"
#include "core/buf.h"
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

static const struct route *const tables[] = {routes_partner,  routes_events, routes_providers,
                                             routes_partners, routes_fleet,  routes_tracers,
                                             routes_connect};

/* Finds the route; *path_known tells a 405 from a 404. */
static const struct route *find_route(struct req *r, int *path_known)
{
    *path_known = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (const struct route *rt = tables[t]; rt->method != NULL; rt++) {
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

/* Reads the body into b (max API_BODY_MAX). Returns 0, or 413 / 400 after
 * replying. */
static int read_body(struct req *r, struct buf *b)
{
    const struct mg_request_info *ri = mg_get_request_info(r->conn);
    if (ri->content_length > API_BODY_MAX)
        return reply_error(r, 413, "too_large", NULL, "request body over %d bytes", API_BODY_MAX);
    if (ri->content_length == 0)
        return 0;
    char chunk[8192];
    for (;;) {
        int n = mg_read(r->conn, chunk, sizeof chunk);
        if (n < 0)
            return reply_error(r, 400, "bad_request", NULL, "the request body could not be read");
        if (n == 0)
            break;
        if (buf_append(b, chunk, (size_t)n) < 0)
            return reply_error(r, 413, "too_large", NULL, "request body over %d bytes",
                               API_BODY_MAX);
    }
    return 0;
}

static int load_params(struct req *r)
{
    const struct mg_request_info *ri = mg_get_request_info(r->conn);
    char err[256] = "";
    if (ri->query_string != NULL &&
        params_parse_form(&r->params, ri->query_string, strlen(ri->query_string), err, sizeof err) <
            0)
        return reply_error(r, 400, "invalid_parameter", NULL, "query string: %s", err);

    struct buf body;
    buf_init(&body, API_BODY_MAX);
    int rc = read_body(r, &body);
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
    char err[256] = "";
    int status;
    int path_known;
    const struct route *rt;
    if (path_split(&r.path, uri, strlen(uri), err, sizeof err) < 0) {
        status = reply_error(&r, 400, "invalid_path", NULL, "%s", err);
    } else if ((rt = find_route(&r, &path_known)) == NULL) {
        if (path_known)
            status = reply_error(&r, 405, "method_not_allowed", NULL, "%s is not allowed here",
                                 r.method);
        else
            status = reply_error(&r, 404, "not_found", NULL, "no such API route");
    } else if ((status = load_params(&r)) != 0) {
        /* replied */
    } else if (rt->auth == AUTH_PARTNER && (status = auth_partner(&r)) != 0) {
        /* replied */
    } else if (rt->auth == AUTH_ADMIN && (status = auth_admin(&r)) != 0) {
        /* replied */
    } else {
        status = rt->fn(&r);
    }
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
