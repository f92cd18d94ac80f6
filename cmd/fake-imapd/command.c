/*
 * IMAP command framing and tokens for superimap-fake-imapd (see command.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/command.h"

#include <string.h>

#include "core/err.h"

/* When the line in[pos..end) (CR removed) ends with a literal announcement
 * "{n}" or "{n+}", returns 1 with *n and *sync; else 0. -1 for a count too
 * large to be real. */
static int literal_at_end(const char *in, size_t pos, size_t end, size_t *n, int *sync)
{
    if (end == pos || in[end - 1] != '}')
        return 0;
    size_t i = end - 1;
    *sync = 1;
    if (i > pos && in[i - 1] == '+') {
        *sync = 0;
        i--;
    }
    size_t digits_end = i;
    while (i > pos && in[i - 1] >= '0' && in[i - 1] <= '9')
        i--;
    if (i == digits_end || i == pos || in[i - 1] != '{')
        return 0;
    if (digits_end - i > 10)
        return -1;
    size_t v = 0;
    for (size_t k = i; k < digits_end; k++)
        v = v * 10 + (size_t)(in[k] - '0');
    *n = v;
    return 1;
}

int command_frame(struct command_reader *r, const char *in, size_t len, size_t *frame_len,
                  int *need_cont)
{
    *need_cont = 0;
    size_t pos = r->line_start;
    for (;;) {
        const char *nl = pos < len ? memchr(in + pos, '\n', len - pos) : NULL;
        if (nl == NULL) {
            if (len - pos > COMMAND_MAX_LINE || len > COMMAND_MAX_FRAME)
                return -SIMAP_ETOOBIG;
            r->line_start = pos;
            return COMMAND_AGAIN;
        }
        size_t eol = (size_t)(nl - in);
        if (eol - pos > COMMAND_MAX_LINE)
            return -SIMAP_ETOOBIG;
        size_t end = eol > pos && in[eol - 1] == '\r' ? eol - 1 : eol;
        size_t lit = 0;
        int sync = 0;
        int has = literal_at_end(in, pos, end, &lit, &sync);
        if (has < 0 || (has > 0 && lit > COMMAND_MAX_LITERAL))
            return -SIMAP_ETOOBIG;
        if (has == 0) {
            *frame_len = eol + 1;
            r->line_start = 0;
            r->cont_sent = 0;
            return 0;
        }
        size_t need = eol + 1 + lit;
        if (need > COMMAND_MAX_FRAME)
            return -SIMAP_ETOOBIG;
        if (len < need) {
            if (sync && r->cont_sent != eol + 1) {
                r->cont_sent = eol + 1;
                *need_cont = 1;
            }
            r->line_start = pos;
            return COMMAND_AGAIN;
        }
        pos = need; /* the command goes on after the literal's bytes */
    }
}

int command_tokenize(char *f, size_t len, struct command *cmd)
{
    cmd->ntok = 0;
    size_t end = len;
    if (end > 0 && f[end - 1] == '\n')
        end--;
    if (end > 0 && f[end - 1] == '\r')
        end--;
    size_t i = 0;
    while (i < end) {
        char c = f[i];
        if (c == ' ') {
            i++;
            continue;
        }
        if (cmd->ntok == COMMAND_MAX_TOKENS)
            return -SIMAP_ETOOBIG;
        struct command_token *t = &cmd->tok[cmd->ntok];
        if (c == '(' || c == ')') {
            t->kind = c == '(' ? TOK_LPAREN : TOK_RPAREN;
            t->p = f + i;
            t->len = 1;
            i++;
        } else if (c == '"') {
            size_t w = i + 1, rd = i + 1;
            while (rd < end && f[rd] != '"') {
                if (f[rd] == '\\' && ++rd >= end)
                    return -SIMAP_EPROTO;
                if (f[rd] == '\r' || f[rd] == '\n')
                    return -SIMAP_EPROTO;
                f[w++] = f[rd++];
            }
            if (rd >= end)
                return -SIMAP_EPROTO;
            t->kind = TOK_STRING;
            t->p = f + i + 1;
            t->len = w - (i + 1);
            i = rd + 1;
        } else if (c == '{') {
            size_t k = i + 1, n = 0, digits = 0;
            while (k < end && f[k] >= '0' && f[k] <= '9' && digits < 10) {
                n = n * 10 + (size_t)(f[k] - '0');
                k++;
                digits++;
            }
            if (k < end && f[k] == '+')
                k++;
            if (digits == 0 || k >= end || f[k] != '}')
                return -SIMAP_EPROTO;
            k++;
            if (k < len && f[k] == '\r')
                k++;
            if (k >= len || f[k] != '\n')
                return -SIMAP_EPROTO;
            k++;
            if (k > end || n > end - k)
                return -SIMAP_EPROTO;
            t->kind = TOK_STRING;
            t->p = f + k;
            t->len = n;
            i = k + n;
        } else {
            size_t s = i;
            int depth = 0;
            while (i < end) {
                char d = f[i];
                if ((unsigned char)d < 0x20 || d == 0x7f)
                    return -SIMAP_EPROTO;
                if (d == '[')
                    depth++;
                else if (d == ']' && depth > 0)
                    depth--;
                else if (depth == 0 && (d == ' ' || d == '(' || d == ')' || d == '"'))
                    break;
                i++;
            }
            t->kind = TOK_ATOM;
            t->p = f + s;
            t->len = i - s;
        }
        cmd->ntok++;
    }
    return 0;
}

int command_is(const struct command_token *t, const char *word)
{
    size_t n = strlen(word);
    if (t->kind != TOK_ATOM || t->len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char a = t->p[i], b = word[i];
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (b >= 'a' && b <= 'z')
            b = (char)(b - 'a' + 'A');
        if (a != b)
            return 0;
    }
    return 1;
}

int command_copy(const struct command_token *t, char *out, size_t cap)
{
    if (cap == 0)
        return -SIMAP_ETOOBIG;
    out[0] = '\0';
    if (t->len >= cap)
        return -SIMAP_ETOOBIG;
    if (memchr(t->p, '\0', t->len) != NULL)
        return -SIMAP_EINVAL;
    memcpy(out, t->p, t->len);
    out[t->len] = '\0';
    return 0;
}
