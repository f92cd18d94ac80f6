/*
 * tests/integration/prom_fixture.h: what the Prometheus checks of
 * test_monitoring.c and test_tracer.c share: promtool (scripts/promtool.sh
 * puts it in build/tools; SUPERIMAP_PROMTOOL names another), `promtool check
 * metrics` on a node's /metrics, and the check that every superimap_* metric
 * docker/prometheus/alerts.yml and docker/grafana/superimap.json name is
 * exported by a live node. Header-only (static functions).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_PROM_FIXTURE_H
#define TESTS_INTEGRATION_PROM_FIXTURE_H

#include <ctype.h>
#include <stdio.h>
#include <unistd.h>


#include "tests/integration/system.h"

#define PROM_FN static __attribute__((unused))

/* The names exported by the nodes read so far: " a b c_bucket ... ". */
struct prom_names {
    char text[1 << 16];
};

/* promtool's path into out; 0, or -1 saying how to get it. */
PROM_FN int prom_tool(char *out, size_t outlen)
{
    const char *env = getenv("SUPERIMAP_PROMTOOL");
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    if (env != NULL && env[0] != '\0')
        snprintf(out, outlen, "%s", env);
    else
        snprintf(out, outlen, "%s/build/tools/promtool", src ? src : ".");
    if (access(out, X_OK) == 0)
        return 0;
    fprintf(stderr, "%s not found: `make deps` puts it there (scripts/promtool.sh)\n", out);
    return -1;
}

/* `promtool check metrics` has nothing to say about node n's /metrics
 * (saved as <dir>/metrics-<id>.txt); its "# TYPE" names (and a histogram's
 * _bucket, _sum, _count) are added to names. */
PROM_FN void prom_check_node(const char *promtool, const char *dir, const struct sys_node *n,
                             struct prom_names *names)
{
    static char body[1 << 20];
    assert_int_equal(harness_http_get(n->p.port, "/metrics", body, sizeof body), 200);
    char path[600], cmd[1600], out[8192];
    snprintf(path, sizeof path, "%s/metrics-%s.txt", dir, n->id);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(body, f) >= 0);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "'%s' check metrics < '%s' 2>&1", promtool, path);
    int rc = harness_sh(cmd, out, sizeof out);
    if (rc != 0 || out[0] != '\0')
        fprintf(stderr, "promtool check metrics on %s (exit %d):\n%s\n", n->id, rc, out);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "");
    char *save = NULL;
    for (char *line = strtok_r(body, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char name[256], type[32];
        if (sscanf(line, "# TYPE %255s %31s", name, type) != 2)
            continue;
        size_t len = strlen(names->text), cap = sizeof names->text;
        snprintf(names->text + len, cap - len, "%s%s ", len == 0 ? " " : "", name);
        if (strcmp(type, "histogram") == 0) {
            static const char *const parts[] = {"_bucket", "_sum", "_count"};
            for (size_t i = 0; i < 3; i++) {
                len = strlen(names->text);
                snprintf(names->text + len, cap - len, "%s%s ", name, parts[i]);
            }
        }
    }
}

/* Every superimap_* word of the file at path (relative to the source tree)
 * that starts with prefix ("superimap_" for all) and not with skip (NULL:
 * none) is in names; says which are not. Returns how many it checked. */
PROM_FN int prom_check_names(const char *path, const struct prom_names *names, const char *prefix,
                             const char *skip)
{
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", src ? src : ".", path);
    FILE *f = fopen(full, "r");
    assert_non_null(f);
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    int seen = 0, missing = 0;
    for (const char *p = strstr(text, "superimap_"); p != NULL; p = strstr(p, "superimap_")) {
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
            p++;
            continue;
        }
        char word[160];
        size_t w = 0;
        while ((isalnum((unsigned char)p[w]) || p[w] == '_') && w < sizeof word - 1) {
            word[w] = p[w];
            w++;
        }
        word[w] = '\0';
        p += w;
        if (strncmp(word, prefix, strlen(prefix)) != 0 ||
            (skip != NULL && strncmp(word, skip, strlen(skip)) == 0))
            continue;
        char needle[176];
        snprintf(needle, sizeof needle, " %s ", word);
        seen++;
        if (strstr(names->text, needle) == NULL) {
            fprintf(stderr, "%s names %s, which no node exports\n", path, word);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
    return seen;
}

#endif
