/*
 * The mail store of superimap-fake-imapd: one INBOX per user, in memory,
 * found by user name in a hash table.
 *
 * Users user1..userN (N from SUPERIMAP_FAKE_USERS) exist from the start with
 * passwords pass1..passN, but a mailbox is made only when first used (login
 * or append), so a million configured users cost nothing. Any other user is
 * made by its first append through the control channel; its password is
 * pass<K> for a name user<K>, else "pass-" followed by the name, until the
 * control channel sets another.
 *
 * Messages are never expunged, so a message's sequence number is its index
 * plus one and UIDs ascend with the index.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_MAILBOX_H
#define CMD_FAKE_IMAPD_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#define MSG_SEEN   (1u << 0)
#define MSG_RECENT (1u << 1)

#define MBOX_USER_MAX 64 /* longest user name, bytes */

/* One message; plain data owned by its mailbox. */
struct message {
    uint32_t uid;
    unsigned flags;      /* MSG_* */
    int64_t internal_ms; /* arrival (wall clock, ms) */
    size_t size;         /* bytes of data */
    size_t header_len;   /* bytes of the header section, blank line included */
    char *data;          /* the raw message, NUL-terminated (NUL not counted) */
    char *envelope;      /* rendered ENVELOPE list */
    size_t envelope_len;
};

/* A link in a mailbox's list of sessions; owner points back to the session. */
struct mbox_link {
    struct mbox_link *prev, *next;
    void *owner;
};

/* One user's INBOX. The server reads it directly; the store changes it. */
struct mailbox {
    char *user;
    char *password;
    uint32_t uidvalidity;
    uint32_t uidnext;
    struct message **msgs; /* ascending UIDs */
    size_t count, cap;
    size_t recent;             /* messages with MSG_RECENT */
    size_t unseen;             /* messages without MSG_SEEN */
    struct mbox_link sessions; /* circular list head of the sessions logged in as user */
    int sessions_now;          /* length of that list */
    int sessions_max;          /* the most there ever were at once (since reset) */
};

struct mbox_store;

/* A store where user1..userN exist. Never NULL. */
struct mbox_store *mbox_store_new(int users);

/* Frees every mailbox and message. Accepts NULL. Sessions must be gone. */
void mbox_store_free(struct mbox_store *st);

/* 1 when name can be a user: 1 to MBOX_USER_MAX letters, digits or ._+-@ */
int mbox_user_valid(const char *name);

/*
 * Returns the mailbox of user: an existing one, or a new one when create is
 * set or user is one of user1..userN. NULL when it does not exist and may not
 * be made, or when the name is invalid.
 */
struct mailbox *mbox_get(struct mbox_store *st, const char *user, int create);

/* Returns the mailbox when user exists and password is its password, else NULL. */
struct mailbox *mbox_login(struct mbox_store *st, const char *user, const char *password);

/* Sets the password of user (made if needed). 0 or -SIMAP_EINVAL (bad name). */
int mbox_set_password(struct mbox_store *st, const char *user, const char *password);

/*
 * Appends a copy of data[0..n) as a new message with the next UID, flagged
 * \Recent, arrived at now_ms; *uid gets its UID. Returns 0, or -SIMAP_ETOOBIG
 * when the UID space is exhausted.
 */
int mbox_append(struct mailbox *mb, const void *data, size_t n, int64_t now_ms, uint32_t *uid);

/* Sets UIDVALIDITY to v and renumbers every message: each UID grows by the
 * old UIDNEXT - 1, so no old UID means the same message any more. */
void mbox_renumber(struct mailbox *mb, uint32_t v);

/* Index of the first message with UID >= uid (count when none). */
size_t mbox_index_at_or_after(const struct mailbox *mb, uint32_t uid);

/* Sets flag on message i; returns 1 when it was not set before. */
int mbox_set_flag(struct mailbox *mb, size_t i, unsigned flag);

/* Clears MSG_RECENT on every message (after a SELECT). */
void mbox_clear_recent(struct mailbox *mb);

/* Resets every mailbox's sessions_max to its sessions_now. */
void mbox_store_reset_max(struct mbox_store *st);

/* Largest sessions_max over every mailbox. */
int mbox_store_max_sessions(const struct mbox_store *st);

#endif
