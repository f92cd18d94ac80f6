/*
 * cmd/dispatcher/queue: the dispatcher's Redis client. Typed, asynchronous
 * wrappers of the delivery queue's scripts (scripts/lua/event_*.lua,
 * requeue_expired.lua, promote_due.lua, user_archive.lua) and of the few
 * plain commands the dispatcher sends (partner hash, delivery log, user
 * tracer flag), over the node's core/rconn connection.
 *
 * Every call is tracked until its reply: queue_free() orphans the calls still
 * pending, whose callbacks then never run (rconn answers them later, at its
 * own shutdown, into a no-op). So the dispatcher can be freed while Redis
 * still owes replies, without callbacks into freed memory.
 *
 * Callbacks run on the loop, exactly once per call that was accepted (a start
 * function that returned 0), never from inside the start function, unless
 * queue_free() came first. err is 0 or a -SIMAP_* code from core/rconn
 * (-SIMAP_EREPLY for an error reply or a reply of the wrong shape).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_QUEUE_H
#define CMD_DISPATCHER_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "core/schema.h"

struct queue;
struct rconn;
struct redisReply;

/* The keys of one shard, made once. */
struct queue_shard {
    int k;
    char prefix[SCHEMA_SHARD_KEY_MAX];         /* si:{k}: */
    char ready_partners[SCHEMA_SHARD_KEY_MAX]; /* si:{k}:ready_partners */
    char inflight[SCHEMA_SHARD_KEY_MAX];       /* si:{k}:inflight */
    char retry[SCHEMA_SHARD_KEY_MAX];          /* si:{k}:retry */
    char dead[SCHEMA_SHARD_KEY_MAX];           /* si:{k}:dead */
};

void queue_shard_init(struct queue_shard *s, int k);

/* Returns a new client over rc (borrowed; it must outlive every call). */
struct queue *queue_new(struct rconn *rc);

/* Orphans every pending call (see above) and frees q. Accepts NULL. */
void queue_free(struct queue *q);

/* Calls sent and not yet answered. */
int queue_pending(const struct queue *q);

/* A raw reply, valid only during the callback. */
typedef void queue_reply_cb(struct redisReply *reply, int err, void *data);

/* ---- Claim ---- */

/* One claimed event; strings are valid only during the callback. */
struct queue_event {
    const char *id, *pid, *type, *uid, *code, *tag, *sha1;
    const char *payload; /* encrypted envelope; "" when not returned inline */
    int64_t payload_len; /* bytes of the stored payload (0: none stored) */
    int attempt;         /* this claim's attempt number: the fencing token */
    int64_t created_at;  /* ms, 0 when unknown */
};

struct queue_claimed {
    int more;                   /* the shard still has ready events */
    size_t nskipped;            /* partners left out for lack of free slots */
    const char *const *skipped; /* their pids */
    size_t nevents;
    const struct queue_event *events;
};

typedef void queue_claim_cb(const struct queue_claimed *c, int err, void *data);

/*
 * event_claim on shard s: up to max events, leased for lease_ms; partners get
 * default_free slots unless listed in pids[i] / free[i] (npairs of them);
 * payloads up to inline_max bytes come with the events, longer ones are read
 * with queue_payload(). Returns 0 or a start error of rconn_script() (cb
 * never called).
 */
int queue_claim(struct queue *q, const struct queue_shard *s, int64_t lease_ms, int max,
                int default_free, int64_t inline_max, size_t npairs, const char *const *pids,
                const int *free, queue_claim_cb *cb, void *data);

/* HGET si:{k}:evt:<eid> payload (reply nil when gone). */
int queue_payload(struct queue *q, const struct queue_shard *s, const char *eid, queue_reply_cb *cb,
                  void *data);

/* ---- Results of an attempt (event_ack, event_retry, event_dead) ---- */

/* value: the script's integer (1 or the due time: done; 0: stale claim). */
typedef void queue_int_cb(long long value, int err, void *data);

/* event_ack, acknowledged by SUPERIMAP_REDIS_MIN_REPLICAS_ACK replicas
 * (rconn_script_acked()): err -SIMAP_EREPLICAS when too few had it in time
 * (the ack happened on the primary; sending it again is harmless). */
int queue_ack(struct queue *q, const struct queue_shard *s, const char *eid, int attempt,
              int64_t keep_ms, long status, queue_int_cb *cb, void *data);

/* counted 0 gives the attempt back (the event was never sent). */
int queue_retry(struct queue *q, const struct queue_shard *s, const char *eid, int attempt,
                int64_t delay_ms, long status, const char *error, int counted, queue_int_cb *cb,
                void *data);

int queue_dead(struct queue *q, const struct queue_shard *s, const char *eid, int attempt,
               long status, const char *error, int cap, int64_t keep_ms, queue_int_cb *cb,
               void *data);

/* ---- Shard maintenance ---- */

/* n: events moved; next_ms: ms until the next one is due (-1: none). */
typedef void queue_pair_cb(long long n, long long next_ms, int err, void *data);

int queue_requeue(struct queue *q, const struct queue_shard *s, int batch, queue_pair_cb *cb,
                  void *data);
int queue_promote(struct queue *q, const struct queue_shard *s, int batch, int64_t dead_keep_ms,
                  queue_pair_cb *cb, void *data);

struct queue_stats {
    long long ready, inflight, retry, dead;
    long long oldest_ready_ms; /* age of the oldest ready event, 0 when none */
};

typedef void queue_stats_cb(const struct queue_stats *st, int err, void *data);

int queue_stats(struct queue *q, const struct queue_shard *s, queue_stats_cb *cb, void *data);

/* ---- Partners, users, log ---- */

/* HGETALL si:partner:<pid>; reply valid only during the callback (an empty
 * array when the partner does not exist). */
int queue_partner(struct queue *q, const char *pid, queue_reply_cb *cb, void *data);

/* HGET si:{k}:user:<uid> enable_tracer: value 1 for a tracer user, 0
 * otherwise (absent user included). */
int queue_user_is_tracer(struct queue *q, int k, const char *uid, queue_int_cb *cb, void *data);

/* user_archive.lua for uid in shard k with reason; value as the script's
 * (1 archived now, 0 already, -1 no such user). */
int queue_archive_user(struct queue *q, int k, const char *uid, const char *reason,
                       queue_int_cb *cb, void *data);

/* event_gone.lua: disables the partner's url_field webhook (writing reason
 * into disabled_field) if it still holds url. value: 1 disabled, 0 the URL
 * changed meanwhile (nothing written). */
int queue_disable_url(struct queue *q, const char *pid, const char *url_field, const char *url,
                      const char *disabled_field, const char *reason, queue_int_cb *cb, void *data);

/* One delivery log entry (core/schema.h "Delivery log"); fire and forget. */
struct queue_log_entry {
    const char *pid, *id, *type, *uid, *tag, *code;
    int attempt;
    long status;
    const char *result;
    int64_t latency_ms;
    const char *error;
    int64_t next_at; /* ms, 0: none */
};

int queue_log(struct queue *q, const struct queue_log_entry *e);

/* stat_add.lua with c's arguments (core/stat.h); fire and forget. */
struct stat_call;
int queue_stat(struct queue *q, struct stat_call *c);

/* A circuit breaker's new state, published for the dashboard
 * (si:circuit:<sha256 hex of url> and its index si:circuits, core/schema.h);
 * times are wall-clock ms (0: none). Three commands, fire and forget: HSET,
 * PEXPIRE keep_ms once closed (PERSIST otherwise), ZADD. */
struct queue_circuit {
    const char *url; /* as stored: credentials masked */
    const char *state;
    int failures;
    int64_t opened_at, until, now;
    const char *node;
    int64_t keep_ms;
};

int queue_circuit(struct queue *q, const struct queue_circuit *c);

#endif
