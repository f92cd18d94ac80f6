/*
 * core/node: process lifecycle shared by every superimap node.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/node.h"

#include <execinfo.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "core/rsync.h"
#include "core/schema.h"
#include "core/scripts.h"
#include "core/time.h"

#define NODE_HASH_TTL_MS  60000   /* a silent node's hash outlives its death by this */
#define NODE_ZSET_KEEP_MS 3600000 /* a dead node stays in the role's zset this long */
#define NODE_MAX_DESCRIBE 16      /* field/value pairs a role may add */

struct node {
    struct ev_loop *loop;
    struct node_opts opts;
    const struct config *cfg;
    struct rconn *redis;
    struct metrics *metrics;
    struct http_server *http;

    ev_timer beat;     /* heartbeat every NODE_HEARTBEAT_MS */
    ev_timer deadline; /* bound on the graceful stop */
    ev_signal sigterm, sigint, sighup;

    atomic_int redis_up;
    atomic_int ready;            /* Redis up, meta checked, scripts loaded */
    atomic_int draining;         /* stop requested */
    atomic_llong last_beat_mono; /* 0 before the first heartbeat */
    int64_t started_mono;

    struct rreq_owner
        setup_reqs; /* moves on at every (dis)connect: stale setup replies are dropped */
    int beat_in_flight;
    int beat_failing;
    int was_connected;
    int removing;
    int exit_code;

    struct metric *m_reconnects;
    struct metric *m_failovers; /* the sentinels named another primary */
    uint64_t primary_changes;   /* rconn's count, as far as m_failovers has it */
    struct metric *m_redis_latency;
    struct metric *m_wait_short;
    struct metric *m_primary; /* superimap_redis_primary_info of the address in use */
    char primary[300];        /* that address */

    char role_key[SCHEMA_KEY_MAX]; /* si:<role>s */
    char node_key[SCHEMA_KEY_MAX]; /* si:node:<id> */
    char host[64];
    char pid[16];
    char started_at[24];
};

/* ---- Redis setup: meta, scripts, readiness ---- */

static void set_ready(struct node *n, int ready)
{
    int was = atomic_exchange(&n->ready, ready);
    if (was == ready)
        return;
    if (ready) {
        log_info("node ready role=%s", n->opts.role);
        if (n->opts.hooks.on_ready != NULL)
            n->opts.hooks.on_ready(n, n->opts.hooks.data);
    } else if (n->opts.hooks.on_unready != NULL) {
        n->opts.hooks.on_unready(n, n->opts.hooks.data);
    }
}

static void send_heartbeat(struct node *n);

/* A setup call, tagged with the connection it belongs to (core/rreq drops
 * the answers for an older one, and the shutdown's). */
struct setup_req {
    struct rreq req; /* first: released by rreq_xfree() */
    struct node *n;
};

static struct rreq *setup_req_new(struct node *n, rreq_cb *cb)
{
    struct setup_req *r = xmalloc(sizeof *r);
    r->n = n;
    rreq_start(&r->req, &n->setup_reqs, cb, rreq_xfree);
    return &r->req;
}

static struct node *setup_node(struct rreq *req)
{
    return RREQ_CONTAINER(req, struct setup_req, req)->n;
}

static void on_scripts_loaded(struct rreq *req, struct redisReply *reply, int err)
{
    (void)reply;
    struct node *n = setup_node(req);
    if (err < 0) {
        log_error("cannot load Redis scripts err=\"%s\"", err_str(err));
        return; /* the next reconnect retries; /readyz stays 503 meanwhile */
    }
    set_ready(n, 1);
    send_heartbeat(n);
}

static void start_setup(struct node *n);

/* Schema 1 -> 2 (si:{k}:users from set to zset, scripts/lua/
 * schema_users_zset.lua): one script per shard, each atomic and harmless
 * to repeat, then schema_bump, which sets the version once no shard is left
 * a set. Sent in one pipeline on the one connection, so they run in order;
 * then the setup starts over and finds the new version. A node of the old
 * version still running would fail on the new type: upgrading from schema 1
 * means stopping every node first (README, "Upgrading"). */
static void on_migrated(struct rreq *req, struct redisReply *reply, int err)
{
    struct node *n = setup_node(req);
    if (err < 0)
        return; /* connection lost: the reconnect's setup migrates again */
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        log_error("cannot migrate the Redis schema from version 1 to %d; not starting "
                  "error=\"%s\"",
                  NODE_SCHEMA_VERSION, reply != NULL && reply->str ? reply->str : "no reply");
        n->exit_code = 2;
        ev_break(n->loop, EVBREAK_ALL);
        return;
    }
    log_info("migrated the Redis schema schema_from=1 schema_to=%d", NODE_SCHEMA_VERSION);
    start_setup(n);
}

static void on_shard_migrated(struct rreq *req, struct redisReply *reply, int err)
{
    (void)req;
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_info("migrated a shard's users to a zset users=%lld", reply->integer);
}

static void migrate_schema_1(struct node *n)
{
    uint32_t shards = (uint32_t)n->cfg->shards;
    log_info("migrating the Redis schema: si:{k}:users sets become zsets ranked by "
             "admission schema_from=1 schema_to=%d shards=%u",
             NODE_SCHEMA_VERSION, shards);
    char(*keys)[SCHEMA_SHARD_KEY_MAX] = xcalloc(shards + 1, sizeof *keys);
    const char **argv = xcalloc(shards + 4, sizeof *argv);
    argv[0] = SCHEMA_KEY_META;
    for (uint32_t k = 0; k < shards; k++) {
        char prefix[SCHEMA_SHARD_KEY_MAX];
        schema_key_shard_users(keys[k], k);
        schema_key_shard_prefix(prefix, k);
        const char *a[] = {keys[k], prefix};
        struct rreq *r = setup_req_new(n, on_shard_migrated);
        if (rconn_script(n->redis, rreq_on_reply, r, "schema_users_zset", 1, 2, a, NULL) < 0) {
            rreq_abort(r);
            log_warn("cannot queue schema_users_zset");
        }
        argv[1 + k] = keys[k];
    }
    char to[16];
    snprintf(to, sizeof to, "%d", NODE_SCHEMA_VERSION);
    argv[1 + shards] = "1";
    argv[2 + shards] = to;
    argv[3 + shards] = "set";
    struct rreq *r = setup_req_new(n, on_migrated);
    if (rconn_script(n->redis, rreq_on_reply, r, "schema_bump", (int)shards + 1, (int)shards + 4,
                     argv, NULL) < 0) {
        rreq_abort(r);
        log_warn("cannot queue schema_bump");
    }
    xfree(argv);
    xfree(keys);
}

static void on_meta(struct rreq *req, struct redisReply *reply, int err)
{
    struct node *n = setup_node(req);
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        log_warn("cannot read si:meta err=\"%s\"",
                 err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "bad reply"));
        return;
    }
    const char *schema = reply->element[0]->str ? reply->element[0]->str : "";
    const char *shards = reply->element[1]->str ? reply->element[1]->str : "";
    if (reply->element[3]->integer == 1)
        log_info("initialised si:meta schema_version=%s shards=%s", schema, shards);
    if (atoi(schema) == 1 && atoi(shards) == n->cfg->shards) {
        migrate_schema_1(n);
        return;
    }
    if (atoi(schema) != NODE_SCHEMA_VERSION) {
        log_error("Redis holds schema version %s but this binary speaks version %d; "
                  "not starting schema_redis=%s schema_binary=%d",
                  schema, NODE_SCHEMA_VERSION, schema, NODE_SCHEMA_VERSION);
        n->exit_code = 2;
        ev_break(n->loop, EVBREAK_ALL);
        return;
    }
    if (atoi(shards) != n->cfg->shards) {
        log_error("SUPERIMAP_SHARDS=%d but this Redis was created with %s shards; set "
                  "SUPERIMAP_SHARDS=%s on every node shards_redis=%s shards_config=%d",
                  n->cfg->shards, shards, shards, shards, n->cfg->shards);
        n->exit_code = 2;
        ev_break(n->loop, EVBREAK_ALL);
        return;
    }
    struct rreq *r = setup_req_new(n, on_scripts_loaded);
    if (rconn_load_scripts(n->redis, rreq_on_reply, r) < 0) {
        rreq_abort(r);
        log_warn("cannot queue SCRIPT LOAD");
    }
}

static void start_setup(struct node *n)
{
    char shards[16];
    snprintf(shards, sizeof shards, "%d", n->cfg->shards);
    char schema[16];
    snprintf(schema, sizeof schema, "%d", NODE_SCHEMA_VERSION);
    const char *argv[] = {SCHEMA_KEY_META, schema, shards, SUPERIMAP_VERSION};
    struct rreq *r = setup_req_new(n, on_meta);
    if (rconn_script(n->redis, rreq_on_reply, r, "meta_init", 1, 4, argv, NULL) < 0) {
        rreq_abort(r);
        log_warn("cannot queue meta_init");
    }
}

/* superimap_redis_primary_info: 1 on the address connected to, 0 on those
 * used before (series are never removed). */
static void note_primary(struct node *n, const struct rconn *rc)
{
    char addr[sizeof n->primary], labels[sizeof addr + 16];
    rconn_address(rc, addr, sizeof addr);
    if (n->m_primary != NULL && strcmp(addr, n->primary) == 0)
        return;
    for (char *p = addr; *p != '\0'; p++)
        if (*p == '"' || *p == '\\' || *p == '\n')
            *p = '_';
    metric_set(n->m_primary, 0);
    rsync_primary_is(addr);
    snprintf(n->primary, sizeof n->primary, "%s", addr);
    snprintf(labels, sizeof labels, "address=\"%s\"", addr);
    n->m_primary =
        metrics_gauge(n->metrics, "superimap_redis_primary_info",
                      "The Redis this node writes to (1), and those it used before (0)", labels);
    metric_set(n->m_primary, 1);
}

static void on_redis_state(struct rconn *rc, int connected, void *data)
{
    struct node *n = data;
    rreq_owner_move_on(&n->setup_reqs);
    atomic_store(&n->redis_up, connected);
    if (connected) {
        if (n->was_connected)
            metric_inc(n->m_reconnects);
        struct rconn_stats st;
        rconn_stats(rc, &st);
        for (; n->primary_changes < st.primary_changes; n->primary_changes++)
            metric_inc(n->m_failovers);
        note_primary(n, rc);
        n->was_connected = 1;
        start_setup(n);
    } else {
        set_ready(n, 0);
    }
}

static void on_redis_latency(double seconds, void *data)
{
    struct node *n = data;
    metric_observe(n->m_redis_latency, seconds);
}

/* ---- Heartbeat ---- */

static void on_heartbeat(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct node *n = privdata;
    n->beat_in_flight = 0;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    if (err < 0) {
        if (!n->beat_failing)
            log_warn("heartbeat failed err=\"%s\" detail=\"%s\"", err_str(err),
                     reply && reply->str ? reply->str : "");
        n->beat_failing = 1;
        return;
    }
    if (n->beat_failing)
        log_info("heartbeat restored");
    n->beat_failing = 0;
    atomic_store(&n->last_beat_mono, time_mono_ms());
    /* An operator asked this incarnation to drain (node_drain.lua, the admin
     * API): the same stop as SIGTERM's. */
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_INTEGER && reply->element[1]->integer == 1 &&
        !atomic_load(&n->draining)) {
        log_info("drain requested by an operator role=%s", n->opts.role);
        node_stop(n);
    }
}

static void send_heartbeat(struct node *n)
{
    if (n->beat_in_flight || n->removing || !atomic_load(&n->ready))
        return;
    char dead_ms[16], keep_ms[16];
    snprintf(dead_ms, sizeof dead_ms, "%d", NODE_HASH_TTL_MS);
    snprintf(keep_ms, sizeof keep_ms, "%d", NODE_ZSET_KEEP_MS);
    const char *argv[8 + 12 + 2 * NODE_MAX_DESCRIBE];
    int argc = 0;
    argv[argc++] = n->role_key;
    argv[argc++] = n->node_key;
    argv[argc++] = n->cfg->node_id;
    argv[argc++] = dead_ms;
    argv[argc++] = keep_ms;
    argv[argc++] = "role";
    argv[argc++] = n->opts.role;
    argv[argc++] = "host";
    argv[argc++] = n->host;
    argv[argc++] = "pid";
    argv[argc++] = n->pid;
    argv[argc++] = "version";
    argv[argc++] = SUPERIMAP_VERSION;
    argv[argc++] = "started_at";
    argv[argc++] = n->started_at;
    argv[argc++] = "state";
    argv[argc++] = atomic_load(&n->draining) ? "draining" : "active";
    if (n->opts.hooks.describe != NULL) {
        int extra = 0;
        n->opts.hooks.describe(n, argv + argc, &extra, n->opts.hooks.data);
        if (extra > 2 * NODE_MAX_DESCRIBE)
            extra = 2 * NODE_MAX_DESCRIBE;
        argc += extra & ~1;
    }
    if (rconn_script(n->redis, on_heartbeat, n, "node_heartbeat", 2, argc, argv, NULL) == 0)
        n->beat_in_flight = 1;
}

static void on_beat_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    send_heartbeat(w->data);
}

/* ---- Stop ---- */

static void on_removed(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    struct node *n = privdata;
    if (err < 0 && err != -SIMAP_ESHUTDOWN)
        log_warn("cannot remove heartbeat err=\"%s\"; it expires by itself", err_str(err));
    ev_break(n->loop, EVBREAK_ALL);
}

void node_drained(struct node *n)
{
    if (n->removing)
        return;
    n->removing = 1;
    ev_timer_stop(n->loop, &n->beat);
    const char *argv[] = {n->role_key, n->node_key, n->cfg->node_id};
    if (rconn_script(n->redis, on_removed, n, "node_remove", 2, 3, argv, NULL) < 0)
        ev_break(n->loop, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct node *n = w->data;
    log_warn("graceful stop exceeded its deadline; exiting timeout_sec=%d",
             n->cfg->shutdown_timeout_sec);
    ev_break(loop, EVBREAK_ALL);
}

void node_stop(struct node *n)
{
    if (atomic_exchange(&n->draining, 1)) {
        log_warn("second stop request; exiting without waiting for the drain");
        node_drained(n);
        return;
    }
    log_info("stopping: draining role=%s timeout_sec=%d", n->opts.role,
             n->cfg->shutdown_timeout_sec);
    ev_timer_init(&n->deadline, on_deadline, n->cfg->shutdown_timeout_sec, 0.);
    n->deadline.data = n;
    ev_timer_start(n->loop, &n->deadline);
    send_heartbeat(n); /* publish state=draining so placement skips us */
    if (n->opts.hooks.drain != NULL)
        n->opts.hooks.drain(n, n->opts.hooks.data);
    else
        node_drained(n);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct node *n = w->data;
    if (w->signum == SIGHUP) {
        if (log_reopen() < 0)
            log_error("cannot reopen the log file");
        else
            log_info("log reopened on SIGHUP");
        return;
    }
    log_info("signal received signal=%s", w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
    node_stop(n);
}

/* ---- HTTP: /healthz, /readyz, /metrics ---- */

static int on_healthz(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    static const char body[] = "{\"status\":\"ok\"}";
    return http_reply_json(conn, 200, body, sizeof body - 1);
}

static int on_readyz(struct mg_connection *conn, void *cbdata)
{
    struct node *n = cbdata;
    int up = atomic_load(&n->redis_up);
    int ready = atomic_load(&n->ready);
    int draining = atomic_load(&n->draining);
    char body[160];
    int len = snprintf(body, sizeof body, "{\"status\":\"%s\",\"redis\":\"%s\",\"draining\":%s}",
                       ready && !draining ? "ready" : "unavailable", up ? "up" : "down",
                       draining ? "true" : "false");
    return http_reply_json(conn, ready && !draining ? 200 : 503, body, (size_t)len);
}

static int on_metrics(struct mg_connection *conn, void *cbdata)
{
    struct node *n = cbdata;
    struct buf out;
    buf_init(&out, 16 << 20);
    int rc = metrics_render(n->metrics, &out);
    if (rc < 0) {
        buf_free(&out);
        return http_reply_error(conn, 500, "internal", "cannot render metrics");
    }
    rc = http_reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", out.data ? out.data : "",
                    out.len);
    buf_free(&out);
    return rc;
}

static int on_not_found(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    return http_reply_error(conn, 404, "not_found", "no such route");
}

/* ---- Metrics of every node ---- */

static double uptime_seconds(void *data)
{
    struct node *n = data;
    return (double)(time_mono_ms() - n->started_mono) / 1000.0;
}

static double heartbeat_age_seconds(void *data)
{
    struct node *n = data;
    int64_t last = atomic_load(&n->last_beat_mono);
    if (last == 0)
        last = n->started_mono;
    return (double)(time_mono_ms() - last) / 1000.0;
}

static double redis_connected(void *data)
{
    struct node *n = data;
    return atomic_load(&n->redis_up);
}

static double node_ready(void *data)
{
    struct node *n = data;
    return atomic_load(&n->ready) && !atomic_load(&n->draining);
}

static void register_metrics(struct node *n)
{
    char labels[256];
    snprintf(labels, sizeof labels, "version=\"%s\",revision=\"%s\",role=\"%s\"", SUPERIMAP_VERSION,
             SUPERIMAP_GIT_REV, n->opts.role);
    struct metric *info = metrics_gauge(n->metrics, "superimap_build_info",
                                        "Build of this process (always 1)", labels);
    metric_set(info, 1);
    metrics_gauge_fn(n->metrics, "superimap_uptime_seconds", "Seconds since the process started",
                     NULL, uptime_seconds, n);
    metrics_gauge_fn(n->metrics, "superimap_heartbeat_age_seconds",
                     "Seconds since the last successful heartbeat", NULL, heartbeat_age_seconds, n);
    metrics_gauge_fn(n->metrics, "superimap_redis_connected", "1 while Redis is connected", NULL,
                     redis_connected, n);
    metrics_gauge_fn(n->metrics, "superimap_ready", "1 while /readyz answers 200", NULL, node_ready,
                     n);
    n->m_reconnects = metrics_counter(n->metrics, "superimap_redis_reconnects_total",
                                      "Redis connections re-established after a loss", NULL);
    n->m_failovers = metrics_counter(n->metrics, "superimap_redis_failovers_total",
                                     "Times the Redis Sentinels named another primary "
                                     "(redis+sentinel:// only)",
                                     NULL);
    n->m_wait_short = metrics_counter(
        n->metrics, "superimap_redis_wait_short_total",
        "Writes that fewer than SUPERIMAP_REDIS_MIN_REPLICAS_ACK replicas acknowledged in time "
        "(repeated)",
        NULL);
    n->m_redis_latency = metrics_histogram(n->metrics, "superimap_redis_command_duration_seconds",
                                           "Round trip of Redis commands from this node", NULL,
                                           metrics_latency_bounds, metrics_latency_nbounds);
}

/* ---- Construction ---- */

struct node *node_new(struct ev_loop *loop, const struct node_opts *opts, char *err, size_t errlen)
{
    struct node *n = xcalloc(1, sizeof *n);
    n->loop = loop;
    n->opts = *opts;
    n->cfg = opts->cfg;
    n->started_mono = time_mono_ms();
    schema_key_role(n->role_key, opts->role);
    schema_key_node(n->node_key, n->cfg->node_id);
    if (gethostname(n->host, sizeof n->host) != 0)
        strcpy(n->host, "unknown");
    n->host[sizeof n->host - 1] = '\0';
    snprintf(n->pid, sizeof n->pid, "%ld", (long)getpid());
    snprintf(n->started_at, sizeof n->started_at, "%lld", (long long)time_now_ms());

    n->metrics = metrics_new();
    register_metrics(n);

    /* Worker threads inherit this mask, so the signals reach only the loop. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct http_opts ho = {
        .addr = n->cfg->http_addr,
        .threads = opts->http_threads,
        .document_root = opts->document_root,
        .thread_init = opts->http_thread_init,
        .thread_exit = opts->http_thread_exit,
        .request_timeout_ms = opts->http_request_timeout_ms,
        .conn_open = opts->http_conn_open,
        .conn_ready = opts->http_conn_ready,
        .data = opts->hooks.data,
    };
    n->http = http_start(&ho, err, errlen);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    if (n->http == NULL) {
        metrics_free(n->metrics);
        xfree(n);
        return NULL;
    }
    http_route(n->http, "/healthz$", on_healthz, n);
    http_route(n->http, "/readyz$", on_readyz, n);
    http_route(n->http, "/metrics$", on_metrics, n);
    log_info("http listening addr=%s port=%d", n->cfg->http_addr, http_port(n->http));

    n->redis = node_redis_open(n, "redis");
    if (n->redis == NULL) { /* config_load() checked the URL; only a bug gets here */
        snprintf(err, errlen, "cannot use SUPERIMAP_REDIS_URL");
        http_stop(n->http);
        metrics_free(n->metrics);
        xfree(n);
        return NULL;
    }
    rconn_on_state(n->redis, on_redis_state, n);
    rconn_on_latency(n->redis, on_redis_latency, n);

    ev_timer_init(&n->beat, on_beat_timer, NODE_HEARTBEAT_MS / 1000.0, NODE_HEARTBEAT_MS / 1000.0);
    n->beat.data = n;
    ev_timer_start(loop, &n->beat);

    ev_signal_init(&n->sigterm, on_signal, SIGTERM);
    ev_signal_init(&n->sigint, on_signal, SIGINT);
    ev_signal_init(&n->sighup, on_signal, SIGHUP);
    n->sigterm.data = n->sigint.data = n->sighup.data = n;
    ev_signal_start(loop, &n->sigterm);
    ev_signal_start(loop, &n->sigint);
    ev_signal_start(loop, &n->sighup);
    return n;
}

int node_run(struct node *n)
{
    /* Without static files, anything no route took is a 404. civetweb tries
     * handlers in the order they were set, and "/" matches every path: set
     * after the role's own routes (its start hook), or it would take theirs
     * too. */
    if (n->opts.document_root == NULL)
        http_route(n->http, "/", on_not_found, n);
    ev_run(n->loop, 0);
    return n->exit_code;
}

void node_free(struct node *n)
{
    if (n == NULL)
        return;
    ev_timer_stop(n->loop, &n->beat);
    ev_timer_stop(n->loop, &n->deadline);
    ev_signal_stop(n->loop, &n->sigterm);
    ev_signal_stop(n->loop, &n->sigint);
    ev_signal_stop(n->loop, &n->sighup);
    http_stop(n->http); /* before Redis: handlers read the node (node_main() stopped it) */
    rconn_free(n->redis);
    metrics_free(n->metrics);
    xfree(n);
}

static void on_wait_short(long long acked, void *data)
{
    (void)acked;
    struct node *n = data;
    metric_inc(n->m_wait_short);
}

struct rconn *node_redis_open(struct node *n, const char *name)
{
    struct rconn_opts ro = {
        .url = n->cfg->redis_url,
        .password = n->cfg->redis_password,
        .sentinel_password = n->cfg->redis_sentinel_password,
        .connect_timeout_ms = n->cfg->redis_timeout_ms,
        .command_timeout_ms = n->cfg->redis_timeout_ms,
        .max_pending = 100000,
        .name = name,
        .min_replicas_ack = n->cfg->redis_min_replicas_ack,
    };
    struct rconn *rc = rconn_new(n->loop, &ro);
    if (rc != NULL)
        rconn_on_wait_short(rc, on_wait_short, n);
    return rc;
}

struct rconn *node_redis(struct node *n)
{
    return n->redis;
}

struct ev_loop *node_loop(struct node *n)
{
    return n->loop;
}

struct metrics *node_metrics(struct node *n)
{
    return n->metrics;
}

struct http_server *node_http(struct node *n)
{
    return n->http;
}

const struct config *node_config(const struct node *n)
{
    return n->cfg;
}

const char *node_id(const struct node *n)
{
    return n->cfg->node_id;
}

int node_is_ready(const struct node *n)
{
    return atomic_load(&n->ready);
}

int node_is_draining(const struct node *n)
{
    return atomic_load(&n->draining);
}

/* ---- Fatal signals ---- */

#if defined(__SANITIZE_ADDRESS__)
#define NODE_CRASH_HANDLER 0 /* ASan reports these itself */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NODE_CRASH_HANDLER 0
#endif
#endif
#ifndef NODE_CRASH_HANDLER
#define NODE_CRASH_HANDLER 1
#endif

/* A crash leaves its signal and stack on stderr (resolve the addresses with
 * addr2line -e <binary>), then dies of the same signal (a core dump where
 * enabled). Only async-signal-safe calls: write() and backtrace_symbols_fd()
 * (backtrace() was called once at start, so libgcc is already loaded). */
static void on_fatal(int sig)
{
    static const char head[] = "superimap: fatal signal ";
    char num[8];
    int n = 0, v = sig;
    do
        num[sizeof num - 1 - n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0 && n < (int)sizeof num - 1);
    ssize_t w = write(STDERR_FILENO, head, sizeof head - 1);
    w = write(STDERR_FILENO, num + sizeof num - n, (size_t)n);
    w = write(STDERR_FILENO, ", stack:\n", 9);
    (void)w;
    void *frames[64];
    int nf = backtrace(frames, 64);
    backtrace_symbols_fd(frames, nf, STDERR_FILENO);
    raise(sig); /* SA_RESETHAND: the default action now */
}

static void install_crash_handler(void)
{
    if (!NODE_CRASH_HANDLER)
        return;
    void *warm[1];
    (void)backtrace(warm, 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* ---- main() ---- */

int node_main(int argc, char **argv, const struct node_main_spec *spec)
{
    signal(SIGPIPE, SIG_IGN);
    install_crash_handler();
    struct config cfg;
    config_main(&cfg, spec->config_role, spec->program, spec->summary, argc, argv);
    if (log_init(spec->program, cfg.node_id, cfg.log_level, cfg.log_format, cfg.log_components,
                 cfg.log_file) < 0) {
        fprintf(stderr, "%s: cannot open SUPERIMAP_LOG_FILE '%s'\n", spec->program, cfg.log_file);
        return 2;
    }
    log_info("starting version=%s revision=%s role=%s pid=%ld", SUPERIMAP_VERSION,
             SUPERIMAP_GIT_REV, spec->role, (long)getpid());
    config_log(&cfg, spec->config_role);
    if (scripts_init() < 0) {
        log_error("cannot hash the embedded Redis scripts (OpenSSL failure)");
        log_shutdown();
        return 1;
    }

    struct node_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.cfg = &cfg;
    opts.role = spec->role;
    opts.program = spec->program;
    opts.http_threads = 2;
    int rc = spec->prepare != NULL ? spec->prepare(&cfg, &opts) : 0;
    if (rc != 0) {
        scripts_shutdown();
        log_shutdown();
        return rc;
    }

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    char err[256];
    struct node *n = node_new(loop, &opts, err, sizeof err);
    if (n == NULL) {
        log_error("cannot start err=\"%s\"", err);
        rc = 1;
    } else {
        rc = spec->start != NULL ? spec->start(n, opts.hooks.data) : 0;
        if (rc == 0)
            rc = node_run(n);
        /* The role's handlers, connection and thread hooks run on
         * civetweb's threads and use what finish frees: a request in flight
         * at SIGTERM (the api's client gates), or a worker thread the
         * kernel had not yet run opening its Redis connection (a->cfg),
         * found the api zeroed and crashed it after its drain (issue #15
         * point 17). The server stops first: mg_stop() ends the reads in
         * progress and joins every worker. */
        http_stop(n->http);
        n->http = NULL;
        if (spec->finish != NULL)
            spec->finish(n, opts.hooks.data);
        log_info("stopped exit_code=%d", rc);
    }
    node_free(n);
    ev_loop_destroy(loop);
    scripts_shutdown();
    log_shutdown();
    return rc;
}

long node_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}
