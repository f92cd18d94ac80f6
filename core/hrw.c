/*
 * core/hrw: FNV-1a shard hash and weighted rendezvous hashing.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/hrw.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "core/err.h"

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME  0x100000001b3ULL

uint64_t hrw_fnv1a64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = FNV64_OFFSET;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

uint64_t hrw_fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t hrw_hash64(const void *data, size_t n)
{
    return hrw_fmix64(hrw_fnv1a64(data, n));
}

uint32_t hrw_shard(const char *user_id, uint32_t shards)
{
    assert(user_id != NULL && shards > 0);
    if (shards == 0)
        return 0;
    return (uint32_t)(hrw_fnv1a64(user_id, strlen(user_id)) % shards);
}

/*
 * Natural logarithm from +, -, *, / only, so every IEEE-754 platform gets the
 * same bits. x = m * 2^e with m in [sqrt(1/2), sqrt(2)); then
 * ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, and the series
 * 2 (s + s^3/3 + s^5/5 + ...) to s^29 is exact to well under 1e-16
 * (0.172^31 / 31 < 1e-25). frexp() and scaling by 2 are exact. Products
 * and sums sit in separate statements so that no compiler fuses them into an
 * FMA (clang's default -ffp-contract=on fuses within one expression), which
 * would round differently on CPUs that have one. Only called with x in (0, 1).
 */
static double det_log(double x)
{
    static const double ln2 = 0.693147180559945309417232121458176568;
    static const double sqrt_half = 0.707106781186547524400844362104849039;
    int e = 0;
    double m = frexp(x, &e); /* x = m * 2^e, m in [0.5, 1) */
    if (m < sqrt_half) {
        m *= 2.0;
        e -= 1;
    }
    double s = (m - 1.0) / (m + 1.0);
    double s2 = s * s;
    double sum = 0.0;
    for (int k = 29; k >= 1; k -= 2) { /* Horner, highest term first */
        double t = sum * s2;
        sum = t + 1.0 / k;
    }
    double hi = e * ln2;
    double lo = 2.0 * s * sum;
    return hi + lo;
}

double hrw_score(uint64_t key_hash, uint64_t node_hash, uint32_t weight)
{
    if (weight == 0)
        return 0.0;
    /* Combine asymmetrically, then mix: hash(a, b) != hash(b, a). */
    uint64_t h = hrw_fmix64(key_hash ^ hrw_fmix64(node_hash + HRW_NODE_SALT));
    /* The top 53 bits, centred in their interval: u in (0, 1), never 0 or 1. */
    double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    return -(double)weight / det_log(u);
}

/* 1 when candidate (s, i) ranks above (t, j). */
static int ranks_above(const struct hrw_node *nodes, double s, size_t i, double t, size_t j)
{
    if (s != t)
        return s > t;
    int c = strcmp(nodes[i].id, nodes[j].id);
    if (c != 0)
        return c < 0;
    return i < j;
}

int hrw_top_k(const char *key, const struct hrw_node *nodes, size_t n, size_t k, size_t *out_idx)
{
    double stack_scores[16];
    double *scores = stack_scores;
    size_t count = 0;

    if (key == NULL || (nodes == NULL && n > 0) || (out_idx == NULL && k > 0))
        return -SIMAP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (nodes[i].id == NULL)
            return -SIMAP_EINVAL;
    if (k == 0 || n == 0)
        return 0;
    if (k > n)
        k = n;
    if (k > INT_MAX)
        k = INT_MAX;
    if (k > sizeof(stack_scores) / sizeof(stack_scores[0]))
        scores = xmalloc(k * sizeof(*scores));

    uint64_t kh = hrw_hash64(key, strlen(key));
    for (size_t i = 0; i < n; i++) {
        if (nodes[i].weight == 0)
            continue;
        double s = hrw_score(kh, hrw_hash64(nodes[i].id, strlen(nodes[i].id)), nodes[i].weight);
        /* Insertion into the sorted top-k list. */
        size_t pos = count;
        while (pos > 0 && ranks_above(nodes, s, i, scores[pos - 1], out_idx[pos - 1]))
            pos--;
        if (pos >= k)
            continue;
        size_t last = count < k ? count : k - 1;
        for (size_t j = last; j > pos; j--) {
            scores[j] = scores[j - 1];
            out_idx[j] = out_idx[j - 1];
        }
        scores[pos] = s;
        out_idx[pos] = i;
        if (count < k)
            count++;
    }
    if (scores != stack_scores)
        xfree(scores);
    return (int)count;
}
