/*
 * cmd/api/admin_path: what a path under /admin names (admin_path.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/admin_path.h"

#include <stdio.h>
#include <string.h>

static const char name_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

/* 1 when rel is 1 to ADMIN_PATH_SEGMENTS_MAX segments of name_chars joined
 * by '/', none beginning with '.'. */
static int file_path_ok(const char *rel)
{
    int segments = 0;
    const char *p = rel;
    while (*p != '\0') {
        size_t n = strspn(p, name_chars);
        if (n == 0 || p[0] == '.' || ++segments > ADMIN_PATH_SEGMENTS_MAX)
            return 0;
        p += n;
        if (*p == '/' && p[1] != '\0')
            p++;
        else if (*p != '\0')
            return 0;
    }
    return segments > 0;
}

enum admin_path_kind admin_path_classify(const char *uri, char *rel, size_t cap)
{
    if (cap > 0)
        rel[0] = '\0';
    if (strncmp(uri, "/admin/api/", 11) == 0 || strcmp(uri, "/admin/login") == 0 ||
        strcmp(uri, "/admin/logout") == 0)
        return ADMIN_PATH_ROUTER;
    if (strcmp(uri, "/admin") == 0)
        return ADMIN_PATH_SLASH;
    if (strncmp(uri, "/admin/", 7) != 0)
        return ADMIN_PATH_NONE;
    const char *file = uri[7] == '\0' ? "index.html" : uri + 7;
    if (!file_path_ok(file) || strlen(file) >= cap)
        return ADMIN_PATH_NONE;
    snprintf(rel, cap, "%s", file);
    return ADMIN_PATH_FILE;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), e = strlen(suffix);
    return n > e && strcmp(s + n - e, suffix) == 0;
}

int admin_path_is_page(const char *rel)
{
    return ends_with(rel, ".html");
}

const char *admin_path_type(const char *rel)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (ends_with(rel, types[i][0]))
            return types[i][1];
    return "application/octet-stream";
}
