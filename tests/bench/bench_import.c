/*
 * superimap-import's time for a large export: one partner, one PLAIN
 * provider and connection, and BENCH_IMPORT_USERS users (default 100,000),
 * each with a password encrypted as the original SuperIMAP's Gibberish did
 * (AES-256-CBC, EVP_BytesToKey MD5, "Salted__", MIME base64: OpenSSL EVP
 * here, the same as `openssl enc -aes-256-cbc -md md5 -a`) and a mail
 * cursor, written as psql's CSV into a private redis-server's directory
 * (tests/unit/redis_fixture.h). The import runs twice: the first writes
 * everything, the second finds everything unchanged. Prints
 *
 *   | run | users | seconds | users/s |
 *
 * and with BENCH_DATA_DIR set appends import_users and import_seconds (the
 * first run) to results.txt (tests/bench/bench.h). Exits non-zero when an
 * import does not exit 0.
 *
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/crypto.h"
#include "tests/bench/bench.h"
#include "tests/unit/redis_fixture.h"

#define OLD_KEY "bench-original-encryption-key"

/* Gibberish's encryption of plain into out (MIME base64, 64-character
 * lines, no final line break). */
static void gibberish(const char *plain, char *out, size_t cap)
{
    unsigned char salt[8], key[32], iv[16], buf[16 + 256 + 16];
    crypto_random(salt, sizeof salt);
    EVP_BytesToKey(EVP_aes_256_cbc(), EVP_md5(), salt, (const unsigned char *)OLD_KEY,
                   (int)strlen(OLD_KEY), 1, key, iv);
    memcpy(buf, "Salted__", 8);
    memcpy(buf + 8, salt, 8);
    int n = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv);
    EVP_EncryptUpdate(ctx, buf + 16, &n, (const unsigned char *)plain, (int)strlen(plain));
    EVP_EncryptFinal_ex(ctx, buf + 16 + n, &fin);
    EVP_CIPHER_CTX_free(ctx);
    size_t len = 16 + (size_t)n + (size_t)fin, o = 0;
    for (size_t i = 0; i < len && o + 90 < cap; i += 48) {
        if (i > 0)
            out[o++] = '\n';
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, buf + i,
                                     (int)(len - i < 48 ? len - i : 48));
    }
    out[o] = '\0';
}

/* Writes text as dir/name. */
static void write_small(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static int write_export(const char *dir, long users)
{
    write_small(dir, "old.key", OLD_KEY "\n");
    write_small(dir, "partners.csv",
                "id,api_key,name,new_mail_webhook,user_connected_webhook,"
                "user_disconnected_webhook,success_url,failure_url\n"
                "1,0123456789abcdef0123,Bench,https://bench.example/n,,,,\n");
    write_small(dir, "imap_providers.csv",
                "id,code,title,type,imap_host,imap_port,imap_use_ssl\n"
                "1,PLAIN,Plain,Plain::ImapProvider,127.0.0.1,10143,f\n");
    write_small(dir, "partner_connections.csv",
                "id,partner_id,imap_provider_id,oauth2_client_id,oauth2_client_secret\n1,1,1,,\n");
    char path[256];
    snprintf(path, sizeof path, "%s/users.csv", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs("id,partner_connection_id,tag,email,login_username,login_password,connected_at,"
          "archived,enable_tracer,last_uid,last_uid_validity\n",
          f);
    for (long i = 1; i <= users; i++) {
        char plain[64], enc[512];
        snprintf(plain, sizeof plain, "password-of-user-%ld", i);
        gibberish(plain, enc, sizeof enc);
        fprintf(f,
                "%ld,1,user%ld@example.com,user%ld@example.com,user%ld,\"%s\","
                "2015-06-11 13:42:34.5,f,f,%ld,1700000000\n",
                i, i, i, i, enc, i % 5000);
    }
    return fclose(f);
}

/* Runs the import; its exit status (-1: not started), seconds in *secs. */
static int run_import(const char *bin, const char *dir, const char *url, double *secs)
{
    char from[256], key[256], env_url[200], log[300];
    snprintf(from, sizeof from, "%s", dir);
    snprintf(key, sizeof key, "%s/old.key", dir);
    snprintf(env_url, sizeof env_url, "SUPERIMAP_REDIS_URL=%s", url);
    snprintf(log, sizeof log, "%s/import.log", dir);
    char *const argv[] = {(char *)bin, (char *)"--from", from, (char *)"--old-key-file", key, NULL};
    char *const envp[] = {
        env_url,
        (char *)"SUPERIMAP_ENCRYPTION_KEY="
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        (char *)"SUPERIMAP_LOG_LEVEL=warn", NULL};
    double t0 = fixture_now();
    pid_t pid = bench_spawn(argv, envp, log);
    if (pid < 0)
        return -1;
    int st = 0;
    waitpid(pid, &st, 0);
    *secs = fixture_now() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    long users = getenv("BENCH_IMPORT_USERS") ? atol(getenv("BENCH_IMPORT_USERS")) : 100000;
    if (users < 1)
        users = 100000;
    char copy[384], bin[512];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(bin, sizeof bin, "%.384s/../bin/superimap-import", dirname(copy));
    struct redis_fixture fx;
    if (redis_fixture_start(&fx, NULL) < 0)
        return 1;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/export", fx.dir);
    mkdir(dir, 0700);
    int rc = 1;
    if (write_export(dir, users) < 0) {
        fprintf(stderr, "bench_import: cannot write the export in %s\n", dir);
        goto out;
    }
    printf("| run | users | seconds | users/s |\n|---|---|---|---|\n");
    static const char *const runs[] = {"first (writes)", "second (unchanged)"};
    for (int i = 0; i < 2; i++) {
        double secs = 0;
        int st = run_import(bin, dir, fx.url, &secs);
        if (st != 0) {
            fprintf(stderr, "bench_import: the import exited %d; see %s/import.log\n", st, dir);
            goto out;
        }
        printf("| %s | %ld | %.2f | %.0f |\n", runs[i], users, secs, (double)users / secs);
        if (i == 0) {
            bench_result("import_users", "%ld", users);
            bench_result("import_seconds", "%.2f", secs);
        }
    }
    rc = 0;
out:
    redis_fixture_stop(&fx);
    return rc;
}
