/* legacy.c: 363d47a's layout of a book, and the encoded Book (store_legacy.h). The protobuf binary
 * encoding (protobuf.dev, "Encoding"): a field is its key, (field number << 3) | wire type, as a
 * base-128 varint, then its value; a string is wire type 2, a varint length and the bytes. */
#include "books/store_legacy.h"

#include <string.h>

#include "books/error.h"
#include "books/varint.h"

enum { DISPLAY_NAME = 2, AUTHORS = 3, PUBLISHER = 4 }; /* books.proto's numbers */

/* Writes one string field at out (when not NULL); returns its encoded length. */
static size_t put_string(uint8_t *out, unsigned field, struct store_text t)
{
    size_t head = 1 + varint_size(t.len); /* keys of fields 2-4 take one byte */
    if (out) {
        out[0] = (uint8_t)(field << 3 | 2);
        memcpy(varint_write(out + 1, t.len), t.p, t.len);
    }
    return head + t.len;
}

size_t store_legacy_body(const struct store_legacy_book *b, uint8_t *out)
{
    size_t n = 0;
    /* proto3: a singular string at its default ("") is not written; a repeated one always is. */
    if (b->display_name.len)
        n += put_string(out ? out + n : NULL, DISPLAY_NAME, b->display_name);
    for (size_t i = 0; i < b->n_authors; i++)
        n += put_string(out ? out + n : NULL, AUTHORS, b->authors[i]);
    if (b->publisher.len)
        n += put_string(out ? out + n : NULL, PUBLISHER, b->publisher);
    return n;
}

int store_legacy_fields(const uint8_t *body, size_t body_len, struct store_text *authors,
                        size_t cap, struct store_legacy_book *b)
{
    const uint8_t *p = body, *end = body + body_len;
    *b = (struct store_legacy_book){.display_name = {"", 0}, .publisher = {"", 0},
                                    .authors = authors};
    while (p < end) {
        uint64_t key, len;
        size_t k = varint_read(p, end, &key);
        if (!k)
            return BOOKS_ECORRUPT;
        p += k;
        switch (key & 7) {
        case 0:
            k = varint_read(p, end, &len);
            if (!k)
                return BOOKS_ECORRUPT;
            p += k;
            continue;
        case 1:
        case 5:
            if ((size_t)(end - p) < ((key & 7) == 1 ? 8u : 4u))
                return BOOKS_ECORRUPT;
            p += (key & 7) == 1 ? 8 : 4;
            continue;
        case 2:
            break;
        default:
            return BOOKS_ECORRUPT;
        }
        k = varint_read(p, end, &len);
        if (!k || len > (uint64_t)(end - p - k))
            return BOOKS_ECORRUPT;
        p += k;
        struct store_text t = {(const char *)p, (size_t)len};
        p += len;
        unsigned field = (unsigned)(key >> 3);
        if (field != DISPLAY_NAME && field != AUTHORS && field != PUBLISHER)
            continue;
        if (memchr(t.p, '\0', t.len))
            return BOOKS_ECORRUPT;
        if (field == DISPLAY_NAME)
            b->display_name = t; /* the last occurrence wins, as for any singular field */
        else if (field == PUBLISHER)
            b->publisher = t;
        else if (b->n_authors == cap)
            return BOOKS_ECORRUPT;
        else
            authors[b->n_authors++] = t;
    }
    return 0;
}
