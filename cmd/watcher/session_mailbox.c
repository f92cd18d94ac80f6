/*
 * cmd/watcher/session_mailbox: a logged-in IMAP session watching INBOX
 * (states EXAMINE, UIDNEXT, BASELINE, FETCH, BODY, HASH, RECORD, DELETE,
 * EXPUNGE, IDLE_START, IDLE, DONE, POLL_WAIT, NOOP; RFC 3501, RFC 2177 IDLE,
 * RFC 4315 UIDPLUS):
 *
 *   EXAMINE INBOX --> [UIDNEXT: UID FETCH * (UID), when EXAMINE gave none]
 *     --> BASELINE (cursor_baseline: UIDNEXT-1 on first sight or new UIDVALIDITY)
 *     --> FETCH (UID FETCH last+1:* (UID RFC822.SIZE ENVELOPE), UIDs <= last dropped)
 *     --> for each new UID in order: BODY (UID FETCH n BODY.PEEK[]), or above
 *         SUPERIMAP_MAX_EMAIL_SIZE HASH (UID FETCH n BODY.PEEK[]<offset.length>
 *         in parts of at most HASH_PART, each hashed and dropped: the event's
 *         sha1 is the message's, its body is never kept) -> RECORD (record_mail)
 *         [-> DELETE (UID STORE n +FLAGS.SILENT (\Deleted)) -> EXPUNGE (UID
 *         EXPUNGE n, with UIDPLUS): a tracer, when its provider has
 *         tracer_delete]
 *     --> IDLE_START -> IDLE --EXISTS/RECENT, renewal, probe--> DONE -> FETCH ...
 *         (without the IDLE capability: POLL_WAIT --timer--> NOOP -> FETCH ...)
 *
 * INBOX is EXAMINEd (read-only), or SELECTed when the provider deletes
 * tracers (tracer_delete), and bodies are fetched with BODY.PEEK, so nothing
 * is ever marked \Seen. The only change ever made to a mailbox is that
 * deletion: one tracer by UID, never a plain EXPUNGE (which would also
 * remove what the user marked \Deleted); without UIDPLUS it stays marked.
 * An idle session keeps no parser or output buffers.
 *
 * Depends on: session_base, session_store (baseline, record_mail, publish),
 * imap_conn, session_policy, proto/imap_cmd, proto/imap_parse.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_impl.h"

#include <inttypes.h>
#include <stdlib.h>

#include "cmd/watcher/session_store.h"
#include "core/config.h"
#include "core/log.h"
#include "core/time.h"

/* The largest part of a message over the limit fetched at once (and never
 * above SUPERIMAP_MAX_EMAIL_SIZE, which bounds the parser's literals). */
#define HASH_PART (1u << 20)

static void next_message(struct imap_session *s);

void session_mailbox_examine(struct imap_session *s)
{
    const char *name = session_box_name(s);
    session_new_tag(s);
    s->selected = s->prov->tracer_delete != 0 && strcmp(name, "INBOX") == 0;
    int rc = s->selected ? imap_cmd_select(&s->conn.out, NULL, s->tag, name, 0)
                         : imap_cmd_examine(&s->conn.out, NULL, s->tag, name, 0);
    if (rc < 0 && session_boxes_examine_refused(s, "its name cannot be sent to this server"))
        return;
    if (rc < 0) {
        session_fail(s, F_PROTO, "cannot build EXAMINE");
        return;
    }
    s->mb.uidvalidity = s->mb.uidnext = 0;
    session_set_state(s, S_EXAMINE);
    session_arm_command(s);
    session_send(s);
}

/* ---- Baseline and fetch ---- */

static void start_fetch(struct imap_session *s)
{
    session_free_msgs(s);
    s->need_fetch = 0;
    session_new_tag(s);
    uint32_t first = s->mb.last_uid == UINT32_MAX ? UINT32_MAX : s->mb.last_uid + 1;
    session_send_command(s,
                         imap_cmd_uid_fetch_envelopes_ext(&s->conn.out, s->tag, first,
                                                          s->cap_gmail ? IMAP_CMD_FETCH_GMAIL : 0,
                                                          0),
                         S_FETCH, "cannot build UID FETCH");
}

void session_mailbox_fetch_new(struct imap_session *s)
{
    start_fetch(s);
}

/* Just examined, the cursor known: UIDNEXT says whether anything is new
 * (every UID is below it), so a reconnect to a mailbox without news costs
 * no FETCH. */
static void fetch_if_new(struct imap_session *s)
{
    if (!s->need_fetch && s->mb.uidnext > 0 && s->mb.uidnext - 1 <= s->mb.last_uid) {
        session_free_msgs(s);
        session_boxes_caught_up(s);
        return;
    }
    start_fetch(s);
}

static void on_baseline(struct imap_session *s, const char *why)
{
    if (why != NULL) {
        session_fail(s, F_REDIS, "%s", why);
        return;
    }
    fetch_if_new(s);
}

static void start_baseline(struct imap_session *s)
{
    if (!session_store_lease_usable(s)) {
        session_fail(s, F_REDIS, "incarnation not live");
        return;
    }
    if (session_store_baseline(s, on_baseline) < 0) {
        session_fail(s, F_REDIS, "cannot queue cursor_baseline");
        return;
    }
    session_set_state(s, S_BASELINE);
    session_disarm(s); /* rconn's command timeout bounds the wait */
}

static int cmp_msg(const void *a, const void *b)
{
    uint32_t x = ((const struct pending_msg *)a)->uid, y = ((const struct pending_msg *)b)->uid;
    return x < y ? -1 : x > y;
}

/* A FETCH response during S_FETCH; takes ownership of r. */
static void collect(struct imap_session *s, struct imap_response *r)
{
    struct mailbox_view *mb = &s->mb;
    if (!(r->fetch.has & IMAP_FETCH_UID) || r->fetch.uid <= mb->last_uid) {
        imap_response_free(r); /* "n:*" returns the last message even when old */
        return;
    }
    for (size_t i = 0; i < mb->nmsgs; i++) {
        if (mb->msgs[i].uid == r->fetch.uid) {
            imap_response_free(r); /* sent twice */
            return;
        }
    }
    if (mb->nmsgs == mb->msgs_cap) {
        mb->msgs_cap = mb->msgs_cap ? mb->msgs_cap * 2 : 8;
        mb->msgs = xrealloc(mb->msgs, mb->msgs_cap * sizeof *mb->msgs);
    }
    struct pending_msg *m = &mb->msgs[mb->nmsgs++];
    m->uid = r->fetch.uid;
    m->size = (r->fetch.has & IMAP_FETCH_RFC822_SIZE) ? r->fetch.rfc822_size : 0;
    m->env = r;
}

/* The current message is done with (recorded or not): on to the next. */
static void skip_message(struct imap_session *s)
{
    struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    imap_response_free(m->env);
    m->env = NULL;
    s->mb.imsg++;
    next_message(s);
}

/* A tracer just detected, its provider deleting tracers: marked \Deleted
 * (DELETE), then expunged by UID (EXPUNGE) when the server has UIDPLUS. */
static void delete_tracer(struct imap_session *s)
{
    session_new_tag(s);
    session_send_command(
        s, imap_cmd_uid_store_deleted(&s->conn.out, s->tag, s->mb.msgs[s->mb.imsg].uid), S_DELETE,
        "cannot build UID STORE");
}

static void on_recorded(struct imap_session *s, enum store_record res, const char *why)
{
    switch (res) {
    case STORE_RECORDED:
        s->mb.last_uid = s->mb.msgs[s->mb.imsg].uid;
        skip_message(s);
        return;
    case STORE_TRACER:
        s->mb.last_uid = s->mb.msgs[s->mb.imsg].uid;
        if (s->selected)
            delete_tracer(s);
        else
            skip_message(s);
        return;
    case STORE_SKIPPED:
        skip_message(s);
        return;
    case STORE_FAILED:
        session_fail(s, F_REDIS, "%s", why);
        return;
    case STORE_BEHIND:
        session_redis_lost(s, 0, "record_mail");
        return;
    }
}

/* Records message m (body may be NULL: too large, or no body; sha1: the hex
 * SHA-1 of a message too large, NULL when it could not be read). */
static void record(struct imap_session *s, struct pending_msg *m, const struct imap_str *body,
                   int too_large, const char *sha1)
{
    if (!session_store_lease_usable(s)) {
        session_fail(s, F_REDIS, "incarnation not live");
        return;
    }
    int rc = session_store_record(s, m, body, too_large, sha1, on_recorded);
    if (rc < 0) {
        session_fail(s, F_REDIS, "cannot record uid %" PRIu32 ": %s", m->uid, err_str(rc));
        return;
    }
    session_set_state(s, S_RECORD);
    session_disarm(s);
}

/* ---- HASH: a message over the limit, its SHA-1 from parts ---- */

/* The size of each part asked. */
static uint32_t part_size(const struct imap_session *s)
{
    uint64_t max = (uint64_t)session_cfg(s)->max_email_size;
    return max < HASH_PART ? (uint32_t)max : HASH_PART;
}

/* Asks for the current message's next part, from the bytes hashed so far. */
static void send_part(struct imap_session *s)
{
    const struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    s->hash_more = s->hash_bad = 0;
    session_new_tag(s);
    session_send_command(s,
                         imap_cmd_uid_fetch_body_part(&s->conn.out, s->tag, m->uid,
                                                      crypto_sha1_length(s->mb.hash), part_size(s)),
                         S_HASH, "cannot build UID FETCH BODY.PEEK[]<offset.length>");
}

/* A part of the current message: hashed, then dropped by the caller. A part
 * sent again is ignored; one from elsewhere than where the hash stands (or
 * without <origin>: the server ignored the partial fetch) spoils the hash. */
static void hash_part(struct imap_session *s, const struct imap_response *r)
{
    uint64_t at = crypto_sha1_length(s->mb.hash);
    if (!(r->fetch.has & IMAP_FETCH_BODY_ORIGIN) || r->fetch.body_origin > at) {
        s->hash_bad = 1;
        return;
    }
    if (r->fetch.body_origin < at)
        return;
    size_t n = r->fetch.body.data != NULL ? r->fetch.body.len : 0;
    if (crypto_sha1_update(s->mb.hash, r->fetch.body.data, n) < 0) {
        s->hash_bad = 1;
        return;
    }
    s->hash_more = n == part_size(s);
}

static void next_message(struct imap_session *s)
{
    if (s->mb.imsg >= s->mb.nmsgs) {
        session_free_msgs(s);
        if (s->need_fetch) {
            start_fetch(s);
            return;
        }
        session_boxes_caught_up(s);
        return;
    }
    struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    if (m->size > (uint64_t)session_cfg(s)->max_email_size || m->uid == s->mb.force_too_large) {
        if ((m->uid == s->mb.force_too_large && s->no_partial) || m->size > UINT32_MAX) {
            /* Parts cannot be had (or addressed: RFC 3501 offsets are 32-bit). */
            s->no_partial = 0;
            record(s, m, NULL, 1, NULL);
            return;
        }
        s->mb.body = NULL;
        s->mb.hash = crypto_sha1_new();
        if (s->mb.hash == NULL) {
            session_fail(s, F_PROTO, "cannot start a SHA-1");
            return;
        }
        s->hashing = 1;
        send_part(s);
        return;
    }
    session_new_tag(s);
    session_send_command(s, imap_cmd_uid_fetch_body(&s->conn.out, s->tag, m->uid), S_BODY,
                         "cannot build UID FETCH BODY.PEEK[]");
}

/* ---- IDLE and polling ---- */

static void became_healthy(struct imap_session *s)
{
    if (s->healthy)
        return;
    s->healthy = 1;
    policy_retry_reset(&s->retry);
    session_set_watching(s, 1);
    session_store_publish(s, P_WATCHING, NULL, 1);
    log_debugc("imap", "watching acct=%s idle=%d", s->uid, s->cap_idle);
}

static void arm_idle_timer(struct imap_session *s)
{
    int64_t now = time_mono_ms();
    int64_t renew_at = s->idle_since_mono + (int64_t)s->prov->idle_renew_s * 1000;
    int64_t probe_at = s->last_rx_mono + (int64_t)session_cfg(s)->imap_probe_sec * 1000;
    int64_t at = renew_at < probe_at ? renew_at : probe_at;
    int64_t tok = session_token_due_in(s);
    if (tok >= 0 && now + tok < at)
        at = now + tok;
    int64_t status = session_boxes_status_due_in(s);
    if (status >= 0 && now + status < at)
        at = now + status;
    session_arm_ms(s, at - now);
}

void session_mailbox_idle_or_poll(struct imap_session *s)
{
    if (s->cap_idle) {
        session_new_tag(s);
        session_send_command(s, imap_cmd_idle(&s->conn.out, s->tag), S_IDLE_START,
                             "cannot build IDLE");
        return;
    }
    became_healthy(s);
    session_set_state(s, S_POLL_WAIT);
    session_release_buffers(s);
    session_arm_ms(s, (int64_t)session_cfg(s)->imap_poll_sec * 1000);
}

static void leave_idle(struct imap_session *s)
{
    session_send_command(s, imap_cmd_done(&s->conn.out), S_DONE, "cannot build DONE");
}

void session_mailbox_idle_started(struct imap_session *s)
{
    session_set_state(s, S_IDLE);
    s->idle_refusals = 0;
    became_healthy(s);
    s->idle_since_mono = time_mono_ms();
    s->probing = 0;
    if (s->need_fetch || session_boxes_pending(s)) {
        /* Mail came while IDLE was starting: leave at once. */
        leave_idle(s);
        return;
    }
    /* Idle sessions keep no buffers (docs/watcher.md). */
    s->w->idle_entries++;
    session_release_buffers(s);
    arm_idle_timer(s);
}

void session_mailbox_idle_timer(struct imap_session *s)
{
    session_token_tick(s);
    int64_t now = time_mono_ms();
    int renew = now - s->idle_since_mono >= (int64_t)s->prov->idle_renew_s * 1000;
    int probe = now - s->last_rx_mono >= (int64_t)session_cfg(s)->imap_probe_sec * 1000;
    int status = session_boxes_status_due_in(s) == 0;
    if (renew || probe || status) {
        s->probing = probe;
        if (renew || probe) {
            if (s->boxes != NULL)
                s->boxes->status_now = 1;   /* also notices a mailbox renamed or deleted */
            session_boxes_check_primary(s); /* catches a lost EXISTS */
        }
        leave_idle(s);
    } else {
        arm_idle_timer(s);
    }
}

void session_mailbox_poll(struct imap_session *s)
{
    session_token_tick(s);
    session_boxes_check_primary(s);
    session_new_tag(s);
    if (imap_cmd_noop(&s->conn.out, s->tag) < 0) {
        session_fail(s, F_PROTO, "cannot build NOOP");
        return;
    }
    session_set_state(s, S_NOOP);
    session_arm_command(s);
    session_send(s);
}

/* ---- Untagged responses ---- */

void session_mailbox_news(struct imap_session *s)
{
    if (s->exists_mono == 0)
        s->exists_mono = time_mono_ms();
    s->need_fetch = 1;
    session_mailbox_wake(s);
}

void session_mailbox_wake(struct imap_session *s)
{
    if (s->state == S_IDLE)
        leave_idle(s);
    else if (s->state == S_POLL_WAIT)
        session_boxes_resume(s);
}

int session_mailbox_fetch(struct imap_session *s, struct imap_response *r)
{
    if (s->state == S_FETCH) {
        collect(s, r);
        return 1;
    }
    if (s->state == S_UIDNEXT && (r->fetch.has & IMAP_FETCH_UID)) {
        if (r->fetch.uid > s->max_uid_seen)
            s->max_uid_seen = r->fetch.uid;
        return 0;
    }
    if (s->state == S_HASH && s->hashing && (r->fetch.has & IMAP_FETCH_BODY) &&
        r->fetch.body_section.data != NULL && r->fetch.body_section.len == 0 &&
        (!(r->fetch.has & IMAP_FETCH_UID) || r->fetch.uid == s->mb.msgs[s->mb.imsg].uid)) {
        hash_part(s, r);
        return 0; /* not kept: the caller frees it */
    }
    if (s->state == S_BODY && (r->fetch.has & IMAP_FETCH_BODY) &&
        r->fetch.body_section.data != NULL && r->fetch.body_section.len == 0 &&
        (!(r->fetch.has & IMAP_FETCH_UID) || r->fetch.uid == s->mb.msgs[s->mb.imsg].uid)) {
        imap_response_free(s->mb.body);
        s->mb.body = r;
        return 1;
    }
    return 0; /* flag changes and the like */
}

/* ---- Tagged answers, one per state ---- */

void session_mailbox_examined(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok && session_boxes_examine_refused(s, policy_server_text(r, text, sizeof text)))
        return;
    if (!ok) {
        session_fail(s, F_PROTO, "EXAMINE %s refused: %s", session_box_name(s),
                     policy_server_text(r, text, sizeof text));
        return;
    }
    if (s->mb.uidvalidity == 0) {
        session_fail(s, F_PROTO, "EXAMINE gave no UIDVALIDITY");
        return;
    }
    if (session_boxes_cursor_kept(s)) {
        fetch_if_new(s); /* examined before on this connection, same UIDVALIDITY */
        return;
    }
    if (s->mb.uidnext == 0) {
        session_new_tag(s);
        s->max_uid_seen = 0;
        session_send_command(s, imap_cmd_uid_fetch_last(&s->conn.out, s->tag), S_UIDNEXT,
                             "output buffer full");
        return;
    }
    start_baseline(s);
}

void session_mailbox_uidnext(struct imap_session *s, const struct imap_response *r, int ok)
{
    (void)r;
    (void)ok;
    /* An empty mailbox may answer NO or BAD to "*": nothing is old then. */
    s->mb.uidnext = s->max_uid_seen + 1;
    start_baseline(s);
}

void session_mailbox_fetched(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok) {
        session_fail(s, F_PROTO, "UID FETCH refused: %s", policy_server_text(r, text, sizeof text));
        return;
    }
    if (s->mb.nmsgs > 1)
        qsort(s->mb.msgs, s->mb.nmsgs, sizeof *s->mb.msgs, cmp_msg);
    s->mb.imsg = 0;
    next_message(s);
}

void session_mailbox_body(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok) {
        session_fail(s, F_PROTO, "UID FETCH BODY.PEEK[] refused: %s",
                     policy_server_text(r, text, sizeof text));
        return;
    }
    struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    if (s->mb.body == NULL) {
        /* Expunged between the two fetches: nothing to announce. */
        log_info("message vanished before its body was fetched acct=%s uid=%" PRIu32, s->uid,
                 m->uid);
        skip_message(s);
        return;
    }
    record(s, m, &s->mb.body->fetch.body, 0, NULL);
}

void session_mailbox_hashed(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok) {
        session_fail(s, F_PROTO, "UID FETCH BODY.PEEK[]<offset.length> refused: %s",
                     policy_server_text(r, text, sizeof text));
        return;
    }
    struct pending_msg *m = &s->mb.msgs[s->mb.imsg];
    uint64_t got = crypto_sha1_length(s->mb.hash);
    if (s->hash_more && !s->hash_bad && got + part_size(s) <= UINT32_MAX) {
        send_part(s);
        return;
    }
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    int usable = !s->hash_bad && !s->hash_more && crypto_sha1_final_hex(s->mb.hash, sha1) == 0;
    int bad = s->hash_bad;
    crypto_sha1_free(s->mb.hash);
    s->mb.body = NULL;
    s->hashing = 0;
    if (got == 0 && !bad) {
        /* Expunged meanwhile: nothing to announce. */
        log_info("message vanished before it was hashed acct=%s uid=%" PRIu32, s->uid, m->uid);
        skip_message(s);
        return;
    }
    if (!usable)
        log_warn("a message over the limit could not be read in parts: its event's sha1 is "
                 "its id's acct=%s uid=%" PRIu32 " bytes=%" PRIu64,
                 s->uid, m->uid, got);
    record(s, m, NULL, 1, usable ? sha1 : NULL);
}

/* A refused deletion is logged, never a failure: the tracer was detected,
 * and the mail goes on being watched. */
void session_mailbox_deleted(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    uint32_t uid = s->mb.msgs[s->mb.imsg].uid;
    if (!ok) {
        log_warn("tracer not deleted: UID STORE refused acct=%s uid=%" PRIu32 ": %s", s->uid, uid,
                 policy_server_text(r, text, sizeof text));
        skip_message(s);
        return;
    }
    if (!s->cap_uidplus) {
        log_info("tracer marked deleted, left for the user's client to expunge (no UIDPLUS) "
                 "acct=%s uid=%" PRIu32,
                 s->uid, uid);
        skip_message(s);
        return;
    }
    session_new_tag(s);
    session_send_command(s, imap_cmd_uid_expunge(&s->conn.out, s->tag, uid), S_EXPUNGE,
                         "cannot build UID EXPUNGE");
}

void session_mailbox_expunged(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    uint32_t uid = s->mb.msgs[s->mb.imsg].uid;
    if (ok)
        log_info("tracer deleted acct=%s uid=%" PRIu32, s->uid, uid);
    else
        log_warn("tracer not expunged: UID EXPUNGE refused acct=%s uid=%" PRIu32 ": %s", s->uid,
                 uid, policy_server_text(r, text, sizeof text));
    skip_message(s);
}

/* IDLE_START, IDLE and DONE: IDLE's tagged answer. */
void session_mailbox_idle_end(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok && s->state == S_IDLE_START) {
        /* IDLE advertised but refused: a passing fault reconnects; a
         * server that keeps refusing it is polled instead. */
        if (s->idle_refusals + 1 < IDLE_REFUSALS) {
            s->idle_refusals++;
            session_fail(s, F_PROTO, "IDLE refused: %s", policy_server_text(r, text, sizeof text));
            return;
        }
        log_warn("server refuses IDLE; polling instead acct=%s poll_sec=%d", s->uid,
                 session_cfg(s)->imap_poll_sec);
        s->cap_idle = 0;
        session_mailbox_idle_or_poll(s);
        return;
    }
    if (!ok) {
        session_fail(s, F_PROTO, "IDLE ended with %s: %s", r->cond == IMAP_COND_NO ? "NO" : "BAD",
                     policy_server_text(r, text, sizeof text));
        return;
    }
    /* IDLE over (ours or the server's): look for mail, then IDLE again.
     * A fetch after every renewal or probe also catches a lost EXISTS. */
    session_boxes_resume(s);
}

void session_mailbox_noop(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok) {
        session_fail(s, F_PROTO, "NOOP refused: %s", policy_server_text(r, text, sizeof text));
        return;
    }
    session_boxes_resume(s);
}
