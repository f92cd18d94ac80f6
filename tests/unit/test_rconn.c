/*
 * Unit tests of core/rconn against a real redis-server (tests/unit/redis_fixture.h):
 * round trips, pipelining, AUTH and SELECT, connect and command timeouts,
 * reconnect after the server dies, NOSCRIPT fallback, script loading and
 * shutdown. Every callback counts its calls: each must run exactly once.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rconn.h"
#include "core/scripts.h"
#include "tests/unit/loop_fixture.h"
#include "tests/unit/redis_fixture.h"

struct tctx {
    struct redis_fixture fx;
    struct ev_loop *loop;
};

/* What one command's callback saw. */
struct result {
    int calls;
    int err;
    int type; /* REDIS_REPLY_*, 0 without a reply */
    long long integer;
    char str[512];
    size_t len;
    size_t elements;
    char elem[4][64];
    int *total; /* optional shared counter */
    int seq;    /* value of *order_counter when called */
    int *order_counter;
};

struct states {
    int ups, downs;
};

static void on_result(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct result *r = privdata;
    r->calls++;
    r->err = err;
    r->type = 0;
    if (reply != NULL) {
        r->type = reply->type;
        r->integer = reply->integer;
        r->len = reply->len;
        if (reply->str != NULL)
            memcpy(r->str, reply->str, reply->len < sizeof r->str ? reply->len : sizeof r->str - 1);
        r->elements = reply->elements;
        for (size_t i = 0; i < reply->elements && i < 4; i++)
            if (reply->element[i]->str != NULL)
                snprintf(r->elem[i], sizeof r->elem[i], "%s", reply->element[i]->str);
    }
    if (r->total != NULL)
        (*r->total)++;
    if (r->order_counter != NULL)
        r->seq = (*r->order_counter)++;
}

static void on_state(struct rconn *rc, int connected, void *data)
{
    (void)rc;
    struct states *s = data;
    if (connected)
        s->ups++;
    else
        s->downs++;
}

/* Runs the loop for a while, to show that nothing more happens. */
static void run_for(struct ev_loop *loop, double seconds)
{
    int never = 0;
    run_until(loop, &never, 1, seconds);
}

static int setup_plain(void **state)
{
    struct tctx *t = calloc(1, sizeof *t);
    if (t == NULL || redis_fixture_start(&t->fx, NULL) < 0)
        return -1;
    t->loop = ev_loop_new(EVFLAG_AUTO);
    *state = t;
    return 0;
}

#define TEST_PASSWORD "s3cret-pw-42"

static int setup_auth(void **state)
{
    struct tctx *t = calloc(1, sizeof *t);
    if (t == NULL || redis_fixture_start(&t->fx, TEST_PASSWORD) < 0)
        return -1;
    t->loop = ev_loop_new(EVFLAG_AUTO);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tctx *t = *state;
    if (t == NULL)
        return 0;
    ev_loop_destroy(t->loop);
    redis_fixture_stop(&t->fx);
    free(t);
    return 0;
}

static struct rconn *connect_rc(struct tctx *t, struct rconn_opts *o, struct states *st)
{
    if (o->url == NULL)
        o->url = t->fx.url;
    if (o->name == NULL)
        o->name = "test";
    struct rconn *rc = rconn_new(t->loop, o);
    assert_non_null(rc);
    if (st != NULL) {
        rconn_on_state(rc, on_state, st);
        assert_true(run_until(t->loop, &st->ups, 1, 5.0));
        assert_true(rconn_is_connected(rc));
    }
    return rc;
}

/* Returns the calls of a command from INFO commandstats (0 if never run). */
static long long command_calls(const struct redis_fixture *fx, const char *cmd)
{
    redisReply *r = redis_fixture_cmd(fx, "INFO commandstats");
    assert_non_null(r);
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    const char *p = strstr(r->str, key);
    long long v = p ? strtoll(p + strlen(key), NULL, 10) : 0;
    freeReplyObject(r);
    return v;
}

static long long info_field(const struct redis_fixture *fx, const char *field)
{
    redisReply *r = redis_fixture_cmd(fx, "INFO");
    assert_non_null(r);
    char key[64];
    snprintf(key, sizeof key, "\n%s:", field);
    const char *p = strstr(r->str, key);
    long long v = p ? strtoll(p + strlen(key), NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

static void fixture_ok(const struct redis_fixture *fx, const char *cmd)
{
    redisReply *r = redis_fixture_cmd(fx, cmd);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static int latency_calls;
static double latency_sum;

static void on_latency(double seconds, void *data)
{
    (void)data;
    latency_calls++;
    latency_sum += seconds;
}

/* ---- Tests ---- */

static void test_rconn_new_rejects_bad_url(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {.url = "http://nope"};
    assert_null(rconn_new(t->loop, &o));
}

static void test_command_round_trip_calls_back_once_after_return(void **state)
{
    struct tctx *t = *state;
    struct states st = {0};
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, &st);
    latency_calls = 0;
    latency_sum = 0;
    rconn_on_latency(rc, on_latency, NULL);

    struct result set = {0}, get = {0}, bad = {0};
    assert_int_equal(rconn_command(rc, on_result, &set, "SET %s %b", "k", "v\0x", (size_t)3), 0);
    const char *argv[] = {"GET", "k"};
    assert_int_equal(rconn_command_argv(rc, on_result, &get, 2, argv, NULL), 0);
    assert_int_equal(rconn_command(rc, on_result, &bad, "INCR k"), 0);
    assert_int_equal(set.calls + get.calls + bad.calls, 0); /* never from the start function */

    assert_true(run_until(t->loop, &bad.calls, 1, 5.0));
    assert_int_equal(set.calls, 1);
    assert_int_equal(set.err, 0);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.calls, 1);
    assert_int_equal(get.err, 0);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_int_equal(get.len, 3);
    assert_memory_equal(get.str, "v\0x", 3);
    assert_int_equal(bad.calls, 1);
    assert_int_equal(bad.err, -SIMAP_EREPLY);
    assert_int_equal(bad.type, REDIS_REPLY_ERROR);

    assert_int_equal(latency_calls, 3);
    assert_true(latency_sum > 0 && latency_sum < 15.0);
    struct rconn_stats s;
    rconn_stats(rc, &s);
    assert_int_equal(s.commands, 3);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.timeouts, 0);
    assert_int_equal(s.connects, 1);
    assert_int_equal(s.reconnects, 0);
    assert_int_equal(s.pending, 0);
    rconn_free(rc);
    assert_int_equal(set.calls + get.calls + bad.calls, 3);
    assert_int_equal(st.ups, 1);
    assert_int_equal(st.downs, 0);
}

#define NPIPE 1000

struct pipe_slot {
    int calls;
    int err;
    long long value;
    int seq;
};

static int pipe_seq, pipe_total;

static void on_pipe(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)rc;
    struct pipe_slot *s = privdata;
    s->calls++;
    s->err = err;
    s->value = reply ? reply->integer : -1;
    s->seq = pipe_seq++;
    pipe_total++;
}

static void test_thousand_pipelined_commands_each_called_back_once_in_order(void **state)
{
    struct tctx *t = *state;
    static struct pipe_slot slots[NPIPE];
    memset(slots, 0, sizeof slots);
    pipe_seq = pipe_total = 0;
    struct states st = {0};
    struct rconn_opts o = {.url = t->fx.url, .name = "test"};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    rconn_on_state(rc, on_state, &st);
    /* Half before the connection is up (queued), half after (sent at once). */
    for (int i = 0; i < NPIPE / 2; i++)
        assert_int_equal(rconn_command(rc, on_pipe, &slots[i], "INCR n"), 0);
    assert_true(run_until(t->loop, &st.ups, 1, 5.0));
    for (int i = NPIPE / 2; i < NPIPE; i++)
        assert_int_equal(rconn_command(rc, on_pipe, &slots[i], "INCR n"), 0);
    assert_true(run_until(t->loop, &pipe_total, NPIPE, 10.0));
    for (int i = 0; i < NPIPE; i++) {
        assert_int_equal(slots[i].calls, 1);
        assert_int_equal(slots[i].err, 0);
        assert_int_equal(slots[i].seq, i);
        assert_int_equal(slots[i].value, i + 1);
    }
    rconn_free(rc);
    assert_int_equal(pipe_total, NPIPE);
}

static void test_auth_with_right_password_connects(void **state)
{
    struct tctx *t = *state;
    struct states st = {0};
    struct rconn_opts o = {.password = TEST_PASSWORD};
    struct rconn *rc = connect_rc(t, &o, &st);
    struct result r = {0};
    assert_int_equal(rconn_command(rc, on_result, &r, "PING"), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    assert_int_equal(r.err, 0);
    assert_string_equal(r.str, "PONG");
    rconn_free(rc);
    assert_int_equal(r.calls, 1);
}

static void test_auth_with_wrong_password_never_connects_and_logs_once(void **state)
{
    struct tctx *t = *state;
    char logpath[200];
    snprintf(logpath, sizeof logpath, "%s/test.log", t->fx.dir);
    assert_int_equal(log_init("test_rconn", "t", LL_INFO, LOG_FORMAT_TEXT, NULL, logpath), 0);

    struct states st = {0};
    struct rconn_opts o = {.url = t->fx.url,
                           .password = "wrong-password",
                           .command_timeout_ms = 700,
                           .reconnect_min_ms = 10,
                           .reconnect_max_ms = 40};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    rconn_on_state(rc, on_state, &st);
    struct result r = {0};
    assert_int_equal(rconn_command(rc, on_result, &r, "PING"), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    assert_int_equal(r.err, -SIMAP_ETIMEDOUT);
    assert_int_equal(r.type, 0);
    assert_int_equal(st.ups, 0);
    assert_false(rconn_is_connected(rc));
    struct rconn_stats s;
    rconn_stats(rc, &s);
    assert_int_equal(s.connects, 0);
    assert_int_equal(s.timeouts, 1);
    rconn_free(rc);
    assert_int_equal(r.calls, 1);
    assert_int_equal(log_init("test_rconn", "-", LL_WARN, LOG_FORMAT_TEXT, NULL, NULL), 0);

    /* It retried several times, but said so once, without the password. */
    assert_true(info_field(&t->fx, "total_connections_received") >= 3);
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    char line[1024];
    int auth_lines = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, "authentication failed") != NULL)
            auth_lines++;
        assert_null(strstr(line, "wrong-password"));
    }
    fclose(f);
    assert_int_equal(auth_lines, 1);
}

/* A named connection (AUTH, SELECT, CLIENT SETNAME and ROLE are all
 * answered while Redis loads its dataset) must not count as connected until
 * the data is there: its handshake ends with PING, which Redis refuses with
 * LOADING until then. Without it, the first command got a LOADING error. */
static void test_handshake_waits_until_redis_has_loaded_its_dataset(void **state)
{
    struct tctx *t = *state;
    redisReply *rep = redis_fixture_cmd(&t->fx, "EVAL %s 0",
                                        "for i = 1, 3000 do redis.call('SET', 'k' .. i, i) end");
    assert_non_null(rep);
    freeReplyObject(rep);
    assert_int_equal(redis_fixture_int(&t->fx, "DBSIZE"), 3000);
    rep = redis_fixture_cmd(&t->fx, "SAVE");
    assert_non_null(rep);
    freeReplyObject(rep);
    /* 1 ms per key, and the loop turns every KiB: about 3 s of LOADING. */
    const char *slow[] = {"--key-load-delay", "1000", "--loading-process-events-interval-bytes",
                          "1024", NULL};
    memcpy(t->fx.extra, slow, sizeof slow);
    assert_int_equal(redis_fixture_restart(&t->fx), 0);
    rep = redis_fixture_cmd(&t->fx, "INFO persistence");
    assert_non_null(rep);
    assert_non_null(strstr(rep->str, "loading:1"));
    freeReplyObject(rep);

    struct rconn_opts o = {.url = t->fx.url,
                           .reconnect_min_ms = 20,
                           .reconnect_max_ms = 50,
                           .command_timeout_ms = 20000};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    assert_int_equal(rconn_set_client_name(rc, "si:test:named"), 0);
    struct result r = {0};
    assert_int_equal(rconn_command(rc, on_result, &r, "GET k3000"), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 20.0));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.type, REDIS_REPLY_STRING);
    assert_string_equal(r.str, "3000");
    /* And the name is on the connection. */
    struct result n = {0};
    assert_int_equal(rconn_command(rc, on_result, &n, "CLIENT GETNAME"), 0);
    assert_true(run_until(t->loop, &n.calls, 1, 5.0));
    assert_string_equal(n.str, "si:test:named");
    rconn_free(rc);
}

static void test_client_name_refuses_spaces_and_control_bytes(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {.url = t->fx.url};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    assert_int_equal(rconn_set_client_name(rc, "two words"), -SIMAP_EINVAL);
    assert_int_equal(rconn_set_client_name(rc, "tab\there"), -SIMAP_EINVAL);
    assert_int_equal(rconn_set_client_name(rc, ""), -SIMAP_EINVAL);
    assert_int_equal(rconn_set_client_name(rc, "si:watcher:w1:7"), 0);
    rconn_free(rc);
}

static void test_select_uses_db_from_url(void **state)
{
    struct tctx *t = *state;
    char url[200];
    snprintf(url, sizeof url, "%s?db=3", t->fx.url);
    struct states st = {0};
    struct rconn_opts o = {.url = url};
    struct rconn *rc = connect_rc(t, &o, &st);
    struct result r = {0};
    assert_int_equal(rconn_command(rc, on_result, &r, "SET where db3"), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    assert_int_equal(r.err, 0);
    rconn_free(rc);

    redisContext *c = redis_fixture_connect(&t->fx, 3000);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "EXISTS where");
    assert_int_equal(rep->integer, 0); /* not in db 0 */
    freeReplyObject(rep);
    rep = redisCommand(c, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(c, "GET where");
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "db3");
    freeReplyObject(rep);
    redisFree(c);
}

static void test_connect_timeout_to_blackhole_keeps_disconnected_and_times_out(void **state)
{
    struct tctx *t = *state;
    /* A listener that never accepts: the kernel completes at most a
     * backlog's worth of handshakes, then drops SYNs. Either way nobody ever
     * answers, so only our timers can end the wait. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)(void *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t slen = sizeof sa;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)(void *)&sa, &slen), 0);
    int fill[2];
    for (int i = 0; i < 2; i++) { /* fill the backlog */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)(void *)&sa, sizeof sa);
    }
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(sa.sin_port));

    struct states st = {0};
    struct rconn_opts o = {.url = url,
                           .connect_timeout_ms = 150,
                           .command_timeout_ms = 700,
                           .reconnect_min_ms = 20,
                           .reconnect_max_ms = 50};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    rconn_on_state(rc, on_state, &st);
    struct result r = {0};
    double t0 = fixture_now();
    assert_int_equal(rconn_command(rc, on_result, &r, "PING"), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    assert_true(fixture_now() - t0 >= 0.69);
    assert_int_equal(r.err, -SIMAP_ETIMEDOUT);
    assert_int_equal(st.ups, 0);
    assert_false(rconn_is_connected(rc));
    struct rconn_stats s;
    rconn_stats(rc, &s);
    assert_int_equal(s.connects, 0);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.pending, 0);
    rconn_free(rc);
    assert_int_equal(r.calls, 1);
    close(fill[0]);
    close(fill[1]);
    close(lfd);
}

static void test_command_timeout_reports_once_and_connection_recovers(void **state)
{
    struct tctx *t = *state;
    struct states st = {0};
    struct rconn_opts o = {
        .command_timeout_ms = 300, .reconnect_min_ms = 20, .reconnect_max_ms = 50};
    struct rconn *rc = connect_rc(t, &o, &st);

    fixture_ok(&t->fx, "CLIENT PAUSE 1000 ALL");
    struct result r = {0};
    double t0 = fixture_now();
    assert_int_equal(rconn_command(rc, on_result, &r, "PING"), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    assert_true(fixture_now() - t0 >= 0.29);
    assert_int_equal(r.err, -SIMAP_ETIMEDOUT);
    assert_int_equal(st.downs, 1); /* a hung link is dropped */

    /* Blocks until the pause is over; then rconn must come back by itself. */
    redisReply *pong = redis_fixture_cmd(&t->fx, "PING");
    assert_non_null(pong);
    freeReplyObject(pong);
    assert_true(run_until(t->loop, &st.ups, 2, 5.0));
    struct result r2 = {0};
    assert_int_equal(rconn_command(rc, on_result, &r2, "PING"), 0);
    assert_true(run_until(t->loop, &r2.calls, 1, 5.0));
    assert_int_equal(r2.err, 0);
    assert_string_equal(r2.str, "PONG");

    run_for(t->loop, 0.1);
    assert_int_equal(r.calls, 1); /* the late reply never arrived */
    struct rconn_stats s;
    rconn_stats(rc, &s);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.reconnects, 1);
    rconn_free(rc);
    assert_int_equal(r2.calls, 1);
}

static void test_redis_killed_fails_in_flight_once_and_queued_run_after_restart(void **state)
{
    struct tctx *t = *state;
    struct states st = {0};
    struct rconn_opts o = {.reconnect_min_ms = 20, .reconnect_max_ms = 100};
    struct rconn *rc = connect_rc(t, &o, &st);

    fixture_ok(&t->fx, "CLIENT PAUSE 5000 ALL"); /* keeps our PINGs in flight */
    struct result inflight[5];
    int total = 0;
    memset(inflight, 0, sizeof inflight);
    for (int i = 0; i < 5; i++) {
        inflight[i].total = &total;
        assert_int_equal(rconn_command(rc, on_result, &inflight[i], "PING"), 0);
    }
    run_for(t->loop, 0.1);
    assert_int_equal(total, 0);

    redis_fixture_kill(&t->fx, SIGKILL);
    assert_true(run_until(t->loop, &total, 5, 5.0));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(inflight[i].calls, 1);
        assert_int_equal(inflight[i].err, -SIMAP_ECONN);
    }
    assert_int_equal(st.downs, 1);
    assert_false(rconn_is_connected(rc));

    /* Issued while the server is down: queued, sent after it is back. */
    struct result queued[3];
    int qtotal = 0, order = 0;
    memset(queued, 0, sizeof queued);
    for (int i = 0; i < 3; i++) {
        queued[i].total = &qtotal;
        queued[i].order_counter = &order;
        assert_int_equal(rconn_command(rc, on_result, &queued[i], "SET key%d v%d", i, i), 0);
    }
    run_for(t->loop, 0.1);
    assert_int_equal(qtotal, 0);
    assert_int_equal(redis_fixture_spawn(&t->fx), 0);
    assert_true(run_until(t->loop, &qtotal, 3, 5.0));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(queued[i].calls, 1);
        assert_int_equal(queued[i].err, 0);
        assert_string_equal(queued[i].str, "OK");
        assert_int_equal(queued[i].seq, i);
    }
    assert_true(rconn_is_connected(rc));
    assert_int_equal(st.ups, 2);
    redisReply *rep = redis_fixture_cmd(&t->fx, "GET key2");
    assert_non_null(rep);
    assert_string_equal(rep->str, "v2");
    freeReplyObject(rep);
    struct rconn_stats s;
    rconn_stats(rc, &s);
    assert_int_equal(s.reconnects, 1);
    rconn_free(rc);
    assert_int_equal(total, 5);
    assert_int_equal(qtotal, 3);
}

static const struct script_source echo_script = {"test_echo", "return {KEYS[1], ARGV[1]}"};

static void run_echo(struct tctx *t, struct rconn *rc)
{
    const char *argv[] = {"key1", "arg1"};
    struct result r = {0};
    assert_int_equal(rconn_script_source(rc, on_result, &r, &echo_script, 1, 2, argv, NULL), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    run_for(t->loop, 0.02);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.type, REDIS_REPLY_ARRAY);
    assert_int_equal(r.elements, 2);
    assert_string_equal(r.elem[0], "key1");
    assert_string_equal(r.elem[1], "arg1");
}

static void test_script_falls_back_to_eval_on_noscript_once(void **state)
{
    struct tctx *t = *state;
    struct states st = {0};
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, &st);
    char sha[SCRIPT_SHA_HEX_LEN + 1];
    assert_int_equal(script_sha1_hex(echo_script.body, sha), 0);

    run_echo(t, rc); /* fresh server: NOSCRIPT, then EVAL */
    assert_int_equal(command_calls(&t->fx, "eval"), 1);
    redisReply *rep = redis_fixture_cmd(&t->fx, "SCRIPT EXISTS %s", sha);
    assert_int_equal(rep->element[0]->integer, 1); /* the EVAL cached it */
    freeReplyObject(rep);

    run_echo(t, rc); /* EVALSHA hits */
    assert_int_equal(command_calls(&t->fx, "eval"), 1);
    assert_int_equal(command_calls(&t->fx, "evalsha"), 2);

    fixture_ok(&t->fx, "SCRIPT FLUSH");
    run_echo(t, rc);
    assert_int_equal(command_calls(&t->fx, "eval"), 2);

    /* A script that fails after the fallback: its error, delivered once. */
    static const struct script_source failing = {"test_fail", "return redis.call('INCR', KEYS[1])"};
    fixture_ok(&t->fx, "SET notanumber abc");
    const char *argv[] = {"notanumber"};
    struct result r = {0};
    assert_int_equal(rconn_script_source(rc, on_result, &r, &failing, 1, 1, argv, NULL), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    run_for(t->loop, 0.02);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, -SIMAP_EREPLY);
    assert_int_equal(r.type, REDIS_REPLY_ERROR);
    assert_null(strstr(r.str, "NOSCRIPT"));
    rconn_free(rc);
}

static void test_script_refuses_unknown_name_and_bad_nkeys_without_callback(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, NULL);
    struct result r = {0};
    const char *argv[] = {"a"};
    assert_int_equal(rconn_script(rc, on_result, &r, "no_such_script", 0, 0, NULL, NULL),
                     -SIMAP_ENOTFOUND);
    assert_int_equal(rconn_script_source(rc, on_result, &r, &echo_script, 2, 1, argv, NULL),
                     -SIMAP_EINVAL);
    run_for(t->loop, 0.05);
    rconn_free(rc);
    assert_int_equal(r.calls, 0);
}

static void test_load_scripts_names_the_script_with_a_syntax_error(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, NULL);
    static const struct script_source srcs[] = {
        {"good_one", "return 1"},
        {"broken_one", "return {"},
    };
    struct result r = {0};
    assert_int_equal(rconn_load_script_sources(rc, on_result, &r, srcs, 2), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    run_for(t->loop, 0.02);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, -SIMAP_EREPLY);
    assert_int_equal(r.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r.str, "broken_one"));
    assert_null(strstr(r.str, "good_one"));

    char sha[SCRIPT_SHA_HEX_LEN + 1];
    script_sha1_hex(srcs[0].body, sha);
    redisReply *rep = redis_fixture_cmd(&t->fx, "SCRIPT EXISTS %s", sha);
    assert_int_equal(rep->element[0]->integer, 1);
    freeReplyObject(rep);
    rconn_free(rc);
}

static void test_load_scripts_loads_every_embedded_script(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, NULL);
    struct result r = {0};
    assert_int_equal(rconn_load_scripts(rc, on_result, &r), 0);
    assert_true(run_until(t->loop, &r.calls, 1, 5.0));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.type, REDIS_REPLY_STATUS);
    assert_string_equal(r.str, "OK");
    for (size_t i = 0; i < script_source_count; i++) {
        const char *sha = script_sha(&script_sources[i]);
        assert_non_null(sha);
        redisReply *rep = redis_fixture_cmd(&t->fx, "SCRIPT EXISTS %s", sha);
        assert_int_equal(rep->element[0]->integer, 1);
        freeReplyObject(rep);
    }
    struct rconn_stats s;
    rconn_stats(rc, &s);
    assert_int_equal(s.errors, 0);
    rconn_free(rc);
    assert_int_equal(r.calls, 1);
}

static void test_free_with_pending_commands_calls_each_once_with_shutdown(void **state)
{
    struct tctx *t = *state;
    struct states st = {0};
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, &st);

    fixture_ok(&t->fx, "CLIENT PAUSE 2000 ALL");
    struct result sent[3];
    int order = 0;
    memset(sent, 0, sizeof sent);
    for (int i = 0; i < 3; i++) {
        sent[i].order_counter = &order;
        assert_int_equal(rconn_command(rc, on_result, &sent[i], "PING"), 0);
    }
    run_for(t->loop, 0.05); /* written, no reply */
    assert_int_equal(order, 0);
    rconn_free(rc); /* not inside a callback: synchronous */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sent[i].calls, 1);
        assert_int_equal(sent[i].err, -SIMAP_ESHUTDOWN);
        assert_int_equal(sent[i].seq, i);
    }
    assert_int_equal(st.downs, 0); /* no state callback after free */

    /* Commands queued before the connection ever came up. */
    struct rconn *rc2 = rconn_new(t->loop, &o);
    struct result queued[2];
    memset(queued, 0, sizeof queued);
    for (int i = 0; i < 2; i++)
        assert_int_equal(rconn_command(rc2, on_result, &queued[i], "PING"), 0);
    rconn_free(rc2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(queued[i].calls, 1);
        assert_int_equal(queued[i].err, -SIMAP_ESHUTDOWN);
    }
    run_for(t->loop, 0.1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sent[i].calls, 1);
    fixture_ok(&t->fx, "CLIENT UNPAUSE");
}

struct free_in_cb {
    struct result *others;
    int others_seen;     /* their calls when rconn_free() returned */
    int command_ret;     /* rconn_command() after rconn_free() */
    int connected_after; /* rconn_is_connected() after rconn_free() */
    int calls;
};

static void on_free_in_cb(struct rconn *rc, struct redisReply *reply, int err, void *privdata)
{
    (void)reply;
    (void)err;
    struct free_in_cb *f = privdata;
    f->calls++;
    rconn_free(rc);
    rconn_free(rc); /* twice is harmless */
    f->others_seen = f->others[0].calls + f->others[1].calls;
    f->command_ret = rconn_command(rc, on_result, &f->others[0], "PING");
    f->connected_after = rconn_is_connected(rc);
}

static void test_free_inside_callback_is_deferred_to_the_loop(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {0};
    struct rconn *rc = connect_rc(t, &o, NULL);
    struct result others[2];
    int total = 0;
    memset(others, 0, sizeof others);
    struct free_in_cb f = {.others = others};
    assert_int_equal(rconn_command(rc, on_free_in_cb, &f, "PING"), 0);
    for (int i = 0; i < 2; i++) { /* replies come only after 2 s */
        others[i].total = &total;
        assert_int_equal(rconn_command(rc, on_result, &others[i], "BLPOP nothing 2"), 0);
    }
    double t0 = fixture_now();
    assert_true(run_until(t->loop, &total, 2, 5.0));
    assert_true(fixture_now() - t0 < 1.5);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.others_seen, 0);
    assert_int_equal(f.command_ret, -SIMAP_ESHUTDOWN);
    assert_int_equal(f.connected_after, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(others[i].calls, 1);
        assert_int_equal(others[i].err, -SIMAP_ESHUTDOWN);
    }
    run_for(t->loop, 0.05);
    assert_int_equal(total, 2);
}

static void test_max_pending_refuses_with_etoobig_without_callback(void **state)
{
    struct tctx *t = *state;
    struct rconn_opts o = {.url = t->fx.url, .max_pending = 2};
    struct rconn *rc = rconn_new(t->loop, &o);
    assert_non_null(rc);
    struct result r[4];
    int total = 0;
    memset(r, 0, sizeof r);
    for (int i = 0; i < 4; i++)
        r[i].total = &total;
    assert_int_equal(rconn_command(rc, on_result, &r[0], "PING"), 0);
    assert_int_equal(rconn_command(rc, on_result, &r[1], "PING"), 0);
    assert_int_equal(rconn_command(rc, on_result, &r[2], "PING"), -SIMAP_ETOOBIG);
    static const struct script_source two[] = {{"a", "return 1"}, {"b", "return 2"}};
    assert_int_equal(rconn_load_script_sources(rc, on_result, &r[2], two, 2), -SIMAP_ETOOBIG);
    assert_true(run_until(t->loop, &total, 2, 5.0));
    assert_int_equal(r[0].err, 0);
    assert_int_equal(r[1].err, 0);
    assert_int_equal(rconn_command(rc, on_result, &r[3], "PING"), 0); /* room again */
    assert_true(run_until(t->loop, &total, 3, 5.0));
    run_for(t->loop, 0.02);
    assert_int_equal(r[2].calls, 0);
    assert_int_equal(r[3].calls, 1);
    rconn_free(rc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every main does: a dead peer is an error, not a kill */
    log_init("test_rconn", "-", LL_WARN, LOG_FORMAT_TEXT, NULL, NULL);
    if (scripts_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rconn_new_rejects_bad_url, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_command_round_trip_calls_back_once_after_return,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(
            test_thousand_pipelined_commands_each_called_back_once_in_order, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_auth_with_right_password_connects, setup_auth,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_with_wrong_password_never_connects_and_logs_once,
                                        setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_waits_until_redis_has_loaded_its_dataset,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_client_name_refuses_spaces_and_control_bytes,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_select_uses_db_from_url, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(
            test_connect_timeout_to_blackhole_keeps_disconnected_and_times_out, setup_plain,
            teardown),
        cmocka_unit_test_setup_teardown(test_command_timeout_reports_once_and_connection_recovers,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(
            test_redis_killed_fails_in_flight_once_and_queued_run_after_restart, setup_plain,
            teardown),
        cmocka_unit_test_setup_teardown(test_script_falls_back_to_eval_on_noscript_once,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(
            test_script_refuses_unknown_name_and_bad_nkeys_without_callback, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_load_scripts_names_the_script_with_a_syntax_error,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_load_scripts_loads_every_embedded_script, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_free_with_pending_commands_calls_each_once_with_shutdown, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback_is_deferred_to_the_loop,
                                        setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_max_pending_refuses_with_etoobig_without_callback,
                                        setup_plain, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    scripts_shutdown();
    log_shutdown();
    return failed;
}
