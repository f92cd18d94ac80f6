/*
 * core/reaper: a dead peer noticed by its closed Redis connection (see
 * reaper.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/reaper.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/fleet.h"
#include "core/incarnation.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "core/schema.h"
#include "core/time.h"

#define TOKEN_MAX (FLEET_ID_MAX + 24) /* <node>:<g> */

/* What this node knows of one peer's connection. */
struct peer {
    char id[FLEET_ID_MAX];
    char token[TOKEN_MAX]; /* from its connection's name */
    int seen;              /* its named connection was seen since the last reset */
    int64_t missing_since; /* mono ms when it was first not seen; 0: seen last time */
    int reaping;           /* node_reap in flight */
    int present;           /* its named connection is in the listing being read */
};

struct reaper {
    struct ev_loop *loop;
    struct rconn *rc;
    struct fleet *fleet;
    struct incarnation *inc;
    struct reaper_opts o;
    char role[16];
    char self_id[FLEET_ID_MAX];
    char name[RCONN_CLIENT_NAME_MAX + 1]; /* our connection's name, as last set */
    int named;                            /* our name was seen in CLIENT LIST */
    uint64_t connects;                    /* our rconn's handshakes when last listed */
    struct peer *peers;
    size_t npeers, cappeers;
    int listing; /* CLIENT LIST in flight */
    ev_timer tick;
    struct rreq_owner reqs;
    struct metric *m_reaped, *m_seen;
};

struct call {
    struct rreq req; /* first: rreq_xfree() */
    struct reaper *r;
    char id[FLEET_ID_MAX]; /* the peer being reaped */
};

static struct call *call_new(struct reaper *r, rreq_cb *cb)
{
    struct call *c = xcalloc(1, sizeof *c);
    c->r = r;
    rreq_start(&c->req, &r->reqs, cb, rreq_xfree);
    return c;
}

static struct reaper *reaper_of(struct rreq *req)
{
    return RREQ_CONTAINER(req, struct call, req)->r;
}

static struct peer *find_peer(struct reaper *r, const char *id)
{
    for (size_t i = 0; i < r->npeers; i++)
        if (strcmp(r->peers[i].id, id) == 0)
            return &r->peers[i];
    return NULL;
}

static struct peer *add_peer(struct reaper *r, const char *id)
{
    if (r->npeers == r->cappeers) {
        r->cappeers = r->cappeers ? r->cappeers * 2 : 8;
        r->peers = xrealloc(r->peers, r->cappeers * sizeof *r->peers);
    }
    struct peer *p = &r->peers[r->npeers++];
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    return p;
}

/* Forgets what was seen: after our own reconnect, everyone reconnects. */
static void reset_peers(struct reaper *r)
{
    for (size_t i = 0; i < r->npeers; i++) {
        r->peers[i].seen = 0;
        r->peers[i].missing_since = 0;
    }
}

/* Drops the peers that are no longer members (and not being reaped). */
static void prune_peers(struct reaper *r, const struct fleet_member *m, size_t n)
{
    size_t keep = 0;
    for (size_t i = 0; i < r->npeers; i++) {
        int member = r->peers[i].reaping;
        for (size_t j = 0; j < n && !member; j++)
            member = strcmp(m[j].id, r->peers[i].id) == 0;
        if (member)
            r->peers[keep++] = r->peers[i];
    }
    r->npeers = keep;
}

/* ---- Reaping ---- */

static void on_reaped(struct rreq *req, struct redisReply *reply, int err)
{
    struct reaper *r = reaper_of(req);
    const char *id = RREQ_CONTAINER(req, struct call, req)->id;
    struct peer *p = find_peer(r, id);
    if (p != NULL) {
        p->reaping = 0;
        p->seen = 0; /* seen again only if it comes back */
        p->missing_since = 0;
    }
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        log_warn("cannot reap a dead peer; its alive keys will expire peer=%s err=\"%s\"", id,
                 err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "bad reply"));
        return;
    }
    if (reply->integer < 0) {
        log_debug("not reaping: this node's own alive key is gone peer=%s", id);
        return;
    }
    if (reply->integer == 0) { /* it had left cleanly, or its keys expired */
        log_debug("peer's connection is gone and so are its alive keys peer=%s", id);
        return;
    }
    metric_inc(r->m_reaped);
    log_warn("peer's Redis connection is gone; its leases are free peer=%s token=%s "
             "alive_keys=%lld",
             id, p != NULL ? p->token : "?", (long long)reply->integer);
    fleet_refresh(r->fleet);
}

static void reap(struct reaper *r, struct peer *p)
{
    char zset[SCHEMA_KEY_MAX], node[SCHEMA_KEY_MAX], epoch[SCHEMA_KEY_MAX];
    char alive[SCHEMA_KEY_MAX], shards[16];
    schema_key_role(zset, r->role);
    schema_key_node(node, p->id);
    schema_key_role_epoch(epoch, r->role);
    incarnation_alive_key(r->inc, 0, alive, sizeof alive);
    snprintf(shards, sizeof shards, "%d", r->o.shards);
    const char *argv[] = {zset, node, epoch, alive, p->id, p->token, shards};
    struct call *c = call_new(r, on_reaped);
    snprintf(c->id, sizeof c->id, "%s", p->id);
    if (rconn_script(r->rc, rreq_on_reply, &c->req, "node_reap", 4, 7, argv, NULL) < 0) {
        rreq_abort(&c->req);
        return;
    }
    p->reaping = 1;
}

/* ---- Watching the connections ---- */

/* The value of field key= in one CLIENT LIST line (up to its space), into
 * out; 0, or -1 when absent or too long. */
static int field(const char *line, const char *eol, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (const char *p = line; p < eol; p++) {
        if ((p == line || p[-1] == ' ') && (size_t)(eol - p) > klen && memcmp(p, key, klen) == 0) {
            p += klen;
            const char *end = p;
            while (end < eol && *end != ' ')
                end++;
            if ((size_t)(end - p) >= outlen)
                return -1;
            memcpy(out, p, (size_t)(end - p));
            out[end - p] = '\0';
            return 0;
        }
    }
    return -1;
}

/* A member's connection name has our role's prefix, its id and ":<g>". */
static const char *token_of(const struct reaper *r, const char *name)
{
    size_t plen = strlen(r->role) + 4; /* "si:" role ":" */
    if (strncmp(name, "si:", 3) != 0 || strncmp(name + 3, r->role, plen - 4) != 0 ||
        name[plen - 1] != ':')
        return NULL;
    return name + plen;
}

static int token_is_of(const char *token, const char *id)
{
    size_t n = strlen(id);
    if (strncmp(token, id, n) != 0 || token[n] != ':' || token[n + 1] == '\0')
        return 0;
    for (const char *c = token + n + 1; *c != '\0'; c++)
        if (*c < '0' || *c > '9')
            return 0;
    return 1;
}

/* The peer whose connection a role token names, or NULL. */
static struct peer *peer_of_token(struct reaper *r, const char *tok)
{
    for (size_t i = 0; i < r->npeers; i++)
        if (token_is_of(tok, r->peers[i].id))
            return &r->peers[i];
    return NULL;
}

static void on_list(struct rreq *req, struct redisReply *reply, int err)
{
    struct reaper *r = reaper_of(req);
    r->listing = 0;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_STRING)
        return;
    /* Our connection must be the one of the last listing (a reconnect, or a
     * restart of Redis, resets what was seen: every peer reconnects too),
     * and carry our name (else the rename is not through yet). */
    struct rconn_stats st;
    rconn_stats(r->rc, &st);
    if (st.connects != r->connects) {
        r->connects = st.connects;
        r->named = 0;
        reset_peers(r);
        return;
    }

    /* The peers are the members of the fleet as read now. */
    size_t n;
    const struct fleet_member *m = fleet_members(r->fleet, &n);
    prune_peers(r, m, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].id, r->self_id) != 0 && find_peer(r, m[i].id) == NULL)
            add_peer(r, m[i].id);
    for (size_t i = 0; i < r->npeers; i++)
        r->peers[i].present = 0;

    /* One pass over the listing: our own name, and each peer's. */
    const char *text = reply->str, *end = reply->str + reply->len;
    char name[RCONN_CLIENT_NAME_MAX + 1];
    int own = 0;
    for (const char *line = text; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        if (field(line, eol, "name=", name, sizeof name) == 0) {
            const char *tok = token_of(r, name);
            struct peer *p;
            if (strcmp(name, r->name) == 0)
                own = 1;
            else if (tok != NULL && (p = peer_of_token(r, tok)) != NULL &&
                     strlen(tok) < sizeof p->token) {
                snprintf(p->token, sizeof p->token, "%s", tok);
                p->present = 1;
            }
        }
        line = eol + 1;
    }
    if (!own)
        return;
    if (!r->named) { /* the first listing with our name: a baseline */
        r->named = 1;
        reset_peers(r);
    }

    int64_t now = time_mono_ms();
    int seen = 0;
    for (size_t i = 0; i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        if (p->reaping) {
            /* judged already */
        } else if (p->present) {
            p->seen = 1;
            p->missing_since = 0;
        } else if (p->seen && p->missing_since == 0) {
            p->missing_since = now;
        } else if (p->seen && now - p->missing_since >= r->o.grace_ms) {
            reap(r, p);
        }
        seen += p->seen;
    }
    metric_set(r->m_seen, seen);
}

/* Names our connection after the current generation. */
static void name_connection(struct reaper *r)
{
    char name[sizeof r->name];
    snprintf(name, sizeof name, "si:%s:%s", r->role, incarnation_token(r->inc));
    if (strcmp(name, r->name) == 0)
        return;
    if (rconn_set_client_name(r->rc, name) == 0)
        snprintf(r->name, sizeof r->name, "%s", name);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct reaper *r = w->data;
    if (!incarnation_is_live(r->inc) || !fleet_loaded(r->fleet) || r->listing ||
        !rconn_is_connected(r->rc))
        return;
    name_connection(r);
    struct call *c = call_new(r, on_list);
    if (rconn_command(r->rc, rreq_on_reply, &c->req, "CLIENT LIST TYPE normal") < 0) {
        rreq_abort(&c->req);
        return;
    }
    r->listing = 1;
}

/* ---- Life ---- */

struct reaper *reaper_new(struct ev_loop *loop, struct rconn *rc, struct fleet *fleet,
                          struct incarnation *inc, const struct reaper_opts *opts)
{
    struct reaper *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->rc = rc;
    r->fleet = fleet;
    r->inc = inc;
    r->o = *opts;
    if (r->o.grace_ms <= 0)
        r->o.grace_ms = REAPER_GRACE_MS;
    if (r->o.poll_ms <= 0)
        r->o.poll_ms = REAPER_POLL_MS;
    snprintf(r->role, sizeof r->role, "%s", opts->role);
    snprintf(r->self_id, sizeof r->self_id, "%s", opts->self_id);
    r->o.role = r->role;
    r->o.self_id = r->self_id;
    rreq_owner_init(&r->reqs, 0);
    ev_timer_init(&r->tick, on_tick, (double)r->o.poll_ms / 1000.0, (double)r->o.poll_ms / 1000.0);
    r->tick.data = r;
    if (opts->metrics != NULL) {
        r->m_reaped = metrics_counter(opts->metrics, "superimap_fleet_peers_reaped_total",
                                      "Dead peers whose leases this node freed when their Redis "
                                      "connection closed (before their alive keys expired)",
                                      NULL);
        r->m_seen = metrics_gauge(opts->metrics, "superimap_fleet_peers_seen",
                                  "Peers of this node's role whose named Redis connection it has "
                                  "seen: those it would reap within seconds if they died",
                                  NULL);
    }
    return r;
}

void reaper_start(struct reaper *r)
{
    if (!ev_is_active(&r->tick))
        ev_timer_start(r->loop, &r->tick);
}

void reaper_live(struct reaper *r)
{
    name_connection(r);
}

void reaper_free(struct reaper *r)
{
    if (r == NULL)
        return;
    ev_timer_stop(r->loop, &r->tick);
    rreq_owner_cancel(&r->reqs);
    xfree(r->peers);
    xfree(r);
}
