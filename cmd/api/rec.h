/*
 * cmd/api/rec.h: a Redis hash read whole (store_hgetall()), the record the
 * store hands the views.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_REC_H
#define CMD_API_REC_H

#include <stddef.h>

/* A Redis hash read whole. */
struct rec {
    size_t n;
    char **f, **v;
};

/* The value of field, or "" when absent. Borrowed from rec. */
const char *rec_get(const struct rec *rec, const char *field);

/* Frees the strings and empties rec; a zeroed rec is fine. */
void rec_free(struct rec *rec);

#endif
