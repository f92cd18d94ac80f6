/*
 * The dashboard's deliveries and charts (/admin/api/stats, /circuits,
 * /queues' partners, the dead letters' .eml and delete) against a real
 * redis-server, superimap-api, superimap-dispatcher, superimap-watcher on
 * superimap-fake-imapd and the test receiver: the per-minute counters count
 * what the watcher recorded and what the dispatcher delivered and failed,
 * a failing receiver's circuit shows open (its URL's credentials masked)
 * then closed, a dead letter's
 * message downloads byte for byte and the letter can be deleted. Every
 * answer is checked against web/openapi.json.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include "core/crypto.h"
#include "core/keys.h"
#include "tests/integration/fakeimap.h"
#include "tests/integration/receiver.h"
#include "tests/integration/test_dispatcher_fixture.h"
#include "tests/integration/test_watcher_fixture.h"
#include "tests/integration/webhook_fixture.h"

static struct redis_srv redis;
static struct fakeimap srv;
static struct proc api;
static redisContext *rc;
static struct receiver *rx;
static char base[64];

static int suite_setup(void **state)
{
    (void)state;
    if (fx_suite_start(&redis, &srv, 0, NULL) < 0)
        return -1;
    rc = harness_redis_connect(&redis);
    if (rc == NULL ||
        harness_node_start(&api, &redis, "superimap-api", "api-deliveries", api_test_env) < 0)
        return -1;
    return harness_wait_http(api.port, "/readyz", 200, 10000);
}

static int suite_teardown(void **state)
{
    (void)state;
    redisFree(rc);
    json_free(openapi_spec);
    openapi_spec = NULL;
    return fx_suite_stop(&redis, &srv);
}

/* The nodes a test started; teardown stops them (the api stays). */
static struct proc *nodes[4];

static int setup(void **state)
{
    (void)state;
    if (fx_suite_reset(&redis, &srv) < 0)
        return -1;
    rx = receiver_start("127.0.0.1", 1, 0);
    if (rx == NULL)
        return -1;
    snprintf(base, sizeof base, "http://127.0.0.1:%d", receiver_port(rx));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        if (nodes[i] != NULL)
            harness_proc_stop(nodes[i]);
        nodes[i] = NULL;
    }
    receiver_stop(rx);
    rx = NULL;
    return 0;
}

static void keep(struct proc *p)
{
    for (int i = 0; i < 4; i++)
        if (nodes[i] == NULL) {
            nodes[i] = p;
            return;
        }
    fail_msg("more than 4 nodes");
}

/* A dispatcher with time divided by divisor (the breaker's 30 s open
 * period becomes 30 s / divisor). */
static void start_dispatcher(struct proc *p, const char *id, const char *divisor)
{
    keep(p);
    dx_start_dispatcher(p, &redis, id, "5000", divisor);
}

static void partner(const char *pid, const char *f1, const char *v1, const char *f2, const char *v2)
{
    dx_partner(rc, rx, base, pid, f1, v1, f2, v2);
}

/* ---- Charts ---- */

struct totals {
    long long mail, delivered, failed;
    int with_latency; /* minutes with p50 and p99 */
};

/* GET /admin/api/stats?minutes=n, checked (n entries, one minute apart,
 * the last one now's minute, p50 <= p99), summed into *t. */
static void stats(int n, struct totals *t)
{
    struct api_resp r = {0};
    char path[64];
    snprintf(path, sizeof path, "/admin/api/stats?minutes=%d", n);
    long long now_min = (long long)time(NULL) / 60;
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 200, "GET", "/admin/api/stats");
    yajl_val m = json_get(r.json, "minutes");
    assert_true(YAJL_IS_ARRAY(m));
    assert_int_equal(m->u.array.len, n);
    memset(t, 0, sizeof *t);
    int64_t prev = 0, v;
    for (int i = 0; i < n; i++) {
        yajl_val e = m->u.array.values[i];
        assert_int_equal(json_get_int(e, "t", &v), 0);
        if (i > 0)
            assert_int_equal(v - prev, 60000);
        prev = v;
        assert_int_equal(json_get_int(e, "mail", &v), 0);
        t->mail += v;
        assert_int_equal(json_get_int(e, "delivered", &v), 0);
        t->delivered += v;
        assert_int_equal(json_get_int(e, "failed", &v), 0);
        t->failed += v;
        yajl_val p50 = json_get(e, "p50_ms"), p99 = json_get(e, "p99_ms");
        if (YAJL_IS_NUMBER(p50)) {
            assert_true(YAJL_IS_NUMBER(p99));
            assert_true(YAJL_GET_DOUBLE(p50) <= YAJL_GET_DOUBLE(p99));
            assert_true(YAJL_GET_DOUBLE(p50) >= 0 && YAJL_GET_DOUBLE(p99) <= 60000);
            t->with_latency++;
        }
    }
    /* The last minute is the api's (Redis') now: this host's, give or take
     * the minute turning between the two readings. */
    long long last = prev / 60000;
    assert_true(last == now_min || last == now_min + 1);
    api_resp_free(&r);
}

/* Mail from a watcher on fake-imapd (partner 9, delivered by the
 * dispatcher), mail enqueued straight (partner 9), and a partner whose
 * receiver answers 500 (partner 8, retries an hour away): the counters add
 * up to exactly what happened, and delivered minutes have a latency. */
static void test_stats_count_mail_deliveries_and_failures(void **state)
{
    (void)state;
    enum { WATCHED = 3, QUEUED = 10, FAILING = 2 };
    partner("9", NULL, NULL, NULL, NULL);
    partner("8", "retry_schedule", "3600", NULL, NULL);
    struct receiver_rule down = {.status = 500};
    receiver_set_rule(rx, "8", &down);
    const char *host;
    int port = fakeimap_port(&srv, 0, 0, &host);
    assert_true(port > 0);
    assert_int_equal(fx_provider(&redis, "fk", host, port, "none"), 0);
    const char *uid = "00000000000000000d000001";
    assert_int_equal(fx_user(&redis, uid, "9", "fk", "user1", "user1", "pass1"), 0);

    struct proc w, d;
    const char *wenv[] = {"SUPERIMAP_IMAP_BACKOFF_MIN_MS=50", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=500",
                          NULL};
    keep(&w);
    assert_int_equal(harness_node_start(&w, &redis, "superimap-watcher", "w-stats", wenv), 0);
    start_dispatcher(&d, "d-stats", "100");
    assert_int_equal(fx_wait_user_field(&redis, uid, "state", "watching", 15000), 0);
    for (int i = 0; i < WATCHED; i++) {
        char m[128];
        int len = snprintf(m, sizeof m, "From: a@example.com\r\nSubject: m%d\r\n\r\nbody\r\n", i);
        uint32_t muid;
        assert_int_equal(fakeimap_append(&srv, "user1", m, (size_t)len, &muid), 0);
    }
    char eid[128], quid[25];
    for (unsigned i = 1; i <= QUEUED; i++) {
        wf_uid(quid, 900 + i);
        assert_int_equal(wf_new_mail(rc, "9", quid, "q", i, 200, eid), 1);
    }
    for (unsigned i = 1; i <= FAILING; i++) {
        wf_uid(quid, 800 + i);
        assert_int_equal(wf_new_mail(rc, "8", quid, "f", i, 200, eid), 1);
    }
    assert_int_equal(receiver_wait(rx, "9", WATCHED + QUEUED, 20000), WATCHED + QUEUED);
    assert_int_equal(receiver_wait(rx, "8", FAILING, 20000), FAILING);

    /* The counters are written after the results: poll for them. */
    struct totals t;
    long long deadline = harness_now_ms() + 10000;
    do {
        stats(10, &t);
        if (t.mail == WATCHED && t.delivered == WATCHED + QUEUED && t.failed == FAILING)
            break;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    printf("stats: mail %lld, delivered %lld, failed %lld over %d minute(s) with a latency\n",
           t.mail, t.delivered, t.failed, t.with_latency);
    assert_int_equal(t.mail, WATCHED);
    assert_int_equal(t.delivered, WATCHED + QUEUED);
    assert_int_equal(t.failed, FAILING);
    assert_true(t.with_latency >= 1);
    /* The hashes expire after 48 h. */
    long long ttl = wf_int(rc, "TTL si:stat:%lld", (long long)time(NULL) / 60);
    assert_true(ttl > 47 * 3600 && ttl <= 48 * 3600);

    struct api_resp r = {0};
    admin_json(&r, api.port, "GET", "/admin/api/stats?minutes=2881", NULL);
    EXPECT(&r, 400, "GET", "/admin/api/stats");
    admin_json(&r, api.port, "GET", "/admin/api/stats?hours=1", NULL);
    EXPECT(&r, 400, "GET", "/admin/api/stats");
    admin_json(&r, api.port, "GET", "/admin/api/stats", NULL);
    EXPECT(&r, 200, "GET", "/admin/api/stats");
    assert_int_equal(json_get(r.json, "minutes")->u.array.len, 360);
    api_resp_free(&r);
}

/* ---- Circuits ---- */

/* The circuit of url in GET /admin/api/circuits: its state into state
 * (32 bytes, "" when absent), the object checked. */
static void circuit(const char *url, char state[32], int64_t *failures, int64_t *until,
                    char node[64])
{
    struct api_resp r = {0};
    admin_json(&r, api.port, "GET", "/admin/api/circuits", NULL);
    EXPECT(&r, 200, "GET", "/admin/api/circuits");
    state[0] = '\0';
    yajl_val l = json_get(r.json, "circuits");
    for (size_t i = 0; i < l->u.array.len; i++) {
        yajl_val c = l->u.array.values[i];
        if (strcmp(json_get_str(c, "url"), url) != 0)
            continue;
        snprintf(state, 32, "%s", json_get_str(c, "state"));
        json_get_int(c, "failures", failures);
        yajl_val u = json_get(c, "until");
        *until = YAJL_IS_INTEGER(u) ? YAJL_GET_INTEGER(u) : 0;
        snprintf(node, 64, "%s", json_get_str(c, "node"));
    }
    api_resp_free(&r);
}

static int wait_circuit(const char *url, const char *want, int64_t *failures, int64_t *until,
                        char node[64])
{
    char state[32];
    long long deadline = harness_now_ms() + 15000;
    do {
        circuit(url, state, failures, until, node);
        if (strcmp(state, want) == 0)
            return 0;
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "circuit of %s is \"%s\", not \"%s\"\n", url, state, want);
    return -1;
}

/* A receiver that answers 500 until the breaker opens: the dashboard shows
 * the URL open (its password masked), by whom and until when; once it answers again the probe
 * closes it and the dashboard shows it closed, kept for an hour. */
static void test_failing_url_shows_open_then_closed(void **state)
{
    (void)state;
    partner("41", "webhook_concurrency", "1", "retry_schedule", "3600");
    struct receiver_rule down = {.status = 500};
    receiver_set_rule(rx, "41", &down);
    /* The URL carries credentials, stored as the api stores them: masked,
     * the userinfo sealed beside it. */
    char uid[25], eid[128], secret_url[160], *url, *sealed;
    snprintf(secret_url, sizeof secret_url, "http://hook:s3cret-pw@127.0.0.1:%d/hook/41/new_mail",
             receiver_port(rx));
    assert_int_equal(
        keys_seal_partner_url(wf_keys(), "41", "new_mail_webhook_url", secret_url, &url, &sealed),
        0);
    assert_non_null(strstr(url, "hook:***@"));
    freeReplyObject(wf_cmd(rc,
                           "HSET si:partner:41 new_mail_webhook_url %s "
                           "new_mail_webhook_url_userinfo %s",
                           url, sealed));
    wf_uid(uid, 4100);
    for (unsigned i = 1; i <= 20; i++)
        assert_int_equal(wf_new_mail(rc, "41", uid, "d", i, 100, eid), 1);
    struct proc d;
    start_dispatcher(&d, "d-circuit", "20"); /* open period 1.5 s */
    int64_t failures = 0, until = 0;
    char node[64];
    assert_int_equal(wait_circuit(url, "open", &failures, &until, node), 0);
    assert_int_equal(receiver_count(rx, "41"), 5); /* sent with the credentials */
    assert_int_equal(failures, 5);
    assert_string_equal(node, "d-circuit");
    assert_true(until > 0);

    struct receiver_rule up = {0};
    receiver_set_rule(rx, "41", &up);
    assert_int_equal(wait_circuit(url, "closed", &failures, &until, node), 0);
    assert_int_equal(failures, 0);
    assert_int_equal(until, 0);
    char sha[CRYPTO_SHA256_HEX_LEN + 1];
    assert_int_equal(crypto_sha256_hex(url, strlen(url), sha), 0);
    long long ttl = wf_int(rc, "PTTL si:circuit:%s", sha);
    assert_true(ttl > 0 && ttl <= 3600000);

    /* An index member whose hash is gone is dropped by the reader. */
    freeReplyObject(wf_cmd(rc, "ZADD si:circuits %lld %s", 1LL, "00gone"));
    struct api_resp r = {0};
    admin_json(&r, api.port, "GET", "/admin/api/circuits?limit=1000", NULL);
    EXPECT(&r, 200, "GET", "/admin/api/circuits");
    assert_int_equal(json_get(r.json, "circuits")->u.array.len, 1);
    assert_null(strstr(r.body, "s3cret"));
    assert_int_equal(wf_int(rc, "ZCARD si:circuits"), 1);
    admin_json(&r, api.port, "GET", "/admin/api/circuits?limit=0", NULL);
    EXPECT(&r, 400, "GET", "/admin/api/circuits");
    api_resp_free(&r);
    xfree(url);
    xfree(sealed);
}

/* ---- Queues ---- */

/* Partner 51 with 3 ready events, partner 52 with one in retry: each shows
 * its counts and the creation time of its oldest waiting event. */
static void test_queues_show_the_oldest_waiting_event_per_partner(void **state)
{
    (void)state;
    char uid[25], eid[128], first[128], key[300];
    long long oldest = 0;
    for (unsigned i = 1; i <= 3; i++) {
        wf_uid(uid, 5100 + i); /* users of different shards */
        assert_int_equal(wf_new_mail(rc, "51", uid, "a", i, 100, eid), 1);
        snprintf(key, sizeof key, "si:{%d}:evt:%s", wf_shard(uid), eid);
        long long c = wf_int(rc, "HGET %s created_at", key);
        if (i == 1)
            snprintf(first, sizeof first, "%s", eid);
        if (oldest == 0 || c < oldest)
            oldest = c;
    }
    wf_uid(uid, 5200);
    int k = wf_shard(uid);
    freeReplyObject(
        wf_cmd(rc, "HSET si:{%d}:evt:%s.7.1 pid 52 state retry created_at 1234", k, uid));
    freeReplyObject(wf_cmd(rc, "ZADD si:{%d}:retry 99999999999999 %s.7.1", k, uid));

    struct api_resp r = {0};
    admin_json(&r, api.port, "GET", "/admin/api/queues", NULL);
    EXPECT(&r, 200, "GET", "/admin/api/queues");
    yajl_val ps = json_get(r.json, "partners");
    assert_int_equal(ps->u.array.len, 2);
    yajl_val p52 = ps->u.array.values[0], p51 = ps->u.array.values[1]; /* oldest first */
    int64_t v;
    assert_string_equal(json_get_str(p52, "partner_id"), "52");
    assert_int_equal(json_get_int(p52, "ready", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(json_get_int(p52, "retry", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(json_get_int(p52, "oldest_at", &v), 0);
    assert_int_equal(v, 1234);
    assert_string_equal(json_get_str(p51, "partner_id"), "51");
    assert_int_equal(json_get_int(p51, "ready", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(json_get_int(p51, "oldest_at", &v), 0);
    assert_int_equal(v, oldest);
    assert_true(YAJL_IS_TRUE(json_get(r.json, "partners_complete")));
    api_resp_free(&r);
}

/* ---- Dead letters ---- */

static void dead_path(char *out, size_t n, const char *eid, const char *suffix)
{
    snprintf(out, n, "/admin/api/dead-letters/%s%s", eid, suffix);
}

/* Events of a partner that does not exist go to dead letters at once: a
 * new_mail one downloads as the exact message (its SHA-1 is the event's),
 * a user_connected one has no message; a dead letter is deleted once, and
 * an event that is not dead is not. */
static void test_dead_letter_downloads_as_eml_and_is_deleted(void **state)
{
    (void)state;
    char uid[25], eid[128], ueid[160], path[300];
    wf_uid(uid, 7700);
    assert_int_equal(wf_new_mail(rc, "77", uid, "g", 1, 3000, eid), 1);
    snprintf(ueid, sizeof ueid, "%s.connected.1700000000000", uid);
    char usha[CRYPTO_SHA1_HEX_LEN + 1];
    char *up = wf_user_payload("user_connected", ueid, "g", usha);
    assert_int_equal(wf_enqueue_raw(rc, ueid, "77", "user_connected", uid, "g", usha, up, NULL), 1);
    xfree(up);
    char live[128], luid[25];
    wf_uid(luid, 7800);
    partner("78", NULL, NULL, NULL, NULL);
    struct receiver_rule hang = {.hang = 1};
    receiver_set_rule(rx, "78", &hang);
    assert_int_equal(wf_new_mail(rc, "78", luid, "h", 1, 100, live), 1);
    struct proc d;
    start_dispatcher(&d, "d-dead", "100");
    int k = wf_shard(uid);
    long long deadline = harness_now_ms() + 10000;
    while (wf_int(rc, "ZCARD si:{%d}:dead", k) < 2 && harness_now_ms() < deadline)
        harness_poll_pause();
    assert_int_equal(wf_int(rc, "ZCARD si:{%d}:dead", k), 2);

    struct api_resp r = {0};
    dead_path(path, sizeof path, eid, "/eml");
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 200, "GET", "/admin/api/dead-letters/{id}/eml");
    char want[200], sha1[CRYPTO_SHA1_HEX_LEN + 1], stored[64];
    snprintf(want, sizeof want, "Content-Disposition: attachment; filename=\"%s.eml\"", eid);
    assert_true(has_header_prefix(r.headers, want));
    assert_true(r.len >= 3000);
    assert_int_equal(crypto_sha1_hex(r.body, r.len, sha1), 0);
    char ek[300];
    snprintf(ek, sizeof ek, "si:{%d}:evt:%s", k, eid);
    wf_hget(rc, ek, "sha1", stored, sizeof stored);
    assert_string_equal(sha1, stored);
    assert_non_null(strstr(r.body, "Subject: hello 1\r\n"));

    dead_path(path, sizeof path, ueid, "/eml");
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 404, "GET", "/admin/api/dead-letters/{id}/eml");
    assert_string_equal(err_code(&r), "no_message");
    dead_path(path, sizeof path, "nosuchevent.1.1", "/eml");
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 404, "GET", "/admin/api/dead-letters/{id}/eml");
    assert_string_equal(err_code(&r), "not_found");

    /* Delete: once; the event and its dead set entry are gone. */
    dead_path(path, sizeof path, eid, "");
    admin_json(&r, api.port, "DELETE", path, NULL);
    EXPECT(&r, 204, "DELETE", "/admin/api/dead-letters/{id}");
    assert_int_equal(wf_int(rc, "EXISTS %s", ek), 0);
    assert_int_equal(wf_int(rc, "ZCARD si:{%d}:dead", k), 1);
    admin_json(&r, api.port, "DELETE", path, NULL);
    EXPECT(&r, 404, "DELETE", "/admin/api/dead-letters/{id}");
    dead_path(path, sizeof path, eid, "/eml");
    admin_json(&r, api.port, "GET", path, NULL);
    EXPECT(&r, 404, "GET", "/admin/api/dead-letters/{id}/eml");
    /* An event in flight (its receiver hangs) is not a dead letter. */
    assert_int_equal(receiver_wait(rx, "78", 1, 10000), 1);
    dead_path(path, sizeof path, live, "");
    admin_json(&r, api.port, "DELETE", path, NULL);
    EXPECT(&r, 409, "DELETE", "/admin/api/dead-letters/{id}");
    api_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stats_count_mail_deliveries_and_failures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failing_url_shows_open_then_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queues_show_the_oldest_waiting_event_per_partner,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_downloads_as_eml_and_is_deleted, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
