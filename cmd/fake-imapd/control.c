/*
 * The control channel of superimap-fake-imapd (see control.h).
 *
 * A unix stream socket; each request is one line (LF or CRLF) and gets one
 * reply line, "OK ..." or "ERR <reason>", in order. Requests:
 *
 *   APPEND <user> <nbytes>\n<nbytes raw bytes>  -> OK <uid>
 *       appends to user's INBOX (made on first use); sessions with it
 *       selected get "* n EXISTS", sessions whose NOTIFY watches it "* STATUS"
 *   APPENDTO <user> <mailbox> <nbytes>\n<bytes> -> OK <uid>   (into an existing mailbox)
 *   APPENDLABELS <user> <label,label,...> <nbytes>\n<bytes>
 *                                               -> OK <x-gm-msgid> <uid> <uid> ...
 *       Gmail: one copy per label mailbox (made if missing; INBOX or \Inbox
 *       for INBOX), all with the same X-GM-MSGID and X-GM-LABELS; a UID per label
 *   MAILBOX <user> CREATE <mailbox> [\Junk|\Sent|\Trash|\Drafts|\Archive|\All|\Flagged]
 *   MAILBOX <user> RENAME <mailbox> <new name>
 *   MAILBOX <user> DELETE <mailbox>             -> OK        (never INBOX; sessions with it
 *                                                             selected get BYE; NOTIFY
 *                                                             sessions get "* LIST")
 *   MAILBOXES <user>                            -> OK <mailbox>[:<\Special>] ...
 *   EXPUNGE <user> <mailbox> <uid>              -> OK        (EXPUNGE, or VANISHED after
 *                                                             ENABLE QRESYNC, to selected
 *                                                             sessions; remembered for
 *                                                             QRESYNC)
 *   PROFILES [<profile,profile,...>|none|all]   -> OK <profiles>  (notify, special-use,
 *                                                  condstore, qresync, x-gm-ext-1: see
 *                                                  SUPERIMAP_FAKE_PROFILES; no argument
 *                                                  reads them)
 *   USER <user> <password>                      -> OK        (makes or re-keys a user)
 *   UIDVALIDITY <user> <n> [<mailbox>]          -> OK        (renumbers every UID; selected
 *                                                             sessions get BYE)
 *   KICK <user>                                 -> OK <sessions closed>
 *   SESSIONS <user>                             -> OK current=<n> max=<n>
 *   INFO <user> [<mailbox>]                     -> OK uidvalidity=<n> uidnext=<n> messages=<n>
 *                                                  recent=<n> unseen=<n> current=<n> max=<n>
 *                                                  highestmodseq=<n>
 *   FLAGS <user> <uid> [<mailbox>]              -> OK [\Seen] [\Recent]
 *   MESSAGE <user> <uid> [<mailbox>]            -> OK <nbytes>\n<nbytes raw bytes>
 *   STATS                                       -> OK logins=<n> sessions=<n>
 *                                                  max_sessions_per_user=<n> fetches=<n>
 *                                                  seen_sets=<n> appends=<n> connections=<n>
 *                                                  authenticated=<n> login_failures=<n>
 *                                                  commands=<n> bodies=<n> nonpeek=<n> faults=<n>
 *                                                  idles=<n> noops=<n> max_sessions=<n>
 *                                                  cmd_capability=<n> ... cmd_enable=<n>
 *       (max_sessions: most connections open at once since RESET; idles
 *       counts IDLE commands, refused ones too; cmd_<command>: commands of
 *       that name read, faults or not, cmd_uid_fetch for UID FETCH)
 *   RESET                                       -> OK        (zeroes the counters)
 *   FAULTS <rate> <seed> <kind,kind,...|all|none> -> OK
 *   FAULTS                                      -> OK rate=<r> seed=<n> list=<kinds> bad=<n> ...
 *   CAPS [IDLE|NOIDLE]                          -> OK idle|noidle  (NOIDLE: CAPABILITY
 *                                                  leaves IDLE out and IDLE gets BAD, as
 *                                                  a server without RFC 2177; IDLE: back
 *                                                  to the default; no argument: reads it)
 *   PORTS                                       -> OK <host>:<port>/<none|implicit> ...
 *   PING                                        -> OK pong
 *
 * A mailbox name in a request is percent-encoded where it holds a space,
 * a '%', a ',' (APPENDLABELS) or a control byte ("Old%20Mail"); replies
 * encode names the same way.
 *
 * MESSAGE is the one multi-line reply: its line gives the byte count that
 * follows. Lines are at most 4,096 bytes; APPEND at most
 * SUPERIMAP_FAKE_MAX_MESSAGE bytes. A malformed line gets ERR and the
 * connection stays usable; an oversized one closes it.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/fake-imapd/control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "cmd/fake-imapd/faults.h"
#include "cmd/fake-imapd/mailbox.h"
#include "cmd/fake-imapd/server.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"

#define CTL_LINE_MAX 4096
#define CTL_READ     65536

struct ctl_client {
    ev_io io; /* io.data points back here */
    struct control *ctl;
    int fd;
    int io_events;
    int is_closing;
    struct buf in;
    struct buf out;
    struct ctl_client *prev, *next; /* in ctl->clients, then ctl->closing */
};

struct control {
    struct ev_loop *loop;
    struct server *srv;
    ev_io io;
    ev_prepare sweep;
    int fd;
    char *path;
    size_t max_message;
    struct ctl_client *clients;
    struct ctl_client *closing;
};

/* ---- Clients ---- */

static void client_close(struct ctl_client *c)
{
    if (c->is_closing)
        return;
    struct control *ctl = c->ctl;
    c->is_closing = 1;
    ev_io_stop(ctl->loop, &c->io);
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ctl->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = ctl->closing;
    ctl->closing = c;
}

static void on_sweep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct control *ctl = w->data;
    while (ctl->closing != NULL) {
        struct ctl_client *c = ctl->closing;
        ctl->closing = c->next;
        buf_free(&c->in);
        buf_free(&c->out);
        xfree(c);
    }
}

static void answer(struct ctl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void answer(struct ctl_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&c->out, fmt, ap);
    va_end(ap);
    if (rc < 0)
        client_close(c);
}

/* Splits line into at most max words at spaces; returns the count. */
static int split(char *line, char **words, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(line, " ", &save); w != NULL && n < max; w = strtok_r(NULL, " ", &save))
        words[n++] = w;
    return n;
}

static int parse_u32(const char *s, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > 0xffffffffUL)
        return -1;
    *out = v;
    return 0;
}

/* Decodes %XX escapes of a mailbox name in place; 0, or -1 for a bad escape. */
static int unescape(char *name)
{
    char *w = name;
    for (const char *r = name; *r != '\0'; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        unsigned v;
        if (sscanf(r + 1, "%2x", &v) != 1 || r[1] == '\0' || r[2] == '\0' || v == 0 ||
            strchr("0123456789abcdefABCDEF", r[1]) == NULL ||
            strchr("0123456789abcdefABCDEF", r[2]) == NULL)
            return -1;
        *w++ = (char)v;
        r += 2;
    }
    *w = '\0';
    return 0;
}

/* Appends name to out with spaces, '%', ',' and control bytes escaped. */
static void escape(struct buf *out, const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (*p <= ' ' || *p == '%' || *p == ',' || *p == 0x7f)
            buf_printf(out, "%%%02X", *p);
        else
            buf_printf(out, "%c", *p);
    }
}

static struct account *existing(struct control *ctl, const char *user)
{
    return mbox_get(server_store(ctl->srv), user, 0);
}

static void do_stats(struct ctl_client *c)
{
    struct server_stats st;
    server_stats(c->ctl->srv, &st);
    answer(c,
           "OK logins=%llu sessions=%ld max_sessions_per_user=%d fetches=%llu seen_sets=%llu "
           "appends=%llu connections=%llu authenticated=%ld login_failures=%llu commands=%llu "
           "bodies=%llu nonpeek=%llu faults=%llu idles=%llu noops=%llu max_sessions=%ld",
           st.logins, st.sessions, st.max_sessions_per_user, st.fetches, st.seen_sets, st.appends,
           st.connections, st.authenticated, st.login_failures, st.commands, st.bodies, st.nonpeek,
           st.faults, st.idles, st.noops, st.max_sessions);
    for (size_t i = 0; server_command_stat(i) != NULL; i++)
        answer(c, " %s=%llu", server_command_stat(i), st.by_command[i]);
    answer(c, "\n");
}

static const char *rc_reason(int rc)
{
    if (rc == -SIMAP_ENOTFOUND)
        return "no such user, mailbox or message";
    if (rc == -SIMAP_EINVAL)
        return "invalid or taken name";
    return err_str(rc);
}

/* MAILBOX <user> CREATE|RENAME|DELETE <mailbox> [<new name>|<\Special>] */
static void do_mailbox(struct ctl_client *c, char **w, int n)
{
    static const char usage[] = "ERR usage: MAILBOX <user> CREATE <mailbox> [<\\Special>] | "
                                "RENAME <mailbox> <new> | DELETE <mailbox>\n";
    enum server_mailbox_op op;
    unsigned special = FS_NONE;
    if (n == 4 && strcmp(w[2], "CREATE") == 0)
        op = SERVER_MB_CREATE;
    else if (n == 5 && strcmp(w[2], "CREATE") == 0 && (special = mbox_special_of(w[4])) != FS_NONE)
        op = SERVER_MB_CREATE;
    else if (n == 5 && strcmp(w[2], "RENAME") == 0 && unescape(w[4]) == 0)
        op = SERVER_MB_RENAME;
    else if (n == 4 && strcmp(w[2], "DELETE") == 0)
        op = SERVER_MB_DELETE;
    else {
        answer(c, usage);
        return;
    }
    if (unescape(w[3]) < 0) {
        answer(c, usage);
        return;
    }
    int rc =
        server_mailbox(c->ctl->srv, w[1], op, w[3], op == SERVER_MB_RENAME ? w[4] : NULL, special);
    if (rc == 0) {
        log_info("mailbox changed user=%s op=%s mailbox=\"%s\"", w[1], w[2], w[3]);
        answer(c, "OK\n");
    } else {
        answer(c, "ERR %s\n", rc_reason(rc));
    }
}

static void do_mailboxes(struct ctl_client *c, const char *user)
{
    struct account *mb = existing(c->ctl, user);
    if (mb == NULL) {
        answer(c, "ERR no such user\n");
        return;
    }
    struct buf b;
    buf_init(&b, (size_t)-1 / 2);
    for (const struct folder *f = &mb->inbox; f != NULL; f = f->next) {
        buf_puts(&b, " ");
        escape(&b, mbox_folder_name(f));
        if (f->special != FS_NONE)
            buf_printf(&b, ":%s", mbox_special_name(f->special));
    }
    answer(c, "OK%s\n", b.data);
    buf_free(&b);
}

static void do_profiles(struct ctl_client *c, char **w, int n)
{
    unsigned p;
    if (n == 2) {
        if (server_parse_profiles(w[1], &p) < 0) {
            answer(c, "ERR usage: PROFILES [notify,special-use,condstore,qresync,x-gm-ext-1|"
                      "all|none]\n");
            return;
        }
        server_set_profiles(c->ctl->srv, p);
        log_info("profiles set profiles=%s", w[1]);
    }
    struct buf b;
    buf_init(&b, 256);
    server_describe_profiles(server_profiles(c->ctl->srv), &b);
    answer(c, "OK %s\n", b.data);
    buf_free(&b);
}

/* The folder named w (escaped; NULL: INBOX) of user, or NULL after an ERR. */
static struct folder *folder_arg(struct ctl_client *c, const char *user, char *w)
{
    struct account *mb = existing(c->ctl, user);
    if (mb == NULL) {
        answer(c, "ERR no such user\n");
        return NULL;
    }
    struct folder *f = w == NULL ? &mb->inbox : unescape(w) == 0 ? mbox_folder(mb, w) : NULL;
    if (f == NULL)
        answer(c, "ERR no such mailbox\n");
    return f;
}

static void do_faults(struct ctl_client *c, char **w, int n)
{
    struct faults *f = server_faults(c->ctl->srv);
    if (n == 1) {
        struct buf b;
        buf_init(&b, 4096);
        faults_describe(f, &b);
        answer(c, "OK %s\n", b.data);
        buf_free(&b);
        return;
    }
    char *end;
    double rate = n == 4 ? strtod(w[1], &end) : -1.0;
    unsigned long seed;
    if (n != 4 || *end != '\0' || parse_u32(w[2], &seed) < 0 ||
        faults_configure(f, rate, seed, w[3]) < 0) {
        answer(c, "ERR usage: FAULTS <rate 0..1> <seed> <kind,kind,...|all|none>\n");
        return;
    }
    log_info("faults set rate=%g seed=%lu list=%s", rate, seed, w[3]);
    answer(c, "OK\n");
}

static void do_message(struct ctl_client *c, struct folder *mb, unsigned long uid, int flags)
{
    size_t i = mbox_index_at_or_after(mb, (uint32_t)uid);
    if (i == mb->count || mb->msgs[i]->uid != uid) {
        answer(c, "ERR no such message\n");
        return;
    }
    const struct message *m = mb->msgs[i];
    if (flags) {
        int seen = (m->flags & MSG_SEEN) != 0, recent = (m->flags & MSG_RECENT) != 0;
        answer(c, "OK%s%s\n", seen ? " \\Seen" : "", recent ? " \\Recent" : "");
        return;
    }
    answer(c, "OK %zu\n", m->size);
    if (buf_append(&c->out, m->data, m->size) < 0)
        client_close(c);
}

/* Runs one request line (NUL-terminated, without its end of line). */
static void request(struct ctl_client *c, char *line)
{
    struct control *ctl = c->ctl;
    char *w[6];
    int n = split(line, w, 6);
    if (n == 0) {
        answer(c, "ERR empty request\n");
        return;
    }
    const char *verb = w[0];
    unsigned long num;
    struct account *mb;
    struct folder *f;
    if (strcmp(verb, "PING") == 0 && n == 1) {
        answer(c, "OK pong\n");
    } else if (strcmp(verb, "STATS") == 0 && n == 1) {
        do_stats(c);
    } else if (strcmp(verb, "RESET") == 0 && n == 1) {
        server_reset_stats(ctl->srv);
        answer(c, "OK\n");
    } else if (strcmp(verb, "PORTS") == 0 && n == 1) {
        struct buf b;
        buf_init(&b, CTL_LINE_MAX * 16);
        server_ports(ctl->srv, &b);
        answer(c, "OK %s\n", b.data ? b.data : "");
        buf_free(&b);
    } else if (strcmp(verb, "CAPS") == 0 && n <= 2) {
        if (n == 2 && strcmp(w[1], "IDLE") != 0 && strcmp(w[1], "NOIDLE") != 0) {
            answer(c, "ERR usage: CAPS [IDLE|NOIDLE]\n");
            return;
        }
        if (n == 2) {
            server_set_idle(ctl->srv, w[1][0] == 'I');
            log_info("capabilities set idle=%d", server_idle(ctl->srv));
        }
        answer(c, "OK %s\n", server_idle(ctl->srv) ? "idle" : "noidle");
    } else if (strcmp(verb, "FAULTS") == 0) {
        do_faults(c, w, n);
    } else if (strcmp(verb, "USER") == 0 && n == 3) {
        if (mbox_set_password(server_store(ctl->srv), w[1], w[2]) < 0)
            answer(c, "ERR invalid user name\n");
        else
            answer(c, "OK\n");
    } else if (strcmp(verb, "PROFILES") == 0 && n <= 2) {
        do_profiles(c, w, n);
    } else if (strcmp(verb, "MAILBOX") == 0 && n >= 4) {
        do_mailbox(c, w, n);
    } else if (strcmp(verb, "MAILBOXES") == 0 && n == 2) {
        do_mailboxes(c, w[1]);
    } else if (strcmp(verb, "EXPUNGE") == 0 && n == 4) {
        int rc = parse_u32(w[3], &num) < 0 || unescape(w[2]) < 0
                     ? -SIMAP_EINVAL
                     : server_expunge(ctl->srv, w[1], w[2], (uint32_t)num);
        if (rc == 0)
            answer(c, "OK\n");
        else
            answer(c, "ERR %s\n", rc_reason(rc));
    } else if (strcmp(verb, "UIDVALIDITY") == 0 && (n == 3 || n == 4)) {
        int rc = parse_u32(w[2], &num) < 0 || (n == 4 && unescape(w[3]) < 0)
                     ? -SIMAP_EINVAL
                     : server_set_uidvalidity(ctl->srv, w[1], n == 4 ? w[3] : NULL, (uint32_t)num);
        if (rc == 0)
            log_info("uidvalidity changed user=%s uidvalidity=%lu", w[1], num);
        if (rc == 0)
            answer(c, "OK\n");
        else
            answer(c, "ERR %s\n",
                   rc == -SIMAP_ENOTFOUND ? "no such user or mailbox" : "invalid arguments");
    } else if (strcmp(verb, "KICK") == 0 && n == 2) {
        int k = server_kick(ctl->srv, w[1]);
        log_info("kicked user=%s sessions=%d", w[1], k);
        answer(c, "OK %d\n", k);
    } else if (strcmp(verb, "SESSIONS") == 0 && n == 2) {
        mb = existing(ctl, w[1]);
        answer(c, "OK current=%d max=%d\n", mb ? mb->sessions_now : 0, mb ? mb->sessions_max : 0);
    } else if (strcmp(verb, "INFO") == 0 && (n == 2 || n == 3)) {
        if ((f = folder_arg(c, w[1], n == 3 ? w[2] : NULL)) != NULL) {
            mb = existing(ctl, w[1]);
            answer(c,
                   "OK uidvalidity=%u uidnext=%u messages=%zu recent=%zu unseen=%zu current=%d "
                   "max=%d highestmodseq=%llu\n",
                   (unsigned)f->uidvalidity, (unsigned)f->uidnext, f->count, f->recent, f->unseen,
                   mb->sessions_now, mb->sessions_max, (unsigned long long)f->highestmodseq);
        }
    } else if ((strcmp(verb, "FLAGS") == 0 || strcmp(verb, "MESSAGE") == 0) && (n == 3 || n == 4)) {
        if ((f = folder_arg(c, w[1], n == 4 ? w[3] : NULL)) == NULL)
            return;
        if (parse_u32(w[2], &num) < 0)
            answer(c, "ERR invalid uid\n");
        else
            do_message(c, f, num, verb[0] == 'F');
    } else {
        answer(c, "ERR unknown request or wrong arguments\n");
    }
}

/* APPEND, APPENDTO or APPENDLABELS at line[0..end), its payload from body
 * (avail bytes there so far). Returns the payload bytes consumed (0 after a
 * usage error: the line alone goes), or -1 to wait for more. */
static long append(struct ctl_client *c, const char *line, size_t end, const char *body,
                   size_t avail)
{
    char head[CTL_LINE_MAX + 1];
    memcpy(head, line, end);
    head[end] = '\0';
    char *w[5];
    int n = split(head, w, 5);
    int to = strcmp(w[0], "APPENDTO") == 0, labels = strcmp(w[0], "APPENDLABELS") == 0;
    unsigned long nbytes;
    if (!(n == 3 && strcmp(w[0], "APPEND") == 0) && !(n == 4 && (to || labels))) {
        answer(c, "ERR usage: APPEND <user> <nbytes> | APPENDTO <user> <mailbox> <nbytes> | "
                  "APPENDLABELS <user> <label,...> <nbytes>\n");
        return 0;
    }
    if (parse_u32(w[n - 1], &nbytes) < 0 || nbytes > c->ctl->max_message) {
        answer(c, "ERR usage: %s ... <nbytes 0..%zu>\n", w[0], c->ctl->max_message);
        return 0;
    }
    if (avail < nbytes)
        return -1;
    int rc;
    if (labels) {
        char *names[SERVER_LABELS_MAX + 1];
        uint32_t uids[SERVER_LABELS_MAX];
        uint64_t msgid = 0;
        size_t k = 0;
        char *save = NULL;
        rc = 0;
        for (char *l = strtok_r(w[2], ",", &save); l != NULL; l = strtok_r(NULL, ",", &save)) {
            if (k == SERVER_LABELS_MAX + 1 || unescape(l) < 0)
                rc = -SIMAP_EINVAL;
            else
                names[k++] = l;
        }
        if (rc == 0)
            rc = server_append_labels(c->ctl->srv, w[1], (const char *const *)names, k, body,
                                      nbytes, uids, &msgid);
        if (rc == 0) {
            answer(c, "OK %llu", (unsigned long long)msgid);
            for (size_t i = 0; i < k; i++)
                answer(c, " %u", (unsigned)uids[i]);
            answer(c, "\n");
        }
    } else {
        uint32_t uid;
        rc = to && unescape(w[2]) < 0
                 ? -SIMAP_EINVAL
                 : server_append(c->ctl->srv, w[1], to ? w[2] : NULL, body, nbytes, &uid);
        if (rc == 0)
            answer(c, "OK %u\n", (unsigned)uid);
    }
    if (rc != 0)
        answer(c, "ERR %s\n", rc == -SIMAP_EINVAL ? "invalid user or mailbox name" : rc_reason(rc));
    return (long)nbytes;
}

/* Runs every complete request in c->in. APPEND's payload must be whole. */
static void process(struct ctl_client *c)
{
    size_t off = 0;
    while (!c->is_closing && off < c->in.len) {
        char *line = c->in.data + off;
        char *nl = memchr(line, '\n', c->in.len - off);
        if (nl == NULL) {
            if (c->in.len - off > CTL_LINE_MAX)
                client_close(c);
            break;
        }
        size_t linelen = (size_t)(nl - line);
        if (linelen > CTL_LINE_MAX) {
            client_close(c);
            break;
        }
        size_t end = linelen > 0 && line[linelen - 1] == '\r' ? linelen - 1 : linelen;
        if (end > 7 && strncmp(line, "APPEND", 6) == 0) {
            int rc = append(c, line, end, nl + 1, c->in.len - off - linelen - 1);
            if (rc < 0)
                break; /* wait for the whole message */
            off += linelen + 1 + (size_t)rc;
            continue;
        }
        line[end] = '\0';
        request(c, line);
        off += linelen + 1;
    }
    if (!c->is_closing) {
        buf_consume(&c->in, off);
        buf_shrink(&c->in);
    }
}

static void client_arm(struct ctl_client *c)
{
    int ev = EV_READ | (c->out.len > 0 ? EV_WRITE : 0);
    if (c->is_closing || ev == c->io_events)
        return;
    ev_io_stop(c->ctl->loop, &c->io);
    ev_io_set(&c->io, c->fd, ev);
    ev_io_start(c->ctl->loop, &c->io);
    c->io_events = ev;
}

static void on_client(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct ctl_client *c = w->data;
    if (revents & EV_READ) {
        for (int i = 0; i < 16 && !c->is_closing; i++) {
            char *p = buf_reserve(&c->in, CTL_READ);
            if (p == NULL) {
                client_close(c);
                return;
            }
            ssize_t n = read(c->fd, p, CTL_READ);
            if (n > 0) {
                buf_commit(&c->in, (size_t)n);
                continue;
            }
            int e = errno;
            if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
                break;
            client_close(c); /* end of stream or error */
            return;
        }
        process(c);
    }
    while (!c->is_closing && c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        int e = errno;
        if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
            break;
        client_close(c);
        return;
    }
    if (!c->is_closing)
        buf_shrink(&c->out);
    client_arm(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct control *ctl = w->data;
    for (int i = 0; i < 64; i++) {
        int fd = accept(ctl->fd, NULL, NULL);
        if (fd < 0)
            return;
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            close(fd);
            continue;
        }
        struct ctl_client *c = xcalloc(1, sizeof *c);
        c->ctl = ctl;
        c->fd = fd;
        buf_init(&c->in, ctl->max_message + CTL_LINE_MAX + CTL_READ + 2);
        buf_init(&c->out, ctl->max_message + CTL_LINE_MAX * 64);
        ev_io_init(&c->io, on_client, fd, EV_READ);
        c->io.data = c;
        c->io_events = EV_READ;
        ev_io_start(loop, &c->io);
        c->next = ctl->clients;
        if (ctl->clients != NULL)
            ctl->clients->prev = c;
        ctl->clients = c;
    }
}

/* ---- Public ---- */

struct control *control_new(struct ev_loop *loop, struct server *srv, const char *path,
                            size_t max_message, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "control socket path is longer than %zu bytes: %s",
                 sizeof sa.sun_path - 1, path);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket of an earlier run */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
        close(fd);
        return NULL;
    }
    struct control *ctl = xcalloc(1, sizeof *ctl);
    ctl->loop = loop;
    ctl->srv = srv;
    ctl->fd = fd;
    ctl->path = xstrdup(path);
    ctl->max_message = max_message;
    ev_io_init(&ctl->io, on_accept, fd, EV_READ);
    ctl->io.data = ctl;
    ev_io_start(loop, &ctl->io);
    ev_prepare_init(&ctl->sweep, on_sweep);
    ctl->sweep.data = ctl;
    ev_prepare_start(loop, &ctl->sweep);
    ev_unref(loop); /* the sweep alone does not keep the loop running */
    log_info("control listening path=%s", path);
    return ctl;
}

void control_free(struct control *ctl)
{
    if (ctl == NULL)
        return;
    while (ctl->clients != NULL)
        client_close(ctl->clients);
    on_sweep(ctl->loop, &ctl->sweep, 0);
    ev_ref(ctl->loop);
    ev_prepare_stop(ctl->loop, &ctl->sweep);
    ev_io_stop(ctl->loop, &ctl->io);
    close(ctl->fd);
    unlink(ctl->path);
    xfree(ctl->path);
    xfree(ctl);
}
