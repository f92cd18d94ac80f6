/*
 * A private Dovecot (Debian's dovecot-imapd) for the watcher's interop tests:
 * its own configuration, passwd-file users user1..userN with passwords
 * pass1..passN, Maildir in a temporary directory, and a CA and server
 * certificate made with the openssl command for the test (SAN IP:127.0.0.1
 * and DNS:localhost).
 *
 * Listeners on 127.0.0.1: "plain" (plaintext and STARTTLS on one port) and
 * "tls" (implicit TLS). Dovecot cannot listen on port 0, so free ports are
 * asked of the kernel and the start is retried when Dovecot fails to bind.
 *
 * Dovecot's master must start as root; its mail processes run as uid 65534,
 * so the instance's directory is made traversable (0755) and the Maildir
 * root belongs to that uid. Mail is delivered with `doveadm save`, which
 * keeps the bytes given (CRLF messages are served as they were saved), or
 * with dovecot-lda into a named mailbox. Dovecot announces new mail to IDLE
 * about 0.5 s after delivery, by design.
 *
 * The one namespace (INBOX, Maildir "." hierarchy separator) declares a
 * mailbox Junk with special_use \Junk (RFC 6154), not auto-created: LIST
 * shows it, with its attribute, once dovecot_mailbox() creates it. With
 * mailbox_list_index = yes Dovecot announces NOTIFY (RFC 5465; without the
 * index it does not), so a NOTIFY SET session hears of new mail in another
 * mailbox as "* STATUS <mb> (... UIDNEXT ...)". Measured on Dovecot 2.3.19:
 * EXAMINE with (QRESYNC ...) needs ENABLE QRESYNC first, and a doveadm
 * rename of a watched mailbox sends a NOTIFY session nothing.
 *
 * Every wait polls with a deadline; the server is stopped by its PID.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_DOVECOT_H
#define TESTS_INTEGRATION_DOVECOT_H

#include <stddef.h>
#include <sys/types.h>

struct dovecot {
    pid_t pid;
    char dir[256];     /* mkdtemp, 0755; removed by dovecot_stop() */
    char conf[320];    /* dir/dovecot.conf */
    char ca_file[320]; /* dir/ca.crt: the CA that signed the server's certificate */
    int port_plain;    /* plaintext + STARTTLS */
    int port_tls;      /* implicit TLS */
    int users;
    char introspect[256]; /* oauth2 passdb: the introspection URL, "" when off */
    int port_lmtp;        /* dovecot_start_mta(): LMTP (RFC 2033), users by local part */
    int port_auth;        /* dovecot_start_mta(): the auth service for an MTA's SASL */
};

/* 1 when dovecot and doveadm are installed and we run as root (Dovecot's
 * master needs it); tests skip otherwise, saying why. */
int dovecot_available(char *why, size_t whylen);

/* In a cmocka test: skips it, saying why, unless ok (dovecot_available()'s
 * answer). */
#define DOVECOT_NEED(ok, why)                        \
    do {                                             \
        if (!(ok)) {                                 \
            fprintf(stderr, "skipped: %s\n", (why)); \
            skip();                                  \
        }                                            \
    } while (0)

/* Makes the instance with users user1..user<users> and starts it; waits
 * (10 s deadline) until the plain port greets. Returns 0 or -1 with a
 * message on stderr. */
int dovecot_start(struct dovecot *d, int users);

/* As dovecot_start(), with an oauth2 passdb first (mechanisms XOAUTH2 and
 * OAUTHBEARER, RFC 7628) that validates access tokens by POSTing them to
 * introspect_url (RFC 7662; "active": true and "username" the login name)
 * without caching them; PLAIN and LOGIN still work with the passwd-file
 * users. */
int dovecot_start_oauth2(struct dovecot *d, int users, const char *introspect_url);

/* As dovecot_start_oauth2() (introspect_url "" for no oauth2 passdb), with
 * two more listeners on 127.0.0.1 for an MTA (postfix.h): LMTP, where
 * user<i>@<any domain> is user<i>'s INBOX, and Dovecot's auth service, for
 * the MTA's SMTP AUTH (Postfix's smtpd_sasl_type = dovecot; with the oauth2
 * passdb it offers XOAUTH2 and OAUTHBEARER too). A mailbox is named by the
 * login's local part, so the IMAP login "user<i>@example.com" (an OAuth2
 * token's username), "user<i>" and LMTP's recipient "user<i>@example.com"
 * share one INBOX. */
int dovecot_start_mta(struct dovecot *d, int users, const char *introspect_url);

/* Stops Dovecot by its PID (SIGTERM, then SIGKILL after 5 s), waits for it
 * and removes its directory. Safe to call twice. */
void dovecot_stop(struct dovecot *d);

/* Saves msg[0..n) into user's INBOX with doveadm save. Returns 0 or -1. */
int dovecot_deliver(const struct dovecot *d, const char *user, const void *msg, size_t n);

/* Runs `doveadm fetch -u user '<fields>' mailbox INBOX all` and returns its
 * output in out (NUL-terminated, truncated to outlen). Returns 0 or -1. */
int dovecot_fetch(const struct dovecot *d, const char *user, const char *fields, char *out,
                  size_t outlen);

/* Adds flag (e.g. "\\Deleted") to every message in user's INBOX, as the
 * user's own client would. Returns 0 or -1. */
int dovecot_flag_all(const struct dovecot *d, const char *user, const char *flag);

/* The UIDVALIDITY of user's INBOX (doveadm mailbox status), or 0. */
unsigned long dovecot_uidvalidity(const struct dovecot *d, const char *user);

/*
 * Delivers msg[0..n) to user's mailbox as an MTA would, with
 * `dovecot-lda -d user -m mailbox` (Sieve-less LDA; "INBOX" gives what
 * dovecot_deliver() gives). A mailbox that does not exist is not created:
 * the mail goes to INBOX and this still returns 0. Returns 0 or -1.
 */
int dovecot_deliver_to(const struct dovecot *d, const char *user, const char *mailbox,
                       const void *msg, size_t n);

/* `doveadm mailbox <op> -u user a [b]`: op "create" or "delete" (a, with
 * its mail) or "rename" (a to b). Returns 0 or -1 (message on stderr). */
int dovecot_mailbox(const struct dovecot *d, const char *user, const char *op, const char *a,
                    const char *b);

/* Reads mailbox's UIDNEXT and message count (doveadm mailbox status) into
 * *uidnext and *messages (either may be NULL). Returns 0, or -1 when the
 * mailbox does not exist or doveadm fails. */
int dovecot_status(const struct dovecot *d, const char *user, const char *mailbox,
                   unsigned long *uidnext, unsigned long *messages);

#endif
