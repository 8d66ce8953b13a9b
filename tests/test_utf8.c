/* test_utf8.c: UTF-8 validation against RFC 3629. Named cases first (each boundary of the table in
 * section 3, overlong forms, UTF-16 surrogates, truncated sequences, lone continuation bytes, the
 * bytes that never appear: 0xC0, 0xC1, 0xF5..0xFF), then utf8_sequence_len()'s contract, then an
 * exhaustive comparison with a reference validator.
 *
 * The reference is built from the RFC's section 3 table, not from the byte ranges the code uses:
 * a sequence of k bytes is a character when it has the table's bit pattern for k bytes and the code
 * point its x bits spell lies in that row's range (the shortest form), is not a surrogate and is at
 * most U+10FFFF; a string is valid when it splits into such sequences. Every input passed to the
 * module lives in a heap block of exactly its length: a read past n shows under valgrind/ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/utf8.h"

/* ---- the reference (RFC 3629 section 3) ------------------------------------------------------ */

/* The table: for a k-byte sequence, the lead byte's fixed bits and mask, the bits it carries, and
 * the code point range of the row. */
static const struct row {
    unsigned char lead_mask, lead_bits; /* (b & mask) == bits */
    unsigned lo, hi;
} TABLE[5] = {
    [1] = {0x80, 0x00, 0x0000, 0x007F},    /* 0xxxxxxx */
    [2] = {0xE0, 0xC0, 0x0080, 0x07FF},    /* 110xxxxx 10xxxxxx */
    [3] = {0xF0, 0xE0, 0x0800, 0xFFFF},    /* 1110xxxx 10xxxxxx 10xxxxxx */
    [4] = {0xF8, 0xF0, 0x10000, 0x10FFFF}, /* 11110xxx 10xxxxxx 10xxxxxx 10xxxxxx */
};

/* True when the k bytes at s are one character by the table. */
static bool ref_char(const unsigned char *s, size_t k)
{
    const struct row *r = &TABLE[k];
    unsigned cp;
    if ((s[0] & r->lead_mask) != r->lead_bits)
        return false;
    cp = s[0] & (unsigned char)~r->lead_mask;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return false;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < r->lo || cp > r->hi) /* outside the row: an overlong form, or above U+10FFFF */
        return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) /* surrogates are not characters (section 3) */
        return false;
    return true;
}

/* The length of the character at the start of s (n bytes), or 0. */
static size_t ref_len(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 4 && k <= n; k++)
        if (ref_char(s, k))
            return k;
    return 0;
}

/* True when the n bytes at s split into characters. A lead byte fixes a character's length, so
 * the split, when there is one, is unique: taking the first character that matches is enough. */
static bool ref_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k;
    while (i < n) {
        if (!(k = ref_len(s + i, n - i)))
            return false;
        i += k;
    }
    return true;
}

/* The encoding of code point cp by the table; returns its length. */
static size_t ref_encode(unsigned cp, unsigned char out[4])
{
    size_t k = cp <= 0x7F ? 1 : cp <= 0x7FF ? 2 : cp <= 0xFFFF ? 3 : 4;
    for (size_t i = k - 1; i > 0; i--) {
        out[i] = (unsigned char)(0x80 | (cp & 0x3F));
        cp >>= 6;
    }
    out[0] = (unsigned char)(TABLE[k].lead_bits | cp);
    return k;
}

/* ---- calling the module on exact-size copies ------------------------------------------------- */

static bool valid(const char *s, size_t n)
{
    if (n == 0)
        return utf8_valid(s, 0);
    char *copy = malloc(n);
    memcpy(copy, s, n);
    bool v = utf8_valid(copy, n);
    free(copy);
    return v;
}

static size_t seq_len(const char *s, size_t n)
{
    unsigned char *copy = malloc(n);
    memcpy(copy, s, n);
    size_t k = utf8_sequence_len(copy, n);
    free(copy);
    return k;
}

#define VALID(lit) assert_true(valid(lit, sizeof(lit) - 1))
#define INVALID(lit)                                                                               \
    do {                                                                                           \
        if (valid(lit, sizeof(lit) - 1))                                                           \
            fail_msg("accepted " #lit);                                                            \
    } while (0)

/* ---- named cases ----------------------------------------------------------------------------- */

static void test_boundaries(void **state)
{
    (void)state;
    /* Each edge of each row of the table, as one character and as its sequence length. */
    static const struct {
        const char *s;
        size_t len;
    } edges[] = {
        {"\x00", 1},             /* U+0000: a character (the codec, not this module, bans it) */
        {"\x7F", 1},             /* U+007F */
        {"\xC2\x80", 2},         /* U+0080 */
        {"\xDF\xBF", 2},         /* U+07FF */
        {"\xE0\xA0\x80", 3},     /* U+0800 */
        {"\xED\x9F\xBF", 3},     /* U+D7FF, just below the surrogates */
        {"\xEE\x80\x80", 3},     /* U+E000, just above them */
        {"\xEF\xBF\xBF", 3},     /* U+FFFF */
        {"\xF0\x90\x80\x80", 4}, /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 4}, /* U+10FFFF, the last code point */
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        size_t n = edges[i].len;
        assert_true(valid(edges[i].s, n));
        assert_int_equal(seq_len(edges[i].s, n), n);
    }
    /* Just past the last code point, and the largest the 4-byte pattern could spell. */
    INVALID("\xF4\x90\x80\x80"); /* U+110000 */
    INVALID("\xF7\xBF\xBF\xBF"); /* U+1FFFFF */
}

static void test_overlong_forms(void **state)
{
    (void)state;
    INVALID("\xC0\x80");             /* U+0000 in two bytes ("modified UTF-8") */
    INVALID("\xC0\xAF");             /* '/' in two bytes: the classic path-traversal trick */
    INVALID("\xC1\xBF");             /* U+007F in two bytes */
    INVALID("\xE0\x80\x80");         /* U+0000 in three */
    INVALID("\xE0\x80\xAF");         /* '/' in three */
    INVALID("\xE0\x9F\xBF");         /* U+07FF in three */
    INVALID("\xF0\x80\x80\x80");     /* U+0000 in four */
    INVALID("\xF0\x80\x80\xAF");     /* '/' in four */
    INVALID("\xF0\x8F\xBF\xBF");     /* U+FFFF in four */
    INVALID("\xF8\x88\x80\x80\x80"); /* five- and six-byte forms of the old RFC 2279 */
    INVALID("\xFC\x84\x80\x80\x80\x80");
}

static void test_surrogates(void **state)
{
    (void)state;
    INVALID("\xED\xA0\x80");             /* U+D800, first high surrogate */
    INVALID("\xED\xAD\xBF");             /* U+DB7F */
    INVALID("\xED\xAE\x80");             /* U+DB80, first high private-use surrogate */
    INVALID("\xED\xB0\x80");             /* U+DC00, first low surrogate */
    INVALID("\xED\xBF\xBF");             /* U+DFFF, last low surrogate */
    INVALID("\xED\xA0\xBD\xED\xB8\x80"); /* a surrogate pair (CESU-8 for U+1F600) */
    VALID("\xF0\x9F\x98\x80");           /* U+1F600 as UTF-8 has it */
}

static void test_truncated_sequences(void **state)
{
    (void)state;
    /* Every proper prefix of a multi-byte character, alone, before ASCII, and at the end. */
    static const char *const whole[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                        "\xF4\x8F\xBF\xBF"};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        size_t n = strlen(whole[i]);
        char buf[16];
        for (size_t k = 1; k < n; k++) {
            assert_false(valid(whole[i], k));
            assert_int_equal(seq_len(whole[i], k), 0);
            memcpy(buf, whole[i], k);
            buf[k] = 'A';
            assert_false(valid(buf, k + 1));
            buf[0] = 'x';
            memcpy(buf + 1, whole[i], k);
            assert_false(valid(buf, k + 1));
        }
        assert_true(valid(whole[i], n));
    }
}

static void test_lone_continuation_bytes(void **state)
{
    (void)state;
    char s[3] = {'a', 0, 'b'};
    for (int c = 0x80; c <= 0xBF; c++) {
        s[1] = (char)c;
        assert_false(valid(s + 1, 1));
        assert_false(valid(s, 3));
        assert_int_equal(seq_len(s + 1, 1), 0);
    }
    INVALID("\xC3\xA9\xA9");     /* one continuation too many after a whole character */
    INVALID("\xE2\x82\xAC\x80"); /* the same after three bytes */
    INVALID("\x80\x80\x80\x80"); /* continuations only */
}

/* 0xC0, 0xC1 and 0xF5..0xFF start nothing, whatever follows them. */
static void test_bytes_that_never_appear(void **state)
{
    (void)state;
    static const unsigned char never[] = {0xC0, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9,
                                          0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF};
    for (size_t i = 0; i < sizeof never; i++) {
        char s[4];
        s[0] = (char)never[i];
        for (int t = 0x80; t <= 0xBF; t++) {
            s[1] = s[2] = s[3] = (char)t;
            for (size_t n = 1; n <= 4; n++) {
                assert_false(valid(s, n));
                assert_int_equal(seq_len(s, n), 0);
            }
        }
    }
    INVALID("\xFE\xFF"); /* a UTF-16 byte-order mark read as bytes */
    INVALID("\xFF\xFE");
}

static void test_valid_text(void **state)
{
    (void)state;
    assert_true(valid("", 0));
    VALID("The Hobbit");
    VALID("J. R. R. Tolkien \xE2\x80\x94 \xC3\x89"
          "ditions Gallimard");        /* em dash, É */
    VALID("\xE6\x9D\xB1\xE4\xBA\xAC"); /* 東京 */
    VALID("a\0b");                     /* U+0000 is a character: NULs are the codec's business */
    /* Only n bytes count: a bad byte past them does not make the string invalid. */
    assert_true(valid("ab\xFF", 2));
    assert_false(valid("ab\xFF", 3));
}

/* ---- utf8_sequence_len's contract ------------------------------------------------------------ */

static void test_sequence_len_contract(void **state)
{
    (void)state;
    /* The length of the first character only; what follows it does not matter. */
    assert_int_equal(seq_len("A\xFF", 2), 1);
    assert_int_equal(seq_len("\xC3\xA9\xFF", 3), 2);
    assert_int_equal(seq_len("\xE2\x82\xAC\x80", 4), 3);
    assert_int_equal(seq_len("\xF0\x9F\x98\x80\xC0", 5), 4);
    /* A character longer than the n bytes available is not well-formed there. */
    assert_int_equal(seq_len("\xE2\x82\xAC", 2), 0);
    assert_int_equal(seq_len("\xF0\x9F\x98\x80", 3), 0);
    /* Walking a string with it visits exactly the characters' starts. */
    const char text[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
    const size_t want[] = {1, 2, 3, 4, 1};
    size_t off = 0, i = 0;
    while (off < sizeof text - 1) {
        size_t k = seq_len(text + off, sizeof text - 1 - off);
        assert_true(i < 5);
        assert_int_equal(k, want[i++]);
        off += k;
    }
    assert_int_equal(i, 5);
}

/* ---- exhaustive comparisons with the reference ----------------------------------------------- */

/* The reference itself, checked on what the RFC states outright, so that agreeing with it means
 * something: every code point but the surrogates encodes, and its encoding is one character of the
 * length the table gives. */
static void test_reference_agrees_with_the_rfc(void **state)
{
    (void)state;
    unsigned char e[4];
    assert_int_equal(ref_encode(0x20AC, e), 3);
    assert_memory_equal(e, "\xE2\x82\xAC", 3); /* the RFC's own example: U+20AC (section 7) */
    assert_int_equal(ref_encode(0x233B4, e), 4);
    assert_memory_equal(e, "\xF0\xA3\x8E\xB4", 4); /* U+233B4 (section 7) */
    assert_false(ref_valid((const unsigned char *)"\xC0\x80", 2));
    assert_false(ref_valid((const unsigned char *)"\xED\xA0\x80", 3));
    assert_false(ref_valid((const unsigned char *)"\xF4\x90\x80\x80", 4));
}

/* Every code point U+0000..U+10FFFF (surrogates excluded), encoded by the table: the module accepts
 * it and measures it; the surrogates' would-be encodings are refused. */
static void test_every_code_point(void **state)
{
    (void)state;
    unsigned char e[4];
    for (unsigned cp = 0; cp <= 0x10FFFF; cp++) {
        size_t k = ref_encode(cp, e);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (utf8_valid((const char *)e, k) == surrogate)
            fail_msg("U+%04X: utf8_valid says %s", cp, surrogate ? "valid" : "invalid");
        if (utf8_sequence_len(e, k) != (surrogate ? 0 : k))
            fail_msg("U+%04X: utf8_sequence_len is %zu", cp, utf8_sequence_len(e, k));
    }
}

/* Every 1-byte and 2-byte input, exhaustively, in heap blocks of exactly that size. */
static void test_all_one_and_two_byte_inputs(void **state)
{
    (void)state;
    unsigned char *one = malloc(1), *two = malloc(2);
    for (unsigned b0 = 0; b0 < 256; b0++) {
        one[0] = (unsigned char)b0;
        if (utf8_valid((const char *)one, 1) != ref_valid(one, 1))
            fail_msg("byte %02X: utf8_valid disagrees with RFC 3629", b0);
        if (utf8_sequence_len(one, 1) != ref_len(one, 1))
            fail_msg("byte %02X: utf8_sequence_len is %zu, RFC 3629 says %zu", b0,
                     utf8_sequence_len(one, 1), ref_len(one, 1));
        for (unsigned b1 = 0; b1 < 256; b1++) {
            two[0] = (unsigned char)b0;
            two[1] = (unsigned char)b1;
            if (utf8_valid((const char *)two, 2) != ref_valid(two, 2))
                fail_msg("%02X %02X: utf8_valid says %d", b0, b1,
                         (int)utf8_valid((const char *)two, 2));
            if (utf8_sequence_len(two, 2) != ref_len(two, 2))
                fail_msg("%02X %02X: utf8_sequence_len is %zu, RFC 3629 says %zu", b0, b1,
                         utf8_sequence_len(two, 2), ref_len(two, 2));
        }
    }
    free(one);
    free(two);
}

/* Longer inputs cannot all be tried; every pair of leading bytes is, followed by bytes from each
 * class the grammar distinguishes (ASCII, the continuation range's ends and the sub-ranges that
 * E0, ED, F0 and F4 allow, and bytes that are never continuations). */
static void test_three_and_four_byte_inputs(void **state)
{
    (void)state;
    static const unsigned char tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90,
                                          0x9F, 0xA0, 0xBF, 0xC0, 0xE0, 0xFF};
    const size_t nt = sizeof tails;
    unsigned char *three = malloc(3), *four = malloc(4);
    for (unsigned b0 = 0; b0 < 256; b0++)
        for (unsigned b1 = 0; b1 < 256; b1++)
            for (size_t i = 0; i < nt; i++) {
                three[0] = four[0] = (unsigned char)b0;
                three[1] = four[1] = (unsigned char)b1;
                three[2] = four[2] = tails[i];
                if (utf8_valid((const char *)three, 3) != ref_valid(three, 3) ||
                    utf8_sequence_len(three, 3) != ref_len(three, 3))
                    fail_msg("%02X %02X %02X disagrees with RFC 3629", b0, b1, tails[i]);
                for (size_t j = 0; j < nt; j++) {
                    four[3] = tails[j];
                    if (utf8_valid((const char *)four, 4) != ref_valid(four, 4) ||
                        utf8_sequence_len(four, 4) != ref_len(four, 4))
                        fail_msg("%02X %02X %02X %02X disagrees with RFC 3629", b0, b1, tails[i],
                                 tails[j]);
                }
            }
    free(three);
    free(four);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_overlong_forms),
        cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_truncated_sequences),
        cmocka_unit_test(test_lone_continuation_bytes),
        cmocka_unit_test(test_bytes_that_never_appear),
        cmocka_unit_test(test_valid_text),
        cmocka_unit_test(test_sequence_len_contract),
        cmocka_unit_test(test_reference_agrees_with_the_rfc),
        cmocka_unit_test(test_every_code_point),
        cmocka_unit_test(test_all_one_and_two_byte_inputs),
        cmocka_unit_test(test_three_and_four_byte_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
