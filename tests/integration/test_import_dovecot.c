/*
 * The cut-over, end to end: a Dovecot user whose two old messages the
 * original SuperIMAP already announced is exported (last_uid = 2, its
 * mailbox's UIDVALIDITY) with its partner, provider and connection. One
 * more message arrives between the original's stop and the import (UID 3).
 * The export is imported into a running fleet (tests/integration/system.h:
 * Redis, Dovecot, api, watcher, dispatcher, webhook receiver); the watcher
 * picks the user up from its cursor, with no user_connected webhook. One
 * message delivered after that (UID 4) gives exactly one new_mail webhook,
 * and the one of the gap exactly one too (a new baseline would have lost
 * it); nothing for UIDs 1 and 2. Each body signature verifies with the
 * partner's ORIGINAL API key (receiver.c computes it itself).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"

#include <sys/stat.h>

#include "core/json.h"
#include "tests/integration/import_fixture.h"

#define ORIGINAL_KEY "a1b2c3d4e5f60718293a"
#define TAG          "moved-user"
#define LOGIN        "user3"

static struct sys fleet;

static int setup(void **state)
{
    (void)state;
    const struct sys_opts o = {.dovecot_users = 4};
    return sys_start_dovecot(&fleet, &o);
}

static int teardown(void **state)
{
    (void)state;
    return sys_stop_started(&fleet);
}

static void deliver(const char *subject)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "From: Sender <sender@example.com>\r\nTo: <" LOGIN "@example.com>\r\n"
                     "Subject: %s\r\nMessage-ID: <%s@import.test>\r\n"
                     "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nbody of %s\r\n",
                     subject, subject, subject);
    assert_int_equal(dovecot_deliver(&fleet.dv, LOGIN, msg, (size_t)n), 0);
}

/* Writes the original's export of one partner, provider, connection and
 * user into dir. */
static void write_export(const char *dir, const char *key_file, unsigned long uidvalidity)
{
    int rx = receiver_port(fleet.rx);
    char hook[128], hook_u[128], port[16], validity[24], path[600];
    snprintf(hook, sizeof hook, "http://127.0.0.1:%d/hook/imp/new_mail", rx);
    snprintf(hook_u, sizeof hook_u, "http://127.0.0.1:%d/hook/imp-u/connected", rx);
    snprintf(port, sizeof port, "%d", fleet.dv.port_plain);
    snprintf(validity, sizeof validity, "%lu", uidvalidity);
    char *password = imp_encrypt(dir, key_file, "pass3");
    assert_non_null(password);
    const char *ts = "2015-06-11 13:42:34.5";

    snprintf(path, sizeof path, "%s/partners.csv", dir);
    FILE *f = fopen(path, "w");
    fputs(IMP_PARTNERS_HEADER, f);
    imp_row(f, 11, "7", ORIGINAL_KEY, "Moving partner", hook, hook_u, hook_u, NULL, NULL, "1", ts,
            ts);
    fclose(f);
    snprintf(path, sizeof path, "%s/imap_providers.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_PROVIDERS_HEADER, f);
    imp_row(f, 23, "1", "OLD_DOVECOT", "Dovecot", "Plain::ImapProvider", "1", "127.0.0.1", port,
            "f", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ts,
            ts);
    fclose(f);
    snprintf(path, sizeof path, "%s/partner_connections.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_CONNS_HEADER, f);
    imp_row(f, 9, "1", "7", "1", "1", NULL, NULL, "Plain::PartnerConnection", ts, ts);
    fclose(f);
    snprintf(path, sizeof path, "%s/users.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_USERS_HEADER, f);
    imp_row(f, 19, "1", "1", TAG, LOGIN "@example.com", LOGIN, password, NULL, ts, "f", "f", "2",
            validity, ts, ts, ts, "2", "Plain::User", ts, ts);
    fclose(f);
    free(password);
}

/* The imported user's state through the partner API with the original key. */
static int user_state(char *state, size_t n)
{
    struct api_resp r = {0};
    api_json(&r, fleet.api.p.port, "GET", "/api/v1/connections/OLD_DOVECOT/users/" TAG,
             ORIGINAL_KEY, NULL);
    int status = r.status;
    snprintf(state, n, "%s", status == 200 ? jstr(&r, "state") : "");
    api_resp_free(&r);
    return status;
}

static void test_imported_user_gets_only_new_mail_signed_with_the_original_key(void **state)
{
    (void)state;
    SYS_NEED_DOVECOT(&fleet);
    /* The original announced these two. */
    deliver("old-one");
    deliver("old-two");
    unsigned long uidvalidity = dovecot_uidvalidity(&fleet.dv, LOGIN);
    assert_true(uidvalidity > 0);
    /* The original is stopped; this one arrives before the fleet runs. */
    deliver("in-between");

    char dir[320], key_file[400], out[16384];
    snprintf(dir, sizeof dir, "%s/export", fleet.redis.dir);
    mkdir(dir, 0700);
    snprintf(key_file, sizeof key_file, "%s/old.key", dir);
    assert_int_equal(imp_write_key(key_file, IMP_OLD_KEY), 0);
    write_export(dir, key_file, uidvalidity);
    receiver_add_partner(fleet.rx, "imp", ORIGINAL_KEY,
                         "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL);
    int rc = imp_run(dir, fleet.redis.url, out, sizeof out, "--from", dir, "--old-key-file",
                     key_file, NULL);
    if (rc != 0)
        fail_msg("import exited %d:\n%s", rc, out);
    if (strstr(out, "users: 1 imported, 0 updated, 0 unchanged, 0 refused") == NULL)
        fail_msg("unexpected import report:\n%s", out);

    /* The watcher takes the user over from its cursor. */
    char st[32] = "";
    long long deadline = harness_now_ms() + sys_ms(30000);
    while (harness_now_ms() < deadline &&
           (user_state(st, sizeof st) != 200 || strcmp(st, "watching") != 0))
        harness_poll_pause();
    if (strcmp(st, "watching") != 0) {
        sys_dump_logs(&fleet, 30);
        fail_msg("the imported user is \"%s\", not watching", st);
    }

    deliver("new-after-cut-over");
    if (receiver_wait(fleet.rx, "imp", 2, sys_ms(20000)) < 2) {
        sys_dump_logs(&fleet, 30);
        fail_msg("not two new_mail webhooks for the imported user");
    }
    size_t n = (size_t)receiver_count(fleet.rx, NULL);
    struct receiver_request *q = calloc(n + 1, sizeof *q);
    size_t got = receiver_requests(fleet.rx, q, n);
    int mails = 0, connected = 0, seen[5] = {0};
    for (size_t i = 0; i < got; i++) {
        if (strcmp(q[i].pid, "imp-u") == 0)
            connected++;
        if (strcmp(q[i].pid, "imp") != 0)
            continue;
        mails++;
        assert_string_equal(q[i].event, "new_mail");
        assert_string_equal(q[i].user_tag, TAG);
        assert_true(q[i].body_sig_ok);
        size_t len;
        char *body = receiver_body(fleet.rx, i, &len);
        assert_non_null(body);
        yajl_val root = NULL;
        char err[128];
        assert_int_equal(json_parse(body, len, 64, &root, err, sizeof err), 0);
        int64_t uid = 0;
        assert_int_equal(json_get_int(root, "uid", &uid), 0);
        assert_true(uid == 3 || uid == 4);
        seen[uid]++;
        assert_non_null(strstr(json_get_str(root, "rfc822"),
                               uid == 3 ? "Subject: in-between" : "Subject: new-after-cut-over"));
        json_free(root);
        free(body);
    }
    free(q);
    assert_int_equal(mails, 2);
    assert_int_equal(seen[3], 1);
    assert_int_equal(seen[4], 1);
    assert_int_equal(connected, 0);

    /* Every event of the user in Redis: those two. */
    redisContext *c = harness_redis_connect(&fleet.redis);
    redisReply *keys = redisCommand(c, "KEYS si:*:evt:*");
    assert_int_equal(keys->elements, 2);
    freeReplyObject(keys);
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_imported_user_gets_only_new_mail_signed_with_the_original_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
