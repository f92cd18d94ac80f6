/*
 * cmd/api/states: users by state for the api's /metrics.
 *
 * superimap_users{state}: every user in exactly one of "connected" (live
 * with credentials: the watchers' users sets), "not_connected" (never
 * connected, or disconnected), "reauth_required" (its grant died) and
 * "archived". Every STATES_PERIOD_S the api runs users_count.lua on each
 * shard from the node's loop (never from a scrape) and sets the gauges once
 * every shard has answered. The work is bounded by the shards and the users
 * whose grant died (each shard's si:{k}:reauth set), not by the number of
 * users: the totals are counters the user scripts keep in si:{k}:count. The
 * figures are the fleet's: every api exports the same ones (aggregate with
 * max, not sum). What the watchers are doing with connected users is
 * theirs (superimap_watcher_sessions_by_state).
 *
 * superimap_secrets_old_key: read in the same round from si:rekey's `old`,
 * which superimap-api rekey writes at the end of each complete pass
 * (cmd/api/rekey.c); absent (0) before the first.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_STATES_H
#define CMD_API_STATES_H

#include <stdint.h>

#include <ev.h>

#include "core/metrics.h"
#include "core/node.h"

#define STATES_PERIOD_S 5.0

/* The states, in the order of users_count.lua's answer after its first
 * element (all users). */
enum states_state {
    STATES_ARCHIVED,
    STATES_CONNECTED,
    STATES_REAUTH,
    STATES_NOT_CONNECTED, /* all users minus the others */
    STATES_COUNT
};

struct states {
    struct node *node;
    uint32_t shards;
    ev_timer tick;
    uint32_t pending;               /* shards not yet answered this round */
    int failed;                     /* a shard answered with an error this round */
    long long users;                /* this round's sum of every user */
    long long sum[STATES_COUNT];    /* this round's sums */
    struct metric *m[STATES_COUNT]; /* superimap_users{state} */
    struct metric *m_old_key;       /* superimap_secrets_old_key, from si:rekey */
};

/* Registers the gauges and starts the timer on the node's loop. */
void states_start(struct states *s, struct node *n, uint32_t shards);

/* Stops the timer; answers still pending find the round abandoned. */
void states_stop(struct states *s);

#endif
