/*
 * cmd/api/states: users by state for the api's /metrics.
 *
 * superimap_users{state="reauth_required"}: every STATES_PERIOD_S the api
 * runs reauth_count.lua on each shard from the node's loop (never from a
 * scrape) and sets the gauge once every shard has answered. The work is
 * bounded by the users whose grant died (each shard's si:{k}:reauth set),
 * not by the number of users. The figure is the fleet's: every api exports
 * the same one (aggregate with max, not sum). The states of watched users
 * are the watchers' (superimap_watcher_sessions_by_state).
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

struct states {
    struct node *node;
    uint32_t shards;
    ev_timer tick;
    uint32_t pending; /* shards not yet answered this round */
    int failed;       /* a shard answered with an error this round */
    long long reauth; /* this round's sum */
    struct metric *m_reauth;
    struct metric *m_old_key; /* superimap_secrets_old_key, from si:rekey */
};

/* Registers the gauge and starts the timer on the node's loop. */
void states_start(struct states *s, struct node *n, uint32_t shards);

/* Stops the timer; answers still pending find the round abandoned. */
void states_stop(struct states *s);

#endif
