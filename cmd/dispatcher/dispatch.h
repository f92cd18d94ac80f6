/*
 * cmd/dispatcher/dispatch: the dispatcher's scheduler. It claims events from
 * the shards it owns (owner.c; round robin over shards, and within a shard
 * over partners), turns each into a signed POST, and records the outcome with
 * the queue scripts: ack, retry on the partner's schedule, dead letter; it promotes due
 * retries, requeues expired leases and publishes queue metrics.
 *
 * Lifecycle, driven by core/node's hooks:
 *
 *   dispatch_new ──► dispatch_resume (Redis ready: requeue expired leases of
 *        each shard, then claim) ◄──► dispatch_pause (Redis lost)
 *                 ──► dispatch_drain (stop claiming, give unsent events back,
 *                     finish requests in flight, record their results)
 *                 ──► dispatch_free
 *
 * Runs on the loop's thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_DISPATCH_H
#define CMD_DISPATCHER_DISPATCH_H

struct dispatcher;
struct ev_loop;
struct node;

/* Makes the dispatcher of node n on loop (config, metrics and Redis from the
 * node). Returns NULL (logged) when the encryption key or libcurl cannot be
 * set up. */
struct dispatcher *dispatch_new(struct ev_loop *loop, struct node *n);

/* Frees everything: requests in flight are aborted (their events come back
 * after their lease), pending Redis calls are orphaned. Accepts NULL. */
void dispatch_free(struct dispatcher *d);

/* Redis is usable: (re)start claiming, each shard after its expired leases
 * are requeued. */
void dispatch_resume(struct dispatcher *d);

/* Redis is lost: stop issuing claims and maintenance until resumed. */
void dispatch_pause(struct dispatcher *d);

/* Starts the graceful stop; done(data) runs once, from the loop, when no
 * request, event or Redis call is left. */
void dispatch_drain(struct dispatcher *d, void (*done)(void *data), void *data);

/* Field/value pairs for si:node:<id> (see node_hooks.describe). */
void dispatch_describe(struct dispatcher *d, const char **argv, int *argc);

#endif
