/*
 * cmd/dispatcher/job: one claimed event, from routing to its recorded result
 * (see job.h; the delivery guarantees are in main.c's header).
 *
 *   claimed ──► waiting (payload being read, partner settings loading, or
 *      │         partner at its concurrency cap) ──┐
 *      ├───────────────────────────────────────────┴──► sending (curl) ──►
 *      │                                       deciding (403: archive; 410: disable URL)
 *      └──► decided locally (no URL, bad payload, circuit open) ──┐    │
 *                                                                 ▼    ▼
 *                                         committing (event_ack / event_retry /
 *                                         event_dead, then the log entry) ──► freed
 *
 * A job holds a delivery slot (js->active, its partner's held) from claim to
 * decision; the slot then goes to the next event at once while the result is
 * written. Every job is on js->jobs until freed, so jobs_free() can free
 * those whose Redis calls were orphaned.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/job.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/dispatcher/breaker.h"
#include "core/deliver.h"
#include "cmd/dispatcher/partners.h"
#include "cmd/dispatcher/policy.h"
#include "cmd/dispatcher/queue.h"
#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/schema.h"
#include "core/stat.h"
#include "core/time.h"
#include "proto/webhook.h"

enum commit_op { OP_ACK, OP_RETRY, OP_DEAD };

/* Outcome of an attempt, as the delivery log's result field names it. */
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

/* "delivered", "retry", ... indexed by enum result. */
static const char *const results[R_COUNT] = {"delivered", "retry", "dead",    "archived",
                                             "refused",   "gone",  "skipped", "deferred"};

struct job {
    struct jobs *js;
    const struct queue_shard *sh; /* the scheduler's, outlives the job */
    struct partner *p;
    struct job *next;                /* the partner's wait queue */
    struct job *all_prev, *all_next; /* js->jobs */
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
    int was_acked; /* an earlier try ran event_ack, but too few replicas had it */
    char error[400];
};

struct jobs {
    struct jobs_opts o;
    struct jobs_hooks h;
    int draining;
    int closing;
    int active; /* jobs holding a slot */
    int njobs;
    struct job *jobs;
    struct partner *busy; /* partners with held events or a small cap */
    struct metric *m_results[R_COUNT];
    struct metric *m_attempts, *m_latency, *m_stale, *m_lost;
    struct metric *m_queued, *m_delivered; /* stage latencies from the event's creation */
};

static void job_try_send(struct job *j);
static void job_route(struct job *j);

/* ms divided by SUPERIMAP_WEBHOOK_TIME_DIVISOR. */
static int64_t scaled(const struct jobs *js, int64_t ms)
{
    return ms / js->o.divisor;
}

/* ---- Partners: busy list, blocked shards ---- */

/* Keeps js->busy (partners with held events or a cap under the default). */
static void job_busy_update(struct jobs *js, struct partner *p)
{
    int want = p->held > 0 || p->concurrency < PARTNER_DEFAULT_CONCURRENCY;
    if (want == p->in_busy)
        return;
    if (want) {
        p->busy_prev = NULL;
        p->busy_next = js->busy;
        if (js->busy != NULL)
            js->busy->busy_prev = p;
        js->busy = p;
    } else {
        if (p->busy_prev != NULL)
            p->busy_prev->busy_next = p->busy_next;
        else
            js->busy = p->busy_next;
        if (p->busy_next != NULL)
            p->busy_next->busy_prev = p->busy_prev;
    }
    p->in_busy = want;
}

/* A claim on shard k skipped p for lack of slots: claim there again once p
 * frees one. */
void jobs_partner_block(struct jobs *js, struct partner *p, int k)
{
    if (p->blocked == NULL)
        p->blocked = xcalloc((size_t)js->o.nshards, 1);
    if (!p->blocked[k]) {
        p->blocked[k] = 1;
        p->nblocked++;
    }
}

static void partner_unblock(struct jobs *js, struct partner *p)
{
    if (p->nblocked == 0)
        return;
    for (int k = 0; k < js->o.nshards; k++) {
        if (p->blocked[k]) {
            p->blocked[k] = 0;
            js->h.on_shard_wanted(k, js->h.data);
        }
    }
    p->nblocked = 0;
}

/* ---- Jobs ---- */

/* Decrypts an event's payload envelope (AAD si:evt:<eid>) into j->plain. */
static void open_payload(struct job *j, const char *envelope)
{
    char aad[SCHEMA_KEY_MAX];
    schema_aad_event(aad, j->eid);
    xfree(j->plain);
    j->plain = NULL;
    j->payload = crypto_decrypt(j->js->o.keys, envelope, aad, &j->plain, &j->plain_len) == 0
                     ? PL_OK
                     : PL_BAD;
}

/* Seconds since j's event was created (Redis TIME at record_mail; this
 * host's clock now, so never below 0). */
static double since_created(const struct job *j)
{
    int64_t ms = time_now_ms() - j->created_at;
    return ms > 0 ? (double)ms / 1000.0 : 0.0;
}

/* A claimed event becomes a job: it takes a delivery slot (js->active, the
 * partner's held) and joins js->jobs. Copies what it keeps from e. */
static struct job *job_new(struct jobs *js, const struct queue_shard *sh,
                           const struct queue_event *e)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->js = js;
    j->sh = sh;
    j->p = partners_get(js->o.partners, e->pid);
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
    if (j->attempt == 1 && j->created_at > 0)
        metric_observe(js->m_queued, since_created(j));
    j->all_next = js->jobs;
    if (js->jobs != NULL)
        js->jobs->all_prev = j;
    js->jobs = j;
    js->njobs++;
    j->holds_slot = 1;
    js->active++;
    j->p->held++;
    job_busy_update(js, j->p);
    return j;
}

/* Unlinks and frees j (its Redis calls must be answered or orphaned). */
static void job_free(struct job *j)
{
    struct jobs *js = j->js;
    if (j->all_prev != NULL)
        j->all_prev->all_next = j->all_next;
    else
        js->jobs = j->all_next;
    if (j->all_next != NULL)
        j->all_next->all_prev = j->all_prev;
    js->njobs--;
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
        ((struct job *)p->wait_tail)->next = j;
    else
        p->wait_head = j;
    p->wait_tail = j;
}

/* The next job waiting on p, or NULL. */
static struct job *job_wait_pop(struct partner *p)
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

/* Starts as many of p's waiting events as its cap allows (all of them when
 * they will not be sent: partner gone or unreadable, or draining). A loop,
 * guarded against re-entry: each event decided here frees a slot, which
 * would otherwise recurse once per waiting event. */
static void resume_waiting(struct jobs *js, struct partner *p)
{
    if (p->resuming || js->closing || !p->loaded)
        return;
    p->resuming = 1;
    while (p->wait_head != NULL &&
           (p->sending < p->concurrency || p->missing || p->error[0] != '\0' || js->draining))
        job_try_send(job_wait_pop(p));
    p->resuming = 0;
}

/* The job's slot goes back: the partner's next waiting event may start, and
 * shards whose claims skipped the partner are claimed again. */
static void release_slot(struct job *j)
{
    if (!j->holds_slot)
        return;
    struct jobs *js = j->js;
    struct partner *p = j->p;
    j->holds_slot = 0;
    js->active--;
    p->held--;
    job_busy_update(js, p);
    partner_unblock(js, p);
    resume_waiting(js, p);
    js->h.on_slot_free(js->h.data);
}

/* ---- Results ---- */

static void commit(struct job *j);

static void on_committed(long long value, int err, void *data)
{
    struct job *j = data;
    struct jobs *js = j->js;
    if (err == -SIMAP_EREPLICAS)
        j->was_acked = 1;
    if ((err == -SIMAP_ECONN || err == -SIMAP_ETIMEDOUT || err == -SIMAP_EREPLICAS) &&
        ++j->tries < COMMIT_TRIES && !js->closing) {
        commit(j); /* the scripts are fenced: running one twice changes nothing */
        return;
    }
    if (err < 0) {
        metric_inc(js->m_lost);
        log_warn("cannot record a delivery result; the event will be delivered again after its "
                 "lease id=%s err=\"%s\"",
                 j->eid, err_str(err));
    } else if (value == 0 && j->was_acked) {
        log_debug("delivery result already recorded by an earlier try id=%s", j->eid);
    } else if (value == 0) {
        if (j->logged)
            metric_inc(js->m_stale);
        log_debug("stale claim; its lease had expired and another attempt owns the event id=%s "
                  "attempt=%d",
                  j->eid, j->attempt);
    } else if (j->op == OP_RETRY) {
        js->h.on_retry_due(j->sh->k, time_mono_ms() + j->delay_ms, js->h.data);
    }
    job_free(j);
    js->h.on_job_freed(js->h.data);
}

/* The chart counters of the minute (core/stat.h): a delivered attempt and
 * its request latency, or a failed one (retried or dead). Sent beside the
 * log entry, without waiting for its reply. */
static void count_attempt(const struct job *j)
{
    struct stat_call c;
    stat_call_init(&c, time_now_ms());
    if (j->result == R_DELIVERED) {
        stat_call_add(&c, STAT_DELIVERED, 1);
        stat_call_add(&c, stat_bucket_field(stat_bucket(j->latency_ms)), 1);
    } else if (j->result == R_RETRY || j->result == R_DEAD) {
        stat_call_add(&c, STAT_FAILED, 1);
    } else {
        return;
    }
    queue_stat(j->js->o.q, &c);
}

/* The delivery log entry of the attempt. Sent just before the state script
 * on the same connection, so whoever sees the event's new state finds the
 * entry too; it is written even when the claim turns out stale, as the
 * attempt did happen. */
static void log_attempt(struct job *j)
{
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
        .next_at = j->op == OP_RETRY ? time_now_ms() + j->delay_ms : 0,
    };
    queue_log(j->js->o.q, &e);
    count_attempt(j);
}

static void commit(struct job *j)
{
    struct jobs *js = j->js;
    const struct queue_shard *s = j->sh;
    if (j->logged && j->tries == 0)
        log_attempt(j);
    int rc = 0;
    switch (j->op) {
    case OP_ACK:
        rc = queue_ack(js->o.q, s, j->eid, j->attempt, KEEP_DELIVERED_MS, j->status, on_committed,
                       j);
        break;
    case OP_RETRY:
        rc = queue_retry(js->o.q, s, j->eid, j->attempt, j->delay_ms, j->status, j->error,
                         j->counted, on_committed, j);
        break;
    case OP_DEAD:
        rc = queue_dead(js->o.q, s, j->eid, j->attempt, j->status, j->error, DEAD_CAP, DEAD_KEEP_MS,
                        on_committed, j);
        break;
    }
    if (rc < 0) {
        metric_inc(js->m_lost);
        log_warn("cannot send a delivery result; the event will be delivered again after its "
                 "lease id=%s err=\"%s\"",
                 j->eid, err_str(rc));
        job_free(j);
        js->h.on_job_freed(js->h.data);
    }
}

/* Records the decision for j, frees its slot and writes it to Redis. */
static void decide(struct job *j, enum commit_op op, enum result r, long status, const char *error)
{
    struct jobs *js = j->js;
    j->op = op;
    j->result = r;
    j->status = status;
    snprintf(j->error, sizeof j->error, "%s", error ? error : "");
    if (j->logged)
        metric_inc(js->m_results[r]);
    if (r == R_DEAD)
        log_warn("event moved to dead letters id=%s pid=%s attempt=%d err=\"%s\"", j->eid,
                 j->p->pid, j->attempt, j->error);
    release_slot(j);
    if (js->closing) {
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
    return scaled(j->js, delay);
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
static void job_give_back(struct job *j, int64_t delay_ms)
{
    j->counted = 0;
    j->logged = 0;
    j->delay_ms = delay_ms;
    decide(j, OP_RETRY, R_RETRY, 0, "");
}

/* The URL's circuit is open: the event waits for the breaker's next probe
 * without spending an attempt (nothing was sent), for as long as
 * SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS from its creation; then it becomes a
 * dead letter (replayable), with the reason in the delivery log. */
static void defer(struct job *j, int64_t wait)
{
    int64_t hold = scaled(j->js, j->js->o.circuit_hold_ms);
    if (j->created_at > 0 && time_now_ms() - j->created_at > hold) {
        char why[200];
        snprintf(why, sizeof why,
                 "circuit open (the URL failed %d times in a row) for longer than "
                 "SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS allows; never sent",
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
    struct jobs *js = j->js;
    if (err == 0 && value == 1) {
        decide_ack(j, R_REFUSED, 403, "HTTP 403; tracer user kept");
        return;
    }
    int rc = queue_archive_user(js->o.q, j->sh->k, j->uid, "webhook answered 403", on_archived, j);
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
    int rc = queue_user_is_tracer(j->js->o.q, j->sh->k, j->uid, on_tracer, j);
    if (rc < 0)
        on_tracer(0, rc, j);
}

static void on_disabled(long long value, int err, void *data)
{
    struct job *j = data;
    struct partner *p = j->p;
    int u = partner_event_url(j->p, j->etype);
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
    int u = partner_event_url(j->p, j->etype);
    char url_field[64], flag[64], reason[600], iso[TIME_ISO_LEN];
    snprintf(url_field, sizeof url_field, "%s_webhook_url", partner_url_prefix(u));
    snprintf(flag, sizeof flag, "%s_webhook_disabled", partner_url_prefix(u));
    snprintf(reason, sizeof reason, "answered 410 Gone at %s (%s)",
             time_format_iso(time_now_ms(), iso), j->url);
    int rc =
        queue_disable_url(j->js->o.q, j->p->pid, url_field, j->url, flag, reason, on_disabled, j);
    if (rc < 0)
        on_disabled(0, rc, j);
}

/* ---- Sending ---- */

static void on_response(const struct deliver_result *res, void *data)
{
    struct job *j = data;
    struct jobs *js = j->js;
    struct partner *p = j->p;
    j->sending = 0;
    p->sending--;
    j->latency_ms = res->latency_ms;
    if (js->closing) {
        release_slot(j);
        job_free(j);
        return;
    }
    metric_inc(js->m_attempts);
    metric_observe(js->m_latency, (double)res->latency_ms / 1000.0);
    long st = res->status;
    if (!res->refused)
        breaker_record(js->o.breakers, j->url,
                       st > 0 && st < 500 && st != 429 && res->error[0] == '\0', time_mono_ms());
    char why[sizeof j->error];
    if (st > 0 && res->snippet[0] != '\0')
        snprintf(why, sizeof why, "HTTP %ld: %s", st, res->snippet);
    else if (st > 0)
        snprintf(why, sizeof why, "HTTP %ld", st);
    else
        snprintf(why, sizeof why, "%s", res->error);

    if (st >= 200 && st < 300) {
        if (j->created_at > 0)
            metric_observe(js->m_delivered, since_created(j));
        log_debug("webhook delivered id=%s pid=%s attempt=%d status=%ld latency_ms=%lld", j->eid,
                  p->pid, j->attempt, st, (long long)res->latency_ms);
        decide_ack(j, R_DELIVERED, st, "");
    } else if (st == 403) {
        on_forbidden(j);
    } else if (st == 410) {
        on_gone(j);
    } else if ((st == 429 || st == 503) && res->retry_after_ms >= 0) {
        int64_t ra = res->retry_after_ms > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : res->retry_after_ms;
        decide_failure(j, st, why, scaled(js, ra));
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
    struct jobs *js = j->js;
    struct partner *p = j->p;
    if (js->draining) {
        job_give_back(j, 0);
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
    int u = partner_event_url(j->p, j->etype);
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
    if (!breaker_allow(js->o.breakers, url, time_mono_ms(), &wait)) {
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
    /* The URL with its credentials goes to libcurl alone; logs, the breaker
     * and the 410 check use the stored one, credentials masked. */
    const char *send = p->send_url[u] != NULL ? p->send_url[u] : url;
    rc = deliver_post(js->o.http, send, h.lines, h.n, data, len, on_response, j);
    if (rc < 0) {
        breaker_record(js->o.breakers, url, 0, time_mono_ms());
        decide_failure(j, 0,
                       rc == -SIMAP_EINVAL ? "the URL is not http:// or https://"
                                           : "libcurl refused the request",
                       0);
        return;
    }
    j->sending = 1;
    p->sending++;
}


/* A payload too long to come with the claim has been read. */
static void on_payload(redisReply *reply, int err, void *data)
{
    struct job *j = data;
    if (err < 0 || reply == NULL) {
        job_give_back(j, scaled(j->js, 1000)); /* Redis trouble: try again later */
        return;
    }
    if (reply->type == REDIS_REPLY_STRING)
        open_payload(j, reply->str);
    else
        j->payload = PL_MISSING;
    job_route(j);
}

/* Where a claimed job goes first: payload, partner settings, then the
 * request or a local decision. */
static void job_route(struct job *j)
{
    struct jobs *js = j->js;
    struct partner *p = j->p;
    j->counted = 1;
    j->logged = 1;
    if (js->draining) {
        job_give_back(j, 0);
        return;
    }
    if (j->payload == PL_FETCH) {
        if (queue_payload(js->o.q, j->sh, j->eid, on_payload, j) < 0)
            job_give_back(j, scaled(js, 1000));
        return;
    }
    if (!p->loaded) {
        wait_push(p, j);
        if (partners_load(js->o.partners, p) < 0) {
            while ((j = job_wait_pop(p)) != NULL)
                job_give_back(j, scaled(js, 1000));
        }
        return;
    }
    if (!p->loading && partners_is_stale(js->o.partners, p, time_mono_ms()))
        partners_load(js->o.partners, p); /* in the background; current settings serve meanwhile */
    job_try_send(j);
}

void jobs_on_partner_loaded(struct jobs *js, struct partner *p)
{
    if (js->closing)
        return;
    if (!p->loaded) {
        /* The first read failed (Redis trouble): hand the events back. */
        struct job *j;
        while ((j = job_wait_pop(p)) != NULL)
            job_give_back(j, scaled(js, 1000));
        return;
    }
    if (p->concurrency < PARTNER_DEFAULT_CONCURRENCY)
        job_busy_update(js, p);
    resume_waiting(js, p);
}

/* ---- The jobs object ---- */

void jobs_claimed(struct jobs *js, const struct queue_shard *shard, const struct queue_event *e)
{
    job_route(job_new(js, shard, e));
}

static void give_back_waiting(const char *pid, void *value, void *data)
{
    (void)pid;
    (void)data;
    struct partner *p = value;
    struct job *j;
    while ((j = job_wait_pop(p)) != NULL)
        job_give_back(j, 0);
}

void jobs_drain(struct jobs *js)
{
    js->draining = 1;
    partners_each(js->o.partners, give_back_waiting, js);
}

int jobs_active(const struct jobs *js)
{
    return js->active;
}

int jobs_count(const struct jobs *js)
{
    return js->njobs;
}

struct partner *jobs_busy(const struct jobs *js)
{
    return js->busy;
}

struct jobs *jobs_new(const struct jobs_opts *opts, const struct jobs_hooks *hooks)
{
    struct jobs *js = xcalloc(1, sizeof *js);
    js->o = *opts;
    js->h = *hooks;
    struct metrics *m = opts->metrics;
    for (int r = 0; r < R_COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "result=\"%s\"", results[r]);
        js->m_results[r] = metrics_counter(m, "superimap_webhook_deliveries_total",
                                           "Webhook attempts by outcome (retry: failed, will be "
                                           "retried; dead: moved to dead letters)",
                                           labels);
    }
    js->m_attempts = metrics_counter(m, "superimap_webhook_requests_total",
                                     "HTTP requests made to webhook receivers", NULL);
    js->m_latency = metrics_histogram(m, "superimap_webhook_request_duration_seconds",
                                      "Time from sending a webhook to its response or failure",
                                      NULL, metrics_latency_bounds, metrics_latency_nbounds);
    js->m_queued = metrics_histogram(m, "superimap_webhook_queue_seconds",
                                     "From an event's creation in Redis to its first claim by a "
                                     "dispatcher",
                                     NULL, metrics_latency_bounds, metrics_latency_nbounds);
    js->m_delivered = metrics_histogram(m, "superimap_webhook_delivered_seconds",
                                        "From an event's creation in Redis to its receiver's 2xx "
                                        "answer (retries included)",
                                        NULL, metrics_latency_bounds, metrics_latency_nbounds);
    js->m_stale = metrics_counter(m, "superimap_webhook_stale_results_total",
                                  "Results refused because the event's lease had expired (it is "
                                  "delivered again)",
                                  NULL);
    js->m_lost = metrics_counter(m, "superimap_webhook_unrecorded_results_total",
                                 "Results that could not be written to Redis (the event is "
                                 "delivered again after its lease)",
                                 NULL);
    return js;
}

void jobs_close(struct jobs *js)
{
    js->closing = 1;
}

void jobs_free(struct jobs *js)
{
    if (js == NULL)
        return;
    while (js->jobs != NULL)
        job_free(js->jobs);
    xfree(js);
}
