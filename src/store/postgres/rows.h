/* rows.h: the bytes this store exchanges with PostgreSQL for a book, private to the postgres
 * backend. Authors travel as a text[] column: sent as an array literal (PostgreSQL manual, "Array
 * Value Input"), read back in the binary array format (array_send: the header, dimensions, then
 * each element's length and bytes, all integers big-endian), because a binary result carries each
 * element's exact length and needs no unquoting. Both sides check every length against the bytes
 * they have: a result is data from the network. Pure functions, no allocation except where said;
 * any thread. */
#ifndef BOOKS_PG_ROWS_H
#define BOOKS_PG_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "books/store.h"

/* PostgreSQL's OID of type text, the element type of the authors column. */
#define PG_TEXT_OID 25

/* Bytes pg_authors_literal() needs for `authors` (n of them): quotes, commas, braces, a backslash
 * before every '"' and '\\', the NUL. */
size_t pg_authors_literal_size(const char *const *authors, size_t n);

/* Writes the array literal {"a","b\"c"} of authors[0..n) to out (cap bytes, at least
 * pg_authors_literal_size()), NUL-terminated. Every element is quoted, so an empty author, a
 * comma, braces, spaces or the word NULL all stay text. Returns the length, or 0 when cap is too
 * small (out then holds nothing useful). */
size_t pg_authors_literal(const char *const *authors, size_t n, char *out, size_t cap);

/* Builds the record of row `i` of a binary result whose columns col..col+3 are name,
 * display_name, publisher and authors (text[]). Returns 0 with *out a new record, BOOKS_ECORRUPT
 * (a NULL, an array this store never writes, a NUL in a string), BOOKS_ENOMEM. */
int pg_row_book(const PGresult *res, int i, int col, struct store_book **out);

/* Decodes a binary text[] value of `len` bytes into elems[0..*n) (pointers into `bytes`, which
 * must outlive them; lengths exact, not NUL-terminated). Accepts one dimension (or none: the empty
 * array), element type text, no NULL element, at most `cap` elements, each within the bytes.
 * Returns 0, or BOOKS_ECORRUPT for anything else (the column holds what this store never writes;
 * *n is then unspecified). */
int pg_decode_text_array(const uint8_t *bytes, size_t len, struct store_text *elems, size_t cap,
                         size_t *n);

#endif
