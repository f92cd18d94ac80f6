/*
 * tests/integration/receiver: the test webhook receiver (see receiver.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/receiver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <yajl/yajl_tree.h>

#define MAX_PARTNERS 64
#define MAX_HEAD     (64 * 1024)
#define MAX_BODY     (64 * 1024 * 1024)

struct cred {
    char pid[32];
    char *api_key;
    unsigned char key[64], old[64];
    size_t keylen, oldlen;
    int has_old;
};

struct rule_entry {
    char pid[32];
    struct receiver_rule rule;
    char retry_after[64];
    char location[128];
    int seen;
};

struct conn {
    struct receiver *rx;
    int fd;
    ev_io rd, wr;
    ev_timer delay;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int hung;
    int waiting;       /* a delayed answer is pending */
    size_t req_bytes;  /* size of the request being answered */
    int answer_status; /* of the delayed answer */
    char answer_retry_after[64];
    char answer_location[128];
    size_t answer_bytes;
    struct conn *prev, *next;
};

struct receiver {
    pthread_t thread;
    struct ev_loop *loop;
    ev_async stop;
    ev_io accept_io;
    int lfd;
    int port;
    int verify, keep;
    pthread_mutex_t mu;
    struct cred creds[MAX_PARTNERS];
    int ncreds;
    struct rule_entry rules[MAX_PARTNERS];
    int nrules;
    struct receiver_request *reqs;
    size_t nreqs, capreqs;
    int nconns;
    struct conn *conns;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- Verification (OpenSSL and yajl directly) ---- */

/* Decodes standard base64 with or without padding; returns the length or -1. */
static int b64_decode(const char *s, unsigned char *out, size_t cap)
{
    size_t n = strlen(s);
    char padded[200];
    if (n == 0 || n + 4 >= sizeof padded)
        return -1;
    memcpy(padded, s, n);
    while (n % 4 != 0)
        padded[n++] = '=';
    padded[n] = '\0';
    unsigned char tmp[160];
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)padded, (int)n);
    if (len < 0)
        return -1;
    for (size_t i = n; i > 0 && padded[i - 1] == '='; i--)
        len--;
    if ((size_t)len > cap)
        return -1;
    memcpy(out, tmp, (size_t)len);
    return len;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

/* 1 when one "v1,<base64>" of the space-separated header list is the
 * Standard Webhooks signature of id.ts.body under key. */
static int std_match(const unsigned char *key, size_t keylen, const char *id, const char *ts,
                     const char *body, size_t len, const char *header, int *nsigs)
{
    size_t idl = strlen(id), tsl = strlen(ts);
    char *msg = malloc(idl + tsl + len + 3);
    memcpy(msg, id, idl);
    msg[idl] = '.';
    memcpy(msg + idl + 1, ts, tsl);
    msg[idl + 1 + tsl] = '.';
    memcpy(msg + idl + tsl + 2, body, len);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)msg, idl + tsl + len + 2, mac, &maclen);
    free(msg);
    char want[64];
    EVP_EncodeBlock((unsigned char *)want, mac, 32);
    int found = 0, n = 0;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", header);
    for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        n++;
        if (strncmp(tok, "v1,", 3) == 0 && strcmp(tok + 3, want) == 0)
            found = 1;
    }
    *nsigs = n;
    return found;
}

static void copy_str(char *dst, size_t n, yajl_val root, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_string);
    snprintf(dst, n, "%s", v ? YAJL_GET_STRING(v) : "");
}

static void verify(const struct cred *c, struct receiver_request *r, const char *body, size_t len,
                   const char *tshdr, const char *sighdr)
{
    char err[128];
    yajl_val root = yajl_tree_parse(body, err, sizeof err);
    r->json_ok = root != NULL && YAJL_IS_OBJECT(root);
    if (r->json_ok) {
        const char *p_ts[] = {"timestamp", NULL};
        yajl_val ts = yajl_tree_get(root, p_ts, yajl_t_number);
        r->body_ts = ts != NULL && YAJL_IS_INTEGER(ts) ? YAJL_GET_INTEGER(ts) : -1;
        copy_str(r->body_id, sizeof r->body_id, root, "id");
        copy_str(r->event, sizeof r->event, root, "event");
        copy_str(r->user_tag, sizeof r->user_tag, root, "user_tag");
        char sha1[128], sig[128];
        copy_str(sha1, sizeof sha1, root, "sha1");
        copy_str(sig, sizeof sig, root, "signature");
        if (c != NULL && c->api_key != NULL && r->body_ts >= 0) {
            char msg[256];
            int n = snprintf(msg, sizeof msg, "%lld%s", (long long)r->body_ts, sha1);
            unsigned char mac[32];
            unsigned int maclen = 0;
            HMAC(EVP_sha256(), c->api_key, (int)strlen(c->api_key), (unsigned char *)msg, (size_t)n,
                 mac, &maclen);
            char want[65];
            hex(mac, 32, want);
            r->body_sig_ok = strcmp(want, sig) == 0;
        }
    }
    yajl_tree_free(root);
    if (c != NULL && tshdr != NULL && sighdr != NULL) {
        r->std_sig_ok = std_match(c->key, c->keylen, r->id, tshdr, body, len, sighdr, &r->nsigs);
        if (c->has_old)
            r->std_sig_old_ok =
                std_match(c->old, c->oldlen, r->id, tshdr, body, len, sighdr, &r->nsigs);
    }
}

/* ---- Connections ---- */

static void conn_close(struct conn *c)
{
    struct receiver *rx = c->rx;
    ev_io_stop(rx->loop, &c->rd);
    ev_io_stop(rx->loop, &c->wr);
    ev_timer_stop(rx->loop, &c->delay);
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        rx->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c);
}

static void flush_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->rx->loop, &c->wr);
            return;
        }
        if (n <= 0) {
            c->out_len = c->out_off = 0;
            return; /* the reader will see the connection close */
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    ev_io_stop(c->rx->loop, &c->wr);
}

static void append_out(struct conn *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 403:
        return "Forbidden";
    case 410:
        return "Gone";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "Status";
    }
}

static void answer(struct conn *c, int status, const char *retry_after, const char *location,
                   size_t body_bytes)
{
    char head[512];
    const char *body = status >= 200 && status < 300 ? "ok" : "receiver says no";
    size_t len = body_bytes > 0 ? body_bytes : strlen(body);
    char ra[96] = "", loc[160] = "";
    if (retry_after != NULL && retry_after[0] != '\0')
        snprintf(ra, sizeof ra, "Retry-After: %s\r\n", retry_after);
    if (location != NULL && location[0] != '\0')
        snprintf(loc, sizeof loc, "Location: %s\r\n", location);
    int n =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s%s\r\n",
                 status, reason(status), len, ra, loc);
    append_out(c, head, (size_t)n);
    if (body_bytes == 0) {
        append_out(c, body, len);
    } else {
        char chunk[4096];
        memset(chunk, 'x', sizeof chunk);
        for (size_t done = 0; done < body_bytes; done += sizeof chunk)
            append_out(c, chunk,
                       body_bytes - done < sizeof chunk ? body_bytes - done : sizeof chunk);
    }
    flush_out(c);
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Finds header name (case-insensitive) in the head; copies its value. */
static int header(const char *head, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            size_t n = (size_t)(ve - v) < outlen - 1 ? (size_t)(ve - v) : outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
        p = eol + 1;
    }
    if (outlen > 0)
        out[0] = '\0';
    return 0;
}

static void process(struct conn *c);

static void on_delay(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    c->waiting = 0;
    answer(c, c->answer_status, c->answer_retry_after, c->answer_location, c->answer_bytes);
    consume(c, c->req_bytes);
    process(c);
}

/* Handles one complete request of head_len + body_len bytes at c->in. */
static void handle(struct conn *c, size_t head_len, size_t body_len)
{
    struct receiver *rx = c->rx;
    struct receiver_request r;
    memset(&r, 0, sizeof r);
    r.mono_us = mono_us();
    const char *head = c->in;
    const char *sp1 = memchr(head, ' ', head_len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head_len - (size_t)(sp1 + 1 - head)) : NULL;
    if (sp1 != NULL && sp2 != NULL) {
        size_t n = (size_t)(sp2 - sp1 - 1) < sizeof r.path - 1 ? (size_t)(sp2 - sp1 - 1)
                                                               : sizeof r.path - 1;
        memcpy(r.path, sp1 + 1, n);
    }
    if (strncmp(r.path, "/hook/", 6) == 0) {
        const char *pid = r.path + 6;
        size_t n = strcspn(pid, "/?");
        if (n >= sizeof r.pid)
            n = sizeof r.pid - 1;
        memcpy(r.pid, pid, n);
    }
    char tshdr[64], sighdr[512];
    header(head, head_len, "webhook-id", r.id, sizeof r.id);
    int has_ts = header(head, head_len, "webhook-timestamp", tshdr, sizeof tshdr);
    int has_sig = header(head, head_len, "webhook-signature", sighdr, sizeof sighdr);
    header(head, head_len, "user-agent", r.user_agent, sizeof r.user_agent);
    header(head, head_len, "content-type", r.content_type, sizeof r.content_type);
    header(head, head_len, "authorization", r.authorization, sizeof r.authorization);
    r.ts = has_ts ? strtoll(tshdr, NULL, 10) : -1;
    r.body_len = body_len;

    char *body = NULL;
    if (rx->verify || rx->keep) {
        body = malloc(body_len + 1);
        memcpy(body, c->in + head_len, body_len);
        body[body_len] = '\0';
    }
    struct cred cred;
    int have_cred = 0;
    struct receiver_rule rule = {0};
    char retry_after[64] = "", location[128] = "";
    int seen = 0;
    pthread_mutex_lock(&rx->mu);
    for (int i = 0; i < rx->ncreds; i++)
        if (strcmp(rx->creds[i].pid, r.pid) == 0) {
            cred = rx->creds[i];
            have_cred = 1;
        }
    for (int i = 0; i < rx->nrules; i++)
        if (strcmp(rx->rules[i].pid, r.pid) == 0) {
            rule = rx->rules[i].rule;
            snprintf(retry_after, sizeof retry_after, "%s", rx->rules[i].retry_after);
            snprintf(location, sizeof location, "%s", rx->rules[i].location);
            seen = ++rx->rules[i].seen;
        }
    pthread_mutex_unlock(&rx->mu);
    if (rx->verify && body != NULL)
        verify(have_cred ? &cred : NULL, &r, body, body_len, has_ts ? tshdr : NULL,
               has_sig ? sighdr : NULL);

    int status = seen > 0 && seen <= rule.fail_first ? (rule.fail_status ? rule.fail_status : 500)
                                                     : (rule.status ? rule.status : 200);
    r.status = rule.hang ? 0 : status;
    if (rx->keep)
        r.body = body;
    else
        free(body);

    pthread_mutex_lock(&rx->mu);
    if (rx->nreqs == rx->capreqs) {
        rx->capreqs = rx->capreqs ? rx->capreqs * 2 : 1024;
        rx->reqs = realloc(rx->reqs, rx->capreqs * sizeof *rx->reqs);
    }
    rx->reqs[rx->nreqs++] = r;
    pthread_mutex_unlock(&rx->mu);

    c->req_bytes = head_len + body_len;
    if (rule.hang) {
        c->hung = 1;
        c->in_len = 0;
        return;
    }
    const char *ra = status >= 200 && status < 300 ? NULL : retry_after;
    if (rule.delay_ms > 0) {
        c->waiting = 1;
        c->answer_status = status;
        snprintf(c->answer_retry_after, sizeof c->answer_retry_after, "%s", ra ? ra : "");
        snprintf(c->answer_location, sizeof c->answer_location, "%s", location);
        c->answer_bytes = rule.body_bytes;
        ev_timer_set(&c->delay, rule.delay_ms / 1000.0, 0.);
        ev_timer_start(rx->loop, &c->delay);
        return;
    }
    answer(c, status, ra, location, rule.body_bytes);
    consume(c, c->req_bytes);
}

/* Serves every complete request buffered on c, in order. */
static void process(struct conn *c)
{
    while (!c->hung && !c->waiting && c->in_len > 0) {
        const char *end = NULL;
        for (size_t i = 3; i < c->in_len; i++)
            if (c->in[i - 3] == '\r' && c->in[i - 2] == '\n' && c->in[i - 1] == '\r' &&
                c->in[i] == '\n') {
                end = c->in + i + 1;
                break;
            }
        if (end == NULL) {
            if (c->in_len > MAX_HEAD)
                c->hung = 1; /* garbage: stop serving it */
            return;
        }
        size_t head_len = (size_t)(end - c->in);
        char cl[32];
        size_t body_len = 0;
        if (header(c->in, head_len, "content-length", cl, sizeof cl))
            body_len = strtoul(cl, NULL, 10);
        if (body_len > MAX_BODY) {
            c->hung = 1;
            return;
        }
        if (c->in_len < head_len + body_len)
            return;
        handle(c, head_len, body_len);
    }
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_out(w->data);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    for (int reads = 0; reads < 16; reads++) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = realloc(c->in, c->in_cap);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        if (c->hung)
            continue; /* read and drop */
        c->in_len += (size_t)n;
    }
    process(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct receiver *rx = w->data;
    for (;;) {
        int fd = accept(rx->lfd, NULL, NULL);
        if (fd < 0)
            return;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        c->rx = rx;
        c->fd = fd;
        ev_io_init(&c->rd, on_read, fd, EV_READ);
        ev_io_init(&c->wr, on_write, fd, EV_WRITE);
        ev_timer_init(&c->delay, on_delay, 0., 0.);
        c->rd.data = c->wr.data = c->delay.data = c;
        c->next = rx->conns;
        if (rx->conns != NULL)
            rx->conns->prev = c;
        rx->conns = c;
        ev_io_start(loop, &c->rd);
        pthread_mutex_lock(&rx->mu);
        rx->nconns++;
        pthread_mutex_unlock(&rx->mu);
    }
}

static void on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *run(void *arg)
{
    struct receiver *rx = arg;
    ev_run(rx->loop, 0);
    return NULL;
}

/* ---- Public ---- */

struct receiver *receiver_start(const char *addr, int verify_sigs, int keep_bodies)
{
    struct receiver *rx = calloc(1, sizeof *rx);
    rx->verify = verify_sigs;
    rx->keep = keep_bodies;
    pthread_mutex_init(&rx->mu, NULL);
    int v6 = strchr(addr, ':') != NULL;
    rx->lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(rx->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &a->sin6_addr);
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)(void *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &a->sin_addr);
        sl = sizeof *a;
    }
    if (bind(rx->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(rx->lfd, 4096) < 0 ||
        getsockname(rx->lfd, (struct sockaddr *)&ss, &sl) < 0) {
        fprintf(stderr, "receiver: cannot listen on %s: %s\n", addr, strerror(errno));
        close(rx->lfd);
        free(rx);
        return NULL;
    }
    rx->port = ntohs(v6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
                        : ((struct sockaddr_in *)(void *)&ss)->sin_port);
    fcntl(rx->lfd, F_SETFL, fcntl(rx->lfd, F_GETFL) | O_NONBLOCK);
    rx->loop = ev_loop_new(EVFLAG_AUTO);
    ev_io_init(&rx->accept_io, on_accept, rx->lfd, EV_READ);
    rx->accept_io.data = rx;
    ev_io_start(rx->loop, &rx->accept_io);
    ev_async_init(&rx->stop, on_stop);
    ev_async_start(rx->loop, &rx->stop);
    if (pthread_create(&rx->thread, NULL, run, rx) != 0) {
        fprintf(stderr, "receiver: cannot start its thread\n");
        ev_loop_destroy(rx->loop);
        close(rx->lfd);
        free(rx);
        return NULL;
    }
    return rx;
}

void receiver_stop(struct receiver *rx)
{
    if (rx == NULL)
        return;
    ev_async_send(rx->loop, &rx->stop);
    pthread_join(rx->thread, NULL);
    while (rx->conns != NULL)
        conn_close(rx->conns);
    ev_io_stop(rx->loop, &rx->accept_io);
    ev_async_stop(rx->loop, &rx->stop);
    ev_loop_destroy(rx->loop);
    close(rx->lfd);
    for (size_t i = 0; i < rx->nreqs; i++)
        free(rx->reqs[i].body);
    free(rx->reqs);
    for (int i = 0; i < rx->ncreds; i++)
        free(rx->creds[i].api_key);
    pthread_mutex_destroy(&rx->mu);
    free(rx);
}

int receiver_port(const struct receiver *rx)
{
    return rx->port;
}

void receiver_add_partner(struct receiver *rx, const char *pid, const char *api_key,
                          const char *whsec, const char *whsec_old)
{
    pthread_mutex_lock(&rx->mu);
    if (rx->ncreds < MAX_PARTNERS) {
        struct cred *c = &rx->creds[rx->ncreds++];
        memset(c, 0, sizeof *c);
        snprintf(c->pid, sizeof c->pid, "%s", pid);
        c->api_key = strdup(api_key);
        int n = b64_decode(whsec + 6, c->key, sizeof c->key);
        c->keylen = n > 0 ? (size_t)n : 0;
        if (whsec_old != NULL) {
            n = b64_decode(whsec_old + 6, c->old, sizeof c->old);
            c->oldlen = n > 0 ? (size_t)n : 0;
            c->has_old = 1;
        }
    }
    pthread_mutex_unlock(&rx->mu);
}

void receiver_set_rule(struct receiver *rx, const char *pid, const struct receiver_rule *rule)
{
    pthread_mutex_lock(&rx->mu);
    struct rule_entry *e = NULL;
    for (int i = 0; i < rx->nrules; i++)
        if (strcmp(rx->rules[i].pid, pid) == 0)
            e = &rx->rules[i];
    if (e == NULL && rx->nrules < MAX_PARTNERS)
        e = &rx->rules[rx->nrules++];
    if (e != NULL) {
        memset(e, 0, sizeof *e);
        snprintf(e->pid, sizeof e->pid, "%s", pid);
        e->rule = *rule;
        snprintf(e->retry_after, sizeof e->retry_after, "%s",
                 rule->retry_after ? rule->retry_after : "");
        snprintf(e->location, sizeof e->location, "%s", rule->location ? rule->location : "");
        e->rule.retry_after = NULL;
        e->rule.location = NULL;
    }
    pthread_mutex_unlock(&rx->mu);
}

int receiver_count(struct receiver *rx, const char *pid)
{
    pthread_mutex_lock(&rx->mu);
    int n = 0;
    for (size_t i = 0; i < rx->nreqs; i++)
        n += pid == NULL || strcmp(rx->reqs[i].pid, pid) == 0;
    pthread_mutex_unlock(&rx->mu);
    return n;
}

int receiver_connections(struct receiver *rx)
{
    pthread_mutex_lock(&rx->mu);
    int n = rx->nconns;
    pthread_mutex_unlock(&rx->mu);
    return n;
}

int receiver_wait(struct receiver *rx, const char *pid, int n, int ms)
{
    int64_t deadline = mono_us() + (int64_t)ms * 1000;
    int got;
    while ((got = receiver_count(rx, pid)) < n && mono_us() < deadline) {
        struct timespec ts = {0, 5 * 1000000L}; /* poll interval, not a wait for the result */
        nanosleep(&ts, NULL);
    }
    return got;
}

size_t receiver_requests(struct receiver *rx, struct receiver_request *out, size_t max)
{
    pthread_mutex_lock(&rx->mu);
    size_t n = rx->nreqs < max ? rx->nreqs : max;
    for (size_t i = 0; i < n; i++) {
        out[i] = rx->reqs[i];
        out[i].body = NULL;
    }
    pthread_mutex_unlock(&rx->mu);
    return n;
}

char *receiver_body(struct receiver *rx, size_t i, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&rx->mu);
    if (i < rx->nreqs && rx->reqs[i].body != NULL) {
        copy = malloc(rx->reqs[i].body_len + 1);
        memcpy(copy, rx->reqs[i].body, rx->reqs[i].body_len + 1);
        if (len != NULL)
            *len = rx->reqs[i].body_len;
    }
    pthread_mutex_unlock(&rx->mu);
    return copy;
}

void receiver_clear(struct receiver *rx)
{
    pthread_mutex_lock(&rx->mu);
    for (size_t i = 0; i < rx->nreqs; i++)
        free(rx->reqs[i].body);
    rx->nreqs = 0;
    pthread_mutex_unlock(&rx->mu);
}
