/*
 * A private Dovecot for the watcher's interop tests (see dovecot.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/dovecot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define MAIL_UID 65534 /* nobody: Dovecot's mail processes run as this */

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs argv with stdin from in[0..inlen) (may be NULL) and stdout+stderr to
 * out (may be NULL); waits up to 20 s. Returns the exit code or -1. */
static int run(const char *const *argv, const void *in, size_t inlen, char *out, size_t outlen)
{
    int pin[2], pout[2];
    if (pipe(pin) < 0)
        return -1;
    if (pipe(pout) < 0) {
        close(pin[0]);
        close(pin[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(pout[1], 2);
        close(pin[0]);
        close(pin[1]);
        close(pout[0]);
        close(pout[1]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    size_t off = 0;
    while (in != NULL && off < inlen) {
        ssize_t w = write(pin[1], (const char *)in + off, inlen - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(pin[1]);
    size_t got = 0;
    char sink[4096];
    for (;;) {
        char *dst = out != NULL && got + 1 < outlen ? out + got : sink;
        size_t cap = out != NULL && got + 1 < outlen ? outlen - got - 1 : sizeof sink;
        ssize_t r = read(pout[0], dst, cap);
        if (r <= 0)
            break;
        if (dst != sink)
            got += (size_t)r;
    }
    if (out != NULL && outlen > 0)
        out[got] = '\0';
    close(pout[0]);
    int status;
    long long deadline = harness_now_ms() + 20000;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (harness_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        pause_ms(5);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int dovecot_available(char *why, size_t whylen)
{
    if (geteuid() != 0) {
        snprintf(why, whylen, "Dovecot's master must start as root");
        return 0;
    }
    const char *check[] = {"sh", "-c",
                           "command -v dovecot && command -v doveadm && "
                           "command -v openssl",
                           NULL};
    if (run(check, NULL, 0, NULL, 0) != 0) {
        snprintf(why, whylen, "dovecot, doveadm or openssl missing (Debian: dovecot-imapd)");
        return 0;
    }
    return 1;
}

static int make_certs(const struct dovecot *d)
{
    char script[2048];
    snprintf(script, sizeof script,
             "set -e; cd '%s'; "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.crt -subj /CN=superimap-test-ca -days 2; "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout server.key -out server.csr -subj /CN=localhost; "
             "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf; "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out server.crt -days 2 -extfile ext.cnf; chmod 0644 server.key",
             d->dir);
    const char *argv[] = {"sh", "-c", script, NULL};
    char out[4096];
    int rc = run(argv, NULL, 0, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "dovecot: cannot make certificates:\n%s\n", out);
    return rc == 0 ? 0 : -1;
}

/* The oauth2 passdb's file and its dovecot.conf lines, in passdb (cap
 * bytes); "" when d has no introspection URL. 0 or -1. */
static int oauth2_passdb(const struct dovecot *d, char *passdb, size_t cap)
{
    passdb[0] = '\0';
    if (d->introspect[0] == '\0')
        return 0;
    char path[400], text[1024];
    snprintf(path, sizeof path, "%s/dovecot-oauth2.conf.ext", d->dir);
    snprintf(text, sizeof text,
             "introspection_mode = post\n"
             "introspection_url = %s\n"
             "force_introspection = yes\n"
             "username_attribute = username\n"
             "active_attribute = active\n"
             "active_value = true\n",
             d->introspect);
    if (harness_write_file(path, text) < 0)
        return -1;
    snprintf(passdb, cap,
             "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
             "  args = %s\n}\n",
             path);
    return 0;
}

/* The LMTP and auth listeners of dovecot_start_mta(), in mta (cap bytes);
 * "" without them. */
static void mta_listeners(const struct dovecot *d, char *mta, size_t cap)
{
    mta[0] = '\0';
    if (d->port_lmtp <= 0)
        return;
    snprintf(mta, cap,
             "service lmtp {\n"
             "  inet_listener lmtp {\n    address = 127.0.0.1\n    port = %d\n  }\n"
             "}\n"
             "protocol lmtp {\n  auth_username_format = %%Ln\n}\n"
             "service auth {\n"
             "  inet_listener {\n    address = 127.0.0.1\n    port = %d\n  }\n"
             "}\n",
             d->port_lmtp, d->port_auth);
}

static int write_config(struct dovecot *d)
{
    char path[400], text[8192], oauth2[1024], mta[1024];
    /* With an MTA, LMTP delivers to the recipient's local part (%Ln): IMAP
     * logins' mailboxes are named by theirs too, "user1@example.com" (an
     * OAuth2 token's user) and "user1" alike. */
    const char *box = d->port_lmtp > 0 ? "%Ln" : "%u";
    if (oauth2_passdb(d, oauth2, sizeof oauth2) < 0)
        return -1;
    mta_listeners(d, mta, sizeof mta);
    snprintf(path, sizeof path, "%s/passwd", d->dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    for (int i = 1; i <= d->users; i++)
        fprintf(f, "user%d:{PLAIN}pass%d::::::\n", i, i);
    if (fclose(f) != 0)
        return -1;
    snprintf(text, sizeof text,
             "base_dir = %s/run\n"
             "state_dir = %s/state\n"
             "log_path = %s/dovecot.log\n"
             "protocols = imap%s\n"
             "listen = 127.0.0.1\n"
             "ssl = yes\n"
             "ssl_cert = <%s/server.crt\n"
             "ssl_key = <%s/server.key\n"
             "ssl_min_protocol = TLSv1.2\n"
             "disable_plaintext_auth = no\n"
             "auth_mechanisms = plain login%s\n"
             "auth_cache_size = 0\n"
             "auth_failure_delay = 0\n"
             "first_valid_uid = 1\n"
             "mail_location = maildir:%s/mail/%s\n"
             "mailbox_list_index = yes\n"
             "namespace inbox {\n  inbox = yes\n"
             "  mailbox Junk {\n    special_use = \\Junk\n  }\n}\n"
             "default_login_user = dovenull\n"
             "default_internal_user = dovecot\n"
             "%s"
             "passdb {\n  driver = passwd-file\n"
             "  args = scheme=PLAIN username_format=%%u %s/passwd\n}\n"
             "userdb {\n  driver = static\n"
             "  args = uid=%d gid=%d home=%s/mail/%s%s\n}\n"
             "service imap-login {\n"
             "  inet_listener imap {\n    address = 127.0.0.1\n    port = %d\n  }\n"
             "  inet_listener imaps {\n    address = 127.0.0.1\n    port = %d\n    ssl = yes\n  }\n"
             "}\n%s",
             d->dir, d->dir, d->dir, mta[0] ? " lmtp" : "", d->dir, d->dir,
             oauth2[0] ? " xoauth2 oauthbearer" : "", d->dir, box, oauth2, d->dir, MAIL_UID,
             MAIL_UID, d->dir, box, oauth2[0] ? " allow_all_users=yes" : "", d->port_plain,
             d->port_tls, mta);
    return harness_write_file(d->conf, text);
}

/* 1 when a TCP connection to port gets a greeting with a CAPABILITY. */
static int greets(int port)
{
    int fd = harness_connect_loopback(port);
    if (fd < 0)
        return 0;
    int ok = 0;
    char buf[1024];
    size_t got = 0;
    long long deadline = harness_now_ms() + 1500;
    while (got + 1 < sizeof buf && harness_now_ms() < deadline) {
        ssize_t r = read(fd, buf + got, sizeof buf - got - 1);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "[CAPABILITY")) {
            ok = 1;
            break;
        }
    }
    close(fd);
    return ok;
}

static int spawn(struct dovecot *d)
{
    char out[400];
    snprintf(out, sizeof out, "%s/dovecot.out", d->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("dovecot", "dovecot", "-F", "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            d->pid = 0;
            return -1; /* exited: a port was taken, most likely */
        }
        if (greets(d->port_plain))
            return 0;
        pause_ms(20);
    }
    return -1;
}

static int start(struct dovecot *d, int users, const char *introspect_url, int mta);

int dovecot_start(struct dovecot *d, int users)
{
    return start(d, users, "", 0);
}

int dovecot_start_oauth2(struct dovecot *d, int users, const char *introspect_url)
{
    return start(d, users, introspect_url, 0);
}

int dovecot_start_mta(struct dovecot *d, int users, const char *introspect_url)
{
    return start(d, users, introspect_url, 1);
}

static int start(struct dovecot *d, int users, const char *introspect_url, int mta)
{
    memset(d, 0, sizeof *d);
    d->users = users;
    snprintf(d->introspect, sizeof d->introspect, "%s", introspect_url);
    const char *tmp = getenv("TMPDIR");
    snprintf(d->dir, sizeof d->dir, "%s/superimap-dovecot-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(d->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    chmod(d->dir, 0755); /* the mail uid walks through it */
    snprintf(d->conf, sizeof d->conf, "%s/dovecot.conf", d->dir);
    snprintf(d->ca_file, sizeof d->ca_file, "%s/ca.crt", d->dir);
    char path[400];
    snprintf(path, sizeof path, "%s/mail", d->dir);
    if (mkdir(path, 0755) < 0 || chown(path, MAIL_UID, MAIL_UID) < 0) {
        perror("dovecot: mail dir");
        return -1;
    }
    if (make_certs(d) < 0)
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        d->port_plain = harness_free_port();
        d->port_tls = harness_free_port();
        if (d->port_plain <= 0 || d->port_tls <= 0 || d->port_plain == d->port_tls)
            continue;
        if (mta) {
            d->port_lmtp = harness_free_port();
            d->port_auth = harness_free_port();
            if (d->port_lmtp <= 0 || d->port_auth <= 0 || d->port_lmtp == d->port_auth ||
                d->port_lmtp == d->port_plain || d->port_lmtp == d->port_tls ||
                d->port_auth == d->port_plain || d->port_auth == d->port_tls)
                continue;
        }
        if (write_config(d) < 0) {
            fprintf(stderr, "dovecot: cannot write the configuration\n");
            return -1;
        }
        if (spawn(d) == 0)
            return 0;
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = 0;
        }
    }
    fprintf(stderr, "dovecot did not start; see %s/dovecot.log and dovecot.out\n", d->dir);
    return -1;
}

void dovecot_stop(struct dovecot *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        long long deadline = harness_now_ms() + 5000;
        int done = 0;
        while (!done && harness_now_ms() < deadline) {
            if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
                done = 1;
            else
                pause_ms(10);
        }
        if (!done) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
        }
        d->pid = 0;
    }
    const char *keep = getenv("SUPERIMAP_TEST_KEEP");
    if (d->dir[0] != '\0' && keep != NULL && strcmp(keep, "1") == 0) {
        fprintf(stderr, "SUPERIMAP_TEST_KEEP: kept %s (Dovecot's configuration and logs)\n",
                d->dir);
        d->dir[0] = '\0';
    }
    if (d->dir[0] != '\0') {
        const char *argv[] = {"rm", "-rf", d->dir, NULL};
        run(argv, NULL, 0, NULL, 0);
        d->dir[0] = '\0';
    }
}

int dovecot_deliver(const struct dovecot *d, const char *user, const void *msg, size_t n)
{
    const char *argv[] = {"doveadm", "-c", d->conf, "save", "-u", user, "-m", "INBOX", NULL};
    char out[2048];
    int rc = run(argv, msg, n, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "doveadm save failed (%d): %s\n", rc, out);
    return rc == 0 ? 0 : -1;
}

int dovecot_deliver_to(const struct dovecot *d, const char *user, const char *mailbox,
                       const void *msg, size_t n)
{
    const char *argv[] = {
        "/usr/lib/dovecot/dovecot-lda", "-c", d->conf, "-d", user, "-m", mailbox, NULL};
    char out[2048];
    int rc = run(argv, msg, n, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "dovecot-lda -m %s failed (%d): %s\n", mailbox, rc, out);
    return rc == 0 ? 0 : -1;
}

int dovecot_mailbox(const struct dovecot *d, const char *user, const char *op, const char *a,
                    const char *b)
{
    int two = strcmp(op, "rename") == 0;
    if ((!two && strcmp(op, "create") != 0 && strcmp(op, "delete") != 0) || a == NULL ||
        (two && b == NULL)) {
        fprintf(stderr, "dovecot_mailbox: bad arguments (%s)\n", op);
        return -1;
    }
    const char *argv[] = {"doveadm", "-c", d->conf, "mailbox",      op,
                          "-u",      user, a,       two ? b : NULL, NULL};
    char out[1024];
    int rc = run(argv, NULL, 0, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "doveadm mailbox %s failed (%d): %s\n", op, rc, out);
    return rc == 0 ? 0 : -1;
}

/* The number after "name=" in doveadm's key=value output, or -1. */
static long long status_field(const char *out, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(out, name); p != NULL; p = strstr(p + 1, name)) {
        if ((p == out || p[-1] == ' ' || p[-1] == '\t') && p[n] == '=')
            return strtoll(p + n + 1, NULL, 10);
    }
    return -1;
}

int dovecot_status(const struct dovecot *d, const char *user, const char *mailbox,
                   unsigned long *uidnext, unsigned long *messages)
{
    const char *argv[] = {"doveadm",          "-c",    d->conf, "mailbox", "status", "-u", user,
                          "uidnext messages", mailbox, NULL};
    char out[512];
    if (run(argv, NULL, 0, out, sizeof out) != 0)
        return -1;
    long long u = status_field(out, "uidnext"), m = status_field(out, "messages");
    if (u < 0 || m < 0)
        return -1;
    if (uidnext != NULL)
        *uidnext = (unsigned long)u;
    if (messages != NULL)
        *messages = (unsigned long)m;
    return 0;
}

int dovecot_fetch(const struct dovecot *d, const char *user, const char *fields, char *out,
                  size_t outlen)
{
    const char *argv[] = {"doveadm", "-c",      d->conf, "fetch", "-u", user,
                          fields,    "mailbox", "INBOX", "all",   NULL};
    return run(argv, NULL, 0, out, outlen) == 0 ? 0 : -1;
}

int dovecot_flag_all(const struct dovecot *d, const char *user, const char *flag)
{
    const char *argv[] = {"doveadm", "-c", d->conf,   "flags", "add", "-u",
                          user,      flag, "mailbox", "INBOX", "all", NULL};
    char out[256];
    return run(argv, NULL, 0, out, sizeof out) == 0 ? 0 : -1;
}

unsigned long dovecot_uidvalidity(const struct dovecot *d, const char *user)
{
    const char *argv[] = {"doveadm", "-c", d->conf,       "mailbox", "status",
                          "-u",      user, "uidvalidity", "INBOX",   NULL};
    char out[256];
    if (run(argv, NULL, 0, out, sizeof out) != 0)
        return 0;
    const char *p = strstr(out, "uidvalidity=");
    return p != NULL ? strtoul(p + 12, NULL, 10) : 0;
}
