/*
 * core/config: the SUPERIMAP_* table, parsing, --help and the README rows.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/redis_url.h"

#define OFF(field) offsetof(struct config, field)

#define API   CONFIG_ROLE_API
#define WAT   CONFIG_ROLE_WATCHER
#define DIS   CONFIG_ROLE_DISPATCHER
#define NODES CONFIG_ROLE_NODES
#define FAKE  CONFIG_ROLE_FAKE_IMAPD
#define IMP   CONFIG_ROLE_IMPORT

static int check_redis_url(const char *v, char *err, size_t errlen)
{
    struct redis_addr a;
    return redis_url_parse(v, NULL, &a, err, errlen) < 0 ? -1 : 0;
}

static int is_hex_key(const char *v, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f') ||
              (v[i] >= 'A' && v[i] <= 'F')))
            return 0;
    return 1;
}

static int check_key(const char *v, char *err, size_t errlen)
{
    if (is_hex_key(v, strlen(v)))
        return 0;
    snprintf(err, errlen, "must be 64 hexadecimal digits (32 bytes; `openssl rand -hex 32`)");
    return -1;
}

static int check_key_list(const char *v, char *err, size_t errlen)
{
    while (*v) {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : strlen(v);
        if (!is_hex_key(v, n)) {
            snprintf(err, errlen, "must be a comma-separated list of 64-hex-digit keys");
            return -1;
        }
        v += n + (comma != NULL);
    }
    return 0;
}

static int check_addr(const char *v, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (config_split_addr(v, host, sizeof host, &port) == 0)
        return 0;
    snprintf(err, errlen, "must be host:port (port 0 to 65535; 0 picks a free port)");
    return -1;
}

static int check_node_id(const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);
    if (n == 0 || n > 100) {
        snprintf(err, errlen, "must be 1 to 100 characters");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            snprintf(err, errlen, "may use only letters, digits, '-', '_' and '.'");
            return -1;
        }
    }
    return 0;
}

static int check_url(const char *v, char *err, size_t errlen)
{
    if (strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0)
        return 0;
    snprintf(err, errlen, "must be an http:// or https:// URL");
    return -1;
}

static int check_token(const char *v, char *err, size_t errlen)
{
    if (strlen(v) >= 16)
        return 0;
    snprintf(err, errlen, "must be at least 16 characters");
    return -1;
}

/* SUPERIMAP_FAKE_ADDRS: IPv4 or IPv6 addresses, comma-separated; "a.b.c.d-e"
 * stands for a.b.c.d to a.b.c.e. */
static int check_addr_list(const char *v, char *err, size_t errlen)
{
    int n = 0;
    while (*v) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        if (len == 0 || len >= 64 || strspn(v, "0123456789abcdefABCDEF.:-") < len) {
            snprintf(err, errlen, "must be IP addresses, comma-separated (127.0.0.1-8 is a range)");
            return -1;
        }
        n++;
        v += len + (comma != NULL);
    }
    if (n > 0)
        return 0;
    snprintf(err, errlen, "must name at least one address");
    return -1;
}

/* A comma-separated list of words from kinds (",a,b,"); noun names one in
 * the error. */
static int check_words(const char *v, const char *kinds, const char *noun, char *err, size_t errlen)
{
    while (*v) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        char word[32];
        if (len == 0 || len + 3 > sizeof word) {
            snprintf(err, errlen, "must be %s kinds, comma-separated: %s", noun, kinds);
            return -1;
        }
        snprintf(word, sizeof word, ",%.*s,", (int)len, v);
        if (strstr(kinds, word) == NULL) {
            snprintf(err, errlen, "unknown %s '%.*s'; kinds: %s", noun, (int)len, v, kinds);
            return -1;
        }
        v += len + (comma != NULL);
    }
    return 0;
}

/* SUPERIMAP_FAKE_FAULTS: the kinds of cmd/fake-imapd/faults.c. */
static int check_fault_list(const char *v, char *err, size_t errlen)
{
    return check_words(
        v, ",bad,no,gibberish,bye,drop,halfopen,noinbox,uidshift,trickle,authfail,limit,all,none,",
        "fault", err, errlen);
}

/* SUPERIMAP_FAKE_PROFILES: the profiles of cmd/fake-imapd/server.c. */
static int check_profile_list(const char *v, char *err, size_t errlen)
{
    return check_words(v, ",notify,special-use,condstore,qresync,x-gm-ext-1,all,none,", "profile",
                       err, errlen);
}

static int check_probability(const char *v, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno == 0 && end != v && *end == '\0' && d >= 0.0 && d <= 1.0)
        return 0;
    snprintf(err, errlen, "must be a number from 0 to 1");
    return -1;
}

/* clang-format off */
const struct config_var config_vars[] = {
    {"SUPERIMAP_REDIS_URL", CONFIG_STR, NODES | IMP, "redis://127.0.0.1:6379/0", 0, 0, NULL, 0,
     OFF(redis_url), check_redis_url,
     "Redis to use: redis://[:password@]host:port/db, unix:///path/redis.sock[?db=N] or "
     "redis+sentinel://[:password@]host:port[,host:port...]/MASTER[?db=N]"},
    {"SUPERIMAP_REDIS_PASSWORD", CONFIG_STR, NODES | IMP, NULL, 0, 0, NULL, CONFIG_SECRET,
     OFF(redis_password), NULL, "Redis AUTH password; overrides one given in the URL"},
    {"SUPERIMAP_REDIS_SENTINEL_PASSWORD", CONFIG_STR, NODES | IMP, NULL, 0, 0, NULL, CONFIG_SECRET,
     OFF(redis_sentinel_password), NULL,
     "AUTH password of the Redis Sentinels of a redis+sentinel:// URL, when they have one"},
    {"SUPERIMAP_REDIS_TIMEOUT_MS", CONFIG_INT, NODES | IMP, "5000", 100, 600000, NULL, 0,
     OFF(redis_timeout_ms), NULL, "Redis connect timeout and per-command timeout"},
    {"SUPERIMAP_REDIS_MIN_REPLICAS_ACK", CONFIG_INT, WAT | DIS, "0", 0, 16, NULL, 0,
     OFF(redis_min_replicas_ack), NULL,
     "Replicas that must acknowledge (WAIT, timeout a quarter of SUPERIMAP_REDIS_TIMEOUT_MS) each "
     "recorded mail and delivery before it counts as done; 0: no WAIT"},
    {"SUPERIMAP_ENCRYPTION_KEY", CONFIG_STR, NODES | IMP, NULL, 0, 0, NULL,
     CONFIG_SECRET | CONFIG_REQUIRED, OFF(encryption_key), check_key,
     "AES-256-GCM key for secrets at rest, 64 hex digits; the same on every node"},
    {"SUPERIMAP_ENCRYPTION_OLD_KEYS", CONFIG_STR, NODES | IMP, NULL, 0, 0, NULL, CONFIG_SECRET,
     OFF(encryption_old_keys), check_key_list,
     "Previous encryption keys, comma-separated, still accepted for decryption during a rotation"},
    {"SUPERIMAP_NODE_ID", CONFIG_STR, NODES, NULL, 0, 0, NULL, 0, OFF(node_id), check_node_id,
     "Unique name of this process in the fleet (default: <hostname>-<pid>)"},
    {"SUPERIMAP_LOG_LEVEL", CONFIG_ENUM, NODES | FAKE | IMP, "info", 0, 0, "debug|info|warn|error", 0,
     OFF(log_level), NULL, "Lowest level written"},
    {"SUPERIMAP_LOG_FORMAT", CONFIG_ENUM, NODES | FAKE | IMP, "text", 0, 0, "text|json", 0, OFF(log_format),
     NULL, "Log lines as key=value text or as one JSON object per line"},
    {"SUPERIMAP_LOG_COMPONENTS", CONFIG_STR, NODES | FAKE | IMP, NULL, 0, 0, NULL, 0, OFF(log_components),
     NULL, "Comma-separated components with debug lines on at any level (redis,http,imap,...)"},
    {"SUPERIMAP_LOG_FILE", CONFIG_STR, NODES | FAKE | IMP, NULL, 0, 0, NULL, 0, OFF(log_file), NULL,
     "Append logs to this file instead of stderr; SIGHUP reopens it"},
    {"SUPERIMAP_HTTP_ADDR", CONFIG_STR, API, "127.0.0.1:8080", 0, 0, NULL, 0, OFF(http_addr),
     check_addr, "host:port of the REST API, the static files and /healthz, /readyz, /metrics"},
    {"SUPERIMAP_HTTP_ADDR", CONFIG_STR, WAT, "127.0.0.1:9101", 0, 0, NULL, 0, OFF(http_addr),
     check_addr, "host:port of /healthz, /readyz and /metrics (port 0 picks a free port)"},
    {"SUPERIMAP_HTTP_ADDR", CONFIG_STR, DIS, "127.0.0.1:9102", 0, 0, NULL, 0, OFF(http_addr),
     check_addr, "host:port of /healthz, /readyz and /metrics (port 0 picks a free port)"},
    {"SUPERIMAP_PUBLIC_URL", CONFIG_STR, API, "http://127.0.0.1:8080", 0, 0, NULL, 0,
     OFF(public_url), check_url, "Base URL at which partners and browsers reach the api"},
    {"SUPERIMAP_ADMIN_TOKEN", CONFIG_STR, API, NULL, 0, 0, NULL, CONFIG_SECRET, OFF(admin_token),
     check_token, "Bearer token for /admin/api (16+ characters); unset: admin API refused"},
    {"SUPERIMAP_ADMIN_SESSION_IDLE_SEC", CONFIG_INT, API, "1800", 60, 604800, NULL, 0,
     OFF(admin_session_idle_sec), NULL,
     "A dashboard session (admin account) ends after this long without a request"},
    {"SUPERIMAP_ADMIN_SESSION_MAX_SEC", CONFIG_INT, API, "43200", 60, 2592000, NULL, 0,
     OFF(admin_session_max_sec), NULL,
     "A dashboard session ends this long after its sign-in, however busy"},
    {"SUPERIMAP_ADMIN_LOCKOUT_FAILURES", CONFIG_INT, API, "5", 1, 1000, NULL, 0,
     OFF(admin_lockout_failures), NULL,
     "Failed dashboard sign-ins for one username (known or not) that lock it"},
    {"SUPERIMAP_ADMIN_LOCKOUT_SEC", CONFIG_INT, API, "900", 1, 86400, NULL, 0,
     OFF(admin_lockout_sec), NULL,
     "How long a locked username is refused; failures further apart than this are forgotten"},
    {"SUPERIMAP_ADMIN_SCRYPT_LOG2N", CONFIG_INT, API, "15", 10, 18, NULL, 0,
     OFF(admin_scrypt_log2n), NULL,
     "scrypt cost of new admin passwords: N = 2^value, r = 8, p = 1 (15: 32 MiB and 0.57 s "
     "per check measured on a busy 2-core host); stored hashes keep their own"},
    {"SUPERIMAP_WEB_ROOT", CONFIG_STR, API, "web", 0, 0, NULL, 0, OFF(web_root), NULL,
     "Directory of the static files served at / (openapi.json, index.html)"},
    {"SUPERIMAP_API_THREADS", CONFIG_INT, API, "16", 1, 256, NULL, 0, OFF(api_threads), NULL,
     "HTTP worker threads, each with its own Redis connection"},
    {"SUPERIMAP_API_RATE_LIMIT", CONFIG_INT, API, "100", 0, 10000000, NULL, 0,
     OFF(api_rate_limit), NULL,
     "Partner API requests per second per API key (token bucket in Redis); 0 turns it off"},
    {"SUPERIMAP_API_RATE_BURST", CONFIG_INT, API, "200", 1, 10000000, NULL, 0,
     OFF(api_rate_burst), NULL, "Requests an API key may make at once before the rate applies"},
    {"SUPERIMAP_API_AUTH_FAILURE_BURST", CONFIG_INT, API, "20", 0, 100000, NULL, 0,
     OFF(api_auth_failure_burst), NULL,
     "Failed API key authentications a client address may make at once before it is answered "
     "429 (0: no limit)"},
    {"SUPERIMAP_API_AUTH_FAILURE_RATE", CONFIG_INT, API, "1", 1, 100000, NULL, 0,
     OFF(api_auth_failure_rate), NULL,
     "Failed authentications per second a client address earns back"},
    {"SUPERIMAP_TRUSTED_PROXIES", CONFIG_STR, API, "", 0, 0, NULL, 0, OFF(trusted_proxies), NULL,
     "Comma-separated IPs or CIDRs of proxies in front of the api: a request from one of them "
     "is counted against the last X-Forwarded-For hop instead"},
    {"SUPERIMAP_API_REQUEST_TIMEOUT_MS", CONFIG_INT, API, "10000", 100, 600000, NULL, 0,
     OFF(api_request_timeout_ms), NULL,
     "Time a client has to send a request's headers, and again its body; a slower one is cut off "
     "(each worker thread waits for one client at a time)"},
    {"SUPERIMAP_API_CLIENT_PENDING", CONFIG_INT, API, "8", 0, 10000, NULL, 0,
     OFF(api_client_pending), NULL,
     "Connections one client address may have waiting for their headers, and request bodies "
     "it may be sending, at once (each holds a worker thread); past it a new connection must "
     "bring its headers whole (else 503 and closed) and a body is refused (429); 0: no bound"},
    {"SUPERIMAP_API_TEST_WAITERS", CONFIG_INT, API, "4", 1, 10000, NULL, 0, OFF(api_test_waiters),
     NULL,
     "POST /api/v1/webhook-test requests that may wait for their result at once, never more "
     "than half of SUPERIMAP_API_THREADS (each holds a worker thread); more are answered 202 "
     "pending at once"},
    {"SUPERIMAP_API_TEST_WAITERS_PER_PARTNER", CONFIG_INT, API, "1", 1, 10000, NULL, 0,
     OFF(api_test_waiters_per_partner), NULL,
     "Webhook tests of one partner that may wait for their result at once"},
    {"SUPERIMAP_KEY_ROTATION_GRACE_SEC", CONFIG_INT, API, "86400", 0, 2592000, NULL, 0,
     OFF(key_rotation_grace_sec), NULL,
     "How long a rotated API key or webhook secret keeps working beside the new one"},
    {"SUPERIMAP_SHARDS", CONFIG_INT, NODES | IMP, "64", 1, 16384, NULL, 0, OFF(shards), NULL,
     "Number of Redis shards; fixed at the first start, every node must agree"},
    {"SUPERIMAP_MAX_USERS", CONFIG_INT, WAT, "10000", 1, 10000000, NULL, 0, OFF(max_users), NULL,
     "Most users this watcher takes (capped further by its file-descriptor limit)"},
    {"SUPERIMAP_MAX_MOVES_PER_SEC", CONFIG_INT, WAT, "50", 1, 1000000, NULL, 0,
     OFF(max_moves_per_sec), NULL,
     "Users this watcher hands over to another per second when the fleet rebalances (drain: all)"},
    {"SUPERIMAP_MAX_EMAIL_SIZE", CONFIG_INT, WAT, "26214400", 1024, 1073741824, NULL, 0,
     OFF(max_email_size), NULL,
     "Largest message sent in full, in bytes; bigger mail gives a too_large event (envelope, size)"},
    {"SUPERIMAP_CA_FILE", CONFIG_STR, WAT | API | DIS, NULL, 0, 0, NULL, 0, OFF(ca_file), NULL,
     "PEM file of CAs trusted for IMAP TLS (private CAs; the api's PLAIN connect form too) and "
     "for the dispatcher's tracer mail SMTP; unset: the system store"},
    {"SUPERIMAP_IMAP_CONNECT_TIMEOUT_MS", CONFIG_INT, WAT, "15000", 100, 600000, NULL, 0,
     OFF(imap_connect_timeout_ms), NULL, "IMAP TCP connect, TLS handshake and greeting, together"},
    {"SUPERIMAP_IMAP_COMMAND_TIMEOUT_MS", CONFIG_INT, WAT, "60000", 100, 3600000, NULL, 0,
     OFF(imap_command_timeout_ms), NULL,
     "Silence allowed from an IMAP server while a command of ours is pending"},
    {"SUPERIMAP_IMAP_PROBE_SEC", CONFIG_INT, WAT, "600", 1, 1740, NULL, 0, OFF(imap_probe_sec),
     NULL, "Silence in IDLE after which the session probes the server (leaves and re-enters IDLE)"},
    {"SUPERIMAP_IMAP_POLL_SEC", CONFIG_INT, WAT, "60", 1, 86400, NULL, 0, OFF(imap_poll_sec), NULL,
     "Poll period (NOOP and fetch) for servers without IDLE"},
    {"SUPERIMAP_IMAP_LOGINS_PER_SEC", CONFIG_INT, WAT, "100", 1, 1000000, NULL, 0,
     OFF(imap_logins_per_sec), NULL, "New IMAP logins per second per provider host (no login storms)"},
    {"SUPERIMAP_IMAP_BACKOFF_MIN_MS", CONFIG_INT, WAT, "1000", 10, 3600000, NULL, 0,
     OFF(imap_backoff_min_ms), NULL, "Ceiling of the first reconnect delay after an IMAP error"},
    {"SUPERIMAP_IMAP_BACKOFF_MAX_MS", CONFIG_INT, WAT, "300000", 10, 86400000, NULL, 0,
     OFF(imap_backoff_max_ms), NULL,
     "Cap of reconnect delays after network and protocol errors (auth failures grow to 6 h)"},
    {"SUPERIMAP_OAUTH2_ALLOW_PRIVATE", CONFIG_BOOL, WAT | API, "0", 0, 0, NULL, 0,
     OFF(oauth2_allow_private), NULL,
     "Let OAuth2 token, userinfo and revoke endpoints be loopback, private and other non-public "
     "addresses (tests, local demos; cloud metadata addresses stay refused)"},
    {"SUPERIMAP_OAUTH2_MAX_REFRESHES", CONFIG_INT, WAT, "4", 1, 10000, NULL, 0,
     OFF(oauth2_max_refreshes), NULL,
     "Token refreshes one watcher has in flight per OAuth2 provider; more wait their turn "
     "(a fleet restart does not storm the token endpoint)"},
    {"SUPERIMAP_OAUTH2_TIMEOUT_MS", CONFIG_INT, WAT, "15000", 100, 600000, NULL, 0,
     OFF(oauth2_timeout_ms), NULL, "Whole token endpoint request of a refresh, connect included"},
    {"SUPERIMAP_SHUTDOWN_TIMEOUT_SEC", CONFIG_INT, NODES, "30", 1, 3600, NULL, 0,
     OFF(shutdown_timeout_sec), NULL, "Longest graceful drain on SIGTERM before exiting anyway"},
    {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE", CONFIG_BOOL, DIS | API, "0", 0, 0, NULL, 0,
     OFF(webhook_allow_private), NULL,
     "Let webhooks reach loopback, private, link-local, CGNAT and other non-public addresses "
     "(tests, local demos; cloud metadata addresses stay refused); the api refuses webhook URLs "
     "whose host is such an address literally unless it is set there too"},
    {"SUPERIMAP_WEBHOOK_MAX_INFLIGHT", CONFIG_INT, DIS, "1024", 1, 100000, NULL, 0,
     OFF(webhook_max_inflight), NULL,
     "Most events this dispatcher delivers at once (each partner is capped further by its "
     "webhook_concurrency, default 8)"},
    {"SUPERIMAP_WEBHOOK_HOST_CONNECTIONS", CONFIG_INT, DIS, "64", 1, 100000, NULL, 0,
     OFF(webhook_host_connections), NULL,
     "Most connections to one receiver host (HTTP/2 receivers multiplex requests over them)"},
    {"SUPERIMAP_WEBHOOK_TIMEOUT_MS", CONFIG_INT, DIS, "30000", 100, 600000, NULL, 0,
     OFF(webhook_timeout_ms), NULL,
     "Whole webhook request, connect included; an event's lease is 1.5 times this plus 1 s"},
    {"SUPERIMAP_WEBHOOK_CONNECT_TIMEOUT_MS", CONFIG_INT, DIS, "10000", 100, 600000, NULL, 0,
     OFF(webhook_connect_timeout_ms), NULL, "TCP (and TLS) connect of a webhook request"},
    {"SUPERIMAP_WEBHOOK_CIRCUIT_HOLD_HOURS", CONFIG_INT, DIS, "168", 1, 720, NULL, 0,
     OFF(webhook_circuit_hold_hours), NULL,
     "How long an event waits while its URL's circuit is open (not sent, no attempt spent) "
     "before it becomes a dead letter; counted from the event's creation"},
    {"SUPERIMAP_WEBHOOK_TIME_DIVISOR", CONFIG_INT, DIS, "1", 1, 100000, NULL, 0,
     OFF(webhook_time_divisor), NULL,
     "Tests only: divides retry delays, Retry-After, circuit-breaker periods and the circuit "
     "hold (100 makes the 5 s first retry 50 ms); keep 1 in production"},
    {"SUPERIMAP_TRACER_INTERVAL_SEC", CONFIG_INT, DIS | API, "600", 0, 86400, NULL, 0,
     OFF(tracer_interval_sec), NULL,
     "Tracer mail: every this often a dispatcher sends one tracer per provider to a tracer user "
     "of its shards (README \"Tracer mail\"); 0 sends none"},
    {"SUPERIMAP_TRACER_DEADLINE_SEC", CONFIG_INT, DIS | API, "0", 0, 86400, NULL, 0,
     OFF(tracer_deadline_sec), NULL,
     "A tracer sent and not detected after this long is missing; 0: twice the interval"},
    {"SUPERIMAP_TRACER_ALLOW_PRIVATE", CONFIG_BOOL, DIS, "0", 0, 0, NULL, 0,
     OFF(tracer_allow_private), NULL,
     "Let tracer mail reach an SMTP server on a loopback, private or other non-public address "
     "(tests, a local MTA; cloud metadata addresses stay refused)"},
    {"SUPERIMAP_FAKE_ADDRS", CONFIG_STR, FAKE, "127.0.0.1", 0, 0, NULL, 0, OFF(fake_addrs),
     check_addr_list, "Addresses to listen on, comma-separated; 127.0.0.1-8 is 127.0.0.1 to .8"},
    {"SUPERIMAP_FAKE_PORT", CONFIG_INT, FAKE, "0", -1, 65535, NULL, 0, OFF(fake_port), NULL,
     "Plain IMAP (and STARTTLS) port on each address; 0 picks a free one per address, -1 none"},
    {"SUPERIMAP_FAKE_TLS_PORT", CONFIG_INT, FAKE, "-1", -1, 65535, NULL, 0, OFF(fake_tls_port),
     NULL, "Implicit-TLS IMAP port on each address; 0 picks a free one, -1 none"},
    {"SUPERIMAP_FAKE_CERT", CONFIG_STR, FAKE, NULL, 0, 0, NULL, 0, OFF(fake_cert), NULL,
     "PEM certificate chain file; with SUPERIMAP_FAKE_KEY enables STARTTLS and implicit TLS"},
    {"SUPERIMAP_FAKE_KEY", CONFIG_STR, FAKE, NULL, 0, 0, NULL, 0, OFF(fake_key), NULL,
     "PEM private key file of SUPERIMAP_FAKE_CERT"},
    {"SUPERIMAP_FAKE_REQUIRE_TLS", CONFIG_BOOL, FAKE, "0", 0, 0, NULL, 0, OFF(fake_require_tls),
     NULL, "Advertise LOGINDISABLED and refuse authentication before STARTTLS"},
    {"SUPERIMAP_FAKE_XOAUTH2_PREFIX", CONFIG_STR, FAKE, NULL, 0, 0, NULL, 0,
     OFF(fake_xoauth2_prefix), NULL,
     "XOAUTH2 also accepts, for any existing user, a token starting with this (e.g. at_, "
     "superimap-fake-oauth2d's access tokens; not checked with the provider); unset: only "
     "token-<user>"},
    {"SUPERIMAP_FAKE_CONTROL", CONFIG_STR, FAKE, NULL, 0, 0, NULL, 0, OFF(fake_control), NULL,
     "Unix socket path of the control channel (append mail, faults, counters); unset: none"},
    {"SUPERIMAP_FAKE_USERS", CONFIG_INT, FAKE, "1000", 0, 10000000, NULL, 0, OFF(fake_users),
     NULL, "Users user1..userN exist with passwords pass1..passN"},
    {"SUPERIMAP_FAKE_MAX_SESSIONS_PER_USER", CONFIG_INT, FAKE, "0", 0, 1000000, NULL, 0,
     OFF(fake_max_sessions_per_user), NULL,
     "Logins of a user past this many concurrent sessions get NO [LIMIT]; 0: unlimited"},
    {"SUPERIMAP_FAKE_MAX_MESSAGE", CONFIG_INT, FAKE, "67108864", 1, 1073741824, NULL, 0,
     OFF(fake_max_message), NULL, "Largest message the control channel appends, in bytes"},
    {"SUPERIMAP_FAKE_FAULTS", CONFIG_STR, FAKE, NULL, 0, 0, NULL, 0, OFF(fake_faults),
     check_fault_list,
     "Faults to inject, comma-separated: bad,no,gibberish,bye,drop,halfopen,noinbox,uidshift,"
     "trickle,authfail,limit (or all)"},
    {"SUPERIMAP_FAKE_PROFILES", CONFIG_STR, FAKE, NULL, 0, 0, NULL, 0, OFF(fake_profiles),
     check_profile_list,
     "IMAP extensions to offer, comma-separated: notify (RFC 5465), special-use (RFC 6154), "
     "condstore, qresync (RFC 7162), x-gm-ext-1 (Gmail), or all; unset: plain IMAP4rev1 with "
     "IDLE"},
    {"SUPERIMAP_FAKE_FAULT_RATE", CONFIG_STR, FAKE, "0", 0, 0, NULL, 0, OFF(fake_fault_rate),
     check_probability, "Probability (0 to 1) that a command meets one of the faults"},
    {"SUPERIMAP_FAKE_FAULT_SEED", CONFIG_INT, FAKE, "1", 0, 2147483647, NULL, 0,
     OFF(fake_fault_seed), NULL, "Seed of the fault generator: the same seed, the same faults"},
    {NULL, CONFIG_STR, 0, NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};
/* clang-format on */

/* ---- Parsing ---- */

static int parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0)
            return 1;
        if (strcmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Returns the index of s in "a|b|c", or -1. */
static int enum_index(const char *allowed, const char *s)
{
    size_t n = strlen(s);
    int i = 0;
    for (const char *p = allowed; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0)
            return i;
        p += len + (bar != NULL);
    }
    return -1;
}

static int store(struct config *cfg, const struct config_var *v, const char *s, struct buf *errors)
{
    char *field = (char *)cfg + v->offset;
    char why[256] = "";
    long long n;
    int b;
    switch (v->type) {
    case CONFIG_STR:
        if (v->check != NULL && v->check(s, why, sizeof why) != 0)
            break;
        memcpy(field, &s, sizeof s);
        return 0;
    case CONFIG_INT:
        if (parse_int(s, &n) < 0 || n < v->min || n > v->max) {
            snprintf(why, sizeof why, "must be an integer from %lld to %lld", v->min, v->max);
            break;
        }
        *(int *)(void *)field = (int)n;
        return 0;
    case CONFIG_BOOL:
        if ((b = parse_bool(s)) < 0) {
            snprintf(why, sizeof why, "must be 1/0, true/false, yes/no or on/off");
            break;
        }
        *(int *)(void *)field = b;
        return 0;
    case CONFIG_ENUM:
        if ((b = enum_index(v->allowed, s)) < 0) {
            snprintf(why, sizeof why, "must be one of %s", v->allowed);
            break;
        }
        *(int *)(void *)field = b;
        return 0;
    }
    if (v->flags & CONFIG_SECRET)
        buf_printf(errors, "%s: invalid value: %s\n", v->name, why);
    else
        buf_printf(errors, "%s=\"%s\": invalid value: %s\n", v->name, s, why);
    return -1;
}

int config_load(struct config *cfg, unsigned role, struct buf *errors)
{
    memset(cfg, 0, sizeof *cfg);
    int nerr = 0;
    for (const struct config_var *v = config_vars; v->name != NULL; v++) {
        if (!(v->roles & role))
            continue;
        const char *s = getenv(v->name);
        if (s == NULL || *s == '\0') {
            if (v->flags & CONFIG_REQUIRED) {
                buf_printf(errors, "%s: required but not set\n", v->name);
                nerr++;
                continue;
            }
            s = v->def;
        }
        if (s != NULL && store(cfg, v, s, errors) < 0)
            nerr++;
    }
    if ((role & CONFIG_ROLE_NODES) && cfg->node_id == NULL) {
        char host[64] = "node";
        if (gethostname(host, sizeof host) != 0)
            strcpy(host, "node");
        host[sizeof host - 1] = '\0';
        for (char *p = host; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
                *p = '-';
        snprintf(cfg->node_id_buf, sizeof cfg->node_id_buf, "%s-%ld", host, (long)getpid());
        cfg->node_id = cfg->node_id_buf;
    }
    return nerr;
}

int config_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr)
        return -SIMAP_EINVAL;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (h[0] == '[') {
        if (n < 2 || h[n - 1] != ']')
            return -SIMAP_EINVAL;
        h++;
        n -= 2;
    }
    long long p;
    if (n == 0 || n >= hostlen || parse_int(colon + 1, &p) < 0 || p < 0 || p > 65535)
        return -SIMAP_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

/* ---- Help, Markdown, effective config ---- */

static void describe_range(const struct config_var *v, char *out, size_t outlen)
{
    switch (v->type) {
    case CONFIG_INT:
        snprintf(out, outlen, "%lld..%lld", v->min, v->max);
        break;
    case CONFIG_BOOL:
        snprintf(out, outlen, "0|1");
        break;
    case CONFIG_ENUM:
        snprintf(out, outlen, "%s", v->allowed);
        break;
    case CONFIG_STR:
        snprintf(out, outlen, "%s", (v->flags & CONFIG_SECRET) ? "secret" : "text");
        break;
    }
}

static const char *default_text(const struct config_var *v)
{
    if (v->flags & CONFIG_REQUIRED)
        return "(required)";
    if (v->def == NULL)
        return "(unset)";
    return v->def;
}

void config_print_help(unsigned role, const char *program, const char *summary, int fd)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    buf_printf(&b,
               "Usage: %s [--help] [--version] [--config-markdown]\n\n%s\n\n"
               "Configured only by environment variables:\n\n",
               program, summary);
    for (const struct config_var *v = config_vars; v->name != NULL; v++) {
        if (!(v->roles & role))
            continue;
        char range[128];
        describe_range(v, range, sizeof range);
        buf_printf(&b, "  %s\n      %s\n      default: %s   allowed: %s\n", v->name, v->help,
                   default_text(v), range);
    }
    buf_puts(&b, "\nExit codes: 0 clean stop, 1 runtime failure, 2 bad configuration.\n");
    ssize_t w = write(fd, b.data, b.len);
    (void)w;
    buf_free(&b);
}

static void describe_roles(unsigned roles, char *out, size_t outlen)
{
    static const char *const names[] = {"api", "watcher", "dispatcher", "fake-imapd", "import"};
    out[0] = '\0';
    for (int i = 0; i < 5; i++)
        if (roles & (1u << i))
            snprintf(out + strlen(out), outlen - strlen(out), "%s%s", out[0] ? ", " : "", names[i]);
}

void config_print_markdown(int fd)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    buf_puts(&b, "| variable | used by | default | allowed | meaning |\n"
                 "|---|---|---|---|---|\n");
    for (const struct config_var *v = config_vars; v->name != NULL; v++) {
        char range[128], roles[64];
        describe_range(v, range, sizeof range);
        describe_roles(v->roles, roles, sizeof roles);
        buf_printf(&b, "| `%s` | %s | %s | `%s` | %s |\n", v->name, roles, default_text(v), range,
                   v->help);
    }
    ssize_t w = write(fd, b.data, b.len);
    (void)w;
    buf_free(&b);
}

void config_main(struct config *cfg, unsigned role, const char *program, const char *summary,
                 int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_print_help(role, program, summary, 1);
            exit(0);
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s (%s)\n", program, SUPERIMAP_VERSION, SUPERIMAP_GIT_REV);
            exit(0);
        } else if (strcmp(argv[i], "--config-markdown") == 0) {
            config_print_markdown(1);
            exit(0);
        } else {
            fprintf(stderr,
                    "%s: unknown argument '%s' (configuration is by environment; see --help)\n",
                    program, argv[i]);
            exit(2);
        }
    }
    struct buf errors;
    buf_init(&errors, 1 << 16);
    if (config_load(cfg, role, &errors) > 0) {
        fprintf(stderr, "%s: bad configuration, not starting:\n%s(see %s --help)\n", program,
                errors.data, program);
        buf_free(&errors);
        exit(2);
    }
    buf_free(&errors);
}

/* Registers every secret value, and a password inside the Redis URL, with the
 * logger before anything is printed. */
static void register_secrets(const struct config *cfg, unsigned role)
{
    for (const struct config_var *v = config_vars; v->name != NULL; v++) {
        if (!(v->roles & role) || v->type != CONFIG_STR || !(v->flags & CONFIG_SECRET))
            continue;
        const char *s;
        memcpy(&s, (const char *)cfg + v->offset, sizeof s);
        log_add_secret(s);
    }
    struct redis_addr a;
    char err[128];
    if (cfg->redis_url != NULL && redis_url_parse(cfg->redis_url, NULL, &a, err, sizeof err) == 0)
        log_add_secret(a.password);
}

void config_log(const struct config *cfg, unsigned role)
{
    register_secrets(cfg, role);
    struct buf b;
    buf_init(&b, 1 << 16);
    for (const struct config_var *v = config_vars; v->name != NULL; v++) {
        if (!(v->roles & role))
            continue;
        const char *field = (const char *)cfg + v->offset;
        buf_printf(&b, " %s=", v->name + 10); /* drop SUPERIMAP_ */
        if (v->type == CONFIG_STR) {
            const char *s;
            memcpy(&s, field, sizeof s);
            if (s == NULL)
                buf_puts(&b, "\"\"");
            else if (v->flags & CONFIG_SECRET)
                buf_puts(&b, "***");
            else
                buf_printf(&b, "\"%s\"", s);
        } else if (v->type == CONFIG_ENUM) {
            int idx = *(const int *)(const void *)field;
            const char *p = v->allowed;
            for (int i = 0; i < idx && p != NULL; i++) {
                p = strchr(p, '|');
                p = p ? p + 1 : NULL;
            }
            size_t len = p ? strcspn(p, "|") : 0;
            buf_printf(&b, "%.*s", (int)len, p ? p : "");
        } else {
            buf_printf(&b, "%d", *(const int *)(const void *)field);
        }
    }
    log_info("configuration%s", b.data ? b.data : "");
    buf_free(&b);
}
