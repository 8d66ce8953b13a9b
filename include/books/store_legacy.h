/* store_legacy.h: a book as 363d47a's stores kept it (display_name, publisher and authors in
 * columns of their own), and the conversions between that layout and the encoded Book this
 * version keeps (store.h). Used by the sqlite: migration from schema 2 to 3 and by the postgresql:
 * store while its database is expanded but not contracted, i.e. still shared with servers of that
 * version (src/store/postgres/schema.c).
 *
 * The three fields are books.proto's display_name = 2, authors = 3 and publisher = 4, strings,
 * encoded as protobuf-c packs them (field-number order, proto3: an empty singular string is not
 * written). A proto never renumbers a field, so these numbers are facts of the old layout, and
 * this file is frozen with it: a field added to the Book later never appears here, and a body
 * that carries one keeps it (store_legacy_fields() skips what it does not read). Pure functions,
 * no allocation; any thread. */
#ifndef BOOKS_STORE_LEGACY_H
#define BOOKS_STORE_LEGACY_H

#include <stddef.h>
#include <stdint.h>

/* A string given by pointer and length, not NUL-terminated (a column of a row). */
struct store_text {
    const char *p;
    size_t len;
};

/* Most authors a legacy row may have (the API lets a client send 100): a row with more is damaged
 * or foreign data. */
#define STORE_LEGACY_MAX_AUTHORS 1024

/* A book in the old layout: its three columns. */
struct store_legacy_book {
    struct store_text display_name;
    struct store_text publisher;
    const struct store_text *authors; /* n_authors of them */
    size_t n_authors;
};

/* Writes the encoded Book body (store.h: every field but the name) of `b` to out and returns its
 * length in bytes; with out NULL only returns the length. The bytes are those protobuf-c packs for
 * a books.v1.Book holding these three fields and an empty name (test_legacy checks it). */
size_t store_legacy_body(const struct store_legacy_book *b, uint8_t *out);

/* Reads the three old columns out of an encoded Book body (body_len bytes): pointers into `body`,
 * which must outlive them. Up to `cap` authors go to authors[0..*n_authors) (b->authors is set to
 * `authors`). A field the old layout does not have is skipped. Returns 0; BOOKS_ECORRUPT when the
 * bytes are not a protobuf message, a string holds a NUL byte (the old columns are text), or
 * there are more than `cap` authors. */
int store_legacy_fields(const uint8_t *body, size_t body_len, struct store_text *authors,
                        size_t cap, struct store_legacy_book *b);

#endif
