/*
 * libFuzzer driver for proto/eml on arbitrary bytes:
 *
 *   - eml_from_payload() on the input: 0 with a NUL-terminated buffer, or
 *     -SIMAP_ENOTFOUND / -SIMAP_EPROTO with *out NULL and *outlen 0;
 *   - the input as a message: written into a payload by proto/envelope (as
 *     the watcher does) and read back, it must come out byte for byte.
 *
 * Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/json.h"
#include "proto/eml.h"
#include "proto/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out;
    size_t len;
    int rc = eml_from_payload((const char *)data, size, &out, &len);
    if (rc == 0) {
        check(out != NULL && out[len] == '\0');
        xfree(out);
    } else {
        check((rc == -SIMAP_ENOTFOUND || rc == -SIMAP_EPROTO) && out == NULL && len == 0);
    }

    struct json_gen *g = json_gen_new(size * 8 + 1024);
    json_gen_object_open(g);
    json_gen_key_str(g, "event", "new_mail");
    check(envelope_json_rfc822(g, (const char *)data, size) == 0);
    json_gen_object_close(g);
    char *payload;
    size_t plen;
    check(json_gen_finish(g, &payload, &plen) == 0);
    json_gen_free(g);
    check(eml_from_payload(payload, plen, &out, &len) == 0);
    check(len == size && (size == 0 || memcmp(out, data, size) == 0));
    xfree(out);
    xfree(payload);
    return 0;
}
