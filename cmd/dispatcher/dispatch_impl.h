/*
 * cmd/dispatcher/dispatch_impl.h: the scheduler's state, which dispatch.c
 * (claims, shard upkeep, lifecycle) and owner.c (which shards are ours)
 * share inside superimap-dispatcher. Not a public interface: main.c uses
 * dispatch.h, and job.c sees none of it (job.h).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_DISPATCH_IMPL_H
#define CMD_DISPATCHER_DISPATCH_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "cmd/dispatcher/breaker.h"
#include "cmd/dispatcher/queue.h"

struct config;
struct crypto_keys;
struct deliver;
struct fleet;
struct incarnation;
struct jobs;
struct metric;
struct node;
struct partners;
struct wake;

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

#endif
