/*
 * Rotating the encryption key to the end (README "Rotating the encryption
 * key") against a real redis-server and superimap-api: secrets of every kind
 * (a partner's api_key, api_key_old, webhook_secret, webhook_secret_old; a
 * connection's oauth2_client_secret; users' passwords, refresh tokens and
 * access tokens; events' payloads) made under key 1, `superimap-api rekey`
 * run under key 2 with key 1 as an old key, interrupted and resumed; then
 * every envelope opens with key 2 alone, an api that knows only key 2
 * serves the partner, and superimap_secrets_old_key says what is left. The
 * compare-and-set of rekey_swap.lua keeps a value written meanwhile.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <time.h>

#include "core/crypto.h"
#include "core/hrw.h"
#include "core/keys.h"
#include "core/rsync.h"
#include "core/schema.h"
#include "core/scripts.h"


#define KEY1 "1111111111111111111111111111111111111111111111111111111111111111"
#define KEY2 "2222222222222222222222222222222222222222222222222222222222222222"

static struct redis_srv redis;
static struct proc api;
static const char *const env1[] = {
    "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
    "SUPERIMAP_API_RATE_LIMIT=0", "SUPERIMAP_ENCRYPTION_KEY=" KEY1, NULL};
static const char *const env2[] = {
    "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
    "SUPERIMAP_API_RATE_LIMIT=0", "SUPERIMAP_ENCRYPTION_KEY=" KEY2, NULL};

static int suite_setup(void **state)
{
    (void)state;
    return scripts_init() < 0 || harness_redis_start(&redis) < 0 ? -1 : 0;
}

static int suite_teardown(void **state)
{
    (void)state;
    scripts_shutdown();
    return api_suite_stop(&redis);
}

/* Runs superimap-api rekey with args (NULL-terminated) under key 2, key 1
 * old; returns its exit status, its output into out. */
static int rekey(char *out, size_t outlen, const char *const *args)
{
    static const char *const env[] = {"SUPERIMAP_ENCRYPTION_KEY=" KEY2,
                                      "SUPERIMAP_ENCRYPTION_OLD_KEYS=" KEY1, NULL};
    return api_command(&redis, "rekey", args, env, out, outlen);
}

/* Every encrypted field the test made: key, field, AAD. */
struct secret {
    char key[SCHEMA_KEY_MAX], field[32], aad[SCHEMA_KEY_MAX];
};
static struct secret secrets[32];
static size_t nsecrets;

static void add_secret(const char *key, const char *field, const char *aad)
{
    struct secret *s = &secrets[nsecrets++];
    snprintf(s->key, sizeof s->key, "%s", key);
    snprintf(s->field, sizeof s->field, "%s", field);
    snprintf(s->aad, sizeof s->aad, "%s", aad);
}

/* How many of the secrets are under an old key of ring (1 each), checking
 * that each opens with it. */
static int count_old(const struct crypto_keys *ring)
{
    int old = 0;
    for (size_t i = 0; i < nsecrets; i++) {
        redisReply *v = rcmd(&redis, "HGET %s %s", secrets[i].key, secrets[i].field);
        if (v->type != REDIS_REPLY_STRING)
            fail_msg("%s %s is gone", secrets[i].key, secrets[i].field);
        char *plain = NULL;
        size_t len = 0;
        if (crypto_decrypt(ring, v->str, secrets[i].aad, &plain, &len) < 0)
            fail_msg("%s %s does not open", secrets[i].key, secrets[i].field);
        crypto_wipe(plain, len);
        free(plain);
        old += crypto_needs_rotation(ring, v->str) == 1;
        freeReplyObject(v);
    }
    return old;
}

/* superimap_secrets_old_key of the api, waited for until it is want. */
static void wait_metric(int port, long want)
{
    char body[65536], line[64];
    snprintf(line, sizeof line, "superimap_secrets_old_key %ld\n", want);
    long long deadline = harness_now_ms() + 15000;
    while (harness_now_ms() < deadline) {
        if (harness_http_get(port, "/metrics", body, sizeof body) == 200 && strstr(body, line))
            return;
        struct timespec ts = {.tv_nsec = 100000000L};
        nanosleep(&ts, NULL);
    }
    fail_msg("no %s in /metrics", line);
}

static void test_rotation_finishes_and_the_old_key_retires(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    assert_int_equal(harness_node_start(&api, &redis, "superimap-api", "api-k1", env1), 0);
    assert_int_equal(harness_wait_http(api.port, "/readyz", 200, 10000), 0);
    make_provider(api.port, "PLAIN", "plain");
    make_provider(api.port, "GMAIL_OAUTH2", "oauth2");
    long long pid = 0;
    char *key = make_partner(api.port, "Rekey", &pid);
    struct api_resp r = {0};
    char path[128], pkey[SCHEMA_KEY_MAX], ppid[32], aad[SCHEMA_KEY_MAX];
    snprintf(ppid, sizeof ppid, "%lld", pid);
    schema_key_partner(pkey, ppid);
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-webhook-secret", pid);
    admin_json(&r, api.port, "POST", path, "{}");
    assert_int_equal(r.status, 200);
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-key", pid);
    admin_json(&r, api.port, "POST", path, "{}");
    assert_int_equal(r.status, 200);
    free(key);
    key = strdup(jstr(&r, "api_key"));
    static const char *const pf[] = {"api_key", "api_key_old", "webhook_secret",
                                     "webhook_secret_old"};
    for (int i = 0; i < 4; i++) {
        schema_aad_partner(aad, ppid, pf[i]);
        add_secret(pkey, pf[i], aad);
    }
    api_json(&r, api.port, "POST", "/api/v2/connections", key,
             "{\"imap_provider_code\":\"GMAIL_OAUTH2\",\"oauth2_client_id\":\"cid\","
             "\"oauth2_client_secret\":\"client-secret-value\"}");
    assert_int_equal(r.status, 201);
    char ckey[SCHEMA_KEY_MAX];
    schema_key_conn(ckey, ppid, "GMAIL_OAUTH2");
    schema_aad_conn_secret(aad, ppid, "GMAIL_OAUTH2");
    add_secret(ckey, "oauth2_client_secret", aad);
    make_connection(api.port, key, "PLAIN");

    /* Users: passwords and refresh tokens (and their user_connected events). */
    struct crypto_keys *ring1 = NULL, *ring2 = NULL;
    assert_int_equal(crypto_keys_init(&ring1, KEY1, NULL, NULL, 0), 0);
    assert_int_equal(crypto_keys_init(&ring2, KEY2, NULL, NULL, 0), 0);
    for (int i = 0; i < 6; i++) {
        char form[256];
        int oauth2 = i % 2;
        snprintf(form, sizeof form,
                 oauth2 ? "tag=u%d&email=u%d%%40gmail.com&oauth2_refresh_token=rt%d"
                        : "tag=u%d&email=u%d%%40x.com&login_username=u%d&login_password=pw",
                 i, i, i);
        snprintf(path, sizeof path, "/api/v2/connections/%s/users",
                 oauth2 ? "GMAIL_OAUTH2" : "PLAIN");
        api_form(&r, api.port, "POST", path, key, form);
        assert_int_equal(r.status, 201);
        redisReply *uid =
            rcmd(&redis, "GET si:tag:%lld:%s:u%d", pid, oauth2 ? "GMAIL_OAUTH2" : "PLAIN", i);
        char ukey[SCHEMA_KEY_MAX];
        uint32_t k = hrw_shard(uid->str, 64);
        schema_key_user(ukey, k, uid->str);
        schema_aad_user_secret(aad, uid->str);
        add_secret(ukey, "secret", aad);
        if (oauth2) {
            /* An access token as a watcher's refresh writes it. */
            char *at = keys_seal_user(ring1, uid->str, "oauth2_access_token", "at-value");
            freeReplyObject(rcmd(&redis, "HSET %s oauth2_access_token %s", ukey, at));
            free(at);
            schema_aad_user_access_token(aad, uid->str);
            add_secret(ukey, "oauth2_access_token", aad);
        }
        redisReply *ids = rcmd(&redis, "LRANGE si:{%u}:ready:%lld 0 -1", k, pid);
        for (size_t j = 0; j < ids->elements; j++) {
            if (strncmp(ids->element[j]->str, uid->str, strlen(uid->str)) != 0)
                continue;
            char ekey[SCHEMA_KEY_MAX];
            schema_key_event(ekey, k, ids->element[j]->str);
            schema_aad_event(aad, ids->element[j]->str);
            add_secret(ekey, "payload", aad);
        }
        freeReplyObject(ids);
        freeReplyObject(uid);
    }
    size_t all = nsecrets;
    assert_true(all >= 4 + 1 + 6 + 3 + 6);
    assert_int_equal(count_old(ring1), 0); /* all under key 1, its ring's current */
    harness_proc_stop(&api);

    /* Key 2 now, key 1 old: the api still serves everything. */
    const char *const env12[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                                 "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                                 "SUPERIMAP_API_RATE_LIMIT=0",
                                 "SUPERIMAP_ENCRYPTION_KEY=" KEY2,
                                 "SUPERIMAP_ENCRYPTION_OLD_KEYS=" KEY1,
                                 NULL};
    assert_int_equal(harness_node_start(&api, &redis, "superimap-api", "api-k12", env12), 0);
    assert_int_equal(harness_wait_http(api.port, "/readyz", 200, 10000), 0);
    api_json(&r, api.port, "GET", "/api/v2/connections", key, NULL);
    assert_int_equal(r.status, 200);

    char out[4096], want[128];
    const char *count[] = {"--count", NULL};
    assert_int_equal(rekey(out, sizeof out, count), 0);
    snprintf(want, sizeof want, "done: %zu under an old key, 0 re-encrypted", all);
    if (strstr(out, want) == NULL)
        fail_msg("rekey --count said: %s", out);
    wait_metric(api.port, (long)all);

    /* Interrupted after 5 secrets (SCANs of 2 keys: its position is saved),
     * then resumed. */
    const char *part[] = {"--max", "5", "--rate", "100000", "--batch", "2", NULL};
    assert_int_equal(rekey(out, sizeof out, part), 0);
    assert_non_null(strstr(out, "stopped at --max"));
    redisReply *cur = rcmd(&redis, "HGET si:rekey cursor");
    assert_int_equal(cur->type, REDIS_REPLY_STRING);
    assert_string_not_equal(cur->str, "0");
    freeReplyObject(cur);
    struct crypto_keys *ring21 = NULL;
    assert_int_equal(crypto_keys_init(&ring21, KEY2, KEY1, NULL, 0), 0);
    int left = count_old(ring21);
    assert_true(left >= (int)all - 8 && left <= (int)all - 5);

    /* A secret written meanwhile (a partner's new webhook secret, under key
     * 2) is not overwritten by a swap made from the value before it. */
    redisReply *before = rcmd(&redis, "HGET %s webhook_secret", pkey);
    char *stale = keys_seal_partner(ring2, ppid, "webhook_secret", "whsec_stale");
    const char *swap[] = {pkey, "webhook_secret", "v1:not-the-current-value", stale};
    struct rsync_opts ro = {.url = redis.url, .timeout_ms = 5000};
    struct rsync *rs = rsync_new(&ro);
    redisReply *n = rsync_script(rs, "rekey_swap", 1, 4, swap, NULL);
    assert_int_equal(n->integer, 0);
    freeReplyObject(n);
    redisReply *after = rcmd(&redis, "HGET %s webhook_secret", pkey);
    assert_string_equal(after->str, before->str);
    freeReplyObject(after);
    freeReplyObject(before);
    free(stale);
    rsync_free(rs);

    /* The rest, paced at 20 secrets/s: at least (left - 1) / 20 s. */
    const char *rest[] = {"--rate", "20", "--batch", "2", NULL};
    assert_int_equal(rekey(out, sizeof out, rest), 0);
    if (strstr(out, "resuming at SCAN cursor") == NULL || strstr(out, "done:") == NULL)
        fail_msg("rekey said: %s", out);
    long rotated = 0, ms = 0;
    const char *at = strstr(out, "done:");
    assert_int_equal(sscanf(at, "done: %*d under an old key, %ld re-encrypted", &rotated), 1);
    assert_int_equal(rotated, left);
    assert_int_equal(sscanf(strstr(at, " in ") + 4, "%ld ms", &ms), 1);
    assert_true(ms >= (left - 1) * 1000 / 20);
    assert_int_equal(count_old(ring21), 0);
    wait_metric(api.port, 0);
    harness_proc_stop(&api);

    /* Key 1 retired: every secret opens with key 2 alone, and an api that
     * knows only key 2 serves the partner and its users. */
    assert_int_equal(count_old(ring2), 0);
    assert_int_equal(harness_node_start(&api, &redis, "superimap-api", "api-k2", env2), 0);
    assert_int_equal(harness_wait_http(api.port, "/readyz", 200, 10000), 0);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/u0", key, NULL);
    assert_int_equal(r.status, 200);
    api_json(&r, api.port, "GET", "/api/v2/connections/GMAIL_OAUTH2", key, NULL);
    assert_int_equal(r.status, 200);
    harness_proc_stop(&api);
    crypto_keys_free(ring1);
    crypto_keys_free(ring2);
    crypto_keys_free(ring21);
    free(key);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_finishes_and_the_old_key_retires),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
