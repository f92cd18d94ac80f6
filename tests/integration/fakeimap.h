/*
 * Integration harness for superimap-fake-imapd: starts one in its own
 * temporary directory (listeners on port 0, control channel on a unix socket
 * there), learns the ports it bound, and wraps the control protocol (see
 * cmd/fake-imapd/control.c): append mail, change UIDVALIDITY, kick users,
 * set faults, read counters. Under TEST_PREFIX (make valgrind) the server
 * runs under that prefix too.
 *
 * Every call that talks to the server has a deadline (10 s; 60 s under a
 * TEST_PREFIX) and fails rather than hang.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_FAKEIMAP_H
#define TESTS_INTEGRATION_FAKEIMAP_H

#include <stddef.h>
#include <stdint.h>

#include "tests/integration/harness.h"

#define FAKEIMAP_MAX_LISTENERS 64

/* One listener the server reported. */
struct fakeimap_listener {
    char host[64];
    int port;
    int is_tls; /* implicit TLS */
};

/* A running superimap-fake-imapd. */
struct fakeimap {
    struct proc proc;  /* its PID and log (dir/fake-imapd.log) */
    char dir[256];     /* mkdtemp; removed by fakeimap_stop() */
    char control[300]; /* dir/control.sock */
    char cert[300];    /* dir/cert.pem after fakeimap_make_cert(), else "" */
    char key[300];     /* dir/key.pem likewise */
    int ctl_fd;        /* the open control connection, or -1 */
    int nlisteners;
    struct fakeimap_listener listeners[FAKEIMAP_MAX_LISTENERS];
};

/*
 * Makes the temporary directory and, when with_cert is set, a self-signed
 * certificate for CN=localhost with subjectAltName DNS:localhost and
 * IP:127.0.0.1 (`openssl req`), usable as its own CA by clients. Call before
 * fakeimap_start(); f is zeroed first. Returns 0 or -1 (message on stderr).
 */
int fakeimap_prepare(struct fakeimap *f, int with_cert);

/*
 * Starts the server prepared in f with SUPERIMAP_FAKE_CONTROL=dir/control.sock,
 * SUPERIMAP_FAKE_ADDRS=127.0.0.1, SUPERIMAP_FAKE_PORT=0, the certificate
 * files when made, plus extra ("NAME=value" strings, NULL-terminated; they
 * override the defaults; "SUPERIMAP_FAKE_TLS_PORT=0" adds implicit-TLS
 * listeners). Waits until the control channel answers and reads PORTS.
 * Returns 0, or -1 with a message on stderr (the process is stopped).
 */
int fakeimap_start(struct fakeimap *f, const char *const *extra);

/*
 * Sends SIGTERM and waits for the exit (10 s, else SIGKILL); returns the exit
 * code (0 on a clean stop). Removes the temporary directory unless keep_dir.
 * Safe to call twice.
 */
int fakeimap_stop(struct fakeimap *f, int keep_dir);

/* Port of the index-th plain (tls 0) or implicit-TLS (tls 1) listener, in the
 * order of SUPERIMAP_FAKE_ADDRS; -1 when there is none. host (may be NULL)
 * gets its address. */
int fakeimap_port(const struct fakeimap *f, int tls, int index, const char **host);

/*
 * Sends one control request line (without newline) and reads the one-line
 * reply into reply (NUL-terminated, newline removed). Returns 0 when the
 * reply starts with "OK", 1 when it starts with "ERR", -1 on a broken
 * channel or timeout.
 */
int fakeimap_request(struct fakeimap *f, const char *request, char *reply, size_t replylen);

/* APPEND: message msg[0..n) to user's INBOX; *uid (may be NULL) gets its UID.
 * 0 or -1. */
int fakeimap_append(struct fakeimap *f, const char *user, const void *msg, size_t n, uint32_t *uid);

/* UIDVALIDITY <user> <v>. 0 or -1. */
int fakeimap_set_uidvalidity(struct fakeimap *f, const char *user, uint32_t v);

/* KICK <user>: returns the sessions closed, or -1. */
int fakeimap_kick(struct fakeimap *f, const char *user);

/* FAULTS <rate> <seed> <list> ("none" turns them off). 0 or -1. */
int fakeimap_faults(struct fakeimap *f, double rate, unsigned seed, const char *list);

/* RESET the counters. 0 or -1. */
int fakeimap_reset(struct fakeimap *f);

/* One counter of STATS by name ("logins", "sessions", "max_sessions_per_user",
 * "fetches", "seen_sets", "appends", ...), or -1. */
long long fakeimap_stat(struct fakeimap *f, const char *name);

/* SESSIONS <user>: current and maximum concurrent sessions. 0 or -1. */
int fakeimap_sessions(struct fakeimap *f, const char *user, int *current, int *max);

/* FLAGS <user> <uid>: 1 when the message has \Seen, 0 when not, -1 on error. */
int fakeimap_is_seen(struct fakeimap *f, const char *user, uint32_t uid);

/* MESSAGE <user> <uid>: the stored bytes in a new buffer (*data, free() it,
 * NUL-terminated) of *n bytes. 0 or -1. */
int fakeimap_message(struct fakeimap *f, const char *user, uint32_t uid, char **data, size_t *n);

/* APPENDTO: msg[0..n) into user's existing mailbox (any name: the control
 * encoding is done here); *uid (may be NULL) gets its UID. 0 or -1. */
int fakeimap_append_to(struct fakeimap *f, const char *user, const char *mailbox, const void *msg,
                       size_t n, uint32_t *uid);

/* APPENDLABELS (Gmail): msg[0..n) under labels[0..nlabels) (mailbox names,
 * made when missing; "INBOX" for the inbox), one copy per label mailbox with
 * one X-GM-MSGID (*msgid, may be NULL); uids (may be NULL) gets a UID per
 * label. 0 or -1. */
int fakeimap_append_labels(struct fakeimap *f, const char *user, const char *const *labels,
                           size_t nlabels, const void *msg, size_t n, uint64_t *msgid,
                           uint32_t *uids);

/* MAILBOX: op "create" a (special_use "\\Junk"... or NULL), "rename" a to b,
 * or "delete" a, of user. 0 or -1. */
int fakeimap_mailbox(struct fakeimap *f, const char *user, const char *op, const char *a,
                     const char *b, const char *special_use);

/* EXPUNGE: removes uid from user's mailbox. 0 or -1. */
int fakeimap_expunge(struct fakeimap *f, const char *user, const char *mailbox, uint32_t uid);

/* PROFILES list ("notify,special-use", "all", "none"): the extensions
 * sessions see from their next command on. A server can also start with
 * them: "SUPERIMAP_FAKE_PROFILES=notify" in fakeimap_start()'s extra. 0 or -1. */
int fakeimap_profiles(struct fakeimap *f, const char *list);

/* One field of INFO <user> <mailbox> ("uidnext", "messages",
 * "highestmodseq", ...), or -1. */
long long fakeimap_info(struct fakeimap *f, const char *user, const char *mailbox,
                        const char *name);

/* Polls until STATS counter name reaches at least value or ms pass; 0 or -1. */
int fakeimap_wait_stat(struct fakeimap *f, const char *name, long long value, int ms);

#endif
