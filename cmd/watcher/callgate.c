/*
 * cmd/watcher/callgate: at most max session calls in flight on one rconn,
 * the rest waiting in a FIFO (see callgate.h).
 *
 * Each call is one allocation: the struct gcall, and for a call that must
 * wait, its argument arrays, then the bytes of the script name and the
 * arguments (a call sent at once carries none: rconn copies them). It is
 * handed to rconn with on_done() as callback, which counts it out, runs the
 * caller's callback, frees it and hands over the next waiting calls.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/callgate.h"

#include <string.h>

#include "core/err.h"

struct gcall {
    struct gcall *next; /* the FIFO, while waiting */
    struct callgate *g;
    rconn_cb *cb;
    void *privdata;
    const char *script; /* NULL: a plain command */
    int is_acked;       /* rconn_script_acked() */
    int nkeys;
    int argc;
    const char **argv;
    size_t *argvlen;
};

struct callgate {
    struct rconn *rc;
    int max;
    int in_flight;
    int waiting;
    int is_closing; /* callgate_free() ran; the last answer frees the gate */
    struct gcall *head, *tail;
};

static struct gcall *gcall_new(struct callgate *g, rconn_cb *cb, void *privdata, const char *script,
                               int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    size_t n = (size_t)argc, bytes = script != NULL ? strlen(script) + 1 : 0;
    for (int i = 0; i < argc; i++)
        bytes += argvlen != NULL ? argvlen[i] : strlen(argv[i]);
    struct gcall *c = xmalloc(sizeof *c + n * sizeof(const char *) + n * sizeof(size_t) + bytes);
    c->next = NULL;
    c->g = g;
    c->cb = cb;
    c->privdata = privdata;
    c->nkeys = nkeys;
    c->argc = argc;
    c->argv = (const char **)(void *)(c + 1);
    c->argvlen = (size_t *)(void *)(c->argv + n);
    char *p = (char *)(c->argvlen + n);
    c->script = NULL;
    if (script != NULL) {
        size_t len = strlen(script) + 1;
        memcpy(p, script, len);
        c->script = p;
        p += len;
    }
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        c->argv[i] = p;
        c->argvlen[i] = len;
        p += len;
    }
    return c;
}

static void on_done(struct rconn *rc, struct redisReply *reply, int err, void *privdata);

/* Hands call c, with these arguments, to rconn (which copies them). Returns
 * rconn's answer; on 0 the gate counts it. */
static int hand_over(struct callgate *g, struct gcall *c, const char *script, int nkeys, int argc,
                     const char **argv, const size_t *argvlen)
{
    int rc = script == NULL ? rconn_command_argv(g->rc, on_done, c, argc, argv, argvlen)
             : c->is_acked
                 ? rconn_script_acked(g->rc, on_done, c, script, nkeys, argc, argv, argvlen)
                 : rconn_script(g->rc, on_done, c, script, nkeys, argc, argv, argvlen);
    if (rc == 0)
        g->in_flight++;
    return rc;
}

/* Hands over waiting calls while there is room. Runs inside an rconn
 * callback, so a refused call's callback may run now. */
static void pump(struct callgate *g)
{
    while (g->head != NULL && g->in_flight < g->max && !g->is_closing) {
        struct gcall *c = g->head;
        g->head = c->next;
        if (g->head == NULL)
            g->tail = NULL;
        g->waiting--;
        int rc = hand_over(g, c, c->script, c->nkeys, c->argc, c->argv, c->argvlen);
        if (rc < 0) {
            if (c->cb != NULL)
                c->cb(g->rc, NULL, rc, c->privdata);
            xfree(c);
        }
    }
}

static void on_done(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    struct gcall *c = privdata;
    struct callgate *g = c->g;
    g->in_flight--;
    if (c->cb != NULL)
        c->cb(rc, reply, err, c->privdata);
    xfree(c);
    if (g->is_closing) {
        if (g->in_flight == 0)
            xfree(g);
        return;
    }
    pump(g);
}

static int submit(struct callgate *g, rconn_cb *cb, void *privdata, const char *script,
                  int is_acked, int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    if (g->is_closing)
        return -SIMAP_ESHUTDOWN;
    if (argc < 1 || argv == NULL || (script != NULL && (nkeys < 0 || nkeys > argc)))
        return -SIMAP_EINVAL;
    if (g->head == NULL && g->in_flight < g->max) {
        /* Sent at once: rconn keeps its own copy of the arguments, so the
         * call carries none (a record_mail's body is copied once, not twice). */
        struct gcall *c = gcall_new(g, cb, privdata, NULL, 0, 0, NULL, NULL);
        c->is_acked = is_acked;
        int rc = hand_over(g, c, script, nkeys, argc, argv, argvlen);
        if (rc < 0)
            xfree(c);
        return rc;
    }
    struct gcall *c = gcall_new(g, cb, privdata, script, nkeys, argc, argv, argvlen);
    c->is_acked = is_acked;
    if (g->tail != NULL)
        g->tail->next = c;
    else
        g->head = c;
    g->tail = c;
    g->waiting++;
    return 0;
}

struct callgate *callgate_new(struct rconn *rc, int max)
{
    struct callgate *g = xcalloc(1, sizeof *g);
    g->rc = rc;
    g->max = max > 0 ? max : 1;
    return g;
}

void callgate_free(struct callgate *g)
{
    if (g == NULL || g->is_closing)
        return;
    g->is_closing = 1;
    while (g->head != NULL) {
        struct gcall *c = g->head;
        g->head = c->next;
        g->waiting--;
        if (c->cb != NULL)
            c->cb(g->rc, NULL, -SIMAP_ESHUTDOWN, c->privdata);
        xfree(c);
    }
    g->tail = NULL;
    if (g->in_flight == 0)
        xfree(g);
}

struct rconn *callgate_rconn(const struct callgate *g)
{
    return g->rc;
}

int callgate_script(struct callgate *g, rconn_cb *cb, void *privdata, const char *script_name,
                    int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    if (script_name == NULL)
        return -SIMAP_EINVAL;
    return submit(g, cb, privdata, script_name, 0, nkeys, argc, argv, argvlen);
}

int callgate_script_acked(struct callgate *g, rconn_cb *cb, void *privdata, const char *script_name,
                          int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    if (script_name == NULL)
        return -SIMAP_EINVAL;
    return submit(g, cb, privdata, script_name, 1, nkeys, argc, argv, argvlen);
}

int callgate_command_argv(struct callgate *g, rconn_cb *cb, void *privdata, int argc,
                          const char **argv, const size_t *argvlen)
{
    return submit(g, cb, privdata, NULL, 0, 0, argc, argv, argvlen);
}

int callgate_in_flight(const struct callgate *g)
{
    return g->in_flight;
}

int callgate_waiting(const struct callgate *g)
{
    return g->waiting;
}
