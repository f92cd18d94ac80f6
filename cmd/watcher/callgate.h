/*
 * cmd/watcher/callgate: a bound on the Redis calls the sessions have in
 * flight on their connection. A login storm starts tens of thousands of
 * calls at once; queued on the connection they would all count down their
 * command timeout together and fail together. Through the gate, at most
 * max calls are handed to the rconn at once; the others wait here, in
 * submission order, with their arguments copied, and are handed over as
 * answers come back. A waiting call never fails for the wait: its rconn
 * command timeout starts when it is handed over.
 *
 * The callbacks keep rconn's contract (core/rconn.h): a call accepted (start
 * function returned 0) gets its callback exactly once, on the loop, never
 * from inside the start function; a waiting call that rconn then refuses
 * gets that error, and callgate_free() gives every waiting call
 * -SIMAP_ESHUTDOWN.
 *
 * Everything runs on the loop's thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_WATCHER_CALLGATE_H
#define CMD_WATCHER_CALLGATE_H

#include <stddef.h>

#include "core/rconn.h"

struct callgate;

/* A gate of at most max (>= 1) calls in flight on rc, which it borrows (rc
 * must outlive the gate). */
struct callgate *callgate_new(struct rconn *rc, int max);

/* Gives every waiting call -SIMAP_ESHUTDOWN, in submission order, then
 * frees the gate; calls in flight are rconn's (rconn_free() ends them).
 * Accepts NULL. */
void callgate_free(struct callgate *g);

/* The connection behind the gate. */
struct rconn *callgate_rconn(const struct callgate *g);

/* As rconn_script() through the gate (copies the arguments). Returns 0, or
 * rconn's error when the call could be handed over at once and rconn
 * refused it. */
int callgate_script(struct callgate *g, rconn_cb *cb, void *privdata, const char *script_name,
                    int nkeys, int argc, const char **argv, const size_t *argvlen);

/* As rconn_script_acked() through the gate: the call stays in flight until
 * its WAIT has answered. */
int callgate_script_acked(struct callgate *g, rconn_cb *cb, void *privdata, const char *script_name,
                          int nkeys, int argc, const char **argv, const size_t *argvlen);

/* As rconn_command_argv() through the gate. */
int callgate_command_argv(struct callgate *g, rconn_cb *cb, void *privdata, int argc,
                          const char **argv, const size_t *argvlen);

/* Calls in flight now (handed to rconn, not answered) and calls waiting. */
int callgate_in_flight(const struct callgate *g);
int callgate_waiting(const struct callgate *g);

#endif
