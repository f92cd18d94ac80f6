/*
 * The IMAP server of superimap-fake-imapd (see server.h): listeners and
 * accepting, the sweep that frees closed sessions, and the operations the
 * control channel uses. The connections themselves are session.c's: the
 * server gives them a struct session_env and acts on them only through
 * session.h's functions.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cmd/fake-imapd/commands.h"
#include "cmd/fake-imapd/faults.h"
#include "cmd/fake-imapd/mailbox.h"
#include "cmd/fake-imapd/session.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/time.h"

#define ACCEPT_BUDGET 256 /* connections accepted per wake-up */

struct listener;

/* The server (server.h keeps it opaque to main.c and control.c). */
struct server {
    struct ev_loop *loop;
    struct server_opts opts;
    SSL_CTX *ssl_ctx; /* NULL: no TLS */
    struct mbox_store *store;
    struct faults faults;
    struct listener *listeners;
    ev_timer accept_pause;            /* after EMFILE */
    ev_prepare sweep;                 /* runs queued sessions, frees closed ones */
    struct session_env env;           /* what the sessions have of the server */
    struct session_set sessions;      /* open, closing and queued sessions */
    struct session_counters counters; /* the sessions' part of the stats */
    unsigned long long appends;       /* messages appended, since reset */
    unsigned long long faults_at_reset;
};

struct listener {
    ev_io io;
    struct server *srv;
    int fd;
    int is_tls;
    int port;
    char host[64];
    struct listener *next;
};

static void on_sweep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct server *srv = w->data;
    session_set_sweep(&srv->sessions);
}

/* ---- Accepting ---- */

static void pause_accepting(struct server *srv);

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct listener *l = w->data;
    struct server *srv = l->srv;
    for (int i = 0; i < ACCEPT_BUDGET; i++) {
        int fd = accept(l->fd, NULL, NULL);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                log_warn("cannot accept, pausing for 100 ms err=\"%s\" sessions=%ld", strerror(e),
                         srv->counters.sessions);
                pause_accepting(srv);
            } else if (e != EAGAIN && e != EWOULDBLOCK) {
                log_warn("accept failed err=\"%s\"", strerror(e));
            }
            return;
        }
        int one = 1;
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        session_start(&srv->sessions, fd, l->is_tls);
    }
}

static void pause_accepting(struct server *srv)
{
    for (struct listener *l = srv->listeners; l != NULL; l = l->next)
        ev_io_stop(srv->loop, &l->io);
    ev_timer_set(&srv->accept_pause, 0.1, 0.);
    ev_timer_start(srv->loop, &srv->accept_pause);
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct server *srv = w->data;
    for (struct listener *l = srv->listeners; l != NULL; l = l->next)
        ev_io_start(loop, &l->io);
}

/* ---- Public ---- */

struct server *server_new(struct ev_loop *loop, const struct server_opts *opts, char *err,
                          size_t errlen)
{
    struct server *srv = xcalloc(1, sizeof *srv);
    srv->loop = loop;
    srv->opts = *opts;
    if (opts->cert != NULL && opts->key != NULL) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(ctx, opts->cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, opts->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            char text[256] = "unknown";
            unsigned long e;
            while ((e = ERR_get_error()) != 0)
                ERR_error_string_n(e, text, sizeof text);
            snprintf(err, errlen, "cannot load TLS certificate %s or key %s: %s", opts->cert,
                     opts->key, text);
            SSL_CTX_free(ctx);
            xfree(srv);
            return NULL;
        }
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        srv->ssl_ctx = ctx;
    }
    srv->store = mbox_store_new(opts->users);
    faults_configure(&srv->faults, 0.0, 1, "");
    srv->env.loop = loop;
    srv->env.ssl_ctx = srv->ssl_ctx;
    srv->env.store = srv->store;
    srv->env.faults = &srv->faults;
    srv->env.require_tls = opts->require_tls;
    if (opts->xoauth2_prefix != NULL && opts->xoauth2_prefix[0] != '\0')
        snprintf(srv->env.xoauth2_prefix, sizeof srv->env.xoauth2_prefix, "%s",
                 opts->xoauth2_prefix);
    srv->env.max_sessions_per_user = opts->max_sessions_per_user;
    srv->env.max_message = opts->max_message;
    srv->env.counters = &srv->counters;
    srv->env.hooks.run = commands_run; /* sessions run the commands through these */
    srv->env.hooks.more = commands_fetch_more;
    srv->env.hooks.more_free = commands_fetch_free;
    session_set_init(&srv->sessions, &srv->env);
    ev_timer_init(&srv->accept_pause, on_accept_pause, 0.1, 0.);
    srv->accept_pause.data = srv;
    ev_prepare_init(&srv->sweep, on_sweep);
    srv->sweep.data = srv;
    ev_prepare_start(loop, &srv->sweep);
    ev_unref(loop); /* the sweep alone does not keep the loop running */
    return srv;
}

int server_listen(struct server *srv, const char *host, int port, int tls, char *err, size_t errlen)
{
    if (tls && srv->ssl_ctx == NULL) {
        snprintf(err, errlen, "implicit TLS needs SUPERIMAP_FAKE_CERT and SUPERIMAP_FAKE_KEY");
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof *sin6;
    } else {
        snprintf(err, errlen, "'%s' is not an IP address", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 4096) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(e));
        close(fd);
        return -1;
    }
    struct listener *l = xcalloc(1, sizeof *l);
    l->srv = srv;
    l->fd = fd;
    l->is_tls = tls;
    l->port = ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
    snprintf(l->host, sizeof l->host, "%s", host);
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    l->io.data = l;
    ev_io_start(srv->loop, &l->io);
    struct listener **tail = &srv->listeners;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = l;
    int v6 = ss.ss_family == AF_INET6;
    log_info("listening addr=%s%s%s:%d tls=%s", v6 ? "[" : "", host, v6 ? "]" : "", l->port,
             tls ? "implicit" : "none");
    return l->port;
}

void server_ports(const struct server *srv, struct buf *out)
{
    for (const struct listener *l = srv->listeners; l != NULL; l = l->next) {
        int v6 = strchr(l->host, ':') != NULL;
        buf_printf(out, "%s%s%s%s:%d/%s", l == srv->listeners ? "" : " ", v6 ? "[" : "", l->host,
                   v6 ? "]" : "", l->port, l->is_tls ? "implicit" : "none");
    }
}

void server_stats(const struct server *srv, struct server_stats *st)
{
    const struct session_counters *c = &srv->counters;
    memset(st, 0, sizeof *st);
    st->connections = c->connections;
    st->logins = c->logins;
    st->login_failures = c->login_failures;
    st->commands = c->commands;
    st->fetches = c->fetches;
    st->bodies = c->bodies;
    st->nonpeek = c->nonpeek;
    st->seen_sets = c->seen_sets;
    st->appends = srv->appends;
    st->faults = faults_total(&srv->faults) - srv->faults_at_reset;
    st->idles = c->idles;
    st->noops = c->noops;
    st->sessions = c->sessions;
    st->max_sessions = c->max_sessions;
    st->authenticated = c->authenticated;
    st->max_sessions_per_user = c->max_sessions_per_user;
    memcpy(st->by_command, c->by_command, sizeof st->by_command);
}

void server_set_profiles(struct server *srv, unsigned profiles)
{
    srv->env.profiles = profiles;
}

unsigned server_profiles(const struct server *srv)
{
    return srv->env.profiles;
}

int server_parse_profiles(const char *list, unsigned *profiles)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {
        {"notify", PROFILE_NOTIFY},
        {"special-use", PROFILE_SPECIAL_USE},
        {"condstore", PROFILE_CONDSTORE},
        {"qresync", PROFILE_QRESYNC | PROFILE_CONDSTORE},
        {"x-gm-ext-1", PROFILE_GMAIL},
        {"all", PROFILE_ALL},
        {"none", 0},
    };
    unsigned bits = 0;
    const char *p = list;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof names / sizeof names[0] &&
               (strlen(names[i].name) != len || strncasecmp(p, names[i].name, len) != 0))
            i++;
        if (i == sizeof names / sizeof names[0])
            return -SIMAP_EINVAL;
        bits |= names[i].bits;
        p += len + (p[len] == ',');
    }
    *profiles = bits;
    return 0;
}

void server_describe_profiles(unsigned profiles, struct buf *out)
{
    static const char *const names[] = {"notify", "special-use", "condstore", "qresync",
                                        "x-gm-ext-1"};
    size_t start = out->len;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (profiles & (1u << i))
            buf_printf(out, "%s%s", out->len > start ? "," : "", names[i]);
    if (out->len == start)
        buf_puts(out, "none");
}

const char *server_command_stat(size_t i)
{
    return commands_stat_name(i);
}

void server_set_idle(struct server *srv, int on)
{
    srv->env.no_idle = !on;
}

int server_idle(const struct server *srv)
{
    return !srv->env.no_idle;
}

void server_reset_stats(struct server *srv)
{
    long sessions = srv->counters.sessions, authenticated = srv->counters.authenticated;
    memset(&srv->counters, 0, sizeof srv->counters);
    srv->appends = 0;
    srv->counters.sessions = sessions;
    srv->counters.max_sessions = sessions;
    srv->counters.authenticated = authenticated;
    mbox_store_reset_max(srv->store);
    srv->counters.max_sessions_per_user = mbox_store_max_sessions(srv->store);
    srv->faults_at_reset = faults_total(&srv->faults);
}

/* Tells every session of mb that f gained its last message. */
static void announce_new(struct account *mb, const struct folder *f)
{
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next; /* the session may be closed (unlinked) by a fault */
        session_notify_new(l->owner, f);
    }
}

int server_append(struct server *srv, const char *user, const char *mailbox, const void *data,
                  size_t n, uint32_t *uid)
{
    struct account *mb = mbox_get(srv->store, user, 1);
    if (mb == NULL)
        return -SIMAP_EINVAL;
    struct folder *f = mbox_folder(mb, mailbox != NULL ? mailbox : "INBOX");
    if (f == NULL)
        return -SIMAP_ENOTFOUND;
    int rc = mbox_append(f, data, n, time_now_ms(), uid);
    if (rc < 0)
        return rc;
    struct message *m = f->msgs[f->count - 1];
    m->gm_msgid = m->gm_thrid = mbox_next_gm_msgid(srv->store);
    srv->appends++;
    announce_new(mb, f);
    return 0;
}

/* Appends label as X-GM-LABELS writes it to out: INBOX as \Inbox. */
static void put_label(struct buf *out, const char *label)
{
    if (strcasecmp(label, "INBOX") == 0) {
        buf_puts(out, "\\Inbox");
        return;
    }
    buf_puts(out, "\"");
    for (const char *p = label; *p != '\0'; p++)
        buf_printf(out, "%s%c", *p == '"' || *p == '\\' ? "\\" : "", *p);
    buf_puts(out, "\"");
}

int server_append_labels(struct server *srv, const char *user, const char *const *labels,
                         size_t nlabels, const void *data, size_t n, uint32_t *uids,
                         uint64_t *msgid)
{
    struct account *mb = mbox_get(srv->store, user, 1);
    if (mb == NULL || nlabels == 0)
        return -SIMAP_EINVAL;
    struct folder *folders[SERVER_LABELS_MAX];
    if (nlabels > SERVER_LABELS_MAX)
        return -SIMAP_EINVAL;
    for (size_t i = 0; i < nlabels; i++) {
        const char *name = strcasecmp(labels[i], "\\Inbox") == 0 ? "INBOX" : labels[i];
        folders[i] = mbox_folder(mb, name);
        if (folders[i] == NULL)
            folders[i] = mbox_folder_create(srv->store, mb, name, FS_NONE);
        for (size_t k = 0; folders[i] != NULL && k < i; k++)
            if (folders[k] == folders[i])
                folders[i] = NULL; /* the same label twice */
        if (folders[i] == NULL)
            return -SIMAP_EINVAL;
    }
    struct buf list;
    buf_init(&list, (size_t)-1 / 2);
    buf_puts(&list, "(");
    for (size_t i = 0; i < nlabels; i++) {
        if (i > 0)
            buf_puts(&list, " ");
        put_label(&list, mbox_folder_name(folders[i]));
    }
    buf_puts(&list, ")");
    *msgid = mbox_next_gm_msgid(srv->store);
    for (size_t i = 0; i < nlabels; i++) {
        int rc = mbox_append(folders[i], data, n, time_now_ms(), &uids[i]);
        if (rc < 0) {
            buf_free(&list);
            return rc;
        }
        struct message *m = folders[i]->msgs[folders[i]->count - 1];
        m->gm_msgid = m->gm_thrid = *msgid;
        m->labels = xstrdup(list.data);
        srv->appends++;
    }
    buf_free(&list);
    for (size_t i = 0; i < nlabels; i++)
        announce_new(mb, folders[i]);
    return 0;
}

int server_expunge(struct server *srv, const char *user, const char *mailbox, uint32_t uid)
{
    struct account *mb = mbox_get(srv->store, user, 0);
    struct folder *f = mb != NULL ? mbox_folder(mb, mailbox) : NULL;
    if (f == NULL)
        return -SIMAP_ENOTFOUND;
    long i = mbox_expunge(f, uid);
    if (i < 0)
        return -SIMAP_ENOTFOUND;
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next;
        session_notify_expunge(l->owner, f, (size_t)i + 1, uid);
    }
    return 0;
}

int server_mailbox(struct server *srv, const char *user, enum server_mailbox_op op,
                   const char *name, const char *new_name, unsigned special)
{
    struct account *mb = mbox_get(srv->store, user, op == SERVER_MB_CREATE);
    if (mb == NULL)
        return op == SERVER_MB_CREATE ? -SIMAP_EINVAL : -SIMAP_ENOTFOUND;
    struct folder *f = mbox_folder(mb, name);
    if (op == SERVER_MB_CREATE)
        return mbox_folder_create(srv->store, mb, name, special) != NULL ? 0 : -SIMAP_EINVAL;
    if (f == NULL)
        return -SIMAP_ENOTFOUND;
    if (f == &mb->inbox)
        return -SIMAP_EINVAL;
    char *old = xstrdup(f->name);
    if (op == SERVER_MB_RENAME && mbox_folder_rename(mb, f, new_name) < 0) {
        xfree(old);
        return -SIMAP_EINVAL;
    }
    if (op == SERVER_MB_DELETE) {
        session_folder_lost(mb, f, NULL, "Mailbox deleted");
        mbox_folder_delete(mb, f);
    }
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next;
        session_notify_renamed(l->owner, old, op == SERVER_MB_RENAME ? new_name : NULL);
    }
    xfree(old);
    return 0;
}

int server_set_uidvalidity(struct server *srv, const char *user, const char *mailbox, uint32_t v)
{
    if (v == 0 || !mbox_user_valid(user))
        return -SIMAP_EINVAL;
    struct account *mb = mbox_get(srv->store, user, 0);
    struct folder *f = mb != NULL ? mbox_folder(mb, mailbox != NULL ? mailbox : "INBOX") : NULL;
    if (f == NULL)
        return -SIMAP_ENOTFOUND;
    mbox_renumber(f, v);
    session_folder_lost(mb, f, NULL, "UIDVALIDITY changed");
    return 0;
}

int server_kick(struct server *srv, const char *user)
{
    struct account *mb = mbox_get(srv->store, user, 0);
    if (mb == NULL)
        return 0;
    int n = 0;
    struct mbox_link *next;
    for (struct mbox_link *l = mb->sessions.next; l != &mb->sessions; l = next) {
        next = l->next; /* a half-open session is closed (unlinked) at once */
        n++;
        session_kick(l->owner);
    }
    return n;
}

struct mbox_store *server_store(struct server *srv)
{
    return srv->store;
}

struct faults *server_faults(struct server *srv)
{
    return &srv->faults;
}

void server_shutdown(struct server *srv)
{
    while (srv->listeners != NULL) {
        struct listener *l = srv->listeners;
        srv->listeners = l->next;
        ev_io_stop(srv->loop, &l->io);
        close(l->fd);
        xfree(l);
    }
    ev_timer_stop(srv->loop, &srv->accept_pause);
    session_set_close_all(&srv->sessions, "shutdown");
    on_sweep(srv->loop, &srv->sweep, 0);
}

void server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    server_shutdown(srv);
    ev_ref(srv->loop);
    ev_prepare_stop(srv->loop, &srv->sweep);
    mbox_store_free(srv->store);
    SSL_CTX_free(srv->ssl_ctx);
    xfree(srv);
}
