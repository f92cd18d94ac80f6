/*
 * core/schema: the key builders of core/schema.h, one line each, in the
 * order of its table.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/schema.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"

/* snprintf into out[cap]: the length, or -SIMAP_ETOOBIG when cut. */
static int __attribute__((format(printf, 3, 4))) build(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0) {
        out[0] = '\0';
        return -SIMAP_ETOOBIG;
    }
    return (size_t)n < cap ? n : -SIMAP_ETOOBIG;
}

/* ---- Global keys ---- */

int schema_key_provider(char out[SCHEMA_KEY_MAX], const char *code)
{
    return build(out, SCHEMA_KEY_MAX, "si:provider:%s", code);
}

int schema_key_partner(char out[SCHEMA_KEY_MAX], const char *pid)
{
    return build(out, SCHEMA_KEY_MAX, "si:partner:%s", pid);
}

int schema_key_admin(char out[SCHEMA_KEY_MAX], const char *lower)
{
    return build(out, SCHEMA_KEY_MAX, "si:admin:%s", lower);
}

int schema_key_admin_sessions(char out[SCHEMA_KEY_MAX], const char *lower)
{
    return build(out, SCHEMA_KEY_MAX, "si:admin:%s:sessions", lower);
}

int schema_key_admin_session(char out[SCHEMA_KEY_MAX], const char *sha256_hex)
{
    return build(out, SCHEMA_KEY_MAX, "si:asess:%s", sha256_hex);
}

int schema_key_admin_fail(char out[SCHEMA_KEY_MAX], const char *lower)
{
    return build(out, SCHEMA_KEY_MAX, "si:admin_fail:%s", lower);
}

int schema_key_apikey(char out[SCHEMA_KEY_MAX], const char *sha256_hex)
{
    return build(out, SCHEMA_KEY_MAX, "si:apikey:%s", sha256_hex);
}

int schema_key_ratelimit(char out[SCHEMA_KEY_MAX], const char *sha256_hex)
{
    return build(out, SCHEMA_KEY_MAX, "si:rl:%s", sha256_hex);
}

int schema_key_link(char out[SCHEMA_KEY_MAX], const char *sig)
{
    return build(out, SCHEMA_KEY_MAX, "si:link:%s", sig);
}

int schema_key_connect(char out[SCHEMA_KEY_MAX], const char *state)
{
    return build(out, SCHEMA_KEY_MAX, "si:connect:%s", state);
}

int schema_key_connect_try(char out[SCHEMA_KEY_MAX], const char *uid)
{
    return build(out, SCHEMA_KEY_MAX, "si:connect_try:%s", uid);
}

int schema_key_connect_browser(char out[SCHEMA_KEY_MAX], const char *sha256_hex)
{
    return build(out, SCHEMA_KEY_MAX, "si:connect_browser:%s", sha256_hex);
}

int schema_key_partner_conns(char out[SCHEMA_KEY_MAX], const char *pid)
{
    return build(out, SCHEMA_KEY_MAX, "si:partner:%s:conns", pid);
}

int schema_key_conn(char out[SCHEMA_KEY_MAX], const char *pid, const char *code)
{
    return build(out, SCHEMA_KEY_MAX, "si:conn:%s:%s", pid, code);
}

int schema_key_conn_users(char out[SCHEMA_KEY_MAX], const char *pid, const char *code)
{
    return build(out, SCHEMA_KEY_MAX, "si:conn:%s:%s:users", pid, code);
}

int schema_key_sort(char out[SCHEMA_KEY_MAX], const char *token)
{
    return build(out, SCHEMA_KEY_MAX, "si:sort:%s", token);
}

int schema_key_tag(char out[SCHEMA_KEY_MAX], const char *pid, const char *code, const char *ltag)
{
    return build(out, SCHEMA_KEY_MAX, "si:tag:%s:%s:%s", pid, code, ltag);
}

int schema_key_email(char out[SCHEMA_KEY_MAX], const char *pid, const char *code,
                     const char *lemail)
{
    return build(out, SCHEMA_KEY_MAX, "si:email:%s:%s:%s", pid, code, lemail);
}

int schema_key_node(char out[SCHEMA_KEY_MAX], const char *node_id)
{
    return build(out, SCHEMA_KEY_MAX, "si:node:%s", node_id);
}

int schema_key_role(char out[SCHEMA_KEY_MAX], const char *role)
{
    return build(out, SCHEMA_KEY_MAX, "si:%ss", role);
}

int schema_key_role_epoch(char out[SCHEMA_KEY_MAX], const char *role)
{
    return build(out, SCHEMA_KEY_MAX, "si:%s:epoch", role);
}

int schema_key_log(char out[SCHEMA_KEY_MAX], const char *pid)
{
    return build(out, SCHEMA_KEY_MAX, "si:log:%s", pid);
}

int schema_key_stat(char out[SCHEMA_KEY_MAX], int64_t minute)
{
    return build(out, SCHEMA_KEY_MAX, "si:stat:%" PRId64, minute);
}

int schema_key_circuit(char out[SCHEMA_KEY_MAX], const char *sha256_hex)
{
    return build(out, SCHEMA_KEY_MAX, "si:circuit:%s", sha256_hex);
}

/* ---- Keys of a shard ---- */

int schema_key_user(char out[SCHEMA_KEY_MAX], uint32_t k, const char *uid)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:user:%s", k, uid);
}

int schema_key_tracers(char out[SCHEMA_KEY_MAX], const char *code)
{
    return build(out, SCHEMA_KEY_MAX, "si:tracers:%s", code);
}

int schema_key_tracer(char out[SCHEMA_KEY_MAX], uint32_t k, const char *id)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:tracer:%s", k, id);
}

void schema_key_tracer_users(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:tracer_users", k);
}

int schema_key_cur(char out[SCHEMA_KEY_MAX], uint32_t k, const char *uid)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:cur:%s", k, uid);
}

int schema_key_lease(char out[SCHEMA_KEY_MAX], uint32_t k, const char *uid)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:lease:%s", k, uid);
}

int schema_key_alive(char out[SCHEMA_KEY_MAX], uint32_t k, const char *token)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:alive:%s", k, token);
}

int schema_key_ready(char out[SCHEMA_KEY_MAX], uint32_t k, const char *pid)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:ready:%s", k, pid);
}

int schema_key_event(char out[SCHEMA_KEY_MAX], uint32_t k, const char *eid)
{
    return build(out, SCHEMA_KEY_MAX, "si:{%" PRIu32 "}:evt:%s", k, eid);
}

/* The longest of these is 30 bytes with k = UINT32_MAX: they cannot be cut. */

void schema_key_shard_prefix(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:", k);
}

void schema_key_shard_users(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:users", k);
}

void schema_key_reauth(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:reauth", k);
}

void schema_key_count(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:count", k);
}

void schema_key_owner(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:owner", k);
}

void schema_key_ready_partners(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:ready_partners", k);
}

void schema_key_inflight(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:inflight", k);
}

void schema_key_retry(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:retry", k);
}

void schema_key_dead(char out[SCHEMA_SHARD_KEY_MAX], uint32_t k)
{
    build(out, SCHEMA_SHARD_KEY_MAX, "si:{%" PRIu32 "}:dead", k);
}

/* ---- Associated data of encrypted fields ---- */

int schema_aad_partner(char out[SCHEMA_KEY_MAX], const char *pid, const char *field)
{
    return build(out, SCHEMA_KEY_MAX, "si:partner:%s:%s", pid, field);
}

int schema_aad_conn_secret(char out[SCHEMA_KEY_MAX], const char *pid, const char *code)
{
    return build(out, SCHEMA_KEY_MAX, "si:conn:%s:%s:oauth2_client_secret", pid, code);
}

int schema_aad_user_secret(char out[SCHEMA_KEY_MAX], const char *uid)
{
    return build(out, SCHEMA_KEY_MAX, "si:user:%s:secret", uid);
}

int schema_aad_user_access_token(char out[SCHEMA_KEY_MAX], const char *uid)
{
    return build(out, SCHEMA_KEY_MAX, "si:user:%s:oauth2_access_token", uid);
}

int schema_aad_event(char out[SCHEMA_KEY_MAX], const char *eid)
{
    return build(out, SCHEMA_KEY_MAX, "si:evt:%s", eid);
}

/* ---- Ids ---- */

int schema_event_uid(const char *eid, char uid[SCHEMA_UID_LEN + 1])
{
    uid[0] = '\0';
    if (strncmp(eid, "test.", 5) == 0 || strlen(eid) < SCHEMA_UID_LEN)
        return 0;
    memcpy(uid, eid, SCHEMA_UID_LEN);
    uid[SCHEMA_UID_LEN] = '\0';
    return 1;
}
