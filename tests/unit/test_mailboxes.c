/*
 * proto/mailboxes: parsing, validation and canonical text of mailbox lists.
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "proto/mailboxes.h"

/* Parses text, expects success and returns its canonical JSON (xfree() it). */
static char *canon(const char *text, struct mailbox_list *l)
{
    char why[160];
    int rc = mailboxes_parse(text, strlen(text), l, why, sizeof why);
    if (rc != 0)
        fail_msg("%s: %s", text, why);
    char *j = mailboxes_to_json(l);
    assert_non_null(j);
    return j;
}

/* Parses text, expects -SIMAP_EINVAL with exactly the reason want. */
static void refused(const char *text, const char *want)
{
    struct mailbox_list l = {(void *)1, 7};
    char why[160];
    assert_int_equal(mailboxes_parse(text, strlen(text), &l, why, sizeof why), -SIMAP_EINVAL);
    assert_string_equal(why, want);
    assert_null(l.items);
    assert_int_equal(l.n, 0);
}

static void test_inbox_and_attributes_are_kept_in_one_spelling(void **state)
{
    (void)state;
    struct mailbox_list l;
    char *j = canon("[ \"inbox\" , \"\\\\JUNK\", \"\\\\sent\", \"Projects/2026\" ]", &l);
    assert_string_equal(j, "[\"INBOX\",\"\\\\Junk\",\"\\\\Sent\",\"Projects/2026\"]");
    assert_int_equal(l.n, 4);
    assert_int_equal(l.items[0].special, MB_INBOX);
    assert_string_equal(l.items[0].name, "INBOX");
    assert_int_equal(l.items[1].special, MB_JUNK);
    assert_string_equal(l.items[1].name, "\\Junk");
    assert_int_equal(l.items[2].special, MB_SENT);
    assert_int_equal(l.items[3].special, MB_NAME);
    assert_string_equal(l.items[3].name, "Projects/2026");
    assert_int_equal(mailboxes_inbox_only(&l), 0);
    xfree(j);
    mailboxes_free(&l);
    assert_null(l.items);
    assert_int_equal(l.n, 0);
    mailboxes_free(&l);
    mailboxes_free(NULL);
}

static void test_every_attribute_parses(void **state)
{
    (void)state;
    static const struct {
        const char *in, *stored;
        enum mailbox_special k;
    } cases[] = {
        {"\\\\inbox", "INBOX", MB_INBOX},         {"\\\\all", "\\All", MB_ALL},
        {"\\\\ARCHIVE", "\\Archive", MB_ARCHIVE}, {"\\\\Drafts", "\\Drafts", MB_DRAFTS},
        {"\\\\flagged", "\\Flagged", MB_FLAGGED}, {"\\\\Junk", "\\Junk", MB_JUNK},
        {"\\\\Sent", "\\Sent", MB_SENT},          {"\\\\tRaSh", "\\Trash", MB_TRASH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "[\"%s\"]", cases[i].in);
        struct mailbox_list l;
        char *j = canon(text, &l);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.items[0].special, cases[i].k);
        assert_string_equal(l.items[0].name, cases[i].stored);
        /* The stored form parses back to itself. */
        struct mailbox_list again;
        char *j2 = canon(j, &again);
        assert_string_equal(j, j2);
        xfree(j2);
        mailboxes_free(&again);
        xfree(j);
        mailboxes_free(&l);
    }
}

static void test_inbox_only_is_the_default(void **state)
{
    (void)state;
    struct mailbox_list l;
    char *j = canon("[\"\\\\Inbox\"]", &l);
    assert_string_equal(j, "[\"INBOX\"]");
    assert_int_equal(mailboxes_inbox_only(&l), 1);
    xfree(j);
    mailboxes_free(&l);
    j = canon("[\"Inbox\"]", &l);
    assert_int_equal(mailboxes_inbox_only(&l), 1);
    xfree(j);
    mailboxes_free(&l);
    /* A child of INBOX is a name like any other. */
    j = canon("[\"INBOX/Sub\"]", &l);
    assert_string_equal(j, "[\"INBOX/Sub\"]");
    assert_int_equal(mailboxes_inbox_only(&l), 0);
    xfree(j);
    mailboxes_free(&l);
    assert_int_equal(mailboxes_inbox_only(NULL), 0);
}

static void test_names_keep_utf8_and_case(void **state)
{
    (void)state;
    struct mailbox_list l;
    /* Names are compared as the server spells them: two cases, two mailboxes. */
    char *j = canon("[\"Entw\\u00fcrfe\",\"junk\",\"Junk\",\"caf\xc3\xa9 \\\"x\\\"\"]", &l);
    assert_string_equal(j, "[\"Entw\xc3\xbcrfe\",\"junk\",\"Junk\",\"caf\xc3\xa9 \\\"x\\\"\"]");
    assert_int_equal(l.n, 4);
    assert_int_equal(l.items[1].special, MB_NAME);
    xfree(j);
    mailboxes_free(&l);
}

static void test_sixteen_entries_and_255_bytes_are_the_limits(void **state)
{
    (void)state;
    char text[8192];
    size_t off = 0;
    off += (size_t)snprintf(text + off, sizeof text - off, "[");
    for (int i = 0; i < MAILBOXES_MAX; i++)
        off += (size_t)snprintf(text + off, sizeof text - off, "%s\"f%d\"", i ? "," : "", i);
    snprintf(text + off, sizeof text - off, "]");
    struct mailbox_list l;
    char *j = canon(text, &l);
    assert_int_equal(l.n, MAILBOXES_MAX);
    xfree(j);
    mailboxes_free(&l);
    snprintf(text + off, sizeof text - off, ",\"one more\"]");
    refused(text, "mailboxes: must hold 1 to 16 entries, not 17");

    char name[MAILBOX_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[MAILBOX_NAME_MAX] = '\0';
    snprintf(text, sizeof text, "[\"%s\"]", name);
    j = canon(text, &l);
    assert_int_equal(strlen(l.items[0].name), MAILBOX_NAME_MAX);
    xfree(j);
    mailboxes_free(&l);
    name[MAILBOX_NAME_MAX] = 'n';
    name[MAILBOX_NAME_MAX + 1] = '\0';
    snprintf(text, sizeof text, "[\"%s\"]", name);
    refused(text, "mailboxes[0]: longer than 255 bytes");
}

static void test_refusals_name_the_entry(void **state)
{
    (void)state;
    refused("[]", "mailboxes: must hold 1 to 16 entries, not 0");
    refused("\"INBOX\"", "mailboxes: must be an array of 1 to 16 strings");
    refused("{\"a\":1}", "mailboxes: must be an array of 1 to 16 strings");
    refused("null", "mailboxes: must be an array of 1 to 16 strings");
    refused("[\"INBOX\",\"\\\\Junk\",\"\\\\Foo\"]",
            "mailboxes[2]: unknown special-use attribute \\Foo");
    refused("[\"\\\\\"]", "mailboxes[0]: unknown special-use attribute \\");
    refused("[\"INBOX\",\"\"]", "mailboxes[1]: empty mailbox name");
    refused("[\"INBOX\",7]", "mailboxes[1]: must be a string");
    refused("[null]", "mailboxes[0]: must be a string");
    refused("[[\"INBOX\"]]", "mailboxes[0]: must be a string");
    refused("[\"a\\tb\"]", "mailboxes[0]: control character in a mailbox name");
    refused("[\"a\\u007fb\"]", "mailboxes[0]: control character in a mailbox name");
    refused("[\"INBOX\",\"inbox\"]", "mailboxes[1]: the same mailbox as mailboxes[0]");
    refused("[\"\\\\Inbox\",\"INBOX\"]", "mailboxes[1]: the same mailbox as mailboxes[0]");
    refused("[\"Junk\",\"\\\\junk\",\"\\\\JUNK\"]",
            "mailboxes[2]: the same mailbox as mailboxes[1]");
    refused("[\"a\"", "mailboxes: must be an array of 1 to 16 strings "
                      "(parse error: premature EOF near byte 4)");
    refused("[[[\"a\"]]]", "mailboxes: must be an array of 1 to 16 strings (nested too deep)");
    refused("[\"\xff\"]", "mailboxes: must be an array of 1 to 16 strings "
                          "(invalid UTF-8 at byte 2)");
}

static void test_unknown_attribute_is_echoed_only_when_short_and_ascii(void **state)
{
    (void)state;
    refused("[\"\\\\Caf\xc3\xa9\"]", "mailboxes[0]: unknown special-use attribute");
    char text[300];
    snprintf(text, sizeof text, "[\"\\\\%0100d\"]", 0);
    refused(text, "mailboxes[0]: unknown special-use attribute");
}

static void test_reason_fits_any_buffer(void **state)
{
    (void)state;
    struct mailbox_list l;
    char tiny[8];
    const char *text = "[\"\\\\Foo\"]";
    assert_int_equal(mailboxes_parse(text, strlen(text), &l, tiny, sizeof tiny), -SIMAP_EINVAL);
    assert_string_equal(tiny, "mailbox");
    assert_int_equal(mailboxes_parse(text, strlen(text), &l, NULL, 0), -SIMAP_EINVAL);
    assert_int_equal(mailboxes_parse(NULL, 0, &l, tiny, sizeof tiny), -SIMAP_EINVAL);
    assert_int_equal(mailboxes_parse(text, strlen(text), NULL, tiny, sizeof tiny), -SIMAP_EINVAL);
    /* Longer than any list's text is refused before parsing. */
    size_t big = MAILBOXES_JSON_MAX + 1;
    char *huge = xmalloc(big);
    memset(huge, ' ', big);
    char why[160];
    assert_int_equal(mailboxes_parse(huge, big, &l, why, sizeof why), -SIMAP_EINVAL);
    assert_non_null(strstr(why, "longer than"));
    xfree(huge);
}

static void test_special_of_matches_list_attributes(void **state)
{
    (void)state;
    assert_int_equal(mailbox_special_of("\\Junk", 5), MB_JUNK);
    assert_int_equal(mailbox_special_of("\\junk", 5), MB_JUNK);
    assert_int_equal(mailbox_special_of("\\JUNKx", 5), MB_JUNK); /* only len bytes */
    assert_int_equal(mailbox_special_of("\\Junk", 4), MB_NAME);
    assert_int_equal(mailbox_special_of("\\All", 4), MB_ALL);
    assert_int_equal(mailbox_special_of("\\Archive", 8), MB_ARCHIVE);
    assert_int_equal(mailbox_special_of("\\Drafts", 7), MB_DRAFTS);
    assert_int_equal(mailbox_special_of("\\Flagged", 8), MB_FLAGGED);
    assert_int_equal(mailbox_special_of("\\Sent", 5), MB_SENT);
    assert_int_equal(mailbox_special_of("\\Trash", 6), MB_TRASH);
    assert_int_equal(mailbox_special_of("\\Inbox", 6), MB_INBOX);
    assert_int_equal(mailbox_special_of("\\HasNoChildren", 14), MB_NAME);
    assert_int_equal(mailbox_special_of("\\Noselect", 9), MB_NAME);
    assert_int_equal(mailbox_special_of("Junk", 4), MB_NAME);
    assert_int_equal(mailbox_special_of("", 0), MB_NAME);
    assert_int_equal(mailbox_special_of(NULL, 0), MB_NAME);
}

static void test_to_json_of_a_hand_built_list(void **state)
{
    (void)state;
    char ab[] = "a/b", trash[] = "\\Trash", ff[] = "\xff";
    struct mailbox_spec items[] = {{MB_NAME, ab}, {MB_TRASH, trash}};
    struct mailbox_list l = {items, 2};
    char *j = mailboxes_to_json(&l);
    assert_string_equal(j, "[\"a/b\",\"\\\\Trash\"]");
    xfree(j);
    struct mailbox_spec bad[] = {{MB_NAME, ff}};
    struct mailbox_list lb = {bad, 1};
    assert_null(mailboxes_to_json(&lb));
    assert_null(mailboxes_to_json(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbox_and_attributes_are_kept_in_one_spelling),
        cmocka_unit_test(test_every_attribute_parses),
        cmocka_unit_test(test_inbox_only_is_the_default),
        cmocka_unit_test(test_names_keep_utf8_and_case),
        cmocka_unit_test(test_sixteen_entries_and_255_bytes_are_the_limits),
        cmocka_unit_test(test_refusals_name_the_entry),
        cmocka_unit_test(test_unknown_attribute_is_echoed_only_when_short_and_ascii),
        cmocka_unit_test(test_reason_fits_any_buffer),
        cmocka_unit_test(test_special_of_matches_list_attributes),
        cmocka_unit_test(test_to_json_of_a_hand_built_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
