/*
 * tests/integration/browser: a "browser" for the connect pages, one libcurl
 * handle with its cookie jar that follows no redirect by itself, so a test
 * sees every 302 of the flow: the connect link, the provider's consent page
 * (superimap-fake-oauth2d), the callback, the disconnect link.
 *
 * The api's SUPERIMAP_PUBLIC_URL is BROWSER_PUBLIC; the browser reaches it
 * on the api's port through CURLOPT_CONNECT_TO, so every server keeps
 * port 0.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_BROWSER_H
#define TESTS_INTEGRATION_BROWSER_H

#include <stddef.h>

#include <curl/curl.h>

#include "tests/integration/test_api_client.h"

#define BROWSER_PUBLIC "http://connect.test" /* the api's SUPERIMAP_PUBLIC_URL */

struct browser {
    CURL *c;
    struct curl_slist *connect_to;
};

/* One answer. */
struct page {
    long status; /* -1: no answer */
    char location[8192];
    char cookie[1024]; /* the last Set-Cookie line */
    struct sink_buf body;
};

/* A fresh browser (empty cookie jar) reaching BROWSER_PUBLIC on the api's
 * port api_port. */
void browser_open(struct browser *b, int api_port);
void browser_close(struct browser *b);

/* GET url, or POST form to it when form is not NULL, into p (freed first);
 * no redirect followed. */
void browser_visit(struct browser *b, const char *url, const char *form, struct page *p);
void page_free(struct page *p);

/* The value of query parameter name of url, decoded, into out ("" when
 * absent). */
void query_value(const char *url, const char *name, char *out, size_t n);

/*
 * Follows a connect link in b to the consent page of the provider on
 * 127.0.0.1:idp_port and answers it as email with decision ("allow" or
 * "deny"); the callback URL the provider sends the browser to into cb (not
 * visited). 0, or -1 with what went wrong on stderr.
 */
int browser_consent(struct browser *b, int idp_port, const char *link, const char *email,
                    const char *decision, char *cb, size_t n);

/* The second half of browser_consent(): opens the provider's authorize URL
 * auth (a consent page) and answers it. */
int browser_answer_consent(struct browser *b, int idp_port, const char *auth, const char *email,
                           const char *decision, char *cb, size_t n);

/*
 * Headless Chromium (Debian's chromium at BROWSER_CHROMIUM, driven by
 * puppeteer-core 24.x from tests/browser, which is npm-installed into
 * tests/browser/node_modules when missing: test-only, never committed).
 * Runs `node tests/browser/<script>` with env (NULL-terminated
 * "NAME=value") plus CHROMIUM, PATH, and HOME and TMPDIR set to dir (the
 * test's own directory, which also gets the log <name>.log) within ms.
 * Fails the cmocka test, saying why, when chromium or node is missing (make
 * deps installs them), npm cannot install puppeteer-core, or the script
 * does not exit 0 in time. Returns the script's output, stdout and stderr
 * (free() it).
 */
#define BROWSER_CHROMIUM "/usr/bin/chromium"
#define BROWSER_NODE     "/usr/bin/node"
char *browser_chromium(const char *dir, const char *name, const char *script,
                       const char *const *env, int ms);

/* The first line of out that starts with prefix ("{\"url\""), up to its
 * newline, into line; -1 when there is none. */
int browser_output_line(const char *out, const char *prefix, char *line, size_t n);

#endif
