/*
 * core/err: error text and aborting allocation wrappers.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const err_text[SIMAP_ERR_MAX] = {
    [SIMAP_OK] = "success",
    [SIMAP_ENOMEM] = "out of memory",
    [SIMAP_EINVAL] = "invalid argument",
    [SIMAP_EPROTO] = "protocol error",
    [SIMAP_ETIMEDOUT] = "timed out",
    [SIMAP_EIO] = "input/output error",
    [SIMAP_ETOOBIG] = "too big",
    [SIMAP_ECONN] = "not connected",
    [SIMAP_ENOTFOUND] = "not found",
    [SIMAP_EAUTH] = "authentication failed",
    [SIMAP_ECRYPTO] = "cryptographic failure",
    [SIMAP_ESTATE] = "invalid state",
    [SIMAP_ESHUTDOWN] = "shutting down",
    [SIMAP_EREPLY] = "error reply",
    [SIMAP_EREPLICAS] = "too few replicas acknowledged the write",
};

const char *err_str(int code)
{
    if (code < 0)
        code = -code;
    if (code >= SIMAP_ERR_MAX)
        return "unknown error";
    return err_text[code];
}

static void oom(size_t n)
{
    fprintf(stderr, "superimap: out of memory allocating %zu bytes\n", n);
    fflush(stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void xfree(void *p)
{
    free(p);
}
