/*
 * core/config: every SUPERIMAP_* environment variable, in one table.
 *
 * Each row names a variable, its type, default, range or allowed values,
 * whether it is secret or required, which binaries read it, and its help. The
 * table drives parsing, --help, the effective-config log line and the README
 * table, so they cannot drift apart. config_load() is the only getenv() in
 * superimap; it collects every error before reporting, so an operator fixes a
 * bad deployment in one round.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_CONFIG_H
#define CORE_CONFIG_H

#include <stddef.h>

struct buf;

/* Which binary reads a variable (a row may serve several). */
enum config_role {
    CONFIG_ROLE_API = 1 << 0,
    CONFIG_ROLE_WATCHER = 1 << 1,
    CONFIG_ROLE_DISPATCHER = 1 << 2,
    CONFIG_ROLE_FAKE_IMAPD = 1 << 3,
    CONFIG_ROLE_IMPORT = 1 << 4, /* superimap-import: Redis, encryption, shards, logs */
    CONFIG_ROLE_NODES = CONFIG_ROLE_API | CONFIG_ROLE_WATCHER | CONFIG_ROLE_DISPATCHER,
};

/* The effective configuration. Strings point into the environment or into
 * static defaults and stay valid for the life of the process. */
struct config {
    const char *redis_url;               /* redis://[:password@]host:port[/db] or unix:///path */
    const char *redis_password;          /* overrides one in the URL; NULL when unset */
    const char *redis_sentinel_password; /* redis+sentinel://: the sentinels' AUTH */
    int redis_timeout_ms;                /* connect and per-command timeout */
    int redis_min_replicas_ack;          /* replicas to WAIT for after mail and acks */
    const char *encryption_key;          /* 64 hex digits (AES-256) */
    const char *encryption_old_keys;     /* comma-separated old keys, decrypt only */
    const char *node_id;                 /* unique per process: host-pid by default */
    int log_level;                       /* enum log_level */
    int log_format;                      /* enum log_format */
    const char *log_components;          /* comma-separated debug components */
    const char *log_file;                /* NULL: stderr */
    const char *http_addr;            /* host:port of the node's HTTP listener; port 0 picks one */
    const char *public_url;           /* base URL partners and browsers reach the api at */
    const char *admin_token;          /* bearer token of the admin API; NULL: admin API off */
    int admin_session_idle_sec;       /* api: a dashboard session ends this long unused */
    int admin_session_max_sec;        /* api: ...and this long after sign-in in any case */
    int admin_lockout_failures;       /* api: failed sign-ins that lock an admin username */
    int admin_lockout_sec;            /* api: ...for this long */
    int admin_scrypt_log2n;           /* api: scrypt cost (log2 N) of new admin passwords */
    const char *web_root;             /* directory of the static files served at / */
    int api_threads;                  /* civetweb worker threads */
    int api_rate_limit;               /* api: partner requests per second per API key; 0: off */
    int api_rate_burst;               /* api: requests a key may save up beyond the rate */
    int api_auth_failure_burst;       /* api: failed authentications an address may make at once */
    int api_auth_failure_rate;        /* api: ...and earns back per second */
    const char *trusted_proxies;      /* api: proxies whose X-Forwarded-For is believed */
    int api_request_timeout_ms;       /* api: headers, then body, of one request */
    int api_client_pending;           /* api: slow connections and bodies per client address */
    int api_test_waiters;             /* api: webhook tests waiting at once */
    int api_test_waiters_per_partner; /* api: ...of one partner */
    int key_rotation_grace_sec;     /* api: old API key / webhook secret validity after rotation */
    int shards;                     /* shard count; must match si:meta */
    int max_users;                  /* watcher capacity before the fd limit */
    int max_moves_per_sec;          /* watcher: users handed over per second when rebalancing */
    int max_email_size;             /* watcher: bytes; larger mail gives a too_large event */
    const char *ca_file;            /* watcher, api (PLAIN form), dispatcher (tracer SMTP): CAs */
    int imap_connect_timeout_ms;    /* watcher: TCP connect + TLS handshake + greeting */
    int imap_command_timeout_ms;    /* watcher: silence allowed while a command is pending */
    int imap_probe_sec;             /* watcher: silence in IDLE before a liveness probe */
    int imap_poll_sec;              /* watcher: NOOP poll period without IDLE */
    int imap_logins_per_sec;        /* watcher: logins per second per provider host */
    int imap_backoff_min_ms;        /* watcher: first reconnect delay ceiling */
    int imap_backoff_max_ms;        /* watcher: reconnect delay cap (auth failures: 6 h) */
    int shutdown_timeout_sec;       /* bound on a graceful drain */
    int oauth2_allow_private;       /* OAuth2 endpoints may be non-public addresses */
    int oauth2_max_refreshes;       /* watcher: token refreshes in flight per provider */
    int oauth2_timeout_ms;          /* watcher: whole token endpoint request */
    int webhook_allow_private;      /* dispatcher: SSRF guard lets non-public addresses through */
    int webhook_max_inflight;       /* dispatcher: events delivered at once */
    int webhook_host_connections;   /* dispatcher: connections per receiver host */
    int webhook_timeout_ms;         /* dispatcher: whole webhook request */
    int webhook_connect_timeout_ms; /* dispatcher: TCP (and TLS) connect of a webhook */
    int webhook_circuit_hold_hours; /* dispatcher: most an event waits for a closed circuit */
    int webhook_time_divisor;       /* dispatcher, tests only: divides retry delays */
    int tracer_interval_sec;        /* dispatcher, api: tracer round period; 0: off */
    int tracer_deadline_sec;        /* dispatcher, api: missing after this; 0: 2 x interval */
    int tracer_allow_private;       /* dispatcher: SMTP to non-public addresses */

    /* superimap-fake-imapd only */
    const char *fake_addrs;          /* listen addresses, comma-separated; a.b.c.d-e is a range */
    int fake_port;                   /* plain IMAP port on each address; 0 picks one, -1 none */
    int fake_tls_port;               /* implicit-TLS port on each address; 0 picks one, -1 none */
    const char *fake_cert;           /* PEM certificate (chain) file; with fake_key enables TLS */
    const char *fake_key;            /* PEM private key file */
    const char *fake_xoauth2_prefix; /* XOAUTH2 tokens starting with it are accepted */
    int fake_require_tls;            /* LOGINDISABLED on plain connections until STARTTLS */
    const char *fake_control;        /* unix socket path of the control channel; NULL: none */
    int fake_users;                  /* user1..userN exist, with passwords pass1..passN */
    int fake_max_sessions_per_user;  /* logins past it get NO [LIMIT]; 0: unlimited */
    int fake_max_message;            /* largest message the control channel appends, bytes */
    const char *fake_faults;         /* comma-separated fault kinds; NULL: none */
    const char *fake_profiles;       /* comma-separated profiles; NULL: none */
    const char *fake_fault_rate;     /* probability 0..1 of a fault per command, as text */
    int fake_fault_seed;             /* seed of the fault generator (deterministic) */

    char node_id_buf[128]; /* storage for the default node id */
};

enum config_type { CONFIG_STR, CONFIG_INT, CONFIG_BOOL, CONFIG_ENUM };

/* config_var.flags */
#define CONFIG_SECRET   (1u << 0) /* value never printed, masked in logs */
#define CONFIG_REQUIRED (1u << 1) /* no default: the binary refuses to start without it */

/* One row of the table. */
struct config_var {
    const char *name; /* SUPERIMAP_... */
    enum config_type type;
    unsigned roles;      /* enum config_role bits */
    const char *def;     /* default as text; NULL: unset */
    long long min, max;  /* CONFIG_INT range, inclusive */
    const char *allowed; /* CONFIG_ENUM choices, "a|b|c"; the value stored is the index */
    unsigned flags;
    size_t offset; /* of the field in struct config */
    /* Optional extra check for strings: returns 0, or writes why into err. */
    int (*check)(const char *value, char *err, size_t errlen);
    const char *help;
};

/* The whole table, terminated by a row with name NULL. */
extern const struct config_var config_vars[];

/*
 * Fills cfg for the binary with role from the environment. Every problem is
 * appended to errors as one line naming the variable and what is allowed.
 * Returns the number of problems (0: cfg is complete).
 */
int config_load(struct config *cfg, unsigned role, struct buf *errors);

/*
 * The start of every main(): handles --help, --version and --config-markdown
 * (printing and exiting 0), rejects unknown arguments, loads the config and on
 * any problem prints them all to stderr and exits 2.
 */
void config_main(struct config *cfg, unsigned role, const char *program, const char *summary,
                 int argc, char **argv);

/* Writes the variables of role as --help text to fd. */
void config_print_help(unsigned role, const char *program, const char *summary, int fd);

/* Writes the whole table, every binary's variables, as the Markdown table of
 * README.md to fd. */
void config_print_markdown(int fd);

/* Logs the effective configuration at info, secrets as ***, and registers the
 * secrets with log_add_secret(). */
void config_log(const struct config *cfg, unsigned role);

/* Splits "host:port" (host may be [v6]) into host and port; 0 or -SIMAP_EINVAL. */
int config_split_addr(const char *addr, char *host, size_t hostlen, int *port);

#endif
