/* test_book.c: book records for the unit tests (test_book.h). */
#include "support/test_book.h"

#include <stdlib.h>
#include <string.h>

#include "books/error.h"

int test_book_new(const char *name, const char *title, const char *const *authors, size_t n,
                  const char *publisher, struct store_book **out)
{
    Books__V1__Book m = BOOKS__V1__BOOK__INIT;
    m.display_name = (char *)title;
    m.publisher = (char *)publisher;
    m.authors = (char **)authors;
    m.n_authors = n;
    size_t len = protobuf_c_message_get_packed_size(&m.base);
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        return BOOKS_ENOMEM;
    protobuf_c_message_pack(&m.base, body);
    int rc = store_book_new(name, name ? strlen(name) : 0, body, len, out);
    free(body);
    return rc;
}

Books__V1__Book *test_book_decode(const struct store_book *b)
{
    return books__v1__book__unpack(NULL, b->wire_len, b->wire);
}

void test_book_free(Books__V1__Book *m)
{
    if (m)
        books__v1__book__free_unpacked(m, NULL);
}

int test_book_same(const struct store_book *a, const struct store_book *b)
{
    return strcmp(a->name, b->name) == 0 && a->wire_len == b->wire_len &&
           memcmp(a->wire, b->wire, a->wire_len) == 0;
}
