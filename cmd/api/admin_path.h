/*
 * cmd/api/admin_path.h: what a request path under /admin names (the pure
 * part of admin_files.c): a route of the router, a file of web/admin/, or
 * nothing. No civetweb, no Redis, no file system: unit-tested and fuzzed
 * (tests/fuzz/fuzz_admin_path.c).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_ADMIN_PATH_H
#define CMD_API_ADMIN_PATH_H

#include <stddef.h>

#define ADMIN_PATH_SEGMENTS_MAX 8 /* segments of a file's path */

enum admin_path_kind {
    ADMIN_PATH_ROUTER, /* /admin/api/..., /admin/login, /admin/logout */
    ADMIN_PATH_FILE,   /* a file of web/admin/ */
    ADMIN_PATH_SLASH,  /* /admin: to /admin/ */
    ADMIN_PATH_NONE,   /* nothing we serve (404) */
};

/* Classifies uri, a request's path as sent (still percent-encoded). For
 * ADMIN_PATH_FILE the file's path under web/admin/ goes into rel (cap
 * bytes; "index.html" for "/admin/"): 1 to ADMIN_PATH_SEGMENTS_MAX segments
 * of [A-Za-z0-9._-] joined by '/', none beginning with '.', so never a
 * parent, a dot file or a percent-encoded byte. A path that does not fit in
 * rel is ADMIN_PATH_NONE. */
enum admin_path_kind admin_path_classify(const char *uri, char *rel, size_t cap);

/* 1 when rel is an HTML page (served only with a session). */
int admin_path_is_page(const char *rel);

/* The Content-Type of rel, by its extension. */
const char *admin_path_type(const char *rel);

#endif
