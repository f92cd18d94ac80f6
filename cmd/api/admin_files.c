/*
 * cmd/api/admin_files: the dashboard's files (web/admin/: index.html,
 * admin.css, admin.js, ...) served by the api itself rather than civetweb's
 * document root, so that each carries the dashboard's headers (reply.c) and
 * the page needs a session. No directory listing, no dot files, no path
 * outside web/admin/: a path is 1 to 8 segments of [A-Za-z0-9._-], none
 * starting with a dot.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/admin_files.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/api/admin_session.h"
#include "cmd/api/api.h"
#include "cmd/api/reply.h"
#include "cmd/api/router.h"
#include "core/config.h"
#include "core/err.h"
#include "core/http.h"
#include "core/time.h"

#define FILE_MAX     (4u << 20) /* bytes of one file served */
#define SEGMENTS_MAX 8

/* 1 when rel (the path after /admin/) names a file we may serve. */
static int path_ok(const char *rel)
{
    int segments = 0;
    const char *p = rel;
    while (*p != '\0') {
        size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
        if (n == 0 || p[0] == '.' || ++segments > SEGMENTS_MAX)
            return 0;
        p += n;
        if (*p == '/' && p[1] != '\0')
            p++;
        else if (*p != '\0')
            return 0;
    }
    return segments > 0;
}

/* The Content-Type of path by its extension. */
static const char *type_of(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i][0]);
        if (n > e && strcmp(path + n - e, types[i][0]) == 0)
            return types[i][1];
    }
    return "application/octet-stream";
}

static int not_found(struct req *r)
{
    return reply_html(r, 404, "<!doctype html><title>Not found</title><p>Not found.</p>", NULL);
}

/* Sends file path whole, or 404. */
static int send_file(struct req *r, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > FILE_MAX)
        return not_found(r);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return not_found(r);
    char *data = xmalloc((size_t)st.st_size + 1);
    size_t n = fread(data, 1, (size_t)st.st_size, f);
    fclose(f);
    int rc = reply_body(r, 200, type_of(path), data, n, NULL);
    xfree(data);
    return rc;
}

static int serve(struct req *r, const char *uri)
{
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0)
        return reply_html(r, 405, "<!doctype html><title>Not allowed</title><p>Not allowed.</p>",
                          "Allow: GET, HEAD\r\n");
    if (strcmp(uri, "/admin") == 0)
        return reply_see_other(r, "/admin/", NULL);
    const char *rel = uri + strlen("/admin/");
    if (*rel == '\0')
        rel = "index.html";
    if (!path_ok(rel))
        return not_found(r);
    size_t n = strlen(rel);
    if (n > 5 && strcmp(rel + n - 5, ".html") == 0) {
        struct admin_session s;
        int rc = admin_session_find(r, &s);
        if (rc < 0)
            return reply_html(r, 503,
                              "<!doctype html><title>Unavailable</title><p>The data store is "
                              "not reachable; try again shortly.</p>",
                              NULL);
        if (rc == 0)
            return reply_see_other(r, "/admin/login", NULL);
    }
    char path[2048];
    int len = snprintf(path, sizeof path, "%s/admin/%s", r->api->cfg->web_root, rel);
    if (len < 0 || (size_t)len >= sizeof path)
        return not_found(r);
    return send_file(r, path);
}

int admin_files_handle(struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *uri = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    if (strncmp(uri, "/admin/api/", 11) == 0 || strcmp(uri, "/admin/login") == 0 ||
        strcmp(uri, "/admin/logout") == 0)
        return router_handle(conn, cbdata);
    struct req r;
    memset(&r, 0, sizeof r);
    r.conn = conn;
    r.api = cbdata;
    r.rs = http_thread_data(conn);
    r.method = ri->request_method;
    r.is_admin = 1;
    r.started_ms = time_mono_ms();
    if (strcmp(uri, "/admin") != 0 && strncmp(uri, "/admin/", 7) != 0)
        return not_found(&r); /* civetweb's prefix match: "/adminx" */
    int status = serve(&r, uri);
    if (ri->content_length != 0)
        mg_disable_connection_keep_alive(conn);
    return status;
}
