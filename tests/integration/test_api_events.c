/*
 * The partner's view of its deliveries against a real redis-server and
 * superimap-api: the delivery log (filters, pages), an event's state, replay
 * of a dead letter, and POST /api/v2/webhook-test reporting what the
 * dispatcher did. The log entries and event hashes are written here in
 * core/schema.h's formats, as the dispatcher writes them; for webhook-test a
 * thread plays the dispatcher's part (claims the queued test event and
 * records a delivery), so the test needs no network.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <pthread.h>

#include "core/hrw.h"

static struct redis_srv redis;
static struct proc api;
static char *key;
static long long pid;

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-events");
}

static int suite_teardown(void **state)
{
    (void)state;
    free(key);
    return api_suite_stop(&redis);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    free(key);
    key = make_partner(api.port, "Ev", &pid);
    return 0;
}

#define UID_A "aaaaaaaaaaaaaaaaaaaaaaaa"
#define UID_B "bbbbbbbbbbbbbbbbbbbbbbbb"

/* Appends one delivery-log entry as the dispatcher does. */
static void log_attempt(long long who, const char *id, const char *type, const char *tag,
                        int attempt, int status, const char *result)
{
    redisReply *rep = rcmd(&redis,
                           "XADD si:log:%lld * id %s type %s uid x tag %s code PLAIN attempt %d "
                           "status %d result %s latency_ms 12 error %s next_at %s",
                           who, id, type, tag, attempt, status, result,
                           strcmp(result, "delivered") == 0 ? "" : "HTTP 500",
                           strcmp(result, "retry") == 0 ? "1795000000000" : "");
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    freeReplyObject(rep);
}

static void put_event(long long who, const char *uid, const char *id, const char *state)
{
    unsigned k = hrw_shard(uid, 64);
    freeReplyObject(rcmd(&redis,
                         "HSET si:{%u}:evt:%s id %s type new_mail pid %lld uid %s tag t code "
                         "PLAIN state %s attempts 9 last_status 500 last_error boom created_at "
                         "1700000000000",
                         k, id, id, who, uid, state));
    if (strcmp(state, "dead") == 0)
        freeReplyObject(rcmd(&redis, "ZADD si:{%u}:dead 1700000000000 %s", k, id));
}

static void test_delivery_log_is_listed_filtered_and_paged(void **state)
{
    (void)state;
    for (int i = 0; i < 30; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s.1.%d", i % 2 ? UID_A : UID_B, i);
        log_attempt(pid, id, i % 3 == 0 ? "user_connected" : "new_mail", i % 2 ? "alice" : "bob", 1,
                    i % 5 == 0 ? 500 : 200, i % 5 == 0 ? "retry" : "delivered");
    }
    log_attempt(pid + 1, UID_A ".1.99", "new_mail", "alice", 1, 200, "delivered");
    struct api_resp r = {0};
    api_json(&r, api.port, "GET", "/api/v2/events", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/events");
    yajl_val ev = json_get(r.json, "events");
    assert_int_equal(ev->u.array.len, 30);
    /* Newest first. */
    assert_string_equal(json_get_str(ev->u.array.values[0], "id"), UID_A ".1.29");
    assert_true(YAJL_IS_NULL(json_get(r.json, "next_cursor")));

    api_json(&r, api.port, "GET", "/api/v2/events?tag=alice&status=delivered", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/events");
    ev = json_get(r.json, "events");
    for (size_t i = 0; i < ev->u.array.len; i++) {
        assert_string_equal(json_get_str(ev->u.array.values[i], "user_tag"), "alice");
        assert_string_equal(json_get_str(ev->u.array.values[i], "result"), "delivered");
    }
    assert_int_equal(ev->u.array.len, 12); /* 15 odd i, minus i = 5, 15, 25 */
    api_json(&r, api.port, "GET", "/api/v2/events?type=user_connected&user=bob", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/events");
    assert_int_equal(json_get(r.json, "events")->u.array.len, 5); /* 0, 6, 12, 18, 24 */

    /* Pages of 7 cover the 30 entries exactly once. */
    char cursor[64] = "", path[256];
    int total = 0, pages = 0;
    do {
        snprintf(path, sizeof path, "/api/v2/events?limit=7%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        api_json(&r, api.port, "GET", path, key, NULL);
        EXPECT(&r, 200, "GET", "/api/v2/events");
        total += (int)json_get(r.json, "events")->u.array.len;
        const char *next = jstr(&r, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        pages++;
    } while (cursor[0] != '\0' && pages < 20);
    assert_int_equal(total, 30);
    assert_int_equal(pages, 5);

    api_json(&r, api.port, "GET", "/api/v2/events?cursor=abc", key, NULL);
    EXPECT(&r, 400, "GET", "/api/v2/events");
    api_json(&r, api.port, "GET", "/api/v2/events?limit=501", key, NULL);
    EXPECT(&r, 400, "GET", "/api/v2/events");
    api_resp_free(&r);
}

static void test_event_show_and_replay_of_a_dead_letter(void **state)
{
    (void)state;
    put_event(pid, UID_A, UID_A ".7.1", "dead");
    put_event(pid, UID_A, UID_A ".7.2", "delivered");
    put_event(pid + 1, UID_B, UID_B ".7.1", "dead");
    log_attempt(pid, UID_A ".7.1", "new_mail", "t", 9, 500, "dead");
    struct api_resp r = {0};
    api_json(&r, api.port, "GET", "/api/v2/events/" UID_A ".7.1", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/events/{id}");
    assert_string_equal(jstr(&r, "state"), "dead");
    int64_t st = 0;
    json_get_int(r.json, "last_status", &st);
    assert_int_equal(st, 500);
    api_json(&r, api.port, "GET", "/api/v2/events?status=dead", key, NULL);
    EXPECT(&r, 200, "GET", "/api/v2/events");
    assert_string_equal(json_get_str(json_get(r.json, "events")->u.array.values[0], "event_state"),
                        "dead");

    /* Another partner's event is not there, for this key. */
    api_json(&r, api.port, "GET", "/api/v2/events/" UID_B ".7.1", key, NULL);
    EXPECT(&r, 404, "GET", "/api/v2/events/{id}");
    api_json(&r, api.port, "POST", "/api/v2/events/" UID_B ".7.1/replay", key, NULL);
    EXPECT(&r, 404, "POST", "/api/v2/events/{id}/replay");
    api_json(&r, api.port, "GET", "/api/v2/events/bad%20id", key, NULL);
    EXPECT(&r, 404, "GET", "/api/v2/events/{id}");

    api_json(&r, api.port, "POST", "/api/v2/events/" UID_A ".7.2/replay", key, NULL);
    EXPECT(&r, 409, "POST", "/api/v2/events/{id}/replay");
    api_json(&r, api.port, "POST", "/api/v2/events/" UID_A ".7.1/replay", key, NULL);
    EXPECT(&r, 202, "POST", "/api/v2/events/{id}/replay");
    assert_string_equal(jstr(&r, "state"), "ready");
    unsigned k = hrw_shard(UID_A, 64);
    char dead[32], ready[64];
    snprintf(dead, sizeof dead, "si:{%u}:dead", k);
    snprintf(ready, sizeof ready, "si:{%u}:ready:%lld", k, pid);
    assert_int_equal(rint_(&redis, "ZCARD %s", dead), 0);
    assert_int_equal(rint_(&redis, "LLEN %s", ready), 1);
    api_json(&r, api.port, "POST", "/api/v2/events/" UID_A ".7.1/replay", key, NULL);
    EXPECT(&r, 409, "POST", "/api/v2/events/{id}/replay");
    api_resp_free(&r);
}

/* ---- webhook-test with a stand-in dispatcher ---- */

struct fake_dispatcher {
    long long pid;
    const char *state; /* what to record */
    int status;
    int stop;
    char seen[128]; /* the event id it handled */
};

static void *run_fake_dispatcher(void *arg)
{
    struct fake_dispatcher *d = arg;
    redisContext *c = harness_redis_connect(&redis);
    long long deadline = harness_now_ms() + 10000;
    while (!d->stop && harness_now_ms() < deadline) {
        redisReply *id = redisCommand(c, "RPOP si:{0}:ready:%lld", d->pid);
        if (id != NULL && id->type == REDIS_REPLY_STRING) {
            snprintf(d->seen, sizeof d->seen, "%s", id->str);
            freeReplyObject(redisCommand(c, "HSET si:{0}:evt:%s state %s attempts 1 last_status %d",
                                         id->str, d->state, d->status));
            freeReplyObject(id);
            break;
        }
        freeReplyObject(id);
        harness_poll_pause();
    }
    redisFree(c);
    return NULL;
}

static void test_webhook_test_reports_the_delivery(void **state)
{
    (void)state;
    struct api_resp r = {0};
    struct fake_dispatcher d = {pid, "delivered", 200, 0, ""};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_fake_dispatcher, &d), 0);
    api_json(&r, api.port, "POST", "/api/v2/webhook-test", key, NULL);
    pthread_join(t, NULL);
    EXPECT(&r, 200, "POST", "/api/v2/webhook-test");
    assert_true(json_get(r.json, "delivered")->type == yajl_t_true);
    assert_string_equal(jstr(&r, "result"), "delivered");
    assert_string_equal(jstr(&r, "id"), d.seen);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "test.%lld.", pid);
    assert_true(strncmp(d.seen, prefix, strlen(prefix)) == 0);
    redisReply *e = rcmd(&redis, "HMGET si:{0}:evt:%s type pid payload", d.seen);
    assert_string_equal(e->element[0]->str, "webhook_test");
    assert_int_equal(atoll(e->element[1]->str), pid);
    assert_true(strncmp(e->element[2]->str, "v1:", 3) == 0);
    freeReplyObject(e);

    /* A failing receiver: the answer says so. */
    struct fake_dispatcher f = {pid, "retry", 500, 0, ""};
    assert_int_equal(pthread_create(&t, NULL, run_fake_dispatcher, &f), 0);
    api_form(&r, api.port, "POST", "/api/v2/webhook-test", key, "wait_ms=8000");
    pthread_join(t, NULL);
    EXPECT(&r, 200, "POST", "/api/v2/webhook-test");
    assert_true(json_get(r.json, "delivered")->type == yajl_t_false);
    int64_t st = 0;
    json_get_int(r.json, "last_status", &st);
    assert_int_equal(st, 500);

    /* No dispatcher: pending, once wait_ms is over. */
    api_json(&r, api.port, "POST", "/api/v2/webhook-test", key, "{\"wait_ms\":200}");
    EXPECT(&r, 202, "POST", "/api/v2/webhook-test");
    assert_string_equal(jstr(&r, "result"), "pending");
    api_json(&r, api.port, "POST", "/api/v2/webhook-test", key, "{\"wait_ms\":20000}");
    EXPECT(&r, 400, "POST", "/api/v2/webhook-test");

    /* No URL to test. */
    char pkey[64];
    snprintf(pkey, sizeof pkey, "si:partner:%lld", pid);
    freeReplyObject(rcmd(&redis, "HDEL %s new_mail_webhook_url", pkey));
    api_json(&r, api.port, "POST", "/api/v2/webhook-test", key, NULL);
    EXPECT(&r, 409, "POST", "/api/v2/webhook-test");
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_delivery_log_is_listed_filtered_and_paged, setup),
        cmocka_unit_test_setup(test_event_show_and_replay_of_a_dead_letter, setup),
        cmocka_unit_test_setup(test_webhook_test_reports_the_delivery, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
