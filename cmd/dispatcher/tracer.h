/*
 * cmd/dispatcher/tracer: tracer mail, the synthetic proof that mail sent
 * now becomes a recorded event within seconds, per provider (README "Tracer
 * mail", docs/dispatcher.md "Tracer mail").
 *
 * Every SUPERIMAP_TRACER_INTERVAL_SEC a round: for each provider with an
 * smtp_host, one tracer-enabled, watched user of the shards this dispatcher
 * owns (tracer_pick.lua over si:{k}:tracer_users; shard ownership is what
 * spreads the senders over the fleet and gives each user one sender) gets
 * one mail to its own address, submitted with libcurl (core/deliver's
 * deliver_mail(): AUTH PLAIN with its login and password, or XOAUTH2 with
 * its access token, which the watcher keeps fresh), subject
 * "TRACER: <id>" and header X-Superimap-Tracer: <id>, id 20 random hex
 * digits as the original's. The record si:{k}:tracer:<id> is written
 * (tracer_sent.lua) before the submission starts; the watcher completes it
 * when the mail arrives (record_mail.lua: detected_at, latency_ms) and does
 * not announce it.
 *
 * A failed submission is classified (auth, connect, tls, rejected, timeout,
 * credentials, error), recorded and counted, never retried: the next round
 * sends a new tracer. A tracer submitted and not detected within the
 * deadline (SUPERIMAP_TRACER_DEADLINE_SEC, default twice the interval) is
 * marked missing_at and counted, by the dispatcher that sent it (one that
 * restarts in between forgets to count it; the admin API still shows it
 * missing from the record).
 *
 * Metrics: superimap_tracer_sent_total{provider,result},
 * superimap_tracer_missing_total{provider},
 * superimap_tracer_latency_seconds{provider,stage="submitted"} (the SMTP
 * transaction). The watcher exports superimap_tracer_detected_total and
 * the stage "detected" (sent to detected).
 *
 * Runs on the loop's thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_TRACER_H
#define CMD_DISPATCHER_TRACER_H

struct config;
struct crypto_keys;
struct ev_loop;
struct metrics;
struct rconn;
struct tracers;

struct tracer_opts {
    struct ev_loop *loop;
    struct rconn *redis;            /* borrowed: the node's connection */
    const struct crypto_keys *keys; /* borrowed: opens the users' secrets */
    struct metrics *metrics;        /* borrowed; NULL: none */
    const struct config *cfg;       /* interval, deadline, allow_private, ca_file */
    int nshards;
    int (*is_owned)(int k, void *data); /* 1 when shard k is this dispatcher's now */
    void *data;
};

/* Returns the sender, its first round one interval from now; NULL when
 * SUPERIMAP_TRACER_INTERVAL_SEC is 0 or libcurl cannot be set up (logged). */
struct tracers *tracer_new(const struct tracer_opts *o);

/* No more rounds (a graceful stop); submissions in flight finish. */
void tracer_stop(struct tracers *t);

/* Aborts submissions in flight (recorded as nothing: their records stay
 * "sending"), orphans pending Redis calls and frees t. Accepts NULL. */
void tracer_free(struct tracers *t);

#endif
