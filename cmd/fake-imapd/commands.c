/*
 * The IMAP commands of superimap-fake-imapd (see session.h and server.h for
 * the list): parsing their arguments, answering, and FETCH answered a few
 * messages at a time. RFC 3501, RFC 2177 (IDLE), RFC 4616 (PLAIN), RFC 4959
 * (SASL-IR) and Google's XOAUTH2.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/fake-imapd/rfc822.h"
#include "cmd/fake-imapd/session.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"

#define FETCH_LOW_WATER (256u << 10) /* render more FETCH answers below this */

/* FETCH items */
#define FI_UID         (1u << 0)
#define FI_FLAGS       (1u << 1)
#define FI_INTERNAL    (1u << 2)
#define FI_SIZE        (1u << 3)
#define FI_ENVELOPE    (1u << 4)
#define FI_BODY        (1u << 5)  /* BODY[] */
#define FI_BODY_PEEK   (1u << 6)  /* BODY.PEEK[] */
#define FI_HEADER      (1u << 7)  /* BODY[HEADER] */
#define FI_HEADER_PEEK (1u << 8)  /* BODY.PEEK[HEADER] */
#define FI_TEXT        (1u << 9)  /* BODY[TEXT] */
#define FI_TEXT_PEEK   (1u << 10) /* BODY.PEEK[TEXT] */
#define FI_RFC822      (1u << 11) /* RFC822 (sets \Seen) */
#define FI_RFC822_HDR  (1u << 12) /* RFC822.HEADER */
#define FI_RFC822_TEXT (1u << 13) /* RFC822.TEXT (sets \Seen) */
#define FI_SETS_SEEN   (FI_BODY | FI_HEADER | FI_TEXT | FI_RFC822 | FI_RFC822_TEXT)
#define FI_ANY_BODY    (FI_SETS_SEEN | FI_BODY_PEEK | FI_HEADER_PEEK | FI_TEXT_PEEK | FI_RFC822_HDR)

/* A FETCH being answered a few messages at a time, so a mailbox of any
 * size never sits whole in the write buffer. */
struct fetch_job {
    char tag[TAG_MAX];
    unsigned items; /* FI_* */
    size_t *ranges; /* pairs [lo, hi) of message indexes, sorted, disjoint */
    size_t nranges; /* pairs */
    size_t cur;     /* current pair */
    size_t next;    /* next index to send */
    int has_part;   /* BODY[]<offset.length>: part_off, part_len of BODY[] */
    uint32_t part_off, part_len;
};

void commands_fetch_free(void *fetch)
{
    struct fetch_job *f = fetch;
    if (f == NULL)
        return;
    xfree(f->ranges);
    xfree(f);
}

/* ---- Simple commands and login ---- */

struct handler;
typedef void (*handler_fn)(struct session *s, const char *tag, struct command *c,
                           enum fault_kind fault);

static void tagged_bad(struct session *s, const char *tag, const char *text)
{
    session_reply(s, "%s BAD %s\r\n", tag, text);
}

/* An astring argument (atom, quoted or literal) copied into out. */
static int arg_string(const struct command_token *t, char *out, size_t cap)
{
    if (t->kind != TOK_ATOM && t->kind != TOK_STRING)
        return -SIMAP_EINVAL;
    return command_copy(t, out, cap);
}

static int is_inbox(const struct command_token *t)
{
    if (t->len != 5 || (t->kind != TOK_ATOM && t->kind != TOK_STRING))
        return 0;
    for (int i = 0; i < 5; i++)
        if ((t->p[i] | 0x20) != "inbox"[i])
            return 0;
    return 1;
}

static void cmd_capability(struct session *s, const char *tag, struct command *c,
                           enum fault_kind fault)
{
    (void)c;
    (void)fault;
    session_reply(s, "* CAPABILITY ");
    session_put_capability(s);
    session_reply(s, "\r\n%s OK CAPABILITY completed\r\n", tag);
}

static void cmd_noop(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    if (command_is(&c->tok[1], "NOOP"))
        s->env->counters->noops++;
    session_reply(s, "%s OK %.*s completed\r\n", tag, (int)c->tok[1].len, c->tok[1].p);
}

static void cmd_logout(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)c;
    (void)fault;
    session_reply(s, "* BYE superimap-fake-imapd logging out\r\n%s OK LOGOUT completed\r\n", tag);
    s->close_after_flush = 1;
    s->discard_input = 1;
}

static void cmd_id(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)c;
    (void)fault;
    session_reply(s, "* ID (\"name\" \"superimap-fake-imapd\")\r\n%s OK ID completed\r\n", tag);
}

static void cmd_starttls(struct session *s, const char *tag, struct command *c,
                         enum fault_kind fault)
{
    (void)c;
    (void)fault;
    if (s->env->ssl_ctx == NULL || s->is_tls) {
        tagged_bad(s, tag, "STARTTLS not available");
        return;
    }
    session_reply(s, "%s OK Begin TLS negotiation now\r\n", tag);
    s->starttls_pending = 1;
    s->discard_input = 1; /* RFC 3501 6.2.1: nothing sent before the handshake counts */
}

/* Ends LOGIN or AUTHENTICATE: mb is the account the credentials name, or
 * NULL when they are wrong. */
static void login_finish(struct session *s, const char *tag, struct mailbox *mb,
                         enum fault_kind fault)
{
    const struct session_env *env = s->env;
    if (mb == NULL || fault == FAULT_AUTHFAIL) {
        env->counters->login_failures++;
        session_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
        return;
    }
    if (fault == FAULT_LIMIT ||
        (env->max_sessions_per_user > 0 && mb->sessions_now >= env->max_sessions_per_user)) {
        session_reply(s, "%s NO [LIMIT] Too many simultaneous connections.\r\n", tag);
        return;
    }
    session_attach(s, mb);
    s->state = ST_AUTH;
    env->counters->logins++;
    log_debugc("imap", "logged in session=%lu user=%s sessions=%d", s->id, mb->user,
               mb->sessions_now);
    session_reply(s, "%s OK [CAPABILITY ", tag);
    session_put_capability(s);
    session_reply(s, "] Logged in\r\n");
}

static int tls_required(struct session *s, const char *tag)
{
    if (!s->env->require_tls || s->is_tls)
        return 0;
    session_reply(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS first.\r\n", tag);
    return 1;
}

static void cmd_login(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    char user[256], pass[1024];
    if (c->ntok != 4 || arg_string(&c->tok[2], user, sizeof user) < 0 ||
        arg_string(&c->tok[3], pass, sizeof pass) < 0) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (tls_required(s, tag))
        return;
    login_finish(s, tag, mbox_login(s->env->store, user, pass), fault);
}

/* Checks one SASL response (base64 text, "=" for empty). */
static void sasl_response(struct session *s, const char *tag, const char *b64, size_t len)
{
    enum fault_kind fault = (enum fault_kind)s->sasl_fault;
    unsigned char *raw = NULL;
    size_t n = 0;
    if (len == 1 && b64[0] == '=')
        len = 0;
    if (crypto_b64_decode(b64, len, &raw, &n) < 0) {
        tagged_bad(s, tag, "Invalid base64 data");
        return;
    }
    struct mailbox *mb = NULL;
    if (s->mech == MECH_PLAIN) {
        /* authzid NUL authcid NUL passwd (RFC 4616) */
        const char *authz = (const char *)raw;
        const char *nul1 = memchr(raw, '\0', n);
        const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - authz)) : NULL;
        if (nul2 == NULL) {
            xfree(raw);
            tagged_bad(s, tag, "Invalid PLAIN response");
            return;
        }
        const char *user = nul1 + 1;
        char pass[1024];
        size_t plen = n - (size_t)(nul2 + 1 - authz);
        if (plen < sizeof pass && (authz[0] == '\0' || strcmp(authz, user) == 0)) {
            memcpy(pass, nul2 + 1, plen);
            pass[plen] = '\0';
            if (strlen(pass) == plen)
                mb = mbox_login(s->env->store, user, pass);
        }
        xfree(raw);
        login_finish(s, tag, mb, fault);
        return;
    }
    /* XOAUTH2: "user=" U ^A "auth=Bearer " T ^A ^A; the token of U is "token-U", or
     * any token starting with env->xoauth2_prefix when that is set. */
    const char *text = (const char *)raw;
    if (n > 5 && strncmp(text, "user=", 5) == 0 && strlen(text) == n) {
        const char *u = text + 5;
        const char *sep = strchr(u, '\x01');
        if (sep != NULL && strncmp(sep + 1, "auth=Bearer ", 12) == 0) {
            char user[MBOX_USER_MAX + 1];
            size_t ulen = (size_t)(sep - u);
            const char *tok = sep + 13;
            const char *end = strchr(tok, '\x01');
            if (ulen < sizeof user && end != NULL && strcmp(end, "\x01\x01") == 0) {
                memcpy(user, u, ulen);
                user[ulen] = '\0';
                struct mailbox *cand = mbox_get(s->env->store, user, 0);
                const char *pre = s->env->xoauth2_prefix;
                size_t plen = strlen(pre);
                if (cand != NULL && (size_t)(end - tok) == ulen + 6 &&
                    strncmp(tok, "token-", 6) == 0 && strncmp(tok + 6, user, ulen) == 0)
                    mb = cand;
                else if (cand != NULL && plen > 0 && (size_t)(end - tok) > plen &&
                         strncmp(tok, pre, plen) == 0)
                    mb = cand;
            }
        }
    }
    xfree(raw);
    if (mb == NULL || fault == FAULT_AUTHFAIL) {
        /* Google's way: an error challenge, then NO once the client answers. */
        static const char err_json[] =
            "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"https://mail.google.com/\"}";
        char *b = crypto_b64_encode(err_json, sizeof err_json - 1);
        session_reply(s, "+ %s\r\n", b);
        xfree(b);
        s->pending_tag = xstrdup(tag);
        s->wait = WAIT_SASL_ERROR_ACK;
        return;
    }
    login_finish(s, tag, mb, fault);
}

static void cmd_authenticate(struct session *s, const char *tag, struct command *c,
                             enum fault_kind fault)
{
    if (c->ntok < 3 || c->ntok > 4 || c->tok[2].kind != TOK_ATOM ||
        (c->ntok == 4 && c->tok[3].kind != TOK_ATOM)) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (command_is(&c->tok[2], "PLAIN")) {
        s->mech = MECH_PLAIN;
    } else if (command_is(&c->tok[2], "XOAUTH2")) {
        s->mech = MECH_XOAUTH2;
    } else {
        session_reply(s, "%s NO Unsupported authentication mechanism\r\n", tag);
        return;
    }
    if (tls_required(s, tag))
        return;
    s->sasl_fault = (unsigned char)fault;
    if (c->ntok == 4) { /* SASL-IR */
        sasl_response(s, tag, c->tok[3].p, c->tok[3].len);
        return;
    }
    session_reply(s, "+ \r\n");
    s->pending_tag = xstrdup(tag);
    s->wait = WAIT_SASL;
}

/* The line after "+ " of AUTHENTICATE. */
static void sasl_line(struct session *s, const char *line, size_t len)
{
    char tag[TAG_MAX];
    snprintf(tag, sizeof tag, "%s", s->pending_tag);
    xfree(s->pending_tag);
    s->pending_tag = NULL;
    enum session_wait was = (enum session_wait)s->wait;
    s->wait = WAIT_COMMAND;
    if (len == 1 && line[0] == '*') {
        tagged_bad(s, tag, "Authentication canceled");
        return;
    }
    if (was == WAIT_SASL_ERROR_ACK) {
        s->env->counters->login_failures++;
        session_reply(s, "%s NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n", tag);
        return;
    }
    sasl_response(s, tag, line, len);
}

static void cmd_select(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    int examine = command_is(&c->tok[1], "EXAMINE");
    if (c->ntok != 3) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    struct mailbox *mb = s->mb;
    if (!is_inbox(&c->tok[2]) || fault == FAULT_NOINBOX) {
        s->state = ST_AUTH; /* a failed SELECT leaves no mailbox selected */
        session_reply(s, "%s NO [NONEXISTENT] Mailbox doesn't exist\r\n", tag);
        return;
    }
    if (fault == FAULT_UIDSHIFT) {
        mbox_renumber(mb, mb->uidvalidity + 1);
        log_info("uidvalidity changed by fault user=%s uidvalidity=%u", mb->user,
                 (unsigned)mb->uidvalidity);
        session_uidvalidity_changed(mb, s);
    }
    s->state = ST_SELECTED;
    s->is_readonly = (unsigned)examine;
    session_reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    if (examine)
        session_reply(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    else
        session_reply(s, "* OK [PERMANENTFLAGS (\\Seen)] Limited\r\n");
    session_reply(s, "* %zu EXISTS\r\n* %zu RECENT\r\n", mb->count, mb->recent);
    if (mb->unseen > 0) {
        for (size_t i = 0; i < mb->count; i++) {
            if (!(mb->msgs[i]->flags & MSG_SEEN)) {
                session_reply(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
                break;
            }
        }
    }
    session_reply(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
                  (unsigned)mb->uidvalidity, (unsigned)mb->uidnext);
    if (!examine)
        mbox_clear_recent(mb);
    session_reply(s, "%s OK [%s] %s completed\r\n", tag, examine ? "READ-ONLY" : "READ-WRITE",
                  examine ? "EXAMINE" : "SELECT");
}

static void cmd_status(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    struct mailbox *mb = s->mb;
    if (c->ntok < 5 || c->tok[3].kind != TOK_LPAREN || c->tok[c->ntok - 1].kind != TOK_RPAREN) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (!is_inbox(&c->tok[2])) {
        session_reply(s, "%s NO [NONEXISTENT] Mailbox doesn't exist\r\n", tag);
        return;
    }
    struct buf b;
    buf_init(&b, 1024);
    for (int i = 4; i < c->ntok - 1; i++) {
        const struct command_token *t = &c->tok[i];
        const char *sep = i > 4 ? " " : "";
        if (command_is(t, "MESSAGES"))
            buf_printf(&b, "%sMESSAGES %zu", sep, mb->count);
        else if (command_is(t, "RECENT"))
            buf_printf(&b, "%sRECENT %zu", sep, mb->recent);
        else if (command_is(t, "UIDNEXT"))
            buf_printf(&b, "%sUIDNEXT %u", sep, (unsigned)mb->uidnext);
        else if (command_is(t, "UIDVALIDITY"))
            buf_printf(&b, "%sUIDVALIDITY %u", sep, (unsigned)mb->uidvalidity);
        else if (command_is(t, "UNSEEN"))
            buf_printf(&b, "%sUNSEEN %zu", sep, mb->unseen);
        else {
            buf_free(&b);
            tagged_bad(s, tag, "Invalid status item");
            return;
        }
    }
    session_reply(s, "* STATUS INBOX (%s)\r\n%s OK STATUS completed\r\n", b.data ? b.data : "",
                  tag);
    buf_free(&b);
}

static void cmd_list(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    if (c->ntok != 4) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    const char *name = command_is(&c->tok[1], "LSUB") ? "LSUB" : "LIST";
    if (c->tok[3].len > 0)
        session_reply(s, "* %s (\\HasNoChildren) \"/\" INBOX\r\n", name);
    else /* an empty pattern asks for the hierarchy delimiter */
        session_reply(s, "* %s (\\Noselect) \"/\" \"\"\r\n", name);
    session_reply(s, "%s OK %s completed\r\n", tag, name);
}

static void cmd_idle(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)c;
    (void)fault;
    s->env->counters->idles++;
    if (s->env->no_idle) {
        tagged_bad(s, tag, "IDLE not supported");
        return;
    }
    session_reply(s, "+ idling\r\n");
    s->pending_tag = xstrdup(tag);
    s->wait = WAIT_IDLE_DONE;
}

static void cmd_close(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    s->state = ST_AUTH;
    session_reply(s, "%s OK %.*s completed\r\n", tag, (int)c->tok[1].len, c->tok[1].p);
}

/* ---- FETCH ---- */

static int parse_number(const char *p, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Turns a sequence set into sorted, merged [lo, hi) index pairs. Returns 0,
 * or -1 for bad syntax (or a sequence number past the end). */
static int parse_set(const struct mailbox *mb, const struct command_token *t, int by_uid,
                     struct fetch_job *f)
{
    if (t->kind != TOK_ATOM || t->len == 0)
        return -1;
    size_t cap = 8;
    f->ranges = xmalloc(cap * 2 * sizeof *f->ranges);
    f->nranges = 0;
    uint32_t star = by_uid ? (mb->count ? mb->msgs[mb->count - 1]->uid : 0) : (uint32_t)mb->count;
    const char *p = t->p, *end = t->p + t->len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        const char *colon = memchr(p, ':', (size_t)(item_end - p));
        uint32_t a, b;
        const char *a_end = colon ? colon : item_end;
        if (a_end - p == 1 && *p == '*')
            a = star;
        else if (parse_number(p, (size_t)(a_end - p), &a) < 0)
            return -1;
        b = a;
        if (colon != NULL) {
            if (item_end - colon == 2 && colon[1] == '*')
                b = star;
            else if (parse_number(colon + 1, (size_t)(item_end - colon - 1), &b) < 0)
                return -1;
        }
        if (a > b) {
            uint32_t tmp = a;
            a = b;
            b = tmp;
        }
        size_t lo, hi;
        if (by_uid) {
            lo = mbox_index_at_or_after(mb, a);
            hi = b == UINT32_MAX ? mb->count : mbox_index_at_or_after(mb, b + 1);
        } else {
            if (a == 0 || b > mb->count)
                return -1;
            lo = a - 1;
            hi = b;
        }
        if (lo < hi) {
            if (f->nranges == cap) {
                cap *= 2;
                f->ranges = xrealloc(f->ranges, cap * 2 * sizeof *f->ranges);
            }
            f->ranges[2 * f->nranges] = lo;
            f->ranges[2 * f->nranges + 1] = hi;
            f->nranges++;
        }
        p = comma ? comma + 1 : end;
        if (comma != NULL && p == end)
            return -1;
    }
    qsort(f->ranges, f->nranges, 2 * sizeof *f->ranges, cmp_range);
    size_t w = 0;
    for (size_t i = 0; i < f->nranges; i++) {
        if (w > 0 && f->ranges[i * 2] <= f->ranges[w * 2 - 1]) {
            if (f->ranges[i * 2 + 1] > f->ranges[w * 2 - 1])
                f->ranges[w * 2 - 1] = f->ranges[i * 2 + 1];
            continue;
        }
        f->ranges[w * 2] = f->ranges[i * 2];
        f->ranges[w * 2 + 1] = f->ranges[i * 2 + 1];
        w++;
    }
    f->nranges = w;
    return 0;
}

static unsigned fetch_item(const struct command_token *t)
{
    static const struct {
        const char *name;
        unsigned bits;
    } items[] = {
        {"UID", FI_UID},
        {"FLAGS", FI_FLAGS},
        {"INTERNALDATE", FI_INTERNAL},
        {"RFC822.SIZE", FI_SIZE},
        {"ENVELOPE", FI_ENVELOPE},
        {"BODY[]", FI_BODY},
        {"BODY.PEEK[]", FI_BODY_PEEK},
        {"BODY[HEADER]", FI_HEADER},
        {"BODY.PEEK[HEADER]", FI_HEADER_PEEK},
        {"BODY[TEXT]", FI_TEXT},
        {"BODY.PEEK[TEXT]", FI_TEXT_PEEK},
        {"RFC822", FI_RFC822},
        {"RFC822.HEADER", FI_RFC822_HDR},
        {"RFC822.TEXT", FI_RFC822_TEXT},
        {"ALL", FI_FLAGS | FI_INTERNAL | FI_SIZE | FI_ENVELOPE},
        {"FAST", FI_FLAGS | FI_INTERNAL | FI_SIZE},
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        if (command_is(t, items[i].name))
            return items[i].bits;
    return 0;
}

/* BODY[]<o.n> or BODY.PEEK[]<o.n> (RFC 3501 6.4.5), case-insensitive:
 * its FI_* bit with o and n in f, else 0. */
static unsigned partial_item(const struct command_token *t, struct fetch_job *f)
{
    static const struct {
        const char *prefix;
        unsigned bits;
    } forms[] = {{"BODY[]<", FI_BODY}, {"BODY.PEEK[]<", FI_BODY_PEEK}};
    if (t->kind != TOK_ATOM || t->len == 0 || t->p[t->len - 1] != '>')
        return 0;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        size_t n = strlen(forms[i].prefix);
        if (t->len <= n || strncasecmp(t->p, forms[i].prefix, n) != 0)
            continue;
        const char *p = t->p + n, *end = t->p + t->len - 1;
        const char *dot = memchr(p, '.', (size_t)(end - p));
        uint32_t off = 0, len = 0;
        if (dot == NULL ||
            (!(dot - p == 1 && *p == '0') && parse_number(p, (size_t)(dot - p), &off) < 0) ||
            parse_number(dot + 1, (size_t)(end - dot - 1), &len) < 0)
            return 0;
        f->has_part = 1;
        f->part_off = off;
        f->part_len = len;
        return forms[i].bits;
    }
    return 0;
}

static void put_flags(struct session *s, const struct message *m)
{
    const char *seen = (m->flags & MSG_SEEN) ? "\\Seen" : "";
    const char *recent = (m->flags & MSG_RECENT) ? "\\Recent" : "";
    session_reply(s, "FLAGS (%s%s%s)", seen, *seen && *recent ? " " : "", recent);
}

/* Appends one body section as a literal; returns the next separator. */
static const char *put_section(struct session *s, const char *sep, const char *name, const char *p,
                               size_t n)
{
    session_reply(s, "%s%s {%zu}\r\n", sep, name, n);
    session_reply_bytes(s, p, n);
    return " ";
}

/* Appends the FETCH answer for message index i. */
static void render_message(struct session *s, size_t i, const struct fetch_job *f)
{
    unsigned items = f->items;
    struct session_counters *counters = s->env->counters;
    struct mailbox *mb = s->mb;
    struct message *m = mb->msgs[i];
    int now_seen = 0;
    if (items & FI_ANY_BODY)
        counters->bodies++;
    if (items & FI_SETS_SEEN) {
        counters->nonpeek++;
        if (!s->is_readonly && mbox_set_flag(mb, i, MSG_SEEN)) {
            now_seen = 1;
            counters->seen_sets++;
            log_info("message marked seen user=%s uid=%u", mb->user, (unsigned)m->uid);
        }
    }
    session_reply(s, "* %zu FETCH (", i + 1);
    const char *sep = "";
    if (items & FI_UID) {
        session_reply(s, "UID %u", (unsigned)m->uid);
        sep = " ";
    }
    if ((items & FI_FLAGS) || now_seen) {
        session_reply(s, "%s", sep);
        put_flags(s, m);
        sep = " ";
    }
    if (items & FI_INTERNAL) {
        session_reply(s, "%sINTERNALDATE ", sep);
        sep = " ";
        if (rfc822_put_date_time(&s->out, m->internal_ms) < 0)
            session_close(s, "write buffer full");
    }
    if (items & FI_SIZE) {
        session_reply(s, "%sRFC822.SIZE %zu", sep, m->size);
        sep = " ";
    }
    if (items & FI_ENVELOPE) {
        session_reply(s, "%sENVELOPE ", sep);
        session_reply_bytes(s, m->envelope, m->envelope_len);
        sep = " ";
    }
    size_t body = m->size - m->header_len;
    if ((items & (FI_BODY | FI_BODY_PEEK)) && f->has_part) {
        size_t off = f->part_off < m->size ? f->part_off : m->size;
        size_t n = m->size - off < f->part_len ? m->size - off : f->part_len;
        char name[32];
        snprintf(name, sizeof name, "BODY[]<%u>", (unsigned)f->part_off);
        sep = put_section(s, sep, name, m->data + off, n);
    } else if (items & (FI_BODY | FI_BODY_PEEK)) {
        sep = put_section(s, sep, "BODY[]", m->data, m->size);
    }
    if (items & (FI_HEADER | FI_HEADER_PEEK))
        sep = put_section(s, sep, "BODY[HEADER]", m->data, m->header_len);
    if (items & (FI_TEXT | FI_TEXT_PEEK))
        sep = put_section(s, sep, "BODY[TEXT]", m->data + m->header_len, body);
    if (items & FI_RFC822)
        sep = put_section(s, sep, "RFC822", m->data, m->size);
    if (items & FI_RFC822_HDR)
        sep = put_section(s, sep, "RFC822.HEADER", m->data, m->header_len);
    if (items & FI_RFC822_TEXT)
        sep = put_section(s, sep, "RFC822.TEXT", m->data + m->header_len, body);
    session_reply(s, ")\r\n");
}

/* Renders FETCH answers while the write buffer is low; ends the job with
 * the tagged OK. Returns 1 when it added output. */
int commands_fetch_more(struct session *s)
{
    struct fetch_job *f = s->fetch;
    int progress = 0;
    while (f != NULL && !s->is_closing && session_out_pending(s) < FETCH_LOW_WATER) {
        if (f->cur == f->nranges) {
            session_reply(s, "%s OK Fetch completed\r\n", f->tag);
            commands_fetch_free(f);
            s->fetch = f = NULL;
            return 1;
        }
        if (f->next < f->ranges[2 * f->cur])
            f->next = f->ranges[2 * f->cur];
        render_message(s, f->next, f);
        progress = 1;
        if (++f->next >= f->ranges[2 * f->cur + 1])
            f->cur++;
    }
    return progress;
}

static void cmd_fetch(struct session *s, const char *tag, struct command *c, int first,
                      enum fault_kind fault)
{
    int by_uid = first == 3;
    int n = c->ntok - first;
    if (n < 2) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    struct fetch_job *f = xcalloc(1, sizeof *f);
    snprintf(f->tag, sizeof f->tag, "%s", tag);
    f->items = by_uid ? FI_UID : 0;
    const struct command_token *it = &c->tok[first + 1];
    int bad = 0;
    if (it->kind == TOK_LPAREN) {
        if (c->tok[c->ntok - 1].kind != TOK_RPAREN || n < 4)
            bad = 1;
        for (int i = first + 2; i < c->ntok - 1 && !bad; i++) {
            unsigned bits = fetch_item(&c->tok[i]);
            if (bits == 0)
                bits = partial_item(&c->tok[i], f);
            bad = bits == 0;
            f->items |= bits;
        }
    } else {
        unsigned bits = n == 2 ? fetch_item(it) : 0;
        if (bits == 0 && n == 2)
            bits = partial_item(it, f);
        bad = bits == 0;
        f->items |= bits;
    }
    if (bad) {
        commands_fetch_free(f);
        tagged_bad(s, tag, "Invalid fetch items");
        return;
    }
    if (parse_set(s->mb, &c->tok[first], by_uid, f) < 0) {
        commands_fetch_free(f);
        tagged_bad(s, tag, "Invalid message set");
        return;
    }
    s->env->counters->fetches++;
    if (fault == FAULT_TRICKLE) {
        s->is_trickle = 1;
        s->tick_due = 1;
    }
    s->fetch = f;
    commands_fetch_more(s);
}

static void cmd_fetch_seq(struct session *s, const char *tag, struct command *c,
                          enum fault_kind fault)
{
    cmd_fetch(s, tag, c, 2, fault);
}

static void cmd_uid(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    if (c->ntok >= 3 && command_is(&c->tok[2], "FETCH")) {
        cmd_fetch(s, tag, c, 3, fault);
        return;
    }
    tagged_bad(s, tag, "Unknown UID command");
}

/* ---- Dispatch ---- */

#define IN_NOTAUTH  (1u << ST_NOTAUTH)
#define IN_AUTH     (1u << ST_AUTH)
#define IN_SELECTED (1u << ST_SELECTED)
#define IN_ANY      (IN_NOTAUTH | IN_AUTH | IN_SELECTED)
#define IN_LOGGED   (IN_AUTH | IN_SELECTED)

static const struct handler {
    const char *name;
    handler_fn fn;
    unsigned states;
    unsigned faults; /* beyond FAULTS_GENERIC */
} handlers[] = {
    {"CAPABILITY", cmd_capability, IN_ANY, 0},
    {"NOOP", cmd_noop, IN_ANY, 0},
    {"LOGOUT", cmd_logout, IN_ANY, 0},
    {"ID", cmd_id, IN_ANY, 0},
    {"STARTTLS", cmd_starttls, IN_NOTAUTH, 0},
    {"LOGIN", cmd_login, IN_NOTAUTH, FAULT_BIT(FAULT_AUTHFAIL) | FAULT_BIT(FAULT_LIMIT)},
    {"AUTHENTICATE", cmd_authenticate, IN_NOTAUTH,
     FAULT_BIT(FAULT_AUTHFAIL) | FAULT_BIT(FAULT_LIMIT)},
    {"SELECT", cmd_select, IN_LOGGED, FAULT_BIT(FAULT_NOINBOX) | FAULT_BIT(FAULT_UIDSHIFT)},
    {"EXAMINE", cmd_select, IN_LOGGED, FAULT_BIT(FAULT_NOINBOX) | FAULT_BIT(FAULT_UIDSHIFT)},
    {"STATUS", cmd_status, IN_LOGGED, 0},
    {"LIST", cmd_list, IN_LOGGED, 0},
    {"LSUB", cmd_list, IN_LOGGED, 0},
    {"IDLE", cmd_idle, IN_LOGGED, 0},
    {"CHECK", cmd_noop, IN_SELECTED, 0},
    {"CLOSE", cmd_close, IN_SELECTED, 0},
    {"UNSELECT", cmd_close, IN_SELECTED, 0},
    {"FETCH", cmd_fetch_seq, IN_SELECTED, FAULT_BIT(FAULT_TRICKLE)},
    {"UID", cmd_uid, IN_SELECTED, FAULT_BIT(FAULT_TRICKLE)},
};

static int valid_tag(const struct command_token *t)
{
    if (t->kind != TOK_ATOM || t->len == 0 || t->len >= TAG_MAX)
        return 0;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char ch = (unsigned char)t->p[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("+(){%*\"\\]", ch) != NULL)
            return 0;
    }
    return 1;
}

static void command(struct session *s, char *frame, size_t len)
{
    /* The tag first, so even a command that does not parse is answered by it. */
    char tag[TAG_MAX] = "*";
    struct command_token first = {TOK_ATOM, frame, strcspn(frame, " \r\n")};
    if (first.len < len && valid_tag(&first))
        command_copy(&first, tag, sizeof tag);
    struct command c;
    int rc = command_tokenize(frame, len, &c);
    if (rc < 0 || c.ntok < 2 || tag[0] == '*' || c.tok[1].kind != TOK_ATOM) {
        tagged_bad(s, tag, rc < 0 ? "Invalid command syntax" : "Missing or invalid command");
        return;
    }
    const struct handler *h = NULL;
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (command_is(&c.tok[1], handlers[i].name))
            h = &handlers[i];
    if (h == NULL) {
        tagged_bad(s, tag, "Unknown command");
        return;
    }
    if (!(h->states & (1u << s->state))) {
        tagged_bad(s, tag, "Command not valid in this state");
        return;
    }
    enum fault_kind f = faults_roll(s->env->faults, FAULTS_GENERIC | h->faults);
    if (f != FAULT_NONE) {
        log_debugc("imap", "fault session=%lu command=%s fault=%s", s->id, h->name, faults_name(f));
        if (f != FAULT_LIMIT && session_apply_fault(s, tag, f))
            return;
    }
    h->fn(s, tag, &c, f);
}

static void idle_line(struct session *s, const char *line, size_t len)
{
    s->wait = WAIT_COMMAND;
    if (len == 4 && strncmp(line, "DONE", 4) == 0)
        session_reply(s, "%s OK IDLE terminated\r\n", s->pending_tag);
    else
        session_reply(s, "%s BAD Expected DONE\r\n", s->pending_tag);
    xfree(s->pending_tag);
    s->pending_tag = NULL;
}

void commands_run(struct session *s, char *frame, size_t len)
{
    size_t llen = len;
    while (llen > 0 && (frame[llen - 1] == '\n' || frame[llen - 1] == '\r'))
        llen--;
    if (s->wait == WAIT_IDLE_DONE)
        idle_line(s, frame, llen);
    else if (s->wait == WAIT_SASL || s->wait == WAIT_SASL_ERROR_ACK)
        sasl_line(s, frame, llen);
    else
        command(s, frame, len);
}
