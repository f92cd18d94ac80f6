/*
 * core/redis_url: parses SUPERIMAP_REDIS_URL for both Redis clients.
 *
 *   redis://[[user]:password@]host[:port][/db]    (port 6379, db 0 by default)
 *   unix:///path/to/redis.sock[?db=N]
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_REDIS_URL_H
#define CORE_REDIS_URL_H

#include <stddef.h>

struct redis_addr {
    int is_unix; /* 1: path is set; 0: host and port are */
    char host[256];
    int port;
    char path[256];
    int db;             /* SELECTed after connecting when not 0 */
    char password[256]; /* AUTH after connecting when not empty */
};

/* Parses url into out. password, when not NULL and not empty, overrides one in
 * the URL. Returns 0, or -SIMAP_EINVAL with the reason in err. */
int redis_url_parse(const char *url, const char *password, struct redis_addr *out, char *err,
                    size_t errlen);

/* Writes "host:port/db" or "unix:path" (never the password) into out. */
void redis_addr_describe(const struct redis_addr *a, char *out, size_t outlen);

#endif
