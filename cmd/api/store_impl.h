/*
 * cmd/api/store_impl.h: the Redis primitives the store_*.c files build on
 * (store.c), on the request's thread connection. Only the store includes
 * this: the rest of the api reaches Redis through store.h's operations.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_STORE_IMPL_H
#define CMD_API_STORE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/api/store.h"
#include "core/schema.h"

struct api;
struct redisReply;

/* Runs a command on the thread's connection (hiredis format). Returns the
 * reply (freeReplyObject() it) or NULL after logging; error replies are
 * returned as replies. */
struct redisReply *store_cmd(struct req *r, const char *fmt, ...);

/* As store_cmd() with an argument vector (argvlen NULL: strlen each). */
struct redisReply *store_argv(struct req *r, int argc, const char **argv, const size_t *argvlen);

/* Runs scripts/lua/<name>.lua with nkeys of the argc arguments as KEYS.
 * Returns the reply or NULL (connection failure, logged). An error reply is
 * logged at error level and returned as NULL too: scripts raise only on bugs. */
struct redisReply *store_script(struct req *r, const char *name, int nkeys, int argc,
                                const char **argv, const size_t *argvlen);

/* HGETALL key into *out. Returns 0, -SIMAP_ENOTFOUND (no such key; *out
 * empty) or -SIMAP_ECONN (Redis failed). rec_free() it in every case. */
int store_hgetall(struct req *r, const char *key, struct rec *out);

/* The keys of user uid's user_connected or user_disconnected event (what:
 * "connected" or "disconnected") at now ms: the event hash, the partner's
 * ready list, its shard's round robin, the user, the partner, the shard's
 * users set, the event's id <uid>.<what>.<now>, now and the shard as text. */
struct event_keys {
    char evt[SCHEMA_KEY_MAX], ready[SCHEMA_KEY_MAX], rp[SCHEMA_SHARD_KEY_MAX];
    char user[SCHEMA_KEY_MAX], partner[SCHEMA_KEY_MAX], users[SCHEMA_SHARD_KEY_MAX];
    char eid[128], now[24], k[16];
};

/* Fills *ek. 0, or -SIMAP_EINVAL when an id does not make a key. */
int store_event_keys(struct req *r, const char *pid, const char *uid, const char *what, int64_t now,
                     struct event_keys *ek);

/* The body of a user_connected or user_disconnected event eid (without
 * timestamp and signature, which the dispatcher adds) of the user with tag
 * of provider code (email: user_connected only), sealed for the event hash
 * of eid (AAD si:evt:<eid>), with the tag's SHA-1 hex into sha1; the script
 * that writes the user's transition stores it (prelude/queue.lua
 * user_event()). A new string (xfree() it), or NULL when it cannot be made. */
char *store_user_event_sealed(struct req *r, const char *type, const char *eid, const char *tag,
                              const char *code, const char *email, char sha1[41]);

/* The shard of a user id. */
uint32_t store_shard(const struct api *a, const char *uid);

#endif
