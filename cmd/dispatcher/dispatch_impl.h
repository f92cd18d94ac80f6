/*
 * cmd/dispatcher/dispatch_impl.h: what dispatch.c (claims, shard upkeep,
 * lifecycle) and job.c (one claimed event, from routing to its recorded
 * result) share inside superimap-dispatcher. Not a public interface: the
 * binary's other files use dispatch.h.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_DISPATCH_IMPL_H
#define CMD_DISPATCHER_DISPATCH_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "cmd/dispatcher/breaker.h"
#include "cmd/dispatcher/policy.h"
#include "cmd/dispatcher/queue.h"

struct config;
struct crypto_keys;
struct deliver;
struct fleet;
struct incarnation;
struct metric;
struct node;
struct partner;
struct partners;
struct wake;

/* ---- Tunables of the scheduler (times before SUPERIMAP_WEBHOOK_TIME_DIVISOR;
 * the delivery policy is policy.h) ---- */

#define CLAIM_BATCH      64    /* most events one claim takes */
#define CLAIM_MIN        16    /* fewest free slots worth a claim when busy */
#define SWEEP_MS         1000  /* every shard is claimed at least this often */
#define PROMOTE_SWEEP_MS 1000  /* and its due retries promoted */
#define REQUEUE_SWEEP_MS 5000  /* and its expired leases requeued */
#define STATS_MS         5000  /* queue depth metrics */
#define MAINT_BATCH      500   /* events per promote / requeue call */
#define PARTNER_TTL_MS   10000 /* partner settings refresh */
#define INLINE_PAYLOAD   16384 /* longer payloads are read outside the claim script */

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

/* "delivered", "retry", ... indexed by enum result (job.c). */
extern const char *const dispatch_results[R_COUNT];

struct shard {
    struct dispatcher *d;
    struct queue_shard keys;
    unsigned started : 1;  /* expired leases requeued since Redis became ready */
    unsigned wants : 1;    /* a claim is due (wake-up, sweep, more ready) */
    unsigned claiming : 1; /* a claim is in flight */
    unsigned requeuing : 1;
    unsigned promoting : 1;
    unsigned counting : 1;  /* stats in flight */
    unsigned placed : 1;    /* placement gives it to this dispatcher (owner.c) */
    unsigned owned : 1;     /* its si:{k}:owner lease is ours: claims allowed */
    unsigned acquiring : 1; /* lease_acquire in flight */
    unsigned releasing : 1; /* placed elsewhere: lease_release once its calls are answered */
    unsigned epoch;         /* bumps when the shard becomes owned */
    unsigned requeue_epoch; /* epoch the requeue in flight was sent in */
    int64_t next_acquire;   /* mono ms: a held lease is asked for again */
    int claim_n;            /* slots reserved by the claim in flight */
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

    /* Shard ownership (owner.c). */
    struct fleet *fleet;
    struct incarnation *inc;
    char (*unit_ids)[12]; /* "0".."N-1" */
    const char **units;   /* pointers into unit_ids */
    int nowned;
    int nplaced;          /* shards the last placement gave us */
    int place_due;        /* placement postponed (our beat not seen yet) */
    int64_t placed_at;    /* mono ms */
    int64_t refreshed_at; /* mono ms of the last re-read asked for (our beat unseen) */
    int64_t last_tick;    /* mono ms of the last tick: a long gap means a frozen loop */
    int releases_pending; /* drain */
    int owner_released;   /* drain: leases released, alive keys deleted */
    void (*owner_done)(void *data);
    void *owner_done_data;
    struct metric *m_owned, *m_acquired, *m_released, *m_fenced, *m_shards_lost;

    char describe_capacity[16], describe_inflight[16], describe_owned[16]; /* si:node:<id> */
};

/* ---- dispatch.c, for job.c ---- */

/* Issues claims while there are free slots and shards that want one. */
void dispatch_pump(struct dispatcher *d);

/* Calls the drain's done callback once nothing is left. */
void dispatch_check_drained(struct dispatcher *d);

/* ms divided by SUPERIMAP_WEBHOOK_TIME_DIVISOR. */
int64_t dispatch_scaled(const struct dispatcher *d, int64_t ms);

/* ---- job.c, for dispatch.c ---- */

/* A claimed event becomes a job: it takes a delivery slot (d->active, the
 * partner's held) and joins d->jobs. Copies what it keeps from e. */
struct job *job_new(struct dispatcher *d, struct shard *sh, const struct queue_event *e);

/* Sends the job on its way: payload, partner settings, then the request or a
 * local decision. Every path ends in a recorded result and job_free(). */
void job_route(struct job *j);

/* Hands the event back to the queue without spending an attempt. */
void job_give_back(struct job *j, int64_t delay_ms);

/* Unlinks and frees j (its Redis calls must be answered or orphaned). */
void job_free(struct job *j);

/* The next job waiting on p, or NULL. */
struct job *job_wait_pop(struct partner *p);

/* partners_new()'s callback: resumes the jobs that waited for p. */
void job_on_partner_loaded(struct partner *p, void *data);

/* A claim skipped p for lack of slots in shard sh: claim there again once p
 * frees one. */
void job_partner_block(struct dispatcher *d, struct partner *p, struct shard *sh);

/* Keeps d->busy (partners with held events or a cap under the default). */
void job_busy_update(struct dispatcher *d, struct partner *p);

#endif
