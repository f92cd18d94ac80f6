/*
 * cmd/api/oauth_http: blocking calls to an OAuth2 provider's endpoints with
 * libcurl easy and the SSRF guard (oauth_http.h has the contract).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/oauth_http.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "cmd/api/api.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/netguard.h"

struct call {
    const struct api *a;
    struct buf body;
    int refused;
    char *err;
    size_t errlen;
};

/* The SSRF guard: curl calls this for each address it is about to connect
 * to, after name resolution. */
static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *sa)
{
    struct call *c = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    enum netguard_class cls = netguard_classify(&sa->addr, sa->addrlen);
    if (!netguard_allowed(cls, c->a->cfg->oauth2_allow_private)) {
        c->refused = 1;
        snprintf(c->err, c->errlen, "refused by the SSRF guard before connecting: %s%s",
                 netguard_class_str(cls),
                 cls == NETGUARD_METADATA || cls == NETGUARD_INVALID
                     ? ""
                     : " (SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1 allows it)");
        return CURL_SOCKET_BAD;
    }
    return socket(sa->family, sa->socktype, sa->protocol);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct call *c = userdata;
    size_t n = size * nmemb;
    return buf_append(&c->body, ptr, n) == 0 ? n : 0;
}

int oauth_http_call(const struct api *a, const struct oauth_http_req *req,
                    struct oauth_http_res *out)
{
    memset(out, 0, sizeof *out);
    struct call c = {.a = a, .err = out->err, .errlen = sizeof out->err};
    buf_init(&c.body, OAUTH_HTTP_BODY_MAX);
    CURL *e = curl_easy_init();
    if (e == NULL) {
        snprintf(out->err, sizeof out->err, "libcurl could not make a handle");
        return -SIMAP_EIO;
    }
    struct curl_slist *hl = NULL;
    char *auth = NULL;
    hl = curl_slist_append(hl, "Accept: application/json");
    hl = curl_slist_append(hl, "Expect:");
    if (req->bearer != NULL) {
        size_t n = strlen(req->bearer) + 32;
        auth = xmalloc(n);
        snprintf(auth, n, "Authorization: Bearer %s", req->bearer);
        hl = curl_slist_append(hl, auth);
    }
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)OAUTH_HTTP_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)OAUTH_HTTP_TOTAL_MS);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "superimap/" SUPERIMAP_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &c);
    if (req->form != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->form);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req->form));
    }
    if (req->user != NULL) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, req->user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, req->password != NULL ? req->password : "");
    }
    CURLcode cc = curl_easy_perform(e);
    int rc = 0;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
    } else {
        if (!c.refused)
            snprintf(out->err, sizeof out->err, "%s",
                     cc == CURLE_WRITE_ERROR ? "answer over 64 KiB" : curl_easy_strerror(cc));
        rc = -SIMAP_EIO;
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(hl);
    crypto_wipe_str(&auth);
    out->len = c.body.len;
    out->body = buf_steal(&c.body);
    return rc;
}

void oauth_http_res_free(struct oauth_http_res *res)
{
    if (res->body != NULL) {
        crypto_wipe(res->body, res->len);
        xfree(res->body);
    }
    memset(res, 0, sizeof *res);
}
