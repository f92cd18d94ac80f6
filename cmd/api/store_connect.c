/*
 * cmd/api/store_connect: what the connect pages keep in Redis (core/schema.h):
 * the links already followed (si:link:<sig>, single use), the flows between
 * a link and its callback or form (si:connect:<state>, sealed, 10 minutes),
 * the PLAIN form's tries per user, and the two transitions of a user:
 * connected with its new credentials (scripts/lua/user_connect.lua) and
 * disconnected (scripts/lua/user_disconnect.lua), each with its event in
 * the same script.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/store_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/api/api.h"
#include "cmd/api/connect.h"
#include "core/keys.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"

#define LINK_USED_TTL_S (CONNECT_LINK_TTL + CONNECT_SKEW_S)
#define TRY_WINDOW_S    (15 * 60)
#define WRITE_TRIES     4

int store_link_use(struct req *r, const char *sig)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_link(key, sig) < 0)
        return -SIMAP_EINVAL;
    redisReply *rep = store_cmd(r, "SET %s 1 NX EX %d", key, LINK_USED_TTL_S);
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    int first = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    return first ? 0 : -SIMAP_ESTATE;
}

int store_flow_put(struct req *r, const char *state, const char *record)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_connect(key, state) < 0)
        return -SIMAP_EINVAL;
    char *sealed = NULL;
    if (crypto_encrypt(r->api->keys, record, strlen(record), key, &sealed) < 0)
        return -SIMAP_ECRYPTO;
    redisReply *rep = store_cmd(r, "SET %s %s EX %d", key, sealed, CONNECT_STATE_TTL);
    xfree(sealed);
    int rc = rep != NULL && rep->type == REDIS_REPLY_STATUS ? 0 : -SIMAP_ECONN;
    freeReplyObject(rep);
    return rc;
}

int store_flow_get(struct req *r, const char *state, int take, char **record)
{
    *record = NULL;
    char key[SCHEMA_KEY_MAX];
    if (schema_key_connect(key, state) < 0)
        return -SIMAP_ENOTFOUND;
    redisReply *rep = store_cmd(r, take ? "GETDEL %s" : "GET %s", key);
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    int rc = -SIMAP_ENOTFOUND;
    if (rep->type == REDIS_REPLY_STRING &&
        crypto_decrypt(r->api->keys, rep->str, key, record, NULL) == 0)
        rc = 0;
    freeReplyObject(rep);
    return rc;
}

int store_flow_drop(struct req *r, const char *state)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_connect(key, state) < 0)
        return -SIMAP_EINVAL;
    redisReply *rep = store_cmd(r, "DEL %s", key);
    int rc = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? 0 : -SIMAP_ECONN;
    freeReplyObject(rep);
    return rc;
}

int store_browser_put(struct req *r, const char *browser, const char *failure)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_connect_browser(key, browser) < 0)
        return -SIMAP_EINVAL;
    redisReply *rep = store_cmd(r, "SET %s %s EX %d", key, failure, CONNECT_STATE_TTL);
    int rc = rep != NULL && rep->type == REDIS_REPLY_STATUS ? 0 : -SIMAP_ECONN;
    freeReplyObject(rep);
    return rc;
}

char *store_browser_failure(struct req *r, const char *browser)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_connect_browser(key, browser) < 0)
        return NULL;
    redisReply *rep = store_cmd(r, "GET %s", key);
    char *url = rep != NULL && rep->type == REDIS_REPLY_STRING ? xstrdup(rep->str) : NULL;
    freeReplyObject(rep);
    return url;
}

int store_connect_try(struct req *r, const char *uid, long long *tries)
{
    char key[SCHEMA_KEY_MAX];
    if (schema_key_connect_try(key, uid) < 0)
        return -SIMAP_EINVAL;
    redisReply *rep = store_cmd(r, "INCR %s", key);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    *tries = rep->integer;
    freeReplyObject(rep);
    rep = store_cmd(r, "EXPIRE %s %d NX", key, TRY_WINDOW_S);
    freeReplyObject(rep);
    return 0;
}

int store_user_by_uid(struct req *r, const char *uid, struct rec *out)
{
    memset(out, 0, sizeof *out);
    char key[SCHEMA_KEY_MAX];
    if (strlen(uid) != SCHEMA_UID_LEN || schema_key_user(key, store_shard(r->api, uid), uid) < 0)
        return -SIMAP_ENOTFOUND;
    return store_hgetall(r, key, out);
}

char *store_user_open(struct req *r, const struct rec *u, const char *field)
{
    return keys_open_user(r->api->keys, rec_get(u, "uid"), field, rec_get(u, field));
}

char *store_conn_open_secret(struct req *r, const char *pid, const char *code, const struct rec *c)
{
    return keys_open_conn_secret(r->api->keys, pid, code, rec_get(c, "oauth2_client_secret"));
}

/* The first word of a script's answer, or "". */
static const char *answer(const redisReply *rep)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return "";
    return rep->element[0]->str;
}

/* One user_connect.lua: 0, 1 (the tag changed: read again, retry) or a
 * -SIMAP_* code. */
static int connect_once(struct req *r, const struct rec *u, const struct store_connect_in *in,
                        const char *secret, const char *access, int *queued)
{
    const char *uid = rec_get(u, "uid"), *pid = rec_get(u, "pid"), *code = rec_get(u, "code");
    const char *tag = rec_get(u, "tag");
    const char *email = in->email != NULL ? in->email : rec_get(u, "email");
    struct event_keys ek;
    char kemail[SCHEMA_KEY_MAX], kconn[SCHEMA_KEY_MAX];
    char *lemail = params_ascii_lower(xstrdup(email));
    int rc = store_event_keys(r, pid, uid, "connected", store_time_ms(r), &ek);
    if (rc == 0 &&
        (schema_key_email(kemail, pid, code, lemail) < 0 || schema_key_conn(kconn, pid, code) < 0))
        rc = -SIMAP_EINVAL;
    xfree(lemail);
    if (rc < 0)
        return rc;
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    char *sealed = store_user_event_sealed(r, "user_connected", ek.eid, tag, code, email, sha1);
    if (sealed == NULL)
        return -SIMAP_ECRYPTO;
    const char *argv[] = {ek.user,
                          ek.users,
                          SCHEMA_KEY_CHANGES,
                          kemail,
                          ek.partner,
                          ek.evt,
                          ek.ready,
                          ek.rp,
                          kconn,
                          uid,
                          ek.k,
                          pid,
                          code,
                          tag,
                          in->email != NULL ? "1" : "0",
                          email,
                          in->username != NULL ? "1" : "0",
                          in->username != NULL ? in->username : "",
                          secret,
                          access,
                          in->expires_at,
                          ek.now,
                          ek.eid,
                          sha1,
                          sealed};
    redisReply *rep = store_script(r, "user_connect", 9, 25, argv, NULL);
    xfree(sealed);
    if (rep == NULL)
        return -SIMAP_ECONN;
    const char *res = answer(rep);
    if (strcmp(res, "ok") == 0) {
        *queued = rep->elements > 1 && rep->element[1]->integer == 1;
        rc = 0;
    } else if (strcmp(res, "retry") == 0) {
        rc = 1;
    } else if (strcmp(res, "conflict") == 0) {
        rc = -SIMAP_ESTATE;
    } else if (strcmp(res, "gone") == 0) {
        rc = -SIMAP_ENOTFOUND;
    } else {
        rc = -SIMAP_EPROTO;
    }
    freeReplyObject(rep);
    return rc;
}

int store_user_connect(struct req *r, struct rec *u, const struct store_connect_in *in, int *queued)
{
    *queued = 0;
    const char *uid = rec_get(u, "uid");
    char *secret = keys_seal_user(r->api->keys, uid, "secret", in->secret);
    char *access = keys_seal_user(r->api->keys, uid, "oauth2_access_token", in->access_token);
    int rc = secret != NULL && access != NULL ? 1 : -SIMAP_ECRYPTO;
    for (int i = 0; i < WRITE_TRIES && rc == 1; i++) {
        rc = connect_once(r, u, in, secret, access, queued);
        if (rc == 1) {
            char id[SCHEMA_UID_LEN + 1];
            snprintf(id, sizeof id, "%s", uid);
            rec_free(u);
            rc = store_user_by_uid(r, id, u) < 0 ? -SIMAP_ENOTFOUND : 1;
            uid = rec_get(u, "uid");
        }
    }
    keys_wipe_free(secret);
    keys_wipe_free(access);
    return rc == 1 ? -SIMAP_ESTATE : rc;
}

int store_user_disconnect(struct req *r, const struct rec *u, int clear_email, int *was,
                          int *queued)
{
    *was = *queued = 0;
    const char *uid = rec_get(u, "uid"), *pid = rec_get(u, "pid"), *code = rec_get(u, "code");
    const char *tag = rec_get(u, "tag");
    struct event_keys ek;
    int rc = store_event_keys(r, pid, uid, "disconnected", store_time_ms(r), &ek);
    if (rc < 0)
        return rc;
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    char *sealed = store_user_event_sealed(r, "user_disconnected", ek.eid, tag, code, "", sha1);
    if (sealed == NULL)
        return -SIMAP_ECRYPTO;
    const char *argv[] = {ek.user,    ek.users, SCHEMA_KEY_CHANGES,
                          ek.partner, ek.evt,   ek.ready,
                          ek.rp,      uid,      ek.k,
                          pid,        code,     clear_email ? "1" : "0",
                          ek.now,     ek.eid,   sha1,
                          tag,        sealed};
    redisReply *rep = store_script(r, "user_disconnect", 7, 17, argv, NULL);
    xfree(sealed);
    if (rep == NULL)
        return -SIMAP_ECONN;
    const char *res = answer(rep);
    if (strcmp(res, "ok") == 0 && rep->elements >= 3) {
        *was = rep->element[1]->integer == 1;
        *queued = rep->element[2]->integer == 1;
        rc = 0;
    } else if (strcmp(res, "gone") == 0) {
        rc = -SIMAP_ENOTFOUND;
    } else if (strcmp(res, "retry") == 0) {
        rc = -SIMAP_ESTATE;
    } else {
        rc = -SIMAP_EPROTO;
    }
    freeReplyObject(rep);
    return rc;
}
