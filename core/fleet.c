/*
 * core/fleet: membership (role zset + node hashes, re-read on an epoch
 * change) and deterministic bounded-load weighted HRW placement.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/hrw.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

/* ---- Placement ---- */

/* qsort() has no context argument: the arrays being sorted by index. */
static const char *const *sort_units;
static const struct fleet_node *sort_nodes;

/* A unit in placement order: by rank, then key hash, then id, then input
 * index. */
struct uord {
    int64_t rank;
    uint64_t h;
    size_t i;
};

static int cmp_unit(const void *a, const void *b)
{
    const struct uord *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    int c = strcmp(sort_units[x->i], sort_units[y->i]);
    if (c != 0)
        return c;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int cmp_node_idx(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(sort_nodes[i].id, sort_nodes[j].id);
    if (c != 0)
        return c;
    if (sort_nodes[i].capacity != sort_nodes[j].capacity)
        return sort_nodes[i].capacity < sort_nodes[j].capacity ? -1 : 1;
    return i < j ? -1 : i > j;
}

int fleet_place(const struct fleet_node *nodes, size_t n, const char *const *units, size_t m,
                int32_t *owner, size_t *overflow)
{
    return fleet_place_ranked(nodes, n, units, NULL, m, owner, overflow);
}

int fleet_place_ranked(const struct fleet_node *nodes, size_t n, const char *const *units,
                       const int64_t *ranks, size_t m, int32_t *owner, size_t *overflow)
{
    if ((nodes == NULL && n > 0) || ((units == NULL || owner == NULL) && m > 0))
        return -SIMAP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (nodes[i].id == NULL)
            return -SIMAP_EINVAL;
    for (size_t i = 0; i < m; i++)
        if (units[i] == NULL)
            return -SIMAP_EINVAL;

    size_t *norder = xmalloc((n + 1) * sizeof *norder);
    uint64_t *nhash = xmalloc((n + 1) * sizeof *nhash);
    uint64_t *nmix = xmalloc((n + 1) * sizeof *nmix);
    size_t *ngroup = xmalloc((n + 1) * sizeof *ngroup);
    uint32_t *gweight = xmalloc((n + 1) * sizeof *gweight);
    uint64_t *gbest = xmalloc((n + 1) * sizeof *gbest);
    size_t *gpos = xmalloc((n + 1) * sizeof *gpos);
    uint64_t *room = xmalloc((n + 1) * sizeof *room);
    struct uord *uorder = xmalloc((m + 1) * sizeof *uorder);
    for (size_t i = 0; i < n; i++)
        norder[i] = i;
    for (size_t i = 0; i < m; i++)
        uorder[i] =
            (struct uord){ranks != NULL ? ranks[i] : 0, hrw_hash64(units[i], strlen(units[i])), i};
    sort_nodes = nodes;
    qsort(norder, n, sizeof *norder, cmp_node_idx);
    sort_units = units;
    qsort(uorder, m, sizeof *uorder, cmp_unit);
    sort_nodes = NULL;
    sort_units = NULL;

    /* In sorted order from here on: position p stands for nodes[norder[p]]. */
    size_t live = 0, ngroups = 0;
    for (size_t p = 0; p < n; p++) {
        const struct fleet_node *nd = &nodes[norder[p]];
        nhash[p] = hrw_hash64(nd->id, strlen(nd->id));
        nmix[p] = hrw_fmix64(nhash[p] + HRW_NODE_SALT);
        room[p] = nd->capacity;
        if (nd->capacity > 0)
            live++;
        size_t g = 0;
        while (g < ngroups && gweight[g] != nd->capacity)
            g++;
        if (g == ngroups)
            gweight[ngroups++] = nd->capacity;
        ngroup[p] = g;
    }

    size_t over = 0;
    for (size_t q = 0; q < m; q++) {
        size_t u = uorder[q].i;
        uint64_t kh = uorder[q].h;
        /* The best-ranked node with room. Full nodes are skipped rather than
         * walked past: the first node with room in the ranking is the
         * highest-scoring one among those with room. Ties go to the lower
         * sorted position (id order), as in hrw_top_k(). */
        double best = 0.0;
        size_t bp = n;
        if (live > 0) {
            for (size_t g = 0; g < ngroups; g++)
                gpos[g] = n;
            for (size_t p = 0; p < n; p++) {
                if (room[p] == 0)
                    continue;
                /* hrw_score()'s mixing, whose top 53 bits are the u of its
                 * -weight/ln(u): for nodes of one weight the score grows with
                 * u, so only the best node of each weight needs the logarithm. */
                uint64_t v = hrw_fmix64(kh ^ nmix[p]) >> 11;
                size_t g = ngroup[p];
                if (gpos[g] == n || v > gbest[g]) {
                    gbest[g] = v;
                    gpos[g] = p;
                }
            }
            for (size_t g = 0; g < ngroups; g++) {
                size_t p = gpos[g];
                if (p == n)
                    continue;
                double sc = hrw_score(kh, nhash[p], gweight[g]);
                if (bp == n || sc > best || (sc == best && p < bp)) {
                    best = sc;
                    bp = p;
                }
            }
        }
        if (bp == n) {
            owner[u] = -1;
            over++;
            continue;
        }
        owner[u] = (int32_t)norder[bp];
        if (--room[bp] == 0)
            live--;
    }
    if (overflow != NULL)
        *overflow = over;
    xfree(norder);
    xfree(nhash);
    xfree(nmix);
    xfree(ngroup);
    xfree(gweight);
    xfree(gbest);
    xfree(gpos);
    xfree(room);
    xfree(uorder);
    return 0;
}

/* ---- Membership ---- */

struct fleet {
    struct ev_loop *loop;
    struct rconn *rc;
    struct fleet_hooks hooks;
    char *self_id;
    char zset[SCHEMA_KEY_MAX];
    char epoch_key[SCHEMA_KEY_MAX];
    int dead_ms, epoch_poll_ms, full_read_ms;
    ev_timer tick;
    int started;
    int announce_due; /* fleet_start(): INCR at the first tick */
    int loaded;
    struct read *reading; /* full read in flight, or NULL */
    int epoch_inflight;   /* GET epoch in flight */
    int reread;           /* a full read was asked for while one ran */
    long long epoch;      /* last epoch value seen (-1 none) */
    int64_t next_full_at; /* monotonic ms of the next full read */
    uint64_t version;
    struct fleet_member *members;
    size_t nmembers;
    struct fleet_node *nodes;
    size_t nnodes;
    /* Outages: heartbeats nobody could write do not count (see fleet.h). */
    int link_failed;       /* a command failed since the last TIME answer */
    int64_t time_redis_ms; /* the last TIME answer */
    int64_t time_mono;     /* monotonic ms it came at (0: none yet) */
    int64_t answer_mono;   /* monotonic ms of the last answer before a failure */
    int64_t gap_from;      /* Redis TIME span this node could not see, */
    int64_t gap_to;        /* (0, 0 when none) */
};

/* One full read: TIME, ZRANGE, then HMGET per live member. */
struct read {
    struct fleet *f; /* NULL once the fleet is freed */
    int pending;     /* replies still due */
    int failed;
    int64_t now_ms;  /* Redis TIME */
    long long epoch; /* read with the zset */
    struct fleet_member *members;
    size_t n;
};

static void full_read(struct fleet *f);

/* A TIME answer at Redis time now_ms. After a failure, the span from the
 * last answer before it (extrapolated from the last TIME on our clock) to
 * now is a gap: Redis was down or out of this node's reach, and no other
 * node may have been able to beat either. */
static void note_time(struct fleet *f, int64_t now_ms)
{
    int64_t mono = time_mono_ms();
    if (f->link_failed && f->time_mono > 0) {
        int64_t from = f->time_redis_ms + (f->answer_mono - f->time_mono);
        if (now_ms > from) {
            f->gap_from = from;
            f->gap_to = now_ms;
            if (now_ms - from >= 1000)
                log_info("Redis was out of reach: heartbeats missed meanwhile do not count "
                         "role_zset=%s gap_ms=%lld",
                         f->zset, (long long)(now_ms - from));
        }
    }
    f->link_failed = 0;
    f->time_redis_ms = now_ms;
    f->time_mono = f->answer_mono = mono;
}

/* A heartbeat as if the last gap had not happened: one written before it
 * (the node was live then) is moved on by the gap's length, up to its end,
 * so the node gets the full dead limit after Redis is back to beat again. */
static int64_t effective_beat(const struct fleet *f, int64_t beat_ms)
{
    if (f->gap_to == 0 || beat_ms > f->gap_from)
        return beat_ms;
    int64_t b = beat_ms + (f->gap_to - f->gap_from);
    return b < f->gap_to ? b : f->gap_to;
}

/* The newest heartbeat known of node id: Redis' or the one read before, if
 * later (Redis restarted from an older state has lost the newer beats, not
 * the fact that the node was live then). */
static int64_t known_beat(const struct fleet *f, const char *id, int64_t beat_ms)
{
    for (size_t i = 0; i < f->nmembers; i++)
        if (strcmp(f->members[i].id, id) == 0)
            return f->members[i].heartbeat_ms > beat_ms ? f->members[i].heartbeat_ms : beat_ms;
    return beat_ms;
}

static int is_live(const struct fleet *f, int64_t beat_ms, int64_t now_ms)
{
    return effective_beat(f, beat_ms) >= now_ms - f->dead_ms;
}

static void read_done(struct read *r)
{
    struct fleet *f = r->f;
    f->reading = NULL;
    if (r->failed) {
        f->link_failed = 1;
        f->next_full_at = time_mono_ms() + 1000;
        xfree(r->members);
        xfree(r);
        return;
    }
    /* Keep live ones, sorted by id (the zset gave score order). */
    size_t live = 0;
    int64_t oldest = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!is_live(f, r->members[i].heartbeat_ms, r->now_ms))
            continue;
        int64_t beat = effective_beat(f, r->members[i].heartbeat_ms);
        if (live == 0 || beat < oldest)
            oldest = beat;
        r->members[live++] = r->members[i];
    }
    for (size_t i = 1; i < live; i++) { /* few nodes: insertion sort */
        struct fleet_member t = r->members[i];
        size_t j = i;
        while (j > 0 && strcmp(r->members[j - 1].id, t.id) > 0) {
            r->members[j] = r->members[j - 1];
            j--;
        }
        r->members[j] = t;
    }
    struct fleet_node *nodes = xmalloc((live + 1) * sizeof *nodes);
    size_t nn = 0;
    for (size_t i = 0; i < live; i++) {
        if (r->members[i].draining || r->members[i].capacity == 0)
            continue;
        nodes[nn].id = r->members[i].id;
        nodes[nn].capacity = r->members[i].capacity;
        nn++;
    }
    int changed = !f->loaded || nn != f->nnodes;
    for (size_t i = 0; !changed && i < nn; i++)
        changed =
            strcmp(nodes[i].id, f->nodes[i].id) != 0 || nodes[i].capacity != f->nodes[i].capacity;
    xfree(f->members);
    xfree(f->nodes);
    f->members = r->members;
    f->nmembers = live;
    f->nodes = nodes;
    f->nnodes = nn;
    f->loaded = 1;
    if (r->epoch >= 0)
        f->epoch = r->epoch;
    /* Next full read: the period, or just after the oldest beat expires. */
    int64_t wait = f->full_read_ms;
    if (live > 0) {
        int64_t expire = oldest + f->dead_ms - r->now_ms + 100;
        if (expire < wait)
            wait = expire < 100 ? 100 : expire;
    }
    f->next_full_at = time_mono_ms() + wait;
    xfree(r);
    if (f->reread) {
        f->reread = 0;
        f->next_full_at = 0;
    }
    if (changed) {
        f->version++;
        log_info("fleet changed role_zset=%s live=%zu active=%zu", f->zset, live, nn);
        if (f->hooks.on_change != NULL)
            f->hooks.on_change(f, f->hooks.data);
    }
    if (f->next_full_at == 0)
        full_read(f);
}

/* Called for every reply of a read; frees or finishes it on the last. */
static int read_reply_done(struct read *r)
{
    if (--r->pending > 0)
        return 0;
    if (r->f == NULL) {
        xfree(r->members);
        xfree(r);
        return 1;
    }
    read_done(r);
    return 1;
}

static int64_t reply_int(const redisReply *rep, int64_t dflt)
{
    if (rep == NULL)
        return dflt;
    if (rep->type == REDIS_REPLY_INTEGER)
        return rep->integer;
    if (rep->type == REDIS_REPLY_STRING) {
        char buf[32];
        size_t n = rep->len < sizeof buf - 1 ? rep->len : sizeof buf - 1;
        memcpy(buf, rep->str, n);
        buf[n] = '\0';
        char *end;
        long long v = strtoll(buf, &end, 10);
        if (end != buf)
            return v;
    }
    return dflt;
}

struct hreq {
    struct read *r;
    size_t i;
};

static void on_node_hash(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct hreq *h = privdata;
    struct read *r = h->r;
    size_t i = h->i;
    xfree(h);
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        r->failed = 1;
    } else {
        int64_t cap = reply_int(reply->element[0], 0);
        r->members[i].capacity = cap > 0 && cap <= UINT32_MAX ? (uint32_t)cap : 0;
        const redisReply *st = reply->element[1];
        r->members[i].draining = st != NULL && st->type == REDIS_REPLY_STRING && st->len == 8 &&
                                 memcmp(st->str, "draining", 8) == 0;
    }
    read_reply_done(r);
}

static void on_zrange(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct read *r = privdata;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || r->f == NULL || r->failed) {
        r->failed = 1;
        read_reply_done(r);
        return;
    }
    size_t n = reply->elements / 2;
    r->members = xcalloc(n + 1, sizeof *r->members);
    r->n = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = reply->element[2 * i];
        if (id == NULL || id->type != REDIS_REPLY_STRING || id->len == 0 || id->len >= FLEET_ID_MAX)
            continue;
        struct fleet_member *mb = &r->members[r->n];
        memcpy(mb->id, id->str, id->len);
        mb->id[id->len] = '\0';
        mb->heartbeat_ms = known_beat(r->f, mb->id, reply_int(reply->element[2 * i + 1], 0));
        if (!is_live(r->f, mb->heartbeat_ms, r->now_ms))
            continue; /* dead: its hash is not needed */
        r->n++;
    }
    for (size_t i = 0; i < r->n; i++) {
        char key[SCHEMA_KEY_MAX];
        schema_key_node(key, r->members[i].id);
        struct hreq *h = xmalloc(sizeof *h);
        h->r = r;
        h->i = i;
        if (rconn_command(r->f->rc, on_node_hash, h, "HMGET %s capacity state", key) < 0) {
            xfree(h);
            r->failed = 1;
            break;
        }
        r->pending++;
    }
    read_reply_done(r);
}

static void on_time(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct read *r = privdata;
    if (err < 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        r->failed = 1;
    } else {
        int64_t s = reply_int(reply->element[0], -1), us = reply_int(reply->element[1], -1);
        if (s < 0 || us < 0) {
            r->failed = 1;
        } else {
            r->now_ms = s * 1000 + us / 1000;
            if (r->f != NULL)
                note_time(r->f, r->now_ms);
        }
    }
    read_reply_done(r);
}

static void on_read_epoch(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct read *r = privdata;
    if (err == 0 && reply != NULL)
        r->epoch = reply_int(reply, 0);
    read_reply_done(r);
}

static void full_read(struct fleet *f)
{
    if (f->reading != NULL) {
        f->reread = 1;
        return;
    }
    struct read *r = xcalloc(1, sizeof *r);
    r->f = f;
    r->epoch = -1;
    f->next_full_at = time_mono_ms() + f->full_read_ms;
    /* The epoch first: a change after it is seen by the next poll. */
    if (rconn_command(f->rc, on_read_epoch, r, "GET %s", f->epoch_key) == 0)
        r->pending++;
    if (rconn_command(f->rc, on_time, r, "TIME") == 0)
        r->pending++;
    else
        r->failed = 1;
    if (!r->failed && rconn_command(f->rc, on_zrange, r, "ZRANGE %s 0 -1 WITHSCORES", f->zset) == 0)
        r->pending++;
    else
        r->failed = 1;
    if (r->pending == 0) {
        xfree(r);
        f->next_full_at = time_mono_ms() + 1000;
        return;
    }
    f->reading = r;
    /* A failed submission leaves the read to complete with failed set. */
}

static void on_epoch(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    struct fleet *f = privdata;
    f->epoch_inflight = 0;
    if (err < 0 || reply == NULL) {
        f->link_failed = 1;
        return;
    }
    if (!f->link_failed)
        f->answer_mono = time_mono_ms(); /* the gap starts at the last answer before it */
    long long e = reply_int(reply, 0);
    if (e != f->epoch)
        full_read(f);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fleet *f = w->data;
    if (f->announce_due) {
        f->announce_due = 0;
        fleet_announce(f);
        return;
    }
    if (time_mono_ms() >= f->next_full_at) {
        full_read(f);
        return;
    }
    if (!f->epoch_inflight && f->reading == NULL &&
        rconn_command(f->rc, on_epoch, f, "GET %s", f->epoch_key) == 0)
        f->epoch_inflight = 1;
}

struct fleet *fleet_new(struct ev_loop *loop, struct rconn *rc, const struct fleet_opts *opts,
                        const struct fleet_hooks *hooks)
{
    struct fleet *f = xcalloc(1, sizeof *f);
    f->loop = loop;
    f->rc = rc;
    if (hooks != NULL)
        f->hooks = *hooks;
    f->self_id = xstrdup(opts->self_id != NULL ? opts->self_id : "");
    schema_key_role(f->zset, opts->role);
    schema_key_role_epoch(f->epoch_key, opts->role);
    f->dead_ms = opts->dead_ms > 0 ? opts->dead_ms : FLEET_DEAD_MS;
    f->epoch_poll_ms = opts->epoch_poll_ms > 0 ? opts->epoch_poll_ms : FLEET_EPOCH_POLL_MS;
    f->full_read_ms = opts->full_read_ms > 0 ? opts->full_read_ms : FLEET_FULL_READ_MS;
    f->epoch = -1;
    double period = f->epoch_poll_ms / 1000.0;
    ev_timer_init(&f->tick, on_tick, period, period);
    f->tick.data = f;
    return f;
}

void fleet_free(struct fleet *f)
{
    if (f == NULL)
        return;
    ev_timer_stop(f->loop, &f->tick);
    if (f->reading != NULL)
        f->reading->f = NULL;
    xfree(f->members);
    xfree(f->nodes);
    xfree(f->self_id);
    xfree(f);
}

static void on_incr(struct rconn *rc, redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    (void)privdata;
    if (err < 0 && err != -SIMAP_ESHUTDOWN)
        log_warn("cannot announce a membership change err=\"%s\"", err_str(err));
}

void fleet_announce(struct fleet *f)
{
    rconn_command(f->rc, on_incr, NULL, "INCR %s", f->epoch_key);
    full_read(f);
}

void fleet_refresh(struct fleet *f)
{
    full_read(f);
}

void fleet_start(struct fleet *f)
{
    /* The first tick comes right after the current callback chain, which
     * sends the node's heartbeat: the announce and read go after it. */
    f->announce_due = 1;
    ev_timer_stop(f->loop, &f->tick);
    ev_timer_set(&f->tick, 0.02, f->epoch_poll_ms / 1000.0);
    ev_timer_start(f->loop, &f->tick);
    f->started = 1;
}

int fleet_loaded(const struct fleet *f)
{
    return f->loaded;
}

const struct fleet_member *fleet_members(const struct fleet *f, size_t *n)
{
    *n = f->nmembers;
    return f->members;
}

const struct fleet_node *fleet_nodes(const struct fleet *f, size_t *n)
{
    *n = f->nnodes;
    return f->nodes;
}

uint64_t fleet_version(const struct fleet *f)
{
    return f->version;
}
