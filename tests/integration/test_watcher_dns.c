/*
 * A provider whose host name the DNS is slow to answer must not stall the
 * watcher's other sessions (issue "Hardening", point 10): the name is
 * resolved off the loop (core/resolver).
 *
 * The watcher runs in its own mount namespace (unshare -m) whose
 * /etc/resolv.conf names a DNS server of this test on a 127.x address: it
 * answers names under slow.test with 127.0.0.1, but holds the questions
 * until the test lets them go. While it holds them, mail for a user of
 * another provider must still become an event; with getaddrinfo on the loop
 * (before) the watcher stood still until the DNS answered. Then the held
 * answer arrives and the slow provider's user is watched and announced too.
 * A name the DNS says does not exist fails that provider's user only.
 *
 * Needs root (port 53, the bind mount), as `make test` has on the machines
 * it runs on; without it the test says so and is skipped.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/integration/fakeimap.h"
#include "tests/integration/harness.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID      "7"
#define UID_FAST "00000000000000000000d001"
#define UID_SLOW "00000000000000000000d002"
#define UID_NONE "00000000000000000000d003"

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc watcher;
static int watcher_up;

/* ---- A DNS server that holds its answers ---- */

static struct {
    pthread_t thread;
    pthread_mutex_t lock;
    int fd;
    int stop;
    int release;   /* answer slow.test names from now on */
    int held_seen; /* questions for slow.test received */
    int held_n;
    struct {
        struct sockaddr_in from;
        unsigned char q[512];
        size_t n;
    } held[32];
    char addr[32];
} dns = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* The question's name in dotted form, and the offset past QTYPE/QCLASS; 0
 * when malformed. */
static size_t question(const unsigned char *q, size_t n, char *name, size_t namelen, int *qtype)
{
    size_t i = 12, o = 0;
    while (i < n && q[i] != 0) {
        size_t l = q[i++];
        if (l > 63 || i + l > n || o + l + 2 > namelen)
            return 0;
        if (o > 0)
            name[o++] = '.';
        memcpy(name + o, q + i, l);
        o += l;
        i += l;
    }
    name[o] = '\0';
    if (i + 5 > n)
        return 0;
    *qtype = q[i + 1] << 8 | q[i + 2];
    return i + 5;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Answers q: an A record 127.0.0.1 for slow.test names (nothing for other
 * types), NXDOMAIN for every other name. */
static void answer(const struct sockaddr_in *to, const unsigned char *q, size_t n)
{
    char name[256];
    int qtype = 0;
    size_t end = question(q, n, name, sizeof name, &qtype);
    if (end == 0)
        return;
    unsigned char r[600];
    memcpy(r, q, end);
    int known = ends_with(name, "slow.test");
    int with_a = known && qtype == 1;
    r[2] = 0x81 | (q[2] & 0x01); /* QR, RD copied */
    r[3] = known ? 0x80 : 0x83;  /* RA; NXDOMAIN for unknown names */
    r[4] = 0, r[5] = 1;          /* one question */
    r[6] = 0, r[7] = with_a ? 1 : 0;
    memset(r + 8, 0, 4);
    size_t m = end;
    if (with_a) {
        const unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1};
        memcpy(r + m, rr, sizeof rr);
        m += sizeof rr;
    }
    sendto(dns.fd, r, m, 0, (const struct sockaddr *)to, sizeof *to);
}

static void *dns_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&dns.lock);
        int stop = dns.stop;
        if (dns.release) {
            for (int i = 0; i < dns.held_n; i++)
                answer(&dns.held[i].from, dns.held[i].q, dns.held[i].n);
            dns.held_n = 0;
        }
        pthread_mutex_unlock(&dns.lock);
        if (stop)
            return NULL;
        struct pollfd pfd = {.fd = dns.fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        unsigned char q[512];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(dns.fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        char name[256];
        int qtype;
        if (n < 12 || question(q, (size_t)n, name, sizeof name, &qtype) == 0)
            continue;
        pthread_mutex_lock(&dns.lock);
        int hold = ends_with(name, "slow.test") && !dns.release;
        if (ends_with(name, "slow.test"))
            dns.held_seen++;
        if (hold && dns.held_n < 32) {
            dns.held[dns.held_n].from = from;
            memcpy(dns.held[dns.held_n].q, q, (size_t)n);
            dns.held[dns.held_n].n = (size_t)n;
            dns.held_n++;
        }
        pthread_mutex_unlock(&dns.lock);
        if (!hold)
            answer(&from, q, (size_t)n);
    }
}

/* Binds UDP port 53 on a 127.x address of this process's own. 0 or -1. */
static int dns_start(void)
{
    dns.fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (dns.fd < 0)
        return -1;
    for (int attempt = 0; attempt < 50; attempt++) {
        unsigned v = ((unsigned)getpid() + (unsigned)attempt * 7919u) % 60000u;
        snprintf(dns.addr, sizeof dns.addr, "127.53.%u.%u", v / 240 % 250 + 1, v % 240 + 1);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
        inet_pton(AF_INET, dns.addr, &a.sin_addr);
        if (bind(dns.fd, (struct sockaddr *)&a, sizeof a) == 0)
            return pthread_create(&dns.thread, NULL, dns_main, NULL) == 0 ? 0 : -1;
    }
    close(dns.fd);
    dns.fd = -1;
    return -1;
}

static void dns_stop(void)
{
    if (dns.fd < 0)
        return;
    pthread_mutex_lock(&dns.lock);
    dns.stop = 1;
    pthread_mutex_unlock(&dns.lock);
    pthread_join(dns.thread, NULL);
    close(dns.fd);
    dns.fd = -1;
}

static int dns_held_seen(void)
{
    pthread_mutex_lock(&dns.lock);
    int n = dns.held_seen;
    pthread_mutex_unlock(&dns.lock);
    return n;
}

static void dns_release(void)
{
    pthread_mutex_lock(&dns.lock);
    dns.release = 1;
    pthread_mutex_unlock(&dns.lock);
}

/* ---- The watcher in a mount namespace that sees our resolv.conf ---- */

static char wrapper[320], resolv[320];

static int write_file(const char *path, const char *text, int mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok && chmod(path, (mode_t)mode) == 0 ? 0 : -1;
}

static int watcher_start(void)
{
    char conf[128];
    snprintf(wrapper, sizeof wrapper, "%s/in-resolv.sh", redis.dir);
    snprintf(resolv, sizeof resolv, "%s/resolv.conf", redis.dir);
    /* One attempt that waits 30 s: the held question is never asked again. */
    snprintf(conf, sizeof conf, "nameserver %s\noptions timeout:30 attempts:1\n", dns.addr);
    if (write_file(resolv, conf, 0644) < 0 ||
        write_file(wrapper,
                   "#!/bin/sh\n"
                   "mount --bind \"$1\" /etc/resolv.conf || exit 97\n"
                   "shift\n"
                   "exec \"$@\"\n",
                   0755) < 0)
        return -1;
    /* The harness puts TEST_PREFIX before the binary (valgrind, under
     * `make valgrind`); the namespace goes before that. */
    const char *old = getenv("TEST_PREFIX");
    char *saved = old != NULL ? strdup(old) : NULL;
    char prefix[1024];
    snprintf(prefix, sizeof prefix, "unshare -m %s %s %s", wrapper, resolv, saved ? saved : "");
    setenv("TEST_PREFIX", prefix, 1);
    const char *env[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=50", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=200",
                         NULL};
    int rc = harness_node_start(&watcher, &redis, "superimap-watcher", "w1", env);
    if (saved != NULL)
        setenv("TEST_PREFIX", saved, 1);
    else
        unsetenv("TEST_PREFIX");
    free(saved);
    watcher_up = rc == 0;
    return rc;
}

/* ---- Suite ---- */

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=4", NULL};
    return fx_suite_start(&redis, &srv, 0, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    dns_stop();
    return fx_suite_stop(&redis, &srv);
}

static int teardown(void **state)
{
    (void)state;
    if (watcher_up)
        harness_proc_stop(&watcher);
    watcher_up = 0;
    return 0;
}

static uint32_t append(const char *login, const char *subject)
{
    char msg[256];
    int n = snprintf(msg, sizeof msg,
                     "From: a@example.org\r\nTo: %s@example.org\r\nSubject: %s\r\n\r\nhi\r\n",
                     login, subject);
    uint32_t uid = 0;
    assert_int_equal(fakeimap_append(&srv, login, msg, (size_t)n, &uid), 0);
    return uid;
}

static void test_slow_dns_of_one_provider_does_not_stall_the_others(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: needs root for UDP port 53 and a private /etc/resolv.conf\n");
        skip();
    }
    assert_int_equal(dns_start(), 0);
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_int_equal(fx_provider(&redis, "fast", host, port, "none"), 0);
    assert_int_equal(fx_provider(&redis, "slow", "imap.slow.test", port, "none"), 0);
    assert_int_equal(fx_provider(&redis, "gone", "imap.gone.test", port, "none"), 0);
    assert_int_equal(fx_user(&redis, UID_FAST, PID, "fast", "t1", "user1", "pass1"), 0);
    assert_int_equal(watcher_start(), 0);
    assert_int_equal(fx_wait_user_field(&redis, UID_FAST, "state", "watching", 20000), 0);

    /* The slow provider's first user: its provider is loaded, its host
     * asked for, and the DNS holds the question. */
    assert_int_equal(fx_user(&redis, UID_SLOW, PID, "slow", "t2", "user2", "pass2"), 0);
    long long deadline = harness_now_ms() + 20000;
    while (dns_held_seen() == 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_true(dns_held_seen() > 0);

    /* Mail for the other provider's user is announced meanwhile. */
    append("user1", "while the DNS holds");
    assert_int_equal(fx_wait_ready(&redis, UID_FAST, PID, 1, 15000), 0);
    char st[64];
    fx_user_field(&redis, UID_SLOW, "state", st, sizeof st);
    assert_string_not_equal(st, "watching");

    /* The answer arrives: the slow provider's user is watched too. */
    dns_release();
    assert_int_equal(fx_wait_user_field(&redis, UID_SLOW, "state", "watching", 20000), 0);
    append("user2", "after the answer");
    assert_int_equal(fx_wait_ready(&redis, UID_SLOW, PID, 1, 15000), 0);

    /* A name that does not exist fails its provider's user, not the rest. */
    assert_int_equal(fx_user(&redis, UID_NONE, PID, "gone", "t3", "user3", "pass3"), 0);
    assert_int_equal(harness_wait_log(&watcher, "code=gone host=imap.gone.test err=", 20000), 0);
    append("user1", "after a failed lookup");
    assert_int_equal(fx_wait_ready(&redis, UID_FAST, PID, 2, 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_slow_dns_of_one_provider_does_not_stall_the_others,
                                  teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
