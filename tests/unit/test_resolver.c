/*
 * Unit tests of core/resolver: answers come back on the loop (never inside
 * resolver_lookup()), for IPv4, IPv6 and names; a name without an address
 * is -SIMAP_ENOTFOUND with words; a cancelled lookup never answers, queued
 * or running; resolver_free() with lookups pending runs no callback and
 * leaks nothing (the ASan build checks); more lookups than threads all
 * answer.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/resolver.h"
#include "tests/unit/loop_fixture.h"

struct answer {
    int calls;
    int rc;
    int family;
    int port;
    char addr[INET6_ADDRSTRLEN];
    char why[RESOLVER_WHY_MAX];
};

static int answers; /* callbacks run, all lookups together */

static void on_answer(void *data, int rc, const struct sockaddr *sa, socklen_t salen,
                      const char *why)
{
    struct answer *a = data;
    answers++;
    a->calls++;
    a->rc = rc;
    snprintf(a->why, sizeof a->why, "%s", why);
    if (rc != 0)
        return;
    assert_non_null(sa);
    a->family = sa->sa_family;
    if (sa->sa_family == AF_INET) {
        assert_int_equal(salen, sizeof(struct sockaddr_in));
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a->addr, sizeof a->addr);
        a->port = ntohs(in->sin_port);
    } else {
        assert_int_equal(sa->sa_family, AF_INET6);
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a->addr, sizeof a->addr);
        a->port = ntohs(in6->sin6_port);
    }
}

static void test_literals_answer_on_the_loop(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct resolver *r = resolver_new(loop, 2);
    struct answer v4 = {0}, v6 = {0};
    assert_non_null(resolver_lookup(r, "127.0.0.7", 993, on_answer, &v4));
    assert_non_null(resolver_lookup(r, "::1", 143, on_answer, &v6));
    assert_int_equal(v4.calls + v6.calls, 0); /* never from inside lookup */
    answers = 0;
    assert_true(run_until(loop, &answers, 2, 10.0));
    assert_int_equal(v4.calls, 1);
    assert_int_equal(v4.rc, 0);
    assert_int_equal(v4.family, AF_INET);
    assert_string_equal(v4.addr, "127.0.0.7");
    assert_int_equal(v4.port, 993);
    assert_int_equal(v6.rc, 0);
    assert_int_equal(v6.family, AF_INET6);
    assert_string_equal(v6.addr, "::1");
    assert_int_equal(v6.port, 143);
    resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_name_from_hosts_and_a_name_without_address(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct resolver *r = resolver_new(loop, 1);
    struct answer local = {0}, bad = {0};
    assert_non_null(resolver_lookup(r, "localhost", 1, on_answer, &local));
    /* Not a valid host name: refused by the resolver without asking a DNS. */
    assert_non_null(resolver_lookup(r, "no such host!", 1, on_answer, &bad));
    assert_true(run_until(loop, &local.calls, 1, 10.0));
    assert_true(run_until(loop, &bad.calls, 1, 10.0));
    assert_int_equal(local.rc, 0);
    assert_true(strcmp(local.addr, "127.0.0.1") == 0 || strcmp(local.addr, "::1") == 0);
    assert_int_equal(bad.rc, -SIMAP_ENOTFOUND);
    assert_true(strlen(bad.why) > 0);
    resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_empty_or_overlong_host_is_refused_at_once(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct resolver *r = resolver_new(loop, 1);
    struct answer a = {0};
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_null(resolver_lookup(r, "", 1, on_answer, &a));
    assert_null(resolver_lookup(r, longname, 1, on_answer, &a));
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(a.calls, 0);
    resolver_free(r);
    ev_loop_destroy(loop);
}

/* 200 lookups on 3 threads: every other one cancelled at once (most still
 * queued), the rest answer exactly once each. */
static void test_many_lookups_and_cancels(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct resolver *r = resolver_new(loop, 3);
    enum { N = 200 };
    static struct answer a[N];
    memset(a, 0, sizeof a);
    struct resolve *q[N];
    for (int i = 0; i < N; i++) {
        char host[32];
        snprintf(host, sizeof host, "127.0.%d.%d", i / 250, i % 250 + 1);
        q[i] = resolver_lookup(r, host, 1000 + i, on_answer, &a[i]);
        assert_non_null(q[i]);
    }
    for (int i = 0; i < N; i += 2)
        resolver_cancel(q[i]);
    answers = 0;
    assert_true(run_until(loop, &answers, N / 2, 20.0));
    ev_run(loop, EVRUN_NOWAIT); /* a stray late answer would show below */
    for (int i = 0; i < N; i++) {
        if (i % 2 == 0) {
            assert_int_equal(a[i].calls, 0);
            continue;
        }
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].rc, 0);
        assert_int_equal(a[i].port, 1000 + i);
    }
    resolver_free(r);
    ev_loop_destroy(loop);
}

/* Freed with lookups queued, running and answered but not yet delivered:
 * no callback runs, and the workers exit on their own. */
static void test_free_with_lookups_pending_runs_no_callback(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    for (int round = 0; round < 20; round++) {
        struct resolver *r = resolver_new(loop, 2);
        struct answer a = {0};
        for (int i = 0; i < 10; i++)
            assert_non_null(resolver_lookup(r, "localhost", 1, on_answer, &a));
        resolver_free(r);
        ev_run(loop, EVRUN_NOWAIT);
        assert_int_equal(a.calls, 0);
    }
    ev_loop_destroy(loop);
}

/* A callback may cancel another lookup whose answer is already waiting in
 * the same batch. */
struct pair {
    struct answer a;
    struct resolve *other;
};

static void on_cancel_other(void *data, int rc, const struct sockaddr *sa, socklen_t salen,
                            const char *why)
{
    struct pair *p = data;
    on_answer(&p->a, rc, sa, salen, why);
    if (p->other != NULL)
        resolver_cancel(p->other);
    p->other = NULL;
}

static void test_callback_cancels_another_answered_lookup(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct resolver *r = resolver_new(loop, 1);
    struct pair first = {{0}, NULL}, second = {{0}, NULL};
    assert_non_null(resolver_lookup(r, "127.0.0.1", 1, on_cancel_other, &first));
    first.other = resolver_lookup(r, "127.0.0.2", 2, on_cancel_other, &second);
    assert_non_null(first.other);
    assert_true(run_until(loop, &first.a.calls, 1, 10.0));
    /* Whatever the batching, the second never answers after the cancel. */
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(second.a.calls, 0);
    resolver_free(r);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals_answer_on_the_loop),
        cmocka_unit_test(test_name_from_hosts_and_a_name_without_address),
        cmocka_unit_test(test_empty_or_overlong_host_is_refused_at_once),
        cmocka_unit_test(test_many_lookups_and_cancels),
        cmocka_unit_test(test_free_with_lookups_pending_runs_no_callback),
        cmocka_unit_test(test_callback_cancels_another_answered_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
