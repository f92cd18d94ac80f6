/*
 * superimap-fake-imapd: an IMAP server for tests and benchmarks. Many users,
 * INBOXes in memory, IDLE, plain, STARTTLS and implicit TLS listeners on
 * several addresses (to go past one address's ephemeral ports), a control
 * channel to append mail and read counters, and seeded fault injection
 * (the test server of docs/architecture.md section 1, after the original's
 * chaos server).
 *
 * This file wires it: configuration, file-descriptor limit, listeners,
 * control socket, signals and the one libev loop.
 *
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "cmd/fake-imapd/control.h"
#include "cmd/fake-imapd/faults.h"
#include "cmd/fake-imapd/server.h"
#include "core/config.h"
#include "core/log.h"
#include "core/node.h"

#define PROGRAM "superimap-fake-imapd"

static struct {
    struct ev_loop *loop;
    struct server *srv;
    struct control *ctl;
    ev_signal sigterm, sigint, sighup;
} app;

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (w->signum == SIGHUP) {
        log_reopen();
        return;
    }
    log_info("signal received, stopping signal=%s", w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
    ev_break(loop, EVBREAK_ALL);
}

/* Calls listen_one() for each address of "a,b,c.d.e.f-g" (the last octet
 * ranging f..g). Returns 0 or -1 after logging why. */
static int listen_all(const struct config *cfg)
{
    char list[4096];
    snprintf(list, sizeof list, "%s", cfg->fake_addrs);
    char *save = NULL;
    for (char *a = strtok_r(list, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
        char host[64];
        int first = 0, last = 0;
        char *dash = strchr(a, '-');
        char *dot = strrchr(a, '.');
        if (dash != NULL) {
            if (dot == NULL || dot > dash) {
                log_error("bad address range addr=%s", a);
                return -1;
            }
            *dash = '\0';
            first = atoi(dot + 1);
            last = atoi(dash + 1);
            *dot = '\0';
            if (first < 0 || last < first || last > 255) {
                log_error("bad address range addr=%s", a);
                return -1;
            }
        }
        for (int k = first; k <= last; k++) {
            if (dash != NULL)
                snprintf(host, sizeof host, "%s.%d", a, k);
            else
                snprintf(host, sizeof host, "%s", a);
            char err[256];
            if (cfg->fake_port >= 0 &&
                server_listen(app.srv, host, cfg->fake_port, 0, err, sizeof err) < 0) {
                log_error("cannot listen err=\"%s\"", err);
                return -1;
            }
            if (cfg->fake_tls_port >= 0 &&
                server_listen(app.srv, host, cfg->fake_tls_port, 1, err, sizeof err) < 0) {
                log_error("cannot listen err=\"%s\"", err);
                return -1;
            }
        }
    }
    return 0;
}

static void cleanup(void)
{
    control_free(app.ctl);
    server_free(app.srv);
    if (app.loop != NULL) {
        ev_signal_stop(app.loop, &app.sigterm);
        ev_signal_stop(app.loop, &app.sigint);
        ev_signal_stop(app.loop, &app.sighup);
        ev_loop_destroy(app.loop);
    }
    log_shutdown();
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct config cfg;
    config_main(&cfg, CONFIG_ROLE_FAKE_IMAPD, PROGRAM,
                "An IMAP server for tests and benchmarks: many users, IDLE, TLS, a control "
                "socket to append mail and read counters, and seeded fault injection.",
                argc, argv);
    char node[32];
    snprintf(node, sizeof node, "fake-%ld", (long)getpid());
    if (log_init(PROGRAM, node, cfg.log_level, cfg.log_format, cfg.log_components, cfg.log_file) <
        0) {
        fprintf(stderr, "%s: cannot open SUPERIMAP_LOG_FILE '%s'\n", PROGRAM, cfg.log_file);
        return 2;
    }
    log_info("starting version=%s revision=%s pid=%ld", SUPERIMAP_VERSION, SUPERIMAP_GIT_REV,
             (long)getpid());
    config_log(&cfg, CONFIG_ROLE_FAKE_IMAPD);
    if ((cfg.fake_cert == NULL) != (cfg.fake_key == NULL)) {
        log_error("SUPERIMAP_FAKE_CERT and SUPERIMAP_FAKE_KEY go together");
        log_shutdown();
        return 2;
    }
    if (cfg.fake_tls_port >= 0 && cfg.fake_cert == NULL) {
        log_error("SUPERIMAP_FAKE_TLS_PORT needs SUPERIMAP_FAKE_CERT and SUPERIMAP_FAKE_KEY");
        log_shutdown();
        return 2;
    }
    long fd_limit = node_raise_fd_limit();

    app.loop = ev_default_loop(EVFLAG_AUTO);
    struct server_opts opts = {
        .cert = cfg.fake_cert,
        .key = cfg.fake_key,
        .require_tls = cfg.fake_require_tls,
        .xoauth2_prefix = cfg.fake_xoauth2_prefix,
        .users = cfg.fake_users,
        .max_sessions_per_user = cfg.fake_max_sessions_per_user,
        .max_message = (size_t)cfg.fake_max_message,
    };
    char err[512];
    app.srv = server_new(app.loop, &opts, err, sizeof err);
    if (app.srv == NULL) {
        log_error("cannot start err=\"%s\"", err);
        cleanup();
        return 1;
    }
    double rate = strtod(cfg.fake_fault_rate, NULL); /* checked by config_load() */
    faults_configure(server_faults(app.srv), rate, (uint64_t)cfg.fake_fault_seed,
                     cfg.fake_faults ? cfg.fake_faults : "");
    unsigned profiles = 0;
    server_parse_profiles(cfg.fake_profiles ? cfg.fake_profiles : "", &profiles); /* checked */
    server_set_profiles(app.srv, profiles);
    if (listen_all(&cfg) < 0) {
        cleanup();
        return 1;
    }
    if (cfg.fake_control != NULL) {
        app.ctl = control_new(app.loop, app.srv, cfg.fake_control, (size_t)cfg.fake_max_message,
                              err, sizeof err);
        if (app.ctl == NULL) {
            log_error("cannot start the control channel err=\"%s\"", err);
            cleanup();
            return 1;
        }
    }
    ev_signal_init(&app.sigterm, on_signal, SIGTERM);
    ev_signal_init(&app.sigint, on_signal, SIGINT);
    ev_signal_init(&app.sighup, on_signal, SIGHUP);
    ev_signal_start(app.loop, &app.sigterm);
    ev_signal_start(app.loop, &app.sigint);
    ev_signal_start(app.loop, &app.sighup);
    log_info("ready fd_limit=%ld users=%d control=%s", fd_limit, cfg.fake_users,
             cfg.fake_control ? cfg.fake_control : "-");

    ev_run(app.loop, 0);

    log_info("stopped exit_code=0");
    cleanup();
    return 0;
}
