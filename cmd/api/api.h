/*
 * cmd/api/api.h: what the files of superimap-api share: the process-wide
 * state, one request's context, the route table entry, replies, Redis access
 * and the JSON views.
 *
 *   main.c           wiring: config, key ring, worker threads, routes
 *   router.c         request reading (64 KiB cap, content types, parameters),
 *                    route matching, replies, Redis helpers
 *   auth.c           partner API keys (lookup, constant-time check, rate
 *                    limit) and the admin bearer token; key and secret making
 *   views.c          JSON of users, connections, partners, providers, events;
 *                    signed connect/disconnect links
 *   routes_partner.c /api/v1/connections and their users
 *   routes_events.c  /api/v1/events, replay, webhook-test; event enqueueing
 *   routes_admin.c   /admin/api/: providers, partners, fleet, queues, dead letters
 *
 * Threads: every handler runs on a civetweb worker thread with its own
 * blocking Redis connection (struct req.rs); struct api is read-only after
 * start-up and shared.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_API_H
#define CMD_API_API_H

#include <stddef.h>
#include <stdint.h>

#include <civetweb.h>

#include "cmd/api/params.h"
#include "core/schema.h"

struct config;
struct crypto_keys;
struct json_gen;
struct metric;
struct redisReply;
struct rsync;

#define API_BODY_MAX       (64 * 1024) /* request body cap (413 past it) */
#define API_OUTPUT_MAX     (8u << 20)  /* largest JSON response */
#define API_TAG_MAX        255         /* bytes of a user tag */
#define API_EMAIL_MAX      320         /* bytes of an email address */
#define API_TEXT_MAX       1024        /* bytes of other short text (names, usernames) */
#define API_URL_MAX        2048        /* bytes of a webhook or redirect URL */
#define API_SECRET_MAX     4096        /* bytes of a password or refresh token */
#define API_CODE_MAX       64          /* bytes of a provider code */
#define API_LINK_TTL_S     (30 * 60)   /* connect/disconnect links, as the original */
#define API_CHANGES_MAXLEN "100000"    /* si:changes, XADD MAXLEN ~ */

/* Process-wide state; read-only once the server runs. */
struct api {
    const struct config *cfg;
    struct crypto_keys *keys;         /* SUPERIMAP_ENCRYPTION_KEY (+ old keys) */
    unsigned char link_key[32];       /* HMAC key of connect links, derived from it */
    unsigned char dummy_key_hash[32]; /* for unknown API keys: same work as a real one */
    char *dummy_envelope;             /* an encrypted key nobody has */
    uint32_t shards;                  /* SUPERIMAP_SHARDS */
    char *openapi;                    /* web/openapi.json, read at start; NULL if absent */
    size_t openapi_len;
    int rate_per_sec, rate_burst;  /* partner API rate limit; 0: off */
    int key_grace_sec;             /* old API key / webhook secret validity after rotation */
    struct metric *m_status[6];    /* responses by class: 1xx..5xx, index 1..5 */
    struct metric *m_latency;      /* handler latency histogram */
    struct metric *m_rate_limited; /* 429 answers */
};

/* A partner authenticated by its API key. */
struct partner_ctx {
    char pid[24];  /* decimal id */
    char *api_key; /* the key presented (owned; needed to sign connect links) */
};

/* One request, on one worker thread. Made and freed by router.c. */
struct req {
    struct mg_connection *conn;
    const struct api *api;
    struct rsync *rs;     /* this thread's Redis connection */
    const char *method;   /* "GET", ... */
    struct path path;     /* decoded path segments */
    struct params params; /* query, then body, merged */
    const char *arg[4];   /* the pattern's :captures, in order, borrowed from path */
    size_t narg;
    struct partner_ctx partner; /* set for AUTH_PARTNER routes */
    int64_t started_ms;         /* monotonic */
};

enum route_auth { AUTH_NONE, AUTH_PARTNER, AUTH_ADMIN };

/* One route: "GET", "/api/v1/connections/:code" (":name" captures a segment;
 * a literal last segment also matches with ".json" appended, as Rails' routes
 * did), who may call it, and the handler, which must reply exactly once and
 * return the status. */
struct route {
    const char *method;
    const char *pattern;
    enum route_auth auth;
    int (*fn)(struct req *r);
};

/* Route tables, terminated by {NULL}. */
extern const struct route routes_partner[];
extern const struct route routes_events[];
extern const struct route routes_admin[];

/* ---- router.c: entry point and replies ---- */

/* The civetweb handler of "/api/" and "/admin/api/"; cbdata is the struct api. */
int router_handle(struct mg_connection *conn, void *cbdata);

/* Sends json[0..len) with status and optional extra header lines
 * ("Name: value\r\n" each, or NULL). Returns status. */
int reply_json(struct req *r, int status, const char *json, size_t len, const char *headers);

/* Finishes g, sends it and frees it; a generator error becomes a 500. */
int reply_gen(struct req *r, int status, struct json_gen *g, const char *headers);

/* Sends {"error":{"code":code,"message":message[,"field":field]}}. field may
 * be NULL. The message is formatted printf-style. */
int reply_error(struct req *r, int status, const char *code, const char *field, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* 400 naming the field: "<field>: <why>". */
int reply_invalid(struct req *r, const char *field, const char *why);

/* 503: Redis did not answer (logged with the command's error). */
int reply_unavailable(struct req *r);

/* 204 without a body. */
int reply_no_content(struct req *r);

/* A new generator with the response cap. */
struct json_gen *reply_gen_new(void);

/* ---- router.c: Redis ---- */

/* Runs a command on the thread's connection (hiredis format). Returns the
 * reply (freeReplyObject() it) or NULL after logging; error replies are
 * returned as replies. */
struct redisReply *store_cmd(struct req *r, const char *fmt, ...);

/* As store_cmd() with an argument vector (argvlen NULL: strlen each). */
struct redisReply *store_argv(struct req *r, int argc, const char **argv, const size_t *argvlen);

/* Runs scripts/lua/<name>.lua with nkeys of the argc arguments as KEYS.
 * Returns the reply or NULL (connection failure, logged). An error reply is
 * logged at error level and returned as NULL too: scripts raise only on bugs. */
struct redisReply *store_script(struct req *r, const char *name, int nkeys, int argc,
                                const char **argv, const size_t *argvlen);

/* A Redis hash read whole. */
struct rec {
    size_t n;
    char **f, **v;
};

/* HGETALL key into *out. Returns 0, -SIMAP_ENOTFOUND (no such key; *out
 * empty) or -SIMAP_ECONN (Redis failed). rec_free() it in every case. */
int store_hgetall(struct req *r, const char *key, struct rec *out);

/* The value of field, or "" when absent. Borrowed from rec. */
const char *rec_get(const struct rec *rec, const char *field);

void rec_free(struct rec *rec);

/* The shard of a user id. */
uint32_t api_shard(const struct api *a, const char *uid);

/* Writes the current wall time in ms as decimal text into out[24]. */
void api_now_text(char out[24]);

/* ---- auth.c ---- */

/* Authenticates the partner of r from the x-api-key header or the api_key
 * parameter and applies its rate limit. Returns 0 with r->partner set, or
 * the status after replying (401, 429, 503). */
int auth_partner(struct req *r);

/* Checks Authorization: Bearer <SUPERIMAP_ADMIN_TOKEN> in constant time.
 * Returns 0, or 401 after replying. */
int auth_admin(struct req *r);

/* Makes a new API key (base64url of 32 random bytes; xfree() it) and the
 * lookup key si:apikey:<sha256 hex> into lookup (SCHEMA_KEY_MAX bytes). */
char *auth_new_api_key(char *lookup, size_t lookuplen);

/* The lookup key of an existing API key. Returns 0 or -SIMAP_ECRYPTO. */
int auth_lookup_key(const char *api_key, char *lookup, size_t lookuplen);

/* Makes a new webhook secret, "whsec_" + base64 of 32 random bytes. */
char *auth_new_webhook_secret(void);

/* Decrypts a partner's encrypted field (api_key, webhook_secret, ...) with
 * its AAD "si:partner:<pid>:<field>". Returns a new string or NULL. */
char *auth_partner_secret(const struct api *a, const char *pid, const char *field,
                          const char *envelope);

/* ---- views.c ---- */

/* Writes one user object (the original's keys first: tag, email,
 * connect_url, disconnect_url, connected_at; then archived, state,
 * last_error, last_login_at, last_email_at, imap_provider_code, created_at,
 * updated_at). Credentials are never written. api_key signs the links. */
void view_user(struct json_gen *g, const struct api *a, const struct rec *u, const char *api_key);

/* The list entry of a user: tag, email, archived, connected_at, state. */
void view_user_brief(struct json_gen *g, const struct rec *u);

/* {imap_provider_code, users_count, auth, created_at, updated_at}. */
void view_connection(struct json_gen *g, const char *code, const struct rec *c, const char *auth);

/* A provider's fields (every stored field, numbers as numbers). */
void view_provider(struct json_gen *g, const struct rec *p);

/* A partner without its secrets: id, name, webhook URLs, redirect URLs,
 * retry policy, rotation state, created_at, updated_at. */
void view_partner(struct json_gen *g, const char *pid, const struct rec *p);

/* An event hash (without payload): id, type, state, attempts, ... */
void view_event(struct json_gen *g, const struct rec *e);

/* Writes a ms timestamp text as ISO 8601 text, or null when empty. */
void view_time(struct json_gen *g, const char *key, const char *ms);

/*
 * Builds the connect (kind "connect") or disconnect ("disconnect") link of
 * user uid, valid API_LINK_TTL_S from ts (unix seconds):
 *
 *   <public_url>/users/<kind>/new?user_id=<uid>&ts=<ts>&sig=<sig>
 *
 * sig = base64url(HMAC-SHA256(link_key, "<kind>\n<uid>\n<ts>")), link_key =
 * HMAC-SHA256(raw SUPERIMAP_ENCRYPTION_KEY, "superimap connect links v1").
 * The connect pages verify it with view_link_sig(). Returns a new string.
 */
char *view_link(const struct api *a, const char *kind, const char *uid, int64_t ts);

/* Writes the signature of a link into out (44 bytes). */
void view_link_sig(const struct api *a, const char *kind, const char *uid, int64_t ts,
                   char out[44]);

/* ---- routes_partner.c ---- */

/* Deletes connection code of partner pid with all its users, their cursors,
 * leases and queued events (scripts/lua/connection_delete.lua, in batches;
 * the connection is invisible from the first batch on). Returns 0 or
 * -SIMAP_ECONN. Shared with the admin API's partner deletion. */
int routes_delete_connection(struct req *r, const char *pid, const char *code);

/* ---- routes_events.c: events the api enqueues ---- */

/*
 * Enqueues a user_connected or user_disconnected event for user u (its hash
 * after the write) through scripts/lua/event_enqueue.lua, when the partner
 * has a URL for that type. at_ms is the transition's time (connected_at, or
 * the disconnection). Returns 0, or -SIMAP_ECONN (logged; the user write
 * stands).
 */
int events_enqueue_user(struct req *r, const char *type, const struct rec *u, const char *at_ms);

#endif
