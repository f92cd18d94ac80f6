/*
 * tests/integration/receiver: a webhook receiver for tests and benchmarks.
 * A small HTTP/1.1 server (plain sockets, keep-alive, its own libev loop on
 * its own thread) that records every request and checks both signatures of
 * each webhook itself, with OpenSSL and yajl directly, independently of the
 * dispatcher's code (proto/webhook is not used here), so a signing bug
 * cannot hide behind a matching verification bug.
 *
 * Requests go to /hook/<pid>/<anything>; the pid selects the credentials used
 * to verify and the rule used to answer: fail the first N requests with a
 * status, answer a given status (with Retry-After), delay each answer, or
 * hang (read the request, never answer).
 *
 * All functions are thread-safe (the test's thread calls them while the
 * receiver's thread serves).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_RECEIVER_H
#define TESTS_INTEGRATION_RECEIVER_H

#include <stddef.h>
#include <stdint.h>

struct receiver;

/* How the receiver answers one partner's requests. */
struct receiver_rule {
    int fail_first;          /* the first N requests get fail_status */
    int fail_status;         /* 0: 500 */
    int status;              /* then this; 0: 200 */
    const char *retry_after; /* Retry-After on non-2xx answers; NULL: none (copied) */
    int delay_ms;            /* wait before each answer */
    int hang;                /* never answer (the connection stays open) */
    const char *location;    /* Location header on every answer; NULL: none (copied) */
    size_t body_bytes;       /* answer with a body this long (0: a short text) */
};

/* One recorded request. */
struct receiver_request {
    char pid[32];
    char path[128];
    char id[160];      /* webhook-id header */
    char body_id[160]; /* the body's "id" */
    char event[32];    /* the body's "event" */
    char user_tag[64]; /* the body's "user_tag" */
    char user_agent[64];
    char content_type[64];
    char authorization[256]; /* Authorization header ("" when none) */
    int64_t ts;              /* webhook-timestamp header */
    int64_t body_ts;         /* the body's "timestamp" */
    int body_sig_ok;         /* body "signature" = hex HMAC(api key, ts + sha1) */
    int std_sig_ok;          /* a v1 signature matches the current whsec_ secret */
    int std_sig_old_ok;      /* a v1 signature matches the old secret */
    int nsigs;               /* v1 signatures in webhook-signature */
    int json_ok;             /* the body is a JSON object */
    int status;              /* what we answered (0: hung) */
    int64_t mono_us;         /* receipt time, CLOCK_MONOTONIC microseconds */
    size_t body_len;
    char *body; /* a copy when bodies are kept, else NULL */
};

/*
 * Starts a receiver listening on addr ("127.0.0.1" or "::1") port 0.
 * verify: check signatures (and parse the body); keep_bodies: keep a copy of
 * each body. Returns NULL (with a message on stderr) on failure.
 */
struct receiver *receiver_start(const char *addr, int verify, int keep_bodies);

/* Stops the thread, closes every connection, frees everything. Accepts NULL. */
void receiver_stop(struct receiver *rx);

/* The port it listens on. */
int receiver_port(const struct receiver *rx);

/* Registers a partner's credentials: the API key, the current whsec_ secret
 * and an old one (NULL: none). Copied. */
void receiver_add_partner(struct receiver *rx, const char *pid, const char *api_key,
                          const char *whsec, const char *whsec_old);

/* Sets pid's answering rule (replacing the earlier one, counters reset). */
void receiver_set_rule(struct receiver *rx, const char *pid, const struct receiver_rule *rule);

/* Requests recorded so far, of pid (NULL: all). */
int receiver_count(struct receiver *rx, const char *pid);

/* TCP connections accepted so far. */
int receiver_connections(struct receiver *rx);

/* Polls until receiver_count(rx, pid) >= n or ms pass; returns the count. */
int receiver_wait(struct receiver *rx, const char *pid, int n, int ms);

/* Copies up to max recorded requests, oldest first, into out (bodies are
 * not copied: body is NULL) and returns how many were copied. */
size_t receiver_requests(struct receiver *rx, struct receiver_request *out, size_t max);

/* Returns a copy of request i's body (free() it), or NULL. */
char *receiver_body(struct receiver *rx, size_t i, size_t *len);

/* Forgets every recorded request (counters of rules are kept). */
void receiver_clear(struct receiver *rx);

#endif
