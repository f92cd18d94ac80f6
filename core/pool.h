/*
 * core/pool: memory for objects that live as long as a user is held (the
 * watcher's session, registry entry, lease slot and the user's ids), kept
 * apart from the short-lived allocations of a login storm.
 *
 * Why: malloc places a session's long-lived blocks among the storm's
 * transient ones (queued Redis calls, replies, responses, handshake state);
 * once those are freed, every page still holding one long-lived block stays
 * resident, and the watcher's RSS is its peak during the storm. A heap
 * profile of 5,000 idle sessions (docs/performance.md) found 2,137 pages
 * held for 5.0 MB of blocks. Here objects of one size class sit side by
 * side in blocks of POOL_BLOCK bytes mapped apart from the heap (mmap), so
 * they fill their pages; a block's pages not used yet are not resident.
 *
 * Size classes are multiples of 16 bytes up to POOL_MAX; a larger object is
 * an ordinary allocation. A freed object goes to its class's free list for
 * the next one of that class; blocks are returned only by pool_free(), so
 * after users leave the pool keeps the most it ever held. Under
 * AddressSanitizer every object is an ordinary allocation, so use after
 * release is still caught.
 *
 * Not thread-safe: one thread (the watcher's loop) owns a pool.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_POOL_H
#define CORE_POOL_H

#include <stddef.h>

#define POOL_BLOCK (64 * 1024) /* bytes mapped at once, carved into objects of one class */
#define POOL_MAX   1024        /* the largest pooled object */

struct pool;

/* Returns a new, empty pool; never NULL. Allocates no block yet. */
struct pool *pool_new(void);

/* Frees the pool and every block: objects still out become invalid.
 * Accepts NULL. */
void pool_free(struct pool *p);

/* Returns n zeroed bytes (n > 0), aligned for any type; aborts on OOM like
 * xmalloc. Give it back with pool_release() and the same n. */
void *pool_alloc(struct pool *p, size_t n);

/* Gives back obj (NULL: nothing), of the n bytes it was allocated with. */
void pool_release(struct pool *p, void *obj, size_t n);

/* Objects allocated and not released yet (for tests). */
size_t pool_live(const struct pool *p);

/* Bytes of blocks the pool has mapped (for tests). */
size_t pool_block_bytes(const struct pool *p);

#endif
