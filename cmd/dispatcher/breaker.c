/*
 * cmd/dispatcher/breaker: circuit breakers per URL (see breaker.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/breaker.h"

#include "core/err.h"
#include "core/strmap.h"

struct breaker {
    enum breaker_state state;
    int failures;       /* consecutive, while CLOSED */
    int64_t period;     /* current open period, ms */
    int64_t open_until; /* OPEN: when the next probe may start */
    int64_t opened_at;  /* when it last opened */
};

struct breakers {
    struct strmap *map;
    int threshold;
    int64_t open_ms, max_open_ms;
    int count[BREAKER_NSTATES];
    void (*on_change)(const struct breaker_change *c, void *data);
    void *data;
};

struct breakers *breakers_new(int threshold, int64_t open_ms, int64_t max_open_ms)
{
    struct breakers *b = xcalloc(1, sizeof *b);
    b->map = strmap_new();
    b->threshold = threshold < 1 ? 1 : threshold;
    b->open_ms = open_ms < 1 ? 1 : open_ms;
    b->max_open_ms = max_open_ms < b->open_ms ? b->open_ms : max_open_ms;
    return b;
}

void breakers_on_change(struct breakers *b, void (*fn)(const struct breaker_change *c, void *data),
                        void *data)
{
    b->on_change = fn;
    b->data = data;
}

void breakers_free(struct breakers *b)
{
    if (b == NULL)
        return;
    strmap_free(b->map, xfree);
    xfree(b);
}

static void set_state(struct breakers *b, const char *url, struct breaker *k, enum breaker_state s)
{
    b->count[k->state]--;
    b->count[s]++;
    k->state = s;
    if (b->on_change != NULL) {
        struct breaker_change c = {url, s, k->failures, k->opened_at, k->open_until, k->period};
        b->on_change(&c, b->data);
    }
}

static struct breaker *get(struct breakers *b, const char *url)
{
    struct breaker *k = strmap_get(b->map, url);
    if (k == NULL) {
        k = xcalloc(1, sizeof *k);
        k->period = b->open_ms;
        strmap_put(b->map, url, k);
        b->count[BREAKER_CLOSED]++;
    }
    return k;
}

static void open_breaker(struct breakers *b, const char *url, struct breaker *k, int64_t now)
{
    k->opened_at = now;
    k->open_until = now + k->period;
    set_state(b, url, k, BREAKER_OPEN);
}

int breaker_allow(struct breakers *b, const char *url, int64_t now, int64_t *wait_ms)
{
    struct breaker *k = strmap_get(b->map, url);
    if (k == NULL || k->state == BREAKER_CLOSED)
        return 1;
    if (k->state == BREAKER_OPEN && now >= k->open_until) {
        set_state(b, url, k, BREAKER_HALF_OPEN); /* this request is the probe */
        return 1;
    }
    /* OPEN, or HALF_OPEN with the probe in flight: check back after a period. */
    int64_t wait = k->state == BREAKER_OPEN ? k->open_until - now : k->period;
    *wait_ms = wait > 0 ? wait : 1;
    return 0;
}

void breaker_record(struct breakers *b, const char *url, int ok, int64_t now)
{
    struct breaker *k = get(b, url);
    if (ok) {
        k->failures = 0;
        k->period = b->open_ms;
        if (k->state != BREAKER_CLOSED)
            set_state(b, url, k, BREAKER_CLOSED);
        return;
    }
    switch (k->state) {
    case BREAKER_CLOSED:
        if (++k->failures >= b->threshold)
            open_breaker(b, url, k, now);
        break;
    case BREAKER_HALF_OPEN:
        k->period = k->period * 2 > b->max_open_ms ? b->max_open_ms : k->period * 2;
        open_breaker(b, url, k, now);
        break;
    case BREAKER_OPEN: /* a request that started before it opened */
    case BREAKER_NSTATES:
        break;
    }
}

enum breaker_state breaker_state(const struct breakers *b, const char *url)
{
    const struct breaker *k = strmap_get(b->map, url);
    return k == NULL ? BREAKER_CLOSED : k->state;
}

int breakers_count(const struct breakers *b, enum breaker_state s)
{
    return s < BREAKER_NSTATES ? b->count[s] : 0;
}

const char *breaker_state_str(enum breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    case BREAKER_NSTATES:
        break;
    }
    return "?";
}
