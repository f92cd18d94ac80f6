/*
 * cmd/api/admin_cli: `superimap-api admin-user add|list|disable|enable|
 * delete`. add reads the password from standard input when it is not a
 * terminal (one line), else prompts twice without echo on the terminal.
 * Through admin_store.h, as the api's routes: the same scripts, the same
 * checks, sessions ended on disable and delete.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cmd/api/admin_cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cmd/api/admin_store.h"
#include "cmd/api/command.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/err.h"
#include "core/log.h"
#include "core/rsync.h"
#include "core/scripts.h"
#include "core/time.h"

#define PROGRAM "superimap-api admin-user"

static const char usage[] =
    "Usage: superimap-api admin-user add NAME | list | disable NAME | enable NAME | delete NAME\n"
    "Manages the admin dashboard's accounts (stored in SUPERIMAP_REDIS_URL).\n"
    "  add NAME      creates account NAME (1 to 64 of A-Z a-z 0-9 . _ @ -); its password\n"
    "                (12 to 1024 bytes) is one line of standard input, or asked twice\n"
    "                without echo when standard input is a terminal\n"
    "  list          every account: name, disabled, created, last sign-in\n"
    "  disable NAME  refuses its sign-ins and ends its sessions\n"
    "  enable NAME   lets it sign in again\n"
    "  delete NAME   deletes it and ends its sessions\n";

/* One line of f into out (cap bytes), without its line end; -1 at EOF, on
 * a line too long or a NUL inside. */
static int read_line(FILE *f, char *out, size_t cap)
{
    if (fgets(out, (int)cap, f) == NULL)
        return -1;
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    else if (!feof(f))
        return -1; /* longer than cap */
    if (n > 0 && out[n - 1] == '\r')
        out[--n] = '\0';
    return 0;
}

/* Prompts on the terminal without echo. */
static int ask(const char *prompt, char *out, size_t cap)
{
    struct termios old, quiet;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    int rc = read_line(stdin, out, cap);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return rc;
}

/* The new account's password into pw (cap bytes). 0, or 1 after saying why. */
static int read_password(char *pw, size_t cap)
{
    if (!isatty(STDIN_FILENO)) {
        if (read_line(stdin, pw, cap) < 0) {
            fprintf(stderr,
                    PROGRAM ": no password on standard input (one line, at most %d "
                            "bytes)\n",
                    ADMIN_PASSWORD_MAX);
            return 1;
        }
    } else {
        char again[ADMIN_PASSWORD_MAX + 2];
        int rc = ask("Password: ", pw, cap) < 0 || ask("Password again: ", again, sizeof again) < 0
                     ? -1
                     : strcmp(pw, again) == 0;
        crypto_wipe(again, sizeof again);
        if (rc != 1) {
            fprintf(stderr, PROGRAM ": %s\n",
                    rc < 0 ? "no password read" : "the two passwords differ");
            return 1;
        }
    }
    if (!admin_password_ok(strlen(pw))) {
        fprintf(stderr, PROGRAM ": a password must be %d to %d bytes\n", ADMIN_PASSWORD_MIN,
                ADMIN_PASSWORD_MAX);
        return 1;
    }
    return 0;
}

static int add(struct rsync *rs, const struct config *cfg, const char *name)
{
    char pw[ADMIN_PASSWORD_MAX + 2];
    int rc = read_password(pw, sizeof pw);
    if (rc != 0) {
        crypto_wipe(pw, sizeof pw);
        return rc;
    }
    struct crypto_scrypt_params p = {.log2n = cfg->admin_scrypt_log2n, .r = 8, .p = 1};
    char *hash = crypto_password_hash(pw, strlen(pw), &p);
    crypto_wipe(pw, sizeof pw);
    if (hash == NULL) {
        fprintf(stderr, PROGRAM ": the password could not be hashed\n");
        return 3;
    }
    rc = admin_store_create(rs, name, hash, time_now_ms());
    xfree(hash);
    if (rc == -SIMAP_ESTATE) {
        fprintf(stderr, PROGRAM ": an admin user named %s exists\n", name);
        return 1;
    }
    if (rc < 0)
        return 3;
    printf("admin user %s created\n", name);
    return 0;
}

static int list(struct rsync *rs)
{
    struct rec_list l;
    if (admin_store_list(rs, &l) < 0) {
        rec_list_free(&l);
        return 3;
    }
    for (size_t i = 0; i < l.n; i++) {
        const struct rec *a = &l.rec[i];
        const char *last = rec_get(a, "last_login_at");
        printf("%s\t%s\tcreated_at=%s\tlast_login_at=%s\n", rec_get(a, "username"),
               strcmp(rec_get(a, "disabled"), "1") == 0 ? "disabled" : "enabled",
               rec_get(a, "created_at"), *last != '\0' ? last : "never");
    }
    rec_list_free(&l);
    return 0;
}

static int change(struct rsync *rs, const char *op, const char *name)
{
    char lower[ADMIN_NAME_MAX + 1];
    int rc = admin_name_lower(name, lower) ? admin_store_change(rs, lower, op, time_now_ms())
                                           : -SIMAP_ENOTFOUND;
    if (rc == -SIMAP_ENOTFOUND) {
        fprintf(stderr, PROGRAM ": no admin user named %s\n", name);
        return 1;
    }
    if (rc < 0)
        return 3;
    printf("admin user %s %sd\n", lower, op);
    return 0;
}

static int run(struct rsync *rs, const struct config *cfg, const char *cmd, const char *name)
{
    if (strcmp(cmd, "add") == 0) {
        char lower[ADMIN_NAME_MAX + 1];
        if (!admin_name_lower(name, lower)) {
            fprintf(stderr, PROGRAM ": a name is 1 to %d of A-Z a-z 0-9 . _ @ -\n", ADMIN_NAME_MAX);
            return 1;
        }
        return add(rs, cfg, name);
    }
    if (strcmp(cmd, "list") == 0)
        return list(rs);
    return change(rs, cmd, name);
}

int admin_cli_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *cmd = argc > 1 ? argv[1] : "";
    int named = strcmp(cmd, "add") == 0 || strcmp(cmd, "disable") == 0 ||
                strcmp(cmd, "enable") == 0 || strcmp(cmd, "delete") == 0;
    if (!(named && argc == 3) && !(strcmp(cmd, "list") == 0 && argc == 2)) {
        fprintf(stderr, PROGRAM ": bad arguments\n%s", usage);
        return 2;
    }
    struct config cfg;
    if (command_begin(PROGRAM, "admin-user", &cfg) != 0)
        return 2;
    struct rsync *rs = command_redis(&cfg);
    int status = 3;
    if (rs != NULL)
        status = run(rs, &cfg, cmd, named ? argv[2] : NULL);
    if (status == 3)
        fprintf(stderr, PROGRAM ": Redis failed: %s\n", rs != NULL ? rsync_errstr(rs) : "");
    rsync_free(rs);
    scripts_shutdown();
    log_shutdown();
    return status;
}
