/*
 * core/metrics: lock-free Prometheus counters, gauges and histograms, and the
 * text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"

const double metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t metrics_latency_nbounds =
    sizeof metrics_latency_bounds / sizeof metrics_latency_bounds[0];
const double metrics_tracer_bounds[] = {0.05, 0.1, 0.25, 0.5, 1,   2,   5,
                                        10,   20,  30,   60,  120, 300, 600};
const size_t metrics_tracer_nbounds =
    sizeof metrics_tracer_bounds / sizeof metrics_tracer_bounds[0];

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

static const char *const type_names[] = {"counter", "gauge", "histogram"};

/*
 * One series. Lists only grow (under the registry lock) and series live until
 * metrics_free(), so a pointer handed out stays valid with no reference count.
 *
 *   counter     value = whole + bits-as-double (integral adds take the
 *               wait-free fetch-add; others CAS the double)
 *   gauge       value = bits-as-double, or fn(data) when fn is set
 *   histogram   buckets[i] counts observations in (bounds[i-1], bounds[i]],
 *               buckets[nbounds] those above the last bound; bits = _sum.
 *               Buckets are stored per bucket, not cumulative, so one
 *               observation is one fetch-add; the render sums them.
 */
struct metric {
    struct metric_family *family;
    struct metric *next; /* next series of the family */
    char *labels;        /* validated; "" for none */
    _Atomic uint64_t whole;
    _Atomic uint64_t bits;
    double (*fn)(void *);
    void *data;
    double *bounds;
    size_t nbounds;
    _Atomic uint64_t *buckets; /* nbounds + 1 */
};

/* Series sharing one name: one # HELP / # TYPE block. */
struct metric_family {
    char *name;
    char *help; /* already escaped for the HELP line */
    enum metric_type type;
    struct metric *first, *last;
    struct metric_family *next;
};

struct metrics {
    pthread_mutex_t lock; /* registration and render; never updates */
    struct metric_family *first, *last;
};

/* ---- Atomic doubles ---- */

static double bits_to_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    /* On failure the CAS reloads old; the loop retries with the new value. */
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

static double atomic_load_double(_Atomic uint64_t *p)
{
    return bits_to_double(atomic_load_explicit(p, memory_order_relaxed));
}

/* ---- Validation (programmer errors: abort) ---- */

static void die(const char *what, const char *name, const char *detail)
{
    fprintf(stderr, "superimap: metrics: %s %s: %s\n", what, name, detail ? detail : "");
    fflush(stderr);
    abort();
}

static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static int valid_name(const char *s)
{
    if (s == NULL || !(is_alpha_(*s) || *s == ':'))
        return 0;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
            return 0;
    return 1;
}

/*
 * Label set `a="x",b="y"`: names [a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed
 * (reserved), not repeated, not "le" when is_histogram; values escape only
 * \\, \" and \n, as the format requires. NULL and "" are the empty set.
 */
static int valid_labels(const char *s, int is_histogram)
{
    const char *names[32];
    size_t lens[32], count = 0;

    if (s == NULL || *s == '\0')
        return 1;
    for (;;) {
        const char *name = s;
        if (!is_alpha_(*s))
            return 0;
        while (is_alpha_(*s) || is_digit(*s))
            s++;
        size_t len = (size_t)(s - name);
        if ((len >= 2 && name[0] == '_' && name[1] == '_') ||
            (is_histogram && len == 2 && memcmp(name, "le", 2) == 0))
            return 0;
        for (size_t i = 0; i < count; i++)
            if (lens[i] == len && memcmp(names[i], name, len) == 0)
                return 0;
        if (count == sizeof names / sizeof names[0])
            return 0;
        names[count] = name;
        lens[count++] = len;
        if (*s++ != '=' || *s++ != '"')
            return 0;
        while (*s != '"') {
            if (*s == '\0' || *s == '\n')
                return 0;
            if (*s == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return 0;
            }
            s++;
        }
        s++; /* closing quote */
        if (*s == '\0')
            return 1;
        if (*s++ != ',')
            return 0;
    }
}

/* Returns help with \ and newline escaped for the # HELP line (xfree() it). */
static char *escape_help(const char *help)
{
    struct buf b;
    buf_init(&b, (size_t)-1 / 4);
    for (const char *p = help ? help : ""; *p; p++) {
        if (*p == '\\')
            buf_puts(&b, "\\\\");
        else if (*p == '\n')
            buf_puts(&b, "\\n");
        else
            buf_append(&b, p, 1);
    }
    return buf_steal(&b);
}

/* ---- Registry ---- */

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof *m);
    if (pthread_mutex_init(&m->lock, NULL) != 0)
        die("cannot init", "mutex", NULL);
    return m;
}

static void series_free(struct metric *s)
{
    xfree(s->labels);
    xfree(s->bounds);
    xfree(s->buckets);
    xfree(s);
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    struct metric_family *f = m->first;
    while (f != NULL) {
        struct metric_family *fnext = f->next;
        struct metric *s = f->first;
        while (s != NULL) {
            struct metric *snext = s->next;
            series_free(s);
            s = snext;
        }
        xfree(f->name);
        xfree(f->help);
        xfree(f);
        f = fnext;
    }
    pthread_mutex_destroy(&m->lock);
    xfree(m);
}

static struct metric_family *find_family(struct metrics *m, const char *name)
{
    for (struct metric_family *f = m->first; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static int same_bounds(const struct metric *s, const double *bounds, size_t nbounds)
{
    return s->nbounds == nbounds && memcmp(s->bounds, bounds, nbounds * sizeof *bounds) == 0;
}

/* Finds or adds the series name{labels}; the caller holds the lock. A new
 * series has every value 0 and, for histograms, its own copy of bounds. */
static struct metric *series_get(struct metrics *m, const char *name, const char *help,
                                 const char *labels, enum metric_type type, const double *bounds,
                                 size_t nbounds)
{
    if (!valid_name(name))
        die("invalid name", name ? name : "(null)", NULL);
    if (!valid_labels(labels, type == METRIC_HISTOGRAM))
        die("invalid labels of", name, labels);
    if (labels == NULL)
        labels = "";

    struct metric_family *f = find_family(m, name);
    if (f == NULL) {
        f = xcalloc(1, sizeof *f);
        f->name = xstrdup(name);
        f->help = escape_help(help);
        f->type = type;
        if (m->last != NULL)
            m->last->next = f;
        else
            m->first = f;
        m->last = f;
    } else if (f->type != type) {
        die("type mismatch for", name, type_names[type]);
    }

    for (struct metric *s = f->first; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) != 0)
            continue;
        if (type == METRIC_HISTOGRAM && !same_bounds(s, bounds, nbounds))
            die("other bounds for", name, labels);
        return s;
    }

    struct metric *s = xcalloc(1, sizeof *s);
    s->family = f;
    s->labels = xstrdup(labels);
    atomic_init(&s->whole, 0);
    atomic_init(&s->bits, double_to_bits(0.0));
    if (type == METRIC_HISTOGRAM) {
        s->nbounds = nbounds;
        s->bounds = xmalloc(nbounds * sizeof *s->bounds);
        memcpy(s->bounds, bounds, nbounds * sizeof *s->bounds);
        s->buckets = xmalloc((nbounds + 1) * sizeof *s->buckets);
        for (size_t i = 0; i <= nbounds; i++)
            atomic_init(&s->buckets[i], 0);
    }
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
}

static struct metric *register_series(struct metrics *m, const char *name, const char *help,
                                      const char *labels, enum metric_type type,
                                      const double *bounds, size_t nbounds)
{
    if (m == NULL)
        return NULL;
    pthread_mutex_lock(&m->lock);
    struct metric *s = series_get(m, name, help, labels, type, bounds, nbounds);
    pthread_mutex_unlock(&m->lock);
    return s;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
                               const char *labels)
{
    return register_series(m, name, help, labels, METRIC_COUNTER, NULL, 0);
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
                             const char *labels)
{
    return register_series(m, name, help, labels, METRIC_GAUGE, NULL, 0);
}

struct metric *metrics_gauge_fn(struct metrics *m, const char *name, const char *help,
                                const char *labels, double (*fn)(void *data), void *data)
{
    if (m == NULL)
        return NULL;
    if (fn == NULL)
        die("NULL callback for", name, labels);
    pthread_mutex_lock(&m->lock);
    struct metric *s = series_get(m, name, help, labels, METRIC_GAUGE, NULL, 0);
    if (s->fn != NULL && (s->fn != fn || s->data != data))
        die("second callback for", name, labels);
    s->fn = fn; /* read only under the lock (render) or by metric_value() */
    s->data = data;
    pthread_mutex_unlock(&m->lock);
    return s;
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                 const char *labels, const double *bounds, size_t nbounds)
{
    if (m == NULL)
        return NULL;
    if (bounds == NULL || nbounds == 0)
        die("no bounds for", name, labels);
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            die("bounds not finite and increasing for", name, labels);
    return register_series(m, name, help, labels, METRIC_HISTOGRAM, bounds, nbounds);
}

/* ---- Updates (lock-free) ---- */

void metric_add(struct metric *s, double v)
{
    if (s == NULL)
        return;
    switch (s->family->type) {
    case METRIC_COUNTER:
        if (!(v >= 0)) /* negative or NaN */
            return;
        if (v < 9007199254740992.0 && v == floor(v)) /* 2^53: exact in a double */
            atomic_fetch_add_explicit(&s->whole, (uint64_t)v, memory_order_relaxed);
        else
            atomic_add_double(&s->bits, v);
        return;
    case METRIC_GAUGE:
        if (s->fn != NULL)
            die("metric_add on callback gauge", s->family->name, s->labels);
        atomic_add_double(&s->bits, v);
        return;
    case METRIC_HISTOGRAM:
        break;
    }
    die("metric_add on histogram", s->family->name, s->labels);
}

void metric_inc(struct metric *s)
{
    if (s != NULL && s->family->type == METRIC_COUNTER)
        atomic_fetch_add_explicit(&s->whole, 1, memory_order_relaxed);
    else
        metric_add(s, 1.0);
}

void metric_set(struct metric *s, double v)
{
    if (s == NULL)
        return;
    if (s->family->type != METRIC_GAUGE || s->fn != NULL)
        die("metric_set on non-gauge", s->family->name, s->labels);
    atomic_store_explicit(&s->bits, double_to_bits(v), memory_order_relaxed);
}

void metric_observe(struct metric *s, double v)
{
    if (s == NULL || isnan(v))
        return;
    if (s->family->type != METRIC_HISTOGRAM)
        die("metric_observe on non-histogram", s->family->name, s->labels);
    /* First bound >= v, by bisection over [lo, hi). */
    size_t lo = 0, hi = s->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->bits, v);
}

static double counter_value(struct metric *s)
{
    return (double)atomic_load_explicit(&s->whole, memory_order_relaxed) +
           atomic_load_double(&s->bits);
}

double metric_value(struct metric *s)
{
    if (s == NULL)
        return 0;
    switch (s->family->type) {
    case METRIC_COUNTER:
        return counter_value(s);
    case METRIC_GAUGE:
        return s->fn != NULL ? s->fn(s->data) : atomic_load_double(&s->bits);
    case METRIC_HISTOGRAM:
        break;
    }
    uint64_t n = 0;
    for (size_t i = 0; i <= s->nbounds; i++)
        n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    return (double)n;
}

/* ---- Rendering ---- */

/*
 * Writes v as Prometheus (Go's ParseFloat) reads it: NaN, +Inf, -Inf;
 * integers below 1e18 in plain digits ("400000", not "4e+05"); others in the
 * shortest %g that reads back as the same double. out holds 32 bytes.
 */
static void format_value(double v, char *out, size_t outlen)
{
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
    } else if (isinf(v)) {
        snprintf(out, outlen, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, outlen, "0"); /* -0 too */
    } else if (fabs(v) < 1e18 && v == floor(v)) {
        snprintf(out, outlen, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, outlen, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* name{labels} value, or name value; suffix is "" or _sum, _count. */
static int render_line(struct buf *b, const char *name, const char *suffix, const char *labels,
                       double v)
{
    char num[32];
    format_value(v, num, sizeof num);
    if (*labels)
        return buf_printf(b, "%s%s{%s} %s\n", name, suffix, labels, num);
    return buf_printf(b, "%s%s %s\n", name, suffix, num);
}

static int render_histogram(struct buf *b, const char *name, struct metric *s)
{
    const char *sep = *s->labels ? "," : "";
    char le[32], num[32];
    uint64_t cumulative = 0;
    int rc = 0;

    for (size_t i = 0; i <= s->nbounds && rc == 0; i++) {
        cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        format_value(i < s->nbounds ? s->bounds[i] : INFINITY, le, sizeof le);
        format_value((double)cumulative, num, sizeof num);
        rc = buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %s\n", name, s->labels, sep, le, num);
    }
    if (rc == 0)
        rc = render_line(b, name, "_sum", s->labels, atomic_load_double(&s->bits));
    /* _count is the +Inf bucket as read above, so the two always agree. */
    if (rc == 0)
        rc = render_line(b, name, "_count", s->labels, (double)cumulative);
    return rc;
}

static int render_family(struct buf *b, struct metric_family *f)
{
    int rc = buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                        type_names[f->type]);
    for (struct metric *s = f->first; s != NULL && rc == 0; s = s->next) {
        if (f->type == METRIC_HISTOGRAM)
            rc = render_histogram(b, f->name, s);
        else
            rc = render_line(b, f->name, "", s->labels, metric_value(s));
    }
    return rc;
}

int metrics_render(struct metrics *m, struct buf *out)
{
    if (m == NULL)
        return 0;
    /* Rendered apart, then appended whole: out is unchanged on failure. */
    struct buf tmp;
    buf_init(&tmp, out->max - out->len);
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (struct metric_family *f = m->first; f != NULL && rc == 0; f = f->next)
        rc = render_family(&tmp, f);
    pthread_mutex_unlock(&m->lock);
    if (rc == 0)
        rc = buf_append(out, tmp.data, tmp.len);
    buf_free(&tmp);
    return rc;
}
