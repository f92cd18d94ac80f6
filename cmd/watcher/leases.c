/*
 * cmd/watcher/leases: the watcher's lease manager: placement, leases,
 * hand-overs, fencing and drain (see leases.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/leases.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/watcher/imap_session.h"
#include "cmd/watcher/users.h"
#include "cmd/watcher/watcher.h"
#include "core/config.h"
#include "core/err.h"
#include "core/fleet.h"
#include "core/reaper.h"
#include "core/incarnation.h"
#include "core/lease.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/offload.h"
#include "core/pool.h"
#include "core/rconn.h"
#include "core/rreq.h"
#include "core/schema.h"
#include "core/time.h"

/* A lease held by another live incarnation is asked for again this often. */
#define LEASE_RETRY_MS 2000

/* The over-capacity summary is logged at most this often. */
#define UNASSIGNED_LOG_MS 10000

/* Placement runs within a second of a change of users or fleet (the manager
 * tick), and this often in any case: a pure function of both, with neither
 * changed it only confirms the last one (up to a second of CPU for a million
 * users, so it is not repeated every tick). */
#define REBALANCE_MS 60000

/* ---- Per-user state ---- */

enum slot_state {
    U_ELSEWHERE,  /* placed on another watcher (or not placed yet) */
    U_UNASSIGNED, /* over the fleet's capacity */
    U_PENDING,    /* within capacity, waiting for a live incarnation */
    U_ACQUIRING,  /* lease_acquire in flight */
    U_WAITING,    /* held by another live incarnation; retry at retry_at */
    U_HELD,       /* ours; session runs */
};

struct slot {
    struct slot *prev, *next; /* on the list of its state (not U_ACQUIRING, U_ELSEWHERE);
                                 U_HELD: on moving_list when placed elsewhere */
    struct user_entry *u;
    struct imap_session *s;
    enum slot_state st;
    enum slot_state move_to; /* on moving_list: U_ELSEWHERE or U_UNASSIGNED */
    int64_t retry_at;
    uint64_t gen; /* of the lease_acquire in flight or the lease held */
};

struct leases {
    struct watcher *w;
    struct fleet *fleet;
    struct reaper *reaper; /* frees a dead peer's leases when its connection closes */
    /* A list head is a slot used as a sentinel. */
    struct slot unassigned_list, pending_list, waiting_list, moving_list;
    int draining;            /* no lease is taken any more */
    struct rreq_owner reqs;  /* lease_acquire calls; leases_free() lets go of them */
    int held;                /* users with a lease (or acquiring one) */
    int nunassigned;         /* users over capacity */
    int nplaced;             /* users placement gives this watcher */
    int rebalance_due;       /* users or fleet changed: place again soon */
    int64_t rebalanced_at;   /* monotonic ms of the last placement */
    uint64_t placed_version; /* fleet_version() it used */
    struct offload *placer;  /* computes placements off the loop */
    uint64_t removals;       /* users that left the registry, ever */
    double move_tokens;      /* token bucket of hand-overs */
    int64_t move_tokens_at;
    struct metric *m_moves, *m_placed, *m_fleet;
    int64_t unassigned_logged_at;
    int unassigned_logged;
    ev_timer tick;
    int readies; /* leases_ready() calls: Redis reconnects after the first */
    void (*drained)(void *data);
    void *drained_data;
};

static void list_init(struct slot *h)
{
    h->prev = h->next = h;
}

static void list_del(struct slot *sl)
{
    if (sl->next == NULL)
        return;
    sl->prev->next = sl->next;
    sl->next->prev = sl->prev;
    sl->prev = sl->next = NULL;
}

static void list_add_tail(struct slot *h, struct slot *sl)
{
    list_del(sl);
    sl->prev = h->prev;
    sl->next = h;
    h->prev->next = sl;
    h->prev = sl;
}

/* 1 for the states that count as taken by this watcher. */
static int taken(enum slot_state st)
{
    return st != U_UNASSIGNED && st != U_ELSEWHERE;
}

static void set_slot(struct leases *l, struct slot *sl, enum slot_state st)
{
    l->held += taken(st) - taken(sl->st);
    l->nunassigned += (st == U_UNASSIGNED) - (sl->st == U_UNASSIGNED);
    sl->st = st;
    list_del(sl);
    if (st == U_UNASSIGNED)
        list_add_tail(&l->unassigned_list, sl);
    else if (st == U_PENDING)
        list_add_tail(&l->pending_list, sl);
    else if (st == U_WAITING)
        list_add_tail(&l->waiting_list, sl);
}

/* ---- Leases ---- */

/* One lease_acquire in flight. */
struct areq {
    struct rreq req; /* first: released by rreq_xfree() */
    struct leases *l;
    uint64_t gen;
    uint32_t k;
    char uid[];
};

static void release_lease(struct leases *l, const char *uid, uint32_t k)
{
    char lease[SCHEMA_KEY_MAX];
    schema_key_lease(lease, k, uid);
    lease_release(l->w->redis, l->w->inc, lease, NULL, NULL);
}

static void on_acquired(struct rreq *req, struct redisReply *reply, int err)
{
    struct areq *a = RREQ_CONTAINER(req, struct areq, req);
    struct leases *l = a->l;
    struct user_entry *u = users_find(l->w->users, a->uid);
    struct slot *sl = u != NULL ? u->data : NULL;
    enum lease_answer ans = lease_answer_of(reply, err);
    if (sl == NULL || sl->st != U_ACQUIRING || sl->gen != a->gen || l->draining) {
        /* Removed, fenced or draining meanwhile: give back what we got. */
        if (ans == LEASE_ACQUIRED && a->gen == incarnation_generation(l->w->inc))
            release_lease(l, a->uid, a->k);
        return;
    }
    if (ans == LEASE_ACQUIRED) {
        set_slot(l, sl, U_HELD);
        sl->s = imap_session_new(l->w, u->uid, u->k);
        imap_session_start(sl->s, a->gen);
    } else if (ans == LEASE_BUSY) {
        metric_inc(l->w->m.lease_waits);
        log_debug("lease held by another watcher acct=%s", u->uid);
        sl->retry_at = time_mono_ms() + LEASE_RETRY_MS;
        set_slot(l, sl, U_WAITING);
    } else if (ans == LEASE_FENCED) {
        set_slot(l, sl, U_PENDING);
        lease_fence(l->w->inc, a->gen);
    } else {
        log_warn("lease_acquire failed acct=%s err=\"%s\"", u->uid,
                 err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "unexpected reply"));
        sl->retry_at = time_mono_ms() + LEASE_RETRY_MS;
        set_slot(l, sl, U_WAITING);
    }
}

static void acquire(struct leases *l, struct slot *sl)
{
    if (!incarnation_is_live(l->w->inc) || l->draining) {
        set_slot(l, sl, U_PENDING);
        return;
    }
    struct user_entry *u = sl->u;
    char lease[SCHEMA_KEY_MAX];
    schema_key_lease(lease, u->k, u->uid);
    size_t n = strlen(u->uid);
    struct areq *a = xmalloc(sizeof *a + n + 1);
    a->l = l;
    a->gen = incarnation_generation(l->w->inc);
    a->k = u->k;
    memcpy(a->uid, u->uid, n + 1);
    rreq_start(&a->req, &l->reqs, on_acquired, rreq_xfree);
    if (lease_acquire(l->w->redis, l->w->inc, u->k, lease, rreq_on_reply, &a->req) < 0) {
        rreq_abort(&a->req);
        sl->retry_at = time_mono_ms() + LEASE_RETRY_MS;
        set_slot(l, sl, U_WAITING);
        return;
    }
    sl->gen = a->gen; /* a lives until its answer */
    set_slot(l, sl, U_ACQUIRING);
}

static void on_unassigned_written(struct rconn *rc, struct redisReply *reply, int err,
                                  void *privdata)
{
    (void)rc;
    (void)reply;
    (void)privdata;
    if (err < 0 && err != -SIMAP_ESHUTDOWN)
        log_debug("cannot mark a user unassigned err=\"%s\"", err_str(err));
}

static void mark_unassigned(struct leases *l, struct slot *sl)
{
    set_slot(l, sl, U_UNASSIGNED);
    char lease[SCHEMA_KEY_MAX], user[SCHEMA_KEY_MAX];
    schema_key_lease(lease, sl->u->k, sl->u->uid);
    schema_key_user(user, sl->u->k, sl->u->uid);
    const char *argv[] = {lease, user, "unassigned"};
    rconn_script(l->w->redis, on_unassigned_written, NULL, "user_unassigned", 2, 3, argv, NULL);
    log_debug("user over capacity stays unwatched acct=%s capacity=%d", sl->u->uid, l->w->capacity);
}

/* ---- Placement ---- */

/* Hands over held users placed elsewhere, as many as the move budget allows:
 * LOGOUT, then lease_release (the cursor is in Redis already); the new owner
 * acquires at its next try. */
static void run_moves(struct leases *l)
{
    int64_t now = time_mono_ms();
    double rate = l->w->cfg->max_moves_per_sec;
    l->move_tokens += rate * (double)(now - l->move_tokens_at) / 1000.0;
    if (l->move_tokens > rate)
        l->move_tokens = rate;
    l->move_tokens_at = now;
    while (l->moving_list.next != &l->moving_list && l->move_tokens >= 1.0) {
        struct slot *sl = l->moving_list.next;
        list_del(sl);
        l->move_tokens -= 1.0;
        metric_inc(l->m_moves);
        log_debug("handing a user over to its new watcher acct=%s", sl->u->uid);
        if (sl->s != NULL) {
            imap_session_drop(sl->s, 1);
            sl->s = NULL;
            release_lease(l, sl->u->uid, sl->u->k);
        }
        if (sl->move_to == U_UNASSIGNED)
            mark_unassigned(l, sl); /* after the release: no live holder then */
        else
            set_slot(l, sl, U_ELSEWHERE);
    }
}

/*
 * Placement runs on a thread of its own (core/offload): at a million users
 * fleet_place() takes most of a second, which on the loop would stall every
 * session. The loop gathers a copy of the nodes and of the users' ids, the
 * thread places them, and the loop applies the answer. Users that joined
 * meanwhile are placed by the next run (their on_add asked for one); users
 * that left meanwhile are skipped: while none left, the gathered entries
 * are used as they are, otherwise each id is looked up again.
 */
struct placement {
    struct fleet_node *nodes; /* copies; ids point into node_ids */
    char (*node_ids)[FLEET_ID_MAX];
    size_t nn, self;
    struct user_entry **us;
    char *uids; /* m ids of SCHEMA_UID_LEN + 1 bytes each */
    const char **ids;
    int64_t *ranks; /* each user's admission (user_entry.admitted) */
    size_t m;
    uint64_t removals; /* l->removals at the gather */
    int32_t *owner;
    size_t overflow;
    int rc;
};

static void placement_free(struct placement *p)
{
    if (p == NULL)
        return;
    xfree(p->nodes);
    xfree(p->node_ids);
    xfree(p->us);
    xfree(p->uids);
    xfree(p->ids);
    xfree(p->ranks);
    xfree(p->owner);
    xfree(p);
}

static void gather_user(struct user_entry *u, void *data)
{
    struct placement *p = data;
    char *id = p->uids + p->m * (SCHEMA_UID_LEN + 1);
    snprintf(id, SCHEMA_UID_LEN + 1, "%s", u->uid);
    p->us[p->m] = u;
    p->ids[p->m] = id;
    p->ranks[p->m] = u->admitted;
    p->m++;
}

static void place_work(void *job)
{
    struct placement *p = job;
    p->rc = fleet_place_ranked(p->nodes, p->nn, p->ids, p->ranks, p->m, p->owner, &p->overflow);
}

/* Starts a placement of the users over the fleet as read now; every node
 * computes the same from the same users and fleet view (fleet_place() sorts
 * both). Users are ranked by admission, so a full fleet leaves the users
 * admitted last unwatched (issue #15 point 13: overflow is sticky). */
static void rebalance(struct leases *l)
{
    struct watcher *w = l->w;
    if (l->draining || !fleet_loaded(l->fleet) || !users_loaded(w->users))
        return;
    if (offload_busy(l->placer)) {
        l->rebalance_due = 1; /* once the one under way is applied */
        return;
    }
    size_t nn;
    const struct fleet_node *nodes = fleet_nodes(l->fleet, &nn);
    size_t self = nn;
    for (size_t i = 0; i < nn; i++)
        if (strcmp(nodes[i].id, node_id(w->node)) == 0)
            self = i;
    if (self == nn) {
        /* Our own beat is not seen yet (or is late): keep what we have and
         * read again. */
        l->rebalance_due = 1;
        fleet_refresh(l->fleet);
        return;
    }
    l->rebalance_due = 0;
    l->rebalanced_at = time_mono_ms();
    l->placed_version = fleet_version(l->fleet);
    struct placement *p = xcalloc(1, sizeof *p);
    p->nn = nn;
    p->self = self;
    p->nodes = xmalloc(nn * sizeof *p->nodes);
    p->node_ids = xmalloc(nn * sizeof *p->node_ids);
    for (size_t i = 0; i < nn; i++) {
        snprintf(p->node_ids[i], FLEET_ID_MAX, "%s", nodes[i].id);
        p->nodes[i].id = p->node_ids[i];
        p->nodes[i].capacity = nodes[i].capacity;
    }
    size_t total = users_count(w->users) + 1;
    p->us = xmalloc(total * sizeof *p->us);
    p->uids = xmalloc(total * (SCHEMA_UID_LEN + 1));
    p->ids = xmalloc(total * sizeof *p->ids);
    p->ranks = xmalloc(total * sizeof *p->ranks);
    p->owner = xmalloc(total * sizeof *p->owner);
    users_foreach(w->users, gather_user, p);
    p->removals = l->removals;
    if (offload_run(l->placer, place_work, p) < 0) {
        log_warn("placement: no thread could be started; trying again in a second");
        placement_free(p);
        l->rebalance_due = 1;
    }
}

/* The placement's answer, on the loop. */
static void apply_placement(void *job, void *data)
{
    struct placement *p = job;
    struct leases *l = data;
    struct watcher *w = l->w;
    if (p->rc < 0 || l->draining) {
        placement_free(p);
        return;
    }
    int placed = 0, moving = 0;
    for (size_t i = 0; i < p->m; i++) {
        struct user_entry *u =
            p->removals == l->removals ? p->us[i] : users_find(w->users, p->ids[i]);
        struct slot *sl = u != NULL ? u->data : NULL;
        if (sl == NULL)
            continue;
        if (p->owner[i] == (int32_t)p->self) {
            placed++;
            if (sl->st == U_ELSEWHERE || sl->st == U_UNASSIGNED) {
                set_slot(l, sl, U_PENDING);
                acquire(l, sl);
            } else if (sl->st == U_HELD && sl->next != NULL) {
                list_del(sl); /* placed back here before it was handed over */
            }
            continue;
        }
        enum slot_state to = p->owner[i] < 0 ? U_UNASSIGNED : U_ELSEWHERE;
        if (sl->st == U_HELD) {
            sl->move_to = to;
            if (sl->next == NULL)
                list_add_tail(&l->moving_list, sl); /* stays U_HELD until handed over */
            moving++;
        } else if (to == U_UNASSIGNED && sl->st != U_UNASSIGNED) {
            mark_unassigned(l, sl);
        } else if (sl->st != to) {
            set_slot(l, sl, to);
        }
    }
    l->nplaced = placed;
    metric_set(l->m_placed, placed);
    metric_set(w->m.unassigned, (double)p->overflow);
    metric_set(l->m_fleet, (double)p->nn);
    log_debug("placement users=%zu nodes=%zu placed=%d moving=%d overflow=%zu", p->m, p->nn, placed,
              moving, p->overflow);
    placement_free(p);
    run_moves(l);
}

static void on_fleet_change(struct fleet *f, void *data)
{
    size_t nn;
    fleet_nodes(f, &nn);
    log_info("watchers changed: placing users again watchers=%zu", nn);
    rebalance(data);
}

/* ---- Users registry hooks ---- */

static void on_user_add(struct user_entry *u, void *data)
{
    struct leases *l = data;
    struct slot *sl = pool_alloc(l->w->pool, sizeof *sl);
    sl->u = u;
    u->data = sl;
    sl->st = U_ELSEWHERE; /* until placement says otherwise */
    metric_set(l->w->m.users, (double)users_count(l->w->users));
    l->rebalance_due = 1;
}

static void on_user_remove(struct user_entry *u, void *data)
{
    struct leases *l = data;
    struct slot *sl = u->data;
    if (sl == NULL)
        return;
    if (sl->s != NULL) {
        imap_session_drop(sl->s, 1);
        sl->s = NULL;
        release_lease(l, u->uid, u->k);
    }
    l->held -= taken(sl->st);
    l->nunassigned -= sl->st == U_UNASSIGNED;
    list_del(sl);
    metric_set(l->w->m.users, (double)users_count(l->w->users));
    u->data = NULL;
    pool_release(l->w->pool, sl, sizeof *sl);
    l->removals++;
    l->rebalance_due = 1;
}

static void on_user_change(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl != NULL && sl->s != NULL)
        imap_session_restart(sl->s);
}

/* ---- Incarnation hooks ---- */

static void on_live(struct incarnation *inc, void *data)
{
    struct leases *l = data;
    reaper_live(l->reaper);
    metric_set(l->w->m.generation, (double)incarnation_generation(inc));
    while (l->pending_list.next != &l->pending_list)
        acquire(l, l->pending_list.next);
}

static void fence_slot(struct user_entry *u, void *data)
{
    struct leases *l = data;
    struct slot *sl = u->data;
    if (sl == NULL || !taken(sl->st))
        return;
    int moving = sl->st == U_HELD && sl->next != NULL; /* was to be handed over */
    if (sl->s != NULL) {
        imap_session_drop(sl->s, 0);
        sl->s = NULL;
    }
    set_slot(l, sl, moving ? U_ELSEWHERE : U_PENDING);
}

static void on_fenced(struct incarnation *inc, const char *why, void *data)
{
    (void)inc;
    struct leases *l = data;
    metric_inc(l->w->m.fences);
    log_warn("fenced: every session dropped; taking leases again under a new generation "
             "sessions=%d why=\"%s\"",
             l->w->nsessions, why);
    users_foreach(l->w->users, fence_slot, l);
    l->rebalance_due = 1; /* hand-overs cut short: place every user again */
}

/* The sessions' hook (struct watcher's on_lost_lease). */
static void on_lost_lease(struct watcher *w, const char *uid, const char *why)
{
    log_warn("lease lost acct=%s why=\"%s\"", uid, why);
    struct user_entry *u = users_find(w->users, uid);
    struct slot *sl = u != NULL ? u->data : NULL;
    uint64_t gen = sl != NULL ? sl->gen : incarnation_generation(w->inc);
    incarnation_fence(w->inc, gen, why);
}

/* ---- Manager tick ---- */

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct leases *l = t->data;
    struct watcher *w = l->w;
    int64_t now = time_mono_ms();
    if (l->rebalance_due || fleet_version(l->fleet) != l->placed_version ||
        now - l->rebalanced_at >= REBALANCE_MS)
        rebalance(l);
    run_moves(l);
    if (!l->draining && incarnation_is_live(w->inc)) {
        /* Users whose lease another incarnation held: ask again. */
        struct slot *sl = l->waiting_list.next;
        while (sl != &l->waiting_list) {
            struct slot *next = sl->next;
            if (now >= sl->retry_at)
                acquire(l, sl);
            sl = next;
        }
    }
    if (l->nunassigned != l->unassigned_logged &&
        now - l->unassigned_logged_at >= UNASSIGNED_LOG_MS) {
        if (l->nunassigned > 0)
            log_warn("users over capacity stay unwatched (state unassigned): the fleet's "
                     "watchers are full unassigned=%d capacity=%d users=%zu",
                     l->nunassigned, w->capacity, users_count(w->users));
        else
            log_info("every user is assigned users=%zu capacity=%d", users_count(w->users),
                     w->capacity);
        l->unassigned_logged = l->nunassigned;
        l->unassigned_logged_at = now;
    }
}

/* ---- Ready, drain ---- */

static void recheck_slot(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl != NULL && sl->st == U_HELD && sl->s != NULL)
        imap_session_recheck(sl->s);
}

void leases_ready(struct leases *l)
{
    incarnation_start(l->w->inc);
    users_start(l->w->users);
    fleet_start(l->fleet);
    reaper_start(l->reaper);
    /* Redis may have restarted and lost its last writes (a lease, a cursor
     * and its events): sessions check theirs and fetch again what is gone. */
    if (l->readies++ > 0)
        users_foreach(l->w->users, recheck_slot, NULL);
}

static void on_retired(void *data)
{
    struct leases *l = data;
    log_info("leases released and alive keys deleted");
    l->drained(l->drained_data);
}

struct drain_walk {
    struct leases *l;
    struct lease_drain *dr;
};

static void drain_slot(struct user_entry *u, void *data)
{
    struct drain_walk *dw = data;
    struct slot *sl = u->data;
    if (sl == NULL || sl->s == NULL)
        return;
    imap_session_drop(sl->s, 1);
    sl->s = NULL;
    char lease[SCHEMA_KEY_MAX];
    schema_key_lease(lease, u->k, u->uid);
    lease_drain_release(dw->dr, dw->l->w->redis, lease);
}

void leases_drain(struct leases *l, void (*done)(void *data), void *data)
{
    l->draining = 1;
    l->drained = done;
    l->drained_data = data;
    log_info("draining: logging out and releasing leases sessions=%d", l->w->nsessions);
    struct drain_walk dw = {l, lease_drain_start(l->w->inc, on_retired, l)};
    users_foreach(l->w->users, drain_slot, &dw);
    /* After the node's state=draining beat and the releases (one FIFO):
     * every other watcher re-reads the fleet now and takes the users. */
    fleet_announce(l->fleet);
    lease_drain_finish(dw.dr);
}

int leases_placed(const struct leases *l)
{
    return l->nplaced;
}

int leases_unassigned(const struct leases *l)
{
    return l->nunassigned;
}

/* ---- Start and stop ---- */

struct leases *leases_new(struct watcher *w, struct metrics *m)
{
    struct leases *l = xcalloc(1, sizeof *l);
    l->w = w;
    l->m_moves = metrics_counter(m, "superimap_watcher_moves_total",
                                 "Users handed over to another watcher (rebalance)", NULL);
    l->m_placed = metrics_gauge(m, "superimap_watcher_users_placed",
                                "Users the fleet's placement gives this watcher", NULL);
    l->m_fleet = metrics_gauge(m, "superimap_watcher_fleet_watchers",
                               "Live, active watchers placement runs over", NULL);
    list_init(&l->unassigned_list);
    list_init(&l->pending_list);
    list_init(&l->waiting_list);
    list_init(&l->moving_list);
    l->move_tokens_at = time_mono_ms();
    l->placer = offload_new(w->loop, apply_placement, l);
    struct fleet_opts fo = {.role = "watcher", .self_id = node_id(w->node)};
    struct fleet_hooks fh = {.on_change = on_fleet_change, .data = l};
    l->fleet = fleet_new(w->loop, w->redis, &fo, &fh);
    struct incarnation_hooks ih = {.on_live = on_live, .on_fenced = on_fenced, .data = l};
    w->inc = incarnation_new(w->loop, w->redis, node_id(w->node), w->shards, &ih);
    struct reaper_opts ro = {
        .role = "watcher", .self_id = node_id(w->node), .shards = w->shards, .metrics = m};
    l->reaper = reaper_new(w->loop, w->redis, l->fleet, w->inc, &ro);
    struct users_hooks uh = {
        .on_add = on_user_add, .on_remove = on_user_remove, .on_change = on_user_change, .data = l};
    w->users = users_new(w->loop, w->redis, w->pool, w->shards, &uh);
    w->on_lost_lease = on_lost_lease;
    ev_timer_init(&l->tick, on_tick, 1.0, 1.0);
    l->tick.data = l;
    ev_timer_start(w->loop, &l->tick);
    return l;
}

static void free_slot(struct user_entry *u, void *data)
{
    struct leases *l = data;
    struct slot *sl = u->data;
    if (sl == NULL)
        return;
    if (sl->s != NULL)
        imap_session_drop(sl->s, 0);
    list_del(sl);
    pool_release(l->w->pool, sl, sizeof *sl);
    u->data = NULL;
}

void leases_free(struct leases *l)
{
    if (l == NULL)
        return;
    struct watcher *w = l->w;
    rreq_owner_cancel(&l->reqs); /* answers still owed find nothing to act on */
    ev_timer_stop(w->loop, &l->tick);
    placement_free(offload_free(l->placer));
    if (w->users != NULL)
        users_foreach(w->users, free_slot, l);
    users_free(w->users);
    w->users = NULL;
    reaper_free(l->reaper);
    fleet_free(l->fleet);
    incarnation_free(w->inc);
    w->inc = NULL;
    xfree(l);
}
