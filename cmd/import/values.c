/*
 * cmd/import/values: the original's column values (see values.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/import/values.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/civil.h"

int values_has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int values_is_http_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

int values_is_id(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 18 && s[0] != '0' && strspn(s, "0123456789") == n;
}

int values_parse_u32(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 10 || strspn(s, "0123456789") != n)
        return -1;
    uint64_t v = strtoull(s, NULL, 10);
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int values_is_code(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= VALUES_CODE_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

int values_is_host(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 253 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:_") == n;
}

int values_is_true(const char *s)
{
    return strcmp(s, "t") == 0 || strcmp(s, "true") == 0;
}

/* Reads exactly n digits at s into *v; -1 when they are not digits. */
static int digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

int values_parse_time(const char *s, char out[24])
{
    out[0] = '\0';
    if (*s == '\0')
        return 0;
    int y, mo, d, h, mi, sec;
    if (strlen(s) < 19 || digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &mo) < 0 ||
        s[7] != '-' || digits(s + 8, 2, &d) < 0 || s[10] != ' ' || digits(s + 11, 2, &h) < 0 ||
        s[13] != ':' || digits(s + 14, 2, &mi) < 0 || s[16] != ':' || digits(s + 17, 2, &sec) < 0)
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    const char *p = s + 19;
    int64_t ms = 0;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3)
                ms = ms * 10 + (*p - '0');
        if (n == 0)
            return -1;
        for (; n < 3; n++)
            ms *= 10;
    }
    int64_t offset = 0;
    if (*p == '+' || *p == '-') {
        int oh, om = 0;
        if (digits(p + 1, 2, &oh) < 0)
            return -1;
        const char *q = p + 3;
        if (*q == ':') {
            if (digits(q + 1, 2, &om) < 0)
                return -1;
            q += 3;
        }
        if (oh > 23 || om > 59)
            return -1;
        offset = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        p = q;
    }
    if (*p != '\0')
        return -1;
    int64_t t = civil_days_from(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    snprintf(out, 24, "%lld", (long long)(t * 1000 + ms));
    return 0;
}

void values_join_url(const char *site, const char *path, char out[VALUES_URL_MAX + 1])
{
    size_t sn = strlen(site);
    if (*path == '/' && sn > 0 && site[sn - 1] == '/')
        sn--;
    if (*path == '/')
        snprintf(out, VALUES_URL_MAX + 1, "%.*s%s", (int)sn, site, path);
    else
        snprintf(out, VALUES_URL_MAX + 1, "%s", path);
}

void values_lower(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    out[i] = '\0';
}
