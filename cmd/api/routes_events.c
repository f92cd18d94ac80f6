/*
 * cmd/api/routes_events: what a partner could not see in the original: the
 * delivery log of its webhooks, each event's state, replay of dead letters,
 * and a test webhook on demand. Also the enqueueing of the events the api
 * itself makes (user_connected, user_disconnected, webhook_test), through
 * the dispatcher's scripts/lua/event_enqueue.lua.
 *
 * Formats are core/schema.h's "Event fields" and "Delivery log". An event is
 * read only when its pid is the caller's: another partner's ids answer 404
 * exactly like ids that do not exist.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"

#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX     500
#define EVENTS_SCAN_MAX      5000 /* log entries read per request when filtering */
#define EVENT_ID_MAX         200
#define TEST_WAIT_DEFAULT_MS 5000
#define TEST_WAIT_MAX_MS     10000

/* ---- Enqueueing ---- */

/* Queues one event: the hash fields are type, uid, code, tag, sha1 and the
 * payload (body without timestamp and signature), encrypted with AAD
 * si:evt:<eid>. Returns 0, or -SIMAP_ECONN / -SIMAP_ECRYPTO. */
static int enqueue(struct req *r, uint32_t k, const char *eid, const char *type, const char *uid,
                   const char *code, const char *tag, const char *sha1, const char *payload)
{
    char aad[SCHEMA_KEY_MAX];
    snprintf(aad, sizeof aad, "si:evt:%s", eid);
    char *sealed = NULL;
    if (crypto_encrypt(r->api->keys, payload, strlen(payload), aad, &sealed) < 0)
        return -SIMAP_ECRYPTO;
    char kevt[SCHEMA_KEY_MAX], kready[SCHEMA_KEY_MAX], kpartners[SCHEMA_KEY_MAX];
    snprintf(kevt, sizeof kevt, "si:{%u}:evt:%s", k, eid);
    snprintf(kready, sizeof kready, "si:{%u}:ready:%s", k, r->partner.pid);
    snprintf(kpartners, sizeof kpartners, "si:{%u}:ready_partners", k);
    const char *argv[] = {kevt, kready, kpartners, eid,       r->partner.pid, "type",
                          type, "uid",  uid,       "code",    code,           "tag",
                          tag,  "sha1", sha1,      "payload", sealed};
    redisReply *rep = store_script(r, "event_enqueue", 3, 17, argv, NULL);
    xfree(sealed);
    if (rep == NULL)
        return -SIMAP_ECONN;
    freeReplyObject(rep);
    return 0;
}

int events_enqueue_user(struct req *r, const char *type, const struct rec *u, const char *at_ms)
{
    char pkey[SCHEMA_KEY_MAX];
    snprintf(pkey, sizeof pkey, "si:partner:%s", r->partner.pid);
    redisReply *url = store_cmd(r, "HGET %s %s_webhook_url", pkey, type);
    if (url == NULL)
        return -SIMAP_ECONN;
    int wanted = url->type == REDIS_REPLY_STRING && url->len > 0;
    freeReplyObject(url);
    if (!wanted)
        return 0;
    const char *uid = rec_get(u, "uid");
    const char *tag = rec_get(u, "tag");
    int connected = strcmp(type, "user_connected") == 0;
    char eid[128];
    snprintf(eid, sizeof eid, "%s.%s.%s", uid, connected ? "connected" : "disconnected", at_ms);
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    if (crypto_sha1_hex(tag, strlen(tag), sha1) < 0)
        return -SIMAP_ECRYPTO;
    struct json_gen *g = json_gen_new(64 * 1024);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", tag);
    json_gen_key_str(g, "imap_provider_code", rec_get(u, "code"));
    if (connected)
        json_gen_key_str(g, "email", rec_get(u, "email"));
    json_gen_key_str(g, "event", type);
    json_gen_key_str(g, "id", eid);
    json_gen_object_close(g);
    char *payload;
    int rc = json_gen_finish(g, &payload, NULL);
    json_gen_free(g);
    if (rc < 0)
        return rc;
    rc = enqueue(r, api_shard(r->api, uid), eid, type, uid, rec_get(u, "code"), tag, sha1, payload);
    xfree(payload);
    if (rc < 0)
        log_warn("api event not queued event=%s err=\"%s\"", eid, err_str(rc));
    return rc;
}

/* ---- Reading events ---- */

/* The shard of an event id: its user's, or 0 for webhook tests. */
static uint32_t event_shard(const struct api *a, const char *id)
{
    if (strncmp(id, "test.", 5) == 0 || strlen(id) < SCHEMA_UID_LEN)
        return 0;
    char uid[SCHEMA_UID_LEN + 1];
    memcpy(uid, id, SCHEMA_UID_LEN);
    uid[SCHEMA_UID_LEN] = '\0';
    return api_shard(a, uid);
}

/* Loads the caller's event id; replies 404/503 otherwise. */
static int load_event(struct req *r, const char *id, struct rec *e)
{
    memset(e, 0, sizeof *e);
    if (!params_is_token(id, EVENT_ID_MAX, "._-"))
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:{%u}:evt:%s", event_shard(r->api, id), id);
    int rc = store_hgetall(r, key, e);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0 || strcmp(rec_get(e, "pid"), r->partner.pid) != 0)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    return 0;
}

/* Writes one delivery-log entry (fields of core/schema.h) as an object. */
static void view_log_entry(struct json_gen *g, redisReply *entry, const char *state)
{
    const char *sid = entry->element[0]->str;
    redisReply *kv = entry->element[1];
    const char *f[16][2];
    size_t nf = 0;
    for (size_t i = 0; i + 1 < kv->elements && nf < 16; i += 2, nf++) {
        f[nf][0] = kv->element[i]->str;
        f[nf][1] = kv->element[i + 1]->str;
    }
    const char *get[11] = {0};
    static const char *const names[11] = {"id",      "type",    "tag",    "code",
                                          "attempt", "status",  "result", "latency_ms",
                                          "error",   "next_at", "uid"};
    for (size_t j = 0; j < 11; j++) {
        get[j] = "";
        for (size_t i = 0; i < nf; i++)
            if (strcmp(f[i][0], names[j]) == 0)
                get[j] = f[i][1];
    }
    json_gen_object_open(g);
    json_gen_key_str(g, "log_id", sid);
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", strtoll(sid, NULL, 10));
    view_time(g, "at", ms);
    json_gen_key_str(g, "id", get[0]);
    json_gen_key_str(g, "type", get[1]);
    if (*get[2])
        json_gen_key_str(g, "user_tag", get[2]);
    else
        json_gen_key_null(g, "user_tag");
    if (*get[3])
        json_gen_key_str(g, "imap_provider_code", get[3]);
    else
        json_gen_key_null(g, "imap_provider_code");
    json_gen_key_int(g, "attempt", strtoll(get[4], NULL, 10));
    json_gen_key_int(g, "status", strtoll(get[5], NULL, 10));
    json_gen_key_str(g, "result", get[6]);
    json_gen_key_int(g, "latency_ms", strtoll(get[7], NULL, 10));
    if (*get[8])
        json_gen_key_str(g, "error", get[8]);
    else
        json_gen_key_null(g, "error");
    view_time(g, "next_at", get[9]);
    if (state != NULL)
        json_gen_key_str(g, "event_state", state);
    json_gen_object_close(g);
}

/* The value of field in a stream entry, or "". */
static const char *entry_field(redisReply *entry, const char *field)
{
    redisReply *kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (strcmp(kv->element[i]->str, field) == 0)
            return kv->element[i + 1]->str;
    return "";
}

static int is_stream_id(const char *s)
{
    size_t n = strlen(s), dash = 0;
    if (n == 0 || n > 41)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            dash++;
        else if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return dash <= 1 && s[0] != '-' && s[n - 1] != '-';
}

/* Reads an optional text filter; replies 400 when it is not text. */
static int filter(struct req *r, const char *name, const char **out)
{
    *out = NULL;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    if (param_text(p, out) < 0)
        return reply_invalid(r, name, "must be a string");
    if (**out == '\0')
        *out = NULL;
    return 0;
}

static int event_list(struct req *r)
{
    int64_t limit = EVENTS_LIMIT_DEFAULT;
    const struct param *pl = params_get(&r->params, "limit");
    if (pl != NULL && param_int(pl, 1, EVENTS_LIMIT_MAX, &limit) < 0)
        return reply_invalid(r, "limit", "must be an integer from 1 to 500");
    const char *tag, *type, *status, *code, *cursor;
    int rc;
    if ((rc = filter(r, "tag", &tag)) != 0 || (rc = filter(r, "type", &type)) != 0 ||
        (rc = filter(r, "status", &status)) != 0 ||
        (rc = filter(r, "imap_provider_code", &code)) != 0 ||
        (rc = filter(r, "cursor", &cursor)) != 0)
        return rc;
    if (tag == NULL && (rc = filter(r, "user", &tag)) != 0)
        return rc;
    if (cursor != NULL && !is_stream_id(cursor))
        return reply_invalid(r, "cursor", "is not a cursor this API returned");
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:log:%s", r->partner.pid);
    char end[80];
    if (cursor != NULL)
        snprintf(end, sizeof end, "(%s", cursor);
    else
        snprintf(end, sizeof end, "+");

    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "events");
    int64_t found = 0, scanned = 0;
    int exhausted = 0;
    char last[64] = "";
    while (found < limit && scanned < EVENTS_SCAN_MAX && !exhausted) {
        redisReply *rep = store_cmd(r, "XREVRANGE %s %s - COUNT %d", key, end, 200);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            json_gen_free(g);
            return reply_unavailable(r);
        }
        if (rep->elements < 200)
            exhausted = 1;
        size_t i;
        for (i = 0; i < rep->elements && found < limit; i++) {
            redisReply *e = rep->element[i];
            scanned++;
            snprintf(last, sizeof last, "%s", e->element[0]->str);
            if ((tag != NULL && strcmp(entry_field(e, "tag"), tag) != 0) ||
                (type != NULL && strcmp(entry_field(e, "type"), type) != 0) ||
                (status != NULL && strcmp(entry_field(e, "result"), status) != 0) ||
                (code != NULL && strcmp(entry_field(e, "code"), code) != 0))
                continue;
            const char *id = entry_field(e, "id");
            char state[32] = "";
            if (params_is_token(id, EVENT_ID_MAX, "._-")) {
                char ekey[SCHEMA_KEY_MAX];
                snprintf(ekey, sizeof ekey, "si:{%u}:evt:%s", event_shard(r->api, id), id);
                redisReply *st = store_cmd(r, "HGET %s state", ekey);
                if (st != NULL && st->type == REDIS_REPLY_STRING)
                    snprintf(state, sizeof state, "%s", st->str);
                freeReplyObject(st);
            }
            view_log_entry(g, e, state[0] ? state : "expired");
            found++;
        }
        if (i < rep->elements)
            exhausted = 0; /* stopped on the limit: more may follow */
        freeReplyObject(rep);
        snprintf(end, sizeof end, "(%s", last);
        if (last[0] == '\0')
            exhausted = 1;
    }
    json_gen_array_close(g);
    if (!exhausted && last[0] != '\0')
        json_gen_key_str(g, "next_cursor", last);
    else
        json_gen_key_null(g, "next_cursor");
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

static int event_show(struct req *r)
{
    struct rec e;
    int rc = load_event(r, r->arg[0], &e);
    if (rc != 0) {
        rec_free(&e);
        return rc;
    }
    struct json_gen *g = reply_gen_new();
    view_event(g, &e);
    rec_free(&e);
    return reply_gen(r, 200, g, NULL);
}

static int event_replay(struct req *r)
{
    struct rec e;
    int rc = load_event(r, r->arg[0], &e);
    if (rc != 0) {
        rec_free(&e);
        return rc;
    }
    const char *id = r->arg[0];
    uint32_t k = event_shard(r->api, id);
    char kevt[SCHEMA_KEY_MAX], kdead[SCHEMA_KEY_MAX], kready[SCHEMA_KEY_MAX],
        kpartners[SCHEMA_KEY_MAX];
    snprintf(kevt, sizeof kevt, "si:{%u}:evt:%s", k, id);
    snprintf(kdead, sizeof kdead, "si:{%u}:dead", k);
    snprintf(kready, sizeof kready, "si:{%u}:ready:%s", k, r->partner.pid);
    snprintf(kpartners, sizeof kpartners, "si:{%u}:ready_partners", k);
    const char *argv[] = {kevt, kdead, kready, kpartners, id, r->partner.pid};
    redisReply *rep = store_script(r, "event_replay", 4, 6, argv, NULL);
    if (rep == NULL) {
        rec_free(&e);
        return reply_unavailable(r);
    }
    long long res = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    if (res == 0) {
        rc = reply_error(r, 409, "conflict", NULL,
                         "only dead letters can be replayed; this event is %s",
                         rec_get(&e, "state"));
        rec_free(&e);
        return rc;
    }
    rec_free(&e);
    if (res < 0)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    if ((rc = load_event(r, id, &e)) != 0) {
        rec_free(&e);
        return rc;
    }
    struct json_gen *g = reply_gen_new();
    view_event(g, &e);
    rec_free(&e);
    return reply_gen(r, 202, g, NULL);
}

/* Pauses between two reads of a test event's state. */
static void pause_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int webhook_test(struct req *r)
{
    int64_t wait_ms = TEST_WAIT_DEFAULT_MS;
    const struct param *pw = params_get(&r->params, "wait_ms");
    if (pw != NULL && param_int(pw, 0, TEST_WAIT_MAX_MS, &wait_ms) < 0)
        return reply_invalid(r, "wait_ms", "must be an integer from 0 to 10000");
    char pkey[SCHEMA_KEY_MAX];
    snprintf(pkey, sizeof pkey, "si:partner:%s", r->partner.pid);
    redisReply *url = store_cmd(r, "HGET %s new_mail_webhook_url", pkey);
    if (url == NULL)
        return reply_unavailable(r);
    int has_url = url->type == REDIS_REPLY_STRING && url->len > 0;
    freeReplyObject(url);
    if (!has_url)
        return reply_error(r, 409, "conflict", NULL,
                           "the partner has no new_mail_webhook_url to send a test to");
    unsigned char rnd[8];
    char hex[17];
    crypto_random(rnd, sizeof rnd);
    crypto_hex_encode(rnd, sizeof rnd, hex);
    char eid[128];
    snprintf(eid, sizeof eid, "test.%s.%lld.%s", r->partner.pid, (long long)time_now_ms(), hex);
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    if (crypto_sha1_hex(eid, strlen(eid), sha1) < 0)
        return reply_error(r, 500, "internal", NULL, "hashing failed");
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", "");
    json_gen_key_str(g, "imap_provider_code", "");
    json_gen_key_str(g, "event", "webhook_test");
    json_gen_key_str(g, "id", eid);
    json_gen_key_str(g, "message", "superimap webhook test: if you can read this, it works");
    json_gen_object_close(g);
    char *payload;
    int rc = json_gen_finish(g, &payload, NULL);
    json_gen_free(g);
    if (rc < 0)
        return reply_error(r, 500, "internal", NULL, "the test body could not be made");
    rc = enqueue(r, 0, eid, "webhook_test", "", "", "", sha1, payload);
    xfree(payload);
    if (rc < 0)
        return reply_unavailable(r);

    /* Report what the dispatcher did, if it does it within wait_ms. */
    char kevt[SCHEMA_KEY_MAX];
    snprintf(kevt, sizeof kevt, "si:{0}:evt:%s", eid);
    int64_t deadline = time_mono_ms() + wait_ms;
    struct rec e;
    for (;;) {
        rc = store_hgetall(r, kevt, &e);
        if (rc == -SIMAP_ECONN) {
            rec_free(&e);
            return reply_unavailable(r);
        }
        const char *state = rec_get(&e, "state");
        int pending = strcmp(state, "ready") == 0 || strcmp(state, "inflight") == 0;
        if (!pending || time_mono_ms() >= deadline)
            break;
        rec_free(&e);
        pause_ms(50);
    }
    const char *state = rec_get(&e, "state");
    int pending = strcmp(state, "ready") == 0 || strcmp(state, "inflight") == 0 || *state == '\0';
    g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_str(g, "id", eid);
    json_gen_key_str(g, "result", pending ? "pending" : state);
    json_gen_key_bool(g, "delivered", strcmp(state, "delivered") == 0);
    json_gen_key_int(g, "attempts", strtoll(rec_get(&e, "attempts"), NULL, 10));
    const char *st = rec_get(&e, "last_status");
    if (*st && strcmp(st, "0") != 0)
        json_gen_key_int(g, "last_status", strtoll(st, NULL, 10));
    else
        json_gen_key_null(g, "last_status");
    const char *le = rec_get(&e, "last_error");
    if (*le)
        json_gen_key_str(g, "last_error", le);
    else
        json_gen_key_null(g, "last_error");
    json_gen_object_close(g);
    rec_free(&e);
    return reply_gen(r, pending ? 202 : 200, g, NULL);
}

const struct route routes_events[] = {
    {"GET", "/api/v1/events", AUTH_PARTNER, event_list},
    {"GET", "/api/v1/events/:id", AUTH_PARTNER, event_show},
    {"POST", "/api/v1/events/:id/replay", AUTH_PARTNER, event_replay},
    {"POST", "/api/v1/webhook-test", AUTH_PARTNER, webhook_test},
    {NULL, NULL, AUTH_NONE, NULL},
};
