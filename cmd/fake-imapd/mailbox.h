/*
 * The mail store of superimap-fake-imapd: per user an account with INBOX
 * and any other mailboxes (folders) made through the control channel, in
 * memory, found by user name in a hash table.
 *
 * Users user1..userN (N from SUPERIMAP_FAKE_USERS) exist from the start with
 * passwords pass1..passN, but an account is made only when first used (login
 * or append), so a million configured users cost nothing. Any other user is
 * made by its first append through the control channel; its password is
 * pass<K> for a name user<K>, else "pass-" followed by the name, until the
 * control channel sets another.
 *
 * A folder's messages ascend by UID, so a message's sequence number is its
 * index plus one. Only the control channel expunges (EXPUNGE), and each
 * expunged UID is remembered with its MODSEQ for QRESYNC's VANISHED
 * (EARLIER) (RFC 7162); a folder never expunged from keeps no such list.
 * Every change (append, \Seen, expunge) takes the folder's next MODSEQ.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_MAILBOX_H
#define CMD_FAKE_IMAPD_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#define MSG_SEEN   (1u << 0)
#define MSG_RECENT (1u << 1)

#define MBOX_USER_MAX 64  /* longest user name, bytes */
#define MBOX_NAME_MAX 255 /* longest folder name, bytes */

/* RFC 6154 special-use attributes a folder may carry. */
enum folder_special {
    FS_NONE = 0,
    FS_ALL,
    FS_ARCHIVE,
    FS_DRAFTS,
    FS_FLAGGED,
    FS_JUNK,
    FS_SENT,
    FS_TRASH,
    FS_COUNT
};

/* One message; plain data owned by its folder. */
struct message {
    uint32_t uid;
    unsigned flags;      /* MSG_* */
    uint64_t modseq;     /* RFC 7162: the folder's MODSEQ of its last change */
    uint64_t gm_msgid;   /* X-GM-MSGID: the same in every label folder holding it */
    uint64_t gm_thrid;   /* X-GM-THRID */
    int64_t internal_ms; /* arrival (wall clock, ms) */
    size_t size;         /* bytes of data */
    size_t header_len;   /* bytes of the header section, blank line included */
    char *data;          /* the raw message, NUL-terminated (NUL not counted) */
    char *envelope;      /* rendered ENVELOPE list */
    size_t envelope_len;
    char *labels; /* rendered X-GM-LABELS list ("(\\Inbox \"Work\")"); NULL: "()" */
};

/* An expunged UID and the MODSEQ of its expunge. */
struct vanished {
    uint32_t uid;
    uint64_t modseq;
};

/* One mailbox of an account. */
struct folder {
    struct folder *next; /* the account's next folder (INBOX first) */
    char *name;          /* NULL for INBOX (mbox_folder_name()): no copy per account */
    unsigned special;    /* enum folder_special */
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq; /* RFC 7162 HIGHESTMODSEQ */
    struct message **msgs;  /* ascending UIDs */
    size_t count, cap;
    size_t recent;         /* messages with MSG_RECENT */
    size_t unseen;         /* messages without MSG_SEEN */
    struct vanished *gone; /* expunged UIDs, ascending MODSEQ; NULL until the first */
    size_t ngone;
};

/* A link in an account's list of sessions; owner points back to the session. */
struct mbox_link {
    struct mbox_link *prev, *next;
    void *owner;
};

/* One user. The server reads it directly; the store changes it. */
struct account {
    char *user;
    char *password;
    struct folder inbox;       /* INBOX, head of the folder list */
    struct mbox_link sessions; /* circular list head of the sessions logged in as user */
    int sessions_now;          /* length of that list */
    int sessions_max;          /* the most there ever were at once (since reset) */
};

struct mbox_store;

/* A store where user1..userN exist. Never NULL. */
struct mbox_store *mbox_store_new(int users);

/* Frees every account, folder and message. Accepts NULL. Sessions must be gone. */
void mbox_store_free(struct mbox_store *st);

/* 1 when name can be a user: 1 to MBOX_USER_MAX letters, digits or ._+-@ */
int mbox_user_valid(const char *name);

/*
 * Returns the account of user: an existing one, or a new one when create is
 * set or user is one of user1..userN. NULL when it does not exist and may not
 * be made, or when the name is invalid.
 */
struct account *mbox_get(struct mbox_store *st, const char *user, int create);

/* Returns the account when user exists and password is its password, else NULL. */
struct account *mbox_login(struct mbox_store *st, const char *user, const char *password);

/* Sets the password of user (made if needed). 0 or -SIMAP_EINVAL (bad name). */
int mbox_set_password(struct mbox_store *st, const char *user, const char *password);

/*
 * Appends a copy of data[0..n) as a new message with the next UID, flagged
 * \Recent, arrived at now_ms; *uid gets its UID. Returns 0, or -SIMAP_ETOOBIG
 * when the UID space is exhausted.
 */
int mbox_append(struct folder *f, const void *data, size_t n, int64_t now_ms, uint32_t *uid);

/* Sets UIDVALIDITY to v and renumbers every message: each UID grows by the
 * old UIDNEXT - 1, so no old UID means the same message any more. */
void mbox_renumber(struct folder *f, uint32_t v);

/* Index of the first message with UID >= uid (count when none). */
size_t mbox_index_at_or_after(const struct folder *f, uint32_t uid);

/* Sets flag on message i; returns 1 when it was not set before (the
 * message then takes the folder's next MODSEQ). */
int mbox_set_flag(struct folder *f, size_t i, unsigned flag);

/* Clears MSG_RECENT on every message (after a SELECT). */
void mbox_clear_recent(struct folder *f);

/* Resets every account's sessions_max to its sessions_now. */
void mbox_store_reset_max(struct mbox_store *st);

/* Largest sessions_max over every account. */
int mbox_store_max_sessions(const struct mbox_store *st);

/* 1 when name can be a folder: 1 to MBOX_NAME_MAX bytes, none below 0x20
 * nor 0x7f, not starting or ending with the delimiter '/'. */
int mbox_name_valid(const char *name);

/* f's name: "INBOX" for the INBOX. */
const char *mbox_folder_name(const struct folder *f);

/* The folder named name (INBOX in any case), or NULL. */
struct folder *mbox_folder(struct account *a, const char *name);


/* Makes folder name (special: enum folder_special) at the end of a's list,
 * UIDVALIDITY from the store's clock. Returns it, or NULL when the name is
 * invalid or taken. */
struct folder *mbox_folder_create(struct mbox_store *st, struct account *a, const char *name,
                                  unsigned special);

/* Renames f (never INBOX) to name. 0, or -SIMAP_EINVAL (invalid or taken). */
int mbox_folder_rename(struct account *a, struct folder *f, const char *name);

/* Unlinks and frees f (never INBOX). No session may have it selected. */
void mbox_folder_delete(struct account *a, struct folder *f);

/* Expunges the message with uid from f, remembering uid and the MODSEQ
 * it takes. Returns its index before the expunge, or -1 when there is none. */
long mbox_expunge(struct folder *f, uint32_t uid);

/* A new X-GM-MSGID, unique in the store. */
uint64_t mbox_next_gm_msgid(struct mbox_store *st);

/* "\\Junk" for FS_JUNK...; NULL for FS_NONE or out of range. */
const char *mbox_special_name(unsigned special);

/* The FS_* of an attribute ("\\Junk", any case), FS_NONE when none. */
unsigned mbox_special_of(const char *attr);

#endif
