/*
 * Unit tests of core/http: a real civetweb listener on port 0, routes, JSON
 * replies and errors, per-thread data, a refused bind.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "core/http.h"

struct sink {
    char data[4096];
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    size_t room = sizeof s->data - 1 - s->len;
    size_t k = n < room ? n : room;
    memcpy(s->data + s->len, p, k);
    s->len += k;
    s->data[s->len] = '\0';
    return n;
}

/* GETs path; returns the status and the body and Content-Type in out. */
static long get(int port, const char *path, struct sink *out, char *ctype, size_t ctlen)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    memset(out, 0, sizeof *out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(ctype, ctlen, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(c);
    return status;
}

static int thread_inits;

static void *on_thread_init(void *data)
{
    __atomic_add_fetch(&thread_inits, 1, __ATOMIC_SEQ_CST);
    return data;
}

static void on_thread_exit(void *thread_data, void *data)
{
    (void)thread_data;
    (void)data;
    __atomic_sub_fetch(&thread_inits, 1, __ATOMIC_SEQ_CST);
}

static int on_hello(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const char *tag = http_thread_data(conn);
    char body[64];
    int n = snprintf(body, sizeof body, "{\"thread\":\"%s\"}", tag ? tag : "none");
    return http_reply_json(conn, 200, body, (size_t)n);
}

static int on_error(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    return http_reply_error(conn, 409, "conflict", "tag \"x\" \\ taken");
}

static void test_routes_reply_json_and_errors(void **state)
{
    (void)state;
    char err[256];
    static char tag[] = "worker";
    struct http_opts o = {.addr = "127.0.0.1:0",
                          .threads = 3,
                          .thread_init = on_thread_init,
                          .thread_exit = on_thread_exit,
                          .data = tag};
    struct http_server *srv = http_start(&o, err, sizeof err);
    assert_non_null(srv);
    int port = http_port(srv);
    assert_true(port > 0);
    http_route(srv, "/hello$", on_hello, NULL);
    http_route(srv, "/err$", on_error, NULL);

    struct sink s;
    char ct[128];
    assert_int_equal(get(port, "/hello", &s, ct, sizeof ct), 200);
    assert_string_equal(s.data, "{\"thread\":\"worker\"}");
    assert_string_equal(ct, "application/json");
    assert_int_equal(get(port, "/err", &s, ct, sizeof ct), 409);
    assert_string_equal(
        s.data, "{\"error\":{\"code\":\"conflict\",\"message\":\"tag \\\"x\\\" \\\\ taken\"}}");
    assert_true(__atomic_load_n(&thread_inits, __ATOMIC_SEQ_CST) >= 1);
    http_stop(srv);
    assert_int_equal(__atomic_load_n(&thread_inits, __ATOMIC_SEQ_CST), 0);
}

static void test_busy_port_is_a_clear_error(void **state)
{
    (void)state;
    char err[256];
    struct http_opts o = {.addr = "127.0.0.1:0", .threads = 1};
    struct http_server *a = http_start(&o, err, sizeof err);
    assert_non_null(a);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http_port(a));
    struct http_opts o2 = {.addr = addr, .threads = 1};
    err[0] = '\0';
    assert_null(http_start(&o2, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen on"));
    assert_non_null(strstr(err, addr));
    struct http_opts o3 = {.addr = "no-port", .threads = 1};
    assert_null(http_start(&o3, err, sizeof err));
    assert_non_null(strstr(err, "bad listen address"));
    http_stop(a);
}

static void test_no_directory_listing_without_root(void **state)
{
    (void)state;
    char err[256];
    struct http_opts o = {.addr = "127.0.0.1:0", .threads = 1};
    struct http_server *srv = http_start(&o, err, sizeof err);
    assert_non_null(srv);
    struct sink s;
    char ct[128];
    assert_int_equal(get(http_port(srv), "/", &s, ct, sizeof ct), 404);
    assert_null(strstr(s.data, "Index of"));
    http_stop(srv);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_reply_json_and_errors),
        cmocka_unit_test(test_busy_port_is_a_clear_error),
        cmocka_unit_test(test_no_directory_listing_without_root),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
