/*
 * The admin dashboard (web/admin) in headless Chromium against a real fleet
 * (tests/integration/system.h: Redis, fake-imapd, api, two watchers, a
 * dispatcher, a webhook receiver). This file makes the data through the
 * APIs: six users spread over the two watchers, a delivered mail, three dead
 * letters (the receiver answers 500 with a one-retry schedule), two admin
 * accounts; then tests/browser/admin.mjs signs in and walks every view: the
 * fleet lists the running nodes and the users each watcher holds; a partner
 * is created and its key read once, edited, its key rotated without grace
 * (the old one refused, the new one taken) and its webhook secret with an
 * hour's, then deleted; partners, users and dead letters are paged through
 * (each seen once); a provider is created, edited and deleted, an admin
 * account created, disabled, enabled and deleted; a user found by email
 * shows its state
 * and its delivered event; it is archived and restored; a dead letter's .eml
 * is downloaded and it is replayed, another deleted, a third replayed from
 * its user's page (which shows why it failed); a watcher is drained from the
 * fleet page until the other holds every user; five wrong passwords lock an
 * account (the right one is refused, then taken once the lock ends); a POST
 * without the CSRF token is refused; sign-out ends the session; one
 * screenshot per view.
 *
 * Afterwards it checks what the page cannot prove: the partner, provider
 * and account deleted on the page are gone, the CSRF probe created nothing, the restored
 * user's new mail is announced, the .eml is the dead letter's message, the
 * replayed events reached the receiver under their ids and the deleted one
 * is gone, the drained watcher exited 0 as on SIGTERM and the other holds
 * every lease and announces new mail, the session gone from Redis.
 * SUPERIMAP_DASHBOARD_SHOTS=<dir> (`make screenshots`) copies the
 * screenshots there (docs/dashboard).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"
#include "tests/integration/test_watcher_fixture.h"

#include <signal.h>

#define NUSERS     6
#define DEAD       3 /* dead letters, of u[1..3] */
#define ADMIN      "ops"
#define ADMIN_PASS "correct horse battery staple"
#define LOCKED     "night-shift"
#define LOCK_PASS  "another long passphrase"
#define LOCK_SEC   8 /* SUPERIMAP_ADMIN_LOCKOUT_SEC below */
#define PARTNER    "Dashboard Partner"

static struct sys fleet;
static const char *const api_env[] = {"SUPERIMAP_ADMIN_LOCKOUT_SEC=8",
                                      "SUPERIMAP_ADMIN_SCRYPT_LOG2N=10", NULL};
static const char *const dispatcher_env[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",
                                             "SUPERIMAP_WEBHOOK_TIME_DIVISOR=30", NULL};

static int setup(void **state)
{
    (void)state;
    const struct sys_opts o = {.dovecot_users = -1,
                               .fake_imapd = 1,
                               .watchers = 2,
                               .retry_schedule = "1",
                               .api_env = api_env,
                               .dispatcher_env = dispatcher_env};
    if (fx_init() < 0)
        return -1;
    return sys_start(&fleet, &o);
}

static int teardown(void **state)
{
    (void)state;
    fx_shutdown();
    return sys_stop(&fleet);
}

/* The user's uid (from its connect_url) into out. */
static void uid_of(const struct sys_user *u, char *out, size_t n)
{
    struct api_resp r = {0};
    assert_int_equal(sys_get_user(&fleet, u, &r), 200);
    query_value(jstr(&r, "connect_url"), "user_id", out, n);
    assert_true(out[0] != '\0');
    api_resp_free(&r);
}

/* The index of the watcher holding uid's lease, or -1. */
static int lease_holder(const char *uid)
{
    char v[128] = "";
    harness_redis_get(&fleet.redis, v, sizeof v, "GET si:{%u}:lease:%s", fx_shard(uid), uid);
    for (int i = 0; i < fleet.nwatchers; i++) {
        size_t l = strlen(fleet.watcher[i].id);
        if (strncmp(v, fleet.watcher[i].id, l) == 0 && v[l] == ':')
            return i;
    }
    return -1;
}

/* Polls the admin API until n dead letters are listed; the id of the one
 * of user u[i] into ids[i] for i in [0, n). */
static void wait_dead_letters(const struct sys_user *u, int n, char ids[][160])
{
    long long deadline = harness_now_ms() + sys_ms(30000);
    struct api_resp r = {0};
    for (;;) {
        assert_int_equal(sys_admin(&fleet, &r, "GET", "/admin/api/dead-letters", NULL), 200);
        yajl_val list = json_get(r.json, "dead_letters");
        if (YAJL_IS_ARRAY(list) && list->u.array.len == (size_t)n)
            break;
        if (harness_now_ms() >= deadline) {
            sys_dump_logs(&fleet, 30);
            fail_msg("%d dead letters not listed: %s", n, r.body);
        }
        harness_poll_pause();
    }
    yajl_val list = json_get(r.json, "dead_letters");
    for (int i = 0; i < n; i++) {
        ids[i][0] = '\0';
        for (size_t j = 0; j < list->u.array.len; j++) {
            yajl_val e = json_get(list->u.array.values[j], "event");
            if (strcmp(json_get_str(e, "user_tag"), u[i].tag) == 0)
                snprintf(ids[i], 160, "%s", json_get_str(e, "id"));
        }
        if (ids[i][0] == '\0')
            fail_msg("no dead letter of %s: %s", u[i].tag, r.body);
    }
    api_resp_free(&r);
}

static void create_admin(const char *name, const char *password)
{
    char body[256];
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", name, password);
    struct api_resp r = {0};
    assert_int_equal(sys_admin(&fleet, &r, "POST", "/admin/api/admin-users", body), 201);
    api_resp_free(&r);
}

static int64_t jint(yajl_val o, const char *key)
{
    int64_t v = -1;
    json_get_int(o, key, &v);
    return v;
}

/* The length of JSON array a (0 when a is not one). */
static size_t jlen(yajl_val a)
{
    return YAJL_IS_ARRAY(a) ? a->u.array.len : 0;
}

/* Element i of JSON array a as a string; fails the test when it is not. */
static const char *jat(yajl_val a, size_t i)
{
    if (i >= jlen(a) || !YAJL_IS_STRING(a->u.array.values[i])) {
        fail_msg("no string at [%zu] of a %zu-element array", i, jlen(a));
        return "";
    }
    return a->u.array.values[i]->u.string;
}

/* Checks pages (a JSON array of arrays of ids, as the browser read them)
 * hold at most per_page ids each, n in all, each of want[0..n) once. */
static void check_pages(yajl_val pages, size_t per_page, size_t n, const char *const *want)
{
    size_t total = 0;
    assert_true(jlen(pages) >= 2);
    for (size_t p = 0; p < jlen(pages); p++) {
        assert_true(jlen(pages->u.array.values[p]) <= per_page);
        total += jlen(pages->u.array.values[p]);
    }
    assert_int_equal(total, n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t p = 0; p < jlen(pages); p++)
            for (size_t j = 0; j < jlen(pages->u.array.values[p]); j++)
                found += strcmp(jat(pages->u.array.values[p], j), want[i]) == 0;
        if (found != 1)
            fail_msg("%s is on %d pages, not 1", want[i], found);
    }
}

/* Copies every screenshot the script named to SUPERIMAP_DASHBOARD_SHOTS,
 * when set; checks each is a PNG either way. */
static void keep_shots(yajl_val shots)
{
    const char *to = getenv("SUPERIMAP_DASHBOARD_SHOTS");
    assert_true(jlen(shots) >= 10);
    for (size_t i = 0; i < jlen(shots); i++) {
        const char *name = jat(shots, i);
        char path[600], dst[1200];
        snprintf(path, sizeof path, "%s/%s.png", fleet.redis.dir, name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            fail_msg("screenshot %s is missing", path);
        static unsigned char png[4 << 20];
        size_t n = fread(png, 1, sizeof png, f);
        fclose(f);
        if (n < 1000 || memcmp(png, "\x89PNG\r\n\x1a\n", 8) != 0)
            fail_msg("%s is not a PNG (%zu bytes)", path, n);
        if (to == NULL || *to == '\0')
            continue;
        snprintf(dst, sizeof dst, "%s/%s.png", to, name);
        f = fopen(dst, "wb");
        if (f == NULL || fwrite(png, 1, n, f) != n)
            fail_msg("could not write %s", dst);
        fclose(f);
    }
}

static void test_dashboard_in_headless_chromium(void **state)
{
    (void)state;
    struct sys_user u[NUSERS];
    char uid[NUSERS][64];
    assert_int_equal(sys_add_users(&fleet, SYS_FAKE, "dash", NUSERS, u), 0);
    for (int i = 0; i < NUSERS; i++)
        uid_of(&u[i], uid[i], sizeof uid[i]);

    /* A delivered event for the user page. */
    long delivered = sys_deliver(&fleet, &u[0], 0);
    assert_true(delivered >= 0);
    assert_int_equal(sys_wait_mail(&fleet, delivered, sys_ms(15000)), 0);

    /* u[0] watches a mailbox its server does not have: the user page shows
     * what it watches and what was not found. */
    struct api_resp mr = {0};
    char mpath[256];
    snprintf(mpath, sizeof mpath, "/api/v2/connections/%s/users/%s", SYS_FAKE, u[0].tag);
    assert_int_equal(
        sys_api(&fleet, &mr, "PATCH", mpath, "{\"mailboxes\":[\"INBOX\",\"Nowhere\"]}"), 200);
    api_resp_free(&mr);
    long long mdeadline = harness_now_ms() + sys_ms(20000);
    int found = 0;
    while (!found && harness_now_ms() < mdeadline) {
        assert_int_equal(sys_get_user(&fleet, &u[0], &mr), 200);
        yajl_val miss = json_get(mr.json, "mailboxes_missing");
        found = YAJL_IS_ARRAY(miss) && miss->u.array.len == 1;
        api_resp_free(&mr);
        if (!found)
            harness_poll_pause();
    }
    assert_true(found);

    /* Dead letters of u[1], u[2], u[3] (two attempts answered 500): one
     * replayed from the deliveries page, one deleted there, one replayed
     * from its user's page. */
    const struct receiver_rule fail = {.status = 500}, ok = {.status = 200};
    receiver_set_rule(fleet.rx, SYS_HOOK_MAIL, &fail);
    long dead[DEAD];
    char dead_id[DEAD][160];
    for (int i = 0; i < DEAD; i++) {
        /* One after the other, each dead before the next is sent, so that
         * dead_id[i] is the dead letter of u[1 + i]. */
        dead[i] = sys_deliver(&fleet, &u[1 + i], 0);
        assert_true(dead[i] >= 0);
        wait_dead_letters(&u[1], i + 1, dead_id);
    }
    receiver_set_rule(fleet.rx, SYS_HOOK_MAIL, &ok);

    create_admin(ADMIN, ADMIN_PASS);
    create_admin(LOCKED, LOCK_PASS);

    /* Drain the watcher holding more of the users; the other takes all. */
    int held[2] = {0, 0};
    for (int i = 0; i < NUSERS; i++) {
        int w = lease_holder(uid[i]);
        assert_true(w >= 0);
        held[w]++;
    }
    int drained = held[0] >= held[1] ? 0 : 1, other = 1 - drained;

    static char vars[24][512];
    int nv = 0;
    snprintf(vars[nv++], sizeof vars[0], "BASE=http://127.0.0.1:%d", fleet.api.p.port);
    snprintf(vars[nv++], sizeof vars[0], "SHOTS=%s", fleet.redis.dir);
    snprintf(vars[nv++], sizeof vars[0], "ADMIN_USER=%s", ADMIN);
    snprintf(vars[nv++], sizeof vars[0], "ADMIN_PASSWORD=%s", ADMIN_PASS);
    snprintf(vars[nv++], sizeof vars[0], "LOCK_USER=%s", LOCKED);
    snprintf(vars[nv++], sizeof vars[0], "LOCK_PASSWORD=%s", LOCK_PASS);
    snprintf(vars[nv++], sizeof vars[0], "LOCK_SEC=%d", LOCK_SEC);
    snprintf(vars[nv++], sizeof vars[0], "NODES=%s,%s,%s", fleet.watcher[0].id, fleet.watcher[1].id,
             fleet.dispatcher[0].id);
    snprintf(vars[nv++], sizeof vars[0], "DRAIN_NODE=%s", fleet.watcher[drained].id);
    snprintf(vars[nv++], sizeof vars[0], "OTHER_WATCHER=%s", fleet.watcher[other].id);
    snprintf(vars[nv++], sizeof vars[0], "USERS_TOTAL=%d", NUSERS);
    snprintf(vars[nv++], sizeof vars[0], "USER_UID=%s", uid[0]);
    snprintf(vars[nv++], sizeof vars[0], "USER_EMAIL=%s@example.com", u[0].tag);
    snprintf(vars[nv++], sizeof vars[0], "DEAD_ID=%s", dead_id[0]);
    snprintf(vars[nv++], sizeof vars[0], "DEAD_DELETE_ID=%s", dead_id[1]);
    snprintf(vars[nv++], sizeof vars[0], "DEAD_USER_ID=%s", dead_id[2]);
    snprintf(vars[nv++], sizeof vars[0], "DEAD_USER_UID=%s", uid[3]);
    snprintf(vars[nv++], sizeof vars[0], "PARTNER_NAME=%s", PARTNER);
    snprintf(vars[nv++], sizeof vars[0], "HOOK_URL=http://127.0.0.1:%d/hook/dash/new_mail",
             receiver_port(fleet.rx));
    const char *env[26];
    for (int i = 0; i < nv; i++)
        env[i] = vars[i];
    env[nv] = NULL;
    char *out =
        browser_chromium(fleet.redis.dir, "chromium-admin", "admin.mjs", env, sys_ms(150000));
    char line[16384];
    yajl_val v = NULL;
    char err[128];
    if (browser_output_line(out, "{\"shots\"", line, sizeof line) < 0 ||
        json_parse(line, strlen(line), 8, &v, err, sizeof err) < 0)
        fail_msg("no result from the browser:\n%s", out);
    free(out);
    fprintf(stderr, "browser: %s\n", line);

    /* Signed in, the fleet listed every node and the users each watcher
     * holds a lease for. */
    assert_string_equal(json_get_str(v, "whoami"), ADMIN);
    for (int i = 0; i < 2; i++)
        assert_int_equal(jint(json_get(v, "fleet_users"), fleet.watcher[i].id), held[i]);

    /* The partner's key, read once on the page, worked until it was
     * rotated with no grace; the new one worked; the new webhook secret
     * was shown once with its hour of grace; the partner and the provider
     * made on the page are gone, deleted there, as is the admin account
     * made there. */
    int flag = -1;
    assert_int_equal(json_get_bool(v, "key_shown_again", &flag), 0);
    assert_false(flag);
    assert_int_equal(json_get_bool(v, "partner_found", &flag), 0);
    assert_true(flag);
    assert_string_equal(json_get_str(v, "edited_schedule"), "5,30,120");
    assert_int_equal(jint(v, "old_key_status"), 401);
    assert_int_equal(jint(v, "new_key_status"), 200);
    assert_string_not_equal(json_get_str(v, "rotated_key"), json_get_str(v, "api_key"));
    assert_int_equal(strncmp(json_get_str(v, "rotated_secret"), "whsec_", 6), 0);
    assert_string_not_equal(json_get_str(v, "rotated_secret"), json_get_str(v, "webhook_secret"));
    assert_non_null(strstr(json_get_str(v, "rotated_secret_note"), "works until"));
    assert_int_equal(json_get_bool(v, "partner_deleted_listed", &flag), 0);
    assert_false(flag);
    struct api_resp r = {0};
    char path[256];
    snprintf(path, sizeof path, "/admin/api/partners/%lld", (long long)jint(v, "partner_id"));
    assert_int_equal(sys_admin(&fleet, &r, "GET", path, NULL), 404);
    assert_non_null(strstr(json_get_str(v, "provider_edited"), ":1993"));
    assert_int_equal(sys_admin(&fleet, &r, "GET", "/admin/api/providers/DASHP", NULL), 404);
    assert_int_equal(sys_admin(&fleet, &r, "GET", "/admin/api/admin-users", NULL), 200);
    assert_non_null(strstr(r.body, "\"" ADMIN "\""));
    assert_null(strstr(r.body, "temp-admin"));

    /* The CSRF probe was refused and created nothing. */
    assert_int_equal(jint(v, "csrf_status"), 403);
    assert_string_equal(json_get_str(v, "csrf_code"), "csrf");
    assert_int_equal(sys_admin(&fleet, &r, "GET", "/admin/api/partners?q=csrf", NULL), 200);
    assert_null(strstr(r.body, "csrf-probe"));

    /* The user page: its state, its mailboxes, and its delivered event
     * with the attempt. */
    assert_string_equal(json_get_str(v, "user_state"), "watching");
    assert_string_equal(json_get_str(v, "user_mailboxes"), "INBOX, Nowhere");
    assert_string_equal(json_get_str(v, "user_mailboxes_missing"), "Nowhere");
    yajl_val evs = json_get(v, "user_events");
    int seen = 0;
    for (size_t i = 0; YAJL_IS_ARRAY(evs) && i < evs->u.array.len; i++) {
        yajl_val e = evs->u.array.values[i];
        if (strcmp(json_get_str(e, "id"), fleet.mails[delivered].id) == 0) {
            assert_string_equal(json_get_str(e, "state"), "delivered");
            assert_true(jint(e, "attempts") >= 1);
            seen = 1;
        }
    }
    if (!seen)
        fail_msg("the user page lacks event %s", fleet.mails[delivered].id);

    /* Archived, the page said so; restored at once after (the watcher may
     * read both in one poll), the user is watched again: its new mail is
     * announced. */
    assert_string_equal(json_get_str(v, "archived_state"), "archived");
    assert_int_equal(sys_wait_user_state(&fleet, &u[0], "watching", sys_ms(20000)), 0);
    long again = sys_deliver(&fleet, &u[0], 0);
    assert_true(again >= 0);
    assert_int_equal(sys_wait_mail(&fleet, again, sys_ms(15000)), 0);

    /* Partners, users and dead letters page after page: each once. */
    char pid[2][24];
    snprintf(pid[0], sizeof pid[0], "%lld", fleet.partner_id);
    snprintf(pid[1], sizeof pid[1], "%lld", (long long)jint(v, "partner_id"));
    const char *const pids[] = {pid[0], pid[1]};
    check_pages(json_get(v, "partner_pages"), 1, 2, pids);
    const char *uids[NUSERS];
    for (int i = 0; i < NUSERS; i++)
        uids[i] = uid[i];
    check_pages(json_get(v, "user_pages"), NUSERS - 2, NUSERS, uids);
    const char *const deads[] = {dead_id[0], dead_id[1], dead_id[2]};
    check_pages(json_get(v, "dead_pages"), 2, DEAD, deads);

    /* The .eml is the message delivered; both replays reached the receiver
     * under the dead letters' ids; the deleted one is gone. */
    assert_int_equal(jint(v, "eml_status"), 200);
    assert_non_null(strstr(json_get_str(v, "eml_type"), "message/rfc822"));
    assert_non_null(strstr(json_get_str(v, "eml_disposition"), dead_id[0]));
    assert_string_equal(json_get_str(v, "eml_subject"), fleet.mails[dead[0]].subject);
    assert_string_equal(json_get_str(v, "dead_user_event_state"), "dead");
    /* Its two attempts answered 500 (and, when the URL's circuit opened
     * meanwhile, the attempt it deferred). */
    yajl_val tries = json_get(v, "dead_user_attempts");
    int refused = 0;
    for (size_t i = 0; i < jlen(tries); i++)
        refused += strstr(jat(tries, i), "HTTP 500") != NULL;
    assert_int_equal(refused, 2);
    for (int i = 0; i < DEAD; i += 2) {
        assert_int_equal(sys_wait_mail(&fleet, dead[i], sys_ms(20000)), 0);
        assert_string_equal(fleet.mails[dead[i]].id, dead_id[i]);
    }
    snprintf(path, sizeof path, "/api/v2/events/%s", dead_id[1]);
    assert_int_equal(sys_api(&fleet, &r, "GET", path, NULL), 404);
    sys_poll(&fleet);
    assert_int_equal(fleet.mails[dead[1]].announced, 0);
    assert_true(jint(v, "chart_delivered") >= 1);
    assert_true(jint(v, "chart_mail") >= 2);

    /* The drained watcher exited as on SIGTERM; the other holds every user
     * and announces new mail. */
    if (harness_proc_wait(&fleet.watcher[drained].p, sys_ms(30000)) < 0)
        fail_msg("%s did not exit after its drain", fleet.watcher[drained].id);
    assert_int_equal(sys_kill_watcher(&fleet, drained, SIGTERM), 0);
    for (int i = 0; i < NUSERS; i++)
        assert_int_equal(lease_holder(uid[i]), other);
    long after = sys_deliver(&fleet, &u[NUSERS - 1], 0);
    assert_true(after >= 0);
    assert_int_equal(sys_wait_mail(&fleet, after, sys_ms(15000)), 0);

    /* Lockout: the same words for a wrong password and an unknown user,
     * then the right password refused while locked, taken after. */
    yajl_val wrong = json_get(v, "wrong");
    assert_int_equal(jlen(wrong), 5);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(jat(wrong, i), "Wrong username or password.");
    /* The fifth failure locks at once, and says so. */
    assert_non_null(strstr(jat(wrong, 4), "Too many failed sign-ins"));
    assert_string_equal(json_get_str(v, "unknown_user"), "Wrong username or password.");
    assert_non_null(strstr(json_get_str(v, "locked"), "Too many failed sign-ins"));
    assert_string_equal(json_get_str(v, "locked_path"), "/admin/login");
    int64_t unlocked = jint(v, "unlocked_after_ms");
    assert_true(unlocked >= (LOCK_SEC - 2) * 1000);

    /* Signed out: back at the sign-in page, the session gone. */
    /* The fleet page stopped refreshing once its clock said 11 minutes without
     * input (the one refresh under way at most), and a key press resumed it. */
    int64_t idle_requests = -1;
    assert_int_equal(json_get_int(v, "idle_fleet_requests", &idle_requests), 0);
    assert_true(idle_requests >= 0 && idle_requests <= 1);
    int resumed = 0;
    assert_int_equal(json_get_bool(v, "resumed_on_input", &resumed), 0);
    assert_true(resumed);
    assert_string_equal(json_get_str(v, "after_sign_out"), "/admin/login");
    assert_string_equal(json_get_str(v, "revisit"), "/admin/login");
    assert_int_equal(jint(v, "session_status"), 401);
    char n[32] = "";
    assert_int_equal(
        harness_redis_get(&fleet.redis, n, sizeof n, "SCARD si:admin:" ADMIN ":sessions"), 0);
    assert_string_equal(n, "0");

    keep_shots(json_get(v, "shots"));
    json_free(v);
    api_resp_free(&r);
    struct sys_report rep;
    if (sys_report(&fleet, &rep) != 0)
        fail_msg("%s", fleet.why);
    assert_int_equal(rep.duplicates, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dashboard_in_headless_chromium, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
