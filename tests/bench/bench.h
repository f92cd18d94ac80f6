/*
 * tests/bench/bench.h: what several benchmarks share. Header-only (static
 * functions), like tests/unit/redis_fixture.h, since each bench_*.c is
 * linked alone with libsuperimap.a.
 *
 *   - /proc readings of a process: resident set size and CPU time;
 *   - a process started with its log in a file (an api with the benchmarks'
 *     settings: bench_api, bench_dashboard; superimap-import), the HTTP port
 *     read from that log, and its stop;
 *   - machine-readable results for tests/bench/run.sh, which builds
 *     docs/benchmarks.md from them. When BENCH_DATA_DIR is set, a benchmark
 *     appends "key value" lines to $BENCH_DATA_DIR/results.txt (keys are
 *     listed in run.sh's header; the last line of a key wins) and writes the
 *     data of its plots as $BENCH_DATA_DIR/<name>.dat (whitespace-separated
 *     columns, a "#" line naming them first). When it is unset (a bench run
 *     by hand) both do nothing.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_BENCH_BENCH_H
#define TESTS_BENCH_BENCH_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/redis_fixture.h"

#define BENCH_FN static __attribute__((unused))

/* VmRSS of pid in KiB, or -1. */
BENCH_FN long bench_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* User + system CPU seconds of pid so far, or -1. */
BENCH_FN double bench_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Opens $BENCH_DATA_DIR/name for writing (truncated). Returns NULL when
 * BENCH_DATA_DIR is unset or the file cannot be made (fclose() it). */
BENCH_FN FILE *bench_data_open(const char *name, const char *mode)
{
    const char *dir = getenv("BENCH_DATA_DIR");
    if (dir == NULL || dir[0] == '\0')
        return NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, mode);
    if (f == NULL)
        fprintf(stderr, "bench: cannot write %s\n", path);
    return f;
}

/* Appends the line "key value" to $BENCH_DATA_DIR/results.txt, the value
 * printf-formatted; nothing when BENCH_DATA_DIR is unset. */
__attribute__((format(printf, 2, 3))) BENCH_FN void bench_result(const char *key, const char *fmt,
                                                                 ...)
{
    FILE *f = bench_data_open("results.txt", "a");
    if (f == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(f, "%s ", key);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
    fclose(f);
}

/* Starts argv[0] with arguments argv and environment envp (both
 * NULL-terminated), its stdout and stderr into logpath, killed if this
 * process dies (PR_SET_PDEATHSIG). Returns its pid, or -1. */
BENCH_FN pid_t bench_spawn(char *const *argv, char *const *envp, const char *logpath)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execve(argv[0], argv, envp);
        _exit(127);
    }
    return pid;
}

/* Polls a node's log for its HTTP port (the "http listening" line) for
 * 10 s: the port, or -1. */
BENCH_FN int bench_log_port(const char *logpath)
{
    double until = fixture_now() + 10.0;
    while (fixture_now() < until) {
        FILE *f = fopen(logpath, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            const char *p = strstr(line, "http listening");
            if (p != NULL && (p = strstr(p, "port=")) != NULL) {
                fclose(f);
                return atoi(p + 5);
            }
        }
        if (f != NULL)
            fclose(f);
        fixture_nap_ms(20);
    }
    return -1;
}

/* Starts superimap-api bin on Redis redis_url with encryption key key_hex,
 * web root <src>/web, node id node_id, any port on 127.0.0.1, the admin
 * token token, the rate limit off, log level info (bench_log_port() reads
 * it) and the extra variables (NULL-terminated, may be NULL), its log into
 * logpath. Returns its pid, or -1. */
BENCH_FN pid_t bench_api_spawn(const char *bin, const char *redis_url, const char *key_hex,
                               const char *src, const char *node_id, const char *token,
                               const char *const *extra, const char *logpath)
{
    char url[200], key[100], web[600], id[100], tok[160];
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", redis_url);
    snprintf(key, sizeof key, "SUPERIMAP_ENCRYPTION_KEY=%s", key_hex);
    snprintf(web, sizeof web, "SUPERIMAP_WEB_ROOT=%s/web", src);
    snprintf(id, sizeof id, "SUPERIMAP_NODE_ID=%s", node_id);
    snprintf(tok, sizeof tok, "SUPERIMAP_ADMIN_TOKEN=%s", token);
    char *envp[16] = {url,
                      key,
                      web,
                      id,
                      tok,
                      (char *)"SUPERIMAP_HTTP_ADDR=127.0.0.1:0",
                      (char *)"SUPERIMAP_API_RATE_LIMIT=0",
                      (char *)"SUPERIMAP_LOG_LEVEL=info"};
    size_t n = 8;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        envp[n++] = (char *)extra[i];
    envp[n] = NULL;
    char *const argv[] = {(char *)bin, NULL};
    return bench_spawn(argv, envp, logpath);
}

/* Stops pid with SIGTERM (SIGKILL after 10 s) and waits for it. */
BENCH_FN void bench_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    double stop = fixture_now() + 10.0;
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (fixture_now() > stop) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        fixture_nap_ms(20);
    }
}

#endif
