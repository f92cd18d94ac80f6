/*
 * cmd/api/routes_users: /admin/api/users, the users of every partner for
 * the operator: a search by email, tag or login prefix (si:ix:user, a page
 * at a time with an opaque cursor), one user with its lease and its recent
 * events, each with its delivery attempts from the partner's delivery log,
 * and archive and restore through the partner API's scripts. Admin API:
 * unknown parameters are refused (see routes_providers.c).
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

#define SEARCH_LIMIT_DEFAULT 50
#define SEARCH_LIMIT_MAX     200
#define EVENTS_MAX           50  /* events of a user's page */
#define ATTEMPTS_READ        500 /* log entries of the user read at most */

/* ---- Search ---- */

static int search(struct req *r)
{
    static const char *const allowed[] = {"q", "by", "cursor", "limit", NULL};
    static const char *const bys[][2] = {{"email", "e"}, {"tag", "t"}, {"login", "l"}};
    int rc = input_only_known(r, allowed);
    if (rc != 0)
        return rc;
    const char *q, *by;
    int64_t limit = SEARCH_LIMIT_DEFAULT;
    int has;
    if ((rc = input_text(r, "q", API_EMAIL_MAX, &q)) != 0 ||
        (rc = input_text(r, "by", 16, &by)) != 0 ||
        (rc = input_int(r, "limit", 1, SEARCH_LIMIT_MAX, &limit, &has)) != 0)
        return rc;
    const char *kind = NULL;
    for (size_t i = 0; i < sizeof bys / sizeof bys[0]; i++)
        if (by == NULL || strcmp(by, bys[i][0]) == 0) {
            kind = bys[i][1];
            break;
        }
    if (kind == NULL)
        return reply_invalid(r, "by", "must be email, tag or login");
    size_t n = q != NULL ? strlen(q) : 0;
    char *prefix = xmalloc(n + 2);
    snprintf(prefix, n + 2, "%s%s", kind, q != NULL ? q : "");
    params_ascii_lower(prefix);
    char *next;
    struct rec_list users;
    rc = input_page(r, prefix, limit, store_user_search, &users, &next);
    xfree(prefix);
    if (rc != 0)
        return rc;
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "users");
    for (size_t i = 0; i < users.n; i++) {
        view_admin_user_open(g, &users.rec[i], rec_get(&users.rec[i], "partner_name"));
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
    view_next_cursor(g, next);
    json_gen_object_close(g);
    rec_list_free(&users);
    xfree(next);
    return reply_gen(r, 200, g, NULL);
}

/* ---- One user ---- */

/* User r->arg[0] into *u; else the reply's status (404, 503). */
static int load_user(struct req *r, struct rec *u)
{
    const char *uid = r->arg[0];
    int rc = strlen(uid) == SCHEMA_UID_LEN && params_is_token(uid, SCHEMA_UID_LEN, "")
                 ? store_user_by_uid(r, uid, u)
                 : -SIMAP_ENOTFOUND;
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "User not found.");
    if (rc < 0)
        return reply_unavailable(r);
    return 0;
}

/* One event of the user's page and its attempts, newest first, as the
 * delivery log has them. */
struct user_event {
    struct rec first; /* the newest log entry: id, type, tag, code */
    struct rec_list attempts;
};

struct user_events {
    struct user_event ev[EVENTS_MAX];
    size_t n;
};

static void on_attempt(const char *log_id, const struct rec *entry, const char *state, void *data)
{
    (void)log_id;
    (void)state;
    struct user_events *ue = data;
    const char *id = rec_get(entry, "id");
    size_t i;
    for (i = 0; i < ue->n && strcmp(rec_get(&ue->ev[i].first, "id"), id) != 0; i++)
        ;
    if (i == ue->n) {
        if (ue->n == EVENTS_MAX)
            return;
        memset(&ue->ev[i], 0, sizeof ue->ev[i]);
        for (size_t f = 0; f < entry->n; f++)
            rec_add(&ue->ev[i].first, entry->f[f], entry->v[f]);
        ue->n++;
    }
    struct rec copy;
    memset(&copy, 0, sizeof copy);
    for (size_t f = 0; f < entry->n; f++)
        rec_add(&copy, entry->f[f], entry->v[f]);
    rec_list_add(&ue->ev[i].attempts, log_id, 0, &copy);
}

/* One attempt of the log: attempt, status, result, latency_ms, error, at. */
static void view_attempt(struct json_gen *g, const char *log_id, const struct rec *a)
{
    json_gen_object_open(g);
    json_gen_key_int(g, "attempt", strtoll(rec_get(a, "attempt"), NULL, 10));
    json_gen_key_int(g, "status", strtoll(rec_get(a, "status"), NULL, 10));
    json_gen_key_str(g, "result", rec_get(a, "result"));
    json_gen_key_int(g, "latency_ms", strtoll(rec_get(a, "latency_ms"), NULL, 10));
    const char *err = rec_get(a, "error");
    if (*err != '\0')
        json_gen_key_str(g, "error", err);
    else
        json_gen_key_null(g, "error");
    /* A stream id is "<ms>-<seq>": the ms the attempt was logged. */
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", strtoll(log_id, NULL, 10));
    view_time(g, "at", ms);
    json_gen_object_close(g);
}

/* The user's events: each event hash as it is now (or, gone after its 7
 * days, what the log says, state "expired") and its attempts, oldest
 * first. */
static int write_events(struct req *r, struct json_gen *g, const struct rec *u)
{
    struct user_events *ue = xcalloc(1, sizeof *ue);
    struct store_log_filter f = {.uid = rec_get(u, "uid")};
    char next[64];
    int rc = store_log_scan(r, rec_get(u, "pid"), NULL, &f, ATTEMPTS_READ, on_attempt, ue, next);
    json_gen_key_array(g, "events");
    for (size_t i = 0; rc == 0 && i < ue->n; i++) {
        struct rec e;
        if (store_event_get(r, rec_get(&ue->ev[i].first, "id"), NULL, &e) == 0) {
            view_event_open(g, &e);
        } else {
            rec_add(&ue->ev[i].first, "state", "expired");
            rec_add(&ue->ev[i].first, "attempts", rec_get(&ue->ev[i].first, "attempt"));
            view_event_open(g, &ue->ev[i].first);
        }
        rec_free(&e);
        json_gen_key_array(g, "attempts_log");
        const struct rec_list *a = &ue->ev[i].attempts;
        for (size_t j = a->n; j-- > 0;)
            view_attempt(g, a->id[j], &a->rec[j]);
        json_gen_array_close(g);
        json_gen_object_close(g);
    }
    json_gen_array_close(g);
    for (size_t i = 0; i < ue->n; i++) {
        rec_free(&ue->ev[i].first);
        rec_list_free(&ue->ev[i].attempts);
    }
    xfree(ue);
    return rc;
}

/* Replies status with user uid as it is now: its fields, partner name,
 * lease and events. */
static int send_user(struct req *r, int status, const struct rec *u)
{
    char *name = NULL;
    char lease[SCHEMA_KEY_MAX];
    if (store_partner_name(r, rec_get(u, "pid"), &name) == -SIMAP_ECONN ||
        store_user_lease(r, rec_get(u, "uid"), lease) < 0) {
        xfree(name);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key(g, "user");
    view_admin_user_open(g, u, name);
    xfree(name);
    if (lease[0] != '\0')
        json_gen_key_str(g, "lease", lease);
    else
        json_gen_key_null(g, "lease");
    view_admin_user_mailboxes(g, u);
    json_gen_object_close(g);
    if (write_events(r, g, u) < 0) {
        json_gen_free(g);
        return reply_unavailable(r);
    }
    json_gen_object_close(g);
    return reply_gen(r, status, g, NULL);
}

static int user_show(struct req *r)
{
    static const char *const allowed[] = {NULL};
    int rc = input_only_known(r, allowed);
    struct rec u;
    memset(&u, 0, sizeof u);
    if (rc == 0 && (rc = load_user(r, &u)) == 0)
        rc = send_user(r, 200, &u);
    rec_free(&u);
    return rc;
}

/* Archives (archive 1) or restores user r->arg[0] as the partner API's
 * DELETE and PUT archived=false do, and replies with it. */
static int archive_or_restore(struct req *r, int archive)
{
    static const char *const allowed[] = {NULL};
    int rc = input_only_known(r, allowed);
    struct rec u;
    memset(&u, 0, sizeof u);
    if (rc != 0 || (rc = load_user(r, &u)) != 0) {
        rec_free(&u);
        return rc;
    }
    char pid[24], code[API_CODE_MAX + 1], uid[SCHEMA_UID_LEN + 1];
    snprintf(pid, sizeof pid, "%s", rec_get(&u, "pid"));
    snprintf(code, sizeof code, "%s", rec_get(&u, "code"));
    snprintf(uid, sizeof uid, "%s", rec_get(&u, "uid"));
    const char *field = NULL;
    rc = archive ? store_user_archive(r, &u) : store_user_restore(r, pid, code, &u, &field);
    rec_free(&u);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", field,
                           field != NULL ? "another live user of the connection has this %s"
                                         : "the user kept changing; try again",
                           field != NULL ? field : "");
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "User not found.");
    if (rc < 0 || (rc = store_user_by_uid(r, uid, &u)) < 0) {
        rec_free(&u);
        return reply_unavailable(r);
    }
    rc = send_user(r, 200, &u);
    rec_free(&u);
    return rc;
}

static int user_archive(struct req *r)
{
    return archive_or_restore(r, 1);
}

static int user_restore(struct req *r)
{
    return archive_or_restore(r, 0);
}

const struct route routes_users[] = {
    {"GET", "/admin/api/users", AUTH_ADMIN, search},
    {"GET", "/admin/api/users/:uid", AUTH_ADMIN, user_show},
    {"POST", "/admin/api/users/:uid/archive", AUTH_ADMIN, user_archive},
    {"POST", "/admin/api/users/:uid/restore", AUTH_ADMIN, user_restore},
    {NULL, NULL, AUTH_NONE, NULL},
};
