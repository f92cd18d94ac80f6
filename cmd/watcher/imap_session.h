/*
 * cmd/watcher/imap_session: one IMAP session per user, all on the loop
 * (docs/watcher.md; RFC 3501, RFC 2177 IDLE, RFC 4959
 * SASL-IR, RFC 4616 PLAIN, XOAUTH2, RFC 5530 response codes, RFC 8314
 * implicit TLS).
 *
 *   LOAD (HMGET user, decrypt secret) -> QUEUED (provider: login rate, slots)
 *     -> CONNECT -> [TLS] -> GREETING -> [CAPABILITY] -> [STARTTLS -> TLS ->
 *        CAPABILITY] -> AUTH -> [CAPABILITY] -> EXAMINE INBOX
 *     -> BASELINE (cursor_baseline: UIDNEXT-1 on first sight or new UIDVALIDITY)
 *     -> FETCH (UID FETCH last+1:* (UID RFC822.SIZE ENVELOPE), UIDs <= last dropped)
 *     -> for each new UID in order: BODY (UID FETCH n BODY.PEEK[], unless above
 *        SUPERIMAP_MAX_EMAIL_SIZE) -> RECORD (record_mail)
 *     -> IDLE_START -> IDLE --EXISTS/RECENT, renewal, probe--> DONE -> FETCH ...
 *        (without the IDLE capability: POLL_WAIT --timer--> NOOP -> FETCH ...)
 *   any failure -> WAIT (jittered backoff) -> LOAD
 *
 * INBOX is only EXAMINEd and bodies fetched with BODY.PEEK, so nothing is
 * ever marked \Seen. Plaintext credentials never cross an unencrypted link
 * unless the provider says tls=none.
 *
 * Failures are classified, counted and written to the user hash through
 * scripts/lua/user_state.lua (state, last_error, last_login_at):
 *
 *   auth      NO to LOGIN/AUTHENTICATE, [AUTHENTICATIONFAILED] ...  -> auth_failed,
 *             backoff 5 min .. 6 h
 *   throttle  [LIMIT], [UNAVAILABLE], [INUSE], "too many ..."      -> throttled,
 *             provider-wide login pause + session backoff
 *   network   connect/TLS failure, drop, timeout, BYE              -> error, backoff
 *   protocol  malformed response, BAD, unexpected NO               -> error, backoff
 *
 * Network and protocol backoff is full-jitter exponential from
 * SUPERIMAP_IMAP_BACKOFF_MIN_MS to _MAX_MS, reset when the session reaches
 * IDLE (or polling). A malformed response ends only this session.
 *
 * Memory: one struct with the socket's ev_io and one ev_timer embedded; the
 * parser's buffers, the output buffer and OpenSSL's buffers are released on
 * entering IDLE, so an idle session holds a few hundred bytes plus the SSL
 * state.
 *
 * Made of: imap_session.c (this API, the state table, dispatch), then
 * session_login.c, session_mailbox.c, session_base.c, session_store.c
 * (Redis), imap_conn.c (socket, TLS) and session_policy.c (failure classes,
 * delays); session_impl.h has the struct and the order. Depends on the
 * struct watcher it is given (loop, Redis, config, keys, incarnation,
 * providers, metrics) and reports a lost lease through its hook.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_IMAP_SESSION_H
#define CMD_WATCHER_IMAP_SESSION_H

#include <stdint.h>

struct imap_session;
struct watcher;

/* Returns a new session for user uid (copied) of shard k, doing nothing yet. */
struct imap_session *imap_session_new(struct watcher *w, const char *uid, uint32_t k);

/* The lease is held by generation gen: load the user and connect. */
void imap_session_start(struct imap_session *s, uint64_t gen);

/* The user's record changed: connect again now (credentials, provider). */
void imap_session_restart(struct imap_session *s);

/*
 * Redis is back after a disconnect, and may have restarted from an older
 * state (appendfsync everysec loses up to a second of writes in a crash):
 * confirms the lease (lease_acquire: taken back when lost, a fence when
 * another live incarnation holds it) and compares Redis' cursor with the
 * last UID recorded; when Redis' is behind or gone, the session starts
 * again from it, so a message whose event vanished is fetched and recorded
 * again. A session not yet past its baseline does nothing: it reads the
 * cursor anyway.
 */
void imap_session_recheck(struct imap_session *s);

/*
 * Ends the session at once: closes its connection without a word to the
 * server or Redis (fencing: the lease is no longer ours). With polite set
 * (drain, user removed) a LOGOUT is written first when connected. The
 * session is freed now, or once its callback running now has returned
 * (answers Redis still owes it are dropped); the caller must forget s.
 */
void imap_session_drop(struct imap_session *s, int polite);

#endif
