/*
 * bench_oauth2: OAuth2 token refreshes of a watcher fleet, measured against
 * superimap-fake-oauth2d (the token endpoint) with N users on
 * superimap-fake-imapd (XOAUTH2 accepting the provider's "at_" tokens,
 * SUPERIMAP_FAKE_XOAUTH2_PREFIX). Servers come from the integration harness
 * (tests/integration/), on port 0 and unix sockets, stopped by PID.
 *
 * For 1 and for 3 watchers, on a fresh provider and Redis: every user has a
 * fresh grant's refresh token and an access token that expired, as after a
 * fleet restart; the watchers start together, and the table gives the time
 * until every user is watching and the most token calls in flight at the
 * endpoint (fake-oauth2d's token_max_concurrent). The access tokens it
 * issues live ACCESS_TTL s; with 1 watcher, the refreshes of the next
 * WINDOW_S seconds (after one token life) give the refresh rate, scaled
 * linearly (the schedule is 80-90 % of the life) to 10,000 users with
 * 1-hour tokens.
 *
 * BENCH_OAUTH2_USERS sets N (default 10,000). Prints Markdown tables; never
 * fails on the numbers.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tests/bench/bench.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/fakeoauth.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID        "1"
#define CODE       "gmailish"
#define CLIENT     "bench-client"
#define SECRET     "bench-client-secret"
#define ACCESS_TTL 20
#define WINDOW_S   90
#define MAX_W      3

struct run {
    double watching_s; /* start to every user watching; -1: not within the deadline */
    long long max_inflight;
    double per_hour_10k; /* refreshes per hour, scaled; -1 when not measured */
    long long refreshes, cap;
};

static double watching(const struct proc *w, int nw)
{
    double sum = 0;
    for (int i = 0; i < nw; i++) {
        double v = harness_metric(w[i].port, "superimap_watcher_sessions_watching");
        sum += v > 0 ? v : 0;
    }
    return sum;
}

/* One scenario: a fresh Redis, provider and fake-imapd, n users, nw watchers. */
static int run_one(int n, int nw, int measure_rate, struct run *out)
{
    memset(out, 0, sizeof *out);
    out->per_hour_10k = -1;
    struct redis_srv redis;
    struct fakeoauth idp;
    struct fakeimap imap;
    struct proc w[MAX_W];
    memset(w, 0, sizeof w);
    int rc = -1;
    const char *idp_args[] = {"--client", CLIENT ":" SECRET, NULL};
    char users_env[48];
    snprintf(users_env, sizeof users_env, "SUPERIMAP_FAKE_USERS=%d", n);
    const char *imap_env[] = {users_env, "SUPERIMAP_FAKE_XOAUTH2_PREFIX=at_", NULL};
    if (harness_redis_start(&redis) < 0 || fakeoauth_start(&idp, idp_args) < 0 ||
        fakeimap_prepare(&imap, 0) < 0 || fakeimap_start(&imap, imap_env) < 0)
        goto done;
    char cfg[64], token_url[300];
    snprintf(cfg, sizeof cfg, "{\"access_ttl\":%d}", ACCESS_TTL);
    if (fakeoauth_config(&idp, cfg) < 0)
        goto done;
    const char *host;
    int port = fakeimap_port(&imap, 0, 0, &host);
    if (fx_provider(&redis, CODE, host, port, "none") < 0)
        goto done;
    fakeoauth_url(&idp, "/token", token_url, sizeof token_url);
    freeReplyObject(
        fx_cmd(&redis, "HSET si:provider:%s auth oauth2 oauth2_token_url %s", CODE, token_url));
    if (fx_oauth2_conn(&redis, PID, CODE, CLIENT, SECRET) < 0)
        goto done;
    long long expired = (long long)time(NULL) * 1000 - 1000;
    for (int i = 1; i <= n; i++) {
        char uid[32], login[32], email[48], tag[32], refresh[128];
        snprintf(uid, sizeof uid, "%024x", i);
        snprintf(login, sizeof login, "user%d", i);
        snprintf(email, sizeof email, "%s@example.com", login);
        snprintf(tag, sizeof tag, "t%d", i);
        if (fakeoauth_grant(&idp, CLIENT, SECRET, email, refresh, sizeof refresh, NULL, 0) < 0 ||
            fx_user(&redis, uid, PID, CODE, tag, login, refresh) < 0 ||
            fx_user_access_token(&redis, uid, "at_expired", expired) < 0)
            goto done;
    }
    static const char *const env[] = {"SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1",
                                      "SUPERIMAP_IMAP_LOGINS_PER_SEC=100000",
                                      "SUPERIMAP_MAX_USERS=100000", NULL};
    out->cap = 4; /* SUPERIMAP_OAUTH2_MAX_REFRESHES, the product's default */
    long long t0 = harness_now_ms();
    for (int i = 0; i < nw; i++) {
        char id[16];
        snprintf(id, sizeof id, "bench-w%d", i + 1);
        if (harness_node_start(&w[i], &redis, "superimap-watcher", id, env) < 0)
            goto done;
    }
    long long deadline = t0 + 600000;
    while (watching(w, nw) < n && harness_now_ms() < deadline)
        harness_poll_pause();
    out->watching_s = watching(w, nw) >= n ? (double)(harness_now_ms() - t0) / 1000.0 : -1;
    out->max_inflight = fakeoauth_stat(&idp, "token_max_concurrent");
    if (measure_rate && out->watching_s >= 0) {
        /* One token life first, so every user is on its background schedule. */
        long long from = harness_now_ms() + ACCESS_TTL * 1000;
        while (harness_now_ms() < from)
            harness_poll_pause();
        long long ok0 = fakeoauth_stat(&idp, "token.refresh_token.ok");
        long long to = harness_now_ms() + WINDOW_S * 1000;
        while (harness_now_ms() < to)
            harness_poll_pause();
        out->refreshes = fakeoauth_stat(&idp, "token.refresh_token.ok") - ok0;
        /* Each user refreshes every WINDOW_S * n / refreshes seconds with
         * ACCESS_TTL-s tokens; the interval scales with the token's life. */
        double interval_1h = (double)WINDOW_S * n / (double)out->refreshes * 3600.0 / ACCESS_TTL;
        out->per_hour_10k = 10000.0 * 3600.0 / interval_1h;
    }
    rc = 0;
done:
    for (int i = 0; i < nw; i++)
        if (w[i].pid > 0)
            harness_proc_stop(&w[i]);
    fakeimap_stop(&imap, 0);
    fakeoauth_stop(&idp);
    harness_redis_stop(&redis);
    return rc;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *e = getenv("BENCH_OAUTH2_USERS");
    int n = e != NULL ? atoi(e) : 10000;
    if (n < 1 || fx_init() < 0)
        return 1;
    struct run one, three;
    if (run_one(n, 1, 1, &one) < 0 || run_one(n, 3, 0, &three) < 0) {
        fx_shutdown();
        return 1;
    }
    printf("\n### OAuth2 refreshes (bench_oauth2, %d users, access tokens of %d s)\n\n", n,
           ACCESS_TTL);
    printf("| Fleet restart, every access token expired | 1 watcher | 3 watchers |\n");
    printf("|---|---|---|\n");
    printf("| time until every user is watching (s) | %.1f | %.1f |\n", one.watching_s,
           three.watching_s);
    printf("| most token calls in flight at the endpoint | %lld | %lld |\n", one.max_inflight,
           three.max_inflight);
    printf("| cap: SUPERIMAP_OAUTH2_MAX_REFRESHES x watchers | %lld | %lld |\n\n", one.cap,
           3 * three.cap);
    printf("| Refresh rate (1 watcher) | value |\n|---|---|\n");
    printf("| refreshes in %d s with %d-s tokens, %d users | %lld |\n", WINDOW_S, ACCESS_TTL, n,
           one.refreshes);
    printf("| scaled: refreshes per hour, 10,000 users, 1-hour tokens | %.0f |\n",
           one.per_hour_10k);
    bench_result("oauth2_users", "%d", n);
    bench_result("oauth2_refreshes_per_hour_10k", "%.0f", one.per_hour_10k);
    fx_shutdown();
    return 0;
}
