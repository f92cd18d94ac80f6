/*
 * superimap-dispatcher: pops new-mail and user events from the Redis queues
 * and delivers them as signed webhooks, at least once, with retries and
 * dead letters (DESIGN.md section 4).
 *
 * This file wires the node lifecycle of core/node.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core/config.h"
#include "core/node.h"

int main(int argc, char **argv)
{
    static const struct node_main_spec spec = {
        .role = "dispatcher",
        .program = "superimap-dispatcher",
        .summary = "Delivers superimap events to partners' webhook URLs, signed, at least "
                   "once, with retries, backoff and dead letters.",
        .config_role = CONFIG_ROLE_DISPATCHER,
    };
    return node_main(argc, argv, &spec);
}
