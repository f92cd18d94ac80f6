/*
 * cmd/api/store_events: the events the api makes and shows (core/schema.h
 * "Event fields", "Delivery log"): enqueueing through the dispatcher's
 * scripts/lua/event_enqueue.lua, reading, replay of dead letters, the
 * delivery log; and what the operator watches: queue depths, dead letters
 * across shards, the nodes of the fleet.
 *
 * An event lives in the shard of its user (schema_event_uid()), webhook
 * tests in shard 0.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/store_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/api/api.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"

#define LOG_PAGE     200  /* log entries per XREVRANGE */
#define LOG_SCAN_MAX 5000 /* log entries read per scan when filtering */

/* The shard of event id. */
static uint32_t event_shard(const struct api *a, const char *id)
{
    char uid[SCHEMA_UID_LEN + 1];
    return schema_event_uid(id, uid) ? store_shard(a, uid) : 0;
}

/* ---- Enqueueing ---- */

/* payload sealed for the event hash of eid (AAD si:evt:<eid>): a new
 * string, or NULL. */
static char *seal_event(struct req *r, const char *eid, const char *payload)
{
    char aad[SCHEMA_KEY_MAX];
    char *sealed = NULL;
    if (schema_aad_event(aad, eid) < 0 ||
        crypto_encrypt(r->api->keys, payload, strlen(payload), aad, &sealed) < 0)
        return NULL;
    return sealed;
}

int store_event_enqueue(struct req *r, uint32_t k, const char *pid, const char *eid,
                        const char *type, const char *uid, const char *code, const char *tag,
                        const char *sha1, const char *payload)
{
    char kevt[SCHEMA_KEY_MAX], kready[SCHEMA_KEY_MAX], kpartners[SCHEMA_SHARD_KEY_MAX];
    if (schema_key_event(kevt, k, eid) < 0 || schema_key_ready(kready, k, pid) < 0)
        return -SIMAP_EINVAL;
    schema_key_ready_partners(kpartners, k);
    char *sealed = seal_event(r, eid, payload);
    if (sealed == NULL)
        return -SIMAP_ECRYPTO;
    const char *argv[] = {kevt,   kready, kpartners, eid, pid,    "type", type,      "uid", uid,
                          "code", code,   "tag",     tag, "sha1", sha1,   "payload", sealed};
    redisReply *rep = store_script(r, "event_enqueue", 3, 17, argv, NULL);
    xfree(sealed);
    if (rep == NULL)
        return -SIMAP_ECONN;
    freeReplyObject(rep);
    return 0;
}

/* The body of a user event, as store_user_event_sealed() says, in clear. */
static char *user_event_payload(const char *type, const char *eid, const char *tag,
                                const char *code, const char *email,
                                char sha1[CRYPTO_SHA1_HEX_LEN + 1])
{
    if (crypto_sha1_hex(tag, strlen(tag), sha1) < 0)
        return NULL;
    struct json_gen *g = json_gen_new(64 * 1024);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", tag);
    json_gen_key_str(g, "imap_provider_code", code);
    if (strcmp(type, "user_connected") == 0)
        json_gen_key_str(g, "email", email);
    json_gen_key_str(g, "event", type);
    json_gen_key_str(g, "id", eid);
    json_gen_object_close(g);
    char *payload = NULL;
    if (json_gen_finish(g, &payload, NULL) < 0)
        payload = NULL;
    json_gen_free(g);
    return payload;
}

char *store_user_event_sealed(struct req *r, const char *type, const char *eid, const char *tag,
                              const char *code, const char *email, char sha1[41])
{
    char *payload = user_event_payload(type, eid, tag, code, email, sha1);
    char *sealed = payload != NULL ? seal_event(r, eid, payload) : NULL;
    xfree(payload);
    return sealed;
}

int store_event_keys(struct req *r, const char *pid, const char *uid, const char *what, int64_t now,
                     struct event_keys *ek)
{
    uint32_t k = store_shard(r->api, uid);
    snprintf(ek->now, sizeof ek->now, "%lld", (long long)now);
    snprintf(ek->eid, sizeof ek->eid, "%s.%s.%s", uid, what, ek->now);
    snprintf(ek->k, sizeof ek->k, "%u", k);
    schema_key_ready_partners(ek->rp, k);
    schema_key_shard_users(ek->users, k);
    if (schema_key_event(ek->evt, k, ek->eid) < 0 || schema_key_ready(ek->ready, k, pid) < 0 ||
        schema_key_user(ek->user, k, uid) < 0 || schema_key_partner(ek->partner, pid) < 0)
        return -SIMAP_EINVAL;
    return 0;
}

/* ---- Reading and replay ---- */

int store_event_get(struct req *r, const char *id, const char *pid, struct rec *out)
{
    char key[SCHEMA_KEY_MAX];
    memset(out, 0, sizeof *out);
    if (schema_key_event(key, event_shard(r->api, id), id) < 0)
        return -SIMAP_ENOTFOUND;
    int rc = store_hgetall(r, key, out);
    if (rc == 0 && pid != NULL && strcmp(rec_get(out, "pid"), pid) != 0)
        rc = -SIMAP_ENOTFOUND;
    return rc;
}

int store_event_replay(struct req *r, const char *id, const char *pid)
{
    uint32_t k = event_shard(r->api, id);
    char kevt[SCHEMA_KEY_MAX], kready[SCHEMA_KEY_MAX], kdead[SCHEMA_SHARD_KEY_MAX],
        kpartners[SCHEMA_SHARD_KEY_MAX];
    if (schema_key_event(kevt, k, id) < 0 || schema_key_ready(kready, k, pid) < 0)
        return -SIMAP_ENOTFOUND;
    schema_key_dead(kdead, k);
    schema_key_ready_partners(kpartners, k);
    const char *argv[] = {kevt, kdead, kready, kpartners, id, pid};
    redisReply *rep = store_script(r, "event_replay", 4, 6, argv, NULL);
    if (rep == NULL)
        return -SIMAP_ECONN;
    long long res = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return res > 0 ? 0 : res == 0 ? -SIMAP_ESTATE : -SIMAP_ENOTFOUND;
}

/* ---- Delivery log ---- */

/* A stream entry {id, [field, value, ...]} as a record. */
static void entry_rec(const redisReply *entry, struct rec *out)
{
    memset(out, 0, sizeof *out);
    const redisReply *kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        rec_add(out, kv->element[i]->str, kv->element[i + 1]->str);
}

static int passes(const struct rec *e, const struct store_log_filter *f)
{
    return (f->tag == NULL || strcmp(rec_get(e, "tag"), f->tag) == 0) &&
           (f->type == NULL || strcmp(rec_get(e, "type"), f->type) == 0) &&
           (f->result == NULL || strcmp(rec_get(e, "result"), f->result) == 0) &&
           (f->code == NULL || strcmp(rec_get(e, "code"), f->code) == 0) &&
           (f->uid == NULL || strcmp(rec_get(e, "uid"), f->uid) == 0);
}

/* The state of event id now into state[32], "" when it is gone. */
static void event_state(struct req *r, const char *id, char state[32])
{
    char key[SCHEMA_KEY_MAX];
    state[0] = '\0';
    if (*id == '\0' || schema_key_event(key, event_shard(r->api, id), id) < 0)
        return;
    redisReply *st = store_cmd(r, "HGET %s state", key);
    if (st != NULL && st->type == REDIS_REPLY_STRING)
        snprintf(state, 32, "%s", st->str);
    freeReplyObject(st);
}

int store_log_scan(struct req *r, const char *pid, const char *cursor,
                   const struct store_log_filter *f, int64_t limit, store_log_fn *each, void *data,
                   char next[64])
{
    char key[SCHEMA_KEY_MAX], end[80];
    next[0] = '\0';
    if (schema_key_log(key, pid) < 0)
        return -SIMAP_EINVAL;
    if (cursor != NULL)
        snprintf(end, sizeof end, "(%s", cursor);
    else
        snprintf(end, sizeof end, "+");
    int64_t found = 0, scanned = 0;
    int exhausted = 0;
    char last[64] = "";
    while (found < limit && scanned < LOG_SCAN_MAX && !exhausted) {
        redisReply *rep = store_cmd(r, "XREVRANGE %s %s - COUNT %d", key, end, LOG_PAGE);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return -SIMAP_ECONN;
        }
        if (rep->elements < LOG_PAGE)
            exhausted = 1;
        size_t i;
        for (i = 0; i < rep->elements && found < limit; i++) {
            const redisReply *e = rep->element[i];
            scanned++;
            snprintf(last, sizeof last, "%s", e->element[0]->str);
            struct rec entry;
            entry_rec(e, &entry);
            if (passes(&entry, f)) {
                char state[32];
                event_state(r, rec_get(&entry, "id"), state);
                each(last, &entry, state[0] ? state : "expired", data);
                found++;
            }
            rec_free(&entry);
        }
        if (i < rep->elements)
            exhausted = 0; /* stopped on the limit: more may follow */
        freeReplyObject(rep);
        snprintf(end, sizeof end, "(%s", last);
        if (last[0] == '\0')
            exhausted = 1;
    }
    if (!exhausted)
        snprintf(next, 64, "%s", last);
    return 0;
}

/* ---- Queues, dead letters, fleet ---- */

int store_shard_stats(struct req *r, uint32_t k, long long v[5])
{
    char kp[SCHEMA_SHARD_KEY_MAX], ki[SCHEMA_SHARD_KEY_MAX], kr[SCHEMA_SHARD_KEY_MAX],
        kd[SCHEMA_SHARD_KEY_MAX], prefix[SCHEMA_SHARD_KEY_MAX];
    schema_key_ready_partners(kp, k);
    schema_key_inflight(ki, k);
    schema_key_retry(kr, k);
    schema_key_dead(kd, k);
    schema_key_shard_prefix(prefix, k);
    const char *argv[] = {kp, ki, kr, kd, prefix, ""};
    redisReply *st = store_script(r, "event_stats", 4, 6, argv, NULL);
    if (st == NULL || st->type != REDIS_REPLY_ARRAY || st->elements < 5) {
        freeReplyObject(st);
        return -SIMAP_ECONN;
    }
    for (int i = 0; i < 5; i++)
        v[i] = st->element[i]->integer;
    freeReplyObject(st);
    return 0;
}

void store_shard_ready(struct req *r, uint32_t k, struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    char kp[SCHEMA_SHARD_KEY_MAX];
    schema_key_ready_partners(kp, k);
    redisReply *ps = store_cmd(r, "LRANGE %s 0 -1", kp);
    for (size_t i = 0; ps != NULL && ps->type == REDIS_REPLY_ARRAY && i < ps->elements; i++) {
        const char *pid = ps->element[i]->str;
        char key[SCHEMA_KEY_MAX];
        long long n = 0;
        if (schema_key_ready(key, k, pid) >= 0) {
            redisReply *len = store_cmd(r, "LLEN %s", key);
            n = len && len->type == REDIS_REPLY_INTEGER ? len->integer : 0;
            freeReplyObject(len);
        }
        rec_list_add(out, pid, n, NULL);
    }
    freeReplyObject(ps);
}

int store_dead_page(struct req *r, uint32_t k, int64_t before_ms, int64_t limit,
                    struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    char kd[SCHEMA_SHARD_KEY_MAX], max[32];
    schema_key_dead(kd, k);
    snprintf(max, sizeof max, "(%lld", (long long)before_ms);
    redisReply *z = store_cmd(r, "ZREVRANGEBYSCORE %s %s -inf WITHSCORES LIMIT 0 %lld", kd, max,
                              (long long)limit);
    if (z == NULL || z->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(z);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i + 1 < z->elements; i += 2)
        rec_list_add(out, z->element[i]->str, strtoll(z->element[i + 1]->str, NULL, 10), NULL);
    freeReplyObject(z);
    return 0;
}

int store_tracers_recent(struct req *r, const char *code, int64_t limit, struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    char list[SCHEMA_KEY_MAX];
    if (schema_key_tracers(list, code) < 0)
        return 0;
    redisReply *l = store_cmd(r, "LRANGE %s 0 %lld", list, (long long)limit - 1);
    if (l == NULL || l->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(l);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i < l->elements; i++) {
        const char *item = l->element[i]->str, *colon = strchr(item, ':');
        char key[SCHEMA_KEY_MAX];
        struct rec t;
        if (colon == NULL ||
            schema_key_tracer(key, (uint32_t)strtoul(item, NULL, 10), colon + 1) < 0 ||
            store_hgetall(r, key, &t) < 0)
            continue;
        if (t.n == 0) {
            rec_free(&t);
            continue;
        }
        rec_list_add(out, colon + 1, 0, &t);
    }
    freeReplyObject(l);
    return 0;
}

int store_fleet_nodes(struct req *r, const char *role_key, struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    redisReply *z = store_cmd(r, "ZRANGE %s 0 -1 WITHSCORES", role_key);
    if (z == NULL || z->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(z);
        return -SIMAP_ECONN;
    }
    for (size_t j = 0; j + 1 < z->elements; j += 2) {
        const char *id = z->element[j]->str;
        char key[SCHEMA_KEY_MAX];
        struct rec n;
        memset(&n, 0, sizeof n);
        if (schema_key_node(key, id) >= 0)
            store_hgetall(r, key, &n);
        rec_list_add(out, id, strtoll(z->element[j + 1]->str, NULL, 10), &n);
    }
    freeReplyObject(z);
    return 0;
}
