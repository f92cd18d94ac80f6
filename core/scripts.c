/*
 * core/scripts: lookup of the embedded Lua scripts.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/scripts.h"

#include <string.h>

const struct script_source *script_find(const char *name)
{
    for (size_t i = 0; i < script_source_count; i++)
        if (strcmp(script_sources[i].name, name) == 0)
            return &script_sources[i];
    return NULL;
}
