/*
 * The IMAP side of superimap-fake-imapd: listeners on several addresses,
 * plain and implicit TLS, and one session per connection, all on one libev
 * loop (RFC 3501 IMAP4rev1, RFC 2177 IDLE, RFC 2595 STARTTLS, RFC 4959
 * SASL-IR, RFC 4616 PLAIN, Google's XOAUTH2, RFC 7888 LITERAL+).
 *
 * Commands: CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE
 * PLAIN|XOAUTH2, SELECT, EXAMINE, STATUS, LIST, LSUB, IDLE, CHECK, CLOSE,
 * UNSELECT, FETCH and UID FETCH (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE
 * BODY[] BODY.PEEK[] BODY[HEADER] BODY[TEXT] RFC822 RFC822.HEADER RFC822.TEXT
 * ALL FAST), and with the profiles (session.h PROFILE_*) NOTIFY (RFC 5465),
 * ENABLE (RFC 5161), LIST-EXTENDED RETURN (SPECIAL-USE) (RFC 5258, 6154),
 * SELECT/EXAMINE (CONDSTORE) and (QRESYNC ...), FETCH MODSEQ and
 * (CHANGEDSINCE n [VANISHED]) (RFC 7162), FETCH X-GM-MSGID X-GM-THRID
 * X-GM-LABELS (X-GM-EXT-1). Anything else is answered BAD.
 *
 * An idle session holds no buffers: the read and write buffers are allocated
 * while bytes are in flight and freed when empty, and TLS sessions run with
 * SSL_MODE_RELEASE_BUFFERS.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_SERVER_H
#define CMD_FAKE_IMAPD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/fake-imapd/session.h"

struct ev_loop;
struct buf;
struct faults;
struct mbox_store;
struct server;

struct server_opts {
    const char *cert;           /* PEM certificate chain file; NULL: no TLS at all */
    const char *key;            /* PEM private key file */
    int require_tls;            /* LOGINDISABLED and no authentication before TLS */
    const char *xoauth2_prefix; /* XOAUTH2 tokens with it accepted too; NULL: none */
    int users;                  /* user1..userN exist */
    int max_sessions_per_user;  /* 0: unlimited */
    size_t max_message;         /* largest message appended; bounds the write buffer */
};

/* Counters; "since reset" ones restart at server_reset_stats(). */
struct server_stats {
    unsigned long long connections;    /* accepted, since reset */
    unsigned long long logins;         /* successful LOGIN or AUTHENTICATE, since reset */
    unsigned long long login_failures; /* refused credentials, since reset */
    unsigned long long commands;       /* commands read, since reset */
    unsigned long long fetches;        /* FETCH and UID FETCH commands, since reset */
    unsigned long long bodies;         /* messages whose body (or part) was sent, since reset */
    unsigned long long nonpeek;        /* bodies asked without .PEEK, since reset */
    unsigned long long seen_sets;      /* times a message gained \Seen, since reset */
    unsigned long long appends;        /* messages appended, since reset */
    unsigned long long faults;         /* faults injected, since reset */
    unsigned long long idles;          /* IDLE commands (refused ones too), since reset */
    unsigned long long noops;          /* NOOP commands, since reset */
    long sessions;                     /* connections open now */
    long max_sessions;                 /* most connections open at once, since reset */
    long authenticated;                /* of which logged in */
    int max_sessions_per_user;         /* most concurrent sessions of one user, since reset */
    unsigned long long by_command[SESSION_COMMANDS_MAX]; /* by server_command_stat(), since reset */
};

#define SERVER_LABELS_MAX 16 /* labels of one server_append_labels() */

enum server_mailbox_op { SERVER_MB_CREATE, SERVER_MB_RENAME, SERVER_MB_DELETE };

/*
 * Makes a server on loop with no listener yet. Loads the certificate and key
 * when given. Returns NULL with a reason in err on failure (TLS files).
 * Faults start disabled; configure them through server_faults().
 */
struct server *server_new(struct ev_loop *loop, const struct server_opts *opts, char *err,
                          size_t errlen);

/*
 * Listens on host (IPv4 or IPv6 literal) and port (0: the kernel picks),
 * speaking TLS from the first byte when tls is set. Logs
 * "listening addr=host:port tls=none|implicit" and returns the bound port, or
 * -1 with a reason in err.
 */
int server_listen(struct server *srv, const char *host, int port, int tls, char *err,
                  size_t errlen);

/* Appends "host:port/none host:port/implicit ..." (every listener) to out. */
void server_ports(const struct server *srv, struct buf *out);

/* Fills st. */
void server_stats(const struct server *srv, struct server_stats *st);

/* Restarts the "since reset" counters (the per-user maxima become the
 * current session counts). */
void server_reset_stats(struct server *srv);

/*
 * Appends data[0..n) to user's folder mailbox (NULL: INBOX; the user is made
 * if needed, another folder is not) with a new X-GM-MSGID, and tells every
 * session that has it selected "* n EXISTS", IDLE or not, and every session
 * whose NOTIFY watches it "* STATUS" (the sessions are written to from the
 * loop, after this returns). Returns 0 with *uid, or -SIMAP_EINVAL (bad user
 * name), -SIMAP_ENOTFOUND (no such folder), -SIMAP_ETOOBIG (UIDs exhausted).
 */
int server_append(struct server *srv, const char *user, const char *mailbox, const void *data,
                  size_t n, uint32_t *uid);

/*
 * Gmail: appends one message under labels[0..nlabels) (folder names, INBOX
 * or \Inbox for INBOX; missing label folders are made), one copy per label
 * folder with the same X-GM-MSGID (*msgid) and X-GM-LABELS, each announced as
 * by server_append(); uids[i] gets the UID in label i's folder. Returns 0,
 * -SIMAP_EINVAL (bad user or label name, a label twice, more than
 * SERVER_LABELS_MAX) or -SIMAP_ETOOBIG.
 */
int server_append_labels(struct server *srv, const char *user, const char *const *labels,
                         size_t nlabels, const void *data, size_t n, uint32_t *uids,
                         uint64_t *msgid);

/* Expunges uid from user's folder mailbox: sessions with it selected get
 * "* seq EXPUNGE" (or "* VANISHED uid" after ENABLE QRESYNC). Returns 0 or
 * -SIMAP_ENOTFOUND (no such user, folder or message). */
int server_expunge(struct server *srv, const char *user, const char *mailbox, uint32_t uid);

/*
 * Creates folder name (special: FS_*; the user is made if needed), renames
 * it to new_name or deletes it (never INBOX). Sessions with a deleted folder
 * selected get "* BYE [UNAVAILABLE]" and are closed; sessions whose NOTIFY
 * watches its (old) name get a "* LIST" (session_notify_renamed()). Returns
 * 0, -SIMAP_EINVAL (bad or taken name, INBOX) or -SIMAP_ENOTFOUND.
 */
int server_mailbox(struct server *srv, const char *user, enum server_mailbox_op op,
                   const char *name, const char *new_name, unsigned special);

/*
 * Changes the UIDVALIDITY of user's folder mailbox (NULL: INBOX) to v and
 * renumbers its messages; sessions with it selected get "* BYE
 * [UNAVAILABLE]" and are closed. Returns 0, -SIMAP_EINVAL (bad name or
 * v == 0) or -SIMAP_ENOTFOUND (no such user or folder).
 */
int server_set_uidvalidity(struct server *srv, const char *user, const char *mailbox, uint32_t v);

/* Closes every session logged in as user, after "* BYE [UNAVAILABLE]";
 * returns how many. */
int server_kick(struct server *srv, const char *user);

/* Whether IDLE is offered (the default): off, CAPABILITY leaves it out and
 * IDLE is answered BAD, as by a server without RFC 2177. Sessions already
 * idling stay so. */
void server_set_idle(struct server *srv, int on);
int server_idle(const struct server *srv);

/* The profiles (PROFILE_* of session.h) sessions see from their next
 * command on; 0, the default, is plain IMAP4rev1 as before them. */
void server_set_profiles(struct server *srv, unsigned profiles);
unsigned server_profiles(const struct server *srv);

/* Parses "notify,special-use,condstore,qresync,x-gm-ext-1" (any case; "all",
 * "none" or "" too; qresync implies condstore) into *profiles. 0 or
 * -SIMAP_EINVAL (unknown name; *profiles untouched). */
int server_parse_profiles(const char *list, unsigned *profiles);

/* Appends "notify,qresync" (the names set in profiles), or "none", to out. */
void server_describe_profiles(unsigned profiles, struct buf *out);

/* The name of per-command counter i of server_stats.by_command ("cmd_list"),
 * or NULL past the last. */
const char *server_command_stat(size_t i);

/* The store and the fault settings, owned by the server. */
struct mbox_store *server_store(struct server *srv);
struct faults *server_faults(struct server *srv);

/* Stops accepting and closes every session at once. Sessions are freed
 * before this returns; call it from outside any session callback. */
void server_shutdown(struct server *srv);

/* Shuts down if needed and frees everything. Accepts NULL. */
void server_free(struct server *srv);

#endif
