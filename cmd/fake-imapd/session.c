/*
 * One IMAP connection of superimap-fake-imapd (see session.h): plain or TLS
 * I/O, the pump, closing, and the faults that act on a connection.
 *
 * One struct session per connection, its one ev_io re-armed for exactly the
 * events it waits for. Every wake-up runs pump(): TLS handshake step, run
 * the commands already read, write, read more, with a budget, until nothing
 * moves. Sessions never touch one another directly: an append, a kick or a
 * UIDVALIDITY change queues bytes for the other sessions and wakes them
 * (session_wake(): run by session_set_sweep(), the server's ev_prepare), so
 * no pump() ever runs inside another (Redis freeClientAsync-style sweep for
 * the memory). A session knows the server only as its struct session_env.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* POLLRDHUP (Linux): a client's FIN behind unread bytes */
#include "cmd/fake-imapd/session.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

#define PUMP_BUDGET      16         /* rounds of work per wake-up */
#define READ_CHUNK       16384      /* one read(2) or SSL_read() */
#define OUT_HIGH         (1u << 20) /* stop reading commands above this much unsent output */
#define OUT_COMPACT      (1u << 20) /* move unsent output down past this offset */
#define TRICKLE_BYTES    8          /* bytes per tick while trickling */
#define TRICKLE_INTERVAL 0.002      /* seconds between trickle ticks */

#define IO_AGAIN (-2) /* conn_read()/conn_write(): would block */

static void pump(struct session *s);

/* ---- Output ---- */

void session_reply(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&s->out, fmt, ap);
    va_end(ap);
    if (rc < 0)
        session_close(s, "write buffer full");
}

void session_reply_bytes(struct session *s, const void *p, size_t n)
{
    if (buf_append(&s->out, p, n) < 0)
        session_close(s, "write buffer full");
}

size_t session_out_pending(const struct session *s)
{
    return s->out.len - s->out_off;
}

static void capability_list(struct session *s, struct buf *b)
{
    buf_puts(b, s->env->no_idle ? "IMAP4rev1 LITERAL+ SASL-IR ID UNSELECT"
                                : "IMAP4rev1 LITERAL+ SASL-IR IDLE ID UNSELECT");
    if (s->state == ST_NOTAUTH) {
        if (s->env->ssl_ctx != NULL && !s->is_tls)
            buf_puts(b, " STARTTLS");
        if (s->env->require_tls && !s->is_tls)
            buf_puts(b, " LOGINDISABLED");
        buf_puts(b, " AUTH=PLAIN AUTH=XOAUTH2");
        return;
    }
    /* The profiles' extensions, after login only, as Dovecot announces them. */
    unsigned p = s->env->profiles;
    if (p & (PROFILE_CONDSTORE | PROFILE_QRESYNC))
        buf_puts(b, " ENABLE CONDSTORE");
    if (p & PROFILE_QRESYNC)
        buf_puts(b, " QRESYNC");
    if (p & PROFILE_NOTIFY)
        buf_puts(b, " NOTIFY");
    if (p & PROFILE_SPECIAL_USE)
        buf_puts(b, " LIST-EXTENDED SPECIAL-USE");
    if (p & PROFILE_GMAIL)
        buf_puts(b, " X-GM-EXT-1");
}

void session_put_capability(struct session *s)
{
    struct buf b;
    buf_init(&b, 1024);
    capability_list(s, &b);
    session_reply(s, "%s", b.data);
    buf_free(&b);
}

void session_gibberish(struct session *s)
{
    static const char *const lines[] = {
        "* ZZZ fault injected: gibberish\r\n",
        "* 7 FROBNICATE (((\r\n",
        "* OK [NO-SUCH-CODE 1 2 3] gibberish\r\n",
        "* BOGUS \"unterminated\r\n",
    };
    const char *l = lines[faults_pick(s->env->faults, 4)];
    session_reply_bytes(s, l, strlen(l));
}

/* Wakes s from the loop soon (never runs it here): used for every change
 * one session or the control channel makes to another session. */
void session_wake(struct session *s)
{
    struct session_set *set = s->set;
    if (s->is_closing || s->is_queued)
        return;
    s->is_queued = 1;
    s->rnext = set->resume;
    set->resume = s;
    if (!ev_is_active(&set->spin))
        ev_idle_start(s->env->loop, &set->spin);
}

/* Pumps every session queued by session_wake() once (sessions queued while
 * this runs wait for the next call). */
static void run_queued(struct session_set *set)
{
    struct session *s = set->resume;
    set->resume = NULL;
    ev_idle_stop(set->env->loop, &set->spin);
    while (s != NULL) {
        struct session *next = s->rnext;
        s->is_queued = 0;
        s->rnext = NULL;
        if (!s->is_closing)
            pump(s);
        s = next;
    }
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
    while (session_out_pending(s) > 0) {
        size_t n = session_out_pending(s);
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
            if (session_out_pending(s) > 0 && !ev_is_active(&s->tick)) {
                ev_timer_set(&s->tick, TRICKLE_INTERVAL, 0.); /* a fired timer keeps no delay */
                ev_timer_start(s->env->loop, &s->tick);
            }
            break;
        }
    }
    if (session_out_pending(s) == 0) {
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
    s->env->counters->authenticated--;
    s->mb = NULL;
    s->sel = NULL;
}

/* 1 when o's client has closed its side (FIN or reset received), whether or
 * not its last bytes are still unread. */
static int client_gone(const struct session *o)
{
    struct pollfd p = {.fd = o->fd, .events = POLLRDHUP};
    return o->fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void session_attach(struct session *s, struct account *mb)
{
    /* A client that closed a session of this user before logging in again
     * has one session, even when this loop has not read that EOF yet (both
     * became ready together, or the loop is slow under a sanitizer): close
     * the old one first, so the counts below are what the client did. */
    for (struct mbox_link *l = mb->sessions.next, *next; l != &mb->sessions; l = next) {
        next = l->next;
        if (client_gone(l->owner))
            session_close(l->owner, "client closed the connection (seen at a new login)");
    }
    s->mb = mb;
    s->link.owner = s;
    s->link.next = &mb->sessions;
    s->link.prev = mb->sessions.prev;
    mb->sessions.prev->next = &s->link;
    mb->sessions.prev = &s->link;
    mb->sessions_now++;
    if (mb->sessions_now > mb->sessions_max)
        mb->sessions_max = mb->sessions_now;
    if (mb->sessions_max > s->env->counters->max_sessions_per_user)
        s->env->counters->max_sessions_per_user = mb->sessions_max;
    s->env->counters->authenticated++;
    if (mb->sessions_now < 2)
        return;
    /* Say what the other sessions are doing: a client that should hold one
     * session per user learns which one it forgot (or has not closed yet). */
    int64_t now = time_mono_ms();
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = l->next) {
        struct session *o = l->owner;
        if (o == s)
            continue;
        o->was_doubled = 1;
        log_warn("concurrent session user=%s sessions=%d session=%lu other=%lu state=%d "
                 "halfopen=%d age_ms=%lld quiet_ms=%lld pending=%zu",
                 mb->user, mb->sessions_now, s->id, o->id, o->state, o->is_halfopen,
                 (long long)(now - o->started_ms), (long long)(now - o->last_read_ms),
                 session_out_pending(o));
    }
}

/* Ends the connection now: watchers stopped, socket closed, unlinked from
 * its mailbox and the open sessions; the memory goes at the next sweep. */
void session_close(struct session *s, const char *why)
{
    if (s->is_closing)
        return;
    struct session_set *set = s->set;
    s->is_closing = 1;
    if (s->was_doubled) /* the end of a "concurrent session" story */
        log_warn("concurrent session closed user=%s session=%lu why=\"%s\" quiet_ms=%lld",
                 s->mb ? s->mb->user : "-", s->id, why,
                 (long long)(time_mono_ms() - s->last_read_ms));
    log_debugc("imap", "session closed session=%lu user=%s why=\"%s\"", s->id,
               s->mb ? s->mb->user : "-", why);
    ev_io_stop(s->env->loop, &s->io);
    ev_timer_stop(s->env->loop, &s->tick);
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
        set->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = NULL;
    s->next = set->closing;
    set->closing = s;
    s->env->counters->sessions--;
}

/* Frees a closed session; only the sweep calls it. */
static void session_free(struct session *s)
{
    buf_free(&s->in);
    buf_free(&s->out);
    xfree(s->pending_tag);
    s->env->hooks.more_free(s->fetch);
    session_notify_free(s->notify);
    xfree(s);
}

/* Arms the one ev_io for exactly what the session waits for. */
static int wants_read(const struct session *s)
{
    if (s->is_closing || s->handshaking || s->starttls_pending || s->close_after_flush)
        return 0;
    if (s->is_halfopen)
        return 1; /* read and discard, to notice the peer closing */
    return s->fetch == NULL && session_out_pending(s) < OUT_HIGH;
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
        if ((session_out_pending(s) > 0 && s->write_blocked) || s->read_wants_write)
            ev |= EV_WRITE;
    }
    if (ev == s->io_events)
        return;
    ev_io_stop(s->env->loop, &s->io);
    ev_io_set(&s->io, s->fd, ev);
    if (ev != 0)
        ev_io_start(s->env->loop, &s->io);
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
    s->ssl = SSL_new(s->env->ssl_ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
        tls_error(s, "new");
        session_close(s, "cannot start TLS");
        return;
    }
    SSL_set_accept_state(s->ssl);
    s->handshaking = 1;
    s->hs_events = EV_READ;
}

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
    s->last_read_ms = time_mono_ms();
    if (s->is_halfopen)
        return 1;
    if (buf_append(&s->in, scratch, (size_t)n) < 0) {
        session_reply(s, "* BYE [ALERT] Command too long\r\n");
        s->close_after_flush = 1;
        s->discard_input = 1;
    }
    return 1;
}

/* Runs one injected fault that replaces the command. Returns 1 when the
 * command must not run. */
int session_apply_fault(struct session *s, const char *tag, enum fault_kind f)
{
    switch (f) {
    case FAULT_BAD:
        session_reply(s, "%s BAD Fault injected\r\n", tag);
        return 1;
    case FAULT_NO:
        session_reply(s, "%s NO Fault injected\r\n", tag);
        return 1;
    case FAULT_GIBBERISH:
        session_gibberish(s);
        return 0;
    case FAULT_BYE:
    case FAULT_LIMIT:
        session_reply(s, "* BYE [UNAVAILABLE] %s\r\n",
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

/* A folder changed UIDVALIDITY or goes away under the sessions that have
 * it selected: each is told BYE and closed (except `except`, which is
 * selecting it right now). */
void session_folder_lost(struct account *mb, const struct folder *f, struct session *except,
                         const char *why)
{
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next;
        struct session *o = l->owner;
        if (o == except || o->sel != f)
            continue;
        o->sel = NULL; /* also when already leaving: f may be freed next */
        if (o->state != ST_SELECTED || o->close_after_flush)
            continue;
        o->env->hooks.more_free(o->fetch);
        o->fetch = NULL;
        session_reply(o, "* BYE [UNAVAILABLE] %s\r\n", why);
        o->close_after_flush = 1;
        o->discard_input = 1;
        session_wake(o);
    }
}

/* 1 when an unsolicited answer may go to s now; rolls the unsolicited
 * faults first (0 when one took its place: the session is woken). */
static int may_push(struct session *s)
{
    if (s->is_halfopen || s->close_after_flush || s->is_closing)
        return 0;
    enum fault_kind f = faults_roll(s->env->faults, FAULTS_UNSOLICITED);
    if (f != FAULT_NONE)
        log_debugc("imap", "fault session=%lu at=push fault=%s", s->id, faults_name(f));
    if (session_apply_fault(s, "*", f)) { /* GIBBERISH writes its line and goes on */
        session_wake(s);
        return 0;
    }
    return 1;
}

int session_watches(const struct session *s, const char *name)
{
    const struct notify *n = s->notify;
    if (n == NULL)
        return 0;
    if (n->is_personal)
        return 1;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->names[i], name) == 0 ||
            (strcasecmp(name, "INBOX") == 0 && strcasecmp(n->names[i], "INBOX") == 0))
            return 1;
    return 0;
}

void session_notify_new(struct session *s, const struct folder *f)
{
    if (s->state == ST_SELECTED && s->sel == f) {
        if (!may_push(s))
            return;
        session_reply(s, "* %zu EXISTS\r\n* %zu RECENT\r\n", f->count, f->recent);
        session_wake(s);
        return;
    }
    if (s->state == ST_NOTAUTH || !session_watches(s, mbox_folder_name(f)) ||
        !s->notify->wants_new || !may_push(s))
        return;
    session_reply(s, "* STATUS ");
    session_put_mailbox(s, mbox_folder_name(f));
    session_reply(s, " (MESSAGES %zu UIDNEXT %u)\r\n", f->count, (unsigned)f->uidnext);
    session_wake(s);
}

void session_notify_expunge(struct session *s, const struct folder *f, size_t seq, uint32_t uid)
{
    if (s->state != ST_SELECTED || s->sel != f || !may_push(s))
        return;
    if (s->is_qresync)
        session_reply(s, "* VANISHED %u\r\n", (unsigned)uid);
    else
        session_reply(s, "* %zu EXPUNGE\r\n", seq);
    session_wake(s);
}

void session_notify_renamed(struct session *s, const char *old, const char *new_name)
{
    if (s->state == ST_NOTAUTH || !session_watches(s, old) || !s->notify->wants_name ||
        !may_push(s))
        return;
    if (new_name == NULL) {
        session_reply(s, "* LIST (\\NonExistent) \"/\" ");
        session_put_mailbox(s, old);
        session_reply(s, "\r\n");
    } else {
        session_reply(s, "* LIST () \"/\" ");
        session_put_mailbox(s, new_name);
        session_reply(s, " (\"OLDNAME\" (");
        session_put_mailbox(s, old);
        session_reply(s, "))\r\n");
    }
    session_wake(s);
}

void session_put_mailbox(struct session *s, const char *name)
{
    if (strcmp(name, "INBOX") == 0) {
        session_reply(s, "INBOX");
        return;
    }
    size_t n = strlen(name);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)name[i] >= 0x80) {
            session_reply(s, "{%zu}\r\n", n);
            session_reply_bytes(s, name, n);
            return;
        }
    }
    session_reply_bytes(s, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '"' || name[i] == '\\')
            session_reply_bytes(s, "\\", 1);
        session_reply_bytes(s, name + i, 1);
    }
    session_reply_bytes(s, "\"", 1);
}

void session_notify_free(struct notify *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++)
        xfree(n->names[i]);
    xfree(n->names);
    xfree(n);
}

void session_kick(struct session *s)
{
    if (s->is_halfopen) { /* it says nothing any more, BYE included */
        session_close(s, "kicked");
        return;
    }
    s->env->hooks.more_free(s->fetch);
    s->fetch = NULL;
    if (!s->close_after_flush)
        session_reply(s, "* BYE [UNAVAILABLE] Kicked\r\n");
    s->close_after_flush = 1;
    s->discard_input = 1;
    session_wake(s);
}

/* ---- The pump ---- */

static int blocked(const struct session *s)
{
    return s->is_closing || s->is_halfopen || s->fetch != NULL || s->close_after_flush ||
           s->starttls_pending || s->handshaking || s->discard_input ||
           session_out_pending(s) >= OUT_HIGH;
}

/* Runs the whole commands read so far. Returns 1 when it produced output. */
static int produce(struct session *s)
{
    int progress = 0;
    if (s->fetch != NULL) {
        progress = s->env->hooks.more(s);
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
                session_reply(s, "+ Ready for literal data\r\n");
                progress = 1;
            }
            break;
        }
        progress = 1;
        if (rc < 0) {
            session_reply(s, "* BYE [ALERT] Command too long\r\n");
            s->close_after_flush = 1;
            s->discard_input = 1;
            break;
        }
        s->env->counters->commands++;
        s->env->hooks.run(s, frame, flen);
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
        if (session_out_pending(s) == 0 && s->close_after_flush) {
            session_close(s, "closed after reply");
            return;
        }
        if (session_out_pending(s) == 0 && s->starttls_pending) {
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
        session_wake(s);
    arm(s);
}

static void on_session_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    pump(w->data);
}

static void on_spin(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents; /* nothing: being active keeps poll from blocking */
}

void session_set_init(struct session_set *set, const struct session_env *env)
{
    memset(set, 0, sizeof *set);
    set->env = env;
    ev_idle_init(&set->spin, on_spin);
}

void session_set_sweep(struct session_set *set)
{
    run_queued(set);
    /* A closed session still queued (closed after it was woken, during the
     * run above) is freed at the next sweep, once it has left the queue. */
    struct session **pp = &set->closing;
    while (*pp != NULL) {
        struct session *s = *pp;
        if (s->is_queued) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        session_free(s);
    }
}

void session_set_close_all(struct session_set *set, const char *why)
{
    while (set->sessions != NULL)
        session_close(set->sessions, why);
}

void session_start(struct session_set *set, int fd, int is_tls)
{
    const struct session_env *env = set->env;
    struct session *s = xcalloc(1, sizeof *s);
    s->env = env;
    s->set = set;
    s->fd = fd;
    s->id = ++set->next_id;
    s->started_ms = s->last_read_ms = time_mono_ms();
    buf_init(&s->in, COMMAND_MAX_FRAME + READ_CHUNK);
    buf_init(&s->out, 3 * env->max_message + (4u << 20));
    ev_io_init(&s->io, on_session_io, fd, 0);
    s->io.data = s;
    ev_timer_init(&s->tick, on_tick, TRICKLE_INTERVAL, 0.);
    s->tick.data = s;
    s->next = set->sessions;
    if (set->sessions != NULL)
        set->sessions->prev = s;
    set->sessions = s;
    env->counters->sessions++;
    if (env->counters->sessions > env->counters->max_sessions)
        env->counters->max_sessions = env->counters->sessions;
    env->counters->connections++;

    enum fault_kind f = faults_roll(env->faults, FAULTS_UNSOLICITED | FAULT_BIT(FAULT_LIMIT));
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
        session_apply_fault(s, "*", f);
    } else {
        if (f == FAULT_GIBBERISH)
            session_gibberish(s);
        session_reply(s, "* OK [CAPABILITY ");
        session_put_capability(s);
        session_reply(s, "] superimap-fake-imapd ready\r\n");
    }
    pump(s);
}
