/*
 * superimap-watcher: holds one IMAP IDLE session per user it owns and turns
 * every new message into exactly one event in Redis (DESIGN.md section 3).
 *
 * This file wires the node: it raises the file-descriptor limit, derives the
 * capacity it advertises from it, and runs the node lifecycle of core/node.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <sys/resource.h>

#include "core/config.h"
#include "core/log.h"
#include "core/node.h"

/* Descriptors kept back from sessions: Redis, HTTP workers, logs, TLS files. */
#define FD_RESERVE 100

static struct watcher {
    int capacity; /* users this process takes: min(MAX_USERS, fd limit - reserve) */
    long fd_limit;
    char capacity_text[16];
    char fd_limit_text[24];
} watcher;

/* Raises the soft RLIMIT_NOFILE to the hard one (DESIGN.md section 7) and
 * returns the limit now in force. */
static long raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

static void describe(struct node *n, const char **argv, int *argc, void *data)
{
    (void)n;
    struct watcher *w = data;
    argv[(*argc)++] = "capacity";
    argv[(*argc)++] = w->capacity_text;
    argv[(*argc)++] = "fd_limit";
    argv[(*argc)++] = w->fd_limit_text;
    argv[(*argc)++] = "sessions";
    argv[(*argc)++] = "0";
}

static int prepare(const struct config *cfg, struct node_opts *opts)
{
    watcher.fd_limit = raise_fd_limit();
    long room = watcher.fd_limit - FD_RESERVE;
    watcher.capacity = room < cfg->max_users ? (int)(room > 0 ? room : 0) : cfg->max_users;
    if (watcher.capacity < cfg->max_users)
        log_warn("file-descriptor limit caps capacity below SUPERIMAP_MAX_USERS fd_limit=%ld "
                 "max_users=%d capacity=%d",
                 watcher.fd_limit, cfg->max_users, watcher.capacity);
    snprintf(watcher.capacity_text, sizeof watcher.capacity_text, "%d", watcher.capacity);
    snprintf(watcher.fd_limit_text, sizeof watcher.fd_limit_text, "%ld", watcher.fd_limit);
    log_info("capacity capacity=%d fd_limit=%ld", watcher.capacity, watcher.fd_limit);
    opts->hooks.describe = describe;
    opts->hooks.data = &watcher;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct node_main_spec spec = {
        .role = "watcher",
        .program = "superimap-watcher",
        .summary = "Watches users' IMAP mailboxes with IDLE and enqueues one event per new "
                   "message into Redis.",
        .config_role = CONFIG_ROLE_WATCHER,
        .prepare = prepare,
    };
    return node_main(argc, argv, &spec);
}
