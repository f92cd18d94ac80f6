/*
 * tests/integration/sentinel_fixture.h: a Redis high-availability group on
 * loopback for the tests of redis+sentinel:// (core/sentinel): a primary,
 * one or two replicas and three sentinels (quorum 2, down-after 500 ms or as
 * asked), each a
 * redis-server of its own (sentinels run as `redis-server <conf>
 * --sentinel`) in one temporary directory, on free 127.0.0.1 ports, stopped
 * by PID. Header-only (static functions), like the other fixtures.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_SENTINEL_FIXTURE_H
#define TESTS_INTEGRATION_SENTINEL_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "tests/integration/harness.h"

#define SG_MASTER    "mymaster"
#define SG_SENTINELS 3
#define SG_DATA_MAX  3 /* the primary and at most two replicas */

struct sg_node {
    pid_t pid;
    int port;
};

struct sentinel_group {
    char dir[256];
    struct sg_node data[SG_DATA_MAX]; /* [0] the first primary, then its replicas */
    int ndata;                        /* 2 or 3 */
    int down_after_ms;                /* the sentinels' down-after-milliseconds */
    struct sg_node sentinel[SG_SENTINELS];
    char url[512]; /* redis+sentinel://127.0.0.1:p1,...,/mymaster */
};

static pid_t sg_spawn(const struct sentinel_group *g, const char *name, const char *const *argv)
{
    char logpath[400];
    snprintf(logpath, sizeof logpath, "%s/%s.log", g->dir, name);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* A reply to cmd from 127.0.0.1:port, or NULL. */
static __attribute__((unused)) redisReply *sg_cmd(int port, const char *cmd)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, cmd);
    redisFree(c);
    return r;
}

/* Starts data node i on g->data[i].port (a free one when 0), a replica of
 * the node on port replica_of when not 0. */
static int sg_start_data(struct sentinel_group *g, int i, int replica_of)
{
    char name[16], port[16], of[16], sub[300], sock[320];
    snprintf(name, sizeof name, "data%d", i);
    snprintf(sub, sizeof sub, "%s/%s", g->dir, name);
    snprintf(sock, sizeof sock, "%s/%s.sock", g->dir, name);
    if (mkdir(sub, 0700) < 0 && errno != EEXIST)
        return -1;
    if (g->data[i].port == 0)
        g->data[i].port = harness_free_port();
    snprintf(port, sizeof port, "%d", g->data[i].port);
    snprintf(of, sizeof of, "%d", replica_of);
    const char *argv[] = {"redis-server",
                          "--port",
                          port,
                          "--bind",
                          "127.0.0.1",
                          "--unixsocket",
                          sock,
                          "--unixsocketperm",
                          "700",
                          "--dir",
                          sub,
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          replica_of ? "--replicaof" : NULL,
                          "127.0.0.1",
                          of,
                          NULL};
    g->data[i].pid = sg_spawn(g, name, argv);
    return g->data[i].pid > 0 ? 0 : -1;
}

static int sg_start_sentinel(struct sentinel_group *g, int i)
{
    char name[16], conf[300];
    snprintf(name, sizeof name, "sentinel%d", i);
    snprintf(conf, sizeof conf, "%s/%s.conf", g->dir, name);
    g->sentinel[i].port = harness_free_port();
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\n"
            "sentinel monitor " SG_MASTER " 127.0.0.1 %d 2\n"
            "sentinel down-after-milliseconds " SG_MASTER " %d\n"
            "sentinel failover-timeout " SG_MASTER " 5000\n"
            "sentinel parallel-syncs " SG_MASTER " 1\n",
            g->sentinel[i].port, g->dir, g->data[0].port, g->down_after_ms);
    fclose(f);
    const char *argv[] = {"redis-server", conf, "--sentinel", NULL};
    g->sentinel[i].pid = sg_spawn(g, name, argv);
    return g->sentinel[i].pid > 0 ? 0 : -1;
}

/* The port the sentinels name as the primary now, or -1. */
static __attribute__((unused)) int sg_primary_port(const struct sentinel_group *g)
{
    for (int i = 0; i < SG_SENTINELS; i++) {
        if (g->sentinel[i].pid <= 0)
            continue;
        redisReply *r = sg_cmd(g->sentinel[i].port, "SENTINEL get-master-addr-by-name " SG_MASTER);
        int port = -1;
        if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
            port = atoi(r->element[1]->str);
        freeReplyObject(r);
        if (port > 0)
            return port;
    }
    return -1;
}

/* An integer field of `INFO <section>` (or SENTINEL ...) text at port, or -1. */
static long long sg_info_int(int port, const char *cmd, const char *field)
{
    redisReply *r = sg_cmd(port, cmd);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, field);
        if (p != NULL)
            v = atoll(p + strlen(field));
    }
    freeReplyObject(r);
    return v;
}

/* 1 when every replica is in sync with the primary and every sentinel
 * knows the replicas and the two other sentinels: a failover can then be
 * agreed and carried out. */
static int sg_settled(const struct sentinel_group *g)
{
    redisReply *r = sg_cmd(g->data[0].port, "INFO replication");
    int online = 0;
    for (const char *p = r != NULL && r->type == REDIS_REPLY_STRING ? r->str : NULL;
         p != NULL && (p = strstr(p, "state=online")) != NULL; p++)
        online++;
    freeReplyObject(r);
    if (online != g->ndata - 1) /* synced: WAIT counts them */
        return 0;
    for (int i = 0; i < SG_SENTINELS; i++)
        if (sg_info_int(g->sentinel[i].port, "INFO sentinel", ",slaves=") != g->ndata - 1 ||
            sg_info_int(g->sentinel[i].port, "INFO sentinel", ",sentinels=") != SG_SENTINELS)
            return 0;
    return 1;
}

static __attribute__((unused)) void sg_stop(struct sentinel_group *g)
{
    struct sg_node *all[] = {&g->data[0],     &g->data[1],     &g->data[2],
                             &g->sentinel[0], &g->sentinel[1], &g->sentinel[2]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i]->pid > 0) {
            kill(all[i]->pid, SIGKILL);
            waitpid(all[i]->pid, NULL, 0);
        }
        all[i]->pid = 0;
    }
    const char *keep = getenv("SUPERIMAP_TEST_KEEP");
    if (g->dir[0] != '\0' && (keep == NULL || *keep == '\0' || strcmp(keep, "0") == 0)) {
        pid_t pid = fork();
        if (pid == 0) {
            execlp("rm", "rm", "-rf", g->dir, (char *)NULL);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    } else if (g->dir[0] != '\0') {
        fprintf(stderr, "SUPERIMAP_TEST_KEEP: kept %s (the sentinel group's logs)\n", g->dir);
    }
    g->dir[0] = '\0';
}

/* Starts the group with replicas (1 or 2) replicas, the sentinels judging a
 * primary down after down_after_ms, and waits (up to 20 s) until a failover
 * could be made. 0, or -1 with whatever started left for sg_stop(). */
static __attribute__((unused)) int sg_start_n(struct sentinel_group *g, int replicas,
                                              int down_after_ms)
{
    memset(g, 0, sizeof *g);
    g->ndata = 1 + (replicas > 1 ? 2 : 1);
    g->down_after_ms = down_after_ms;
    const char *tmp = getenv("TMPDIR");
    snprintf(g->dir, sizeof g->dir, "%s/superimap-sentinel-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(g->dir) == NULL)
        return -1;
    if (sg_start_data(g, 0, 0) < 0)
        return -1;
    long long deadline = harness_now_ms() + 5000;
    redisReply *r = NULL;
    while ((r = sg_cmd(g->data[0].port, "PING")) == NULL && harness_now_ms() < deadline)
        harness_poll_pause();
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    for (int i = 1; i < g->ndata; i++)
        if (sg_start_data(g, i, g->data[0].port) < 0)
            return -1;
    for (int i = 0; i < SG_SENTINELS; i++)
        if (sg_start_sentinel(g, i) < 0)
            return -1;
    int n = snprintf(g->url, sizeof g->url, "redis+sentinel://");
    for (int i = 0; i < SG_SENTINELS; i++)
        n += snprintf(g->url + n, sizeof g->url - (size_t)n, "%s127.0.0.1:%d", i ? "," : "",
                      g->sentinel[i].port);
    snprintf(g->url + n, sizeof g->url - (size_t)n, "/" SG_MASTER);
    deadline = harness_now_ms() + 20000;
    while (!sg_settled(g) && harness_now_ms() < deadline)
        harness_poll_pause();
    return sg_settled(g) ? 0 : -1;
}

/* Asks a sentinel for a planned failover (SENTINEL FAILOVER) until one
 * agrees, for up to ms: a sentinel refuses (-NOGOODSLAVE) until it has fresh
 * news of a replica. 0, or -1 when none agreed. */
static __attribute__((unused)) int sg_failover(const struct sentinel_group *g, int ms)
{
    long long asked_until = harness_now_ms() + ms;
    for (int i = 0;; i++) {
        redisReply *f = sg_cmd(g->sentinel[i % SG_SENTINELS].port, "SENTINEL FAILOVER " SG_MASTER);
        int agreed = f != NULL && f->type == REDIS_REPLY_STATUS;
        if (!agreed && f != NULL && f->type == REDIS_REPLY_ERROR)
            fprintf(stderr, "sentinel: SENTINEL FAILOVER: %s; asking again\n", f->str);
        freeReplyObject(f);
        if (agreed)
            return 0;
        if (harness_now_ms() >= asked_until)
            return -1;
        harness_poll_pause();
    }
}

/* A primary and one replica, down-after 500 ms. */
static __attribute__((unused)) int sg_start(struct sentinel_group *g)
{
    return sg_start_n(g, 1, 500);
}

/* Starts data node i again after it was killed, on its port, with no
 * replicaof: it comes back believing it is a primary, as the first primary
 * does after a crash (the sentinels then turn it into a replica). 0 or -1. */
static __attribute__((unused)) int sg_restart_data(struct sentinel_group *g, int i)
{
    return g->data[i].pid <= 0 && sg_start_data(g, i, 0) == 0 ? 0 : -1;
}

/* Data node i as a struct redis_srv of the harness (its unix socket; the
 * group's directory for the nodes' logs), for the fixtures that read and
 * write Redis directly. Nodes are given g->url instead. */
static __attribute__((unused)) void sg_redis_srv(const struct sentinel_group *g, int i,
                                                 struct redis_srv *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->dir, sizeof out->dir, "%s", g->dir);
    snprintf(out->sock, sizeof out->sock, "%s/data%d.sock", g->dir, i);
    snprintf(out->url, sizeof out->url, "unix://%s", out->sock);
}

/* The index in g->data of the node on port, or -1. */
static __attribute__((unused)) int sg_data_index(const struct sentinel_group *g, int port)
{
    for (int i = 0; i < g->ndata; i++)
        if (g->data[i].port == port)
            return i;
    return -1;
}

#endif
