/*
 * core/http: civetweb listener wrapper.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_gen.h>

#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

/* How long a connection past its address's bound may take to bring its
 * request headers whole before it is turned away. */
#define HEADERS_GRACE_MS 50

struct http_server {
    struct mg_context *ctx;
    struct http_opts opts;
    int port;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void init_library(void)
{
    mg_init_library(0);
}

static int on_civetweb_log(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    size_t n = strcspn(message, "\r\n");
    log_warn("http server message msg=\"%.*s\"", (int)n, message);
    return 1;
}

static void *on_thread_start(const struct mg_context *ctx, int thread_type)
{
    struct http_server *srv = mg_get_user_data(ctx);
    if (thread_type != 1 || srv->opts.thread_init == NULL) /* 1: worker thread */
        return NULL;
    return srv->opts.thread_init(srv->opts.data);
}

static void on_thread_stop(const struct mg_context *ctx, int thread_type, void *thread_data)
{
    struct http_server *srv = mg_get_user_data(ctx);
    if (thread_type == 1 && srv->opts.thread_exit != NULL)
        srv->opts.thread_exit(thread_data, srv->opts.data);
}

/* The socket of conn: the descriptor whose peer is conn's and whose local
 * port is the server's. Civetweb does not give it out; this runs only for a
 * connection being refused, on the worker thread that owns it (no other
 * thread closes it meanwhile, and no other socket has its four-tuple).
 * -1 when not found. */
static int socket_of(const struct mg_request_info *ri)
{
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 1048576)
        max = 1048576;
    for (int fd = 0; fd < max; fd++) {
        struct sockaddr_storage peer, local;
        socklen_t plen = sizeof peer, llen = sizeof local;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0 ||
            getsockname(fd, (struct sockaddr *)&local, &llen) < 0)
            continue;
        char text[INET6_ADDRSTRLEN];
        const void *a = NULL;
        int pport = 0, lport = 0;
        if (peer.ss_family == AF_INET && local.ss_family == AF_INET) {
            a = &((struct sockaddr_in *)&peer)->sin_addr;
            pport = ntohs(((struct sockaddr_in *)&peer)->sin_port);
            lport = ntohs(((struct sockaddr_in *)&local)->sin_port);
        } else if (peer.ss_family == AF_INET6 && local.ss_family == AF_INET6) {
            a = &((struct sockaddr_in6 *)&peer)->sin6_addr;
            pport = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
            lport = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
        }
        if (a != NULL && pport == ri->remote_port && lport == ri->server_port &&
            inet_ntop(peer.ss_family, a, text, sizeof text) != NULL &&
            strcmp(text, ri->remote_addr) == 0)
            return fd;
    }
    return -1;
}

/* 1 when the request headers have arrived whole in fd's receive buffer (a
 * blank line ends them) within grace_ms: a client that sends its request at
 * once is not taken for a slow one because a worker thread looked too soon. */
static int headers_arrive(int fd, int grace_ms)
{
    int64_t deadline = time_mono_ms() + grace_ms;
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
        for (ssize_t i = 1; i < n; i++)
            if (buf[i] == '\n' &&
                (buf[i - 1] == '\n' || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
                return 1;
        int64_t left = deadline - time_mono_ms();
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
            (size_t)n == sizeof buf || left <= 0)
            return 0;
        /* Wait for more than the bytes already there. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (n > 0) {
            struct timespec ts = {0, 2 * 1000000L};
            nanosleep(&ts, NULL);
        } else if (poll(&p, 1, (int)left) <= 0) {
            return 0;
        }
    }
}

/* Where a connection keeps its struct mg_request_info, learnt from the first
 * request (0: not yet). Civetweb gives it out only once a request has begun,
 * but fills in the peer's address before init_connection, the one moment a
 * slow client can still be turned away without a worker thread waiting on
 * it; until a first request has shown the offset, connections are taken
 * unbounded. */
static atomic_size_t info_offset;

static void learn_info_offset(const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri != NULL && atomic_load(&info_offset) == 0)
        atomic_store(&info_offset, (size_t)((const char *)ri - (const char *)conn));
}

static int on_init_connection(const struct mg_connection *conn, void **conn_data)
{
    struct http_server *srv = mg_get_user_data(mg_get_context(conn));
    *conn_data = NULL;
    size_t off = atomic_load(&info_offset);
    if (srv->opts.conn_open == NULL || off == 0)
        return 0;
    const struct mg_request_info *ri = (const void *)((const char *)conn + off);
    if (srv->opts.conn_open(srv->opts.data, ri->remote_addr, 0) == 0) {
        *conn_data = srv; /* counted: conn_ready() when it closes */
        return 0;
    }
    int fd = socket_of(ri);
    if (fd >= 0 && headers_arrive(fd, HEADERS_GRACE_MS)) {
        if (srv->opts.conn_open(srv->opts.data, ri->remote_addr, 1) == 0)
            *conn_data = srv;
        return 0;
    }
    if (fd >= 0) {
        static const char answer[] =
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nContent-Length: 98\r\n\r\n"
            "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many slow "
            "connections from this address\"}}\n";
        (void)!send(fd, answer, sizeof answer - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(fd, SHUT_RDWR); /* civetweb's read of the headers ends at once */
    }
    log_debug("refused a slow connection peer=%s found=%d", ri->remote_addr, fd >= 0);
    return 0;
}

/* The headers of conn's first request have arrived, or conn closes. */
static void connection_ready(const struct mg_connection *conn)
{
    struct http_server *srv = mg_get_user_data(mg_get_context(conn));
    if (mg_get_user_connection_data(conn) != srv)
        return;
    mg_set_user_connection_data(conn, NULL);
    srv->opts.conn_ready(srv->opts.data, mg_get_request_info(conn)->remote_addr);
}

static int on_begin_request(struct mg_connection *conn)
{
    learn_info_offset(conn);
    connection_ready(conn);
    return 0; /* civetweb goes on to the handlers */
}

static void on_connection_close(const struct mg_connection *conn)
{
    connection_ready(conn);
}

struct http_server *http_start(const struct http_opts *opts, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (config_split_addr(opts->addr, host, sizeof host, &port) < 0) {
        snprintf(err, errlen, "bad listen address '%s' (want host:port)", opts->addr);
        return NULL;
    }
    pthread_once(&library_once, init_library);

    struct http_server *srv = xcalloc(1, sizeof *srv);
    srv->opts = *opts;
    char ports[300], threads[16], timeout[16];
    if (strchr(host, ':') != NULL)
        snprintf(ports, sizeof ports, "[%s]:%d", host, port);
    else
        snprintf(ports, sizeof ports, "%s:%d", host, port);
    snprintf(threads, sizeof threads, "%d", opts->threads > 0 ? opts->threads : 2);

    const char *options[20];
    int i = 0;
    options[i++] = "listening_ports";
    options[i++] = ports;
    options[i++] = "num_threads";
    options[i++] = threads;
    options[i++] = "enable_directory_listing";
    options[i++] = "no";
    options[i++] = "request_timeout_ms";
    snprintf(timeout, sizeof timeout, "%d",
             opts->request_timeout_ms > 0 ? opts->request_timeout_ms : 30000);
    options[i++] = timeout;
    options[i++] = "enable_keep_alive";
    options[i++] = "yes";
    /* Without it, an answer written in two pieces on a kept-alive connection
     * waits for the client's delayed ACK: 40 ms per request (measured on
     * superimap-fake-oauth2d's /token by bench_oauth2: 0.4 ms, then 40 ms). */
    options[i++] = "tcp_nodelay";
    options[i++] = "1";
    /* Handlers get the path still percent-encoded: civetweb would decode it in
     * place, so "%2F" inside an API path segment (a tag) would split it and
     * "%00" would silently cut it short. The api splits, then decodes. */
    options[i++] = "decode_url";
    options[i++] = "no";
    if (opts->document_root != NULL) {
        options[i++] = "document_root";
        options[i++] = opts->document_root;
    }
    if (mg_check_feature(8)) { /* CGI compiled in (Debian's is not): never run a file */
        options[i++] = "cgi_pattern";
        options[i++] = "**.superimap-never-cgi$";
    }
    options[i] = NULL;

    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.log_message = on_civetweb_log;
    cb.init_thread = on_thread_start;
    cb.exit_thread = on_thread_stop;
    cb.init_connection = on_init_connection;
    cb.connection_close = on_connection_close;
    cb.begin_request = on_begin_request;

    struct mg_init_data init = {
        .callbacks = &cb, .user_data = srv, .configuration_options = options};
    struct mg_error_data error;
    char errbuf[256] = "";
    memset(&error, 0, sizeof error);
    error.text = errbuf;
    error.text_buffer_size = sizeof errbuf;
    srv->ctx = mg_start2(&init, &error);
    if (srv->ctx == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s", opts->addr,
                 errbuf[0] ? errbuf : "civetweb failed to start");
        xfree(srv);
        return NULL;
    }
    struct mg_server_port sp[4];
    int n = mg_get_server_ports(srv->ctx, 4, sp);
    srv->port = n > 0 ? sp[0].port : port;
    return srv;
}

void http_stop(struct http_server *srv)
{
    if (srv == NULL)
        return;
    mg_stop(srv->ctx);
    xfree(srv);
}

int http_port(const struct http_server *srv)
{
    return srv->port;
}

void http_route(struct http_server *srv, const char *uri, mg_request_handler h, void *cbdata)
{
    mg_set_request_handler(srv->ctx, uri, h, cbdata);
}

void *http_thread_data(const struct mg_connection *conn)
{
    return mg_get_thread_pointer(conn);
}

static const char *reason(int status)
{
    const char *r = mg_get_response_code_text(NULL, status);
    return r ? r : "";
}

int http_reply(struct mg_connection *conn, int status, const char *content_type, const char *body,
               size_t len)
{
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: %s\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "\r\n",
              status, reason(status), content_type, len);
    if (len > 0)
        mg_write(conn, body, len);
    return status;
}

int http_reply_json(struct mg_connection *conn, int status, const char *json, size_t len)
{
    return http_reply(conn, status, "application/json", json, len);
}

int http_reply_error(struct mg_connection *conn, int status, const char *code, const char *message)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"error", 5);
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"code", 4);
    yajl_gen_string(g, (const unsigned char *)code, strlen(code));
    yajl_gen_string(g, (const unsigned char *)"message", 7);
    if (yajl_gen_string(g, (const unsigned char *)message, strlen(message)) != yajl_gen_status_ok)
        yajl_gen_string(g, (const unsigned char *)"(invalid UTF-8)", 15);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    const unsigned char *out;
    size_t len;
    yajl_gen_get_buf(g, &out, &len);
    int rc = http_reply_json(conn, status, (const char *)out, len);
    yajl_gen_free(g);
    return rc;
}
