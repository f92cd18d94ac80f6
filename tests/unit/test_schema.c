/*
 * Unit tests of core/schema: every key builder against the key table of
 * core/schema.h itself. Each row names a layout as the table writes it
 * ("si:{k}:user:<uid>"); the test checks that the table still has that line,
 * fills its placeholders with sample ids and expects exactly the builder's
 * key. So a builder and the table cannot drift apart unnoticed. Also: keys
 * that would not fit are refused, shard-only keys fit any shard, and the
 * shard of an event id.
 *
 * core/schema.h is read under $SUPERIMAP_SRC_DIR (set by tests/run-tests.sh),
 * else the current directory.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/schema.h"

#define UID  "0123456789abcdef01234567"
#define PID  "42"
#define CODE "gmail"
#define HEX  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define K    7u

/* Sample values of the table's placeholders. */
static const char *const samples[][2] = {
    {"{k}", "{7}"},
    {"<uid>", UID},
    {"<pid>", PID},
    {"<code>", CODE},
    {"<lower tag>", "bob smith"},
    {"<lower email>", "bob@example.org"},
    {"<sha256 hex of key>", HEX},
    {"<sha256 hex of cookie>", HEX},
    {"<node>:<g>", "node-1:3"},
    {"<eid>", UID ".connected.1700000000000"},
    {"<id>", "node-1"},
    {"<sig>", "c2lnbmF0dXJl"},
    {"<state>", "c3RhdGU"},
    {"<token>", "0123abcd"},
    {"<lower>", "ops@example.org"},
    {"<unix minute>", "29000000"},
    {"<sha256 hex of URL>", HEX},
};

static char *schema_text;

static int read_schema(void **state)
{
    (void)state;
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/core/schema.h", src != NULL ? src : ".");
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    schema_text = malloc(cap + 1);
    size_t got;
    while ((got = fread(schema_text + n, 1, cap - n, f)) > 0)
        n += got;
    fclose(f);
    schema_text[n] = '\0';
    return 0;
}

static int free_schema(void **state)
{
    (void)state;
    free(schema_text);
    return 0;
}

/* pattern with every placeholder replaced by its sample. */
static void expand(const char *pattern, char *out, size_t outlen)
{
    size_t o = 0;
    while (*pattern != '\0' && o + 1 < outlen) {
        size_t i;
        for (i = 0; i < sizeof samples / sizeof samples[0]; i++) {
            size_t pl = strlen(samples[i][0]);
            if (strncmp(pattern, samples[i][0], pl) == 0) {
                o += (size_t)snprintf(out + o, outlen - o, "%s", samples[i][1]);
                pattern += pl;
                break;
            }
        }
        if (i == sizeof samples / sizeof samples[0])
            out[o++] = *pattern++;
    }
    out[o] = '\0';
}

/* The table has pattern as a whole word (followed by a blank, a comma or a
 * closing quote), and key is pattern filled in. */
static void assert_layout(const char *pattern, const char *key, int len)
{
    const char *p = schema_text;
    int found = 0;
    size_t pl = strlen(pattern);
    while (!found && (p = strstr(p, pattern)) != NULL) {
        char after = p[pl];
        char before = p == schema_text ? ' ' : p[-1];
        found = (after == ' ' || after == ',' || after == '"' || after == '\n') &&
                (before == ' ' || before == '"');
        p += pl;
    }
    if (!found)
        fail_msg("core/schema.h does not document %s", pattern);
    char want[SCHEMA_KEY_MAX * 2];
    expand(pattern, want, sizeof want);
    assert_string_equal(key, want);
    assert_int_equal(len, (int)strlen(want));
}

static void test_fixed_names_are_the_documented_keys(void **state)
{
    (void)state;
    static const char *const fixed[] = {
        SCHEMA_KEY_META, SCHEMA_KEY_SEQ_PARTNER, SCHEMA_KEY_PROVIDERS, SCHEMA_KEY_PARTNERS,
        SCHEMA_KEY_GEN,  SCHEMA_KEY_CHANGES,     SCHEMA_KEY_WATCHERS,  SCHEMA_KEY_DISPATCHERS,
        SCHEMA_KEY_APIS, SCHEMA_CHANNEL_WAKE,    SCHEMA_KEY_ADMINS,    SCHEMA_KEY_CIRCUITS,
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        assert_layout(fixed[i], fixed[i], (int)strlen(fixed[i]));
}

static void test_global_keys_follow_the_table(void **state)
{
    (void)state;
    char out[SCHEMA_KEY_MAX];
    int n;
    n = schema_key_provider(out, CODE);
    assert_layout("si:provider:<code>", out, n);
    n = schema_key_partner(out, PID);
    assert_layout("si:partner:<pid>", out, n);
    n = schema_key_apikey(out, HEX);
    assert_layout("si:apikey:<sha256 hex of key>", out, n);
    n = schema_key_ratelimit(out, HEX);
    assert_layout("si:rl:<sha256 hex of key>", out, n);
    n = schema_key_partner_conns(out, PID);
    assert_layout("si:partner:<pid>:conns", out, n);
    n = schema_key_link(out, "c2lnbmF0dXJl");
    assert_layout("si:link:<sig>", out, n);
    n = schema_key_connect(out, "c3RhdGU");
    assert_layout("si:connect:<state>", out, n);
    n = schema_key_connect_browser(out, HEX);
    assert_layout("si:connect_browser:<sha256 hex of cookie>", out, n);
    n = schema_key_connect_try(out, UID);
    assert_layout("si:connect_try:<uid>", out, n);
    n = schema_key_conn(out, PID, CODE);
    assert_layout("si:conn:<pid>:<code>", out, n);
    n = schema_key_conn_users(out, PID, CODE);
    assert_layout("si:conn:<pid>:<code>:users", out, n);
    n = schema_key_sort(out, "0123abcd");
    assert_layout("si:sort:<token>", out, n);
    n = schema_key_tag(out, PID, CODE, "bob smith");
    assert_layout("si:tag:<pid>:<code>:<lower tag>", out, n);
    n = schema_key_email(out, PID, CODE, "bob@example.org");
    assert_layout("si:email:<pid>:<code>:<lower email>", out, n);
    n = schema_key_node(out, "node-1");
    assert_layout("si:node:<id>", out, n);
    n = schema_key_log(out, PID);
    assert_layout("si:log:<pid>", out, n);
    n = schema_key_admin(out, "ops@example.org");
    assert_layout("si:admin:<lower>", out, n);
    n = schema_key_admin_sessions(out, "ops@example.org");
    assert_layout("si:admin:<lower>:sessions", out, n);
    n = schema_key_admin_session(out, HEX);
    assert_layout("si:asess:<sha256 hex of cookie>", out, n);
    n = schema_key_admin_fail(out, "ops@example.org");
    assert_layout("si:admin_fail:<lower>", out, n);
    n = schema_key_stat(out, 29000000);
    assert_layout("si:stat:<unix minute>", out, n);
    n = schema_key_circuit(out, HEX);
    assert_layout("si:circuit:<sha256 hex of URL>", out, n);
}

static void test_role_keys_are_the_documented_ones(void **state)
{
    (void)state;
    char out[SCHEMA_KEY_MAX];
    static const char *const roles[][2] = {
        {"watcher", SCHEMA_KEY_WATCHERS},
        {"dispatcher", SCHEMA_KEY_DISPATCHERS},
        {"api", SCHEMA_KEY_APIS},
    };
    for (size_t i = 0; i < 3; i++) {
        int n = schema_key_role(out, roles[i][0]);
        assert_string_equal(out, roles[i][1]);
        assert_layout(roles[i][1], out, n);
    }
    int n = schema_key_role_epoch(out, "watcher");
    assert_layout("si:watcher:epoch", out, n);
    n = schema_key_role_epoch(out, "dispatcher");
    assert_layout("si:dispatcher:epoch", out, n);
}

static void test_shard_keys_follow_the_table(void **state)
{
    (void)state;
    char out[SCHEMA_KEY_MAX];
    int n;
    n = schema_key_user(out, K, UID);
    assert_layout("si:{k}:user:<uid>", out, n);
    n = schema_key_cur(out, K, UID);
    assert_layout("si:{k}:cur:<uid>", out, n);
    n = schema_key_lease(out, K, UID);
    assert_layout("si:{k}:lease:<uid>", out, n);
    n = schema_key_alive(out, K, "node-1:3");
    assert_layout("si:{k}:alive:<node>:<g>", out, n);
    n = schema_key_ready(out, K, PID);
    assert_layout("si:{k}:ready:<pid>", out, n);
    n = schema_key_event(out, K, UID ".connected.1700000000000");
    assert_layout("si:{k}:evt:<eid>", out, n);

    char s[SCHEMA_SHARD_KEY_MAX];
    schema_key_shard_users(s, K);
    assert_layout("si:{k}:users", s, (int)strlen(s));
    schema_key_reauth(s, K);
    assert_layout("si:{k}:reauth", s, (int)strlen(s));
    schema_key_count(s, K);
    assert_layout("si:{k}:count", s, (int)strlen(s));
    schema_key_owner(s, K);
    assert_layout("si:{k}:owner", s, (int)strlen(s));
    schema_key_ready_partners(s, K);
    assert_layout("si:{k}:ready_partners", s, (int)strlen(s));
    schema_key_inflight(s, K);
    assert_layout("si:{k}:inflight", s, (int)strlen(s));
    schema_key_retry(s, K);
    assert_layout("si:{k}:retry", s, (int)strlen(s));
    schema_key_dead(s, K);
    assert_layout("si:{k}:dead", s, (int)strlen(s));
    schema_key_shard_prefix(s, K);
    assert_string_equal(s, "si:{7}:");
}

static void test_aads_follow_the_field_descriptions(void **state)
{
    (void)state;
    char out[SCHEMA_KEY_MAX];
    int n;
    n = schema_aad_partner(out, PID, "api_key");
    assert_layout("si:partner:<pid>:api_key", out, n);
    n = schema_aad_partner(out, PID, "webhook_secret_old");
    assert_layout("si:partner:<pid>:webhook_secret_old", out, n);
    n = schema_aad_conn_secret(out, PID, CODE);
    assert_layout("si:conn:<pid>:<code>:oauth2_client_secret", out, n);
    n = schema_aad_user_secret(out, UID);
    assert_layout("si:user:<uid>:secret", out, n);
    n = schema_aad_user_access_token(out, UID);
    assert_layout("si:user:<uid>:oauth2_access_token", out, n);
    n = schema_aad_event(out, UID ".connected.1700000000000");
    assert_layout("si:evt:<eid>", out, n);
}

static void test_shard_only_keys_fit_the_largest_shard(void **state)
{
    (void)state;
    char s[SCHEMA_SHARD_KEY_MAX];
    schema_key_ready_partners(s, UINT32_MAX);
    assert_string_equal(s, "si:{4294967295}:ready_partners");
    schema_key_inflight(s, UINT32_MAX);
    assert_string_equal(s, "si:{4294967295}:inflight");
    schema_key_shard_users(s, UINT32_MAX);
    assert_string_equal(s, "si:{4294967295}:users");
}

static void test_keys_that_do_not_fit_are_refused(void **state)
{
    (void)state;
    char big[SCHEMA_KEY_MAX + 1];
    memset(big, 'x', SCHEMA_KEY_MAX);
    big[SCHEMA_KEY_MAX] = '\0';
    char out[SCHEMA_KEY_MAX];
    assert_int_equal(schema_key_provider(out, big), -SIMAP_ETOOBIG);
    assert_int_equal(schema_key_user(out, K, big), -SIMAP_ETOOBIG);
    assert_int_equal(schema_key_tag(out, PID, CODE, big), -SIMAP_ETOOBIG);
    /* The longest key the api makes fits: a 255-byte tag, a 64-byte code
     * and a 19-digit partner id; a 320-byte email likewise. */
    char tag[256], code[65], email[321];
    memset(tag, 't', 255);
    tag[255] = '\0';
    memset(code, 'c', 64);
    code[64] = '\0';
    memset(email, 'e', 320);
    email[320] = '\0';
    assert_true(schema_key_tag(out, "9223372036854775807", code, tag) > 0);
    assert_true(schema_key_email(out, "9223372036854775807", code, email) > 0);
    /* Exactly SCHEMA_KEY_MAX - 1 bytes fit; one more does not. */
    big[SCHEMA_KEY_MAX - 1 - strlen("si:provider:")] = '\0';
    assert_int_equal(schema_key_provider(out, big), SCHEMA_KEY_MAX - 1);
    big[SCHEMA_KEY_MAX - 1 - strlen("si:provider:")] = 'x';
    big[SCHEMA_KEY_MAX - strlen("si:provider:")] = '\0';
    assert_int_equal(schema_key_provider(out, big), -SIMAP_ETOOBIG);
}

static void test_event_ids_name_their_user_or_shard_zero(void **state)
{
    (void)state;
    char uid[SCHEMA_UID_LEN + 1];
    assert_int_equal(schema_event_uid(UID ".123.45", uid), 1);
    assert_string_equal(uid, UID);
    assert_int_equal(schema_event_uid(UID ".connected.17", uid), 1);
    assert_string_equal(uid, UID);
    assert_int_equal(schema_event_uid("test.42.1700000000000.00ff00ff00ff00ff", uid), 0);
    assert_string_equal(uid, "");
    assert_int_equal(schema_event_uid("short", uid), 0);
    assert_string_equal(uid, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_names_are_the_documented_keys),
        cmocka_unit_test(test_global_keys_follow_the_table),
        cmocka_unit_test(test_role_keys_are_the_documented_ones),
        cmocka_unit_test(test_shard_keys_follow_the_table),
        cmocka_unit_test(test_aads_follow_the_field_descriptions),
        cmocka_unit_test(test_shard_only_keys_fit_the_largest_shard),
        cmocka_unit_test(test_keys_that_do_not_fit_are_refused),
        cmocka_unit_test(test_event_ids_name_their_user_or_shard_zero),
    };
    return cmocka_run_group_tests(tests, read_schema, free_schema);
}
