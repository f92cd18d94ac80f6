/*
 * cmd/api/views: the JSON shapes of the API's objects (web/openapi.json
 * describes the same), and the signed links of the connect pages.
 *
 * Times are stored as milliseconds since the epoch and shown as ISO 8601 UTC
 * text ("2025-01-31T12:00:00.123Z", what Rails wrote), null when unset.
 * Credentials (passwords, refresh tokens, client secrets, keys) are never
 * written by any view.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/views.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/api/api.h"
#include "cmd/api/connect.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/time.h"
#include "proto/mailboxes.h"

void view_time(struct json_gen *g, const char *key, const char *ms)
{
    if (ms == NULL || *ms == '\0') {
        json_gen_key_null(g, key);
        return;
    }
    char iso[TIME_ISO_LEN];
    json_gen_key_str(g, key, time_format_iso(strtoll(ms, NULL, 10), iso));
}

/* A stored string, or null when empty. */
static void str_or_null(struct json_gen *g, const char *key, const char *v)
{
    if (v == NULL || *v == '\0')
        json_gen_key_null(g, key);
    else
        json_gen_key_str(g, key, v);
}

static void int_field(struct json_gen *g, const char *key, const char *v)
{
    json_gen_key_int(g, key, v && *v ? strtoll(v, NULL, 10) : 0);
}

char *view_link(const struct api *a, const char *kind, const char *uid, int64_t ts)
{
    char sig[CONNECT_SIG_LEN + 1];
    connect_link_sig(a->link_key, kind, uid, ts, sig);
    const char *base = a->cfg->public_url;
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    size_t n = blen + strlen(kind) + strlen(uid) + 128;
    char *url = xmalloc(n);
    snprintf(url, n, "%.*s/users/%s/new?user_id=%s&ts=%lld&sig=%s", (int)blen, base, kind, uid,
             (long long)ts, sig);
    return url;
}

/* ---- Mailbox lists (issue #21) ---- */

#define DEFAULT_MAILBOXES "[\"INBOX\"]"

/* 1 when v is a mailbox list as the api and the watcher store them. A
 * field set by hand to anything else is shown as if absent. */
static int is_list(const char *v)
{
    struct mailbox_list l;
    if (*v == '\0' || mailboxes_parse(v, strlen(v), &l, NULL, 0) < 0)
        return 0;
    mailboxes_free(&l);
    return 1;
}

/* The list a user is watched in: its own, else its connection's copy,
 * else ["INBOX"]. */
static const char *effective_mailboxes(const struct rec *u)
{
    if (is_list(rec_get(u, "mailboxes")))
        return rec_get(u, "mailboxes");
    if (is_list(rec_get(u, "conn_mailboxes")))
        return rec_get(u, "conn_mailboxes");
    return DEFAULT_MAILBOXES;
}

/* v1 answers as the original until the partner uses mailboxes: the user's
 * keys appear once the user or its connection has a list, or the watcher
 * found some missing. */
static int show_mailboxes(int version, const struct rec *u)
{
    return version != 1 || *rec_get(u, "mailboxes") != '\0' ||
           *rec_get(u, "conn_mailboxes") != '\0' || *rec_get(u, "mailboxes_missing") != '\0';
}

static void key_raw(struct json_gen *g, const char *key, const char *json)
{
    json_gen_key_raw(g, key, json, strlen(json));
}

static void user_mailboxes(struct json_gen *g, int version, const struct rec *u, int own)
{
    if (!show_mailboxes(version, u))
        return;
    key_raw(g, "mailboxes", effective_mailboxes(u));
    if (own) {
        const char *v = rec_get(u, "mailboxes");
        if (is_list(v))
            key_raw(g, "mailboxes_own", v);
        else
            json_gen_key_null(g, "mailboxes_own");
    }
    const char *missing = rec_get(u, "mailboxes_missing");
    key_raw(g, "mailboxes_missing", is_list(missing) ? missing : "[]");
}

void view_user(struct json_gen *g, const struct api *a, const struct rec *u, const char *api_key,
               int version)
{
    (void)api_key;
    const char *uid = rec_get(u, "uid");
    int64_t ts = time_now_ms() / 1000;
    json_gen_object_open(g);
    json_gen_key_str(g, "tag", rec_get(u, "tag"));
    str_or_null(g, "email", rec_get(u, "email"));
    char *connect = view_link(a, "connect", uid, ts);
    char *disconnect = view_link(a, "disconnect", uid, ts);
    json_gen_key_str(g, "connect_url", connect);
    json_gen_key_str(g, "disconnect_url", disconnect);
    xfree(connect);
    xfree(disconnect);
    view_time(g, "connected_at", rec_get(u, "connected_at"));
    json_gen_key_bool(g, "archived", strcmp(rec_get(u, "archived"), "1") == 0);
    json_gen_key_str(g, "state", *rec_get(u, "state") ? rec_get(u, "state") : "idle");
    str_or_null(g, "last_error", rec_get(u, "last_error"));
    view_time(g, "last_login_at", rec_get(u, "last_login_at"));
    view_time(g, "last_email_at", rec_get(u, "last_email_at"));
    json_gen_key_str(g, "imap_provider_code", rec_get(u, "code"));
    str_or_null(g, "login_username", rec_get(u, "username"));
    json_gen_key_bool(g, "enable_tracer", strcmp(rec_get(u, "enable_tracer"), "1") == 0);
    user_mailboxes(g, version, u, 1);
    view_time(g, "created_at", rec_get(u, "created_at"));
    view_time(g, "updated_at", rec_get(u, "updated_at"));
    json_gen_object_close(g);
}

void view_user_brief(struct json_gen *g, const struct rec *u, int version)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "tag", rec_get(u, "tag"));
    str_or_null(g, "email", rec_get(u, "email"));
    json_gen_key_bool(g, "archived", strcmp(rec_get(u, "archived"), "1") == 0);
    view_time(g, "connected_at", rec_get(u, "connected_at"));
    json_gen_key_str(g, "state", *rec_get(u, "state") ? rec_get(u, "state") : "idle");
    user_mailboxes(g, version, u, 0);
    json_gen_object_close(g);
}

void view_connection(struct json_gen *g, const char *code, const struct rec *c, const char *auth,
                     int version)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "imap_provider_code", code);
    int_field(g, "users_count", rec_get(c, "users_count"));
    json_gen_key_str(g, "auth", auth);
    str_or_null(g, "oauth2_client_id", rec_get(c, "oauth2_client_id"));
    json_gen_key_bool(g, "oauth2_client_secret_set", *rec_get(c, "oauth2_client_secret") != '\0');
    const char *mailboxes = rec_get(c, "mailboxes");
    if (version != 1 || *mailboxes != '\0')
        key_raw(g, "mailboxes", is_list(mailboxes) ? mailboxes : DEFAULT_MAILBOXES);
    view_time(g, "created_at", rec_get(c, "created_at"));
    view_time(g, "updated_at", rec_get(c, "updated_at"));
    json_gen_object_close(g);
}

void view_provider(struct json_gen *g, const struct rec *p)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "code", rec_get(p, "code"));
    json_gen_key_str(g, "imap_host", rec_get(p, "imap_host"));
    int_field(g, "imap_port", rec_get(p, "imap_port"));
    json_gen_key_str(g, "tls", rec_get(p, "tls"));
    json_gen_key_str(g, "auth", rec_get(p, "auth"));
    int_field(g, "idle_renew_s", rec_get(p, "idle_renew_s"));
    /* Providers made before issue #21 have none: the default. */
    int_field(g, "mailbox_poll_s",
              *rec_get(p, "mailbox_poll_s") ? rec_get(p, "mailbox_poll_s") : "60");
    int_field(g, "max_connections", rec_get(p, "max_connections"));
    str_or_null(g, "oauth2_authorize_url", rec_get(p, "oauth2_authorize_url"));
    str_or_null(g, "oauth2_token_url", rec_get(p, "oauth2_token_url"));
    str_or_null(g, "oauth2_userinfo_url", rec_get(p, "oauth2_userinfo_url"));
    str_or_null(g, "oauth2_revoke_url", rec_get(p, "oauth2_revoke_url"));
    str_or_null(g, "oauth2_scope", rec_get(p, "oauth2_scope"));
    const char *params = rec_get(p, "oauth2_authorize_params");
    if (*params != '\0')
        json_gen_key_raw(g, "oauth2_authorize_params", params, strlen(params));
    else
        json_gen_key_null(g, "oauth2_authorize_params");
    json_gen_key_str(g, "oauth2_token_auth",
                     *rec_get(p, "oauth2_token_auth") ? rec_get(p, "oauth2_token_auth") : "post");
    json_gen_key_str(g, "sasl", *rec_get(p, "sasl") ? rec_get(p, "sasl") : "xoauth2");
    str_or_null(g, "smtp_host", rec_get(p, "smtp_host"));
    if (*rec_get(p, "smtp_port") != '\0')
        int_field(g, "smtp_port", rec_get(p, "smtp_port"));
    else
        json_gen_key_null(g, "smtp_port");
    json_gen_key_str(g, "smtp_tls", *rec_get(p, "smtp_tls") ? rec_get(p, "smtp_tls") : "starttls");
    str_or_null(g, "smtp_domain", rec_get(p, "smtp_domain"));
    json_gen_key_bool(g, "tracer_delete", strcmp(rec_get(p, "tracer_delete"), "1") == 0);
    int_field(g, "connections_count", rec_get(p, "connections_count"));
    view_time(g, "created_at", rec_get(p, "created_at"));
    view_time(g, "updated_at", rec_get(p, "updated_at"));
    json_gen_object_close(g);
}

void view_partner_open(struct json_gen *g, const char *pid, const struct rec *p)
{
    static const char *const urls[] = {"new_mail_webhook_url",
                                       "user_connected_webhook_url",
                                       "user_disconnected_webhook_url",
                                       "user_reauth_required_webhook_url",
                                       "success_url",
                                       "failure_url"};
    static const char *const disabled[] = {
        "new_mail_webhook_disabled", "user_connected_webhook_disabled",
        "user_disconnected_webhook_disabled", "user_reauth_required_webhook_disabled"};
    json_gen_object_open(g);
    json_gen_key_int(g, "id", strtoll(pid, NULL, 10));
    json_gen_key_str(g, "name", rec_get(p, "name"));
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++)
        str_or_null(g, urls[i], rec_get(p, urls[i]));
    for (size_t i = 0; i < sizeof disabled / sizeof disabled[0]; i++)
        str_or_null(g, disabled[i], rec_get(p, disabled[i]));
    str_or_null(g, "retry_schedule", rec_get(p, "retry_schedule"));
    json_gen_key_int(g, "webhook_concurrency",
                     *rec_get(p, "webhook_concurrency")
                         ? strtoll(rec_get(p, "webhook_concurrency"), NULL, 10)
                         : 8);
    int64_t now = time_now_ms();
    const char *ku = rec_get(p, "api_key_old_until");
    const char *su = rec_get(p, "webhook_secret_old_until");
    if (*ku && strtoll(ku, NULL, 10) > now)
        view_time(g, "previous_api_key_valid_until", ku);
    else
        json_gen_key_null(g, "previous_api_key_valid_until");
    if (*su && strtoll(su, NULL, 10) > now)
        view_time(g, "previous_webhook_secret_valid_until", su);
    else
        json_gen_key_null(g, "previous_webhook_secret_valid_until");
    view_time(g, "created_at", rec_get(p, "created_at"));
    view_time(g, "updated_at", rec_get(p, "updated_at"));
}

void view_partner(struct json_gen *g, const char *pid, const struct rec *p)
{
    view_partner_open(g, pid, p);
    json_gen_object_close(g);
}

void view_event(struct json_gen *g, const struct rec *e)
{
    view_event_open(g, e);
    json_gen_object_close(g);
}

void view_event_open(struct json_gen *g, const struct rec *e)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "id", rec_get(e, "id"));
    json_gen_key_str(g, "type", rec_get(e, "type"));
    str_or_null(g, "user_tag", rec_get(e, "tag"));
    str_or_null(g, "imap_provider_code", rec_get(e, "code"));
    json_gen_key_str(g, "state", rec_get(e, "state"));
    int_field(g, "attempts", rec_get(e, "attempts"));
    const char *st = rec_get(e, "last_status");
    if (*st && strcmp(st, "0") != 0)
        json_gen_key_int(g, "last_status", strtoll(st, NULL, 10));
    else
        json_gen_key_null(g, "last_status");
    str_or_null(g, "last_error", rec_get(e, "last_error"));
    view_time(g, "created_at", rec_get(e, "created_at"));
    view_time(g, "next_at", rec_get(e, "next_at"));
}

void view_dead_letter(struct json_gen *g, int64_t died_ms, const struct rec *e)
{
    json_gen_object_open(g);
    json_gen_key_int(g, "partner_id", strtoll(rec_get(e, "pid"), NULL, 10));
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)died_ms);
    view_time(g, "died_at", ms);
    json_gen_key_int(g, "died_at_ms", died_ms);
    json_gen_key(g, "event");
    view_event(g, e);
    json_gen_object_close(g);
}

void view_log_entry(struct json_gen *g, const char *log_id, const struct rec *e, const char *state)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "log_id", log_id);
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", strtoll(log_id, NULL, 10));
    view_time(g, "at", ms);
    json_gen_key_str(g, "id", rec_get(e, "id"));
    json_gen_key_str(g, "type", rec_get(e, "type"));
    str_or_null(g, "user_tag", rec_get(e, "tag"));
    str_or_null(g, "imap_provider_code", rec_get(e, "code"));
    int_field(g, "attempt", rec_get(e, "attempt"));
    int_field(g, "status", rec_get(e, "status"));
    json_gen_key_str(g, "result", rec_get(e, "result"));
    int_field(g, "latency_ms", rec_get(e, "latency_ms"));
    str_or_null(g, "error", rec_get(e, "error"));
    view_time(g, "next_at", rec_get(e, "next_at"));
    if (state != NULL)
        json_gen_key_str(g, "event_state", state);
    json_gen_object_close(g);
}

void view_node(struct json_gen *g, const char *id, const char *role, int64_t now_ms,
               int64_t beat_ms, const struct rec *n)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "id", id);
    json_gen_key_str(g, "role", role);
    json_gen_key_int(g, "heartbeat_age_ms", now_ms > beat_ms ? now_ms - beat_ms : 0);
    json_gen_key_bool(g, "draining", strcmp(rec_get(n, "state"), "draining") == 0);
    /* drain_requested holds the started_at of the incarnation asked. */
    const char *asked = rec_get(n, "drain_requested");
    json_gen_key_bool(g, "drain_requested",
                      *asked != '\0' && strcmp(asked, rec_get(n, "started_at")) == 0);
    for (size_t f = 0; f < n->n; f++) {
        if (strcmp(n->f[f], "role") == 0 || strcmp(n->f[f], "id") == 0 ||
            strcmp(n->f[f], "drain_requested") == 0)
            continue;
        char *end;
        long long v = strtoll(n->v[f], &end, 10);
        if (*n->v[f] != '\0' && *end == '\0')
            json_gen_key_int(g, n->f[f], v);
        else
            json_gen_key_str(g, n->f[f], n->v[f]);
    }
    json_gen_object_close(g);
}

void view_admin_user_open(struct json_gen *g, const struct rec *u, const char *partner_name)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "uid", rec_get(u, "uid"));
    json_gen_key_int(g, "partner_id", strtoll(rec_get(u, "pid"), NULL, 10));
    str_or_null(g, "partner_name", partner_name);
    json_gen_key_str(g, "provider", rec_get(u, "code"));
    json_gen_key_str(g, "tag", rec_get(u, "tag"));
    str_or_null(g, "email", rec_get(u, "email"));
    str_or_null(g, "username", rec_get(u, "username"));
    json_gen_key_str(g, "state", rec_get(u, "state"));
    str_or_null(g, "last_error", rec_get(u, "last_error"));
    view_time(g, "last_login_at", rec_get(u, "last_login_at"));
    view_time(g, "last_email_at", rec_get(u, "last_email_at"));
    view_time(g, "connected_at", rec_get(u, "connected_at"));
    json_gen_key_bool(g, "archived", strcmp(rec_get(u, "archived"), "1") == 0);
    view_time(g, "created_at", rec_get(u, "created_at"));
    view_time(g, "updated_at", rec_get(u, "updated_at"));
}

void view_admin_user_mailboxes(struct json_gen *g, const struct rec *u)
{
    user_mailboxes(g, 2, u, 0);
}

void view_next_cursor(struct json_gen *g, const char *next)
{
    if (next == NULL) {
        json_gen_key_null(g, "next_cursor");
        return;
    }
    char *cursor = params_cursor_encode(next);
    json_gen_key_str(g, "next_cursor", cursor);
    xfree(cursor);
}

void view_provider_row(struct json_gen *g, const char *code, const struct rec *p)
{
    (void)code; /* the hash holds it too */
    view_provider(g, p);
}

void view_list(struct json_gen *g, const struct rec_list *l, view_row_fn *row)
{
    json_gen_array_open(g);
    for (size_t i = 0; i < l->n; i++)
        row(g, l->id[i], &l->rec[i]);
    json_gen_array_close(g);
}
