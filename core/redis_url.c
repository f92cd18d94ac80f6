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

/* Parses "host[:port]" or "[v6]:port" of n bytes at p into host and, when a
 * port is given, *port. */
static int parse_host_port(const char *p, size_t n, char *host, size_t hostcap, int *port,
                           char *err, size_t errlen)
{
    long v;
    const char *h = p;
    size_t hostlen = n;
    const char *portp = NULL;
    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        if (close == NULL)
            return fail(err, errlen, "unterminated [IPv6] host");
        h++;
        hostlen = (size_t)(close - h);
        if (close + 1 < p + n) {
            if (close[1] != ':')
                return fail(err, errlen, "expected :port after [IPv6] host");
            portp = close + 2;
        }
    } else {
        const char *colon = memchr(h, ':', n);
        if (colon != NULL) {
            hostlen = (size_t)(colon - h);
            portp = colon + 1;
        }
    }
    if (hostlen == 0)
        return fail(err, errlen, "missing host (redis://host:port/db)");
    if (copy(host, hostcap, h, hostlen) < 0)
        return fail(err, errlen, "host too long");
    if (portp != NULL) {
        if (parse_uint(portp, (size_t)(p + n - portp), 65535, &v) < 0 || v == 0)
            return fail(err, errlen, "port must be a number from 1 to 65535");
        *port = (int)v;
    }
    return 0;
}

/* The credentials of "[[user]:password@]" at the start of *p, if any, into
 * password; *p moves past them. */
static int parse_credentials(const char **p, const char *end, char *password, size_t cap, char *err,
                             size_t errlen)
{
    const char *at = NULL;
    for (const char *q = *p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at == NULL)
        return 0;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    if (colon == NULL)
        return fail(err, errlen, "credentials must be written :password@ or user:password@");
    if (copy(password, cap, colon + 1, (size_t)(at - colon - 1)) < 0)
        return fail(err, errlen, "password too long");
    *p = at + 1;
    return 0;
}

/* redis+sentinel://[cred@]host[:port][,host[:port]...]/MASTER[?db=N] after
 * the scheme, at p. */
static int parse_sentinel(const char *p, struct redis_addr *out, char *err, size_t errlen)
{
    const char *slash = strchr(p, '/');
    if (slash == NULL || slash[1] == '\0' || slash[1] == '?')
        return fail(err, errlen,
                    "redis+sentinel:// needs the master's name (redis+sentinel://host:port/NAME)");
    int rc = parse_credentials(&p, slash, out->password, sizeof out->password, err, errlen);
    if (rc < 0)
        return rc;
    while (p < slash) {
        const char *comma = memchr(p, ',', (size_t)(slash - p));
        const char *end = comma ? comma : slash;
        if (out->nsentinels == REDIS_SENTINELS_MAX)
            return fail(err, errlen, "at most 8 sentinels");
        struct redis_sentinel *sn = &out->sentinels[out->nsentinels++];
        sn->port = 26379;
        rc = parse_host_port(p, (size_t)(end - p), sn->host, sizeof sn->host, &sn->port, err,
                             errlen);
        if (rc < 0)
            return rc;
        if (comma != NULL && comma + 1 == slash)
            return fail(err, errlen, "empty sentinel host after ','");
        p = comma ? comma + 1 : slash;
    }
    if (out->nsentinels == 0)
        return fail(err, errlen, "redis+sentinel:// needs at least one sentinel host");
    const char *name = slash + 1;
    const char *q = strchr(name, '?');
    size_t n = q ? (size_t)(q - name) : strlen(name);
    if (copy(out->master, sizeof out->master, name, n) < 0)
        return fail(err, errlen, "master name too long");
    for (size_t i = 0; i < n; i++)
        if (name[i] <= ' ' || name[i] == '/' || (unsigned char)name[i] >= 0x7f)
            return fail(err, errlen, "master name: letters, digits and punctuation only");
    long v;
    if (q != NULL) {
        if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), 1000000, &v) < 0)
            return fail(err, errlen, "the only redis+sentinel:// parameter is ?db=<number>");
        out->db = (int)v;
    }
    out->port = 0;
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
        int rc =
            parse_credentials(&p, p + strlen(p), out->password, sizeof out->password, err, errlen);
        if (rc < 0)
            return rc;
        const char *slash = strchr(p, '/');
        size_t hp = slash ? (size_t)(slash - p) : strlen(p);
        rc = parse_host_port(p, hp, out->host, sizeof out->host, &out->port, err, errlen);
        if (rc < 0)
            return rc;
        if (slash != NULL && slash[1] != '\0') {
            if (parse_uint(slash + 1, strlen(slash + 1), 1000000, &v) < 0)
                return fail(err, errlen, "database must be a number (redis://host:port/<db>)");
            out->db = (int)v;
        }
    } else if (strncmp(url, "redis+sentinel://", 17) == 0) {
        int rc = parse_sentinel(url + 17, out, err, errlen);
        if (rc < 0)
            return rc;
    } else {
        return fail(err, errlen, "must start with redis://, unix:// or redis+sentinel://");
    }
    if (password != NULL && *password != '\0' &&
        copy(out->password, sizeof out->password, password, strlen(password)) < 0)
        return fail(err, errlen, "password too long");
    return 0;
}

void redis_addr_describe(const struct redis_addr *a, char *out, size_t outlen)
{
    if (a->nsentinels > 0) {
        int n = snprintf(out, outlen, "sentinel:%s@", a->master);
        for (int i = 0; i < a->nsentinels && n >= 0 && (size_t)n < outlen; i++)
            n += snprintf(out + n, outlen - (size_t)n, "%s%s:%d", i ? "," : "",
                          a->sentinels[i].host, a->sentinels[i].port);
        if (a->port > 0 && n >= 0 && (size_t)n < outlen)
            snprintf(out + n, outlen - (size_t)n, " (primary %s:%d/%d)", a->host, a->port, a->db);
        return;
    }
    if (a->is_unix)
        snprintf(out, outlen, "unix:%s", a->path);
    else
        snprintf(out, outlen, "%s:%d/%d", a->host, a->port, a->db);
}
