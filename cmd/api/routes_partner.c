/*
 * cmd/api/routes_partner: the original's partner API, /api/v1/connections and
 * their users, with its parameter names, JSON shapes and messages (errors are
 * JSON now), plus pagination and the user state fields.
 *
 * Every lookup is scoped by the partner found from the API key: the keys
 * read are built from that partner's id, so another partner's data cannot be
 * named, whatever the path says. Every write is one Lua script.
 *
 * Differences from the original, on purpose:
 *   - a tag reused after archiving resolves to the live user (the original
 *     could answer with the archived row); an archived user is still found
 *     by its tag while no live user has it, so it can be restored;
 *   - POST /connections takes the credentials (the original dropped them);
 *   - uniqueness conflicts are 409 (the original said 400), creates 201;
 *   - the user list is in tag order and paginated (limit, cursor; the next
 *     cursor in the X-Next-Cursor header, the body stays the original's array).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"

#define LIST_LIMIT_DEFAULT 1000
#define LIST_LIMIT_MAX     1000
#define DELETE_BATCH       200
#define WRITE_RETRIES      8

/* ---- Lookups ---- */

#define CODE_BUF (API_CODE_MAX + 8)

/* The route's provider code (:code, the first argument), cut to fit: codes
 * are [A-Za-z0-9_-]; a Rails-style ".json" suffix is dropped. */
static void route_code(const struct req *r, char code[CODE_BUF])
{
    snprintf(code, CODE_BUF, "%.70s", r->arg[0]);
    size_t n = strlen(code);
    if (n > 5 && strcmp(code + n - 5, ".json") == 0)
        code[n - 5] = '\0';
}

/* Loads the provider; replies 404 (the original's message) when unknown. */
static int load_provider(struct req *r, const char *code, struct rec *prov)
{
    memset(prov, 0, sizeof *prov);
    if (!params_is_token(code, API_CODE_MAX, "_-"))
        return reply_error(r, 404, "not_found", "imap_provider_code",
                           "Imap Provider not found for '%.*s'.", 100, code);
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:provider:%s", code);
    int rc = store_hgetall(r, key, prov);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", "imap_provider_code",
                           "Imap Provider not found for '%s'.", code);
    return 0;
}

/* Loads the partner's connection to code (provider first, as the original). */
static int load_conn(struct req *r, const char *code, struct rec *prov, struct rec *conn)
{
    memset(conn, 0, sizeof *conn);
    int rc = load_provider(r, code, prov);
    if (rc != 0)
        return rc;
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:conn:%s:%s", r->partner.pid, code);
    rc = store_hgetall(r, key, conn);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0 || strcmp(rec_get(conn, "deleting"), "1") == 0)
        return reply_error(r, 404, "not_found", NULL, "Connection not found.");
    return 0;
}

/* Why a tag cannot be used, or NULL. */
static const char *bad_tag(const char *tag)
{
    size_t n = strlen(tag);
    if (n == 0)
        return "can't be blank";
    if (n > API_TAG_MAX)
        return "is too long (maximum is 255 bytes)";
    if (!params_is_printable(tag, n))
        return "must not contain control characters";
    if (strchr(tag, '/') != NULL)
        return "must not contain '/'";
    return NULL;
}

/* Reads user uid of the partner's connection code into u; 0 or -SIMAP_ENOTFOUND
 * (also when it belongs to someone else) or -SIMAP_ECONN. */
static int read_user(struct req *r, const char *code, const char *uid, struct rec *u)
{
    if (strlen(uid) != SCHEMA_UID_LEN)
        return -SIMAP_ENOTFOUND;
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:{%u}:user:%s", api_shard(r->api, uid), uid);
    int rc = store_hgetall(r, key, u);
    if (rc < 0)
        return rc;
    if (strcmp(rec_get(u, "pid"), r->partner.pid) != 0 || strcmp(rec_get(u, "code"), code) != 0) {
        rec_free(u);
        return -SIMAP_ENOTFOUND;
    }
    return 0;
}

/* The live user with this tag, else the most recently updated archived one. */
static int find_user_exact(struct req *r, const char *code, const char *tag, struct rec *u)
{
    char *lower = params_ascii_lower(xstrdup(tag));
    char key[SCHEMA_KEY_MAX + API_TAG_MAX];
    snprintf(key, sizeof key, "si:tag:%s:%s:%s", r->partner.pid, code, lower);
    redisReply *rep = store_cmd(r, "GET %s", key);
    if (rep == NULL) {
        xfree(lower);
        return -SIMAP_ECONN;
    }
    int rc = -SIMAP_ENOTFOUND;
    if (rep->type == REDIS_REPLY_STRING)
        rc = read_user(r, code, rep->str, u);
    freeReplyObject(rep);
    if (rc != -SIMAP_ENOTFOUND) {
        xfree(lower);
        return rc;
    }
    /* No live user: look among every user of the tag (archived ones). */
    char zkey[SCHEMA_KEY_MAX];
    snprintf(zkey, sizeof zkey, "si:conn:%s:%s:users", r->partner.pid, code);
    size_t ln = strlen(lower);
    char *min = xmalloc(ln + 3), *max = xmalloc(ln + 3);
    snprintf(min, ln + 3, "[%s\x1f", lower);
    snprintf(max, ln + 3, "[%s\x20", lower);
    rep = store_cmd(r, "ZRANGEBYLEX %s %s %s LIMIT 0 32", zkey, min, max);
    xfree(min);
    xfree(max);
    xfree(lower);
    if (rep == NULL)
        return -SIMAP_ECONN;
    int64_t best = -1;
    rc = -SIMAP_ENOTFOUND;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const char *sep = strchr(rep->element[i]->str, '\x1f');
        struct rec cand;
        if (sep == NULL || read_user(r, code, sep + 1, &cand) != 0)
            continue;
        int64_t at = strtoll(rec_get(&cand, "updated_at"), NULL, 10);
        if (at > best) {
            if (rc == 0)
                rec_free(u);
            *u = cand;
            best = at;
            rc = 0;
        } else {
            rec_free(&cand);
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* Finds the user of path tag; replies 400/404/503 on failure. A trailing
 * ".json" (the original's format suffix) is dropped when no user has the tag
 * with it. */
static int load_user(struct req *r, const char *code, const char *tag, struct rec *u)
{
    memset(u, 0, sizeof *u);
    const char *why = bad_tag(tag);
    if (why != NULL && strchr(tag, '/') == NULL)
        return reply_invalid(r, "tag", why);
    int rc = why ? -SIMAP_ENOTFOUND : find_user_exact(r, code, tag, u);
    size_t n = strlen(tag);
    if (rc == -SIMAP_ENOTFOUND && n > 5 && strcmp(tag + n - 5, ".json") == 0) {
        char *base = xstrndup(tag, n - 5);
        rc = bad_tag(base) ? -SIMAP_ENOTFOUND : find_user_exact(r, code, base, u);
        xfree(base);
    }
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", NULL, "User not found for '%.300s'.", tag);
    return 0;
}

static int send_user(struct req *r, int status, const struct rec *u)
{
    struct json_gen *g = reply_gen_new();
    view_user(g, r->api, u, r->partner.api_key);
    return reply_gen(r, status, g, NULL);
}

/* Reads the user again after a write and sends it. */
static int send_user_by_uid(struct req *r, int status, const char *code, const char *uid)
{
    struct rec u;
    int rc = read_user(r, code, uid, &u);
    if (rc < 0) {
        rec_free(&u);
        return rc == -SIMAP_ECONN ? reply_unavailable(r)
                                  : reply_error(r, 404, "not_found", NULL, "User not found.");
    }
    rc = send_user(r, status, &u);
    rec_free(&u);
    return rc;
}

static int is_oauth2(const struct rec *prov)
{
    return strcmp(rec_get(prov, "auth"), "oauth2") == 0;
}

/* ---- Parameters of users ---- */

/* A user's writable fields from the request, checked. */
struct user_input {
    const char *tag, *email, *username, *secret;
    int has_tag, has_email, has_username, has_secret;
    int archived;      /* -1 absent */
    int enable_tracer; /* -1 absent */
};

/* Reads one optional text parameter; replies 400 when present but bad. */
static int opt_text(struct req *r, const char *name, size_t max, int printable, const char **out,
                    int *has)
{
    const struct param *p = params_get(&r->params, name);
    *has = 0;
    if (p == NULL)
        return 0;
    if (param_text(p, out) < 0)
        return reply_invalid(r, name, "must be a string");
    if (strlen(*out) > max)
        return reply_invalid(r, name, "is too long");
    if (printable && !params_is_printable(*out, strlen(*out)))
        return reply_invalid(r, name, "must not contain control characters");
    *has = 1;
    return 0;
}

static int opt_bool(struct req *r, const char *name, int *out)
{
    const struct param *p = params_get(&r->params, name);
    *out = -1;
    if (p == NULL)
        return 0;
    if (param_bool(p, out) < 0)
        return reply_invalid(r, name, "must be true or false");
    return 0;
}

static int read_user_input(struct req *r, const struct rec *prov, struct user_input *in)
{
    memset(in, 0, sizeof *in);
    int rc;
    if ((rc = opt_text(r, "tag", API_TAG_MAX + 1, 1, &in->tag, &in->has_tag)) != 0)
        return rc;
    if (in->has_tag) {
        const char *why = bad_tag(in->tag);
        if (why != NULL)
            return reply_invalid(r, "tag", why);
    }
    if ((rc = opt_text(r, "email", API_EMAIL_MAX, 1, &in->email, &in->has_email)) != 0)
        return rc;
    if (is_oauth2(prov)) {
        if ((rc = opt_text(r, "oauth2_refresh_token", API_SECRET_MAX, 0, &in->secret,
                           &in->has_secret)) != 0)
            return rc;
    } else {
        if ((rc = opt_text(r, "login_username", API_TEXT_MAX, 1, &in->username,
                           &in->has_username)) != 0)
            return rc;
        if ((rc = opt_text(r, "login_password", API_SECRET_MAX, 0, &in->secret, &in->has_secret)) !=
            0)
            return rc;
    }
    if ((rc = opt_bool(r, "archived", &in->archived)) != 0)
        return rc;
    return opt_bool(r, "enable_tracer", &in->enable_tracer);
}

/* Encrypts a user's secret, "" staying "". Returns a new string or NULL. */
static char *seal_secret(const struct api *a, const char *uid, const char *secret)
{
    if (*secret == '\0')
        return xstrdup("");
    char aad[64];
    snprintf(aad, sizeof aad, "si:user:%s:secret", uid);
    char *env = NULL;
    if (crypto_encrypt(a->keys, secret, strlen(secret), aad, &env) < 0)
        return NULL;
    return env;
}

static int conflict(struct req *r, const char *field)
{
    return reply_error(r, 409, "conflict", field, "Validation failed: %s has already been taken",
                       strcmp(field, "tag") == 0 ? "Tag" : "Email");
}

/* Sends the user_connected / user_disconnected events of a transition. */
static void enqueue_transition(struct req *r, const char *code, const char *uid, const char *before,
                               const char *after, const char *now)
{
    int was = *before != '\0', is = *after != '\0';
    if (was == is)
        return;
    struct rec u;
    if (read_user(r, code, uid, &u) == 0)
        events_enqueue_user(r, is ? "user_connected" : "user_disconnected", &u, is ? after : now);
    rec_free(&u);
}

/* ---- Users ---- */

static int user_create(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    if (rc != 0)
        goto out;
    struct user_input in;
    if ((rc = read_user_input(r, &prov, &in)) != 0)
        goto out;
    if (!in.has_tag || *in.tag == '\0') {
        rc = reply_invalid(r, "tag", "can't be blank");
        goto out;
    }
    char uid[SCHEMA_UID_LEN + 1];
    unsigned char raw[SCHEMA_UID_LEN / 2];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, uid);
    uint32_t k = api_shard(r->api, uid);
    char *sealed = seal_secret(r->api, uid, in.has_secret ? in.secret : "");
    if (sealed == NULL) {
        rc = reply_error(r, 500, "internal", NULL, "encryption failed");
        goto out;
    }
    char *ltag = params_ascii_lower(xstrdup(in.tag));
    char *lemail = params_ascii_lower(xstrdup(in.has_email ? in.email : ""));
    size_t klen = SCHEMA_KEY_MAX + API_TAG_MAX + API_EMAIL_MAX;
    char *kconn = xmalloc(klen), *kusers = xmalloc(klen), *ktag = xmalloc(klen),
         *kemail = xmalloc(klen), *kuser = xmalloc(klen), *kshard = xmalloc(klen);
    snprintf(kconn, klen, "si:conn:%s:%s", r->partner.pid, code);
    snprintf(kusers, klen, "si:conn:%s:%s:users", r->partner.pid, code);
    snprintf(ktag, klen, "si:tag:%s:%s:%s", r->partner.pid, code, ltag);
    snprintf(kemail, klen, "si:email:%s:%s:%s", r->partner.pid, code, lemail);
    snprintf(kuser, klen, "si:{%u}:user:%s", k, uid);
    snprintf(kshard, klen, "si:{%u}:users", k);
    char ks[16];
    snprintf(ks, sizeof ks, "%u", k);
    const char *argv[] = {kconn,
                          kusers,
                          ktag,
                          kemail,
                          kuser,
                          kshard,
                          "si:changes",
                          uid,
                          ks,
                          is_oauth2(&prov) ? "oauth2" : "plain",
                          in.tag,
                          in.has_email ? in.email : "",
                          in.has_username ? in.username : "",
                          sealed,
                          in.archived == 1 ? "1" : "0",
                          in.enable_tracer == 1 ? "1" : "0",
                          ltag,
                          r->partner.pid,
                          code};
    redisReply *rep = store_script(r, "user_create", 7, 19, argv, NULL);
    crypto_wipe(sealed, strlen(sealed));
    xfree(sealed);
    if (rep == NULL) {
        rc = reply_unavailable(r);
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        rc = reply_error(r, 500, "internal", NULL, "unexpected script reply");
    } else if (strcmp(rep->element[0]->str, "ok") == 0) {
        const char *connected_at = rep->elements > 1 ? rep->element[1]->str : "";
        if (*connected_at != '\0' && in.archived != 1)
            enqueue_transition(r, code, uid, "", connected_at, connected_at);
        rc = send_user_by_uid(r, 201, code, uid);
    } else if (strcmp(rep->element[0]->str, "conflict") == 0) {
        rc = conflict(r, rep->element[1]->str);
    } else {
        rc = reply_error(r, 404, "not_found", NULL, "Connection not found.");
    }
    freeReplyObject(rep);
    xfree(ltag);
    xfree(lemail);
    xfree(kconn);
    xfree(kusers);
    xfree(ktag);
    xfree(kemail);
    xfree(kuser);
    xfree(kshard);
out:
    rec_free(&prov);
    rec_free(&conn);
    return rc;
}

/* Loads the route's connection and user (:code, :tag) and answers with
 * act(r, user); a missing connection or user is answered here. */
static int with_user(struct req *r, int (*act)(struct req *r, struct rec *u))
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn, u;
    memset(&u, 0, sizeof u);
    int rc = load_conn(r, code, &prov, &conn);
    if (rc == 0 && (rc = load_user(r, code, r->arg[1], &u)) == 0)
        rc = act(r, &u);
    rec_free(&prov);
    rec_free(&conn);
    rec_free(&u);
    return rc;
}

static int reply_user(struct req *r, struct rec *u)
{
    return send_user(r, 200, u);
}

static int user_show(struct req *r)
{
    return with_user(r, reply_user);
}

/* Archive (DELETE, or PUT archived=true alone) through user_archive.lua. */
static int archive(struct req *r, const struct rec *u)
{
    const char *uid = rec_get(u, "uid");
    uint32_t k = api_shard(r->api, uid);
    char kuser[SCHEMA_KEY_MAX], kshard[SCHEMA_KEY_MAX], ks[16];
    snprintf(kuser, sizeof kuser, "si:{%u}:user:%s", k, uid);
    snprintf(kshard, sizeof kshard, "si:{%u}:users", k);
    snprintf(ks, sizeof ks, "%u", k);
    const char *argv[] = {kuser, kshard, "si:changes", uid, ks, "api"};
    redisReply *rep = store_script(r, "user_archive", 3, 6, argv, NULL);
    if (rep == NULL)
        return -SIMAP_ECONN;
    freeReplyObject(rep);
    return 0;
}

/* Restore (PUT archived=false alone) through user_restore.lua; 0, or the
 * status after replying. */
static int restore(struct req *r, const char *code, struct rec *u)
{
    for (int attempt = 0; attempt < WRITE_RETRIES; attempt++) {
        const char *uid = rec_get(u, "uid");
        uint32_t k = api_shard(r->api, uid);
        char *ltag = params_ascii_lower(xstrdup(rec_get(u, "tag")));
        char *lemail = params_ascii_lower(xstrdup(rec_get(u, "email")));
        size_t klen = SCHEMA_KEY_MAX + API_TAG_MAX + API_EMAIL_MAX;
        char *ktag = xmalloc(klen), *kemail = xmalloc(klen);
        char kuser[SCHEMA_KEY_MAX], kshard[SCHEMA_KEY_MAX], ks[16];
        snprintf(ktag, klen, "si:tag:%s:%s:%s", r->partner.pid, code, ltag);
        snprintf(kemail, klen, "si:email:%s:%s:%s", r->partner.pid, code, lemail);
        snprintf(kuser, sizeof kuser, "si:{%u}:user:%s", k, uid);
        snprintf(kshard, sizeof kshard, "si:{%u}:users", k);
        snprintf(ks, sizeof ks, "%u", k);
        const char *argv[] = {kuser, kshard, "si:changes", ktag, kemail, uid, ks, ltag, lemail};
        redisReply *rep = store_script(r, "user_restore", 5, 9, argv, NULL);
        xfree(ltag);
        xfree(lemail);
        xfree(ktag);
        xfree(kemail);
        if (rep == NULL)
            return reply_unavailable(r);
        char res[32];
        snprintf(res, sizeof res, "%s",
                 rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING ? rep->str
                                                                                    : "");
        freeReplyObject(rep);
        if (strcmp(res, "ok") == 0 || strcmp(res, "live") == 0)
            return 0;
        if (strcmp(res, "conflict_tag") == 0)
            return conflict(r, "tag");
        if (strcmp(res, "conflict_email") == 0)
            return conflict(r, "email");
        if (strcmp(res, "missing") == 0)
            return reply_error(r, 404, "not_found", NULL, "User not found.");
        /* retry: someone changed the user; read it again */
        char uidc[SCHEMA_UID_LEN + 1];
        snprintf(uidc, sizeof uidc, "%s", uid);
        rec_free(u);
        int rc = read_user(r, code, uidc, u);
        if (rc == -SIMAP_ECONN)
            return reply_unavailable(r);
        if (rc < 0)
            return reply_error(r, 404, "not_found", NULL, "User not found.");
    }
    return reply_error(r, 409, "conflict", NULL, "the user keeps changing; try again");
}

/* The general update through user_update.lua; 0 or the status after replying.
 * *transition receives the connected_at before/after for events. */
static int update(struct req *r, const char *code, const struct rec *prov, struct rec *u,
                  const struct user_input *in)
{
    char *sealed = NULL;
    if (in->has_secret && (sealed = seal_secret(r->api, rec_get(u, "uid"), in->secret)) == NULL)
        return reply_error(r, 500, "internal", NULL, "encryption failed");
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        if (attempt == WRITE_RETRIES) {
            rc = reply_error(r, 409, "conflict", NULL, "the user keeps changing; try again");
            break;
        }
        const char *uid = rec_get(u, "uid");
        uint32_t k = api_shard(r->api, uid);
        char *old_ltag = params_ascii_lower(xstrdup(rec_get(u, "tag")));
        char *old_lemail = params_ascii_lower(xstrdup(rec_get(u, "email")));
        char *ltag = params_ascii_lower(xstrdup(in->has_tag ? in->tag : rec_get(u, "tag")));
        char *lemail = params_ascii_lower(xstrdup(in->has_email ? in->email : rec_get(u, "email")));
        size_t klen = SCHEMA_KEY_MAX + API_TAG_MAX + API_EMAIL_MAX;
        char *ktag = xmalloc(klen), *kemail = xmalloc(klen);
        char kuser[SCHEMA_KEY_MAX], kshard[SCHEMA_KEY_MAX], kusers[SCHEMA_KEY_MAX], ks[16];
        snprintf(ktag, klen, "si:tag:%s:%s:%s", r->partner.pid, code, ltag);
        snprintf(kemail, klen, "si:email:%s:%s:%s", r->partner.pid, code, lemail);
        snprintf(kuser, sizeof kuser, "si:{%u}:user:%s", k, uid);
        snprintf(kshard, sizeof kshard, "si:{%u}:users", k);
        snprintf(kusers, sizeof kusers, "si:conn:%s:%s:users", r->partner.pid, code);
        snprintf(ks, sizeof ks, "%u", k);
        const char *argv[] = {kuser,
                              kshard,
                              "si:changes",
                              kusers,
                              ktag,
                              kemail,
                              uid,
                              ks,
                              is_oauth2(prov) ? "oauth2" : "plain",
                              old_ltag,
                              old_lemail,
                              in->has_tag ? "1" : "0",
                              in->has_tag ? in->tag : "",
                              in->has_email ? "1" : "0",
                              in->has_email ? in->email : "",
                              in->has_username ? "1" : "0",
                              in->has_username ? in->username : "",
                              in->has_secret ? "1" : "0",
                              sealed ? sealed : "",
                              in->archived < 0 ? "-1"
                              : in->archived   ? "1"
                                               : "0",
                              in->enable_tracer < 0 ? "-1"
                              : in->enable_tracer   ? "1"
                                                    : "0"};
        redisReply *rep = store_script(r, "user_update", 6, 21, argv, NULL);
        xfree(old_ltag);
        xfree(old_lemail);
        xfree(ltag);
        xfree(lemail);
        xfree(ktag);
        xfree(kemail);
        if (rep == NULL) {
            rc = reply_unavailable(r);
            break;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
            freeReplyObject(rep);
            rc = reply_error(r, 500, "internal", NULL, "unexpected script reply");
            break;
        }
        const char *res = rep->element[0]->str;
        if (strcmp(res, "ok") == 0 && rep->elements >= 4) {
            char uidc[SCHEMA_UID_LEN + 1];
            snprintf(uidc, sizeof uidc, "%s", uid);
            enqueue_transition(r, code, uidc, rep->element[1]->str, rep->element[2]->str,
                               rep->element[3]->str);
            freeReplyObject(rep);
            break;
        }
        if (strcmp(res, "conflict") == 0) {
            rc = conflict(r, rep->element[1]->str);
            freeReplyObject(rep);
            break;
        }
        int missing = strcmp(res, "missing") == 0;
        freeReplyObject(rep);
        if (missing) {
            rc = reply_error(r, 404, "not_found", NULL, "User not found.");
            break;
        }
        char uidc[SCHEMA_UID_LEN + 1];
        snprintf(uidc, sizeof uidc, "%s", uid);
        rec_free(u);
        int rr = read_user(r, code, uidc, u);
        if (rr < 0) {
            rc = rr == -SIMAP_ECONN ? reply_unavailable(r)
                                    : reply_error(r, 404, "not_found", NULL, "User not found.");
            break;
        }
    }
    if (sealed != NULL) {
        crypto_wipe(sealed, strlen(sealed));
        xfree(sealed);
    }
    return rc;
}

static int user_update(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn, u;
    memset(&u, 0, sizeof u);
    int rc = load_conn(r, code, &prov, &conn);
    if (rc != 0 || (rc = load_user(r, code, r->arg[1], &u)) != 0)
        goto out;
    struct user_input in;
    if ((rc = read_user_input(r, &prov, &in)) != 0)
        goto out;
    if (in.has_tag && *in.tag == '\0') {
        rc = reply_invalid(r, "tag", "can't be blank");
        goto out;
    }
    int only_archived =
        !in.has_tag && !in.has_email && !in.has_username && !in.has_secret && in.enable_tracer < 0;
    if (only_archived && in.archived == 1) {
        if (archive(r, &u) < 0) {
            rc = reply_unavailable(r);
            goto out;
        }
    } else if (only_archived && in.archived == 0) {
        if ((rc = restore(r, code, &u)) != 0)
            goto out;
    } else if (!only_archived || in.archived >= 0) {
        if ((rc = update(r, code, &prov, &u, &in)) != 0)
            goto out;
    }
    char uid[SCHEMA_UID_LEN + 1];
    snprintf(uid, sizeof uid, "%s", rec_get(&u, "uid"));
    rc = send_user_by_uid(r, 200, code, uid);
out:
    rec_free(&prov);
    rec_free(&conn);
    rec_free(&u);
    return rc;
}

static int archive_and_reply(struct req *r, struct rec *u)
{
    return archive(r, u) < 0 ? reply_unavailable(r) : reply_no_content(r);
}

static int user_delete(struct req *r)
{
    return with_user(r, archive_and_reply);
}

/* GET users: a page of the connection's users in tag order. The cursor is
 * the base64url of the last zset member sent. */
static int user_list(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    rec_free(&prov);
    rec_free(&conn);
    if (rc != 0)
        return rc;
    int64_t limit = LIST_LIMIT_DEFAULT;
    const struct param *pl = params_get(&r->params, "limit");
    if (pl != NULL && param_int(pl, 1, LIST_LIMIT_MAX, &limit) < 0)
        return reply_invalid(r, "limit", "must be an integer from 1 to 1000");
    char *start = xstrdup("-");
    const char *cursor;
    if (param_text(params_get(&r->params, "cursor"), &cursor) == 0 && *cursor != '\0') {
        unsigned char *raw = NULL;
        size_t rawlen = 0;
        int bad = strlen(cursor) > 1024 ||
                  crypto_b64url_decode(cursor, strlen(cursor), &raw, &rawlen) < 0 ||
                  memchr(raw, '\x1f', rawlen) == NULL || memchr(raw, '\0', rawlen) != NULL;
        if (bad) {
            xfree(raw);
            xfree(start);
            return reply_invalid(r, "cursor", "is not a cursor this API returned");
        }
        xfree(start);
        start = xmalloc(rawlen + 2);
        start[0] = '(';
        memcpy(start + 1, raw, rawlen + 1);
        xfree(raw);
    }
    char zkey[SCHEMA_KEY_MAX];
    snprintf(zkey, sizeof zkey, "si:conn:%s:%s:users", r->partner.pid, code);
    redisReply *page =
        store_cmd(r, "ZRANGEBYLEX %s %s + LIMIT 0 %lld", zkey, start, (long long)limit + 1);
    xfree(start);
    if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(page);
        return reply_unavailable(r);
    }
    size_t n = page->elements > (size_t)limit ? (size_t)limit : page->elements;
    int more = page->elements > (size_t)limit;
    redisReply *users = NULL;
    if (n > 0) {
        static const char *const fields[] = {"tag",          "email", "archived",
                                             "connected_at", "state", "pid"};
        size_t nf = sizeof fields / sizeof fields[0];
        const char **argv = xcalloc(n + nf, sizeof *argv);
        char **keys = xcalloc(n, sizeof *keys);
        for (size_t i = 0; i < n; i++) {
            const char *sep = strchr(page->element[i]->str, '\x1f');
            const char *uid = sep ? sep + 1 : "";
            keys[i] = xmalloc(SCHEMA_KEY_MAX);
            snprintf(keys[i], SCHEMA_KEY_MAX, "si:{%u}:user:%s", api_shard(r->api, uid), uid);
            argv[i] = keys[i];
        }
        for (size_t i = 0; i < nf; i++)
            argv[n + i] = fields[i];
        users = store_script(r, "user_mget", (int)n, (int)(n + nf), argv, NULL);
        for (size_t i = 0; i < n; i++)
            xfree(keys[i]);
        xfree(keys);
        xfree(argv);
        if (users == NULL || users->type != REDIS_REPLY_ARRAY || users->elements != n) {
            freeReplyObject(users);
            freeReplyObject(page);
            return reply_unavailable(r);
        }
    }
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    for (size_t i = 0; i < n; i++) {
        redisReply *row = users->element[i];
        if (row->type != REDIS_REPLY_ARRAY || row->elements != 6 || row->element[5]->str == NULL ||
            strcmp(row->element[5]->str, r->partner.pid) != 0)
            continue;
        char f0[] = "tag", f1[] = "email", f2[] = "archived", f3[] = "connected_at", f4[] = "state",
             empty[] = "";
        char *f[] = {f0, f1, f2, f3, f4};
        char *v[5];
        for (size_t j = 0; j < 5; j++)
            v[j] = row->element[j]->str ? row->element[j]->str : empty;
        struct rec u = {5, f, v};
        view_user_brief(g, &u);
    }
    json_gen_array_close(g);
    char headers[2048] = "";
    if (more && n > 0) {
        const char *last = page->element[n - 1]->str;
        char *next = crypto_b64url_encode(last, page->element[n - 1]->len);
        snprintf(headers, sizeof headers, "X-Next-Cursor: %s\r\n", next);
        xfree(next);
    }
    freeReplyObject(users);
    freeReplyObject(page);
    return reply_gen(r, 200, g, headers[0] ? headers : NULL);
}

/* ---- Connections ---- */

static int send_connection(struct req *r, int status, const char *code)
{
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    if (rc == 0) {
        struct json_gen *g = reply_gen_new();
        view_connection(g, code, &conn, is_oauth2(&prov) ? "oauth2" : "plain");
        rc = reply_gen(r, status, g, NULL);
    }
    rec_free(&prov);
    rec_free(&conn);
    return rc;
}

/* The connection fields of the request as field/value pairs (client secret
 * encrypted). Returns 0 with *n pairs in pairs[4], or the status after
 * replying. Plain providers take no fields (the original ignored them). */
static int connection_input(struct req *r, const char *code, const struct rec *prov,
                            const char *pairs[4], char **sealed, int *n)
{
    *n = 0;
    *sealed = NULL;
    if (!is_oauth2(prov))
        return 0;
    const char *id, *secret;
    int has_id, has_secret, rc;
    if ((rc = opt_text(r, "oauth2_client_id", API_TEXT_MAX, 1, &id, &has_id)) != 0)
        return rc;
    if ((rc = opt_text(r, "oauth2_client_secret", API_SECRET_MAX, 0, &secret, &has_secret)) != 0)
        return rc;
    if (has_id) {
        pairs[(*n)++] = "oauth2_client_id";
        pairs[(*n)++] = id;
    }
    if (has_secret) {
        char aad[SCHEMA_KEY_MAX];
        snprintf(aad, sizeof aad, "si:conn:%s:%s:oauth2_client_secret", r->partner.pid, code);
        if (*secret == '\0')
            *sealed = xstrdup("");
        else if (crypto_encrypt(r->api->keys, secret, strlen(secret), aad, sealed) < 0)
            return reply_error(r, 500, "internal", NULL, "encryption failed");
        pairs[(*n)++] = "oauth2_client_secret";
        pairs[(*n)++] = *sealed;
    }
    return 0;
}

static int connection_create(struct req *r)
{
    const char *code0;
    const struct param *pc = params_get(&r->params, "imap_provider_code");
    if (pc == NULL || param_text(pc, &code0) < 0 || *code0 == '\0')
        return reply_invalid(r, "imap_provider_code", "can't be blank");
    struct rec prov;
    int rc = load_provider(r, code0, &prov);
    if (rc != 0) {
        rec_free(&prov);
        return rc;
    }
    char code[API_CODE_MAX + 1];
    snprintf(code, sizeof code, "%s", code0);
    const char *pairs[4];
    char *sealed;
    int n;
    if ((rc = connection_input(r, code, &prov, pairs, &sealed, &n)) != 0) {
        rec_free(&prov);
        return rc;
    }
    char kprov[SCHEMA_KEY_MAX], kconn[SCHEMA_KEY_MAX], kconns[SCHEMA_KEY_MAX],
        kpartner[SCHEMA_KEY_MAX];
    snprintf(kprov, sizeof kprov, "si:provider:%s", code);
    snprintf(kconn, sizeof kconn, "si:conn:%s:%s", r->partner.pid, code);
    snprintf(kconns, sizeof kconns, "si:partner:%s:conns", r->partner.pid);
    snprintf(kpartner, sizeof kpartner, "si:partner:%s", r->partner.pid);
    const char *argv[9] = {kprov, kconn, kconns, kpartner, code};
    for (int i = 0; i < n; i++)
        argv[5 + i] = pairs[i];
    redisReply *rep = store_script(r, "connection_create", 4, 5 + n, argv, NULL);
    xfree(sealed);
    rec_free(&prov);
    if (rep == NULL)
        return reply_unavailable(r);
    char res[32];
    snprintf(res, sizeof res, "%s", rep->str ? rep->str : "");
    freeReplyObject(rep);
    if (strcmp(res, "ok") == 0)
        return send_connection(r, 201, code);
    if (strcmp(res, "exists") == 0)
        return reply_error(r, 409, "conflict", "imap_provider_code",
                           "Validation failed: Imap provider has already been taken");
    if (strcmp(res, "no_provider") == 0)
        return reply_error(r, 404, "not_found", "imap_provider_code",
                           "Imap Provider not found for '%s'.", code);
    return reply_error(r, 401, "unauthorized", NULL, "invalid API key");
}

static int connection_list(struct req *r)
{
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:partner:%s:conns", r->partner.pid);
    redisReply *codes = store_cmd(r, "SORT %s ALPHA", key);
    if (codes == NULL || codes->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(codes);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    int failed = 0;
    for (size_t i = 0; i < codes->elements && !failed; i++) {
        const char *code = codes->element[i]->str;
        struct rec prov, conn;
        char k1[SCHEMA_KEY_MAX], k2[SCHEMA_KEY_MAX];
        snprintf(k1, sizeof k1, "si:provider:%s", code);
        snprintf(k2, sizeof k2, "si:conn:%s:%s", r->partner.pid, code);
        int a = store_hgetall(r, k1, &prov), b = store_hgetall(r, k2, &conn);
        failed = a == -SIMAP_ECONN || b == -SIMAP_ECONN;
        if (!failed && b == 0 && strcmp(rec_get(&conn, "deleting"), "1") != 0)
            view_connection(g, code, &conn, is_oauth2(&prov) ? "oauth2" : "plain");
        rec_free(&prov);
        rec_free(&conn);
    }
    json_gen_array_close(g);
    freeReplyObject(codes);
    if (failed) {
        json_gen_free(g);
        return reply_unavailable(r);
    }
    return reply_gen(r, 200, g, NULL);
}

static int connection_show(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    return send_connection(r, 200, code);
}

static int connection_update(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    if (rc != 0)
        goto out;
    const char *pairs[4];
    char *sealed;
    int n;
    if ((rc = connection_input(r, code, &prov, pairs, &sealed, &n)) != 0)
        goto out;
    if (is_oauth2(&prov)) {
        /* The original validated the required connection fields on update. */
        const char *id = rec_get(&conn, "oauth2_client_id");
        const char *secret = rec_get(&conn, "oauth2_client_secret");
        for (int i = 0; i < n; i += 2) {
            if (strcmp(pairs[i], "oauth2_client_id") == 0)
                id = pairs[i + 1];
            else
                secret = pairs[i + 1];
        }
        if (*id == '\0' || *secret == '\0') {
            xfree(sealed);
            rc = reply_invalid(r, *id == '\0' ? "oauth2_client_id" : "oauth2_client_secret",
                               "can't be blank");
            goto out;
        }
    }
    char kconn[SCHEMA_KEY_MAX];
    snprintf(kconn, sizeof kconn, "si:conn:%s:%s", r->partner.pid, code);
    const char *argv[5] = {kconn};
    for (int i = 0; i < n; i++)
        argv[1 + i] = pairs[i];
    redisReply *rep = store_script(r, "connection_update", 1, 1 + n, argv, NULL);
    xfree(sealed);
    if (rep == NULL) {
        rc = reply_unavailable(r);
        goto out;
    }
    int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
    freeReplyObject(rep);
    rc = ok ? send_connection(r, 200, code)
            : reply_error(r, 404, "not_found", NULL, "Connection not found.");
out:
    rec_free(&prov);
    rec_free(&conn);
    return rc;
}

/* Deletes the hashes of events connection_delete / partner_delete removed
 * from the queues (ids from index first of rep's elements). */
static void delete_event_hashes(struct req *r, redisReply *rep, size_t first)
{
    for (size_t i = first; i < rep->elements; i++) {
        const char *id = rep->element[i]->str;
        char uid[SCHEMA_UID_LEN + 1];
        snprintf(uid, sizeof uid, "%s", id);
        char key[SCHEMA_KEY_MAX];
        snprintf(key, sizeof key, "si:{%u}:evt:%s", api_shard(r->api, uid), id);
        freeReplyObject(store_cmd(r, "UNLINK %s", key));
    }
}

int routes_delete_connection(struct req *r, const char *pid, const char *code)
{
    char kconn[SCHEMA_KEY_MAX], kusers[SCHEMA_KEY_MAX], kconns[SCHEMA_KEY_MAX],
        kprov[SCHEMA_KEY_MAX];
    snprintf(kconn, sizeof kconn, "si:conn:%s:%s", pid, code);
    snprintf(kusers, sizeof kusers, "si:conn:%s:%s:users", pid, code);
    snprintf(kconns, sizeof kconns, "si:partner:%s:conns", pid);
    snprintf(kprov, sizeof kprov, "si:provider:%s", code);
    for (int round = 0; round < 1000000; round++) {
        redisReply *page = store_cmd(r, "ZRANGE %s 0 %d", kusers, DELETE_BATCH - 1);
        if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(page);
            return -SIMAP_ECONN;
        }
        size_t n = page->elements;
        uint32_t *shards = xcalloc(n + 1, sizeof *shards);
        size_t m = 0;
        size_t nkeys = 5 + 3 * n + 6 * n;
        const char **argv = xcalloc(nkeys + 4 + 2 * n + n + 1, sizeof *argv);
        char **owned = xcalloc(nkeys + n + 1, sizeof *owned);
        size_t no = 0, a = 0;
        argv[a++] = kconn;
        argv[a++] = kusers;
        argv[a++] = kconns;
        argv[a++] = kprov;
        argv[a++] = "si:changes";
        for (size_t i = 0; i < n; i++) {
            const char *sep = strchr(page->element[i]->str, '\x1f');
            const char *uid = sep ? sep + 1 : "";
            uint32_t k = api_shard(r->api, uid);
            static const char *const kind[] = {"user", "cur", "lease"};
            for (int j = 0; j < 3; j++) {
                char *key = owned[no++] = xmalloc(SCHEMA_KEY_MAX);
                snprintf(key, SCHEMA_KEY_MAX, "si:{%u}:%s:%s", k, kind[j], uid);
                argv[a++] = key;
            }
            size_t s;
            for (s = 0; s < m && shards[s] != k; s++)
                ;
            if (s == m)
                shards[m++] = k;
        }
        for (size_t s = 0; s < m; s++) {
            char *kk[6];
            for (int j = 0; j < 6; j++)
                kk[j] = owned[no++] = xmalloc(SCHEMA_KEY_MAX);
            snprintf(kk[0], SCHEMA_KEY_MAX, "si:{%u}:users", shards[s]);
            snprintf(kk[1], SCHEMA_KEY_MAX, "si:{%u}:ready:%s", shards[s], pid);
            snprintf(kk[2], SCHEMA_KEY_MAX, "si:{%u}:ready_partners", shards[s]);
            snprintf(kk[3], SCHEMA_KEY_MAX, "si:{%u}:retry", shards[s]);
            snprintf(kk[4], SCHEMA_KEY_MAX, "si:{%u}:inflight", shards[s]);
            snprintf(kk[5], SCHEMA_KEY_MAX, "si:{%u}:dead", shards[s]);
            for (int j = 0; j < 6; j++)
                argv[a++] = kk[j];
        }
        int key_count = (int)a;
        char sn[24], sm[24];
        snprintf(sn, sizeof sn, "%zu", n);
        snprintf(sm, sizeof sm, "%zu", m);
        argv[a++] = pid;
        argv[a++] = code;
        argv[a++] = sn;
        argv[a++] = sm;
        for (size_t i = 0; i < n; i++) {
            const char *sep = strchr(page->element[i]->str, '\x1f');
            argv[a++] = sep ? sep + 1 : "";
            argv[a++] = page->element[i]->str;
        }
        for (size_t s = 0; s < m; s++) {
            char *t = owned[no++] = xmalloc(16);
            snprintf(t, 16, "%u", shards[s]);
            argv[a++] = t;
        }
        redisReply *rep = store_script(r, "connection_delete", key_count, (int)a, argv, NULL);
        for (size_t i = 0; i < no; i++)
            xfree(owned[i]);
        xfree(owned);
        xfree(argv);
        xfree(shards);
        freeReplyObject(page);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
            freeReplyObject(rep);
            return -SIMAP_ECONN;
        }
        const char *status = rep->element[0]->str;
        int done = strcmp(status, "done") == 0 || strcmp(status, "missing") == 0;
        delete_event_hashes(r, rep, 1);
        freeReplyObject(rep);
        if (done)
            return 0;
    }
    return -SIMAP_ECONN;
}

static int connection_delete(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    rec_free(&prov);
    rec_free(&conn);
    if (rc != 0)
        return rc;
    if (routes_delete_connection(r, r->partner.pid, code) < 0)
        return reply_unavailable(r);
    return reply_no_content(r);
}

static int openapi(struct req *r)
{
    if (r->api->openapi == NULL)
        return reply_error(r, 404, "not_found", NULL,
                           "openapi.json was not found in SUPERIMAP_WEB_ROOT");
    return reply_json(r, 200, r->api->openapi, r->api->openapi_len, NULL);
}

const struct route routes_partner[] = {
    {"GET", "/api/v1/openapi.json", AUTH_NONE, openapi},
    {"GET", "/api/v1/connections", AUTH_PARTNER, connection_list},
    {"POST", "/api/v1/connections", AUTH_PARTNER, connection_create},
    {"GET", "/api/v1/connections/:code", AUTH_PARTNER, connection_show},
    {"PUT", "/api/v1/connections/:code", AUTH_PARTNER, connection_update},
    {"PATCH", "/api/v1/connections/:code", AUTH_PARTNER, connection_update},
    {"DELETE", "/api/v1/connections/:code", AUTH_PARTNER, connection_delete},
    {"GET", "/api/v1/connections/:code/users", AUTH_PARTNER, user_list},
    {"POST", "/api/v1/connections/:code/users", AUTH_PARTNER, user_create},
    {"GET", "/api/v1/connections/:code/users/:tag", AUTH_PARTNER, user_show},
    {"PUT", "/api/v1/connections/:code/users/:tag", AUTH_PARTNER, user_update},
    {"PATCH", "/api/v1/connections/:code/users/:tag", AUTH_PARTNER, user_update},
    {"DELETE", "/api/v1/connections/:code/users/:tag", AUTH_PARTNER, user_delete},
    {NULL, NULL, AUTH_NONE, NULL},
};
