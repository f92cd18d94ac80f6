/*
 * Unit tests of cmd/api/client: the client address (the peer, or the last
 * X-Forwarded-For hop of a trusted proxy), SUPERIMAP_TRUSTED_PROXIES
 * parsing, and the per-address bucket of failed authentications. The api
 * is not part of libsuperimap.a, so its source is included here.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/api/client.c"

static void test_the_last_hop_of_a_trusted_proxy_is_the_client(void **state)
{
    (void)state;
    char err[160], out[CLIENT_ADDR_MAX];
    struct client_guard *g =
        client_guard_new("10.0.0.0/8, 192.168.1.7,fd00::/8", 20, 1, err, sizeof err);
    assert_non_null(g);
    client_addr(g, "10.1.2.3", "198.51.100.1, 203.0.113.9", out);
    assert_string_equal(out, "203.0.113.9"); /* earlier hops are the client's to forge */
    client_addr(g, "192.168.1.7", " 2001:db8::1 ", out);
    assert_string_equal(out, "2001:db8::1");
    client_addr(g, "fd12::5", "203.0.113.10", out);
    assert_string_equal(out, "203.0.113.10");
    client_addr(g, "192.168.1.8", "203.0.113.9", out); /* not a trusted proxy */
    assert_string_equal(out, "192.168.1.8");
    client_addr(g, "10.1.2.3", NULL, out);
    assert_string_equal(out, "10.1.2.3");
    client_addr(g, "10.1.2.3", "not-an-address", out); /* a proxy that says nonsense */
    assert_string_equal(out, "10.1.2.3");
    client_addr(g, "10.1.2.3", "203.0.113.9,", out);
    assert_string_equal(out, "10.1.2.3");
    client_guard_free(g);

    g = client_guard_new(NULL, 20, 1, err, sizeof err); /* no proxies: the peer, always */
    client_addr(g, "10.1.2.3", "203.0.113.9", out);
    assert_string_equal(out, "10.1.2.3");
    client_guard_free(g);
}

static void test_bad_proxy_lists_are_refused_with_the_entry(void **state)
{
    (void)state;
    static const char *const bad[] = {"10.0.0.0/33", "nginx", "10.0.0.1/", "::1/129",
                                      "10.0.0.0/8,1.2.3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[160] = "";
        struct client_guard *g = client_guard_new(bad[i], 20, 1, err, sizeof err);
        if (g != NULL)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "SUPERIMAP_TRUSTED_PROXIES"));
    }
}

static void test_failures_empty_the_bucket_and_time_refills_it(void **state)
{
    (void)state;
    char err[160];
    struct client_guard *g = client_guard_new("", 3, 2, err, sizeof err);
    int64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(client_guard_wait(g, "203.0.113.9", t), 0);
        client_guard_failed(g, "203.0.113.9", t);
    }
    int64_t wait = client_guard_wait(g, "203.0.113.9", t);
    assert_true(wait > 0 && wait <= 501); /* 2 per second: one back in 500 ms */
    assert_int_equal(client_guard_wait(g, "203.0.113.10", t), 0); /* per address */
    assert_int_equal(client_guard_wait(g, "203.0.113.9", t + 500), 0);
    client_guard_free(g);

    g = client_guard_new("", 0, 1, err, sizeof err); /* 0: no limit */
    for (int i = 0; i < 100; i++)
        client_guard_failed(g, "203.0.113.9", t);
    assert_int_equal(client_guard_wait(g, "203.0.113.9", t), 0);
    client_guard_free(g);
}

static void test_gates_bound_each_key_and_the_total(void **state)
{
    (void)state;
    struct client_gate *g = client_gate_new(2, 3);
    assert_int_equal(client_gate_enter(g, "a", 0), 0);
    assert_int_equal(client_gate_enter(g, "a", 0), 0);
    assert_int_equal(client_gate_enter(g, "a", 0), CLIENT_GATE_KEY_FULL);
    assert_int_equal(client_gate_enter(g, "b", 0), 0);
    assert_int_equal(client_gate_enter(g, "c", 0), CLIENT_GATE_FULL);
    assert_int_equal(client_gate_enter(g, "a", 1), 0); /* forced: counted past the bounds */
    client_gate_leave(g, "a");
    assert_int_equal(client_gate_enter(g, "c", 0), CLIENT_GATE_FULL); /* a 2, b 1 */
    client_gate_leave(g, "a");
    assert_int_equal(client_gate_enter(g, "c", 0), 0);
    assert_int_equal(client_gate_enter(g, "a", 0), CLIENT_GATE_FULL);
    client_gate_leave(g, "nobody"); /* no effect */
    client_gate_leave(g, "b");
    client_gate_leave(g, "c");
    assert_int_equal(client_gate_enter(g, "a", 0), 0);
    assert_int_equal(client_gate_enter(g, "a", 0), CLIENT_GATE_KEY_FULL);
    assert_int_equal(client_gate_enter(g, "b", 0), 0);
    client_gate_free(g); /* entries still in are freed */

    g = client_gate_new(0, 0); /* no bounds */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(client_gate_enter(g, "a", 0), 0);
    client_gate_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_last_hop_of_a_trusted_proxy_is_the_client),
        cmocka_unit_test(test_bad_proxy_lists_are_refused_with_the_entry),
        cmocka_unit_test(test_failures_empty_the_bucket_and_time_refills_it),
        cmocka_unit_test(test_gates_bound_each_key_and_the_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
