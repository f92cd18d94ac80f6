/*
 * cmd/api/store_partners: the records of the admin API, IMAP providers and
 * partners (core/schema.h "Provider fields", "Partner fields"), through
 * scripts/lua/provider_*.lua and partner_*.lua. A partner's API key and
 * webhook secret are made and sealed here (core/keys.h) and leave only
 * in the answer of their creation or rotation.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/store_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/api/api.h"
#include "core/err.h"
#include "core/keys.h"

#define ROTATE_ATTEMPTS 4

/* 1 when rep is a status or string reply equal to s. */
static int reply_is(const redisReply *rep, const char *s)
{
    return rep->str != NULL && strcmp(rep->str, s) == 0;
}

/* Runs index (argc arguments of a command listing ids) and reads the hash
 * of each id, built by key(); ids whose hash is gone or unreadable are left
 * out. */
static int read_index(struct req *r, int argc, const char **index,
                      int (*key)(char out[SCHEMA_KEY_MAX], const char *id), struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    redisReply *ids = store_argv(r, argc, index, NULL);
    if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ids);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i < ids->elements; i++) {
        char k[SCHEMA_KEY_MAX];
        struct rec rec;
        memset(&rec, 0, sizeof rec);
        if (key(k, ids->element[i]->str) >= 0 && store_hgetall(r, k, &rec) == 0)
            rec_list_add(out, ids->element[i]->str, 0, &rec);
        else
            rec_free(&rec);
    }
    freeReplyObject(ids);
    return 0;
}

/* Runs script with KEYS keys[0..nkeys) and ARGV the args then pairs, and
 * copies its status reply into res. 0 or -SIMAP_ECONN. */
static int run_with_pairs(struct req *r, const char *script, const char *const *keys, int nkeys,
                          const char *const *args, int nargs, const char *const *pairs, int n,
                          char *res, size_t reslen)
{
    const char **argv = xcalloc((size_t)(nkeys + nargs + n) + 1, sizeof *argv);
    int a = 0;
    for (int i = 0; i < nkeys; i++)
        argv[a++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[a++] = args[i];
    for (int i = 0; i < n; i++)
        argv[a++] = pairs[i];
    redisReply *rep = store_script(r, script, nkeys, a, argv, NULL);
    xfree(argv);
    if (rep == NULL)
        return -SIMAP_ECONN;
    snprintf(res, reslen, "%s", rep->str ? rep->str : "");
    freeReplyObject(rep);
    return 0;
}

/* pairs as stored: each webhook URL (a field ending in "_webhook_url")
 * through keys_seal_partner_url(), its "<field>_userinfo" pair after it. */
#define SEALED_URLS_MAX 8

struct sealed_pairs {
    const char **v;
    int n;
    char *made[3 * SEALED_URLS_MAX]; /* strings made here, freed with the pairs */
    int nmade;
};

static int is_webhook_url(const char *field)
{
    size_t n = strlen(field);
    return n > 12 && strcmp(field + n - 12, "_webhook_url") == 0;
}

static void sealed_pairs_free(struct sealed_pairs *sp)
{
    for (int i = 0; i < sp->nmade; i++)
        xfree(sp->made[i]);
    xfree(sp->v);
    memset(sp, 0, sizeof *sp);
}

static int seal_pairs(struct req *r, const char *pid, const char *const *pairs, int n,
                      struct sealed_pairs *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->v = xcalloc((size_t)n * 2 + 1, sizeof *sp->v);
    for (int i = 0; i + 1 < n; i += 2) {
        sp->v[sp->n++] = pairs[i];
        if (!is_webhook_url(pairs[i])) {
            sp->v[sp->n++] = pairs[i + 1];
            continue;
        }
        char *shown, *sealed, field[SCHEMA_KEY_MAX];
        snprintf(field, sizeof field, "%s_userinfo", pairs[i]);
        if (sp->nmade + 3 > 3 * SEALED_URLS_MAX ||
            keys_seal_partner_url(r->api->keys, pid, pairs[i], pairs[i + 1], &shown, &sealed) < 0) {
            sealed_pairs_free(sp);
            return -SIMAP_ECRYPTO;
        }
        sp->made[sp->nmade++] = shown;
        sp->made[sp->nmade++] = sealed;
        sp->v[sp->n++] = shown;
        sp->v[sp->n++] = xstrdup(field);
        sp->made[sp->nmade++] = (char *)sp->v[sp->n - 1];
        sp->v[sp->n++] = sealed;
    }
    return 0;
}

/* ---- Providers ---- */

int store_provider_get(struct req *r, const char *code, struct rec *out)
{
    char key[SCHEMA_KEY_MAX];
    memset(out, 0, sizeof *out);
    if (schema_key_provider(key, code) < 0)
        return -SIMAP_ENOTFOUND;
    return store_hgetall(r, key, out);
}

int store_provider_list(struct req *r, struct rec_list *out)
{
    const char *index[] = {"SORT", SCHEMA_KEY_PROVIDERS, "ALPHA"};
    return read_index(r, 3, index, schema_key_provider, out);
}

int store_provider_create(struct req *r, const char *code, const char *const *pairs, int n)
{
    char key[SCHEMA_KEY_MAX], res[16];
    if (schema_key_provider(key, code) < 0)
        return -SIMAP_EINVAL;
    const char *keys[] = {key, SCHEMA_KEY_PROVIDERS};
    int rc = run_with_pairs(r, "provider_create", keys, 2, &code, 1, pairs, n, res, sizeof res);
    if (rc < 0)
        return rc;
    return strcmp(res, "ok") == 0 ? 0 : -SIMAP_ESTATE;
}

int store_provider_update(struct req *r, const char *code, const char *const *pairs, int n)
{
    char key[SCHEMA_KEY_MAX], res[16];
    if (schema_key_provider(key, code) < 0)
        return -SIMAP_ENOTFOUND;
    const char *keys[] = {key};
    int rc = run_with_pairs(r, "provider_update", keys, 1, NULL, 0, pairs, n, res, sizeof res);
    if (rc < 0)
        return rc;
    if (strcmp(res, "in_use") == 0)
        return -SIMAP_ESTATE;
    return strcmp(res, "ok") == 0 ? 0 : -SIMAP_ENOTFOUND;
}

int store_provider_delete(struct req *r, const char *code)
{
    char key[SCHEMA_KEY_MAX], res[16];
    if (schema_key_provider(key, code) < 0)
        return -SIMAP_ENOTFOUND;
    const char *keys[] = {key, SCHEMA_KEY_PROVIDERS};
    int rc = run_with_pairs(r, "provider_delete", keys, 2, &code, 1, NULL, 0, res, sizeof res);
    if (rc < 0)
        return rc;
    if (strcmp(res, "in_use") == 0)
        return -SIMAP_ESTATE;
    return strcmp(res, "ok") == 0 ? 0 : -SIMAP_ENOTFOUND;
}

/* ---- Partners ---- */

int store_partner_get(struct req *r, const char *pid, struct rec *out)
{
    char key[SCHEMA_KEY_MAX];
    memset(out, 0, sizeof *out);
    if (schema_key_partner(key, pid) < 0)
        return -SIMAP_ENOTFOUND;
    return store_hgetall(r, key, out);
}

int store_partner_list(struct req *r, struct rec_list *out)
{
    const char *index[] = {"ZRANGE", SCHEMA_KEY_PARTNERS, "0", "-1"};
    return read_index(r, 4, index, schema_key_partner, out);
}

int store_partner_has(struct req *r, const char *pid, const char *field)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_partner(key, pid) < 0)
        return 0;
    redisReply *rep = store_cmd(r, "HGET %s %s", key, field);
    if (rep == NULL)
        return -SIMAP_ECONN;
    int has = rep->type == REDIS_REPLY_STRING && rep->len > 0;
    freeReplyObject(rep);
    return has;
}

int store_partner_create(struct req *r, const char *const *pairs, int n, const char *api_key,
                         struct store_new_partner *out)
{
    memset(out, 0, sizeof *out);
    redisReply *seq = store_cmd(r, "INCR " SCHEMA_KEY_SEQ_PARTNER);
    if (seq == NULL || seq->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(seq);
        return -SIMAP_ECONN;
    }
    snprintf(out->pid, sizeof out->pid, "%lld", seq->integer);
    freeReplyObject(seq);
    char lookup[SCHEMA_KEY_MAX], pkey[SCHEMA_KEY_MAX];
    char *key;
    if (api_key != NULL && *api_key != '\0') {
        key = xstrdup(api_key);
        if (keys_lookup(key, lookup) < 0)
            lookup[0] = '\0';
    } else {
        key = keys_new_api_key(lookup);
    }
    char *secret = keys_new_webhook_secret();
    char *key_env = keys_seal_partner(r->api->keys, out->pid, "api_key", key);
    char *secret_env = keys_seal_partner(r->api->keys, out->pid, "webhook_secret", secret);
    int rc = 0;
    if (key_env == NULL || secret_env == NULL || lookup[0] == '\0') {
        rc = -SIMAP_ECRYPTO;
        goto out;
    }
    schema_key_partner(pkey, out->pid);
    struct sealed_pairs sp;
    if ((rc = seal_pairs(r, out->pid, pairs, n, &sp)) < 0)
        goto out;
    pairs = sp.v;
    n = sp.n;
    const char **argv = xcalloc((size_t)n + 9, sizeof *argv);
    int a = 0;
    argv[a++] = pkey;
    argv[a++] = SCHEMA_KEY_PARTNERS;
    argv[a++] = lookup;
    argv[a++] = out->pid;
    argv[a++] = "api_key";
    argv[a++] = key_env;
    argv[a++] = "webhook_secret";
    argv[a++] = secret_env;
    for (int i = 0; i + 1 < n; i += 2) {
        if (*pairs[i + 1] == '\0')
            continue; /* nothing to clear on a new partner */
        argv[a++] = pairs[i];
        argv[a++] = pairs[i + 1];
    }
    redisReply *rep = store_script(r, "partner_create", 3, a, argv, NULL);
    xfree(argv);
    sealed_pairs_free(&sp);
    if (rep == NULL) {
        rc = -SIMAP_ECONN;
        goto out;
    }
    rc = reply_is(rep, "ok") ? 0 : reply_is(rep, "key_taken") ? -SIMAP_EINVAL : -SIMAP_ESTATE;
    freeReplyObject(rep);
    if (rc == 0) {
        out->api_key = key;
        out->webhook_secret = secret;
        key = secret = NULL;
    }
out:
    keys_wipe_free(key);
    keys_wipe_free(secret);
    xfree(key_env);
    xfree(secret_env);
    return rc;
}

int store_partner_update(struct req *r, const char *pid, const char *const *pairs, int n)
{
    char key[SCHEMA_KEY_MAX], res[16];
    if (schema_key_partner(key, pid) < 0)
        return -SIMAP_ENOTFOUND;
    const char *keys[] = {key};
    struct sealed_pairs sp;
    int rc = seal_pairs(r, pid, pairs, n, &sp);
    if (rc < 0)
        return rc;
    rc = run_with_pairs(r, "partner_update", keys, 1, NULL, 0, sp.v, sp.n, res, sizeof res);
    sealed_pairs_free(&sp);
    if (rc < 0)
        return rc;
    return strcmp(res, "ok") == 0 ? 0 : -SIMAP_ENOTFOUND;
}

/* The lookup keys of partner p's current and previous API keys, or a key
 * that never exists for one it lacks. */
static void key_lookups(const struct api *a, const char *pid, const struct rec *p,
                        char lookups[2][SCHEMA_KEY_MAX])
{
    static const char *const fields[] = {"api_key", "api_key_old"};
    for (int i = 0; i < 2; i++) {
        char *key = keys_open_partner(a->keys, pid, fields[i], rec_get(p, fields[i]));
        if (key == NULL || keys_lookup(key, lookups[i]) < 0)
            schema_key_apikey(lookups[i], "none");
        keys_wipe_free(key);
    }
}

int store_partner_delete(struct req *r, const char *pid)
{
    struct rec p;
    int rc = store_partner_get(r, pid, &p);
    if (rc < 0) {
        rec_free(&p);
        return rc;
    }
    char lookups[2][SCHEMA_KEY_MAX];
    key_lookups(r->api, pid, &p, lookups);
    rec_free(&p);
    /* Connections first (each with its users and events), then the partner. */
    char kconns[SCHEMA_KEY_MAX], pkey[SCHEMA_KEY_MAX], klog[SCHEMA_KEY_MAX];
    schema_key_partner_conns(kconns, pid);
    schema_key_partner(pkey, pid);
    schema_key_log(klog, pid);
    redisReply *codes = store_cmd(r, "SMEMBERS %s", kconns);
    if (codes == NULL || codes->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(codes);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i < codes->elements; i++) {
        if (store_conn_delete(r, pid, codes->element[i]->str) < 0) {
            freeReplyObject(codes);
            return -SIMAP_ECONN;
        }
    }
    freeReplyObject(codes);
    uint32_t s = r->api->shards;
    size_t nk = 6 + 2 * (size_t)s;
    const char **argv = xcalloc(nk + 1, sizeof *argv);
    char(*owned)[SCHEMA_KEY_MAX] = xcalloc(2 * (size_t)s, sizeof *owned);
    argv[0] = pkey;
    argv[1] = SCHEMA_KEY_PARTNERS;
    argv[2] = kconns;
    argv[3] = klog;
    argv[4] = lookups[0];
    argv[5] = lookups[1];
    for (uint32_t k = 0; k < s; k++) {
        schema_key_ready(owned[2 * k], k, pid);
        schema_key_ready_partners(owned[2 * k + 1], k);
        argv[6 + 2 * k] = owned[2 * k];
        argv[7 + 2 * k] = owned[2 * k + 1];
    }
    argv[nk] = pid;
    redisReply *rep = store_script(r, "partner_delete", (int)nk, (int)nk + 1, argv, NULL);
    xfree(owned);
    xfree(argv);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    const char *res = rep->element[0]->str;
    if (strcmp(res, "ok") == 0) {
        /* The script answers {"ok", k, eid, k, eid, ...}: the event hashes. */
        for (size_t i = 1; i + 1 < rep->elements; i += 2) {
            char key[SCHEMA_KEY_MAX];
            if (schema_key_event(key, (uint32_t)strtoul(rep->element[i]->str, NULL, 10),
                                 rep->element[i + 1]->str) >= 0)
                freeReplyObject(store_cmd(r, "UNLINK %s", key));
        }
        rc = 0;
    } else {
        rc = strcmp(res, "has_connections") == 0 ? -SIMAP_ESTATE : -SIMAP_ENOTFOUND;
    }
    freeReplyObject(rep);
    return rc;
}

/* One rotation attempt: 0, a -SIMAP_* code, or 1 when another rotation
 * changed the partner meanwhile (try again). */
static int rotate_once(struct req *r, const char *pid, const char *field, const char *given,
                       int64_t grace_sec, char **fresh, char until[24])
{
    int is_key = strcmp(field, "api_key") == 0;
    char old_field[32];
    snprintf(old_field, sizeof old_field, "%s_old", field);
    struct rec p;
    int rc = store_partner_get(r, pid, &p);
    if (rc < 0) {
        rec_free(&p);
        return rc;
    }
    char *cur_env = xstrdup(rec_get(&p, field));
    char *cur = keys_open_partner(r->api->keys, pid, field, cur_env);
    char *prev = keys_open_partner(r->api->keys, pid, old_field, rec_get(&p, old_field));
    rec_free(&p);
    if (given != NULL && cur != NULL && strcmp(given, cur) == 0) {
        keys_wipe_free(cur);
        keys_wipe_free(prev);
        xfree(cur_env);
        *fresh = xstrdup(given);
        return 0;
    }
    char lookup_new[SCHEMA_KEY_MAX] = "", lookup_cur[SCHEMA_KEY_MAX], lookup_prev[SCHEMA_KEY_MAX];
    schema_key_apikey(lookup_cur, "none");
    schema_key_apikey(lookup_prev, "none");
    char *made;
    if (given != NULL) {
        made = xstrdup(given);
        if (keys_lookup(made, lookup_new) < 0)
            lookup_new[0] = '\0';
    } else {
        made = is_key ? keys_new_api_key(lookup_new) : keys_new_webhook_secret();
    }
    if (is_key && cur != NULL)
        keys_lookup(cur, lookup_cur);
    if (is_key && prev != NULL)
        keys_lookup(prev, lookup_prev);
    char *made_env = keys_seal_partner(r->api->keys, pid, field, made);
    char *old_env = cur ? keys_seal_partner(r->api->keys, pid, old_field, cur) : xstrdup("");
    keys_wipe_free(cur);
    keys_wipe_free(prev);
    if (made_env == NULL || old_env == NULL || (is_key && lookup_new[0] == '\0')) {
        keys_wipe_free(made);
        xfree(made_env);
        xfree(old_env);
        xfree(cur_env);
        return -SIMAP_ECRYPTO;
    }
    char pkey[SCHEMA_KEY_MAX], graces[24];
    schema_key_partner(pkey, pid);
    snprintf(graces, sizeof graces, "%lld", (long long)grace_sec * 1000);
    const char *with_lookups[] = {pkey,  lookup_new, lookup_cur, lookup_prev, pid,
                                  field, cur_env,    made_env,   old_env,     graces};
    const char *without[] = {pkey, pid, field, cur_env, made_env, old_env, graces};
    redisReply *rep = is_key ? store_script(r, "partner_rotate", 4, 10, with_lookups, NULL)
                             : store_script(r, "partner_rotate", 1, 7, without, NULL);
    xfree(made_env);
    xfree(old_env);
    xfree(cur_env);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        freeReplyObject(rep);
        keys_wipe_free(made);
        return -SIMAP_ECONN;
    }
    const char *res = rep->element[0]->str;
    if (strcmp(res, "ok") == 0) {
        snprintf(until, 24, "%s",
                 rep->elements > 1 && rep->element[1]->str ? rep->element[1]->str : "");
        *fresh = made;
        rc = 0;
    } else {
        keys_wipe_free(made);
        rc = strcmp(res, "retry") == 0   ? 1
             : strcmp(res, "taken") == 0 ? -SIMAP_EINVAL
                                         : -SIMAP_ENOTFOUND;
    }
    freeReplyObject(rep);
    return rc;
}

int store_partner_rotate(struct req *r, const char *pid, const char *field, const char *given,
                         int64_t grace_sec, char **fresh, char until[24])
{
    *fresh = NULL;
    until[0] = '\0';
    for (int attempt = 0; attempt < ROTATE_ATTEMPTS; attempt++) {
        int rc = rotate_once(r, pid, field, given, grace_sec, fresh, until);
        if (rc <= 0)
            return rc;
    }
    return -SIMAP_ESTATE;
}

/* ---- API keys ---- */

int store_key_lookup(struct req *r, const char *sha256_hex, int rate, int burst,
                     struct store_key_hit *out)
{
    memset(out, 0, sizeof *out);
    char lookup[SCHEMA_KEY_MAX], bucket[SCHEMA_KEY_MAX], srate[16], sburst[16];
    if (schema_key_apikey(lookup, sha256_hex) < 0 || schema_key_ratelimit(bucket, sha256_hex) < 0)
        return -SIMAP_ENOTFOUND;
    snprintf(srate, sizeof srate, "%d", rate);
    snprintf(sburst, sizeof sburst, "%d", burst);
    const char *argv[] = {lookup, bucket, srate, sburst};
    redisReply *rep = store_script(r, "rate_limit", 2, 4, argv, NULL);
    if (rep == NULL)
        return -SIMAP_ECONN;
    /* {pid, allowed, retry_ms, api_key, api_key_old, api_key_old_until};
     * the last three are nil replies when the partner lacks them. */
    int rc = -SIMAP_ENOTFOUND;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 6 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len < sizeof out->pid) {
        memcpy(out->pid, rep->element[0]->str, rep->element[0]->len + 1);
        out->allowed = rep->element[1]->integer == 1;
        out->retry_ms = rep->element[2]->integer;
        if (rep->element[3]->str != NULL)
            out->api_key = xstrdup(rep->element[3]->str);
        if (rep->element[4]->str != NULL)
            out->api_key_old = xstrdup(rep->element[4]->str);
        out->api_key_old_until = rep->element[5]->str ? atoll(rep->element[5]->str) : 0;
        rc = 0;
    }
    freeReplyObject(rep);
    return rc;
}

void store_key_hit_free(struct store_key_hit *h)
{
    xfree(h->api_key);
    xfree(h->api_key_old);
    memset(h, 0, sizeof *h);
}
