/*
 * cmd/api/store_users: a partner's connections (si:conn:<pid>:<code>) and
 * their users (si:{k}:user:<uid> and the tag, email and per-connection
 * indexes), through scripts/lua/connection_*.lua and user_*.lua. Secrets
 * (passwords, refresh tokens, client secrets) are sealed here, never
 * returned.
 *
 * Every key is built from the partner id given, so one partner's call
 * cannot name another's data. A user's write that meets a concurrent
 * change ("retry" from its script) reads the user again and retries, a few
 * times. A write that connects or disconnects a user queues its
 * user_connected / user_disconnected event in the same script (the payload
 * made and sealed here), so the event cannot be lost between two calls.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/store_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/api/api.h"
#include "core/keys.h"
#include "core/crypto.h"
#include "core/err.h"

#define DELETE_BATCH  200
#define MAILBOX_CHUNK 500 /* users per connection_mailboxes.lua call */
#define WRITE_RETRIES 8
#define SORT_BATCH    1000 /* users read per round trip when ordering by email */
#define SORT_TTL_S    600  /* an email-ordered list outlives its request by no more */

/* ---- Connections ---- */

int store_conn_get(struct req *r, const char *pid, const char *code, struct rec *out)
{
    char key[SCHEMA_KEY_MAX];
    memset(out, 0, sizeof *out);
    if (schema_key_conn(key, pid, code) < 0)
        return -SIMAP_ENOTFOUND;
    int rc = store_hgetall(r, key, out);
    if (rc == 0 && strcmp(rec_get(out, "deleting"), "1") == 0)
        rc = -SIMAP_ENOTFOUND;
    return rc;
}

int store_conn_list(struct req *r, const char *pid, struct rec_list *out)
{
    memset(out, 0, sizeof *out);
    char key[SCHEMA_KEY_MAX];
    if (schema_key_partner_conns(key, pid) < 0)
        return -SIMAP_EINVAL;
    redisReply *codes = store_cmd(r, "SORT %s ALPHA", key);
    if (codes == NULL || codes->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(codes);
        return -SIMAP_ECONN;
    }
    int rc = 0;
    for (size_t i = 0; i < codes->elements && rc == 0; i++) {
        const char *code = codes->element[i]->str;
        struct rec prov, conn;
        int a = store_provider_get(r, code, &prov);
        int b = store_conn_get(r, pid, code, &conn);
        if (a == -SIMAP_ECONN || b == -SIMAP_ECONN) {
            rc = -SIMAP_ECONN;
        } else if (b == 0) {
            int oauth2 = strcmp(rec_get(&prov, "auth"), "oauth2") == 0;
            rec_add(&conn, "auth", oauth2 ? "oauth2" : "plain");
            rec_list_add(out, code, 0, &conn);
            memset(&conn, 0, sizeof conn);
        }
        rec_free(&prov);
        rec_free(&conn);
    }
    freeReplyObject(codes);
    if (rc < 0)
        rec_list_free(out);
    return rc;
}

/* pairs with the value of oauth2_client_secret sealed ("" stays ""), in
 * sealed[] (xfree() each non-NULL), and what the connection's scripts take. */
static int seal_conn_pairs(struct req *r, const char *pid, const char *code,
                           const char *const *pairs, int n, const char **out, char **sealed)
{
    *sealed = NULL;
    for (int i = 0; i + 1 < n; i += 2) {
        out[i] = pairs[i];
        out[i + 1] = pairs[i + 1];
        if (strcmp(pairs[i], "oauth2_client_secret") != 0)
            continue;
        if ((*sealed = keys_seal_conn_secret(r->api->keys, pid, code, pairs[i + 1])) == NULL)
            return -SIMAP_ECRYPTO;
        out[i + 1] = *sealed;
    }
    return 0;
}

int store_conn_create(struct req *r, const char *pid, const char *code, const char *const *pairs,
                      int n)
{
    if (n > 6)
        return -SIMAP_EINVAL;
    char kprov[SCHEMA_KEY_MAX], kconn[SCHEMA_KEY_MAX], kconns[SCHEMA_KEY_MAX],
        kpartner[SCHEMA_KEY_MAX];
    if (schema_key_provider(kprov, code) < 0 || schema_key_conn(kconn, pid, code) < 0 ||
        schema_key_partner_conns(kconns, pid) < 0 || schema_key_partner(kpartner, pid) < 0)
        return -SIMAP_EINVAL;
    const char *argv[11] = {kprov, kconn, kconns, kpartner, code};
    char *sealed;
    int rc = seal_conn_pairs(r, pid, code, pairs, n, argv + 5, &sealed);
    if (rc < 0) {
        xfree(sealed);
        return rc;
    }
    redisReply *rep = store_script(r, "connection_create", 4, 5 + n, argv, NULL);
    xfree(sealed);
    if (rep == NULL)
        return -SIMAP_ECONN;
    char res[32];
    snprintf(res, sizeof res, "%s", rep->str ? rep->str : "");
    freeReplyObject(rep);
    if (strcmp(res, "ok") == 0)
        return 0;
    if (strcmp(res, "exists") == 0)
        return -SIMAP_ESTATE;
    if (strcmp(res, "no_provider") == 0)
        return -SIMAP_ENOTFOUND;
    return -SIMAP_EAUTH;
}

int store_conn_update(struct req *r, const char *pid, const char *code, const char *const *pairs,
                      int n)
{
    if (n > 6)
        return -SIMAP_EINVAL;
    char kconn[SCHEMA_KEY_MAX];
    if (schema_key_conn(kconn, pid, code) < 0)
        return -SIMAP_ENOTFOUND;
    const char *argv[7] = {kconn};
    char *sealed;
    int rc = seal_conn_pairs(r, pid, code, pairs, n, argv + 1, &sealed);
    if (rc < 0) {
        xfree(sealed);
        return rc;
    }
    redisReply *rep = store_script(r, "connection_update", 1, 1 + n, argv, NULL);
    xfree(sealed);
    if (rep == NULL)
        return -SIMAP_ECONN;
    int ok = rep->str != NULL && strcmp(rep->str, "ok") == 0;
    freeReplyObject(rep);
    return ok ? 0 : -SIMAP_ENOTFOUND;
}

/* The uid of a member of si:conn:<pid>:<code>:users ("<lower tag>\x1f<uid>")
 * or of si:sort:<token> (the same after the email): what follows the last
 * \x1f (tags and emails hold no control characters). */
static const char *member_uid(const char *member)
{
    const char *sep = strrchr(member, '\x1f');
    return sep ? sep + 1 : "";
}

/* One connection_mailboxes.lua over the users of page (zset members).
 * 0, or -SIMAP_ENOTFOUND (the connection is gone), -SIMAP_ECONN. */
static int mailboxes_chunk(struct req *r, const char *pid, const char *kconn, const char *code,
                           const redisReply *page)
{
    size_t n = page->elements;
    const char **argv = xcalloc(2 + 2 * n + 3 + 2 * n, sizeof *argv);
    char(*keys)[SCHEMA_KEY_MAX] = xcalloc(2 * n + 1, sizeof *keys);
    char(*ks)[16] = xcalloc(n + 1, sizeof *ks);
    size_t a = 0;
    argv[a++] = kconn;
    argv[a++] = SCHEMA_KEY_CHANGES;
    for (size_t i = 0; i < n; i++) {
        const char *uid = member_uid(page->element[i]->str);
        uint32_t k = store_shard(r->api, uid);
        schema_key_user(keys[2 * i], k, uid);
        schema_key_shard_users(keys[2 * i + 1], k);
        argv[a++] = keys[2 * i];
        argv[a++] = keys[2 * i + 1];
        snprintf(ks[i], sizeof ks[i], "%" PRIu32, k);
    }
    int key_count = (int)a;
    char sn[24];
    snprintf(sn, sizeof sn, "%zu", n);
    argv[a++] = pid;
    argv[a++] = code;
    argv[a++] = sn;
    for (size_t i = 0; i < n; i++) {
        argv[a++] = member_uid(page->element[i]->str);
        argv[a++] = ks[i];
    }
    redisReply *rep = store_script(r, "connection_mailboxes", key_count, (int)a, argv, NULL);
    xfree(ks);
    xfree(keys);
    xfree(argv);
    int rc = -SIMAP_ECONN;
    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->str != NULL)
        rc = strcmp(rep->element[0]->str, "ok") == 0 ? 0 : -SIMAP_ENOTFOUND;
    freeReplyObject(rep);
    return rc;
}

int store_conn_propagate_mailboxes(struct req *r, const char *pid, const char *code)
{
    char kconn[SCHEMA_KEY_MAX], kusers[SCHEMA_KEY_MAX];
    if (schema_key_conn(kconn, pid, code) < 0 || schema_key_conn_users(kusers, pid, code) < 0)
        return -SIMAP_ENOTFOUND;
    char *start = xstrdup("-");
    int rc = 0;
    for (;;) {
        redisReply *page =
            store_cmd(r, "ZRANGEBYLEX %s %s + LIMIT 0 %d", kusers, start, MAILBOX_CHUNK);
        if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(page);
            rc = -SIMAP_ECONN;
            break;
        }
        size_t n = page->elements;
        if (n > 0)
            rc = mailboxes_chunk(r, pid, kconn, code, page);
        if (rc == 0 && n == MAILBOX_CHUNK) {
            /* The next chunk starts after this one's last member. */
            const char *last = page->element[n - 1]->str;
            xfree(start);
            start = xmalloc(strlen(last) + 2);
            start[0] = '(';
            memcpy(start + 1, last, strlen(last) + 1);
        }
        freeReplyObject(page);
        if (rc < 0 || n < MAILBOX_CHUNK)
            break;
    }
    xfree(start);
    return rc;
}

/* Deletes the hashes of events connection_delete removed from the queues
 * (ids from index first of rep's elements). */
static void delete_event_hashes(struct req *r, redisReply *rep, size_t first)
{
    for (size_t i = first; i < rep->elements; i++) {
        const char *id = rep->element[i]->str;
        char uid[SCHEMA_UID_LEN + 1];
        snprintf(uid, sizeof uid, "%s", id);
        char key[SCHEMA_KEY_MAX];
        if (schema_key_event(key, store_shard(r->api, uid), id) >= 0)
            freeReplyObject(store_cmd(r, "UNLINK %s", key));
    }
}

/*
 * One batch of connection_delete.lua over the users of page. KEYS: the
 * connection, its users zset, the partner's connection set, the provider,
 * si:changes, then user, cur and lease of each user, then the users set,
 * ready list of the partner, ready_partners, retry, inflight and dead of
 * each shard met. ARGV: pid, code, user count, shard count, uid and member
 * of each user, each shard. Returns the script's reply or NULL.
 */
static redisReply *delete_batch(struct req *r, const char *pid, const char *code,
                                const char *const fixed[4], const redisReply *page)
{
    size_t n = page->elements;
    uint32_t *shards = xcalloc(n + 1, sizeof *shards);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = store_shard(r->api, member_uid(page->element[i]->str));
        size_t s;
        for (s = 0; s < m && shards[s] != k; s++)
            ;
        if (s == m)
            shards[m++] = k;
    }
    size_t nkeys = 5 + 3 * n + 6 * m;
    const char **argv = xcalloc(nkeys + 4 + 2 * n + m + 1, sizeof *argv);
    char(*owned)[SCHEMA_KEY_MAX] = xcalloc(3 * n + 6 * m + 1, sizeof *owned);
    char(*ks)[16] = xcalloc(m + 1, sizeof *ks);
    size_t no = 0, a = 0;
    for (int i = 0; i < 4; i++)
        argv[a++] = fixed[i];
    argv[a++] = SCHEMA_KEY_CHANGES;
    for (size_t i = 0; i < n; i++) {
        const char *uid = member_uid(page->element[i]->str);
        uint32_t k = store_shard(r->api, uid);
        schema_key_user(owned[no], k, uid);
        argv[a++] = owned[no++];
        schema_key_cur(owned[no], k, uid);
        argv[a++] = owned[no++];
        schema_key_lease(owned[no], k, uid);
        argv[a++] = owned[no++];
    }
    for (size_t s = 0; s < m; s++) {
        uint32_t k = shards[s];
        schema_key_shard_users(owned[no], k);
        argv[a++] = owned[no++];
        schema_key_ready(owned[no], k, pid);
        argv[a++] = owned[no++];
        schema_key_ready_partners(owned[no], k);
        argv[a++] = owned[no++];
        schema_key_retry(owned[no], k);
        argv[a++] = owned[no++];
        schema_key_inflight(owned[no], k);
        argv[a++] = owned[no++];
        schema_key_dead(owned[no], k);
        argv[a++] = owned[no++];
    }
    int key_count = (int)a;
    char sn[24], sm[24];
    snprintf(sn, sizeof sn, "%zu", n);
    snprintf(sm, sizeof sm, "%zu", m);
    argv[a++] = pid;
    argv[a++] = code;
    argv[a++] = sn;
    argv[a++] = sm;
    for (size_t i = 0; i < n; i++) {
        argv[a++] = member_uid(page->element[i]->str);
        argv[a++] = page->element[i]->str;
    }
    for (size_t s = 0; s < m; s++) {
        snprintf(ks[s], sizeof ks[s], "%u", shards[s]);
        argv[a++] = ks[s];
    }
    redisReply *rep = store_script(r, "connection_delete", key_count, (int)a, argv, NULL);
    xfree(ks);
    xfree(owned);
    xfree(argv);
    xfree(shards);
    return rep;
}

int store_conn_delete(struct req *r, const char *pid, const char *code)
{
    char kconn[SCHEMA_KEY_MAX], kusers[SCHEMA_KEY_MAX], kconns[SCHEMA_KEY_MAX],
        kprov[SCHEMA_KEY_MAX];
    if (schema_key_conn(kconn, pid, code) < 0 || schema_key_conn_users(kusers, pid, code) < 0 ||
        schema_key_partner_conns(kconns, pid) < 0 || schema_key_provider(kprov, code) < 0)
        return -SIMAP_EINVAL;
    const char *const fixed[4] = {kconn, kusers, kconns, kprov};
    for (int round = 0; round < 1000000; round++) {
        redisReply *page = store_cmd(r, "ZRANGE %s 0 %d", kusers, DELETE_BATCH - 1);
        if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(page);
            return -SIMAP_ECONN;
        }
        redisReply *rep = delete_batch(r, pid, code, fixed, page);
        freeReplyObject(page);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
            freeReplyObject(rep);
            return -SIMAP_ECONN;
        }
        const char *status = rep->element[0]->str;
        int done = strcmp(status, "done") == 0 || strcmp(status, "missing") == 0;
        delete_event_hashes(r, rep, 1);
        freeReplyObject(rep);
        if (done)
            return 0;
    }
    return -SIMAP_ECONN;
}

/* ---- Users: reading ---- */

int store_user_get(struct req *r, const char *pid, const char *code, const char *uid,
                   struct rec *out)
{
    memset(out, 0, sizeof *out);
    if (strlen(uid) != SCHEMA_UID_LEN)
        return -SIMAP_ENOTFOUND;
    char key[SCHEMA_KEY_MAX];
    schema_key_user(key, store_shard(r->api, uid), uid);
    int rc = store_hgetall(r, key, out);
    if (rc < 0)
        return rc;
    if (strcmp(rec_get(out, "pid"), pid) != 0 || strcmp(rec_get(out, "code"), code) != 0) {
        rec_free(out);
        return -SIMAP_ENOTFOUND;
    }
    return 0;
}

/* ASCII lower case copy of s (xfree() it): tags and emails are unique
 * case-insensitively, their index keys hold them so. */
static char *lower(const char *s)
{
    return params_ascii_lower(xstrdup(s));
}

int store_user_find(struct req *r, const char *pid, const char *code, const char *tag,
                    struct rec *out)
{
    memset(out, 0, sizeof *out);
    char *ltag = lower(tag);
    char key[SCHEMA_KEY_MAX], zkey[SCHEMA_KEY_MAX];
    if (schema_key_tag(key, pid, code, ltag) < 0 || schema_key_conn_users(zkey, pid, code) < 0) {
        xfree(ltag);
        return -SIMAP_ENOTFOUND;
    }
    redisReply *rep = store_cmd(r, "GET %s", key);
    if (rep == NULL) {
        xfree(ltag);
        return -SIMAP_ECONN;
    }
    int rc = -SIMAP_ENOTFOUND;
    if (rep->type == REDIS_REPLY_STRING)
        rc = store_user_get(r, pid, code, rep->str, out);
    freeReplyObject(rep);
    if (rc != -SIMAP_ENOTFOUND) {
        xfree(ltag);
        return rc;
    }
    /* No live user: look among every user of the tag (archived ones). */
    size_t ln = strlen(ltag);
    char *min = xmalloc(ln + 3), *max = xmalloc(ln + 3);
    snprintf(min, ln + 3, "[%s\x1f", ltag);
    snprintf(max, ln + 3, "[%s\x20", ltag);
    rep = store_cmd(r, "ZRANGEBYLEX %s %s %s LIMIT 0 32", zkey, min, max);
    xfree(min);
    xfree(max);
    xfree(ltag);
    if (rep == NULL)
        return -SIMAP_ECONN;
    int64_t best = -1;
    rc = -SIMAP_ENOTFOUND;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const char *sep = strchr(rep->element[i]->str, '\x1f');
        struct rec cand;
        if (sep == NULL || store_user_get(r, pid, code, sep + 1, &cand) != 0)
            continue;
        int64_t at = strtoll(rec_get(&cand, "updated_at"), NULL, 10);
        if (at > best) {
            if (rc == 0)
                rec_free(out);
            *out = cand;
            best = at;
            rc = 0;
        } else {
            rec_free(&cand);
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* A page of partner pid's users listed in zset zkey (members ending in
 * "\x1f<uid>"): see store_user_page(). */
static int page_of(struct req *r, const char *pid, const char *zkey, const char *after,
                   int64_t limit, struct rec_list *out, char **next)
{
    memset(out, 0, sizeof *out);
    *next = NULL;
    char *start;
    if (after == NULL) {
        start = xstrdup("-");
    } else {
        size_t n = strlen(after);
        start = xmalloc(n + 2);
        start[0] = '(';
        memcpy(start + 1, after, n + 1);
    }
    redisReply *page =
        store_cmd(r, "ZRANGEBYLEX %s %s + LIMIT 0 %lld", zkey, start, (long long)limit + 1);
    xfree(start);
    if (page == NULL || page->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(page);
        return -SIMAP_ECONN;
    }
    size_t n = page->elements > (size_t)limit ? (size_t)limit : page->elements;
    int more = page->elements > (size_t)limit;
    if (n == 0) {
        freeReplyObject(page);
        return 0;
    }
    static const char *const fields[] = {"tag",          "email",          "archived",
                                         "connected_at", "state",          "pid",
                                         "mailboxes",    "conn_mailboxes", "mailboxes_missing"};
    size_t nf = sizeof fields / sizeof fields[0];
    const char **argv = xcalloc(n + nf, sizeof *argv);
    char(*keys)[SCHEMA_KEY_MAX] = xcalloc(n, sizeof *keys);
    for (size_t i = 0; i < n; i++) {
        const char *uid = member_uid(page->element[i]->str);
        schema_key_user(keys[i], store_shard(r->api, uid), uid);
        argv[i] = keys[i];
    }
    for (size_t i = 0; i < nf; i++)
        argv[n + i] = fields[i];
    redisReply *users = store_script(r, "user_mget", (int)n, (int)(n + nf), argv, NULL);
    xfree(keys);
    xfree(argv);
    if (users == NULL || users->type != REDIS_REPLY_ARRAY || users->elements != n) {
        freeReplyObject(users);
        freeReplyObject(page);
        return -SIMAP_ECONN;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *row = users->element[i];
        if (row->type != REDIS_REPLY_ARRAY || row->elements != nf || row->element[5]->str == NULL ||
            strcmp(row->element[5]->str, pid) != 0)
            continue;
        struct rec u;
        memset(&u, 0, sizeof u);
        for (size_t j = 0; j < nf; j++)
            if (j != 5) /* pid: checked above, not shown */
                rec_add(&u, fields[j], row->element[j]->str ? row->element[j]->str : "");
        rec_list_add(out, page->element[i]->str, 0, &u);
    }
    if (more)
        *next = xstrndup(page->element[n - 1]->str, page->element[n - 1]->len);
    freeReplyObject(users);
    freeReplyObject(page);
    return 0;
}

int store_user_page(struct req *r, const char *pid, const char *code, const char *after,
                    int64_t limit, struct rec_list *out, char **next)
{
    char zkey[SCHEMA_KEY_MAX];
    if (schema_key_conn_users(zkey, pid, code) < 0) {
        memset(out, 0, sizeof *out);
        *next = NULL;
        return -SIMAP_EINVAL;
    }
    return page_of(r, pid, zkey, after, limit, out, next);
}

/* Adds the users of page to the email-ordered zset key. 0 or -SIMAP_ECONN. */
static int sort_add(struct req *r, const char *key, const struct rec_list *page)
{
    size_t argc = 2 + 2 * page->n;
    const char **argv = xcalloc(argc, sizeof *argv);
    char **members = xcalloc(page->n, sizeof *members);
    argv[0] = "ZADD";
    argv[1] = key;
    for (size_t i = 0; i < page->n; i++) {
        /* The original's ORDER BY email: NULLs last; then tag, then uid. */
        const char *email = rec_get(&page->rec[i], "email");
        char *lemail = lower(email);
        size_t len = 1 + strlen(lemail) + 1 + strlen(page->id[i]) + 1;
        members[i] = xmalloc(len);
        snprintf(members[i], len, "%c%s\x1f%s", *email ? '0' : '1', lemail, page->id[i]);
        xfree(lemail);
        argv[2 + 2 * i] = "0";
        argv[3 + 2 * i] = members[i];
    }
    redisReply *rep = store_argv(r, (int)argc, argv, NULL);
    int ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    for (size_t i = 0; i < page->n; i++)
        xfree(members[i]);
    xfree(members);
    xfree(argv);
    if (ok) {
        rep = store_cmd(r, "EXPIRE %s %d", key, SORT_TTL_S);
        ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
        freeReplyObject(rep);
    }
    return ok ? 0 : -SIMAP_ECONN;
}

int store_user_sort(struct req *r, const char *pid, const char *code, char key[SCHEMA_KEY_MAX])
{
    unsigned char rnd[12];
    char token[2 * sizeof rnd + 1];
    crypto_random(rnd, sizeof rnd);
    crypto_hex_encode(rnd, sizeof rnd, token);
    schema_key_sort(key, token);
    char *after = NULL;
    for (;;) {
        struct rec_list page;
        char *next;
        int rc = store_user_page(r, pid, code, after, SORT_BATCH, &page, &next);
        xfree(after);
        if (rc == 0 && page.n > 0)
            rc = sort_add(r, key, &page);
        rec_list_free(&page);
        if (rc < 0) {
            xfree(next);
            store_user_sort_drop(r, key);
            return rc;
        }
        if (next == NULL)
            return 0;
        after = next;
    }
}

int store_user_sorted_page(struct req *r, const char *pid, const char *key, const char *after,
                           int64_t limit, struct rec_list *out, char **next)
{
    return page_of(r, pid, key, after, limit, out, next);
}

void store_user_sort_drop(struct req *r, const char *key)
{
    freeReplyObject(store_cmd(r, "UNLINK %s", key));
}

/* ---- Users: writing ---- */

/* The field a script's "conflict" names, as a constant. */
static const char *conflict_field(const char *s)
{
    return s != NULL && strcmp(s, "tag") == 0 ? "tag" : "email";
}

/* Reads user uid again into *u after a write raced; 0 or its error. */
static int reread(struct req *r, const char *pid, const char *code, struct rec *u)
{
    char uid[SCHEMA_UID_LEN + 1];
    snprintf(uid, sizeof uid, "%s", rec_get(u, "uid"));
    rec_free(u);
    return store_user_get(r, pid, code, uid, u);
}

/* The keys every user write takes: the user, its shard's users set, its
 * tag and email index keys, and the shard number as text. */
struct user_keys {
    char user[SCHEMA_KEY_MAX], tag[SCHEMA_KEY_MAX], email[SCHEMA_KEY_MAX];
    char shard_users[SCHEMA_SHARD_KEY_MAX], k[16];
};

static int user_keys(struct req *r, const char *pid, const char *code, const char *uid,
                     const char *ltag, const char *lemail, struct user_keys *uk)
{
    uint32_t k = store_shard(r->api, uid);
    schema_key_shard_users(uk->shard_users, k);
    snprintf(uk->k, sizeof uk->k, "%u", k);
    if (schema_key_user(uk->user, k, uid) < 0 || schema_key_tag(uk->tag, pid, code, ltag) < 0 ||
        schema_key_email(uk->email, pid, code, lemail) < 0)
        return -SIMAP_EINVAL;
    return 0;
}

int store_user_create(struct req *r, const char *pid, const char *code, int oauth2,
                      const struct store_user_input *in, char uid[SCHEMA_UID_LEN + 1],
                      const char **field)
{
    *field = NULL;
    unsigned char raw[SCHEMA_UID_LEN / 2];
    crypto_random(raw, sizeof raw);
    crypto_hex_encode(raw, sizeof raw, uid);
    char *sealed = keys_seal_user(r->api->keys, uid, "secret", in->has_secret ? in->secret : "");
    if (sealed == NULL)
        return -SIMAP_ECRYPTO;
    char *ltag = lower(in->tag);
    char *lemail = lower(in->has_email ? in->email : "");
    struct user_keys uk;
    struct event_keys ek;
    char kconn[SCHEMA_KEY_MAX], kusers[SCHEMA_KEY_MAX], sha1[CRYPTO_SHA1_HEX_LEN + 1];
    char *event = NULL;
    int rc = user_keys(r, pid, code, uid, ltag, lemail, &uk);
    if (rc == 0 &&
        (schema_key_conn(kconn, pid, code) < 0 || schema_key_conn_users(kusers, pid, code) < 0))
        rc = -SIMAP_EINVAL;
    if (rc == 0)
        rc = store_event_keys(r, pid, uid, "connected", store_time_ms(r), &ek);
    if (rc == 0 && (event = store_user_event_sealed(r, "user_connected", ek.eid, in->tag, code,
                                                    in->has_email ? in->email : "", sha1)) == NULL)
        rc = -SIMAP_ECRYPTO;
    redisReply *rep = NULL;
    if (rc == 0) {
        const char *argv[] = {kconn,
                              kusers,
                              uk.tag,
                              uk.email,
                              uk.user,
                              uk.shard_users,
                              SCHEMA_KEY_CHANGES,
                              ek.partner,
                              ek.evt,
                              ek.ready,
                              ek.rp,
                              uid,
                              uk.k,
                              oauth2 ? "oauth2" : "plain",
                              in->tag,
                              in->has_email ? in->email : "",
                              in->has_username ? in->username : "",
                              sealed,
                              in->archived == 1 ? "1" : "0",
                              in->enable_tracer == 1 ? "1" : "0",
                              ltag,
                              pid,
                              code,
                              ek.now,
                              ek.eid,
                              sha1,
                              event,
                              in->has_mailboxes ? in->mailboxes : ""};
        rep = store_script(r, "user_create", 11, 28, argv, NULL);
        rc = rep == NULL ? -SIMAP_ECONN : 0;
    }
    keys_wipe_free(sealed);
    xfree(event);
    xfree(ltag);
    xfree(lemail);
    if (rc < 0 || rep == NULL)
        return rc < 0 ? rc : -SIMAP_ECONN;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        rc = -SIMAP_EPROTO;
    } else if (strcmp(rep->element[0]->str, "conflict") == 0) {
        *field = conflict_field(rep->elements > 1 ? rep->element[1]->str : NULL);
        rc = -SIMAP_ESTATE;
    } else if (strcmp(rep->element[0]->str, "ok") != 0) {
        rc = -SIMAP_ENOTFOUND;
    }
    freeReplyObject(rep);
    return rc;
}

int store_user_archive(struct req *r, const struct rec *u)
{
    const char *uid = rec_get(u, "uid");
    uint32_t k = store_shard(r->api, uid);
    char kuser[SCHEMA_KEY_MAX], kshard[SCHEMA_SHARD_KEY_MAX], ks[16];
    if (schema_key_user(kuser, k, uid) < 0)
        return -SIMAP_EINVAL;
    schema_key_shard_users(kshard, k);
    snprintf(ks, sizeof ks, "%u", k);
    const char *argv[] = {kuser, kshard, SCHEMA_KEY_CHANGES, uid, ks, "api"};
    redisReply *rep = store_script(r, "user_archive", 3, 6, argv, NULL);
    if (rep == NULL)
        return -SIMAP_ECONN;
    freeReplyObject(rep);
    return 0;
}

int store_user_restore(struct req *r, const char *pid, const char *code, struct rec *u,
                       const char **field)
{
    *field = NULL;
    for (int attempt = 0; attempt < WRITE_RETRIES; attempt++) {
        const char *uid = rec_get(u, "uid");
        char *ltag = lower(rec_get(u, "tag"));
        char *lemail = lower(rec_get(u, "email"));
        struct user_keys uk;
        int rc = user_keys(r, pid, code, uid, ltag, lemail, &uk);
        redisReply *rep = NULL;
        if (rc == 0) {
            const char *argv[] = {uk.user, uk.shard_users, SCHEMA_KEY_CHANGES,
                                  uk.tag,  uk.email,       uid,
                                  uk.k,    ltag,           lemail};
            rep = store_script(r, "user_restore", 5, 9, argv, NULL);
        }
        xfree(ltag);
        xfree(lemail);
        if (rc < 0)
            return rc;
        if (rep == NULL)
            return -SIMAP_ECONN;
        char res[32];
        snprintf(res, sizeof res, "%s",
                 rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING ? rep->str
                                                                                    : "");
        freeReplyObject(rep);
        if (strcmp(res, "ok") == 0 || strcmp(res, "live") == 0)
            return 0;
        if (strcmp(res, "conflict_tag") == 0 || strcmp(res, "conflict_email") == 0) {
            *field = strcmp(res, "conflict_tag") == 0 ? "tag" : "email";
            return -SIMAP_ESTATE;
        }
        if (strcmp(res, "missing") == 0)
            return -SIMAP_ENOTFOUND;
        /* retry: someone changed the user; read it again */
        if ((rc = reread(r, pid, code, u)) < 0)
            return rc;
    }
    return -SIMAP_ESTATE;
}

static const char *flag(int v)
{
    return v < 0 ? "-1" : v ? "1" : "0";
}

/* The user_connected and user_disconnected events an update of user uid
 * at now may make (user_update.lua stores the one of its transition, if
 * any), with the tag and email the user has after it. */
struct update_events {
    struct event_keys on, off;
    char sha1[CRYPTO_SHA1_HEX_LEN + 1];
    char *on_payload, *off_payload;
};

static int update_events(struct req *r, const char *pid, const char *code, const char *uid,
                         const char *tag, const char *email, struct update_events *ue)
{
    int64_t now = store_time_ms(r);
    if (store_event_keys(r, pid, uid, "connected", now, &ue->on) < 0 ||
        store_event_keys(r, pid, uid, "disconnected", now, &ue->off) < 0)
        return -SIMAP_EINVAL;
    ue->on_payload =
        store_user_event_sealed(r, "user_connected", ue->on.eid, tag, code, email, ue->sha1);
    ue->off_payload =
        store_user_event_sealed(r, "user_disconnected", ue->off.eid, tag, code, "", ue->sha1);
    return ue->on_payload != NULL && ue->off_payload != NULL ? 0 : -SIMAP_ECRYPTO;
}

/* One user_update.lua: 0, a -SIMAP_* code, or 1 when the user changed
 * meanwhile (read again into *u: try again). */
static int update_once(struct req *r, const char *pid, const char *code, int oauth2, struct rec *u,
                       const struct store_user_input *in, const char *sealed, const char **field)
{
    char kusers[SCHEMA_KEY_MAX];
    if (schema_key_conn_users(kusers, pid, code) < 0)
        return -SIMAP_EINVAL;
    char uid[SCHEMA_UID_LEN + 1];
    snprintf(uid, sizeof uid, "%s", rec_get(u, "uid"));
    const char *tag = in->has_tag ? in->tag : rec_get(u, "tag");
    const char *email = in->has_email ? in->email : rec_get(u, "email");
    char *ltag = lower(tag);
    char *lemail = lower(email);
    struct user_keys uk;
    struct update_events ue = {.on_payload = NULL, .off_payload = NULL};
    redisReply *rep = NULL;
    int rc = user_keys(r, pid, code, uid, ltag, lemail, &uk);
    if (rc == 0)
        rc = update_events(r, pid, code, uid, tag, email, &ue);
    if (rc == 0) {
        const char *argv[] = {uk.user,
                              uk.shard_users,
                              SCHEMA_KEY_CHANGES,
                              kusers,
                              uk.tag,
                              uk.email,
                              ue.on.partner,
                              ue.on.evt,
                              ue.off.evt,
                              ue.on.ready,
                              ue.on.rp,
                              uid,
                              uk.k,
                              oauth2 ? "oauth2" : "plain",
                              rec_get(u, "tag"),
                              rec_get(u, "email"),
                              in->has_tag ? "1" : "0",
                              in->has_tag ? in->tag : "",
                              in->has_email ? "1" : "0",
                              in->has_email ? in->email : "",
                              in->has_username ? "1" : "0",
                              in->has_username ? in->username : "",
                              in->has_secret ? "1" : "0",
                              sealed ? sealed : "",
                              flag(in->archived),
                              flag(in->enable_tracer),
                              ue.on.now,
                              ue.sha1,
                              ue.on_payload,
                              ue.off_payload,
                              in->has_mailboxes ? "1" : "0",
                              in->has_mailboxes ? in->mailboxes : ""};
        rep = store_script(r, "user_update", 11, 32, argv, NULL);
        if (rep == NULL)
            rc = -SIMAP_ECONN;
    }
    xfree(ue.on_payload);
    xfree(ue.off_payload);
    xfree(ltag);
    xfree(lemail);
    if (rc < 0)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        freeReplyObject(rep);
        return -SIMAP_EPROTO;
    }
    const char *res = rep->element[0]->str;
    if (strcmp(res, "ok") == 0) {
        rc = 0;
    } else if (strcmp(res, "conflict") == 0) {
        *field = conflict_field(rep->elements > 1 ? rep->element[1]->str : NULL);
        rc = -SIMAP_ESTATE;
    } else if (strcmp(res, "missing") == 0) {
        rc = -SIMAP_ENOTFOUND;
    } else {
        rc = 1;
    }
    freeReplyObject(rep);
    if (rc == 1 && (rc = reread(r, pid, code, u)) == 0)
        rc = 1;
    return rc;
}

int store_user_update(struct req *r, const char *pid, const char *code, int oauth2, struct rec *u,
                      const struct store_user_input *in, const char **field)
{
    *field = NULL;
    char *sealed = NULL;
    if (in->has_secret &&
        (sealed = keys_seal_user(r->api->keys, rec_get(u, "uid"), "secret", in->secret)) == NULL)
        return -SIMAP_ECRYPTO;
    int rc = 1;
    for (int attempt = 0; attempt < WRITE_RETRIES && rc == 1; attempt++)
        rc = update_once(r, pid, code, oauth2, u, in, sealed, field);
    keys_wipe_free(sealed);
    return rc == 1 ? -SIMAP_ESTATE : rc;
}
