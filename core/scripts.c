/*
 * core/scripts: lookup of the embedded Lua scripts and their SHA-1 cache.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/scripts.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"

/* shas[i] is the digest of script_sources[i]; NULL until scripts_init(). */
static char (*shas)[SCRIPT_SHA_HEX_LEN + 1];

const struct script_source *script_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < script_source_count; i++)
        if (strcmp(script_sources[i].name, name) == 0)
            return &script_sources[i];
    return NULL;
}

int script_sha1_hex(const char *body, char out[SCRIPT_SHA_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (!EVP_Digest(body, strlen(body), md, &mdlen, EVP_sha1(), NULL) ||
        mdlen * 2 != SCRIPT_SHA_HEX_LEN)
        return -SIMAP_ECRYPTO;
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[SCRIPT_SHA_HEX_LEN] = '\0';
    return 0;
}

int scripts_init(void)
{
    if (shas != NULL)
        return 0;
    /* One spare element, so a table with no scripts still allocates. */
    char(*tab)[SCRIPT_SHA_HEX_LEN + 1] = xcalloc(script_source_count + 1, sizeof *tab);
    for (size_t i = 0; i < script_source_count; i++) {
        if (script_sha1_hex(script_sources[i].body, tab[i]) < 0) {
            xfree(tab);
            return -SIMAP_ECRYPTO;
        }
    }
    shas = tab;
    return 0;
}

void scripts_shutdown(void)
{
    xfree(shas);
    shas = NULL;
}

const char *script_sha(const struct script_source *s)
{
    if (shas == NULL || s == NULL)
        return NULL;
    /* Compare addresses as integers: relational operators on pointers into
     * different arrays are undefined. */
    uintptr_t p = (uintptr_t)s, lo = (uintptr_t)&script_sources[0];
    if (p < lo || p >= lo + script_source_count * sizeof *s || (p - lo) % sizeof *s != 0)
        return NULL;
    return shas[(p - lo) / sizeof *s];
}

void script_argv_build(struct script_argv *a, const char *verb, const char *script, int nkeys,
                       int argc, const char **argv, const size_t *argvlen)
{
    snprintf(a->nk, sizeof a->nk, "%d", nkeys);
    a->n = argc + 3;
    if (a->n <= SCRIPT_ARGV_INLINE) {
        a->v = a->inline_v;
        a->l = a->inline_l;
    } else {
        a->v = xmalloc((size_t)a->n * sizeof *a->v);
        a->l = xmalloc((size_t)a->n * sizeof *a->l);
    }
    a->v[0] = verb;
    a->v[1] = script;
    a->v[2] = a->nk;
    for (int i = 0; i < 3; i++)
        a->l[i] = strlen(a->v[i]);
    for (int i = 0; i < argc; i++) {
        a->v[3 + i] = argv[i];
        a->l[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
}

void script_argv_done(struct script_argv *a)
{
    if (a->v != a->inline_v) {
        xfree(a->v);
        xfree(a->l);
    }
    a->v = NULL;
    a->l = NULL;
    a->n = 0;
}
