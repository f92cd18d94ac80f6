/*
 * libFuzzer driver for proto/mailboxes on arbitrary bytes:
 *
 *   - mailboxes_parse(): a failure is -SIMAP_EINVAL with an empty list and a
 *     reason that is non-empty, NUL-terminated, valid UTF-8 and free of
 *     control characters (it goes into an API error body). On success every
 *     entry keeps the rules (1..16 entries, names of 1..255 bytes of UTF-8
 *     without control characters, kinds matching their stored spelling, no
 *     two alike), and the canonical text parses back to an equal list whose
 *     canonical text is the same bytes.
 *   - mailbox_special_of() on the input as a LIST attribute: a kind other
 *     than MB_NAME only for a backslash and a name of that kind in any case.
 *
 * Built and run by tests/fuzz/run.sh (make fuzz).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/json.h"
#include "proto/mailboxes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static int clean_text(const char *s)
{
    size_t n = strlen(s);
    if (!json_utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static void check_entry(const struct mailbox_spec *e)
{
    check(e->name != NULL && clean_text(e->name));
    size_t n = strlen(e->name);
    check(n >= 1 && n <= MAILBOX_NAME_MAX);
    if (e->special == MB_INBOX) {
        check(strcmp(e->name, "INBOX") == 0);
    } else if (e->special == MB_NAME) {
        check(e->name[0] != '\\' && strcasecmp(e->name, "INBOX") != 0);
    } else {
        check(e->name[0] == '\\' && mailbox_special_of(e->name, n) == e->special);
    }
}

static void drive_parse(const char *text, size_t size)
{
    struct mailbox_list l;
    char why[160];
    memset(why, 'x', sizeof why);
    int rc = mailboxes_parse(text, size, &l, why, sizeof why);
    if (rc != 0) {
        check(rc == -SIMAP_EINVAL);
        check(l.items == NULL && l.n == 0);
        check(memchr(why, '\0', sizeof why) != NULL && why[0] != '\0' && clean_text(why));
        return;
    }
    check(l.n >= 1 && l.n <= MAILBOXES_MAX);
    for (size_t i = 0; i < l.n; i++) {
        check_entry(&l.items[i]);
        for (size_t j = 0; j < i; j++)
            check(strcmp(l.items[i].name, l.items[j].name) != 0);
    }
    check(mailboxes_inbox_only(&l) == (l.n == 1 && strcmp(l.items[0].name, "INBOX") == 0));

    char *canon = mailboxes_to_json(&l);
    check(canon != NULL);
    struct mailbox_list again;
    check(mailboxes_parse(canon, strlen(canon), &again, why, sizeof why) == 0);
    check(again.n == l.n);
    for (size_t i = 0; i < l.n; i++) {
        check(again.items[i].special == l.items[i].special);
        check(strcmp(again.items[i].name, l.items[i].name) == 0);
    }
    char *canon2 = mailboxes_to_json(&again);
    check(canon2 != NULL && strcmp(canon, canon2) == 0);
    xfree(canon2);
    xfree(canon);
    mailboxes_free(&again);
    mailboxes_free(&l);
    check(l.items == NULL && l.n == 0);
}

static void drive_special_of(const char *attr, size_t size)
{
    enum mailbox_special k = mailbox_special_of(attr, size);
    if (k == MB_NAME)
        return;
    check(size >= 4 && attr[0] == '\\');
    check(k >= MB_INBOX && k <= MB_TRASH);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAILBOXES_JSON_MAX + 16)
        return 0;
    const char *text = (const char *)data;
    drive_parse(text, size);
    drive_special_of(text, size);
    return 0;
}
