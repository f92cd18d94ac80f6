/*
 * cmd/api/imap_login.h: the PLAIN connect form's live check of a user name
 * and password: one short, blocking IMAP session from the request's worker
 * thread (connect, implicit TLS or STARTTLS as the provider says, greeting,
 * LOGIN, LOGOUT), each step under a deadline. Commands are proto/imap_cmd's,
 * answers proto/imap_parse's. The password is never logged.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_IMAP_LOGIN_H
#define CMD_API_IMAP_LOGIN_H

#include <stddef.h>

#define IMAP_LOGIN_TIMEOUT_MS 10000 /* the whole check */

/* Where to log in: the provider's host, port and tls (implicit, starttls,
 * none). ca_file: PEM CAs to trust instead of the system's, or NULL. */
struct imap_login_target {
    const char *host;
    int port;
    const char *tls;
    const char *ca_file;
};

enum imap_login_result {
    IMAP_LOGIN_OK,
    IMAP_LOGIN_REFUSED,     /* the server said NO to the credentials */
    IMAP_LOGIN_UNAVAILABLE, /* no connection, TLS failure, timeout, BYE, nonsense */
};

/*
 * Tries user and password at t. Returns the result and, unless OK, a
 * sentence for the person at the form in why (the server's own text for a
 * refusal, its response code in words), NUL-terminated.
 */
enum imap_login_result imap_login_try(const struct imap_login_target *t, const char *user,
                                      const char *password, char *why, size_t whylen);

#endif
