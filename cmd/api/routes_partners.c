/*
 * cmd/api/routes_partners: /admin/api/partners, with the issue and
 * rotation of their API keys and webhook secrets. Admin API: unknown
 * parameters are refused (see routes_providers.c).
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

#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "cmd/api/views.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/keys.h"

#define MAX_GRACE_SEC (30 * 86400)

static const char *const partner_params[] = {"name",
                                             "new_mail_webhook_url",
                                             "user_connected_webhook_url",
                                             "user_disconnected_webhook_url",
                                             "user_reauth_required_webhook_url",
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
    int rc = input_only_known(r, partner_params);
    if (rc != 0)
        return rc;
    const char *name, *sched;
    static const char *const urls[] = {"new_mail_webhook_url", "user_connected_webhook_url",
                                       "user_disconnected_webhook_url",
                                       "user_reauth_required_webhook_url"};
    const char *url[4], *success, *failure;
    int64_t conc;
    int has_conc;
    if ((rc = input_text(r, "name", 200, &name)) != 0)
        return rc;
    for (int i = 0; i < 4; i++)
        if ((rc = input_fetch_url(r, urls[i], r->api->cfg->webhook_allow_private, &url[i])) != 0)
            return rc;
    if ((rc = input_url(r, "success_url", &success)) != 0 ||
        (rc = input_url(r, "failure_url", &failure)) != 0 ||
        (rc = input_text(r, "retry_schedule", 1024, &sched)) != 0 ||
        (rc = input_int(r, "webhook_concurrency", 1, 1000, &conc, &has_conc)) != 0)
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
    static const char *const disabled[] = {
        "new_mail_webhook_disabled", "user_connected_webhook_disabled",
        "user_disconnected_webhook_disabled", "user_reauth_required_webhook_disabled"};
    for (int i = 0; i < 4; i++) {
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

/* Keys and secrets in clear are overwritten before they are freed. */
static void wipe_free(char *s)
{
    if (s != NULL) {
        crypto_wipe(s, strlen(s));
        xfree(s);
    }
}

static int not_found(struct req *r)
{
    return reply_error(r, 404, "not_found", NULL, "Partner not found.");
}

/* Reads partner pid; replies 404/503 otherwise. */
static int load_partner(struct req *r, const char *pid, struct rec *p)
{
    memset(p, 0, sizeof *p);
    if (!input_is_pid(pid))
        return not_found(r);
    int rc = store_partner_get(r, pid, p);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return not_found(r);
    return 0;
}

/* Finishes g, an answer carrying a key or secret in clear, sends it, and
 * wipes its text. */
static int reply_secret_object(struct req *r, int status, struct json_gen *g)
{
    char *out;
    size_t len;
    int rc = json_gen_finish(g, &out, &len);
    json_gen_free(g);
    if (rc < 0)
        return reply_error(r, 500, "internal", NULL, "the response could not be generated");
    rc = reply_json(r, status, out, len, NULL);
    wipe_free(out);
    return rc;
}

/* The api_key parameter, a key the partner brings: 0 with *key (NULL when
 * absent), or the status after a 400. */
static int brought_key(struct req *r, const char **key)
{
    int rc = input_secret(r, "api_key", 64, key);
    if (rc != 0)
        return rc;
    if (*key != NULL && *key[0] == '\0')
        *key = NULL;
    if (*key != NULL && !keys_api_key_acceptable(*key))
        return reply_invalid(r, "api_key",
                             "must be 43 base64url characters (as superimap makes them) or 20 "
                             "lowercase hex digits (as SuperIMAP made them)");
    return 0;
}

/* Answers a failed store_partner_rotate(). */
static int rotate_failed(struct req *r, int rc)
{
    if (rc == -SIMAP_ENOTFOUND)
        return not_found(r);
    if (rc == -SIMAP_ECRYPTO)
        return reply_error(r, 500, "internal", NULL, "encryption failed");
    if (rc == -SIMAP_EINVAL)
        return reply_error(r, 409, "conflict", "api_key", "api_key is in use by another partner");
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", NULL, "another rotation ran meanwhile; try again");
    return reply_unavailable(r);
}

static int partner_create(struct req *r)
{
    const char *pairs[32];
    char num[24];
    int n;
    int rc = partner_input(r, 1, pairs, &n, num);
    if (rc != 0)
        return rc;
    /* A partner moving from SuperIMAP keeps its key (its receivers verify
     * the body signature with it): superimap's form or the original's. */
    const char *key;
    if ((rc = brought_key(r, &key)) != 0)
        return rc;
    struct store_new_partner np;
    rc = store_partner_create(r, pairs, n, key, &np);
    if (rc == -SIMAP_ECRYPTO)
        return reply_error(r, 500, "internal", NULL, "encryption failed");
    if (rc == -SIMAP_EINVAL)
        return reply_error(r, 409, "conflict", "api_key", "api_key is in use by another partner");
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", NULL, "partner id %s is taken; try again", np.pid);
    if (rc < 0)
        return reply_unavailable(r);
    struct rec p;
    if (store_partner_get(r, np.pid, &p) < 0) {
        rc = reply_unavailable(r);
    } else {
        /* The partner's view, with the key and secret this once. */
        struct json_gen *g = reply_gen_new();
        view_partner_open(g, np.pid, &p);
        json_gen_key_str(g, "api_key", np.api_key);
        json_gen_key_str(g, "webhook_secret", np.webhook_secret);
        json_gen_object_close(g);
        rc = reply_secret_object(r, 201, g);
    }
    rec_free(&p);
    wipe_free(np.api_key);
    wipe_free(np.webhook_secret);
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

#define PARTNERS_LIMIT_DEFAULT 50
#define PARTNERS_LIMIT_MAX     200

/* A page of partners by name (si:ix:partner): {"partners": [...],
 * "next_cursor"}. */
static int partner_page(struct req *r)
{
    const char *q;
    int64_t limit = PARTNERS_LIMIT_DEFAULT;
    int has, rc;
    if ((rc = input_text(r, "q", 200, &q)) != 0 ||
        (rc = input_int(r, "limit", 1, PARTNERS_LIMIT_MAX, &limit, &has)) != 0)
        return rc;
    char *prefix = params_ascii_lower(xstrdup(q != NULL ? q : "")), *next;
    struct rec_list l;
    rc = input_page(r, prefix, limit, store_partner_page, &l, &next);
    xfree(prefix);
    if (rc != 0)
        return rc;
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key(g, "partners");
    view_list(g, &l, view_partner);
    view_next_cursor(g, next);
    json_gen_object_close(g);
    rec_list_free(&l);
    xfree(next);
    return reply_gen(r, 200, g, NULL);
}

/* Without q, cursor or limit: every partner, oldest first, as a bare
 * array (the answer before pages existed, for old callers); with any of
 * them, a page by name. */
static int partner_list(struct req *r)
{
    static const char *const allowed[] = {"q", "cursor", "limit", NULL};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    if (r->params.n > 0)
        return partner_page(r);
    struct rec_list l;
    if (store_partner_list(r, &l) < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    view_list(g, &l, view_partner);
    rec_list_free(&l);
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
    const char *key;
    if ((rc = brought_key(r, &key)) != 0)
        return rc;
    rc = store_partner_update(r, r->arg[0], pairs, n);
    if (rc == -SIMAP_ENOTFOUND)
        return not_found(r);
    if (rc < 0)
        return reply_unavailable(r);
    if (key != NULL) {
        /* A key the partner brings replaces the current one as rotate-key
         * does: the old key keeps working for the rotation's grace. */
        char *fresh, until[24];
        rc = store_partner_rotate(r, r->arg[0], "api_key", key, r->api->key_grace_sec, &fresh,
                                  until);
        if (rc < 0)
            return rotate_failed(r, rc);
        wipe_free(fresh);
    }
    return send_partner(r, 200, r->arg[0]);
}

static int partner_delete(struct req *r)
{
    if (!input_is_pid(r->arg[0]))
        return not_found(r);
    int rc = store_partner_delete(r, r->arg[0]);
    if (rc == -SIMAP_ENOTFOUND)
        return not_found(r);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", NULL,
                           "a connection was added meanwhile; delete again");
    if (rc < 0)
        return reply_unavailable(r);
    return reply_no_content(r);
}

/* POST .../rotate-key (api_key: the new key, else one is made) and
 * .../rotate-webhook-secret. */
static int rotate(struct req *r, const char *field, const char *const *allowed)
{
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t grace = r->api->key_grace_sec;
    int has;
    if ((rc = input_int(r, "grace_seconds", 0, MAX_GRACE_SEC, &grace, &has)) != 0)
        return rc;
    const char *given = NULL;
    if (strcmp(field, "api_key") == 0 && (rc = brought_key(r, &given)) != 0)
        return rc;
    const char *pid = r->arg[0];
    if (!input_is_pid(pid))
        return not_found(r);
    char *fresh, until[24];
    rc = store_partner_rotate(r, pid, field, given, grace, &fresh, until);
    if (rc < 0)
        return rotate_failed(r, rc);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_int(g, "id", strtoll(pid, NULL, 10));
    json_gen_key_str(g, field, fresh);
    char key_until[64];
    snprintf(key_until, sizeof key_until, "previous_%s_valid_until", field);
    view_time(g, key_until, until);
    json_gen_object_close(g);
    wipe_free(fresh);
    return reply_secret_object(r, 200, g);
}

static int partner_rotate_key(struct req *r)
{
    static const char *const allowed[] = {"grace_seconds", "api_key", NULL};
    return rotate(r, "api_key", allowed);
}

static int partner_rotate_secret(struct req *r)
{
    static const char *const allowed[] = {"grace_seconds", NULL};
    return rotate(r, "webhook_secret", allowed);
}

const struct route routes_partners[] = {
    {"GET", "/admin/api/partners", AUTH_ADMIN, partner_list},
    {"POST", "/admin/api/partners", AUTH_ADMIN, partner_create},
    {"GET", "/admin/api/partners/:id", AUTH_ADMIN, partner_show},
    {"PUT", "/admin/api/partners/:id", AUTH_ADMIN, partner_update},
    {"PATCH", "/admin/api/partners/:id", AUTH_ADMIN, partner_update},
    {"DELETE", "/admin/api/partners/:id", AUTH_ADMIN, partner_delete},
    {"POST", "/admin/api/partners/:id/rotate-key", AUTH_ADMIN, partner_rotate_key},
    {"POST", "/admin/api/partners/:id/rotate-webhook-secret", AUTH_ADMIN, partner_rotate_secret},
    {NULL, NULL, AUTH_NONE, NULL},
};
