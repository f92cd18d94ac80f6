/*
 * core/offload: one long computation off the loop (see offload.h).
 *
 * A thread per job: jobs are rare (a placement per change of the fleet or
 * its users, at most about once a second), so a thread kept waiting would
 * buy nothing. The thread is joined on the loop when its ev_async arrives,
 * by which time it has returned or is about to.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/offload.h"

#include <pthread.h>
#include <stdatomic.h>

#include <ev.h>

#include "core/err.h"

struct offload {
    struct ev_loop *loop;
    ev_async async;
    offload_done_fn *done;
    void *data;
    offload_work_fn *work;
    void *job;           /* the job started, until its done */
    pthread_t thread;    /* valid while job != NULL */
    atomic_int finished; /* the thread returned from work */
};

static void *run(void *arg)
{
    struct offload *o = arg;
    o->work(o->job);
    atomic_store(&o->finished, 1);
    ev_async_send(o->loop, &o->async);
    return NULL;
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct offload *o = w->data;
    if (o->job == NULL || !atomic_load(&o->finished))
        return;
    pthread_join(o->thread, NULL);
    void *job = o->job;
    o->job = NULL;
    o->done(job, o->data);
}

struct offload *offload_new(struct ev_loop *loop, offload_done_fn *done, void *data)
{
    struct offload *o = xcalloc(1, sizeof *o);
    o->loop = loop;
    o->done = done;
    o->data = data;
    ev_async_init(&o->async, on_async);
    o->async.data = o;
    ev_async_start(loop, &o->async);
    ev_unref(loop); /* a job alone does not keep the loop running */
    return o;
}

void *offload_free(struct offload *o)
{
    if (o == NULL)
        return NULL;
    void *job = o->job;
    if (job != NULL)
        pthread_join(o->thread, NULL);
    ev_ref(o->loop);
    ev_async_stop(o->loop, &o->async);
    xfree(o);
    return job;
}

int offload_run(struct offload *o, offload_work_fn *work, void *job)
{
    if (o->job != NULL)
        return -SIMAP_ESTATE;
    o->work = work;
    o->job = job;
    atomic_store(&o->finished, 0);
    if (pthread_create(&o->thread, NULL, run, o) != 0) {
        o->job = NULL;
        return -SIMAP_ENOMEM;
    }
    return 0;
}

int offload_busy(const struct offload *o)
{
    return o->job != NULL;
}
