/* rows.h: the bytes this store exchanges with PostgreSQL for a book, private to the postgres
 * backend. A book travels as its name (text) and its encoded Book body (bytea, store.h); while a
 * database is expanded (schema.c) the columns of version 2 travel too: display_name and publisher
 * (text) and authors (text[]), sent as each row's array literal (PostgreSQL manual, "Array Value
 * Input") and read back in the binary array format (array_send: the header, dimensions, then each
 * element's length and bytes, all integers big-endian). Parameters are arrays in the binary
 * format too (one element per create of a batch), so nothing is quoted or escaped. Both sides
 * check every length against the bytes they have: a result is data from the network. Pure
 * functions, no allocation except where said; any thread. */
#ifndef BOOKS_PG_ROWS_H
#define BOOKS_PG_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "books/store.h"
#include "books/store_legacy.h"

/* PostgreSQL's OIDs of the element types this store sends and reads (pg_type.dat). */
#define PG_BYTEA_OID 17
#define PG_TEXT_OID 25

/* A one-dimensional array parameter in PostgreSQL's binary array format (array_recv), built one
 * element at a time; the buffer is kept from batch to batch. */
struct pg_array {
    uint8_t *buf; /* 20 bytes of header room, then the elements */
    size_t len, cap;
    uint32_t elem_oid;
    int32_t n;
    bool has_null;
    bool failed; /* an allocation failed: pg_array_bytes() is not to be sent */
    uint8_t empty[12]; /* the bytes of the empty array */
};

void pg_array_init(struct pg_array *a, uint32_t elem_oid);
/* Empties `a`, keeping its buffer. */
void pg_array_reset(struct pg_array *a);
/* Appends an element of len bytes (p NULL: a NULL element). 0, or BOOKS_ENOMEM, or BOOKS_EINVAL
 * when the array would pass INT32_MAX bytes (what a parameter's length can say). */
int pg_array_add(struct pg_array *a, const uint8_t *p, size_t len);
/* The array's bytes and length, header written (an empty array has no dimensions). Valid until
 * the next add or reset. */
const char *pg_array_bytes(struct pg_array *a);
size_t pg_array_len(const struct pg_array *a);
void pg_array_free(struct pg_array *a);

/* Bytes pg_authors_literal() needs for `authors` (n of them): quotes, commas, braces, a backslash
 * before every '"' and '\\', the NUL. */
size_t pg_authors_literal_size(const struct store_text *authors, size_t n);

/* Writes the array literal {"a","b\"c"} of authors[0..n) to out (cap bytes, at least
 * pg_authors_literal_size()), NUL-terminated. Every element is quoted, so an empty author, a
 * comma, braces, spaces or the word NULL all stay text. Returns the length, or 0 when cap is too
 * small (out then holds nothing useful). */
size_t pg_authors_literal(const struct store_text *authors, size_t n, char *out, size_t cap);

/* Builds the record of row `i` of a binary result whose columns col, col+1 are name and book
 * (bytea), followed, when the result has them, by display_name, publisher and authors (text[]) of
 * version 2, read when book is NULL (a row written by a server of 363d47a: store_legacy_body()).
 * Returns 0 with *out a new record; BOOKS_ECORRUPT (a NULL, an array this store never writes, a
 * NUL in a name or a string), with `damage` (may be NULL) naming the row and what is wrong;
 * BOOKS_ENOMEM. */
int pg_row_book(const PGresult *res, int i, int col, struct store_book **out,
                struct store_damage *damage);

/* Decodes a binary text[] value of `len` bytes into elems[0..*n) (pointers into `bytes`, which
 * must outlive them; lengths exact, not NUL-terminated). Accepts one dimension (or none: the empty
 * array), element type text, no NULL element, at most `cap` elements, each within the bytes.
 * Returns 0, or BOOKS_ECORRUPT for anything else (the column holds what this store never writes;
 * *n is then unspecified). */
int pg_decode_text_array(const uint8_t *bytes, size_t len, struct store_text *elems, size_t cap,
                         size_t *n);

#endif
