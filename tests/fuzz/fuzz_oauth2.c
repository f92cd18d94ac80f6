/*
 * libFuzzer driver for proto/oauth2's reader of a token endpoint's answer
 * (oauth2_token_parse): the body an OAuth2 provider, or anyone on the path
 * to it, sends the watcher. The first byte picks the HTTP status among those
 * that matter (200, 400, 401, 429, 500, 0), the rest is the body, parsed from
 * an exact-length copy so a read past the end is an ASan error. An accepted
 * answer must hold a non-empty access token of at most OAUTH2_TOKEN_MAX bytes
 * without control characters and a lifetime >= 0; every other outcome holds
 * no token. Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "proto/oauth2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static int clean(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > OAUTH2_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 400, 401, 429, 500, 0};
    if (size == 0)
        return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    size_t n = size - 1;
    char *copy = xmalloc(n ? n : 1);
    memcpy(copy, data + 1, n);
    struct oauth2_token t;
    enum oauth2_outcome o = oauth2_token_parse(status, copy, n, &t);
    check(memchr(t.error, '\0', sizeof t.error) != NULL);
    if (o == OAUTH2_OK) {
        check(status == 200);
        check(t.access_token != NULL && clean(t.access_token));
        check(t.refresh_token == NULL || clean(t.refresh_token));
        check(t.expires_in >= 0);
    } else {
        check(t.access_token == NULL && t.refresh_token == NULL);
        check(o != OAUTH2_REVOKED || strcmp(t.error, "invalid_grant") == 0);
    }
    oauth2_token_clear(&t);
    xfree(copy);
    return 0;
}
