/*
 * tests/integration/import_fixture.h: what the tests of superimap-import
 * share: writing the original SuperIMAP's tables as psql's
 * \copy (SELECT * FROM <table>) TO '<table>.csv' CSV HEADER writes them
 * (every column of db/schema.rb, RFC 4180 quoting, NULL as an unquoted empty
 * field), its secrets encrypted by the openssl command exactly as Gibberish
 * did (`openssl enc -aes-256-cbc -md md5 -a`), and running the import.
 *
 * Header-only with static functions, as test_api_client.h.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TESTS_INTEGRATION_IMPORT_FIXTURE_H
#define TESTS_INTEGRATION_IMPORT_FIXTURE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define IMP_FN static __attribute__((unused))

/* The original's ENCRYPTION_KEY, and superimap's (the harness's TEST_KEY). */
#define IMP_OLD_KEY "6f7c2a9e-old-superimap-encryption-key"
#define IMP_NEW_KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

/* The header rows of the original's tables, every column of its schema. */
#define IMP_PARTNERS_HEADER                                                              \
    "id,api_key,name,new_mail_webhook,user_connected_webhook,user_disconnected_webhook," \
    "success_url,failure_url,partner_connections_count,created_at,updated_at\n"
#define IMP_PROVIDERS_HEADER                                                                   \
    "id,code,title,type,partner_connections_count,imap_host,imap_port,imap_use_ssl,smtp_host," \
    "smtp_port,smtp_domain,smtp_enable_starttls_auto,oauth2_site,oauth2_authorize_url,"        \
    "oauth2_token_url,oauth2_token_method,oauth2_grant_type,oauth2_scope,"                     \
    "oauth2_response_type,oauth2_access_type,oauth2_approval_prompt,created_at,updated_at\n"
#define IMP_CONNS_HEADER                                                                     \
    "id,partner_id,imap_provider_id,users_count,oauth2_client_id,oauth2_client_secret,type," \
    "created_at,updated_at\n"
#define IMP_USERS_HEADER                                                                     \
    "id,partner_connection_id,tag,email,login_username,login_password,oauth2_refresh_token," \
    "connected_at,archived,enable_tracer,last_uid,last_uid_validity,last_internal_date,"     \
    "last_email_at,last_login_at,mail_logs_count,type,created_at,updated_at\n"

/* Writes s as one CSV field the way COPY does: NULL (s == NULL) as nothing,
 * quoted when it is empty or holds a comma, quote, CR or LF. */
IMP_FN void imp_field(FILE *f, const char *s, int last)
{
    if (s != NULL) {
        if (*s == '\0' || strpbrk(s, ",\"\r\n") != NULL) {
            fputc('"', f);
            for (const char *p = s; *p; p++) {
                if (*p == '"')
                    fputc('"', f);
                fputc(*p, f);
            }
            fputc('"', f);
        } else {
            fputs(s, f);
        }
    }
    fputc(last ? '\n' : ',', f);
}

/* Writes one row of n fields (NULL: SQL NULL). */
IMP_FN void imp_row(FILE *f, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        imp_field(f, va_arg(ap, const char *), i == n - 1);
    va_end(ap);
}

/* Writes key (no line break: the file holds exactly the key) to path. */
IMP_FN int imp_write_key(const char *path, const char *key)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(key, f);
    return fclose(f);
}

/*
 * Encrypts plain as Gibberish did, with the openssl command: salted
 * AES-256-CBC, EVP_BytesToKey(MD5, 1 iteration) from the password in
 * key_file, base64 in lines of 64. Returns a new string (free() it) without
 * the final line break, or NULL. dir is a scratch directory.
 */
IMP_FN char *imp_encrypt(const char *dir, const char *key_file, const char *plain)
{
    char in[512], cmd[2048];
    snprintf(in, sizeof in, "%s/plain.tmp", dir);
    FILE *f = fopen(in, "w");
    if (f == NULL)
        return NULL;
    fputs(plain, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "openssl enc -aes-256-cbc -md md5 -a -salt -pass file:%s -in %s 2>/dev/null", key_file,
             in);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    char *out = calloc(1, 8192);
    size_t n = fread(out, 1, 8191, p);
    int rc = pclose(p);
    remove(in);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    if (rc != 0 || n == 0 || strncmp(out, "U2FsdGVkX1", 10) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Runs superimap-import on redis with the arguments (NULL-terminated);
 * its output goes to dir/import.log, read into out (cap bytes). Returns its
 * exit status, or -1 when it did not exit within 60 s. */
IMP_FN int imp_run(const char *dir, const char *redis_url, char *out, size_t cap, ...)
{
    char bin[512], url[512];
    harness_bin("superimap-import", bin, sizeof bin);
    snprintf(url, sizeof url, "SUPERIMAP_REDIS_URL=%s", redis_url);
    const char *argv[16] = {bin};
    int argc = 1;
    va_list ap;
    va_start(ap, cap);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 15)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    const char *env[] = {url, "SUPERIMAP_ENCRYPTION_KEY=" IMP_NEW_KEY, "SUPERIMAP_LOG_LEVEL=warn",
                         "PATH=/usr/bin:/bin", NULL};
    struct proc p;
    memset(&p, 0, sizeof p);
    snprintf(p.log, sizeof p.log, "%s/import.log", dir);
    if (harness_spawn(&p, argv, env) < 0)
        return -1;
    if (harness_proc_wait(&p, harness_prefixed() ? 600000 : 60000) < 0) {
        harness_proc_stop(&p);
        return -1;
    }
    out[0] = '\0';
    FILE *f = fopen(p.log, "r");
    if (f != NULL) {
        size_t n = fread(out, 1, cap - 1, f);
        out[n] = '\0';
        fclose(f);
    }
    return p.exit_code;
}

#endif
