/*
 * End to end, failures while mail keeps arriving, on a whole fleet
 * (tests/integration/system.h: Redis with AOF, Dovecot or, without it,
 * fake-imapd, api, watchers, dispatchers, webhook receiver), driven only
 * through public interfaces (the APIs, IMAP delivery, signals, webhooks):
 *
 *   4. Failover: two watchers and one dispatcher; a watcher and the
 *      dispatcher are killed with SIGKILL while mail keeps arriving (the
 *      receiver answers each webhook after 300 ms, so some are in flight at
 *      the kill); a new dispatcher starts. Every delivered message is
 *      announced, exactly once by webhook-id: no message under two event ids
 *      (the dead watcher's users are taken over from their cursors, never
 *      re-recorded), while the same id twice (a request in flight when the
 *      dispatcher died, sent again when its lease expired) is at-least-once
 *      delivery and only counted and printed. The dispatcher is killed just
 *      after the receiver read a webhook, while its answer is held.
 *   5. Redis restart: Redis (AOF on) is stopped and started again in the
 *      middle of the flow, mail arriving while it is down; every delivered
 *      message is announced, none under two ids.
 *
 * Correctness deadlines are generous (a takeover waits 15 s for the dead
 * watcher's alive keys to expire, by design); timings are printed, never
 * asserted.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>

#include "tests/integration/system.h"

#define USERS         8
#define SEND_EVERY_MS 100   /* one message to the next user this often */
#define TAKEOVER_MS   45000 /* kill to every user announced again */
#define ANNOUNCE_MS   30000 /* the last delivery to every message announced */
#define HOOK_DELAY_MS 100   /* the receiver's answer time */
#define HOOK_TIMEOUT  "SUPERIMAP_WEBHOOK_TIMEOUT_MS=2000" /* lease 4 s */
#define REDIS_DOWN_MS 3000

static struct sys fleet;
static struct sys_user users[USERS];
static struct sys_pace pace;

static const char *const dispatcher_env[] = {HOOK_TIMEOUT,
                                             "SUPERIMAP_WEBHOOK_CONNECT_TIMEOUT_MS=1000", NULL};

static int setup(void **state)
{
    (void)state;
    char why[128];
    int dovecot = dovecot_available(why, sizeof why);
    if (!dovecot)
        fprintf(stderr, "fake-imapd instead of Dovecot: %s\n", why);
    const struct sys_opts o = {.watchers = 2,
                               .dispatchers = 1,
                               .dovecot_users = dovecot ? USERS : -1,
                               .fake_imapd = !dovecot,
                               .dispatcher_env = dispatcher_env};
    pace = (struct sys_pace){.users = users, .n = USERS, .every_ms = SEND_EVERY_MS};
    if (sys_start(&fleet, &o) < 0 ||
        sys_add_users(&fleet, dovecot ? SYS_DOVECOT : SYS_FAKE, "failover", USERS, users) < 0)
        return -1;
    const struct receiver_rule slow = {.delay_ms = HOOK_DELAY_MS};
    receiver_set_rule(fleet.rx, SYS_HOOK_MAIL, &slow);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return sys_stop(&fleet);
}

/* Delivers one message to the next user when one is due (one every
 * SEND_EVERY_MS, round robin), and reads the webhooks that came. */
static void keep_sending(void)
{
    assert_int_equal(sys_pace_step(&fleet, &pace), 0);
}

/* Keeps mail arriving for ms. */
static void send_for(int ms)
{
    long long until = harness_now_ms() + ms;
    while (harness_now_ms() < until)
        keep_sending();
}

/* Keeps mail arriving until every user has had a message delivered at or
 * after mail index from announced, or ms pass. Returns the index of the first
 * message after which that held, or -1. */
static int send_until_all_announced_from(size_t from, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    while (harness_now_ms() < deadline) {
        keep_sending();
        int ok = 0;
        for (int u = 0; u < USERS; u++)
            for (size_t i = from; i < fleet.nmails; i++)
                if (fleet.mails[i].announced > 0 && strcmp(fleet.mails[i].tag, users[u].tag) == 0) {
                    ok++;
                    break;
                }
        if (ok == USERS)
            return 0;
    }
    return -1;
}

/* The longest delivery-to-webhook latency of the messages [from, to). */
static double max_latency(size_t from, size_t to)
{
    double max = 0;
    sys_latency(&fleet, from, to, NULL, NULL, &max);
    return max;
}

static void test_watcher_and_dispatcher_killed_every_message_once(void **state)
{
    (void)state;
    send_for(2000);
    size_t before_kill = fleet.nmails;
    long long killed_ms = harness_now_ms();
    assert_int_equal(sys_kill_watcher(&fleet, 0, SIGKILL), 128 + SIGKILL);
    send_for(1000);
    /* Kill the dispatcher with a webhook in flight: just after the receiver
     * read one (it answers HOOK_DELAY_MS later). */
    int hooks = sys_count_hooks(&fleet, "new_mail", NULL, 0);
    long long deadline = harness_now_ms() + sys_ms(10000);
    while (sys_count_hooks(&fleet, "new_mail", NULL, 0) == hooks && harness_now_ms() < deadline)
        keep_sending();
    assert_int_equal(sys_kill_dispatcher(&fleet, 0, SIGKILL), 128 + SIGKILL);
    send_for(2000);
    size_t at_restart = fleet.nmails;
    assert_true(sys_start_dispatcher(&fleet) >= 0);
    /* Until the survivor has every user (the dead watcher's alive keys
     * expire after 15 s) and the new dispatcher delivers for all of them. */
    if (send_until_all_announced_from(at_restart, TAKEOVER_MS) < 0) {
        sys_dump_logs(&fleet, 30);
        fail_msg("not every user announced again within %d ms of the kills", sys_ms(TAKEOVER_MS));
    }
    long long all_back_ms = harness_now_ms();
    send_for(1000); /* and mail goes on arriving after the takeover */
    size_t sent = fleet.nmails;
    int raw;
    if (sys_check_every_message_once(&fleet, ANNOUNCE_MS, "failover", &raw) < 0)
        fail_msg("%s", fleet.why);

    struct sys_report rep;
    sys_report(&fleet, &rep);
    double p50, p99, max;
    sys_latency(&fleet, 0, sent, &p50, &p99, &max);
    printf("failover: %zu messages to %d users (%zu before the kills), 2 watchers and 1 "
           "dispatcher, watcher w1 and dispatcher d1 killed (SIGKILL), d2 started: %d announced, "
           "%d webhooks answered 2xx, %d raw duplicates (same webhook-id), %d under a second id; "
           "every user announced again %.1f s after the watcher kill; latency p50 %.0f ms, "
           "p99 %.0f ms, max %.0f ms (before the kills max %.0f ms)\n",
           sent, USERS, before_kill, rep.announced, rep.mail_hooks, raw, rep.duplicates,
           (double)(all_back_ms - killed_ms) / 1000.0, p50, p99, max, max_latency(0, before_kill));
}

static void test_redis_restart_loses_nothing(void **state)
{
    (void)state;
    send_for(2000);
    size_t before = fleet.nmails;
    long long down_ms = harness_now_ms();
    sys_kill_redis(&fleet, 0);
    send_for(REDIS_DOWN_MS);
    size_t while_down = fleet.nmails - before;
    if (sys_restart_redis(&fleet) < 0)
        fail_msg("redis-server did not start again");
    long long up_ms = harness_now_ms();
    send_for(2000);
    size_t sent = fleet.nmails;
    int raw;
    if (sys_check_every_message_once(&fleet, ANNOUNCE_MS, "redis restart", &raw) < 0)
        fail_msg("%s", fleet.why);

    struct sys_report rep;
    sys_report(&fleet, &rep);
    double p50, p99, max;
    sys_latency(&fleet, 0, sent, &p50, &p99, &max);
    printf("redis restart: %zu messages to %d users, Redis (AOF) down %.1f s with %zu delivered "
           "meanwhile: %d announced, %d raw duplicates, %d under a second id; latency p50 %.0f "
           "ms, p99 %.0f ms, max %.0f ms (of those delivered while down max %.0f ms)\n",
           sent, USERS, (double)(up_ms - down_ms) / 1000.0, while_down, rep.announced, raw,
           rep.duplicates, p50, p99, max, max_latency(before, before + while_down));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watcher_and_dispatcher_killed_every_message_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_restart_loses_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
