/*
 * core/node: the life of every superimap process, shared by the api, the
 * watcher and the dispatcher.
 *
 *   start ──► connect Redis ──► meta_init (schema, shards) ──► SCRIPT LOAD ──► ready
 *               ▲    │ lost                                                    │
 *               └────┘ (backoff, /readyz 503, logged once per change)         │
 *   SIGTERM/SIGINT, or drain_requested (si:node:<id>, seen at a heartbeat)
 *            ──► draining (role's drain hook, bounded) ──► node_remove ──► exit 0
 *
 * While running it beats every 5 s into the role's zset and si:node:<id>
 * (Redis TIME, so one clock for the fleet), and serves /healthz, /readyz and
 * /metrics on SUPERIMAP_HTTP_ADDR. A mismatch between this binary and si:meta
 * (schema version or shard count) stops the process with exit code 2 and a
 * message saying which value differs: running on would scatter users over the
 * wrong shards.
 *
 * Everything here runs on the one libev loop of main(), except the HTTP
 * handlers, which run on civetweb's worker threads and read only atomics.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_NODE_H
#define CORE_NODE_H

#include <stdint.h>

#include <ev.h>

struct config;
struct http_server;
struct metrics;
struct node;
struct rconn;

/* Redis schema version this build reads and writes. A node finding version
 * 1 migrates it (core/node.c migrate_schema_1()). */
#define NODE_SCHEMA_VERSION 2
/* Heartbeat period, and the silence after which a node counts as dead. */
#define NODE_HEARTBEAT_MS   5000
#define NODE_DEAD_MS        15000

/* The role's hooks; every one optional. They run on the loop. */
struct node_hooks {
    /* Redis became usable (connected, meta checked, scripts loaded). Called
     * again after every reconnect. */
    void (*on_ready)(struct node *n, void *data);
    /* Redis was lost; work that needs it should pause. */
    void (*on_unready)(struct node *n, void *data);
    /* Stop taking work and hand it over; call node_drained(n) when done (at
     * once is fine). If it is not called within the shutdown timeout the
     * node exits anyway. */
    void (*drain)(struct node *n, void *data);
    /* Extra field/value pairs for si:node:<id>, appended to argv[*argc]
     * (at most 16 pairs). Strings must outlive the call. */
    void (*describe)(struct node *n, const char **argv, int *argc, void *data);
    void *data;
};

struct node_opts {
    const struct config *cfg;
    const char *role;          /* "api", "watcher" or "dispatcher" */
    const char *program;       /* "superimap-watcher" */
    int http_threads;          /* civetweb workers */
    const char *document_root; /* NULL: no files */
    void *(*http_thread_init)(void *data);
    void (*http_thread_exit)(void *thread_data, void *data);
    int http_request_timeout_ms; /* struct http_opts's; 0: its default */
    int (*http_conn_open)(void *data, const char *peer, int complete);
    void (*http_conn_ready)(void *data, const char *peer);
    struct node_hooks hooks;
};

/*
 * Creates the node on loop: Redis client, metrics, HTTP listener and signal
 * watchers. Returns NULL with the reason in err when the listener cannot be
 * opened (exit code 1). Redis being down is not an error: the node retries.
 */
struct node *node_new(struct ev_loop *loop, const struct node_opts *opts, char *err, size_t errlen);

/* Runs the loop until the node has stopped. Returns the process exit code:
 * 0 after a clean drain, 2 on a meta mismatch. */
int node_run(struct node *n);

/* Frees everything node_new() made. NULL is a no-op. */
void node_free(struct node *n);

/* The role's drain hook reports that it has finished. */
void node_drained(struct node *n);

/* Starts a graceful stop, as SIGTERM does. */
void node_stop(struct node *n);

/* Opens another connection to the node's Redis, with the node's address,
 * passwords and timeouts, named name (copied) in logs: for traffic that
 * must not queue behind the node's own (the watcher's sessions, whose
 * calls would delay the heartbeat and the incarnation's renewals), and
 * SUPERIMAP_REDIS_MIN_REPLICAS_ACK for its rconn_script_acked() calls (a
 * short WAIT counts in superimap_redis_wait_short_total). Returns
 * NULL when the URL does not parse (config_load() checked it). The caller
 * owns it: rconn_free() it before node_free(). */
struct rconn *node_redis_open(struct node *n, const char *name);

/* Accessors, valid for the node's life. */
struct rconn *node_redis(struct node *n);
struct ev_loop *node_loop(struct node *n);
struct metrics *node_metrics(struct node *n);
struct http_server *node_http(struct node *n);
const struct config *node_config(const struct node *n);
const char *node_id(const struct node *n);
int node_is_ready(const struct node *n);
int node_is_draining(const struct node *n);

/* Raises the soft RLIMIT_NOFILE to the hard one (docs/architecture.md section 7) and
 * returns the limit now in force (1024 when it cannot be read, 2^20 for
 * "unlimited"). Call it once at start, before opening sockets. */
long node_raise_fd_limit(void);


/* ---- main() of every node binary ---- */

/* What a binary tells node_main() about itself. */
struct node_main_spec {
    const char *role;     /* "watcher" */
    const char *program;  /* "superimap-watcher" */
    const char *summary;  /* one paragraph for --help */
    unsigned config_role; /* CONFIG_ROLE_* */
    /* Optional, before the node exists: fill opts (threads, document root,
     * hooks). Returns 0, or an exit code to stop with. */
    int (*prepare)(const struct config *cfg, struct node_opts *opts);
    /* Optional, once the node exists and before the loop runs: add routes and
     * metrics. Returns 0, or an exit code to stop with. */
    int (*start)(struct node *n, void *data);
    /* Optional, after the loop ended and the HTTP server stopped (no handler,
     * connection hook or worker thread of the role runs any more; node_http()
     * is NULL), before the node is freed. */
    void (*finish)(struct node *n, void *data);
};

/* The whole life of a node binary: config (exit 2 on a bad value), logging,
 * node, loop, clean stop. Returns the process exit code. */
int node_main(int argc, char **argv, const struct node_main_spec *spec);

#endif
