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
 * Builds the argument vector of `<verb> <script> <nkeys> <argv...>` (verb is
 * EVALSHA with a SHA, or EVAL with a body) for hiredis' *Argv functions into
 * new arrays *av and *al; the caller xfree()s both. nk is the caller's storage
 * for the key count's text and must outlive the arrays. argvlen may be NULL
 * (then every argument is a C string). Returns the number of elements.
 */
int script_eval_argv(const char *verb, const char *script, int nkeys, int argc, const char **argv,
                     const size_t *argvlen, char nk[16], const char ***av, size_t **al);

#endif
