/*
 * A drain asked from the admin API (POST /admin/api/fleet/<id>/drain):
 * two superimap-watchers share 40 users on superimap-fake-imapd while mail
 * is appended at a steady rate; the operator drains one. It learns of the
 * request at its next heartbeat (node_heartbeat.lua), stops exactly as on
 * SIGTERM (the same node_stop(): leases handed back, exit 0), the fleet
 * view shows the request and then the node gone, the other watcher takes
 * every user, fake-imapd never sees two sessions of one user, and every
 * message appended before, during and after the move gives exactly one
 * new_mail event; each user's admin page names the watcher holding it. Then a dispatcher is drained the same way. The fleet
 * view's users_total, users per watcher and users_unassigned are checked
 * before and after.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <signal.h>

#include "core/node.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/fleet_mail_fixture.h"
#include "tests/integration/test_watcher_fixture.h"

#define PID    "7"
#define NUSERS 40
#define RATE   20 /* appended messages per second */
#define FLEET  "/admin/api/fleet"
#define DRAIN  "/admin/api/fleet/{id}/drain"

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc w[2], api, disp;
static const char *const names[2] = {"dw1", "dw2"};

static struct fleet_mail fm = {.redis = &redis,
                               .srv = &srv,
                               .w = w,
                               .names = names,
                               .nw = 2,
                               .nusers = NUSERS,
                               .rate = RATE,
                               .pid = PID};

static int suite_setup(void **state)
{
    (void)state;
    const char *extra[] = {"SUPERIMAP_FAKE_USERS=40", NULL};
    return fx_suite_start(&redis, &srv, 0, extra);
}

static int suite_teardown(void **state)
{
    (void)state;
    json_free(openapi_spec);
    openapi_spec = NULL;
    return fx_suite_stop(&redis, &srv);
}

/* The fleet view's node id of role (NULL: absent) from r. */
static yajl_val node_of(const struct api_resp *r, const char *id)
{
    yajl_val nodes = json_get(r->json, "nodes");
    for (size_t i = 0; nodes != NULL && i < nodes->u.array.len; i++)
        if (strcmp(json_get_str(nodes->u.array.values[i], "id"), id) == 0)
            return nodes->u.array.values[i];
    return NULL;
}

static int64_t num(yajl_val v, const char *key)
{
    int64_t n = -1;
    json_get_int(v, key, &n);
    return n;
}

/* GET /admin/api/fleet into *r, checked against the spec. */
static void get_fleet(struct api_resp *r)
{
    admin_json(r, api.port, "GET", FLEET, NULL);
    EXPECT(r, 200, "GET", FLEET);
}

/* Waits (mail arriving) until the fleet view shows every user held by the
 * live watchers ids[0..n) with users shares, none unassigned. */
static void wait_fleet_holds_all(const char *const *ids, int n)
{
    long long deadline = harness_now_ms() + 20000;
    struct api_resp r = {0};
    for (;;) {
        fm_pump(&fm);
        get_fleet(&r);
        int64_t held = 0;
        for (int i = 0; i < n; i++) {
            yajl_val node = node_of(&r, ids[i]);
            held += node != NULL ? num(node, "users") : 0;
        }
        if (num(r.json, "users_total") == NUSERS && held == NUSERS &&
            num(r.json, "users_unassigned") == 0 && num(r.json, "users_over_capacity") == 0)
            break;
        if (harness_now_ms() > deadline)
            fail_msg("fleet view never showed %d users held: %.600s", NUSERS, r.body);
        harness_poll_pause();
    }
    api_resp_free(&r);
}

/* The node holding user u's lease, as the user's admin page says it, into
 * node ("" for null). */
static void lease_of(int u, char node[64])
{
    char uid[32], path[128];
    fm_uid(u, uid);
    snprintf(path, sizeof path, "/admin/api/users/%s", uid);
    struct api_resp r = {0};
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 200, "GET", "/admin/api/users/{uid}");
    const char *lease = json_get_str(json_get(r.json, "user"), "lease");
    snprintf(node, 64, "%s", lease != NULL ? lease : "");
    api_resp_free(&r);
}

/* Asks node id to drain and waits (mail arriving) until the fleet view no
 * longer lists it, p exited 0 as after SIGTERM, and its log says an
 * operator asked. */
static void drain(struct proc *p, const char *id)
{
    struct api_resp r = {0};
    char path[128];
    snprintf(path, sizeof path, "/admin/api/fleet/%s/drain", id);
    admin_json(&r, api.port, "POST", path, NULL);
    EXPECT(&r, 202, "POST", DRAIN);
    assert_true(YAJL_IS_TRUE(json_get(r.json, "drain_requested")));
    /* Seen at once (the request is in si:node:<id>), then draining, then
     * gone: the node acts within a heartbeat and its drain is bounded. */
    long long t0 = harness_now_ms(), deadline = t0 + NODE_HEARTBEAT_MS + 20000;
    int requested = 0, draining = 0;
    yajl_val node;
    do {
        fm_pump(&fm);
        get_fleet(&r);
        node = node_of(&r, id);
        if (node != NULL) {
            requested |= YAJL_IS_TRUE(json_get(node, "drain_requested"));
            draining |= YAJL_IS_TRUE(json_get(node, "draining"));
            harness_poll_pause();
        }
    } while (node != NULL && harness_now_ms() < deadline);
    if (node != NULL)
        fail_msg("%s still in the fleet %lld ms after the request: %.600s", id,
                 harness_now_ms() - t0, r.body);
    assert_true(requested);
    fprintf(stderr, "fleet_drain: %s gone from the fleet %lld ms after the request (draining %s)\n",
            id, harness_now_ms() - t0, draining ? "seen" : "not caught between two polls");
    api_resp_free(&r);
    assert_int_equal(harness_proc_wait(p, 15000), 0);
    assert_int_equal(p->exit_code, 0);
    assert_int_equal(harness_log_contains(p, "drain requested by an operator"), 1);
    assert_int_equal(harness_log_contains(p, "stopping: draining"), 1);
}

static void test_a_drained_watcher_hands_its_users_over_and_no_mail_is_lost(void **state)
{
    (void)state;
    fm_add_users(&fm, &redis, "dr");
    const char *env[] = {"SUPERIMAP_IMAP_LOGINS_PER_SEC=5000", "SUPERIMAP_MAX_MOVES_PER_SEC=500",
                         NULL};
    for (int i = 0; i < 2; i++)
        assert_int_equal(harness_node_start(&w[i], &redis, "superimap-watcher", names[i], env), 0);
    start_api(&api, &redis, "api-drain", NULL);
    /* No mail before every user has its baseline: mail already there when
     * a watcher first looks is old mail, never announced. */
    fm_wait_all_watched(&fm, 30000, 0);
    fm.next_due = harness_now_ms();
    int counts[FM_MAX_W];
    fm_all_watched(&fm, counts);
    assert_true(counts[0] > 0 && counts[1] > 0);
    wait_fleet_holds_all(names, 2);
    char node[64];
    for (int u = 0; u < NUSERS; u++) {
        lease_of(u, node);
        if (strcmp(node, "dw1") != 0 && strcmp(node, "dw2") != 0)
            fail_msg("user %d's page names lease '%s'", u, node);
    }
    fm_pump_for(&fm, 1000);

    drain(&w[0], "dw1");
    /* The other watcher takes them all while mail keeps arriving. */
    fm.w = &w[1];
    fm.names = &names[1];
    fm.nw = 1;
    long long ms = fm_wait_all_watched(&fm, 30000, 1);
    fprintf(stderr, "fleet_drain: dw2 watches all %d users %.1f s after dw1 left\n", NUSERS,
            ms / 1000.0);
    wait_fleet_holds_all(&names[1], 1);
    for (int u = 0; u < NUSERS; u++) {
        lease_of(u, node);
        assert_string_equal(node, "dw2");
    }
    fm_pump_for(&fm, 1000);
    fm_wait_every_message_once(&fm, 20000);
    assert_int_equal(fakeimap_stat(&srv, "max_sessions_per_user"), 1);

    /* A dispatcher (started now: the check above reads the ready lists it
     * would take events from) drains the same way. */
    const char *denv[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", NULL};
    assert_int_equal(harness_node_start(&disp, &redis, "superimap-dispatcher", "dd1", denv), 0);
    assert_int_equal(harness_wait_http(disp.port, "/readyz", 200, 10000), 0);
    drain(&disp, "dd1");
    fm_stop_watchers(&fm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_drained_watcher_hands_its_users_over_and_no_mail_is_lost),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
