/*
 * core/resolver: getaddrinfo(3) off the loop (see resolver.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/resolver.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "core/err.h"

#define HOST_MAX 255 /* a DNS name's longest text form */

enum q_state { Q_QUEUED, Q_RUNNING, Q_DONE };

struct resolve {
    struct resolve *next; /* in the queue or in the done list */
    struct shared *s;
    resolve_cb *cb;
    void *data;
    enum q_state state;
    int cancelled;
    int rc;
    int port;
    struct sockaddr_storage sa;
    socklen_t salen;
    char why[RESOLVER_WHY_MAX];
    char host[HOST_MAX + 1];
};

/* What the loop's side and the workers share; freed by the last of them. */
struct shared {
    pthread_mutex_t lock;
    pthread_cond_t more;
    struct resolve *queue, **queue_tail;
    struct resolve *done, **done_tail;
    struct resolver *owner; /* NULL once resolver_free() ran */
    int workers, idle, max_workers;
    int refs;
};

struct resolver {
    struct ev_loop *loop;
    ev_async async;
    struct shared *s;
};

static void push(struct resolve ***tail, struct resolve *q)
{
    q->next = NULL;
    **tail = q;
    *tail = &q->next;
}

/* Under s->lock: q is answered; the loop is woken to run its callback. */
static void finish_locked(struct shared *s, struct resolve *q)
{
    q->state = Q_DONE;
    push(&s->done_tail, q);
    ev_async_send(s->owner->loop, &s->owner->async);
}

static void unref_locked(struct shared *s)
{
    if (--s->refs > 0) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    pthread_mutex_unlock(&s->lock);
    pthread_cond_destroy(&s->more);
    pthread_mutex_destroy(&s->lock);
    xfree(s);
}

static void lookup(struct resolve *q)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", q->port);
    int gai = getaddrinfo(q->host, port, &hints, &res);
    if (gai == 0 && res != NULL && res->ai_addrlen <= sizeof q->sa) {
        memcpy(&q->sa, res->ai_addr, res->ai_addrlen);
        q->salen = res->ai_addrlen;
        q->rc = 0;
    } else if (gai == EAI_NONAME || gai == 0) {
        q->rc = -SIMAP_ENOTFOUND;
        snprintf(q->why, sizeof q->why, "%s", gai == 0 ? "no address" : gai_strerror(gai));
    } else {
        q->rc = -SIMAP_EIO;
        snprintf(q->why, sizeof q->why, "%s", gai_strerror(gai));
    }
    if (res != NULL)
        freeaddrinfo(res);
}

static void *worker(void *arg)
{
    struct shared *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->owner != NULL && s->queue == NULL) {
            s->idle++;
            pthread_cond_wait(&s->more, &s->lock);
            s->idle--;
        }
        if (s->owner == NULL)
            break;
        struct resolve *q = s->queue;
        s->queue = q->next;
        if (s->queue == NULL)
            s->queue_tail = &s->queue;
        q->state = Q_RUNNING;
        pthread_mutex_unlock(&s->lock);
        lookup(q);
        pthread_mutex_lock(&s->lock);
        if (s->owner == NULL) {
            xfree(q);
            break;
        }
        finish_locked(s, q);
    }
    s->workers--;
    unref_locked(s);
    return NULL;
}

/* Under s->lock: a worker for the queue, unless one is idle or the cap is
 * reached. Returns -1 when no worker exists and none could be started. */
static int staff_locked(struct shared *s)
{
    if (s->idle > 0 || s->workers >= s->max_workers)
        return 0;
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) != 0)
        return s->workers > 0 ? 0 : -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, worker, s);
    pthread_attr_destroy(&attr);
    if (err != 0)
        return s->workers > 0 ? 0 : -1;
    s->workers++;
    s->refs++;
    return 0;
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct resolver *r = w->data;
    struct shared *s = r->s;
    pthread_mutex_lock(&s->lock);
    struct resolve *list = s->done;
    s->done = NULL;
    s->done_tail = &s->done;
    pthread_mutex_unlock(&s->lock);
    /* The list is the loop's now: a callback may cancel a later entry (it is
     * only marked) but never reach the shared lists' links. */
    while (list != NULL) {
        struct resolve *q = list;
        list = q->next;
        if (!q->cancelled)
            q->cb(q->data, q->rc, q->rc == 0 ? (const struct sockaddr *)&q->sa : NULL,
                  q->rc == 0 ? q->salen : 0, q->rc == 0 ? "" : q->why);
        xfree(q);
    }
}

struct resolver *resolver_new(struct ev_loop *loop, int threads)
{
    struct resolver *r = xcalloc(1, sizeof *r);
    struct shared *s = xcalloc(1, sizeof *s);
    /* Neither fails on Linux with default attributes; treated as the
     * allocation failures they would be. */
    if (pthread_mutex_init(&s->lock, NULL) != 0 || pthread_cond_init(&s->more, NULL) != 0)
        abort();
    s->queue_tail = &s->queue;
    s->done_tail = &s->done;
    s->owner = r;
    s->max_workers = threads < 1 ? 1 : threads > 16 ? 16 : threads;
    s->refs = 1;
    r->loop = loop;
    r->s = s;
    ev_async_init(&r->async, on_async);
    r->async.data = r;
    ev_async_start(loop, &r->async);
    ev_unref(loop); /* waiting for answers alone does not keep the loop running */
    return r;
}

static void free_list(struct resolve *q)
{
    while (q != NULL) {
        struct resolve *next = q->next;
        xfree(q);
        q = next;
    }
}

void resolver_free(struct resolver *r)
{
    if (r == NULL)
        return;
    struct shared *s = r->s;
    ev_ref(r->loop);
    ev_async_stop(r->loop, &r->async);
    pthread_mutex_lock(&s->lock);
    s->owner = NULL; /* workers drop what they finish from now on */
    free_list(s->queue);
    free_list(s->done);
    s->queue = s->done = NULL;
    pthread_cond_broadcast(&s->more);
    unref_locked(s);
    xfree(r);
}

struct resolve *resolver_lookup(struct resolver *r, const char *host, int port, resolve_cb *cb,
                                void *data)
{
    size_t n = strlen(host);
    if (n == 0 || n > HOST_MAX)
        return NULL;
    struct resolve *q = xcalloc(1, sizeof *q);
    memcpy(q->host, host, n + 1);
    q->port = port;
    q->cb = cb;
    q->data = data;
    struct shared *s = r->s;
    q->s = s;
    pthread_mutex_lock(&s->lock);
    if (staff_locked(s) < 0) {
        q->rc = -SIMAP_EIO;
        snprintf(q->why, sizeof q->why, "cannot start a resolver thread");
        finish_locked(s, q);
    } else {
        q->state = Q_QUEUED;
        push(&s->queue_tail, q);
        pthread_cond_signal(&s->more);
    }
    pthread_mutex_unlock(&s->lock);
    return q;
}

void resolver_cancel(struct resolve *q)
{
    struct shared *s = q->s;
    pthread_mutex_lock(&s->lock);
    if (q->state != Q_QUEUED) {
        q->cancelled = 1; /* its worker or on_async() frees it */
        pthread_mutex_unlock(&s->lock);
        return;
    }
    struct resolve **pp = &s->queue;
    while (*pp != q)
        pp = &(*pp)->next;
    *pp = q->next;
    if (s->queue_tail == &q->next)
        s->queue_tail = pp;
    pthread_mutex_unlock(&s->lock);
    xfree(q);
}
