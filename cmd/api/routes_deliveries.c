/*
 * cmd/api/routes_deliveries: what the dashboard's Deliveries and Charts
 * pages read besides the queues: /admin/api/circuits (the webhook URLs'
 * circuit breakers as the dispatchers published them), /admin/api/stats
 * (the per-minute chart counters, core/stat.h), and the dead letters' delete
 * and .eml download (the list and the replay are routes_fleet.c's). Admin
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
#include "core/err.h"
#include "core/json.h"
#include "core/stat.h"

#define CIRCUITS_DEFAULT 100
#define CIRCUITS_MAX     1000
#define MINUTES_DEFAULT  360
#define MINUTES_MAX      2880 /* 48 h, the counters' TTL */

/* A stored ms time as a number, or null when empty or 0. */
static void key_ms(struct json_gen *g, const char *key, const char *v)
{
    long long ms = strtoll(v, NULL, 10);
    if (ms > 0)
        json_gen_key_int(g, key, ms);
    else
        json_gen_key_null(g, key);
}

static int circuits(struct req *r)
{
    static const char *const allowed[] = {"limit", NULL};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t limit = CIRCUITS_DEFAULT;
    int has;
    if ((rc = input_int(r, "limit", 1, CIRCUITS_MAX, &limit, &has)) != 0)
        return rc;
    struct rec_list l;
    if (store_circuits(r, limit, &l) < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "circuits");
    for (size_t i = 0; i < l.n; i++) {
        const struct rec *c = &l.rec[i];
        json_gen_object_open(g);
        json_gen_key_str(g, "url", rec_get(c, "url"));
        json_gen_key_str(g, "state", rec_get(c, "state"));
        json_gen_key_int(g, "failures", strtoll(rec_get(c, "failures"), NULL, 10));
        key_ms(g, "opened_at", rec_get(c, "opened_at"));
        key_ms(g, "until", rec_get(c, "until"));
        json_gen_key_str(g, "node", rec_get(c, "node"));
        json_gen_key_int(g, "updated_at", l.score[i]);
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
    json_gen_object_close(g);
    rec_list_free(&l);
    return reply_gen(r, 200, g, NULL);
}

/* A quantile in ms, rounded to 0.1 ms, or null without latencies. */
static void key_quantile(struct json_gen *g, const char *key, const long long *b, double q)
{
    double v = stat_quantile(b, q);
    if (v < 0)
        json_gen_key_null(g, key);
    else
        json_gen_key_double(g, key, (double)(long long)(v * 10 + 0.5) / 10);
}

static int stats(struct req *r)
{
    static const char *const allowed[] = {"minutes", NULL};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t minutes = MINUTES_DEFAULT;
    int has;
    if ((rc = input_int(r, "minutes", 1, MINUTES_MAX, &minutes, &has)) != 0)
        return rc;
    int64_t last = stat_minute(store_time_ms(r)), first = last - minutes + 1;
    struct rec *m = xcalloc((size_t)minutes, sizeof *m);
    if (store_stat_minutes(r, first, (size_t)minutes, m) < 0) {
        xfree(m);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "minutes");
    for (int64_t i = 0; i < minutes; i++) {
        const struct rec *c = &m[i];
        long long b[STAT_NBUCKETS];
        for (int j = 0; j < STAT_NBUCKETS; j++)
            b[j] = strtoll(rec_get(c, stat_bucket_field(j)), NULL, 10);
        json_gen_object_open(g);
        json_gen_key_int(g, "t", (first + i) * 60000);
        json_gen_key_int(g, "mail", strtoll(rec_get(c, STAT_MAIL), NULL, 10));
        json_gen_key_int(g, "delivered", strtoll(rec_get(c, STAT_DELIVERED), NULL, 10));
        json_gen_key_int(g, "failed", strtoll(rec_get(c, STAT_FAILED), NULL, 10));
        key_quantile(g, "p50_ms", b, 0.5);
        key_quantile(g, "p99_ms", b, 0.99);
        json_gen_object_close(g);
        rec_free(&m[i]);
    }
    xfree(m);
    json_gen_array_close(g);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

static int dead_letter_delete(struct req *r)
{
    const char *id = r->arg[0];
    int rc = input_is_event_id(id) ? store_event_delete(r, id) : -SIMAP_ENOTFOUND;
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", NULL,
                           "only dead letters can be deleted; this event was replayed or "
                           "delivered");
    return reply_no_content(r);
}

static int dead_letter_eml(struct req *r)
{
    const char *id = r->arg[0];
    char *raw = NULL;
    size_t len = 0;
    int rc = input_is_event_id(id) ? store_event_message(r, id, &raw, &len) : -SIMAP_ENOTFOUND;
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    if (rc == -SIMAP_ESTATE || rc == -SIMAP_ECRYPTO)
        return reply_error(r, 404, "no_message", NULL,
                           rc == -SIMAP_ECRYPTO
                               ? "the event's payload cannot be decrypted with this node's keys"
                               : "this event carries no message (not a new_mail event, a "
                                 "message over the size limit, or a delivered event)");
    /* The id is a token of [A-Za-z0-9._-]: safe in a quoted file name. */
    char disposition[320];
    snprintf(disposition, sizeof disposition,
             "Content-Disposition: attachment; filename=\"%s.eml\"\r\n", id);
    int sent = reply_bytes(r, 200, "message/rfc822", raw, len, disposition);
    xfree(raw);
    return sent;
}

const struct route routes_deliveries[] = {
    {"GET", "/admin/api/circuits", AUTH_ADMIN, circuits},
    {"GET", "/admin/api/stats", AUTH_ADMIN, stats},
    {"DELETE", "/admin/api/dead-letters/:id", AUTH_ADMIN, dead_letter_delete},
    {"GET", "/admin/api/dead-letters/:id/eml", AUTH_ADMIN, dead_letter_eml},
    {NULL, NULL, AUTH_NONE, NULL},
};
