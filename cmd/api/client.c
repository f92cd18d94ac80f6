/*
 * cmd/api/client: client addresses and the failed-authentication limit (see
 * client.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/client.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define SLOTS       4096
#define PROXIES_MAX 64

struct net {
    int family;
    unsigned char addr[16];
    int bits;
};

struct slot {
    char addr[CLIENT_ADDR_MAX];
    double tokens;
    int64_t ts; /* ms of the last refill */
};

struct client_guard {
    struct net proxies[PROXIES_MAX];
    int nproxies;
    int burst, per_sec;
    pthread_mutex_t mu;
    struct slot slots[SLOTS];
};

/* "a.b.c.d", "v6", with an optional "/bits". 0 or -1. */
static int parse_net(const char *s, size_t n, struct net *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -1;
    int max = out->family == AF_INET ? 32 : 128;
    out->bits = max;
    if (slash != NULL) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || b < 0 || b > max)
            return -1;
        out->bits = (int)b;
    }
    return 0;
}

static int in_net(const struct net *n, int family, const unsigned char *a)
{
    if (n->family != family)
        return 0;
    int bytes = n->bits / 8, rest = n->bits % 8;
    if (memcmp(a, n->addr, (size_t)bytes) != 0)
        return 0;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return rest == 0 || (a[bytes] & mask) == (n->addr[bytes] & mask);
}

static int is_trusted(const struct client_guard *g, const char *peer)
{
    unsigned char a[16];
    int family = inet_pton(AF_INET, peer, a) == 1    ? AF_INET
                 : inet_pton(AF_INET6, peer, a) == 1 ? AF_INET6
                                                     : 0;
    for (int i = 0; family != 0 && i < g->nproxies; i++)
        if (in_net(&g->proxies[i], family, a))
            return 1;
    return 0;
}

struct client_guard *client_guard_new(const char *trusted, int burst, int per_sec, char *err,
                                      size_t errlen)
{
    struct client_guard *g = xcalloc(1, sizeof *g);
    g->burst = burst;
    g->per_sec = per_sec > 0 ? per_sec : 1;
    pthread_mutex_init(&g->mu, NULL);
    for (const char *p = trusted; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (g->nproxies == PROXIES_MAX || parse_net(p, n, &g->proxies[g->nproxies]) < 0) {
            snprintf(err, errlen,
                     g->nproxies == PROXIES_MAX
                         ? "SUPERIMAP_TRUSTED_PROXIES: at most 64 entries"
                         : "SUPERIMAP_TRUSTED_PROXIES: '%.*s' is not an IP address or CIDR",
                     (int)(n > 60 ? 60 : n), p);
            client_guard_free(g);
            return NULL;
        }
        g->nproxies++;
        p += n;
    }
    return g;
}

void client_guard_free(struct client_guard *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    xfree(g);
}

int client_is_proxy(const struct client_guard *g, const char *peer)
{
    return peer != NULL && is_trusted(g, peer);
}

void client_addr(const struct client_guard *g, const char *peer, const char *xff,
                 char out[CLIENT_ADDR_MAX])
{
    snprintf(out, CLIENT_ADDR_MAX, "%s", peer != NULL ? peer : "");
    if (xff == NULL || peer == NULL || !is_trusted(g, peer))
        return;
    const char *last = strrchr(xff, ',');
    last = last != NULL ? last + 1 : xff;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strcspn(last, " \t");
    char hop[CLIENT_ADDR_MAX];
    unsigned char a[16];
    if (n == 0 || n >= sizeof hop)
        return;
    memcpy(hop, last, n);
    hop[n] = '\0';
    if (inet_pton(AF_INET, hop, a) == 1 || inet_pton(AF_INET6, hop, a) == 1)
        memcpy(out, hop, n + 1);
}

/* FNV-1a of a string. */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static struct slot *slot_of(struct client_guard *g, const char *addr, int64_t now_ms)
{
    struct slot *s = &g->slots[hash_str(addr) % SLOTS];
    if (strcmp(s->addr, addr) != 0) { /* free, or another address's: a full bucket */
        snprintf(s->addr, sizeof s->addr, "%s", addr);
        s->tokens = g->burst;
        s->ts = now_ms;
    }
    s->tokens += (double)(now_ms - s->ts) * g->per_sec / 1000.0;
    if (s->tokens > g->burst)
        s->tokens = g->burst;
    s->ts = now_ms;
    return s;
}

int64_t client_guard_wait(struct client_guard *g, const char *addr, int64_t now_ms)
{
    if (g->burst <= 0)
        return 0;
    pthread_mutex_lock(&g->mu);
    struct slot *s = slot_of(g, addr, now_ms);
    int64_t wait = s->tokens >= 1.0 ? 0 : (int64_t)((1.0 - s->tokens) * 1000.0 / g->per_sec) + 1;
    pthread_mutex_unlock(&g->mu);
    return wait;
}

void client_guard_failed(struct client_guard *g, const char *addr, int64_t now_ms)
{
    if (g->burst <= 0)
        return;
    pthread_mutex_lock(&g->mu);
    struct slot *s = slot_of(g, addr, now_ms);
    s->tokens -= 1.0;
    pthread_mutex_unlock(&g->mu);
}

/* ---- Gates ---- */

#define GATE_BUCKETS 1024

struct gate_entry {
    struct gate_entry *next;
    int n;
    char key[CLIENT_ADDR_MAX];
};

struct client_gate {
    int per_key, total;
    int in; /* admitted in all */
    pthread_mutex_t mu;
    struct gate_entry *bucket[GATE_BUCKETS];
};

struct client_gate *client_gate_new(int per_key, int total)
{
    struct client_gate *g = xcalloc(1, sizeof *g);
    g->per_key = per_key;
    g->total = total;
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

void client_gate_free(struct client_gate *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < GATE_BUCKETS; i++) {
        while (g->bucket[i] != NULL) {
            struct gate_entry *e = g->bucket[i];
            g->bucket[i] = e->next;
            xfree(e);
        }
    }
    pthread_mutex_destroy(&g->mu);
    xfree(g);
}

/* The link that points at key's entry (or at NULL, where it would go). */
static struct gate_entry **gate_find(struct client_gate *g, const char *key)
{
    struct gate_entry **link = &g->bucket[hash_str(key) % GATE_BUCKETS];
    while (*link != NULL && strcmp((*link)->key, key) != 0)
        link = &(*link)->next;
    return link;
}

int client_gate_enter(struct client_gate *g, const char *key, int force)
{
    pthread_mutex_lock(&g->mu);
    struct gate_entry **link = gate_find(g, key);
    int have = *link != NULL ? (*link)->n : 0;
    int rc = 0;
    if (!force && g->per_key > 0 && have >= g->per_key)
        rc = CLIENT_GATE_KEY_FULL;
    else if (!force && g->total > 0 && g->in >= g->total)
        rc = CLIENT_GATE_FULL;
    if (rc == 0) {
        if (*link == NULL) {
            *link = xcalloc(1, sizeof **link);
            snprintf((*link)->key, sizeof(*link)->key, "%s", key);
        }
        (*link)->n++;
        g->in++;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void client_gate_leave(struct client_gate *g, const char *key)
{
    pthread_mutex_lock(&g->mu);
    struct gate_entry **link = gate_find(g, key);
    struct gate_entry *e = *link;
    if (e != NULL) {
        g->in--;
        if (--e->n == 0) {
            *link = e->next;
            xfree(e);
        }
    }
    pthread_mutex_unlock(&g->mu);
}
