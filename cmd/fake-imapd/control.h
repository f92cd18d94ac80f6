/*
 * The control channel of superimap-fake-imapd: a unix socket on which tests
 * append mail, change UIDVALIDITY, kick users, set faults and read counters.
 * The protocol is described at the top of control.c and in README.md.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_FAKE_IMAPD_CONTROL_H
#define CMD_FAKE_IMAPD_CONTROL_H

#include <stddef.h>

struct ev_loop;
struct server;
struct control;

/*
 * Listens on the unix socket path (a stale socket file there is replaced)
 * and serves every client on loop, acting on srv (borrowed: it must outlive
 * the control). max_message bounds APPEND. Returns NULL with a reason in err.
 */
struct control *control_new(struct ev_loop *loop, struct server *srv, const char *path,
                            size_t max_message, char *err, size_t errlen);

/* Closes every client and the socket, removes the socket file, frees.
 * Accepts NULL. Call it from outside the control's callbacks. */
void control_free(struct control *ctl);

#endif
