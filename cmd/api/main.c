/*
 * superimap-api: the partner REST API, the admin API and dashboard, and the
 * connect pages, on civetweb (DESIGN.md section 5).
 *
 * Each civetweb worker thread owns one blocking Redis connection (core/rsync),
 * made when the thread starts and found again with http_thread_data(); the
 * libev loop of core/node keeps the heartbeat and readiness.
 *
 * SPDX-License-Identifier: MIT
 */
#include <sys/stat.h>

#include "core/config.h"
#include "core/http.h"
#include "core/log.h"
#include "core/node.h"
#include "core/rsync.h"

static struct api {
    const struct config *cfg;
} api;

static void *on_thread_start(void *data)
{
    struct api *a = data;
    struct rsync_opts ro = {
        .url = a->cfg->redis_url,
        .password = a->cfg->redis_password,
        .timeout_ms = a->cfg->redis_timeout_ms,
    };
    return rsync_new(&ro);
}

static void on_thread_stop(void *thread_data, void *data)
{
    (void)data;
    rsync_free(thread_data);
}

static int on_api_not_found(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    return http_reply_error(conn, 404, "not_found", "no such API route");
}

static int prepare(const struct config *cfg, struct node_opts *opts)
{
    api.cfg = cfg;
    struct stat st;
    if (stat(cfg->web_root, &st) == 0 && S_ISDIR(st.st_mode))
        opts->document_root = cfg->web_root;
    else
        log_warn("SUPERIMAP_WEB_ROOT is not a directory; serving no static files web_root=%s",
                 cfg->web_root);
    opts->http_threads = cfg->api_threads;
    opts->http_thread_init = on_thread_start;
    opts->http_thread_exit = on_thread_stop;
    opts->hooks.data = &api;
    return 0;
}

static int start(struct node *n, void *data)
{
    (void)data;
    http_route(node_http(n), "/api/", on_api_not_found, NULL);
    http_route(node_http(n), "/admin/api/", on_api_not_found, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct node_main_spec spec = {
        .role = "api",
        .program = "superimap-api",
        .summary = "Serves the superimap partner REST API, the admin API and dashboard, and "
                   "the connect pages.",
        .config_role = CONFIG_ROLE_API,
        .prepare = prepare,
        .start = start,
    };
    return node_main(argc, argv, &spec);
}
