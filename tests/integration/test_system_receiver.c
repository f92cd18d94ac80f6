/*
 * End to end, a failing webhook receiver, on a whole fleet
 * (tests/integration/system.h: Redis, Dovecot, api, watcher, dispatcher,
 * webhook receiver):
 *   - the receiver answers 500 for a while (long enough to open the URL's
 *     circuit): once it recovers, every event is delivered, once, with both
 *     signatures fresh and valid, and the failed attempts are in the
 *     partner's delivery log;
 *   - the receiver answers 403: the user is archived, as the API shows, the
 *     event is not sent again and the user's later mail is not announced;
 *   - with a tiny retry schedule, events the receiver keeps refusing become
 *     dead letters, are listed by GET /api/v2/events?status=dead, replayed by
 *     POST /api/v2/events/:id/replay with the same id, and delivered.
 *
 * The partner's retry_schedule makes retries short (1 s, the smallest the
 * API takes); SUPERIMAP_WEBHOOK_TIME_DIVISOR=30 on the dispatcher turns its
 * circuit breaker's 30 s probe period into 1 s (it divides the schedule too).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"

/* Short first retries, then longer ones: an event waits while the URL's
 * circuit is open, but no longer than its whole schedule (about 2 min with
 * the divisor). */
#define LONG_SCHEDULE "1,1,1,1,1,30,300,3600"

static struct sys fleet;
static const char *const dispatcher_env[] = {"SUPERIMAP_WEBHOOK_TIME_DIVISOR=30", NULL};

static int start(const char *schedule)
{
    const struct sys_opts o = {.retry_schedule = schedule, .dispatcher_env = dispatcher_env};
    return sys_start_dovecot(&fleet, &o);
}

static int setup_long_schedule(void **state)
{
    (void)state;
    return start(LONG_SCHEDULE);
}

static int setup_tiny_schedule(void **state)
{
    (void)state;
    return start("1");
}

static int teardown(void **state)
{
    (void)state;
    return sys_stop_started(&fleet);
}

#define NEED_DOVECOT() SYS_NEED_DOVECOT(&fleet)

static void set_mail_status(int status)
{
    const struct receiver_rule rule = {.status = status};
    receiver_set_rule(fleet.rx, SYS_HOOK_MAIL, &rule);
}

/* new_mail webhooks the receiver answered with status. */
static int answered(int status)
{
    sys_poll(&fleet);
    int n = 0;
    for (size_t i = 0; i < fleet.nhooks; i++)
        n += strcmp(fleet.hooks[i].event, "new_mail") == 0 && fleet.hooks[i].status == status;
    return n;
}

static int wait_answered(int status, int n, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    while (answered(status) < n && harness_now_ms() < deadline)
        harness_poll_pause();
    return answered(status);
}

static void assert_clean_report(void)
{
    struct sys_report rep;
    if (sys_report(&fleet, &rep) < 0)
        fail_msg("a webhook failed its checks: %s", fleet.why);
    assert_int_equal(rep.unknown, 0);
    assert_int_equal(rep.redelivered, 0);
    assert_int_equal(rep.duplicates, 0);
}

/* Entries of the partner's delivery log matching query ("status=dead&..."). */
static yajl_val log_entries(struct api_resp *r, const char *query)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v2/events?%s", query);
    assert_int_equal(sys_api(&fleet, r, "GET", path, NULL), 200);
    openapi_check(r, "GET", "/api/v2/events");
    yajl_val ev = json_get(r->json, "events");
    assert_true(YAJL_IS_ARRAY(ev));
    return ev;
}

static void test_events_are_delivered_once_the_receiver_recovers(void **state)
{
    (void)state;
    NEED_DOVECOT();
    struct sys_user u[3];
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "patient", 3, u), 0);
    set_mail_status(500);
    long long t0 = harness_now_ms();
    for (int n = 0; n < 6; n++)
        assert_int_equal(sys_deliver(&fleet, &u[n % 3], 0), n);
    /* The URL fails 5 times in a row (its circuit opens), then its probe
     * fails too. */
    if (wait_answered(500, 7, 20000) < 7) {
        sys_dump_logs(&fleet, 40);
        fail_msg("only %d answers 500", answered(500));
    }
    long long failing_ms = harness_now_ms() - t0;
    int failures = answered(500);
    assert_int_equal(sys_wait_announced(&fleet, 0, 0), 0);

    set_mail_status(200);
    long long t1 = harness_now_ms();
    if (sys_wait_announced(&fleet, 6, 30000) < 6)
        sys_dump_logs(&fleet, 30);
    assert_int_equal(sys_wait_announced(&fleet, 6, 0), 6);
    long long recovery_ms = harness_now_ms() - t1;
    printf("system receiver: %d answers 500 over %lld ms, then all 6 events delivered %lld ms "
           "after the receiver recovered\n",
           failures, failing_ms, recovery_ms);
    int attempts = 0;
    for (int n = 0; n < 6; n++) {
        assert_int_equal(fleet.mails[n].announced, 1);
        attempts += fleet.mails[n].attempts;
    }
    assert_int_equal(attempts, 6 + answered(500)); /* every failure was a retried event */
    assert_clean_report();

    struct api_resp r = {0};
    yajl_val ev = log_entries(&r, "type=new_mail&status=retry&limit=500");
    assert_true(ev->u.array.len >= 6);
    for (size_t i = 0; i < ev->u.array.len; i++) {
        int64_t st = 0;
        assert_int_equal(json_get_int(ev->u.array.values[i], "status", &st), 0);
        assert_int_equal(st, 500);
    }
    api_resp_free(&r);
}

static void test_403_archives_the_user(void **state)
{
    (void)state;
    NEED_DOVECOT();
    struct sys_user u[2];
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "forbidden", 2, u), 0);
    const struct sys_user refused = u[0], other = u[1];
    set_mail_status(403);
    long m = sys_deliver(&fleet, &refused, 0);
    assert_true(m >= 0);
    assert_int_equal(wait_answered(403, 1, 15000), 1);

    /* The API shows the user archived, with the reason. */
    long long deadline = harness_now_ms() + sys_ms(5000);
    struct api_resp r = {0};
    int archived = 0;
    do {
        assert_int_equal(sys_get_user(&fleet, &refused, &r), 200);
        json_get_bool(r.json, "archived", &archived);
        if (!archived)
            harness_poll_pause();
    } while (!archived && harness_now_ms() < deadline);
    assert_true(archived);
    openapi_check(&r, "GET", "/api/v2/connections/{code}/users/{tag}");
    assert_string_equal(jstr(&r, "state"), "archived");
    assert_non_null(strstr(jstr(&r, "last_error"), "403"));
    api_resp_free(&r);
    assert_int_equal(sys_wait_user_state(&fleet, &other, "watching", 1000), 0);

    set_mail_status(200);
    long later = sys_deliver(&fleet, &refused, 0);
    assert_true(later >= 0);
    long ok = sys_deliver(&fleet, &other, 0);
    assert_int_equal(sys_wait_mail(&fleet, ok, 15000), 0);
    assert_int_equal(sys_wait_mail(&fleet, sys_deliver(&fleet, &other, 0), 15000), 0);
    assert_int_equal(fleet.mails[m].attempts, 1); /* a 403 is final */
    assert_int_equal(fleet.mails[later].attempts, 0);

    yajl_val ev = log_entries(&r, "type=new_mail&status=archived");
    assert_int_equal(ev->u.array.len, 1);
    assert_string_equal(json_get_str(ev->u.array.values[0], "user_tag"), refused.tag);
    api_resp_free(&r);
    assert_clean_report();
}

static void test_dead_letters_are_listed_replayed_and_delivered(void **state)
{
    (void)state;
    NEED_DOVECOT();
    /* A schedule the dispatcher would not take is refused by the API (it
     * used to be stored and silently replaced by the default one). */
    char path[512], body[256];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", fleet.partner_id);
    struct api_resp r = {0};
    static const char *const refused[] = {
        "{\"retry_schedule\":\"1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\"}",
        "{\"retry_schedule\":\"1,691200\"}"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sys_admin(&fleet, &r, "PATCH", path, refused[i]), 400);
        openapi_check(&r, "PATCH", "/admin/api/partners/{id}");
        assert_string_equal(json_get_str(json_get(r.json, "error"), "field"), "retry_schedule");
    }
    snprintf(body, sizeof body, "{\"retry_schedule\":\"1\"}");
    assert_int_equal(sys_admin(&fleet, &r, "PATCH", path, body), 200);

    struct sys_user u[2];
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "dead", 2, u), 0);
    set_mail_status(500);
    for (int n = 0; n < 2; n++)
        assert_int_equal(sys_deliver(&fleet, &u[n], 0), n);

    /* Both go dead after their two attempts; the log lists them. */
    yajl_val ev = NULL;
    long long deadline = harness_now_ms() + sys_ms(20000);
    for (;;) {
        ev = log_entries(&r, "type=new_mail&status=dead");
        if (ev->u.array.len >= 2 || harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    if (ev->u.array.len != 2) {
        sys_dump_logs(&fleet, 40);
        fail_msg("%zu dead letters listed: %s", ev->u.array.len, r.body);
    }
    char ids[2][160];
    for (int n = 0; n < 2; n++) {
        yajl_val e = ev->u.array.values[n];
        const char *tag = json_get_str(e, "user_tag");
        int which = strcmp(tag, u[0].tag) == 0 ? 0 : 1;
        assert_string_equal(tag, u[which].tag);
        snprintf(ids[which], sizeof ids[which], "%s", json_get_str(e, "id"));
    }
    api_resp_free(&r);
    sys_poll(&fleet);
    for (int n = 0; n < 2; n++) {
        assert_int_equal(fleet.mails[n].attempts, 2);
        assert_int_equal(fleet.mails[n].announced, 0);
        snprintf(path, sizeof path, "/api/v2/events/%s", ids[n]);
        assert_int_equal(sys_api(&fleet, &r, "GET", path, NULL), 200);
        openapi_check(&r, "GET", "/api/v2/events/{id}");
        assert_string_equal(jstr(&r, "state"), "dead");
    }

    set_mail_status(200);
    for (int n = 0; n < 2; n++) {
        snprintf(path, sizeof path, "/api/v2/events/%s/replay", ids[n]);
        assert_int_equal(sys_api(&fleet, &r, "POST", path, NULL), 202);
        openapi_check(&r, "POST", "/api/v2/events/{id}/replay");
    }
    assert_int_equal(sys_wait_announced(&fleet, 2, 15000), 2);
    for (int n = 0; n < 2; n++) {
        assert_string_equal(fleet.mails[n].id, ids[n]); /* the same id */
        assert_int_equal(fleet.mails[n].attempts, 3);
        snprintf(path, sizeof path, "/api/v2/events/%s", ids[n]);
        deadline = harness_now_ms() + sys_ms(5000);
        const char *st = NULL;
        do {
            assert_int_equal(sys_api(&fleet, &r, "GET", path, NULL), 200);
            st = jstr(&r, "state");
            if (st != NULL && strcmp(st, "delivered") == 0)
                break;
            harness_poll_pause();
        } while (harness_now_ms() < deadline);
        assert_string_equal(st, "delivered");
        /* Only dead letters are replayed. */
        snprintf(path, sizeof path, "/api/v2/events/%s/replay", ids[n]);
        assert_int_equal(sys_api(&fleet, &r, "POST", path, NULL), 409);
    }
    api_resp_free(&r);
    assert_clean_report();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_are_delivered_once_the_receiver_recovers,
                                        setup_long_schedule, teardown),
        cmocka_unit_test_setup_teardown(test_403_archives_the_user, setup_long_schedule, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_are_listed_replayed_and_delivered,
                                        setup_tiny_schedule, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
