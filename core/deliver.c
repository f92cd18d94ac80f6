/*
 * core/deliver: libcurl multi on libev (see deliver.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/deliver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <ev.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/netguard.h"
#include "core/time.h"
#include "proto/webhook.h"

#define POOL_MAX 256 /* idle easy handles kept for reuse */

/* One socket curl asked us to watch; lives from its first CURL_POLL_* to
 * CURL_POLL_REMOVE. */
struct sock {
    ev_io io; /* io.data points here */
    struct deliver *d;
};

/* One request, from deliver_post() to its callback. */
struct req {
    struct deliver *d;
    CURL *easy;
    struct curl_slist headers[DELIVER_MAX_HEADERS]; /* nodes over hdrtext: no malloc each */
    char *hdrtext;
    char *body;
    deliver_cb *cb;
    void *data;
    int64_t start_mono;
    size_t received;
    size_t snip_len;
    int nrefused;
    char snippet[DELIVER_SNIPPET + 1];
    struct buf kept;      /* keep_body: the response body */
    char retry_after[64]; /* "" when none */
    char refused[256];    /* the SSRF guard's last refusal */
    char errbuf[CURL_ERROR_SIZE];
    int is_mail;             /* an SMTP submission: its handle is not pooled */
    size_t sent;             /* is_mail: bytes of body read by curl */
    size_t body_len;         /* is_mail: bytes of body */
    struct curl_slist rcpt;  /* is_mail: the one recipient */
    struct req *prev, *next; /* d->active */
};

struct deliver {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer; /* curl's one timeout */
    struct deliver_opts opts;
    char *user_agent;
    char allow_hint[96]; /* " (SUPERIMAP_..._ALLOW_PRIVATE=1 allows it)" */
    struct req *active;
    int nactive;
    CURL *pool[POOL_MAX];
    int npool;
};

/* ---- curl callbacks: sockets and the timer (evhiperfifo.c) ---- */

static void finish(struct req *r, CURLcode code);

/* Reaps every finished transfer; runs after each curl_multi_socket_action(). */
static void check_done(struct deliver *d)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(d->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct req *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        finish(r, msg->data.result);
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sock *so = w->data;
    struct deliver *d = so->d;
    int action =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(d->multi, w->fd, action, &running); /* may free so */
    check_done(d);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct deliver *d = w->data;
    int running;
    curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(d);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct deliver *d = userp;
    struct sock *so = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (so != NULL) {
            ev_io_stop(d->loop, &so->io);
            xfree(so);
        }
        return 0;
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (so == NULL) {
        so = xcalloc(1, sizeof *so);
        so->d = d;
        ev_io_init(&so->io, on_io, s, events);
        so->io.data = so;
        curl_multi_assign(d->multi, s, so);
    } else {
        ev_io_stop(d->loop, &so->io);
        ev_io_set(&so->io, s, events);
    }
    ev_io_start(d->loop, &so->io);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct deliver *d = userp;
    ev_timer_stop(d->loop, &d->timer);
    if (timeout_ms >= 0) { /* -1: no timeout wanted */
        ev_timer_set(&d->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(d->loop, &d->timer);
    }
    return 0;
}

/* ---- Per-request callbacks ---- */

/* The SSRF guard: curl calls this for each address it is about to connect
 * to, after name resolution. */
static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct req *r = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    enum netguard_class c = netguard_classify(&a->addr, a->addrlen);
    if (!netguard_allowed(c, r->d->opts.allow_private)) {
        char text[INET6_ADDRSTRLEN] = "?";
        if (a->family == AF_INET) {
            struct sockaddr_in in;
            memcpy(&in, &a->addr, sizeof in);
            inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
        } else if (a->family == AF_INET6) {
            struct sockaddr_in6 in6;
            memcpy(&in6, &a->addr, sizeof in6);
            inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
        }
        snprintf(r->refused, sizeof r->refused,
                 "refused by the SSRF guard before connecting: %s is %s%s", text,
                 netguard_class_str(c),
                 c == NETGUARD_METADATA || c == NETGUARD_INVALID ? "" : r->d->allow_hint);
        r->nrefused++;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n && r->snip_len < DELIVER_SNIPPET; i++) {
        unsigned char c = (unsigned char)ptr[i];
        r->snippet[r->snip_len++] = c < 0x20 || c == 0x7f ? '.' : (char)c;
    }
    r->snippet[r->snip_len] = '\0';
    r->received += n;
    if (r->d->opts.keep_body && buf_append(&r->kept, ptr, n) < 0)
        return 0;
    return r->received > DELIVER_MAX_RESPONSE ? 0 : n; /* 0 stops the transfer */
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        r->retry_after[0] = '\0'; /* a new response (after 100 Continue) */
    } else if (n > sizeof name - 1 && strncasecmp(buf, name, sizeof name - 1) == 0) {
        size_t v = sizeof name - 1, end = n;
        while (end > v && (buf[end - 1] == '\r' || buf[end - 1] == '\n'))
            end--;
        if (end - v < sizeof r->retry_after) {
            memcpy(r->retry_after, buf + v, end - v);
            r->retry_after[end - v] = '\0';
        }
    }
    return n;
}

/* ---- Requests ---- */

/* A new handle with what every request has: no signals, the engine's
 * timeouts, only these protocols, no proxy, certificates verified, the SSRF
 * guard. */
static CURL *easy_new(struct deliver *d, const char *protocols)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, d->opts.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, d->opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* "" disables proxies, env vars included */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    return e;
}

static CURL *easy_get(struct deliver *d)
{
    if (d->npool > 0)
        return d->pool[--d->npool];
    CURL *e = easy_new(d, "http,https");
    if (e == NULL)
        return NULL;
    /* Options that never change; the per-request ones are set in deliver_post(). */
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* Small receive and send buffers: responses are capped and discarded, and
     * every request in flight holds both (16 and 64 KiB by default). */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 1024L);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, d->user_agent);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    return e;
}

static void easy_put(struct deliver *d, CURL *e)
{
    if (e == NULL)
        return;
    if (d->npool < POOL_MAX)
        d->pool[d->npool++] = e;
    else
        curl_easy_cleanup(e);
}

static void unlink_req(struct deliver *d, struct req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        d->active = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    d->nactive--;
}

static void track(struct deliver *d, struct req *r)
{
    r->next = d->active;
    if (d->active != NULL)
        d->active->prev = r;
    d->active = r;
    d->nactive++;
}

static struct req *req_new(struct deliver *d, char *body, deliver_cb *cb, void *data)
{
    struct req *r = xcalloc(1, sizeof *r);
    r->d = d;
    r->body = body;
    r->cb = cb;
    r->data = data;
    r->start_mono = time_mono_ms();
    return r;
}

/* A request that never started: everything it holds goes; -SIMAP_EIO. */
static int abandon(struct deliver *d, struct req *r)
{
    if (r->is_mail && r->easy != NULL)
        curl_easy_cleanup(r->easy);
    else
        easy_put(d, r->easy);
    buf_free(&r->kept);
    xfree(r->hdrtext);
    xfree(r->body);
    xfree(r);
    return -SIMAP_EIO;
}

/* Hands r, its options set, to the multi handle. 0, or -SIMAP_EIO with r
 * freed. */
static int start(struct deliver *d, struct req *r)
{
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    if (curl_multi_add_handle(d->multi, r->easy) != CURLM_OK)
        return abandon(d, r);
    track(d, r);
    return 0;
}

static void finish(struct req *r, CURLcode code)
{
    struct deliver *d = r->d;
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    struct deliver_result res = {
        .status = status,
        .retry_after_ms = -1,
        .latency_ms = time_mono_ms() - r->start_mono,
        .error = "",
        .snippet = r->snippet,
        .code = (int)code,
    };
    char err[320];
    if (d->opts.keep_body && buf_append(&r->kept, "", 1) == 0) {
        res.body = r->kept.data;
        res.body_len = r->kept.len - 1;
    }
    if (code == CURLE_WRITE_ERROR && r->received > DELIVER_MAX_RESPONSE && status > 0 &&
        d->opts.keep_body) {
        snprintf(err, sizeof err, "response body larger than %d bytes", DELIVER_MAX_RESPONSE);
        res.error = err;
        res.body = NULL;
        res.body_len = 0;
    } else if (code == CURLE_WRITE_ERROR && r->received > DELIVER_MAX_RESPONSE && status > 0) {
        /* We stopped reading a long response on purpose: the status stands. */
    } else if (code != CURLE_OK) {
        if (r->nrefused > 0 && code == CURLE_COULDNT_CONNECT) {
            res.refused = 1;
            snprintf(err, sizeof err, "%s", r->refused);
        } else {
            snprintf(err, sizeof err, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
        }
        res.error = err;
    }
    if (r->retry_after[0] != '\0') {
        int64_t delay;
        if (webhook_retry_after(r->retry_after, strlen(r->retry_after), time_now_ms(), &delay) == 0)
            res.retry_after_ms = delay;
    }
    curl_multi_remove_handle(d->multi, r->easy);
    unlink_req(d, r);
    r->cb(&res, r->data);
    buf_free(&r->kept);
    xfree(r->hdrtext);
    xfree(r->body);
    if (r->is_mail)
        curl_easy_cleanup(r->easy);
    else
        easy_put(d, r->easy);
    xfree(r);
}

int deliver_post(struct deliver *d, const char *url, const char *const *headers, size_t nheaders,
                 char *body, size_t len, deliver_cb *cb, void *data)
{
    if (d == NULL || url == NULL || cb == NULL || nheaders > DELIVER_MAX_HEADERS ||
        (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
        xfree(body);
        return -SIMAP_EINVAL;
    }
    struct req *r = req_new(d, body, cb, data);
    buf_init(&r->kept, DELIVER_MAX_RESPONSE + 1);
    /* The header list lives in the request: one copy of the lines, no
     * curl_slist_append() per line. */
    size_t total = 0;
    for (size_t i = 0; i < nheaders; i++)
        total += strlen(headers[i]) + 1;
    r->hdrtext = xmalloc(total + 1);
    char *t = r->hdrtext;
    for (size_t i = 0; i < nheaders; i++) {
        size_t n = strlen(headers[i]) + 1;
        memcpy(t, headers[i], n);
        r->headers[i].data = t;
        r->headers[i].next = i + 1 < nheaders ? &r->headers[i + 1] : NULL;
        t += n;
    }
    if ((r->easy = easy_get(d)) == NULL)
        goto fail;
    CURL *e = r->easy;
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK)
        goto fail;
    /* Over TLS, wait for a connection in progress to say (ALPN) whether it
     * multiplexes HTTP/2 rather than opening more. Never over plain HTTP/1.1,
     * where curl would only know after a response: a hung receiver would
     * then stall every request queued behind its first one. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncasecmp(url, "https://", 8) == 0 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, nheaders > 0 ? r->headers : NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    return start(d, r);
fail:
    return abandon(d, r);
}

/* ---- SMTP ---- */

static size_t on_mail_read(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nmemb, left = r->body_len - r->sent;
    if (n > left)
        n = left;
    memcpy(ptr, r->body + r->sent, n);
    r->sent += n;
    return n;
}

int deliver_mail(struct deliver *d, const struct deliver_mail *m, char *msg, size_t len,
                 deliver_cb *cb, void *data)
{
    if (d == NULL || m == NULL || m->url == NULL || m->from == NULL || m->rcpt == NULL ||
        cb == NULL || (m->password == NULL) == (m->bearer == NULL) ||
        (strncasecmp(m->url, "smtp://", 7) != 0 && strncasecmp(m->url, "smtps://", 8) != 0)) {
        xfree(msg);
        return -SIMAP_EINVAL;
    }
    struct req *r = req_new(d, msg, cb, data);
    r->body_len = len;
    r->is_mail = 1;
    r->hdrtext = xstrdup(m->rcpt);
    r->rcpt.data = r->hdrtext;
    buf_init(&r->kept, 1);
    CURL *e = r->easy = easy_new(d, "smtp,smtps");
    if (e == NULL || curl_easy_setopt(e, CURLOPT_URL, m->url) != CURLE_OK)
        goto fail;
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    if (m->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, m->ca_file);
    if (m->starttls)
        curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    curl_easy_setopt(e, CURLOPT_USERNAME, m->username);
    if (m->bearer != NULL) {
        curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, m->bearer);
        curl_easy_setopt(e, CURLOPT_LOGIN_OPTIONS, "AUTH=XOAUTH2");
    } else {
        curl_easy_setopt(e, CURLOPT_PASSWORD, m->password);
        curl_easy_setopt(e, CURLOPT_LOGIN_OPTIONS, "AUTH=PLAIN");
    }
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, m->from);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, &r->rcpt);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_mail_read);
    curl_easy_setopt(e, CURLOPT_READDATA, r);
    return start(d, r);
fail:
    return abandon(d, r);
}

int deliver_active(const struct deliver *d)
{
    return d->nactive;
}

struct deliver *deliver_new(struct ev_loop *loop, const struct deliver_opts *opts)
{
    struct deliver *d = xcalloc(1, sizeof *d);
    d->loop = loop;
    d->opts = *opts;
    d->user_agent = xstrdup(opts->user_agent ? opts->user_agent : "superimap");
    snprintf(d->allow_hint, sizeof d->allow_hint, " (%s=1 allows it)",
             opts->allow_var ? opts->allow_var : "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE");
    d->multi = curl_multi_init();
    if (d->multi == NULL) {
        log_error("cannot create a libcurl multi handle");
        xfree(d->user_agent);
        xfree(d);
        return NULL;
    }
    ev_timer_init(&d->timer, on_timeout, 0., 0.);
    d->timer.data = d;
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
    curl_multi_setopt(d->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(d->multi, CURLMOPT_MAX_HOST_CONNECTIONS, opts->max_host_connections);
    curl_multi_setopt(d->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, opts->max_connections);
    /* Idle keep-alive connections kept: enough for every host we talk to. */
    curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS,
                      opts->max_connections > 0 ? opts->max_connections : 1024L);
    return d;
}

void deliver_free(struct deliver *d)
{
    if (d == NULL)
        return;
    while (d->active != NULL) {
        struct req *r = d->active;
        curl_multi_remove_handle(d->multi, r->easy);
        unlink_req(d, r);
        struct deliver_result res = {.retry_after_ms = -1,
                                     .latency_ms = time_mono_ms() - r->start_mono,
                                     .error = "shutting down",
                                     .snippet = ""};
        r->cb(&res, r->data);
        buf_free(&r->kept);
        xfree(r->hdrtext);
        xfree(r->body);
        curl_easy_cleanup(r->easy);
        xfree(r);
    }
    while (d->npool > 0)
        curl_easy_cleanup(d->pool[--d->npool]);
    curl_multi_cleanup(d->multi); /* closes connections; their sockets get CURL_POLL_REMOVE */
    ev_timer_stop(d->loop, &d->timer);
    xfree(d->user_agent);
    xfree(d);
}
