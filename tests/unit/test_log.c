/*
 * Unit tests of core/log: text and JSON lines, levels, components, masking.
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
#include <yajl/yajl_tree.h>

#include "core/err.h"
#include "core/log.h"

static char path[64];
static char text[8192];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/superimap-log-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_shutdown();
    unlink(path);
    return 0;
}

static const char *contents(void)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    return text;
}

static int evaluations;
static int count_evaluation(void)
{
    return ++evaluations;
}

static void test_text_line_has_time_level_program_node_and_fields(void **state)
{
    (void)state;
    assert_int_equal(log_init("superimap-test", "n1", LL_INFO, LOG_FORMAT_TEXT, NULL, path), 0);
    log_warn("server closed connection acct=%d state=%s err=\"%s\"", 42, "IDLE", "reset by peer");
    const char *s = contents();
    /* 2025-01-31T12:00:00.123Z warn superimap-test node=n1 msg=... */
    assert_int_equal(strlen(s) > 25, 1);
    assert_true(s[4] == '-' && s[10] == 'T' && s[23] == 'Z');
    assert_non_null(strstr(s, " warn superimap-test node=n1 msg=\"server closed connection\" "
                              "acct=42 state=IDLE err=\"reset by peer\"\n"));
}

static void test_levels_filter_without_evaluating_arguments(void **state)
{
    (void)state;
    assert_int_equal(log_init("p", "n", LL_WARN, LOG_FORMAT_TEXT, NULL, path), 0);
    evaluations = 0;
    log_info("hidden n=%d", count_evaluation());
    log_debug("hidden n=%d", count_evaluation());
    assert_int_equal(evaluations, 0);
    log_error("shown n=%d", count_evaluation());
    assert_int_equal(evaluations, 1);
    const char *s = contents();
    assert_null(strstr(s, "hidden"));
    assert_non_null(strstr(s, " error p node=n msg=shown n=1"));
}

static void test_component_debug_on_at_info(void **state)
{
    (void)state;
    assert_int_equal(log_init("p", "n", LL_INFO, LOG_FORMAT_TEXT, "redis,imap", path), 0);
    log_debugc("imap", "chatter a=1");
    log_debugc("http", "other b=2");
    log_debugc("ima", "prefix c=3");
    const char *s = contents();
    assert_non_null(strstr(s, "comp=imap msg=chatter a=1"));
    assert_null(strstr(s, "other"));
    assert_null(strstr(s, "prefix"));
}

static void test_json_lines_parse_and_carry_fields(void **state)
{
    (void)state;
    assert_int_equal(log_init("p", "node-7", LL_DEBUG, LOG_FORMAT_JSON, NULL, path), 0);
    log_info("user moved uid=%s detail=\"a \\\"quoted\\\" word\" ctl=%s", "u1", "x\ty");
    char err[128];
    yajl_val v = yajl_tree_parse(contents(), err, sizeof err);
    assert_non_null(v);
    const char *p_msg[] = {"msg", NULL}, *p_uid[] = {"uid", NULL}, *p_node[] = {"node", NULL},
               *p_detail[] = {"detail", NULL}, *p_level[] = {"level", NULL},
               *p_ctl[] = {"ctl", NULL};
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, p_msg, yajl_t_string)), "user moved");
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, p_uid, yajl_t_string)), "u1");
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, p_node, yajl_t_string)), "node-7");
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, p_level, yajl_t_string)), "info");
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, p_detail, yajl_t_string)),
                        "a \"quoted\" word");
    assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, p_ctl, yajl_t_string)), "x\ty");
    yajl_tree_free(v);
}

static void test_registered_secrets_never_written(void **state)
{
    (void)state;
    assert_int_equal(log_init("p", "n", LL_INFO, LOG_FORMAT_TEXT, NULL, path), 0);
    log_add_secret("hunter2-password");
    log_add_secret("abc"); /* too short to mask safely: ignored */
    log_info("oops password=%s url=redis://:%s@h", "hunter2-password", "hunter2-password");
    const char *s = contents();
    assert_null(strstr(s, "hunter2"));
    assert_non_null(strstr(s, "password=*** url=redis://:***@h"));
    assert_non_null(strstr(s, "oops"));
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse("debug"), LL_DEBUG);
    assert_int_equal(log_level_parse("error"), LL_ERROR);
    assert_int_equal(log_level_parse("loud"), -1);
}

static void test_reopen_follows_rotation(void **state)
{
    (void)state;
    assert_int_equal(log_init("p", "n", LL_INFO, LOG_FORMAT_TEXT, NULL, path), 0);
    log_info("before rotation");
    char rotated[80];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(log_reopen(), 0);
    log_info("after rotation");
    const char *s = contents();
    assert_non_null(strstr(s, "after rotation"));
    assert_null(strstr(s, "before rotation"));
    unlink(rotated);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_line_has_time_level_program_node_and_fields,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels_filter_without_evaluating_arguments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_component_debug_on_at_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lines_parse_and_carry_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registered_secrets_never_written, setup, teardown),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test_setup_teardown(test_reopen_follows_rotation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
