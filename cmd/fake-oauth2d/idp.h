/*
 * cmd/fake-oauth2d/idp: the state and HTTP handlers of the test OAuth2
 * provider (RFC 6749 authorization code and refresh token grants, RFC 7636
 * PKCE S256, RFC 7009 revocation, RFC 7662 introspection, an OpenID Connect
 * style id_token and userinfo), with control endpoints for tests: clients and
 * token lifetimes, error injection, counters.
 *
 * Everything lives in memory behind one mutex; handlers run on civetweb's
 * worker threads.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_OAUTH2D_IDP_H
#define CMD_FAKE_OAUTH2D_IDP_H

struct http_server;
struct idp;

/* Returns a new provider: access tokens live access_ttl seconds, refresh
 * tokens rotate on use when rotate_refresh is set. */
struct idp *idp_new(int access_ttl, int rotate_refresh);

/* Frees it (after the server has stopped). Accepts NULL. */
void idp_free(struct idp *o);

/* Registers client id with secret (both copied; a known id gets the new
 * secret). Returns 0, or -1 when either is empty or too long. */
int idp_add_client(struct idp *o, const char *id, const char *secret);

/* Routes every endpoint of o on srv. */
void idp_routes(struct idp *o, struct http_server *srv);

#endif
