/*
 * Unit tests of cmd/api/admin_store against a private redis-server: the
 * scripts' lockout arithmetic (failures counted for unknown names too, the
 * lock and its end, a success clearing them), dashboard sessions' idle and
 * absolute expiry, and disable and delete ending every session. Times are
 * passed in, so the clock is the test's. The api is not part of
 * libsuperimap.a, so its sources are included here.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd/api/admin_store.c"
#include "cmd/api/rec.c"
#include "core/scripts.h"
#include "tests/unit/redis_fixture.h"

#define T0       1700000000000LL
#define IDLE_MS  (1800 * 1000LL)
#define MAX_MS   (43200 * 1000LL)
#define LOCK_MS  (900 * 1000LL)
#define FAILURES 5
#define HASH \
    "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g="

static struct redis_fixture fx;
static struct rsync *rs;

static int suite_setup(void **state)
{
    (void)state;
    return redis_fixture_start_scripts(&fx, &rs);
}

static int suite_teardown(void **state)
{
    (void)state;
    redis_fixture_stop_scripts(&fx, rs);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rsync_command(rs, "FLUSHALL"));
    return 0;
}

/* A session of lower begun at now with the cookie hash key. */
static int login(const char *lower, const char *key, int64_t now, int64_t *until)
{
    struct admin_new_session s = {.lower = lower,
                                  .hash = HASH,
                                  .key_hex = key,
                                  .csrf = "csrf-token-of-the-session",
                                  .addr = "127.0.0.1",
                                  .idle_ms = IDLE_MS,
                                  .max_ms = MAX_MS};
    return admin_store_login(rs, &s, now, until);
}

static long long pttl(const char *key)
{
    redisReply *r = rsync_command(rs, "PTTL %s", key);
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -3;
    freeReplyObject(r);
    return v;
}

static void test_usernames_are_checked_and_lowered(void **state)
{
    (void)state;
    char lower[ADMIN_NAME_MAX + 1];
    assert_true(admin_name_lower("Ops.Team_1@Example-Org", lower));
    assert_string_equal(lower, "ops.team_1@example-org");
    static const char *const bad[] = {"", "a b", "a/b", "a:b", "é", "a\x1f", "<script>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (admin_name_lower(bad[i], lower))
            fail_msg("accepted '%s'", bad[i]);
    char longest[ADMIN_NAME_MAX + 2];
    memset(longest, 'a', sizeof longest);
    longest[ADMIN_NAME_MAX] = '\0';
    assert_true(admin_name_lower(longest, lower));
    longest[ADMIN_NAME_MAX] = 'a';
    longest[ADMIN_NAME_MAX + 1] = '\0';
    assert_false(admin_name_lower(longest, lower));
    assert_false(admin_password_ok(ADMIN_PASSWORD_MIN - 1));
    assert_true(admin_password_ok(ADMIN_PASSWORD_MIN));
    assert_true(admin_password_ok(ADMIN_PASSWORD_MAX));
    assert_false(admin_password_ok(ADMIN_PASSWORD_MAX + 1));
}

static void test_accounts_are_made_once_per_name_and_listed_without_hashes(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "Alice", HASH, T0), 0);
    assert_int_equal(admin_store_create(rs, "ALICE", HASH, T0 + 1), -SIMAP_ESTATE);
    assert_int_equal(admin_store_create(rs, "bob", HASH, T0 + 2), 0);
    assert_int_equal(admin_store_create(rs, "no spaces", HASH, T0), -SIMAP_EINVAL);
    struct rec a;
    assert_int_equal(admin_store_get(rs, "alice", &a), 0);
    assert_string_equal(rec_get(&a, "username"), "Alice");
    assert_string_equal(rec_get(&a, "hash"), HASH);
    assert_string_equal(rec_get(&a, "disabled"), "0");
    rec_free(&a);
    struct rec_list l;
    assert_int_equal(admin_store_list(rs, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.id[0], "alice");
    assert_int_equal(l.score[0], T0);
    assert_string_equal(l.id[1], "bob");
    for (size_t i = 0; i < l.n; i++)
        assert_string_equal(rec_get(&l.rec[i], "hash"), "");
    rec_list_free(&l);
}

static void test_five_failures_lock_the_name_for_the_lock_time(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "alice", HASH, T0), 0);
    int count;
    int64_t until, t = T0;
    for (int i = 1; i < FAILURES; i++) {
        t += 60 * 1000; /* one a minute: each within the lock time of the last */
        assert_int_equal(admin_store_failed(rs, "alice", t, FAILURES, LOCK_MS, &count, &until), 0);
        assert_int_equal(count, i);
        assert_int_equal(until, 0);
        /* The count is forgotten LOCK_MS after the last failure. */
        long long left = pttl("si:admin_fail:alice");
        assert_true(left > LOCK_MS - 60000 && left <= LOCK_MS);
    }
    assert_int_equal(admin_store_locked_until(rs, "alice", t, &until), 0);
    assert_int_equal(until, 0);
    t += 1000;
    assert_int_equal(admin_store_failed(rs, "alice", t, FAILURES, LOCK_MS, &count, &until), 0);
    assert_int_equal(count, FAILURES);
    assert_int_equal(until, t + LOCK_MS);
    int64_t locked_at = t;
    /* Locked: the right password gets no session, more failures do not
     * make the lock longer. */
    assert_int_equal(login("alice", "aa", t + 1, &until), ADMIN_LOGIN_LOCKED);
    assert_int_equal(until, locked_at + LOCK_MS);
    assert_int_equal(admin_store_failed(rs, "alice", t + 5000, FAILURES, LOCK_MS, &count, &until),
                     0);
    assert_int_equal(count, 0);
    assert_int_equal(until, locked_at + LOCK_MS);
    assert_int_equal(admin_store_locked_until(rs, "alice", locked_at + LOCK_MS - 1, &until), 0);
    assert_int_equal(until, locked_at + LOCK_MS);
    /* The lock's end: the right password works and clears the failures. */
    assert_int_equal(admin_store_locked_until(rs, "alice", locked_at + LOCK_MS, &until), 0);
    assert_int_equal(until, 0);
    assert_int_equal(login("alice", "aa", locked_at + LOCK_MS, &until), ADMIN_LOGIN_OK);
    assert_int_equal(pttl("si:admin_fail:alice"), -2);
    struct rec a;
    assert_int_equal(admin_store_get(rs, "alice", &a), 0);
    assert_int_equal(strtoll(rec_get(&a, "last_failure_at"), NULL, 10), locked_at);
    assert_int_equal(strtoll(rec_get(&a, "last_login_at"), NULL, 10), locked_at + LOCK_MS);
    rec_free(&a);
}

static void test_unknown_names_are_counted_and_locked_alike(void **state)
{
    (void)state;
    int count;
    int64_t until = 0;
    for (int i = 1; i <= FAILURES; i++)
        assert_int_equal(
            admin_store_failed(rs, "nobody", T0 + i, FAILURES, LOCK_MS, &count, &until), 0);
    assert_int_equal(until, T0 + FAILURES + LOCK_MS);
    assert_int_equal(admin_store_locked_until(rs, "nobody", T0 + FAILURES + 1, &until), 0);
    assert_int_equal(until, T0 + FAILURES + LOCK_MS);
    redisReply *r = rsync_command(rs, "EXISTS si:admin:nobody");
    assert_int_equal(r->integer, 0); /* no account made by counting */
    freeReplyObject(r);
}

static void test_a_success_clears_the_failures_before_the_lock(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "alice", HASH, T0), 0);
    int count;
    int64_t until;
    for (int i = 1; i < FAILURES; i++)
        assert_int_equal(admin_store_failed(rs, "alice", T0 + i, FAILURES, LOCK_MS, &count, &until),
                         0);
    assert_int_equal(login("alice", "aa", T0 + 10, &until), ADMIN_LOGIN_OK);
    assert_int_equal(admin_store_failed(rs, "alice", T0 + 11, FAILURES, LOCK_MS, &count, &until),
                     0);
    assert_int_equal(count, 1);
    assert_int_equal(until, 0);
}

static void test_a_session_ends_after_its_idle_time_unless_used(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "alice", HASH, T0), 0);
    int64_t until;
    assert_int_equal(login("alice", "s1", T0, &until), ADMIN_LOGIN_OK);
    long long left = pttl("si:asess:s1");
    assert_true(left > IDLE_MS - 60000 && left <= IDLE_MS);
    struct admin_session s;
    /* Used just before its idle end: renewed from then. */
    int64_t t = T0 + IDLE_MS - 1;
    assert_int_equal(admin_store_touch(rs, "s1", t, IDLE_MS, MAX_MS, &s), 0);
    assert_string_equal(s.lower, "alice");
    assert_string_equal(s.csrf, "csrf-token-of-the-session");
    assert_int_equal(s.created_at, T0);
    assert_int_equal(s.idle_until, t + IDLE_MS);
    assert_int_equal(s.expires_at, T0 + MAX_MS);
    /* Not used for the idle time: gone, and deleted. */
    assert_int_equal(admin_store_touch(rs, "s1", t + IDLE_MS, IDLE_MS, MAX_MS, &s),
                     -SIMAP_ENOTFOUND);
    assert_int_equal(pttl("si:asess:s1"), -2);
    assert_int_equal(admin_store_touch(rs, "s1", t + 1, IDLE_MS, MAX_MS, &s), -SIMAP_ENOTFOUND);
    assert_int_equal(admin_store_touch(rs, "never", T0, IDLE_MS, MAX_MS, &s), -SIMAP_ENOTFOUND);
}

static void test_a_session_ends_at_its_absolute_time_however_busy(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "alice", HASH, T0), 0);
    int64_t until;
    assert_int_equal(login("alice", "s2", T0, &until), ADMIN_LOGIN_OK);
    struct admin_session s;
    int64_t t = T0;
    while (t + IDLE_MS / 2 < T0 + MAX_MS) {
        t += IDLE_MS / 2;
        assert_int_equal(admin_store_touch(rs, "s2", t, IDLE_MS, MAX_MS, &s), 0);
    }
    /* Its idle end never passes the absolute one. */
    assert_true(T0 + MAX_MS - t < IDLE_MS);
    assert_int_equal(s.idle_until, T0 + MAX_MS);
    long long left = pttl("si:asess:s2");
    assert_true(left > 0 && left <= T0 + MAX_MS - t);
    assert_int_equal(admin_store_touch(rs, "s2", T0 + MAX_MS - 1, IDLE_MS, MAX_MS, &s), 0);
    assert_int_equal(admin_store_touch(rs, "s2", T0 + MAX_MS, IDLE_MS, MAX_MS, &s),
                     -SIMAP_ENOTFOUND);
    assert_int_equal(pttl("si:asess:s2"), -2);
}

static void test_disable_and_delete_end_every_session_and_refuse_new_ones(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "alice", HASH, T0), 0);
    int64_t until;
    static const char *const keys[] = {"k1", "k2", "k3"};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(login("alice", keys[i], T0, &until), ADMIN_LOGIN_OK);
    struct admin_session s;
    assert_int_equal(admin_store_change(rs, "alice", "disable", T0 + 1), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(admin_store_touch(rs, keys[i], T0 + 2, IDLE_MS, MAX_MS, &s),
                         -SIMAP_ENOTFOUND);
    assert_int_equal(login("alice", "k4", T0 + 3, &until), ADMIN_LOGIN_DISABLED);
    assert_int_equal(admin_store_touch(rs, "k4", T0 + 4, IDLE_MS, MAX_MS, &s), -SIMAP_ENOTFOUND);
    assert_int_equal(admin_store_change(rs, "alice", "enable", T0 + 5), 0);
    assert_int_equal(login("alice", "k5", T0 + 6, &until), ADMIN_LOGIN_OK);
    assert_int_equal(admin_store_touch(rs, "k5", T0 + 7, IDLE_MS, MAX_MS, &s), 0);
    /* Logout ends one session and leaves the others. */
    assert_int_equal(login("alice", "k6", T0 + 8, &until), ADMIN_LOGIN_OK);
    assert_int_equal(admin_store_logout(rs, "k6", "alice"), 0);
    assert_int_equal(admin_store_touch(rs, "k6", T0 + 9, IDLE_MS, MAX_MS, &s), -SIMAP_ENOTFOUND);
    assert_int_equal(admin_store_touch(rs, "k5", T0 + 9, IDLE_MS, MAX_MS, &s), 0);
    assert_int_equal(admin_store_change(rs, "alice", "delete", T0 + 10), 0);
    assert_int_equal(admin_store_touch(rs, "k5", T0 + 11, IDLE_MS, MAX_MS, &s), -SIMAP_ENOTFOUND);
    assert_int_equal(login("alice", "k7", T0 + 12, &until), ADMIN_LOGIN_MISSING);
    assert_int_equal(admin_store_change(rs, "alice", "delete", T0 + 13), -SIMAP_ENOTFOUND);
    assert_int_equal(admin_store_change(rs, "alice", "disable", T0 + 13), -SIMAP_ENOTFOUND);
    redisReply *r = rsync_command(rs, "EXISTS si:admin:alice si:admin:alice:sessions");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = rsync_command(rs, "ZCARD si:admins");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

static void test_a_password_changed_meanwhile_gets_no_session(void **state)
{
    (void)state;
    assert_int_equal(admin_store_create(rs, "alice", "$scrypt$other", T0), 0);
    int64_t until;
    assert_int_equal(login("alice", "k1", T0, &until), ADMIN_LOGIN_CHANGED);
    struct admin_session s;
    assert_int_equal(admin_store_touch(rs, "k1", T0, IDLE_MS, MAX_MS, &s), -SIMAP_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usernames_are_checked_and_lowered),
        cmocka_unit_test_setup(test_accounts_are_made_once_per_name_and_listed_without_hashes,
                               setup),
        cmocka_unit_test_setup(test_five_failures_lock_the_name_for_the_lock_time, setup),
        cmocka_unit_test_setup(test_unknown_names_are_counted_and_locked_alike, setup),
        cmocka_unit_test_setup(test_a_success_clears_the_failures_before_the_lock, setup),
        cmocka_unit_test_setup(test_a_session_ends_after_its_idle_time_unless_used, setup),
        cmocka_unit_test_setup(test_a_session_ends_at_its_absolute_time_however_busy, setup),
        cmocka_unit_test_setup(test_disable_and_delete_end_every_session_and_refuse_new_ones,
                               setup),
        cmocka_unit_test_setup(test_a_password_changed_meanwhile_gets_no_session, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
