/*
 * Internals of superimap-fake-imapd's IMAP side, shared by server.c
 * (listeners, the public API), session.c (one connection: I/O, TLS, the
 * pump, faults on it) and commands.c (what each IMAP command does, against
 * the session API below). Nothing outside cmd/fake-imapd/ includes this.
 *
 * Calls go one way: server.c → commands.c → session.c, and server.c →
 * session.c. The server gives its sessions a struct session_env (what they
 * read of it, the counters they add to, the commands as session_hooks) and
 * keeps them in a struct session_set; session.c runs the commands only
 * through the hooks and never names the server. The server acts on a
 * session only through the functions below (session_kick(),
 * session_notify_exists(), ...), never by writing its fields.
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
#include "core/buf.h"

#define TAG_MAX              64 /* longest tag kept, NUL included */
#define SESSION_COMMANDS_MAX 24 /* per-command counters */

enum session_state { ST_NOTAUTH = 0, ST_AUTH, ST_SELECTED };
enum session_wait { WAIT_COMMAND = 0, WAIT_IDLE_DONE, WAIT_SASL, WAIT_SASL_ERROR_ACK };
enum sasl_mech { MECH_PLAIN = 1, MECH_XOAUTH2 };

/* Profiles: extensions a server may be started with (SUPERIMAP_FAKE_PROFILES,
 * or the control request PROFILES), each adding its capabilities and
 * behaviour; none is today's plain IMAP4rev1 server. */
#define PROFILE_NOTIFY      (1u << 0) /* RFC 5465 NOTIFY (subset) */
#define PROFILE_SPECIAL_USE (1u << 1) /* RFC 6154 attributes in LIST, RFC 5258 RETURN */
#define PROFILE_CONDSTORE   (1u << 2) /* RFC 7162 CONDSTORE, ENABLE */
#define PROFILE_QRESYNC     (1u << 3) /* RFC 7162 QRESYNC (CONDSTORE too) */
#define PROFILE_GMAIL       (1u << 4) /* Google's X-GM-EXT-1 */
#define PROFILE_ALL         0x1fu

/* What NOTIFY SET asked of a session (RFC 5465): allocated only by NOTIFY
 * SET, so a session that never sends it pays one pointer. The SELECTED
 * mailbox is always told EXISTS, filter or not. */
struct notify {
    unsigned is_personal : 1; /* PERSONAL: every folder of the account */
    unsigned wants_new : 1;   /* MessageNew: "* STATUS" for a watched folder */
    unsigned wants_name : 1;  /* MailboxName: "* LIST" on rename and delete */
    size_t n;                 /* MAILBOXES names */
    char **names;             /* as sent, NUL-terminated, owned */
};

struct session;

/* What a session runs its input through: the IMAP commands (commands.h),
 * set in the session_env by server.c. Each runs on the loop with s live. */
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
    ev_io io;                      /* io.data points back here */
    ev_timer tick;                 /* trickle pacing */
    const struct session_env *env; /* set->env */
    struct session_set *set;
    struct session *prev, *next; /* in set->sessions, then in set->closing */
    struct session *rnext;       /* in set->resume while is_queued */
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
    unsigned is_queued : 1;        /* in set->resume: pump it at the next sweep */
    unsigned was_doubled : 1;      /* another session of its user logged in meanwhile */
    unsigned is_condstore : 1;     /* CONDSTORE enabled (RFC 7162 3.1): MODSEQ in every FETCH */
    unsigned is_qresync : 1;       /* ENABLE QRESYNC: VANISHED rather than EXPUNGE */
    int hs_events;                 /* what the handshake waits for */
    int ssl_retry_len;             /* an SSL_write to repeat with the same length (0: none) */
    struct account *mb;            /* once logged in */
    struct folder *sel;            /* in ST_SELECTED: the selected folder of mb */
    struct notify *notify;         /* after NOTIFY SET (NULL: none) */
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

/* What the sessions add to; the server owns them and reports them in its
 * server_stats. "Since reset" as there. */
struct session_counters {
    unsigned long long connections;    /* accepted */
    unsigned long long logins;         /* successful LOGIN or AUTHENTICATE */
    unsigned long long login_failures; /* refused credentials */
    unsigned long long commands;       /* commands read */
    unsigned long long fetches;        /* FETCH and UID FETCH commands */
    unsigned long long bodies;         /* messages whose body (or part) was sent */
    unsigned long long nonpeek;        /* bodies asked without .PEEK */
    unsigned long long seen_sets;      /* times a message gained \Seen */
    unsigned long long idles;          /* IDLE commands (refused ones too) */
    unsigned long long noops;          /* NOOP commands */
    unsigned long long by_command[SESSION_COMMANDS_MAX]; /* by commands_stat_name() index */
    long sessions;                                       /* connections open now */
    long max_sessions;                                   /* most connections open at once */
    long authenticated;                                  /* of which logged in */
    int max_sessions_per_user;                           /* most concurrent sessions of one user */
};

/* What the sessions have of the server that made them: filled by the
 * server, borrowed by each of its sessions for the session's whole life.
 * Sessions read it and add to *counters; the server may change no_idle. */
struct session_env {
    struct ev_loop *loop;
    SSL_CTX *ssl_ctx;                  /* NULL: no TLS */
    struct mbox_store *store;          /* the users and their INBOXes */
    struct faults *faults;             /* rolled for commands and events */
    int require_tls;                   /* LOGINDISABLED and no authentication before TLS */
    char xoauth2_prefix[32];           /* XOAUTH2 tokens starting with it accepted; "": none */
    int max_sessions_per_user;         /* 0: unlimited */
    size_t max_message;                /* largest message appended; bounds the write buffer */
    int no_idle;                       /* IDLE not offered (server_set_idle(srv, 0)) */
    unsigned profiles;                 /* PROFILE_* (server_set_profiles()) */
    struct session_counters *counters; /* the server's */
    struct session_hooks hooks;        /* the commands */
};

/* The sessions of one server: embedded in it, changed only by session.c. */
struct session_set {
    const struct session_env *env;
    struct session *sessions; /* open */
    struct session *closing;  /* closed, freed by session_set_sweep() */
    struct session *resume;   /* queued by session_wake(), LIFO */
    ev_idle spin;             /* active while sessions are queued: poll must not block */
    unsigned long next_id;
};

/* ---- session.c ---- */

/* Makes set empty; its sessions will use env (borrowed: it must outlive
 * them). */
void session_set_init(struct session_set *set, const struct session_env *env);

/* Pumps every session queued by session_wake() once (sessions queued while
 * this runs wait for the next call), then frees the closed sessions no
 * longer queued. The server's ev_prepare calls it, outside any session
 * callback. */
void session_set_sweep(struct session_set *set);

/* Closes every open session of set (why: the log's reason); the memory
 * goes at the next session_set_sweep(). */
void session_set_close_all(struct session_set *set, const char *why);

/* Takes ownership of the connected socket fd: greets (after the handshake
 * when is_tls), unless a fault says otherwise, and serves it as one of set. */
void session_start(struct session_set *set, int fd, int is_tls);

/* Ends the connection now (watchers stopped, socket closed, unlinked from
 * its mailbox and the server's list); the memory goes at the next sweep.
 * Idempotent. */
void session_close(struct session *s, const char *why);

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

/* Links s to mb's sessions as logged in, updating the counters. */
void session_attach(struct session *s, struct account *mb);

/* Carries out fault f on s (tag answers BAD/NO). Returns 1 when the command
 * or event it replaced must not go on (BAD, NO, BYE, LIMIT, DROP, HALFOPEN),
 * 0 otherwise (NONE, GIBBERISH after its line, and the command-specific kinds). */
int session_apply_fault(struct session *s, const char *tag, enum fault_kind f);

/* Folder f of mb changed UIDVALIDITY or is being deleted: every session
 * with it selected, except except, is told "* BYE [UNAVAILABLE] why" and
 * closed after the write. */
void session_folder_lost(struct account *mb, const struct folder *f, struct session *except,
                         const char *why);

/* Mail was appended to folder f of s's account: s, when it has f selected
 * (and still answers), is told "* n EXISTS" and "* n RECENT"; else, when
 * its NOTIFY watches f for MessageNew, "* STATUS f (MESSAGES n UIDNEXT u)".
 * From the loop; an unsolicited fault rolled for it may take their place. */
void session_notify_new(struct session *s, const struct folder *f);

/* Message seq (1-based) with uid left folder f: s, when it has f selected,
 * is told "* seq EXPUNGE", or "* VANISHED uid" after ENABLE QRESYNC. */
void session_notify_expunge(struct session *s, const struct folder *f, size_t seq, uint32_t uid);

/* Folder old of s's account was renamed to new_name (NULL: deleted): s, when
 * its NOTIFY watches old for MailboxName, is told "* LIST () "/" new
 * ("OLDNAME" (old))", or "* LIST (\NonExistent) "/" old" for a delete. */
void session_notify_renamed(struct session *s, const char *old, const char *new_name);

/* 1 when s's NOTIFY watches the folder named name. */
int session_watches(const struct session *s, const char *name);

/* Queues a mailbox name as IMAP writes it: INBOX as the atom, others as a
 * quoted string, or a literal when they hold 8-bit bytes. */
void session_put_mailbox(struct session *s, const char *name);

/* Frees a NOTIFY state; accepts NULL. */
void session_notify_free(struct notify *n);

/* Kicks s: a FETCH in progress is dropped, "* BYE [UNAVAILABLE] Kicked" is
 * written (once) and s closes after the write; a half-open s closes now. */
void session_kick(struct session *s);

#endif
