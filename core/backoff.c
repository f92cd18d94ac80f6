/*
 * core/backoff: capped exponential backoff with full jitter.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/backoff.h"

#include "core/crypto.h"

void backoff_init(struct backoff *b, int64_t base_ms, int64_t cap_ms)
{
    b->base_ms = base_ms > 0 ? base_ms : 0;
    b->cap_ms = cap_ms > 0 ? cap_ms : 0;
    b->attempt = 0;
}

void backoff_reset(struct backoff *b)
{
    b->attempt = 0;
}

int64_t backoff_ceiling(const struct backoff *b)
{
    int64_t base = b->base_ms, cap = b->cap_ms;
    if (base == 0 || base >= cap)
        return base < cap ? base : cap;
    /* 1 <= base < cap <= INT64_MAX, so base << attempt is safe while it stays at
     * or below cap: test against cap >> attempt instead of shifting base. */
    if (b->attempt >= 63 || base > (cap >> b->attempt))
        return cap;
    return base << b->attempt;
}

int64_t backoff_next(struct backoff *b, uint64_t random)
{
    uint64_t ceiling = (uint64_t)backoff_ceiling(b);
    if (b->attempt < UINT32_MAX)
        b->attempt++;
    /* ceiling <= INT64_MAX, so ceiling + 1 cannot wrap. */
    return (int64_t)(random % (ceiling + 1));
}

int64_t backoff_next_rand(struct backoff *b)
{
    uint64_t r;
    crypto_random(&r, sizeof(r));
    return backoff_next(b, r);
}
