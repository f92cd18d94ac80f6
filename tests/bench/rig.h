/*
 * tests/bench/rig.h: the rig of the benchmarks that run superimap-watcher
 * against superimap-fake-imapd (bench_watcher, bench_mailboxes). Header-only
 * (static functions), like bench.h, since each bench_*.c is linked alone
 * with libsuperimap.a.
 *
 *   - children started with their log in a file and stopped by PID;
 *   - a fake-imapd on a loopback address (127.0.0.<i + 1>), plain or
 *     implicit TLS, with IMAP extension profiles, and its control channel;
 *   - a watcher on a private Redis, its /metrics read, users written to
 *     Redis as the api writes them (hash, shard set, si:changes entry), the
 *     wait until every session is watching;
 *   - INFO readings of a Redis server, percentiles.
 *
 * The includer sets bin (the directory of the binaries, rig_bin_init()) and,
 * for TLS, cert and keyfile.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_BENCH_RIG_H
#define TESTS_BENCH_RIG_H

#include <arpa/inet.h>
#include <libgen.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "tests/bench/bench.h"
#include "tests/integration/webhook_fixture.h"
#include "tests/unit/redis_fixture.h"

#define SHARDS             64
#define RIG_MAX_W          6
#define READY_S            20.0
#define LOGINS_PER_WATCHER 20000
#define ESTABLISH_S        240.0
#define SERIES_MS          500 /* between rows of a cold-start series (wait_established()) */

static char bin[400];
static char cert[128], keyfile[128]; /* TLS scenarios; empty: none */

/* ---- Processes ---- */

struct child {
    pid_t pid;
    char log[300];
};

BENCH_FN pid_t spawn(const char *path, char *const *envp, const char *log)
{
    char *const argv[] = {(char *)path, NULL};
    return bench_spawn(argv, envp, log);
}

BENCH_FN void stop(struct child *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    double deadline = fixture_now() + 10;
    while (waitpid(c->pid, NULL, WNOHANG) != c->pid) {
        if (fixture_now() > deadline) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            break;
        }
        fixture_nap_ms(5);
    }
    c->pid = 0;
}

/* The text after needle in the first line of file path that has it. */
BENCH_FN int log_find(const char *path, const char *needle, char *after, size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        char *p = strstr(line, needle);
        if (p != NULL) {
            found = 1;
            if (after != NULL)
                snprintf(after, len, "%s", p + strlen(needle));
        }
    }
    fclose(f);
    return found;
}

/* ---- fake-imapd ---- */

struct fake {
    struct child c;
    char addr[24];
    char ctl[300];
    int ctl_fd;
    int port; /* plain, or implicit TLS when tls */
};

BENCH_FN int ctl_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        close(fd);
        return -1;
    }
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Sends a request (and body) and reads the one-line reply. */
BENCH_FN int ctl(struct fake *f, const char *req, const void *body, size_t n, char *reply,
                 size_t rlen)
{
    struct part {
        const void *p;
        size_t n;
    } parts[3] = {{req, strlen(req)}, {"\n", 1}, {body, n}};
    for (int i = 0; i < 3; i++) {
        size_t off = 0;
        while (off < parts[i].n) {
            ssize_t w = write(f->ctl_fd, (const char *)parts[i].p + off, parts[i].n - off);
            if (w <= 0)
                return -1;
            off += (size_t)w;
        }
    }
    size_t got = 0;
    while (got + 1 < rlen) {
        ssize_t r = read(f->ctl_fd, reply + got, 1);
        if (r <= 0)
            return -1;
        if (reply[got] == '\n')
            break;
        got++;
    }
    reply[got] = '\0';
    return strncmp(reply, "OK", 2) == 0 ? 0 : -1;
}

/* Starts fake-imapd i of a scenario on 127.0.0.<i + 1> with users user1..user<users>,
 * plain or implicit TLS, offering the IMAP extensions of profiles
 * (SUPERIMAP_FAKE_PROFILES; NULL: none), its control channel connected. */
BENCH_FN int fake_start(struct fake *f, const char *dir, int i, int users, int tls,
                        const char *profiles)
{
    memset(f, 0, sizeof *f);
    snprintf(f->addr, sizeof f->addr, "127.0.0.%d", i + 1);
    snprintf(f->ctl, sizeof f->ctl, "%s/fake%d.sock", dir, i);
    snprintf(f->c.log, sizeof f->c.log, "%s/fake%d.log", dir, i);
    char path[512], e_addr[64], e_ctl[340], e_users[64], e_cert[200], e_key[200], e_prof[200];
    snprintf(path, sizeof path, "%s/superimap-fake-imapd", bin);
    snprintf(e_addr, sizeof e_addr, "SUPERIMAP_FAKE_ADDRS=%s", f->addr);
    snprintf(e_ctl, sizeof e_ctl, "SUPERIMAP_FAKE_CONTROL=%s", f->ctl);
    snprintf(e_users, sizeof e_users, "SUPERIMAP_FAKE_USERS=%d", users);
    snprintf(e_cert, sizeof e_cert, "SUPERIMAP_FAKE_CERT=%s", cert);
    snprintf(e_key, sizeof e_key, "SUPERIMAP_FAKE_KEY=%s", keyfile);
    snprintf(e_prof, sizeof e_prof, "SUPERIMAP_FAKE_PROFILES=%s", profiles ? profiles : "");
    char *envp[10] = {e_addr,
                      e_ctl,
                      e_users,
                      (char *)"SUPERIMAP_FAKE_PORT=0",
                      (char *)(tls ? "SUPERIMAP_FAKE_TLS_PORT=0" : "SUPERIMAP_FAKE_TLS_PORT=-1"),
                      (char *)"SUPERIMAP_LOG_LEVEL=warn"};
    size_t ne = 6;
    if (profiles != NULL)
        envp[ne++] = e_prof;
    if (tls) {
        envp[ne++] = e_cert;
        envp[ne++] = e_key;
    }
    envp[ne] = NULL;
    f->c.pid = spawn(path, envp, f->c.log);
    if (f->c.pid < 0)
        return -1;
    double deadline = fixture_now() + READY_S;
    while ((f->ctl_fd = ctl_connect(f->ctl)) < 0) {
        if (fixture_now() > deadline || waitpid(f->c.pid, NULL, WNOHANG) == f->c.pid) {
            fprintf(stderr, "bench: fake-imapd did not start; see %s\n", f->c.log);
            return -1;
        }
        fixture_nap_ms(10);
    }
    char reply[1024];
    if (ctl(f, "PORTS", NULL, 0, reply, sizeof reply) < 0)
        return -1;
    /* "OK 127.0.0.2:4711/none 127.0.0.2:4712/implicit" */
    const char *want = tls ? "/implicit" : "/none";
    for (char *w = strtok(reply + 2, " "); w != NULL; w = strtok(NULL, " ")) {
        char *slash = strchr(w, '/'), *colon = strrchr(w, ':');
        if (slash != NULL && colon != NULL && strcmp(slash, want) == 0)
            f->port = atoi(colon + 1);
    }
    return f->port > 0 ? 0 : -1;
}

BENCH_FN void fake_stop(struct fake *f)
{
    if (f->ctl_fd > 0)
        close(f->ctl_fd);
    f->ctl_fd = -1;
    stop(&f->c);
}

/* ---- Watcher ---- */

struct watcher {
    struct child c;
    struct redis_fixture fx;
    int port; /* HTTP */
    long rss0, rss1;
    double est_s, cpu_pct;
};

/* Starts watcher i of a scenario, logging in at most LOGINS_PER_WATCHER
 * users a second: the binary exe, or NULL for bin's superimap-watcher. */
BENCH_FN int watcher_start(struct watcher *w, int i, int max_users, const char *exe)
{
    char path[512], url[340], node[64], maxu[64], ca[200], logins[64];
    if (exe != NULL)
        snprintf(path, sizeof path, "%s", exe);
    else
        snprintf(path, sizeof path, "%s/superimap-watcher", bin);
    snprintf(w->c.log, sizeof w->c.log, "%s/watcher%d.log", w->fx.dir, i);
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", w->fx.url);
    snprintf(node, sizeof node, "SUPERIMAP_NODE_ID=bench-w%d", i);
    snprintf(maxu, sizeof maxu, "SUPERIMAP_MAX_USERS=%d", max_users);
    snprintf(ca, sizeof ca, "SUPERIMAP_CA_FILE=%s", cert);
    snprintf(logins, sizeof logins, "SUPERIMAP_IMAP_LOGINS_PER_SEC=%d", LOGINS_PER_WATCHER);
    char *envp[] = {url,
                    node,
                    maxu,
                    (char *)"SUPERIMAP_ENCRYPTION_KEY=" WF_KEY,
                    (char *)"SUPERIMAP_HTTP_ADDR=127.0.0.1:0",
                    logins,
                    (char *)"SUPERIMAP_REDIS_TIMEOUT_MS=30000",
                    cert[0] != '\0' ? ca : NULL,
                    NULL};
    w->c.pid = spawn(path, envp, w->c.log);
    if (w->c.pid < 0)
        return -1;
    double deadline = fixture_now() + READY_S;
    char after[256];
    while (!log_find(w->c.log, "incarnation live", NULL, 0) ||
           !log_find(w->c.log, "users loaded", NULL, 0)) {
        if (fixture_now() > deadline || waitpid(w->c.pid, NULL, WNOHANG) == w->c.pid) {
            fprintf(stderr, "bench: watcher not ready; see %s\n", w->c.log);
            return -1;
        }
        fixture_nap_ms(20);
    }
    if (!log_find(w->c.log, "http listening", after, sizeof after))
        return -1;
    const char *p = strstr(after, "port=");
    w->port = p ? atoi(p + 5) : 0;
    return w->port > 0 ? 0 : -1;
}

/* GET /metrics and the value of series, or -1. */
BENCH_FN double metric(int port, const char *series)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
    if (write(fd, req, sizeof req - 1) < 0) {
        close(fd);
        return -1;
    }
    static char body[1 << 20];
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof body && (r = read(fd, body + got, sizeof body - got - 1)) > 0)
        got += (size_t)r;
    close(fd);
    body[got] = '\0';
    size_t n = strlen(series);
    for (char *line = body; line != NULL && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return atof(line + n + 1);
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

/* Writes users first..first+n-1 (login user<i+1>) for provider code,
 * pipelined, watching mailboxes (the user field, a JSON list; NULL: none,
 * INBOX only). */
BENCH_FN int create_users(struct redis_fixture *fx, const char *code, int first, int n,
                          struct crypto_keys *keys, const char *mailboxes)
{
    redisContext *c = redis_fixture_connect(fx, 30000);
    if (c == NULL)
        return -1;
    int pending = 0, rc = 0;
    for (int i = first; i < first + n; i++) {
        char uid[32], login[16], pass[16], aad[96], key[128], k[16];
        snprintf(uid, sizeof uid, "%024x", i + 1);
        snprintf(login, sizeof login, "user%d", i + 1);
        snprintf(pass, sizeof pass, "pass%d", i + 1);
        snprintf(aad, sizeof aad, "si:user:%s:secret", uid);
        char *sealed = NULL;
        if (crypto_encrypt(keys, pass, strlen(pass), aad, &sealed) < 0)
            return -1;
        snprintf(k, sizeof k, "%u", hrw_shard(uid, SHARDS));
        snprintf(key, sizeof key, "si:{%s}:user:%s", k, uid);
        const char *argv[] = {"HSET",   key,    "uid",       uid,      "pid",      "1",
                              "code",   code,   "tag",       login,    "username", login,
                              "secret", sealed, "mailboxes", mailboxes};
        int argc = (int)(sizeof argv / sizeof argv[0]) - (mailboxes == NULL ? 2 : 0);
        redisAppendCommandArgv(c, argc, argv, NULL);
        redisAppendCommand(c, "ZADD si:{%s}:users 0 %s", k, uid);
        redisAppendCommand(c, "XADD si:changes * uid %s k %s op create", uid, k);
        xfree(sealed);
        pending += 3;
        if (pending >= 3000 || i == first + n - 1) {
            while (pending > 0) {
                redisReply *r = NULL;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                    rc = -1;
                    break;
                }
                if (r->type == REDIS_REPLY_ERROR)
                    rc = -1;
                freeReplyObject(r);
                pending--;
            }
        }
    }
    redisFree(c);
    return rc;
}

/* A number of `INFO <section>` of a Redis server (field with its colon), or
 * -1. */
BENCH_FN double redis_info(const struct redis_fixture *fx, const char *section, const char *field)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "INFO %s", section);
    redisReply *r = redis_fixture_cmd(fx, cmd);
    double v = -1;
    const char *p = r != NULL && r->type == REDIS_REPLY_STRING ? strstr(r->str, field) : NULL;
    if (p != NULL)
        v = atof(p + strlen(field));
    freeReplyObject(r);
    return v;
}

/* used_memory of a Redis server in bytes (INFO memory), or -1. */
BENCH_FN long long redis_used_memory(const struct redis_fixture *fx)
{
    return (long long)redis_info(fx, "memory", "used_memory:");
}

/* Redis's work so far: commands processed and CPU seconds (user + system). */
struct redis_work {
    double commands, cpu_s;
};

BENCH_FN struct redis_work redis_work_now(const struct redis_fixture *fx)
{
    struct redis_work w = {redis_info(fx, "stats", "total_commands_processed:"),
                           redis_info(fx, "cpu", "used_cpu_sys:") +
                               redis_info(fx, "cpu", "used_cpu_user:")};
    return w;
}

/* One row of the cold-start series (sessions_100k.dat): seconds from t0,
 * sessions watching in all, the watchers' VmRSS in all and each's (KiB). */
BENCH_FN void series_row(FILE *series, const struct watcher *w, int nw, double t0)
{
    double watching = 0;
    long rss[RIG_MAX_W], total = 0;
    for (int i = 0; i < nw; i++) {
        double n = metric(w[i].port, "superimap_watcher_sessions_watching");
        watching += n > 0 ? n : 0;
        rss[i] = bench_rss_kib(w[i].c.pid);
        total += rss[i];
    }
    fprintf(series, "%.2f %.0f %ld", fixture_now() - t0, watching, total);
    for (int i = 0; i < nw; i++)
        fprintf(series, " %ld", rss[i]);
    fputc('\n', series);
    fflush(series);
}

/* Polls every watcher's /metrics until each has per sessions watching,
 * setting est_s (from t0) of those that had none; with series (may be
 * NULL), a series_row() every SERIES_MS meanwhile. */
BENCH_FN int wait_established(struct watcher *w, int nw, int per, double t0, const char *name,
                              FILE *series)
{
    double deadline = t0 + ESTABLISH_S, next_row = t0;
    for (;;) {
        if (series != NULL && fixture_now() >= next_row) {
            series_row(series, w, nw, t0);
            next_row += SERIES_MS / 1000.0;
        }
        int done = 0;
        for (int i = 0; i < nw; i++) {
            if (w[i].est_s > 0) {
                done++;
                continue;
            }
            double watching = metric(w[i].port, "superimap_watcher_sessions_watching");
            if (watching >= per) {
                w[i].est_s = fixture_now() - t0;
                done++;
            }
        }
        if (done == nw) {
            if (series != NULL)
                series_row(series, w, nw, t0);
            return 0;
        }
        if (fixture_now() > deadline) {
            fprintf(stderr, "bench: %s: sessions not all watching after %.0f s\n", name,
                    ESTABLISH_S);
            for (int i = 0; i < nw; i++)
                fprintf(stderr,
                        "  watcher %d: %.0f users, %.0f sessions, %.0f watching, %.0f "
                        "unassigned, capacity %.0f, fences %.0f\n",
                        i, metric(w[i].port, "superimap_watcher_users"),
                        metric(w[i].port, "superimap_watcher_sessions"),
                        metric(w[i].port, "superimap_watcher_sessions_watching"),
                        metric(w[i].port, "superimap_watcher_users_unassigned"),
                        metric(w[i].port, "superimap_watcher_capacity"),
                        metric(w[i].port, "superimap_watcher_fences_total"));
            return -1;
        }
        fixture_nap_ms(100);
    }
}

BENCH_FN int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q quantile (0 <= q <= 1) of the nl sorted latencies lat, or -1. */
BENCH_FN double pct(const double *lat, int nl, double q)
{
    if (nl == 0)
        return -1;
    size_t i = (size_t)((double)nl * q);
    return lat[i < (size_t)nl ? i : (size_t)nl - 1];
}

/* Sets bin to the bin directory beside the directory of argv0
 * (build/bench/bench_x -> build/bin) and checks that fake-imapd is there;
 * 0, or -1 with a message. */
BENCH_FN int rig_bin_init(const char *argv0)
{
    char copy[384], path[512];
    snprintf(copy, sizeof copy, "%s", argv0);
    snprintf(bin, sizeof bin, "%.384s/../bin", dirname(copy));
    snprintf(path, sizeof path, "%s/superimap-fake-imapd", bin);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "bench: %s not found (make all builds it)\n", path);
        return -1;
    }
    return 0;
}

#endif
