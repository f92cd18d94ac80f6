/*
 * cmd/api/states: users by state for the api's /metrics (see states.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/states.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/log.h"
#include "core/rconn.h"
#include "core/schema.h"

static void on_count(struct rconn *rc, struct redisReply *reply, int err, void *data)
{
    (void)rc;
    struct states *s = data;
    if (s->pending == 0)
        return; /* stopped */
    int ok = err == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4;
    for (size_t i = 0; ok && i < 4; i++)
        ok = reply->element[i]->type == REDIS_REPLY_INTEGER;
    if (ok) {
        s->users += reply->element[0]->integer;
        for (int i = 0; i < STATES_NOT_CONNECTED; i++)
            s->sum[i] += reply->element[i + 1]->integer;
    } else {
        s->failed = 1;
    }
    if (--s->pending > 0)
        return;
    if (s->failed) {
        log_debug("users by state: a shard did not answer; the gauges keep their last values");
        return;
    }
    long long rest = s->users;
    for (int i = 0; i < STATES_NOT_CONNECTED; i++)
        rest -= s->sum[i];
    s->sum[STATES_NOT_CONNECTED] = rest > 0 ? rest : 0;
    for (int i = 0; i < STATES_COUNT; i++)
        metric_set(s->m[i], (double)s->sum[i]);
}

static void on_rekey(struct rconn *rc, struct redisReply *reply, int err, void *data)
{
    (void)rc;
    struct states *s = data;
    if (s->m_old_key != NULL && err == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING)
        metric_set(s->m_old_key, strtod(reply->str, NULL));
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct states *s = t->data;
    if (s->pending > 0 || !node_is_ready(s->node))
        return; /* the last round is still out, or Redis is not there */
    rconn_command(node_redis(s->node), on_rekey, s, "HGET %s old", SCHEMA_KEY_REKEY);
    s->users = 0;
    memset(s->sum, 0, sizeof s->sum);
    s->failed = 0;
    s->pending = s->shards;
    for (uint32_t k = 0; k < s->shards; k++) {
        char count[SCHEMA_SHARD_KEY_MAX], users[SCHEMA_SHARD_KEY_MAX], reauth[SCHEMA_SHARD_KEY_MAX],
            prefix[SCHEMA_SHARD_KEY_MAX];
        schema_key_count(count, k);
        schema_key_shard_users(users, k);
        schema_key_reauth(reauth, k);
        schema_key_shard_prefix(prefix, k);
        const char *argv[] = {count, users, reauth, prefix};
        if (rconn_script(node_redis(s->node), on_count, s, "users_count", 3, 4, argv, NULL) < 0) {
            s->failed = 1;
            s->pending = k; /* the shards from k on will not answer */
            break;
        }
    }
}

void states_start(struct states *s, struct node *n, uint32_t shards)
{
    static const char *const labels[STATES_COUNT] = {
        [STATES_ARCHIVED] = "state=\"archived\"",
        [STATES_CONNECTED] = "state=\"connected\"",
        [STATES_REAUTH] = "state=\"reauth_required\"",
        [STATES_NOT_CONNECTED] = "state=\"not_connected\"",
    };
    s->node = n;
    s->shards = shards;
    for (int i = 0; i < STATES_COUNT; i++)
        s->m[i] = metrics_gauge(node_metrics(n), "superimap_users",
                                "Users by state, the fleet's (every api exports the same figures)",
                                labels[i]);
    s->m_old_key = metrics_gauge(node_metrics(n), "superimap_secrets_old_key",
                                 "Secrets under an old encryption key, as the last complete pass "
                                 "of superimap-api rekey left them (--count: found them)",
                                 NULL);
    ev_timer_init(&s->tick, on_tick, 1.0, STATES_PERIOD_S);
    s->tick.data = s;
    ev_timer_start(node_loop(n), &s->tick);
}

void states_stop(struct states *s)
{
    if (s->node != NULL)
        ev_timer_stop(node_loop(s->node), &s->tick);
    s->pending = 0;
    s->m_old_key = NULL; /* an answer still on its way finds the round abandoned */
}
