/*
 * Node lifecycle of the three binaries against a real redis-server:
 * registration and heartbeats, /healthz, /readyz, /metrics, clean stop on
 * SIGTERM, surviving a Redis restart, refusing bad configuration.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/harness.h"

static struct redis_srv redis;

static const char *const roles[3][3] = {
    {"superimap-api", "api", "si:apis"},
    {"superimap-watcher", "watcher", "si:watchers"},
    {"superimap-dispatcher", "dispatcher", "si:dispatchers"},
};

static int suite_setup(void **state)
{
    (void)state;
    return harness_redis_start(&redis);
}

static int suite_teardown(void **state)
{
    (void)state;
    harness_stop_all();
    harness_redis_stop(&redis);
    return 0;
}

static int flush(void **state)
{
    (void)state;
    char out[64];
    return harness_redis_get(&redis, out, sizeof out, "FLUSHALL");
}

static int stop_all(void **state)
{
    (void)state;
    harness_stop_all();
    return 0;
}

/* The first heartbeat follows readiness by one round trip: poll for the
 * node of roles[i] in its role's zset. */
static void wait_registered(int i)
{
    char out[64] = "";
    long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        if (harness_redis_get(&redis, out, sizeof out, "ZSCORE %s %s", roles[i][2], roles[i][1]) ==
                0 &&
            out[0] != '\0')
            return;
        harness_poll_pause();
    }
    fail_msg("%s never registered in %s", roles[i][1], roles[i][2]);
}

static long long hash_field(const char *key, const char *field)
{
    char out[64];
    if (harness_redis_get(&redis, out, sizeof out, "HGET %s %s", key, field) < 0 || !out[0])
        return -1;
    return atoll(out);
}

static void test_three_binaries_register_and_heartbeat(void **state)
{
    (void)state;
    struct proc p[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(harness_node_start(&p[i], &redis, roles[i][0], roles[i][1], NULL), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(harness_wait_http(p[i].port, "/readyz", 200, 10000), 0);
        wait_registered(i);
    }

    long long first[3];
    for (int i = 0; i < 3; i++) {
        char out[128], key[64];
        assert_int_equal(
            harness_redis_get(&redis, out, sizeof out, "ZSCORE %s %s", roles[i][2], roles[i][1]),
            0);
        assert_true(atoll(out) > 0);
        snprintf(key, sizeof key, "si:node:%s", roles[i][1]);
        assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HGET %s role", key), 0);
        assert_string_equal(out, roles[i][1]);
        assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HGET %s state", key), 0);
        assert_string_equal(out, "active");
        assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HGET %s version", key), 0);
        assert_true(out[0] != '\0');
        first[i] = hash_field(key, "heartbeat_ms");
        assert_true(first[i] > 0);
    }
    char out[64];
    assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HGET si:node:watcher capacity"),
                     0);
    assert_true(atoi(out) > 0);
    assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HGET si:meta shards"), 0);
    assert_string_equal(out, "64");

    /* The next beat comes 5 s later: the heartbeat_ms of each node advances. */
    long long deadline = harness_now_ms() + 12000;
    int advanced = 0;
    while (advanced < 3 && harness_now_ms() < deadline) {
        advanced = 0;
        for (int i = 0; i < 3; i++) {
            char key[64];
            snprintf(key, sizeof key, "si:node:%s", roles[i][1]);
            advanced += hash_field(key, "heartbeat_ms") > first[i];
        }
        harness_poll_pause();
    }
    assert_int_equal(advanced, 3);
    for (int i = 0; i < 3; i++)
        harness_proc_stop(&p[i]);
}

static void test_http_endpoints_answer(void **state)
{
    (void)state;
    struct proc p;
    assert_int_equal(harness_node_start(&p, &redis, "superimap-dispatcher", "d1", NULL), 0);
    assert_int_equal(harness_wait_http(p.port, "/readyz", 200, 10000), 0);
    char body[65536];
    assert_int_equal(harness_http_get(p.port, "/healthz", body, sizeof body), 200);
    assert_string_equal(body, "{\"status\":\"ok\"}");
    assert_int_equal(harness_http_get(p.port, "/readyz", body, sizeof body), 200);
    assert_non_null(strstr(body, "\"status\":\"ready\""));
    assert_int_equal(harness_http_get(p.port, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "superimap_build_info{"));
    assert_non_null(strstr(body, "role=\"dispatcher\""));
    assert_non_null(strstr(body, "\nsuperimap_uptime_seconds "));
    assert_non_null(strstr(body, "\nsuperimap_heartbeat_age_seconds "));
    assert_non_null(strstr(body, "\nsuperimap_redis_reconnects_total 0"));
    assert_non_null(strstr(body, "superimap_redis_command_duration_seconds_bucket{le="));
    assert_non_null(strstr(body, "\nsuperimap_ready 1"));
    assert_int_equal(harness_http_get(p.port, "/nope", body, sizeof body), 404);
    assert_non_null(strstr(body, "\"error\":{\"code\":\"not_found\""));
    harness_proc_stop(&p);
}

static void test_sigterm_removes_heartbeat_and_exits_zero(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        struct proc p;
        char out[64];
        assert_int_equal(harness_node_start(&p, &redis, roles[i][0], roles[i][1], NULL), 0);
        assert_int_equal(harness_wait_http(p.port, "/readyz", 200, 10000), 0);
        wait_registered(i);
        assert_int_equal(
            harness_redis_get(&redis, out, sizeof out, "EXISTS si:node:%s", roles[i][1]), 0);
        assert_string_equal(out, "1");
        harness_proc_signal(&p, SIGTERM);
        assert_int_equal(harness_proc_wait(&p, 15000), 0);
        if (p.exit_code != 0) { /* a crash's stack is in its log (core/node.c) */
            char cmd[400];
            snprintf(cmd, sizeof cmd, "tail -n 40 %s >&2", p.log);
            fprintf(stderr, "%s exited %d after SIGTERM; its log:\n", roles[i][0], p.exit_code);
            fflush(stderr);
            if (system(cmd) != 0)
                fprintf(stderr, "(cannot show %s)\n", p.log);
        }
        assert_int_equal(p.exit_code, 0);
        assert_int_equal(
            harness_redis_get(&redis, out, sizeof out, "EXISTS si:node:%s", roles[i][1]), 0);
        assert_string_equal(out, "0");
        assert_int_equal(
            harness_redis_get(&redis, out, sizeof out, "ZSCORE %s %s", roles[i][2], roles[i][1]),
            0);
        assert_string_equal(out, "");
        assert_true(harness_log_contains(&p, "stopped exit_code=0"));
    }
}

/* Sends all of text on fd. */
static void send_all(int fd, const char *text)
{
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

/* Reads from fd until want has arrived (the socket's 1 s receive timeout
 * bounds each read; the deadline bounds them all). */
static void read_until(int fd, const char *want)
{
    char got[4096];
    size_t len = 0;
    long long deadline = harness_now_ms() + 10000;
    got[0] = '\0';
    while (strstr(got, want) == NULL && harness_now_ms() < deadline && len < sizeof got - 1) {
        ssize_t n = recv(fd, got + len, sizeof got - 1 - len, 0);
        if (n == 0)
            break;
        if (n > 0) {
            len += (size_t)n;
            got[len] = '\0';
        }
    }
    if (strstr(got, want) == NULL)
        fail_msg("never received '%s'; got '%s'", want, got);
}

/* Issue #15 point 17: the api's handlers and connection hooks run on
 * civetweb's threads and use what its finish frees (client gates, keys).
 * A request whose body was still being read when SIGTERM's drain ended
 * crashed the api (SIGSEGV after "stopped exit_code=0"): the HTTP server
 * now stops, ending that read, before the role frees anything. A worker
 * thread is made to hold the connection (one request answered on it),
 * then the next request's body, which carries the key and so is read
 * first under the client's gate, comes only in part. */
static void test_sigterm_with_a_request_in_flight(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        struct proc p;
        assert_int_equal(harness_node_start(&p, &redis, "superimap-api", "api-inflight", NULL), 0);
        assert_int_equal(harness_wait_http(p.port, "/readyz", 200, 10000), 0);
        int fd = harness_connect_loopback(p.port);
        assert_true(fd >= 0);
        send_all(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        read_until(fd, "{\"status\":\"ok\"}");
        send_all(fd, "POST /api/v1/connections HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: 100\r\n\r\napi_key=x");
        harness_proc_signal(&p, SIGTERM);
        assert_int_equal(harness_proc_wait(&p, 15000), 0);
        close(fd);
        if (p.exit_code != 0 || !harness_log_contains(&p, "stopped exit_code=0"))
            fail_msg("round %d: the api exited %d after SIGTERM with a request in flight (log %s)",
                     round, p.exit_code, p.log);
    }
}

static void test_redis_restart_under_running_node(void **state)
{
    (void)state;
    struct proc p;
    assert_int_equal(harness_node_start(&p, &redis, "superimap-watcher", "w-restart", NULL), 0);
    assert_int_equal(harness_wait_http(p.port, "/readyz", 200, 10000), 0);

    harness_redis_kill(&redis, 1);
    assert_int_equal(harness_wait_http(p.port, "/readyz", 503, 10000), 0);
    assert_int_equal(harness_http_get(p.port, "/healthz", NULL, 0), 200);
    int warns_down = harness_log_count(&p, " warn ");

    /* While Redis is away the node retries with backoff but logs nothing new
     * per retry: poll the log for a while and require it to stay quiet. */
    long long until = harness_now_ms() + 2000;
    while (harness_now_ms() < until) {
        assert_int_equal(harness_http_get(p.port, "/readyz", NULL, 0), 503);
        harness_poll_pause();
    }
    assert_true(harness_log_count(&p, " warn ") <= warns_down + 1);

    assert_int_equal(harness_redis_restart(&redis), 0);
    assert_int_equal(harness_wait_http(p.port, "/readyz", 200, 15000), 0);
    assert_int_equal(harness_proc_wait(&p, 0), -1); /* still the same process */
    char body[65536];
    assert_int_equal(harness_http_get(p.port, "/metrics", body, sizeof body), 200);
    assert_null(strstr(body, "\nsuperimap_redis_reconnects_total 0"));
    /* The restarted Redis is empty: meta and heartbeat are written again. */
    char out[64];
    assert_int_equal(harness_redis_get(&redis, out, sizeof out, "HGET si:meta shards"), 0);
    assert_string_equal(out, "64");
    harness_proc_stop(&p);
}

static void test_redis_down_at_start_then_up(void **state)
{
    (void)state;
    harness_redis_kill(&redis, 0);
    struct proc p;
    assert_int_equal(harness_node_start(&p, &redis, "superimap-api", "api-early", NULL), 0);
    assert_int_equal(harness_http_get(p.port, "/healthz", NULL, 0), 200);
    assert_int_equal(harness_http_get(p.port, "/readyz", NULL, 0), 503);
    assert_int_equal(harness_redis_restart(&redis), 0);
    assert_int_equal(harness_wait_http(p.port, "/readyz", 200, 15000), 0);
    harness_proc_stop(&p);
}

static void run_expect_exit(const char *binary, const char *const *env, int want,
                            const char *needle, const char *needle2)
{
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/bad-config.log", redis.dir);
    char path[512];
    const char *argv[] = {harness_bin(binary, path, sizeof path), NULL};
    assert_int_equal(harness_spawn(&p, argv, env), 0);
    assert_int_equal(harness_proc_wait(&p, 10000), 0);
    assert_int_equal(p.exit_code, want);
    if (!harness_log_contains(&p, needle))
        fail_msg("'%s' missing from the output of %s (%s)", needle, binary, p.log);
    if (needle2 != NULL && !harness_log_contains(&p, needle2))
        fail_msg("'%s' missing from the output of %s (%s)", needle2, binary, p.log);
}

static void test_bad_config_exits_2_naming_the_variable(void **state)
{
    (void)state;
    char url[400];
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", redis.url);
    const char *key = "SUPERIMAP_ENCRYPTION_KEY="
                      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const char *bad_shards[] = {url, key, "SUPERIMAP_SHARDS=lots", NULL};
    run_expect_exit("superimap-watcher", bad_shards, 2, "SUPERIMAP_SHARDS=\"lots\"",
                    "integer from 1 to 16384");
    const char *no_key[] = {url, NULL};
    run_expect_exit("superimap-api", no_key, 2, "SUPERIMAP_ENCRYPTION_KEY: required", NULL);
    const char *short_key[] = {url, "SUPERIMAP_ENCRYPTION_KEY=abcd", NULL};
    run_expect_exit("superimap-dispatcher", short_key, 2, "64 hexadecimal digits", NULL);
    const char *bad_url[] = {"SUPERIMAP_REDIS_URL=http://x", key, NULL};
    run_expect_exit("superimap-dispatcher", bad_url, 2, "SUPERIMAP_REDIS_URL", "redis://");
    const char *bad_level[] = {url, key, "SUPERIMAP_LOG_LEVEL=loud", NULL};
    run_expect_exit("superimap-api", bad_level, 2, "debug|info|warn|error", NULL);
    /* Every problem is reported at once, not one per attempt. */
    const char *two[] = {url, "SUPERIMAP_SHARDS=0", "SUPERIMAP_LOG_FORMAT=xml", NULL};
    run_expect_exit("superimap-watcher", two, 2, "SUPERIMAP_SHARDS", "SUPERIMAP_LOG_FORMAT");
}

static void test_help_lists_every_variable(void **state)
{
    (void)state;
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/help.log", redis.dir);
    char path[512];
    const char *argv[] = {harness_bin("superimap-watcher", path, sizeof path), "--help", NULL};
    assert_int_equal(harness_spawn(&p, argv, NULL), 0);
    assert_int_equal(harness_proc_wait(&p, 10000), 0);
    assert_int_equal(p.exit_code, 0);
    assert_true(harness_log_contains(&p, "SUPERIMAP_MAX_USERS"));
    assert_true(harness_log_contains(&p, "SUPERIMAP_REDIS_URL"));
    assert_false(harness_log_contains(&p, "SUPERIMAP_ADMIN_TOKEN")); /* api only */
    const char *argv2[] = {path, "--bogus", NULL};
    assert_int_equal(harness_spawn(&p, argv2, NULL), 0);
    assert_int_equal(harness_proc_wait(&p, 10000), 0);
    assert_int_equal(p.exit_code, 2);
}

static void test_shard_count_mismatch_refuses_to_start(void **state)
{
    (void)state;
    struct proc a, b;
    assert_int_equal(harness_node_start(&a, &redis, "superimap-api", "api-64", NULL), 0);
    assert_int_equal(harness_wait_http(a.port, "/readyz", 200, 10000), 0);
    const char *env[] = {"SUPERIMAP_SHARDS=32", NULL};
    assert_int_equal(harness_node_start(&b, &redis, "superimap-watcher", "w-32", env), 0);
    assert_int_equal(harness_proc_wait(&b, 15000), 0);
    assert_int_equal(b.exit_code, 2);
    assert_true(harness_log_contains(&b, "created with 64 shards"));
    harness_proc_stop(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_three_binaries_register_and_heartbeat, flush,
                                        stop_all),
        cmocka_unit_test_setup_teardown(test_http_endpoints_answer, flush, stop_all),
        cmocka_unit_test_setup_teardown(test_sigterm_removes_heartbeat_and_exits_zero, flush,
                                        stop_all),
        cmocka_unit_test_setup_teardown(test_sigterm_with_a_request_in_flight, flush, stop_all),
        cmocka_unit_test_setup_teardown(test_redis_restart_under_running_node, flush, stop_all),
        cmocka_unit_test_setup_teardown(test_redis_down_at_start_then_up, flush, stop_all),
        cmocka_unit_test_teardown(test_bad_config_exits_2_naming_the_variable, stop_all),
        cmocka_unit_test_teardown(test_help_lists_every_variable, stop_all),
        cmocka_unit_test_setup_teardown(test_shard_count_mismatch_refuses_to_start, flush,
                                        stop_all),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
