/*
 * core/sentinel: asks Redis Sentinels where the primary is, for
 * redis+sentinel:// addresses (core/redis_url.h).
 *
 * A sentinel is asked `SENTINEL get-master-addr-by-name <master>` (after
 * AUTH with the sentinels' password, when there is one); the sentinels are
 * tried in the order of the URL until one names the primary. The clients
 * then connect there and check `ROLE` (a failover may have turned it into a
 * replica since), and ask again whenever the link is lost, a command is
 * refused with READONLY (they reached a replica) or ROLE says replica.
 * Sentinel itself closes the clients of a demoted primary, so a switch is
 * seen as a lost link.
 *
 * Two forms: sentinel_resolve() blocks (core/rsync, the api's threads);
 * sentinel_ask_start() runs on a libev loop (core/rconn, the dispatcher's
 * wake-up channel).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_SENTINEL_H
#define CORE_SENTINEL_H

#include <stddef.h>

#include "core/redis_url.h"

struct ev_loop;
struct redisReply;

/* Asks a's sentinels, each within timeout_ms (connect and answer), and
 * writes the primary's host and port into a. Returns 0, or -SIMAP_ECONN
 * (no sentinel answered, or none knows the master) with the reasons in err. */
int sentinel_resolve(struct redis_addr *a, int timeout_ms, char *err, size_t errlen);

struct sentinel_ask;

/* The answer: rc 0 with the primary's host and port, or a negative code
 * with why. */
typedef void sentinel_cb(void *data, int rc, const char *host, int port, const char *why);

/* Starts asking a's sentinels on loop, each within timeout_s; cb runs once,
 * from the loop, never from inside this call. a must outlive the ask.
 * Returns NULL only when there is nothing to ask (no sentinels). */
struct sentinel_ask *sentinel_ask_start(struct ev_loop *loop, const struct redis_addr *a,
                                        double timeout_s, sentinel_cb *cb, void *data);

/* Stops an ask whose callback has not run (it never will); not from inside
 * that callback. */
void sentinel_ask_cancel(struct sentinel_ask *q);

struct sentinel_watch;

/* The sentinels announced that the master moved to host:port. */
typedef void sentinel_switch_cb(void *data, const char *host, int port);

/* Subscribes to +switch-master on each of a's sentinels (a link each, made
 * again a second after it is lost) and calls cb for each announcement of a
 * switch of a's master, so once per sentinel for one failover: a client
 * moves at the first, to the announced address, even when the old primary
 * hangs without closing its connections or still takes writes (a planned
 * failover demotes it seconds later, and its leader may announce the switch
 * last). a must outlive the watch. NULL when a has no sentinels. */
struct sentinel_watch *sentinel_watch_start(struct ev_loop *loop, const struct redis_addr *a,
                                            sentinel_switch_cb *cb, void *data);

/* Stops w (no callback afterwards). Accepts NULL. */
void sentinel_watch_stop(struct sentinel_watch *w);

/* 1 when r is ROLE's answer of a primary ("master"). */
int sentinel_role_is_primary(const struct redisReply *r);

/* 1 when an error reply's text says a replica answered: READONLY, or a
 * replica that lost its primary (MASTERDOWN). */
int sentinel_error_is_replica(const char *err);

#endif
