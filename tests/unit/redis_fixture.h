/*
 * tests/unit/redis_fixture.h: a private, real redis-server for unit tests of
 * the Redis clients. Header-only (static functions), so a test needs nothing
 * but its own file and libsuperimap.a.
 *
 * Each fixture makes its own directory with mkdtemp(), starts
 *
 *   redis-server --port 0 --unixsocket <dir>/redis.sock --save '' --appendonly no --dir <dir>
 *
 * (plus --requirepass when asked), with its output in <dir>/redis.log, and
 * PINGs it with a 5 s deadline. It stops the server by its PID (SIGTERM, then
 * SIGKILL after 5 s), waits for it, and removes the directory. The child also
 * gets PR_SET_PDEATHSIG, so a crashed test leaves no server behind.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_UNIT_REDIS_FIXTURE_H
#define TESTS_UNIT_REDIS_FIXTURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "core/rsync.h"
#include "core/scripts.h"

#define FIXTURE_FN static __attribute__((unused))

struct redis_fixture {
    pid_t pid;            /* 0 when not running */
    char dir[64];         /* private directory */
    char sock[128];       /* <dir>/redis.sock */
    char url[160];        /* unix://<dir>/redis.sock */
    char password[64];    /* requirepass, "" for none */
    const char *extra[8]; /* more arguments at the next spawn, NULL-terminated */
};

FIXTURE_FN double fixture_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

FIXTURE_FN void fixture_nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Connects a blocking client (authenticated when the server has a password),
 * with timeout_ms for connect and commands. Returns NULL if it cannot. */
FIXTURE_FN redisContext *redis_fixture_connect(const struct redis_fixture *fx, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectUnixWithTimeout(fx->sock, tv);
    if (c == NULL)
        return NULL;
    if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    if (fx->password[0] != '\0') {
        redisReply *r = redisCommand(c, "AUTH %s", fx->password);
        int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* Runs one command on a fresh client (3 s timeout). Returns the reply
 * (freeReplyObject() it) or NULL. */
FIXTURE_FN redisReply *redis_fixture_cmd(const struct redis_fixture *fx, const char *fmt, ...)
{
    redisContext *c = redis_fixture_connect(fx, 3000);
    if (c == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* Runs a command expected to answer with an integer; returns it, or -1. */
FIXTURE_FN long long redis_fixture_int(const struct redis_fixture *fx, const char *fmt, ...)
{
    redisContext *c = redis_fixture_connect(fx, 3000);
    if (c == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

/* Returns 1 once the server answers PING (any reply, NOAUTH included) within
 * timeout_s, 0 if it does not or its process exited. */
FIXTURE_FN int redis_fixture_wait_ready(struct redis_fixture *fx, double timeout_s)
{
    double deadline = fixture_now() + timeout_s;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    while (fixture_now() < deadline) {
        int status;
        if (fx->pid > 0 && waitpid(fx->pid, &status, WNOHANG) == fx->pid) {
            fx->pid = 0; /* exited: read <dir>/redis.log */
            return 0;
        }
        redisContext *c = redisConnectUnixWithTimeout(fx->sock, tv);
        if (c != NULL && !c->err) {
            redisSetTimeout(c, tv);
            redisReply *r = redisCommand(c, "PING");
            redisFree(c);
            if (r != NULL) {
                freeReplyObject(r);
                return 1;
            }
        } else if (c != NULL) {
            redisFree(c);
        }
        fixture_nap_ms(10);
    }
    return 0;
}

/* Starts redis-server in fx->dir on fx->sock. Returns 0 or -1. */
FIXTURE_FN int redis_fixture_spawn(struct redis_fixture *fx)
{
    char logpath[128];
    snprintf(logpath, sizeof logpath, "%s/redis.log", fx->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[24];
        int n = 0;
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--unixsocket";
        argv[n++] = fx->sock;
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = fx->dir;
        if (fx->password[0] != '\0') {
            argv[n++] = "--requirepass";
            argv[n++] = fx->password;
        }
        for (int i = 0; i < 7 && fx->extra[i] != NULL; i++)
            argv[n++] = fx->extra[i];
        argv[n] = NULL;
        execvp(argv[0], (char *const *)(void *)argv);
        _exit(127);
    }
    fx->pid = pid;
    if (!redis_fixture_wait_ready(fx, 5.0)) {
        fprintf(stderr,
                "redis_fixture: redis-server did not answer PING within 5 s "
                "(is the redis-server package installed? see %s)\n",
                logpath);
        if (fx->pid > 0) {
            kill(fx->pid, SIGKILL);
            waitpid(fx->pid, NULL, 0);
            fx->pid = 0;
        }
        return -1;
    }
    return 0;
}

/* Sends sig to the server and waits for it to exit (SIGKILL after 5 s). */
FIXTURE_FN void redis_fixture_kill(struct redis_fixture *fx, int sig)
{
    if (fx->pid <= 0)
        return;
    kill(fx->pid, sig);
    double deadline = fixture_now() + 5.0;
    for (;;) {
        pid_t w = waitpid(fx->pid, NULL, WNOHANG);
        if (w == fx->pid || (w < 0 && errno != EINTR))
            break;
        if (fixture_now() > deadline) {
            kill(fx->pid, SIGKILL);
            waitpid(fx->pid, NULL, 0);
            break;
        }
        fixture_nap_ms(5);
    }
    fx->pid = 0;
}

/* Makes a directory and starts a server in it, with requirepass password
 * unless it is NULL. Returns 0 or -1. */
FIXTURE_FN int redis_fixture_start(struct redis_fixture *fx, const char *password)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/simap-redis-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->sock, sizeof fx->sock, "%s/redis.sock", fx->dir);
    snprintf(fx->url, sizeof fx->url, "unix://%s", fx->sock);
    if (password != NULL)
        snprintf(fx->password, sizeof fx->password, "%s", password);
    return redis_fixture_spawn(fx);
}

/* Stops the server (if running) and starts a new one on the same socket
 * path and directory (with fx->extra): its dataset is what a SAVE left
 * there, else empty. Returns once it answers PING, LOADING included: 0 or
 * -1. */
FIXTURE_FN int redis_fixture_restart(struct redis_fixture *fx)
{
    redis_fixture_kill(fx, SIGTERM);
    return redis_fixture_spawn(fx);
}

/* Stops the server and removes the directory and everything in it. */
FIXTURE_FN void redis_fixture_stop(struct redis_fixture *fx)
{
    redis_fixture_kill(fx, SIGTERM);
    if (fx->dir[0] == '\0')
        return;
    DIR *d = opendir(fx->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[400];
            snprintf(path, sizeof path, "%s/%s", fx->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    fx->dir[0] = '\0';
}

/* The fixture of the scripts' tests: the scripts' digests, a server
 * (without a password) and a blocking core/rsync connection to it into *rs.
 * 0 or -1. */
FIXTURE_FN int redis_fixture_start_scripts(struct redis_fixture *fx, struct rsync **rs)
{
    *rs = NULL;
    if (scripts_init() < 0 || redis_fixture_start(fx, NULL) < 0)
        return -1;
    struct rsync_opts o = {.url = fx->url, .timeout_ms = 5000};
    *rs = rsync_new(&o);
    return *rs != NULL ? 0 : -1;
}

/* Undoes redis_fixture_start_scripts(). */
FIXTURE_FN void redis_fixture_stop_scripts(struct redis_fixture *fx, struct rsync *rs)
{
    rsync_free(rs);
    redis_fixture_stop(fx);
    scripts_shutdown();
}

#endif
