/*
 * GET /api/v1/connections/:code/users answers every user in one array, as
 * the original did, in constant memory: 200,000 users listed in one
 * response while the api's resident memory grows by at most 16 MiB.
 *
 * The users are written into Redis directly, as user_create.lua leaves them
 * (the user hash, the connection's tag index; the listing reads nothing
 * else), in pipelines: 200,000 API calls would take minutes on a loaded
 * machine and prove nothing more about the listing. The answer is parsed as
 * it arrives with yajl's streaming parser (never held whole), and every tag
 * is checked, in the original's order (by email). The email-ordered copy
 * the api makes lives in Redis, and is gone afterwards.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <yajl/yajl_parse.h>

#include "core/hrw.h"
#include "core/schema.h"

#define NUSERS      200000
#define RSS_GROWTH  (16L << 20)
#define SHARDS      64 /* SUPERIMAP_SHARDS' default, which the api runs with */
#define PIPELINE    2000
#define USER_FORMAT "u%06d"

static struct redis_srv redis;
static struct proc api;

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-list-memory");
}

/* 1 when the api's resident memory means what it says: not under ASan
 * (make check-asan builds the api and this test alike; its quarantine keeps
 * freed memory resident) nor under TEST_PREFIX (make valgrind). The list
 * itself is checked in every build. */
static int rss_is_measurable(void)
{
#ifdef __SANITIZE_ADDRESS__
    return 0;
#else
    const char *prefix = getenv("TEST_PREFIX");
    return prefix == NULL || *prefix == '\0';
#endif
}

static int suite_teardown(void **state)
{
    (void)state;
    return api_suite_stop(&redis);
}

/* A field of /proc/<pid>/status in bytes (VmRSS, VmHWM), or -1. */
static long proc_kib_field(pid_t pid, const char *name)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, name, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10) * 1024;
    fclose(f);
    return v;
}

/* Writes users 0..NUSERS-1 of partner pid at code: the user hash and the
 * member of the connection's tag index, PIPELINE commands at a time. */
static void write_users(const char *pid, const char *code)
{
    redisContext *c = harness_redis_connect(&redis);
    assert_non_null(c);
    char zkey[SCHEMA_KEY_MAX];
    assert_true(schema_key_conn_users(zkey, pid, code) >= 0);
    int pending = 0;
    for (int i = 0; i < NUSERS; i++) {
        char uid[SCHEMA_UID_LEN + 1], tag[16], email[48], key[SCHEMA_KEY_MAX], member[64];
        snprintf(uid, sizeof uid, "%024d", i + 1);
        snprintf(tag, sizeof tag, USER_FORMAT, i);
        /* Emails in the reverse order of the tags: v1 lists by email. */
        snprintf(email, sizeof email, "e%06d@example.com", NUSERS - 1 - i);
        snprintf(member, sizeof member, "%s\x1f%s", tag, uid);
        assert_true(schema_key_user(key, hrw_shard(uid, SHARDS), uid) >= 0);
        redisAppendCommand(c,
                           "HSET %s uid %s pid %s code %s tag %s email %s archived 0 state idle "
                           "created_at 1 updated_at 1",
                           key, uid, pid, code, tag, email);
        redisAppendCommand(c, "ZADD %s 0 %s", zkey, member);
        pending += 2;
        if (pending >= PIPELINE || i == NUSERS - 1) {
            for (; pending > 0; pending--) {
                redisReply *rep = NULL;
                assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
                assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
                freeReplyObject(rep);
            }
        }
    }
    redisFree(c);
}

/* The streaming check of the answer: an array of objects whose "tag"s are
 * u199999, u199998, ... (the order of their emails), each once. */
struct list_check {
    yajl_handle h;
    int depth;
    int in_tag; /* the next string is a user's tag */
    long users; /* objects seen in the array */
    long tags;  /* tags seen, each the expected one */
    int bad;    /* a tag out of place, or the parser failed */
    size_t bytes;
};

static int on_start_map(void *ctx)
{
    struct list_check *lc = ctx;
    if (++lc->depth == 2)
        lc->users++;
    return 1;
}

static int on_end_map(void *ctx)
{
    ((struct list_check *)ctx)->depth--;
    return 1;
}

static int on_start_array(void *ctx)
{
    ((struct list_check *)ctx)->depth++;
    return 1;
}

static int on_end_array(void *ctx)
{
    ((struct list_check *)ctx)->depth--;
    return 1;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t n)
{
    struct list_check *lc = ctx;
    lc->in_tag = lc->depth == 2 && n == 3 && memcmp(k, "tag", 3) == 0;
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    struct list_check *lc = ctx;
    if (lc->in_tag) {
        char want[16];
        int len = snprintf(want, sizeof want, USER_FORMAT, NUSERS - 1 - (int)lc->tags);
        if ((size_t)len != n || memcmp(s, want, n) != 0)
            lc->bad = 1;
        lc->tags++;
        lc->in_tag = 0;
    }
    return 1;
}

static const yajl_callbacks list_callbacks = {
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

static size_t on_list_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct list_check *lc = userdata;
    size_t n = size * nmemb;
    lc->bytes += n;
    if (yajl_parse(lc->h, (const unsigned char *)data, n) != yajl_status_ok)
        lc->bad = 1;
    return n;
}

static void test_v1_lists_200000_users_in_one_response_in_constant_memory(void **state)
{
    (void)state;
    make_provider(api.port, "PLAIN", "plain");
    long long pid = 0;
    char *key = make_partner(api.port, "Partner", &pid);
    make_connection(api.port, key, "PLAIN");
    char spid[24];
    snprintf(spid, sizeof spid, "%lld", pid);
    long long t0 = harness_now_ms();
    write_users(spid, "PLAIN");
    long long t1 = harness_now_ms();

    /* Warm up the paths the list takes (a worker, its Redis connection,
     * one page) before the baseline. */
    struct api_resp r = {0};
    api_form(&r, api.port, "GET", "/api/v1/connections/PLAIN/users?limit=1000", key, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.json->u.array.len, 1000);
    api_resp_free(&r);
    long rss0 = proc_kib_field(api.pid, "VmRSS");
    assert_true(rss0 > 0);

    struct list_check lc = {0};
    lc.h = yajl_alloc(&list_callbacks, NULL, &lc);
    char url[256], hdr[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/connections/PLAIN/users", api.port);
    snprintf(hdr, sizeof hdr, "x-api-key: %s", key);
    struct curl_slist *hl = curl_slist_append(NULL, hdr);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_list_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &lc);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    long long t2 = harness_now_ms();
    if (yajl_complete_parse(lc.h) != yajl_status_ok)
        lc.bad = 1;
    yajl_free(lc.h);
    long rss1 = proc_kib_field(api.pid, "VmRSS");
    long hwm = proc_kib_field(api.pid, "VmHWM");

    print_message("%d users written in %lld ms; listed in %lld ms, %zu bytes; api VmRSS %ld KiB "
                  "before, %ld KiB after, VmHWM %ld KiB\n",
                  NUSERS, t1 - t0, t2 - t1, lc.bytes, rss0 / 1024, rss1 / 1024, hwm / 1024);
    assert_int_equal(cc, CURLE_OK);
    assert_int_equal(status, 200);
    assert_false(lc.bad);
    assert_int_equal(lc.depth, 0);
    assert_int_equal(lc.users, NUSERS);
    assert_int_equal(lc.tags, NUSERS);
    redisReply *left = rcmd(&redis, "KEYS si:sort:*");
    assert_int_equal(left->elements, 0);
    freeReplyObject(left);
    /* The peak since the baseline bounds the growth while listing. */
    if (rss_is_measurable() && hwm - rss0 > RSS_GROWTH)
        fail_msg(
            "api memory grew by %ld KiB while listing (peak %ld KiB over %ld KiB), over %ld KiB",
            (hwm - rss0) / 1024, hwm / 1024, rss0 / 1024, RSS_GROWTH / 1024);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_lists_200000_users_in_one_response_in_constant_memory),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
