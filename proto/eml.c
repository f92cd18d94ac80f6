/*
 * proto/eml: the raw message of a new_mail payload (see eml.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/eml.h"

#include <string.h>

#include <yajl/yajl_parse.h>

#include "core/err.h"
#include "proto/codec.h"

/* The parse's state: the depth, the top-level key being read, and copies of
 * the two members. */
struct scan {
    int depth;
    int is_top_value; /* the next value belongs to a top-level key */
    int key;          /* 0 other, 1 rfc822, 2 rfc822_base64 */
    int is_object;    /* the document is an object */
    char *val[3];
    size_t len[3];
};

static int on_value(struct scan *s, const unsigned char *v, size_t n)
{
    if (s->depth == 1 && s->key > 0 && s->val[s->key] == NULL) {
        s->val[s->key] = xmalloc(n + 1);
        memcpy(s->val[s->key], v, n);
        s->val[s->key][n] = '\0';
        s->len[s->key] = n;
    }
    s->key = 0;
    return 1;
}

static int on_string(void *ctx, const unsigned char *v, size_t n)
{
    return on_value(ctx, v, n);
}

static int on_scalar(void *ctx)
{
    struct scan *s = ctx;
    if (s->depth == 1)
        s->key = 0;
    return 1;
}

static int on_bool(void *ctx, int b)
{
    (void)b;
    return on_scalar(ctx);
}

static int on_number(void *ctx, const char *v, size_t n)
{
    (void)v;
    (void)n;
    return on_scalar(ctx);
}

static int on_key(void *ctx, const unsigned char *k, size_t n)
{
    struct scan *s = ctx;
    if (s->depth != 1)
        return 1;
    s->key = n == 6 && memcmp(k, "rfc822", 6) == 0            ? 1
             : n == 13 && memcmp(k, "rfc822_base64", 13) == 0 ? 2
                                                              : 0;
    return 1;
}

static int on_open(void *ctx, int is_map)
{
    struct scan *s = ctx;
    if (s->depth == 0)
        s->is_object = is_map;
    s->key = 0;
    s->depth++;
    return 1;
}

static int on_start_map(void *ctx)
{
    return on_open(ctx, 1);
}

static int on_start_array(void *ctx)
{
    return on_open(ctx, 0);
}

static int on_end(void *ctx)
{
    struct scan *s = ctx;
    s->depth--;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_scalar,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

int eml_from_payload(const char *json, size_t len, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    struct scan s;
    memset(&s, 0, sizeof s);
    yajl_handle h = yajl_alloc(&callbacks, NULL, &s);
    int ok = yajl_parse(h, (const unsigned char *)json, len) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok && s.is_object;
    yajl_free(h);
    int rc = 0;
    if (!ok) {
        rc = -SIMAP_EPROTO;
    } else if (s.val[2] != NULL) {
        unsigned char *raw;
        if (codec_b64_decode(s.val[2], s.len[2], &raw, outlen) < 0)
            rc = -SIMAP_EPROTO;
        else
            *out = (char *)raw;
    } else if (s.val[1] != NULL) {
        *out = s.val[1];
        *outlen = s.len[1];
        s.val[1] = NULL;
    } else {
        rc = -SIMAP_ENOTFOUND;
    }
    xfree(s.val[1]);
    xfree(s.val[2]);
    return rc;
}
