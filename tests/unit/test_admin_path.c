/*
 * Unit tests of cmd/api/admin_path: which paths under /admin go to the
 * router, which name a file of web/admin/ (never a parent, a dot file or a
 * percent-encoded byte), and the files' types. The api is not part of
 * libsuperimap.a, so its source is included here.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/api/admin_path.c"

static void test_routes_go_to_the_router_and_admin_to_its_slash(void **state)
{
    (void)state;
    char rel[64];
    static const char *const routed[] = {"/admin/api/fleet", "/admin/api/", "/admin/login",
                                         "/admin/logout", "/admin/api/admin-users/x/disable"};
    for (size_t i = 0; i < sizeof routed / sizeof routed[0]; i++)
        assert_int_equal(admin_path_classify(routed[i], rel, sizeof rel), ADMIN_PATH_ROUTER);
    assert_int_equal(admin_path_classify("/admin", rel, sizeof rel), ADMIN_PATH_SLASH);
    /* civetweb hands "/adminx" to the "/admin" handler too. */
    assert_int_equal(admin_path_classify("/adminx", rel, sizeof rel), ADMIN_PATH_NONE);
}

static void test_files_are_plain_names_under_web_admin(void **state)
{
    (void)state;
    char rel[64];
    assert_int_equal(admin_path_classify("/admin/", rel, sizeof rel), ADMIN_PATH_FILE);
    assert_string_equal(rel, "index.html");
    assert_int_equal(admin_path_classify("/admin/admin.js", rel, sizeof rel), ADMIN_PATH_FILE);
    assert_string_equal(rel, "admin.js");
    assert_int_equal(admin_path_classify("/admin/img/a-b_c.1.svg", rel, sizeof rel),
                     ADMIN_PATH_FILE);
    assert_string_equal(rel, "img/a-b_c.1.svg");
    static const char *const refused[] = {
        "/admin/..",       "/admin/../openapi.json", "/admin/%2e%2e/x", "/admin/.hidden",
        "/admin/a/.git/x", "/admin//admin.css",      "/admin/a/",       "/admin/a\\b",
        "/admin/a b",      "/admin/a%20b",           "/admin/a?b",      "/admin/a/b/c/d/e/f/g/h/i",
        "/admin/é.html",   "/admin/a\x01",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (admin_path_classify(refused[i], rel, sizeof rel) != ADMIN_PATH_NONE)
            fail_msg("accepted %s as %s", refused[i], rel);
    /* Eight segments are the most; a name longer than rel holds is none. */
    assert_int_equal(admin_path_classify("/admin/a/b/c/d/e/f/g/h", rel, sizeof rel),
                     ADMIN_PATH_FILE);
    char small[8];
    assert_int_equal(admin_path_classify("/admin/admin.css", small, sizeof small), ADMIN_PATH_NONE);
}

static void test_pages_and_types_follow_the_extension(void **state)
{
    (void)state;
    assert_true(admin_path_is_page("index.html"));
    assert_false(admin_path_is_page("admin.css"));
    assert_false(admin_path_is_page(".html"));
    assert_string_equal(admin_path_type("admin.css"), "text/css; charset=utf-8");
    assert_string_equal(admin_path_type("admin.js"), "text/javascript; charset=utf-8");
    assert_string_equal(admin_path_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(admin_path_type("view.png"), "image/png");
    assert_string_equal(admin_path_type("noext"), "application/octet-stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_go_to_the_router_and_admin_to_its_slash),
        cmocka_unit_test(test_files_are_plain_names_under_web_admin),
        cmocka_unit_test(test_pages_and_types_follow_the_extension),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
