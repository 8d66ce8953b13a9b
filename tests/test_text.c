/* test_text.c: the shared text helpers (text.h): quoting user text into messages in both styles
 * (what is kept, escaped or replaced, the 48-byte cut, small buffers), the word-wrapper (columns,
 * indents, quoted phrases, long words) and the strict decimal parser (digits only, bounds through
 * strtonum, overflow, out-parameter untouched on failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/text.h"

static void test_quote_ascii(void **state)
{
    (void)state;
    char q[64];
    assert_string_equal(text_quote(q, sizeof q, "books/a\"b", TEXT_QUOTE_ASCII), "books/a\"b");
    assert_string_equal(text_quote(q, sizeof q, "a\nb\xff\x7f\x1b", TEXT_QUOTE_ASCII), "a?b???");
    assert_string_equal(text_quote(q, sizeof q, "caf\xc3\xa9", TEXT_QUOTE_ASCII), "caf??");
    assert_string_equal(text_quote(q, sizeof q, "", TEXT_QUOTE_ASCII), "");
    /* 48 bytes, then "...". */
    char long_text[100];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    text_quote(q, sizeof q, long_text, TEXT_QUOTE_ASCII);
    assert_int_equal(strlen(q), TEXT_QUOTE_MAX + 3);
    assert_memory_equal(q + TEXT_QUOTE_MAX, "...", 4);
    long_text[TEXT_QUOTE_MAX] = '\0'; /* exactly 48: not cut */
    assert_string_equal(text_quote(q, sizeof q, long_text, TEXT_QUOTE_ASCII), long_text);
    /* books_error_quote() is the same thing. */
    char r[64];
    assert_string_equal(books_error_quote(r, sizeof r, "x\ty\"z"),
                        text_quote(q, sizeof q, "x\ty\"z", TEXT_QUOTE_ASCII));
}

static void test_quote_escape(void **state)
{
    (void)state;
    char q[256];
    assert_string_equal(text_quote(q, sizeof q, "\x1b[2J\"\\\n", TEXT_QUOTE_ESCAPE),
                        "\\x1b[2J\\\"\\\\\\x0a");
    assert_string_equal(text_quote(q, sizeof q, "caf\xc3\xa9 \x7f", TEXT_QUOTE_ESCAPE),
                        "caf\xc3\xa9 \\x7f"); /* UTF-8 passes, DEL does not */
    /* The cut counts input bytes, and the worst case (every byte an escape) fits 256 bytes. */
    char ctl[60];
    memset(ctl, 0x01, sizeof ctl - 1);
    ctl[sizeof ctl - 1] = '\0';
    text_quote(q, sizeof q, ctl, TEXT_QUOTE_ESCAPE);
    assert_int_equal(strlen(q), 4 * TEXT_QUOTE_MAX + 3);
    assert_memory_equal(q + 4 * TEXT_QUOTE_MAX, "...", 4);
}

static void test_quote_small_buffers(void **state)
{
    (void)state;
    char q[16];
    /* Each piece leaves room for "..." and the NUL; an escape is never split. */
    assert_string_equal(text_quote(q, 10, "abcdefghijkl", TEXT_QUOTE_ASCII), "abcdef...");
    assert_string_equal(text_quote(q, 10, "ab\n\n\n", TEXT_QUOTE_ESCAPE), "ab\\x0a...");
    assert_string_equal(text_quote(q, 4, "abc", TEXT_QUOTE_ASCII), "...");
    assert_string_equal(text_quote(q, 5, "abc", TEXT_QUOTE_ASCII), "a...");
    assert_string_equal(text_quote(q, 1, "abc", TEXT_QUOTE_ASCII), "");
    q[0] = 'X';
    text_quote(q, 0, "abc", TEXT_QUOTE_ASCII); /* nothing written at all */
    assert_int_equal(q[0], 'X');
}

static char *wrap(const char *text, int indent, int col, int width)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    fprintf(f, "%.*s", col, "################################");
    text_wrap(f, text, indent, col, width);
    fclose(f);
    return out;
}

static void test_wrap(void **state)
{
    (void)state;
    char *s = wrap("one two three four five", 0, 0, 10);
    assert_string_equal(s, "one two\nthree four\nfive\n");
    free(s);
    /* Padded to the indent first, and every later line indented. */
    s = wrap("one two three", 4, 0, 12);
    assert_string_equal(s, "    one two\n    three\n");
    free(s);
    /* The caller's columns count. */
    s = wrap("one two three", 4, 2, 12);
    assert_string_equal(s, "##  one two\n    three\n");
    free(s);
    s = wrap("alpha beta", 2, 6, 12); /* past the indent: a space first */
    assert_string_equal(s, "###### alpha\n  beta\n");
    free(s);
    /* A quoted phrase is one word; a word past the width gets a line of its own. */
    s = wrap("run \"a b c d\" now", 0, 0, 8);
    assert_string_equal(s, "run\n\"a b c d\"\nnow\n");
    free(s);
    s = wrap("x averyveryverylongword y", 0, 0, 8);
    assert_string_equal(s, "x\naveryveryverylongword\ny\n");
    free(s);
    /* Runs of spaces are one separator; an empty text is an empty line. */
    s = wrap("a   b", 0, 0, 80);
    assert_string_equal(s, "a b\n");
    free(s);
    s = wrap("", 0, 0, 80);
    assert_string_equal(s, "\n");
    free(s);
}

static void test_parse_decimal(void **state)
{
    (void)state;
    long long v = 0;
    assert_int_equal(text_parse_decimal("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(text_parse_decimal("00010", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(text_parse_decimal("9223372036854775807", 0, LLONG_MAX, &v), 0);
    assert_int_equal(v, LLONG_MAX);
    static const char *const bad[] = {
        "",
        "11",
        "-1",
        "+1",
        " 1",
        "1 ",
        "0x1",
        "1e1",
        "1.0",
        "\xd9\xa3",
        "abc",
        "1\n",
        "9223372036854775808",
        "99999999999999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 77;
        if (text_parse_decimal(bad[i], 0, 10, &v) != BOOKS_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(v, 77);
    }
    assert_int_equal(text_parse_decimal("4", 5, 10, &v), BOOKS_EINVAL); /* below min */
    assert_int_equal(text_parse_decimal("9223372036854775808", 0, LLONG_MAX, &v), BOOKS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_ascii),         cmocka_unit_test(test_quote_escape),
        cmocka_unit_test(test_quote_small_buffers), cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_parse_decimal),
    };
    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
