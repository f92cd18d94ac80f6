/*
 * core/strmap: a string-keyed hash map (separate chaining, FNV-1a, doubling
 * at load factor 1), the one hash table of the tree: the dispatcher's partner
 * cache and circuit breakers, the watcher's user registry, fake-imapd's
 * mailboxes. Keys are copied; values are the caller's pointers, which the map
 * never dereferences.
 *
 * Not thread-safe: one thread (a node's loop) owns each map.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_STRMAP_H
#define CORE_STRMAP_H

#include <stddef.h>

struct strmap;

/* Returns a new, empty map; never NULL. */
struct strmap *strmap_new(void);

/* Frees the map and its key copies, calling free_value on each value first
 * when it is not NULL. Accepts NULL. */
void strmap_free(struct strmap *m, void (*free_value)(void *value));

/* Returns the value of key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);

/* Sets key to value (copying key), replacing any earlier value, which is
 * returned (NULL when key was new). */
void *strmap_put(struct strmap *m, const char *key, void *value);

/* Removes key; returns its value (which the caller now owns), or NULL when
 * key was absent. */
void *strmap_del(struct strmap *m, const char *key);

/* Calls fn(key, value, data) for every entry, in no particular order. fn must
 * not change the map. */
void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *data),
                 void *data);

/* Number of entries. */
size_t strmap_size(const struct strmap *m);

#endif
