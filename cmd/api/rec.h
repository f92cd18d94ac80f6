/*
 * cmd/api/rec.h: a Redis hash read whole (store_hgetall()), the record the
 * store hands the views.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_REC_H
#define CMD_API_REC_H

#include <stddef.h>
#include <stdint.h>

/* A Redis hash read whole. */
struct rec {
    size_t n;
    char **f, **v;
};

/* The value of field, or "" when absent. Borrowed from rec. */
const char *rec_get(const struct rec *rec, const char *field);

/* Adds field = value (copied) to rec. */
void rec_add(struct rec *rec, const char *field, const char *value);

/* Frees the strings and empties rec; a zeroed rec is fine. */
void rec_free(struct rec *rec);

/* Records listed from an index (a set, a sorted set, a list): the member,
 * its score where the index has one (0 otherwise), and its record (empty
 * when a list needs only the members). */
struct rec_list {
    size_t n;
    char **id;
    int64_t *score;
    struct rec *rec;
};

/* Appends one entry (id copied, rec taken over: do not free it). */
void rec_list_add(struct rec_list *l, const char *id, int64_t score, struct rec *rec);

/* Frees every entry and empties l; a zeroed list is fine. */
void rec_list_free(struct rec_list *l);

#endif
