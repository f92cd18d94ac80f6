/*
 * cmd/api/store: the api's Redis access on the worker thread's blocking
 * connection (core/rsync): commands, scripts, hashes read whole (see
 * store.h). The data operations built on them are in store_*.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/store_impl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cmd/api/api.h"
#include "core/err.h"
#include "core/hrw.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/time.h"

static void log_redis_failure(struct req *r, const char *what)
{
    log_warn("api redis command failed cmd=%s err=\"%s\"", what, rsync_errstr(r->rs));
}

struct redisReply *store_cmd(struct req *r, const char *fmt, ...)
{
    if (r->rs == NULL)
        return NULL;
    /* rsync has no va_list form: format through hiredis' own formatter. */
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    /* Split the RESP array back into an argument vector. */
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, cmd, (size_t)len);
    void *parsed = NULL;
    redisReply *out = NULL;
    if (redisReaderGetReply(rd, &parsed) == REDIS_OK && parsed != NULL) {
        redisReply *arr = parsed;
        int argc = (int)arr->elements;
        const char **argv = xcalloc((size_t)argc + 1, sizeof *argv);
        size_t *argvlen = xcalloc((size_t)argc + 1, sizeof *argvlen);
        for (int i = 0; i < argc; i++) {
            argv[i] = arr->element[i]->str;
            argvlen[i] = arr->element[i]->len;
        }
        out = rsync_command_argv(r->rs, argc, argv, argvlen);
        if (out == NULL)
            log_redis_failure(r, argc > 0 ? argv[0] : "?");
        xfree(argv);
        xfree(argvlen);
        freeReplyObject(parsed);
    }
    redisReaderFree(rd);
    redisFreeCommand(cmd);
    return out;
}

struct redisReply *store_argv(struct req *r, int argc, const char **argv, const size_t *argvlen)
{
    if (r->rs == NULL)
        return NULL;
    redisReply *rep = rsync_command_argv(r->rs, argc, argv, argvlen);
    if (rep == NULL)
        log_redis_failure(r, argc > 0 ? argv[0] : "?");
    return rep;
}

struct redisReply *store_script(struct req *r, const char *name, int nkeys, int argc,
                                const char **argv, const size_t *argvlen)
{
    if (r->rs == NULL)
        return NULL;
    redisReply *rep = rsync_script(r->rs, name, nkeys, argc, argv, argvlen);
    if (rep == NULL) {
        log_redis_failure(r, name);
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        log_error("api script failed script=%s err=\"%s\"", name, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

int store_hgetall(struct req *r, const char *key, struct rec *out)
{
    memset(out, 0, sizeof *out);
    redisReply *rep = store_cmd(r, "HGETALL %s", key);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -SIMAP_ECONN;
    }
    size_t n = rep->elements / 2;
    out->f = xcalloc(n + 1, sizeof *out->f);
    out->v = xcalloc(n + 1, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        out->f[i] = xstrndup(rep->element[2 * i]->str, rep->element[2 * i]->len);
        out->v[i] = xstrndup(rep->element[2 * i + 1]->str, rep->element[2 * i + 1]->len);
    }
    out->n = n;
    freeReplyObject(rep);
    return n == 0 ? -SIMAP_ENOTFOUND : 0;
}

uint32_t store_shard(const struct api *a, const char *uid)
{
    return hrw_shard(uid, a->shards);
}

int64_t store_time_ms(struct req *r)
{
    redisReply *t = store_cmd(r, "TIME");
    int64_t now = time_now_ms();
    if (t != NULL && t->type == REDIS_REPLY_ARRAY && t->elements == 2)
        now = strtoll(t->element[0]->str, NULL, 10) * 1000 +
              strtoll(t->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(t);
    return now;
}
