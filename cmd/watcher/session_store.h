/*
 * cmd/watcher/session_store: everything an IMAP session asks of Redis, and
 * when a dropped session is freed.
 *
 *   LOAD      HMGET si:{k}:user:<uid> pid code tag username email secret
 *             archived oauth2_access_token oauth2_expires_at state
 *             connected_at, the secret and the access token decrypted
 *             (core/crypto); a user in state reauth_required is not logged
 *             in until it connects again (connected_at set)
 *   publish   user_state: state, last_error, last_login_at (lease-checked)
 *   BASELINE  cursor_baseline: the cursor, UIDNEXT-1 on first sight or a new
 *             UIDVALIDITY
 *   RECORD    record_mail (event.c): the event and the cursor, exactly once
 *   recheck   after a Redis reconnect: lease_acquire again, and the cursor
 *
 * Every call is a core/rreq of the session: an answer for an older
 * connection or a dropped session is not delivered (the done callback is
 * then never called). A script answering "stale" (the lease is another incarnation's)
 * is counted and reported through the watcher's on_lost_lease hook, and the
 * done callback is not called either: the session is dropped by the fence.
 * Otherwise each done callback is called exactly once, from the loop, never
 * from inside the call that started it.
 *
 * A dropped session (S_DEAD) lets go of the Redis answers it is still owed
 * (they are dropped when they come) and is freed once no callback of it
 * runs (session_store_maybe_free).
 *
 * Depends on: session_impl.h (the session), cmd/watcher/event (record_mail),
 * core/incarnation (token, alive keys), core/lease, core/rconn, core/rreq,
 * core/crypto.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_SESSION_STORE_H
#define CMD_WATCHER_SESSION_STORE_H

#include <stdint.h>

#include "cmd/watcher/session_impl.h"

/* ---- Lifetime ---- */

/* Frees s when it is dead and outside its callbacks. */
void session_store_maybe_free(struct imap_session *s);

/* s was just dropped (S_DEAD): lets go of the answers Redis owes it, and
 * frees it now unless one of its callbacks is running (which frees it on
 * its way out). */
void session_store_bury(struct imap_session *s);

/* Frees s and everything it owns (closes nothing: the connection must be
 * closed already). */
void session_store_free(struct imap_session *s);

/* ---- Redis calls ---- */

/* 1 while the lease is usable: our generation is the live incarnation's. */
int session_store_lease_usable(const struct imap_session *s);

/* LOAD answered: why NULL when s->user is filled in (secret decrypted),
 * else the failure's class and text. */
typedef void session_loaded_cb(struct imap_session *s, enum fail_kind kind, const char *why);

/* Reads the user record. Returns 0, or a negative error when it cannot be
 * queued (done is then not called). */
int session_store_load_user(struct imap_session *s, session_loaded_cb *done);

/* Writes the public state (and last_error, last_login_at) when it changes,
 * while the lease is usable. Nothing comes back but a "stale" refusal. */
void session_store_publish(struct imap_session *s, enum pub_state st, const char *error, int login);

/* Writes the user's mailboxes_missing (json, "" to delete it) while the
 * lease is usable. Returns 0, or a negative error when it was not sent. */
int session_store_publish_missing(struct imap_session *s, const char *json);

/* BASELINE answered: why NULL when s->mb.last_uid and base_uid hold the
 * cursor, else the reason (a Redis failure). Only in S_BASELINE. */
typedef void session_baseline_cb(struct imap_session *s, const char *why);

/* cursor_baseline for s->mb.uidvalidity and uidnext. Returns 0, or a
 * negative error when it cannot be queued. */
int session_store_baseline(struct imap_session *s, session_baseline_cb *done);

/* Puts back the cursor this connection started from (base_uid) when
 * Redis lost it; fire and forget (the script writes only an absent cursor,
 * only for the lease holder, and only when the user was neither archived
 * nor restored since the session loaded it: a restore deletes the cursor
 * on purpose). */
void session_store_put_baseline(struct imap_session *s);

enum store_record {
    STORE_RECORDED, /* recorded, or recorded before: the cursor moves past it */
    STORE_TRACER,   /* a tracer of a tracer user, detected: the cursor moves past it */
    STORE_SKIPPED,  /* not announced (the user is no longer watched) */
    STORE_FAILED,   /* Redis failed or the cursor changed: why says */
    STORE_BEHIND,   /* Redis's cursor is below s->mb.last_uid: it lost writes */
};

/* RECORD answered. Only in S_RECORD. */
typedef void session_recorded_cb(struct imap_session *s, enum store_record res, const char *why);

/* record_mail for message m, with body (NULL: too large, or none) and, for
 * a message too large, sha1: the hex SHA-1 of its bytes (NULL when they
 * could not be read). Frees s->mb.body (the payload holds its own copy).
 * Returns 0, or a negative error when it cannot be queued. */
int session_store_record(struct imap_session *s, struct pending_msg *m, const struct imap_str *body,
                         int too_large, const char *sha1, session_recorded_cb *done);

/* The cursor Redis holds, after a reconnect: missing when it is gone,
 * else its uidvalidity and last_uid. Not called when the read failed. */
typedef void session_cursor_cb(struct imap_session *s, int missing, unsigned long long uidvalidity,
                               unsigned long long last_uid);

/* After a Redis reconnect: confirms the lease (a lost one is reported as
 * for "stale") and reads the cursor for done. */
void session_store_recheck(struct imap_session *s, session_cursor_cb *done);

#endif
