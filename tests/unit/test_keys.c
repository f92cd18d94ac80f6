/*
 * Unit tests of core/keys' webhook URLs: credentials in a URL's userinfo
 * come out sealed and masked, and open back to the whole URL; URLs without
 * them are kept as they are.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/crypto.h"
#include "core/err.h"
#include "core/keys.h"

#define KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static struct crypto_keys *ring(void)
{
    struct crypto_keys *k = NULL;
    char err[128];
    if (crypto_keys_init(&k, KEY, NULL, err, sizeof err) < 0)
        fail_msg("crypto_keys_init: %s", err);
    return k;
}

static void test_credentials_are_sealed_and_masked_and_open_back(void **state)
{
    (void)state;
    struct crypto_keys *k = ring();
    static const struct {
        const char *url, *shown;
    } cases[] = {
        {"https://user:pw@host.example/x", "https://user:***@host.example/x"},
        {"http://hook%40acme:p%3Aw@10.0.0.1:8080/a?b=@c#d",
         "http://hook%40acme:***@10.0.0.1:8080/a?b=@c#d"},
        {"https://token@host.example", "https://***@host.example"},
        {"https://a@b:c@host.example/", "https://a@b:***@host.example/"},
        {"https://user:@host.example/", "https://user:***@host.example/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *shown, *sealed;
        assert_int_equal(
            keys_seal_partner_url(k, "7", "new_mail_webhook_url", cases[i].url, &shown, &sealed),
            0);
        assert_string_equal(shown, cases[i].shown);
        assert_true(strncmp(sealed, "v1:", 3) == 0);
        char *url = keys_open_partner_url(k, "7", "new_mail_webhook_url", shown, sealed);
        assert_non_null(url);
        assert_string_equal(url, cases[i].url);
        keys_wipe_free(url);
        /* Sealed for one partner and field only. */
        assert_null(keys_open_partner_url(k, "8", "new_mail_webhook_url", shown, sealed));
        assert_null(keys_open_partner_url(k, "7", "user_connected_webhook_url", shown, sealed));
        xfree(shown);
        xfree(sealed);
    }
    crypto_keys_free(k);
}

static void test_urls_without_credentials_stay_as_they_are(void **state)
{
    (void)state;
    struct crypto_keys *k = ring();
    static const char *const urls[] = {"https://host.example/x?mail=a@b", "http://h/#@", "",
                                       "not a url"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char *shown, *sealed;
        assert_int_equal(
            keys_seal_partner_url(k, "7", "new_mail_webhook_url", urls[i], &shown, &sealed), 0);
        assert_string_equal(shown, urls[i]);
        assert_string_equal(sealed, "");
        char *url = keys_open_partner_url(k, "7", "new_mail_webhook_url", shown, sealed);
        assert_string_equal(url, urls[i]);
        keys_wipe_free(url);
        xfree(shown);
        xfree(sealed);
    }
    /* A sealed part that does not open gives no URL. */
    assert_null(keys_open_partner_url(k, "7", "new_mail_webhook_url", "https://u:***@host.example/",
                                      "v1:0:garbage"));
    crypto_keys_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_credentials_are_sealed_and_masked_and_open_back),
        cmocka_unit_test(test_urls_without_credentials_stay_as_they_are),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
