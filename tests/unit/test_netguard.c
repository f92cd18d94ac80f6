/*
 * Unit tests of core/netguard: every special-purpose range of the SSRF guard,
 * both edges of each, IPv6 forms that carry an IPv4 address, sockaddr input
 * and the allow flag. Nothing here touches the network (addresses are parsed
 * with inet_pton, never resolved).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/netguard.h"

struct sample {
    const char *addr;
    enum netguard_class want;
};

static void check(const struct sample *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        enum netguard_class got = netguard_classify_text(s[i].addr);
        if (got != s[i].want)
            fail_msg("%s: got %s, want %s", s[i].addr, netguard_class_str(got),
                     netguard_class_str(s[i].want));
    }
}

#define CHECK(arr) check(arr, sizeof arr / sizeof arr[0])

static void test_rfc1918_ranges_and_their_edges_are_private(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"10.0.0.0", NETGUARD_PRIVATE},       {"10.0.0.1", NETGUARD_PRIVATE},
        {"10.255.255.255", NETGUARD_PRIVATE}, {"9.255.255.255", NETGUARD_PUBLIC},
        {"11.0.0.0", NETGUARD_PUBLIC},        {"172.16.0.0", NETGUARD_PRIVATE},
        {"172.31.255.255", NETGUARD_PRIVATE}, {"172.15.255.255", NETGUARD_PUBLIC},
        {"172.32.0.0", NETGUARD_PUBLIC},      {"192.168.0.0", NETGUARD_PRIVATE},
        {"192.168.1.1", NETGUARD_PRIVATE},    {"192.168.255.255", NETGUARD_PRIVATE},
        {"192.167.255.255", NETGUARD_PUBLIC}, {"192.169.0.0", NETGUARD_PUBLIC},
    };
    CHECK(s);
}

static void test_loopback_unspecified_and_link_local(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"127.0.0.1", NETGUARD_LOOPBACK},
        {"127.255.255.254", NETGUARD_LOOPBACK},
        {"128.0.0.0", NETGUARD_PUBLIC},
        {"126.255.255.255", NETGUARD_PUBLIC},
        {"0.0.0.0", NETGUARD_UNSPECIFIED},
        {"0.1.2.3", NETGUARD_UNSPECIFIED},
        {"1.0.0.0", NETGUARD_PUBLIC},
        {"169.254.0.1", NETGUARD_LINK_LOCAL},
        {"169.254.255.255", NETGUARD_LINK_LOCAL},
        {"169.253.255.255", NETGUARD_PUBLIC},
        {"169.255.0.0", NETGUARD_PUBLIC},
    };
    CHECK(s);
}

static void test_cloud_metadata_addresses(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"169.254.169.254", NETGUARD_METADATA},        {"169.254.169.253", NETGUARD_LINK_LOCAL},
        {"100.100.100.200", NETGUARD_METADATA},        {"fd00:ec2::254", NETGUARD_METADATA},
        {"::ffff:169.254.169.254", NETGUARD_METADATA},
    };
    CHECK(s);
    /* Metadata stays refused even when private ranges are allowed. */
    assert_false(netguard_allowed(NETGUARD_METADATA, 1));
    assert_false(netguard_allowed(NETGUARD_METADATA, 0));
}

/* The credential endpoints of container and pod identity services, and
 * Azure's WireServer: refused in every mode, like the instance metadata
 * address, although the first ones sit in link-local space (allowed with
 * private ranges) and the last is a public address. */
static void test_credential_endpoints_are_metadata_in_every_mode(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"169.254.170.2", NETGUARD_METADATA},
        {"169.254.170.3", NETGUARD_LINK_LOCAL},
        {"169.254.170.23", NETGUARD_METADATA},
        {"169.254.170.22", NETGUARD_LINK_LOCAL},
        {"169.254.0.23", NETGUARD_METADATA},
        {"fd00:ec2::23", NETGUARD_METADATA},
        {"fd00:ec2::22", NETGUARD_PRIVATE},
        {"168.63.129.16", NETGUARD_METADATA},
        {"168.63.129.15", NETGUARD_PUBLIC},
        {"168.63.129.17", NETGUARD_PUBLIC},
        {"::ffff:168.63.129.16", NETGUARD_METADATA},
        {"::ffff:0:169.254.170.2", NETGUARD_METADATA},
        {"64:ff9b::169.254.170.23", NETGUARD_METADATA},
    };
    CHECK(s);
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        enum netguard_class c = netguard_classify_text(s[i].addr);
        if (c == NETGUARD_METADATA && (netguard_allowed(c, 1) || netguard_allowed(c, 0)))
            fail_msg("%s allowed", s[i].addr);
    }
}

/* ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765) was judged as a public IPv6
 * address whatever IPv4 address it carried. */
static void test_ipv4_translated_form_is_judged_by_its_ipv4(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"::ffff:0:127.0.0.1", NETGUARD_LOOPBACK},
        {"::ffff:0:10.1.2.3", NETGUARD_PRIVATE},
        {"::ffff:0:169.254.169.254", NETGUARD_METADATA},
        {"0:0:0:0:ffff:0:a00:1", NETGUARD_PRIVATE},
        {"::ffff:0:8.8.8.8", NETGUARD_PUBLIC},
        {"::ffff:1:a00:1", NETGUARD_PUBLIC}, /* not the translated prefix */
    };
    CHECK(s);
}

/* IPv6 special-purpose registry entries added since the first table. */
static void test_ipv6_registry_entries(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"3fff::1", NETGUARD_RESERVED},    {"3fff:fff:ffff::1", NETGUARD_RESERVED},
        {"3fff:1000::1", NETGUARD_PUBLIC}, {"100:0:0:1::1", NETGUARD_RESERVED},
        {"100:0:0:2::1", NETGUARD_PUBLIC}, {"2001:2::1", NETGUARD_RESERVED},
        {"2001:20::1", NETGUARD_RESERVED}, {"2001:1ff:ffff::1", NETGUARD_RESERVED},
        {"2001:200::1", NETGUARD_PUBLIC},  {"5f00::1", NETGUARD_RESERVED},
        {"5f01::1", NETGUARD_PUBLIC},
    };
    CHECK(s);
}

static void test_cgnat_multicast_and_reserved(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"100.64.0.0", NETGUARD_CGNAT},         {"100.127.255.255", NETGUARD_CGNAT},
        {"100.63.255.255", NETGUARD_PUBLIC},    {"100.128.0.0", NETGUARD_PUBLIC},
        {"224.0.0.1", NETGUARD_MULTICAST},      {"239.255.255.255", NETGUARD_MULTICAST},
        {"223.255.255.255", NETGUARD_PUBLIC},   {"240.0.0.1", NETGUARD_RESERVED},
        {"255.255.255.255", NETGUARD_RESERVED}, {"192.0.2.10", NETGUARD_RESERVED},
        {"198.51.100.7", NETGUARD_RESERVED},    {"203.0.113.200", NETGUARD_RESERVED},
        {"198.18.0.1", NETGUARD_RESERVED},      {"198.19.255.255", NETGUARD_RESERVED},
        {"198.20.0.0", NETGUARD_PUBLIC},        {"192.0.0.8", NETGUARD_RESERVED},
    };
    CHECK(s);
}

static void test_public_addresses_pass(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"8.8.8.8", NETGUARD_PUBLIC},
        {"1.1.1.1", NETGUARD_PUBLIC},
        {"93.184.216.34", NETGUARD_PUBLIC},
        {"2606:4700:4700::1111", NETGUARD_PUBLIC},
        {"2a00:1450:4007:80e::200e", NETGUARD_PUBLIC},
        {"::ffff:8.8.8.8", NETGUARD_PUBLIC},
        {"64:ff9b::808:808", NETGUARD_PUBLIC},
        {"2002:808:808::1", NETGUARD_PUBLIC},
    };
    CHECK(s);
    assert_true(netguard_allowed(NETGUARD_PUBLIC, 0));
}

static void test_ipv6_special_ranges(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"::", NETGUARD_UNSPECIFIED},      {"::1", NETGUARD_LOOPBACK},
        {"fc00::1", NETGUARD_PRIVATE},     {"fd12:3456:789a::1", NETGUARD_PRIVATE},
        {"fbff:ffff::1", NETGUARD_PUBLIC}, {"fe00::1", NETGUARD_PUBLIC},
        {"fe80::1", NETGUARD_LINK_LOCAL},  {"febf:ffff::1", NETGUARD_LINK_LOCAL},
        {"fec0::1", NETGUARD_RESERVED},    {"ff02::1", NETGUARD_MULTICAST},
        {"ff0e::1", NETGUARD_MULTICAST},   {"2001:db8::1", NETGUARD_RESERVED},
        {"100::1", NETGUARD_RESERVED},     {"2001::1", NETGUARD_RESERVED},
        {"2001:10::1", NETGUARD_RESERVED},
    };
    CHECK(s);
}

static void test_ipv6_forms_carrying_ipv4_are_judged_by_it(void **state)
{
    (void)state;
    static const struct sample s[] = {
        {"::ffff:10.0.0.1", NETGUARD_PRIVATE},     {"::ffff:127.0.0.1", NETGUARD_LOOPBACK},
        {"::ffff:7f00:1", NETGUARD_LOOPBACK},      {"::ffff:192.168.1.1", NETGUARD_PRIVATE},
        {"::ffff:100.64.0.1", NETGUARD_CGNAT},     {"::10.0.0.1", NETGUARD_PRIVATE},
        {"::127.0.0.1", NETGUARD_LOOPBACK},        {"64:ff9b::a00:1", NETGUARD_PRIVATE},
        {"64:ff9b::127.0.0.1", NETGUARD_LOOPBACK}, {"64:ff9b:1::a9fe:a9fe", NETGUARD_METADATA},
        {"2002:a00:1::", NETGUARD_PRIVATE},        {"2002:7f00:1::1", NETGUARD_LOOPBACK},
        {"2002:a9fe:a9fe::", NETGUARD_METADATA},
    };
    CHECK(s);
}

static void test_sockaddr_input_and_invalid_input(void **state)
{
    (void)state;
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_port = htons(443);
    inet_pton(AF_INET, "172.20.1.2", &in.sin_addr);
    assert_int_equal(netguard_classify((struct sockaddr *)&in, sizeof in), NETGUARD_PRIVATE);
    inet_pton(AF_INET, "8.8.4.4", &in.sin_addr);
    assert_int_equal(netguard_classify((struct sockaddr *)&in, sizeof in), NETGUARD_PUBLIC);
    /* A short length is refused, not read past. */
    assert_int_equal(netguard_classify((struct sockaddr *)&in, 4), NETGUARD_INVALID);

    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    assert_int_equal(netguard_classify((struct sockaddr *)&in6, sizeof in6), NETGUARD_LOOPBACK);
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &in6.sin6_addr);
    assert_int_equal(netguard_classify((struct sockaddr *)&in6, sizeof in6), NETGUARD_PRIVATE);

    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(netguard_classify(&un, sizeof un), NETGUARD_INVALID);
    assert_int_equal(netguard_classify(NULL, 0), NETGUARD_INVALID);
    assert_int_equal(netguard_classify_text("localhost"), NETGUARD_INVALID);
    assert_int_equal(netguard_classify_text("[::1]"), NETGUARD_INVALID);
    assert_int_equal(netguard_classify_text("10.0.0"), NETGUARD_INVALID);
    assert_int_equal(netguard_classify_text(""), NETGUARD_INVALID);
    assert_int_equal(netguard_classify_text(NULL), NETGUARD_INVALID);
    assert_int_equal(netguard_classify_raw("abc", 3), NETGUARD_INVALID);
    assert_false(netguard_allowed(NETGUARD_INVALID, 1));
}

static void test_allow_flag_opens_private_classes_only(void **state)
{
    (void)state;
    for (int c = NETGUARD_PUBLIC; c <= NETGUARD_INVALID; c++) {
        int want_open = c != NETGUARD_METADATA && c != NETGUARD_INVALID;
        assert_int_equal(netguard_allowed((enum netguard_class)c, 1), want_open);
        assert_int_equal(netguard_allowed((enum netguard_class)c, 0), c == NETGUARD_PUBLIC);
        assert_non_null(netguard_class_str((enum netguard_class)c));
    }
    assert_string_equal(netguard_class_str(NETGUARD_LOOPBACK), "loopback");
}

/* The host of a URL, when it is an address literal in any encoding. */
static void test_url_hosts_in_every_encoding(void **state)
{
    (void)state;
    static const struct sample urls[] = {
        {"http://127.0.0.1/x", NETGUARD_LOOPBACK},
        {"https://127.0.0.1:8443/x?y#z", NETGUARD_LOOPBACK},
        {"http://127.1/", NETGUARD_LOOPBACK},
        {"http://127.0.1", NETGUARD_LOOPBACK},
        {"http://2130706433/", NETGUARD_LOOPBACK},
        {"http://0177.0.0.1/", NETGUARD_LOOPBACK},
        {"http://0x7f.0.0.1/", NETGUARD_LOOPBACK},
        {"http://0X7F000001/", NETGUARD_LOOPBACK},
        {"http://017700000001/", NETGUARD_LOOPBACK},
        {"http://%31%32%37.0.0.1/", NETGUARD_LOOPBACK},
        {"http://127.0.0.1%00.example.com/", NETGUARD_LOOPBACK},
        {"http://u:p@127.0.0.1/", NETGUARD_LOOPBACK},
        {"http://a@b@10.0.0.1/", NETGUARD_PRIVATE},
        {"http://0/", NETGUARD_UNSPECIFIED},
        {"http://0.0.0.0/", NETGUARD_UNSPECIFIED},
        {"http://169.254.169.254/latest", NETGUARD_METADATA},
        {"http://169.254.43518/", NETGUARD_METADATA},
        {"http://0xa9.0xfe.0xa9.0xfe/", NETGUARD_METADATA},
        {"http://2852039166/", NETGUARD_METADATA},
        {"http://[::1]/", NETGUARD_LOOPBACK},
        {"http://[::1]:8080/", NETGUARD_LOOPBACK},
        {"http://[::ffff:169.254.169.254]/", NETGUARD_METADATA},
        {"http://[::ffff:0:a9fe:a9fe]/", NETGUARD_METADATA},
        {"http://[fe80::1%25eth0]/", NETGUARD_LINK_LOCAL},
        {"http://[fd00:ec2::254]/", NETGUARD_METADATA},
        {"http://93.184.216.34/", NETGUARD_PUBLIC},
        {"http://[2606:2800:220:1:248:1893:25c8:1946]/", NETGUARD_PUBLIC},
        /* Names, and what is no address: judged when resolved. */
        {"http://localhost/", NETGUARD_INVALID},
        {"http://127.0.0.1./", NETGUARD_INVALID},
        {"http://127.0.0.1.nip.io/", NETGUARD_INVALID},
        {"http://256.0.0.1/", NETGUARD_INVALID},
        {"http://1.2.3.4.5/", NETGUARD_INVALID},
        {"http://08.0.0.1/", NETGUARD_INVALID},
        {"http://0x/", NETGUARD_INVALID},
        {"http://4294967296/", NETGUARD_INVALID},
        {"http://[::1/", NETGUARD_INVALID},
        {"http://[zz]/", NETGUARD_INVALID},
        {"http://", NETGUARD_INVALID},
        {"127.0.0.1", NETGUARD_INVALID},
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        enum netguard_class got = netguard_classify_url_host(urls[i].addr);
        if (got != urls[i].want)
            fail_msg("%s: got %s, want %s", urls[i].addr, netguard_class_str(got),
                     netguard_class_str(urls[i].want));
    }
    assert_int_equal(netguard_classify_url_host(NULL), NETGUARD_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc1918_ranges_and_their_edges_are_private),
        cmocka_unit_test(test_loopback_unspecified_and_link_local),
        cmocka_unit_test(test_cloud_metadata_addresses),
        cmocka_unit_test(test_credential_endpoints_are_metadata_in_every_mode),
        cmocka_unit_test(test_ipv4_translated_form_is_judged_by_its_ipv4),
        cmocka_unit_test(test_ipv6_registry_entries),
        cmocka_unit_test(test_cgnat_multicast_and_reserved),
        cmocka_unit_test(test_public_addresses_pass),
        cmocka_unit_test(test_ipv6_special_ranges),
        cmocka_unit_test(test_ipv6_forms_carrying_ipv4_are_judged_by_it),
        cmocka_unit_test(test_sockaddr_input_and_invalid_input),
        cmocka_unit_test(test_allow_flag_opens_private_classes_only),
        cmocka_unit_test(test_url_hosts_in_every_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
