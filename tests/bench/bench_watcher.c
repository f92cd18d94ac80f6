/*
 * superimap-watcher benchmarks (docs/architecture.md section 7), printed as Markdown
 * tables; nothing here judges the numbers.
 *
 * Idle sessions. For each scenario (1k, 5k, 10k and 19k plaintext sessions,
 * 10k implicit-TLS sessions, then three watchers holding 57k together and six
 * holding 100k) it starts, per watcher, a private redis-server, a
 * superimap-fake-imapd on its own loopback address (127.0.0.1, .2, ...: each
 * process stays under the 20,000 file limit and each address has its own
 * ephemeral ports) and the watcher; reads the watcher's RSS and Redis's
 * used_memory once it is ready with no users; writes the users (hash, shard
 * set, si:changes entry, as the api does) and times how long until /metrics
 * shows every session watching (IDLE); lets it settle, reads RSS and
 * used_memory again and the CPU time used over IDLE_SAMPLE_S idle seconds. RSS
 * per session = (RSS with sessions - RSS without) / sessions, which includes
 * everything a user costs the watcher (registry entry, lease slot, session,
 * parser, libev, OpenSSL), not the kernel's socket buffers. Redis per user =
 * used_memory delta / users (user hash, shard set member, change-stream entry,
 * lease, cursor). The three-watcher row uses three Redis servers: placement
 * across watchers is the fleet issue's; here each watcher takes every user it
 * sees. Logins are not paced beyond SUPERIMAP_IMAP_LOGINS_PER_SEC 20,000 per
 * watcher, a login storm: when renewals shared the Redis connection with the
 * sessions, three watchers at that rate queued their renewals behind tens of
 * thousands of session scripts for over 10 s on this loaded 2-core machine and
 * fenced themselves over and over, so logins were paced at 6,000/s on the
 * machine. Renewals now have their own connection and the sessions at most 256
 * calls in flight (docs/watcher.md): unpaced, the three watchers held 57,000
 * sessions within 21.1 s and none fenced (at 3c9ebea). The fences column sums
 * superimap_watcher_fences_total over the scenario's watchers. The six
 * watchers' scenario (100,000 sessions, each watcher ceil(100,000 / 6)) also
 * records its cold start: every SERIES_MS from the first user written until
 * every session is in IDLE, and once more settled and idle, the sessions in
 * IDLE and the watchers' RSS, in all and each.
 *
 * Ramp. One watcher gets 19k plaintext users, then (afresh) 10k TLS users,
 * in RAMP_STEPS equal steps: after each step, once every session is in IDLE
 * and RAMP_SETTLE_MS later, its RSS is read: RSS against sessions as the
 * watcher fills up, transient memory (TLS handshakes, login buffers) kept by
 * the allocator included.
 *
 * Latency, end to end. 1,000 idle plaintext sessions of partner 1, whose
 * webhooks go to the receiver of tests/integration/receiver.c (compiled in
 * here, on a thread of this process, signatures not checked), and one
 * superimap-dispatcher; messages are appended through fake-imapd's control
 * channel at each rate of a sweep in turn on that one pipeline (500, 1,000,
 * 2,000, 3,000 and 5,000 per second, LAT_SECONDS at 1,000/s and
 * LAT_SWEEP_SECONDS at the others; BENCH_MAIL_RATE: that rate alone, for
 * LAT_SECONDS). From the append sent: to the first Redis keyspace
 * notification of the event hash (record_mail's HSET, timestamped by a
 * reader thread), and to the first receipt of its webhook; p50, p90, p99,
 * p99.9 and max of each, per rate. Also Redis's own cost per mail over that
 * path at each rate (commands and CPU, from INFO, net of the idle rate
 * measured for 2 s before the first; docs/capacity.md).
 *
 * With BENCH_DATA_DIR set (tests/bench/bench.h) it writes results.txt keys
 * and the plot data watcher_rss_plain.dat, watcher_rss_tls.dat ("sessions
 * rss_kib" after each ramp step), sessions_100k.dat (the six watchers' cold
 * start, "t_s sessions rss_kib rss_w1 ... rss_w6"), latency.dat (histogram
 * of the 1,000/s round, "ms_low ms_high recorded webhook") and
 * latency_rates.dat (a line per rate: tests/bench/plot_latency_rates.gp).
 *
 * Every child gets PR_SET_PDEATHSIG and is stopped by its PID. BENCH_SCALE
 * (a float, default 1) scales the session counts for quick runs; BENCH_ONLY
 * runs only the scenarios whose name contains it ("TLS", "ramp", "latency").
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/rig.h"
#include "tests/integration/receiver.c" /* the receiver, built into this program */

#define MAX_W             RIG_MAX_W
#define SETTLE_S          3.0
#define IDLE_SAMPLE_S     5.0
#define RAMP_STEPS        10
#define RAMP_SETTLE_MS    300
#define LAT_USERS         1000
#define LAT_RATE_DEFAULT  1000 /* the sweep's round of the histogram and section 7's row */
#define LAT_SECONDS       5    /* of that round, or of a BENCH_MAIL_RATE run */
#define LAT_SWEEP_SECONDS 3    /* of the sweep's other rounds */
#define LAT_MAX_RATES     8

/* The latency run's mail rates, in turn on one pipeline (BENCH_MAIL_RATE: that one). */
static const int lat_sweep[] = {500, 1000, 2000, 3000, 5000};

static char certdir[64];

/* ---- Idle scenario ---- */

struct scenario {
    const char *name;
    int sessions; /* in all */
    int watchers;
    int tls;
    const char *series; /* data file of the cold start's time series, or NULL */
};

/* Machine-readable results of a scenario that held every session (bench.h;
 * later scenarios are larger, and the last line of a key wins). */
static void idle_results(const struct scenario *sc, int sessions, double per_session,
                         double redis_per_user, double est_s, double fences)
{
    if (sc->watchers == MAX_W) {
        bench_result("watcher_sessions_100k", "%d", sessions);
        bench_result("watcher_100k_watchers", "%d", sc->watchers);
        bench_result("watcher_100k_established_s", "%.1f", est_s);
        bench_result("watcher_100k_fences", "%.0f", fences);
        bench_result("watcher_100k_session_bytes", "%.0f", per_session);
    } else if (sc->watchers > 1) {
        bench_result("watcher_sessions_fleet", "%d", sessions);
        bench_result("watcher_fleet_size", "%d", sc->watchers);
    } else if (sc->tls) {
        bench_result("watcher_session_bytes_tls", "%.0f", per_session);
        bench_result("watcher_sessions_tls", "%d", sessions);
    } else {
        bench_result("watcher_sessions_per_watcher", "%d", sessions);
        bench_result("watcher_session_bytes_plain", "%.0f", per_session);
        bench_result("redis_bytes_per_user", "%.0f", redis_per_user);
        bench_result("redis_users", "%d", sessions);
    }
}

static int run_idle(const struct scenario *sc, struct crypto_keys *keys)
{
    int nw = sc->watchers, per = (sc->sessions + nw - 1) / nw; /* at least sessions in all */
    struct watcher w[MAX_W];
    struct fake f[MAX_W];
    long long mem0[MAX_W];
    FILE *series = NULL;
    double t0 = 0;
    memset(w, 0, sizeof w);
    memset(f, 0, sizeof f);
    int rc = 0;
    for (int i = 0; i < nw && rc == 0; i++) {
        rc = redis_fixture_start(&w[i].fx, NULL);
        if (rc == 0)
            rc = fake_start(&f[i], w[i].fx.dir, i, per, sc->tls, NULL);
        if (rc == 0)
            rc = watcher_start(&w[i], i, per, NULL);
    }
    if (rc == 0) {
        fixture_nap_ms(1000); /* settle before the baseline, not a wait for a condition */
        for (int i = 0; i < nw && rc == 0; i++) {
            w[i].rss0 = bench_rss_kib(w[i].c.pid);
            redisReply *r = redis_fixture_cmd(
                &w[i].fx, "HSET si:provider:b code b imap_host %s imap_port %d tls %s", f[i].addr,
                f[i].port, sc->tls ? "implicit" : "none");
            freeReplyObject(r);
            mem0[i] = redis_used_memory(&w[i].fx);
        }
        series = sc->series != NULL ? bench_data_open(sc->series, "w") : NULL;
        if (series != NULL) {
            fprintf(series,
                    "# %s from a cold start: seconds from the first user written, sessions in "
                    "IDLE in all, VmRSS KiB of the %d watchers in all and of each\n# t_s "
                    "sessions rss_kib",
                    sc->name, nw);
            for (int i = 0; i < nw; i++)
                fprintf(series, " rss_w%d", i + 1);
            fputc('\n', series);
        }
        t0 = fixture_now();
        if (series != NULL)
            series_row(series, w, nw, t0);
        for (int i = 0; i < nw && rc == 0; i++) {
            rc = create_users(&w[i].fx, "b", 0, per, keys, NULL);
            if (series != NULL)
                series_row(series, w, nw, t0); /* the first watchers log in meanwhile */
        }
        if (rc == 0)
            rc = wait_established(w, nw, per, t0, sc->name, series);
    }
    if (rc == 0) {
        fixture_nap_ms((long)(SETTLE_S * 1000));
        double c0[MAX_W];
        for (int i = 0; i < nw; i++)
            c0[i] = bench_cpu_s(w[i].c.pid);
        fixture_nap_ms((long)(IDLE_SAMPLE_S * 1000));
        long d = 0, fr = 0;
        long long mem = 0;
        double est = 0, cpu = 0, fences = 0;
        for (int i = 0; i < nw; i++) {
            fences += metric(w[i].port, "superimap_watcher_fences_total");
            w[i].cpu_pct = (bench_cpu_s(w[i].c.pid) - c0[i]) / IDLE_SAMPLE_S * 100.0;
            w[i].rss1 = bench_rss_kib(w[i].c.pid);
            d += w[i].rss1 - w[i].rss0;
            fr += bench_rss_kib(f[i].c.pid);
            mem += redis_used_memory(&w[i].fx) - mem0[i];
            est = w[i].est_s > est ? w[i].est_s : est;
            cpu += w[i].cpu_pct;
        }
        double per_session = (double)d * 1024.0 / (double)(per * nw);
        double redis_per_user = (double)mem / (double)(per * nw);
        printf("| %s | %d | %d | %s | %ld | %ld | %.0f | %.2f | %.1f | %.0f | %ld | %.0f |\n",
               sc->name, per * nw, nw, sc->tls ? "TLS" : "plain", w[0].rss0, w[0].rss1, per_session,
               cpu / nw, est, fences, fr / 1024, redis_per_user);
        fflush(stdout);
        idle_results(sc, per * nw, per_session, redis_per_user, est, fences);
        if (series != NULL)
            series_row(series, w, nw, t0); /* settled and idle */
    } else {
        printf("| %s | failed: see stderr | | | | | | | | | | |\n", sc->name);
    }
    if (series != NULL)
        fclose(series);
    for (int i = 0; i < nw; i++) {
        stop(&w[i].c);
        fake_stop(&f[i]);
        redis_fixture_stop(&w[i].fx);
    }
    return rc;
}

/* ---- Ramp: RSS as sessions are added ---- */

/* Adds sessions users to one watcher in RAMP_STEPS equal steps; after each,
 * once every session is watching and RAMP_SETTLE_MS later, reads the
 * watcher's RSS: a table row, and a "sessions rss_kib" line of
 * watcher_rss_<transport>.dat (run.sh plots them). */
static int run_ramp(const char *name, int sessions, int tls, struct crypto_keys *keys)
{
    struct watcher w;
    struct fake f;
    memset(&w, 0, sizeof w);
    memset(&f, 0, sizeof f);
    const char *transport = tls ? "TLS" : "plain";
    char datname[64];
    snprintf(datname, sizeof datname, "watcher_rss_%s.dat", tls ? "tls" : "plain");
    FILE *dat = bench_data_open(datname, "w");
    int rc = redis_fixture_start(&w.fx, NULL);
    if (rc == 0)
        rc = fake_start(&f, w.fx.dir, 0, sessions, tls, NULL);
    if (rc == 0)
        rc = watcher_start(&w, 0, sessions, NULL);
    if (rc == 0) {
        fixture_nap_ms(1000); /* settle before the baseline, not a wait for a condition */
        w.rss0 = bench_rss_kib(w.c.pid);
        redisReply *r =
            redis_fixture_cmd(&w.fx, "HSET si:provider:b code b imap_host %s imap_port %d tls %s",
                              f.addr, f.port, tls ? "implicit" : "none");
        freeReplyObject(r);
        printf("| %s | 0 | %ld | |\n", transport, w.rss0);
        if (dat != NULL)
            fprintf(dat, "# %s: sessions watching, watcher VmRSS KiB\n# sessions rss_kib\n0 %ld\n",
                    name, w.rss0);
    }
    for (int step = 1; step <= RAMP_STEPS && rc == 0; step++) {
        int from = sessions * (step - 1) / RAMP_STEPS, to = sessions * step / RAMP_STEPS;
        w.est_s = 0;
        rc = create_users(&w.fx, "b", from, to - from, keys, NULL);
        if (rc == 0)
            rc = wait_established(&w, 1, to, fixture_now(), name, NULL);
        if (rc == 0) {
            fixture_nap_ms(RAMP_SETTLE_MS);
            long rss = bench_rss_kib(w.c.pid);
            printf("| %s | %d | %ld | %.0f |\n", transport, to, rss,
                   (double)(rss - w.rss0) * 1024.0 / to);
            fflush(stdout);
            if (dat != NULL)
                fprintf(dat, "%d %ld\n", to, rss);
        }
    }
    if (rc != 0)
        printf("| %s | failed: see stderr | | |\n", transport);
    if (dat != NULL)
        fclose(dat);
    stop(&w.c);
    fake_stop(&f);
    redis_fixture_stop(&w.fx);
    return rc;
}

/* ---- Latency ---- */

/* Histogram of latencies, 10 bins per decade from 0.1 ms to 100 s (run.sh
 * plots it). */
#define HIST_MIN_MS     0.1
#define HIST_PER_DECADE 10
#define HIST_BINS       60

/* The round of the rate sweep under way: its messages are each user's
 * message UIDs base + 1 .. base + per_user. */
struct lat_round {
    int base, per_user;
};

struct lat_reader {
    redisContext *sub;
    volatile int stop;
    pthread_mutex_t lock; /* guards round and seen against the next round's reset */
    struct lat_round round;
    /* First arrival time by user index and message number in the round (-1 until seen). */
    double *seen; /* [LAT_USERS * round.per_user] */
};

/* The slot (user index * per_user + message number in the round) of event
 * id "<uid>.<uidvalidity>.<message UID>", uid being %024x of user index + 1,
 * or -1 for an event not made in this round. */
static int lat_slot(const char *eid, struct lat_round r)
{
    unsigned u = (unsigned)strtoul(eid, NULL, 16) - 1;
    const char *dot = strrchr(eid, '.');
    long muid = dot ? strtol(dot + 1, NULL, 10) - r.base : 0;
    if (u >= LAT_USERS || muid < 1 || muid > r.per_user)
        return -1;
    return (int)u * r.per_user + (int)muid - 1;
}

static void *reader_main(void *arg)
{
    struct lat_reader *lr = arg;
    while (!lr->stop) {
        redisReply *r = NULL;
        if (redisGetReply(lr->sub, (void **)&r) != REDIS_OK)
            break; /* shut down by main(), or Redis went away */
        double now = fixture_now();
        /* ["pmessage", pattern, "__keyspace@0__:si:{k}:evt:<uid>.<uv>.<n>", "hset"]; the
         * first HSET is record_mail's, later ones the dispatcher's. */
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
            strcmp(r->element[3]->str, "hset") == 0) {
            const char *e = strstr(r->element[2]->str, ":evt:");
            pthread_mutex_lock(&lr->lock);
            int slot = e != NULL ? lat_slot(e + 5, lr->round) : -1;
            if (slot >= 0 && lr->seen[slot] < 0)
                lr->seen[slot] = now;
            pthread_mutex_unlock(&lr->lock);
        }
        freeReplyObject(r);
    }
    return NULL;
}


/* Starts a dispatcher on w's Redis; ready once its heartbeat is in
 * si:dispatchers. */
static int dispatcher_start(struct child *d, const struct watcher *w)
{
    char path[512], url[340];
    snprintf(path, sizeof path, "%s/superimap-dispatcher", bin);
    snprintf(d->log, sizeof d->log, "%s/dispatcher.log", w->fx.dir);
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", w->fx.url);
    char *envp[] = {url,
                    (char *)"SUPERIMAP_ENCRYPTION_KEY=" WF_KEY,
                    (char *)"SUPERIMAP_NODE_ID=bench-d0",
                    (char *)"SUPERIMAP_HTTP_ADDR=127.0.0.1:0",
                    (char *)"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                    (char *)"SUPERIMAP_LOG_LEVEL=warn",
                    NULL};
    d->pid = spawn(path, envp, d->log);
    double deadline = fixture_now() + READY_S;
    while (d->pid > 0 && redis_fixture_int(&w->fx, "ZCARD si:dispatchers") <= 0) {
        if (fixture_now() > deadline || waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            fprintf(stderr, "bench_watcher: dispatcher not ready; see %s\n", d->log);
            return -1;
        }
        fixture_nap_ms(20);
    }
    return d->pid > 0 ? 0 : -1;
}

/* Latencies in ms of the n messages sent at sent[i] that arrived (at[i] >=
 * 0), sorted, into lat; returns how many. */
static int lat_collect(const double *sent, const double *at, int n, double *lat)
{
    int nl = 0;
    for (int i = 0; i < n; i++)
        if (at[i] >= 0)
            lat[nl++] = (at[i] - sent[i]) * 1000.0;
    qsort(lat, (size_t)nl, sizeof *lat, cmp_double);
    return nl;
}


/* One table row: rate asked, stage, appended, rate achieved, arrived, p50,
 * p90, p99, p99.9, max. */
static void lat_row(int rate, const char *stage, int total, double achieved, const double *lat,
                    int nl)
{
    printf("| %d | %s | %d | %.0f | %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", rate, stage, total,
           achieved, nl, pct(lat, nl, 0.5), pct(lat, nl, 0.9), pct(lat, nl, 0.99),
           pct(lat, nl, 0.999), pct(lat, nl, 1));
}

static int hist_bin(double ms)
{
    int b = ms > HIST_MIN_MS ? (int)floor(log10(ms / HIST_MIN_MS) * HIST_PER_DECADE) : 0;
    return b < HIST_BINS ? b : HIST_BINS - 1;
}

/* Writes latency.dat: "ms_low ms_high recorded webhook" counts per bin,
 * from the first bin with a count to the last. */
static void lat_histogram(int rate, const double *rec, int nr, const double *hook, int nh)
{
    FILE *f = bench_data_open("latency.dat", "w");
    if (f == NULL)
        return;
    int counts[2][HIST_BINS] = {{0}};
    for (int i = 0; i < nr; i++)
        counts[0][hist_bin(rec[i])]++;
    for (int i = 0; i < nh; i++)
        counts[1][hist_bin(hook[i])]++;
    int lo = HIST_BINS, hi = -1;
    for (int b = 0; b < HIST_BINS; b++)
        if (counts[0][b] || counts[1][b]) {
            lo = b < lo ? b : lo;
            hi = b;
        }
    fprintf(f,
            "# new mail (fake-imapd APPEND) to event recorded and to webhook received, "
            "%d mails/s\n# ms_low ms_high recorded webhook\n",
            rate);
    for (int b = lo; b <= hi; b++)
        fprintf(f, "%g %g %d %d\n", HIST_MIN_MS * pow(10, (double)b / HIST_PER_DECADE),
                HIST_MIN_MS * pow(10, (double)(b + 1) / HIST_PER_DECADE), counts[0][b],
                counts[1][b]);
    fclose(f);
}

/* Sets up the pipeline: users of partner 1, whose webhooks go to rx, and
 * their sessions watching; keyspace notifications of event hashes on. */
static int lat_setup(struct watcher *w, struct fake *f, struct child *d, struct receiver *rx,
                     struct crypto_keys *keys)
{
    int rc = redis_fixture_start(&w->fx, NULL);
    if (rc == 0)
        rc = fake_start(f, w->fx.dir, 0, LAT_USERS, 0, NULL);
    if (rc == 0)
        rc = watcher_start(w, 0, LAT_USERS, NULL);
    redisContext *c = rc == 0 ? redis_fixture_connect(&w->fx, 3000) : NULL;
    if (c == NULL)
        return -1;
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", receiver_port(rx));
    wf_partner(c, "1", base, "bench-api-key-0123456789", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               NULL);
    freeReplyObject(wf_cmd(c, "HSET si:provider:b code b imap_host %s imap_port %d tls none",
                           f->addr, f->port));
    freeReplyObject(wf_cmd(c, "CONFIG SET notify-keyspace-events Kh"));
    redisFree(c);
    rc = create_users(&w->fx, "b", 0, LAT_USERS, keys, NULL);
    if (rc == 0)
        rc = dispatcher_start(d, w);
    double deadline = fixture_now() + 120;
    while (rc == 0 && metric(w->port, "superimap_watcher_sessions_watching") < LAT_USERS) {
        if (fixture_now() > deadline)
            rc = -1;
        fixture_nap_ms(50);
    }
    return rc;
}

/* Appends total messages at rate a second, user i % LAT_USERS, recording
 * when each was sent in sent[slot]. Returns the rate achieved, or -1. */
static double lat_append(struct fake *f, int rate, int total, int per_user, double *sent)
{
    double t0 = fixture_now();
    for (int i = 0; i < total; i++) {
        double due = t0 + (double)i / rate;
        while (fixture_now() < due) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL); /* pacing at the target rate */
        }
        int u = i % LAT_USERS, n = i / LAT_USERS;
        char req[64], reply[64], m[128];
        int len = snprintf(m, sizeof m, "From: l@example.com\r\nSubject: %d\r\n\r\nx\r\n", i);
        snprintf(req, sizeof req, "APPEND user%d %d", u + 1, len);
        sent[u * per_user + n] = fixture_now();
        if (ctl(f, req, m, (size_t)len, reply, sizeof reply) < 0)
            return -1;
    }
    return total / (fixture_now() - t0);
}

/* The first receipt time of each slot's webhook into hook_at (-1 when none). */
static void lat_webhooks(struct receiver *rx, int nslots, struct lat_round round, double *hook_at)
{
    for (int i = 0; i < nslots; i++)
        hook_at[i] = -1;
    size_t max = (size_t)nslots * 2 + 1000; /* duplicates and other events too */
    struct receiver_request *reqs = malloc(max * sizeof *reqs);
    size_t m = receiver_requests(rx, reqs, max);
    for (size_t i = 0; i < m; i++) {
        int slot = lat_slot(reqs[i].id, round);
        if (slot >= 0 && hook_at[slot] < 0)
            hook_at[slot] = (double)reqs[i].mono_us / 1e6;
    }
    free(reqs);
}

/* The latency run's pipeline (lat_setup()) and what a round needs. */
struct lat_ctx {
    struct watcher w;
    struct fake f;
    struct child d;
    struct receiver *rx;
    struct lat_reader lr;
    double *sent, *hook_at, *rec, *hook; /* [the largest round's slots] */
    double idle_cmd_s, idle_cpu_s;       /* Redis's rates with no mail */
    int base;                            /* message UIDs per user of earlier rounds */
};

/* What one round measured, for the Redis table after the sweep. */
struct lat_cost {
    int rate;
    double cmds, cpu_us;
};

/* The slots of a round at rate for seconds: every user gets as many. */
static int lat_per_user(int rate, int seconds)
{
    return (rate * seconds + LAT_USERS - 1) / LAT_USERS;
}

/* Machine-readable results of a round: mail_<rate>_* for the sweep, and the
 * keys of docs/architecture.md section 7's row (mail_*) for the 1,000/s
 * round or a lone BENCH_MAIL_RATE one. */
static void lat_results(int rate, int headline, double achieved, int total, const double *rec,
                        int nr, const double *hook, int nh, const struct lat_cost *cost)
{
    char k[64];
    snprintf(k, sizeof k, "mail_%d_rate", rate);
    bench_result(k, "%.0f", achieved);
    snprintf(k, sizeof k, "mail_%d_appended", rate);
    bench_result(k, "%d", total);
    snprintf(k, sizeof k, "mail_%d_webhooks", rate);
    bench_result(k, "%d", nh);
    if (nh > 0) {
        snprintf(k, sizeof k, "mail_%d_webhook_p99_ms", rate);
        bench_result(k, "%.2f", pct(hook, nh, 0.99));
    }
    FILE *f = bench_data_open("latency_rates.dat", "a");
    if (f != NULL) {
        fprintf(f, "%d %.2f %.2f %.2f %.2f %.2f %d %d %.2f %.2f %.2f %.2f %.2f %d %.0f\n", rate,
                pct(hook, nh, 0.5), pct(hook, nh, 0.9), pct(hook, nh, 0.99), pct(hook, nh, 0.999),
                pct(hook, nh, 1), nh, total, pct(rec, nr, 0.5), pct(rec, nr, 0.9),
                pct(rec, nr, 0.99), pct(rec, nr, 0.999), pct(rec, nr, 1), nr, achieved);
        fclose(f);
    }
    if (!headline)
        return;
    bench_result("redis_commands_per_mail", "%.1f", cost->cmds);
    bench_result("redis_cpu_us_per_mail", "%.0f", cost->cpu_us);
    bench_result("mail_rate", "%.0f", achieved);
    bench_result("mail_appended", "%d", total);
    if (nr > 0) {
        bench_result("mail_recorded_p50_ms", "%.2f", pct(rec, nr, 0.5));
        bench_result("mail_recorded_p99_ms", "%.2f", pct(rec, nr, 0.99));
    }
    bench_result("mail_webhooks", "%d", nh);
    if (nh > 0) {
        bench_result("mail_webhook_p50_ms", "%.2f", pct(hook, nh, 0.5));
        bench_result("mail_webhook_p99_ms", "%.2f", pct(hook, nh, 0.99));
    }
}

/*
 * One round of the sweep: appends at rate for seconds, waits (30 s at most)
 * for every event and webhook, prints its two rows and writes its results;
 * headline marks the round whose histogram and mail_* keys the report
 * shows. Returns 0, or -1 when a message was not recorded or delivered.
 */
static int lat_run_round(struct lat_ctx *x, int rate, int seconds, int headline,
                         struct lat_cost *cost)
{
    struct lat_round round = {x->base, lat_per_user(rate, seconds)};
    int total = round.per_user * LAT_USERS, nslots = total;
    pthread_mutex_lock(&x->lr.lock);
    x->lr.round = round;
    for (int i = 0; i < nslots; i++)
        x->lr.seen[i] = x->sent[i] = -1;
    pthread_mutex_unlock(&x->lr.lock);
    receiver_clear(x->rx);
    x->base += round.per_user;
    struct redis_work busy0 = redis_work_now(&x->w.fx);
    double busy_t0 = fixture_now();
    double achieved = lat_append(&x->f, rate, total, round.per_user, x->sent);
    if (achieved < 0)
        return -1;
    double deadline = fixture_now() + 30;
    while (fixture_now() < deadline) {
        int seen = 0;
        pthread_mutex_lock(&x->lr.lock);
        for (int i = 0; i < nslots; i++)
            seen += x->lr.seen[i] >= 0;
        pthread_mutex_unlock(&x->lr.lock);
        if (seen >= total && receiver_count(x->rx, NULL) >= total)
            break;
        fixture_nap_ms(50);
    }
    struct redis_work busy1 = redis_work_now(&x->w.fx);
    double busy_s = fixture_now() - busy_t0;
    cost->rate = rate;
    cost->cmds = (busy1.commands - busy0.commands - x->idle_cmd_s * busy_s) / total;
    cost->cpu_us = (busy1.cpu_s - busy0.cpu_s - x->idle_cpu_s * busy_s) * 1e6 / total;
    lat_webhooks(x->rx, nslots, round, x->hook_at);
    pthread_mutex_lock(&x->lr.lock);
    int nr = lat_collect(x->sent, x->lr.seen, nslots, x->rec);
    pthread_mutex_unlock(&x->lr.lock);
    int nh = lat_collect(x->sent, x->hook_at, nslots, x->hook);
    lat_row(rate, "event recorded", total, achieved, x->rec, nr);
    lat_row(rate, "webhook received", total, achieved, x->hook, nh);
    fflush(stdout);
    if (headline)
        lat_histogram(rate, x->rec, nr, x->hook, nh);
    lat_results(rate, headline, achieved, total, x->rec, nr, x->hook, nh, cost);
    return nr < total || nh < total ? -1 : 0;
}

/* Starts the reader of keyspace notifications on a thread; 0 or -1. */
static int lat_reader_start(struct lat_ctx *x, pthread_t *th)
{
    x->lr.sub = redis_fixture_connect(&x->w.fx, 600000);
    redisReply *r =
        x->lr.sub ? redisCommand(x->lr.sub, "PSUBSCRIBE __keyspace@0__:si:*:evt:*") : NULL;
    int rc = r != NULL ? 0 : -1;
    freeReplyObject(r);
    if (rc == 0 && pthread_create(th, NULL, reader_main, &x->lr) != 0)
        rc = -1;
    return rc;
}

/*
 * New mail to recorded event and to webhook received: fake-imapd APPEND ->
 * watcher (IDLE EXISTS, FETCH, record_mail) -> Redis -> dispatcher -> the
 * receiver on a thread of this process, at each rate of rates in turn on
 * one pipeline. Times: the APPEND sent on the control channel; the first
 * keyspace notification of the event hash; the first receipt of its
 * webhook (CLOCK_MONOTONIC throughout).
 */
static int run_latency(struct crypto_keys *keys, const int *rates, int nrates)
{
    static struct lat_ctx x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.lr.lock, NULL);
    int most = 0;
    for (int i = 0; i < nrates; i++) {
        int n = lat_per_user(rates[i], LAT_SECONDS) * LAT_USERS;
        most = n > most ? n : most;
    }
    x.lr.seen = calloc((size_t)most, sizeof *x.lr.seen);
    x.sent = calloc((size_t)most, sizeof *x.sent);
    x.hook_at = calloc((size_t)most, sizeof *x.hook_at);
    x.rec = calloc((size_t)most, sizeof *x.rec);
    x.hook = calloc((size_t)most, sizeof *x.hook);
    struct lat_cost cost[LAT_MAX_RATES];
    x.rx = receiver_start("127.0.0.1", 0, 0);
    int rc = x.rx != NULL ? lat_setup(&x.w, &x.f, &x.d, x.rx, keys) : -1;
    pthread_t th;
    int have_thread = rc == 0 && lat_reader_start(&x, &th) == 0;
    if (!have_thread)
        rc = -1;
    FILE *dat = rc == 0 ? bench_data_open("latency_rates.dat", "w") : NULL;
    if (dat != NULL) {
        fprintf(dat, "# new mail to webhook received (ms) and to event recorded, by mail rate\n"
                     "# rate p50 p90 p99 p999 max delivered sent rec_p50 rec_p90 rec_p99 "
                     "rec_p999 rec_max recorded achieved\n");
        fclose(dat);
    }
    if (rc == 0) {
        /* Redis's own cost per mail (record, queue, claim, delivery result)
         * is net of what the idle pipeline costs over the same time
         * (renewals, heartbeats, claims that find nothing), measured first. */
        struct redis_work idle0 = redis_work_now(&x.w.fx);
        double idle_t0 = fixture_now();
        fixture_nap_ms(2000);
        struct redis_work idle1 = redis_work_now(&x.w.fx);
        double idle_s = fixture_now() - idle_t0;
        x.idle_cmd_s = (idle1.commands - idle0.commands) / idle_s;
        x.idle_cpu_s = (idle1.cpu_s - idle0.cpu_s) / idle_s;
    }
    int ran = 0;
    for (int i = 0; i < nrates && rc == 0; i++, ran++) {
        int headline = nrates == 1 || rates[i] == LAT_RATE_DEFAULT;
        int seconds = headline ? LAT_SECONDS : LAT_SWEEP_SECONDS;
        if (lat_run_round(&x, rates[i], seconds, headline, &cost[i]) < 0)
            rc = -1;
    }
    if (rc == 0)
        printf("\nThe watcher's superimap_watcher_new_mail_seconds_count: %.0f.\n",
               metric(x.w.port, "superimap_watcher_new_mail_seconds_count"));
    if (ran > 0) {
        printf("\nRedis per mail, net of the idle pipeline (%.0f commands/s, %.1f %% CPU, "
               "measured over 2 s before the first rate):\n\n| mails/s | commands | Redis CPU "
               "µs | mails/s one Redis core would take |\n|---:|---:|---:|---:|\n",
               x.idle_cmd_s, x.idle_cpu_s * 100);
        for (int i = 0; i < ran; i++)
            printf("| %d | %.1f | %.0f | %.0f |\n", cost[i].rate, cost[i].cmds, cost[i].cpu_us,
                   cost[i].cpu_us > 0 ? 1e6 / cost[i].cpu_us : 0);
        printf("\n(Per mail: recorded, queued, claimed, delivered, result written. The keyspace "
               "notifications this benchmark turns on to time the events cost Redis CPU too: the "
               "figure is an upper bound.)\n");
    }
    if (have_thread) {
        x.lr.stop = 1;
        shutdown(x.lr.sub->fd, SHUT_RDWR); /* unblocks the reader's read */
        pthread_join(th, NULL);
    }
    if (x.lr.sub != NULL)
        redisFree(x.lr.sub);
    free(x.lr.seen);
    free(x.sent);
    free(x.hook_at);
    free(x.rec);
    free(x.hook);
    stop(&x.d);
    stop(&x.w.c);
    fake_stop(&x.f);
    redis_fixture_stop(&x.w.fx);
    if (x.rx != NULL)
        receiver_stop(x.rx);
    pthread_mutex_destroy(&x.lr.lock);
    return rc;
}

/* ---- main ---- */

static int make_cert(void)
{
    snprintf(certdir, sizeof certdir, "/tmp/superimap-bench-XXXXXX");
    if (mkdtemp(certdir) == NULL)
        return -1;
    snprintf(cert, sizeof cert, "%s/cert.pem", certdir);
    snprintf(keyfile, sizeof keyfile, "%s/key.pem", certdir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=localhost -addext "
             "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3 "
             ">/dev/null 2>&1",
             keyfile, cert);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    if (rig_bin_init(argv[0]) < 0)
        return 1;
    int rates[LAT_MAX_RATES], nrates = 0;
    const char *r = getenv("BENCH_MAIL_RATE");
    if (r != NULL && atoi(r) >= 1 && atoi(r) <= 20000)
        rates[nrates++] = atoi(r);
    for (size_t i = 0; nrates == 0 && i < sizeof lat_sweep / sizeof lat_sweep[0]; i++)
        rates[i] = lat_sweep[i];
    if (nrates == 0)
        nrates = (int)(sizeof lat_sweep / sizeof lat_sweep[0]);
    const char *s = getenv("BENCH_SCALE");
    double scale = s != NULL ? atof(s) : 1.0;
    if (scale <= 0 || scale > 1)
        scale = 1.0;
    if (make_cert() < 0) {
        fprintf(stderr, "bench_watcher: cannot make a certificate with openssl\n");
        return 1;
    }
    struct crypto_keys *keys = NULL;
    char err[128];
    if (crypto_keys_init(&keys, WF_KEY, NULL, err, sizeof err) < 0)
        return 1;

    const struct scenario sc[] = {
        {"1k plain", (int)(1000 * scale), 1, 0, NULL},
        {"5k plain", (int)(5000 * scale), 1, 0, NULL},
        {"10k plain", (int)(10000 * scale), 1, 0, NULL},
        {"19k plain", (int)(19000 * scale), 1, 0, NULL},
        {"10k TLS", (int)(10000 * scale), 1, 1, NULL},
        {"57k plain, 3 watchers", (int)(57000 * scale), 3, 0, NULL},
        {"100k plain, 6 watchers", (int)(100000 * scale), MAX_W, 0, "sessions_100k.dat"},
    };
    int rc = 0;
    printf("Idle IMAP sessions held by superimap-watcher against superimap-fake-imapd on one "
           "machine. RSS before = ready with no users; per session = RSS delta / sessions "
           "(registry, lease slot, session, parser, libev, OpenSSL; not kernel socket buffers). "
           "CPU = watcher CPU while idle, percent of one core over %.0f s. Established = users "
           "written to Redis until every session is in IDLE. Fences = self-fencings of the "
           "watchers. Redis bytes per user = Redis "
           "used_memory delta / users (user, shard set, change stream, lease, cursor).\n\n",
           IDLE_SAMPLE_S);
    printf("| scenario | sessions | watchers | transport | RSS before KiB (w0) | RSS after KiB "
           "(w0) | bytes per session | idle CPU %% per watcher | established in s | fences | "
           "fake-imapd RSS MiB | Redis bytes per user |\n");
    printf("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    const char *only = getenv("BENCH_ONLY");
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++)
        if (sc[i].sessions > 0 && (only == NULL || strstr(sc[i].name, only) != NULL) &&
            run_idle(&sc[i], keys) < 0)
            rc = 1;

    printf("\nWatcher RSS as users are added to one watcher in %d equal steps, each read %d "
           "ms after all its sessions are watching (per session = RSS delta from no users / "
           "sessions).\n\n",
           RAMP_STEPS, RAMP_SETTLE_MS);
    printf("| transport | sessions | RSS KiB | bytes per session |\n|---|---:|---:|---:|\n");
    fflush(stdout);
    if ((only == NULL || strstr("ramp plain", only) != NULL) && (int)(19000 * scale) > 0 &&
        run_ramp("ramp plain", (int)(19000 * scale), 0, keys) < 0)
        rc = 1;
    if ((only == NULL || strstr("ramp TLS", only) != NULL) && (int)(10000 * scale) > 0 &&
        run_ramp("ramp TLS", (int)(10000 * scale), 1, keys) < 0)
        rc = 1;

    printf("\nNew mail to recorded event and to webhook received: %d idle plaintext sessions "
           "of one partner (webhook_concurrency 8, the default), one dispatcher, a keep-alive "
           "receiver; appends through fake-imapd's control channel at each rate in turn (%d s "
           "at %d/s, %d s at the others; every user gets as many), on one pipeline. Latency "
           "from the append sent to the first keyspace notification of the event's HSET "
           "(recorded) and to the first receipt of its webhook.\n\n",
           LAT_USERS, LAT_SECONDS, nrates == 1 ? rates[0] : LAT_RATE_DEFAULT, LAT_SWEEP_SECONDS);
    printf("| mails/s | stage | appended | rate achieved /s | arrived | p50 ms | p90 ms | p99 ms "
           "| p99.9 ms | max ms |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    if ((only == NULL || strstr("latency", only) != NULL) && run_latency(keys, rates, nrates) < 0)
        rc = 1;
    crypto_keys_free(keys);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", certdir);
    if (system(rm) != 0)
        rc = 1;
    return rc;
}
