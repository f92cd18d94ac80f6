/*
 * core/hrw: shard of a user and weighted rendezvous (highest random weight)
 * hashing, which places users on watchers and shards on dispatchers
 * (docs/architecture.md section 3).
 *
 * Every node computes the same answer from the same inputs, with no
 * coordination: a key goes to the node with the highest score
 *
 *   score(key, node) = -weight / ln(u),   u = hash(key, node) mapped into (0, 1)
 *
 * (Schindelhauer and Schomaker, "Weighted distributed hash tables", 2005): a
 * node gets a weight/sum(weights) share of the keys, adding a node takes keys
 * only for itself and removing one moves only its keys. Bounded load walks
 * the same ranking: hrw_top_k() gives a key's first, second, ... choices.
 *
 * Results are identical across processes, builds and platforms: the hashes
 * use fixed byte-order-free arithmetic, never pointers or locale, and ln()
 * is computed here with plain IEEE-754 double arithmetic instead of libm,
 * whose last bit may differ between C libraries. (Build without
 * -ffast-math and without FMA contraction, the defaults for -std=c11.)
 *
 * Pure functions; safe from any thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_HRW_H
#define CORE_HRW_H

#include <stddef.h>
#include <stdint.h>

/* A candidate node. The caller owns id. */
struct hrw_node {
    const char *id;  /* stable node name, e.g. SUPERIMAP_NODE_ID; NUL-terminated */
    uint32_t weight; /* capacity; 0 means never chosen */
};

/* FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
 * Fixed forever: it defines shards stored in Redis. */
uint64_t hrw_fnv1a64(const void *data, size_t n);

/* MurmurHash3's fmix64 finalizer: a bijection with full avalanche. The one
 * copy: core/fleet ranks with it too, and must agree with hrw_score(). */
uint64_t hrw_fmix64(uint64_t x);

/* Added to a node's hash before mixing it with a key's in hrw_score() (the
 * 64-bit golden ratio), so hash(a, b) != hash(b, a). */
#define HRW_NODE_SALT 0x9e3779b97f4a7c15ULL

/* FNV-1a 64 followed by the MurmurHash3 fmix64 finalizer, so every input bit
 * affects every output bit. */
uint64_t hrw_hash64(const void *data, size_t n);

/* Returns the shard of a user: fnv1a64(user_id) mod shards
 * (docs/architecture.md section 2). shards must be at least 1. */
uint32_t hrw_shard(const char *user_id, uint32_t shards);

/*
 * Returns the weighted score of a node for a key from their hrw_hash64()
 * values, for callers that cache the hashes. Higher wins; weight 0 scores 0,
 * any positive weight scores more than 0.
 */
double hrw_score(uint64_t key_hash, uint64_t node_hash, uint32_t weight);

/*
 * Ranks the nodes for key and writes the indexes (into nodes) of the best k,
 * best first, to out_idx, which holds k entries. Nodes of weight 0 are
 * skipped. Equal scores (duplicate ids) fall back to id order, then index.
 * Returns how many were written: min(k, nodes of non-zero weight), or
 * -SIMAP_EINVAL when key, a node's id, or nodes or out_idx (with n or k not 0)
 * is NULL. Allocates only when k > 16.
 */
int hrw_top_k(const char *key, const struct hrw_node *nodes, size_t n, size_t k, size_t *out_idx);

#endif
