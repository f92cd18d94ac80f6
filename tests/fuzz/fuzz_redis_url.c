/*
 * libFuzzer driver for core/redis_url: redis_url_parse() on arbitrary bytes.
 * The input is "url" or "url\npassword" (the password overriding the URL's);
 * both are NUL-terminated copies, as the parser reads C strings. On success
 * the parsed address must satisfy the header's contract, and
 * redis_addr_describe() must stay within its buffer and NUL-terminate it.
 * Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static int is_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = xmalloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';
    char *password = NULL;
    char *nl = memchr(url, '\n', size);
    if (nl != NULL) {
        *nl = '\0';
        password = nl + 1;
    }

    struct redis_addr a;
    char err[128];
    memset(err, 'x', sizeof err);
    int rc = redis_url_parse(url, password, &a, err, sizeof err);
    if (rc != 0) {
        check(rc == -SIMAP_EINVAL);
        check(is_terminated(err, sizeof err) && err[0] != '\0');
        xfree(url);
        return 0;
    }

    check(a.is_unix == 0 || a.is_unix == 1);
    check(is_terminated(a.host, sizeof a.host));
    check(is_terminated(a.path, sizeof a.path));
    check(is_terminated(a.password, sizeof a.password));
    check(a.db >= 0);
    check(a.nsentinels >= 0 && a.nsentinels <= REDIS_SENTINELS_MAX);
    if (a.nsentinels > 0) {
        /* redis+sentinel://: the primary is unknown until they answer. */
        check(!a.is_unix && a.port == 0);
        check(is_terminated(a.master, sizeof a.master) && a.master[0] != '\0');
        for (int i = 0; i < a.nsentinels; i++) {
            check(is_terminated(a.sentinels[i].host, sizeof a.sentinels[i].host));
            check(a.sentinels[i].host[0] != '\0');
            check(a.sentinels[i].port >= 1 && a.sentinels[i].port <= 65535);
        }
    } else if (a.is_unix) {
        check(a.path[0] == '/');
    } else {
        check(a.host[0] != '\0');
        check(a.port >= 1 && a.port <= 65535);
    }
    if (password != NULL && password[0] != '\0')
        check(strcmp(a.password, password) == 0);

    char desc[64];
    memset(desc, 'x', sizeof desc);
    redis_addr_describe(&a, desc, sizeof desc);
    check(is_terminated(desc, sizeof desc));
    char big[600];
    redis_addr_describe(&a, big, sizeof big);
    if (a.nsentinels > 0)
        check(strncmp(big, "sentinel:", 9) == 0);
    else
        check(strncmp(big, a.is_unix ? "unix:" : a.host, a.is_unix ? 5 : strlen(a.host)) == 0);

    xfree(url);
    return 0;
}
