/*
 * Integration test harness (see harness.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

extern char **environ;

#define TEST_KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

long long harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polling interval: a short pause between checks of a condition that has a
 * deadline, never a wait for something by itself. */
static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void harness_poll_pause(void)
{
    pause_ms(20);
}

const char *harness_bin(const char *binary, char *out, size_t outlen)
{
    const char *dir = getenv("SUPERIMAP_BIN_DIR");
    snprintf(out, outlen, "%s/%s", dir ? dir : "build/bin", binary);
    return out;
}

/* The first port of the kernel's ephemeral range (connect() and bind(0)
 * take theirs from it), or 32768 when it cannot be read. */
static int ephemeral_low(void)
{
    int low = 32768, high = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d %d", &low, &high) != 2 || low < 2048 || low > 65535)
            low = 32768;
        fclose(f);
    }
    return low;
}

/* 1 when port can be bound on 127.0.0.1 now. */
static int bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int harness_free_port(void)
{
    /* Below the ephemeral range, so that no connection of this or another
     * suite running at the same time (make test runs two) takes it between
     * this check and the server's bind; picked at random so that two
     * suites rarely try the same one. */
    int low = ephemeral_low();
    if (low > 12000) {
        for (int i = 0; i < 64; i++) {
            int port = 10000 + (int)(((unsigned)rand() ^ (unsigned)getpid() * 2654435761u) %
                                     (unsigned)(low - 10000));
            if (bindable(port))
                return port;
        }
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- Redis ---- */

static int redis_spawn(struct redis_srv *r)
{
    char logpath[320];
    snprintf(logpath, sizeof logpath, "%s/redis.log", r->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[64] = {
            "redis-server", "--port", "0", "--unixsocket", r->sock, "--unixsocketperm",
            "700",          "--save", "",  "--appendonly", "no",    "--dir",
            r->dir};
        size_t n = 13;
        for (const char *const *a = r->args; a != NULL && *a != NULL && n < 63; a++)
            argv[n++] = *a; /* later arguments override earlier ones */
        argv[n] = NULL;
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    long long deadline = harness_now_ms() + 5000;
    while (harness_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr,
                    "redis-server exited at start (is the redis-server package "
                    "installed? see %s)\n",
                    logpath);
            r->pid = 0;
            return -1;
        }
        redisContext *c = redisConnectUnix(r->sock);
        if (c != NULL && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
            freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c != NULL) {
            redisFree(c);
        }
        pause_ms(20);
    }
    fprintf(stderr, "redis-server did not answer PING within 5 s\n");
    return -1;
}

int harness_redis_start(struct redis_srv *r)
{
    return harness_redis_start_args(r, NULL);
}

int harness_redis_start_args(struct redis_srv *r, const char *const *args)
{
    memset(r, 0, sizeof *r);
    r->args = args;
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/superimap-test-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(r->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof r->url, "unix://%s", r->sock);
    return redis_spawn(r);
}

void harness_redis_kill(struct redis_srv *r, int hard)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, hard ? SIGKILL : SIGTERM);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    unlink(r->sock);
}

int harness_redis_restart(struct redis_srv *r)
{
    return redis_spawn(r);
}

void harness_redis_stop(struct redis_srv *r)
{
    harness_redis_kill(r, 0);
    const char *keep = getenv("SUPERIMAP_TEST_KEEP");
    if (r->dir[0] != '\0' && keep != NULL && *keep != '\0' && strcmp(keep, "0") != 0) {
        fprintf(stderr, "SUPERIMAP_TEST_KEEP: kept %s (Redis and node logs)\n", r->dir);
        r->dir[0] = '\0';
    }
    if (r->dir[0] != '\0') {
        pid_t pid = fork();
        if (pid == 0) {
            execlp("rm", "rm", "-rf", r->dir, (char *)NULL);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
        r->dir[0] = '\0';
    }
}

redisContext *harness_redis_connect(const struct redis_srv *r)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    if (c == NULL || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

int harness_redis_get(const struct redis_srv *r, char *out, size_t outlen, const char *fmt, ...)
{
    redisContext *c = harness_redis_connect(r);
    if (c == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    int rc = 0;
    out[0] = '\0';
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        rc = -1;
    else if (rep->type == REDIS_REPLY_INTEGER)
        snprintf(out, outlen, "%lld", rep->integer);
    else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
        snprintf(out, outlen, "%s", rep->str);
    freeReplyObject(rep);
    redisFree(c);
    return rc;
}

/* ---- Processes ---- */

/* The PIDs of every process started and not yet reaped, so a failed
 * assertion (which leaves the test function early) cannot leave one running. */
#define MAX_PROCS 64
static pid_t live[MAX_PROCS];

static void track(pid_t pid, int add)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (add && live[i] == 0) {
            live[i] = pid;
            return;
        }
        if (!add && live[i] == pid) {
            live[i] = 0;
            return;
        }
    }
}

void harness_stop_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
        }
        live[i] = 0;
    }
}

/* An earlier run's log of the same name is kept as <log>.1, .2, ... (a test
 * that restarts a node, or a suite whose tests reuse node ids, keeps every
 * run's lines for SUPERIMAP_TEST_KEEP), and nothing reads its lines as the
 * new run's. */
static void keep_earlier_log(const char *log)
{
    if (access(log, F_OK) != 0)
        return;
    char old[sizeof((struct proc *)0)->log + 8];
    for (int i = 1; i < 1000; i++) {
        snprintf(old, sizeof old, "%s.%d", log, i);
        if (access(old, F_OK) != 0) {
            if (rename(log, old) == 0)
                return;
            break;
        }
    }
    unlink(log);
}

int harness_spawn(struct proc *p, const char *const *argv, const char *const *env)
{
    keep_earlier_log(p->log);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execve(argv[0], (char *const *)argv, env ? (char *const *)env : environ);
        _exit(127);
    }
    p->pid = pid;
    p->exited = 0;
    track(pid, 1);
    return 0;
}

static char *read_file(const char *path);

/* Copies a sanitizer report from p's log to our stderr, where
 * tests/run-tests.sh finds it and fails the run. (Under valgrind a node that
 * exits on its own exits 99 on an error, which the tests' exit-code checks see.) */
static void report_sanitizer(const struct proc *p)
{
    char *s = read_file(p->log);
    if (s != NULL && (strstr(s, "AddressSanitizer") || strstr(s, "LeakSanitizer") ||
                      strstr(s, "runtime error:")))
        fprintf(stderr, "---- sanitizer report in %s:\n%s\n", p->log, s);
    free(s);
}

int harness_proc_wait(struct proc *p, int ms)
{
    if (p->exited)
        return 0;
    long long deadline = harness_now_ms() + ms;
    for (;;) {
        int status;
        pid_t w = waitpid(p->pid, &status, WNOHANG);
        if (w == p->pid) {
            track(p->pid, 0);
            p->exited = 1;
            p->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            report_sanitizer(p);
            return 0;
        }
        if (harness_now_ms() >= deadline)
            return -1;
        pause_ms(10);
    }
}

void harness_proc_signal(struct proc *p, int sig)
{
    if (p->pid > 0 && !p->exited)
        kill(p->pid, sig);
}

void harness_proc_stop(struct proc *p)
{
    if (p->pid <= 0 || p->exited)
        return;
    kill(p->pid, SIGKILL);
    harness_proc_wait(p, 5000);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t n;
    while (s != NULL && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            char *t = realloc(s, cap);
            if (t == NULL) {
                free(s);
                s = NULL;
            }
            s = t;
        }
    }
    fclose(f);
    if (s != NULL)
        s[len] = '\0';
    return s;
}

int harness_log_contains(const struct proc *p, const char *needle)
{
    return harness_log_count(p, needle) > 0;
}

int harness_log_count(const struct proc *p, const char *needle)
{
    char *s = read_file(p->log);
    if (s == NULL)
        return 0;
    int count = 0;
    for (char *line = strtok(s, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, needle) != NULL)
            count++;
    free(s);
    return count;
}

int harness_wait_log(const struct proc *p, const char *needle, int ms)
{
    long long deadline = harness_now_ms() + ms;
    do {
        if (harness_log_contains(p, needle))
            return 0;
        pause_ms(20);
    } while (harness_now_ms() < deadline);
    return -1;
}

int harness_prefixed(void)
{
    const char *tp = getenv("TEST_PREFIX");
    return tp != NULL && *tp != '\0';
}

int harness_ms(int ms)
{
    return harness_prefixed() ? ms * 4 : ms;
}

int harness_spawn_binary(struct proc *p, const char *binary, const char *const *base, size_t nbase,
                         const char *const *extra)
{
    const char *env[256];
    int n = 0;
    for (char **e = environ; *e != NULL && n < 180; e++)
        if (strncmp(*e, "SUPERIMAP_", 10) != 0)
            env[n++] = *e;
    for (size_t i = 0; i < nbase; i++) {
        if (base[i] == NULL)
            continue;
        const char *eq = strchr(base[i], '=');
        int overridden = 0;
        for (const char *const *x = extra; x != NULL && *x != NULL; x++)
            if (strncmp(*x, base[i], (size_t)(eq - base[i]) + 1) == 0)
                overridden = 1;
        if (!overridden && n < 230)
            env[n++] = base[i];
    }
    for (const char *const *x = extra; x != NULL && *x != NULL && n < 254; x++)
        env[n++] = *x;
    env[n] = NULL;

    /* Under `make valgrind` the binaries run under valgrind too (TEST_PREFIX). */
    char path[512];
    harness_bin(binary, path, sizeof path);
    const char *argv[32];
    int argc = 0;
    char prefix[1024], which[512];
    const char *tp = getenv("TEST_PREFIX");
    snprintf(prefix, sizeof prefix, "%s", tp ? tp : "");
    char *save = NULL;
    for (char *tok = strtok_r(prefix, " ", &save); tok != NULL && argc < 30;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    if (argc > 0 && argv[0][0] != '/') { /* execve needs a path */
        snprintf(which, sizeof which, "/usr/bin/%s", argv[0]);
        argv[0] = which;
    }
    argv[argc++] = path;
    argv[argc] = NULL;
    if (harness_spawn(p, argv, env) < 0) {
        fprintf(stderr, "cannot start %s\n", path);
        return -1;
    }
    return 0;
}

int harness_node_start(struct proc *p, const struct redis_srv *r, const char *binary,
                       const char *node_id, const char *const *extra)
{
    memset(p, 0, sizeof *p);
    snprintf(p->log, sizeof p->log, "%s/%s.log", r->dir, node_id);

    static char vars[3][512];
    snprintf(vars[0], sizeof vars[0], "SUPERIMAP_REDIS_URL=%s", r->url);
    snprintf(vars[1], sizeof vars[1], "SUPERIMAP_NODE_ID=%s", node_id);
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    snprintf(vars[2], sizeof vars[2], "SUPERIMAP_WEB_ROOT=%s/web", src ? src : ".");
    const char *base[] = {vars[0],
                          vars[1],
                          vars[2],
                          "SUPERIMAP_ENCRYPTION_KEY=" TEST_KEY,
                          "SUPERIMAP_HTTP_ADDR=127.0.0.1:0",
                          "SUPERIMAP_SHUTDOWN_TIMEOUT_SEC=10",
                          "SUPERIMAP_API_THREADS=4",
                          "SUPERIMAP_REDIS_TIMEOUT_MS=2000"};
    if (harness_spawn_binary(p, binary, base, sizeof base / sizeof base[0], extra) < 0)
        return -1;

    long long deadline = harness_now_ms() + (harness_prefixed() ? 60000 : 10000);
    while (harness_now_ms() < deadline) {
        char *s = read_file(p->log);
        const char *line = s ? strstr(s, "http listening") : NULL;
        const char *port = line ? strstr(line, "port=") : NULL;
        if (port != NULL) {
            p->port = atoi(port + 5);
            free(s);
            return p->port > 0 ? 0 : -1;
        }
        free(s);
        if (harness_proc_wait(p, 0) == 0) {
            fprintf(stderr, "%s exited with %d before listening; log %s\n", binary, p->exit_code,
                    p->log);
            return -1;
        }
        pause_ms(20);
    }
    fprintf(stderr, "%s did not report its HTTP port within 10 s; log %s\n", binary, p->log);
    return -1;
}

/* ---- HTTP ---- */

struct sink {
    char *buf;
    size_t cap, len;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    if (s->buf != NULL && s->len + 1 < s->cap) {
        size_t room = s->cap - s->len - 1;
        size_t k = n < room ? n : room;
        memcpy(s->buf + s->len, data, k);
        s->len += k;
        s->buf[s->len] = '\0';
    }
    return n;
}

int harness_http_get(int port, const char *path, char *body, size_t bodylen)
{
    static int initialised;
    if (!initialised) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        initialised = 1;
    }
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct sink s = {body, bodylen, 0};
    if (body != NULL && bodylen > 0)
        body[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return (int)status;
}

double harness_metric(int port, const char *series)
{
    static char body[1 << 20];
    if (harness_http_get(port, "/metrics", body, sizeof body) != 200)
        return -1;
    size_t n = strlen(series);
    for (char *line = body; line != NULL && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return atof(line + n + 1);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

int harness_wait_http(int port, const char *path, int status, int ms)
{
    long long deadline = harness_now_ms() + ms;
    do {
        if (harness_http_get(port, path, NULL, 0) == status)
            return 0;
        pause_ms(50);
    } while (harness_now_ms() < deadline);
    return -1;
}

int harness_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int harness_connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int harness_sh(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    while (fgetc(p) != EOF) /* the rest, so cmd never blocks on a full pipe */
        ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
