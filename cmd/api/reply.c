/*
 * cmd/api/reply: the answers of superimap-api. Every response has its head
 * and body in one write. The API's are JSON, its errors {"error":{"code",
 * "message","field"}}; the connect pages' are HTML or redirects (see
 * reply.h).
 *
 * The partner API's v1 (req.version 1) answers as the original did, and this
 * file alone makes the difference, so the handlers are the same for both
 * versions: a create's 201 is sent as 200, a conflict's 409 as 400, a
 * missing or unknown key's 401 as 404 "Partner not found. Check your
 * api_key.", and every error body is the message alone in text/plain
 * ("Validation failed: Tag can't be blank" for a bad parameter), never JSON.
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

/* The dashboard's headers, on every answer under /admin (req.is_admin):
 * pages, files and the admin API's JSON alike (README "Admin dashboard:
 * accounts and sign-in"). */
static const char admin_headers[] =
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: same-origin\r\n";

static const char *admin_extra(const struct req *r)
{
    return r->is_admin ? admin_headers : "";
}

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
               "%s%s\r\n",
               status, reason_phrase(status), ctype, len, admin_extra(r), headers ? headers : "");
    buf_append(&out, body, len);
    mg_write(r->conn, out.data, out.len);
    buf_free(&out);
    return status;
}

/* form-action also governs where a form's answer redirects (CSP Level 3):
 * the PLAIN form's success goes to the partner's URL, on any http(s) host. */
int reply_html(struct req *r, int status, const char *html, const char *headers)
{
    if (r->is_admin)
        return send_one(r, status, "text/html; charset=utf-8", html, strlen(html), headers);
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

static int redirect(struct req *r, int status, const char *location, const char *headers)
{
    if (strpbrk(location, "\r\n") != NULL)
        return reply_html(r, 400, "<!doctype html><title>Bad link</title><p>Bad link.</p>", NULL);
    struct buf h;
    buf_init(&h, strlen(location) + 8192);
    buf_printf(&h, "Location: %s\r\n%s%s", location,
               r->is_admin ? "" : "Referrer-Policy: no-referrer\r\n", headers ? headers : "");
    int rc = send_one(r, status, "text/plain; charset=utf-8", "", 0, h.data);
    buf_free(&h);
    return rc;
}

int reply_redirect(struct req *r, const char *location, const char *headers)
{
    return redirect(r, 302, location, headers);
}

int reply_see_other(struct req *r, const char *location, const char *headers)
{
    return redirect(r, 303, location, headers);
}

int reply_json(struct req *r, int status, const char *json, size_t len, const char *headers)
{
    if (r->version == 1 && status == 201)
        status = 200;
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
    int sent = reply_json(r, status, out, len, headers);
    xfree(out);
    return sent;
}

static const char *allow_header(int status)
{
    return status == 405 ? "Allow: GET, POST, PUT, PATCH, DELETE\r\n" : NULL;
}

/* v1's error: the original's status and its plain-text message. */
static int reply_error_v1(struct req *r, int status, const char *msg, const char *headers)
{
    if (status == 401) {
        status = 404;
        msg = "Partner not found. Check your api_key.";
    } else if (status == 409) {
        status = 400;
    }
    return send_one(r, status, "text/plain; charset=utf-8", msg, strlen(msg),
                    headers ? headers : allow_header(status));
}

static int verror(struct req *r, int status, const char *code, const char *field,
                  const char *headers, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

static int verror(struct req *r, int status, const char *code, const char *field,
                  const char *headers, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (r->version == 1)
        return reply_error_v1(r, status, msg, headers);
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
    if (headers == NULL)
        headers = allow_header(status);
    if (json_gen_finish(g, &out, &len) < 0) {
        json_gen_free(g);
        static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"error\"}}";
        return reply_json(r, status, fallback, sizeof fallback - 1, headers);
    }
    json_gen_free(g);
    reply_json(r, status, out, len, headers);
    xfree(out);
    return status;
}

int reply_error(struct req *r, int status, const char *code, const char *field, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verror(r, status, code, field, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int reply_retry_later(struct req *r, const char *code, int64_t retry_ms, const char *fmt, ...)
{
    char headers[64];
    snprintf(headers, sizeof headers, "Retry-After: %lld\r\n", (long long)(retry_ms + 999) / 1000);
    va_list ap;
    va_start(ap, fmt);
    int rc = verror(r, 429, code, NULL, headers, fmt, ap);
    va_end(ap);
    return rc;
}

/* A field as Rails' humanize writes it in a validation message: a trailing
 * "_id" dropped, '_' as spaces, the first letter upper case
 * ("imap_provider_code" -> "Imap provider code"). */
static void humanize(char *out, size_t cap, const char *field)
{
    size_t n = strlen(field);
    if (n > 3 && strcmp(field + n - 3, "_id") == 0)
        n -= 3;
    snprintf(out, cap, "%.*s", (int)n, field);
    for (char *p = out; *p != '\0'; p++)
        if (*p == '_')
            *p = ' ';
    if (out[0] >= 'a' && out[0] <= 'z')
        out[0] = (char)(out[0] - 'a' + 'A');
}

int reply_invalid(struct req *r, const char *field, const char *why)
{
    if (r->version == 1) {
        char name[128];
        humanize(name, sizeof name, field);
        return reply_error(r, 400, "invalid_parameter", field, "Validation failed: %s %s", name,
                           why);
    }
    return reply_error(r, 400, "invalid_parameter", field, "%s: %s", field, why);
}

int reply_unavailable(struct req *r)
{
    return reply_error(r, 503, "unavailable", NULL,
                       "the data store is not reachable; try again shortly");
}

int reply_stream_open(struct req *r, int status, const char *ctype)
{
    mg_printf(r->conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: %s\r\n"
              "Transfer-Encoding: chunked\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n%s\r\n",
              status, reason_phrase(status), ctype, admin_extra(r));
    return status;
}

int reply_stream_write(struct req *r, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    return mg_send_chunk(r->conn, data, (unsigned int)len) < 0 ? -SIMAP_EIO : 0;
}

void reply_stream_close(struct req *r)
{
    mg_send_chunk(r->conn, "", 0);
}

int reply_bytes(struct req *r, int status, const char *ctype, const char *body, size_t len,
                const char *headers)
{
    return send_one(r, status, ctype, body, len, headers);
}

int reply_no_content(struct req *r)
{
    mg_printf(r->conn,
              "HTTP/1.1 204 No Content\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "Content-Length: 0\r\n%s\r\n",
              admin_extra(r));
    return 204;
}
