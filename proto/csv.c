/*
 * proto/csv: RFC 4180 records as PostgreSQL's COPY CSV writes them (see
 * csv.h). One pass over the borrowed input; the fields of a record are
 * decoded (quotes undone) into one growing buffer, each field followed by a
 * NUL so callers may use it as a C string.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/csv.h"

#include <string.h>

#include "core/err.h"

struct field {
    size_t off, len; /* in text */
    int quoted;
};

struct csv_reader {
    const char *p, *end;
    size_t line;       /* line of the next byte */
    size_t start_line; /* line where the last record began */
    int err;
    const char *errstr;
    char *text; /* decoded fields, each NUL-terminated */
    size_t used, cap;
    struct field *fields;
    size_t nfields, fcap;
};

struct csv_reader *csv_new(const char *data, size_t len)
{
    struct csv_reader *r = xcalloc(1, sizeof *r);
    r->p = data;
    r->end = data + len;
    r->line = 1;
    r->errstr = "";
    return r;
}

void csv_free(struct csv_reader *r)
{
    if (r == NULL)
        return;
    xfree(r->text);
    xfree(r->fields);
    xfree(r);
}

static int fail(struct csv_reader *r, int err, const char *why)
{
    r->err = err;
    r->errstr = why;
    return err;
}

static int put(struct csv_reader *r, char c)
{
    if (r->used >= CSV_MAX_RECORD)
        return fail(r, -SIMAP_ETOOBIG, "record longer than 1 MiB");
    if (r->used == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->text = xrealloc(r->text, r->cap);
    }
    r->text[r->used++] = c;
    return 0;
}

static int begin_field(struct csv_reader *r)
{
    if (r->nfields == CSV_MAX_FIELDS)
        return fail(r, -SIMAP_ETOOBIG, "more than 256 fields");
    if (r->nfields == r->fcap) {
        r->fcap = r->fcap ? r->fcap * 2 : 16;
        r->fields = xrealloc(r->fields, r->fcap * sizeof *r->fields);
    }
    struct field *f = &r->fields[r->nfields++];
    f->off = r->used;
    f->len = 0;
    f->quoted = 0;
    return 0;
}

static int end_field(struct csv_reader *r)
{
    struct field *f = &r->fields[r->nfields - 1];
    f->len = r->used - f->off;
    return put(r, '\0');
}

/* Reads a quoted field's content after its opening quote, up to and
 * including the closing one. */
static int read_quoted(struct csv_reader *r)
{
    for (;;) {
        if (r->p == r->end)
            return fail(r, -SIMAP_EPROTO, "input ends inside a quoted field");
        char c = *r->p++;
        if (c == '"') {
            if (r->p < r->end && *r->p == '"') {
                r->p++;
            } else {
                return 0;
            }
        } else if (c == '\n') {
            r->line++;
        }
        int rc = put(r, c);
        if (rc < 0)
            return rc;
    }
}

int csv_next(struct csv_reader *r)
{
    if (r->err)
        return r->err;
    r->used = 0;
    r->nfields = 0;
    r->start_line = r->line;
    if (r->p == r->end)
        return 0;
    int rc = begin_field(r);
    while (rc == 0) {
        if (r->p == r->end)
            return end_field(r) < 0 ? r->err : 1;
        char c = *r->p++;
        struct field *f = &r->fields[r->nfields - 1];
        if (c == ',') {
            if ((rc = end_field(r)) == 0)
                rc = begin_field(r);
        } else if (c == '\n' || (c == '\r' && r->p < r->end && *r->p == '\n')) {
            if (c == '\r')
                r->p++;
            r->line++;
            return end_field(r) < 0 ? r->err : 1;
        } else if (c == '"') {
            if (f->quoted || r->used != f->off)
                return fail(r, -SIMAP_EPROTO, "quote inside an unquoted field");
            f->quoted = 1;
            if ((rc = read_quoted(r)) == 0 && r->p < r->end && *r->p != ',' && *r->p != '\n' &&
                *r->p != '\r')
                return fail(r, -SIMAP_EPROTO, "text after a closing quote");
        } else if (f->quoted) {
            return fail(r, -SIMAP_EPROTO, "text after a closing quote");
        } else {
            rc = put(r, c);
        }
    }
    return rc;
}

size_t csv_count(const struct csv_reader *r)
{
    return r->nfields;
}

const char *csv_field(const struct csv_reader *r, size_t i, size_t *len)
{
    const struct field *f = &r->fields[i];
    if (len != NULL)
        *len = f->len;
    return r->text + f->off;
}

int csv_is_null(const struct csv_reader *r, size_t i)
{
    return !r->fields[i].quoted && r->fields[i].len == 0;
}

size_t csv_line(const struct csv_reader *r)
{
    return r->start_line;
}

const char *csv_error(const struct csv_reader *r)
{
    return r->errstr;
}
