/*
 * Benchmark of a Redis failover under mail (redis+sentinel://,
 * docs/capacity.md): a whole fleet (tests/integration/system.h: api, 2
 * watchers, 1 dispatcher, the signature-checking webhook receiver) on
 * superimap-fake-imapd, through a Sentinel group on loopback
 * (tests/integration/sentinel_fixture.h: a primary, two replicas, three
 * sentinels, down-after DOWN_AFTER_MS), mail at RATE messages a second round
 * robin over USERS users; once without WAIT and once with
 * SUPERIMAP_REDIS_MIN_REPLICAS_ACK=1:
 *
 *   1. steady state, STEADY_S seconds: latency from delivery (fake-imapd's
 *      APPEND answered) to the webhook's receipt, p50 / p99 / max;
 *   2. kill -9 of the primary with mail going on for AFTER_S seconds: the
 *      pause (kill to the first webhook of a message delivered after it),
 *      the latency of the messages delivered from 1 s before the kill on,
 *      webhooks sent again under their id, record_mail successes beyond the
 *      messages (messages recorded twice: the promoted replica lacked them),
 *      short WAITs, and messages never announced.
 *
 * Printed as a Markdown table; nothing here judges the numbers. Every child
 * is started by the integration harness and stopped by its PID.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/bench/bench.h"
#include "tests/integration/sentinel_fixture.h"
#include "tests/integration/system.h"

#define USERS         20
#define RATE          20 /* messages a second */
#define WARMUP_S      3
#define STEADY_S      20
#define AFTER_S       10
#define DOWN_AFTER_MS 1000
#define ANNOUNCE_MS   60000

struct run {
    size_t steady_n, around_n;
    double steady_p50, steady_p99, steady_max;
    double pause_s, p50, p99, max;
    int again;             /* webhooks answered 2xx again under their id */
    double recorded_extra; /* record_mail successes beyond the messages */
    double wait_short;     /* WAITs short of a replica, all nodes */
    long lost;             /* messages never announced */
};

static struct sentinel_group g;
static struct sys fleet;
static struct sys_user users[USERS];
static struct sys_pace pace;

static int pace_for(int ms)
{
    long long until = harness_now_ms() + ms;
    while (harness_now_ms() < until)
        if (sys_pace_step(&fleet, &pace) < 0)
            return -1;
    return 0;
}

static double node_metric(const struct sys_node *n, const char *series)
{
    double v = harness_metric(n->p.port, series);
    return v < 0 ? 0 : v;
}

/* The index of the first message delivered at or after t_ms. */
static size_t first_mail_from(long long t_ms)
{
    size_t i = 0;
    while (i < fleet.nmails && fleet.mails[i].delivered_us / 1000 < t_ms)
        i++;
    return i;
}

static int measure(int acked, struct run *r)
{
    static const char *const watcher_acked[] = {"SUPERIMAP_REDIS_MIN_REPLICAS_ACK=1", NULL};
    static const char *const dispatcher_plain[] = {"SUPERIMAP_WEBHOOK_TIMEOUT_MS=2000", NULL};
    static const char *const dispatcher_acked[] = {"SUPERIMAP_WEBHOOK_TIMEOUT_MS=2000",
                                                   "SUPERIMAP_REDIS_MIN_REPLICAS_ACK=1", NULL};
    const struct sys_opts o = {.watchers = 2,
                               .dispatchers = 1,
                               .dovecot_users = -1,
                               .fake_imapd = 1,
                               .redis_url = g.url,
                               .watcher_env = acked ? watcher_acked : NULL,
                               .dispatcher_env = acked ? dispatcher_acked : dispatcher_plain};
    if (sys_start(&fleet, &o) < 0 || sys_add_users(&fleet, SYS_FAKE, "bench", USERS, users) < 0)
        return -1;
    pace = (struct sys_pace){.users = users, .n = USERS, .every_ms = 1000 / RATE};
    if (pace_for(WARMUP_S * 1000) < 0)
        return -1;
    size_t from = fleet.nmails;
    if (pace_for(STEADY_S * 1000) < 0)
        return -1;
    size_t to = fleet.nmails;
    sys_wait_announced(&fleet, to, ANNOUNCE_MS);
    r->steady_n = sys_latency(&fleet, from, to, &r->steady_p50, &r->steady_p99, &r->steady_max);

    long long t0 = harness_now_ms();
    kill(g.data[0].pid, SIGKILL);
    waitpid(g.data[0].pid, NULL, 0);
    g.data[0].pid = 0;
    if (pace_for(AFTER_S * 1000) < 0)
        return -1;
    size_t end = fleet.nmails;
    r->lost = (long)(end - sys_wait_announced(&fleet, end, ANNOUNCE_MS));
    long long first = sys_first_webhook_after(&fleet, t0);
    r->pause_s = first > 0 ? (double)(first - t0) / 1000.0 : -1;
    r->around_n = sys_latency(&fleet, first_mail_from(t0 - 1000), end, &r->p50, &r->p99, &r->max);
    struct sys_report rep;
    if (sys_report(&fleet, &rep) < 0)
        fprintf(stderr, "bench_sentinel: a webhook failed its checks: %s\n", fleet.why);
    r->again = rep.redelivered;
    const char *recorded = "superimap_watcher_mail_recorded_total";
    const char *shorts = "superimap_redis_wait_short_total";
    r->recorded_extra = node_metric(&fleet.watcher[0], recorded) +
                        node_metric(&fleet.watcher[1], recorded) - (double)end;
    r->wait_short = node_metric(&fleet.watcher[0], shorts) +
                    node_metric(&fleet.watcher[1], shorts) +
                    node_metric(&fleet.dispatcher[0], shorts);
    return 0;
}

static int run_one(int acked, struct run *r)
{
    memset(r, 0, sizeof *r);
    int rc = -1;
    if (sg_start_n(&g, 2, DOWN_AFTER_MS) < 0)
        fprintf(stderr, "bench_sentinel: the Sentinel group did not settle\n");
    else
        rc = measure(acked, r);
    sys_stop(&fleet);
    sg_stop(&g);
    return rc;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct run plain, acked;
    if (run_one(0, &plain) < 0 || run_one(1, &acked) < 0)
        return 1;
    printf("\n### Redis failover (bench_sentinel: api, 2 watchers, 1 dispatcher, %d users on "
           "fake-imapd, %d messages/s; 1 primary, 2 replicas, 3 sentinels, down-after %d ms)\n\n",
           USERS, RATE, DOWN_AFTER_MS);
    printf("| | no WAIT | SUPERIMAP_REDIS_MIN_REPLICAS_ACK=1 |\n|---|---|---|\n");
    printf("| steady state, new mail -> webhook p50 / p99 / max (ms), %zu / %zu messages | %.1f "
           "/ %.1f / %.1f | %.1f / %.1f / %.1f |\n",
           plain.steady_n, acked.steady_n, plain.steady_p50, plain.steady_p99, plain.steady_max,
           acked.steady_p50, acked.steady_p99, acked.steady_max);
    printf("| kill -9 of the primary: pause until the first webhook of a message delivered "
           "after it (s) | %.2f | %.2f |\n",
           plain.pause_s, acked.pause_s);
    printf("| messages delivered from 1 s before the kill to %d s after, latency p50 / p99 / max "
           "(ms) | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f |\n",
           AFTER_S, plain.p50, plain.p99, plain.max, acked.p50, acked.p99, acked.max);
    printf("| webhooks sent again under their id | %d | %d |\n", plain.again, acked.again);
    printf("| messages recorded twice (record_mail successes beyond the messages) | %.0f | %.0f "
           "|\n",
           plain.recorded_extra, acked.recorded_extra);
    printf("| WAITs short of a replica (retried) | %.0f | %.0f |\n", plain.wait_short,
           acked.wait_short);
    printf("| messages never announced | %ld | %ld |\n\n", plain.lost, acked.lost);
    bench_result("sentinel_pause_s", "%.2f", plain.pause_s);
    bench_result("sentinel_pause_acked_s", "%.2f", acked.pause_s);
    bench_result("sentinel_steady_p50_ms", "%.1f", plain.steady_p50);
    bench_result("sentinel_steady_p50_acked_ms", "%.1f", acked.steady_p50);
    return 0;
}
