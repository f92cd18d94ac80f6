/*
 * cmd/dispatcher/partners: the dispatcher's cache of partner settings
 * (core/schema.h "Partner fields"), read with HGETALL and decrypted once, so
 * a delivery costs no Redis round trip for them. Entries older than the TTL
 * are refreshed in the background while the old values keep serving; the
 * first load of a partner makes its events wait for it.
 *
 * Each struct partner also carries the dispatcher's per-partner bookkeeping
 * (slots in use, events waiting, shards whose claims skipped it); that part
 * belongs to cmd/dispatcher/job.c.
 *
 * Runs on the loop's thread only.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_DISPATCHER_PARTNERS_H
#define CMD_DISPATCHER_PARTNERS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/webhook.h"

struct crypto_keys;
struct queue;

/* Event types and the URL each uses (webhook_test goes to the new_mail URL;
 * user_reauth_required to its own URL, else to the user_disconnected one). */
enum event_type {
    EVT_NEW_MAIL = 0,
    EVT_USER_CONNECTED,
    EVT_USER_DISCONNECTED,
    EVT_WEBHOOK_TEST,
    EVT_USER_REAUTH_REQUIRED
};
#define PARTNER_URLS       4 /* new_mail, user_connected, user_disconnected, user_reauth_required */
#define PARTNER_URL_REAUTH 3

#define PARTNER_MAX_SCHEDULE        24 /* retry delays a partner may configure */
#define PARTNER_DEFAULT_CONCURRENCY 8

/* Returns the enum event_type of name, or -1. */
int event_type_parse(const char *name);

/* Index into partner.url[] of type t. */
int event_type_url(int t);

struct partner;

/* Index into p->url[] that events of type t go to: event_type_url(t), except
 * user_reauth_required, which falls back to the user_disconnected URL when
 * the partner set no user_reauth_required_webhook_url. */
int partner_event_url(const struct partner *p, int t);

/* "new_mail", "user_connected", "user_disconnected", "user_reauth_required":
 * the prefix of the URL field (<prefix>_webhook_url) and of its flag
 * (<prefix>_webhook_disabled). */
const char *partner_url_prefix(int url);

struct partners;

struct partner {
    char *pid;
    struct partners *ps;

    /* ---- Settings, valid once loaded ---- */
    int loaded;                   /* settings below have been read at least once */
    int missing;                  /* the last read found no partner hash */
    char error[160];              /* why the settings cannot be used ("" when they can) */
    char *url[PARTNER_URLS];      /* "" when that event type is not sent; credentials masked */
    char *send_url[PARTNER_URLS]; /* the URL with its credentials, NULL when it has none */
    char *disabled[PARTNER_URLS]; /* non-empty: turned off after a 410, and why */
    char *api_key;                /* decrypted; signs the body */
    size_t api_key_len;
    unsigned char secret[WEBHOOK_SECRET_MAX]; /* decoded whsec_ key */
    size_t secret_len;
    unsigned char old_secret[WEBHOOK_SECRET_MAX]; /* during a rotation */
    size_t old_secret_len;
    int64_t old_until_ms;                      /* wall ms; the old secret signs until then */
    int64_t schedule_ms[PARTNER_MAX_SCHEDULE]; /* retry delays, unscaled */
    int nschedule;                             /* attempts = nschedule + 1 */
    int concurrency;                           /* webhook_concurrency */

    /* ---- Cache state ---- */
    int loading;
    int64_t loaded_mono;

    /* ---- Dispatcher bookkeeping (job.c) ---- */
    int held;                    /* claimed events not finished */
    int sending;                 /* requests in flight */
    void *wait_head, *wait_tail; /* job.c's jobs waiting for the load or a slot (opaque here) */
    int resuming;                /* a loop is starting waiting events */
    unsigned char *blocked;      /* per shard: a claim skipped us there */
    int nblocked;
    struct partner *busy_prev, *busy_next;
    int in_busy;
};

/* on_loaded runs after every load attempt of p (successful or not), on the
 * loop. ttl_ms: age after which settings are refreshed. */
struct partners *partners_new(struct queue *q, const struct crypto_keys *keys, int64_t ttl_ms,
                              void (*on_loaded)(struct partner *p, void *data), void *data);

/* Frees every partner (wiping secrets). The dispatcher must hold no job.
 * Accepts NULL. */
void partners_free(struct partners *ps);

/* Finds or creates (not loaded) the entry of pid. */
struct partner *partners_get(struct partners *ps, const char *pid);

/* Starts a load of p unless one is in flight; on_loaded will run. Returns 0,
 * or the start error of the Redis call (on_loaded will not run; when p was
 * never loaded, p->error says why). */
int partners_load(struct partners *ps, struct partner *p);

/* 1 when p's settings are older than the TTL. */
int partners_is_stale(const struct partners *ps, const struct partner *p, int64_t now_mono);

/* Calls fn(pid, partner, data) for every cached partner; fn must not add
 * partners. */
void partners_each(struct partners *ps, void (*fn)(const char *pid, void *partner, void *data),
                   void *data);

/* The default retry delays (README, "Retries"), in ms. */
extern const int64_t partners_default_schedule[];
extern const int partners_default_schedule_len;

#endif
