/* rows.c: books as PostgreSQL values (rows.h). The literal's quoting rules and the binary array
 * layout are PostgreSQL's documented formats (manual section 8.15.6, "Array Value Input";
 * src/backend/utils/adt/arrayfuncs.c array_send/array_recv for the binary one: ndim, has-null
 * flag, element type OID, then per dimension its size and lower bound, then per element a length,
 * -1 for NULL, and its bytes). */
#include "rows.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"

#define ARRAY_HEADER 20 /* ndim, flags, element type, one dimension's size and lower bound */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void pg_array_init(struct pg_array *a, uint32_t elem_oid)
{
    *a = (struct pg_array){.elem_oid = elem_oid};
}

void pg_array_reset(struct pg_array *a)
{
    a->len = ARRAY_HEADER;
    a->n = 0;
    a->has_null = false;
    a->failed = false;
}

int pg_array_add(struct pg_array *a, const uint8_t *p, size_t len)
{
    if (a->len < ARRAY_HEADER)
        a->len = ARRAY_HEADER; /* the first add after init */
    if (len > INT32_MAX - 4 || a->len > (size_t)INT32_MAX - 4 - len) {
        a->failed = true;
        return BOOKS_EINVAL;
    }
    size_t need = a->len + 4 + (p ? len : 0);
    if (need > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *more = realloc(a->buf, cap);
        if (!more) {
            a->failed = true;
            return BOOKS_ENOMEM;
        }
        a->buf = more;
        a->cap = cap;
    }
    put_be32(a->buf + a->len, p ? (uint32_t)len : UINT32_MAX); /* -1: NULL */
    a->len += 4;
    if (p) {
        memcpy(a->buf + a->len, p, len);
        a->len += len;
    } else {
        a->has_null = true;
    }
    a->n++;
    return 0;
}

const char *pg_array_bytes(struct pg_array *a)
{
    if (a->n == 0) {
        /* No dimensions: ndim 0, flags, element type, nothing else. */
        put_be32(a->empty, 0);
        put_be32(a->empty + 4, 0);
        put_be32(a->empty + 8, a->elem_oid);
        return (const char *)a->empty;
    }
    put_be32(a->buf, 1);
    put_be32(a->buf + 4, a->has_null ? 1 : 0);
    put_be32(a->buf + 8, a->elem_oid);
    put_be32(a->buf + 12, (uint32_t)a->n);
    put_be32(a->buf + 16, 1); /* lower bound */
    return (const char *)a->buf;
}

size_t pg_array_len(const struct pg_array *a)
{
    return a->n == 0 ? 12 : a->len;
}

void pg_array_free(struct pg_array *a)
{
    free(a->buf);
    *a = (struct pg_array){0};
}

size_t pg_authors_literal_size(const struct store_text *authors, size_t n)
{
    size_t size = 3; /* "{", "}" and the NUL */
    for (size_t i = 0; i < n; i++) {
        size += 3; /* the quotes and a comma (one too many for the last: harmless) */
        for (size_t k = 0; k < authors[i].len; k++)
            size += (authors[i].p[k] == '"' || authors[i].p[k] == '\\') ? 2 : 1;
    }
    return size;
}

size_t pg_authors_literal(const struct store_text *authors, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    if (cap < pg_authors_literal_size(authors, n))
        return 0;
    out[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[o++] = ',';
        out[o++] = '"';
        for (size_t k = 0; k < authors[i].len; k++) {
            char c = authors[i].p[k];
            if (c == '"' || c == '\\')
                out[o++] = '\\';
            out[o++] = c;
        }
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o] = '\0';
    return o;
}

/* A big-endian int32 at p; the caller has checked that 4 bytes are there. */
static int32_t be32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

int pg_decode_text_array(const uint8_t *bytes, size_t len, struct store_text *elems, size_t cap,
                         size_t *n)
{
    size_t off = 12, count;
    int32_t ndim, has_null, dim;

    if (len < 12)
        return BOOKS_ECORRUPT;
    ndim = be32(bytes);
    has_null = be32(bytes + 4);
    if ((uint32_t)be32(bytes + 8) != PG_TEXT_OID || has_null != 0)
        return BOOKS_ECORRUPT;
    if (ndim == 0) { /* '{}': no dimensions at all */
        *n = 0;
        return off == len ? 0 : BOOKS_ECORRUPT;
    }
    if (ndim != 1 || len - off < 8)
        return BOOKS_ECORRUPT;
    dim = be32(bytes + off); /* the lower bound that follows is of no interest */
    off += 8;
    if (dim < 0 || (size_t)dim > cap)
        return BOOKS_ECORRUPT;
    count = (size_t)dim;
    for (size_t i = 0; i < count; i++) {
        int32_t elen;
        if (len - off < 4)
            return BOOKS_ECORRUPT;
        elen = be32(bytes + off);
        off += 4;
        if (elen < 0 || (size_t)elen > len - off) /* -1 is NULL, which has_null said is absent */
            return BOOKS_ECORRUPT;
        elems[i].p = (const char *)bytes + off;
        elems[i].len = (size_t)elen;
        off += (size_t)elen;
    }
    if (off != len)
        return BOOKS_ECORRUPT;
    *n = count;
    return 0;
}

static int damaged(struct store_damage *d, const PGresult *res, int i, const char *why)
{
    if (d) {
        const char *name = PQgetisnull(res, i, 0) ? "(no name)" : PQgetvalue(res, i, 0);
        int len = PQgetisnull(res, i, 0) ? 9 : PQgetlength(res, i, 0);
        char shown[96];
        /* A name that is not a book's is echoed as printable ASCII only (text.h's rule). */
        int k = 0;
        for (int c = 0; c < len && k < (int)sizeof shown - 4; c++)
            shown[k++] = name[c] >= 0x20 && name[c] < 0x7f ? name[c] : '?';
        shown[k] = '\0';
        snprintf(d->where, sizeof d->where, "row \"%s\" of table books", shown);
        snprintf(d->why, sizeof d->why, "%s", why);
    }
    return BOOKS_ECORRUPT;
}

int pg_row_book(const PGresult *res, int i, int col, struct store_book **out,
                struct store_damage *damage)
{
    if (PQnfields(res) < col + 2)
        return damaged(damage, res, i, "the result lacks the book's columns");
    if (PQgetisnull(res, i, col))
        return damaged(damage, res, i, "the name is NULL");
    const char *name = PQgetvalue(res, i, col);
    size_t name_len = (size_t)PQgetlength(res, i, col);
    int rc;

    if (!PQgetisnull(res, i, col + 1)) {
        rc = store_book_new(name, name_len, (const uint8_t *)PQgetvalue(res, i, col + 1),
                            (size_t)PQgetlength(res, i, col + 1), out);
        return rc == BOOKS_ECORRUPT ? damaged(damage, res, i, "the name or the book is not one "
                                                              "this store writes")
                                    : rc;
    }
    /* No book: a row of version 2's layout, written by a server of 363d47a (schema.c). */
    if (PQnfields(res) < col + 5)
        return damaged(damage, res, i, "the book is NULL");
    for (int c = col + 2; c < col + 5; c++)
        if (PQgetisnull(res, i, c))
            return damaged(damage, res, i, "the book and a column of version 2 are NULL");
    struct store_text *authors = malloc(STORE_LEGACY_MAX_AUTHORS * sizeof *authors);
    if (!authors)
        return BOOKS_ENOMEM;
    struct store_legacy_book lb = {
        .display_name = {PQgetvalue(res, i, col + 2), (size_t)PQgetlength(res, i, col + 2)},
        .publisher = {PQgetvalue(res, i, col + 3), (size_t)PQgetlength(res, i, col + 3)},
        .authors = authors,
    };
    rc = pg_decode_text_array((const uint8_t *)PQgetvalue(res, i, col + 4),
                              (size_t)PQgetlength(res, i, col + 4), authors,
                              STORE_LEGACY_MAX_AUTHORS, &lb.n_authors);
    uint8_t *body = NULL;
    size_t len = 0;
    if (rc == 0) {
        len = store_legacy_body(&lb, NULL);
        body = malloc(len ? len : 1);
        rc = body ? 0 : BOOKS_ENOMEM;
    }
    if (rc == 0) {
        store_legacy_body(&lb, body);
        rc = store_book_new(name, name_len, body, len, out);
    }
    free(body);
    free(authors);
    return rc == BOOKS_ECORRUPT ? damaged(damage, res, i, "its columns of version 2 are not a "
                                                          "book's")
                                : rc;
}
