/*
 * cmd/api/auth.h: who is calling: the router's check before a handler.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_AUTH_H
#define CMD_API_AUTH_H

struct req;

/* Authenticates the partner of r from the x-api-key header or the api_key
 * parameter and applies its rate limit. Returns 0 with r->partner set, or
 * the status after replying (401, 429, 503). */
int auth_partner(struct req *r);

/* 1 when r brings an API key in its x-api-key header or its parameters read
 * so far (the query before the body is read). */
int auth_key_presented(struct req *r);

/* Checks Authorization: Bearer <SUPERIMAP_ADMIN_TOKEN> in constant time,
 * or, without an Authorization header, the dashboard session of the
 * si_admin cookie and, for methods other than GET and HEAD, its CSRF token
 * in X-CSRF-Token. Returns 0 with r->admin set ("token" or the account),
 * or the status after replying (401, 403 csrf, 503). */
int auth_admin(struct req *r);

#endif
