/*
 * libFuzzer driver of cmd/api/params: the parameter parsers of superimap-api
 * (form/query, JSON body, raw path) and the admin API's index cursors, fed
 * the same bytes. The first byte picks which (modulo 4: 0 form, 1 JSON, 3
 * cursor, else path); the rest is the input. Checks that whatever they
 * accept holds only strict UTF-8 without NUL bytes, as params.h promises,
 * and that a cursor decodes only for its search and round-trips.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/api/params.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean(const char *s, size_t n)
{
    if (memchr(s, '\0', n) != NULL || !json_utf8_valid(s, n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 70000)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char err[256];
    struct params p;
    params_init(&p);
    switch (data[0] % 4) {
    case 0:
        params_parse_form(&p, in, n, err, sizeof err);
        break;
    case 1:
        params_parse_json(&p, in, n, err, sizeof err);
        break;
    case 3: {
        /* An index cursor: what decodes starts with the prefix asked (the
         * input's first character, or none) and survives a round trip. */
        char prefix[2] = {(data[0] & 4) && n > 0 ? in[0] : '\0', '\0'};
        char *text = xstrndup(in, n), *member, *back;
        if (params_cursor_decode(text, prefix, &member) == 0) {
            char *again = params_cursor_encode(member);
            if (strncmp(member, prefix, strlen(prefix)) != 0 ||
                params_cursor_decode(again, "", &back) < 0 || strcmp(back, member) != 0)
                abort();
            xfree(again);
            xfree(back);
        }
        xfree(member);
        xfree(text);
        break;
    }
    default: {
        struct path path;
        if (path_split(&path, in, n, err, sizeof err) == 0)
            for (size_t i = 0; i < path.n; i++)
                check_clean(path.seg[i], path.len[i]);
        path_free(&path);
        break;
    }
    }
    for (size_t i = 0; i < p.n; i++) {
        check_clean(p.v[i].name, strlen(p.v[i].name));
        check_clean(p.v[i].value, p.v[i].len);
        if (strlen(p.v[i].value) != p.v[i].len)
            abort();
        const char *t;
        int b;
        int64_t v;
        (void)param_text(&p.v[i], &t);
        (void)param_bool(&p.v[i], &b);
        (void)param_int(&p.v[i], INT64_MIN + 1, INT64_MAX, &v);
    }
    params_free(&p);
    return 0;
}
