/*
 * Renewals never wait behind session work (issue 15, point 9). The watcher
 * reaches Redis through a proxy of ours that lets every connection through,
 * except that a connection carrying a session's LOAD (its HMGET of the user
 * record, recognised by its last fields in RESP) is held: what its client sends is kept for
 * STALL_MS, then delivered. That is a session connection made as slow as a
 * Redis working off a login storm, and nothing else: Redis itself, the
 * IMAP server and every other connection stay fast.
 *
 * With renewals on the sessions' connection, the held connection holds them
 * too and the watcher fences itself after 10 s; with their own connection it
 * keeps renewing (superimap_watcher_fences_total stays 0, no "self-fencing"
 * in its log) and the users are watched once the hold ends. With 300 users,
 * 256 LOADs are in flight on the held connection and the other 44 wait in
 * the watcher's gate (superimap_watcher_redis_calls_waiting).
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID         "7"
#define NUSERS      300
#define SESSION_CAP 256 /* WATCHER_SESSION_CALLS */
#define STALL_MS    14000
#define MAX_LINKS   16
/* The end of LOAD's HMGET in RESP (SCRIPT LOAD bodies may name the fields, not in this framing). */
#define MARKER      "oauth2_expires_at\r\n$5\r\nstate\r\n$12\r\nconnected_at\r\n"

/* ---- The proxy ---- */

struct link {
    int cfd, sfd;         /* the watcher's side, Redis' side; -1: closed */
    long long hold_until; /* 0: not held (yet) */
    char *held;           /* client bytes kept while held */
    size_t held_len, held_cap;
    char tail[sizeof MARKER]; /* the last bytes seen, for a marker cut in two */
    size_t tail_len;
};

struct proxy {
    char path[300];
    const char *redis_sock;
    int lfd;
    pthread_t thread;
    atomic_int stop;
    atomic_int holds;           /* connections held so far */
    atomic_llong first_hold_ms; /* when the first hold began */
    struct link links[MAX_LINKS];
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the other side is gone; its read sees it */
        p += w;
        n -= (size_t)w;
    }
}

static void link_close(struct link *l)
{
    if (l->cfd >= 0)
        close(l->cfd);
    if (l->sfd >= 0)
        close(l->sfd);
    free(l->held);
    memset(l, 0, sizeof *l);
    l->cfd = l->sfd = -1;
}

/* Does the stream, tail included, now show the marker? Keeps the new tail. */
static int saw_marker(struct link *l, const char *buf, size_t n)
{
    char scan[sizeof MARKER + 65536];
    memcpy(scan, l->tail, l->tail_len);
    memcpy(scan + l->tail_len, buf, n);
    size_t len = l->tail_len + n;
    int found = 0;
    for (size_t i = 0; !found && i + sizeof MARKER - 1 <= len; i++)
        found = memcmp(scan + i, MARKER, sizeof MARKER - 1) == 0;
    l->tail_len = len < sizeof MARKER - 1 ? len : sizeof MARKER - 1;
    memcpy(l->tail, scan + len - l->tail_len, l->tail_len);
    return found;
}

static void from_client(struct proxy *p, struct link *l)
{
    char buf[65536];
    ssize_t n = read(l->cfd, buf, sizeof buf);
    if (n <= 0) {
        link_close(l);
        return;
    }
    if (l->hold_until == 0 && saw_marker(l, buf, (size_t)n)) {
        l->hold_until = harness_now_ms() + STALL_MS;
        if (atomic_fetch_add(&p->holds, 1) == 0)
            atomic_store(&p->first_hold_ms, harness_now_ms());
    }
    if (l->hold_until != 0 && harness_now_ms() < l->hold_until) {
        if (l->held_len + (size_t)n > l->held_cap) {
            l->held_cap = (l->held_len + (size_t)n) * 2;
            l->held = realloc(l->held, l->held_cap);
            assert_non_null(l->held);
        }
        memcpy(l->held + l->held_len, buf, (size_t)n);
        l->held_len += (size_t)n;
        return;
    }
    write_all(l->sfd, buf, (size_t)n);
}

static void from_redis(struct link *l)
{
    char buf[65536];
    ssize_t n = read(l->sfd, buf, sizeof buf);
    if (n <= 0) {
        link_close(l);
        return;
    }
    write_all(l->cfd, buf, (size_t)n);
}

/* path fits: the harness's socket paths are shorter than sun_path. */
static void sun_path_set(struct sockaddr_un *a, const char *path)
{
    size_t n = strlen(path);
    if (n >= sizeof a->sun_path)
        n = sizeof a->sun_path - 1;
    memcpy(a->sun_path, path, n);
    a->sun_path[n] = '\0';
}

static void accept_link(struct proxy *p)
{
    int cfd = accept(p->lfd, NULL, NULL);
    if (cfd < 0)
        return;
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    sun_path_set(&a, p->redis_sock);
    struct link *l = NULL;
    for (int i = 0; i < MAX_LINKS && l == NULL; i++)
        if (p->links[i].cfd < 0)
            l = &p->links[i];
    if (l == NULL || sfd < 0 || connect(sfd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(cfd);
        if (sfd >= 0)
            close(sfd);
        return;
    }
    l->cfd = cfd;
    l->sfd = sfd;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd fds[1 + 2 * MAX_LINKS];
        struct link *owner[1 + 2 * MAX_LINKS];
        int nfds = 0;
        fds[nfds++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        long long now = harness_now_ms();
        for (int i = 0; i < MAX_LINKS; i++) {
            struct link *l = &p->links[i];
            if (l->cfd < 0)
                continue;
            if (l->held_len > 0 && now >= l->hold_until) {
                write_all(l->sfd, l->held, l->held_len);
                l->held_len = 0;
            }
            owner[nfds] = l;
            fds[nfds++] = (struct pollfd){.fd = l->cfd, .events = POLLIN};
            owner[nfds] = l;
            fds[nfds++] = (struct pollfd){.fd = l->sfd, .events = POLLIN};
        }
        if (poll(fds, (nfds_t)nfds, 50) <= 0)
            continue;
        if (fds[0].revents & POLLIN)
            accept_link(p);
        for (int i = 1; i < nfds; i++) {
            struct link *l = owner[i];
            if (fds[i].revents == 0 || l->cfd < 0)
                continue;
            if (fds[i].fd == l->cfd)
                from_client(p, l);
            else if (fds[i].fd == l->sfd)
                from_redis(l);
        }
    }
    for (int i = 0; i < MAX_LINKS; i++)
        if (p->links[i].cfd >= 0)
            link_close(&p->links[i]);
    return NULL;
}

static int proxy_start(struct proxy *p, const struct redis_srv *r)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < MAX_LINKS; i++)
        p->links[i].cfd = p->links[i].sfd = -1;
    p->redis_sock = r->sock;
    snprintf(p->path, sizeof p->path, "%s/proxy.sock", r->dir);
    unlink(p->path);
    p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(p->path) >= sizeof a.sun_path)
        return -1;
    sun_path_set(&a, p->path);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->lfd, 16) != 0)
        return -1;
    return pthread_create(&p->thread, NULL, proxy_main, p) == 0 ? 0 : -1;
}

static void proxy_stop(struct proxy *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    close(p->lfd);
    unlink(p->path);
}

/* ---- The scenario ---- */

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc watcher;
static struct proxy proxy;
static int watcher_up, proxy_up;

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=300", NULL};
    return fx_suite_start(&redis, &srv, 0, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    return fx_suite_stop(&redis, &srv);
}

static int setup(void **state)
{
    (void)state;
    return fx_suite_reset(&redis, &srv);
}

static int teardown(void **state)
{
    (void)state;
    if (watcher_up)
        harness_proc_stop(&watcher);
    if (proxy_up)
        proxy_stop(&proxy);
    watcher_up = proxy_up = 0;
    return 0;
}

static void test_renewals_go_on_while_the_session_connection_is_held(void **state)
{
    (void)state;
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, "storm", host, port, "none"), 0);
    assert_int_equal(fx_numbered_users(&redis, "00000000000000000000d", NUSERS, PID, "storm"), 0);
    assert_int_equal(proxy_start(&proxy, &redis), 0);
    proxy_up = 1;
    char url[340];
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=unix://%s", proxy.path);
    /* Longer than the hold: no command times out, so nothing but the hold
     * itself can delay a renewal. */
    const char *env[] = {url, "SUPERIMAP_REDIS_TIMEOUT_MS=30000",
                         "SUPERIMAP_IMAP_LOGINS_PER_SEC=1000", NULL};
    assert_int_equal(harness_node_start(&watcher, &redis, "superimap-watcher", "w1", env), 0);
    watcher_up = 1;

    long long deadline = harness_now_ms() + 15000;
    while (atomic_load(&proxy.holds) == 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(atomic_load(&proxy.holds), 1);

    /* Through the hold and 3 s past it: no fencing, and the LOADs beyond the
     * gate's 256 wait in the watcher, not on the connection. */
    long long until = atomic_load(&proxy.first_hold_ms) + STALL_MS + 3000;
    double fences = 0, waiting = 0;
    while (harness_now_ms() < until) {
        double f = harness_metric(watcher.port, "superimap_watcher_fences_total");
        double w = harness_metric(watcher.port, "superimap_watcher_redis_calls_waiting");
        fences = f > fences ? f : fences;
        waiting = w > waiting ? w : waiting;
        harness_poll_pause();
    }
    assert_true(fences == 0);
    assert_false(harness_log_contains(&watcher, "self-fencing"));
    assert_true(waiting == NUSERS - SESSION_CAP);
    assert_int_equal(atomic_load(&proxy.holds), 1); /* one session connection, held once */

    /* The hold over, the sessions go on: every user is watched. */
    assert_int_equal(
        fx_wait_metric(watcher.port, "superimap_watcher_sessions_watching", NUSERS, 30000), 0);
    assert_true(harness_metric(watcher.port, "superimap_watcher_redis_calls_waiting") == 0);
    assert_true(harness_metric(watcher.port, "superimap_watcher_fences_total") == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_renewals_go_on_while_the_session_connection_is_held,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
