/* test_json.c: json.h, the one JSON writer: the escaper (RFC 8259 section 7: quotes, backslashes,
 * controls, valid UTF-8 kept, each bad byte U+FFFD, never a split escape), and the builder over
 * both kinds of memory: a fixed buffer (the log's: a reserve kept free, `full` and `truncated`,
 * fields taken out whole) and a growing one (the CLI's: realloc, written out and emptied). */
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
#include "books/json.h"

/* Escapes text whole into a large buffer and returns it NUL-terminated (static storage). */
static const char *esc(const char *text, size_t n)
{
    static char out[1024];
    size_t len = 0;
    assert_true(json_escape_append(out, &len, sizeof out - 1, text, n));
    out[len] = '\0';
    return out;
}

#define ESC(lit) esc((lit), sizeof(lit) - 1)

static void test_escape(void **state)
{
    (void)state;
    assert_string_equal(ESC("plain text"), "plain text");
    assert_string_equal(ESC("a\"b\\c"), "a\\\"b\\\\c");
    assert_string_equal(ESC("\n\r\t\b\f"), "\\n\\r\\t\\u0008\\u000c");
    assert_string_equal(ESC("\x01\x1f\x7f"), "\\u0001\\u001f\x7f"); /* DEL is legal JSON */
    assert_string_equal(ESC("nul\0in"), "nul\\u0000in");
    assert_string_equal(ESC("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x9a\x80"),
                        "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x9a\x80");
    /* Each byte that does not start well-formed UTF-8 is one U+FFFD; what follows survives. */
    assert_string_equal(ESC("\xff"), "\\ufffd");
    assert_string_equal(ESC("\xc3"), "\\ufffd");                       /* truncated */
    assert_string_equal(ESC("\xc0\xaf"), "\\ufffd\\ufffd");            /* overlong */
    assert_string_equal(ESC("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd"); /* a surrogate */
    assert_string_equal(ESC("\xe6\x97 ok"), "\\ufffd\\ufffd ok");
    assert_string_equal(ESC("\xc3\xc3\xa9"), "\\ufffd\xc3\xa9");
}

/* The escape of one ASCII byte, written out from RFC 8259 section 7 (the test's own reference). */
static void ref_escape_byte(unsigned char c, char *out)
{
    if (c == '"' || c == '\\')
        snprintf(out, 8, "\\%c", c);
    else if (c == '\n')
        strcpy(out, "\\n");
    else if (c == '\r')
        strcpy(out, "\\r");
    else if (c == '\t')
        strcpy(out, "\\t");
    else if (c < 0x20)
        snprintf(out, 8, "\\u%04x", c);
    else
        snprintf(out, 8, "%c", c);
}

/* Every ASCII byte at every position of a 19-byte string (the writer scans 8 bytes at a time, so
 * each position of a word and the tail): the same output as escaping byte by byte. */
static void test_escape_every_ascii_byte_everywhere(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 0x80; c++) {
        for (size_t pos = 0; pos < 19; pos++) {
            char text[19], want[256] = "", one[8];
            size_t w = 0;
            memset(text, 'a' + (int)(pos % 26), sizeof text);
            text[pos] = (char)c;
            for (size_t i = 0; i < sizeof text; i++) {
                ref_escape_byte((unsigned char)text[i], one);
                w += (size_t)snprintf(want + w, sizeof want - w, "%s", one);
            }
            assert_string_equal(esc(text, sizeof text), want);
        }
    }
}

static void test_escape_limit(void **state)
{
    (void)state;
    char out[16];
    size_t len = 0;
    /* Stops before an escape or a character that does not fit whole. */
    assert_false(json_escape_append(out, &len, 4, "abc\n", 4));
    assert_int_equal(len, 3);
    assert_memory_equal(out, "abc", 3);
    len = 0;
    assert_false(json_escape_append(out, &len, 4, "ab\xe6\x97\xa5", 5));
    assert_int_equal(len, 2);
    len = 0;
    assert_false(json_escape_append(out, &len, 3, "abcdef", 6));
    assert_int_equal(len, 3);
    /* Appends after what is there. */
    len = 2;
    memcpy(out, "xy", 2);
    assert_true(json_escape_append(out, &len, sizeof out, "z", 1));
    assert_memory_equal(out, "xyz", 3);
    len = 0;
    assert_true(json_escape_append(out, &len, 0, "", 0));
}

/* The document so far, NUL-terminated (static storage). */
static const char *text_of(const struct json_buf *b)
{
    static char out[4096];
    assert_true(b->len < sizeof out);
    memcpy(out, b->p, b->len);
    out[b->len] = '\0';
    return out;
}

static void test_fixed_buffer(void **state)
{
    (void)state;
    char line[64];
    struct json_buf b;
    json_buf_init(&b, line, sizeof line, 8);
    assert_int_equal(b.soft, 56);
    JSON_LIT(&b, "{\"a\":");
    json_num(&b, -12);
    json_field_str(&b, "s", "q\"\n", 3, SIZE_MAX);
    json_field_num(&b, "min", LLONG_MIN);
    json_field_bool(&b, "t", true);
    assert_false(b.full);
    assert_false(b.truncated);
    assert_string_equal(text_of(&b), "{\"a\":-12,\"s\":\"q\\\"\\n\",\"min\":-9223372036854775808,"
                                     "\"t\":true");
    /* Exactly at soft now: ",\"f\":false" does not fit, is taken out whole, nothing follows. */
    json_field_bool(&b, "f", false);
    assert_true(b.full);
    assert_true(b.truncated);
    json_field_num(&b, "n", 1);
    JSON_LIT(&b, "x");
    assert_int_equal(b.len, strlen(text_of(&b)));
    assert_memory_equal(b.p + b.len - 5, ":true", 5);
    /* The reserve is the caller's, to close the document. */
    assert_true(b.cap - b.len >= 8);
    /* A full fixed buffer is not written. */
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(json_buf_write(&b, f), BOOKS_ENOMEM);
    assert_int_equal(ftell(f), 0);
    fclose(f);
    json_buf_free(&b); /* a no-op for caller memory */
}

static void test_string_budget(void **state)
{
    (void)state;
    char line[64];
    struct json_buf b;
    json_buf_init(&b, line, sizeof line, 0);
    /* A budget cuts the string at a whole character and still closes it. */
    json_str(&b, "abcdef", 6, 3);
    assert_string_equal(text_of(&b), "\"abc\"");
    assert_true(b.truncated);
    assert_false(b.full);
    b.len = 0;
    b.truncated = false;
    json_str(&b, "\n\n", 2, 3); /* an escape is 2 bytes: one fits in 3 */
    assert_string_equal(text_of(&b), "\"\\n\"");
    /* Out of room: cut at the room, closing quote kept. */
    json_buf_init(&b, line, 8, 0);
    json_str(&b, "abcdefghij", 10, SIZE_MAX);
    assert_string_equal(text_of(&b), "\"abcdef\"");
    assert_true(b.truncated);
    json_str(&b, "x", 1, SIZE_MAX); /* no room for even the quotes */
    assert_true(b.full);
    json_buf_init(&b, line, 8, 0);
    json_cstr(&b, "");
    assert_string_equal(text_of(&b), "\"\"");
}

static void test_heap_buffer(void **state)
{
    (void)state;
    struct json_buf b;
    json_buf_init_heap(&b);
    assert_null(b.p);
    JSON_LIT(&b, "[");
    /* Many escapes, well past the first 512 bytes: the worst case is reserved, nothing is cut. */
    char ctl[3000];
    memset(ctl, 0x01, sizeof ctl - 1);
    ctl[sizeof ctl - 1] = '\0';
    json_cstr(&b, ctl);
    for (int i = 0; i < 100; i++) {
        JSON_LIT(&b, ",");
        json_num(&b, i);
    }
    JSON_LIT(&b, "]\n");
    assert_false(b.full);
    assert_false(b.truncated);
    assert_int_equal(b.len, 1 + 2 + 6 * 2999 + 290 + 2);
    assert_memory_equal(b.p, "[\"\\u0001\\u0001", 14);
    assert_memory_equal(b.p + b.len - 5, ",99]\n", 5);

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    size_t written = b.len;
    assert_int_equal(json_buf_write(&b, f), 0);
    assert_int_equal(b.len, 0); /* emptied for the next document, memory kept */
    json_cstr(&b, "next");
    assert_int_equal(json_buf_write(&b, f), 0);
    fclose(f);
    assert_int_equal(len, written + 6);
    assert_memory_equal(out + written, "\"next\"", 6);
    free(out);
    json_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    json_buf_free(&b); /* twice is harmless */
    /* An empty heap buffer writes nothing. */
    f = tmpfile();
    assert_int_equal(json_buf_write(&b, f), 0);
    assert_int_equal(ftell(f), 0);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),       cmocka_unit_test(test_escape_limit),
        cmocka_unit_test(test_escape_every_ascii_byte_everywhere),
        cmocka_unit_test(test_fixed_buffer), cmocka_unit_test(test_string_budget),
        cmocka_unit_test(test_heap_buffer),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
