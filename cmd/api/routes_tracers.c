/*
 * cmd/api/routes_tracers: /admin/api/tracers, what the operator sees of
 * tracer mail (README "Tracer mail"): per provider its latest tracers,
 * newest first, each sent, detected (with its latency), missing (sent and
 * not detected within the deadline) or failed (the submission's class and
 * error). Read from the records the dispatchers and watchers write; nothing
 * is computed on the metrics' scrape path. Admin API: unknown parameters
 * are refused (see routes_providers.c).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdlib.h>
#include <string.h>

#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "cmd/api/views.h"
#include "core/config.h"
#include "core/json.h"

#define LIMIT_DEFAULT 20
#define LIMIT_MAX     100 /* si:tracers:<code> keeps 100 */

/* sending | sent | detected | missing | failed, as the README explains. */
static const char *status_of(const struct rec *t, int64_t now, int64_t deadline_ms)
{
    const char *result = rec_get(t, "result");
    if (*rec_get(t, "detected_at") != '\0')
        return "detected";
    if (strcmp(result, "sending") == 0)
        return "sending";
    if (strcmp(result, "sent") != 0)
        return "failed";
    if (*rec_get(t, "missing_at") != '\0' ||
        now - strtoll(rec_get(t, "sent_at"), NULL, 10) > deadline_ms)
        return "missing";
    return "sent";
}

static void int_or_null(struct json_gen *g, const char *key, const char *v)
{
    if (*v != '\0')
        json_gen_key_int(g, key, strtoll(v, NULL, 10));
    else
        json_gen_key_null(g, key);
}

static int tracers(struct req *r)
{
    static const char *const allowed[] = {"limit", NULL};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    int64_t limit = LIMIT_DEFAULT;
    int has;
    if ((rc = input_int(r, "limit", 1, LIMIT_MAX, &limit, &has)) != 0)
        return rc;
    const struct config *cfg = r->api->cfg;
    int64_t interval_ms = (int64_t)cfg->tracer_interval_sec * 1000;
    int64_t deadline_ms =
        cfg->tracer_deadline_sec > 0 ? (int64_t)cfg->tracer_deadline_sec * 1000 : 2 * interval_ms;
    struct rec_list provs;
    if (store_provider_list(r, &provs) < 0)
        return reply_unavailable(r);
    int64_t now = store_time_ms(r);
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_int(g, "interval_sec", cfg->tracer_interval_sec);
    json_gen_key_int(g, "deadline_sec", deadline_ms / 1000);
    json_gen_key_array(g, "providers");
    for (size_t i = 0; i < provs.n; i++) {
        struct rec_list l;
        if (store_tracers_recent(r, provs.id[i], limit, &l) < 0) {
            rec_list_free(&provs);
            json_gen_free(g);
            return reply_unavailable(r);
        }
        json_gen_object_open(g);
        json_gen_key_str(g, "code", provs.id[i]);
        json_gen_key_array(g, "tracers");
        for (size_t j = 0; j < l.n; j++) {
            const struct rec *t = &l.rec[j];
            json_gen_object_open(g);
            json_gen_key_str(g, "id", l.id[j]);
            json_gen_key_str(g, "user_id", rec_get(t, "uid"));
            json_gen_key_str(g, "status", status_of(t, now, deadline_ms));
            json_gen_key_str(g, "result", rec_get(t, "result"));
            if (*rec_get(t, "error") != '\0')
                json_gen_key_str(g, "error", rec_get(t, "error"));
            else
                json_gen_key_null(g, "error");
            view_time(g, "sent_at", rec_get(t, "sent_at"));
            view_time(g, "detected_at", rec_get(t, "detected_at"));
            int_or_null(g, "latency_ms", rec_get(t, "latency_ms"));
            int_or_null(g, "smtp_ms", rec_get(t, "smtp_ms"));
            json_gen_object_close(g);
        }
        json_gen_array_close(g);
        json_gen_object_close(g);
        rec_list_free(&l);
    }
    rec_list_free(&provs);
    json_gen_array_close(g);
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

const struct route routes_tracers[] = {
    {"GET", "/admin/api/tracers", AUTH_ADMIN, tracers},
    {NULL, NULL, AUTH_NONE, NULL},
};
