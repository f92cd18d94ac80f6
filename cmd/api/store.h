/*
 * cmd/api/store.h: the api's data layer, the only code that talks to Redis.
 * Every call runs on the request's worker thread over its own blocking
 * connection (struct req.rs) and returns 0 or a -SIMAP_* code (core/err.h):
 * -SIMAP_ECONN when Redis failed (logged here), -SIMAP_ENOTFOUND when the
 * record does not exist for this caller, -SIMAP_ESTATE when the record's
 * state refuses the change (a duplicate, in use, not a dead letter, changed
 * too often meanwhile), -SIMAP_ECRYPTO when sealing a secret failed,
 * -SIMAP_EPROTO when a script answered in a shape it never does. Keys come
 * from core/schema.h; every write is one Lua script (scripts/lua/).
 *
 * Records (struct rec, struct rec_list) returned through out parameters
 * belong to the caller in every case: rec_free() / rec_list_free() them.
 * Nothing here replies or knows about HTTP.
 *
 *   store.c           commands, scripts, hashes read whole: the primitives,
 *                     declared in store_impl.h for store_*.c alone
 *   store_partners.c  providers and partners (the admin API's records)
 *   store_users.c     a partner's connections and their users
 *   store_events.c    events: enqueueing, reading, replay, the delivery log;
 *                     queue depths, dead letters and the fleet
 *   store_connect.c   the connect pages: used links, flows, PLAIN form tries,
 *                     a user connected or disconnected with its event
 *   store_search.c    the admin dashboard's searches across partners (the
 *                     si:ix:user and si:ix:partner indexes), leases, drains
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_STORE_H
#define CMD_API_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/api/rec.h"
#include "core/schema.h"

struct req;

/* Redis' clock in ms (TIME), or this host's when Redis does not answer. */
int64_t store_time_ms(struct req *r);

/* ---- store_partners.c: providers ---- */

/* Provider code's hash into *out. 0, -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_provider_get(struct req *r, const char *code, struct rec *out);

/* Every provider (by code) into *out, ids the codes. Providers that vanish
 * or fail to read meanwhile are left out. 0 or -SIMAP_ECONN. */
int store_provider_list(struct req *r, struct rec_list *out);

/* Creates provider code with the n strings of pairs (field, value, ...).
 * 0, -SIMAP_ESTATE (it exists) or -SIMAP_ECONN. */
int store_provider_create(struct req *r, const char *code, const char *const *pairs, int n);

/* Sets the pairs of provider code. 0, -SIMAP_ENOTFOUND, -SIMAP_ESTATE
 * (auth changes while connections use it) or -SIMAP_ECONN. */
int store_provider_update(struct req *r, const char *code, const char *const *pairs, int n);

/* 0, -SIMAP_ENOTFOUND, -SIMAP_ESTATE (connections use it), -SIMAP_ECONN. */
int store_provider_delete(struct req *r, const char *code);

/* ---- store_partners.c: partners ---- */

/* Partner pid's hash into *out. 0, -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_partner_get(struct req *r, const char *pid, struct rec *out);

/* Every partner, oldest first, ids the partner ids; as store_provider_list(). */
int store_partner_list(struct req *r, struct rec_list *out);

/* 1 when partner pid's field is set (non-empty), 0 when not, or
 * -SIMAP_ECONN. */
int store_partner_has(struct req *r, const char *pid, const char *field);

/* A partner just made: its id, and its API key and webhook secret in clear
 * (shown once: crypto_wipe() and xfree() both). */
struct store_new_partner {
    char pid[24];
    char *api_key;
    char *webhook_secret;
};

/* Creates a partner with a new id, API key (api_key when not NULL or "",
 * checked by the caller with keys_api_key_acceptable(); else a new one) and
 * webhook secret and the pairs (field, value, ...; empty values skipped). 0
 * with *out set, -SIMAP_ESTATE (the new id was taken: out->pid says which),
 * -SIMAP_EINVAL (another partner has api_key), -SIMAP_ECRYPTO or
 * -SIMAP_ECONN; out's secrets are NULL unless it returned 0. */
int store_partner_create(struct req *r, const char *const *pairs, int n, const char *api_key,
                         struct store_new_partner *out);

/* Sets the pairs of partner pid. 0, -SIMAP_ENOTFOUND, -SIMAP_ECRYPTO or
 * -SIMAP_ECONN. Both store a webhook URL's credentials (its userinfo)
 * sealed beside it and the URL with them masked (keys_seal_partner_url()). */
int store_partner_update(struct req *r, const char *pid, const char *const *pairs, int n);

/* Deletes partner pid: each connection (store_conn_delete()), then the
 * partner, its key lookups, delivery log and queued events. 0,
 * -SIMAP_ENOTFOUND, -SIMAP_ESTATE (a connection was added meanwhile) or
 * -SIMAP_ECONN. */
int store_partner_delete(struct req *r, const char *pid);

/* Replaces partner pid's field ("api_key" or "webhook_secret") by a new
 * one, or for the API key by given when not NULL (a key the partner brings,
 * checked by the caller with keys_api_key_acceptable()), the current one
 * staying valid grace_sec more as <field>_old. given equal to the current
 * key changes nothing. Retries a few times when a rotation races it. 0 with
 * *fresh (the new value in clear: crypto_wipe() and xfree() it) and until
 * (ms text of the old one's end, "" when there was none), -SIMAP_ENOTFOUND,
 * -SIMAP_EINVAL (given is another partner's key), -SIMAP_ESTATE (it kept
 * racing), -SIMAP_ECRYPTO or -SIMAP_ECONN. */
int store_partner_rotate(struct req *r, const char *pid, const char *field, const char *given,
                         int64_t grace_sec, char **fresh, char until[24]);

/* What the lookup of a presented API key found: its partner, whether the
 * key's rate limit lets this request through (else retry_ms), and the
 * partner's sealed current and previous keys to compare it with. */
struct store_key_hit {
    char pid[24];
    int allowed;
    long long retry_ms;
    char *api_key;     /* envelope; NULL when absent */
    char *api_key_old; /* envelope; NULL when absent */
    long long api_key_old_until;
};

/* Looks up the partner of the API key whose SHA-256 is sha256_hex and
 * takes a token from its bucket (scripts/lua/rate_limit.lua; rate 0: no
 * limit), in one script. 0 with *out set, -SIMAP_ENOTFOUND (no partner
 * has it) or -SIMAP_ECONN. store_key_hit_free() *out in every case. */
int store_key_lookup(struct req *r, const char *sha256_hex, int rate, int burst,
                     struct store_key_hit *out);

void store_key_hit_free(struct store_key_hit *h);

/* ---- store_users.c: connections ---- */

/* Partner pid's connection to provider code into *out. A connection being
 * deleted is not found. 0, -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_conn_get(struct req *r, const char *pid, const char *code, struct rec *out);

/* Partner pid's connections in code order, ids the codes, each record the
 * connection's hash plus the field "auth", its provider's (plain or
 * oauth2). 0 or -SIMAP_ECONN. */
int store_conn_list(struct req *r, const char *pid, struct rec_list *out);

/* Creates the connection with the pairs (at most 3: oauth2_client_id,
 * oauth2_client_secret in clear, sealed here; mailboxes, canonical JSON). 0, -SIMAP_ENOTFOUND (no
 * such provider), -SIMAP_ESTATE (it exists), -SIMAP_EAUTH (the partner is
 * gone), -SIMAP_ECRYPTO or -SIMAP_ECONN. */
int store_conn_create(struct req *r, const char *pid, const char *code, const char *const *pairs,
                      int n);

/* Sets the pairs of the connection, as store_conn_create(); a mailboxes of
 * "" is deleted (the default again). 0, -SIMAP_ENOTFOUND, -SIMAP_ECRYPTO or
 * -SIMAP_ECONN. */
int store_conn_update(struct req *r, const char *pid, const char *code, const char *const *pairs,
                      int n);

/* Copies the connection's mailboxes into the conn_mailboxes of each of its
 * users, archived too (scripts/lua/connection_mailboxes.lua, 500 users a
 * call), recording an update in si:changes for each watched user whose
 * effective list changed. Idempotent: after a failure part way, calling it
 * again finishes the job. 0, -SIMAP_ENOTFOUND (the connection went away) or
 * -SIMAP_ECONN. */
int store_conn_propagate_mailboxes(struct req *r, const char *pid, const char *code);

/* Deletes connection code of partner pid with all its users, their cursors,
 * leases and queued events (scripts/lua/connection_delete.lua, in batches;
 * the connection is invisible from the first batch on). 0 or -SIMAP_ECONN. */
int store_conn_delete(struct req *r, const char *pid, const char *code);

/* ---- store_users.c: users ---- */

/* User uid of partner pid's connection code into *out: -SIMAP_ENOTFOUND
 * also when it belongs to another partner or connection. */
int store_user_get(struct req *r, const char *pid, const char *code, const char *uid,
                   struct rec *out);

/* The user with tag (any case): the live one, else the most recently
 * updated archived one. 0, -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_user_find(struct req *r, const char *pid, const char *code, const char *tag,
                    struct rec *out);

/* A user's writable fields, checked by the caller; has_* tell which were
 * given, -1 means absent for the flags. */
struct store_user_input {
    const char *tag, *email, *username, *secret;
    int has_tag, has_email, has_username, has_secret;
    int archived;
    int enable_tracer;
    char *mailboxes;   /* the user's own list, canonical JSON ("": none, it inherits the
                          connection's); owned by the caller */
    int has_mailboxes; /* 1 when the request set or cleared mailboxes */
};

/* Creates a user (tag required) of the connection, whose provider uses
 * oauth2 or not; sends user_connected when it is created connected. 0 with
 * its id in uid, -SIMAP_ESTATE with *field ("tag" or "email") taken,
 * -SIMAP_ENOTFOUND (the connection is gone), -SIMAP_ECRYPTO, -SIMAP_EPROTO
 * or -SIMAP_ECONN. */
int store_user_create(struct req *r, const char *pid, const char *code, int oauth2,
                      const struct store_user_input *in, char uid[SCHEMA_UID_LEN + 1],
                      const char **field);

/* Archives user u (its hash). 0 or -SIMAP_ECONN. */
int store_user_archive(struct req *r, const struct rec *u);

/* Restores archived user *u, reading it again (into *u) when it changed
 * meanwhile. 0, -SIMAP_ESTATE with *field taken (NULL: it kept changing),
 * -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_user_restore(struct req *r, const char *pid, const char *code, struct rec *u,
                       const char **field);

/* Applies in to user *u as store_user_restore() does, and sends the
 * user_connected / user_disconnected event of a transition. Returns as
 * store_user_restore(), or -SIMAP_ECRYPTO / -SIMAP_EPROTO. */
int store_user_update(struct req *r, const char *pid, const char *code, int oauth2, struct rec *u,
                      const struct store_user_input *in, const char **field);

/* Up to limit users of the connection in tag order after the zset member
 * after (NULL: from the start), each record with tag, email, archived,
 * connected_at and state, ids the zset members ("<lower tag>\x1f<uid>").
 * *next is the member to continue after when users follow (xfree() it),
 * else NULL. 0 or -SIMAP_ECONN. */
int store_user_page(struct req *r, const char *pid, const char *code, const char *after,
                    int64_t limit, struct rec_list *out, char **next);

/* The connection's users in the original's order (by email, users without
 * one last, then by tag), for v1's whole list: an email-ordered copy of the
 * connection's user index in Redis, built a page at a time (the api's
 * memory stays constant; Redis holds the copy, EX 10 min). 0 with its key
 * in key, to page with store_user_sorted_page() and drop with
 * store_user_sort_drop(); or -SIMAP_ECONN (nothing left behind). */
int store_user_sort(struct req *r, const char *pid, const char *code, char key[SCHEMA_KEY_MAX]);

/* As store_user_page() over the copy key made by store_user_sort(). */
int store_user_sorted_page(struct req *r, const char *pid, const char *key, const char *after,
                           int64_t limit, struct rec_list *out, char **next);

/* Deletes the copy key. */
void store_user_sort_drop(struct req *r, const char *key);

/* ---- store_connect.c: the connect pages ---- */

/* Marks the link whose signature is sig as followed. 0 the first time,
 * -SIMAP_ESTATE after (a link is single use), or -SIMAP_ECONN. */
int store_link_use(struct req *r, const char *sig);

/* Keeps a connect flow's record under state for CONNECT_STATE_TTL seconds,
 * sealed. 0, -SIMAP_ECRYPTO or -SIMAP_ECONN. */
int store_flow_put(struct req *r, const char *state, const char *record);

/* The record of flow state into *record (crypto_wipe() and xfree() it),
 * deleting it in the same command when take (an OAuth2 state is single
 * use). 0, -SIMAP_ENOTFOUND (unknown, expired, taken, or not ours) or
 * -SIMAP_ECONN. */
int store_flow_get(struct req *r, const char *state, int take, char **record);

/* Deletes flow state. 0 or -SIMAP_ECONN. */
int store_flow_drop(struct req *r, const char *state);

/* Remembers failure (a URL, maybe "") as the failure URL of the browser
 * whose cookie's SHA-256 hex is browser, for CONNECT_STATE_TTL seconds.
 * 0 or -SIMAP_ECONN. */
int store_browser_put(struct req *r, const char *browser, const char *failure);

/* The failure URL store_browser_put() kept for browser (xfree() it), or
 * NULL. */
char *store_browser_failure(struct req *r, const char *browser);

/* Counts one more PLAIN form login for user uid in a 15-minute window
 * into *tries. 0 or -SIMAP_ECONN. */
int store_connect_try(struct req *r, const char *uid, long long *tries);

/* User uid's hash into *out, whatever its partner. 0, -SIMAP_ENOTFOUND or
 * -SIMAP_ECONN. */
int store_user_by_uid(struct req *r, const char *uid, struct rec *out);

/* The user's encrypted field ("secret" or "oauth2_access_token") in clear
 * (crypto_wipe() and xfree() it), or NULL when empty or unreadable. */
char *store_user_open(struct req *r, const struct rec *u, const char *field);

/* Connection c's (partner pid, provider code) client secret in clear, as
 * store_user_open(). */
char *store_conn_open_secret(struct req *r, const char *pid, const char *code, const struct rec *c);

/* What a connect page sets on success. NULL strings leave the field as it
 * is, except secret (required) and access_token ("" for none). */
struct store_connect_in {
    const char *secret;       /* refresh token or password, in clear */
    const char *access_token; /* in clear, or "" */
    const char *expires_at;   /* ms since the epoch, or "" */
    const char *email;        /* from the provider; NULL: unchanged */
    const char *username;     /* PLAIN login; NULL: unchanged */
};

/* Connects user *u (its hash; read again into *u when its tag changed
 * meanwhile) with in, and queues user_connected (when its partner has that
 * URL; *queued 1), in one script (scripts/lua/user_connect.lua). 0,
 * -SIMAP_ENOTFOUND (gone, moved or archived), -SIMAP_ESTATE (another live
 * user has the email, or it kept changing), -SIMAP_ECRYPTO, -SIMAP_EPROTO
 * or -SIMAP_ECONN. */
int store_user_connect(struct req *r, struct rec *u, const struct store_connect_in *in,
                       int *queued);

/* Clears user u's credentials (and its email when clear_email), and queues
 * user_disconnected when it was connected (*was) and its partner has that
 * URL (*queued), in one script (scripts/lua/user_disconnect.lua). 0,
 * -SIMAP_ENOTFOUND, -SIMAP_ESTATE (its tag changed meanwhile),
 * -SIMAP_ECRYPTO, -SIMAP_EPROTO or -SIMAP_ECONN. */
int store_user_disconnect(struct req *r, const struct rec *u, int clear_email, int *was,
                          int *queued);

/* ---- store_events.c: events ---- */

/* Queues event eid in shard k for partner pid (scripts/lua/event_enqueue.lua):
 * type, uid, code, tag, sha1 and the payload (the body without timestamp
 * and signature), sealed with AAD si:evt:<eid>. 0, -SIMAP_ECRYPTO or
 * -SIMAP_ECONN. */
int store_event_enqueue(struct req *r, uint32_t k, const char *pid, const char *eid,
                        const char *type, const char *uid, const char *code, const char *tag,
                        const char *sha1, const char *payload);

/* Event id's hash into *out; pid non-NULL: only when it is that partner's.
 * 0, -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_event_get(struct req *r, const char *id, const char *pid, struct rec *out);

/* Sends dead letter id of partner pid again (scripts/lua/event_replay.lua).
 * 0, -SIMAP_ESTATE (not a dead letter), -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_event_replay(struct req *r, const char *id, const char *pid);

/* Filters of store_log_scan(); NULL matches anything. */
struct store_log_filter {
    const char *tag, *type, *result, *code, *uid;
};

/* One delivery-log entry: its stream id, its fields (core/schema.h
 * "Delivery log") and its event's state now ("expired" once gone). Valid
 * only during the call. */
typedef void store_log_fn(const char *log_id, const struct rec *entry, const char *state,
                          void *data);

/* Calls each for the entries of partner pid's delivery log that pass f,
 * newest first, from before stream id cursor (NULL: the newest), up to
 * limit matches and a bounded number of entries read. next receives the
 * cursor of the next page ("" when the log is exhausted). 0 or
 * -SIMAP_ECONN (each may have been called). */
int store_log_scan(struct req *r, const char *pid, const char *cursor,
                   const struct store_log_filter *f, int64_t limit, store_log_fn *each, void *data,
                   char next[64]);

/* ---- store_events.c: queues, dead letters, fleet ---- */


/* Up to limit dead letters of shard k after the cursor (before_ms, after),
 * newest first (and of one millisecond, highest id first): those that died
 * before before_ms, and when after is not NULL also those that died at
 * before_ms with an id below after. ids the event ids, scores the ms they
 * died, no records. 0 or -SIMAP_ECONN. */
int store_dead_page(struct req *r, uint32_t k, int64_t before_ms, const char *after, int64_t limit,
                    struct rec_list *out);

/* A partner with waiting events in one shard (GET /admin/api/queues). */
struct store_waiting {
    char pid[24];
    long long ready, retry;
    int64_t oldest_at; /* ms of its oldest ready or retry event's creation, 0 unknown */
};

/* Shard k's queue at now ms (scripts/lua/event_partners.lua): into v its
 * depths, ready, inflight, retry, dead, and the age in ms of the oldest
 * ready event; appended to *w (*n entries, *cap allocated: xrealloc'd, the
 * caller frees) each partner with waiting events, those with ready events
 * first in round-robin order. At most retry_max retry events are read;
 * *complete says whether that was all of them. 0 or -SIMAP_ECONN. */
int store_shard_queue(struct req *r, uint32_t k, int64_t now, int64_t retry_max, long long v[5],
                      struct store_waiting **w, size_t *n, size_t *cap, int *complete);

/* Deletes dead letter id (scripts/lua/event_delete.lua). 0, -SIMAP_ESTATE
 * (not a dead letter), -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int store_event_delete(struct req *r, const char *id);

/* The raw message event id carries (its new_mail payload's, proto/eml.h),
 * decrypted, in a new buffer (xfree() it). 0, -SIMAP_ENOTFOUND (no such
 * event), -SIMAP_ESTATE (the event holds no message: another type, too
 * large, or delivered, which drops the payload), -SIMAP_ECRYPTO or
 * -SIMAP_ECONN. */
int store_event_message(struct req *r, const char *id, char **raw, size_t *len);

/* The circuits the dispatchers published (si:circuits, core/schema.h),
 * latest change first, at most limit: ids the URLs' SHA-256, scores the
 * changes' ms, records the si:circuit:* hashes. Members whose hash expired
 * are dropped from the index. 0 or -SIMAP_ECONN. */
int store_circuits(struct req *r, int64_t limit, struct rec_list *out);

/* The chart counters of n minutes from unix minute first (si:stat:*), into
 * out[0..n): each record holds the fields present (none for a minute
 * without any). 0 or -SIMAP_ECONN (out then empty). */
int store_stat_minutes(struct req *r, int64_t first, size_t n, struct rec *out);

/* The latest tracers of provider code, newest first (si:tracers:<code>, at
 * most limit): ids the tracer ids, records their si:{k}:tracer hashes (one
 * gone after its 7 days is skipped). 0, or -SIMAP_ECONN. */
int store_tracers_recent(struct req *r, const char *code, int64_t limit, struct rec_list *out);

/* The nodes of a role's zset (SCHEMA_KEY_APIS, ...): ids the node ids,
 * scores their last heartbeat (ms), records their si:node hashes. 0 or
 * -SIMAP_ECONN. */
int store_fleet_nodes(struct req *r, const char *role_key, struct rec_list *out);

/* ---- store_search.c: across partners, for the admin dashboard ---- */

/* Up to limit users whose si:ix:user member starts with prefix ("e", "t"
 * or "l" then the lower-cased start of the email, tag or login), in index
 * order, after member after (NULL: from the first; the caller checked that
 * it starts with prefix). ids the uids, records the user's fields without
 * credentials (uid, pid, code, tag, email, username, state, last_error,
 * last_login_at, last_email_at, connected_at, archived, created_at,
 * updated_at) plus partner_name. An entry whose user is gone or holds
 * another value now is left out. *next is the member to continue after
 * when more follow (xfree() it), else NULL. 0 or -SIMAP_ECONN. */
int store_user_search(struct req *r, const char *prefix, const char *after, int64_t limit,
                      struct rec_list *out, char **next);

/* The same over si:ix:partner, partners whose lower-cased name starts with
 * lname: ids the pids, records their hashes. */
int store_partner_page(struct req *r, const char *lname, const char *after, int64_t limit,
                       struct rec_list *out, char **next);

/* Partner pid's name into *name (xfree() it). 0, -SIMAP_ENOTFOUND (*name
 * NULL) or -SIMAP_ECONN. */
int store_partner_name(struct req *r, const char *pid, char **name);

/* The id of the watcher node holding user uid's lease into node ("" when
 * none does). 0 or -SIMAP_ECONN. */
int store_user_lease(struct req *r, const char *uid, char node[SCHEMA_KEY_MAX]);

/* The users to watch (connected, not archived) of every shard into *n, in
 * one script (users_watched.lua). 0 or -SIMAP_ECONN. */
int store_users_watched(struct req *r, long long *n);

/* Asks node id's running incarnation to drain (scripts/lua/node_drain.lua):
 * it stops as on SIGTERM at its next heartbeat. 0, -SIMAP_ENOTFOUND (no
 * such node) or -SIMAP_ECONN. */
int store_node_drain(struct req *r, const char *id);

#endif
