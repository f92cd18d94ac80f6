/*
 * proto/imap_parse: an incremental parser of IMAP server responses
 * (RFC 3501 section 7 and 9, with RFC 2177 IDLE, RFC 5530 response codes,
 * RFC 7162 MODSEQ and VANISHED, Gmail's X-GM-EXT-1 FETCH items and RFC 7888 /
 * RFC 3516 literal forms), for a client that only EXAMINEs, FETCHes, asks
 * STATUS and LIST, and IDLEs. Pure: no sockets, no loop, no logging.
 *
 * The caller feeds bytes as they arrive, in any split, and gets complete
 * responses one at a time; feeding the same bytes in any split gives the same
 * responses. Memory is bounded by the limits given at creation:
 *
 *   - max_line bounds the text of one response outside its literals, all its
 *     lines together (CRLFs counted), so a line that never ends fails once it
 *     passes max_line bytes;
 *   - max_literal bounds each literal, checked on the announced size, before
 *     anything is allocated for it; all literals of one response together
 *     may hold max_literal + max_line bytes;
 *   - parentheses nest at most IMAP_MAX_DEPTH deep.
 *
 * How a response is framed:
 *
 *   +-- first line --------------------+-- literal -+-- rest -+
 *   | * 12 FETCH (UID 9 BODY[] {5}\r\n | hello      | )\r\n   |
 *   +----------------------------------+------------+---------+
 *
 * A line of an untagged data response (not OK/NO/BAD/PREAUTH/BYE) that ends
 * in {n}, {n+} or ~{n} outside a quoted string announces n raw bytes, then
 * the response goes on. Tagged, status and continuation responses are one
 * line: their text is free text, never a literal. Lines end in CRLF; a bare
 * LF is tolerated. Empty lines between responses are skipped. A NUL byte
 * outside a literal is a protocol error.
 *
 * Tolerated server quirks (seen in the wild): several spaces where one is
 * due, spaces missing between parenthesised items, a missing text after a
 * status or a response code, "[" text with no "]" (plain text then), atoms
 * where a string is due in ENVELOPE, unknown escapes in quoted strings (kept
 * as sent), 8-bit bytes in quoted strings and atoms, BODY.PEEK echoed back,
 * "()" for an empty address list and NIL in place of an address (skipped).
 *
 * No global state: parsers are independent, each used by one thread at a
 * time (the watcher's loop). Nothing here calls back or logs.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_IMAP_PARSE_H
#define PROTO_IMAP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* imap_parse_feed(): more input is needed (positive, never an error code). */
#define IMAP_AGAIN 1

/* Deepest nesting of parentheses accepted in a response. */
#define IMAP_MAX_DEPTH 32

/*
 * A string from the wire: an atom, a quoted string (unescaped) or a literal
 * (the exact bytes, NUL and 8-bit bytes included). data is NULL for NIL, so
 * NIL and "" differ; otherwise data holds len bytes followed by a NUL that is
 * not counted (text without NUL can be used as a C string).
 */
struct imap_str {
    char *data; /* NULL for NIL */
    size_t len; /* bytes, without the terminating NUL */
};

struct imap_strlist {
    struct imap_str *items; /* n strings, none NIL */
    size_t n;
};

/* ---- Response codes (RFC 3501 section 7.1, RFC 5530, RFC 7162) ---- */

enum imap_code_kind {
    IMAP_CODE_NONE = 0, /* the response had no [code] */
    IMAP_CODE_OTHER,    /* a code not listed here: see name and arg */
    IMAP_CODE_ALERT,
    IMAP_CODE_BADCHARSET,
    IMAP_CODE_CAPABILITY, /* list holds the capabilities */
    IMAP_CODE_PARSE,
    IMAP_CODE_PERMANENTFLAGS, /* list holds the flags */
    IMAP_CODE_READ_ONLY,
    IMAP_CODE_READ_WRITE,
    IMAP_CODE_TRYCREATE,
    IMAP_CODE_UIDNEXT,       /* number (non-zero) */
    IMAP_CODE_UIDVALIDITY,   /* number (non-zero) */
    IMAP_CODE_UNSEEN,        /* number (non-zero) */
    IMAP_CODE_HIGHESTMODSEQ, /* modseq */
    IMAP_CODE_NOMODSEQ,
    /* RFC 5530 */
    IMAP_CODE_UNAVAILABLE,
    IMAP_CODE_AUTHENTICATIONFAILED,
    IMAP_CODE_AUTHORIZATIONFAILED,
    IMAP_CODE_EXPIRED,
    IMAP_CODE_PRIVACYREQUIRED,
    IMAP_CODE_CONTACTADMIN,
    IMAP_CODE_NOPERM,
    IMAP_CODE_INUSE,
    IMAP_CODE_EXPUNGEISSUED,
    IMAP_CODE_CORRUPTION,
    IMAP_CODE_SERVERBUG,
    IMAP_CODE_CLIENTBUG,
    IMAP_CODE_CANNOT,
    IMAP_CODE_LIMIT,
    IMAP_CODE_OVERQUOTA,
    IMAP_CODE_ALREADYEXISTS,
    IMAP_CODE_NONEXISTENT
};

struct imap_code {
    enum imap_code_kind kind;
    struct imap_str name;     /* the code's atom as sent ("UIDNEXT", "THROTTLED"); NIL if none */
    struct imap_str arg;      /* raw text after the atom up to "]"; NIL if none */
    uint32_t number;          /* UIDNEXT, UIDVALIDITY, UNSEEN */
    uint64_t modseq;          /* HIGHESTMODSEQ */
    struct imap_strlist list; /* CAPABILITY atoms, PERMANENTFLAGS flags */
};

/* ---- FETCH data (RFC 3501 section 7.4.2) ---- */

/* One address of an ENVELOPE; each part raw as sent (NIL distinct from ""). */
struct imap_address {
    struct imap_str name;    /* display name, often RFC 2047 encoded */
    struct imap_str adl;     /* source route, practically always NIL */
    struct imap_str mailbox; /* local part; group name at a group start */
    struct imap_str host;    /* domain; NIL marks group syntax */
};

struct imap_addrlist {
    int is_nil;                 /* 1: NIL was sent; 0: a list, maybe empty */
    struct imap_address *items; /* n addresses */
    size_t n;
};

struct imap_envelope {
    struct imap_str date, subject; /* raw header values */
    struct imap_addrlist from, sender, reply_to, to, cc, bcc;
    struct imap_str in_reply_to, message_id;
};

/* Bits of imap_fetch.has: which attributes the response carried. */
#define IMAP_FETCH_UID          (1u << 0)
#define IMAP_FETCH_FLAGS        (1u << 1)
#define IMAP_FETCH_RFC822_SIZE  (1u << 2)
#define IMAP_FETCH_INTERNALDATE (1u << 3)
#define IMAP_FETCH_ENVELOPE     (1u << 4)
#define IMAP_FETCH_BODY         (1u << 5)
#define IMAP_FETCH_BODY_ORIGIN  (1u << 6)
#define IMAP_FETCH_MODSEQ       (1u << 7)
#define IMAP_FETCH_GM_MSGID     (1u << 8)
#define IMAP_FETCH_GM_THRID     (1u << 9)
#define IMAP_FETCH_GM_LABELS    (1u << 10)

/*
 * The attributes of one "* n FETCH (...)". An attribute sent twice keeps its
 * last value. Attributes not listed here (BODYSTRUCTURE, X-GM-RAW, ...)
 * are parsed and dropped.
 */
struct imap_fetch {
    unsigned has;                  /* IMAP_FETCH_* bits */
    uint32_t uid;                  /* UID, never 0 */
    struct imap_strlist flags;     /* FLAGS as sent ("\\Seen", "$Forwarded") */
    uint64_t rfc822_size;          /* RFC822.SIZE */
    struct imap_str internaldate;  /* INTERNALDATE raw ("17-Jul-1996 02:44:25 -0700") */
    struct imap_envelope envelope; /* ENVELOPE */
    /* BODY[section]<origin>, also echoed as BODY.PEEK[...]; RFC822,
     * RFC822.HEADER and RFC822.TEXT land here as sections "", "HEADER"
     * and "TEXT". body is the exact bytes (NIL possible). */
    struct imap_str body;
    struct imap_str body_section; /* text between the brackets, "" for BODY[] */
    uint32_t body_origin;         /* <origin>, with IMAP_FETCH_BODY_ORIGIN */
    uint64_t modseq;              /* MODSEQ (RFC 7162) */
    /* Gmail's X-GM-EXT-1: X-GM-MSGID and X-GM-THRID (64-bit ids), and
     * X-GM-LABELS, each label as sent: an atom ("\\Inbox", "\\Important",
     * a modified UTF-7 name), or the contents of a quoted string (unescaped)
     * or literal ("My label"); "()" gives none. */
    uint64_t gm_msgid;
    uint64_t gm_thrid;
    struct imap_strlist gm_labels;
};

/* Bits of imap_mailbox_status.has. */
#define IMAP_STATUS_MESSAGES      (1u << 0)
#define IMAP_STATUS_RECENT        (1u << 1)
#define IMAP_STATUS_UIDNEXT       (1u << 2)
#define IMAP_STATUS_UIDVALIDITY   (1u << 3)
#define IMAP_STATUS_UNSEEN        (1u << 4)
#define IMAP_STATUS_HIGHESTMODSEQ (1u << 5)

/* "* STATUS mailbox (MESSAGES 3 UIDNEXT 4 ...)"; unknown items skipped. */
struct imap_mailbox_status {
    struct imap_str mailbox;
    unsigned has; /* IMAP_STATUS_* bits */
    uint32_t messages, recent, uidnext, uidvalidity, unseen;
    uint64_t highestmodseq;
};

/* One range of UIDs, first <= last (a single UID has first == last). */
struct imap_uid_range {
    uint32_t first, last;
};

/* ---- Generic values (LIST, LSUB and untagged data we do not interpret) ---- */

enum imap_value_type {
    IMAP_VALUE_NIL,
    IMAP_VALUE_ATOM,   /* str: the atom (numbers, flags, "1:*" too) */
    IMAP_VALUE_STRING, /* str: quoted (unescaped) or literal */
    IMAP_VALUE_LIST    /* items: n values */
};

struct imap_value {
    enum imap_value_type type;
    struct imap_str str;
    struct imap_value *items;
    size_t n;
};

/* ---- Responses ---- */

enum imap_resp_kind {
    IMAP_RESP_CONTINUE,   /* "+ [code] text": code, text (base64 challenges are text) */
    IMAP_RESP_TAGGED,     /* "tag OK|NO|BAD [code] text": tag, cond, code, text */
    IMAP_RESP_COND,       /* "* OK|NO|BAD|PREAUTH|BYE [code] text": cond, code, text */
    IMAP_RESP_CAPABILITY, /* list: the capabilities */
    IMAP_RESP_FLAGS,      /* list: the flags */
    IMAP_RESP_EXISTS,     /* number: messages in the mailbox */
    IMAP_RESP_EXPUNGE,    /* number: the expunged message's sequence number */
    IMAP_RESP_RECENT,     /* number */
    IMAP_RESP_FETCH,      /* number: sequence number; fetch */
    IMAP_RESP_SEARCH,     /* search */
    IMAP_RESP_STATUS,     /* status */
    IMAP_RESP_LIST,       /* name "LIST", values: attributes, delimiter, mailbox */
    IMAP_RESP_LSUB,       /* the same with name "LSUB" */
    IMAP_RESP_VANISHED,   /* vanished (RFC 7162 "* VANISHED [(EARLIER)] uids") */
    IMAP_RESP_OTHER       /* name, values, and number when has_number */
};

enum imap_cond {
    IMAP_COND_NONE = 0, /* not a status response */
    IMAP_COND_OK,
    IMAP_COND_NO,
    IMAP_COND_BAD,
    IMAP_COND_PREAUTH,
    IMAP_COND_BYE
};

/*
 * One complete response, plain data owned by whoever received it from
 * imap_parse_feed(): release it with imap_response_free(). Fields that do
 * not apply to its kind are zero (strings NIL).
 */
struct imap_response {
    enum imap_resp_kind kind;
    struct imap_str tag;               /* TAGGED: the tag */
    enum imap_cond cond;               /* TAGGED and COND */
    struct imap_code code;             /* TAGGED, COND and CONTINUE: IMAP_CODE_NONE if none */
    struct imap_str text;              /* TAGGED, COND and CONTINUE: the human text, maybe "" */
    uint32_t number;                   /* EXISTS, EXPUNGE, RECENT, FETCH; OTHER if has_number */
    int has_number;                    /* OTHER: the data began with a number ("* 3 FOO") */
    struct imap_strlist list;          /* CAPABILITY, FLAGS */
    struct imap_fetch fetch;           /* FETCH */
    struct imap_mailbox_status status; /* STATUS */
    struct {
        uint32_t *items; /* n message numbers or UIDs, each non-zero */
        size_t n;
        uint64_t modseq; /* RFC 7162 "(MODSEQ n)", 0 when absent */
    } search;
    struct {
        int earlier;                   /* 1 for "(EARLIER)": expunged before this command */
        struct imap_uid_range *ranges; /* n ranges of expunged UIDs, in the order sent */
        size_t n;
    } vanished;
    struct imap_str name;      /* LIST, LSUB, OTHER: the response's atom as sent */
    struct imap_value *values; /* LIST, LSUB, OTHER: nvalues values after the name */
    size_t nvalues;
};

/* Opaque: the partial response buffered between calls, limits and error. */
struct imap_parser;

/*
 * Returns a new parser with the limits above (release it with
 * imap_parser_free()), or NULL when max_literal or max_line is 0. A max_line
 * below a few KiB will refuse real servers' capability lines.
 */
struct imap_parser *imap_parser_new(size_t max_literal, size_t max_line);

/* Releases the parser and any partial response. Accepts NULL. */
void imap_parser_free(struct imap_parser *p);

/* Drops any partial response and the error: the parser is as new (a new
 * connection starts from here). Keeps the limits. */
void imap_parser_reset(struct imap_parser *p);

/*
 * Feeds up to n bytes of data (borrowed; n may be 0). Consumes bytes up to
 * the end of the first complete response and sets *consumed to their count;
 * the caller feeds the rest (data + *consumed) in the next call. Returns:
 *
 *   0             one complete response in *out (a new object: the caller
 *                 releases it with imap_response_free());
 *   IMAP_AGAIN    every byte was consumed and buffered; *out is NULL;
 *   -SIMAP_EPROTO the server broke the grammar;
 *   -SIMAP_ETOOBIG a literal, the line text or the nesting passed its limit
 *                 (the literal is refused on its announced size, before any
 *                 allocation).
 *
 * After an error *out is NULL, *consumed is unspecified, and every later call
 * returns the same error until imap_parser_reset(): the connection is over.
 * imap_parser_errstr() says where and why. Never calls back.
 */
int imap_parse_feed(struct imap_parser *p, const char *data, size_t n, size_t *consumed,
                    struct imap_response **out);

/* Returns why the parser failed (offset and reason, never the server's
 * bytes, which may be mail content), or "" when it has not. Valid until the
 * next call on p. */
const char *imap_parser_errstr(const struct imap_parser *p);

/* Bytes buffered for the response in progress (line text plus literals). */
size_t imap_parser_buffered(const struct imap_parser *p);

/* Releases a response and everything in it. Accepts NULL. */
void imap_response_free(struct imap_response *r);

/* Returns 1 if list holds name (ASCII case-insensitive: capabilities and
 * flags), else 0. */
int imap_strlist_has(const struct imap_strlist *list, const char *name);

#endif
