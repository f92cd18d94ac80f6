/*
 * core/err: the one error enumeration of superimap, its text, and the
 * allocation wrappers that abort on out-of-memory (as Redis' zmalloc does),
 * so no caller ever checks for NULL.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_ERR_H
#define CORE_ERR_H

#include <stddef.h>

/*
 * Functions returning int give 0 on success or the negation of one of these.
 * Resumable parsers may also return a positive "need more input" value of
 * their own (IMAP_AGAIN), never one of these.
 */
enum simap_err {
    SIMAP_OK = 0,
    SIMAP_ENOMEM,    /* allocation failed */
    SIMAP_EINVAL,    /* bad argument or bad input value */
    SIMAP_EPROTO,    /* peer broke its protocol */
    SIMAP_ETIMEDOUT, /* a deadline passed */
    SIMAP_EIO,       /* system call or socket failure */
    SIMAP_ETOOBIG,   /* a bounded buffer or field would overflow */
    SIMAP_ECONN,     /* not connected, or the connection was lost */
    SIMAP_ENOTFOUND, /* no such key, script or record */
    SIMAP_EAUTH,     /* authentication refused */
    SIMAP_ECRYPTO,   /* encryption, decryption or verification failed */
    SIMAP_ESTATE,    /* call not valid in the object's current state */
    SIMAP_ESHUTDOWN, /* object is shutting down; request dropped */
    SIMAP_EREPLY,    /* server answered with an error reply */
    SIMAP_EREPLICAS, /* too few Redis replicas acknowledged a write in time */
    SIMAP_ERR_MAX
};

/* Returns a static description of code (positive or negative); never NULL. */
const char *err_str(int code);

/*
 * Allocation wrappers: on failure they print one line to stderr and abort().
 * xfree() accepts NULL. xstrdup() and xstrndup() return a new string.
 */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void xfree(void *p);

#endif
