/*
 * cmd/watcher/oauth: OAuth2 token refreshes on the loop (see oauth.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/oauth.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>

#include "cmd/watcher/provider.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/deliver.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"

#define REFRESHES "superimap_watcher_oauth2_refreshes_total"
#define REFRESHES_HELP                                                                           \
    "OAuth2 access token refreshes by provider and result (ok, revoked: invalid_grant, config: " \
    "client or URL refused, retry: 429, 5xx, network)"

struct oauth_req {
    struct oauth *o;
    struct provider *prov;
    char *client_id, *client_secret, *refresh_token;
    char uid[40];
    oauth_cb *cb;
    void *data;
    int started;                     /* handed to core/deliver */
    int cancelled;                   /* started, then nobody wants the answer */
    struct oauth_req *next;          /* the provider's FIFO while queued */
    struct oauth_req *qprev, *qnext; /* o->queued while queued */
};

struct oauth {
    struct ev_loop *loop;
    struct deliver *http;
    int cap;
    int inflight;
    int closing;
    struct oauth_req *queued;
    struct metrics *m; /* refreshes_total{provider,result}: registered at the first */
    struct metric *m_inflight;
};

static void req_free(struct oauth_req *r)
{
    crypto_wipe_str(&r->client_id);
    crypto_wipe_str(&r->client_secret);
    crypto_wipe_str(&r->refresh_token);
    xfree(r);
}

int64_t oauth_refresh_due(int64_t now_ms, int64_t lifetime_s, double jitter)
{
    if (lifetime_s <= 0)
        return now_ms;
    if (jitter < 0)
        jitter = 0;
    if (jitter >= 1)
        jitter = 0.999;
    int64_t due = now_ms + (int64_t)((double)lifetime_s * 1000.0 * (0.8 + 0.1 * jitter));
    if (lifetime_s > 120 && due > now_ms + (lifetime_s - 60) * 1000)
        due = now_ms + (lifetime_s - 60) * 1000;
    return due;
}

/* ---- Request body ---- */

/* Appends "&name=value" (value percent-encoded by libcurl); 0 or -1. */
static int add_param(struct buf *b, const char *name, const char *value)
{
    char *esc = curl_easy_escape(NULL, value, 0);
    if (esc == NULL)
        return -1;
    int rc = buf_printf(b, "%s%s=%s", b->len > 0 ? "&" : "", name, esc);
    crypto_wipe(esc, strlen(esc));
    curl_free(esc);
    return rc;
}

/* "Authorization: Basic base64(urlenc(id):urlenc(secret))" (RFC 6749 2.3.1)
 * into a new string, or NULL. */
static char *basic_header(const char *id, const char *secret)
{
    char *eid = curl_easy_escape(NULL, id, 0), *esec = curl_easy_escape(NULL, secret, 0);
    char *out = NULL;
    if (eid != NULL && esec != NULL) {
        size_t n = strlen(eid) + strlen(esec) + 2;
        char *pair = xmalloc(n);
        snprintf(pair, n, "%s:%s", eid, esec);
        char *b64 = crypto_b64_encode(pair, n - 1);
        size_t hn = strlen(b64) + 32;
        out = xmalloc(hn);
        snprintf(out, hn, "Authorization: Basic %s", b64);
        crypto_wipe(pair, n);
        crypto_wipe(b64, strlen(b64));
        xfree(pair);
        xfree(b64);
    }
    if (esec != NULL) {
        crypto_wipe(esec, strlen(esec));
        curl_free(esec);
    }
    curl_free(eid);
    return out;
}

/* ---- Finishing ---- */

static void pump(struct provider *p);

static void report(struct oauth_req *r, const struct oauth_result *res)
{
    struct oauth *o = r->o;
    char labels[PROVIDER_CODE_MAX + 40];
    snprintf(labels, sizeof labels, "provider=\"%s\",result=\"%s\"", r->prov->code,
             oauth2_outcome_name(res->outcome));
    metric_inc(metrics_counter(o->m, REFRESHES, REFRESHES_HELP, labels));
    if (res->outcome == OAUTH2_OK)
        log_debugc("oauth", "token refreshed acct=%s code=%s expires_in=%lld rotated=%d", r->uid,
                   r->prov->code, (long long)res->expires_in, res->refresh_token != NULL);
    else
        log_info("token refresh failed acct=%s code=%s result=%s why=\"%s\"", r->uid, r->prov->code,
                 oauth2_outcome_name(res->outcome), res->why);
    r->cb(res, r->data);
}

static void on_answer(const struct deliver_result *dr, void *data)
{
    struct oauth_req *r = data;
    struct oauth *o = r->o;
    struct provider *p = r->prov;
    p->refreshing--;
    o->inflight--;
    metric_set(o->m_inflight, o->inflight);
    if (!r->cancelled) {
        struct oauth2_token t;
        struct oauth_result res = {.retry_after_ms = dr->retry_after_ms};
        char why[400];
        if (dr->error[0] != '\0' && dr->status == 0) {
            res.outcome = dr->refused ? OAUTH2_CONFIG : OAUTH2_RETRY;
            memset(&t, 0, sizeof t);
            snprintf(why, sizeof why, "token endpoint: %s", dr->error);
        } else {
            res.outcome = oauth2_token_parse(dr->status, dr->body, dr->body_len, &t);
            if (dr->error[0] != '\0' && res.outcome == OAUTH2_OK) {
                oauth2_token_clear(&t);
                res.outcome = OAUTH2_RETRY;
                snprintf(why, sizeof why, "token endpoint: %s", dr->error);
            } else if (res.outcome == OAUTH2_OK) {
                snprintf(why, sizeof why, "ok");
            } else {
                snprintf(why, sizeof why, "token endpoint answered HTTP %ld%s%s", dr->status,
                         t.error[0] ? ": " : "", t.error);
            }
        }
        res.why = why;
        res.access_token = t.access_token;
        res.refresh_token = t.refresh_token;
        res.expires_in = t.expires_in;
        report(r, &res);
        oauth2_token_clear(&t);
    }
    req_free(r);
    if (!o->closing)
        pump(p);
}

/* Hands r to core/deliver. Returns 0 or a negative error (r untouched). */
static int start(struct oauth_req *r)
{
    struct oauth *o = r->o;
    struct provider *p = r->prov;
    struct buf body;
    buf_init(&body, 4 * OAUTH2_TOKEN_MAX);
    int rc = add_param(&body, "grant_type", "refresh_token") |
             add_param(&body, "refresh_token", r->refresh_token);
    char *auth = NULL;
    if (p->token_auth == PROVIDER_TOKEN_BASIC)
        auth = basic_header(r->client_id, r->client_secret);
    else
        rc |= add_param(&body, "client_id", r->client_id) |
              add_param(&body, "client_secret", r->client_secret);
    if (rc != 0 || (p->token_auth == PROVIDER_TOKEN_BASIC && auth == NULL)) {
        crypto_wipe(body.data, body.cap);
        buf_free(&body);
        crypto_wipe_str(&auth);
        return -SIMAP_EINVAL;
    }
    const char *headers[3] = {"Content-Type: application/x-www-form-urlencoded",
                              "Accept: application/json", auth};
    size_t len = body.len;
    char *data = xmalloc(len + 1);
    memcpy(data, body.data, len);
    data[len] = '\0';
    crypto_wipe(body.data, body.cap);
    buf_free(&body);
    rc =
        deliver_post(o->http, p->token_url, headers, auth != NULL ? 3 : 2, data, len, on_answer, r);
    crypto_wipe_str(&auth);
    if (rc < 0)
        return rc;
    r->started = 1;
    p->refreshing++;
    o->inflight++;
    metric_set(o->m_inflight, o->inflight);
    return 0;
}

static void unqueue(struct oauth_req *r)
{
    struct provider *p = r->prov;
    struct oauth_req **pp = &p->rq_head, *last = NULL;
    while (*pp != NULL && *pp != r) {
        last = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == r) {
        *pp = r->next;
        if (p->rq_tail == r)
            p->rq_tail = last;
    }
    r->next = NULL;
    struct oauth *o = r->o;
    if (r->qprev != NULL)
        r->qprev->qnext = r->qnext;
    else
        o->queued = r->qnext;
    if (r->qnext != NULL)
        r->qnext->qprev = r->qprev;
    r->qprev = r->qnext = NULL;
}

/* Starts the provider's waiting refreshes while it has free slots. */
static void pump(struct provider *p)
{
    while (p->rq_head != NULL && p->refreshing < p->rq_head->o->cap) {
        struct oauth_req *r = p->rq_head;
        unqueue(r);
        int rc = start(r);
        if (rc < 0) {
            char why[128];
            snprintf(why, sizeof why, "cannot start the token request: %s", err_str(rc));
            struct oauth_result res = {.outcome = OAUTH2_RETRY, .why = why, .retry_after_ms = -1};
            report(r, &res);
            req_free(r);
        }
    }
}

/* ---- Public ---- */

int oauth_refresh(struct oauth *o, const struct oauth_params *prm, oauth_cb *cb, void *data,
                  struct oauth_req **out)
{
    struct provider *p = prm->prov;
    if (o == NULL || p == NULL || cb == NULL || p->token_url == NULL || prm->client_id == NULL ||
        prm->client_secret == NULL || prm->refresh_token == NULL || prm->refresh_token[0] == '\0')
        return -SIMAP_EINVAL;
    struct oauth_req *r = xcalloc(1, sizeof *r);
    r->o = o;
    r->prov = p;
    r->client_id = xstrdup(prm->client_id);
    r->client_secret = xstrdup(prm->client_secret);
    r->refresh_token = xstrdup(prm->refresh_token);
    snprintf(r->uid, sizeof r->uid, "%s", prm->uid ? prm->uid : "");
    r->cb = cb;
    r->data = data;
    if (p->rq_head == NULL && p->refreshing < o->cap) {
        int rc = start(r);
        if (rc < 0) {
            req_free(r);
            return rc;
        }
    } else {
        if (p->rq_tail != NULL)
            p->rq_tail->next = r;
        else
            p->rq_head = r;
        p->rq_tail = r;
        r->qnext = o->queued;
        if (o->queued != NULL)
            o->queued->qprev = r;
        o->queued = r;
    }
    *out = r;
    return 0;
}

void oauth_cancel(struct oauth_req *r)
{
    if (r == NULL)
        return;
    if (r->started) {
        r->cancelled = 1;
        return;
    }
    unqueue(r);
    req_free(r);
}

int oauth_inflight(const struct oauth *o)
{
    return o->inflight;
}

struct oauth *oauth_new(struct ev_loop *loop, const struct config *cfg, struct metrics *m)
{
    char ua[64];
    snprintf(ua, sizeof ua, "superimap/%s", SUPERIMAP_VERSION);
    struct deliver_opts dopts = {
        .timeout_ms = cfg->oauth2_timeout_ms,
        .connect_timeout_ms = cfg->oauth2_timeout_ms,
        .max_host_connections = 0,
        .max_connections = 0,
        .allow_private = cfg->oauth2_allow_private,
        .allow_var = "SUPERIMAP_OAUTH2_ALLOW_PRIVATE",
        .user_agent = ua,
        .keep_body = 1,
    };
    struct deliver *http = deliver_new(loop, &dopts);
    if (http == NULL)
        return NULL;
    struct oauth *o = xcalloc(1, sizeof *o);
    o->loop = loop;
    o->http = http;
    o->cap = cfg->oauth2_max_refreshes;
    o->m = m;
    o->m_inflight = metrics_gauge(m, "superimap_watcher_oauth2_refreshes_inflight",
                                  "OAuth2 token requests in flight", NULL);
    return o;
}

void oauth_free(struct oauth *o)
{
    if (o == NULL)
        return;
    o->closing = 1;
    deliver_free(o->http); /* in-flight requests answer "shutting down" now */
    while (o->queued != NULL) {
        struct oauth_req *r = o->queued;
        unqueue(r);
        struct oauth_result res = {
            .outcome = OAUTH2_RETRY, .why = "shutting down", .retry_after_ms = -1};
        r->cb(&res, r->data);
        req_free(r);
    }
    xfree(o);
}
