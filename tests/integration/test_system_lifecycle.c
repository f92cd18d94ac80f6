/*
 * End to end, a user's lifecycle through the partner API, on a whole fleet
 * (tests/integration/system.h: Redis, Dovecot, api, watcher, dispatcher,
 * webhook receiver):
 *   - a user archived through the API is no longer announced: mail delivered
 *     right after the DELETE answered (while the watcher may still hold the
 *     session: record_mail refuses a user no longer in its shard's users
 *     set) and after the watcher closed its session (within 5 s; the
 *     watchers' session gauge, /metrics) gives no webhook (checked once a
 *     later message to another user has been announced);
 *   - a restored user is watched again from new mail on: mail that arrived
 *     while it was archived is never announced, mail after the restore is;
 *   - a deleted connection's users stop being watched within 5 s (the
 *     watchers' session gauge, /metrics) and their mail is not announced,
 *     while another connection's users go on.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"
#include "tests/integration/test_watcher_fixture.h"

static struct sys fleet;

static int setup(void **state)
{
    (void)state;
    return sys_start_dovecot(&fleet, NULL);
}

static int teardown(void **state)
{
    (void)state;
    return sys_stop_started(&fleet);
}

#define NEED_DOVECOT() SYS_NEED_DOVECOT(&fleet)

/* Delivers one message to u and waits until it is announced. */
static long deliver_announced(const struct sys_user *u)
{
    long m = sys_deliver(&fleet, u, 0);
    assert_true(m >= 0);
    if (sys_wait_mail(&fleet, m, 15000) < 0) {
        sys_dump_logs(&fleet, 30);
        fail_msg("mail to %s was not announced", u->tag);
    }
    return m;
}

/* PUT or DELETE on the user; asserts the status and returns "archived". */
static int user_call(const struct sys_user *u, const char *method, const char *json, int want)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v2/connections/%s/users/%s", u->code, u->tag);
    struct api_resp r = {0};
    int st = sys_api(&fleet, &r, method, path, json);
    if (st != want)
        fail_msg("%s %s: %d, not %d: %s", method, path, st, want, r.body);
    api_resp_free(&r);
    st = sys_get_user(&fleet, u, &r);
    assert_int_equal(st, 200);
    openapi_check(&r, "GET", "/api/v2/connections/{code}/users/{tag}");
    int archived = -1;
    assert_int_equal(json_get_bool(r.json, "archived", &archived), 0);
    api_resp_free(&r);
    return archived;
}

/* Sessions open over every watcher, from their /metrics. */
static int sessions(void)
{
    int n = 0;
    for (int i = 0; i < fleet.nwatchers; i++)
        n += (int)harness_metric(fleet.watcher[i].p.port, "superimap_watcher_sessions");
    return n;
}

/* Polls until the watchers hold n sessions; returns the ms it took from t0,
 * or fails after ms. */
static long long wait_sessions(int n, long long t0, int ms)
{
    long long deadline = t0 + sys_ms(ms);
    while (sessions() != n && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(sessions(), n);
    return harness_now_ms() - t0;
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

static void test_archived_user_is_no_longer_announced(void **state)
{
    (void)state;
    NEED_DOVECOT();
    struct sys_user u[2], a, b;
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "archive", 2, u), 0);
    a = u[0];
    b = u[1];
    deliver_announced(&a);

    assert_int_equal(sessions(), 2);
    long long t0 = harness_now_ms();
    assert_int_equal(user_call(&a, "DELETE", NULL, 204), 1);
    long right_after = sys_deliver(&fleet, &a, 0);
    assert_true(right_after >= 0);
    assert_int_equal(sys_wait_user_state(&fleet, &a, "archived", 1000), 0);
    /* Watchers drop an archived user "within about a second" (README). */
    long long took = wait_sessions(1, t0, 5000);
    printf("system lifecycle: an archived user's session closed %lld ms after DELETE\n", took);
    long after = sys_deliver(&fleet, &a, 0);
    assert_true(after >= 0);
    deliver_announced(&b);
    deliver_announced(&b); /* a second round trip through every node */
    assert_int_equal(fleet.mails[right_after].attempts, 0);
    assert_int_equal(fleet.mails[after].attempts, 0);
    assert_int_equal(sys_count_hooks(&fleet, "new_mail", a.tag, 0), 1);
    assert_clean_report();
}

static void test_restored_user_is_watched_from_new_mail_on(void **state)
{
    (void)state;
    NEED_DOVECOT();
    struct sys_user u[2], a, b;
    assert_int_equal(sys_add_users(&fleet, SYS_DOVECOT, "restore", 2, u), 0);
    a = u[0];
    b = u[1];
    deliver_announced(&a);
    long long t0 = harness_now_ms();
    assert_int_equal(user_call(&a, "PUT", "{\"archived\":true}", 200), 1);
    wait_sessions(1, t0, 5000);
    long while_archived = sys_deliver(&fleet, &a, 0);
    assert_true(while_archived >= 0);
    deliver_announced(&b);

    assert_int_equal(user_call(&a, "PUT", "{\"archived\":false}", 200), 0);
    assert_int_equal(sys_wait_user_state(&fleet, &a, "watching", 15000), 0);
    long restored = deliver_announced(&a);
    deliver_announced(&b);
    assert_int_equal(fleet.mails[restored].announced, 1);
    if (fleet.mails[while_archived].attempts != 0)
        fail_msg("mail delivered while the user was archived was announced after the restore "
                 "(event %s)",
                 fleet.mails[while_archived].id);
    assert_int_equal(sys_count_hooks(&fleet, "new_mail", a.tag, 0), 2);
    assert_clean_report();
}

static void test_deleted_connection_stops_watching_its_users(void **state)
{
    (void)state;
    NEED_DOVECOT();
    assert_int_equal(sys_add_connection(&fleet, "DOVECOT2", 0), 0);
    struct sys_user a1, a2, b;
    assert_int_equal(sys_create_user(&fleet, SYS_DOVECOT, "goes-1", &a1), 0);
    assert_int_equal(sys_create_user(&fleet, SYS_DOVECOT, "goes-2", &a2), 0);
    assert_int_equal(sys_create_user(&fleet, "DOVECOT2", "stays", &b), 0);
    assert_int_equal(sys_wait_user_state(&fleet, &a1, "watching", 20000), 0);
    assert_int_equal(sys_wait_user_state(&fleet, &a2, "watching", 20000), 0);
    assert_int_equal(sys_wait_user_state(&fleet, &b, "watching", 20000), 0);
    deliver_announced(&a1);
    assert_int_equal(sessions(), 3);

    struct api_resp r = {0};
    long long t0 = harness_now_ms();
    assert_int_equal(sys_api(&fleet, &r, "DELETE", "/api/v2/connections/" SYS_DOVECOT, NULL), 204);
    assert_int_equal(sys_api(&fleet, &r, "GET", "/api/v2/connections/" SYS_DOVECOT, NULL), 404);
    assert_int_equal(sys_get_user(&fleet, &a1, &r), 404);
    api_resp_free(&r);
    long long took = wait_sessions(1, t0, 5000);
    printf("system lifecycle: a deleted connection's 2 sessions closed %lld ms after DELETE\n",
           took);

    long gone1 = sys_deliver(&fleet, &a1, 0), gone2 = sys_deliver(&fleet, &a2, 0);
    assert_true(gone1 >= 0 && gone2 >= 0);
    deliver_announced(&b);
    deliver_announced(&b);
    assert_int_equal(fleet.mails[gone1].attempts, 0);
    assert_int_equal(fleet.mails[gone2].attempts, 0);
    assert_clean_report();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_archived_user_is_no_longer_announced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restored_user_is_watched_from_new_mail_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deleted_connection_stops_watching_its_users, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
