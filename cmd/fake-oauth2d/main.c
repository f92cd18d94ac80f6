/*
 * superimap-fake-oauth2d: a local OAuth2 provider for tests (the provider
 * issue 14 asks for): consent page, authorization code with PKCE, refresh
 * tokens (rotating on request), short-lived access tokens, userinfo,
 * revocation, introspection for Dovecot's oauth2 passdb, and control
 * endpoints to configure it, inject errors and read counters (idp.c).
 *
 * This file wires it: arguments, the civetweb listener (core/http; port 0
 * picks one, reported as "http listening addr=... port=N" like every node),
 * and a clean stop on SIGTERM or SIGINT.
 *
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/fake-oauth2d/idp.h"
#include "core/http.h"
#include "core/log.h"

#define PROGRAM "superimap-fake-oauth2d"

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROGRAM " [options]\n"
               "\n"
               "A local OAuth2 provider for tests. Endpoints: GET/POST /authorize, POST /token,\n"
               "GET /userinfo, POST /revoke, POST /introspect, POST /control/config,\n"
               "POST /control/inject, GET /control/stats (see cmd/fake-oauth2d/idp.c).\n"
               "\n"
               "  --addr HOST            listen address (default 127.0.0.1)\n"
               "  --port N               listen port; 0 picks a free one (default 0)\n"
               "  --client ID:SECRET     a client that may use the provider (repeatable)\n"
               "  --access-ttl SEC       access token lifetime, 1..86400 (default 3600)\n"
               "  --rotate-refresh       each refresh returns a new refresh token, the old one\n"
               "                         is revoked\n"
               "  --threads N            worker threads, 1..256 (default 16)\n"
               "  --log-level LEVEL      debug|info|warn|error (default info)\n"
               "  --help                 this text\n"
               "\n"
               "It logs \"http listening addr=HOST port=N\" once it listens, and stops on\n"
               "SIGTERM or SIGINT.\n");
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *addr = "127.0.0.1";
    int port = 0, ttl = 3600, rotate = 0, threads = 16, level = LL_INFO;
    const char *clients[64];
    int nclients = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--rotate-refresh") == 0) {
            rotate = 1;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, PROGRAM ": unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--addr") == 0) {
            addr = v;
        } else if (strcmp(a, "--port") == 0) {
            bad = parse_int(v, 0, 65535, &port);
        } else if (strcmp(a, "--access-ttl") == 0) {
            bad = parse_int(v, 1, 86400, &ttl);
        } else if (strcmp(a, "--threads") == 0) {
            bad = parse_int(v, 1, 256, &threads);
        } else if (strcmp(a, "--log-level") == 0) {
            bad = (level = log_level_parse(v)) < 0;
        } else if (strcmp(a, "--client") == 0) {
            bad = strchr(v, ':') == NULL || nclients == 64;
            if (!bad)
                clients[nclients++] = v;
        } else {
            fprintf(stderr, PROGRAM ": unknown option: %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, PROGRAM ": bad value for %s: %s\n", a, v);
            return 2;
        }
        i++;
    }
    if (log_init(PROGRAM, "fake-oauth2d", level, LOG_FORMAT_TEXT, NULL, NULL) < 0)
        return 1;
    struct idp *o = idp_new(ttl, rotate);
    for (int i = 0; i < nclients; i++) {
        char id[256];
        const char *colon = strchr(clients[i], ':');
        snprintf(id, sizeof id, "%.*s", (int)(colon - clients[i]), clients[i]);
        if (idp_add_client(o, id, colon + 1) < 0) {
            fprintf(stderr, PROGRAM ": bad --client %s: id and secret must be 1..127 bytes\n", id);
            idp_free(o);
            return 2;
        }
    }

    /* Worker threads inherit the mask: only sigwait() below sees the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char hostport[300], err[512];
    if (strchr(addr, ':') != NULL)
        snprintf(hostport, sizeof hostport, "[%s]:%d", addr, port);
    else
        snprintf(hostport, sizeof hostport, "%s:%d", addr, port);
    struct http_opts hopts = {.addr = hostport, .threads = threads};
    struct http_server *srv = http_start(&hopts, err, sizeof err);
    if (srv == NULL) {
        log_error("%s", err);
        idp_free(o);
        log_shutdown();
        return 1;
    }
    idp_routes(o, srv);
    log_info("http listening addr=%s port=%d", addr, http_port(srv));
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal received, stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http_stop(srv);
    idp_free(o);
    log_shutdown();
    return 0;
}
