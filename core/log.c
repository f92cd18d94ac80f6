/*
 * core/log: leveled key=value or JSON lines, with secret masking.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/time.h"

#define LOG_LINE_MAX 8192
#define LOG_SECRETS  16

int log_level = LL_INFO;

static struct {
    char *program;
    char *node_id;
    char *components; /* ",a,b," for cheap lookups */
    char *path;
    int format;
    int fd;
    char *secrets[LOG_SECRETS];
    int nsecrets;
    pthread_mutex_t lock; /* guards fd swaps in log_reopen() and the secret list */
} logger = {.fd = 2, .lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    return fd;
}

int log_init(const char *program, const char *node_id, int level, int format,
             const char *components, const char *path)
{
    log_shutdown();
    logger.program = xstrdup(program ? program : "superimap");
    logger.node_id = xstrdup(node_id ? node_id : "-");
    logger.format = format;
    log_level = level;
    if (components != NULL && *components != '\0') {
        size_t n = strlen(components);
        logger.components = xmalloc(n + 3);
        snprintf(logger.components, n + 3, ",%s,", components);
    }
    if (path != NULL && *path != '\0') {
        int fd = open_log(path);
        if (fd < 0)
            return -SIMAP_EIO;
        logger.path = xstrdup(path);
        logger.fd = fd;
    }
    return 0;
}

int log_reopen(void)
{
    if (logger.path == NULL)
        return 0;
    int fd = open_log(logger.path);
    if (fd < 0)
        return -SIMAP_EIO;
    pthread_mutex_lock(&logger.lock);
    int old = logger.fd;
    logger.fd = fd;
    pthread_mutex_unlock(&logger.lock);
    close(old);
    return 0;
}

const char *log_safe(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++)
        out[i] = (s[i] == '"' || s[i] == '\\' || s[i] == '\r' || s[i] == '\n') ? '\'' : s[i];
    out[i] = '\0';
    return out;
}

void log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&logger.lock);
    if (logger.nsecrets < LOG_SECRETS)
        logger.secrets[logger.nsecrets++] = xstrdup(secret);
    pthread_mutex_unlock(&logger.lock);
}

void log_shutdown(void)
{
    xfree(logger.program);
    xfree(logger.node_id);
    xfree(logger.components);
    logger.program = logger.node_id = logger.components = NULL;
    if (logger.path != NULL) {
        close(logger.fd);
        logger.fd = 2;
        xfree(logger.path);
        logger.path = NULL;
    }
    for (int i = 0; i < logger.nsecrets; i++)
        xfree(logger.secrets[i]);
    logger.nsecrets = 0;
}

int log_debug_enabled(const char *comp)
{
    if (comp == NULL || logger.components == NULL)
        return 0;
    size_t n = strlen(comp);
    for (const char *p = logger.components; (p = strstr(p, comp)) != NULL; p++)
        if (p[-1] == ',' && p[n] == ',')
            return 1;
    return 0;
}

/* Replaces every registered secret in line with ***, in place. */
static void mask_secrets(char *line)
{
    for (int i = 0; i < logger.nsecrets; i++) {
        const char *s = logger.secrets[i];
        size_t n = strlen(s);
        char *p;
        while ((p = strstr(line, s)) != NULL) {
            memcpy(p, "***", 3);
            memmove(p + 3, p + n, strlen(p + n) + 1);
        }
    }
}

/* A key=value token starts with [A-Za-z_][A-Za-z0-9_.]* followed by '='. */
static size_t key_len(const char *p)
{
    size_t i = 0;
    if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z') || p[0] == '_'))
        return 0;
    while ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
           (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '.')
        i++;
    return p[i] == '=' ? i : 0;
}

/* Reads one value at *pp (quoted with escapes, or up to the next space) into
 * out, unescaped, and advances *pp. */
static void read_value(const char **pp, struct buf *out)
{
    const char *p = *pp;
    buf_reset(out);
    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1] != '\0')
                p++;
            buf_append(out, p++, 1);
        }
        if (*p == '"')
            p++;
    } else {
        while (*p && *p != ' ')
            buf_append(out, p++, 1);
    }
    *pp = p;
}

static void put_json_string(struct buf *b, const char *s)
{
    buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            buf_printf(b, "\\u%04x", *p);
        else
            buf_append(b, p, 1);
    }
    buf_puts(b, "\"");
}

static void put_text_value(struct buf *b, const char *s)
{
    if (*s != '\0' && strpbrk(s, " \"\\=") == NULL) {
        buf_puts(b, s);
        return;
    }
    buf_puts(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_append(b, "\\", 1);
        buf_append(b, p, 1);
    }
    buf_puts(b, "\"");
}

/* Splits body into msg + fields and renders the whole line into out. */
static void render(struct buf *out, int level, const char *comp, const char *body)
{
    char ts[TIME_ISO_LEN];
    time_format_iso(time_now_ms(), ts);

    const char *fields = body;
    while (*fields) {
        if ((fields == body || fields[-1] == ' ') && key_len(fields) > 0)
            break;
        fields++;
    }
    size_t msg_len = (size_t)(fields - body);
    while (msg_len > 0 && body[msg_len - 1] == ' ')
        msg_len--;
    char *msg = xstrndup(body, msg_len);

    struct buf val;
    buf_init(&val, LOG_LINE_MAX);
    int json = logger.format == LOG_FORMAT_JSON;
    if (json) {
        buf_printf(out, "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":", ts, level_names[level]);
        put_json_string(out, logger.program ? logger.program : "superimap");
        buf_puts(out, ",\"node\":");
        put_json_string(out, logger.node_id ? logger.node_id : "-");
        if (comp != NULL) {
            buf_puts(out, ",\"comp\":");
            put_json_string(out, comp);
        }
        buf_puts(out, ",\"msg\":");
        put_json_string(out, msg);
    } else {
        buf_printf(out, "%s %s %s node=%s", ts, level_names[level],
                   logger.program ? logger.program : "superimap",
                   logger.node_id ? logger.node_id : "-");
        if (comp != NULL)
            buf_printf(out, " comp=%s", comp);
        buf_puts(out, " msg=");
        put_text_value(out, msg);
    }
    const char *p = fields;
    while (*p) {
        size_t k = key_len(p);
        if (k == 0) { /* stray text after fields: keep it as its own value */
            const char *start = p;
            while (*p && *p != ' ')
                p++;
            buf_printf(out, json ? ",\"extra\":\"%.*s\"" : " %.*s", (int)(p - start), start);
        } else {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(k < 63 ? k : 63), p);
            p += k + 1;
            read_value(&p, &val);
            if (json) {
                buf_puts(out, ",");
                put_json_string(out, key);
                buf_puts(out, ":");
                put_json_string(out, val.data ? val.data : "");
            } else {
                buf_printf(out, " %s=", key);
                put_text_value(out, val.data ? val.data : "");
            }
        }
        while (*p == ' ')
            p++;
    }
    buf_puts(out, json ? "}\n" : "\n");
    buf_free(&val);
    xfree(msg);
}

void log_write(int level, const char *comp, const char *fmt, ...)
{
    if (level < LL_DEBUG || level > LL_ERROR)
        level = LL_ERROR;
    char body[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);

    struct buf line;
    buf_init(&line, LOG_LINE_MAX * 2);
    pthread_mutex_lock(&logger.lock);
    mask_secrets(body);
    render(&line, level, comp, body);
    if (line.len > 0 && line.data[line.len - 1] != '\n') { /* truncated at the cap */
        line.data[line.len - 1] = '\n';
    }
    ssize_t w = write(logger.fd, line.data, line.len);
    pthread_mutex_unlock(&logger.lock);
    (void)w; /* nowhere left to report a failed log write */
    buf_free(&line);
}
