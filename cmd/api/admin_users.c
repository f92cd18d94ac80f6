/*
 * cmd/api/admin_users: /admin/api/admin-users, the dashboard's accounts
 * (admin_store.h): list, create (the bearer token makes the first one, as
 * does `superimap-api admin-user add`), disable, enable, delete. Disable
 * and delete end the account's sessions at once. Passwords are hashed here
 * with scrypt at SUPERIMAP_ADMIN_SCRYPT_LOG2N (core/crypto.h); neither they
 * nor their hashes are ever answered or logged.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/api.h"

#include <stdlib.h>
#include <string.h>

#include "cmd/api/admin_store.h"
#include "cmd/api/input.h"
#include "cmd/api/reply.h"
#include "cmd/api/views.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"

/* {"username","disabled","created_at","last_login_at"} of account a. */
static void view_admin(struct json_gen *g, const struct rec *a)
{
    json_gen_object_open(g);
    json_gen_key_str(g, "username", rec_get(a, "username"));
    json_gen_key_bool(g, "disabled", strcmp(rec_get(a, "disabled"), "1") == 0);
    view_time(g, "created_at", rec_get(a, "created_at"));
    view_time(g, "last_login_at", rec_get(a, "last_login_at"));
    json_gen_object_close(g);
}

/* {"admin_user": ...} of account lower, with status. */
static int reply_admin(struct req *r, int status, const char *lower)
{
    struct rec a;
    int rc = admin_store_get(r->rs, lower, &a);
    if (rc < 0) {
        rec_free(&a);
        return rc == -SIMAP_ENOTFOUND ? reply_error(r, 404, "not_found", NULL, "no such admin user")
                                      : reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key(g, "admin_user");
    view_admin(g, &a);
    json_gen_object_close(g);
    rec_free(&a);
    return reply_gen(r, status, g, NULL);
}

static int list(struct req *r)
{
    static const char *const known[] = {NULL};
    int rc = input_only_known(r, known);
    if (rc != 0)
        return rc;
    struct rec_list l;
    if (admin_store_list(r->rs, &l) < 0) {
        rec_list_free(&l);
        return reply_unavailable(r);
    }
    struct json_gen *g = reply_gen_new();
    json_gen_object_open(g);
    json_gen_key_array(g, "admin_users");
    for (size_t i = 0; i < l.n; i++)
        view_admin(g, &l.rec[i]);
    json_gen_array_close(g);
    json_gen_object_close(g);
    rec_list_free(&l);
    return reply_gen(r, 200, g, NULL);
}

static int create(struct req *r)
{
    static const char *const known[] = {"username", "password", NULL};
    const char *name, *password;
    int rc;
    if ((rc = input_only_known(r, known)) != 0 ||
        (rc = input_text(r, "username", ADMIN_NAME_MAX, &name)) != 0 ||
        (rc = input_secret(r, "password", ADMIN_PASSWORD_MAX, &password)) != 0)
        return rc;
    char lower[ADMIN_NAME_MAX + 1];
    if (name == NULL || !admin_name_lower(name, lower))
        return reply_invalid(r, "username", "must be 1 to 64 of A-Z a-z 0-9 . _ @ -");
    if (password == NULL || !admin_password_ok(strlen(password)))
        return reply_invalid(r, "password", "must be 12 to 1024 bytes");
    struct crypto_scrypt_params p = {.log2n = r->api->cfg->admin_scrypt_log2n, .r = 8, .p = 1};
    char *hash = crypto_password_hash(password, strlen(password), &p);
    if (hash == NULL)
        return reply_error(r, 500, "internal", NULL, "the password could not be hashed");
    rc = admin_store_create(r->rs, name, hash, time_now_ms());
    xfree(hash);
    if (rc == -SIMAP_ESTATE)
        return reply_error(r, 409, "conflict", "username", "an admin user named %s exists", lower);
    if (rc < 0)
        return reply_unavailable(r);
    log_info("admin user created user=%s by=%s", lower, r->admin);
    return reply_admin(r, 201, lower);
}

/* disable, enable or delete the account named by the path. */
static int change(struct req *r, const char *op)
{
    static const char *const known[] = {NULL};
    int rc = input_only_known(r, known);
    if (rc != 0)
        return rc;
    char lower[ADMIN_NAME_MAX + 1];
    if (!admin_name_lower(r->arg[0], lower))
        return reply_error(r, 404, "not_found", NULL, "no such admin user");
    rc = admin_store_change(r->rs, lower, op, time_now_ms());
    if (rc == -SIMAP_ENOTFOUND)
        return reply_error(r, 404, "not_found", NULL, "no such admin user");
    if (rc < 0)
        return reply_unavailable(r);
    log_info("admin user changed op=%s user=%s by=%s", op, lower, r->admin);
    return strcmp(op, "delete") == 0 ? reply_no_content(r) : reply_admin(r, 200, lower);
}

static int disable(struct req *r)
{
    return change(r, "disable");
}

static int enable(struct req *r)
{
    return change(r, "enable");
}

static int remove_admin(struct req *r)
{
    return change(r, "delete");
}

const struct route routes_admin_users[] = {
    {"GET", "/admin/api/admin-users", AUTH_ADMIN, list},
    {"POST", "/admin/api/admin-users", AUTH_ADMIN, create},
    {"POST", "/admin/api/admin-users/:name/disable", AUTH_ADMIN, disable},
    {"POST", "/admin/api/admin-users/:name/enable", AUTH_ADMIN, enable},
    {"DELETE", "/admin/api/admin-users/:name", AUTH_ADMIN, remove_admin},
    {NULL, NULL, AUTH_NONE, NULL},
};
