/*
 * cmd/watcher/session_impl.h: the inside of struct imap_session, shared by
 * the files that make one session and by nothing else. From the top down
 * (each file calls only those below it; upward only through the callbacks
 * it was given):
 *
 *   imap_session.c     the public API, the state table (one row of
 *                      handlers per state) and the dispatch of responses,
 *                      deadlines and connection events; LOAD, recheck
 *   session_login.c    QUEUED .. AUTH: connect, TLS, greeting, CAPABILITY,
 *                      STARTTLS, LOGIN/AUTHENTICATE
 *   session_mailbox.c  EXAMINE .. NOOP: baseline, fetch, record, IDLE, poll
 *   session_base.c     what every state uses: set_state(), deadlines,
 *                      fail(), sending a command, closing the connection
 *   session_store.c    its Redis calls (core/rreq drops stale answers), and
 *                      when a dropped session is freed
 *   imap_conn.c        socket and TLS I/O (knows nothing of sessions)
 *   session_policy.c   failure classes and reconnect delays (pure)
 *
 * A session is freed only when it is dropped (S_DEAD) and inside none of its
 * callbacks (busy == 0); Redis answers still owed to it are dropped then
 * (core/rreq); see session_store.h.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_SESSION_IMPL_H
#define CMD_WATCHER_SESSION_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ev.h>

#include "cmd/watcher/imap_conn.h"
#include "cmd/watcher/provider.h"
#include "cmd/watcher/session_policy.h"
#include "cmd/watcher/watcher.h"
#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/rreq.h"
#include "proto/imap_cmd.h"
#include "proto/imap_parse.h"

/* The states; imap_session.c has one table row (name, handlers) per state. */
enum sess_state {
    S_NEW,        /* created, no lease yet */
    S_LOAD,       /* HMGET of the user record in flight */
    S_QUEUED,     /* waiting for the provider: record, login rate, slot */
    S_TOKEN,      /* OAuth2: refreshing the access token before the login */
    S_CONNECT,    /* TCP connect in progress */
    S_TLS,        /* TLS handshake (implicit or after STARTTLS) */
    S_GREETING,   /* waiting for the server's greeting */
    S_CAPA,       /* CAPABILITY sent */
    S_STARTTLS,   /* STARTTLS sent */
    S_AUTH,       /* LOGIN or AUTHENTICATE sent */
    S_LIST,       /* LIST "" "*": the watched mailboxes' names (several watched) */
    S_NOTIFY,     /* NOTIFY SET: news of the other watched mailboxes (RFC 5465) */
    S_EXAMINE,    /* EXAMINE <mailbox> sent (SELECT INBOX when the provider deletes tracers) */
    S_UIDNEXT,    /* UID FETCH * (UID) sent: the server gave no UIDNEXT */
    S_BASELINE,   /* cursor_baseline in flight */
    S_FETCH,      /* UID FETCH last+1:* (UID RFC822.SIZE ENVELOPE) sent */
    S_BODY,       /* UID FETCH n BODY.PEEK[] sent */
    S_HASH,       /* UID FETCH n BODY.PEEK[]<offset.length> sent: a message over the limit */
    S_RECORD,     /* record_mail in flight */
    S_DELETE,     /* UID STORE n +FLAGS.SILENT (\Deleted) sent: a tracer, its provider says so */
    S_EXPUNGE,    /* UID EXPUNGE n sent (UIDPLUS) */
    S_IDLE_START, /* IDLE sent, waiting for "+" */
    S_IDLE,       /* idling */
    S_DONE,       /* DONE sent, waiting for IDLE's tagged answer */
    S_POLL_WAIT,  /* no IDLE: connected, waiting for the next poll */
    S_NOOP,       /* no IDLE: NOOP sent */
    S_STATUS,     /* STATUS <mailbox> (UIDNEXT UIDVALIDITY): another watched mailbox checked */
    S_WAIT,       /* not connected, backoff timer running */
    S_DEAD,       /* dropped; freed when nothing refers to it */
    S_COUNT
};

/* A new message found by FETCH, waiting to be recorded. */
struct pending_msg {
    uint32_t uid;
    uint64_t size;
    struct imap_response *env; /* the FETCH response holding its ENVELOPE; owned */
};

/* The mailbox as this connection sees it, and the mail being recorded. */
struct mailbox_view {
    uint32_t uidvalidity, uidnext;
    uint32_t last_uid;              /* the cursor: highest UID recorded */
    uint32_t base_uid;              /* the cursor cursor_baseline gave this connection */
    uint32_t force_too_large;       /* a UID whose body overflowed the parser */
    uint32_t nmsgs, imsg, msgs_cap; /* UIDs are 32-bit: so is any count of messages */
    struct pending_msg *msgs;       /* S_FETCH .. S_RECORD, in UID order */
    union {
        struct imap_response *body; /* S_BODY: the FETCH with BODY[] (hashing == 0) */
        struct crypto_sha1 *hash;   /* S_HASH: the message's bytes so far (hashing == 1) */
    };
};

/* The user record, from LOAD. */
struct user_record {
    char *pid, *tag, *code;  /* partner id, user tag, provider code: one block, owned by pid */
    char *username, *secret; /* between LOAD and AUTH only; wiped */
    char *access;            /* OAuth2 access token, between LOAD (or S_TOKEN) and AUTH; wiped */
    int64_t access_exp_ms;   /* its expiry (wall ms), 0 when unknown */
};

/* One watched mailbox of a user who watches more than INBOX. */
struct watch_box {
    char *spec; /* as configured (proto/mailboxes): "INBOX", "\\Junk", "Work"; in the set's block */
    char *name; /* its name on the server (LIST): spec itself, or a pooled string; NULL while
                   not found */
    uint32_t uidvalidity; /* its cursor as this connection knows it: 0 until read */
    uint32_t last_uid, base_uid;
    unsigned special : 1; /* spec is an RFC 6154 attribute */
    unsigned dirty : 1;   /* may hold new mail: examine it and fetch */
    unsigned missing : 1; /* not on the server (LIST, EXAMINE or STATUS said so) */
};

/* The mailboxes of a user who watches more than INBOX (NULL otherwise:
 * INBOX only costs this pointer alone), in one pooled block (core/pool: it
 * lives as long as the user is held): the set, its boxes, their specs.
 * s->mb describes the one selected. */
struct box_set {
    struct watch_box *b;     /* right after the set, in its block */
    uint16_t bytes;          /* the block's size */
    uint8_t n;               /* boxes, at most MAILBOXES_MAX */
    uint8_t cur;             /* the one selected (s->mb describes it); n: none */
    uint8_t primary;         /* where the session waits in IDLE: the first one found */
    uint8_t ask;             /* S_STATUS: the box asked */
    unsigned notify : 1;     /* NOTIFY SET accepted: the others' news come as STATUS */
    unsigned status_now : 1; /* check the others with STATUS before the next IDLE */
    unsigned then_fetch : 1; /* fetch the primary mailbox after that (renewal, probe, poll) */
    int64_t status_due_mono; /* the next such round (without NOTIFY) */
    char *missing_pub;       /* mailboxes_missing as last written; NULL: none */
};

struct token_job;

struct imap_session {
    struct imap_conn conn; /* socket, TLS and output buffer */
    ev_timer timer;        /* the one deadline: connect, command, IDLE renewal, backoff */
    struct watcher *w;
    struct provider_waiter wait; /* in the provider's FIFO while QUEUED */
    struct provider *prov;       /* holding a connection slot when set */
    struct imap_parser *parser;  /* while a response may come; NULL when idle (session_parser()) */
    struct buf cont;             /* AUTH: the rest of a command after a synchronising stop */
    uint32_t cont_seg[IMAP_CMD_MAX_SYNC]; /* its pieces' lengths (each under IMAP_CONN_OUT_MAX) */
    unsigned char ncont, icont;           /* pieces, pieces sent */
    struct imap_tagger tagger;
    char tag[IMAP_TAG_SIZE]; /* of the command we wait for */

    enum sess_state state; /* changed only through set_state() */
    enum pub_state pub;    /* last written to the user hash */
    unsigned epoch;        /* bumps per connection attempt: stale Redis answers are ignored */
    int busy;              /* inside one of our callbacks */
    struct session_retry retry;
    struct rreq_owner redis; /* Redis calls in flight (core/rreq); moves on with epoch */
    uint32_t cursor_epoch;   /* LOAD: the user's archives and restores so far; only a session
                                of the current one writes the cursor (cursor_baseline.lua) */
    uint32_t max_uid_seen;   /* S_UIDNEXT: the highest UID the server gave */
    uint64_t gen;            /* generation that holds the lease */

    /* What the server said it can do (CAPABILITY), for this connection. */
    unsigned has_caps : 1; /* a CAPABILITY list was seen */
    unsigned cap_idle : 1;
    unsigned cap_starttls : 1;
    unsigned cap_sasl_ir : 1;
    unsigned cap_auth_plain : 1;
    unsigned cap_logindisabled : 1;
    unsigned cap_literal_plus : 1;
    unsigned cap_uidplus : 1;
    unsigned tls_up : 1;
    unsigned authed : 1;
    unsigned need_fetch : 1;
    unsigned probing : 1;
    unsigned watching : 1;        /* counted in the watching gauge */
    unsigned healthy : 1;         /* reached IDLE or polling on this connection */
    unsigned auth_strikes : 3;    /* code-less NO answers to our logins in a row */
    unsigned idle_refusals : 3;   /* IDLE commands refused in a row */
    unsigned tok_force : 1;       /* OAuth2: refresh before the next login, whatever the expiry */
    unsigned tok_forced : 1;      /* a refresh after a refused login was made: no second one */
    unsigned hashing : 1;         /* mb holds a hash, not a body */
    unsigned hash_more : 1;       /* S_HASH: the last part came whole, the message goes on */
    unsigned hash_bad : 1;        /* S_HASH: the server answered without our <offset> */
    unsigned no_partial : 1;      /* force_too_large's body overflowed a partial fetch too */
    unsigned selected : 1;        /* INBOX SELECTed (read-write): tracers may be deleted */
    unsigned cap_notify : 1;      /* RFC 5465 NOTIFY */
    unsigned cap_special_use : 1; /* RFC 6154 SPECIAL-USE: LIST ... RETURN (SPECIAL-USE) */
    unsigned cap_gmail : 1;       /* X-GM-EXT-1 */

    uint32_t k;
    struct mailbox_view mb;
    int64_t exists_mono;     /* new mail seen (latency start), 0 when none pending */
    int64_t last_rx_mono;    /* last bytes from the server */
    int64_t idle_since_mono; /* IDLE began */

    struct user_record user;
    struct box_set *boxes;     /* NULL: INBOX only */
    int64_t tok_due_ms;        /* OAuth2: refresh the access token at (wall ms); 0: not planned */
    struct token_job *tok_job; /* OAuth2: the refresh under way, or NULL */

    char uid[];
};

static inline const struct config *session_cfg(const struct imap_session *s)
{
    return s->w->cfg;
}

/* ---- imap_session.c ---- */

/* Redis lost writes this connection saw acknowledged (restarted from an
 * older state): examines the mailbox again from the cursor Redis holds, or,
 * when missing (the cursor itself went), from the one this connection
 * started from. found_by names who noticed, for the log. */
void session_redis_lost(struct imap_session *s, int missing, const char *found_by);

/* ---- session_base.c: shared by the state machine's files ---- */

/* The state's name, for logs ("IDLE"). */
const char *session_state_name(enum sess_state st);

/* Changes the state, logging "from -> to" at debug (component imap). */
void session_set_state(struct imap_session *s, enum sess_state to);

/* The one deadline: in ms from now; off; the command timeout (a command of
 * ours is pending: re-armed by every byte received). */
void session_arm_ms(struct imap_session *s, int64_t ms);
void session_disarm(struct imap_session *s);
void session_arm_command(struct imap_session *s);

/* Counts the session in the watching gauge, or not. */
void session_set_watching(struct imap_session *s, int on);

/* s->pub = st, keeping the watcher's sessions-by-state gauges. */
void session_set_pub(struct imap_session *s, enum pub_state st);

/* Closes the connection, if any, and forgets everything about it (a new
 * epoch: Redis answers for it are not delivered). */
void session_close(struct imap_session *s);

/* Ends the connection with a failure of class kind: counted, logged, shown
 * in the user hash; the session waits (S_WAIT) for the policy's delay. */
void session_fail(struct imap_session *s, enum fail_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As session_fail(), waiting at least min_ms (a Retry-After) before the
 * next attempt. */
void session_fail_after(struct imap_session *s, enum fail_kind kind, int64_t min_ms,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fails with the connection's error err (imap_conn's -SIMAP_ECRYPTO is a
 * protocol failure, anything else a network one). */
void session_conn_failed(struct imap_session *s, int err);

/* A new tag in s->tag, for the command about to be built into conn.out. */
void session_new_tag(struct imap_session *s);

/* Sends what conn.out holds. */
void session_send(struct imap_session *s);

/* Sends the command just built (built: the builder's result) and waits for
 * its answer in state st; a builder failure ends the session with why. */
void session_send_command(struct imap_session *s, int built, enum sess_state st, const char *why);

/* Takes a CAPABILITY list. */
void session_take_caps(struct imap_session *s, const struct imap_strlist *l);

/* The connection's parser, made when missing: an idle session keeps none
 * (session_release_buffers()), and the bytes that end its idleness make
 * it again. */
struct imap_parser *session_parser(struct imap_session *s);

/* Entering IDLE or POLL_WAIT: frees the parser when it holds no partial
 * response, the empty output buffer and OpenSSL's buffers. */
void session_release_buffers(struct imap_session *s);

/* ---- session_login.c: QUEUED .. AUTH ---- */

/* The user record is loaded: waits for the provider (S_QUEUED), then
 * connects. */
void session_login_queue(struct imap_session *s);
/* Connects to the provider (s->prov, its slot held): CONNECT. */
void session_login_connect(struct imap_session *s);
/* imap_conn's hooks, past the session's guard. */
void session_login_connected(struct imap_session *s);
void session_login_tls_up(struct imap_session *s);
/* The greeting (S_GREETING); takes nothing. */
void session_login_greeting(struct imap_session *s, const struct imap_response *r);
/* Tagged answers, one per state; ok: the condition is OK. */
void session_login_capa(struct imap_session *s, const struct imap_response *r, int ok);
void session_login_starttls(struct imap_session *s, const struct imap_response *r, int ok);
void session_login_auth(struct imap_session *s, const struct imap_response *r, int ok);
/* "+" during S_AUTH. */
void session_login_continue(struct imap_session *s);

/* ---- session_token.c: OAuth2 access tokens ---- */

/* The provider's go-ahead for an OAuth2 session: logs in with the stored
 * access token when it is fresh, else refreshes it first (S_TOKEN). */
void session_token_login(struct imap_session *s);
/* A login with the access token was refused: returns 1 when a refresh is
 * tried once (the session then waits briefly and logs in again), 0 when
 * that was tried already. */
int session_token_refused(struct imap_session *s, const char *why);
/* While connected: starts a refresh in the background when one is due. */
void session_token_tick(struct imap_session *s);
/* When the next background refresh is due, in ms from now; -1: none. */
int64_t session_token_due_in(const struct imap_session *s);
/* The session lets go of its refresh (which still stores its result). */
void session_token_detach(struct imap_session *s);

/* ---- session_boxes.c: several mailboxes (LIST, NOTIFY, STATUS) ---- */

/* Logged in: INBOX only, EXAMINE it; else LIST, NOTIFY when the server has
 * it, then each mailbox in turn. */
void session_boxes_start(struct imap_session *s);
/* Tagged answers of S_LIST, S_NOTIFY and S_STATUS. */
void session_boxes_listed(struct imap_session *s, const struct imap_response *r, int ok);
void session_boxes_notified(struct imap_session *s, const struct imap_response *r, int ok);
void session_boxes_statused(struct imap_session *s, const struct imap_response *r, int ok);
/* Untagged LIST and STATUS responses. */
void session_boxes_list_item(struct imap_session *s, const struct imap_response *r);
void session_boxes_status(struct imap_session *s, const struct imap_response *r);
/* EXAMINE of the selected mailbox refused: returns 1 when that mailbox was
 * set aside as missing and the session went on, 0 when the caller fails. */
int session_boxes_examine_refused(struct imap_session *s, const char *text);
/* The selected mailbox's new mail is all recorded: on to another mailbox
 * with news, back to the primary one, or IDLE. */
void session_boxes_caught_up(struct imap_session *s);
/* IDLE (or a poll's NOOP) ended: STATUS round when due, then the primary
 * mailbox's fetch when it may hold news, else the others with news. */
void session_boxes_resume(struct imap_session *s);
/* The primary mailbox is to be fetched after the coming round whatever
 * the news (an IDLE renewal or probe, a poll). */
void session_boxes_check_primary(struct imap_session *s);
/* 1 when another mailbox has news or a STATUS round is asked for: IDLE
 * must end at once. */
int session_boxes_pending(const struct imap_session *s);
/* When the next STATUS round is due, in ms from now; -1: none. */
int64_t session_boxes_status_due_in(const struct imap_session *s);
/* Just examined: 1 when the selected mailbox's cursor is known from earlier
 * on this connection with the same UIDVALIDITY (no cursor_baseline). */
int session_boxes_cursor_kept(struct imap_session *s);
/* 1 when the selected mailbox was named by its RFC 6154 attribute. */
int session_box_special(const struct imap_session *s);
/* The selected mailbox: its name on the server ("INBOX" when INBOX only),
 * and its spec for the cursor (NULL for INBOX). */
const char *session_box_name(const struct imap_session *s);
const char *session_box_spec(const struct imap_session *s);
/* Builds s->boxes from a mailbox list's JSON (NULL: INBOX), the user's
 * mailboxes_missing as Redis holds it being missing (NULL: none; cleared
 * when INBOX alone is watched now); returns 0, or -1 with why filled in
 * when the list cannot be read. */
int session_boxes_load(struct imap_session *s, const char *json, const char *missing, char *why,
                       size_t whylen);
/* A new connection: every mailbox to be found and examined again. */
void session_boxes_reset(struct imap_session *s);
void session_boxes_free(struct imap_session *s);

/* ---- session_mailbox.c: EXAMINE .. NOOP ---- */

/* EXAMINE the selected mailbox (session_box_name()). */
void session_mailbox_examine(struct imap_session *s);
/* IDLE, or waiting for the next poll without it. */
void session_mailbox_idle_or_poll(struct imap_session *s);
/* UID FETCH of the selected mailbox's new mail. */
void session_mailbox_fetch_new(struct imap_session *s);
/* Tagged answers, one per state. */
void session_mailbox_examined(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_uidnext(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_fetched(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_body(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_hashed(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_deleted(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_expunged(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_idle_end(struct imap_session *s, const struct imap_response *r, int ok);
void session_mailbox_noop(struct imap_session *s, const struct imap_response *r, int ok);
/* "+" during S_IDLE_START. */
void session_mailbox_idle_started(struct imap_session *s);
/* An untagged FETCH: returns 1 when it took r (ownership), 0 when the
 * caller frees it. */
int session_mailbox_fetch(struct imap_session *s, struct imap_response *r);
/* EXISTS or RECENT: new mail. */
void session_mailbox_news(struct imap_session *s);
/* News elsewhere (another mailbox): out of IDLE, or a poll now. */
void session_mailbox_wake(struct imap_session *s);
/* Deadlines of S_IDLE (renewal, probe) and S_POLL_WAIT (the next poll). */
void session_mailbox_idle_timer(struct imap_session *s);
void session_mailbox_poll(struct imap_session *s);

/* ---- Memory release, for every file of the session ---- */

static inline void session_wipe_str(char **p)
{
    crypto_wipe_str(p);
}

static inline void session_wipe_buf(struct buf *b)
{
    if (b->data != NULL)
        crypto_wipe(b->data, b->cap);
    buf_free(b);
}

/* Forgets the messages found by FETCH (and a fetched body). */
static inline void session_free_msgs(struct imap_session *s)
{
    for (size_t i = 0; i < s->mb.nmsgs; i++)
        imap_response_free(s->mb.msgs[i].env);
    xfree(s->mb.msgs);
    s->mb.msgs = NULL;
    s->mb.nmsgs = s->mb.imsg = s->mb.msgs_cap = 0;
    if (s->hashing)
        crypto_sha1_free(s->mb.hash);
    else
        imap_response_free(s->mb.body);
    s->mb.body = NULL;
    s->hashing = 0;
}

#endif
