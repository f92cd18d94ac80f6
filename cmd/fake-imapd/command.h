/*
 * The server side of IMAP command syntax (RFC 3501 section 9, RFC 7888
 * LITERAL+), for superimap-fake-imapd: framing a command out of a byte stream
 * (lines and the literals inside them) and splitting a framed command into
 * tokens.
 *
 *   a1 LOGIN {5}\r\n            <- synchronizing literal: the server answers "+ ..."
 *   user1 {5+}\r\n              <- non-synchronizing (LITERAL+): no answer
 *   pass1\r\n                   <- the frame ends at the first CRLF not announcing a literal
 *
 * No sockets, no allocation: tokens point into the caller's frame.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_COMMAND_H
#define CMD_FAKE_IMAPD_COMMAND_H

#include <stddef.h>

#define COMMAND_AGAIN 1 /* command_frame(): need more input */

#define COMMAND_MAX_LINE    8192  /* longest line of a command, literals excluded */
#define COMMAND_MAX_LITERAL 8192  /* largest literal inside a command */
#define COMMAND_MAX_FRAME   65536 /* largest whole command */
#define COMMAND_MAX_TOKENS  64

/* Framing state across calls for one connection; zero it to start. */
struct command_reader {
    size_t line_start; /* where the line being examined begins */
    size_t cont_sent;  /* end+1 of the literal announcement already answered "+" (0: none) */
};

/*
 * Looks for one complete command at the start of in[0..len). Returns 0 with
 * *frame_len set (the command is in[0..*frame_len), CRLF included; the reader
 * is reset for the next one), COMMAND_AGAIN when more input is needed (with
 * *need_cont set to 1 when a synchronizing literal was just announced and the
 * caller must send a continuation request, once), or -SIMAP_ETOOBIG when a
 * line, literal or the whole command exceeds its bound. in must not change
 * between calls except by appending.
 */
int command_frame(struct command_reader *r, const char *in, size_t len, size_t *frame_len,
                  int *need_cont);

enum command_token_kind {
    TOK_ATOM,   /* also numbers, sequence sets and BODY[...] items */
    TOK_STRING, /* quoted string (unescaped) or literal */
    TOK_LPAREN,
    TOK_RPAREN,
};

struct command_token {
    enum command_token_kind kind;
    const char *p; /* into the frame; not NUL-terminated */
    size_t len;
};

struct command {
    struct command_token tok[COMMAND_MAX_TOKENS];
    int ntok;
};

/*
 * Splits frame[0..len) (a complete command from command_frame()) into tokens,
 * unescaping quoted strings in place. An atom holding '[' runs to the
 * matching ']' across spaces ("BODY.PEEK[HEADER.FIELDS (FROM)]"). Returns 0,
 * -SIMAP_EPROTO (bad syntax: unterminated quote, bad literal) or
 * -SIMAP_ETOOBIG (more than COMMAND_MAX_TOKENS tokens).
 */
int command_tokenize(char *frame, size_t len, struct command *cmd);

/* 1 when token t is an atom equal to word, ignoring ASCII case. */
int command_is(const struct command_token *t, const char *word);

/* Copies token t as a NUL-terminated string into out (cap bytes). Returns 0,
 * or -SIMAP_ETOOBIG (out untouched beyond a NUL) or -SIMAP_EINVAL when t holds a NUL. */
int command_copy(const struct command_token *t, char *out, size_t cap);

#endif
