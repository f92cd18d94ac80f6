/*
 * Benchmarks of the CPU-bound core modules, single thread: AES-256-GCM
 * envelopes (core/crypto), the webhook signature (HMAC-SHA256 hex), SHA-1,
 * rendezvous placement (core/hrw), a webhook-like JSON body generated and
 * parsed back (core/json), metric updates (core/metrics) and log lines
 * formatted and written to /dev/null (core/log).
 *
 * Each operation first runs a growing number of times until one pass takes
 * 30 ms, then once more for a count scaled to take about 0.3 s; that last
 * pass is reported as a Markdown table
 *
 *   | operation | ops/s | ns/op |
 *
 * Timing is CLOCK_MONOTONIC. Nothing here judges the numbers (make bench);
 * the program exits non-zero only when an operation fails.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_tree.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"

#define TARGET_SEC    0.3  /* measured pass */
#define CALIBRATE_SEC 0.03 /* a calibration pass at least this long sets the count */
#define NKEYS         1024 /* distinct user ids cycled through by hrw */
#define MAX_NODES     50

/* Defeats dead-code elimination of results nobody reads. */
static volatile uint64_t sink;

/* Everything the operations read, prepared once before timing. */
struct core_ctx {
    struct crypto_keys *keys;
    unsigned char *small;  /* 256 B plaintext */
    unsigned char *large;  /* 64 KiB plaintext */
    char *env_small;       /* its envelope, for decryption */
    char *env_large;       /* the same for 64 KiB */
    unsigned char *body1k; /* webhook body to sign */
    unsigned char *blob;   /* 100 KiB to hash */
    char user_ids[NKEYS][24];
    char node_names[MAX_NODES][24];
    struct hrw_node nodes[MAX_NODES];
    char *json;      /* the webhook-like body, generated once */
    size_t json_len; /* its length */
    struct metrics *metrics;
    struct metric *counter;
    struct metric *histogram;
};

static struct core_ctx ctx;

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_core: %s failed: %s\n", what, err_str(rc));
    exit(1);
}

static unsigned char *filled(size_t n)
{
    unsigned char *p = xmalloc(n);
    crypto_random(p, n);
    return p;
}

/* ---- Operations: each runs n times ---- */

static void op_encrypt(const void *plain, size_t len, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        char *env;
        int rc = crypto_encrypt(ctx.keys, plain, len, "si:user:42", &env);
        if (rc < 0)
            die("crypto_encrypt", rc);
        sink += (unsigned char)env[3];
        xfree(env);
    }
}

static void op_decrypt(const char *env, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        char *plain;
        size_t len;
        int rc = crypto_decrypt(ctx.keys, env, "si:user:42", &plain, &len);
        if (rc < 0)
            die("crypto_decrypt", rc);
        sink += len;
        xfree(plain);
    }
}

static void op_encrypt_256(uint64_t n)
{
    op_encrypt(ctx.small, 256, n);
}

static void op_encrypt_64k(uint64_t n)
{
    op_encrypt(ctx.large, 64 * 1024, n);
}

static void op_decrypt_256(uint64_t n)
{
    op_decrypt(ctx.env_small, n);
}

static void op_decrypt_64k(uint64_t n)
{
    op_decrypt(ctx.env_large, n);
}

static void op_hmac_1k(uint64_t n)
{
    static const char secret[] = "whsec_5d1f0c7e2b9a4e6f8c3d1a0b9e7f6c5d";
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    for (uint64_t i = 0; i < n; i++) {
        int rc = crypto_hmac_sha256_hex(secret, sizeof secret - 1, ctx.body1k, 1024, hex);
        if (rc < 0)
            die("crypto_hmac_sha256_hex", rc);
        sink += (unsigned char)hex[0];
    }
}

static void op_sha1_100k(uint64_t n)
{
    char hex[CRYPTO_SHA1_HEX_LEN + 1];
    for (uint64_t i = 0; i < n; i++) {
        int rc = crypto_sha1_hex(ctx.blob, 100 * 1024, hex);
        if (rc < 0)
            die("crypto_sha1_hex", rc);
        sink += (unsigned char)hex[0];
    }
}

static void op_hrw(size_t nnodes, uint64_t n)
{
    size_t idx[2];
    for (uint64_t i = 0; i < n; i++) {
        int got = hrw_top_k(ctx.user_ids[i % NKEYS], ctx.nodes, nnodes, 2, idx);
        if (got != 2)
            die("hrw_top_k", got < 0 ? got : -SIMAP_EINVAL);
        sink += idx[0];
    }
}

static void op_hrw_3(uint64_t n)
{
    op_hrw(3, n);
}

static void op_hrw_50(uint64_t n)
{
    op_hrw(50, n);
}

/* A new-mail webhook body as the dispatcher would sign and POST it. */
static int gen_webhook(uint64_t seq, char **out, size_t *len)
{
    struct json_gen *g = json_gen_new(64 * 1024);
    json_gen_object_open(g);
    json_gen_key_str(g, "event", "message.new");
    json_gen_key_str(g, "event_id", "01J9Z8X7W6V5T4S3R2Q1P0N9M8");
    json_gen_key_int(g, "created_at", 1738324800123 + (int64_t)seq);
    json_gen_key_object(g, "user");
    json_gen_key_str(g, "id", "user-0042");
    json_gen_key_str(g, "email", "alice.martin@example.org");
    json_gen_key_str(g, "partner", "acme-crm");
    json_gen_object_close(g);
    json_gen_key_object(g, "message");
    json_gen_key_str(g, "mailbox", "INBOX");
    json_gen_key_int(g, "uid", 48213 + (int64_t)(seq % 1000));
    json_gen_key_int(g, "uidvalidity", 1712345678);
    json_gen_key_str(g, "message_id", "<CAF=3k9x+Yq2PpQ7uZb0L@mail.example.com>");
    json_gen_key_str(g, "subject",
                     "Re: Quarterly report \xe2\x80\x94 r\xc3\xa9sum\xc3\xa9 attached");
    json_gen_key_str(g, "date", "2025-01-31T12:00:00.000Z");
    json_gen_key_int(g, "size", 48213);
    json_gen_key_object(g, "from");
    json_gen_key_str(g, "name", "Bob Dupont");
    json_gen_key_str(g, "address", "bob.dupont@example.com");
    json_gen_object_close(g);
    json_gen_key_array(g, "to");
    for (int i = 0; i < 2; i++) {
        json_gen_object_open(g);
        json_gen_key_str(g, "name", i == 0 ? "Alice Martin" : "Team \"Finance\"");
        json_gen_key_str(g, "address", i == 0 ? "alice.martin@example.org" : "finance@example.org");
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
    json_gen_key_array(g, "cc");
    json_gen_array_close(g);
    json_gen_key_array(g, "flags");
    json_gen_str(g, "\\Recent");
    json_gen_array_close(g);
    json_gen_key_bool(g, "has_attachments", 1);
    json_gen_key_str(g, "in_reply_to", "<CAF=1a2b3c@mail.example.org>");
    json_gen_key_array(g, "references");
    json_gen_str(g, "<CAF=1a2b3c@mail.example.org>");
    json_gen_str(g, "<CAF=4d5e6f@mail.example.com>");
    json_gen_array_close(g);
    json_gen_key_str(g, "snippet",
                     "Hi Alice,\nplease find the report attached. The figures for Q4 are up "
                     "12% on Q3; the breakdown per region is on page 3.\tRegards, Bob");
    json_gen_object_close(g);
    json_gen_key_object(g, "delivery");
    json_gen_key_int(g, "attempt", 1);
    json_gen_key_str(g, "url", "https://hooks.acme-crm.example/imap/new-mail?tenant=42");
    json_gen_key_null(g, "previous_error");
    json_gen_key_double(g, "queued_ms", 1.25);
    json_gen_object_close(g);
    json_gen_object_close(g);
    int rc = json_gen_finish(g, out, len);
    json_gen_free(g);
    return rc;
}

static void op_json_gen(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        char *body;
        size_t len;
        int rc = gen_webhook(i, &body, &len);
        if (rc < 0)
            die("json generator", rc);
        sink += len;
        xfree(body);
    }
}

static void op_json_parse(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        yajl_val v;
        char err[128];
        int rc = json_parse_object(ctx.json, ctx.json_len, JSON_DEFAULT_DEPTH, &v, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "bench_core: json_parse_object: %s\n", err);
            exit(1);
        }
        int64_t uid = 0;
        if (json_get_int(json_get(v, "message"), "uid", &uid) < 0 ||
            json_get_str(v, "event") == NULL)
            die("json accessors", -SIMAP_EINVAL);
        sink += (uint64_t)uid;
        json_free(v);
    }
}

static void op_metric_inc(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        metric_inc(ctx.counter);
    sink += (uint64_t)metric_value(ctx.counter);
}

static void op_metric_observe(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        metric_observe(ctx.histogram, (double)(i & 1023) * 0.00005); /* 0 .. 51 ms */
    sink += (uint64_t)metric_value(ctx.histogram);
}

static void log_lines(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        log_info("webhook delivered acct=%llu job=01J9Z8X7W6V5T4S3R2Q1P0N9M8 status=%d "
                 "url=\"https://hooks.acme-crm.example/imap\" ms=%.2f",
                 (unsigned long long)(i % 100000), 200, 12.5);
}

static void op_log_text(uint64_t n)
{
    log_lines(n);
}

static void op_log_json(uint64_t n)
{
    log_lines(n);
}

static void op_log_skipped(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        log_debug("imap line acct=%llu bytes=%d", (unsigned long long)i, 42);
}

/* ---- Calibration and the table ---- */

struct bench_op {
    const char *name;
    void (*run)(uint64_t n);
    int log_format; /* -1: leave the logger alone */
};

static double time_run(void (*run)(uint64_t), uint64_t n)
{
    double t0 = now_sec();
    run(n);
    return now_sec() - t0;
}

static void measure(const struct bench_op *op)
{
    if (op->log_format >= 0 &&
        log_init("superimap-bench", "bench-1", LL_INFO, op->log_format, NULL, "/dev/null") < 0)
        die("log_init(/dev/null)", -SIMAP_EIO);

    uint64_t n = 1;
    double t = time_run(op->run, n);
    while (t < CALIBRATE_SEC) {
        n *= t < CALIBRATE_SEC / 20 ? 10 : 2;
        t = time_run(op->run, n);
    }
    double want = (double)n * TARGET_SEC / t;
    n = want < 1 ? 1 : (uint64_t)want;
    t = time_run(op->run, n);
    printf("| %s | %.0f | %.1f |\n", op->name, (double)n / t, t * 1e9 / (double)n);
    fflush(stdout);

    if (op->log_format >= 0)
        log_shutdown();
}

static void setup(void)
{
    char key_hex[CRYPTO_KEY_HEX_LEN + 1];
    unsigned char raw[CRYPTO_KEY_LEN];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, key_hex);
    char err[128];
    if (crypto_keys_init(&ctx.keys, key_hex, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "bench_core: crypto_keys_init: %s\n", err);
        exit(1);
    }
    crypto_wipe(raw, sizeof raw);
    crypto_wipe(key_hex, sizeof key_hex);

    ctx.small = filled(256);
    ctx.large = filled(64 * 1024);
    int rc = crypto_encrypt(ctx.keys, ctx.small, 256, "si:user:42", &ctx.env_small);
    if (rc == 0)
        rc = crypto_encrypt(ctx.keys, ctx.large, 64 * 1024, "si:user:42", &ctx.env_large);
    if (rc < 0)
        die("crypto_encrypt", rc);
    ctx.body1k = filled(1024);
    ctx.blob = filled(100 * 1024);

    for (int i = 0; i < NKEYS; i++)
        snprintf(ctx.user_ids[i], sizeof ctx.user_ids[i], "user-%d", i * 7919 + 13);
    for (int i = 0; i < MAX_NODES; i++) {
        snprintf(ctx.node_names[i], sizeof ctx.node_names[i], "watcher-%02d", i);
        ctx.nodes[i].id = ctx.node_names[i];
        ctx.nodes[i].weight = 10000 + (uint32_t)(i % 3) * 5000; /* unequal capacities */
    }

    rc = gen_webhook(0, &ctx.json, &ctx.json_len);
    if (rc < 0)
        die("json generator", rc);

    ctx.metrics = metrics_new();
    ctx.counter =
        metrics_counter(ctx.metrics, "superimap_bench_total", "Bench counter.", "result=\"ok\"");
    ctx.histogram = metrics_histogram(ctx.metrics, "superimap_bench_seconds", "Bench latency.",
                                      NULL, metrics_latency_bounds, metrics_latency_nbounds);
}

static void teardown(void)
{
    metrics_free(ctx.metrics);
    xfree(ctx.json);
    xfree(ctx.blob);
    xfree(ctx.body1k);
    xfree(ctx.env_large);
    xfree(ctx.env_small);
    xfree(ctx.large);
    xfree(ctx.small);
    crypto_keys_free(ctx.keys);
}

int main(void)
{
    setup();

    char gen_name[80], parse_name[80];
    snprintf(gen_name, sizeof gen_name, "core/json generate webhook body (%zu B)", ctx.json_len);
    snprintf(parse_name, sizeof parse_name, "core/json parse webhook body (%zu B) + accessors",
             ctx.json_len);
    const struct bench_op ops[] = {
        {"core/crypto AES-256-GCM encrypt 256 B", op_encrypt_256, -1},
        {"core/crypto AES-256-GCM decrypt 256 B", op_decrypt_256, -1},
        {"core/crypto AES-256-GCM encrypt 64 KiB", op_encrypt_64k, -1},
        {"core/crypto AES-256-GCM decrypt 64 KiB", op_decrypt_64k, -1},
        {"core/crypto HMAC-SHA256 hex of 1 KiB (webhook signature)", op_hmac_1k, -1},
        {"core/crypto SHA-1 hex of 100 KiB", op_sha1_100k, -1},
        {"core/hrw hrw_top_k(k=2), 3 nodes", op_hrw_3, -1},
        {"core/hrw hrw_top_k(k=2), 50 nodes", op_hrw_50, -1},
        {gen_name, op_json_gen, -1},
        {parse_name, op_json_parse, -1},
        {"core/metrics metric_inc (counter)", op_metric_inc, -1},
        {"core/metrics metric_observe (histogram, 14 buckets)", op_metric_observe, -1},
        {"core/log info line, text, to /dev/null", op_log_text, LOG_FORMAT_TEXT},
        {"core/log info line, JSON, to /dev/null", op_log_json, LOG_FORMAT_JSON},
        {"core/log debug line below level (skipped)", op_log_skipped, LOG_FORMAT_TEXT},
    };

    printf("Single thread; each row is one pass calibrated to about %.1f s "
           "(AES envelopes include base64 and the allocation of the result).\n\n",
           TARGET_SEC);
    printf("| operation | ops/s | ns/op |\n");
    printf("|---|---:|---:|\n");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        measure(&ops[i]);

    teardown();
    return 0;
}
