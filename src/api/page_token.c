/* page_token.c: AIP-158 page tokens as signed cursors.
 *
 *   token = base64url( version(1) | cursor | tag(16) )        RFC 4648 §5, no padding
 *   tag   = HMAC-SHA256(dataset_key, version | purpose | 0x00 | cursor)[0..16)   RFC 2104
 *
 * The cursor is the last resource id of the page just served: keyset pagination needs nothing else,
 * and it is not secret (the client has just received that book). The tag is what makes the token
 * trustworthy: a client cannot forge a cursor, and a token from another data set (another key) or
 * another kind of request (another purpose) fails. Decoding insists on the canonical encoding
 * (re-encoding must give the same text), because base64 leaves spare bits in the last character and
 * "any altered character is rejected" must hold for every character. HMAC and base64 come from
 * OpenSSL's libcrypto, which gRPC core already loads. */
#include "books/page_token.h"

#include <assert.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"

#define TOKEN_VERSION 0x01
#define TAG_BYTES PAGE_TOKEN_TAG_BYTES
#define MAX_PURPOSE_BYTES 64
#define MAX_RAW_BYTES PAGE_TOKEN_MAX_RAW_BYTES

/* libcrypto's documented output bounds (EVP_EncodeBlock(3)): EVP_EncodeBlock writes 4 characters
 * per 3 bytes, the last group padded with '=', then a NUL; EVP_DecodeBlock writes 3 bytes per 4
 * characters of (padded) input, whatever those characters decode to. Every buffer handed to them
 * below is sized by these, from constants the input was checked against before the call. */
#define B64_ENCODED_BOUND(bytes) (((bytes) + 2) / 3 * 4 + 1)
#define B64_DECODED_BOUND(chars) (((chars) + 3) / 4 * 3)

/* The longest accepted token, padded to a multiple of 4 for EVP_DecodeBlock. */
#define MAX_PADDED_CHARS ((PAGE_TOKEN_MAX_LEN + 3) / 4 * 4)

static_assert(PAGE_TOKEN_MAX_LEN == 194, "a token of the longest cursor is 194 characters");
static_assert(PAGE_TOKEN_B64_CHARS(MAX_RAW_BYTES) <= PAGE_TOKEN_MAX_LEN,
              "the longest token this module writes is one it accepts");
static_assert(B64_DECODED_BOUND(MAX_PADDED_CHARS) >= MAX_RAW_BYTES,
              "the decode buffer holds the longest raw token");

/* HMAC-SHA256 with a key set up once per thread. libcrypto's one-shot HMAC() fetches the
 * algorithm from its provider and derives the key's inner and outer pads on every call
 * (docs/performance.md has what that cost a ListBooks). Here each thread keeps one keyed
 * EVP_MAC_CTX for the last key it used; EVP_MAC_init() with no key then restarts it from the pads
 * (EVP_MAC-HMAC(7)). A thread that sees another key (another data set: tests, the fuzz targets)
 * re-keys its context. The context is freed when its thread exits; the fetched EVP_MAC lives as
 * long as the process. Any failure falls back to one-shot HMAC(). */
struct mac_slot {
    EVP_MAC_CTX *ctx;
    bool keyed;
    uint8_t key[PAGE_TOKEN_KEY_BYTES];
};

static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static pthread_key_t mac_tls;
static bool mac_ready;
static EVP_MAC *hmac_alg;

static void mac_slot_free(void *p)
{
    struct mac_slot *slot = p;
    EVP_MAC_CTX_free(slot->ctx);
    OPENSSL_cleanse(slot->key, sizeof slot->key);
    free(slot);
}

static void mac_setup(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    mac_ready = hmac_alg && pthread_key_create(&mac_tls, mac_slot_free) == 0;
}

/* This thread's context, keyed with `key` and ready for EVP_MAC_update(), or NULL. */
static EVP_MAC_CTX *thread_mac(const uint8_t key[PAGE_TOKEN_KEY_BYTES])
{
    struct mac_slot *slot;

    pthread_once(&mac_once, mac_setup);
    if (!mac_ready)
        return NULL;
    slot = pthread_getspecific(mac_tls);
    if (!slot) {
        slot = calloc(1, sizeof *slot);
        if (!slot)
            return NULL;
        slot->ctx = EVP_MAC_CTX_new(hmac_alg);
        if (!slot->ctx || pthread_setspecific(mac_tls, slot) != 0) {
            mac_slot_free(slot);
            return NULL;
        }
    }
    if (slot->keyed && memcmp(slot->key, key, PAGE_TOKEN_KEY_BYTES) == 0)
        return EVP_MAC_init(slot->ctx, NULL, 0, NULL) ? slot->ctx : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    slot->keyed = false;
    if (!EVP_MAC_init(slot->ctx, key, PAGE_TOKEN_KEY_BYTES, params))
        return NULL;
    memcpy(slot->key, key, PAGE_TOKEN_KEY_BYTES);
    slot->keyed = true;
    return slot->ctx;
}

/* HMAC-SHA256(key, version | purpose | 0x00 | cursor), truncated to TAG_BYTES. */
static int compute_tag(const uint8_t key[PAGE_TOKEN_KEY_BYTES], const char *purpose,
                       const uint8_t *cursor, size_t cursor_len, uint8_t tag[TAG_BYTES])
{
    uint8_t msg[1 + MAX_PURPOSE_BYTES + 1 + PAGE_TOKEN_MAX_CURSOR_BYTES];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    size_t plen = strlen(purpose), n = 0, out_len = 0;
    EVP_MAC_CTX *ctx;

    if (plen > MAX_PURPOSE_BYTES || cursor_len > PAGE_TOKEN_MAX_CURSOR_BYTES)
        return BOOKS_EINVAL;
    msg[n++] = TOKEN_VERSION;
    memcpy(msg + n, purpose, plen);
    n += plen;
    msg[n++] = 0x00; /* separates purpose from cursor so the split cannot be shifted */
    memcpy(msg + n, cursor, cursor_len);
    n += cursor_len;
    ctx = thread_mac(key);
    if (ctx && EVP_MAC_update(ctx, msg, n) && EVP_MAC_final(ctx, md, &out_len, sizeof md) &&
        out_len >= TAG_BYTES) {
        memcpy(tag, md, TAG_BYTES);
        return 0;
    }
    if (!HMAC(EVP_sha256(), key, PAGE_TOKEN_KEY_BYTES, msg, n, md, &md_len) || md_len < TAG_BYTES)
        return BOOKS_EINTERNAL;
    memcpy(tag, md, TAG_BYTES);
    return 0;
}

/* Standard base64 from libcrypto, then the URL-safe alphabet and no padding (RFC 4648 §5).
 * `n` is at most MAX_RAW_BYTES; `out` holds at least PAGE_TOKEN_MAX_CHARS bytes. Returns the
 * token's length. */
static size_t b64url_encode(const uint8_t *raw, size_t n, char out[PAGE_TOKEN_MAX_CHARS])
{
    unsigned char padded[B64_ENCODED_BOUND(MAX_RAW_BYTES)];
    int len;

    if (n > MAX_RAW_BYTES)
        return 0;
    len = EVP_EncodeBlock(padded, raw, (int)n);
    while (len > 0 && padded[len - 1] == '=')
        len--;
    /* Unpadded, n <= MAX_RAW_BYTES bytes take at most PAGE_TOKEN_MAX_LEN characters. */
    for (int i = 0; i < len; i++)
        out[i] = padded[i] == '+' ? '-' : padded[i] == '/' ? '_' : (char)padded[i];
    out[len] = '\0';
    return (size_t)len;
}

int page_token_encode(const uint8_t key[PAGE_TOKEN_KEY_BYTES], const char *purpose,
                      const char *cursor, char *out, size_t outlen)
{
    uint8_t raw[MAX_RAW_BYTES];
    size_t clen = strlen(cursor);
    int rc;

    if (clen == 0 || clen > PAGE_TOKEN_MAX_CURSOR_BYTES || outlen < PAGE_TOKEN_MAX_CHARS)
        return BOOKS_EINVAL;
    raw[0] = TOKEN_VERSION;
    memcpy(raw + 1, cursor, clen);
    rc = compute_tag(key, purpose, raw + 1, clen, raw + 1 + clen);
    if (rc)
        return rc;
    b64url_encode(raw, 1 + clen + TAG_BYTES, out);
    return 0;
}

int page_token_decode(const uint8_t key[PAGE_TOKEN_KEY_BYTES], const char *purpose,
                      const char *token, char *cursor, size_t cursorlen)
{
    char b64[MAX_PADDED_CHARS + 1];
    char again[PAGE_TOKEN_MAX_CHARS];
    uint8_t raw[B64_DECODED_BOUND(MAX_PADDED_CHARS)];
    uint8_t tag[TAG_BYTES];
    size_t len = strnlen(token, PAGE_TOKEN_MAX_LEN + 1), i, raw_len, clen;
    int dec;

    /* The length check comes before anything is decoded: it is what bounds every buffer here.
     * One character over 4k carries only 6 bits, never a whole byte, so len % 4 == 1 is never a
     * token. */
    if (len == 0 || len > PAGE_TOKEN_MAX_LEN || len % 4 == 1)
        return BOOKS_EINVAL;
    for (i = 0; i < len; i++) {
        char c = token[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            b64[i] = c;
        else if (c == '-')
            b64[i] = '+';
        else if (c == '_')
            b64[i] = '/';
        else
            return BOOKS_EINVAL;
    }
    while (i % 4)
        b64[i++] = '=';
    b64[i] = '\0';
    /* i <= MAX_PADDED_CHARS, so EVP_DecodeBlock writes at most B64_DECODED_BOUND(i) <= sizeof raw
     * bytes. */
    dec = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)i);
    if (dec < 0 || (size_t)dec > sizeof raw)
        return BOOKS_EINVAL;
    /* EVP_DecodeBlock counts the zero bytes that padding stands for; take them off. */
    raw_len = (size_t)dec - (i - len);
    if (raw_len < 1 + 1 + TAG_BYTES || raw_len > MAX_RAW_BYTES || raw[0] != TOKEN_VERSION)
        return BOOKS_EINVAL;
    /* Canonical form only: otherwise the spare low bits of the last character could change without
     * changing the bytes, and an altered token would still be accepted. */
    if (b64url_encode(raw, raw_len, again) != len || memcmp(again, token, len) != 0)
        return BOOKS_EINVAL;
    clen = raw_len - 1 - TAG_BYTES;
    if (compute_tag(key, purpose, raw + 1, clen, tag) != 0)
        return BOOKS_EINVAL;
    if (CRYPTO_memcmp(tag, raw + 1 + clen, TAG_BYTES) != 0)
        return BOOKS_EINVAL;
    if (memchr(raw + 1, '\0', clen) || cursorlen < clen + 1)
        return BOOKS_EINVAL;
    memcpy(cursor, raw + 1, clen);
    cursor[clen] = '\0';
    return 0;
}
