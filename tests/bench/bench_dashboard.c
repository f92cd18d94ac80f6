/*
 * The admin dashboard's requests at scale: a private redis-server
 * (tests/unit/redis_fixture.h) filled with 10,000 partners and 1,000,000
 * users (BENCH_DASHBOARD_USERS to change it) in the formats the scripts
 * write (core/schema.h, scripts/lua/prelude/user.lua): partner and user
 * hashes, connections, the per-connection user zsets, tag and email keys,
 * the search indexes si:ix:partner ("<lower name>\x1f<pid>") and si:ix:user
 * ("<e|t|l><lower value>\x1f<uid>"), plus what the other pages read: nodes,
 * 20,000 ready and 5,000 retry events (event_enqueue.lua), 10,000 dead
 * letters, a 10,000-entry delivery log, 48 h of chart minutes and 200
 * circuits. The fill is pipelined (batches of 10,000 commands) and timed.
 *
 * Then one superimap-api started here (tests/bench/bench.h) answers each
 * /admin/api request the pages make, BENCH_DASHBOARD_RUNS times (default
 * 200) one after the other on one keep-alive connection, and a table
 * prints p50, p99 and max:
 *
 *   | request | measured as | runs | p50 ms | p99 ms | max ms | ≤ 300 ms |
 *
 * A request whose route this build does not have (it answers 404, 400 or
 * 405: the fleet's users, partner pagination, user search and detail come
 * with their own change) is measured as the Redis calls that route makes,
 * from this process, labelled "Redis calls": ZRANGEBYLEX ... LIMIT 0 50 on
 * the index, then one user_mget.lua of the 50 hashes (and their partners'
 * names for users), or the user's hash, partner, lease and its partner's
 * latest delivery-log entries for a user's page. Those rows leave out the
 * api's HTTP and JSON work, which the other rows show is small.
 *
 * With BENCH_DATA_DIR set it appends dashboard_users, dashboard_partners,
 * dashboard_fill_s and dashboard_worst_p99_ms to results.txt. Exits
 * non-zero when Redis or the api does not start or a request fails.
 *
 * SPDX-License-Identifier: MIT
 */
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/schema.h"
#include "core/scripts.h"
#include "core/stat.h"
#include "tests/bench/bench.h"
#include "tests/unit/redis_fixture.h"

#define TOKEN    "bench-admin-token-0123456789"
#define SHARDS   64
#define PARTNERS 10000
#define BATCH    10000 /* commands per pipeline flush */
#define PAGE     50
#define TARGET   300.0 /* ms, the budget per page */

static char logpath[160];

/* ---- Pipelined fill ---- */

struct pipe {
    redisContext *c;
    long pending;
    long sent;
    int failed;
};

/* Reads every pending reply; remembers an error reply or a broken link. */
static void pipe_flush(struct pipe *p)
{
    while (p->pending > 0) {
        void *r = NULL;
        if (redisGetReply(p->c, &r) != REDIS_OK) {
            fprintf(stderr, "bench_dashboard: fill: %s\n", p->c->errstr);
            p->failed = 1;
            p->pending = 0;
            return;
        }
        redisReply *reply = r;
        if (reply->type == REDIS_REPLY_ERROR && !p->failed) {
            fprintf(stderr, "bench_dashboard: fill: %s\n", reply->str);
            p->failed = 1;
        }
        freeReplyObject(reply);
        p->pending--;
    }
}

static void pipe_argv(struct pipe *p, int argc, const char **argv)
{
    redisAppendCommandArgv(p->c, argc, argv, NULL);
    p->sent++;
    if (++p->pending >= BATCH)
        pipe_flush(p);
}

__attribute__((format(printf, 2, 3))) static void pipe_cmd(struct pipe *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisvAppendCommand(p->c, fmt, ap);
    va_end(ap);
    p->sent++;
    if (++p->pending >= BATCH)
        pipe_flush(p);
}

static void uid_of(char out[SCHEMA_UID_LEN + 1], unsigned n)
{
    snprintf(out, SCHEMA_UID_LEN + 1, "%08x%016x", n * 2654435761u, n);
}

static unsigned pid_of_user(unsigned i)
{
    return 1 + i % PARTNERS;
}

/* One sealed value of n bytes (partners' keys, users' secrets and event
 * payloads are sealed envelopes of about that size; the pages never open
 * them, so one envelope stands for all). A new string. */
static char *sealed(const struct crypto_keys *keys, size_t n, const char *aad)
{
    char *plain = xmalloc(n + 1);
    memset(plain, 'x', n);
    plain[n] = '\0';
    char *env = NULL;
    if (crypto_encrypt(keys, plain, n, aad, &env) < 0)
        abort();
    xfree(plain);
    return env;
}

static void fill_partners(struct pipe *p, const struct crypto_keys *keys, int64_t now)
{
    char *key = sealed(keys, 43, "si:partner:1:api_key");
    char *sec = sealed(keys, 50, "si:partner:1:webhook_secret");
    pipe_cmd(p,
             "HSET si:provider:gmail code gmail imap_host imap.gmail.com imap_port 993 tls "
             "implicit auth plain idle_renew_s 1500 max_connections 15 connections_count %d "
             "created_at %lld updated_at %lld",
             PARTNERS, (long long)now, (long long)now);
    pipe_cmd(p, "SADD si:providers gmail");
    for (unsigned pid = 1; pid <= PARTNERS; pid++) {
        char name[32], member[64], u1[96], u2[96], u3[96];
        snprintf(name, sizeof name, "Partner-%05u", pid);
        snprintf(member, sizeof member, "partner-%05u\x1f%u", pid, pid);
        snprintf(u1, sizeof u1, "https://hooks.example.com/%u/new_mail", pid);
        snprintf(u2, sizeof u2, "https://hooks.example.com/%u/user_connected", pid);
        snprintf(u3, sizeof u3, "https://hooks.example.com/%u/user_disconnected", pid);
        pipe_cmd(p,
                 "HSET si:partner:%u name %s api_key %s webhook_secret %s new_mail_webhook_url "
                 "%s user_connected_webhook_url %s user_disconnected_webhook_url %s "
                 "webhook_concurrency 8 created_at %lld updated_at %lld",
                 pid, name, key, sec, u1, u2, u3, (long long)now, (long long)now);
        pipe_cmd(p, "ZADD si:partners %lld %u", (long long)now + pid, pid);
        pipe_cmd(p, "ZADD si:ix:partner 0 %s", member);
        pipe_cmd(p, "SADD si:partner:%u:conns gmail", pid);
        pipe_cmd(p, "HSET si:conn:%u:gmail users_count 100 created_at %lld updated_at %lld", pid,
                 (long long)now, (long long)now);
    }
    xfree(key);
    xfree(sec);
}

static void fill_users(struct pipe *p, const struct crypto_keys *keys, unsigned users, int64_t now)
{
    char *secret = sealed(keys, 16, "si:user:0:secret");
    static long long per_shard[SHARDS];
    for (unsigned i = 0; i < users; i++) {
        char uid[SCHEMA_UID_LEN + 1], email[64], tag[32], k[16], pid[16], when[24];
        uid_of(uid, i);
        unsigned s = hrw_shard(uid, SHARDS);
        per_shard[s]++;
        snprintf(k, sizeof k, "%u", s);
        snprintf(pid, sizeof pid, "%u", pid_of_user(i));
        snprintf(email, sizeof email, "user%u@example%u.com", i, i % 100);
        snprintf(tag, sizeof tag, "tag%u", i);
        snprintf(when, sizeof when, "%lld", (long long)now - i);
        char key[SCHEMA_KEY_MAX];
        schema_key_user(key, s, uid);
        const char *hset[] = {
            "HSET",          key,     "uid",           uid,        "pid",          pid,
            "code",          "gmail", "tag",           tag,        "email",        email,
            "username",      email,   "secret",        secret,     "connected_at", when,
            "archived",      "0",     "state",         "watching", "last_error",   "",
            "last_login_at", when,    "last_email_at", when,       "created_at",   when,
            "updated_at",    when,    "enable_tracer", "0"};
        pipe_argv(p, (int)(sizeof hset / sizeof hset[0]), hset);
        pipe_cmd(p, "ZADD si:{%s}:users 0 %s", k, uid);
        pipe_cmd(p, "ZADD si:conn:%s:gmail:users 0 %s\x1f%s", pid, tag, uid);
        pipe_cmd(p, "SET si:tag:%s:gmail:%s %s", pid, tag, uid);
        pipe_cmd(p, "SET si:email:%s:gmail:%s %s", pid, email, uid);
        pipe_cmd(p, "ZADD si:ix:user 0 e%s\x1f%s 0 t%s\x1f%s 0 l%s\x1f%s", email, uid, tag, uid,
                 email, uid);
    }
    for (unsigned s = 0; s < SHARDS; s++)
        pipe_cmd(p, "HSET si:{%u}:count users %lld archived 0", s, per_shard[s]);
    xfree(secret);
}

/* 3 watchers, 2 dispatchers: what the fleet page lists besides the api. */
static void fill_nodes(struct pipe *p, int64_t now)
{
    static const char *const nodes[][2] = {{"watcher", "w1"},
                                           {"watcher", "w2"},
                                           {"watcher", "w3"},
                                           {"dispatcher", "d1"},
                                           {"dispatcher", "d2"}};
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        pipe_cmd(p, "ZADD si:%ss %lld %s", nodes[i][0], (long long)now, nodes[i][1]);
        pipe_cmd(p,
                 "HSET si:node:%s role %s host bench pid %d version bench started_at %lld "
                 "state running sessions 333333 capacity 400000",
                 nodes[i][1], nodes[i][0], 1000 + (int)i, (long long)now - 3600000);
    }
}

/* Events: 20,000 ready over 2,000 partners through event_enqueue.lua, 5,000
 * in retry, 10,000 dead letters; a 10,000-entry delivery log for the
 * partner of user 0 (the user whose page is measured). */
static void fill_events(struct pipe *p, const struct crypto_keys *keys, unsigned users, int64_t now)
{
    char *payload = sealed(keys, 2000, "si:evt:x");
    const char *sha = script_sha(script_find("event_enqueue"));
    for (unsigned n = 0; n < 35000; n++) {
        unsigned i = (n * 7919u) % users;
        char uid[SCHEMA_UID_LEN + 1], eid[64], pid[16], tag[32], evt[SCHEMA_KEY_MAX];
        char ready[SCHEMA_KEY_MAX], rp[SCHEMA_SHARD_KEY_MAX];
        uid_of(uid, i);
        uint32_t k = hrw_shard(uid, SHARDS);
        snprintf(eid, sizeof eid, "%s.7.%u", uid, n + 1);
        snprintf(pid, sizeof pid, "%u", n < 20000 ? 1 + n % 2000 : pid_of_user(i));
        snprintf(tag, sizeof tag, "tag%u", i);
        schema_key_event(evt, k, eid);
        if (n < 20000) {
            schema_key_ready(ready, k, pid);
            schema_key_ready_partners(rp, k);
            const char *argv[] = {"EVALSHA", sha,    "3",        evt,   ready,     rp,     eid,
                                  pid,       "type", "new_mail", "uid", uid,       "code", "gmail",
                                  "tag",     tag,    "sha1",     "0",   "payload", payload};
            pipe_argv(p, (int)(sizeof argv / sizeof argv[0]), argv);
            continue;
        }
        int dead = n >= 25000;
        pipe_cmd(p,
                 "HSET %s id %s type new_mail pid %s uid %s code gmail tag %s sha1 0 payload %s "
                 "attempts %d state %s last_status 500 last_error %s created_at %lld",
                 evt, eid, pid, uid, tag, payload, dead ? 10 : 3, dead ? "dead" : "retry",
                 "HTTP 500: receiver down", (long long)now - 86400000 + n);
        pipe_cmd(p, "ZADD si:{%u}:%s %lld %s", k, dead ? "dead" : "retry",
                 (long long)now + (dead ? -(long long)n : (long long)n * 1000), eid);
    }
    char uid0[SCHEMA_UID_LEN + 1];
    uid_of(uid0, 0);
    for (unsigned n = 0; n < 10000; n++) {
        char uid[SCHEMA_UID_LEN + 1];
        uid_of(uid, (n % 100) * PARTNERS); /* users of partner 1, user 0 among them */
        pipe_cmd(p,
                 "XADD si:log:%u MAXLEN ~ 100000 * id %s.7.%u type new_mail uid %s tag t code "
                 "gmail attempt 1 status 200 result delivered latency_ms 42 error %s next_at %s",
                 pid_of_user(0), uid, n + 1, uid, "", "");
    }
    xfree(payload);
}

/* 48 h of chart minutes, and 200 circuits. */
static void fill_charts(struct pipe *p, int64_t now)
{
    long long last = (long long)stat_minute(now);
    for (long long m = last - 2879; m <= last; m++) {
        pipe_cmd(p,
                 "HSET si:stat:%lld mail %lld delivered %lld failed %lld lat_25 %lld lat_50 %lld "
                 "lat_100 %lld lat_250 %lld lat_1000 %lld",
                 m, 900 + m % 200, 880 + m % 190, m % 20, 300 + m % 50, 400 + m % 60, 150 + m % 40,
                 30 + m % 10, m % 5);
        pipe_cmd(p, "EXPIRE si:stat:%lld %d", m, STAT_TTL_SEC);
    }
    for (int i = 0; i < 200; i++) {
        char url[96], sha[CRYPTO_SHA256_HEX_LEN + 1];
        snprintf(url, sizeof url, "https://hooks.example.com/%d/new_mail", i + 1);
        crypto_sha256_hex(url, strlen(url), sha);
        pipe_cmd(p,
                 "HSET si:circuit:%s url %s state %s failures 5 opened_at %lld until %lld node d1 "
                 "updated_at %lld",
                 sha, url, i % 4 == 0 ? "open" : "closed", (long long)now - 60000,
                 (long long)now + 30000, (long long)now - i);
        pipe_cmd(p, "ZADD si:circuits %lld %s", (long long)now - i, sha);
    }
}

/* ---- Measuring ---- */

/* A body's size, and whether it holds the marker looked for (the first
 * 64 KiB are searched). */
struct sink {
    size_t len;
    char head[65536];
    size_t hlen;
};

static size_t on_body(char *d, size_t s, size_t n, void *u)
{
    struct sink *k = u;
    size_t m = s * n, room = sizeof k->head - 1 - k->hlen;
    memcpy(k->head + k->hlen, d, m < room ? m : room);
    k->hlen += m < room ? m : room;
    k->head[k->hlen] = '\0';
    k->len += m;
    return m;
}

static struct sink sink;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double worst_p99;

/* Prints one row from runs latencies (ms), sorted here. */
static void row(const char *label, const char *how, double *ms, int runs)
{
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    double p50 = ms[runs / 2], p99 = ms[(runs * 99) / 100 < runs ? (runs * 99) / 100 : runs - 1];
    double max = ms[runs - 1];
    if (p99 > worst_p99)
        worst_p99 = p99;
    printf("| %s | %s | %d | %.2f | %.2f | %.2f | %s |\n", label, how, runs, p50, p99, max,
           p99 <= TARGET ? "yes" : "**no**");
    fflush(stdout);
}

/* One GET on the keep-alive handle: the status, the body's size in *len. */
static long get(CURL *c, int port, const char *path, size_t *len)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    sink.len = sink.hlen = 0;
    sink.head[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *len = sink.len;
    return status;
}

/* Measures GET path runs times. Returns 0, 1 when the route is not in this
 * build (404, 400 or 405 on the first call, or an answer without marker
 * when one is given: an older route that ignores the parameters; nothing
 * printed), -1 on another failure. */
static int measure_route(CURL *c, int port, const char *label, const char *path, const char *marker,
                         int runs)
{
    size_t len;
    long st = get(c, port, path, &len);
    if (st == 404 || st == 400 || st == 405 ||
        (st == 200 && marker != NULL && strstr(sink.head, marker) == NULL))
        return 1;
    if (st != 200) {
        fprintf(stderr, "bench_dashboard: GET %s answered %ld\n", path, st);
        return -1;
    }
    double *ms = xcalloc((size_t)runs, sizeof *ms);
    for (int i = 0; i < runs; i++) {
        double t0 = fixture_now();
        st = get(c, port, path, &len);
        ms[i] = (fixture_now() - t0) * 1000.0;
        if (st != 200) {
            fprintf(stderr, "bench_dashboard: GET %s answered %ld\n", path, st);
            xfree(ms);
            return -1;
        }
    }
    char how[96];
    snprintf(how, sizeof how, "api, %zu-byte answer", len);
    row(label, how, ms, runs);
    xfree(ms);
    return 0;
}

/* The Redis calls a route of another change makes, from here. */
enum raw_kind { RAW_PARTNERS_PAGE, RAW_PARTNERS_SEARCH, RAW_USERS_SEARCH, RAW_USER_DETAIL };

static int raw_once(redisContext *c, enum raw_kind kind)
{
    const char *mget = script_sha(script_find("user_mget"));
    redisReply *ix = NULL;
    switch (kind) {
    case RAW_PARTNERS_PAGE:
        ix = redisCommand(c, "ZRANGEBYLEX si:ix:partner - + LIMIT 0 %d", PAGE);
        break;
    case RAW_PARTNERS_SEARCH:
        ix =
            redisCommand(c, "ZRANGEBYLEX si:ix:partner [partner-012 (partner-013 LIMIT 0 %d", PAGE);
        break;
    case RAW_USERS_SEARCH:
        ix = redisCommand(c, "ZRANGEBYLEX si:ix:user [euser12345 (euser12346 LIMIT 0 %d", PAGE);
        break;
    case RAW_USER_DETAIL: {
        char uid[SCHEMA_UID_LEN + 1];
        uid_of(uid, 0);
        unsigned k = hrw_shard(uid, SHARDS);
        int ok = 1;
        redisAppendCommand(c, "HGETALL si:{%u}:user:%s", k, uid);
        redisAppendCommand(c, "HGET si:partner:%u name", pid_of_user(0));
        redisAppendCommand(c, "GET si:{%u}:lease:%s", k, uid);
        redisAppendCommand(c, "XREVRANGE si:log:%u + - COUNT 200", pid_of_user(0));
        for (int i = 0; i < 4; i++) {
            void *r = NULL;
            ok &= redisGetReply(c, &r) == REDIS_OK && r != NULL;
            freeReplyObject(r);
        }
        return ok ? 0 : -1;
    }
    }
    if (ix == NULL || ix->type != REDIS_REPLY_ARRAY || ix->elements == 0) {
        freeReplyObject(ix);
        return -1;
    }
    const char *argv[3 + PAGE + 12];
    char keys[PAGE][SCHEMA_KEY_MAX], nk[8];
    int n = 0;
    argv[n++] = "EVALSHA";
    argv[n++] = mget;
    n++; /* the key count */
    for (size_t i = 0; i < ix->elements && i < PAGE; i++) {
        const char *id = strchr(ix->element[i]->str, '\x1f') + 1;
        if (kind == RAW_USERS_SEARCH)
            schema_key_user(keys[i], hrw_shard(id, SHARDS), id);
        else
            schema_key_partner(keys[i], id);
        argv[n++] = keys[i];
    }
    snprintf(nk, sizeof nk, "%d", n - 3);
    argv[2] = nk;
    static const char *const user_fields[] = {
        "uid",        "pid",           "code",          "tag",      "email",      "state",
        "last_error", "last_login_at", "last_email_at", "archived", "created_at", "updated_at"};
    static const char *const partner_fields[] = {"name", "created_at", "updated_at"};
    const char *const *f = kind == RAW_USERS_SEARCH ? user_fields : partner_fields;
    int nf = kind == RAW_USERS_SEARCH ? 12 : 3;
    for (int j = 0; j < nf; j++)
        argv[n++] = f[j];
    freeReplyObject(ix);
    redisReply *r = redisCommandArgv(c, n, argv, NULL);
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY;
    if (ok && kind == RAW_USERS_SEARCH) {
        /* Their partners' names, one more round trip. */
        const char *pv[3 + PAGE + 1];
        char pk[PAGE][SCHEMA_KEY_MAX];
        int m = 0;
        pv[m++] = "EVALSHA";
        pv[m++] = mget;
        m++;
        for (size_t i = 0; i < r->elements && i < PAGE; i++) {
            const redisReply *u = r->element[i];
            schema_key_partner(pk[i], u->element[1]->type == REDIS_REPLY_STRING ? u->element[1]->str
                                                                                : "0");
            pv[m++] = pk[i];
        }
        snprintf(nk, sizeof nk, "%d", m - 3);
        pv[2] = nk;
        pv[m++] = "name";
        redisReply *names = redisCommandArgv(c, m, pv, NULL);
        ok = names != NULL && names->type == REDIS_REPLY_ARRAY;
        freeReplyObject(names);
    }
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int measure_raw(redisContext *c, const char *label, enum raw_kind kind, int runs)
{
    if (raw_once(c, kind) < 0) {
        fprintf(stderr, "bench_dashboard: %s: the Redis calls failed\n", label);
        return -1;
    }
    double *ms = xcalloc((size_t)runs, sizeof *ms);
    for (int i = 0; i < runs; i++) {
        double t0 = fixture_now();
        if (raw_once(c, kind) < 0) {
            xfree(ms);
            return -1;
        }
        ms[i] = (fixture_now() - t0) * 1000.0;
    }
    row(label, "Redis calls (route not in this build)", ms, runs);
    xfree(ms);
    return 0;
}

/* A route of another change (recognised by marker in its answer), or the
 * Redis calls it makes when this build lacks it. */
static int measure(CURL *h, redisContext *c, int port, const char *label, const char *path,
                   const char *marker, enum raw_kind kind, int runs)
{
    int rc = measure_route(h, port, label, path, marker, runs);
    return rc == 1 ? measure_raw(c, label, kind, runs) : rc;
}

int main(int argc, char **argv)
{
    (void)argc;
    char copy[384], bin[512];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(bin, sizeof bin, "%.384s/../bin/superimap-api", dirname(copy));
    const char *src = getenv("SUPERIMAP_SRC_DIR") ? getenv("SUPERIMAP_SRC_DIR") : ".";
    long users = getenv("BENCH_DASHBOARD_USERS") ? atol(getenv("BENCH_DASHBOARD_USERS")) : 1000000;
    int runs = getenv("BENCH_DASHBOARD_RUNS") ? atoi(getenv("BENCH_DASHBOARD_RUNS")) : 200;
    if (users < 20000)
        users = 20000; /* user 12345's search and the events' users must exist */
    if (runs < 10)
        runs = 10;
    if (scripts_init() < 0)
        return 1;
    struct redis_fixture fx;
    if (redis_fixture_start(&fx, NULL) < 0) {
        fprintf(stderr, "bench_dashboard: redis-server did not start\n");
        return 1;
    }
    unsigned char raw[32];
    char key_hex[65];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, key_hex);
    struct crypto_keys *keys = NULL;
    char err[128];
    int rc = 1;
    pid_t pid = -1;
    redisContext *c = redis_fixture_connect(&fx, 60000);
    if (c == NULL || crypto_keys_init(&keys, key_hex, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "bench_dashboard: cannot connect to Redis or make keys\n");
        goto out;
    }
    freeReplyObject(redisCommand(c, "SCRIPT LOAD %s", script_find("event_enqueue")->body));
    freeReplyObject(redisCommand(c, "SCRIPT LOAD %s", script_find("user_mget")->body));
    struct pipe p = {.c = c};
    int64_t now = (int64_t)time(NULL) * 1000;
    double t0 = fixture_now();
    fill_partners(&p, keys, now);
    fill_users(&p, keys, (unsigned)users, now);
    fill_nodes(&p, now);
    fill_events(&p, keys, (unsigned)users, now);
    fill_charts(&p, now);
    pipe_flush(&p);
    double fill_s = fixture_now() - t0;
    if (p.failed)
        goto out;
    redisReply *mem = redisCommand(c, "MEMORY STATS");
    long long used = 0;
    for (size_t i = 0; mem != NULL && mem->type == REDIS_REPLY_ARRAY && i + 1 < mem->elements;
         i += 2)
        if (strcmp(mem->element[i]->str, "dataset.bytes") == 0)
            used = mem->element[i + 1]->integer;
    freeReplyObject(mem);
    printf("Redis filled with %d partners and %ld users (%ld commands, pipelined by %d) in %.1f s; "
           "dataset %.0f MiB. Each request %d times in a row on one keep-alive connection; "
           "the api on this machine, Redis on a unix socket.\n\n",
           PARTNERS, users, p.sent, BATCH, fill_s, (double)used / 1048576.0, runs);
    fflush(stdout);

    snprintf(logpath, sizeof logpath, "%s/api.log", fx.dir);
    pid = bench_api_spawn(bin, fx.url, key_hex, src, "bench-dashboard-api", TOKEN, NULL, logpath);
    int port = bench_log_port(logpath);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    size_t len;
    double until = fixture_now() + 30.0;
    while (port > 0 && fixture_now() < until && get(h, port, "/readyz", &len) != 200)
        fixture_nap_ms(20);
    if (port <= 0 || get(h, port, "/readyz", &len) != 200) {
        fprintf(stderr, "bench_dashboard: the api did not start; its log:\n");
        FILE *f = fopen(logpath, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            fputs(line, stderr);
        if (f != NULL)
            fclose(f);
        goto done;
    }
    char uid0[SCHEMA_UID_LEN + 1], user_path[96];
    uid_of(uid0, 0);
    snprintf(user_path, sizeof user_path, "/admin/api/users/%s", uid0);
    printf("| request | measured as | runs | p50 ms | p99 ms | max ms | p99 ≤ %.0f ms |\n", TARGET);
    printf("|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    if (measure_route(h, port, "fleet", "/admin/api/fleet", NULL, runs) != 0 ||
        measure(h, c, port, "partners, page 1 (50)", "/admin/api/partners?limit=50",
                "\"next_cursor\"", RAW_PARTNERS_PAGE, runs) != 0 ||
        measure(h, c, port, "partners, name search", "/admin/api/partners?q=partner-012&limit=50",
                "\"next_cursor\"", RAW_PARTNERS_SEARCH, runs) != 0 ||
        measure(h, c, port, "users, email prefix search (50)",
                "/admin/api/users?q=user12345&by=email&limit=50", "\"next_cursor\"",
                RAW_USERS_SEARCH, runs) != 0 ||
        measure(h, c, port, "user detail", user_path, "\"events\"", RAW_USER_DETAIL, runs) != 0 ||
        measure_route(h, port, "queues", "/admin/api/queues", NULL, runs) != 0 ||
        measure_route(h, port, "circuits", "/admin/api/circuits", NULL, runs) != 0 ||
        measure_route(h, port, "dead letters (100)", "/admin/api/dead-letters", NULL, runs) != 0 ||
        measure_route(h, port, "stats, 360 minutes", "/admin/api/stats", NULL, runs) != 0 ||
        measure_route(h, port, "stats, 2880 minutes", "/admin/api/stats?minutes=2880", NULL,
                      runs) != 0)
        goto done;
    printf("\nWorst p99: %.2f ms (target %.0f ms).\n", worst_p99, TARGET);
    bench_result("dashboard_users", "%ld", users);
    bench_result("dashboard_partners", "%d", PARTNERS);
    bench_result("dashboard_fill_s", "%.1f", fill_s);
    bench_result("dashboard_worst_p99_ms", "%.2f", worst_p99);
    rc = 0;
done:
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    curl_global_cleanup();
out:
    bench_stop(pid);
    if (c != NULL)
        redisFree(c);
    crypto_keys_free(keys);
    scripts_shutdown();
    redis_fixture_stop(&fx);
    return rc;
}
