/*
 * core/netguard: SSRF address classifier (see netguard.h for the table).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/netguard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* One IPv4 range: the address as a host-order integer and the prefix length. */
struct range4 {
    uint32_t net;
    int bits;
    enum netguard_class cls;
};

#define V4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

/* Most specific first: the first match wins. */
static const struct range4 ranges4[] = {
    /* Credential and metadata endpoints, as each provider documents them. */
    {V4(169, 254, 169, 254), 32, NETGUARD_METADATA}, /* AWS, GCP, Azure, OCI, OpenStack ... */
    {V4(169, 254, 170, 2), 32, NETGUARD_METADATA},   /* AWS ECS task credentials */
    {V4(169, 254, 170, 23), 32, NETGUARD_METADATA},  /* AWS EKS Pod Identity agent */
    {V4(169, 254, 0, 23), 32, NETGUARD_METADATA},    /* Tencent Cloud */
    {V4(100, 100, 100, 200), 32, NETGUARD_METADATA}, /* Alibaba Cloud */
    {V4(168, 63, 129, 16), 32, NETGUARD_METADATA},   /* Azure WireServer (a public address) */
    {V4(255, 255, 255, 255), 32, NETGUARD_RESERVED}, /* limited broadcast */
    {V4(0, 0, 0, 0), 8, NETGUARD_UNSPECIFIED},
    {V4(127, 0, 0, 0), 8, NETGUARD_LOOPBACK},
    {V4(10, 0, 0, 0), 8, NETGUARD_PRIVATE},
    {V4(172, 16, 0, 0), 12, NETGUARD_PRIVATE},
    {V4(192, 168, 0, 0), 16, NETGUARD_PRIVATE},
    {V4(169, 254, 0, 0), 16, NETGUARD_LINK_LOCAL},
    {V4(100, 64, 0, 0), 10, NETGUARD_CGNAT},
    {V4(224, 0, 0, 0), 4, NETGUARD_MULTICAST},
    {V4(240, 0, 0, 0), 4, NETGUARD_RESERVED},
    {V4(192, 0, 0, 0), 24, NETGUARD_RESERVED},    /* IETF protocol assignments */
    {V4(192, 0, 2, 0), 24, NETGUARD_RESERVED},    /* TEST-NET-1 */
    {V4(192, 88, 99, 0), 24, NETGUARD_RESERVED},  /* 6to4 relay anycast (deprecated) */
    {V4(198, 18, 0, 0), 15, NETGUARD_RESERVED},   /* benchmarking */
    {V4(198, 51, 100, 0), 24, NETGUARD_RESERVED}, /* TEST-NET-2 */
    {V4(203, 0, 113, 0), 24, NETGUARD_RESERVED},  /* TEST-NET-3 */
};

static enum netguard_class classify4(uint32_t a)
{
    for (size_t i = 0; i < sizeof ranges4 / sizeof ranges4[0]; i++) {
        uint32_t mask = ranges4[i].bits == 0 ? 0 : 0xffffffffu << (32 - ranges4[i].bits);
        if ((a & mask) == ranges4[i].net)
            return ranges4[i].cls;
    }
    return NETGUARD_PUBLIC;
}

static uint32_t load4(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* 1 when the first bits of a equal those of prefix (bits <= 128). */
static int has_prefix(const unsigned char *a, const unsigned char *prefix, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, prefix, (size_t)bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & mask) == (prefix[bytes] & mask);
}

struct range6 {
    unsigned char net[16];
    int bits;
    enum netguard_class cls;
};

static const struct range6 ranges6[] = {
    {{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}, 128, NETGUARD_METADATA},
    {{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x23}, 128, NETGUARD_METADATA},
    {{0}, 128, NETGUARD_UNSPECIFIED},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, NETGUARD_LOOPBACK},
    {{0xfc}, 7, NETGUARD_PRIVATE},
    {{0xfe, 0x80}, 10, NETGUARD_LINK_LOCAL},
    {{0xfe, 0xc0}, 10, NETGUARD_RESERVED}, /* site-local (deprecated) */
    {{0xff}, 8, NETGUARD_MULTICAST},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, NETGUARD_RESERVED},          /* documentation */
    {{0x3f, 0xff}, 20, NETGUARD_RESERVED},                      /* documentation (RFC 9637) */
    {{0x01, 0x00}, 64, NETGUARD_RESERVED},                      /* discard-only */
    {{0x01, 0x00, 0, 0, 0, 0, 0, 0x01}, 64, NETGUARD_RESERVED}, /* dummy prefix (IANA, 2025) */
    /* IETF protocol assignments: Teredo, benchmarking, ORCHID(v2), AMT, AS112, DRIP. */
    {{0x20, 0x01, 0x00, 0x00}, 23, NETGUARD_RESERVED},
    {{0x5f, 0x00}, 16, NETGUARD_RESERVED}, /* SRv6 SIDs (RFC 9602) */
};

static enum netguard_class classify6(const unsigned char *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char translated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const unsigned char zero12[12] = {0};
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const unsigned char nat64_local[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
    for (size_t i = 0; i < sizeof ranges6 / sizeof ranges6[0]; i++)
        if (has_prefix(a, ranges6[i].net, ranges6[i].bits))
            return ranges6[i].cls;
    /* Addresses that carry an IPv4 address: judge the IPv4 one. */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, translated, 12) == 0 ||
        memcmp(a, nat64, 12) == 0) /* ::ffff:0:a.b.c.d: IPv4-translated (RFC 2765) */
        return classify4(load4(a + 12));
    if (memcmp(a, zero12, 12) == 0) /* IPv4-compatible ::a.b.c.d (::/96 minus :: and ::1) */
        return classify4(load4(a + 12));
    if (memcmp(a, nat64_local, 6) == 0) /* 64:ff9b:1::/48, RFC 8215: IPv4 in the last bytes */
        return classify4(load4(a + 12));
    if (a[0] == 0x20 && a[1] == 0x02) /* 6to4 2002:AABB:CCDD::/48 */
        return classify4(load4(a + 2));
    return NETGUARD_PUBLIC;
}

enum netguard_class netguard_classify_raw(const void *addr, size_t len)
{
    if (addr == NULL)
        return NETGUARD_INVALID;
    if (len == 4)
        return classify4(load4(addr));
    if (len == 16)
        return classify6(addr);
    return NETGUARD_INVALID;
}

enum netguard_class netguard_classify(const struct sockaddr *sa, size_t salen)
{
    if (sa == NULL)
        return NETGUARD_INVALID;
    if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        return netguard_classify_raw(&in.sin_addr, 4);
    }
    if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        return netguard_classify_raw(&in6.sin6_addr, 16);
    }
    return NETGUARD_INVALID;
}

enum netguard_class netguard_classify_text(const char *addr)
{
    unsigned char buf[16];
    if (addr == NULL)
        return NETGUARD_INVALID;
    if (inet_pton(AF_INET, addr, buf) == 1)
        return netguard_classify_raw(buf, 4);
    if (inet_pton(AF_INET6, addr, buf) == 1)
        return netguard_classify_raw(buf, 16);
    return NETGUARD_INVALID;
}

/* The value of digit c in base, or -1. */
static int digit(char c, int base)
{
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : 99;
    return d < base ? d : -1;
}

/* An IPv4 address in the numbers-and-dots forms inet_aton() (and libcurl's
 * URL parser) take: one to four parts, each decimal, octal (leading 0) or
 * hex (0x), the last filling the remaining bytes. 0 or -1. */
static int parse4_loose(const char *s, size_t n, uint32_t *out)
{
    uint64_t part[4];
    int np = 0;
    size_t i = 0;
    for (;;) {
        if (np == 4 || i >= n)
            return -1;
        int base = 10;
        if (s[i] == '0' && i + 1 < n && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
            base = 16;
            i += 2;
        } else if (s[i] == '0' && i + 1 < n && s[i + 1] != '.') {
            base = 8;
            i++;
        }
        size_t start = i;
        uint64_t v = 0;
        for (; i < n && s[i] != '.'; i++) {
            int d = digit(s[i], base);
            if (d < 0)
                return -1;
            v = v * (uint64_t)base + (uint64_t)d;
            if (v > 0xffffffffu)
                return -1;
        }
        if (i == start && base == 16)
            return -1;
        part[np++] = v;
        if (i == n)
            break;
        i++; /* the dot */
    }
    uint64_t max_last = np == 1 ? 0xffffffffu : np == 2 ? 0xffffffu : np == 3 ? 0xffffu : 0xffu;
    uint64_t a = 0;
    for (int k = 0; k < np - 1; k++) {
        if (part[k] > 255)
            return -1;
        a |= part[k] << (24 - 8 * k);
    }
    if (part[np - 1] > max_last)
        return -1;
    *out = (uint32_t)(a | part[np - 1]);
    return 0;
}

enum netguard_class netguard_classify_url_host(const char *url)
{
    const char *p = url == NULL ? NULL : strstr(url, "://");
    if (p == NULL)
        return NETGUARD_INVALID;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    size_t from = 0; /* after the userinfo's last '@' */
    for (size_t i = 0; i < auth; i++)
        if (p[i] == '@')
            from = i + 1;
    char host[256];
    size_t n = 0;
    for (size_t i = from; i < auth && n < sizeof host - 1; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < auth && (hi = digit(p[i + 1], 16)) >= 0 &&
            (lo = digit(p[i + 2], 16)) >= 0) {
            host[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            host[n++] = p[i];
        }
    }
    host[n] = '\0';
    n = strlen(host); /* a decoded NUL ends it */
    unsigned char a6[16];
    if (host[0] == '[') {
        size_t end = strcspn(host, "]%");
        if (end >= n)
            return NETGUARD_INVALID;
        host[end] = '\0';
        return inet_pton(AF_INET6, host + 1, a6) == 1 ? netguard_classify_raw(a6, 16)
                                                      : NETGUARD_INVALID;
    }
    n = strcspn(host, ":"); /* the port */
    uint32_t a4;
    if (parse4_loose(host, n, &a4) < 0)
        return NETGUARD_INVALID;
    unsigned char b[4] = {(unsigned char)(a4 >> 24), (unsigned char)(a4 >> 16),
                          (unsigned char)(a4 >> 8), (unsigned char)a4};
    return netguard_classify_raw(b, 4);
}

int netguard_allowed(enum netguard_class c, int allow_private)
{
    if (c == NETGUARD_PUBLIC)
        return 1;
    if (c == NETGUARD_METADATA || c == NETGUARD_INVALID)
        return 0;
    return allow_private != 0;
}

const char *netguard_class_str(enum netguard_class c)
{
    switch (c) {
    case NETGUARD_PUBLIC:
        return "public";
    case NETGUARD_UNSPECIFIED:
        return "unspecified (0.0.0.0/8, ::)";
    case NETGUARD_LOOPBACK:
        return "loopback";
    case NETGUARD_PRIVATE:
        return "private (RFC 1918 / unique local)";
    case NETGUARD_LINK_LOCAL:
        return "link-local";
    case NETGUARD_METADATA:
        return "cloud metadata";
    case NETGUARD_CGNAT:
        return "carrier-grade NAT (100.64.0.0/10)";
    case NETGUARD_MULTICAST:
        return "multicast";
    case NETGUARD_RESERVED:
        return "reserved";
    case NETGUARD_INVALID:
        break;
    }
    return "not an IP address";
}
