/*
 * The admin dashboard's reads across partners, against a real redis-server,
 * superimap-api and (for deliveries) superimap-dispatcher with a webhook
 * receiver: users searched by email, tag and login prefix a page at a time
 * (si:ix:user), partners paged and searched by name (si:ix:partner), the
 * backfill of both indexes by `superimap-api reindex` (resumed after
 * --max), one user with its lease and each delivery attempt of its events,
 * archive and restore through the partner API's scripts, and a drain
 * request. Every answer is checked against web/openapi.json.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <unistd.h>

#include "tests/integration/receiver.h"


#define USERS  "/admin/api/users"
#define USER   "/admin/api/users/{uid}"
#define PARTS  "/admin/api/partners"
#define USERS2 "/api/v2/connections/PLAIN/users"
#define PUSERS "/api/v2/connections/{code}/users"

static struct redis_srv redis;
static struct proc api;

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-dashboard");
}

static int suite_teardown(void **state)
{
    (void)state;
    return api_suite_stop(&redis);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    return 0;
}

/* A partner named name with a PLAIN connection; its API key (free() it). */
static char *partner_with_plain(const char *name, long long *pid)
{
    char *key = make_partner(api.port, name, pid);
    make_connection(api.port, key, "PLAIN");
    return key;
}

/* A user of key's PLAIN connection from form (tag=...&email=...). */
static void user(const char *key, const char *form)
{
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", USERS2, key, form);
    EXPECT(&r, 201, "POST", PUSERS);
    api_resp_free(&r);
}

/* GET path (an admin search or page) into *r, checked against the spec. */
static void admin_get(struct api_resp *r, const char *path, const char *tmpl, int status)
{
    admin_json(r, api.port, "GET", path, NULL);
    EXPECT(r, status, "GET", tmpl);
}

/* The values of field of the array arr of r's body, joined by ',' in
 * order, into out. */
static void column(const struct api_resp *r, const char *arr, const char *field, char *out,
                   size_t outlen)
{
    yajl_val a = json_get(r->json, arr);
    assert_true(YAJL_IS_ARRAY(a));
    out[0] = '\0';
    for (size_t i = 0; i < a->u.array.len; i++) {
        const char *v = json_get_str(a->u.array.values[i], field);
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "%s%s", i ? "," : "", v ? v : "null");
    }
}

/* Searches, following next_cursor, by (email, tag, login) for q with
 * limit per page; the values of field of every user found, in order, and
 * the pages it took. */
static int search_all(const char *by, const char *q, int limit, const char *field, char *out,
                      size_t outlen)
{
    char cursor[512] = "", path[1024];
    int pages = 0;
    out[0] = '\0';
    for (;;) {
        snprintf(path, sizeof path, USERS "?by=%s&q=%s&limit=%d%s%s", by, q, limit,
                 cursor[0] ? "&cursor=" : "", cursor);
        struct api_resp r = {0};
        admin_get(&r, path, USERS, 200);
        char page[1024];
        column(&r, "users", field, page, sizeof page);
        size_t n = strlen(out);
        if (page[0] != '\0')
            snprintf(out + n, outlen - n, "%s%s", n ? "," : "", page);
        pages++;
        const char *next = jstr(&r, "next_cursor");
        if (next == NULL) {
            api_resp_free(&r);
            return pages;
        }
        assert_true(pages < 50);
        snprintf(cursor, sizeof cursor, "%s", next);
        api_resp_free(&r);
    }
}

/* The uid of the one user whose tag is tag (by a search). */
static void uid_of(const char *tag, char uid[32])
{
    char path[256];
    snprintf(path, sizeof path, USERS "?by=tag&q=%s", tag);
    struct api_resp r = {0};
    admin_get(&r, path, USERS, 200);
    yajl_val a = json_get(r.json, "users");
    assert_int_equal(a->u.array.len, 1);
    snprintf(uid, 32, "%s", json_get_str(a->u.array.values[0], "uid"));
    api_resp_free(&r);
}

/* ---- Users ---- */

static void test_users_are_searched_across_partners_by_prefix_a_page_at_a_time(void **state)
{
    (void)state;
    make_provider(api.port, "PLAIN", "plain");
    long long acme, beta;
    char *ka = partner_with_plain("Acme", &acme);
    char *kb = partner_with_plain("Beta", &beta);
    user(ka, "tag=Alice-1&email=Alice@Example.com&login_username=alice");
    user(ka, "tag=bob&email=bob@example.com&login_username=bobby");
    user(ka, "tag=al-3&email=al3@example.org&login_username=al3");
    user(kb, "tag=alice-2&email=alice@other.net&login_username=ALICE2");
    user(kb, "tag=carol");

    char got[2048];
    assert_int_equal(search_all("email", "ALI", 50, "email", got, sizeof got), 1);
    assert_string_equal(got, "Alice@Example.com,alice@other.net");
    search_all("email", "ALI", 50, "partner_name", got, sizeof got);
    assert_string_equal(got, "Acme,Beta");
    search_all("email", "ALI", 50, "provider", got, sizeof got);
    assert_string_equal(got, "PLAIN,PLAIN");
    search_all("tag", "al", 50, "tag", got, sizeof got);
    assert_string_equal(got, "al-3,Alice-1,alice-2");
    search_all("login", "alice", 50, "username", got, sizeof got);
    assert_string_equal(got, "alice,ALICE2");
    /* Everyone with an email, two a page: carol has none. */
    assert_int_equal(search_all("email", "", 2, "email", got, sizeof got), 2);
    assert_string_equal(got, "al3@example.org,Alice@Example.com,alice@other.net,bob@example.com");
    assert_int_equal(search_all("tag", "", 1, "tag", got, sizeof got), 5);
    assert_string_equal(got, "al-3,Alice-1,alice-2,bob,carol");

    /* A changed email moves its entry; an entry whose user no longer holds
     * it (a version without the index changed it) is not shown. */
    struct api_resp r = {0};
    api_form(&r, api.port, "PUT", USERS2 "/bob", ka, "email=robert@example.com");
    EXPECT(&r, 200, "PUT", PUSERS "/{tag}");
    search_all("email", "bob", 50, "email", got, sizeof got);
    assert_string_equal(got, "");
    search_all("email", "rob", 50, "tag", got, sizeof got);
    assert_string_equal(got, "bob");
    freeReplyObject(rcmd(&redis, "ZADD si:ix:user 0 %b",
                         "eghost@x.org\x1f"
                         "0123456789abcdef01234567",
                         (size_t)37));
    search_all("email", "ghost", 50, "tag", got, sizeof got);
    assert_string_equal(got, "");

    /* Refused: a cursor of another search or not one at all, an unknown
     * by, a limit out of range, an unknown parameter. */
    admin_get(&r, USERS "?by=email&q=a&limit=1", USERS, 200);
    char cursor[512], path[1024];
    snprintf(cursor, sizeof cursor, "%s", jstr(&r, "next_cursor"));
    snprintf(path, sizeof path, USERS "?by=tag&q=a&cursor=%s", cursor);
    admin_get(&r, path, USERS, 400);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "cursor");
    static const char *const bad[][2] = {{"?cursor=!!", "cursor"},
                                         {"?by=phone", "by"},
                                         {"?limit=0", "limit"},
                                         {"?limit=201", "limit"},
                                         {"?page=2", "page"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, USERS "%s", bad[i][0]);
        admin_get(&r, path, USERS, 400);
        assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), bad[i][1]);
    }
    api_call(&r, api.port, "GET", USERS, NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 401);
    api_resp_free(&r);
    free(ka);
    free(kb);
}

/* ---- Partners ---- */

static void test_partners_are_paged_and_searched_by_name(void **state)
{
    (void)state;
    static const char *const names[] = {"Zeta", "alpha", "Alpine", "beta", "Gamma"};
    long long pids[5];
    for (int i = 0; i < 5; i++)
        free(make_partner(api.port, names[i], &pids[i]));
    struct api_resp r = {0};
    /* No parameter: every partner, oldest first, as before pages. */
    admin_get(&r, PARTS, PARTS, 200);
    assert_true(YAJL_IS_ARRAY(r.json));
    assert_int_equal(r.json->u.array.len, 5);
    assert_string_equal(json_get_str(r.json->u.array.values[0], "name"), "Zeta");

    char got[512], cursor[512] = "", path[1024], all[1024] = "";
    int pages = 0;
    do {
        snprintf(path, sizeof path, PARTS "?limit=2%s%s", cursor[0] ? "&cursor=" : "", cursor);
        admin_get(&r, path, PARTS, 200);
        column(&r, "partners", "name", got, sizeof got);
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", all[0] ? "," : "", got);
        const char *next = jstr(&r, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        pages++;
    } while (cursor[0] != '\0' && pages < 10);
    assert_int_equal(pages, 3);
    assert_string_equal(all, "alpha,Alpine,beta,Gamma,Zeta");

    admin_get(&r, PARTS "?q=AL", PARTS, 200);
    column(&r, "partners", "name", got, sizeof got);
    assert_string_equal(got, "alpha,Alpine");
    /* A rename moves the entry; a delete takes it. */
    char body[64];
    snprintf(path, sizeof path, PARTS "/%lld", pids[0]);
    snprintf(body, sizeof body, "{\"name\":\"Alps\"}");
    admin_json(&r, api.port, "PUT", path, body);
    EXPECT(&r, 200, "PUT", PARTS "/{id}");
    snprintf(path, sizeof path, PARTS "/%lld", pids[3]);
    admin_json(&r, api.port, "DELETE", path, NULL);
    EXPECT(&r, 204, "DELETE", PARTS "/{id}");
    admin_get(&r, PARTS "?q=al", PARTS, 200);
    column(&r, "partners", "name", got, sizeof got);
    assert_string_equal(got, "alpha,Alpine,Alps");
    admin_get(&r, PARTS "?q=b", PARTS, 200);
    column(&r, "partners", "name", got, sizeof got);
    assert_string_equal(got, "");
    redisReply *ix = rcmd(&redis, "ZCARD si:ix:partner");
    assert_int_equal(ix->integer, 4);
    freeReplyObject(ix);
    admin_get(&r, PARTS "?cursor=YQ&q=b", PARTS, 400);
    api_resp_free(&r);
}

/* ---- Backfill ---- */

/* Runs superimap-api reindex with args (NULL-terminated); its output into
 * out, its exit status. */
static int reindex(char *out, size_t outlen, const char *const *args)
{
    static const char *const env[] = {
        "SUPERIMAP_ENCRYPTION_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        NULL};
    return api_command(&redis, "reindex", args, env, out, outlen);
}

/* Every member of zset key, joined by '|', into out. */
static void members(const char *key, char *out, size_t outlen)
{
    redisReply *r = rcmd(&redis, "ZRANGE %s 0 -1", key);
    out[0] = '\0';
    for (size_t i = 0; i < r->elements; i++) {
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "%s%s", i ? "|" : "", r->element[i]->str);
    }
    freeReplyObject(r);
}

static void test_reindex_backfills_an_older_redis_and_resumes(void **state)
{
    (void)state;
    make_provider(api.port, "PLAIN", "plain");
    char *ka = partner_with_plain("Acme", NULL);
    char *kb = partner_with_plain("Beta", NULL);
    for (int i = 0; i < 12; i++) {
        char form[160];
        snprintf(form, sizeof form, "tag=t%02d&email=U%02d@Example.com&login_username=l%02d%s", i,
                 i, i, i % 3 == 0 ? "&archived=true" : "");
        user(i % 2 ? ka : kb, form);
    }
    static char users[16384], partners[1024], again[16384];
    members("si:ix:user", users, sizeof users);
    members("si:ix:partner", partners, sizeof partners);
    assert_int_equal(strlen(users) > 0, 1);
    /* A Redis written before the indexes: they are not there. */
    freeReplyObject(rcmd(&redis, "DEL si:ix:user si:ix:partner"));
    char out[4096];
    if (reindex(out, sizeof out, (const char *[]){"--batch", "5", "--max", "2", NULL}) != 0 ||
        strstr(out, "stopped at --max") == NULL)
        fail_msg("reindex --max said: %s", out);
    char cursor[32];
    assert_int_equal(harness_redis_get(&redis, cursor, sizeof cursor, "HGET si:reindex cursor"), 0);
    assert_string_not_equal(cursor, "0");
    if (reindex(out, sizeof out, (const char *[]){"--batch", "5", NULL}) != 0 ||
        strstr(out, "resuming at SCAN cursor") == NULL || strstr(out, "done: ") == NULL)
        fail_msg("reindex said: %s", out);
    members("si:ix:user", again, sizeof again);
    assert_string_equal(again, users);
    members("si:ix:partner", again, sizeof again);
    assert_string_equal(again, partners);
    assert_int_equal(harness_redis_get(&redis, cursor, sizeof cursor, "HGET si:reindex cursor"), 0);
    assert_string_equal(cursor, "0");
    /* A second complete pass changes nothing. */
    if (reindex(out, sizeof out, (const char *[]){"--restart", NULL}) != 0 ||
        strstr(out, "done: 12 users and 2 partners") == NULL ||
        strstr(out, " 0 stale entries dropped") == NULL)
        fail_msg("reindex --restart said: %s", out);
    members("si:ix:user", again, sizeof again);
    assert_string_equal(again, users);

    /* Entries an api without the indexes left behind (a user deleted, a tag
     * changed, a partner renamed, an id that names nothing) are dropped;
     * a page of one entry at a time walks the whole index. */
    char uid[32];
    uid_of("t01", uid);
    static const char *const stale[][2] = {
        {"si:ix:user", "eghost@example.com\x1f"
                       "0123456789abcdef01234567"},
        {"si:ix:user", "tformer-tag\x1f"},
        {"si:ix:user", "lnot-an-id\x1fxyz"},
        {"si:ix:partner", "old name\x1f"
                          "1"},
        {"si:ix:partner", "gone\x1f"
                          "999"},
    };
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        char m[128];
        snprintf(m, sizeof m, "%s%s", stale[i][1], i == 1 ? uid : "");
        freeReplyObject(rcmd(&redis, "ZADD %s 0 %s", stale[i][0], m));
    }
    if (reindex(out, sizeof out, (const char *[]){"--restart", "--batch", "1", NULL}) != 0 ||
        strstr(out, " 5 stale entries dropped") == NULL)
        fail_msg("reindex with stale entries said: %s", out);
    members("si:ix:user", again, sizeof again);
    assert_string_equal(again, users);
    members("si:ix:partner", again, sizeof again);
    assert_string_equal(again, partners);
    assert_int_equal(reindex(out, sizeof out, (const char *[]){"--batch", "0", NULL}), 2);
    free(ka);
    free(kb);
}

/* ---- One user ---- */

static void test_user_detail_archive_and_restore(void **state)
{
    (void)state;
    make_provider(api.port, "PLAIN", "plain");
    long long pid;
    char *key = partner_with_plain("Acme", &pid);
    user(key, "tag=u1&email=u1@example.com&login_username=login1&login_password=pw1");
    char uid[32], path[256];
    uid_of("u1", uid);
    struct api_resp r = {0};
    snprintf(path, sizeof path, USERS "/%s", uid);
    admin_get(&r, path, USER, 200);
    yajl_val u = json_get(r.json, "user");
    assert_string_equal(json_get_str(u, "uid"), uid);
    assert_string_equal(json_get_str(u, "partner_name"), "Acme");
    assert_string_equal(json_get_str(u, "provider"), "PLAIN");
    assert_string_equal(json_get_str(u, "email"), "u1@example.com");
    assert_string_equal(json_get_str(u, "username"), "login1");
    assert_string_equal(json_get_str(u, "state"), "idle");
    assert_non_null(json_get_str(u, "connected_at"));
    assert_true(YAJL_IS_NULL(json_get(u, "lease")));
    assert_null(strstr(r.body, "secret"));
    assert_null(strstr(r.body, "pw1"));

    /* Archived as the partner's DELETE does: its tag is free again. */
    snprintf(path, sizeof path, USERS "/%s/archive", uid);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 200, "POST", USER "/archive");
    u = json_get(r.json, "user");
    assert_true(YAJL_IS_TRUE(json_get(u, "archived")));
    assert_string_equal(json_get_str(u, "state"), "archived");
    redisReply *ch = rcmd(&redis, "XREVRANGE si:changes + - COUNT 1");
    assert_string_equal(ch->element[0]->element[1]->element[5]->str, "archive");
    freeReplyObject(ch);
    char got[256];
    search_all("tag", "u1", 50, "state", got, sizeof got);
    assert_string_equal(got, "archived");

    /* Restored; then a live user takes the tag and a restore is refused. */
    snprintf(path, sizeof path, USERS "/%s/restore", uid);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 200, "POST", USER "/restore");
    u = json_get(r.json, "user");
    assert_true(YAJL_IS_FALSE(json_get(u, "archived")));
    assert_string_equal(json_get_str(u, "state"), "idle");
    ch = rcmd(&redis, "XREVRANGE si:changes + - COUNT 1");
    assert_string_equal(ch->element[0]->element[1]->element[5]->str, "restore");
    freeReplyObject(ch);
    snprintf(path, sizeof path, USERS "/%s/archive", uid);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 200, "POST", USER "/archive");
    user(key, "tag=U1");
    snprintf(path, sizeof path, USERS "/%s/restore", uid);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 409, "POST", USER "/restore");
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "tag");

    admin_get(&r, USERS "/0123456789abcdef01234567", USER, 404);
    admin_get(&r, USERS "/nope", USER, 404);
    admin_json(&r, api.port, "POST", USERS "/0123456789abcdef01234567/archive", NULL);
    EXPECT(&r, 404, "POST", USER "/archive");
    api_resp_free(&r);
    free(key);
}

/* A user's page shows each delivery attempt of its events: a real
 * dispatcher sends its user_connected to a receiver that answers 500 once,
 * then 200. */
static void test_user_detail_shows_each_delivery_attempt(void **state)
{
    (void)state;
    struct receiver *rx = receiver_start("127.0.0.1", 0, 0);
    assert_non_null(rx);
    make_provider(api.port, "PLAIN", "plain");
    long long pid;
    char *key = make_partner(api.port, "Acme", &pid);
    make_connection(api.port, key, "PLAIN");
    char path[64], body[512], spid[24];
    snprintf(spid, sizeof spid, "%lld", pid);
    snprintf(path, sizeof path, PARTS "/%lld", pid);
    snprintf(body, sizeof body,
             "{\"user_connected_webhook_url\":\"http://127.0.0.1:%d/hook/%lld/c\","
             "\"retry_schedule\":\"1\"}",
             receiver_port(rx), pid);
    struct api_resp r = {0};
    admin_json(&r, api.port, "PUT", path, body);
    EXPECT(&r, 200, "PUT", PARTS "/{id}");
    struct receiver_rule rule = {.fail_first = 1, .fail_status = 500};
    receiver_set_rule(rx, spid, &rule);

    struct proc d;
    const char *env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", "SUPERIMAP_WEBHOOK_TIME_DIVISOR=100",
                         NULL};
    assert_int_equal(harness_node_start(&d, &redis, "superimap-dispatcher", "d-dash", env), 0);
    user(key, "tag=u1&login_username=login1&login_password=pw1");
    assert_int_equal(receiver_wait(rx, spid, 2, 20000), 2);

    char uid[32], upath[128];
    uid_of("u1", uid);
    snprintf(upath, sizeof upath, USERS "/%s", uid);
    /* The dispatcher logs the attempt just before it records its state. */
    long long deadline = harness_now_ms() + 10000;
    yajl_val ev = NULL;
    do {
        admin_get(&r, upath, USER, 200);
        yajl_val evs = json_get(r.json, "events");
        ev = evs->u.array.len == 1 ? evs->u.array.values[0] : NULL;
        if (ev != NULL && strcmp(json_get_str(ev, "state"), "delivered") == 0)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    assert_non_null(ev);
    assert_string_equal(json_get_str(ev, "type"), "user_connected");
    assert_string_equal(json_get_str(ev, "state"), "delivered");
    yajl_val log = json_get(ev, "attempts_log");
    assert_int_equal(log->u.array.len, 2);
    int64_t v;
    yajl_val a1 = log->u.array.values[0], a2 = log->u.array.values[1];
    json_get_int(a1, "attempt", &v);
    assert_int_equal(v, 1);
    json_get_int(a1, "status", &v);
    assert_int_equal(v, 500);
    assert_string_equal(json_get_str(a1, "result"), "retry");
    assert_non_null(json_get_str(a1, "error"));
    json_get_int(a2, "attempt", &v);
    assert_int_equal(v, 2);
    json_get_int(a2, "status", &v);
    assert_int_equal(v, 200);
    assert_string_equal(json_get_str(a2, "result"), "delivered");
    assert_true(YAJL_IS_NULL(json_get(a2, "error")));
    assert_true(json_get_int(a2, "latency_ms", &v) == 0 && v >= 0);
    assert_non_null(json_get_str(a2, "at"));
    api_resp_free(&r);
    harness_proc_stop(&d);
    receiver_stop(rx);
    free(key);
}

/* ---- Drain requests ---- */

static void test_drain_is_asked_of_a_known_node_only(void **state)
{
    (void)state;
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", "/admin/api/fleet/nobody/drain", NULL);
    EXPECT(&r, 404, "POST", "/admin/api/fleet/{id}/drain");
    /* A node hash without its process: the request names its incarnation. */
    freeReplyObject(rcmd(&redis, "HSET si:node:w-test role watcher started_at 1700000000000"));
    admin_json(&r, api.port, "POST", "/admin/api/fleet/w-test/drain", NULL);
    EXPECT(&r, 202, "POST", "/admin/api/fleet/{id}/drain");
    assert_string_equal(jstr(&r, "id"), "w-test");
    char v[32];
    assert_int_equal(harness_redis_get(&redis, v, sizeof v, "HGET si:node:w-test drain_requested"),
                     0);
    assert_string_equal(v, "1700000000000");
    admin_json(&r, api.port, "POST", "/admin/api/fleet/a%20b/drain", NULL);
    EXPECT(&r, 404, "POST", "/admin/api/fleet/{id}/drain");
    admin_get(&r, "/admin/api/fleet", "/admin/api/fleet", 200);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_users_are_searched_across_partners_by_prefix_a_page_at_a_time,
                               setup),
        cmocka_unit_test_setup(test_partners_are_paged_and_searched_by_name, setup),
        cmocka_unit_test_setup(test_reindex_backfills_an_older_redis_and_resumes, setup),
        cmocka_unit_test_setup(test_user_detail_archive_and_restore, setup),
        cmocka_unit_test_setup(test_user_detail_shows_each_delivery_attempt, setup),
        cmocka_unit_test_setup(test_drain_is_asked_of_a_known_node_only, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
