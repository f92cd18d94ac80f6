/*
 * web/openapi.json against the api that serves it:
 *   - every route of the router's tables (`superimap-api routes`, {v} read
 *     as v1 and v2, :name as {name}) is an operation of the document, and
 *     every operation of the document is a route;
 *   - every operation has a unique operationId, responses, and tags that the
 *     document describes;
 *   - a running api serves the file, byte for byte, at /api/v1/openapi.json
 *     and /api/v2/openapi.json;
 *   - Redocly's linter (@redocly/cli from the npm registry, test-only,
 *     installed into tests/openapi/) finds no error and no warning.
 *
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <unistd.h>


#include "tests/integration/harness.h"
#include "tests/integration/test_api_client.h"

#define MAX_OPS 256

struct op {
    char method[8]; /* lower case, as OpenAPI writes it */
    char path[160];
    int matched;
};

static struct op routes[MAX_OPS], docs[MAX_OPS];
static size_t nroutes, ndocs;

static void add(struct op *ops, size_t *n, const char *method, const char *path)
{
    assert_true(*n < MAX_OPS);
    struct op *o = &ops[(*n)++];
    size_t i = 0;
    for (; method[i] != '\0' && i < sizeof o->method - 1; i++)
        o->method[i] = (char)tolower((unsigned char)method[i]);
    o->method[i] = '\0';
    snprintf(o->path, sizeof o->path, "%s", path);
    o->matched = 0;
}

/* A router pattern as OpenAPI paths: ":name" -> "{name}", "{v}" -> v1, v2. */
static void add_route(const char *method, const char *pattern)
{
    char path[160];
    size_t o = 0;
    for (const char *p = pattern; *p != '\0' && o < sizeof path - 2;) {
        if (*p == ':') {
            path[o++] = '{';
            p++;
            while (*p != '\0' && *p != '/' && o < sizeof path - 2)
                path[o++] = *p++;
            path[o++] = '}';
        } else {
            path[o++] = *p++;
        }
    }
    path[o] = '\0';
    char *v = strstr(path, "{v}");
    if (v == NULL) {
        add(routes, &nroutes, method, path);
        return;
    }
    for (int version = 1; version <= 2; version++) {
        char one[160];
        snprintf(one, sizeof one, "%.*sv%d%s", (int)(v - path), path, version, v + 3);
        add(routes, &nroutes, method, one);
    }
}

static void read_routes(void)
{
    char bin[512], cmd[600];
    static char out[1 << 16];
    harness_bin("superimap-api", bin, sizeof bin);
    snprintf(cmd, sizeof cmd, "'%s' routes", bin);
    assert_int_equal(harness_sh(cmd, out, sizeof out), 0);
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char method[16], pattern[160], auth[16];
        assert_int_equal(sscanf(line, "%15s %159s %15s", method, pattern, auth), 3);
        add_route(method, pattern);
    }
    assert_true(nroutes >= 40);
}

static void read_docs(void)
{
    yajl_val paths = json_get(openapi(), "paths");
    assert_true(YAJL_IS_OBJECT(paths));
    for (size_t i = 0; i < paths->u.object.len; i++) {
        yajl_val item = paths->u.object.values[i];
        for (size_t j = 0; j < item->u.object.len; j++) {
            const char *m = item->u.object.keys[j];
            if (strcmp(m, "get") == 0 || strcmp(m, "post") == 0 || strcmp(m, "put") == 0 ||
                strcmp(m, "patch") == 0 || strcmp(m, "delete") == 0)
                add(docs, &ndocs, m, paths->u.object.keys[i]);
        }
    }
}

static void test_every_route_is_documented_and_every_operation_routed(void **state)
{
    (void)state;
    read_routes();
    read_docs();
    int bad = 0;
    for (size_t i = 0; i < nroutes; i++)
        for (size_t j = 0; j < ndocs; j++)
            if (strcmp(routes[i].method, docs[j].method) == 0 &&
                strcmp(routes[i].path, docs[j].path) == 0)
                routes[i].matched = docs[j].matched = 1;
    for (size_t i = 0; i < nroutes; i++)
        if (!routes[i].matched) {
            fprintf(stderr, "route %s %s is not in web/openapi.json\n", routes[i].method,
                    routes[i].path);
            bad++;
        }
    for (size_t j = 0; j < ndocs; j++)
        if (!docs[j].matched) {
            fprintf(stderr, "web/openapi.json has %s %s, which no route serves\n", docs[j].method,
                    docs[j].path);
            bad++;
        }
    assert_int_equal(bad, 0);
    assert_int_equal(nroutes, ndocs);
}

static int tag_described(const char *name)
{
    yajl_val tags = json_get(openapi(), "tags");
    for (size_t i = 0; YAJL_IS_ARRAY(tags) && i < tags->u.array.len; i++) {
        const char *n = json_get_str(tags->u.array.values[i], "name");
        const char *d = json_get_str(tags->u.array.values[i], "description");
        if (n != NULL && strcmp(n, name) == 0)
            return d != NULL && d[0] != '\0';
    }
    return 0;
}

static void test_every_operation_has_an_id_responses_and_described_tags(void **state)
{
    (void)state;
    yajl_val paths = json_get(openapi(), "paths");
    static char ids[MAX_OPS][96];
    size_t nids = 0;
    for (size_t i = 0; i < paths->u.object.len; i++) {
        yajl_val item = paths->u.object.values[i];
        for (size_t j = 0; j < item->u.object.len; j++) {
            const char *m = item->u.object.keys[j];
            if (strcmp(m, "parameters") == 0)
                continue;
            yajl_val op = item->u.object.values[j];
            const char *id = json_get_str(op, "operationId");
            if (id == NULL)
                fail_msg("%s %s has no operationId", m, paths->u.object.keys[i]);
            for (size_t k = 0; k < nids; k++)
                if (strcmp(ids[k], id) == 0)
                    fail_msg("operationId %s is used twice", id);
            assert_true(nids < MAX_OPS);
            snprintf(ids[nids++], sizeof ids[0], "%s", id);
            yajl_val responses = json_get(op, "responses");
            assert_true(YAJL_IS_OBJECT(responses) && responses->u.object.len > 0);
            yajl_val tags = json_get(op, "tags");
            assert_true(YAJL_IS_ARRAY(tags) && tags->u.array.len > 0);
            for (size_t t = 0; t < tags->u.array.len; t++) {
                const char *name = YAJL_GET_STRING(tags->u.array.values[t]);
                if (name == NULL || !tag_described(name))
                    fail_msg("%s uses tag %s, which the document does not describe", id,
                             name ? name : "?");
            }
        }
    }
    assert_true(nids >= 50);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[1 << 20];
    *len = fread(text, 1, sizeof text - 1, f);
    text[*len] = '\0';
    fclose(f);
    return text;
}

static void test_the_api_serves_the_file_at_both_versions(void **state)
{
    (void)state;
    struct redis_srv redis;
    assert_int_equal(harness_redis_start(&redis), 0);
    struct proc api;
    const char *env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, NULL};
    assert_int_equal(harness_node_start(&api, &redis, "superimap-api", "api-openapi", env), 0);
    char path[1024];
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    snprintf(path, sizeof path, "%s/web/openapi.json", src ? src : ".");
    size_t len;
    const char *file = slurp(path, &len);
    static char body[1 << 20];
    const char *served[] = {"/api/v1/openapi.json", "/api/v2/openapi.json"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(harness_http_get(api.port, served[i], body, sizeof body), 200);
        assert_int_equal(strlen(body), len);
        assert_memory_equal(body, file, len);
    }
    harness_proc_stop(&api);
    harness_redis_stop(&redis);
}

static void test_redocly_finds_no_error_and_no_warning(void **state)
{
    (void)state;
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    char dir[1024], probe[1100];
    snprintf(dir, sizeof dir, "%s/tests/openapi", src ? src : ".");
    snprintf(probe, sizeof probe, "%s/node_modules/.bin/redocly", dir);
    static char out[1 << 16];
    char cmd[6000];
    /* npm's cache and Redocly's settings go to a HOME of the test's own,
     * never into the source tree. */
    char home[] = "/tmp/superimap-npm-XXXXXX";
    assert_non_null(mkdtemp(home));
    if (access(probe, X_OK) != 0) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && HOME='%s' npm install --no-save --no-package-lock --no-audit "
                 "--no-fund 2>&1",
                 dir, home);
        int rc = harness_sh(cmd, out, sizeof out);
        if (rc != 0 || access(probe, X_OK) != 0)
            fail_msg("npm could not install @redocly/cli into %s (exit %d; needs the npm "
                     "registry and Debian's nodejs and npm, make deps):\n%s",
                     dir, rc, out);
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s' && HOME='%s' '%s' lint '%s/web/openapi.json' --format=stylish 2>&1", dir,
             home, probe, src ? src : "..");
    int rc = harness_sh(cmd, out, sizeof out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    char ignored[64];
    harness_sh(cmd, ignored, sizeof ignored);
    if (rc != 0 || strstr(out, "warning") != NULL || strstr(out, "error") != NULL)
        fprintf(stderr, "redocly lint (exit %d):\n%s\n", rc, out);
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "warning"));
    assert_non_null(strstr(out, "Your API description is valid"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_is_documented_and_every_operation_routed),
        cmocka_unit_test(test_every_operation_has_an_id_responses_and_described_tags),
        cmocka_unit_test(test_the_api_serves_the_file_at_both_versions),
        cmocka_unit_test(test_redocly_finds_no_error_and_no_warning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
