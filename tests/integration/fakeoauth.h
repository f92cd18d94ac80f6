/*
 * Integration harness for superimap-fake-oauth2d (cmd/fake-oauth2d): starts
 * one on 127.0.0.1 port 0 (the port read from its "http listening" log
 * line), drives its endpoints with libcurl, and reads its counters. Stopped
 * by its PID. Every call has a deadline and fails rather than hang.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_FAKEOAUTH_H
#define TESTS_INTEGRATION_FAKEOAUTH_H

#include <stddef.h>

#include "tests/integration/harness.h"

struct fakeoauth {
    struct proc proc; /* PID, port, log (dir/fake-oauth2d.log) */
    char dir[256];    /* mkdtemp; removed by fakeoauth_stop() */
    int port;
};

/* Starts the provider with args (NULL-terminated extra command-line
 * arguments, e.g. "--client", "cid:secret"; NULL: none) and waits for its
 * port. 0, or -1 with a message on stderr. */
int fakeoauth_start(struct fakeoauth *f, const char *const *args);

/* SIGTERM, wait (SIGKILL after 10 s), remove the directory. Returns the
 * exit code. Safe to call twice. */
int fakeoauth_stop(struct fakeoauth *f);

/* "http://127.0.0.1:<port><path>" into out. Returns out. */
const char *fakeoauth_url(const struct fakeoauth *f, const char *path, char *out, size_t outlen);

/* POSTs body (content type ctype) to path; the answer's body, NUL-terminated
 * and truncated, in out (may be NULL); with location (may be NULL) its
 * Location header. Returns the HTTP status or -1. */
int fakeoauth_post(struct fakeoauth *f, const char *path, const char *ctype, const char *body,
                   char *out, size_t outlen, char *location, size_t loclen);

/* POST /control/config with the JSON json; 0 or -1. */
int fakeoauth_config(struct fakeoauth *f, const char *json);

/* POST /control/inject with the JSON json; 0 or -1. */
int fakeoauth_inject(struct fakeoauth *f, const char *json);

/* A grant for email the way a browser and a callback get it: POST /authorize
 * (allow) with a PKCE challenge, then the code exchanged at /token with the
 * verifier, client authenticated in the body. The tokens in refresh and
 * access (either may be NULL). 0 or -1. */
int fakeoauth_grant(struct fakeoauth *f, const char *client_id, const char *client_secret,
                    const char *email, char *refresh, size_t rlen, char *access, size_t alen);

/* A counter of GET /control/stats by its path: "token.refresh_token.ok",
 * "token_max_concurrent", "revocations"...; -1 when absent or unreachable. */
long long fakeoauth_stat(struct fakeoauth *f, const char *path);

/* Polls counter path until it reaches at least value or ms pass; 0 or -1. */
int fakeoauth_wait_stat(struct fakeoauth *f, const char *path, long long value, int ms);

#endif
