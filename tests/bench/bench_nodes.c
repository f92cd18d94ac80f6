/*
 * Idle memory of the three node binaries: starts superimap-api, -watcher and
 * -dispatcher (from the bin/ directory beside this program's bench/) against
 * a private redis-server (tests/unit/redis_fixture.h: unix socket in a
 * mkdtemp() directory), waits until each has logged "node ready" (10 s
 * deadline), lets them idle about one more second, reads VmRSS from
 * /proc/<pid>/status and prints
 *
 *   | binary | idle RSS KiB |
 *
 * Then stops each by its PID with SIGTERM and waits for it (SIGKILL after
 * 10 s). Every child gets PR_SET_PDEATHSIG, so none outlives this program.
 * Their environment is only the SUPERIMAP_* variables set here (a fresh
 * random encryption key, HTTP on 127.0.0.1 port 0, node id bench-<role>);
 * their logs go to <dir>/<role>.log and are shown on stderr if one fails.
 * Exits non-zero when a binary is missing, exits early or is not ready in
 * time.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/crypto.h"
#include "core/err.h"
#include "tests/bench/bench.h"
#include "tests/unit/redis_fixture.h"

#define READY_TIMEOUT_S 10.0
#define IDLE_S          1.0
#define STOP_TIMEOUT_S  10.0
#define NROLES          3

struct node_proc {
    const char *role;
    char path[512]; /* the binary */
    char log[160];  /* its stderr and stdout */
    pid_t pid;      /* 0 when not running */
    int ready;
    long rss_kib; /* -1 until read */
};

static const char *const roles[NROLES] = {"api", "watcher", "dispatcher"};

/* Sets dir to the directory holding the node binaries: <dir of argv0>/../bin. */
static void bin_dir(const char *argv0, char *dir, size_t len)
{
    char copy[384];
    snprintf(copy, sizeof copy, "%s", argv0);
    snprintf(dir, len, "%.384s/../bin", dirname(copy));
}

/* Returns 1 when file path contains needle, 0 otherwise. */
static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void dump_log(const struct node_proc *p)
{
    fprintf(stderr, "---- %s ----\n", p->log);
    FILE *f = fopen(p->log, "r");
    if (f == NULL)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

static int spawn(struct node_proc *p, const struct redis_fixture *fx, const char *key_hex)
{
    char url[200], key[100], node[64];
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", fx->url);
    snprintf(key, sizeof key, "SUPERIMAP_ENCRYPTION_KEY=%s", key_hex);
    snprintf(node, sizeof node, "SUPERIMAP_NODE_ID=bench-%s", p->role);
    char *const envp[] = {url,
                          key,
                          node,
                          (char *)"SUPERIMAP_HTTP_ADDR=127.0.0.1:0",
                          (char *)"SUPERIMAP_LOG_LEVEL=info",
                          (char *)"SUPERIMAP_LOG_FORMAT=text",
                          NULL};
    char *const argv[] = {p->path, NULL};

    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        fprintf(stderr, "bench_nodes: fork: %s\n", strerror(e));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execve(p->path, argv, envp);
        _exit(127);
    }
    p->pid = pid;
    return 0;
}

/* Polls every node's log for "node ready" until all are ready, one exits, or
 * the deadline passes. Returns 0 when all are ready. */
static int wait_ready(struct node_proc *procs, int n)
{
    double deadline = fixture_now() + READY_TIMEOUT_S;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < n; i++) {
            struct node_proc *p = &procs[i];
            if (p->ready || p->pid <= 0)
                continue;
            int status;
            if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
                p->pid = 0;
                fprintf(stderr, "bench_nodes: superimap-%s exited (status %d) before ready\n",
                        p->role, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
                dump_log(p);
                return -1;
            }
            p->ready = file_contains(p->log, "node ready");
            pending += !p->ready;
        }
        if (pending == 0)
            return 0;
        if (fixture_now() > deadline)
            break;
        fixture_nap_ms(10);
    }
    for (int i = 0; i < n; i++) {
        if (!procs[i].ready) {
            fprintf(stderr, "bench_nodes: superimap-%s not ready within %.0f s\n", procs[i].role,
                    READY_TIMEOUT_S);
            dump_log(&procs[i]);
        }
    }
    return -1;
}

/* SIGTERMs each running node, then waits for all (SIGKILL at the deadline). */
static void stop_all(struct node_proc *procs, int n)
{
    for (int i = 0; i < n; i++)
        if (procs[i].pid > 0)
            kill(procs[i].pid, SIGTERM);
    double deadline = fixture_now() + STOP_TIMEOUT_S;
    for (int i = 0; i < n; i++) {
        struct node_proc *p = &procs[i];
        while (p->pid > 0) {
            pid_t w = waitpid(p->pid, NULL, WNOHANG);
            if (w == p->pid || (w < 0 && errno != EINTR)) {
                p->pid = 0;
                break;
            }
            if (fixture_now() > deadline) {
                fprintf(stderr, "bench_nodes: superimap-%s ignored SIGTERM for %.0f s\n", p->role,
                        STOP_TIMEOUT_S);
                kill(p->pid, SIGKILL);
                waitpid(p->pid, NULL, 0);
                p->pid = 0;
                break;
            }
            fixture_nap_ms(5);
        }
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    char dir[400];
    bin_dir(argv[0], dir, sizeof dir);

    struct node_proc procs[NROLES];
    memset(procs, 0, sizeof procs);
    for (int i = 0; i < NROLES; i++) {
        procs[i].role = roles[i];
        procs[i].rss_kib = -1;
        snprintf(procs[i].path, sizeof procs[i].path, "%s/superimap-%s", dir, roles[i]);
        if (access(procs[i].path, X_OK) != 0) {
            fprintf(stderr, "bench_nodes: %s not found (make all builds it)\n", procs[i].path);
            return 1;
        }
    }

    struct redis_fixture fx;
    if (redis_fixture_start(&fx, NULL) < 0) {
        fprintf(stderr, "bench_nodes: cannot start redis-server (package redis-server)\n");
        redis_fixture_stop(&fx);
        return 1;
    }

    unsigned char raw[CRYPTO_KEY_LEN];
    char key_hex[CRYPTO_KEY_HEX_LEN + 1];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, key_hex);
    crypto_wipe(raw, sizeof raw);

    int status = 0;
    for (int i = 0; i < NROLES && status == 0; i++) {
        snprintf(procs[i].log, sizeof procs[i].log, "%s/%s.log", fx.dir, roles[i]);
        if (spawn(&procs[i], &fx, key_hex) < 0)
            status = -1;
    }
    crypto_wipe(key_hex, sizeof key_hex);
    if (status == 0 && wait_ready(procs, NROLES) < 0)
        status = -1;

    if (status == 0) {
        fixture_nap_ms((long)(IDLE_S * 1000)); /* settle, not a wait for a condition */
        for (int i = 0; i < NROLES; i++)
            procs[i].rss_kib = bench_rss_kib(procs[i].pid);
        printf("Each node idle about %.0f s after \"node ready\", connected to a private "
               "redis-server, no users.\n\n",
               IDLE_S);
        printf("| binary | idle RSS KiB |\n");
        printf("|---|---:|\n");
        for (int i = 0; i < NROLES; i++) {
            if (procs[i].rss_kib < 0) {
                printf("| superimap-%s | unreadable |\n", procs[i].role);
                status = -1;
            } else {
                printf("| superimap-%s | %ld |\n", procs[i].role, procs[i].rss_kib);
            }
        }
        fflush(stdout);
    }

    stop_all(procs, NROLES);
    redis_fixture_stop(&fx);
    return status < 0 ? 1 : 0;
}
