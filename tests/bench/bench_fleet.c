/*
 * Benchmark of fleet placement (core/fleet, fleet_place()): the time one
 * node spends computing the whole assignment for 100k and 1M users over 10
 * and 100 watchers (ample capacity, and capacity 5% over the users so
 * bounded load spills over), and the fraction of users moved when an 11th
 * or 101st node joins and when one leaves; and what a placement of 1M users
 * costs the loop of the watcher that computes it: the longest wait of a
 * 1 ms timer while placing on the loop and while placing through
 * core/offload (the watcher's way). Prints Markdown tables
 *
 *   | users | nodes | capacity | ms | overflow |
 *   | users | nodes | join moved % | leave moved % |
 *   | users | where | placement ms | longest timer wait ms |
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

#include <ev.h>

#include "core/err.h"
#include "core/fleet.h"
#include "core/offload.h"

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

/* ---- The loop during a placement ---- */

struct stall {
    double last, worst; /* ms */
    int done;
};

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct stall *st = w->data;
    double t = now_ms();
    if (t - st->last > st->worst)
        st->worst = t - st->last;
    st->last = t;
}

struct place_job {
    const char **ids;
    size_t m;
    int32_t *owner;
    int rc;
};

static void place_work(void *job)
{
    struct place_job *j = job;
    j->rc = fleet_place(nodes, 10, j->ids, j->m, j->owner, NULL);
}

static void place_done(void *job, void *data)
{
    (void)job;
    ((struct stall *)data)->done = 1;
}

/* Places m users over 10 nodes while a 1 ms timer runs on a loop, on the
 * loop (offloaded 0) or through core/offload; the timer's longest wait and
 * the placement's time into *worst_ms and *place_ms. 0, or -1. */
static int loop_stall(const char **ids, size_t m, int offloaded, double *worst_ms, double *place_ms)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct stall st = {now_ms(), 0, 0};
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.001, 0.001);
    tick.data = &st;
    ev_timer_start(loop, &tick);
    for (int i = 0; i < 20; i++) /* the timer settles */
        ev_run(loop, EVRUN_ONCE);
    st.worst = 0;
    struct place_job j = {ids, m, xmalloc(m * sizeof(int32_t)), 0};
    double t0 = now_ms();
    if (offloaded) {
        struct offload *o = offload_new(loop, place_done, &st);
        if (offload_run(o, place_work, &j) < 0)
            j.rc = -1;
        while (j.rc == 0 && !st.done)
            ev_run(loop, EVRUN_ONCE);
        offload_free(o);
    } else {
        place_work(&j);
        ev_run(loop, EVRUN_ONCE);
    }
    *place_ms = now_ms() - t0;
    for (int i = 0; i < 20; i++)
        ev_run(loop, EVRUN_ONCE);
    *worst_ms = st.worst;
    ev_timer_stop(loop, &tick);
    ev_loop_destroy(loop);
    xfree(j.owner);
    return j.rc < 0 ? -1 : 0;
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

    printf("\n## The watcher's loop while it places 1M users over 10 watchers\n\n");
    printf("| users | placement computed | placement ms | longest wait of a 1 ms timer, ms |\n");
    printf("|---:|---|---:|---:|\n");
    m = 1000000;
    ids = make_ids(m);
    ptrs = xmalloc(m * sizeof *ptrs);
    for (size_t i = 0; i < m; i++)
        ptrs[i] = ids[i];
    set_nodes(10, (uint32_t)(m / 10 + m / 20));
    for (int off = 0; off < 2; off++) {
        double worst, took;
        if (loop_stall(ptrs, m, off, &worst, &took) < 0)
            return 1;
        printf("| %zu | %s | %.0f | %.1f |\n", m,
               off ? "on a thread (core/offload)" : "on the loop", took, worst);
    }
    xfree(ids);
    xfree(ptrs);
    return 0;
}
