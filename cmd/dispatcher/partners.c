/*
 * cmd/dispatcher/partners: partner settings cache (see partners.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/dispatcher/partners.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/dispatcher/queue.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/schema.h"
#include "core/strmap.h"
#include "core/time.h"

/* 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h: about a day. */
const int64_t partners_default_schedule[] = {5000,    30000,    120000,   600000,  1800000,
                                             3600000, 10800000, 21600000, 43200000};
const int partners_default_schedule_len = 9;

struct partners {
    struct queue *q;
    const struct crypto_keys *keys;
    int64_t ttl_ms;
    void (*on_loaded)(struct partner *p, void *data);
    void *data;
    struct strmap *map;
};

int event_type_parse(const char *name)
{
    if (strcmp(name, "new_mail") == 0)
        return EVT_NEW_MAIL;
    if (strcmp(name, "user_connected") == 0)
        return EVT_USER_CONNECTED;
    if (strcmp(name, "user_disconnected") == 0)
        return EVT_USER_DISCONNECTED;
    if (strcmp(name, "webhook_test") == 0)
        return EVT_WEBHOOK_TEST;
    if (strcmp(name, "user_reauth_required") == 0)
        return EVT_USER_REAUTH_REQUIRED;
    return -1;
}

int event_type_url(int t)
{
    return t == EVT_WEBHOOK_TEST           ? EVT_NEW_MAIL
           : t == EVT_USER_REAUTH_REQUIRED ? PARTNER_URL_REAUTH
                                           : t;
}

int partner_event_url(const struct partner *p, int t)
{
    int u = event_type_url(t);
    if (u == PARTNER_URL_REAUTH && (p->url[u] == NULL || p->url[u][0] == '\0'))
        return EVT_USER_DISCONNECTED;
    return u;
}

const char *partner_url_prefix(int url)
{
    static const char *const names[] = {"new_mail", "user_connected", "user_disconnected",
                                        "user_reauth_required"};
    return url >= 0 && url < PARTNER_URLS ? names[url] : "new_mail";
}

static void clear_settings(struct partner *p)
{
    for (int i = 0; i < PARTNER_URLS; i++) {
        xfree(p->url[i]);
        xfree(p->disabled[i]);
        keys_wipe_free(p->send_url[i]);
        p->url[i] = p->disabled[i] = p->send_url[i] = NULL;
    }
    if (p->api_key != NULL) {
        crypto_wipe(p->api_key, p->api_key_len);
        xfree(p->api_key);
        p->api_key = NULL;
    }
    crypto_wipe(p->secret, sizeof p->secret);
    crypto_wipe(p->old_secret, sizeof p->old_secret);
    p->api_key_len = p->secret_len = p->old_secret_len = 0;
    p->old_until_ms = 0;
}

static void partner_free(void *v)
{
    struct partner *p = v;
    clear_settings(p);
    xfree(p->blocked);
    xfree(p->pid);
    xfree(p);
}

struct partners *partners_new(struct queue *q, const struct crypto_keys *keys, int64_t ttl_ms,
                              void (*on_loaded)(struct partner *p, void *data), void *data)
{
    struct partners *ps = xcalloc(1, sizeof *ps);
    ps->q = q;
    ps->keys = keys;
    ps->ttl_ms = ttl_ms;
    ps->on_loaded = on_loaded;
    ps->data = data;
    ps->map = strmap_new();
    return ps;
}

void partners_free(struct partners *ps)
{
    if (ps == NULL)
        return;
    strmap_free(ps->map, partner_free);
    xfree(ps);
}

struct partner *partners_get(struct partners *ps, const char *pid)
{
    struct partner *p = strmap_get(ps->map, pid);
    if (p == NULL) {
        p = xcalloc(1, sizeof *p);
        p->pid = xstrdup(pid);
        p->ps = ps;
        p->concurrency = PARTNER_DEFAULT_CONCURRENCY;
        strmap_put(ps->map, pid, p);
    }
    return p;
}

int partners_is_stale(const struct partners *ps, const struct partner *p, int64_t now_mono)
{
    return now_mono - p->loaded_mono >= ps->ttl_ms;
}

/* ---- Parsing one HGETALL ---- */

static const char *field(const redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            r->element[i + 1]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, name) == 0)
            return r->element[i + 1]->str;
    return NULL;
}

/* Decrypts field name (AAD si:partner:<pid>:<name>) into a new string. */
static int open_secret(const struct partners *ps, const struct partner *p, const char *envelope,
                       const char *name, char **out, size_t *len)
{
    char aad[SCHEMA_KEY_MAX];
    schema_aad_partner(aad, p->pid, name);
    return crypto_decrypt(ps->keys, envelope, aad, out, len);
}

/* "5,30,120": seconds, each 0 to 7 days. Returns the count or -1. */
static int parse_schedule(const char *s, int64_t *out)
{
    int n = 0;
    while (*s != '\0') {
        while (*s == ' ')
            s++;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno != 0 || v < 0 || v > 7 * 86400 || n == PARTNER_MAX_SCHEDULE)
            return -1;
        out[n++] = v * 1000;
        s = end;
        while (*s == ' ')
            s++;
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return -1;
    }
    return n;
}

/* Reads settings from reply into p; returns 0 or writes why into p->error. */
static void parse_partner(struct partners *ps, struct partner *p, const redisReply *r)
{
    clear_settings(p);
    p->error[0] = '\0';
    p->missing = r->elements == 0;
    p->loaded = 1;
    if (p->missing)
        return;
    for (int i = 0; i < PARTNER_URLS; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s_webhook_url", partner_url_prefix(i));
        const char *v = field(r, name);
        p->url[i] = xstrdup(v ? v : "");
        snprintf(name, sizeof name, "%s_webhook_url_userinfo", partner_url_prefix(i));
        const char *sealed = field(r, name);
        if (sealed != NULL && *sealed != '\0') {
            name[strlen(name) - 9] = '\0'; /* the URL's field */
            p->send_url[i] = keys_open_partner_url(ps->keys, p->pid, name, p->url[i], sealed);
            if (p->send_url[i] == NULL) {
                snprintf(p->error, sizeof p->error,
                         "partner %s credentials are not readable with our keys", name);
                return;
            }
        }
        snprintf(name, sizeof name, "%s_webhook_disabled", partner_url_prefix(i));
        v = field(r, name);
        p->disabled[i] = xstrdup(v ? v : "");
    }
    const char *v = field(r, "webhook_concurrency");
    p->concurrency = PARTNER_DEFAULT_CONCURRENCY;
    if (v != NULL && *v != '\0') {
        long c = strtol(v, NULL, 10);
        if (c >= 1 && c <= 100000)
            p->concurrency = (int)c;
    }
    v = field(r, "retry_schedule");
    p->nschedule = -1;
    if (v != NULL && *v != '\0' && (p->nschedule = parse_schedule(v, p->schedule_ms)) < 0)
        log_warn("partner retry_schedule is malformed; using the default pid=%s value=\"%s\"",
                 p->pid, v);
    if (p->nschedule < 0) {
        memcpy(p->schedule_ms, partners_default_schedule, sizeof partners_default_schedule);
        p->nschedule = partners_default_schedule_len;
    }

    const char *env = field(r, "api_key");
    if (env == NULL || *env == '\0' ||
        open_secret(ps, p, env, "api_key", &p->api_key, &p->api_key_len) < 0) {
        snprintf(p->error, sizeof p->error, "partner api_key is %s",
                 env == NULL || *env == '\0' ? "missing" : "not readable with our keys");
        return;
    }
    env = field(r, "webhook_secret");
    char *secret = NULL;
    size_t slen = 0;
    if (env == NULL || *env == '\0' ||
        open_secret(ps, p, env, "webhook_secret", &secret, &slen) < 0 ||
        webhook_secret_decode(secret, p->secret, sizeof p->secret, &p->secret_len) < 0) {
        snprintf(p->error, sizeof p->error, "partner webhook_secret is %s",
                 env == NULL || *env == '\0' ? "missing" : "not a readable whsec_ secret");
    }
    if (secret != NULL) {
        crypto_wipe(secret, slen);
        xfree(secret);
        secret = NULL;
    }
    if (p->error[0] != '\0')
        return;
    env = field(r, "webhook_secret_old");
    v = field(r, "webhook_secret_old_until");
    int64_t until = v != NULL ? strtoll(v, NULL, 10) : 0;
    if (env != NULL && *env != '\0' && until > time_now_ms()) {
        if (open_secret(ps, p, env, "webhook_secret_old", &secret, &slen) == 0 &&
            webhook_secret_decode(secret, p->old_secret, sizeof p->old_secret,
                                  &p->old_secret_len) == 0)
            p->old_until_ms = until;
        else
            log_warn("partner webhook_secret_old is not readable; signing with the new secret "
                     "only pid=%s",
                     p->pid);
        if (secret != NULL) {
            crypto_wipe(secret, slen);
            xfree(secret);
        }
    }
}

static void on_partner(redisReply *reply, int err, void *data)
{
    /* p is valid: partners live until partners_free(), which runs after
     * queue_free() has orphaned every pending call. */
    struct partner *p = data;
    struct partners *ps = p->ps;
    p->loading = 0;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (!p->loaded)
            snprintf(p->error, sizeof p->error, "cannot read partner settings: %s",
                     err < 0 ? err_str(err) : "unexpected reply");
        /* else: keep serving the settings we have; retry at the next use */
        log_warn("cannot read partner settings pid=%s err=\"%s\"", p->pid,
                 err < 0 ? err_str(err) : "unexpected reply");
    } else {
        parse_partner(ps, p, reply);
        p->loaded_mono = time_mono_ms();
        if (p->error[0] != '\0')
            log_warn("partner cannot be used err=\"%s\" pid=%s", p->error, p->pid);
    }
    ps->on_loaded(p, ps->data);
}

int partners_load(struct partners *ps, struct partner *p)
{
    if (p->loading)
        return 0;
    int rc = queue_partner(ps->q, p->pid, on_partner, p);
    if (rc < 0) {
        if (!p->loaded)
            snprintf(p->error, sizeof p->error, "cannot read partner settings: %s", err_str(rc));
        return rc;
    }
    p->loading = 1;
    return 0;
}

void partners_each(struct partners *ps, void (*fn)(const char *pid, void *partner, void *data),
                   void *data)
{
    strmap_each(ps->map, fn, data);
}
