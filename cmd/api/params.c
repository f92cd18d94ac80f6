/*
 * cmd/api/params: request parameters from query strings, form and JSON
 * bodies, and path segments (see params.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/json.h"
#include "proto/codec.h"

#define JSON_BODY_DEPTH 32

void params_init(struct params *p)
{
    memset(p, 0, sizeof *p);
}

void params_free(struct params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        xfree(p->v[i].name);
        xfree(p->v[i].value);
    }
    p->n = 0;
}

static int is_clean_text(const char *s, size_t n)
{
    return memchr(s, '\0', n) == NULL && json_utf8_valid(s, n);
}

int params_set(struct params *p, const char *name, size_t nlen, const char *value, size_t vlen,
               enum param_type type)
{
    if (nlen == 0 || nlen > PARAMS_NAME_MAX || !is_clean_text(name, nlen) ||
        !is_clean_text(value, vlen))
        return -SIMAP_EINVAL;
    for (size_t i = 0; i < p->n; i++) {
        if (strlen(p->v[i].name) == nlen && memcmp(p->v[i].name, name, nlen) == 0) {
            xfree(p->v[i].value);
            p->v[i].value = xstrndup(value, vlen);
            p->v[i].len = vlen;
            p->v[i].type = type;
            return 0;
        }
    }
    if (p->n == PARAMS_MAX)
        return -SIMAP_ETOOBIG;
    struct param *q = &p->v[p->n++];
    q->name = xstrndup(name, nlen);
    q->value = xstrndup(value, vlen);
    q->len = vlen;
    q->type = type;
    return 0;
}

const struct param *params_get(const struct params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return &p->v[i];
    return NULL;
}

int params_percent_decode(const char *s, size_t n, int plus_is_space, char *out, size_t *outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? codec_hex_value((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? codec_hex_value((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *outlen = j;
                out[j] = '\0';
                return -SIMAP_EINVAL;
            }
            out[j++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[j++] = ' ';
        } else {
            out[j++] = c;
        }
    }
    out[j] = '\0';
    *outlen = j;
    return 0;
}

/* Why a decoded name or value was refused, for the message. */
static const char *why_unclean(const char *s, size_t n)
{
    if (memchr(s, '\0', n) != NULL)
        return "contains a NUL byte";
    if (!json_utf8_valid(s, n))
        return "is not valid UTF-8";
    return NULL;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A name safe to quote in a message: printable and short, else "?". */
static void quotable(char *dst, size_t dstlen, const char *s, size_t n)
{
    if (n == 0 || n >= dstlen || !params_is_printable(s, n) || !json_utf8_valid(s, n)) {
        snprintf(dst, dstlen, "?");
        return;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int params_parse_form(struct params *p, const char *s, size_t n, char *err, size_t errlen)
{
    char *name = xmalloc(n + 1), *value = xmalloc(n + 1);
    int rc = 0;
    size_t i = 0;
    while (i < n && rc == 0) {
        const char *amp = memchr(s + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - s) : n;
        const char *pair = s + i;
        size_t plen = end - i;
        i = end + 1;
        if (plen == 0)
            continue;
        const char *eq = memchr(pair, '=', plen);
        size_t klen = eq ? (size_t)(eq - pair) : plen;
        size_t nl, vl;
        char shown[PARAMS_NAME_MAX + 1];
        if (params_percent_decode(pair, klen, 1, name, &nl) < 0) {
            set_err(err, errlen, "parameter name has an invalid percent-encoding");
            rc = -SIMAP_EINVAL;
            break;
        }
        quotable(shown, sizeof shown, name, nl);
        const char *why = why_unclean(name, nl);
        if (why != NULL || nl == 0 || nl > PARAMS_NAME_MAX) {
            set_err(err, errlen, "parameter name %s", why ? why : "is empty or too long");
            rc = -SIMAP_EINVAL;
            break;
        }
        const char *v = eq ? eq + 1 : pair + plen;
        size_t vlen0 = eq ? plen - klen - 1 : 0;
        if (params_percent_decode(v, vlen0, 1, value, &vl) < 0) {
            set_err(err, errlen, "%s: invalid percent-encoding", shown);
            rc = -SIMAP_EINVAL;
            break;
        }
        if ((why = why_unclean(value, vl)) != NULL) {
            set_err(err, errlen, "%s: %s", shown, why);
            rc = -SIMAP_EINVAL;
            break;
        }
        rc = params_set(p, name, nl, value, vl, PARAM_STR);
        if (rc == -SIMAP_ETOOBIG)
            set_err(err, errlen, "too many parameters");
    }
    xfree(name);
    xfree(value);
    return rc;
}

/* Writes v (any JSON value) into g. */
static void gen_value(struct json_gen *g, yajl_val v)
{
    if (YAJL_IS_STRING(v)) {
        json_gen_str(g, v->u.string);
    } else if (YAJL_IS_NUMBER(v)) {
        json_gen_raw(g, v->u.number.r, strlen(v->u.number.r));
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        json_gen_bool(g, YAJL_IS_TRUE(v));
    } else if (YAJL_IS_ARRAY(v)) {
        json_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            gen_value(g, v->u.array.values[i]);
        json_gen_array_close(g);
    } else if (YAJL_IS_OBJECT(v)) {
        json_gen_object_open(g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            json_gen_key(g, v->u.object.keys[i]);
            gen_value(g, v->u.object.values[i]);
        }
        json_gen_object_close(g);
    } else {
        json_gen_null(g);
    }
}

/* A nested object or array as compact JSON text (xfree() it), or NULL when it does
 * not fit a body's size. */
static char *object_text(yajl_val v)
{
    struct json_gen *g = json_gen_new(PARAMS_OBJECT_MAX);
    gen_value(g, v);
    char *out = NULL;
    if (json_gen_finish(g, &out, NULL) < 0)
        out = NULL;
    json_gen_free(g);
    return out;
}

int params_parse_json(struct params *p, const char *s, size_t n, char *err, size_t errlen)
{
    yajl_val obj;
    int rc = json_parse_object(s, n, JSON_BODY_DEPTH, &obj, err, errlen);
    if (rc < 0)
        return rc;
    size_t count = obj->u.object.len;
    char *json_text = NULL;
    for (size_t i = 0; i < count && rc == 0; i++) {
        const char *k = obj->u.object.keys[i];
        yajl_val v = obj->u.object.values[i];
        const char *text = "";
        enum param_type t = PARAM_OTHER;
        if (YAJL_IS_STRING(v)) {
            text = v->u.string;
            t = PARAM_STR;
        } else if (YAJL_IS_NUMBER(v)) {
            text = v->u.number.r;
            t = PARAM_NUM;
        } else if (YAJL_IS_TRUE(v)) {
            text = "true";
            t = PARAM_BOOL;
        } else if (YAJL_IS_FALSE(v)) {
            text = "false";
            t = PARAM_BOOL;
        } else if (YAJL_IS_NULL(v)) {
            t = PARAM_NULL;
        } else {
            json_text = object_text(v);
            text = json_text != NULL ? json_text : YAJL_IS_ARRAY(v) ? "array" : "object";
        }
        rc = params_set(p, k, strlen(k), text, strlen(text), t);
        xfree(json_text);
        json_text = NULL;
        if (rc == -SIMAP_ETOOBIG)
            set_err(err, errlen, "too many parameters");
        else if (rc < 0)
            set_err(err, errlen, "a parameter name is empty or longer than 128 bytes");
    }
    json_free(obj);
    return rc;
}

void path_free(struct path *path)
{
    for (size_t i = 0; i < path->n; i++)
        xfree(path->seg[i]);
    path->n = 0;
}

int path_split(struct path *path, const char *s, size_t n, char *err, size_t errlen)
{
    memset(path, 0, sizeof *path);
    const char *stop = NULL;
    for (size_t i = 0; i < n && stop == NULL; i++)
        if (s[i] == '?' || s[i] == '#')
            stop = s + i;
    if (stop != NULL)
        n = (size_t)(stop - s);
    size_t i = 0;
    while (i < n) {
        if (s[i] == '/') {
            i++;
            continue;
        }
        const char *slash = memchr(s + i, '/', n - i);
        size_t end = slash ? (size_t)(slash - s) : n;
        size_t len = end - i;
        if (path->n == PATH_MAX_SEGS) {
            set_err(err, errlen, "path has too many segments");
            return -SIMAP_ETOOBIG;
        }
        char *seg = xmalloc(len + 1);
        size_t dl;
        path->seg[path->n] = seg;
        path->len[path->n] = 0;
        path->n++;
        if (params_percent_decode(s + i, len, 0, seg, &dl) < 0) {
            set_err(err, errlen, "path segment has an invalid percent-encoding");
            return -SIMAP_EINVAL;
        }
        path->len[path->n - 1] = dl;
        const char *why = why_unclean(seg, dl);
        if (why != NULL) {
            set_err(err, errlen, "path segment %s", why);
            return -SIMAP_EINVAL;
        }
        if (dl > PATH_SEG_MAX) {
            set_err(err, errlen, "path segment is longer than 4096 bytes");
            return -SIMAP_EINVAL;
        }
        i = end;
    }
    return 0;
}

/* ---- Typed reading ---- */

static int is_integer_text(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int param_text(const struct param *p, const char **out)
{
    if (p == NULL)
        return -SIMAP_ENOTFOUND;
    switch (p->type) {
    case PARAM_STR:
        *out = p->value;
        return 0;
    case PARAM_NULL:
        *out = "";
        return 0;
    case PARAM_NUM:
        if (!is_integer_text(p->value))
            return -SIMAP_EINVAL;
        *out = p->value;
        return 0;
    default:
        return -SIMAP_EINVAL;
    }
}

int param_bool(const struct param *p, int *out)
{
    static const char *const yes[] = {"true", "1", "t", "yes", "on"};
    static const char *const no[] = {"false", "0", "f", "no", "off"};
    if (p == NULL)
        return -SIMAP_ENOTFOUND;
    if (p->type != PARAM_STR && p->type != PARAM_BOOL && p->type != PARAM_NUM)
        return -SIMAP_EINVAL;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(p->value, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(p->value, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -SIMAP_EINVAL;
}

int param_int(const struct param *p, int64_t min, int64_t max, int64_t *out)
{
    if (p == NULL)
        return -SIMAP_ENOTFOUND;
    if ((p->type != PARAM_STR && p->type != PARAM_NUM) || !is_integer_text(p->value) || p->len > 19)
        return -SIMAP_EINVAL;
    int neg = p->value[0] == '-';
    int64_t v = 0;
    for (const char *s = p->value + neg; *s; s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return -SIMAP_EINVAL;
        v = v * 10 + (*s - '0');
    }
    if (neg)
        v = -v;
    if (v < min || v > max)
        return -SIMAP_EINVAL;
    *out = v;
    return 0;
}

int params_is_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

int params_is_token(const char *s, size_t max, const char *punct)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(punct, c) != NULL))
            return 0;
    }
    return 1;
}

char *params_ascii_lower(char *s)
{
    for (char *q = s; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    return s;
}

char *params_cursor_encode(const char *member)
{
    return codec_b64url_encode(member, strlen(member), NULL);
}

int params_cursor_decode(const char *text, const char *prefix, char **member)
{
    *member = NULL;
    size_t len = strlen(text), plen = strlen(prefix);
    unsigned char *raw;
    size_t n;
    if (len == 0 || len > PARAMS_CURSOR_MAX / 3 * 4 + 4 ||
        codec_b64url_decode(text, len, &raw, &n) < 0)
        return -SIMAP_EINVAL;
    if (n > PARAMS_CURSOR_MAX || n < plen || memchr(raw, '\0', n) != NULL ||
        memcmp(raw, prefix, plen) != 0) {
        xfree(raw);
        return -SIMAP_EINVAL;
    }
    *member = (char *)raw;
    return 0;
}
