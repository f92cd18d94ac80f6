/*
 * proto/mime_words: decodes RFC 2047 encoded-words ("=?charset?B|Q?text?=")
 * in header text (a Subject, a display name) to UTF-8, leniently, the way
 * real mail needs it:
 *
 *   - B (base64) and Q encodings, either case ("?q?", "?b?"), with or without
 *     base64 padding; Q's "_" is a space and "=XX" takes either hex case;
 *   - whitespace (SP, TAB, CR, LF) between two adjacent encoded-words is
 *     dropped (RFC 2047 section 6.2); between a word and plain text it stays;
 *   - the bytes of adjacent words in the same charset are joined *before*
 *     conversion, so a character split across two words (an emoji cut in half
 *     by a mailer folding at 75 columns) decodes whole;
 *   - a word missing its closing "?=" still decodes (its text ends at the next
 *     whitespace, line break or "=?"); Q text with stray spaces inside a
 *     closed word is accepted; a word glued to text ("Re:=?...?=") decodes;
 *   - an RFC 2231 language suffix ("utf-8*en") is ignored;
 *   - charsets: UTF-8, US-ASCII, ISO-8859-1..16, Windows-1250..1258, KOI8-R,
 *     KOI8-U, IBM866, TIS-620/Windows-874, GB2312/GBK/GB18030, Big5,
 *     Shift_JIS, EUC-JP, ISO-2022-JP(-2, -3), EUC-KR/KS_C_5601-1987, UTF-7,
 *     Macintosh, through glibc iconv. Labels are mapped to supersets as
 *     browsers do (WHATWG Encoding): ISO-8859-1 and US-ASCII decode as
 *     Windows-1252, GB2312/GBK as GB18030, Big5 as Big5-HKSCS, Shift_JIS as
 *     CP932, EUC-JP as EUC-JP-MS, EUC-KR as CP949;
 *   - a word whose charset is not in that list, whose syntax is broken or
 *     whose base64 has a character outside the alphabet is not a word: its
 *     text is kept as is (only a fixed list of converters is reachable from
 *     mail, never an arbitrary iconv module named by the sender);
 *   - bytes a charset cannot map, and ill-formed UTF-8 anywhere (inside UTF-8
 *     words or in the plain text around words), become U+FFFD (Unicode
 *     "maximal subparts", as core/json's json_utf8_sanitize());
 *   - folded lines are unfolded: a CRLF or LF followed by SP or TAB is removed
 *     (RFC 5322 section 2.2.3), other line breaks are kept.
 *
 * The output is always well-formed UTF-8 (RFC 3629). NUL bytes (from "=00" or
 * in the input) are kept: the output is counted, not NUL-terminated text.
 * Time is linear in the input. Output is at most 3 bytes per input byte.
 *
 * Pure code: no global state; safe on any thread for distinct buffers. Uses
 * only libc, glibc iconv, core/err, core/buf and core/json (UTF-8 checks).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_MIME_WORDS_H
#define PROTO_MIME_WORDS_H

#include <stddef.h>

#include "core/buf.h"

/* Worst-case output bytes per input byte of mime_words_decode(): a buffer
 * whose free space is MIME_WORDS_MAX_GROWTH * n never overflows. */
#define MIME_WORDS_MAX_GROWTH 3

/*
 * Appends the decoded UTF-8 text of s[0..n) to out (borrowed; its existing
 * contents are kept). s need not be NUL-terminated and may hold any bytes; s
 * may be NULL when n is 0. Returns 0, -SIMAP_EINVAL when out is NULL or s is
 * NULL with n > 0 (out untouched), or -SIMAP_ETOOBIG when out's max is
 * reached (out then holds its previous contents plus an undefined part of the
 * decoded text; buf_reset() or discard it).
 */
int mime_words_decode(const char *s, size_t n, struct buf *out);

#endif
