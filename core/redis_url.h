/*
 * core/redis_url: parses SUPERIMAP_REDIS_URL for both Redis clients.
 *
 *   redis://[[user]:password@]host[:port][/db]    (port 6379, db 0 by default)
 *   unix:///path/to/redis.sock[?db=N]
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[?db=N]
 *
 * The last names Redis Sentinels (port 26379 by default) and the master
 * they watch: the primary's address is asked of them (core/sentinel), and
 * asked again whenever the link is lost or reaches a replica. The password
 * is the primary's; the sentinels' own, if any, comes from
 * SUPERIMAP_REDIS_SENTINEL_PASSWORD.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_REDIS_URL_H
#define CORE_REDIS_URL_H

#include <stddef.h>

#define REDIS_SENTINELS_MAX 8

struct redis_sentinel {
    char host[256];
    int port;
};

struct redis_addr {
    int is_unix; /* 1: path is set; 0: host and port are */
    char host[256];
    int port;
    char path[256];
    int db;             /* SELECTed after connecting when not 0 */
    char password[256]; /* AUTH after connecting when not empty */
    /* redis+sentinel://: host and port are unset until the sentinels name
     * the primary. */
    int nsentinels;
    struct redis_sentinel sentinels[REDIS_SENTINELS_MAX];
    char master[128];
    char sentinel_password[256]; /* AUTH to the sentinels when not empty */
};

/* Parses url into out. password, when not NULL and not empty, overrides one in
 * the URL. Returns 0, or -SIMAP_EINVAL with the reason in err. */
int redis_url_parse(const char *url, const char *password, struct redis_addr *out, char *err,
                    size_t errlen);

/* Writes "host:port/db", "unix:path" or "sentinel:MASTER@host:port,...
 * (primary host:port/db)" (never a password) into out. */
void redis_addr_describe(const struct redis_addr *a, char *out, size_t outlen);

#endif
