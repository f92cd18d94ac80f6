/*
 * The IMAP server of superimap-fake-imapd (see server.h).
 *
 * One struct session per connection, its one ev_io re-armed for exactly the
 * events it waits for. Every wake-up runs pump(): TLS handshake step, run
 * the commands already read, write, read more, with a budget, until nothing
 * moves. Sessions never touch one another directly: an append, a kick or a
 * UIDVALIDITY change queues bytes for the other sessions and wakes them with
 * ev_feed_event(), so no pump() ever runs inside another. A closed session
 * is unlinked at once and freed by the ev_prepare sweep, after every
 * callback that could still hold it has returned (Redis freeClientAsync).
 *
 *   connect --greeting--> NOTAUTH --LOGIN/AUTHENTICATE--> AUTH --SELECT/EXAMINE--> SELECTED
 *                            |  STARTTLS: "OK", flush, handshake, NOTAUTH again
 *   waits inside a state: a command, DONE after IDLE, a SASL response line
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cmd/fake-imapd/command.h"
#include "cmd/fake-imapd/faults.h"
#include "cmd/fake-imapd/mailbox.h"
#include "cmd/fake-imapd/rfc822.h"
#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

#define PUMP_BUDGET      16           /* rounds of work per wake-up */
#define READ_CHUNK       16384        /* one read(2) or SSL_read() */
#define OUT_HIGH         (1u << 20)   /* stop reading commands above this much unsent output */
#define FETCH_LOW_WATER  (256u << 10) /* render more FETCH answers below this */
#define OUT_COMPACT      (1u << 20)   /* move unsent output down past this offset */
#define TRICKLE_BYTES    8            /* bytes per tick while trickling */
#define TRICKLE_INTERVAL 0.002        /* seconds between trickle ticks */
#define TAG_MAX          64
#define ACCEPT_BUDGET    256

enum session_state { ST_NOTAUTH = 0, ST_AUTH, ST_SELECTED };
enum session_wait { WAIT_COMMAND = 0, WAIT_IDLE_DONE, WAIT_SASL, WAIT_SASL_ERROR_ACK };
enum sasl_mech { MECH_PLAIN = 1, MECH_XOAUTH2 };

#define IO_AGAIN (-2) /* conn_read()/conn_write(): would block */

/* FETCH items */
#define FI_UID         (1u << 0)
#define FI_FLAGS       (1u << 1)
#define FI_INTERNAL    (1u << 2)
#define FI_SIZE        (1u << 3)
#define FI_ENVELOPE    (1u << 4)
#define FI_BODY        (1u << 5)  /* BODY[] */
#define FI_BODY_PEEK   (1u << 6)  /* BODY.PEEK[] */
#define FI_HEADER      (1u << 7)  /* BODY[HEADER] */
#define FI_HEADER_PEEK (1u << 8)  /* BODY.PEEK[HEADER] */
#define FI_TEXT        (1u << 9)  /* BODY[TEXT] */
#define FI_TEXT_PEEK   (1u << 10) /* BODY.PEEK[TEXT] */
#define FI_RFC822      (1u << 11) /* RFC822 (sets \Seen) */
#define FI_RFC822_HDR  (1u << 12) /* RFC822.HEADER */
#define FI_RFC822_TEXT (1u << 13) /* RFC822.TEXT (sets \Seen) */
#define FI_SETS_SEEN   (FI_BODY | FI_HEADER | FI_TEXT | FI_RFC822 | FI_RFC822_TEXT)
#define FI_ANY_BODY    (FI_SETS_SEEN | FI_BODY_PEEK | FI_HEADER_PEEK | FI_TEXT_PEEK | FI_RFC822_HDR)

/* A FETCH being answered a few messages at a time, so a mailbox of any
 * size never sits whole in the write buffer. */
struct fetch_job {
    char tag[TAG_MAX];
    unsigned items; /* FI_* */
    size_t *ranges; /* pairs [lo, hi) of message indexes, sorted, disjoint */
    size_t nranges; /* pairs */
    size_t cur;     /* current pair */
    size_t next;    /* next index to send */
};

struct listener {
    ev_io io;
    struct server *srv;
    int fd;
    int is_tls;
    int port;
    char host[64];
    struct listener *next;
};

struct session {
    ev_io io;      /* io.data points back here */
    ev_timer tick; /* trickle pacing */
    struct server *srv;
    struct session *prev, *next; /* in srv->sessions, then in srv->closing */
    SSL *ssl;
    int fd;
    int io_events; /* what io is armed for */
    unsigned long id;
    unsigned char state;      /* enum session_state */
    unsigned char wait;       /* enum session_wait */
    unsigned char mech;       /* enum sasl_mech while WAIT_SASL */
    unsigned char sasl_fault; /* fault rolled when AUTHENTICATE began */
    unsigned is_tls : 1;
    unsigned is_readonly : 1;
    unsigned is_halfopen : 1;
    unsigned is_closing : 1;
    unsigned is_trickle : 1;
    unsigned tick_due : 1;
    unsigned close_after_flush : 1;
    unsigned starttls_pending : 1;
    unsigned handshaking : 1;
    unsigned write_blocked : 1;
    unsigned read_wants_write : 1; /* SSL_read needs the socket writable */
    unsigned write_wants_read : 1; /* SSL_write needs the socket readable */
    unsigned discard_input : 1;
    int hs_events;      /* what the handshake waits for */
    int ssl_retry_len;  /* an SSL_write to repeat with the same length (0: none) */
    struct mailbox *mb; /* once logged in */
    struct mbox_link link;
    struct buf in;  /* bytes read, not yet a whole command */
    struct buf out; /* bytes to write, from out_off */
    size_t out_off;
    struct command_reader rd;
    char *pending_tag; /* of IDLE or AUTHENTICATE while waiting */
    struct fetch_job *fetch;
};

struct server {
    struct ev_loop *loop;
    struct server_opts opts;
    SSL_CTX *ssl_ctx;
    struct mbox_store *store;
    struct faults faults;
    struct listener *listeners;
    ev_timer accept_pause; /* after EMFILE */
    ev_prepare sweep;      /* frees closed sessions */
    struct session *sessions;
    struct session *closing;
    struct server_stats stats;
    unsigned long long faults_at_reset;
    unsigned long next_id;
};

static void pump(struct session *s);
static void session_close(struct session *s, const char *why);

/* ---- Output ---- */

static void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&s->out, fmt, ap);
    va_end(ap);
    if (rc < 0)
        session_close(s, "write buffer full");
}

static void reply_bytes(struct session *s, const void *p, size_t n)
{
    if (buf_append(&s->out, p, n) < 0)
        session_close(s, "write buffer full");
}

static size_t out_pending(const struct session *s)
{
    return s->out.len - s->out_off;
}

static void capability_list(struct session *s, struct buf *b)
{
    buf_puts(b, "IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT");
    if (s->state == ST_NOTAUTH) {
        if (s->srv->ssl_ctx != NULL && !s->is_tls)
            buf_puts(b, " STARTTLS");
        if (s->srv->opts.require_tls && !s->is_tls)
            buf_puts(b, " LOGINDISABLED");
        buf_puts(b, " AUTH=PLAIN AUTH=XOAUTH2");
    }
}

static void put_capability(struct session *s)
{
    struct buf b;
    buf_init(&b, 1024);
    capability_list(s, &b);
    reply(s, "%s", b.data);
    buf_free(&b);
}

static void gibberish(struct session *s)
{
    static const char *const lines[] = {
        "* ZZZ fault injected: gibberish\r\n",
        "* 7 FROBNICATE (((\r\n",
        "* OK [NO-SUCH-CODE 1 2 3] gibberish\r\n",
        "* BOGUS \"unterminated\r\n",
    };
    const char *l = lines[faults_pick(&s->srv->faults, 4)];
    reply_bytes(s, l, strlen(l));
}

/* Wakes s from the loop soon (never runs it here): used for every change
 * one session or the control channel makes to another session. */
static void wake(struct session *s)
{
    if (!s->is_closing)
        ev_feed_event(s->srv->loop, &s->io, EV_CUSTOM);
}

/* ---- Connection I/O (plain or TLS) ---- */

static void tls_error(struct session *s, const char *what)
{
    char text[256] = "";
    unsigned long e;
    while ((e = ERR_get_error()) != 0)
        ERR_error_string_n(e, text, sizeof text);
    log_debugc("imap", "tls failure session=%lu op=%s err=\"%s\"", s->id, what, text);
}

/* Returns bytes read (> 0), 0 at end of stream, IO_AGAIN, or -1. */
static long conn_read(struct session *s, char *p, size_t n)
{
    if (s->ssl != NULL) {
        ERR_clear_error();
        int r = SSL_read(s->ssl, p, (int)n);
        if (r > 0) {
            s->read_wants_write = 0;
            return r;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            s->read_wants_write = e == SSL_ERROR_WANT_WRITE;
            return IO_AGAIN;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        tls_error(s, "read");
        return -1;
    }
    ssize_t r = read(s->fd, p, n);
    if (r >= 0)
        return (long)r;
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
        return IO_AGAIN;
    log_debugc("imap", "read failed session=%lu err=\"%s\"", s->id, strerror(e));
    return -1;
}

/* Returns bytes written (> 0), IO_AGAIN or -1. */
static long conn_write(struct session *s, const char *p, size_t n)
{
    if (s->ssl != NULL) {
        ERR_clear_error();
        int r = SSL_write(s->ssl, p, (int)(n > (1u << 30) ? (1u << 30) : n));
        if (r > 0) {
            s->write_wants_read = 0;
            s->write_blocked = 0;
            return r;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            s->write_wants_read = e == SSL_ERROR_WANT_READ;
            s->write_blocked = e == SSL_ERROR_WANT_WRITE;
            return IO_AGAIN;
        }
        tls_error(s, "write");
        return -1;
    }
    ssize_t r = send(s->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) {
        s->write_blocked = 0;
        return (long)r;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
        s->write_blocked = 1;
        return IO_AGAIN;
    }
    log_debugc("imap", "write failed session=%lu err=\"%s\"", s->id, strerror(e));
    return -1;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct session *s = w->data;
    s->tick_due = 1;
    pump(s);
}

/* Writes what it can. Returns 1 when bytes went out, 0 when none could, -1
 * on a dead connection. While trickling, one small write per tick. */
static int flush(struct session *s)
{
    int wrote = 0;
    while (out_pending(s) > 0) {
        size_t n = out_pending(s);
        if (s->is_trickle) {
            if (!s->tick_due)
                break;
            if (n > TRICKLE_BYTES)
                n = TRICKLE_BYTES;
        }
        if (s->ssl_retry_len > 0) /* OpenSSL wants the same length again */
            n = (size_t)s->ssl_retry_len;
        long w = conn_write(s, s->out.data + s->out_off, n);
        if (w == IO_AGAIN) {
            if (s->ssl != NULL)
                s->ssl_retry_len = (int)n;
            break;
        }
        if (w < 0)
            return -1;
        s->ssl_retry_len = 0;
        s->out_off += (size_t)w;
        wrote = 1;
        if (s->is_trickle) {
            s->tick_due = 0;
            if (out_pending(s) > 0 && !ev_is_active(&s->tick)) {
                ev_timer_set(&s->tick, TRICKLE_INTERVAL, 0.); /* a fired timer keeps no delay */
                ev_timer_start(s->srv->loop, &s->tick);
            }
            break;
        }
    }
    if (out_pending(s) == 0) {
        buf_free(&s->out); /* idle sessions keep no buffer */
        s->out_off = 0;
        if (s->fetch == NULL)
            s->is_trickle = 0;
    } else if (s->out_off >= OUT_COMPACT && s->ssl_retry_len == 0) {
        buf_consume(&s->out, s->out_off);
        s->out_off = 0;
    }
    return wrote;
}

/* ---- Session life ---- */

static void unlink_mailbox(struct session *s)
{
    if (s->mb == NULL)
        return;
    s->link.prev->next = s->link.next;
    s->link.next->prev = s->link.prev;
    s->mb->sessions_now--;
    s->srv->stats.authenticated--;
    s->mb = NULL;
}

static void attach_mailbox(struct session *s, struct mailbox *mb)
{
    s->mb = mb;
    s->link.owner = s;
    s->link.next = &mb->sessions;
    s->link.prev = mb->sessions.prev;
    mb->sessions.prev->next = &s->link;
    mb->sessions.prev = &s->link;
    mb->sessions_now++;
    if (mb->sessions_now > mb->sessions_max)
        mb->sessions_max = mb->sessions_now;
    if (mb->sessions_max > s->srv->stats.max_sessions_per_user)
        s->srv->stats.max_sessions_per_user = mb->sessions_max;
    s->srv->stats.authenticated++;
}

static void fetch_free(struct fetch_job *f)
{
    if (f == NULL)
        return;
    xfree(f->ranges);
    xfree(f);
}

/* Ends the connection now: watchers stopped, socket closed, unlinked from
 * its mailbox and the server; the memory goes at the next sweep. */
static void session_close(struct session *s, const char *why)
{
    if (s->is_closing)
        return;
    struct server *srv = s->srv;
    s->is_closing = 1;
    log_debugc("imap", "session closed session=%lu user=%s why=\"%s\"", s->id,
               s->mb ? s->mb->user : "-", why);
    ev_io_stop(srv->loop, &s->io);
    ev_timer_stop(srv->loop, &s->tick);
    unlink_mailbox(s);
    if (s->ssl != NULL) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    close(s->fd);
    s->fd = -1;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = NULL;
    s->next = srv->closing;
    srv->closing = s;
    srv->stats.sessions--;
}

static void session_free(struct session *s)
{
    buf_free(&s->in);
    buf_free(&s->out);
    xfree(s->pending_tag);
    fetch_free(s->fetch);
    xfree(s);
}

static void on_sweep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct server *srv = w->data;
    while (srv->closing != NULL) {
        struct session *s = srv->closing;
        srv->closing = s->next;
        session_free(s);
    }
}

/* Arms the one ev_io for exactly what the session waits for. */
static int wants_read(const struct session *s)
{
    if (s->is_closing || s->handshaking || s->starttls_pending || s->close_after_flush)
        return 0;
    if (s->is_halfopen)
        return 1; /* read and discard, to notice the peer closing */
    return s->fetch == NULL && out_pending(s) < OUT_HIGH;
}

static void arm(struct session *s)
{
    if (s->is_closing)
        return;
    int ev = 0;
    if (s->handshaking) {
        ev = s->hs_events;
    } else {
        if (wants_read(s) || s->write_wants_read)
            ev |= EV_READ;
        if ((out_pending(s) > 0 && s->write_blocked) || s->read_wants_write)
            ev |= EV_WRITE;
    }
    if (ev == s->io_events)
        return;
    ev_io_stop(s->srv->loop, &s->io);
    ev_io_set(&s->io, s->fd, ev);
    if (ev != 0)
        ev_io_start(s->srv->loop, &s->io);
    s->io_events = ev;
}

/* One handshake step: 1 done, 0 waiting, -1 failed. */
static int handshake(struct session *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->handshaking = 0;
        s->is_tls = 1;
        log_debugc("imap", "tls established session=%lu version=%s", s->id,
                   SSL_get_version(s->ssl));
        return 1;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->hs_events = e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
        return 0;
    }
    tls_error(s, "handshake");
    return -1;
}

static void start_tls(struct session *s)
{
    s->starttls_pending = 0;
    s->ssl = SSL_new(s->srv->ssl_ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
        tls_error(s, "new");
        session_close(s, "cannot start TLS");
        return;
    }
    SSL_set_accept_state(s->ssl);
    s->handshaking = 1;
    s->hs_events = EV_READ;
}

/* ---- Reading ---- */

static int read_some(struct session *s)
{
    static char scratch[READ_CHUNK]; /* one loop, one thread: shared by every session */
    long n = conn_read(s, scratch, sizeof scratch);
    if (n == IO_AGAIN)
        return 0;
    if (n <= 0) {
        session_close(s, n == 0 ? "peer closed" : "read error");
        return -1;
    }
    if (s->is_halfopen)
        return 1;
    if (buf_append(&s->in, scratch, (size_t)n) < 0) {
        reply(s, "* BYE [ALERT] Command too long\r\n");
        s->close_after_flush = 1;
        s->discard_input = 1;
    }
    return 1;
}

/* ---- Commands ---- */

struct handler;
typedef void (*handler_fn)(struct session *s, const char *tag, struct command *c,
                           enum fault_kind fault);

static void tagged_bad(struct session *s, const char *tag, const char *text)
{
    reply(s, "%s BAD %s\r\n", tag, text);
}

/* An astring argument (atom, quoted or literal) copied into out. */
static int arg_string(const struct command_token *t, char *out, size_t cap)
{
    if (t->kind != TOK_ATOM && t->kind != TOK_STRING)
        return -SIMAP_EINVAL;
    return command_copy(t, out, cap);
}

static int is_inbox(const struct command_token *t)
{
    if (t->len != 5 || (t->kind != TOK_ATOM && t->kind != TOK_STRING))
        return 0;
    for (int i = 0; i < 5; i++)
        if ((t->p[i] | 0x20) != "inbox"[i])
            return 0;
    return 1;
}

static void cmd_capability(struct session *s, const char *tag, struct command *c,
                           enum fault_kind fault)
{
    (void)c;
    (void)fault;
    reply(s, "* CAPABILITY ");
    put_capability(s);
    reply(s, "\r\n%s OK CAPABILITY completed\r\n", tag);
}

static void cmd_noop(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    reply(s, "%s OK %.*s completed\r\n", tag, (int)c->tok[1].len, c->tok[1].p);
}

static void cmd_logout(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)c;
    (void)fault;
    reply(s, "* BYE superimap-fake-imapd logging out\r\n%s OK LOGOUT completed\r\n", tag);
    s->close_after_flush = 1;
    s->discard_input = 1;
}

static void cmd_id(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)c;
    (void)fault;
    reply(s, "* ID (\"name\" \"superimap-fake-imapd\")\r\n%s OK ID completed\r\n", tag);
}

static void cmd_starttls(struct session *s, const char *tag, struct command *c,
                         enum fault_kind fault)
{
    (void)c;
    (void)fault;
    if (s->srv->ssl_ctx == NULL || s->is_tls) {
        tagged_bad(s, tag, "STARTTLS not available");
        return;
    }
    reply(s, "%s OK Begin TLS negotiation now\r\n", tag);
    s->starttls_pending = 1;
    s->discard_input = 1; /* RFC 3501 6.2.1: nothing sent before the handshake counts */
}

/* Ends LOGIN or AUTHENTICATE: mb is the account the credentials name, or
 * NULL when they are wrong. */
static void login_finish(struct session *s, const char *tag, struct mailbox *mb,
                         enum fault_kind fault)
{
    struct server *srv = s->srv;
    if (mb == NULL || fault == FAULT_AUTHFAIL) {
        srv->stats.login_failures++;
        reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
        return;
    }
    if (fault == FAULT_LIMIT || (srv->opts.max_sessions_per_user > 0 &&
                                 mb->sessions_now >= srv->opts.max_sessions_per_user)) {
        reply(s, "%s NO [LIMIT] Too many simultaneous connections.\r\n", tag);
        return;
    }
    attach_mailbox(s, mb);
    s->state = ST_AUTH;
    srv->stats.logins++;
    log_debugc("imap", "logged in session=%lu user=%s sessions=%d", s->id, mb->user,
               mb->sessions_now);
    reply(s, "%s OK [CAPABILITY ", tag);
    put_capability(s);
    reply(s, "] Logged in\r\n");
}

static int tls_required(struct session *s, const char *tag)
{
    if (!s->srv->opts.require_tls || s->is_tls)
        return 0;
    reply(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS first.\r\n", tag);
    return 1;
}

static void cmd_login(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    char user[256], pass[1024];
    if (c->ntok != 4 || arg_string(&c->tok[2], user, sizeof user) < 0 ||
        arg_string(&c->tok[3], pass, sizeof pass) < 0) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (tls_required(s, tag))
        return;
    login_finish(s, tag, mbox_login(s->srv->store, user, pass), fault);
}

/* Checks one SASL response (base64 text, "=" for empty). */
static void sasl_response(struct session *s, const char *tag, const char *b64, size_t len)
{
    enum fault_kind fault = (enum fault_kind)s->sasl_fault;
    unsigned char *raw = NULL;
    size_t n = 0;
    if (len == 1 && b64[0] == '=')
        len = 0;
    if (crypto_b64_decode(b64, len, &raw, &n) < 0) {
        tagged_bad(s, tag, "Invalid base64 data");
        return;
    }
    struct mailbox *mb = NULL;
    if (s->mech == MECH_PLAIN) {
        /* authzid NUL authcid NUL passwd (RFC 4616) */
        const char *authz = (const char *)raw;
        const char *nul1 = memchr(raw, '\0', n);
        const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - authz)) : NULL;
        if (nul2 == NULL) {
            xfree(raw);
            tagged_bad(s, tag, "Invalid PLAIN response");
            return;
        }
        const char *user = nul1 + 1;
        char pass[1024];
        size_t plen = n - (size_t)(nul2 + 1 - authz);
        if (plen < sizeof pass && (authz[0] == '\0' || strcmp(authz, user) == 0)) {
            memcpy(pass, nul2 + 1, plen);
            pass[plen] = '\0';
            if (strlen(pass) == plen)
                mb = mbox_login(s->srv->store, user, pass);
        }
        xfree(raw);
        login_finish(s, tag, mb, fault);
        return;
    }
    /* XOAUTH2: "user=" U ^A "auth=Bearer " T ^A ^A; the token of U is "token-U". */
    const char *text = (const char *)raw;
    if (n > 5 && strncmp(text, "user=", 5) == 0 && strlen(text) == n) {
        const char *u = text + 5;
        const char *sep = strchr(u, '\x01');
        if (sep != NULL && strncmp(sep + 1, "auth=Bearer ", 12) == 0) {
            char user[MBOX_USER_MAX + 1];
            size_t ulen = (size_t)(sep - u);
            const char *tok = sep + 13;
            const char *end = strchr(tok, '\x01');
            if (ulen < sizeof user && end != NULL && strcmp(end, "\x01\x01") == 0) {
                memcpy(user, u, ulen);
                user[ulen] = '\0';
                struct mailbox *cand = mbox_get(s->srv->store, user, 0);
                if (cand != NULL && (size_t)(end - tok) == ulen + 6 &&
                    strncmp(tok, "token-", 6) == 0 && strncmp(tok + 6, user, ulen) == 0)
                    mb = cand;
            }
        }
    }
    xfree(raw);
    if (mb == NULL || fault == FAULT_AUTHFAIL) {
        /* Google's way: an error challenge, then NO once the client answers. */
        static const char err_json[] =
            "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"https://mail.google.com/\"}";
        char *b = crypto_b64_encode(err_json, sizeof err_json - 1);
        reply(s, "+ %s\r\n", b);
        xfree(b);
        s->pending_tag = xstrdup(tag);
        s->wait = WAIT_SASL_ERROR_ACK;
        return;
    }
    login_finish(s, tag, mb, fault);
}

static void cmd_authenticate(struct session *s, const char *tag, struct command *c,
                             enum fault_kind fault)
{
    if (c->ntok < 3 || c->ntok > 4 || c->tok[2].kind != TOK_ATOM ||
        (c->ntok == 4 && c->tok[3].kind != TOK_ATOM)) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (command_is(&c->tok[2], "PLAIN")) {
        s->mech = MECH_PLAIN;
    } else if (command_is(&c->tok[2], "XOAUTH2")) {
        s->mech = MECH_XOAUTH2;
    } else {
        reply(s, "%s NO Unsupported authentication mechanism\r\n", tag);
        return;
    }
    if (tls_required(s, tag))
        return;
    s->sasl_fault = (unsigned char)fault;
    if (c->ntok == 4) { /* SASL-IR */
        sasl_response(s, tag, c->tok[3].p, c->tok[3].len);
        return;
    }
    reply(s, "+ \r\n");
    s->pending_tag = xstrdup(tag);
    s->wait = WAIT_SASL;
}

/* The line after "+ " of AUTHENTICATE. */
static void sasl_line(struct session *s, const char *line, size_t len)
{
    char tag[TAG_MAX];
    snprintf(tag, sizeof tag, "%s", s->pending_tag);
    xfree(s->pending_tag);
    s->pending_tag = NULL;
    enum session_wait was = (enum session_wait)s->wait;
    s->wait = WAIT_COMMAND;
    if (len == 1 && line[0] == '*') {
        tagged_bad(s, tag, "Authentication canceled");
        return;
    }
    if (was == WAIT_SASL_ERROR_ACK) {
        s->srv->stats.login_failures++;
        reply(s, "%s NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n", tag);
        return;
    }
    sasl_response(s, tag, line, len);
}

/* UIDVALIDITY changed under the sessions that have mb selected: each is told
 * BYE and closed (except `except`, which is selecting it right now). */
static void uidvalidity_changed(struct mailbox *mb, struct session *except)
{
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next;
        struct session *o = l->owner;
        if (o == except || o->state != ST_SELECTED || o->is_closing || o->close_after_flush)
            continue;
        fetch_free(o->fetch);
        o->fetch = NULL;
        reply(o, "* BYE [UNAVAILABLE] UIDVALIDITY changed\r\n");
        o->close_after_flush = 1;
        o->discard_input = 1;
        wake(o);
    }
}

static void cmd_select(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    int examine = command_is(&c->tok[1], "EXAMINE");
    if (c->ntok != 3) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    struct mailbox *mb = s->mb;
    if (!is_inbox(&c->tok[2]) || fault == FAULT_NOINBOX) {
        s->state = ST_AUTH; /* a failed SELECT leaves no mailbox selected */
        reply(s, "%s NO [NONEXISTENT] Mailbox doesn't exist\r\n", tag);
        return;
    }
    if (fault == FAULT_UIDSHIFT) {
        mbox_renumber(mb, mb->uidvalidity + 1);
        log_info("uidvalidity changed by fault user=%s uidvalidity=%u", mb->user,
                 (unsigned)mb->uidvalidity);
        uidvalidity_changed(mb, s);
    }
    s->state = ST_SELECTED;
    s->is_readonly = (unsigned)examine;
    reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    if (examine)
        reply(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    else
        reply(s, "* OK [PERMANENTFLAGS (\\Seen)] Limited\r\n");
    reply(s, "* %zu EXISTS\r\n* %zu RECENT\r\n", mb->count, mb->recent);
    if (mb->unseen > 0) {
        for (size_t i = 0; i < mb->count; i++) {
            if (!(mb->msgs[i]->flags & MSG_SEEN)) {
                reply(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
                break;
            }
        }
    }
    reply(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
          (unsigned)mb->uidvalidity, (unsigned)mb->uidnext);
    if (!examine)
        mbox_clear_recent(mb);
    reply(s, "%s OK [%s] %s completed\r\n", tag, examine ? "READ-ONLY" : "READ-WRITE",
          examine ? "EXAMINE" : "SELECT");
}

static void cmd_status(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    struct mailbox *mb = s->mb;
    if (c->ntok < 5 || c->tok[3].kind != TOK_LPAREN || c->tok[c->ntok - 1].kind != TOK_RPAREN) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (!is_inbox(&c->tok[2])) {
        reply(s, "%s NO [NONEXISTENT] Mailbox doesn't exist\r\n", tag);
        return;
    }
    struct buf b;
    buf_init(&b, 1024);
    for (int i = 4; i < c->ntok - 1; i++) {
        const struct command_token *t = &c->tok[i];
        const char *sep = i > 4 ? " " : "";
        if (command_is(t, "MESSAGES"))
            buf_printf(&b, "%sMESSAGES %zu", sep, mb->count);
        else if (command_is(t, "RECENT"))
            buf_printf(&b, "%sRECENT %zu", sep, mb->recent);
        else if (command_is(t, "UIDNEXT"))
            buf_printf(&b, "%sUIDNEXT %u", sep, (unsigned)mb->uidnext);
        else if (command_is(t, "UIDVALIDITY"))
            buf_printf(&b, "%sUIDVALIDITY %u", sep, (unsigned)mb->uidvalidity);
        else if (command_is(t, "UNSEEN"))
            buf_printf(&b, "%sUNSEEN %zu", sep, mb->unseen);
        else {
            buf_free(&b);
            tagged_bad(s, tag, "Invalid status item");
            return;
        }
    }
    reply(s, "* STATUS INBOX (%s)\r\n%s OK STATUS completed\r\n", b.data ? b.data : "", tag);
    buf_free(&b);
}

static void cmd_list(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    if (c->ntok != 4) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    const char *name = command_is(&c->tok[1], "LSUB") ? "LSUB" : "LIST";
    if (c->tok[3].len > 0)
        reply(s, "* %s (\\HasNoChildren) \"/\" INBOX\r\n", name);
    else /* an empty pattern asks for the hierarchy delimiter */
        reply(s, "* %s (\\Noselect) \"/\" \"\"\r\n", name);
    reply(s, "%s OK %s completed\r\n", tag, name);
}

static void cmd_idle(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)c;
    (void)fault;
    reply(s, "+ idling\r\n");
    s->pending_tag = xstrdup(tag);
    s->wait = WAIT_IDLE_DONE;
}

static void cmd_close(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    s->state = ST_AUTH;
    reply(s, "%s OK %.*s completed\r\n", tag, (int)c->tok[1].len, c->tok[1].p);
}

/* ---- FETCH ---- */

static int parse_number(const char *p, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Turns a sequence set into sorted, merged [lo, hi) index pairs. Returns 0,
 * or -1 for bad syntax (or a sequence number past the end). */
static int parse_set(const struct mailbox *mb, const struct command_token *t, int by_uid,
                     struct fetch_job *f)
{
    if (t->kind != TOK_ATOM || t->len == 0)
        return -1;
    size_t cap = 8;
    f->ranges = xmalloc(cap * 2 * sizeof *f->ranges);
    f->nranges = 0;
    uint32_t star = by_uid ? (mb->count ? mb->msgs[mb->count - 1]->uid : 0) : (uint32_t)mb->count;
    const char *p = t->p, *end = t->p + t->len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        const char *colon = memchr(p, ':', (size_t)(item_end - p));
        uint32_t a, b;
        const char *a_end = colon ? colon : item_end;
        if (a_end - p == 1 && *p == '*')
            a = star;
        else if (parse_number(p, (size_t)(a_end - p), &a) < 0)
            return -1;
        b = a;
        if (colon != NULL) {
            if (item_end - colon == 2 && colon[1] == '*')
                b = star;
            else if (parse_number(colon + 1, (size_t)(item_end - colon - 1), &b) < 0)
                return -1;
        }
        if (a > b) {
            uint32_t tmp = a;
            a = b;
            b = tmp;
        }
        size_t lo, hi;
        if (by_uid) {
            lo = mbox_index_at_or_after(mb, a);
            hi = b == UINT32_MAX ? mb->count : mbox_index_at_or_after(mb, b + 1);
        } else {
            if (a == 0 || b > mb->count)
                return -1;
            lo = a - 1;
            hi = b;
        }
        if (lo < hi) {
            if (f->nranges == cap) {
                cap *= 2;
                f->ranges = xrealloc(f->ranges, cap * 2 * sizeof *f->ranges);
            }
            f->ranges[2 * f->nranges] = lo;
            f->ranges[2 * f->nranges + 1] = hi;
            f->nranges++;
        }
        p = comma ? comma + 1 : end;
        if (comma != NULL && p == end)
            return -1;
    }
    qsort(f->ranges, f->nranges, 2 * sizeof *f->ranges, cmp_range);
    size_t w = 0;
    for (size_t i = 0; i < f->nranges; i++) {
        if (w > 0 && f->ranges[i * 2] <= f->ranges[w * 2 - 1]) {
            if (f->ranges[i * 2 + 1] > f->ranges[w * 2 - 1])
                f->ranges[w * 2 - 1] = f->ranges[i * 2 + 1];
            continue;
        }
        f->ranges[w * 2] = f->ranges[i * 2];
        f->ranges[w * 2 + 1] = f->ranges[i * 2 + 1];
        w++;
    }
    f->nranges = w;
    return 0;
}

static unsigned fetch_item(const struct command_token *t)
{
    static const struct {
        const char *name;
        unsigned bits;
    } items[] = {
        {"UID", FI_UID},
        {"FLAGS", FI_FLAGS},
        {"INTERNALDATE", FI_INTERNAL},
        {"RFC822.SIZE", FI_SIZE},
        {"ENVELOPE", FI_ENVELOPE},
        {"BODY[]", FI_BODY},
        {"BODY.PEEK[]", FI_BODY_PEEK},
        {"BODY[HEADER]", FI_HEADER},
        {"BODY.PEEK[HEADER]", FI_HEADER_PEEK},
        {"BODY[TEXT]", FI_TEXT},
        {"BODY.PEEK[TEXT]", FI_TEXT_PEEK},
        {"RFC822", FI_RFC822},
        {"RFC822.HEADER", FI_RFC822_HDR},
        {"RFC822.TEXT", FI_RFC822_TEXT},
        {"ALL", FI_FLAGS | FI_INTERNAL | FI_SIZE | FI_ENVELOPE},
        {"FAST", FI_FLAGS | FI_INTERNAL | FI_SIZE},
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        if (command_is(t, items[i].name))
            return items[i].bits;
    return 0;
}

static void put_flags(struct session *s, const struct message *m)
{
    const char *seen = (m->flags & MSG_SEEN) ? "\\Seen" : "";
    const char *recent = (m->flags & MSG_RECENT) ? "\\Recent" : "";
    reply(s, "FLAGS (%s%s%s)", seen, *seen && *recent ? " " : "", recent);
}

/* Appends one body section as a literal; returns the next separator. */
static const char *put_section(struct session *s, const char *sep, const char *name, const char *p,
                               size_t n)
{
    reply(s, "%s%s {%zu}\r\n", sep, name, n);
    reply_bytes(s, p, n);
    return " ";
}

/* Appends the FETCH answer for message index i. */
static void render_message(struct session *s, size_t i, unsigned items)
{
    struct server *srv = s->srv;
    struct mailbox *mb = s->mb;
    struct message *m = mb->msgs[i];
    int now_seen = 0;
    if (items & FI_ANY_BODY)
        srv->stats.bodies++;
    if (items & FI_SETS_SEEN) {
        srv->stats.nonpeek++;
        if (!s->is_readonly && mbox_set_flag(mb, i, MSG_SEEN)) {
            now_seen = 1;
            srv->stats.seen_sets++;
            log_info("message marked seen user=%s uid=%u", mb->user, (unsigned)m->uid);
        }
    }
    reply(s, "* %zu FETCH (", i + 1);
    const char *sep = "";
    if (items & FI_UID) {
        reply(s, "UID %u", (unsigned)m->uid);
        sep = " ";
    }
    if ((items & FI_FLAGS) || now_seen) {
        reply(s, "%s", sep);
        put_flags(s, m);
        sep = " ";
    }
    if (items & FI_INTERNAL) {
        reply(s, "%sINTERNALDATE ", sep);
        sep = " ";
        if (rfc822_put_date_time(&s->out, m->internal_ms) < 0)
            session_close(s, "write buffer full");
    }
    if (items & FI_SIZE) {
        reply(s, "%sRFC822.SIZE %zu", sep, m->size);
        sep = " ";
    }
    if (items & FI_ENVELOPE) {
        reply(s, "%sENVELOPE ", sep);
        reply_bytes(s, m->envelope, m->envelope_len);
        sep = " ";
    }
    size_t body = m->size - m->header_len;
    if (items & (FI_BODY | FI_BODY_PEEK))
        sep = put_section(s, sep, "BODY[]", m->data, m->size);
    if (items & (FI_HEADER | FI_HEADER_PEEK))
        sep = put_section(s, sep, "BODY[HEADER]", m->data, m->header_len);
    if (items & (FI_TEXT | FI_TEXT_PEEK))
        sep = put_section(s, sep, "BODY[TEXT]", m->data + m->header_len, body);
    if (items & FI_RFC822)
        sep = put_section(s, sep, "RFC822", m->data, m->size);
    if (items & FI_RFC822_HDR)
        sep = put_section(s, sep, "RFC822.HEADER", m->data, m->header_len);
    if (items & FI_RFC822_TEXT)
        sep = put_section(s, sep, "RFC822.TEXT", m->data + m->header_len, body);
    reply(s, ")\r\n");
}

/* Renders FETCH answers while the write buffer is low; ends the job with
 * the tagged OK. Returns 1 when it added output. */
static int fetch_more(struct session *s)
{
    struct fetch_job *f = s->fetch;
    int progress = 0;
    while (f != NULL && !s->is_closing && out_pending(s) < FETCH_LOW_WATER) {
        if (f->cur == f->nranges) {
            reply(s, "%s OK Fetch completed\r\n", f->tag);
            fetch_free(f);
            s->fetch = f = NULL;
            return 1;
        }
        if (f->next < f->ranges[2 * f->cur])
            f->next = f->ranges[2 * f->cur];
        render_message(s, f->next, f->items);
        progress = 1;
        if (++f->next >= f->ranges[2 * f->cur + 1])
            f->cur++;
    }
    return progress;
}

static void cmd_fetch(struct session *s, const char *tag, struct command *c, int first,
                      enum fault_kind fault)
{
    int by_uid = first == 3;
    int n = c->ntok - first;
    if (n < 2) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    struct fetch_job *f = xcalloc(1, sizeof *f);
    snprintf(f->tag, sizeof f->tag, "%s", tag);
    f->items = by_uid ? FI_UID : 0;
    const struct command_token *it = &c->tok[first + 1];
    int bad = 0;
    if (it->kind == TOK_LPAREN) {
        if (c->tok[c->ntok - 1].kind != TOK_RPAREN || n < 4)
            bad = 1;
        for (int i = first + 2; i < c->ntok - 1 && !bad; i++) {
            unsigned bits = fetch_item(&c->tok[i]);
            bad = bits == 0;
            f->items |= bits;
        }
    } else {
        unsigned bits = n == 2 ? fetch_item(it) : 0;
        bad = bits == 0;
        f->items |= bits;
    }
    if (bad) {
        fetch_free(f);
        tagged_bad(s, tag, "Invalid fetch items");
        return;
    }
    if (parse_set(s->mb, &c->tok[first], by_uid, f) < 0) {
        fetch_free(f);
        tagged_bad(s, tag, "Invalid message set");
        return;
    }
    s->srv->stats.fetches++;
    if (fault == FAULT_TRICKLE) {
        s->is_trickle = 1;
        s->tick_due = 1;
    }
    s->fetch = f;
    fetch_more(s);
}

static void cmd_fetch_seq(struct session *s, const char *tag, struct command *c,
                          enum fault_kind fault)
{
    cmd_fetch(s, tag, c, 2, fault);
}

static void cmd_uid(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    if (c->ntok >= 3 && command_is(&c->tok[2], "FETCH")) {
        cmd_fetch(s, tag, c, 3, fault);
        return;
    }
    tagged_bad(s, tag, "Unknown UID command");
}

/* ---- Dispatch ---- */

#define IN_NOTAUTH  (1u << ST_NOTAUTH)
#define IN_AUTH     (1u << ST_AUTH)
#define IN_SELECTED (1u << ST_SELECTED)
#define IN_ANY      (IN_NOTAUTH | IN_AUTH | IN_SELECTED)
#define IN_LOGGED   (IN_AUTH | IN_SELECTED)

static const struct handler {
    const char *name;
    handler_fn fn;
    unsigned states;
    unsigned faults; /* beyond FAULTS_GENERIC */
} handlers[] = {
    {"CAPABILITY", cmd_capability, IN_ANY, 0},
    {"NOOP", cmd_noop, IN_ANY, 0},
    {"LOGOUT", cmd_logout, IN_ANY, 0},
    {"ID", cmd_id, IN_ANY, 0},
    {"STARTTLS", cmd_starttls, IN_NOTAUTH, 0},
    {"LOGIN", cmd_login, IN_NOTAUTH, FAULT_BIT(FAULT_AUTHFAIL) | FAULT_BIT(FAULT_LIMIT)},
    {"AUTHENTICATE", cmd_authenticate, IN_NOTAUTH,
     FAULT_BIT(FAULT_AUTHFAIL) | FAULT_BIT(FAULT_LIMIT)},
    {"SELECT", cmd_select, IN_LOGGED, FAULT_BIT(FAULT_NOINBOX) | FAULT_BIT(FAULT_UIDSHIFT)},
    {"EXAMINE", cmd_select, IN_LOGGED, FAULT_BIT(FAULT_NOINBOX) | FAULT_BIT(FAULT_UIDSHIFT)},
    {"STATUS", cmd_status, IN_LOGGED, 0},
    {"LIST", cmd_list, IN_LOGGED, 0},
    {"LSUB", cmd_list, IN_LOGGED, 0},
    {"IDLE", cmd_idle, IN_LOGGED, 0},
    {"CHECK", cmd_noop, IN_SELECTED, 0},
    {"CLOSE", cmd_close, IN_SELECTED, 0},
    {"UNSELECT", cmd_close, IN_SELECTED, 0},
    {"FETCH", cmd_fetch_seq, IN_SELECTED, FAULT_BIT(FAULT_TRICKLE)},
    {"UID", cmd_uid, IN_SELECTED, FAULT_BIT(FAULT_TRICKLE)},
};

static int valid_tag(const struct command_token *t)
{
    if (t->kind != TOK_ATOM || t->len == 0 || t->len >= TAG_MAX)
        return 0;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char ch = (unsigned char)t->p[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("+(){%*\"\\]", ch) != NULL)
            return 0;
    }
    return 1;
}

/* Runs one injected fault that replaces the command. Returns 1 when the
 * command must not run. */
static int apply_fault(struct session *s, const char *tag, enum fault_kind f)
{
    switch (f) {
    case FAULT_BAD:
        reply(s, "%s BAD Fault injected\r\n", tag);
        return 1;
    case FAULT_NO:
        reply(s, "%s NO Fault injected\r\n", tag);
        return 1;
    case FAULT_GIBBERISH:
        gibberish(s);
        return 0;
    case FAULT_BYE:
    case FAULT_LIMIT:
        reply(s, "* BYE [UNAVAILABLE] %s\r\n",
              f == FAULT_BYE ? "Fault injected" : "Server busy, try later");
        s->close_after_flush = 1;
        s->discard_input = 1;
        return 1;
    case FAULT_DROP:
        session_close(s, "fault drop");
        return 1;
    case FAULT_HALFOPEN:
        log_debugc("imap", "half-open by fault session=%lu", s->id);
        s->is_halfopen = 1;
        s->discard_input = 1;
        return 1;
    default:
        return 0;
    }
}

static void command(struct session *s, char *frame, size_t len)
{
    /* The tag first, so even a command that does not parse is answered by it. */
    char tag[TAG_MAX] = "*";
    struct command_token first = {TOK_ATOM, frame, strcspn(frame, " \r\n")};
    if (first.len < len && valid_tag(&first))
        command_copy(&first, tag, sizeof tag);
    struct command c;
    int rc = command_tokenize(frame, len, &c);
    if (rc < 0 || c.ntok < 2 || tag[0] == '*' || c.tok[1].kind != TOK_ATOM) {
        tagged_bad(s, tag, rc < 0 ? "Invalid command syntax" : "Missing or invalid command");
        return;
    }
    const struct handler *h = NULL;
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (command_is(&c.tok[1], handlers[i].name))
            h = &handlers[i];
    if (h == NULL) {
        tagged_bad(s, tag, "Unknown command");
        return;
    }
    if (!(h->states & (1u << s->state))) {
        tagged_bad(s, tag, "Command not valid in this state");
        return;
    }
    enum fault_kind f = faults_roll(&s->srv->faults, FAULTS_GENERIC | h->faults);
    if (f != FAULT_NONE) {
        log_debugc("imap", "fault session=%lu command=%s fault=%s", s->id, h->name, faults_name(f));
        if (f != FAULT_LIMIT && apply_fault(s, tag, f))
            return;
    }
    h->fn(s, tag, &c, f);
}

static void idle_line(struct session *s, const char *line, size_t len)
{
    s->wait = WAIT_COMMAND;
    if (len == 4 && strncmp(line, "DONE", 4) == 0)
        reply(s, "%s OK IDLE terminated\r\n", s->pending_tag);
    else
        reply(s, "%s BAD Expected DONE\r\n", s->pending_tag);
    xfree(s->pending_tag);
    s->pending_tag = NULL;
}

static int blocked(const struct session *s)
{
    return s->is_closing || s->is_halfopen || s->fetch != NULL || s->close_after_flush ||
           s->starttls_pending || s->handshaking || s->discard_input || out_pending(s) >= OUT_HIGH;
}

/* Runs the whole commands read so far. Returns 1 when it produced output. */
static int produce(struct session *s)
{
    int progress = 0;
    if (s->fetch != NULL) {
        progress = fetch_more(s);
        if (s->fetch != NULL)
            return progress;
    }
    size_t off = 0;
    while (!blocked(s) && off < s->in.len) {
        size_t flen = 0;
        int need_cont = 0;
        char *frame = s->in.data + off;
        int rc = command_frame(&s->rd, frame, s->in.len - off, &flen, &need_cont);
        if (rc == COMMAND_AGAIN) {
            if (need_cont) {
                reply(s, "+ Ready for literal data\r\n");
                progress = 1;
            }
            break;
        }
        progress = 1;
        if (rc < 0) {
            reply(s, "* BYE [ALERT] Command too long\r\n");
            s->close_after_flush = 1;
            s->discard_input = 1;
            break;
        }
        s->srv->stats.commands++;
        size_t llen = flen;
        while (llen > 0 && (frame[llen - 1] == '\n' || frame[llen - 1] == '\r'))
            llen--;
        if (s->wait == WAIT_IDLE_DONE)
            idle_line(s, frame, llen);
        else if (s->wait == WAIT_SASL || s->wait == WAIT_SASL_ERROR_ACK)
            sasl_line(s, frame, llen);
        else
            command(s, frame, flen);
        off += flen;
    }
    if (s->discard_input || s->is_closing) {
        buf_free(&s->in);
        memset(&s->rd, 0, sizeof s->rd);
        s->discard_input = 0;
    } else {
        buf_consume(&s->in, off);
        buf_shrink(&s->in); /* an idle session keeps no read buffer */
    }
    return progress;
}

/* ---- The pump ---- */

static void pump(struct session *s)
{
    int round;
    for (round = 0; round < PUMP_BUDGET && !s->is_closing; round++) {
        int progress = 0;
        if (s->handshaking) {
            int rc = handshake(s);
            if (rc < 0) {
                session_close(s, "TLS handshake failed");
                return;
            }
            if (rc == 0)
                break;
            progress = 1;
        }
        progress |= produce(s);
        if (s->is_closing)
            return;
        int w = flush(s);
        if (w < 0) {
            session_close(s, "write error");
            return;
        }
        progress |= w;
        if (out_pending(s) == 0 && s->close_after_flush) {
            session_close(s, "closed after reply");
            return;
        }
        if (out_pending(s) == 0 && s->starttls_pending) {
            start_tls(s);
            continue;
        }
        if (wants_read(s)) {
            int r = read_some(s);
            if (r < 0)
                return;
            progress |= r;
        }
        if (!progress)
            break;
    }
    if (round == PUMP_BUDGET && !s->is_closing) /* more to do: come back after the others */
        ev_feed_event(s->srv->loop, &s->io, EV_CUSTOM);
    arm(s);
}

static void on_session_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    pump(w->data);
}

/* ---- Accepting ---- */

static void session_start(struct server *srv, int fd, int is_tls)
{
    struct session *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->fd = fd;
    s->id = ++srv->next_id;
    buf_init(&s->in, COMMAND_MAX_FRAME + READ_CHUNK);
    buf_init(&s->out, 3 * srv->opts.max_message + (4u << 20));
    ev_io_init(&s->io, on_session_io, fd, 0);
    s->io.data = s;
    ev_timer_init(&s->tick, on_tick, TRICKLE_INTERVAL, 0.);
    s->tick.data = s;
    s->next = srv->sessions;
    if (srv->sessions != NULL)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->stats.sessions++;
    srv->stats.connections++;

    enum fault_kind f = faults_roll(&srv->faults, FAULTS_UNSOLICITED | FAULT_BIT(FAULT_LIMIT));
    if (f == FAULT_DROP) {
        session_close(s, "fault drop at greeting");
        return;
    }
    if (is_tls) {
        s->is_tls = 1; /* for the greeting's capabilities; the handshake comes first */
        start_tls(s);
        if (s->is_closing)
            return;
    }
    if (f == FAULT_HALFOPEN) {
        s->is_halfopen = 1;
    } else if (f == FAULT_BYE || f == FAULT_LIMIT) {
        apply_fault(s, "*", f);
    } else {
        if (f == FAULT_GIBBERISH)
            gibberish(s);
        reply(s, "* OK [CAPABILITY ");
        put_capability(s);
        reply(s, "] superimap-fake-imapd ready\r\n");
    }
    pump(s);
}

static void pause_accepting(struct server *srv);

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct listener *l = w->data;
    struct server *srv = l->srv;
    for (int i = 0; i < ACCEPT_BUDGET; i++) {
        int fd = accept(l->fd, NULL, NULL);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                log_warn("cannot accept, pausing for 100 ms err=\"%s\" sessions=%ld", strerror(e),
                         srv->stats.sessions);
                pause_accepting(srv);
            } else if (e != EAGAIN && e != EWOULDBLOCK) {
                log_warn("accept failed err=\"%s\"", strerror(e));
            }
            return;
        }
        int one = 1;
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        session_start(srv, fd, l->is_tls);
    }
}

static void pause_accepting(struct server *srv)
{
    for (struct listener *l = srv->listeners; l != NULL; l = l->next)
        ev_io_stop(srv->loop, &l->io);
    ev_timer_set(&srv->accept_pause, 0.1, 0.);
    ev_timer_start(srv->loop, &srv->accept_pause);
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct server *srv = w->data;
    for (struct listener *l = srv->listeners; l != NULL; l = l->next)
        ev_io_start(loop, &l->io);
}

/* ---- Public ---- */

struct server *server_new(struct ev_loop *loop, const struct server_opts *opts, char *err,
                          size_t errlen)
{
    struct server *srv = xcalloc(1, sizeof *srv);
    srv->loop = loop;
    srv->opts = *opts;
    if (opts->cert != NULL && opts->key != NULL) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(ctx, opts->cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, opts->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            char text[256] = "unknown";
            unsigned long e;
            while ((e = ERR_get_error()) != 0)
                ERR_error_string_n(e, text, sizeof text);
            snprintf(err, errlen, "cannot load TLS certificate %s or key %s: %s", opts->cert,
                     opts->key, text);
            SSL_CTX_free(ctx);
            xfree(srv);
            return NULL;
        }
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        srv->ssl_ctx = ctx;
    }
    srv->store = mbox_store_new(opts->users);
    faults_configure(&srv->faults, 0.0, 1, "");
    ev_timer_init(&srv->accept_pause, on_accept_pause, 0.1, 0.);
    srv->accept_pause.data = srv;
    ev_prepare_init(&srv->sweep, on_sweep);
    srv->sweep.data = srv;
    ev_prepare_start(loop, &srv->sweep);
    ev_unref(loop); /* the sweep alone does not keep the loop running */
    return srv;
}

int server_listen(struct server *srv, const char *host, int port, int tls, char *err, size_t errlen)
{
    if (tls && srv->ssl_ctx == NULL) {
        snprintf(err, errlen, "implicit TLS needs SUPERIMAP_FAKE_CERT and SUPERIMAP_FAKE_KEY");
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof *sin6;
    } else {
        snprintf(err, errlen, "'%s' is not an IP address", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 4096) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(e));
        close(fd);
        return -1;
    }
    struct listener *l = xcalloc(1, sizeof *l);
    l->srv = srv;
    l->fd = fd;
    l->is_tls = tls;
    l->port = ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
    snprintf(l->host, sizeof l->host, "%s", host);
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    l->io.data = l;
    ev_io_start(srv->loop, &l->io);
    struct listener **tail = &srv->listeners;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = l;
    int v6 = ss.ss_family == AF_INET6;
    log_info("listening addr=%s%s%s:%d tls=%s", v6 ? "[" : "", host, v6 ? "]" : "", l->port,
             tls ? "implicit" : "none");
    return l->port;
}

void server_ports(const struct server *srv, struct buf *out)
{
    for (const struct listener *l = srv->listeners; l != NULL; l = l->next) {
        int v6 = strchr(l->host, ':') != NULL;
        buf_printf(out, "%s%s%s%s:%d/%s", l == srv->listeners ? "" : " ", v6 ? "[" : "", l->host,
                   v6 ? "]" : "", l->port, l->is_tls ? "implicit" : "none");
    }
}

void server_stats(const struct server *srv, struct server_stats *st)
{
    *st = srv->stats;
    st->faults = faults_total(&srv->faults) - srv->faults_at_reset;
}

void server_reset_stats(struct server *srv)
{
    long sessions = srv->stats.sessions, authenticated = srv->stats.authenticated;
    memset(&srv->stats, 0, sizeof srv->stats);
    srv->stats.sessions = sessions;
    srv->stats.authenticated = authenticated;
    mbox_store_reset_max(srv->store);
    srv->stats.max_sessions_per_user = mbox_store_max_sessions(srv->store);
    srv->faults_at_reset = faults_total(&srv->faults);
}

int server_append(struct server *srv, const char *user, const void *data, size_t n, uint32_t *uid)
{
    struct mailbox *mb = mbox_get(srv->store, user, 1);
    if (mb == NULL)
        return -SIMAP_EINVAL;
    int rc = mbox_append(mb, data, n, time_now_ms(), uid);
    if (rc < 0)
        return rc;
    srv->stats.appends++;
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next; /* s may be closed (unlinked) below */
        struct session *s = l->owner;
        if (s->state != ST_SELECTED || s->is_halfopen || s->close_after_flush)
            continue;
        enum fault_kind f = faults_roll(&srv->faults, FAULTS_UNSOLICITED);
        if (f != FAULT_NONE)
            log_debugc("imap", "fault session=%lu at=exists fault=%s", s->id, faults_name(f));
        if (f != FAULT_GIBBERISH && apply_fault(s, "*", f)) {
            wake(s);
            continue;
        }
        reply(s, "* %zu EXISTS\r\n* %zu RECENT\r\n", mb->count, mb->recent);
        wake(s);
    }
    return 0;
}

int server_set_uidvalidity(struct server *srv, const char *user, uint32_t v)
{
    if (v == 0 || !mbox_user_valid(user))
        return -SIMAP_EINVAL;
    struct mailbox *mb = mbox_get(srv->store, user, 0);
    if (mb == NULL)
        return -SIMAP_ENOTFOUND;
    mbox_renumber(mb, v);
    uidvalidity_changed(mb, NULL);
    return 0;
}

int server_kick(struct server *srv, const char *user)
{
    struct mailbox *mb = mbox_get(srv->store, user, 0);
    if (mb == NULL)
        return 0;
    int n = 0;
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next; /* s may be closed (unlinked) below */
        struct session *s = l->owner;
        n++;
        if (s->is_halfopen) { /* it says nothing any more, BYE included */
            session_close(s, "kicked");
            continue;
        }
        fetch_free(s->fetch);
        s->fetch = NULL;
        if (!s->close_after_flush)
            reply(s, "* BYE [UNAVAILABLE] Kicked\r\n");
        s->close_after_flush = 1;
        s->discard_input = 1;
        wake(s);
    }
    return n;
}

struct mbox_store *server_store(struct server *srv)
{
    return srv->store;
}

struct faults *server_faults(struct server *srv)
{
    return &srv->faults;
}

void server_shutdown(struct server *srv)
{
    while (srv->listeners != NULL) {
        struct listener *l = srv->listeners;
        srv->listeners = l->next;
        ev_io_stop(srv->loop, &l->io);
        close(l->fd);
        xfree(l);
    }
    ev_timer_stop(srv->loop, &srv->accept_pause);
    while (srv->sessions != NULL)
        session_close(srv->sessions, "shutdown");
    on_sweep(srv->loop, &srv->sweep, 0);
}

void server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    server_shutdown(srv);
    ev_ref(srv->loop);
    ev_prepare_stop(srv->loop, &srv->sweep);
    mbox_store_free(srv->store);
    SSL_CTX_free(srv->ssl_ctx);
    xfree(srv);
}
