/*
 * superimap-import against a real redis-server and superimap-api: the
 * original SuperIMAP's four tables, written by a generator in psql's CSV
 * format with secrets encrypted by the openssl command as Gibberish did (a
 * legacy plaintext password among them, an archived user, a tracer user, a
 * Gmail OAuth2 user with a refresh token, a UID above 2^31, a tag with
 * quotes, a comma and a line break, broken rows), imported into a fresh
 * Redis and checked field by field through the public API (and, for what
 * the API never shows, the sealed secrets and the cursors, in Redis). A
 * second run changes nothing, or updates the rows that changed (a cursor
 * only forward); --dry-run writes nothing; broken rows are
 * refused with their reason and the rest imported; bad arguments, a missing
 * file or column and a wrong old key are clear errors.
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/test_api_client.h"

#include <sys/stat.h>

#include "core/crypto.h"
#include "core/hrw.h"
#include "tests/integration/import_fixture.h"

#define PROVS "/admin/api/providers/{code}"
#define PART  "/admin/api/partners/{id}"
#define CONN  "/api/v1/connections/{code}"
#define USER  "/api/v1/connections/{code}/users/{tag}"

#define KEY_ACME   "0123456789abcdef0123"
#define KEY_SECOND "abcdefabcdefabcdef01"
#define QUOTE_TAG  "say \"hi\", then bye"
#define TOKEN                                                                                 \
    "1//0gLy-refresh-token-of-a-gmail-user-long-enough-to-wrap-the-base64-over-several-lines" \
    "-XYZ0123456789abcdefghijklmnop"

static struct redis_srv redis;
static struct proc api;
static char dir[288], key_file[320];
static char out[65536];

static int suite_setup(void **state)
{
    (void)state;
    return api_suite_start(&redis, &api, "api-import");
}

static int suite_teardown(void **state)
{
    (void)state;
    return api_suite_stop(&redis);
}

/* Writes the original's imap_providers.csv into dir: Gmail, and PLAIN on
 * localhost:plain_port. */
static void write_providers(const char *plain_port)
{
    char path[700];
    const char *ts = "2015-01-02 03:04:05.123456";
    snprintf(path, sizeof path, "%s/imap_providers.csv", dir);
    FILE *f = fopen(path, "w");
    fputs(IMP_PROVIDERS_HEADER, f);
    imp_row(f, 23, "1", "GMAIL_OAUTH2", "Google Mail - OAuth 2.0", "Oauth2::ImapProvider", "1",
            "imap.gmail.com", "993", "t", "smtp.gmail.com", "587", "gmail.com", "t",
            "https://accounts.google.com", "/o/oauth2/auth", "/o/oauth2/token", "post",
            "refresh_token",
            "https://www.googleapis.com/auth/userinfo.email https://mail.google.com/", "code",
            "offline", "force", ts, ts);
    imp_row(f, 23, "2", "PLAIN", "Fake IMAP", "Plain::ImapProvider", "2", "localhost", plain_port,
            "f", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ts,
            ts);
    fclose(f);
}

/* Writes the original's export into dir: see the file's comment. */
static void write_export(void)
{
    snprintf(dir, sizeof dir, "%s/export", redis.dir);
    mkdir(dir, 0700);
    snprintf(key_file, sizeof key_file, "%s/old.key", dir);
    assert_int_equal(imp_write_key(key_file, IMP_OLD_KEY "\n"), 0);
    char other_key[320];
    snprintf(other_key, sizeof other_key, "%s/other.key", dir);
    assert_int_equal(imp_write_key(other_key, "not-the-original-key"), 0);
    char *client_secret = imp_encrypt(dir, key_file, "gmail-client-secret");
    char *alice = imp_encrypt(dir, key_file, "alice-pass");
    char *gone = imp_encrypt(dir, key_file, "gone-pass");
    char *tracer = imp_encrypt(dir, key_file, "tracer-pass");
    char *quote = imp_encrypt(dir, key_file, "quote\npass, \"two\" lines");
    char *token = imp_encrypt(dir, key_file, TOKEN);
    char *wrong = imp_encrypt(dir, other_key, "wrong-key-pass");
    assert_non_null(client_secret);
    assert_non_null(alice);
    assert_non_null(gone);
    assert_non_null(tracer);
    assert_non_null(quote);
    assert_non_null(token);
    assert_non_null(wrong);
    assert_non_null(strchr(token, '\n')); /* MIME base64 over several lines */

    char path[700];
    const char *ts = "2015-01-02 03:04:05.123456";
    snprintf(path, sizeof path, "%s/partners.csv", dir);
    FILE *f = fopen(path, "w");
    fputs(IMP_PARTNERS_HEADER, f);
    imp_row(f, 11, "1", KEY_ACME, "Acme, \"Mail\" Inc.", "https://acme.example/new_mail",
            "https://acme.example/connected", NULL, "https://acme.example/ok",
            "https://acme.example/fail", "2", ts, ts);
    imp_row(f, 11, "2", "fedcba9876543210fedc", "Relative", "https://rel.example/n", NULL, NULL,
            "/success.html", "/failure.html", "1", ts, ts);
    imp_row(f, 11, "3", KEY_SECOND, "Second", "https://second.example/n", NULL, NULL, NULL, NULL,
            "1", ts, ts);
    fclose(f);

    write_providers("10143");

    snprintf(path, sizeof path, "%s/partner_connections.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_CONNS_HEADER, f);
    imp_row(f, 9, "10", "1", "1", "1", "client-1.apps.googleusercontent.com", client_secret,
            "Oauth2::PartnerConnection", ts, ts);
    imp_row(f, 9, "11", "1", "2", "7", NULL, NULL, "Plain::PartnerConnection", ts, ts);
    imp_row(f, 9, "12", "2", "2", "1", NULL, NULL, "Plain::PartnerConnection", ts, ts);
    imp_row(f, 9, "13", "3", "2", "0", NULL, NULL, "Plain::PartnerConnection", ts, ts);
    fclose(f);

    snprintf(path, sizeof path, "%s/users.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_USERS_HEADER, f);
    imp_row(f, 19, "100", "11", "alice", "alice@example.com", "alice", alice, NULL,
            "2015-03-04 05:06:07.5", "f", "f", "41", "1234", ts, "2015-03-05 00:00:00",
            "2015-03-06 10:00:00+02", "3", "Plain::User", ts, ts);
    imp_row(f, 19, "101", "11", "legacy", "legacy@example.com", "legacy", "plain legacy pass", NULL,
            "2015-03-04 05:06:07", "f", "f", NULL, NULL, NULL, NULL, NULL, "0", "Plain::User", ts,
            ts);
    imp_row(f, 19, "102", "11", "gone", "gone@example.com", "gone", gone, NULL, NULL, "t", "f", "7",
            "1234", NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    imp_row(f, 19, "103", "11", "tracer", "tracer@example.com", "tracer", tracer, NULL,
            "2015-03-04 05:06:07", "f", "t", "5", "77", NULL, NULL, NULL, "0", "Plain::User", ts,
            ts);
    imp_row(f, 19, "104", "10", "gmail-user", "someone@gmail.com", NULL, NULL, token,
            "2015-03-04 05:06:07", "f", "f", "3000000000", "4000000000", NULL, NULL, NULL, "9",
            "Oauth2::User", ts, ts);
    imp_row(f, 19, "105", "11", QUOTE_TAG, "q@example.com", "q", quote, NULL, "2015-03-04 05:06:07",
            "f", "f", NULL, "1234", NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    /* Refused: a tag taken (case-insensitively), a secret under another
     * key, an unknown connection, a connection of a refused partner, a
     * broken timestamp, a row cut short, an id forging a report line, an id
     * already read. */
    imp_row(f, 19, "106", "11", "ALICE", "other@example.com", "o", alice, NULL,
            "2015-03-04 05:06:07", "f", "f", NULL, NULL, NULL, NULL, NULL, "0", "Plain::User", ts,
            ts);
    imp_row(f, 19, "107", "11", "wrongkey", "w@example.com", "w", wrong, NULL,
            "2015-03-04 05:06:07", "f", "f", NULL, NULL, NULL, NULL, NULL, "0", "Plain::User", ts,
            ts);
    imp_row(f, 19, "108", "99", "orphan", "o@example.com", "o", alice, NULL, NULL, "f", "f", NULL,
            NULL, NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    imp_row(f, 19, "109", "12", "relative", "r@example.com", "r", alice, NULL, NULL, "f", "f", NULL,
            NULL, NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    imp_row(f, 19, "110", "11", "badtime", "bt@example.com", "bt", alice, NULL, "yesterday", "f",
            "f", NULL, NULL, NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    fputs("111,11,short-row,s@example.com\n", f);
    imp_row(f, 19, "7\nrefused users.csv line 99 id 1: forged", "11", "forger", "f@example.com",
            "f", alice, NULL, NULL, "f", "f", NULL, NULL, NULL, NULL, NULL, "0", "Plain::User", ts,
            ts);
    imp_row(f, 19, "100", "11", "alice-again", "aa@example.com", "aa", alice, NULL, NULL, "f", "f",
            NULL, NULL, NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    fclose(f);
    free(client_secret);
    free(alice);
    free(gone);
    free(tracer);
    free(quote);
    free(token);
    free(wrong);
}

static int setup(void **state)
{
    (void)state;
    freeReplyObject(rcmd(&redis, "FLUSHALL"));
    write_export();
    return 0;
}

static int import(const char *extra)
{
    if (extra != NULL)
        return imp_run(dir, redis.url, out, sizeof out, "--from", dir, "--old-key-file", key_file,
                       extra, NULL);
    return imp_run(dir, redis.url, out, sizeof out, "--from", dir, "--old-key-file", key_file,
                   NULL);
}

static void expect_out(const char *needle)
{
    if (strstr(out, needle) == NULL) {
        /* Whole, on stderr: cmocka's message buffer would cut it. */
        fprintf(stderr, "the import's output:\n%s\n", out);
        fail_msg("want \"%s\" in the import's output (above)", needle);
    }
}

/* The uid of the live user tag of partner 1's connection code. */
static void uid_of(const char *code, const char *ltag, char uid[32])
{
    redisReply *r = rcmd(&redis, "GET si:tag:1:%s:%s", code, ltag);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(uid, 32, "%s", r->str);
    freeReplyObject(r);
}

/* Decrypts field of key (AAD aad) with superimap's key. */
static char *open_sealed(const char *key, const char *field, const char *aad)
{
    redisReply *r = rcmd(&redis, "HGET %s %s", key, field);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    struct crypto_keys *keys;
    char err[128];
    assert_int_equal(crypto_keys_init(&keys, IMP_NEW_KEY, NULL, err, sizeof err), 0);
    char *plain = NULL;
    assert_int_equal(crypto_decrypt(keys, r->str, aad, &plain, NULL), 0);
    crypto_keys_free(keys);
    freeReplyObject(r);
    return plain;
}

/* Asserts that the live user ltag of connection code has secret want
 * (sealed with superimap's key); its uid into uid. */
static void expect_secret(const char *code, const char *ltag, const char *want, char uid[32])
{
    uid_of(code, ltag, uid);
    char aad[64], ukey[96];
    snprintf(aad, sizeof aad, "si:user:%s:secret", uid);
    snprintf(ukey, sizeof ukey, "si:{%u}:user:%s", hrw_shard(uid, 64), uid);
    char *secret = open_sealed(ukey, "secret", aad);
    assert_string_equal(secret, want);
    free(secret);
}

static void expect_cursor(const char *uid, const char *validity, const char *last)
{
    redisReply *r =
        rcmd(&redis, "HMGET si:{%u}:cur:%s uidvalidity last_uid", hrw_shard(uid, 64), uid);
    if (validity == NULL) {
        assert_null(r->element[0]->str);
    } else {
        assert_string_equal(r->element[0]->str, validity);
        assert_string_equal(r->element[1]->str, last);
    }
    freeReplyObject(r);
}

static long long count_keys(const char *pattern)
{
    redisReply *r = rcmd(&redis, "KEYS %s", pattern);
    long long n = (long long)r->elements;
    freeReplyObject(r);
    return n;
}

static void test_import_brings_every_field_through_the_api(void **state)
{
    (void)state;
    assert_int_equal(import(NULL), 1); /* some rows refused */
    expect_out("partners: 2 imported, 0 updated, 0 unchanged, 1 refused");
    expect_out("imap_providers: 2 imported, 0 updated, 0 unchanged, 0 refused");
    expect_out("partner_connections: 3 imported, 0 updated, 0 unchanged, 1 refused");
    expect_out("users: 6 imported, 0 updated, 0 unchanged, 8 refused");

    /* Partners, with their original keys. */
    struct api_resp r = {0};
    admin_json(&r, api.port, "GET", "/admin/api/partners/1", NULL);
    EXPECT(&r, 200, "GET", PART);
    assert_string_equal(jstr(&r, "name"), "Acme, \"Mail\" Inc.");
    assert_string_equal(jstr(&r, "new_mail_webhook_url"), "https://acme.example/new_mail");
    assert_string_equal(jstr(&r, "user_connected_webhook_url"), "https://acme.example/connected");
    assert_true(YAJL_IS_NULL(json_get(r.json, "user_disconnected_webhook_url")));
    assert_string_equal(jstr(&r, "success_url"), "https://acme.example/ok");
    assert_string_equal(jstr(&r, "failure_url"), "https://acme.example/fail");
    admin_json(&r, api.port, "GET", "/admin/api/partners/2", NULL);
    EXPECT(&r, 404, "GET", PART);
    api_json(&r, api.port, "GET", "/api/v1/connections", KEY_SECOND, NULL);
    assert_int_equal(r.status, 200);
    api_json(&r, api.port, "GET", "/api/v1/connections", KEY_ACME, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "GMAIL_OAUTH2"));
    char *key = open_sealed("si:partner:1", "api_key", "si:partner:1:api_key");
    assert_string_equal(key, KEY_ACME);
    free(key);
    /* A partner made later gets an id after the imported ones. */
    admin_json(&r, api.port, "POST", "/admin/api/partners",
               "{\"name\":\"New\",\"new_mail_webhook_url\":\"https://new.example/n\"}");
    EXPECT(&r, 201, "POST", "/admin/api/partners");
    int64_t id = 0;
    json_get_int(r.json, "id", &id);
    assert_int_equal(id, 4);

    /* Providers. */
    admin_json(&r, api.port, "GET", "/admin/api/providers/GMAIL_OAUTH2", NULL);
    EXPECT(&r, 200, "GET", PROVS);
    assert_string_equal(jstr(&r, "auth"), "oauth2");
    assert_string_equal(jstr(&r, "tls"), "implicit");
    assert_string_equal(jstr(&r, "imap_host"), "imap.gmail.com");
    int64_t port = 0;
    json_get_int(r.json, "imap_port", &port);
    assert_int_equal(port, 993);
    assert_string_equal(jstr(&r, "oauth2_authorize_url"),
                        "https://accounts.google.com/o/oauth2/auth");
    assert_string_equal(jstr(&r, "oauth2_token_url"), "https://accounts.google.com/o/oauth2/token");
    assert_string_equal(jstr(&r, "oauth2_scope"),
                        "https://www.googleapis.com/auth/userinfo.email https://mail.google.com/");
    assert_string_equal(jstr(&r, "smtp_host"), "smtp.gmail.com");
    json_get_int(r.json, "smtp_port", &port);
    assert_int_equal(port, 587);
    assert_string_equal(jstr(&r, "smtp_tls"), "starttls");
    assert_string_equal(jstr(&r, "smtp_domain"), "gmail.com");
    admin_json(&r, api.port, "GET", "/admin/api/providers/PLAIN", NULL);
    EXPECT(&r, 200, "GET", PROVS);
    assert_string_equal(jstr(&r, "auth"), "plain");
    assert_string_equal(jstr(&r, "tls"), "none");
    json_get_int(r.json, "imap_port", &port);
    assert_int_equal(port, 10143);
    assert_null(json_get_str(r.json, "smtp_host"));

    /* Connections, the OAuth2 client's secret decrypted and sealed again. */
    api_json(&r, api.port, "GET", "/api/v1/connections/GMAIL_OAUTH2", KEY_ACME, NULL);
    EXPECT(&r, 200, "GET", CONN);
    assert_string_equal(jstr(&r, "oauth2_client_id"), "client-1.apps.googleusercontent.com");
    assert_true(YAJL_IS_TRUE(json_get(r.json, "oauth2_client_secret_set")));
    char *cs = open_sealed("si:conn:1:GMAIL_OAUTH2", "oauth2_client_secret",
                           "si:conn:1:GMAIL_OAUTH2:oauth2_client_secret");
    assert_string_equal(cs, "gmail-client-secret");
    free(cs);
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN", KEY_ACME, NULL);
    EXPECT(&r, 200, "GET", CONN);
    int64_t count = 0;
    json_get_int(r.json, "users_count", &count);
    assert_int_equal(count, 5);

    /* Users: fields, secrets, cursors. */
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/alice", KEY_ACME, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "email"), "alice@example.com");
    assert_string_equal(jstr(&r, "login_username"), "alice");
    assert_string_equal(jstr(&r, "connected_at"), "2015-03-04T05:06:07.500Z");
    assert_string_equal(jstr(&r, "last_email_at"), "2015-03-05T00:00:00.000Z");
    assert_string_equal(jstr(&r, "last_login_at"), "2015-03-06T08:00:00.000Z");
    assert_true(YAJL_IS_FALSE(json_get(r.json, "archived")));
    assert_true(YAJL_IS_FALSE(json_get(r.json, "enable_tracer")));
    char uid[32];
    expect_secret("PLAIN", "alice", "alice-pass", uid);
    expect_cursor(uid, "1234", "41");
    redisReply *member = rcmd(&redis, "ZSCORE si:{%u}:users %s", hrw_shard(uid, 64), uid);
    assert_int_equal(member->type, REDIS_REPLY_STRING);
    freeReplyObject(member);

    expect_secret("PLAIN", "legacy", "plain legacy pass", uid);
    expect_cursor(uid, NULL, NULL);

    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/gone", KEY_ACME, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_true(YAJL_IS_TRUE(json_get(r.json, "archived")));
    assert_string_equal(jstr(&r, "state"), "archived");
    assert_true(YAJL_IS_NULL(json_get(r.json, "connected_at")));

    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/tracer", KEY_ACME, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_true(YAJL_IS_TRUE(json_get(r.json, "enable_tracer")));
    uid_of("PLAIN", "tracer", uid);
    expect_cursor(uid, "77", "5");
    redisReply *tracing =
        rcmd(&redis, "SISMEMBER si:{%u}:tracer_users %s", hrw_shard(uid, 64), uid);
    assert_int_equal(tracing->integer, 1); /* the tracer sender finds it */
    freeReplyObject(tracing);

    api_json(&r, api.port, "GET", "/api/v1/connections/GMAIL_OAUTH2/users/gmail-user", KEY_ACME,
             NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "email"), "someone@gmail.com");
    assert_string_equal(jstr(&r, "imap_provider_code"), "GMAIL_OAUTH2");
    expect_secret("GMAIL_OAUTH2", "gmail-user", TOKEN, uid);
    expect_cursor(uid, "4000000000", "3000000000");

    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/say%20%22hi%22%2C%20then%20bye",
             KEY_ACME, NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_string_equal(jstr(&r, "tag"), QUOTE_TAG);
    /* last_uid_validity without last_uid: no cursor (the usual baseline). */
    expect_secret("PLAIN", "say \"hi\", then bye", "quote\npass, \"two\" lines", uid);
    expect_cursor(uid, NULL, NULL);

    /* Refused rows: each with its reason, none written. */
    expect_out("refused partners.csv line 3 id 2: success_url is a relative URL");
    expect_out("refused partner_connections.csv line 4 id 12: unknown partner 2");
    expect_out("id 106: duplicate tag \"ALICE\"");
    expect_out("id 107: undecryptable login_password");
    expect_out("id 108: unknown partner connection");
    expect_out("id 109: unknown partner connection");
    expect_out("id 110: connected_at is not a timestamp");
    expect_out("refused users.csv line 15 id 111: has 4 fields where the header has 19");
    expect_out("refused users.csv line 16 id ?: id is not a positive integer");
    assert_null(strstr(out, "\nrefused users.csv line 99"));
    expect_out("refused users.csv line 18 id 100: duplicate id");
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/wrongkey", KEY_ACME, NULL);
    EXPECT(&r, 404, "GET", USER);

    /* No user_connected event for imported users. */
    assert_int_equal(count_keys("si:*:evt:*"), 0);
    api_resp_free(&r);
}

/* 1 for the keys the running api's own heartbeat rewrites (si:apis,
 * si:node:<id>, si:api:epoch, si:gen, alive keys): not the import's. */
static int is_fleet_key(const char *k)
{
    return strcmp(k, "si:apis") == 0 || strncmp(k, "si:node:", 8) == 0 ||
           strcmp(k, "si:api:epoch") == 0 || strcmp(k, "si:gen") == 0 ||
           strstr(k, ":alive:") != NULL;
}

/* Every key and value of the database but the fleet's, sorted (keys, and
 * each hash's fields), as one string (free() it). */
static char *dump_all(void)
{
    redisReply *keys = rcmd(&redis, "KEYS *");
    size_t cap = 1 << 20, len = 0;
    char *s = calloc(1, cap);
    char **names = calloc(keys->elements + 1, sizeof *names);
    for (size_t i = 0; i < keys->elements; i++)
        names[i] = keys->element[i]->str;
    for (size_t i = 0; i < keys->elements; i++)
        for (size_t j = i + 1; j < keys->elements; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < keys->elements; i++) {
        if (is_fleet_key(names[i]))
            continue;
        redisReply *d = rcmd(&redis, "DUMP %s", names[i]);
        len += (size_t)snprintf(s + len, cap - len, "%s=%zu;", names[i], d->len);
        freeReplyObject(d);
        if (strncmp(names[i], "si:changes", 10) != 0) {
            redisReply *t = rcmd(&redis, "TYPE %s", names[i]);
            if (strcmp(t->str, "hash") == 0) {
                /* Field by field in name order: a hash too big for a
                 * listpack is a dict whose order changes as Redis rehashes
                 * it, with nothing written. */
                redisReply *h = rcmd(&redis, "HGETALL %s", names[i]);
                size_t nf = h->elements / 2;
                size_t *order = calloc(nf + 1, sizeof *order);
                for (size_t k = 0; k < nf; k++)
                    order[k] = 2 * k;
                for (size_t a = 0; a < nf; a++)
                    for (size_t b = a + 1; b < nf; b++)
                        if (strcmp(h->element[order[a]]->str, h->element[order[b]]->str) > 0) {
                            size_t tmp = order[a];
                            order[a] = order[b];
                            order[b] = tmp;
                        }
                for (size_t k = 0; k < nf; k++)
                    len += (size_t)snprintf(s + len, cap - len, "%s|%s|", h->element[order[k]]->str,
                                            h->element[order[k] + 1]->str);
                free(order);
                freeReplyObject(h);
            }
            freeReplyObject(t);
        }
    }
    free(names);
    freeReplyObject(keys);
    return s;
}

static void test_second_run_changes_nothing(void **state)
{
    (void)state;
    assert_int_equal(import(NULL), 1);
    char *before = dump_all();
    redisReply *x = rcmd(&redis, "XLEN si:changes");
    long long changes = x->integer;
    freeReplyObject(x);
    assert_int_equal(import(NULL), 1);
    expect_out("partners: 0 imported, 0 updated, 2 unchanged, 1 refused");
    expect_out("imap_providers: 0 imported, 0 updated, 2 unchanged, 0 refused");
    expect_out("partner_connections: 0 imported, 0 updated, 3 unchanged, 1 refused");
    expect_out("users: 0 imported, 0 updated, 6 unchanged, 8 refused");
    char *after = dump_all();
    assert_string_equal(before, after);
    x = rcmd(&redis, "XLEN si:changes");
    assert_int_equal(x->integer, changes);
    freeReplyObject(x);
    free(before);
    free(after);
}

/* A row changed in the original since the first run is updated (the
 * partner's key replaced at once, as the original's key is the one in use),
 * the others left alone; a user's cursor only moves forward. */
static void test_second_run_updates_changed_rows(void **state)
{
    (void)state;
    assert_int_equal(import(NULL), 1);
    char alice[32], tracer[32], gmail[32];
    uid_of("PLAIN", "alice", alice);
    uid_of("PLAIN", "tracer", tracer);
    uid_of("GMAIL_OAUTH2", "gmail-user", gmail);
    /* The fleet moved on meanwhile: alice's cursor past the original's,
     * tracer's into a new UIDVALIDITY. */
    freeReplyObject(rcmd(&redis, "HSET si:{%u}:cur:%s last_uid 60", hrw_shard(alice, 64), alice));
    freeReplyObject(rcmd(&redis, "HSET si:{%u}:cur:%s uidvalidity 78 last_uid 2",
                         hrw_shard(tracer, 64), tracer));

    char path[700];
    const char *ts = "2015-01-02 03:04:05";
    snprintf(path, sizeof path, "%s/partners.csv", dir);
    FILE *f = fopen(path, "w");
    fputs(IMP_PARTNERS_HEADER, f);
    imp_row(f, 11, "1", "00112233445566778899", "Acme renamed", "https://acme.example/new_mail2",
            "https://acme.example/connected", NULL, "https://acme.example/ok",
            "https://acme.example/fail", "2", ts, ts);
    imp_row(f, 11, "3", KEY_SECOND, "Second", "https://second.example/n", NULL, NULL, NULL, NULL,
            "1", ts, ts);
    fclose(f);
    write_providers("10144");
    char *client_secret = imp_encrypt(dir, key_file, "gmail-client-secret-2");
    char *pass = imp_encrypt(dir, key_file, "alice-pass-2");
    char *tpass = imp_encrypt(dir, key_file, "tracer-pass");
    char *gpass = imp_encrypt(dir, key_file, "gone-pass");
    char *token = imp_encrypt(dir, key_file, TOKEN);
    assert_non_null(client_secret);
    assert_non_null(pass);
    assert_non_null(tpass);
    assert_non_null(gpass);
    assert_non_null(token);
    snprintf(path, sizeof path, "%s/partner_connections.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_CONNS_HEADER, f);
    imp_row(f, 9, "10", "1", "1", "1", "client-2.apps.googleusercontent.com", client_secret,
            "Oauth2::PartnerConnection", ts, ts);
    imp_row(f, 9, "11", "1", "2", "7", NULL, NULL, "Plain::PartnerConnection", ts, ts);
    fclose(f);
    snprintf(path, sizeof path, "%s/users.csv", dir);
    f = fopen(path, "w");
    fputs(IMP_USERS_HEADER, f);
    /* alice: a new password, a cursor behind the fleet's. */
    imp_row(f, 19, "100", "11", "alice", "alice@example.com", "alice", pass, NULL,
            "2015-03-04 05:06:07.5", "f", "f", "50", "1234", ts, NULL, NULL, "3", "Plain::User", ts,
            ts);
    /* legacy: a new tag. */
    imp_row(f, 19, "101", "11", "legacy2", "legacy@example.com", "legacy", "plain legacy pass",
            NULL, "2015-03-04 05:06:07", "f", "f", NULL, NULL, NULL, NULL, NULL, "0", "Plain::User",
            ts, ts);
    /* gone: restored. */
    imp_row(f, 19, "102", "11", "gone", "gone@example.com", "gone", gpass, NULL, NULL, "f", "f",
            "7", "1234", NULL, NULL, NULL, "0", "Plain::User", ts, ts);
    /* tracer: a cursor further on, but in the UIDVALIDITY the fleet left. */
    imp_row(f, 19, "103", "11", "tracer", "tracer@example.com", "tracer", tpass, NULL,
            "2015-03-04 05:06:07", "f", "t", "80", "77", NULL, NULL, NULL, "0", "Plain::User", ts,
            ts);
    /* gmail-user: the original announced more mail since. */
    imp_row(f, 19, "104", "10", "gmail-user", "someone@gmail.com", NULL, NULL, token,
            "2015-03-04 05:06:07", "f", "f", "3000000005", "4000000000", NULL, NULL, NULL, "9",
            "Oauth2::User", ts, ts);
    fclose(f);
    free(client_secret);
    free(pass);
    free(tpass);
    free(gpass);
    free(token);

    /* A dry run reports and writes nothing. */
    redisReply *x = rcmd(&redis, "XLEN si:changes");
    long long changes = x->integer;
    freeReplyObject(x);
    char *before = dump_all();
    assert_int_equal(import("--dry-run"), 0);
    expect_out("would update partners.csv line 2 id 1: name changed");
    expect_out("dry run: users: 0 to import, 4 to update, 1 unchanged, 0 refused");
    char *after = dump_all();
    assert_string_equal(before, after);
    free(before);
    free(after);

    assert_int_equal(import(NULL), 0);
    expect_out("partners: 0 imported, 1 updated, 1 unchanged, 0 refused");
    expect_out("imap_providers: 0 imported, 1 updated, 1 unchanged, 0 refused");
    expect_out("partner_connections: 0 imported, 1 updated, 1 unchanged, 0 refused");
    expect_out("users: 0 imported, 4 updated, 1 unchanged, 0 refused");
    expect_out("updated users.csv line 2 id 100: secret changed");
    expect_out("updated users.csv line 3 id 101: tag changed");
    expect_out("updated users.csv line 6 id 104: cursor changed");
    x = rcmd(&redis, "XLEN si:changes");
    assert_int_equal(x->integer, changes + 4);
    freeReplyObject(x);

    struct api_resp r = {0};
    api_json(&r, api.port, "GET", "/api/v1/connections", KEY_ACME, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "Partner not found. Check your api_key.");
    api_json(&r, api.port, "GET", "/api/v1/connections/GMAIL_OAUTH2", "00112233445566778899", NULL);
    EXPECT(&r, 200, "GET", CONN);
    assert_string_equal(jstr(&r, "oauth2_client_id"), "client-2.apps.googleusercontent.com");
    char *cs = open_sealed("si:conn:1:GMAIL_OAUTH2", "oauth2_client_secret",
                           "si:conn:1:GMAIL_OAUTH2:oauth2_client_secret");
    assert_string_equal(cs, "gmail-client-secret-2");
    free(cs);
    admin_json(&r, api.port, "GET", "/admin/api/partners/1", NULL);
    EXPECT(&r, 200, "GET", PART);
    assert_string_equal(jstr(&r, "name"), "Acme renamed");
    assert_string_equal(jstr(&r, "new_mail_webhook_url"), "https://acme.example/new_mail2");
    admin_json(&r, api.port, "GET", "/admin/api/providers/PLAIN", NULL);
    int64_t port = 0;
    json_get_int(r.json, "imap_port", &port);
    assert_int_equal(port, 10144);

    char uid[32];
    expect_secret("PLAIN", "alice", "alice-pass-2", uid);
    expect_cursor(alice, "1234", "60");
    expect_cursor(tracer, "78", "2");
    expect_cursor(gmail, "4000000000", "3000000005");
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/legacy2", "00112233445566778899",
             NULL);
    EXPECT(&r, 200, "GET", USER);
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/legacy", "00112233445566778899",
             NULL);
    assert_int_equal(r.status, 404);
    api_json(&r, api.port, "GET", "/api/v1/connections/PLAIN/users/gone", "00112233445566778899",
             NULL);
    EXPECT(&r, 200, "GET", USER);
    assert_true(YAJL_IS_FALSE(json_get(r.json, "archived")));
    assert_int_equal(rint_(&redis, "EXISTS %s", "si:tag:1:PLAIN:gone"), 1);
    assert_int_equal(rint_(&redis, "EXISTS %s", "si:tag:1:PLAIN:legacy"), 0);
    api_resp_free(&r);

    /* And a third run finds everything as it is. */
    before = dump_all();
    assert_int_equal(import(NULL), 0);
    expect_out("users: 0 imported, 0 updated, 5 unchanged, 0 refused");
    after = dump_all();
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_dry_run_writes_nothing(void **state)
{
    (void)state;
    assert_int_equal(import("--dry-run"), 1);
    expect_out("dry run: partners: 2 to import, 0 to update, 0 unchanged, 1 refused");
    expect_out("dry run: users: 6 to import, 0 to update, 0 unchanged, 8 refused");
    expect_out("would import users.csv line 2 id 100: alice");
    expect_out("id 107: undecryptable login_password");
    redisReply *n = rcmd(&redis, "DBSIZE");
    assert_int_equal(n->integer, 0);
    freeReplyObject(n);
    /* After a real run, a dry run finds everything unchanged. */
    assert_int_equal(import(NULL), 1);
    redisReply *before = rcmd(&redis, "DBSIZE");
    assert_int_equal(import("--dry-run"), 1);
    expect_out("dry run: users: 0 to import, 0 to update, 6 unchanged, 8 refused");
    n = rcmd(&redis, "DBSIZE");
    assert_int_equal(n->integer, before->integer);
    freeReplyObject(n);
    freeReplyObject(before);
}

static void test_bad_input_is_a_clear_error(void **state)
{
    (void)state;
    assert_int_equal(imp_run(dir, redis.url, out, sizeof out, "--from", dir, NULL), 2);
    expect_out("--from and --old-key-file are required");
    assert_int_equal(imp_run(dir, redis.url, out, sizeof out, "--bogus", NULL), 2);
    expect_out("unknown or incomplete argument '--bogus'");
    assert_int_equal(imp_run(dir, redis.url, out, sizeof out, "--help", NULL), 0);
    expect_out("SUPERIMAP_ENCRYPTION_KEY");
    char missing[700];
    snprintf(missing, sizeof missing, "%s/nothing.key", dir);
    assert_int_equal(
        imp_run(dir, redis.url, out, sizeof out, "--from", dir, "--old-key-file", missing, NULL),
        2);
    expect_out("cannot open --old-key-file");

    /* A missing column, a missing file, a file that is not CSV: nothing
     * is written (but si:meta, which the fleet's first node writes too). */
    char path[700];
    snprintf(path, sizeof path, "%s/imap_providers.csv", dir);
    FILE *f = fopen(path, "w");
    fputs("id,code,title\n1,PLAIN,x\n", f);
    fclose(f);
    assert_int_equal(import(NULL), 2);
    expect_out("imap_providers.csv lacks the column type");
    expect_out("imap_providers.csv lacks the column imap_host");
    assert_int_equal(count_keys("si:*"), count_keys("si:meta"));
    remove(path);
    assert_int_equal(import(NULL), 2);
    expect_out("cannot open");
    f = fopen(path, "w");
    fputs(IMP_PROVIDERS_HEADER "1,\"PLAIN\"x\n", f);
    fclose(f);
    assert_int_equal(import(NULL), 2);
    expect_out("imap_providers.csv line 2: text after a closing quote");
    /* Found before partners.csv, read first, is written. */
    assert_int_equal(count_keys("si:*"), count_keys("si:meta"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_import_brings_every_field_through_the_api, setup),
        cmocka_unit_test_setup(test_second_run_changes_nothing, setup),
        cmocka_unit_test_setup(test_second_run_updates_changed_rows, setup),
        cmocka_unit_test_setup(test_dry_run_writes_nothing, setup),
        cmocka_unit_test_setup(test_bad_input_is_a_clear_error, setup),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
