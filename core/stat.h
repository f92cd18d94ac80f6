/*
 * core/stat: the per-minute counters behind the dashboard's charts
 * (si:stat:<unix minute>, core/schema.h): which fields there are, the
 * delivery latency buckets, and the arithmetic that turns a minute's bucket
 * counts into p50 and p99.
 *
 * Writers (the watcher's new mail, the dispatcher's attempts) add to the
 * current minute of their own clock with scripts/lua/stat_add.lua, fire
 * and forget, beside the command they already send; the api reads the
 * hashes back (GET /admin/api/stats). Pure functions; any thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_STAT_H
#define CORE_STAT_H

#include <stdint.h>

#include "core/schema.h"

/* How long a minute's hash is kept: 48 hours, the longest chart. */
#define STAT_TTL_SEC (48 * 3600)

/* Fields besides the latency buckets. */
#define STAT_MAIL      "mail"      /* new mail recorded (record_mail said recorded) */
#define STAT_DELIVERED "delivered" /* attempts answered 2xx */
#define STAT_FAILED    "failed"    /* attempts that failed: retried or moved to dead letters */

/* Upper bounds (ms, inclusive) of the delivery latency buckets, and one
 * more bucket above the last: lat_5, lat_10, ..., lat_60000, lat_inf. */
#define STAT_NBOUNDS  14
#define STAT_NBUCKETS (STAT_NBOUNDS + 1)
extern const int64_t stat_bounds_ms[STAT_NBOUNDS];

/* The unix minute of a wall-clock time in ms. */
int64_t stat_minute(int64_t now_ms);

/* The bucket of a latency: the first whose bound is >= ms, or STAT_NBOUNDS
 * (lat_inf). */
int stat_bucket(int64_t ms);

/* The field name of bucket i (0 <= i <= STAT_NBOUNDS): "lat_5" ... "lat_inf";
 * a static string. */
const char *stat_bucket_field(int i);

/* The bucket whose field name is name, or -1. */
int stat_bucket_of_field(const char *name);

/*
 * The q-quantile (0 < q <= 1) of the latencies counted in counts[], in ms,
 * as Prometheus' histogram_quantile() estimates it: the bucket holding the
 * rank q * total, linear within it (the first bucket starts at 0; a rank in
 * lat_inf gives the last bound). Returns -1 when the counts are all 0.
 */
double stat_quantile(const long long counts[STAT_NBUCKETS], double q);

/*
 * The arguments of one stat_add.lua call (key first, then ARGV), built in
 * place: stat_call_init() names the minute of now_ms, each stat_call_add()
 * one field's increment (at most STAT_CALL_MAX fields; more are ignored).
 * argv points into the struct: pass c.argv, c.argc with nkeys 1 to
 * rconn_script() or its kin while c lives.
 */
#define STAT_CALL_MAX 4

struct stat_call {
    int argc;
    const char *argv[2 + 2 * STAT_CALL_MAX];
    char key[SCHEMA_KEY_MAX];
    char ttl[16];
    char incr[STAT_CALL_MAX][24];
};

void stat_call_init(struct stat_call *c, int64_t now_ms);
void stat_call_add(struct stat_call *c, const char *field, long long n);

#endif
