/*
 * cmd/api/routes_partner: the original's partner API, /api/v1/connections and
 * their users, with its parameter names and JSON shapes, plus pagination
 * and the user state fields; the same routes under /api/v2.
 *
 * One handler per route for both versions: reply.c gives v1 the original's
 * status codes and plain-text errors, and the user list is the one place a
 * handler looks at the version (v1 sends every user in one array unless
 * the client asks for a page).
 *
 * Every lookup is scoped by the partner found from the API key: the keys
 * read are built from that partner's id, so another partner's data cannot be
 * named, whatever the path says. Every write is one Lua script.
 *
 * Differences from the original, on purpose:
 *   - a tag reused after archiving resolves to the live user (the original
 *     could answer with the archived row); an archived user is still found
 *     by its tag while no live user has it, so it can be restored;
 *   - POST /connections takes the credentials (the original dropped them);
 *   - pages of the user list (v2, or v1 with limit or cursor) are in tag
 *     order, the order of a connection's one user index; v1's whole list is
 *     by email, as the original's, from a copy of the index (store.h);
 *   - v2 only: conflicts are 409, creates 201, errors JSON, and the user list
 *     paginated (limit, cursor; the next cursor in the X-Next-Cursor header,
 *     the body stays the original's array).
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
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"

#define LIST_LIMIT_DEFAULT 1000
#define LIST_LIMIT_MAX     1000

/* ---- Lookups ---- */

#define CODE_BUF (API_CODE_MAX + 8)

/* The route's provider code (:code, the first argument), cut to fit: codes
 * are [A-Za-z0-9_-]; a Rails-style ".json" suffix is dropped. */
static void route_code(const struct req *r, char code[CODE_BUF])
{
    snprintf(code, CODE_BUF, "%.70s", r->arg[0]);
    size_t n = strlen(code);
    if (n > 5 && strcmp(code + n - 5, ".json") == 0)
        code[n - 5] = '\0';
}

/* Loads the provider; replies 404 (the original's message) when unknown. */
static int load_provider(struct req *r, const char *code, struct rec *prov)
{
    memset(prov, 0, sizeof *prov);
    if (!input_is_code(code))
        return reply_error(r, 404, "not_found", "imap_provider_code",
                           "Imap Provider not found for '%.*s'.", 100, code);
    int rc = store_provider_get(r, code, prov);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", "imap_provider_code",
                           "Imap Provider not found for '%s'.", code);
    return 0;
}

/* Loads the partner's connection to code (provider first, as the original). */
static int load_conn(struct req *r, const char *code, struct rec *prov, struct rec *conn)
{
    memset(conn, 0, sizeof *conn);
    int rc = load_provider(r, code, prov);
    if (rc != 0)
        return rc;
    rc = store_conn_get(r, r->partner.pid, code, conn);
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", NULL, "Connection not found.");
    return 0;
}

static int is_oauth2(const struct rec *prov)
{
    return strcmp(rec_get(prov, "auth"), "oauth2") == 0;
}

/* Why a tag cannot be used, or NULL. */
static const char *bad_tag(const char *tag)
{
    size_t n = strlen(tag);
    if (n == 0)
        return "can't be blank";
    if (n > API_TAG_MAX)
        return "is too long (maximum is 255 bytes)";
    if (!params_is_printable(tag, n))
        return "must not contain control characters";
    if (strchr(tag, '/') != NULL)
        return "must not contain '/'";
    return NULL;
}

/* Finds the user of path tag; replies 400/404/503 on failure. A trailing
 * ".json" (the original's format suffix) is dropped when no user has the tag
 * with it. */
static int load_user(struct req *r, const char *code, const char *tag, struct rec *u)
{
    memset(u, 0, sizeof *u);
    const char *pid = r->partner.pid;
    const char *why = bad_tag(tag);
    if (why != NULL && strchr(tag, '/') == NULL)
        return reply_invalid(r, "tag", why);
    int rc = why ? -SIMAP_ENOTFOUND : store_user_find(r, pid, code, tag, u);
    size_t n = strlen(tag);
    if (rc == -SIMAP_ENOTFOUND && n > 5 && strcmp(tag + n - 5, ".json") == 0) {
        char *base = xstrndup(tag, n - 5);
        rc = bad_tag(base) ? -SIMAP_ENOTFOUND : store_user_find(r, pid, code, base, u);
        xfree(base);
    }
    if (rc == -SIMAP_ECONN)
        return reply_unavailable(r);
    if (rc < 0)
        return reply_error(r, 404, "not_found", NULL, "User not found for '%.300s'.", tag);
    return 0;
}

static int send_user(struct req *r, int status, const struct rec *u)
{
    struct json_gen *g = reply_gen_new();
    view_user(g, r->api, u, r->partner.api_key, r->version);
    return reply_gen(r, status, g, NULL);
}

static int user_not_found(struct req *r)
{
    return reply_error(r, 404, "not_found", NULL, "User not found.");
}

/* Reads the user again after a write and sends it. */
static int send_user_by_uid(struct req *r, int status, const char *code, const char *uid)
{
    struct rec u;
    int rc = store_user_get(r, r->partner.pid, code, uid, &u);
    if (rc < 0) {
        rec_free(&u);
        return rc == -SIMAP_ECONN ? reply_unavailable(r) : user_not_found(r);
    }
    rc = send_user(r, status, &u);
    rec_free(&u);
    return rc;
}

/* ---- Parameters of users ---- */

/* Reads one optional text parameter (printable: no control characters);
 * replies 400 when present but bad. */
static int opt_text(struct req *r, const char *name, size_t max, int printable, const char **out,
                    int *has)
{
    int rc = printable ? input_text(r, name, max, out) : input_secret(r, name, max, out);
    *has = rc == 0 && *out != NULL;
    return rc;
}

static int opt_bool(struct req *r, const char *name, int *out)
{
    const struct param *p = params_get(&r->params, name);
    *out = -1;
    if (p == NULL)
        return 0;
    if (param_bool(p, out) < 0)
        return reply_invalid(r, name, "must be true or false");
    return 0;
}

/* Reads the user fields of the request into *in; in->mailboxes is then
 * the caller's to xfree() whatever the result. */
static int read_user_input(struct req *r, const struct rec *prov, struct store_user_input *in)
{
    memset(in, 0, sizeof *in);
    int rc;
    if ((rc = opt_text(r, "tag", API_TAG_MAX + 1, 1, &in->tag, &in->has_tag)) != 0)
        return rc;
    if (in->has_tag) {
        const char *why = bad_tag(in->tag);
        if (why != NULL)
            return reply_invalid(r, "tag", why);
    }
    if ((rc = opt_text(r, "email", API_EMAIL_MAX, 1, &in->email, &in->has_email)) != 0)
        return rc;
    if (is_oauth2(prov)) {
        if ((rc = opt_text(r, "oauth2_refresh_token", API_SECRET_MAX, 0, &in->secret,
                           &in->has_secret)) != 0)
            return rc;
    } else {
        if ((rc = opt_text(r, "login_username", API_TEXT_MAX, 1, &in->username,
                           &in->has_username)) != 0)
            return rc;
        if ((rc = opt_text(r, "login_password", API_SECRET_MAX, 0, &in->secret, &in->has_secret)) !=
            0)
            return rc;
    }
    if ((rc = opt_bool(r, "archived", &in->archived)) != 0)
        return rc;
    if ((rc = opt_bool(r, "enable_tracer", &in->enable_tracer)) != 0)
        return rc;
    return input_mailboxes(r, "mailboxes", &in->mailboxes, &in->has_mailboxes);
}

/* Answers a failed user write: 409 naming the field taken (or saying the
 * user kept changing), 404, 500 or 503. */
static int write_failed(struct req *r, int rc, const char *field)
{
    switch (rc) {
    case -SIMAP_ESTATE:
        if (field == NULL)
            return reply_error(r, 409, "conflict", NULL, "the user keeps changing; try again");
        return reply_error(r, 409, "conflict", field,
                           "Validation failed: %s has already been taken",
                           strcmp(field, "tag") == 0 ? "Tag" : "Email");
    case -SIMAP_ENOTFOUND:
        return user_not_found(r);
    case -SIMAP_ECRYPTO:
        return reply_error(r, 500, "internal", NULL, "encryption failed");
    case -SIMAP_EPROTO:
        return reply_error(r, 500, "internal", NULL, "unexpected script reply");
    default:
        return reply_unavailable(r);
    }
}

/* ---- Users ---- */

static int user_create(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    struct store_user_input in = {.mailboxes = NULL};
    int rc = load_conn(r, code, &prov, &conn);
    if (rc != 0)
        goto out;
    if ((rc = read_user_input(r, &prov, &in)) != 0)
        goto out;
    if (!in.has_tag || *in.tag == '\0') {
        rc = reply_invalid(r, "tag", "can't be blank");
        goto out;
    }
    char uid[SCHEMA_UID_LEN + 1];
    const char *field;
    rc = store_user_create(r, r->partner.pid, code, is_oauth2(&prov), &in, uid, &field);
    if (rc == -SIMAP_ENOTFOUND)
        rc = reply_error(r, 404, "not_found", NULL, "Connection not found.");
    else if (rc < 0)
        rc = write_failed(r, rc, field);
    else
        rc = send_user_by_uid(r, 201, code, uid);
out:
    xfree(in.mailboxes);
    rec_free(&prov);
    rec_free(&conn);
    return rc;
}

/* Loads the route's connection and user (:code, :tag) and answers with
 * act(r, user); a missing connection or user is answered here. */
static int with_user(struct req *r, int (*act)(struct req *r, struct rec *u))
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn, u;
    memset(&u, 0, sizeof u);
    int rc = load_conn(r, code, &prov, &conn);
    if (rc == 0 && (rc = load_user(r, code, r->arg[1], &u)) == 0)
        rc = act(r, &u);
    rec_free(&prov);
    rec_free(&conn);
    rec_free(&u);
    return rc;
}

static int reply_user(struct req *r, struct rec *u)
{
    return send_user(r, 200, u);
}

static int user_show(struct req *r)
{
    return with_user(r, reply_user);
}

static int user_update(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    const char *pid = r->partner.pid;
    struct rec prov, conn, u;
    struct store_user_input in = {.mailboxes = NULL};
    memset(&u, 0, sizeof u);
    int rc = load_conn(r, code, &prov, &conn);
    if (rc != 0 || (rc = load_user(r, code, r->arg[1], &u)) != 0)
        goto out;
    if ((rc = read_user_input(r, &prov, &in)) != 0)
        goto out;
    if (in.has_tag && *in.tag == '\0') {
        rc = reply_invalid(r, "tag", "can't be blank");
        goto out;
    }
    /* archived alone archives (as DELETE) or restores; anything else is the
     * general update. */
    int only_archived = !in.has_tag && !in.has_email && !in.has_username && !in.has_secret &&
                        in.enable_tracer < 0 && !in.has_mailboxes;
    const char *field = NULL;
    if (only_archived && in.archived == 1)
        rc = store_user_archive(r, &u);
    else if (only_archived && in.archived == 0)
        rc = store_user_restore(r, pid, code, &u, &field);
    else if (!only_archived || in.archived >= 0)
        rc = store_user_update(r, pid, code, is_oauth2(&prov), &u, &in, &field);
    if (rc < 0) {
        rc = write_failed(r, rc, field);
        goto out;
    }
    char uid[SCHEMA_UID_LEN + 1];
    snprintf(uid, sizeof uid, "%s", rec_get(&u, "uid"));
    rc = send_user_by_uid(r, 200, code, uid);
out:
    xfree(in.mailboxes);
    rec_free(&prov);
    rec_free(&conn);
    rec_free(&u);
    return rc;
}

static int archive_and_reply(struct req *r, struct rec *u)
{
    return store_user_archive(r, u) < 0 ? reply_unavailable(r) : reply_no_content(r);
}

static int user_delete(struct req *r)
{
    return with_user(r, archive_and_reply);
}

/* Writes the users of page as JSON array elements (no brackets), each
 * preceded by a comma unless *first. Returns 0 or -SIMAP_EIO. */
static int stream_users(struct req *r, const struct rec_list *page, int *first)
{
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    for (size_t i = 0; i < page->n; i++)
        view_user_brief(g, &page->rec[i], r->version);
    json_gen_array_close(g);
    char *out;
    size_t len;
    int rc = json_gen_finish(g, &out, &len);
    json_gen_free(g);
    if (rc < 0)
        return rc;
    /* out is "[...]": its elements go out between the stream's brackets. */
    if (len > 2) {
        out[0] = ',';
        rc = reply_stream_write(r, *first ? out + 1 : out, *first ? len - 2 : len - 1);
        *first = 0;
    }
    xfree(out);
    return rc;
}

/* GET users under v1 without limit or cursor: every user in one array in
 * the original's order (by email), as it answered, read from Redis a page at
 * a time and written as it is read, so the api's memory does not grow with
 * the connection. */
static int user_list_all(struct req *r, const char *code)
{
    char key[SCHEMA_KEY_MAX];
    if (store_user_sort(r, r->partner.pid, code, key) < 0)
        return reply_unavailable(r);
    struct rec_list page;
    char *next;
    if (store_user_sorted_page(r, r->partner.pid, key, NULL, LIST_LIMIT_MAX, &page, &next) < 0) {
        store_user_sort_drop(r, key);
        return reply_unavailable(r);
    }
    int status = reply_stream_open(r, 200, "application/json");
    int first = 1;
    int rc = reply_stream_write(r, "[", 1);
    for (;;) {
        if (rc == 0)
            rc = stream_users(r, &page, &first);
        rec_list_free(&page);
        if (rc < 0 || next == NULL)
            break;
        char *after = next;
        rc = store_user_sorted_page(r, r->partner.pid, key, after, LIST_LIMIT_MAX, &page, &next);
        xfree(after);
    }
    xfree(next);
    /* Gone before the client has the end of the list. */
    store_user_sort_drop(r, key);
    if (rc == 0)
        rc = reply_stream_write(r, "]", 1);
    if (rc < 0)
        log_warn("api user list cut short pid=%s code=%s err=\"%s\"", r->partner.pid, code,
                 err_str(rc));
    reply_stream_close(r);
    return status;
}

/* GET users: a page of the connection's users in tag order (v2, and v1
 * when the client asks with limit or cursor: a cursor points into the tag
 * index). The cursor is the base64url of the last zset member sent. */
static int user_list(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    rec_free(&prov);
    rec_free(&conn);
    if (rc != 0)
        return rc;
    int64_t limit = LIST_LIMIT_DEFAULT;
    const struct param *pl = params_get(&r->params, "limit");
    if (r->version == 1 && pl == NULL && params_get(&r->params, "cursor") == NULL)
        return user_list_all(r, code);
    if (pl != NULL && param_int(pl, 1, LIST_LIMIT_MAX, &limit) < 0)
        return reply_invalid(r, "limit", "must be an integer from 1 to 1000");
    char *after = NULL;
    const char *cursor;
    if (param_text(params_get(&r->params, "cursor"), &cursor) == 0 && *cursor != '\0') {
        unsigned char *raw = NULL;
        size_t rawlen = 0;
        int bad = strlen(cursor) > 1024 ||
                  crypto_b64url_decode(cursor, strlen(cursor), &raw, &rawlen) < 0 ||
                  memchr(raw, '\x1f', rawlen) == NULL || memchr(raw, '\0', rawlen) != NULL;
        if (bad) {
            xfree(raw);
            return reply_invalid(r, "cursor", "is not a cursor this API returned");
        }
        after = xstrndup((const char *)raw, rawlen);
        xfree(raw);
    }
    struct rec_list users;
    char *next;
    rc = store_user_page(r, r->partner.pid, code, after, limit, &users, &next);
    xfree(after);
    if (rc < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    for (size_t i = 0; i < users.n; i++)
        view_user_brief(g, &users.rec[i], r->version);
    json_gen_array_close(g);
    rec_list_free(&users);
    char headers[2048] = "";
    if (next != NULL) {
        char *b64 = crypto_b64url_encode(next, strlen(next));
        snprintf(headers, sizeof headers, "X-Next-Cursor: %s\r\n", b64);
        xfree(b64);
        xfree(next);
    }
    return reply_gen(r, 200, g, headers[0] ? headers : NULL);
}

/* ---- Connections ---- */

static int send_connection(struct req *r, int status, const char *code)
{
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    if (rc == 0) {
        struct json_gen *g = reply_gen_new();
        view_connection(g, code, &conn, is_oauth2(&prov) ? "oauth2" : "plain", r->version);
        rc = reply_gen(r, status, g, NULL);
    }
    rec_free(&prov);
    rec_free(&conn);
    return rc;
}

/* The connection fields of the request as field/value pairs, in clear (the
 * store seals the client secret). Returns 0 with *n pairs in pairs[6], or
 * the status after replying. Plain providers take no OAuth2 fields (the
 * original ignored them). mailboxes (issue #21), any provider: its
 * canonical JSON in *mailboxes (xfree() it; NULL when absent), "" for null
 * (the default again), left out when creating. */
static int connection_input(struct req *r, const struct rec *prov, int creating,
                            const char *pairs[6], int *n, char **mailboxes)
{
    *n = 0;
    int has_mailboxes;
    int rc = input_mailboxes(r, "mailboxes", mailboxes, &has_mailboxes);
    if (rc != 0)
        return rc;
    if (has_mailboxes && !(creating && **mailboxes == '\0')) {
        pairs[(*n)++] = "mailboxes";
        pairs[(*n)++] = *mailboxes;
    }
    if (!is_oauth2(prov))
        return 0;
    const char *id, *secret;
    int has_id, has_secret;
    if ((rc = opt_text(r, "oauth2_client_id", API_TEXT_MAX, 1, &id, &has_id)) != 0)
        return rc;
    if ((rc = opt_text(r, "oauth2_client_secret", API_SECRET_MAX, 0, &secret, &has_secret)) != 0)
        return rc;
    if (has_id) {
        pairs[(*n)++] = "oauth2_client_id";
        pairs[(*n)++] = id;
    }
    if (has_secret) {
        pairs[(*n)++] = "oauth2_client_secret";
        pairs[(*n)++] = secret;
    }
    return 0;
}

static int connection_create(struct req *r)
{
    const char *code0;
    const struct param *pc = params_get(&r->params, "imap_provider_code");
    if (pc == NULL || param_text(pc, &code0) < 0 || *code0 == '\0') {
        if (r->version != 1)
            return reply_invalid(r, "imap_provider_code", "can't be blank");
        code0 = ""; /* the original looked the provider up: 404 */
    }
    struct rec prov;
    int rc = load_provider(r, code0, &prov);
    if (rc != 0) {
        rec_free(&prov);
        return rc;
    }
    char code[API_CODE_MAX + 1];
    snprintf(code, sizeof code, "%s", code0);
    const char *pairs[6];
    int n;
    char *mailboxes = NULL;
    rc = connection_input(r, &prov, 1, pairs, &n, &mailboxes);
    rec_free(&prov);
    if (rc != 0) {
        xfree(mailboxes);
        return rc;
    }
    rc = store_conn_create(r, r->partner.pid, code, pairs, n);
    xfree(mailboxes);
    if (rc == 0)
        return send_connection(r, 201, code);
    if (rc == -SIMAP_ECRYPTO)
        return reply_error(r, 500, "internal", NULL, "encryption failed");
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", "imap_provider_code",
                           "Validation failed: Imap provider has already been taken");
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", "imap_provider_code",
                           "Imap Provider not found for '%s'.", code);
    if (rc == -SIMAP_EAUTH)
        return reply_error(r, 401, "unauthorized", NULL, "invalid API key");
    return reply_unavailable(r);
}

static int connection_list(struct req *r)
{
    struct rec_list conns;
    if (store_conn_list(r, r->partner.pid, &conns) < 0)
        return reply_unavailable(r);
    struct json_gen *g = reply_gen_new();
    json_gen_array_open(g);
    for (size_t i = 0; i < conns.n; i++)
        view_connection(g, conns.id[i], &conns.rec[i], rec_get(&conns.rec[i], "auth"), r->version);
    json_gen_array_close(g);
    rec_list_free(&conns);
    return reply_gen(r, 200, g, NULL);
}

static int connection_show(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    return send_connection(r, 200, code);
}

static int connection_update(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    char *mailboxes = NULL;
    int rc = load_conn(r, code, &prov, &conn);
    if (rc != 0)
        goto out;
    const char *pairs[6];
    int n;
    if ((rc = connection_input(r, &prov, 0, pairs, &n, &mailboxes)) != 0)
        goto out;
    if (is_oauth2(&prov)) {
        /* The original validated the required connection fields on update. */
        const char *id = rec_get(&conn, "oauth2_client_id");
        const char *secret = rec_get(&conn, "oauth2_client_secret");
        for (int i = 0; i < n; i += 2) {
            if (strcmp(pairs[i], "oauth2_client_id") == 0)
                id = pairs[i + 1];
            else if (strcmp(pairs[i], "oauth2_client_secret") == 0)
                secret = pairs[i + 1];
        }
        if (*id == '\0' || *secret == '\0') {
            rc = reply_invalid(r, *id == '\0' ? "oauth2_client_id" : "oauth2_client_secret",
                               "can't be blank");
            goto out;
        }
    }
    rc = store_conn_update(r, r->partner.pid, code, pairs, n);
    /* Sent again after a failure part way, the same list finishes the copy. */
    int copying = rc == 0 && mailboxes != NULL;
    if (copying)
        rc = store_conn_propagate_mailboxes(r, r->partner.pid, code);
    if (rc == 0)
        rc = send_connection(r, 200, code);
    else if (rc == -SIMAP_ECRYPTO)
        rc = reply_error(r, 500, "internal", NULL, "encryption failed");
    else if (rc == -SIMAP_ENOTFOUND)
        rc = reply_error(r, 404, "not_found", NULL, "Connection not found.");
    else if (copying)
        rc = reply_error(r, 503, "unavailable", "mailboxes",
                         "the connection was updated, but not all of its users yet: send the "
                         "same update again");
    else
        rc = reply_unavailable(r);
out:
    xfree(mailboxes);
    rec_free(&prov);
    rec_free(&conn);
    return rc;
}

static int connection_delete(struct req *r)
{
    char code[CODE_BUF];
    route_code(r, code);
    struct rec prov, conn;
    int rc = load_conn(r, code, &prov, &conn);
    rec_free(&prov);
    rec_free(&conn);
    if (rc != 0)
        return rc;
    if (store_conn_delete(r, r->partner.pid, code) < 0)
        return reply_unavailable(r);
    return reply_no_content(r);
}

static int openapi(struct req *r)
{
    if (r->api->openapi == NULL)
        return reply_error(r, 404, "not_found", NULL,
                           "openapi.json was not found in SUPERIMAP_WEB_ROOT");
    return reply_json(r, 200, r->api->openapi, r->api->openapi_len, NULL);
}

const struct route routes_partner[] = {
    {"GET", "/api/{v}/openapi.json", AUTH_NONE, openapi},
    {"GET", "/api/{v}/connections", AUTH_PARTNER, connection_list},
    {"POST", "/api/{v}/connections", AUTH_PARTNER, connection_create},
    {"GET", "/api/{v}/connections/:code", AUTH_PARTNER, connection_show},
    {"PUT", "/api/{v}/connections/:code", AUTH_PARTNER, connection_update},
    {"PATCH", "/api/{v}/connections/:code", AUTH_PARTNER, connection_update},
    {"DELETE", "/api/{v}/connections/:code", AUTH_PARTNER, connection_delete},
    {"GET", "/api/{v}/connections/:code/users", AUTH_PARTNER, user_list},
    {"POST", "/api/{v}/connections/:code/users", AUTH_PARTNER, user_create},
    {"GET", "/api/{v}/connections/:code/users/:tag", AUTH_PARTNER, user_show},
    {"PUT", "/api/{v}/connections/:code/users/:tag", AUTH_PARTNER, user_update},
    {"PATCH", "/api/{v}/connections/:code/users/:tag", AUTH_PARTNER, user_update},
    {"DELETE", "/api/{v}/connections/:code/users/:tag", AUTH_PARTNER, user_delete},
    {NULL, NULL, AUTH_NONE, NULL},
};
