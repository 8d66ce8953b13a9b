/* rows.c: authors as a PostgreSQL text[] (rows.h). The literal's quoting rules and the binary
 * array layout are PostgreSQL's documented formats (manual section 8.15.6, "Array Value Input";
 * src/backend/utils/adt/arrayfuncs.c array_send for the binary one: ndim, has-null flag, element
 * type OID, then per dimension its size and lower bound, then per element a length, -1 for NULL,
 * and its bytes). */
#include "rows.h"

#include <stdlib.h>
#include <string.h>

#include "books/error.h"

size_t pg_authors_literal_size(const char *const *authors, size_t n)
{
    size_t size = 3; /* "{", "}" and the NUL */
    for (size_t i = 0; i < n; i++) {
        size += 3; /* the quotes and a comma (one too many for the last: harmless) */
        for (const char *c = authors[i]; *c; c++)
            size += (*c == '"' || *c == '\\') ? 2 : 1;
    }
    return size;
}

size_t pg_authors_literal(const char *const *authors, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    if (cap < pg_authors_literal_size(authors, n))
        return 0;
    out[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[o++] = ',';
        out[o++] = '"';
        for (const char *c = authors[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                out[o++] = '\\';
            out[o++] = *c;
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

int pg_row_book(const PGresult *res, int i, int col, struct store_book **out)
{
    struct store_text f[3];
    struct store_text *authors = NULL;
    size_t n = 0;
    int rc;

    if (PQnfields(res) < col + 4)
        return BOOKS_ECORRUPT;
    for (int c = 0; c < 3; c++) {
        if (PQgetisnull(res, i, col + c))
            return BOOKS_ECORRUPT;
        f[c].p = PQgetvalue(res, i, col + c);
        f[c].len = (size_t)PQgetlength(res, i, col + c);
    }
    authors = malloc(STORE_MAX_AUTHORS * sizeof *authors);
    if (!authors)
        return BOOKS_ENOMEM;
    rc = pg_decode_text_array((const uint8_t *)PQgetvalue(res, i, col + 3),
                              (size_t)PQgetlength(res, i, col + 3), authors, STORE_MAX_AUTHORS,
                              &n);
    if (rc == 0)
        rc = store_book_new_counted(f[0], f[1], authors, n, f[2], out);
    free(authors);
    return rc;
}
