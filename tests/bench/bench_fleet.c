/*
 * Benchmark of fleet placement (core/fleet, fleet_place()): the time one
 * node spends computing the whole assignment for 100k and 1M users over 10
 * and 100 watchers (ample capacity, and capacity 5% over the users so
 * bounded load spills over), and the fraction of users moved when an 11th
 * or 101st node joins and when one leaves. Prints Markdown tables
 *
 *   | users | nodes | capacity | ms | overflow |
 *   | users | nodes | join moved % | leave moved % |
 *
 * Single thread, CLOCK_MONOTONIC, best of 3 runs. Nothing here judges the
 * numbers (make bench); exits non-zero only when a placement fails.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/fleet.h"

#define MAX_NODES 101

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char (*make_ids(size_t n))[25]
{
    char(*ids)[25] = xmalloc(n * sizeof *ids);
    uint64_t x = 42;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        snprintf(ids[i], sizeof ids[i], "%016llx%08x", (unsigned long long)x,
                 (unsigned)(x >> 17) & 0xffffffffu);
    }
    return ids;
}

static struct fleet_node nodes[MAX_NODES];
static char names[MAX_NODES][16];

static void set_nodes(size_t n, uint32_t cap)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "watcher-%03zu", i);
        nodes[i].id = names[i];
        nodes[i].capacity = cap;
    }
}

int main(void)
{
    static const size_t users[] = {100000, 1000000};
    static const size_t counts[] = {10, 100};
    printf("## Fleet placement (fleet_place, one node computes the whole assignment)\n\n");
    printf("| users | nodes | capacity per node | ms (best of 3) | overflow |\n");
    printf("|---:|---:|---:|---:|---:|\n");
    for (size_t a = 0; a < 2; a++) {
        size_t m = users[a];
        char(*ids)[25] = make_ids(m);
        const char **ptrs = xmalloc(m * sizeof *ptrs);
        for (size_t i = 0; i < m; i++)
            ptrs[i] = ids[i];
        int32_t *owner = xmalloc(m * sizeof *owner);
        int32_t *owner2 = xmalloc(m * sizeof *owner2);
        for (size_t b = 0; b < 2; b++) {
            size_t n = counts[b];
            for (int tight = 0; tight < 2; tight++) {
                uint32_t cap = tight ? (uint32_t)(m * 105 / 100 / n) : (uint32_t)(m * 10);
                set_nodes(n, cap);
                double best = 1e18;
                size_t over = 0;
                for (int r = 0; r < 3; r++) {
                    double t0 = now_ms();
                    if (fleet_place(nodes, n, ptrs, m, owner, &over) < 0)
                        return 1;
                    double t = now_ms() - t0;
                    if (t < best)
                        best = t;
                }
                printf("| %zu | %zu | %u%s | %.0f | %zu |\n", m, n, cap,
                       tight ? " (users + 5%)" : " (ample)", best, over);
            }
        }
        xfree(ids);
        xfree(ptrs);
        xfree(owner);
        xfree(owner2);
    }

    printf("\n## Users moved on a join and a leave (ample capacity)\n\n");
    printf("| users | nodes | join of one more: moved %% (ideal) | leave of one: moved %% (ideal) "
           "|\n");
    printf("|---:|---:|---:|---:|\n");
    size_t m = 100000;
    char(*ids)[25] = make_ids(m);
    const char **ptrs = xmalloc(m * sizeof *ptrs);
    for (size_t i = 0; i < m; i++)
        ptrs[i] = ids[i];
    int32_t *before = xmalloc(m * sizeof *before);
    int32_t *after = xmalloc(m * sizeof *after);
    for (size_t b = 0; b < 2; b++) {
        size_t n = counts[b];
        set_nodes(n + 1, (uint32_t)(m * 10));
        if (fleet_place(nodes, n, ptrs, m, before, NULL) < 0 ||
            fleet_place(nodes, n + 1, ptrs, m, after, NULL) < 0)
            return 1;
        size_t joined = 0;
        for (size_t i = 0; i < m; i++)
            joined += before[i] != after[i];
        /* Leave: the first node goes (indexes shift by one). */
        if (fleet_place(nodes + 1, n - 1, ptrs, m, after, NULL) < 0)
            return 1;
        size_t left = 0;
        for (size_t i = 0; i < m; i++)
            left += before[i] != after[i] + 1;
        printf("| %zu | %zu | %.2f (%.2f) | %.2f (%.2f) |\n", m, n, 100.0 * joined / m,
               100.0 / (n + 1), 100.0 * left / m, 100.0 / n);
    }
    xfree(ids);
    xfree(ptrs);
    xfree(before);
    xfree(after);
    return 0;
}
