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
 * Several mailboxes, set through the partner API only: a connection told to
 * watch INBOX and \Junk passes it on to its users, whose Junk mail then
 * comes with "mailbox":"Junk" (signed and checked like the rest), while a
 * user with its own ["INBOX"] never hears of its Junk.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"

#include <ctype.h>

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

/* The user's effective mailboxes, as the API shows them, in out. */
static void user_mailboxes(const struct sys_user *u, char *out, size_t outlen)
{
    struct api_resp r = {0};
    assert_int_equal(sys_get_user(&fleet, u, &r), 200);
    yajl_val l = json_get(r.json, "mailboxes");
    assert_true(YAJL_IS_ARRAY(l));
    out[0] = '\0';
    for (size_t i = 0; i < l->u.array.len; i++) {
        size_t n = strlen(out);
        snprintf(out + n, outlen - n, "%s%s", i ? " " : "", YAJL_GET_STRING(l->u.array.values[i]));
    }
    api_resp_free(&r);
}

/* Polls until the watcher has looked at u's mailbox (as configured) once:
 * its cursor is in Redis, so mail delivered from now on is new to it (mail
 * already there when a mailbox is first seen is never announced). */
static int wait_cursor(const struct sys_user *u, const char *mailbox, int ms)
{
    char uid[64], lower[64], got[16];
    size_t i = 0;
    for (; u->tag[i] != '\0' && i + 1 < sizeof lower; i++)
        lower[i] = (char)tolower((unsigned char)u->tag[i]);
    lower[i] = '\0';
    if (harness_redis_get(&fleet.redis, uid, sizeof uid, "GET si:tag:%lld:%s:%s", fleet.partner_id,
                          u->code, lower) < 0 ||
        uid[0] == '\0')
        return -1;
    long long deadline = harness_now_ms() + sys_ms(ms);
    do {
        if (harness_redis_get(&fleet.redis, got, sizeof got, "EVAL %s 0 %s uidvalidity:%s",
                              "local k = redis.call('KEYS', 'si:{*}:cur:' .. ARGV[1]) "
                              "if #k == 0 then return 0 end "
                              "return redis.call('HEXISTS', k[1], ARGV[2])",
                              uid, mailbox) == 0 &&
            strcmp(got, "1") == 0)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    return -1;
}

static void test_junk_of_a_connection_watching_it(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    struct sys_user u[2];
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "junk-user", 2, u), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(dovecot_mailbox(&fleet.dv, u[i].login, "create", "Junk", NULL), 0);
    struct api_resp r = {0};
    char path[256];
    snprintf(path, sizeof path, "/api/v2/connections/%s/users/%s", SYS_DOVECOT, u[0].tag);
    assert_int_equal(sys_api(&fleet, &r, "PATCH", path, "{\"mailboxes\":[\"INBOX\"]}"), 200);
    api_resp_free(&r);
    snprintf(path, sizeof path, "/api/v2/connections/%s", SYS_DOVECOT);
    assert_int_equal(sys_api(&fleet, &r, "PATCH", path, "{\"mailboxes\":[\"INBOX\",\"\\\\Junk\"]}"),
                     200);
    api_resp_free(&r);
    char got[128];
    user_mailboxes(&u[0], got, sizeof got);
    assert_string_equal(got, "INBOX");
    user_mailboxes(&u[1], got, sizeof got);
    assert_string_equal(got, "INBOX \\Junk");

    /* The connection's change reloads u[1], which then looks at Junk. */
    assert_int_equal(wait_cursor(&u[1], "\\Junk", 20000), 0);
    long junk0 = sys_deliver_to(&fleet, &u[0], "Junk", 0);
    long junk1 = sys_deliver_to(&fleet, &u[1], "Junk", 0);
    long inbox0 = sys_deliver(&fleet, &u[0], 0);
    long inbox1 = sys_deliver(&fleet, &u[1], 0);
    assert_true(junk0 >= 0 && junk1 >= 0 && inbox0 >= 0 && inbox1 >= 0);
    assert_int_equal(sys_wait_mail(&fleet, junk1, 30000), 0);
    assert_int_equal(sys_wait_mail(&fleet, inbox1, 15000), 0);
    assert_int_equal(sys_wait_mail(&fleet, inbox0, 15000), 0);
    /* u[0]'s Junk mail came before its INBOX mail, which is announced. */
    assert_int_equal(fleet.mails[junk0].attempts, 0);
    struct sys_report rep;
    if (sys_report(&fleet, &rep) < 0)
        fail_msg("a webhook failed its checks: %s", fleet.why);
    assert_int_equal(rep.duplicates, 0);
    assert_int_equal(rep.unknown, 0);
    assert_int_equal(fleet.mails[junk1].announced, 1);
    assert_non_null(strstr(fleet.mails[junk1].id, ".m"));
    assert_null(strstr(fleet.mails[inbox1].id, ".m"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_message_gives_exactly_one_signed_webhook, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_junk_of_a_connection_watching_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
