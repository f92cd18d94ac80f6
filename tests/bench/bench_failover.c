/*
 * Benchmarks of the watcher fleet's coordination (docs/architecture.md
 * section 3: membership, placement, leases; section 7, "failover"), on one
 * private redis-server, one superimap-fake-imapd holding 10,000 mailboxes
 * and 3 (then 4) superimap-watchers, printed as Markdown tables; nothing
 * here judges the numbers.
 *
 *   a. Redis commands per second an idle fleet of 3 watchers costs with
 *      1,000 and with 10,000 users, every user watched and no mail: deltas
 *      of INFO commandstats and total_commands_processed over IDLE_WINDOW_S
 *      seconds after the fleet settled (nothing else talks to Redis then).
 *      It must not grow with users: leases are kept alive per node and
 *      shard, not per user.
 *   b. kill -9 of one of the 3 watchers holding 1,000 users, and again (the
 *      killed one restarted) holding 10,000 users, then SIGSTOP of it
 *      (10,000 users; SIGCONT CONT_AFTER_MS after its users are back):
 *      seconds until every user is watched again (its lease names a
 *      running watcher's current incarnation, and the watchers' IDLE
 *      sessions add up to the users), and until the stopped watcher's users
 *      alone are (each has a live owner and a last_login_at, written on
 *      reaching IDLE, after the event). Through each, from PRE_KILL_S before
 *      until the fleet has settled, MAIL_RATE mails a second are appended to
 *      every user in turn (a thread, its own control connection): each must
 *      be announced once (one superimap-dispatcher delivers the webhooks to
 *      the receiver of tests/integration/receiver.c, compiled in here on a
 *      thread; none received twice under one id). The sessions logged in
 *      at fake-imapd beyond one per user are polled too: the longest span a
 *      user had two, and how many did. After the SIGSTOP: the stopped watcher's fences (it must fence
 *      itself) and the reapings by the others (none: its Redis connection
 *      stays open).
 *   c. Users moved when a 4th watcher joins (3 -> 4) and when it drains
 *      (SIGTERM, 4 -> 3), next to the ideal 1/4: lease owners (node ids)
 *      sampled every POLL_MS during the change, every change of a user's
 *      owner counted.
 *   d. During (b), every SAMPLE_MS from PRE_KILL_S before the event until
 *      all users are watched again (and POST_S more), the sessions in IDLE
 *      of each watcher (its /metrics; a killed one's 0 once dead, a stopped
 *      one's last reading), the sessions logged in at fake-imapd, and the
 *      mail appended and announced (webhooks received) per second. When
 *      BENCH_DATA_DIR is set, written to $BENCH_DATA_DIR/failover.dat (the
 *      kill -9 at 10,000 users) and failover_sigstop.dat:
 *
 *        # t_s watcher1 watcher2 watcher3 imap_sessions sent_per_s webhooks_per_s
 *        -5.0 3337 3308 3355 10000 NaN NaN
 *        -4.5 3337 3308 3355 10000 98.6 100.6
 *        ...
 *
 *      t_s relative to the event (negative before it), for gnuplot.
 *
 * The watchers run with SUPERIMAP_IMAP_LOGINS_PER_SEC=20000 and
 * SUPERIMAP_MAX_MOVES_PER_SEC=1000 (defaults 100 and 50 pace logins and
 * hand-overs for real providers; here they would only stretch the run).
 * Each process stays under the 20,000 open-file limit (fake-imapd about
 * 10,000 sessions, a watcher at most 5,000). Every child is started by the
 * integration harness (PR_SET_PDEATHSIG, stopped by its PID); every wait has
 * a deadline. The harness, the fake-imapd client and the receiver are
 * tests/integration's, linked in (the Makefile's harness objects).
 *
 * SPDX-License-Identifier: MIT
 */
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/fleet.h"
#include "cmd/watcher/users.h"
#include "core/incarnation.h"
#include "core/reaper.h"
#include "tests/bench/bench.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/receiver.h"
#include "tests/integration/test_watcher_fixture.h"
#include "tests/integration/webhook_fixture.h"

#define PID           "3"
#define MAX_USERS     10000
#define NW            4 /* slots: 3 watchers, the 4th joins in (c) */
#define IDLE_WINDOW_S 20
#define SETTLE_MS     5000   /* after every user is watched, before a window */
#define WATCH_MS      180000 /* bound of every wait for all users watched */
#define SAMPLE_MS     500
#define POLL_MS       100
#define PRE_KILL_S    5
#define POST_S        2
#define MAX_CMDS      64   /* distinct commands in commandstats */
#define MAX_SAMPLES   1024 /* timeline rows */
#define MAIL_RATE     100  /* mails/s appended through each event's window */
#define MAX_STREAM    20000
#define CONT_AFTER_MS 2000 /* SIGCONT of a SIGSTOPped watcher after its users are back */

static struct redis_srv redis;
static struct fakeimap fake;
static struct receiver *rx; /* partner PID's webhooks */
static struct proc disp;    /* one dispatcher */
static struct proc w[NW];
static int running[NW];
static char names[NW][16];
static int nusers;

/* ---- Users and watchers ---- */

static void uid_of(int u, char out[32])
{
    snprintf(out, 32, "000000000000000000b%05d", u);
}

static int add_users(int to)
{
    for (; nusers < to; nusers++) {
        char uid[32], login[16], pass[16];
        uid_of(nusers, uid);
        snprintf(login, sizeof login, "user%d", nusers + 1);
        snprintf(pass, sizeof pass, "pass%d", nusers + 1);
        if (fx_user(&redis, uid, PID, "bf", login, login, pass) < 0)
            return -1;
    }
    return 0;
}

static int start_watcher(int i)
{
    static const char *const env[] = {"SUPERIMAP_IMAP_LOGINS_PER_SEC=20000",
                                      "SUPERIMAP_MAX_MOVES_PER_SEC=1000",
                                      "SUPERIMAP_MAX_USERS=20000", NULL};
    if (harness_node_start(&w[i], &redis, "superimap-watcher", names[i], env) < 0)
        return -1;
    running[i] = 1;
    return 0;
}

static double watching(int i)
{
    return running[i] ? harness_metric(w[i].port, "superimap_watcher_sessions_watching") : 0;
}

/*
 * Reads every user's lease: owner[u] is the watcher slot whose current
 * incarnation ("<id>:<generation>") holds it, -1 when none does (no lease,
 * a dead or fenced holder). Returns how many users have an owner, or -1.
 */
static int read_owners(signed char *owner)
{
    char tok[NW][48];
    for (int i = 0; i < NW; i++) {
        long long gen =
            running[i] ? (long long)harness_metric(w[i].port, "superimap_watcher_generation") : -1;
        snprintf(tok[i], sizeof tok[i], "%.15s:%lld", names[i], gen);
    }
    redisContext *c = harness_redis_connect(&redis);
    if (c == NULL)
        return -1;
    const char **argv = xmalloc((size_t)(nusers + 1) * sizeof *argv);
    char(*keys)[64] = xmalloc((size_t)nusers * sizeof *keys);
    argv[0] = "MGET";
    for (int u = 0; u < nusers; u++) {
        char uid[32];
        uid_of(u, uid);
        snprintf(keys[u], sizeof keys[u], "si:{%u}:lease:%s", fx_shard(uid), uid);
        argv[u + 1] = keys[u];
    }
    redisReply *r = redisCommandArgv(c, nusers + 1, argv, NULL);
    int owned = -1;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)nusers) {
        owned = 0;
        for (int u = 0; u < nusers; u++) {
            owner[u] = -1;
            for (int i = 0; i < NW && r->element[u]->type == REDIS_REPLY_STRING; i++)
                if (running[i] && strcmp(r->element[u]->str, tok[i]) == 0)
                    owner[u] = (signed char)i;
            owned += owner[u] >= 0;
        }
    }
    freeReplyObject(r);
    redisFree(c);
    xfree(argv);
    xfree(keys);
    return owned;
}

/* 1 when every user has an owner and the running watchers see each other
 * and hold in IDLE what placement gives each, the users in all. */
static int all_watched(signed char *owner)
{
    if (read_owners(owner) != nusers)
        return 0;
    double sum = 0, nrunning = 0;
    for (int i = 0; i < NW; i++)
        nrunning += running[i];
    for (int i = 0; i < NW; i++) {
        if (!running[i])
            continue;
        double mine = watching(i);
        if (mine != harness_metric(w[i].port, "superimap_watcher_users_placed") ||
            harness_metric(w[i].port, "superimap_watcher_fleet_watchers") != nrunning)
            return 0;
        sum += mine;
    }
    return sum == nusers;
}

/* Polls all_watched() every POLL_MS; returns the seconds it took, or -1. */
static double wait_watched(signed char *owner)
{
    long long t0 = harness_now_ms();
    while (!all_watched(owner)) {
        if (harness_now_ms() - t0 > WATCH_MS) {
            fprintf(stderr, "bench_failover: %d users not all watched after %d s\n", nusers,
                    WATCH_MS / 1000);
            return -1;
        }
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return (double)(harness_now_ms() - t0) / 1000.0;
}

/* Lets the fleet idle ms after a change (a pause, not a wait for a
 * condition: there is none for "settled"). */
static void idle_for(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The receiver and a dispatcher delivering partner PID's new_mail webhooks
 * to it (no user_connected or user_disconnected webhooks: only mail is
 * counted). 0 or -1. */
static int start_receiver(void)
{
    rx = receiver_start("127.0.0.1", 0, 0);
    redisContext *c = rx != NULL ? harness_redis_connect(&redis) : NULL;
    if (c == NULL)
        return -1;
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", receiver_port(rx));
    wf_partner(c, PID, base, "bench-api-key-0123456789", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "user_connected_webhook_url", "", "user_disconnected_webhook_url", "", NULL);
    redisFree(c);
    static const char *const env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", NULL};
    return harness_node_start(&disp, &redis, "superimap-dispatcher", "bd1", env);
}

/* ---- a. Idle Redis load ---- */

struct cmdstat {
    char name[48];
    long long calls[2][2]; /* [scenario][before, after] */
};

static struct cmdstat cmds[MAX_CMDS];
static int ncmds;
static long long total[2][2];

/* Reads INFO commandstats and total_commands_processed into slot [sc][at]. */
static int read_stats(int sc, int at)
{
    redisContext *c = harness_redis_connect(&redis);
    if (c == NULL)
        return -1;
    redisReply *r = redisCommand(c, "INFO commandstats");
    redisReply *t = redisCommand(c, "INFO stats");
    int rc =
        r != NULL && r->type == REDIS_REPLY_STRING && t != NULL && t->type == REDIS_REPLY_STRING
            ? 0
            : -1;
    for (char *line = rc == 0 ? strstr(r->str, "cmdstat_") : NULL; line != NULL;
         line = strstr(line + 1, "cmdstat_")) {
        char name[48];
        long long calls;
        if (sscanf(line, "cmdstat_%47[^:]:calls=%lld", name, &calls) != 2)
            continue;
        int k = 0;
        while (k < ncmds && strcmp(cmds[k].name, name) != 0)
            k++;
        if (k == ncmds && ncmds < MAX_CMDS)
            snprintf(cmds[ncmds++].name, sizeof cmds[0].name, "%s", name);
        if (k < ncmds)
            cmds[k].calls[sc][at] = calls;
    }
    const char *tp = rc == 0 ? strstr(t->str, "total_commands_processed:") : NULL;
    total[sc][at] = tp != NULL ? atoll(tp + strlen("total_commands_processed:")) : -1;
    freeReplyObject(r);
    freeReplyObject(t);
    redisFree(c);
    return rc;
}

static int measure_idle(int sc)
{
    if (read_stats(sc, 0) < 0)
        return -1;
    idle_for(IDLE_WINDOW_S * 1000);
    return read_stats(sc, 1);
}

/* Our own two INFO calls fall in the window: they are left out. */
static double rate(long long before, long long after, int own)
{
    return (double)(after - before - own) / IDLE_WINDOW_S;
}

static int cmp_cmd(const void *a, const void *b)
{
    return strcmp(((const struct cmdstat *)a)->name, ((const struct cmdstat *)b)->name);
}

static void print_idle(void)
{
    qsort(cmds, (size_t)ncmds, sizeof cmds[0], cmp_cmd);
    printf("## a. Redis commands/s of an idle fleet (3 watchers, every user watched, no mail)\n\n");
    printf("Deltas of INFO commandstats and total_commands_processed over %d s after the fleet "
           "settled (commands run by Lua scripts count too; our own INFO calls do not).\n\n",
           IDLE_WINDOW_S);
    printf("| command | 1,000 users /s | 10,000 users /s |\n|---|---:|---:|\n");
    for (int k = 0; k < ncmds; k++) {
        int own = strcmp(cmds[k].name, "info") == 0 ? 2 : 0;
        double a = rate(cmds[k].calls[0][0], cmds[k].calls[0][1], own);
        double b = rate(cmds[k].calls[1][0], cmds[k].calls[1][1], own);
        if (a > 0.001 || b > 0.001) {
            /* A subcommand's name (client|list) must not split the row. */
            printf("| ");
            for (const char *c = cmds[k].name; *c != '\0'; c++)
                fputs(*c == '|' ? "\\|" : (char[]){*c, '\0'}, stdout);
            printf(" | %.2f | %.2f |\n", a, b);
        }
    }
    printf("| **total_commands_processed** | **%.2f** | **%.2f** |\n\n",
           rate(total[0][0], total[0][1], 3), rate(total[1][0], total[1][1], 3));
    printf("pexpire is the alive keys' renewal: one per shard (%d) per watcher every %d-%d s, so a "
           "window holds one round more or less. client\\|list is the reaper's listing "
           "(core/reaper): one per watcher every %d ms. Not in the window: each watcher's full "
           "re-read "
           "of its users every %d min (one ZRANGE per shard).\n\n",
           FX_SHARDS, INCARNATION_RENEW_MS / 1000, INCARNATION_RENEW_MS / 1000 + 1, REAPER_POLL_MS,
           USERS_RESYNC_MS / 60000);
}

/* ---- Mail through the window: a steady stream on a thread ---- */

/*
 * From before a kill (or SIGSTOP) until the fleet has settled after it,
 * MAIL_RATE messages a second are appended to the users in turn (user
 * i * 7919 mod users: every user, the victim's too, spread over the window),
 * on a control connection of the stream's own. What was appended is kept to
 * count what the fleet announced (count_mail()).
 */
struct stream {
    struct fakeimap f; /* a copy of fake, with its own control connection */
    pthread_t th;
    atomic_int stop;
    atomic_int n;      /* mails appended so far; user[] and uid[] below n are set */
    atomic_int failed; /* an append failed: the stream stopped */
    int nusers;
    int user[MAX_STREAM];
    uint32_t uid[MAX_STREAM];
};

static struct stream stream;

static void *stream_main(void *arg)
{
    struct stream *st = arg;
    static const char msg[] = "From: a@example.com\r\nTo: b@example.com\r\n"
                              "Subject: sent through a failover\r\n\r\nhello\r\n";
    long long t0 = harness_now_ms();
    for (int i = 0; i < MAX_STREAM && !atomic_load(&st->stop); i++) {
        long long due = t0 + (long long)i * 1000 / MAIL_RATE;
        while (harness_now_ms() < due && !atomic_load(&st->stop)) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL); /* pacing at MAIL_RATE */
        }
        int u = (int)((long long)i * 7919 % st->nusers);
        char login[16];
        snprintf(login, sizeof login, "user%d", u + 1);
        if (fakeimap_append(&st->f, login, msg, sizeof msg - 1, &st->uid[i]) < 0) {
            atomic_store(&st->failed, 1);
            break;
        }
        st->user[i] = u;
        atomic_store(&st->n, i + 1);
    }
    return NULL;
}

static int stream_start(void)
{
    memcpy(&stream.f, &fake, sizeof fake);
    stream.f.ctl_fd = -1; /* connects on its first request */
    stream.nusers = nusers;
    atomic_store(&stream.stop, 0);
    atomic_store(&stream.n, 0);
    atomic_store(&stream.failed, 0);
    return pthread_create(&stream.th, NULL, stream_main, &stream) == 0 ? 0 : -1;
}

static void stream_stop(void)
{
    atomic_store(&stream.stop, 1);
    pthread_join(stream.th, NULL);
    if (stream.f.ctl_fd >= 0)
        close(stream.f.ctl_fd);
    stream.f.ctl_fd = -1;
}

/* ---- b, d. Takeover after kill -9 and after SIGSTOP ---- */

/* One row of a timeline: sessions in IDLE per watcher (a SIGSTOPped one's
 * last reading: its sessions stay open at the server), and the counters
 * the rates are taken from. */
struct sample {
    double t_s;
    double n[3];
    long long sent, hooks, imap;
};

static struct sample samples[MAX_SAMPLES];
static int nsamples;
static double frozen_watching = -1; /* the SIGSTOPped watcher's last reading, or -1 */

static void take_sample(double t_s)
{
    if (nsamples == MAX_SAMPLES)
        return;
    struct sample *s = &samples[nsamples++];
    s->t_s = t_s;
    for (int i = 0; i < 3; i++)
        s->n[i] = i == 0 && frozen_watching >= 0 ? frozen_watching : watching(i);
    s->sent = atomic_load(&stream.n);
    s->hooks = receiver_count(rx, NULL);
    s->imap = fakeimap_stat(&fake, "authenticated");
}

/* Writes the timeline to $BENCH_DATA_DIR/name: per row the sessions of
 * each watcher, the sessions logged in at fake-imapd, and the mail appended
 * and announced (webhooks received) per second since the row before. */
static int write_timeline(const char *name, const char *event)
{
    const char *dir = getenv("BENCH_DATA_DIR");
    if (name == NULL || dir == NULL || *dir == '\0')
        return 0;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_failover: cannot write %s\n", path);
        return -1;
    }
    fprintf(f,
            "# %d users, %s of watcher 1 at t = 0; mail appended at %d/s\n"
            "# t_s watcher1 watcher2 watcher3 imap_sessions sent_per_s webhooks_per_s\n",
            nusers, event, MAIL_RATE);
    for (int s = 0; s < nsamples; s++) {
        /* Rates over the span since the row before: none in the first row. */
        const struct sample *x = &samples[s], *p = s > 0 ? &samples[s - 1] : NULL;
        double dt = p != NULL ? x->t_s - p->t_s : 0;
        fprintf(f, "%.2f %.0f %.0f %.0f %lld ", x->t_s, x->n[0], x->n[1], x->n[2], x->imap);
        if (dt > 0)
            fprintf(f, "%.1f %.1f\n", (double)(x->sent - p->sent) / dt,
                    (double)(x->hooks - p->hooks) / dt);
        else
            fprintf(f, "NaN NaN\n");
    }
    fclose(f);
    printf("Timeline of the %s at %d users written to %s (%d rows).\n\n", event, nusers, path,
           nsamples);
    return 0;
}

/* Wall-clock ms, as the watchers write last_login_at. */
static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when every user u with was[u] == 0 has a live owner and logged in
 * (reached IDLE: last_login_at) at or after since_ms. */
static int victims_back(const signed char *was, const signed char *owner, long long since_ms)
{
    redisContext *c = harness_redis_connect(&redis);
    if (c == NULL)
        return 0;
    int pending = 0, back = 1;
    for (int u = 0; u < nusers; u++) {
        if (was[u] != 0)
            continue;
        if (owner[u] < 0)
            back = 0;
        char uid[32];
        uid_of(u, uid);
        redisAppendCommand(c, "HGET si:{%u}:user:%s last_login_at", fx_shard(uid), uid);
        pending++;
    }
    while (pending-- > 0) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            back = 0;
            break;
        }
        if (r->type != REDIS_REPLY_STRING || atoll(r->str) < since_ms)
            back = 0;
        freeReplyObject(r);
    }
    redisFree(c);
    return back;
}

/* The outcome of one kill -9 or SIGSTOP. */
struct takeover {
    int users, victims;
    double victims_s, all_s;
    int sent, to_victims,
        delivered;         /* mail appended in the window, of it to its users, announced */
    long long twice;       /* webhooks received again under an id already received */
    double overlap_s;      /* longest span with more sessions logged in at fake-imapd than users */
    long long overlap_max; /* most sessions over the users at once */
    double cont_s;         /* SIGSTOP: the SIGCONT, from the stop */
    double fences, reaped; /* SIGSTOP: fences of the stopped watcher, reapings by the others */
};

/* A stream message's key: user index and UID. */
static uint64_t mail_key(int user, uint32_t uid)
{
    return (uint64_t)user << 32 | uid;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The stream message of webhook id "<uid>.<uidvalidity>.<message UID>" (uid
 * as uid_of() writes it), as mail_key(), or 0 when it is not one of ours. */
static uint64_t id_key(const char *id)
{
    const char *b = strchr(id, 'b'), *dot = strrchr(id, '.');
    if (b == NULL || dot == NULL)
        return 0;
    return mail_key(atoi(b + 1), (uint32_t)strtoul(dot + 1, NULL, 10));
}

/*
 * Counts the stream's mail announced: a webhook received for it, polled
 * for 30 s until every message has one; and the webhooks received again
 * under an id already received (no dispatcher dies here, so any is a
 * message announced twice).
 */
static void count_mail(struct takeover *t)
{
    int n = atomic_load(&stream.n);
    uint64_t *keys = xmalloc((size_t)(n + 1) * sizeof *keys);
    for (int i = 0; i < n; i++)
        keys[i] = mail_key(stream.user[i], stream.uid[i]);
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    unsigned char *got = xcalloc((size_t)n + 1, 1);
    long long deadline = harness_now_ms() + 30000;
    struct receiver_request *reqs = NULL;
    for (;;) {
        size_t max = (size_t)receiver_count(rx, NULL) + 16;
        reqs = xrealloc(reqs, max * sizeof *reqs);
        size_t m = receiver_requests(rx, reqs, max);
        memset(got, 0, (size_t)n);
        t->delivered = 0;
        t->twice = 0;
        for (size_t i = 0; i < m; i++) {
            uint64_t k = id_key(reqs[i].id);
            const uint64_t *hit = bsearch(&k, keys, (size_t)n, sizeof *keys, cmp_u64);
            if (hit == NULL)
                continue;
            if (got[hit - keys]++ == 0)
                t->delivered++;
            else
                t->twice++;
        }
        if (t->delivered == n || harness_now_ms() > deadline)
            break;
        harness_poll_pause();
    }
    t->sent = n;
    xfree(reqs);
    xfree(got);
    xfree(keys);
}

/* Notes in t the sessions at fake-imapd beyond one per user: the longest
 * span they lasted and the most at once (polled every POLL_MS). */
static void track_overlap(struct takeover *t, long long *since)
{
    long long over = fakeimap_stat(&fake, "authenticated") - nusers;
    long long now = harness_now_ms();
    if (over > 0) {
        t->overlap_max = over > t->overlap_max ? over : t->overlap_max;
        if (*since == 0)
            *since = now;
        double span = (double)(now - *since) / 1000.0;
        t->overlap_s = span > t->overlap_s ? span : t->overlap_s;
    } else {
        *since = 0;
    }
}

static double metric_sum(const char *series, int from)
{
    double sum = 0;
    for (int i = from; i < 3; i++)
        sum += running[i] ? harness_metric(w[i].port, series) : 0;
    return sum;
}

/*
 * At t = 0 watcher 0 gets sig: SIGKILL, or SIGSTOP (then SIGCONT
 * CONT_AFTER_MS after its users are watched again, and it must fence
 * itself and come back as a new incarnation). Samples every SAMPLE_MS
 * from -PRE_KILL_S; polls every POLL_MS until all users are watched by the
 * running watchers, noting when the victim's users all have a live owner
 * that logged them in after t = 0, and POST_S more. Mail flows all along.
 */
static int stop_and_take_over(int sig, signed char *owner, struct takeover *t)
{
    if (wait_watched(owner) < 0)
        return -1;
    signed char *was = xmalloc((size_t)nusers);
    memcpy(was, owner, (size_t)nusers);
    t->victims = 0;
    for (int u = 0; u < nusers; u++)
        t->victims += was[u] == 0;
    long long t_kill = harness_now_ms() + PRE_KILL_S * 1000;
    long long next_sample = t_kill - PRE_KILL_S * 1000, done_at = 0, cont_at = 0, since = 0;
    t->all_s = t->victims_s = t->cont_s = -1;
    double reaped0 = metric_sum("superimap_fleet_peers_reaped_total", 1);
    double fences0 = harness_metric(w[0].port, "superimap_watcher_fences_total");
    int killed = 0, rc = 0, continued = sig != SIGSTOP;
    long long killed_wall = 0;
    for (;;) {
        long long now = harness_now_ms();
        if (!killed && now >= t_kill) {
            killed_wall = wall_ms();
            if (sig == SIGSTOP)
                frozen_watching = watching(0);
            harness_proc_signal(&w[0], sig);
            if (sig == SIGKILL)
                harness_proc_wait(&w[0], 5000);
            running[0] = 0;
            killed = 1;
        }
        if (now >= next_sample) {
            take_sample((double)(now - t_kill) / 1000.0);
            next_sample += SAMPLE_MS;
        }
        track_overlap(t, &since);
        int all = killed && done_at == 0 && all_watched(owner); /* owner read afresh */
        if (killed && t->victims_s < 0 && victims_back(was, owner, killed_wall)) {
            t->victims_s = (double)(harness_now_ms() - t_kill) / 1000.0;
            cont_at = harness_now_ms() + CONT_AFTER_MS;
        }
        int settled = all && continued; /* judged before a SIGCONT in this round */
        if (!continued && cont_at > 0 && now >= cont_at) {
            t->reaped = metric_sum("superimap_fleet_peers_reaped_total", 1) - reaped0;
            harness_proc_signal(&w[0], SIGCONT);
            t->cont_s = (double)(now - t_kill) / 1000.0;
            frozen_watching = -1;
            running[0] = 1;
            continued = 1;
        }
        if (settled) {
            t->all_s = (double)(harness_now_ms() - t_kill) / 1000.0;
            done_at = harness_now_ms();
        }
        if (done_at > 0 && now >= done_at + POST_S * 1000)
            break;
        if (now - t_kill > WATCH_MS) {
            fprintf(stderr, "bench_failover: users not all taken over after %d s\n",
                    WATCH_MS / 1000);
            rc = -1;
            break;
        }
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL); /* polling interval */
    }
    if (!continued) { /* no takeover: the stopped watcher goes on, to be stopped at the end */
        harness_proc_signal(&w[0], SIGCONT);
        frozen_watching = -1;
        running[0] = 1;
    }
    if (sig == SIGSTOP)
        t->fences = harness_metric(w[0].port, "superimap_watcher_fences_total") - fences0;
    for (int i = 0, n = atomic_load(&stream.n); i < n; i++)
        t->to_victims += was[stream.user[i]] == 0;
    xfree(was);
    return rc;
}

/* sig (SIGKILL or SIGSTOP) to the first watcher while mail flows, its users
 * taken over (the timeline written to dat), the mail counted; a killed
 * watcher is restarted, and every user watched again. */
static int takeover(int sig, signed char *owner, struct takeover *t, const char *dat)
{
    memset(t, 0, sizeof *t);
    nsamples = 0;
    receiver_clear(rx); /* the webhooks of this event's window only */
    if (stream_start() < 0)
        return -1;
    int rc = stop_and_take_over(sig, owner, t);
    stream_stop();
    if (rc < 0 || atomic_load(&stream.failed)) {
        fprintf(stderr, "bench_failover: %s\n", rc < 0 ? "no takeover" : "an append failed");
        return -1;
    }
    t->users = nusers;
    count_mail(t);
    if (write_timeline(dat, sig == SIGSTOP ? "SIGSTOP" : "kill -9") < 0)
        return -1;
    if (sig == SIGKILL && start_watcher(0) < 0)
        return -1;
    if (wait_watched(owner) < 0)
        return -1;
    idle_for(SETTLE_MS);
    return 0;
}

/* The table of (b) and the results of the three events. */
static void print_takeovers(const struct takeover *k)
{
    printf("## b. Takeover after kill -9 (1,000 and 10,000 users) and SIGSTOP (10,000) of 1 of 3 "
           "watchers, mail flowing\n\n");
    printf("Alive keys live %d s and are renewed every %d s; a node is dead after %d s "
           "without a heartbeat (every 5 s); a node whose Redis connection closed is reaped "
           "after %d ms (core/reaper): a SIGSTOPped one's stays open, so its users wait for its "
           "alive keys to expire. Logins are paced at 20,000/s. Mail is appended at %d/s to "
           "every user in turn from %d s before the event until the fleet has settled; one "
           "dispatcher delivers their webhooks to a receiver on a thread of this program: a "
           "message is announced when its webhook is received, twice when its id comes again. The "
           "SIGSTOPped watcher gets SIGCONT %d ms after its users are watched again. Two "
           "sessions: more users logged in at fake-imapd than there are users.\n\n",
           INCARNATION_ALIVE_TTL_MS / 1000, INCARNATION_RENEW_MS / 1000, FLEET_DEAD_MS / 1000,
           REAPER_GRACE_MS, MAIL_RATE, PRE_KILL_S, CONT_AFTER_MS);
    printf("| users | event | on the watcher | its users watched again after s | all users "
           "watched again after s | mail appended | of it to its users | announced | lost | "
           "announced twice | longest with two sessions s | most users with two "
           "sessions |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 3; i++)
        printf("| %d | %s | %d | %.1f | %.1f | %d | %d | %d | %d | %lld | %.1f | %lld |\n",
               k[i].users, i < 2 ? "kill -9" : "SIGSTOP", k[i].victims, k[i].victims_s, k[i].all_s,
               k[i].sent, k[i].to_victims, k[i].delivered, k[i].sent - k[i].delivered, k[i].twice,
               k[i].overlap_s, k[i].overlap_max);
    printf("\nSIGSTOP: SIGCONT %.1f s after the stop; the stopped watcher fenced itself %.0f "
           "time(s) after it; the other watchers reaped %.0f peers meanwhile (the reaper must "
           "not act on a stopped node: its Redis connection stays open).\n\n",
           k[2].cont_s, k[2].fences, k[2].reaped);
    bench_result("failover_rewatch_1k_s", "%.1f", k[0].victims_s);
    bench_result("failover_rewatch_s", "%.1f", k[1].victims_s);
    bench_result("failover_victims_1k", "%d", k[0].victims);
    bench_result("failover_victims_10k", "%d", k[1].victims);
    bench_result("failover_mail_sent", "%d", k[0].sent + k[1].sent);
    bench_result("failover_mail_lost", "%d",
                 k[0].sent - k[0].delivered + k[1].sent - k[1].delivered);
    bench_result("failover_mail_duplicated", "%lld", k[0].twice + k[1].twice);
    bench_result("failover_overlap_s", "%.1f",
                 k[0].overlap_s > k[1].overlap_s ? k[0].overlap_s : k[1].overlap_s);
    bench_result("failover_sigstop_s", "%.1f", k[2].victims_s);
    bench_result("failover_sigstop_users", "%d", k[2].users);
    bench_result("failover_sigstop_victims", "%d", k[2].victims);
    bench_result("failover_sigstop_cont_s", "%.1f", k[2].cont_s);
    bench_result("failover_sigstop_fences", "%.0f", k[2].fences);
    bench_result("failover_sigstop_reaped", "%.0f", k[2].reaped);
    bench_result("failover_sigstop_mail_sent", "%d", k[2].sent);
    bench_result("failover_sigstop_mail_lost", "%d", k[2].sent - k[2].delivered);
    bench_result("failover_sigstop_mail_duplicated", "%lld", k[2].twice);
    bench_result("failover_sigstop_overlap_s", "%.1f", k[2].overlap_s);
    bench_result("failover_sigstop_overlap_users", "%lld", k[2].overlap_max);
}

/* ---- c. Users moved on a join and a drain ---- */

static int join(void)
{
    return start_watcher(3);
}

static int drain(void)
{
    harness_proc_signal(&w[3], SIGTERM);
    running[3] = 0; /* its leases no longer count as watched */
    return 0;
}

/* Reads the lease owners of the settled fleet, makes the change, then
 * samples them every POLL_MS until the fleet is settled again; returns the
 * owner changes seen (a user moved twice counts twice) in *changes, the
 * users whose owner differs at the end in *net, the seconds from the
 * change to settled in *took. */
static int follow_moves(signed char *owner, int (*change)(void), long *changes, long *net,
                        double *took)
{
    signed char *first = xmalloc((size_t)nusers), *last = xmalloc((size_t)nusers);
    int rc = wait_watched(first) < 0 || change() < 0 ? -1 : 0;
    memcpy(last, first, (size_t)nusers);
    *changes = *net = 0;
    long long t0 = harness_now_ms();
    int settled_polls = 0;
    while (rc == 0) {
        int all = all_watched(owner);
        for (int u = 0; u < nusers; u++) {
            if (owner[u] >= 0 && owner[u] != last[u]) {
                *changes += last[u] >= 0 || first[u] >= 0;
                last[u] = owner[u];
            }
        }
        /* Settled: all watched, no change for a second. */
        settled_polls = all ? settled_polls + 1 : 0;
        if (settled_polls * POLL_MS >= 1000 && harness_now_ms() - t0 > 3000) {
            *took = (double)(harness_now_ms() - t0 - settled_polls * POLL_MS) / 1000.0;
            break;
        }
        if (harness_now_ms() - t0 > WATCH_MS) {
            fprintf(stderr, "bench_failover: fleet not settled %d s after the change\n",
                    WATCH_MS / 1000);
            rc = -1;
        }
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL); /* polling interval */
    }
    for (int u = 0; u < nusers; u++)
        *net += last[u] != first[u];
    xfree(first);
    xfree(last);
    return rc;
}

/* ---- main ---- */

static int bench_run(void)
{
    signed char *owner = xmalloc(MAX_USERS);
    int rc = -1;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=10000", "SUPERIMAP_LOG_LEVEL=warn", NULL};
    if (fx_suite_start(&redis, &fake, 0, extra) < 0)
        goto out;
    const char *host = NULL;
    int port = fakeimap_port(&fake, 0, 0, &host);
    if (fx_provider(&redis, "bf", host, port, "none") < 0 || add_users(1000) < 0 ||
        start_receiver() < 0)
        goto out;
    for (int i = 0; i < 3; i++)
        if (start_watcher(i) < 0)
            goto out;
    double est = wait_watched(owner);
    if (est < 0)
        goto out;
    fprintf(stderr, "bench_failover: 1,000 users watched by 3 watchers in %.1f s\n", est);
    idle_for(SETTLE_MS);
    if (measure_idle(0) < 0)
        goto out;
    struct takeover kills[3]; /* kill -9 at 1,000 and 10,000 users, SIGSTOP at 10,000 */
    if (takeover(SIGKILL, owner, &kills[0], NULL) < 0)
        goto out;

    if (add_users(MAX_USERS) < 0 || (est = wait_watched(owner)) < 0)
        goto out;
    fprintf(stderr, "bench_failover: 10,000 users watched by 3 watchers in %.1f s\n", est);
    idle_for(SETTLE_MS);
    if (measure_idle(1) < 0)
        goto out;
    print_idle();
    fflush(stdout);
    if (takeover(SIGKILL, owner, &kills[1], "failover.dat") < 0 ||
        takeover(SIGSTOP, owner, &kills[2], "failover_sigstop.dat") < 0)
        goto out;
    print_takeovers(kills);
    fflush(stdout);

    /* Back to 3 (takeover() restarted the killed one), then a 4th joins, then
     * drains. */
    long join_changes, join_net, leave_changes, leave_net;
    double join_s, drain_s;
    if (follow_moves(owner, join, &join_changes, &join_net, &join_s) < 0)
        goto out;
    idle_for(SETTLE_MS);
    if (follow_moves(owner, drain, &leave_changes, &leave_net, &drain_s) < 0)
        goto out;
    if (harness_proc_wait(&w[3], 15000) < 0) {
        fprintf(stderr, "bench_failover: the drained watcher did not exit within 15 s\n");
        goto out;
    }
    printf("## c. Users moved on a join and a drain (%d users, live lease owners)\n\n", nusers);
    printf("| change | owner changes seen | users on another watcher after | ideal | settled "
           "after s |\n");
    printf("|---|---:|---:|---:|---:|\n");
    printf("| join, 3 -> 4 | %.2f%% | %.2f%% | 25%% | %.1f |\n", 100.0 * join_changes / nusers,
           100.0 * join_net / nusers, join_s);
    printf("| drain (SIGTERM), 4 -> 3 | %.2f%% | %.2f%% | 25%% | %.1f |\n\n",
           100.0 * leave_changes / nusers, 100.0 * leave_net / nusers, drain_s);
    printf("Settled: every user watched by the new set of watchers, each holding what placement "
           "gives it (polled every %d ms).\n",
           POLL_MS);
    rc = 0;
out:
    xfree(owner);
    for (int i = 0; i < NW; i++)
        harness_proc_stop(&w[i]);
    harness_proc_stop(&disp);
    receiver_stop(rx);
    fx_suite_stop(&redis, &fake);
    return rc;
}

int main(int argc, char **argv)
{
    (void)argc;
    /* The binaries are in bin/ beside this program's bench/. */
    char copy[384], dir[512];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(dir, sizeof dir, "%s/../bin", dirname(copy));
    if (getenv("SUPERIMAP_BIN_DIR") == NULL)
        setenv("SUPERIMAP_BIN_DIR", dir, 1);
    for (int i = 0; i < NW; i++)
        snprintf(names[i], sizeof names[i], "bw%d", i + 1);
    printf("Watcher fleet on one machine: redis-server, superimap-fake-imapd (10,000 "
           "mailboxes), 3-4 superimap-watchers with SUPERIMAP_IMAP_LOGINS_PER_SEC=20000 and "
           "SUPERIMAP_MAX_MOVES_PER_SEC=1000.\n\n");
    fflush(stdout);
    int rc = bench_run();
    if (rc < 0)
        printf("**bench_failover failed: see stderr**\n");
    return rc < 0 ? 1 : 0;
}
