/*
 * Benchmarks of the two Redis clients against a private redis-server (started
 * as tests/unit/redis_fixture.h does: unix socket in a mkdtemp() directory,
 * stopped by its PID):
 *
 *   - core/rconn (async, libev): SET/GET with 1,000 commands kept in flight
 *     for about 2 s; GET one at a time (1,000 samples); EVALSHA of the
 *     embedded node_heartbeat script, pipelined and one at a time;
 *   - core/rsync (blocking): GET and EVALSHA round trips (1,000 samples);
 *   - plain hiredis redisCommand() GET round trips, as the baseline of both.
 *
 * Latency is from submission to the reply callback (rconn) or return
 * (rsync, hiredis) on CLOCK_MONOTONIC; for pipelined rows it includes the
 * time a command waits behind the 999 others. ops/s is replies divided by
 * the wall time of the run. Prints
 *
 *   | client | operation | ops/s | p50 µs | p99 µs |
 *
 * and exits non-zero only when Redis cannot be started or a command fails.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/rsync.h"
#include "core/scripts.h"
#include "tests/unit/redis_fixture.h"

#define PIPELINE_DEPTH   1000    /* commands kept in flight */
#define PIPELINE_SEC     2.0     /* the SET/GET run */
#define SCRIPT_SEC       1.0     /* the pipelined EVALSHA run */
#define WARMUP_SEC       0.2     /* pipelined warm-up, not reported */
#define SEQ_SAMPLES      1000    /* one-at-a-time round trips per row */
#define SEQ_WARMUP       100     /* round trips before those, not reported */
#define NKEYS            10000   /* distinct keys SET and GET cycle through */
#define NNODES           64      /* distinct node ids the heartbeat cycles through */
#define VALUE_LEN        64      /* bytes per SET value */
#define MAX_SAMPLES      4000000 /* latencies kept per run; later ones are dropped */
#define WATCHDOG_SLACK_S 15.0    /* a run taking this much longer than planned is aborted */

enum op_kind { OP_SETGET, OP_GET, OP_SCRIPT };

/* Latencies of one run, in seconds. */
struct samples {
    double *v;
    size_t n, cap;
};

/* One measured run of rconn commands: time-bounded (stop_at) or
 * count-bounded (limit), with `depth` commands kept in flight. */
struct run {
    struct ev_loop *loop;
    struct rconn *rc;
    enum op_kind kind;
    double stop_at;  /* no new command after this time; 0: none */
    uint64_t limit;  /* no new command after this many; 0: none */
    uint64_t issued; /* commands submitted */
    uint64_t done;   /* replies that were not errors */
    uint64_t failed; /* errors, error replies included */
    int first_err;
    int inflight;
    int finished; /* nothing in flight and nothing more to send */
    double t_start, t_end;
    struct samples lat;
};

/* One in-flight command; reused for the next one when it completes. */
struct slot {
    struct run *run;
    double t0;
};

static char value[VALUE_LEN + 1];

/* Outlive every run: after an aborted run, rconn_free() still completes the
 * commands in flight, whose privdata points here. */
static struct slot slots[PIPELINE_DEPTH];

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Samples and percentiles ---- */

static void samples_add(struct samples *s, double x)
{
    if (s->n == s->cap) {
        if (s->cap >= MAX_SAMPLES)
            return;
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0 < p <= 1) in microseconds; sorts s. */
static double percentile_us(struct samples *s, double p)
{
    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t rank = (size_t)(p * (double)s->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1] * 1e6;
}

static void print_row(const char *client, const char *op, double ops, struct samples *lat)
{
    printf("| %s | %s | %.0f | %.1f | %.1f |\n", client, op, ops, percentile_us(lat, 0.50),
           percentile_us(lat, 0.99));
    fflush(stdout);
}

/* ---- Waiting on the loop with a deadline ---- */

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    *(int *)w->data = 1;
}

/* Runs the loop until *flag is set or timeout_s passes; returns 1 if set. */
static int wait_for(struct ev_loop *loop, const int *flag, double timeout_s)
{
    int expired = 0;
    ev_timer t;
    ev_timer_init(&t, on_watchdog, timeout_s, 0.);
    t.data = &expired;
    ev_timer_start(loop, &t);
    while (!*flag && !expired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return *flag;
}

/* ---- rconn runs ---- */

static void on_reply(struct rconn *rc, struct redisReply *reply, int err, void *privdata);

static int should_stop(const struct run *r, double now)
{
    return (r->stop_at > 0 && now >= r->stop_at) || (r->limit > 0 && r->issued >= r->limit);
}

/* The node_heartbeat arguments of the i-th beat: 2 KEYS, then ARGV. */
static int heartbeat_args(uint64_t i, char *node_key, size_t keylen, char *id, size_t idlen,
                          const char **argv)
{
    snprintf(id, idlen, "bench-%u", (unsigned)(i % NNODES));
    snprintf(node_key, keylen, "bench:node:%s", id);
    int argc = 0;
    argv[argc++] = "bench:watchers";
    argv[argc++] = node_key;
    argv[argc++] = id;
    argv[argc++] = "60000";
    argv[argc++] = "3600000";
    argv[argc++] = "role";
    argv[argc++] = "watcher";
    argv[argc++] = "host";
    argv[argc++] = "bench-host";
    argv[argc++] = "pid";
    argv[argc++] = "4242";
    argv[argc++] = "state";
    argv[argc++] = "ready";
    return argc;
}

static void submit(struct slot *s)
{
    struct run *r = s->run;
    uint64_t i = r->issued++;
    char key[32];
    snprintf(key, sizeof key, "bench:key:%u", (unsigned)(i % NKEYS));
    int rc;
    s->t0 = now_sec();
    switch (r->kind) {
    case OP_SETGET:
        if (i & 1)
            rc = rconn_command(r->rc, on_reply, s, "GET %s", key);
        else
            rc = rconn_command(r->rc, on_reply, s, "SET %s %b", key, value, (size_t)VALUE_LEN);
        break;
    case OP_GET:
        rc = rconn_command(r->rc, on_reply, s, "GET %s", key);
        break;
    case OP_SCRIPT:
    default: {
        const char *argv[16];
        char node_key[48], id[24];
        int argc = heartbeat_args(i, node_key, sizeof node_key, id, sizeof id, argv);
        rc = rconn_script(r->rc, on_reply, s, "node_heartbeat", 2, argc, argv, NULL);
        break;
    }
    }
    if (rc < 0) {
        r->failed++;
        if (r->first_err == 0)
            r->first_err = rc;
        return;
    }
    r->inflight++;
}

static void on_reply(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    struct slot *s = privdata;
    struct run *r = s->run;
    double t = now_sec();
    r->inflight--;
    if (err < 0) {
        r->failed++;
        if (r->first_err == 0)
            r->first_err = err;
    } else {
        r->done++;
        r->t_end = t;
        samples_add(&r->lat, t - s->t0);
    }
    if (!r->finished && r->failed == 0 && !should_stop(r, t))
        submit(s);
    if (r->inflight == 0)
        r->finished = 1;
}

/*
 * Runs kind with depth commands in flight until seconds pass (seconds > 0)
 * or count commands were sent (count > 0). Fills r; returns 0, or -1 after
 * printing why when a command failed or the run overran its deadline.
 */
static int run_rconn(struct ev_loop *loop, struct rconn *rc, enum op_kind kind, int depth,
                     double seconds, uint64_t count, struct run *r)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->rc = rc;
    r->kind = kind;
    r->limit = count;
    if (depth > PIPELINE_DEPTH)
        depth = PIPELINE_DEPTH;
    r->t_start = now_sec();
    r->t_end = r->t_start;
    if (seconds > 0)
        r->stop_at = r->t_start + seconds;
    for (int i = 0; i < depth && !should_stop(r, r->t_start) && r->failed == 0; i++) {
        slots[i].run = r;
        submit(&slots[i]);
    }
    if (r->inflight == 0)
        r->finished = 1;
    double budget = (seconds > 0 ? seconds : 0) + WATCHDOG_SLACK_S;
    int ok = wait_for(loop, &r->finished, budget);
    if (!ok) {
        /* rconn_free() later completes what is in flight: let it stop here. */
        r->finished = 1;
        fprintf(stderr, "bench_redis: run did not finish within %.0f s\n", budget);
    }
    if (r->failed > 0) {
        fprintf(stderr, "bench_redis: %llu command(s) failed, first: %s\n",
                (unsigned long long)r->failed, err_str(r->first_err));
        return -1;
    }
    return ok ? 0 : -1;
}

/* Releases the latencies of a finished run. */
static void run_release(struct run *r)
{
    xfree(r->lat.v);
    r->lat.v = NULL;
}

static double run_ops(const struct run *r)
{
    double t = r->t_end - r->t_start;
    return t > 0 ? (double)r->done / t : 0;
}

static void on_state(struct rconn *rc, int connected, void *data)
{
    (void)rc;
    *(int *)data = connected;
}

static void on_loaded(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    int *result = privdata;
    *result = err < 0 ? err : 1;
}

static int bench_rconn(const struct redis_fixture *fx)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL) {
        fprintf(stderr, "bench_redis: ev_loop_new failed\n");
        return -1;
    }
    struct rconn_opts opts = {
        .url = fx->url,
        .connect_timeout_ms = 5000,
        .command_timeout_ms = 20000,
        .name = "bench",
    };
    struct rconn *rc = rconn_new(loop, &opts);
    int connected = 0, loaded = 0, status = -1;
    struct run r = {0};
    if (rc == NULL)
        goto out;
    rconn_on_state(rc, on_state, &connected);
    if (!wait_for(loop, &connected, 10.0)) {
        fprintf(stderr, "bench_redis: rconn did not connect within 10 s\n");
        goto out;
    }
    if (rconn_load_scripts(rc, on_loaded, &loaded) < 0 || !wait_for(loop, &loaded, 10.0) ||
        loaded < 0) {
        fprintf(stderr, "bench_redis: rconn_load_scripts failed\n");
        goto out;
    }

    if (run_rconn(loop, rc, OP_SETGET, PIPELINE_DEPTH, WARMUP_SEC, 0, &r) < 0)
        goto out;
    run_release(&r);
    if (run_rconn(loop, rc, OP_SETGET, PIPELINE_DEPTH, PIPELINE_SEC, 0, &r) < 0)
        goto out;
    print_row("core/rconn", "SET/GET 50:50, 1,000 in flight, 64 B values", run_ops(&r), &r.lat);
    run_release(&r);

    if (run_rconn(loop, rc, OP_GET, 1, 0, SEQ_WARMUP, &r) < 0)
        goto out;
    run_release(&r);
    if (run_rconn(loop, rc, OP_GET, 1, 0, SEQ_SAMPLES, &r) < 0)
        goto out;
    print_row("core/rconn", "GET one at a time (1,000 samples)", run_ops(&r), &r.lat);
    run_release(&r);

    if (run_rconn(loop, rc, OP_SCRIPT, PIPELINE_DEPTH, SCRIPT_SEC, 0, &r) < 0)
        goto out;
    print_row("core/rconn", "EVALSHA node_heartbeat, 1,000 in flight", run_ops(&r), &r.lat);
    run_release(&r);

    if (run_rconn(loop, rc, OP_SCRIPT, 1, 0, SEQ_SAMPLES, &r) < 0)
        goto out;
    print_row("core/rconn", "EVALSHA node_heartbeat one at a time (1,000 samples)", run_ops(&r),
              &r.lat);
    run_release(&r);
    status = 0;

out:
    rconn_free(rc); /* completes anything an aborted run left in flight */
    run_release(&r);
    ev_loop_destroy(loop);
    return status;
}

/* ---- rsync and the hiredis baseline ---- */

/* A blocking client: exactly one of the two is set. */
struct blocking {
    struct rsync *rs;  /* core/rsync */
    redisContext *ctx; /* plain hiredis, the baseline */
};

static redisReply *blocking_get(struct blocking *b, const char *key)
{
    if (b->rs != NULL)
        return rsync_command(b->rs, "GET %s", key);
    return redisCommand(b->ctx, "GET %s", key);
}

/* Times n one-at-a-time commands (GET, or node_heartbeat when script) after
 * SEQ_WARMUP unreported ones. Returns 0, or -1 after printing why. */
static int run_blocking(struct blocking *b, int script, uint64_t n, struct samples *lat,
                        double *ops)
{
    double t_start = 0;
    for (uint64_t i = 0; i < SEQ_WARMUP + n; i++) {
        if (i == SEQ_WARMUP)
            t_start = now_sec();
        char key[32];
        snprintf(key, sizeof key, "bench:key:%u", (unsigned)(i % NKEYS));
        double t0 = now_sec();
        redisReply *reply;
        if (script) {
            const char *argv[16];
            char node_key[48], id[24];
            int argc = heartbeat_args(i, node_key, sizeof node_key, id, sizeof id, argv);
            reply = rsync_script(b->rs, "node_heartbeat", 2, argc, argv, NULL);
        } else {
            reply = blocking_get(b, key);
        }
        double t1 = now_sec();
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "bench_redis: blocking command failed: %s\n",
                    reply != NULL   ? reply->str
                    : b->rs != NULL ? rsync_errstr(b->rs)
                                    : b->ctx->errstr);
            if (reply != NULL)
                freeReplyObject(reply);
            return -1;
        }
        freeReplyObject(reply);
        if (i >= SEQ_WARMUP)
            samples_add(lat, t1 - t0);
    }
    double t = now_sec() - t_start;
    *ops = t > 0 ? (double)n / t : 0;
    return 0;
}

static int bench_blocking(const struct redis_fixture *fx)
{
    struct rsync_opts opts = {.url = fx->url, .timeout_ms = 5000};
    struct blocking b = {.rs = rsync_new(&opts)};
    struct samples lat = {0};
    double ops;
    int status = -1;
    if (b.rs == NULL)
        return -1;
    if (run_blocking(&b, 0, SEQ_SAMPLES, &lat, &ops) < 0)
        goto out;
    print_row("core/rsync", "GET round trip (1,000 samples)", ops, &lat);
    lat.n = 0;
    if (run_blocking(&b, 1, SEQ_SAMPLES, &lat, &ops) < 0)
        goto out;
    print_row("core/rsync", "EVALSHA node_heartbeat round trip (1,000 samples)", ops, &lat);
    lat.n = 0;

    struct blocking raw = {.ctx = redis_fixture_connect(fx, 5000)};
    if (raw.ctx == NULL) {
        fprintf(stderr, "bench_redis: hiredis cannot connect to %s\n", fx->sock);
        goto out;
    }
    if (run_blocking(&raw, 0, SEQ_SAMPLES, &lat, &ops) == 0) {
        print_row("hiredis redisCommand (baseline)", "GET round trip (1,000 samples)", ops, &lat);
        status = 0;
    }
    redisFree(raw.ctx);

out:
    xfree(lat.v);
    rsync_free(b.rs);
    return status;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every main does: a dead peer is an error, not a kill */
    log_init("bench_redis", "-", LL_WARN, LOG_FORMAT_TEXT, NULL, NULL);
    if (scripts_init() < 0) {
        fprintf(stderr, "bench_redis: scripts_init failed\n");
        return 1;
    }
    memset(value, 'v', VALUE_LEN);

    struct redis_fixture fx;
    if (redis_fixture_start(&fx, NULL) < 0) {
        fprintf(stderr, "bench_redis: cannot start redis-server (package redis-server)\n");
        redis_fixture_stop(&fx);
        return 1;
    }
    redisReply *info = redis_fixture_cmd(&fx, "INFO server");
    const char *ver =
        info != NULL && info->str != NULL ? strstr(info->str, "redis_version:") : NULL;
    printf("Private redis-server %.*s on a unix socket; one client connection, one thread.\n\n",
           ver != NULL ? (int)strcspn(ver + 14, "\r\n") : 7, ver != NULL ? ver + 14 : "unknown");
    if (info != NULL)
        freeReplyObject(info);

    printf("| client | operation | ops/s | p50 µs | p99 µs |\n");
    printf("|---|---|---:|---:|---:|\n");
    fflush(stdout);
    int status = bench_rconn(&fx);
    if (bench_blocking(&fx) < 0)
        status = -1;

    redis_fixture_stop(&fx);
    scripts_shutdown();
    log_shutdown();
    return status < 0 ? 1 : 0;
}
