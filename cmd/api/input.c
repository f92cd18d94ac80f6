/*
 * cmd/api/input: parameter checks shared by the route files (see input.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/input.h"

#include <stdio.h>
#include <string.h>

#include "cmd/api/api.h"
#include "cmd/api/params.h"
#include "cmd/api/rec.h"
#include "cmd/api/reply.h"
#include "core/err.h"
#include "core/netguard.h"
#include "proto/mailboxes.h"

#define EVENT_ID_MAX 200

int input_only_known(struct req *r, const char *const *allowed)
{
    for (size_t i = 0; i < r->params.n; i++) {
        const char *name = r->params.v[i].name;
        int ok = 0;
        for (const char *const *a = allowed; *a != NULL && !ok; a++)
            ok = strcmp(*a, name) == 0;
        if (!ok) {
            char shown[64];
            snprintf(shown, sizeof shown, "%s",
                     params_is_printable(name, strlen(name)) ? name : "?");
            return reply_invalid(r, shown, "unknown parameter");
        }
    }
    return 0;
}

int input_secret(struct req *r, const char *name, size_t max, const char **out)
{
    *out = NULL;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    if (param_text(p, out) < 0)
        return reply_invalid(r, name, "must be a string");
    if (strlen(*out) > max)
        return reply_invalid(r, name, "is too long");
    return 0;
}

int input_text(struct req *r, const char *name, size_t max, const char **out)
{
    int rc = input_secret(r, name, max, out);
    if (rc != 0 || *out == NULL)
        return rc;
    if (!params_is_printable(*out, strlen(*out)))
        return reply_invalid(r, name, "must not contain control characters");
    return 0;
}

int input_mailboxes(struct req *r, const char *name, char **out, int *has)
{
    *out = NULL;
    *has = 0;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    *has = 1;
    if (p->type == PARAM_NULL || (p->type == PARAM_STR && p->len == 0)) {
        *out = xstrdup("");
        return 0;
    }
    struct mailbox_list l;
    char why[160];
    /* A form sends the array's JSON text; a bare name is no list. */
    int bad = (p->type != PARAM_STR && p->type != PARAM_OTHER) ||
              (p->type == PARAM_STR && p->value[strspn(p->value, " \t\r\n")] != '[');
    if (bad)
        snprintf(why, sizeof why, "%s: must be an array of 1 to %d strings, or null", name,
                 MAILBOXES_MAX);
    else
        bad = mailboxes_parse(p->value, p->len, &l, why, sizeof why) < 0;
    if (bad) {
        *has = 0;
        return reply_error(r, 400, "invalid_parameter", name, "%s%s",
                           r->version == 1 ? "Validation failed: " : "", why);
    }
    *out = mailboxes_to_json(&l);
    mailboxes_free(&l);
    return 0;
}

/* An absolute http(s) URL with a host: "//host/x" (protocol-relative, an
 * open redirect once a browser follows it), a path and "https://" alone are
 * not. */
static int is_http_url(const char *s)
{
    const char *host = strncmp(s, "http://", 7) == 0    ? s + 7
                       : strncmp(s, "https://", 8) == 0 ? s + 8
                                                        : NULL;
    return host != NULL && *host != '\0' && strchr("/?#@:", *host) == NULL;
}

int input_url(struct req *r, const char *name, const char **out)
{
    int rc = input_text(r, name, API_URL_MAX, out);
    if (rc != 0 || *out == NULL || **out == '\0')
        return rc;
    if (!is_http_url(*out))
        return reply_invalid(r, name, "must be an absolute http:// or https:// URL");
    return 0;
}

int input_fetch_url(struct req *r, const char *name, int allow_private, const char **out)
{
    int rc = input_url(r, name, out);
    if (rc != 0 || *out == NULL || **out == '\0')
        return rc;
    enum netguard_class c = netguard_classify_url_host(*out);
    if (c == NETGUARD_INVALID || netguard_allowed(c, allow_private))
        return 0;
    char why[160];
    snprintf(why, sizeof why, "must not point at a %s address%s", netguard_class_str(c),
             c == NETGUARD_METADATA ? "" : " (allowed only in tests and local demos)");
    return reply_invalid(r, name, why);
}

int input_int(struct req *r, const char *name, int64_t min, int64_t max, int64_t *out, int *has)
{
    *has = 0;
    const struct param *p = params_get(&r->params, name);
    if (p == NULL)
        return 0;
    if (param_int(p, min, max, out) < 0) {
        char why[96];
        snprintf(why, sizeof why, "must be an integer from %lld to %lld", (long long)min,
                 (long long)max);
        return reply_invalid(r, name, why);
    }
    *has = 1;
    return 0;
}

int input_page(struct req *r, const char *prefix, int64_t limit, input_page_fn *page,
               struct rec_list *out, char **next)
{
    memset(out, 0, sizeof *out);
    *next = NULL;
    char *after = NULL;
    const struct param *p = params_get(&r->params, "cursor");
    if (p != NULL && p->len > 0 && params_cursor_decode(p->value, prefix, &after) < 0)
        return reply_invalid(r, "cursor", "is not a cursor this search returned");
    int rc = page(r, prefix, after, limit, out, next);
    xfree(after);
    return rc < 0 ? reply_unavailable(r) : 0;
}

int input_is_code(const char *code)
{
    return params_is_token(code, API_CODE_MAX, "_-");
}

int input_is_pid(const char *pid)
{
    size_t n = strlen(pid);
    if (n == 0 || n > 18 || pid[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pid[i] < '0' || pid[i] > '9')
            return 0;
    return 1;
}

int input_is_event_id(const char *id)
{
    return params_is_token(id, EVENT_ID_MAX, "._-");
}
