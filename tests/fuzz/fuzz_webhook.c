/*
 * libFuzzer driver for proto/webhook's parsers of untrusted input: the
 * Retry-After header value of a receiver's response (webhook_retry_after)
 * and the payload check of webhook_body_build. The input is parsed from an
 * exact-length copy, so a read past the end is an ASan error. A parsed delay
 * must be within [0, 10^12] ms; a built body must start with the timestamp
 * member and end with the signature member. Built and run by
 * tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "proto/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = xmalloc(size ? size : 1);
    memcpy(copy, data, size);

    int64_t delay = -1;
    int rc = webhook_retry_after(copy, size, 784111777000LL, &delay);
    check(rc == 0 || rc == -SIMAP_EINVAL);
    if (rc == 0)
        check(delay >= 0 && delay <= 1000000000000LL);

    struct buf b;
    buf_init(&b, 1 << 20);
    rc = webhook_body_build(copy, size, 1700000000, "sig", &b);
    check(rc == 0 || rc == -SIMAP_EINVAL || rc == -SIMAP_ETOOBIG);
    if (rc == 0) {
        static const char head[] = "{\"timestamp\":1700000000";
        static const char tail[] = "\"signature\":\"sig\"}";
        check(b.len >= sizeof head - 1 + sizeof tail - 1);
        check(memcmp(b.data, head, sizeof head - 1) == 0);
        check(memcmp(b.data + b.len - (sizeof tail - 1), tail, sizeof tail - 1) == 0);
    } else {
        check(b.len == 0);
    }
    buf_free(&b);
    xfree(copy);
    return 0;
}
