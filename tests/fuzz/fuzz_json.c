/*
 * libFuzzer driver for core/json on arbitrary bytes:
 *
 *   - json_parse() with depth 64. Failures must be -SIMAP_EINVAL or
 *     -SIMAP_ETOOBIG with a message; json_parse_object() must agree. On
 *     success the tree is walked with every accessor (strings and keys must be
 *     strict UTF-8 without NUL, json_get() must find each key's own value,
 *     json_get_int/bool and json_val_int must match the value's type and
 *     text), the same text must fail with -SIMAP_ETOOBIG at one level less
 *     than its depth, and the tree is written back through the generator and
 *     parsed again, which must give an equal tree.
 *   - json_utf8_valid() against an independent decoder of the RFC 3629 table,
 *     and json_utf8_sanitize(): its output validates, is NUL-terminated, is
 *     the input itself when that was valid, and sanitizing it again changes
 *     nothing.
 *   - The generator with the input as a string value and as a key: it must
 *     succeed exactly when the input is valid UTF-8 (else -SIMAP_EINVAL), and
 *     the document must parse back to the same bytes (or be refused for its
 *     \u0000 when the input holds a NUL). The first 8 bytes as a double and
 *     as an int64 must read back as the same number.
 *
 * Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "core/err.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEPTH 64

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Output room for any document made from size input bytes: the generator
 * writes a control byte as \u00XX, six bytes for one. */
static size_t gen_room(size_t size)
{
    return 6 * size + 64;
}

/* ---- Independent UTF-8 check (RFC 3629 section 4 table) ---- */

static int ref_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += len;
    }
    return 1;
}

/* ---- Tree walk ---- */

static int is_valid_cstr(const char *s)
{
    return s != NULL && json_utf8_valid(s, strlen(s));
}

/* Checks every accessor on v and below; returns v's nesting depth (a scalar
 * is 0, an object or array one more than its deepest child). */
static size_t walk(yajl_val v)
{
    int64_t i64 = 0, j64 = 0;
    int b = -1;
    check(v != NULL);
    if (YAJL_IS_OBJECT(v)) {
        size_t depth = 0;
        int probe_present = 0;
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *key = v->u.object.keys[i];
            yajl_val val = v->u.object.values[i];
            check(is_valid_cstr(key));
            probe_present |= strcmp(key, "probe") == 0;
            check(json_get(v, key) == val); /* keys are unique */

            const char *s = json_get_str(v, key);
            check(YAJL_IS_STRING(val) ? s == val->u.string : s == NULL);

            int rc = json_get_int(v, key, &i64);
            int rv = json_val_int(val, &j64);
            check(rc == rv && (rc < 0 || i64 == j64));

            rc = json_get_bool(v, key, &b);
            if (YAJL_IS_TRUE(val) || YAJL_IS_FALSE(val))
                check(rc == 0 && b == (YAJL_IS_TRUE(val) ? 1 : 0));
            else
                check(rc == -SIMAP_EINVAL);

            size_t d = walk(val);
            if (d > depth)
                depth = d;
        }
        if (!probe_present) {
            check(json_get(v, "probe") == NULL);
            check(json_get_str(v, "probe") == NULL);
            check(json_get_int(v, "probe", &i64) == -SIMAP_ENOTFOUND);
            check(json_get_bool(v, "probe", &b) == -SIMAP_ENOTFOUND);
        }
        check(json_get(v, NULL) == NULL);
        return depth + 1;
    }

    /* Not an object: key lookups find nothing. */
    check(json_get(v, "probe") == NULL);
    check(json_get_str(v, "probe") == NULL);
    check(json_get_int(v, "probe", &i64) == -SIMAP_ENOTFOUND);

    if (YAJL_IS_ARRAY(v)) {
        size_t depth = 0;
        for (size_t i = 0; i < v->u.array.len; i++) {
            size_t d = walk(v->u.array.values[i]);
            if (d > depth)
                depth = d;
        }
        check(json_val_int(v, &i64) == -SIMAP_EINVAL);
        return depth + 1;
    }
    if (YAJL_IS_NUMBER(v)) {
        const char *r = v->u.number.r;
        check(is_valid_cstr(r) && r[0] != '\0');
        int rc = json_val_int(v, &i64);
        if (rc == 0) {
            check(strpbrk(r, ".eE") == NULL);
            check(strtoll(r, NULL, 10) == i64);
        } else {
            check(rc == -SIMAP_EINVAL);
        }
        return 0;
    }
    if (YAJL_IS_STRING(v))
        check(is_valid_cstr(v->u.string));
    else
        check(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v) || YAJL_IS_NULL(v));
    check(json_val_int(v, &i64) == -SIMAP_EINVAL);
    return 0;
}

/* ---- Round trip through the generator ---- */

static void emit(struct json_gen *g, yajl_val v)
{
    if (YAJL_IS_OBJECT(v)) {
        json_gen_object_open(g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            json_gen_key(g, v->u.object.keys[i]);
            emit(g, v->u.object.values[i]);
        }
        json_gen_object_close(g);
    } else if (YAJL_IS_ARRAY(v)) {
        json_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            emit(g, v->u.array.values[i]);
        json_gen_array_close(g);
    } else if (YAJL_IS_STRING(v)) {
        json_gen_str(g, v->u.string);
    } else if (YAJL_IS_NUMBER(v)) {
        json_gen_raw(g, v->u.number.r, strlen(v->u.number.r));
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        json_gen_bool(g, YAJL_IS_TRUE(v));
    } else {
        json_gen_null(g);
    }
}

static int tree_equal(yajl_val a, yajl_val b)
{
    if (a == NULL || b == NULL || a->type != b->type)
        return 0;
    switch (a->type) {
    case yajl_t_object:
        if (a->u.object.len != b->u.object.len)
            return 0;
        for (size_t i = 0; i < a->u.object.len; i++)
            if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0 ||
                !tree_equal(a->u.object.values[i], b->u.object.values[i]))
                return 0;
        return 1;
    case yajl_t_array:
        if (a->u.array.len != b->u.array.len)
            return 0;
        for (size_t i = 0; i < a->u.array.len; i++)
            if (!tree_equal(a->u.array.values[i], b->u.array.values[i]))
                return 0;
        return 1;
    case yajl_t_string:
        return strcmp(a->u.string, b->u.string) == 0;
    case yajl_t_number:
        return strcmp(a->u.number.r, b->u.number.r) == 0;
    default:
        return 1;
    }
}

static void round_trip(yajl_val v, size_t size)
{
    struct json_gen *g = json_gen_new(gen_room(size));
    emit(g, v);
    char *out = NULL;
    size_t len = 0;
    check(json_gen_finish(g, &out, &len) == 0);
    json_gen_free(g);
    check(out != NULL && strlen(out) == len);

    yajl_val again = NULL;
    char err[256];
    check(json_parse(out, len, DEPTH, &again, err, sizeof err) == 0);
    check(tree_equal(v, again));
    json_free(again);
    xfree(out);
}

static void drive_parser(const char *text, size_t size)
{
    yajl_val v = NULL;
    char err[256];
    memset(err, 'x', sizeof err);
    int rc = json_parse(text, size, DEPTH, &v, err, sizeof err);

    yajl_val obj = NULL;
    char err2[256];
    int rc_obj = json_parse_object(text, size, DEPTH, &obj, err2, sizeof err2);

    if (rc != 0) {
        check(rc == -SIMAP_EINVAL || rc == -SIMAP_ETOOBIG);
        check(v == NULL);
        check(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
        check(rc_obj == rc && obj == NULL);
        return;
    }
    check(v != NULL);
    check((rc_obj == 0) == YAJL_IS_OBJECT(v));
    check(rc_obj == 0 || rc_obj == -SIMAP_EINVAL);
    json_free(obj);

    size_t depth = walk(v);
    check(depth <= DEPTH);
    if (depth >= 1) {
        yajl_val shallow = NULL;
        check(json_parse(text, size, depth - 1, &shallow, err, sizeof err) == -SIMAP_ETOOBIG);
        check(shallow == NULL);
    }
    round_trip(v, size);
    json_free(v);
}

/* ---- UTF-8 and the generator on the raw bytes ---- */

static void drive_utf8(const char *s, size_t size)
{
    int valid = json_utf8_valid(s, size);
    check(valid == ref_utf8_valid((const unsigned char *)s, size));

    size_t n = (size_t)-1;
    char *clean = json_utf8_sanitize(s, size, &n);
    check(clean != NULL && clean[n] == '\0');
    check(json_utf8_valid(clean, n));
    check(n <= 3 * size);
    if (valid)
        check(n == size && memcmp(clean, s, size) == 0);
    else
        check(n != size || memcmp(clean, s, size) != 0);
    size_t n2 = 0;
    char *twice = json_utf8_sanitize(clean, n, &n2);
    check(n2 == n && memcmp(twice, clean, n) == 0);
    xfree(twice);
    xfree(clean);
}

static void drive_gen_string(const char *s, size_t size)
{
    int valid = json_utf8_valid(s, size);
    struct json_gen *g = json_gen_new(gen_room(size));
    check(json_gen_array_open(g) == 0);
    int rc = json_gen_strn(g, s, size);
    check(valid ? rc == 0 : rc == -SIMAP_EINVAL);
    rc = json_gen_array_close(g);
    check(valid ? rc == 0 : rc == -SIMAP_EINVAL); /* the first error sticks */
    char *out = NULL;
    size_t len = 1;
    rc = json_gen_finish(g, &out, &len);
    json_gen_free(g);
    if (!valid) {
        check(rc == -SIMAP_EINVAL && out == NULL && len == 0);
        return;
    }
    check(rc == 0 && out != NULL);

    yajl_val v = NULL;
    char err[256];
    rc = json_parse(out, len, DEPTH, &v, err, sizeof err);
    if (memchr(s, '\0', size) != NULL) {
        check(rc == -SIMAP_EINVAL); /* written as \u0000, which the parser refuses */
    } else {
        check(rc == 0 && YAJL_IS_ARRAY(v) && v->u.array.len == 1);
        yajl_val str = v->u.array.values[0];
        check(YAJL_IS_STRING(str));
        check(strlen(str->u.string) == size && memcmp(str->u.string, s, size) == 0);
    }
    json_free(v);
    xfree(out);
}

static void drive_gen_key(const char *s, size_t size)
{
    char *key = xstrndup(s, size); /* up to the first NUL */
    size_t klen = strlen(key);
    int valid = json_utf8_valid(key, klen);
    struct json_gen *g = json_gen_new(gen_room(size));
    json_gen_object_open(g);
    int rc = json_gen_key(g, key);
    check(valid ? rc == 0 : rc == -SIMAP_EINVAL);
    json_gen_int(g, 1);
    json_gen_object_close(g);
    char *out = NULL;
    rc = json_gen_finish(g, &out, NULL);
    json_gen_free(g);
    if (valid) {
        check(rc == 0);
        yajl_val v = NULL;
        char err[256];
        check(json_parse_object(out, strlen(out), DEPTH, &v, err, sizeof err) == 0);
        int64_t one = 0;
        check(json_get_int(v, key, &one) == 0 && one == 1);
        json_free(v);
    } else {
        check(rc == -SIMAP_EINVAL && out == NULL);
    }
    xfree(out);
    xfree(key);
}

static void drive_gen_numbers(const uint8_t *data, size_t size)
{
    if (size < 8)
        return;
    double d;
    int64_t i;
    memcpy(&d, data, sizeof d);
    memcpy(&i, data, sizeof i);

    struct json_gen *g = json_gen_new(256);
    json_gen_array_open(g);
    json_gen_int(g, i);
    int rc = json_gen_double(g, d);
    check(isfinite(d) ? rc == 0 : rc == -SIMAP_EINVAL);
    json_gen_array_close(g);
    char *out = NULL;
    size_t len = 0;
    rc = json_gen_finish(g, &out, &len);
    json_gen_free(g);
    if (!isfinite(d)) {
        check(rc == -SIMAP_EINVAL);
        return;
    }
    check(rc == 0);
    yajl_val v = NULL;
    char err[256];
    check(json_parse(out, len, DEPTH, &v, err, sizeof err) == 0);
    check(YAJL_IS_ARRAY(v) && v->u.array.len == 2);
    int64_t back = 0;
    check(json_val_int(v->u.array.values[0], &back) == 0 && back == i);
    yajl_val num = v->u.array.values[1];
    check(YAJL_IS_NUMBER(num));
    check(strtod(num->u.number.r, NULL) == d);
    json_free(v);
    xfree(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) /* request bodies are bounded far below this */
        return 0;
    const char *text = (const char *)data;
    drive_parser(text, size);
    drive_utf8(text, size);
    drive_gen_string(text, size);
    drive_gen_key(text, size);
    drive_gen_numbers(data, size);
    return 0;
}
