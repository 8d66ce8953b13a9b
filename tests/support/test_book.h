/* test_book.h: book records for the unit tests (tests/support/test_book.c). A store keeps a book as
 * its name and its encoded Book (store.h); tests build those bytes the way the service does, with
 * protobuf-c over books.v1.Book, and read them back the same way. */
#ifndef BOOKS_TEST_BOOK_H
#define BOOKS_TEST_BOOK_H

#include <stddef.h>

#include "books/store.h"
#include "books/v1/books.pb-c.h"

/* A record named `name` whose Book holds these fields (authors: n of them; NULL with 0). Returns
 * store_book_new()'s rc, or BOOKS_ENOMEM. */
int test_book_new(const char *name, const char *title, const char *const *authors, size_t n,
                  const char *publisher, struct store_book **out);

/* The record's wire form unpacked (name included); NULL when it does not unpack. Free it with
 * test_book_free(). */
Books__V1__Book *test_book_decode(const struct store_book *b);
void test_book_free(Books__V1__Book *m);

/* Whether two records are the same book: the same name and the same encoded Book. */
int test_book_same(const struct store_book *a, const struct store_book *b);

#endif
