/*
 * cmd/dispatcher/dispatch: claims over the shards this dispatcher owns
 * (owner.c), shard upkeep (requeue of expired leases, promotion of due
 * retries, queue metrics), wake-ups and the lifecycle (see dispatch.h; one
 * claimed event's life is in job.c, the delivery guarantees in main.c's
 * header).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "cmd/dispatcher/breaker.h"
#include "core/deliver.h"
#include "cmd/dispatcher/job.h"
#include "cmd/dispatcher/owner.h"
#include "cmd/dispatcher/partners.h"
#include "cmd/dispatcher/policy.h"
#include "cmd/dispatcher/queue.h"
#include "cmd/dispatcher/tracer.h"
#include "cmd/dispatcher/wake.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/time.h"

/* ---- The scheduler's state ---- */

struct shard {
    struct dispatcher *d;
    struct queue_shard keys;
    unsigned started : 1;  /* expired leases requeued since Redis became ready */
    unsigned wants : 1;    /* a claim is due (wake-up, sweep, more ready) */
    unsigned claiming : 1; /* a claim is in flight */
    unsigned requeuing : 1;
    unsigned promoting : 1;
    unsigned counting : 1;  /* stats in flight */
    unsigned owned : 1;     /* its si:{k}:owner lease is ours: claims allowed (owner.c says) */
    unsigned epoch;         /* bumps when the shard becomes owned */
    unsigned requeue_epoch; /* epoch the requeue in flight was sent in */
    int claim_n;            /* slots reserved by the claim in flight */
    int64_t next_requeue, next_promote, next_stats; /* mono ms */
    struct metric *m_depth[4];                      /* ready, inflight, retry, dead */
    struct metric *m_oldest;
};

struct dispatcher {
    struct ev_loop *loop;
    struct node *node;
    const struct config *cfg;
    struct crypto_keys *keys;
    struct queue *q;
    struct partners *partners;
    struct deliver *http;
    struct breakers *breakers;
    struct wake *wake;

    int nshards;
    struct shard *shards;
    int rr; /* next shard the pump looks at first */

    int redis_up;
    int draining;
    int closing;
    void (*drained)(void *data);
    void *drained_data;

    struct jobs *jobs; /* the claimed events (job.c) */
    int max_active;
    int reserved; /* slots reserved by claims in flight */

    int divisor;
    int64_t lease_ms;
    int64_t tick_ms;
    int64_t next_sweep;
    ev_timer tick;

    struct metric *m_inflight;
    struct metric *m_circuits[BREAKER_NSTATES];

    struct owner *owner;     /* which shards are ours (owner.c) */
    struct tracers *tracers; /* tracer mail of the owned shards (tracer.c); NULL: off */
    int owner_released;      /* drain: leases released, alive keys deleted */

    char describe_capacity[16], describe_inflight[16], describe_owned[16]; /* si:node:<id> */
};

/* ---- Tunables of the scheduler (times before SUPERIMAP_WEBHOOK_TIME_DIVISOR) ---- */

#define CLAIM_BATCH      64    /* most events one claim takes */
#define CLAIM_MIN        16    /* fewest free slots worth a claim when busy */
#define SWEEP_MS         1000  /* every shard is claimed at least this often */
#define PROMOTE_SWEEP_MS 1000  /* and its due retries promoted */
#define REQUEUE_SWEEP_MS 5000  /* and its expired leases requeued */
#define STATS_MS         5000  /* queue depth metrics */
#define MAINT_BATCH      500   /* events per promote / requeue call */
#define PARTNER_TTL_MS   10000 /* partner settings refresh */
#define INLINE_PAYLOAD   16384 /* longer payloads are read outside the claim script */

static void dispatch_pump(struct dispatcher *d);
static void dispatch_check_drained(struct dispatcher *d);

/* ms divided by SUPERIMAP_WEBHOOK_TIME_DIVISOR. */
static int64_t dispatch_scaled(const struct dispatcher *d, int64_t ms)
{
    return ms / d->divisor;
}

/* ---- Claims ---- */

static void on_claimed(const struct queue_claimed *c, int err, void *data)
{
    struct shard *sh = data;
    struct dispatcher *d = sh->d;
    sh->claiming = 0;
    d->reserved -= sh->claim_n;
    sh->claim_n = 0;
    if (c == NULL) {
        if (err != -SIMAP_ESHUTDOWN)
            log_warn("claim failed shard=%d err=\"%s\"", sh->keys.k, err_str(err));
        return; /* the next sweep tries again */
    }
    if (err < 0)
        log_warn("malformed claim reply; its events return after their lease shard=%d", sh->keys.k);
    for (size_t i = 0; i < c->nevents; i++)
        jobs_claimed(d->jobs, &sh->keys, &c->events[i]);
    /* A wake-up, sweep or freed slot that came while the claim was in flight
     * set wants again (dispatch_pump() cleared it): keep it, or that signal is lost. */
    sh->wants = sh->wants || (c->more && c->nevents > 0);
    for (size_t i = 0; i < c->nskipped; i++) {
        struct partner *p = partners_get(d->partners, c->skipped[i]);
        /* Its slots may have freed while the claim was in flight, and then
         * no later release would wake this shard: claim again now. */
        if (p->held < p->concurrency)
            sh->wants = 1;
        else
            jobs_partner_block(d->jobs, p, sh->keys.k);
    }
    dispatch_pump(d);
}

/* Issues claims while there are free slots and shards that want one. */
static void dispatch_pump(struct dispatcher *d)
{
    if (!d->redis_up || d->draining || d->closing)
        return;
    int active = jobs_active(d->jobs);
    int free = d->max_active - active - d->reserved;
    /* Claim in batches: while many events are in flight, wait until a few
     * slots are free rather than claim one event per finished request. */
    if (free < CLAIM_MIN && active >= CLAIM_MIN)
        return;
    if (!owner_may_act(d->owner))
        return;
    for (int i = 0; i < d->nshards && free > 0; i++) {
        struct shard *sh = &d->shards[(d->rr + i) % d->nshards];
        if (!sh->owned || !sh->started || !sh->wants || sh->claiming)
            continue;
        int n = free < CLAIM_BATCH ? free : CLAIM_BATCH;
        /* Partners this dispatcher already keeps busy get their own count. */
        const char *pids[256];
        int frees[256];
        size_t np = 0;
        for (struct partner *p = jobs_busy(d->jobs); p != NULL && np < 256; p = p->busy_next) {
            int f = p->concurrency - p->held;
            if (f < n) {
                pids[np] = p->pid;
                frees[np++] = f;
            }
        }
        sh->wants = 0;
        if (queue_claim(d->q, &sh->keys, d->lease_ms, n, PARTNER_DEFAULT_CONCURRENCY,
                        INLINE_PAYLOAD, np, pids, frees, on_claimed, sh) < 0)
            continue; /* rconn's queue is full: the next sweep tries again */
        sh->claiming = 1;
        sh->claim_n = n;
        d->reserved += n;
        free -= n;
    }
    d->rr = (d->rr + 1) % d->nshards;
}

/* ---- Shard maintenance ---- */

static void on_requeued(long long n, long long next_ms, int err, void *data)
{
    struct shard *sh = data;
    struct dispatcher *d = sh->d;
    sh->requeuing = 0;
    int64_t now = time_mono_ms();
    if (err < 0) {
        if (err != -SIMAP_ESHUTDOWN)
            log_warn("requeue of expired leases failed shard=%d err=\"%s\"", sh->keys.k,
                     err_str(err));
        sh->next_requeue = now + 1000;
        return;
    }
    if (n > 0)
        log_info("requeued events whose lease expired shard=%d count=%lld", sh->keys.k, n);
    if (n >= MAINT_BATCH)
        next_ms = 0; /* more to do */
    sh->next_requeue =
        now + (next_ms < 0 || next_ms > REQUEUE_SWEEP_MS ? REQUEUE_SWEEP_MS : next_ms);
    if (!sh->started && d->redis_up && sh->owned && sh->requeue_epoch == sh->epoch) {
        /* Expired leases first, then claims (docs/architecture.md section 5); a
         * requeue sent before the shard was taken (again) does not count. */
        sh->started = 1;
        sh->wants = 1;
    } else if (n > 0) {
        sh->wants = 1;
    }
    dispatch_pump(d);
}

static void start_requeue(struct shard *sh)
{
    if (queue_requeue(sh->d->q, &sh->keys, MAINT_BATCH, on_requeued, sh) == 0) {
        sh->requeuing = 1;
        sh->requeue_epoch = sh->epoch;
    }
}

static void on_promoted(long long n, long long next_ms, int err, void *data)
{
    struct shard *sh = data;
    struct dispatcher *d = sh->d;
    sh->promoting = 0;
    int64_t now = time_mono_ms();
    if (err < 0) {
        sh->next_promote = now + PROMOTE_SWEEP_MS;
        return;
    }
    if (n > 0)
        sh->wants = 1;
    sh->next_promote =
        now + (next_ms < 0 || next_ms > PROMOTE_SWEEP_MS ? PROMOTE_SWEEP_MS : next_ms);
    dispatch_pump(d);
}

static void on_stats(const struct queue_stats *st, int err, void *data)
{
    struct shard *sh = data;
    sh->counting = 0;
    if (err < 0 || st == NULL || !sh->owned)
        return; /* a shard given up meanwhile: its owner reports it */
    metric_set(sh->m_depth[0], (double)st->ready);
    metric_set(sh->m_depth[1], (double)st->inflight);
    metric_set(sh->m_depth[2], (double)st->retry);
    metric_set(sh->m_depth[3], (double)st->dead);
    metric_set(sh->m_oldest, (double)st->oldest_ready_ms / 1000.0);
}

static void update_gauges(struct dispatcher *d)
{
    metric_set(d->m_inflight, jobs_active(d->jobs));
    for (int s = 0; s < BREAKER_NSTATES; s++)
        metric_set(d->m_circuits[s], breakers_count(d->breakers, (enum breaker_state)s));
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dispatcher *d = w->data;
    update_gauges(d);
    int64_t now = time_mono_ms();
    int act = owner_may_act(d->owner); /* before the tick is noted: a frozen loop fences here */
    owner_loop_ran(d->owner, now);
    if (!d->redis_up || d->closing)
        return;
    if (d->draining) {
        dispatch_check_drained(d);
        return;
    }
    owner_tick(d->owner, now);
    int sweep = now >= d->next_sweep;
    if (sweep)
        d->next_sweep = now + SWEEP_MS;
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        if (!sh->owned || !act)
            continue;
        if (!sh->requeuing && (!sh->started || now >= sh->next_requeue))
            start_requeue(sh);
        if (!sh->started)
            continue;
        if (sweep)
            sh->wants = 1;
        if (!sh->promoting && now >= sh->next_promote &&
            queue_promote(d->q, &sh->keys, MAINT_BATCH, DEAD_KEEP_MS, on_promoted, sh) == 0)
            sh->promoting = 1;
        if (!sh->counting && now >= sh->next_stats &&
            queue_stats(d->q, &sh->keys, on_stats, sh) == 0) {
            sh->counting = 1;
            sh->next_stats = now + STATS_MS;
        }
    }
    dispatch_pump(d);
}

/* ---- Wake-ups ---- */

static void on_wake_shard(int k, void *data)
{
    struct dispatcher *d = data;
    if (k < 0 || k >= d->nshards || !d->shards[k].owned)
        return;
    d->shards[k].wants = 1;
    dispatch_pump(d);
}

static void on_wake_subscribed(void *data)
{
    struct dispatcher *d = data;
    d->next_sweep = 0; /* messages may have been missed: sweep every shard now */
}

/* ---- Callbacks of the owner (owner.h) ---- */

static void on_owned(int k, int owned, void *data)
{
    struct dispatcher *d = data;
    struct shard *sh = &d->shards[k];
    sh->owned = owned ? 1 : 0;
    if (owned) {
        /* Expired leases first, then claims (docs/architecture.md section 5),
         * started now rather than at the next tick: events waiting in the
         * shard (or woken for it meanwhile) would wait up to a tick more. */
        sh->epoch++;
        sh->started = 0;
        sh->next_requeue = 0;
        if (!sh->requeuing && d->redis_up && !d->closing && !d->draining)
            start_requeue(sh);
    } else {
        sh->wants = 0;
        /* The owner reports the shard's depth now: zeros here keep sums
         * over the fleet right. */
        for (int s = 0; s < 4; s++)
            metric_set(sh->m_depth[s], 0);
        metric_set(sh->m_oldest, 0);
    }
}

static int is_idle(int k, void *data)
{
    struct dispatcher *d = data;
    const struct shard *sh = &d->shards[k];
    return !sh->claiming && !sh->requeuing && !sh->promoting && !sh->counting;
}

/* ---- Callbacks of the jobs (job.h) ---- */

static void on_slot_free(void *data)
{
    dispatch_pump(data);
}

static void on_shard_wanted(int k, void *data)
{
    struct dispatcher *d = data;
    d->shards[k].wants = 1;
}

static void on_retry_due(int k, int64_t due_mono, void *data)
{
    struct dispatcher *d = data;
    struct shard *sh = &d->shards[k];
    if (due_mono < sh->next_promote)
        sh->next_promote = due_mono;
}

static void on_job_freed(void *data)
{
    dispatch_check_drained(data);
}

static void on_partner_loaded(struct partner *p, void *data)
{
    struct dispatcher *d = data;
    jobs_on_partner_loaded(d->jobs, p);
}

/* ---- Lifecycle ---- */

static void forget_settings(const char *pid, void *value, void *data)
{
    (void)pid;
    (void)data;
    struct partner *p = value;
    p->loaded = 0; /* the next event reads them again before it is sent */
}

void dispatch_resume(struct dispatcher *d)
{
    d->redis_up = 1;
    /* Redis may have changed under us (a restart without persistence, a
     * failover to a lagging replica): read partner settings afresh. */
    partners_each(d->partners, forget_settings, d);
    int64_t now = time_mono_ms();
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        sh->started = 0; /* the next tick requeues expired leases, then claims */
        /* Spread the periodic calls of the shards over their periods. */
        sh->next_promote = now + (int64_t)k * PROMOTE_SWEEP_MS / d->nshards;
        sh->next_stats = now + (int64_t)k * STATS_MS / d->nshards;
    }
    d->next_sweep = now + SWEEP_MS;
    owner_ready(d->owner);
}

void dispatch_pause(struct dispatcher *d)
{
    d->redis_up = 0;
    owner_pause(d->owner);
}

/* Calls the drain's done callback once nothing is left. */
static void dispatch_check_drained(struct dispatcher *d)
{
    if (!d->draining || d->closing || d->drained == NULL || !d->owner_released)
        return;
    if (jobs_count(d->jobs) > 0 || deliver_active(d->http) > 0 || queue_pending(d->q) > 0)
        return;
    void (*done)(void *) = d->drained;
    d->drained = NULL;
    log_info("dispatcher drained");
    done(d->drained_data);
}

static void on_owner_released(void *data)
{
    struct dispatcher *d = data;
    d->owner_released = 1;
    dispatch_check_drained(d);
}

void dispatch_drain(struct dispatcher *d, void (*done)(void *data), void *data)
{
    d->draining = 1;
    d->drained = done;
    d->drained_data = data;
    log_info("dispatcher draining requests=%d events=%d", deliver_active(d->http),
             jobs_count(d->jobs));
    jobs_drain(d->jobs); /* events not sent yet go back */
    tracer_stop(d->tracers);
    /* The shards go to the other dispatchers now; requests in flight still
     * record their results (fenced by the attempt, not by the shard lease). */
    owner_release_all(d->owner, on_owner_released, d);
}

void dispatch_describe(struct dispatcher *d, const char **argv, int *argc)
{
    /* load / capacity: events in flight / the most this node takes at once. */
    snprintf(d->describe_inflight, sizeof d->describe_inflight, "%d", jobs_active(d->jobs));
    snprintf(d->describe_capacity, sizeof d->describe_capacity, "%d", d->max_active);
    snprintf(d->describe_owned, sizeof d->describe_owned, "%d", owner_count(d->owner));
    argv[(*argc)++] = "load";
    argv[(*argc)++] = d->describe_inflight;
    argv[(*argc)++] = "capacity";
    argv[(*argc)++] = d->describe_capacity;
    argv[(*argc)++] = "shards";
    argv[(*argc)++] = d->describe_owned;
}

/* The scheduler's metrics (the jobs register theirs before). */
static void register_metrics(struct dispatcher *d, struct metrics *m)
{
    d->m_inflight = metrics_gauge(m, "superimap_webhook_inflight",
                                  "Events claimed by this dispatcher and not yet decided", NULL);
    for (int s = 0; s < BREAKER_NSTATES; s++) {
        char labels[64];
        snprintf(labels, sizeof labels, "state=\"%s\"", breaker_state_str((enum breaker_state)s));
        d->m_circuits[s] = metrics_gauge(m, "superimap_webhook_circuits",
                                         "Circuit breakers of webhook URLs by state", labels);
    }
    static const char *const states[] = {"ready", "inflight", "retry", "dead"};
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
        for (int s = 0; s < 4; s++) {
            char labels[64];
            snprintf(labels, sizeof labels, "shard=\"%d\",state=\"%s\"", k, states[s]);
            sh->m_depth[s] = metrics_gauge(m, "superimap_queue_events",
                                           "Events in each queue state, per shard", labels);
        }
        char labels[32];
        snprintf(labels, sizeof labels, "shard=\"%d\"", k);
        sh->m_oldest = metrics_gauge(m, "superimap_queue_oldest_ready_seconds",
                                     "Age of the oldest ready event, per shard", labels);
    }
}

static int is_owned(int k, void *data)
{
    struct dispatcher *d = data;
    return d->shards[k].owned && owner_may_act(d->owner);
}

/* A circuit changed: published for the dashboard (si:circuit:*), its
 * monotonic times turned into wall-clock ones. Closed circuits are kept for
 * CIRCUIT_KEEP_MS, so the operator sees what recovered. */
static void on_breaker_change(const struct breaker_change *c, void *data)
{
    struct dispatcher *d = data;
    int64_t wall = time_now_ms(), mono = time_mono_ms();
    struct queue_circuit qc = {
        .url = c->url,
        .state = breaker_state_str(c->state),
        .failures = c->failures,
        .opened_at = c->opened_at > 0 ? wall - (mono - c->opened_at) : 0,
        .until = c->state == BREAKER_OPEN ? wall + (c->open_until - mono) : 0,
        .now = wall,
        .node = node_id(d->node),
        .keep_ms = CIRCUIT_KEEP_MS,
    };
    if (queue_circuit(d->q, &qc) < 0)
        log_warn("cannot publish a circuit's state url=%s state=%s", c->url, qc.state);
}

struct dispatcher *dispatch_new(struct ev_loop *loop, struct node *n)
{
    const struct config *cfg = node_config(n);
    struct dispatcher *d = xcalloc(1, sizeof *d);
    d->loop = loop;
    d->node = n;
    d->cfg = cfg;
    char err[256];
    if (crypto_keys_init(&d->keys, cfg->encryption_key, cfg->encryption_old_keys, err, sizeof err) <
        0) {
        log_error("cannot use the encryption key err=\"%s\"", err);
        xfree(d);
        return NULL;
    }
    d->divisor = cfg->webhook_time_divisor > 0 ? cfg->webhook_time_divisor : 1;
    d->max_active = cfg->webhook_max_inflight;
    /* A lease outlives the request's own timeout, with room for Redis round
     * trips, so a live dispatcher's result normally lands before it ends. */
    d->lease_ms = cfg->webhook_timeout_ms + cfg->webhook_timeout_ms / 2 + 1000;
    d->tick_ms = 1000 / d->divisor;
    if (d->tick_ms < 5)
        d->tick_ms = 5;
    if (d->tick_ms > 100)
        d->tick_ms = 100;
    char ua[64];
    snprintf(ua, sizeof ua, "superimap/%s", SUPERIMAP_VERSION);
    struct deliver_opts dopts = {
        .timeout_ms = cfg->webhook_timeout_ms,
        .connect_timeout_ms = cfg->webhook_connect_timeout_ms,
        .max_host_connections = cfg->webhook_host_connections,
        .max_connections = cfg->webhook_max_inflight,
        .allow_private = cfg->webhook_allow_private,
        .allow_var = "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE",
        .user_agent = ua,
    };
    d->http = deliver_new(loop, &dopts);
    if (d->http == NULL) {
        crypto_keys_free(d->keys);
        xfree(d);
        return NULL;
    }
    d->q = queue_new(node_redis(n));
    d->partners = partners_new(d->q, d->keys, PARTNER_TTL_MS, on_partner_loaded, d);
    d->breakers = breakers_new(BREAKER_FAILURES, dispatch_scaled(d, BREAKER_OPEN_MS) + 1,
                               dispatch_scaled(d, BREAKER_MAX_MS) + 1);
    breakers_on_change(d->breakers, on_breaker_change, d);
    d->nshards = cfg->shards;
    d->shards = xcalloc((size_t)d->nshards, sizeof *d->shards);
    for (int k = 0; k < d->nshards; k++) {
        d->shards[k].d = d;
        queue_shard_init(&d->shards[k].keys, k);
    }
    struct jobs_opts jo = {
        .q = d->q,
        .partners = d->partners,
        .http = d->http,
        .breakers = d->breakers,
        .circuit_hold_ms = (int64_t)cfg->webhook_circuit_hold_hours * 3600 * 1000,
        .keys = d->keys,
        .metrics = node_metrics(n),
        .nshards = d->nshards,
        .divisor = d->divisor,
    };
    struct jobs_hooks jh = {
        .on_slot_free = on_slot_free,
        .on_shard_wanted = on_shard_wanted,
        .on_retry_due = on_retry_due,
        .on_job_freed = on_job_freed,
        .data = d,
    };
    d->jobs = jobs_new(&jo, &jh);
    register_metrics(d, node_metrics(n));
    struct owner_hooks oh = {.on_owned = on_owned, .is_idle = is_idle, .data = d};
    d->owner = owner_new(loop, n, d->nshards, &oh);
    struct wake_opts wo = {
        .redis_url = cfg->redis_url,
        .redis_password = cfg->redis_password,
        .redis_sentinel_password = cfg->redis_sentinel_password,
        .on_shard = on_wake_shard,
        .on_subscribed = on_wake_subscribed,
        .data = d,
    };
    d->wake = wake_new(loop, &wo);
    struct tracer_opts to = {
        .loop = loop,
        .redis = node_redis(n),
        .keys = d->keys,
        .metrics = node_metrics(n),
        .cfg = cfg,
        .nshards = d->nshards,
        .is_owned = is_owned,
        .data = d,
    };
    d->tracers = tracer_new(&to);
    ev_timer_init(&d->tick, on_tick, (double)d->tick_ms / 1000.0, (double)d->tick_ms / 1000.0);
    d->tick.data = d;
    ev_timer_start(loop, &d->tick);
    log_info("dispatcher started shards=%d max_inflight=%d lease_ms=%lld timeout_ms=%d "
             "allow_private=%d time_divisor=%d",
             d->nshards, d->max_active, (long long)d->lease_ms, cfg->webhook_timeout_ms,
             cfg->webhook_allow_private, d->divisor);
    return d;
}

void dispatch_free(struct dispatcher *d)
{
    if (d == NULL)
        return;
    d->closing = 1;
    tracer_free(d->tracers);
    jobs_close(d->jobs);
    owner_close(d->owner);
    ev_timer_stop(d->loop, &d->tick);
    wake_free(d->wake);
    deliver_free(d->http); /* in-flight requests call back now and free their jobs */
    queue_free(d->q);      /* pending Redis calls are orphaned ... */
    jobs_free(d->jobs);    /* ... so the jobs waiting on them are freed here */
    owner_free(d->owner);
    partners_free(d->partners);
    breakers_free(d->breakers);
    crypto_keys_free(d->keys);
    xfree(d->shards);
    xfree(d);
}
