/*
 * libFuzzer driver for proto/csv: reads every record of arbitrary bytes.
 * Each record must have 1 to CSV_MAX_FIELDS fields, each NUL-terminated
 * within its length and NULL only when empty; an error must name itself
 * and stick. Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "proto/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so reads past the end are caught by ASan. */
    char *copy = xmalloc(size + 1);
    memcpy(copy, data, size);
    struct csv_reader *r = csv_new(copy, size);
    int rc;
    size_t bytes = 0;
    while ((rc = csv_next(r)) == 1) {
        size_t n = csv_count(r);
        check(n >= 1 && n <= CSV_MAX_FIELDS);
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *f = csv_field(r, i, &len);
            check(f[len] == '\0');
            check(!csv_is_null(r, i) || len == 0);
            bytes += len;
        }
    }
    check(bytes <= size);
    if (rc < 0) {
        check(rc == -SIMAP_EPROTO || rc == -SIMAP_ETOOBIG);
        check(csv_error(r)[0] != '\0');
        check(csv_next(r) == rc);
    }
    csv_free(r);
    xfree(copy);
    return 0;
}
