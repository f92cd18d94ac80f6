/*
 * tests/integration/system: a whole superimap fleet for end-to-end tests,
 * driven only through its public interfaces.
 *
 * sys_start() starts, each its own and stopped by PID: a private
 * redis-server with AOF on (so a test can kill and restart it without losing
 * data), a private Dovecot (dovecot.h) and, when asked, superimap-fake-imapd
 * (fakeimap.h), a webhook receiver (receiver.h, signatures verified, bodies
 * kept), one superimap-api, N watchers and M dispatchers. Then, through the
 * admin and partner APIs only, it creates a provider per IMAP server, a
 * partner whose webhook URLs point at the receiver, and that partner's
 * connection to each provider. Users are added with sys_add_user() (an IMAP
 * login on the server, the user created through the partner API, then waited
 * for until the API shows it "watching"); mail is delivered into the IMAP
 * server (doveadm save, or fake-imapd's APPEND) and remembered with its exact
 * bytes, SHA-1 and delivery time.
 *
 * Every webhook the receiver gets is checked as it is read (sys_poll(), which
 * every wait calls): both signatures valid (Standard Webhooks and the body's
 * `signature`, verified by the receiver independently of our signing code),
 * webhook-id equal to the body's id, a fresh timestamp; for new_mail, the
 * mail is found from its Message-ID and sha1 (= SHA-1 of the delivered bytes,
 * computed here with OpenSSL), rfc822, user_tag, imap_provider_code, subject,
 * from mailbox and host, message_id and size must match what was delivered.
 * A failed check counts in s->bad with the first reason in s->why; nothing
 * aborts, so a test asserts sys_report() == 0 (or s->bad == 0) itself.
 *
 * Receiver paths: new_mail goes to /hook/sys/new_mail (answering rule
 * SYS_HOOK_MAIL: a test may make it fail with receiver_set_rule()),
 * user_connected, user_disconnected and user_reauth_required (sent to the
 * user-disconnected URL: the partner has no reauth URL) to /hook/sys-u/...
 * (SYS_HOOK_USER, always 200 unless a test says otherwise). With
 * opts.oauth2, users of SYS_OAUTH2 connect in a browser (browser.h) at the
 * test provider s->idp. Tests must never call
 * receiver_clear() (the fixture reads requests by index).
 *
 * Nodes are started with harness_node_start() (logs in the Redis directory,
 * <node id>.log; a restart keeps the previous log as <node id>.log.1), so
 * harness_stop_all() in a teardown kills whatever is left. Deadlines are
 * multiplied by 4 under a TEST_PREFIX (valgrind).
 *
 * Single-threaded: call everything from the test's thread.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_SYSTEM_H
#define TESTS_INTEGRATION_SYSTEM_H

#include <stddef.h>

#include "tests/integration/browser.h"
#include "tests/integration/dovecot.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/fakeoauth.h"
#include "tests/integration/harness.h"
#include "tests/integration/receiver.h"
#include "tests/integration/test_api_client.h"

#define SYS_MAX_NODES     8                   /* watchers, and dispatchers, at most */
#define SYS_MAX_CONNS     8                   /* connections of the partner */
#define SYS_DOVECOT       "DOVECOT"           /* provider and connection code of Dovecot */
#define SYS_FAKE          "FAKE"              /* ... of fake-imapd */
#define SYS_OAUTH2        "OAUTH"             /* ... of Dovecot behind the test OAuth2 provider */
#define SYS_OAUTH2_CLIENT "sys-client"        /* the connection's OAuth2 client */
#define SYS_OAUTH2_SECRET "sys-client-secret" /* ... and its secret */
#define SYS_HOOK_MAIL     "sys"               /* receiver pid of new_mail webhooks */
#define SYS_HOOK_USER     "sys-u"             /* receiver pid of user_connected/_disconnected */

/* What sys_start() starts. Zero means the default. */
struct sys_opts {
    int watchers;      /* 0: 1 (0 to SYS_MAX_NODES; -1: none) */
    int dispatchers;   /* 0: 1 (-1: none) */
    int dovecot_users; /* Dovecot logins user1..userN; 0: 16; -1: no Dovecot */
    int fake_imapd;    /* 1: start fake-imapd too, with connection SYS_FAKE */
    int tls;           /* 1: the SYS_DOVECOT provider is implicit TLS (CA given) */
    /* 1: also superimap-fake-oauth2d (s->idp, client SYS_OAUTH2_CLIENT),
     * Dovecot's oauth2 passdb validating tokens there, the api's
     * SUPERIMAP_PUBLIC_URL BROWSER_PUBLIC (browser.h), loopback allowed to
     * the api's and watchers' token calls, and connection SYS_OAUTH2. */
    int oauth2;
    int mta; /* 1: Dovecot also listens for an MTA (dovecot_start_mta(): LMTP, auth) */
    const char *retry_schedule; /* the partner's, e.g. "1,1,2"; NULL: the product's */
    int webhook_concurrency;    /* the partner's; 0: the product's */
    /* Extra "NAME=value" environment per role, NULL-terminated, may be NULL;
     * they replace the fixture's defaults. Borrowed until sys_stop(). */
    const char *const *api_env;
    const char *const *watcher_env;    /* defaults: IMAP backoff 100..1000 ms */
    const char *const *dispatcher_env; /* defaults: SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1 */
    /* The nodes' SUPERIMAP_REDIS_URL (a redis+sentinel:// group the test
     * runs) instead of a redis-server of the fixture's own; borrowed.
     * sys_kill_redis() and sys_restart_redis() then do nothing. */
    const char *redis_url;
};

/* One of our processes. */
struct sys_node {
    struct proc p;  /* PID, HTTP port (metrics, readyz), log */
    char id[24];    /* SUPERIMAP_NODE_ID: api, w1.., d1.. */
    int is_running; /* started and not yet seen to exit */
};

/* A connection of the partner (a provider in front of one IMAP server). */
struct sys_conn {
    char code[32];
    int on_fake; /* 1: fake-imapd, 0: Dovecot */
    int oauth2;  /* 1: SYS_OAUTH2 (users connect through their connect_url) */
};

/* A user of the partner. */
struct sys_user {
    char tag[64];
    char code[32];  /* its connection */
    char login[32]; /* IMAP login (user<N>), password pass<N>; on SYS_OAUTH2 the
                     * mailbox user<N>@example.com to consent as */
    int on_fake;
};

/* A delivered message, and what the receiver said about it. */
struct sys_mail {
    char tag[64], code[32];
    char subject[128], from_mailbox[32], from_host[64], message_id[128];
    char sha1[41];    /* hex SHA-1 of raw (OpenSSL) */
    char mailbox[64]; /* where it was delivered; "" for INBOX (no "mailbox" in the body) */
    char *raw;        /* the exact bytes delivered */
    size_t len;
    long long delivered_us; /* CLOCK_MONOTONIC when the delivery returned */
    int attempts;           /* new_mail webhooks about it, any answer */
    int announced;          /* ... answered 2xx (redeliveries included) */
    int other_ids;          /* 2xx ones under another event id than the first: duplicates */
    char id[160];           /* event id of the first 2xx one */
    long long uid;          /* its IMAP UID as that webhook said */
    long long first_us;     /* receipt of that webhook (receiver's CLOCK_MONOTONIC) */
};

/* One webhook request as the fixture read it. */
struct sys_hook {
    char event[32], tag[64], id[160];
    int status;   /* what the receiver answered (0: hung) */
    long mail;    /* index in mails (new_mail), or -1 */
    long long us; /* receipt, CLOCK_MONOTONIC microseconds */
};

/* Totals of sys_report(). */
struct sys_report {
    int requests;    /* webhook requests received */
    int mail_hooks;  /* new_mail requests answered 2xx */
    int announced;   /* delivered mails announced at least once */
    int redelivered; /* 2xx new_mail requests repeating an announced event id */
    int duplicates;  /* mails announced under more than one event id */
    int unknown;     /* new_mail webhooks matching no delivered mail */
    int bad;         /* webhooks failing a check (first reason in s->why) */
};

/* The fleet. Transparent so that tests reach the servers (s->fake for
 * faults, s->watcher[i].p.port for metrics); change it only through the
 * functions below. */
struct sys {
    struct sys_opts opts;
    struct redis_srv redis; /* url, dir (every log is there), sock; pid of redis_proc */
    struct proc redis_proc;
    struct dovecot dv;
    int has_dovecot;
    struct fakeimap fake;
    int has_fake;
    struct fakeoauth idp;
    int has_idp;
    struct receiver *rx;
    struct sys_node api;
    struct sys_node watcher[SYS_MAX_NODES];
    int nwatchers;
    struct sys_node dispatcher[SYS_MAX_NODES];
    int ndispatchers;
    long long partner_id;
    char api_key[128];
    char whsec[128];
    struct sys_conn conns[SYS_MAX_CONNS];
    int nconns;
    int next_dv_login, next_fake_login;
    char nonce[24]; /* in every Message-ID, so no other mail is taken for ours */
    struct sys_mail *mails;
    size_t nmails, capmails;
    struct sys_hook *hooks;
    size_t nhooks, caphooks;
    int bad;
    char why[512];
    int skipped; /* sys_start_dovecot() found no usable Dovecot */
    char skip_why[128];
};

/* Deadline ms, times 4 under a TEST_PREFIX. */
int sys_ms(int ms);

/*
 * Starts the fleet described by o (NULL: all defaults) and creates the
 * provider, partner and connection of each IMAP server through the APIs.
 * Dovecot needs root (dovecot_available() says; tests skip without it).
 * Returns 0, or -1 with a message on stderr (call sys_stop() anyway).
 */
int sys_start(struct sys *s, const struct sys_opts *o);

/*
 * SIGTERMs every node still running and waits for each (15 s, then
 * SIGKILL), stops fake-imapd, Dovecot, the receiver and Redis, removes the
 * temporary directories, frees everything and calls harness_stop_all().
 * Returns 0 when every node exited 0, else -1 (saying which). Safe to call
 * after a failed sys_start() and twice.
 */
int sys_stop(struct sys *s);

/*
 * sys_start() when Dovecot is usable; otherwise starts nothing, sets
 * s->skipped and s->skip_why and returns 0: SYS_NEED_DOVECOT(s) then skips
 * each test, and sys_stop_started() does nothing.
 */
int sys_start_dovecot(struct sys *s, const struct sys_opts *o);
int sys_stop_started(struct sys *s);
#define SYS_NEED_DOVECOT(s) DOVECOT_NEED(!(s)->skipped, (s)->skip_why)

/* Starts one more watcher (dispatcher), waits until /readyz answers 200.
 * Returns its index, or -1. */
int sys_start_watcher(struct sys *s);
int sys_start_dispatcher(struct sys *s);

/*
 * Sends sig to watcher (dispatcher, api) i. For SIGTERM, SIGINT and SIGKILL
 * it then waits for the exit (15 s) and returns the exit code (128 + signal
 * when killed), or -1 when it did not exit; for any other signal (SIGSTOP,
 * SIGCONT, SIGHUP) it returns 0 at once.
 */
int sys_kill_watcher(struct sys *s, int i, int sig);
int sys_kill_dispatcher(struct sys *s, int i, int sig);
int sys_kill_api(struct sys *s, int sig);

/* Starts watcher (dispatcher, api) i again with the same node id and
 * environment, after it exited; waits for /readyz. 0 or -1. */
int sys_restart_watcher(struct sys *s, int i);
int sys_restart_dispatcher(struct sys *s, int i);
int sys_restart_api(struct sys *s);

/* Stops redis-server (SIGKILL when hard, else SIGTERM) and waits for it; the
 * nodes see Redis go away. Its data stays (AOF). */
void sys_kill_redis(struct sys *s, int hard);

/* Starts redis-server again on the same socket and data; waits for PING.
 * 0 or -1. */
int sys_restart_redis(struct sys *s);

/* Creates a provider named code in front of Dovecot (on_fake 0) or
 * fake-imapd (1), through the admin API, and the partner's connection to it.
 * 0 or -1. */
int sys_add_connection(struct sys *s, const char *code, int on_fake);

/* Creates a user with tag on connection code through the partner API,
 * taking the next free IMAP login of that connection's server; does not
 * wait. Fills u. 0 or -1. On SYS_OAUTH2 the user has no credentials: it is
 * watched once it has consented through its connect_url. */
int sys_create_user(struct sys *s, const char *code, const char *tag, struct sys_user *u);

/* sys_create_user(), then waits (20 s) until the API shows it "watching". */
int sys_add_user_on(struct sys *s, const char *code, const char *tag, struct sys_user *u);

/* sys_add_user_on() on SYS_DOVECOT, or SYS_FAKE when there is no Dovecot. */
int sys_add_user(struct sys *s, const char *tag, struct sys_user *u);

/* Creates n users on connection code, tagged <prefix>-1 .. <prefix>-<n>, into
 * u[0..n), then waits until every one is "watching" (20 s, plus 10 ms per
 * user): the watchers pick them up together, faster than one by one. 0 or
 * -1. */
int sys_add_users(struct sys *s, const char *code, const char *prefix, int n, struct sys_user *u);

/* GET the user through the partner API into out (api_resp_free() it).
 * Returns the HTTP status. */
int sys_get_user(struct sys *s, const struct sys_user *u, struct api_resp *out);

/* Polls the user's "state" in the API until it is state or ms pass; 0 or -1
 * (saying what it was). */
int sys_wait_user_state(struct sys *s, const struct sys_user *u, const char *state, int ms);

/*
 * Delivers a new message of about body_bytes (0: a short one) into u's
 * INBOX, with a unique Subject, From and Message-ID, CRLF line ends, and
 * remembers it. Returns its index in s->mails, or -1.
 */
long sys_deliver(struct sys *s, const struct sys_user *u, size_t body_bytes);

/* sys_deliver() into u's mailbox (an existing one; "INBOX" is
 * sys_deliver()): its webhook must name it in "mailbox". */
long sys_deliver_to(struct sys *s, const struct sys_user *u, const char *mailbox,
                    size_t body_bytes);

/* Reads and checks the webhooks received since the last call. Returns the
 * number of requests read. */
int sys_poll(struct sys *s);

/* Polls until at least n delivered mails have been announced (2xx) or ms
 * pass. Returns how many are announced. */
size_t sys_wait_announced(struct sys *s, size_t n, int ms);

/* Polls until mail i has been announced or ms pass; 0 or -1. */
int sys_wait_mail(struct sys *s, long i, int ms);

/* Number of webhooks read (call sys_poll() first) of event (NULL: any) and
 * tag (NULL: any); answered 2xx only when ok_only. */
int sys_count_hooks(const struct sys *s, const char *event, const char *tag, int ok_only);

/* Polls until sys_count_hooks(s, event, tag, ok_only) >= n or ms pass;
 * returns the count. */
int sys_wait_hooks(struct sys *s, const char *event, const char *tag, int ok_only, int n, int ms);

/* sys_poll(), then the totals in r. Returns 0 when no webhook failed a
 * check, else -1 (s->why says the first failure). */
int sys_report(struct sys *s, struct sys_report *r);

/* Latency from delivery to the first 2xx webhook of the mails [from, to)
 * that were announced, in ms: p50, p99 and max (any may be NULL). Returns
 * how many mails it covered. */
size_t sys_latency(const struct sys *s, size_t from, size_t to, double *p50, double *p99,
                   double *max);

/* Steady mail for sys_pace_step(). */
struct sys_pace {
    const struct sys_user *users; /* round robin over users[0..n) */
    int n;
    int every_ms;     /* one message this often */
    long sent;        /* messages delivered so far */
    long long due_ms; /* monotonic ms of the next one; 0: now */
};

/* Delivers the next message when one is due (bodies of 0, 400 and 800
 * bytes in turn), reads the webhooks that came (sys_poll()) and pauses for a
 * poll interval: call it in a loop while waiting for something. 0, or -1
 * when a delivery failed. */
int sys_pace_step(struct sys *s, struct sys_pace *p);

/* The first receipt (monotonic ms) of a 2xx new_mail webhook of a message
 * delivered at or after t_ms (monotonic ms), or 0 when none yet. */
long long sys_first_webhook_after(const struct sys *s, long long t_ms);

/* Partner API call (x-api-key of the partner) with a JSON body (may be NULL);
 * admin API call (bearer token). out is filled as api_call() does
 * (api_resp_free() it); returns the status. */
int sys_api(struct sys *s, struct api_resp *out, const char *method, const char *path,
            const char *json);
int sys_admin(struct sys *s, struct api_resp *out, const char *method, const char *path,
              const char *json);

/*
 * Waits (ms) until every delivered message is announced, then checks every
 * webhook, that no message was announced under two event ids and no two
 * messages of a user under one UID; prints the raw duplicates (the same id
 * twice, named with scenario) and puts their count in *raw. 0, or -1 with
 * the reason in s->why (the logs dumped when messages are missing).
 */
int sys_check_every_message_once(struct sys *s, int ms, const char *scenario, int *raw);

/* Prints each node's log path and its last lines to stderr (for a failed
 * test). */
void sys_dump_logs(const struct sys *s, int lines);

#endif
