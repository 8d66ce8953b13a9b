/* test_firestore: the firestore: store's pure parts (src/firestore/): how it reads Firestore's
 * status codes, and how it turns documents into books. Its calls to Firestore are tested against
 * the emulator (test_store's conformance rows, tests/wire/test_firestore.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "books/error.h"
#include "books/status.h"
#include "fs.h"

/* Each Firestore status is read on purpose (README, "Firestore"), and reaches the caller as the
 * status the README promises: a refusal of the credentials is not retryable. */
static void test_status_mapping(void **state)
{
    (void)state;
    static const struct {
        grpc_status_code firestore;
        int err;
        grpc_status_code caller;
    } rows[] = {
        {GRPC_STATUS_OK, 0, GRPC_STATUS_OK},
        {GRPC_STATUS_NOT_FOUND, BOOKS_ENOTFOUND, GRPC_STATUS_NOT_FOUND},
        {GRPC_STATUS_ALREADY_EXISTS, BOOKS_EEXIST, GRPC_STATUS_ALREADY_EXISTS},
        {GRPC_STATUS_UNAVAILABLE, BOOKS_EUNAVAIL, GRPC_STATUS_UNAVAILABLE},
        {GRPC_STATUS_CANCELLED, BOOKS_EUNAVAIL, GRPC_STATUS_UNAVAILABLE},
        {GRPC_STATUS_DEADLINE_EXCEEDED, BOOKS_EDEADLINE, GRPC_STATUS_DEADLINE_EXCEEDED},
        {GRPC_STATUS_ABORTED, BOOKS_EABORTED, GRPC_STATUS_ABORTED},
        {GRPC_STATUS_RESOURCE_EXHAUSTED, BOOKS_ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {GRPC_STATUS_PERMISSION_DENIED, BOOKS_EREFUSED, GRPC_STATUS_FAILED_PRECONDITION},
        {GRPC_STATUS_UNAUTHENTICATED, BOOKS_EREFUSED, GRPC_STATUS_FAILED_PRECONDITION},
        {GRPC_STATUS_INVALID_ARGUMENT, BOOKS_EINTERNAL, GRPC_STATUS_INTERNAL},
        {GRPC_STATUS_DATA_LOSS, BOOKS_ECORRUPT, GRPC_STATUS_DATA_LOSS},
        {GRPC_STATUS_INTERNAL, BOOKS_EIO, GRPC_STATUS_UNAVAILABLE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(fs_status_error(rows[i].firestore), rows[i].err);
        assert_int_equal(rpc_status_of(rows[i].err), rows[i].caller);
    }
}

static struct fs_names names(void)
{
    struct fs_names n;
    memset(&n, 0, sizeof n);
    snprintf(n.database, sizeof n.database, "projects/p/databases/(default)");
    snprintf(n.documents, sizeof n.documents, "%s/documents", n.database);
    snprintf(n.collection, sizeof n.collection, "books");
    return n;
}

/* A document of the collection is a book with the same fields; anything else is not one. */
static void test_book_from_document(void **state)
{
    (void)state;
    struct fs_names n = names();
    Google__Firestore__V1__Value title = GOOGLE__FIRESTORE__V1__VALUE__INIT,
                                 pub = GOOGLE__FIRESTORE__V1__VALUE__INIT,
                                 a1 = GOOGLE__FIRESTORE__V1__VALUE__INIT,
                                 authors = GOOGLE__FIRESTORE__V1__VALUE__INIT;
    Google__Firestore__V1__Value *list[1] = {&a1};
    Google__Firestore__V1__ArrayValue array = GOOGLE__FIRESTORE__V1__ARRAY_VALUE__INIT;
    title.value_type_case = pub.value_type_case = a1.value_type_case =
        GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE;
    title.string_value = "Dune";
    pub.string_value = "Chilton";
    a1.string_value = "Frank Herbert";
    array.n_values = 1;
    array.values = list;
    authors.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE;
    authors.array_value = &array;
    Google__Firestore__V1__Document__FieldsEntry e[3] = {
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT,
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT,
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT};
    e[0].key = "display_name";
    e[0].value = &title;
    e[1].key = "publisher";
    e[1].value = &pub;
    e[2].key = "authors";
    e[2].value = &authors;
    Google__Firestore__V1__Document__FieldsEntry *fields[3] = {&e[0], &e[1], &e[2]};
    Google__Firestore__V1__Document d = GOOGLE__FIRESTORE__V1__DOCUMENT__INIT;
    d.name = "projects/p/databases/(default)/documents/books/dune";
    d.n_fields = 3;
    d.fields = fields;

    struct store_book *b = NULL;
    assert_int_equal(fs_book_from_doc(&n, &d, &b), 0);
    assert_string_equal(b->name, "books/dune");
    assert_string_equal(b->display_name, "Dune");
    assert_string_equal(b->publisher, "Chilton");
    assert_int_equal(b->n_authors, 1);
    assert_string_equal(b->authors[0], "Frank Herbert");
    store_book_unref(b);

    static const char *const not_books[] = {
        "projects/p/databases/(default)/documents/books_requests/dune", /* another collection */
        "projects/p/databases/(default)/documents/books/dune/x/y",      /* a subcollection's */
        "projects/q/databases/(default)/documents/books/dune",          /* another project's */
        "projects/p/databases/(default)/documents/books/",              /* no id */
    };
    for (size_t i = 0; i < sizeof not_books / sizeof not_books[0]; i++) {
        d.name = (char *)not_books[i];
        b = (struct store_book *)0x1;
        assert_int_equal(fs_book_from_doc(&n, &d, &b), BOOKS_ECORRUPT);
        assert_ptr_equal(b, (struct store_book *)0x1);
    }
    d.name = "projects/p/databases/(default)/documents/books/dune";
    a1.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE; /* not a string */
    assert_int_equal(fs_book_from_doc(&n, &d, &b), BOOKS_ECORRUPT);
    a1.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE;
    d.n_fields = 2; /* no authors */
    assert_int_equal(fs_book_from_doc(&n, &d, &b), BOOKS_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_book_from_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
