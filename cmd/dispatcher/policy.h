/*
 * cmd/dispatcher/policy: the numbers of the delivery policy that both the
 * scheduler (dispatch.c) and one event's life (job.c) use, so that neither
 * reads the other's. Times are before SUPERIMAP_WEBHOOK_TIME_DIVISOR; main.c's
 * header states the guarantees they make. Constants only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_POLICY_H
#define CMD_DISPATCHER_POLICY_H

#define KEEP_DELIVERED_MS (7 * 86400000LL) /* a delivered event's hash (no payload) */
#define DEAD_CAP          10000            /* dead letters per shard */
#define DEAD_KEEP_MS      (30 * 86400000LL)
#define RETRY_AFTER_MAX   (86400000LL) /* longest Retry-After honoured */
#define BREAKER_FAILURES  5
#define BREAKER_OPEN_MS   30000
#define BREAKER_MAX_MS    600000
#define CIRCUIT_KEEP_MS   3600000 /* si:circuit:* of a closed circuit (dashboard) */
#define COMMIT_TRIES      5       /* a result lost with the link is sent again */
#define EID_MAX           256     /* longest event id we send */

#endif
