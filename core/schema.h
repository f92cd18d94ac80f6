/*
 * core/schema: the Redis data model every binary shares (docs/architecture.md
 * section 2 has the overview):
 * key names, hash fields and the formats of events and of the delivery log.
 * Scripts in scripts/lua/ and C code both follow this file; change them
 * together. NODE_SCHEMA_VERSION (core/node.h) changes when this file does in
 * a way that old nodes would misread.
 *
 * Ids. Partner ids are decimal integers from INCR si:seq:partner (or, for
 * partners superimap-import brought over, the original's id; the import
 * raises si:seq:partner past it). User ids are 24 lowercase hex digits
 * (random, crypto_random; imported users: HMAC-SHA256 of their original id
 * under the original's secret key, as unguessable), so guessing one gives
 * nothing; a user's shard is k = hrw_shard(uid, S) and never changes. Event
 * ids are deterministic (a replay carries the same webhook-id):
 *   new_mail            <uid>.<uidvalidity>.<message UID> (INBOX), or for another
 *                       watched mailbox <uid>.<uidvalidity>.<message UID>.m<the first 8
 *                       hex digits of the SHA-1 of the mailbox as configured>
 *   user_connected      <uid>.connected.<connected_at ms>
 *   user_disconnected   <uid>.disconnected.<ms>
 *   user_reauth_required <uid>.reauth.<ms>
 *   webhook_test        test.<pid>.<ms>.<random hex>
 * An event id starts with its user id, so its shard is known from the id alone
 * (webhook_test events live in shard 0).
 *
 * Keys (k = shard, {k} is the Redis Cluster hash tag):
 *
 *   si:meta                         hash   schema_version, shards, created_at, created_by
 *   si:seq:partner                  string INCR counter of partner ids
 *   si:provider:<code>              hash   see "Provider fields"
 *   si:providers                    set    provider codes
 *   si:partner:<pid>                hash   see "Partner fields"
 *   si:partners                     zset   pid -> created_at ms
 *   si:apikey:<sha256 hex of key>   string pid (the key itself is never stored in clear)
 *   si:rl:<sha256 hex of key>       hash   the key's rate-limit bucket: tokens, ts (ms);
 *                                          expires once full again (scripts/lua/rate_limit.lua)
 *   si:partner:<pid>:conns          set    provider codes of this partner's connections
 *   si:conn:<pid>:<code>            hash   oauth2_client_id, oauth2_client_secret (encrypted,
 *                                          AAD "si:conn:<pid>:<code>:oauth2_client_secret"),
 *                                          users_count (archived users too, as the original),
 *                                          created_at, updated_at, deleting (1 while
 *                                          connection_delete runs: the connection is gone
 *                                          for the API and takes no new users), mailboxes
 *                                          (its users' default mailbox list, see "User
 *                                          fields"; absent: ["INBOX"])
 *   si:conn:<pid>:<code>:users      zset   "<lower tag>\x1f<uid>" -> 0: every user, archived
 *                                          too, in tag order (tags hold no control characters)
 *   si:tag:<pid>:<code>:<lower tag> string uid of the live (non-archived) user with that tag
 *   si:email:<pid>:<code>:<lower email> string uid of the live user with that email
 *   si:sort:<token>                 zset   one v1 user list in the original's order (email):
 *                                          "<0 email, 1 none><lower email>\x1f<lower tag>
 *                                          \x1f<uid>" -> 0; made per request, EX 10 min,
 *                                          deleted once sent (cmd/api/store_users.c)
 *   si:link:<sig>                   string a connect or disconnect link already followed
 *                                          (links are single use), EX 31 min
 *   si:connect:<state>              string one connect flow (OAuth2 state or PLAIN form):
 *                                          its record (cmd/api/connect.h) encrypted with
 *                                          AAD "si:connect:<state>", EX 10 min
 *   si:connect_browser:<sha256 hex of cookie>  string the failure URL of the browser's
 *                                          latest flow (a callback without a usable
 *                                          state still goes back to the partner), EX 10 min
 *   si:connect_try:<uid>            string PLAIN form logins tried for the user, EX 15 min
 *   si:rekey                        hash   superimap-api rekey (cmd/api/rekey.c): cursor (the
 *                                          SCAN position a run resumes from, 0 after a
 *                                          complete pass), old (secrets under an old key
 *                                          that pass left, or --count found), at (ms)
 *   si:ix:user                      zset   "<e|t|l><lower value>\x1f<uid>" -> 0: every user
 *                                          (archived too) by email (e), tag (t) and login
 *                                          username (l), none for an empty value; kept by
 *                                          the user scripts (scripts/lua/prelude/index.lua),
 *                                          searched by prefix with ZRANGEBYLEX (admin API)
 *   si:ix:partner                   zset   "<lower name>\x1f<pid>" -> 0: every partner, kept
 *                                          by partner_create, partner_update, partner_delete
 *   si:reindex                      hash   superimap-api reindex (cmd/api/reindex.c): cursor
 *                                          (the SCAN position a run resumes from, 0 after a
 *                                          complete pass), users, partners (indexed by the
 *                                          last complete pass), dropped (stale entries it
 *                                          removed), at (ms)
 *   si:{k}:user:<uid>               hash   see "User fields"
 *   si:{k}:users                    zset   uids of shard k to watch (connected, not archived)
 *                                          -> admission ms (Redis TIME when created, connected
 *                                          or restored; prelude/admit.lua), the order the
 *                                          watchers place them in (schema 1 had a set)
 *   si:{k}:reauth                   set    uids of shard k made reauth_required (user_reauth);
 *                                          users_count.lua drops those no longer in it
 *   si:{k}:count                    hash   users, archived: shard k's users and archived
 *                                          users, kept by the scripts that create, archive,
 *                                          restore and delete users (users_count.lua)
 *   si:{k}:tracer_users             set    uids of shard k with enable_tracer 1 (the user
 *                                          scripts keep it; tracer_pick drops stale ones)
 *   si:{k}:tracer:<id>              hash   one tracer mail: uid, code, sent_at (ms, Redis
 *                                          TIME), result (sending|sent|auth|connect|tls|
 *                                          rejected|timeout|credentials|error), error,
 *                                          smtp_ms, detected_at, latency_ms (record_mail),
 *                                          missing_at (the sender found it undetected after
 *                                          the deadline); EX 7 days
 *   si:tracers:<code>               list   "<k>:<id>" of the provider's latest tracers
 *                                          (LPUSH, LTRIM to 100), read by the admin API
 *   si:{k}:cur:<uid>                hash   uidvalidity, last_uid, epoch (the user's cursor_epoch):
 *                                          INBOX's cursor; each other watched mailbox's is the
 *                                          same three fields followed by ':' and the mailbox as
 *                                          configured ("last_uid:\\Junk", "last_uid:Work")
 *   si:{k}:gm:<uid>                 zset   X-GM-MSGID -> ms: the Gmail messages announced for
 *                                          a user watching several labels (record_mail: one
 *                                          event per message; the newest 10,000 kept)
 *   si:{k}:lease:<uid>              string <node>:<g> of the watcher acting for the user
 *   si:{k}:alive:<node>:<g>         string liveness of a node incarnation in shard k (PX 15 s)
 *   si:{k}:owner                    string <node>:<g> of the dispatcher owning shard k: the
 *                                          only one claiming from it (taken and given up
 *                                          with lease_acquire/lease_release; shards are
 *                                          placed over si:dispatchers by core/fleet)
 *   si:gen                          string INCR counter of node incarnations
 *   si:{k}:ready:<pid>              list   event ids ready to deliver (LPUSH in, RPOP out)
 *   si:{k}:ready_partners           list   pids with a non-empty ready list (round robin)
 *   si:{k}:inflight                 zset   event id -> lease deadline ms
 *   si:{k}:retry                    zset   event id -> due ms
 *   si:{k}:dead                     zset   event id -> died ms (capped)
 *   si:{k}:evt:<eid>                hash   see "Event fields"
 *   si:watchers, si:dispatchers, si:apis  zset  node id -> heartbeat ms (Redis TIME)
 *   si:node:<id>                    hash   role, host, pid, version, started_at, state
 *                                          (active|draining), heartbeat_ms, the role's own
 *                                          (watcher: capacity, users held, users_known,
 *                                          users_placed, users_unassigned; dispatcher:
 *                                          capacity, load, shards), drain_requested (the
 *                                          started_at of the incarnation an operator asked
 *                                          to drain: node_drain.lua; its next heartbeat
 *                                          stops it as SIGTERM does)
 *   si:watcher:epoch, si:dispatcher:epoch  string INCR counter: a node joined or changed
 *                                          state; nodes re-read the role's zset (core/fleet.h)
 *   si:log:<pid>                    stream delivery log, see "Delivery log"
 *   si:stat:<unix minute>           hash   the dashboard's chart counters of that minute
 *                                          (core/stat.h): mail (new mail recorded),
 *                                          delivered (attempts answered 2xx), failed
 *                                          (attempts retried or moved to dead letters),
 *                                          lat_<bound ms>|lat_inf (delivered attempts by
 *                                          request latency); EXPIRE 48 h, written with
 *                                          stat_add.lua beside the delivery log and
 *                                          after record_mail, minute of the writer's clock
 *   si:circuit:<sha256 hex of URL>  hash   a webhook URL's circuit breaker as a dispatcher
 *                                          last saw it change (the URL as the partner hash
 *                                          stores it, credentials masked): url,
 *                                          state (open|half_open|closed), failures,
 *                                          opened_at, until (ms: the next probe), node,
 *                                          updated_at; PEXPIRE 1 h once closed
 *   si:circuits                     zset   sha256 hex of URL -> updated_at ms: the index of
 *                                          si:circuit:* (GET /admin/api/circuits); a member
 *                                          whose hash expired is dropped by the reader
 *   si:changes                      stream user changes for watchers: uid, k, op
 *                                          (create|update|archive|restore|delete)
 *   si:wake                         pub/sub channel, message k: a partner of shard k
 *                                          just got ready events (dispatchers claim at once)
 *
 * Admin accounts of the dashboard (cmd/api/admin_store.c; <lower> is the
 * username in lower case, 1 to 64 of [a-z0-9._@-]):
 *
 *   si:admin:<lower>                hash   username (as given), hash ($scrypt$...,
 *                                          core/crypto.h), disabled (0|1), created_at,
 *                                          updated_at, last_login_at, last_failure_at (ms)
 *   si:admins                       zset   lower username -> created_at ms
 *   si:admin:<lower>:sessions       zset   session key hashes of the account -> absolute
 *                                          end ms (disable and delete end them all)
 *   si:asess:<sha256 hex of cookie> hash   username (lower), csrf, created_at, last_seen_at,
 *                                          addr; PEXPIRE SUPERIMAP_ADMIN_SESSION_IDLE_SEC,
 *                                          renewed on use, never past created_at +
 *                                          SUPERIMAP_ADMIN_SESSION_MAX_SEC
 *   si:admin_fail:<lower>           hash   count (failed sign-ins), locked_until (ms); kept
 *                                          for unknown usernames too; PEXPIRE
 *                                          SUPERIMAP_ADMIN_LOCKOUT_SEC after the last failure
 *
 * Queue invariant of a shard: a pid is in ready_partners exactly when its
 * ready:<pid> list is non-empty. Every producer enqueues through
 * scripts/lua/event_enqueue.lua or does what it does, atomically: HSET the
 * event hash (unless it exists: ids are deterministic), LPUSH the id onto
 * ready:<pid>, and when that LPUSH returned 1 (the partner had nothing
 * ready) RPUSH pid onto ready_partners and PUBLISH si:wake k. (Publishing
 * only when the whole shard was idle is not enough: a dispatcher stops
 * claiming a shard whose remaining partners are at their concurrency cap,
 * and a new partner's events there would wait for its next sweep.)
 *
 * Provider fields: code, imap_host, imap_port, tls (implicit|starttls|none),
 * auth (plain|oauth2), idle_renew_s, max_connections, oauth2_authorize_url,
 * oauth2_token_url, oauth2_scope, smtp_host, smtp_port, smtp_tls
 * (implicit|starttls|none), smtp_domain (where tracer mails are submitted;
 * no smtp_host: no tracers), tracer_delete (0|1: watchers delete tracer
 * mails once detected), connections_count (connections using it; a
 * provider in use cannot be deleted or change auth), mailbox_poll_s (10..3600,
 * absent: 60; seconds between a watcher's STATUS checks of a user's mailboxes
 * other than the selected one when the server has no NOTIFY, issue #21),
 * created_at, updated_at.
 *
 * Partner fields: name; api_key (encrypted, AAD "si:partner:<pid>:api_key");
 * api_key_old (AAD "si:partner:<pid>:api_key_old") + api_key_old_until (ms)
 * during a rotation's grace period; webhook_secret ("whsec_" + base64 of 32
 * random bytes, encrypted, AAD "si:partner:<pid>:webhook_secret");
 * webhook_secret_old (AAD "si:partner:<pid>:webhook_secret_old") +
 * webhook_secret_old_until;
 * new_mail_webhook_url, user_connected_webhook_url,
 * user_disconnected_webhook_url (empty: that event is not sent);
 * user_reauth_required_webhook_url (empty: user_reauth_required events go to
 * user_disconnected_webhook_url);
 * <type>_webhook_disabled (non-empty reason: the URL answered 410 and is off
 * until the partner sets it again); success_url, failure_url;
 * retry_schedule (comma-separated seconds; empty: the default, README "Retries");
 * webhook_concurrency (default 8); created_at, updated_at.
 *
 * User fields: uid, pid, code, tag, email, username, secret (encrypted
 * password or refresh token, AAD "si:user:<uid>:secret"),
 * oauth2_access_token (OAuth2: the current access token, encrypted, AAD
 * "si:user:<uid>:oauth2_access_token"; empty or absent: refresh before the
 * first login) and oauth2_expires_at (ms of its expiry; empty: unknown),
 * both written by the watcher's oauth2_tokens script (and by the api's connect
 * callback), connected_at (ms,
 * empty when not connected), archived (0|1), state (idle|connecting|
 * watching|auth_failed|throttled|error|archived|reauth_required: the OAuth2
 * grant is dead, the user must consent again), last_error (also why a user
 * was archived other than by its partner, e.g. "webhook answered 403"), last_login_at,
 * last_email_at, created_at, updated_at, enable_tracer (0|1), cursor_epoch
 * (absent: 0; raised by every archive and restore, so a watcher's session of
 * an earlier epoch cannot write the user's cursor: scripts/lua/cursor_baseline.lua).
 *
 * Mailboxes of a user (issue #21). A mailbox list is the canonical compact
 * JSON of proto/mailboxes.h: an array of 1 to 16 mailbox names and special-use
 * attributes in their stored spelling, e.g. ["INBOX","\Junk"].
 *   mailboxes          the user's own list (the partner's; overrides its
 *                      connection's); absent: it inherits
 *   conn_mailboxes     a copy of its connection's mailboxes, absent when the
 *                      connection has none; written by user_create,
 *                      user_import and user_connect, and by
 *                      connection_mailboxes.lua after the connection's changed
 *                      (the api runs it over si:conn:<pid>:<code>:users, 500
 *                      users a call, XADDing an 'update' to si:changes for each
 *                      user of its shard's users zset whose copy changed and
 *                      who has no list of its own)
 *   mailboxes_missing  written by the watcher: the entries of the list it
 *                      watches that it could not find on the server (a name not
 *                      listed or refused by EXAMINE, an attribute no mailbox
 *                      has), as a list; HDEL'd when every entry was found
 * A watcher watches mailboxes, else conn_mailboxes, else ["INBOX"]; it never
 * reads si:conn. The api shows the same (cmd/api/views.c).
 *
 * Event fields: id, type (new_mail|user_connected|user_disconnected|
 * user_reauth_required|webhook_test), pid, uid (empty for webhook_test), code, tag, sha1 (hex, as
 * in the body), payload (encrypted with AAD "si:evt:<eid>": the JSON object of
 * the body WITHOUT timestamp and signature, which the dispatcher adds at each
 * attempt), attempts, state (ready|inflight|retry|dead|delivered), last_status
 * (HTTP status or 0), last_error, created_at, next_at (ms of the next retry),
 * mailbox (new_mail of a watched mailbox other than INBOX: as configured).
 * A delivered event loses its payload and expires 7 days later.
 *
 * Delivery log (XADD si:log:<pid> MAXLEN ~ 100000 *): one entry per attempt
 * with fields id, type, uid, tag, code, attempt, status (HTTP status, 0 when
 * no response), result, latency_ms, error (text, empty on success), next_at
 * (ms, empty unless retry or deferred). result is one of: delivered (2xx);
 * retry (failed, retried at next_at); dead (moved to dead letters: retries
 * exhausted, URL disabled, bad data); archived (403: the user was archived);
 * refused (403 for a tracer user, or for an event without a user: acked,
 * nothing archived); gone (410: the URL is now disabled); skipped (no URL
 * for that event type: acked unsent, as the original skipped it); deferred
 * (the URL's circuit breaker is open: not sent, no attempt spent, back at
 * next_at). The XADD is a separate command sent just before the state script
 * (so the hot-path scripts stay inside the shard's slot, and whoever sees an
 * event's new state finds its log entry).
 */
#ifndef CORE_SCHEMA_H
#define CORE_SCHEMA_H

#include <stdint.h>

/* Upper bound of the ids above, for fixed buffers. */
#define SCHEMA_UID_LEN 24
#define SCHEMA_KEY_MAX 512

/* Bytes of the longest key named by a shard alone ("si:{4294967295}:ready_partners"
 * and its kin): those builders cannot fail. */
#define SCHEMA_SHARD_KEY_MAX 48

/*
 * ---- Key builders ----
 *
 * One function per key of the table above, so a key's layout is written
 * once. Keys whose names are fixed are string macros. A builder writes the
 * key into out (NUL-terminated) and returns its length, or -SIMAP_ETOOBIG
 * when it would not fit in SCHEMA_KEY_MAX bytes (out then holds a cut key:
 * never send it). Arguments are the ids of the table, unchecked: callers
 * validate what came from the network. k is a shard, 0 <= k < S.
 *
 * To change a key: change its line in the table, its builder in
 * core/schema.c and tests/unit/test_schema.c, the scripts in scripts/lua/
 * that take it as KEYS (they never build keys) and NODE_SCHEMA_VERSION.
 */

#define SCHEMA_KEY_META        "si:meta"
#define SCHEMA_KEY_SEQ_PARTNER "si:seq:partner"
#define SCHEMA_KEY_PROVIDERS   "si:providers"
#define SCHEMA_KEY_PARTNERS    "si:partners"
#define SCHEMA_KEY_GEN         "si:gen"
#define SCHEMA_KEY_CHANGES     "si:changes"
#define SCHEMA_KEY_REKEY       "si:rekey"
#define SCHEMA_KEY_REINDEX     "si:reindex"
#define SCHEMA_KEY_IX_USER     "si:ix:user"
#define SCHEMA_KEY_IX_PARTNER  "si:ix:partner"
#define SCHEMA_KEY_WATCHERS    "si:watchers"
#define SCHEMA_KEY_DISPATCHERS "si:dispatchers"
#define SCHEMA_KEY_APIS        "si:apis"
#define SCHEMA_KEY_CIRCUITS    "si:circuits"
#define SCHEMA_CHANNEL_WAKE    "si:wake"

/* Admin accounts and sessions (see the table above). */
#define SCHEMA_KEY_ADMINS "si:admins"
int schema_key_admin(char out[SCHEMA_KEY_MAX], const char *lower);
int schema_key_admin_sessions(char out[SCHEMA_KEY_MAX], const char *lower);
int schema_key_admin_session(char out[SCHEMA_KEY_MAX], const char *sha256_hex);
int schema_key_admin_fail(char out[SCHEMA_KEY_MAX], const char *lower);

/* Global keys, named by an id. */
int schema_key_provider(char out[SCHEMA_KEY_MAX], const char *code);
int schema_key_partner(char out[SCHEMA_KEY_MAX], const char *pid);
int schema_key_apikey(char out[SCHEMA_KEY_MAX], const char *sha256_hex);
int schema_key_ratelimit(char out[SCHEMA_KEY_MAX], const char *sha256_hex);
int schema_key_partner_conns(char out[SCHEMA_KEY_MAX], const char *pid);
int schema_key_conn(char out[SCHEMA_KEY_MAX], const char *pid, const char *code);
int schema_key_conn_users(char out[SCHEMA_KEY_MAX], const char *pid, const char *code);
int schema_key_sort(char out[SCHEMA_KEY_MAX], const char *token);
/* ltag and lemail are already lower-cased (ASCII), as the keys hold them. */
int schema_key_tag(char out[SCHEMA_KEY_MAX], const char *pid, const char *code, const char *ltag);
int schema_key_email(char out[SCHEMA_KEY_MAX], const char *pid, const char *code,
                     const char *lemail);
int schema_key_node(char out[SCHEMA_KEY_MAX], const char *node_id);
/* sig and state are base64url tokens (a link's signature, a flow's state). */
int schema_key_link(char out[SCHEMA_KEY_MAX], const char *sig);
int schema_key_connect(char out[SCHEMA_KEY_MAX], const char *state);
int schema_key_connect_try(char out[SCHEMA_KEY_MAX], const char *uid);
int schema_key_connect_browser(char out[SCHEMA_KEY_MAX], const char *sha256_hex);
/* si:<role>s (si:watchers, ...) and si:<role>:epoch; role is "watcher",
 * "dispatcher" or "api". */
int schema_key_role(char out[SCHEMA_KEY_MAX], const char *role);
int schema_key_role_epoch(char out[SCHEMA_KEY_MAX], const char *role);
int schema_key_log(char out[SCHEMA_KEY_MAX], const char *pid);
int schema_key_tracers(char out[SCHEMA_KEY_MAX], const char *code);
int schema_key_stat(char out[SCHEMA_KEY_MAX], int64_t minute);
int schema_key_circuit(char out[SCHEMA_KEY_MAX], const char *sha256_hex);

/* Keys of shard k named by an id. token is "<node>:<g>". */
int schema_key_user(char out[SCHEMA_KEY_MAX], uint32_t k, const char *uid);
int schema_key_cur(char out[SCHEMA_KEY_MAX], uint32_t k, const char *uid);
int schema_key_lease(char out[SCHEMA_KEY_MAX], uint32_t k, const char *uid);
int schema_key_alive(char out[SCHEMA_KEY_MAX], uint32_t k, const char *token);
int schema_key_ready(char out[SCHEMA_KEY_MAX], uint32_t k, const char *pid);
int schema_key_event(char out[SCHEMA_KEY_MAX], uint32_t k, const char *eid);
int schema_key_tracer(char out[SCHEMA_KEY_MAX], uint32_t k, const char *id);

/* Keys of shard k named by k alone; they always fit. shard_prefix is
 * "si:{k}:", which scripts complete with a suffix (event_stats.lua). */
void schema_key_shard_prefix(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_shard_users(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_reauth(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_count(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_tracer_users(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_owner(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_ready_partners(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_inflight(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_retry(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);
void schema_key_dead(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k);

/* The associated data (AAD) of the encrypted fields above, built like keys:
 * si:partner:<pid>:<field>, si:conn:<pid>:<code>:oauth2_client_secret,
 * si:user:<uid>:secret, si:user:<uid>:oauth2_access_token, si:evt:<eid>;
 * a connect flow's is its key. */
int schema_aad_partner(char out[SCHEMA_KEY_MAX], const char *pid, const char *field);
int schema_aad_conn_secret(char out[SCHEMA_KEY_MAX], const char *pid, const char *code);
int schema_aad_user_secret(char out[SCHEMA_KEY_MAX], const char *uid);
int schema_aad_user_access_token(char out[SCHEMA_KEY_MAX], const char *uid);
int schema_aad_event(char out[SCHEMA_KEY_MAX], const char *eid);

/* The user of event id eid (see "Ids" above), whose shard is the event's:
 * its first SCHEMA_UID_LEN characters, except for webhook_test events
 * ("test.") and ids too short to hold one, which live in shard 0. Writes
 * the uid into uid and returns 1, or writes "" and returns 0 (shard 0). */
int schema_event_uid(const char *eid, char uid[SCHEMA_UID_LEN + 1]);

#endif
