/*
 * core/backoff: capped exponential backoff with full jitter, as described in
 * the AWS Architecture Blog post "Exponential Backoff And Jitter" (2015):
 *
 *   delay(attempt) = random in [0, min(cap, base * 2^attempt)]
 *
 * Used for Redis reconnects, IMAP session retries (1 s to 5 min) and webhook
 * redelivery. Full jitter spreads a herd of clients that failed together
 * (a Redis restart, a provider outage) over the whole window.
 *
 * A struct backoff is plain data owned by one retry loop; it is not shared
 * between threads. The randomness is an argument, so tests are exact.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_BACKOFF_H
#define CORE_BACKOFF_H

#include <stdint.h>

/* Visible so it can be embedded; change it only through backoff_*(). */
struct backoff {
    int64_t base_ms;  /* ceiling of the first delay; >= 0 */
    int64_t cap_ms;   /* no delay is ever longer; >= 0 */
    uint32_t attempt; /* delays handed out since init or reset; saturates */
};

/* Starts at attempt 0. Negative values are taken as 0. */
void backoff_init(struct backoff *b, int64_t base_ms, int64_t cap_ms);

/* Returns to attempt 0 (after a healthy session or a successful delivery). */
void backoff_reset(struct backoff *b);

/* Returns min(cap, base * 2^attempt) for the current attempt, without
 * overflow for any attempt. */
int64_t backoff_ceiling(const struct backoff *b);

/*
 * Returns the delay before the next try, in [0, backoff_ceiling(b)] inclusive,
 * taken from random (uniform in 64 bits; the modulo bias is below 2^-40 for
 * any ceiling under 2^24 ms, i.e. 4.6 hours), and counts the attempt.
 */
int64_t backoff_next(struct backoff *b, uint64_t random);

/* backoff_next() with 64 bits from crypto_random(). */
int64_t backoff_next_rand(struct backoff *b);

#endif
