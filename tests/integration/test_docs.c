/*
 * The README's configuration table is what the binaries actually read: it
 * must equal `superimap-api --config-markdown` (regenerate it with
 * `make readme-config`).
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

#include "tests/integration/harness.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return strdup(text);
}

static void test_readme_config_table_matches_binaries(void **state)
{
    (void)state;
    char dir[] = "/tmp/superimap-docs-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/table.md", dir);
    char path[512];
    const char *argv[] = {harness_bin("superimap-api", path, sizeof path), "--config-markdown",
                          NULL};
    assert_int_equal(harness_spawn(&p, argv, NULL), 0);
    assert_int_equal(harness_proc_wait(&p, 10000), 0);
    assert_int_equal(p.exit_code, 0);
    char *table = slurp(p.log);
    assert_non_null(table);
    assert_non_null(strstr(table, "`SUPERIMAP_REDIS_URL`"));

    const char *src = getenv("SUPERIMAP_SRC_DIR");
    char readme_path[512];
    snprintf(readme_path, sizeof readme_path, "%s/README.md", src ? src : ".");
    char *readme = slurp(readme_path);
    assert_non_null(readme);
    char *begin = strstr(readme, "<!-- BEGIN config");
    assert_non_null(begin);
    begin = strchr(begin, '\n') + 1;
    char *end = strstr(begin, "<!-- END config");
    assert_non_null(end);
    *end = '\0';
    if (strcmp(begin, table) != 0)
        fail_msg("README.md's configuration table is out of date: run `make readme-config`");
    free(table);
    free(readme);
    unlink(p.log);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_config_table_matches_binaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
