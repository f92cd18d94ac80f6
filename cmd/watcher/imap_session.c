/*
 * cmd/watcher/imap_session: the per-user IMAP state machine's top: the
 * public API, the table of states (one row of handlers each) and the
 * dispatch of what happens to a session (a response, its deadline, its
 * connection's events) to the row of its state; loading the user, and the
 * check after a Redis reconnect. See imap_session.h for the states and
 * session_impl.h for the files below this one.
 *
 * Depends on: session_login, session_mailbox, session_base, session_store,
 * imap_conn, session_policy; proto/imap_parse, proto/imap_cmd.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/imap_session.h"

#include <inttypes.h>
#include <string.h>

#include <ev.h>

#include "cmd/watcher/session_impl.h"
#include "cmd/watcher/session_store.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "core/rconn.h"
#include "core/time.h"

static void start_load(struct imap_session *s);

/* ---- Deadlines of the states without a command pending ---- */

/* S_WAIT: the backoff is over. */
static void wait_over(struct imap_session *s)
{
    if (!rconn_is_connected(s->w->sessions))
        session_arm_ms(s, policy_redis_retry_delay(session_cfg(s)->imap_backoff_min_ms));
    else
        start_load(s); /* Redis is reachable: load the user again */
}

/* CONNECT, TLS, GREETING: one deadline for all three. */
static void connect_timeout(struct imap_session *s)
{
    session_fail(s, F_NET, "no connection and greeting within %d ms",
                 session_cfg(s)->imap_connect_timeout_ms);
}

/* A command of ours went unanswered. */
static void command_timeout(struct imap_session *s)
{
    session_fail(s, F_NET, "no answer to %s within %d ms", session_state_name(s->state),
                 session_cfg(s)->imap_command_timeout_ms);
}

/* ---- The state table ---- */

/*
 * What each state does with what may happen to it. NULL on_tagged or
 * on_continue: such an answer is a protocol error in that state; NULL
 * on_timeout: the state has no deadline (a Redis call is bounded by rconn's
 * own command timeout). Responses in GREETING all go to the greeting.
 */
struct state_row {
    /* Our pending command's tagged answer (ok: the condition is OK). */
    void (*on_tagged)(struct imap_session *s, const struct imap_response *r, int ok);
    /* A continuation request ("+"). */
    void (*on_continue)(struct imap_session *s);
    /* The state's deadline passed. */
    void (*on_timeout)(struct imap_session *s);
    unsigned awaits_server : 1; /* a command of ours waits: bytes re-arm the deadline */
    unsigned has_cursor : 1;    /* last_uid is the cursor this connection works from */
};

static const struct state_row states[S_COUNT] = {
    [S_NEW] = {NULL, NULL, NULL, 0, 0},
    [S_LOAD] = {NULL, NULL, NULL, 0, 0},
    [S_QUEUED] = {NULL, NULL, NULL, 0, 0},
    [S_TOKEN] = {NULL, NULL, NULL, 0, 0},
    [S_CONNECT] = {NULL, NULL, connect_timeout, 0, 0},
    [S_TLS] = {NULL, NULL, connect_timeout, 0, 0},
    [S_GREETING] = {NULL, NULL, connect_timeout, 0, 0},
    [S_CAPA] = {session_login_capa, NULL, command_timeout, 1, 0},
    [S_STARTTLS] = {session_login_starttls, NULL, command_timeout, 1, 0},
    [S_AUTH] = {session_login_auth, session_login_continue, command_timeout, 1, 0},
    [S_LIST] = {session_boxes_listed, NULL, command_timeout, 1, 0},
    [S_NOTIFY] = {session_boxes_notified, NULL, command_timeout, 1, 0},
    [S_EXAMINE] = {session_mailbox_examined, NULL, command_timeout, 1, 0},
    [S_UIDNEXT] = {session_mailbox_uidnext, NULL, command_timeout, 1, 0},
    [S_BASELINE] = {NULL, NULL, NULL, 0, 0},
    [S_FETCH] = {session_mailbox_fetched, NULL, command_timeout, 1, 1},
    [S_BODY] = {session_mailbox_body, NULL, command_timeout, 1, 1},
    [S_HASH] = {session_mailbox_hashed, NULL, command_timeout, 1, 1},
    [S_RECORD] = {NULL, NULL, NULL, 0, 1},
    [S_DELETE] = {session_mailbox_deleted, NULL, command_timeout, 1, 1},
    [S_EXPUNGE] = {session_mailbox_expunged, NULL, command_timeout, 1, 1},
    [S_IDLE_START] = {session_mailbox_idle_end, session_mailbox_idle_started, command_timeout, 1,
                      1},
    [S_IDLE] = {session_mailbox_idle_end, NULL, session_mailbox_idle_timer, 0, 1},
    [S_DONE] = {session_mailbox_idle_end, NULL, command_timeout, 1, 1},
    [S_POLL_WAIT] = {NULL, NULL, session_mailbox_poll, 0, 1},
    [S_NOOP] = {session_mailbox_noop, NULL, command_timeout, 1, 1},
    [S_STATUS] = {session_boxes_statused, NULL, command_timeout, 1, 1},
    [S_WAIT] = {NULL, NULL, wait_over, 0, 0},
    [S_DEAD] = {NULL, NULL, NULL, 0, 0},
};

/* ---- Responses ---- */

/* A tagged answer to our pending command; returns 1 when it is ours. */
static int is_ours(const struct imap_session *s, const struct imap_response *r)
{
    return r->kind == IMAP_RESP_TAGGED && r->tag.data != NULL && strcmp(r->tag.data, s->tag) == 0;
}

/* An untagged condition (OK, NO, BAD, BYE) outside the greeting. */
static void on_condition(struct imap_session *s, const struct imap_response *r)
{
    char text[200];
    if (r->cond == IMAP_COND_BYE) {
        session_fail(s, policy_is_throttle(r) ? F_THROTTLE : F_NET, "server said BYE: %s",
                     policy_server_text(r, text, sizeof text));
        return;
    }
    if (r->code.kind == IMAP_CODE_UIDVALIDITY && s->state == S_EXAMINE)
        s->mb.uidvalidity = r->code.number;
    else if (r->code.kind == IMAP_CODE_UIDNEXT && s->state == S_EXAMINE)
        s->mb.uidnext = r->code.number;
    else if (r->code.kind == IMAP_CODE_CAPABILITY)
        session_take_caps(s, &r->code.list);
    else if (r->code.kind == IMAP_CODE_ALERT)
        log_warn("server alert acct=%s text=\"%s\"", s->uid,
                 policy_server_text(r, text, sizeof text));
}

/* Handles one response; takes ownership of r. */
static void handle(struct imap_session *s, struct imap_response *r)
{
    const struct state_row *row = &states[s->state];
    if (s->state == S_GREETING) {
        session_login_greeting(s, r);
        imap_response_free(r);
        return;
    }
    switch (r->kind) {
    case IMAP_RESP_CONTINUE:
        if (row->on_continue != NULL)
            row->on_continue(s);
        else
            session_fail(s, F_PROTO, "unexpected continuation in state %s",
                         session_state_name(s->state));
        break;
    case IMAP_RESP_TAGGED:
        if (!is_ours(s, r))
            log_debugc("imap", "ignoring a stray tagged response acct=%s", s->uid);
        else if (row->on_tagged != NULL)
            row->on_tagged(s, r, r->cond == IMAP_COND_OK);
        else
            session_fail(s, F_PROTO, "unexpected tagged response in state %s",
                         session_state_name(s->state));
        break;
    case IMAP_RESP_COND:
        on_condition(s, r);
        break;
    case IMAP_RESP_CAPABILITY:
        session_take_caps(s, &r->list);
        break;
    case IMAP_RESP_EXISTS:
    case IMAP_RESP_RECENT:
        if (s->state == S_EXAMINE)
            break; /* the mailbox's size, not news */
        if (r->kind == IMAP_RESP_RECENT && r->number == 0)
            break;
        session_mailbox_news(s);
        break;
    case IMAP_RESP_FETCH:
        if (session_mailbox_fetch(s, r))
            return;
        break;
    case IMAP_RESP_LIST:
        session_boxes_list_item(s, r);
        break;
    case IMAP_RESP_STATUS:
        session_boxes_status(s, r);
        break;
    default:
        break; /* EXPUNGE, FLAGS, LSUB, ...: nothing for us */
    }
    imap_response_free(r);
}

/* Feeds n bytes to the parser and handles every complete response. Stops
 * when the connection ends (the epoch changes). */
static void feed(struct imap_session *s, const char *data, size_t n)
{
    unsigned epoch = s->epoch;
    while (n > 0) {
        size_t used = 0;
        struct imap_response *r = NULL;
        int rc = imap_parse_feed(session_parser(s), data, n, &used, &r);
        if (rc == IMAP_AGAIN)
            return;
        if (rc < 0) {
            if (rc == -SIMAP_ETOOBIG && (s->state == S_BODY || s->state == S_HASH) &&
                s->mb.imsg < s->mb.nmsgs) {
                /* Next time: too_large, and not hashed when parts overflow too. */
                s->no_partial = s->state == S_HASH;
                s->mb.force_too_large = s->mb.msgs[s->mb.imsg].uid;
            }
            session_fail(s, F_PROTO, "malformed response: %s", imap_parser_errstr(s->parser));
            return;
        }
        data += used;
        n -= used;
        handle(s, r);
        if (s->epoch != epoch || s->state == S_DEAD)
            return;
        if (s->state == S_TLS) {
            /* Plaintext after STARTTLS's OK would be taken as sent inside TLS
             * (the CVE-2011-0411 injection): refuse it. */
            if (n > 0)
                session_fail(s, F_PROTO, "data after STARTTLS's OK");
            return;
        }
        if (n == 0)
            return;
    }
}

/* ---- Loop callbacks ---- */

static void on_conn_connected(void *data)
{
    session_login_connected(data);
}

static void on_conn_tls_up(void *data)
{
    session_login_tls_up(data);
}

static void on_conn_data(void *data, const char *p, size_t n)
{
    struct imap_session *s = data;
    s->last_rx_mono = time_mono_ms();
    if (states[s->state].awaits_server)
        session_arm_command(s); /* the server is talking: the command deadline starts over */
    feed(s, p, n);
}

static void on_conn_error(void *data, int err, const char *msg)
{
    (void)msg; /* imap_conn_error() */
    session_conn_failed(data, err);
}

static const struct imap_conn_hooks conn_hooks = {
    .on_connected = on_conn_connected,
    .on_tls_up = on_conn_tls_up,
    .on_data = on_conn_data,
    .on_error = on_conn_error,
};

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct imap_session *s = io->data;
    s->busy++;
    imap_conn_io(&s->conn, &conn_hooks, revents);
    s->busy--;
    session_store_maybe_free(s);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct imap_session *s = t->data;
    s->busy++;
    if (states[s->state].on_timeout != NULL)
        states[s->state].on_timeout(s);
    s->busy--;
    session_store_maybe_free(s);
}

/* ---- Loading the user ---- */

static void on_loaded(struct imap_session *s, enum fail_kind kind, const char *why)
{
    if (why != NULL) {
        session_fail(s, kind, "%s", why);
        return;
    }
    if (s->pub == P_NONE)
        session_store_publish(s, P_CONNECTING, NULL, 0);
    session_login_queue(s);
}

static void start_load(struct imap_session *s)
{
    session_close(s);
    if (!session_store_lease_usable(s)) {
        /* The manager starts us again under the next generation. */
        session_set_state(s, S_NEW);
        return;
    }
    if (session_store_load_user(s, on_loaded) < 0) {
        session_set_state(s, S_WAIT);
        session_arm_ms(s, session_cfg(s)->imap_backoff_min_ms);
        return;
    }
    session_set_state(s, S_LOAD);
}

/* ---- After a Redis reconnect ---- */

void session_redis_lost(struct imap_session *s, int missing, const char *found_by)
{
    log_warn("Redis lost this user's latest writes (restarted from an older state?): examining "
             "the mailbox again acct=%s last_uid=%" PRIu32 " found_by=%s",
             s->uid, s->mb.last_uid, found_by);
    if (missing) {
        /* The cursor itself went: put back the one this connection started
         * from, or the new baseline would skip as old the messages recorded
         * in the writes Redis lost. */
        session_store_put_baseline(s);
    }
    policy_retry_reset(&s->retry);
    start_load(s); /* after the cursor, in Redis' order */
}

static void on_cursor(struct imap_session *s, int missing, unsigned long long uidvalidity,
                      unsigned long long last_uid)
{
    if (!states[s->state].has_cursor || !session_store_lease_usable(s))
        return; /* nothing kept from before, or started again anyway */
    if (!missing && uidvalidity == s->mb.uidvalidity && last_uid >= s->mb.last_uid)
        return;
    session_redis_lost(s, missing, "reconnect");
}

void imap_session_recheck(struct imap_session *s)
{
    if (!states[s->state].has_cursor || !session_store_lease_usable(s))
        return; /* nothing kept from before, or started again anyway */
    session_store_recheck(s, on_cursor);
}

/* ---- Public API ---- */

struct imap_session *imap_session_new(struct watcher *w, const char *uid, uint32_t k)
{
    size_t n = strlen(uid);
    struct imap_session *s = pool_alloc(w->pool, sizeof *s + n + 1);
    memcpy(s->uid, uid, n + 1);
    s->w = w;
    s->k = k;
    s->state = S_NEW;
    w->nby_state[P_NONE]++; /* s->pub, zeroed */
    policy_retry_init(&s->retry, w->cfg->imap_backoff_min_ms, w->cfg->imap_backoff_max_ms);
    imap_conn_init(&s->conn, w->loop, on_io, s);
    buf_init(&s->cont, IMAP_CONN_OUT_MAX);
    ev_init(&s->timer, on_timer);
    s->timer.data = s;
    w->nsessions++;
    metric_set(w->m.sessions, w->nsessions);
    return s;
}

void imap_session_start(struct imap_session *s, uint64_t gen)
{
    s->gen = gen;
    session_set_pub(s, P_NONE);
    start_load(s);
}

void imap_session_restart(struct imap_session *s)
{
    if (s->state == S_DEAD || s->state == S_NEW)
        return;
    log_info("user record changed; reconnecting acct=%s", s->uid);
    policy_retry_reset(&s->retry);
    s->busy++;
    start_load(s);
    s->busy--;
    session_store_maybe_free(s);
}

void imap_session_drop(struct imap_session *s, int polite)
{
    if (s->state == S_DEAD)
        return;
    if (polite && s->conn.phase == IMAP_CONN_OPEN) {
        /* Best effort, never waited for: leave IDLE if needed, then LOGOUT. */
        buf_reset(&s->conn.out);
        if (s->state == S_IDLE)
            imap_cmd_done(&s->conn.out);
        char tag[IMAP_TAG_SIZE];
        imap_tag_next(&s->tagger, tag);
        imap_cmd_logout(&s->conn.out, tag);
        imap_conn_write_now(&s->conn);
    }
    session_close(s);
    s->w->nsessions--;
    metric_set(s->w->m.sessions, s->w->nsessions);
    session_set_pub(s, P_NONE);
    s->w->nby_state[P_NONE]--;
    session_set_state(s, S_DEAD);
    session_store_bury(s);
}
