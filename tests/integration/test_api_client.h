/*
 * tests/integration/test_api_client.h: what the API's integration tests
 * share: an HTTP client (libcurl) that sends any method, body and headers
 * and keeps status, headers and body; a checker of answers against
 * web/openapi.json; and helpers that set up providers, partners,
 * connections and users through the API itself.
 *
 * Header-only with static functions (as tests/unit/redis_fixture.h), so each
 * test_api_*.c is one binary that needs nothing beyond the harness.
 *
 * The OpenAPI checker understands the subset web/openapi.json uses: $ref,
 * type (a name or a list, "null" included), properties (undocumented keys
 * are errors unless additionalProperties is given), required, items, enum,
 * additionalProperties as a schema, and a literal "^prefix" pattern. A route
 * answering a status its operation does not list is an error too; a
 * text/plain answer (v1's errors) must say so in its Content-Type.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_TEST_API_CLIENT_H
#define TESTS_INTEGRATION_TEST_API_CLIENT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include "core/json.h"
#include "tests/integration/harness.h"

#define TEST_ADMIN_TOKEN "test-admin-token-0123456789abcdef"
#define RESP_MAX         (8u << 20)
#define API_FN           static __attribute__((unused))

/* One answer. */
struct api_resp {
    int status; /* -1 when no answer */
    char *body; /* NUL-terminated, malloc'd */
    size_t len;
    char headers[8192]; /* raw header lines */
    yajl_val json;      /* parsed body, or NULL */
};

struct sink_buf {
    char *p;
    size_t len, cap;
};

API_FN size_t on_api_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct sink_buf *s = userdata;
    size_t n = size * nmemb;
    if (s->len + n + 1 > s->cap) {
        if (s->len + n + 1 > RESP_MAX)
            return 0;
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->p = realloc(s->p, cap);
        s->cap = cap;
    }
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
    return n;
}

API_FN size_t on_api_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct api_resp *r = userdata;
    size_t n = size * nmemb, have = strlen(r->headers);
    if (have + n + 1 < sizeof r->headers) {
        memcpy(r->headers + have, data, n);
        r->headers[have + n] = '\0';
    }
    return n;
}

API_FN void api_resp_free(struct api_resp *r)
{
    free(r->body);
    json_free(r->json);
    memset(r, 0, sizeof *r);
}

/* Sends method path with body[0..len) of content type ctype (NULL: none) and
 * the extra header lines (NULL-terminated, may be NULL). Fills out; frees
 * what out held before. */
API_FN void api_call(struct api_resp *out, int port, const char *method, const char *path,
                     const char *ctype, const char *body, size_t len, const char *const *headers)
{
    static int initialised;
    if (!initialised) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        initialised = 1;
    }
    api_resp_free(out);
    out->status = -1;
    char url[65536];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    char ct[256];
    if (ctype != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hl = curl_slist_append(hl, ct);
    } else {
        hl = curl_slist_append(hl, "Content-Type:");
    }
    hl = curl_slist_append(hl, "Expect:");
    for (const char *const *h = headers; h != NULL && *h != NULL; h++)
        hl = curl_slist_append(hl, *h);
    struct sink_buf s = {NULL, 0, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_api_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_api_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    out->status = (int)status;
    out->body = s.p ? s.p : calloc(1, 1);
    out->len = s.len;
    if (out->len > 0)
        json_parse(out->body, out->len, 64, &out->json, NULL, 0);
}

/* The value of header name (case-insensitive) into val; 1 when present. */
API_FN int api_header(const struct api_resp *r, const char *name, char *val, size_t vallen)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            snprintf(val, vallen, "%.*s", (int)(len - (size_t)(v - line)), v);
            return 1;
        }
        line += len + (end ? 2 : 0);
    }
    val[0] = '\0';
    return 0;
}

/* ---- Shorthands ---- */

API_FN void api_json(struct api_resp *out, int port, const char *method, const char *path,
                     const char *key, const char *json)
{
    char h[256];
    snprintf(h, sizeof h, "x-api-key: %s", key ? key : "");
    const char *hs[] = {h, NULL};
    api_call(out, port, method, path, json ? "application/json" : NULL, json,
             json ? strlen(json) : 0, key ? hs : NULL);
}

API_FN void api_form(struct api_resp *out, int port, const char *method, const char *path,
                     const char *key, const char *form)
{
    char h[256];
    snprintf(h, sizeof h, "x-api-key: %s", key ? key : "");
    const char *hs[] = {h, NULL};
    api_call(out, port, method, path, form ? "application/x-www-form-urlencoded" : NULL, form,
             form ? strlen(form) : 0, key ? hs : NULL);
}

API_FN void admin_json(struct api_resp *out, int port, const char *method, const char *path,
                       const char *json)
{
    const char *hs[] = {"Authorization: Bearer " TEST_ADMIN_TOKEN, NULL};
    api_call(out, port, method, path, json ? "application/json" : NULL, json,
             json ? strlen(json) : 0, hs);
}

API_FN const char *jstr(const struct api_resp *r, const char *key)
{
    return json_get_str(r->json, key);
}

API_FN const char *err_code(const struct api_resp *r)
{
    return json_get_str(json_get(r->json, "error"), "code");
}

/* ---- OpenAPI checking ---- */

static yajl_val openapi_spec __attribute__((unused));

API_FN yajl_val openapi(void)
{
    if (openapi_spec != NULL)
        return openapi_spec;
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/web/openapi.json", src ? src : ".");
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    char err[256];
    if (json_parse(text, n, 256, &openapi_spec, err, sizeof err) < 0)
        fail_msg("web/openapi.json does not parse: %s", err);
    return openapi_spec;
}

API_FN yajl_val resolve(yajl_val s)
{
    const char *ref = json_get_str(s, "$ref");
    if (ref == NULL)
        return s;
    const char *prefix = "#/components/schemas/";
    if (strncmp(ref, prefix, strlen(prefix)) != 0)
        fail_msg("unsupported $ref %s", ref);
    yajl_val t =
        json_get(json_get(json_get(openapi(), "components"), "schemas"), ref + strlen(prefix));
    if (t == NULL)
        fail_msg("dangling $ref %s", ref);
    return t;
}

API_FN int type_matches(const char *type, yajl_val v)
{
    if (strcmp(type, "null") == 0)
        return YAJL_IS_NULL(v);
    if (strcmp(type, "string") == 0)
        return YAJL_IS_STRING(v);
    if (strcmp(type, "integer") == 0)
        return YAJL_IS_INTEGER(v);
    if (strcmp(type, "number") == 0)
        return YAJL_IS_NUMBER(v);
    if (strcmp(type, "boolean") == 0)
        return YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v);
    if (strcmp(type, "object") == 0)
        return YAJL_IS_OBJECT(v);
    if (strcmp(type, "array") == 0)
        return YAJL_IS_ARRAY(v);
    return 0;
}

/* Returns NULL when v fits schema s, else a reason (static buffer). */
API_FN const char *schema_check(yajl_val s, yajl_val v, const char *where)
{
    static char why[1024];
    s = resolve(s);
    yajl_val type = json_get(s, "type");
    if (type != NULL) {
        int ok = 0;
        if (YAJL_IS_STRING(type))
            ok = type_matches(type->u.string, v);
        for (size_t i = 0; YAJL_IS_ARRAY(type) && i < type->u.array.len && !ok; i++)
            ok = type_matches(type->u.array.values[i]->u.string, v);
        if (!ok) {
            snprintf(why, sizeof why, "%s: wrong type", where);
            return why;
        }
    }
    yajl_val en = json_get(s, "enum");
    if (en != NULL && YAJL_IS_STRING(v)) {
        int ok = 0;
        for (size_t i = 0; i < en->u.array.len && !ok; i++)
            ok = strcmp(en->u.array.values[i]->u.string, v->u.string) == 0;
        if (!ok) {
            snprintf(why, sizeof why, "%s: '%s' not in enum", where, v->u.string);
            return why;
        }
    }
    const char *pattern = json_get_str(s, "pattern");
    if (pattern != NULL && pattern[0] == '^' &&
        strcspn(pattern + 1, "[]()*+?{}\\$.|") == strlen(pattern + 1) && YAJL_IS_STRING(v) &&
        strncmp(v->u.string, pattern + 1, strlen(pattern + 1)) != 0) {
        snprintf(why, sizeof why, "%s: does not start with %s", where, pattern + 1);
        return why;
    }
    if (YAJL_IS_OBJECT(v)) {
        yajl_val props = json_get(s, "properties");
        yajl_val addl = json_get(s, "additionalProperties");
        yajl_val req = json_get(s, "required");
        for (size_t i = 0; req != NULL && i < req->u.array.len; i++) {
            if (json_get(v, req->u.array.values[i]->u.string) == NULL) {
                snprintf(why, sizeof why, "%s: required '%s' missing", where,
                         req->u.array.values[i]->u.string);
                return why;
            }
        }
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            char sub[512];
            snprintf(sub, sizeof sub, "%s.%s", where, k);
            yajl_val ps = json_get(props, k);
            if (ps == NULL && addl != NULL && YAJL_IS_OBJECT(addl))
                ps = addl;
            if (ps == NULL) {
                if (addl != NULL || (props == NULL && json_get(s, "type") == NULL))
                    continue;
                if (props != NULL) {
                    snprintf(why, sizeof why, "%s: not in the spec", sub);
                    return why;
                }
                continue;
            }
            const char *r = schema_check(ps, v->u.object.values[i], sub);
            if (r != NULL)
                return r;
        }
    }
    if (YAJL_IS_ARRAY(v)) {
        yajl_val items = json_get(s, "items");
        for (size_t i = 0; items != NULL && i < v->u.array.len; i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%zu]", where, i);
            const char *r = schema_check(items, v->u.array.values[i], sub);
            if (r != NULL)
                return r;
        }
    }
    return NULL;
}

/* 1 when a header line of headers begins with line (case-insensitive). */
API_FN int has_header_prefix(const char *headers, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = headers; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncasecmp(p, line, n) == 0)
            return 1;
    }
    return 0;
}

/* Fails the test unless r is a documented answer of method tmpl (an OpenAPI
 * path template such as "/api/v2/connections/{code}"). */
API_FN void openapi_check(const struct api_resp *r, const char *method, const char *tmpl)
{
    char m[16];
    snprintf(m, sizeof m, "%s", method);
    for (char *p = m; *p; p++)
        *p = (char)(*p - 'A' + 'a');
    yajl_val op = json_get(json_get(json_get(openapi(), "paths"), tmpl), m);
    if (op == NULL)
        fail_msg("%s %s is not in web/openapi.json", method, tmpl);
    char st[8];
    snprintf(st, sizeof st, "%d", r->status);
    yajl_val resp = json_get(json_get(op, "responses"), st);
    if (resp == NULL)
        fail_msg("%s %s answered %d, which web/openapi.json does not list (body %.300s)", method,
                 tmpl, r->status, r->body);
    yajl_val schema = json_get(json_get(json_get(resp, "content"), "application/json"), "schema");
    if (schema == NULL && json_get(json_get(resp, "content"), "text/plain") != NULL) {
        if (!has_header_prefix(r->headers, "Content-Type: text/plain"))
            fail_msg("%s %s %d: not text/plain: %.300s", method, tmpl, r->status, r->headers);
        return;
    }
    if (schema == NULL && json_get(json_get(resp, "content"), "message/rfc822") != NULL) {
        if (!has_header_prefix(r->headers, "Content-Type: message/rfc822"))
            fail_msg("%s %s %d: not message/rfc822: %.300s", method, tmpl, r->status, r->headers);
        return;
    }
    if (schema == NULL) {
        if (r->len != 0)
            fail_msg("%s %s %d: body where the spec has none", method, tmpl, r->status);
        return;
    }
    if (r->json == NULL)
        fail_msg("%s %s %d: body is not JSON: %.300s", method, tmpl, r->status, r->body);
    const char *why = schema_check(schema, r->json, "body");
    if (why != NULL)
        fail_msg("%s %s %d does not match web/openapi.json: %s (body %.500s)", method, tmpl,
                 r->status, why, r->body);
}

/* Asserts the status, then the shape against the spec. */
#define EXPECT(r, st, method, tmpl)                                                   \
    do {                                                                              \
        if ((r)->status != (st))                                                      \
            fail_msg("%s %s: want %d, got %d: %.400s", method, tmpl, st, (r)->status, \
                     (r)->body ? (r)->body : "");                                     \
        openapi_check(r, method, tmpl);                                               \
    } while (0)

/* ---- Set-up through the API ---- */

static const char *const api_test_env[] __attribute__((unused)) = {
    "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_API_RATE_LIMIT=0",
    "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", NULL};

/* Starts an api on redis with env (NULL: api_test_env) and waits until ready. */
API_FN void start_api(struct proc *p, const struct redis_srv *redis, const char *id,
                      const char *const *env)
{
    assert_int_equal(harness_node_start(p, redis, "superimap-api", id, env ? env : api_test_env),
                     0);
    assert_int_equal(harness_wait_http(p->port, "/readyz", 200, 10000), 0);
}

/* A suite's Redis and an api on it (node id id, api_test_env), ready. 0 or
 * -1. */
API_FN int api_suite_start(struct redis_srv *redis, struct proc *api, const char *id)
{
    if (harness_redis_start(redis) < 0 ||
        harness_node_start(api, redis, "superimap-api", id, api_test_env) < 0)
        return -1;
    return harness_wait_http(api->port, "/readyz", 200, 10000);
}

/* Stops every harness process and Redis; frees the parsed OpenAPI spec. */
API_FN int api_suite_stop(struct redis_srv *redis)
{
    harness_stop_all();
    harness_redis_stop(redis);
    json_free(openapi_spec);
    openapi_spec = NULL;
    return 0;
}

API_FN void make_provider(int port, const char *code, const char *auth)
{
    char body[512];
    if (strcmp(auth, "oauth2") == 0)
        snprintf(body, sizeof body,
                 "{\"code\":\"%s\",\"imap_host\":\"imap.example.com\",\"imap_port\":993,"
                 "\"auth\":\"oauth2\",\"oauth2_authorize_url\":\"https://a.example.com/auth\","
                 "\"oauth2_token_url\":\"https://a.example.com/token\"}",
                 code);
    else
        snprintf(body, sizeof body,
                 "{\"code\":\"%s\",\"imap_host\":\"127.0.0.1\",\"imap_port\":10143,"
                 "\"tls\":\"none\"}",
                 code);
    struct api_resp r = {0};
    admin_json(&r, port, "POST", "/admin/api/providers", body);
    EXPECT(&r, 201, "POST", "/admin/api/providers");
    api_resp_free(&r);
}

/* Creates a partner; returns its API key (free() it) and its id in *pid. */
API_FN char *make_partner(int port, const char *name, long long *pid)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"name\":\"%s\",\"new_mail_webhook_url\":\"http://127.0.0.1:9/new\","
             "\"user_connected_webhook_url\":\"http://127.0.0.1:9/c\","
             "\"user_disconnected_webhook_url\":\"http://127.0.0.1:9/d\"}",
             name);
    struct api_resp r = {0};
    admin_json(&r, port, "POST", "/admin/api/partners", body);
    EXPECT(&r, 201, "POST", "/admin/api/partners");
    char *key = strdup(jstr(&r, "api_key"));
    int64_t id = 0;
    json_get_int(r.json, "id", &id);
    if (pid != NULL)
        *pid = id;
    api_resp_free(&r);
    return key;
}

API_FN void make_connection(int port, const char *key, const char *code)
{
    char form[128];
    snprintf(form, sizeof form, "imap_provider_code=%s", code);
    struct api_resp r = {0};
    api_form(&r, port, "POST", "/api/v2/connections", key, form);
    EXPECT(&r, 201, "POST", "/api/v2/connections");
    api_resp_free(&r);
}

extern char **environ;

/* Runs `superimap-api <sub> <args...>` (args NULL-terminated, at most 12)
 * against redis, with the test's environment (sanitizer options too)
 * without its SUPERIMAP_*, plus SUPERIMAP_REDIS_URL and env (NULL-terminated
 * "NAME=value"); its output into out, its exit status. */
API_FN int api_command(const struct redis_srv *redis, const char *sub, const char *const *args,
                       const char *const *env, char *out, size_t outlen)
{
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/%s.log", redis->dir, sub);
    char bin[512], url[400];
    harness_bin("superimap-api", bin, sizeof bin);
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", redis->url);
    const char *argv[16] = {bin, sub};
    int argc = 2;
    for (const char *const *a = args; *a != NULL && argc < 15; a++)
        argv[argc++] = *a;
    argv[argc] = NULL;
    const char *envp[200];
    int ne = 0;
    for (char **e = environ; *e != NULL && ne < 180; e++)
        if (strncmp(*e, "SUPERIMAP_", 10) != 0)
            envp[ne++] = *e;
    envp[ne++] = url;
    for (const char *const *e = env; *e != NULL && ne < 199; e++)
        envp[ne++] = *e;
    envp[ne] = NULL;
    assert_int_equal(harness_spawn(&p, argv, envp), 0);
    assert_int_equal(harness_proc_wait(&p, 60000), 0);
    FILE *f = fopen(p.log, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return p.exit_code;
}

/* Runs one Redis command on the suite's server; the reply (freeReplyObject). */
API_FN redisReply *rcmd(const struct redis_srv *redis, const char *fmt, ...)
{
    redisContext *c = harness_redis_connect(redis);
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(rep);
    return rep;
}

API_FN long long rint_(const struct redis_srv *redis, const char *fmt, const char *arg)
{
    redisReply *rep = rcmd(redis, fmt, arg);
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

#endif
