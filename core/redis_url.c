/*
 * core/redis_url: Redis address parsing.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static int fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return -SIMAP_EINVAL;
}

static int parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int copy(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

int redis_url_parse(const char *url, const char *password, struct redis_addr *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    long v;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        size_t n = q ? (size_t)(q - path) : strlen(path);
        if (n == 0 || path[0] != '/')
            return fail(err, errlen, "unix:// needs an absolute socket path (unix:///path)");
        if (copy(out->path, sizeof out->path, path, n) < 0)
            return fail(err, errlen, "socket path too long");
        if (q != NULL) {
            if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), 1000000, &v) < 0)
                return fail(err, errlen, "the only unix:// parameter is ?db=<number>");
            out->db = (int)v;
        }
        out->is_unix = 1;
    } else if (strncmp(url, "redis://", 8) == 0) {
        const char *p = url + 8;
        const char *at = strrchr(p, '@');
        if (at != NULL) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            if (colon == NULL)
                return fail(err, errlen,
                            "credentials must be written :password@ or user:password@");
            if (copy(out->password, sizeof out->password, colon + 1, (size_t)(at - colon - 1)) < 0)
                return fail(err, errlen, "password too long");
            p = at + 1;
        }
        const char *slash = strchr(p, '/');
        size_t hp = slash ? (size_t)(slash - p) : strlen(p);
        const char *host = p;
        size_t hostlen = hp;
        const char *portp = NULL;
        if (hp > 0 && host[0] == '[') {
            const char *close = memchr(host, ']', hp);
            if (close == NULL)
                return fail(err, errlen, "unterminated [IPv6] host");
            host++;
            hostlen = (size_t)(close - host);
            if (close + 1 < p + hp) {
                if (close[1] != ':')
                    return fail(err, errlen, "expected :port after [IPv6] host");
                portp = close + 2;
            }
        } else {
            const char *colon = memchr(host, ':', hp);
            if (colon != NULL) {
                hostlen = (size_t)(colon - host);
                portp = colon + 1;
            }
        }
        if (hostlen == 0)
            return fail(err, errlen, "missing host (redis://host:port/db)");
        if (copy(out->host, sizeof out->host, host, hostlen) < 0)
            return fail(err, errlen, "host too long");
        if (portp != NULL) {
            if (parse_uint(portp, (size_t)(p + hp - portp), 65535, &v) < 0 || v == 0)
                return fail(err, errlen, "port must be a number from 1 to 65535");
            out->port = (int)v;
        }
        if (slash != NULL && slash[1] != '\0') {
            if (parse_uint(slash + 1, strlen(slash + 1), 1000000, &v) < 0)
                return fail(err, errlen, "database must be a number (redis://host:port/<db>)");
            out->db = (int)v;
        }
    } else {
        return fail(err, errlen, "must start with redis:// or unix://");
    }
    if (password != NULL && *password != '\0' &&
        copy(out->password, sizeof out->password, password, strlen(password)) < 0)
        return fail(err, errlen, "password too long");
    return 0;
}

void redis_addr_describe(const struct redis_addr *a, char *out, size_t outlen)
{
    if (a->is_unix)
        snprintf(out, outlen, "unix:%s", a->path);
    else
        snprintf(out, outlen, "%s:%d/%d", a->host, a->port, a->db);
}
