/*
 * superimap-api: the partner REST API, the admin API and the static files of
 * web/ (openapi.json, an index of the health endpoints), on civetweb.
 *
 * Each civetweb worker thread owns one blocking Redis connection (core/rsync),
 * made when the thread starts and found again with http_thread_data(); the
 * libev loop of core/node keeps the heartbeat and readiness. Requests under
 * /api/ and /users/ (the connect pages) go to cmd/api/router.c, those under
 * /admin to cmd/api/admin_files.c (the dashboard's files, and the router for
 * /admin/api/, /admin/login, /admin/logout); everything else is the static
 * files of SUPERIMAP_WEB_ROOT (web/: openapi.json, index.html).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "cmd/api/admin_cli.h"
#include "cmd/api/admin_files.h"
#include "cmd/api/admin_session.h"
#include "cmd/api/api.h"
#include "cmd/api/client.h"
#include "cmd/api/connect.h"
#include "cmd/api/rekey.h"
#include "cmd/api/reindex.h"
#include "cmd/api/router.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/http.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/rsync.h"

#define OPENAPI_MAX (4u << 20)

static struct api api;

static void *on_thread_start(void *data)
{
    struct api *a = data;
    struct rsync_opts ro = {
        .url = a->cfg->redis_url,
        .password = a->cfg->redis_password,
        .sentinel_password = a->cfg->redis_sentinel_password,
        .timeout_ms = a->cfg->redis_timeout_ms,
    };
    return rsync_new(&ro);
}

static void on_thread_stop(void *thread_data, void *data)
{
    (void)data;
    rsync_free(thread_data);
}

/* Reads web/openapi.json once; the API serves it at /api/v1/openapi.json and
 * /api/v2/openapi.json. */
static void load_openapi(struct api *a, const char *root)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/openapi.json", root);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        log_warn("openapi.json not found; /api/v{1,2}/openapi.json answer 404 path=%s", path);
        return;
    }
    char *text = xmalloc(OPENAPI_MAX + 1);
    size_t n = fread(text, 1, OPENAPI_MAX + 1, f);
    fclose(f);
    if (n > OPENAPI_MAX) {
        log_warn("openapi.json is too large; not served path=%s", path);
        xfree(text);
        return;
    }
    text[n] = '\0';
    a->openapi = text;
    a->openapi_len = n;
}

/* Keys derived from SUPERIMAP_ENCRYPTION_KEY: the connect links' HMAC key,
 * and an encrypted key nobody has for unknown API keys (auth.c). */
static int derive_keys(struct api *a, const struct config *cfg)
{
    unsigned char raw[CRYPTO_KEY_LEN];
    size_t n;
    if (crypto_hex_decode(cfg->encryption_key, strlen(cfg->encryption_key), raw, sizeof raw, &n) <
            0 ||
        n != sizeof raw)
        return -SIMAP_EINVAL;
    static const char label[] = "superimap connect links v1";
    int rc = crypto_hmac_sha256(raw, sizeof raw, label, sizeof label - 1, a->link_key);
    crypto_wipe(raw, sizeof raw);
    if (rc < 0)
        return rc;
    /* The key of partner "0", which never exists: auth.c opens it for an
     * unknown key, the same work as for a known one. */
    char *nobody = crypto_token(32);
    a->dummy_envelope = keys_seal_partner(a->keys, "0", "api_key", nobody);
    keys_wipe_free(nobody);
    return a->dummy_envelope != NULL ? 0 : -SIMAP_ECRYPTO;
}

/* A new connection (core/http's conn_open): one client address may have
 * api_client_pending connections waiting for their headers, or requests
 * whose bodies are being read (router.c), at once; past that its connections
 * must bring their headers whole. A trusted proxy's connections carry every
 * client's: always taken (the proxy bounds slow clients; the bodies are
 * counted by the address it forwards for). */
static int on_conn_open(void *data, const char *peer, int complete)
{
    struct api *a = data;
    int force = complete || client_is_proxy(a->clients, peer);
    return client_gate_enter(a->pending, peer, force) == 0 ? 0 : -1;
}

static void on_conn_ready(void *data, const char *peer)
{
    struct api *a = data;
    client_gate_leave(a->pending, peer);
}

static int prepare(const struct config *cfg, struct node_opts *opts)
{
    api.cfg = cfg;
    api.shards = (uint32_t)cfg->shards;
    api.rate_per_sec = cfg->api_rate_limit;
    api.rate_burst = cfg->api_rate_burst;
    api.key_grace_sec = cfg->key_rotation_grace_sec;
    char err[256];
    if (crypto_keys_init(&api.keys, cfg->encryption_key, cfg->encryption_old_keys, err,
                         sizeof err) < 0) {
        log_error("bad encryption key err=\"%s\"", err);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("libcurl failed to initialise");
        crypto_keys_free(api.keys);
        return 1;
    }
    if (derive_keys(&api, cfg) < 0) {
        log_error("cannot derive keys from SUPERIMAP_ENCRYPTION_KEY");
        crypto_keys_free(api.keys);
        curl_global_cleanup();
        return 1;
    }
    api.clients = client_guard_new(cfg->trusted_proxies, cfg->api_auth_failure_burst,
                                   cfg->api_auth_failure_rate, err, sizeof err);
    if (api.clients == NULL) {
        log_error("bad configuration err=\"%s\"", err);
        xfree(api.dummy_envelope);
        crypto_keys_free(api.keys);
        curl_global_cleanup();
        return 2;
    }
    /* A hash nobody's password matches, at the cost new passwords get: the
     * sign-in of an unknown username does the same work as a known one's.
     * Made without hashing, so the api's start takes no scrypt memory. */
    struct crypto_scrypt_params sp = {.log2n = cfg->admin_scrypt_log2n, .r = 8, .p = 1};
    api.admin_dummy_hash = crypto_password_unmatchable(&sp);
    /* 32 MiB each at the default cost: a burst of sign-ins must not take
     * every thread's worth at once. */
    api.hashing = client_gate_new(0, cfg->api_threads / 4 > 2 ? cfg->api_threads / 4 : 2);
    api.pending = client_gate_new(cfg->api_client_pending, 0);
    int waiters =
        cfg->api_test_waiters < cfg->api_threads / 2 ? cfg->api_test_waiters : cfg->api_threads / 2;
    api.waiters = client_gate_new(cfg->api_test_waiters_per_partner, waiters > 0 ? waiters : 1);
    struct stat st;
    if (stat(cfg->web_root, &st) == 0 && S_ISDIR(st.st_mode)) {
        opts->document_root = cfg->web_root;
        load_openapi(&api, cfg->web_root);
    } else {
        log_warn("SUPERIMAP_WEB_ROOT is not a directory; serving no static files web_root=%s",
                 cfg->web_root);
    }
    opts->http_threads = cfg->api_threads;
    opts->http_thread_init = on_thread_start;
    opts->http_thread_exit = on_thread_stop;
    opts->http_request_timeout_ms = cfg->api_request_timeout_ms;
    opts->http_conn_open = on_conn_open;
    opts->http_conn_ready = on_conn_ready;
    opts->hooks.data = &api;
    return 0;
}

static int start(struct node *n, void *data)
{
    struct api *a = data;
    struct metrics *m = node_metrics(n);
    static const char *const classes[] = {NULL, "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 1; i <= 5; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "class=\"%s\"", classes[i]);
        a->m_status[i] = metrics_counter(m, "superimap_api_responses_total",
                                         "API responses by status class", labels);
    }
    a->m_latency = metrics_histogram(m, "superimap_api_request_duration_seconds",
                                     "Time to handle an API request", NULL, metrics_latency_bounds,
                                     metrics_latency_nbounds);
    a->m_rate_limited = metrics_counter(m, "superimap_api_rate_limited_total",
                                        "Partner API requests refused with 429", NULL);
    a->m_auth_blocked = metrics_counter(
        m, "superimap_api_auth_blocked_total",
        "Partner API requests refused with 429 for too many failed authentications from their "
        "client address",
        NULL);
    a->m_slow_bodies = metrics_counter(
        m, "superimap_api_slow_bodies_refused_total",
        "Requests answered 429 before their body was read because their client address already "
        "had SUPERIMAP_API_CLIENT_PENDING slow connections and bodies",
        NULL);
    a->m_test_no_wait = metrics_counter(
        m, "superimap_api_webhook_tests_not_waited_total",
        "Webhook tests answered 202 pending at once because SUPERIMAP_API_TEST_WAITERS (in all or "
        "per partner) were already waiting",
        NULL);
    _Static_assert(CONNECT_RESULTS <= sizeof a->m_connect / sizeof a->m_connect[0],
                   "m_connect holds every connect result");
    for (int i = 0; i < CONNECT_RESULTS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "result=\"%s\"", connect_result_str(i));
        a->m_connect[i] = metrics_counter(m, "superimap_api_connect_total",
                                          "Connect and disconnect page outcomes", labels);
    }
    for (int i = 0; i < ADMIN_RESULTS; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "result=\"%s\"", admin_result_str(i));
        a->m_admin_logins[i] = metrics_counter(m, "superimap_admin_logins_total",
                                               "Admin dashboard sign-ins by outcome", labels);
    }
    states_start(&a->states, n, a->shards);
    http_route(node_http(n), "/api/", router_handle, a);
    http_route(node_http(n), "/users/", router_handle, a);
    http_route(node_http(n), "/admin", admin_files_handle, a);
    return 0;
}

static void finish(struct node *n, void *data)
{
    (void)n;
    struct api *a = data;
    states_stop(&a->states);
    crypto_wipe(a->link_key, sizeof a->link_key);
    xfree(a->dummy_envelope);
    xfree(a->admin_dummy_hash);
    xfree(a->openapi);
    client_guard_free(a->clients);
    client_gate_free(a->pending);
    client_gate_free(a->waiters);
    client_gate_free(a->hashing);
    crypto_keys_free(a->keys);
    curl_global_cleanup();
    memset(a, 0, sizeof *a);
}

/* `superimap-api routes`: every route as "METHOD PATTERN AUTH", one per
 * line, in the order the router tries them (tests/integration/test_openapi.c
 * holds web/openapi.json to it). */
static int print_routes(void)
{
    static const char *const auths[] = {"none", "partner", "admin"};
    for (size_t t = 0; route_tables[t] != NULL; t++)
        for (const struct route *r = route_tables[t]; r->method != NULL; r++)
            printf("%s %s %s\n", r->method, r->pattern, auths[r->auth]);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "rekey") == 0)
        return rekey_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "reindex") == 0)
        return reindex_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "admin-user") == 0)
        return admin_cli_main(argc - 1, argv + 1);
    if (argc == 2 && strcmp(argv[1], "routes") == 0)
        return print_routes();
    static const struct node_main_spec spec = {
        .role = "api",
        .program = "superimap-api",
        .summary = "Serves the superimap partner REST API, the admin API and the static "
                   "files of SUPERIMAP_WEB_ROOT. `superimap-api rekey --help`: the "
                   "re-encryption sweep that retires an old SUPERIMAP_ENCRYPTION_KEY. "
                   "`superimap-api reindex --help`: the backfill of the admin search "
                   "indexes after an upgrade. `superimap-api admin-user --help`: the admin "
                   "dashboard's accounts. `superimap-api routes`: every route it serves.",
        .config_role = CONFIG_ROLE_API,
        .prepare = prepare,
        .start = start,
        .finish = finish,
    };
    return node_main(argc, argv, &spec);
}
