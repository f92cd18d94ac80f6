/*
 * core/offload: one long computation off the loop.
 *
 * Some work is pure and long (placing a million users takes most of a
 * second): run on the loop it would stall every connection the loop serves.
 * An offload runs one job at a time on a thread of its own and calls done on
 * the loop when the job has finished, through an ev_async; done never runs
 * inside offload_run().
 *
 * The job must only touch memory nobody else changes while it runs (copy
 * what the loop may change, or check on the loop, in done, that it is still
 * valid).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_OFFLOAD_H
#define CORE_OFFLOAD_H

struct ev_loop;
struct offload;

/* Runs on the offload's thread. */
typedef void offload_work_fn(void *job);

/* Runs on the loop once work(job) returned. */
typedef void offload_done_fn(void *job, void *data);

/* A new offload for loop; done(job, data) is called for each finished job. */
struct offload *offload_new(struct ev_loop *loop, offload_done_fn *done, void *data);

/* Waits for a job in progress to finish (done is not called for it) and
 * releases the offload. Returns that job, for the caller to free, or NULL.
 * Accepts NULL. */
void *offload_free(struct offload *o);

/* Starts work(job) on a new thread. Returns 0, -SIMAP_ESTATE while another
 * job has not reached its done yet, or -SIMAP_ENOMEM when no thread could be
 * started (the job is untouched and still the caller's). */
int offload_run(struct offload *o, offload_work_fn *work, void *job);

/* 1 from offload_run() until the job's done returned. */
int offload_busy(const struct offload *o);

#endif
