/*
 * libFuzzer driver for proto/mime_words and proto/envelope, on arbitrary
 * bytes:
 *
 *   - mime_words_decode() of the whole input must succeed with well-formed
 *     UTF-8 no longer than MIME_WORDS_MAX_GROWTH bytes per input byte, and
 *     stop with -SIMAP_ETOOBIG (never overrun) when the output buffer is
 *     smaller than that;
 *   - an envelope whose subject is the input and whose addresses are its
 *     lines (name, route, mailbox, host taken from the line, NIL host every
 *     third line to make group markers) must serialize, and the JSON must
 *     parse back (when it has no \u0000, which core/json's parser refuses)
 *     with the raw subject equal to the sanitized input;
 *   - envelope_rfc822_fields() must report UTF-8 validity correctly, and the
 *     base64 of a non-UTF-8 input must decode to the exact input bytes.
 *
 * Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/json.h"
#include "proto/envelope.h"
#include "proto/mime_words.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ADDRS 6

static void check(int ok)
{
    if (!ok)
        abort();
}

static void fuzz_decode(const char *s, size_t n)
{
    struct buf b;
    buf_init(&b, n * MIME_WORDS_MAX_GROWTH);
    check(mime_words_decode(s, n, &b) == 0);
    check(b.len <= n * MIME_WORDS_MAX_GROWTH);
    check(json_utf8_valid(b.data, b.len));
    buf_free(&b);

    /* A tight bound: either it fits or it is refused, never overrun (ASan
     * watches the buffer). */
    buf_init(&b, n / 2);
    int rc = mime_words_decode(s, n, &b);
    check(rc == 0 || rc == -SIMAP_ETOOBIG);
    check(b.len <= n / 2);
    if (rc == 0)
        check(json_utf8_valid(b.data, b.len));
    buf_free(&b);
}

static struct envelope_str nstr(const char *p, size_t n)
{
    struct envelope_str s = {p, n, 0};
    return s;
}

static void fuzz_envelope(const char *s, size_t n)
{
    struct envelope_addr addrs[MAX_ADDRS];
    size_t count = 0, start = 0;
    while (start <= n && count < MAX_ADDRS) {
        const char *nl = memchr(s + start, '\n', n - start);
        size_t end = nl != NULL ? (size_t)(nl - s) : n;
        struct envelope_addr *a = &addrs[count];
        size_t half = (end - start) / 2;
        a->name = nstr(s + start, end - start);
        a->adl = nstr(s + start, half);
        a->mailbox = nstr(s + start + half, end - start - half);
        a->host = nstr(s + start, half);
        a->host.is_nil = count % 3 == 2;
        a->name.is_nil = count % 5 == 4;
        count++;
        if (nl == NULL)
            break;
        start = end + 1;
    }
    struct envelope env;
    memset(&env, 0, sizeof env);
    env.date = nstr(s, n);
    env.subject = nstr(s, n);
    env.from.v = addrs;
    env.from.count = count;
    env.to.v = addrs + count / 2;
    env.to.count = count - count / 2;
    env.cc.is_nil = 1;
    env.in_reply_to.is_nil = 1;
    env.message_id = nstr(s, n > 8 ? 8 : n);

    struct json_gen *g = json_gen_new((size_t)64 << 20);
    check(json_gen_object_open(g) == 0);
    check(envelope_json_fields(g, &env) == 0);
    check(envelope_json_rfc822(g, s, n) == 0);
    check(json_gen_object_close(g) == 0);
    char *out = NULL;
    size_t len = 0;
    check(json_gen_finish(g, &out, &len) == 0);
    json_gen_free(g);
    check(json_utf8_valid(out, len));

    /* core/json's parser refuses \u0000, which a NUL in the input or a
     * decoded "=00" puts in the output. */
    if (strstr(out, "\\u0000") == NULL) {
        yajl_val v = NULL;
        check(json_parse_object(out, len, 8, &v, NULL, 0) == 0);
        const char *subject = json_get_str(json_get(v, "envelope"), "subject");
        check(subject != NULL);
        size_t sl;
        char *want = json_utf8_sanitize(s, n, &sl);
        check(strlen(subject) == sl && memcmp(subject, want, sl) == 0);
        xfree(want);
        check(json_get_str(json_get(v, "decoded"), "subject") != NULL);
        check((json_get(v, "rfc822_base64") == NULL) == json_utf8_valid(s, n));
        json_free(v);
    }
    xfree(out);
}

static void fuzz_rfc822(const char *s, size_t n)
{
    struct envelope_rfc822 r;
    int rc = envelope_rfc822_fields(s, n, &r);
    check(rc == json_utf8_valid(s, n));
    check(json_utf8_valid(r.text, r.text_len));
    if (rc == 0) {
        check(r.base64 != NULL && r.base64_len == (n + 2) / 3 * 4);
        unsigned char *back = malloc(r.base64_len + 1);
        check(back != NULL);
        int k = EVP_DecodeBlock(back, (const unsigned char *)r.base64, (int)r.base64_len);
        size_t pad = (r.base64_len > 0 && r.base64[r.base64_len - 1] == '=') +
                     (r.base64_len > 1 && r.base64[r.base64_len - 2] == '=');
        check(k >= 0 && (size_t)k - pad == n && memcmp(back, s, n) == 0);
        free(back);
    } else {
        check(r.text == s || n == 0);
        check(r.base64 == NULL);
    }
    envelope_rfc822_release(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so reading one byte past the input is caught. */
    char *s = xmalloc(size ? size : 1);
    memcpy(s, data, size);
    fuzz_decode(s, size);
    fuzz_envelope(s, size);
    fuzz_rfc822(s, size);
    xfree(s);
    return 0;
}
