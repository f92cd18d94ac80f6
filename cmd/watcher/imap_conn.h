/*
 * cmd/watcher/imap_conn: the byte pipe under one IMAP session: a
 * non-blocking TCP socket, optionally TLS (implicit or after STARTTLS, RFC
 * 8314, RFC 3501 6.2.1), and the bounded output buffer. It knows nothing of
 * IMAP: the session (imap_session.c) builds commands into out, and gets the
 * bytes that arrive, the end of a connect or of a handshake, and errors,
 * through the hooks it gave.
 *
 *   CLOSED --imap_conn_open + imap_conn_connect--> CONNECTING --writable,
 *     SO_ERROR 0--> OPEN (on_connected) --imap_conn_start_tls--> HANDSHAKE
 *     --done--> OPEN (on_tls_up)          any error: on_error; the owner closes
 *
 * Reads take a budget of IMAP_CONN_READ_BUDGET reads per wake-up (libuv's
 * uv__read); a spent budget comes back on the next loop turn, as do bytes
 * left buffered inside OpenSSL, which would not wake the socket watcher.
 *
 * Depends on: cmd/watcher/tls (OpenSSL), core/buf, core/err; libev. Runs on
 * the loop; the owner embeds the struct and wraps the ev_io callback (so it
 * can keep itself alive while hooks run).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_IMAP_CONN_H
#define CMD_WATCHER_IMAP_CONN_H

#include <stddef.h>
#include <sys/socket.h>

#include <ev.h>

#include "cmd/watcher/tls.h"
#include "core/buf.h"

#define IMAP_CONN_READ_BUDGET 16           /* reads per wake-up */
#define IMAP_CONN_READ_CHUNK  (16 * 1024)  /* one read */
#define IMAP_CONN_OUT_MAX     (256 * 1024) /* bound of the output buffer */

enum imap_conn_phase {
    IMAP_CONN_CLOSED,     /* no socket */
    IMAP_CONN_CONNECTING, /* TCP connect in progress */
    IMAP_CONN_HANDSHAKE,  /* TLS handshake in progress */
    IMAP_CONN_OPEN,       /* bytes flow (plaintext or TLS) */
};

/* What the connection reports to its owner (data: io.data), from
 * imap_conn_io() only (the hooks are its argument: a session holds no
 * pointer to them, idle sessions being many). */
struct imap_conn_hooks {
    /* The TCP connect completed (the read side is armed). */
    void (*on_connected)(void *data);
    /* The TLS handshake completed (the read side is armed). */
    void (*on_tls_up)(void *data);
    /* n bytes arrived, borrowed for the call. The owner may close the
     * connection from here; reading stops then. */
    void (*on_data)(void *data, const char *p, size_t n);
    /* The connection failed: err is -SIMAP_ECRYPTO for a TLS protocol
     * failure, -SIMAP_EIO otherwise; msg (imap_conn_error()) says what. The owner
     * must close it. */
    void (*on_error)(void *data, int err, const char *msg);
};

/*
 * One connection, embedded in its owner: visible for its size, changed
 * only through the functions below (out excepted: commands are appended to
 * it, then imap_conn_flush()).
 */
struct imap_conn {
    ev_io io; /* io.data: the owner, for its ev_io callback and the hooks */
    struct ev_loop *loop;
    SSL *ssl;
    struct buf out; /* bytes to send; freed when empty */
    int fd;
    unsigned serial;         /* bumps at each close: a hook that closed is noticed */
    unsigned char io_events; /* EV_READ | EV_WRITE armed */
    unsigned char phase;     /* enum imap_conn_phase */
};

/* The last error of a connection on this thread (imap_conn_error()): one
 * buffer for all of them, as errors are reported and read at once (192
 * bytes a connection used to carry for it, 13 % of an idle session). */
#define IMAP_CONN_ERR_MAX 192

/* What the last failure of a connection of this thread said; valid until
 * the next one fails. */
const char *imap_conn_error(void);

/* Sets c up CLOSED on loop; cb is the owner's ev_io callback, which must
 * call imap_conn_io(); owner goes to io.data. */
void imap_conn_init(struct imap_conn *c, struct ev_loop *loop,
                    void (*cb)(struct ev_loop *loop, ev_io *io, int revents), void *owner);

/* Makes the socket for a peer of family family (non-blocking, close-on-exec,
 * keep-alive, no Nagle) and an empty output buffer. Returns 0, or -SIMAP_EIO
 * with the reason in imap_conn_error(). */
int imap_conn_open(struct imap_conn *c, int family);

/* Connects to addr (host:port for messages). Returns 1 connected now (the
 * read side armed; on_connected is not called), 0 in progress (on_connected
 * or on_error follows from imap_conn_io), or -SIMAP_EIO with imap_conn_error() ("connect to host:port: why"; a
 * connect that fails later says "connect: why"). */
int imap_conn_connect(struct imap_conn *c, const struct sockaddr *addr, socklen_t addrlen,
                      const char *host, int port);

/* Starts TLS on the open socket, checking host's certificate. Returns 0
 * (HANDSHAKE: drive it with imap_conn_handshake()), or -SIMAP_ECRYPTO with
 * imap_conn_error(). */
int imap_conn_start_tls(struct imap_conn *c, const char *host);

/* One step of the handshake. Returns 1 done (OPEN, read side armed), 0 in
 * progress (on_tls_up or on_error follows from imap_conn_io), or a negative
 * error as for on_error. */
int imap_conn_handshake(struct imap_conn *c);

/* Writes what out holds, as far as the socket takes it; the rest goes when
 * the socket is writable. Returns 0, or a negative error as for on_error
 * (the hook is not called). */
int imap_conn_flush(struct imap_conn *c);

/* Best effort, never waited for: writes out once (LOGOUT before closing). */
void imap_conn_write_now(struct imap_conn *c);

/* Drops idle memory: the output buffer when empty and OpenSSL's buffers. */
void imap_conn_shrink(struct imap_conn *c);

/* Handles revents of the socket: the connect's end, a handshake step, then
 * writes and a budget of reads. Calls hooks. */
void imap_conn_io(struct imap_conn *c, const struct imap_conn_hooks *hooks, int revents);

/* Closes the socket (and TLS), frees the output buffer, bumps serial. */
void imap_conn_close(struct imap_conn *c);

#endif
