/*
 * The URLs a partner gives the api: a webhook or OAuth2 endpoint whose host
 * is a loopback, private, link-local or metadata address literally, in any
 * encoding a resolver or libcurl reads, is refused when stored (400 naming
 * the field) unless the api runs with SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1
 * (metadata addresses even then); host names are stored (the dispatcher's
 * connect-time guard judges what they resolve to: test_dispatcher's
 * test_ssrf_guard_refuses_loopback_before_connecting). Credentials in a
 * webhook URL are stored sealed and shown masked.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include "core/keys.h"
#include "tests/integration/webhook_fixture.h"

static struct redis_srv redis;
static struct proc api;    /* SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1, as the other tests */
static struct proc strict; /* production settings */
static const char *const strict_env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                                         "SUPERIMAP_API_RATE_LIMIT=0", NULL};

static int suite_setup(void **state)
{
    (void)state;
    if (api_suite_start(&redis, &api, "api-urls") < 0 ||
        harness_node_start(&strict, &redis, "superimap-api", "api-strict", strict_env) < 0)
        return -1;
    return harness_wait_http(strict.port, "/readyz", 200, 10000);
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

/* ---- Status checks, one place each ---- */

/* The answer refuses field, naming it. */
static void expect_refused(const struct api_resp *r, const char *field, const char *url)
{
    if (r->status != 400 || r->body == NULL || strstr(r->body, field) == NULL)
        fail_msg("%s = %s: want 400 naming the field, got %d: %.300s", field, url, r->status,
                 r->body ? r->body : "");
}

static void expect_created(const struct api_resp *r, const char *what)
{
    if (r->status != 201)
        fail_msg("%s: want 201, got %d: %.300s", what, r->status, r->body ? r->body : "");
}

static void expect_updated(const struct api_resp *r, const char *what)
{
    if (r->status != 200)
        fail_msg("%s: want 200, got %d: %.300s", what, r->status, r->body ? r->body : "");
}

/* ---- Private addresses ---- */

/* Every form the review tried, each a private, loopback, link-local,
 * unspecified or metadata address. */
static const char *const private_urls[] = {
    "http://127.0.0.1/x",
    "http://127.0.0.1:8080/x",
    "http://127.1/x",
    "http://2130706433/x",
    "http://0177.0.0.1/x",
    "http://0x7f.0.0.1/x",
    "http://0x7f000001/x",
    "http://017700000001/x",
    "http://%31%32%37.0.0.1/x",
    "http://user:pw@127.0.0.1/x",
    "http://0.0.0.0/x",
    "http://0/x",
    "http://10.0.0.1/x",
    "http://172.16.0.1/x",
    "http://192.168.1.1/x",
    "http://100.64.0.1/x",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:7f00:1]/x",
    "http://[fe80::1%25eth0]/x",
    "http://[fd00::1]/x",
    "https://[::]/x",
    "http://[64:ff9b::a00:1]/x",
};

/* Cloud credential endpoints: refused even where private ones are allowed. */
static const char *const metadata_urls[] = {
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.43518/x",
    "http://0xa9.0xfe.0xa9.0xfe/x",
    "http://2852039166/x",
    "http://[::ffff:169.254.169.254]/x",
    "http://[::ffff:0:a9fe:a9fe]/x",
    "http://[fd00:ec2::254]/x",
    "http://[fd00:ec2::23]/x",
    "http://169.254.170.2/v2/credentials",
    "http://168.63.129.16/x",
    "http://100.100.100.200/x",
};

/* Names are judged when resolved, not stored. */
static const char *const names[] = {
    "http://localhost:9/x",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://127.0.0.1.nip.io/x",
    "http://127.0.0.1./x",
};

static void try_partner(int port, const char *url, struct api_resp *r)
{
    char body[512];
    snprintf(body, sizeof body, "{\"name\":\"P\",\"new_mail_webhook_url\":\"%s\"}", url);
    admin_json(r, port, "POST", "/admin/api/partners", body);
}

static void test_private_webhook_urls_are_refused_when_stored(void **state)
{
    (void)state;
    struct api_resp r = {0};
    char body[512];
    for (size_t i = 0; i < sizeof private_urls / sizeof private_urls[0]; i++) {
        try_partner(strict.port, private_urls[i], &r);
        expect_refused(&r, "new_mail_webhook_url", private_urls[i]);
        try_partner(api.port, private_urls[i], &r);
        expect_created(&r, private_urls[i]);
    }
    for (size_t i = 0; i < sizeof metadata_urls / sizeof metadata_urls[0]; i++) {
        try_partner(strict.port, metadata_urls[i], &r);
        expect_refused(&r, "new_mail_webhook_url", metadata_urls[i]);
        try_partner(api.port, metadata_urls[i], &r);
        expect_refused(&r, "new_mail_webhook_url", metadata_urls[i]);
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        try_partner(strict.port, names[i], &r);
        expect_created(&r, names[i]);
    }
    /* An update is checked as a create, field by field. */
    try_partner(strict.port, "https://hooks.example.com/new", &r);
    expect_created(&r, "a public name");
    int64_t pid = 0;
    json_get_int(r.json, "id", &pid);
    char path[64];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", (long long)pid);
    static const char *const fields[] = {"new_mail_webhook_url", "user_connected_webhook_url",
                                         "user_disconnected_webhook_url",
                                         "user_reauth_required_webhook_url"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(body, sizeof body, "{\"%s\":\"http://[::ffff:10.1.2.3]/h\"}", fields[i]);
        admin_json(&r, strict.port, "PATCH", path, body);
        expect_refused(&r, fields[i], "http://[::ffff:10.1.2.3]/h");
    }
    snprintf(body, sizeof body, "{\"user_connected_webhook_url\":\"https://93.184.216.34/c\"}");
    admin_json(&r, strict.port, "PATCH", path, body);
    expect_updated(&r, "a public address");
    /* An OAuth2 token endpoint is fetched too (SUPERIMAP_OAUTH2_ALLOW_PRIVATE). */
    admin_json(&r, strict.port, "POST", "/admin/api/providers",
               "{\"code\":\"O\",\"imap_host\":\"imap.example.com\",\"auth\":\"oauth2\","
               "\"oauth2_authorize_url\":\"https://a.example.com/auth\","
               "\"oauth2_token_url\":\"http://169.254.169.254/token\"}");
    expect_refused(&r, "oauth2_token_url", "http://169.254.169.254/token");
    api_resp_free(&r);
}

/* ---- Credentials in URLs ---- */

static void test_webhook_url_credentials_are_sealed_and_shown_masked(void **state)
{
    (void)state;
    struct api_resp r = {0};
    try_partner(strict.port, "https://hook%40acme:pa55%3Aword@hooks.example.com/new?a=1", &r);
    expect_created(&r, "a URL with credentials");
    const char *masked = "https://hook%40acme:***@hooks.example.com/new?a=1";
    assert_string_equal(jstr(&r, "new_mail_webhook_url"), masked);
    int64_t pid = 0;
    json_get_int(r.json, "id", &pid);
    char path[64], spid[24];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", (long long)pid);
    snprintf(spid, sizeof spid, "%lld", (long long)pid);
    admin_json(&r, strict.port, "GET", path, NULL);
    expect_updated(&r, "GET the partner");
    assert_string_equal(jstr(&r, "new_mail_webhook_url"), masked);
    assert_null(strstr(r.body, "pa55"));
    admin_json(&r, strict.port, "PATCH", path,
               "{\"user_connected_webhook_url\":\"http://token@hooks.example.com/c\"}");
    expect_updated(&r, "a second URL with credentials");
    assert_string_equal(jstr(&r, "user_connected_webhook_url"), "http://***@hooks.example.com/c");

    /* In Redis: the masked URL, the userinfo sealed beside it, which opens
     * back to the whole URL; the password nowhere in clear. */
    char key[64];
    snprintf(key, sizeof key, "si:partner:%s", spid);
    redisReply *h = rcmd(&redis, "HGETALL %s", key);
    const char *shown = NULL, *sealed = NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        assert_null(strstr(h->element[i + 1]->str, "pa55"));
        if (strcmp(h->element[i]->str, "new_mail_webhook_url") == 0)
            shown = h->element[i + 1]->str;
        if (strcmp(h->element[i]->str, "new_mail_webhook_url_userinfo") == 0)
            sealed = h->element[i + 1]->str;
    }
    assert_non_null(shown);
    assert_non_null(sealed);
    assert_string_equal(shown, masked);
    char *url = keys_open_partner_url(wf_keys(), spid, "new_mail_webhook_url", shown, sealed);
    assert_non_null(url);
    assert_string_equal(url, "https://hook%40acme:pa55%3Aword@hooks.example.com/new?a=1");
    keys_wipe_free(url);
    freeReplyObject(h);

    /* A URL without credentials replaces them: the sealed part goes. */
    admin_json(&r, strict.port, "PATCH", path,
               "{\"new_mail_webhook_url\":\"https://hooks.example.com/plain\"}");
    expect_updated(&r, "a URL without credentials");
    assert_int_equal(rint_(&redis, "HEXISTS %s new_mail_webhook_url_userinfo", key), 0);
    assert_int_equal(rint_(&redis, "HEXISTS %s user_connected_webhook_url_userinfo", key), 1);
    assert_false(harness_log_contains(&strict, "pa55"));
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_private_webhook_urls_are_refused_when_stored, setup),
        cmocka_unit_test_setup(test_webhook_url_credentials_are_sealed_and_shown_masked, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
