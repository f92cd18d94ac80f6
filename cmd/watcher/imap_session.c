/*
 * cmd/watcher/imap_session: the per-user IMAP state machine (see
 * imap_session.h for the states, the error classes and the memory rules).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/imap_session.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "cmd/watcher/event.h"
#include "core/incarnation.h"
#include "cmd/watcher/provider.h"
#include "cmd/watcher/tls.h"
#include "cmd/watcher/watcher.h"
#include "core/backoff.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"
#include "proto/imap_cmd.h"
#include "proto/imap_parse.h"

#define READ_BUDGET   16           /* reads per wake-up */
#define READ_CHUNK    (16 * 1024)  /* one read */
#define OUT_MAX       (256 * 1024) /* bound of a session's output buffer */
#define LITERAL_SLACK (1u << 20)   /* a literal may pass RFC822.SIZE by this much */

/* A NO to LOGIN without [AUTHENTICATIONFAILED] or a like code may be a
 * passing server fault: the login counts as refused (auth_failed, hours of
 * backoff) only after this many in a row. */
#define AUTH_STRIKES 3

/* IDLE refused this many times in a row (the server advertised it): poll. */
#define IDLE_REFUSALS 3

enum sess_state {
    S_NEW,        /* created, no lease yet */
    S_LOAD,       /* HMGET of the user record in flight */
    S_QUEUED,     /* waiting for the provider: record, login rate, slot */
    S_CONNECT,    /* TCP connect in progress */
    S_TLS,        /* TLS handshake (implicit or after STARTTLS) */
    S_GREETING,   /* waiting for the server's greeting */
    S_CAPA,       /* CAPABILITY sent */
    S_STARTTLS,   /* STARTTLS sent */
    S_AUTH,       /* LOGIN or AUTHENTICATE sent */
    S_EXAMINE,    /* EXAMINE INBOX sent */
    S_UIDNEXT,    /* UID FETCH * (UID) sent: the server gave no UIDNEXT */
    S_BASELINE,   /* cursor_baseline in flight */
    S_FETCH,      /* UID FETCH last+1:* (UID RFC822.SIZE ENVELOPE) sent */
    S_BODY,       /* UID FETCH n BODY.PEEK[] sent */
    S_RECORD,     /* record_mail in flight */
    S_IDLE_START, /* IDLE sent, waiting for "+" */
    S_IDLE,       /* idling */
    S_DONE,       /* DONE sent, waiting for IDLE's tagged answer */
    S_POLL_WAIT,  /* no IDLE: connected, waiting for the next poll */
    S_NOOP,       /* no IDLE: NOOP sent */
    S_WAIT,       /* not connected, backoff timer running */
    S_DEAD,       /* dropped; freed when nothing refers to it */
};

static const char *const state_names[] = {
    "NEW",  "LOAD",    "QUEUED",    "CONNECT",  "TLS",   "GREETING", "CAPA",   "STARTTLS",
    "AUTH", "EXAMINE", "UIDNEXT",   "BASELINE", "FETCH", "BODY",     "RECORD", "IDLE_START",
    "IDLE", "DONE",    "POLL_WAIT", "NOOP",     "WAIT",  "DEAD",
};

/* What went wrong, for state, backoff and metrics. */
enum fail_kind { F_NET, F_PROTO, F_AUTH, F_THROTTLE, F_REDIS, F_CONFIG };

/* The public state last written to the user hash. */
enum pub_state { P_NONE, P_CONNECTING, P_WATCHING, P_AUTH_FAILED, P_THROTTLED, P_ERROR };
static const char *const pub_names[] = {"",          "connecting", "watching", "auth_failed",
                                        "throttled", "error"};

/* A new message found by FETCH, waiting to be recorded. */
struct pending_msg {
    uint32_t uid;
    uint64_t size;
    struct imap_response *env; /* the FETCH response holding its ENVELOPE; owned */
};

struct imap_session {
    ev_io io;       /* the socket; events follow what we wait for */
    ev_timer timer; /* the one deadline: connect, command, IDLE renewal, backoff */
    struct watcher *w;
    struct provider_waiter wait; /* in the provider's FIFO while QUEUED */
    struct provider *prov;       /* holding a connection slot when set */
    struct imap_parser *parser;  /* while connected */
    SSL *ssl;
    struct buf out;  /* bytes to send; freed when empty */
    struct buf cont; /* AUTH: the rest of a command after a synchronising stop */
    size_t cont_seg[IMAP_CMD_MAX_SYNC];
    size_t ncont, icont;
    struct imap_tagger tagger;
    char tag[IMAP_TAG_SIZE]; /* of the command we wait for */

    enum sess_state state;
    enum pub_state pub;
    enum fail_kind backoff_kind;
    struct backoff backoff;
    int fd;
    int io_events;
    unsigned epoch;    /* bumps per connection attempt: stale Redis answers are ignored */
    int redis_pending; /* Redis calls whose callbacks have not run */
    int busy;          /* inside one of our callbacks */
    uint64_t gen;      /* generation that holds the lease */

    unsigned has_caps : 1;
    unsigned cap_idle : 1;
    unsigned cap_starttls : 1;
    unsigned cap_sasl_ir : 1;
    unsigned cap_auth_plain : 1;
    unsigned cap_logindisabled : 1;
    unsigned cap_literal_plus : 1;
    unsigned tls_up : 1;
    unsigned authed : 1;
    unsigned need_fetch : 1;
    unsigned probing : 1;
    unsigned watching : 1;      /* counted in the watching gauge */
    unsigned healthy : 1;       /* reached IDLE or polling on this connection */
    unsigned auth_strikes : 3;  /* code-less NO answers to our logins in a row */
    unsigned idle_refusals : 3; /* IDLE commands refused in a row */

    uint32_t k;
    uint32_t uidvalidity, uidnext, last_uid;
    uint32_t base_uid;        /* the cursor cursor_baseline gave this connection */
    uint32_t max_uid_seen;    /* S_UIDNEXT */
    uint32_t force_too_large; /* a UID whose body overflowed the parser */
    int64_t exists_mono;      /* new mail seen (latency start), 0 when none pending */
    int64_t last_rx_mono;     /* last bytes from the server */
    int64_t idle_since_mono;  /* IDLE began */

    struct pending_msg *msgs;
    size_t nmsgs, imsg, msgs_cap;
    struct imap_response *body; /* S_BODY: the FETCH with BODY[] */

    char *pid, *tag_user, *code; /* from the user record */
    char *username, *secret;     /* between LOAD and AUTH only; wiped */
    char errbuf[192];

    struct imap_session *zprev, *znext; /* on the dropped list while S_DEAD */
    char uid[];
};

/* Sessions dropped while Redis still owes them a callback. */
static struct imap_session *zombies;

static void start_load(struct imap_session *s);
static void fail(struct imap_session *s, enum fail_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void next_message(struct imap_session *s);
static void start_fetch(struct imap_session *s);
static void after_caps(struct imap_session *s);
static void enter_idle_or_poll(struct imap_session *s);

const char *imap_session_state(const struct imap_session *s)
{
    return state_names[s->state];
}

static const struct config *cfg(const struct imap_session *s)
{
    return s->w->cfg;
}

static void set_state(struct imap_session *s, enum sess_state to)
{
    if (s->state == to)
        return;
    log_debugc("imap", "session state acct=%s from=%s to=%s", s->uid, state_names[s->state],
               state_names[to]);
    s->state = to;
}

/* ---- Timer ---- */

static void arm_ms(struct imap_session *s, int64_t ms)
{
    ev_timer_stop(s->w->loop, &s->timer);
    ev_timer_set(&s->timer, (double)(ms < 0 ? 0 : ms) / 1000.0, 0.);
    ev_timer_start(s->w->loop, &s->timer);
}

static void disarm(struct imap_session *s)
{
    ev_timer_stop(s->w->loop, &s->timer);
}

/* A command of ours is pending: the server must say something within the
 * command timeout (re-armed by every byte received). */
static void arm_command(struct imap_session *s)
{
    arm_ms(s, cfg(s)->imap_command_timeout_ms);
}

/* ---- Memory release ---- */

static void free_msgs(struct imap_session *s)
{
    for (size_t i = 0; i < s->nmsgs; i++)
        imap_response_free(s->msgs[i].env);
    xfree(s->msgs);
    s->msgs = NULL;
    s->nmsgs = s->imsg = s->msgs_cap = 0;
    imap_response_free(s->body);
    s->body = NULL;
}

static void wipe_str(char **p)
{
    if (*p != NULL) {
        crypto_wipe(*p, strlen(*p));
        xfree(*p);
        *p = NULL;
    }
}

static void wipe_buf(struct buf *b)
{
    if (b->data != NULL)
        crypto_wipe(b->data, b->cap);
    buf_free(b);
}

static void free_session(struct imap_session *s)
{
    if (s->zprev != NULL || s->znext != NULL || zombies == s) {
        if (s->zprev != NULL)
            s->zprev->znext = s->znext;
        else
            zombies = s->znext;
        if (s->znext != NULL)
            s->znext->zprev = s->zprev;
    }
    free_msgs(s);
    wipe_str(&s->username);
    wipe_str(&s->secret);
    wipe_buf(&s->cont);
    buf_free(&s->out);
    imap_parser_free(s->parser);
    xfree(s->pid);
    xfree(s->tag_user);
    xfree(s->code);
    xfree(s);
}

/* Frees a dropped session once nothing refers to it any more. */
static void maybe_free(struct imap_session *s)
{
    if (s->state == S_DEAD && s->busy == 0 && s->redis_pending == 0)
        free_session(s);
}

/* ---- Watching gauge ---- */

static void set_watching(struct imap_session *s, int on)
{
    if (s->watching == (unsigned)(on != 0))
        return;
    s->watching = on != 0;
    s->w->nwatching += on ? 1 : -1;
    metric_set(s->w->m.watching, s->w->nwatching);
}

/* ---- Connection teardown ---- */

static void set_io(struct imap_session *s, int events)
{
    if (s->io_events == events && (events == 0 || ev_is_active(&s->io)))
        return;
    ev_io_stop(s->w->loop, &s->io);
    s->io_events = events;
    if (events != 0 && s->fd >= 0) {
        ev_io_set(&s->io, s->fd, events);
        ev_io_start(s->w->loop, &s->io);
    }
}

/* Closes the connection, if any, and forgets everything about it. */
static void close_conn(struct imap_session *s)
{
    set_io(s, 0);
    disarm(s);
    if (s->ssl != NULL) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    if (s->prov != NULL) {
        provider_release(s->w->providers, s->prov);
        s->prov = NULL;
    }
    providers_cancel(&s->wait);
    imap_parser_free(s->parser);
    s->parser = NULL;
    buf_free(&s->out);
    wipe_buf(&s->cont);
    s->ncont = s->icont = 0;
    free_msgs(s);
    wipe_str(&s->username);
    wipe_str(&s->secret);
    s->has_caps = s->cap_idle = s->cap_starttls = s->cap_sasl_ir = s->cap_auth_plain = 0;
    s->cap_logindisabled = s->cap_literal_plus = s->tls_up = s->authed = 0;
    s->need_fetch = s->probing = s->healthy = 0;
    s->uidvalidity = s->uidnext = s->last_uid = s->base_uid = s->max_uid_seen = 0;
    s->exists_mono = 0;
    set_watching(s, 0);
    s->epoch++;
}

/* ---- Redis calls ---- */

/* Every Redis call of a session carries this, so an answer for an older
 * connection (or a dropped session) is recognised. */
struct sreq {
    struct imap_session *s;
    unsigned epoch;
};

static struct sreq *sreq_new(struct imap_session *s)
{
    struct sreq *r = xmalloc(sizeof *r);
    r->s = s;
    r->epoch = s->epoch;
    s->redis_pending++;
    return r;
}

/* Undoes sreq_new() when the call could not be submitted. */
static void sreq_cancel(struct sreq *r)
{
    r->s->redis_pending--;
    xfree(r);
}

/* Opens a Redis callback: returns the session when the answer is still
 * wanted (then call sreq_end() after handling), else NULL (already released).
 * On -SIMAP_ESHUTDOWN the session may be freed: it is not touched. */
static struct imap_session *sreq_begin(struct sreq *r, int err)
{
    if (err == -SIMAP_ESHUTDOWN) {
        xfree(r);
        return NULL;
    }
    struct imap_session *s = r->s;
    unsigned epoch = r->epoch;
    xfree(r);
    s->redis_pending--;
    if (s->state == S_DEAD || epoch != s->epoch) {
        maybe_free(s);
        return NULL;
    }
    s->busy++;
    return s;
}

static void sreq_end(struct imap_session *s)
{
    s->busy--;
    maybe_free(s);
}

static void lease_keys(const struct imap_session *s, char *lease, size_t llen, char *alive,
                       size_t alen)
{
    snprintf(lease, llen, "si:{%" PRIu32 "}:lease:%s", s->k, s->uid);
    incarnation_alive_key(s->w->inc, s->k, alive, alen);
}

/* The lease is ours only while our generation is the incarnation's. */
static int lease_usable(struct imap_session *s)
{
    return incarnation_is_live(s->w->inc) && incarnation_generation(s->w->inc) == s->gen;
}

static void on_user_state(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct imap_session *s = sreq_begin(privdata, err);
    if (s == NULL)
        return;
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        metric_inc(s->w->m.stale);
        log_warn("user_state refused: the lease is not ours acct=%s", s->uid);
        watcher_lost_lease(s->uid, "user_state found another lease holder");
    }
    sreq_end(s);
}

/* Writes the public state (and last_error, last_login_at) when it changes. */
static void publish(struct imap_session *s, enum pub_state st, const char *error, int login)
{
    if (st == s->pub && error == NULL && !login)
        return;
    if (!lease_usable(s))
        return;
    s->pub = st;
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], user[SCHEMA_KEY_MAX], now[24];
    lease_keys(s, lease, sizeof lease, alive, sizeof alive);
    snprintf(user, sizeof user, "si:{%" PRIu32 "}:user:%s", s->k, s->uid);
    snprintf(now, sizeof now, "%lld", (long long)time_now_ms());
    const char *argv[10] = {lease,   alive,        user, incarnation_token(s->w->inc),
                            "state", pub_names[st]};
    int argc = 6;
    if (error != NULL) {
        argv[argc++] = "last_error";
        argv[argc++] = error;
    }
    if (login) {
        argv[argc++] = "last_login_at";
        argv[argc++] = now;
    }
    struct sreq *r = sreq_new(s);
    if (rconn_script(s->w->redis, on_user_state, r, "user_state", 3, argc, argv, NULL) < 0)
        sreq_cancel(r);
}

/* ---- Failure and backoff ---- */

static const char *kind_name(enum fail_kind k)
{
    switch (k) {
    case F_NET:
        return "network";
    case F_PROTO:
        return "protocol";
    case F_AUTH:
        return "auth";
    case F_THROTTLE:
        return "throttled";
    case F_REDIS:
        return "redis";
    case F_CONFIG:
        return "config";
    }
    return "?";
}

/* A delay in [min/2, min] of the first IMAP backoff step: retries after a
 * Redis failure, and while Redis is out of reach. */
static int64_t redis_retry_delay(const struct imap_session *s)
{
    struct backoff b;
    int64_t min = cfg(s)->imap_backoff_min_ms;
    backoff_init(&b, min, min);
    return min / 2 + backoff_next_rand(&b) / 2;
}

static int64_t next_delay(struct imap_session *s, enum fail_kind kind)
{
    /* Redis failed, not the IMAP server: nothing to back off from there,
     * and the session must not come back minutes after Redis does. S_WAIT
     * holds until Redis is reachable (on_timer). */
    if (kind == F_REDIS)
        return redis_retry_delay(s);
    int auth = kind == F_AUTH || kind == F_CONFIG;
    int was_auth = s->backoff_kind == F_AUTH || s->backoff_kind == F_CONFIG;
    if (auth != was_auth || s->backoff.cap_ms == 0) {
        if (auth)
            backoff_init(&s->backoff, WATCHER_AUTH_BACKOFF_MIN_MS, WATCHER_AUTH_BACKOFF_MAX_MS);
        else
            backoff_init(&s->backoff, cfg(s)->imap_backoff_min_ms, cfg(s)->imap_backoff_max_ms);
    }
    s->backoff_kind = kind;
    int64_t d = backoff_next_rand(&s->backoff);
    if (auth && d < WATCHER_AUTH_BACKOFF_MIN_MS / 2)
        d = WATCHER_AUTH_BACKOFF_MIN_MS / 2; /* never hammer a refused login */
    return d;
}

static void fail(struct imap_session *s, enum fail_kind kind, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (s->state == S_DEAD)
        return;
    const char *at = state_names[s->state];
    struct metric *m = kind == F_AUTH       ? s->w->m.err_auth
                       : kind == F_THROTTLE ? s->w->m.err_throttle
                       : kind == F_NET      ? s->w->m.err_net
                       : kind == F_REDIS    ? s->w->m.err_redis
                                            : s->w->m.err_proto;
    metric_inc(m);
    if (kind == F_THROTTLE && s->prov != NULL)
        provider_throttled(s->w->providers, s->prov);
    close_conn(s);
    int64_t delay = next_delay(s, kind);
    if (kind == F_AUTH)
        log_warn("IMAP login refused acct=%s state=%s err=\"%s\" retry_ms=%lld", s->uid, at, why,
                 (long long)delay);
    else
        log_warn("IMAP session failed acct=%s state=%s kind=%s err=\"%s\" retry_ms=%lld", s->uid,
                 at, kind_name(kind), why, (long long)delay);
    enum pub_state st = kind == F_AUTH ? P_AUTH_FAILED : kind == F_THROTTLE ? P_THROTTLED : P_ERROR;
    publish(s, st, why, 0);
    set_state(s, S_WAIT);
    arm_ms(s, delay);
}

/* ---- Output ---- */

static void flush(struct imap_session *s)
{
    while (s->out.len > 0) {
        ssize_t n;
        int want = 0;
        if (s->ssl != NULL) {
            n = tls_write(s->ssl, s->out.data, s->out.len, &want, s->errbuf, sizeof s->errbuf);
            if (n < 0) {
                fail(s, n == -SIMAP_ECRYPTO ? F_PROTO : F_NET, "%s", s->errbuf);
                return;
            }
        } else {
            n = write(s->fd, s->out.data, s->out.len);
            if (n < 0) {
                int e = errno;
                if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
                    want = TLS_WANT_WRITE;
                    n = 0;
                } else {
                    fail(s, F_NET, "write: %s", strerror(e));
                    return;
                }
            }
        }
        if (n == 0) {
            /* Blocked: wait for the socket. A TLS write wanting a read goes on
             * at the next read event (the read side is always armed). */
            set_io(s, want == TLS_WANT_WRITE ? EV_READ | EV_WRITE : EV_READ);
            return;
        }
        buf_consume(&s->out, (size_t)n);
    }
    buf_shrink(&s->out);
    set_io(s, EV_READ);
}

/* Sends a built command (already in s->out). */
static void send_out(struct imap_session *s)
{
    flush(s);
}

/* Starts a tagged command: a new tag in s->tag, then the builder appends. */
static void new_tag(struct imap_session *s)
{
    imap_tag_next(&s->tagger, s->tag);
}

/* ---- Capabilities ---- */

static void take_caps(struct imap_session *s, const struct imap_strlist *l)
{
    s->has_caps = 1;
    s->cap_idle = imap_strlist_has(l, "IDLE");
    s->cap_starttls = imap_strlist_has(l, "STARTTLS");
    s->cap_sasl_ir = imap_strlist_has(l, "SASL-IR");
    s->cap_auth_plain = imap_strlist_has(l, "AUTH=PLAIN");
    s->cap_logindisabled = imap_strlist_has(l, "LOGINDISABLED");
    s->cap_literal_plus = imap_strlist_has(l, "LITERAL+");
}

/* Sends the command just built into s->out (built: the builder's result)
 * and waits for its answer in state st; a builder failure ends the session
 * with why. */
static void send_command(struct imap_session *s, int built, enum sess_state st, const char *why)
{
    if (built < 0) {
        fail(s, F_PROTO, "%s", why);
        return;
    }
    set_state(s, st);
    arm_command(s);
    send_out(s);
}

static void send_capability(struct imap_session *s)
{
    new_tag(s);
    send_command(s, imap_cmd_capability(&s->out, s->tag), S_CAPA, "cannot build CAPABILITY");
}

/* ---- Classification of refusals ---- */

static int text_has(const struct imap_str *t, const char *needle)
{
    if (t->data == NULL)
        return 0;
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= t->len; i++)
        if (strncasecmp(t->data + i, needle, n) == 0)
            return 1;
    return 0;
}

static int is_throttle(const struct imap_response *r)
{
    switch (r->code.kind) {
    case IMAP_CODE_LIMIT:
    case IMAP_CODE_UNAVAILABLE:
    case IMAP_CODE_INUSE:
        return 1;
    default:
        break;
    }
    if (r->code.kind == IMAP_CODE_OTHER && r->code.name.data != NULL &&
        (strcasecmp(r->code.name.data, "THROTTLED") == 0 ||
         strcasecmp(r->code.name.data, "OVERQUOTA") == 0))
        return 1;
    return text_has(&r->text, "too many") || text_has(&r->text, "rate limit") ||
           text_has(&r->text, "try again later") || text_has(&r->text, "throttl");
}

static int is_auth_refusal(const struct imap_response *r)
{
    switch (r->code.kind) {
    case IMAP_CODE_AUTHENTICATIONFAILED:
    case IMAP_CODE_AUTHORIZATIONFAILED:
    case IMAP_CODE_EXPIRED:
    case IMAP_CODE_PRIVACYREQUIRED:
    case IMAP_CODE_CONTACTADMIN:
        return 1;
    default:
        return 0;
    }
}

/* Copies the server's text for last_error (printable ASCII, bounded). */
static const char *server_text(const struct imap_response *r, char *out, size_t outlen)
{
    size_t j = 0;
    const char *t = r->text.data != NULL ? r->text.data : "";
    for (size_t i = 0; i < r->text.len && j + 1 < outlen && i < 160; i++)
        out[j++] = (t[i] >= 0x20 && t[i] < 0x7f) ? t[i] : '?';
    out[j] = '\0';
    return out;
}

/* ---- Connect, TLS ---- */

static void start_tls(struct imap_session *s)
{
    s->ssl = tls_new(s->fd, s->prov->host, s->errbuf, sizeof s->errbuf);
    if (s->ssl == NULL) {
        fail(s, F_PROTO, "%s", s->errbuf);
        return;
    }
    set_state(s, S_TLS);
    set_io(s, EV_READ | EV_WRITE);
}

static void drive_tls(struct imap_session *s)
{
    int want = 0;
    int rc = tls_handshake(s->ssl, &want, s->errbuf, sizeof s->errbuf);
    if (rc < 0) {
        fail(s, rc == -SIMAP_ECRYPTO ? F_PROTO : F_NET, "%s", s->errbuf);
        return;
    }
    if (rc == 0) {
        set_io(s, want == TLS_WANT_WRITE ? EV_READ | EV_WRITE : EV_READ);
        return;
    }
    s->tls_up = 1;
    set_io(s, EV_READ);
    if (s->prov->tls == PROVIDER_TLS_STARTTLS) {
        /* RFC 3501 6.2.1: capabilities learnt before STARTTLS are void. */
        s->has_caps = 0;
        send_capability(s);
        return;
    }
    set_state(s, S_GREETING); /* implicit TLS: the greeting comes now */
}

static void on_connected(struct imap_session *s)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        fail(s, F_NET, "connect to %s:%d: %s", s->prov->host, s->prov->port, strerror(soerr));
        return;
    }
    if (s->prov->tls == PROVIDER_TLS_IMPLICIT) {
        start_tls(s);
        if (s->state == S_TLS)
            drive_tls(s);
        return;
    }
    set_state(s, S_GREETING);
    set_io(s, EV_READ);
}

static void connect_now(struct imap_session *s)
{
    struct provider *p = s->prov;
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        fail(s, F_NET, "socket: %s", strerror(e));
        return;
    }
    s->fd = fd;
    int one = 1, idle = 60, intvl = 15, cnt = 4;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->parser = imap_parser_new((size_t)cfg(s)->max_email_size + LITERAL_SLACK, WATCHER_MAX_LINE);
    buf_init(&s->out, OUT_MAX);
    set_state(s, S_CONNECT);
    arm_ms(s, cfg(s)->imap_connect_timeout_ms);
    if (connect(fd, (struct sockaddr *)&p->addr, p->addrlen) < 0) {
        int e = errno;
        if (e != EINPROGRESS) {
            fail(s, F_NET, "connect to %s:%d: %s", p->host, p->port, strerror(e));
            return;
        }
        set_io(s, EV_WRITE);
        return;
    }
    on_connected(s);
}

static void on_provider_go(struct provider_waiter *wt, struct provider *p, int err, void *data)
{
    (void)wt;
    struct imap_session *s = data;
    s->busy++;
    if (err < 0) {
        fail(s, F_CONFIG, "provider %s: %s", s->code, err_str(err));
    } else {
        s->prov = p;
        if (p->tls == PROVIDER_TLS_NONE)
            log_debugc("imap", "plaintext IMAP allowed by provider acct=%s code=%s", s->uid,
                       p->code);
        connect_now(s);
    }
    s->busy--;
    maybe_free(s);
}

/* ---- Authentication ---- */

/* Appends the built command in tmp to out up to its first stop and keeps the
 * rest in cont, split at the other stops. */
static int queue_with_stops(struct imap_session *s, struct buf *tmp,
                            const struct imap_cmd_sync *sync)
{
    size_t first = sync->n > 0 ? sync->at[0] : tmp->len;
    int rc = buf_append(&s->out, tmp->data, first);
    if (rc < 0 || sync->n == 0)
        return rc;
    buf_init(&s->cont, OUT_MAX);
    rc = buf_append(&s->cont, tmp->data + first, tmp->len - first);
    s->ncont = sync->n;
    s->icont = 0;
    for (size_t i = 0; i < sync->n; i++) {
        size_t end = i + 1 < sync->n ? sync->at[i + 1] : tmp->len;
        s->cont_seg[i] = end - sync->at[i];
    }
    return rc;
}

static void send_auth(struct imap_session *s)
{
    if (s->prov->tls != PROVIDER_TLS_NONE && !s->tls_up) {
        fail(s, F_CONFIG, "refusing to send credentials without TLS");
        return;
    }
    struct buf tmp;
    buf_init(&tmp, 4 * IMAP_CMD_MAX_CREDENTIAL + 1024);
    struct imap_cmd_sync sync = {0};
    unsigned flags = s->cap_literal_plus ? IMAP_CMD_LITERAL_PLUS : 0;
    new_tag(s);
    int rc;
    const char *user = s->username != NULL ? s->username : "";
    const char *secret = s->secret != NULL ? s->secret : "";
    if (s->prov->auth == PROVIDER_AUTH_OAUTH2)
        rc = imap_cmd_authenticate_xoauth2(&tmp, &sync, s->tag, user, secret, s->cap_sasl_ir);
    else if (s->cap_auth_plain)
        rc = imap_cmd_authenticate_plain(&tmp, &sync, s->tag, user, secret, s->cap_sasl_ir);
    else if (!s->cap_logindisabled)
        rc = imap_cmd_login(&tmp, &sync, s->tag, user, secret, flags);
    else
        rc = -SIMAP_ESTATE;
    if (rc == 0)
        rc = queue_with_stops(s, &tmp, &sync);
    wipe_buf(&tmp);
    wipe_str(&s->secret);
    if (rc == -SIMAP_ESTATE) {
        fail(s, F_CONFIG, "server disables LOGIN and offers no AUTH=PLAIN");
        return;
    }
    if (rc < 0) {
        fail(s, F_CONFIG, "cannot build the login command: %s", err_str(rc));
        return;
    }
    set_state(s, S_AUTH);
    arm_command(s);
    send_out(s);
}

/* "+" during AUTH: the next piece of the command, or an empty answer to an
 * XOAUTH2 error challenge (the tagged NO follows). */
static void auth_continue(struct imap_session *s)
{
    if (s->icont < s->ncont) {
        size_t off = 0;
        for (size_t i = 0; i < s->icont; i++)
            off += s->cont_seg[i];
        if (buf_append(&s->out, s->cont.data + off, s->cont_seg[s->icont]) < 0) {
            fail(s, F_PROTO, "output buffer full");
            return;
        }
        s->icont++;
        if (s->icont == s->ncont) {
            wipe_buf(&s->cont);
            s->ncont = s->icont = 0;
        }
    } else if (imap_cmd_sasl_empty(&s->out) < 0) {
        fail(s, F_PROTO, "output buffer full");
        return;
    }
    send_out(s);
}

static void send_examine(struct imap_session *s)
{
    struct imap_cmd_sync sync = {0};
    new_tag(s);
    if (imap_cmd_examine(&s->out, &sync, s->tag, "INBOX", 0) < 0) {
        fail(s, F_PROTO, "cannot build EXAMINE");
        return;
    }
    s->uidvalidity = s->uidnext = 0;
    set_state(s, S_EXAMINE);
    arm_command(s);
    send_out(s);
}

static void after_caps(struct imap_session *s)
{
    if (s->authed) {
        send_examine(s);
        return;
    }
    if (s->prov->tls == PROVIDER_TLS_STARTTLS && !s->tls_up) {
        if (!s->cap_starttls) {
            fail(s, F_CONFIG, "server offers no STARTTLS (provider requires it)");
            return;
        }
        new_tag(s);
        send_command(s, imap_cmd_starttls(&s->out, s->tag), S_STARTTLS, "cannot build STARTTLS");
        return;
    }
    send_auth(s);
}

/* ---- Baseline and fetch ---- */

static void on_baseline(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct imap_session *s = sreq_begin(privdata, err);
    if (s == NULL)
        return;
    if (s->state != S_BASELINE) {
        sreq_end(s);
        return;
    }
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        fail(s, F_REDIS, "cursor_baseline: %s",
             err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "unexpected reply"));
        sreq_end(s);
        return;
    }
    long long status = reply->element[0]->integer;
    if (status < 0) {
        metric_inc(s->w->m.stale);
        watcher_lost_lease(s->uid, "cursor_baseline found another lease holder");
        sreq_end(s);
        return;
    }
    const redisReply *last = reply->element[2];
    char *end = NULL;
    unsigned long long v = last->type == REDIS_REPLY_STRING ? strtoull(last->str, &end, 10) : 0;
    if (end == NULL || *end != '\0' || v > UINT32_MAX) {
        fail(s, F_REDIS, "cursor_baseline returned a malformed cursor");
        sreq_end(s);
        return;
    }
    s->last_uid = s->base_uid = (uint32_t)v;
    if (status == 1)
        log_info("new mailbox baseline acct=%s uidvalidity=%" PRIu32 " last_uid=%" PRIu32, s->uid,
                 s->uidvalidity, s->last_uid);
    start_fetch(s);
    sreq_end(s);
}

static void start_baseline(struct imap_session *s)
{
    if (!lease_usable(s)) {
        fail(s, F_REDIS, "incarnation not live");
        return;
    }
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], cur[SCHEMA_KEY_MAX], uv[16], last[16];
    lease_keys(s, lease, sizeof lease, alive, sizeof alive);
    snprintf(cur, sizeof cur, "si:{%" PRIu32 "}:cur:%s", s->k, s->uid);
    snprintf(uv, sizeof uv, "%" PRIu32, s->uidvalidity);
    snprintf(last, sizeof last, "%" PRIu32, s->uidnext > 0 ? s->uidnext - 1 : 0);
    const char *argv[] = {lease, alive, cur, incarnation_token(s->w->inc), uv, last};
    struct sreq *r = sreq_new(s);
    if (rconn_script(s->w->redis, on_baseline, r, "cursor_baseline", 3, 6, argv, NULL) < 0) {
        sreq_cancel(r);
        fail(s, F_REDIS, "cannot queue cursor_baseline");
        return;
    }
    set_state(s, S_BASELINE);
    disarm(s); /* rconn's command timeout bounds the wait */
}

static void start_fetch(struct imap_session *s)
{
    free_msgs(s);
    s->need_fetch = 0;
    new_tag(s);
    uint32_t first = s->last_uid == UINT32_MAX ? UINT32_MAX : s->last_uid + 1;
    send_command(s, imap_cmd_uid_fetch_envelopes(&s->out, s->tag, first), S_FETCH,
                 "cannot build UID FETCH");
}

static int cmp_msg(const void *a, const void *b)
{
    uint32_t x = ((const struct pending_msg *)a)->uid, y = ((const struct pending_msg *)b)->uid;
    return x < y ? -1 : x > y;
}

/* A FETCH response during S_FETCH; takes ownership of r. */
static void collect(struct imap_session *s, struct imap_response *r)
{
    if (!(r->fetch.has & IMAP_FETCH_UID) || r->fetch.uid <= s->last_uid) {
        imap_response_free(r); /* "n:*" returns the last message even when old */
        return;
    }
    for (size_t i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i].uid == r->fetch.uid) {
            imap_response_free(r); /* sent twice */
            return;
        }
    }
    if (s->nmsgs == s->msgs_cap) {
        s->msgs_cap = s->msgs_cap ? s->msgs_cap * 2 : 8;
        s->msgs = xrealloc(s->msgs, s->msgs_cap * sizeof *s->msgs);
    }
    struct pending_msg *m = &s->msgs[s->nmsgs++];
    m->uid = r->fetch.uid;
    m->size = (r->fetch.has & IMAP_FETCH_RFC822_SIZE) ? r->fetch.rfc822_size : 0;
    m->env = r;
}

static void on_recorded(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct imap_session *s = sreq_begin(privdata, err);
    if (s == NULL)
        return;
    if (s->state != S_RECORD) {
        sreq_end(s);
        return;
    }
    struct pending_msg *m = &s->msgs[s->imsg];
    switch (event_result_of(reply, err)) {
    case EVENT_RECORDED:
        metric_inc(s->w->m.recorded);
        if (s->exists_mono != 0)
            metric_observe(s->w->m.record_latency,
                           (double)(time_mono_ms() - s->exists_mono) / 1000.0);
        log_debugc("imap", "mail recorded acct=%s uidvalidity=%" PRIu32 " uid=%" PRIu32, s->uid,
                   s->uidvalidity, m->uid);
        break;
    case EVENT_OLD:
        metric_inc(s->w->m.duplicates);
        break;
    case EVENT_UNWATCHED:
        /* Archived or disconnected before users.c has seen it (it drops the
         * session within a second): the message is not announced. */
        log_info("mail not announced: the user is no longer watched acct=%s uid=%" PRIu32, s->uid,
                 m->uid);
        imap_response_free(m->env);
        m->env = NULL;
        s->imsg++;
        next_message(s);
        sreq_end(s);
        return;
    case EVENT_STALE:
        metric_inc(s->w->m.stale);
        log_warn("record_mail refused: stale lease acct=%s uid=%" PRIu32, s->uid, m->uid);
        watcher_lost_lease(s->uid, "record_mail found the lease gone");
        sreq_end(s);
        return;
    case EVENT_UIDVALIDITY:
    case EVENT_NOCURSOR:
        fail(s, F_REDIS, "cursor changed under us; examining again");
        sreq_end(s);
        return;
    case EVENT_FAILED:
        fail(s, F_REDIS, "record_mail: %s",
             err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "unexpected reply"));
        sreq_end(s);
        return;
    }
    s->last_uid = m->uid;
    imap_response_free(m->env);
    m->env = NULL;
    s->imsg++;
    next_message(s);
    sreq_end(s);
}

/* Records message m (body may be NULL: too large, or no body). */
static void record(struct imap_session *s, struct pending_msg *m, const struct imap_str *body,
                   int too_large)
{
    if (!lease_usable(s)) {
        fail(s, F_REDIS, "incarnation not live");
        return;
    }
    struct mail_event ev = {
        .uid = s->uid,
        .k = s->k,
        .pid = s->pid,
        .code = s->code,
        .tag = s->tag_user,
        .uidvalidity = s->uidvalidity,
        .msg_uid = m->uid,
        .size = m->size,
        .env = (m->env != NULL && (m->env->fetch.has & IMAP_FETCH_ENVELOPE))
                   ? &m->env->fetch.envelope
                   : NULL,
        .raw = body != NULL ? body->data : NULL,
        .raw_len = body != NULL ? body->len : 0,
        .too_large = too_large,
    };
    if (body != NULL && ev.size == 0)
        ev.size = body->len;
    if (too_large)
        metric_inc(s->w->m.too_large);
    char alive[SCHEMA_KEY_MAX];
    incarnation_alive_key(s->w->inc, s->k, alive, sizeof alive);
    struct sreq *r = sreq_new(s);
    int rc = event_record(s->w->redis, s->w->keys, &ev, incarnation_token(s->w->inc), alive,
                          on_recorded, r);
    imap_response_free(s->body); /* the payload holds its own copy now */
    s->body = NULL;
    if (rc < 0) {
        sreq_cancel(r);
        fail(s, F_REDIS, "cannot record uid %" PRIu32 ": %s", m->uid, err_str(rc));
        return;
    }
    set_state(s, S_RECORD);
    disarm(s);
}

static void next_message(struct imap_session *s)
{
    if (s->imsg >= s->nmsgs) {
        free_msgs(s);
        if (s->need_fetch) {
            start_fetch(s);
            return;
        }
        s->exists_mono = 0;
        enter_idle_or_poll(s);
        return;
    }
    struct pending_msg *m = &s->msgs[s->imsg];
    if (m->size > (uint64_t)cfg(s)->max_email_size || m->uid == s->force_too_large) {
        record(s, m, NULL, 1);
        return;
    }
    new_tag(s);
    send_command(s, imap_cmd_uid_fetch_body(&s->out, s->tag, m->uid), S_BODY,
                 "cannot build UID FETCH BODY.PEEK[]");
}

/* ---- IDLE and polling ---- */

static void became_healthy(struct imap_session *s)
{
    if (s->healthy)
        return;
    s->healthy = 1;
    backoff_reset(&s->backoff);
    set_watching(s, 1);
    publish(s, P_WATCHING, NULL, 1);
    log_debugc("imap", "watching acct=%s idle=%d", s->uid, s->cap_idle);
}

static void arm_idle_timer(struct imap_session *s)
{
    int64_t now = time_mono_ms();
    int64_t renew_at = s->idle_since_mono + (int64_t)s->prov->idle_renew_s * 1000;
    int64_t probe_at = s->last_rx_mono + (int64_t)cfg(s)->imap_probe_sec * 1000;
    int64_t at = renew_at < probe_at ? renew_at : probe_at;
    arm_ms(s, at - now);
}

static void enter_idle_or_poll(struct imap_session *s)
{
    if (s->cap_idle) {
        new_tag(s);
        send_command(s, imap_cmd_idle(&s->out, s->tag), S_IDLE_START, "cannot build IDLE");
        return;
    }
    became_healthy(s);
    set_state(s, S_POLL_WAIT);
    imap_parser_shrink(s->parser);
    if (s->ssl != NULL)
        tls_idle(s->ssl);
    arm_ms(s, (int64_t)cfg(s)->imap_poll_sec * 1000);
}

static void leave_idle(struct imap_session *s)
{
    send_command(s, imap_cmd_done(&s->out), S_DONE, "cannot build DONE");
}

static void idle_started(struct imap_session *s)
{
    set_state(s, S_IDLE);
    s->idle_refusals = 0;
    became_healthy(s);
    s->idle_since_mono = time_mono_ms();
    s->probing = 0;
    if (s->need_fetch) {
        /* Mail came while IDLE was starting: leave at once. */
        leave_idle(s);
        return;
    }
    /* Idle sessions keep no buffers (DESIGN.md section 3, "Memory"). */
    s->w->idle_entries++;
    imap_parser_shrink(s->parser);
    buf_shrink(&s->out);
    if (s->ssl != NULL)
        tls_idle(s->ssl);
    arm_idle_timer(s);
}

/* ---- Responses ---- */

static void on_greeting(struct imap_session *s, struct imap_response *r)
{
    if (r->kind != IMAP_RESP_COND) {
        fail(s, F_PROTO, "expected a greeting");
        return;
    }
    char text[200];
    if (r->cond == IMAP_COND_BYE) {
        fail(s, is_throttle(r) ? F_THROTTLE : F_NET, "server refused the connection: %s",
             server_text(r, text, sizeof text));
        return;
    }
    if (r->code.kind == IMAP_CODE_CAPABILITY)
        take_caps(s, &r->code.list);
    if (r->cond == IMAP_COND_PREAUTH) {
        if (s->prov->tls == PROVIDER_TLS_STARTTLS && !s->tls_up) {
            fail(s, F_CONFIG, "server pre-authenticated a plaintext connection");
            return;
        }
        s->authed = 1;
    } else if (r->cond != IMAP_COND_OK) {
        fail(s, F_PROTO, "unexpected greeting");
        return;
    }
    disarm(s);
    if (!s->has_caps)
        send_capability(s);
    else
        after_caps(s);
}

/* A tagged answer to our pending command; returns 1 when it is ours. */
static int is_ours(const struct imap_session *s, const struct imap_response *r)
{
    return r->kind == IMAP_RESP_TAGGED && r->tag.data != NULL && strcmp(r->tag.data, s->tag) == 0;
}

static void on_tagged(struct imap_session *s, struct imap_response *r)
{
    char text[200];
    int ok = r->cond == IMAP_COND_OK;
    switch (s->state) {
    case S_CAPA:
        if (!ok) {
            fail(s, F_PROTO, "CAPABILITY refused: %s", server_text(r, text, sizeof text));
            return;
        }
        if (r->code.kind == IMAP_CODE_CAPABILITY)
            take_caps(s, &r->code.list);
        s->has_caps = 1;
        after_caps(s);
        return;
    case S_STARTTLS:
        if (!ok) {
            fail(s, F_CONFIG, "STARTTLS refused: %s", server_text(r, text, sizeof text));
            return;
        }
        if (imap_parser_buffered(s->parser) > 0) {
            /* Plaintext after the OK would be injected before TLS (CVE-2011-0411 style). */
            fail(s, F_PROTO, "data after STARTTLS's OK");
            return;
        }
        start_tls(s);
        if (s->state == S_TLS)
            drive_tls(s);
        return;
    case S_AUTH:
        wipe_buf(&s->cont);
        s->ncont = s->icont = 0;
        if (!ok) {
            server_text(r, text, sizeof text);
            if (is_throttle(r))
                fail(s, F_THROTTLE, "login throttled: %s", text);
            else if (r->cond == IMAP_COND_BAD && !is_auth_refusal(r))
                fail(s, F_PROTO, "login rejected as malformed: %s", text);
            else if (is_auth_refusal(r) || s->auth_strikes + 1 >= AUTH_STRIKES) {
                s->auth_strikes = AUTH_STRIKES;
                fail(s, F_AUTH, "login refused: %s", text);
            } else {
                s->auth_strikes++;
                fail(s, F_PROTO, "login refused without a reason code (%d of %d): %s",
                     (int)s->auth_strikes, AUTH_STRIKES, text);
            }
            return;
        }
        s->authed = 1;
        s->auth_strikes = 0;
        wipe_str(&s->username);
        metric_inc(s->w->m.logins);
        provider_login_ok(s->prov);
        if (r->code.kind == IMAP_CODE_CAPABILITY) {
            take_caps(s, &r->code.list);
            send_examine(s);
        } else if (!s->cap_idle) {
            send_capability(s); /* IDLE may appear after login */
        } else {
            send_examine(s);
        }
        return;
    case S_EXAMINE:
        if (!ok) {
            fail(s, F_PROTO, "EXAMINE INBOX refused: %s", server_text(r, text, sizeof text));
            return;
        }
        if (s->uidvalidity == 0) {
            fail(s, F_PROTO, "EXAMINE gave no UIDVALIDITY");
            return;
        }
        if (s->uidnext == 0) {
            new_tag(s);
            s->max_uid_seen = 0;
            send_command(s, imap_cmd_uid_fetch_last(&s->out, s->tag), S_UIDNEXT,
                         "output buffer full");
            return;
        }
        start_baseline(s);
        return;
    case S_UIDNEXT:
        /* An empty mailbox may answer NO or BAD to "*": nothing is old then. */
        s->uidnext = s->max_uid_seen + 1;
        start_baseline(s);
        return;
    case S_FETCH:
        if (!ok) {
            fail(s, F_PROTO, "UID FETCH refused: %s", server_text(r, text, sizeof text));
            return;
        }
        if (s->nmsgs > 1)
            qsort(s->msgs, s->nmsgs, sizeof *s->msgs, cmp_msg);
        s->imsg = 0;
        next_message(s);
        return;
    case S_BODY: {
        if (!ok) {
            fail(s, F_PROTO, "UID FETCH BODY.PEEK[] refused: %s",
                 server_text(r, text, sizeof text));
            return;
        }
        struct pending_msg *m = &s->msgs[s->imsg];
        if (s->body == NULL) {
            /* Expunged between the two fetches: nothing to announce. */
            log_info("message vanished before its body was fetched acct=%s uid=%" PRIu32, s->uid,
                     m->uid);
            imap_response_free(m->env);
            m->env = NULL;
            s->imsg++;
            next_message(s);
            return;
        }
        record(s, m, &s->body->fetch.body, 0);
        return;
    }
    case S_IDLE_START:
    case S_IDLE:
    case S_DONE:
        if (!ok && s->state == S_IDLE_START) {
            /* IDLE advertised but refused: a passing fault reconnects; a
             * server that keeps refusing it is polled instead. */
            if (s->idle_refusals + 1 < IDLE_REFUSALS) {
                s->idle_refusals++;
                fail(s, F_PROTO, "IDLE refused: %s", server_text(r, text, sizeof text));
                return;
            }
            log_warn("server refuses IDLE; polling instead acct=%s poll_sec=%d", s->uid,
                     cfg(s)->imap_poll_sec);
            s->cap_idle = 0;
            enter_idle_or_poll(s);
            return;
        }
        if (!ok) {
            fail(s, F_PROTO, "IDLE ended with %s: %s", r->cond == IMAP_COND_NO ? "NO" : "BAD",
                 server_text(r, text, sizeof text));
            return;
        }
        /* IDLE over (ours or the server's): look for mail, then IDLE again.
         * A fetch after every renewal or probe also catches a lost EXISTS. */
        start_fetch(s);
        return;
    case S_NOOP:
        if (!ok) {
            fail(s, F_PROTO, "NOOP refused: %s", server_text(r, text, sizeof text));
            return;
        }
        start_fetch(s);
        return;
    default:
        fail(s, F_PROTO, "unexpected tagged response in state %s", state_names[s->state]);
        return;
    }
}

/* Handles one response; takes ownership of r. */
static void handle(struct imap_session *s, struct imap_response *r)
{
    char text[200];
    if (s->state == S_GREETING) {
        on_greeting(s, r);
        imap_response_free(r);
        return;
    }
    switch (r->kind) {
    case IMAP_RESP_CONTINUE:
        if (s->state == S_AUTH)
            auth_continue(s);
        else if (s->state == S_IDLE_START)
            idle_started(s);
        else
            fail(s, F_PROTO, "unexpected continuation in state %s", state_names[s->state]);
        break;
    case IMAP_RESP_TAGGED:
        if (is_ours(s, r))
            on_tagged(s, r);
        else
            log_debugc("imap", "ignoring a stray tagged response acct=%s", s->uid);
        break;
    case IMAP_RESP_COND:
        if (r->cond == IMAP_COND_BYE) {
            fail(s, is_throttle(r) ? F_THROTTLE : F_NET, "server said BYE: %s",
                 server_text(r, text, sizeof text));
            break;
        }
        if (r->code.kind == IMAP_CODE_UIDVALIDITY && s->state == S_EXAMINE)
            s->uidvalidity = r->code.number;
        else if (r->code.kind == IMAP_CODE_UIDNEXT && s->state == S_EXAMINE)
            s->uidnext = r->code.number;
        else if (r->code.kind == IMAP_CODE_CAPABILITY)
            take_caps(s, &r->code.list);
        else if (r->code.kind == IMAP_CODE_ALERT)
            log_warn("server alert acct=%s text=\"%s\"", s->uid, server_text(r, text, sizeof text));
        break;
    case IMAP_RESP_CAPABILITY:
        take_caps(s, &r->list);
        break;
    case IMAP_RESP_EXISTS:
    case IMAP_RESP_RECENT:
        if (s->state == S_EXAMINE)
            break; /* the mailbox's size, not news */
        if (r->kind == IMAP_RESP_RECENT && r->number == 0)
            break;
        if (s->exists_mono == 0)
            s->exists_mono = time_mono_ms();
        s->need_fetch = 1;
        if (s->state == S_IDLE)
            leave_idle(s);
        else if (s->state == S_POLL_WAIT)
            start_fetch(s);
        break;
    case IMAP_RESP_FETCH:
        if (s->state == S_FETCH) {
            collect(s, r);
            return;
        }
        if (s->state == S_UIDNEXT && (r->fetch.has & IMAP_FETCH_UID)) {
            if (r->fetch.uid > s->max_uid_seen)
                s->max_uid_seen = r->fetch.uid;
            break;
        }
        if (s->state == S_BODY && (r->fetch.has & IMAP_FETCH_BODY) &&
            r->fetch.body_section.data != NULL && r->fetch.body_section.len == 0 &&
            (!(r->fetch.has & IMAP_FETCH_UID) || r->fetch.uid == s->msgs[s->imsg].uid)) {
            imap_response_free(s->body);
            s->body = r;
            return;
        }
        break; /* flag changes and the like */
    default:
        break; /* EXPUNGE, FLAGS, LIST, ...: nothing for us */
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
        int rc = imap_parse_feed(s->parser, data, n, &used, &r);
        if (rc == IMAP_AGAIN)
            return;
        if (rc < 0) {
            if (rc == -SIMAP_ETOOBIG && s->state == S_BODY && s->imsg < s->nmsgs)
                s->force_too_large = s->msgs[s->imsg].uid; /* next time: too_large event */
            fail(s, F_PROTO, "malformed response: %s", imap_parser_errstr(s->parser));
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
                fail(s, F_PROTO, "data after STARTTLS's OK");
            return;
        }
        if (n == 0)
            return;
    }
}

/* ---- Loop callbacks ---- */

/* States in which a command of ours waits for the server's answer. */
static int awaits_server(enum sess_state st)
{
    switch (st) {
    case S_CAPA:
    case S_STARTTLS:
    case S_AUTH:
    case S_EXAMINE:
    case S_UIDNEXT:
    case S_FETCH:
    case S_BODY:
    case S_IDLE_START:
    case S_DONE:
    case S_NOOP:
        return 1;
    default:
        return 0;
    }
}

static void do_read(struct imap_session *s)
{
    static char chunk[READ_CHUNK]; /* one loop thread: one buffer for all sessions */
    unsigned epoch = s->epoch;
    for (int i = 0; i < READ_BUDGET; i++) {
        ssize_t n;
        int want = 0;
        if (s->ssl != NULL) {
            n = tls_read(s->ssl, chunk, sizeof chunk, &want, s->errbuf, sizeof s->errbuf);
            if (n < 0) {
                fail(s, n == -SIMAP_ECRYPTO ? F_PROTO : F_NET, "%s", s->errbuf);
                return;
            }
            if (n == 0)
                return; /* want read: the socket wakes us */
        } else {
            n = read(s->fd, chunk, sizeof chunk);
            if (n < 0) {
                int e = errno;
                if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
                    return;
                fail(s, F_NET, "read: %s", strerror(e));
                return;
            }
            if (n == 0) {
                fail(s, F_NET, "server closed the connection");
                return;
            }
        }
        s->last_rx_mono = time_mono_ms();
        if (awaits_server(s->state))
            arm_command(s); /* the server is talking: the command deadline starts over */
        feed(s, chunk, (size_t)n);
        if (s->epoch != epoch || s->state == S_DEAD || s->state == S_TLS)
            return;
        if (s->ssl == NULL && (size_t)n < sizeof chunk)
            return;
    }
    /* Budget spent: come back on the next loop turn (bytes buffered inside
     * SSL would not wake the socket watcher). */
    if (s->fd >= 0)
        ev_feed_event(s->w->loop, &s->io, EV_READ);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct imap_session *s = io->data;
    s->busy++;
    unsigned epoch = s->epoch;
    if (s->state == S_CONNECT) {
        if (revents & (EV_WRITE | EV_READ))
            on_connected(s);
    } else if (s->state == S_TLS) {
        drive_tls(s);
    } else {
        if ((revents & EV_WRITE) || ((revents & EV_READ) && s->out.len > 0))
            flush(s);
        if (s->epoch == epoch && s->state != S_DEAD && (revents & EV_READ) && s->fd >= 0)
            do_read(s);
    }
    s->busy--;
    maybe_free(s);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct imap_session *s = t->data;
    s->busy++;
    switch (s->state) {
    case S_WAIT:
        if (!rconn_is_connected(s->w->redis))
            arm_ms(s, redis_retry_delay(s)); /* nothing to load the user from yet */
        else
            start_load(s);
        break;
    case S_CONNECT:
    case S_TLS:
    case S_GREETING:
        fail(s, F_NET, "no connection and greeting within %d ms", cfg(s)->imap_connect_timeout_ms);
        break;
    case S_IDLE: {
        int64_t now = time_mono_ms();
        int renew = now - s->idle_since_mono >= (int64_t)s->prov->idle_renew_s * 1000;
        int probe = now - s->last_rx_mono >= (int64_t)cfg(s)->imap_probe_sec * 1000;
        if (renew || probe) {
            s->probing = probe;
            leave_idle(s);
        } else {
            arm_idle_timer(s);
        }
        break;
    }
    case S_POLL_WAIT:
        new_tag(s);
        if (imap_cmd_noop(&s->out, s->tag) < 0) {
            fail(s, F_PROTO, "cannot build NOOP");
            break;
        }
        set_state(s, S_NOOP);
        arm_command(s);
        send_out(s);
        break;
    case S_NEW:
    case S_LOAD:
    case S_QUEUED:
    case S_BASELINE:
    case S_RECORD:
    case S_DEAD:
        break;
    default:
        fail(s, F_NET, "no answer to %s within %d ms", state_names[s->state],
             cfg(s)->imap_command_timeout_ms);
        break;
    }
    s->busy--;
    maybe_free(s);
}

/* ---- Loading the user ---- */

static char *reply_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}

static void on_user(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct imap_session *s = sreq_begin(privdata, err);
    if (s == NULL)
        return;
    if (s->state != S_LOAD) {
        sreq_end(s);
        return;
    }
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 7) {
        fail(s, F_REDIS, "cannot read the user: %s", err < 0 ? err_str(err) : "unexpected reply");
        sreq_end(s);
        return;
    }
    const char *pid = reply_str(reply->element[0]), *code = reply_str(reply->element[1]),
               *tag = reply_str(reply->element[2]), *username = reply_str(reply->element[3]),
               *email = reply_str(reply->element[4]), *secret = reply_str(reply->element[5]),
               *archived = reply_str(reply->element[6]);
    if (pid == NULL || code == NULL || code[0] == '\0' || strlen(code) > PROVIDER_CODE_MAX) {
        fail(s, F_CONFIG, "user record incomplete (pid, code)");
        sreq_end(s);
        return;
    }
    if (archived != NULL && strcmp(archived, "1") == 0) {
        fail(s, F_CONFIG, "user is archived");
        sreq_end(s);
        return;
    }
    if (username == NULL || username[0] == '\0')
        username = email;
    if (username == NULL || username[0] == '\0' || secret == NULL) {
        fail(s, F_CONFIG, "user record has no login or secret");
        sreq_end(s);
        return;
    }
    char aad[SCHEMA_KEY_MAX];
    snprintf(aad, sizeof aad, "si:user:%s:secret", s->uid);
    char *plain = NULL;
    size_t plen = 0;
    if (crypto_decrypt(s->w->keys, secret, aad, &plain, &plen) < 0 || memchr(plain, 0, plen)) {
        if (plain != NULL) {
            crypto_wipe(plain, plen);
            xfree(plain);
        }
        fail(s, F_CONFIG, "cannot decrypt the user's secret (wrong SUPERIMAP_ENCRYPTION_KEY?)");
        sreq_end(s);
        return;
    }
    xfree(s->pid);
    xfree(s->code);
    xfree(s->tag_user);
    s->pid = xstrdup(pid);
    s->code = xstrdup(code);
    s->tag_user = xstrdup(tag != NULL ? tag : "");
    wipe_str(&s->username);
    wipe_str(&s->secret);
    s->username = xstrdup(username);
    s->secret = plain;
    if (s->pub == P_NONE)
        publish(s, P_CONNECTING, NULL, 0);
    set_state(s, S_QUEUED);
    s->wait.go = on_provider_go;
    s->wait.data = s;
    providers_enqueue(s->w->providers, s->code, &s->wait);
    sreq_end(s);
}

static void start_load(struct imap_session *s)
{
    close_conn(s);
    if (!lease_usable(s)) {
        /* The manager starts us again under the next generation. */
        set_state(s, S_NEW);
        return;
    }
    struct sreq *r = sreq_new(s);
    if (rconn_command(s->w->redis, on_user, r,
                      "HMGET si:{%u}:user:%s pid code tag username email secret archived",
                      (unsigned)s->k, s->uid) < 0) {
        sreq_cancel(r);
        set_state(s, S_WAIT);
        arm_ms(s, cfg(s)->imap_backoff_min_ms);
        return;
    }
    set_state(s, S_LOAD);
}

/* ---- After a Redis reconnect ---- */

/* 1 in the states where last_uid is the cursor this connection works from. */
static int has_cursor(const struct imap_session *s)
{
    switch (s->state) {
    case S_FETCH:
    case S_BODY:
    case S_RECORD:
    case S_IDLE_START:
    case S_IDLE:
    case S_DONE:
    case S_POLL_WAIT:
    case S_NOOP:
        return 1;
    default:
        return 0;
    }
}

static void on_recheck_lease(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct imap_session *s = sreq_begin(privdata, err);
    if (s == NULL)
        return;
    long long v =
        err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 1;
    if (v <= 0 && lease_usable(s)) {
        static const char held[] = "lease_acquire after a Redis reconnect found another holder";
        static const char gone[] = "lease_acquire after a Redis reconnect found our alive key gone";
        metric_inc(s->w->m.stale);
        watcher_lost_lease(s->uid, v == 0 ? held : gone);
    }
    sreq_end(s);
}

static void on_recheck_cursor(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct imap_session *s = sreq_begin(privdata, err);
    if (s == NULL)
        return;
    if (!has_cursor(s) || !lease_usable(s) || err < 0 || reply == NULL ||
        reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        sreq_end(s); /* failed: the next reconnect checks again */
        return;
    }
    const redisReply *uv = reply->element[0], *last = reply->element[1];
    int missing = uv->type != REDIS_REPLY_STRING || last->type != REDIS_REPLY_STRING;
    unsigned long long ruv = missing ? 0 : strtoull(uv->str, NULL, 10);
    unsigned long long rlast = missing ? 0 : strtoull(last->str, NULL, 10);
    if (!missing && ruv == s->uidvalidity && rlast >= s->last_uid) {
        sreq_end(s);
        return;
    }
    log_warn("Redis lost this user's latest writes (restarted from an older state?): examining "
             "the mailbox again acct=%s last_uid=%" PRIu32 " redis_last_uid=%llu",
             s->uid, s->last_uid, rlast);
    if (missing) {
        /* The cursor itself went: put back the one this connection started
         * from (the script writes only an absent cursor, and only for the
         * lease holder), or the new baseline would skip as old the messages
         * recorded in the writes Redis lost. */
        char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX], cur[SCHEMA_KEY_MAX], v[16], b[16];
        lease_keys(s, lease, sizeof lease, alive, sizeof alive);
        snprintf(cur, sizeof cur, "si:{%" PRIu32 "}:cur:%s", s->k, s->uid);
        snprintf(v, sizeof v, "%" PRIu32, s->uidvalidity);
        snprintf(b, sizeof b, "%" PRIu32, s->base_uid);
        const char *argv[] = {lease, alive, cur, incarnation_token(s->w->inc), v, b};
        rconn_script(s->w->redis, NULL, NULL, "cursor_baseline", 3, 6, argv, NULL);
    }
    backoff_reset(&s->backoff);
    start_load(s); /* after the cursor, in Redis' order */
    sreq_end(s);
}

void imap_session_recheck(struct imap_session *s)
{
    if (!has_cursor(s) || !lease_usable(s))
        return; /* nothing kept from before, or started again anyway */
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX];
    lease_keys(s, lease, sizeof lease, alive, sizeof alive);
    const char *argv[] = {lease, alive, incarnation_token(s->w->inc)};
    struct sreq *r = sreq_new(s);
    if (rconn_script(s->w->redis, on_recheck_lease, r, "lease_acquire", 2, 3, argv, NULL) < 0)
        sreq_cancel(r);
    r = sreq_new(s);
    if (rconn_command(s->w->redis, on_recheck_cursor, r,
                      "HMGET si:{%" PRIu32 "}:cur:%s uidvalidity last_uid", s->k, s->uid) < 0)
        sreq_cancel(r);
}

/* ---- Public API ---- */

struct imap_session *imap_session_new(struct watcher *w, const char *uid, uint32_t k)
{
    size_t n = strlen(uid);
    struct imap_session *s = xcalloc(1, sizeof *s + n + 1);
    memcpy(s->uid, uid, n + 1);
    s->w = w;
    s->k = k;
    s->fd = -1;
    s->state = S_NEW;
    s->backoff_kind = F_NET;
    backoff_init(&s->backoff, w->cfg->imap_backoff_min_ms, w->cfg->imap_backoff_max_ms);
    buf_init(&s->out, OUT_MAX);
    buf_init(&s->cont, OUT_MAX);
    ev_init(&s->io, on_io);
    s->io.data = s;
    ev_init(&s->timer, on_timer);
    s->timer.data = s;
    w->nsessions++;
    metric_set(w->m.sessions, w->nsessions);
    return s;
}

void imap_session_start(struct imap_session *s, uint64_t gen)
{
    s->gen = gen;
    s->pub = P_NONE;
    start_load(s);
}

void imap_session_restart(struct imap_session *s)
{
    if (s->state == S_DEAD || s->state == S_NEW)
        return;
    log_info("user record changed; reconnecting acct=%s", s->uid);
    backoff_reset(&s->backoff);
    s->busy++;
    start_load(s);
    s->busy--;
    maybe_free(s);
}

void imap_session_drop(struct imap_session *s, int polite)
{
    if (s->state == S_DEAD)
        return;
    if (polite && s->fd >= 0 && s->state != S_CONNECT && s->state != S_TLS) {
        /* Best effort, never waited for: leave IDLE if needed, then LOGOUT. */
        buf_reset(&s->out);
        if (s->state == S_IDLE)
            imap_cmd_done(&s->out);
        char tag[IMAP_TAG_SIZE];
        imap_tag_next(&s->tagger, tag);
        imap_cmd_logout(&s->out, tag);
        if (s->ssl != NULL) {
            int want;
            tls_write(s->ssl, s->out.data, s->out.len, &want, s->errbuf, sizeof s->errbuf);
        } else {
            ssize_t w = write(s->fd, s->out.data, s->out.len);
            (void)w;
        }
    }
    close_conn(s);
    s->w->nsessions--;
    metric_set(s->w->m.sessions, s->w->nsessions);
    set_state(s, S_DEAD);
    if (s->busy == 0 && s->redis_pending == 0) {
        free_session(s);
        return;
    }
    s->zprev = NULL;
    s->znext = zombies;
    if (zombies != NULL)
        zombies->zprev = s;
    zombies = s;
}

void imap_session_free_all_dropped(void)
{
    while (zombies != NULL)
        free_session(zombies);
}
