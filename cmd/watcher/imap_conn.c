/*
 * cmd/watcher/imap_conn: socket and TLS I/O of one IMAP session (see
 * imap_conn.h). Depends on cmd/watcher/tls, core/buf and core/err only.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/imap_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "core/err.h"

static char errbuf[IMAP_CONN_ERR_MAX]; /* one loop thread: one buffer for all */

const char *imap_conn_error(void)
{
    return errbuf;
}

void imap_conn_init(struct imap_conn *c, struct ev_loop *loop,
                    void (*cb)(struct ev_loop *loop, ev_io *io, int revents), void *owner)
{
    c->loop = loop;
    c->ssl = NULL;
    c->fd = -1;
    c->io_events = 0;
    c->phase = IMAP_CONN_CLOSED;
    c->serial = 0;
    buf_init(&c->out, IMAP_CONN_OUT_MAX);
    ev_init(&c->io, cb);
    c->io.data = owner;
}

static void set_io(struct imap_conn *c, int events)
{
    if (c->io_events == (unsigned char)events && (events == 0 || ev_is_active(&c->io)))
        return;
    ev_io_stop(c->loop, &c->io);
    c->io_events = (unsigned char)events;
    if (events != 0 && c->fd >= 0) {
        ev_io_set(&c->io, c->fd, events);
        ev_io_start(c->loop, &c->io);
    }
}

void imap_conn_close(struct imap_conn *c)
{
    set_io(c, 0);
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    buf_free(&c->out);
    c->phase = IMAP_CONN_CLOSED;
    c->serial++;
}

int imap_conn_open(struct imap_conn *c, int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(errbuf, sizeof errbuf, "socket: %s", strerror(e));
        return -SIMAP_EIO;
    }
    c->fd = fd;
    int one = 1, idle = 60, intvl = 15, cnt = 4;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    buf_init(&c->out, IMAP_CONN_OUT_MAX);
    return 0;
}

/* The connect ended: SO_ERROR says how. */
static int connect_result(struct imap_conn *c)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        snprintf(errbuf, sizeof errbuf, "connect: %s", strerror(soerr));
        return -SIMAP_EIO;
    }
    c->phase = IMAP_CONN_OPEN;
    set_io(c, EV_READ);
    return 1;
}

int imap_conn_connect(struct imap_conn *c, const struct sockaddr *addr, socklen_t addrlen,
                      const char *host, int port)
{
    c->phase = IMAP_CONN_CONNECTING;
    if (connect(c->fd, addr, addrlen) < 0) {
        int e = errno;
        if (e != EINPROGRESS) {
            snprintf(errbuf, sizeof errbuf, "connect to %s:%d: %s", host, port, strerror(e));
            return -SIMAP_EIO;
        }
        set_io(c, EV_WRITE);
        return 0;
    }
    return connect_result(c);
}

int imap_conn_start_tls(struct imap_conn *c, const char *host)
{
    c->ssl = tls_new(c->fd, host, errbuf, sizeof errbuf);
    if (c->ssl == NULL)
        return -SIMAP_ECRYPTO;
    c->phase = IMAP_CONN_HANDSHAKE;
    set_io(c, EV_READ | EV_WRITE);
    return 0;
}

/* TLS failures are protocol errors when OpenSSL says so, else network. */
static int tls_err(ssize_t rc)
{
    return rc == -SIMAP_ECRYPTO ? -SIMAP_ECRYPTO : -SIMAP_EIO;
}

int imap_conn_handshake(struct imap_conn *c)
{
    int want = 0;
    int rc = tls_handshake(c->ssl, &want, errbuf, sizeof errbuf);
    if (rc < 0)
        return tls_err(rc);
    if (rc == 0) {
        set_io(c, want == TLS_WANT_WRITE ? EV_READ | EV_WRITE : EV_READ);
        return 0;
    }
    c->phase = IMAP_CONN_OPEN;
    set_io(c, EV_READ);
    return 1;
}

int imap_conn_flush(struct imap_conn *c)
{
    while (c->out.len > 0) {
        ssize_t n;
        int want = 0;
        if (c->ssl != NULL) {
            n = tls_write(c->ssl, c->out.data, c->out.len, &want, errbuf, sizeof errbuf);
            if (n < 0)
                return tls_err(n);
        } else {
            n = write(c->fd, c->out.data, c->out.len);
            if (n < 0) {
                int e = errno;
                if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
                    want = TLS_WANT_WRITE;
                    n = 0;
                } else {
                    snprintf(errbuf, sizeof errbuf, "write: %s", strerror(e));
                    return -SIMAP_EIO;
                }
            }
        }
        if (n == 0) {
            /* Blocked: wait for the socket. A TLS write wanting a read goes on
             * at the next read event (the read side is always armed). */
            set_io(c, want == TLS_WANT_WRITE ? EV_READ | EV_WRITE : EV_READ);
            return 0;
        }
        buf_consume(&c->out, (size_t)n);
    }
    buf_shrink(&c->out);
    set_io(c, EV_READ);
    return 0;
}

void imap_conn_write_now(struct imap_conn *c)
{
    if (c->ssl != NULL) {
        int want;
        tls_write(c->ssl, c->out.data, c->out.len, &want, errbuf, sizeof errbuf);
    } else {
        ssize_t w = write(c->fd, c->out.data, c->out.len);
        (void)w;
    }
}

void imap_conn_shrink(struct imap_conn *c)
{
    buf_shrink(&c->out);
    if (c->ssl != NULL)
        tls_idle(c->ssl);
}

static void report(struct imap_conn *c, const struct imap_conn_hooks *hooks, int err)
{
    hooks->on_error(c->io.data, err, errbuf);
}

/* Reads up to the budget, handing every chunk to on_data. */
static void do_read(struct imap_conn *c, const struct imap_conn_hooks *hooks)
{
    static char chunk[IMAP_CONN_READ_CHUNK]; /* one loop thread: one buffer for all */
    unsigned serial = c->serial;
    for (int i = 0; i < IMAP_CONN_READ_BUDGET; i++) {
        ssize_t n;
        int want = 0;
        if (c->ssl != NULL) {
            n = tls_read(c->ssl, chunk, sizeof chunk, &want, errbuf, sizeof errbuf);
            if (n < 0) {
                report(c, hooks, tls_err(n));
                return;
            }
            if (n == 0)
                return; /* want read: the socket wakes us */
        } else {
            n = read(c->fd, chunk, sizeof chunk);
            if (n < 0) {
                int e = errno;
                if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
                    return;
                snprintf(errbuf, sizeof errbuf, "read: %s", strerror(e));
                report(c, hooks, -SIMAP_EIO);
                return;
            }
            if (n == 0) {
                snprintf(errbuf, sizeof errbuf, "server closed the connection");
                report(c, hooks, -SIMAP_EIO);
                return;
            }
        }
        hooks->on_data(c->io.data, chunk, (size_t)n);
        /* Closed, or STARTTLS began: what follows is not ours to read. */
        if (c->serial != serial || c->phase != IMAP_CONN_OPEN)
            return;
        if (c->ssl == NULL && (size_t)n < sizeof chunk)
            return;
    }
    /* Budget spent: come back on the next loop turn (bytes buffered inside
     * SSL would not wake the socket watcher). */
    if (c->fd >= 0)
        ev_feed_event(c->loop, &c->io, EV_READ);
}

void imap_conn_io(struct imap_conn *c, const struct imap_conn_hooks *hooks, int revents)
{
    unsigned serial = c->serial;
    int rc;
    switch (c->phase) {
    case IMAP_CONN_CONNECTING:
        if (!(revents & (EV_WRITE | EV_READ)))
            return;
        rc = connect_result(c);
        if (rc < 0)
            report(c, hooks, rc);
        else
            hooks->on_connected(c->io.data);
        return;
    case IMAP_CONN_HANDSHAKE:
        rc = imap_conn_handshake(c);
        if (rc < 0)
            report(c, hooks, rc);
        else if (rc == 1)
            hooks->on_tls_up(c->io.data);
        return;
    case IMAP_CONN_OPEN:
        if ((revents & EV_WRITE) || ((revents & EV_READ) && c->out.len > 0)) {
            rc = imap_conn_flush(c);
            if (rc < 0) {
                report(c, hooks, rc);
                return;
            }
        }
        if (c->serial == serial && (revents & EV_READ) && c->fd >= 0)
            do_read(c, hooks);
        return;
    case IMAP_CONN_CLOSED:
        return;
    }
}
