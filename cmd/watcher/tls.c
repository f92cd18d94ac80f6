/*
 * cmd/watcher/tls: OpenSSL 3 client context and non-blocking TLS I/O for IMAP
 * sessions (RFC 8314 implicit TLS, RFC 3501 STARTTLS; certificate checks of
 * RFC 6125 by OpenSSL's host and IP matching). See tls.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/err.h"

static SSL_CTX *ctx;

/* Appends OpenSSL's queued errors (or what the verification said) to err. */
static void ssl_errstr(SSL *ssl, const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    while (ERR_get_error() != 0) {
    }
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(err, errlen, "%s: certificate: %s", what, X509_verify_cert_error_string(vr));
    else
        snprintf(err, errlen, "%s: %s", what, reason[0] ? reason : "TLS failure");
}

int tls_init(const char *ca_file, char *err, size_t errlen)
{
    if (ctx != NULL)
        return 0;
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        ssl_errstr(NULL, "SSL_CTX_new", err, errlen);
        return -SIMAP_ECRYPTO;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
    int ok = ca_file != NULL && ca_file[0] != '\0'
                 ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        ssl_errstr(NULL,
                   ca_file != NULL && ca_file[0] ? "cannot load SUPERIMAP_CA_FILE"
                                                 : "cannot load the system CA store",
                   err, errlen);
        SSL_CTX_free(ctx);
        ctx = NULL;
        return -SIMAP_ECRYPTO;
    }
    return 0;
}

void tls_shutdown(void)
{
    SSL_CTX_free(ctx);
    ctx = NULL;
}

SSL *tls_new(int fd, const char *host, char *err, size_t errlen)
{
    if (ctx == NULL) {
        snprintf(err, errlen, "TLS is not initialised");
        return NULL;
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        ssl_errstr(NULL, "SSL_new", err, errlen);
        return NULL;
    }
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    int ok = SSL_set_fd(ssl, fd);
    if (ok == 1 && is_ip)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    if (ok == 1 && !is_ip) {
        /* SNI, and the name the certificate must carry (no partial wildcards). */
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    }
    if (ok != 1) {
        ssl_errstr(NULL, "cannot set up TLS", err, errlen);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Maps SSL_get_error() after a call that returned rc <= 0. */
static int io_error(SSL *ssl, int rc, int *want, const char *what, char *err, size_t errlen)
{
    int saved = errno;
    int e = SSL_get_error(ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = TLS_WANT_READ;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = TLS_WANT_WRITE;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(err, errlen, "%s: server closed the TLS connection", what);
        return -SIMAP_ECONN;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() != 0) {
            ssl_errstr(ssl, what, err, errlen);
            return -SIMAP_ECRYPTO;
        }
        if (saved == 0 || saved == ECONNRESET || saved == EPIPE) {
            snprintf(err, errlen, "%s: server closed the connection", what);
            return -SIMAP_ECONN;
        }
        snprintf(err, errlen, "%s: %s", what, strerror(saved));
        return -SIMAP_EIO;
    default:
        ssl_errstr(ssl, what, err, errlen);
        return -SIMAP_ECRYPTO;
    }
}

int tls_handshake(SSL *ssl, int *want, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return 1;
    return io_error(ssl, rc, want, "TLS handshake", err, errlen);
}

ssize_t tls_read(SSL *ssl, void *buf, size_t n, int *want, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    size_t got = 0;
    int rc = SSL_read_ex(ssl, buf, n, &got);
    if (rc == 1)
        return (ssize_t)got;
    return io_error(ssl, rc, want, "TLS read", err, errlen);
}

ssize_t tls_write(SSL *ssl, const void *buf, size_t n, int *want, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    size_t put = 0;
    int rc = SSL_write_ex(ssl, buf, n, &put);
    if (rc == 1)
        return (ssize_t)put;
    return io_error(ssl, rc, want, "TLS write", err, errlen);
}

int tls_pending(const SSL *ssl)
{
    return SSL_pending(ssl);
}

void tls_idle(SSL *ssl)
{
    SSL_free_buffers(ssl);
}
