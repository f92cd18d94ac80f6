/*
 * cmd/api/routes_admin: the operator's API under /admin/api/, authenticated
 * by Authorization: Bearer $SUPERIMAP_ADMIN_TOKEN: IMAP providers (the
 * original seeded them), partners with API key and webhook secret issue and
 * rotation, the fleet, queue depths and dead letters.
 *
 * Unlike the partner API, which ignores unknown parameters as Rails did, the
 * admin API refuses them (400 naming the parameter): a typo in an operator's
 * request should not be silently dropped.
 *
 * A new partner's API key and webhook secret are in the 201 answer and in the
 * rotation answers only; no other answer and no log line contains them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"

#define MAX_GRACE_SEC      (30 * 86400)
#define DEAD_LIMIT_DEFAULT 100
#define DEAD_LIMIT_MAX     1000

/* ---- Parameter checks ---- */

/* Replies 400 for the first parameter not in allowed (NULL-terminated);
 * api_key is ignored (a partner-style client may send it). */
static int only_known(struct req *r, const char *const *allowed)
{
    for (size_t i = 0; i < r->params.n; i++) {
        const char *name = r->params.v[i].name;
        int ok = 0;
        for (const char *const *a = allowed; *a != NULL && !ok; a++)
            ok = strcmp(*a, name) == 0;
        if (!ok) {
            char shown[64];
            snprintf(shown, sizeof shown, "%s",
                     params_is_printable(name, strlen(name)) ? name : "?");
            return reply_invalid(r, shown, "unknown parameter");
        }
    }
    return 0;
}

static int is_http_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* A text parameter: 0 with *out (NULL when absent), or 400 after replying. */
static int get_text(struct req *r, const char *name, size_t max, const char **out)
{
    *out = NULL;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    if (param_text(p, out) < 0)
        return reply_invalid(r, name, "must be a string");
    if (strlen(*out) > max)
        return reply_invalid(r, name, "is too long");
    if (!params_is_printable(*out, strlen(*out)))
        return reply_invalid(r, name, "must not contain control characters");
    return 0;
}

static int get_url(struct req *r, const char *name, int relative_ok, const char **out)
{
    int rc = get_text(r, name, API_URL_MAX, out);
    if (rc != 0 || *out == NULL || **out == '\0')
        return rc;
    if (!is_http_url(*out) && !(relative_ok && **out == '/'))
        return reply_invalid(r, name,
                             relative_ok ? "must be an http(s) URL or a path"
                                         : "must be an http:// or https:// URL");
    return 0;
}

static int get_int(struct req *r, const char *name, int64_t min, int64_t max, int64_t *out,
                   int *has)
{
    *has = 0;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    if (param_int(p, min, max, out) < 0) {
        char why[96];
        snprintf(why, sizeof why, "must be an integer from %lld to %lld", (long long)min,
                 (long long)max);
        return reply_invalid(r, name, why);
    }
    *has = 1;
    return 0;
}

static int one_of(const char *v, const char *a, const char *b, const char *c)
{
    return strcmp(v, a) == 0 || strcmp(v, b) == 0 || (c != NULL && strcmp(v, c) == 0);
}

/* ---- Providers ---- */

static const char *const provider_params[] = {"code",
                                              "imap_host",
                                              "imap_port",
                                              "tls",
                                              "auth",
                                              "idle_renew_s",
                                              "max_connections",
                                              "oauth2_authorize_url",
                                              "oauth2_token_url",
                                              "oauth2_scope",
                                              "api_key",
                                              NULL};

static int valid_host(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '_'))
            return 0;
    }
    return 1;
}

/* Collects a provider's fields from the request into pairs (at most 18
 * strings, ints formatted into nums). creating: required fields and
 * defaults. cur: the stored provider when updating (for the oauth2 check). */
static int provider_input(struct req *r, int creating, const struct rec *cur, const char **pairs,
                          int *n, char nums[3][24])
{
    int rc = only_known(r, provider_params);
    if (rc != 0)
        return rc;
    const char *host, *tls, *auth, *aurl, *turl, *scope;
    int64_t port, renew, maxc;
    int has_port, has_renew, has_max;
    if ((rc = get_text(r, "imap_host", 253, &host)) != 0 ||
        (rc = get_int(r, "imap_port", 1, 65535, &port, &has_port)) != 0 ||
        (rc = get_text(r, "tls", 16, &tls)) != 0 || (rc = get_text(r, "auth", 16, &auth)) != 0 ||
        (rc = get_int(r, "idle_renew_s", 60, 1740, &renew, &has_renew)) != 0 ||
        (rc = get_int(r, "max_connections", 0, 10000000, &maxc, &has_max)) != 0 ||
        (rc = get_url(r, "oauth2_authorize_url", 0, &aurl)) != 0 ||
        (rc = get_url(r, "oauth2_token_url", 0, &turl)) != 0 ||
        (rc = get_text(r, "oauth2_scope", API_TEXT_MAX, &scope)) != 0)
        return rc;
    if (host != NULL && !valid_host(host))
        return reply_invalid(r, "imap_host", "must be a host name or IP address");
    if (creating && host == NULL)
        return reply_invalid(r, "imap_host", "can't be blank");
    if (creating && !has_port)
        return reply_invalid(r, "imap_port", "can't be blank");
    if (tls != NULL && !one_of(tls, "implicit", "starttls", "none"))
        return reply_invalid(r, "tls", "must be implicit, starttls or none");
    if (auth != NULL && !one_of(auth, "plain", "oauth2", NULL))
        return reply_invalid(r, "auth", "must be plain or oauth2");
    const char *final_auth = auth ? auth : (cur ? rec_get(cur, "auth") : "plain");
    if (strcmp(final_auth, "oauth2") == 0) {
        const char *fa = aurl ? aurl : (cur ? rec_get(cur, "oauth2_authorize_url") : "");
        const char *ft = turl ? turl : (cur ? rec_get(cur, "oauth2_token_url") : "");
        if (*fa == '\0')
            return reply_invalid(r, "oauth2_authorize_url", "can't be blank for oauth2");
        if (*ft == '\0')
            return reply_invalid(r, "oauth2_token_url", "can't be blank for oauth2");
    }
    *n = 0;
#define PAIR(k, v)           \
    do {                     \
        pairs[(*n)++] = (k); \
        pairs[(*n)++] = (v); \
    } while (0)
    if (host)
        PAIR("imap_host", host);
    if (has_port) {
        snprintf(nums[0], 24, "%lld", (long long)port);
        PAIR("imap_port", nums[0]);
    }
    if (tls || creating)
        PAIR("tls", tls ? tls : "implicit");
    if (auth || creating)
        PAIR("auth", auth ? auth : "plain");
    if (has_renew || creating) {
        snprintf(nums[1], 24, "%lld", (long long)(has_renew ? renew : 1500));
        PAIR("idle_renew_s", nums[1]);
    }
    if (has_max || creating) {
        snprintf(nums[2], 24, "%lld", (long long)(has_max ? maxc : 0));
        PAIR("max_connections", nums[2]);
    }
    if (aurl)
        PAIR("oauth2_authorize_url", aurl);
    if (turl)
        PAIR("oauth2_token_url", turl);
    if (scope)
        PAIR("oauth2_scope", scope);
#undef PAIR
    return 0;
}

static int send_provider(struct req *r, int status, const char *code)
{
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:provider:%s", code);
    struct rec p;
    int rc = store_hgetall(r, key, &p);
    if (rc == -SIMAP_ECONN)
        rc = reply_unavailable(r);
    else if (rc < 0)
        rc = reply_error(r, 404, "not_found", NULL, "Imap Provider not found for '%s'.", code);
    else {
        struct json_gen *g = reply_gen_new();
        view_provider(g, &p);
        rc = reply_gen(r, status, g, NULL);
    }
    rec_free(&p);
    return rc;
}

static int provider_create(struct req *r)
{
    const char *code;
    int rc = get_text(r, "code", API_CODE_MAX + 1, &code);
    if (rc != 0)
        return rc;
    if (code == NULL || *code == '\0')
        return reply_invalid(r, "code", "can't be blank");
    if (!params_is_token(code, API_CODE_MAX, "_-"))
        return reply_invalid(r, "code", "may use only letters, digits, '_' and '-' (64 at most)");
    const char *pairs[20];
    char nums[3][24];
    int n;
    if ((rc = provider_input(r, 1, NULL, pairs, &n, nums)) != 0)
        return rc;
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:provider:%s", code);
    const char *argv[24] = {key, "si:providers", code};
    for (int i = 0; i < n; i++)
        argv[3 + i] = pairs[i];
    redisReply *rep = store_script(r, "provider_create", 2, 3 + n, argv, NULL);
    if (rep == NULL)
        return reply_unavailable(r);
    int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
    freeReplyObject(rep);
    if (!ok)
        return reply_error(r, 409, "conflict", "code", "a provider '%s' already exists", code);
    return send_provider(r, 201, code);
}

static int provider_list(struct req *r)
{
    redisReply *codes = store_cmd(r, "SORT si:providers ALPHA");
    if (codes == NULL || codes->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(codes);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    for (size_t i = 0; i < codes->elements; i++) {
        char key[SCHEMA_KEY_MAX];
        snprintf(key, sizeof key, "si:provider:%s", codes->element[i]->str);
        struct rec p;
        if (store_hgetall(r, key, &p) == 0)
            view_provider(g, &p);
        rec_free(&p);
    }
    json_gen_array_close(g);
    freeReplyObject(codes);
    return reply_gen(r, 200, g, NULL);
}

static int provider_show(struct req *r)
{
    if (!params_is_token(r->arg[0], API_CODE_MAX, "_-"))
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found.");
    return send_provider(r, 200, r->arg[0]);
}

static int provider_update(struct req *r)
{
    const char *code = r->arg[0];
    if (!params_is_token(code, API_CODE_MAX, "_-"))
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found.");
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:provider:%s", code);
    struct rec cur;
    int rc = store_hgetall(r, key, &cur);
    if (rc < 0) {
        rec_free(&cur);
        return rc == -SIMAP_ECONN ? reply_unavailable(r)
                                  : reply_error(r, 404, "not_found", NULL,
                                                "Imap Provider not found for '%s'.", code);
    }
    const char *given;
    if (get_text(r, "code", API_CODE_MAX + 1, &given) != 0) {
        rec_free(&cur);
        return 400;
    }
    if (given != NULL && strcmp(given, code) != 0) {
        rec_free(&cur);
        return reply_invalid(r, "code", "cannot be changed");
    }
    const char *pairs[20];
    char nums[3][24];
    int n;
    rc = provider_input(r, 0, &cur, pairs, &n, nums);
    rec_free(&cur);
    if (rc != 0)
        return rc;
    const char *argv[24] = {key};
    for (int i = 0; i < n; i++)
        argv[1 + i] = pairs[i];
    redisReply *rep = store_script(r, "provider_update", 1, 1 + n, argv, NULL);
    if (rep == NULL)
        return reply_unavailable(r);
    char res[16];
    snprintf(res, sizeof res, "%s", rep->str ? rep->str : "");
    freeReplyObject(rep);
    if (strcmp(res, "in_use") == 0)
        return reply_error(r, 409, "conflict", "auth",
                           "auth cannot change while connections use the provider");
    if (strcmp(res, "ok") != 0)
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found for '%s'.", code);
    return send_provider(r, 200, code);
}

static int provider_delete(struct req *r)
{
    const char *code = r->arg[0];
    if (!params_is_token(code, API_CODE_MAX, "_-"))
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found.");
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:provider:%s", code);
    const char *argv[] = {key, "si:providers", code};
    redisReply *rep = store_script(r, "provider_delete", 2, 3, argv, NULL);
    if (rep == NULL)
        return reply_unavailable(r);
    char res[16];
    snprintf(res, sizeof res, "%s", rep->str ? rep->str : "");
    freeReplyObject(rep);
    if (strcmp(res, "in_use") == 0)
        return reply_error(r, 409, "conflict", NULL,
                           "connections still use the provider; delete them first");
    if (strcmp(res, "ok") != 0)
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found for '%s'.", code);
    return reply_no_content(r);
}

/* ---- Partners ---- */

static const char *const partner_params[] = {"name",
                                             "new_mail_webhook_url",
                                             "user_connected_webhook_url",
                                             "user_disconnected_webhook_url",
                                             "success_url",
                                             "failure_url",
                                             "retry_schedule",
                                             "webhook_concurrency",
                                             "api_key",
                                             NULL};

/* What the dispatcher takes (cmd/dispatcher/partners.c parse_schedule(),
 * PARTNER_MAX_SCHEDULE): a longer schedule or a longer delay would be stored
 * here and replaced there by the default schedule, with only a log line. */
#define SCHEDULE_MAX_DELAYS 24
#define SCHEDULE_MAX_SEC    (7 * 86400)

static int valid_schedule(const char *s)
{
    if (*s == '\0')
        return 1;
    int count = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > SCHEDULE_MAX_SEC)
            return 0;
        count++;
        s = end;
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return 0;
    }
    return count <= SCHEDULE_MAX_DELAYS;
}

/* The partner's settings from the request as pairs (at most 24 strings). */
static int partner_input(struct req *r, int creating, const char **pairs, int *n, char num[24])
{
    int rc = only_known(r, partner_params);
    if (rc != 0)
        return rc;
    const char *name, *sched;
    static const char *const urls[] = {"new_mail_webhook_url", "user_connected_webhook_url",
                                       "user_disconnected_webhook_url"};
    const char *url[3], *success, *failure;
    int64_t conc;
    int has_conc;
    if ((rc = get_text(r, "name", 200, &name)) != 0)
        return rc;
    for (int i = 0; i < 3; i++)
        if ((rc = get_url(r, urls[i], 0, &url[i])) != 0)
            return rc;
    if ((rc = get_url(r, "success_url", 1, &success)) != 0 ||
        (rc = get_url(r, "failure_url", 1, &failure)) != 0 ||
        (rc = get_text(r, "retry_schedule", 1024, &sched)) != 0 ||
        (rc = get_int(r, "webhook_concurrency", 1, 1000, &conc, &has_conc)) != 0)
        return rc;
    if ((creating || name != NULL) && (name == NULL || *name == '\0'))
        return reply_invalid(r, "name", "can't be blank");
    if (creating && (url[0] == NULL || *url[0] == '\0'))
        return reply_invalid(r, "new_mail_webhook_url", "can't be blank");
    if (sched != NULL && !valid_schedule(sched))
        return reply_invalid(r, "retry_schedule",
                             "must be comma-separated seconds, e.g. 5,30,120: at most 24 "
                             "delays of 1 to 604800 s");
    *n = 0;
    if (name) {
        pairs[(*n)++] = "name";
        pairs[(*n)++] = name;
    }
    static const char *const disabled[] = {"new_mail_webhook_disabled",
                                           "user_connected_webhook_disabled",
                                           "user_disconnected_webhook_disabled"};
    for (int i = 0; i < 3; i++) {
        if (url[i] == NULL)
            continue;
        pairs[(*n)++] = urls[i];
        pairs[(*n)++] = url[i];
        /* Setting a URL again turns it back on after a 410 disabled it. */
        pairs[(*n)++] = disabled[i];
        pairs[(*n)++] = "";
    }
    if (success) {
        pairs[(*n)++] = "success_url";
        pairs[(*n)++] = success;
    }
    if (failure) {
        pairs[(*n)++] = "failure_url";
        pairs[(*n)++] = failure;
    }
    if (sched) {
        pairs[(*n)++] = "retry_schedule";
        pairs[(*n)++] = sched;
    }
    if (has_conc) {
        snprintf(num, 24, "%lld", (long long)conc);
        pairs[(*n)++] = "webhook_concurrency";
        pairs[(*n)++] = num;
    }
    return 0;
}

static int valid_pid(const char *pid)
{
    size_t n = strlen(pid);
    if (n == 0 || n > 18 || pid[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pid[i] < '0' || pid[i] > '9')
            return 0;
    return 1;
}

/* Loads partner pid; replies 404/503 otherwise. */
static int load_partner(struct req *r, const char *pid, struct rec *p)
{
    memset(p, 0, sizeof *p);
    if (!valid_pid(pid))
        return reply_error(r, 404, "not_found", NULL, "Partner not found.");
    char key[SCHEMA_KEY_MAX];
    snprintf(key, sizeof key, "si:partner:%s", pid);
    int rc = store_hgetall(r, key, p);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", NULL, "Partner not found.");
    return 0;
}

static char *seal(const struct api *a, const char *pid, const char *field, const char *plain)
{
    char aad[128];
    snprintf(aad, sizeof aad, "si:partner:%s:%s", pid, field);
    char *env = NULL;
    if (crypto_encrypt(a->keys, plain, strlen(plain), aad, &env) < 0)
        return NULL;
    return env;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        crypto_wipe(s, strlen(s));
        xfree(s);
    }
}

static int partner_create(struct req *r)
{
    const char *pairs[32];
    char num[24];
    int n;
    int rc = partner_input(r, 1, pairs, &n, num);
    if (rc != 0)
        return rc;
    redisReply *seq = store_cmd(r, "INCR si:seq:partner");
    if (seq == NULL || seq->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(seq);
        return reply_unavailable(r);
    }
    char pid[24];
    snprintf(pid, sizeof pid, "%lld", seq->integer);
    freeReplyObject(seq);
    char lookup[128];
    char *key = auth_new_api_key(lookup, sizeof lookup);
    char *secret = auth_new_webhook_secret();
    char *key_env = seal(r->api, pid, "api_key", key);
    char *secret_env = seal(r->api, pid, "webhook_secret", secret);
    if (key_env == NULL || secret_env == NULL || lookup[0] == '\0') {
        rc = reply_error(r, 500, "internal", NULL, "encryption failed");
        goto out;
    }
    char pkey[SCHEMA_KEY_MAX];
    snprintf(pkey, sizeof pkey, "si:partner:%s", pid);
    const char *argv[48] = {pkey,      "si:partners", lookup,           pid,
                            "api_key", key_env,       "webhook_secret", secret_env};
    int a = 8;
    for (int i = 0; i < n; i += 2) {
        if (*pairs[i + 1] == '\0')
            continue; /* nothing to clear on a new partner */
        argv[a++] = pairs[i];
        argv[a++] = pairs[i + 1];
    }
    redisReply *rep = store_script(r, "partner_create", 3, a, argv, NULL);
    if (rep == NULL) {
        rc = reply_unavailable(r);
        goto out;
    }
    int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
    freeReplyObject(rep);
    if (!ok) {
        rc = reply_error(r, 409, "conflict", NULL, "partner id %s is taken; try again", pid);
        goto out;
    }
    struct rec p;
    if (store_hgetall(r, pkey, &p) < 0) {
        rec_free(&p);
        rc = reply_unavailable(r);
        goto out;
    }
    /* The partner's view, with the key and secret this once. */
    struct json_gen *g = reply_gen_new();
    view_partner(g, pid, &p);
    rec_free(&p);
    char *view;
    size_t len;
    if (json_gen_finish(g, &view, &len) < 0) {
        json_gen_free(g);
        rc = reply_error(r, 500, "internal", NULL, "the response could not be generated");
        goto out;
    }
    json_gen_free(g);
    g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_str(g, "api_key", key);
    json_gen_key_str(g, "webhook_secret", secret);
    json_gen_object_close(g);
    char *secrets;
    size_t slen;
    json_gen_finish(g, &secrets, &slen);
    json_gen_free(g);
    /* Merge {"api_key":..,"webhook_secret":..} into the view object. */
    size_t total = len + slen + 2;
    char *body = xmalloc(total);
    memcpy(body, view, len - 1);
    body[len - 1] = ',';
    memcpy(body + len, secrets + 1, slen - 1);
    body[len + slen - 1] = '\0';
    rc = reply_json(r, 201, body, len + slen - 1, NULL);
    crypto_wipe(body, len + slen - 1);
    xfree(body);
    wipe_free(secrets);
    xfree(view);
out:
    wipe_free(key);
    wipe_free(secret);
    xfree(key_env);
    xfree(secret_env);
    return rc;
}

static int send_partner(struct req *r, int status, const char *pid)
{
    struct rec p;
    int rc = load_partner(r, pid, &p);
    if (rc == 0) {
        struct json_gen *g = reply_gen_new();
        view_partner(g, pid, &p);
        rc = reply_gen(r, status, g, NULL);
    }
    rec_free(&p);
    return rc;
}

static int partner_list(struct req *r)
{
    redisReply *ids = store_cmd(r, "ZRANGE si:partners 0 -1");
    if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ids);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    for (size_t i = 0; i < ids->elements; i++) {
        char key[SCHEMA_KEY_MAX];
        snprintf(key, sizeof key, "si:partner:%s", ids->element[i]->str);
        struct rec p;
        if (store_hgetall(r, key, &p) == 0)
            view_partner(g, ids->element[i]->str, &p);
        rec_free(&p);
    }
    json_gen_array_close(g);
    freeReplyObject(ids);
    return reply_gen(r, 200, g, NULL);
}

static int partner_show(struct req *r)
{
    return send_partner(r, 200, r->arg[0]);
}

static int partner_update(struct req *r)
{
    struct rec p;
    int rc = load_partner(r, r->arg[0], &p);
    rec_free(&p);
    if (rc != 0)
        return rc;
    const char *pairs[32];
    char num[24];
    int n;
    if ((rc = partner_input(r, 0, pairs, &n, num)) != 0)
        return rc;
    char pkey[SCHEMA_KEY_MAX];
    snprintf(pkey, sizeof pkey, "si:partner:%s", r->arg[0]);
    const char *argv[40] = {pkey};
    for (int i = 0; i < n; i++)
        argv[1 + i] = pairs[i];
    redisReply *rep = store_script(r, "partner_update", 1, 1 + n, argv, NULL);
    if (rep == NULL)
        return reply_unavailable(r);
    int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
    freeReplyObject(rep);
    if (!ok)
        return reply_error(r, 404, "not_found", NULL, "Partner not found.");
    return send_partner(r, 200, r->arg[0]);
}

static int partner_delete(struct req *r)
{
    const char *pid = r->arg[0];
    struct rec p;
    int rc = load_partner(r, pid, &p);
    if (rc != 0) {
        rec_free(&p);
        return rc;
    }
    char *keys[2] = {auth_partner_secret(r->api, pid, "api_key", rec_get(&p, "api_key")),
                     auth_partner_secret(r->api, pid, "api_key_old", rec_get(&p, "api_key_old"))};
    rec_free(&p);
    char lookups[2][128];
    for (int i = 0; i < 2; i++) {
        if (keys[i] == NULL || auth_lookup_key(keys[i], lookups[i], sizeof lookups[i]) < 0)
            snprintf(lookups[i], sizeof lookups[i], "si:apikey:none");
        wipe_free(keys[i]);
    }
    /* Connections first (each with its users and events), then the partner. */
    char kconns[SCHEMA_KEY_MAX];
    snprintf(kconns, sizeof kconns, "si:partner:%s:conns", pid);
    redisReply *codes = store_cmd(r, "SMEMBERS %s", kconns);
    if (codes == NULL || codes->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(codes);
        return reply_unavailable(r);
    }
    for (size_t i = 0; i < codes->elements; i++) {
        if (routes_delete_connection(r, pid, codes->element[i]->str) < 0) {
            freeReplyObject(codes);
            return reply_unavailable(r);
        }
    }
    freeReplyObject(codes);
    uint32_t s = r->api->shards;
    size_t nk = 6 + 2 * (size_t)s;
    const char **argv = xcalloc(nk + 1, sizeof *argv);
    char **owned = xcalloc(2 * (size_t)s, sizeof *owned);
    char pkey[SCHEMA_KEY_MAX], klog[SCHEMA_KEY_MAX];
    snprintf(pkey, sizeof pkey, "si:partner:%s", pid);
    snprintf(klog, sizeof klog, "si:log:%s", pid);
    argv[0] = pkey;
    argv[1] = "si:partners";
    argv[2] = kconns;
    argv[3] = klog;
    argv[4] = lookups[0];
    argv[5] = lookups[1];
    for (uint32_t k = 0; k < s; k++) {
        owned[2 * k] = xmalloc(SCHEMA_KEY_MAX);
        owned[2 * k + 1] = xmalloc(SCHEMA_KEY_MAX);
        snprintf(owned[2 * k], SCHEMA_KEY_MAX, "si:{%u}:ready:%s", k, pid);
        snprintf(owned[2 * k + 1], SCHEMA_KEY_MAX, "si:{%u}:ready_partners", k);
        argv[6 + 2 * k] = owned[2 * k];
        argv[7 + 2 * k] = owned[2 * k + 1];
    }
    argv[nk] = pid;
    redisReply *rep = store_script(r, "partner_delete", (int)nk, (int)nk + 1, argv, NULL);
    for (size_t i = 0; i < 2 * (size_t)s; i++)
        xfree(owned[i]);
    xfree(owned);
    xfree(argv);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        freeReplyObject(rep);
        return reply_unavailable(r);
    }
    const char *res = rep->element[0]->str;
    if (strcmp(res, "ok") == 0) {
        for (size_t i = 1; i + 1 < rep->elements; i += 2) {
            char key[SCHEMA_KEY_MAX];
            snprintf(key, sizeof key, "si:{%s}:evt:%s", rep->element[i]->str,
                     rep->element[i + 1]->str);
            freeReplyObject(store_cmd(r, "UNLINK %s", key));
        }
        rc = reply_no_content(r);
    } else if (strcmp(res, "has_connections") == 0) {
        rc =
            reply_error(r, 409, "conflict", NULL, "a connection was added meanwhile; delete again");
    } else {
        rc = reply_error(r, 404, "not_found", NULL, "Partner not found.");
    }
    freeReplyObject(rep);
    return rc;
}

/* POST .../rotate-key and .../rotate-webhook-secret. */
static int rotate(struct req *r, const char *field)
{
    static const char *const allowed[] = {"grace_seconds", "api_key", NULL};
    int rc = only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t grace = r->api->key_grace_sec;
    int has;
    if ((rc = get_int(r, "grace_seconds", 0, MAX_GRACE_SEC, &grace, &has)) != 0)
        return rc;
    const char *pid = r->arg[0];
    int is_key = strcmp(field, "api_key") == 0;
    char old_field[32];
    snprintf(old_field, sizeof old_field, "%s_old", field);
    for (int attempt = 0; attempt < 4; attempt++) {
        struct rec p;
        if ((rc = load_partner(r, pid, &p)) != 0) {
            rec_free(&p);
            return rc;
        }
        char *cur_env = xstrdup(rec_get(&p, field));
        char *cur = auth_partner_secret(r->api, pid, field, cur_env);
        char *prev = auth_partner_secret(r->api, pid, old_field, rec_get(&p, old_field));
        rec_free(&p);
        char lookup_new[128] = "", lookup_cur[128] = "si:apikey:none",
             lookup_prev[128] = "si:apikey:none";
        char *fresh =
            is_key ? auth_new_api_key(lookup_new, sizeof lookup_new) : auth_new_webhook_secret();
        if (is_key && cur != NULL)
            auth_lookup_key(cur, lookup_cur, sizeof lookup_cur);
        if (is_key && prev != NULL)
            auth_lookup_key(prev, lookup_prev, sizeof lookup_prev);
        char *fresh_env = seal(r->api, pid, field, fresh);
        char *old_env = cur ? seal(r->api, pid, old_field, cur) : xstrdup("");
        wipe_free(cur);
        wipe_free(prev);
        if (fresh_env == NULL || old_env == NULL) {
            wipe_free(fresh);
            xfree(fresh_env);
            xfree(old_env);
            xfree(cur_env);
            return reply_error(r, 500, "internal", NULL, "encryption failed");
        }
        char pkey[SCHEMA_KEY_MAX], graces[24];
        snprintf(pkey, sizeof pkey, "si:partner:%s", pid);
        snprintf(graces, sizeof graces, "%lld", (long long)grace * 1000);
        const char *with_lookups[] = {pkey,  lookup_new, lookup_cur, lookup_prev, pid,
                                      field, cur_env,    fresh_env,  old_env,     graces};
        const char *without[] = {pkey, pid, field, cur_env, fresh_env, old_env, graces};
        redisReply *rep = is_key ? store_script(r, "partner_rotate", 4, 10, with_lookups, NULL)
                                 : store_script(r, "partner_rotate", 1, 7, without, NULL);
        xfree(fresh_env);
        xfree(old_env);
        xfree(cur_env);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
            freeReplyObject(rep);
            wipe_free(fresh);
            return reply_unavailable(r);
        }
        const char *res = rep->element[0]->str;
        if (strcmp(res, "retry") == 0) {
            freeReplyObject(rep);
            wipe_free(fresh);
            continue;
        }
        if (strcmp(res, "ok") != 0) {
            freeReplyObject(rep);
            wipe_free(fresh);
            return reply_error(r, 404, "not_found", NULL, "Partner not found.");
        }
        struct json_gen *g = reply_gen_new();
        json_gen_object_open(g);
        json_gen_key_int(g, "id", strtoll(pid, NULL, 10));
        json_gen_key_str(g, field, fresh);
        char key_until[64];
        snprintf(key_until, sizeof key_until, "previous_%s_valid_until",
                 is_key ? "api_key" : "webhook_secret");
        view_time(g, key_until, rep->element[1]->str);
        json_gen_object_close(g);
        freeReplyObject(rep);
        char *out;
        size_t len;
        rc = json_gen_finish(g, &out, &len);
        json_gen_free(g);
        wipe_free(fresh);
        if (rc < 0)
            return reply_error(r, 500, "internal", NULL, "the response could not be generated");
        rc = reply_json(r, 200, out, len, NULL);
        wipe_free(out);
        return rc;
    }
    return reply_error(r, 409, "conflict", NULL, "another rotation ran meanwhile; try again");
}

static int partner_rotate_key(struct req *r)
{
    return rotate(r, "api_key");
}

static int partner_rotate_secret(struct req *r)
{
    return rotate(r, "webhook_secret");
}

/* ---- Fleet, queues, dead letters ---- */

static int64_t redis_now_ms(struct req *r)
{
    redisReply *t = store_cmd(r, "TIME");
    int64_t now = time_now_ms();
    if (t != NULL && t->type == REDIS_REPLY_ARRAY && t->elements == 2)
        now = strtoll(t->element[0]->str, NULL, 10) * 1000 +
              strtoll(t->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(t);
    return now;
}

static int fleet(struct req *r)
{
    static const char *const roles[][2] = {
        {"si:apis", "api"}, {"si:watchers", "watcher"}, {"si:dispatchers", "dispatcher"}};
    int64_t now = redis_now_ms(r);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "nodes");
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        redisReply *z = store_cmd(r, "ZRANGE %s 0 -1 WITHSCORES", roles[i][0]);
        if (z == NULL || z->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(z);
            json_gen_free(g);
            return reply_unavailable(r);
        }
        for (size_t j = 0; j + 1 < z->elements; j += 2) {
            const char *id = z->element[j]->str;
            int64_t beat = strtoll(z->element[j + 1]->str, NULL, 10);
            char key[SCHEMA_KEY_MAX];
            snprintf(key, sizeof key, "si:node:%s", id);
            struct rec n;
            store_hgetall(r, key, &n);
            json_gen_object_open(g);
            json_gen_key_str(g, "id", id);
            json_gen_key_str(g, "role", roles[i][1]);
            json_gen_key_int(g, "heartbeat_age_ms", now > beat ? now - beat : 0);
            for (size_t f = 0; f < n.n; f++) {
                if (strcmp(n.f[f], "role") == 0 || strcmp(n.f[f], "id") == 0)
                    continue;
                char *end;
                long long v = strtoll(n.v[f], &end, 10);
                if (*n.v[f] != '\0' && *end == '\0')
                    json_gen_key_int(g, n.f[f], v);
                else
                    json_gen_key_str(g, n.f[f], n.v[f]);
            }
            json_gen_object_close(g);
            rec_free(&n);
            counts[i]++;
        }
        freeReplyObject(z);
    }
    json_gen_array_close(g);
    json_gen_key_object(g, "counts");
    for (int i = 0; i < 3; i++)
        json_gen_key_int(g, roles[i][1], counts[i]);
    json_gen_object_close(g);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

static int queues(struct req *r)
{
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "shards");
    long long total[4] = {0, 0, 0, 0};
    int64_t oldest = 0;
    for (uint32_t k = 0; k < r->api->shards; k++) {
        char kp[64], ki[64], kr[64], kd[64], prefix[32];
        snprintf(kp, sizeof kp, "si:{%u}:ready_partners", k);
        snprintf(ki, sizeof ki, "si:{%u}:inflight", k);
        snprintf(kr, sizeof kr, "si:{%u}:retry", k);
        snprintf(kd, sizeof kd, "si:{%u}:dead", k);
        snprintf(prefix, sizeof prefix, "si:{%u}:", k);
        const char *argv[] = {kp, ki, kr, kd, prefix, ""};
        redisReply *st = store_script(r, "event_stats", 4, 6, argv, NULL);
        if (st == NULL || st->type != REDIS_REPLY_ARRAY || st->elements < 5) {
            freeReplyObject(st);
            json_gen_free(g);
            return reply_unavailable(r);
        }
        long long v[5];
        for (int i = 0; i < 5; i++)
            v[i] = st->element[i]->integer;
        freeReplyObject(st);
        for (int i = 0; i < 4; i++)
            total[i] += v[i];
        if (v[4] > oldest)
            oldest = v[4];
        if (v[0] + v[1] + v[2] + v[3] == 0)
            continue;
        json_gen_object_open(g);
        json_gen_key_int(g, "shard", k);
        json_gen_key_int(g, "ready", v[0]);
        json_gen_key_int(g, "inflight", v[1]);
        json_gen_key_int(g, "retry", v[2]);
        json_gen_key_int(g, "dead", v[3]);
        json_gen_key_int(g, "oldest_ready_age_ms", v[4]);
        json_gen_key_object(g, "ready_by_partner");
        redisReply *ps = store_cmd(r, "LRANGE %s 0 -1", kp);
        for (size_t i = 0; ps != NULL && ps->type == REDIS_REPLY_ARRAY && i < ps->elements; i++) {
            redisReply *len = store_cmd(r, "LLEN si:{%u}:ready:%s", k, ps->element[i]->str);
            json_gen_key_int(g, ps->element[i]->str,
                             len && len->type == REDIS_REPLY_INTEGER ? len->integer : 0);
            freeReplyObject(len);
        }
        freeReplyObject(ps);
        json_gen_object_close(g);
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
    json_gen_key_object(g, "totals");
    json_gen_key_int(g, "ready", total[0]);
    json_gen_key_int(g, "inflight", total[1]);
    json_gen_key_int(g, "retry", total[2]);
    json_gen_key_int(g, "dead", total[3]);
    json_gen_key_int(g, "oldest_ready_age_ms", oldest);
    json_gen_object_close(g);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

struct dead_ref {
    uint32_t k;
    int64_t at;
    char *id;
};

static int by_time_desc(const void *a, const void *b)
{
    const struct dead_ref *x = a, *y = b;
    return x->at < y->at ? 1 : x->at > y->at ? -1 : 0;
}

static int dead_letters(struct req *r)
{
    static const char *const allowed[] = {"limit", "before", "partner_id", NULL};
    int rc = only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t limit = DEAD_LIMIT_DEFAULT, before = INT64_MAX, partner = 0;
    int has;
    if ((rc = get_int(r, "limit", 1, DEAD_LIMIT_MAX, &limit, &has)) != 0 ||
        (rc = get_int(r, "before", 0, INT64_MAX, &before, &has)) != 0 ||
        (rc = get_int(r, "partner_id", 1, INT64_MAX, &partner, &has)) != 0)
        return rc;
    size_t cap = (size_t)limit * 2 + 16, n = 0;
    struct dead_ref *refs = xcalloc(cap, sizeof *refs);
    char max[32];
    snprintf(max, sizeof max, "(%lld", (long long)before);
    for (uint32_t k = 0; k < r->api->shards; k++) {
        redisReply *z =
            store_cmd(r, "ZREVRANGEBYSCORE si:{%u}:dead %s -inf WITHSCORES LIMIT 0 %lld", k, max,
                      (long long)limit);
        if (z == NULL || z->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(z);
            for (size_t i = 0; i < n; i++)
                xfree(refs[i].id);
            xfree(refs);
            return reply_unavailable(r);
        }
        for (size_t i = 0; i + 1 < z->elements; i += 2) {
            if (n == cap) {
                qsort(refs, n, sizeof *refs, by_time_desc);
                while (n > (size_t)limit)
                    xfree(refs[--n].id);
            }
            refs[n].k = k;
            refs[n].at = strtoll(z->element[i + 1]->str, NULL, 10);
            refs[n].id = xstrdup(z->element[i]->str);
            n++;
        }
        freeReplyObject(z);
    }
    qsort(refs, n, sizeof *refs, by_time_desc);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "dead_letters");
    size_t shown = 0;
    int64_t last = -1;
    for (size_t i = 0; i < n && shown < (size_t)limit; i++) {
        char key[SCHEMA_KEY_MAX];
        snprintf(key, sizeof key, "si:{%u}:evt:%s", refs[i].k, refs[i].id);
        struct rec e;
        last = refs[i].at;
        if (store_hgetall(r, key, &e) == 0 &&
            (partner == 0 || strtoll(rec_get(&e, "pid"), NULL, 10) == partner)) {
            json_gen_object_open(g);
            json_gen_key_int(g, "partner_id", strtoll(rec_get(&e, "pid"), NULL, 10));
            char ms[24];
            snprintf(ms, sizeof ms, "%lld", (long long)refs[i].at);
            view_time(g, "died_at", ms);
            json_gen_key_int(g, "died_at_ms", refs[i].at);
            json_gen_key(g, "event");
            view_event(g, &e);
            json_gen_object_close(g);
            shown++;
        }
        rec_free(&e);
    }
    json_gen_array_close(g);
    if (n > (size_t)limit || shown == (size_t)limit)
        json_gen_key_int(g, "next_before", last);
    else
        json_gen_key_null(g, "next_before");
    json_gen_object_close(g);
    for (size_t i = 0; i < n; i++)
        xfree(refs[i].id);
    xfree(refs);
    return reply_gen(r, 200, g, NULL);
}

static int dead_letter_replay(struct req *r)
{
    const char *id = r->arg[0];
    size_t len = strlen(id);
    int ok = len > 0 && len <= 200;
    for (size_t i = 0; ok && i < len; i++)
        ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
             (id[i] >= '0' && id[i] <= '9') || id[i] == '.' || id[i] == '_' || id[i] == '-';
    if (!ok)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    uint32_t k = 0;
    if (strncmp(id, "test.", 5) != 0 && len >= SCHEMA_UID_LEN) {
        char uid[SCHEMA_UID_LEN + 1];
        memcpy(uid, id, SCHEMA_UID_LEN);
        uid[SCHEMA_UID_LEN] = '\0';
        k = api_shard(r->api, uid);
    }
    char kevt[SCHEMA_KEY_MAX];
    snprintf(kevt, sizeof kevt, "si:{%u}:evt:%s", k, id);
    struct rec e;
    int rc = store_hgetall(r, kevt, &e);
    if (rc < 0) {
        rec_free(&e);
        return rc == -SIMAP_ECONN ? reply_unavailable(r)
                                  : reply_error(r, 404, "not_found", NULL, "Event not found.");
    }
    char pid[24], state[32];
    snprintf(pid, sizeof pid, "%s", rec_get(&e, "pid"));
    snprintf(state, sizeof state, "%s", rec_get(&e, "state"));
    rec_free(&e);
    char kdead[64], kready[SCHEMA_KEY_MAX], kpartners[64];
    snprintf(kdead, sizeof kdead, "si:{%u}:dead", k);
    snprintf(kready, sizeof kready, "si:{%u}:ready:%s", k, pid);
    snprintf(kpartners, sizeof kpartners, "si:{%u}:ready_partners", k);
    const char *argv[] = {kevt, kdead, kready, kpartners, id, pid};
    redisReply *rep = store_script(r, "event_replay", 4, 6, argv, NULL);
    if (rep == NULL)
        return reply_unavailable(r);
    long long res = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    if (res == 0)
        return reply_error(r, 409, "conflict", NULL,
                           "only dead letters can be replayed; this event is %s", state);
    if (res < 0)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    if (store_hgetall(r, kevt, &e) < 0) {
        rec_free(&e);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    view_event(g, &e);
    rec_free(&e);
    return reply_gen(r, 202, g, NULL);
}

const struct route routes_admin[] = {
    {"GET", "/admin/api/providers", AUTH_ADMIN, provider_list},
    {"POST", "/admin/api/providers", AUTH_ADMIN, provider_create},
    {"GET", "/admin/api/providers/:code", AUTH_ADMIN, provider_show},
    {"PUT", "/admin/api/providers/:code", AUTH_ADMIN, provider_update},
    {"PATCH", "/admin/api/providers/:code", AUTH_ADMIN, provider_update},
    {"DELETE", "/admin/api/providers/:code", AUTH_ADMIN, provider_delete},
    {"GET", "/admin/api/partners", AUTH_ADMIN, partner_list},
    {"POST", "/admin/api/partners", AUTH_ADMIN, partner_create},
    {"GET", "/admin/api/partners/:id", AUTH_ADMIN, partner_show},
    {"PUT", "/admin/api/partners/:id", AUTH_ADMIN, partner_update},
    {"PATCH", "/admin/api/partners/:id", AUTH_ADMIN, partner_update},
    {"DELETE", "/admin/api/partners/:id", AUTH_ADMIN, partner_delete},
    {"POST", "/admin/api/partners/:id/rotate-key", AUTH_ADMIN, partner_rotate_key},
    {"POST", "/admin/api/partners/:id/rotate-webhook-secret", AUTH_ADMIN, partner_rotate_secret},
    {"GET", "/admin/api/fleet", AUTH_ADMIN, fleet},
    {"GET", "/admin/api/queues", AUTH_ADMIN, queues},
    {"GET", "/admin/api/dead-letters", AUTH_ADMIN, dead_letters},
    {"POST", "/admin/api/dead-letters/:id/replay", AUTH_ADMIN, dead_letter_replay},
    {NULL, NULL, AUTH_NONE, NULL},
};
