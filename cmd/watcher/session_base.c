/*
 * cmd/watcher/session_base: what every state of an IMAP session uses: the
 * state setter, the one deadline, failure handling, sending a command and
 * closing the connection (see session_impl.h for where it sits).
 *
 * Depends on: session_store (publish, lifetime), session_policy (delays),
 * imap_conn, cmd/watcher/provider (slots, throttling), core/log, core/metrics.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cmd/watcher/session_store.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"

static const char *const state_names[S_COUNT] = {
    [S_NEW] = "NEW",
    [S_LOAD] = "LOAD",
    [S_QUEUED] = "QUEUED",
    [S_TOKEN] = "TOKEN",
    [S_CONNECT] = "CONNECT",
    [S_TLS] = "TLS",
    [S_GREETING] = "GREETING",
    [S_CAPA] = "CAPA",
    [S_STARTTLS] = "STARTTLS",
    [S_AUTH] = "AUTH",
    [S_LIST] = "LIST",
    [S_NOTIFY] = "NOTIFY",
    [S_EXAMINE] = "EXAMINE",
    [S_UIDNEXT] = "UIDNEXT",
    [S_BASELINE] = "BASELINE",
    [S_FETCH] = "FETCH",
    [S_BODY] = "BODY",
    [S_HASH] = "HASH",
    [S_RECORD] = "RECORD",
    [S_DELETE] = "DELETE",
    [S_EXPUNGE] = "EXPUNGE",
    [S_IDLE_START] = "IDLE_START",
    [S_IDLE] = "IDLE",
    [S_DONE] = "DONE",
    [S_POLL_WAIT] = "POLL_WAIT",
    [S_NOOP] = "NOOP",
    [S_STATUS] = "STATUS",
    [S_WAIT] = "WAIT",
    [S_DEAD] = "DEAD",
};

const char *session_state_name(enum sess_state st)
{
    return state_names[st];
}

void session_set_state(struct imap_session *s, enum sess_state to)
{
    if (s->state == to)
        return;
    log_debugc("imap", "session state acct=%s from=%s to=%s", s->uid, state_names[s->state],
               state_names[to]);
    s->state = to;
}

/* ---- Timer ---- */

void session_arm_ms(struct imap_session *s, int64_t ms)
{
    ev_timer_stop(s->w->loop, &s->timer);
    ev_timer_set(&s->timer, (double)(ms < 0 ? 0 : ms) / 1000.0, 0.);
    ev_timer_start(s->w->loop, &s->timer);
}

void session_disarm(struct imap_session *s)
{
    ev_timer_stop(s->w->loop, &s->timer);
}

void session_arm_command(struct imap_session *s)
{
    session_arm_ms(s, session_cfg(s)->imap_command_timeout_ms);
}

/* ---- Watching gauge ---- */

void session_set_watching(struct imap_session *s, int on)
{
    if (s->watching == (unsigned)(on != 0))
        return;
    s->watching = on != 0;
    s->w->nwatching += on ? 1 : -1;
    metric_set(s->w->m.watching, s->w->nwatching);
}

void session_set_pub(struct imap_session *s, enum pub_state st)
{
    struct watcher *w = s->w;
    if (st == s->pub || s->state == S_DEAD)
        return; /* a dead session counts nowhere */
    w->nby_state[s->pub]--;
    metric_set(w->m.by_state[s->pub], w->nby_state[s->pub]);
    w->nby_state[st]++;
    metric_set(w->m.by_state[st], w->nby_state[st]);
    s->pub = st;
}

/* ---- Memory of an idle connection ---- */

/* A literal may pass RFC822.SIZE by this much. */
#define LITERAL_SLACK (1u << 20)

struct imap_parser *session_parser(struct imap_session *s)
{
    if (s->parser == NULL)
        s->parser = imap_parser_new((size_t)session_cfg(s)->max_email_size + LITERAL_SLACK,
                                    WATCHER_MAX_LINE);
    return s->parser;
}

void session_release_buffers(struct imap_session *s)
{
    if (imap_parser_buffered(s->parser) == 0) {
        imap_parser_free(s->parser);
        s->parser = NULL;
    }
    imap_conn_shrink(&s->conn);
}

/* ---- Connection teardown ---- */

void session_close(struct imap_session *s)
{
    imap_conn_close(&s->conn);
    session_disarm(s);
    if (s->prov != NULL) {
        provider_release(s->w->providers, s->prov);
        s->prov = NULL;
    }
    providers_cancel(&s->wait);
    imap_parser_free(s->parser);
    s->parser = NULL;
    session_wipe_buf(&s->cont);
    s->ncont = s->icont = 0;
    session_free_msgs(s);
    session_wipe_str(&s->user.username);
    session_wipe_str(&s->user.secret);
    session_wipe_str(&s->user.access);
    session_token_detach(s);
    s->has_caps = s->cap_idle = s->cap_starttls = s->cap_sasl_ir = s->cap_auth_plain = 0;
    s->cap_logindisabled = s->cap_literal_plus = s->cap_uidplus = 0;
    s->cap_notify = s->cap_special_use = s->cap_gmail = 0;
    session_boxes_reset(s);
    s->tls_up = s->authed = s->selected = 0;
    s->need_fetch = s->probing = s->healthy = 0;
    s->mb.uidvalidity = s->mb.uidnext = s->mb.last_uid = s->mb.base_uid = 0;
    s->max_uid_seen = 0;
    s->exists_mono = 0;
    session_set_watching(s, 0);
    s->epoch++;
    rreq_owner_move_on(&s->redis); /* Redis answers for this connection are dropped */
}

/* ---- Failure ---- */

static void fail(struct imap_session *s, enum fail_kind kind, int64_t min_ms, const char *why)
{
    if (s->state == S_DEAD)
        return;
    const char *at = state_names[s->state];
    struct metric *m = kind == F_AUTH || kind == F_REAUTH ? s->w->m.err_auth
                       : kind == F_THROTTLE               ? s->w->m.err_throttle
                       : kind == F_NET                    ? s->w->m.err_net
                       : kind == F_REDIS                  ? s->w->m.err_redis
                                                          : s->w->m.err_proto;
    metric_inc(m);
    if (kind == F_THROTTLE && s->prov != NULL)
        provider_throttled(s->w->providers, s->prov);
    session_close(s);
    const struct config *c = session_cfg(s);
    int64_t delay =
        policy_next_delay(&s->retry, kind, c->imap_backoff_min_ms, c->imap_backoff_max_ms);
    if (delay < min_ms)
        delay = min_ms;
    if (kind == F_AUTH)
        log_warn("IMAP login refused acct=%s state=%s err=\"%s\" retry_ms=%lld", s->uid, at, why,
                 (long long)delay);
    else
        log_warn("IMAP session failed acct=%s state=%s kind=%s err=\"%s\" retry_ms=%lld", s->uid,
                 at, policy_kind_name(kind), why, (long long)delay);
    session_store_publish(s, policy_pub_state(kind), why, 0);
    session_set_state(s, S_WAIT);
    session_arm_ms(s, delay);
}

void session_fail(struct imap_session *s, enum fail_kind kind, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fail(s, kind, 0, why);
}

void session_fail_after(struct imap_session *s, enum fail_kind kind, int64_t min_ms,
                        const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fail(s, kind, min_ms, why);
}

void session_conn_failed(struct imap_session *s, int err)
{
    enum fail_kind kind = err == -SIMAP_ECRYPTO ? F_PROTO : F_NET;
    const char *why = imap_conn_error();
    if (s->state == S_CONNECT && s->prov != NULL && strncmp(why, "connect: ", 9) == 0)
        session_fail(s, kind, "connect to %s:%d: %s", s->prov->host, s->prov->port, why + 9);
    else
        session_fail(s, kind, "%s", why);
}

/* ---- Output ---- */

void session_new_tag(struct imap_session *s)
{
    imap_tag_next(&s->tagger, s->tag);
}

void session_send(struct imap_session *s)
{
    int rc = imap_conn_flush(&s->conn);
    if (rc < 0)
        session_conn_failed(s, rc);
}

void session_send_command(struct imap_session *s, int built, enum sess_state st, const char *why)
{
    if (built < 0) {
        session_fail(s, F_PROTO, "%s", why);
        return;
    }
    session_set_state(s, st);
    session_arm_command(s);
    session_send(s);
}

void session_take_caps(struct imap_session *s, const struct imap_strlist *l)
{
    s->has_caps = 1;
    s->cap_idle = imap_strlist_has(l, "IDLE");
    s->cap_starttls = imap_strlist_has(l, "STARTTLS");
    s->cap_sasl_ir = imap_strlist_has(l, "SASL-IR");
    s->cap_auth_plain = imap_strlist_has(l, "AUTH=PLAIN");
    s->cap_logindisabled = imap_strlist_has(l, "LOGINDISABLED");
    s->cap_literal_plus = imap_strlist_has(l, "LITERAL+");
    s->cap_uidplus = imap_strlist_has(l, "UIDPLUS");
    s->cap_notify = imap_strlist_has(l, "NOTIFY");
    s->cap_special_use = imap_strlist_has(l, "SPECIAL-USE");
    s->cap_gmail = imap_strlist_has(l, "X-GM-EXT-1");
}
