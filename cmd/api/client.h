/*
 * cmd/api/client: who is on the other end of a request, and a bound on the
 * failed authentications each client address may make.
 *
 * The client address is the TCP peer's, or, when the peer is one of
 * SUPERIMAP_TRUSTED_PROXIES (IPs or CIDRs, comma-separated), the last hop of
 * its X-Forwarded-For header: the address the proxy itself saw, which a
 * client cannot forge (earlier hops are the client's to write). Behind the
 * shipped nginx, list nginx's address so that one client cannot lock out
 * every other.
 *
 * Failed partner authentications (an unknown or a wrong API key) spend a
 * token of the address's bucket (SUPERIMAP_API_AUTH_FAILURE_BURST tokens,
 * SUPERIMAP_API_AUTH_FAILURE_RATE back per second); an address with an empty
 * bucket is answered 429 before its key is hashed, looked up in Redis or
 * compared. The buckets are this process's (one per api node, 4,096 slots
 * keyed by address; an address that falls on a busy slot takes it over):
 * they bound the work an attacker makes, they are not an audit log.
 *
 * Gates (struct client_gate) count what is in flight per key and in all,
 * with a bound on each: the connections and request bodies of one client
 * address (slow clients, point "slowloris": cmd/api/main.c, router.c), the
 * webhook tests one partner has waiting (routes_events.c).
 *
 * Thread-safe: the api's worker threads share one guard and each gate.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_CLIENT_H
#define CMD_API_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define CLIENT_ADDR_MAX 64

struct client_guard;

/* Parses trusted (NULL or "": none) and makes a guard; burst 0 turns the
 * failure limit off. NULL with the reason in err when trusted does not
 * parse. */
struct client_guard *client_guard_new(const char *trusted, int burst, int per_sec, char *err,
                                      size_t errlen);

void client_guard_free(struct client_guard *g);

/* The client address of a request from peer with X-Forwarded-For xff
 * (NULL when absent) into out. */
void client_addr(const struct client_guard *g, const char *peer, const char *xff,
                 char out[CLIENT_ADDR_MAX]);

/* 1 when peer (a TCP peer's address) is one of the trusted proxies. */
int client_is_proxy(const struct client_guard *g, const char *peer);

/* 0 when addr may try to authenticate now, else the ms until it may. */
int64_t client_guard_wait(struct client_guard *g, const char *addr, int64_t now_ms);

/* Counts a failed authentication of addr. */
void client_guard_failed(struct client_guard *g, const char *addr, int64_t now_ms);

struct client_gate;

/* A gate admitting at most per_key at once for one key and total in all
 * (0: no bound of that kind). */
struct client_gate *client_gate_new(int per_key, int total);

/* Frees g; every key must have left. NULL is a no-op. */
void client_gate_free(struct client_gate *g);

#define CLIENT_GATE_KEY_FULL (-1) /* key already holds per_key */
#define CLIENT_GATE_FULL     (-2) /* the gate holds total */

/* Admits one more of key (a string of under CLIENT_ADDR_MAX bytes): 0, or
 * CLIENT_GATE_KEY_FULL / CLIENT_GATE_FULL when a bound is reached; force
 * admits past the bounds (still counted). Each 0 needs one
 * client_gate_leave(). */
int client_gate_enter(struct client_gate *g, const char *key, int force);

/* One of key leaves. */
void client_gate_leave(struct client_gate *g, const char *key);

#endif
