/*
 * cmd/api/views.h: the JSON shapes of the API's objects, written from
 * records (struct rec) into a generator; no Redis, no replies.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_VIEWS_H
#define CMD_API_VIEWS_H

#include <stdint.h>

#include "cmd/api/rec.h"

struct api;
struct json_gen;

/* Writes one user object (the original's keys first: tag, email,
 * connect_url, disconnect_url, connected_at; then archived, state,
 * last_error, last_login_at, last_email_at, imap_provider_code,
 * login_username, enable_tracer, mailboxes, mailboxes_own,
 * mailboxes_missing, created_at, updated_at). Credentials are never
 * written. api_key signs the links. version is the API's (1 or 2): under
 * v1 the mailbox keys appear only once the user or its connection has a
 * list, or the watcher reported some missing (issue #21), so the original's
 * clients see its answers unchanged until the partner uses them. */
void view_user(struct json_gen *g, const struct api *a, const struct rec *u, const char *api_key,
               int version);

/* The list entry of a user: tag, email, archived, connected_at, state,
 * mailboxes, mailboxes_missing (those two as in view_user()). */
void view_user_brief(struct json_gen *g, const struct rec *u, int version);

/* {imap_provider_code, users_count, auth, oauth2_client_id,
 * oauth2_client_secret_set, mailboxes, created_at, updated_at}; under v1
 * mailboxes only once the connection has a list. */
void view_connection(struct json_gen *g, const char *code, const struct rec *c, const char *auth,
                     int version);

/* A provider's fields (every stored field, numbers as numbers). */
void view_provider(struct json_gen *g, const struct rec *p);

/* A partner without its secrets: id, name, webhook URLs, redirect URLs,
 * retry policy, rotation state, created_at, updated_at. */
void view_partner(struct json_gen *g, const char *pid, const struct rec *p);

/* view_partner() without closing the object, for members to follow. */
void view_partner_open(struct json_gen *g, const char *pid, const struct rec *p);

/* An event hash (without payload): id, type, state, attempts, ... */
void view_event(struct json_gen *g, const struct rec *e);

/* view_event() without closing the object, for members to follow. */
void view_event_open(struct json_gen *g, const struct rec *e);

/* A user as the admin API shows it across partners, object left open for
 * members to follow: uid, partner_id, partner_name (null when unknown),
 * provider, tag, email, username, state, last_error, last_login_at,
 * last_email_at, connected_at, archived, created_at, updated_at. No
 * credentials, no links. */
void view_admin_user_open(struct json_gen *g, const struct rec *u, const char *partner_name);

/* The user's effective mailboxes and mailboxes_missing (the admin user
 * detail; the partner view has its own rules for v1). */
void view_admin_user_mailboxes(struct json_gen *g, const struct rec *u);

/* Writes a ms timestamp text as ISO 8601 text, or null when empty. */
void view_time(struct json_gen *g, const char *key, const char *ms);

/*
 * Builds the connect (kind "connect") or disconnect ("disconnect") link of
 * user uid, valid CONNECT_LINK_TTL from ts (unix seconds), used once:
 *
 *   <public_url>/users/<kind>/new?user_id=<uid>&ts=<ts>&sig=<sig>
 *
 * sig = base64url(HMAC-SHA256(link_key, "<kind>\n<uid>\n<ts>")), link_key =
 * HMAC-SHA256(raw SUPERIMAP_ENCRYPTION_KEY, "superimap connect links v1").
 * sig is connect_link_sig()'s, which routes_connect.c checks. Returns a
 * new string.
 */
char *view_link(const struct api *a, const char *kind, const char *uid, int64_t ts);

/* One dead letter: partner_id, died_at (ISO and ms) and the event. */
void view_dead_letter(struct json_gen *g, int64_t died_ms, const struct rec *e);

/* One delivery-log entry (core/schema.h "Delivery log"; log_id is its
 * stream id) and its event's state now when state is not NULL. */
void view_log_entry(struct json_gen *g, const char *log_id, const struct rec *e, const char *state);

/* A node of the fleet: id, role, heartbeat age, draining and
 * drain_requested (booleans), then its si:node fields (numbers as
 * numbers). */
void view_node(struct json_gen *g, const char *id, const char *role, int64_t now_ms,
               int64_t beat_ms, const struct rec *n);

/* "next_cursor": the opaque cursor of an index page that stopped after
 * member next (params_cursor_encode()), or null when next is NULL (the
 * last page). */
void view_next_cursor(struct json_gen *g, const char *next);

/* One entry of a list, named by id. view_partner() has this shape. */
typedef void view_row_fn(struct json_gen *g, const char *id, const struct rec *rec);

/* view_provider() as a view_row_fn. */
void view_provider_row(struct json_gen *g, const char *code, const struct rec *p);

/* Writes an array of l's entries, each through row: the admin lists of
 * providers and partners. */
void view_list(struct json_gen *g, const struct rec_list *l, view_row_fn *row);

#endif
