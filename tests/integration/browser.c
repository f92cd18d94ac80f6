/*
 * tests/integration/browser: see browser.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/browser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static size_t on_page_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct page *p = userdata;
    size_t n = size * nmemb;
    char line[8192];
    size_t len = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, data, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "Location: ", 10) == 0)
        snprintf(p->location, sizeof p->location, "%s", line + 10);
    if (strncasecmp(line, "Set-Cookie: ", 12) == 0)
        snprintf(p->cookie, sizeof p->cookie, "%.1000s", line + 12);
    return n;
}

void browser_open(struct browser *b, int api_port)
{
    char to[128];
    snprintf(to, sizeof to, "connect.test:80:127.0.0.1:%d", api_port);
    b->connect_to = curl_slist_append(NULL, to);
    b->c = curl_easy_init();
    curl_easy_setopt(b->c, CURLOPT_COOKIEFILE, "");
    curl_easy_setopt(b->c, CURLOPT_CONNECT_TO, b->connect_to);
    curl_easy_setopt(b->c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(b->c, CURLOPT_TIMEOUT_MS, 30000L);
}

void browser_close(struct browser *b)
{
    curl_easy_cleanup(b->c);
    curl_slist_free_all(b->connect_to);
}

void page_free(struct page *p)
{
    free(p->body.p);
    memset(p, 0, sizeof *p);
}

void browser_visit(struct browser *b, const char *url, const char *form, struct page *p)
{
    page_free(p);
    curl_easy_setopt(b->c, CURLOPT_URL, url);
    curl_easy_setopt(b->c, CURLOPT_HEADERFUNCTION, on_page_header);
    curl_easy_setopt(b->c, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(b->c, CURLOPT_WRITEFUNCTION, on_api_body);
    curl_easy_setopt(b->c, CURLOPT_WRITEDATA, &p->body);
    if (form != NULL) {
        curl_easy_setopt(b->c, CURLOPT_POSTFIELDS, form);
    } else {
        curl_easy_setopt(b->c, CURLOPT_HTTPGET, 1L);
    }
    p->status = -1;
    if (curl_easy_perform(b->c) == CURLE_OK)
        curl_easy_getinfo(b->c, CURLINFO_RESPONSE_CODE, &p->status);
    if (p->body.p == NULL)
        p->body.p = calloc(1, 1);
}

void query_value(const char *url, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);
    for (const char *p = q; p != NULL; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, nl) == 0 && p[1 + nl] == '=') {
            const char *v = p + 2 + nl;
            size_t len = strcspn(v, "&#");
            int dl = 0;
            char *d = curl_easy_unescape(NULL, v, (int)len, &dl);
            snprintf(out, n, "%s", d);
            curl_free(d);
            return;
        }
    }
}

/* The form of the consent page p, every hidden field plus email and
 * decision, form-encoded into out. */
static void consent_form(const struct page *p, const char *email, const char *decision, char *out,
                         size_t n)
{
    size_t o = 0;
    for (const char *s = p->body.p; (s = strstr(s, "type=\"hidden\" name=\"")) != NULL;) {
        s += 20;
        const char *ne = strchr(s, '"');
        const char *v = strstr(ne, "value=\"") + 7;
        const char *ve = strchr(v, '"');
        char raw[4096];
        size_t k = 0;
        for (const char *c = v; c < ve && k + 1 < sizeof raw;) {
            static const char *const ent[][2] = {
                {"&amp;", "&"}, {"&quot;", "\""}, {"&lt;", "<"}, {"&gt;", ">"}, {"&#39;", "'"}};
            size_t e;
            for (e = 0; e < 5; e++)
                if (strncmp(c, ent[e][0], strlen(ent[e][0])) == 0)
                    break;
            if (e < 5) {
                raw[k++] = ent[e][1][0];
                c += strlen(ent[e][0]);
            } else {
                raw[k++] = *c++;
            }
        }
        raw[k] = '\0';
        char *enc = curl_easy_escape(NULL, raw, 0);
        o += (size_t)snprintf(out + o, n - o, "%.*s=%s&", (int)(ne - s), s, enc);
        curl_free(enc);
        s = ve;
    }
    snprintf(out + o, n - o, "email=%s&decision=%s", email, decision);
}

int browser_consent(struct browser *b, int idp_port, const char *link, const char *email,
                    const char *decision, char *cb, size_t n)
{
    struct page p = {0};
    char want[64], auth[8192];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/authorize?", idp_port);
    browser_visit(b, link, NULL, &p);
    if (p.status != 302 || strncmp(p.location, want, strlen(want)) != 0) {
        fprintf(stderr, "browser: %s gave %ld to %s, want 302 to %s...\n", link, p.status,
                p.location, want);
        page_free(&p);
        return -1;
    }
    snprintf(auth, sizeof auth, "%s", p.location);
    page_free(&p);
    return browser_answer_consent(b, idp_port, auth, email, decision, cb, n);
}

int browser_answer_consent(struct browser *b, int idp_port, const char *auth, const char *email,
                           const char *decision, char *cb, size_t n)
{
    struct page p = {0};
    char post[64];
    browser_visit(b, auth, NULL, &p);
    if (p.status != 200) {
        fprintf(stderr, "browser: the consent page gave %ld\n", p.status);
        page_free(&p);
        return -1;
    }
    char *form = malloc(16384);
    char *enc = curl_easy_escape(NULL, email, 0);
    consent_form(&p, enc, decision, form, 16384);
    curl_free(enc);
    snprintf(post, sizeof post, "http://127.0.0.1:%d/authorize", idp_port);
    browser_visit(b, post, form, &p);
    free(form);
    const char *cb_prefix = BROWSER_PUBLIC "/users/connect/callback?";
    int ok = p.status == 302 && strncmp(p.location, cb_prefix, strlen(cb_prefix)) == 0;
    if (ok)
        snprintf(cb, n, "%s", p.location);
    else
        fprintf(stderr, "browser: the consent gave %ld to %s, want 302 to %s...\n", p.status,
                p.location, cb_prefix);
    page_free(&p);
    return ok ? 0 : -1;
}

/* The whole file at path, NUL-terminated (free() it), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *s = calloc(1, 1 << 20);
    size_t n = fread(s, 1, (1 << 20) - 1, f);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Runs argv (with env) to its end within ms, its output into dir/name.log
 * and *out. The exit code. */
static int run_to_end(const char *dir, const char *name, const char *const *argv,
                      const char *const *env, int ms, char **out)
{
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/%s.log", dir, name);
    assert_int_equal(harness_spawn(&p, argv, env), 0);
    if (harness_proc_wait(&p, ms) < 0) {
        harness_proc_stop(&p);
        fail_msg("%s did not finish within %d ms; log %s", name, ms, p.log);
    }
    *out = slurp(p.log);
    return p.exit_code;
}

/* puppeteer-core in src/node_modules, installed from the npm registry when
 * missing. */
static void need_puppeteer(const char *dir, const char *src)
{
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/node_modules/puppeteer-core/package.json", src);
    if (access(probe, R_OK) == 0)
        return;
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && npm install --no-save --no-package-lock --no-audit --no-fund", src);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *log = NULL;
    int rc = run_to_end(dir, "npm-install", argv, NULL, 300000, &log);
    if (rc != 0 || access(probe, R_OK) != 0)
        fail_msg("npm could not install puppeteer-core into %s (exit %d):\n%s", src, rc,
                 log ? log : "");
    free(log);
}

char *browser_chromium(const char *dir, const char *name, const char *script,
                       const char *const *env, int ms)
{
    if (access(BROWSER_CHROMIUM, X_OK) != 0 || access(BROWSER_NODE, X_OK) != 0)
        fail_msg("%s or %s is missing: install the Debian packages chromium and nodejs (make "
                 "deps)",
                 BROWSER_CHROMIUM, BROWSER_NODE);
    const char *root = getenv("SUPERIMAP_SRC_DIR");
    char src[1024], path[1200];
    snprintf(src, sizeof src, "%s/tests/browser", root ? root : ".");
    snprintf(path, sizeof path, "%s/%s", src, script);
    need_puppeteer(dir, src);
    static char home[1100], tmp[1100];
    snprintf(home, sizeof home, "HOME=%s", dir);
    snprintf(tmp, sizeof tmp, "TMPDIR=%s", dir);
    const char *all[32];
    size_t n = 0;
    all[n++] = home;
    all[n++] = tmp;
    all[n++] = "CHROMIUM=" BROWSER_CHROMIUM;
    all[n++] = "PATH=/usr/bin:/bin";
    for (size_t i = 0; env != NULL && env[i] != NULL && n + 1 < sizeof all / sizeof all[0]; i++)
        all[n++] = env[i];
    all[n] = NULL;
    const char *argv[] = {BROWSER_NODE, path, NULL};
    char *out = NULL;
    int rc = run_to_end(dir, name, argv, all, ms, &out);
    if (rc != 0)
        fail_msg("the browser script %s failed (exit %d):\n%s", script, rc, out ? out : "");
    return out != NULL ? out : calloc(1, 1);
}

int browser_output_line(const char *out, const char *prefix, char *line, size_t n)
{
    for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            snprintf(line, n, "%.*s", (int)strcspn(p, "\n"), p);
            return 0;
        }
    }
    return -1;
}
