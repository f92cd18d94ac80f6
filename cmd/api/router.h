/*
 * cmd/api/router.h: the one entry point main.c registers with civetweb.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_ROUTER_H
#define CMD_API_ROUTER_H

struct mg_connection;

/* The civetweb handler of "/api/", "/users/" and (through admin_files.c)
 * /admin/api/, /admin/login and /admin/logout; cbdata is the struct
 * api. Runs on a civetweb worker thread; returns the status sent. */
int router_handle(struct mg_connection *conn, void *cbdata);

#endif
