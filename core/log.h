/*
 * core/log: one line per event on stderr (or SUPERIMAP_LOG_FILE), as text
 *
 *   2025-01-31T12:00:00.123Z warn superimap-watcher node=w1 msg="server closed" acct=42
 *
 * or as one JSON object per line (SUPERIMAP_LOG_FORMAT=json). A message is
 * written as free text followed by key=value fields:
 *
 *   log_warn("server closed connection acct=%s state=%s", id, state);
 *
 * The leading words up to the first key=value token become msg; values with
 * spaces are written quoted (key="a b", with \" and \\ escapes). Every line
 * carries the timestamp, level, program and node id.
 *
 * The macros test the level before evaluating their arguments (Redis
 * serverLog). Strings registered with log_add_secret() are replaced by ***
 * wherever they would appear, so a key or password passed by mistake is never
 * written. Safe to call from any thread: each line is one write(2).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_LOG_H
#define CORE_LOG_H

#include <stddef.h>

enum log_level { LL_DEBUG = 0, LL_INFO, LL_WARN, LL_ERROR };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* The minimum level written; set by log_init(). */
extern int log_level;

/* Sets the program name, node id, level, format and the comma-separated list
 * of components whose debug lines are written even above LL_DEBUG. path is a
 * file to append to, or NULL/"" for stderr. Returns 0 or -SIMAP_EIO. */
int log_init(const char *program, const char *node_id, int level, int format,
             const char *components, const char *path);

/* Re-opens the log file (after rotation; SIGHUP). No-op on stderr. */
int log_reopen(void);

/* Registers a secret (copied) to be masked in every later line. Strings
 * shorter than 4 bytes are ignored: masking them would mangle ordinary text. */
void log_add_secret(const char *secret);

/* Releases what log_init() and log_add_secret() allocated. */
void log_shutdown(void);

/* Returns 1 when debug lines of component comp are written. */
int log_debug_enabled(const char *comp);

/* Copies s (NULL reads as "") into out, cap > 0 bytes, for a quoted value
 * ("err=\"%s\""): quotes, backslashes and line breaks become '. Returns out. */
const char *log_safe(const char *s, char *out, size_t cap);

/* Parses "debug|info|warn|error"; returns the level or -1. */
int log_level_parse(const char *s);

void log_write(int level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debugc(comp, ...)                                 \
    do {                                                      \
        if (log_level <= LL_DEBUG || log_debug_enabled(comp)) \
            log_write(LL_DEBUG, comp, __VA_ARGS__);           \
    } while (0)
#define log_debug(...)                              \
    do {                                            \
        if (log_level <= LL_DEBUG)                  \
            log_write(LL_DEBUG, NULL, __VA_ARGS__); \
    } while (0)
#define log_info(...)                              \
    do {                                           \
        if (log_level <= LL_INFO)                  \
            log_write(LL_INFO, NULL, __VA_ARGS__); \
    } while (0)
#define log_warn(...)                              \
    do {                                           \
        if (log_level <= LL_WARN)                  \
            log_write(LL_WARN, NULL, __VA_ARGS__); \
    } while (0)
#define log_error(...) log_write(LL_ERROR, NULL, __VA_ARGS__)

#endif
