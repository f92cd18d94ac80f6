/*
 * Several mailboxes per user (issue #21), measured: what watching INBOX and
 * Junk costs against INBOX alone, with NOTIFY and with STATUS polling, and
 * what a reconnect storm costs with the UIDNEXT skip, without it (the
 * watcher before it) and with a QRESYNC resync. Markdown tables on stdout;
 * nothing here judges the numbers (docs/performance.md does, in words).
 *
 * 1. Three ways, USERS users each, one watcher, one superimap-fake-imapd,
 *    a private redis-server (tests/bench/rig.h):
 *      (a) INBOX only (fake-imapd's default profile);
 *      (b) ["INBOX","\\Junk"] with NOTIFY (profiles notify,special-use);
 *      (c) ["INBOX","\\Junk"] with STATUS polling (profile special-use,
 *          the provider's mailbox_poll_s POLL_S).
 *    For (b) and (c) each user gets a mailbox Junk with \Junk in fake-imapd
 *    first. Measured: the sessions fake-imapd holds (and the connections it
 *    accepted); the time from the users written until every session is
 *    watching; the watcher's RSS before the users and at the end of the
 *    steady window below, per session (read earlier, it still holds the
 *    login burst's heap: INBOX only, it fell by 10 MB between 3 and 6 s
 *    after all watching in one run); IMAP commands per user until watching (fake-imapd's cmd_*
 *    counters, by name; until SETTLE_MS after all watching) and per user per
 *    minute over a steady WINDOW_S (for (c) WINDOW_STATUS_S, scaled to a
 *    minute) with its busiest second; Redis commands per user until settled
 *    and per minute in steady state (INFO commandstats deltas: a
 *    script's EVALSHA and the commands it runs each count, as Redis counts
 *    them; the benchmark's own HSET, ZADD and XADD per user and its INFO
 *    are taken out). For (b) and (c), then, JUNK_MAILS mails appended to
 *    the Junk of as many random users, JUNK_GAP_MS apart: the time from the
 *    append sent to the first keyspace notification of its event hash
 *    (record_mail's HSET).
 *
 * 2. Reconnect storm: USERS INBOX users watching, one message each in INBOX
 *    (appended before the watcher starts, so its cursor is past it), no new
 *    mail; fake-imapd's counters reset, then KICK of every user at once.
 *    The time until every user has sent IDLE again and the watcher shows
 *    them all watching; then, SETTLE_MS later, per reconnect: IMAP commands
 *    by name, bytes (every connection fake-imapd holds is a reconnect's: the
 *    kernel's bytes_received and bytes_sent of each, from ss -ti of
 *    iproute2; not measured without ss), Redis commands (net of the idle
 *    rate measured over STORM_IDLE_S before). Once with this tree's watcher
 *    (a reconnect skips the UID FETCH when EXAMINE's UIDNEXT shows nothing
 *    past the cursor), once with the watcher of BENCH_OLD_WATCHER (a path;
 *    tests/bench/run.sh builds the revision before the skip; without it the
 *    column is skipped), which sends UID FETCH last+1:* on every reconnect.
 *    Then QRESYNC on the same fake-imapd (profiles condstore,qresync): a
 *    raw client built on proto/imap_cmd reconnects QRESYNC_USERS users one
 *    after the other as a QRESYNC watcher would (LOGIN, ENABLE QRESYNC,
 *    EXAMINE INBOX (QRESYNC (uidvalidity highestmodseq)), IDLE), with the
 *    UIDVALIDITY and HIGHESTMODSEQ fake-imapd's INFO gives, and as the
 *    UIDNEXT skip does when nothing is new (LOGIN, EXAMINE INBOX, IDLE), so
 *    the two differ only by QRESYNC: commands per reconnect counted the same
 *    way, bytes as the client sent and read them.
 *
 * With BENCH_DATA_DIR set it writes results.txt keys (tests/bench/run.sh's
 * header lists them). BENCH_SCALE (0 < s <= 1) scales USERS for quick runs;
 * BENCH_ONLY=ways or BENCH_ONLY=storm runs only that part.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "proto/imap_cmd.h"
#include "tests/bench/rig.h"

#define USERS           10000
#define POLL_S          10   /* mailbox_poll_s of way (c) */
#define SETTLE_MS       2000 /* after all watching, before the steady window */
#define WINDOW_S        10   /* steady window of (a) and (b) */
#define WINDOW_STATUS_S 30   /* of (c): three STATUS rounds */
#define JUNK_MAILS      200
#define JUNK_GAP_MS     10
#define STORM_IDLE_S    3
#define STORM_S         120.0 /* most a storm may take */
#define QRESYNC_USERS   1000
#define CTL_WINDOW      256 /* control requests in flight at once */
#define MAX_COUNTERS    128
#define JUNK_LIST       "[\"INBOX\",\"\\\\Junk\"]"
#define MSG             "From: a@example.com\r\nSubject: before\r\n\r\nx\r\n"
#define JUNK_MSG        "From: b@example.com\r\nSubject: misfiled\r\n\r\ny\r\n"

static int users = USERS;

/* ---- Named counters: fake-imapd's STATS, Redis's INFO commandstats ---- */

struct counters {
    int n;
    char name[MAX_COUNTERS][48];
    double v[MAX_COUNTERS];
};

static double cnt_get(const struct counters *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->name[i], name) == 0)
            return c->v[i];
    return 0;
}

static void cnt_set(struct counters *c, const char *name, size_t len, double v)
{
    for (int i = 0; i < c->n; i++)
        if (strlen(c->name[i]) == len && strncmp(c->name[i], name, len) == 0) {
            c->v[i] = v;
            return;
        }
    if (c->n < MAX_COUNTERS && len < sizeof c->name[0]) {
        memcpy(c->name[c->n], name, len);
        c->name[c->n][len] = '\0';
        c->v[c->n++] = v;
    }
}

/* d = (b - a - rate * seconds) / per for every name of b (a's missing ones
 * count 0; rate may be NULL). */
static void cnt_delta(const struct counters *a, const struct counters *b,
                      const struct counters *rate, double seconds, double per, struct counters *d)
{
    d->n = 0;
    for (int i = 0; i < b->n; i++) {
        double v =
            b->v[i] - cnt_get(a, b->name[i]) - (rate ? cnt_get(rate, b->name[i]) * seconds : 0);
        cnt_set(d, b->name[i], strlen(b->name[i]), v / per);
    }
}

/* The sum of the counters whose name starts with prefix. */
static double cnt_sum(const struct counters *c, const char *prefix)
{
    double s = 0;
    for (int i = 0; i < c->n; i++)
        if (strncmp(c->name[i], prefix, strlen(prefix)) == 0)
            s += c->v[i];
    return s;
}

/* Writes "NAME v, NAME v" of the counters starting with prefix that are at
 * least 0.005, largest first, into out: fake-imapd's cmd_uid_fetch as UID
 * FETCH, Redis's cmdstat_evalsha as EVALSHA. "none" when there are none. */
static void cnt_list(const struct counters *c, const char *prefix, char *out, size_t len)
{
    int used[MAX_COUNTERS] = {0};
    size_t off = 0;
    out[0] = '\0';
    for (;;) {
        int best = -1;
        for (int i = 0; i < c->n; i++)
            if (!used[i] && strncmp(c->name[i], prefix, strlen(prefix)) == 0 && c->v[i] >= 0.005 &&
                (best < 0 || c->v[i] > c->v[best]))
                best = i;
        if (best < 0 || off + 64 > len)
            break;
        used[best] = 1;
        char name[48];
        snprintf(name, sizeof name, "%s", c->name[best] + strlen(prefix));
        for (char *p = name; *p; p++)
            *p = *p == '_' ? ' ' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        off +=
            (size_t)snprintf(out + off, len - off, "%s%s %.2f", off ? ", " : "", name, c->v[best]);
    }
    if (off == 0)
        snprintf(out, len, "none");
}

/* fake-imapd's STATS into c ("OK logins=1 ... cmd_login=1 ..."); 0 or -1. */
static int fake_stats(struct fake *f, struct counters *c)
{
    char reply[8192];
    int rc = ctl(f, "STATS", NULL, 0, reply, sizeof reply);
    c->n = 0;
    for (char *w = strtok(reply + 2, " "); rc == 0 && w != NULL; w = strtok(NULL, " ")) {
        char *eq = strchr(w, '=');
        if (eq != NULL)
            cnt_set(c, w, (size_t)(eq - w), atof(eq + 1));
    }
    return rc;
}

/* Redis's INFO commandstats into c: cmdstat_<command> -> calls. */
static int redis_cmdstats(const struct redis_fixture *fx, struct counters *c)
{
    redisReply *r = redis_fixture_cmd(fx, "INFO commandstats");
    c->n = 0;
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    for (char *line = r->str; line != NULL && *line;) {
        char *colon = strchr(line, ':'), *calls = strstr(line, "calls=");
        char *nl = strchr(line, '\n');
        if (strncmp(line, "cmdstat_", 8) == 0 && colon != NULL && calls != NULL &&
            (nl == NULL || calls < nl))
            cnt_set(c, line, (size_t)(colon - line), atof(calls + 6));
        line = nl ? nl + 1 : NULL;
    }
    freeReplyObject(r);
    /* The benchmark's own: the INFO it reads with, and once per user at most. */
    cnt_set(c, "cmdstat_info", strlen("cmdstat_info"), 0);
    return 0;
}

/* ---- The control channel, pipelined ---- */

/* Writes request i (its line and "\n", and a body) into out; its length. */
typedef size_t (*ctl_req_fn)(int i, char *out, size_t len);

/*
 * Sends the requests made by make for i = 0..n-1, CTL_WINDOW at a time
 * pipelined, and reads their replies. Returns the sum of the numbers after
 * "OK " (KICK: sessions closed), or -1 when one is not OK.
 */
static long ctl_batch(struct fake *f, int n, ctl_req_fn make)
{
    static char out[CTL_WINDOW * 256];
    long sum = 0;
    for (int i = 0; i < n; i += CTL_WINDOW) {
        int m = n - i < CTL_WINDOW ? n - i : CTL_WINDOW;
        size_t len = 0;
        for (int j = 0; j < m; j++)
            len += make(i + j, out + len, sizeof out - len);
        for (size_t off = 0; off < len;) {
            ssize_t w = write(f->ctl_fd, out + off, len - off);
            if (w <= 0)
                return -1;
            off += (size_t)w;
        }
        for (int j = 0; j < m; j++) {
            char line[256];
            size_t got = 0;
            while (got + 1 < sizeof line) {
                if (read(f->ctl_fd, line + got, 1) != 1)
                    return -1;
                if (line[got] == '\n')
                    break;
                got++;
            }
            line[got] = '\0';
            if (strncmp(line, "OK", 2) != 0) {
                fprintf(stderr, "bench_mailboxes: control request %d: %s\n", i + j, line);
                return -1;
            }
            sum += atol(line + 2);
        }
    }
    return sum;
}

static size_t req_junk(int i, char *out, size_t len)
{
    return (size_t)snprintf(out, len, "MAILBOX user%d CREATE Junk \\Junk\n", i + 1);
}

static size_t req_append(int i, char *out, size_t len)
{
    return (size_t)snprintf(out, len, "APPEND user%d %zu\n%s", i + 1, sizeof MSG - 1, MSG);
}

static size_t req_kick(int i, char *out, size_t len)
{
    return (size_t)snprintf(out, len, "KICK user%d\n", i + 1);
}

/*
 * The bytes of fake-imapd's established IMAP connections since each opened,
 * as the kernel counts them (ss -ti of iproute2: bytes_received,
 * bytes_sent): into *in (client to server) and *out. Returns the number of
 * connections, or -1 when ss cannot be run.
 */
static int ss_bytes(const struct fake *f, double *in, double *out)
{
    char cmd[200], line[4096];
    snprintf(cmd, sizeof cmd, "ss -tinH state established '( src %s:%d )' 2>/dev/null", f->addr,
             f->port);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    int n = 0;
    *in = *out = 0;
    while (fgets(line, sizeof line, p) != NULL) {
        if (line[0] != ' ' && line[0] != '\t')
            n++; /* a socket's line; its details follow, indented */
        const char *v;
        if ((v = strstr(line, " bytes_sent:")) != NULL)
            *out += atof(v + 12);
        if ((v = strstr(line, " bytes_received:")) != NULL)
            *in += atof(v + 16);
    }
    return pclose(p) == 0 && n > 0 ? n : -1;
}

/* ---- Junk latency: appends and the keyspace notifications of their events ---- */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Reads the keyspace notifications buffered or arriving on sub until
 * until, setting seen[slot_of[user]] on the first event HSET of each. */
static void junk_read(redisContext *sub, const int *slot_of, double *seen, double until)
{
    for (;;) {
        void *rv = NULL;
        while (redisGetReplyFromReader(sub, &rv) == REDIS_OK && rv != NULL) {
            redisReply *r = rv;
            double now = fixture_now();
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
                strcmp(r->element[3]->str, "hset") == 0) {
                const char *e = strstr(r->element[2]->str, ":evt:");
                long u = e != NULL ? (long)strtoul(e + 5, NULL, 16) - 1 : -1;
                if (u >= 0 && u < users && slot_of[u] >= 0 && seen[slot_of[u]] < 0)
                    seen[slot_of[u]] = now;
            }
            freeReplyObject(r);
            rv = NULL;
        }
        double left = until - fixture_now();
        if (left <= 0)
            return;
        struct pollfd p = {.fd = sub->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) > 0 && redisBufferRead(sub) != REDIS_OK)
            return;
    }
}

struct junk_result {
    int sent, recorded;
    double p50, p90, p99, max; /* ms */
};

/* Appends JUNK_MAILS mails into the Junk of as many random users,
 * JUNK_GAP_MS apart, and times each until its event is in Redis (at most
 * wait_s after the last). */
static int junk_latency(struct watcher *w, struct fake *f, double wait_s, struct junk_result *res)
{
    freeReplyObject(redis_fixture_cmd(&w->fx, "CONFIG SET notify-keyspace-events Kh"));
    redisContext *sub = redis_fixture_connect(&w->fx, 60000);
    redisReply *r = sub ? redisCommand(sub, "PSUBSCRIBE __keyspace@0__:si:*:evt:*") : NULL;
    if (r == NULL) {
        if (sub != NULL)
            redisFree(sub);
        return -1;
    }
    freeReplyObject(r);
    int n = JUNK_MAILS < users ? JUNK_MAILS : users;
    int *slot_of = malloc((size_t)users * sizeof *slot_of),
        *order = malloc((size_t)users * sizeof *order);
    double sent[JUNK_MAILS], seen[JUNK_MAILS], lat[JUNK_MAILS];
    for (int i = 0; i < users; i++) {
        slot_of[i] = -1;
        order[i] = i;
    }
    unsigned seed = 21;
    for (int i = 0; i < n; i++) { /* the first n of a shuffle: n distinct users */
        int j = i + (int)(rand_r(&seed) % (unsigned)(users - i));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
        slot_of[order[i]] = i;
        seen[i] = -1;
    }
    int rc = 0;
    double t0 = fixture_now();
    for (int i = 0; i < n && rc == 0; i++) {
        junk_read(sub, slot_of, seen, t0 + i * JUNK_GAP_MS / 1000.0);
        char req[96], reply[64];
        snprintf(req, sizeof req, "APPENDTO user%d Junk %zu", order[i] + 1, sizeof JUNK_MSG - 1);
        sent[i] = fixture_now();
        rc = ctl(f, req, JUNK_MSG, sizeof JUNK_MSG - 1, reply, sizeof reply);
    }
    double deadline = fixture_now() + wait_s;
    int got = 0;
    while (rc == 0 && got < n && fixture_now() < deadline) {
        junk_read(sub, slot_of, seen, fixture_now() + 0.05);
        got = 0;
        for (int i = 0; i < n; i++)
            got += seen[i] >= 0;
    }
    int nl = 0;
    for (int i = 0; i < n; i++)
        if (seen[i] >= 0)
            lat[nl++] = (seen[i] - sent[i]) * 1000.0;
    qsort(lat, (size_t)nl, sizeof *lat, cmp_dbl);
    res->sent = n;
    res->recorded = nl;
    res->p50 = pct(lat, nl, 0.5);
    res->p90 = pct(lat, nl, 0.9);
    res->p99 = pct(lat, nl, 0.99);
    res->max = pct(lat, nl, 1);
    free(slot_of);
    free(order);
    redisFree(sub);
    return rc == 0 && nl == n ? 0 : -1;
}

/* ---- 1. Three ways ---- */

struct way {
    const char *name;
    const char *key; /* of results.txt */
    const char *mailboxes;
    const char *profiles;
    int poll_s;   /* 0: the provider's default */
    int window_s; /* steady window */
};

struct way_result {
    int ok;
    double sessions, connections, est_s, bytes_per_session;
    double peak_per_s; /* most IMAP commands in one second of the steady window, all users */
    long rss0, rss1;
    struct counters imap_setup, imap_steady, redis_setup, redis_steady; /* per user (per minute) */
    struct junk_result junk;
};

static int run_way(const struct way *wy, struct crypto_keys *keys, struct way_result *res)
{
    struct watcher w;
    struct fake f;
    memset(&w, 0, sizeof w);
    memset(&f, 0, sizeof f);
    memset(res, 0, sizeof *res);
    int rc = redis_fixture_start(&w.fx, NULL);
    if (rc == 0)
        rc = fake_start(&f, w.fx.dir, 0, users, 0, wy->profiles);
    if (rc == 0 && wy->mailboxes != NULL && ctl_batch(&f, users, req_junk) < 0)
        rc = -1;
    if (rc == 0)
        rc = watcher_start(&w, 0, users, NULL);
    struct counters s0, s1, s2, s3, r0, r1, r2, r3;
    if (rc == 0) {
        fixture_nap_ms(1000); /* settle before the baseline, not a wait for a condition */
        res->rss0 = bench_rss_kib(w.c.pid);
        redisReply *r = redis_fixture_cmd(
            &w.fx, "HSET si:provider:b code b imap_host %s imap_port %d tls none mailbox_poll_s %d",
            f.addr, f.port, wy->poll_s > 0 ? wy->poll_s : 60);
        freeReplyObject(r);
        char reply[64];
        rc = ctl(&f, "RESET", NULL, 0, reply, sizeof reply);
    }
    if (rc == 0 && (fake_stats(&f, &s0) < 0 || redis_cmdstats(&w.fx, &r0) < 0))
        rc = -1;
    double t0 = fixture_now();
    if (rc == 0)
        rc = create_users(&w.fx, "b", 0, users, keys, wy->mailboxes);
    if (rc == 0)
        rc = wait_established(&w, 1, users, t0, wy->name, NULL);
    if (rc == 0) {
        /* Settled: the writes that follow IDLE (the user's state) are in. */
        fixture_nap_ms(SETTLE_MS);
        if (fake_stats(&f, &s1) < 0 || redis_cmdstats(&w.fx, &r1) < 0)
            rc = -1;
    }
    if (rc == 0) {
        res->est_s = w.est_s;
        s2 = s1;
        r2 = r1;
        /* The benchmark's own writes: a user hash, its shard set member, its si:changes entry. */
        cnt_set(&r1, "cmdstat_hset", 12, cnt_get(&r1, "cmdstat_hset") - users);
        cnt_set(&r1, "cmdstat_zadd", 12, cnt_get(&r1, "cmdstat_zadd") - users);
        cnt_set(&r1, "cmdstat_xadd", 12, cnt_get(&r1, "cmdstat_xadd") - users);
        cnt_delta(&s0, &s1, NULL, 0, users, &res->imap_setup);
        cnt_delta(&r0, &r1, NULL, 0, users, &res->redis_setup);
    }
    if (rc == 0) {
        /* The steady window, read every second for its busiest second. */
        double t2 = fixture_now(), prev = cnt_sum(&s2, "cmd_");
        for (int sec = 1; sec <= wy->window_s && rc == 0; sec++) {
            fixture_nap_ms((long)((t2 + sec - fixture_now()) * 1000));
            rc = fake_stats(&f, &s3);
            double now = cnt_sum(&s3, "cmd_");
            res->peak_per_s = now - prev > res->peak_per_s ? now - prev : res->peak_per_s;
            prev = now;
        }
        res->rss1 = bench_rss_kib(w.c.pid);
        res->bytes_per_session = (double)(res->rss1 - res->rss0) * 1024.0 / users;
        if (rc == 0 && redis_cmdstats(&w.fx, &r3) < 0)
            rc = -1;
        double minutes = (fixture_now() - t2) / 60.0;
        cnt_delta(&s2, &s3, NULL, 0, users * minutes, &res->imap_steady);
        cnt_delta(&r2, &r3, NULL, 0, users * minutes, &res->redis_steady);
        res->sessions = cnt_get(&s3, "sessions");
        res->connections = cnt_get(&s3, "connections");
    }
    if (rc == 0 && wy->mailboxes != NULL &&
        junk_latency(&w, &f, (wy->poll_s > 0 ? 2.0 * wy->poll_s : 0) + 10, &res->junk) < 0) {
        fprintf(stderr, "bench_mailboxes: %s: %d of %d Junk mails recorded\n", wy->name,
                res->junk.recorded, res->junk.sent);
        rc = -1;
    }
    res->ok = rc == 0;
    stop(&w.c);
    fake_stop(&f);
    redis_fixture_stop(&w.fx);
    return rc;
}

static void way_results(const struct way *wy, const struct way_result *r)
{
    char k[96];
#define WAY_KEY(what, fmt, v)                                    \
    do {                                                         \
        snprintf(k, sizeof k, "mailboxes_%s_%s", wy->key, what); \
        bench_result(k, fmt, v);                                 \
    } while (0)
    WAY_KEY("sessions", "%.0f", r->sessions);
    WAY_KEY("established_s", "%.1f", r->est_s);
    WAY_KEY("session_bytes", "%.0f", r->bytes_per_session);
    WAY_KEY("imap_per_user", "%.2f", cnt_sum(&r->imap_setup, "cmd_"));
    WAY_KEY("imap_per_user_min", "%.2f", cnt_sum(&r->imap_steady, "cmd_"));
    WAY_KEY("redis_per_user", "%.1f", cnt_sum(&r->redis_setup, "cmdstat_"));
    WAY_KEY("redis_per_user_min", "%.2f", cnt_sum(&r->redis_steady, "cmdstat_"));
    if (r->junk.sent > 0) {
        WAY_KEY("junk_p50_ms", "%.1f", r->junk.p50);
        WAY_KEY("junk_p99_ms", "%.1f", r->junk.p99);
    }
#undef WAY_KEY
}

static void print_ways(const struct way *ways, const struct way_result *res, int n)
{
    printf("| way | sessions (fake-imapd) | connections accepted | all watching in s | watcher RSS "
           "KiB before / after | bytes per session | IMAP commands per user to watching | IMAP "
           "commands per user per minute, steady | Redis commands per user to watching | Redis "
           "commands per user per minute, steady | busiest second, IMAP commands (all users) |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const struct way_result *r = &res[i];
        if (!r->ok) {
            printf("| %s | failed: see stderr | | | | | | | | | |\n", ways[i].name);
            continue;
        }
        printf(
            "| %s | %.0f | %.0f | %.1f | %ld / %ld | %.0f | %.2f | %.2f | %.1f | %.2f | %.0f |\n",
            ways[i].name, r->sessions, r->connections, r->est_s, r->rss0, r->rss1,
            r->bytes_per_session, cnt_sum(&r->imap_setup, "cmd_"), cnt_sum(&r->imap_steady, "cmd_"),
            cnt_sum(&r->redis_setup, "cmdstat_"), cnt_sum(&r->redis_steady, "cmdstat_"),
            r->peak_per_s);
    }
    printf("\nBy command, per user (IMAP: fake-imapd's counters; Redis: INFO commandstats, "
           "a script's EVALSHA and the commands it runs each counted):\n\n");
    printf("| way | IMAP to watching | IMAP per minute, steady | Redis to watching | Redis per "
           "minute, steady |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        if (!res[i].ok)
            continue;
        char a[1024], b[1024], c[2048], d[2048];
        cnt_list(&res[i].imap_setup, "cmd_", a, sizeof a);
        cnt_list(&res[i].imap_steady, "cmd_", b, sizeof b);
        cnt_list(&res[i].redis_setup, "cmdstat_", c, sizeof c);
        cnt_list(&res[i].redis_steady, "cmdstat_", d, sizeof d);
        printf("| %s | %s | %s | %s | %s |\n", ways[i].name, a, b, c, d);
    }
    printf("\nNew mail in Junk to its event recorded in Redis (%d mails into the Junk of as many "
           "random users, %d ms apart):\n\n",
           JUNK_MAILS, JUNK_GAP_MS);
    printf("| way | appended | recorded | p50 ms | p90 ms | p99 ms | max ms |\n"
           "|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const struct junk_result *j = &res[i].junk;
        if (j->sent > 0)
            printf("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", ways[i].name, j->sent,
                   j->recorded, j->p50, j->p90, j->p99, j->max);
    }
    fflush(stdout);
}

/* ---- 2. Reconnect storm ---- */

struct storm_result {
    int ok, ran;
    double reconnects, rewatch_s, bytes_in, bytes_out, ms_each;
    struct counters imap, redis; /* per reconnect */
};

/* One reconnect of user u as a watcher would make it, with qresync a
 * QRESYNC one (ENABLE QRESYNC, EXAMINE with uv and modseq), else with a
 * plain EXAMINE; adds the bytes it sent and read to *sent and *got; 0 or
 * -1. */
static int raw_once(const struct fake *f, int u, int qresync, uint32_t uv, uint64_t modseq,
                    double *sent, double *got)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    inet_pton(AF_INET, f->addr, &a.sin_addr);
    struct timeval tv = {10, 0};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char user[32], pass[32], in[16384];
    snprintf(user, sizeof user, "user%d", u + 1);
    snprintf(pass, sizeof pass, "pass%d", u + 1);
    struct buf out;
    buf_init(&out, 1 << 16);
    struct imap_cmd_sync sync;
    /* What ends each step: the greeting, then each command's tagged OK (IDLE: "+"). */
    const char *ends[] = {"* OK", "A1 OK", "A2 OK", "A3 OK", "+ "};
    int rc = 0;
    size_t have = 0;
    for (int step = 0; step < 5 && rc == 0; step++) {
        buf_reset(&out);
        if (step == 1)
            rc = imap_cmd_login(&out, &sync, "A1", user, pass, 0);
        else if (step == 2 && !qresync)
            continue;
        else if (step == 2)
            rc = imap_cmd_enable(&out, "A2", "QRESYNC");
        else if (step == 3 && qresync)
            rc = imap_cmd_examine_qresync(&out, &sync, "A3", "INBOX", 0, uv, modseq);
        else if (step == 3)
            rc = imap_cmd_examine(&out, &sync, "A3", "INBOX", 0);
        else if (step == 4)
            rc = imap_cmd_idle(&out, "A4");
        if (rc == 0 && out.len > 0 && write(fd, out.data, out.len) != (ssize_t)out.len)
            rc = -1;
        *sent += (double)out.len;
        /* Reads until a line starting with the step's end. */
        for (int found = 0; rc == 0 && !found;) {
            char *nl;
            while (!found && (nl = memchr(in, '\n', have)) != NULL) {
                size_t line = (size_t)(nl - in) + 1;
                found = strncmp(in, ends[step], strlen(ends[step])) == 0;
                if (strncmp(in, "A", 1) == 0 && strstr(in, " OK") == NULL && !found)
                    rc = -1;
                memmove(in, in + line, have - line);
                have -= line;
            }
            if (!found && rc == 0) {
                ssize_t r = read(fd, in + have, sizeof in - have);
                if (r <= 0)
                    rc = -1;
                else
                    have += (size_t)r;
                *got += r > 0 ? (double)r : 0;
            }
        }
    }
    buf_free(&out);
    close(fd);
    return rc;
}

/* QRESYNC_USERS reconnects of the raw client on f, one after the other:
 * into res[0] with a plain EXAMINE, into res[1] with QRESYNC. */
static int run_raw(struct fake *f, struct storm_result *res)
{
    char reply[256];
    int rc = ctl(f, "PROFILES condstore,qresync", NULL, 0, reply, sizeof reply);
    int n = QRESYNC_USERS < users ? QRESYNC_USERS : users;
    uint32_t *uv = calloc((size_t)n, sizeof *uv);
    uint64_t *ms = calloc((size_t)n, sizeof *ms);
    for (int i = 0; i < n && rc == 0; i++) { /* what the watcher would have kept from before */
        char req[64];
        snprintf(req, sizeof req, "INFO user%d", i + 1);
        rc = ctl(f, req, NULL, 0, reply, sizeof reply);
        const char *p = strstr(reply, "uidvalidity="), *q = strstr(reply, "highestmodseq=");
        if (p == NULL || q == NULL)
            rc = -1;
        else {
            uv[i] = (uint32_t)strtoul(p + 12, NULL, 10);
            ms[i] = strtoull(q + 14, NULL, 10);
        }
    }
    for (int q = 0; q < 2 && rc == 0; q++) {
        struct storm_result *r = &res[q];
        struct counters s0, s1;
        rc = ctl(f, "RESET", NULL, 0, reply, sizeof reply);
        if (rc == 0)
            rc = fake_stats(f, &s0);
        double t0 = fixture_now();
        for (int i = 0; i < n && rc == 0; i++)
            rc = raw_once(f, i, q, uv[i], ms[i], &r->bytes_in, &r->bytes_out);
        double took = fixture_now() - t0;
        if (rc == 0 && fake_stats(f, &s1) == 0) {
            r->ran = r->ok = 1;
            r->reconnects = n;
            r->ms_each = took * 1000.0 / n;
            cnt_delta(&s0, &s1, NULL, 0, n, &r->imap);
            r->bytes_in /= n;
            r->bytes_out /= n;
        }
    }
    free(uv);
    free(ms);
    return rc;
}

/* The storm with the watcher exe (NULL: this tree's); with raw (two
 * results), the raw client's reconnects after it on the same fake-imapd. */
static int run_storm(const char *exe, struct crypto_keys *keys, struct storm_result *res,
                     struct storm_result *raw)
{
    struct watcher w;
    struct fake f;
    memset(&w, 0, sizeof w);
    memset(&f, 0, sizeof f);
    memset(res, 0, sizeof *res);
    res->ran = 1;
    int rc = redis_fixture_start(&w.fx, NULL);
    if (rc == 0)
        rc = fake_start(&f, w.fx.dir, 0, users, 0, NULL);
    if (rc == 0 && ctl_batch(&f, users, req_append) < 0)
        rc = -1;
    if (rc == 0)
        rc = watcher_start(&w, 0, users, exe);
    if (rc == 0) {
        redisReply *r = redis_fixture_cmd(
            &w.fx, "HSET si:provider:b code b imap_host %s imap_port %d tls none", f.addr, f.port);
        freeReplyObject(r);
        rc = create_users(&w.fx, "b", 0, users, keys, NULL);
    }
    if (rc == 0)
        rc = wait_established(&w, 1, users, fixture_now(), "storm", NULL);
    struct counters r0, r1, r2, r3, idle, s0, s1;
    double ti = 0;
    if (rc == 0) {
        fixture_nap_ms(SETTLE_MS);
        ti = fixture_now();
        rc = redis_cmdstats(&w.fx, &r0);
    }
    if (rc == 0) {
        fixture_nap_ms(STORM_IDLE_S * 1000L); /* Redis's idle rate: renewals, heartbeats */
        rc = redis_cmdstats(&w.fx, &r1);
        cnt_delta(&r0, &r1, NULL, 0, fixture_now() - ti, &idle);
    }
    char reply[64];
    if (rc == 0 && ctl(&f, "RESET", NULL, 0, reply, sizeof reply) < 0)
        rc = -1;
    if (rc == 0 && (fake_stats(&f, &s0) < 0 || redis_cmdstats(&w.fx, &r2) < 0))
        rc = -1;
    double t0 = fixture_now();
    long kicked = rc == 0 ? ctl_batch(&f, users, req_kick) : -1;
    if (kicked <= 0)
        rc = -1;
    double deadline = t0 + STORM_S;
    while (rc == 0) {
        if (fake_stats(&f, &s1) < 0)
            rc = -1;
        else if (cnt_get(&s1, "cmd_idle") >= kicked &&
                 metric(w.port, "superimap_watcher_sessions_watching") >= users)
            break;
        else if (fixture_now() > deadline) {
            fprintf(stderr,
                    "bench_mailboxes: storm: %.0f of %ld sessions back in IDLE after %.0f s\n",
                    cnt_get(&s1, "cmd_idle"), kicked, STORM_S);
            rc = -1;
        }
        fixture_nap_ms(50);
    }
    double t1 = fixture_now();
    if (rc == 0)
        fixture_nap_ms(SETTLE_MS); /* the writes that follow IDLE (the user's state) */
    if (rc == 0 && fake_stats(&f, &s1) == 0 && redis_cmdstats(&w.fx, &r3) == 0) {
        res->ok = 1;
        res->reconnects = (double)kicked;
        res->rewatch_s = t1 - t0;
        cnt_delta(&s0, &s1, NULL, 0, (double)kicked, &res->imap);
        cnt_delta(&r2, &r3, &idle, fixture_now() - t0, (double)kicked, &res->redis);
        /* Every connection is a reconnect now: its bytes are one resync's. */
        int conns = ss_bytes(&f, &res->bytes_in, &res->bytes_out);
        res->bytes_in = conns > 0 ? res->bytes_in / conns : -1;
        res->bytes_out = conns > 0 ? res->bytes_out / conns : -1;
    }
    if (rc == 0 && raw != NULL && run_raw(&f, raw) < 0) {
        fprintf(stderr, "bench_mailboxes: the raw client failed\n");
        rc = -1;
    }
    stop(&w.c);
    fake_stop(&f);
    redis_fixture_stop(&w.fx);
    return rc;
}

static void storm_results(const char *key, const struct storm_result *r)
{
    if (!r->ok)
        return;
    char k[96];
    snprintf(k, sizeof k, "storm_%s_imap", key);
    bench_result(k, "%.2f", cnt_sum(&r->imap, "cmd_"));
    snprintf(k, sizeof k, "storm_%s_bytes", key);
    if (r->bytes_in >= 0)
        bench_result(k, "%.0f", r->bytes_in + r->bytes_out);
    if (r->rewatch_s > 0) {
        snprintf(k, sizeof k, "storm_%s_redis", key);
        bench_result(k, "%.1f", cnt_sum(&r->redis, "cmdstat_"));
        snprintf(k, sizeof k, "storm_%s_rewatch_s", key);
        bench_result(k, "%.1f", r->rewatch_s);
    }
}

static void print_storm(const char *const *names, const struct storm_result *res, int n)
{
    printf("| resync | reconnects | IMAP commands per reconnect | by command | IMAP bytes per "
           "reconnect, client to server / server to client | Redis commands per reconnect | by "
           "command | all watching again in s |\n|---|---:|---:|---|---:|---:|---|---:|\n");
    for (int i = 0; i < n; i++) {
        const struct storm_result *r = &res[i];
        if (!r->ran) {
            printf("| %s | not run: BENCH_OLD_WATCHER unset | | | | | | |\n", names[i]);
            continue;
        }
        if (!r->ok) {
            printf("| %s | failed: see stderr | | | | | | |\n", names[i]);
            continue;
        }
        char a[1024], b[2048], redis[32] = "not measured (no Redis)", watch[48] = "-";
        char bytes[64] = "not measured (no ss, iproute2)";
        if (r->bytes_in >= 0)
            snprintf(bytes, sizeof bytes, "%.0f / %.0f", r->bytes_in, r->bytes_out);
        cnt_list(&r->imap, "cmd_", a, sizeof a);
        snprintf(b, sizeof b, "-");
        if (r->rewatch_s > 0) {
            cnt_list(&r->redis, "cmdstat_", b, sizeof b);
            snprintf(redis, sizeof redis, "%.1f", cnt_sum(&r->redis, "cmdstat_"));
            snprintf(watch, sizeof watch, "%.1f", r->rewatch_s);
        } else {
            snprintf(watch, sizeof watch, "%.1f ms each, one at a time", r->ms_each);
        }
        printf("| %s | %.0f | %.2f | %s | %s | %s | %s | %s |\n", names[i], r->reconnects,
               cnt_sum(&r->imap, "cmd_"), a, bytes, redis, b, watch);
    }
    fflush(stdout);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    if (rig_bin_init(argv[0]) < 0)
        return 1;
    const char *s = getenv("BENCH_SCALE");
    double scale = s != NULL ? atof(s) : 1.0;
    if (scale > 0 && scale <= 1)
        users = (int)(USERS * scale);
    if (users < 1)
        users = 1;
    const char *old = getenv("BENCH_OLD_WATCHER");
    if (old != NULL && (old[0] == '\0' || access(old, X_OK) != 0)) {
        if (old[0] != '\0')
            fprintf(stderr, "bench_mailboxes: BENCH_OLD_WATCHER=%s is not executable\n", old);
        old = NULL;
    }
    struct crypto_keys *keys = NULL;
    char err[128];
    if (crypto_keys_init(&keys, WF_KEY, NULL, err, sizeof err) < 0)
        return 1;
    int rc = 0;

    static const struct way ways[] = {
        {"(a) INBOX only", "inbox", NULL, NULL, 0, WINDOW_S},
        {"(b) INBOX+Junk, NOTIFY", "notify", JUNK_LIST, "notify,special-use", 0, WINDOW_S},
        {"(c) INBOX+Junk, STATUS every 10 s", "status", JUNK_LIST, "special-use", POLL_S,
         WINDOW_STATUS_S},
    };
    enum { NWAYS = sizeof ways / sizeof ways[0] };
    static struct way_result wr[NWAYS];
    printf("%d users, one watcher, one superimap-fake-imapd, one redis-server, three ways: "
           "(a) INBOX only; (b) mailboxes %s, fake-imapd with NOTIFY and SPECIAL-USE; (c) the "
           "same list, SPECIAL-USE only, provider mailbox_poll_s %d. Sessions = connections "
           "fake-imapd holds once settled. All watching = users written to Redis until every "
           "session is watching. Steady = a window of %d s ((c): %d s) starting %d ms after all "
           "watching, per minute. RSS per session = (RSS at the end of that window - RSS with no "
           "users) / users. Redis commands exclude the benchmark's own (one HSET, ZADD and XADD "
           "per user, INFO).\n\n",
           users, JUNK_LIST, POLL_S, WINDOW_S, WINDOW_STATUS_S, SETTLE_MS);
    const char *only = getenv("BENCH_ONLY");
    for (int i = 0; i < NWAYS && (only == NULL || strcmp(only, "ways") == 0); i++) {
        if (run_way(&ways[i], keys, &wr[i]) < 0)
            rc = 1;
        if (wr[i].ok)
            way_results(&ways[i], &wr[i]);
    }
    bench_result("mailboxes_users", "%d", users);
    print_ways(ways, wr, NWAYS);

    const char *names[] = {"UIDNEXT skip (this watcher)",
                           "UID FETCH last+1:* always (watcher before the skip)",
                           "EXAMINE, no FETCH (raw client, fake-imapd condstore,qresync)",
                           "QRESYNC (raw client, the same fake-imapd)"};
    static struct storm_result st[4];
    int storm = only == NULL || strcmp(only, "storm") == 0;
    if (storm && run_storm(NULL, keys, &st[0], &st[2]) < 0)
        rc = 1;
    if (storm && old != NULL && run_storm(old, keys, &st[1], NULL) < 0)
        rc = 1;
    printf(
        "\nReconnect storm: %d INBOX users watching, one message each, no new mail; KICK of "
        "every user at fake-imapd at once, until every session sent IDLE again and the "
        "watcher shows all watching. Per reconnect: IMAP commands (fake-imapd's counters), "
        "bytes (the kernel's count of each connection fake-imapd holds once all are back, ss -ti), "
        "Redis commands until %d ms after all are back (INFO commandstats, net of the idle "
        "rate over %d s before). Then, on the same fake-imapd with CONDSTORE and QRESYNC "
        "announced, %d reconnects of a raw client one after the other, each way: LOGIN, "
        "EXAMINE INBOX, IDLE; and LOGIN, ENABLE QRESYNC, EXAMINE INBOX (QRESYNC (uidvalidity "
        "highestmodseq)), IDLE; bytes as the client sent and read them.\n\n",
        users, SETTLE_MS, STORM_IDLE_S, QRESYNC_USERS < users ? QRESYNC_USERS : users);
    print_storm(names, st, 4);
    storm_results("skip", &st[0]);
    storm_results("fetch", &st[1]);
    storm_results("examine", &st[2]);
    storm_results("qresync", &st[3]);
    crypto_keys_free(keys);
    return rc;
}
