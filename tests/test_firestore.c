/* test_firestore: the firestore: store's pure parts (src/firestore/): how it reads Firestore's
 * status codes, and how it turns documents into books. Its calls to Firestore are tested against
 * the emulator (test_store's conformance rows, tests/wire/test_firestore.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/error.h"
#include "books/status.h"
#include "fs.h"
#include "support/test_book.h"

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
        /* throttling (a quota, the ramp-up) is never "out of space": retry after a delay */
        {GRPC_STATUS_RESOURCE_EXHAUSTED, BOOKS_ETHROTTLED, GRPC_STATUS_UNAVAILABLE},
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
                                 authors = GOOGLE__FIRESTORE__V1__VALUE__INIT,
                                 other = GOOGLE__FIRESTORE__V1__VALUE__INIT;
    Google__Firestore__V1__Value *list[1] = {&a1};
    Google__Firestore__V1__ArrayValue array = GOOGLE__FIRESTORE__V1__ARRAY_VALUE__INIT;
    title.value_type_case = pub.value_type_case = a1.value_type_case = other.value_type_case =
        GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE;
    title.string_value = "Dune";
    pub.string_value = "Chilton";
    a1.string_value = "Frank Herbert";
    other.string_value = "not a field of the Book: skipped";
    array.n_values = 1;
    array.values = list;
    authors.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE;
    authors.array_value = &array;
    Google__Firestore__V1__Document__FieldsEntry e[4] = {
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT,
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT,
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT,
        GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT};
    e[0].key = "write_id"; /* a field of the store's own, or of a newer proto: not read */
    e[0].value = &other;
    e[1].key = "display_name";
    e[1].value = &title;
    e[2].key = "publisher";
    e[2].value = &pub;
    e[3].key = "authors";
    e[3].value = &authors;
    Google__Firestore__V1__Document__FieldsEntry *fields[4] = {&e[0], &e[1], &e[2], &e[3]};
    Google__Firestore__V1__Document d = GOOGLE__FIRESTORE__V1__DOCUMENT__INIT;
    d.name = "projects/p/databases/(default)/documents/books/dune";
    d.n_fields = 4;
    d.fields = fields;

    struct store_book *b = NULL, *want = NULL;
    struct store_damage damage;
    const char *const one[] = {"Frank Herbert"};
    assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), 0);
    assert_int_equal(test_book_new("books/dune", "Dune", one, 1, "Chilton", &want), 0);
    assert_string_equal(b->name, "books/dune");
    assert_int_equal(b->wire_len, want->wire_len); /* the Book protobuf-c packs, to the byte */
    assert_memory_equal(b->wire, want->wire, want->wire_len);
    store_book_unref(b);
    store_book_unref(want);

    static const char *const not_books[] = {
        "projects/p/databases/(default)/documents/books_requests/dune", /* another collection */
        "projects/p/databases/(default)/documents/books/dune/x/y",      /* a subcollection's */
        "projects/q/databases/(default)/documents/books/dune",          /* another project's */
        "projects/p/databases/(default)/documents/books/",              /* no id */
    };
    for (size_t i = 0; i < sizeof not_books / sizeof not_books[0]; i++) {
        d.name = (char *)not_books[i];
        b = (struct store_book *)0x1;
        assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), BOOKS_ECORRUPT);
        assert_ptr_equal(b, (struct store_book *)0x1);
        assert_string_equal(damage.where, not_books[i]); /* the document is named */
    }
    d.name = "projects/p/databases/(default)/documents/books/dune";
    /* A field of the wrong type: named, with what it holds and what a book holds there. */
    a1.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE;
    assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), BOOKS_ECORRUPT);
    assert_string_equal(damage.where, d.name);
    assert_string_equal(damage.why, "field authors[0] is an integer, not a string");
    a1.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE;
    authors.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE;
    assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), BOOKS_ECORRUPT);
    assert_string_equal(damage.why, "field authors is an integer, not an array of a string");
    authors.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE;
    /* A REQUIRED field (books.proto's field_behavior) missing, or empty. */
    d.n_fields = 3; /* no authors */
    assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), BOOKS_ECORRUPT);
    assert_string_equal(damage.why, "the REQUIRED field authors is missing");
    d.n_fields = 4;
    title.string_value = "";
    assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), BOOKS_ECORRUPT);
    assert_string_equal(damage.why, "the REQUIRED field display_name is empty");
    title.string_value = "Dune";
    /* null is the field's default, like a field the document lacks. */
    e[0].key = "publisher";
    e[0].value = &other;
    other.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_NULL_VALUE;
    e[2].key = "not_a_field";
    assert_int_equal(fs_book_from_doc(&n, &d, &b, &damage), BOOKS_ECORRUPT);
    assert_string_equal(damage.why, "the REQUIRED field publisher is missing");
}

/* What the store writes is what it reads: a create's book document, read back as a document
 * (every field by its proto name, write_id beside them), is the same Book; and its request
 * document carries store.h's request id record. */
static void test_create_writes_round_trip(void **state)
{
    (void)state;
    struct fs_names n = names();
    snprintf(n.requests, sizeof n.requests, "books_requests");
    const char *const authors[] = {"A", "", "C \"quoted\""};
    struct store_book *b = NULL, *back = NULL;
    assert_int_equal(test_book_new("books/x", "Title", authors, 3, "Pub", &b), 0);
    struct commit_item it = {.book = b};
    snprintf(it.request_id, sizeof it.request_id, "11111111-1111-4111-8111-111111111111");
    memset(it.fingerprint, 0xab, sizeof it.fingerprint);
    memset(it.legacy_fingerprint, 0xcd, sizeof it.legacy_fingerprint);
    unsigned char buf[4096];
    struct arena a;
    arena_init(&a, buf, sizeof buf);
    struct fs_create_writes w;
    assert_int_equal(fs_build_create(&n, &it, "0123456789abcdef0123456789abcdef", 3600, &a, &w),
                     0);
    const Google__Firestore__V1__Document *doc = w.book->update;
    assert_string_equal(doc->name, "projects/p/databases/(default)/documents/books/x");
    assert_string_equal(fs_doc_string(doc, "display_name"), "Title");
    assert_string_equal(fs_doc_string(doc, "publisher"), "Pub");
    assert_string_equal(fs_doc_string(doc, "write_id"), "0123456789abcdef0123456789abcdef");
    assert_int_equal(fs_book_from_doc(&n, doc, &back, NULL), 0);
    assert_int_equal(back->wire_len, b->wire_len);
    assert_memory_equal(back->wire, b->wire, b->wire_len);
    const Google__Firestore__V1__Document *req = w.request->update;
    assert_string_equal(req->name, "projects/p/databases/(default)/documents/books_requests/"
                                   "11111111-1111-4111-8111-111111111111");
    assert_string_equal(fs_doc_string(req, "book"), "books/x");
    assert_int_equal(fs_doc_bytes(req, "request_fingerprint")->data[0], 0xab);
    assert_int_equal(fs_doc_bytes(req, "request_hash")->data[0], 0xcd);
    arena_cleanup(&a);
    store_book_unref(back);
    store_book_unref(b);
}

/* A string the Book leaves empty (an unset proto3 string, or "" in a repeated one) still goes out
 * as a Value of type string: a Value of no type is refused by Firestore ("Cannot convert
 * firestore.v1.Value with type unset"), which would fail every create of such a book. The document
 * is encoded and decoded as it travels, so what protobuf-c leaves out shows. */
static void test_empty_strings_are_encoded(void **state)
{
    (void)state;
    struct fs_names n = names();
    const char *const authors[] = {"", "B"};
    struct store_book *b = NULL;
    assert_int_equal(test_book_new("books/x", "Title", authors, 2, "", &b), 0);
    struct commit_item it = {.book = b};
    unsigned char buf[4096];
    struct arena a;
    arena_init(&a, buf, sizeof buf);
    struct fs_create_writes w;
    assert_int_equal(fs_build_create(&n, &it, "0123456789abcdef0123456789abcdef", 3600, &a, &w),
                     0);
    const Google__Firestore__V1__Document *doc = w.book->update;
    size_t len = protobuf_c_message_get_packed_size(&doc->base);
    uint8_t *wire = malloc(len);
    assert_non_null(wire);
    protobuf_c_message_pack(&doc->base, wire);
    Google__Firestore__V1__Document *back =
        google__firestore__v1__document__unpack(NULL, len, wire);
    assert_non_null(back);
    bool saw_publisher = false, saw_authors = false;
    for (size_t i = 0; i < back->n_fields; i++) {
        const Google__Firestore__V1__Value *v = back->fields[i]->value;
        if (strcmp(back->fields[i]->key, "publisher") == 0) {
            saw_publisher = true;
            assert_int_equal(v->value_type_case,
                             GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE);
            assert_string_equal(v->string_value, "");
        } else if (strcmp(back->fields[i]->key, "authors") == 0) {
            saw_authors = true;
            assert_int_equal(v->value_type_case,
                             GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE);
            assert_int_equal(v->array_value->n_values, 2);
            assert_int_equal(v->array_value->values[0]->value_type_case,
                             GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE);
        }
    }
    assert_true(saw_publisher);
    assert_true(saw_authors);
    google__firestore__v1__document__free_unpacked(back, NULL);
    free(wire);
    arena_cleanup(&a);
    store_book_unref(b);
}

/* The one retry policy (retry.c): per method the codes Google's clients retry, with the store's
 * idempotent writes going again on more; the backoff grows by 1.3 from 100 ms to 60 s, each delay
 * in the upper half of its step; no attempt is started that cannot end before the deadline. */
static void test_retry_policy(void **state)
{
    (void)state;
    static const grpc_status_code all_methods[] = {
        GRPC_STATUS_UNAVAILABLE, GRPC_STATUS_RESOURCE_EXHAUSTED, GRPC_STATUS_INTERNAL,
        GRPC_STATUS_DEADLINE_EXCEEDED};
    static const grpc_status_code never[] = {
        GRPC_STATUS_OK, GRPC_STATUS_NOT_FOUND, GRPC_STATUS_ALREADY_EXISTS,
        GRPC_STATUS_FAILED_PRECONDITION, GRPC_STATUS_PERMISSION_DENIED,
        GRPC_STATUS_UNAUTHENTICATED, GRPC_STATUS_INVALID_ARGUMENT, GRPC_STATUS_CANCELLED,
        GRPC_STATUS_DATA_LOSS};
    for (int m = 0; m < FS_N_METHODS; m++) {
        for (size_t i = 0; i < sizeof all_methods / sizeof all_methods[0]; i++)
            assert_true(fs_retry_code((enum fs_method)m, all_methods[i]));
        for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
            assert_false(fs_retry_code((enum fs_method)m, never[i]));
    }
    assert_true(fs_retry_code(FS_BATCH_WRITE, GRPC_STATUS_ABORTED));
    assert_true(fs_retry_code(FS_COMMIT, GRPC_STATUS_ABORTED));
    assert_true(fs_retry_code(FS_COMMIT, GRPC_STATUS_UNKNOWN));
    assert_false(fs_retry_code(FS_GET_DOCUMENT, GRPC_STATUS_ABORTED));
    assert_false(fs_retry_code(FS_RUN_QUERY, GRPC_STATUS_UNKNOWN));

    struct fs_backoff b;
    fs_backoff_init(&b);
    double step = 100;
    for (int i = 0; i < 40; i++) {
        uint64_t ms = fs_backoff_next_ns(&b) / 1000000u;
        uint64_t hi = (uint64_t)step, lo = hi / 2;
        assert_in_range(ms, lo, hi);
        step = step * 1.3 > 60000 ? 60000 : (double)(uint32_t)(step * 1.3);
    }
    assert_int_equal(b.next_ms, 60000);

    uint64_t now = 1000000000u;
    assert_true(fs_retry_fits(now, 100000000u, now + 200000000u));
    assert_false(fs_retry_fits(now, 100000000u, now + 110000000u)); /* 10 ms left: too little */
    assert_false(fs_retry_fits(now, 0, now));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_book_from_document),
        cmocka_unit_test(test_create_writes_round_trip),
        cmocka_unit_test(test_empty_strings_are_encoded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
