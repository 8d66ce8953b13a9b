/* fuzz_page_token: page_token_decode() of client bytes, as ListBooks calls it with the
 * page_token field (a C string), with a fixed key and ListBooks' purpose. The input, copied to a
 * heap block of exactly its size plus a NUL, is the token.
 * Properties:
 *   - a token that verifies is canonical: page_token_encode() of its cursor gives the token back
 *     exactly (the token as the C string the decoder saw: up to the input's first NUL);
 *   - the other way round: the input taken as a cursor (when it is 1..128 bytes with no NUL)
 *     encodes to a token of at most PAGE_TOKEN_MAX_LEN URL-safe characters that decodes to it,
 *     and that fails under another key or purpose. */
#include <string.h>

#include "books/page_token.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static bool url_safe(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char purpose[] = FUZZ_LIST_TOKEN_PURPOSE;
    char *token = fuzz_copy(data, size, true);
    char cursor[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    char again[PAGE_TOKEN_MAX_CHARS];
    uint8_t other_key[PAGE_TOKEN_KEY_BYTES];

    memset(cursor, 0x5a, sizeof cursor);
    if (page_token_decode(fuzz_dataset_key, purpose, token, cursor, sizeof cursor) == 0) {
        size_t clen = strnlen(cursor, sizeof cursor);
        FUZZ_CHECK(clen >= 1 && clen <= PAGE_TOKEN_MAX_CURSOR_BYTES);
        FUZZ_CHECK(page_token_encode(fuzz_dataset_key, purpose, cursor, again, sizeof again) == 0);
        FUZZ_CHECK(strcmp(again, token) == 0);
    }

    memcpy(other_key, fuzz_dataset_key, sizeof other_key);
    other_key[size % sizeof other_key] ^= 1;
    if (size >= 1 && size <= PAGE_TOKEN_MAX_CURSOR_BYTES && !memchr(data, '\0', size)) {
        FUZZ_CHECK(page_token_encode(fuzz_dataset_key, purpose, token, again, sizeof again) == 0);
        FUZZ_CHECK(strlen(again) <= PAGE_TOKEN_MAX_LEN && url_safe(again));
        FUZZ_CHECK(page_token_decode(fuzz_dataset_key, purpose, again, cursor, sizeof cursor) == 0);
        FUZZ_CHECK(strcmp(cursor, token) == 0);
        FUZZ_CHECK(page_token_decode(other_key, purpose, again, cursor, sizeof cursor) != 0);
        FUZZ_CHECK(page_token_decode(fuzz_dataset_key, "/other.Service/List", again, cursor,
                                     sizeof cursor) != 0);
    }
    free(token);
    return 0;
}
