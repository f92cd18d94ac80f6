/*
 * core/pool: size-class pools for long-lived objects (see pool.h).
 *
 * SPDX-License-Identifier: MIT
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS (not in POSIX.1-2008) */
#include "core/pool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/err.h"

#define GRAIN    16
#define NCLASSES (POOL_MAX / GRAIN)

#if defined(__SANITIZE_ADDRESS__)
#define POOL_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_PASSTHROUGH 1
#endif
#endif
#ifndef POOL_PASSTHROUGH
#define POOL_PASSTHROUGH 0
#endif

/* A freed object, on its class's free list. */
struct free_obj {
    struct free_obj *next;
};

/* A block: its header, then objects of one class. Blocks are mapped, not
 * malloc'd: page-aligned, they share no page with the heap's garbage, and
 * the pages not carved yet are never touched, so never resident. */
struct block {
    struct block *next;
    max_align_t align[]; /* the objects start here, aligned for any type */
};

struct pool_class {
    struct free_obj *free; /* freed objects, reused first */
    char *carve, *end;     /* the rest of the newest block */
};

struct pool {
    struct pool_class cls[NCLASSES];
    struct block *blocks;
    size_t nblocks;
    size_t live; /* objects out; kept in every build, so that under ASan a release
                    after pool_free() still touches the freed pool and is reported */
};

struct pool *pool_new(void)
{
    return xcalloc(1, sizeof(struct pool));
}

void pool_free(struct pool *p)
{
    if (p == NULL)
        return;
    while (p->blocks != NULL) {
        struct block *b = p->blocks;
        p->blocks = b->next;
        munmap(b, POOL_BLOCK);
    }
    xfree(p);
}

/* The class of n bytes (0 < n <= POOL_MAX). */
static size_t class_of(size_t n)
{
    return (n + GRAIN - 1) / GRAIN - 1;
}

void *pool_alloc(struct pool *p, size_t n)
{
    p->live++;
    if (POOL_PASSTHROUGH || n == 0 || n > POOL_MAX)
        return xcalloc(1, n > 0 ? n : 1);
    size_t k = class_of(n);
    struct pool_class *c = &p->cls[k];
    size_t size = (k + 1) * GRAIN;
    void *obj;
    if (c->free != NULL) {
        obj = c->free;
        c->free = c->free->next;
    } else {
        if (c->carve == NULL || (size_t)(c->end - c->carve) < size) {
            struct block *b =
                mmap(NULL, POOL_BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (b == MAP_FAILED) {
                fprintf(stderr, "superimap: out of memory mapping %d bytes\n", POOL_BLOCK);
                fflush(stderr);
                abort(); /* as xmalloc() does */
            }
            b->next = p->blocks;
            p->blocks = b;
            p->nblocks++;
            c->carve = (char *)b->align;
            c->end = (char *)b + POOL_BLOCK;
        }
        obj = c->carve;
        c->carve += size;
    }
    memset(obj, 0, size);
    return obj;
}

void pool_release(struct pool *p, void *obj, size_t n)
{
    if (obj == NULL)
        return;
    p->live--;
    if (POOL_PASSTHROUGH || n == 0 || n > POOL_MAX) {
        xfree(obj);
        return;
    }
    struct pool_class *c = &p->cls[class_of(n)];
    struct free_obj *f = obj;
    f->next = c->free;
    c->free = f;
}

size_t pool_live(const struct pool *p)
{
    return p != NULL ? p->live : 0;
}

size_t pool_block_bytes(const struct pool *p)
{
    return p != NULL ? p->nblocks * POOL_BLOCK : 0;
}
