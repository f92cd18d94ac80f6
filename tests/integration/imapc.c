/*
 * A blocking IMAP client for integration tests (see imapc.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/imapc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "tests/integration/harness.h"

void imapc_handshake(struct imapc *c, const char *ca)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, ca, NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    assert_non_null(c->ssl);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set1_host(c->ssl, "localhost");
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    if (SSL_connect(c->ssl) != 1) {
        char text[256] = "";
        ERR_error_string_n(ERR_get_error(), text, sizeof text);
        fail_msg("TLS handshake failed: %s", text);
    }
    assert_int_equal(SSL_get_verify_result(c->ssl), X509_V_OK);
}

void imapc_open(struct imapc *c, const char *host, int port, const char *ca)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, host, &sa.sin_addr), 1);
    struct timeval tv = {IMAPC_WAIT_MS / 1000, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("connect %s:%d: %s", host, port, strerror(errno));
    if (ca != NULL)
        imapc_handshake(c, ca);
}

void imapc_close(struct imapc *c)
{
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->ctx != NULL)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

/* Reads more within ms: returns bytes added, 0 at end of stream, -1 on
 * timeout (or error). */
int imapc_fill(struct imapc *c, int ms)
{
    if (c->len == sizeof c->buf)
        fail_msg("client buffer full");
    if (c->ssl == NULL || SSL_pending(c->ssl) == 0) {
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0)
            return -1;
    }
    int n;
    if (c->ssl != NULL) {
        n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
        if (n <= 0)
            return SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    } else {
        n = (int)read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (n < 0)
            return errno == ECONNRESET ? 0 : -1;
    }
    if (n > 0) {
        c->len += (size_t)n;
        c->reads++;
    }
    return n;
}

/* The next line without CRLF, or NULL at end of stream or after ms. */
const char *imapc_line(struct imapc *c, int ms)
{
    long long deadline = harness_now_ms() + ms;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf) + 1;
            size_t keep = n >= 2 && nl[-1] == '\r' ? n - 2 : n - 1;
            assert_true(keep < sizeof c->line);
            memcpy(c->line, c->buf, keep);
            c->line[keep] = '\0';
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return c->line;
        }
        long long left = deadline - harness_now_ms();
        if (left <= 0 || imapc_fill(c, (int)left) <= 0)
            return NULL;
    }
}

/* Reads exactly n bytes into out. */
void imapc_bytes(struct imapc *c, char *out, size_t n)
{
    long long deadline = harness_now_ms() + IMAPC_WAIT_MS;
    while (c->len < n) {
        long long left = deadline - harness_now_ms();
        if (left <= 0 || imapc_fill(c, (int)left) <= 0)
            fail_msg("wanted %zu bytes, got %zu", n, c->len);
    }
    memcpy(out, c->buf, n);
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

void imapc_send(struct imapc *c, const char *fmt, ...)
{
    char text[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof text);
    if (c->ssl != NULL)
        assert_int_equal(SSL_write(c->ssl, text, n), n);
    else
        assert_int_equal(send(c->fd, text, (size_t)n, MSG_NOSIGNAL), n);
}

void imapc_expect_line(struct imapc *c, const char *want)
{
    const char *got = imapc_line(c, IMAPC_WAIT_MS);
    if (got == NULL)
        fail_msg("expected \"%s\", got end of stream or timeout", want);
    if (strcmp(got, want) != 0)
        fail_msg("expected \"%s\"\n     got \"%s\"", want, got);
}

void imapc_expect_prefix(struct imapc *c, const char *want)
{
    const char *got = imapc_line(c, IMAPC_WAIT_MS);
    if (got == NULL)
        fail_msg("expected \"%s...\", got end of stream or timeout", want);
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("expected \"%s...\"\n     got \"%s\"", want, got);
}

/* Expects the exact bytes want[0..n) next. */
void imapc_expect_bytes(struct imapc *c, const char *want, size_t n)
{
    char *got = malloc(n + 1);
    assert_non_null(got);
    imapc_bytes(c, got, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("transcript differs at byte %zu of %zu:\nexpected: %.*s\n     got: %.*s", i, n,
                     (int)(n - i), want + i, (int)(n - i), got + i);
    free(got);
}

/* 1 when the server closes the connection within ms. */
int imapc_eof(struct imapc *c, int ms)
{
    long long deadline = harness_now_ms() + ms;
    for (;;) {
        long long left = deadline - harness_now_ms();
        if (left <= 0)
            return 0;
        int n = imapc_fill(c, (int)left);
        if (n == 0)
            return 1;
        if (n < 0)
            return 0;
    }
}
