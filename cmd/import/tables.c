/*
 * cmd/import/tables: the original's tables to superimap's records (see
 * tables.h).
 *
 * Ids. A partner keeps its id as its pid (si:seq:partner is raised past
 * it), so its connections and the operator's notes still name it. A user's
 * id is derived from the original's, HMAC-SHA256 under the original's
 * ENCRYPTION_KEY of "superimap-import user <id>", cut to 24 hex digits: as
 * unguessable as a random one, and the same on every run, which is what
 * makes a second run find the users of the first. Providers keep their
 * code, connections their (partner, provider) pair.
 *
 * Columns are found by header name; unknown ones are ignored. The original's
 * booleans are psql's t/f, its datetimes "YYYY-MM-DD HH:MM:SS[.ffffff]" in
 * UTC (Rails' default), optionally with a "+HH[:MM]" offset.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/import/tables.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/import/legacy.h"
#include "cmd/import/values.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/keys.h"
#include "core/rsync.h"
#include "core/schema.h"
#include "core/strmap.h"
#include "proto/csv.h"

#define FILE_MAX  ((size_t)4 << 30) /* bytes of one exported table */
#define TAG_MAX   255               /* as the api's API_TAG_MAX, ... */
#define EMAIL_MAX 320
#define TEXT_MAX  1024

#define MAX_COLS 24

/* ---- Tables and their columns ---- */

struct table_spec {
    const char *file;
    const char *const *cols; /* NULL-terminated; names starting with '*' are required */
};

enum { P_ID, P_API_KEY, P_NAME, P_NEW_MAIL, P_CONNECTED, P_DISCONNECTED, P_SUCCESS, P_FAILURE };
static const char *const partner_cols[] = {"*id",
                                           "*api_key",
                                           "*name",
                                           "new_mail_webhook",
                                           "user_connected_webhook",
                                           "user_disconnected_webhook",
                                           "success_url",
                                           "failure_url",
                                           NULL};

enum {
    V_ID,
    V_CODE,
    V_TYPE,
    V_HOST,
    V_PORT,
    V_SSL,
    V_SITE,
    V_AUTHORIZE,
    V_TOKEN,
    V_SCOPE,
    V_SMTP_HOST,
    V_SMTP_PORT,
    V_SMTP_DOMAIN,
    V_SMTP_STARTTLS
};
static const char *const provider_cols[] = {"*id",
                                            "*code",
                                            "*type",
                                            "*imap_host",
                                            "*imap_port",
                                            "imap_use_ssl",
                                            "oauth2_site",
                                            "oauth2_authorize_url",
                                            "oauth2_token_url",
                                            "oauth2_scope",
                                            "smtp_host",
                                            "smtp_port",
                                            "smtp_domain",
                                            "smtp_enable_starttls_auto",
                                            NULL};

enum { C_ID, C_PARTNER, C_PROVIDER, C_CLIENT_ID, C_CLIENT_SECRET };
static const char *const conn_cols[] = {
    "*id", "*partner_id", "*imap_provider_id", "oauth2_client_id", "oauth2_client_secret", NULL};

enum {
    U_ID,
    U_CONN,
    U_TAG,
    U_EMAIL,
    U_USERNAME,
    U_PASSWORD,
    U_TOKEN,
    U_CONNECTED_AT,
    U_ARCHIVED,
    U_TRACER,
    U_LAST_UID,
    U_VALIDITY,
    U_LOGIN_AT,
    U_EMAIL_AT
};
static const char *const user_cols[] = {"*id",
                                        "*partner_connection_id",
                                        "*tag",
                                        "email",
                                        "login_username",
                                        "login_password",
                                        "oauth2_refresh_token",
                                        "connected_at",
                                        "archived",
                                        "enable_tracer",
                                        "last_uid",
                                        "last_uid_validity",
                                        "last_login_at",
                                        "last_email_at",
                                        NULL};

static const struct table_spec specs[IMPORT_TABLES] = {
    {"partners.csv", partner_cols},
    {"imap_providers.csv", provider_cols},
    {"partner_connections.csv", conn_cols},
    {"users.csv", user_cols},
};

const char *import_table_file(enum import_table t)
{
    return specs[t].file;
}

/* One table's file, read whole, and the CSV reader over it. */
struct table {
    const struct table_spec *spec;
    char *data;
    struct csv_reader *csv;
    size_t width;      /* fields of the header row */
    int col[MAX_COLS]; /* index of each spec column in the file, or -1 */
};

/* The value of spec column c in the current row: "" when absent or NULL. */
static const char *col(const struct table *t, int c)
{
    int i = t->col[c];
    if (i < 0 || (size_t)i >= csv_count(t->csv))
        return "";
    return csv_field(t->csv, (size_t)i, NULL);
}

/* ---- A run ---- */

struct provider {
    char code[VALUES_CODE_MAX + 1];
    int oauth2;
};

struct conn {
    char pid[24];
    char code[VALUES_CODE_MAX + 1];
    int oauth2;
};

struct run {
    const struct import_opts *o;
    struct strmap *partners;  /* original id -> (void *)1: imported or unchanged */
    struct strmap *providers; /* original id -> struct provider */
    struct strmap *conns;     /* original id -> struct conn */
    struct strmap *seen;      /* keys taken in this run: connections, live tags and emails */
};

/* What one row came to. */
enum outcome { IMPORTED, UPDATED, UNCHANGED, REFUSED, FAILED };

static void free_value(void *v)
{
    if (v != (void *)1)
        xfree(v);
}

/* The current row's id for the report: "?" unless it is one (the file is
 * untrusted; a line break in it would forge report lines). */
static const char *row_id(const struct table *t)
{
    return values_is_id(col(t, 0)) ? col(t, 0) : "?";
}

/* Prints a refusal of the current row of t and returns REFUSED. The
 * arguments hold no control characters (checked values, or constants). */
static enum outcome refuse(struct run *run, const struct table *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum outcome refuse(struct run *run, const struct table *t, const char *fmt, ...)
{
    va_list ap;
    fprintf(run->o->out, "refused %s line %zu id %s: ", t->spec->file, csv_line(t->csv), row_id(t));
    va_start(ap, fmt);
    vfprintf(run->o->out, fmt, ap);
    va_end(ap);
    fputc('\n', run->o->out);
    return REFUSED;
}

/* Reports a Redis failure, which stops the run, and returns FAILED. */
static enum outcome redis_failed(struct run *run, const char *what)
{
    fprintf(stderr, "superimap-import: Redis failed during %s: %s\n", what,
            rsync_errstr(run->o->rs));
    return FAILED;
}

/* Prints what a dry run would write. */
static enum outcome would(struct run *run, const struct table *t, const char *what)
{
    fprintf(run->o->out, "would import %s line %zu id %s: %s\n", t->spec->file, csv_line(t->csv),
            row_id(t), what);
    return IMPORTED;
}

/* Prints what a dry run would change in a record there already, or what a
 * run changed. */
static enum outcome would_update(struct run *run, const struct table *t, const char *field)
{
    fprintf(run->o->out, "%s %s line %zu id %s: %s changed\n",
            run->o->dry_run ? "would update" : "updated", t->spec->file, csv_line(t->csv),
            row_id(t), field);
    return UPDATED;
}

/* Runs a field-pairs update script (partner_update, provider_update,
 * connection_update: KEYS[1] the record, ARGV the pairs) and returns its
 * status word in status[16] ("" on a Redis failure). */
static void update_fields(struct run *run, const char *script, const char *key,
                          const char *const *pairs, int n, char status[16])
{
    const char **argv = xcalloc((size_t)n + 1, sizeof *argv);
    argv[0] = key;
    memcpy(argv + 1, pairs, (size_t)n * sizeof *argv);
    redisReply *rep = rsync_script(run->o->rs, script, 1, n + 1, argv, NULL);
    xfree(argv);
    status[0] = '\0';
    if (rep != NULL && rep->type != REDIS_REPLY_ERROR && rep->str != NULL)
        snprintf(status, 16, "%s", rep->str);
    freeReplyObject(rep);
}

/* ---- Rows ---- */

/* 1 when every field of the current row is free of NUL bytes. */
static int row_is_text(const struct table *t)
{
    for (size_t i = 0; i < csv_count(t->csv); i++) {
        size_t len;
        const char *f = csv_field(t->csv, i, &len);
        if (strlen(f) != len)
            return 0;
    }
    return 1;
}

/* Opens an encrypted column of the original. Returns 0 with *out (a new
 * string: keys_wipe_free() it), or -1 when it is Gibberish's format but
 * does not open. */
static int open_secret(struct run *run, const char *value, char **out)
{
    if (*value == '\0') {
        *out = xstrdup("");
        return 0;
    }
    return legacy_open(run->o->old_key, run->o->old_key_len, value, out) == LEGACY_BROKEN ? -1 : 0;
}

/* 1 when the envelope opens under aad to plain; 0 otherwise. */
static int sealed_equals(struct run *run, const char *envelope, const char *aad, const char *plain)
{
    if (*envelope == '\0')
        return *plain == '\0';
    char *have = NULL;
    if (crypto_decrypt(run->o->keys, envelope, aad, &have, NULL) < 0)
        return 0;
    int same = strcmp(have, plain) == 0;
    keys_wipe_free(have);
    return same;
}

/* The field of hash h (an HGETALL reply), or "". */
static const char *hget(const redisReply *h, const char *field)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (strcmp(h->element[i]->str, field) == 0)
            return h->element[i + 1]->str;
    return "";
}

/* HGETALL key: a reply (empty array when absent), or NULL on failure. */
static redisReply *hgetall(struct run *run, const char *key)
{
    redisReply *h = rsync_command(run->o->rs, "HGETALL %s", key);
    if (h != NULL && h->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(h);
        return NULL;
    }
    return h;
}

/* The first of the n (field, wanted) pairs that differs in h, or NULL. */
static const char *first_difference(const redisReply *h, const char *const *pairs, int n)
{
    for (int i = 0; i + 1 < n; i += 2)
        if (strcmp(hget(h, pairs[i]), pairs[i + 1]) != 0)
            return pairs[i];
    return NULL;
}

/* ---- Partners ---- */

/* The three webhook URLs of a partner row as they are stored, through the
 * function the api stores them with (credentials sealed, shown masked). */
struct stored_urls {
    char *shown[3], *sealed[3];
};

static enum outcome partner_row_stored(struct run *run, const struct table *t,
                                       const struct stored_urls *su);

/* Replaces partner pid's API key (current envelope cur_env) by key, whose
 * lookup is lookup, at once: the original's key is the one its clients and
 * receivers use now (the original kept no previous key either). */
static enum outcome replace_key(struct run *run, const struct table *t, const char *pid,
                                const redisReply *h, const char *key, const char *lookup)
{
    char pkey[SCHEMA_KEY_MAX], lookup_cur[SCHEMA_KEY_MAX], lookup_prev[SCHEMA_KEY_MAX];
    schema_key_partner(pkey, pid);
    schema_key_apikey(lookup_cur, "none");
    schema_key_apikey(lookup_prev, "none");
    char *cur = keys_open_partner(run->o->keys, pid, "api_key", hget(h, "api_key"));
    char *prev = keys_open_partner(run->o->keys, pid, "api_key_old", hget(h, "api_key_old"));
    if (cur != NULL)
        keys_lookup(cur, lookup_cur);
    if (prev != NULL)
        keys_lookup(prev, lookup_prev);
    keys_wipe_free(prev);
    char *made_env = keys_seal_partner(run->o->keys, pid, "api_key", key);
    char *old_env = cur ? keys_seal_partner(run->o->keys, pid, "api_key_old", cur) : xstrdup("");
    keys_wipe_free(cur);
    enum outcome res = UPDATED;
    if (made_env == NULL || old_env == NULL) {
        res = refuse(run, t, "encryption failed");
    } else {
        const char *argv[] = {pkey,    lookup,    lookup_cur,         lookup_prev,
                              pid,     "api_key", hget(h, "api_key"), made_env,
                              old_env, "0"};
        redisReply *rep = rsync_script(run->o->rs, "partner_rotate", 4, 10, argv, NULL);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->str == NULL)
            res = redis_failed(run, "partners");
        else if (strcmp(rep->element[0]->str, "taken") == 0)
            res = refuse(run, t, "api_key is in use by another partner");
        else if (strcmp(rep->element[0]->str, "ok") != 0)
            res = refuse(run, t, "partner %s changed meanwhile", pid);
        freeReplyObject(rep);
    }
    xfree(made_env);
    xfree(old_env);
    return res;
}

/* Updates partner row t, there already as h, to its n settings pairs (a
 * webhook URL that changes takes its sealed credentials from su along) and,
 * when key is not NULL, to its API key. */
static enum outcome update_partner(struct run *run, const struct table *t, const redisReply *h,
                                   const char *const *pairs, int n, const struct stored_urls *su,
                                   const char *key, const char *lookup)
{
    const char *pid = col(t, P_ID);
    const char *diff = first_difference(h, pairs, n);
    if (run->o->dry_run)
        return would_update(run, t, diff ? diff : "api_key");
    if (diff != NULL) {
        /* A webhook URL set again is on again, as in the admin API. */
        const char *all[32];
        char disabled[3][48], userinfo[3][48];
        int a = 0, nd = 0;
        for (int i = 0; i + 1 < n; i += 2) {
            all[a++] = pairs[i];
            all[a++] = pairs[i + 1];
            size_t len = strlen(pairs[i]);
            if (nd < 3 && len > 12 && strcmp(pairs[i] + len - 12, "_webhook_url") == 0 &&
                strcmp(hget(h, pairs[i]), pairs[i + 1]) != 0) {
                snprintf(disabled[nd], sizeof disabled[nd], "%.*s_webhook_disabled",
                         (int)(len - 12), pairs[i]);
                all[a++] = disabled[nd];
                all[a++] = "";
                /* The URL's credentials go with it (or are cleared). */
                snprintf(userinfo[nd], sizeof userinfo[nd], "%s_userinfo", pairs[i]);
                all[a++] = userinfo[nd];
                all[a++] = su->sealed[(i - 2) / 2];
                nd++;
            }
        }
        char pkey[SCHEMA_KEY_MAX], status[16];
        schema_key_partner(pkey, pid);
        update_fields(run, "partner_update", pkey, all, a, status);
        if (status[0] == '\0')
            return redis_failed(run, "partners");
        if (strcmp(status, "ok") != 0)
            return refuse(run, t, "partner %s was deleted meanwhile", pid);
    }
    if (key != NULL) {
        enum outcome res = replace_key(run, t, pid, h, key, lookup);
        if (res != UPDATED)
            return res;
    }
    return would_update(run, t, diff ? diff : "api_key");
}

static enum outcome partner_row(struct run *run, const struct table *t)
{
    struct stored_urls su = {{NULL}, {NULL}};
    static const char *const hooks[] = {"new_mail_webhook_url", "user_connected_webhook_url",
                                        "user_disconnected_webhook_url"};
    const char *pid = col(t, P_ID);
    for (int i = 0; i < 3 && values_is_id(pid); i++)
        if (keys_seal_partner_url(run->o->keys, pid, hooks[i], col(t, P_NEW_MAIL + i), &su.shown[i],
                                  &su.sealed[i]) < 0)
            break;
    enum outcome o = values_is_id(pid) && su.sealed[2] == NULL ? refuse(run, t, "encryption failed")
                                                               : partner_row_stored(run, t, &su);
    for (int i = 0; i < 3; i++) {
        xfree(su.shown[i]);
        xfree(su.sealed[i]);
    }
    return o;
}

static enum outcome partner_row_stored(struct run *run, const struct table *t,
                                       const struct stored_urls *su)
{
    const char *pid = col(t, P_ID), *key = col(t, P_API_KEY), *name = col(t, P_NAME);
    if (!values_is_id(pid))
        return refuse(run, t, "id is not a positive integer");
    if (strmap_get(run->partners, pid) != NULL)
        return refuse(run, t, "duplicate id");
    if (!keys_api_key_acceptable(key))
        return refuse(run, t,
                      "api_key is neither 20 lowercase hex digits nor 43 base64url "
                      "characters");
    if (*name == '\0' || strlen(name) > TEXT_MAX || values_has_control(name))
        return refuse(run, t, "name is empty, too long or has control characters");
    static const char *const fields[] = {"new_mail_webhook_url", "user_connected_webhook_url",
                                         "user_disconnected_webhook_url", "success_url",
                                         "failure_url"};
    const char *pairs[12] = {"name", name};
    int n = 2;
    for (int i = 0; i < 5; i++) {
        const char *url = col(t, P_NEW_MAIL + i);
        if (*url != '\0' &&
            (!values_is_http_url(url) || strlen(url) > VALUES_URL_MAX || values_has_control(url)))
            return refuse(run, t, "%s is %s", specs[IMPORT_PARTNERS].cols[P_NEW_MAIL + i],
                          i >= 3 && *url == '/' ? "a relative URL (give it its host)"
                                                : "not an http(s) URL");
        pairs[n++] = fields[i];
        pairs[n++] = i < 3 ? su->shown[i] : url;
    }
    char pkey[SCHEMA_KEY_MAX], lookup[SCHEMA_KEY_MAX], aad[SCHEMA_KEY_MAX];
    schema_key_partner(pkey, pid);
    schema_aad_partner(aad, pid, "api_key");
    if (keys_lookup(key, lookup) < 0)
        return refuse(run, t, "api_key cannot be hashed");
    if (strmap_get(run->seen, lookup) != NULL)
        return refuse(run, t, "api_key is another row's");
    redisReply *h = hgetall(run, pkey);
    if (h == NULL)
        return redis_failed(run, "partners");
    if (h->elements > 0) {
        const char *diff = first_difference(h, pairs, n);
        int key_changed = !sealed_equals(run, hget(h, "api_key"), aad, key);
        enum outcome res = UNCHANGED;
        if (diff != NULL || key_changed)
            res = update_partner(run, t, h, pairs, n, su, key_changed ? key : NULL, lookup);
        freeReplyObject(h);
        if (res == UNCHANGED || res == UPDATED) {
            strmap_put(run->partners, pid, (void *)1);
            strmap_put(run->seen, lookup, (void *)1);
        }
        return res;
    }
    freeReplyObject(h);
    redisReply *owner = rsync_command(run->o->rs, "GET %s", lookup);
    if (owner == NULL)
        return redis_failed(run, "partners");
    int taken = owner->type == REDIS_REPLY_STRING;
    freeReplyObject(owner);
    if (taken)
        return refuse(run, t, "api_key is in use by another partner");
    strmap_put(run->partners, pid, (void *)1);
    strmap_put(run->seen, lookup, (void *)1);
    if (run->o->dry_run)
        return would(run, t, name);
    char *secret = keys_new_webhook_secret();
    char *key_env = keys_seal_partner(run->o->keys, pid, "api_key", key);
    char *secret_env = keys_seal_partner(run->o->keys, pid, "webhook_secret", secret);
    keys_wipe_free(secret);
    if (key_env == NULL || secret_env == NULL) {
        xfree(key_env);
        xfree(secret_env);
        strmap_del(run->partners, pid);
        return refuse(run, t, "encryption failed");
    }
    const char *argv[5 + 4 + 12 + 6] = {
        pkey,    SCHEMA_KEY_PARTNERS, lookup,    SCHEMA_KEY_SEQ_PARTNER, pid, "api_key",
        key_env, "webhook_secret",    secret_env};
    int a = 9;
    for (int i = 0; i + 1 < n; i += 2) {
        if (*pairs[i + 1] == '\0')
            continue; /* as the api: nothing to clear on a new partner */
        argv[a++] = pairs[i];
        argv[a++] = pairs[i + 1];
    }
    static const char *const sealed_fields[] = {"new_mail_webhook_url_userinfo",
                                                "user_connected_webhook_url_userinfo",
                                                "user_disconnected_webhook_url_userinfo"};
    for (int i = 0; i < 3; i++)
        if (*su->sealed[i] != '\0') {
            argv[a++] = sealed_fields[i];
            argv[a++] = su->sealed[i];
        }
    redisReply *rep = rsync_script(run->o->rs, "partner_create", 4, a, argv, NULL);
    xfree(key_env);
    xfree(secret_env);
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        return redis_failed(run, "partners");
    }
    int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
    freeReplyObject(rep);
    if (!ok) {
        strmap_del(run->partners, pid);
        return refuse(run, t, "partner %s or its api_key appeared meanwhile", pid);
    }
    return IMPORTED;
}

/* ---- Providers ---- */

static enum outcome provider_row(struct run *run, const struct table *t)
{
    const char *id = col(t, V_ID), *code = col(t, V_CODE), *type = col(t, V_TYPE);
    const char *host = col(t, V_HOST), *scope = col(t, V_SCOPE);
    uint64_t port;
    if (!values_is_id(id))
        return refuse(run, t, "id is not a positive integer");
    if (!values_is_code(code))
        return refuse(run, t, "code must be 1 to 64 letters, digits, '_' or '-'");
    int oauth2;
    if (strncmp(type, "Oauth2::", 8) == 0)
        oauth2 = 1;
    else if (strncmp(type, "Plain::", 7) == 0)
        oauth2 = 0;
    else
        return refuse(run, t, "type is neither Plain::... nor Oauth2::...");
    if (!values_is_host(host))
        return refuse(run, t, "imap_host is not a host name");
    if (values_parse_u32(col(t, V_PORT), 1, 65535, &port) < 0)
        return refuse(run, t, "imap_port is not a port");
    char authorize[VALUES_URL_MAX + 1] = "", token[VALUES_URL_MAX + 1] = "", sport[8];
    if (oauth2) {
        values_join_url(col(t, V_SITE), col(t, V_AUTHORIZE), authorize);
        values_join_url(col(t, V_SITE), col(t, V_TOKEN), token);
        if (!values_is_http_url(authorize) || !values_is_http_url(token) ||
            values_has_control(authorize) || values_has_control(token))
            return refuse(run, t,
                          "oauth2_site with oauth2_authorize_url and oauth2_token_url "
                          "do not make http(s) URLs");
        if (strlen(scope) > TEXT_MAX || values_has_control(scope))
            return refuse(run, t, "oauth2_scope is too long or has control characters");
    }
    snprintf(sport, sizeof sport, "%u", (unsigned)port);
    /* The original's SMTP settings (used for tracer mail only): kept when
     * they make a host and a port, port 465 meaning implicit TLS. */
    const char *shost = col(t, V_SMTP_HOST), *sdomain = col(t, V_SMTP_DOMAIN), *stls = "";
    char smtp_port[8] = "";
    uint64_t sp;
    if (values_is_host(shost) && values_parse_u32(col(t, V_SMTP_PORT), 1, 65535, &sp) == 0) {
        snprintf(smtp_port, sizeof smtp_port, "%u", (unsigned)sp);
        stls = sp == 465                                 ? "implicit"
               : values_is_true(col(t, V_SMTP_STARTTLS)) ? "starttls"
                                                         : "none";
    } else {
        shost = "";
    }
    if (*shost == '\0' || !values_is_host(sdomain))
        sdomain = "";
    const char *pairs[] = {"imap_host",
                           host,
                           "imap_port",
                           sport,
                           "tls",
                           values_is_true(col(t, V_SSL)) ? "implicit" : "none",
                           "auth",
                           oauth2 ? "oauth2" : "plain",
                           "oauth2_authorize_url",
                           authorize,
                           "oauth2_token_url",
                           token,
                           "oauth2_scope",
                           oauth2 ? scope : "",
                           "smtp_host",
                           shost,
                           "smtp_port",
                           smtp_port,
                           "smtp_tls",
                           stls,
                           "smtp_domain",
                           sdomain};
    int n = (int)(sizeof pairs / sizeof pairs[0]);
    char key[SCHEMA_KEY_MAX];
    schema_key_provider(key, code);
    redisReply *h = hgetall(run, key);
    if (h == NULL)
        return redis_failed(run, "providers");
    enum outcome res = IMPORTED;
    if (h->elements > 0) {
        const char *diff = first_difference(h, pairs, n); /* one of pairs: outlives h */
        freeReplyObject(h);
        res = UNCHANGED;
        if (diff != NULL && run->o->dry_run) {
            res = would_update(run, t, diff);
        } else if (diff != NULL) {
            char status[16];
            update_fields(run, "provider_update", key, pairs, n, status);
            if (status[0] == '\0')
                return redis_failed(run, "providers");
            if (strcmp(status, "in_use") == 0)
                return refuse(run, t,
                              "provider %s changes between Plain and Oauth2 while connections "
                              "use it",
                              code);
            if (strcmp(status, "ok") != 0)
                return refuse(run, t, "provider %s was deleted meanwhile", code);
            res = would_update(run, t, diff);
        }
    } else {
        freeReplyObject(h);
        if (run->o->dry_run) {
            res = would(run, t, code);
        } else {
            /* The api's defaults for what the original did not have. */
            const char *argv[3 + 22 + 4] = {key, SCHEMA_KEY_PROVIDERS, code};
            int a = 3;
            for (int i = 0; i + 1 < n; i += 2) {
                if (*pairs[i + 1] == '\0')
                    continue;
                argv[a++] = pairs[i];
                argv[a++] = pairs[i + 1];
            }
            argv[a++] = "idle_renew_s";
            argv[a++] = "1500";
            argv[a++] = "max_connections";
            argv[a++] = "0";
            redisReply *rep = rsync_script(run->o->rs, "provider_create", 2, a, argv, NULL);
            if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
                freeReplyObject(rep);
                return redis_failed(run, "providers");
            }
            int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
            freeReplyObject(rep);
            if (!ok)
                return refuse(run, t, "provider %s appeared meanwhile", code);
        }
    }
    struct provider *p = xcalloc(1, sizeof *p);
    snprintf(p->code, sizeof p->code, "%s", code);
    p->oauth2 = oauth2;
    free_value(strmap_put(run->providers, id, p));
    return res;
}

/* ---- Connections ---- */

/* Updates partner pid's connection to code (there already) to client_id and
 * secret (in clear); diff names the first field that differs. */
static enum outcome update_conn(struct run *run, const struct table *t, const char *pid,
                                const char *code, const char *client_id, const char *secret,
                                const char *diff)
{
    if (run->o->dry_run)
        return would_update(run, t, diff);
    char *sealed = keys_seal_conn_secret(run->o->keys, pid, code, secret);
    if (sealed == NULL)
        return refuse(run, t, "encryption failed");
    char key[SCHEMA_KEY_MAX], status[16];
    schema_key_conn(key, pid, code);
    const char *pairs[] = {"oauth2_client_id", client_id, "oauth2_client_secret", sealed};
    update_fields(run, "connection_update", key, pairs, 4, status);
    xfree(sealed);
    if (status[0] == '\0')
        return redis_failed(run, "connections");
    if (strcmp(status, "ok") != 0)
        return refuse(run, t, "partner %s's connection to %s was deleted meanwhile", pid, code);
    return would_update(run, t, diff);
}

static enum outcome conn_row(struct run *run, const struct table *t)
{
    const char *id = col(t, C_ID), *pid = col(t, C_PARTNER), *client_id = col(t, C_CLIENT_ID);
    if (!values_is_id(id))
        return refuse(run, t, "id is not a positive integer");
    if (!values_is_id(pid) || !values_is_id(col(t, C_PROVIDER)))
        return refuse(run, t, "partner_id or imap_provider_id is not a positive integer");
    if (strmap_get(run->partners, pid) == NULL)
        return refuse(run, t, "unknown partner %s (not in partners.csv, or refused)", pid);
    const struct provider *prov = strmap_get(run->providers, col(t, C_PROVIDER));
    if (prov == NULL)
        return refuse(run, t, "unknown provider %s (not in imap_providers.csv, or refused)",
                      col(t, C_PROVIDER));
    if (strlen(client_id) > TEXT_MAX || values_has_control(client_id))
        return refuse(run, t, "oauth2_client_id is too long or has control characters");
    char seen[SCHEMA_KEY_MAX];
    if (schema_key_conn(seen, pid, prov->code) < 0)
        return refuse(run, t, "key too long");
    if (strmap_get(run->seen, seen) != NULL)
        return refuse(run, t, "duplicate connection of partner %s to %s", pid, prov->code);
    char *secret;
    if (open_secret(run, col(t, C_CLIENT_SECRET), &secret) < 0)
        return refuse(run, t, "undecryptable oauth2_client_secret (is --old-key-file right?)");
    enum outcome res = IMPORTED;
    char aad[SCHEMA_KEY_MAX];
    schema_aad_conn_secret(aad, pid, prov->code);
    redisReply *h = hgetall(run, seen);
    if (h == NULL) {
        keys_wipe_free(secret);
        return redis_failed(run, "connections");
    }
    if (h->elements > 0) {
        const char *diff = NULL;
        if (strcmp(hget(h, "deleting"), "1") == 0)
            diff = "state (being deleted)";
        else if (strcmp(hget(h, "oauth2_client_id"), client_id) != 0)
            diff = "oauth2_client_id";
        else if (!sealed_equals(run, hget(h, "oauth2_client_secret"), aad, secret))
            diff = "oauth2_client_secret";
        freeReplyObject(h);
        res = UNCHANGED;
        if (diff != NULL && strcmp(diff, "state (being deleted)") == 0) {
            keys_wipe_free(secret);
            return refuse(run, t, "partner %s's connection to %s is being deleted", pid,
                          prov->code);
        }
        if (diff != NULL)
            res = update_conn(run, t, pid, prov->code, client_id, secret, diff);
        keys_wipe_free(secret);
        if (res != UPDATED && res != UNCHANGED)
            return res;
    } else {
        freeReplyObject(h);
        if (run->o->dry_run) {
            keys_wipe_free(secret);
            res = would(run, t, prov->code);
        } else {
            char *sealed = keys_seal_conn_secret(run->o->keys, pid, prov->code, secret);
            keys_wipe_free(secret);
            if (sealed == NULL)
                return refuse(run, t, "encryption failed");
            char kprov[SCHEMA_KEY_MAX], kconns[SCHEMA_KEY_MAX], kpartner[SCHEMA_KEY_MAX];
            schema_key_provider(kprov, prov->code);
            schema_key_partner_conns(kconns, pid);
            schema_key_partner(kpartner, pid);
            const char *argv[9] = {kprov, seen, kconns, kpartner, prov->code};
            int a = 5;
            if (*client_id != '\0') {
                argv[a++] = "oauth2_client_id";
                argv[a++] = client_id;
            }
            if (*sealed != '\0') {
                argv[a++] = "oauth2_client_secret";
                argv[a++] = sealed;
            }
            redisReply *rep = rsync_script(run->o->rs, "connection_create", 4, a, argv, NULL);
            xfree(sealed);
            if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
                freeReplyObject(rep);
                return redis_failed(run, "connections");
            }
            char status[32];
            snprintf(status, sizeof status, "%s", rep->str ? rep->str : "");
            freeReplyObject(rep);
            if (strcmp(status, "ok") != 0)
                return refuse(run, t, "connection_create answered %s", status);
        }
    }
    strmap_put(run->seen, seen, (void *)1);
    struct conn *c = xcalloc(1, sizeof *c);
    snprintf(c->pid, sizeof c->pid, "%s", pid);
    snprintf(c->code, sizeof c->code, "%s", prov->code);
    c->oauth2 = prov->oauth2;
    free_value(strmap_put(run->conns, id, c));
    return res;
}

/* ---- Users ---- */

/* The user id of the original's user id (see the file's comment). */
static int derive_uid(struct run *run, const char *id, char uid[SCHEMA_UID_LEN + 1])
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "superimap-import user %s", id);
    unsigned char mac[CRYPTO_SHA256_LEN];
    if (crypto_hmac_sha256(run->o->old_key, run->o->old_key_len, msg, (size_t)n, mac) < 0)
        return -1;
    crypto_hex_encode(mac, SCHEMA_UID_LEN / 2, uid);
    return 0;
}

/* Row values of a user, checked. */
struct user_row {
    const struct conn *c;
    const char *tag, *email, *username;
    char ltag[TAG_MAX + 1], lemail[EMAIL_MAX + 1];
    char connected_at[24], login_at[24], email_at[24];
    char validity[12], last_uid[12];
    int archived, tracer;
};

/* Checks the row into *u; NULL or the reason it is refused. */
static const char *check_user(struct run *run, const struct table *t, struct user_row *u)
{
    u->c = strmap_get(run->conns, col(t, U_CONN));
    if (!values_is_id(col(t, U_ID)))
        return "id is not a positive integer";
    if (u->c == NULL)
        return "unknown partner connection (not in partner_connections.csv, or refused)";
    u->tag = col(t, U_TAG);
    u->email = col(t, U_EMAIL);
    u->username = col(t, U_USERNAME);
    if (*u->tag == '\0' || strlen(u->tag) > TAG_MAX || values_has_control(u->tag))
        return "tag is empty, longer than 255 bytes or has control characters";
    if (strlen(u->email) > EMAIL_MAX || values_has_control(u->email))
        return "email is longer than 320 bytes or has control characters";
    if (strlen(u->username) > TEXT_MAX || values_has_control(u->username))
        return "login_username is too long or has control characters";
    values_lower(u->tag, u->ltag, sizeof u->ltag);
    values_lower(u->email, u->lemail, sizeof u->lemail);
    if (values_parse_time(col(t, U_CONNECTED_AT), u->connected_at) < 0)
        return "connected_at is not a timestamp";
    if (values_parse_time(col(t, U_LOGIN_AT), u->login_at) < 0)
        return "last_login_at is not a timestamp";
    if (values_parse_time(col(t, U_EMAIL_AT), u->email_at) < 0)
        return "last_email_at is not a timestamp";
    u->archived = values_is_true(col(t, U_ARCHIVED));
    u->tracer = values_is_true(col(t, U_TRACER));
    u->validity[0] = u->last_uid[0] = '\0';
    const char *v = col(t, U_VALIDITY), *l = col(t, U_LAST_UID);
    if (*v != '\0' && *l != '\0') {
        uint64_t vv, lv;
        if (values_parse_u32(v, 1, UINT32_MAX, &vv) < 0)
            return "last_uid_validity is not a UIDVALIDITY (1 to 4294967295)";
        if (values_parse_u32(l, 0, UINT32_MAX, &lv) < 0)
            return "last_uid is not a UID (0 to 4294967295)";
        snprintf(u->validity, sizeof u->validity, "%llu", (unsigned long long)vv);
        snprintf(u->last_uid, sizeof u->last_uid, "%llu", (unsigned long long)lv);
    }
    return NULL;
}

/* A user a run imported before, as it stands. */
struct user_have {
    char ltag[TAG_MAX + 1], lemail[EMAIL_MAX + 1]; /* lower case, for its index keys */
    const char *diff; /* the first field of the row that differs, or NULL */
};

/* Reads user uid (hash key, cursor cur) and compares it with row u (its
 * other fields as the n pairs, its secret in clear) into *have. 0, or -1
 * when Redis failed. The cursor differs only when the row's is further on
 * (see user_import.lua). */
static int user_compare(struct run *run, const char *key, const char *cur, const char *uid,
                        const struct user_row *u, const char *const *pairs, int n,
                        const char *secret, struct user_have *have)
{
    redisReply *h = hgetall(run, key);
    if (h == NULL)
        return -1;
    redisReply *c = rsync_command(run->o->rs, "HMGET %s uidvalidity last_uid", cur);
    if (c == NULL || c->type != REDIS_REPLY_ARRAY || c->elements != 2) {
        freeReplyObject(h);
        freeReplyObject(c);
        return -1;
    }
    values_lower(hget(h, "tag"), have->ltag, sizeof have->ltag);
    values_lower(hget(h, "email"), have->lemail, sizeof have->lemail);
    char aad[SCHEMA_KEY_MAX];
    schema_aad_user_secret(aad, uid);
    have->diff = first_difference(h, pairs, n);
    if (have->diff == NULL && !sealed_equals(run, hget(h, "secret"), aad, secret))
        have->diff = "secret";
    const char *validity = c->element[0]->str, *last = c->element[1]->str;
    if (have->diff == NULL && u->validity[0] != '\0' &&
        (validity == NULL ||
         (strcmp(validity, u->validity) == 0 &&
          strtoull(last ? last : "0", NULL, 10) < strtoull(u->last_uid, NULL, 10))))
        have->diff = "cursor";
    freeReplyObject(h);
    freeReplyObject(c);
    return 0;
}

/* Runs user_import.lua for row u: keys are the connection, its users,
 * the row's tag and email keys, the user, its shard's users and its cursor
 * (KEYS[1..6], KEYS[8]); sealed its secret, secret the same in clear. A user
 * there already is compared with the row and, when it differs, updated by
 * the same script. */
static enum outcome write_user(struct run *run, const struct table *t, const struct user_row *u,
                               const char *const keys[7], const char *uid, const char *ks,
                               const char *sealed, const char *const *pairs, int n,
                               const char *secret)
{
    const char *pid = u->c->pid, *code = u->c->code;
    const char *archived = u->archived ? "1" : "0", *tracer = u->tracer ? "1" : "0";
    char old_tag[SCHEMA_KEY_MAX] = "", old_email[SCHEMA_KEY_MAX] = "";
    struct user_have have = {.diff = NULL};
    const char *const kk[] = {
        keys[0], keys[1], keys[2],  keys[3], keys[4], keys[5], SCHEMA_KEY_CHANGES,
        keys[6], old_tag, old_email};
    const char *const args[] = {
        uid,         ks,          u->tag,      u->email,    u->username, sealed,
        archived,    tracer,      u->ltag,     pid,         code,        u->connected_at,
        u->login_at, u->email_at, u->validity, u->last_uid, have.ltag,   have.lemail};
    int update = 0;
    for (;;) {
        /* Without the last two KEYS and ARGV: create only ('exists' if there). */
        int nkeys = update ? 10 : 8, nargs = update ? 18 : 16;
        const char *av[28];
        int a = 0;
        for (int i = 0; i < nkeys; i++)
            av[a++] = kk[i];
        for (int i = 0; i < nargs; i++)
            av[a++] = args[i];
        redisReply *rep = rsync_script(run->o->rs, "user_import", nkeys, a, av, NULL);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->str == NULL) {
            freeReplyObject(rep);
            return redis_failed(run, "users");
        }
        char status[16], field[16] = "tag";
        snprintf(status, sizeof status, "%s", rep->element[0]->str);
        if (rep->elements > 1 && rep->element[1]->str && strcmp(rep->element[1]->str, "email") == 0)
            snprintf(field, sizeof field, "email");
        freeReplyObject(rep);
        if (strcmp(status, "ok") == 0)
            return IMPORTED;
        if (strcmp(status, "updated") == 0)
            return would_update(run, t, have.diff);
        if (strcmp(status, "conflict") == 0)
            return refuse(run, t, "%s is taken by another user of the connection", field);
        if (strcmp(status, "retry") == 0)
            return refuse(run, t, "user %s changed while it was compared; run again", uid);
        if (strcmp(status, "exists") != 0 || update)
            return refuse(run, t, "the connection is being deleted");
        if (user_compare(run, keys[4], keys[6], uid, u, pairs, n, secret, &have) < 0)
            return redis_failed(run, "users");
        if (have.diff == NULL)
            return UNCHANGED;
        if (schema_key_tag(old_tag, pid, code, have.ltag) < 0 ||
            schema_key_email(old_email, pid, code, have.lemail) < 0)
            return refuse(run, t, "tag or email too long for a key");
        update = 1;
    }
}

static enum outcome user_row(struct run *run, const struct table *t)
{
    struct user_row u;
    const char *why = check_user(run, t, &u);
    if (why != NULL)
        return refuse(run, t, "%s", why);
    char idkey[48];
    snprintf(idkey, sizeof idkey, "user %s", col(t, U_ID));
    if (strmap_get(run->seen, idkey) != NULL)
        return refuse(run, t, "duplicate id");
    strmap_put(run->seen, idkey, (void *)1);
    const char *pid = u.c->pid, *code = u.c->code;
    char tagkey[SCHEMA_KEY_MAX], emailkey[SCHEMA_KEY_MAX];
    if (schema_key_tag(tagkey, pid, code, u.ltag) < 0 ||
        schema_key_email(emailkey, pid, code, u.lemail) < 0)
        return refuse(run, t, "tag or email too long for a key");
    if (!u.archived && strmap_get(run->seen, tagkey) != NULL)
        return refuse(run, t, "duplicate tag \"%s\" among the connection's live users", u.tag);
    if (!u.archived && *u.email != '\0' && strmap_get(run->seen, emailkey) != NULL)
        return refuse(run, t, "duplicate email among the connection's live users");
    const char *column = u.c->oauth2 ? "oauth2_refresh_token" : "login_password";
    char *secret;
    if (open_secret(run, col(t, u.c->oauth2 ? U_TOKEN : U_PASSWORD), &secret) < 0)
        return refuse(run, t, "undecryptable %s (is --old-key-file right?)", column);
    if (strlen(secret) > 4096) {
        keys_wipe_free(secret);
        return refuse(run, t, "%s is longer than 4096 bytes", column);
    }
    char uid[SCHEMA_UID_LEN + 1];
    if (derive_uid(run, col(t, U_ID), uid) < 0) {
        keys_wipe_free(secret);
        return refuse(run, t, "cannot derive its id");
    }
    uint32_t k = hrw_shard(uid, run->o->shards);
    char ks[16], ukey[SCHEMA_KEY_MAX], cur[SCHEMA_KEY_MAX], kconn[SCHEMA_KEY_MAX],
        kusers[SCHEMA_KEY_MAX], shard_users[SCHEMA_SHARD_KEY_MAX];
    snprintf(ks, sizeof ks, "%u", k);
    schema_key_user(ukey, k, uid);
    schema_key_cur(cur, k, uid);
    schema_key_conn(kconn, pid, code);
    schema_key_conn_users(kusers, pid, code);
    schema_key_shard_users(shard_users, k);
    const char *archived = u.archived ? "1" : "0", *tracer = u.tracer ? "1" : "0";
    const char *pairs[] = {"pid",      pid,        "code",          code,
                           "tag",      u.tag,      "email",         u.email,
                           "username", u.username, "connected_at",  u.connected_at,
                           "archived", archived,   "enable_tracer", tracer};
    int n = (int)(sizeof pairs / sizeof pairs[0]);
    enum outcome res;
    if (run->o->dry_run) {
        redisReply *x = rsync_command(run->o->rs, "EXISTS %s", ukey);
        redisReply *e = x ? rsync_command(run->o->rs, "EXISTS %s", tagkey) : NULL;
        if (x == NULL || e == NULL || x->type != REDIS_REPLY_INTEGER ||
            e->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(x);
            freeReplyObject(e);
            keys_wipe_free(secret);
            return redis_failed(run, "users");
        }
        int exists = x->integer == 1, tag_taken = e->integer == 1;
        freeReplyObject(x);
        freeReplyObject(e);
        struct user_have have;
        if (exists && user_compare(run, ukey, cur, uid, &u, pairs, n, secret, &have) < 0) {
            keys_wipe_free(secret);
            return redis_failed(run, "users");
        }
        if (exists)
            res = have.diff ? would_update(run, t, have.diff) : UNCHANGED;
        else if (tag_taken && !u.archived)
            res = refuse(run, t, "tag \"%s\" is taken by another user of the connection", u.tag);
        else
            res = would(run, t, u.tag);
    } else {
        char *sealed = keys_seal_user(run->o->keys, uid, "secret", secret);
        if (sealed == NULL) {
            keys_wipe_free(secret);
            return refuse(run, t, "encryption failed");
        }
        const char *keys[] = {kconn, kusers, tagkey, emailkey, ukey, shard_users, cur};
        res = write_user(run, t, &u, keys, uid, ks, sealed, pairs, n, secret);
        keys_wipe_free(sealed);
    }
    keys_wipe_free(secret);
    if ((res == IMPORTED || res == UPDATED || res == UNCHANGED) && !u.archived) {
        strmap_put(run->seen, tagkey, (void *)1);
        if (*u.email != '\0')
            strmap_put(run->seen, emailkey, (void *)1);
    }
    return res;
}

/* ---- Files ---- */

/* Reads dir/file whole and its header; 0 or -SIMAP_EINVAL (printed). */
static int open_table(const char *dir, const struct table_spec *spec, struct table *t)
{
    memset(t, 0, sizeof *t);
    t->spec = spec;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, spec->file);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        fprintf(stderr, "superimap-import: cannot open %s: %s\n", path, strerror(e));
        return -SIMAP_EINVAL;
    }
    size_t cap = 1 << 16, len = 0;
    t->data = xmalloc(cap);
    size_t got;
    while ((got = fread(t->data + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            if (cap >= FILE_MAX) {
                fclose(f);
                fprintf(stderr, "superimap-import: %s is larger than 4 GiB\n", path);
                return -SIMAP_EINVAL;
            }
            cap *= 2;
            t->data = xrealloc(t->data, cap);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "superimap-import: cannot read %s\n", path);
        return -SIMAP_EINVAL;
    }
    t->csv = csv_new(t->data, len);
    if (csv_next(t->csv) != 1) {
        fprintf(stderr, "superimap-import: %s has no header row%s%s\n", path,
                *csv_error(t->csv) ? ": " : "", csv_error(t->csv));
        return -SIMAP_EINVAL;
    }
    int rc = 0;
    t->width = csv_count(t->csv);
    for (int c = 0; spec->cols[c] != NULL; c++) {
        const char *name = spec->cols[c] + (spec->cols[c][0] == '*');
        t->col[c] = -1;
        for (size_t i = 0; i < csv_count(t->csv); i++)
            if (strcmp(csv_field(t->csv, i, NULL), name) == 0)
                t->col[c] = (int)i;
        if (t->col[c] < 0 && spec->cols[c][0] == '*') {
            fprintf(stderr, "superimap-import: %s lacks the column %s\n", path, name);
            rc = -SIMAP_EINVAL;
        }
    }
    if (rc < 0)
        return rc;
    /* The whole file is CSV before anything is written: a syntax error
     * stops the run here, not halfway through a table. */
    while ((rc = csv_next(t->csv)) == 1)
        ;
    if (rc < 0) {
        fprintf(stderr, "superimap-import: %s line %zu: %s\n", path, csv_line(t->csv),
                csv_error(t->csv));
        return -SIMAP_EINVAL;
    }
    csv_free(t->csv);
    t->csv = csv_new(t->data, len);
    csv_next(t->csv);
    return 0;
}

static void close_table(struct table *t)
{
    csv_free(t->csv);
    xfree(t->data);
}

typedef enum outcome row_fn(struct run *run, const struct table *t);

/* Every row of t (whose whole file open_table() read as CSV) through fn;
 * 0, or -SIMAP_ECONN on a Redis failure. */
static int import_table(struct run *run, struct table *t, row_fn *fn, struct import_counts *c)
{
    while (csv_next(t->csv) == 1) {
        enum outcome res;
        if (csv_count(t->csv) != t->width)
            res = refuse(run, t, "has %zu fields where the header has %zu", csv_count(t->csv),
                         t->width);
        else if (!row_is_text(t))
            res = refuse(run, t, "a field holds a NUL byte");
        else
            res = fn(run, t);
        if (res == FAILED)
            return -SIMAP_ECONN;
        if (res == IMPORTED)
            c->imported++;
        else if (res == UPDATED)
            c->updated++;
        else if (res == UNCHANGED)
            c->unchanged++;
        else
            c->refused++;
    }
    return 0;
}

int import_run(const struct import_opts *o, struct import_counts counts[IMPORT_TABLES])
{
    memset(counts, 0, IMPORT_TABLES * sizeof counts[0]);
    struct table tables[IMPORT_TABLES];
    int rc = 0;
    for (int i = 0; i < IMPORT_TABLES; i++)
        if (open_table(o->dir, &specs[i], &tables[i]) < 0)
            rc = -SIMAP_EINVAL;
    struct run run = {
        .o = o,
        .partners = strmap_new(),
        .providers = strmap_new(),
        .conns = strmap_new(),
        .seen = strmap_new(),
    };
    static row_fn *const fns[IMPORT_TABLES] = {partner_row, provider_row, conn_row, user_row};
    for (int i = 0; i < IMPORT_TABLES && rc == 0; i++)
        rc = import_table(&run, &tables[i], fns[i], &counts[i]);
    for (int i = 0; i < IMPORT_TABLES; i++)
        close_table(&tables[i]);
    strmap_free(run.partners, NULL);
    strmap_free(run.providers, free_value);
    strmap_free(run.conns, free_value);
    strmap_free(run.seen, NULL);
    return rc;
}
