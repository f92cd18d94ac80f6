/*
 * cmd/api/admin_files.h: everything under /admin, as civetweb hands it to
 * the api.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_ADMIN_FILES_H
#define CMD_API_ADMIN_FILES_H

struct mg_connection;

/* The civetweb handler of "/admin" (its subtree too); cbdata is the struct
 * api. /admin/api/..., /admin/login and /admin/logout go to the router; any
 * other path is a file of SUPERIMAP_WEB_ROOT/admin/ (index.html for
 * /admin/), with the dashboard's security headers; its HTML pages only
 * with a session (else 303 to /admin/login). Runs on a civetweb worker
 * thread; returns the status sent. */
int admin_files_handle(struct mg_connection *conn, void *cbdata);

#endif
