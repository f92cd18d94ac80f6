/*
 * A private Postfix (Debian's postfix) for the tracer tests: its own
 * configuration directory, queue and log in a temporary directory, one
 * submission listener on 127.0.0.1 with SMTP AUTH through a test Dovecot's
 * auth service (smtpd_sasl_type = dovecot; PLAIN, LOGIN and, with an oauth2
 * passdb, XOAUTH2) that relays only for authenticated clients, and delivery
 * of every domain's mail to that Dovecot over LMTP (dovecot_start_mta()).
 *
 * The master runs in the foreground (master -d), so it is the PID we start
 * and stop; nothing of the system's Postfix is used or touched (Debian's
 * package installed with "No configuration" has none running). Postfix cannot
 * listen on port 0: a free port is asked of the kernel and the start retried
 * when the bind fails.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_POSTFIX_H
#define TESTS_INTEGRATION_POSTFIX_H

#include <stddef.h>
#include <sys/types.h>

struct dovecot;

struct postfix {
    pid_t pid;     /* the master's */
    char dir[256]; /* mkdtemp, 0755: main.cf, master.cf, queue/, data/, maillog */
    char log[320]; /* dir/maillog */
    int port;      /* SMTP submission on 127.0.0.1 */
};

/* 1 when Postfix is installed and we run as root (its master needs it);
 * else 0 with why (the package to install; make deps does it). */
int postfix_available(char *why, size_t whylen);

/* Makes the instance relaying to d (started with dovecot_start_mta()) and
 * starts it; waits (10 s deadline) until the port greets with 220. Returns
 * 0 or -1 with a message on stderr. */
int postfix_start(struct postfix *p, const struct dovecot *d);

/* Stops the master by its PID (SIGTERM, then SIGKILL after 5 s), waits for
 * it and removes the directory (kept with SUPERIMAP_TEST_KEEP=1). Safe to
 * call twice. */
void postfix_stop(struct postfix *p);

/* Lines of the mail log that contain needle. */
int postfix_log_count(const struct postfix *p, const char *needle);

#endif
