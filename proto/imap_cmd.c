/*
 * proto/imap_cmd: IMAP command builder (RFC 3501 section 6, RFC 2177,
 * RFC 4616, RFC 4959, RFC 5161, RFC 5465, RFC 6154, RFC 7162, RFC 7888,
 * XOAUTH2, Gmail's X-GM-EXT-1).
 *
 * Commands with credentials are built in a scratch buffer that is wiped
 * (OPENSSL_cleanse) before it is freed, then appended to out in one piece,
 * so out gets all of a command or nothing.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/imap_cmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/err.h"

void imap_tag_next(struct imap_tagger *t, char tag[IMAP_TAG_SIZE])
{
    t->last++;
    if (t->last == 0)
        t->last = 1;
    snprintf(tag, IMAP_TAG_SIZE, "A%04" PRIu32, t->last);
}

/* A tag we send: 1 to IMAP_TAG_SIZE - 1 letters, digits or ".". */
static int valid_tag(const char *tag)
{
    if (tag == NULL)
        return 0;
    size_t n = strlen(tag);
    if (n == 0 || n >= IMAP_TAG_SIZE)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = tag[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.'))
            return 0;
    }
    return 1;
}

/* ---- Scratch buffer ---- */

static void scratch_init(struct buf *tmp, const struct buf *out)
{
    buf_init(tmp, out->max);
}

/* Appends tmp to out if rc is 0, then wipes and frees tmp. Returns rc or
 * the append's error; on failure no stop is left in sync. */
static int scratch_commit(struct buf *out, struct buf *tmp, struct imap_cmd_sync *sync, int rc)
{
    if (rc == 0)
        rc = buf_append(out, tmp->data != NULL ? tmp->data : "", tmp->len);
    if (tmp->data != NULL)
        OPENSSL_cleanse(tmp->data, tmp->cap);
    buf_free(tmp);
    if (rc < 0 && sync != NULL)
        sync->n = 0;
    return rc;
}

/* ---- Strings ---- */

/* Quoted strings carry 7-bit text without CR, LF and NUL; the rest needs a
 * literal. */
static int needs_literal(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x80 || ch == '\r' || ch == '\n' || ch == '\0')
            return 1;
    }
    return 0;
}

/* Appends s as a quoted string or a literal to b, which holds the command
 * from its first byte, so stops are offsets in b. */
static int put_string(struct buf *b, struct imap_cmd_sync *sync, const char *s, size_t n,
                      unsigned flags)
{
    int rc;
    if (!needs_literal(s, n)) {
        rc = buf_append(b, "\"", 1);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (s[i] == '"' || s[i] == '\\')
                rc = buf_append(b, "\\", 1);
            if (rc == 0)
                rc = buf_append(b, &s[i], 1);
        }
        return rc == 0 ? buf_append(b, "\"", 1) : rc;
    }
    int nonsync = (flags & IMAP_CMD_LITERAL_PLUS) ||
                  ((flags & IMAP_CMD_LITERAL_MINUS) && n <= IMAP_LITERAL_MINUS_MAX);
    rc = buf_printf(b, "{%zu%s}\r\n", n, nonsync ? "+" : "");
    if (rc < 0)
        return rc;
    if (!nonsync) {
        if (sync == NULL || sync->n >= IMAP_CMD_MAX_SYNC)
            return -SIMAP_EINVAL;
        sync->at[sync->n++] = b->len;
    }
    return buf_append(b, s, n);
}

/* ---- Simple commands ---- */

static int simple(struct buf *out, const char *tag, const char *verb)
{
    if (out == NULL || !valid_tag(tag))
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s %s\r\n", tag, verb); /* all or nothing */
}

int imap_cmd_capability(struct buf *out, const char *tag)
{
    return simple(out, tag, "CAPABILITY");
}

int imap_cmd_starttls(struct buf *out, const char *tag)
{
    return simple(out, tag, "STARTTLS");
}

int imap_cmd_noop(struct buf *out, const char *tag)
{
    return simple(out, tag, "NOOP");
}

int imap_cmd_logout(struct buf *out, const char *tag)
{
    return simple(out, tag, "LOGOUT");
}

int imap_cmd_idle(struct buf *out, const char *tag)
{
    return simple(out, tag, "IDLE");
}

int imap_cmd_done(struct buf *out)
{
    return out != NULL ? buf_puts(out, "DONE\r\n") : -SIMAP_EINVAL;
}

int imap_cmd_sasl_empty(struct buf *out)
{
    return out != NULL ? buf_puts(out, "\r\n") : -SIMAP_EINVAL;
}

int imap_cmd_sasl_cancel(struct buf *out)
{
    return out != NULL ? buf_puts(out, "*\r\n") : -SIMAP_EINVAL;
}

int imap_cmd_uid_fetch_envelopes(struct buf *out, const char *tag, uint32_t first)
{
    return imap_cmd_uid_fetch_envelopes_ext(out, tag, first, 0, 0);
}

int imap_cmd_uid_fetch_envelopes_ext(struct buf *out, const char *tag, uint32_t first,
                                     unsigned items, uint64_t changedsince)
{
    if (out == NULL || !valid_tag(tag) || first == 0 || (items & ~IMAP_CMD_FETCH_GMAIL) != 0 ||
        changedsince > INT64_MAX)
        return -SIMAP_EINVAL;
    char since[48] = "";
    if (changedsince > 0)
        snprintf(since, sizeof since, " (CHANGEDSINCE %" PRIu64 ")", changedsince);
    return buf_printf(
        out, "%s UID FETCH %" PRIu32 ":* (UID RFC822.SIZE ENVELOPE%s)%s\r\n", tag, first,
        (items & IMAP_CMD_FETCH_GMAIL) ? " X-GM-MSGID X-GM-THRID X-GM-LABELS" : "", since);
}

int imap_cmd_list_all(struct buf *out, const char *tag, int special_use)
{
    if (out == NULL || !valid_tag(tag))
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s LIST \"\" \"*\"%s\r\n", tag,
                      special_use ? " RETURN (SPECIAL-USE)" : "");
}

/* A capability name ENABLE may carry (RFC 5161 capability = atom). */
static int is_capability_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '=' || ch == '+' || ch == '-' || ch == '.' || ch == '_';
}

int imap_cmd_enable(struct buf *out, const char *tag, const char *what)
{
    if (out == NULL || !valid_tag(tag) || what == NULL || what[0] == '\0')
        return -SIMAP_EINVAL;
    for (size_t i = 0; what[i] != '\0'; i++) {
        int space_ok = what[i] == ' ' && i > 0 && what[i - 1] != ' ' && what[i + 1] != '\0';
        if (!is_capability_char(what[i]) && !space_ok)
            return -SIMAP_EINVAL;
    }
    return buf_printf(out, "%s ENABLE %s\r\n", tag, what);
}

int imap_cmd_uid_fetch_last(struct buf *out, const char *tag)
{
    if (out == NULL || !valid_tag(tag))
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s UID FETCH * (UID)\r\n", tag);
}

int imap_cmd_uid_fetch_body(struct buf *out, const char *tag, uint32_t uid)
{
    if (out == NULL || !valid_tag(tag) || uid == 0)
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s UID FETCH %" PRIu32 " BODY.PEEK[]\r\n", tag, uid);
}

int imap_cmd_uid_fetch_body_part(struct buf *out, const char *tag, uint32_t uid, uint64_t offset,
                                 uint32_t length)
{
    if (out == NULL || !valid_tag(tag) || uid == 0 || length == 0 || offset > UINT32_MAX)
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s UID FETCH %" PRIu32 " BODY.PEEK[]<%" PRIu64 ".%" PRIu32 ">\r\n", tag,
                      uid, offset, length);
}

int imap_cmd_uid_store_deleted(struct buf *out, const char *tag, uint32_t uid)
{
    if (out == NULL || !valid_tag(tag) || uid == 0)
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s UID STORE %" PRIu32 " +FLAGS.SILENT (\\Deleted)\r\n", tag, uid);
}

int imap_cmd_uid_expunge(struct buf *out, const char *tag, uint32_t uid)
{
    if (out == NULL || !valid_tag(tag) || uid == 0)
        return -SIMAP_EINVAL;
    return buf_printf(out, "%s UID EXPUNGE %" PRIu32 "\r\n", tag, uid);
}

/* ---- Commands with strings ---- */

static int credential_ok(const char *s)
{
    return s != NULL && strlen(s) <= IMAP_CMD_MAX_CREDENTIAL;
}

int imap_cmd_login(struct buf *out, struct imap_cmd_sync *sync, const char *tag, const char *user,
                   const char *pass, unsigned flags)
{
    if (sync != NULL)
        sync->n = 0;
    if (out == NULL || !valid_tag(tag) || !credential_ok(user) || !credential_ok(pass))
        return -SIMAP_EINVAL;
    struct buf tmp;
    scratch_init(&tmp, out);
    int rc = buf_printf(&tmp, "%s LOGIN ", tag);
    if (rc == 0)
        rc = put_string(&tmp, sync, user, strlen(user), flags);
    if (rc == 0)
        rc = buf_append(&tmp, " ", 1);
    if (rc == 0)
        rc = put_string(&tmp, sync, pass, strlen(pass), flags);
    if (rc == 0)
        rc = buf_append(&tmp, "\r\n", 2);
    return scratch_commit(out, &tmp, sync, rc);
}

static int mailbox_cmd(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                       const char *verb, const char *mailbox, const char *tail, unsigned flags)
{
    if (sync != NULL)
        sync->n = 0;
    if (out == NULL || !valid_tag(tag) || mailbox == NULL)
        return -SIMAP_EINVAL;
    struct buf tmp;
    scratch_init(&tmp, out);
    int rc = buf_printf(&tmp, "%s %s ", tag, verb);
    if (rc == 0)
        rc = put_string(&tmp, sync, mailbox, strlen(mailbox), flags);
    if (rc == 0)
        rc = buf_puts(&tmp, tail);
    return scratch_commit(out, &tmp, sync, rc);
}

int imap_cmd_examine(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                     const char *mailbox, unsigned flags)
{
    return mailbox_cmd(out, sync, tag, "EXAMINE", mailbox, "\r\n", flags);
}

int imap_cmd_select(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                    const char *mailbox, unsigned flags)
{
    return mailbox_cmd(out, sync, tag, "SELECT", mailbox, "\r\n", flags);
}

int imap_cmd_select_condstore(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                              const char *mailbox, unsigned flags)
{
    return mailbox_cmd(out, sync, tag, "SELECT", mailbox, " (CONDSTORE)\r\n", flags);
}

/* EXAMINE with "(QRESYNC (uidvalidity modseq))". */
static int open_qresync(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                        const char *verb, const char *mailbox, unsigned flags, uint32_t uidvalidity,
                        uint64_t modseq)
{
    if (sync != NULL)
        sync->n = 0;
    if (uidvalidity == 0 || modseq == 0 || modseq > INT64_MAX)
        return -SIMAP_EINVAL;
    char tail[80];
    snprintf(tail, sizeof tail, " (QRESYNC (%" PRIu32 " %" PRIu64 "))\r\n", uidvalidity, modseq);
    return mailbox_cmd(out, sync, tag, verb, mailbox, tail, flags);
}

int imap_cmd_examine_qresync(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                             const char *mailbox, unsigned flags, uint32_t uidvalidity,
                             uint64_t modseq)
{
    return open_qresync(out, sync, tag, "EXAMINE", mailbox, flags, uidvalidity, modseq);
}

int imap_cmd_status(struct buf *out, const char *tag, const char *mailbox, int condstore)
{
    return mailbox_cmd(
        out, NULL, tag, "STATUS", mailbox,
        condstore ? " (UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n" : " (UIDNEXT UIDVALIDITY)\r\n", 0);
}

int imap_cmd_notify_set(struct buf *out, const char *tag, const char *const *others, size_t n)
{
    if (out == NULL || !valid_tag(tag) || (n > 0 && others == NULL))
        return -SIMAP_EINVAL;
    struct buf tmp;
    scratch_init(&tmp, out);
    int rc = buf_printf(&tmp, "%s NOTIFY SET (SELECTED (MessageNew MessageExpunge))", tag);
    if (rc == 0 && n > 0)
        rc = buf_puts(&tmp, " (MAILBOXES (");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (others[i] == NULL)
            rc = -SIMAP_EINVAL;
        if (rc == 0 && i > 0)
            rc = buf_append(&tmp, " ", 1);
        if (rc == 0)
            rc = put_string(&tmp, NULL, others[i], strlen(others[i]), 0);
    }
    if (rc == 0 && n > 0)
        rc = buf_puts(&tmp, ") (MessageNew MessageExpunge MailboxName))");
    if (rc == 0)
        rc = buf_append(&tmp, "\r\n", 2);
    return scratch_commit(out, &tmp, NULL, rc);
}

/* ---- SASL ---- */

/*
 * "<tag> AUTHENTICATE <mech>" with the base64 of raw (n bytes): on the same
 * line with SASL-IR, else on its own line after a stop.
 */
static int authenticate(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                        const char *mech, const unsigned char *raw, size_t n, int sasl_ir)
{
    if (!sasl_ir && sync == NULL)
        return -SIMAP_EINVAL;
    struct buf tmp;
    scratch_init(&tmp, out);
    int rc = buf_printf(&tmp, "%s AUTHENTICATE %s%s", tag, mech, sasl_ir ? " " : "\r\n");
    if (rc == 0 && !sasl_ir) {
        sync->at[0] = tmp.len;
        sync->n = 1;
    }
    size_t b64len = 4 * ((n + 2) / 3);
    char *dst = rc == 0 ? buf_reserve(&tmp, b64len) : NULL;
    if (rc == 0 && dst == NULL)
        rc = -SIMAP_ETOOBIG;
    if (rc == 0) {
        /* n is at most 2 * IMAP_CMD_MAX_CREDENTIAL + 32: fits an int */
        int w = EVP_EncodeBlock((unsigned char *)dst, raw, (int)n);
        buf_commit(&tmp, (size_t)w);
        rc = buf_append(&tmp, "\r\n", 2);
    }
    return scratch_commit(out, &tmp, sync, rc);
}

/* Builds raw from the pieces (lengths given), authenticates, wipes raw. */
static int authenticate_pieces(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                               const char *mech, const char *const *pieces, const size_t *lens,
                               size_t npieces, int sasl_ir)
{
    size_t n = 0;
    for (size_t i = 0; i < npieces; i++)
        n += lens[i];
    unsigned char *raw = xmalloc(n + 1);
    size_t off = 0;
    for (size_t i = 0; i < npieces; i++) {
        memcpy(raw + off, pieces[i], lens[i]);
        off += lens[i];
    }
    int rc = authenticate(out, sync, tag, mech, raw, n, sasl_ir);
    OPENSSL_cleanse(raw, n + 1);
    xfree(raw);
    return rc;
}

int imap_cmd_authenticate_plain(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                                const char *user, const char *pass, int sasl_ir)
{
    if (sync != NULL)
        sync->n = 0;
    if (out == NULL || !valid_tag(tag) || !credential_ok(user) || !credential_ok(pass))
        return -SIMAP_EINVAL;
    /* RFC 4616: [authzid] NUL authcid NUL passwd, with no authzid */
    const char *pieces[] = {"", user, "", pass};
    size_t lens[] = {1, strlen(user), 1, strlen(pass)};
    return authenticate_pieces(out, sync, tag, "PLAIN", pieces, lens, 4, sasl_ir);
}

/* XOAUTH2 fields are separated by \x01; CR and LF make no sense in them. */
static int xoauth2_field_ok(const char *s)
{
    return credential_ok(s) && strpbrk(s, "\x01\r\n") == NULL;
}

int imap_cmd_authenticate_xoauth2(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                                  const char *user, const char *token, int sasl_ir)
{
    if (sync != NULL)
        sync->n = 0;
    if (out == NULL || !valid_tag(tag) || !xoauth2_field_ok(user) || !xoauth2_field_ok(token))
        return -SIMAP_EINVAL;
    const char *pieces[] = {"user=", user,
                            "\x01"
                            "auth=Bearer ",
                            token, "\x01\x01"};
    size_t lens[] = {5, strlen(user), 13, strlen(token), 2};
    return authenticate_pieces(out, sync, tag, "XOAUTH2", pieces, lens, 5, sasl_ir);
}

int imap_cmd_authenticate_oauthbearer(struct buf *out, struct imap_cmd_sync *sync, const char *tag,
                                      const char *user, const char *token, int sasl_ir)
{
    if (sync != NULL)
        sync->n = 0;
    if (out == NULL || !valid_tag(tag) || !xoauth2_field_ok(user) || !xoauth2_field_ok(token))
        return -SIMAP_EINVAL;
    /* RFC 5801 saslname: ',' and '=' are escaped. */
    size_t ulen = strlen(user);
    char *esc = xmalloc(3 * ulen + 1);
    size_t e = 0;
    for (size_t i = 0; i < ulen; i++) {
        if (user[i] == ',' || user[i] == '=') {
            memcpy(esc + e, user[i] == ',' ? "=2C" : "=3D", 3);
            e += 3;
        } else {
            esc[e++] = user[i];
        }
    }
    const char *pieces[] = {"n,a=", esc,
                            ",\x01"
                            "auth=Bearer ",
                            token, "\x01\x01"};
    size_t lens[] = {4, e, 14, strlen(token), 2};
    int rc = authenticate_pieces(out, sync, tag, "OAUTHBEARER", pieces, lens, 5, sasl_ir);
    OPENSSL_cleanse(esc, 3 * ulen + 1);
    xfree(esc);
    return rc;
}

int imap_cmd_sasl_oauthbearer_abort(struct buf *out)
{
    return out == NULL ? -SIMAP_EINVAL : buf_append(out, "AQ==\r\n", 6);
}
