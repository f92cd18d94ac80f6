/*
 * cmd/dispatcher/job: the claimed events of one dispatcher, each from routing
 * to its recorded result (payload, partner settings, signing, the request,
 * the decision, the queue script that records it), and the delivery slots
 * they hold.
 *
 * The scheduler (dispatch.c) makes the jobs object and hands it each claimed
 * event; what a job needs from the scheduler comes back only through the
 * hooks given to jobs_new() (claim again, shard wanted, retry due, job
 * freed). job.c never sees the scheduler's types.
 *
 * Runs on the loop's thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_JOB_H
#define CMD_DISPATCHER_JOB_H

#include <stdint.h>

struct breakers;
struct crypto_keys;
struct deliver;
struct metrics;
struct partner;
struct partners;
struct queue;
struct queue_event;
struct queue_shard;

struct jobs;

/* What the jobs use; borrowed, they must outlive the jobs object. */
struct jobs_opts {
    struct queue *q;
    struct partners *partners;
    struct deliver *http;
    struct breakers *breakers;
    const struct crypto_keys *keys;
    struct metrics *metrics; /* the delivery metrics are registered here */
    int nshards;
    int divisor;             /* SUPERIMAP_WEBHOOK_TIME_DIVISOR, >= 1 */
    int64_t circuit_hold_ms; /* SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS, before the divisor */
};

/* Callbacks into the scheduler, each called with data on the loop: from the
 * jobs' own Redis and libcurl callbacks, and from inside jobs_claimed(),
 * jobs_drain() and jobs_on_partner_loaded() when they decide an event at
 * once. */
struct jobs_hooks {
    /* A delivery slot was freed: claims may go on. */
    void (*on_slot_free)(void *data);
    /* A partner whose lack of slots made a claim of shard k skip it has a
     * slot free again: claim shard k again. */
    void (*on_shard_wanted)(int k, void *data);
    /* A retry of shard k was recorded, due at due_mono (monotonic ms). */
    void (*on_retry_due)(int k, int64_t due_mono, void *data);
    /* A job was freed (its result recorded or lost): a drain may be over. */
    void (*on_job_freed)(void *data);
    void *data;
};

/* Makes the jobs object and registers the delivery metrics
 * (superimap_webhook_deliveries_total, _requests_total,
 * _request_duration_seconds, _stale_results_total,
 * _unrecorded_results_total). Copies opts and hooks. */
struct jobs *jobs_new(const struct jobs_opts *opts, const struct jobs_hooks *hooks);

/* From here on nothing new starts and results are no longer written: call
 * it before the libcurl handle and the queue are freed (requests in flight
 * then finish their jobs at once). */
void jobs_close(struct jobs *js);

/* Frees the jobs left (those whose Redis calls were orphaned) and js.
 * Accepts NULL. */
void jobs_free(struct jobs *js);

/* A claimed event of shard (borrowed: it must outlive the job) becomes a
 * job: it takes a delivery slot and goes on its way. Copies what it keeps
 * from e. Every path ends in a recorded result and the job freed. */
void jobs_claimed(struct jobs *js, const struct queue_shard *shard, const struct queue_event *e);

/* Starts the drain: events waiting for a slot or their partner's settings
 * go back to the queue unsent, and so do events routed from now on. */
void jobs_drain(struct jobs *js);

/* A claim of shard k skipped p for lack of slots: on_shard_wanted(k) once p
 * frees one. */
void jobs_partner_block(struct jobs *js, struct partner *p, int k);

/* partners_new()'s callback: resumes the jobs that waited for p. */
void jobs_on_partner_loaded(struct jobs *js, struct partner *p);

/* Jobs holding a delivery slot. */
int jobs_active(const struct jobs *js);

/* Jobs not yet freed (slot held, or result being written). */
int jobs_count(const struct jobs *js);

/* The first of the partners with held events or a cap under the default
 * (the rest follow busy_next), or NULL. */
struct partner *jobs_busy(const struct jobs *js);

#endif
