/*
 * Integration harness for superimap-fake-oauth2d (see fakeoauth.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/fakeoauth.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <yajl/yajl_tree.h>

static int deadline_ms(void)
{
    return harness_prefixed() ? 60000 : 10000;
}

int fakeoauth_start(struct fakeoauth *f, const char *const *args)
{
    memset(f, 0, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/superimap-oauth-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        perror("mkdtemp");
        f->dir[0] = '\0';
        return -1;
    }
    snprintf(f->proc.log, sizeof f->proc.log, "%s/fake-oauth2d.log", f->dir);
    char path[512];
    harness_bin("superimap-fake-oauth2d", path, sizeof path);
    const char *argv[40];
    int n = 0;
    argv[n++] = path;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 38; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    if (harness_spawn(&f->proc, argv, NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", path);
        return -1;
    }
    long long deadline = harness_now_ms() + deadline_ms();
    while (harness_now_ms() < deadline) {
        FILE *fp = fopen(f->proc.log, "r");
        char line[1024];
        while (fp != NULL && fgets(line, sizeof line, fp) != NULL) {
            const char *p = strstr(line, "http listening");
            p = p ? strstr(p, "port=") : NULL;
            if (p != NULL) {
                f->port = f->proc.port = atoi(p + 5);
                fclose(fp);
                return f->port > 0 ? 0 : -1;
            }
        }
        if (fp != NULL)
            fclose(fp);
        if (harness_proc_wait(&f->proc, 0) == 0) {
            fprintf(stderr, "fake-oauth2d exited with %d; log %s\n", f->proc.exit_code,
                    f->proc.log);
            return -1;
        }
        harness_poll_pause();
    }
    fprintf(stderr, "fake-oauth2d reported no port; log %s\n", f->proc.log);
    return -1;
}

int fakeoauth_stop(struct fakeoauth *f)
{
    int code = 0;
    if (f->proc.pid > 0 && !f->proc.exited) {
        harness_proc_signal(&f->proc, SIGTERM);
        if (harness_proc_wait(&f->proc, deadline_ms()) < 0)
            harness_proc_stop(&f->proc);
        code = f->proc.exit_code;
    }
    if (f->dir[0] != '\0') {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", f->dir);
        f->dir[0] = '\0';
    }
    return code;
}

const char *fakeoauth_url(const struct fakeoauth *f, const char *path, char *out, size_t outlen)
{
    snprintf(out, outlen, "http://127.0.0.1:%d%s", f->port, path);
    return out;
}

struct sink {
    char *buf;
    size_t cap, len;
    char *loc;
    size_t loccap;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    if (s->buf != NULL && s->len + 1 < s->cap) {
        size_t k = n < s->cap - s->len - 1 ? n : s->cap - s->len - 1;
        memcpy(s->buf + s->len, data, k);
        s->len += k;
        s->buf[s->len] = '\0';
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nitems;
    if (s->loc != NULL && n > 10 && strncasecmp(data, "Location: ", 10) == 0) {
        size_t k = n - 10;
        while (k > 0 && (data[10 + k - 1] == '\r' || data[10 + k - 1] == '\n'))
            k--;
        if (k >= s->loccap)
            k = s->loccap - 1;
        memcpy(s->loc, data + 10, k);
        s->loc[k] = '\0';
    }
    return n;
}

/* One request; body NULL is a GET. */
static int request(struct fakeoauth *f, const char *path, const char *ctype, const char *body,
                   char *out, size_t outlen, char *location, size_t loclen)
{
    char url[512], hdr[128];
    fakeoauth_url(f, path, url, sizeof url);
    struct sink s = {out, outlen, 0, location, loclen};
    if (out != NULL && outlen > 0)
        out[0] = '\0';
    if (location != NULL && loclen > 0)
        location[0] = '\0';
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (body != NULL) {
        snprintf(hdr, sizeof hdr, "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)deadline_ms());
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return (int)status;
}

int fakeoauth_post(struct fakeoauth *f, const char *path, const char *ctype, const char *body,
                   char *out, size_t outlen, char *location, size_t loclen)
{
    return request(f, path, ctype, body, out, outlen, location, loclen);
}

/* POSTs json to a control endpoint; 0 or -1. */
static int control(struct fakeoauth *f, const char *path, const char *json)
{
    char out[256];
    int st = request(f, path, "application/json", json, out, sizeof out, NULL, 0);
    if (st != 200)
        fprintf(stderr, "fake-oauth2d %s: HTTP %d %s\n", path, st, out);
    return st == 200 ? 0 : -1;
}

int fakeoauth_config(struct fakeoauth *f, const char *json)
{
    return control(f, "/control/config", json);
}

int fakeoauth_inject(struct fakeoauth *f, const char *json)
{
    return control(f, "/control/inject", json);
}

/* base64url without padding of n bytes into out (4n/3 + 4 bytes). */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

static int copy_json_str(yajl_val v, const char *key, char *out, size_t outlen)
{
    const char *path[] = {key, NULL};
    yajl_val s = yajl_tree_get(v, path, yajl_t_string);
    if (s == NULL || strlen(s->u.string) >= outlen)
        return -1;
    snprintf(out, outlen, "%s", s->u.string);
    return 0;
}

int fakeoauth_grant(struct fakeoauth *f, const char *client_id, const char *client_secret,
                    const char *email, char *refresh, size_t rlen, char *access, size_t alen)
{
    unsigned char raw[32], digest[32];
    char verifier[64], challenge[64];
    RAND_bytes(raw, sizeof raw);
    b64url(raw, sizeof raw, verifier);
    SHA256((const unsigned char *)verifier, strlen(verifier), digest);
    b64url(digest, sizeof digest, challenge);
    char body[2048], loc[1024], out[8192];
    snprintf(body, sizeof body,
             "response_type=code&client_id=%s&redirect_uri=http://127.0.0.1/cb&scope=mail"
             "&state=st&code_challenge=%s&code_challenge_method=S256&email=%s&decision=allow",
             client_id, challenge, email);
    int st = request(f, "/authorize", "application/x-www-form-urlencoded", body, out, sizeof out,
                     loc, sizeof loc);
    const char *code = strstr(loc, "code=");
    if (st != 302 || code == NULL) {
        fprintf(stderr, "fake-oauth2d authorize: HTTP %d %s\n", st, out);
        return -1;
    }
    char codebuf[128];
    snprintf(codebuf, sizeof codebuf, "%.*s", (int)strcspn(code + 5, "&"), code + 5);
    snprintf(body, sizeof body,
             "grant_type=authorization_code&code=%s&redirect_uri=http://127.0.0.1/cb"
             "&code_verifier=%s&client_id=%s&client_secret=%s",
             codebuf, verifier, client_id, client_secret);
    st = request(f, "/token", "application/x-www-form-urlencoded", body, out, sizeof out, NULL, 0);
    yajl_val v = st == 200 ? yajl_tree_parse(out, NULL, 0) : NULL;
    int rc = v != NULL ? 0 : -1;
    if (rc == 0 && refresh != NULL)
        rc = copy_json_str(v, "refresh_token", refresh, rlen);
    if (rc == 0 && access != NULL)
        rc = copy_json_str(v, "access_token", access, alen);
    yajl_tree_free(v);
    if (rc < 0)
        fprintf(stderr, "fake-oauth2d token: HTTP %d %s\n", st, out);
    return rc;
}

long long fakeoauth_stat(struct fakeoauth *f, const char *path)
{
    char out[8192], copy[128];
    if (request(f, "/control/stats", NULL, NULL, out, sizeof out, NULL, 0) != 200)
        return -1;
    yajl_val v = yajl_tree_parse(out, NULL, 0);
    if (v == NULL)
        return -1;
    const char *parts[8];
    int n = 0;
    snprintf(copy, sizeof copy, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(copy, ".", &save); t != NULL && n < 7; t = strtok_r(NULL, ".", &save))
        parts[n++] = t;
    parts[n] = NULL;
    yajl_val x = yajl_tree_get(v, parts, yajl_t_number);
    long long value = x != NULL && YAJL_IS_INTEGER(x) ? YAJL_GET_INTEGER(x) : -1;
    yajl_tree_free(v);
    return value;
}

int fakeoauth_wait_stat(struct fakeoauth *f, const char *path, long long value, int ms)
{
    long long deadline = harness_now_ms() + ms;
    long long got;
    do {
        got = fakeoauth_stat(f, path);
        if (got >= value)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "fake-oauth2d: %s is %lld, not >= %lld, after %d ms\n", path, got, value, ms);
    return -1;
}
