/*
 * proto/envelope: the message fields of a new_mail webhook body (README,
 * "Webhooks"): "envelope", "decoded", "rfc822" and
 * "rfc822_base64", written into a core/json generator the caller has open so
 * the whole payload is built in one pass.
 *
 * "envelope" is the original's: Ruby's Net::IMAP::Envelope serialized by
 * ActiveSupport, i.e. the IMAP ENVELOPE (RFC 3501 section 7.4.2) as an object
 * with the raw, undecoded values:
 *
 *   {"date":"Tue, 4 Mar 2025 10:00:00 +0000",
 *    "subject":"=?UTF-8?B?...?=",
 *    "from":[{"name":"=?UTF-8?Q?Jos=C3=A9?=","route":null,"mailbox":"jose","host":"example.com"}],
 *    "sender":[...],"reply_to":[...],"to":[...],
 *    "cc":null,"bcc":null,
 *    "in_reply_to":null,"message_id":"<id@example.com>"}
 *
 *   - keys always present, in this order;
 *   - NIL (a string or a whole address list) is null, as Ruby's nil was; an
 *     empty list (not valid IMAP, but tolerated) is [];
 *   - an address is {"name","route","mailbox","host"}, route being the IMAP
 *     "adl" (source route); RFC 3501 group markers are kept as they come
 *     (start: host null, mailbox = group name; end: mailbox and host null);
 *   - values are the bytes the server sent. Bytes that are not well-formed
 *     UTF-8 are replaced by U+FFFD per maximal ill-formed subpart (as Ruby's
 *     String#scrub): the original raised on them and retried the job forever,
 *     we send valid JSON instead. NUL bytes appear as \u0000.
 *
 * "decoded" is new (receivers of the original ignore it): the same envelope
 * made readable, every string valid UTF-8:
 *
 *   {"subject":"Café ☕",
 *    "from":[{"name":"José García","mailbox":"jose","host":"example.com",
 *             "address":"jose@example.com"}],
 *    "sender":[...],"reply_to":[...],"to":[...],"cc":null,"bcc":null}
 *
 *   - subject and each name: RFC 2047 encoded-words decoded and folded lines
 *     unfolded, by proto/mime_words (see there for the lenient rules);
 *   - mailbox and host: the raw values (sanitized as above); address is
 *     "mailbox@host", or null when either is NIL;
 *   - lists hold mailboxes only: group markers are left out (the members of a
 *     group are listed as ordinary entries), so "undisclosed-recipients:;"
 *     gives []; a NIL list is null;
 *   - NIL subject or name is null.
 *
 * "rfc822" (README, "Webhooks"): the raw message as a JSON string when it is
 * well-formed UTF-8 (NUL bytes included, written \u0000). Otherwise "rfc822"
 * holds the U+FFFD-sanitized text and "rfc822_base64" the standard, padded
 * base64 (RFC 4648 section 4) of the exact bytes, so receivers can always get
 * them back.
 *
 * Pure code: no I/O, no global state; safe on any thread for distinct
 * generators. Depends on libc, glibc iconv, OpenSSL (EVP_EncodeBlock),
 * core/err, core/buf, core/json and proto/mime_words.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_ENVELOPE_H
#define PROTO_ENVELOPE_H

#include <stddef.h>

#include "core/json.h"

/*
 * One IMAP nstring. is_nil set means NIL (ptr and len are then ignored);
 * otherwise ptr[0..len) is the value, any bytes, not NUL-terminated (ptr may
 * be NULL when len is 0). Borrowed: it points into the caller's data.
 */
struct envelope_str {
    const char *ptr;
    size_t len;
    int is_nil;
};

/* One address of an ENVELOPE address list: ("name" adl "mailbox" "host"). */
struct envelope_addr {
    struct envelope_str name;    /* display name, raw (may hold encoded-words) */
    struct envelope_str adl;     /* source route; "route" in the JSON */
    struct envelope_str mailbox; /* local part, or the group name at a group start */
    struct envelope_str host;    /* domain; NIL at group markers */
};

/* An address list: NIL (is_nil), or count addresses at v (borrowed; v may be
 * NULL when count is 0). */
struct envelope_addrs {
    const struct envelope_addr *v;
    size_t count;
    int is_nil;
};

/*
 * An IMAP ENVELOPE (RFC 3501 section 7.4.2), fields in the protocol's order.
 * Plain borrowed data: the watcher fills it from the IMAP parser's output,
 * which must outlive the calls below. Zero-filled, every string is "" and
 * every list is empty (not NIL).
 */
struct envelope {
    struct envelope_str date; /* the Date header, raw */
    struct envelope_str subject;
    struct envelope_addrs from;
    struct envelope_addrs sender;
    struct envelope_addrs reply_to;
    struct envelope_addrs to;
    struct envelope_addrs cc;
    struct envelope_addrs bcc;
    struct envelope_str in_reply_to;
    struct envelope_str message_id;
};

/*
 * Writes the "envelope" object described above as the generator's next value
 * (inside an array, after a key, or at the top level). Returns 0, or
 * -SIMAP_EINVAL when g or env is NULL or env has a non-NIL string with ptr
 * NULL and len > 0 or a non-NIL list with v NULL and count > 0 (checked
 * before anything is written, so g is left untouched), or the generator's
 * error (which g keeps: see core/json.h). Borrows env.
 */
int envelope_json_envelope(struct json_gen *g, const struct envelope *env);

/* Writes the "decoded" object described above as the generator's next
 * value. Same returns and ownership as envelope_json_envelope(). */
int envelope_json_decoded(struct json_gen *g, const struct envelope *env);

/* Writes the two members "envelope":{...},"decoded":{...} into the object the
 * caller has open (a key must be due). Same returns as above. */
int envelope_json_fields(struct json_gen *g, const struct envelope *env);

/*
 * What "rfc822" and "rfc822_base64" carry for one raw message. Filled by
 * envelope_rfc822_fields(), released by envelope_rfc822_release().
 */
struct envelope_rfc822 {
    int is_utf8;       /* the raw bytes are well-formed UTF-8 */
    const char *text;  /* "rfc822": the raw bytes themselves when is_utf8,
                          else a sanitized copy owned by this struct */
    size_t text_len;   /* bytes at text (NULs included) */
    char *base64;      /* "rfc822_base64", NUL-terminated; NULL when is_utf8 */
    size_t base64_len; /* characters at base64 */
    char *owned;       /* internal: the sanitized copy, or NULL */
};

/*
 * Applies the raw message rule above to raw[0..n) (borrowed; raw may be
 * NULL when n is 0). Returns 1 when raw is well-formed UTF-8 (then r->text is
 * raw and r->base64 NULL: nothing is copied), 0 when it is not (then r->text
 * is the U+FFFD-sanitized copy and r->base64 the base64 of the exact bytes),
 * -SIMAP_EINVAL when r is NULL or raw is NULL with n > 0, -SIMAP_ETOOBIG when
 * the base64 length would not fit a size_t. On a negative return r holds
 * nothing to release. r->text stays valid while raw does and r is not
 * released; call envelope_rfc822_release(r) after a return >= 0.
 */
int envelope_rfc822_fields(const char *raw, size_t n, struct envelope_rfc822 *r);

/* Frees what envelope_rfc822_fields() allocated and zeroes r. Accepts NULL
 * and a zero-filled r. */
void envelope_rfc822_release(struct envelope_rfc822 *r);

/*
 * Writes "rfc822":"..." and, when raw[0..n) is not well-formed UTF-8,
 * "rfc822_base64":"..." into the object the caller has open. Returns 0,
 * -SIMAP_EINVAL (g NULL, or raw NULL with n > 0; g untouched), -SIMAP_ETOOBIG
 * as envelope_rfc822_fields(), or the generator's error. Borrows raw; the
 * caller's json_gen_new() max must leave room for the message, escaped, and
 * for its base64 (4/3 of its size) when the message is not UTF-8.
 */
int envelope_json_rfc822(struct json_gen *g, const char *raw, size_t n);

#endif
