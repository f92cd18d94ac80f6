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
#include "core/stat.h"
#include "proto/eml.h"

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

/* Runs a script on one dead letter whose answer is 1 (done), 0 (not a dead
 * letter) or -1 (no such event): 0, -SIMAP_ESTATE, -SIMAP_ENOTFOUND or
 * -SIMAP_ECONN. */
static int dead_letter_script(struct req *r, const char *name, int nkeys, int argc,
                              const char **argv)
{
    redisReply *rep = store_script(r, name, nkeys, argc, argv, NULL);
    if (rep == NULL)
        return -SIMAP_ECONN;
    long long res = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return res > 0 ? 0 : res == 0 ? -SIMAP_ESTATE : -SIMAP_ENOTFOUND;
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
    return dead_letter_script(r, "event_replay", 4, 6, argv);
}

int store_event_delete(struct req *r, const char *id)
{
    uint32_t k = event_shard(r->api, id);
    char kevt[SCHEMA_KEY_MAX], kdead[SCHEMA_SHARD_KEY_MAX];
    if (schema_key_event(kevt, k, id) < 0)
        return -SIMAP_ENOTFOUND;
    schema_key_dead(kdead, k);
    const char *argv[] = {kevt, kdead, id};
    return dead_letter_script(r, "event_delete", 2, 3, argv);
}

int store_event_message(struct req *r, const char *id, char **raw, size_t *len)
{
    char key[SCHEMA_KEY_MAX], aad[SCHEMA_KEY_MAX];
    *raw = NULL;
    *len = 0;
    if (schema_key_event(key, event_shard(r->api, id), id) < 0 || schema_aad_event(aad, id) < 0)
        return -SIMAP_ENOTFOUND;
    redisReply *rep = store_cmd(r, "HMGET %s type payload", key);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    const redisReply *type = rep->element[0], *payload = rep->element[1];
    int rc = 0;
    if (type->type != REDIS_REPLY_STRING)
        rc = -SIMAP_ENOTFOUND;
    else if (payload->type != REDIS_REPLY_STRING || payload->len == 0)
        rc = -SIMAP_ESTATE;
    char *plain = NULL;
    size_t plen = 0;
    if (rc == 0 && crypto_decrypt(r->api->keys, payload->str, aad, &plain, &plen) < 0)
        rc = -SIMAP_ECRYPTO;
    freeReplyObject(rep);
    if (rc < 0)
        return rc;
    rc = eml_from_payload(plain, plen, raw, len);
    crypto_wipe(plain, plen);
    xfree(plain);
    return rc == 0 ? 0 : -SIMAP_ESTATE;
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

int store_shard_queue(struct req *r, uint32_t k, int64_t now, int64_t retry_max, long long v[5],
                      struct store_waiting **w, size_t *n, size_t *cap, int *complete)
{
    *complete = 1;
    char kp[SCHEMA_SHARD_KEY_MAX], ki[SCHEMA_SHARD_KEY_MAX], kr[SCHEMA_SHARD_KEY_MAX],
        kd[SCHEMA_SHARD_KEY_MAX], prefix[SCHEMA_SHARD_KEY_MAX], nows[24], max[24];
    schema_key_ready_partners(kp, k);
    schema_key_inflight(ki, k);
    schema_key_retry(kr, k);
    schema_key_dead(kd, k);
    schema_key_shard_prefix(prefix, k);
    snprintf(nows, sizeof nows, "%lld", (long long)now);
    snprintf(max, sizeof max, "%lld", (long long)retry_max);
    const char *argv[] = {kp, ki, kr, kd, prefix, nows, max};
    redisReply *rep = store_script(r, "event_partners", 4, 7, argv, NULL);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 6 ||
        (rep->elements - 6) % 4 != 0) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    for (int i = 0; i < 5; i++)
        v[i] = rep->element[i]->integer;
    *complete = rep->element[5]->integer == 1;
    for (size_t i = 6; i + 3 < rep->elements; i += 4) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            *w = xrealloc(*w, *cap * sizeof **w);
        }
        struct store_waiting *p = &(*w)[(*n)++];
        snprintf(p->pid, sizeof p->pid, "%s", rep->element[i]->str);
        p->ready = rep->element[i + 1]->integer;
        p->retry = rep->element[i + 2]->integer;
        p->oldest_at = strtoll(rep->element[i + 3]->str, NULL, 10);
    }
    freeReplyObject(rep);
    return 0;
}

/* HMGET of fields[0..nf) on each of keys[0..n) in one round trip
 * (user_mget.lua), into out[0..n): a record per key of the fields present.
 * 0 or -SIMAP_ECONN (out then zeroed). */
static int mget(struct req *r, char (*keys)[SCHEMA_KEY_MAX], size_t n, const char *const *fields,
                size_t nf, struct rec *out)
{
    memset(out, 0, n * sizeof *out);
    if (n == 0)
        return 0;
    const char **argv = xcalloc(n + nf, sizeof *argv);
    for (size_t i = 0; i < n; i++)
        argv[i] = keys[i];
    for (size_t j = 0; j < nf; j++)
        argv[n + j] = fields[j];
    redisReply *rep = store_script(r, "user_mget", (int)n, (int)(n + nf), argv, NULL);
    xfree(argv);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *v = rep->element[i];
        for (size_t j = 0; v->type == REDIS_REPLY_ARRAY && j < v->elements && j < nf; j++)
            if (v->element[j]->type == REDIS_REPLY_STRING)
                rec_add(&out[i], fields[j], v->element[j]->str);
    }
    freeReplyObject(rep);
    return 0;
}

int store_circuits(struct req *r, int64_t limit, struct rec_list *out)
{
    static const char *const fields[] = {"url",   "state", "failures",  "opened_at",
                                         "until", "node",  "updated_at"};
    const size_t nf = sizeof fields / sizeof fields[0];
    memset(out, 0, sizeof *out);
    redisReply *z =
        store_cmd(r, "ZREVRANGE %s 0 %lld WITHSCORES", SCHEMA_KEY_CIRCUITS, (long long)limit - 1);
    if (z == NULL || z->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(z);
        return -SIMAP_ECONN;
    }
    size_t n = z->elements / 2;
    char(*keys)[SCHEMA_KEY_MAX] = xcalloc(n + 1, sizeof *keys);
    struct rec *recs = xcalloc(n + 1, sizeof *recs);
    for (size_t i = 0; i < n; i++)
        schema_key_circuit(keys[i], z->element[2 * i]->str);
    int rc = mget(r, keys, n, fields, nf, recs);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *sha = z->element[2 * i]->str;
        if (recs[i].n == 0) { /* closed long enough ago to have expired */
            rec_free(&recs[i]);
            freeReplyObject(store_cmd(r, "ZREM %s %s", SCHEMA_KEY_CIRCUITS, sha));
            continue;
        }
        rec_list_add(out, sha, strtoll(z->element[2 * i + 1]->str, NULL, 10), &recs[i]);
    }
    if (rc < 0)
        for (size_t i = 0; i < n; i++)
            rec_free(&recs[i]);
    xfree(recs);
    xfree(keys);
    freeReplyObject(z);
    return rc;
}

int store_stat_minutes(struct req *r, int64_t first, size_t n, struct rec *out)
{
    const char *fields[3 + STAT_NBUCKETS] = {STAT_MAIL, STAT_DELIVERED, STAT_FAILED};
    for (int i = 0; i < STAT_NBUCKETS; i++)
        fields[3 + i] = stat_bucket_field(i);
    char(*keys)[SCHEMA_KEY_MAX] = xcalloc(n + 1, sizeof *keys);
    for (size_t i = 0; i < n; i++)
        schema_key_stat(keys[i], first + (int64_t)i);
    int rc = mget(r, keys, n, fields, 3 + STAT_NBUCKETS, out);
    xfree(keys);
    return rc;
}

int store_dead_page(struct req *r, uint32_t k, int64_t before_ms, const char *after, int64_t limit,
                    struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    char kd[SCHEMA_SHARD_KEY_MAX], max[32];
    schema_key_dead(kd, k);
    long long ties = 0;
    if (after != NULL) {
        /* The cursor's own millisecond is read again: as many more as it
         * holds, those at or above after then skipped. */
        redisReply *c =
            store_cmd(r, "ZCOUNT %s %lld %lld", kd, (long long)before_ms, (long long)before_ms);
        if (c == NULL || c->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(c);
            return -SIMAP_ECONN;
        }
        ties = c->integer;
        freeReplyObject(c);
    }
    snprintf(max, sizeof max, "%s%lld", after != NULL ? "" : "(", (long long)before_ms);
    redisReply *z = store_cmd(r, "ZREVRANGEBYSCORE %s %s -inf WITHSCORES LIMIT 0 %lld", kd, max,
                              (long long)limit + ties);
    if (z == NULL || z->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(z);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i + 1 < z->elements && out->n < (size_t)limit; i += 2) {
        const char *id = z->element[i]->str;
        long long at = strtoll(z->element[i + 1]->str, NULL, 10);
        if (after != NULL && at == before_ms && strcmp(id, after) >= 0)
            continue;
        rec_list_add(out, id, at, NULL);
    }
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
