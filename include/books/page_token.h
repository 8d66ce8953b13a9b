/* page_token.h: AIP-158 page tokens. A token is an opaque, URL-safe string (base64url, RFC 4648 §5,
 * no padding) that carries the last resource id of the previous page and an HMAC-SHA256 tag (RFC
 * 2104), truncated to 128 bits, over a version byte, a purpose string and the id. The key is the
 * store's dataset_key, so a token works only with the data set and the request kind (`purpose`)
 * that issued it; anything altered, truncated or foreign fails to verify. Tokens do not expire.
 * Both functions keep no state: any thread. */
#ifndef BOOKS_PAGE_TOKEN_H
#define BOOKS_PAGE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_TOKEN_KEY_BYTES 32
/* Longest cursor (resource id) a token carries, in bytes. */
#define PAGE_TOKEN_MAX_CURSOR_BYTES 128
/* Bytes of the HMAC tag a token carries. */
#define PAGE_TOKEN_TAG_BYTES 16
/* Decoded size of the longest token: version byte, cursor, tag. */
#define PAGE_TOKEN_MAX_RAW_BYTES (1 + PAGE_TOKEN_MAX_CURSOR_BYTES + PAGE_TOKEN_TAG_BYTES)
/* Characters of unpadded base64 (RFC 4648 §5) for n bytes: 4 per 3, rounded up. */
#define PAGE_TOKEN_B64_CHARS(n) (((n) * 4 + 2) / 3)
/* Longest token this module produces or accepts, in characters (194). A longer page_token is
 * refused before any decoding. */
#define PAGE_TOKEN_MAX_LEN PAGE_TOKEN_B64_CHARS(PAGE_TOKEN_MAX_RAW_BYTES)
/* Buffer size, in bytes, that holds any token and its NUL. */
#define PAGE_TOKEN_MAX_CHARS (PAGE_TOKEN_MAX_LEN + 1)

/* Writes the token for `cursor` (NUL-terminated, 1..PAGE_TOKEN_MAX_CURSOR_BYTES bytes) to `out`
 * (`outlen` bytes, at least PAGE_TOKEN_MAX_CHARS). Returns 0, or BOOKS_EINVAL (cursor empty or too
 * long, out too small), BOOKS_EINTERNAL (the HMAC failed). */
int page_token_encode(const uint8_t key[PAGE_TOKEN_KEY_BYTES], const char *purpose,
                      const char *cursor, char *out, size_t outlen);

/* Verifies `token` and writes its cursor to `cursor` (`cursorlen` bytes, at least
 * PAGE_TOKEN_MAX_CURSOR_BYTES + 1), NUL-terminated. Returns 0, or BOOKS_EINVAL for anything that is
 * not a token issued with this key and purpose (bad characters, wrong length, unknown version,
 * tag mismatch, a cursor containing NUL). The tag is compared in constant time. */
int page_token_decode(const uint8_t key[PAGE_TOKEN_KEY_BYTES], const char *purpose,
                      const char *token, char *cursor, size_t cursorlen);

#endif
