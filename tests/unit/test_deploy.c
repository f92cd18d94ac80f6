/*
 * Unit tests of the deployment files, which no Docker engine is needed to
 * check: docker-compose.yml validates with `docker-compose config` (skipped
 * when docker-compose is not installed), wires every service, builds the
 * image in one service only, reads its port and nofile variables, and refuses
 * to start without its two secrets; docker/gen-cert.sh makes a self-signed
 * localhost certificate with a private key, and never replaces one.
 *
 * Files are found under $SUPERIMAP_SRC_DIR (set by tests/run-tests.sh), else
 * the current directory. Commands run with posix_spawnp() and an argv, never
 * through a shell, each with a deadline; all output lands in one mkdtemp dir.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/time.h"

extern char **environ;

#define CMD_DEADLINE_MS 120000
#define CMD_OUTPUT_MAX  (256 * 1024)
#define TEST_KEY        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define TEST_TOKEN      "test-admin-token-0123456789"

struct fixture {
    char dir[256];      /* mkdtemp dir, removed by teardown */
    char src[1024];     /* repository root */
    char compose[1300]; /* src/docker-compose.yml */
    char envfile[300];  /* empty file for --env-file, so no .env is read */
};

/* ---- Running commands ---- */

/* Returns 1 if name is an executable file in a PATH directory. */
static int have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return 0;
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        char full[4096];
        if (n > 0 && n + strlen(name) + 2 <= sizeof full) {
            memcpy(full, path, n);
            full[n] = '/';
            strcpy(full + n + 1, name);
            if (access(full, X_OK) == 0)
                return 1;
        }
        if (end == NULL)
            break;
        path = end + 1;
    }
    return 0;
}

/*
 * Runs argv (searched in PATH) with environment envp (NULL: ours), its stdout
 * and stderr both collected into out (initialised here; buf_free() it).
 * Returns the exit status, 128 + signal if it was killed, or -1 if it could
 * not be started. A command still running at the deadline is killed.
 */
static int run(const char *const argv[], char *const envp[], struct buf *out)
{
    buf_init(out, CMD_OUTPUT_MAX);
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    /* posix_spawnp() takes char *const[] for historical reasons; it does
     * not write to the strings. */
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        buf_printf(out, "cannot run %s: %s", argv[0], strerror(rc));
        return -1;
    }

    int64_t deadline = time_mono_ms() + CMD_DEADLINE_MS;
    int timed_out = 0;
    for (;;) {
        int64_t left = deadline - time_mono_ms();
        if (left <= 0) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue; /* the deadline check above ends it */
        char chunk[4096];
        ssize_t got = read(fds[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EOF: the command and all its children closed the pipe */
        (void)buf_append(out, chunk, (size_t)got); /* past the cap: dropped */
    }
    close(fds[0]);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (timed_out) {
        buf_printf(out, "\n[killed after %d ms]", CMD_DEADLINE_MS);
        return 128 + SIGKILL;
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static const char *text(const struct buf *b)
{
    return b->data ? b->data : "";
}

/*
 * Returns a new NULL-terminated copy of our environment without any
 * SUPERIMAP_* variable (so a developer's own settings cannot change the
 * result), plus SUPERIMAP_ENCRYPTION_KEY=key and SUPERIMAP_ADMIN_TOKEN=token
 * for those not NULL (an empty string is set, empty). Free with env_free().
 */
static char **env_with_secrets_and(const char *key, const char *token, const char *const extra[]);

static char **env_with_secrets(const char *key, const char *token)
{
    return env_with_secrets_and(key, token, NULL);
}

/* As env_with_secrets(), plus the NAME=value strings of extra (NULL-ended,
 * or NULL for none). */
static char **env_with_secrets_and(const char *key, const char *token, const char *const extra[])
{
    size_t n = 0, n_extra = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[n_extra] != NULL)
        n_extra++;
    char **env = xcalloc(n + n_extra + 3, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "SUPERIMAP_", 10) != 0)
            env[k++] = xstrdup(environ[i]);
    }
    struct buf b;
    if (key != NULL) {
        buf_init(&b, 4096);
        buf_printf(&b, "SUPERIMAP_ENCRYPTION_KEY=%s", key);
        env[k++] = buf_steal(&b);
    }
    if (token != NULL) {
        buf_init(&b, 4096);
        buf_printf(&b, "SUPERIMAP_ADMIN_TOKEN=%s", token);
        env[k++] = buf_steal(&b);
    }
    for (size_t i = 0; i < n_extra; i++)
        env[k++] = xstrdup(extra[i]);
    env[k] = NULL;
    return env;
}

static void env_free(char **env)
{
    for (size_t i = 0; env[i] != NULL; i++)
        xfree(env[i]);
    xfree(env);
}

/* `docker-compose -f <compose> --env-file <empty> config [-q]` with the given
 * secrets; output in out. */
static int compose_config(const struct fixture *f, const char *key, const char *token, int quiet,
                          struct buf *out)
{
    char **env = env_with_secrets(key, token);
    const char *argv[] = {"docker-compose", "-f",     f->compose, "--env-file",
                          f->envfile,       "config", "-q",       NULL};
    if (!quiet)
        argv[6] = NULL;
    int rc = run(argv, env, out);
    env_free(env);
    return rc;
}

static void skip_without_compose(void)
{
    if (!have_program("docker-compose")) {
        print_message("docker-compose is not installed (Debian package docker-compose): "
                      "skipping\n");
        skip();
    }
}

/* Reads a whole small file into a new string (xfree() it); NULL if absent. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    struct buf b;
    buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    fclose(fp);
    return buf_steal(&b);
}

/* ---- Fixture ---- */

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/superimap-deploy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        print_error("mkdtemp %s: %s\n", f->dir, strerror(errno));
        xfree(f);
        return -1;
    }
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    snprintf(f->src, sizeof f->src, "%s", src && *src ? src : ".");
    snprintf(f->compose, sizeof f->compose, "%s/docker-compose.yml", f->src);
    snprintf(f->envfile, sizeof f->envfile, "%s/empty.env", f->dir);
    int fd = open(f->envfile, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        print_error("create %s: %s\n", f->envfile, strerror(errno));
        rmdir(f->dir);
        xfree(f);
        return -1;
    }
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = {"rm", "-rf", f->dir, NULL};
    struct buf out;
    int rc = run(argv, NULL, &out);
    if (rc != 0)
        print_error("rm -rf %s: %s\n", f->dir, text(&out));
    buf_free(&out);
    xfree(f);
    return rc == 0 ? 0 : -1;
}

/* ---- docker-compose.yml ---- */

static void test_compose_config_validates_with_secrets(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    assert_int_equal(access(f->compose, R_OK), 0);
    struct buf out;
    int rc = compose_config(f, TEST_KEY, TEST_TOKEN, 1, &out);
    if (rc != 0)
        fail_msg("docker-compose config -q exited %d:\n%s", rc, text(&out));
    buf_free(&out);
}

static void test_compose_config_wires_every_service(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    struct buf out;
    int rc = compose_config(f, TEST_KEY, TEST_TOKEN, 0, &out);
    if (rc != 0)
        fail_msg("docker-compose config exited %d:\n%s", rc, text(&out));
    static const char *const want[] = {
        "superimap-api",
        "superimap-watcher",
        "superimap-dispatcher",
        "image: redis:7",
        "appendonly",
        "image: nginx:stable",
        "replicas: 2",
        "SUPERIMAP_ENCRYPTION_KEY: " TEST_KEY,
        "SUPERIMAP_ADMIN_TOKEN: " TEST_TOKEN,
        "SUPERIMAP_HTTP_ADDR: 0.0.0.0:8080",
        "SUPERIMAP_HTTP_ADDR: 0.0.0.0:9101",
        "SUPERIMAP_HTTP_ADDR: 0.0.0.0:9102",
        "SUPERIMAP_PUBLIC_URL: https://localhost",
        "stop_grace_period: 40s",
        "restart: unless-stopped",
        "docker/Dockerfile",
        "docker/nginx.conf",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (strstr(text(&out), want[i]) == NULL)
            fail_msg("docker-compose config lacks \"%s\":\n%s", want[i], text(&out));
    }
    buf_free(&out);
}

/* `docker-compose config` with both secrets and the extra NAME=value
 * settings; asserts it succeeds. Output in out. */
static void compose_config_with(const struct fixture *f, const char *const extra[], struct buf *out)
{
    char **env = env_with_secrets_and(TEST_KEY, TEST_TOKEN, extra);
    const char *argv[] = {"docker-compose", "-f",     f->compose, "--env-file",
                          f->envfile,       "config", NULL};
    int rc = run(argv, env, out);
    env_free(env);
    if (rc != 0)
        fail_msg("docker-compose config exited %d:\n%s", rc, text(out));
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void expect_in(const struct buf *out, const char *want)
{
    if (strstr(text(out), want) == NULL)
        fail_msg("docker-compose config lacks \"%s\":\n%s", want, text(out));
}

/* The image is built by one service only (the others run superimap:latest),
 * so `up --build` builds it once; nginx's published ports and the watchers'
 * open-files limit default to 80, 443, 65536 and follow their variables. */
static void test_compose_builds_once_and_reads_ports_and_nofile(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    struct buf out;
    compose_config_with(f, NULL, &out);
    if (count_of(text(&out), "build:") != 1)
        fail_msg("want exactly one service with build:, got %zu:\n%s",
                 count_of(text(&out), "build:"), text(&out));
    assert_int_equal(count_of(text(&out), "image: superimap:latest"), 3);
    expect_in(&out, "target: runtime");
    expect_in(&out, "published: 80\n");
    expect_in(&out, "published: 443\n");
    expect_in(&out, "soft: 65536");
    expect_in(&out, "hard: 65536");
    buf_free(&out);

    static const char *const extra[] = {"SUPERIMAP_HTTPS_PORT=127.0.0.1:18443",
                                        "SUPERIMAP_HTTP_PORT=18080",
                                        "SUPERIMAP_WATCHER_NOFILE=20000", NULL};
    compose_config_with(f, extra, &out);
    expect_in(&out, "127.0.0.1:18443:443");
    expect_in(&out, "published: 18080\n");
    expect_in(&out, "soft: 20000");
    expect_in(&out, "hard: 20000");
    buf_free(&out);
}

/* The monitoring profile adds Prometheus with the shipped configuration and
 * alert rules, its UI on loopback unless told otherwise. */
static void test_compose_monitoring_profile_runs_prometheus_with_our_rules(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    char **env = env_with_secrets_and(TEST_KEY, TEST_TOKEN, NULL);
    const char *argv[] = {"docker-compose", "-f",         f->compose, "--env-file", f->envfile,
                          "--profile",      "monitoring", "config",   NULL};
    struct buf out;
    int rc = run(argv, env, &out);
    env_free(env);
    if (rc != 0)
        fail_msg("docker-compose --profile monitoring config exited %d:\n%s", rc, text(&out));
    expect_in(&out, "image: prom/prometheus:");
    expect_in(&out, "- monitoring");
    expect_in(&out, "/docker/prometheus:/etc/prometheus:ro");
    expect_in(&out, "--config.file=/etc/prometheus/prometheus.yml");
    expect_in(&out, "- 127.0.0.1:9090:9090");
    buf_free(&out);
    char path[sizeof f->src + 64];
    snprintf(path, sizeof path, "%s/docker/prometheus/prometheus.yml", f->src);
    char *conf = slurp(path);
    assert_non_null(conf);
    /* Every node's metrics port as the compose file gives it. */
    assert_non_null(strstr(conf, "port: 8080"));
    assert_non_null(strstr(conf, "port: 9101"));
    assert_non_null(strstr(conf, "port: 9102"));
    assert_non_null(strstr(conf, "- alerts.yml"));
    xfree(conf);
}

/* The ha profile adds two replicas of redis and three sentinels watching it,
 * and the nodes take SUPERIMAP_REDIS_URL (the sentinels' address) from the
 * environment. */
static void test_compose_ha_profile_runs_replicas_and_sentinels(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    static const char *const extra[] = {
        "SUPERIMAP_REDIS_URL=redis+sentinel://sentinel1:26379,sentinel2:26379,sentinel3:26379/"
        "mymaster",
        NULL};
    char **env = env_with_secrets_and(TEST_KEY, TEST_TOKEN, extra);
    const char *argv[] = {"docker-compose", "-f", f->compose, "--env-file", f->envfile,
                          "--profile",      "ha", "config",   NULL};
    struct buf out;
    int rc = run(argv, env, &out);
    env_free(env);
    if (rc != 0)
        fail_msg("docker-compose --profile ha config exited %d:\n%s", rc, text(&out));
    static const char *const want[] = {
        "  redis-replica1:", "  redis-replica2:", "  sentinel1:", "  sentinel2:",
        "  sentinel3:",      "--replicaof",       "--sentinel",   "monitor mymaster redis 6379 2"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        expect_in(&out, want[i]);
    /* api, watcher and dispatcher all follow the sentinels. */
    assert_int_equal(count_of(text(&out), "SUPERIMAP_REDIS_URL: redis+sentinel://sentinel1:26379,"
                                          "sentinel2:26379,sentinel3:26379/mymaster"),
                     3);
    buf_free(&out);
}

static void expect_refused_without(const struct fixture *f, const char *key, const char *token,
                                   const char *missing)
{
    struct buf out;
    int rc = compose_config(f, key, token, 1, &out);
    if (rc == 0)
        fail_msg("docker-compose config accepted a missing/empty %s", missing);
    if (strstr(text(&out), missing) == NULL)
        fail_msg("docker-compose config failed (%d) without naming %s:\n%s", rc, missing,
                 text(&out));
    buf_free(&out);
}

static void test_compose_refuses_without_encryption_key(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    expect_refused_without(f, NULL, TEST_TOKEN, "SUPERIMAP_ENCRYPTION_KEY");
    expect_refused_without(f, "", TEST_TOKEN, "SUPERIMAP_ENCRYPTION_KEY");
}

static void test_compose_refuses_without_admin_token(void **state)
{
    struct fixture *f = *state;
    skip_without_compose();
    expect_refused_without(f, TEST_KEY, NULL, "SUPERIMAP_ADMIN_TOKEN");
    expect_refused_without(f, TEST_KEY, "", "SUPERIMAP_ADMIN_TOKEN");
}

/* ---- docker/gen-cert.sh ---- */

static int gen_cert(const struct fixture *f, const char *dir, struct buf *out)
{
    char script[1300];
    snprintf(script, sizeof script, "%s/docker/gen-cert.sh", f->src);
    const char *argv[] = {"sh", script, dir, NULL};
    return run(argv, NULL, out);
}

/* Runs openssl with args, asserting it succeeds; output in out. */
static void openssl_ok(const char *const argv[], struct buf *out)
{
    int rc = run(argv, NULL, out);
    if (rc != 0)
        fail_msg("openssl %s exited %d (Debian package openssl):\n%s", argv[1], rc, text(out));
}

static void test_gen_cert_makes_localhost_cert_and_private_key(void **state)
{
    struct fixture *f = *state;
    char dir[300], cert[320], key[320];
    snprintf(dir, sizeof dir, "%s/certs", f->dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);

    struct buf out;
    int rc = gen_cert(f, dir, &out);
    if (rc != 0)
        fail_msg("gen-cert.sh exited %d:\n%s", rc, text(&out));
    buf_free(&out);

    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(cert, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    const char *subject[] = {"openssl", "x509", "-noout", "-subject", "-nameopt",
                             "RFC2253", "-in",  cert,     NULL};
    openssl_ok(subject, &out);
    assert_non_null(strstr(text(&out), "CN=localhost"));
    buf_free(&out);

    const char *san[] = {"openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert, NULL};
    openssl_ok(san, &out);
    assert_non_null(strstr(text(&out), "DNS:localhost"));
    buf_free(&out);

    /* The key is the certificate's: same public key. */
    struct buf from_cert, from_key;
    const char *cert_pub[] = {"openssl", "x509", "-noout", "-pubkey", "-in", cert, NULL};
    const char *key_pub[] = {"openssl", "pkey", "-pubout", "-in", key, NULL};
    openssl_ok(cert_pub, &from_cert);
    openssl_ok(key_pub, &from_key);
    assert_non_null(strstr(text(&from_cert), "BEGIN PUBLIC KEY"));
    assert_string_equal(text(&from_cert), text(&from_key));
    buf_free(&from_cert);
    buf_free(&from_key);
}

static void test_gen_cert_never_replaces_existing_files(void **state)
{
    struct fixture *f = *state;
    char dir[300], cert[320], key[320];
    snprintf(dir, sizeof dir, "%s/certs", f->dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);

    struct buf out;
    assert_int_equal(gen_cert(f, dir, &out), 0);
    buf_free(&out);
    char *cert1 = slurp(cert);
    char *key1 = slurp(key);
    assert_non_null(cert1);
    assert_non_null(key1);

    /* Both present: a second run succeeds and changes nothing. */
    int rc = gen_cert(f, dir, &out);
    if (rc != 0)
        fail_msg("second gen-cert.sh run exited %d:\n%s", rc, text(&out));
    buf_free(&out);
    char *cert2 = slurp(cert);
    char *key2 = slurp(key);
    assert_string_equal(cert1, cert2);
    assert_string_equal(key1, key2);

    /* Only the certificate left: refused, and the certificate kept. */
    assert_int_equal(unlink(key), 0);
    assert_int_not_equal(gen_cert(f, dir, &out), 0);
    buf_free(&out);
    char *cert3 = slurp(cert);
    assert_string_equal(cert1, cert3);
    assert_int_equal(access(key, F_OK), -1);

    xfree(cert1);
    xfree(key1);
    xfree(cert2);
    xfree(key2);
    xfree(cert3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_compose_config_validates_with_secrets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_compose_config_wires_every_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compose_builds_once_and_reads_ports_and_nofile, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_compose_monitoring_profile_runs_prometheus_with_our_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compose_ha_profile_runs_replicas_and_sentinels, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_compose_refuses_without_encryption_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_compose_refuses_without_admin_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_cert_makes_localhost_cert_and_private_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gen_cert_never_replaces_existing_files, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
