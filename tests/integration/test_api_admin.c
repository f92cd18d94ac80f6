/*
 * The admin API (/admin/api/) against a real redis-server and superimap-api:
 * bearer-token authentication, providers, partners with API key and webhook
 * secret issue and rotation (the old ones working for the grace period),
 * partner deletion with everything it owns, the fleet, queue depths and
 * dead letters with replay. Every answer is checked against web/openapi.json.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include "core/hrw.h"

static struct redis_srv redis;
static struct proc api;

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-admin");
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

#define PROVS "/admin/api/providers"
#define PROV  "/admin/api/providers/{code}"
#define PARTS "/admin/api/partners"
#define PART  "/admin/api/partners/{id}"

static void test_admin_api_needs_the_bearer_token(void **state)
{
    (void)state;
    struct api_resp r = {0};
    api_call(&r, api.port, "GET", "/admin/api/providers", NULL, NULL, 0, NULL);
    EXPECT(&r, 401, "GET", PROVS);
    assert_string_equal(err_code(&r), "unauthorized");
    const char *wrong[] = {"Authorization: Bearer test-admin-token-0123456789abcdeX", NULL};
    api_call(&r, api.port, "GET", "/admin/api/fleet", NULL, NULL, 0, wrong);
    EXPECT(&r, 401, "GET", "/admin/api/fleet");
    const char *basic[] = {"Authorization: Basic " TEST_ADMIN_TOKEN, NULL};
    api_call(&r, api.port, "GET", "/admin/api/fleet", NULL, NULL, 0, basic);
    EXPECT(&r, 401, "GET", "/admin/api/fleet");
    /* A partner key is not an admin credential. */
    api_json(&r, api.port, "GET", "/admin/api/partners", TEST_ADMIN_TOKEN, NULL);
    EXPECT(&r, 401, "GET", PARTS);
    admin_json(&r, api.port, "GET", "/admin/api/partners", NULL);
    EXPECT(&r, 200, "GET", PARTS);

    /* Without SUPERIMAP_ADMIN_TOKEN the admin API refuses everyone. */
    struct proc bare;
    const char *env[] = {"SUPERIMAP_API_RATE_LIMIT=0", NULL};
    start_api(&bare, &redis, "api-no-token", env);
    admin_json(&r, bare.port, "GET", "/admin/api/partners", NULL);
    EXPECT(&r, 401, "GET", PARTS);
    assert_non_null(strstr(r.body, "SUPERIMAP_ADMIN_TOKEN"));
    harness_proc_stop(&bare);
    api_resp_free(&r);
}

/* SUPERIMAP_WEB_ROOT that is not a directory: no static files, and every
 * route still answers (the node's catch-all 404 once took them all). */
static void test_routes_answer_without_a_web_root(void **state)
{
    (void)state;
    struct proc bare;
    const char *env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_API_RATE_LIMIT=0",
                         "SUPERIMAP_WEB_ROOT=/nonexistent/superimap-web", NULL};
    start_api(&bare, &redis, "api-no-web", env);
    assert_true(harness_log_contains(&bare, "SUPERIMAP_WEB_ROOT is not a directory"));
    struct api_resp r = {0};
    admin_json(&r, bare.port, "GET", "/admin/api/fleet", NULL);
    assert_int_equal(r.status, 200);
    api_call(&r, bare.port, "GET", "/api/v2/connections", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 401);
    api_call(&r, bare.port, "GET", "/index.html", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "not_found");
    harness_proc_stop(&bare);
    api_resp_free(&r);
}

/* mailbox_poll_s (issue #21): how often a watcher checks a user's other
 * mailboxes with STATUS on a server without NOTIFY. */
static void test_provider_mailbox_poll_interval(void **state)
{
    (void)state;
    struct api_resp r = {0};
    int64_t v = 0;
    admin_json(&r, api.port, "POST", PROVS,
               "{\"code\":\"P\",\"imap_host\":\"imap.example.com\",\"imap_port\":993}");
    EXPECT(&r, 201, "POST", PROVS);
    assert_int_equal(json_get_int(r.json, "mailbox_poll_s", &v), 0);
    assert_int_equal(v, 60);
    redisReply *h = rcmd(&redis, "HGET si:provider:P mailbox_poll_s");
    assert_string_equal(h->str, "60");
    freeReplyObject(h);
    admin_json(&r, api.port, "POST", PROVS,
               "{\"code\":\"Q\",\"imap_host\":\"imap.example.com\",\"imap_port\":993,"
               "\"mailbox_poll_s\":10}");
    EXPECT(&r, 201, "POST", PROVS);
    assert_int_equal(json_get_int(r.json, "mailbox_poll_s", &v), 0);
    assert_int_equal(v, 10);

    static const char *const bad[] = {"{\"mailbox_poll_s\":9}", "{\"mailbox_poll_s\":3601}",
                                      "{\"mailbox_poll_s\":\"often\"}", "{\"mailbox_poll_s\":1.5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        admin_json(&r, api.port, "PATCH", "/admin/api/providers/P", bad[i]);
        EXPECT(&r, 400, "PATCH", PROV);
        assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "mailbox_poll_s");
        assert_non_null(strstr(json_get_str(json_get(r.json, "error"), "message"), "10"));
    }
    admin_json(&r, api.port, "PUT", "/admin/api/providers/P", "{\"mailbox_poll_s\":3600}");
    EXPECT(&r, 200, "PUT", PROV);
    admin_json(&r, api.port, "GET", "/admin/api/providers/P", NULL);
    EXPECT(&r, 200, "GET", PROV);
    assert_int_equal(json_get_int(r.json, "mailbox_poll_s", &v), 0);
    assert_int_equal(v, 3600);
    /* Other updates keep it. */
    admin_json(&r, api.port, "PATCH", "/admin/api/providers/P", "{\"imap_port\":143}");
    EXPECT(&r, 200, "PATCH", PROV);
    assert_int_equal(json_get_int(r.json, "mailbox_poll_s", &v), 0);
    assert_int_equal(v, 3600);
    /* A provider made before the field existed shows the default. */
    freeReplyObject(rcmd(&redis, "HDEL si:provider:P mailbox_poll_s"));
    admin_json(&r, api.port, "GET", "/admin/api/providers/P", NULL);
    EXPECT(&r, 200, "GET", PROV);
    assert_int_equal(json_get_int(r.json, "mailbox_poll_s", &v), 0);
    assert_int_equal(v, 60);
    api_resp_free(&r);
}

static void test_providers_are_created_validated_updated_and_deleted(void **state)
{
    (void)state;
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", PROVS,
               "{\"code\":\"IMAPX\",\"imap_host\":\"imap.example.com\",\"imap_port\":993,"
               "\"tls\":\"implicit\",\"auth\":\"plain\",\"idle_renew_s\":600,"
               "\"max_connections\":15}");
    EXPECT(&r, 201, "POST", PROVS);
    int64_t v = 0;
    json_get_int(r.json, "imap_port", &v);
    assert_int_equal(v, 993);
    json_get_int(r.json, "max_connections", &v);
    assert_int_equal(v, 15);
    admin_json(&r, api.port, "POST", PROVS,
               "{\"code\":\"IMAPX\",\"imap_host\":\"h\",\"imap_port\":1}");
    EXPECT(&r, 409, "POST", PROVS);

    static const char *const bad[][2] = {
        {"{\"imap_host\":\"h\",\"imap_port\":1}", "code"},
        {"{\"code\":\"a:b\",\"imap_host\":\"h\",\"imap_port\":1}", "code"},
        {"{\"code\":\"B\",\"imap_port\":1}", "imap_host"},
        {"{\"code\":\"B\",\"imap_host\":\"h\"}", "imap_port"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":70000}", "imap_port"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":\"x\"}", "imap_port"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"tls\":\"ssl\"}", "tls"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"auth\":\"xoauth\"}", "auth"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"auth\":\"oauth2\"}",
         "oauth2_authorize_url"},
        {"{\"code\":\"B\",\"imap_host\":\"h h\",\"imap_port\":1}", "imap_host"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"colour\":\"red\"}", "colour"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"idle_renew_s\":5}", "idle_renew_s"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"smtp_host\":\"a "
         "b\",\"smtp_port\":25}",
         "smtp_host"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"smtp_host\":\"s\",\"smtp_port\":0}",
         "smtp_port"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"smtp_host\":\"s\"}", "smtp_port"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"smtp_port\":25}", "smtp_host"},
        {"{\"code\":\"B\",\"imap_host\":\"h\",\"imap_port\":1,\"smtp_host\":\"s\",\"smtp_port\":25,"
         "\"smtp_tls\":\"ssl\"}",
         "smtp_tls"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        admin_json(&r, api.port, "POST", PROVS, bad[i][0]);
        EXPECT(&r, 400, "POST", PROVS);
        const char *field = json_get_str(json_get(r.json, "error"), "field");
        if (field == NULL || strcmp(field, bad[i][1]) != 0)
            fail_msg("%s: want field %s, got %s", bad[i][0], bad[i][1], r.body);
    }
    redisReply *n = rcmd(&redis, "SCARD si:providers");
    assert_int_equal(n->integer, 1); /* nothing half-written */
    freeReplyObject(n);

    admin_json(&r, api.port, "GET", PROVS, NULL);
    EXPECT(&r, 200, "GET", PROVS);
    assert_int_equal(r.json->u.array.len, 1);
    admin_json(&r, api.port, "GET", "/admin/api/providers/IMAPX", NULL);
    EXPECT(&r, 200, "GET", PROV);
    admin_json(&r, api.port, "GET", "/admin/api/providers/NOPE", NULL);
    EXPECT(&r, 404, "GET", PROV);
    admin_json(&r, api.port, "PUT", "/admin/api/providers/IMAPX",
               "{\"imap_port\":143,\"tls\":\"starttls\"}");
    EXPECT(&r, 200, "PUT", PROV);
    assert_string_equal(jstr(&r, "tls"), "starttls");
    assert_string_equal(jstr(&r, "imap_host"), "imap.example.com");
    assert_null(json_get_str(r.json, "smtp_host"));
    admin_json(&r, api.port, "PATCH", "/admin/api/providers/IMAPX",
               "{\"smtp_host\":\"smtp.example.com\",\"smtp_port\":465,\"smtp_tls\":\"implicit\","
               "\"smtp_domain\":\"client.example.com\"}");
    EXPECT(&r, 200, "PATCH", PROV);
    assert_string_equal(jstr(&r, "smtp_host"), "smtp.example.com");
    json_get_int(r.json, "smtp_port", &v);
    assert_int_equal(v, 465);
    assert_string_equal(jstr(&r, "smtp_tls"), "implicit");
    assert_string_equal(jstr(&r, "smtp_domain"), "client.example.com");
    admin_json(&r, api.port, "PATCH", "/admin/api/providers/IMAPX", "{\"smtp_port\":587}");
    EXPECT(&r, 200, "PATCH", PROV);
    assert_string_equal(jstr(&r, "smtp_host"), "smtp.example.com");
    admin_json(&r, api.port, "PATCH", "/admin/api/providers/IMAPX", "{\"smtp_host\":\"\"}");
    EXPECT(&r, 200, "PATCH", PROV);
    assert_null(json_get_str(r.json, "smtp_host"));
    assert_true(json_get(r.json, "smtp_port") != NULL &&
                YAJL_IS_NULL(json_get(r.json, "smtp_port")));
    admin_json(&r, api.port, "PATCH", "/admin/api/providers/IMAPX", "{\"code\":\"OTHER\"}");
    EXPECT(&r, 400, "PATCH", PROV);

    /* In use: auth cannot change, and the provider cannot go. */
    char *key = make_partner(api.port, "P", NULL);
    make_connection(api.port, key, "IMAPX");
    admin_json(&r, api.port, "PUT", "/admin/api/providers/IMAPX",
               "{\"auth\":\"oauth2\",\"oauth2_authorize_url\":\"https://a/x\","
               "\"oauth2_token_url\":\"https://a/t\"}");
    EXPECT(&r, 409, "PUT", PROV);
    admin_json(&r, api.port, "DELETE", "/admin/api/providers/IMAPX", NULL);
    EXPECT(&r, 409, "DELETE", PROV);
    api_json(&r, api.port, "DELETE", "/api/v2/connections/IMAPX", key, NULL);
    assert_int_equal(r.status, 204);
    admin_json(&r, api.port, "DELETE", "/admin/api/providers/IMAPX", NULL);
    EXPECT(&r, 204, "DELETE", PROV);
    admin_json(&r, api.port, "DELETE", "/admin/api/providers/IMAPX", NULL);
    EXPECT(&r, 404, "DELETE", PROV);
    free(key);
    api_resp_free(&r);
}

static void test_partner_key_and_secret_are_shown_once_and_stored_encrypted(void **state)
{
    (void)state;
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", PARTS,
               "{\"name\":\"Acme\",\"new_mail_webhook_url\":\"https://acme.example/new\","
               "\"success_url\":\"https://acme.example/ok\",\"retry_schedule\":\"5,30,120\","
               "\"webhook_concurrency\":4}");
    EXPECT(&r, 201, "POST", PARTS);
    char *key = strdup(jstr(&r, "api_key"));
    char *secret = strdup(jstr(&r, "webhook_secret"));
    int64_t id = 0;
    json_get_int(r.json, "id", &id);
    assert_int_equal(strlen(key), 43); /* base64url of 32 bytes */
    assert_true(strncmp(secret, "whsec_", 6) == 0);
    assert_int_equal(strlen(secret), 6 + 44);

    char path[64];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", (long long)id);
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 200, "GET", PART);
    assert_null(strstr(r.body, key));
    assert_null(strstr(r.body, secret + 6));
    assert_null(json_get(r.json, "api_key"));
    assert_string_equal(jstr(&r, "retry_schedule"), "5,30,120");
    admin_json(&r, api.port, "GET", PARTS, NULL);
    EXPECT(&r, 200, "GET", PARTS);
    assert_null(strstr(r.body, key));

    /* The key works on the partner API. */
    api_json(&r, api.port, "GET", "/api/v2/connections", key, NULL);
    assert_int_equal(r.status, 200);

    char pkey[64];
    snprintf(pkey, sizeof pkey, "si:partner:%lld", (long long)id);
    redisReply *h = rcmd(&redis, "HMGET %s api_key webhook_secret", pkey);
    assert_true(strncmp(h->element[0]->str, "v1:", 3) == 0);
    assert_true(strncmp(h->element[1]->str, "v1:", 3) == 0);
    freeReplyObject(h);

    static const char *const bad[][2] = {
        {"{\"new_mail_webhook_url\":\"https://x/\"}", "name"},
        {"{\"name\":\"n\"}", "new_mail_webhook_url"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"ftp://x/\"}", "new_mail_webhook_url"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"https://x/\",\"retry_schedule\":\"5,x\"}",
         "retry_schedule"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"https://x/\",\"webhook_concurrency\":0}",
         "webhook_concurrency"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"https://x/\",\"failure_url\":\"x\"}",
         "failure_url"},
        {"{\"name\":[],\"new_mail_webhook_url\":\"https://x/\"}", "name"},
        /* Where browsers are sent: absolute http(s) URLs only (an open
         * redirect otherwise). */
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"https://x/\",\"success_url\":"
         "\"//evil.example/x\"}",
         "success_url"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"https://x/\",\"failure_url\":\"/ko\"}",
         "failure_url"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"https://x/\",\"success_url\":"
         "\"https:///x\"}",
         "success_url"},
        {"{\"name\":\"n\",\"new_mail_webhook_url\":\"http://\"}", "new_mail_webhook_url"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        admin_json(&r, api.port, "POST", PARTS, bad[i][0]);
        EXPECT(&r, 400, "POST", PARTS);
        const char *field = json_get_str(json_get(r.json, "error"), "field");
        if (field == NULL || strcmp(field, bad[i][1]) != 0)
            fail_msg("%s: want field %s, got %s", bad[i][0], bad[i][1], r.body);
    }
    redisReply *n = rcmd(&redis, "ZCARD si:partners");
    assert_int_equal(n->integer, 1);
    freeReplyObject(n);

    /* Update; setting a URL again clears its 410 disabling. */
    freeReplyObject(rcmd(&redis, "HSET %s new_mail_webhook_disabled %s", pkey, "410 Gone"));
    admin_json(&r, api.port, "PATCH", path,
               "{\"name\":\"Acme 2\",\"new_mail_webhook_url\":\"https://acme.example/v2\"}");
    EXPECT(&r, 200, "PATCH", PART);
    assert_string_equal(jstr(&r, "name"), "Acme 2");
    assert_true(YAJL_IS_NULL(json_get(r.json, "new_mail_webhook_disabled")));
    assert_true(YAJL_IS_NULL(json_get(r.json, "user_reauth_required_webhook_url")));
    /* user_reauth_required events get their own URL when the partner sets one. */
    admin_json(&r, api.port, "PATCH", path,
               "{\"user_reauth_required_webhook_url\":\"https://acme.example/reauth\"}");
    EXPECT(&r, 200, "PATCH", PART);
    assert_string_equal(jstr(&r, "user_reauth_required_webhook_url"),
                        "https://acme.example/reauth");
    admin_json(&r, api.port, "PATCH", path, "{\"user_reauth_required_webhook_url\":\"ftp://x/\"}");
    EXPECT(&r, 400, "PATCH", PART);
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"),
                        "user_reauth_required_webhook_url");
    admin_json(&r, api.port, "PUT", "/admin/api/partners/999", "{\"name\":\"x\"}");
    EXPECT(&r, 404, "PUT", PART);
    admin_json(&r, api.port, "GET", "/admin/api/partners/abc", NULL);
    EXPECT(&r, 404, "GET", PART);
    free(key);
    free(secret);
    api_resp_free(&r);
}

static void test_partner_create_keeps_a_brought_api_key(void **state)
{
    (void)state;
    struct api_resp r = {0};
    /* The original's form (SecureRandom.hex(10)) and superimap's are kept. */
    static const char *const keep[] = {"0123456789abcdef0123",
                                       "abcdefghijABCDEFGHIJ0123456789-_abcdefghijk"};
    for (size_t i = 0; i < 2; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"name\":\"Old %zu\",\"new_mail_webhook_url\":\"https://old.example/n\","
                 "\"api_key\":\"%s\"}",
                 i, keep[i]);
        admin_json(&r, api.port, "POST", PARTS, body);
        EXPECT(&r, 201, "POST", PARTS);
        assert_string_equal(jstr(&r, "api_key"), keep[i]);
        api_json(&r, api.port, "GET", "/api/v2/connections", keep[i], NULL);
        assert_int_equal(r.status, 200);
    }
    /* A key in use, weak or malformed keys are refused. */
    admin_json(&r, api.port, "POST", PARTS,
               "{\"name\":\"Dup\",\"new_mail_webhook_url\":\"https://x/\","
               "\"api_key\":\"0123456789abcdef0123\"}");
    EXPECT(&r, 409, "POST", PARTS);
    static const char *const bad[] = {"0123456789abcdef012", "0123456789ABCDEF0123",
                                      "0123456789abcdef01234", "short",
                                      "abcdefghijABCDEFGHIJ"
                                      "0123456789+/abcdefghijk"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"name\":\"Bad\",\"new_mail_webhook_url\":\"https://x/\",\"api_key\":\"%s\"}",
                 bad[i]);
        admin_json(&r, api.port, "POST", PARTS, body);
        EXPECT(&r, 400, "POST", PARTS);
        assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "api_key");
    }
    redisReply *n = rcmd(&redis, "ZCARD si:partners");
    assert_int_equal(n->integer, 2);
    freeReplyObject(n);
    api_resp_free(&r);
}

/* A key brought on update replaces the current one as a rotation does: the
 * old key works for the grace (SUPERIMAP_KEY_ROTATION_GRACE_SEC, a day
 * here), the same key again changes nothing, another partner's or a weak
 * key is refused. rotate-key takes a brought key too. */
static void test_partner_update_takes_a_brought_api_key(void **state)
{
    (void)state;
    long long id;
    char *old = make_partner(api.port, "Upd", &id);
    struct api_resp r = {0};
    admin_json(&r, api.port, "POST", PARTS,
               "{\"name\":\"Other\",\"new_mail_webhook_url\":\"https://x.example/n\","
               "\"api_key\":\"0123456789abcdef0123\"}");
    EXPECT(&r, 201, "POST", PARTS);
    char path[96];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", id);
    admin_json(&r, api.port, "PUT", path, "{\"api_key\":\"fedcba9876543210fedc\"}");
    EXPECT(&r, 200, "PUT", "/admin/api/partners/{id}");
    assert_null(json_get(r.json, "api_key"));
    api_json(&r, api.port, "GET", "/api/v2/connections", "fedcba9876543210fedc", NULL);
    assert_int_equal(r.status, 200);
    api_json(&r, api.port, "GET", "/api/v2/connections", old, NULL);
    assert_int_equal(r.status, 200);
    redisReply *keys = rcmd(&redis, "KEYS si:apikey:*");
    assert_int_equal(keys->elements, 3);
    freeReplyObject(keys);

    /* The same key again: nothing changes, the old one still works. */
    admin_json(&r, api.port, "PATCH", path,
               "{\"api_key\":\"fedcba9876543210fedc\",\"name\":\"Upd 2\"}");
    EXPECT(&r, 200, "PATCH", "/admin/api/partners/{id}");
    assert_string_equal(jstr(&r, "name"), "Upd 2");
    api_json(&r, api.port, "GET", "/api/v2/connections", old, NULL);
    assert_int_equal(r.status, 200);

    admin_json(&r, api.port, "PUT", path, "{\"api_key\":\"0123456789abcdef0123\"}");
    EXPECT(&r, 409, "PUT", "/admin/api/partners/{id}");
    assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "api_key");
    admin_json(&r, api.port, "PUT", path, "{\"api_key\":\"0123456789ABCDEF0123\"}");
    EXPECT(&r, 400, "PUT", "/admin/api/partners/{id}");
    api_json(&r, api.port, "GET", "/api/v2/connections", "fedcba9876543210fedc", NULL);
    assert_int_equal(r.status, 200);

    /* rotate-key with a brought key and no grace: only that key works. */
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-key", id);
    admin_json(&r, api.port, "POST", path,
               "{\"api_key\":\"abcdefghijABCDEFGHIJ0123456789-_abcdefghijk\",\"grace_seconds\":0}");
    EXPECT(&r, 200, "POST", "/admin/api/partners/{id}/rotate-key");
    assert_string_equal(jstr(&r, "api_key"), "abcdefghijABCDEFGHIJ0123456789-_abcdefghijk");
    api_json(&r, api.port, "GET", "/api/v2/connections", "fedcba9876543210fedc", NULL);
    assert_int_equal(r.status, 401);
    api_json(&r, api.port, "GET", "/api/v2/connections", old, NULL);
    assert_int_equal(r.status, 401);
    api_json(&r, api.port, "GET", "/api/v2/connections",
             "abcdefghijABCDEFGHIJ0123456789-_abcdefghijk", NULL);
    assert_int_equal(r.status, 200);
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-webhook-secret", id);
    admin_json(&r, api.port, "POST", path, "{\"api_key\":\"0123456789abcdef0123\"}");
    EXPECT(&r, 400, "POST", "/admin/api/partners/{id}/rotate-webhook-secret");
    free(old);
    api_resp_free(&r);
}

static void test_key_rotation_keeps_the_old_key_for_the_grace_period(void **state)
{
    (void)state;
    long long id;
    char *old = make_partner(api.port, "Rot", &id);
    struct api_resp r = {0};
    char path[96];
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-key", id);
    admin_json(&r, api.port, "POST", path, "{\"grace_seconds\":3600}");
    EXPECT(&r, 200, "POST", "/admin/api/partners/{id}/rotate-key");
    char *fresh = strdup(jstr(&r, "api_key"));
    assert_string_not_equal(fresh, old);
    assert_non_null(jstr(&r, "previous_api_key_valid_until"));
    api_json(&r, api.port, "GET", "/api/v2/connections", old, NULL);
    assert_int_equal(r.status, 200);
    api_json(&r, api.port, "GET", "/api/v2/connections", fresh, NULL);
    assert_int_equal(r.status, 200);

    /* A second rotation without grace: only the newest works. */
    admin_json(&r, api.port, "POST", path, "{\"grace_seconds\":0}");
    EXPECT(&r, 200, "POST", "/admin/api/partners/{id}/rotate-key");
    char *newest = strdup(jstr(&r, "api_key"));
    api_json(&r, api.port, "GET", "/api/v2/connections", old, NULL);
    assert_int_equal(r.status, 401);
    api_json(&r, api.port, "GET", "/api/v2/connections", fresh, NULL);
    assert_int_equal(r.status, 401);
    api_json(&r, api.port, "GET", "/api/v2/connections", newest, NULL);
    assert_int_equal(r.status, 200);
    redisReply *keys = rcmd(&redis, "KEYS si:apikey:*");
    assert_int_equal(keys->elements, 1);
    freeReplyObject(keys);

    /* The previous key is refused once its time is over, even if its lookup
     * key were still there. */
    admin_json(&r, api.port, "POST", path, "{\"grace_seconds\":3600}");
    char *after = strdup(jstr(&r, "api_key"));
    char pkey[64];
    snprintf(pkey, sizeof pkey, "si:partner:%lld", id);
    freeReplyObject(rcmd(&redis, "HSET %s api_key_old_until 1", pkey));
    api_json(&r, api.port, "GET", "/api/v2/connections", newest, NULL);
    assert_int_equal(r.status, 401);
    api_json(&r, api.port, "GET", "/api/v2/connections", after, NULL);
    assert_int_equal(r.status, 200);

    admin_json(&r, api.port, "POST", path, "{\"grace_seconds\":-1}");
    EXPECT(&r, 400, "POST", "/admin/api/partners/{id}/rotate-key");
    admin_json(&r, api.port, "POST", "/admin/api/partners/77/rotate-key", NULL);
    EXPECT(&r, 404, "POST", "/admin/api/partners/{id}/rotate-key");

    /* Webhook secret: new one returned, old one kept encrypted for the grace. */
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-webhook-secret", id);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 200, "POST", "/admin/api/partners/{id}/rotate-webhook-secret");
    assert_true(strncmp(jstr(&r, "webhook_secret"), "whsec_", 6) == 0);
    redisReply *h = rcmd(&redis, "HMGET %s webhook_secret_old webhook_secret_old_until", pkey);
    assert_true(strncmp(h->element[0]->str, "v1:", 3) == 0);
    assert_true(atoll(h->element[1]->str) > 0);
    freeReplyObject(h);
    snprintf(path, sizeof path, "/admin/api/partners/%lld", id);
    admin_json(&r, api.port, "GET", path, NULL);
    assert_non_null(jstr(&r, "previous_webhook_secret_valid_until"));
    free(old);
    free(fresh);
    free(newest);
    free(after);
    api_resp_free(&r);
}

static void test_partner_delete_takes_everything_it_owns(void **state)
{
    (void)state;
    make_provider(api.port, "PLAIN", "plain");
    long long id, other_id;
    char *key = make_partner(api.port, "Gone", &id);
    char *other = make_partner(api.port, "Stays", &other_id);
    make_connection(api.port, key, "PLAIN");
    make_connection(api.port, other, "PLAIN");
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=a&login_username=a&login_password=b");
    assert_int_equal(r.status, 201);
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", other, "tag=a");
    assert_int_equal(r.status, 201);
    api_json(&r, api.port, "POST", "/api/v2/webhook-test", key, "{\"wait_ms\":0}");
    assert_int_equal(r.status, 202);
    char log[64];
    snprintf(log, sizeof log, "si:log:%lld", id);
    freeReplyObject(rcmd(&redis, "XADD %s * id x type new_mail", log));

    char path[64];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", id);
    admin_json(&r, api.port, "DELETE", path, NULL);
    EXPECT(&r, 204, "DELETE", PART);
    admin_json(&r, api.port, "DELETE", path, NULL);
    EXPECT(&r, 404, "DELETE", PART);
    api_json(&r, api.port, "GET", "/api/v2/connections", key, NULL);
    assert_int_equal(r.status, 401);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/a", other, NULL);
    assert_int_equal(r.status, 200);

    /* Nothing of the deleted partner is left. */
    redisReply *all = rcmd(&redis, "KEYS *");
    char needle1[32], needle2[32];
    snprintf(needle1, sizeof needle1, ":%lld:", id);
    snprintf(needle2, sizeof needle2, ":%lld", id);
    for (size_t i = 0; i < all->elements; i++) {
        const char *k = all->element[i]->str;
        size_t kl = strlen(k), nl = strlen(needle2);
        if (strstr(k, needle1) != NULL || (kl > nl && strcmp(k + kl - nl, needle2) == 0))
            fail_msg("key %s of the deleted partner is left", k);
        if (strstr(k, ":evt:test.") != NULL)
            fail_msg("test event %s of the deleted partner is left", k);
        if (strstr(k, ":user:") != NULL) {
            redisReply *p = rcmd(&redis, "HGET %s pid", k);
            assert_int_equal(atoll(p->str), other_id);
            freeReplyObject(p);
        }
    }
    freeReplyObject(all);
    redisReply *c = rcmd(&redis, "HGET si:provider:PLAIN connections_count");
    assert_string_equal(c->str, "1");
    freeReplyObject(c);
    free(key);
    free(other);
    api_resp_free(&r);
}

static void test_fleet_queues_and_dead_letters(void **state)
{
    (void)state;
    struct api_resp r = {0};
    /* The running api beats every 5 s: wait for its row to be back. */
    long long deadline = harness_now_ms() + 8000;
    int nodes = 0;
    while (nodes == 0 && harness_now_ms() < deadline) {
        admin_json(&r, api.port, "GET", "/admin/api/fleet", NULL);
        EXPECT(&r, 200, "GET", "/admin/api/fleet");
        nodes = (int)json_get(r.json, "nodes")->u.array.len;
        if (nodes == 0)
            harness_poll_pause();
    }
    assert_int_equal(nodes, 1);
    yajl_val node = json_get(r.json, "nodes")->u.array.values[0];
    assert_string_equal(json_get_str(node, "id"), "api-admin");
    assert_string_equal(json_get_str(node, "role"), "api");
    int64_t age = -1;
    assert_int_equal(json_get_int(node, "heartbeat_age_ms", &age), 0);
    assert_true(age >= 0 && age < 20000);

    make_provider(api.port, "PLAIN", "plain");
    long long id;
    char *key = make_partner(api.port, "Q", &id);
    make_connection(api.port, key, "PLAIN");
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key,
             "tag=q&login_username=a&login_password=b");
    assert_int_equal(r.status, 201); /* queues a user_connected event */
    admin_json(&r, api.port, "GET", "/admin/api/queues", NULL);
    EXPECT(&r, 200, "GET", "/admin/api/queues");
    int64_t ready = 0;
    json_get_int(json_get(r.json, "totals"), "ready", &ready);
    assert_int_equal(ready, 1);
    yajl_val shard = json_get(r.json, "shards")->u.array.values[0];
    char pids[24];
    snprintf(pids, sizeof pids, "%lld", id);
    int64_t mine = 0;
    json_get_int(json_get(shard, "ready_by_partner"), pids, &mine);
    assert_int_equal(mine, 1);

    /* A dead letter, as the dispatcher leaves one: listed, then replayed. */
    const char *eid = "0123456789abcdef01234567.1.9";
    unsigned k = hrw_shard("0123456789abcdef01234567", 64);
    freeReplyObject(rcmd(&redis,
                         "HSET si:{%u}:evt:%s id %s type new_mail pid %lld state dead "
                         "attempts 9 last_status 500 last_error boom tag q code PLAIN",
                         k, eid, eid, id));
    freeReplyObject(rcmd(&redis, "ZADD si:{%u}:dead 1000 %s", k, eid));
    admin_json(&r, api.port, "GET", "/admin/api/dead-letters?limit=10", NULL);
    EXPECT(&r, 200, "GET", "/admin/api/dead-letters");
    yajl_val list = json_get(r.json, "dead_letters");
    assert_int_equal(list->u.array.len, 1);
    assert_string_equal(json_get_str(json_get(list->u.array.values[0], "event"), "id"), eid);
    char q[96];
    snprintf(q, sizeof q, "/admin/api/dead-letters?partner_id=%lld", id + 1);
    admin_json(&r, api.port, "GET", q, NULL);
    EXPECT(&r, 200, "GET", "/admin/api/dead-letters");
    assert_int_equal(json_get(r.json, "dead_letters")->u.array.len, 0);
    admin_json(&r, api.port, "GET", "/admin/api/dead-letters?limit=x", NULL);
    EXPECT(&r, 400, "GET", "/admin/api/dead-letters");

    /* Pages of one across dead letters that died in one millisecond: (died
     * ms, id) is the cursor, so none is skipped or repeated. */
    const char *same[] = {"0123456789abcdef0123456a.1.1", "0123456789abcdef0123456b.1.1",
                          "0123456789abcdef0123456c.1.1"};
    for (int i = 0; i < 3; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "%.24s", same[i]);
        unsigned ks = hrw_shard(uid, 64);
        freeReplyObject(rcmd(&redis,
                             "HSET si:{%u}:evt:%s id %s type new_mail pid %lld state dead "
                             "attempts 9 last_status 500 last_error boom tag q code PLAIN",
                             ks, same[i], same[i], id));
        freeReplyObject(rcmd(&redis, "ZADD si:{%u}:dead 2000 %s", ks, same[i]));
    }
    char page[256] = "/admin/api/dead-letters?limit=1";
    int seen[3] = {0, 0, 0}, pages = 0, older = 0;
    for (;;) {
        admin_json(&r, api.port, "GET", page, NULL);
        EXPECT(&r, 200, "GET", "/admin/api/dead-letters");
        list = json_get(r.json, "dead_letters");
        for (size_t i = 0; i < list->u.array.len; i++) {
            const char *got = json_get_str(json_get(list->u.array.values[i], "event"), "id");
            int known = 0;
            for (int j = 0; j < 3; j++)
                if (strcmp(got, same[j]) == 0) {
                    seen[j]++;
                    known = 1;
                }
            older += !known && strcmp(got, eid) == 0;
        }
        int64_t next = 0;
        if (json_get_int(r.json, "next_before", &next) != 0 || ++pages > 10)
            break;
        snprintf(page, sizeof page, "/admin/api/dead-letters?limit=1&before=%lld&after=%s",
                 (long long)next, jstr(&r, "next_after"));
    }
    for (int j = 0; j < 3; j++)
        assert_int_equal(seen[j], 1);
    assert_int_equal(older, 1); /* and the one that died earlier, after them */
    admin_json(&r, api.port, "GET", "/admin/api/dead-letters?before=2000&after=x%20y", NULL);
    EXPECT(&r, 400, "GET", "/admin/api/dead-letters");

    /* One partner's dead letters, a page of 2 at a time, when another
     * partner's newer ones fill a shard's first page: none is skipped. */
    const char *ua = "00000000000000000000aa01", *ub = NULL;
    static const char *const others[] = {"00000000000000000000bb01", "00000000000000000000bb02",
                                         "00000000000000000000bb03", "00000000000000000000bb04"};
    for (int i = 0; i < 4 && ub == NULL; i++)
        if (hrw_shard(others[i], 64) != hrw_shard(ua, 64))
            ub = others[i];
    assert_non_null(ub);
    struct {
        const char *uid;
        int n;
        long long at, pid;
    } dl[] = {{ua, 1, 5000, id},
              {ua, 2, 4999, id},
              {ua, 3, 4998, id + 1},
              {ub, 1, 3000, id + 1},
              {ub, 2, 2999, id + 1}};
    for (size_t i = 0; i < sizeof dl / sizeof dl[0]; i++) {
        unsigned ks = hrw_shard(dl[i].uid, 64);
        freeReplyObject(rcmd(&redis,
                             "HSET si:{%u}:evt:%s.1.%d id %s.1.%d type new_mail pid %lld "
                             "state dead attempts 9 tag q code PLAIN",
                             ks, dl[i].uid, dl[i].n, dl[i].uid, dl[i].n, dl[i].pid));
        freeReplyObject(
            rcmd(&redis, "ZADD si:{%u}:dead %lld %s.1.%d", ks, dl[i].at, dl[i].uid, dl[i].n));
    }
    int theirs = 0;
    pages = 0;
    snprintf(page, sizeof page, "/admin/api/dead-letters?limit=2&partner_id=%lld", id + 1);
    for (;;) {
        admin_json(&r, api.port, "GET", page, NULL);
        EXPECT(&r, 200, "GET", "/admin/api/dead-letters");
        list = json_get(r.json, "dead_letters");
        for (size_t i = 0; i < list->u.array.len; i++) {
            const char *got = json_get_str(json_get(list->u.array.values[i], "event"), "id");
            theirs += strncmp(got, ua, 24) == 0 || strncmp(got, ub, 24) == 0;
        }
        int64_t next = 0;
        if (json_get_int(r.json, "next_before", &next) != 0 || ++pages > 10)
            break;
        snprintf(page, sizeof page,
                 "/admin/api/dead-letters?limit=2&partner_id=%lld&before=%lld&after=%s", id + 1,
                 (long long)next, jstr(&r, "next_after"));
    }
    assert_int_equal(theirs, 3);

    char path[128];
    snprintf(path, sizeof path, "/admin/api/dead-letters/%s/replay", eid);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 202, "POST", "/admin/api/dead-letters/{id}/replay");
    assert_string_equal(jstr(&r, "state"), "ready");
    int64_t attempts = -1;
    json_get_int(r.json, "attempts", &attempts);
    assert_int_equal(attempts, 0);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 409, "POST", "/admin/api/dead-letters/{id}/replay");
    admin_json(&r, api.port, "POST", "/admin/api/dead-letters/nope.1.1/replay", NULL);
    EXPECT(&r, 404, "POST", "/admin/api/dead-letters/{id}/replay");
    char ready_key[64];
    snprintf(ready_key, sizeof ready_key, "si:{%u}:ready:%lld", k, id);
    redisReply *l = rcmd(&redis, "LRANGE %s 0 -1", ready_key);
    int found = 0;
    for (size_t i = 0; i < l->elements; i++)
        found |= strcmp(l->element[i]->str, eid) == 0;
    assert_true(found);
    freeReplyObject(l);
    free(key);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_admin_api_needs_the_bearer_token, setup),
        cmocka_unit_test_setup(test_routes_answer_without_a_web_root, setup),
        cmocka_unit_test_setup(test_providers_are_created_validated_updated_and_deleted, setup),
        cmocka_unit_test_setup(test_provider_mailbox_poll_interval, setup),
        cmocka_unit_test_setup(test_partner_key_and_secret_are_shown_once_and_stored_encrypted,
                               setup),
        cmocka_unit_test_setup(test_partner_create_keeps_a_brought_api_key, setup),
        cmocka_unit_test_setup(test_partner_update_takes_a_brought_api_key, setup),
        cmocka_unit_test_setup(test_key_rotation_keeps_the_old_key_for_the_grace_period, setup),
        cmocka_unit_test_setup(test_partner_delete_takes_everything_it_owns, setup),
        cmocka_unit_test_setup(test_fleet_queues_and_dead_letters, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
