/*
 * core/rsync: blocking Redis for worker threads, on a hiredis redisContext
 * with redisSetTimeout().
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/rsync.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/log.h"
#include "core/redis_url.h"
#include "core/scripts.h"
#include "core/sentinel.h"

#define DEFAULT_TIMEOUT_MS 5000

struct rsync {
    redisContext *c; /* NULL until connected, and after an I/O error */
    struct redis_addr addr;
    char desc[300]; /* address without the password, for logs and errors */
    struct timeval tv;
    int err;
    char errstr[256];
    int is_down_logged;   /* this outage has been logged */
    unsigned primary_gen; /* the announcement of rsync_primary_is() taken */
    int is_announced;     /* connect to addr without asking the sentinels, once */
};

/* The primary the process's loop connection found last (rsync_primary_is()),
 * for every thread's rsync. */
static pthread_mutex_t primary_mu = PTHREAD_MUTEX_INITIALIZER;
static char primary_host[256];
static int primary_port;
static atomic_uint primary_gen;

void rsync_primary_is(const char *host_port)
{
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL || colon == host_port || (size_t)(colon - host_port) >= sizeof primary_host)
        return;
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535)
        return;
    pthread_mutex_lock(&primary_mu);
    memcpy(primary_host, host_port, (size_t)(colon - host_port));
    primary_host[colon - host_port] = '\0';
    primary_port = port;
    atomic_fetch_add(&primary_gen, 1);
    pthread_mutex_unlock(&primary_mu);
}


static void set_error(struct rsync *rs, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct rsync *rs, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->errstr, sizeof rs->errstr, fmt, ap);
    va_end(ap);
    rs->err = code;
}

static void clear_error(struct rsync *rs)
{
    rs->err = 0;
    rs->errstr[0] = '\0';
}

static void discard(struct rsync *rs)
{
    if (rs->c != NULL)
        redisFree(rs->c);
    rs->c = NULL;
}

/* Logs the first failure of an outage only: every API thread has an rsync. */
static void note_down(struct rsync *rs)
{
    if (rs->is_down_logged)
        return;
    rs->is_down_logged = 1;
    char safe[256];
    log_safe(rs->errstr, safe, sizeof safe);
    if (rs->err == -SIMAP_EAUTH)
        log_error("redis authentication failed, wrong or missing password addr=%s err=\"%s\"",
                  rs->desc, safe);
    else
        log_warn("redis unavailable addr=%s err=\"%s\"", rs->desc, safe);
}

/* Classifies a failed context (NULL reply or failed connect); saved_errno is
 * errno right after the failing call. */
static int io_error_code(const redisContext *c, int saved_errno)
{
    if (c->err == REDIS_ERR_OTHER && strstr(c->errstr, "Invalid format") != NULL)
        return -SIMAP_EINVAL;
    if (c->err == REDIS_ERR_IO &&
        (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT))
        return -SIMAP_ETIMEDOUT;
    if (strstr(c->errstr, "timed out") != NULL ||
        strstr(c->errstr, "temporarily unavailable") != NULL)
        return -SIMAP_ETIMEDOUT;
    return -SIMAP_ECONN;
}

/* Sends one handshake command on c; returns 0 or an error already set. */
static int handshake(struct rsync *rs, redisContext *c, int is_auth, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    int saved = errno;
    va_end(ap);
    const char *what = is_auth ? "AUTH" : "SELECT";
    if (r == NULL) {
        set_error(rs, io_error_code(c, saved), "%s to %s: %s", what, rs->desc, c->errstr);
        return rs->err;
    }
    int ret = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        ret = is_auth ? -SIMAP_EAUTH : -SIMAP_EREPLY;
        set_error(rs, ret, "%s refused by %s: %s", what, rs->desc, r->str);
    }
    freeReplyObject(r);
    return ret;
}

/* ROLE on c: 0 when it is a primary, else an error already set (a failover
 * demoted it since the sentinels answered). */
static int check_primary(struct rsync *rs, redisContext *c)
{
    redisReply *r = redisCommand(c, "ROLE");
    int saved = errno;
    int ret = 0;
    if (r == NULL) {
        set_error(rs, io_error_code(c, saved), "ROLE to %s: %s", rs->desc, c->errstr);
        ret = rs->err;
    } else if (!sentinel_role_is_primary(r)) {
        set_error(rs, -SIMAP_ECONN, "%s is a replica now; asking the sentinels again", rs->desc);
        ret = rs->err;
    }
    if (r != NULL)
        freeReplyObject(r);
    return ret;
}

/* Takes a new announcement: when it names another primary, the connection
 * is dropped and the next one goes there without asking. */
static void take_announcement(struct rsync *rs)
{
    if (rs->addr.nsentinels == 0 || atomic_load(&primary_gen) == rs->primary_gen)
        return;
    char host[sizeof primary_host];
    pthread_mutex_lock(&primary_mu);
    rs->primary_gen = atomic_load(&primary_gen);
    memcpy(host, primary_host, sizeof host);
    int port = primary_port;
    pthread_mutex_unlock(&primary_mu);
    if (port == rs->addr.port && strcmp(host, rs->addr.host) == 0)
        return;
    if (rs->addr.port != 0)
        log_warn("redis primary moved from=%s:%d to=%s:%d", rs->addr.host, rs->addr.port, host,
                 port);
    discard(rs);
    snprintf(rs->addr.host, sizeof rs->addr.host, "%s", host);
    rs->addr.port = port;
    redis_addr_describe(&rs->addr, rs->desc, sizeof rs->desc);
    rs->is_announced = 1;
}

/* Makes sure rs->c is usable; returns 0 or an error already set. */
static int ensure_connected(struct rsync *rs)
{
    take_announcement(rs);
    if (rs->c != NULL) {
        /* Nothing may be readable on an idle connection: if something is,
         * it is the server's EOF (restart, idle timeout) or an error. */
        struct pollfd p = {.fd = rs->c->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 0)
            return 0;
        discard(rs);
    }
    if (rs->is_announced) {
        rs->is_announced = 0;
    } else if (rs->addr.nsentinels > 0) { /* asked again at every other connect */
        char err[512];
        int old_port = rs->addr.port;
        char old_host[sizeof rs->addr.host];
        memcpy(old_host, rs->addr.host, sizeof old_host);
        int ms = (int)(rs->tv.tv_sec * 1000 + rs->tv.tv_usec / 1000);
        if (sentinel_resolve(&rs->addr, ms, err, sizeof err) < 0) {
            set_error(rs, -SIMAP_ECONN, "no sentinel named the primary: %s", err);
            note_down(rs);
            return rs->err;
        }
        if (old_port != 0 && (old_port != rs->addr.port || strcmp(old_host, rs->addr.host) != 0))
            log_warn("redis primary moved from=%s:%d to=%s:%d", old_host, old_port, rs->addr.host,
                     rs->addr.port);
        redis_addr_describe(&rs->addr, rs->desc, sizeof rs->desc);
    }
    redisContext *c = rs->addr.is_unix
                          ? redisConnectUnixWithTimeout(rs->addr.path, rs->tv)
                          : redisConnectWithTimeout(rs->addr.host, rs->addr.port, rs->tv);
    int saved = errno;
    if (c == NULL) {
        set_error(rs, -SIMAP_ENOMEM, "cannot allocate a hiredis context");
        return rs->err;
    }
    int ret = 0;
    if (c->err) {
        set_error(rs, io_error_code(c, saved), "connect to %s: %s", rs->desc, c->errstr);
        ret = rs->err;
    } else if (redisSetTimeout(c, rs->tv) != REDIS_OK) {
        set_error(rs, -SIMAP_EIO, "setting the timeout on %s: %s", rs->desc, c->errstr);
        ret = rs->err;
    } else if (rs->addr.password[0] != '\0') {
        ret = handshake(rs, c, 1, "AUTH %s", rs->addr.password);
    }
    if (ret == 0 && rs->addr.db != 0)
        ret = handshake(rs, c, 0, "SELECT %d", rs->addr.db);
    if (ret == 0 && rs->addr.nsentinels > 0)
        ret = check_primary(rs, c);
    if (ret < 0) {
        redisFree(c);
        note_down(rs);
        return ret;
    }
    if (rs->is_down_logged)
        log_info("redis connected again addr=%s", rs->desc);
    rs->is_down_logged = 0;
    rs->c = c;
    return 0;
}

/* Turns the outcome of one hiredis call into the API's result. */
static redisReply *conclude(struct rsync *rs, redisReply *r, int saved_errno)
{
    if (r == NULL) {
        set_error(rs, io_error_code(rs->c, saved_errno), "%s: %s", rs->desc, rs->c->errstr);
        discard(rs);
        note_down(rs);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        set_error(rs, -SIMAP_EREPLY, "%s", r->str);
        if (rs->addr.nsentinels > 0 && sentinel_error_is_replica(r->str))
            discard(rs); /* demoted under us: the next call asks the sentinels */
    }
    return r;
}

struct rsync *rsync_new(const struct rsync_opts *opts)
{
    if (opts == NULL || opts->url == NULL)
        return NULL;
    struct redis_addr addr;
    char err[160];
    if (redis_url_parse(opts->url, opts->password, &addr, err, sizeof err) < 0) {
        log_error("bad redis url err=\"%s\"", err);
        return NULL;
    }
    if (opts->sentinel_password != NULL)
        snprintf(addr.sentinel_password, sizeof addr.sentinel_password, "%s",
                 opts->sentinel_password);
    struct rsync *rs = xcalloc(1, sizeof *rs);
    rs->addr = addr;
    redis_addr_describe(&rs->addr, rs->desc, sizeof rs->desc);
    int ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    rs->tv.tv_sec = ms / 1000;
    rs->tv.tv_usec = (ms % 1000) * 1000;
    return rs;
}

void rsync_free(struct rsync *rs)
{
    if (rs == NULL)
        return;
    discard(rs);
    xfree(rs);
}

struct redisReply *rsync_command(struct rsync *rs, const char *fmt, ...)
{
    if (rs == NULL || fmt == NULL)
        return NULL;
    clear_error(rs);
    if (ensure_connected(rs) < 0)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rs->c, fmt, ap);
    int saved = errno;
    va_end(ap);
    return conclude(rs, r, saved);
}

struct redisReply *rsync_command_argv(struct rsync *rs, int argc, const char **argv,
                                      const size_t *argvlen)
{
    if (rs == NULL)
        return NULL;
    clear_error(rs);
    if (argc <= 0 || argv == NULL) {
        set_error(rs, -SIMAP_EINVAL, "no command");
        return NULL;
    }
    if (ensure_connected(rs) < 0)
        return NULL;
    redisReply *r = redisCommandArgv(rs->c, argc, argv, argvlen);
    return conclude(rs, r, errno);
}

/* EVALSHA or EVAL (verb) of script, with its keys and arguments. */
static redisReply *eval(struct rsync *rs, const char *verb, const char *script, int nkeys, int argc,
                        const char **argv, const size_t *argvlen)
{
    struct script_argv a;
    script_argv_build(&a, verb, script, nkeys, argc, argv, argvlen);
    redisReply *r = redisCommandArgv(rs->c, a.n, a.v, a.l);
    int saved = errno;
    script_argv_done(&a);
    return conclude(rs, r, saved);
}

struct redisReply *rsync_script_source(struct rsync *rs, const struct script_source *src, int nkeys,
                                       int argc, const char **argv, const size_t *argvlen)
{
    if (rs == NULL)
        return NULL;
    clear_error(rs);
    if (src == NULL || src->body == NULL || argc < 0 || nkeys < 0 || nkeys > argc ||
        (argc > 0 && argv == NULL)) {
        set_error(rs, -SIMAP_EINVAL, "bad script arguments");
        return NULL;
    }
    char shabuf[SCRIPT_SHA_HEX_LEN + 1];
    const char *sha = script_sha(src);
    if (sha == NULL) {
        if (script_sha1_hex(src->body, shabuf) < 0) {
            set_error(rs, -SIMAP_ECRYPTO, "cannot compute SHA-1");
            return NULL;
        }
        sha = shabuf;
    }
    if (ensure_connected(rs) < 0)
        return NULL;
    redisReply *r = eval(rs, "EVALSHA", sha, nkeys, argc, argv, argvlen);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* Redis restarted or was flushed: it never ran the script. */
        freeReplyObject(r);
        clear_error(rs);
        r = eval(rs, "EVAL", src->body, nkeys, argc, argv, argvlen);
    }
    return r;
}

struct redisReply *rsync_script(struct rsync *rs, const char *name, int nkeys, int argc,
                                const char **argv, const size_t *argvlen)
{
    if (rs == NULL)
        return NULL;
    const struct script_source *src = script_find(name);
    if (src == NULL) {
        set_error(rs, -SIMAP_ENOTFOUND, "no script named %s", name ? name : "(null)");
        return NULL;
    }
    return rsync_script_source(rs, src, nkeys, argc, argv, argvlen);
}

int rsync_load_script_sources(struct rsync *rs, const struct script_source *srcs, size_t n)
{
    if (rs == NULL)
        return -SIMAP_EINVAL;
    clear_error(rs);
    for (size_t i = 0; i < n; i++) {
        if (srcs == NULL || srcs[i].name == NULL || srcs[i].body == NULL) {
            set_error(rs, -SIMAP_EINVAL, "bad script source");
            return rs->err;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char shabuf[SCRIPT_SHA_HEX_LEN + 1];
        const char *sha = script_sha(&srcs[i]);
        if (sha == NULL) {
            script_sha1_hex(srcs[i].body, shabuf);
            sha = shabuf;
        }
        if (ensure_connected(rs) < 0)
            return rs->err;
        redisReply *r = redisCommand(rs->c, "SCRIPT LOAD %s", srcs[i].body);
        int saved = errno;
        if (r == NULL) {
            conclude(rs, r, saved);
            return rs->err;
        }
        if (r->type == REDIS_REPLY_ERROR)
            set_error(rs, -SIMAP_EREPLY, "script %s: %s", srcs[i].name, r->str);
        else if (r->type != REDIS_REPLY_STRING || strcmp(r->str, sha) != 0)
            set_error(rs, -SIMAP_EREPLY, "script %s: SCRIPT LOAD returned %s, expected digest %s",
                      srcs[i].name, r->type == REDIS_REPLY_STRING ? r->str : "a non-string", sha);
        freeReplyObject(r);
        if (rs->err < 0)
            return rs->err;
    }
    return 0;
}

int rsync_load_scripts(struct rsync *rs)
{
    return rsync_load_script_sources(rs, script_sources, script_source_count);
}

int rsync_err(const struct rsync *rs)
{
    return rs->err;
}

const char *rsync_errstr(const struct rsync *rs)
{
    return rs->errstr;
}
