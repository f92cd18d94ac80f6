/*
 * core/scripts: the Redis Lua scripts of scripts/lua/, embedded at build time
 * by scripts/embed-lua.sh, so a binary needs no files beside it, and the
 * cache of their SHA-1 digests (the names EVALSHA and SCRIPT LOAD use).
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

/* Hex digits of a SHA-1 digest, without the terminating NUL. */
#define SCRIPT_SHA_HEX_LEN 40

/* Returns the script called name, or NULL. */
const struct script_source *script_find(const char *name);

/*
 * Computes the hex SHA-1 of every embedded script once. Each main calls it at
 * start, before any thread starts: afterwards script_sha() only reads, so it
 * is safe from any thread. Calling it again is a no-op. Returns 0, or
 * -SIMAP_ECRYPTO if OpenSSL fails (then nothing is cached).
 */
int scripts_init(void);

/* Releases the cache built by scripts_init(); script_sha() returns NULL after
 * it until scripts_init() runs again. For a leak-free clean shutdown. */
void scripts_shutdown(void);

/*
 * Returns the lowercase hex SHA-1 of s->body (40 digits and a NUL), the same
 * string Redis returns from SCRIPT LOAD; valid until scripts_shutdown().
 * Returns NULL when s is not an element of script_sources[] (compute such a
 * script's digest with script_sha1_hex()) or before scripts_init().
 */
const char *script_sha(const struct script_source *s);

/* Writes the lowercase hex SHA-1 of body and a NUL into out. Returns 0, or
 * -SIMAP_ECRYPTO if OpenSSL fails (out is then the empty string). */
int script_sha1_hex(const char *body, char out[SCRIPT_SHA_HEX_LEN + 1]);

/*
 * The argument vector of `<verb> <script> <nkeys> <argv...>` (verb is EVALSHA
 * with a SHA, or EVAL with a body) for hiredis' *Argv functions: v and l
 * point into the struct itself for up to SCRIPT_ARGV_INLINE elements (no
 * allocation on the common path), else to arrays script_argv_done() frees.
 */
#define SCRIPT_ARGV_INLINE 32

struct script_argv {
    int n;
    const char **v;
    size_t *l;
    char nk[16]; /* the key count's text */
    const char *inline_v[SCRIPT_ARGV_INLINE];
    size_t inline_l[SCRIPT_ARGV_INLINE];
};

/* Fills a; argvlen may be NULL (then every argument is a C string). The
 * strings are not copied: they must outlive a. */
void script_argv_build(struct script_argv *a, const char *verb, const char *script, int nkeys,
                       int argc, const char **argv, const size_t *argvlen);

void script_argv_done(struct script_argv *a);

#endif
