/*
 * Helpers of the watcher's integration tests: providers, partners and users
 * written straight into Redis exactly as core/schema.h says (the api's
 * user_create script is not there yet), events read back and decrypted,
 * metrics scraped. Header-only (static functions) so every test_watcher*.c
 * includes what it uses and nothing else is linked into other tests.
 *
 * The encryption key is the harness's test key; a user's secret is sealed
 * with AAD "si:user:<uid>:secret", an event's payload opened with AAD
 * "si:evt:<eid>".
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_TEST_WATCHER_FIXTURE_H
#define TESTS_INTEGRATION_TEST_WATCHER_FIXTURE_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/json.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"

#define FX_FN     static __attribute__((unused))
#define FX_KEY    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define FX_SHARDS 64

static struct crypto_keys *fx_keys;

FX_FN int fx_init(void)
{
    char err[128];
    return fx_keys != NULL ? 0 : crypto_keys_init(&fx_keys, FX_KEY, NULL, err, sizeof err);
}

FX_FN void fx_shutdown(void)
{
    crypto_keys_free(fx_keys);
    fx_keys = NULL;
}

FX_FN unsigned fx_shard(const char *uid)
{
    return hrw_shard(uid, FX_SHARDS);
}

/*
 * A watcher suite's servers: Redis r and fake-imapd f (with a TLS listener on
 * port 0 when tls), started with the fake-imapd environment extra
 * (NULL-terminated; NULL: none). Also fx_init(). 0 or -1.
 */
FX_FN int fx_suite_start(struct redis_srv *r, struct fakeimap *f, int tls, const char *const *extra)
{
    signal(SIGPIPE, SIG_IGN);
    if (fx_init() < 0 || harness_redis_start(r) < 0 || fakeimap_prepare(f, tls) < 0)
        return -1;
    const char *env[16];
    size_t n = 0;
    if (tls)
        env[n++] = "SUPERIMAP_FAKE_TLS_PORT=0";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    return fakeimap_start(f, env);
}

/* Stops what fx_suite_start() started, and every other harness process. */
FX_FN int fx_suite_stop(struct redis_srv *r, struct fakeimap *f)
{
    fakeimap_stop(f, 0);
    harness_stop_all();
    harness_redis_stop(r);
    fx_shutdown();
    return 0;
}

/* Before each test: fake-imapd without faults and with fresh mailboxes, an
 * empty Redis. 0 or -1. */
FX_FN int fx_suite_reset(struct redis_srv *r, struct fakeimap *f)
{
    char out[64];
    if (fakeimap_faults(f, 0, 1, "none") < 0 || fakeimap_reset(f) < 0)
        return -1;
    return harness_redis_get(r, out, sizeof out, "FLUSHALL");
}

/* Runs a command given as an argument vector; returns the reply (free it). */
FX_FN redisReply *fx_cmdv(const struct redis_srv *r, int argc, const char **argv,
                          const size_t *lens)
{
    redisContext *c = harness_redis_connect(r);
    if (c == NULL)
        return NULL;
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    redisFree(c);
    return rep;
}

/* Runs a formatted command; returns the reply (free it). */
FX_FN redisReply *fx_cmd(const struct redis_srv *r, const char *fmt, ...)
{
    redisContext *c = harness_redis_connect(r);
    if (c == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

/* si:provider:<code> with the given server; tls is implicit|starttls|none. */
FX_FN int fx_provider(const struct redis_srv *r, const char *code, const char *host, int port,
                      const char *tls)
{
    redisReply *rep = fx_cmd(r,
                             "HSET si:provider:%s code %s imap_host %s imap_port %d tls %s auth "
                             "plain idle_renew_s 1500 max_connections 0",
                             code, code, host, port, tls);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    rep = fx_cmd(r, "SADD si:providers %s", code);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* A user as the api stores it: hash, shard zset, change stream entry. */
FX_FN int fx_user(const struct redis_srv *r, const char *uid, const char *pid, const char *code,
                  const char *tag, const char *login, const char *password)
{
    char aad[128], key[160], k[16];
    snprintf(aad, sizeof aad, "si:user:%s:secret", uid);
    char *sealed = NULL;
    if (crypto_encrypt(fx_keys, password, strlen(password), aad, &sealed) < 0)
        return -1;
    snprintf(k, sizeof k, "%u", fx_shard(uid));
    snprintf(key, sizeof key, "si:{%s}:user:%s", k, uid);
    const char *argv[] = {"HSET",     key,    "uid",          uid,    "pid",        pid,
                          "code",     code,   "tag",          tag,    "email",      login,
                          "username", login,  "secret",       sealed, "archived",   "0",
                          "state",    "idle", "connected_at", "1",    "created_at", "1"};
    redisReply *rep = fx_cmdv(r, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    xfree(sealed);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    rep = fx_cmd(r, "ZADD si:{%s}:users 0 %s", k, uid);
    ok = ok && rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    rep = fx_cmd(r, "XADD si:changes MAXLEN ~ 100000 * uid %s k %s op create", uid, k);
    ok = ok && rep != NULL && rep->type == REDIS_REPLY_STRING;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* uid's own list of mailboxes to watch (JSON as the api stores it). 0 or -1. */
FX_FN int fx_user_mailboxes(const struct redis_srv *r, const char *uid, const char *json)
{
    char key[96];
    snprintf(key, sizeof key, "si:{%u}:user:%s", fx_shard(uid), uid);
    const char *argv[] = {"HSET", key, "mailboxes", json};
    redisReply *rep = fx_cmdv(r, 4, argv, NULL);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* Tells the watchers that uid's record changed (op update on si:changes,
 * as every api change of a user does): its session loads it again and
 * reconnects. 0 or -1. */
FX_FN int fx_touch_user(const struct redis_srv *r, const char *uid)
{
    redisReply *rep =
        fx_cmd(r, "XADD si:changes MAXLEN ~ 100000 * uid %s k %u op update", uid, fx_shard(uid));
    int ok = rep != NULL && rep->type == REDIS_REPLY_STRING;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* n users of partner pid at provider code, as fx_user(): user i (from 1)
 * has uid prefix followed by i in three digits, tag and login "user<i>" and
 * password "pass<i>", as superimap-fake-imapd's SUPERIMAP_FAKE_USERS has
 * them. 0 or -1. */
FX_FN int fx_numbered_users(const struct redis_srv *r, const char *prefix, int n, const char *pid,
                            const char *code)
{
    for (int i = 1; i <= n; i++) {
        char uid[64], login[16], pass[16];
        snprintf(uid, sizeof uid, "%s%03d", prefix, i);
        snprintf(login, sizeof login, "user%d", i);
        snprintf(pass, sizeof pass, "pass%d", i);
        if (fx_user(r, uid, pid, code, login, login, pass) < 0)
            return -1;
    }
    return 0;
}

/* A partner's connection to provider code with an OAuth2 client, as the
 * api stores it (si:conn:<pid>:<code>, the secret sealed with AAD
 * "si:conn:<pid>:<code>:oauth2_client_secret"). 0 or -1. */
FX_FN int fx_oauth2_conn(const struct redis_srv *r, const char *pid, const char *code,
                         const char *client_id, const char *client_secret)
{
    char aad[160], key[160];
    snprintf(aad, sizeof aad, "si:conn:%s:%s:oauth2_client_secret", pid, code);
    snprintf(key, sizeof key, "si:conn:%s:%s", pid, code);
    char *sealed = NULL;
    if (crypto_encrypt(fx_keys, client_secret, strlen(client_secret), aad, &sealed) < 0)
        return -1;
    const char *argv[] = {"HSET", key, "oauth2_client_id", client_id, "oauth2_client_secret",
                          sealed};
    redisReply *rep = fx_cmdv(r, 6, argv, NULL);
    xfree(sealed);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* A user's stored OAuth2 access token (sealed with AAD
 * "si:user:<uid>:oauth2_access_token") and its expiry in ms. 0 or -1. */
FX_FN int fx_user_access_token(const struct redis_srv *r, const char *uid, const char *token,
                               long long expires_at_ms)
{
    char aad[160], key[160], exp[24];
    snprintf(aad, sizeof aad, "si:user:%s:oauth2_access_token", uid);
    snprintf(key, sizeof key, "si:{%u}:user:%s", fx_shard(uid), uid);
    snprintf(exp, sizeof exp, "%lld", expires_at_ms);
    char *sealed = NULL;
    if (crypto_encrypt(fx_keys, token, strlen(token), aad, &sealed) < 0)
        return -1;
    const char *argv[] = {"HSET", key, "oauth2_access_token", sealed, "oauth2_expires_at", exp};
    redisReply *rep = fx_cmdv(r, 6, argv, NULL);
    xfree(sealed);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* Archives a user as scripts/lua/user_archive.lua does (the parts the
 * watcher sees): archived flag, out of the shard zset, a change entry. */
FX_FN int fx_archive(const struct redis_srv *r, const char *uid)
{
    unsigned k = fx_shard(uid);
    redisReply *rep = fx_cmd(r, "HSET si:{%u}:user:%s archived 1 state archived", k, uid);
    freeReplyObject(rep);
    rep = fx_cmd(r, "ZREM si:{%u}:users %s", k, uid);
    freeReplyObject(rep);
    rep = fx_cmd(r, "XADD si:changes MAXLEN ~ 100000 * uid %s k %u op archive", uid, k);
    int ok = rep != NULL && rep->type == REDIS_REPLY_STRING;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* HGET of a user's field into out ("" when absent). */
FX_FN void fx_user_field(const struct redis_srv *r, const char *uid, const char *field, char *out,
                         size_t outlen)
{
    harness_redis_get(r, out, outlen, "HGET si:{%u}:user:%s %s", fx_shard(uid), uid, field);
}

/* Polls a user's field until it equals want or ms pass; 0 or -1. */
FX_FN int fx_wait_user_field(const struct redis_srv *r, const char *uid, const char *field,
                             const char *want, int ms)
{
    long long deadline = harness_now_ms() + ms;
    char out[512];
    do {
        fx_user_field(r, uid, field, out, sizeof out);
        if (strcmp(out, want) == 0)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "user %s: %s is \"%s\", not \"%s\", after %d ms\n", uid, field, out, want, ms);
    return -1;
}

/* A user's sealed field (secret, oauth2_access_token) decrypted into out
 * ("" when absent or unreadable). */
FX_FN void fx_user_opened(const struct redis_srv *r, const char *uid, const char *field, char *out,
                          size_t outlen)
{
    char sealed[4096], aad[160];
    out[0] = '\0';
    fx_user_field(r, uid, field, sealed, sizeof sealed);
    snprintf(aad, sizeof aad, "si:user:%s:%s", uid, field);
    char *plain = NULL;
    size_t len = 0;
    if (sealed[0] != '\0' && crypto_decrypt(fx_keys, sealed, aad, &plain, &len) == 0) {
        snprintf(out, outlen, "%.*s", (int)len, plain);
        xfree(plain);
    }
}

/* Number of events queued for partner pid in uid's shard. */
FX_FN long long fx_ready_count(const struct redis_srv *r, const char *uid, const char *pid)
{
    char out[32];
    if (harness_redis_get(r, out, sizeof out, "LLEN si:{%u}:ready:%s", fx_shard(uid), pid) < 0)
        return -1;
    return atoll(out);
}

/* Polls until pid's ready list in uid's shard holds at least n ids. */
FX_FN int fx_wait_ready(const struct redis_srv *r, const char *uid, const char *pid, long long n,
                        int ms)
{
    long long deadline = harness_now_ms() + ms;
    long long got;
    do {
        got = fx_ready_count(r, uid, pid);
        if (got >= n)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "user %s: %lld events ready, not %lld, after %d ms\n", uid, got, n, ms);
    return -1;
}

/* The ids in pid's ready list of uid's shard, oldest first, as one
 * space-separated string in out. Returns how many. */
FX_FN int fx_ready_ids(const struct redis_srv *r, const char *uid, const char *pid, char *out,
                       size_t outlen)
{
    redisReply *rep = fx_cmd(r, "LRANGE si:{%u}:ready:%s 0 -1", fx_shard(uid), pid);
    out[0] = '\0';
    int n = 0;
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = rep->elements; i-- > 0;) { /* LPUSH: newest first */
            size_t len = strlen(out);
            snprintf(out + len, outlen - len, "%s%s", n ? " " : "", rep->element[i]->str);
            n++;
        }
    }
    freeReplyObject(rep);
    return n;
}

/* Reads event eid of uid's shard and decrypts its payload. Returns the
 * parsed JSON object (json_free() it) or NULL; the event's hash field sha1
 * goes to sha1 (41 bytes) when not NULL. */
FX_FN yajl_val fx_event(const struct redis_srv *r, const char *uid, const char *eid, char *sha1)
{
    redisReply *rep = fx_cmd(r, "HMGET si:{%u}:evt:%s payload sha1 type", fx_shard(uid), eid);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return NULL;
    }
    if (sha1 != NULL)
        snprintf(sha1, 41, "%s", rep->element[1]->str ? rep->element[1]->str : "");
    char aad[160];
    snprintf(aad, sizeof aad, "si:evt:%s", eid);
    char *plain = NULL;
    size_t len = 0;
    int rc = crypto_decrypt(fx_keys, rep->element[0]->str, aad, &plain, &len);
    freeReplyObject(rep);
    if (rc < 0)
        return NULL;
    yajl_val v = NULL;
    char err[128];
    json_parse_object(plain, len, 64, &v, err, sizeof err);
    xfree(plain);
    return v;
}

/* A string at a path of object keys (NULL-terminated), or NULL. */
FX_FN const char *fx_json_str(yajl_val v, ...)
{
    va_list ap;
    va_start(ap, v);
    const char *key;
    const char *last = NULL;
    while ((key = va_arg(ap, const char *)) != NULL) {
        if (last != NULL)
            v = json_get(v, last);
        last = key;
    }
    va_end(ap);
    return last != NULL ? json_get_str(v, last) : NULL;
}

/* The decoded payload of the event of uid whose envelope subject is tag,
 * searched among pid's ready events in uid's shard; NULL when none. Counts such events in *count. */
FX_FN yajl_val fx_event_by_subject(const struct redis_srv *r, const char *pid, const char *uid,
                                   const char *tag, int *count)
{
    char ids[8192];
    fx_ready_ids(r, uid, pid, ids, sizeof ids);
    yajl_val found = NULL;
    *count = 0;
    for (char *save = NULL, *id = strtok_r(ids, " ", &save); id != NULL;
         id = strtok_r(NULL, " ", &save)) {
        if (strncmp(id, uid, strlen(uid)) != 0)
            continue;
        yajl_val v = fx_event(r, uid, id, NULL);
        const char *subject = v != NULL ? fx_json_str(v, "envelope", "subject", NULL) : NULL;
        if (subject != NULL && strcmp(subject, tag) == 0) {
            (*count)++;
            if (found == NULL) {
                found = v;
                continue;
            }
        }
        json_free(v);
    }
    return found;
}

/* Polls until uid's event with subject tag exists; returns it (json_free()
 * it), or NULL after ms. */
FX_FN yajl_val fx_wait_event_by_subject(const struct redis_srv *r, const char *pid, const char *uid,
                                        const char *tag, int ms)
{
    long long deadline = harness_now_ms() + ms;
    int n = 0;
    do {
        yajl_val v = fx_event_by_subject(r, pid, uid, tag, &n);
        if (v != NULL)
            return v;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "user %s: no event with subject %s after %d ms\n", uid, tag, ms);
    return NULL;
}

/* Polls a metric until it is at least want; 0 or -1. */
FX_FN int fx_wait_metric(int port, const char *series, double want, int ms)
{
    long long deadline = harness_now_ms() + ms;
    double v;
    do {
        v = harness_metric(port, series);
        if (v >= want)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "metric %s is %g, not >= %g, after %d ms\n", series, v, want, ms);
    return -1;
}

#endif
