/*
 * The README's commands, run as written in a clean copy of the tree (the
 * tracked and untracked, not ignored, files: no build/, no run/): `make run`
 * builds, brings up Redis, api, watcher and dispatcher, and Ctrl-C (SIGINT to
 * its process group, as a terminal sends it) stops every process it started
 * while run/ keeps the key and token for the next start; a second `make run`
 * on the same run/ and a taken port are refused clearly; `make demo` turns a
 * message into a webhook whose two signatures hold, and Ctrl-C stops it too.
 *
 * The test is a child subreaper (PR_SET_CHILD_SUBREAPER): every process the
 * commands start, setsid or daemonized ones too (Dovecot), stays its
 * descendant, so "every process it started is gone" means no descendant is
 * left but zombies.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "tests/integration/harness.h"

static char tree[64];     /* the copy */
static char make_log[96]; /* output of the command being watched */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Copies the source tree's files, as git sees them, into a new tree[]. */
static int suite_setup(void **state)
{
    (void)state;
    const char *src = getenv("SUPERIMAP_SRC_DIR");
    snprintf(tree, sizeof tree, "/tmp/si-readme-XXXXXX");
    if (mkdtemp(tree) == NULL)
        return -1;
    snprintf(make_log, sizeof make_log, "%s.log", tree);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return -1;
    if (sh("cd '%s' && git ls-files -z --cached --others --exclude-standard | "
           "tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C '%s' -xf -",
           src ? src : ".", tree) != 0) {
        fprintf(stderr, "cannot copy the tree into %s (is it a git checkout?)\n", tree);
        return -1;
    }
    return 0;
}

/* The live (not zombie) descendants of this process. */
static int tree_pids(pid_t *out, int max)
{
    enum { MAXP = 32768 };
    static pid_t pid[MAXP], ppid[MAXP];
    static char live[MAXP], mine[MAXP];
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    int np = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && np < MAXP) {
        char *end, path[64], stat[512];
        long p = strtol(e->d_name, &end, 10);
        if (*end != '\0' || p <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/stat", p);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[len] = '\0';
        char *close = strrchr(stat, ')'), state;
        int parent;
        if (close == NULL || sscanf(close + 1, " %c %d", &state, &parent) != 2)
            continue;
        pid[np] = (pid_t)p;
        ppid[np] = (pid_t)parent;
        live[np] = state != 'Z' && state != 'X';
        mine[np] = 0;
        np++;
    }
    closedir(d);
    /* Mark descendants until nothing changes (parents may come after children). */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < np; i++) {
            if (mine[i])
                continue;
            int parent_mine = ppid[i] == getpid();
            for (int j = 0; j < np && !parent_mine; j++)
                parent_mine = mine[j] && pid[j] == ppid[i];
            if (parent_mine)
                mine[i] = changed = 1;
        }
    }
    int n = 0;
    for (int i = 0; i < np && n < max; i++)
        if (mine[i] && live[i])
            out[n++] = pid[i];
    return n;
}

/* Waits up to ms for every process of the copy to end; prints the ones left. */
static int wait_tree_empty(int ms)
{
    pid_t pids[64];
    long long deadline = harness_now_ms() + ms;
    int n;
    while ((n = tree_pids(pids, 64)) > 0 && harness_now_ms() < deadline)
        harness_poll_pause();
    for (int i = 0; i < n; i++) {
        char path[64], cmd[256] = "";
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pids[i]);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            size_t len = fread(cmd, 1, sizeof cmd - 1, f);
            for (size_t j = 0; j < len; j++)
                cmd[j] = cmd[j] == '\0' ? ' ' : cmd[j];
            cmd[len] = '\0';
            fclose(f);
        }
        fprintf(stderr, "still running: pid %d: %s\n", (int)pids[i], cmd);
    }
    return n;
}

/* Stops what a failed test left in the copy, all processes we started:
 * SIGTERM first, so that the scripts stop what they started, then SIGKILL. */
static void kill_tree(void)
{
    pid_t pids[64];
    int n = tree_pids(pids, 64);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    if (n > 0 && wait_tree_empty(30000) != 0) {
        n = tree_pids(pids, 64);
        for (int i = 0; i < n; i++)
            kill(pids[i], SIGKILL);
        wait_tree_empty(5000);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) /* the orphans handed to us */
        ;
}

static int suite_teardown(void **state)
{
    (void)state;
    kill_tree();
    sh("rm -rf '%s' '%s'", tree, make_log);
    return 0;
}

/* `make target` in the copy, in a process group of its own with SIGINT at
 * its default (as a terminal's foreground job has it), output to log. env:
 * NULL-terminated "NAME=value" strings beside PATH and HOME. */
static pid_t start_make(const char *target, const char *log, const char *const *env)
{
    unlink(log); /* nothing reads an earlier run's lines before the child truncates it */
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || chdir(tree) != 0)
        _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    const char *envp[32];
    char path[4096], home[1024];
    const char *p = getenv("PATH"), *h = getenv("HOME");
    snprintf(path, sizeof path, "PATH=%s", p ? p : "/usr/bin:/bin");
    snprintf(home, sizeof home, "HOME=%s", h ? h : "/root");
    int n = 0;
    envp[n++] = path;
    envp[n++] = home;
    envp[n++] = "MAKEFLAGS=-j2";
    for (int i = 0; env != NULL && env[i] != NULL && n < 31; i++)
        envp[n++] = env[i];
    envp[n] = NULL;
    const char *argv[] = {"make", target, NULL};
    execve("/usr/bin/make", (char *const *)argv, (char *const *)envp);
    _exit(127);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *s = calloc(1, 1 << 20);
    if (s != NULL)
        s[fread(s, 1, (1 << 20) - 1, f)] = '\0';
    fclose(f);
    return s;
}

/* Polls log until it holds needle (0), or pid exits or ms pass (-1: the log
 * is printed). */
static int wait_output(pid_t pid, const char *log, const char *needle, int ms)
{
    long long deadline = harness_now_ms() + ms;
    for (;;) {
        char *s = slurp(log);
        int found = s != NULL && strstr(s, needle) != NULL;
        if (found) {
            free(s);
            return 0;
        }
        int exited = waitpid(pid, NULL, WNOHANG) == pid;
        if (exited || harness_now_ms() > deadline) {
            fprintf(stderr, "no \"%s\" in the output of make (%s):\n%s\n", needle,
                    exited ? "it exited" : "time is up", s ? s : "");
            free(s);
            return -1;
        }
        free(s);
        harness_poll_pause();
    }
}

/* Fails, printing the output of make, unless it holds needle (or, when
 * present is 0, lacks it). */
static void expect_output(const char *needle, int present)
{
    char *s = slurp(make_log);
    if (s == NULL || (strstr(s, needle) != NULL) != present) {
        fprintf(stderr, "---- output of make:\n%s\n----\n", s ? s : "(none)");
        fail_msg("\"%s\" %s the output of make", needle, present ? "missing from" : "found in");
    }
    free(s);
}

/* Waits up to ms for pid to exit; its status, or -1. */
static int wait_exit(pid_t pid, int ms)
{
    long long deadline = harness_now_ms() + ms;
    int status;
    while (harness_now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        harness_poll_pause();
    }
    return -1;
}

/* Ctrl-C: SIGINT to the group; make must exit and every process go. On a
 * failure the processes left and the output are printed. */
static void ctrl_c(pid_t make)
{
    long long t0 = harness_now_ms();
    assert_int_equal(kill(-make, SIGINT), 0);
    /* Each node drains within SUPERIMAP_SHUTDOWN_TIMEOUT_SEC (30 s). */
    int status = wait_exit(make, 90000);
    if (status == -1) {
        wait_tree_empty(0);
        expect_output("(make did not exit within 90 s of SIGINT)", 1);
    }
    assert_int_equal(wait_tree_empty(10000), 0);
    fprintf(stderr, "make stopped %lld ms after SIGINT\n", harness_now_ms() - t0);
}

/* Keeps the first 1,023 bytes of a body, NUL-terminated, in ud[1024]. */
static size_t collect_body(char *p, size_t size, size_t n, void *ud)
{
    char *out = ud;
    size_t have = strlen(out), total = size * n;
    size_t take = total < 1023 - have ? total : 1023 - have;
    memcpy(out + have, p, take);
    out[have + take] = '\0';
    return total;
}

/* GET path on the api with the admin token; the status, body into out[1024]. */
static long admin_get(int port, const char *token, const char *path, char *out)
{
    CURL *c = curl_easy_init();
    char url[256], auth[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    out[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* POSTs the dashboard's sign-in form; the status (303 when signed in). */
static long sign_in(int port, const char *user, const char *password)
{
    CURL *c = curl_easy_init();
    char url[256], form[256], body[1024] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/admin/login", port);
    snprintf(form, sizeof form, "username=%s&password=%s", user, password);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

/* A secret file of run/: its first line, which must be mode 600. */
static void run_secret(const char *name, char *out, size_t outlen)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run/%s", tree, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *s = slurp(path);
    assert_non_null(s);
    s[strcspn(s, "\n")] = '\0';
    assert_true(strlen(s) >= 32);
    snprintf(out, outlen, "%s", s);
    free(s);
}

struct ports {
    int api, watcher, dispatcher;
    char env[3][64];
};

static void pick_ports(struct ports *p)
{
    p->api = harness_free_port();
    do
        p->watcher = harness_free_port();
    while (p->watcher == p->api);
    do
        p->dispatcher = harness_free_port();
    while (p->dispatcher == p->api || p->dispatcher == p->watcher);
    snprintf(p->env[0], sizeof p->env[0], "SUPERIMAP_API_ADDR=127.0.0.1:%d", p->api);
    snprintf(p->env[1], sizeof p->env[1], "SUPERIMAP_WATCHER_ADDR=127.0.0.1:%d", p->watcher);
    snprintf(p->env[2], sizeof p->env[2], "SUPERIMAP_DISPATCHER_ADDR=127.0.0.1:%d", p->dispatcher);
}

/* `make run` until its banner, then all three nodes answer /readyz 200 and
 * the api takes run/admin.token and sees one watcher and one dispatcher. */
static pid_t make_run_ready(struct ports *p)
{
    pid_t make;
    for (int attempt = 1;; attempt++) {
        const char *env[] = {p->env[0], p->env[1], p->env[2], NULL};
        make = start_make("run", make_log, env);
        assert_true(make > 0);
        /* The first start builds the tree. */
        if (wait_output(make, make_log, "superimap is running", 300000) == 0)
            break;
        /* A port picked free may be taken by another process before the
         * node binds it (the build takes seconds): new ports, up to 3 times. */
        char *out = slurp(make_log);
        int taken = out != NULL && strstr(out, "exited before it was ready") != NULL;
        free(out);
        assert_true(taken && attempt < 3); /* wait_output() reaped make */
        pick_ports(p);
    }
    assert_int_equal(harness_http_get(p->api, "/readyz", NULL, 0), 200);
    assert_int_equal(harness_http_get(p->watcher, "/readyz", NULL, 0), 200);
    assert_int_equal(harness_http_get(p->dispatcher, "/readyz", NULL, 0), 200);
    char token[128], body[1024];
    run_secret("admin.token", token, sizeof token);
    long long deadline = harness_now_ms() + 10000;
    while (admin_get(p->api, token, "/admin/api/fleet", body) != 200 ||
           strstr(body, "\"watcher\":1") == NULL || strstr(body, "\"dispatcher\":1") == NULL) {
        if (harness_now_ms() > deadline)
            fail_msg("fleet never showed one watcher and one dispatcher: %s", body);
        harness_poll_pause();
    }
    return make;
}

static void test_make_run_starts_stops_and_keeps_its_secrets(void **state)
{
    (void)state;
    struct ports p;
    pick_ports(&p);
    pid_t make = make_run_ready(&p);
    char key[128], token[128], password[128];
    run_secret("encryption.key", key, sizeof key);
    run_secret("admin.token", token, sizeof token);
    /* The dashboard's first account, as the banner says. */
    run_secret("admin.password", password, sizeof password);
    char *banner = slurp(make_log);
    assert_non_null(strstr(banner, "(user admin, password in run/admin.password)"));
    free(banner);
    assert_int_equal(sign_in(p.api, "admin", password), 303);
    assert_int_equal(sign_in(p.api, "admin", "not-the-password"), 401);

    /* A second make run on the same run/ is refused and leaves the first alone. */
    char second_log[128];
    snprintf(second_log, sizeof second_log, "%s.second", make_log);
    const char *env[] = {p.env[0], p.env[1], p.env[2], NULL};
    pid_t second = start_make("run", second_log, env);
    int status = wait_exit(second, 60000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    char *out = slurp(second_log);
    assert_non_null(strstr(out, "another make run is using"));
    free(out);
    unlink(second_log);
    assert_int_equal(harness_http_get(p.api, "/readyz", NULL, 0), 200);

    ctrl_c(make);
    expect_output("\nstopped\n", 1);

    /* The next start reuses the key and the token. */
    pick_ports(&p);
    make = make_run_ready(&p);
    char key2[128], token2[128], password2[128];
    run_secret("encryption.key", key2, sizeof key2);
    run_secret("admin.token", token2, sizeof token2);
    run_secret("admin.password", password2, sizeof password2);
    assert_string_equal(key, key2);
    assert_string_equal(token, token2);
    assert_string_equal(password, password2);
    assert_int_equal(sign_in(p.api, "admin", password2), 303);
    ctrl_c(make);
}

static void test_make_run_names_a_taken_port(void **state)
{
    (void)state;
    struct ports p;
    pick_ports(&p);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p.api)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);

    const char *env[] = {p.env[0], p.env[1], p.env[2], NULL};
    pid_t make = start_make("run", make_log, env);
    int status = wait_exit(make, 300000);
    close(fd);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    expect_output("api exited before it was ready", 1);
    assert_int_equal(wait_tree_empty(10000), 0);
}

static void test_make_demo_delivers_a_signed_webhook(void **state)
{
    (void)state;
    pid_t make = start_make("demo", make_log, NULL);
    assert_true(make > 0);
    assert_int_equal(wait_output(make, make_log, "==== try next", 300000), 0);
    expect_output("POST /hook/new_mail HTTP/1.1", 1);
    expect_output("# webhook-signature: VALID", 1);
    expect_output("# body \"signature\": VALID", 1);
    expect_output("INVALID", 0);
    ctrl_c(make);
    expect_output("demo: stopped", 1);
}

/* Another IMAP server is what took a user's package away once: asking for
 * cyrus-imapd where dovecot-imapd is installed (make deps installed it) must
 * name dovecot-imapd and change nothing. --dry-run keeps the machine as it
 * is even if the refusal were broken; the real install takes the same path
 * and then adds apt's --no-remove. */
static void test_make_deps_refuses_to_remove_a_package(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cd '%s' && sh scripts/deps.sh --dry-run cyrus-imapd > '%s' 2>&1",
             tree, make_log);
    int status = system(cmd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    expect_output("installing cyrus-imapd would remove: dovecot-imapd", 1);
    expect_output("nothing was changed", 1);
    expect_output("make run-deps", 1);

    snprintf(cmd, sizeof cmd, "cd '%s' && sh scripts/deps.sh --dry-run > '%s' 2>&1", tree,
             make_log);
    status = system(cmd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    expect_output("nothing to install", 1);
}

static int test_teardown(void **state)
{
    (void)state;
    kill_tree();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_make_run_starts_stops_and_keeps_its_secrets, test_teardown),
        cmocka_unit_test_teardown(test_make_run_names_a_taken_port, test_teardown),
        cmocka_unit_test_teardown(test_make_demo_delivers_a_signed_webhook, test_teardown),
        cmocka_unit_test(test_make_deps_refuses_to_remove_a_package),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
