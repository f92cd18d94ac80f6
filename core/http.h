/*
 * core/http: the civetweb listener every node has (SUPERIMAP_HTTP_ADDR).
 *
 * Plain HTTP only (TLS is terminated by a proxy such as the nginx of docker-compose.yml). Handlers
 * run on civetweb's worker threads, never on the libev loop: whatever they
 * read from the loop's side must be atomic or locked. Directory listing is
 * off; files are served only when a document root is given (the api's web/).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_HTTP_H
#define CORE_HTTP_H

#include <stddef.h>

#include <civetweb.h>

struct http_server;

struct http_opts {
    const char *addr;          /* host:port; port 0 picks a free one */
    int threads;               /* worker threads */
    const char *document_root; /* NULL: serve no files */
    /* Optional: called on each worker thread at its start and exit; the
     * pointer init returns is what http_thread_data() gives its handlers. */
    void *(*thread_init)(void *data);
    void (*thread_exit)(void *thread_data, void *data);
    /* Time a client has for a request's headers, and for each read of its
     * body (civetweb's request_timeout_ms); 0: 30 s. */
    int request_timeout_ms;
    /* Optional: a new connection from peer (its address as text), on the
     * worker thread that will read it, before anything is read. Returns 0 to
     * take it, or -1 to refuse it; a refused connection whose request
     * headers have already arrived whole is offered again with complete 1
     * (which must take it), any other is answered 503 and closed at once (a
     * slow client must not hold a worker thread). conn_ready() follows each
     * 0 once: when the first request's headers have been read, or when the
     * connection closes without them. */
    int (*conn_open)(void *data, const char *peer, int complete);
    void (*conn_ready)(void *data, const char *peer);
    void *data;
};

/* Initialises civetweb (once per process) and starts listening. Returns the
 * server, or NULL with the reason (bind failure, bad address) in err. */
struct http_server *http_start(const struct http_opts *opts, char *err, size_t errlen);

/* Stops the listener, waits for its worker threads and frees it. NULL is a no-op. */
void http_stop(struct http_server *srv);

/* The port actually bound (useful with port 0). */
int http_port(const struct http_server *srv);

/* Routes uri (civetweb pattern: "/api/" matches the subtree, "/x$" exactly) to h.
 * Call before traffic arrives, from the thread that started the server. */
void http_route(struct http_server *srv, const char *uri, mg_request_handler h, void *cbdata);

/* The worker thread's pointer from opts.thread_init, on a handler's thread. */
void *http_thread_data(const struct mg_connection *conn);

/* Sends a complete response with Content-Length and no caching. Returns the
 * status (civetweb's handler return convention) so handlers can
 * `return http_reply(...)`. */
int http_reply(struct mg_connection *conn, int status, const char *content_type, const char *body,
               size_t len);

/* http_reply() with application/json. */
int http_reply_json(struct mg_connection *conn, int status, const char *json, size_t len);

/* Sends {"error":{"code":code,"message":message}} with status. */
int http_reply_error(struct mg_connection *conn, int status, const char *code, const char *message);

#endif
