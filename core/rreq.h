/*
 * core/rreq: tagged requests on a core/rconn, so that a reply arriving after
 * its owner went away or moved on is dropped in one place.
 *
 * An object that sends Redis commands and may be freed, or start over (a
 * new connection, a new generation), before Redis answers them is an owner:
 * it embeds a struct rreq_owner. Each of its requests is a struct rreq,
 * embedded in the caller's per-call struct (or allocated alone), started
 * with rreq_start() and handed to any rconn start function (rconn_command(),
 * rconn_script(), lease_acquire(), ...) as callback rreq_on_reply with the
 * rreq as privdata. When rconn answers, rreq_on_reply() drops the reply, and
 * the request's callback never runs, when:
 *
 *   the owner let go of it     rreq_owner_cancel() ran since (the owner is
 *                              being freed: it is never touched again)
 *   the owner moved on         rreq_owner_move_on() ran since it was sent
 *   the rconn shuts down       err is -SIMAP_ESHUTDOWN (the process is
 *                              stopping), unless the owner was made with
 *                              RREQ_SEE_SHUTDOWN and has not let go
 *
 * Otherwise it calls the request's callback with the reply. In every case,
 * the request's release function (if any) then runs exactly once: it frees
 * what holds the request. A request that could not be submitted is handed
 * back with rreq_abort(), which runs release without a callback.
 *
 *   struct call { struct rreq req; int k; };   (req first: rreq_xfree())
 *   struct call *c = xcalloc(1, sizeof *c);
 *   rreq_start(&c->req, &owner->reqs, on_answer, rreq_xfree);
 *   if (rconn_command(rc, rreq_on_reply, &c->req, "GET %s", key) < 0)
 *       rreq_abort(&c->req);
 *
 * Everything runs on the loop's thread, like the rconn.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_RREQ_H
#define CORE_RREQ_H

#include <stddef.h>

#include "core/rconn.h"

struct redisReply;
struct rreq;

/* A fresh reply for req (reply and err as for an rconn_cb; reply valid
 * only during the call). The owner is alive and has not moved on. It may
 * start requests and may cancel or move its owner on. */
typedef void rreq_cb(struct rreq *req, struct redisReply *reply, int err);

/* Frees what holds req; runs once per rreq_start(), after the callback, the
 * drop or rreq_abort(). */
typedef void rreq_release_fn(struct rreq *req);

/* Embedded in the owner; zero it, or rreq_owner_init() it. The fields are
 * rreq's. */
struct rreq_owner {
    struct rreq *head; /* requests owed an answer, newest first */
    int pending;       /* their number */
    unsigned gen;      /* bumped by rreq_owner_move_on() */
    int flags;         /* RREQ_* */
};

/* -SIMAP_ESHUTDOWN reaches the callbacks of an owner that has not let go. */
#define RREQ_SEE_SHUTDOWN 1

/* One request; the fields are rreq's, set by rreq_start(). */
struct rreq {
    struct rreq_owner *owner; /* NULL: no owner, or it let go */
    struct rreq *prev, *next; /* on the owner's list */
    unsigned gen;             /* the owner's gen when started */
    int orphaned;             /* the owner let go (rreq_owner_cancel()) */
    rreq_cb *cb;
    rreq_release_fn *release;
};

void rreq_owner_init(struct rreq_owner *o, int flags);

/* The answers to every request started so far are dropped. */
void rreq_owner_move_on(struct rreq_owner *o);

/* Lets go of every pending request: their answers are dropped without
 * touching o, so o may be freed right after. o may be used again. */
void rreq_owner_cancel(struct rreq_owner *o);

/* Requests of o started and not yet answered, dropped or aborted. */
int rreq_owner_pending(const struct rreq_owner *o);

/*
 * Starts req for owner o (NULL: no owner, only the shutdown is filtered)
 * with callback cb and release (NULL: nothing to free). Hand req to an rconn
 * start function next, with rreq_on_reply as its callback; if that fails,
 * call rreq_abort(req).
 */
void rreq_start(struct rreq *req, struct rreq_owner *o, rreq_cb *cb, rreq_release_fn *release);

/* A request that was never submitted: forgets it and runs its release. */
void rreq_abort(struct rreq *req);

/* The rconn callback of every tagged request; privdata is the rreq. */
void rreq_on_reply(struct rconn *rc, struct redisReply *reply, int err, void *privdata);

/* A release for a request that is the first member of a struct from
 * xmalloc()/xcalloc(): xfree()s it. */
void rreq_xfree(struct rreq *req);

/* The struct of type that holds req as its member (a container_of). */
#define RREQ_CONTAINER(req, type, member) ((type *)(void *)((char *)(req)-offsetof(type, member)))

#endif
