/*
 * proto/oauth2: token endpoint answers (see oauth2.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/oauth2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/err.h"
#include "core/json.h"

static int token_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > OAUTH2_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static void wipe(char **p)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, strlen(*p));
        xfree(*p);
        *p = NULL;
    }
}

void oauth2_token_clear(struct oauth2_token *t)
{
    if (t == NULL)
        return;
    wipe(&t->access_token);
    wipe(&t->refresh_token);
}

const char *oauth2_outcome_name(enum oauth2_outcome o)
{
    switch (o) {
    case OAUTH2_OK:
        return "ok";
    case OAUTH2_REVOKED:
        return "revoked";
    case OAUTH2_CONFIG:
        return "config";
    case OAUTH2_RETRY:
        break;
    }
    return "retry";
}

/* The error code of an error body, or "" (copied into t->error). */
static void read_error(const char *body, size_t len, struct oauth2_token *t)
{
    yajl_val v = NULL;
    if (body == NULL || len > OAUTH2_BODY_MAX || json_parse_object(body, len, 8, &v, NULL, 0) < 0)
        return;
    const char *e = json_get_str(v, "error");
    if (e != NULL && strlen(e) < sizeof t->error && strpbrk(e, "\"\\\r\n") == NULL)
        snprintf(t->error, sizeof t->error, "%s", e);
    json_free(v);
}

static enum oauth2_outcome bad(struct oauth2_token *t, const char *why)
{
    oauth2_token_clear(t);
    snprintf(t->error, sizeof t->error, "%s", why);
    return OAUTH2_RETRY;
}

enum oauth2_outcome oauth2_token_parse(long status, const char *body, size_t len,
                                       struct oauth2_token *t)
{
    memset(t, 0, sizeof *t);
    if (status == 400 || status == 401) {
        read_error(body, len, t);
        return strcmp(t->error, "invalid_grant") == 0 ? OAUTH2_REVOKED : OAUTH2_CONFIG;
    }
    if (status < 200 || status > 299) {
        read_error(body, len, t);
        return OAUTH2_RETRY;
    }
    yajl_val v = NULL;
    if (body == NULL || len > OAUTH2_BODY_MAX || json_parse_object(body, len, 8, &v, NULL, 0) < 0)
        return bad(t, "answer is not a JSON object");
    enum oauth2_outcome out = OAUTH2_OK;
    const char *at = json_get_str(v, "access_token");
    yajl_val rt = json_get(v, "refresh_token");
    yajl_val tt = json_get(v, "token_type");
    yajl_val ei = json_get(v, "expires_in");
    int64_t exp = 0;
    if (at == NULL || !token_ok(at)) {
        out = bad(t, "no usable access_token");
    } else if (tt != NULL && (!YAJL_IS_STRING(tt) || strcasecmp(tt->u.string, "bearer") != 0)) {
        out = bad(t, "token_type is not Bearer");
    } else if (rt != NULL && !YAJL_IS_NULL(rt) &&
               (!YAJL_IS_STRING(rt) || !token_ok(rt->u.string))) {
        out = bad(t, "malformed refresh_token");
    } else if (ei != NULL && !YAJL_IS_NULL(ei) &&
               (json_val_int(ei, &exp) < 0 || exp < 0 || exp > 10L * 365 * 86400)) {
        /* Some providers send it as a string of digits: accepted below. */
        const char *s = YAJL_IS_STRING(ei) ? ei->u.string : NULL;
        char *end = NULL;
        long long n = s != NULL ? strtoll(s, &end, 10) : -1;
        if (s == NULL || end == s || *end != '\0' || n < 0 || n > 10LL * 365 * 86400)
            out = bad(t, "malformed expires_in");
        else
            exp = n;
    }
    if (out == OAUTH2_OK) {
        t->access_token = xstrdup(at);
        if (rt != NULL && YAJL_IS_STRING(rt))
            t->refresh_token = xstrdup(rt->u.string);
        t->expires_in = exp;
    }
    json_free(v);
    return out;
}
