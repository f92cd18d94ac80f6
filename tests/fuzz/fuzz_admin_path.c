/*
 * libFuzzer driver of cmd/api/admin_path (a request path under /admin, as a
 * browser or an attacker sends it) and of core/crypto's reading of a stored
 * password hash. Checks what the headers promise: a path named a file is
 * plain names joined by '/', no segment beginning with '.', and the request's
 * own path after "/admin/"; a stored hash accepted has its parameters in
 * bounds.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/api/admin_path.c"
#include "core/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_file(const char *uri, const char *rel)
{
    if (strcmp(uri, "/admin/") == 0 ? strcmp(rel, "index.html") != 0 : strcmp(uri + 7, rel) != 0)
        abort();
    if (strstr(rel, "//") != NULL || rel[0] == '.' || strstr(rel, "/.") != NULL)
        abort();
    for (const char *p = rel; *p != '\0'; p++)
        if (strchr(name_chars, *p) == NULL && *p != '/')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    char *in = malloc(size);
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    if (data[0] % 2 == 0) {
        char rel[256];
        if (admin_path_classify(in, rel, sizeof rel) == ADMIN_PATH_FILE) {
            check_file(in, rel);
            (void)admin_path_type(rel);
        }
    } else {
        struct crypto_scrypt_params p;
        if (crypto_scrypt_params_of(in, &p) == 0 &&
            (p.log2n < CRYPTO_SCRYPT_MIN_LOG2N || p.log2n > CRYPTO_SCRYPT_MAX_LOG2N || p.r < 1 ||
             p.p < 1))
            abort();
    }
    free(in);
    return 0;
}
