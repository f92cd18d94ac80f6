/*
 * tests/integration/system: a whole fleet for end-to-end tests (see system.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "tests/integration/system.h"

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/json.h"

#define NODE_WAIT_MS   15000 /* exit after SIGTERM (drain) or SIGKILL */
#define READY_MS       10000
#define WATCHING_MS    20000
#define MAX_ENV        48
#define HOOK_FRESH_SEC 300 /* a webhook's timestamp must be this close to now */

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int sys_ms(int ms)
{
    return harness_ms(ms);
}

/* Records the first failed check; counts every one. */
static void problem(struct sys *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct sys *s, const char *fmt, ...)
{
    if (s->bad++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof s->why, fmt, ap);
        va_end(ap);
        fprintf(stderr, "system: %s\n", s->why);
    }
}

/* ---- Redis with AOF ---- */

/* The full path of redis-server from PATH (execve needs one). */
static int find_redis(char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, outlen, "%s/redis-server", d);
        if (access(out, X_OK) == 0)
            return 0;
    }
    fprintf(stderr, "system: redis-server not found (Debian package redis-server)\n");
    return -1;
}

static int redis_spawn(struct sys *s)
{
    char bin[512];
    if (find_redis(bin, sizeof bin) < 0)
        return -1;
    const char *argv[] = {bin,
                          "--port",
                          "0",
                          "--unixsocket",
                          s->redis.sock,
                          "--unixsocketperm",
                          "700",
                          "--save",
                          "",
                          "--appendonly",
                          "yes",
                          "--appendfsync",
                          "everysec",
                          "--dir",
                          s->redis.dir,
                          NULL};
    char old[340];
    snprintf(s->redis_proc.log, sizeof s->redis_proc.log, "%s/redis.log", s->redis.dir);
    snprintf(old, sizeof old, "%s.1", s->redis_proc.log);
    rename(s->redis_proc.log, old);
    if (harness_spawn(&s->redis_proc, argv, NULL) < 0)
        return -1;
    s->redis.pid = s->redis_proc.pid;
    long long deadline = harness_now_ms() + sys_ms(10000);
    while (harness_now_ms() < deadline) {
        if (harness_proc_wait(&s->redis_proc, 0) == 0) {
            fprintf(stderr, "system: redis-server exited with %d at start; see %s\n",
                    s->redis_proc.exit_code, s->redis_proc.log);
            s->redis.pid = 0;
            return -1;
        }
        char pong[16];
        if (harness_redis_get(&s->redis, pong, sizeof pong, "PING") == 0 &&
            strcmp(pong, "PONG") == 0)
            return 0;
        harness_poll_pause();
    }
    fprintf(stderr, "system: redis-server did not answer PING; see %s\n", s->redis_proc.log);
    return -1;
}

void sys_kill_redis(struct sys *s, int hard)
{
    if (s->redis.pid <= 0)
        return;
    harness_proc_signal(&s->redis_proc, hard ? SIGKILL : SIGTERM);
    if (harness_proc_wait(&s->redis_proc, sys_ms(NODE_WAIT_MS)) < 0)
        harness_proc_stop(&s->redis_proc);
    s->redis.pid = 0;
    unlink(s->redis.sock);
}

int sys_restart_redis(struct sys *s)
{
    if (s->opts.redis_url != NULL)
        return 0;
    return redis_spawn(s);
}

/* ---- Nodes ---- */

/* extra = role's opts first, then each default whose name they do not set. */
static void merge_env(const char **env, const char *const *opts, const char *const *defaults)
{
    int n = 0;
    for (const char *const *o = opts; o != NULL && *o != NULL && n < MAX_ENV - 1; o++)
        env[n++] = *o;
    for (const char *const *d = defaults; d != NULL && *d != NULL && n < MAX_ENV - 1; d++) {
        size_t name = strcspn(*d, "=") + 1;
        int is_set = 0;
        for (const char *const *o = opts; o != NULL && *o != NULL; o++)
            if (strncmp(*o, *d, name) == 0)
                is_set = 1;
        if (!is_set)
            env[n++] = *d;
    }
    env[n] = NULL;
}

static int node_start(struct sys *s, struct sys_node *n, const char *binary,
                      const char *const *opts, const char *const *defaults)
{
    const char *env[MAX_ENV];
    merge_env(env, opts, defaults);
    char log[340], old[350];
    snprintf(log, sizeof log, "%s/%s.log", s->redis.dir, n->id);
    snprintf(old, sizeof old, "%s.1", log);
    rename(log, old); /* an earlier run of this node id keeps its log */
    if (harness_node_start(&n->p, &s->redis, binary, n->id, env) < 0)
        return -1;
    n->is_running = 1;
    if (harness_wait_http(n->p.port, "/readyz", 200, sys_ms(READY_MS)) < 0) {
        fprintf(stderr, "system: %s not ready within %d ms; log %s\n", n->id, sys_ms(READY_MS),
                n->p.log);
        return -1;
    }
    return 0;
}

/* Waits for a signalled node to exit; its exit code, or -1. */
static int node_wait(struct sys_node *n)
{
    if (harness_proc_wait(&n->p, sys_ms(NODE_WAIT_MS)) < 0) {
        fprintf(stderr, "system: %s did not exit within %d ms; log %s\n", n->id,
                sys_ms(NODE_WAIT_MS), n->p.log);
        return -1;
    }
    n->is_running = 0;
    return n->p.exit_code;
}

static int node_kill(struct sys_node *n, int sig)
{
    if (!n->is_running)
        return n->p.exited ? n->p.exit_code : -1;
    harness_proc_signal(&n->p, sig);
    if (sig != SIGTERM && sig != SIGINT && sig != SIGKILL)
        return 0;
    return node_wait(n);
}

static const char *const api_defaults[] = {"SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN,
                                           "SUPERIMAP_API_RATE_LIMIT=0",
                                           "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", NULL};
static const char *const api_oauth2_defaults[] = {
    "SUPERIMAP_ADMIN_TOKEN=" TEST_ADMIN_TOKEN, "SUPERIMAP_API_RATE_LIMIT=0",
    "SUPERIMAP_PUBLIC_URL=" BROWSER_PUBLIC,    "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1",
    "SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1",       NULL};

static int api_start(struct sys *s)
{
    return node_start(s, &s->api, "superimap-api", s->opts.api_env,
                      s->opts.oauth2 ? api_oauth2_defaults : api_defaults);
}
static const char *const dispatcher_defaults[] = {"SUPERIMAP_WEBHOOK_ALLOW_PRIVATE=1", NULL};

static int watcher_start(struct sys *s, struct sys_node *n)
{
    char ca[400] = "";
    if (s->has_dovecot && s->opts.tls)
        snprintf(ca, sizeof ca, "SUPERIMAP_CA_FILE=%s", s->dv.ca_file);
    const char *defaults[] = {
        "SUPERIMAP_IMAP_BACKOFF_MIN_MS=100", "SUPERIMAP_IMAP_BACKOFF_MAX_MS=1000",
        s->opts.oauth2 ? "SUPERIMAP_OAUTH2_ALLOW_PRIVATE=1" : NULL, NULL, NULL};
    if (ca[0] != '\0')
        defaults[s->opts.oauth2 ? 3 : 2] = ca;
    return node_start(s, n, "superimap-watcher", s->opts.watcher_env, defaults);
}

int sys_start_watcher(struct sys *s)
{
    if (s->nwatchers == SYS_MAX_NODES)
        return -1;
    int i = s->nwatchers++;
    snprintf(s->watcher[i].id, sizeof s->watcher[i].id, "w%d", i + 1);
    return watcher_start(s, &s->watcher[i]) == 0 ? i : -1;
}

int sys_start_dispatcher(struct sys *s)
{
    if (s->ndispatchers == SYS_MAX_NODES)
        return -1;
    int i = s->ndispatchers++;
    struct sys_node *n = &s->dispatcher[i];
    snprintf(n->id, sizeof n->id, "d%d", i + 1);
    return node_start(s, n, "superimap-dispatcher", s->opts.dispatcher_env, dispatcher_defaults) ==
                   0
               ? i
               : -1;
}

int sys_kill_watcher(struct sys *s, int i, int sig)
{
    return i >= 0 && i < s->nwatchers ? node_kill(&s->watcher[i], sig) : -1;
}

int sys_kill_dispatcher(struct sys *s, int i, int sig)
{
    return i >= 0 && i < s->ndispatchers ? node_kill(&s->dispatcher[i], sig) : -1;
}

int sys_kill_api(struct sys *s, int sig)
{
    return node_kill(&s->api, sig);
}

int sys_restart_watcher(struct sys *s, int i)
{
    if (i < 0 || i >= s->nwatchers || s->watcher[i].is_running)
        return -1;
    return watcher_start(s, &s->watcher[i]);
}

int sys_restart_dispatcher(struct sys *s, int i)
{
    if (i < 0 || i >= s->ndispatchers || s->dispatcher[i].is_running)
        return -1;
    return node_start(s, &s->dispatcher[i], "superimap-dispatcher", s->opts.dispatcher_env,
                      dispatcher_defaults);
}

int sys_restart_api(struct sys *s)
{
    if (s->api.is_running)
        return -1;
    return api_start(s);
}

/* ---- API ---- */

int sys_api(struct sys *s, struct api_resp *out, const char *method, const char *path,
            const char *json)
{
    api_json(out, s->api.p.port, method, path, s->api_key, json);
    return out->status;
}

int sys_admin(struct sys *s, struct api_resp *out, const char *method, const char *path,
              const char *json)
{
    admin_json(out, s->api.p.port, method, path, json);
    return out->status;
}

/* Runs one call and checks its status; on a mismatch prints it and returns
 * -1. Frees the answer unless keep is given. */
static int call(struct sys *s, int admin, const char *method, const char *path, const char *json,
                int want, struct api_resp *keep)
{
    struct api_resp r = {0};
    int st = admin ? sys_admin(s, &r, method, path, json) : sys_api(s, &r, method, path, json);
    int ok = st == want;
    if (!ok)
        fprintf(stderr, "system: %s %s answered %d, not %d: %.400s\n", method, path, st, want,
                r.body ? r.body : "");
    if (keep != NULL)
        *keep = r;
    else
        api_resp_free(&r);
    return ok ? 0 : -1;
}

static struct sys_conn *find_conn(struct sys *s, const char *code)
{
    for (int i = 0; i < s->nconns; i++)
        if (strcmp(s->conns[i].code, code) == 0)
            return &s->conns[i];
    return NULL;
}

int sys_add_connection(struct sys *s, const char *code, int on_fake)
{
    if (s->nconns == SYS_MAX_CONNS || (on_fake ? !s->has_fake : !s->has_dovecot))
        return -1;
    int port;
    const char *tls = "none";
    if (on_fake) {
        port = fakeimap_port(&s->fake, 0, 0, NULL);
    } else {
        port = s->opts.tls ? s->dv.port_tls : s->dv.port_plain;
        tls = s->opts.tls ? "implicit" : "none";
    }
    char body[512];
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"imap_host\":\"127.0.0.1\",\"imap_port\":%d,\"tls\":\"%s\","
             "\"auth\":\"plain\"}",
             code, port, tls);
    if (call(s, 1, "POST", "/admin/api/providers", body, 201, NULL) < 0)
        return -1;
    snprintf(body, sizeof body, "{\"imap_provider_code\":\"%s\"}", code);
    if (call(s, 0, "POST", "/api/v2/connections", body, 201, NULL) < 0)
        return -1;
    struct sys_conn *c = &s->conns[s->nconns++];
    snprintf(c->code, sizeof c->code, "%s", code);
    c->on_fake = on_fake;
    return 0;
}

/* Provider SYS_OAUTH2 on Dovecot's plain port, OAuth2 at the test
 * provider, and the partner's connection to it with the provider's client. */
static int add_oauth2_connection(struct sys *s)
{
    if (s->nconns == SYS_MAX_CONNS)
        return -1;
    char a[300], t[300], u[300], r[300], body[2048];
    snprintf(body, sizeof body,
             "{\"code\":\"" SYS_OAUTH2 "\",\"imap_host\":\"127.0.0.1\",\"imap_port\":%d,"
             "\"tls\":\"none\",\"auth\":\"oauth2\",\"oauth2_authorize_url\":\"%s\","
             "\"oauth2_token_url\":\"%s\",\"oauth2_userinfo_url\":\"%s\","
             "\"oauth2_revoke_url\":\"%s\",\"oauth2_scope\":\"openid email\"}",
             s->dv.port_plain, fakeoauth_url(&s->idp, "/authorize", a, sizeof a),
             fakeoauth_url(&s->idp, "/token", t, sizeof t),
             fakeoauth_url(&s->idp, "/userinfo", u, sizeof u),
             fakeoauth_url(&s->idp, "/revoke", r, sizeof r));
    if (call(s, 1, "POST", "/admin/api/providers", body, 201, NULL) < 0)
        return -1;
    if (call(s, 0, "POST", "/api/v2/connections",
             "{\"imap_provider_code\":\"" SYS_OAUTH2 "\",\"oauth2_client_id\":\"" SYS_OAUTH2_CLIENT
             "\",\"oauth2_client_secret\":\"" SYS_OAUTH2_SECRET "\"}",
             201, NULL) < 0)
        return -1;
    struct sys_conn *c = &s->conns[s->nconns++];
    snprintf(c->code, sizeof c->code, "%s", SYS_OAUTH2);
    c->oauth2 = 1;
    return 0;
}

/* The partner, its webhook URLs at the receiver, its credentials there. */
static int create_partner(struct sys *s)
{
    int port = receiver_port(s->rx);
    char body[1024], extra[256] = "";
    size_t n = 0;
    if (s->opts.retry_schedule != NULL)
        n += (size_t)snprintf(extra + n, sizeof extra - n, ",\"retry_schedule\":\"%s\"",
                              s->opts.retry_schedule);
    if (s->opts.webhook_concurrency > 0)
        snprintf(extra + n, sizeof extra - n, ",\"webhook_concurrency\":%d",
                 s->opts.webhook_concurrency);
    snprintf(body, sizeof body,
             "{\"name\":\"System test\","
             "\"new_mail_webhook_url\":\"http://127.0.0.1:%d/hook/" SYS_HOOK_MAIL "/new_mail\","
             "\"user_connected_webhook_url\":\"http://127.0.0.1:%d/hook/" SYS_HOOK_USER
             "/connected\","
             "\"user_disconnected_webhook_url\":\"http://127.0.0.1:%d/hook/" SYS_HOOK_USER
             "/disconnected\"%s}",
             port, port, port, extra);
    struct api_resp r = {0};
    if (call(s, 1, "POST", "/admin/api/partners", body, 201, &r) < 0) {
        api_resp_free(&r);
        return -1;
    }
    const char *key = jstr(&r, "api_key"), *secret = jstr(&r, "webhook_secret");
    int64_t id = 0;
    int ok = key != NULL && secret != NULL && json_get_int(r.json, "id", &id) == 0;
    if (ok) {
        snprintf(s->api_key, sizeof s->api_key, "%s", key);
        snprintf(s->whsec, sizeof s->whsec, "%s", secret);
        s->partner_id = id;
        receiver_add_partner(s->rx, SYS_HOOK_MAIL, key, secret, NULL);
        receiver_add_partner(s->rx, SYS_HOOK_USER, key, secret, NULL);
    } else {
        fprintf(stderr, "system: partner answer lacks id, api_key or webhook_secret: %s\n", r.body);
    }
    api_resp_free(&r);
    return ok ? 0 : -1;
}

/* ---- Start and stop ---- */

int sys_start(struct sys *s, const struct sys_opts *o)
{
    memset(s, 0, sizeof *s);
    if (o != NULL)
        s->opts = *o;
    snprintf(s->nonce, sizeof s->nonce, "%ld%lld", (long)getpid(), mono_us() % 1000000);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->redis.dir, sizeof s->redis.dir, "%s/superimap-system-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(s->redis.dir) == NULL) {
        perror("system: mkdtemp");
        return -1;
    }
    snprintf(s->redis.sock, sizeof s->redis.sock, "%s/redis.sock", s->redis.dir);
    snprintf(s->redis.url, sizeof s->redis.url, "unix://%s", s->redis.sock);
    if (s->opts.redis_url != NULL)
        snprintf(s->redis.url, sizeof s->redis.url, "%s", s->opts.redis_url);
    else if (redis_spawn(s) < 0)
        return -1;
    if (s->opts.oauth2) {
        static const char *const args[] = {"--client", SYS_OAUTH2_CLIENT ":" SYS_OAUTH2_SECRET,
                                           NULL};
        if (s->opts.dovecot_users < 0 || fakeoauth_start(&s->idp, args) < 0) {
            fprintf(stderr, "system: oauth2 needs Dovecot and superimap-fake-oauth2d\n");
            return -1;
        }
        s->has_idp = 1;
    }
    if (s->opts.dovecot_users >= 0) {
        int users = s->opts.dovecot_users ? s->opts.dovecot_users : 16;
        char introspect[300];
        const char *url =
            s->has_idp ? fakeoauth_url(&s->idp, "/introspect", introspect, sizeof introspect) : "";
        int rc = s->opts.mta    ? dovecot_start_mta(&s->dv, users, url)
                 : *url != '\0' ? dovecot_start_oauth2(&s->dv, users, url)
                                : dovecot_start(&s->dv, users);
        if (rc < 0) {
            dovecot_stop(&s->dv);
            return -1;
        }
        s->has_dovecot = 1;
    }
    if (s->opts.fake_imapd) {
        if (fakeimap_prepare(&s->fake, 0) < 0 || fakeimap_start(&s->fake, NULL) < 0) {
            fakeimap_stop(&s->fake, 0);
            return -1;
        }
        s->has_fake = 1;
    }
    if ((s->rx = receiver_start("127.0.0.1", 1, 1)) == NULL)
        return -1;
    snprintf(s->api.id, sizeof s->api.id, "api");
    if (api_start(s) < 0)
        return -1;
    if (create_partner(s) < 0)
        return -1;
    if (s->has_dovecot && sys_add_connection(s, SYS_DOVECOT, 0) < 0)
        return -1;
    if (s->has_fake && sys_add_connection(s, SYS_FAKE, 1) < 0)
        return -1;
    if (s->has_idp && add_oauth2_connection(s) < 0)
        return -1;
    int nw = s->opts.watchers == 0 ? 1 : s->opts.watchers;
    for (int i = 0; i < nw; i++)
        if (sys_start_watcher(s) < 0)
            return -1;
    int nd = s->opts.dispatchers == 0 ? 1 : s->opts.dispatchers;
    for (int i = 0; i < nd; i++)
        if (sys_start_dispatcher(s) < 0)
            return -1;
    return 0;
}

int sys_start_dovecot(struct sys *s, const struct sys_opts *o)
{
    char why[sizeof s->skip_why];
    if (!dovecot_available(why, sizeof why)) {
        memset(s, 0, sizeof *s);
        s->skipped = 1;
        snprintf(s->skip_why, sizeof s->skip_why, "%s", why);
        return 0;
    }
    return sys_start(s, o);
}

int sys_stop_started(struct sys *s)
{
    return s->skipped ? 0 : sys_stop(s);
}

int sys_stop(struct sys *s)
{
    struct sys_node *all[1 + 2 * SYS_MAX_NODES];
    int n = 0, rc = 0;
    for (int i = 0; i < s->ndispatchers; i++)
        all[n++] = &s->dispatcher[i];
    for (int i = 0; i < s->nwatchers; i++)
        all[n++] = &s->watcher[i];
    all[n++] = &s->api;
    for (int i = 0; i < n; i++) /* all drain at once; a second SIGTERM would cut it short */
        if (all[i]->is_running)
            harness_proc_signal(&all[i]->p, SIGTERM);
    for (int i = 0; i < n; i++) {
        if (!all[i]->is_running)
            continue;
        int code = node_wait(all[i]);
        if (code != 0) {
            fprintf(stderr, "system: %s exited with %d on SIGTERM; log %s\n", all[i]->id, code,
                    all[i]->p.log);
            harness_proc_stop(&all[i]->p);
            all[i]->is_running = 0;
            rc = -1;
        }
    }
    if (s->has_fake)
        fakeimap_stop(&s->fake, 0);
    s->has_fake = 0;
    if (s->has_dovecot)
        dovecot_stop(&s->dv);
    s->has_dovecot = 0;
    if (s->has_idp)
        fakeoauth_stop(&s->idp);
    s->has_idp = 0;
    receiver_stop(s->rx);
    s->rx = NULL;
    sys_kill_redis(s, 0);
    harness_redis_stop(&s->redis); /* removes the directory */
    harness_stop_all();
    for (size_t i = 0; i < s->nmails; i++)
        free(s->mails[i].raw);
    free(s->mails);
    free(s->hooks);
    s->mails = NULL;
    s->hooks = NULL;
    s->nmails = s->capmails = s->nhooks = s->caphooks = 0;
    return rc;
}

/* ---- Users ---- */

int sys_create_user(struct sys *s, const char *code, const char *tag, struct sys_user *u)
{
    struct sys_conn *c = find_conn(s, code);
    if (c == NULL) {
        fprintf(stderr, "system: no connection %s\n", code);
        return -1;
    }
    memset(u, 0, sizeof *u);
    int n;
    if (c->on_fake) {
        n = ++s->next_fake_login;
    } else {
        n = ++s->next_dv_login;
        if (n > s->dv.users) {
            fprintf(stderr, "system: every Dovecot login is taken (dovecot_users=%d)\n",
                    s->dv.users);
            return -1;
        }
    }
    snprintf(u->tag, sizeof u->tag, "%s", tag);
    snprintf(u->code, sizeof u->code, "%s", code);
    snprintf(u->login, sizeof u->login, c->oauth2 ? "user%d@example.com" : "user%d", n);
    u->on_fake = c->on_fake;
    char path[256], body[512];
    snprintf(path, sizeof path, "/api/v2/connections/%s/users", code);
    if (c->oauth2) {
        snprintf(body, sizeof body, "{\"tag\":\"%s\"}", tag);
        return call(s, 0, "POST", path, body, 201, NULL);
    }
    snprintf(body, sizeof body,
             "{\"tag\":\"%s\",\"email\":\"%s@example.com\",\"login_username\":\"%s\","
             "\"login_password\":\"pass%d\"}",
             tag, tag, u->login, n);
    return call(s, 0, "POST", path, body, 201, NULL);
}

int sys_get_user(struct sys *s, const struct sys_user *u, struct api_resp *out)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v2/connections/%s/users/%s", u->code, u->tag);
    return sys_api(s, out, "GET", path, NULL);
}

int sys_wait_user_state(struct sys *s, const struct sys_user *u, const char *state, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    struct api_resp r = {0};
    char last[64] = "";
    do {
        if (sys_get_user(s, u, &r) == 200) {
            const char *st = jstr(&r, "state");
            snprintf(last, sizeof last, "%s", st ? st : "(none)");
            if (st != NULL && strcmp(st, state) == 0) {
                api_resp_free(&r);
                return 0;
            }
        } else {
            snprintf(last, sizeof last, "HTTP %d", r.status);
        }
        harness_poll_pause();
    } while (harness_now_ms() < deadline);
    fprintf(stderr, "system: user %s is %s, not %s, after %d ms (last_error %s)\n", u->tag, last,
            state, sys_ms(ms), jstr(&r, "last_error") ? jstr(&r, "last_error") : "null");
    api_resp_free(&r);
    return -1;
}

int sys_add_user_on(struct sys *s, const char *code, const char *tag, struct sys_user *u)
{
    if (sys_create_user(s, code, tag, u) < 0)
        return -1;
    return sys_wait_user_state(s, u, "watching", WATCHING_MS);
}

int sys_add_user(struct sys *s, const char *tag, struct sys_user *u)
{
    return sys_add_user_on(s, s->has_dovecot ? SYS_DOVECOT : SYS_FAKE, tag, u);
}

int sys_add_users(struct sys *s, const char *code, const char *prefix, int n, struct sys_user *u)
{
    for (int i = 0; i < n; i++) {
        char tag[64];
        snprintf(tag, sizeof tag, "%.40s-%d", prefix, i + 1);
        if (sys_create_user(s, code, tag, &u[i]) < 0)
            return -1;
    }
    for (int i = 0; i < n; i++)
        if (sys_wait_user_state(s, &u[i], "watching", WATCHING_MS + 10 * n) < 0)
            return -1;
    return 0;
}

/* ---- Mail ---- */

static int sha1_hex(const void *p, size_t n, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(p, n, md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        return -1;
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

long sys_deliver(struct sys *s, const struct sys_user *u, size_t body_bytes)
{
    return sys_deliver_to(s, u, "INBOX", body_bytes);
}

long sys_deliver_to(struct sys *s, const struct sys_user *u, const char *mailbox, size_t body_bytes)
{
    int inbox = strcmp(mailbox, "INBOX") == 0;
    if (s->nmails == s->capmails) {
        size_t cap = s->capmails ? s->capmails * 2 : 256;
        struct sys_mail *m = realloc(s->mails, cap * sizeof *m);
        if (m == NULL)
            return -1;
        s->mails = m;
        s->capmails = cap;
    }
    long i = (long)s->nmails;
    struct sys_mail *m = &s->mails[i];
    memset(m, 0, sizeof *m);
    snprintf(m->tag, sizeof m->tag, "%s", u->tag);
    snprintf(m->code, sizeof m->code, "%s", u->code);
    snprintf(m->mailbox, sizeof m->mailbox, "%s", inbox ? "" : mailbox);
    snprintf(m->subject, sizeof m->subject, "System test %ld for %s", i, u->tag);
    snprintf(m->from_mailbox, sizeof m->from_mailbox, "sender%ld", i);
    snprintf(m->from_host, sizeof m->from_host, "mx%ld.example.org", i % 7);
    snprintf(m->message_id, sizeof m->message_id, "<sys.%ld.%s@superimap.test>", i, s->nonce);
    size_t cap = body_bytes + 1024;
    m->raw = malloc(cap);
    if (m->raw == NULL)
        return -1;
    int hl =
        snprintf(m->raw, cap,
                 "From: Sender %ld <%s@%s>\r\n"
                 "To: %s <%s@example.com>\r\n"
                 "Subject: %s\r\n"
                 "Message-ID: %s\r\n"
                 "Date: Tue, 4 Mar 2025 10:00:00 +0000\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=us-ascii\r\n"
                 "\r\n"
                 "Message %ld of the system test.\r\n",
                 i, m->from_mailbox, m->from_host, u->tag, u->tag, m->subject, m->message_id, i);
    m->len = (size_t)hl;
    static const char line[] = "The quick brown fox jumps over the lazy dog 0123456789.\r\n";
    while (m->len - (size_t)hl < body_bytes && m->len + sizeof line < cap) {
        memcpy(m->raw + m->len, line, sizeof line - 1);
        m->len += sizeof line - 1;
    }
    if (sha1_hex(m->raw, m->len, m->sha1) < 0) {
        free(m->raw);
        return -1;
    }
    int rc;
    if (u->on_fake)
        rc = inbox ? fakeimap_append(&s->fake, u->login, m->raw, m->len, NULL)
                   : fakeimap_append_to(&s->fake, u->login, mailbox, m->raw, m->len, NULL);
    else
        rc = inbox ? dovecot_deliver(&s->dv, u->login, m->raw, m->len)
                   : dovecot_deliver_to(&s->dv, u->login, mailbox, m->raw, m->len);
    if (rc < 0) {
        fprintf(stderr, "system: cannot deliver mail %ld to %s\n", i, u->login);
        free(m->raw);
        return -1;
    }
    m->delivered_us = mono_us();
    s->nmails++;
    return i;
}

/* ---- Webhooks ---- */

/* The delivered mail a new_mail body names by Message-ID, or -1. */
static long mail_of(const struct sys *s, const char *message_id)
{
    if (message_id == NULL)
        return -1;
    char nonce[32];
    long i;
    if (sscanf(message_id, "<sys.%ld.%31[^@]@superimap.test>", &i, nonce) != 2 ||
        strcmp(nonce, s->nonce) != 0 || i < 0 || (size_t)i >= s->nmails)
        return -1;
    return i;
}

/* Checks a new_mail body against the mail it names; returns the mail's
 * index or -1 (a problem is recorded when the body is wrong). */
static long check_new_mail(struct sys *s, const struct receiver_request *q, const char *body,
                           size_t len)
{
    yajl_val v = NULL;
    char err[128];
    if (json_parse_object(body, len, 64, &v, err, sizeof err) < 0) {
        problem(s, "webhook %s: body does not parse: %s", q->id, err);
        return -1;
    }
    yajl_val env = json_get(v, "envelope");
    yajl_val from = json_get(env, "from");
    const char *mid = json_get_str(env, "message_id");
    long i = mail_of(s, mid);
    if (i < 0) {
        fprintf(stderr, "system: webhook %s names no mail of ours (message_id %s)\n", q->id,
                mid ? mid : "null");
        json_free(v);
        return -1;
    }
    const struct sys_mail *m = &s->mails[i];
    const char *sha1 = json_get_str(v, "sha1"), *rfc = json_get_str(v, "rfc822");
    const char *code = json_get_str(v, "imap_provider_code");
    const char *mailbox = json_get_str(v, "mailbox");
    const char *subject = json_get_str(env, "subject");
    yajl_val f0 = YAJL_IS_ARRAY(from) && from->u.array.len == 1 ? from->u.array.values[0] : NULL;
    const char *fm = json_get_str(f0, "mailbox"), *fh = json_get_str(f0, "host");
    int64_t size = -1, uid = -1;
    json_get_int(v, "size", &size);
    json_get_int(v, "uid", &uid);
    int too_large = -1;
    json_get_bool(v, "too_large", &too_large);
    if (sha1 == NULL || strcmp(sha1, m->sha1) != 0)
        problem(s, "webhook %s (mail %ld): sha1 %s, want %s", q->id, i, sha1 ? sha1 : "null",
                m->sha1);
    else if (rfc == NULL || strlen(rfc) != m->len || memcmp(rfc, m->raw, m->len) != 0)
        problem(s, "webhook %s (mail %ld): rfc822 differs from the delivered bytes", q->id, i);
    else if (size != (int64_t)m->len || too_large != 0)
        problem(s, "webhook %s (mail %ld): size %lld too_large %d, want %zu and false", q->id, i,
                (long long)size, too_large, m->len);
    else if (strcmp(q->user_tag, m->tag) != 0 || code == NULL || strcmp(code, m->code) != 0)
        problem(s, "webhook %s (mail %ld): user %s/%s, want %s/%s", q->id, i, q->user_tag,
                code ? code : "null", m->tag, m->code);
    else if (subject == NULL || strcmp(subject, m->subject) != 0)
        problem(s, "webhook %s (mail %ld): subject \"%s\", want \"%s\"", q->id, i,
                subject ? subject : "null", m->subject);
    else if (fm == NULL || fh == NULL || strcmp(fm, m->from_mailbox) != 0 ||
             strcmp(fh, m->from_host) != 0)
        problem(s, "webhook %s (mail %ld): from %s@%s, want %s@%s", q->id, i, fm ? fm : "null",
                fh ? fh : "null", m->from_mailbox, m->from_host);
    else if (uid <= 0)
        problem(s, "webhook %s (mail %ld): no uid", q->id, i);
    else if (m->mailbox[0] ? mailbox == NULL || strcmp(mailbox, m->mailbox) != 0
                           : json_get(v, "mailbox") != NULL)
        problem(s, "webhook %s (mail %ld): mailbox %s, want %s", q->id, i,
                mailbox ? mailbox : "none", m->mailbox[0] ? m->mailbox : "none (INBOX)");
    json_free(v);
    struct sys_mail *mm = &s->mails[i];
    mm->attempts++;
    if (q->status >= 200 && q->status < 300) {
        if (mm->announced++ == 0) {
            snprintf(mm->id, sizeof mm->id, "%s", q->id);
            mm->uid = uid;
            mm->first_us = q->mono_us;
        } else if (strcmp(mm->id, q->id) != 0) {
            mm->other_ids++;
        }
    }
    return i;
}

/* Checks what every webhook must satisfy, and records it. */
static void read_hook(struct sys *s, size_t idx, const struct receiver_request *q)
{
    if (s->nhooks == s->caphooks) {
        size_t cap = s->caphooks ? s->caphooks * 2 : 256;
        struct sys_hook *h = realloc(s->hooks, cap * sizeof *h);
        if (h == NULL)
            abort();
        s->hooks = h;
        s->caphooks = cap;
    }
    struct sys_hook *h = &s->hooks[s->nhooks++];
    memset(h, 0, sizeof *h);
    snprintf(h->event, sizeof h->event, "%s", q->event);
    snprintf(h->tag, sizeof h->tag, "%s", q->user_tag);
    snprintf(h->id, sizeof h->id, "%s", q->id);
    h->status = q->status;
    h->us = q->mono_us;
    h->mail = -1;
    long long now = (long long)time(NULL);
    if (strcmp(q->pid, SYS_HOOK_MAIL) != 0 && strcmp(q->pid, SYS_HOOK_USER) != 0)
        problem(s, "webhook to an unexpected path %s", q->path);
    else if (!q->json_ok)
        problem(s, "webhook %s: body is not a JSON object", q->id);
    else if (!q->std_sig_ok || q->nsigs != 1)
        problem(s, "webhook %s (%s): webhook-signature does not verify (%d signatures)", q->id,
                q->event, q->nsigs);
    else if (!q->body_sig_ok)
        problem(s, "webhook %s (%s): the body's signature does not verify", q->id, q->event);
    else if (q->id[0] == '\0' || strcmp(q->id, q->body_id) != 0)
        problem(s, "webhook-id %s differs from the body's id %s", q->id, q->body_id);
    else if (q->ts < now - HOOK_FRESH_SEC || q->ts > now + HOOK_FRESH_SEC ||
             q->body_ts < q->ts - 1 || q->body_ts > q->ts + 1)
        problem(s, "webhook %s: timestamps %lld (header) %lld (body), now %lld", q->id,
                (long long)q->ts, (long long)q->body_ts, now);
    int is_mail_path = strcmp(q->pid, SYS_HOOK_MAIL) == 0;
    if (is_mail_path != (strcmp(q->event, "new_mail") == 0))
        problem(s, "webhook %s: event %s sent to %s", q->id, q->event, q->path);
    if (strcmp(q->event, "new_mail") != 0)
        return;
    size_t len = 0;
    char *body = receiver_body(s->rx, idx, &len);
    if (body == NULL) {
        problem(s, "webhook %s: no body kept", q->id);
        return;
    }
    h->mail = check_new_mail(s, q, body, len);
    free(body);
}

int sys_poll(struct sys *s)
{
    if (s->rx == NULL)
        return 0;
    size_t n = (size_t)receiver_count(s->rx, NULL);
    if (n <= s->nhooks)
        return 0;
    struct receiver_request *q = calloc(n, sizeof *q);
    if (q == NULL)
        abort();
    size_t got = receiver_requests(s->rx, q, n);
    int read = 0;
    for (size_t i = s->nhooks; i < got; i++, read++)
        read_hook(s, i, &q[i]);
    free(q);
    return read;
}

static size_t announced(const struct sys *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nmails; i++)
        n += s->mails[i].announced > 0;
    return n;
}

size_t sys_wait_announced(struct sys *s, size_t n, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    size_t got;
    for (;;) {
        sys_poll(s);
        got = announced(s);
        if (got >= n || harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    if (got < n)
        fprintf(stderr, "system: %zu of %zu mails announced after %d ms\n", got, n, sys_ms(ms));
    return got;
}

int sys_wait_mail(struct sys *s, long i, int ms)
{
    if (i < 0 || (size_t)i >= s->nmails)
        return -1;
    long long deadline = harness_now_ms() + sys_ms(ms);
    for (;;) {
        sys_poll(s);
        if (s->mails[i].announced > 0)
            return 0;
        if (harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    fprintf(stderr, "system: mail %ld (%s) not announced after %d ms (%d attempts)\n", i,
            s->mails[i].tag, sys_ms(ms), s->mails[i].attempts);
    return -1;
}

int sys_count_hooks(const struct sys *s, const char *event, const char *tag, int ok_only)
{
    int n = 0;
    for (size_t i = 0; i < s->nhooks; i++) {
        const struct sys_hook *h = &s->hooks[i];
        if ((event == NULL || strcmp(h->event, event) == 0) &&
            (tag == NULL || strcmp(h->tag, tag) == 0) &&
            (!ok_only || (h->status >= 200 && h->status < 300)))
            n++;
    }
    return n;
}

int sys_wait_hooks(struct sys *s, const char *event, const char *tag, int ok_only, int n, int ms)
{
    long long deadline = harness_now_ms() + sys_ms(ms);
    int got;
    for (;;) {
        sys_poll(s);
        got = sys_count_hooks(s, event, tag, ok_only);
        if (got >= n || harness_now_ms() >= deadline)
            break;
        harness_poll_pause();
    }
    if (got < n)
        fprintf(stderr, "system: %d of %d %s webhooks (tag %s) after %d ms\n", got, n,
                event ? event : "", tag ? tag : "any", sys_ms(ms));
    return got;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sys_report(struct sys *s, struct sys_report *r)
{
    sys_poll(s);
    memset(r, 0, sizeof *r);
    r->requests = (int)s->nhooks;
    const char **ids = calloc(s->nhooks + 1, sizeof *ids);
    if (ids == NULL)
        abort();
    size_t nids = 0;
    for (size_t i = 0; i < s->nhooks; i++) {
        const struct sys_hook *h = &s->hooks[i];
        if (strcmp(h->event, "new_mail") != 0)
            continue;
        if (h->mail < 0)
            r->unknown++;
        if (h->status >= 200 && h->status < 300) {
            r->mail_hooks++;
            ids[nids++] = h->id;
        }
    }
    qsort(ids, nids, sizeof *ids, cmp_str);
    for (size_t i = 1; i < nids; i++)
        r->redelivered += strcmp(ids[i - 1], ids[i]) == 0;
    free(ids);
    for (size_t i = 0; i < s->nmails; i++) {
        r->announced += s->mails[i].announced > 0;
        r->duplicates += s->mails[i].other_ids > 0;
    }
    r->bad = s->bad;
    return s->bad == 0 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

size_t sys_latency(const struct sys *s, size_t from, size_t to, double *p50, double *p99,
                   double *max)
{
    if (to > s->nmails)
        to = s->nmails;
    double *v = calloc(to > from ? to - from + 1 : 1, sizeof *v);
    if (v == NULL)
        abort();
    size_t n = 0;
    for (size_t i = from; i < to; i++) {
        const struct sys_mail *m = &s->mails[i];
        if (m->announced == 0)
            continue;
        double ms = (double)(m->first_us - m->delivered_us) / 1000.0;
        v[n++] = ms < 0 ? 0 : ms;
    }
    qsort(v, n, sizeof *v, cmp_double);
    if (p50 != NULL)
        *p50 = n ? v[(n - 1) * 50 / 100] : 0;
    if (p99 != NULL)
        *p99 = n ? v[(n - 1) * 99 / 100] : 0;
    if (max != NULL)
        *max = n ? v[n - 1] : 0;
    free(v);
    return n;
}

/* ---- Diagnostics ---- */

static void tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    static char ring[64][512];
    int n = 0;
    if (lines > 64)
        lines = 64;
    while (fgets(ring[n % lines], sizeof ring[0], f) != NULL)
        n++;
    fclose(f);
    fprintf(stderr, "---- %s (last %d of %d lines)\n", path, n < lines ? n : lines, n);
    for (int i = n < lines ? 0 : n - lines; i < n; i++)
        fputs(ring[i % lines], stderr);
}

void sys_dump_logs(const struct sys *s, int lines)
{
    if (lines <= 0)
        return;
    tail(s->api.p.log, lines);
    for (int i = 0; i < s->nwatchers; i++)
        tail(s->watcher[i].p.log, lines);
    for (int i = 0; i < s->ndispatchers; i++)
        tail(s->dispatcher[i].p.log, lines);
}

/* ---- Steady mail ---- */

int sys_pace_step(struct sys *s, struct sys_pace *p)
{
    long long now = harness_now_ms();
    int rc = 0;
    if (now >= p->due_ms) {
        long n = p->sent++;
        rc = sys_deliver(s, &p->users[n % p->n], (size_t)(n % 3) * 400) >= 0 ? 0 : -1;
        p->due_ms = p->due_ms + p->every_ms > now ? p->due_ms + p->every_ms : now + p->every_ms;
    }
    sys_poll(s);
    harness_poll_pause();
    return rc;
}

long long sys_first_webhook_after(const struct sys *s, long long t_ms)
{
    long long first = 0;
    for (size_t i = 0; i < s->nmails; i++) {
        const struct sys_mail *m = &s->mails[i];
        if (m->announced > 0 && m->delivered_us / 1000 >= t_ms &&
            (first == 0 || m->first_us / 1000 < first))
            first = m->first_us / 1000;
    }
    return first;
}

/* ---- Checks ---- */

int sys_check_every_message_once(struct sys *s, int ms, const char *scenario, int *raw)
{
    size_t n = s->nmails;
    *raw = 0;
    if (sys_wait_announced(s, n, ms) < n) {
        for (size_t i = 0; i < n; i++)
            if (s->mails[i].announced == 0)
                fprintf(stderr, "%s: mail %zu to %s not announced (%d attempts)\n", scenario, i,
                        s->mails[i].tag, s->mails[i].attempts);
        sys_dump_logs(s, 30);
        snprintf(s->why, sizeof s->why, "%s: %zu of %zu messages announced", scenario,
                 sys_wait_announced(s, n, 0), n);
        return -1;
    }
    struct sys_report rep;
    if (sys_report(s, &rep) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const struct sys_mail *m = &s->mails[i];
        if (m->announced > 1) {
            *raw += m->announced - 1;
            printf("%s: raw duplicate: mail %zu to %s, webhook-id %s answered 2xx %d times\n",
                   scenario, i, m->tag, m->id, m->announced);
        }
    }
    const char *why = NULL;
    if (rep.unknown != 0)
        why = "new_mail webhooks of no delivered message";
    else if (rep.duplicates != 0)
        why = "a message announced under a second event id";
    else if (rep.announced != (int)n || rep.mail_hooks != (int)n + *raw)
        why = "announcements do not add up";
    else if (rep.redelivered != *raw)
        why = "redeliveries (same id) do not match the raw duplicates";
    for (size_t a = 0; a < n && why == NULL; a++) /* within a user, one UID per message */
        for (size_t b = a + 1; b < n; b++)
            if (strcmp(s->mails[a].tag, s->mails[b].tag) == 0 && s->mails[a].uid == s->mails[b].uid)
                why = "two messages of a user under one UID";
    if (why == NULL)
        return 0;
    snprintf(s->why, sizeof s->why,
             "%s: %s (%zu delivered, %d announced, %d webhooks 2xx, %d raw duplicates, %d "
             "redelivered, %d under a second id, %d unknown)",
             scenario, why, n, rep.announced, rep.mail_hooks, *raw, rep.redelivered, rep.duplicates,
             rep.unknown);
    return -1;
}
