/*
 * A private Postfix for the tracer tests (see postfix.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/postfix.h"

#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/dovecot.h"
#include "tests/integration/harness.h"

#define POSTFIX_CMD    "/usr/sbin/postfix"
#define POSTFIX_MASTER "/usr/lib/postfix/sbin/master" /* Debian's daemon_directory */

int postfix_available(char *why, size_t whylen)
{
    if (geteuid() != 0) {
        snprintf(why, whylen, "Postfix's master must start as root");
        return 0;
    }
    if (access(POSTFIX_CMD, X_OK) != 0 || access(POSTFIX_MASTER, X_OK) != 0 ||
        getpwnam("postfix") == NULL) {
        snprintf(why, whylen,
                 "Postfix missing (Debian: postfix, and dovecot-lmtpd; `make deps` installs "
                 "them, with no system configuration)");
        return 0;
    }
    return 1;
}

static int write_config(const struct postfix *p, const struct dovecot *d)
{
    char path[400], text[4096];
    snprintf(path, sizeof path, "%s/main.cf", p->dir);
    snprintf(text, sizeof text,
             "compatibility_level = 3.6\n"
             "queue_directory = %s/queue\n"
             "data_directory = %s/data\n"
             "maillog_file = %s\n"
             "maillog_file_prefixes = %s\n"
             "mail_owner = postfix\n"
             "inet_interfaces = 127.0.0.1\n"
             "inet_protocols = ipv4\n"
             "myhostname = mta.superimap.test\n"
             "mydomain = superimap.test\n"
             "mydestination =\n"
             "local_recipient_maps =\n"
             "alias_maps =\n"
             "alias_database =\n"
             "biff = no\n"
             "smtputf8_enable = no\n"
             "relay_domains = static:ALL\n"
             "relay_transport = lmtp:inet:127.0.0.1:%d\n"
             "relay_recipient_maps =\n"
             "smtpd_sasl_auth_enable = yes\n"
             "smtpd_sasl_type = dovecot\n"
             "smtpd_sasl_path = inet:127.0.0.1:%d\n"
             "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
             "smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n"
             "smtpd_delay_reject = no\n",
             p->dir, p->dir, p->log, p->dir, d->port_lmtp, d->port_auth);
    if (harness_write_file(path, text) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/master.cf", p->dir);
    snprintf(text, sizeof text,
             "127.0.0.1:%d inet n - n - - smtpd\n"
             "pickup unix n - n 60 1 pickup\n"
             "cleanup unix n - n - 0 cleanup\n"
             "qmgr unix n - n 300 1 qmgr\n"
             "rewrite unix - - n - - trivial-rewrite\n"
             "bounce unix - - n - 0 bounce\n"
             "defer unix - - n - 0 bounce\n"
             "trace unix - - n - 0 bounce\n"
             "verify unix - - n - 1 verify\n"
             "flush unix n - n 1000? 0 flush\n"
             "proxymap unix - - n - - proxymap\n"
             "smtp unix - - n - - smtp\n"
             "relay unix - - n - - smtp\n"
             "showq unix n - n - - showq\n"
             "error unix - - n - - error\n"
             "retry unix - - n - - error\n"
             "discard unix - - n - - discard\n"
             "lmtp unix - - n - - lmtp\n"
             "anvil unix - - n - 1 anvil\n"
             "scache unix - - n - 1 scache\n"
             "postlog unix-dgram n - n - 1 postlogd\n",
             p->port);
    return harness_write_file(path, text);
}

/* 1 when a TCP connection to port gets a "220 " greeting. */
static int greets(int port)
{
    int fd = harness_connect_loopback(port);
    if (fd < 0)
        return 0;
    char buf[512];
    ssize_t r = read(fd, buf, sizeof buf - 1);
    int ok = r >= 4 && memcmp(buf, "220 ", 4) == 0;
    if (ok && write(fd, "QUIT\r\n", 6) < 0)
        ok = 1; /* it greeted: that is all we asked */
    close(fd);
    return ok;
}

/* Runs argv (absolute path first) to its end, its output into the
 * instance's dir/name; 0 when it exits 0 within 20 s. */
static int run(const struct postfix *p, const char *name, const char *const *argv)
{
    struct proc c = {0};
    snprintf(c.log, sizeof c.log, "%s/%s", p->dir, name);
    if (harness_spawn(&c, argv, NULL) < 0)
        return -1;
    if (harness_proc_wait(&c, 20000) < 0) {
        harness_proc_stop(&c);
        return -1;
    }
    return c.exit_code == 0 ? 0 : -1;
}

static int spawn(struct postfix *p)
{
    struct proc m = {0};
    snprintf(m.log, sizeof m.log, "%s/master.out", p->dir);
    const char *argv[] = {POSTFIX_MASTER, "-c", p->dir, "-d", NULL};
    if (harness_spawn(&m, argv, NULL) < 0)
        return -1;
    p->pid = m.pid;
    long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        if (harness_proc_wait(&m, 0) == 0) {
            p->pid = 0;
            return -1; /* exited: the port was taken, most likely */
        }
        if (greets(p->port))
            return 0;
        harness_poll_pause();
    }
    return -1;
}

int postfix_start(struct postfix *p, const struct dovecot *d)
{
    memset(p, 0, sizeof *p);
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof p->dir, "%s/superimap-postfix-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(p->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    chmod(p->dir, 0755); /* Postfix's daemons (user postfix) walk through it */
    snprintf(p->log, sizeof p->log, "%s/maillog", p->dir);
    char path[400];
    snprintf(path, sizeof path, "%s/queue", p->dir);
    if (mkdir(path, 0755) < 0) {
        perror("postfix: queue dir");
        return -1;
    }
    snprintf(path, sizeof path, "%s/data", p->dir);
    const struct passwd *pw = getpwnam("postfix");
    if (pw == NULL || mkdir(path, 0700) < 0 || chown(path, pw->pw_uid, pw->pw_gid) < 0) {
        perror("postfix: data dir");
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        p->port = harness_free_port();
        if (p->port <= 0 || p->port == d->port_plain || p->port == d->port_tls ||
            p->port == d->port_lmtp || p->port == d->port_auth)
            continue;
        if (write_config(p, d) < 0) {
            fprintf(stderr, "postfix: cannot write the configuration\n");
            return -1;
        }
        /* check makes the queue's directories with their owners. */
        const char *check[] = {POSTFIX_CMD, "-c", p->dir, "check", NULL};
        if (attempt == 0 && run(p, "check.out", check) < 0) {
            fprintf(stderr, "postfix check failed; see %s/check.out and %s\n", p->dir, p->log);
            return -1;
        }
        if (spawn(p) == 0)
            return 0;
        if (p->pid > 0) {
            struct proc m = {.pid = p->pid};
            harness_proc_stop(&m);
            p->pid = 0;
        }
    }
    fprintf(stderr, "postfix did not start; see %s and %s/master.out\n", p->log, p->dir);
    return -1;
}

void postfix_stop(struct postfix *p)
{
    if (p->pid > 0) {
        struct proc m = {.pid = p->pid};
        kill(p->pid, SIGTERM);
        if (harness_proc_wait(&m, 5000) < 0)
            harness_proc_stop(&m);
        p->pid = 0;
    }
    const char *keep = getenv("SUPERIMAP_TEST_KEEP");
    if (p->dir[0] != '\0' && keep != NULL && strcmp(keep, "1") == 0) {
        fprintf(stderr, "SUPERIMAP_TEST_KEEP: kept %s (Postfix's configuration and log)\n", p->dir);
        p->dir[0] = '\0';
    }
    if (p->dir[0] != '\0') {
        struct proc rm = {0};
        snprintf(rm.log, sizeof rm.log, "%s/rm.out", p->dir); /* removed with the rest */
        const char *argv[] = {"/bin/rm", "-rf", p->dir, NULL};
        if (harness_spawn(&rm, argv, NULL) == 0 && harness_proc_wait(&rm, 20000) < 0)
            harness_proc_stop(&rm);
        p->dir[0] = '\0';
    }
}

int postfix_log_count(const struct postfix *p, const char *needle)
{
    struct proc view = {0};
    snprintf(view.log, sizeof view.log, "%s", p->log);
    return harness_log_count(&view, needle);
}
