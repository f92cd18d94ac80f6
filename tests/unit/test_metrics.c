/*
 * Unit tests of core/metrics: exact exposition text, label grouping,
 * histogram buckets, callback gauges, value formatting, validation, and
 * exact totals under concurrent updates. Includes the module's source to
 * reach its validators and number formatting.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/metrics.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* Renders m into a fresh string (xfree() it). */
static char *render(struct metrics *m)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(m, &b), 0);
    return buf_steal(&b);
}

/* ---- A checker of the exposition format, independent of the renderer ---- */

static int is_float_token(const char *s, size_t n)
{
    if ((n == 3 && memcmp(s, "NaN", 3) == 0) || (n == 4 && memcmp(s, "+Inf", 4) == 0) ||
        (n == 4 && memcmp(s, "-Inf", 4) == 0))
        return 1;
    char tmp[64];
    if (n == 0 || n >= sizeof tmp || strspn(s, "0123456789+-.e") < n)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    strtod(tmp, &end);
    return *end == '\0';
}

/*
 * Walks text line by line: every family is "# HELP name ..." then
 * "# TYPE name type", each name once; each sample "name[{labels}] value"
 * belongs to the current family (histograms: _bucket with le, _sum, _count),
 * has valid labels and a float Prometheus can read. Histogram buckets must
 * not decrease and the +Inf bucket must equal _count. Returns the number of
 * samples; fails the test on the first bad line.
 */
static size_t check_exposition(const char *text)
{
    char family[128] = "", type[16] = "";
    char seen[32][128];
    size_t nseen = 0, samples = 0, lineno = 0;
    double last_bucket = -1, inf_bucket = -1;

    assert_true(*text == '\0' || text[strlen(text) - 1] == '\n');
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        size_t len = strcspn(line, "\n");
        char buf[512];
        assert_true(len < sizeof buf);
        memcpy(buf, line, len);
        buf[len] = '\0';
        lineno++;

        char name[128], rest[384];
        if (strncmp(buf, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(buf + 7, "%127s", name), 1);
            assert_true(valid_name(name));
            for (size_t i = 0; i < nseen; i++)
                if (strcmp(seen[i], name) == 0)
                    fail_msg("line %zu: family %s split in two blocks", lineno, name);
            assert_true(nseen < 32);
            strcpy(seen[nseen++], name);
            strcpy(family, name);
            type[0] = '\0';
            continue;
        }
        if (strncmp(buf, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(buf + 7, "%127s %15s", name, type), 2);
            if (strcmp(name, family) != 0)
                fail_msg("line %zu: TYPE of %s not right after its HELP", lineno, name);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            continue;
        }
        if (buf[0] == '#' || type[0] == '\0')
            fail_msg("line %zu: sample or comment outside a family: %s", lineno, buf);

        size_t nlen = strcspn(buf, "{ ");
        assert_true(nlen < sizeof name);
        memcpy(name, buf, nlen);
        name[nlen] = '\0';
        const char *suffix = "";
        if (strncmp(name, family, strlen(family)) != 0)
            fail_msg("line %zu: %s outside family %s", lineno, name, family);
        suffix = name + strlen(family);
        if (strcmp(type, "histogram") == 0) {
            if (strcmp(suffix, "_bucket") != 0 && strcmp(suffix, "_sum") != 0 &&
                strcmp(suffix, "_count") != 0)
                fail_msg("line %zu: %s is no histogram sample", lineno, name);
        } else if (*suffix != '\0') {
            fail_msg("line %zu: %s is not %s", lineno, name, family);
        }

        const char *p = buf + nlen;
        rest[0] = '\0';
        if (*p == '{') {
            /* Find the closing brace outside quoted values. */
            const char *q = p + 1;
            int in_quotes = 0;
            for (; *q && (in_quotes || *q != '}'); q++) {
                if (in_quotes && *q == '\\')
                    q++;
                else if (*q == '"')
                    in_quotes = !in_quotes;
            }
            assert_int_equal(*q, '}');
            memcpy(rest, p + 1, (size_t)(q - p - 1));
            rest[q - p - 1] = '\0';
            if (!valid_labels(rest, 0))
                fail_msg("line %zu: bad labels {%s}", lineno, rest);
            p = q + 1;
        }
        if (*p != ' ' || !is_float_token(p + 1, strlen(p + 1)))
            fail_msg("line %zu: bad value in: %s", lineno, buf);
        double v = strcmp(p + 1, "+Inf") == 0 ? INFINITY : strtod(p + 1, NULL);

        if (strcmp(suffix, "_bucket") == 0) {
            const char *le = strstr(rest, "le=\"");
            if (le == NULL)
                fail_msg("line %zu: bucket without le", lineno);
            if (v < last_bucket)
                fail_msg("line %zu: buckets not cumulative", lineno);
            last_bucket = v;
            if (strncmp(le, "le=\"+Inf\"", 9) == 0) {
                inf_bucket = v;
                last_bucket = -1;
            }
        } else if (strcmp(suffix, "_count") == 0) {
            if (v != inf_bucket)
                fail_msg("line %zu: _count differs from the +Inf bucket", lineno);
        }
        samples++;
    }
    return samples;
}

/* ---- Rendering ---- */

static void test_counter_and_gauge_render_exactly(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct metric *c = metrics_counter(m, "superimap_mails_total", "Mails seen.", NULL);
    struct metric *g = metrics_gauge(m, "superimap_sessions", "Open sessions.", "state=\"idle\"");
    metric_inc(c);
    metric_add(c, 2);
    metric_add(c, 0.5);
    metric_set(g, 7);
    metric_add(g, -2);
    metric_inc(g);
    char *out = render(m);
    assert_string_equal(out, "# HELP superimap_mails_total Mails seen.\n"
                             "# TYPE superimap_mails_total counter\n"
                             "superimap_mails_total 3.5\n"
                             "# HELP superimap_sessions Open sessions.\n"
                             "# TYPE superimap_sessions gauge\n"
                             "superimap_sessions{state=\"idle\"} 6\n");
    assert_int_equal(check_exposition(out), 2);
    assert_true(metric_value(c) == 3.5);
    assert_true(metric_value(g) == 6);
    xfree(out);
    metrics_free(m);
}

static void test_series_of_one_name_share_help_and_type(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct metric *ok = metrics_counter(m, "http_requests_total", "Requests.", "code=\"200\"");
    struct metric *up = metrics_gauge(m, "up", "Up.", NULL);
    struct metric *err = metrics_counter(m, "http_requests_total", "ignored", "code=\"500\"");
    /* Registering again, lazily, gives the same series. */
    assert_ptr_equal(metrics_counter(m, "http_requests_total", "x", "code=\"200\""), ok);
    assert_ptr_not_equal(ok, err);
    metric_add(ok, 3);
    metric_inc(err);
    metric_set(up, 1);
    char *out = render(m);
    assert_string_equal(out, "# HELP http_requests_total Requests.\n"
                             "# TYPE http_requests_total counter\n"
                             "http_requests_total{code=\"200\"} 3\n"
                             "http_requests_total{code=\"500\"} 1\n"
                             "# HELP up Up.\n"
                             "# TYPE up gauge\n"
                             "up 1\n");
    assert_int_equal(check_exposition(out), 3);
    xfree(out);
    metrics_free(m);
}

static void test_histogram_value_equal_to_bound_goes_in_that_bucket(void **state)
{
    (void)state;
    static const double bounds[] = {0.25, 0.5, 1};
    struct metrics *m = metrics_new();
    struct metric *h = metrics_histogram(m, "lat_seconds", "Latency.", "route=\"/x\"", bounds, 3);
    struct metric *bare = metrics_histogram(m, "lat_seconds", "Latency.", NULL, bounds, 3);
    /* Dyadic values keep _sum exact. */
    static const double seen[] = {0.25, 0.125, 0.5, 0.75, 1, 2, -1};
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++)
        metric_observe(h, seen[i]);
    metric_observe(h, NAN); /* ignored */
    metric_observe(bare, 1e9);
    char *out = render(m);
    assert_string_equal(out, "# HELP lat_seconds Latency.\n"
                             "# TYPE lat_seconds histogram\n"
                             "lat_seconds_bucket{route=\"/x\",le=\"0.25\"} 3\n"
                             "lat_seconds_bucket{route=\"/x\",le=\"0.5\"} 4\n"
                             "lat_seconds_bucket{route=\"/x\",le=\"1\"} 6\n"
                             "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 7\n"
                             "lat_seconds_sum{route=\"/x\"} 3.625\n"
                             "lat_seconds_count{route=\"/x\"} 7\n"
                             "lat_seconds_bucket{le=\"0.25\"} 0\n"
                             "lat_seconds_bucket{le=\"0.5\"} 0\n"
                             "lat_seconds_bucket{le=\"1\"} 0\n"
                             "lat_seconds_bucket{le=\"+Inf\"} 1\n"
                             "lat_seconds_sum 1000000000\n"
                             "lat_seconds_count 1\n");
    assert_int_equal(check_exposition(out), 12);
    assert_true(metric_value(h) == 7);
    xfree(out);
    metrics_free(m);
}

static void test_histogram_with_default_latency_bounds(void **state)
{
    (void)state;
    assert_int_equal(metrics_latency_nbounds, 14);
    assert_true(metrics_latency_bounds[0] == 0.0005);
    assert_true(metrics_latency_bounds[metrics_latency_nbounds - 1] == 10);
    for (size_t i = 1; i < metrics_latency_nbounds; i++)
        assert_true(metrics_latency_bounds[i] > metrics_latency_bounds[i - 1]);

    struct metrics *m = metrics_new();
    struct metric *h = metrics_histogram(m, "rtt_seconds", "RTT.", NULL, metrics_latency_bounds,
                                         metrics_latency_nbounds);
    metric_observe(h, 0.0005);
    metric_observe(h, 0.003);
    metric_observe(h, 11);
    char *out = render(m);
    assert_non_null(strstr(out, "rtt_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(out, "rtt_seconds_bucket{le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(out, "rtt_seconds_bucket{le=\"0.005\"} 2\n"));
    assert_non_null(strstr(out, "rtt_seconds_bucket{le=\"10\"} 2\n"));
    assert_non_null(strstr(out, "rtt_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_int_equal(check_exposition(out), metrics_latency_nbounds + 3);
    xfree(out);
    metrics_free(m);
}

static int calls;

static double read_double(void *data)
{
    calls++;
    return *(const double *)data;
}

static void test_callback_gauge_is_evaluated_at_each_render(void **state)
{
    (void)state;
    double depth = 12;
    calls = 0;
    struct metrics *m = metrics_new();
    metrics_gauge_fn(m, "queue_depth", "Jobs waiting.", "queue=\"ready\"", read_double, &depth);
    assert_int_equal(calls, 0);
    char *out = render(m);
    assert_string_equal(out, "# HELP queue_depth Jobs waiting.\n"
                             "# TYPE queue_depth gauge\n"
                             "queue_depth{queue=\"ready\"} 12\n");
    xfree(out);
    depth = 0.75;
    out = render(m);
    assert_non_null(strstr(out, "queue_depth{queue=\"ready\"} 0.75\n"));
    assert_int_equal(calls, 2);
    xfree(out);
    metrics_free(m);
}

static void test_help_text_is_escaped(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metrics_gauge(m, "g", "Line one\nback\\slash \"quoted\"", NULL);
    char *out = render(m);
    assert_string_equal(out, "# HELP g Line one\\nback\\\\slash \"quoted\"\n"
                             "# TYPE g gauge\n"
                             "g 0\n");
    xfree(out);
    metrics_free(m);
}

static void test_values_are_spelled_as_prometheus_reads_them(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {400000, "400000"},
        {1e15, "1000000000000000"},
        {123456789012, "123456789012"},
        {9007199254740993.0, "9007199254740992"}, /* nearest double */
        {-3, "-3"},
        {0.1, "0.1"},
        {2.5e-7, "2.5e-07"},
        {1e20, "1e+20"},
        {1.0 / 3, "0.3333333333333333"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        format_value(cases[i].v, out, sizeof out);
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("case %zu: got %s, want %s", i, out, cases[i].want);
    }

    struct metrics *m = metrics_new();
    metric_set(metrics_gauge(m, "g", "G.", "k=\"nan\""), NAN);
    metric_set(metrics_gauge(m, "g", "G.", "k=\"inf\""), -INFINITY);
    char *text = render(m);
    assert_non_null(strstr(text, "g{k=\"nan\"} NaN\n"));
    assert_non_null(strstr(text, "g{k=\"inf\"} -Inf\n"));
    assert_int_equal(check_exposition(text), 2);
    xfree(text);
    metrics_free(m);
}

static void test_rendered_text_parses_line_by_line(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metric_add(metrics_counter(m, "a_total", "A.", "x=\"q\\\"uote}\",y=\"back\\\\\""), 5);
    metric_add(metrics_counter(m, "a_total", "A.", "x=\"nl\\n\""), 1);
    metric_set(metrics_gauge(m, "ns:b", "B.", NULL), -1.5e-9);
    struct metric *h = metrics_histogram(m, "c_seconds", "C.", "x=\"1\"", metrics_latency_bounds,
                                         metrics_latency_nbounds);
    for (int i = 0; i < 100; i++)
        metric_observe(h, i * 0.01);
    char *out = render(m);
    assert_int_equal(check_exposition(out), 3 + metrics_latency_nbounds + 3);
    xfree(out);
    metrics_free(m);
}

static void test_render_into_small_buffer_fails_and_leaves_it_unchanged(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metric_inc(metrics_counter(m, "x_total", "X.", NULL));
    struct buf b;
    buf_init(&b, 40);
    buf_puts(&b, "prefix\n");
    assert_int_equal(metrics_render(m, &b), -SIMAP_ETOOBIG);
    assert_string_equal(b.data, "prefix\n");
    assert_int_equal(b.len, 7);
    buf_free(&b);

    /* Appends after what is there when it fits. */
    buf_init(&b, 1024);
    buf_puts(&b, "prefix\n");
    assert_int_equal(metrics_render(m, &b), 0);
    assert_true(strncmp(b.data, "prefix\n# HELP x_total X.\n", 25) == 0);
    buf_free(&b);
    metrics_free(m);
}

static void test_counter_ignores_negative_and_nan(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct metric *c = metrics_counter(m, "c_total", "C.", NULL);
    metric_add(c, 2);
    metric_add(c, -1);
    metric_add(c, NAN);
    metric_add(c, 0.25);
    assert_true(metric_value(c) == 2.25);
    metrics_free(m);
}

static void test_null_registry_and_series_do_nothing(void **state)
{
    (void)state;
    assert_null(metrics_counter(NULL, "x", "X.", NULL));
    assert_null(metrics_histogram(NULL, "h", "H.", NULL, metrics_latency_bounds, 3));
    metric_inc(NULL);
    metric_add(NULL, 1);
    metric_set(NULL, 1);
    metric_observe(NULL, 1);
    assert_true(metric_value(NULL) == 0);
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(metrics_render(NULL, &b), 0);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    metrics_free(NULL);

    /* An empty registry renders nothing. */
    struct metrics *m = metrics_new();
    char *out = render(m);
    assert_string_equal(out, "");
    xfree(out);
    metrics_free(m);
}

/* ---- Validation ---- */

static void test_names_and_labels_are_validated(void **state)
{
    (void)state;
    assert_true(valid_name("superimap_webhooks_total"));
    assert_true(valid_name("ns:sub_name:x9"));
    assert_true(valid_name("_x"));
    assert_false(valid_name(""));
    assert_false(valid_name(NULL));
    assert_false(valid_name("9lives"));
    assert_false(valid_name("has-dash"));
    assert_false(valid_name("has space"));

    assert_true(valid_labels(NULL, 0));
    assert_true(valid_labels("", 0));
    assert_true(valid_labels("result=\"ok\",code=\"200\"", 0));
    assert_true(valid_labels("a=\"\"", 0));
    assert_true(valid_labels("a=\"q\\\"b\\\\c\\nd\"", 0));
    assert_true(valid_labels("le=\"1\"", 0));
    assert_false(valid_labels("le=\"1\"", 1)); /* histograms own le */
    assert_false(valid_labels("__name__=\"x\"", 0));
    assert_false(valid_labels("a=\"1\",a=\"2\"", 0));
    assert_false(valid_labels("a=1", 0));
    assert_false(valid_labels("a=\"1\",", 0));
    assert_false(valid_labels("a=\"unterminated", 0));
    assert_false(valid_labels("a=\"bad\\tescape\"", 0));
    assert_false(valid_labels("a=\"raw\nnewline\"", 0));
    assert_false(valid_labels("1a=\"x\"", 0));
    assert_false(valid_labels("a = \"x\"", 0));
    assert_false(valid_labels("{a=\"x\"}", 0));
}

/* Runs fn in a child and expects it to abort (programmer errors). */
static void expect_abort(void (*fn)(void), const char *what)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(3);
        fn();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("%s did not abort (status %d)", what, status);
}

static void bad_name(void)
{
    struct metrics *m = metrics_new();
    metrics_counter(m, "bad-name", "X.", NULL);
}

static void bad_labels(void)
{
    struct metrics *m = metrics_new();
    metrics_gauge(m, "g", "G.", "a=unquoted");
}

static void type_mismatch(void)
{
    struct metrics *m = metrics_new();
    metrics_counter(m, "x", "X.", NULL);
    metrics_gauge(m, "x", "X.", "other=\"1\"");
}

static void histogram_le_label(void)
{
    struct metrics *m = metrics_new();
    metrics_histogram(m, "h", "H.", "le=\"1\"", metrics_latency_bounds, 3);
}

static void histogram_unsorted_bounds(void)
{
    static const double bounds[] = {1, 0.5};
    struct metrics *m = metrics_new();
    metrics_histogram(m, "h", "H.", NULL, bounds, 2);
}

static void set_on_counter(void)
{
    struct metrics *m = metrics_new();
    metric_set(metrics_counter(m, "x", "X.", NULL), 1);
}

static void test_programmer_errors_abort(void **state)
{
    (void)state;
    expect_abort(bad_name, "invalid name");
    expect_abort(bad_labels, "invalid labels");
    expect_abort(type_mismatch, "type mismatch");
    expect_abort(histogram_le_label, "le label on a histogram");
    expect_abort(histogram_unsorted_bounds, "unsorted bounds");
    expect_abort(set_on_counter, "metric_set on a counter");
}

/* ---- Concurrency ---- */

enum { THREADS = 4, ROUNDS = 100000 };

struct worker {
    struct metric *counter, *fraction, *gauge, *hist;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        metric_inc(w->counter);        /* fetch-add path */
        metric_add(w->fraction, 0.5);  /* CAS path of a counter */
        metric_add(w->gauge, 1.0);     /* CAS path of a gauge */
        metric_observe(w->hist, 0.25); /* bucket fetch-add + CAS sum */
    }
    return NULL;
}

static void test_concurrent_updates_lose_nothing(void **state)
{
    (void)state;
    static const double bounds[] = {0.1, 0.5};
    struct metrics *m = metrics_new();
    struct worker w = {
        .counter = metrics_counter(m, "inc_total", "Incs.", NULL),
        .fraction = metrics_counter(m, "half_total", "Halves.", NULL),
        .gauge = metrics_gauge(m, "level", "Level.", NULL),
        .hist = metrics_histogram(m, "obs", "Obs.", NULL, bounds, 2),
    };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, work, &w), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);

    assert_true(metric_value(w.counter) == 400000);
    assert_true(metric_value(w.fraction) == 200000);
    assert_true(metric_value(w.gauge) == 400000);
    assert_true(metric_value(w.hist) == 400000);
    char *out = render(m);
    assert_non_null(strstr(out, "\ninc_total 400000\n"));
    assert_non_null(strstr(out, "\nhalf_total 200000\n"));
    assert_non_null(strstr(out, "\nlevel 400000\n"));
    assert_non_null(strstr(out, "\nobs_bucket{le=\"0.1\"} 0\n"));
    assert_non_null(strstr(out, "\nobs_bucket{le=\"0.5\"} 400000\n"));
    assert_non_null(strstr(out, "\nobs_sum 100000\n"));
    assert_non_null(strstr(out, "\nobs_count 400000\n"));
    xfree(out);
    metrics_free(m);
}

enum { RENDERS = 200 };

/* Renders repeatedly while other threads update and register; the texts are
 * checked on the main thread afterwards (cmocka asserts are not thread-safe). */
struct renderer {
    struct metrics *m;
    char *texts[RENDERS];
    int failed;
};

static void *render_loop(void *arg)
{
    struct renderer *r = arg;
    for (int i = 0; i < RENDERS; i++) {
        struct buf b;
        buf_init(&b, 1 << 16);
        if (metrics_render(r->m, &b) != 0)
            r->failed = 1;
        r->texts[i] = buf_steal(&b);
    }
    return NULL;
}

static void test_render_while_updating_and_registering_stays_well_formed(void **state)
{
    (void)state;
    static const double bounds[] = {0.1, 0.5};
    struct metrics *m = metrics_new();
    struct worker w = {
        .counter = metrics_counter(m, "inc_total", "Incs.", NULL),
        .fraction = metrics_counter(m, "half_total", "Halves.", NULL),
        .gauge = metrics_gauge(m, "level", "Level.", NULL),
        .hist = metrics_histogram(m, "obs", "Obs.", NULL, bounds, 2),
    };
    struct renderer r = {.m = m};
    pthread_t updater, renderer;
    assert_int_equal(pthread_create(&updater, NULL, work, &w), 0);
    assert_int_equal(pthread_create(&renderer, NULL, render_loop, &r), 0);
    char labels[32];
    for (int i = 0; i < 50; i++) {
        snprintf(labels, sizeof labels, "code=\"%d\"", 200 + i);
        metric_inc(metrics_counter(m, "late_total", "Registered late.", labels));
    }
    assert_int_equal(pthread_join(updater, NULL), 0);
    assert_int_equal(pthread_join(renderer, NULL), 0);
    assert_int_equal(r.failed, 0);
    for (int i = 0; i < RENDERS; i++) {
        assert_true(check_exposition(r.texts[i]) >= 3 + 5);
        xfree(r.texts[i]);
    }
    char *out = render(m);
    assert_int_equal(check_exposition(out), 3 + 5 + 50);
    xfree(out);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_render_exactly),
        cmocka_unit_test(test_series_of_one_name_share_help_and_type),
        cmocka_unit_test(test_histogram_value_equal_to_bound_goes_in_that_bucket),
        cmocka_unit_test(test_histogram_with_default_latency_bounds),
        cmocka_unit_test(test_callback_gauge_is_evaluated_at_each_render),
        cmocka_unit_test(test_help_text_is_escaped),
        cmocka_unit_test(test_values_are_spelled_as_prometheus_reads_them),
        cmocka_unit_test(test_rendered_text_parses_line_by_line),
        cmocka_unit_test(test_render_into_small_buffer_fails_and_leaves_it_unchanged),
        cmocka_unit_test(test_counter_ignores_negative_and_nan),
        cmocka_unit_test(test_null_registry_and_series_do_nothing),
        cmocka_unit_test(test_names_and_labels_are_validated),
        cmocka_unit_test(test_programmer_errors_abort),
        cmocka_unit_test(test_concurrent_updates_lose_nothing),
        cmocka_unit_test(test_render_while_updating_and_registering_stays_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
