/*
 * core/strmap: string-keyed hash map (see strmap.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/strmap.h"

#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "core/hrw.h"

struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
};

struct strmap {
    struct entry **slots;
    size_t nslots; /* a power of two */
    size_t size;
};

struct strmap *strmap_new(void)
{
    struct strmap *m = xcalloc(1, sizeof *m);
    m->nslots = 16;
    m->slots = xcalloc(m->nslots, sizeof *m->slots);
    return m;
}

void strmap_free(struct strmap *m, void (*free_value)(void *value))
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry *e = m->slots[i];
        while (e != NULL) {
            struct entry *next = e->next;
            if (free_value != NULL)
                free_value(e->value);
            xfree(e);
            e = next;
        }
    }
    xfree(m->slots);
    xfree(m);
}

static struct entry *find(const struct strmap *m, const char *key, uint64_t h)
{
    for (struct entry *e = m->slots[h & (m->nslots - 1)]; e != NULL; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

void *strmap_get(const struct strmap *m, const char *key)
{
    struct entry *e = find(m, key, hrw_fnv1a64(key, strlen(key)));
    return e != NULL ? e->value : NULL;
}

static void grow(struct strmap *m)
{
    size_t n = m->nslots * 2;
    struct entry **slots = xcalloc(n, sizeof *slots);
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry *e = m->slots[i];
        while (e != NULL) {
            struct entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    xfree(m->slots);
    m->slots = slots;
    m->nslots = n;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
    size_t len = strlen(key);
    uint64_t h = hrw_fnv1a64(key, len);
    struct entry *e = find(m, key, h);
    if (e != NULL) {
        void *old = e->value;
        e->value = value;
        return old;
    }
    if (m->size >= m->nslots)
        grow(m);
    e = xmalloc(sizeof *e + len + 1);
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->value = value;
    e->next = m->slots[h & (m->nslots - 1)];
    m->slots[h & (m->nslots - 1)] = e;
    m->size++;
    return NULL;
}

void *strmap_del(struct strmap *m, const char *key)
{
    uint64_t h = hrw_fnv1a64(key, strlen(key));
    for (struct entry **pp = &m->slots[h & (m->nslots - 1)]; *pp != NULL; pp = &(*pp)->next) {
        struct entry *e = *pp;
        if (e->hash == h && strcmp(e->key, key) == 0) {
            void *value = e->value;
            *pp = e->next;
            xfree(e);
            m->size--;
            return value;
        }
    }
    return NULL;
}

void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *data),
                 void *data)
{
    for (size_t i = 0; i < m->nslots; i++)
        for (struct entry *e = m->slots[i]; e != NULL; e = e->next)
            fn(e->key, e->value, data);
}

size_t strmap_size(const struct strmap *m)
{
    return m->size;
}
