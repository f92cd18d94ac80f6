/*
 * core/json: JSON (RFC 8259) on top of yajl 2: strict UTF-8 checks, a
 * generator for response and webhook bodies, and a tree parser for request
 * bodies with accessors. yajl does all lexing, parsing and escaping; this
 * module adds what yajl lacks:
 *
 *   - strict UTF-8 (RFC 3629): yajl's own check accepts overlong forms,
 *     surrogates and code points above U+10FFFF;
 *   - a generator that checks call order (yajl writes "[}" or {"k"} if asked),
 *     keeps its first error so a body can be built without checking each call,
 *     and writes into a bounded core/buf;
 *   - a parser with a nesting limit (yajl_tree has none, and frees recursively),
 *     error messages with a byte offset, and rejection of duplicate keys and
 *     of \u0000 in strings (yajl_tree keeps strings NUL-terminated, so
 *     "admin\u0000x" would silently read as "admin").
 *
 * Building a body:
 *
 *   struct json_gen *g = json_gen_new(64 * 1024);
 *   json_gen_object_open(g);
 *   json_gen_key_object(g, "error");
 *   json_gen_key_str(g, "code", "not_found");
 *   json_gen_key_str(g, "message", msg);
 *   json_gen_object_close(g);
 *   json_gen_object_close(g);
 *   rc = json_gen_finish(g, &body, &len);  (the first error of any call above)
 *   json_gen_free(g);
 *
 * Depends only on core/err, core/buf, yajl and libc. Nothing here keeps
 * global state: every function is safe on any thread for distinct objects.
 *
 * Layering: like core/err and core/buf this is a leaf that proto/ may use
 * (proto/envelope writes its members with the generator, proto/mime_words
 * uses the UTF-8 checks), although it sits in core/. It stays here because
 * every layer uses it and moving it would rename a header used across cmd/;
 * it must therefore never include anything from core/ but err and buf, nor
 * do I/O, log or keep state. The rule is written in docs/layers.md.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_JSON_H
#define CORE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

/* ---- UTF-8 ---- */

/* Returns 1 when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates U+D800..U+DFFF, nothing above U+10FFFF), 0 otherwise. NUL bytes
 * are U+0000 and so valid. s may be NULL when n is 0. */
int json_utf8_valid(const char *s, size_t n);

/* Returns a new NUL-terminated copy of s[0..n) (xfree() it) in which each
 * maximal ill-formed subsequence (Unicode 15, section 3.9, "U+FFFD
 * substitution of maximal subparts") is replaced by U+FFFD (EF BF BD); valid
 * bytes, embedded NULs included, are kept. The result always passes
 * json_utf8_valid(). Its length, without the terminator, goes to *outlen when
 * outlen is not NULL. Never NULL. */
char *json_utf8_sanitize(const char *s, size_t n, size_t *outlen);

/* ---- Generator ---- */

/* Deepest nesting the generator accepts (yajl_gen refuses its 128th level). */
#define JSON_GEN_MAX_DEPTH 127

/*
 * Opaque. A wrapper of one yajl_gen (compact output, yajl_gen_validate_utf8
 * on) that tracks where it is (top level, array, object key, object value):
 *
 *   - the first failing call stores its code; from then on every call returns
 *     that code and writes nothing, and json_gen_finish() reports it;
 *   - -SIMAP_EINVAL: invalid UTF-8 in a key or string, NaN or infinity, raw
 *     text that is not one JSON value, NULL key;
 *   - -SIMAP_ESTATE: call out of order (a key inside an array, a value where a
 *     key is due, closing the wrong kind or with a key left without value,
 *     a second top-level value, finishing an incomplete document);
 *   - -SIMAP_ETOOBIG: the output would pass the max given to json_gen_new(),
 *     or nesting would pass JSON_GEN_MAX_DEPTH.
 *
 * One object per body; not shared between threads.
 */
struct json_gen;

/* Returns a new generator whose output may reach max bytes; never NULL.
 * Release it with json_gen_free(). */
struct json_gen *json_gen_new(size_t max);

/* Releases g and any output not taken by json_gen_finish(). Accepts NULL. */
void json_gen_free(struct json_gen *g);

/* Each returns 0 or the generator's (first) error code, as described above. */
int json_gen_object_open(struct json_gen *g);  /* { */
int json_gen_object_close(struct json_gen *g); /* } */
int json_gen_array_open(struct json_gen *g);   /* [ */
int json_gen_array_close(struct json_gen *g);  /* ] */

/* Writes an object key (NUL-terminated). The next call must write its value. */
int json_gen_key(struct json_gen *g, const char *key);

/* Writes a string value; s NULL writes null (optional fields stay one call). */
int json_gen_str(struct json_gen *g, const char *s);

/* Writes the n bytes at s as a string value; NUL bytes become \u0000. */
int json_gen_strn(struct json_gen *g, const char *s, size_t n);

int json_gen_int(struct json_gen *g, int64_t v);
int json_gen_bool(struct json_gen *g, int v); /* true when v != 0 */
int json_gen_null(struct json_gen *g);

/* Writes v in the shortest form that reads back as the same double ("0.1",
 * "3", "1e+300"); NaN and infinities are -SIMAP_EINVAL (JSON has none). */
int json_gen_double(struct json_gen *g, double v);

/* Inserts json[0..n), already-serialized JSON, as one value. It is checked
 * first (one complete value, strict UTF-8, no NUL byte) and copied as is. */
int json_gen_raw(struct json_gen *g, const char *json, size_t n);

/* Shorthands: json_gen_key(g, key) followed by the value call. */
int json_gen_key_object(struct json_gen *g, const char *key); /* "key":{ */
int json_gen_key_array(struct json_gen *g, const char *key);  /* "key":[ */
int json_gen_key_str(struct json_gen *g, const char *key, const char *s);
int json_gen_key_strn(struct json_gen *g, const char *key, const char *s, size_t n);
int json_gen_key_int(struct json_gen *g, const char *key, int64_t v);
int json_gen_key_bool(struct json_gen *g, const char *key, int v);
int json_gen_key_null(struct json_gen *g, const char *key);
int json_gen_key_double(struct json_gen *g, const char *key, double v);
int json_gen_key_raw(struct json_gen *g, const char *key, const char *json, size_t n);

/* Completes the document: returns 0 and a new NUL-terminated string in *out
 * (xfree() it) with its length in *len; or the first error of any earlier
 * call, or -SIMAP_ESTATE when the top-level value is not complete, with *out
 * NULL and *len 0. After it, g accepts only json_gen_free() (other calls
 * return -SIMAP_ESTATE). len may be NULL. */
int json_gen_finish(struct json_gen *g, char **out, size_t *len);

/* ---- Parser ---- */

/* Nesting suggested for request bodies; json_parse() clamps max_depth to
 * JSON_PARSE_MAX_DEPTH, as the tree is freed recursively. */
#define JSON_DEFAULT_DEPTH   64
#define JSON_PARSE_MAX_DEPTH 1024

/*
 * Parses text[0..len) (need not be NUL-terminated; it is copied) into a new
 * tree in *out, released with json_free(). Returns 0, or with *out NULL and a
 * one-line message naming the byte offset in err (when err is not NULL and
 * errlen > 0):
 *
 *   -SIMAP_EINVAL   not strict UTF-8, a NUL byte, a JSON syntax error
 *                   (yajl's message), \u0000 inside a string or key, a key
 *                   appearing twice in one object (RFC 8259 leaves the
 *                   meaning open; we refuse rather than guess);
 *   -SIMAP_ETOOBIG  arrays and objects nested deeper than max_depth (a
 *                   top-level object or array is depth 1), checked before
 *                   yajl builds anything.
 *
 * Any JSON value is accepted at the top level, scalars included; numbers keep
 * their text (see json_val_int()). The caller bounds len. Thread-safe.
 */
int json_parse(const char *text, size_t len, size_t max_depth, yajl_val *out, char *err,
               size_t errlen);

/* As json_parse(), and also -SIMAP_EINVAL when the top-level value is not an
 * object (what every request body must be). */
int json_parse_object(const char *text, size_t len, size_t max_depth, yajl_val *out, char *err,
                      size_t errlen);

/* Releases a tree from json_parse(). Accepts NULL. */
void json_free(yajl_val v);

/* ---- Accessors (all borrow the tree; results live as long as it) ---- */

/* Returns the value of key in object obj, any type; NULL when obj is NULL or
 * not an object, or the key is absent. */
yajl_val json_get(yajl_val obj, const char *key);

/* Returns the string value of key, or NULL when absent or not a string
 * (null included). */
const char *json_get_str(yajl_val obj, const char *key);

/* Stores the integer value of v in *out and returns 0, or -SIMAP_EINVAL when v
 * is NULL or not a number written as an integer in int64 range ("1.0", "1e3"
 * and 9223372036854775808 are not). */
int json_val_int(yajl_val v, int64_t *out);

/* json_val_int() of key: 0, -SIMAP_ENOTFOUND when absent, -SIMAP_EINVAL when
 * present but not an int64 (null included). *out is unchanged on error. */
int json_get_int(yajl_val obj, const char *key, int64_t *out);

/* Stores 1 or 0 in *out: 0, -SIMAP_ENOTFOUND when absent, -SIMAP_EINVAL when
 * present but not true or false. */
int json_get_bool(yajl_val obj, const char *key, int *out);

#endif
