/*
 * tests/soak/soak: `make soak DURATION=<seconds>` (default 600). The whole
 * fleet (tests/integration/system.h) on superimap-fake-imapd with faults on,
 * for a while, then a report; not part of `make test`.
 *
 * What it runs: Redis with AOF, fake-imapd, the api, SOAK_WATCHERS watchers
 * (default 3) and SOAK_DISPATCHERS dispatchers (default 2), the webhook
 * receiver of the fixture (every webhook's signatures and body checked), and
 * SOAK_USERS users (default 30), set up through the public APIs. Then, for
 * DURATION seconds:
 *
 *   - mail at a steady SOAK_RATE messages per second (default 5) to users
 *     picked at random (fake-imapd's control channel, APPEND);
 *   - fake-imapd faults on every IMAP command with probability
 *     SOAK_FAULT_RATE (default 0.05): bad, no, gibberish, bye, drop, halfopen,
 *     noinbox, trickle, limit (SOAK_FAULTS changes the list). Left out:
 *     uidshift (a new UIDVALIDITY resets the cursor to the new UIDNEXT - 1,
 *     so mail not yet fetched then is skipped by design, as in the original)
 *     and authfail (a refused login parks the user for 5 minutes and more, by
 *     design);
 *   - a random user's sessions kicked (control KICK) every 2 to 8 s;
 *   - a random watcher other than w1 stopped every 10 to 25 s, with SIGKILL
 *     or SIGTERM (even odds), and started again 0 to 3 s after it exited. w1
 *     is never restarted, so one watcher lives the whole run for its RSS.
 *
 * Then the drain: faults off, every watcher running, until every delivered
 * message is announced (at most SOAK_DRAIN_SEC, default 120 s), and one last
 * message per user announced so that late duplicates have come in. The report
 * gives delivered, lost (delivered, never announced: must be 0), duplicates
 * by webhook-id, raw (2xx webhooks repeating an event id: at-least-once
 * redeliveries) and after dedupe (messages announced under more than one
 * event id: must be 0), webhooks failing a check (must be 0), latency from
 * delivery to the first 2xx webhook, and the RSS of each long-lived process
 * (first, last, max, growth per hour by least squares over a sample every
 * 5 s). Exit status 1 when lost, deduplicated duplicates or bad webhooks are
 * not 0; 2 when the fleet does not start. SOAK_SEED (default: from the clock,
 * printed) repeats the random choices and the fault sequence.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/bench.h"
#include "tests/integration/system.h"

#define DEFAULT_FAULTS "bad,no,gibberish,bye,drop,halfopen,noinbox,trickle,limit"
#define RSS_EVERY_MS   5000
#define POLL_EVERY_MS  250 /* reads of the receiver (each copies every request) */
#define REPORT_EVERY_S 30
#define MAX_PROCS      (3 + 2 * SYS_MAX_NODES)

/* Settings, from the command line (duration) and SOAK_* variables. */
static struct {
    int duration_s, users, watchers, dispatchers, drain_s;
    double rate, fault_rate;
    unsigned seed;
    const char *faults;
} cfg;

/* The RSS of one process, over its current life. */
struct rss {
    char name[24];
    pid_t pid;
    int lives; /* starts seen (1 + restarts) */
    long long t0_ms, t_ms;
    long first_kb, last_kb, max_kb;
    double n, sx, sy, sxx, sxy; /* least squares of KiB over hours */
};

static struct sys fleet;
static struct sys_user *users;
static struct rss procs[MAX_PROCS];
static int nprocs;
static unsigned long long rng;

/* ---- Small helpers ---- */

static unsigned long long next_rand(void)
{
    rng ^= rng << 13; /* xorshift64 */
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A uniform integer in [lo, hi]. */
static long pick(long lo, long hi)
{
    return lo + (long)(next_rand() % (unsigned long long)(hi - lo + 1));
}

static long env_long(const char *name, long def, long lo, long hi)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < lo || n > hi) {
        fprintf(stderr, "soak: %s must be an integer in %ld..%ld\n", name, lo, hi);
        exit(2);
    }
    return n;
}

static double env_double(const char *name, double def, double lo, double hi)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    double d = strtod(v, &end);
    if (*end != '\0' || d < lo || d > hi) {
        fprintf(stderr, "soak: %s must be a number in %g..%g\n", name, lo, hi);
        exit(2);
    }
    return d;
}

/* ---- RSS samples ---- */

static void rss_add(const char *name)
{
    struct rss *r = &procs[nprocs++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
}

/* One sample of the process called name, now pid (0: not running). A new
 * pid starts a new life. */
static void rss_sample(struct rss *r, pid_t pid, long long now)
{
    if (pid <= 0)
        return;
    long kb = bench_rss_kib(pid);
    if (kb < 0)
        return;
    if (pid != r->pid) {
        int lives = r->lives + 1;
        char name[24];
        memcpy(name, r->name, sizeof name);
        memset(r, 0, sizeof *r);
        memcpy(r->name, name, sizeof name);
        r->lives = lives;
        r->pid = pid;
        r->t0_ms = now;
        r->first_kb = kb;
    }
    double x = (double)(now - r->t0_ms) / 3600000.0, y = (double)kb;
    r->n++;
    r->sx += x;
    r->sy += y;
    r->sxx += x * x;
    r->sxy += x * y;
    r->t_ms = now;
    r->last_kb = kb;
    if (kb > r->max_kb)
        r->max_kb = kb;
}

static void rss_sample_all(long long now)
{
    int k = 0;
    rss_sample(&procs[k++], fleet.redis.pid, now);
    rss_sample(&procs[k++], fleet.fake.proc.pid, now);
    rss_sample(&procs[k++], fleet.api.is_running ? fleet.api.p.pid : 0, now);
    for (int i = 0; i < fleet.nwatchers; i++, k++)
        rss_sample(&procs[k], fleet.watcher[i].is_running ? fleet.watcher[i].p.pid : 0, now);
    for (int i = 0; i < fleet.ndispatchers; i++, k++)
        rss_sample(&procs[k], fleet.dispatcher[i].is_running ? fleet.dispatcher[i].p.pid : 0, now);
}

/* Least-squares growth in KiB per hour; 0 with fewer than 3 samples. */
static double rss_slope(const struct rss *r)
{
    double d = r->n * r->sxx - r->sx * r->sx;
    return r->n >= 3 && d > 0 ? (r->n * r->sxy - r->sx * r->sy) / d : 0;
}

/* ---- Watcher restarts ---- */

struct restart {
    int i;                     /* the watcher, or -1 when none is being restarted */
    int sig;                   /* SIGKILL or SIGTERM */
    long long up_at_ms;        /* start it again at this time, once it exited */
    long long next_at_ms;      /* the next stop */
    int kills, terms, unclean; /* unclean: SIGTERM exits other than 0 */
};

static void restart_step(struct restart *rs, long long now)
{
    if (rs->i < 0) {
        if (now < rs->next_at_ms || fleet.nwatchers < 2)
            return;
        rs->i = (int)pick(1, fleet.nwatchers - 1);
        rs->sig = next_rand() % 2 ? SIGKILL : SIGTERM;
        rs->up_at_ms = 0;
        harness_proc_signal(&fleet.watcher[rs->i].p, rs->sig); /* its exit is polled below */
        if (rs->sig == SIGKILL)
            rs->kills++;
        else
            rs->terms++;
        return;
    }
    struct sys_node *w = &fleet.watcher[rs->i];
    if (w->is_running) {
        if (harness_proc_wait(&w->p, 0) < 0)
            return;                                          /* still draining */
        int code = sys_kill_watcher(&fleet, rs->i, rs->sig); /* reaped: just records it */
        if (rs->sig == SIGTERM && code != 0) {
            rs->unclean++;
            fprintf(stderr, "soak: %s exited with %d on SIGTERM; log %s\n", w->id, code, w->p.log);
        }
        rs->up_at_ms = now + pick(0, 3000);
        return;
    }
    if (now < rs->up_at_ms)
        return;
    if (sys_restart_watcher(&fleet, rs->i) < 0)
        fprintf(stderr, "soak: %s did not start again\n", w->id);
    rs->i = -1;
    rs->next_at_ms = now + pick(10000, 25000);
}

/* ---- The run ---- */

static size_t announced(void)
{
    size_t n = 0;
    for (size_t i = 0; i < fleet.nmails; i++)
        n += fleet.mails[i].announced > 0;
    return n;
}

static void progress(const char *phase, long long t0, const struct restart *rs, int kicks)
{
    printf("soak %s: t=%llds delivered=%zu announced=%zu webhooks=%zu restarts=%d kicks=%d "
           "faults=%lld\n",
           phase, (harness_now_ms() - t0) / 1000, fleet.nmails, announced(), fleet.nhooks,
           rs->kills + rs->terms, kicks, fakeimap_stat(&fleet.fake, "faults"));
    fflush(stdout);
}

static int start_fleet(void)
{
    static const char *const watcher_env[] = {
        "SUPERIMAP_IMAP_CONNECT_TIMEOUT_MS=5000", "SUPERIMAP_IMAP_COMMAND_TIMEOUT_MS=5000",
        "SUPERIMAP_IMAP_PROBE_SEC=10", "SUPERIMAP_IMAP_POLL_SEC=5", NULL};
    static const char *const dispatcher_env[] = {"SUPERIMAP_WEBHOOK_TIMEOUT_MS=5000",
                                                 "SUPERIMAP_WEBHOOK_CONNECT_TIMEOUT_MS=2000", NULL};
    const struct sys_opts o = {.watchers = cfg.watchers,
                               .dispatchers = cfg.dispatchers,
                               .dovecot_users = -1,
                               .fake_imapd = 1,
                               .watcher_env = watcher_env,
                               .dispatcher_env = dispatcher_env};
    if (sys_start(&fleet, &o) < 0)
        return -1;
    users = calloc((size_t)cfg.users, sizeof *users);
    if (users == NULL || sys_add_users(&fleet, SYS_FAKE, "soak", cfg.users, users) < 0)
        return -1;
    rss_add("redis-server");
    rss_add("fake-imapd");
    rss_add("api");
    for (int i = 0; i < fleet.nwatchers; i++)
        rss_add(fleet.watcher[i].id);
    for (int i = 0; i < fleet.ndispatchers; i++)
        rss_add(fleet.dispatcher[i].id);
    return 0;
}

/* Mail, faults, kicks and restarts for the configured duration. */
static void run_flow(long long t0, struct restart *rs, int *kicks)
{
    if (fakeimap_faults(&fleet.fake, cfg.fault_rate, cfg.seed, cfg.faults) < 0)
        fprintf(stderr, "soak: fake-imapd refused FAULTS %g %u %s\n", cfg.fault_rate, cfg.seed,
                cfg.faults);
    long long end = t0 + (long long)cfg.duration_s * 1000, now;
    double every_ms = 1000.0 / cfg.rate, next_send = (double)t0;
    long long next_kick = t0 + pick(2000, 8000), next_rss = t0, next_poll = t0;
    long long next_report = t0 + REPORT_EVERY_S * 1000;
    rs->next_at_ms = t0 + pick(10000, 25000);
    while ((now = harness_now_ms()) < end) {
        for (int burst = 0; (double)now >= next_send && burst < 50; burst++) {
            const struct sys_user *u = &users[pick(0, cfg.users - 1)];
            if (sys_deliver(&fleet, u, (size_t)pick(0, 6000)) < 0)
                fprintf(stderr, "soak: delivery to %s failed\n", u->login);
            next_send += every_ms;
        }
        if (now >= next_kick) {
            if (fakeimap_kick(&fleet.fake, users[pick(0, cfg.users - 1)].login) >= 0)
                ++*kicks;
            next_kick = now + pick(2000, 8000);
        }
        restart_step(rs, now);
        if (now >= next_poll) {
            sys_poll(&fleet);
            next_poll = now + POLL_EVERY_MS;
        }
        if (now >= next_rss) {
            rss_sample_all(now);
            next_rss = now + RSS_EVERY_MS;
        }
        if (now >= next_report) {
            progress("flow", t0, rs, *kicks);
            next_report = now + REPORT_EVERY_S * 1000;
        }
        harness_poll_pause();
    }
}

/* Faults off, the restarted watcher back, every message announced; then one
 * last message per user. Returns the ms it took. */
static long long drain(struct restart *rs, long long t0, int kicks)
{
    long long start = harness_now_ms();
    fakeimap_faults(&fleet.fake, 0, 0, "none");
    while (rs->i >= 0) { /* finish the restart under way at once */
        rs->up_at_ms = 0;
        restart_step(rs, harness_now_ms());
        harness_poll_pause();
    }
    long long deadline = start + (long long)cfg.drain_s * 1000, next_rss = start, now;
    while ((now = harness_now_ms()) < deadline) {
        sys_poll(&fleet);
        if (announced() == fleet.nmails)
            break;
        if (now >= next_rss) {
            rss_sample_all(now);
            next_rss = now + RSS_EVERY_MS;
        }
        harness_poll_pause();
    }
    progress("drain", t0, rs, kicks);
    for (int i = 0; i < cfg.users; i++)
        sys_deliver(&fleet, &users[i], 0);
    sys_wait_announced(&fleet, fleet.nmails, 30000);
    rss_sample_all(harness_now_ms());
    return harness_now_ms() - start;
}

static int report(long long flow_ms, long long drain_ms, const struct restart *rs, int kicks,
                  long long faults)
{
    struct sys_report rep;
    sys_report(&fleet, &rep);
    size_t delivered = fleet.nmails, lost = delivered - (size_t)rep.announced;
    double p50, p99, max;
    sys_latency(&fleet, 0, delivered, &p50, &p99, &max);
    printf("\n==== soak report (seed %u)\n", cfg.seed);
    printf("  run:        %.0f s of mail at %.1f/s to %d users, then %.1f s of drain\n",
           (double)flow_ms / 1000.0, cfg.rate, cfg.users, (double)drain_ms / 1000.0);
    printf("  fleet:      Redis (AOF), fake-imapd, api, %d watchers, %d dispatchers\n",
           fleet.nwatchers, fleet.ndispatchers);
    printf("  faults:     rate %g of IMAP commands (%s): %lld injected; %d users kicked\n",
           cfg.fault_rate, cfg.faults, faults, kicks);
    printf("  restarts:   %d watchers stopped and started (%d SIGKILL, %d SIGTERM; %d SIGTERM "
           "exits not 0)\n",
           rs->kills + rs->terms, rs->kills, rs->terms, rs->unclean);
    printf("  delivered:  %zu\n", delivered);
    printf("  announced:  %d\n", rep.announced);
    printf("  lost:       %zu%s\n", lost, lost ? "   <-- FAIL" : "");
    printf("  duplicates: raw %d (2xx webhooks repeating an event id), after dedupe %d "
           "(messages under more than one event id)%s\n",
           rep.redelivered, rep.duplicates, rep.duplicates ? "   <-- FAIL" : "");
    printf("  webhooks:   %d requests, %d new_mail answered 2xx, %d unknown, %d failing a "
           "check%s%s\n",
           rep.requests, rep.mail_hooks, rep.unknown, rep.bad, rep.bad ? ": " : "",
           rep.bad ? fleet.why : "");
    printf("  latency:    delivery to first 2xx webhook p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
           p50, p99, max);
    printf("  RSS (KiB):  %-14s %6s %9s %9s %9s %12s\n", "process", "lives", "first", "last", "max",
           "growth/h");
    for (int i = 0; i < nprocs; i++) {
        const struct rss *r = &procs[i];
        printf("              %-14s %6d %9ld %9ld %9ld %+12.0f  (%.0f s, %.0f samples)\n", r->name,
               r->lives, r->first_kb, r->last_kb, r->max_kb, rss_slope(r),
               (double)(r->t_ms - r->t0_ms) / 1000.0, r->n);
    }
    printf("  (growth/h: least squares over the last life, so short runs extrapolate the warm-up;\n"
           "   redis-server and fake-imapd grow with what they keep: every message, the delivery "
           "log)\n");
    for (size_t i = 0; i < delivered && lost > 0; i++)
        if (fleet.mails[i].announced == 0)
            printf("  lost: mail %zu to %s (%zu bytes), %d attempts\n", i, fleet.mails[i].tag,
                   fleet.mails[i].len, fleet.mails[i].attempts);
    fflush(stdout);
    return lost > 0 || rep.duplicates > 0 || rep.bad > 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    cfg.duration_s = argc > 1 ? atoi(argv[1]) : (int)env_long("DURATION", 600, 1, 7 * 86400);
    if (cfg.duration_s <= 0) {
        fprintf(stderr, "usage: soak [seconds]\n");
        return 2;
    }
    cfg.users = (int)env_long("SOAK_USERS", 30, 1, 10000);
    cfg.watchers = (int)env_long("SOAK_WATCHERS", 3, 1, SYS_MAX_NODES);
    cfg.dispatchers = (int)env_long("SOAK_DISPATCHERS", 2, 1, SYS_MAX_NODES);
    cfg.drain_s = (int)env_long("SOAK_DRAIN_SEC", 120, 1, 86400);
    cfg.rate = env_double("SOAK_RATE", 5, 0.01, 1000);
    cfg.fault_rate = env_double("SOAK_FAULT_RATE", 0.05, 0, 1);
    cfg.faults = getenv("SOAK_FAULTS") ? getenv("SOAK_FAULTS") : DEFAULT_FAULTS;
    cfg.seed = (unsigned)env_long("SOAK_SEED", (long)(time(NULL) % 1000000), 1, 2147483647);
    rng = 0x9e3779b97f4a7c15ULL ^ cfg.seed;
    printf("soak: %d s, %d users, %.1f mails/s, %d watchers, %d dispatchers, faults %g (%s), "
           "seed %u\n",
           cfg.duration_s, cfg.users, cfg.rate, cfg.watchers, cfg.dispatchers, cfg.fault_rate,
           cfg.faults, cfg.seed);

    if (start_fleet() < 0) {
        fprintf(stderr, "soak: the fleet did not start\n");
        sys_dump_logs(&fleet, 20);
        sys_stop(&fleet);
        free(users);
        return 2;
    }
    struct restart rs = {.i = -1};
    int kicks = 0;
    long long t0 = harness_now_ms();
    run_flow(t0, &rs, &kicks);
    long long flow_ms = harness_now_ms() - t0;
    long long faults = fakeimap_stat(&fleet.fake, "faults");
    long long drain_ms = drain(&rs, t0, kicks);
    int rc = report(flow_ms, drain_ms, &rs, kicks, faults);
    if (rc != 0)
        sys_dump_logs(&fleet, 30);
    if (sys_stop(&fleet) < 0)
        printf("soak: a node did not stop cleanly on SIGTERM (see above)\n");
    free(users);
    return rc;
}
