/*
 * superimap-watcher: holds one IMAP IDLE session per user it owns and turns
 * every new message into exactly one event in Redis (docs/architecture.md section 4).
 *
 * This file wires the node: the open-files limit and the capacity it
 * allows, encryption keys and TLS, the sessions' own Redis connection (the
 * node's carries only control traffic: heartbeat, incarnation, leases),
 * metrics, the node's hooks (ready, drain,
 * describe), a one-second housekeeping timer, and the parts below, each
 * given the one struct watcher by pointer:
 *
 *   leases.c        the lease manager: placement, leases, hand-overs,
 *                   fencing, drain; it makes the users registry and the
 *                   incarnation and runs one imap_session per held user
 *   provider.c      provider cache, login rate, connection caps
 *   callgate.c      the bound on the sessions' Redis calls in flight
 *
 * Nothing below calls back into this file except through the hooks it was
 * given (node_drained through leases_drain's done). docs/watcher.md walks
 * the files in reading order.
 *
 * Depends on: cmd/watcher/leases, provider, tls, users; core/node, config,
 * crypto, metrics, log.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/watcher.h"

#include <malloc.h>
#include <stdio.h>

#include <curl/curl.h>

#include "cmd/watcher/callgate.h"
#include "cmd/watcher/leases.h"
#include "cmd/watcher/oauth.h"
#include "cmd/watcher/provider.h"
#include "cmd/watcher/session_policy.h"
#include "cmd/watcher/tls.h"
#include "cmd/watcher/users.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/node.h"
#include "core/pool.h"
#include "core/rconn.h"
#include "core/time.h"

/* Descriptors kept back from sessions: Redis, HTTP workers, logs, TLS files. */
#define FD_RESERVE 100

/* Free heap pages go back to the kernel at most this often. */
#define TRIM_MS 5000

static struct watcher watcher;
static struct leases *leases;
static ev_timer housekeeping; /* every second: the sessions count, heap trims */
static int64_t trimmed_at;    /* last malloc_trim() */

static void on_housekeeping(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    int64_t now = time_mono_ms();
    snprintf(watcher.sessions_text, sizeof watcher.sessions_text, "%d", watcher.nsessions);
    metric_set(watcher.m.calls_waiting, callgate_waiting(watcher.calls));
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

/* The sessions' connection feeds the node's Redis round-trip histogram. */
static void on_sessions_latency(double seconds, void *data)
{
    metric_observe(data, seconds);
}

/* ---- Node hooks ---- */

/* Redis answers: at start, and again after each reconnect. */
static void on_ready(struct node *n, void *data)
{
    (void)n;
    (void)data;
    leases_ready(leases);
}

static void on_token_work_done(void *data)
{
    log_info("token refreshes in flight finished; drained");
    node_drained(data);
}

/* The leases are given back; token refreshes still in flight finish first
 * (and store what they got): a provider may already have rotated the
 * refresh token they used, and an aborted one would lose the new one. */
static void on_leases_released(void *data)
{
    if (watcher.token_work == 0) {
        node_drained(data);
        return;
    }
    log_info("waiting for token refreshes in flight before exiting count=%d", watcher.token_work);
    watcher.token_idle = on_token_work_done;
    watcher.token_idle_data = data;
}

static void drain(struct node *n, void *data)
{
    (void)data;
    leases_drain(leases, on_leases_released, n);
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
    snprintf(placed, sizeof placed, "%d", leases != NULL ? leases_placed(leases) : 0);
    snprintf(unassigned, sizeof unassigned, "%d", leases != NULL ? leases_unassigned(leases) : 0);
    snprintf(users, sizeof users, "%zu", w->users != NULL ? users_count(w->users) : 0);
    argv[(*argc)++] = "sessions_watching";
    argv[(*argc)++] = watching;
    argv[(*argc)++] = "users_placed";
    argv[(*argc)++] = placed;
    argv[(*argc)++] = "users_unassigned";
    argv[(*argc)++] = unassigned;
    /* users: those this watcher holds the lease of (one session each), as
     * the admin fleet view shows them; users_known: all it read from Redis. */
    argv[(*argc)++] = "users";
    argv[(*argc)++] = w->sessions_text;
    argv[(*argc)++] = "users_known";
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

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise libcurl");
        return 1;
    }
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
    for (int i = P_NONE + 1; i < WATCHER_PUB_STATES; i++) {
        char labels[48];
        snprintf(labels, sizeof labels, "state=\"%s\"", policy_pub_name((enum pub_state)i));
        wm->by_state[i] =
            metrics_gauge(m, "superimap_watcher_sessions_by_state",
                          "Sessions of this watcher by the user state they last wrote", labels);
    }
    struct metric *cap =
        metrics_gauge(m, "superimap_watcher_capacity", "Users this watcher takes at most", NULL);
    metric_set(cap, watcher.capacity);
    wm->recorded = metrics_counter(m, "superimap_watcher_mail_recorded_total",
                                   "new_mail events recorded (record_mail)", NULL);
    wm->too_large = metrics_counter(m, "superimap_watcher_mail_too_large_total",
                                    "new_mail events recorded without body (too large)", NULL);
    wm->duplicates = metrics_counter(m, "superimap_watcher_mail_duplicates_total",
                                     "Messages record_mail had already recorded", NULL);
    wm->box_status = metrics_counter(
        m, "superimap_watcher_mailbox_status_total",
        "STATUS commands sent: another watched mailbox checked (no NOTIFY, or an IDLE renewal)",
        NULL);
    wm->box_notify = metrics_counter(
        m, "superimap_watcher_mailbox_notify_total",
        "NOTIFY SET accepted: a connection told of new mail in several mailboxes", NULL);
    wm->box_missing = metrics_counter(m, "superimap_watcher_mailbox_missing_total",
                                      "Watched mailboxes set aside: not on the server", NULL);
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
    wm->calls_waiting = metrics_gauge(m, "superimap_watcher_redis_calls_waiting",
                                      "Session calls to Redis waiting for one of the "
                                      "sessions' calls in flight to finish",
                                      NULL);
    wm->reauth = metrics_counter(m, "superimap_watcher_oauth2_reauth_required_total",
                                 "Users moved to state reauth_required (the provider answered "
                                 "invalid_grant to a refresh)",
                                 NULL);
}

static int start(struct node *n, void *data)
{
    (void)data;
    watcher.node = n;
    watcher.loop = ev_default_loop(0);
    watcher.redis = node_redis(n);
    watcher.sessions = node_redis_open(n, "redis-sessions");
    if (watcher.sessions == NULL) /* config_load() checked the URL; only a bug gets here */
        return 1;
    watcher.calls = callgate_new(watcher.sessions, WATCHER_SESSION_CALLS);
    register_metrics(node_metrics(n));
    struct metric *latency =
        metrics_histogram(node_metrics(n), "superimap_redis_command_duration_seconds",
                          "Round trip of Redis commands from this node", NULL,
                          metrics_latency_bounds, metrics_latency_nbounds);
    rconn_on_latency(watcher.sessions, on_sessions_latency, latency);
    watcher.pool = pool_new();
    leases = leases_new(&watcher, node_metrics(n));
    struct providers_opts po = {
        .logins_per_sec = watcher.cfg->imap_logins_per_sec,
        .backoff_min_ms = watcher.cfg->imap_backoff_min_ms,
        .backoff_max_ms = watcher.cfg->imap_backoff_max_ms,
        .metrics = node_metrics(n),
    };
    watcher.providers = providers_new(watcher.loop, watcher.redis, &po);
    watcher.oauth = oauth_new(watcher.loop, watcher.cfg, node_metrics(n));
    if (watcher.oauth == NULL)
        return 1;
    ev_timer_init(&housekeeping, on_housekeeping, 1.0, 1.0);
    ev_timer_start(watcher.loop, &housekeeping);
    return 0;
}

static void finish(struct node *n, void *data)
{
    (void)n;
    (void)data;
    ev_timer_stop(watcher.loop, &housekeeping);
    watcher.token_idle = NULL; /* past the drain: what is left is aborted */
    leases_free(leases);
    leases = NULL;
    oauth_free(watcher.oauth); /* before the providers: requests hold them */
    watcher.oauth = NULL;
    providers_free(watcher.providers);
    callgate_free(watcher.calls); /* after the sessions and token jobs that used them */
    rconn_free(watcher.sessions);
    watcher.calls = NULL;
    watcher.sessions = NULL;
    crypto_keys_free(watcher.keys);
    tls_shutdown();
    curl_global_cleanup();
    watcher.providers = NULL;
    watcher.keys = NULL;
    pool_free(watcher.pool); /* last: every user's objects are released by now */
    watcher.pool = NULL;
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
