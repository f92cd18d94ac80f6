/*
 * Fault injection of superimap-fake-imapd (see faults.h). The generator is
 * splitmix64: tiny, seedable, and good enough to spread faults evenly.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/faults.h"

#include <string.h>

#include "core/buf.h"
#include "core/err.h"

static const char *const names[FAULT_COUNT] = {
    "none",     "bad",     "no",       "gibberish", "bye",      "drop",
    "halfopen", "noinbox", "uidshift", "trickle",   "authfail", "limit",
};

const char *faults_name(enum fault_kind k)
{
    return (unsigned)k < FAULT_COUNT ? names[k] : "none";
}

int faults_parse_list(const char *list, unsigned *mask)
{
    unsigned m = 0;
    const char *p = list != NULL ? list : "";
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int found = 0;
        if (len == 3 && strncmp(p, "all", 3) == 0) {
            m |= ((1u << FAULT_COUNT) - 1) & ~FAULT_BIT(FAULT_NONE);
            found = 1;
        } else if (len == 4 && strncmp(p, "none", 4) == 0) {
            found = 1;
        }
        for (int k = 1; k < FAULT_COUNT && !found; k++) {
            if (strlen(names[k]) == len && strncmp(p, names[k], len) == 0) {
                m |= FAULT_BIT(k);
                found = 1;
            }
        }
        if (!found)
            return -SIMAP_EINVAL;
        p += len + (comma != NULL);
    }
    *mask = m;
    return 0;
}

int faults_configure(struct faults *f, double rate, uint64_t seed, const char *list)
{
    unsigned mask;
    if (!(rate >= 0.0 && rate <= 1.0) || faults_parse_list(list, &mask) < 0)
        return -SIMAP_EINVAL;
    f->rate = rate;
    f->seed = seed;
    f->state = seed;
    f->enabled = mask;
    return 0;
}

static uint64_t next(struct faults *f)
{
    uint64_t z = (f->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

unsigned faults_pick(struct faults *f, unsigned n)
{
    return n > 0 ? (unsigned)(next(f) % n) : 0;
}

enum fault_kind faults_roll(struct faults *f, unsigned applicable)
{
    unsigned set = f->enabled & applicable;
    if (set == 0 || f->rate <= 0.0)
        return FAULT_NONE;
    double u = (double)(next(f) >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
    if (u >= f->rate)
        return FAULT_NONE;
    unsigned count = 0;
    for (int k = 1; k < FAULT_COUNT; k++)
        count += (set >> k) & 1u;
    unsigned pick = faults_pick(f, count);
    for (int k = 1; k < FAULT_COUNT; k++) {
        if (!((set >> k) & 1u))
            continue;
        if (pick-- == 0) {
            f->injected[k]++;
            return (enum fault_kind)k;
        }
    }
    return FAULT_NONE; /* not reached: pick < count */
}

void faults_describe(const struct faults *f, struct buf *out)
{
    buf_printf(out, "rate=%g seed=%llu list=", f->rate, (unsigned long long)f->seed);
    int any = 0;
    for (int k = 1; k < FAULT_COUNT; k++) {
        if (f->enabled & FAULT_BIT(k)) {
            buf_printf(out, "%s%s", any ? "," : "", names[k]);
            any = 1;
        }
    }
    if (!any)
        buf_puts(out, "none");
    for (int k = 1; k < FAULT_COUNT; k++)
        buf_printf(out, " %s=%llu", names[k], f->injected[k]);
}

unsigned long long faults_total(const struct faults *f)
{
    unsigned long long n = 0;
    for (int k = 1; k < FAULT_COUNT; k++)
        n += f->injected[k];
    return n;
}

void faults_reset_counters(struct faults *f)
{
    memset(f->injected, 0, sizeof f->injected);
}
