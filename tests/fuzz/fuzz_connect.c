/*
 * libFuzzer driver of cmd/api/connect: the parsers of what browsers and
 * OAuth2 providers send the connect pages: a link's query (user_id, ts,
 * sig, success=, failure=, the second '?'), a token answer, an ID token, a
 * userinfo answer, a flow record, a Cookie header, extra authorization
 * parameters. The first byte picks which; the rest is the input. Checks
 * what connect.h promises: a success or failure URL kept passes
 * connect_url_ok(), an error appended to it keeps it whole, escaped HTML
 * holds no raw markup.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/api/connect.c"
#include "cmd/api/params.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_url(const char *u)
{
    if (u == NULL)
        return;
    if (!connect_url_ok(u))
        abort();
    char *e = connect_url_with_error(u, "access_denied");
    if (strncmp(e, u, strcspn(u, "#?")) != 0 || strstr(e, "error=access_denied") == NULL)
        abort();
    xfree(e);
}

static void check_escaped(const char *s)
{
    char *h = connect_html_escape(s);
    if (strpbrk(h, "<>\"'") != NULL)
        abort();
    xfree(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 70000)
        return 0;
    size_t n = size - 1;
    char *in = malloc(n + 1);
    memcpy(in, data + 1, n);
    in[n] = '\0';
    static const unsigned char key[32];
    switch (data[0] % 7) {
    case 0: {
        struct connect_link l;
        if (connect_link_parse(in, n, &l) == 0)
            (void)connect_link_verify(key, "connect", &l, 1000);
        check_url(l.success);
        check_url(l.failure);
        connect_link_free(&l);
        break;
    }
    case 1: {
        struct connect_tokens t;
        (void)connect_tokens_parse(in, n, &t);
        connect_tokens_free(&t);
        break;
    }
    case 2: {
        char *e = connect_id_token_email(in);
        if (e != NULL)
            check_escaped(e);
        xfree(e);
        break;
    }
    case 3: {
        char *e = connect_userinfo_email(in, n);
        xfree(e);
        break;
    }
    case 4: {
        struct connect_flow f;
        if (connect_flow_decode(in, n, &f) == 0) {
            char *again = connect_flow_encode(&f);
            struct connect_flow g;
            if (connect_flow_decode(again, strlen(again), &g) != 0 ||
                strcmp(g.success, f.success) != 0 || strcmp(g.verifier, f.verifier) != 0)
                abort();
            connect_flow_free(&g);
            xfree(again);
        }
        connect_flow_free(&f);
        break;
    }
    case 5: {
        char v[128];
        if (connect_cookie_get(in, CONNECT_COOKIE, v, sizeof v) && strlen(v) < 16)
            abort();
        check_escaped(in);
        break;
    }
    default: {
        struct connect_authz a = {.authorize_url = "https://x.example/a?b=1",
                                  .client_id = "c",
                                  .redirect_uri = "https://r.example/cb",
                                  .state = "s",
                                  .code_challenge = "c",
                                  .extra_json = in};
        int ok = in[0] == '\0' || connect_params_json_ok(in, strlen(in));
        char *u = connect_authorize_url(&a);
        if ((u != NULL) != ok)
            abort();
        xfree(u);
        break;
    }
    }
    free(in);
    return 0;
}
