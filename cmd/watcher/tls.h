/*
 * cmd/watcher/tls: the TLS client side of IMAP sessions on OpenSSL 3, for
 * non-blocking sockets on a libev loop.
 *
 * One SSL_CTX for the process: TLS 1.2 or newer, peer verification against
 * SUPERIMAP_CA_FILE or the system store, host name (or IP address) checked
 * against the certificate, SNI sent for names. SSL_MODE_RELEASE_BUFFERS is
 * on, and tls_idle() frees a connection's buffers when its session goes
 * idle, so an idle TLS session keeps only the SSL state.
 *
 * The I/O calls never block. They return the bytes moved (> 0), or 0 with
 * *want set to TLS_WANT_READ or TLS_WANT_WRITE (arm that watcher and call
 * again), or a negative error: -SIMAP_ECONN (the peer closed), -SIMAP_EIO
 * (socket error) or -SIMAP_ECRYPTO (TLS failure, certificate refused), with
 * the reason in err. After a read, bytes may remain inside the SSL object
 * (tls_pending()): they do not wake the socket watcher, so read them first.
 *
 * Loop thread only (OpenSSL objects are not shared).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_TLS_H
#define CMD_WATCHER_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ssl_st SSL;

#define TLS_WANT_READ  1
#define TLS_WANT_WRITE 2

/* Makes the process's client context. ca_file NULL or "": the system store.
 * Returns 0, or -SIMAP_ECRYPTO with the reason in err. */
int tls_init(const char *ca_file, char *err, size_t errlen);

/* Frees the context. */
void tls_shutdown(void);

/* Returns a new client SSL on fd that will verify host (a DNS name or an IP
 * literal), or NULL with the reason in err. SSL_free() it. */
SSL *tls_new(int fd, const char *host, char *err, size_t errlen);

/* Drives the handshake: 1 done, 0 with *want set, or a negative error. */
int tls_handshake(SSL *ssl, int *want, char *err, size_t errlen);

/* Reads up to n bytes into buf; see the header comment for returns. */
ssize_t tls_read(SSL *ssl, void *buf, size_t n, int *want, char *err, size_t errlen);

/* Writes up to n bytes of buf; partial writes are allowed and the buffer may
 * move between calls. Same returns. */
ssize_t tls_write(SSL *ssl, const void *buf, size_t n, int *want, char *err, size_t errlen);

/* Bytes decrypted and buffered inside ssl, not yet read. */
int tls_pending(const SSL *ssl);

/* Frees ssl's read and write buffers when they are empty (idle sessions). */
void tls_idle(SSL *ssl);

#endif
