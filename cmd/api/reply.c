/*
 * cmd/api/reply: the answers of superimap-api. Every response has its head
 * and body in one write. The API's are JSON, its errors {"error":{"code",
 * "message","field"}}; the connect pages' are HTML or redirects (see
 * reply.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cmd/api/api.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"

static const char *reason_phrase(int status)
{
    const char *s = mg_get_response_code_text(NULL, status);
    return s ? s : "";
}

/* Sends status with content type ctype, the extra header lines and
 * body[0..len) in one write. */
static int send_one(struct req *r, int status, const char *ctype, const char *body, size_t len,
                    const char *headers)
{
    /* Head and body in one write: two small writes would meet Nagle's
     * algorithm and the client's delayed ACK, 40 ms per response. */
    struct buf out;
    buf_init(&out, len + 8192);
    buf_printf(&out,
               "HTTP/1.1 %d %s\r\n"
               "Content-Type: %s\r\n"
               "Content-Length: %zu\r\n"
               "Cache-Control: no-store\r\n"
               "X-Content-Type-Options: nosniff\r\n"
               "%s\r\n",
               status, reason_phrase(status), ctype, len, headers ? headers : "");
    buf_append(&out, body, len);
    mg_write(r->conn, out.data, out.len);
    buf_free(&out);
    return status;
}

/* form-action also governs where a form's answer redirects (CSP Level 3):
 * the PLAIN form's success goes to the partner's URL, on any http(s) host. */
int reply_html(struct req *r, int status, const char *html, const char *headers)
{
    struct buf h;
    buf_init(&h, 8192);
    buf_printf(&h,
               "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
               "form-action 'self' http: https:; frame-ancestors 'none'\r\n"
               "Referrer-Policy: no-referrer\r\n%s",
               headers ? headers : "");
    int rc = send_one(r, status, "text/html; charset=utf-8", html, strlen(html), h.data);
    buf_free(&h);
    return rc;
}

int reply_redirect(struct req *r, const char *location, const char *headers)
{
    if (strpbrk(location, "\r\n") != NULL)
        return reply_html(r, 400, "<!doctype html><title>Bad link</title><p>Bad link.</p>", NULL);
    struct buf h;
    buf_init(&h, strlen(location) + 8192);
    buf_printf(&h, "Location: %s\r\nReferrer-Policy: no-referrer\r\n%s", location,
               headers ? headers : "");
    int rc = send_one(r, 302, "text/plain; charset=utf-8", "", 0, h.data);
    buf_free(&h);
    return rc;
}

int reply_json(struct req *r, int status, const char *json, size_t len, const char *headers)
{
    return send_one(r, status, "application/json", json, len, headers);
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
