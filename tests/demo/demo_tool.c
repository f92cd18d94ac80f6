/*
 * tests/demo/demo_tool: the three things `make demo` (scripts/demo.sh) needs
 * that a shell on a fresh Debian machine lacks, in one small binary
 * ($(O)/tools/demo-tool):
 *
 *   demo-tool receiver <dir>
 *       A webhook receiver on 127.0.0.1, port 0. Prints "listening port=<n>"
 *       on stdout first; then, for each request, the request line, every
 *       header as received and the body pretty-printed, on stdout and into
 *       <dir>/<nnnn>-<event>.http, followed by the verdict on both
 *       signatures when <dir>/credentials holds the partner's API key and
 *       whsec_ secret (one per line; read at each request, so it may appear
 *       after the start). Answers 200 to everything.
 *   demo-tool free-port
 *       Prints a TCP port of 127.0.0.1 that is free now (for Dovecot, which
 *       cannot listen on port 0, and the api, whose public URL must name its
 *       port; the caller retries when it is taken meanwhile).
 *   demo-tool fake-append <control socket> <user> <file>
 *       Appends the message in file to user's INBOX through
 *       superimap-fake-imapd's control channel (APPEND <user> <n>); prints
 *       the reply ("OK <uid>").
 *
 * Why C: python3 is not a dependency, nc(1) variants differ in how they end a
 * connection, and the signature check reuses core/crypto and core/json. The
 * receiver is blocking and single-threaded: one connection at a time, each
 * read bounded by 5 s, one request per connection ("Connection: close"),
 * which is all a demo's handful of webhooks needs.
 *
 * SPDX-License-Identifier: MIT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/json.h"

#define HEAD_MAX   (64 * 1024)
#define BODY_MAX   (64 * 1024 * 1024)
#define READ_SEC   5
#define CREDS_FILE "credentials"

/* ---- Small I/O helpers ---- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads the whole file into a new buffer (xfree() it), or NULL. */
static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = xmalloc(max + 1);
    size_t n = fread(data, 1, max, f);
    int is_err = ferror(f) || !feof(f);
    fclose(f);
    if (is_err) {
        xfree(data);
        return NULL;
    }
    data[n] = '\0';
    *len = n;
    return data;
}

/* ---- Pretty-printing ---- */

static void indent(FILE *out, int depth)
{
    fputc('\n', out);
    for (int i = 0; i < depth; i++)
        fputs("  ", out);
}

/* Writes JSON text with one member per line, two spaces per level. Strings
 * are copied byte for byte (escapes kept); text that is not JSON comes out
 * re-spaced but whole. */
static void pretty_json(FILE *out, const char *s, size_t n)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            fputc(c, out);
            if (c == '\\' && i + 1 < n)
                fputc(s[++i], out);
            else if (c == '"')
                in_str = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            fputc(c, out);
            break;
        case '{':
        case '[': {
            size_t j = i + 1;
            while (j < n && (s[j] == ' ' || s[j] == '\n' || s[j] == '\r' || s[j] == '\t'))
                j++;
            fputc(c, out);
            if (j < n && (s[j] == '}' || s[j] == ']')) { /* {} and [] stay on one line */
                fputc(s[j], out);
                i = j;
            } else {
                indent(out, ++depth);
            }
            break;
        }
        case '}':
        case ']':
            indent(out, depth > 0 ? --depth : 0);
            fputc(c, out);
            break;
        case ',':
            fputc(c, out);
            indent(out, depth);
            break;
        case ':':
            fputs(": ", out);
            break;
        case ' ':
        case '\n':
        case '\r':
        case '\t':
            break;
        default:
            fputc(c, out);
        }
    }
    fputc('\n', out);
}

/* ---- Signatures ---- */

/* The value of header name in head (CRLF lines), copied into out; 0 or -1. */
static int header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        const char *v = line + nlen + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vlen = strcspn(v, "\r\n");
        snprintf(out, outlen, "%.*s", (int)vlen, v);
        return 0;
    }
    return -1;
}

/* Standard Webhooks: one of the space-separated "v1,<base64>" signatures is
 * HMAC-SHA256(base64-decoded whsec_ secret, "<id>.<timestamp>.<body>"). */
static int std_signature_ok(const char *head, const char *body, size_t blen, const char *whsec)
{
    char id[256], ts[64], sigs[2048];
    if (header(head, "webhook-id", id, sizeof id) < 0 ||
        header(head, "webhook-timestamp", ts, sizeof ts) < 0 ||
        header(head, "webhook-signature", sigs, sizeof sigs) < 0 ||
        strncmp(whsec, "whsec_", 6) != 0)
        return 0;
    unsigned char *key = NULL;
    size_t klen = 0;
    if (crypto_b64_decode(whsec + 6, strlen(whsec + 6), &key, &klen) < 0)
        return 0;
    struct buf signed_text;
    buf_init(&signed_text, strlen(id) + strlen(ts) + blen + 3);
    int ok = 0;
    unsigned char mac[CRYPTO_SHA256_LEN];
    if (buf_printf(&signed_text, "%s.%s.", id, ts) == 0 &&
        buf_append(&signed_text, body, blen) == 0 &&
        crypto_hmac_sha256(key, klen, signed_text.data, signed_text.len, mac) == 0) {
        char *want = crypto_b64_encode(mac, sizeof mac);
        char *save = NULL;
        for (char *t = strtok_r(sigs, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
            if (strncmp(t, "v1,", 3) == 0 && crypto_equal(t + 3, strlen(t + 3), want, strlen(want)))
                ok = 1;
        xfree(want);
    }
    buf_free(&signed_text);
    crypto_wipe(key, klen);
    xfree(key);
    return ok;
}

/* The original's body signature: hex HMAC-SHA256(API key, timestamp . sha1). */
static int body_signature_ok(yajl_val v, const char *api_key)
{
    int64_t ts = 0;
    const char *sha1 = json_get_str(v, "sha1"), *sig = json_get_str(v, "signature");
    if (json_get_int(v, "timestamp", &ts) < 0 || sha1 == NULL || sig == NULL)
        return 0;
    char text[128], want[CRYPTO_SHA256_HEX_LEN + 1];
    int n = snprintf(text, sizeof text, "%lld%s", (long long)ts, sha1);
    if (n < 0 || (size_t)n >= sizeof text ||
        crypto_hmac_sha256_hex(api_key, strlen(api_key), text, (size_t)n, want) < 0)
        return 0;
    return crypto_equal(sig, strlen(sig), want, strlen(want));
}

/* Writes the verdicts on both signatures, or why there are none. */
static void check_signatures(FILE *out, const char *dir, const char *head, const char *body,
                             size_t blen, yajl_val v)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" CREDS_FILE, dir);
    size_t clen = 0;
    char *creds = read_file(path, 4096, &clen);
    char *save = NULL;
    const char *key = creds ? strtok_r(creds, "\r\n", &save) : NULL;
    const char *whsec = key ? strtok_r(NULL, "\r\n", &save) : NULL;
    if (whsec == NULL) {
        fprintf(out, "# signatures not checked: no %s (API key, whsec_ secret)\n", path);
    } else {
        fprintf(out,
                "# webhook-signature: %s (Standard Webhooks v1: HMAC-SHA256 of "
                "\"<webhook-id>.<webhook-timestamp>.<body>\" keyed with the whsec_ secret)\n",
                std_signature_ok(head, body, blen, whsec) ? "VALID" : "INVALID");
        fprintf(out,
                "# body \"signature\": %s (hex HMAC-SHA256 of timestamp followed by sha1, "
                "keyed with the API key)\n",
                v != NULL && body_signature_ok(v, key) ? "VALID" : "INVALID");
    }
    if (creds != NULL)
        crypto_wipe(creds, clen);
    xfree(creds);
}

/* ---- Receiver ---- */

/* Reads one request into in: the head, up to and with the blank line (a
 * new string in *head, xfree() it), then a body of Content-Length bytes from
 * in->data + strlen(*head), answering Expect: 100-continue. Returns the body
 * length, or -1. */
static long long read_request(int fd, struct buf *in, char **head)
{
    char chunk[16384];
    const char *end;
    while ((end = strstr(in->data ? in->data : "", "\r\n\r\n")) == NULL) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r <= 0 || in->len + (size_t)r > HEAD_MAX || buf_append(in, chunk, (size_t)r) < 0)
            return -1;
    }
    size_t head_len = (size_t)(end - in->data) + 4;
    *head = xmalloc(head_len + 1);
    memcpy(*head, in->data, head_len);
    (*head)[head_len] = '\0';
    char value[64];
    long long want = 0;
    if (header(*head, "Content-Length", value, sizeof value) == 0)
        want = strtoll(value, NULL, 10);
    if (want < 0 || want > BODY_MAX)
        return -1;
    if (header(*head, "Expect", value, sizeof value) == 0 &&
        strcasecmp(value, "100-continue") == 0 &&
        write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
        return -1;
    while (in->len < head_len + (size_t)want) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r <= 0 || buf_append(in, chunk, (size_t)r) < 0)
            return -1;
    }
    return want;
}

/* Writes one request as received, then the signatures' verdicts. */
static void show_request(FILE *out, const char *dir, const char *head, const char *body,
                         size_t blen, yajl_val v)
{
    fwrite(head, 1, strlen(head), out);
    if (v != NULL)
        pretty_json(out, body, blen);
    else
        fprintf(out, "%.*s\n", (int)blen, body);
    check_signatures(out, dir, head, body, blen, v);
}

static void serve_one(int fd, const char *dir, unsigned *seq)
{
    struct timeval tv = {READ_SEC, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct buf in;
    buf_init(&in, HEAD_MAX + BODY_MAX);
    char *head = NULL;
    long long blen = read_request(fd, &in, &head);
    if (blen >= 0) {
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                     "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
        write_all(fd, answer, sizeof answer - 1);
        const char *body = in.data + strlen(head);
        yajl_val v = NULL;
        json_parse_object(body, (size_t)blen, JSON_DEFAULT_DEPTH, &v, NULL, 0);
        const char *event = json_get_str(v, "event");
        char path[4300];
        snprintf(path, sizeof path, "%s/%04u-%s.http", dir, ++*seq, event ? event : "request");
        FILE *f = fopen(path, "w");
        if (f != NULL) {
            show_request(f, dir, head, body, (size_t)blen, v);
            fclose(f);
        }
        printf("==== webhook %u, saved as %s\n", *seq, path);
        show_request(stdout, dir, head, body, (size_t)blen, v);
        fflush(stdout);
        json_free(v);
    }
    xfree(head);
    buf_free(&in);
}

static int receiver(const char *dir)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        fprintf(stderr, "demo-tool receiver: %s\n", strerror(errno));
        return 1;
    }
    printf("listening port=%d\n", ntohs(a.sin_port));
    fflush(stdout);
    unsigned seq = 0;
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "demo-tool receiver: accept: %s\n", strerror(errno));
            return 1;
        }
        serve_one(c, dir, &seq);
        close(c);
    }
}

/* ---- free-port, fake-append ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        fprintf(stderr, "demo-tool free-port: %s\n", strerror(errno));
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

static int fake_append(const char *sock, const char *user, const char *file)
{
    size_t len = 0;
    char *msg = read_file(file, BODY_MAX, &len);
    if (msg == NULL) {
        fprintf(stderr, "demo-tool fake-append: cannot read %s\n", file);
        return 1;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    char line[512];
    int n = snprintf(line, sizeof line, "APPEND %s %zu\n", user, len);
    int rc = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0 || n < 0 ||
        (size_t)n >= sizeof line || write_all(fd, line, (size_t)n) < 0 ||
        write_all(fd, msg, len) < 0) {
        fprintf(stderr, "demo-tool fake-append: %s: %s\n", sock, strerror(errno));
    } else {
        size_t got = 0;
        char c;
        while (got + 1 < sizeof line && read(fd, &c, 1) == 1 && c != '\n')
            line[got++] = c;
        line[got] = '\0';
        printf("%s\n", line);
        rc = strncmp(line, "OK", 2) == 0 ? 0 : 1;
    }
    if (fd >= 0)
        close(fd);
    xfree(msg);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "receiver") == 0)
        return receiver(argv[2]);
    if (argc == 2 && strcmp(argv[1], "free-port") == 0)
        return free_port();
    if (argc == 5 && strcmp(argv[1], "fake-append") == 0)
        return fake_append(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: demo-tool receiver <dir> | free-port | "
                    "fake-append <control socket> <user> <file>\n");
    return 2;
}
