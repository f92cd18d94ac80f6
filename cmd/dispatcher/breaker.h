/*
 * cmd/dispatcher/breaker: one circuit breaker per webhook URL, so a receiver
 * that is down costs one probe per period instead of a request per event,
 * and its events wait in the retry schedule instead of holding delivery
 * slots.
 *
 *            failures >= threshold                 period elapsed,
 *   CLOSED ------------------------> OPEN ------------------------> HALF_OPEN
 *     ^  ^                            ^  next request is the probe      |
 *     |  +----------------------------|---------------------------------+ probe ok
 *     |                               +---------------------------------+ probe failed:
 *     +-- any success resets failures                                      period doubles
 *
 * A failure is a network error, a timeout, a 5xx or a 429 (the receiver is
 * unwell); other answers, 4xx included, show it is up. While OPEN, and while
 * a HALF_OPEN probe is in flight, breaker_allow() refuses and says how long
 * to wait. The period starts at open_ms and doubles up to max_open_ms; a
 * success resets it.
 *
 * Times are monotonic ms passed by the caller. Not thread-safe: the loop
 * owns it. Every change of state is told to the hook set with
 * breakers_on_change() (the dispatcher publishes it to Redis for the
 * dashboard, core/schema.h si:circuit:*).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_BREAKER_H
#define CMD_DISPATCHER_BREAKER_H

#include <stdint.h>

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_HALF_OPEN, BREAKER_NSTATES };

struct breakers;

/* Returns a new set; threshold >= 1 consecutive failures open a breaker for
 * open_ms, doubling after each failed probe up to max_open_ms. */
struct breakers *breakers_new(int threshold, int64_t open_ms, int64_t max_open_ms);

/* A breaker's state as the change hook sees it. */
struct breaker_change {
    const char *url;
    enum breaker_state state;
    int failures;       /* consecutive failures counted */
    int64_t opened_at;  /* monotonic ms it last opened, 0 never */
    int64_t open_until; /* OPEN: monotonic ms the next probe may start */
    int64_t period;     /* the current open period, ms */
};

/* Sets fn, called with each change of a breaker's state (from inside
 * breaker_allow() or breaker_record(); c valid only during the call); NULL
 * removes it. */
void breakers_on_change(struct breakers *b, void (*fn)(const struct breaker_change *c, void *data),
                        void *data);

/* Frees the set. Accepts NULL. */
void breakers_free(struct breakers *b);

/* Returns 1 when a request to url may start now (when the breaker was due
 * for a probe, this request is the probe and the breaker turns HALF_OPEN),
 * or 0 with the ms until the next probe may start in *wait_ms. */
int breaker_allow(struct breakers *b, const char *url, int64_t now, int64_t *wait_ms);

/* Records the outcome of a request to url that breaker_allow() let through:
 * ok 1 for a healthy answer, 0 for a failure (see above). */
void breaker_record(struct breakers *b, const char *url, int ok, int64_t now);

/* The state of url's breaker (CLOSED for a URL never seen). */
enum breaker_state breaker_state(const struct breakers *b, const char *url);

/* Number of breakers in state s. */
int breakers_count(const struct breakers *b, enum breaker_state s);

/* "closed", "open", "half_open". */
const char *breaker_state_str(enum breaker_state s);

#endif
