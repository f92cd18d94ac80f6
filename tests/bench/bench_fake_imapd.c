/*
 * Memory per idle connection of superimap-fake-imapd: starts it (from the
 * bin/ directory beside this program's bench/) on 127.0.0.1 and 127.0.0.2,
 * plain and implicit TLS, control socket in a mkdtemp() directory; then for
 * each row (a fresh server each time, so freed memory of an earlier row does
 * not hide growth) opens that many connections spread over both addresses,
 * brings each to a state (greeted only, or logged in as its own user with
 * INBOX examined and IDLE running), checks STATS counts them, reads VmRSS
 * from /proc/<pid>/status and prints
 *
 *   | connections | transport | state | setup s | RSS delta KiB | bytes per connection |
 *
 * The server is stopped with SIGTERM after each row (SIGKILL after 10 s). Nothing is judged: the
 * numbers are for docs/architecture.md section 7's table. Exits non-zero only when the
 * server cannot be started or a connection fails.
 *
 * SPDX-License-Identifier: MIT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tests/bench/bench.h"

#define MAX_CONN 19000
#define NADDR    2

static struct {
    pid_t pid;
    char dir[64];
    char control[100];
    char cert[192], key[192];
    char log[192];
    int ctl;
    int plain_port[NADDR];
    int tls_port[NADDR];
} fake;

static struct conn {
    int fd;
    SSL *ssl;
} conns[MAX_CONN];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One control request; the reply line in out. 0 when it starts with OK. */
static int control(const char *req, char *out, size_t outlen)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%s\n", req);
    if (write(fake.ctl, line, (size_t)n) != n)
        return -1;
    size_t len = 0;
    while (len + 1 < outlen) {
        if (read(fake.ctl, out + len, 1) != 1)
            return -1;
        if (out[len] == '\n')
            break;
        len++;
    }
    out[len] = '\0';
    return strncmp(out, "OK", 2) == 0 ? 0 : -1;
}

static long stat_value(const char *name)
{
    char reply[4096], key[64]; /* the whole line: the per-command counters make it long */
    if (control("STATS", reply, sizeof reply) < 0)
        return -1;
    snprintf(key, sizeof key, " %s=", name);
    const char *p = strstr(reply, key);
    return p ? atol(p + strlen(key)) : -1;
}

static int run(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0
               ? 0
               : -1;
}

static int make_cert(void)
{
    snprintf(fake.dir, sizeof fake.dir, "/tmp/superimap-bench-XXXXXX");
    if (mkdtemp(fake.dir) == NULL)
        return -1;
    snprintf(fake.control, sizeof fake.control, "%s/control.sock", fake.dir);
    snprintf(fake.cert, sizeof fake.cert, "%s/cert.pem", fake.dir);
    snprintf(fake.key, sizeof fake.key, "%s/key.pem", fake.dir);
    snprintf(fake.log, sizeof fake.log, "%s/fake-imapd.log", fake.dir);
    const char *req[] = {"openssl",
                         "req",
                         "-x509",
                         "-newkey",
                         "ec",
                         "-pkeyopt",
                         "ec_paramgen_curve:prime256v1",
                         "-nodes",
                         "-keyout",
                         fake.key,
                         "-out",
                         fake.cert,
                         "-days",
                         "1",
                         "-subj",
                         "/CN=localhost",
                         NULL};
    if (run(req) < 0) {
        fprintf(stderr, "openssl req failed\n");
        return -1;
    }
    return 0;
}

static int start(const char *bin)
{
    static char env[8][256];
    snprintf(env[0], sizeof env[0], "SUPERIMAP_FAKE_CONTROL=%s", fake.control);
    snprintf(env[1], sizeof env[1], "SUPERIMAP_FAKE_CERT=%s", fake.cert);
    snprintf(env[2], sizeof env[2], "SUPERIMAP_FAKE_KEY=%s", fake.key);
    snprintf(env[3], sizeof env[3], "SUPERIMAP_FAKE_ADDRS=127.0.0.1-%d", NADDR);
    snprintf(env[4], sizeof env[4], "SUPERIMAP_FAKE_TLS_PORT=0");
    snprintf(env[5], sizeof env[5], "SUPERIMAP_FAKE_USERS=%d", MAX_CONN);
    snprintf(env[6], sizeof env[6], "SUPERIMAP_LOG_LEVEL=warn");
    char *envp[] = {env[0], env[1], env[2], env[3], env[4], env[5], env[6], NULL};
    fake.pid = fork();
    if (fake.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(fake.log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        char *argv[] = {(char *)bin, NULL};
        execve(bin, argv, envp);
        _exit(127);
    }
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", fake.control);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            fake.ctl = fd;
            char reply[1024];
            if (control("PORTS", reply, sizeof reply) < 0)
                return -1;
            /* "OK 127.0.0.1:p/none 127.0.0.1:q/implicit 127.0.0.2:..." in address order */
            char *save = NULL;
            int np = 0, nt = 0;
            for (char *w = strtok_r(reply + 3, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                int port = atoi(strrchr(w, ':') + 1);
                if (strstr(w, "/implicit") && nt < NADDR)
                    fake.tls_port[nt++] = port;
                else if (np < NADDR)
                    fake.plain_port[np++] = port;
            }
            return np == NADDR && nt == NADDR ? 0 : -1;
        }
        close(fd);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "superimap-fake-imapd did not start; see %s\n", fake.log);
    return -1;
}

static void stop(void)
{
    if (fake.ctl > 0)
        close(fake.ctl);
    fake.ctl = -1;
    if (fake.pid > 0) {
        kill(fake.pid, SIGTERM);
        double deadline = now_s() + 10;
        int status;
        while (waitpid(fake.pid, &status, WNOHANG) == 0) {
            if (now_s() > deadline) {
                kill(fake.pid, SIGKILL);
                waitpid(fake.pid, &status, 0);
                break;
            }
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL);
        }
        fake.pid = 0;
    }
}

static int io_write(struct conn *c, const char *p, int n)
{
    return c->ssl ? SSL_write(c->ssl, p, n) : (int)write(c->fd, p, (size_t)n);
}

/* Reads until the text so far ends with the line want (5 s). */
static int read_until(struct conn *c, const char *want)
{
    char buf[4096];
    size_t len = 0, wl = strlen(want);
    double deadline = now_s() + 5;
    while (now_s() < deadline) {
        if (c->ssl == NULL || SSL_pending(c->ssl) == 0) {
            struct pollfd p = {c->fd, POLLIN, 0};
            if (poll(&p, 1, 1000) <= 0)
                continue;
        }
        int n = c->ssl ? SSL_read(c->ssl, buf + len, (int)(sizeof buf - 1 - len))
                       : (int)read(c->fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (len >= wl && strcmp(buf + len - wl, want) == 0)
            return 0;
        if (len > sizeof buf / 2) { /* keep the tail only */
            memmove(buf, buf + len - wl, wl);
            len = wl;
        }
    }
    return -1;
}

static int open_conn(struct conn *c, SSL_CTX *ctx, int i, int idle)
{
    int a = i % NADDR;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)(ctx ? fake.tls_port[a] : fake.plain_port[a]));
    char host[32];
    snprintf(host, sizeof host, "127.0.0.%d", a + 1);
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->ssl = NULL;
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    if (ctx != NULL) {
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        if (SSL_connect(c->ssl) != 1)
            return -1;
    }
    if (read_until(c, "superimap-fake-imapd ready\r\n") < 0)
        return -1;
    if (!idle)
        return 0;
    char cmd[160];
    int n = snprintf(cmd, sizeof cmd, "a LOGIN user%d pass%d\r\nb EXAMINE INBOX\r\nc IDLE\r\n",
                     i + 1, i + 1);
    if (io_write(c, cmd, n) != n)
        return -1;
    return read_until(c, "+ idling\r\n");
}

static void close_all(int n)
{
    for (int i = 0; i < n; i++) {
        if (conns[i].ssl != NULL)
            SSL_free(conns[i].ssl);
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        conns[i].ssl = NULL;
        conns[i].fd = -1;
    }
}

static int row(int n, int tls, int idle, SSL_CTX *ctx)
{
    long before = bench_rss_kib(fake.pid);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (open_conn(&conns[i], tls ? ctx : NULL, i, idle) < 0) {
            fprintf(stderr, "connection %d failed: %s\n", i, strerror(errno));
            close_all(i + 1);
            return -1;
        }
    }
    double setup = now_s() - t0;
    long sessions = stat_value("sessions");
    long after = bench_rss_kib(fake.pid);
    printf("| %d | %s | %s | %.2f | %ld | %.0f |\n", n, tls ? "TLS" : "plain",
           idle ? "logged in, IDLE" : "greeted", setup, after - before,
           (double)(after - before) * 1024.0 / n);
    fflush(stdout);
    close_all(n);
    return sessions == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char copy[384], bin[512];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(bin, sizeof bin, "%s/../bin/superimap-fake-imapd", dirname(copy));
    if (make_cert() < 0)
        return 1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    long limit = (long)rl.rlim_cur - 100;
    int big = limit < MAX_CONN ? (int)limit : MAX_CONN;
    printf(
        "| connections | transport | state | setup s | RSS delta KiB | bytes per connection |\n");
    printf("|---|---|---|---|---|---|\n");
    static const struct {
        int n, tls, idle;
    } rows[] = {{1000, 0, 0}, {10000, 0, 0}, {10000, 0, 1}, {0, 0, 1}, {1000, 1, 1}, {5000, 1, 1}};
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && rc == 0; i++) {
        int n = rows[i].n ? rows[i].n : big;
        if (n > big)
            n = big;
        rc = start(bin);
        if (rc == 0)
            rc = row(n, rows[i].tls, rows[i].idle, ctx);
        stop();
    }
    SSL_CTX_free(ctx);
    const char *rm[] = {"rm", "-rf", fake.dir, NULL};
    run(rm);
    return rc == 0 ? 0 : 1;
}
