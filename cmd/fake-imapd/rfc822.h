/*
 * The message side of superimap-fake-imapd: the IMAP ENVELOPE structure
 * (RFC 3501 section 7.4.2) built from a message's RFC 5322 header, IMAP
 * string output, and the split between header and body.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_RFC822_H
#define CMD_FAKE_IMAPD_RFC822_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/*
 * Appends the ENVELOPE list of the message msg[0..n) to out: Date, Subject,
 * From, Sender, Reply-To, To, Cc, Bcc, In-Reply-To, Message-ID, with NIL for
 * fields absent, Sender and Reply-To defaulting to From, address lists parsed
 * into (name adl mailbox host) entries, groups included. Any bytes are
 * accepted (the message comes from a test). Returns 0 or -SIMAP_ETOOBIG from out.
 */
int rfc822_envelope(const char *msg, size_t n, struct buf *out);

/* Length of the header section of msg[0..n), blank line included; n when
 * the message has no blank line. */
size_t rfc822_header_len(const char *msg, size_t n);

/*
 * Appends s[0..n) as an IMAP string: quoted when it holds only printable
 * 7-bit characters other than '"' and '\', else as a literal {n}; NIL when s
 * is NULL. Returns 0 or -SIMAP_ETOOBIG from out.
 */
int rfc822_put_string(struct buf *out, const char *s, size_t n);

/* Appends ms (Unix milliseconds) as an IMAP date-time in UTC with quotes:
 * "17-Jul-1996 02:44:25 +0000". */
int rfc822_put_date_time(struct buf *out, int64_t ms);

#endif
