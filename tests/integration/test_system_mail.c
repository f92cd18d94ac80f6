/*
 * End to end, new mail: a whole fleet (tests/integration/system.h: Redis,
 * Dovecot over implicit TLS, api, watcher, dispatcher, webhook receiver), set
 * up through the admin and partner APIs only. Three users get 30 messages
 * through Dovecot; exactly 30 new_mail webhooks arrive, one per message, both
 * signatures valid, sha1 the SHA-1 of the delivered bytes, rfc822 those
 * bytes, envelope subject, from and message_id right, no duplicate by
 * webhook-id or by (user_tag, uid); the partner's delivery log in the API
 * shows them delivered. Prints p50/p99 of delivery-to-webhook latency.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"

#define USERS    3
#define MESSAGES 30

static struct sys fleet;

static int setup(void **state)
{
    (void)state;
    const struct sys_opts o = {.tls = 1};
    return sys_start_dovecot(&fleet, &o);
}

static int teardown(void **state)
{
    (void)state;
    return sys_stop_started(&fleet);
}

/* Counts the partner's delivery-log entries of delivered new_mail events. */
static int delivered_in_log(void)
{
    struct api_resp r = {0};
    int n = -1;
    if (sys_api(&fleet, &r, "GET", "/api/v2/events?type=new_mail&status=delivered&limit=500",
                NULL) == 200) {
        openapi_check(&r, "GET", "/api/v2/events");
        yajl_val ev = json_get(r.json, "events");
        n = YAJL_IS_ARRAY(ev) ? (int)ev->u.array.len : -1;
    }
    api_resp_free(&r);
    return n;
}

static void test_every_message_gives_exactly_one_signed_webhook(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    struct sys_user u[USERS];
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "mail-user", USERS, u), 0);
    for (int n = 0; n < MESSAGES; n++)
        assert_int_equal(sys_deliver(&fleet, &u[n % USERS], (size_t)(n % 4) * 700), n);
    if (sys_wait_announced(&fleet, MESSAGES, 30000) < MESSAGES)
        sys_dump_logs(&fleet, 20);
    assert_int_equal(sys_wait_announced(&fleet, MESSAGES, 0), MESSAGES);

    /* One more message per user, after the batch: whatever the batch could
     * still cause (a late duplicate) comes through the same sessions and
     * queue before these are announced. */
    long marker[USERS];
    for (int i = 0; i < USERS; i++)
        assert_true((marker[i] = sys_deliver(&fleet, &u[i], 0)) >= 0);
    for (int i = 0; i < USERS; i++)
        assert_int_equal(sys_wait_mail(&fleet, marker[i], 15000), 0);

    struct sys_report rep;
    if (sys_report(&fleet, &rep) < 0)
        fail_msg("a webhook failed its checks: %s", fleet.why);
    assert_int_equal(rep.unknown, 0);
    assert_int_equal(rep.redelivered, 0);
    assert_int_equal(rep.duplicates, 0);
    assert_int_equal(rep.announced, MESSAGES + USERS);
    assert_int_equal(rep.mail_hooks, MESSAGES + USERS);
    assert_int_equal(sys_count_hooks(&fleet, "new_mail", NULL, 0), MESSAGES + USERS);
    for (int n = 0; n < MESSAGES; n++) {
        assert_int_equal(fleet.mails[n].announced, 1);
        assert_int_equal(fleet.mails[n].attempts, 1);
    }
    /* Within a user, UIDs are distinct (no (user_tag, uid) announced twice). */
    for (size_t a = 0; a < fleet.nmails; a++)
        for (size_t b = a + 1; b < fleet.nmails; b++)
            if (strcmp(fleet.mails[a].tag, fleet.mails[b].tag) == 0)
                assert_true(fleet.mails[a].uid != fleet.mails[b].uid);
    /* Each user was announced as connected once, on creation. */
    for (int i = 0; i < USERS; i++)
        assert_int_equal(sys_wait_hooks(&fleet, "user_connected", u[i].tag, 1, 1, 10000), 1);

    /* The partner sees the same deliveries in its log (written just after
     * the receiver answered, so poll). */
    long long deadline = harness_now_ms() + sys_ms(5000);
    while (delivered_in_log() < MESSAGES + USERS && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(delivered_in_log(), MESSAGES + USERS);

    double p50, p99, max;
    size_t n = sys_latency(&fleet, 0, MESSAGES, &p50, &p99, &max);
    printf("system mail: %zu messages to %d users over Dovecot (TLS), delivery to webhook: "
           "p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
           n, USERS, p50, p99, max);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_message_gives_exactly_one_signed_webhook, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
