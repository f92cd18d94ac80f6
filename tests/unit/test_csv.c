/*
 * Unit tests of proto/csv: records as psql's \copy ... CSV HEADER writes
 * them (NULL versus "", embedded commas, quotes and line breaks, CRLF),
 * the same records read from every split of the input, and hostile input
 * (stray quotes, unterminated quotes, too many fields, huge records, NUL
 * bytes).
 *
 * SPDX-License-Identifier: MIT
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "proto/csv.h"

/* Reads every record of s and joins them as "f1|f2;f1|f2;" with NULL as
 * "~", into out; returns csv_next()'s final answer. */
static int flatten(const char *s, size_t n, char *out, size_t cap)
{
    struct csv_reader *r = csv_new(s, n);
    size_t o = 0;
    int rc;
    out[0] = '\0';
    while ((rc = csv_next(r)) == 1) {
        for (size_t i = 0; i < csv_count(r); i++) {
            size_t len;
            const char *f = csv_field(r, i, &len);
            if (csv_is_null(r, i)) {
                f = "~";
                len = 1;
            }
            assert_true(o + len + 2 < cap);
            memcpy(out + o, f, len);
            o += len;
            out[o++] = i + 1 < csv_count(r) ? '|' : ';';
        }
        out[o] = '\0';
    }
    csv_free(r);
    return rc;
}

static void test_reads_psql_copy_output_with_nulls_and_quotes(void **state)
{
    (void)state;
    static const char in[] = "id,tag,email\n"
                             "1,alice,\n"
                             "2,\"\",\"b@x\"\n"
                             "3,\"a,b\",\"say \"\"hi\"\"\"\n"
                             "4,\"two\nlines\",x\r\n"
                             "5,,\n";
    char out[256];
    assert_int_equal(flatten(in, sizeof in - 1, out, sizeof out), 0);
    assert_string_equal(out, "id|tag|email;1|alice|~;2||b@x;3|a,b|say \"hi\";4|two\nlines|x;"
                             "5|~|~;");
}

static void test_null_and_empty_string_differ(void **state)
{
    (void)state;
    struct csv_reader *r = csv_new(",\"\"", 3);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_count(r), 2);
    assert_true(csv_is_null(r, 0));
    assert_false(csv_is_null(r, 1));
    assert_string_equal(csv_field(r, 1, NULL), "");
    assert_int_equal(csv_next(r), 0);
    csv_free(r);
}

static void test_line_numbers_count_embedded_newlines(void **state)
{
    (void)state;
    static const char in[] = "a\n\"x\ny\nz\"\nb\n";
    struct csv_reader *r = csv_new(in, sizeof in - 1);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_line(r), 1);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_line(r), 2);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_line(r), 5);
    assert_string_equal(csv_field(r, 0, NULL), "b");
    assert_int_equal(csv_next(r), 0);
    csv_free(r);
}

static void test_last_record_without_newline_is_read(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(flatten("a,b\nc,\"d\"", 9, out, sizeof out), 0);
    assert_string_equal(out, "a|b;c|d;");
    assert_int_equal(flatten("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
}

static void test_every_split_of_a_buffer_copy_reads_the_same(void **state)
{
    (void)state;
    /* The reader takes whole buffers; input cut anywhere must read the
     * records before the cut as the whole does (the cut one may differ) or
     * fail cleanly, never read out of bounds. */
    static const char in[] = "1,\"a \"\"q\"\",\nb\",c\r\n2,,\"\"\n";
    char whole[128];
    assert_int_equal(flatten(in, sizeof in - 1, whole, sizeof whole), 0);
    assert_string_equal(whole, "1|a \"q\",\nb|c;2|~|;");
    for (size_t cut = 0; cut < sizeof in - 1; cut++) {
        char *copy = xmalloc(cut + 1);
        memcpy(copy, in, cut);
        char out[128];
        int rc = flatten(copy, cut, out, sizeof out);
        assert_true(rc == 0 || rc == -SIMAP_EPROTO);
        size_t keep = strlen(out) > 0 ? strlen(out) - 1 : 0;
        while (keep > 0 && out[keep - 1] != ';')
            keep--;
        assert_int_equal(strncmp(out, whole, keep), 0);
        xfree(copy);
    }
}

static void test_stray_and_unterminated_quotes_are_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {"a\"b,c\n", "\"a\"b,c\n", "\"abc\n", "x,\"a\"\"\n",
                                      "\"a\"\rb\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct csv_reader *r = csv_new(bad[i], strlen(bad[i]));
        assert_int_equal(csv_next(r), -SIMAP_EPROTO);
        assert_true(csv_error(r)[0] != '\0');
        assert_int_equal(csv_next(r), -SIMAP_EPROTO);
        csv_free(r);
    }
}

static void test_error_reports_its_line(void **state)
{
    (void)state;
    static const char in[] = "h\nok\n\"x\"y\n";
    struct csv_reader *r = csv_new(in, sizeof in - 1);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_next(r), -SIMAP_EPROTO);
    assert_int_equal(csv_line(r), 3);
    csv_free(r);
}

static void test_too_many_fields_and_huge_records_are_refused(void **state)
{
    (void)state;
    char commas[CSV_MAX_FIELDS + 2];
    memset(commas, ',', sizeof commas);
    struct csv_reader *r = csv_new(commas, sizeof commas);
    assert_int_equal(csv_next(r), -SIMAP_ETOOBIG);
    csv_free(r);

    r = csv_new(commas, CSV_MAX_FIELDS - 1);
    assert_int_equal(csv_next(r), 1);
    assert_int_equal(csv_count(r), CSV_MAX_FIELDS);
    csv_free(r);

    size_t n = CSV_MAX_RECORD + 10;
    char *big = xmalloc(n);
    memset(big, 'a', n);
    r = csv_new(big, n);
    assert_int_equal(csv_next(r), -SIMAP_ETOOBIG);
    csv_free(r);
    xfree(big);
}

static void test_nul_bytes_are_kept_with_their_length(void **state)
{
    (void)state;
    static const char in[] = "a\0b,\"c\0\"\n";
    struct csv_reader *r = csv_new(in, sizeof in - 1);
    assert_int_equal(csv_next(r), 1);
    size_t len;
    const char *f = csv_field(r, 0, &len);
    assert_int_equal(len, 3);
    assert_int_equal(strlen(f), 1);
    csv_field(r, 1, &len);
    assert_int_equal(len, 2);
    csv_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_psql_copy_output_with_nulls_and_quotes),
        cmocka_unit_test(test_null_and_empty_string_differ),
        cmocka_unit_test(test_line_numbers_count_embedded_newlines),
        cmocka_unit_test(test_last_record_without_newline_is_read),
        cmocka_unit_test(test_every_split_of_a_buffer_copy_reads_the_same),
        cmocka_unit_test(test_stray_and_unterminated_quotes_are_errors),
        cmocka_unit_test(test_error_reports_its_line),
        cmocka_unit_test(test_too_many_fields_and_huge_records_are_refused),
        cmocka_unit_test(test_nul_bytes_are_kept_with_their_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
