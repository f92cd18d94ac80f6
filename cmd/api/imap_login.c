/*
 * cmd/api/imap_login: the PLAIN connect form's live login (imap_login.h has
 * the contract): RFC 3501 greeting, STARTTLS (section 6.2.1) when the
 * provider asks for it, LOGIN (section 6.2.3), LOGOUT; TLS with the
 * certificate and host name verified (RFC 8314 for implicit TLS). One
 * blocking socket with a deadline for the whole exchange, on the request's
 * worker thread.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/imap_login.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/time.h"
#include "proto/imap_cmd.h"
#include "proto/imap_parse.h"

#define LINE_MAX_BYTES (64 * 1024)

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int64_t deadline_ms; /* monotonic */
    struct imap_parser *parser;
    char in[4096];
    size_t in_len, in_off;
    char *why;
    size_t whylen;
};

static void say(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, c->whylen, fmt, ap);
    va_end(ap);
}

/* Milliseconds left before the deadline, at least 0. */
static int left_ms(const struct conn *c)
{
    int64_t left = c->deadline_ms - time_mono_ms();
    return left > 0 ? (int)left : 0;
}

/* Waits for events on the socket until the deadline; 1 when ready. */
static int wait_fd(struct conn *c, short events)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, left_ms(c));
        if (n > 0)
            return 1;
        if (n == 0 || errno != EINTR)
            return 0;
    }
}

static int open_socket(struct conn *c, const char *host, int port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0) {
        say(c, "The mail server %s could not be found.", host);
        return -1;
    }
    for (struct addrinfo *a = res; a != NULL && c->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        c->fd = fd;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        int err = errno;
        if (rc == 0)
            break;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (err == EINPROGRESS && wait_fd(c, POLLOUT) &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
            break;
        close(fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        say(c, "The mail server %s did not answer.", host);
        return -1;
    }
    return 0;
}

/* After an SSL call returned rc: waits for what it wants and returns 1 (call
 * again), or returns 0 (it failed, or the deadline passed). */
static int tls_again(struct conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if ((e == SSL_ERROR_WANT_READ && wait_fd(c, POLLIN)) ||
        (e == SSL_ERROR_WANT_WRITE && wait_fd(c, POLLOUT)))
        return 1;
    ERR_clear_error();
    return 0;
}

static int start_tls(struct conn *c, const char *host, const char *ca_file)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return -1;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file != NULL && *ca_file != '\0' ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL)
                                             : SSL_CTX_set_default_verify_paths(c->ctx)) != 1)
        return -1;
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        SSL_set_tlsext_host_name(c->ssl, host) != 1 || SSL_set1_host(c->ssl, host) != 1)
        return -1;
    for (;;) {
        int rc = SSL_connect(c->ssl);
        if (rc == 1)
            return 0;
        if (!tls_again(c, rc)) {
            long v = SSL_get_verify_result(c->ssl);
            if (v != X509_V_OK)
                say(c,
                    "The mail server %s did not prove who it is: its certificate could not be "
                    "verified (%s). Nothing was sent to it; tell the service you are connecting "
                    "to.",
                    host, X509_verify_cert_error_string(v));
            else
                say(c, "A secure connection to the mail server %s could not be made.", host);
            return -1;
        }
    }
}

/* One write of up to n bytes from out or, when out is NULL, one read into
 * in, over TLS when it is on. Returns the bytes moved, 0 to call again
 * (after waiting for the socket), or -1 (closed, failed, or the deadline
 * passed). */
static ssize_t io_once(struct conn *c, const char *out, char *in, size_t n)
{
    int writing = out != NULL;
    if (c->ssl != NULL) {
        int rc = writing ? SSL_write(c->ssl, out, (int)n) : SSL_read(c->ssl, in, (int)n);
        if (rc > 0)
            return rc;
        return tls_again(c, rc) ? 0 : -1;
    }
    ssize_t k = writing ? send(c->fd, out, n, MSG_NOSIGNAL) : recv(c->fd, in, n, 0);
    if (k > 0)
        return k;
    if (k < 0 && errno == EINTR)
        return 0;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
        wait_fd(c, writing ? POLLOUT : POLLIN))
        return 0;
    return -1;
}

static int send_all(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = io_once(c, p, NULL, n);
        if (k < 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads more bytes into c->in. 0, or -1 on close, error or deadline. */
static int fill(struct conn *c)
{
    ssize_t k;
    while ((k = io_once(c, NULL, c->in, sizeof c->in)) == 0)
        continue;
    if (k < 0)
        return -1;
    c->in_len = (size_t)k;
    c->in_off = 0;
    return 0;
}

/* The next response into *out. 0, or -1 (closed, timed out, nonsense). */
static int next_response(struct conn *c, struct imap_response **out)
{
    for (;;) {
        if (c->in_off == c->in_len && fill(c) < 0)
            return -1;
        size_t used = 0;
        int rc = imap_parse_feed(c->parser, c->in + c->in_off, c->in_len - c->in_off, &used, out);
        c->in_off += used;
        if (rc == 0)
            return 0;
        if (rc != IMAP_AGAIN)
            return -1;
    }
}

/* Sends cmd (with its literal stops, if any, waiting for "+" at each) and
 * reads up to its tagged answer, which is returned in *out. Untagged BYE
 * ends it early (-1). */
static int run(struct conn *c, const struct buf *cmd, const struct imap_cmd_sync *sync,
               const char *tag, struct imap_response **out)
{
    size_t from = 0;
    for (size_t i = 0; sync != NULL && i <= sync->n; i++) {
        size_t to = i < sync->n ? sync->at[i] : cmd->len;
        if (send_all(c, cmd->data + from, to - from) < 0)
            return -1;
        from = to;
        if (i == sync->n)
            break;
        struct imap_response *cont = NULL;
        if (next_response(c, &cont) < 0 || cont->kind != IMAP_RESP_CONTINUE) {
            *out = cont;
            return cont != NULL && cont->kind == IMAP_RESP_TAGGED ? 0 : -1;
        }
        imap_response_free(cont);
    }
    if (sync == NULL && send_all(c, cmd->data, cmd->len) < 0)
        return -1;
    for (;;) {
        struct imap_response *r = NULL;
        if (next_response(c, &r) < 0)
            return -1;
        if (r->kind == IMAP_RESP_TAGGED && r->tag.data != NULL && strcmp(r->tag.data, tag) == 0) {
            *out = r;
            return 0;
        }
        int bye = r->kind == IMAP_RESP_COND && r->cond == IMAP_COND_BYE;
        imap_response_free(r);
        if (bye)
            return -1;
    }
}

/* The server's text of a refusal, in a sentence. */
static void refusal(struct conn *c, const struct imap_response *r)
{
    const char *text = r->text.data != NULL && r->text.len > 0 ? r->text.data : "";
    const char *lead;
    switch (r->code.kind) {
    case IMAP_CODE_AUTHENTICATIONFAILED:
        lead = "The mail server did not accept this user name and password";
        break;
    case IMAP_CODE_AUTHORIZATIONFAILED:
    case IMAP_CODE_NOPERM:
        lead = "This account may not use the mail server this way";
        break;
    case IMAP_CODE_EXPIRED:
        lead = "The password has expired; change it with your mail provider first";
        break;
    case IMAP_CODE_PRIVACYREQUIRED:
        lead = "The mail server wants a secure connection for this login";
        break;
    case IMAP_CODE_CONTACTADMIN:
        lead = "The mail server asks you to contact its administrator";
        break;
    case IMAP_CODE_LIMIT:
    case IMAP_CODE_UNAVAILABLE:
        lead = "The mail server is busy right now; try again in a few minutes";
        break;
    default:
        lead = "The mail server refused the login";
    }
    char clean[256];
    size_t n = 0;
    for (const char *p = text; *p != '\0' && n + 1 < sizeof clean; p++)
        clean[n++] = (unsigned char)*p < 0x20 ? ' ' : *p;
    clean[n] = '\0';
    if (n > 0)
        snprintf(c->why, c->whylen, "%s. The server said: \"%s\"", lead, clean);
    else
        snprintf(c->why, c->whylen, "%s.", lead);
}

static enum imap_login_result session(struct conn *c, const struct imap_login_target *t,
                                      const char *user, const char *password)
{
    if (open_socket(c, t->host, t->port) < 0)
        return IMAP_LOGIN_UNAVAILABLE;
    if (strcmp(t->tls, "implicit") == 0 && start_tls(c, t->host, t->ca_file) < 0)
        return IMAP_LOGIN_UNAVAILABLE;
    struct imap_response *r = NULL;
    if (next_response(c, &r) < 0 || r->kind != IMAP_RESP_COND ||
        (r->cond != IMAP_COND_OK && r->cond != IMAP_COND_PREAUTH)) {
        imap_response_free(r);
        say(c, "The mail server %s did not greet us as an IMAP server does.", t->host);
        return IMAP_LOGIN_UNAVAILABLE;
    }
    imap_response_free(r);
    struct imap_tagger tagger = {0};
    char tag[IMAP_TAG_SIZE];
    struct buf cmd;
    buf_init(&cmd, LINE_MAX_BYTES);
    if (strcmp(t->tls, "starttls") == 0) {
        imap_tag_next(&tagger, tag);
        imap_cmd_starttls(&cmd, tag);
        r = NULL;
        int rc = run(c, &cmd, NULL, tag, &r);
        buf_reset(&cmd);
        if (rc < 0 || r->cond != IMAP_COND_OK || c->in_off != c->in_len ||
            start_tls(c, t->host, t->ca_file) < 0) {
            imap_response_free(r);
            buf_free(&cmd);
            if (c->why[0] == '\0')
                say(c, "The mail server %s refused a secure connection.", t->host);
            return IMAP_LOGIN_UNAVAILABLE;
        }
        imap_response_free(r);
        imap_parser_reset(c->parser);
    }
    imap_tag_next(&tagger, tag);
    struct imap_cmd_sync sync;
    enum imap_login_result out = IMAP_LOGIN_UNAVAILABLE;
    if (imap_cmd_login(&cmd, &sync, tag, user, password, 0) < 0) {
        say(c, "%s", "The user name or password is too long.");
        out = IMAP_LOGIN_REFUSED;
    } else {
        r = NULL;
        int rc = run(c, &cmd, &sync, tag, &r);
        if (rc < 0) {
            say(c, "The mail server %s closed the connection during the login.", t->host);
        } else if (r->cond == IMAP_COND_OK) {
            out = IMAP_LOGIN_OK;
        } else {
            refusal(c, r);
            out = r->code.kind == IMAP_CODE_LIMIT || r->code.kind == IMAP_CODE_UNAVAILABLE
                      ? IMAP_LOGIN_UNAVAILABLE
                      : IMAP_LOGIN_REFUSED;
        }
        imap_response_free(r);
    }
    if (cmd.data != NULL)
        crypto_wipe(cmd.data, cmd.len);
    buf_reset(&cmd);
    if (out == IMAP_LOGIN_OK) {
        imap_tag_next(&tagger, tag);
        imap_cmd_logout(&cmd, tag);
        send_all(c, cmd.data, cmd.len);
    }
    buf_free(&cmd);
    return out;
}

enum imap_login_result imap_login_try(const struct imap_login_target *t, const char *user,
                                      const char *password, char *why, size_t whylen)
{
    struct conn c = {.fd = -1, .why = why, .whylen = whylen};
    why[0] = '\0';
    c.deadline_ms = time_mono_ms() + IMAP_LOGIN_TIMEOUT_MS;
    c.parser = imap_parser_new(LINE_MAX_BYTES, LINE_MAX_BYTES);
    enum imap_login_result r = session(&c, t, user, password);
    if (r != IMAP_LOGIN_OK && why[0] == '\0')
        snprintf(why, whylen, "The mail server %s did not answer in time.", t->host);
    if (c.ssl != NULL) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    SSL_CTX_free(c.ctx);
    if (c.fd >= 0)
        close(c.fd);
    imap_parser_free(c.parser);
    ERR_clear_error();
    return r;
}
