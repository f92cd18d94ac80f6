/*
 * Unit tests of proto/eml: the raw message read back out of a new_mail
 * payload exactly as proto/envelope wrote it (UTF-8 text, NUL bytes, bytes
 * that are not UTF-8 through rfc822_base64), payloads without a message,
 * and input that is not a payload.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/json.h"
#include "proto/eml.h"
#include "proto/envelope.h"

/* A payload as the watcher builds it, around raw[0..n), then read back. */
static void assert_round_trip(const char *raw, size_t n)
{
    struct json_gen *g = json_gen_new(1 << 20);
    json_gen_object_open(g);
    json_gen_key_str(g, "event", "new_mail");
    json_gen_key_object(g, "decoded");
    json_gen_key_str(g, "rfc822", "a decoy inside another object");
    json_gen_object_close(g);
    assert_int_equal(envelope_json_rfc822(g, raw, n), 0);
    json_gen_key_int(g, "uid", 7);
    json_gen_object_close(g);
    char *payload;
    size_t plen;
    assert_int_equal(json_gen_finish(g, &payload, &plen), 0);
    json_gen_free(g);
    char *out;
    size_t len;
    assert_int_equal(eml_from_payload(payload, plen, &out, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(out, raw, n);
    assert_int_equal(out[len], '\0');
    xfree(out);
    xfree(payload);
}

static void test_utf8_message_comes_back_exactly(void **state)
{
    (void)state;
    static const char m[] =
        "Subject: Caf\xc3\xa9\r\nFrom: a@example.com\r\n\r\n\"quoted\" \\ body\r\n";
    assert_round_trip(m, sizeof m - 1);
}

static void test_nul_bytes_come_back(void **state)
{
    (void)state;
    static const char m[] = "Subject: x\r\n\r\na\0b\0\r\n";
    assert_round_trip(m, sizeof m - 1);
}

static void test_bytes_that_are_not_utf8_come_from_base64(void **state)
{
    (void)state;
    static const char m[] = "Subject: \xe9t\xe9\r\n\r\n\xff\xfe latin-1 body\r\n";
    assert_round_trip(m, sizeof m - 1);
}

static void test_empty_message(void **state)
{
    (void)state;
    assert_round_trip("", 0);
}

static void assert_fails(const char *json, int want)
{
    char *out = (char *)"untouched";
    size_t len = 99;
    assert_int_equal(eml_from_payload(json, strlen(json), &out, &len), want);
    assert_null(out);
    assert_int_equal(len, 0);
}

/* Too large (null), a user event (no member), a member only nested deeper. */
static void test_payload_without_a_message(void **state)
{
    (void)state;
    assert_fails("{\"event\":\"new_mail\",\"rfc822\":null,\"too_large\":true}", -SIMAP_ENOTFOUND);
    assert_fails("{\"event\":\"user_connected\",\"email\":\"a@example.com\"}", -SIMAP_ENOTFOUND);
    assert_fails("{\"x\":{\"rfc822\":\"nested\"},\"y\":[\"rfc822\"]}", -SIMAP_ENOTFOUND);
    assert_fails("{\"rfc822\":42}", -SIMAP_ENOTFOUND);
}

static void test_not_a_payload(void **state)
{
    (void)state;
    assert_fails("", -SIMAP_EPROTO);
    assert_fails("[\"rfc822\",\"x\"]", -SIMAP_EPROTO);
    assert_fails("{\"rfc822\":\"x\"", -SIMAP_EPROTO);
    assert_fails("{\"rfc822\":\"x\",\"rfc822_base64\":\"not base64!\"}", -SIMAP_EPROTO);
    assert_fails("\"rfc822\"", -SIMAP_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_message_comes_back_exactly),
        cmocka_unit_test(test_nul_bytes_come_back),
        cmocka_unit_test(test_bytes_that_are_not_utf8_come_from_base64),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_payload_without_a_message),
        cmocka_unit_test(test_not_a_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
