/*
 * core/lease: acquire, release, fence and drain of leases under an
 * incarnation (see lease.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/lease.h"

#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/incarnation.h"
#include "core/schema.h"

enum lease_answer lease_answer_of(const struct redisReply *reply, int err)
{
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return LEASE_FAILED;
    switch (reply->integer) {
    case 1:
        return LEASE_ACQUIRED;
    case 0:
        return LEASE_BUSY;
    case -1:
        return LEASE_FENCED;
    default:
        return LEASE_FAILED;
    }
}

int lease_acquire(struct rconn *rc, const struct incarnation *inc, uint32_t k, const char *key,
                  rconn_cb *cb, void *privdata)
{
    char alive[SCHEMA_KEY_MAX];
    incarnation_alive_key(inc, k, alive, sizeof alive);
    const char *argv[] = {key, alive, incarnation_token(inc)};
    return rconn_script(rc, cb, privdata, "lease_acquire", 2, 3, argv, NULL);
}

int lease_release(struct rconn *rc, const struct incarnation *inc, const char *key, rconn_cb *cb,
                  void *privdata)
{
    const char *argv[] = {key, incarnation_token(inc)};
    return rconn_script(rc, cb, privdata, "lease_release", 1, 2, argv, NULL);
}

void lease_fence(struct incarnation *inc, uint64_t gen)
{
    incarnation_fence(inc, gen, "lease_acquire found our alive key gone");
}

/* ---- Drain ---- */

struct lease_drain {
    struct incarnation *inc;
    void (*retired)(void *data);
    void *data;
    int pending; /* releases not answered, plus one until lease_drain_finish() */
};

struct lease_drain *lease_drain_start(struct incarnation *inc, void (*retired)(void *data),
                                      void *data)
{
    struct lease_drain *dr = xcalloc(1, sizeof *dr);
    dr->inc = inc;
    dr->retired = retired;
    dr->data = data;
    dr->pending = 1; /* held until every release is queued */
    return dr;
}

/* One answer less; the last one retires the incarnation (not when the
 * process is stopping: then the drain is only freed). */
static void drain_put(struct lease_drain *dr, int retire)
{
    if (--dr->pending > 0)
        return;
    if (retire)
        incarnation_retire(dr->inc, dr->retired, dr->data);
    xfree(dr);
}

static void on_drain_released(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    drain_put(privdata, err != -SIMAP_ESHUTDOWN);
}

int lease_drain_release(struct lease_drain *dr, struct rconn *rc, const char *key)
{
    int r = lease_release(rc, dr->inc, key, on_drain_released, dr);
    if (r == 0)
        dr->pending++;
    return r;
}

void lease_drain_finish(struct lease_drain *dr)
{
    drain_put(dr, 1);
}
