/*
 * proto/webhook: body assembly, the body signature of the original, Standard
 * Webhooks signatures (HMAC-SHA256, RFC 2104, over SHA-256 of FIPS 180-4) and
 * Retry-After parsing (RFC 9110 sections 5.6.7 and 10.2.3). See webhook.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "proto/webhook.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/err.h"
#include "proto/civil.h"
#include "proto/codec.h"

/* ---- HMAC-SHA256 over several parts ---- */

#define SHA256_BLOCK 64
#define SHA256_LEN   32

/* An HMAC in progress (RFC 2104): inner and outer SHA-256 contexts, so the
 * message can be fed in pieces without being copied into one buffer. */
struct hmac {
    EVP_MD_CTX *inner;
    EVP_MD_CTX *outer;
};

/* SHA-256, fetched once: EVP_sha256() would make OpenSSL 3 look the
 * implementation up (under a lock) at every EVP_DigestInit_ex(), four times
 * per signature. The fetched object is immutable and shared by all threads. */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, fetch_sha256);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

static void hmac_free(struct hmac *h)
{
    EVP_MD_CTX_free(h->inner);
    EVP_MD_CTX_free(h->outer);
}

static int hmac_init(struct hmac *h, const void *key, size_t keylen)
{
    unsigned char k[SHA256_BLOCK], pad[SHA256_BLOCK];
    memset(k, 0, sizeof k);
    h->inner = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    int ok = h->inner != NULL && h->outer != NULL;
    if (ok && keylen > SHA256_BLOCK) {
        unsigned int n;
        ok = EVP_Digest(key, keylen, k, &n, sha256(), NULL) == 1;
    } else if (keylen > 0) {
        memcpy(k, key, keylen);
    }
    for (size_t i = 0; i < SHA256_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && EVP_DigestInit_ex(h->inner, sha256(), NULL) == 1 &&
         EVP_DigestUpdate(h->inner, pad, sizeof pad) == 1;
    for (size_t i = 0; i < SHA256_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && EVP_DigestInit_ex(h->outer, sha256(), NULL) == 1 &&
         EVP_DigestUpdate(h->outer, pad, sizeof pad) == 1;
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    if (!ok) {
        hmac_free(h);
        return -SIMAP_ECRYPTO;
    }
    return 0;
}

static int hmac_update(struct hmac *h, const void *data, size_t n)
{
    return EVP_DigestUpdate(h->inner, data, n) == 1 ? 0 : -SIMAP_ECRYPTO;
}

/* Writes the MAC and frees h, whatever happens. */
static int hmac_final(struct hmac *h, unsigned char mac[SHA256_LEN])
{
    unsigned char ih[SHA256_LEN];
    unsigned int n;
    int ok = EVP_DigestFinal_ex(h->inner, ih, &n) == 1 &&
             EVP_DigestUpdate(h->outer, ih, sizeof ih) == 1 &&
             EVP_DigestFinal_ex(h->outer, mac, &n) == 1;
    hmac_free(h);
    return ok ? 0 : -SIMAP_ECRYPTO;
}

/* ---- Body ---- */

int webhook_body_signature(const void *key, size_t keylen, int64_t timestamp, const char *sha1,
                           char out[WEBHOOK_SIG_HEX_LEN + 1])
{
    if ((key == NULL && keylen > 0) || sha1 == NULL || out == NULL || timestamp < 0)
        return -SIMAP_EINVAL;
    char ts[24];
    int tslen = snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    struct hmac h;
    unsigned char mac[SHA256_LEN];
    int rc = hmac_init(&h, key, keylen);
    if (rc < 0)
        return rc;
    if (hmac_update(&h, ts, (size_t)tslen) < 0 || hmac_update(&h, sha1, strlen(sha1)) < 0) {
        hmac_free(&h);
        return -SIMAP_ECRYPTO;
    }
    if ((rc = hmac_final(&h, mac)) < 0)
        return rc;
    codec_hex_encode(mac, SHA256_LEN, out);
    return 0;
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int webhook_body_build(const char *payload, size_t len, int64_t timestamp, const char *signature,
                       struct buf *out)
{
    if (payload == NULL || signature == NULL || out == NULL || timestamp < 0)
        return -SIMAP_EINVAL;
    size_t a = 0, b = len;
    while (a < b && is_json_space(payload[a]))
        a++;
    while (b > a && is_json_space(payload[b - 1]))
        b--;
    if (b - a < 2 || payload[a] != '{' || payload[b - 1] != '}')
        return -SIMAP_EINVAL;
    a++; /* the members, between the braces */
    b--;
    int has_members = 0;
    for (size_t i = a; i < b && !has_members; i++)
        has_members = !is_json_space(payload[i]);
    size_t start = out->len;
    int rc = buf_printf(out, "{\"timestamp\":%lld", (long long)timestamp);
    if (rc == 0 && has_members) {
        rc = buf_append(out, ",", 1);
        if (rc == 0)
            rc = buf_append(out, payload + a, b - a);
    }
    if (rc == 0)
        rc = buf_printf(out, ",\"signature\":\"%s\"}", signature);
    if (rc < 0) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}

/* ---- Standard Webhooks ---- */

int webhook_secret_decode(const char *secret, unsigned char *key, size_t cap, size_t *keylen)
{
    if (secret == NULL || key == NULL || keylen == NULL || strncmp(secret, "whsec_", 6) != 0)
        return -SIMAP_EINVAL;
    const char *s = secret + 6;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n == 0 || n % 4 == 1 || strlen(s) - n > 2)
        return -SIMAP_EINVAL;
    /* The trailing '=' are gone: every character left must be base64. */
    return codec_b64_decode_loose(s, n, 0, key, cap, keylen);
}

int webhook_std_sign(const unsigned char *key, size_t keylen, const char *id, int64_t timestamp,
                     const char *body, size_t len, char out[WEBHOOK_STD_SIG_LEN])
{
    if ((key == NULL && keylen > 0) || id == NULL || (body == NULL && len > 0) || out == NULL ||
        timestamp < 0)
        return -SIMAP_EINVAL;
    char ts[24];
    int tslen = snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    struct hmac h;
    unsigned char mac[SHA256_LEN];
    int rc = hmac_init(&h, key, keylen);
    if (rc < 0)
        return rc;
    if (hmac_update(&h, id, strlen(id)) < 0 || hmac_update(&h, ".", 1) < 0 ||
        hmac_update(&h, ts, (size_t)tslen) < 0 || hmac_update(&h, ".", 1) < 0 ||
        (len > 0 && hmac_update(&h, body, len) < 0)) {
        hmac_free(&h);
        return -SIMAP_ECRYPTO;
    }
    if ((rc = hmac_final(&h, mac)) < 0)
        return rc;
    memcpy(out, "v1,", 3);
    codec_b64_encode_to(mac, SHA256_LEN, out + 3); /* 44 characters and a NUL */
    return 0;
}

/* ---- Retry-After ---- */

#define MAX_DELAY_SEC 1000000000LL

/* The year of Unix day z. */
static int64_t year_of_days(int64_t z)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    return yoe + era * 400 + (m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return dm[m - 1] + (m == 2 && leap);
}

/* A cursor over the value; every read checks the end. */
struct cur {
    const char *p, *end;
};

static int take(struct cur *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* Reads exactly n digits (n <= 9). */
static int digits(struct cur *c, int n, int64_t *out)
{
    if (c->end - c->p < n)
        return 0;
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (c->p[i] < '0' || c->p[i] > '9')
            return 0;
        v = v * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *out = v;
    return 1;
}

/* Matches one of names (case-sensitive, as RFC 9110 writes them); returns its
 * index or -1. */
static int name(struct cur *c, const char *const *names, int count)
{
    for (int i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, names[i], n) == 0) {
            c->p += n;
            return i;
        }
    }
    return -1;
}

static const char *const short_days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const long_days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "HH:MM:SS" into seconds of the day. */
static int time_of_day(struct cur *c, int64_t *secs)
{
    int64_t h, m, s;
    if (!digits(c, 2, &h) || !take(c, ':') || !digits(c, 2, &m) || !take(c, ':') ||
        !digits(c, 2, &s) || h > 23 || m > 59 || s > 60)
        return 0;
    *secs = h * 3600 + m * 60 + (s == 60 ? 59 : s); /* a leap second reads as :59 */
    return 1;
}

/* Parses an HTTP-date into Unix seconds; now_ms resolves RFC 850's two-digit
 * years (RFC 9110 section 5.6.7: more than 50 years ahead means the past). */
static int http_date(struct cur *c, int64_t now_ms, int64_t *out)
{
    int64_t day, year, tod;
    int mon;
    const char *start = c->p;
    if (name(c, long_days, 7) >= 0 && take(c, ',')) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        if (!take(c, ' ') || !digits(c, 2, &day) || !take(c, '-') ||
            (mon = name(c, months, 12)) < 0 || !take(c, '-') || !digits(c, 2, &year) ||
            !take(c, ' ') || !time_of_day(c, &tod) || !take(c, ' ') || !take(c, 'G') ||
            !take(c, 'M') || !take(c, 'T'))
            return 0;
        int64_t now_year = year_of_days(now_ms / 86400000);
        int64_t century = now_year - now_year % 100;
        year += century;
        if (year > now_year + 50)
            year -= 100;
        else if (year < now_year - 50)
            year += 100;
    } else {
        c->p = start;
        if (name(c, short_days, 7) < 0)
            return 0;
        if (take(c, ',')) {
            /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            if (!take(c, ' ') || !digits(c, 2, &day) || !take(c, ' ') ||
                (mon = name(c, months, 12)) < 0 || !take(c, ' ') || !digits(c, 4, &year) ||
                !take(c, ' ') || !time_of_day(c, &tod) || !take(c, ' ') || !take(c, 'G') ||
                !take(c, 'M') || !take(c, 'T'))
                return 0;
        } else {
            /* asctime: Sun Nov  6 08:49:37 1994 */
            if (!take(c, ' ') || (mon = name(c, months, 12)) < 0 || !take(c, ' '))
                return 0;
            if (take(c, ' ')) {
                if (!digits(c, 1, &day))
                    return 0;
            } else if (!digits(c, 2, &day)) {
                return 0;
            }
            if (!take(c, ' ') || !time_of_day(c, &tod) || !take(c, ' ') || !digits(c, 4, &year))
                return 0;
        }
    }
    if (day < 1 || day > days_in_month(year, mon + 1))
        return 0;
    *out = civil_days_from(year, mon + 1, (int)day) * 86400 + tod;
    return 1;
}

int webhook_retry_after(const char *value, size_t len, int64_t now_ms, int64_t *delay_ms)
{
    if (value == NULL || delay_ms == NULL)
        return -SIMAP_EINVAL;
    struct cur c = {value, value + len};
    while (c.p < c.end && (*c.p == ' ' || *c.p == '\t'))
        c.p++;
    while (c.end > c.p && (c.end[-1] == ' ' || c.end[-1] == '\t'))
        c.end--;
    if (c.p == c.end)
        return -SIMAP_EINVAL;
    if (*c.p >= '0' && *c.p <= '9') {
        int64_t secs = 0;
        for (; c.p < c.end; c.p++) {
            if (*c.p < '0' || *c.p > '9')
                return -SIMAP_EINVAL;
            if (secs < MAX_DELAY_SEC)
                secs = secs * 10 + (*c.p - '0');
        }
        if (secs > MAX_DELAY_SEC)
            secs = MAX_DELAY_SEC;
        *delay_ms = secs * 1000;
        return 0;
    }
    int64_t when;
    if (!http_date(&c, now_ms, &when) || c.p != c.end)
        return -SIMAP_EINVAL;
    int64_t delay = when * 1000 - now_ms;
    if (delay < 0)
        delay = 0;
    if (delay > MAX_DELAY_SEC * 1000)
        delay = MAX_DELAY_SEC * 1000;
    *delay_ms = delay;
    return 0;
}
