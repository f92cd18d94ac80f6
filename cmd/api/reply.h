/*
 * cmd/api/reply.h: the answers of superimap-api. Every handler replies
 * exactly once through these and returns the status they return. Each runs
 * on the request's worker thread and writes to its connection.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_REPLY_H
#define CMD_API_REPLY_H

#include <stddef.h>
#include <stdint.h>

struct json_gen;
struct req;

/* Sends json[0..len) with status and optional extra header lines
 * ("Name: value\r\n" each, or NULL). Returns status (v1 sends a 201 as 200, and
 * returns 200). */
int reply_json(struct req *r, int status, const char *json, size_t len, const char *headers);

/* Finishes g, sends it and frees it; a generator error becomes a 500. */
int reply_gen(struct req *r, int status, struct json_gen *g, const char *headers);

/* Sends {"error":{"code":code,"message":message[,"field":field]}}. field may
 * be NULL. The message is formatted printf-style. Under v1 (req.version 1)
 * the body is the message alone in text/plain, 409 is sent as 400, and 401 as
 * 404 "Partner not found. Check your api_key.": the original's answers. */
int reply_error(struct req *r, int status, const char *code, const char *field, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* 429 with Retry-After (seconds, rounded up from retry_ms) and the error
 * code and message, as reply_error. */
int reply_retry_later(struct req *r, const char *code, int64_t retry_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 400 naming the field: "<field>: <why>" (v1: "Validation failed: <Field>
 * <why>", as Rails wrote it). */
int reply_invalid(struct req *r, const char *field, const char *why);

/* 503: Redis did not answer (logged with the command's error). */
int reply_unavailable(struct req *r);

/* A body written as it is made (chunked transfer encoding), so an answer
 * of any size takes constant memory: reply_stream_open() sends the head,
 * reply_stream_write() one piece (0, or -SIMAP_EIO once the client is gone),
 * reply_stream_close() the end. A body cut short by an error after the head
 * is closed as it stands: the client gets an incomplete document, never a
 * complete-looking wrong one. reply_stream_open returns status. */
int reply_stream_open(struct req *r, int status, const char *ctype);
int reply_stream_write(struct req *r, const char *data, size_t len);
void reply_stream_close(struct req *r);

/* Sends body[0..len) as content type ctype with status and optional extra
 * header lines ("Name: value\r\n" each, or NULL): a download, the
 * dashboard's files. Returns status. */
int reply_bytes(struct req *r, int status, const char *ctype, const char *body, size_t len,
                const char *headers);

/* 204 without a body. */
int reply_no_content(struct req *r);

/* Sends an HTML page (UTF-8, the caller escaped what it holds) with a
 * Content-Security-Policy that allows no script (under /admin, the
 * dashboard's, which allows only the api's own files). Returns status. */
int reply_html(struct req *r, int status, const char *html, const char *headers);

/* 302 to location (a CR or LF in it gives a 400 page instead), with the
 * extra header lines (Set-Cookie). Returns the status sent. */
int reply_redirect(struct req *r, const char *location, const char *headers);

/* 303 See Other to location, as reply_redirect(): the dashboard's answer to
 * a form (sign-in, sign-out). */
int reply_see_other(struct req *r, const char *location, const char *headers);

/* A new generator with the response cap. */
struct json_gen *reply_gen_new(void);

#endif
