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
