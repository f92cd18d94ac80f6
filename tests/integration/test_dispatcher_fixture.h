/*
 * Set-up shared by the dispatcher's integration suites (test_dispatcher*.c):
 * the suite's redis-server with one blocking connection, and per test an
 * empty Redis and a fresh receiver (tests/integration/receiver.h) whose URL
 * base partners' webhook URLs start with. Header-only (static functions),
 * like test_watcher_fixture.h.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_TEST_DISPATCHER_FIXTURE_H
#define TESTS_INTEGRATION_TEST_DISPATCHER_FIXTURE_H

#include <stdio.h>

#include <hiredis/hiredis.h>

#include "tests/integration/harness.h"
#include "tests/integration/receiver.h"
#include "tests/integration/webhook_fixture.h"

#define DX_FN static __attribute__((unused))

/* Starts Redis r and connects *rc to it. 0 or -1. */
DX_FN int dx_suite_start(struct redis_srv *r, redisContext **rc)
{
    if (harness_redis_start(r) < 0)
        return -1;
    *rc = harness_redis_connect(r);
    return *rc == NULL ? -1 : 0;
}

/* Stops every harness process, closes rc and stops Redis r. */
DX_FN int dx_suite_stop(struct redis_srv *r, redisContext *rc)
{
    harness_stop_all();
    redisFree(rc);
    harness_redis_stop(r);
    return 0;
}

/* Before a test: Redis emptied, a receiver started on 127.0.0.1 (checking
 * signatures; keeping bodies when keep_bodies) into *rx, its
 * "http://127.0.0.1:<port>" into base (64 bytes). 0 or -1. */
DX_FN int dx_case_start(redisContext *rc, int keep_bodies, struct receiver **rx, char base[64])
{
    freeReplyObject(wf_cmd(rc, "FLUSHALL"));
    *rx = receiver_start("127.0.0.1", 1, keep_bodies);
    if (*rx == NULL)
        return -1;
    snprintf(base, 64, "http://127.0.0.1:%d", receiver_port(*rx));
    return 0;
}

/* After a test: every harness process stopped (the suite's Redis stays),
 * then the receiver. */
DX_FN int dx_case_stop(struct receiver **rx)
{
    harness_stop_all();
    receiver_stop(*rx);
    *rx = NULL;
    return 0;
}

/* Partner pid written to Redis (wf_partner(): URLs under base, fields f1,
 * f2 set to v1, v2 when not NULL) with fresh credentials, registered with
 * receiver rx so it checks their signatures. */
DX_FN void dx_partner(redisContext *rc, struct receiver *rx, const char *base, const char *pid,
                      const char *f1, const char *v1, const char *f2, const char *v2)
{
    char api_key[128], whsec[64];
    snprintf(api_key, sizeof api_key, "key-of-%s-0123456789", pid);
    wf_whsec(whsec, sizeof whsec);
    wf_partner(rc, pid, base, api_key, whsec, f1, v1, f2, v2, NULL);
    receiver_add_partner(rx, pid, api_key, whsec, NULL);
}

/* Starts dispatcher p (node id) on Redis r with private webhook URLs
 * allowed, requests timing out after timeout_ms and time divided by
 * divisor (SUPERIMAP_WEBHOOK_TIME_DIVISOR: the breaker's and the retry
 * schedule's periods shrink by it), and waits until it is ready. */
DX_FN void dx_start_dispatcher(struct proc *p, const struct redis_srv *r, const char *id,
                               const char *timeout_ms, const char *divisor)
{
    char timeout[64], div[64];
    snprintf(timeout, sizeof timeout, "SUPERIMAP_WEBHOOK_TIMEOUT_MS=%s", timeout_ms);
    snprintf(div, sizeof div, "SUPERIMAP_WEBHOOK_TIME_DIVISOR=%s", divisor);
    const char *env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", div, timeout, NULL};
    assert_int_equal(harness_node_start(p, r, "superimap-dispatcher", id, env), 0);
    assert_int_equal(harness_wait_http(p->port, "/readyz", 200, 10000), 0);
}

#endif
