/*
 * core/scripts: the Redis Lua scripts of scripts/lua/, embedded at build time
 * by scripts/embed-lua.sh, so a binary needs no files beside it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CORE_SCRIPTS_H
#define CORE_SCRIPTS_H

#include <stddef.h>

/* One script: its file name without .lua, and its source. */
struct script_source {
    const char *name;
    const char *body;
};

/* Every script, in file-name order, terminated by {NULL, NULL}. */
extern const struct script_source script_sources[];
extern const size_t script_source_count;

/* Returns the script called name, or NULL. */
const struct script_source *script_find(const char *name);

#endif
