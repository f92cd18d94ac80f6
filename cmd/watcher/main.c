/*
 * superimap-watcher: holds one IMAP IDLE session per user it owns and turns
 * every new message into exactly one event in Redis (DESIGN.md section 3).
 *
 * This file wires the node and runs the lease manager:
 *
 *   users.c (who should be watched) + core/fleet (which watchers are live
 *   and active, their capacities) --placement (fleet_place, within a
 *   second of a membership change or of users coming or going, and every
 *   60 s anyway)--> each user is
 *        another watcher's: ELSEWHERE (a session held here is handed over:
 *             LOGOUT, lease_release, at most SUPERIMAP_MAX_MOVES_PER_SEC)
 *        nobody's (the fleet is over capacity): UNASSIGNED (state
 *             "unassigned" in the user hash, a gauge, a log line)
 *        ours: PENDING --incarnation live--> ACQUIRING (lease_acquire)
 *               1: HELD, an imap_session runs
 *               0: WAITING, another live incarnation holds it; tried again
 *                  every LEASE_RETRY_MS (its holder may die: then its alive
 *                  key expires and the lease is ours)
 *              -1: our alive key is gone: fence
 *   fence (incarnation.c): every session dropped at once, every held user
 *   back to PENDING, taken again under the new generation
 *   SIGTERM: sessions LOGOUT, leases released (lease_release), alive keys
 *   deleted, then the node stops
 *   Redis reconnect: every held session confirms its lease and compares its
 *   cursor with Redis' (imap_session_recheck): a Redis restarted from an
 *   older state makes it fetch again what Redis lost
 *
 * Every watcher computes the same placement from the same inputs; while
 * views differ for a moment (a join seen by one watcher first), leases keep
 * two watchers from ever holding one user at once: the new owner waits
 * (WAITING) until the old one releases or dies.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/watcher.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/watcher/imap_session.h"
#include "core/incarnation.h"
#include "cmd/watcher/provider.h"
#include "cmd/watcher/tls.h"
#include "cmd/watcher/users.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/fleet.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/rconn.h"
#include "core/schema.h"
#include "core/time.h"

/* Descriptors kept back from sessions: Redis, HTTP workers, logs, TLS files. */
#define FD_RESERVE 100

/* A lease held by another live incarnation is asked for again this often. */
#define LEASE_RETRY_MS 2000

/* The over-capacity summary is logged at most this often. */
#define UNASSIGNED_LOG_MS 10000

/* Free heap pages go back to the kernel at most this often. */
#define TRIM_MS 5000

/* Placement runs within a second of a change of users or fleet (the manager
 * tick), and this often in any case: a pure function of both, with neither
 * changed it only confirms the last one (up to a second of CPU for a million
 * users, so it is not repeated every tick). */
#define REBALANCE_MS 60000

struct watcher watcher;

/* ---- Per-user state of the lease manager ---- */

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

/* A list head is a slot used as a sentinel. */
static struct slot unassigned_list, pending_list, waiting_list, moving_list;
static struct fleet *fleet;
static int rebalance_due;       /* users or fleet changed: place again soon */
static int64_t rebalanced_at;   /* monotonic ms of the last placement */
static uint64_t placed_version; /* fleet_version() it used */
static double move_tokens;      /* token bucket of hand-overs */
static int64_t move_tokens_at;
static int nplaced; /* users placement gives this watcher */
static struct metric *m_moves, *m_placed, *m_fleet;
static int64_t unassigned_logged_at;
static int unassigned_logged;
static ev_timer manager_tick;
static int releases_pending; /* drain: lease_release replies still due */
static int64_t trimmed_at;   /* last malloc_trim() */
static int readies;          /* on_ready() calls: Redis reconnects after the first */

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

static void set_slot(struct slot *sl, enum slot_state st)
{
    watcher.held += taken(st) - taken(sl->st);
    watcher.nunassigned += (st == U_UNASSIGNED) - (sl->st == U_UNASSIGNED);
    sl->st = st;
    list_del(sl);
    if (st == U_UNASSIGNED)
        list_add_tail(&unassigned_list, sl);
    else if (st == U_PENDING)
        list_add_tail(&pending_list, sl);
    else if (st == U_WAITING)
        list_add_tail(&waiting_list, sl);
}

/* ---- Leases ---- */

struct areq {
    uint64_t gen;
    uint32_t k;
    char uid[];
};

static void release_lease(const char *uid, uint32_t k, uint64_t gen, rconn_cb *cb);

static void on_acquired(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct areq *a = privdata;
    if (err == -SIMAP_ESHUTDOWN || watcher.stopping) {
        xfree(a);
        return;
    }
    struct user_entry *u = users_find(watcher.users, a->uid);
    struct slot *sl = u != NULL ? u->data : NULL;
    long long v =
        (err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER) ? reply->integer : -2;
    if (sl == NULL || sl->st != U_ACQUIRING || sl->gen != a->gen || watcher.draining) {
        /* Removed, fenced or draining meanwhile: give back what we got. */
        if (v == 1 && a->gen == incarnation_generation(watcher.inc))
            release_lease(a->uid, a->k, a->gen, NULL);
        xfree(a);
        return;
    }
    if (v == 1) {
        set_slot(sl, U_HELD);
        sl->s = imap_session_new(&watcher, u->uid, u->k);
        imap_session_start(sl->s, a->gen);
    } else if (v == 0) {
        metric_inc(watcher.m.lease_waits);
        log_debug("lease held by another watcher acct=%s", u->uid);
        sl->retry_at = time_mono_ms() + LEASE_RETRY_MS;
        set_slot(sl, U_WAITING);
    } else if (v == -1) {
        set_slot(sl, U_PENDING);
        incarnation_fence(watcher.inc, a->gen, "lease_acquire found our alive key gone");
    } else {
        log_warn("lease_acquire failed acct=%s err=\"%s\"", u->uid,
                 err < 0 ? err_str(err) : (reply && reply->str ? reply->str : "unexpected reply"));
        sl->retry_at = time_mono_ms() + LEASE_RETRY_MS;
        set_slot(sl, U_WAITING);
    }
    xfree(a);
}

static void acquire(struct slot *sl)
{
    if (!incarnation_is_live(watcher.inc) || watcher.draining) {
        set_slot(sl, U_PENDING);
        return;
    }
    struct user_entry *u = sl->u;
    char lease[SCHEMA_KEY_MAX], alive[SCHEMA_KEY_MAX];
    snprintf(lease, sizeof lease, "si:{%" PRIu32 "}:lease:%s", u->k, u->uid);
    incarnation_alive_key(watcher.inc, u->k, alive, sizeof alive);
    const char *argv[] = {lease, alive, incarnation_token(watcher.inc)};
    size_t n = strlen(u->uid);
    struct areq *a = xmalloc(sizeof *a + n + 1);
    a->gen = incarnation_generation(watcher.inc);
    a->k = u->k;
    memcpy(a->uid, u->uid, n + 1);
    if (rconn_script(watcher.redis, on_acquired, a, "lease_acquire", 2, 3, argv, NULL) < 0) {
        xfree(a);
        sl->retry_at = time_mono_ms() + LEASE_RETRY_MS;
        set_slot(sl, U_WAITING);
        return;
    }
    sl->gen = a->gen;
    set_slot(sl, U_ACQUIRING);
}

static void release_lease(const char *uid, uint32_t k, uint64_t gen, rconn_cb *cb)
{
    (void)gen;
    char lease[SCHEMA_KEY_MAX];
    snprintf(lease, sizeof lease, "si:{%" PRIu32 "}:lease:%s", k, uid);
    const char *argv[] = {lease, incarnation_token(watcher.inc)};
    if (rconn_script(watcher.redis, cb, NULL, "lease_release", 1, 2, argv, NULL) == 0 && cb != NULL)
        releases_pending++;
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

static void mark_unassigned(struct slot *sl)
{
    set_slot(sl, U_UNASSIGNED);
    char lease[SCHEMA_KEY_MAX], user[SCHEMA_KEY_MAX];
    snprintf(lease, sizeof lease, "si:{%" PRIu32 "}:lease:%s", sl->u->k, sl->u->uid);
    snprintf(user, sizeof user, "si:{%" PRIu32 "}:user:%s", sl->u->k, sl->u->uid);
    const char *argv[] = {lease, user, "unassigned"};
    rconn_script(watcher.redis, on_unassigned_written, NULL, "user_unassigned", 2, 3, argv, NULL);
    log_debug("user over capacity stays unwatched acct=%s capacity=%d", sl->u->uid,
              watcher.capacity);
}

/* ---- Placement ---- */

/* Hands over held users placed elsewhere, as many as the move budget allows:
 * LOGOUT, then lease_release (the cursor is in Redis already); the new owner
 * acquires at its next try. */
static void run_moves(void)
{
    int64_t now = time_mono_ms();
    double rate = watcher.cfg->max_moves_per_sec;
    move_tokens += rate * (double)(now - move_tokens_at) / 1000.0;
    if (move_tokens > rate)
        move_tokens = rate;
    move_tokens_at = now;
    while (moving_list.next != &moving_list && move_tokens >= 1.0) {
        struct slot *sl = moving_list.next;
        list_del(sl);
        move_tokens -= 1.0;
        metric_inc(m_moves);
        log_debug("handing a user over to its new watcher acct=%s", sl->u->uid);
        if (sl->s != NULL) {
            imap_session_drop(sl->s, 1);
            sl->s = NULL;
            release_lease(sl->u->uid, sl->u->k, sl->gen, NULL);
        }
        if (sl->move_to == U_UNASSIGNED)
            mark_unassigned(sl); /* after the release: no live holder then */
        else
            set_slot(sl, U_ELSEWHERE);
    }
}

struct gather {
    struct user_entry **us;
    const char **ids;
    size_t n;
};

static void gather_user(struct user_entry *u, void *data)
{
    struct gather *g = data;
    g->us[g->n] = u;
    g->ids[g->n] = u->uid;
    g->n++;
}

/* Applies the placement: every node computes the same from the same users
 * and fleet view (fleet_place() sorts both). */
static void rebalance(void)
{
    if (watcher.draining || !fleet_loaded(fleet) || !users_loaded(watcher.users))
        return;
    size_t nn;
    const struct fleet_node *nodes = fleet_nodes(fleet, &nn);
    size_t self = nn;
    for (size_t i = 0; i < nn; i++)
        if (strcmp(nodes[i].id, node_id(watcher.node)) == 0)
            self = i;
    if (self == nn) {
        /* Our own beat is not seen yet (or is late): keep what we have and
         * read again. */
        rebalance_due = 1;
        fleet_refresh(fleet);
        return;
    }
    rebalance_due = 0;
    rebalanced_at = time_mono_ms();
    placed_version = fleet_version(fleet);
    size_t total = users_count(watcher.users);
    struct gather g = {xmalloc((total + 1) * sizeof *g.us), xmalloc((total + 1) * sizeof *g.ids),
                       0};
    users_foreach(watcher.users, gather_user, &g);
    int32_t *owner = xmalloc((g.n + 1) * sizeof *owner);
    size_t overflow = 0;
    if (fleet_place(nodes, nn, g.ids, g.n, owner, &overflow) < 0) {
        xfree(owner);
        xfree(g.us);
        xfree(g.ids);
        return;
    }
    int placed = 0, moving = 0;
    for (size_t i = 0; i < g.n; i++) {
        struct slot *sl = g.us[i]->data;
        if (sl == NULL)
            continue;
        if (owner[i] == (int32_t)self) {
            placed++;
            if (sl->st == U_ELSEWHERE || sl->st == U_UNASSIGNED) {
                set_slot(sl, U_PENDING);
                acquire(sl);
            } else if (sl->st == U_HELD && sl->next != NULL) {
                list_del(sl); /* placed back here before it was handed over */
            }
            continue;
        }
        enum slot_state to = owner[i] < 0 ? U_UNASSIGNED : U_ELSEWHERE;
        if (sl->st == U_HELD) {
            sl->move_to = to;
            if (sl->next == NULL)
                list_add_tail(&moving_list, sl); /* stays U_HELD until handed over */
            moving++;
        } else if (to == U_UNASSIGNED && sl->st != U_UNASSIGNED) {
            mark_unassigned(sl);
        } else if (sl->st != to) {
            set_slot(sl, to);
        }
    }
    xfree(owner);
    xfree(g.us);
    xfree(g.ids);
    nplaced = placed;
    metric_set(m_placed, placed);
    metric_set(watcher.m.unassigned, (double)overflow);
    metric_set(m_fleet, (double)nn);
    log_debug("placement users=%zu nodes=%zu placed=%d moving=%d overflow=%zu", g.n, nn, placed,
              moving, overflow);
    run_moves();
}

static void on_fleet_change(struct fleet *f, void *data)
{
    (void)data;
    size_t nn;
    fleet_nodes(f, &nn);
    log_info("watchers changed: placing users again watchers=%zu", nn);
    rebalance();
}

/* ---- Users registry hooks ---- */

static void on_user_add(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = xcalloc(1, sizeof *sl);
    sl->u = u;
    u->data = sl;
    sl->st = U_ELSEWHERE; /* until placement says otherwise */
    metric_set(watcher.m.users, (double)users_count(watcher.users));
    rebalance_due = 1;
}

static void on_user_remove(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl == NULL)
        return;
    if (sl->s != NULL) {
        imap_session_drop(sl->s, 1);
        sl->s = NULL;
        release_lease(u->uid, u->k, sl->gen, NULL);
    }
    watcher.held -= taken(sl->st);
    watcher.nunassigned -= sl->st == U_UNASSIGNED;
    list_del(sl);
    metric_set(watcher.m.users, (double)users_count(watcher.users));
    u->data = NULL;
    xfree(sl);
    rebalance_due = 1;
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
    (void)data;
    metric_set(watcher.m.generation, (double)incarnation_generation(inc));
    while (pending_list.next != &pending_list)
        acquire(pending_list.next);
}

static void fence_slot(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl == NULL || !taken(sl->st))
        return;
    int moving = sl->st == U_HELD && sl->next != NULL; /* was to be handed over */
    if (sl->s != NULL) {
        imap_session_drop(sl->s, 0);
        sl->s = NULL;
    }
    set_slot(sl, moving ? U_ELSEWHERE : U_PENDING);
}

static void on_fenced(struct incarnation *inc, const char *why, void *data)
{
    (void)inc;
    (void)data;
    metric_inc(watcher.m.fences);
    log_warn("fenced: every session dropped; taking leases again under a new generation "
             "sessions=%d why=\"%s\"",
             watcher.nsessions, why);
    users_foreach(watcher.users, fence_slot, NULL);
    rebalance_due = 1; /* hand-overs cut short: place every user again */
}

static void on_lost_lease(struct watcher *w, const char *uid, const char *why)
{
    (void)w;
    log_warn("lease lost acct=%s why=\"%s\"", uid, why);
    struct user_entry *u = users_find(watcher.users, uid);
    struct slot *sl = u != NULL ? u->data : NULL;
    uint64_t gen = sl != NULL ? sl->gen : incarnation_generation(watcher.inc);
    incarnation_fence(watcher.inc, gen, why);
}

/* ---- Manager tick ---- */

static void on_manager_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    int64_t now = time_mono_ms();
    if (rebalance_due || fleet_version(fleet) != placed_version ||
        now - rebalanced_at >= REBALANCE_MS)
        rebalance();
    run_moves();
    if (!watcher.draining && incarnation_is_live(watcher.inc)) {
        /* Users whose lease another incarnation held: ask again. */
        struct slot *sl = waiting_list.next;
        while (sl != &waiting_list) {
            struct slot *next = sl->next;
            if (now >= sl->retry_at)
                acquire(sl);
            sl = next;
        }
    }
    if (watcher.nunassigned != unassigned_logged &&
        now - unassigned_logged_at >= UNASSIGNED_LOG_MS) {
        if (watcher.nunassigned > 0)
            log_warn("users over capacity stay unwatched (state unassigned): the fleet's "
                     "watchers are full unassigned=%d capacity=%d users=%zu",
                     watcher.nunassigned, watcher.capacity, users_count(watcher.users));
        else
            log_info("every user is assigned users=%zu capacity=%d", users_count(watcher.users),
                     watcher.capacity);
        unassigned_logged = watcher.nunassigned;
        unassigned_logged_at = now;
    }
    snprintf(watcher.sessions_text, sizeof watcher.sessions_text, "%d", watcher.nsessions);
    /* Handshakes and fetches free their transient memory in the middle of
     * the heap, between long-lived sessions; glibc returns such pages only
     * when asked. Once sessions have settled into IDLE, ask (a few ms for a
     * heap of tens of MiB, at most every TRIM_MS). */
    if (watcher.idle_entries > 0 && now - trimmed_at >= TRIM_MS) {
        watcher.idle_entries = 0;
        trimmed_at = now;
        malloc_trim(0);
    }
}

/* ---- Node hooks ---- */

static void recheck_slot(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl != NULL && sl->st == U_HELD && sl->s != NULL)
        imap_session_recheck(sl->s);
}

/* Redis answers: at start, and again after each reconnect. */
static void on_ready(struct node *n, void *data)
{
    (void)n;
    (void)data;
    incarnation_start(watcher.inc);
    users_start(watcher.users);
    fleet_start(fleet);
    /* Redis may have restarted and lost its last writes (a lease, a cursor
     * and its events): sessions check theirs and fetch again what is gone. */
    if (readies++ > 0)
        users_foreach(watcher.users, recheck_slot, NULL);
}

static void on_retired(void *data)
{
    struct node *n = data;
    log_info("leases released and alive keys deleted");
    node_drained(n);
}

static void on_released(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    (void)reply;
    (void)privdata;
    if (err == -SIMAP_ESHUTDOWN)
        return;
    if (--releases_pending == 0)
        incarnation_retire(watcher.inc, on_retired, watcher.node);
}

static void drain_slot(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl == NULL || sl->s == NULL)
        return;
    imap_session_drop(sl->s, 1);
    sl->s = NULL;
    release_lease(u->uid, u->k, sl->gen, on_released);
}

static void drain(struct node *n, void *data)
{
    (void)data;
    watcher.draining = 1;
    log_info("draining: logging out and releasing leases sessions=%d", watcher.nsessions);
    releases_pending = 1; /* held until every release is queued */
    users_foreach(watcher.users, drain_slot, NULL);
    /* After the node's state=draining beat and the releases (one FIFO):
     * every other watcher re-reads the fleet now and takes the users. */
    fleet_announce(fleet);
    if (--releases_pending == 0)
        incarnation_retire(watcher.inc, on_retired, n);
}

static void describe(struct node *n, const char **argv, int *argc, void *data)
{
    (void)n;
    struct watcher *w = data;
    snprintf(w->sessions_text, sizeof w->sessions_text, "%d", w->nsessions);
    argv[(*argc)++] = "capacity";
    argv[(*argc)++] = w->capacity_text;
    argv[(*argc)++] = "fd_limit";
    argv[(*argc)++] = w->fd_limit_text;
    argv[(*argc)++] = "sessions";
    argv[(*argc)++] = w->sessions_text;
    argv[(*argc)++] = "load";
    argv[(*argc)++] = w->sessions_text;
    static char watching[16], placed[16], unassigned[16], users[24];
    snprintf(watching, sizeof watching, "%d", w->nwatching);
    snprintf(placed, sizeof placed, "%d", nplaced);
    snprintf(unassigned, sizeof unassigned, "%d", w->nunassigned);
    snprintf(users, sizeof users, "%zu", w->users != NULL ? users_count(w->users) : 0);
    argv[(*argc)++] = "sessions_watching";
    argv[(*argc)++] = watching;
    argv[(*argc)++] = "users_placed";
    argv[(*argc)++] = placed;
    argv[(*argc)++] = "users_unassigned";
    argv[(*argc)++] = unassigned;
    argv[(*argc)++] = "users";
    argv[(*argc)++] = users;
}

/* ---- Start and stop ---- */

static int prepare(const struct config *cfg, struct node_opts *opts)
{
    watcher.cfg = cfg;
    watcher.shards = cfg->shards;
    watcher.fd_limit = node_raise_fd_limit();
    long room = watcher.fd_limit - FD_RESERVE;
    watcher.capacity = room < cfg->max_users ? (int)(room > 0 ? room : 0) : cfg->max_users;
    if (watcher.capacity < cfg->max_users)
        log_warn("file-descriptor limit caps capacity below SUPERIMAP_MAX_USERS fd_limit=%ld "
                 "max_users=%d capacity=%d",
                 watcher.fd_limit, cfg->max_users, watcher.capacity);
    snprintf(watcher.capacity_text, sizeof watcher.capacity_text, "%d", watcher.capacity);
    snprintf(watcher.fd_limit_text, sizeof watcher.fd_limit_text, "%ld", watcher.fd_limit);
    snprintf(watcher.sessions_text, sizeof watcher.sessions_text, "0");
    log_info("capacity capacity=%d fd_limit=%ld", watcher.capacity, watcher.fd_limit);

    char err[256];
    if (crypto_keys_init(&watcher.keys, cfg->encryption_key, cfg->encryption_old_keys, err,
                         sizeof err) < 0) {
        log_error("bad encryption key err=\"%s\"", err);
        return 2;
    }
    if (tls_init(cfg->ca_file, err, sizeof err) < 0) {
        log_error("cannot set up TLS err=\"%s\"", err);
        crypto_keys_free(watcher.keys);
        watcher.keys = NULL;
        return cfg->ca_file != NULL ? 2 : 1;
    }
    opts->hooks.on_ready = on_ready;
    opts->hooks.drain = drain;
    opts->hooks.describe = describe;
    opts->hooks.data = &watcher;
    return 0;
}

static void register_metrics(struct metrics *m)
{
    struct watcher_metrics *wm = &watcher.m;
    wm->sessions = metrics_gauge(m, "superimap_watcher_sessions",
                                 "IMAP sessions of users whose lease this watcher holds", NULL);
    wm->watching = metrics_gauge(m, "superimap_watcher_sessions_watching",
                                 "Sessions in IDLE or polling (healthy)", NULL);
    wm->unassigned =
        metrics_gauge(m, "superimap_watcher_users_unassigned",
                      "Users over the fleet's capacity (no watcher has room), not watched", NULL);
    wm->users = metrics_gauge(m, "superimap_watcher_users", "Users known from Redis", NULL);
    struct metric *cap =
        metrics_gauge(m, "superimap_watcher_capacity", "Users this watcher takes at most", NULL);
    metric_set(cap, watcher.capacity);
    wm->recorded = metrics_counter(m, "superimap_watcher_mail_recorded_total",
                                   "new_mail events recorded (record_mail)", NULL);
    wm->too_large = metrics_counter(m, "superimap_watcher_mail_too_large_total",
                                    "new_mail events recorded without body (too large)", NULL);
    wm->duplicates = metrics_counter(m, "superimap_watcher_mail_duplicates_total",
                                     "Messages record_mail had already recorded", NULL);
    wm->stale =
        metrics_counter(m, "superimap_watcher_stale_total",
                        "Scripts that refused a stale lease (record_mail, user_state)", NULL);
    wm->fences = metrics_counter(m, "superimap_watcher_fences_total",
                                 "Self-fencings: every session dropped, new generation", NULL);
    wm->logins =
        metrics_counter(m, "superimap_watcher_logins_total", "Successful IMAP logins", NULL);
    const char *name = "superimap_watcher_session_errors_total";
    const char *help = "IMAP session failures by class";
    wm->err_auth = metrics_counter(m, name, help, "kind=\"auth\"");
    wm->err_throttle = metrics_counter(m, name, help, "kind=\"throttled\"");
    wm->err_net = metrics_counter(m, name, help, "kind=\"network\"");
    wm->err_proto = metrics_counter(m, name, help, "kind=\"protocol\"");
    wm->err_redis = metrics_counter(m, name, help, "kind=\"redis\"");
    wm->record_latency = metrics_histogram(m, "superimap_watcher_new_mail_seconds",
                                           "From EXISTS seen to record_mail answered", NULL,
                                           metrics_latency_bounds, metrics_latency_nbounds);
    wm->lease_waits = metrics_counter(m, "superimap_watcher_lease_busy_total",
                                      "lease_acquire answers: held by another live watcher", NULL);
    wm->generation = metrics_gauge(m, "superimap_watcher_generation",
                                   "Generation of this incarnation (si:gen)", NULL);
    m_moves = metrics_counter(m, "superimap_watcher_moves_total",
                              "Users handed over to another watcher (rebalance)", NULL);
    m_placed = metrics_gauge(m, "superimap_watcher_users_placed",
                             "Users the fleet's placement gives this watcher", NULL);
    m_fleet = metrics_gauge(m, "superimap_watcher_fleet_watchers",
                            "Live, active watchers placement runs over", NULL);
}

static int start(struct node *n, void *data)
{
    (void)data;
    watcher.node = n;
    watcher.loop = ev_default_loop(0);
    watcher.redis = node_redis(n);
    watcher.on_lost_lease = on_lost_lease;
    register_metrics(node_metrics(n));
    list_init(&unassigned_list);
    list_init(&pending_list);
    list_init(&waiting_list);
    list_init(&moving_list);
    move_tokens_at = time_mono_ms();
    struct fleet_opts fo = {.role = "watcher", .self_id = node_id(n)};
    struct fleet_hooks fh = {.on_change = on_fleet_change};
    fleet = fleet_new(watcher.loop, watcher.redis, &fo, &fh);
    struct incarnation_hooks ih = {.on_live = on_live, .on_fenced = on_fenced};
    watcher.inc = incarnation_new(watcher.loop, watcher.redis, node_id(n), watcher.shards, &ih);
    struct users_hooks uh = {
        .on_add = on_user_add, .on_remove = on_user_remove, .on_change = on_user_change};
    watcher.users = users_new(watcher.loop, watcher.redis, watcher.shards, &uh);
    struct providers_opts po = {
        .logins_per_sec = watcher.cfg->imap_logins_per_sec,
        .backoff_min_ms = watcher.cfg->imap_backoff_min_ms,
        .backoff_max_ms = watcher.cfg->imap_backoff_max_ms,
    };
    watcher.providers = providers_new(watcher.loop, watcher.redis, &po);
    ev_timer_init(&manager_tick, on_manager_tick, 1.0, 1.0);
    ev_timer_start(watcher.loop, &manager_tick);
    return 0;
}

static void free_slot(struct user_entry *u, void *data)
{
    (void)data;
    struct slot *sl = u->data;
    if (sl == NULL)
        return;
    if (sl->s != NULL)
        imap_session_drop(sl->s, 0);
    list_del(sl);
    xfree(sl);
    u->data = NULL;
}

static void finish(struct node *n, void *data)
{
    (void)n;
    (void)data;
    watcher.stopping = 1;
    ev_timer_stop(watcher.loop, &manager_tick);
    if (watcher.users != NULL)
        users_foreach(watcher.users, free_slot, NULL);
    imap_session_free_all_dropped();
    users_free(watcher.users);
    fleet_free(fleet);
    fleet = NULL;
    providers_free(watcher.providers);
    incarnation_free(watcher.inc);
    crypto_keys_free(watcher.keys);
    tls_shutdown();
    watcher.users = NULL;
    watcher.providers = NULL;
    watcher.inc = NULL;
    watcher.keys = NULL;
}

int main(int argc, char **argv)
{
    static const struct node_main_spec spec = {
        .role = "watcher",
        .program = "superimap-watcher",
        .summary = "Watches users' IMAP mailboxes with IDLE and enqueues one event per new "
                   "message into Redis.",
        .config_role = CONFIG_ROLE_WATCHER,
        .prepare = prepare,
        .start = start,
        .finish = finish,
    };
    return node_main(argc, argv, &spec);
}
