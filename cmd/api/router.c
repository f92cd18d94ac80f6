/*
 * cmd/api/router: reads one request (path, query, body under a 64 KiB cap,
 * JSON or form content), finds its route, authenticates it, calls the
 * handler, and owns the reply and Redis helpers every route uses.
 *
 * Order of checks, so the answer names the first real problem: path (400) →
 * route (404, 405) → body size (413) → content type (415) → parameters (400)
 * → credentials (401, 429) → the route's own checks.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/http.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rsync.h"
#include "core/time.h"

/* ---- Replies ---- */

static const char *reason_phrase(int status)
{
    const char *s = mg_get_response_code_text(NULL, status);
    return s ? s : "";
}

int reply_json(struct req *r, int status, const char *json, size_t len, const char *headers)
{
    /* Head and body in one write: two small writes would meet Nagle's
     * algorithm and the client's delayed ACK, 40 ms per response. */
    struct buf out;
    buf_init(&out, len + 4096);
    buf_printf(&out,
               "HTTP/1.1 %d %s\r\n"
               "Content-Type: application/json\r\n"
               "Content-Length: %zu\r\n"
               "Cache-Control: no-store\r\n"
               "X-Content-Type-Options: nosniff\r\n"
               "%s\r\n",
               status, reason_phrase(status), len, headers ? headers : "");
    buf_append(&out, json, len);
    mg_write(r->conn, out.data, out.len);
    buf_free(&out);
    return status;
}

struct json_gen *reply_gen_new(void)
{
    return json_gen_new(API_OUTPUT_MAX);
}

int reply_gen(struct req *r, int status, struct json_gen *g, const char *headers)
{
    char *out;
    size_t len;
    int rc = json_gen_finish(g, &out, &len);
    json_gen_free(g);
    if (rc < 0) {
        log_error("api response not generated route=%s err=\"%s\"", r->method, err_str(rc));
        return reply_error(r, 500, "internal", NULL, "the response could not be generated");
    }
    reply_json(r, status, out, len, headers);
    xfree(out);
    return status;
}

int reply_error(struct req *r, int status, const char *code, const char *field, const char *fmt,
                ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A message quotes request text; never let a cut or a bad byte break the JSON. */
    char *clean = json_utf8_sanitize(msg, strlen(msg), NULL);
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_object(g, "error");
    json_gen_key_str(g, "code", code);
    json_gen_key_str(g, "message", clean);
    if (field != NULL)
        json_gen_key_str(g, "field", field);
    json_gen_object_close(g);
    json_gen_object_close(g);
    xfree(clean);
    char *out;
    size_t len;
    if (json_gen_finish(g, &out, &len) < 0) {
        json_gen_free(g);
        static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"error\"}}";
        return reply_json(r, status, fallback, sizeof fallback - 1, NULL);
    }
    json_gen_free(g);
    const char *headers = NULL;
    if (status == 405) {
        headers = "Allow: GET, POST, PUT, PATCH, DELETE\r\n";
    }
    reply_json(r, status, out, len, headers);
    xfree(out);
    return status;
}

int reply_invalid(struct req *r, const char *field, const char *why)
{
    return reply_error(r, 400, "invalid_parameter", field, "%s: %s", field, why);
}

int reply_unavailable(struct req *r)
{
    return reply_error(r, 503, "unavailable", NULL,
                       "the data store is not reachable; try again shortly");
}

int reply_no_content(struct req *r)
{
    mg_printf(r->conn, "HTTP/1.1 204 No Content\r\n"
                       "Cache-Control: no-store\r\n"
                       "Content-Length: 0\r\n\r\n");
    return 204;
}

/* ---- Redis ---- */

static void log_redis_failure(struct req *r, const char *what)
{
    log_warn("api redis command failed cmd=%s err=\"%s\"", what, rsync_errstr(r->rs));
}

struct redisReply *store_cmd(struct req *r, const char *fmt, ...)
{
    if (r->rs == NULL)
        return NULL;
    /* rsync has no va_list form: format through hiredis' own formatter. */
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    /* Split the RESP array back into an argument vector. */
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, cmd, (size_t)len);
    void *parsed = NULL;
    redisReply *out = NULL;
    if (redisReaderGetReply(rd, &parsed) == REDIS_OK && parsed != NULL) {
        redisReply *arr = parsed;
        int argc = (int)arr->elements;
        const char **argv = xcalloc((size_t)argc + 1, sizeof *argv);
        size_t *argvlen = xcalloc((size_t)argc + 1, sizeof *argvlen);
        for (int i = 0; i < argc; i++) {
            argv[i] = arr->element[i]->str;
            argvlen[i] = arr->element[i]->len;
        }
        out = rsync_command_argv(r->rs, argc, argv, argvlen);
        if (out == NULL)
            log_redis_failure(r, argc > 0 ? argv[0] : "?");
        xfree(argv);
        xfree(argvlen);
        freeReplyObject(parsed);
    }
    redisReaderFree(rd);
    redisFreeCommand(cmd);
    return out;
}

struct redisReply *store_argv(struct req *r, int argc, const char **argv, const size_t *argvlen)
{
    if (r->rs == NULL)
        return NULL;
    redisReply *rep = rsync_command_argv(r->rs, argc, argv, argvlen);
    if (rep == NULL)
        log_redis_failure(r, argc > 0 ? argv[0] : "?");
    return rep;
}

struct redisReply *store_script(struct req *r, const char *name, int nkeys, int argc,
                                const char **argv, const size_t *argvlen)
{
    if (r->rs == NULL)
        return NULL;
    redisReply *rep = rsync_script(r->rs, name, nkeys, argc, argv, argvlen);
    if (rep == NULL) {
        log_redis_failure(r, name);
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        log_error("api script failed script=%s err=\"%s\"", name, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

int store_hgetall(struct req *r, const char *key, struct rec *out)
{
    memset(out, 0, sizeof *out);
    redisReply *rep = store_cmd(r, "HGETALL %s", key);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    size_t n = rep->elements / 2;
    out->f = xcalloc(n + 1, sizeof *out->f);
    out->v = xcalloc(n + 1, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        out->f[i] = xstrndup(rep->element[2 * i]->str, rep->element[2 * i]->len);
        out->v[i] = xstrndup(rep->element[2 * i + 1]->str, rep->element[2 * i + 1]->len);
    }
    out->n = n;
    freeReplyObject(rep);
    return n == 0 ? -SIMAP_ENOTFOUND : 0;
}

const char *rec_get(const struct rec *rec, const char *field)
{
    for (size_t i = 0; i < rec->n; i++)
        if (strcmp(rec->f[i], field) == 0)
            return rec->v[i];
    return "";
}

void rec_free(struct rec *rec)
{
    for (size_t i = 0; i < rec->n; i++) {
        xfree(rec->f[i]);
        xfree(rec->v[i]);
    }
    xfree(rec->f);
    xfree(rec->v);
    memset(rec, 0, sizeof *rec);
}

uint32_t api_shard(const struct api *a, const char *uid)
{
    return hrw_shard(uid, a->shards);
}

void api_now_text(char out[24])
{
    snprintf(out, 24, "%lld", (long long)time_now_ms());
}

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

static const struct route *const tables[] = {routes_partner, routes_events, routes_admin};

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
