/*
 * superimap-dispatcher benchmarks (DESIGN.md section 7): one dispatcher
 * process (bin/ beside this program's bench/) against a private redis-server
 * (tests/unit/redis_fixture.h) and the test receiver of
 * tests/integration/receiver.c, compiled in here and run on a thread of this
 * process, answering 200 on keep-alive connections (signature checks off:
 * the integration tests do them; here the receiver should cost little).
 *
 *   1. throughput: N new_mail events of about 1 KiB, then of about 100 KiB,
 *      enqueued before the dispatcher starts; signed webhooks per second
 *      between the first and the last receipt;
 *   2. latency: events enqueued one by one at 1,000 per second for 5 s while
 *      the dispatcher runs; p50 / p99 / max from the enqueue call's start to
 *      the receipt of the request;
 *   3. memory: 10,000 events in flight at once (the receiver reads each
 *      request and never answers; partner concurrency 10,000, one connection
 *      per request); the dispatcher's VmRSS idle and with them in flight.
 *
 * Every scenario starts a fresh dispatcher on a flushed Redis. The load
 * generator paces itself with nanosleep (it is a clock, not a wait for a
 * result); every wait for a result polls with a deadline. Prints Markdown
 * tables; never fails on timing. Exits non-zero when something does not
 * start or events are lost.
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
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/receiver.c" /* the receiver, built into this program */
#include "tests/integration/webhook_fixture.h"
#include "tests/unit/redis_fixture.h"

#define PARTNERS 4

static struct redis_fixture fx;
static redisContext *rc;
static struct receiver *rx;
static char bindir[512];
static char base[64];

struct disp {
    pid_t pid;
    char log[200];
};

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* User + system CPU seconds of a process so far. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Starts the dispatcher with extra environment (NULL-terminated). */
static int disp_start(struct disp *d, const char *const *extra)
{
    snprintf(d->log, sizeof d->log, "%s/dispatcher.log", fx.dir);
    char url[200], path[600];
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", fx.url);
    snprintf(path, sizeof path, "%s/superimap-dispatcher", bindir);
    const char *envp[32];
    int n = 0;
    envp[n++] = url;
    envp[n++] = "SUPERIMAP_ENCRYPTION_KEY=" WF_KEY;
    envp[n++] = "SUPERIMAP_NODE_ID=bench-dispatcher";
    envp[n++] = "SUPERIMAP_HTTP_ADDR=127.0.0.1:0";
    envp[n++] = "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1";
    envp[n++] = "SUPERIMAP_LOG_LEVEL=warn";
    for (const char *const *e = extra; e != NULL && *e != NULL && n < 30; e++)
        envp[n++] = *e;
    envp[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *const argv[] = {path, NULL};
        execve(path, argv, (char *const *)(void *)envp);
        _exit(127);
    }
    d->pid = pid;
    /* Ready: its heartbeat is in si:dispatchers. */
    long long deadline = now_us() + 10000000;
    while (now_us() < deadline) {
        if (wf_int(rc, "ZCARD si:dispatchers") > 0)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            d->pid = 0;
            break;
        }
        fixture_nap_ms(10);
    }
    fprintf(stderr, "bench_dispatcher: the dispatcher did not become ready; see %s\n", d->log);
    return -1;
}

static void disp_stop(struct disp *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

static void reset(void)
{
    freeReplyObject(wf_cmd(rc, "FLUSHALL"));
    receiver_clear(rx);
    for (int p = 0; p < PARTNERS; p++) {
        char pid[8];
        snprintf(pid, sizeof pid, "%d", p + 1);
        wf_partner(rc, pid, base, "bench-api-key-0123456789",
                   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "webhook_concurrency", "10000", NULL);
    }
    struct receiver_rule ok = {0};
    for (int p = 0; p < PARTNERS; p++) {
        char pid[8];
        snprintf(pid, sizeof pid, "%d", p + 1);
        receiver_set_rule(rx, pid, &ok);
    }
}

/* Enqueues n new_mail events with messages of msg_bytes, pipelined, spread
 * over the partners and 1,000 users. */
static void enqueue_many(int n, size_t msg_bytes, int first)
{
    const char *body = script_find("event_enqueue")->body;
    int pending = 0;
    for (int i = 0; i < n; i++) {
        char uid[25], tag[32], eid[128], pid[8], sha1[41];
        wf_uid(uid, (unsigned)(i % 1000));
        snprintf(tag, sizeof tag, "user%d", i % 1000);
        snprintf(pid, sizeof pid, "%d", i % PARTNERS + 1);
        snprintf(eid, sizeof eid, "%s.7.%d", uid, first + i);
        char *payload = wf_new_mail_payload(eid, tag, (unsigned)(first + i), msg_bytes, sha1);
        char aad[200], *sealed = NULL;
        snprintf(aad, sizeof aad, "si:evt:%s", eid);
        crypto_encrypt(wf_keys(), payload, strlen(payload), aad, &sealed);
        xfree(payload);
        int k = wf_shard(uid);
        char ek[256], rl[64], rp[64];
        snprintf(ek, sizeof ek, "si:{%d}:evt:%s", k, eid);
        snprintf(rl, sizeof rl, "si:{%d}:ready:%s", k, pid);
        snprintf(rp, sizeof rp, "si:{%d}:ready_partners", k);
        const char *argv[] = {"EVAL", body,   "3",        ek,    rl,        rp,     eid,
                              pid,    "type", "new_mail", "uid", uid,       "code", "gmail",
                              "tag",  tag,    "sha1",     sha1,  "payload", sealed};
        redisAppendCommandArgv(rc, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
        xfree(sealed);
        if (++pending == 500 || i == n - 1) {
            for (; pending > 0; pending--) {
                redisReply *r = NULL;
                if (redisGetReply(rc, (void **)&r) != REDIS_OK) {
                    fprintf(stderr, "bench_dispatcher: enqueue failed\n");
                    exit(1);
                }
                freeReplyObject(r);
            }
        }
    }
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* ---- 1. Throughput ---- */

static int throughput(const char *label, int n, size_t msg_bytes)
{
    reset();
    enqueue_many(n, msg_bytes, 1);
    struct disp d;
    const char *env[] = {"SUPERIMAP_WEBHOOK_MAX_INFLIGHT=1024", NULL};
    double redis0 = cpu_s(fx.pid), self0 = cpu_s(getpid());
    if (disp_start(&d, env) < 0)
        return -1;
    if (getenv("BENCH_DISPATCHER_PIDS") != NULL) /* for perf record -p */
        fprintf(stderr, "dispatcher pid %ld redis pid %ld\n", (long)d.pid, (long)fx.pid);
    int got = receiver_wait(rx, NULL, n, 120000);
    double disp_cpu = cpu_s(d.pid), redis_cpu = cpu_s(fx.pid) - redis0;
    double self_cpu = cpu_s(getpid()) - self0;
    if (got < n) {
        fprintf(stderr, "bench_dispatcher: %s: %d of %d delivered\n", label, got, n);
        disp_stop(&d);
        return -1;
    }
    struct receiver_request *reqs = malloc((size_t)n * sizeof *reqs);
    size_t m = receiver_requests(rx, reqs, (size_t)n);
    long long t0 = reqs[0].mono_us, t1 = reqs[m - 1].mono_us;
    size_t avg = 0;
    for (size_t i = 0; i < m; i++)
        avg += reqs[i].body_len;
    avg /= m;
    double secs = (double)(t1 - t0) / 1e6;
    printf("| %s | %d | %zu | %.2f | %.0f | %.2f | %.2f | %.2f |\n", label, n, avg, secs,
           (double)(m - 1) / secs, disp_cpu, redis_cpu, self_cpu);
    fflush(stdout);
    free(reqs);
    disp_stop(&d);
    return 0;
}

/* ---- 2. Latency at a fixed rate ---- */

static int latency(int rate, int seconds)
{
    reset();
    struct disp d;
    if (disp_start(&d, NULL) < 0)
        return -1;
    int n = rate * seconds;
    char(*eids)[128] = calloc((size_t)n, sizeof *eids);
    long long *enq = calloc((size_t)n, sizeof *enq);
    long long start = now_us();
    for (int i = 0; i < n; i++) {
        long long due = start + (long long)i * 1000000 / rate;
        long long wait = due - now_us();
        if (wait > 0) {
            struct timespec ts = {wait / 1000000, (wait % 1000000) * 1000}; /* pacing */
            nanosleep(&ts, NULL);
        }
        char uid[25], tag[32], pid[8];
        wf_uid(uid, (unsigned)(i % 1000));
        snprintf(tag, sizeof tag, "user%d", i % 1000);
        snprintf(pid, sizeof pid, "%d", i % PARTNERS + 1);
        enq[i] = now_us();
        wf_new_mail(rc, pid, uid, tag, (unsigned)(100000 + i), 700, eids[i]);
    }
    double achieved = (double)n / ((double)(now_us() - start) / 1e6);
    int got = receiver_wait(rx, NULL, n, 30000);
    struct receiver_request *reqs = malloc((size_t)n * sizeof *reqs);
    size_t m = receiver_requests(rx, reqs, (size_t)n);
    long long *lat = malloc((size_t)n * sizeof *lat);
    int nl = 0;
    /* Ids were made in order: request j's id ends in 100000 + its index. */
    for (size_t i = 0; i < m; i++) {
        const char *dot = strrchr(reqs[i].id, '.');
        int idx = dot ? atoi(dot + 1) - 100000 : -1;
        if (idx >= 0 && idx < n && strcmp(reqs[i].id, eids[idx]) == 0)
            lat[nl++] = reqs[i].mono_us - enq[idx];
    }
    qsort(lat, (size_t)nl, sizeof *lat, cmp_ll);
    if (nl > 0)
        printf("| %d/s (achieved %.0f/s) | %d | %.2f | %.2f | %.2f |\n", rate, achieved, nl,
               (double)lat[nl / 2] / 1000.0, (double)lat[nl * 99 / 100] / 1000.0,
               (double)lat[nl - 1] / 1000.0);
    fflush(stdout);
    free(reqs);
    free(lat);
    free(eids);
    free(enq);
    disp_stop(&d);
    return got < n ? -1 : 0;
}

/* ---- 3. Memory with requests in flight ---- */

static int memory(int n, const char *host_conns)
{
    reset();
    struct receiver_rule hang = {.hang = 1};
    for (int p = 0; p < PARTNERS; p++) {
        char pid[8];
        snprintf(pid, sizeof pid, "%d", p + 1);
        receiver_set_rule(rx, pid, &hang);
    }
    char conns[80];
    snprintf(conns, sizeof conns, "SUPERIMAP_WEBHOOK_HOST_CONNECTIONS=%s", host_conns);
    const char *env[] = {"SUPERIMAP_WEBHOOK_MAX_INFLIGHT=20000", conns,
                         "SUPERIMAP_WEBHOOK_TIMEOUT_MS=600000", NULL};
    struct disp d;
    if (disp_start(&d, env) < 0)
        return -1;
    fixture_nap_ms(500); /* let it settle before the idle reading */
    long idle = rss_kib(d.pid);
    enqueue_many(n, 700, 1);
    /* In flight: every event leased by the dispatcher. */
    long long deadline = now_us() + 60000000;
    long long leased = 0;
    int want_rx = atoi(host_conns) >= n ? n : atoi(host_conns);
    while (now_us() < deadline) {
        leased = 0;
        for (int k = 0; k < WF_SHARDS; k++)
            leased += wf_int(rc, "ZCARD si:{%d}:inflight", k);
        if (leased >= n && receiver_count(rx, NULL) >= want_rx)
            break;
        fixture_nap_ms(50);
    }
    long busy = rss_kib(d.pid);
    printf("| %d | %s | %d | %lld | %ld | %ld | %.1f |\n", n, host_conns, receiver_count(rx, NULL),
           leased, idle, busy, leased > 0 ? (double)(busy - idle) / (double)leased : 0.0);
    fflush(stdout);
    disp_stop(&d);
    return leased >= n ? 0 : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    char copy[384];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(bindir, sizeof bindir, "%.384s/../bin", dirname(copy));
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    wf_keys();
    if (redis_fixture_start(&fx, NULL) < 0)
        return 1;
    rc = redis_fixture_connect(&fx, 30000);
    rx = receiver_start("127.0.0.1", 0, 0);
    if (rc == NULL || rx == NULL) {
        redis_fixture_stop(&fx);
        return 1;
    }
    snprintf(base, sizeof base, "http://127.0.0.1:%d", receiver_port(rx));
    int rc_ = 0;

    printf(
        "Signed webhooks per second, one dispatcher, keep-alive local receiver (%d partners):\n\n",
        PARTNERS);
    printf(
        "| body | events | avg body bytes | seconds | webhooks/s | dispatcher CPU s | redis CPU s "
        "| receiver CPU s |\n|---|---|---|---|---|---|---|---|\n");
    const char *only = getenv("BENCH_DISPATCHER_ONLY"); /* 1k, 100k, latency, memory */
#define RUN(name) (only == NULL || strcmp(only, name) == 0)
    if (RUN("1k"))
        rc_ |= throughput("~1 KiB", 20000, 500);
    if (RUN("100k"))
        rc_ |= throughput("~100 KiB", 3000, 100 * 1024);

    printf("\nEnqueue (event_enqueue.lua) to receipt, at a fixed rate for 5 s:\n\n");
    printf("| rate | events | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    if (RUN("latency"))
        rc_ |= latency(1000, 5);

    printf("\nDispatcher memory with requests in flight (the receiver never answers):\n\n");
    printf("| events | host connections | requests received | leased | idle RSS KiB | "
           "RSS KiB | KiB per event |\n|---|---|---|---|---|---|---|\n");
    if (RUN("memory")) {
        rc_ |= memory(10000, "10000");
        rc_ |= memory(10000, "64");
    }

    receiver_stop(rx);
    redisFree(rc);
    redis_fixture_stop(&fx);
    return rc_ != 0;
}
