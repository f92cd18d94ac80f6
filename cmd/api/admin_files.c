/*
 * cmd/api/admin_files: the dashboard's files (web/admin/: index.html,
 * admin.css, admin.js, ...) served by the api itself rather than civetweb's
 * document root, so that each carries the dashboard's headers (reply.c) and
 * the page needs a session. No directory listing, no dot files, no path
 * outside web/admin/ (admin_path.h says which paths name a file).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/admin_files.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/api/admin_path.h"
#include "cmd/api/admin_session.h"
#include "cmd/api/api.h"
#include "cmd/api/reply.h"
#include "cmd/api/router.h"
#include "core/config.h"
#include "core/err.h"
#include "core/http.h"
#include "core/time.h"

#define FILE_MAX (4u << 20) /* bytes of one file served */

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
    int rc = reply_bytes(r, 200, admin_path_type(path), data, n, NULL);
    xfree(data);
    return rc;
}

/* The file rel of web/admin/ (its pages only with a session). */
static int serve(struct req *r, const char *rel)
{
    if (strcmp(r->method, "GET") != 0)
        return reply_html(r, 405, "<!doctype html><title>Not allowed</title><p>Not allowed.</p>",
                          "Allow: GET\r\n");
    if (admin_path_is_page(rel)) {
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
    char rel[256];
    enum admin_path_kind kind = admin_path_classify(uri, rel, sizeof rel);
    if (kind == ADMIN_PATH_ROUTER)
        return router_handle(conn, cbdata);
    struct req r;
    memset(&r, 0, sizeof r);
    r.conn = conn;
    r.api = cbdata;
    r.rs = http_thread_data(conn);
    r.method = ri->request_method;
    r.is_admin = 1;
    r.started_ms = time_mono_ms();
    int status = kind == ADMIN_PATH_FILE    ? serve(&r, rel)
                 : kind == ADMIN_PATH_SLASH ? reply_see_other(&r, "/admin/", NULL)
                                            : not_found(&r);
    if (ri->content_length != 0)
        mg_disable_connection_keep_alive(conn);
    return status;
}
