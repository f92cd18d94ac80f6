/*
 * superimap-dispatcher benchmarks (docs/architecture.md section 7): one dispatcher
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
 *      the dispatcher runs, from when it owns every shard (before, the first
 *      events wait for their shard to be claimed: its start, which put 50 ms
 *      into the p99 of the first version of this benchmark); p50 / p99 / max
 *      from the enqueue call's start to the receipt of the request;
 *   3. throughput by concurrency: 20,000 events of about 1 KiB for each of
 *      1, 4, 16, 64 and 256 requests at once (partner webhook_concurrency,
 *      SUPERIMAP_WEBHOOK_MAX_INFLIGHT and SUPERIMAP_WEBHOOK_HOST_CONNECTIONS
 *      all set to it), each given 30 s: a level that does not deliver them
 *      all by then shows those it did divided by the 30 s;
 *   4. memory: 10,000 events in flight at once (the receiver reads each
 *      request and never answers; partner concurrency 10,000, one connection
 *      per request); the dispatcher's VmRSS idle and with them in flight.
 *
 * With BENCH_DATA_DIR set (tests/bench/bench.h) it writes results.txt keys
 * and dispatcher_concurrency.dat ("concurrency webhooks_per_s").
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

#include "tests/bench/bench.h"
#include "tests/integration/receiver.c" /* the receiver, built into this program */
#include "tests/integration/webhook_fixture.h"
#include "tests/unit/redis_fixture.h"

#define PARTNERS      4
#define SWEEP_EVENTS  20000 /* per concurrency level */
#define SWEEP_WAIT_MS 30000 /* a level's bound; a slower one shows its partial rate */

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

/* Flushes Redis and the receiver; PARTNERS partners with webhook_concurrency
 * concurrency, answered 200. */
static void reset(const char *concurrency)
{
    freeReplyObject(wf_cmd(rc, "FLUSHALL"));
    receiver_clear(rx);
    for (int p = 0; p < PARTNERS; p++) {
        char pid[12];
        snprintf(pid, sizeof pid, "%d", p + 1);
        wf_partner(rc, pid, base, "bench-api-key-0123456789",
                   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "webhook_concurrency", concurrency,
                   NULL);
    }
    struct receiver_rule ok = {0};
    for (int p = 0; p < PARTNERS; p++) {
        char pid[12];
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
        char uid[25], tag[32], eid[128], pid[12], sha1[41];
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

struct delivery {
    size_t m;         /* requests received */
    size_t avg_bytes; /* their average body */
    double secs;      /* first receipt to last */
    double per_s;
    double disp_cpu, redis_cpu, self_cpu; /* CPU seconds used */
};

/* Enqueues n events with messages of msg_bytes, starts a dispatcher with
 * env and times the receipt of them into out, waiting at most wait_ms for
 * all. Returns 0 when all came, 1 when only out->m did, -1 on failure. */
static int deliver_all(int n, size_t msg_bytes, const char *const *env, int wait_ms,
                       struct delivery *out)
{
    enqueue_many(n, msg_bytes, 1);
    struct disp d;
    double redis0 = bench_cpu_s(fx.pid), self0 = bench_cpu_s(getpid());
    if (disp_start(&d, env) < 0)
        return -1;
    if (getenv("BENCH_DISPATCHER_PIDS") != NULL) /* for perf record -p */
        fprintf(stderr, "dispatcher pid %ld redis pid %ld\n", (long)d.pid, (long)fx.pid);
    int got = receiver_wait(rx, NULL, n, wait_ms);
    out->disp_cpu = bench_cpu_s(d.pid);
    out->redis_cpu = bench_cpu_s(fx.pid) - redis0;
    out->self_cpu = bench_cpu_s(getpid()) - self0;
    disp_stop(&d);
    if (got < 2) {
        fprintf(stderr, "bench_dispatcher: %d of %d delivered\n", got, n);
        return -1;
    }
    struct receiver_request *reqs = malloc((size_t)n * sizeof *reqs);
    out->m = receiver_requests(rx, reqs, (size_t)n);
    out->avg_bytes = 0;
    for (size_t i = 0; i < out->m; i++)
        out->avg_bytes += reqs[i].body_len;
    out->avg_bytes /= out->m;
    out->secs = (double)(reqs[out->m - 1].mono_us - reqs[0].mono_us) / 1e6;
    /* All delivered: the rate between the first receipt and the last. Not
     * all: those delivered over the whole wait (a stall shows as one). */
    out->per_s = got < n ? (double)out->m * 1000.0 / wait_ms : (double)(out->m - 1) / out->secs;
    free(reqs);
    return got < n;
}

static int throughput(const char *label, int n, size_t msg_bytes, const char *result_key)
{
    reset("10000");
    const char *env[] = {"SUPERIMAP_WEBHOOK_MAX_INFLIGHT=1024", NULL};
    struct delivery st;
    if (deliver_all(n, msg_bytes, env, 120000, &st) != 0) {
        fprintf(stderr, "bench_dispatcher: %s: not all %d delivered in 120 s\n", label, n);
        return -1;
    }
    printf("| %s | %d | %zu | %.2f | %.0f | %.2f | %.2f | %.2f |\n", label, n, st.avg_bytes,
           st.secs, st.per_s, st.disp_cpu, st.redis_cpu, st.self_cpu);
    fflush(stdout);
    bench_result(result_key, "%.0f", st.per_s);
    return 0;
}

/* Webhooks/s of ~1 KiB with concurrency c in all: every partner's
 * webhook_concurrency, the dispatcher's SUPERIMAP_WEBHOOK_MAX_INFLIGHT and
 * its connections to the receiver all set to c. Appends a row to dat. */
static int sweep(int c, int n, FILE *dat)
{
    char conc[16], inflight[64], conns[64];
    snprintf(conc, sizeof conc, "%d", c);
    snprintf(inflight, sizeof inflight, "SUPERIMAP_WEBHOOK_MAX_INFLIGHT=%d", c);
    snprintf(conns, sizeof conns, "SUPERIMAP_WEBHOOK_HOST_CONNECTIONS=%d", c);
    reset(conc);
    const char *env[] = {inflight, conns, NULL};
    struct delivery st;
    int all = deliver_all(n, 500, env, SWEEP_WAIT_MS, &st);
    if (all < 0)
        return -1;
    char events[64];
    if (all == 0)
        snprintf(events, sizeof events, "%d", n);
    else
        snprintf(events, sizeof events, "%zu of %d in %d s", st.m, n, SWEEP_WAIT_MS / 1000);
    printf("| %d | %s | %.2f | %.0f | %.2f | %.2f |\n", c, events, st.secs, st.per_s, st.disp_cpu,
           st.redis_cpu);
    fflush(stdout);
    if (dat != NULL)
        fprintf(dat, "%d %.0f\n", c, st.per_s);
    return 0;
}

/* ---- 2. Latency at a fixed rate ---- */

/* 0 once the dispatcher owns every shard's queue (si:{k}:owner), within
 * 10 s; -1 otherwise. Until then events wait for their shard to be
 * claimed: the dispatcher's start, not its latency. */
static int wait_owner_of_every_shard(void)
{
    long long deadline = now_us() + 10000000;
    int owned = 0;
    while (now_us() < deadline) {
        owned = 0;
        for (int k = 0; k < WF_SHARDS; k++)
            owned += (int)wf_int(rc, "EXISTS si:{%d}:owner", k);
        if (owned == WF_SHARDS)
            return 0;
        fixture_nap_ms(10);
    }
    fprintf(stderr, "bench_dispatcher: %d of %d shards owned after 10 s\n", owned, WF_SHARDS);
    return -1;
}

static int latency(int rate, int seconds)
{
    reset("10000");
    struct disp d;
    if (disp_start(&d, NULL) < 0)
        return -1;
    if (wait_owner_of_every_shard() < 0) {
        disp_stop(&d);
        return -1;
    }
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
        char uid[25], tag[32], pid[12];
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
    if (nl > 0) {
        bench_result("dispatcher_enqueue_p50_ms", "%.2f", (double)lat[nl / 2] / 1000.0);
        bench_result("dispatcher_enqueue_p99_ms", "%.2f", (double)lat[nl * 99 / 100] / 1000.0);
    }
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
    reset("10000");
    struct receiver_rule hang = {.hang = 1};
    for (int p = 0; p < PARTNERS; p++) {
        char pid[12];
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
    long idle = bench_rss_kib(d.pid);
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
    long busy = bench_rss_kib(d.pid);
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
    const char *only = getenv("BENCH_DISPATCHER_ONLY"); /* 1k, 100k, latency, concurrency, memory */
#define RUN(name) (only == NULL || strcmp(only, name) == 0)
    if (RUN("1k"))
        rc_ |= throughput("~1 KiB", 20000, 500, "dispatcher_webhooks_per_s");
    if (RUN("100k"))
        rc_ |= throughput("~100 KiB", 3000, 100 * 1024, "dispatcher_webhooks_100k_per_s");

    printf("\nEnqueue (event_enqueue.lua) to receipt, at a fixed rate for 5 s:\n\n");
    printf("| rate | events | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    if (RUN("latency"))
        rc_ |= latency(1000, 5);

    printf("\n~1 KiB signed webhooks per second by concurrency: partner webhook_concurrency, "
           "SUPERIMAP_WEBHOOK_MAX_INFLIGHT and SUPERIMAP_WEBHOOK_HOST_CONNECTIONS all set to "
           "it:\n\n");
    printf("| concurrency | events | seconds | webhooks/s | dispatcher CPU s | redis CPU s "
           "|\n|---|---|---|---|---|---|\n");
    if (RUN("concurrency")) {
        static const int levels[] = {1, 4, 16, 64, 256};
        FILE *dat = bench_data_open("dispatcher_concurrency.dat", "w");
        if (dat != NULL)
            fprintf(dat,
                    "# ~1 KiB signed webhooks/s by concurrency\n# concurrency webhooks_per_s\n");
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
            rc_ |= sweep(levels[i], SWEEP_EVENTS, dat);
        if (dat != NULL)
            fclose(dat);
    }

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
