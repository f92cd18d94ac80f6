/*
 * tests/integration/webhook_fixture.h: what the dispatcher's integration
 * tests and benchmark need around the receiver: partners written straight
 * into Redis as the api will write them (core/schema.h, secrets sealed with
 * core/crypto under the harness's test key), users, and events enqueued
 * through scripts/lua/event_enqueue.lua exactly as the api and the
 * watcher's record_mail do. Header-only (static functions), like
 * tests/unit/redis_fixture.h.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_WEBHOOK_FIXTURE_H
#define TESTS_INTEGRATION_WEBHOOK_FIXTURE_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/json.h"
#include "core/scripts.h"

#define WF_FN     static __attribute__((unused))
#define WF_KEY    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define WF_SHARDS 64

/* The key ring of the harness's SUPERIMAP_ENCRYPTION_KEY (made once). */
WF_FN const struct crypto_keys *wf_keys(void)
{
    static struct crypto_keys *keys;
    if (keys == NULL) {
        char err[128];
        if (crypto_keys_init(&keys, WF_KEY, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "webhook_fixture: %s\n", err);
            abort();
        }
        scripts_init();
    }
    return keys;
}

/* Runs a command; aborts the test process on a transport error. Returns the
 * reply (freeReplyObject() it). */
WF_FN redisReply *wf_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        fprintf(stderr, "webhook_fixture: Redis: %s\n", c->errstr);
        abort();
    }
    return r;
}

WF_FN long long wf_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    freeReplyObject(r);
    return v;
}

/* HGET into out ("" when absent). */
WF_FN const char *wf_hget(redisContext *c, const char *key, const char *field, char *out, size_t n)
{
    redisReply *r = wf_cmd(c, "HGET %s %s", key, field);
    snprintf(out, n, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return out;
}

/* A fresh "whsec_" secret (base64 of 32 random bytes) into out (64 bytes). */
WF_FN void wf_whsec(char *out, size_t n)
{
    unsigned char raw[32];
    crypto_random(raw, sizeof raw);
    char *b = crypto_b64_encode(raw, sizeof raw);
    snprintf(out, n, "whsec_%s", b);
    xfree(b);
}

/* Seals plain for field name of partner pid (AAD si:partner:<pid>:<name>). */
WF_FN char *wf_seal_partner(const char *pid, const char *name, const char *plain)
{
    char aad[128];
    snprintf(aad, sizeof aad, "si:partner:%s:%s", pid, name);
    char *env = NULL;
    if (crypto_encrypt(wf_keys(), plain, strlen(plain), aad, &env) < 0)
        abort();
    return env;
}

/* A partner as the api writes it: api_key and webhook_secret sealed, the three
 * webhook URLs at base/hook/<pid>/<type> (base "" leaves them unset), then
 * extra field/value pairs (NULL-terminated list) such as
 * "webhook_concurrency", "2". */
WF_FN void wf_partner(redisContext *c, const char *pid, const char *base, const char *api_key,
                      const char *whsec, ...)
{
    char key[64], u1[256], u2[256], u3[256];
    snprintf(key, sizeof key, "si:partner:%s", pid);
    if (base[0] != '\0') {
        snprintf(u1, sizeof u1, "%s/hook/%s/new_mail", base, pid);
        snprintf(u2, sizeof u2, "%s/hook/%s/user_connected", base, pid);
        snprintf(u3, sizeof u3, "%s/hook/%s/user_disconnected", base, pid);
    } else {
        u1[0] = u2[0] = u3[0] = '\0';
    }
    char *ak = wf_seal_partner(pid, "api_key", api_key);
    char *ws = wf_seal_partner(pid, "webhook_secret", whsec);
    freeReplyObject(wf_cmd(c,
                           "HSET %s name %s api_key %s webhook_secret %s new_mail_webhook_url %s "
                           "user_connected_webhook_url %s user_disconnected_webhook_url %s "
                           "created_at 1",
                           key, pid, ak, ws, u1, u2, u3));
    xfree(ak);
    xfree(ws);
    va_list ap;
    va_start(ap, whsec);
    const char *f;
    while ((f = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        freeReplyObject(wf_cmd(c, "HSET %s %s %s", key, f, v));
    }
    va_end(ap);
}

/* The shard of a user id. */
WF_FN int wf_shard(const char *uid)
{
    return (int)hrw_shard(uid, WF_SHARDS);
}

/* A user of partner pid: hash, shard's users zset and tag index. */
WF_FN void wf_user(redisContext *c, const char *uid, const char *pid, const char *tag, int tracer)
{
    int k = wf_shard(uid);
    freeReplyObject(wf_cmd(c,
                           "HSET si:{%d}:user:%s uid %s pid %s code gmail tag %s email %s@x.test "
                           "archived 0 state watching enable_tracer %s connected_at 1",
                           k, uid, uid, pid, tag, tag, tracer ? "1" : "0"));
    freeReplyObject(wf_cmd(c, "ZADD si:{%d}:users 0 %s", k, uid));
    freeReplyObject(wf_cmd(c, "SET si:tag:%s:gmail:%s %s", pid, tag, uid));
}

/* A 24-hex-digit user id made from n. */
WF_FN void wf_uid(char out[25], unsigned n)
{
    snprintf(out, 25, "%08x%016x", n * 2654435761u, n);
}

/*
 * The payload of a new_mail event as the watcher makes it (the body without
 * timestamp and signature), with a raw message of about body_bytes. Returns a
 * new string (xfree() it) and the message's SHA-1 in sha1.
 */
WF_FN char *wf_new_mail_payload(const char *eid, const char *tag, unsigned uidn, size_t body_bytes,
                                char sha1[CRYPTO_SHA1_HEX_LEN + 1])
{
    struct buf raw;
    buf_init(&raw, body_bytes + 4096);
    buf_printf(&raw,
               "From: Alice <alice@example.org>\r\nTo: %s@x.test\r\nSubject: hello %u\r\n"
               "Message-ID: <%s@x.test>\r\n\r\n",
               tag, uidn, eid);
    while (raw.len < body_bytes)
        buf_puts(&raw, "The quick brown fox jumps over the lazy dog. 0123456789\r\n");
    crypto_sha1_hex(raw.data, raw.len, sha1);
    struct json_gen *g = json_gen_new(body_bytes * 2 + 8192);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", tag);
    json_gen_key_str(g, "imap_provider_code", "gmail");
    json_gen_key_object(g, "envelope");
    json_gen_key_str(g, "date", "Mon, 7 Feb 1994 21:52:25 -0800");
    json_gen_key_str(g, "subject", "hello");
    json_gen_key_array(g, "from");
    json_gen_object_open(g);
    json_gen_key_str(g, "name", "Alice");
    json_gen_key_null(g, "route");
    json_gen_key_str(g, "mailbox", "alice");
    json_gen_key_str(g, "host", "example.org");
    json_gen_object_close(g);
    json_gen_array_close(g);
    json_gen_object_close(g);
    json_gen_key_strn(g, "rfc822", raw.data, raw.len);
    json_gen_key_str(g, "event", "new_mail");
    json_gen_key_str(g, "id", eid);
    json_gen_key_int(g, "uid", uidn);
    json_gen_key_int(g, "uidvalidity", 7);
    json_gen_key_int(g, "size", (int64_t)raw.len);
    json_gen_key_bool(g, "too_large", 0);
    json_gen_object_close(g);
    char *out = NULL;
    if (json_gen_finish(g, &out, NULL) < 0)
        abort();
    json_gen_free(g);
    buf_free(&raw);
    return out;
}

/* The payload of a user_connected / user_disconnected event as the api makes
 * it; sha1 is the SHA-1 of the tag. Returns a new string (xfree() it). */
WF_FN char *wf_user_payload(const char *type, const char *eid, const char *tag,
                            char sha1[CRYPTO_SHA1_HEX_LEN + 1])
{
    crypto_sha1_hex(tag, strlen(tag), sha1);
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", tag);
    json_gen_key_str(g, "imap_provider_code", "gmail");
    if (strcmp(type, "user_connected") == 0) {
        char email[128];
        snprintf(email, sizeof email, "%s@x.test", tag);
        json_gen_key_str(g, "email", email);
    }
    json_gen_key_str(g, "event", type);
    json_gen_key_str(g, "id", eid);
    json_gen_object_close(g);
    char *out = NULL;
    if (json_gen_finish(g, &out, NULL) < 0)
        abort();
    json_gen_free(g);
    return out;
}

/*
 * Enqueues event eid (shard from uid) of partner pid through event_enqueue.lua
 * with payload sealed under AAD si:evt:<eid>; payload NULL stores the raw
 * text raw_payload instead (to test bad data). Returns the script's result
 * (1 queued, 0 already there) or -1.
 */
WF_FN long long wf_enqueue_raw(redisContext *c, const char *eid, const char *pid, const char *type,
                               const char *uid, const char *tag, const char *sha1,
                               const char *payload, const char *raw_payload)
{
    int k = wf_shard(uid);
    char ek[300], rl[96], rp[64];
    snprintf(ek, sizeof ek, "si:{%d}:evt:%s", k, eid);
    snprintf(rl, sizeof rl, "si:{%d}:ready:%s", k, pid);
    snprintf(rp, sizeof rp, "si:{%d}:ready_partners", k);
    char *sealed = NULL;
    if (payload != NULL) {
        char aad[300];
        snprintf(aad, sizeof aad, "si:evt:%s", eid);
        if (crypto_encrypt(wf_keys(), payload, strlen(payload), aad, &sealed) < 0)
            abort();
    }
    const char *argv[] = {"EVAL",    script_find("event_enqueue")->body,
                          "3",       ek,
                          rl,        rp,
                          eid,       pid,
                          "type",    type,
                          "uid",     uid,
                          "code",    "gmail",
                          "tag",     tag,
                          "sha1",    sha1,
                          "payload", sealed ? sealed : raw_payload};
    redisReply *r = redisCommandArgv(c, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    xfree(sealed);
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "webhook_fixture: event_enqueue: %s\n", r->str);
    freeReplyObject(r);
    return v;
}

/* A new_mail event of user uid (message UID n) with a body_bytes message;
 * writes its id into eid (128 bytes). */
WF_FN long long wf_new_mail(redisContext *c, const char *pid, const char *uid, const char *tag,
                            unsigned n, size_t body_bytes, char *eid)
{
    snprintf(eid, 128, "%s.7.%u", uid, n);
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    char *payload = wf_new_mail_payload(eid, tag, n, body_bytes, sha1);
    long long v = wf_enqueue_raw(c, eid, pid, "new_mail", uid, tag, sha1, payload, NULL);
    xfree(payload);
    return v;
}

/* Milliseconds on CLOCK_MONOTONIC. */
WF_FN long long wf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
