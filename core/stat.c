/*
 * core/stat: per-minute chart counters (see stat.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/stat.h"

#include <stdio.h>
#include <string.h>

const int64_t stat_bounds_ms[STAT_NBOUNDS] = {5,    10,   25,   50,    100,   250,   500,
                                              1000, 2500, 5000, 10000, 20000, 30000, 60000};

static const char *const fields[STAT_NBUCKETS] = {
    "lat_5",     "lat_10",    "lat_25",    "lat_50",    "lat_100",
    "lat_250",   "lat_500",   "lat_1000",  "lat_2500",  "lat_5000",
    "lat_10000", "lat_20000", "lat_30000", "lat_60000", "lat_inf"};

int64_t stat_minute(int64_t now_ms)
{
    return now_ms / 60000;
}

int stat_bucket(int64_t ms)
{
    for (int i = 0; i < STAT_NBOUNDS; i++)
        if (ms <= stat_bounds_ms[i])
            return i;
    return STAT_NBOUNDS;
}

const char *stat_bucket_field(int i)
{
    return i >= 0 && i < STAT_NBUCKETS ? fields[i] : "lat_inf";
}

int stat_bucket_of_field(const char *name)
{
    for (int i = 0; i < STAT_NBUCKETS; i++)
        if (strcmp(name, fields[i]) == 0)
            return i;
    return -1;
}

double stat_quantile(const long long counts[STAT_NBUCKETS], double q)
{
    long long total = 0;
    for (int i = 0; i < STAT_NBUCKETS; i++)
        total += counts[i] > 0 ? counts[i] : 0;
    if (total == 0)
        return -1;
    double rank = q * (double)total, below = 0;
    for (int i = 0; i < STAT_NBOUNDS; i++) {
        double n = counts[i] > 0 ? (double)counts[i] : 0;
        if (n > 0 && below + n >= rank) {
            double lo = i == 0 ? 0 : (double)stat_bounds_ms[i - 1];
            double hi = (double)stat_bounds_ms[i];
            return lo + (hi - lo) * (rank - below) / n;
        }
        below += n;
    }
    return (double)stat_bounds_ms[STAT_NBOUNDS - 1];
}

void stat_call_init(struct stat_call *c, int64_t now_ms)
{
    schema_key_stat(c->key, stat_minute(now_ms)); /* a number: always fits */
    snprintf(c->ttl, sizeof c->ttl, "%d", STAT_TTL_SEC);
    c->argv[0] = c->key;
    c->argv[1] = c->ttl;
    c->argc = 2;
}

void stat_call_add(struct stat_call *c, const char *field, long long n)
{
    int i = (c->argc - 2) / 2;
    if (i >= STAT_CALL_MAX)
        return;
    snprintf(c->incr[i], sizeof c->incr[i], "%lld", n);
    c->argv[c->argc++] = field;
    c->argv[c->argc++] = c->incr[i];
}
