/*
 * cmd/api/routes_fleet: what the operator watches: /admin/api/fleet (the
 * nodes of each role and their heartbeats, the users watched, held and
 * unplaced; POST .../drain asks a node to stop as on SIGTERM), /admin/api/queues
 * (event depths per shard, and per partner with its oldest waiting event) and
 * /admin/api/dead-letters (newest first across shards, with replay). Admin
 * API: unknown parameters are refused (see routes_providers.c).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "cmd/api/views.h"
#include "core/err.h"
#include "core/json.h"
#include "core/node.h"

#define DEAD_LIMIT_DEFAULT 100
#define DEAD_LIMIT_MAX     1000

static int fleet(struct req *r)
{
    static const char *const roles[][2] = {{SCHEMA_KEY_APIS, "api"},
                                           {SCHEMA_KEY_WATCHERS, "watcher"},
                                           {SCHEMA_KEY_DISPATCHERS, "dispatcher"}};
    int64_t now = store_time_ms(r);
    long long total;
    if (store_users_watched(r, &total) < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "nodes");
    size_t counts[3] = {0, 0, 0};
    long long held = 0, over = 0;
    for (int i = 0; i < 3; i++) {
        struct rec_list nodes;
        if (store_fleet_nodes(r, roles[i][0], &nodes) < 0) {
            json_gen_free(g);
            return reply_unavailable(r);
        }
        for (size_t j = 0; j < nodes.n; j++) {
            view_node(g, nodes.id[j], roles[i][1], now, nodes.score[j], &nodes.rec[j]);
            if (i != 1 || now - nodes.score[j] > NODE_DEAD_MS)
                continue;
            /* A live watcher's users are those it holds leases for; each
             * reports the users the fleet has no room for. */
            held += strtoll(rec_get(&nodes.rec[j], "users"), NULL, 10);
            long long unplaced = strtoll(rec_get(&nodes.rec[j], "users_unassigned"), NULL, 10);
            if (unplaced > over)
                over = unplaced;
        }
        counts[i] = nodes.n;
        rec_list_free(&nodes);
    }
    json_gen_array_close(g);
    json_gen_key_object(g, "counts");
    for (int i = 0; i < 3; i++)
        json_gen_key_int(g, roles[i][1], (int64_t)counts[i]);
    json_gen_object_close(g);
    json_gen_key_int(g, "users_total", total);
    json_gen_key_int(g, "users_unassigned", total > held ? total - held : 0);
    json_gen_key_int(g, "users_over_capacity", over);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

/* ---- Waiting events per partner, across shards ---- */

#define RETRY_READ_MAX 1000 /* retry events read per shard for "partners" */

static int by_pid(const void *a, const void *b)
{
    const struct store_waiting *x = a, *y = b;
    return strcmp(x->pid, y->pid);
}

/* Oldest first; unknown last. */
static int by_oldest(const void *a, const void *b)
{
    const struct store_waiting *x = a, *y = b;
    int64_t p = x->oldest_at > 0 ? x->oldest_at : INT64_MAX;
    int64_t q = y->oldest_at > 0 ? y->oldest_at : INT64_MAX;
    return p < q ? -1 : p > q ? 1 : by_pid(a, b);
}

/* "partners": every partner with ready or retry events, merged over the
 * shards (a partner's users are spread over them), oldest waiting first,
 * from the n entries of w (reordered). */
static void write_partners(struct json_gen *g, struct store_waiting *w, size_t n)
{
    size_t m = 0;
    if (n > 0)
        qsort(w, n, sizeof *w, by_pid);
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && strcmp(w[m - 1].pid, w[i].pid) == 0) {
            struct store_waiting *t = &w[m - 1];
            t->ready += w[i].ready;
            t->retry += w[i].retry;
            if (w[i].oldest_at > 0 && (t->oldest_at == 0 || w[i].oldest_at < t->oldest_at))
                t->oldest_at = w[i].oldest_at;
        } else {
            w[m++] = w[i];
        }
    }
    if (m > 0)
        qsort(w, m, sizeof *w, by_oldest);
    json_gen_key_array(g, "partners");
    for (size_t i = 0; i < m; i++) {
        json_gen_object_open(g);
        json_gen_key_str(g, "partner_id", w[i].pid);
        json_gen_key_int(g, "ready", w[i].ready);
        json_gen_key_int(g, "retry", w[i].retry);
        if (w[i].oldest_at > 0)
            json_gen_key_int(g, "oldest_at", w[i].oldest_at);
        else
            json_gen_key_null(g, "oldest_at");
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
}

/* Each shard's depths and waiting partners, ready_by_partner included: one
 * script per shard (event_partners.lua), whatever the number of partners. */

static int fleet_drain(struct req *r)
{
    static const char *const allowed[] = {NULL};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    const char *id = r->arg[0];
    rc = params_is_token(id, 128, "._-") ? store_node_drain(r, id) : -SIMAP_ENOTFOUND;
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "Node not found.");
    if (rc < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_str(g, "id", id);
    json_gen_key_bool(g, "drain_requested", 1);
    json_gen_object_close(g);
    return reply_gen(r, 202, g, NULL);
}

static int queues(struct req *r)
{
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "shards");
    long long total[4] = {0, 0, 0, 0};
    int64_t oldest = 0;
    struct store_waiting *w = NULL;
    size_t n = 0, cap = 0;
    int complete = 1;
    int64_t now = store_time_ms(r);
    for (uint32_t k = 0; k < r->api->shards; k++) {
        long long v[5];
        size_t from = n;
        int whole;
        if (store_shard_queue(r, k, now, RETRY_READ_MAX, v, &w, &n, &cap, &whole) < 0) {
            xfree(w);
            json_gen_free(g);
            return reply_unavailable(r);
        }
        complete &= whole;
        for (int i = 0; i < 4; i++)
            total[i] += v[i];
        if (v[4] > oldest)
            oldest = v[4];
        if (v[0] + v[1] + v[2] + v[3] == 0)
            continue;
        json_gen_object_open(g);
        json_gen_key_int(g, "shard", k);
        json_gen_key_int(g, "ready", v[0]);
        json_gen_key_int(g, "inflight", v[1]);
        json_gen_key_int(g, "retry", v[2]);
        json_gen_key_int(g, "dead", v[3]);
        json_gen_key_int(g, "oldest_ready_age_ms", v[4]);
        json_gen_key_object(g, "ready_by_partner");
        for (size_t i = from; i < n && w[i].ready > 0; i++)
            json_gen_key_int(g, w[i].pid, w[i].ready);
        json_gen_object_close(g);
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
    json_gen_key_object(g, "totals");
    json_gen_key_int(g, "ready", total[0]);
    json_gen_key_int(g, "inflight", total[1]);
    json_gen_key_int(g, "retry", total[2]);
    json_gen_key_int(g, "dead", total[3]);
    json_gen_key_int(g, "oldest_ready_age_ms", oldest);
    json_gen_object_close(g);
    write_partners(g, w, n);
    json_gen_key_bool(g, "partners_complete", complete);
    xfree(w);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

struct dead_ref {
    uint32_t k;
    int64_t at;
    char *id;
};

/* Newest first, and of one millisecond the highest id first (the order of
 * ZREVRANGEBYSCORE within a shard), so that (died ms, id) is a cursor. */
static int by_time_desc(const void *a, const void *b)
{
    const struct dead_ref *x = a, *y = b;
    return x->at < y->at ? 1 : x->at > y->at ? -1 : -strcmp(x->id, y->id);
}

static void free_refs(struct dead_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        xfree(refs[i].id);
    xfree(refs);
}

static int dead_letters(struct req *r)
{
    static const char *const allowed[] = {"limit", "before", "after", "partner_id", NULL};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t limit = DEAD_LIMIT_DEFAULT, before = INT64_MAX, partner = 0;
    int has;
    if ((rc = input_int(r, "limit", 1, DEAD_LIMIT_MAX, &limit, &has)) != 0 ||
        (rc = input_int(r, "before", 0, INT64_MAX, &before, &has)) != 0 ||
        (rc = input_int(r, "partner_id", 1, INT64_MAX, &partner, &has)) != 0)
        return rc;
    /* after: the last id of the previous page, so that dead letters of the
     * millisecond a page ended in are not skipped. */
    const char *after = NULL;
    if ((rc = input_text(r, "after", 256, &after)) != 0)
        return rc;
    if (after != NULL && !input_is_event_id(after))
        return reply_invalid(r, "after", "is not an event id (next_after of the previous page)");
    /* The newest limit of every shard, merged, keep the newest limit. */
    size_t cap = (size_t)limit * 2 + 16, n = 0;
    struct dead_ref *refs = xcalloc(cap, sizeof *refs);
    for (uint32_t k = 0; k < r->api->shards; k++) {
        struct rec_list page;
        if (store_dead_page(r, k, before, after, limit, &page) < 0) {
            free_refs(refs, n);
            return reply_unavailable(r);
        }
        for (size_t i = 0; i < page.n; i++) {
            if (n == cap) {
                qsort(refs, n, sizeof *refs, by_time_desc);
                while (n > (size_t)limit)
                    xfree(refs[--n].id);
            }
            refs[n].k = k;
            refs[n].at = page.score[i];
            refs[n].id = xstrdup(page.id[i]);
            n++;
        }
        rec_list_free(&page);
    }
    qsort(refs, n, sizeof *refs, by_time_desc);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "dead_letters");
    /* The merge is right only for its first limit entries (each shard gave
     * its newest limit): the page is those, the ones of another partner (or
     * gone meanwhile) left out, so a filtered page may hold fewer; the
     * cursor is the last of them. */
    size_t scan = n < (size_t)limit ? n : (size_t)limit;
    for (size_t i = 0; i < scan; i++) {
        struct rec e;
        if (store_event_get(r, refs[i].id, NULL, &e) == 0 &&
            (partner == 0 || strtoll(rec_get(&e, "pid"), NULL, 10) == partner))
            view_dead_letter(g, refs[i].at, &e);
        rec_free(&e);
    }
    json_gen_array_close(g);
    if (n >= (size_t)limit && scan > 0) {
        json_gen_key_int(g, "next_before", refs[scan - 1].at);
        json_gen_key_str(g, "next_after", refs[scan - 1].id);
    } else {
        json_gen_key_null(g, "next_before");
        json_gen_key_null(g, "next_after");
    }
    json_gen_object_close(g);
    free_refs(refs, n);
    return reply_gen(r, 200, g, NULL);
}

static int dead_letter_replay(struct req *r)
{
    const char *id = r->arg[0];
    if (!input_is_event_id(id))
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    struct rec e;
    int rc = store_event_get(r, id, NULL, &e);
    if (rc < 0) {
        rec_free(&e);
        return rc == -SIMAP_ECONN ? reply_unavailable(r)
                                  : reply_error(r, 404, "not_found", NULL, "Event not found.");
    }
    char pid[24], state[32];
    snprintf(pid, sizeof pid, "%s", rec_get(&e, "pid"));
    snprintf(state, sizeof state, "%s", rec_get(&e, "state"));
    rec_free(&e);
    rc = store_event_replay(r, id, pid);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", NULL,
                           "only dead letters can be replayed; this event is %s", state);
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    if (rc < 0 || store_event_get(r, id, NULL, &e) < 0) {
        rec_free(&e);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    view_event(g, &e);
    rec_free(&e);
    return reply_gen(r, 202, g, NULL);
}

const struct route routes_fleet[] = {
    {"GET", "/admin/api/fleet", AUTH_ADMIN, fleet},
    {"POST", "/admin/api/fleet/:id/drain", AUTH_ADMIN, fleet_drain},
    {"GET", "/admin/api/queues", AUTH_ADMIN, queues},
    {"GET", "/admin/api/dead-letters", AUTH_ADMIN, dead_letters},
    {"POST", "/admin/api/dead-letters/:id/replay", AUTH_ADMIN, dead_letter_replay},
    {NULL, NULL, AUTH_NONE, NULL},
};
