/*
 * The partner API's two versions against a real redis-server and a real
 * superimap-api: one table of every route and case (unknown key, unknown
 * provider, unknown connection, unknown user, validation error, conflict,
 * success of each verb), walked once under /api/v1, which must answer as the
 * original did (200, 400 and 404 with its plain-text messages), and once
 * under /api/v2, which keeps today's answers (201, 409, 401, JSON errors).
 * Every answer is also checked against web/openapi.json. The README's
 * status-code table is this table.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

static struct redis_srv redis;
static struct proc api;

/* Unknown keys fail authentication on purpose: the per-address guard must
 * not turn the table's later rows into 429s. */
static const char *const versions_env[] = {
    "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
    "SUPERIMAP_API_RATE_LIMIT=0", "SUPERIMAP_API_AUTH_FAILURE_BURST=1000", NULL};

static int suite_setup(void **state)
{
    (void)state;
    if (harness_redis_start(&redis) < 0 ||
        harness_node_start(&api, &redis, "superimap-api", "api-versions", versions_env) < 0)
        return -1;
    return harness_wait_http(api.port, "/readyz", 200, 10000);
}

static int suite_teardown(void **state)
{
    (void)state;
    return api_suite_stop(&redis);
}

enum key_kind { KEY_GOOD, KEY_UNKNOWN, KEY_NONE };

/* One request and its answer in each version. Paths and templates hold
 * "{v}" for the version; a v1 error's body is its text exactly, a v2
 * error's is JSON with error.code. */
struct row {
    const char *what;
    const char *method, *path, *form;
    enum key_kind key;
    const char *tmpl;
    int v1;
    const char *v1_text; /* NULL: a JSON success */
    int v2;
    const char *v2_code; /* NULL: a success */
};

#define CONNS "/api/{v}/connections"
#define CONN  "/api/{v}/connections/{code}"
#define USERS "/api/{v}/connections/{code}/users"
#define USER  "/api/{v}/connections/{code}/users/{tag}"

#define NO_PARTNER "Partner not found. Check your api_key."

/* In order: the writes build the state the later rows meet. */
static const struct row rows[] = {
    /* GET /connections */
    {"list connections", "GET", CONNS, NULL, KEY_GOOD, CONNS, 200, NULL, 200, NULL},
    {"unknown key", "GET", CONNS, NULL, KEY_UNKNOWN, CONNS, 404, NO_PARTNER, 401, "unauthorized"},
    {"no key", "GET", CONNS, NULL, KEY_NONE, CONNS, 404, NO_PARTNER, 401, "unauthorized"},
    /* POST /connections */
    {"create connection", "POST", CONNS, "imap_provider_code=PLAIN", KEY_GOOD, CONNS, 200, NULL,
     201, NULL},
    {"create oauth2 connection", "POST", CONNS,
     "imap_provider_code=GMAIL_OAUTH2&oauth2_client_id=id&oauth2_client_secret=s", KEY_GOOD, CONNS,
     200, NULL, 201, NULL},
    {"connection exists", "POST", CONNS, "imap_provider_code=PLAIN", KEY_GOOD, CONNS, 400,
     "Validation failed: Imap provider has already been taken", 409, "conflict"},
    {"unknown provider", "POST", CONNS, "imap_provider_code=NOPE", KEY_GOOD, CONNS, 404,
     "Imap Provider not found for 'NOPE'.", 404, "not_found"},
    {"no provider code", "POST", CONNS, "", KEY_GOOD, CONNS, 404, "Imap Provider not found for ''.",
     400, "invalid_parameter"},
    {"unknown key", "POST", CONNS, "imap_provider_code=PLAIN", KEY_UNKNOWN, CONNS, 404, NO_PARTNER,
     401, "unauthorized"},
    /* GET /connections/:code */
    {"show connection", "GET", CONNS "/PLAIN", NULL, KEY_GOOD, CONN, 200, NULL, 200, NULL},
    {"unknown provider", "GET", CONNS "/NOPE", NULL, KEY_GOOD, CONN, 404,
     "Imap Provider not found for 'NOPE'.", 404, "not_found"},
    {"unknown connection", "GET", CONNS "/OTHER", NULL, KEY_GOOD, CONN, 404,
     "Connection not found.", 404, "not_found"},
    {"unknown key", "GET", CONNS "/PLAIN", NULL, KEY_UNKNOWN, CONN, 404, NO_PARTNER, 401,
     "unauthorized"},
    /* PUT/PATCH /connections/:code */
    {"update connection", "PUT", CONNS "/GMAIL_OAUTH2", "oauth2_client_secret=s2", KEY_GOOD, CONN,
     200, NULL, 200, NULL},
    {"update connection (PATCH)", "PATCH", CONNS "/GMAIL_OAUTH2", "oauth2_client_id=id2", KEY_GOOD,
     CONN, 200, NULL, 200, NULL},
    {"blank client id", "PUT", CONNS "/GMAIL_OAUTH2", "oauth2_client_id=", KEY_GOOD, CONN, 400,
     "Validation failed: Oauth2 client can't be blank", 400, "invalid_parameter"},
    {"unknown connection", "PUT", CONNS "/OTHER", "", KEY_GOOD, CONN, 404, "Connection not found.",
     404, "not_found"},
    /* POST /connections/:code/users */
    {"create user", "POST", CONNS "/PLAIN/users",
     "tag=alice&email=alice%40example.com&login_username=alice&login_password=pw", KEY_GOOD, USERS,
     200, NULL, 201, NULL},
    {"create user 2", "POST", CONNS "/PLAIN/users", "tag=bob", KEY_GOOD, USERS, 200, NULL, 201,
     NULL},
    {"tag taken", "POST", CONNS "/PLAIN/users", "tag=ALICE", KEY_GOOD, USERS, 400,
     "Validation failed: Tag has already been taken", 409, "conflict"},
    {"email taken", "POST", CONNS "/PLAIN/users", "tag=carol&email=Alice%40example.com", KEY_GOOD,
     USERS, 400, "Validation failed: Email has already been taken", 409, "conflict"},
    {"blank tag", "POST", CONNS "/PLAIN/users", "email=x%40example.com", KEY_GOOD, USERS, 400,
     "Validation failed: Tag can't be blank", 400, "invalid_parameter"},
    {"bad archived", "POST", CONNS "/PLAIN/users", "tag=dave&archived=maybe", KEY_GOOD, USERS, 400,
     "Validation failed: Archived must be true or false", 400, "invalid_parameter"},
    {"unknown provider", "POST", CONNS "/NOPE/users", "tag=x", KEY_GOOD, USERS, 404,
     "Imap Provider not found for 'NOPE'.", 404, "not_found"},
    {"unknown connection", "POST", CONNS "/OTHER/users", "tag=x", KEY_GOOD, USERS, 404,
     "Connection not found.", 404, "not_found"},
    {"unknown key", "POST", CONNS "/PLAIN/users", "tag=x", KEY_UNKNOWN, USERS, 404, NO_PARTNER, 401,
     "unauthorized"},
    /* GET /connections/:code/users */
    {"list users", "GET", CONNS "/PLAIN/users", NULL, KEY_GOOD, USERS, 200, NULL, 200, NULL},
    {"list a page", "GET", CONNS "/PLAIN/users?limit=1", NULL, KEY_GOOD, USERS, 200, NULL, 200,
     NULL},
    {"bad limit", "GET", CONNS "/PLAIN/users?limit=0", NULL, KEY_GOOD, USERS, 400,
     "Validation failed: Limit must be an integer from 1 to 1000", 400, "invalid_parameter"},
    {"unknown connection", "GET", CONNS "/OTHER/users", NULL, KEY_GOOD, USERS, 404,
     "Connection not found.", 404, "not_found"},
    {"unknown key", "GET", CONNS "/PLAIN/users", NULL, KEY_UNKNOWN, USERS, 404, NO_PARTNER, 401,
     "unauthorized"},
    /* GET /connections/:code/users/:tag */
    {"show user", "GET", CONNS "/PLAIN/users/alice", NULL, KEY_GOOD, USER, 200, NULL, 200, NULL},
    {"unknown user", "GET", CONNS "/PLAIN/users/nobody", NULL, KEY_GOOD, USER, 404,
     "User not found for 'nobody'.", 404, "not_found"},
    {"unknown connection", "GET", CONNS "/OTHER/users/alice", NULL, KEY_GOOD, USER, 404,
     "Connection not found.", 404, "not_found"},
    {"unknown key", "GET", CONNS "/PLAIN/users/alice", NULL, KEY_UNKNOWN, USER, 404, NO_PARTNER,
     401, "unauthorized"},
    /* PUT/PATCH /connections/:code/users/:tag */
    {"update user", "PUT", CONNS "/PLAIN/users/bob", "email=bob%40example.com", KEY_GOOD, USER, 200,
     NULL, 200, NULL},
    {"update user (PATCH)", "PATCH", CONNS "/PLAIN/users/bob", "login_username=bob", KEY_GOOD, USER,
     200, NULL, 200, NULL},
    {"tag taken", "PUT", CONNS "/PLAIN/users/bob", "tag=alice", KEY_GOOD, USER, 400,
     "Validation failed: Tag has already been taken", 409, "conflict"},
    {"blank tag", "PATCH", CONNS "/PLAIN/users/bob", "tag=", KEY_GOOD, USER, 400,
     "Validation failed: Tag can't be blank", 400, "invalid_parameter"},
    {"unknown user", "PUT", CONNS "/PLAIN/users/nobody", "email=n%40example.com", KEY_GOOD, USER,
     404, "User not found for 'nobody'.", 404, "not_found"},
    /* DELETE /connections/:code/users/:tag, and restore */
    {"archive user", "DELETE", CONNS "/PLAIN/users/bob", NULL, KEY_GOOD, USER, 204, NULL, 204,
     NULL},
    {"restore user", "PUT", CONNS "/PLAIN/users/bob", "archived=false", KEY_GOOD, USER, 200, NULL,
     200, NULL},
    {"unknown user", "DELETE", CONNS "/PLAIN/users/nobody", NULL, KEY_GOOD, USER, 404,
     "User not found for 'nobody'.", 404, "not_found"},
    {"unknown key", "DELETE", CONNS "/PLAIN/users/bob", NULL, KEY_UNKNOWN, USER, 404, NO_PARTNER,
     401, "unauthorized"},
    /* superimap's own routes */
    {"events", "GET", "/api/{v}/events", NULL, KEY_GOOD, "/api/{v}/events", 200, NULL, 200, NULL},
    {"unknown event", "GET", "/api/{v}/events/e.1.2", NULL, KEY_GOOD, "/api/{v}/events/{id}", 404,
     "Event not found.", 404, "not_found"},
    {"replay unknown event", "POST", "/api/{v}/events/e.1.2/replay", "", KEY_GOOD,
     "/api/{v}/events/{id}/replay", 404, "Event not found.", 404, "not_found"},
    {"webhook test, pending", "POST", "/api/{v}/webhook-test", "wait_ms=0", KEY_GOOD,
     "/api/{v}/webhook-test", 202, NULL, 202, NULL},
    {"webhook test, bad wait", "POST", "/api/{v}/webhook-test", "wait_ms=-1", KEY_GOOD,
     "/api/{v}/webhook-test", 400, "Validation failed: Wait ms must be an integer from 0 to 10000",
     400, "invalid_parameter"},
    /* DELETE /connections/:code */
    {"delete connection", "DELETE", CONNS "/PLAIN", NULL, KEY_GOOD, CONN, 204, NULL, 204, NULL},
    {"deleted connection", "DELETE", CONNS "/PLAIN", NULL, KEY_GOOD, CONN, 404,
     "Connection not found.", 404, "not_found"},
    {"unknown provider", "DELETE", CONNS "/NOPE", NULL, KEY_GOOD, CONN, 404,
     "Imap Provider not found for 'NOPE'.", 404, "not_found"},
};

static long long rcount_keys(const char *pattern)
{
    redisReply *rep = rcmd(&redis, "KEYS %s", pattern);
    long long n = (long long)rep->elements;
    freeReplyObject(rep);
    return n;
}

/* s with every "{v}" replaced by "v<version>", in out. */
static void with_version(char *out, size_t cap, const char *s, int version)
{
    size_t o = 0;
    for (const char *p = s; *p != '\0' && o + 3 < cap; p++) {
        if (strncmp(p, "{v}", 3) == 0) {
            out[o++] = 'v';
            out[o++] = (char)('0' + version);
            p += 2;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* Walks the table under /api/v<version> for a new partner. */
static void walk(int version)
{
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    make_provider(api.port, "PLAIN", "plain");
    make_provider(api.port, "GMAIL_OAUTH2", "oauth2");
    make_provider(api.port, "OTHER", "plain");
    char *key = make_partner(api.port, "Partner", NULL);
    struct api_resp r = {0};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *row = &rows[i];
        char path[512], tmpl[256];
        with_version(path, sizeof path, row->path, version);
        with_version(tmpl, sizeof tmpl, row->tmpl, version);
        const char *k = row->key == KEY_GOOD      ? key
                        : row->key == KEY_UNKNOWN ? "0123456789abcdef0123"
                                                  : NULL;
        api_form(&r, api.port, row->method, path, k, row->form);
        int want = version == 1 ? row->v1 : row->v2;
        if (r.status != want)
            fail_msg("v%d %s (%s %s): want %d, got %d: %.300s", version, row->what, row->method,
                     path, want, r.status, r.body ? r.body : "");
        openapi_check(&r, row->method, tmpl);
        if (version == 1 && row->v1_text != NULL) {
            if (!has_header_prefix(r.headers, "Content-Type: text/plain") ||
                strcmp(r.body, row->v1_text) != 0)
                fail_msg("v1 %s (%s %s): want text \"%s\", got \"%s\" (%s)", row->what, row->method,
                         path, row->v1_text, r.body, r.headers);
        } else if (version == 2 && row->v2_code != NULL) {
            const char *code = json_get_str(json_get(r.json, "error"), "code");
            if (code == NULL || strcmp(code, row->v2_code) != 0)
                fail_msg("v2 %s (%s %s): want error %s, got %.300s", row->what, row->method, path,
                         row->v2_code, r.body);
        } else if (want != 204 && r.json == NULL) {
            fail_msg("v%d %s (%s %s): success without JSON: %.300s", version, row->what,
                     row->method, path, r.body);
        }
    }
    api_resp_free(&r);
    free(key);
}

static void test_v1_answers_every_route_and_case_as_the_original(void **state)
{
    (void)state;
    walk(1);
}

static void test_v2_answers_every_route_and_case_as_today(void **state)
{
    (void)state;
    walk(2);
}

/* v1 lists every user in one array (the original had no pages) in its
 * order (by email, users without one last, then by tag) and pages only when
 * asked; v2 pages by default, in tag order. Archived users included. */
static void test_v1_lists_every_user_and_v2_pages(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    make_provider(api.port, "PLAIN", "plain");
    char *key = make_partner(api.port, "Partner", NULL);
    make_connection(api.port, key, "PLAIN");
    enum { N = 1003 }; /* past one page of the store's reads */
    struct api_resp r = {0};
    for (int i = 0; i < N; i++) {
        /* Users 0..499 have emails in the reverse order of their tags. */
        char form[96];
        if (i < 500)
            snprintf(form, sizeof form, "tag=u%05d&email=E%05d%%40example.com", i, N - i);
        else
            snprintf(form, sizeof form, "tag=u%05d", i);
        api_form(&r, api.port, "POST", "/api/v1/connections/PLAIN/users", key, form);
        assert_int_equal(r.status, 200);
    }
    api_form(&r, api.port, "DELETE", "/api/v1/connections/PLAIN/users/u00007", key, NULL);
    assert_int_equal(r.status, 204);

    api_form(&r, api.port, "GET", "/api/v1/connections/PLAIN/users", key, NULL);
    assert_int_equal(r.status, 200);
    openapi_check(&r, "GET", "/api/v1/connections/{code}/users");
    assert_true(has_header_prefix(r.headers, "Transfer-Encoding: chunked"));
    assert_non_null(r.json);
    assert_int_equal(r.json->u.array.len, N);
    for (int p = 0; p < N; p++) {
        char tag[16];
        snprintf(tag, sizeof tag, "u%05d", p < 500 ? 499 - p : p);
        assert_string_equal(json_get_str(r.json->u.array.values[p], "tag"), tag);
    }
    assert_true(YAJL_IS_TRUE(json_get(r.json->u.array.values[499 - 7], "archived")));
    assert_int_equal(rcount_keys("si:sort:*"), 0);

    api_form(&r, api.port, "GET", "/api/v1/connections/PLAIN/users?limit=2", key, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.json->u.array.len, 2);
    assert_non_null(strstr(r.headers, "X-Next-Cursor: "));

    api_form(&r, api.port, "GET", "/api/v2/connections/PLAIN/users", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/connections/{code}/users");
    assert_int_equal(r.json->u.array.len, 1000);
    assert_string_equal(json_get_str(r.json->u.array.values[0], "tag"), "u00000");
    assert_non_null(strstr(r.headers, "X-Next-Cursor: "));
    api_resp_free(&r);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_answers_every_route_and_case_as_the_original),
        cmocka_unit_test(test_v2_answers_every_route_and_case_as_today),
        cmocka_unit_test(test_v1_lists_every_user_and_v2_pages),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
