/*
 * proto/mailboxes: the list of mailboxes a user is watched in (issue #21),
 * as partners write it and as Redis stores it.
 *
 * A list is a JSON array of 1..MAILBOXES_MAX strings, each either
 *
 *   - a special-use attribute (RFC 6154, plus \Inbox for the mailbox INBOX),
 *     matched in any case and kept in one spelling: \All, \Archive, \Drafts,
 *     \Flagged, \Junk, \Sent, \Trash; \Inbox is kept as "INBOX". Any other
 *     string starting with a backslash is refused;
 *   - a mailbox name as the IMAP server spells it: 1..MAILBOX_NAME_MAX bytes
 *     of strict UTF-8 without control characters (0x00-0x1f, 0x7f); "INBOX"
 *     in any case is the one name IMAP compares without case (RFC 3501
 *     section 5.1) and is kept as "INBOX".
 *
 * Two entries equal after that are refused. Absent means ["INBOX"]. The
 * canonical text (what Redis holds, docs/api.md) is compact JSON:
 * ["INBOX","\\Junk"].
 *
 * Pure: no I/O, no state; every function is safe on any thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_MAILBOXES_H
#define PROTO_MAILBOXES_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

#define MAILBOXES_MAX      16
#define MAILBOX_NAME_MAX   255
/* Longest JSON text mailboxes_parse() reads: 16 names of 255 bytes each
 * written with \uXXXX escapes, and room for spaces. */
#define MAILBOXES_JSON_MAX (MAILBOXES_MAX * (MAILBOX_NAME_MAX * 6 + 8) + 1024)

enum mailbox_special {
    MB_NAME = 0, /* a mailbox name */
    MB_INBOX,    /* INBOX (the name, or \Inbox) */
    MB_ALL,
    MB_ARCHIVE,
    MB_DRAFTS,
    MB_FLAGGED,
    MB_JUNK,
    MB_SENT,
    MB_TRASH,
};

struct mailbox_spec {
    enum mailbox_special special; /* MB_NAME: name is the mailbox name; MB_INBOX: name "INBOX";
                                     else name is the attribute as stored ("\\Junk") */
    char *name;                   /* owned, NUL-terminated */
};

struct mailbox_list {
    struct mailbox_spec *items; /* n of them, in the order given */
    size_t n;
};

/* Parses and validates json[0..len) (a JSON array as above). On success
 * fills *out (free with mailboxes_free()) and returns 0; else returns
 * -SIMAP_EINVAL with *out empty and a one-line reason for a partner in why
 * ("mailboxes[2]: unknown special-use attribute \Foo"), when why is not NULL
 * and whylen > 0. The reason is valid UTF-8 without control characters. */
int mailboxes_parse(const char *json, size_t len, struct mailbox_list *out, char *why,
                    size_t whylen);

/* As mailboxes_parse() on a value already parsed by core/json (a request
 * body's member); borrows v. */
int mailboxes_from_value(yajl_val v, struct mailbox_list *out, char *why, size_t whylen);

/* Returns the canonical compact JSON of l as a new NUL-terminated string
 * (xfree() it). NULL only when an item's name is not valid UTF-8, which a
 * list from mailboxes_parse() never has. */
char *mailboxes_to_json(const struct mailbox_list *l);

/* Frees the items of l and empties it. Accepts NULL. */
void mailboxes_free(struct mailbox_list *l);

/* The special-use kind of an attribute as a server sends it in LIST
 * ("\\Junk", any case); MB_NAME when it is none of ours. attr[0..len) need
 * not be NUL-terminated. */
enum mailbox_special mailbox_special_of(const char *attr, size_t len);

/* 1 when l is exactly ["INBOX"] (the default), else 0. */
int mailboxes_inbox_only(const struct mailbox_list *l);

#endif
