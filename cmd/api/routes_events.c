/*
 * cmd/api/routes_events: what a partner could not see in the original: the
 * delivery log of its webhooks, each event's state, replay of dead letters,
 * and a test webhook on demand (queued through store_event_enqueue(), like
 * the user_connected and user_disconnected events of user writes).
 *
 * Formats are core/schema.h's "Event fields" and "Delivery log". An event is
 * read only when its pid is the caller's: another partner's ids answer 404
 * exactly like ids that do not exist.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/api/client.h"
#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/store.h"
#include "cmd/api/views.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/metrics.h"
#include "core/time.h"

#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX     500
#define TEST_WAIT_DEFAULT_MS 5000
#define TEST_WAIT_MAX_MS     10000

/* Loads the caller's event id; replies 404/503 otherwise. */
static int load_event(struct req *r, const char *id, struct rec *e)
{
    memset(e, 0, sizeof *e);
    if (!input_is_event_id(id))
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    int rc = store_event_get(r, id, r->partner.pid, e);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", NULL, "Event not found.");
    return 0;
}

static int is_stream_id(const char *s)
{
    size_t n = strlen(s), dash = 0;
    if (n == 0 || n > 41)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            dash++;
        else if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return dash <= 1 && s[0] != '-' && s[n - 1] != '-';
}

/* Reads an optional text filter; replies 400 when it is not text. */
static int filter(struct req *r, const char *name, const char **out)
{
    *out = NULL;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    if (param_text(p, out) < 0)
        return reply_invalid(r, name, "must be a string");
    if (**out == '\0')
        *out = NULL;
    return 0;
}

static void on_log_entry(const char *log_id, const struct rec *entry, const char *state, void *data)
{
    view_log_entry(data, log_id, entry, state);
}

static int event_list(struct req *r)
{
    int64_t limit = EVENTS_LIMIT_DEFAULT;
    const struct param *pl = params_get(&r->params, "limit");
    if (pl != NULL && param_int(pl, 1, EVENTS_LIMIT_MAX, &limit) < 0)
        return reply_invalid(r, "limit", "must be an integer from 1 to 500");
    struct store_log_filter f = {.uid = NULL};
    const char *cursor;
    int rc;
    if ((rc = filter(r, "tag", &f.tag)) != 0 || (rc = filter(r, "type", &f.type)) != 0 ||
        (rc = filter(r, "status", &f.result)) != 0 ||
        (rc = filter(r, "imap_provider_code", &f.code)) != 0 ||
        (rc = filter(r, "cursor", &cursor)) != 0)
        return rc;
    if (f.tag == NULL && (rc = filter(r, "user", &f.tag)) != 0)
        return rc;
    if (cursor != NULL && !is_stream_id(cursor))
        return reply_invalid(r, "cursor", "is not a cursor this API returned");
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "events");
    char next[64];
    if (store_log_scan(r, r->partner.pid, cursor, &f, limit, on_log_entry, g, next) < 0) {
        json_gen_free(g);
        return reply_unavailable(r);
    }
    json_gen_array_close(g);
    if (next[0] != '\0')
        json_gen_key_str(g, "next_cursor", next);
    else
        json_gen_key_null(g, "next_cursor");
    json_gen_object_close(g);
    return reply_gen(r, 200, g, NULL);
}

static int event_show(struct req *r)
{
    struct rec e;
    int rc = load_event(r, r->arg[0], &e);
    if (rc != 0) {
        rec_free(&e);
        return rc;
    }
    struct json_gen *g = reply_gen_new();
    view_event(g, &e);
    rec_free(&e);
    return reply_gen(r, 200, g, NULL);
}

static int event_replay(struct req *r)
{
    const char *id = r->arg[0];
    struct rec e;
    int rc = load_event(r, id, &e);
    if (rc != 0) {
        rec_free(&e);
        return rc;
    }
    rc = store_event_replay(r, id, r->partner.pid);
    if (rc == -SIMAP_ESTATE)
        rc = reply_error(r, 409, "conflict", NULL,
                         "only dead letters can be replayed; this event is %s",
                         rec_get(&e, "state"));
    else if (rc == -SIMAP_ENOTFOUND)
        rc = reply_error(r, 404, "not_found", NULL, "Event not found.");
    else if (rc < 0)
        rc = reply_unavailable(r);
    rec_free(&e);
    if (rc != 0)
        return rc;
    if ((rc = load_event(r, id, &e)) != 0) {
        rec_free(&e);
        return rc;
    }
    struct json_gen *g = reply_gen_new();
    view_event(g, &e);
    rec_free(&e);
    return reply_gen(r, 202, g, NULL);
}

/* Pauses between two reads of a test event's state. */
static void pause_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int webhook_test(struct req *r)
{
    int64_t wait_ms = TEST_WAIT_DEFAULT_MS;
    const struct param *pw = params_get(&r->params, "wait_ms");
    if (pw != NULL && param_int(pw, 0, TEST_WAIT_MAX_MS, &wait_ms) < 0)
        return reply_invalid(r, "wait_ms", "must be an integer from 0 to 10000");
    int has_url = store_partner_has(r, r->partner.pid, "new_mail_webhook_url");
    if (has_url < 0)
        return reply_unavailable(r);
    if (!has_url)
        return reply_error(r, 409, "conflict", NULL,
                           "the partner has no new_mail_webhook_url to send a test to");
    unsigned char rnd[8];
    char hex[17];
    crypto_random(rnd, sizeof rnd);
    crypto_hex_encode(rnd, sizeof rnd, hex);
    char eid[128];
    snprintf(eid, sizeof eid, "test.%s.%lld.%s", r->partner.pid, (long long)time_now_ms(), hex);
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    if (crypto_sha1_hex(eid, strlen(eid), sha1) < 0)
        return reply_error(r, 500, "internal", NULL, "hashing failed");
    struct json_gen *g = json_gen_new(4096);
    json_gen_object_open(g);
    json_gen_key_str(g, "sha1", sha1);
    json_gen_key_str(g, "user_tag", "");
    json_gen_key_str(g, "imap_provider_code", "");
    json_gen_key_str(g, "event", "webhook_test");
    json_gen_key_str(g, "id", eid);
    json_gen_key_str(g, "message", "superimap webhook test: if you can read this, it works");
    json_gen_object_close(g);
    char *payload;
    int rc = json_gen_finish(g, &payload, NULL);
    json_gen_free(g);
    if (rc < 0)
        return reply_error(r, 500, "internal", NULL, "the test body could not be made");
    rc = store_event_enqueue(r, 0, r->partner.pid, eid, "webhook_test", "", "", "", sha1, payload);
    xfree(payload);
    if (rc < 0)
        return reply_unavailable(r);

    /* Report what the dispatcher did, if it does it within wait_ms. A test
     * that waits holds a worker thread: past the partner's or the api's bound
     * on waiting tests, the answer comes at once (202, pending). */
    int waiting = wait_ms > 0 && client_gate_enter(r->api->waiters, r->partner.pid, 0) == 0;
    if (wait_ms > 0 && !waiting) {
        metric_inc(r->api->m_test_no_wait);
        wait_ms = 0;
    }
    int64_t deadline = time_mono_ms() + wait_ms;
    struct rec e;
    for (;;) {
        rc = store_event_get(r, eid, NULL, &e);
        if (rc == -SIMAP_ECONN)
            break;
        const char *state = rec_get(&e, "state");
        int pending = strcmp(state, "ready") == 0 || strcmp(state, "inflight") == 0;
        if (!pending || time_mono_ms() >= deadline)
            break;
        rec_free(&e);
        pause_ms(50);
    }
    if (waiting)
        client_gate_leave(r->api->waiters, r->partner.pid);
    if (rc == -SIMAP_ECONN) {
        rec_free(&e);
        return reply_unavailable(r);
    }
    const char *state = rec_get(&e, "state");
    int pending = strcmp(state, "ready") == 0 || strcmp(state, "inflight") == 0 || *state == '\0';
    g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_str(g, "id", eid);
    json_gen_key_str(g, "result", pending ? "pending" : state);
    json_gen_key_bool(g, "delivered", strcmp(state, "delivered") == 0);
    json_gen_key_int(g, "attempts", strtoll(rec_get(&e, "attempts"), NULL, 10));
    const char *st = rec_get(&e, "last_status");
    if (*st && strcmp(st, "0") != 0)
        json_gen_key_int(g, "last_status", strtoll(st, NULL, 10));
    else
        json_gen_key_null(g, "last_status");
    const char *le = rec_get(&e, "last_error");
    if (*le)
        json_gen_key_str(g, "last_error", le);
    else
        json_gen_key_null(g, "last_error");
    json_gen_object_close(g);
    rec_free(&e);
    return reply_gen(r, pending ? 202 : 200, g, NULL);
}

const struct route routes_events[] = {
    {"GET", "/api/{v}/events", AUTH_PARTNER, event_list},
    {"GET", "/api/{v}/events/:id", AUTH_PARTNER, event_show},
    {"POST", "/api/{v}/events/:id/replay", AUTH_PARTNER, event_replay},
    {"POST", "/api/{v}/webhook-test", AUTH_PARTNER, webhook_test},
    {NULL, NULL, AUTH_NONE, NULL},
};
