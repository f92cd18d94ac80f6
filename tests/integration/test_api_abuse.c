/*
 * The API under hostile or careless use, against a real redis-server and
 * superimap-api: one partner trying every route on another's data; malformed,
 * oversized and mistyped requests (each answered with a clear 4xx, the node
 * still up, and Redis unchanged); 50 parallel creates of one tag; archive,
 * restore and rename races checked by a walk over every index; no secret in
 * clear anywhere in Redis; the per-key rate limit.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <pthread.h>

#include "core/hrw.h"

static struct redis_srv redis;
static struct proc api;
static char *key_a, *key_b;
static long long pid_a, pid_b;

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-abuse");
}

static int suite_teardown(void **state)
{
    (void)state;
    free(key_a);
    free(key_b);
    return api_suite_stop(&redis);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    make_provider(api.port, "PLAIN", "plain");
    make_provider(api.port, "GMAIL_OAUTH2", "oauth2");
    free(key_a);
    free(key_b);
    key_a = make_partner(api.port, "A", &pid_a);
    key_b = make_partner(api.port, "B", &pid_b);
    return 0;
}

static int still_up(void)
{
    return harness_http_get(api.port, "/healthz", NULL, 0) == 200 &&
           harness_proc_wait(&api, 0) == -1;
}

/* ---- Isolation ---- */

static void test_another_partners_data_answers_404_on_every_route(void **state)
{
    (void)state;
    make_connection(api.port, key_a, "PLAIN");
    struct api_resp r = {0};
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key_a,
             "tag=private-tag&email=private%40a.example&login_username=pusr123&login_password=pp");
    assert_int_equal(r.status, 201);
    char uid[32], tk[128];
    snprintf(tk, sizeof tk, "si:tag:%lld:PLAIN:private-tag", pid_a);
    redisReply *u = rcmd(&redis, "GET %s", tk);
    snprintf(uid, sizeof uid, "%s", u->str);
    freeReplyObject(u);
    char eid[64];
    snprintf(eid, sizeof eid, "%s.1.1", uid);
    unsigned k = hrw_shard(uid, 64);
    freeReplyObject(rcmd(&redis, "HSET si:{%u}:evt:%s id %s type new_mail pid %lld state dead", k,
                         eid, eid, pid_a));
    freeReplyObject(rcmd(&redis, "ZADD si:{%u}:dead 1 %s", k, eid));
    freeReplyObject(rcmd(&redis,
                         "XADD si:log:%lld * id %s type new_mail tag private-tag result "
                         "dead status 500 attempt 1",
                         pid_a, eid));
    redisReply *before = rcmd(&redis, "HGETALL si:{%u}:user:%s", k, uid);

    /* B without a PLAIN connection, then with its own. */
    for (int round = 0; round < 2; round++) {
        struct {
            const char *method, *path, *body;
        } calls[] = {
            {"GET", "/api/v2/connections/PLAIN", NULL},
            {"PUT", "/api/v2/connections/PLAIN", "{}"},
            {"GET", "/api/v2/connections/PLAIN/users/private-tag", NULL},
            {"PUT", "/api/v2/connections/PLAIN/users/private-tag", "{\"email\":\"x@y\"}"},
            {"PATCH", "/api/v2/connections/PLAIN/users/private-tag", "{\"archived\":true}"},
            {"DELETE", "/api/v2/connections/PLAIN/users/private-tag", NULL},
            {"GET", "/api/v2/connections/PLAIN/users/private%40a.example", NULL},
            {"POST", "/api/v2/events/x/replay", NULL},
            {"GET", "/api/v2/events/x", NULL},
        };
        char replay[128], show[128];
        snprintf(replay, sizeof replay, "/api/v2/events/%s/replay", eid);
        snprintf(show, sizeof show, "/api/v2/events/%s", eid);
        calls[7].path = replay;
        calls[8].path = show;
        for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
            if ((round == 0 && i == 1) || (round == 1 && i < 2))
                continue; /* round 1: B's own PLAIN connection is B's to read */
            api_json(&r, api.port, calls[i].method, calls[i].path, key_b, calls[i].body);
            if (r.status != 404)
                fail_msg("round %d: %s %s with B's key: %d %s", round, calls[i].method,
                         calls[i].path, r.status, r.body);
            if (strstr(r.body, uid) || strstr(r.body, "pusr123") || strstr(r.body, "\"email\""))
                fail_msg("%s %s leaks A's data: %s", calls[i].method, calls[i].path, r.body);
        }
        api_json(&r, api.port, "GET", "/api/v2/connections", key_b, NULL);
        assert_int_equal(r.status, 200);
        assert_int_equal((int)r.json->u.array.len, round);
        api_json(&r, api.port, "GET", "/api/v2/events", key_b, NULL);
        assert_int_equal(r.status, 200);
        assert_int_equal(json_get(r.json, "events")->u.array.len, 0);
        if (round == 0)
            make_connection(api.port, key_b, "PLAIN");
    }
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users", key_b, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.json->u.array.len, 0);
    /* B's delete of its own PLAIN takes nothing of A's. */
    api_json(&r, api.port, "DELETE", "/api/v2/connections/PLAIN", key_b, NULL);
    assert_int_equal(r.status, 204);
    redisReply *after = rcmd(&redis, "HGETALL si:{%u}:user:%s", k, uid);
    assert_int_equal(after->elements, before->elements);
    for (size_t i = 0; i < after->elements; i++)
        assert_string_equal(after->element[i]->str, before->element[i]->str);
    freeReplyObject(before);
    freeReplyObject(after);
    api_json(&r, api.port, "GET", "/api/v2/connections/PLAIN/users/private-tag", key_a, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_get(r.json, "archived")->type == yajl_t_false);
    api_resp_free(&r);
}

/* ---- Bad input ---- */

/* A fingerprint of every data key and its contents (node heartbeats excluded). */
static char *snapshot(void)
{
    redisContext *c = harness_redis_connect(&redis);
    redisReply *keys = redisCommand(c, "KEYS *");
    size_t cap = 1 << 20, len = 0;
    char *out = calloc(1, cap);
    /* Sorted, so the order of KEYS does not matter. */
    for (size_t i = 0; i < keys->elements; i++)
        for (size_t j = i + 1; j < keys->elements; j++)
            if (strcmp(keys->element[i]->str, keys->element[j]->str) > 0) {
                redisReply *t = keys->element[i];
                keys->element[i] = keys->element[j];
                keys->element[j] = t;
            }
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        if (strncmp(k, "si:node:", 8) == 0 || strcmp(k, "si:apis") == 0)
            continue;
        redisReply *d = redisCommand(c, "DUMP %s", k);
        unsigned long h = 5381;
        for (size_t j = 0; d && j < d->len; j++)
            h = h * 33 + (unsigned char)d->str[j];
        len += (size_t)snprintf(out + len, cap - len, "%s=%lx\n", k, h);
        freeReplyObject(d);
    }
    freeReplyObject(keys);
    redisFree(c);
    return out;
}

struct bad_req {
    const char *method, *path, *ctype, *body;
    int status;
    const char *code; /* error.code wanted */
};

static void test_bad_input_gets_a_clear_4xx_and_writes_nothing(void **state)
{
    (void)state;
    make_connection(api.port, key_a, "PLAIN");
    struct api_resp r = {0};
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key_a, "{\"tag\":\"x\"}");
    assert_int_equal(r.status, 201);
    char *big_tag = malloc(10 * 1024 + 64);
    memset(big_tag, 'a', 10 * 1024);
    big_tag[10 * 1024] = '\0';
    char *big_tag_body = malloc(10 * 1024 + 64);
    snprintf(big_tag_body, 10 * 1024 + 64, "{\"tag\":\"%s\"}", big_tag);
    char *big_path = malloc(10 * 1024 + 128);
    snprintf(big_path, 10 * 1024 + 128, "/api/v2/connections/PLAIN/users/%s", big_tag);
    char many[2048] = "";
    for (int i = 0; i < 70; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "p%d=1&", i);
    char deep[512] = "{\"tag\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    const char *users = "/api/v2/connections/PLAIN/users";
    const char *form = "application/x-www-form-urlencoded";
    const char *json = "application/json";
    const struct bad_req reqs[] = {
        {"POST", users, json, "{\"tag\":", 400, "invalid_json"},
        {"POST", users, json, "[\"tag\"]", 400, "invalid_json"},
        {"POST", users, json, "{\"tag\":\"a\",\"tag\":\"b\"}", 400, "invalid_json"},
        {"POST", users, json, "{\"tag\":{}}", 400, "invalid_parameter"},
        {"POST", users, json, "{\"tag\":1.5}", 400, "invalid_parameter"},
        {"POST", users, json, "{\"tag\":\"y\",\"archived\":\"perhaps\"}", 400, "invalid_parameter"},
        {"POST", users, json, "{\"tag\":\"y\",\"email\":[]}", 400, "invalid_parameter"},
        {"POST", users, json, "{\"tag\":\"bad\xff\"}", 400, "invalid_json"},
        {"POST", users, json, "{\"tag\":\"nul\\u0000x\"}", 400, "invalid_json"},
        {"POST", users, json, deep, 400, "invalid_json"},
        {"POST", users, form, "tag=bad%FF", 400, "invalid_parameter"},
        {"POST", users, form, "tag=nul%00x", 400, "invalid_parameter"},
        {"POST", users, form, "tag=bad%zz", 400, "invalid_parameter"},
        {"POST", users, form, "tag=a%2Fb", 400, "invalid_parameter"},
        {"POST", users, form, "tag=tab%09x", 400, "invalid_parameter"},
        {"POST", users, form, many, 400, "invalid_parameter"},
        {"POST", users, json, big_tag_body, 400, "invalid_parameter"},
        {"POST", users, "text/plain", "tag=z", 415, "unsupported_media_type"},
        {"POST", users, "multipart/form-data; boundary=x", "--x--", 415, "unsupported_media_type"},
        {"POST", users, "application/json; charset=latin1", "{\"tag\":\"z\"}", 415,
         "unsupported_media_type"},
        {"GET", "/api/v2/connections/PLAIN/users/a%2Fb", NULL, NULL, 404, "not_found"},
        {"GET", "/api/v2/connections/PLAIN/users/nul%00x", NULL, NULL, 400, "invalid_path"},
        {"GET", "/api/v2/connections/PLAIN/users/bad%FF", NULL, NULL, 400, "invalid_path"},
        {"GET", "/api/v2/connections/PLAIN/users/bad%zz", NULL, NULL, 400, "invalid_path"},
        {"GET", big_path, NULL, NULL, 400, "invalid_path"},
        {"POST", "/api/v2/connections/NOPE/users", json, "{\"tag\":\"z\"}", 404, "not_found"},
        {"POST", "/api/v2/connections", form, "imap_provider_code=NOPE", 404, "not_found"},
        {"GET", "/api/v2/nothing", NULL, NULL, 404, "not_found"},
        {"DELETE", "/api/v2/connections", NULL, NULL, 405, "method_not_allowed"},
        {"GET", "/api/v2/connections?q=%zz", NULL, NULL, 400, "invalid_parameter"},
    };
    char *before = snapshot();
    char h[128];
    snprintf(h, sizeof h, "x-api-key: %s", key_a);
    const char *hs[] = {h, NULL};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        const struct bad_req *q = &reqs[i];
        api_call(&r, api.port, q->method, q->path, q->ctype, q->body, q->body ? strlen(q->body) : 0,
                 hs);
        if (r.status != q->status || err_code(&r) == NULL || strcmp(err_code(&r), q->code) != 0)
            fail_msg("case %zu (%s %.60s %.60s): want %d %s, got %d %.300s", i, q->method, q->path,
                     q->body ? q->body : "", q->status, q->code, r.status, r.body);
        assert_true(still_up());
        char *after = snapshot();
        if (strcmp(before, after) != 0)
            fail_msg("case %zu wrote to Redis", i);
        free(after);
    }
    /* 1 MiB body: 413 before it is read into memory. */
    size_t mib = 1 << 20;
    char *huge = malloc(mib);
    memset(huge, 'a', mib);
    memcpy(huge, "tag=", 4);
    api_call(&r, api.port, "POST", users, form, huge, mib, hs);
    assert_int_equal(r.status, 413);
    assert_string_equal(err_code(&r), "too_large");
    /* ... also when it comes chunked, without a length. */
    const char *chunked[] = {h, "Transfer-Encoding: chunked", NULL};
    api_call(&r, api.port, "POST", users, form, huge, mib, chunked);
    assert_int_equal(r.status, 413);
    /* Missing and unknown keys. */
    api_call(&r, api.port, "GET", "/api/v2/connections", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 401);
    const char *longkey[] = {"x-api-key: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                             NULL};
    api_call(&r, api.port, "GET", "/api/v2/connections", NULL, NULL, 0, longkey);
    assert_int_equal(r.status, 401);
    assert_true(still_up());
    char *after = snapshot();
    assert_string_equal(before, after);
    free(after);
    free(before);
    free(huge);
    free(big_tag);
    free(big_tag_body);
    free(big_path);
    api_resp_free(&r);
}

/* ---- Concurrency ---- */

struct racer {
    int id;
    int status;
    int ops; /* for the race test */
};

static void *create_same_tag(void *arg)
{
    struct racer *w = arg;
    struct api_resp r = {0};
    char form[128];
    snprintf(form, sizeof form, "tag=Same-Tag&email=racer%d%%40x.example", w->id);
    api_form(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key_a, form);
    w->status = r.status;
    api_resp_free(&r);
    return NULL;
}

static void test_fifty_parallel_creates_of_one_tag_make_one_user(void **state)
{
    (void)state;
    make_connection(api.port, key_a, "PLAIN");
    struct racer w[50];
    pthread_t t[50];
    for (int i = 0; i < 50; i++) {
        w[i].id = i;
        w[i].status = 0;
        assert_int_equal(pthread_create(&t[i], NULL, create_same_tag, &w[i]), 0);
    }
    int created = 0, conflicts = 0;
    for (int i = 0; i < 50; i++) {
        pthread_join(t[i], NULL);
        created += w[i].status == 201;
        conflicts += w[i].status == 409;
    }
    assert_int_equal(created, 1);
    assert_int_equal(conflicts, 49);
    char k[128];
    snprintf(k, sizeof k, "si:conn:%lld:PLAIN:users", pid_a);
    assert_int_equal(rint_(&redis, "ZCARD %s", k), 1);
    redisReply *emails = rcmd(&redis, "KEYS si:email:*");
    assert_int_equal(emails->elements, 1);
    freeReplyObject(emails);
    snprintf(k, sizeof k, "si:conn:%lld:PLAIN", pid_a);
    redisReply *n = rcmd(&redis, "HGET %s users_count", k);
    assert_string_equal(n->str, "1");
    freeReplyObject(n);
}

#define RACE_USERS 6

static void *race(void *arg)
{
    struct racer *w = arg;
    struct api_resp r = {0};
    unsigned seed = (unsigned)w->id * 7919u + 1;
    for (int i = 0; i < 40; i++) {
        seed = seed * 1103515245u + 12345u;
        int u = (int)((seed >> 8) % RACE_USERS), op = (int)((seed >> 16) % 6);
        int other = (int)((seed >> 20) % RACE_USERS);
        char path[128], body[160];
        snprintf(path, sizeof path, "/api/v2/connections/PLAIN/users/t%d", u);
        switch (op) {
        case 0:
            api_json(&r, api.port, "DELETE", path, key_a, NULL);
            break;
        case 1:
            api_json(&r, api.port, "PUT", path, key_a, "{\"archived\":false}");
            break;
        case 2:
            snprintf(body, sizeof body, "{\"tag\":\"T%d\",\"email\":\"e%d@x\"}", u, other);
            api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key_a, body);
            break;
        case 3:
            snprintf(body, sizeof body, "{\"email\":\"E%d@X\"}", other);
            api_json(&r, api.port, "PATCH", path, key_a, body);
            break;
        case 4:
            snprintf(body, sizeof body,
                     "{\"archived\":false,\"login_username\":\"u\",\"login_password\":\"p%d\"}",
                     other);
            api_json(&r, api.port, "PUT", path, key_a, body);
            break;
        default:
            snprintf(body, sizeof body, "{\"login_password\":\"\",\"email\":null}");
            api_json(&r, api.port, "PUT", path, key_a, body);
            break;
        }
        if (r.status >= 500 || r.status < 200)
            w->status = r.status;
        w->ops++;
    }
    api_resp_free(&r);
    return NULL;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Walks every key of the connection and checks every index both ways. */
static void check_indexes(long long pid, const char *code)
{
    char zkey[128], ckey[128];
    snprintf(zkey, sizeof zkey, "si:conn:%lld:%s:users", pid, code);
    snprintf(ckey, sizeof ckey, "si:conn:%lld:%s", pid, code);
    redisReply *members = rcmd(&redis, "ZRANGE %s 0 -1", zkey);
    redisReply *count = rcmd(&redis, "HGET %s users_count", ckey);
    assert_int_equal(atoll(count->str), (long long)members->elements);
    freeReplyObject(count);
    int live_users = 0, live_emails = 0;
    for (size_t i = 0; i < members->elements; i++) {
        char member[512], uid[32];
        snprintf(member, sizeof member, "%s", members->element[i]->str);
        char *sep = strchr(member, '\x1f');
        assert_non_null(sep);
        *sep = '\0';
        snprintf(uid, sizeof uid, "%s", sep + 1);
        unsigned k = hrw_shard(uid, 64);
        redisReply *u =
            rcmd(&redis, "HMGET si:{%u}:user:%s tag email archived connected_at pid code", k, uid);
        assert_non_null(u->element[0]->str);
        char ltag[300], lemail[400];
        snprintf(ltag, sizeof ltag, "%s", u->element[0]->str);
        snprintf(lemail, sizeof lemail, "%s", u->element[1]->str ? u->element[1]->str : "");
        lower(ltag);
        lower(lemail);
        assert_string_equal(ltag, member); /* zset member has the current tag */
        int live = strcmp(u->element[2]->str, "0") == 0;
        int connected = u->element[3]->str && u->element[3]->str[0];
        redisReply *t = rcmd(&redis, "GET si:tag:%lld:%s:%s", pid, code, ltag);
        redisReply *e = rcmd(&redis, "GET si:email:%lld:%s:%s", pid, code, lemail);
        redisReply *m = rcmd(&redis, "ZSCORE si:{%u}:users %s", k, uid);
        int listed = m->type == REDIS_REPLY_STRING;
        if (live) {
            live_users++;
            if (t->type != REDIS_REPLY_STRING || strcmp(t->str, uid) != 0)
                fail_msg("live user %s (tag %s) is not in its tag index", uid, ltag);
            if (lemail[0]) {
                live_emails++;
                if (e->type != REDIS_REPLY_STRING || strcmp(e->str, uid) != 0)
                    fail_msg("live user %s is not in its email index (%s)", uid, lemail);
            }
            if (listed != connected)
                fail_msg("user %s: in the shard zset %d, connected %d", uid, listed, connected);
        } else {
            if (t->type == REDIS_REPLY_STRING && strcmp(t->str, uid) == 0)
                fail_msg("archived user %s still holds tag %s", uid, ltag);
            if (e->type == REDIS_REPLY_STRING && strcmp(e->str, uid) == 0)
                fail_msg("archived user %s still holds email %s", uid, lemail);
            if (listed)
                fail_msg("archived user %s is still watched", uid);
        }
        freeReplyObject(t);
        freeReplyObject(e);
        freeReplyObject(m);
        freeReplyObject(u);
    }
    freeReplyObject(members);
    /* Every index entry names a live user of this connection: none dangles. */
    static const char *const kinds[] = {"tag", "email"};
    for (int kind = 0; kind < 2; kind++) {
        redisReply *keys = rcmd(&redis, "KEYS si:%s:%lld:%s:*", kinds[kind], pid, code);
        assert_int_equal((int)keys->elements, kind == 0 ? live_users : live_emails);
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *uid = rcmd(&redis, "GET %s", keys->element[i]->str);
            unsigned k = hrw_shard(uid->str, 64);
            redisReply *u =
                rcmd(&redis, "HMGET si:{%u}:user:%s archived %s", k, uid->str, kinds[kind]);
            assert_string_equal(u->element[0]->str, "0");
            char value[400], want[512];
            snprintf(value, sizeof value, "%s", u->element[1]->str);
            lower(value);
            snprintf(want, sizeof want, "si:%s:%lld:%s:%s", kinds[kind], pid, code, value);
            assert_string_equal(keys->element[i]->str, want);
            freeReplyObject(u);
            freeReplyObject(uid);
        }
        freeReplyObject(keys);
    }
}

static void test_archive_restore_races_keep_every_index_consistent(void **state)
{
    (void)state;
    make_connection(api.port, key_a, "PLAIN");
    struct api_resp r = {0};
    for (int i = 0; i < RACE_USERS; i++) {
        char body[128];
        snprintf(body, sizeof body,
                 "{\"tag\":\"t%d\",\"email\":\"e%d@x\",\"login_username\":\"u\","
                 "\"login_password\":\"p\"}",
                 i, i);
        api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key_a, body);
        assert_int_equal(r.status, 201);
    }
    api_resp_free(&r);
    struct racer w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, race, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        if (w[i].status != 0)
            fail_msg("racer %d got status %d", i, w[i].status);
        assert_int_equal(w[i].ops, 40);
    }
    check_indexes(pid_a, "PLAIN");
    assert_true(still_up());
}

/* ---- Secrets at rest ---- */

static int contains(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return 1;
    return 0;
}

/* Appends every string of a reply (recursively) to buf. */
static void collect(redisReply *rep, char **buf, size_t *len, size_t *cap)
{
    if (rep == NULL)
        return;
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++)
            collect(rep->element[i], buf, len, cap);
        return;
    }
    if (rep->str == NULL)
        return;
    if (*len + rep->len + 2 > *cap) {
        while (*len + rep->len + 2 > *cap)
            *cap *= 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, rep->str, rep->len);
    *len += rep->len;
    (*buf)[(*len)++] = '\n';
}

static void test_no_secret_is_in_redis_in_clear(void **state)
{
    (void)state;
    struct api_resp r = {0};
    api_json(&r, api.port, "POST", "/api/v2/connections", key_a,
             "{\"imap_provider_code\":\"GMAIL_OAUTH2\",\"oauth2_client_id\":\"cid\","
             "\"oauth2_client_secret\":\"ClientSecret-7f3a9\"}");
    assert_int_equal(r.status, 201);
    make_connection(api.port, key_a, "PLAIN");
    api_json(&r, api.port, "POST", "/api/v2/connections/PLAIN/users", key_a,
             "{\"tag\":\"p\",\"login_username\":\"u\",\"login_password\":\"Password-93jd1\"}");
    assert_int_equal(r.status, 201);
    api_json(&r, api.port, "PUT", "/api/v2/connections/PLAIN/users/p", key_a,
             "{\"login_password\":\"Password-Changed-44\"}");
    assert_int_equal(r.status, 200);
    api_json(&r, api.port, "POST", "/api/v2/connections/GMAIL_OAUTH2/users", key_a,
             "{\"tag\":\"o\",\"email\":\"o@x\",\"oauth2_refresh_token\":\"1//RefreshTok-zz9\"}");
    assert_int_equal(r.status, 201);
    admin_json(&r, api.port, "POST", "/admin/api/partners",
               "{\"name\":\"S\",\"new_mail_webhook_url\":\"https://s/\"}");
    assert_int_equal(r.status, 201);
    char *key_s = strdup(jstr(&r, "api_key"));
    char *secret_s = strdup(jstr(&r, "webhook_secret"));
    char path[96];
    int64_t sid = 0;
    json_get_int(r.json, "id", &sid);
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-key", (long long)sid);
    admin_json(&r, api.port, "POST", path, NULL);
    char *key_s2 = strdup(jstr(&r, "api_key"));
    snprintf(path, sizeof path, "/admin/api/partners/%lld/rotate-webhook-secret", (long long)sid);
    admin_json(&r, api.port, "POST", path, NULL);
    char *secret_s2 = strdup(jstr(&r, "webhook_secret"));
    api_resp_free(&r);

    const char *secrets[] = {"ClientSecret-7f3a9",
                             "Password-93jd1",
                             "Password-Changed-44",
                             "1//RefreshTok-zz9",
                             key_a,
                             key_b,
                             key_s,
                             key_s2,
                             secret_s + 6,
                             secret_s2 + 6};
    /* Every key: its name, its DUMP, and its contents read by type. */
    redisContext *c = harness_redis_connect(&redis);
    size_t cap = 1 << 16, len = 0;
    char *all = malloc(cap);
    unsigned long long cursor = 0;
    int nkeys = 0;
    do {
        redisReply *s = redisCommand(c, "SCAN %llu COUNT 1000", cursor);
        cursor = strtoull(s->element[0]->str, NULL, 10);
        for (size_t i = 0; i < s->element[1]->elements; i++) {
            const char *k = s->element[1]->element[i]->str;
            nkeys++;
            collect(s->element[1]->element[i], &all, &len, &cap);
            redisReply *d = redisCommand(c, "DUMP %s", k);
            collect(d, &all, &len, &cap);
            freeReplyObject(d);
            redisReply *t = redisCommand(c, "TYPE %s", k);
            const char *cmd = strcmp(t->str, "hash") == 0     ? "HGETALL %s"
                              : strcmp(t->str, "string") == 0 ? "GET %s"
                              : strcmp(t->str, "list") == 0   ? "LRANGE %s 0 -1"
                              : strcmp(t->str, "set") == 0    ? "SMEMBERS %s"
                              : strcmp(t->str, "zset") == 0   ? "ZRANGE %s 0 -1"
                                                              : "XRANGE %s - +";
            redisReply *v = redisCommand(c, cmd, k);
            collect(v, &all, &len, &cap);
            freeReplyObject(v);
            freeReplyObject(t);
        }
        freeReplyObject(s);
    } while (cursor != 0);
    redisFree(c);
    assert_true(nkeys > 15);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (contains(all, len, secrets[i]))
            fail_msg("secret %zu is stored in clear", i);
    /* The test would see them: the usernames and tags are in clear. */
    assert_true(contains(all, len, "o@x"));
    free(all);
    free(key_s);
    free(key_s2);
    free(secret_s);
    free(secret_s2);
}

/* ---- Rate limit ---- */

static void test_rate_limit_answers_429_with_retry_after(void **state)
{
    (void)state;
    struct proc limited;
    const char *env[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_API_RATE_LIMIT=1",
                         "SUPERIMAP_API_RATE_BURST=3", NULL};
    start_api(&limited, &redis, "api-limited", env);
    struct api_resp r = {0};
    int ok = 0, limited_n = 0;
    char retry[32] = "";
    for (int i = 0; i < 6; i++) {
        api_json(&r, limited.port, "GET", "/api/v2/connections", key_a, NULL);
        if (r.status == 200)
            ok++;
        if (r.status == 429) {
            limited_n++;
            EXPECT(&r, 429, "GET", "/api/v2/connections");
            assert_string_equal(err_code(&r), "rate_limited");
            assert_true(api_header(&r, "Retry-After", retry, sizeof retry));
        }
    }
    /* 3 saved up, and at most one more earned during the loop. */
    assert_true(ok >= 3 && ok <= 4);
    assert_int_equal(ok + limited_n, 6);
    assert_true(atoi(retry) >= 1);
    /* Per key: B is not limited by A's use. */
    api_json(&r, limited.port, "GET", "/api/v2/connections", key_b, NULL);
    assert_int_equal(r.status, 200);
    /* Unknown keys make no bucket. */
    api_json(&r, limited.port, "GET", "/api/v2/connections", "nope", NULL);
    assert_int_equal(r.status, 401);
    redisReply *b = rcmd(&redis, "KEYS si:rl:*");
    assert_int_equal(b->elements, 2);
    freeReplyObject(b);
    harness_proc_stop(&limited);
    api_resp_free(&r);
}

/* Failed authentications are bounded per client address, counted before
 * any hashing or Redis work; behind a trusted proxy the address is the last
 * X-Forwarded-For hop, so one client cannot lock out the others. */
static void test_failed_authentications_are_bounded_per_client_address(void **state)
{
    (void)state;
    struct proc guarded;
    const char *env[] = {
        "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_TRUSTED_PROXIES=127.0.0.1",
        "SUPERIMAP_API_AUTH_FAILURE_BURST=5", "SUPERIMAP_API_AUTH_FAILURE_RATE=1", NULL};
    start_api(&guarded, &redis, "api-guarded", env);
    struct api_resp r = {0};
    const char *bad[] = {"x-api-key: not-a-key", "X-Forwarded-For: 203.0.113.7", NULL};
    for (int i = 0; i < 5; i++) {
        api_call(&r, guarded.port, "GET", "/api/v2/connections", NULL, NULL, 0, bad);
        assert_int_equal(r.status, 401);
    }
    api_call(&r, guarded.port, "GET", "/api/v2/connections", NULL, NULL, 0, bad);
    assert_int_equal(r.status, 429);
    assert_string_equal(err_code(&r), "too_many_failures");
    char retry[32];
    assert_true(api_header(&r, "Retry-After", retry, sizeof retry));
    assert_true(atoi(retry) >= 1);
    char key_hdr[128];
    snprintf(key_hdr, sizeof key_hdr, "x-api-key: %s", key_a);
    /* The address is refused whatever key it sends now... */
    const char *good_same[] = {key_hdr, "X-Forwarded-For: 203.0.113.7", NULL};
    api_call(&r, guarded.port, "GET", "/api/v2/connections", NULL, NULL, 0, good_same);
    assert_int_equal(r.status, 429);
    /* ...a forged earlier hop does not help (the proxy appends the real one)... */
    const char *forged[] = {key_hdr, "X-Forwarded-For: 198.51.100.1, 203.0.113.7", NULL};
    api_call(&r, guarded.port, "GET", "/api/v2/connections", NULL, NULL, 0, forged);
    assert_int_equal(r.status, 429);
    /* ...and other clients behind the same proxy are not affected. */
    const char *other[] = {key_hdr, "X-Forwarded-For: 203.0.113.8", NULL};
    api_call(&r, guarded.port, "GET", "/api/v2/connections", NULL, NULL, 0, other);
    assert_int_equal(r.status, 200);
    api_json(&r, guarded.port, "GET", "/api/v2/connections", key_a, NULL);
    assert_int_equal(r.status, 200);
    assert_true(harness_metric(guarded.port, "superimap_api_auth_blocked_total") == 3);
    harness_proc_stop(&guarded);
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_another_partners_data_answers_404_on_every_route, setup),
        cmocka_unit_test_setup(test_bad_input_gets_a_clear_4xx_and_writes_nothing, setup),
        cmocka_unit_test_setup(test_fifty_parallel_creates_of_one_tag_make_one_user, setup),
        cmocka_unit_test_setup(test_archive_restore_races_keep_every_index_consistent, setup),
        cmocka_unit_test_setup(test_no_secret_is_in_redis_in_clear, setup),
        cmocka_unit_test_setup(test_rate_limit_answers_429_with_retry_after, setup),
        cmocka_unit_test_setup(test_failed_authentications_are_bounded_per_client_address, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
