/*
 * cmd/api/admin_store.h: the admin accounts and dashboard sessions in Redis
 * (core/schema.h, "Admin accounts"), every write one script of
 * scripts/lua/admin_*.lua. The routes (admin_routes.c), the sign-in
 * (admin_session.c) and the `superimap-api admin-user` command
 * (admin_cli.c) share it, so it works on a blocking connection (core/rsync)
 * rather than a request: the caller's thread's, or the command's own.
 *
 * Times are ms passed in by the caller (time_now_ms() in the api), so the
 * expiry and lockout arithmetic of the scripts can be tested with any clock.
 * Every call returns 0 or a -SIMAP_* code: -SIMAP_ECONN when Redis failed,
 * -SIMAP_ENOTFOUND when the account or session does not exist,
 * -SIMAP_ESTATE when the name is taken, -SIMAP_EINVAL for a name that is
 * not a username.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_ADMIN_STORE_H
#define CMD_API_ADMIN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/api/rec.h"

struct rsync;

#define ADMIN_NAME_MAX     64   /* bytes of a username: [A-Za-z0-9._@-] */
#define ADMIN_PASSWORD_MIN 12   /* bytes of a password, at least */
#define ADMIN_PASSWORD_MAX 1024 /* ...and at most */
#define ADMIN_ACCOUNTS_MAX 1000 /* accounts listed, at most */
#define ADMIN_CSRF_MAX     64   /* bytes of a session's CSRF token (43: 32 bytes base64url) */

/* 1 when name is 1 to ADMIN_NAME_MAX of [A-Za-z0-9._@-], with its lower
 * case form into lower; else 0. */
int admin_name_lower(const char *name, char lower[ADMIN_NAME_MAX + 1]);

/* 1 when a password of n bytes has an acceptable length. */
int admin_password_ok(size_t n);

/* Makes account name (already checked) with password hash. 0,
 * -SIMAP_ESTATE (taken) or -SIMAP_ECONN. */
int admin_store_create(struct rsync *rs, const char *name, const char *hash, int64_t now);

/* Account lower's hash into *out (rec_free() it in every case). 0,
 * -SIMAP_ENOTFOUND or -SIMAP_ECONN. */
int admin_store_get(struct rsync *rs, const char *lower, struct rec *out);

/* Every account, oldest first (at most ADMIN_ACCOUNTS_MAX), ids the lower
 * names, each record without its hash. 0 or -SIMAP_ECONN; rec_list_free()
 * it in every case. */
int admin_store_list(struct rsync *rs, struct rec_list *out);

/* op "disable", "enable" or "delete" on account lower; disable and delete
 * end every session of the account before returning. 0, -SIMAP_ENOTFOUND
 * or -SIMAP_ECONN. */
int admin_store_change(struct rsync *rs, const char *lower, const char *op, int64_t now);

/* The end (ms) of lower's lock at now, or 0 when it is not locked; into
 * *until. 0 or -SIMAP_ECONN. */
int admin_store_locked_until(struct rsync *rs, const char *lower, int64_t now, int64_t *until);

/* Counts a failed sign-in for lower (an account or not) at now; after
 * failures of them within lock_ms of each other, lower is locked lock_ms.
 * *count is the failures so far (0 when it was locked already), *until the
 * end of the lock or 0. 0 or -SIMAP_ECONN. */
int admin_store_failed(struct rsync *rs, const char *lower, int64_t now, int failures,
                       int64_t lock_ms, int *count, int64_t *until);

/* What a sign-in whose password was right came to. */
enum admin_login {
    ADMIN_LOGIN_OK,       /* the session began */
    ADMIN_LOGIN_MISSING,  /* the account was deleted meanwhile */
    ADMIN_LOGIN_DISABLED, /* the account is disabled */
    ADMIN_LOGIN_LOCKED,   /* the name is locked (*until set) */
    ADMIN_LOGIN_CHANGED,  /* the password changed meanwhile */
};

/* A new session. */
struct admin_new_session {
    const char *lower;   /* the account */
    const char *hash;    /* the password hash verified */
    const char *key_hex; /* SHA-256 hex of the session's cookie */
    const char *csrf;    /* its CSRF token */
    const char *addr;    /* the client address */
    int64_t idle_ms;     /* SUPERIMAP_ADMIN_SESSION_IDLE_SEC in ms */
    int64_t max_ms;      /* SUPERIMAP_ADMIN_SESSION_MAX_SEC in ms */
};

/* Begins session s at now unless the account changed, is disabled or
 * locked (admin_login_ok.lua); clears the account's failures. The enum
 * admin_login value (>= 0), with *until for ADMIN_LOGIN_LOCKED, or
 * -SIMAP_ECONN. */
int admin_store_login(struct rsync *rs, const struct admin_new_session *s, int64_t now,
                      int64_t *until);

/* A live session, as admin_store_touch() found it. */
struct admin_session {
    char lower[ADMIN_NAME_MAX + 1]; /* the account */
    char csrf[ADMIN_CSRF_MAX + 1];
    int64_t created_at; /* ms */
    int64_t idle_until; /* ms: it ends then unless used again */
    int64_t expires_at; /* ms: created_at + max_ms, its end in any case */
};

/* Checks session key_hex at now and renews its idle end (idle_ms, never
 * past its start + max_ms); fills *out. 0, -SIMAP_ENOTFOUND (none, or
 * ended: then deleted) or -SIMAP_ECONN. */
int admin_store_touch(struct rsync *rs, const char *key_hex, int64_t now, int64_t idle_ms,
                      int64_t max_ms, struct admin_session *out);

/* Ends session key_hex of account lower. 0 or -SIMAP_ECONN. */
int admin_store_logout(struct rsync *rs, const char *key_hex, const char *lower);

#endif
