/*
 * Integration harness for superimap-fake-imapd (see fakeimap.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/fakeimap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>


/* Slower under valgrind and friends. */
static int deadline_ms(void)
{
    return harness_prefixed() ? 60000 : 10000;
}

/* Runs argv to completion with its output appended to log; returns its exit
 * code or -1. */
static int run(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int fakeimap_prepare(struct fakeimap *f, int with_cert)
{
    memset(f, 0, sizeof *f);
    f->ctl_fd = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/superimap-fake-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        perror("mkdtemp");
        f->dir[0] = '\0';
        return -1;
    }
    snprintf(f->control, sizeof f->control, "%s/control.sock", f->dir);
    snprintf(f->proc.log, sizeof f->proc.log, "%s/fake-imapd.log", f->dir);
    if (!with_cert)
        return 0;
    snprintf(f->cert, sizeof f->cert, "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof f->key, "%s/key.pem", f->dir);
    char log[320];
    snprintf(log, sizeof log, "%s/openssl.log", f->dir);
    const char *argv[] = {"openssl",
                          "req",
                          "-x509",
                          "-newkey",
                          "ec",
                          "-pkeyopt",
                          "ec_paramgen_curve:prime256v1",
                          "-nodes",
                          "-keyout",
                          f->key,
                          "-out",
                          f->cert,
                          "-days",
                          "2",
                          "-subj",
                          "/CN=localhost",
                          "-addext",
                          "subjectAltName=DNS:localhost,IP:127.0.0.1",
                          NULL};
    if (run(argv, log) != 0) {
        fprintf(stderr, "openssl req failed (is the openssl package installed?); see %s\n", log);
        f->cert[0] = f->key[0] = '\0';
        return -1;
    }
    return 0;
}

static int ctl_connect(struct fakeimap *f)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(f->control);
    if (n >= sizeof sa.sun_path) {
        close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, f->control, n + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    int ms = deadline_ms();
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_exact(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one reply line (newline removed) into out. 0 or -1. */
static int read_line(int fd, char *out, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        if (read_exact(fd, &ch, 1) < 0)
            return -1;
        if (ch == '\n')
            break;
        if (n + 1 < cap)
            out[n++] = ch;
    }
    out[n] = '\0';
    return 0;
}

/* Sends head (+ body) and reads the reply line. */
static int exchange(struct fakeimap *f, const char *head, const void *body, size_t n, char *reply,
                    size_t replylen)
{
    if (f->ctl_fd < 0 && (f->ctl_fd = ctl_connect(f)) < 0) {
        fprintf(stderr, "fakeimap: cannot connect to %s: %s\n", f->control, strerror(errno));
        return -1;
    }
    if (write_all(f->ctl_fd, head, strlen(head)) < 0 || write_all(f->ctl_fd, "\n", 1) < 0 ||
        (n > 0 && write_all(f->ctl_fd, body, n) < 0) || read_line(f->ctl_fd, reply, replylen) < 0) {
        fprintf(stderr, "fakeimap: control request '%.40s' failed: %s\n", head, strerror(errno));
        close(f->ctl_fd);
        f->ctl_fd = -1;
        return -1;
    }
    if (strncmp(reply, "OK", 2) == 0)
        return 0;
    return strncmp(reply, "ERR", 3) == 0 ? 1 : -1;
}

int fakeimap_request(struct fakeimap *f, const char *request, char *reply, size_t replylen)
{
    return exchange(f, request, NULL, 0, reply, replylen);
}

/* Parses the PORTS reply into f->listeners. */
static int read_ports(struct fakeimap *f)
{
    char reply[4096];
    if (fakeimap_request(f, "PORTS", reply, sizeof reply) != 0)
        return -1;
    f->nlisteners = 0;
    char *save = NULL;
    for (char *w = strtok_r(reply + 2, " ", &save);
         w != NULL && f->nlisteners < FAKEIMAP_MAX_LISTENERS; w = strtok_r(NULL, " ", &save)) {
        struct fakeimap_listener *l = &f->listeners[f->nlisteners];
        char *slash = strrchr(w, '/');
        char *colon = strrchr(w, ':');
        if (slash == NULL || colon == NULL || colon > slash)
            return -1;
        *slash = '\0';
        *colon = '\0';
        const char *host = w;
        if (host[0] == '[') { /* [v6] */
            host++;
            char *close_br = strchr(host, ']');
            if (close_br != NULL)
                *close_br = '\0';
        }
        snprintf(l->host, sizeof l->host, "%s", host);
        l->port = atoi(colon + 1);
        l->is_tls = strcmp(slash + 1, "implicit") == 0;
        f->nlisteners++;
    }
    return f->nlisteners > 0 ? 0 : -1;
}

int fakeimap_start(struct fakeimap *f, const char *const *extra)
{
    static char vars[3][512];
    snprintf(vars[0], sizeof vars[0], "SUPERIMAP_FAKE_CONTROL=%s", f->control);
    snprintf(vars[1], sizeof vars[1], "SUPERIMAP_FAKE_CERT=%s", f->cert);
    snprintf(vars[2], sizeof vars[2], "SUPERIMAP_FAKE_KEY=%s", f->key);
    const char *base[] = {vars[0], "SUPERIMAP_FAKE_ADDRS=127.0.0.1", "SUPERIMAP_FAKE_PORT=0",
                          f->cert[0] ? vars[1] : NULL, f->cert[0] ? vars[2] : NULL};
    if (harness_spawn_binary(&f->proc, "superimap-fake-imapd", base, sizeof base / sizeof base[0],
                             extra) < 0)
        return -1;

    long long deadline = harness_now_ms() + deadline_ms();
    while (harness_now_ms() < deadline) {
        if (harness_proc_wait(&f->proc, 0) == 0) {
            fprintf(stderr, "superimap-fake-imapd exited with %d at start; log %s\n",
                    f->proc.exit_code, f->proc.log);
            return -1;
        }
        int fd = ctl_connect(f);
        if (fd >= 0) {
            f->ctl_fd = fd;
            char reply[64];
            if (fakeimap_request(f, "PING", reply, sizeof reply) == 0 && read_ports(f) == 0)
                return 0;
            fprintf(stderr, "fakeimap: control channel answered badly; log %s\n", f->proc.log);
            harness_proc_stop(&f->proc);
            return -1;
        }
        harness_poll_pause();
    }
    fprintf(stderr, "superimap-fake-imapd did not open %s in time; log %s\n", f->control,
            f->proc.log);
    harness_proc_stop(&f->proc);
    return -1;
}

int fakeimap_stop(struct fakeimap *f, int keep_dir)
{
    if (f->ctl_fd >= 0) {
        close(f->ctl_fd);
        f->ctl_fd = -1;
    }
    int code = -1;
    if (f->proc.pid > 0) {
        if (!f->proc.exited)
            harness_proc_signal(&f->proc, SIGTERM);
        if (harness_proc_wait(&f->proc, deadline_ms()) < 0) {
            fprintf(stderr, "superimap-fake-imapd did not stop on SIGTERM; killing it\n");
            harness_proc_stop(&f->proc);
        }
        code = f->proc.exit_code;
        f->proc.pid = 0;
    }
    if (!keep_dir && f->dir[0] != '\0') {
        const char *argv[] = {"rm", "-rf", f->dir, NULL};
        run(argv, "/dev/null");
        f->dir[0] = '\0';
    }
    return code;
}

int fakeimap_port(const struct fakeimap *f, int tls, int index, const char **host)
{
    for (int i = 0; i < f->nlisteners; i++) {
        if (f->listeners[i].is_tls != (tls != 0) || index-- > 0)
            continue;
        if (host != NULL)
            *host = f->listeners[i].host;
        return f->listeners[i].port;
    }
    return -1;
}

int fakeimap_append(struct fakeimap *f, const char *user, const void *msg, size_t n, uint32_t *uid)
{
    char head[256], reply[256];
    snprintf(head, sizeof head, "APPEND %s %zu", user, n);
    if (exchange(f, head, msg, n, reply, sizeof reply) != 0)
        return -1;
    if (uid != NULL)
        *uid = (uint32_t)strtoul(reply + 3, NULL, 10);
    return 0;
}

int fakeimap_set_uidvalidity(struct fakeimap *f, const char *user, uint32_t v)
{
    char req[256], reply[256];
    snprintf(req, sizeof req, "UIDVALIDITY %s %u", user, (unsigned)v);
    return fakeimap_request(f, req, reply, sizeof reply) == 0 ? 0 : -1;
}

int fakeimap_kick(struct fakeimap *f, const char *user)
{
    char req[256], reply[256];
    snprintf(req, sizeof req, "KICK %s", user);
    if (fakeimap_request(f, req, reply, sizeof reply) != 0)
        return -1;
    return atoi(reply + 3);
}

int fakeimap_faults(struct fakeimap *f, double rate, unsigned seed, const char *list)
{
    char req[512], reply[256];
    snprintf(req, sizeof req, "FAULTS %g %u %s", rate, seed, list);
    return fakeimap_request(f, req, reply, sizeof reply) == 0 ? 0 : -1;
}

int fakeimap_reset(struct fakeimap *f)
{
    char reply[256];
    return fakeimap_request(f, "RESET", reply, sizeof reply) == 0 ? 0 : -1;
}

/* The value of " name=" in a reply line, or -1. */
static long long field(const char *reply, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, " %s=", name);
    const char *p = strstr(reply, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

long long fakeimap_stat(struct fakeimap *f, const char *name)
{
    char reply[4096];
    if (fakeimap_request(f, "STATS", reply, sizeof reply) != 0)
        return -1;
    return field(reply, name);
}

int fakeimap_sessions(struct fakeimap *f, const char *user, int *current, int *max)
{
    char req[256], reply[256];
    snprintf(req, sizeof req, "SESSIONS %s", user);
    if (fakeimap_request(f, req, reply, sizeof reply) != 0)
        return -1;
    *current = (int)field(reply, "current");
    *max = (int)field(reply, "max");
    return 0;
}

int fakeimap_is_seen(struct fakeimap *f, const char *user, uint32_t uid)
{
    char req[256], reply[256];
    snprintf(req, sizeof req, "FLAGS %s %u", user, (unsigned)uid);
    if (fakeimap_request(f, req, reply, sizeof reply) != 0)
        return -1;
    return strstr(reply, "\\Seen") != NULL;
}

int fakeimap_message(struct fakeimap *f, const char *user, uint32_t uid, char **data, size_t *n)
{
    char req[256], reply[256];
    snprintf(req, sizeof req, "MESSAGE %s %u", user, (unsigned)uid);
    if (fakeimap_request(f, req, reply, sizeof reply) != 0)
        return -1;
    size_t len = strtoul(reply + 3, NULL, 10);
    char *p = malloc(len + 1);
    if (p == NULL || read_exact(f->ctl_fd, p, len) < 0) {
        free(p);
        close(f->ctl_fd);
        f->ctl_fd = -1;
        return -1;
    }
    p[len] = '\0';
    *data = p;
    *n = len;
    return 0;
}

int fakeimap_wait_stat(struct fakeimap *f, const char *name, long long value, int ms)
{
    long long deadline = harness_now_ms() + ms;
    do {
        long long v = fakeimap_stat(f, name);
        if (v >= value)
            return 0;
        if (v < 0)
            return -1;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    return -1;
}

/* Appends name to out (cap bytes) percent-encoded as the control channel
 * wants mailbox names (cmd/fake-imapd/control.c); -1 when it does not fit. */
static int put_name(char *out, size_t cap, const char *name)
{
    size_t w = strlen(out);
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        int n = *p <= ' ' || *p == '%' || *p == ',' || *p == 0x7f
                    ? snprintf(out + w, cap - w, "%%%02X", *p)
                    : snprintf(out + w, cap - w, "%c", *p);
        if (n < 0 || (size_t)n >= cap - w)
            return -1;
        w += (size_t)n;
    }
    return 0;
}

int fakeimap_append_to(struct fakeimap *f, const char *user, const char *mailbox, const void *msg,
                       size_t n, uint32_t *uid)
{
    char head[1024], reply[256];
    snprintf(head, sizeof head, "APPENDTO %s ", user);
    if (put_name(head, sizeof head, mailbox) < 0 ||
        snprintf(head + strlen(head), sizeof head - strlen(head), " %zu", n) < 0 ||
        exchange(f, head, msg, n, reply, sizeof reply) != 0)
        return -1;
    if (uid != NULL)
        *uid = (uint32_t)strtoul(reply + 3, NULL, 10);
    return 0;
}

int fakeimap_append_labels(struct fakeimap *f, const char *user, const char *const *labels,
                           size_t nlabels, const void *msg, size_t n, uint64_t *msgid,
                           uint32_t *uids)
{
    char head[4096], reply[1024];
    snprintf(head, sizeof head, "APPENDLABELS %s ", user);
    for (size_t i = 0; i < nlabels; i++) {
        size_t len = strlen(head);
        if (i > 0 && len + 1 < sizeof head) {
            head[len] = ','; /* the separator; a ',' inside a label is encoded */
            head[len + 1] = '\0';
        }
        if (put_name(head, sizeof head, labels[i]) < 0)
            return -1;
    }
    snprintf(head + strlen(head), sizeof head - strlen(head), " %zu", n);
    if (exchange(f, head, msg, n, reply, sizeof reply) != 0)
        return -1;
    char *p = reply + 3;
    unsigned long long id = strtoull(p, &p, 10);
    if (msgid != NULL)
        *msgid = id;
    for (size_t i = 0; i < nlabels; i++) {
        unsigned long u = strtoul(p, &p, 10);
        if (uids != NULL)
            uids[i] = (uint32_t)u;
    }
    return 0;
}

int fakeimap_mailbox(struct fakeimap *f, const char *user, const char *op, const char *a,
                     const char *b, const char *special_use)
{
    char req[1024], reply[256];
    char verb[16];
    size_t i;
    for (i = 0; op[i] != '\0' && i + 1 < sizeof verb; i++)
        verb[i] = (char)(op[i] >= 'a' && op[i] <= 'z' ? op[i] - 'a' + 'A' : op[i]);
    verb[i] = '\0';
    snprintf(req, sizeof req, "MAILBOX %s %s ", user, verb);
    if (put_name(req, sizeof req, a) < 0)
        return -1;
    if (b != NULL && (snprintf(req + strlen(req), sizeof req - strlen(req), " ") < 0 ||
                      put_name(req, sizeof req, b) < 0))
        return -1;
    if (special_use != NULL)
        snprintf(req + strlen(req), sizeof req - strlen(req), " %s", special_use);
    return fakeimap_request(f, req, reply, sizeof reply) == 0 ? 0 : -1;
}

int fakeimap_expunge(struct fakeimap *f, const char *user, const char *mailbox, uint32_t uid)
{
    char req[1024], reply[256];
    snprintf(req, sizeof req, "EXPUNGE %s ", user);
    if (put_name(req, sizeof req, mailbox) < 0)
        return -1;
    snprintf(req + strlen(req), sizeof req - strlen(req), " %u", (unsigned)uid);
    return fakeimap_request(f, req, reply, sizeof reply) == 0 ? 0 : -1;
}

int fakeimap_profiles(struct fakeimap *f, const char *list)
{
    char req[256], reply[256];
    snprintf(req, sizeof req, "PROFILES %s", list);
    return fakeimap_request(f, req, reply, sizeof reply) == 0 ? 0 : -1;
}

long long fakeimap_info(struct fakeimap *f, const char *user, const char *mailbox, const char *name)
{
    char req[1024], reply[512];
    snprintf(req, sizeof req, "INFO %s ", user);
    if (put_name(req, sizeof req, mailbox) < 0 ||
        fakeimap_request(f, req, reply, sizeof reply) != 0)
        return -1;
    return field(reply, name);
}
