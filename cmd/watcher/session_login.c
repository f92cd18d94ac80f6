/*
 * cmd/watcher/session_login: an IMAP session from the provider's go-ahead
 * to a logged-in connection (states QUEUED, CONNECT, TLS, GREETING, CAPA,
 * STARTTLS, AUTH; RFC 3501, RFC 8314 implicit TLS, RFC 4959 SASL-IR,
 * RFC 4616 PLAIN, XOAUTH2):
 *
 *   QUEUED --provider go--> CONNECT --> [TLS] --> GREETING --> [CAPA]
 *     --> [STARTTLS --> TLS --> CAPA] --> AUTH --> [CAPA] --> EXAMINE
 *
 * Plaintext credentials never cross an unencrypted link unless the provider
 * says tls=none; capabilities learnt before STARTTLS are forgotten.
 *
 * Depends on: session_mailbox (EXAMINE, once logged in), session_base,
 * imap_conn, session_policy, cmd/watcher/provider, proto/imap_cmd.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/watcher/session_impl.h"

#include <string.h>

#include "cmd/watcher/session_store.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"

static void send_capability(struct imap_session *s)
{
    session_new_tag(s);
    session_send_command(s, imap_cmd_capability(&s->conn.out, s->tag), S_CAPA,
                         "cannot build CAPABILITY");
}

/* ---- Connect, TLS ---- */

static void start_tls(struct imap_session *s)
{
    if (imap_conn_start_tls(&s->conn, s->prov->host) < 0) {
        session_fail(s, F_PROTO, "%s", imap_conn_error());
        return;
    }
    session_set_state(s, S_TLS);
}

void session_login_tls_up(struct imap_session *s)
{
    s->tls_up = 1;
    if (s->prov->tls == PROVIDER_TLS_STARTTLS) {
        /* RFC 3501 6.2.1: capabilities learnt before STARTTLS are void. */
        s->has_caps = 0;
        send_capability(s);
        return;
    }
    session_set_state(s, S_GREETING); /* implicit TLS: the greeting comes now */
}

static void drive_tls(struct imap_session *s)
{
    int rc = imap_conn_handshake(&s->conn);
    if (rc < 0)
        session_conn_failed(s, rc);
    else if (rc == 1)
        session_login_tls_up(s);
}

void session_login_connected(struct imap_session *s)
{
    if (s->prov->tls == PROVIDER_TLS_IMPLICIT) {
        start_tls(s);
        if (s->state == S_TLS)
            drive_tls(s);
        return;
    }
    session_set_state(s, S_GREETING);
}

void session_login_connect(struct imap_session *s)
{
    struct provider *p = s->prov;
    if (imap_conn_open(&s->conn, p->addr.ss_family) < 0) {
        session_fail(s, F_NET, "%s", imap_conn_error());
        return;
    }
    session_set_state(s, S_CONNECT);
    session_arm_ms(s, session_cfg(s)->imap_connect_timeout_ms);
    int rc = imap_conn_connect(&s->conn, (const struct sockaddr *)&p->addr, p->addrlen, p->host,
                               p->port);
    if (rc < 0)
        session_fail(s, F_NET, "%s", imap_conn_error());
    else if (rc == 1)
        session_login_connected(s);
}

static void on_provider_go(struct provider_waiter *wt, struct provider *p, int err, void *data)
{
    (void)wt;
    struct imap_session *s = data;
    s->busy++;
    if (err < 0) {
        session_fail(s, F_CONFIG, "provider %s: %s", s->user.code, err_str(err));
    } else {
        s->prov = p;
        if (s->pub == P_PROVIDER_LIMIT)
            session_store_publish(s, P_CONNECTING, NULL, 0);
        if (p->tls == PROVIDER_TLS_NONE)
            log_debugc("imap", "plaintext IMAP allowed by provider acct=%s code=%s", s->uid,
                       p->code);
        if (p->auth == PROVIDER_AUTH_OAUTH2)
            session_token_login(s);
        else
            session_login_connect(s);
    }
    s->busy--;
    session_store_maybe_free(s);
}

/* The provider is at its max_connections: the user shows why it waits. */
static void on_provider_limited(struct provider_waiter *wt, void *data)
{
    (void)wt;
    session_store_publish(data, P_PROVIDER_LIMIT, NULL, 0);
}

void session_login_queue(struct imap_session *s)
{
    session_set_state(s, S_QUEUED);
    s->wait.go = on_provider_go;
    s->wait.limited = on_provider_limited;
    s->wait.data = s;
    providers_enqueue(s->w->providers, s->user.code, &s->wait);
}

/* ---- Authentication ---- */

/* Appends the built command in tmp to out up to its first stop and keeps the
 * rest in cont, split at the other stops. */
static int queue_with_stops(struct imap_session *s, struct buf *tmp,
                            const struct imap_cmd_sync *sync)
{
    size_t first = sync->n > 0 ? sync->at[0] : tmp->len;
    int rc = buf_append(&s->conn.out, tmp->data, first);
    if (rc < 0 || sync->n == 0)
        return rc;
    buf_init(&s->cont, IMAP_CONN_OUT_MAX);
    rc = buf_append(&s->cont, tmp->data + first, tmp->len - first);
    s->ncont = (unsigned char)sync->n; /* at most IMAP_CMD_MAX_SYNC */
    s->icont = 0;
    for (size_t i = 0; i < sync->n; i++) {
        size_t end = i + 1 < sync->n ? sync->at[i + 1] : tmp->len;
        s->cont_seg[i] = (uint32_t)(end - sync->at[i]); /* tmp is bounded far below 4 GiB */
    }
    return rc;
}

static void send_auth(struct imap_session *s)
{
    if (s->prov->tls != PROVIDER_TLS_NONE && !s->tls_up) {
        session_fail(s, F_CONFIG, "refusing to send credentials without TLS");
        return;
    }
    struct buf tmp;
    buf_init(&tmp, 4 * IMAP_CMD_MAX_CREDENTIAL + 1024);
    struct imap_cmd_sync sync = {0};
    unsigned flags = s->cap_literal_plus ? IMAP_CMD_LITERAL_PLUS : 0;
    session_new_tag(s);
    int rc;
    const char *user = s->user.username != NULL ? s->user.username : "";
    const char *secret = s->user.secret != NULL ? s->user.secret : "";
    const char *access = s->user.access != NULL ? s->user.access : "";
    if (s->prov->auth == PROVIDER_AUTH_OAUTH2 && s->prov->sasl == PROVIDER_SASL_OAUTHBEARER)
        rc = imap_cmd_authenticate_oauthbearer(&tmp, &sync, s->tag, user, access, s->cap_sasl_ir);
    else if (s->prov->auth == PROVIDER_AUTH_OAUTH2)
        rc = imap_cmd_authenticate_xoauth2(&tmp, &sync, s->tag, user, access, s->cap_sasl_ir);
    else if (s->cap_auth_plain)
        rc = imap_cmd_authenticate_plain(&tmp, &sync, s->tag, user, secret, s->cap_sasl_ir);
    else if (!s->cap_logindisabled)
        rc = imap_cmd_login(&tmp, &sync, s->tag, user, secret, flags);
    else
        rc = -SIMAP_ESTATE;
    if (rc == 0)
        rc = queue_with_stops(s, &tmp, &sync);
    session_wipe_buf(&tmp);
    session_wipe_str(&s->user.secret);
    session_wipe_str(&s->user.access);
    if (rc == -SIMAP_ESTATE) {
        session_fail(s, F_CONFIG, "server disables LOGIN and offers no AUTH=PLAIN");
        return;
    }
    if (rc < 0) {
        session_fail(s, F_CONFIG, "cannot build the login command: %s", err_str(rc));
        return;
    }
    session_set_state(s, S_AUTH);
    session_arm_command(s);
    session_send(s);
}

/* "+" during AUTH: the next piece of the command, or the answer to an
 * XOAUTH2 (empty) or OAUTHBEARER (\x01) error challenge (the tagged NO
 * follows). */
void session_login_continue(struct imap_session *s)
{
    if (s->icont < s->ncont) {
        size_t off = 0;
        for (size_t i = 0; i < s->icont; i++)
            off += s->cont_seg[i];
        if (buf_append(&s->conn.out, s->cont.data + off, s->cont_seg[s->icont]) < 0) {
            session_fail(s, F_PROTO, "output buffer full");
            return;
        }
        s->icont++;
        if (s->icont == s->ncont) {
            session_wipe_buf(&s->cont);
            s->ncont = s->icont = 0;
        }
    } else if ((s->prov->auth == PROVIDER_AUTH_OAUTH2 && s->prov->sasl == PROVIDER_SASL_OAUTHBEARER
                    ? imap_cmd_sasl_oauthbearer_abort(&s->conn.out)
                    : imap_cmd_sasl_empty(&s->conn.out)) < 0) {
        session_fail(s, F_PROTO, "output buffer full");
        return;
    }
    session_send(s);
}

static void after_caps(struct imap_session *s)
{
    if (s->authed) {
        session_boxes_start(s);
        return;
    }
    if (s->prov->tls == PROVIDER_TLS_STARTTLS && !s->tls_up) {
        if (!s->cap_starttls) {
            session_fail(s, F_CONFIG, "server offers no STARTTLS (provider requires it)");
            return;
        }
        session_new_tag(s);
        session_send_command(s, imap_cmd_starttls(&s->conn.out, s->tag), S_STARTTLS,
                             "cannot build STARTTLS");
        return;
    }
    send_auth(s);
}

/* ---- Responses ---- */

void session_login_greeting(struct imap_session *s, const struct imap_response *r)
{
    if (r->kind != IMAP_RESP_COND) {
        session_fail(s, F_PROTO, "expected a greeting");
        return;
    }
    char text[200];
    if (r->cond == IMAP_COND_BYE) {
        session_fail(s, policy_is_throttle(r) ? F_THROTTLE : F_NET,
                     "server refused the connection: %s", policy_server_text(r, text, sizeof text));
        return;
    }
    if (r->code.kind == IMAP_CODE_CAPABILITY)
        session_take_caps(s, &r->code.list);
    if (r->cond == IMAP_COND_PREAUTH) {
        if (s->prov->tls == PROVIDER_TLS_STARTTLS && !s->tls_up) {
            session_fail(s, F_CONFIG, "server pre-authenticated a plaintext connection");
            return;
        }
        s->authed = 1;
    } else if (r->cond != IMAP_COND_OK) {
        session_fail(s, F_PROTO, "unexpected greeting");
        return;
    }
    session_disarm(s);
    if (!s->has_caps)
        send_capability(s);
    else
        after_caps(s);
}

void session_login_capa(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok) {
        session_fail(s, F_PROTO, "CAPABILITY refused: %s",
                     policy_server_text(r, text, sizeof text));
        return;
    }
    if (r->code.kind == IMAP_CODE_CAPABILITY)
        session_take_caps(s, &r->code.list);
    s->has_caps = 1;
    after_caps(s);
}

void session_login_starttls(struct imap_session *s, const struct imap_response *r, int ok)
{
    char text[200];
    if (!ok) {
        session_fail(s, F_CONFIG, "STARTTLS refused: %s", policy_server_text(r, text, sizeof text));
        return;
    }
    if (imap_parser_buffered(s->parser) > 0) {
        /* Plaintext after the OK would be injected before TLS (CVE-2011-0411 style). */
        session_fail(s, F_PROTO, "data after STARTTLS's OK");
        return;
    }
    start_tls(s);
    if (s->state == S_TLS)
        drive_tls(s);
}

void session_login_auth(struct imap_session *s, const struct imap_response *r, int ok)
{
    session_wipe_buf(&s->cont);
    s->ncont = s->icont = 0;
    if (!ok) {
        char why[256];
        unsigned strikes = s->auth_strikes;
        enum fail_kind kind = policy_login_refused(r, &strikes, why, sizeof why);
        s->auth_strikes = strikes;
        if (s->prov->auth == PROVIDER_AUTH_OAUTH2 && kind != F_THROTTLE &&
            session_token_refused(s, why))
            return;
        session_fail(s, kind, "%s", why);
        return;
    }
    s->authed = 1;
    s->auth_strikes = 0;
    s->tok_forced = 0;
    session_wipe_str(&s->user.username);
    metric_inc(s->w->m.logins);
    provider_login_ok(s->prov);
    if (r->code.kind == IMAP_CODE_CAPABILITY) {
        session_take_caps(s, &r->code.list);
        session_boxes_start(s);
    } else if (!s->cap_idle || (s->boxes != NULL && !s->cap_notify)) {
        send_capability(s); /* IDLE (or NOTIFY) may appear after login */
    } else {
        session_boxes_start(s);
    }
}
