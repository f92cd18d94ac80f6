/*
 * tests/bench/bench.h: what several benchmarks share. Header-only (static
 * functions), like tests/unit/redis_fixture.h, since each bench_*.c is
 * linked alone with libsuperimap.a.
 *
 *   - /proc readings of a process: resident set size and CPU time;
 *   - a node started with its log in a file, the HTTP port read from that
 *     log, and its stop (bench_api, bench_dashboard);
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

/* Seconds on CLOCK_MONOTONIC. */
BENCH_FN double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

BENCH_FN void bench_nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts bin with environment envp (NULL-terminated), its stdout and stderr
 * into logpath, killed if this process dies (PR_SET_PDEATHSIG). Returns its
 * pid, or -1. */
BENCH_FN pid_t bench_spawn(const char *bin, char *const *envp, const char *logpath)
{
    char *const argv[] = {(char *)bin, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execve(bin, argv, envp);
        _exit(127);
    }
    return pid;
}

/* Polls a node's log for its HTTP port (the "http listening" line) for
 * 10 s: the port, or -1. */
BENCH_FN int bench_log_port(const char *logpath)
{
    double until = bench_now() + 10.0;
    while (bench_now() < until) {
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
        bench_nap_ms(20);
    }
    return -1;
}

/* Stops pid with SIGTERM (SIGKILL after 10 s) and waits for it. */
BENCH_FN void bench_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    double stop = bench_now() + 10.0;
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (bench_now() > stop) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        bench_nap_ms(20);
    }
}

#endif
