/*
 * cmd/api/admin_cli: `superimap-api admin-user`, the dashboard's accounts
 * from a shell: the first one, and any later change without a browser
 * (README "Admin dashboard: accounts and sign-in").
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CMD_API_ADMIN_CLI_H
#define CMD_API_ADMIN_CLI_H

/* Runs the subcommand; argv[0] is "admin-user". Reads the configuration
 * itself, talks to Redis with a blocking connection, and returns the exit
 * status: 0 done, 1 refused (the name is taken or unknown, a bad name or
 * password), 2 bad usage or configuration, 3 Redis failed. */
int admin_cli_main(int argc, char **argv);

#endif
