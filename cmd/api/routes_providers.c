/*
 * cmd/api/routes_providers: /admin/api/providers, the IMAP providers (the
 * original seeded them): host, port, TLS, authentication, IDLE renewal and
 * connection cap of each, by code; for OAuth2 its endpoints (authorize,
 * token, userinfo, revoke), scope, extra authorization parameters, where
 * the client secret goes (post body or HTTP Basic) and the SASL mechanism.
 * "preset": "gmail" or "microsoft" fills in the published values. The SMTP
 * settings (smtp_host, smtp_port, smtp_tls, smtp_domain) are those tracer
 * mails are submitted to (README "Tracer mail"); tracer_delete (a boolean,
 * off by default) has watchers delete tracer mails once detected.
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

#include "cmd/api/connect.h"
#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "cmd/api/views.h"
#include "core/config.h"
#include "core/err.h"
#include "core/json.h"

static int one_of(const char *v, const char *a, const char *b, const char *c)
{
    return strcmp(v, a) == 0 || strcmp(v, b) == 0 || (c != NULL && strcmp(v, c) == 0);
}

static const char *const provider_params[] = {"code",
                                              "preset",
                                              "imap_host",
                                              "imap_port",
                                              "tls",
                                              "auth",
                                              "sasl",
                                              "idle_renew_s",
                                              "mailbox_poll_s",
                                              "max_connections",
                                              "oauth2_authorize_url",
                                              "oauth2_token_url",
                                              "oauth2_userinfo_url",
                                              "oauth2_revoke_url",
                                              "oauth2_scope",
                                              "oauth2_authorize_params",
                                              "oauth2_token_auth",
                                              "api_key",
                                              "smtp_host",
                                              "smtp_port",
                                              "smtp_tls",
                                              "smtp_domain",
                                              "tracer_delete",
                                              NULL};

/* The published settings of the big OAuth2 mail providers (IMAP on port
 * 993 with implicit TLS, XOAUTH2, the client secret in the token request's
 * body; SMTP submission on 587 with STARTTLS, which both document for
 * XOAUTH2: smtp.gmail.com also takes 465 with implicit TLS,
 * smtp.office365.com only 587). Parameters given with "preset" override
 * them. */
struct preset {
    const char *name, *host, *authorize_url, *token_url, *userinfo_url, *revoke_url, *scope,
        *authorize_params, /* NULL: none */
        *smtp_host;
};

static const struct preset presets[] = {
    {"gmail", "imap.gmail.com", "https://accounts.google.com/o/oauth2/v2/auth",
     "https://oauth2.googleapis.com/token", "https://openidconnect.googleapis.com/v1/userinfo",
     "https://oauth2.googleapis.com/revoke", "https://mail.google.com/ openid email",
     "{\"access_type\":\"offline\",\"prompt\":\"consent\"}", "smtp.gmail.com"},
    {"microsoft", "outlook.office365.com",
     "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
     "https://login.microsoftonline.com/common/oauth2/v2.0/token", NULL, NULL,
     "https://outlook.office.com/IMAP.AccessAsUser.All offline_access openid email", NULL,
     "smtp.office365.com"},
};

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

/* oauth2_authorize_params: a JSON object in a JSON body, or its text in a
 * form; *out NULL when absent, "" when given empty (it clears them). */
static int input_authorize_params(struct req *r, const char **out)
{
    *out = NULL;
    const struct param *p = params_get(&r->params, "oauth2_authorize_params");
    if (p == NULL)
        return 0;
    if (p->type == PARAM_NULL || (p->type == PARAM_STR && p->len == 0)) {
        *out = "";
        return 0;
    }
    if ((p->type != PARAM_STR && p->type != PARAM_OTHER) ||
        !connect_params_json_ok(p->value, p->len))
        return reply_invalid(r, "oauth2_authorize_params",
                             "must be an object of at most 16 string values (names of "
                             "[A-Za-z0-9_.-], not one the connect page sets itself)");
    *out = p->value;
    return 0;
}

/* What the request sets, preset values first, then the parameters. */
struct provider_in {
    const char *pairs[48];
    int n;
    char nums[5][24];
};

static void pair(struct provider_in *in, const char *k, const char *v)
{
    for (int i = 0; i < in->n; i += 2) {
        if (strcmp(in->pairs[i], k) == 0) {
            in->pairs[i + 1] = v;
            return;
        }
    }
    in->pairs[in->n++] = k;
    in->pairs[in->n++] = v;
}

/* The value the provider will have: this request's, else the stored one
 * (cur, when updating), else "". */
static const char *final_value(const struct provider_in *in, const struct rec *cur,
                               const char *field)
{
    for (int i = 0; i < in->n; i += 2)
        if (strcmp(in->pairs[i], field) == 0)
            return in->pairs[i + 1];
    return cur != NULL ? rec_get(cur, field) : "";
}

/* Collects a provider's fields from the request into in. creating:
 * required fields and defaults. cur: the stored provider when updating. */
static int provider_input(struct req *r, int creating, const struct rec *cur,
                          struct provider_in *in)
{
    int rc = input_only_known(r, provider_params);
    if (rc != 0)
        return rc;
    const char *preset_name, *host, *tls, *auth, *sasl, *aurl, *turl, *uurl, *rurl, *scope,
        *aparams, *tauth, *shost, *stls, *sdomain;
    int64_t port, renew, poll, maxc, sport;
    int has_port, has_renew, has_poll, has_max, has_sport, tdel = -1;
    int oauth2_private = r->api->cfg->oauth2_allow_private;
    if ((rc = input_text(r, "preset", 32, &preset_name)) != 0 ||
        (rc = input_text(r, "imap_host", 253, &host)) != 0 ||
        (rc = input_int(r, "imap_port", 1, 65535, &port, &has_port)) != 0 ||
        (rc = input_text(r, "tls", 16, &tls)) != 0 ||
        (rc = input_text(r, "auth", 16, &auth)) != 0 ||
        (rc = input_text(r, "sasl", 16, &sasl)) != 0 ||
        (rc = input_int(r, "idle_renew_s", 60, 1740, &renew, &has_renew)) != 0 ||
        (rc = input_int(r, "mailbox_poll_s", 10, 3600, &poll, &has_poll)) != 0 ||
        (rc = input_int(r, "max_connections", 0, 10000000, &maxc, &has_max)) != 0 ||
        (rc = input_url(r, "oauth2_authorize_url", &aurl)) != 0 ||
        (rc = input_fetch_url(r, "oauth2_token_url", oauth2_private, &turl)) != 0 ||
        (rc = input_fetch_url(r, "oauth2_userinfo_url", oauth2_private, &uurl)) != 0 ||
        (rc = input_fetch_url(r, "oauth2_revoke_url", oauth2_private, &rurl)) != 0 ||
        (rc = input_text(r, "oauth2_scope", API_TEXT_MAX, &scope)) != 0 ||
        (rc = input_authorize_params(r, &aparams)) != 0 ||
        (rc = input_text(r, "oauth2_token_auth", 16, &tauth)) != 0 ||
        (rc = input_text(r, "smtp_host", 253, &shost)) != 0 ||
        (rc = input_int(r, "smtp_port", 1, 65535, &sport, &has_sport)) != 0 ||
        (rc = input_text(r, "smtp_tls", 16, &stls)) != 0 ||
        (rc = input_text(r, "smtp_domain", 253, &sdomain)) != 0)
        return rc;
    const struct preset *preset = NULL;
    for (size_t i = 0; preset_name != NULL && i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(preset_name, presets[i].name) == 0)
            preset = &presets[i];
    if (preset_name != NULL && preset == NULL)
        return reply_invalid(r, "preset", "must be gmail or microsoft");
    if (host != NULL && !valid_host(host))
        return reply_invalid(r, "imap_host", "must be a host name or IP address");
    if (tls != NULL && !one_of(tls, "implicit", "starttls", "none"))
        return reply_invalid(r, "tls", "must be implicit, starttls or none");
    if (auth != NULL && !one_of(auth, "plain", "oauth2", NULL))
        return reply_invalid(r, "auth", "must be plain or oauth2");
    if (sasl != NULL && !one_of(sasl, "xoauth2", "oauthbearer", NULL))
        return reply_invalid(r, "sasl", "must be xoauth2 or oauthbearer");
    if (tauth != NULL && !one_of(tauth, "post", "basic", NULL))
        return reply_invalid(r, "oauth2_token_auth", "must be post or basic");
    if (shost != NULL && *shost != '\0' && !valid_host(shost))
        return reply_invalid(r, "smtp_host", "must be a host name or IP address");
    if (stls != NULL && !one_of(stls, "implicit", "starttls", "none"))
        return reply_invalid(r, "smtp_tls", "must be implicit, starttls or none");
    if (sdomain != NULL && *sdomain != '\0' && !valid_host(sdomain))
        return reply_invalid(r, "smtp_domain", "must be a host name");
    const struct param *tdel_param = params_get(&r->params, "tracer_delete");
    if (tdel_param != NULL && param_bool(tdel_param, &tdel) < 0)
        return reply_invalid(r, "tracer_delete", "must be true or false");

    in->n = 0;
    if (creating) {
        pair(in, "tls", "implicit");
        pair(in, "auth", "plain");
        pair(in, "idle_renew_s", "1500");
        pair(in, "mailbox_poll_s", "60");
        pair(in, "max_connections", "0");
        pair(in, "smtp_tls", "starttls");
        pair(in, "tracer_delete", "0");
    }
    if (preset != NULL) {
        const char *const fields[][2] = {
            {"imap_host", preset->host},
            {"imap_port", "993"},
            {"tls", "implicit"},
            {"auth", "oauth2"},
            {"sasl", "xoauth2"},
            {"oauth2_token_auth", "post"},
            {"oauth2_authorize_url", preset->authorize_url},
            {"oauth2_token_url", preset->token_url},
            {"oauth2_userinfo_url", preset->userinfo_url},
            {"oauth2_revoke_url", preset->revoke_url},
            {"oauth2_scope", preset->scope},
            {"oauth2_authorize_params", preset->authorize_params},
            {"smtp_host", preset->smtp_host},
            {"smtp_port", "587"},
            {"smtp_tls", "starttls"},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            if (fields[i][1] != NULL)
                pair(in, fields[i][0], fields[i][1]);
    }
    if (host)
        pair(in, "imap_host", host);
    if (has_port) {
        snprintf(in->nums[0], 24, "%lld", (long long)port);
        pair(in, "imap_port", in->nums[0]);
    }
    if (tls)
        pair(in, "tls", tls);
    if (auth)
        pair(in, "auth", auth);
    if (sasl)
        pair(in, "sasl", sasl);
    if (has_renew) {
        snprintf(in->nums[1], 24, "%lld", (long long)renew);
        pair(in, "idle_renew_s", in->nums[1]);
    }
    if (has_poll) {
        snprintf(in->nums[4], 24, "%lld", (long long)poll);
        pair(in, "mailbox_poll_s", in->nums[4]);
    }
    if (has_max) {
        snprintf(in->nums[2], 24, "%lld", (long long)maxc);
        pair(in, "max_connections", in->nums[2]);
    }
    static const char *const urls[] = {"oauth2_authorize_url", "oauth2_token_url",
                                       "oauth2_userinfo_url", "oauth2_revoke_url"};
    const char *url_values[] = {aurl, turl, uurl, rurl};
    for (size_t i = 0; i < 4; i++)
        if (url_values[i] != NULL)
            pair(in, urls[i], url_values[i]);
    if (scope)
        pair(in, "oauth2_scope", scope);
    if (aparams)
        pair(in, "oauth2_authorize_params", aparams);
    if (tauth)
        pair(in, "oauth2_token_auth", tauth);
    if (shost)
        pair(in, "smtp_host", shost);
    if (shost != NULL && *shost == '\0' && !has_sport)
        pair(in, "smtp_port", ""); /* no SMTP server any more */
    if (has_sport) {
        snprintf(in->nums[3], 24, "%lld", (long long)sport);
        pair(in, "smtp_port", in->nums[3]);
    }
    if (stls)
        pair(in, "smtp_tls", stls);
    if (sdomain)
        pair(in, "smtp_domain", sdomain);
    if (tdel >= 0)
        pair(in, "tracer_delete", tdel ? "1" : "0");

    if (creating && *final_value(in, cur, "imap_host") == '\0')
        return reply_invalid(r, "imap_host", "can't be blank");
    if (creating && *final_value(in, cur, "imap_port") == '\0')
        return reply_invalid(r, "imap_port", "can't be blank");
    if (strcmp(final_value(in, cur, "auth"), "oauth2") == 0) {
        if (*final_value(in, cur, "oauth2_authorize_url") == '\0')
            return reply_invalid(r, "oauth2_authorize_url", "can't be blank for oauth2");
        if (*final_value(in, cur, "oauth2_token_url") == '\0')
            return reply_invalid(r, "oauth2_token_url", "can't be blank for oauth2");
    }
    /* Tracers need both: a host without a port (or the other way) is a
     * half-typed setting. */
    if ((*final_value(in, cur, "smtp_host") == '\0') !=
        (*final_value(in, cur, "smtp_port") == '\0'))
        return reply_invalid(r,
                             *final_value(in, cur, "smtp_host") == '\0' ? "smtp_host" : "smtp_port",
                             "smtp_host and smtp_port go together");
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
    struct provider_in in;
    if ((rc = provider_input(r, 1, NULL, &in)) != 0)
        return rc;
    rc = store_provider_create(r, code, in.pairs, in.n);
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
    struct provider_in in;
    rc = provider_input(r, 0, &cur, &in);
    rec_free(&cur);
    if (rc != 0)
        return rc;
    rc = store_provider_update(r, code, in.pairs, in.n);
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
