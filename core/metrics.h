/*
 * core/metrics: Prometheus metrics, rendered in the text exposition format
 * 0.0.4 for each node's /metrics.
 *
 * Threads: series are registered (normally at start-up) under a mutex and
 * never removed until metrics_free(); updates (metric_inc/add/set/observe)
 * take no lock — C11 atomics, relaxed order — so civetweb workers and a
 * libev loop may update the same series at once. Values are doubles kept as
 * their bits in a 64-bit atomic and updated by compare-and-swap; counter
 * increments by whole units use an integer fetch-add instead.
 *
 * Names and labels come from our code, so a malformed one is a programmer
 * error: registration prints it and aborts (in every build, NDEBUG or not).
 *
 *   struct metric *ok = metrics_counter(m, "superimap_webhooks_total",
 *                                       "Webhook deliveries by result.", "result=\"ok\"");
 *   metric_inc(ok);
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_METRICS_H
#define CORE_METRICS_H

#include <stddef.h>

struct buf;

/* A registry: families of series, in registration order. Opaque. */
struct metrics;

/* One series: a counter, gauge, callback gauge or histogram with one label
 * set. Owned by its registry; valid until metrics_free(). Opaque. */
struct metric;

/* Latency buckets in seconds, 0.0005 .. 10, for metrics_histogram(). */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

/* Buckets of superimap_tracer_latency_seconds, 0.05 .. 600 s: the watcher's
 * stage "detected" and the dispatcher's "submitted" share them. */
extern const double metrics_tracer_bounds[];
extern const size_t metrics_tracer_nbounds;

/* Returns a new, empty registry (never NULL); release with metrics_free(). */
struct metrics *metrics_new(void);

/* Releases m and every series in it. Accepts NULL. No thread may use m or
 * its series any more. */
void metrics_free(struct metrics *m);

/*
 * Registration. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; help is free text
 * (escaped when rendered); labels is NULL/"" or already formatted as
 * `a="x",b="y"` (names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__", values
 * escaping only \\, \" and \n). All are copied.
 *
 * Series sharing a name form one family under one # HELP / # TYPE (the help
 * and type of the first); registering an existing name + labels again returns
 * the same series, so code may register lazily (say per HTTP status). A name
 * reused with another type, or a histogram with other bounds, aborts.
 *
 * Each returns the series, or NULL when m is NULL (metrics disabled); every
 * metric_*() call accepts NULL and does nothing. Safe from any thread.
 */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
                               const char *labels);
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
                             const char *labels);

/* A gauge whose value is fn(data), called at each render on the rendering
 * thread with the registry locked: fn must be quick, thread-safe as to what
 * it reads, and must not call metrics_*() on the same registry. data is
 * borrowed and must outlive m. */
struct metric *metrics_gauge_fn(struct metrics *m, const char *name, const char *help,
                                const char *labels, double (*fn)(void *data), void *data);

/* A histogram with upper bounds bounds[0..nbounds) (copied; finite, strictly
 * increasing, nbounds >= 1; +Inf is implicit). labels must not use "le". */
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                 const char *labels, const double *bounds, size_t nbounds);

/* Adds v to a counter or gauge. On a counter, negative or NaN v is ignored
 * (counters never go down). Lock-free. */
void metric_add(struct metric *s, double v);

/* metric_add(s, 1). Lock-free; wait-free on counters. */
void metric_inc(struct metric *s);

/* Sets a gauge (not a counter, histogram or callback gauge: abort). */
void metric_set(struct metric *s, double v);

/* Counts v in a histogram: in the first bucket whose bound is >= v (a value
 * equal to a bound belongs to that bucket), and in _sum and _count. NaN is
 * ignored. Lock-free. */
void metric_observe(struct metric *s, double v);

/* Returns the current value of a counter or gauge (calling a callback
 * gauge's fn), or the number of observations of a histogram; 0 for NULL. */
double metric_value(struct metric *s);

/*
 * Appends the exposition text of every family to out, each as
 *
 *   # HELP name help
 *   # TYPE name counter|gauge|histogram
 *   name{labels} value                  (one line per series)
 *
 * histograms as cumulative name_bucket{labels,le="bound"} lines ending with
 * le="+Inf", then name_sum and name_count (equal to the +Inf bucket, even
 * while other threads observe). Values are written in the shortest form that
 * reads back exactly ("400000", "0.25"), NaN as NaN and infinities as +Inf and
 * -Inf. Returns 0, or -SIMAP_ETOOBIG with out unchanged when out's max is too
 * small. Calls callback gauges; holds the registry lock throughout.
 */
int metrics_render(struct metrics *m, struct buf *out);

#endif
