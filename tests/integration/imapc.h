/*
 * A blocking IMAP client for integration tests, with deadlines: plain or
 * TLS, reads lines and exact bytes, and cmocka assertions on what the
 * server says (transcripts checked line by line, as curl's
 * tests/data/test800 does). Used by the superimap-fake-imapd suites.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_IMAPC_H
#define TESTS_INTEGRATION_IMAPC_H

#include <stddef.h>

#include <openssl/ssl.h>

#define IMAPC_WAIT_MS 5000 /* every wait's deadline */

struct imapc {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char buf[1 << 16];
    size_t len;
    int reads; /* reads that returned data */
    char line[1 << 14];
};

/* Connects to host:port (IPv4); with ca, handshakes TLS verifying the
 * server's certificate against that file for "localhost". Fails the test
 * on error. */
void imapc_open(struct imapc *c, const char *host, int port, const char *ca);

/* Handshakes TLS on the open connection (after STARTTLS), verifying the
 * server's certificate against the file ca for "localhost". */
void imapc_handshake(struct imapc *c, const char *ca);

/* Closes the connection (idempotent). */
void imapc_close(struct imapc *c);

/* Reads more within ms: returns bytes added, 0 at end of stream, -1 on
 * timeout (or error). */
int imapc_fill(struct imapc *c, int ms);

/* The next line without CRLF (valid until the next call), or NULL at end of
 * stream or after ms. */
const char *imapc_line(struct imapc *c, int ms);

/* Reads exactly n bytes into out, or fails the test. */
void imapc_bytes(struct imapc *c, char *out, size_t n);

/* Sends a formatted command. */
void imapc_send(struct imapc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The next line must be want (or start with want), or the test fails. */
void imapc_expect_line(struct imapc *c, const char *want);
void imapc_expect_prefix(struct imapc *c, const char *want);

/* The exact bytes want[0..n) must come next. */
void imapc_expect_bytes(struct imapc *c, const char *want, size_t n);

/* 1 when the server closes the connection within ms. */
int imapc_eof(struct imapc *c, int ms);

#endif
