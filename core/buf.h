/*
 * core/buf: a growable byte buffer with a hard maximum (curl's dynbuf).
 * Every byte from the network, an IMAP literal, a webhook or an HTTP body goes
 * through one, so an untrusted peer can never make us allocate past the bound
 * chosen at init.
 *
 * The contents are always NUL-terminated (the NUL is not counted in len), so a
 * buffer holding text can be passed to string functions.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_BUF_H
#define CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* Visible so it can be embedded; change it only through buf_*(). */
struct buf {
    char *data; /* NULL until the first append; NUL-terminated after */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* hard limit on len */
};

/* Sets up an empty buffer that may hold at most max bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Releases the storage; the buffer stays usable (empty) with the same max. */
void buf_free(struct buf *b);

/* Empties the buffer, keeping its storage. */
void buf_reset(struct buf *b);

/* Appends n bytes. Returns 0, or -SIMAP_ETOOBIG (buffer unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string. Same returns as buf_append(). */
int buf_puts(struct buf *b, const char *s);

/* Appends formatted text. Same returns as buf_append(). */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Removes the first n bytes (n > len removes all), moving the rest down. */
void buf_consume(struct buf *b, size_t n);

/* Makes room for at least n more bytes without changing len: returns a
 * pointer to the free space, or NULL when len + n would exceed max. Call
 * buf_commit() with the number of bytes actually written there. */
char *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);

/* Frees the storage when the buffer is empty (idle sessions keep nothing). */
void buf_shrink(struct buf *b);

/* Returns the contents as a new NUL-terminated string and leaves the buffer
 * empty; the caller xfree()s it. Never NULL. */
char *buf_steal(struct buf *b);

#endif
