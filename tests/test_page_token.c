/* test_page_token.c: AIP-158 page tokens. A token must round-trip its cursor, be URL-safe, and fail
 * for every kind of forgery a client could try: any altered character, any truncation or
 * extension, another key (another data set), another purpose (another request kind), garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "books/error.h"
#include "books/page_token.h"

static const char *const ALPHABET =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
#define PURPOSE "/books.v1.BooksService/ListBooks"

struct fixture {
    uint8_t key[PAGE_TOKEN_KEY_BYTES];
    uint8_t other_key[PAGE_TOKEN_KEY_BYTES];
};

static int setup(void **state)
{
    static struct fixture f;
    for (int i = 0; i < PAGE_TOKEN_KEY_BYTES; i++) {
        f.key[i] = (uint8_t)(i * 7 + 1);
        f.other_key[i] = (uint8_t)(i * 7 + 2);
    }
    *state = &f;
    return 0;
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    const char *cursors[] = {"a", "my-book", "b0042", "3f2b8c1e-9d4a-4f6b-8c2d-1e5f7a9b0c3d",
                             "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxyz01"};
    char big[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    memset(big, 'x', PAGE_TOKEN_MAX_CURSOR_BYTES);
    big[PAGE_TOKEN_MAX_CURSOR_BYTES] = '\0';
    for (size_t i = 0; i <= sizeof cursors / sizeof cursors[0]; i++) {
        const char *cur = i < sizeof cursors / sizeof cursors[0] ? cursors[i] : big;
        char tok[PAGE_TOKEN_MAX_CHARS], back[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
        assert_int_equal(page_token_encode(f->key, PURPOSE, cur, tok, sizeof tok), 0);
        assert_true(strlen(tok) < PAGE_TOKEN_MAX_CHARS);
        assert_int_equal(strspn(tok, ALPHABET), strlen(tok)); /* URL-safe, no padding */
        if (strlen(cur) >= 4) /* opaque: the cursor is not readable in the token */
            assert_null(strstr(tok, cur));
        assert_int_equal(page_token_decode(f->key, PURPOSE, tok, back, sizeof back), 0);
        assert_string_equal(back, cur);
    }
}

/* The token, computed here from its definition (page_token.h) with libcrypto's one-shot HMAC()
 * and base64: base64url(0x01 | cursor | HMAC-SHA256(key, 0x01 | purpose | 0x00 | cursor)[0..16)). */
static void expected_token(const uint8_t *key, const char *purpose, const char *cursor, char *out)
{
    uint8_t msg[256], raw[256], md[EVP_MAX_MD_SIZE];
    unsigned char b64[400];
    unsigned int md_len = 0;
    size_t n = 0, c = strlen(cursor), p = strlen(purpose);
    msg[n++] = 0x01;
    memcpy(msg + n, purpose, p);
    n += p;
    msg[n++] = 0x00;
    memcpy(msg + n, cursor, c);
    n += c;
    assert_non_null(HMAC(EVP_sha256(), key, PAGE_TOKEN_KEY_BYTES, msg, n, md, &md_len));
    raw[0] = 0x01;
    memcpy(raw + 1, cursor, c);
    memcpy(raw + 1 + c, md, PAGE_TOKEN_TAG_BYTES);
    int len = EVP_EncodeBlock(b64, raw, (int)(1 + c + PAGE_TOKEN_TAG_BYTES));
    while (len > 0 && b64[len - 1] == '=')
        len--;
    for (int i = 0; i < len; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    out[len] = '\0';
}

/* The tag is HMAC-SHA256 as RFC 2104 defines it, also when one thread alternates between keys
 * (the module keeps a keyed context per thread and must re-key it). */
static void test_tag_is_hmac_sha256_across_keys(void **state)
{
    struct fixture *f = *state;
    const uint8_t *keys[] = {f->key, f->other_key, f->key, f->key, f->other_key};
    const char *cursors[] = {"b0042", "b0042", "zz", "", "my-book"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char tok[PAGE_TOKEN_MAX_CHARS], want[PAGE_TOKEN_MAX_CHARS], back[64];
        if (cursors[i][0] == '\0') {
            assert_int_equal(page_token_encode(keys[i], PURPOSE, cursors[i], tok, sizeof tok),
                             BOOKS_EINVAL);
            continue;
        }
        assert_int_equal(page_token_encode(keys[i], PURPOSE, cursors[i], tok, sizeof tok), 0);
        expected_token(keys[i], PURPOSE, cursors[i], want);
        assert_string_equal(tok, want);
        assert_int_equal(page_token_decode(keys[i], PURPOSE, tok, back, sizeof back), 0);
        assert_string_equal(back, cursors[i]);
        const uint8_t *other = keys[i] == f->key ? f->other_key : f->key;
        assert_int_not_equal(page_token_decode(other, PURPOSE, tok, back, sizeof back), 0);
    }
}

static void test_encode_rejects_bad_cursor(void **state)
{
    struct fixture *f = *state;
    char tok[PAGE_TOKEN_MAX_CHARS], big[PAGE_TOKEN_MAX_CURSOR_BYTES + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(page_token_encode(f->key, PURPOSE, "", tok, sizeof tok), BOOKS_EINVAL);
    assert_int_equal(page_token_encode(f->key, PURPOSE, big, tok, sizeof tok), BOOKS_EINVAL);
    assert_int_equal(page_token_encode(f->key, PURPOSE, "a", tok, 10), BOOKS_EINVAL);
}

static void test_every_altered_character_fails(void **state)
{
    struct fixture *f = *state;
    char tok[PAGE_TOKEN_MAX_CHARS], bad[PAGE_TOKEN_MAX_CHARS], out[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    /* Lengths that leave 0, 1 and 2 spare characters in the last base64 group. */
    const char *cursors[] = {"b0042", "b00420", "b004200"};
    for (size_t c = 0; c < 3; c++) {
        assert_int_equal(page_token_encode(f->key, PURPOSE, cursors[c], tok, sizeof tok), 0);
        size_t len = strlen(tok);
        for (size_t pos = 0; pos < len; pos++)
            for (const char *a = ALPHABET; *a; a++) {
                if (*a == tok[pos])
                    continue;
                memcpy(bad, tok, len + 1);
                bad[pos] = *a;
                assert_int_equal(page_token_decode(f->key, PURPOSE, bad, out, sizeof out),
                                 BOOKS_EINVAL);
            }
    }
}

static void test_truncated_and_extended_fail(void **state)
{
    struct fixture *f = *state;
    char tok[PAGE_TOKEN_MAX_CHARS], bad[PAGE_TOKEN_MAX_CHARS + 2];
    char out[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    assert_int_equal(page_token_encode(f->key, PURPOSE, "some-book-id", tok, sizeof tok), 0);
    size_t len = strlen(tok);
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(bad, tok, cut);
        bad[cut] = '\0';
        assert_int_equal(page_token_decode(f->key, PURPOSE, bad, out, sizeof out), BOOKS_EINVAL);
    }
    for (const char *a = ALPHABET; *a; a++) {
        memcpy(bad, tok, len);
        bad[len] = *a;
        bad[len + 1] = '\0';
        assert_int_equal(page_token_decode(f->key, PURPOSE, bad, out, sizeof out), BOOKS_EINVAL);
    }
}

static void test_foreign_key_and_purpose_fail(void **state)
{
    struct fixture *f = *state;
    char tok[PAGE_TOKEN_MAX_CHARS], out[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    assert_int_equal(page_token_encode(f->key, PURPOSE, "b0042", tok, sizeof tok), 0);
    assert_int_equal(page_token_decode(f->other_key, PURPOSE, tok, out, sizeof out), BOOKS_EINVAL);
    assert_int_equal(page_token_decode(f->key, "/other.Service/List", tok, out, sizeof out),
                     BOOKS_EINVAL);
}

static void test_garbage_fails(void **state)
{
    struct fixture *f = *state;
    char out[PAGE_TOKEN_MAX_CURSOR_BYTES + 1], tok[PAGE_TOKEN_MAX_CHARS];
    char longtok[PAGE_TOKEN_MAX_CHARS + 50];
    const char *garbage[] = {"",  "50", "abc", "=", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                             "not a token", "YWJj==", "a+b/c", "\xff\xfe", "AAAA AAAA",
                             "books/b0042"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        assert_int_equal(page_token_decode(f->key, PURPOSE, garbage[i], out, sizeof out),
                         BOOKS_EINVAL);
    memset(longtok, 'A', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    assert_int_equal(page_token_decode(f->key, PURPOSE, longtok, out, sizeof out), BOOKS_EINVAL);
    /* A valid token with standard-base64 characters or padding is not the canonical form. */
    assert_int_equal(page_token_encode(f->key, PURPOSE, "b0042", tok, sizeof tok), 0);
    char padded[PAGE_TOKEN_MAX_CHARS + 4];
    snprintf(padded, sizeof padded, "%s==", tok);
    assert_int_equal(page_token_decode(f->key, PURPOSE, padded, out, sizeof out), BOOKS_EINVAL);
}

static void test_small_cursor_buffer_fails(void **state)
{
    struct fixture *f = *state;
    char tok[PAGE_TOKEN_MAX_CHARS], out[4];
    assert_int_equal(page_token_encode(f->key, PURPOSE, "b0042", tok, sizeof tok), 0);
    assert_int_equal(page_token_decode(f->key, PURPOSE, tok, out, sizeof out), BOOKS_EINVAL);
}

/* Every page_token length a client can send, 0 to 420 characters: random base64url text, text
 * that decodes to a well-formed but forged token (right version byte, wrong tag), and a real token
 * where one of that length exists. Each lives in a heap block of exactly its length + 1, so
 * valgrind (scripts/test.sh step 3) reports any read past it. Only real tokens decode, and only
 * lengths of real tokens (18 to 145 raw bytes: 24 to 194 characters) can. */
static void test_every_length_0_to_420(void **state)
{
    struct fixture *f = *state;
    char out[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    unsigned seed = 12345;
    size_t accepted = 0;

    for (size_t len = 0; len <= 420; len++) {
        char *tok = malloc(len + 1);
        assert_non_null(tok);

        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            tok[i] = ALPHABET[(seed >> 16) % 64];
        }
        tok[len] = '\0';
        assert_int_equal(page_token_decode(f->key, PURPOSE, tok, out, sizeof out), BOOKS_EINVAL);

        /* A forgery: 'A' after 'A' then the version byte up front ("AQ" is 0x01 0x..): it passes
         * the shape checks and fails on the tag. */
        memset(tok, 'A', len);
        if (len >= 2)
            memcpy(tok, "AQ", 2);
        assert_int_equal(page_token_decode(f->key, PURPOSE, tok, out, sizeof out), BOOKS_EINVAL);

        /* The real token of that length, if the cursor length that gives it is allowed. */
        for (size_t clen = 1; clen <= PAGE_TOKEN_MAX_CURSOR_BYTES; clen++) {
            char cursor[PAGE_TOKEN_MAX_CURSOR_BYTES + 1], real[PAGE_TOKEN_MAX_CHARS];
            if (PAGE_TOKEN_B64_CHARS(1 + clen + PAGE_TOKEN_TAG_BYTES) != len)
                continue;
            memset(cursor, 'c', clen);
            cursor[clen] = '\0';
            assert_int_equal(page_token_encode(f->key, PURPOSE, cursor, real, sizeof real), 0);
            assert_int_equal(strlen(real), len);
            memcpy(tok, real, len + 1);
            assert_int_equal(page_token_decode(f->key, PURPOSE, tok, out, sizeof out), 0);
            assert_string_equal(out, cursor);
            accepted++;
        }
        free(tok);
    }
    /* One real token length per cursor length. */
    assert_int_equal(accepted, PAGE_TOKEN_MAX_CURSOR_BYTES);
    assert_int_equal(PAGE_TOKEN_MAX_LEN, 194);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tag_is_hmac_sha256_across_keys),
        cmocka_unit_test(test_encode_rejects_bad_cursor),
        cmocka_unit_test(test_every_altered_character_fails),
        cmocka_unit_test(test_truncated_and_extended_fail),
        cmocka_unit_test(test_foreign_key_and_purpose_fail),
        cmocka_unit_test(test_garbage_fails),
        cmocka_unit_test(test_small_cursor_buffer_fails),
        cmocka_unit_test(test_every_length_0_to_420),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
