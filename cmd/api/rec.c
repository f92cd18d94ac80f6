/*
 * cmd/api/rec: a Redis hash read whole (see rec.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/rec.h"

#include <string.h>

#include "core/err.h"

const char *rec_get(const struct rec *rec, const char *field)
{
    for (size_t i = 0; i < rec->n; i++)
        if (strcmp(rec->f[i], field) == 0)
            return rec->v[i];
    return "";
}

void rec_free(struct rec *rec)
{
    for (size_t i = 0; i < rec->n; i++) {
        xfree(rec->f[i]);
        xfree(rec->v[i]);
    }
    xfree(rec->f);
    xfree(rec->v);
    memset(rec, 0, sizeof *rec);
}

void rec_add(struct rec *rec, const char *field, const char *value)
{
    rec->f = xrealloc(rec->f, (rec->n + 2) * sizeof *rec->f);
    rec->v = xrealloc(rec->v, (rec->n + 2) * sizeof *rec->v);
    rec->f[rec->n] = xstrdup(field);
    rec->v[rec->n] = xstrdup(value);
    rec->n++;
    rec->f[rec->n] = NULL;
    rec->v[rec->n] = NULL;
}

void rec_list_add(struct rec_list *l, const char *id, int64_t score, struct rec *rec)
{
    l->id = xrealloc(l->id, (l->n + 1) * sizeof *l->id);
    l->score = xrealloc(l->score, (l->n + 1) * sizeof *l->score);
    l->rec = xrealloc(l->rec, (l->n + 1) * sizeof *l->rec);
    l->id[l->n] = xstrdup(id);
    l->score[l->n] = score;
    if (rec != NULL)
        l->rec[l->n] = *rec;
    else
        memset(&l->rec[l->n], 0, sizeof l->rec[l->n]);
    l->n++;
}

void rec_list_free(struct rec_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        xfree(l->id[i]);
        rec_free(&l->rec[i]);
    }
    xfree(l->id);
    xfree(l->score);
    xfree(l->rec);
    memset(l, 0, sizeof *l);
}
