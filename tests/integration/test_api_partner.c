/*
 * The partner API (/api/v2/connections and users) against a real
 * redis-server and a real superimap-api over HTTP: every route's success and
 * error answers, each checked against web/openapi.json; the original's
 * requests replayed with its parameter names in form and JSON bodies; the
 * Redis state behind each write (indexes, shard sets, change stream, queued
 * events).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include "core/hrw.h"

static struct redis_srv redis;
static struct proc api;
static char *key; /* partner 1's API key */
static long long pid;

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-partner");
}

static int suite_teardown(void **state)
{
    (void)state;
    return api_suite_stop(&redis);
}

/* Each test: an empty data set with providers PLAIN and GMAIL_OAUTH2 and one
 * partner (the api keeps running; its node keys come back with the next beat). */
static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    make_provider(api.port, "PLAIN", "plain");
    make_provider(api.port, "GMAIL_OAUTH2", "oauth2");
    free(key);
    key = make_partner(api.port, "Partner", &pid);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return 0;
}

#define CONN  "/api/v2/connections"
#define CONN1 "/api/v2/connections/{code}"
#define USERS "/api/v2/connections/{code}/users"
#define USER  "/api/v2/connections/{code}/users/{tag}"

static void test_connection_routes_answer_as_the_original(void **state)
{
    (void)state;
    struct api_resp r = {0};
    api_json(&r, api.port, "GET", "/api/v2/connections", key, NULL);
    EXPECT(&r, 200, "GET", CONN);
    assert_int_equal(r.json->u.array.len, 0);

    api_form(&r, api.port, "POST", "/api/v2/connections", key, "imap_provider_code=PLAIN");
    EXPECT(&r, 201, "POST", CONN);
    assert_string_equal(jstr(&r, "imap_provider_code"), "PLAIN");
    int64_t n = -1;
    assert_int_equal(json_get_int(r.json, "users_count", &n), 0);
    assert_int_equal(n, 0);

    api_form(&r, api.port, "POST", "/api/v2/connections", key, "imap_provider_code=PLAIN");
    EXPECT(&r, 409, "POST", CONN);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "imap_provider_code");

    api_form(&r, api.port, "POST", "/api/v2/connections", key, "imap_provider_code=NOPE");
    EXPECT(&r, 404, "POST", CONN);
    assert_non_null(strstr(r.body, "Imap Provider not found for 'NOPE'."));

    api_form(&r, api.port, "POST", "/api/v2/connections", key, "imap_provider_code=");
    EXPECT(&r, 400, "POST", CONN);
    assert_string_equal(err_code(&r), "invalid_parameter");

    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN", key, NULL);
    EXPECT(&r, 200, "GET", CONN1);
    assert_string_equal(jstr(&r, "auth"), "plain");
    /* Rails' format suffix still names the same resource. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN.json", key, NULL);
    EXPECT(&r, 200, "GET", CONN1);
    api_json(&r, api.port, "GET", "/api/v2/connections.json", key, NULL);
    EXPECT(&r, 200, "GET", CONN);
    assert_int_equal(r.json->u.array.len, 1);

    api_json(&r, api.port, "GET", "/api/v2/connections/GMAIL_OAUTH2", key, NULL);
    EXPECT(&r, 404, "GET", CONN1);
    assert_non_null(strstr(r.body, "Connection not found."));
    api_json(&r, api.port, "GET", "/api/v2/connections/UNKNOWN", key, NULL);
    EXPECT(&r, 404, "GET", CONN1);
    assert_non_null(strstr(r.body, "Imap Provider not found for 'UNKNOWN'."));

    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN", key, "{}");
    EXPECT(&r, 200, "PUT", CONN1);
    api_json(&r, api.port, "PATCH", "/api/v2/connections/GMAIL_OAUTH2", key, "{}");
    EXPECT(&r, 404, "PATCH", CONN1);

    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN", key, NULL);
    EXPECT(&r, 204, "DELETE", CONN1);
    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN", key, NULL);
    EXPECT(&r, 404, "DELETE", CONN1);
    api_json(&r, api.port, "GET", "/api/v2/connections", key, NULL);
    EXPECT(&r, 200, "GET", CONN);
    assert_int_equal(r.json->u.array.len, 0);
    /* The provider can go once no connection uses it. */
    admin_json(&r, api.port, "DELETE", "/admin/api/providers/PLAIN", NULL);
    EXPECT(&r, 204, "DELETE", "/admin/api/providers/{code}");
    api_resp_free(&r);
}

static void test_oauth2_connection_takes_credentials_and_validates_update(void **state)
{
    (void)state;
    struct api_resp r = {0};
    api_json(&r, api.port, "POST", "/api/v2/connections", key,
             "{\"imap_provider_code\":\"GMAIL_OAUTH2\",\"oauth2_client_id\":\"cid\","
             "\"oauth2_client_secret\":\"client-secret-value\"}");
    EXPECT(&r, 201, "POST", CONN);
    assert_string_equal(jstr(&r, "oauth2_client_id"), "cid");
    assert_true(json_get(r.json, "oauth2_client_secret_set")->type == yajl_t_true);
    assert_null(strstr(r.body, "client-secret-value"));

    char hkey[128];
    snprintf(hkey, sizeof hkey, "si:conn:%lld:GMAIL_OAUTH2", pid);
    redisReply *rep = rcmd(&redis, "HGET %s oauth2_client_secret", hkey);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_true(strncmp(rep->str, "v1:", 3) == 0);
    freeReplyObject(rep);

    /* The original validated the required fields on update. */
    api_json(&r, api.port, "PUT", "/api/v2/connections/GMAIL_OAUTH2", key,
             "{\"oauth2_client_id\":\"\"}");
    EXPECT(&r, 400, "PUT", CONN1);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "oauth2_client_id");
    api_form(&r, api.port, "PATCH", "/api/v2/connections/GMAIL_OAUTH2", key,
             "oauth2_client_id=cid2");
    EXPECT(&r, 200, "PATCH", CONN1);
    assert_string_equal(jstr(&r, "oauth2_client_id"), "cid2");
    api_json(&r, api.port, "PUT", "/api/v2/connections/GMAIL_OAUTH2", key,
             "{\"oauth2_client_id\":[1]}");
    EXPECT(&r, 400, "PUT", CONN1);
    api_resp_free(&r);
}

static void test_users_with_the_original_parameter_names(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    make_connection(api.port, key, "GMAIL_OAUTH2");
    struct api_resp r = {0};
    /* PLAIN, form-encoded, credentials complete: connected on save. */
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=user1&email=user1%40localhost&login_username=user1&login_password=password");
    EXPECT(&r, 201, "POST", USERS);
    assert_string_equal(jstr(&r, "tag"), "user1");
    assert_string_equal(jstr(&r, "email"), "user1@localhost");
    assert_non_null(jstr(&r, "connected_at"));
    assert_non_null(strstr(jstr(&r, "connect_url"), "/users/connect/new?user_id="));
    assert_non_null(strstr(jstr(&r, "disconnect_url"), "/users/disconnect/new?user_id="));
    assert_null(strstr(r.body, "password"));

    /* JSON without credentials: not connected. */
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"user2\",\"email\":null}");
    EXPECT(&r, 201, "POST", USERS);
    assert_true(YAJL_IS_NULL(json_get(r.json, "connected_at")));
    assert_true(YAJL_IS_NULL(json_get(r.json, "email")));
    /* Setting credentials later connects it; clearing the password disconnects. */
    api_json(&r, api.port, "PATCH", "/api/v2/connections/PLAIN/users/user2", key,
             "{\"login_username\":\"u2\",\"login_password\":\"p2\"}");
    EXPECT(&r, 200, "PATCH", USER);
    assert_non_null(jstr(&r, "connected_at"));
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/user2", key, "login_password=");
    EXPECT(&r, 200, "PUT", USER);
    assert_true(YAJL_IS_NULL(json_get(r.json, "connected_at")));

    /* OAuth2: email + refresh token connect (the original's import path). */
    api_json(&r, api.port, "POST", "/api/v2/connections/GMAIL_OAUTH2/users", key,
             "{\"tag\":\"g1\",\"email\":\"g1@gmail.com\",\"oauth2_refresh_token\":\"1/rt\","
             "\"login_password\":\"ignored\"}");
    EXPECT(&r, 201, "POST", USERS);
    assert_non_null(jstr(&r, "connected_at"));
    assert_null(strstr(r.body, "1/rt"));

    /* The parameters may also come in the query string (Rails merged them). */
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users?tag=q1", key, NULL);
    EXPECT(&r, 201, "POST", USERS);
    assert_string_equal(jstr(&r, "tag"), "q1");

    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/user1", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "login_username"), "user1");
    assert_string_equal(jstr(&r, "state"), "idle");

    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/nobody", key, NULL);
    EXPECT(&r, 404, "GET", USER);
    assert_non_null(strstr(r.body, "User not found for 'nobody'."));
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, "{\"email\":\"x\"}");
    EXPECT(&r, 400, "POST", USERS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "tag");
    api_json(&r, api.port, "POST", "/api/v2/connections/GMAIL_OAUTH2/users", key, "{\"tag\":true}");
    EXPECT(&r, 400, "POST", USERS);
    api_json(&r, api.port, "POST", "/api/v2/connections/NOPE/users", key, "{\"tag\":\"x\"}");
    EXPECT(&r, 404, "POST", USERS);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/user1", key,
             "{\"archived\":\"maybe\"}");
    EXPECT(&r, 400, "PUT", USER);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "archived");
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users", key, NULL);
    EXPECT(&r, 200, "GET", USERS);
    assert_int_equal(r.json->u.array.len, 3);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN", key, NULL);
    int64_t n = 0;
    json_get_int(r.json, "users_count", &n);
    assert_int_equal(n, 3);
    api_resp_free(&r);
}

static void test_archive_restore_and_tag_reuse_resolve_to_the_live_user(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"Reused\",\"email\":\"a@x.com\"}");
    EXPECT(&r, 201, "POST", USERS);
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, "{\"tag\":\"reused\"}");
    EXPECT(&r, 409, "POST", USERS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "tag");

    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN/users/reused", key, NULL);
    EXPECT(&r, 204, "DELETE", USER);
    assert_int_equal(r.len, 0);
    /* Still found while no live user has the tag, flagged archived. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/Reused", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_true(json_get(r.json, "archived")->type == yajl_t_true);
    assert_string_equal(jstr(&r, "state"), "archived");

    /* Tag and email are free again. */
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"REUSED\",\"email\":\"A@X.COM\"}");
    EXPECT(&r, 201, "POST", USERS);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/reused", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "tag"), "REUSED");
    assert_true(json_get(r.json, "archived")->type == yajl_t_false);

    /* The archived one cannot come back while the live one holds the tag. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users", key, NULL);
    EXPECT(&r, 200, "GET", USERS);
    assert_int_equal(r.json->u.array.len, 2);
    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN/users/reused", key, NULL);
    EXPECT(&r, 204, "DELETE", USER);
    /* Two archived users: the latest archived answers; restore it. */
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/reused", key, "archived=false");
    EXPECT(&r, 200, "PUT", USER);
    assert_string_equal(jstr(&r, "tag"), "REUSED");
    assert_true(json_get(r.json, "archived")->type == yajl_t_false);
    assert_string_equal(jstr(&r, "state"), "idle");
    /* Now the other archived one conflicts on restore, by tag first. */
    char tkey[128];
    snprintf(tkey, sizeof tkey, "si:conn:%lld:PLAIN:users", pid);
    redisReply *members = rcmd(&redis, "ZRANGE %s 0 -1", tkey);
    assert_int_equal(members->elements, 2);
    freeReplyObject(members);
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/reused", key, "archived=true");
    EXPECT(&r, 200, "PUT", USER);
    assert_true(json_get(r.json, "archived")->type == yajl_t_true);
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"other\",\"email\":\"a@x.com\"}");
    EXPECT(&r, 201, "POST", USERS);
    /* PUT archived=false on the tag finds the latest archived (REUSED, email
     * A@X.COM), whose email "other" now holds. */
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/reused", key,
             "{\"archived\":false}");
    EXPECT(&r, 409, "PUT", USER);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "email");
    api_resp_free(&r);
}

static void test_email_is_unique_case_insensitive_among_live_users(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    make_connection(api.port, key, "GMAIL_OAUTH2");
    struct api_resp r = {0};
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"a\",\"email\":\"Bob@Example.com\"}");
    EXPECT(&r, 201, "POST", USERS);
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"b\",\"email\":\"bob@example.COM\"}");
    EXPECT(&r, 409, "POST", USERS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "email");
    /* Another connection is another scope. */
    api_json(&r, api.port, "POST", "/api/v2/connections/GMAIL_OAUTH2/users", key,
             "{\"tag\":\"b\",\"email\":\"bob@example.com\"}");
    EXPECT(&r, 201, "POST", USERS);
    /* Changing the email moves the index; the old address is free. */
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, "{\"tag\":\"b\"}");
    EXPECT(&r, 201, "POST", USERS);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/b", key,
             "{\"email\":\"BOB@example.com\"}");
    EXPECT(&r, 409, "PUT", USER);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/a", key,
             "{\"email\":\"new@example.com\",\"tag\":\"A2\"}");
    EXPECT(&r, 200, "PUT", USER);
    assert_string_equal(jstr(&r, "tag"), "A2");
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/b", key,
             "{\"email\":\"BOB@example.com\"}");
    EXPECT(&r, 200, "PUT", USER);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/b", key, "{\"tag\":\"a2\"}");
    EXPECT(&r, 409, "PUT", USER);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/a", key, NULL);
    EXPECT(&r, 404, "GET", USER);
    api_resp_free(&r);
}

static void test_tags_are_percent_decoded_path_segments(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    static const char *const tags[][2] = {
        {"someone@example.com", "someone%40example.com"},
        {"with space+plus", "with%20space+plus"},
        {"caf\xc3\xa9 \xe2\x9c\x93", "caf%C3%A9%20%E2%9C%93"},
        {"dots.json", "dots.json"},
        {"50%", "50%25"},
    };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        char body[256], path[256];
        snprintf(body, sizeof body, "{\"tag\":\"%s\"}", tags[i][0]);
        api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, body);
        EXPECT(&r, 201, "POST", USERS);
        snprintf(path, sizeof path, "/api/v2/connections/PLAIN/users/%s", tags[i][1]);
        api_json(&r, api.port, "GET", path, key, NULL);
        EXPECT(&r, 200, "GET", USER);
        assert_string_equal(jstr(&r, "tag"), tags[i][0]);
    }
    /* someone@example.com.json: the original's format suffix. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/someone@example.com.json", key,
             NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "tag"), "someone@example.com");
    /* A plain '@' works too, and '+' in a path is a plus. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/someone@example.com", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    api_resp_free(&r);
}

static void test_user_list_pages_with_a_cursor(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    for (int i = 0; i < 25; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"tag\":\"u%02d\"}", i);
        api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, body);
        EXPECT(&r, 201, "POST", USERS);
    }
    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN/users/u03", key, NULL);
    char path[512], cursor[256] = "";
    int seen = 0, pages = 0, archived = 0;
    do {
        snprintf(path, sizeof path, "/api/v2/connections/PLAIN/users?limit=10%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        api_json(&r, api.port, "GET", path, key, NULL);
        EXPECT(&r, 200, "GET", USERS);
        for (size_t i = 0; i < r.json->u.array.len; i++) {
            yajl_val u = r.json->u.array.values[i];
            char want[16];
            snprintf(want, sizeof want, "u%02d", seen++);
            assert_string_equal(json_get_str(u, "tag"), want);
            archived += json_get(u, "archived")->type == yajl_t_true;
        }
        pages++;
        api_header(&r, "X-Next-Cursor", cursor, sizeof cursor);
    } while (cursor[0] != '\0' && pages < 10);
    assert_int_equal(seen, 25);
    assert_int_equal(pages, 3);
    assert_int_equal(archived, 1);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users?limit=0", key, NULL);
    EXPECT(&r, 400, "GET", USERS);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users?cursor=%21%21", key, NULL);
    EXPECT(&r, 400, "GET", USERS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "cursor");
    api_resp_free(&r);
}

/* The user's hash key. */
static void user_key(const char *uid, char *out, size_t len)
{
    snprintf(out, len, "si:{%u}:user:%s", hrw_shard(uid, 64), uid);
}

/* The uid of the live user tag of PLAIN. */
static void uid_of(const char *tag, char uid[32])
{
    char k[256];
    snprintf(k, sizeof k, "si:tag:%lld:PLAIN:%s", pid, tag);
    redisReply *rep = rcmd(&redis, "GET %s", k);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    snprintf(uid, 32, "%s", rep->str);
    freeReplyObject(rep);
}

static void test_writes_reach_watchers_through_changes_and_shard_sets(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=w&login_username=w&login_password=pw");
    EXPECT(&r, 201, "POST", USERS);
    char uid[32], ukey[128], skey[64];
    uid_of("w", uid);
    user_key(uid, ukey, sizeof ukey);
    unsigned k = hrw_shard(uid, 64);
    snprintf(skey, sizeof skey, "si:{%u}:users", k);
    redisReply *m = rcmd(&redis, "ZRANK %s %s", skey, uid);
    assert_int_equal(m->type, REDIS_REPLY_INTEGER);
    freeReplyObject(m);
    redisReply *hv = rcmd(&redis, "HMGET %s pid code tag state archived", ukey);
    char spid[24];
    snprintf(spid, sizeof spid, "%lld", pid);
    assert_string_equal(hv->element[0]->str, spid);
    assert_string_equal(hv->element[1]->str, "PLAIN");
    assert_string_equal(hv->element[2]->str, "w");
    assert_string_equal(hv->element[3]->str, "idle");
    assert_string_equal(hv->element[4]->str, "0");
    freeReplyObject(hv);

    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN/users/w", key, NULL);
    EXPECT(&r, 204, "DELETE", USER);
    m = rcmd(&redis, "ZRANK %s %s", skey, uid);
    assert_int_equal(m->type, REDIS_REPLY_NIL);
    freeReplyObject(m);
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/w", key, "archived=0");
    EXPECT(&r, 200, "PUT", USER);
    m = rcmd(&redis, "ZRANK %s %s", skey, uid);
    assert_int_equal(m->type, REDIS_REPLY_INTEGER);
    freeReplyObject(m);
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/w", key, "email=w%40x");
    EXPECT(&r, 200, "PUT", USER);

    redisReply *x = rcmd(&redis, "XRANGE si:changes - +");
    static const char *const ops[] = {"create", "archive", "restore", "update"};
    assert_int_equal(x->elements, 4);
    for (size_t i = 0; i < 4; i++) {
        redisReply *kv = x->element[i]->element[1];
        assert_string_equal(kv->element[0]->str, "uid");
        assert_string_equal(kv->element[1]->str, uid);
        assert_string_equal(kv->element[2]->str, "k");
        assert_int_equal(atoi(kv->element[3]->str), (int)k);
        assert_string_equal(kv->element[5]->str, ops[i]);
    }
    freeReplyObject(x);
    api_resp_free(&r);
}

/* ---- Mailboxes (issue #21) ---- */

/* The JSON text of list name in obj (compact), for comparing lists; "null"
 * for null, "" when absent. */
static void jraw(yajl_val obj, const char *name, char *out, size_t len)
{
    yajl_val v = json_get(obj, name);
    out[0] = '\0';
    if (v == NULL)
        return;
    if (YAJL_IS_NULL(v)) {
        snprintf(out, len, "null");
        return;
    }
    assert_true(YAJL_IS_ARRAY(v));
    size_t off = (size_t)snprintf(out, len, "[");
    for (size_t i = 0; i < v->u.array.len; i++) {
        const char *sv = v->u.array.values[i]->u.string;
        off += (size_t)snprintf(out + off, len - off, "%s\"", i ? "," : "");
        for (const char *c = sv; *c; c++)
            off += (size_t)snprintf(out + off, len - off, *c == '\\' ? "\\\\" : "%c", *c);
        off += (size_t)snprintf(out + off, len - off, "\"");
    }
    snprintf(out + off, len - off, "]");
}

/* Asserts the answer's member name holds the list want (compact JSON). */
static void expect_list(const struct api_resp *r, const char *name, const char *want)
{
    char got[1024];
    jraw(r->json, name, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: want %s, got %s in %.400s", name, want, got, r->body);
}

/* The field of user tag of PLAIN in Redis, "" when absent (static buffer). */
static const char *user_field(const char *tag, const char *field)
{
    static char out[1024];
    char uid[32], ukey[128];
    uid_of(tag, uid);
    user_key(uid, ukey, sizeof ukey);
    redisReply *v = rcmd(&redis, "HGET %s %s", ukey, field);
    snprintf(out, sizeof out, "%s", v->type == REDIS_REPLY_STRING ? v->str : "");
    freeReplyObject(v);
    return out;
}

static void test_mailboxes_are_refused_with_the_entry_named(void **state)
{
    (void)state;
    static const struct {
        const char *body, *message;
    } bad[] = {
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"INBOX\",\"\\\\Foo\"]}",
         "mailboxes[1]: unknown special-use attribute \\Foo"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[]}",
         "mailboxes: must hold 1 to 16 entries, not 0"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\","
         "\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}",
         "mailboxes: must hold 1 to 16 entries, not 17"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"Junk\",\"\\\\junk\",\"\\\\Junk\"]}",
         "mailboxes[2]: the same mailbox as mailboxes[1]"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"inbox\",\"INBOX\"]}",
         "mailboxes[1]: the same mailbox as mailboxes[0]"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"a\\u0007b\"]}",
         "mailboxes[0]: control character in a mailbox name"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"\"]}",
         "mailboxes[0]: empty mailbox name"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[7]}", "mailboxes[0]: must be a string"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":\"INBOX\"}",
         "mailboxes: must be an array of 1 to 16 strings, or null"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":\"[\\\"INBOX\\\"\"}",
         "mailboxes: must be an array of 1 to 16 strings (parse error: premature EOF near byte "
         "8)"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":5}",
         "mailboxes: must be an array of 1 to 16 strings, or null"},
        {"{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":{\"a\":1}}",
         "mailboxes: must be an array of 1 to 16 strings"},
    };
    struct api_resp r = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        api_json(&r, api.port, "POST", CONN, key, bad[i].body);
        EXPECT(&r, 400, "POST", CONN);
        assert_string_equal(err_code(&r), "invalid_parameter");
        assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "mailboxes");
        const char *msg = json_get_str(json_get(r.json, "error"), "message");
        if (strcmp(msg, bad[i].message) != 0)
            fail_msg("case %zu: want \"%s\", got \"%s\"", i, bad[i].message, msg);
    }
    /* Nothing was created; the original's version answers in its words. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN", key, NULL);
    EXPECT(&r, 404, "GET", CONN1);
    api_form(&r, api.port, "POST", "/api/v1/connections", key,
             "imap_provider_code=PLAIN&mailboxes=%5B%22%5C%5CSpam%22%5D");
    EXPECT(&r, 400, "POST", "/api/v1/connections");
    assert_string_equal(r.body, "Validation failed: mailboxes[0]: unknown special-use attribute "
                                "\\Spam");

    /* The same checks on users, create and update. */
    make_connection(api.port, key, "PLAIN");
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"u\",\"mailboxes\":[\"INBOX\",\"\\\\Important\"]}");
    EXPECT(&r, 400, "POST", USERS);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "message"),
                        "mailboxes[1]: unknown special-use attribute \\Important");
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/u", key, NULL);
    EXPECT(&r, 404, "GET", USER);
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, "{\"tag\":\"u\"}");
    EXPECT(&r, 201, "POST", USERS);
    api_json(&r, api.port, "PATCH", "/api/v2/connections/PLAIN/users/u", key,
             "{\"mailboxes\":[\"Sent\",\"\\\\SENT\",\"sent\"]}");
    /* Names keep their case (two mailboxes); the attribute is a third. */
    EXPECT(&r, 200, "PATCH", USER);
    assert_string_equal(user_field("u", "mailboxes"), "[\"Sent\",\"\\\\Sent\",\"sent\"]");
    api_json(&r, api.port, "PATCH", "/api/v2/connections/PLAIN/users/u", key,
             "{\"mailboxes\":[\"\\\\Sent\",\"\\\\SENT\"]}");
    EXPECT(&r, 400, "PATCH", USER);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "message"),
                        "mailboxes[1]: the same mailbox as mailboxes[0]");
    assert_string_equal(user_field("u", "mailboxes"), "[\"Sent\",\"\\\\Sent\",\"sent\"]");
    api_resp_free(&r);
}

static void test_mailboxes_are_stored_canonical_and_users_inherit_them(void **state)
{
    (void)state;
    struct api_resp r = {0};
    /* Without a list: ["INBOX"] under v2; v1 answers as the original. */
    make_connection(api.port, key, "GMAIL_OAUTH2");
    api_json(&r, api.port, "GET", "/api/v2/connections/GMAIL_OAUTH2", key, NULL);
    EXPECT(&r, 200, "GET", CONN1);
    expect_list(&r, "mailboxes", "[\"INBOX\"]");
    api_json(&r, api.port, "GET", "/api/v1/connections/GMAIL_OAUTH2", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v1/connections/{code}");
    assert_null(json_get(r.json, "mailboxes"));

    api_json(&r, api.port, "POST", CONN, key,
             "{\"imap_provider_code\":\"PLAIN\",\"mailboxes\":[\"inbox\",\"\\\\jUNK\","
             "\"Entw\\u00fcrfe\"]}");
    EXPECT(&r, 201, "POST", CONN);
    expect_list(&r, "mailboxes", "[\"INBOX\",\"\\\\Junk\",\"Entw\xc3\xbcrfe\"]");
    char ckey[128];
    snprintf(ckey, sizeof ckey, "si:conn:%lld:PLAIN", pid);
    redisReply *v = rcmd(&redis, "HGET %s mailboxes", ckey);
    assert_string_equal(v->str, "[\"INBOX\",\"\\\\Junk\",\"Entw\xc3\xbcrfe\"]");
    freeReplyObject(v);
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v1/connections/{code}");
    expect_list(&r, "mailboxes", "[\"INBOX\",\"\\\\Junk\",\"Entw\xc3\xbcrfe\"]");

    /* A user inherits the connection's list through its own copy. */
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=a&login_username=a&login_password=pw");
    EXPECT(&r, 201, "POST", USERS);
    expect_list(&r, "mailboxes", "[\"INBOX\",\"\\\\Junk\",\"Entw\xc3\xbcrfe\"]");
    expect_list(&r, "mailboxes_own", "null");
    expect_list(&r, "mailboxes_missing", "[]");
    assert_string_equal(user_field("a", "conn_mailboxes"),
                        "[\"INBOX\",\"\\\\Junk\",\"Entw\xc3\xbcrfe\"]");
    assert_string_equal(user_field("a", "mailboxes"), "");

    /* Its own list (a form sends it as JSON text) overrides the
     * connection's; null inherits again. */
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=b&mailboxes=%5B%22%5C%5Cinbox%22%2C%22Archive%2F2026%22%5D");
    EXPECT(&r, 201, "POST", USERS);
    expect_list(&r, "mailboxes", "[\"INBOX\",\"Archive/2026\"]");
    expect_list(&r, "mailboxes_own", "[\"INBOX\",\"Archive/2026\"]");
    assert_string_equal(user_field("b", "mailboxes"), "[\"INBOX\",\"Archive/2026\"]");
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/a", key,
             "{\"mailboxes\":[\"\\\\Sent\"]}");
    EXPECT(&r, 200, "PUT", USER);
    expect_list(&r, "mailboxes", "[\"\\\\Sent\"]");
    expect_list(&r, "mailboxes_own", "[\"\\\\Sent\"]");
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/a", key, "{\"mailboxes\":null}");
    EXPECT(&r, 200, "PUT", USER);
    expect_list(&r, "mailboxes", "[\"INBOX\",\"\\\\Junk\",\"Entw\xc3\xbcrfe\"]");
    expect_list(&r, "mailboxes_own", "null");
    assert_string_equal(user_field("a", "mailboxes"), "");
    /* Only mailboxes sent: the rest of the user stays. */
    assert_string_equal(user_field("a", "username"), "a");
    assert_string_equal(user_field("a", "archived"), "0");

    /* The list items carry the effective list too. */
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users", key, NULL);
    EXPECT(&r, 200, "GET", USERS);
    assert_int_equal(r.json->u.array.len, 2);
    char got[256];
    jraw(r.json->u.array.values[1], "mailboxes", got, sizeof got);
    assert_string_equal(got, "[\"INBOX\",\"Archive/2026\"]");

    /* A user of a connection without lists shows none under v1. */
    api_json(&r, api.port, "POST", "/api/v1/connections/GMAIL_OAUTH2/users", key,
             "{\"tag\":\"g\"}");
    EXPECT(&r, 200, "POST", "/api/v1/connections/{code}/users");
    assert_null(json_get(r.json, "mailboxes"));
    assert_null(json_get(r.json, "mailboxes_own"));
    api_json(&r, api.port, "GET", "/api/v2/connections/GMAIL_OAUTH2/users/g", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    expect_list(&r, "mailboxes", "[\"INBOX\"]");
    api_resp_free(&r);
}

/* Sets (value NULL: deletes) user tag's mailboxes_missing as a watcher does. */
static void watcher_wrote(const char *tag, const char *value)
{
    char uid[32], ukey[128];
    uid_of(tag, uid);
    user_key(uid, ukey, sizeof ukey);
    if (value != NULL)
        freeReplyObject(rcmd(&redis, "HSET %s mailboxes_missing %s", ukey, value));
    else
        freeReplyObject(rcmd(&redis, "HDEL %s mailboxes_missing", ukey));
}

static void test_mailboxes_missing_is_shown_as_the_watcher_wrote_it(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "{\"tag\":\"m\",\"mailboxes\":[\"INBOX\",\"\\\\Junk\",\"Old\"]}");
    EXPECT(&r, 201, "POST", USERS);
    expect_list(&r, "mailboxes_missing", "[]");
    watcher_wrote("m", "[\"\\\\Junk\",\"Old\"]");
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/m", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    expect_list(&r, "mailboxes_missing", "[\"\\\\Junk\",\"Old\"]");
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users", key, NULL);
    EXPECT(&r, 200, "GET", USERS);
    char got[256];
    jraw(r.json->u.array.values[0], "mailboxes_missing", got, sizeof got);
    assert_string_equal(got, "[\"\\\\Junk\",\"Old\"]");

    /* Under v1 too, and for a user of a connection without lists. */
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, "{\"tag\":\"n\"}");
    EXPECT(&r, 201, "POST", USERS);
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/n", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v1/connections/{code}/users/{tag}");
    assert_null(json_get(r.json, "mailboxes_missing"));
    watcher_wrote("n", "[\"INBOX\"]");
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/n", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v1/connections/{code}/users/{tag}");
    expect_list(&r, "mailboxes_missing", "[\"INBOX\"]");
    expect_list(&r, "mailboxes", "[\"INBOX\"]");

    /* Once all were found the watcher deletes it: [] again. A value that
     * is not a list (a hand's typo) reads as none. */
    watcher_wrote("m", NULL);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/m", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    expect_list(&r, "mailboxes_missing", "[]");
    watcher_wrote("m", "Junk");
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/m", key, NULL);
    EXPECT(&r, 200, "GET", USER);
    expect_list(&r, "mailboxes_missing", "[]");
    api_resp_free(&r);
}

#define PROPAGATE_USERS 1001 /* three chunks of connection_mailboxes.lua: 500, 500, 1 */

/* The number of si:changes entries after id since with op update, and
 * whether each names a distinct uid in want (NULL-terminated) and nothing
 * else. */
static size_t updates_since(const char *since, char **want, size_t nwant)
{
    redisReply *x = rcmd(&redis, "XRANGE si:changes (%s +", since);
    size_t n = 0;
    int *seen = calloc(nwant + 1, sizeof *seen);
    for (size_t i = 0; i < x->elements; i++) {
        redisReply *kv = x->element[i]->element[1];
        if (strcmp(kv->element[5]->str, "update") != 0)
            continue;
        n++;
        size_t j;
        for (j = 0; j < nwant && strcmp(want[j], kv->element[1]->str) != 0; j++)
            ;
        if (j == nwant)
            fail_msg("an update for %s, which should not reload", kv->element[1]->str);
        if (seen[j]++)
            fail_msg("two updates for %s", want[j]);
        unsigned k = hrw_shard(want[j], 64);
        assert_int_equal(atoi(kv->element[3]->str), (int)k);
    }
    free(seen);
    freeReplyObject(x);
    return n;
}

/* The id of the last si:changes entry ("0" when none), into out. */
static void last_change(char out[64])
{
    redisReply *x = rcmd(&redis, "XREVRANGE si:changes + - COUNT 1");
    snprintf(out, 64, "%s", x->elements ? x->element[0]->element[0]->str : "0");
    freeReplyObject(x);
}

static void test_connection_update_copies_mailboxes_to_every_user(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    /* Users: every third connected (watched), one in 7 not connected, the
     * 10th ones archived, the 11th ones with a list of their own. */
    char **uids = calloc(PROPAGATE_USERS, sizeof *uids);
    char **reload = calloc(PROPAGATE_USERS, sizeof *reload);
    size_t nreload = 0;
    for (int i = 0; i < PROPAGATE_USERS; i++) {
        char body[256], tag[16];
        snprintf(tag, sizeof tag, "u%04d", i);
        int connected = i % 7 != 0;
        int archived = i % 10 == 9;
        int own = i % 11 == 5;
        snprintf(body, sizeof body, "tag=%s%s%s%s", tag,
                 connected ? "&login_username=x&login_password=pw" : "",
                 archived ? "&archived=1" : "", own ? "&mailboxes=%5B%22INBOX%22%5D" : "");
        api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, body);
        if (r.status != 201)
            fail_msg("user %d: %d %s", i, r.status, r.body);
        char uid[32];
        if (!archived) {
            uid_of(tag, uid);
        } else {
            /* An archived user holds no tag key: find it in the index. */
            char z[128];
            snprintf(z, sizeof z, "si:conn:%lld:PLAIN:users", pid);
            redisReply *m = rcmd(&redis, "ZRANGEBYLEX %s [%s\x1f (%s\x1f\xff", z, tag, tag);
            assert_int_equal(m->elements, 1);
            snprintf(uid, sizeof uid, "%s", strchr(m->element[0]->str, '\x1f') + 1);
            freeReplyObject(m);
        }
        uids[i] = strdup(uid);
        if (connected && !archived && !own)
            reload[nreload++] = uids[i];
    }

    char since[64];
    last_change(since);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN", key,
             "{\"mailboxes\":[\"INBOX\",\"\\\\Junk\"]}");
    EXPECT(&r, 200, "PUT", CONN1);
    expect_list(&r, "mailboxes", "[\"INBOX\",\"\\\\Junk\"]");
    for (int i = 0; i < PROPAGATE_USERS; i++) {
        char ukey[128];
        user_key(uids[i], ukey, sizeof ukey);
        redisReply *v = rcmd(&redis, "HGET %s conn_mailboxes", ukey);
        if (v->type != REDIS_REPLY_STRING || strcmp(v->str, "[\"INBOX\",\"\\\\Junk\"]") != 0)
            fail_msg("user %d: conn_mailboxes not copied", i);
        freeReplyObject(v);
    }
    /* One update per watched user whose list changed, none for the others. */
    assert_int_equal(updates_since(since, reload, nreload), nreload);
    assert_true(nreload > 500);

    /* The same update again changes nothing and reloads no one. */
    last_change(since);
    api_json(&r, api.port, "PATCH", "/api/v2/connections/PLAIN", key,
             "{\"mailboxes\":[\"inbox\",\"\\\\junk\"]}");
    EXPECT(&r, 200, "PATCH", CONN1);
    assert_int_equal(updates_since(since, reload, nreload), 0);

    /* A failure part way (the 700th user's hash made unreadable: its chunk's
     * script fails) is a 503; the first chunk is done, the last not; sent
     * again once the fault is gone, the update finishes the job. */
    char bad[128], saved[160];
    user_key(uids[700], bad, sizeof bad);
    snprintf(saved, sizeof saved, "%s:saved", bad);
    freeReplyObject(rcmd(&redis, "RENAME %s %s", bad, saved));
    freeReplyObject(rcmd(&redis, "SET %s x", bad));
    last_change(since);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN", key, "{\"mailboxes\":null}");
    EXPECT(&r, 503, "PUT", CONN1);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "mailboxes");
    char first[128], last[128];
    user_key(uids[0], first, sizeof first);
    user_key(uids[PROPAGATE_USERS - 1], last, sizeof last);
    assert_int_equal(rint_(&redis, "HEXISTS %s conn_mailboxes", first), 0);
    assert_int_equal(rint_(&redis, "HEXISTS %s conn_mailboxes", last), 1);
    freeReplyObject(rcmd(&redis, "DEL %s", bad));
    freeReplyObject(rcmd(&redis, "RENAME %s %s", saved, bad));
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN", key, "{\"mailboxes\":null}");
    EXPECT(&r, 200, "PUT", CONN1);
    expect_list(&r, "mailboxes", "[\"INBOX\"]");
    char ckey[128];
    snprintf(ckey, sizeof ckey, "si:conn:%lld:PLAIN", pid);
    assert_int_equal(rint_(&redis, "HEXISTS %s mailboxes", ckey), 0);
    for (int i = 0; i < PROPAGATE_USERS; i++) {
        char ukey[128];
        user_key(uids[i], ukey, sizeof ukey);
        if (rint_(&redis, "HEXISTS %s conn_mailboxes", ukey) != 0)
            fail_msg("user %d: conn_mailboxes left", i);
    }
    /* Across both tries, each watched user reloaded exactly once. */
    assert_int_equal(updates_since(since, reload, nreload), nreload);

    /* A user created now copies the connection's current list. */
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN", key,
             "{\"mailboxes\":[\"\\\\All\"]}");
    EXPECT(&r, 200, "PUT", CONN1);
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, "tag=late");
    EXPECT(&r, 201, "POST", USERS);
    expect_list(&r, "mailboxes", "[\"\\\\All\"]");
    assert_string_equal(user_field("late", "conn_mailboxes"), "[\"\\\\All\"]");
    for (int i = 0; i < PROPAGATE_USERS; i++)
        free(uids[i]);
    free(uids);
    free(reload);
    api_resp_free(&r);
}

static void test_connect_transitions_enqueue_user_events(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=ev&email=ev%40x.com&login_username=ev&login_password=pw");
    EXPECT(&r, 201, "POST", USERS);
    char uid[32];
    uid_of("ev", uid);
    unsigned k = hrw_shard(uid, 64);
    char ready[64];
    snprintf(ready, sizeof ready, "si:{%u}:ready:%lld", k, pid);
    redisReply *ids = rcmd(&redis, "LRANGE %s 0 -1", ready);
    assert_int_equal(ids->elements, 1);
    char eid[128];
    snprintf(eid, sizeof eid, "%s", ids->element[0]->str);
    freeReplyObject(ids);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.connected.", uid);
    assert_true(strncmp(eid, prefix, strlen(prefix)) == 0);
    redisReply *e = rcmd(&redis, "HMGET si:{%u}:evt:%s type pid tag code state payload", k, eid);
    assert_string_equal(e->element[0]->str, "user_connected");
    assert_int_equal(atoll(e->element[1]->str), pid);
    assert_string_equal(e->element[2]->str, "ev");
    assert_string_equal(e->element[3]->str, "PLAIN");
    assert_string_equal(e->element[4]->str, "ready");
    assert_true(strncmp(e->element[5]->str, "v1:", 3) == 0); /* encrypted */
    freeReplyObject(e);

    /* Clearing the credentials disconnects: user_disconnected. */
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/ev", key, "login_username=");
    EXPECT(&r, 200, "PUT", USER);
    ids = rcmd(&redis, "LRANGE %s 0 -1", ready);
    assert_int_equal(ids->elements, 2);
    snprintf(prefix, sizeof prefix, "%s.disconnected.", uid);
    assert_true(strncmp(ids->element[0]->str, prefix, strlen(prefix)) == 0);
    freeReplyObject(ids);
    /* An update that changes nothing about the connection queues nothing. */
    api_form(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/ev", key, "email=z%40x.com");
    EXPECT(&r, 200, "PUT", USER);
    assert_int_equal(rint_(&redis, "LLEN %s", ready), 2);
    api_resp_free(&r);
}

static void test_connection_delete_removes_users_cursors_leases_and_events(void **state)
{
    (void)state;
    make_connection(api.port, key, "PLAIN");
    struct api_resp r = {0};
    char uids[3][32];
    for (int i = 0; i < 3; i++) {
        char form[128], tag[16];
        snprintf(tag, sizeof tag, "d%d", i);
        snprintf(form, sizeof form, "tag=%s&email=%s%%40x&login_username=a&login_password=b", tag,
                 tag);
        api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key, form);
        EXPECT(&r, 201, "POST", USERS);
        uid_of(tag, uids[i]);
        unsigned k = hrw_shard(uids[i], 64);
        /* What a watcher and a dispatcher would have made for the user. */
        freeReplyObject(rcmd(&redis, "HSET si:{%u}:cur:%s uidvalidity 1 last_uid 5", k, uids[i]));
        freeReplyObject(rcmd(&redis, "SET si:{%u}:lease:%s w1:1", k, uids[i]));
        freeReplyObject(
            rcmd(&redis, "HSET si:{%u}:evt:%s.1.7 type new_mail pid %lld", k, uids[i], pid));
        freeReplyObject(rcmd(&redis, "ZADD si:{%u}:retry 1 %s.1.7", k, uids[i]));
    }
    /* An event of another connection's user in the same queue stays. */
    freeReplyObject(
        rcmd(&redis, "ZADD si:{%u}:retry 1 ffffffffffffffffffffffff.1.1", hrw_shard(uids[0], 64)));
    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN", key, NULL);
    EXPECT(&r, 204, "DELETE", CONN1);
    for (int i = 0; i < 3; i++) {
        unsigned k = hrw_shard(uids[i], 64);
        char kk[128];
        snprintf(kk, sizeof kk, "si:{%u}:user:%s", k, uids[i]);
        assert_int_equal(rint_(&redis, "EXISTS %s", kk), 0);
        snprintf(kk, sizeof kk, "si:{%u}:cur:%s", k, uids[i]);
        assert_int_equal(rint_(&redis, "EXISTS %s", kk), 0);
        snprintf(kk, sizeof kk, "si:{%u}:lease:%s", k, uids[i]);
        assert_int_equal(rint_(&redis, "EXISTS %s", kk), 0);
        snprintf(kk, sizeof kk, "si:{%u}:evt:%s.1.7", k, uids[i]);
        assert_int_equal(rint_(&redis, "EXISTS %s", kk), 0);
        snprintf(kk, sizeof kk, "si:{%u}:users", k);
        redisReply *m = rcmd(&redis, "ZRANK %s %s", kk, uids[i]);
        assert_int_equal(m->type, REDIS_REPLY_NIL);
        freeReplyObject(m);
    }
    char kk[128];
    snprintf(kk, sizeof kk, "si:{%u}:retry", hrw_shard(uids[0], 64));
    assert_int_equal(rint_(&redis, "ZCARD %s", kk), 1);
    redisReply *left = rcmd(&redis, "KEYS si:tag:*");
    assert_int_equal(left->elements, 0);
    freeReplyObject(left);
    left = rcmd(&redis, "KEYS si:email:*");
    assert_int_equal(left->elements, 0);
    freeReplyObject(left);
    left = rcmd(&redis, "KEYS si:conn:*");
    assert_int_equal(left->elements, 0);
    freeReplyObject(left);
    redisReply *p = rcmd(&redis, "HGET si:provider:PLAIN connections_count");
    assert_string_equal(p->str, "0");
    freeReplyObject(p);
    redisReply *x = rcmd(&redis, "XREVRANGE si:changes + - COUNT 1");
    assert_string_equal(x->element[0]->element[1]->element[5]->str, "delete");
    freeReplyObject(x);
    api_resp_free(&r);
}

/* Walks v, resolving every $ref (resolve() fails the test on a dangling
 * one); returns how many there were. */
static int count_refs(yajl_val v)
{
    int n = 0;
    if (YAJL_IS_OBJECT(v)) {
        if (json_get_str(v, "$ref") != NULL) {
            resolve(v);
            n++;
        }
        for (size_t i = 0; i < v->u.object.len; i++)
            n += count_refs(v->u.object.values[i]);
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            n += count_refs(v->u.array.values[i]);
    }
    return n;
}

static void test_openapi_is_served_and_lists_every_route(void **state)
{
    (void)state;
    struct api_resp r = {0};
    api_json(&r, api.port, "GET", "/api/v1/openapi.json", NULL, NULL);
    EXPECT(&r, 200, "GET", "/api/v1/openapi.json");
    api_json(&r, api.port, "GET", "/api/v2/openapi.json", NULL, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/openapi.json");
    assert_string_equal(jstr(&r, "openapi"), "3.1.0");
    yajl_val paths = json_get(r.json, "paths");
    static const char *const routes[] = {"/api/v1/connections",
                                         "/api/v1/connections/{code}",
                                         "/api/v1/connections/{code}/users",
                                         "/api/v1/connections/{code}/users/{tag}",
                                         "/api/v1/events",
                                         "/api/v1/events/{id}",
                                         "/api/v1/events/{id}/replay",
                                         "/api/v1/webhook-test",
                                         "/api/v2/connections",
                                         CONN1,
                                         USERS,
                                         USER,
                                         "/api/v2/events",
                                         "/api/v2/events/{id}",
                                         "/api/v2/events/{id}/replay",
                                         "/api/v2/webhook-test",
                                         "/admin/api/providers",
                                         "/admin/api/providers/{code}",
                                         "/admin/api/partners",
                                         "/admin/api/partners/{id}",
                                         "/admin/api/partners/{id}/rotate-key",
                                         "/admin/api/partners/{id}/rotate-webhook-secret",
                                         "/admin/api/fleet",
                                         "/admin/api/queues",
                                         "/admin/api/dead-letters",
                                         "/admin/api/dead-letters/{id}/replay",
                                         "/users/connect/new",
                                         "/users/connect/callback",
                                         "/users/disconnect/new"};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (json_get(paths, routes[i]) == NULL)
            fail_msg("%s missing from the served spec", routes[i]);
    /* Every $ref of the document resolves. */
    assert_true(count_refs(r.json) > 20);
    api_resp_free(&r);
}

/* The original's request/response table, replayed under /api/v1 with its
 * parameter names and the key in the api_key parameter; each answer checked
 * against the spec and for the keys the original's clients read (its
 * errors are plain text). */
#define V1CONN  "/api/v1/connections"
#define V1CONN1 "/api/v1/connections/{code}"
#define V1USERS "/api/v1/connections/{code}/users"
#define V1USER  "/api/v1/connections/{code}/users/{tag}"

struct compat_row {
    const char *method, *path, *ctype, *body;
    int status;
    const char *tmpl;
    const char *keys; /* comma-separated keys the answer must have ("" none) */
};

static void test_compatibility_table_of_the_original(void **state)
{
    (void)state;
    static const struct compat_row rows[] = {
        {"GET", "/api/v1/connections", NULL, NULL, 200, V1CONN, ""},
        {"POST", "/api/v1/connections", "application/x-www-form-urlencoded",
         "imap_provider_code=PLAIN", 200, V1CONN, "imap_provider_code,users_count"},
        {"POST", "/api/v1/connections", "application/json",
         "{\"imap_provider_code\":\"GMAIL_OAUTH2\"}", 200, V1CONN,
         "imap_provider_code,users_count"},
        {"GET", "/api/v1/connections/PLAIN", NULL, NULL, 200, V1CONN1,
         "imap_provider_code,users_count"},
        {"PUT", "/api/v1/connections/GMAIL_OAUTH2", "application/x-www-form-urlencoded",
         "oauth2_client_id=id&oauth2_client_secret=s", 200, V1CONN1, "imap_provider_code"},
        {"POST", "/api/v1/connections/PLAIN/users", "application/x-www-form-urlencoded",
         "tag=User+1&email=user1%40localhost&login_username=User+1&login_password=password", 200,
         V1USERS, "tag,email,connect_url,disconnect_url,connected_at"},
        {"POST", "/api/v1/connections/GMAIL_OAUTH2/users", "application/json",
         "{\"tag\":\"g\",\"email\":\"g@gmail.com\",\"oauth2_refresh_token\":\"rt\"}", 200, V1USERS,
         "tag,email,connect_url,disconnect_url,connected_at"},
        {"GET", "/api/v1/connections/PLAIN/users", NULL, NULL, 200, V1USERS, ""},
        {"GET", "/api/v1/connections/PLAIN/users/User%201", NULL, NULL, 200, V1USER,
         "tag,email,connect_url,disconnect_url,connected_at"},
        {"PATCH", "/api/v1/connections/PLAIN/users/User%201", "application/x-www-form-urlencoded",
         "email=user1b%40localhost", 200, V1USER, "tag,email"},
        {"DELETE", "/api/v1/connections/PLAIN/users/User%201", NULL, NULL, 204, V1USER, ""},
        {"PUT", "/api/v1/connections/PLAIN/users/User%201", "application/x-www-form-urlencoded",
         "archived=false", 200, V1USER, "tag,email"},
        {"GET", "/api/v1/connections/PLAIN/users/nobody", NULL, NULL, 404, V1USER, ""},
        {"GET", "/api/v1/connections/NOPE/users", NULL, NULL, 404, V1USERS, ""},
        {"DELETE", "/api/v1/connections/GMAIL_OAUTH2", NULL, NULL, 204, V1CONN1, ""},
        {"GET", "/api/v1/connections/GMAIL_OAUTH2", NULL, NULL, 404, V1CONN1, ""},
    };
    struct api_resp r = {0};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct compat_row *row = &rows[i];
        /* The original read the key from the api_key parameter too. */
        char path[512];
        snprintf(path, sizeof path, "%s%sapi_key=%s", row->path, strchr(row->path, '?') ? "&" : "?",
                 key);
        api_call(&r, api.port, row->method, path, row->ctype, row->body,
                 row->body ? strlen(row->body) : 0, NULL);
        EXPECT(&r, row->status, row->method, row->tmpl);
        char keys[256];
        snprintf(keys, sizeof keys, "%s", row->keys);
        for (char *k = strtok(keys, ","); k != NULL; k = strtok(NULL, ","))
            if (json_get(r.json, k) == NULL)
                fail_msg("row %zu (%s %s): key %s missing from %s", i, row->method, row->path, k,
                         r.body);
    }
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connection_routes_answer_as_the_original, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_oauth2_connection_takes_credentials_and_validates_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_with_the_original_parameter_names, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_archive_restore_and_tag_reuse_resolve_to_the_live_user,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_email_is_unique_case_insensitive_among_live_users,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_are_percent_decoded_path_segments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_user_list_pages_with_a_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writes_reach_watchers_through_changes_and_shard_sets,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_transitions_enqueue_user_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_connection_delete_removes_users_cursors_leases_and_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openapi_is_served_and_lists_every_route, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_compatibility_table_of_the_original, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailboxes_are_refused_with_the_entry_named, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mailboxes_are_stored_canonical_and_users_inherit_them,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailboxes_missing_is_shown_as_the_watcher_wrote_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_update_copies_mailboxes_to_every_user,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
