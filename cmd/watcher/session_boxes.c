/*
 * cmd/watcher/session_boxes: a user who watches more than INBOX (states
 * LIST, NOTIFY, STATUS; RFC 6154 SPECIAL-USE, RFC 5465 NOTIFY), over the
 * one connection of session_mailbox.c:
 *
 *   LIST "" "*" [RETURN (SPECIAL-USE)]   names and attributes: each watched
 *       entry resolved (a name, or the first mailbox with the attribute);
 *       those not found are the user's mailboxes_missing
 *   [NOTIFY SET (SELECTED ...) (MAILBOXES (others) ...)]   when announced:
 *       new mail elsewhere comes as "* STATUS <mailbox> (... UIDNEXT n)"
 *   each mailbox in turn: EXAMINE, cursor (cursor_baseline the first time on
 *       this connection), UID FETCH, record (session_mailbox.c); the
 *       primary one (the first found: INBOX unless the user left it out)
 *       last, where the session IDLEs
 *   without NOTIFY: STATUS <other> (UIDNEXT UIDVALIDITY) for each other
 *       mailbox every provider mailbox_poll_s, between two IDLEs; with it,
 *       the same round at each IDLE renewal, which notices a mailbox
 *       renamed or deleted
 *
 * A mailbox with news (a STATUS whose UIDNEXT passed its cursor, or a new
 * UIDVALIDITY) is examined and fetched, then the session goes back to the
 * primary one. A mailbox that LIST does not show, or that EXAMINE or STATUS
 * refuses, is set aside until the next connection and reported in the
 * user's mailboxes_missing; the others go on being watched. A user none of
 * whose mailboxes exists fails as misconfigured (config backoff).
 *
 * A user who watches INBOX only has no box_set (s->boxes NULL): nothing here
 * runs for it, and it costs its session one pointer.
 *
 * Depends on: session_mailbox (examine, fetch, IDLE), session_base,
 * session_store (mailboxes_missing), proto/mailboxes, proto/imap_cmd.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_impl.h"

#include <strings.h>

#include "cmd/watcher/session_store.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "core/time.h"
#include "proto/mailboxes.h"

/* ---- The set ---- */

/* A resolved name other than the spec itself (an attribute's mailbox) is
 * its own pooled string; a name spec points at its spec. */
static void drop_name(struct imap_session *s, struct watch_box *b)
{
    if (b->name != NULL && b->name != b->spec)
        pool_release(s->w->pool, b->name, strlen(b->name) + 1);
    b->name = NULL;
}

static void set_name(struct imap_session *s, struct watch_box *b, const char *name)
{
    if (strcmp(name, b->spec) == 0) {
        b->name = b->spec;
        return;
    }
    size_t n = strlen(name) + 1;
    b->name = pool_alloc(s->w->pool, n);
    memcpy(b->name, name, n);
}

void session_boxes_free(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL)
        return;
    for (size_t i = 0; i < bs->n; i++)
        drop_name(s, &bs->b[i]);
    xfree(bs->missing_pub);
    pool_release(s->w->pool, bs, bs->bytes);
    s->boxes = NULL;
}

int session_boxes_load(struct imap_session *s, const char *json, const char *missing, char *why,
                       size_t whylen)
{
    session_boxes_free(s);
    struct mailbox_list l = {0};
    if (json != NULL && json[0] != '\0' && mailboxes_parse(json, strlen(json), &l, why, whylen) < 0)
        return -1;
    int has_missing = missing != NULL && missing[0] != '\0';
    if (l.n == 0 || mailboxes_inbox_only(&l)) {
        mailboxes_free(&l);
        /* Left from a list watched before: INBOX is never missing. */
        if (has_missing)
            session_store_publish_missing(s, "");
        return 0;
    }
    /* One pooled block (the set, its boxes, their specs): it lives as long
     * as the user is held, so it stays out of a login storm's heap
     * (core/pool.h). */
    size_t bytes = sizeof(struct box_set) + l.n * sizeof(struct watch_box);
    for (size_t i = 0; i < l.n; i++)
        bytes += strlen(l.items[i].name) + 1;
    struct box_set *bs = pool_alloc(s->w->pool, bytes);
    bs->bytes = (uint16_t)bytes;
    bs->b = (struct watch_box *)(bs + 1);
    bs->n = (uint8_t)l.n;
    bs->cur = bs->n;
    bs->missing_pub = has_missing ? xstrdup(missing) : NULL;
    char *at = (char *)(bs->b + l.n);
    for (size_t i = 0; i < l.n; i++) {
        size_t n = strlen(l.items[i].name) + 1;
        memcpy(at, l.items[i].name, n);
        bs->b[i].spec = at;
        at += n;
        bs->b[i].special = l.items[i].special != MB_NAME && l.items[i].special != MB_INBOX;
    }
    mailboxes_free(&l);
    s->boxes = bs;
    return 0;
}

void session_boxes_reset(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL)
        return;
    for (size_t i = 0; i < bs->n; i++) {
        struct watch_box *b = &bs->b[i];
        drop_name(s, b);
        b->uidvalidity = b->last_uid = b->base_uid = 0;
        b->dirty = b->missing = 0;
    }
    bs->cur = bs->n;
    bs->primary = 0;
    bs->notify = bs->status_now = bs->then_fetch = 0;
    bs->status_due_mono = 0;
}

const char *session_box_name(const struct imap_session *s)
{
    const struct box_set *bs = s->boxes;
    return bs == NULL || bs->cur >= bs->n ? "INBOX" : bs->b[bs->cur].name;
}

const char *session_box_spec(const struct imap_session *s)
{
    const struct box_set *bs = s->boxes;
    if (bs == NULL || bs->cur >= bs->n || strcmp(bs->b[bs->cur].spec, "INBOX") == 0)
        return NULL;
    return bs->b[bs->cur].spec;
}

int session_box_special(const struct imap_session *s)
{
    const struct box_set *bs = s->boxes;
    return bs != NULL && bs->cur < bs->n && bs->b[bs->cur].special;
}

static int64_t poll_ms(const struct imap_session *s)
{
    return (int64_t)s->prov->mailbox_poll_s * 1000;
}

/* ---- mailboxes_missing ---- */

/* Writes the user's mailboxes_missing when it differs from what was last
 * written: the entries set aside, as configured. */
static void publish_missing(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    struct json_gen *g = json_gen_new(4096);
    json_gen_array_open(g);
    size_t n = 0;
    for (size_t i = 0; i < bs->n; i++) {
        if (bs->b[i].missing) {
            json_gen_str(g, bs->b[i].spec);
            n++;
        }
    }
    json_gen_array_close(g);
    char *json = NULL;
    size_t len = 0;
    int rc = json_gen_finish(g, &json, &len);
    json_gen_free(g);
    if (rc < 0)
        return;
    if (n == 0) {
        xfree(json);
        json = NULL;
    }
    const char *was = bs->missing_pub != NULL ? bs->missing_pub : "";
    if (strcmp(json != NULL ? json : "", was) == 0 ||
        session_store_publish_missing(s, json != NULL ? json : "") < 0) {
        xfree(json);
        return;
    }
    if (json != NULL)
        log_warn("watched mailboxes not found on the server acct=%s missing=%s", s->uid, json);
    else
        log_info("every watched mailbox found again acct=%s", s->uid);
    xfree(bs->missing_pub);
    bs->missing_pub = json;
}

static void set_missing(struct imap_session *s, struct watch_box *b, const char *why)
{
    b->missing = 1;
    b->dirty = 0;
    metric_inc(s->w->m.box_missing);
    log_info("mailbox set aside until the next connection acct=%s mailbox=\"%s\" why=\"%s\"",
             s->uid, b->name != NULL ? b->name : b->spec, why);
    publish_missing(s);
}

/* ---- Moving between mailboxes ---- */

/* Keeps the selected mailbox's cursor (s->mb) in its box, and selects box i. */
static void select_box(struct imap_session *s, uint8_t i)
{
    struct box_set *bs = s->boxes;
    if (bs->cur < bs->n) {
        struct watch_box *c = &bs->b[bs->cur];
        c->uidvalidity = s->mb.uidvalidity;
        c->last_uid = s->mb.last_uid;
        c->base_uid = s->mb.base_uid;
    }
    bs->cur = i;
    s->mb.last_uid = bs->b[i].last_uid;
    s->mb.base_uid = bs->b[i].base_uid;
    session_mailbox_examine(s);
}

int session_boxes_cursor_kept(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL || bs->cur >= bs->n)
        return 0;
    const struct watch_box *b = &bs->b[bs->cur];
    return b->uidvalidity != 0 && b->uidvalidity == s->mb.uidvalidity;
}

/* The next thing to do once the selected mailbox is caught up: another
 * mailbox with news, the primary one again, or IDLE. */
static void next_box(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    for (uint8_t i = 0; i < bs->n; i++) {
        const struct watch_box *b = &bs->b[i];
        if (i != bs->primary && i != bs->cur && b->dirty && !b->missing && b->name != NULL) {
            select_box(s, i);
            return;
        }
    }
    if (bs->cur != bs->primary) {
        select_box(s, bs->primary);
        return;
    }
    s->exists_mono = 0;
    session_mailbox_idle_or_poll(s);
}

void session_boxes_caught_up(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL) {
        s->exists_mono = 0;
        session_mailbox_idle_or_poll(s);
        return;
    }
    if (bs->cur < bs->n)
        bs->b[bs->cur].dirty = 0;
    next_box(s);
}

int session_boxes_examine_refused(struct imap_session *s, const char *text)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL || bs->cur >= bs->n || bs->cur == bs->primary)
        return 0;
    uint8_t i = bs->cur;
    bs->cur = bs->n; /* nothing selected: the primary one is examined next */
    set_missing(s, &bs->b[i], text);
    next_box(s);
    return 1;
}

/* ---- LIST ---- */

void session_boxes_start(struct imap_session *s)
{
    if (s->boxes == NULL) {
        session_mailbox_examine(s);
        return;
    }
    session_new_tag(s);
    session_send_command(s, imap_cmd_list_all(&s->conn.out, s->tag, s->cap_special_use), S_LIST,
                         "cannot build LIST");
}

/* 1 when the LIST attributes av hold attr (case-insensitive). */
static int has_attr(const struct imap_value *av, const char *attr)
{
    if (av->type != IMAP_VALUE_LIST)
        return 0;
    for (size_t i = 0; i < av->n; i++) {
        const struct imap_value *v = &av->items[i];
        if (v->type == IMAP_VALUE_ATOM && v->str.data != NULL && strcasecmp(v->str.data, attr) == 0)
            return 1;
    }
    return 0;
}

void session_boxes_list_item(struct imap_session *s, const struct imap_response *r)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL || r->nvalues < 3)
        return;
    const struct imap_value *attrs = &r->values[0], *name = &r->values[2];
    if (name->type == IMAP_VALUE_NIL || name->str.data == NULL ||
        memchr(name->str.data, '\0', name->str.len) != NULL)
        return;
    if (s->state != S_LIST) {
        /* NOTIFY's MailboxName: one was created, renamed or deleted. */
        bs->status_now = 1;
        session_mailbox_wake(s);
        return;
    }
    if (has_attr(attrs, "\\Noselect") || has_attr(attrs, "\\NonExistent"))
        return;
    const char *nm = name->str.data;
    for (size_t i = 0; i < bs->n; i++) {
        struct watch_box *b = &bs->b[i];
        if (b->name != NULL)
            continue;
        int match = b->special ? has_attr(attrs, b->spec) : strcmp(b->spec, nm) == 0;
        if (match)
            set_name(s, b, nm);
    }
}

/* Begins the round of every found mailbox: the others first, the primary
 * one last (where the session stays). */
static void begin_scan(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    for (size_t i = 0; i < bs->n; i++)
        bs->b[i].dirty = bs->b[i].name != NULL && !bs->b[i].missing;
    /* The first round at 0.5 to 1.5 times the interval: sessions that
     * connect together (a storm) do not poll together ever after. */
    uint32_t r;
    crypto_random(&r, sizeof r);
    bs->status_due_mono = time_mono_ms() + poll_ms(s) / 2 + (int64_t)(r % (uint32_t)poll_ms(s));
    next_box(s);
}

void session_boxes_listed(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    struct box_set *bs = s->boxes;
    if (!ok) {
        session_fail(s, F_PROTO, "LIST refused: %s", policy_server_text(r, text, sizeof text));
        return;
    }
    int found = -1, others = 0;
    for (size_t i = 0; i < bs->n; i++) {
        struct watch_box *b = &bs->b[i];
        if (b->name == NULL && strcmp(b->spec, "INBOX") == 0)
            set_name(s, b, "INBOX"); /* always there, whatever LIST shows */
        b->missing = b->name == NULL;
        if (b->missing) {
            metric_inc(s->w->m.box_missing); /* as set_missing() counts the others */
            continue;
        }
        if (found < 0)
            found = (int)i;
        else
            others++;
    }
    publish_missing(s);
    if (found < 0) {
        session_fail(s, F_CONFIG, "none of the watched mailboxes exists on the server");
        return;
    }
    bs->primary = (uint8_t)found;
    if (!s->cap_notify || others == 0) {
        begin_scan(s);
        return;
    }
    const char *names[MAILBOXES_MAX];
    size_t n = 0;
    for (size_t i = 0; i < bs->n; i++)
        if (i != bs->primary && !bs->b[i].missing)
            names[n++] = bs->b[i].name;
    session_new_tag(s);
    session_send_command(s, imap_cmd_notify_set(&s->conn.out, s->tag, names, n), S_NOTIFY,
                         "cannot build NOTIFY");
}

void session_boxes_notified(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    s->boxes->notify = ok != 0;
    if (ok)
        metric_inc(s->w->m.box_notify);
    else
        log_info("NOTIFY refused; other mailboxes checked with STATUS acct=%s poll_s=%d: %s",
                 s->uid, s->prov->mailbox_poll_s, policy_server_text(r, text, sizeof text));
    begin_scan(s);
}

/* ---- STATUS ---- */

static struct watch_box *box_named(struct box_set *bs, const struct imap_str *name, uint8_t *at)
{
    if (name->data == NULL)
        return NULL;
    for (uint8_t i = 0; i < bs->n; i++) {
        struct watch_box *b = &bs->b[i];
        if (b->name != NULL && strlen(b->name) == name->len &&
            memcmp(b->name, name->data, name->len) == 0) {
            *at = i;
            return b;
        }
    }
    return NULL;
}

void session_boxes_status(struct imap_session *s, const struct imap_response *r)
{
    struct box_set *bs = s->boxes;
    uint8_t i;
    struct watch_box *b = bs != NULL ? box_named(bs, &r->status.mailbox, &i) : NULL;
    if (b == NULL || b->missing || i == bs->cur)
        return;
    const struct imap_mailbox_status *st = &r->status;
    int news =
        b->uidvalidity == 0 ||
        ((st->has & IMAP_STATUS_UIDVALIDITY) && st->uidvalidity != b->uidvalidity) ||
        ((st->has & IMAP_STATUS_UIDNEXT) && st->uidnext > 0 && st->uidnext - 1 > b->last_uid);
    if (!news || b->dirty)
        return;
    b->dirty = 1;
    if (s->exists_mono == 0)
        s->exists_mono = time_mono_ms();
    log_debugc("imap", "news in another mailbox acct=%s mailbox=\"%s\"", s->uid, b->name);
    if (s->state != S_STATUS)
        session_mailbox_wake(s);
}

/* Asks STATUS of the next other mailbox from index from; returns 0 when
 * none is left. */
static int ask_next(struct imap_session *s, uint8_t from)
{
    struct box_set *bs = s->boxes;
    for (uint8_t i = from; i < bs->n; i++) {
        struct watch_box *b = &bs->b[i];
        if (i == bs->cur || b->missing || b->name == NULL)
            continue;
        bs->ask = i;
        session_new_tag(s);
        int rc = imap_cmd_status(&s->conn.out, s->tag, b->name, 0);
        if (rc < 0) {
            set_missing(s, b, "its name cannot be sent to this server");
            continue;
        }
        metric_inc(s->w->m.box_status);
        session_send_command(s, rc, S_STATUS, "cannot build STATUS");
        return 1;
    }
    return 0;
}

/* After a STATUS round, or instead of one: the primary mailbox is fetched
 * when it may hold news (EXISTS, an IDLE renewal or probe, a poll), else
 * the session goes on to the mailboxes with news, or back to IDLE. */
static void after_round(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    if (bs == NULL || bs->then_fetch || s->need_fetch) {
        if (bs != NULL)
            bs->then_fetch = 0;
        session_mailbox_fetch_new(s);
        return;
    }
    session_boxes_caught_up(s);
}

void session_boxes_resume(struct imap_session *s)
{
    struct box_set *bs = s->boxes;
    if (bs != NULL && (bs->status_now || (!bs->notify && time_mono_ms() >= bs->status_due_mono))) {
        bs->status_now = 0;
        bs->status_due_mono = time_mono_ms() + poll_ms(s);
        if (ask_next(s, 0))
            return;
    }
    after_round(s);
}

void session_boxes_statused(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    struct box_set *bs = s->boxes;
    if (!ok)
        set_missing(s, &bs->b[bs->ask], policy_server_text(r, text, sizeof text));
    if (ask_next(s, (uint8_t)(bs->ask + 1)))
        return;
    after_round(s);
}

void session_boxes_check_primary(struct imap_session *s)
{
    if (s->boxes != NULL)
        s->boxes->then_fetch = 1;
}

int session_boxes_pending(const struct imap_session *s)
{
    const struct box_set *bs = s->boxes;
    if (bs == NULL)
        return 0;
    if (bs->status_now)
        return 1;
    for (uint8_t i = 0; i < bs->n; i++)
        if (i != bs->cur && bs->b[i].dirty && !bs->b[i].missing)
            return 1;
    return 0;
}

int64_t session_boxes_status_due_in(const struct imap_session *s)
{
    const struct box_set *bs = s->boxes;
    if (bs == NULL || bs->notify)
        return -1;
    int64_t d = bs->status_due_mono - time_mono_ms();
    return d > 0 ? d : 0;
}
