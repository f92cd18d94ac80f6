/*
 * cmd/watcher/token: one user's token refresh, from Redis to Redis (see
 * token.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/token.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/watcher/oauth.h"
#include "cmd/watcher/provider.h"
#include "cmd/watcher/watcher.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

/* An access token whose lifetime the provider did not give: Google's and
 * Microsoft's hour. */
#define DEFAULT_LIFETIME_S 3600

struct token_job {
    struct watcher *w;
    struct provider *prov;
    char *uid, *pid, *code, *tag;
    uint32_t k;
    token_cb *cb; /* NULL once detached */
    void *owner;
    char *client_id, *client_secret; /* decrypted */
    char *refresh;                   /* decrypted */
    char *sealed;                    /* the user's secret as stored: the compare-and-set's value */
    struct oauth_req *req;
};

/* One piece of token work is done: a drain waiting for the last may go on. */
static void work_done(struct watcher *w)
{
    if (--w->token_work > 0 || w->token_idle == NULL)
        return;
    void (*idle)(void *) = w->token_idle;
    w->token_idle = NULL;
    idle(w->token_idle_data);
}

static void job_free(struct token_job *j)
{
    struct watcher *w = j->w;
    crypto_wipe_str(&j->client_id);
    crypto_wipe_str(&j->client_secret);
    crypto_wipe_str(&j->refresh);
    xfree(j->sealed);
    xfree(j->uid);
    xfree(j->pid);
    xfree(j->code);
    xfree(j->tag);
    xfree(j);
    work_done(w);
}

/* Ends the job: the owner hears of it (unless detached), then it is freed. */
static void finish(struct token_job *j, const struct token_outcome *out)
{
    if (j->cb != NULL)
        j->cb(j->owner, out);
    job_free(j);
}

static void fail(struct token_job *j, enum oauth2_outcome o, const char *why)
{
    if (o != OAUTH2_RETRY || strstr(why, "shutting down") == NULL)
        log_warn("token refresh not possible acct=%s code=%s result=%s why=\"%s\"", j->uid, j->code,
                 oauth2_outcome_name(o), why);
    struct token_outcome out = {.outcome = o, .why = why, .retry_after_ms = -1};
    finish(j, &out);
}

void token_detach(struct token_job *j)
{
    if (j != NULL)
        j->cb = NULL;
}

/* ---- Writing the outcome ---- */

/* A script's answer, for its log line. */
struct written {
    struct watcher *w;
    int reauth; /* user_reauth, else oauth2_tokens */
    char uid[40];
};

static void on_written(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct written *wr = privdata;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        log_error("cannot %s acct=%s err=\"%s\"",
                  wr->reauth ? "mark the user reauth_required" : "store refreshed tokens", wr->uid,
                  err < 0               ? err_str(err)
                  : reply && reply->str ? reply->str
                                        : "unexpected reply");
    else if (wr->reauth && reply->integer == 1)
        log_warn("OAuth2 grant refused: user needs to connect again acct=%s state=reauth_required",
                 wr->uid);
    else if (!wr->reauth && reply->integer == 0)
        log_info("refreshed tokens not stored: the user's secret changed meanwhile acct=%s",
                 wr->uid);
    struct watcher *w = wr->w;
    xfree(wr);
    work_done(w);
}

/* Runs the writing script name; its answer is only logged. */
static void write_script(struct token_job *j, const char *name, int nkeys, int argc,
                         const char **argv)
{
    struct written *wr = xcalloc(1, sizeof *wr);
    wr->w = j->w;
    wr->reauth = strcmp(name, "user_reauth") == 0;
    snprintf(wr->uid, sizeof wr->uid, "%s", j->uid);
    if (rconn_script(j->w->sessions, on_written, wr, name, nkeys, argc, argv, NULL) < 0) {
        log_error("cannot run %s acct=%s err=\"Redis refused the call\"", name, j->uid);
        xfree(wr);
        return;
    }
    j->w->token_work++;
}

/* Seals plain under aad into a new string, or NULL (logged). */
static char *seal(struct token_job *j, const char *plain, const char *aad)
{
    char *out = NULL;
    if (crypto_encrypt(j->w->keys, plain, strlen(plain), aad, &out) < 0) {
        log_error("cannot encrypt a token acct=%s", j->uid);
        return NULL;
    }
    return out;
}

static void store_tokens(struct token_job *j, const struct oauth_result *res, int64_t expires_at)
{
    char user[SCHEMA_KEY_MAX], aad[SCHEMA_KEY_MAX], exp[24];
    schema_key_user(user, j->k, j->uid);
    schema_aad_user_access_token(aad, j->uid);
    char *access = seal(j, res->access_token, aad);
    char *rotated = NULL;
    if (res->refresh_token != NULL && strcmp(res->refresh_token, j->refresh) != 0) {
        schema_aad_user_secret(aad, j->uid);
        rotated = seal(j, res->refresh_token, aad);
    }
    snprintf(exp, sizeof exp, "%lld", (long long)expires_at);
    if (access != NULL && (res->refresh_token == NULL || rotated != NULL ||
                           strcmp(res->refresh_token, j->refresh) == 0)) {
        const char *argv[] = {user, j->sealed, rotated ? rotated : "", access, exp};
        write_script(j, "oauth2_tokens", 1, 5, argv);
    }
    xfree(access);
    xfree(rotated);
}

/* The user_reauth_required event's payload: user_disconnected's keys plus
 * reason (core/schema.h "Event fields"). */
static char *reauth_payload(const struct token_job *j, const char *eid, const char *sha1,
                            const char *reason)
{
    struct json_gen *g = json_gen_new(64 * 1024);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", j->tag);
    json_gen_key_str(g, "imap_provider_code", j->code);
    json_gen_key_str(g, "event", "user_reauth_required");
    json_gen_key_str(g, "id", eid);
    json_gen_key_str(g, "reason", reason);
    json_gen_object_close(g);
    char *out = NULL;
    int rc = json_gen_finish(g, &out, NULL);
    json_gen_free(g);
    return rc < 0 ? NULL : out;
}

static void mark_reauth(struct token_job *j, const char *reason)
{
    char eid[128], sha1[CRYPTO_SHA1_HEX_LEN + 1], aad[SCHEMA_KEY_MAX];
    snprintf(eid, sizeof eid, "%s.reauth.%lld", j->uid, (long long)time_now_ms());
    if (crypto_sha1_hex(j->tag, strlen(j->tag), sha1) < 0)
        return;
    char *payload = reauth_payload(j, eid, sha1, reason);
    schema_aad_event(aad, eid);
    char *sealed = payload != NULL ? seal(j, payload, aad) : NULL;
    xfree(payload);
    if (sealed == NULL)
        return;
    char user[SCHEMA_KEY_MAX], evt[SCHEMA_KEY_MAX], ready[SCHEMA_KEY_MAX];
    char users[SCHEMA_SHARD_KEY_MAX], rp[SCHEMA_SHARD_KEY_MAX], reauth[SCHEMA_SHARD_KEY_MAX];
    schema_key_user(user, j->k, j->uid);
    schema_key_shard_users(users, j->k);
    schema_key_reauth(reauth, j->k);
    schema_key_event(evt, j->k, eid);
    schema_key_ready(ready, j->k, j->pid);
    schema_key_ready_partners(rp, j->k);
    const char *argv[] = {user,   users, evt,    ready,  rp,   reauth, j->sealed,
                          reason, eid,   j->pid, j->uid, sha1, sealed};
    write_script(j, "user_reauth", 6, 13, argv);
    metric_inc(j->w->m.reauth);
    xfree(sealed);
}

/* ---- The refresh ---- */

static void on_oauth(const struct oauth_result *res, void *data)
{
    struct token_job *j = data;
    j->req = NULL;
    struct token_outcome out = {
        .outcome = res->outcome, .why = res->why, .retry_after_ms = res->retry_after_ms};
    if (res->outcome == OAUTH2_OK) {
        out.expires_in = res->expires_in > 0 ? res->expires_in : DEFAULT_LIFETIME_S;
        out.access_token = res->access_token;
        store_tokens(j, res, time_now_ms() + out.expires_in * 1000);
    } else if (res->outcome == OAUTH2_REVOKED) {
        mark_reauth(j, res->why);
    }
    finish(j, &out);
}

static const char *str_of(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING && r->len > 0 ? r->str : NULL;
}

/* Decrypts envelope under aad into *out; 0 or -1. */
static int open_sealed(struct token_job *j, const char *envelope, const char *aad, char **out)
{
    size_t n = 0;
    *out = NULL;
    if (crypto_decrypt(j->w->keys, envelope, aad, out, &n) < 0 || memchr(*out, 0, n) != NULL) {
        if (*out != NULL) {
            crypto_wipe(*out, n);
            xfree(*out);
            *out = NULL;
        }
        return -1;
    }
    return 0;
}

static void on_secret(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct token_job *j = privdata;
    char why[200];
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 1) {
        snprintf(why, sizeof why, "cannot read the user's refresh token: %s",
                 err < 0 ? err_str(err) : "unexpected reply");
        fail(j, OAUTH2_RETRY, why);
        return;
    }
    const char *sealed = str_of(reply->element[0]);
    char aad[SCHEMA_KEY_MAX];
    schema_aad_user_secret(aad, j->uid);
    if (sealed == NULL || open_sealed(j, sealed, aad, &j->refresh) < 0 || j->refresh[0] == '\0') {
        fail(j, OAUTH2_CONFIG,
             sealed == NULL ? "the user has no refresh token" : "cannot decrypt the refresh token");
        return;
    }
    j->sealed = xstrdup(sealed);
    struct oauth_params p = {
        .prov = j->prov,
        .client_id = j->client_id,
        .client_secret = j->client_secret,
        .refresh_token = j->refresh,
        .uid = j->uid,
    };
    int rc2 = oauth_refresh(j->w->oauth, &p, on_oauth, j, &j->req);
    if (rc2 < 0) {
        snprintf(why, sizeof why, "cannot start the refresh: %s",
                 rc2 == -SIMAP_EINVAL ? "the provider has no oauth2_token_url" : err_str(rc2));
        fail(j, rc2 == -SIMAP_EINVAL ? OAUTH2_CONFIG : OAUTH2_RETRY, why);
    }
}

static void on_client(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    struct token_job *j = privdata;
    char why[200];
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        snprintf(why, sizeof why, "cannot read the connection's OAuth2 client: %s",
                 err < 0 ? err_str(err) : "unexpected reply");
        fail(j, OAUTH2_RETRY, why);
        return;
    }
    const char *id = str_of(reply->element[0]), *sealed = str_of(reply->element[1]);
    char aad[SCHEMA_KEY_MAX];
    schema_aad_conn_secret(aad, j->pid, j->code);
    if (id == NULL || sealed == NULL || open_sealed(j, sealed, aad, &j->client_secret) < 0) {
        fail(j, OAUTH2_CONFIG,
             id == NULL || sealed == NULL
                 ? "the connection has no oauth2_client_id or oauth2_client_secret"
                 : "cannot decrypt the connection's oauth2_client_secret");
        return;
    }
    j->client_id = xstrdup(id);
    char user[SCHEMA_KEY_MAX];
    schema_key_user(user, j->k, j->uid);
    int rc2 = rconn_command(rc, on_secret, j, "HMGET %s secret", user);
    if (rc2 < 0) {
        snprintf(why, sizeof why, "cannot read the user's refresh token: %s", err_str(rc2));
        fail(j, OAUTH2_RETRY, why);
    }
}

struct token_job *token_refresh(struct watcher *w, struct provider *prov,
                                const struct token_user *u, token_cb *cb, void *owner)
{
    char conn[SCHEMA_KEY_MAX];
    if (schema_key_conn(conn, u->pid, u->code) < 0)
        return NULL;
    struct token_job *j = xcalloc(1, sizeof *j);
    j->w = w;
    j->prov = prov;
    j->uid = xstrdup(u->uid);
    j->pid = xstrdup(u->pid);
    j->code = xstrdup(u->code);
    j->tag = xstrdup(u->tag ? u->tag : "");
    j->k = u->k;
    j->cb = cb;
    j->owner = owner;
    w->token_work++;
    if (rconn_command(w->sessions, on_client, j, "HMGET %s oauth2_client_id oauth2_client_secret",
                      conn) < 0) {
        job_free(j);
        return NULL;
    }
    return j;
}
