/*
 * ENVELOPE from a message header (RFC 3501 section 7.4.2 over RFC 5322
 * section 3.6), for superimap-fake-imapd. Lenient the way a server must be:
 * unfolded header values are passed on raw (RFC 2047 words undecoded),
 * address lists are split at top-level commas outside quotes, angle brackets
 * and comments, and groups ("team: a@b, c@d;") become the start and end
 * markers RFC 3501 describes.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/rfc822.h"

#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/err.h"

/* ---- Header fields ---- */

static int is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

size_t rfc822_header_len(const char *msg, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (msg[i] != '\n')
            continue;
        if (i + 1 < n && msg[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && msg[i + 1] == '\r' && msg[i + 2] == '\n')
            return i + 3;
    }
    return n;
}

static int name_equal(const char *a, size_t alen, const char *b)
{
    if (strlen(b) != alen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* Returns the first field named name in the header h[0..hlen), unfolded and
 * trimmed, as a new string of *vlen bytes (xfree() it), or NULL when absent. */
static char *field(const char *h, size_t hlen, const char *name, size_t *vlen)
{
    size_t i = 0;
    while (i < hlen) {
        size_t eol = i;
        while (eol < hlen && h[eol] != '\n')
            eol++;
        size_t colon = i;
        while (colon < eol && h[colon] != ':')
            colon++;
        size_t nend = colon;
        while (nend > i && is_wsp(h[nend - 1]))
            nend--;
        if (colon < eol && !is_wsp(h[i]) && name_equal(h + i, nend - i, name)) {
            /* The value runs on over continuation lines (starting with WSP). */
            size_t end = eol;
            while (end + 1 < hlen && is_wsp(h[end + 1])) {
                end++;
                while (end < hlen && h[end] != '\n')
                    end++;
            }
            if (end > hlen)
                end = hlen;
            char *v = xmalloc(end - colon + 1);
            size_t n = 0;
            for (size_t k = colon + 1; k < end; k++) {
                if (h[k] == '\n' || (h[k] == '\r' && k + 1 < hlen && h[k + 1] == '\n'))
                    continue;
                v[n++] = h[k];
            }
            size_t start = 0;
            while (start < n && is_wsp(v[start]))
                start++;
            while (n > start && (is_wsp(v[n - 1]) || v[n - 1] == '\r'))
                n--;
            memmove(v, v + start, n - start);
            n -= start;
            v[n] = '\0';
            *vlen = n;
            return v;
        }
        i = eol + 1;
    }
    return NULL;
}

/* ---- IMAP strings ---- */

int rfc822_put_string(struct buf *out, const char *s, size_t n)
{
    if (s == NULL)
        return buf_puts(out, "NIL");
    int quoted = 1;
    for (size_t i = 0; i < n && quoted; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            quoted = 0;
    }
    int rc;
    if (quoted) {
        if ((rc = buf_puts(out, "\"")) < 0 || (rc = buf_append(out, s, n)) < 0)
            return rc;
        return buf_puts(out, "\"");
    }
    if ((rc = buf_printf(out, "{%zu}\r\n", n)) < 0)
        return rc;
    return buf_append(out, s, n);
}

int rfc822_put_date_time(struct buf *out, int64_t ms)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    return buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
                      months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- Addresses ---- */

/* A slice of the field value. */
struct span {
    const char *p;
    size_t n;
};

static struct span trim(struct span s)
{
    while (s.n > 0 && (is_wsp(s.p[0]) || s.p[0] == '\r' || s.p[0] == '\n')) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && (is_wsp(s.p[s.n - 1]) || s.p[s.n - 1] == '\r' || s.p[s.n - 1] == '\n'))
        s.n--;
    return s;
}

/* Copies s into out (s.n + 1 bytes) without comments, without the quotes of
 * quoted strings and with their backslash escapes resolved; when comment is
 * not NULL the text of the first comment is copied there (s.n + 1 bytes).
 * Returns the length written to out. */
static size_t clean(struct span s, char *out, char *comment)
{
    size_t n = 0, cn = 0;
    int quoted = 0, depth = 0, comments = 0;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (quoted) {
            if (c == '\\' && i + 1 < s.n)
                out[n++] = s.p[++i];
            else if (c == '"')
                quoted = 0;
            else
                out[n++] = c;
        } else if (depth > 0) {
            if (c == '\\' && i + 1 < s.n) {
                i++;
                if (comment != NULL && comments == 1)
                    comment[cn++] = s.p[i];
                continue;
            }
            if (c == '(')
                depth++;
            else if (c == ')' && --depth == 0)
                continue;
            if (comment != NULL && comments == 1)
                comment[cn++] = c;
        } else if (c == '"') {
            quoted = 1;
        } else if (c == '(') {
            depth = 1;
            comments++;
        } else {
            out[n++] = c;
        }
    }
    out[n] = '\0';
    if (comment != NULL)
        comment[cn] = '\0';
    return n;
}

/* Appends text (trimmed) as an IMAP string, or NIL when empty. */
static int put_text_or_nil(struct buf *out, const char *text, size_t n)
{
    struct span s = trim((struct span){text, n});
    return rfc822_put_string(out, s.n > 0 ? s.p : NULL, s.n);
}

/* Appends one address entry for the mailbox text s: "Name <a@b>",
 * "a@b (Name)", "<a@b>" or a bare "a@b". Empty text adds nothing. */
static int put_mailbox(struct buf *out, struct span s)
{
    s = trim(s);
    if (s.n == 0)
        return 0;
    struct span phrase = {s.p, 0}, spec = s;
    int quoted = 0, depth = 0;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (quoted) {
            if (c == '\\')
                i++;
            else if (c == '"')
                quoted = 0;
        } else if (depth > 0) {
            if (c == '\\')
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
        } else if (c == '"') {
            quoted = 1;
        } else if (c == '(') {
            depth = 1;
        } else if (c == '<') {
            phrase.n = i;
            size_t close = i + 1;
            while (close < s.n && s.p[close] != '>')
                close++;
            spec = (struct span){s.p + i + 1, close - i - 1};
            break;
        }
    }

    char *name = xmalloc(s.n + 1), *comment = xmalloc(s.n + 1), *addr = xmalloc(s.n + 1);
    size_t namelen;
    if (phrase.n > 0 || spec.p != s.p) {
        namelen = clean(phrase, name, NULL);
    } else {
        /* A bare address: a comment after it is the display name. */
        clean(s, name, comment);
        namelen = strlen(comment);
        memcpy(name, comment, namelen + 1);
    }
    struct span a = trim((struct span){addr, clean(trim(spec), addr, NULL)});
    size_t addrlen = a.n; /* comments removed can leave spaces at either end */
    memmove(addr, a.p, addrlen);
    addr[addrlen] = '\0';

    /* A source route, "@a,@b:user@host", goes to adl. */
    const char *adl = NULL;
    size_t adllen = 0;
    char *mbox = addr;
    if (addrlen > 0 && addr[0] == '@') {
        char *colon = strchr(addr, ':');
        if (colon != NULL) {
            adl = addr;
            adllen = (size_t)(colon - addr);
            mbox = colon + 1;
        }
    }
    char *at = strrchr(mbox, '@');
    const char *host = "MISSING_DOMAIN";
    size_t hostlen = strlen(host), mboxlen;
    if (at != NULL) {
        mboxlen = (size_t)(at - mbox);
        host = at + 1;
        hostlen = strlen(host);
    } else {
        mboxlen = strlen(mbox);
    }
    if (addrlen == 0) { /* "<>", the null reverse path */
        host = "";
        hostlen = 0;
    }

    int rc;
    if ((rc = buf_puts(out, "(")) == 0 && (rc = put_text_or_nil(out, name, namelen)) == 0 &&
        (rc = buf_puts(out, " ")) == 0 && (rc = rfc822_put_string(out, adl, adllen)) == 0 &&
        (rc = buf_puts(out, " ")) == 0 && (rc = rfc822_put_string(out, mbox, mboxlen)) == 0 &&
        (rc = buf_puts(out, " ")) == 0 && (rc = rfc822_put_string(out, host, hostlen)) == 0)
        rc = buf_puts(out, ")");
    xfree(name);
    xfree(comment);
    xfree(addr);
    return rc;
}

/* Appends the address list of value v[0..n) (NULL: absent): NIL when it
 * holds no address, else "(" entries ")". */
static int put_address_list(struct buf *out, const char *v, size_t n)
{
    if (v == NULL)
        return buf_puts(out, "NIL");
    size_t mark = out->len;
    int rc = buf_puts(out, "(");
    int quoted = 0, depth = 0, angle = 0, in_group = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && rc == 0; i++) {
        int at_end = i == n; /* the end of the value ends every construct */
        char c = at_end ? ',' : v[i];
        if (!at_end && quoted) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '"')
                quoted = 0;
        } else if (!at_end && depth > 0) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
        } else if (c == '"') {
            quoted = 1;
        } else if (c == '(') {
            depth = 1;
        } else if (c == '<') {
            angle = 1;
        } else if (c == '>') {
            angle = 0;
        } else if (angle && !at_end) {
            continue;
        } else if (c == ':' && !in_group) {
            char *name = xmalloc(i - start + 1);
            size_t len = clean((struct span){v + start, i - start}, name, NULL);
            rc = buf_puts(out, "(NIL NIL ");
            if (rc == 0)
                rc = put_text_or_nil(out, name, len);
            if (rc == 0)
                rc = buf_puts(out, " NIL)");
            xfree(name);
            in_group = 1;
            start = i + 1;
        } else if (c == ',' || c == ';') {
            rc = put_mailbox(out, (struct span){v + start, i - start});
            if (rc == 0 && (c == ';' || at_end) && in_group) {
                rc = buf_puts(out, "(NIL NIL NIL NIL)");
                in_group = 0;
            }
            start = i + 1;
        }
    }
    if (rc < 0)
        return rc;
    if (out->len == mark + 1) { /* nothing but "(": no address at all */
        out->len = mark;
        out->data[mark] = '\0';
        return buf_puts(out, "NIL");
    }
    return buf_puts(out, ")");
}

/* ---- ENVELOPE ---- */

int rfc822_envelope(const char *msg, size_t n, struct buf *out)
{
    size_t hlen = rfc822_header_len(msg, n);
    static const char *const names[] = {"Date", "Subject", "From", "Sender",      "Reply-To",
                                        "To",   "Cc",      "Bcc",  "In-Reply-To", "Message-ID"};
    enum { DATE, SUBJECT, FROM, SENDER, REPLY_TO, TO, CC, BCC, IN_REPLY_TO, MESSAGE_ID, NFIELDS };
    char *v[NFIELDS];
    size_t len[NFIELDS];
    for (int i = 0; i < NFIELDS; i++) {
        len[i] = 0;
        v[i] = field(msg, hlen, names[i], &len[i]);
    }
    /* RFC 3501: Sender and Reply-To absent or empty are the From value. */
    for (int i = SENDER; i <= REPLY_TO; i++) {
        if ((v[i] == NULL || len[i] == 0) && v[FROM] != NULL) {
            xfree(v[i]);
            v[i] = xstrndup(v[FROM], len[FROM]);
            len[i] = len[FROM];
        }
    }
    int rc = buf_puts(out, "(");
    for (int i = 0; i < NFIELDS && rc == 0; i++) {
        if (i > 0)
            rc = buf_puts(out, " ");
        if (rc < 0)
            break;
        if (i >= FROM && i <= BCC)
            rc = put_address_list(out, v[i], len[i]);
        else
            rc = rfc822_put_string(out, v[i], len[i]);
    }
    if (rc == 0)
        rc = buf_puts(out, ")");
    for (int i = 0; i < NFIELDS; i++)
        xfree(v[i]);
    return rc;
}
