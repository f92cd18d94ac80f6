/*
 * A user's user_connected / user_disconnected event is written by the same
 * script as the user's transition (scripts/lua/user_create.lua,
 * user_update.lua): an api killed right after its write to the user cannot
 * leave the user connected or disconnected without its event. Checked
 * deterministically with MONITOR against a real redis-server and
 * superimap-api: after the user's script, the api writes nothing more that
 * names the user, and the event is already queued.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <strings.h>

#include "core/hrw.h"
#include "core/scripts.h"

static struct redis_srv redis;
static struct proc api;
static char *key;
static long long pid;
static redisContext *mon;

static int suite_setup(void **state)
{
    (void)state;
    return scripts_init() < 0 ? -1 : api_suite_start(&redis, &api, "api-user-events");
}

static int suite_teardown(void **state)
{
    (void)state;
    free(key);
    scripts_shutdown();
    return api_suite_stop(&redis);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    make_provider(api.port, "PLAIN", "plain");
    free(key);
    key = make_partner(api.port, "Events", &pid);
    make_connection(api.port, key, "PLAIN");
    struct timeval tv = {.tv_sec = 10};
    mon = redisConnectUnixWithTimeout(redis.sock, tv);
    if (mon == NULL || mon->err || redisSetTimeout(mon, tv) != REDIS_OK)
        return -1;
    redisReply *ok = redisCommand(mon, "MONITOR");
    int started = ok != NULL && ok->type == REDIS_REPLY_STATUS;
    freeReplyObject(ok);
    return started ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    redisFree(mon);
    mon = NULL;
    return 0;
}

/* The commands Redis ran since the last call, as MONITOR lines, up to a
 * marker this test sends itself; NULL-terminated (free each and the array). */
static char **monitored(void)
{
    static int seq;
    char marker[64];
    snprintf(marker, sizeof marker, "test-marker-%d", ++seq);
    freeReplyObject(rcmd(&redis, "ECHO %s", marker));
    size_t n = 0, cap = 64;
    char **lines = calloc(cap, sizeof *lines);
    for (;;) {
        redisReply *line = NULL;
        assert_int_equal(redisGetReply(mon, (void **)&line), REDIS_OK);
        assert_int_equal(line->type, REDIS_REPLY_STATUS);
        int done = strstr(line->str, marker) != NULL;
        if (!done) {
            if (n + 1 >= cap)
                lines = realloc(lines, (cap *= 2) * sizeof *lines);
            lines[n++] = strdup(line->str);
        }
        freeReplyObject(line);
        if (done)
            break;
    }
    lines[n] = NULL;
    return lines;
}

static void lines_free(char **lines)
{
    for (size_t i = 0; lines[i] != NULL; i++)
        free(lines[i]);
    free(lines);
}

/* The command name of MONITOR line s ("1.2 [0 unix:...] \"HSET\" ...") into
 * out. */
static void command_of(const char *s, char out[32])
{
    const char *q = strstr(s, "] \"");
    out[0] = '\0';
    if (q != NULL)
        sscanf(q + 3, "%31[^\"]", out);
}

static int is_write(const char *cmd)
{
    static const char *const writes[] = {
        "EVALSHA", "EVAL",    "HSET",   "HMSET",   "HDEL",    "SET",    "DEL",    "LPUSH",
        "RPUSH",   "LREM",    "ZADD",   "ZREM",    "SADD",    "SREM",   "XADD",   "INCR",
        "INCRBY",  "HINCRBY", "EXPIRE", "PEXPIRE", "PUBLISH", "UNLINK", "RENAME", NULL};
    for (size_t i = 0; writes[i] != NULL; i++)
        if (strcasecmp(cmd, writes[i]) == 0)
            return 1;
    return 0;
}

/* Whether MONITOR line s is a command a script ran ("[0 lua]"), not a
 * client's. */
static int is_in_script(const char *s)
{
    const char *q = strstr(s, " lua] \"");
    return q != NULL && q < strstr(s, "] \"") + 1;
}

/* Asserts that lines hold a call of script name naming uid, and that no
 * command after it writes anything naming uid: the script was the user's
 * last write, so the event had to be in it. */
static void assert_script_is_last_write(char **lines, const char *name, const char *uid)
{
    const struct script_source *s = script_find(name);
    assert_non_null(s);
    char call[64];
    snprintf(call, sizeof call, "\"EVALSHA\" \"%s\"", script_sha(s));
    ssize_t at = -1;
    for (size_t i = 0; lines[i] != NULL; i++)
        if (strstr(lines[i], call) != NULL && strstr(lines[i], uid) != NULL)
            at = (ssize_t)i;
    if (at < 0)
        fail_msg("no call of %s for user %s", name, uid);
    for (size_t i = (size_t)at + 1; lines[i] != NULL; i++) {
        char cmd[32];
        command_of(lines[i], cmd);
        if (is_write(cmd) && strstr(lines[i], uid) != NULL && !is_in_script(lines[i]))
            fail_msg("the api wrote after %s: %.300s", name, lines[i]);
    }
}

static void uid_of(const char *tag, char uid[32])
{
    redisReply *rep = rcmd(&redis, "GET si:tag:%lld:PLAIN:%s", pid, tag);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    snprintf(uid, 32, "%s", rep->str);
    freeReplyObject(rep);
}

/* The ids of partner pid's ready events of user uid's shard, newest first. */
static redisReply *ready_ids(const char *uid)
{
    return rcmd(&redis, "LRANGE si:{%u}:ready:%lld 0 -1", hrw_shard(uid, 64), pid);
}

static void assert_event(const char *uid, const char *eid, const char *type)
{
    redisReply *e =
        rcmd(&redis, "HMGET si:{%u}:evt:%s type uid state payload", hrw_shard(uid, 64), eid);
    assert_non_null(e->element[0]->str);
    assert_string_equal(e->element[0]->str, type);
    assert_string_equal(e->element[1]->str, uid);
    assert_string_equal(e->element[2]->str, "ready");
    assert_true(strncmp(e->element[3]->str, "v1:", 3) == 0); /* sealed */
    freeReplyObject(e);
}

static void test_user_created_connected_is_queued_by_its_own_script(void **state)
{
    (void)state;
    struct api_resp r = {0};
    lines_free(monitored());
    api_form(&r, api.port, "POST", "/api/v1/connections/PLAIN/users", key,
             "tag=ann&email=ann%40x.com&login_username=ann&login_password=pw");
    EXPECT(&r, 201, "POST", "/api/v1/connections/{code}/users");
    char **lines = monitored();
    char uid[32];
    uid_of("ann", uid);
    assert_script_is_last_write(lines, "user_create", uid);
    lines_free(lines);
    redisReply *ids = ready_ids(uid);
    assert_int_equal(ids->elements, 1);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.connected.", uid);
    assert_true(strncmp(ids->element[0]->str, prefix, strlen(prefix)) == 0);
    assert_event(uid, ids->element[0]->str, "user_connected");
    /* connected_at is the event's time. */
    redisReply *at = rcmd(&redis, "HGET si:{%u}:user:%s connected_at", hrw_shard(uid, 64), uid);
    assert_string_equal(ids->element[0]->str + strlen(prefix), at->str);
    freeReplyObject(at);
    freeReplyObject(ids);
    api_resp_free(&r);
}

static void test_user_update_transitions_are_queued_by_its_own_script(void **state)
{
    (void)state;
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v1/connections/PLAIN/users", key, "tag=bob");
    EXPECT(&r, 201, "POST", "/api/v1/connections/{code}/users");
    char uid[32];
    uid_of("bob", uid);
    redisReply *ids = ready_ids(uid);
    assert_int_equal(ids->elements, 0); /* created without credentials */
    freeReplyObject(ids);

    /* Credentials complete: connected. */
    lines_free(monitored());
    api_form(&r, api.port, "PUT", "/api/v1/connections/PLAIN/users/bob", key,
             "login_username=bob&login_password=pw&email=bob%40x.com");
    EXPECT(&r, 200, "PUT", "/api/v1/connections/{code}/users/{tag}");
    char **lines = monitored();
    assert_script_is_last_write(lines, "user_update", uid);
    lines_free(lines);
    ids = ready_ids(uid);
    assert_int_equal(ids->elements, 1);
    assert_event(uid, ids->element[0]->str, "user_connected");
    freeReplyObject(ids);

    /* Username cleared: disconnected. */
    lines_free(monitored());
    api_form(&r, api.port, "PUT", "/api/v1/connections/PLAIN/users/bob", key, "login_username=");
    EXPECT(&r, 200, "PUT", "/api/v1/connections/{code}/users/{tag}");
    lines = monitored();
    assert_script_is_last_write(lines, "user_update", uid);
    lines_free(lines);
    ids = ready_ids(uid);
    assert_int_equal(ids->elements, 2);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.disconnected.", uid);
    assert_true(strncmp(ids->element[0]->str, prefix, strlen(prefix)) == 0);
    assert_event(uid, ids->element[0]->str, "user_disconnected");
    freeReplyObject(ids);

    /* A change of neither state queues nothing. */
    api_form(&r, api.port, "PUT", "/api/v1/connections/PLAIN/users/bob", key, "tag=Bob");
    EXPECT(&r, 200, "PUT", "/api/v1/connections/{code}/users/{tag}");
    ids = ready_ids(uid);
    assert_int_equal(ids->elements, 2);
    freeReplyObject(ids);
    api_resp_free(&r);
}

static void test_no_event_without_the_partners_url(void **state)
{
    (void)state;
    char pkey[64];
    snprintf(pkey, sizeof pkey, "si:partner:%lld", pid);
    freeReplyObject(rcmd(&redis, "HSET %s user_connected_webhook_url %s", pkey, ""));
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v1/connections/PLAIN/users", key,
             "tag=cy&email=cy%40x.com&login_username=cy&login_password=pw");
    EXPECT(&r, 201, "POST", "/api/v1/connections/{code}/users");
    char uid[32];
    uid_of("cy", uid);
    redisReply *ids = ready_ids(uid);
    assert_int_equal(ids->elements, 0);
    freeReplyObject(ids);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_created_connected_is_queued_by_its_own_script,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_update_transitions_are_queued_by_its_own_script,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_event_without_the_partners_url, setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
