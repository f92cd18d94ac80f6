/*
 * core/netguard: the SSRF guard's address classifier. The dispatcher POSTs to
 * URLs that partners choose; before it connects, the resolved address is
 * classified here (libcurl's CURLOPT_OPENSOCKETFUNCTION, so DNS answers that
 * change between checks, "DNS rebinding", cannot slip through), and anything
 * but a public unicast address is refused unless the operator allows private
 * ranges (SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1, for tests and local demos).
 *
 * Ranges (IANA IPv4 and IPv6 Special-Purpose Address Registries, RFC 6890):
 *
 *   class         IPv4                                    IPv6
 *   unspecified   0.0.0.0/8 ("this network")              ::/128
 *   loopback      127.0.0.0/8                             ::1/128
 *   private       10/8, 172.16/12, 192.168/16 (RFC 1918)  fc00::/7 (unique local)
 *   link-local    169.254.0.0/16                          fe80::/10
 *   metadata      169.254.169.254 (AWS, GCP, Azure, OCI,  fd00:ec2::254 (AWS IMDS),
 *                 OpenStack), 169.254.170.2 (AWS ECS),    fd00:ec2::23 (EKS Pod
 *                 169.254.170.23 (EKS Pod Identity),      Identity)
 *                 169.254.0.23 (Tencent), 100.100.100.200
 *                 (Alibaba), 168.63.129.16 (Azure
 *                 WireServer, a public address)
 *   cgnat         100.64.0.0/10 (RFC 6598)                -
 *   multicast     224.0.0.0/4                             ff00::/8
 *   reserved      240/4, 255.255.255.255, 192.0.0/24,     fec0::/10 (site-local),
 *                 192.0.2/24, 198.18/15, 198.51.100/24,   2001:db8::/32, 3fff::/20,
 *                 203.0.113/24, 192.88.99/24              100::/64, 100:0:0:1::/64,
 *                                                         2001::/23, 5f00::/16
 *
 * Metadata addresses are refused even when private ranges are allowed.
 * IPv6 addresses that carry an IPv4 address are judged by it: IPv4-mapped
 * ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, IPv4-compatible
 * ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4
 * 2002:AABB:CCDD::/48. (Teredo 2001::/32 embeds an obfuscated server
 * address, not the target; it is reserved, with the rest of 2001::/23.)
 *
 * Pure functions: no network, no global state; safe from any thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_NETGUARD_H
#define CORE_NETGUARD_H

#include <stddef.h>

struct sockaddr;

enum netguard_class {
    NETGUARD_PUBLIC = 0,
    NETGUARD_UNSPECIFIED,
    NETGUARD_LOOPBACK,
    NETGUARD_PRIVATE,
    NETGUARD_LINK_LOCAL,
    NETGUARD_METADATA,
    NETGUARD_CGNAT,
    NETGUARD_MULTICAST,
    NETGUARD_RESERVED,
    NETGUARD_INVALID, /* not an IPv4 or IPv6 address */
};

/* Classifies a 4-byte IPv4 or 16-byte IPv6 address in network byte order.
 * len other than 4 or 16 gives NETGUARD_INVALID. */
enum netguard_class netguard_classify_raw(const void *addr, size_t len);

/* Classifies a struct sockaddr_in or sockaddr_in6 of salen bytes (the port is
 * ignored); any other family, or a short length, is NETGUARD_INVALID. */
enum netguard_class netguard_classify(const struct sockaddr *sa, size_t salen);

/* Classifies a numeric address in text ("10.0.0.1", "::ffff:10.0.0.1"; no
 * brackets, no zone, no host names: nothing is resolved). Unparsable text is
 * NETGUARD_INVALID. */
enum netguard_class netguard_classify_text(const char *addr);

/* Classifies the host of an http:// or https:// URL when it is an IP address
 * literal in any form libcurl or a resolver reads as one: dotted decimal,
 * the short and numeric forms of inet_aton() (127.1, 2130706433,
 * 0177.0.0.1, 0x7f.0.0.1), or a bracketed IPv6 address (a zone after '%'
 * dropped); percent-encoding in the host is decoded first, userinfo and
 * port skipped. A host name, or a URL without a host, is NETGUARD_INVALID:
 * a name is judged when it is resolved, at connect time. */
enum netguard_class netguard_classify_url_host(const char *url);

/* Returns 1 when a connection to an address of class c may be made: a public
 * address always; with allow_private, every class except metadata (cloud
 * credential endpoints stay refused) and invalid. */
int netguard_allowed(enum netguard_class c, int allow_private);

/* A static, human-readable name of c for error messages ("loopback",
 * "private (RFC 1918 / unique local)"). Never NULL. */
const char *netguard_class_str(enum netguard_class c);

#endif
