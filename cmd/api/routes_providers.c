/*
 * cmd/api/routes_providers: /admin/api/providers, the IMAP providers (the
 * original seeded them): host, port, TLS, authentication, IDLE renewal and
 * connection cap of each, by code.
 *
 * Like all of the admin API (authenticated by Authorization: Bearer
 * $SUPERIMAP_ADMIN_TOKEN), it refuses unknown parameters (400 naming the
 * parameter): a typo in an operator's request should not be silently
 * dropped, unlike the partner API, which ignores them as Rails did.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <string.h>

#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "cmd/api/views.h"
#include "core/err.h"
#include "core/json.h"

static int one_of(const char *v, const char *a, const char *b, const char *c)
{
    return strcmp(v, a) == 0 || strcmp(v, b) == 0 || (c != NULL && strcmp(v, c) == 0);
}

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
    int rc = input_only_known(r, provider_params);
    if (rc != 0)
        return rc;
    const char *host, *tls, *auth, *aurl, *turl, *scope;
    int64_t port, renew, maxc;
    int has_port, has_renew, has_max;
    if ((rc = input_text(r, "imap_host", 253, &host)) != 0 ||
        (rc = input_int(r, "imap_port", 1, 65535, &port, &has_port)) != 0 ||
        (rc = input_text(r, "tls", 16, &tls)) != 0 ||
        (rc = input_text(r, "auth", 16, &auth)) != 0 ||
        (rc = input_int(r, "idle_renew_s", 60, 1740, &renew, &has_renew)) != 0 ||
        (rc = input_int(r, "max_connections", 0, 10000000, &maxc, &has_max)) != 0 ||
        (rc = input_url(r, "oauth2_authorize_url", 0, &aurl)) != 0 ||
        (rc = input_url(r, "oauth2_token_url", 0, &turl)) != 0 ||
        (rc = input_text(r, "oauth2_scope", API_TEXT_MAX, &scope)) != 0)
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

static int not_found(struct req *r, const char *code)
{
    return reply_error(r, 404, "not_found", NULL, "Imap Provider not found for '%s'.", code);
}

static int send_provider(struct req *r, int status, const char *code)
{
    struct rec p;
    int rc = store_provider_get(r, code, &p);
    if (rc == -SIMAP_ECONN)
        rc = reply_unavailable(r);
    else if (rc < 0)
        rc = not_found(r, code);
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
    int rc = input_text(r, "code", API_CODE_MAX + 1, &code);
    if (rc != 0)
        return rc;
    if (code == NULL || *code == '\0')
        return reply_invalid(r, "code", "can't be blank");
    if (!input_is_code(code))
        return reply_invalid(r, "code", "may use only letters, digits, '_' and '-' (64 at most)");
    const char *pairs[20];
    char nums[3][24];
    int n;
    if ((rc = provider_input(r, 1, NULL, pairs, &n, nums)) != 0)
        return rc;
    rc = store_provider_create(r, code, pairs, n);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", "code", "a provider '%s' already exists", code);
    if (rc < 0)
        return reply_unavailable(r);
    return send_provider(r, 201, code);
}

static int provider_list(struct req *r)
{
    struct rec_list l;
    if (store_provider_list(r, &l) < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    view_list(g, &l, view_provider_row);
    rec_list_free(&l);
    return reply_gen(r, 200, g, NULL);
}

static int provider_show(struct req *r)
{
    if (!input_is_code(r->arg[0]))
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found.");
    return send_provider(r, 200, r->arg[0]);
}

static int provider_update(struct req *r)
{
    const char *code = r->arg[0];
    if (!input_is_code(code))
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found.");
    struct rec cur;
    int rc = store_provider_get(r, code, &cur);
    if (rc < 0) {
        rec_free(&cur);
        return rc == -SIMAP_ECONN ? reply_unavailable(r) : not_found(r, code);
    }
    const char *given;
    if (input_text(r, "code", API_CODE_MAX + 1, &given) != 0) {
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
    rc = store_provider_update(r, code, pairs, n);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", "auth",
                           "auth cannot change while connections use the provider");
    if (rc == -SIMAP_ENOTFOUND)
        return not_found(r, code);
    if (rc < 0)
        return reply_unavailable(r);
    return send_provider(r, 200, code);
}

static int provider_delete(struct req *r)
{
    const char *code = r->arg[0];
    if (!input_is_code(code))
        return reply_error(r, 404, "not_found", NULL, "Imap Provider not found.");
    int rc = store_provider_delete(r, code);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", NULL,
                           "connections still use the provider; delete them first");
    if (rc == -SIMAP_ENOTFOUND)
        return not_found(r, code);
    if (rc < 0)
        return reply_unavailable(r);
    return reply_no_content(r);
}

const struct route routes_providers[] = {
    {"GET", "/admin/api/providers", AUTH_ADMIN, provider_list},
    {"POST", "/admin/api/providers", AUTH_ADMIN, provider_create},
    {"GET", "/admin/api/providers/:code", AUTH_ADMIN, provider_show},
    {"PUT", "/admin/api/providers/:code", AUTH_ADMIN, provider_update},
    {"PATCH", "/admin/api/providers/:code", AUTH_ADMIN, provider_update},
    {"DELETE", "/admin/api/providers/:code", AUTH_ADMIN, provider_delete},
    {NULL, NULL, AUTH_NONE, NULL},
};
