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
 * SOAK_PROFILE=full adds, at random times:
 *
 *   - watchers and dispatchers disturbed alike, one of each role at a time,
 *     every 10 to 25 s: SIGKILL, SIGTERM or SIGSTOP (then SIGCONT 2 to 30 s
 *     later, past the 15 s alive keys at times); w1 and d1 are only stopped;
 *   - Redis stopped every 45 to 150 s (SIGKILL or SIGTERM, even odds; AOF
 *     everysec) and started again on the same socket and data 0 to 12 s later
 *     (past the watchers' 10 s fence limit at times); never within 3 s of a
 *     user change through the api, which everysec could lose to a SIGKILL;
 *   - the receiver answering new_mail webhooks with 500, 429 (Retry-After
 *     20) or never (the dispatchers' 5 s timeout) for 30 s to 3 minutes,
 *     then well for 30 s to 2 minutes, in turn; the partner's retry schedule
 *     is FULL_RETRY_SCHEDULE;
 *   - every 3 to 15 s, a random live user archived (restored 5 to 60 s later)
 *     or given a new password (in fake-imapd, then through the api) or a wrong
 *     one (the right one put back 5 to 60 s later).
 *
 * An archived user's mail is not announced, by design (README, "A restored
 * user is watched from new mail on"), so each message is counted by its
 * user's state when it was delivered: while the user is archived (after the
 * api's 204, before the restore) it must never be announced; while the user
 * is being restored (until the api shows it "watching") it is excused; so
 * are its messages not yet announced when the archive is asked for (the
 * watcher may not have recorded them). Every other message must be
 * announced, those delivered while the api had a wrong password included.
 *
 * Then the drain: faults off, every node and Redis running, the receiver
 * answering, every user restored and given its password, until every
 * counted message is announced (at most SOAK_DRAIN_SEC, default 120 s, 900 s
 * in the full profile), and one last message per user announced so that late
 * duplicates have come in. The report gives delivered, lost (counted, never
 * announced: must be 0), duplicates
 * by webhook-id, raw (2xx webhooks repeating an event id: at-least-once
 * redeliveries) and after dedupe (messages announced under more than one
 * event id: must be 0), webhooks failing a check (must be 0), latency from
 * delivery to the first 2xx webhook, and the RSS of each long-lived process
 * (first, last, max, growth per hour by least squares over a sample every
 * 5 s), and in the full profile the count of each disturbance. Exit status 1
 * when lost, deduplicated duplicates, bad webhooks or messages announced
 * while their user was archived are not 0; 2 when the fleet does not start.
 * SOAK_SEED (default: from the clock, printed) repeats the random choices
 * and the fault sequence.
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

#define DEFAULT_FAULTS      "bad,no,gibberish,bye,drop,halfopen,noinbox,trickle,limit"
#define RSS_EVERY_MS        5000
#define POLL_EVERY_MS       250 /* reads of the receiver (each copies every request) */
#define REPORT_EVERY_S      30
#define MAX_PROCS           (3 + 2 * SYS_MAX_NODES)
/* The full profile's partner retries for 10 minutes while its URL's circuit
 * is closed (the product's schedule spreads them over a day: the drain would
 * wait hours for an event parked 3 h after a receiver outage). */
#define FULL_RETRY_SCHEDULE "2,5,10,20,30,30,30,30,30,30,30,30,30,30,30,30,30,30,30,30,30,30,30,30"

/* Settings, from the command line (duration) and SOAK_* variables. */
static struct {
    int duration_s, users, watchers, dispatchers, drain_s;
    int is_full; /* SOAK_PROFILE=full */
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

/* 1 when now has reached *at, which then moves every_ms on; else 0. */
static int is_due(long long now, long long *at, long long every_ms)
{
    if (now < *at)
        return 0;
    *at = now + every_ms;
    return 1;
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

/* ---- Node chaos: watchers and dispatchers ---- */

/* The nodes of one role and how to stop and start them. */
struct role {
    struct sys_node *nodes;
    const int *n;
    int (*kill)(struct sys *, int, int);
    int (*restart)(struct sys *, int);
};

/* One role's disturbances: at most one of its nodes at a time. */
struct chaos {
    const struct role *role;
    int i;                            /* the node, or -1 when none is disturbed */
    int sig;                          /* SIGKILL, SIGTERM or SIGSTOP */
    long long up_at_ms;               /* start it again (SIGCONT) at this time, once it exited */
    long long next_at_ms;             /* the next disturbance */
    int kills, terms, stops, unclean; /* unclean: SIGTERM exits other than 0 */
};

static const struct role watchers = {fleet.watcher, &fleet.nwatchers, sys_kill_watcher,
                                     sys_restart_watcher};
static const struct role dispatchers = {fleet.dispatcher, &fleet.ndispatchers, sys_kill_dispatcher,
                                        sys_restart_dispatcher};

/* The node to disturb and how. The first node of a role is never killed, so
 * one lives the whole run for its RSS; the full profile stops it (SIGSTOP)
 * and disturbs the others with SIGKILL, SIGTERM or SIGSTOP, the default
 * profile only watchers with SIGKILL or SIGTERM. 0, or -1 when none fits. */
static int chaos_choose(struct chaos *c)
{
    int n = *c->role->n;
    if (!cfg.is_full) {
        if (n < 2)
            return -1;
        c->i = (int)pick(1, n - 1);
        c->sig = next_rand() % 2 ? SIGKILL : SIGTERM;
        return 0;
    }
    static const int sigs[] = {SIGKILL, SIGTERM, SIGSTOP};
    c->i = (int)pick(0, n - 1);
    c->sig = c->i == 0 ? SIGSTOP : sigs[pick(0, 2)];
    return 0;
}

static void chaos_done(struct chaos *c, long long now)
{
    c->i = -1;
    c->next_at_ms = now + pick(10000, 25000);
}

/* Restarts and SIGCONTs wait while Redis is down: a node's start waits for
 * its /readyz, which needs Redis. */
static void chaos_step(struct chaos *c, long long now)
{
    const struct role *r = c->role;
    if (c->i < 0) {
        if (now < c->next_at_ms || fleet.redis.pid <= 0 || chaos_choose(c) < 0)
            return;
        c->up_at_ms = c->sig == SIGSTOP ? now + pick(2000, 30000) : 0;
        harness_proc_signal(&r->nodes[c->i].p, c->sig); /* an exit is polled below */
        c->kills += c->sig == SIGKILL;
        c->terms += c->sig == SIGTERM;
        c->stops += c->sig == SIGSTOP;
        return;
    }
    struct sys_node *nd = &r->nodes[c->i];
    if (c->sig == SIGSTOP) {
        if (now < c->up_at_ms)
            return;
        r->kill(&fleet, c->i, SIGCONT);
        chaos_done(c, now);
        return;
    }
    if (nd->is_running) {
        if (harness_proc_wait(&nd->p, 0) < 0)
            return;                               /* still draining */
        int code = r->kill(&fleet, c->i, c->sig); /* reaped: just records it */
        if (c->sig == SIGTERM && code != 0) {
            c->unclean++;
            fprintf(stderr, "soak: %s exited with %d on SIGTERM; log %s\n", nd->id, code,
                    nd->p.log);
        }
        c->up_at_ms = now + pick(0, 3000);
        return;
    }
    if (now < c->up_at_ms || fleet.redis.pid <= 0)
        return;
    if (r->restart(&fleet, c->i) < 0)
        fprintf(stderr, "soak: %s did not start again\n", nd->id);
    chaos_done(c, now);
}

/* A restart under way that must not overlap a Redis outage (a SIGSTOP may). */
static int chaos_restarting(const struct chaos *c)
{
    return c->i >= 0 && c->sig != SIGSTOP;
}

/* Ends the disturbance under way at once (SIGCONT, or the restart). */
static void chaos_finish(struct chaos *c)
{
    while (c->i >= 0) {
        c->up_at_ms = 0;
        chaos_step(c, harness_now_ms());
        harness_poll_pause();
    }
}

/* ---- Redis restarts (full profile) ---- */

struct redis_chaos {
    int is_down;
    long long up_at_ms, next_at_ms;
    int hard, soft; /* restarts after SIGKILL, after SIGTERM */
};

/* When the last user change went through the api: Redis is killed -9 only
 * 3 s after it, so appendfsync everysec has written it (the soak's
 * accounting of archived users relies on the api's answers). */
static long long last_api_ms;

static void redis_step(struct redis_chaos *rc, long long now, int is_busy)
{
    if (!rc->is_down) {
        if (now < rc->next_at_ms || is_busy || now - last_api_ms < 3000)
            return;
        int hard = (int)(next_rand() % 2);
        sys_kill_redis(&fleet, hard);
        rc->hard += hard;
        rc->soft += !hard;
        rc->is_down = 1;
        rc->up_at_ms = now + pick(0, 12000); /* past the 10 s fence limit at times */
        return;
    }
    if (now < rc->up_at_ms)
        return;
    if (sys_restart_redis(&fleet) < 0) {
        fprintf(stderr, "soak: redis-server did not start again; trying in 1 s\n");
        rc->up_at_ms = now + 1000;
        return;
    }
    rc->is_down = 0;
    rc->next_at_ms = now + pick(45000, 150000);
}

/* ---- Receiver faults (full profile) ---- */

enum rx_mode { RX_OK, RX_500, RX_429, RX_TIMEOUT, RX_MODES };

static const char *const rx_names[RX_MODES] = {"ok", "500", "429", "timeout"};

struct rx_chaos {
    int mode;
    long long since_ms, until_ms;
    int windows[RX_MODES];
    long long ms[RX_MODES]; /* time spent in each mode */
};

/* How the receiver answers new_mail webhooks from now on: 200, 500, 429
 * with Retry-After 20, or never (the dispatcher's 5 s timeout). */
static void rx_set(struct rx_chaos *x, int mode, long long now)
{
    struct receiver_rule r = {0};
    if (mode == RX_500)
        r.status = 500;
    else if (mode == RX_429) {
        r.status = 429;
        r.retry_after = "20";
    } else if (mode == RX_TIMEOUT)
        r.hang = 1;
    receiver_set_rule(fleet.rx, SYS_HOOK_MAIL, &r);
    x->ms[x->mode] += now - x->since_ms;
    x->windows[mode]++;
    x->mode = mode;
    x->since_ms = now;
}

/* Minutes of answering well, then minutes of one fault, in turn. */
static void rx_step(struct rx_chaos *x, long long now)
{
    if (now < x->until_ms)
        return;
    if (x->mode != RX_OK) {
        rx_set(x, RX_OK, now);
        x->until_ms = now + pick(30000, 120000);
    } else {
        rx_set(x, (int)pick(RX_500, RX_TIMEOUT), now);
        x->until_ms = now + pick(30000, 180000);
    }
}

/* ---- Users archived, restored, their credentials changed (full profile) ---- */

enum ustate {
    U_LIVE,      /* watched */
    U_ARCHIVED,  /* archived through the api, restored at until_ms */
    U_RESTORING, /* restored; live again once the api shows it "watching" */
    U_WRONG,     /* the api has a wrong password; the right one goes back at until_ms */
};

struct uchaos {
    int state;
    int is_unsure;      /* an archive or restore call failed: it may or may not be done */
    long long until_ms; /* the next step of the state (polls of U_RESTORING: every 1 s) */
    char pw[64];        /* the password fake-imapd accepts */
    int changes;        /* passwords given so far */
};

/* How a delivered message counts. */
enum mclass {
    M_COUNTED,  /* must be announced once */
    M_EXCUSED,  /* not yet announced when its user was archived, or sent to a user being
                 * restored: announced or not, by design */
    M_ARCHIVED, /* sent while its user was archived: must never be announced */
};

static struct uchaos *uc;
static unsigned char *mclass; /* per fleet.mails[] */
static size_t capclass;
static struct {
    int archives, restores, rotations, wrongs, failed_calls;
} utot;

/* sys_deliver(), remembering how the message counts. */
static long deliver(const struct sys_user *u, size_t body_bytes)
{
    long m = sys_deliver(&fleet, u, body_bytes);
    if (m < 0)
        return -1;
    if ((size_t)m >= capclass) {
        size_t cap = capclass ? capclass * 2 : 1024;
        unsigned char *c = realloc(mclass, cap);
        if (c == NULL) {
            fprintf(stderr, "soak: out of memory\n");
            exit(2);
        }
        mclass = c;
        capclass = cap;
    }
    const struct uchaos *c = &uc[u - users];
    mclass[m] = c->state == U_ARCHIVED    ? (c->is_unsure ? M_EXCUSED : M_ARCHIVED)
                : c->state == U_RESTORING ? M_EXCUSED
                                          : M_COUNTED;
    return m;
}

/* A call on u through the partner API; 0 when it answered 2xx. */
static int user_call(const struct sys_user *u, const char *method, const char *json)
{
    static struct api_resp r;
    char path[192];
    snprintf(path, sizeof path, "/api/v2/connections/%s/users/%s", u->code, u->tag);
    int st = sys_api(&fleet, &r, method, path, json);
    last_api_ms = harness_now_ms();
    if (st / 100 != 2) {
        utot.failed_calls++;
        fprintf(stderr, "soak: %s %s answered %d: %.200s\n", method, path, st,
                r.body ? r.body : "");
    }
    api_resp_free(&r);
    return st / 100 == 2 ? 0 : -1;
}

static int set_password(const struct sys_user *u, const char *pw)
{
    char json[128];
    snprintf(json, sizeof json, "{\"login_password\":\"%s\"}", pw);
    return user_call(u, "PATCH", json);
}

/* Archives u: its messages not yet announced are excused (the watcher may
 * not have recorded them yet, and the dispatcher drops an archived user's
 * events). */
static void user_archive(int k, long long now)
{
    sys_poll(&fleet);
    for (size_t m = 0; m < fleet.nmails; m++)
        if (mclass[m] == M_COUNTED && fleet.mails[m].announced == 0 &&
            strcmp(fleet.mails[m].tag, users[k].tag) == 0)
            mclass[m] = M_EXCUSED;
    uc[k].is_unsure = user_call(&users[k], "DELETE", NULL) < 0;
    uc[k].state = U_ARCHIVED;
    uc[k].until_ms = now + pick(5000, 60000);
    utot.archives++;
}

/* A new password, in fake-imapd first, then through the api. */
static void user_rotate(int k, long long now)
{
    char req[128], reply[256];
    struct uchaos *c = &uc[k];
    snprintf(c->pw, sizeof c->pw, "soak-%s-%d", users[k].login, ++c->changes);
    snprintf(req, sizeof req, "USER %s %s", users[k].login, c->pw);
    if (fakeimap_request(&fleet.fake, req, reply, sizeof reply) < 0)
        fprintf(stderr, "soak: fake-imapd refused %s: %s\n", req, reply);
    utot.rotations++;
    if (set_password(&users[k], c->pw) < 0) { /* the api may have the old one: again in 1 s */
        c->state = U_WRONG;
        c->until_ms = now + 1000;
    }
}

static void user_step(int k, long long now)
{
    struct uchaos *c = &uc[k];
    const struct sys_user *u = &users[k];
    if (c->state == U_LIVE || now < c->until_ms)
        return;
    if (fleet.redis.pid <= 0) { /* the api cannot answer */
        c->until_ms = now + 1000;
        return;
    }
    if (c->state == U_ARCHIVED) {
        if (user_call(u, "PUT", "{\"archived\":false}") < 0) {
            c->is_unsure = 1;
            c->until_ms = now + 1000;
            return;
        }
        utot.restores++;
        c->state = U_RESTORING;
        c->until_ms = now;
    } else if (c->state == U_RESTORING) {
        static struct api_resp r;
        const char *st = sys_get_user(&fleet, u, &r) == 200 ? jstr(&r, "state") : NULL;
        if (st != NULL && strcmp(st, "watching") == 0) {
            c->state = U_LIVE;
            c->is_unsure = 0;
        }
        api_resp_free(&r);
        c->until_ms = now + 1000;
    } else if (set_password(u, c->pw) == 0) { /* U_WRONG */
        c->state = U_LIVE;
    } else {
        c->until_ms = now + 1000;
    }
}

/* A random live user archived, given a new password, or given a wrong one
 * for a while. */
static void user_act(long long now)
{
    int k = (int)pick(0, cfg.users - 1);
    if (uc[k].state != U_LIVE || fleet.redis.pid <= 0)
        return;
    long what = pick(0, 2);
    if (what == 0) {
        user_archive(k, now);
    } else if (what == 1) {
        user_rotate(k, now);
    } else {
        char wrong[64];
        snprintf(wrong, sizeof wrong, "wrong-%d", ++uc[k].changes);
        set_password(&users[k], wrong);
        uc[k].state = U_WRONG;
        uc[k].until_ms = now + pick(5000, 60000);
        utot.wrongs++;
    }
}

/* Every user restored and given its password, then live: 0, or -1 at the
 * deadline. */
static int users_settle(long long deadline)
{
    for (int k = 0; k < cfg.users; k++)
        if (uc[k].state != U_RESTORING)
            uc[k].until_ms = 0;
    for (;;) {
        long long now = harness_now_ms();
        int live = 0;
        for (int k = 0; k < cfg.users; k++) {
            user_step(k, now);
            live += uc[k].state == U_LIVE;
        }
        if (live == cfg.users)
            return 0;
        if (now >= deadline) {
            fprintf(stderr, "soak: %d users not watching again at the drain's end\n",
                    cfg.users - live);
            return -1;
        }
        sys_poll(&fleet);
        harness_poll_pause();
    }
}

/* ---- The run ---- */

/* Every disturbance of the run. */
struct chaos_all {
    struct chaos w, d;
    struct redis_chaos redis;
    struct rx_chaos rx;
    int kicks;
    long long next_user_ms;
};

/* Messages of class cls, and how many of them are announced. */
static size_t count_class(int cls, size_t *announced)
{
    size_t n = 0, a = 0;
    for (size_t i = 0; i < fleet.nmails; i++)
        if (mclass[i] == cls) {
            n++;
            a += fleet.mails[i].announced > 0;
        }
    *announced = a;
    return n;
}

/* Polls until every counted message is announced or the deadline passes;
 * samples RSS and says how far it is every REPORT_EVERY_S meanwhile.
 * Returns 0 when all are. */
static int wait_counted(long long deadline)
{
    long long next_rss = 0, next_report = harness_now_ms() + REPORT_EVERY_S * 1000, now;
    size_t ann, n;
    while ((now = harness_now_ms()) < deadline) {
        sys_poll(&fleet);
        n = count_class(M_COUNTED, &ann);
        if (ann == n)
            return 0;
        if (is_due(now, &next_rss, RSS_EVERY_MS))
            rss_sample_all(now);
        if (is_due(now, &next_report, REPORT_EVERY_S * 1000))
            printf("soak drain: %zu of %zu counted messages announced\n", ann, n);
        harness_poll_pause();
    }
    n = count_class(M_COUNTED, &ann);
    return ann == n ? 0 : -1;
}

static void progress(const char *phase, long long t0, const struct chaos_all *ch)
{
    size_t ann;
    count_class(M_COUNTED, &ann);
    printf("soak %s: t=%llds delivered=%zu announced=%zu webhooks=%zu restarts=%d kicks=%d "
           "faults=%lld",
           phase, (harness_now_ms() - t0) / 1000, fleet.nmails, ann, fleet.nhooks,
           ch->w.kills + ch->w.terms, ch->kicks, fakeimap_stat(&fleet.fake, "faults"));
    if (cfg.is_full)
        printf(" stops=%d dispatcher_restarts=%d redis=%d receiver=%s archives=%d "
               "passwords=%d",
               ch->w.stops + ch->d.stops, ch->d.kills + ch->d.terms,
               ch->redis.hard + ch->redis.soft, rx_names[ch->rx.mode], utot.archives,
               utot.rotations + utot.wrongs);
    printf("\n");
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
                               .retry_schedule = cfg.is_full ? FULL_RETRY_SCHEDULE : NULL,
                               .watcher_env = watcher_env,
                               .dispatcher_env = dispatcher_env};
    if (sys_start(&fleet, &o) < 0)
        return -1;
    users = calloc((size_t)cfg.users, sizeof *users);
    uc = calloc((size_t)cfg.users, sizeof *uc);
    if (users == NULL || uc == NULL ||
        sys_add_users(&fleet, SYS_FAKE, "soak", cfg.users, users) < 0)
        return -1;
    for (int k = 0; k < cfg.users; k++) /* fake-imapd's password of user<N> */
        snprintf(uc[k].pw, sizeof uc[k].pw, "pass%s", users[k].login + strlen("user"));
    rss_add("redis-server");
    rss_add("fake-imapd");
    rss_add("api");
    for (int i = 0; i < fleet.nwatchers; i++)
        rss_add(fleet.watcher[i].id);
    for (int i = 0; i < fleet.ndispatchers; i++)
        rss_add(fleet.dispatcher[i].id);
    return 0;
}

/* Mail, faults, kicks and restarts (and the full profile's chaos) for the
 * configured duration. */
static void run_flow(long long t0, struct chaos_all *ch)
{
    if (fakeimap_faults(&fleet.fake, cfg.fault_rate, cfg.seed, cfg.faults) < 0)
        fprintf(stderr, "soak: fake-imapd refused FAULTS %g %u %s\n", cfg.fault_rate, cfg.seed,
                cfg.faults);
    long long end = t0 + (long long)cfg.duration_s * 1000, now;
    double every_ms = 1000.0 / cfg.rate, next_send = (double)t0;
    long long next_kick = t0 + pick(2000, 8000), next_rss = t0, next_poll = t0;
    long long next_report = t0 + REPORT_EVERY_S * 1000;
    ch->w.next_at_ms = t0 + pick(10000, 25000);
    ch->d.next_at_ms = t0 + pick(10000, 25000);
    ch->redis.next_at_ms = t0 + pick(30000, 90000);
    ch->rx.since_ms = t0;
    ch->rx.until_ms = t0 + pick(20000, 60000);
    ch->next_user_ms = t0 + pick(3000, 15000);
    while ((now = harness_now_ms()) < end) {
        for (int burst = 0; (double)now >= next_send && burst < 50; burst++) {
            const struct sys_user *u = &users[pick(0, cfg.users - 1)];
            if (deliver(u, (size_t)pick(0, 6000)) < 0)
                fprintf(stderr, "soak: delivery to %s failed\n", u->login);
            next_send += every_ms;
        }
        if (now >= next_kick) {
            if (fakeimap_kick(&fleet.fake, users[pick(0, cfg.users - 1)].login) >= 0)
                ch->kicks++;
            next_kick = now + pick(2000, 8000);
        }
        chaos_step(&ch->w, now);
        if (cfg.is_full) {
            chaos_step(&ch->d, now);
            redis_step(&ch->redis, now, chaos_restarting(&ch->w) || chaos_restarting(&ch->d));
            rx_step(&ch->rx, now);
            for (int k = 0; k < cfg.users; k++)
                user_step(k, now);
            if (now >= ch->next_user_ms) {
                user_act(now);
                ch->next_user_ms = now + pick(3000, 15000);
            }
        }
        if (is_due(now, &next_poll, POLL_EVERY_MS))
            sys_poll(&fleet);
        if (is_due(now, &next_rss, RSS_EVERY_MS))
            rss_sample_all(now);
        if (is_due(now, &next_report, REPORT_EVERY_S * 1000))
            progress("flow", t0, ch);
        harness_poll_pause();
    }
}

/* Faults off, every node and Redis back, the receiver answering, every user
 * live, every counted message announced; then one last message per user.
 * Returns the ms it took. */
static long long drain(struct chaos_all *ch, long long t0)
{
    long long start = harness_now_ms();
    fakeimap_faults(&fleet.fake, 0, 0, "none");
    if (ch->redis.is_down) {
        ch->redis.up_at_ms = 0;
        redis_step(&ch->redis, start, 0);
    }
    chaos_finish(&ch->w);
    chaos_finish(&ch->d);
    if (cfg.is_full)
        rx_set(&ch->rx, RX_OK, harness_now_ms());
    long long deadline = start + (long long)cfg.drain_s * 1000;
    users_settle(deadline);
    wait_counted(deadline);
    progress("drain", t0, ch);
    for (int i = 0; i < cfg.users; i++)
        deliver(&users[i], 0);
    wait_counted(harness_now_ms() + 60000);
    rss_sample_all(harness_now_ms());
    return harness_now_ms() - start;
}

static void report_chaos(const struct chaos_all *ch)
{
    printf("  chaos:      watchers: %d SIGKILL, %d SIGTERM, %d SIGSTOP; dispatchers: %d SIGKILL, "
           "%d SIGTERM, %d SIGSTOP\n",
           ch->w.kills, ch->w.terms, ch->w.stops, ch->d.kills, ch->d.terms, ch->d.stops);
    printf("              Redis restarted %d times (%d after SIGKILL, %d after SIGTERM)\n",
           ch->redis.hard + ch->redis.soft, ch->redis.hard, ch->redis.soft);
    printf("              receiver:");
    for (int m = RX_500; m < RX_MODES; m++)
        printf("%s %d windows answering %s (%.0f s)", m > RX_500 ? "," : "", ch->rx.windows[m],
               rx_names[m], (double)ch->rx.ms[m] / 1000.0);
    printf("\n              users: %d archived, %d restored, %d new passwords, %d wrong "
           "passwords put right; %d api calls failed\n",
           utot.archives, utot.restores, utot.rotations, utot.wrongs, utot.failed_calls);
}

static int report(long long flow_ms, long long drain_ms, const struct chaos_all *ch,
                  long long faults)
{
    struct sys_report rep;
    sys_report(&fleet, &rep);
    size_t delivered = fleet.nmails, counted_ann, excused_ann, archived_ann;
    size_t counted = count_class(M_COUNTED, &counted_ann);
    size_t excused = count_class(M_EXCUSED, &excused_ann);
    size_t archived = count_class(M_ARCHIVED, &archived_ann);
    size_t lost = counted - counted_ann;
    double p50, p99, max;
    sys_latency(&fleet, 0, delivered, &p50, &p99, &max);
    printf("\n==== soak report (seed %u, profile %s)\n", cfg.seed,
           cfg.is_full ? "full" : "default");
    printf("  run:        %.0f s of mail at %.1f/s to %d users, then %.1f s of drain\n",
           (double)flow_ms / 1000.0, cfg.rate, cfg.users, (double)drain_ms / 1000.0);
    printf("  fleet:      Redis (AOF), fake-imapd, api, %d watchers, %d dispatchers\n",
           fleet.nwatchers, fleet.ndispatchers);
    printf("  faults:     rate %g of IMAP commands (%s): %lld injected; %d users kicked\n",
           cfg.fault_rate, cfg.faults, faults, ch->kicks);
    printf("  restarts:   %d watchers stopped and started (%d SIGKILL, %d SIGTERM; %d SIGTERM "
           "exits not 0)\n",
           ch->w.kills + ch->w.terms, ch->w.kills, ch->w.terms, ch->w.unclean + ch->d.unclean);
    if (cfg.is_full)
        report_chaos(ch);
    printf("  delivered:  %zu\n", delivered);
    if (cfg.is_full)
        printf("              %zu counted; %zu excused (not yet announced when their user was "
               "archived, or sent while it was being restored), %zu of them announced; %zu sent "
               "while their user was archived, %zu of them announced (must be 0)%s\n",
               counted, excused, excused_ann, archived, archived_ann,
               archived_ann ? "   <-- FAIL" : "");
    printf("  announced:  %zu\n", counted_ann);
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
    for (size_t i = 0; i < delivered; i++)
        if (mclass[i] != M_EXCUSED && (fleet.mails[i].announced > 0) != (mclass[i] == M_COUNTED))
            printf("  %s: mail %zu to %s (%zu bytes), %d attempts\n",
                   mclass[i] == M_COUNTED ? "lost" : "announced while archived", i,
                   fleet.mails[i].tag, fleet.mails[i].len, fleet.mails[i].attempts);
    fflush(stdout);
    return lost > 0 || archived_ann > 0 || rep.duplicates > 0 || rep.bad > 0 ? 1 : 0;
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
    const char *profile = getenv("SOAK_PROFILE");
    if (profile != NULL && *profile != '\0' && strcmp(profile, "default") != 0 &&
        strcmp(profile, "full") != 0) {
        fprintf(stderr, "soak: SOAK_PROFILE must be default or full\n");
        return 2;
    }
    cfg.is_full = profile != NULL && strcmp(profile, "full") == 0;
    cfg.users = (int)env_long("SOAK_USERS", 30, 1, 10000);
    cfg.watchers = (int)env_long("SOAK_WATCHERS", 3, 1, SYS_MAX_NODES);
    cfg.dispatchers = (int)env_long("SOAK_DISPATCHERS", 2, 1, SYS_MAX_NODES);
    cfg.drain_s = (int)env_long("SOAK_DRAIN_SEC", cfg.is_full ? 900 : 120, 1, 86400);
    cfg.rate = env_double("SOAK_RATE", 5, 0.01, 1000);
    cfg.fault_rate = env_double("SOAK_FAULT_RATE", 0.05, 0, 1);
    cfg.faults = getenv("SOAK_FAULTS") ? getenv("SOAK_FAULTS") : DEFAULT_FAULTS;
    cfg.seed = (unsigned)env_long("SOAK_SEED", (long)(time(NULL) % 1000000), 1, 2147483647);
    rng = 0x9e3779b97f4a7c15ULL ^ cfg.seed;
    printf("soak: %d s, profile %s, %d users, %.1f mails/s, %d watchers, %d dispatchers, faults "
           "%g (%s), seed %u\n",
           cfg.duration_s, cfg.is_full ? "full" : "default", cfg.users, cfg.rate, cfg.watchers,
           cfg.dispatchers, cfg.fault_rate, cfg.faults, cfg.seed);

    if (start_fleet() < 0) {
        fprintf(stderr, "soak: the fleet did not start\n");
        sys_dump_logs(&fleet, 20);
        sys_stop(&fleet);
        free(users);
        free(uc);
        return 2;
    }
    struct chaos_all ch = {.w = {.role = &watchers, .i = -1}, .d = {.role = &dispatchers, .i = -1}};
    long long t0 = harness_now_ms();
    run_flow(t0, &ch);
    long long flow_ms = harness_now_ms() - t0;
    long long faults = fakeimap_stat(&fleet.fake, "faults");
    long long drain_ms = drain(&ch, t0);
    int rc = report(flow_ms, drain_ms, &ch, faults);
    if (rc != 0)
        sys_dump_logs(&fleet, 30);
    if (sys_stop(&fleet) < 0)
        printf("soak: a node did not stop cleanly on SIGTERM (see above)\n");
    free(users);
    free(uc);
    free(mclass);
    return rc;
}
