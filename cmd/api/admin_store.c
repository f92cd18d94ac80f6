/*
 * cmd/api/admin_store: admin accounts and dashboard sessions in Redis (see
 * admin_store.h; the keys are core/schema.h's "Admin accounts").
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/admin_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/schema.h"

int admin_name_lower(const char *name, char lower[ADMIN_NAME_MAX + 1])
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > ADMIN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '@' || c == '-'))
            return 0;
        lower[i] = c;
    }
    lower[n] = '\0';
    return 1;
}

int admin_password_ok(size_t n)
{
    return n >= ADMIN_PASSWORD_MIN && n <= ADMIN_PASSWORD_MAX;
}

/* Runs script name; NULL after logging when Redis failed or the script
 * raised (a bug). */
static redisReply *script(struct rsync *rs, const char *name, int nkeys, int argc,
                          const char **argv)
{
    redisReply *rep = rsync_script(rs, name, nkeys, argc, argv, NULL);
    if (rep == NULL) {
        log_warn("admin store: redis failed script=%s err=\"%s\"", name, rsync_errstr(rs));
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        log_error("admin store: script failed script=%s err=\"%s\"", name, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

static int64_t int_of(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    return r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
}

int admin_store_create(struct rsync *rs, const char *name, const char *hash, int64_t now)
{
    char lower[ADMIN_NAME_MAX + 1], key[SCHEMA_KEY_MAX], at[24];
    if (!admin_name_lower(name, lower) || schema_key_admin(key, lower) < 0)
        return -SIMAP_EINVAL;
    snprintf(at, sizeof at, "%lld", (long long)now);
    const char *argv[] = {key, SCHEMA_KEY_ADMINS, name, hash, at, lower};
    redisReply *rep = script(rs, "admin_create", 2, 6, argv);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    int made = rep->integer == 1;
    freeReplyObject(rep);
    return made ? 0 : -SIMAP_ESTATE;
}

/* HGETALL key into *out: 0, -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
static int hgetall(struct rsync *rs, const char *key, struct rec *out)
{
    memset(out, 0, sizeof *out);
    redisReply *rep = rsync_command(rs, "HGETALL %s", key);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        rec_add(out, rep->element[i]->str, rep->element[i + 1]->str);
    freeReplyObject(rep);
    return out->n == 0 ? -SIMAP_ENOTFOUND : 0;
}

int admin_store_get(struct rsync *rs, const char *lower, struct rec *out)
{
    char key[SCHEMA_KEY_MAX];
    memset(out, 0, sizeof *out);
    if (schema_key_admin(key, lower) < 0)
        return -SIMAP_ENOTFOUND;
    return hgetall(rs, key, out);
}

int admin_store_list(struct rsync *rs, struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    redisReply *ids =
        rsync_command(rs, "ZRANGE " SCHEMA_KEY_ADMINS " 0 %d WITHSCORES", ADMIN_ACCOUNTS_MAX - 1);
    if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ids);
        return -SIMAP_ECONN;
    }
    int rc = 0;
    for (size_t i = 0; i + 1 < ids->elements && rc == 0; i += 2) {
        struct rec a, shown;
        memset(&shown, 0, sizeof shown);
        rc = admin_store_get(rs, ids->element[i]->str, &a);
        if (rc == -SIMAP_ENOTFOUND) { /* deleted meanwhile */
            rc = 0;
            rec_free(&a);
            continue;
        }
        for (size_t f = 0; rc == 0 && f < a.n; f++)
            if (strcmp(a.f[f], "hash") != 0)
                rec_add(&shown, a.f[f], a.v[f]);
        rec_free(&a);
        if (rc == 0)
            rec_list_add(out, ids->element[i]->str, int_of(ids->element[i + 1]), &shown);
        else
            rec_free(&shown);
    }
    freeReplyObject(ids);
    return rc;
}

int admin_store_change(struct rsync *rs, const char *lower, const char *op, int64_t now)
{
    char key[SCHEMA_KEY_MAX], sessions[SCHEMA_KEY_MAX], at[24];
    if (schema_key_admin(key, lower) < 0 || schema_key_admin_sessions(sessions, lower) < 0)
        return -SIMAP_ENOTFOUND;
    snprintf(at, sizeof at, "%lld", (long long)now);
    int existed = -1;
    /* Each pass ends the sessions it read; one that began meanwhile is
     * ended by the next (admin_change.lua). */
    for (int pass = 0; pass < 100; pass++) {
        redisReply *members = NULL;
        size_t n = 0;
        if (strcmp(op, "enable") != 0) {
            members = rsync_command(rs, "ZRANGE %s 0 99", sessions);
            if (members == NULL || members->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(members);
                return -SIMAP_ECONN;
            }
            n = members->elements;
        }
        const char **argv = xcalloc(6 + 2 * n, sizeof *argv);
        char(*skeys)[SCHEMA_KEY_MAX] = xcalloc(n + 1, sizeof *skeys);
        size_t nk = 3;
        argv[0] = key;
        argv[1] = SCHEMA_KEY_ADMINS;
        argv[2] = sessions;
        for (size_t i = 0; i < n; i++)
            if (schema_key_admin_session(skeys[i], members->element[i]->str) >= 0)
                argv[nk++] = skeys[i];
        size_t na = nk;
        argv[na++] = op;
        argv[na++] = at;
        argv[na++] = lower;
        for (size_t i = 0; i < n; i++)
            if (schema_key_admin_session(skeys[i], members->element[i]->str) >= 0)
                argv[na++] = members->element[i]->str;
        redisReply *rep = script(rs, "admin_change", (int)nk, (int)na, argv);
        xfree(argv);
        xfree(skeys);
        freeReplyObject(members);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            return -SIMAP_ECONN;
        }
        if (existed < 0)
            existed = (int)int_of(rep->element[0]);
        int64_t left = int_of(rep->element[1]);
        freeReplyObject(rep);
        if (left == 0 || strcmp(op, "enable") == 0)
            break;
    }
    return existed == 1 ? 0 : -SIMAP_ENOTFOUND;
}

int admin_store_locked_until(struct rsync *rs, const char *lower, int64_t now, int64_t *until)
{
    char key[SCHEMA_KEY_MAX];
    *until = 0;
    if (schema_key_admin_fail(key, lower) < 0)
        return 0;
    redisReply *rep = rsync_command(rs, "HGET %s locked_until", key);
    if (rep == NULL || (rep->type != REDIS_REPLY_STRING && rep->type != REDIS_REPLY_NIL)) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    int64_t t = int_of(rep);
    freeReplyObject(rep);
    *until = t > now ? t : 0;
    return 0;
}

int admin_store_failed(struct rsync *rs, const char *lower, int64_t now, int failures,
                       int64_t lock_ms, int *count, int64_t *until)
{
    char fail[SCHEMA_KEY_MAX], key[SCHEMA_KEY_MAX], at[24], max[16], lock[24];
    *count = 0;
    *until = 0;
    if (schema_key_admin_fail(fail, lower) < 0 || schema_key_admin(key, lower) < 0)
        return -SIMAP_EINVAL;
    snprintf(at, sizeof at, "%lld", (long long)now);
    snprintf(max, sizeof max, "%d", failures);
    snprintf(lock, sizeof lock, "%lld", (long long)lock_ms);
    const char *argv[] = {fail, key, at, max, lock};
    redisReply *rep = script(rs, "admin_login_fail", 2, 5, argv);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    *count = (int)int_of(rep->element[0]);
    *until = int_of(rep->element[1]);
    freeReplyObject(rep);
    return 0;
}

int admin_store_login(struct rsync *rs, const struct admin_new_session *s, int64_t now,
                      int64_t *until)
{
    char key[SCHEMA_KEY_MAX], fail[SCHEMA_KEY_MAX], sess[SCHEMA_KEY_MAX], sessions[SCHEMA_KEY_MAX];
    char at[24], idle[24], max[24];
    *until = 0;
    if (schema_key_admin(key, s->lower) < 0 || schema_key_admin_fail(fail, s->lower) < 0 ||
        schema_key_admin_session(sess, s->key_hex) < 0 ||
        schema_key_admin_sessions(sessions, s->lower) < 0)
        return ADMIN_LOGIN_MISSING;
    snprintf(at, sizeof at, "%lld", (long long)now);
    snprintf(idle, sizeof idle, "%lld", (long long)s->idle_ms);
    snprintf(max, sizeof max, "%lld", (long long)s->max_ms);
    const char *argv[] = {key, fail, sess, sessions, s->lower,   s->csrf,
                          at,  idle, max,  s->addr,  s->key_hex, s->hash};
    redisReply *rep = script(rs, "admin_login_ok", 4, 12, argv);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    const char *what = rep->element[0]->str;
    int rc = ADMIN_LOGIN_OK;
    if (strcmp(what, "missing") == 0)
        rc = ADMIN_LOGIN_MISSING;
    else if (strcmp(what, "disabled") == 0)
        rc = ADMIN_LOGIN_DISABLED;
    else if (strcmp(what, "changed") == 0)
        rc = ADMIN_LOGIN_CHANGED;
    else if (strcmp(what, "locked") == 0 && rep->elements == 2) {
        rc = ADMIN_LOGIN_LOCKED;
        *until = int_of(rep->element[1]);
    } else if (strcmp(what, "ok") != 0)
        rc = -SIMAP_EPROTO;
    freeReplyObject(rep);
    return rc;
}

int admin_store_touch(struct rsync *rs, const char *key_hex, int64_t now, int64_t idle_ms,
                      int64_t max_ms, struct admin_session *out)
{
    char sess[SCHEMA_KEY_MAX], at[24], idle[24], max[24];
    memset(out, 0, sizeof *out);
    if (schema_key_admin_session(sess, key_hex) < 0)
        return -SIMAP_ENOTFOUND;
    snprintf(at, sizeof at, "%lld", (long long)now);
    snprintf(idle, sizeof idle, "%lld", (long long)idle_ms);
    snprintf(max, sizeof max, "%lld", (long long)max_ms);
    const char *argv[] = {sess, at, idle, max};
    redisReply *rep = script(rs, "admin_session_touch", 1, 4, argv);
    if (rep == NULL)
        return -SIMAP_ECONN;
    int rc = -SIMAP_ENOTFOUND;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[1]->type == REDIS_REPLY_STRING && rep->element[0]->len <= ADMIN_NAME_MAX &&
        rep->element[1]->len <= ADMIN_CSRF_MAX) {
        snprintf(out->lower, sizeof out->lower, "%s", rep->element[0]->str);
        snprintf(out->csrf, sizeof out->csrf, "%s", rep->element[1]->str);
        out->created_at = int_of(rep->element[2]);
        out->idle_until = int_of(rep->element[3]);
        out->expires_at = out->created_at + max_ms;
        rc = 0;
    } else if (rep->type != REDIS_REPLY_NIL) {
        rc = -SIMAP_EPROTO;
    }
    freeReplyObject(rep);
    return rc;
}

int admin_store_logout(struct rsync *rs, const char *key_hex, const char *lower)
{
    char sess[SCHEMA_KEY_MAX], sessions[SCHEMA_KEY_MAX];
    if (schema_key_admin_session(sess, key_hex) < 0 ||
        schema_key_admin_sessions(sessions, lower) < 0)
        return 0;
    const char *argv[] = {sess, sessions, key_hex};
    redisReply *rep = script(rs, "admin_logout", 2, 3, argv);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    return ok ? 0 : -SIMAP_ECONN;
}
