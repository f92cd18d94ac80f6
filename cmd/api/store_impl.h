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

/* The body of a user_connected or user_disconnected event eid (without
 * timestamp and signature, which the dispatcher adds) of the user with tag
 * of provider code (email: user_connected only), with the tag's SHA-1 hex
 * into sha1. A new string, or NULL when it cannot be made. */
char *store_user_event_payload(const char *type, const char *eid, const char *tag, const char *code,
                               const char *email, char sha1[41]);

/* payload sealed for the event hash of eid (AAD si:evt:<eid>): a new
 * string, or NULL. */
char *store_seal_event(struct req *r, const char *eid, const char *payload);

/* The shard of a user id. */
uint32_t store_shard(const struct api *a, const char *uid);

#endif
