/*
 * core/rreq: tagged requests on a core/rconn (see rreq.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/rreq.h"

#include <stddef.h>

#include "core/err.h"

void rreq_owner_init(struct rreq_owner *o, int flags)
{
    o->head = NULL;
    o->pending = 0;
    o->gen = 0;
    o->flags = flags;
}

void rreq_owner_move_on(struct rreq_owner *o)
{
    o->gen++;
}

void rreq_owner_cancel(struct rreq_owner *o)
{
    struct rreq *r = o->head;
    while (r != NULL) {
        struct rreq *next = r->next;
        r->owner = NULL;
        r->prev = r->next = NULL;
        r->orphaned = 1;
        r = next;
    }
    o->head = NULL;
    o->pending = 0;
}

int rreq_owner_pending(const struct rreq_owner *o)
{
    return o->pending;
}

void rreq_start(struct rreq *req, struct rreq_owner *o, rreq_cb *cb, rreq_release_fn *release)
{
    req->owner = o;
    req->prev = NULL;
    req->next = NULL;
    req->gen = 0;
    req->orphaned = 0;
    req->cb = cb;
    req->release = release;
    if (o == NULL)
        return;
    req->gen = o->gen;
    req->next = o->head;
    if (o->head != NULL)
        o->head->prev = req;
    o->head = req;
    o->pending++;
}

/* Takes req off its owner's list; returns the owner, or NULL. */
static struct rreq_owner *unlink_req(struct rreq *req)
{
    struct rreq_owner *o = req->owner;
    if (o == NULL)
        return NULL;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        o->head = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    req->owner = NULL;
    o->pending--;
    return o;
}

void rreq_abort(struct rreq *req)
{
    unlink_req(req);
    if (req->release != NULL)
        req->release(req);
}

void rreq_on_reply(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct rreq *req = privdata;
    struct rreq_owner *o = unlink_req(req);
    int fresh;
    if (req->orphaned)
        fresh = 0; /* the owner let go: it may be freed */
    else if (o == NULL)
        fresh = err != -SIMAP_ESHUTDOWN;
    else if (req->gen != o->gen)
        fresh = 0;
    else
        fresh = err != -SIMAP_ESHUTDOWN || (o->flags & RREQ_SEE_SHUTDOWN);
    if (fresh && req->cb != NULL)
        req->cb(req, reply, err);
    if (req->release != NULL)
        req->release(req);
}

void rreq_xfree(struct rreq *req)
{
    xfree(req);
}
