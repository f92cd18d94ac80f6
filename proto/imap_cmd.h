/*
 * proto/imap_cmd: builds the IMAP commands superimap's watcher sends
 * (RFC 3501 section 6, RFC 2177 IDLE, RFC 4959 SASL-IR, RFC 4616 PLAIN,
 * Google's and Microsoft's XOAUTH2, RFC 7888 LITERAL+ / LITERAL-, RFC 5161
 * ENABLE, RFC 5465 NOTIFY, RFC 6154 SPECIAL-USE, RFC 7162 CONDSTORE /
 * QRESYNC, Gmail's X-GM-EXT-1), each a
 * complete command with its CRLF appended to a bounded struct buf. Pure: no
 * I/O, no logging, no global state (safe from any thread).
 *
 * Every builder appends all of its command or nothing: on failure out is
 * unchanged. They return 0, -SIMAP_EINVAL (a bad argument: invalid tag, a
 * UID of 0, a string an IMAP command cannot carry) or -SIMAP_ETOOBIG (out
 * would pass its maximum).
 *
 * Strings (user names, passwords, mailbox names) go as quoted strings when
 * they are 7-bit without CR, LF or NUL (" and \ escaped), otherwise as
 * literals. A synchronising literal "{n}" makes the client stop after it and
 * wait for the server's "+" continuation; a command that needs such stops
 * says where in a struct imap_cmd_sync:
 *
 *   A0003 LOGIN {11}\r\n      <- stop at[0]: send this, wait for "+ ..."
 *   joe@example {8}\r\n       <- stop at[1]: send up to here, wait for "+"
 *   p\"ss\xc3\xa9\r\n         <- then the rest
 *
 * Offsets count from the start of the command (out->len before the call).
 * If the server answers a stop with a tagged NO or BAD instead of "+", the
 * command is over: send nothing more of it. When the server advertised
 * LITERAL+ (IMAP_CMD_LITERAL_PLUS) literals are "{n+}" and need no stop;
 * with LITERAL- only literals up to 4096 bytes may be.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_IMAP_CMD_H
#define PROTO_IMAP_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* ---- Tags ---- */

/* A tag's size with its NUL: "A" and up to 10 digits. */
#define IMAP_TAG_SIZE 16

/* Tag generator: zero it; tags are then A0001, A0002, ... A9999, A10000,
 * ..., up to A4294967295, then A0001 again (never A0000). */
struct imap_tagger {
    uint32_t last; /* number of the last tag given, 0 before the first */
};

/* Writes the next tag into tag (NUL-terminated) and advances t. */
void imap_tag_next(struct imap_tagger *t, char tag[IMAP_TAG_SIZE]);

/* ---- Literals ---- */

/* Flags for commands that carry strings, from the server's capabilities. */
#define IMAP_CMD_LITERAL_PLUS  0x1u /* "LITERAL+": any literal may be non-synchronising */
#define IMAP_CMD_LITERAL_MINUS 0x2u /* "LITERAL-": literals up to 4096 bytes may be */

/* Largest literal LITERAL- lets a client send without a stop. */
#define IMAP_LITERAL_MINUS_MAX 4096

/* Most stops one command may need. */
#define IMAP_CMD_MAX_SYNC 4

/* Where to stop and wait for "+": n offsets, increasing (see above).
 * Builders taking one set n (0 when no stop is needed). They accept a NULL
 * sync when the caller cannot stop; a string that would need a stop then
 * fails with -SIMAP_EINVAL. */
struct imap_cmd_sync {
    size_t n;
    size_t at[IMAP_CMD_MAX_SYNC];
};

/* Longest user name, password or token accepted, in bytes. */
#define IMAP_CMD_MAX_CREDENTIAL 16384

/* ---- Commands ---- */

/* "<tag> CAPABILITY", "<tag> STARTTLS", "<tag> NOOP", "<tag> LOGOUT",
 * "<tag> IDLE" (RFC 2177; the server answers "+ idling"), each with CRLF.
 * tag: 1 to IMAP_TAG_SIZE - 1 letters, digits or "." (borrowed). */
int imap_cmd_capability(struct buf *out, const char *tag);
int imap_cmd_starttls(struct buf *out, const char *tag);
int imap_cmd_noop(struct buf *out, const char *tag);
int imap_cmd_logout(struct buf *out, const char *tag);
int imap_cmd_idle(struct buf *out, const char *tag);

/* "DONE" CRLF: ends IDLE (no tag; the IDLE command's tag completes). */
int imap_cmd_done(struct buf *out);

/*
 * "<tag> LOGIN <user> <pass>": user and pass (NUL-terminated, borrowed, up
 * to IMAP_CMD_MAX_CREDENTIAL bytes, any other bytes allowed) as quoted
 * strings or literals per flags (IMAP_CMD_LITERAL_*). Sets *sync to the
 * stops (n = 0 when none). The caller must not log out's contents.
 */
int imap_cmd_login(struct buf *out, struct imap_cmd_sync *sync, const char *tag, const char *user,
                   const char *pass, unsigned flags);

/*
 * "<tag> AUTHENTICATE PLAIN" (RFC 4616) with the base64 of "\0user\0pass".
 * With sasl_ir (the server advertised SASL-IR, RFC 4959) the response rides
 * on the command line and *sync->n is 0; without, *sync has one stop after
 * the command line: wait for "+" before sending the base64 line.
 */
int imap_cmd_authenticate_plain(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                                const char *user, const char *pass, int sasl_ir);

/*
 * "<tag> AUTHENTICATE XOAUTH2" with the base64 of
 * "user=" user "\x01auth=Bearer " token "\x01\x01" (Gmail, Outlook).
 * sasl_ir and *sync as for PLAIN. user and token must not hold \x01, CR or
 * LF (-SIMAP_EINVAL). On failure the server sends a "+ <base64 JSON>"
 * challenge: answer it with imap_cmd_sasl_empty(), then the tagged NO comes.
 */
int imap_cmd_authenticate_xoauth2(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                                  const char *user, const char *token, int sasl_ir);

/*
 * "<tag> AUTHENTICATE OAUTHBEARER" (RFC 7628) with the base64 of the GS2
 * header "n,a=" user "," (',' and '=' in user escaped as =2C and =3D), then
 * "\x01auth=Bearer " token "\x01\x01". sasl_ir and *sync as for PLAIN; the
 * same characters as for XOAUTH2 are refused. On failure the server sends a
 * "+ <base64 JSON>" challenge: answer it with imap_cmd_sasl_oauthbearer_abort().
 */
int imap_cmd_authenticate_oauthbearer(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                                      const char *user, const char *token, int sasl_ir);

/* The base64 of a lone \x01: the client's answer to an OAUTHBEARER error
 * challenge (RFC 7628 section 3.2.3), after which the tagged NO comes. */
int imap_cmd_sasl_oauthbearer_abort(struct buf *out);

/* An empty SASL response (CRLF alone): the answer to an XOAUTH2 error
 * challenge. */
int imap_cmd_sasl_empty(struct buf *out);

/* "*" CRLF: cancels a SASL exchange (RFC 3501 section 6.2.2). */
int imap_cmd_sasl_cancel(struct buf *out);

/* "<tag> EXAMINE <mailbox>" (read-only SELECT: never sets \Seen); mailbox
 * borrowed, quoted or a literal per flags, stops in *sync. */
int imap_cmd_examine(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                     const char *mailbox, unsigned flags);

/* "<tag> SELECT <mailbox>" (read-write: only to delete tracer mails; the
 * watcher's fetches still never set \Seen). Arguments as for
 * imap_cmd_examine(). */
int imap_cmd_select(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                    const char *mailbox, unsigned flags);

/* "<tag> SELECT <mailbox> (CONDSTORE)" (RFC 7162 section 3.1.8): opens the
 * mailbox with mod-sequences on, so the answer carries [HIGHESTMODSEQ n] (or
 * [NOMODSEQ]) and later FETCHes may use CHANGEDSINCE. Arguments as for
 * imap_cmd_examine(). The watcher does not use RFC 7162 (docs/performance.md
 * "Several mailboxes per user"); this and the QRESYNC EXAMINE below serve
 * the tests and the benchmark that measured it. */
int imap_cmd_select_condstore(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                              const char *mailbox, unsigned flags);

/*
 * "<tag> EXAMINE <mailbox> (QRESYNC (<uidvalidity> <modseq>))" (RFC 7162
 * section 3.2.5): reopens a mailbox known at
 * uidvalidity up to modseq; the server answers with "* VANISHED (EARLIER)
 * uids" for what was expunged since and a FETCH (UID, FLAGS, MODSEQ) of
 * every message changed since, new ones included. The session must have
 * sent "ENABLE QRESYNC" first (imap_cmd_enable()), else the server answers
 * BAD. uidvalidity must be non-zero and modseq from 1 to 2^63 - 1
 * (-SIMAP_EINVAL). Other arguments as for imap_cmd_examine().
 */
int imap_cmd_examine_qresync(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                             const char *mailbox, unsigned flags, uint32_t uidvalidity,
                             uint64_t modseq);

/*
 * Commands below take no sync and no literal flags: they carry mailbox names
 * as quoted strings only (" and \ escaped). A name that would need a literal
 * (an 8-bit byte, CR, LF or NUL: not a name a server lists in modified UTF-7,
 * RFC 3501 section 5.1.3) is refused with -SIMAP_EINVAL.
 */

/* "<tag> STATUS "<mailbox>" (UIDNEXT UIDVALIDITY)", with " HIGHESTMODSEQ"
 * inside the parentheses when condstore (the server announced CONDSTORE):
 * the check of a mailbox other than the selected one (RFC 3501 6.3.10). */
int imap_cmd_status(struct buf *out, const char *tag, const char *mailbox, int condstore);

/* "<tag> LIST "" "*"", or with special_use (the server announced SPECIAL-USE)
 * "<tag> LIST "" "*" RETURN (SPECIAL-USE)" (RFC 6154 section 5.1): every
 * mailbox, with the special-use attributes (\Junk, \Sent, ...) among each
 * LIST response's attributes. */
int imap_cmd_list_all(struct buf *out, const char *tag, int special_use);

/*
 * "<tag> NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (MAILBOXES
 * ("<a>" "<b>" ...) (MessageNew MessageExpunge MailboxName))" (RFC 5465):
 * new mail and expunges in the selected mailbox come as usual (EXISTS,
 * EXPUNGE), new mail in the n others (borrowed NUL-terminated names) as
 * "* STATUS <mb> (MESSAGES n UIDNEXT u)", a rename or delete of one of them
 * as a LIST response. With n == 0 only the SELECTED part is sent (others may
 * be NULL then). Any name NULL or needing a literal: -SIMAP_EINVAL.
 */
int imap_cmd_notify_set(struct buf *out, const char *tag, const char *const *others, size_t n);

/* "<tag> ENABLE <what>" (RFC 5161), e.g. what = "QRESYNC" or
 * "CONDSTORE QRESYNC": one or more capability names (letters, digits, "=",
 * "+", "-", ".", "_") separated by single spaces, else -SIMAP_EINVAL. The
 * server answers "* ENABLED <what it enabled>" then OK. */
int imap_cmd_enable(struct buf *out, const char *tag, const char *what);

/* "<tag> UID FETCH <first>:* (UID RFC822.SIZE ENVELOPE)". first must be
 * non-zero. The server answers for the highest UID even when it is below
 * first ("n:*" is a range): the caller filters. */
int imap_cmd_uid_fetch_envelopes(struct buf *out, const char *tag, uint32_t first);

/* Bits of imap_cmd_uid_fetch_envelopes_ext()'s items. */
#define IMAP_CMD_FETCH_GMAIL 0x1u /* X-GM-MSGID X-GM-THRID X-GM-LABELS (X-GM-EXT-1) */

/*
 * imap_cmd_uid_fetch_envelopes() with more: items IMAP_CMD_FETCH_GMAIL adds
 * " X-GM-MSGID X-GM-THRID X-GM-LABELS" after ENVELOPE (Gmail's message id,
 * thread id and labels); a non-zero changedsince (up to 2^63 - 1) appends
 * " (CHANGEDSINCE <n>)" (RFC 7162 section 3.1.4: only the messages whose
 * MODSEQ is above n, each answer with its MODSEQ; the session must have
 * used CONDSTORE or QRESYNC). items 0 and changedsince 0 build exactly
 * imap_cmd_uid_fetch_envelopes(). Unknown item bits: -SIMAP_EINVAL.
 */
int imap_cmd_uid_fetch_envelopes_ext(struct buf *out, const char *tag, uint32_t first,
                                     unsigned items, uint64_t changedsince);

/* "<tag> UID FETCH * (UID)": the UID of the highest-numbered message, for
 * a server whose EXAMINE gave no UIDNEXT. An empty mailbox may answer NO or
 * BAD (there is no "*"). */
int imap_cmd_uid_fetch_last(struct buf *out, const char *tag);

/* "<tag> UID FETCH <uid> BODY.PEEK[]": the raw message without setting
 * \Seen. uid must be non-zero. */
int imap_cmd_uid_fetch_body(struct buf *out, const char *tag, uint32_t uid);

/* "<tag> UID FETCH <uid> BODY.PEEK[]<offset.length>" (RFC 3501 6.4.5): at
 * most length bytes of the raw message from offset, without setting \Seen;
 * the answer is BODY[]<offset>, shorter than length at the end. uid and
 * length must be non-zero. */
int imap_cmd_uid_fetch_body_part(struct buf *out, const char *tag, uint32_t uid, uint64_t offset,
                                 uint32_t length);

/* "<tag> UID STORE <uid> +FLAGS.SILENT (\Deleted)" (RFC 3501 6.4.6): marks
 * one message deleted without an untagged FETCH in answer. uid must be
 * non-zero. */
int imap_cmd_uid_store_deleted(struct buf *out, const char *tag, uint32_t uid);

/* "<tag> UID EXPUNGE <uid>" (RFC 4315 UIDPLUS): removes that one message
 * if it is marked \Deleted, never another marked so. uid must be non-zero. */
int imap_cmd_uid_expunge(struct buf *out, const char *tag, uint32_t uid);

#endif
