/*
 * cmd/api/params: the parameters of one API request, from wherever the
 * original accepted them (Rails merged them all into one `params`): the query
 * string, a form-encoded body (application/x-www-form-urlencoded, WHATWG URL
 * standard section 5.1) or a JSON object body (RFC 8259), and the path
 * segments, percent-decoded (RFC 3986 section 2.1).
 *
 * Pure code: no civetweb, no Redis, no logging, so unit tests and the fuzzer
 * (tests/fuzz/fuzz_api_params.c) drive it directly. Every value stored is
 * strict UTF-8 without NUL bytes: anything else is refused here, with a
 * message naming the parameter, before a route sees it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_PARAMS_H
#define CMD_API_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define PARAMS_MAX        64          /* parameters in one request */
#define PARAMS_NAME_MAX   128         /* bytes of one name */
#define PATH_MAX_SEGS     16          /* segments of one path */
#define PATH_SEG_MAX      4096        /* bytes of one decoded segment */
#define PARAMS_OBJECT_MAX (64 * 1024) /* bytes of a nested JSON object or array kept as text */
#define PARAMS_CURSOR_MAX 4096        /* bytes of a decoded index cursor */

/* What a value was in the request. Form and query values are all strings. */
enum param_type {
    PARAM_STR,   /* a string */
    PARAM_NUM,   /* a JSON number; value is its text ("12", "1.5e3") */
    PARAM_BOOL,  /* a JSON true or false; value is "true" or "false" */
    PARAM_NULL,  /* a JSON null; value is "" */
    PARAM_OTHER, /* a JSON object or array; value is it as compact JSON text ("object" or
                    "array" when over PARAMS_OBJECT_MAX) */
};

struct param {
    char *name;  /* NUL-terminated, owned */
    char *value; /* NUL-terminated, owned; UTF-8 without NUL bytes */
    size_t len;  /* bytes of value */
    enum param_type type;
};

/* A small map, later values replacing earlier ones of the same name (as
 * Rails merges query, then body). Initialise with params_init(). */
struct params {
    struct param v[PARAMS_MAX];
    size_t n;
};

void params_init(struct params *p);

/* Releases every name and value; p is empty and usable again. */
void params_free(struct params *p);

/* Copies name[0..nlen) and value[0..vlen) in, replacing a parameter of the
 * same name. Returns 0, -SIMAP_EINVAL (name empty, over PARAMS_NAME_MAX, or
 * name or value not UTF-8 or holding a NUL) or -SIMAP_ETOOBIG (PARAMS_MAX
 * reached). */
int params_set(struct params *p, const char *name, size_t nlen, const char *value, size_t vlen,
               enum param_type type);

/* Returns the parameter called name, or NULL. Borrowed from p. */
const struct param *params_get(const struct params *p, const char *name);

/*
 * Decodes n bytes of percent-encoded text into out, which holds at least
 * n + 1 bytes (decoding never grows), and NUL-terminates it; *outlen gets the
 * decoded length. plus_is_space turns '+' into ' ' (forms and queries, not
 * paths). Returns 0, or -SIMAP_EINVAL for '%' not followed by two hex
 * digits. The result may hold NUL bytes (from %00): the caller checks.
 */
int params_percent_decode(const char *s, size_t n, int plus_is_space, char *out, size_t *outlen);

/*
 * Adds every name=value pair of form-encoded s[0..n) ("a=1&b=x+y&c", '&'
 * separated; a pair without '=' has the empty value; empty pairs are
 * skipped). Returns 0, or an error as params_set() or params_percent_decode()
 * with a one-line reason naming the parameter in err (errlen may be 0).
 */
int params_parse_form(struct params *p, const char *s, size_t n, char *err, size_t errlen);

/*
 * Adds the members of the JSON object s[0..n): strings, numbers, booleans and
 * null by their type, nested objects and arrays as PARAM_OTHER with their
 * compact JSON text (for the routes that take one: oauth2_authorize_params,
 * mailboxes; a route that wants a scalar refuses them). Returns 0, -SIMAP_EINVAL (not JSON, not an
 * object, invalid UTF-8, \u0000, duplicate keys, a bad name) or
 * -SIMAP_ETOOBIG (nesting over 32, too many members), with the reason in err.
 */
int params_parse_json(struct params *p, const char *s, size_t n, char *err, size_t errlen);

/* The segments of a request path, percent-decoded. */
struct path {
    char *seg[PATH_MAX_SEGS]; /* owned, NUL-terminated */
    size_t len[PATH_MAX_SEGS];
    size_t n;
};

/*
 * Splits the raw (still percent-encoded) path s[0..n) at '/' and decodes each
 * segment, so "%2F" inside a segment stays part of it. Leading, trailing and
 * doubled slashes make no empty segments. Stops at '?' or '#'. Returns 0, or
 * -SIMAP_EINVAL (bad escape, NUL byte, invalid UTF-8, segment over
 * PATH_SEG_MAX) or -SIMAP_ETOOBIG (over PATH_MAX_SEGS segments), with the
 * reason in err. path_free() it either way.
 */
int path_split(struct path *path, const char *s, size_t n, char *err, size_t errlen);

void path_free(struct path *path);

/* ---- Typed reading of one parameter ---- */

/*
 * Each returns 0 with the value, -SIMAP_ENOTFOUND when the parameter is
 * absent (p NULL), or -SIMAP_EINVAL when it is present but not of the type.
 *
 * param_text: strings, and numbers written as integers (a JSON client may
 * send a numeric tag); null reads as "" (clearing the field). *out is
 * borrowed from the parameter.
 *
 * param_bool: JSON true/false, the numbers 0 and 1, or the strings true,
 * false, 1, 0, t, f, yes, no, on, off (any case; Rails' casts).
 *
 * param_int: a JSON integer or a string of decimal digits with an optional
 * '-', within [min, max].
 */
int param_text(const struct param *p, const char **out);
int param_bool(const struct param *p, int *out);
int param_int(const struct param *p, int64_t min, int64_t max, int64_t *out);

/* Returns 1 when s[0..n) holds no ASCII control character (0x00-0x1f,
 * 0x7f), else 0. Values that end up in Redis keys or logs must pass it. */
int params_is_printable(const char *s, size_t n);

/*
 * Returns 1 when s is a token of 1 to max bytes made of ASCII letters,
 * digits and the characters of punct (say "_-" for provider codes, "._-" for
 * event ids), else 0. Path segments that name a record must pass it before
 * they reach a Redis key.
 */
int params_is_token(const char *s, size_t max, const char *punct);

/* Lowers ASCII letters of s in place (as Lua's string.lower does in Redis),
 * leaving other bytes alone, so the api and the scripts build the same
 * case-insensitive index keys. Returns s. */
char *params_ascii_lower(char *s);

/*
 * The opaque cursors of the admin API's index pages (a search of users,
 * partners by name): the index member a page stopped after, base64url
 * without padding. params_cursor_encode() returns member's cursor (a new
 * string: xfree() it). params_cursor_decode() decodes text into a new
 * member *member (xfree() it) and returns 0 when it is a cursor that page
 * could have made: at most 4096 bytes, no NUL, starting with prefix (the
 * search it continues); else -SIMAP_EINVAL, *member NULL.
 */
char *params_cursor_encode(const char *member);
int params_cursor_decode(const char *text, const char *prefix, char **member);

#endif
