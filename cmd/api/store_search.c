/*
 * cmd/api/store_search: what the admin dashboard reads across partners and
 * steers in the fleet: users searched by email, tag or login prefix
 * (si:ix:user), partners paged and searched by name (si:ix:partner), a
 * user's lease, the users to watch, and a node's drain request.
 *
 * The indexes are lexicographic zsets kept by the user and partner scripts
 * (scripts/lua/prelude/index.lua): a page is one ZRANGEBYLEX with LIMIT
 * from the member after which the previous page stopped, so no call reads
 * more than a page whatever the number of users. An entry whose record is
 * gone or holds another value now (written by a version without the index,
 * before `superimap-api reindex`) is left out of the page.
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

/* The fields of a user the admin API shows (no credentials). */
static const char *const user_fields[] = {
    "uid",          "pid",      "code",       "tag",           "email",
    "username",     "state",    "last_error", "last_login_at", "last_email_at",
    "connected_at", "archived", "created_at", "updated_at",
};
#define USER_NFIELDS (sizeof user_fields / sizeof user_fields[0])

/*
 * Up to limit members of lexicographic zset zkey that start with prefix
 * (plen bytes), after member after (NULL: from the first). *next is set to
 * the last member returned when more follow (xfree() it), else NULL.
 * Returns the ZRANGEBYLEX reply (freeReplyObject() it; at most limit
 * elements are the page's) or NULL on a Redis failure.
 */
static redisReply *lex_page(struct req *r, const char *zkey, const char *prefix, size_t plen,
                            const char *after, int64_t limit, char **next)
{
    *next = NULL;
    size_t alen = after != NULL ? strlen(after) : 0;
    char *min = xmalloc((after != NULL ? alen : plen) + 2);
    char *max = xmalloc(plen + 3);
    if (after != NULL) {
        min[0] = '(';
        memcpy(min + 1, after, alen + 1);
    } else {
        min[0] = '[';
        memcpy(min + 1, prefix, plen);
        min[plen + 1] = '\0';
    }
    /* 0xff follows every byte a value can hold (UTF-8 never has it). */
    max[0] = '[';
    memcpy(max + 1, prefix, plen);
    max[plen + 1] = '\xff';
    max[plen + 2] = '\0';
    char count[24];
    snprintf(count, sizeof count, "%lld", (long long)limit + 1);
    const char *argv[] = {"ZRANGEBYLEX", zkey, min, max, "LIMIT", "0", count};
    redisReply *page = store_argv(r, 7, argv, NULL);
    xfree(min);
    xfree(max);
    if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(page);
        return NULL;
    }
    if (page->elements > (size_t)limit) {
        const redisReply *last = page->element[limit - 1];
        *next = xstrndup(last->str, last->len);
    }
    return page;
}

/* What follows the last \x1f of an index member: the uid or pid. */
static const char *member_id(const char *member)
{
    const char *sep = strrchr(member, '\x1f');
    return sep != NULL ? sep + 1 : "";
}

int store_partner_name(struct req *r, const char *pid, char **name)
{
    *name = NULL;
    char key[SCHEMA_KEY_MAX];
    if (schema_key_partner(key, pid) < 0)
        return -SIMAP_ENOTFOUND;
    redisReply *rep = store_cmd(r, "HGET %s name", key);
    if (rep == NULL)
        return -SIMAP_ECONN;
    if (rep->type == REDIS_REPLY_STRING)
        *name = xstrndup(rep->str, rep->len);
    freeReplyObject(rep);
    return *name != NULL ? 0 : -SIMAP_ENOTFOUND;
}

/* Adds "partner_name" to each user of out, one HGET per partner met. */
static void add_partner_names(struct req *r, struct rec_list *out)
{
    for (size_t i = 0; i < out->n; i++) {
        const char *pid = rec_get(&out->rec[i], "pid");
        size_t j;
        for (j = 0; j < i && strcmp(rec_get(&out->rec[j], "pid"), pid) != 0; j++)
            ;
        if (j < i) {
            rec_add(&out->rec[i], "partner_name", rec_get(&out->rec[j], "partner_name"));
            continue;
        }
        char *name;
        store_partner_name(r, pid, &name);
        rec_add(&out->rec[i], "partner_name", name != NULL ? name : "");
        xfree(name);
    }
}

/* The value of the user field a si:ix:user member of kind k names. */
static const char *indexed_field(char k)
{
    return k == 't' ? "tag" : k == 'l' ? "username" : "email";
}

/* 1 when member (kind, lower value, \x1f, uid) names what user row holds
 * now: its uid and the lower-cased value. */
static int member_matches(const char *member, const redisReply *row)
{
    const char *uid = member_id(member);
    const char *sep = uid - 1;
    const redisReply *ruid = row->element[0];
    size_t fi = 0;
    for (size_t i = 0; i < USER_NFIELDS; i++)
        if (strcmp(user_fields[i], indexed_field(member[0])) == 0)
            fi = i;
    const redisReply *v = row->element[fi];
    if (ruid->str == NULL || strcmp(ruid->str, uid) != 0 || v->str == NULL)
        return 0;
    size_t n = (size_t)(sep - (member + 1));
    if (v->len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v->str[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != member[1 + i])
            return 0;
    }
    return 1;
}

int store_user_search(struct req *r, const char *prefix, const char *after, int64_t limit,
                      struct rec_list *out, char **next)
{
    memset(out, 0, sizeof *out);
    redisReply *page = lex_page(r, SCHEMA_KEY_IX_USER, prefix, strlen(prefix), after, limit, next);
    if (page == NULL)
        return -SIMAP_ECONN;
    size_t n = page->elements > (size_t)limit ? (size_t)limit : page->elements;
    if (n == 0) {
        freeReplyObject(page);
        return 0;
    }
    const char **argv = xcalloc(n + USER_NFIELDS, sizeof *argv);
    char(*keys)[SCHEMA_KEY_MAX] = xcalloc(n, sizeof *keys);
    for (size_t i = 0; i < n; i++) {
        const char *uid = member_id(page->element[i]->str);
        if (strlen(uid) != SCHEMA_UID_LEN ||
            schema_key_user(keys[i], store_shard(r->api, uid), uid) < 0)
            snprintf(keys[i], sizeof keys[i], "si:ix:bad");
        argv[i] = keys[i];
    }
    for (size_t i = 0; i < USER_NFIELDS; i++)
        argv[n + i] = user_fields[i];
    redisReply *users = store_script(r, "user_mget", (int)n, (int)(n + USER_NFIELDS), argv, NULL);
    xfree(keys);
    xfree(argv);
    if (users == NULL || users->type != REDIS_REPLY_ARRAY || users->elements != n) {
        freeReplyObject(users);
        freeReplyObject(page);
        xfree(*next);
        *next = NULL;
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *row = users->element[i];
        if (row->type != REDIS_REPLY_ARRAY || row->elements != USER_NFIELDS ||
            !member_matches(page->element[i]->str, row))
            continue;
        struct rec u;
        memset(&u, 0, sizeof u);
        for (size_t j = 0; j < USER_NFIELDS; j++)
            rec_add(&u, user_fields[j], row->element[j]->str ? row->element[j]->str : "");
        rec_list_add(out, row->element[0]->str, 0, &u);
    }
    freeReplyObject(users);
    freeReplyObject(page);
    add_partner_names(r, out);
    return 0;
}

int store_partner_page(struct req *r, const char *lname, const char *after, int64_t limit,
                       struct rec_list *out, char **next)
{
    memset(out, 0, sizeof *out);
    redisReply *page = lex_page(r, SCHEMA_KEY_IX_PARTNER, lname, strlen(lname), after, limit, next);
    if (page == NULL)
        return -SIMAP_ECONN;
    size_t n = page->elements > (size_t)limit ? (size_t)limit : page->elements;
    for (size_t i = 0; i < n; i++) {
        const char *pid = member_id(page->element[i]->str);
        char key[SCHEMA_KEY_MAX];
        struct rec p;
        memset(&p, 0, sizeof p);
        int rc = schema_key_partner(key, pid) < 0 ? -SIMAP_ENOTFOUND : store_hgetall(r, key, &p);
        if (rc == -SIMAP_ECONN) {
            rec_free(&p);
            rec_list_free(out);
            freeReplyObject(page);
            xfree(*next);
            *next = NULL;
            return rc;
        }
        if (rc == 0)
            rec_list_add(out, pid, 0, &p);
        else
            rec_free(&p);
    }
    freeReplyObject(page);
    return 0;
}

int store_user_lease(struct req *r, const char *uid, char node[SCHEMA_KEY_MAX])
{
    node[0] = '\0';
    char key[SCHEMA_KEY_MAX];
    if (schema_key_lease(key, store_shard(r->api, uid), uid) < 0)
        return -SIMAP_EINVAL;
    redisReply *rep = store_cmd(r, "GET %s", key);
    if (rep == NULL)
        return -SIMAP_ECONN;
    if (rep->type == REDIS_REPLY_STRING) {
        /* "<node>:<g>": the node id is what precedes the last colon. */
        const char *colon = strrchr(rep->str, ':');
        size_t n = colon != NULL ? (size_t)(colon - rep->str) : rep->len;
        snprintf(node, SCHEMA_KEY_MAX, "%.*s", (int)n, rep->str);
    }
    freeReplyObject(rep);
    return 0;
}

int store_users_watched(struct req *r, long long *n)
{
    *n = 0;
    uint32_t s = r->api->shards;
    char(*keys)[SCHEMA_SHARD_KEY_MAX] = xcalloc(s, sizeof *keys);
    const char **argv = xcalloc(s, sizeof *argv);
    for (uint32_t k = 0; k < s; k++) {
        schema_key_shard_users(keys[k], k);
        argv[k] = keys[k];
    }
    redisReply *rep = store_script(r, "users_watched", (int)s, (int)s, argv, NULL);
    xfree(argv);
    xfree(keys);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    if (ok)
        *n = rep->integer;
    freeReplyObject(rep);
    return ok ? 0 : -SIMAP_ECONN;
}

int store_node_drain(struct req *r, const char *id)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_node(key, id) < 0)
        return -SIMAP_ENOTFOUND;
    const char *argv[] = {key};
    redisReply *rep = store_script(r, "node_drain", 1, 1, argv, NULL);
    if (rep == NULL)
        return -SIMAP_ECONN;
    int found = rep->type == REDIS_REPLY_STRING;
    freeReplyObject(rep);
    return found ? 0 : -SIMAP_ENOTFOUND;
}
