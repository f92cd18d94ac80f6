/*
 * core/rconn: asynchronous Redis on libev with hiredis 0.14.1, plus the
 * timeouts, reconnects and command queue that hiredis 0.14 does not have.
 *
 * hiredis facts this file relies on (async.c of v0.14.1):
 * - A failed connect calls onConnect(REDIS_ERR) and then frees the context
 *   itself; onDisconnect is not called, as the context never connected.
 * - Any other end (I/O error, EOF, redisAsyncFree()) first calls every
 *   pending reply callback with a NULL reply, then onDisconnect when the
 *   context had connected, then frees the context.
 * - redisAsyncFree() inside a reply callback only sets REDIS_FREEING; the
 *   free happens when the callback returns. Inside onConnect or onDisconnect
 *   it would free the context under hiredis' feet, so it is never called there.
 * - After an I/O error the context carries REDIS_DISCONNECTING and refuses
 *   new commands while it runs the NULL callbacks.
 *
 * Each command is one struct rcmd in rc's FIFO from submission until its
 * callback has run. hiredis' privdata for it is the rcmd itself; an rcmd whose
 * callback has run (timeout, shutdown) but which hiredis still references is
 * freed when hiredis lets go of it (NULL reply on free of the context). Its
 * RESP text (always hiredis' allocation) is freed once sent; a script keeps
 * its body and arguments instead, so that on NOSCRIPT the same arguments are
 * formatted again as EVAL.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/rconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "core/backoff.h"
#include "core/err.h"
#include "core/log.h"
#include "core/redis_url.h"
#include "core/scripts.h"
#include "core/sentinel.h"
#include "core/time.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_COMMAND_TIMEOUT_MS 5000
#define DEFAULT_MAX_PENDING        100000
#define DEFAULT_RECONNECT_MIN_MS   100
/* A node can do nothing without Redis, and a refused connect costs Redis
 * nothing: after an outage every node is back within a second of Redis. */
#define DEFAULT_RECONNECT_MAX_MS   1000

enum rconn_state {
    RCONN_DISCONNECTED, /* waiting for the retry timer */
    RCONN_CONNECTING,   /* connect(2) in progress; connect deadline armed */
    RCONN_HANDSHAKE,    /* AUTH / SELECT / PING sent; connect deadline armed */
    RCONN_CONNECTED,    /* user commands flow */
};

static const char *const state_names[] = {"DISCONNECTED", "CONNECTING", "HANDSHAKE", "CONNECTED"};

struct rcmd {
    struct rcmd *prev, *next; /* rc's FIFO, while !is_done */
    struct rconn *rc;
    rconn_cb *cb;
    void *privdata;
    char *cmd; /* formatted RESP (redisFormatCommand*()), NULL once sent */
    size_t len;
    const char *body;         /* script body for the NOSCRIPT fallback, or NULL */
    struct script_args *args; /* scripts: what EVAL is formatted from (past the rcmd), or NULL */
    double submitted;         /* monotonic seconds */
    double deadline;          /* monotonic seconds */
    unsigned is_sent : 1;     /* handed to the current connection */
    unsigned in_hiredis : 1;  /* hiredis holds a callback pointing here */
    unsigned is_done : 1;     /* callback has run; off the FIFO */
    unsigned tried_eval : 1;  /* NOSCRIPT fallback already sent */
};

/* The handshake's commands. Every handshake ends with PING: AUTH, SELECT,
 * CLIENT and ROLE are answered while Redis is still loading its dataset,
 * PING is refused with LOADING until it is done. */
enum hs_step { HS_AUTH, HS_SELECT, HS_SETNAME, HS_ROLE, HS_PING };

struct rconn {
    struct ev_loop *loop;
    redisAsyncContext *ac; /* NULL in DISCONNECTED */
    enum rconn_state state;
    struct redis_addr addr;
    char *name;
    char desc[300];                          /* address without the password, for logs */
    double connect_timeout, command_timeout; /* seconds */
    size_t max_pending;
    size_t npending; /* rcmds on the FIFO */
    size_t nunsent;  /* of those, not handed to a connection */
    struct rcmd *head, *tail;
    enum hs_step hs[5]; /* the handshake's commands, in order */
    int hs_n, hs_next;  /* how many were sent; whose reply comes next */
    struct backoff backoff;
    ev_timer conn_timer; /* connect deadline, or the retry delay */
    ev_timer cmd_timer;  /* deadline of the FIFO's head (lazily re-armed) */
    ev_timer free_timer; /* rconn_free() from inside a callback */
    int in_cb;           /* depth of user callbacks running now */
    int is_closing;
    int ever_connected;
    struct sentinel_ask *ask;     /* redis+sentinel://: asking where the primary is */
    struct sentinel_watch *watch; /* and listening for switches */
    int is_announced;             /* connect to addr without asking, once */
    int is_down_logged;           /* the current outage has been logged... */
    int last_fail;                /* ...with this cause */
    void (*state_cb)(struct rconn *, int, void *);
    void *state_data;
    void (*latency_cb)(double, void *);
    void *latency_data;
    void (*wait_short_cb)(long long, void *);
    void *wait_short_data;
    int min_replicas_ack;
    int wait_timeout_ms; /* WAIT's timeout: a quarter of the command timeout */
    struct rconn_stats stats;
    char *client_name; /* CLIENT SETNAME at every connect; NULL: none */
};

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);
static void schedule_retry(struct rconn *rc);
static void on_free_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- State and logging ---- */

static void set_state(struct rconn *rc, enum rconn_state st)
{
    if (rc->state == st)
        return;
    log_debugc("redis", "redis state name=%s from=%s to=%s", rc->name, state_names[rc->state],
               state_names[st]);
    rc->state = st;
}

static void notify_state(struct rconn *rc, int connected)
{
    if (rc->state_cb == NULL || rc->is_closing)
        return;
    rc->in_cb++;
    rc->state_cb(rc, connected, rc->state_data);
    rc->in_cb--;
}

/* Logs a failed attempt once per outage and cause, not once per retry. */
static void note_failure(struct rconn *rc, int code, const char *why)
{
    char safe[256];
    log_safe(why, safe, sizeof safe);
    if (rc->is_down_logged && rc->last_fail == code) {
        log_debugc("redis", "redis connect failed again name=%s addr=%s err=\"%s\"", rc->name,
                   rc->desc, safe);
        return;
    }
    rc->is_down_logged = 1;
    rc->last_fail = code;
    if (code == -SIMAP_EAUTH)
        log_error("redis authentication failed, wrong or missing password; retrying name=%s "
                  "addr=%s err=\"%s\"",
                  rc->name, rc->desc, safe);
    else
        log_warn("redis connect failed, retrying name=%s addr=%s err=\"%s\"", rc->name, rc->desc,
                 safe);
}

/* ---- Script arguments ---- */

/* A script's numkeys and arguments, copied at submission (the caller's argv
 * need not outlive the call) into the same allocation as its rcmd, just past
 * it: this struct, its arrays, then the bytes. */
struct script_args {
    int nkeys;
    int argc;
    const char **argv;
    size_t *argvlen;
};

static size_t args_size(int argc, const char **argv, const size_t *argvlen)
{
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += argvlen ? argvlen[i] : strlen(argv[i]);
    size_t n = (size_t)argc;
    return sizeof(struct script_args) + n * sizeof(const char *) + n * sizeof(size_t) + bytes;
}

static struct script_args *args_fill(void *mem, int nkeys, int argc, const char **argv,
                                     const size_t *argvlen)
{
    struct script_args *a = mem;
    size_t n = (size_t)argc;
    a->nkeys = nkeys;
    a->argc = argc;
    a->argv = (const char **)(void *)(a + 1);
    a->argvlen = (size_t *)(void *)(a->argv + n);
    char *p = (char *)(a->argvlen + n);
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        a->argv[i] = p;
        a->argvlen[i] = len;
        p += len;
    }
    return a;
}

/* Formats "<verb> <script> <numkeys> <args...>" (EVALSHA sha or EVAL body)
 * into *cmd. Returns its length, or -1 with *cmd NULL. */
static int format_script(const char *verb, const char *script, const struct script_args *a,
                         char **cmd)
{
    struct script_argv av;
    script_argv_build(&av, verb, script, a->nkeys, a->argc, a->argv, a->argvlen);
    *cmd = NULL;
    int len = redisFormatCommandArgv(cmd, av.n, av.v, av.l);
    script_argv_done(&av);
    if (len <= 0) {
        if (*cmd != NULL)
            redisFreeCommand(*cmd);
        *cmd = NULL;
        return -1;
    }
    return len;
}

/* ---- Command FIFO ---- */

static void free_cmd(struct rcmd *c)
{
    if (c->cmd != NULL)
        redisFreeCommand(c->cmd);
    c->cmd = NULL;
}

static void free_rcmd(struct rcmd *c)
{
    free_cmd(c);
    xfree(c); /* and a script's arguments, just past it */
}

static void arm_cmd_timer(struct rconn *rc)
{
    if (rc->head == NULL || ev_is_active(&rc->cmd_timer))
        return;
    double after = rc->head->deadline - time_mono_sec();
    ev_timer_set(&rc->cmd_timer, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(rc->loop, &rc->cmd_timer);
}

static void unlink_rcmd(struct rconn *rc, struct rcmd *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        rc->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        rc->tail = c->prev;
    c->prev = c->next = NULL;
    rc->npending--;
    if (!c->is_sent)
        rc->nunsent--;
}

/* Takes c off the FIFO and runs its callback, the one time it runs. */
static void finish(struct rconn *rc, struct rcmd *c, redisReply *reply, int err)
{
    unlink_rcmd(rc, c);
    c->is_done = 1;
    if (err == -SIMAP_ETIMEDOUT)
        rc->stats.timeouts++;
    else if (err < 0)
        rc->stats.errors++;
    if (c->cb != NULL) {
        rc->in_cb++;
        c->cb(rc, reply, err, c->privdata);
        rc->in_cb--;
    }
    if (!c->in_hiredis)
        free_rcmd(c);
}

static int can_send(const struct rconn *rc)
{
    return rc->state == RCONN_CONNECTED && rc->ac != NULL &&
           !(rc->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

/* Hands c to hiredis. Returns 0, or -1 when the link cannot take it now (c
 * then stays queued for the next connection). */
static int send_rcmd(struct rconn *rc, struct rcmd *c)
{
    if (!can_send(rc))
        return -1;
    if (redisAsyncFormattedCommand(rc->ac, on_reply, c, c->cmd, c->len) != REDIS_OK)
        return -1;
    c->is_sent = 1;
    c->in_hiredis = 1;
    rc->nunsent--;
    free_cmd(c); /* hiredis has its own copy */
    return 0;
}

/* Sends every queued command, in submission order. */
static void flush_queue(struct rconn *rc)
{
    for (struct rcmd *c = rc->head; c != NULL && rc->nunsent > 0; c = c->next)
        if (!c->is_sent && send_rcmd(rc, c) < 0)
            return;
}

/* Queues c (from xcalloc(), taken over) with a command formatted by hiredis
 * (taken over too). */
static int submit(struct rconn *rc, struct rcmd *c, rconn_cb *cb, void *privdata, char *cmd,
                  size_t len)
{
    c->rc = rc;
    c->cb = cb;
    c->privdata = privdata;
    c->cmd = cmd;
    c->len = len;
    c->submitted = time_mono_sec();
    c->deadline = c->submitted + rc->command_timeout;

    c->prev = rc->tail;
    if (rc->tail != NULL)
        rc->tail->next = c;
    else
        rc->head = c;
    rc->tail = c;
    rc->npending++;
    rc->nunsent++;
    rc->stats.commands++;
    arm_cmd_timer(rc);

    if (rc->nunsent == 1)
        send_rcmd(rc, c);
    else if (can_send(rc))
        flush_queue(rc);
    return 0;
}

static int check_submit(const struct rconn *rc, size_t n)
{
    if (rc->is_closing)
        return -SIMAP_ESHUTDOWN;
    if (rc->npending + n > rc->max_pending)
        return -SIMAP_ETOOBIG;
    return 0;
}

/* ---- Connection life cycle ---- */

/* Drops the current link, if any. Sent commands get -SIMAP_ECONN (or
 * -SIMAP_ESHUTDOWN when closing) from on_reply(), now or, inside a reply
 * callback, as soon as it returns. */
static void drop_link(struct rconn *rc)
{
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL; /* from here on every hiredis callback of ac is stale */
    ev_timer_stop(rc->loop, &rc->conn_timer);
    if (ac != NULL)
        redisAsyncFree(ac);
}

static void connect_failed(struct rconn *rc, int code, const char *why)
{
    note_failure(rc, code, why);
    ev_timer_stop(rc->loop, &rc->conn_timer);
    set_state(rc, RCONN_DISCONNECTED);
    schedule_retry(rc);
}

/* A link that was CONNECTED went away: log once, tell the owner, retry. */
static void link_lost(struct rconn *rc, int code, const char *why)
{
    char safe[256];
    log_warn("redis connection lost, reconnecting name=%s addr=%s err=\"%s\"", rc->name, rc->desc,
             log_safe(why, safe, sizeof safe));
    rc->is_down_logged = 1;
    rc->last_fail = code;
    set_state(rc, RCONN_DISCONNECTED);
    schedule_retry(rc);
    notify_state(rc, 0);
}

static void on_ready(struct rconn *rc)
{
    ev_timer_stop(rc->loop, &rc->conn_timer);
    backoff_reset(&rc->backoff);
    rc->stats.connects++;
    if (rc->ever_connected)
        rc->stats.reconnects++;
    if (rc->is_down_logged || !rc->ever_connected)
        log_info("redis connected name=%s addr=%s", rc->name, rc->desc);
    rc->ever_connected = 1;
    rc->is_down_logged = 0;
    rc->last_fail = 0;
    set_state(rc, RCONN_CONNECTED);
    flush_queue(rc);
    notify_state(rc, 1);
}

static void on_handshake_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rconn *rc = privdata;
    redisReply *reply = r;
    if (rc->ac != ac || reply == NULL || rc->hs_next >= rc->hs_n)
        return; /* stale link, or dying: on_disconnect() handles it */
    enum hs_step step = rc->hs[rc->hs_next++];
    if (reply->type == REDIS_REPLY_ERROR) {
        int code = step == HS_AUTH ? -SIMAP_EAUTH : -SIMAP_EREPLY;
        if (strncmp(reply->str, "NOAUTH", 6) == 0 || strncmp(reply->str, "WRONGPASS", 9) == 0)
            code = -SIMAP_EAUTH;
        char why[256];
        snprintf(why, sizeof why, "%s", reply->str);
        drop_link(rc); /* deferred by hiredis until this callback returns */
        connect_failed(rc, code, why);
        return;
    }
    if (step == HS_ROLE && !sentinel_role_is_primary(reply)) {
        drop_link(rc);
        connect_failed(rc, -SIMAP_ECONN, "reached a replica (ROLE); asking the sentinels again");
        return;
    }
    if (rc->hs_next == rc->hs_n)
        on_ready(rc);
}

static void handshake_send(struct rconn *rc, enum hs_step step, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisvAsyncCommand(rc->ac, on_handshake_reply, rc, fmt, ap);
    va_end(ap);
    rc->hs[rc->hs_n++] = step;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct rconn *rc = cac->data;
    if (rc->ac != cac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns. */
        char why[256];
        snprintf(why, sizeof why, "%s", cac->errstr ? cac->errstr : "connect failed");
        rc->ac = NULL;
        connect_failed(rc, -SIMAP_ECONN, why);
        return;
    }
    set_state(rc, RCONN_HANDSHAKE);
    rc->hs_n = rc->hs_next = 0;
    if (rc->addr.password[0] != '\0')
        handshake_send(rc, HS_AUTH, "AUTH %s", rc->addr.password);
    if (rc->addr.db != 0)
        handshake_send(rc, HS_SELECT, "SELECT %d", rc->addr.db);
    if (rc->client_name != NULL)
        handshake_send(rc, HS_SETNAME, "CLIENT SETNAME %s", rc->client_name);
    if (rc->addr.nsentinels > 0) /* a failover may have demoted it since */
        handshake_send(rc, HS_ROLE, "ROLE");
    handshake_send(rc, HS_PING, "PING");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct rconn *rc = cac->data;
    if (rc->ac != cac)
        return; /* a link we dropped ourselves */
    char why[256];
    snprintf(why, sizeof why, "%s",
             status == REDIS_OK ? "closed" : (cac->errstr ? cac->errstr : "I/O error"));
    rc->ac = NULL; /* hiredis frees it when this returns */
    if (rc->state == RCONN_CONNECTED)
        link_lost(rc, -SIMAP_ECONN, why);
    else
        connect_failed(rc, -SIMAP_ECONN, why);
}

static void start_connect(struct rconn *rc)
{
    redisAsyncContext *ac = rc->addr.is_unix ? redisAsyncConnectUnix(rc->addr.path)
                                             : redisAsyncConnect(rc->addr.host, rc->addr.port);
    if (ac == NULL) {
        connect_failed(rc, -SIMAP_ENOMEM, "cannot allocate a hiredis context");
        return;
    }
    if (ac->err) {
        char why[256];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        connect_failed(rc, -SIMAP_ECONN, why);
        return;
    }
    ac->data = rc;
    if (redisLibevAttach(rc->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        connect_failed(rc, -SIMAP_EIO, "cannot attach to the event loop");
        return;
    }
    rc->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    set_state(rc, RCONN_CONNECTING);
    ev_timer_stop(rc->loop, &rc->conn_timer);
    ev_timer_set(&rc->conn_timer, rc->connect_timeout, 0.);
    ev_timer_start(rc->loop, &rc->conn_timer);
}

/* Notes that the primary is now host:port (counted and logged when it
 * changed). */
static void set_primary(struct rconn *rc, const char *host, int port)
{
    if (rc->addr.port != 0 && (rc->addr.port != port || strcmp(rc->addr.host, host) != 0)) {
        rc->stats.primary_changes++;
        log_warn("redis primary moved name=%s from=%s:%d to=%s:%d", rc->name, rc->addr.host,
                 rc->addr.port, host, port);
    }
    snprintf(rc->addr.host, sizeof rc->addr.host, "%s", host);
    rc->addr.port = port;
    redis_addr_describe(&rc->addr, rc->desc, sizeof rc->desc);
}

static void on_primary(void *data, int code, const char *host, int port, const char *why)
{
    struct rconn *rc = data;
    rc->ask = NULL;
    if (code < 0) {
        connect_failed(rc, code, why);
        return;
    }
    set_primary(rc, host, port);
    start_connect(rc);
}

/* A sentinel announced a switch: leave the old primary now, even if it
 * still seems to answer, hangs without closing the link, or still takes
 * writes (a planned failover demotes it seconds later), and go to the
 * announced address without asking (a sentinel asked may not have switched
 * yet). Each sentinel announces it: the first moves us. */
static void on_switch(void *data, const char *host, int port)
{
    struct rconn *rc = data;
    int is_there = rc->addr.port == port && strcmp(rc->addr.host, host) == 0 &&
                   (rc->is_announced || (rc->state != RCONN_DISCONNECTED && rc->ask == NULL));
    if (rc->is_closing || is_there) /* another sentinel's news, or ours already */
        return;
    log_warn("redis sentinels announced a new primary, moving name=%s to=%s:%d", rc->name, host,
             port);
    sentinel_ask_cancel(rc->ask);
    rc->ask = NULL;
    int was_connected = rc->state == RCONN_CONNECTED;
    drop_link(rc);
    set_state(rc, RCONN_DISCONNECTED);
    if (was_connected) {
        rc->is_down_logged = 1;
        notify_state(rc, 0);
    }
    set_primary(rc, host, port);
    rc->is_announced = 1;
    ev_timer_stop(rc->loop, &rc->conn_timer);
    ev_timer_set(&rc->conn_timer, 0., 0.);
    ev_timer_start(rc->loop, &rc->conn_timer);
}

/* A plain address, or the one a sentinel just announced: connect.
 * Sentinels: ask them first, every other time. */
static void start_link(struct rconn *rc)
{
    if (rc->addr.nsentinels == 0 || rc->is_announced) {
        rc->is_announced = 0;
        start_connect(rc);
        return;
    }
    set_state(rc, RCONN_CONNECTING);
    ev_timer_stop(rc->loop, &rc->conn_timer);
    rc->ask = sentinel_ask_start(rc->loop, &rc->addr, rc->connect_timeout, on_primary, rc);
}

static void schedule_retry(struct rconn *rc)
{
    if (rc->is_closing)
        return;
    double delay = (double)backoff_next_rand(&rc->backoff) / 1000.0;
    ev_timer_stop(rc->loop, &rc->conn_timer);
    ev_timer_set(&rc->conn_timer, delay, 0.);
    ev_timer_start(rc->loop, &rc->conn_timer);
}

static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct rconn *rc = w->data;
    if (rc->is_closing)
        return;
    if (rc->state == RCONN_DISCONNECTED) {
        start_link(rc);
        return;
    }
    /* CONNECTING or HANDSHAKE took too long: a black hole or a stuck server. */
    drop_link(rc);
    connect_failed(rc, -SIMAP_ETIMEDOUT, "connect timed out");
}

static void on_cmd_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct rconn *rc = w->data;
    double now = time_mono_sec();
    int is_hung = 0;
    while (rc->head != NULL && rc->head->deadline <= now + 0.0005) {
        if (rc->head->is_sent)
            is_hung = 1;
        finish(rc, rc->head, NULL, -SIMAP_ETIMEDOUT);
    }
    if (is_hung && !rc->is_closing && rc->state == RCONN_CONNECTED) {
        /* A reply that does not come means a hung link or server: its late
         * reply must not be matched to a later command, so drop the link. */
        drop_link(rc);
        link_lost(rc, -SIMAP_ETIMEDOUT, "command timed out");
    }
    arm_cmd_timer(rc);
}

/* ---- Replies and scripts ---- */

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct rcmd *c = privdata;
    struct rconn *rc = c->rc;
    redisReply *reply = r;
    c->in_hiredis = 0;
    if (c->is_done) { /* timed out or shut down already: drop the late news */
        free_rcmd(c);
        return;
    }
    if (reply == NULL) { /* link gone after the command was handed to it */
        finish(rc, c, NULL, rc->is_closing ? -SIMAP_ESHUTDOWN : -SIMAP_ECONN);
        return;
    }
    if (c->body != NULL && !c->tried_eval && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* Redis never ran it, so sending EVAL now (or on the next link) is
         * safe; it also puts the script back in Redis' cache. */
        c->tried_eval = 1;
        int len = format_script("EVAL", c->body, c->args, &c->cmd);
        if (len < 0) {
            finish(rc, c, NULL, -SIMAP_ENOMEM);
            return;
        }
        c->len = (size_t)len;
        c->is_sent = 0;
        rc->nunsent++;
        if (rc->nunsent == 1)
            send_rcmd(rc, c);
        return;
    }
    if (rc->latency_cb != NULL) {
        rc->in_cb++;
        rc->latency_cb(time_mono_sec() - c->submitted, rc->latency_data);
        rc->in_cb--;
    }
    int replica = rc->addr.nsentinels > 0 && reply->type == REDIS_REPLY_ERROR &&
                  sentinel_error_is_replica(reply->str);
    finish(rc, c, reply, reply->type == REDIS_REPLY_ERROR ? -SIMAP_EREPLY : 0);
    if (replica && rc->ac == ac && !rc->is_closing) {
        /* Demoted under us: the sentinels know the new primary. */
        drop_link(rc);
        link_lost(rc, -SIMAP_ECONN, "a replica answered (READONLY); asking the sentinels again");
    }
}

/* ---- Public API ---- */

struct rconn *rconn_new(struct ev_loop *loop, const struct rconn_opts *opts)
{
    if (loop == NULL || opts == NULL || opts->url == NULL)
        return NULL;
    const char *name = opts->name ? opts->name : "redis";
    struct redis_addr addr;
    char err[160];
    if (redis_url_parse(opts->url, opts->password, &addr, err, sizeof err) < 0) {
        log_error("bad redis url name=%s err=\"%s\"", name, err);
        return NULL;
    }
    if (opts->sentinel_password != NULL)
        snprintf(addr.sentinel_password, sizeof addr.sentinel_password, "%s",
                 opts->sentinel_password);
    struct rconn *rc = xcalloc(1, sizeof *rc);
    rc->loop = loop;
    rc->addr = addr;
    rc->name = xstrdup(name);
    redis_addr_describe(&rc->addr, rc->desc, sizeof rc->desc);
    rc->connect_timeout =
        (opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS) /
        1000.0;
    rc->command_timeout =
        (opts->command_timeout_ms > 0 ? opts->command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS) /
        1000.0;
    rc->max_pending = (size_t)(opts->max_pending > 0 ? opts->max_pending : DEFAULT_MAX_PENDING);
    rc->min_replicas_ack = opts->min_replicas_ack > 0 ? opts->min_replicas_ack : 0;
    rc->wait_timeout_ms = (int)(rc->command_timeout * 1000.0 / 4.0);
    backoff_init(&rc->backoff,
                 opts->reconnect_min_ms > 0 ? opts->reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS,
                 opts->reconnect_max_ms > 0 ? opts->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS);
    ev_timer_init(&rc->conn_timer, on_conn_timer, 0., 0.);
    rc->conn_timer.data = rc;
    ev_timer_init(&rc->cmd_timer, on_cmd_timer, 0., 0.);
    rc->cmd_timer.data = rc;
    ev_timer_init(&rc->free_timer, on_free_timer, 0., 0.);
    rc->free_timer.data = rc;
    rc->state = RCONN_DISCONNECTED;
    rc->watch = sentinel_watch_start(loop, &rc->addr, on_switch, rc);
    start_link(rc);
    return rc;
}

static void release(struct rconn *rc)
{
    ev_timer_stop(rc->loop, &rc->conn_timer);
    ev_timer_stop(rc->loop, &rc->cmd_timer);
    ev_timer_stop(rc->loop, &rc->free_timer);
    /* In submission order; callbacks cannot add more (is_closing). Commands
     * that hiredis still references are freed by the drop below. */
    while (rc->head != NULL)
        finish(rc, rc->head, NULL, -SIMAP_ESHUTDOWN);
    sentinel_ask_cancel(rc->ask);
    rc->ask = NULL;
    sentinel_watch_stop(rc->watch);
    rc->watch = NULL;
    drop_link(rc);
    xfree(rc->name);
    xfree(rc->client_name);
    xfree(rc);
}

static void on_free_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    release(w->data);
}

void rconn_free(struct rconn *rc)
{
    if (rc == NULL || rc->is_closing)
        return;
    rc->is_closing = 1;
    if (rc->in_cb > 0) {
        ev_timer_start(rc->loop, &rc->free_timer);
        return;
    }
    release(rc);
}

int rconn_set_client_name(struct rconn *rc, const char *name)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > RCONN_CLIENT_NAME_MAX)
        return -SIMAP_EINVAL;
    for (const char *c = name; *c != '\0'; c++)
        if (*c <= ' ' || *c > '~')
            return -SIMAP_EINVAL; /* Redis refuses spaces and control bytes */
    if (rc->is_closing)
        return -SIMAP_ESHUTDOWN;
    if (rc->client_name != NULL && strcmp(rc->client_name, name) == 0)
        return 0;
    xfree(rc->client_name);
    rc->client_name = xstrdup(name);
    /* A link being set up now sent the old name (or none): its handshake
     * cannot change; the command below is queued behind it. */
    if (rc->state == RCONN_CONNECTED || rc->state == RCONN_HANDSHAKE)
        return rconn_command(rc, NULL, NULL, "CLIENT SETNAME %s", name);
    return 0;
}

int rconn_is_connected(const struct rconn *rc)
{
    return rc != NULL && rc->state == RCONN_CONNECTED && !rc->is_closing;
}

void rconn_on_state(struct rconn *rc, void (*cb)(struct rconn *, int, void *), void *data)
{
    if (rc == NULL)
        return;
    rc->state_cb = cb;
    rc->state_data = data;
}

void rconn_on_latency(struct rconn *rc, void (*cb)(double, void *), void *data)
{
    if (rc == NULL)
        return;
    rc->latency_cb = cb;
    rc->latency_data = data;
}

void rconn_on_wait_short(struct rconn *rc, void (*cb)(long long, void *), void *data)
{
    rc->wait_short_cb = cb;
    rc->wait_short_data = data;
}

void rconn_address(const struct rconn *rc, char *out, size_t outlen)
{
    if (rc->addr.is_unix)
        snprintf(out, outlen, "%s", rc->addr.path);
    else
        snprintf(out, outlen, "%s:%d", rc->addr.host, rc->addr.port);
}

void rconn_stats(const struct rconn *rc, struct rconn_stats *out)
{
    *out = rc->stats;
    out->pending = rc->npending;
}

int rconn_command(struct rconn *rc, rconn_cb *cb, void *privdata, const char *fmt, ...)
{
    if (rc == NULL || fmt == NULL)
        return -SIMAP_EINVAL;
    int ret = check_submit(rc, 1);
    if (ret < 0)
        return ret;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len <= 0) {
        if (cmd != NULL)
            redisFreeCommand(cmd);
        return -SIMAP_EINVAL;
    }
    return submit(rc, xcalloc(1, sizeof(struct rcmd)), cb, privdata, cmd, (size_t)len);
}

int rconn_command_argv(struct rconn *rc, rconn_cb *cb, void *privdata, int argc, const char **argv,
                       const size_t *argvlen)
{
    if (rc == NULL || argc <= 0 || argv == NULL)
        return -SIMAP_EINVAL;
    int ret = check_submit(rc, 1);
    if (ret < 0)
        return ret;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len <= 0) {
        if (cmd != NULL)
            redisFreeCommand(cmd);
        return -SIMAP_EINVAL;
    }
    return submit(rc, xcalloc(1, sizeof(struct rcmd)), cb, privdata, cmd, (size_t)len);
}

int rconn_script_source(struct rconn *rc, rconn_cb *cb, void *privdata,
                        const struct script_source *src, int nkeys, int argc, const char **argv,
                        const size_t *argvlen)
{
    if (rc == NULL || src == NULL || src->body == NULL || argc < 0 || nkeys < 0 || nkeys > argc ||
        (argc > 0 && argv == NULL))
        return -SIMAP_EINVAL;
    int ret = check_submit(rc, 1);
    if (ret < 0)
        return ret;
    char shabuf[SCRIPT_SHA_HEX_LEN + 1];
    const char *sha = script_sha(src);
    if (sha == NULL) {
        if (script_sha1_hex(src->body, shabuf) < 0)
            return -SIMAP_ECRYPTO;
        sha = shabuf;
    }
    struct rcmd *c = xcalloc(1, sizeof *c + args_size(argc, argv, argvlen));
    c->body = src->body;
    c->args = args_fill(c + 1, nkeys, argc, argv, argvlen);
    char *cmd;
    int len = format_script("EVALSHA", sha, c->args, &cmd);
    if (len < 0) {
        xfree(c);
        return -SIMAP_EINVAL;
    }
    return submit(rc, c, cb, privdata, cmd, (size_t)len);
}

int rconn_script(struct rconn *rc, rconn_cb *cb, void *privdata, const char *script_name, int nkeys,
                 int argc, const char **argv, const size_t *argvlen)
{
    if (rc == NULL || script_name == NULL)
        return -SIMAP_EINVAL;
    const struct script_source *src = script_find(script_name);
    if (src == NULL)
        return -SIMAP_ENOTFOUND;
    return rconn_script_source(rc, cb, privdata, src, nkeys, argc, argv, argvlen);
}

/* ---- Scripts acknowledged by replicas (WAIT) ---- */

/* A script's reply held while its WAIT runs. */
struct acked {
    rconn_cb *cb;
    void *privdata;
    redisReply *reply; /* reply_copy() of the script's */
};

/* A deep copy of r with our allocator (hiredis frees its reply when the
 * callback returns); reply_free() it. */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = xcalloc(1, sizeof *c);
    c->type = r->type;
    c->integer = r->integer;
    if (r->str != NULL) {
        c->len = r->len;
        c->str = xmalloc(r->len + 1);
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
    }
    if (r->element != NULL) {
        c->elements = r->elements;
        c->element = xcalloc(r->elements > 0 ? r->elements : 1, sizeof *c->element);
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i] != NULL)
                c->element[i] = reply_copy(r->element[i]);
    }
    return c;
}

static void reply_free(redisReply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; r->element != NULL && i < r->elements; i++)
        reply_free(r->element[i]);
    xfree(r->element);
    xfree(r->str);
    xfree(r);
}

static void on_acked_wait(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    struct acked *a = privdata;
    if (err == 0) {
        long long got = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
        if (got < rc->min_replicas_ack) {
            rc->stats.wait_short++;
            log_warn("redis write acknowledged by too few replicas; it will be repeated name=%s "
                     "acked=%lld wanted=%d timeout_ms=%d",
                     rc->name, got, rc->min_replicas_ack, rc->wait_timeout_ms);
            if (rc->wait_short_cb != NULL)
                rc->wait_short_cb(got, rc->wait_short_data);
            err = -SIMAP_EREPLICAS;
        }
    }
    if (a->cb != NULL)
        a->cb(rc, err == 0 ? a->reply : err == -SIMAP_EREPLY ? reply : NULL, err, a->privdata);
    reply_free(a->reply);
    xfree(a);
}

static void on_acked_script(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    struct acked *a = privdata;
    if (err == 0) {
        a->reply = reply_copy(reply);
        err = rconn_command(rc, on_acked_wait, a, "WAIT %d %d", rc->min_replicas_ack,
                            rc->wait_timeout_ms);
        if (err == 0)
            return;
        reply = NULL;
    }
    if (a->cb != NULL)
        a->cb(rc, reply, err, a->privdata);
    reply_free(a->reply);
    xfree(a);
}

int rconn_script_acked(struct rconn *rc, rconn_cb *cb, void *privdata, const char *script_name,
                       int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    if (rc == NULL || rc->min_replicas_ack <= 0)
        return rconn_script(rc, cb, privdata, script_name, nkeys, argc, argv, argvlen);
    struct acked *a = xcalloc(1, sizeof *a);
    a->cb = cb;
    a->privdata = privdata;
    int ret = rconn_script(rc, on_acked_script, a, script_name, nkeys, argc, argv, argvlen);
    if (ret < 0)
        xfree(a);
    return ret;
}

/* ---- Loading scripts ---- */

struct load_batch;

struct load_item {
    struct load_batch *batch;
    const struct script_source *src; /* NULL: the PING of an empty batch */
    char sha[SCRIPT_SHA_HEX_LEN + 1];
};

struct load_batch {
    rconn_cb *cb;
    void *privdata;
    size_t left;
    int err; /* first failure */
    char errmsg[512];
    struct load_item *items;
};

static void on_load_reply(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    struct load_item *it = privdata;
    struct load_batch *b = it->batch;
    const char *name = it->src ? it->src->name : "(none)";
    if (b->err == 0) {
        if (err == -SIMAP_EREPLY) {
            b->err = err;
            snprintf(b->errmsg, sizeof b->errmsg, "ERR script %s: %s", name, reply->str);
        } else if (err < 0) {
            b->err = err;
        } else if (it->src != NULL &&
                   (reply->type != REDIS_REPLY_STRING || strcmp(reply->str, it->sha) != 0)) {
            b->err = -SIMAP_EREPLY;
            snprintf(b->errmsg, sizeof b->errmsg,
                     "ERR script %s: SCRIPT LOAD returned %s, expected digest %s", name,
                     reply->type == REDIS_REPLY_STRING ? reply->str : "a non-string", it->sha);
        }
    }
    if (--b->left > 0)
        return;
    char ok[] = "OK";
    redisReply r;
    memset(&r, 0, sizeof r);
    if (b->err == 0) {
        r.type = REDIS_REPLY_STATUS;
        r.str = ok;
        r.len = 2;
    } else if (b->err == -SIMAP_EREPLY) {
        r.type = REDIS_REPLY_ERROR;
        r.str = b->errmsg;
        r.len = strlen(b->errmsg);
    }
    if (b->cb != NULL)
        b->cb(rc, b->err == 0 || b->err == -SIMAP_EREPLY ? &r : NULL, b->err, b->privdata);
    xfree(b->items);
    xfree(b);
}

int rconn_load_script_sources(struct rconn *rc, rconn_cb *cb, void *privdata,
                              const struct script_source *srcs, size_t n)
{
    if (rc == NULL || (n > 0 && srcs == NULL))
        return -SIMAP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (srcs[i].name == NULL || srcs[i].body == NULL)
            return -SIMAP_EINVAL;
    int ret = check_submit(rc, n > 0 ? n : 1);
    if (ret < 0)
        return ret;
    struct load_batch *b = xcalloc(1, sizeof *b);
    b->cb = cb;
    b->privdata = privdata;
    b->left = n > 0 ? n : 1;
    b->items = xcalloc(b->left, sizeof *b->items);
    for (size_t i = 0; i < b->left; i++) {
        struct load_item *it = &b->items[i];
        it->batch = b;
        char *cmd = NULL;
        int len;
        if (n == 0) {
            len = redisFormatCommand(&cmd, "PING");
        } else {
            it->src = &srcs[i];
            const char *sha = script_sha(it->src);
            if (sha != NULL)
                memcpy(it->sha, sha, sizeof it->sha);
            else
                script_sha1_hex(it->src->body, it->sha);
            len = redisFormatCommand(&cmd, "SCRIPT LOAD %s", it->src->body);
        }
        if (len <= 0)
            abort(); /* only fails on out-of-memory */
        submit(rc, xcalloc(1, sizeof(struct rcmd)), on_load_reply, it, cmd, (size_t)len);
    }
    return 0;
}

int rconn_load_scripts(struct rconn *rc, rconn_cb *cb, void *privdata)
{
    return rconn_load_script_sources(rc, cb, privdata, script_sources, script_source_count);
}
