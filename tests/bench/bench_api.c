/*
 * superimap-api throughput with wrk (Debian package): GET user and POST user
 * (create, a new tag each time) with an API key, against a private
 * redis-server (tests/unit/redis_fixture.h) and one superimap-api started
 * here (SUPERIMAP_API_THREADS=16, rate limit off; tests/bench/bench.h starts
 * and stops it). Prints
 *
 *   | route | connections | requests/s | p50 ms | p99 ms | non-2xx |
 *
 * Set-up goes through the admin and partner API itself (libcurl). The api is
 * stopped by its PID with SIGTERM (SIGKILL after 10 s); every child has
 * PR_SET_PDEATHSIG. BENCH_API_SECONDS (default 5) sets each run's length.
 * With BENCH_DATA_DIR set it appends api_get_user_per_s (the better GET
 * row) and api_post_user_per_s to results.txt (tests/bench/bench.h).
 * Exits non-zero when wrk is missing or the api does not start.
 *
 * SPDX-License-Identifier: MIT
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/crypto.h"
#include "core/err.h"
#include "tests/bench/bench.h"
#include "tests/unit/redis_fixture.h"

#define TOKEN "bench-admin-token-0123456789"

static char logpath[160];

struct body {
    char text[8192];
    size_t len;
};

static size_t on_body(char *d, size_t s, size_t n, void *u)
{
    struct body *b = u;
    size_t k = s * n;
    if (b->len + k < sizeof b->text) {
        memcpy(b->text + b->len, d, k);
        b->len += k;
        b->text[b->len] = '\0';
    }
    return k;
}

/* One request; returns the status and the body in b. */
static long call(int port, const char *method, const char *path, const char *hdr, const char *ctype,
                 const char *data, struct body *b)
{
    char url[512], ct[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, hdr);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    h = curl_slist_append(h, ct);
    b->len = 0;
    b->text[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    if (data != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return status;
}

/* Milliseconds from a wrk latency like "1.23ms", "850.00us", "1.02s". */
static double to_ms(const char *s)
{
    double v = atof(s);
    if (strstr(s, "us"))
        return v / 1000.0;
    if (strstr(s, "ms"))
        return v;
    if (strstr(s, "s"))
        return v * 1000.0;
    return v;
}

/* Runs wrk and prints one table row; the requests/s in *rps_out. */
static int run_wrk(const char *label, int conns, int seconds, const char *url, const char *hdr,
                   const char *script, double *rps_out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "wrk -t2 -c%d -d%ds --latency -H '%s' %s%s '%s' 2>&1", conns, seconds,
             hdr, script ? "-s " : "", script ? script : "", url);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    char line[512];
    double rps = 0, p50 = 0, p99 = 0;
    long non2xx = 0;
    while (fgets(line, sizeof line, p) != NULL) {
        char v[64];
        if (sscanf(line, " Requests/sec: %lf", &rps) == 1)
            continue;
        if (sscanf(line, " 50%% %63s", v) == 1)
            p50 = to_ms(v);
        else if (sscanf(line, " 99%% %63s", v) == 1)
            p99 = to_ms(v);
        else if (sscanf(line, " Non-2xx or 3xx responses: %ld", &non2xx) == 1)
            continue;
    }
    int rc = pclose(p);
    printf("| %s | %d | %.0f | %.2f | %.2f | %ld |\n", label, conns, rps, p50, p99, non2xx);
    fflush(stdout);
    *rps_out = rps;
    return rc == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench_api: wrk not found: install the Debian package wrk (make deps)\n");
        return 1;
    }
    char copy[384], bin[512];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(bin, sizeof bin, "%.384s/../bin/superimap-api", dirname(copy));
    const char *src = getenv("SUPERIMAP_SRC_DIR") ? getenv("SUPERIMAP_SRC_DIR") : ".";
    int seconds = getenv("BENCH_API_SECONDS") ? atoi(getenv("BENCH_API_SECONDS")) : 5;
    if (seconds < 1)
        seconds = 5;

    struct redis_fixture fx;
    if (redis_fixture_start(&fx, NULL) < 0)
        return 1;
    unsigned char raw[32];
    char key_hex[65];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, key_hex);
    snprintf(logpath, sizeof logpath, "%s/api.log", fx.dir);
    static const char *const extra[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                                        "SUPERIMAP_API_THREADS=16", NULL};
    pid_t pid = bench_api_spawn(bin, fx.url, key_hex, src, "bench-api", TOKEN, extra, logpath);
    int port = bench_log_port(logpath);
    int rc = 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct body b;
    char hdr[160], path[256];
    /* Ready once the partner API answers (Redis connected, scripts loaded). */
    double until = fixture_now() + 10.0;
    while (port > 0 && fixture_now() < until &&
           call(port, "GET", "/readyz", "X-Probe: 1", "text/plain", NULL, &b) != 200)
        fixture_nap_ms(20);
    if (port <= 0 ||
        call(
            port, "POST", "/admin/api/providers", "Authorization: Bearer " TOKEN,
            "application/json",
            "{\"code\":\"PLAIN\",\"imap_host\":\"127.0.0.1\",\"imap_port\":10143,\"tls\":\"none\"}",
            &b) != 201 ||
        call(port, "POST", "/admin/api/partners", "Authorization: Bearer " TOKEN,
             "application/json",
             "{\"name\":\"bench\",\"new_mail_webhook_url\":\"http://127.0.0.1:9/x\"}", &b) != 201) {
        fprintf(stderr, "bench_api: the api did not start; log %s\n", logpath);
        goto out;
    }
    const char *k = strstr(b.text, "\"api_key\":\"");
    char key[128] = "";
    if (k != NULL)
        sscanf(k + 11, "%127[^\"]", key);
    snprintf(hdr, sizeof hdr, "x-api-key: %s", key);
    if (call(port, "POST", "/api/v2/connections", hdr, "application/x-www-form-urlencoded",
             "imap_provider_code=PLAIN", &b) != 201 ||
        call(port, "POST", "/api/v2/connections/PLAIN/users", hdr,
             "application/x-www-form-urlencoded",
             "tag=bench%40example.com&email=bench%40example.com&login_username=u&"
             "login_password=p",
             &b) != 201) {
        fprintf(stderr, "bench_api: set-up through the API failed: %s\n", b.text);
        goto out;
    }
    setenv("BENCH_API_KEY", key, 1);
    printf("superimap-api, 16 worker threads, rate limit off, wrk -t2, %d s per row; Redis on a "
           "unix socket; all on this machine.\n\n",
           seconds);
    printf("| route | connections | requests/s | p50 ms | p99 ms | non-2xx |\n");
    printf("|---|---|---|---|---|---|\n");
    fflush(stdout);
    snprintf(path, sizeof path,
             "http://127.0.0.1:%d/api/v2/connections/PLAIN/users/bench@example.com", port);
    char script[700], posturl[128];
    snprintf(script, sizeof script, "%s/tests/bench/bench_api.lua", src);
    snprintf(posturl, sizeof posturl, "http://127.0.0.1:%d/", port);
    double get16 = 0, get64 = 0, post = 0;
    if (run_wrk("GET user", 16, seconds, path, hdr, NULL, &get16) < 0 ||
        run_wrk("GET user", 64, seconds, path, hdr, NULL, &get64) < 0 ||
        run_wrk("POST user (create)", 16, seconds, posturl, hdr, script, &post) < 0)
        goto out;
    bench_result("api_get_user_per_s", "%.0f", get16 > get64 ? get16 : get64);
    bench_result("api_post_user_per_s", "%.0f", post);
    rc = 0;
out:
    curl_global_cleanup();
    bench_stop(pid);
    redis_fixture_stop(&fx);
    return rc;
}
