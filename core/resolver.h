/*
 * core/resolver: getaddrinfo(3) off the loop.
 *
 * glibc's getaddrinfo blocks for as long as the DNS takes (seconds, with
 * its default timeouts and retries); called on a libev loop it stalls every
 * connection the loop serves. A resolver hands lookups to a few worker
 * threads and brings the answers back to the loop through an ev_async: the
 * callback always runs on the loop, never inside resolver_lookup().
 *
 * The workers are detached and share a reference-counted state with the
 * loop's side, so resolver_free() never waits for a lookup in progress: the
 * worker finishes it, drops the answer and exits.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_RESOLVER_H
#define CORE_RESOLVER_H

#include <sys/socket.h>

struct ev_loop;
struct resolver;
struct resolve;

#define RESOLVER_WHY_MAX 96

/* The answer: rc 0 with the first address (TCP) of the name, or a negative
 * code (-SIMAP_ENOTFOUND: the name has no address; -SIMAP_EIO: the lookup
 * failed, e.g. the DNS did not answer) with getaddrinfo's words in why. */
typedef void resolve_cb(void *data, int rc, const struct sockaddr *sa, socklen_t salen,
                        const char *why);

/* A resolver for loop with at most `threads` lookups at once (1..16);
 * threads start on demand. */
struct resolver *resolver_new(struct ev_loop *loop, int threads);

/* Pending lookups are dropped: their callbacks never run. */
void resolver_free(struct resolver *r);

/* Starts looking up host (a name or an address literal) for TCP port; cb
 * runs once, on the loop. Returns NULL (and cb never runs) only when host is
 * empty or longer than a DNS name can be. */
struct resolve *resolver_lookup(struct resolver *r, const char *host, int port, resolve_cb *cb,
                                void *data);

/* Stops a lookup whose callback has not run yet (it never will); not from
 * inside that callback. */
void resolver_cancel(struct resolve *q);

#endif
