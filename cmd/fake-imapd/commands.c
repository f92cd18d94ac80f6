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
#define FI_MODSEQ      (1u << 14) /* MODSEQ (RFC 7162) */
#define FI_GM_MSGID    (1u << 15) /* X-GM-MSGID */
#define FI_GM_THRID    (1u << 16) /* X-GM-THRID */
#define FI_GM_LABELS   (1u << 17) /* X-GM-LABELS */
#define FI_GMAIL       (FI_GM_MSGID | FI_GM_THRID | FI_GM_LABELS)
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
    uint64_t changedsince; /* (CHANGEDSINCE n): only messages with a greater MODSEQ; 0: all */
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
static void login_finish(struct session *s, const char *tag, struct account *mb,
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
    struct account *mb = NULL;
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
                struct account *cand = mbox_get(s->env->store, user, 0);
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

/* A mailbox argument (astring) copied into out (MBOX_NAME_MAX + 1 bytes). */
static int arg_mailbox(const struct command_token *t, char *out)
{
    return arg_string(t, out, MBOX_NAME_MAX + 1);
}

/* An unsigned number token of at most 20 digits (a MODSEQ, RFC 7162). */
static int arg_u64(const struct command_token *t, uint64_t *out)
{
    if (t->kind != TOK_ATOM || t->len == 0 || t->len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (t->p[i] < '0' || t->p[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(t->p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int has_condstore(const struct session *s)
{
    return (s->env->profiles & (PROFILE_CONDSTORE | PROFILE_QRESYNC)) != 0;
}

static void put_flags(struct session *s, const struct message *m);
static void put_uid_list(struct session *s, uint32_t *uids, size_t n);

/* QRESYNC after SELECT (RFC 7162 3.2.5): what changed in f since modseq,
 * when the client's UIDVALIDITY uv is still f's. */
static void qresync_changes(struct session *s, const struct folder *f, uint32_t uv, uint64_t modseq)
{
    if (uv != f->uidvalidity)
        return;
    size_t n = 0;
    uint32_t *uids = xmalloc((f->ngone + 1) * sizeof *uids);
    for (size_t i = 0; i < f->ngone; i++)
        if (f->gone[i].modseq > modseq)
            uids[n++] = f->gone[i].uid;
    if (n > 0) {
        session_reply(s, "* VANISHED (EARLIER) ");
        put_uid_list(s, uids, n);
        session_reply(s, "\r\n");
    }
    xfree(uids);
    for (size_t i = 0; i < f->count; i++) {
        const struct message *m = f->msgs[i];
        if (m->modseq <= modseq)
            continue;
        session_reply(s, "* %zu FETCH (UID %u ", i + 1, (unsigned)m->uid);
        put_flags(s, m);
        session_reply(s, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
    }
}

/* SELECT or EXAMINE name [(CONDSTORE) | (QRESYNC (uv modseq [uids]))]. */
static void cmd_select(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    int examine = command_is(&c->tok[1], "EXAMINE");
    char name[MBOX_NAME_MAX + 1];
    int qresync = 0;
    uint64_t uv = 0, since = 0;
    if (c->ntok < 3 || arg_mailbox(&c->tok[2], name) < 0) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (c->ntok > 3) {
        /* tok: ( CONDSTORE )  or  ( QRESYNC ( uv modseq [known-uids] ) ) */
        const struct command_token *t = c->tok;
        int n = c->ntok;
        int ok = has_condstore(s) && t[3].kind == TOK_LPAREN && t[n - 1].kind == TOK_RPAREN;
        if (ok && n == 6 && command_is(&t[4], "CONDSTORE")) {
            s->is_condstore = 1;
        } else if (ok && s->is_qresync && n >= 10 && n <= 11 && command_is(&t[4], "QRESYNC") &&
                   t[5].kind == TOK_LPAREN && t[n - 2].kind == TOK_RPAREN &&
                   arg_u64(&t[6], &uv) == 0 && uv > 0 && uv <= UINT32_MAX &&
                   arg_u64(&t[7], &since) == 0 && since > 0 && (n == 10 || t[8].kind == TOK_ATOM)) {
            qresync = 1;
        } else {
            tagged_bad(s, tag, "Invalid arguments");
            return;
        }
    }
    struct account *mb = s->mb;
    struct folder *f = mbox_folder(mb, name);
    if (f == NULL || fault == FAULT_NOINBOX) {
        s->state = ST_AUTH; /* a failed SELECT leaves no mailbox selected */
        s->sel = NULL;
        session_reply(s, "%s NO [NONEXISTENT] Mailbox doesn't exist\r\n", tag);
        return;
    }
    if (fault == FAULT_UIDSHIFT) {
        mbox_renumber(f, f->uidvalidity + 1);
        log_info("uidvalidity changed by fault user=%s mailbox=%s uidvalidity=%u", mb->user,
                 mbox_folder_name(f), (unsigned)f->uidvalidity);
        session_folder_lost(mb, f, s, "UIDVALIDITY changed");
    }
    s->state = ST_SELECTED;
    s->sel = f;
    s->is_readonly = (unsigned)examine;
    session_reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    if (examine)
        session_reply(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    else
        session_reply(s, "* OK [PERMANENTFLAGS (\\Seen)] Limited\r\n");
    session_reply(s, "* %zu EXISTS\r\n* %zu RECENT\r\n", f->count, f->recent);
    if (f->unseen > 0) {
        for (size_t i = 0; i < f->count; i++) {
            if (!(f->msgs[i]->flags & MSG_SEEN)) {
                session_reply(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
                break;
            }
        }
    }
    session_reply(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
                  (unsigned)f->uidvalidity, (unsigned)f->uidnext);
    if (has_condstore(s))
        session_reply(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                      (unsigned long long)f->highestmodseq);
    if (qresync)
        qresync_changes(s, f, (uint32_t)uv, since);
    if (!examine)
        mbox_clear_recent(f);
    session_reply(s, "%s OK [%s] %s completed\r\n", tag, examine ? "READ-ONLY" : "READ-WRITE",
                  examine ? "EXAMINE" : "SELECT");
}

static void cmd_status(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    char name[MBOX_NAME_MAX + 1];
    if (c->ntok < 5 || arg_mailbox(&c->tok[2], name) < 0 || c->tok[3].kind != TOK_LPAREN ||
        c->tok[c->ntok - 1].kind != TOK_RPAREN) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    const struct folder *f = mbox_folder(s->mb, name);
    if (f == NULL) {
        session_reply(s, "%s NO [NONEXISTENT] Mailbox doesn't exist\r\n", tag);
        return;
    }
    struct buf b;
    buf_init(&b, 1024);
    for (int i = 4; i < c->ntok - 1; i++) {
        const struct command_token *t = &c->tok[i];
        const char *sep = i > 4 ? " " : "";
        if (command_is(t, "MESSAGES"))
            buf_printf(&b, "%sMESSAGES %zu", sep, f->count);
        else if (command_is(t, "RECENT"))
            buf_printf(&b, "%sRECENT %zu", sep, f->recent);
        else if (command_is(t, "UIDNEXT"))
            buf_printf(&b, "%sUIDNEXT %u", sep, (unsigned)f->uidnext);
        else if (command_is(t, "UIDVALIDITY"))
            buf_printf(&b, "%sUIDVALIDITY %u", sep, (unsigned)f->uidvalidity);
        else if (command_is(t, "UNSEEN"))
            buf_printf(&b, "%sUNSEEN %zu", sep, f->unseen);
        else if (command_is(t, "HIGHESTMODSEQ") && has_condstore(s))
            buf_printf(&b, "%sHIGHESTMODSEQ %llu", sep, (unsigned long long)f->highestmodseq);
        else {
            buf_free(&b);
            tagged_bad(s, tag, "Invalid status item");
            return;
        }
    }
    session_reply(s, "* STATUS ");
    session_put_mailbox(s, mbox_folder_name(f));
    session_reply(s, " (%s)\r\n%s OK STATUS completed\r\n", b.data ? b.data : "", tag);
    buf_free(&b);
}

/* IMAP LIST pattern matching (RFC 3501 6.3.8): '*' matches anything, '%'
 * anything but the delimiter '/'. INBOX matches in any case. */
static int pattern_match(const char *pat, const char *name, int fold)
{
    for (; *pat != '\0'; pat++, name++) {
        if (*pat == '*' || *pat == '%') {
            for (const char *n = name;; n++) {
                if (pattern_match(pat + 1, n, fold))
                    return 1;
                if (*n == '\0' || (*pat == '%' && *n == '/'))
                    return 0;
            }
        }
        char a = *pat, b = *name;
        if (fold && a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (a != b)
            return 0;
    }
    return *name == '\0';
}

/* 1 when some folder of mb lies below f. */
static int has_children(const struct account *mb, const struct folder *f)
{
    const char *name = mbox_folder_name(f);
    size_t n = strlen(name);
    for (const struct folder *o = &mb->inbox; o != NULL; o = o->next) {
        const char *on = mbox_folder_name(o);
        if (strncmp(on, name, n) == 0 && on[n] == '/')
            return 1;
    }
    return 0;
}

/* The options of an extended LIST (RFC 5258): only SPECIAL-USE selects or
 * returns anything here; CHILDREN and SUBSCRIBED are accepted as returned
 * anyway. Reads ( opt ... ) at c->tok[*i]; 0 or -1. */
static int list_options(const struct command *c, int *i, int *special_only)
{
    if (*i >= c->ntok || c->tok[*i].kind != TOK_LPAREN)
        return -1;
    for ((*i)++; *i < c->ntok && c->tok[*i].kind != TOK_RPAREN; (*i)++) {
        const struct command_token *t = &c->tok[*i];
        if (command_is(t, "SPECIAL-USE")) {
            if (special_only != NULL)
                *special_only = 1;
        } else if (!command_is(t, "CHILDREN") && !command_is(t, "SUBSCRIBED")) {
            return -1;
        }
    }
    if (*i == c->ntok)
        return -1;
    (*i)++;
    return 0;
}

/* LIST [(selection)] ref pattern [RETURN (options)]; LSUB ref pattern. */
static void cmd_list(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    const char *verb = command_is(&c->tok[1], "LSUB") ? "LSUB" : "LIST";
    int extended = verb[1] == 'I' && (s->env->profiles & PROFILE_SPECIAL_USE);
    int special_only = 0, i = 2;
    char ref[MBOX_NAME_MAX + 1], pat[MBOX_NAME_MAX + 1], full[2 * MBOX_NAME_MAX + 2];
    int bad = 0;
    if (extended && i < c->ntok && c->tok[i].kind == TOK_LPAREN)
        bad = list_options(c, &i, &special_only) < 0;
    if (!bad && (i + 2 > c->ntok || arg_mailbox(&c->tok[i], ref) < 0 ||
                 arg_mailbox(&c->tok[i + 1], pat) < 0))
        bad = 1;
    i += 2;
    if (!bad && extended && i < c->ntok && command_is(&c->tok[i], "RETURN")) {
        i++;
        bad = list_options(c, &i, NULL) < 0;
    }
    if (bad || i != c->ntok) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    if (pat[0] == '\0') { /* an empty pattern asks for the hierarchy delimiter */
        session_reply(s, "* %s (\\Noselect) \"/\" \"\"\r\n%s OK %s completed\r\n", verb, tag, verb);
        return;
    }
    snprintf(full, sizeof full, "%s%s", ref, pat);
    for (const struct folder *f = &s->mb->inbox; f != NULL; f = f->next) {
        const char *name = mbox_folder_name(f);
        int is_inbox = f == &s->mb->inbox;
        if (!pattern_match(full, name, is_inbox) || (special_only && f->special == FS_NONE))
            continue;
        const char *use =
            (s->env->profiles & PROFILE_SPECIAL_USE) ? mbox_special_name(f->special) : NULL;
        session_reply(s, "* %s (%s%s%s) \"/\" ", verb,
                      has_children(s->mb, f) ? "\\HasChildren" : "\\HasNoChildren", use ? " " : "",
                      use ? use : "");
        session_put_mailbox(s, name);
        session_reply(s, "\r\n");
    }
    session_reply(s, "%s OK %s completed\r\n", tag, verb);
}

/* ---- NOTIFY (RFC 5465) and ENABLE (RFC 5161) ---- */

/* Reads the events of one filter at c->tok[*i]: NONE or ( event ... ),
 * an event possibly followed by a parenthesised fetch-att list. Sets
 * *new_, *name. 0, or -1 with *badevent for an event we do not know. */
static int notify_events(const struct command *c, int *i, int *new_, int *name, int *badevent)
{
    if (*i < c->ntok && command_is(&c->tok[*i], "NONE")) {
        (*i)++;
        return 0;
    }
    if (*i >= c->ntok || c->tok[*i].kind != TOK_LPAREN)
        return -1;
    static const char *const known[] = {"MessageNew",
                                        "MessageExpunge",
                                        "FlagChange",
                                        "MailboxName",
                                        "SubscriptionChange",
                                        "AnnotationChange",
                                        "MailboxMetadataChange",
                                        "ServerMetadataChange"};
    for ((*i)++; *i < c->ntok && c->tok[*i].kind != TOK_RPAREN; (*i)++) {
        const struct command_token *t = &c->tok[*i];
        if (t->kind == TOK_LPAREN) { /* MessageNew's fetch attributes */
            while (*i < c->ntok && c->tok[*i].kind != TOK_RPAREN)
                (*i)++;
            continue;
        }
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && !command_is(t, known[k]))
            k++;
        if (k == sizeof known / sizeof known[0]) {
            *badevent = 1;
            return -1;
        }
        *new_ |= k == 0;
        *name |= k == 3;
    }
    if (*i == c->ntok)
        return -1;
    (*i)++;
    return 0;
}

static void notify_add(struct notify *n, const struct command_token *t, int *bad)
{
    char name[MBOX_NAME_MAX + 1];
    if (arg_mailbox(t, name) < 0) {
        *bad = 1;
        return;
    }
    n->names = xrealloc(n->names, (n->n + 1) * sizeof *n->names);
    n->names[n->n++] = xstrdup(name);
}

/* NOTIFY NONE | NOTIFY SET [STATUS] (filter events) ... where filter is
 * SELECTED, SELECTED-DELAYED, PERSONAL, INBOXES or MAILBOXES mbox|(mbox ...). */
static void cmd_notify(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    if (c->ntok == 3 && command_is(&c->tok[2], "NONE")) {
        session_notify_free(s->notify);
        s->notify = NULL;
        session_reply(s, "%s OK NOTIFY completed\r\n", tag);
        return;
    }
    if (c->ntok < 4 || !command_is(&c->tok[2], "SET")) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    struct notify *n = xcalloc(1, sizeof *n);
    int i = 3, bad = 0, badevent = 0, status = 0, new_ = 0, renamed = 0;
    if (command_is(&c->tok[i], "STATUS")) {
        status = 1;
        i++;
    }
    while (!bad && i < c->ntok) {
        if (c->tok[i].kind != TOK_LPAREN || i + 1 >= c->ntok) {
            bad = 1;
            break;
        }
        const struct command_token *filter = &c->tok[++i];
        i++;
        int selected = command_is(filter, "SELECTED") || command_is(filter, "SELECTED-DELAYED");
        if (command_is(filter, "PERSONAL")) {
            n->is_personal = 1;
        } else if (command_is(filter, "INBOXES")) {
            notify_add(n, &(struct command_token){TOK_ATOM, "INBOX", 5}, &bad);
        } else if (command_is(filter, "MAILBOXES") && i < c->ntok) {
            if (c->tok[i].kind == TOK_LPAREN) {
                for (i++; !bad && i < c->ntok && c->tok[i].kind != TOK_RPAREN; i++)
                    notify_add(n, &c->tok[i], &bad);
                i++;
            } else {
                notify_add(n, &c->tok[i++], &bad);
            }
        } else if (!selected) {
            bad = 1;
            break;
        }
        int fnew = 0, fname = 0;
        if (!bad && notify_events(c, &i, &fnew, &fname, &badevent) < 0)
            bad = 1;
        if (!selected) {
            new_ |= fnew;
            renamed |= fname;
        }
        if (!bad && (i >= c->ntok || c->tok[i].kind != TOK_RPAREN))
            bad = 1;
        i++;
    }
    if (bad) {
        session_notify_free(n);
        if (badevent)
            session_reply(s,
                          "%s NO [BADEVENT (MessageNew MessageExpunge MailboxName)] "
                          "Unsupported event\r\n",
                          tag);
        else
            tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    n->wants_new = (unsigned)new_;
    n->wants_name = (unsigned)renamed;
    session_notify_free(s->notify);
    s->notify = n;
    if (status) { /* the current state of every watched mailbox first */
        for (const struct folder *f = &s->mb->inbox; f != NULL; f = f->next) {
            if (!session_watches(s, mbox_folder_name(f)) ||
                (s->state == ST_SELECTED && s->sel == f))
                continue;
            session_reply(s, "* STATUS ");
            session_put_mailbox(s, mbox_folder_name(f));
            session_reply(s, " (MESSAGES %zu UIDNEXT %u UIDVALIDITY %u)\r\n", f->count,
                          (unsigned)f->uidnext, (unsigned)f->uidvalidity);
        }
    }
    session_reply(s, "%s OK NOTIFY completed\r\n", tag);
}

static void cmd_enable(struct session *s, const char *tag, struct command *c, enum fault_kind fault)
{
    (void)fault;
    if (c->ntok < 3) {
        tagged_bad(s, tag, "Invalid arguments");
        return;
    }
    struct buf b;
    buf_init(&b, 256);
    for (int i = 2; i < c->ntok; i++) {
        const struct command_token *t = &c->tok[i];
        if (command_is(t, "QRESYNC") && (s->env->profiles & PROFILE_QRESYNC)) {
            s->is_qresync = s->is_condstore = 1;
            buf_puts(&b, " QRESYNC");
        } else if (command_is(t, "CONDSTORE") && has_condstore(s)) {
            s->is_condstore = 1;
            buf_puts(&b, " CONDSTORE");
        }
    }
    session_reply(s, "* ENABLED%s\r\n%s OK ENABLE completed\r\n", b.data ? b.data : "", tag);
    buf_free(&b);
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
    s->sel = NULL;
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
static int parse_set(const struct folder *mb, const struct command_token *t, int by_uid,
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
        {"MODSEQ", FI_MODSEQ},
        {"X-GM-MSGID", FI_GM_MSGID},
        {"X-GM-THRID", FI_GM_THRID},
        {"X-GM-LABELS", FI_GM_LABELS},
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
    struct folder *mb = s->sel;
    struct message *m = mb->msgs[i];
    int now_seen = 0;
    if (items & FI_ANY_BODY)
        counters->bodies++;
    if (items & FI_SETS_SEEN) {
        counters->nonpeek++;
        if (!s->is_readonly && mbox_set_flag(mb, i, MSG_SEEN)) {
            now_seen = 1;
            counters->seen_sets++;
            log_info("message marked seen user=%s mailbox=%s uid=%u", s->mb->user,
                     mbox_folder_name(mb), (unsigned)m->uid);
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
    if ((items & FI_MODSEQ) || s->is_condstore) { /* RFC 7162 3.1.4.1: in every FETCH */
        session_reply(s, "%sMODSEQ (%llu)", sep, (unsigned long long)m->modseq);
        sep = " ";
    }
    if (items & FI_GM_MSGID) {
        session_reply(s, "%sX-GM-MSGID %llu", sep, (unsigned long long)m->gm_msgid);
        sep = " ";
    }
    if (items & FI_GM_THRID) {
        session_reply(s, "%sX-GM-THRID %llu", sep, (unsigned long long)m->gm_thrid);
        sep = " ";
    }
    if (items & FI_GM_LABELS && m->labels != NULL) {
        session_reply(s, "%sX-GM-LABELS %s", sep, m->labels);
        sep = " ";
    } else if (items & FI_GM_LABELS) { /* appended to one folder: its own label */
        session_reply(s, "%sX-GM-LABELS (", sep);
        if (mb == &s->mb->inbox)
            session_reply(s, "\\Inbox");
        else
            session_put_mailbox(s, mbox_folder_name(mb));
        session_reply(s, ")");
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
        if (f->next >= s->sel->count) { /* expunged since the FETCH began */
            f->cur = f->nranges;
            continue;
        }
        if (s->sel->msgs[f->next]->modseq > f->changedsince) {
            render_message(s, f->next, f);
            progress = 1;
        }
        if (++f->next >= f->ranges[2 * f->cur + 1])
            f->cur++;
    }
    return progress;
}

/* Puts uids[0..n) as a sorted sequence set with ranges ("1:3,5"). */
static void put_uid_list(struct session *s, uint32_t *uids, size_t n)
{
    for (size_t i = 1; i < n; i++) /* insertion sort: the lists are short */
        for (size_t k = i; k > 0 && uids[k - 1] > uids[k]; k--) {
            uint32_t t = uids[k];
            uids[k] = uids[k - 1];
            uids[k - 1] = t;
        }
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k + 1 < n && uids[k + 1] == uids[k] + 1)
            k++;
        session_reply(s, "%s%u", i > 0 ? "," : "", (unsigned)uids[i]);
        if (k > i)
            session_reply(s, ":%u", (unsigned)uids[k]);
        i = k + 1;
    }
}

/* The modifiers of a FETCH (RFC 7162): (CHANGEDSINCE n [VANISHED]) at
 * c->tok[i..]. 0 or -1. */
static int fetch_modifiers(struct session *s, const struct command *c, int i, int by_uid,
                           struct fetch_job *f, int *vanished)
{
    if (i == c->ntok)
        return 0;
    if (!has_condstore(s) || c->tok[i].kind != TOK_LPAREN || c->tok[c->ntok - 1].kind != TOK_RPAREN)
        return -1;
    for (i++; i < c->ntok - 1; i++) {
        if (command_is(&c->tok[i], "CHANGEDSINCE") && i + 1 < c->ntok - 1 &&
            arg_u64(&c->tok[i + 1], &f->changedsince) == 0 && f->changedsince > 0)
            i++;
        else if (command_is(&c->tok[i], "VANISHED") && by_uid && s->is_qresync)
            *vanished = 1;
        else
            return -1;
    }
    if (f->changedsince == 0) /* VANISHED needs CHANGEDSINCE; a modifier list needs one */
        return -1;
    f->items |= FI_MODSEQ;
    s->is_condstore = 1; /* CHANGEDSINCE is a CONDSTORE enabling command */
    return 0;
}

/* UID FETCH ... (CHANGEDSINCE n VANISHED): the UIDs of the set expunged
 * after n, as "* VANISHED (EARLIER) set" before the FETCH answers. */
static void fetch_vanished(struct session *s, const struct fetch_job *f,
                           const struct command_token *set)
{
    const struct folder *fo = s->sel;
    size_t n = 0;
    uint32_t *uids = xmalloc((fo->ngone + 1) * sizeof *uids);
    for (size_t i = 0; i < fo->ngone; i++) {
        if (fo->gone[i].modseq <= f->changedsince)
            continue;
        /* within the set: a gone UID is in it when some range of the set covers it */
        uint32_t uid = fo->gone[i].uid;
        const char *p = set->p, *end = set->p + set->len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *item_end = comma ? comma : end;
            const char *colon = memchr(p, ':', (size_t)(item_end - p));
            uint32_t a = UINT32_MAX, b;
            const char *a_end = colon ? colon : item_end;
            if (!(a_end - p == 1 && *p == '*'))
                parse_number(p, (size_t)(a_end - p), &a);
            b = a;
            if (colon != NULL && !(item_end - colon == 2 && colon[1] == '*'))
                parse_number(colon + 1, (size_t)(item_end - colon - 1), &b);
            else if (colon != NULL)
                b = UINT32_MAX;
            if ((uid >= a && uid <= b) || (uid >= b && uid <= a)) {
                uids[n++] = uid;
                break;
            }
            p = comma ? comma + 1 : end;
        }
    }
    if (n > 0) {
        session_reply(s, "* VANISHED (EARLIER) ");
        put_uid_list(s, uids, n);
        session_reply(s, "\r\n");
    }
    xfree(uids);
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
    int bad = 0, after = first + 2, vanished = 0;
    if (it->kind == TOK_LPAREN) {
        int close = first + 2;
        while (close < c->ntok && c->tok[close].kind != TOK_RPAREN)
            close++;
        if (close == c->ntok || close == first + 2)
            bad = 1;
        for (int i = first + 2; i < close && !bad; i++) {
            unsigned bits = fetch_item(&c->tok[i]);
            if (bits == 0)
                bits = partial_item(&c->tok[i], f);
            bad = bits == 0;
            f->items |= bits;
        }
        after = close + 1;
    } else {
        unsigned bits = fetch_item(it);
        if (bits == 0)
            bits = partial_item(it, f);
        bad = bits == 0;
        f->items |= bits;
    }
    if (((f->items & FI_MODSEQ) && !has_condstore(s)) ||
        ((f->items & FI_GMAIL) && !(s->env->profiles & PROFILE_GMAIL)))
        bad = 1;
    if (!bad && fetch_modifiers(s, c, after, by_uid, f, &vanished) < 0)
        bad = 1;
    if (bad) {
        commands_fetch_free(f);
        tagged_bad(s, tag, "Invalid fetch items");
        return;
    }
    if (f->items & FI_MODSEQ)
        s->is_condstore = 1; /* FETCH MODSEQ is a CONDSTORE enabling command */
    if (parse_set(s->sel, &c->tok[first], by_uid, f) < 0) {
        commands_fetch_free(f);
        tagged_bad(s, tag, "Invalid message set");
        return;
    }
    s->env->counters->fetches++;
    if (vanished)
        fetch_vanished(s, f, &c->tok[first]);
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
    unsigned faults;   /* beyond FAULTS_GENERIC */
    unsigned profiles; /* the command exists with one of these (0: always) */
    const char *stat;  /* its counter in STATS */
} handlers[] = {
    {"CAPABILITY", cmd_capability, IN_ANY, 0, 0, "cmd_capability"},
    {"NOOP", cmd_noop, IN_ANY, 0, 0, "cmd_noop"},
    {"LOGOUT", cmd_logout, IN_ANY, 0, 0, "cmd_logout"},
    {"ID", cmd_id, IN_ANY, 0, 0, "cmd_id"},
    {"STARTTLS", cmd_starttls, IN_NOTAUTH, 0, 0, "cmd_starttls"},
    {"LOGIN", cmd_login, IN_NOTAUTH, FAULT_BIT(FAULT_AUTHFAIL) | FAULT_BIT(FAULT_LIMIT), 0,
     "cmd_login"},
    {"AUTHENTICATE", cmd_authenticate, IN_NOTAUTH,
     FAULT_BIT(FAULT_AUTHFAIL) | FAULT_BIT(FAULT_LIMIT), 0, "cmd_authenticate"},
    {"SELECT", cmd_select, IN_LOGGED, FAULT_BIT(FAULT_NOINBOX) | FAULT_BIT(FAULT_UIDSHIFT), 0,
     "cmd_select"},
    {"EXAMINE", cmd_select, IN_LOGGED, FAULT_BIT(FAULT_NOINBOX) | FAULT_BIT(FAULT_UIDSHIFT), 0,
     "cmd_examine"},
    {"STATUS", cmd_status, IN_LOGGED, 0, 0, "cmd_status"},
    {"LIST", cmd_list, IN_LOGGED, 0, 0, "cmd_list"},
    {"LSUB", cmd_list, IN_LOGGED, 0, 0, "cmd_lsub"},
    {"IDLE", cmd_idle, IN_LOGGED, 0, 0, "cmd_idle"},
    {"CHECK", cmd_noop, IN_SELECTED, 0, 0, "cmd_check"},
    {"CLOSE", cmd_close, IN_SELECTED, 0, 0, "cmd_close"},
    {"UNSELECT", cmd_close, IN_SELECTED, 0, 0, "cmd_unselect"},
    {"FETCH", cmd_fetch_seq, IN_SELECTED, FAULT_BIT(FAULT_TRICKLE), 0, "cmd_fetch"},
    {"UID", cmd_uid, IN_SELECTED, FAULT_BIT(FAULT_TRICKLE), 0, "cmd_uid_fetch"},
    {"NOTIFY", cmd_notify, IN_LOGGED, 0, PROFILE_NOTIFY, "cmd_notify"},
    {"ENABLE", cmd_enable, IN_LOGGED, 0, PROFILE_CONDSTORE | PROFILE_QRESYNC, "cmd_enable"},
};

_Static_assert(sizeof handlers / sizeof handlers[0] <= SESSION_COMMANDS_MAX,
               "SESSION_COMMANDS_MAX counts every handler");

const char *commands_stat_name(size_t i)
{
    return i < sizeof handlers / sizeof handlers[0] ? handlers[i].stat : NULL;
}

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
        if (command_is(&c.tok[1], handlers[i].name) &&
            (handlers[i].profiles == 0 || (handlers[i].profiles & s->env->profiles)))
            h = &handlers[i];
    if (h == NULL) {
        tagged_bad(s, tag, "Unknown command");
        return;
    }
    s->env->counters->by_command[h - handlers]++;
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
