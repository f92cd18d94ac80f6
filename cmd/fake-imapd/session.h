/*
 * Internals of superimap-fake-imapd's IMAP side, shared by server.c
 * (listeners, the public API), session.c (one connection: I/O, TLS, the
 * pump, faults on it) and commands.c (what each IMAP command does, against
 * the session API below). Nothing outside cmd/fake-imapd/ includes this.
 *
 * Calls go one way: server.c wires commands.c's functions into the
 * server's session_hooks, and session.c runs the commands only through
 * them; commands.c calls session.c, never the reverse.
 *
 *   connect --greeting--> NOTAUTH --LOGIN/AUTHENTICATE--> AUTH --SELECT/EXAMINE--> SELECTED
 *                            |  STARTTLS: "OK", flush, handshake, NOTAUTH again
 *   waits inside a state: a command, DONE after IDLE, a SASL response line
 *
 * Every function here runs on the server's loop. None frees a session: a
 * closed session is unlinked at once and freed by the server's ev_prepare
 * sweep, after every callback that could still hold it has returned.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_SESSION_H
#define CMD_FAKE_IMAPD_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "cmd/fake-imapd/command.h"
#include "cmd/fake-imapd/faults.h"
#include "cmd/fake-imapd/mailbox.h"
#include "cmd/fake-imapd/server.h"
#include "core/buf.h"

#define TAG_MAX 64 /* longest tag kept, NUL included */

enum session_state { ST_NOTAUTH = 0, ST_AUTH, ST_SELECTED };
enum session_wait { WAIT_COMMAND = 0, WAIT_IDLE_DONE, WAIT_SASL, WAIT_SASL_ERROR_ACK };
enum sasl_mech { MECH_PLAIN = 1, MECH_XOAUTH2 };

struct listener; /* server.c */
struct session;

/* What a session runs its input through: the IMAP commands (commands.h),
 * set in the server by server.c. Each runs on the loop with s live. */
struct session_hooks {
    /* Runs one framed input frame[0..len) (a command, DONE after IDLE, or a
     * SASL line, by s->wait). The frame may be changed in place. */
    void (*run)(struct session *s, char *frame, size_t len);
    /* Adds output of the answer in progress (s->fetch non-NULL), ending it
     * when it is complete. Returns 1 when it added output. */
    int (*more)(struct session *s);
    /* Frees the state of an answer in progress (s->fetch); accepts NULL. */
    void (*more_free)(void *fetch);
};

/* One connection. */
struct session {
    ev_io io;      /* io.data points back here */
    ev_timer tick; /* trickle pacing */
    struct server *srv;
    struct session *prev, *next; /* in srv->sessions, then in srv->closing */
    struct session *rnext;       /* in srv->resume while is_queued */
    SSL *ssl;
    int fd;
    int io_events; /* what io is armed for */
    unsigned long id;
    unsigned char state;      /* enum session_state */
    unsigned char wait;       /* enum session_wait */
    unsigned char mech;       /* enum sasl_mech while WAIT_SASL */
    unsigned char sasl_fault; /* fault rolled when AUTHENTICATE began */
    unsigned is_tls : 1;      /* TLS from the start, or after STARTTLS */
    unsigned is_readonly : 1; /* EXAMINE rather than SELECT */
    unsigned is_halfopen : 1; /* fault: reads and discards, never answers */
    unsigned is_closing : 1;
    unsigned is_trickle : 1; /* fault: a few bytes per tick */
    unsigned tick_due : 1;
    unsigned close_after_flush : 1;
    unsigned starttls_pending : 1; /* handshake once the "OK" is written */
    unsigned handshaking : 1;
    unsigned write_blocked : 1;
    unsigned read_wants_write : 1; /* SSL_read needs the socket writable */
    unsigned write_wants_read : 1; /* SSL_write needs the socket readable */
    unsigned discard_input : 1;    /* drop what was read (STARTTLS, BYE) */
    unsigned is_queued : 1;        /* in srv->resume: pump it at the next sweep */
    unsigned was_doubled : 1;      /* another session of its user logged in meanwhile */
    int hs_events;                 /* what the handshake waits for */
    int ssl_retry_len;             /* an SSL_write to repeat with the same length (0: none) */
    struct mailbox *mb;            /* once logged in */
    struct mbox_link link;
    struct buf in;  /* bytes read, not yet a whole command */
    struct buf out; /* bytes to write, from out_off */
    size_t out_off;
    struct command_reader rd;
    char *pending_tag;    /* of IDLE or AUTHENTICATE while waiting */
    int64_t started_ms;   /* monotonic, at accept */
    int64_t last_read_ms; /* monotonic, at the last bytes read */
    void *fetch;          /* a FETCH being answered, the hooks' state (NULL: none) */
};

/* The server (server.h keeps it opaque to main.c and control.c). */
struct server {
    struct ev_loop *loop;
    struct server_opts opts;
    SSL_CTX *ssl_ctx; /* NULL: no TLS */
    struct mbox_store *store;
    struct faults faults;
    struct listener *listeners;
    ev_timer accept_pause; /* after EMFILE */
    ev_prepare sweep;      /* runs queued sessions, frees closed ones */
    ev_idle spin;          /* active while sessions are queued: poll must not block */
    struct session *sessions;
    struct session *closing;
    struct session *resume; /* queued by session_wake(), LIFO */
    struct server_stats stats;
    unsigned long long faults_at_reset;
    unsigned long next_id;
    int no_idle;                /* server_set_idle(srv, 0) */
    struct session_hooks hooks; /* the commands (server_new() sets them) */
};

/* ---- session.c ---- */

/* Takes ownership of the connected socket fd: greets (after the handshake
 * when is_tls), unless a fault says otherwise, and serves it. */
void session_start(struct server *srv, int fd, int is_tls);

/* Ends the connection now (watchers stopped, socket closed, unlinked from
 * its mailbox and the server's list); the memory goes at the next sweep.
 * Idempotent. */
void session_close(struct session *s, const char *why);

/* Frees a closed session; only the sweep calls it. */
void session_free(struct session *s);

/* Queues formatted output; a full write buffer closes the session. */
void session_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void session_reply_bytes(struct session *s, const void *p, size_t n);

/* Bytes queued and not yet written. */
size_t session_out_pending(const struct session *s);

/* Queues the capability list for the session's state (no CRLF). */
void session_put_capability(struct session *s);

/* Queues one garbage untagged line (the gibberish fault). */
void session_gibberish(struct session *s);

/* Has s run from the loop soon, never here: the way one session, or the
 * control channel, gets another to write what was queued for it, and the
 * way a session with work left after its budget comes back after the
 * others (an ev_feed_event() would run it again at once: libev runs pending
 * watchers last in, first out). */
void session_wake(struct session *s);

/* Pumps every session queued by session_wake() once (sessions queued while
 * this runs wait for the next call). Called by the server's sweep. */
void session_run_queued(struct server *srv);

/* Links s to mb's sessions as logged in, updating the counters. */
void session_attach(struct session *s, struct mailbox *mb);

/* Carries out fault f on s (tag answers BAD/NO). Returns 1 when the command
 * or event it replaced must not go on (BAD, NO, BYE, LIMIT, DROP, HALFOPEN),
 * 0 otherwise (NONE, GIBBERISH after its line, and the command-specific kinds). */
int session_apply_fault(struct session *s, const char *tag, enum fault_kind f);

/* UIDVALIDITY of mb changed: every session with it selected, except except,
 * is told BYE and closed after the write. */
void session_uidvalidity_changed(struct mailbox *mb, struct session *except);

#endif
