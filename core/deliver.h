/*
 * core/deliver: HTTP POSTs with one libcurl multi handle driven by
 * the libev loop (curl's socket and timer callbacks, shaped like curl's
 * docs/examples/evhiperfifo.c).
 *
 * Every request: POST, keep-alive connections shared by all requests, HTTP/2
 * when a TLS receiver offers it (ALPN) with multiplexing, at most
 * max_host_connections connections per host, a total timeout and a connect
 * timeout, no redirects, http and https only, proxy variables ignored,
 * certificates verified, the response body read up to 64 KiB and discarded
 * (its first bytes kept for the delivery log) or, with keep_body, kept whole,
 * Retry-After captured.
 *
 * SSRF guard: every address curl is about to connect to (after DNS, so a
 * name that resolves differently later cannot slip through) is classified by
 * core/netguard from CURLOPT_OPENSOCKETFUNCTION; a refused one never gets a
 * socket, and the request fails with an error naming the address and its
 * class. Connections are reused only for the host they were made for.
 *
 * deliver_mail() submits one message over SMTP (RFC 5321, AUTH PLAIN or
 * LOGIN, or XOAUTH2; smtps:// or STARTTLS required) on the same loop and
 * under the same guard, on a connection of its own (never reused).
 *
 * Runs on the loop's thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_DELIVER_H
#define CORE_DELIVER_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct deliver;

#define DELIVER_MAX_RESPONSE (64 * 1024) /* response bytes read, then the transfer stops */
#define DELIVER_SNIPPET      200         /* response bytes kept for the log */
#define DELIVER_MAX_HEADERS  16          /* header lines of one request */

struct deliver_opts {
    long timeout_ms;           /* whole request, connect included */
    long connect_timeout_ms;   /* TCP (and TLS) connect */
    long max_host_connections; /* per host; 0: no limit */
    long max_connections;      /* open connections in all; 0: no limit */
    int allow_private;         /* netguard_allowed()'s flag */
    const char *allow_var;     /* the variable that sets it, named in refusals (static) */
    const char *user_agent;    /* copied */
    int keep_body;             /* keep the response body (up to DELIVER_MAX_RESPONSE) */
};

/* The outcome of one request; valid only during the callback. */
struct deliver_result {
    long status;            /* HTTP status, 0 when no response arrived */
    int64_t retry_after_ms; /* parsed Retry-After, -1 when absent or invalid */
    int64_t latency_ms;     /* from deliver_post() to the end */
    int refused;            /* 1 when the SSRF guard refused every address */
    const char *error;      /* "" after a complete response (any status), else why not */
    const char *snippet;    /* first bytes of the response body, control bytes as '.' */
    const char *body;       /* keep_body: the whole body, NUL-terminated; else NULL */
    size_t body_len;        /* its bytes; a body past DELIVER_MAX_RESPONSE is an error */
    int code;               /* libcurl's CURLcode, 0 (CURLE_OK) after a complete transfer */
};

typedef void deliver_cb(const struct deliver_result *res, void *data);

/* Returns a new engine on loop; NULL (logged) if libcurl cannot make a
 * multi handle. curl_global_init() must have run. */
struct deliver *deliver_new(struct ev_loop *loop, const struct deliver_opts *opts);

/* Aborts every request (each callback runs once, with error "shutting down"
 * and status 0), closes every connection and frees the engine. Accepts NULL.
 * Must not be called from a deliver callback. */
void deliver_free(struct deliver *d);

/*
 * Starts a POST of body[0..len) to url with the nheaders header lines
 * ("Name: value", copied; at most DELIVER_MAX_HEADERS). Takes ownership of body (xmalloc'ed) in every
 * case. Returns 0: cb runs exactly once, later, from the loop, never from
 * inside this call; or -SIMAP_EINVAL (bad URL scheme or arguments) /
 * -SIMAP_EIO (libcurl refused the request), with cb never called.
 */
int deliver_post(struct deliver *d, const char *url, const char *const *headers, size_t nheaders,
                 char *body, size_t len, deliver_cb *cb, void *data);

/* One SMTP submission; every string borrowed for the call (copied). */
struct deliver_mail {
    const char *url;      /* smtp://host:port[/ehlo name] or smtps://... */
    int starttls;         /* 1: STARTTLS is required (smtp:// only) */
    const char *from;     /* MAIL FROM address */
    const char *rcpt;     /* the one RCPT TO address */
    const char *username; /* AUTH identity */
    const char *password; /* AUTH PLAIN/LOGIN password; NULL with bearer */
    const char *bearer;   /* XOAUTH2 access token; NULL with password */
    const char *ca_file;  /* certificates to verify the server with; NULL: the system's */
};

/*
 * Starts an SMTP submission of msg[0..len) (a whole RFC 5322 message with
 * CRLF line ends; xmalloc'ed, owned from here in every case) as m says.
 * The result's status is the server's last reply code, code libcurl's
 * (CURLE_LOGIN_DENIED: authentication refused, CURLE_SEND_ERROR and
 * CURLE_WEIRD_SERVER_REPLY: a command refused, ...). Returns 0 and cb runs
 * once later, as deliver_post(); or -SIMAP_EINVAL / -SIMAP_EIO without cb.
 */
int deliver_mail(struct deliver *d, const struct deliver_mail *m, char *msg, size_t len,
                 deliver_cb *cb, void *data);

/* Requests started and not yet called back. */
int deliver_active(const struct deliver *d);

#endif
