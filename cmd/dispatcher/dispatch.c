/*
 * cmd/dispatcher/dispatch: claims, deliveries, results, shard maintenance
 * (see dispatch.h; the delivery guarantees are in main.c's header).
 *
 * One claimed event is one struct job:
 *
 *   claimed ──► waiting (partner settings loading, or partner at its
 *      │         concurrency cap) ──┐
 *      ├────────────────────────────┴──► sending (curl) ──► deciding (403:
 *      │                                                     archive; 410:
 *      │                                                     disable URL)
 *      └──► decided locally (no URL, bad payload, circuit open) ──┐    │
 *                                                                 ▼    ▼
 *                                         committing (event_ack / event_retry /
 *                                         event_dead, then the log entry) ──► freed
 *
 * A job holds a delivery slot (d->active, its partner's held) from claim to
 * decision; the slot then goes to the next event at once while the result is
 * written. Every job is on d->jobs until freed, so dispatch_free() can free
 * those whose Redis calls were orphaned.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "cmd/dispatcher/breaker.h"
#include "cmd/dispatcher/deliver.h"
#include "cmd/dispatcher/partners.h"
#include "cmd/dispatcher/queue.h"
#include "cmd/dispatcher/wake.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/schema.h"
#include "core/time.h"
#include "proto/webhook.h"

/* ---- Tunables (times before SUPERIMAP_WEBHOOK_TIME_DIVISOR) ---- */

#define CLAIM_BATCH       64               /* most events one claim takes */
#define CLAIM_MIN         16               /* fewest free slots worth a claim when busy */
#define SWEEP_MS          1000             /* every shard is claimed at least this often */
#define PROMOTE_SWEEP_MS  1000             /* and its due retries promoted */
#define REQUEUE_SWEEP_MS  5000             /* and its expired leases requeued */
#define STATS_MS          5000             /* queue depth metrics */
#define MAINT_BATCH       500              /* events per promote / requeue call */
#define PARTNER_TTL_MS    10000            /* partner settings refresh */
#define KEEP_DELIVERED_MS (7 * 86400000LL) /* a delivered event's hash (no payload) */
#define DEAD_CAP          10000            /* dead letters per shard */
#define DEAD_KEEP_MS      (30 * 86400000LL)
#define RETRY_AFTER_MAX   (86400000LL) /* longest Retry-After honoured */
#define BREAKER_FAILURES  5
#define BREAKER_OPEN_MS   30000
#define BREAKER_MAX_MS    600000
#define COMMIT_TRIES      5     /* a result lost with the link is sent again */
#define EID_MAX           256   /* longest event id we send */
#define INLINE_PAYLOAD    16384 /* longer payloads are read outside the claim script */

enum commit_op { OP_ACK, OP_RETRY, OP_DEAD };

static const char *const results[] = {"delivered", "retry", "dead",    "archived",
                                      "refused",   "gone",  "skipped", "deferred"};
enum result {
    R_DELIVERED,
    R_RETRY,
    R_DEAD,
    R_ARCHIVED,
    R_REFUSED,
    R_GONE,
    R_SKIPPED,
    R_DEFERRED,
    R_COUNT
};

struct shard {
    struct dispatcher *d;
    struct queue_shard keys;
    unsigned started : 1;  /* expired leases requeued since Redis became ready */
    unsigned wants : 1;    /* a claim is due (wake-up, sweep, more ready) */
    unsigned claiming : 1; /* a claim is in flight */
    unsigned requeuing : 1;
    unsigned promoting : 1;
    unsigned counting : 1;                          /* stats in flight */
    int claim_n;                                    /* slots reserved by the claim in flight */
    int64_t next_requeue, next_promote, next_stats; /* mono ms */
    struct metric *m_depth[4];                      /* ready, inflight, retry, dead */
    struct metric *m_oldest;
};

struct job {
    struct dispatcher *d;
    struct shard *sh;
    struct partner *p;
    struct job *next;                /* the partner's wait queue */
    struct job *all_prev, *all_next; /* d->jobs */
    char *eid, *type, *uid, *code, *tag, *sha1;
    char *plain; /* the decrypted payload, until the body is built */
    size_t plain_len;
    enum { PL_OK, PL_FETCH, PL_MISSING, PL_BAD } payload;
    int etype;   /* enum event_type, -1 unknown */
    int attempt; /* fencing token */
    int holds_slot;
    int waiting; /* on the partner's wait queue */
    int sending;
    char *url; /* the URL of the request in flight */
    /* The decision. */
    enum commit_op op;
    enum result result;
    int counted;        /* the attempt counts (0: given back, attempts unchanged) */
    int logged;         /* the outcome goes to the delivery log and metrics */
    int64_t created_at; /* wall ms, 0 when unknown */
    long status;
    int64_t latency_ms;
    int64_t delay_ms;
    int tries;
    char error[400];
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

    int max_active;
    int active;   /* jobs holding a slot */
    int reserved; /* slots reserved by claims in flight */
    int njobs;
    struct job *jobs;
    struct partner *busy; /* partners with held events or a small cap */

    int divisor;
    int64_t lease_ms;
    int64_t tick_ms;
    int64_t next_sweep;
    ev_timer tick;

    struct metric *m_results[R_COUNT];
    struct metric *m_attempts, *m_latency, *m_stale, *m_inflight, *m_lost;
    struct metric *m_circuits[BREAKER_NSTATES];

    char describe_shards[16], describe_inflight[16];
};

static void pump(struct dispatcher *d);
static void job_try_send(struct job *j);
static void check_drained(struct dispatcher *d);

static int64_t scaled(const struct dispatcher *d, int64_t ms)
{
    return ms / d->divisor;
}

/* ---- Partners: busy list, blocked shards ---- */

static void busy_update(struct dispatcher *d, struct partner *p)
{
    int want = p->held > 0 || p->concurrency < PARTNER_DEFAULT_CONCURRENCY;
    if (want == p->in_busy)
        return;
    if (want) {
        p->busy_prev = NULL;
        p->busy_next = d->busy;
        if (d->busy != NULL)
            d->busy->busy_prev = p;
        d->busy = p;
    } else {
        if (p->busy_prev != NULL)
            p->busy_prev->busy_next = p->busy_next;
        else
            d->busy = p->busy_next;
        if (p->busy_next != NULL)
            p->busy_next->busy_prev = p->busy_prev;
    }
    p->in_busy = want;
}

/* A claim on sh skipped p for lack of slots: claim there again once p frees
 * one. */
static void partner_block(struct dispatcher *d, struct partner *p, struct shard *sh)
{
    if (p->blocked == NULL)
        p->blocked = xcalloc((size_t)d->nshards, 1);
    if (!p->blocked[sh->keys.k]) {
        p->blocked[sh->keys.k] = 1;
        p->nblocked++;
    }
}

static void partner_unblock(struct dispatcher *d, struct partner *p)
{
    if (p->nblocked == 0)
        return;
    for (int k = 0; k < d->nshards; k++) {
        if (p->blocked[k]) {
            p->blocked[k] = 0;
            d->shards[k].wants = 1;
        }
    }
    p->nblocked = 0;
}

/* ---- Jobs ---- */

/* Decrypts an event's payload envelope (AAD si:evt:<eid>) into j->plain. */
static void open_payload(struct job *j, const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    snprintf(aad, sizeof aad, "si:evt:%s", j->eid);
    xfree(j->plain);
    j->plain = NULL;
    j->payload =
        crypto_decrypt(j->d->keys, envelope, aad, &j->plain, &j->plain_len) == 0 ? PL_OK : PL_BAD;
}

static struct job *job_new(struct dispatcher *d, struct shard *sh, const struct queue_event *e)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->d = d;
    j->sh = sh;
    j->p = partners_get(d->partners, e->pid);
    j->eid = xstrdup(e->id);
    j->type = xstrdup(e->type);
    j->uid = xstrdup(e->uid);
    j->code = xstrdup(e->code);
    j->tag = xstrdup(e->tag);
    j->sha1 = xstrdup(e->sha1);
    if (e->payload[0] != '\0')
        open_payload(j, e->payload);
    else
        j->payload = e->payload_len > 0 ? PL_FETCH : PL_MISSING;
    j->etype = event_type_parse(e->type);
    j->attempt = e->attempt;
    j->created_at = e->created_at;
    j->all_next = d->jobs;
    if (d->jobs != NULL)
        d->jobs->all_prev = j;
    d->jobs = j;
    d->njobs++;
    j->holds_slot = 1;
    d->active++;
    j->p->held++;
    busy_update(d, j->p);
    return j;
}

static void job_free(struct job *j)
{
    struct dispatcher *d = j->d;
    if (j->all_prev != NULL)
        j->all_prev->all_next = j->all_next;
    else
        d->jobs = j->all_next;
    if (j->all_next != NULL)
        j->all_next->all_prev = j->all_prev;
    d->njobs--;
    xfree(j->eid);
    xfree(j->type);
    xfree(j->uid);
    xfree(j->code);
    xfree(j->tag);
    xfree(j->sha1);
    xfree(j->plain);
    xfree(j->url);
    xfree(j);
}

static void wait_push(struct partner *p, struct job *j)
{
    j->next = NULL;
    j->waiting = 1;
    if (p->wait_tail != NULL)
        p->wait_tail->next = j;
    else
        p->wait_head = j;
    p->wait_tail = j;
}

static struct job *wait_pop(struct partner *p)
{
    struct job *j = p->wait_head;
    if (j != NULL) {
        p->wait_head = j->next;
        if (p->wait_head == NULL)
            p->wait_tail = NULL;
        j->next = NULL;
        j->waiting = 0;
    }
    return j;
}

/* The job's slot goes back: the partner's next waiting event may start, and
 * shards whose claims skipped the partner are claimed again. */
static void release_slot(struct job *j)
{
    if (!j->holds_slot)
        return;
    struct dispatcher *d = j->d;
    struct partner *p = j->p;
    j->holds_slot = 0;
    d->active--;
    p->held--;
    busy_update(d, p);
    partner_unblock(d, p);
    if (!d->closing && p->loaded && p->sending < p->concurrency && p->wait_head != NULL)
        job_try_send(wait_pop(p));
    pump(d);
}

/* ---- Results ---- */

static void commit(struct job *j);

static void on_committed(long long value, int err, void *data)
{
    struct job *j = data;
    struct dispatcher *d = j->d;
    if ((err == -SIMAP_ECONN || err == -SIMAP_ETIMEDOUT) && ++j->tries < COMMIT_TRIES &&
        !d->closing) {
        commit(j); /* the scripts are fenced: running one twice changes nothing */
        return;
    }
    int64_t next_at = 0;
    if (err < 0) {
        metric_inc(d->m_lost);
        log_warn("cannot record a delivery result; the event will be delivered again after its "
                 "lease id=%s err=\"%s\"",
                 j->eid, err_str(err));
    } else if (value == 0) {
        if (j->logged)
            metric_inc(d->m_stale);
        log_debug("stale claim; its lease had expired and another attempt owns the event id=%s "
                  "attempt=%d",
                  j->eid, j->attempt);
    } else if (j->op == OP_RETRY) {
        next_at = value;
        int64_t due = time_mono_ms() + j->delay_ms;
        if (due < j->sh->next_promote)
            j->sh->next_promote = due;
    }
    if (j->logged && err != -SIMAP_ESHUTDOWN) {
        struct queue_log_entry e = {
            .pid = j->p->pid,
            .id = j->eid,
            .type = j->type,
            .uid = j->uid,
            .tag = j->tag,
            .code = j->code,
            .attempt = j->attempt,
            .status = j->status,
            .result = results[j->result],
            .latency_ms = j->latency_ms,
            .error = j->error,
            .next_at = next_at,
        };
        queue_log(d->q, &e);
    }
    job_free(j);
    check_drained(d);
}

static void commit(struct job *j)
{
    struct dispatcher *d = j->d;
    struct queue_shard *s = &j->sh->keys;
    int rc = 0;
    switch (j->op) {
    case OP_ACK:
        rc = queue_ack(d->q, s, j->eid, j->attempt, KEEP_DELIVERED_MS, j->status, on_committed, j);
        break;
    case OP_RETRY:
        rc = queue_retry(d->q, s, j->eid, j->attempt, j->delay_ms, j->status, j->error, j->counted,
                         on_committed, j);
        break;
    case OP_DEAD:
        rc = queue_dead(d->q, s, j->eid, j->attempt, j->status, j->error, DEAD_CAP, DEAD_KEEP_MS,
                        on_committed, j);
        break;
    }
    if (rc < 0) {
        metric_inc(d->m_lost);
        log_warn("cannot send a delivery result; the event will be delivered again after its "
                 "lease id=%s err=\"%s\"",
                 j->eid, err_str(rc));
        job_free(j);
        check_drained(d);
    }
}

/* Records the decision for j, frees its slot and writes it to Redis. */
static void decide(struct job *j, enum commit_op op, enum result r, long status, const char *error)
{
    struct dispatcher *d = j->d;
    j->op = op;
    j->result = r;
    j->status = status;
    snprintf(j->error, sizeof j->error, "%s", error ? error : "");
    if (j->logged)
        metric_inc(d->m_results[r]);
    if (r == R_DEAD)
        log_warn("event moved to dead letters id=%s pid=%s attempt=%d err=\"%s\"", j->eid,
                 j->p->pid, j->attempt, j->error);
    release_slot(j);
    if (d->closing) {
        job_free(j);
        return;
    }
    commit(j);
}

static void decide_ack(struct job *j, enum result r, long status, const char *error)
{
    decide(j, OP_ACK, r, status, error);
}

static void decide_dead(struct job *j, long status, const char *error)
{
    decide(j, OP_DEAD, R_DEAD, status, error);
}

/* The schedule delay after attempt j->attempt failed, jittered by +-10% and
 * scaled; -1 when the attempts are exhausted. */
static int64_t schedule_delay(const struct job *j)
{
    const struct partner *p = j->p;
    const int64_t *sched = p->loaded ? p->schedule_ms : partners_default_schedule;
    int n = p->loaded ? p->nschedule : partners_default_schedule_len;
    if (j->attempt < 1 || j->attempt > n)
        return -1;
    int64_t base = sched[j->attempt - 1];
    uint64_t r;
    crypto_random(&r, sizeof r);
    int64_t jitter = base / 10;
    int64_t delay = base - jitter + (jitter > 0 ? (int64_t)(r % (uint64_t)(2 * jitter + 1)) : 0);
    return scaled(j->d, delay);
}

/* A failed attempt: retry after the schedule's delay (or at least min_delay,
 * already scaled), or dead letters when attempts are exhausted. */
static void decide_failure(struct job *j, long status, const char *error, int64_t min_delay)
{
    int64_t delay = schedule_delay(j);
    if (delay < 0) {
        char why[sizeof j->error];
        snprintf(why, sizeof why, "retries exhausted after %d attempts: %s", j->attempt, error);
        decide_dead(j, status, why);
        return;
    }
    if (min_delay > delay)
        delay = min_delay;
    j->delay_ms = delay;
    decide(j, OP_RETRY, R_RETRY, status, error);
}

/* Gives the event back without counting an attempt (draining, or its partner
 * cannot be read right now). */
static void give_back(struct job *j, int64_t delay_ms)
{
    j->counted = 0;
    j->logged = 0;
    j->delay_ms = delay_ms;
    decide(j, OP_RETRY, R_RETRY, 0, "");
}

/* The URL's circuit is open: the event waits for the breaker's next probe
 * without spending an attempt (nothing was sent), unless it has already
 * waited as long as its whole retry schedule would have taken. */
static void defer(struct job *j, int64_t wait)
{
    const struct partner *p = j->p;
    int64_t budget = 0;
    for (int i = 0; i < p->nschedule; i++)
        budget += p->schedule_ms[i];
    if (j->created_at > 0 && time_now_ms() - j->created_at > scaled(j->d, budget)) {
        char why[160];
        snprintf(why, sizeof why,
                 "circuit open (the URL failed %d times in a row) for longer than the retry "
                 "schedule; never sent",
                 BREAKER_FAILURES);
        decide_dead(j, 0, why);
        return;
    }
    j->counted = 0;
    j->delay_ms = wait;
    char why[160];
    snprintf(why, sizeof why,
             "circuit open: the URL failed %d times in a row; not sent, waiting for the next probe",
             BREAKER_FAILURES);
    decide(j, OP_RETRY, R_DEFERRED, 0, why);
}

/* ---- 403 and 410 ---- */

static void on_archived(long long value, int err, void *data)
{
    struct job *j = data;
    char why[256];
    if (err < 0) {
        snprintf(why, sizeof why, "HTTP 403; the user could not be archived: %s", err_str(err));
        decide_ack(j, R_REFUSED, 403, why);
        return;
    }
    snprintf(why, sizeof why, "HTTP 403: user %s", value == 1 ? "archived" : "already archived");
    decide_ack(j, R_ARCHIVED, 403, value >= 0 ? why : "HTTP 403; no such user");
}

static void on_tracer(long long value, int err, void *data)
{
    struct job *j = data;
    struct dispatcher *d = j->d;
    if (err == 0 && value == 1) {
        decide_ack(j, R_REFUSED, 403, "HTTP 403; tracer user kept");
        return;
    }
    int rc =
        queue_archive_user(d->q, j->sh->keys.k, j->uid, "webhook answered 403", on_archived, j);
    if (rc < 0)
        on_archived(0, rc, j);
}

/* The receiver refuses this user (the original's rule): archive it unless it
 * is a tracer, then finish the event. */
static void on_forbidden(struct job *j)
{
    if (j->uid[0] == '\0') {
        decide_ack(j, R_REFUSED, 403, "HTTP 403");
        return;
    }
    int rc = queue_user_is_tracer(j->d->q, j->sh->keys.k, j->uid, on_tracer, j);
    if (rc < 0)
        on_tracer(0, rc, j);
}

static void on_disabled(long long value, int err, void *data)
{
    struct job *j = data;
    struct partner *p = j->p;
    int u = event_type_url(j->etype);
    char why[320];
    if (err < 0) {
        snprintf(why, sizeof why, "HTTP 410; the URL could not be disabled: %s", err_str(err));
    } else if (value == 1) {
        snprintf(why, sizeof why, "HTTP 410: %s_webhook_url disabled", partner_url_prefix(u));
        if (p->url[u] != NULL && strcmp(p->url[u], j->url) == 0) {
            xfree(p->disabled[u]);
            p->disabled[u] = xstrdup(why);
        }
    } else {
        snprintf(why, sizeof why, "HTTP 410 from a URL the partner has replaced since");
    }
    decide_ack(j, R_GONE, 410, why);
}

static void on_gone(struct job *j)
{
    int u = event_type_url(j->etype);
    char url_field[64], flag[64], reason[600], iso[TIME_ISO_LEN];
    snprintf(url_field, sizeof url_field, "%s_webhook_url", partner_url_prefix(u));
    snprintf(flag, sizeof flag, "%s_webhook_disabled", partner_url_prefix(u));
    snprintf(reason, sizeof reason, "answered 410 Gone at %s (%s)",
             time_format_iso(time_now_ms(), iso), j->url);
    int rc = queue_disable_url(j->d->q, j->p->pid, url_field, j->url, flag, reason, on_disabled, j);
    if (rc < 0)
        on_disabled(0, rc, j);
}

/* ---- Sending ---- */

static void on_response(const struct deliver_result *res, void *data)
{
    struct job *j = data;
    struct dispatcher *d = j->d;
    struct partner *p = j->p;
    j->sending = 0;
    p->sending--;
    j->latency_ms = res->latency_ms;
    if (d->closing) {
        release_slot(j);
        job_free(j);
        return;
    }
    metric_inc(d->m_attempts);
    metric_observe(d->m_latency, (double)res->latency_ms / 1000.0);
    long st = res->status;
    if (!res->refused)
        breaker_record(d->breakers, j->url,
                       st > 0 && st < 500 && st != 429 && res->error[0] == '\0', time_mono_ms());
    char why[sizeof j->error];
    if (st > 0 && res->snippet[0] != '\0')
        snprintf(why, sizeof why, "HTTP %ld: %s", st, res->snippet);
    else if (st > 0)
        snprintf(why, sizeof why, "HTTP %ld", st);
    else
        snprintf(why, sizeof why, "%s", res->error);

    if (st >= 200 && st < 300) {
        decide_ack(j, R_DELIVERED, st, "");
    } else if (st == 403) {
        on_forbidden(j);
    } else if (st == 410) {
        on_gone(j);
    } else if ((st == 429 || st == 503) && res->retry_after_ms >= 0) {
        int64_t ra = res->retry_after_ms > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : res->retry_after_ms;
        decide_failure(j, st, why, scaled(d, ra));
    } else {
        decide_failure(j, st, why, 0);
    }
}

/* Header lines of one request. */
struct headers {
    char id[EID_MAX];
    char ts[48];
    char sig[40 + 2 * WEBHOOK_STD_SIG_LEN];
    const char *lines[8];
    size_t n;
};

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void job_try_send(struct job *j)
{
    struct dispatcher *d = j->d;
    struct partner *p = j->p;
    if (d->draining) {
        give_back(j, 0);
        return;
    }
    if (p->missing) {
        decide_dead(j, 0, "partner not found");
        return;
    }
    if (p->error[0] != '\0') {
        decide_failure(j, 0, p->error, 0);
        return;
    }
    if (j->etype < 0) {
        char why[128];
        snprintf(why, sizeof why, "unknown event type \"%.40s\"", j->type);
        decide_dead(j, 0, j->type[0] == '\0' ? "event data missing" : why);
        return;
    }
    if (j->payload == PL_MISSING) {
        decide_dead(j, 0, "event data missing (no payload)");
        return;
    }
    if (j->payload == PL_BAD) {
        decide_dead(j, 0,
                    "payload cannot be decrypted (corrupt, or sealed under a key this node does "
                    "not have)");
        return;
    }
    if (has_control(j->eid) || strlen(j->eid) >= EID_MAX) {
        decide_dead(j, 0, "malformed event id");
        return;
    }
    int u = event_type_url(j->etype);
    const char *url = p->url[u];
    if (url == NULL || url[0] == '\0') {
        decide_ack(j, R_SKIPPED, 0, "no webhook URL for this event type");
        return;
    }
    if (p->disabled[u] != NULL && p->disabled[u][0] != '\0') {
        char why[sizeof j->error];
        snprintf(why, sizeof why, "webhook URL disabled: %s", p->disabled[u]);
        decide_dead(j, 0, why);
        return;
    }
    if (p->sending >= p->concurrency) {
        wait_push(p, j); /* resumes in release_slot() */
        return;
    }

    int64_t ts = time_now_ms() / 1000;
    char bodysig[WEBHOOK_SIG_HEX_LEN + 1];
    struct buf body;
    buf_init(&body, j->plain_len + 256);
    int rc = webhook_body_signature(p->api_key, p->api_key_len, ts, j->sha1, bodysig);
    if (rc == 0)
        rc = webhook_body_build(j->plain, j->plain_len, ts, bodysig, &body);
    xfree(j->plain); /* the body holds it now */
    j->plain = NULL;
    if (rc < 0) {
        buf_free(&body);
        decide_dead(j, 0,
                    rc == -SIMAP_EINVAL ? "payload is not a JSON object" : "cannot sign the body");
        return;
    }
    struct headers h;
    char s1[WEBHOOK_STD_SIG_LEN], s2[WEBHOOK_STD_SIG_LEN];
    rc = webhook_std_sign(p->secret, p->secret_len, j->eid, ts, body.data, body.len, s1);
    int rotating = p->old_secret_len > 0 && p->old_until_ms > time_now_ms();
    if (rc == 0 && rotating)
        rc =
            webhook_std_sign(p->old_secret, p->old_secret_len, j->eid, ts, body.data, body.len, s2);
    if (rc < 0) {
        buf_free(&body);
        decide_failure(j, 0, "cannot sign the request", 0);
        return;
    }
    int64_t wait;
    if (!breaker_allow(d->breakers, url, time_mono_ms(), &wait)) {
        buf_free(&body);
        defer(j, wait);
        return;
    }
    snprintf(h.id, sizeof h.id, "webhook-id: %s", j->eid);
    snprintf(h.ts, sizeof h.ts, "webhook-timestamp: %lld", (long long)ts);
    snprintf(h.sig, sizeof h.sig, "webhook-signature: %s%s%s", s1, rotating ? " " : "",
             rotating ? s2 : "");
    h.n = 0;
    h.lines[h.n++] = "Content-Type: application/json";
    h.lines[h.n++] = "Accept: application/json";
    h.lines[h.n++] = "Expect:"; /* no 100-continue round trip for large bodies */
    h.lines[h.n++] = h.id;
    h.lines[h.n++] = h.ts;
    h.lines[h.n++] = h.sig;
    size_t len = body.len;
    char *data = buf_steal(&body);
    xfree(j->url);
    j->url = xstrdup(url);
    rc = deliver_post(d->http, url, h.lines, h.n, data, len, on_response, j);
    if (rc < 0) {
        breaker_record(d->breakers, url, 0, time_mono_ms());
        decide_failure(j, 0,
                       rc == -SIMAP_EINVAL ? "the URL is not http:// or https://"
                                           : "libcurl refused the request",
                       0);
        return;
    }
    j->sending = 1;
    p->sending++;
}

static void job_route(struct job *j);

/* A payload too long to come with the claim has been read. */
static void on_payload(redisReply *reply, int err, void *data)
{
    struct job *j = data;
    if (err < 0 || reply == NULL) {
        give_back(j, scaled(j->d, 1000)); /* Redis trouble: try again later */
        return;
    }
    if (reply->type == REDIS_REPLY_STRING)
        open_payload(j, reply->str);
    else
        j->payload = PL_MISSING;
    job_route(j);
}

/* Where a claimed job goes first. */
static void job_route(struct job *j)
{
    struct dispatcher *d = j->d;
    struct partner *p = j->p;
    j->counted = 1;
    j->logged = 1;
    if (d->draining) {
        give_back(j, 0);
        return;
    }
    if (j->payload == PL_FETCH) {
        if (queue_payload(d->q, &j->sh->keys, j->eid, on_payload, j) < 0)
            give_back(j, scaled(d, 1000));
        return;
    }
    if (!p->loaded) {
        wait_push(p, j);
        if (partners_load(d->partners, p) < 0) {
            while ((j = wait_pop(p)) != NULL)
                give_back(j, scaled(d, 1000));
        }
        return;
    }
    if (!p->loading && partners_is_stale(d->partners, p, time_mono_ms()))
        partners_load(d->partners, p); /* in the background; current settings serve meanwhile */
    job_try_send(j);
}

static void on_partner_loaded(struct partner *p, void *data)
{
    struct dispatcher *d = data;
    if (d->closing)
        return;
    if (!p->loaded) {
        /* The first read failed (Redis trouble): hand the events back. */
        struct job *j;
        while ((j = wait_pop(p)) != NULL)
            give_back(j, scaled(d, 1000));
        return;
    }
    if (p->concurrency < PARTNER_DEFAULT_CONCURRENCY)
        busy_update(d, p);
    /* Start as many waiting events as the cap allows; the rest wait for
     * slots. */
    while (p->wait_head != NULL &&
           (p->sending < p->concurrency || p->missing || p->error[0] != '\0' || d->draining))
        job_try_send(wait_pop(p));
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
        job_route(job_new(d, sh, &c->events[i]));
    /* A wake-up, sweep or freed slot that came while the claim was in flight
     * set wants again (pump() cleared it): keep it, or that signal is lost. */
    sh->wants = sh->wants || (c->more && c->nevents > 0);
    for (size_t i = 0; i < c->nskipped; i++) {
        struct partner *p = partners_get(d->partners, c->skipped[i]);
        /* Its slots may have freed while the claim was in flight, and then
         * no later release would wake this shard: claim again now. */
        if (p->held < p->concurrency)
            sh->wants = 1;
        else
            partner_block(d, p, sh);
    }
    pump(d);
}

/* Issues claims while there are free slots and shards that want one. */
static void pump(struct dispatcher *d)
{
    if (!d->redis_up || d->draining || d->closing)
        return;
    int free = d->max_active - d->active - d->reserved;
    /* Claim in batches: while many events are in flight, wait until a few
     * slots are free rather than claim one event per finished request. */
    if (free < CLAIM_MIN && d->active >= CLAIM_MIN)
        return;
    for (int i = 0; i < d->nshards && free > 0; i++) {
        struct shard *sh = &d->shards[(d->rr + i) % d->nshards];
        if (!sh->started || !sh->wants || sh->claiming)
            continue;
        int n = free < CLAIM_BATCH ? free : CLAIM_BATCH;
        /* Partners this dispatcher already keeps busy get their own count. */
        const char *pids[256];
        int frees[256];
        size_t np = 0;
        for (struct partner *p = d->busy; p != NULL && np < 256; p = p->busy_next) {
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
    if (!sh->started && d->redis_up) {
        sh->started = 1; /* expired leases first, then claims (DESIGN.md section 4) */
        sh->wants = 1;
    } else if (n > 0) {
        sh->wants = 1;
    }
    pump(d);
}

static void start_requeue(struct shard *sh)
{
    if (queue_requeue(sh->d->q, &sh->keys, MAINT_BATCH, on_requeued, sh) == 0)
        sh->requeuing = 1;
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
    pump(d);
}

static void on_stats(const struct queue_stats *st, int err, void *data)
{
    struct shard *sh = data;
    sh->counting = 0;
    if (err < 0 || st == NULL)
        return;
    metric_set(sh->m_depth[0], (double)st->ready);
    metric_set(sh->m_depth[1], (double)st->inflight);
    metric_set(sh->m_depth[2], (double)st->retry);
    metric_set(sh->m_depth[3], (double)st->dead);
    metric_set(sh->m_oldest, (double)st->oldest_ready_ms / 1000.0);
}

static void update_gauges(struct dispatcher *d)
{
    metric_set(d->m_inflight, d->active);
    for (int s = 0; s < BREAKER_NSTATES; s++)
        metric_set(d->m_circuits[s], breakers_count(d->breakers, (enum breaker_state)s));
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dispatcher *d = w->data;
    update_gauges(d);
    if (!d->redis_up || d->closing)
        return;
    if (d->draining) {
        check_drained(d);
        return;
    }
    int64_t now = time_mono_ms();
    int sweep = now >= d->next_sweep;
    if (sweep)
        d->next_sweep = now + SWEEP_MS;
    for (int k = 0; k < d->nshards; k++) {
        struct shard *sh = &d->shards[k];
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
    pump(d);
}

/* ---- Wake-ups ---- */

static void on_wake_shard(int k, void *data)
{
    struct dispatcher *d = data;
    if (k < 0 || k >= d->nshards)
        return;
    d->shards[k].wants = 1;
    pump(d);
}

static void on_wake_subscribed(void *data)
{
    struct dispatcher *d = data;
    d->next_sweep = 0; /* messages may have been missed: sweep every shard now */
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
        sh->started = 0; /* requeue expired leases again before claiming */
        /* Spread the periodic calls of the shards over their periods. */
        sh->next_promote = now + (int64_t)k * PROMOTE_SWEEP_MS / d->nshards;
        sh->next_stats = now + (int64_t)k * STATS_MS / d->nshards;
        if (!sh->requeuing)
            start_requeue(sh);
    }
    d->next_sweep = now + SWEEP_MS;
}

void dispatch_pause(struct dispatcher *d)
{
    d->redis_up = 0;
}

static void check_drained(struct dispatcher *d)
{
    if (!d->draining || d->closing || d->drained == NULL)
        return;
    if (d->njobs > 0 || deliver_active(d->http) > 0 || queue_pending(d->q) > 0)
        return;
    void (*done)(void *) = d->drained;
    d->drained = NULL;
    log_info("dispatcher drained");
    done(d->drained_data);
}

static void give_back_waiting(const char *pid, void *value, void *data)
{
    (void)pid;
    (void)data;
    struct partner *p = value;
    struct job *j;
    while ((j = wait_pop(p)) != NULL)
        give_back(j, 0);
}

void dispatch_drain(struct dispatcher *d, void (*done)(void *data), void *data)
{
    d->draining = 1;
    d->drained = done;
    d->drained_data = data;
    log_info("dispatcher draining requests=%d events=%d", deliver_active(d->http), d->njobs);
    partners_each(d->partners, give_back_waiting, d);
    check_drained(d);
}

void dispatch_describe(struct dispatcher *d, const char **argv, int *argc)
{
    snprintf(d->describe_shards, sizeof d->describe_shards, "%d", d->nshards);
    snprintf(d->describe_inflight, sizeof d->describe_inflight, "%d", d->active);
    argv[(*argc)++] = "load";
    argv[(*argc)++] = d->describe_inflight;
    argv[(*argc)++] = "capacity";
    argv[(*argc)++] = d->describe_shards;
}

static void register_metrics(struct dispatcher *d, struct metrics *m)
{
    for (int r = 0; r < R_COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "result=\"%s\"", results[r]);
        d->m_results[r] = metrics_counter(m, "superimap_webhook_deliveries_total",
                                          "Webhook attempts by outcome (retry: failed, will be "
                                          "retried; dead: moved to dead letters)",
                                          labels);
    }
    d->m_attempts = metrics_counter(m, "superimap_webhook_requests_total",
                                    "HTTP requests made to webhook receivers", NULL);
    d->m_latency = metrics_histogram(m, "superimap_webhook_request_duration_seconds",
                                     "Time from sending a webhook to its response or failure", NULL,
                                     metrics_latency_bounds, metrics_latency_nbounds);
    d->m_stale = metrics_counter(m, "superimap_webhook_stale_results_total",
                                 "Results refused because the event's lease had expired (it is "
                                 "delivered again)",
                                 NULL);
    d->m_lost = metrics_counter(m, "superimap_webhook_unrecorded_results_total",
                                "Results that could not be written to Redis (the event is "
                                "delivered again after its lease)",
                                NULL);
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
    d->breakers = breakers_new(BREAKER_FAILURES, scaled(d, BREAKER_OPEN_MS) + 1,
                               scaled(d, BREAKER_MAX_MS) + 1);
    d->nshards = cfg->shards;
    d->shards = xcalloc((size_t)d->nshards, sizeof *d->shards);
    for (int k = 0; k < d->nshards; k++) {
        d->shards[k].d = d;
        queue_shard_init(&d->shards[k].keys, k);
    }
    register_metrics(d, node_metrics(n));
    struct wake_opts wo = {
        .redis_url = cfg->redis_url,
        .redis_password = cfg->redis_password,
        .on_shard = on_wake_shard,
        .on_subscribed = on_wake_subscribed,
        .data = d,
    };
    d->wake = wake_new(loop, &wo);
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
    ev_timer_stop(d->loop, &d->tick);
    wake_free(d->wake);
    deliver_free(d->http);  /* in-flight requests call back now and free their jobs */
    queue_free(d->q);       /* pending Redis calls are orphaned ... */
    while (d->jobs != NULL) /* ... so the jobs waiting on them are freed here */
        job_free(d->jobs);
    partners_free(d->partners);
    breakers_free(d->breakers);
    crypto_keys_free(d->keys);
    xfree(d->shards);
    xfree(d);
}
