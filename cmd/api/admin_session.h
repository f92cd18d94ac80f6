/*
 * cmd/api/admin_session.h: who is signed in to the dashboard. The sign-in
 * and sign-out pages and GET /admin/api/session are this file's routes
 * (routes_admin_session); auth.c asks it for the session of a request.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_ADMIN_SESSION_H
#define CMD_API_ADMIN_SESSION_H

#include "cmd/api/admin_store.h"

struct req;

#define ADMIN_COOKIE "si_admin"

/* Outcomes of a sign-in, the label of superimap_admin_logins_total. */
enum admin_result {
    ADMIN_RESULT_OK,
    ADMIN_RESULT_FAILED,
    ADMIN_RESULT_LOCKED,
    ADMIN_RESULT_DISABLED
};
#define ADMIN_RESULTS 4

/* The label of result: "ok", "failed", "locked", "disabled". */
const char *admin_result_str(enum admin_result result);

/* The live session whose cookie r brings, renewed (admin_store_touch()):
 * 1 with *out filled, 0 when r brings none or it has ended, -SIMAP_ECONN. */
int admin_session_find(struct req *r, struct admin_session *out);

#endif
