/*
 * cmd/api/api.h: what the files of superimap-api share: the process-wide
 * state, one request's context and the route table entry. Each file's own
 * header has its contract; docs/api.md walks them in reading order.
 *
 *   main.c             wiring: config, key ring, worker threads, routes
 *   router.c           request reading (64 KiB cap, content types,
 *                      parameters), route matching, authentication, dispatch
 *   auth.c             partner API keys (constant-time check, rate limit)
 *                      and the admin bearer token or dashboard session
 *   routes_partner.c   /api/v1|v2/connections and their users
 *   routes_events.c    /api/v1|v2/events, replay, webhook-test
 *   routes_providers.c /admin/api/providers
 *   routes_partners.c  /admin/api/partners, key and secret rotation
 *   routes_fleet.c     /admin/api/fleet, queues, dead letters
 *   routes_tracers.c   /admin/api/tracers
 *   routes_users.c     /admin/api/users: users across partners (search,
 *                      one user with its deliveries, archive, restore)
 *   admin_files.c      everything under /admin: web/admin/ with the dashboard's
 *                      headers, the rest to the router
 *   admin_path.c       its pure part: which file of web/admin/ a path names
 *   admin_session.c    /admin/login, /admin/logout, /admin/api/session: the
 *                      dashboard's sign-in, sessions and lockout
 *   admin_users.c      /admin/api/admin-users
 *   admin_cli.c        `superimap-api admin-user`; command.c: what it,
 *                      rekey.c and reindex.c share
 *   admin_store.c      admin accounts and sessions in Redis (also for admin_cli.c,
 *                      `superimap-api admin-user`)
 *   routes_connect.c   /users/connect/new, /users/connect/callback,
 *                      /users/disconnect/new: the connect pages (browsers)
 *   connect.c          their pure parts: links, redirects, PKCE, answers
 *   oauth_http.c       their calls to the provider (libcurl, SSRF guard)
 *   imap_login.c       the PLAIN form's live IMAP login
 *   input.c            parameter checks the route files share (400s)
 *   reply.c            every answer: JSON, errors, 204; v1's codes and texts
 *   views.c            JSON of users, connections, partners, providers,
 *                      events, log entries, nodes; signed connect links
 *   store.c            Redis: commands, scripts, hashes read whole (store_impl.h,
 *                      for store_*.c alone)
 *   store_users.c      connections and users of a partner
 *   store_partners.c   providers, partners, rotation, API-key lookup
 *   store_events.c     events, delivery log, queues, dead letters, fleet
 *   store_connect.c    used links, connect flows, connected/disconnected
 *   store_search.c     searches across partners (si:ix:*), leases, drains
 *   rekey.c, reindex.c `superimap-api rekey` and `reindex`, commands of
 *                      their own (command.c starts them)
 *   keys.c             making, sealing and opening keys and secrets
 *   rec.c              a hash read whole (struct rec) and lists of them
 *   params.c           form, JSON and percent decoding
 *
 * Calls go one way: main -> router -> auth, routes_*; those -> input,
 * reply, views, store_*; store_* -> store.c, keys, rec. Nothing calls back
 * up, and only the store talks to Redis.
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
#include "cmd/api/states.h"
#include "core/schema.h"

struct config;
struct crypto_keys;
struct metric;
struct rec;
struct client_guard;
struct rsync;

#define API_BODY_MAX       (64 * 1024) /* request body cap (413 past it) */
#define API_OUTPUT_MAX     (8u << 20)  /* largest JSON response */
#define API_TAG_MAX        255         /* bytes of a user tag */
#define API_EMAIL_MAX      320         /* bytes of an email address */
#define API_TEXT_MAX       1024        /* bytes of other short text (names, usernames) */
#define API_URL_MAX        2048        /* bytes of a webhook or redirect URL */
#define API_SECRET_MAX     4096        /* bytes of a password or refresh token */
#define API_CODE_MAX       64          /* bytes of a provider code */
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
    int rate_per_sec, rate_burst;     /* partner API rate limit; 0: off */
    int key_grace_sec;                /* old API key / webhook secret validity after rotation */
    struct metric *m_status[6];       /* responses by class: 1xx..5xx, index 1..5 */
    struct metric *m_latency;         /* handler latency histogram */
    struct metric *m_rate_limited;    /* 429 answers */
    struct metric *m_auth_blocked;    /* 429 answers for failed authentications */
    struct client_guard *clients;     /* failed authentications per client address (mutable,
                                    * thread-safe: cmd/api/client.h) */
    struct client_gate *pending;      /* per client address: connections whose headers have
                                    * not arrived, request bodies being read */
    struct client_gate *waiters;      /* webhook tests waiting, per partner id and in all */
    struct metric *m_slow_bodies;     /* 429 answers: too many slow bodies */
    struct metric *m_test_no_wait;    /* webhook tests answered at once: too many waiting */
    struct metric *m_connect[24];     /* connect-page outcomes, by enum connect_result */
    struct states states;             /* superimap_users{state} (states.h) */
    struct metric *m_admin_logins[4]; /* dashboard sign-ins by enum admin_result */
    char *admin_dummy_hash;           /* a password hash nobody's password matches: an unknown
                                       * username costs the same work as a known one */
    struct client_gate *hashing;      /* password hashes at once (each takes 128 r N bytes) */
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
    int version;    /* 1 or 2 on a partner API path (/api/v1, /api/v2), else 0: v1 answers as
                  * the original did (reply.c), v2 as today's API */
    int body_read;  /* the body has been read whole */
    int is_admin;   /* the path is under /admin: every answer carries the dashboard's
                    * security headers (reply.c) */
    char admin[72]; /* who passed auth_admin(): an admin account's lower username, or
                     * "token" for the bearer token; for logs */
};

enum route_auth { AUTH_NONE, AUTH_PARTNER, AUTH_ADMIN };

/* One route: "GET", "/api/{v}/connections/:code" (":name" captures a segment;
 * "{v}" matches v1 or v2 and sets req.version; a literal last segment also
 * matches with ".json" appended, as Rails' routes did), who may call it, and
 * the handler, which must reply exactly once and return the status. */
struct route {
    const char *method;
    const char *pattern;
    enum route_auth auth;
    int (*fn)(struct req *r);
};

/* Route tables, terminated by {NULL}. */
extern const struct route routes_partner[];
extern const struct route routes_events[];
extern const struct route routes_providers[];
extern const struct route routes_partners[];
extern const struct route routes_fleet[];
extern const struct route routes_deliveries[];
extern const struct route routes_tracers[];
extern const struct route routes_users[];

/* Every table, in the order the router tries them; NULL-terminated. */
extern const struct route *const route_tables[];
extern const struct route routes_connect[];
extern const struct route routes_admin_session[];
extern const struct route routes_admin_users[];

#endif
