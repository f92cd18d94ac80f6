/*
 * Unit tests of core/rsync and of the SHA cache of core/scripts, against a
 * real redis-server (tests/unit/redis_fixture.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/scripts.h"
#include "tests/unit/redis_fixture.h"

#define TEST_PASSWORD "s3cret-pw-42"

static int setup_plain(void **state)
{
    struct redis_fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL || redis_fixture_start(fx, NULL) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int setup_auth(void **state)
{
    struct redis_fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL || redis_fixture_start(fx, TEST_PASSWORD) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct redis_fixture *fx = *state;
    if (fx != NULL) {
        redis_fixture_stop(fx);
        free(fx);
    }
    return 0;
}

static struct rsync *make(const struct redis_fixture *fx, const char *password, int timeout_ms)
{
    struct rsync_opts o = {.url = fx->url, .password = password, .timeout_ms = timeout_ms};
    struct rsync *rs = rsync_new(&o);
    assert_non_null(rs);
    return rs;
}

static long long command_calls(const struct redis_fixture *fx, const char *cmd)
{
    redisReply *r = redis_fixture_cmd(fx, "INFO commandstats");
    assert_non_null(r);
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    const char *p = strstr(r->str, key);
    long long v = p ? strtoll(p + strlen(key), NULL, 10) : 0;
    freeReplyObject(r);
    return v;
}

static void test_new_rejects_bad_url_and_does_no_io(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync_opts bad = {.url = "nope://x"};
    assert_null(rsync_new(&bad));
    long long before = redis_fixture_int(fx, "CLIENT ID");
    struct rsync *rs = make(fx, NULL, 1000);
    long long after = redis_fixture_int(fx, "CLIENT ID");
    assert_int_equal(after, before + 1); /* only the fixture's own connection */
    rsync_free(rs);
    rsync_free(NULL);
}

static void test_command_round_trip(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync *rs = make(fx, NULL, 2000);
    redisReply *r = rsync_command(rs, "SET %s %b", "k", "a\0b", (size_t)3);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_int_equal(rsync_err(rs), 0);
    freeReplyObject(r);
    const char *argv[] = {"GET", "k"};
    r = rsync_command_argv(rs, 2, argv, NULL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, "a\0b", 3);
    freeReplyObject(r);

    /* An error reply is a reply, and also the call's error. */
    r = rsync_command(rs, "INCR k");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(rsync_err(rs), -SIMAP_EREPLY);
    assert_non_null(strstr(rsync_errstr(rs), "not an integer"));
    freeReplyObject(r);
    r = rsync_command(rs, "PING");
    assert_non_null(r);
    assert_int_equal(rsync_err(rs), 0);
    assert_string_equal(rsync_errstr(rs), "");
    freeReplyObject(r);
    rsync_free(rs);
}

static void test_select_uses_db_from_url(void **state)
{
    struct redis_fixture *fx = *state;
    char url[200];
    snprintf(url, sizeof url, "%s?db=5", fx->url);
    struct rsync_opts o = {.url = url, .timeout_ms = 2000};
    struct rsync *rs = rsync_new(&o);
    redisReply *r = rsync_command(rs, "SET where db5");
    assert_non_null(r);
    freeReplyObject(r);
    rsync_free(rs);
    assert_int_equal(redis_fixture_int(fx, "EXISTS where"), 0);
    assert_int_equal(redis_fixture_int(fx, "DBSIZE"), 0);
    redisContext *c = redis_fixture_connect(fx, 2000);
    freeReplyObject(redisCommand(c, "SELECT 5"));
    redisReply *g = redisCommand(c, "GET where");
    assert_string_equal(g->str, "db5");
    freeReplyObject(g);
    redisFree(c);
}

static const struct script_source echo_script = {"test_echo", "return {KEYS[1], ARGV[1]}"};

static void check_echo(redisReply *r)
{
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "key1");
    assert_string_equal(r->element[1]->str, "arg1");
    freeReplyObject(r);
}

static void test_script_falls_back_to_eval_on_noscript(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync *rs = make(fx, NULL, 2000);
    const char *argv[] = {"key1", "arg1"};
    check_echo(rsync_script_source(rs, &echo_script, 1, 2, argv, NULL));
    assert_int_equal(rsync_err(rs), 0);
    assert_int_equal(command_calls(fx, "eval"), 1);
    check_echo(rsync_script_source(rs, &echo_script, 1, 2, argv, NULL));
    assert_int_equal(command_calls(fx, "eval"), 1); /* cached by the EVAL */
    assert_int_equal(command_calls(fx, "evalsha"), 2);
    redisReply *f = redis_fixture_cmd(fx, "SCRIPT FLUSH");
    freeReplyObject(f);
    check_echo(rsync_script_source(rs, &echo_script, 1, 2, argv, NULL));
    assert_int_equal(command_calls(fx, "eval"), 2);

    assert_null(rsync_script(rs, "no_such_script", 0, 0, NULL, NULL));
    assert_int_equal(rsync_err(rs), -SIMAP_ENOTFOUND);
    assert_null(rsync_script_source(rs, &echo_script, 3, 2, argv, NULL));
    assert_int_equal(rsync_err(rs), -SIMAP_EINVAL);
    rsync_free(rs);
}

static void test_load_scripts_matches_cached_shas_and_names_broken_script(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync *rs = make(fx, NULL, 2000);
    assert_int_equal(rsync_load_scripts(rs), 0);
    for (size_t i = 0; i < script_source_count; i++) {
        const char *sha = script_sha(&script_sources[i]);
        assert_non_null(sha);
        assert_int_equal(strlen(sha), SCRIPT_SHA_HEX_LEN);
        redisReply *r = rsync_command(rs, "SCRIPT EXISTS %s", sha);
        assert_int_equal(r->element[0]->integer, 1);
        freeReplyObject(r);
    }
    static const struct script_source srcs[] = {{"fine", "return 1"}, {"broken_one", "return {"}};
    assert_int_equal(rsync_load_script_sources(rs, srcs, 2), -SIMAP_EREPLY);
    assert_int_equal(rsync_err(rs), -SIMAP_EREPLY);
    assert_non_null(strstr(rsync_errstr(rs), "script broken_one:"));
    rsync_free(rs);
}

static void test_script_sha_known_digest_and_foreign_source(void **state)
{
    (void)state;
    char sha[SCRIPT_SHA_HEX_LEN + 1];
    assert_int_equal(script_sha1_hex("return 1", sha), 0);
    /* sha1("return 1"), as Redis' SCRIPT LOAD "return 1" answers it. */
    assert_string_equal(sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    assert_null(script_sha(&echo_script)); /* not in the embedded table */
    assert_null(script_sha(NULL));
    if (script_source_count > 0) {
        script_sha1_hex(script_sources[0].body, sha);
        assert_string_equal(script_sha(&script_sources[0]), sha);
        assert_ptr_equal(script_find(script_sources[0].name), &script_sources[0]);
    }
    assert_null(script_find("no_such_script"));
}

static void test_command_timeout_returns_null_and_next_call_reconnects(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync *rs = make(fx, NULL, 300);
    redisReply *r = rsync_command(rs, "PING");
    assert_non_null(r);
    freeReplyObject(r);

    redisReply *p = redis_fixture_cmd(fx, "CLIENT PAUSE 800 ALL");
    assert_non_null(p);
    freeReplyObject(p);
    double t0 = fixture_now();
    assert_null(rsync_command(rs, "PING"));
    double took = fixture_now() - t0;
    assert_int_equal(rsync_err(rs), -SIMAP_ETIMEDOUT);
    assert_true(took >= 0.25 && took < 0.8);

    p = redis_fixture_cmd(fx, "PING"); /* returns when the pause is over */
    assert_non_null(p);
    freeReplyObject(p);
    long long conns = redis_fixture_int(fx, "CLIENT ID");
    r = rsync_command(rs, "PING");
    assert_non_null(r);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    /* A new connection was made (ids grow), not the timed-out one reused. */
    r = rsync_command(rs, "CLIENT ID");
    assert_true(r->integer > conns);
    freeReplyObject(r);
    rsync_free(rs);
}

static void test_reconnects_after_server_restart(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync *rs = make(fx, NULL, 2000);
    redisReply *r = rsync_command(rs, "SET k 1");
    assert_non_null(r);
    freeReplyObject(r);

    redis_fixture_kill(fx, SIGTERM);
    double t0 = fixture_now();
    assert_null(rsync_command(rs, "PING")); /* down: fails fast */
    assert_int_equal(rsync_err(rs), -SIMAP_ECONN);
    assert_non_null(strstr(rsync_errstr(rs), fx->sock));
    assert_true(fixture_now() - t0 < 1.0);

    assert_int_equal(redis_fixture_spawn(fx), 0);
    r = rsync_command(rs, "EXISTS k"); /* the first call after the restart works */
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    /* A restart while the connection is idle is noticed before sending. */
    redis_fixture_kill(fx, SIGTERM);
    assert_int_equal(redis_fixture_spawn(fx), 0);
    r = rsync_command(rs, "PING");
    assert_non_null(r);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    rsync_free(rs);
}

static void test_wrong_password_reports_auth_error(void **state)
{
    struct redis_fixture *fx = *state;
    struct rsync *rs = make(fx, "wrong-password", 2000);
    assert_null(rsync_command(rs, "PING"));
    assert_int_equal(rsync_err(rs), -SIMAP_EAUTH);
    assert_non_null(strstr(rsync_errstr(rs), "AUTH"));
    assert_non_null(strstr(rsync_errstr(rs), "WRONGPASS"));
    assert_null(strstr(rsync_errstr(rs), "wrong-password"));
    rsync_free(rs);

    rs = make(fx, TEST_PASSWORD, 2000);
    redisReply *r = rsync_command(rs, "PING");
    assert_non_null(r);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    rsync_free(rs);

    rs = make(fx, NULL, 2000); /* no password at all */
    r = rsync_command(rs, "PING");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "NOAUTH"));
    freeReplyObject(r);
    rsync_free(rs);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every main does: a dead peer is an error, not a kill */
    log_init("test_rsync", "-", LL_ERROR, LOG_FORMAT_TEXT, NULL, NULL);
    if (scripts_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_rejects_bad_url_and_does_no_io, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_command_round_trip, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_select_uses_db_from_url, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_script_falls_back_to_eval_on_noscript, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_load_scripts_matches_cached_shas_and_names_broken_script, setup_plain, teardown),
        cmocka_unit_test(test_script_sha_known_digest_and_foreign_source),
        cmocka_unit_test_setup_teardown(test_command_timeout_returns_null_and_next_call_reconnects,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_reconnects_after_server_restart, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password_reports_auth_error, setup_auth,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    scripts_shutdown();
    log_shutdown();
    return failed;
}
