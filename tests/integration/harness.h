/*
 * Integration test harness: a private redis-server per suite on a unix
 * socket in its own temporary directory, our binaries started with a given
 * environment, HTTP probes, log polling. Every wait polls with a deadline;
 * every process is stopped by the PID we started.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_HARNESS_H
#define TESTS_INTEGRATION_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

/* A redis-server of our own. */
struct redis_srv {
    pid_t pid;
    char dir[256];           /* mkdtemp; removed by harness_redis_stop() */
    char sock[300];          /* dir/redis.sock */
    char url[320];           /* unix://dir/redis.sock */
    const char *const *args; /* extra redis-server arguments, NULL-terminated
                                (borrowed; NULL: none), for starts and restarts */
};

/* Starts redis-server and waits (5 s deadline) until it answers PING.
 * Returns 0 or -1 with a message on stderr. */
int harness_redis_start(struct redis_srv *r);

/* As harness_redis_start(), with args (NULL-terminated, borrowed until the
 * last harness_redis_restart()) after the defaults, which they override:
 * {"--appendonly", "yes", "--appendfsync", "always", NULL} for an AOF that
 * survives harness_redis_kill(r, 1). */
int harness_redis_start_args(struct redis_srv *r, const char *const *args);

/* Kills it (SIGKILL when hard, else SIGTERM), waits for the PID, keeps the dir. */
void harness_redis_kill(struct redis_srv *r, int hard);

/* Starts it again on the same socket, dir and arguments after
 * harness_redis_kill(); with an AOF it loads its data. */
int harness_redis_restart(struct redis_srv *r);

/* Stops it and removes its directory. */
void harness_redis_stop(struct redis_srv *r);

/* A new blocking connection to it (the test's own view of Redis). */
redisContext *harness_redis_connect(const struct redis_srv *r);

/* Runs one command and returns the reply as text (integer as decimal,
 * nil as ""), in out. Returns 0, or -1 on error. */
int harness_redis_get(const struct redis_srv *r, char *out, size_t outlen, const char *fmt, ...);

/* A started binary. */
struct proc {
    pid_t pid;
    int port;      /* HTTP port from its "http listening" log line */
    char log[320]; /* its stdout+stderr */
    int exited;
    int exit_code; /* valid once exited */
};

/* The environment every node gets: Redis URL, an encryption key, a free
 * HTTP port (127.0.0.1:0), a node id. extra is NULL-terminated "NAME=value"
 * strings that add or replace. */
int harness_node_start(struct proc *p, const struct redis_srv *r, const char *binary,
                       const char *node_id, const char *const *extra);

/* Starts binary ("superimap-fake-imapd") of the build under test, under
 * TEST_PREFIX (valgrind ...) when it is set, with this process's environment
 * minus every SUPERIMAP_* variable, plus base[0..nbase) (NULL entries skipped)
 * unless extra sets the same variable, plus extra (NULL-terminated
 * "NAME=value" strings). Does not wait for anything. Returns 0 or -1. */
int harness_spawn_binary(struct proc *p, const char *binary, const char *const *base, size_t nbase,
                         const char *const *extra);

/* 1 when TEST_PREFIX wraps the binaries started (allow longer deadlines). */
int harness_prefixed(void);

/* A deadline of ms, stretched fourfold when TEST_PREFIX wraps the binaries
 * (valgrind runs them many times slower). */
int harness_ms(int ms);

/* Runs argv with env (NULL: ours); does not wait for anything. */
int harness_spawn(struct proc *p, const char *const *argv, const char *const *env);

/* Runs `sh -c cmd` to its end; its stdout (and whatever cmd sends there,
 * e.g. with 2>&1) into out, NUL-terminated, cut at outlen. Returns its exit
 * code, or -1. */
int harness_sh(const char *cmd, char *out, size_t outlen);

/* Waits up to ms for p to exit; returns 0 and sets exit_code, or -1. */
int harness_proc_wait(struct proc *p, int ms);

/* Sends sig to p. */
void harness_proc_signal(struct proc *p, int sig);

/* Kills p (SIGKILL) if still running and reaps it. */
void harness_proc_stop(struct proc *p);

/* Kills (SIGKILL) and reaps every process this harness started that is still
 * running. Call it from each test's teardown, so that a failed assertion
 * leaves nothing behind. */
void harness_stop_all(void);

/* 1 when p's log contains needle. */
int harness_log_contains(const struct proc *p, const char *needle);

/* Number of lines of p's log that contain needle. */
int harness_log_count(const struct proc *p, const char *needle);

/* Polls p's log for needle until ms pass; 0 or -1. */
int harness_wait_log(const struct proc *p, const char *needle, int ms);

/* GET http://127.0.0.1:port/path. Returns the status (or -1 on a connection
 * failure); the body, NUL-terminated and truncated to bodylen, when body is
 * not NULL. */
int harness_http_get(int port, const char *path, char *body, size_t bodylen);

/* Polls GET path until it answers status or ms pass; 0 or -1. */
int harness_wait_http(int port, const char *path, int status, int ms);

/* The value of series (metric name with its labels, as printed) in the
 * /metrics of the node on port, or -1 when absent or unreachable. */
double harness_metric(int port, const char *series);

/* A TCP port on 127.0.0.1 the kernel says is free now (it may be taken
 * before the caller binds it: retry on a bind failure), or -1. */
int harness_free_port(void);

/* A TCP connection to 127.0.0.1:port with a 1 s receive timeout (to read a
 * server's greeting): its fd (close it), or -1. */
int harness_connect_loopback(int port);

/* Writes text into a new file at path (replacing it). 0 or -1. */
int harness_write_file(const char *path, const char *text);

/* Full path of binary ("superimap-api") in the build under test. */
const char *harness_bin(const char *binary, char *out, size_t outlen);

/* Pauses 20 ms between two checks of a polled condition. */
void harness_poll_pause(void);

/* Monotonic milliseconds. */
long long harness_now_ms(void);

#endif
