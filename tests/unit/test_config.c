/*
 * Unit tests of core/config and core/redis_url.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/redis_url.h"

#define KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static int clear_env(void **state)
{
    (void)state;
    for (const struct config_var *v = config_vars; v->name != NULL; v++)
        unsetenv(v->name);
    return 0;
}

static void test_defaults_fill_every_field(void **state)
{
    (void)state;
    setenv("SUPERIMAP_ENCRYPTION_KEY", KEY, 1);
    struct config cfg;
    struct buf errors;
    buf_init(&errors, 4096);
    assert_int_equal(config_load(&cfg, CONFIG_ROLE_WATCHER, &errors), 0);
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_int_equal(cfg.shards, 64);
    assert_int_equal(cfg.max_users, 10000);
    assert_int_equal(cfg.log_level, LL_INFO);
    assert_int_equal(cfg.log_format, LOG_FORMAT_TEXT);
    assert_string_equal(cfg.http_addr, "127.0.0.1:9101");
    assert_non_null(cfg.node_id);
    assert_non_null(strchr(cfg.node_id, '-')); /* host-pid */
    assert_null(cfg.admin_token);              /* not a watcher variable */
    buf_free(&errors);
}

static void test_values_parsed_and_per_role_defaults(void **state)
{
    (void)state;
    setenv("SUPERIMAP_ENCRYPTION_KEY", KEY, 1);
    setenv("SUPERIMAP_SHARDS", "128", 1);
    setenv("SUPERIMAP_LOG_FORMAT", "json", 1);
    setenv("SUPERIMAP_LOG_LEVEL", "debug", 1);
    setenv("SUPERIMAP_NODE_ID", "api-1", 1);
    setenv("SUPERIMAP_ADMIN_TOKEN", "0123456789abcdef0123", 1);
    struct config cfg;
    struct buf errors;
    buf_init(&errors, 4096);
    assert_int_equal(config_load(&cfg, CONFIG_ROLE_API, &errors), 0);
    assert_int_equal(cfg.shards, 128);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_int_equal(cfg.log_level, LL_DEBUG);
    assert_string_equal(cfg.node_id, "api-1");
    assert_string_equal(cfg.http_addr, "127.0.0.1:8080");
    assert_string_equal(cfg.admin_token, "0123456789abcdef0123");
    buf_free(&errors);
}

static void test_every_error_reported_with_name_and_allowed(void **state)
{
    (void)state;
    setenv("SUPERIMAP_SHARDS", "0", 1);
    setenv("SUPERIMAP_REDIS_TIMEOUT_MS", "12x", 1);
    setenv("SUPERIMAP_LOG_FORMAT", "xml", 1);
    setenv("SUPERIMAP_HTTP_ADDR", "localhost", 1);
    setenv("SUPERIMAP_NODE_ID", "bad id!", 1);
    setenv("SUPERIMAP_REDIS_URL", "rediss://x", 1);
    setenv("SUPERIMAP_ENCRYPTION_OLD_KEYS", KEY ",beef", 1);
    struct config cfg;
    struct buf errors;
    buf_init(&errors, 8192);
    /* ENCRYPTION_KEY unset too: eight problems, all in one report. */
    assert_int_equal(config_load(&cfg, CONFIG_ROLE_DISPATCHER, &errors), 8);
    const char *e = errors.data;
    assert_non_null(
        strstr(e, "SUPERIMAP_SHARDS=\"0\": invalid value: must be an integer from 1 to 16384"));
    assert_non_null(strstr(e, "SUPERIMAP_REDIS_TIMEOUT_MS=\"12x\""));
    assert_non_null(strstr(e, "must be one of text|json"));
    assert_non_null(strstr(e, "SUPERIMAP_HTTP_ADDR=\"localhost\""));
    assert_non_null(strstr(e, "SUPERIMAP_NODE_ID=\"bad id!\""));
    assert_non_null(strstr(e, "must start with redis://, unix:// or redis+sentinel://"));
    assert_non_null(strstr(e, "SUPERIMAP_ENCRYPTION_KEY: required but not set"));
    /* A secret's bad value is never echoed. */
    assert_non_null(strstr(e, "SUPERIMAP_ENCRYPTION_OLD_KEYS: invalid value"));
    assert_null(strstr(e, KEY));
    buf_free(&errors);
}

static void test_help_lists_role_variables_only(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/superimap-help-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    config_print_help(CONFIG_ROLE_WATCHER, "superimap-watcher", "Summary.", fd);
    char text[32768];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    assert_true(n > 0);
    text[n] = '\0';
    close(fd);
    unlink(tmpl);
    assert_non_null(strstr(text, "  SUPERIMAP_MAX_USERS\n"));
    assert_non_null(strstr(text, "default: 10000   allowed: 1..10000000"));
    assert_non_null(strstr(text, "127.0.0.1:9101"));
    assert_null(strstr(text, "127.0.0.1:8080")); /* the api's default, not the watcher's */
    assert_null(strstr(text, "SUPERIMAP_ADMIN_TOKEN"));
    assert_non_null(strstr(text, "Usage: superimap-watcher"));

    /* superimap-import: Redis, encryption, shards and logs only. */
    char tmpl2[] = "/tmp/superimap-help-XXXXXX";
    fd = mkstemp(tmpl2);
    assert_true(fd >= 0);
    config_print_help(CONFIG_ROLE_IMPORT, "superimap-import", "Summary.", fd);
    n = pread(fd, text, sizeof text - 1, 0);
    assert_true(n > 0);
    text[n] = '\0';
    close(fd);
    unlink(tmpl2);
    assert_non_null(strstr(text, "  SUPERIMAP_REDIS_URL\n"));
    assert_non_null(strstr(text, "  SUPERIMAP_ENCRYPTION_KEY\n"));
    assert_non_null(strstr(text, "  SUPERIMAP_SHARDS\n"));
    assert_null(strstr(text, "SUPERIMAP_HTTP_ADDR"));
    assert_null(strstr(text, "SUPERIMAP_NODE_ID"));
}

static void test_markdown_lists_every_variable_with_its_binaries(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/superimap-md-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    config_print_markdown(fd);
    char text[32768];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    assert_true(n > 0);
    text[n] = '\0';
    close(fd);
    unlink(tmpl);
    assert_non_null(strstr(text, "| `SUPERIMAP_MAX_USERS` | watcher | 10000 | `1..10000000` |"));
    assert_non_null(strstr(text,
                           "| `SUPERIMAP_ENCRYPTION_KEY` | api, watcher, dispatcher, import | "
                           "(required) | `secret` |"));
    assert_non_null(strstr(text, "| `SUPERIMAP_NODE_ID` | api, watcher, dispatcher | "));
    assert_non_null(strstr(text, "| `SUPERIMAP_HTTP_ADDR` | api | 127.0.0.1:8080 |"));
    assert_non_null(strstr(text, "| `SUPERIMAP_HTTP_ADDR` | dispatcher | 127.0.0.1:9102 |"));
    for (const struct config_var *v = config_vars; v->name != NULL; v++)
        assert_non_null(strstr(text, v->name));
}

static void test_split_addr(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(config_split_addr("127.0.0.1:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 0);
    assert_int_equal(config_split_addr("[::1]:8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    assert_int_equal(config_split_addr("host:65536", host, sizeof host, &port), -SIMAP_EINVAL);
    assert_int_equal(config_split_addr(":80", host, sizeof host, &port), -SIMAP_EINVAL);
    assert_int_equal(config_split_addr("nohost", host, sizeof host, &port), -SIMAP_EINVAL);
}

static void test_redis_url_forms(void **state)
{
    (void)state;
    struct redis_addr a;
    char err[128];
    assert_int_equal(redis_url_parse("redis://h.example:6380/3", NULL, &a, err, sizeof err), 0);
    assert_string_equal(a.host, "h.example");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 3);
    assert_int_equal(a.is_unix, 0);
    assert_string_equal(a.password, "");
    assert_int_equal(redis_url_parse("redis://:s3cret@h", NULL, &a, err, sizeof err), 0);
    assert_string_equal(a.password, "s3cret");
    assert_int_equal(a.port, 6379);
    assert_int_equal(
        redis_url_parse("redis://user:p@ss@[::1]:7000", "override", &a, err, sizeof err), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7000);
    assert_string_equal(a.password, "override");
    assert_int_equal(redis_url_parse("unix:///run/r.sock?db=2", NULL, &a, err, sizeof err), 0);
    assert_int_equal(a.is_unix, 1);
    assert_string_equal(a.path, "/run/r.sock");
    assert_int_equal(a.db, 2);
    char desc[300];
    redis_addr_describe(&a, desc, sizeof desc);
    assert_string_equal(desc, "unix:/run/r.sock");
}

static void test_redis_url_sentinel_form(void **state)
{
    (void)state;
    struct redis_addr a;
    char err[128];
    assert_int_equal(redis_url_parse("redis+sentinel://:pw@s1,s2:26380,[::1]:7/mymaster?db=4", NULL,
                                     &a, err, sizeof err),
                     0);
    assert_int_equal(a.nsentinels, 3);
    assert_string_equal(a.sentinels[0].host, "s1");
    assert_int_equal(a.sentinels[0].port, 26379);
    assert_string_equal(a.sentinels[1].host, "s2");
    assert_int_equal(a.sentinels[1].port, 26380);
    assert_string_equal(a.sentinels[2].host, "::1");
    assert_int_equal(a.sentinels[2].port, 7);
    assert_string_equal(a.master, "mymaster");
    assert_string_equal(a.password, "pw");
    assert_int_equal(a.db, 4);
    assert_int_equal(a.port, 0); /* unknown until the sentinels answer */
    char desc[300];
    redis_addr_describe(&a, desc, sizeof desc);
    assert_string_equal(desc, "sentinel:mymaster@s1:26379,s2:26380,::1:7");
    snprintf(a.host, sizeof a.host, "10.0.0.5");
    a.port = 6380;
    redis_addr_describe(&a, desc, sizeof desc);
    assert_string_equal(desc,
                        "sentinel:mymaster@s1:26379,s2:26380,::1:7 (primary 10.0.0.5:6380/4)");
    assert_int_equal(redis_url_parse("redis+sentinel://h/m", "over", &a, err, sizeof err), 0);
    assert_string_equal(a.password, "over");
    assert_int_equal(a.nsentinels, 1);
}

static void test_redis_url_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "redis://",
        "redis://:0",
        "redis://h:0",
        "redis://h:99999",
        "redis://h:12ab",
        "redis://h/x",
        "unix://relative",
        "unix://",
        "unix:///s?database=1",
        "http://h",
        "redis://[::1",
        "redis://user@h",
        "redis+sentinel://h",
        "redis+sentinel://h/",
        "redis+sentinel:///m",
        "redis+sentinel://h,/m",
        "redis+sentinel://h:0/m",
        "redis+sentinel://h/m?db=x",
        "redis+sentinel://h/m n",
        "redis+sentinel://a,b,c,d,e,f,g,h,i/m",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct redis_addr a;
        char err[128] = "";
        if (redis_url_parse(bad[i], NULL, &a, err, sizeof err) != -SIMAP_EINVAL)
            fail_msg("accepted bad URL '%s'", bad[i]);
        assert_true(err[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_fill_every_field, clear_env),
        cmocka_unit_test_setup(test_values_parsed_and_per_role_defaults, clear_env),
        cmocka_unit_test_setup(test_every_error_reported_with_name_and_allowed, clear_env),
        cmocka_unit_test(test_help_lists_role_variables_only),
        cmocka_unit_test(test_markdown_lists_every_variable_with_its_binaries),
        cmocka_unit_test(test_split_addr),
        cmocka_unit_test(test_redis_url_forms),
        cmocka_unit_test(test_redis_url_sentinel_form),
        cmocka_unit_test(test_redis_url_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
