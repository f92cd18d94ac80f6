/*
 * cmd/api/command: the start every superimap-api command shares
 * (command.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/command.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/scripts.h"

int command_begin(const char *program, const char *component, struct config *cfg)
{
    struct buf errors;
    buf_init(&errors, 1 << 16);
    if (config_load(cfg, CONFIG_ROLE_API, &errors) > 0) {
        fprintf(stderr, "%s: bad configuration:\n%s", program, errors.data);
        buf_free(&errors);
        return 2;
    }
    buf_free(&errors);
    log_init("superimap-api", component, cfg->log_level, cfg->log_format, cfg->log_components,
             cfg->log_file);
    return 0;
}

int command_resume(struct rsync *rs, const char *state_key, int restart, char cursor[32])
{
    snprintf(cursor, 32, "0");
    if (restart)
        return 0;
    redisReply *saved = rsync_command(rs, "HGET %s cursor", state_key);
    if (saved == NULL)
        return -SIMAP_ECONN;
    if (saved->type == REDIS_REPLY_STRING && saved->len > 0 && saved->len < 32)
        snprintf(cursor, 32, "%s", saved->str);
    freeReplyObject(saved);
    if (strcmp(cursor, "0") != 0)
        printf("resuming at SCAN cursor %s\n", cursor);
    return 0;
}

struct rsync *command_redis(const struct config *cfg)
{
    struct rsync_opts ro = {
        .url = cfg->redis_url,
        .password = cfg->redis_password,
        .sentinel_password = cfg->redis_sentinel_password,
        .timeout_ms = cfg->redis_timeout_ms,
    };
    return scripts_init() == 0 ? rsync_new(&ro) : NULL;
}
