/*
 * proto/csv: a reader of comma-separated values as RFC 4180 describes them
 * and as PostgreSQL's COPY ... CSV HEADER (psql's \copy) writes them: fields
 * separated by commas, records by LF or CRLF; a field in double quotes may
 * hold commas, quotes (doubled: "") and line breaks. An unquoted empty field
 * is NULL, a quoted empty one ("") the empty string, as COPY tells them
 * apart.
 *
 * The input is untrusted (files exported from another system): the reader
 * bounds the fields per record and the bytes per record, and never reads
 * past the buffer it is given. Pure: no I/O, no logging.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef PROTO_CSV_H
#define PROTO_CSV_H

#include <stddef.h>

/* Bounds of one record. */
#define CSV_MAX_FIELDS 256
#define CSV_MAX_RECORD ((size_t)1 << 20)

/* Opaque: the input, the position and the fields of the last record. */
struct csv_reader;

/* Returns a reader over len bytes at data, which it borrows: they must stay
 * valid and unchanged until csv_free(). */
struct csv_reader *csv_new(const char *data, size_t len);

/* Frees the reader and the last record's fields. Accepts NULL. */
void csv_free(struct csv_reader *r);

/*
 * Reads the next record. Returns 1 with a record (csv_count() fields), 0 at
 * the end of the input, or a negative error: -SIMAP_EPROTO (a quote inside
 * an unquoted field, text after a closing quote, input ending inside
 * quotes) or -SIMAP_ETOOBIG (more than CSV_MAX_FIELDS fields or
 * CSV_MAX_RECORD bytes). csv_error() then says what and csv_line() where;
 * every later call returns the same error.
 */
int csv_next(struct csv_reader *r);

/* Fields of the last record read. */
size_t csv_count(const struct csv_reader *r);

/* Field i (0 <= i < csv_count()) of the last record, NUL-terminated, with
 * its length in *len when len is not NULL (a field may hold NUL bytes: then
 * strlen() is shorter). "" for NULL. Valid until the next csv_next(). */
const char *csv_field(const struct csv_reader *r, size_t i, size_t *len);

/* 1 when field i is NULL (unquoted and empty), else 0. */
int csv_is_null(const struct csv_reader *r, size_t i);

/* Line number (from 1) where the last record, or the error, began. */
size_t csv_line(const struct csv_reader *r);

/* Why the last csv_next() failed, or "". */
const char *csv_error(const struct csv_reader *r);

#endif
