/* test_codec.c: the byte-buffer <-> message boundary and the AIP-193 error details. Garbage,
 * truncated and random bytes must come back as BOOKS_EBADMSG (or a valid message), never a crash or
 * a leak; responses must decode to what was encoded; the details blob must be a google.rpc.Status a
 * client can read. Also the one books_err -> gRPC status mapping and the per-call arena. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "books/arena.h"
#include "books/status.h"
#include "books/codec.h"
#include "books/error.h"
#include "books/v1/books.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

/* What the server applies to CreateBook: the receive limit and the API's cap on authors. */
static const struct rpc_field_limit AUTHOR_CAP[] = {{&books__v1__book__descriptor, "authors", 100}};
static const struct codec_limits LIMITS = {4 * 1024 * 1024, AUTHOR_CAP, 1};

struct fixture {
    struct arena arena;
    struct books_error err;
    unsigned char buf[512];
};

static int group_setup(void **state)
{
    (void)state;
    grpc_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    grpc_shutdown();
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    arena_init(&f->arena, f->buf, sizeof f->buf);
    books_error_init(&f->err, &f->arena);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    arena_cleanup(&f->arena);
    free(f);
    return 0;
}

/* A byte buffer over `data`, split into `parts` slices (as a message arriving in several frames). */
static grpc_byte_buffer *buffer_of(const uint8_t *data, size_t len, size_t parts)
{
    grpc_slice slices[8];
    size_t off = 0;
    if (parts < 1)
        parts = 1;
    for (size_t i = 0; i < parts; i++) {
        size_t n = i + 1 == parts ? len - off : len / parts;
        slices[i] = grpc_slice_from_copied_buffer((const char *)data + off, n);
        off += n;
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(slices, parts);
    for (size_t i = 0; i < parts; i++)
        grpc_slice_unref(slices[i]);
    return bb;
}

static size_t pack_create_request(uint8_t *out, size_t cap)
{
    char *authors[] = {"Ursula K. Le Guin", "\xe6\x9d\x91\xe4\xb8\x8a\xe6\x98\xa5\xe6\xa8\xb9"};
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    book.display_name = "The Dispossessed";
    book.n_authors = 2;
    book.authors = authors;
    book.publisher = "Harper & Row";
    req.book = &book;
    req.book_id = "the-dispossessed";
    size_t n = books__v1__create_book_request__get_packed_size(&req);
    assert_true(n <= cap);
    return books__v1__create_book_request__pack(&req, out);
}

static void test_decode_round_trip_single_and_split(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[256];
    size_t len = pack_create_request(wire, sizeof wire);
    for (size_t parts = 1; parts <= 4; parts++) {
        grpc_byte_buffer *bb = buffer_of(wire, len, parts);
        ProtobufCMessage *msg = NULL;
        assert_int_equal(
            codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err), 0);
        Books__V1__CreateBookRequest *req = (Books__V1__CreateBookRequest *)msg;
        assert_string_equal(req->book_id, "the-dispossessed");
        assert_non_null(req->book);
        assert_string_equal(req->book->display_name, "The Dispossessed");
        assert_int_equal(req->book->n_authors, 2);
        assert_string_equal(req->book->authors[1], "\xe6\x9d\x91\xe4\xb8\x8a\xe6\x98\xa5\xe6\xa8\xb9");
        codec_free_request(msg, &f->arena);
        grpc_byte_buffer_destroy(bb);
        arena_reset(&f->arena);
        books_error_clear(&f->err);
    }
}

static void test_decode_empty_and_null(void **state)
{
    struct fixture *f = *state;
    ProtobufCMessage *msg = NULL;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(NULL, 0);
    /* Zero bytes are a valid message with every field at its default. */
    assert_int_equal(codec_decode(bb, &books__v1__get_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err), 0);
    assert_string_equal(((Books__V1__GetBookRequest *)msg)->name, "");
    codec_free_request(msg, &f->arena);
    grpc_byte_buffer_destroy(bb);
    msg = NULL;
    assert_int_equal(codec_decode(NULL, &books__v1__get_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err),
                     BOOKS_EBADMSG);
    assert_null(msg);
    assert_string_equal(f->err.reason, "MALFORMED_REQUEST");
}

static void test_decode_garbage(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xff\xff\xff\xff", 4},
        {"\x0a", 1},                             /* field 1, length-delimited, no length */
        {"\x0a\x05" "ab", 4},                    /* length 5, only 2 bytes */
        {"\x0a\xff\xff\xff\xff\x0f", 6},         /* length 4 GiB */
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* varint too long */
        {"\x0f", 1},                             /* wire type 7 does not exist */
        {"\x00", 1},                             /* field number 0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ProtobufCMessage *msg = NULL;
        grpc_byte_buffer *bb = buffer_of((const uint8_t *)cases[i].bytes, cases[i].len, 1);
        assert_int_equal(
            codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err),
            BOOKS_EBADMSG);
        assert_null(msg);
        assert_string_equal(f->err.reason, "MALFORMED_REQUEST");
        assert_int_equal(f->err.code, BOOKS_EBADMSG);
        grpc_byte_buffer_destroy(bb);
        arena_reset(&f->arena);
        books_error_clear(&f->err);
    }
}

static void test_decode_every_truncation(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[256];
    size_t len = pack_create_request(wire, sizeof wire), bad = 0;
    for (size_t cut = 1; cut < len; cut++) {
        ProtobufCMessage *msg = NULL;
        grpc_byte_buffer *bb = buffer_of(wire, cut, 1 + cut % 3);
        int rc = codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err);
        assert_true(rc == 0 || rc == BOOKS_EBADMSG || rc == BOOKS_EINVAL);
        if (rc == 0)
            codec_free_request(msg, &f->arena);
        else
            bad++;
        grpc_byte_buffer_destroy(bb);
        arena_reset(&f->arena);
        books_error_clear(&f->err);
    }
    /* Cutting inside the nested book or a string can never parse. */
    assert_true(bad > len / 2);
}

static void test_decode_random_bytes(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[300];
    unsigned seed = 12345;
    const ProtobufCMessageDescriptor *descs[] = {&books__v1__create_book_request__descriptor,
                                                 &books__v1__list_books_request__descriptor,
                                                 &books__v1__get_book_request__descriptor};
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof wire);
        for (size_t i = 0; i < len; i++)
            wire[i] = (uint8_t)rand_r(&seed);
        /* Half the time start from a valid message and flip a few bytes. */
        if (iter % 2) {
            len = pack_create_request(wire, sizeof wire);
            for (int k = 0; k < 3; k++)
                wire[rand_r(&seed) % (int)len] ^= (uint8_t)(1 + rand_r(&seed) % 255);
        }
        ProtobufCMessage *msg = NULL;
        grpc_byte_buffer *bb = buffer_of(wire, len, 1 + (size_t)iter % 3);
        int rc = codec_decode(bb, descs[iter % 3], &LIMITS, &f->arena, &msg, &f->err);
        assert_true(rc == 0 || rc == BOOKS_EBADMSG || rc == BOOKS_EINVAL);
        if (rc == 0)
            codec_free_request(msg, &f->arena);
        grpc_byte_buffer_destroy(bb);
        arena_reset(&f->arena);
        books_error_clear(&f->err);
    }
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    char *authors[] = {"A", "B"};
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    book.name = "books/b0042";
    book.display_name = "Book 0042";
    book.n_authors = 2;
    book.authors = authors;
    book.publisher = "Publisher 2";
    grpc_byte_buffer *bb = NULL;
    codec_encode(&book.base, &bb);
    assert_int_equal(grpc_byte_buffer_length(bb), books__v1__book__get_packed_size(&book));

    struct arena a;
    struct books_error err;
    unsigned char buf[256];
    arena_init(&a, buf, sizeof buf);
    books_error_init(&err, &a);
    ProtobufCMessage *msg = NULL;
    assert_int_equal(codec_decode(bb, &books__v1__book__descriptor, &LIMITS, &a, &msg, &err), 0);
    Books__V1__Book *back = (Books__V1__Book *)msg;
    assert_string_equal(back->name, "books/b0042");
    assert_string_equal(back->authors[1], "B");
    codec_free_request(msg, &a);
    arena_cleanup(&a);
    grpc_byte_buffer_destroy(bb);
}

/* codec_embedded_write: already-encoded parts give the bytes packing the whole message gives. */
static void test_embedded_parts_match_packing(void **state)
{
    (void)state;
    char *a1[] = {"A"}, *a2[] = {"B", "C"};
    Books__V1__Book b1 = BOOKS__V1__BOOK__INIT, b2 = BOOKS__V1__BOOK__INIT;
    Books__V1__Book *list[] = {&b1, &b2};
    Books__V1__ListBooksResponse resp = BOOKS__V1__LIST_BOOKS_RESPONSE__INIT;
    uint8_t w1[128], w2[128], whole[512], got[512];
    struct codec_bytes parts[2];
    const ProtobufCFieldDescriptor *books = protobuf_c_message_descriptor_get_field_by_name(
        &books__v1__list_books_response__descriptor, "books");
    const ProtobufCFieldDescriptor *token = protobuf_c_message_descriptor_get_field_by_name(
        &books__v1__list_books_response__descriptor, "next_page_token");

    b1.name = "books/one";
    b1.display_name = "One";
    b1.n_authors = 1;
    b1.authors = a1;
    b1.publisher = "P";
    b2.name = "books/two";
    b2.display_name = "Two \xc3\xa9";
    b2.n_authors = 2;
    b2.authors = a2;
    b2.publisher = "";
    parts[0] = (struct codec_bytes){w1, codec_pack(&b1.base, w1)};
    parts[1] = (struct codec_bytes){w2, codec_pack(&b2.base, w2)};
    assert_int_equal(parts[0].len, codec_pack(&b1.base, NULL));
    resp.n_books = 2;
    resp.books = list;
    resp.next_page_token = "tok";
    size_t n = codec_pack(&resp.base, whole);

    /* the repeated field from parts, then the rest of the message */
    assert_int_equal(codec_embedded_write(&resp.base, books->id, parts, 2, NULL), n);
    assert_int_equal(codec_embedded_write(&resp.base, books->id, parts, 2, got), n);
    assert_memory_equal(got, whole, n);
    assert_int_equal(resp.n_books, 2); /* the message itself is not touched */

    /* field 0: the message is the parts themselves (GetBook's Book) */
    assert_int_equal(codec_embedded_write(NULL, 0, parts, 1, got), parts[0].len);
    assert_memory_equal(got, w1, parts[0].len);

    /* not a repeated message field: packed whole, parts ignored */
    assert_int_equal(codec_embedded_write(&resp.base, token->id, parts, 2, got), n);
    assert_memory_equal(got, whole, n);
    assert_int_equal(codec_embedded_write(&resp.base, 99, parts, 2, got), n);

    /* and through a byte buffer, as the server sends it */
    grpc_byte_buffer *bb = NULL;
    codec_encode_embedded(&resp.base, books->id, parts, 2, &bb);
    assert_int_equal(grpc_byte_buffer_length(bb), n);
    grpc_byte_buffer_destroy(bb);
}

static Google__Rpc__Status *decode_details(grpc_slice s)
{
    Google__Rpc__Status *st =
        google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    assert_non_null(st);
    return st;
}

static void test_status_details_field_violations(void **state)
{
    (void)state;
    struct books_error e;
    grpc_slice s;
    books_error_init(&e, NULL);
    books_error_add_violation(&e, "book.display_name", "required: the book's title");
    books_error_add_violation(&e, "book.authors[2]", "must not be empty");
    books_error_set(&e, BOOKS_EINVAL, "FIELD_VIOLATION", "invalid CreateBook request: %d fields", 2);
    assert_int_equal(codec_encode_status_details(&e, &s), 0);

    Google__Rpc__Status *st = decode_details(s);
    assert_int_equal(st->code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(st->message, "invalid CreateBook request: 2 fields");
    assert_int_equal(st->n_details, 2);
    assert_string_equal(st->details[0]->type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    Google__Rpc__ErrorInfo *info = google__rpc__error_info__unpack(
        NULL, st->details[0]->value.len, st->details[0]->value.data);
    assert_non_null(info);
    assert_string_equal(info->reason, "FIELD_VIOLATION");
    assert_string_equal(info->domain, BOOKS_ERROR_DOMAIN);
    assert_int_equal(info->n_metadata, 0);
    assert_string_equal(st->details[1]->type_url, "type.googleapis.com/google.rpc.BadRequest");
    Google__Rpc__BadRequest *bad = google__rpc__bad_request__unpack(
        NULL, st->details[1]->value.len, st->details[1]->value.data);
    assert_non_null(bad);
    assert_int_equal(bad->n_field_violations, 2);
    assert_string_equal(bad->field_violations[0]->field, "book.display_name");
    assert_string_equal(bad->field_violations[1]->field, "book.authors[2]");
    assert_string_equal(bad->field_violations[1]->description, "must not be empty");
    google__rpc__bad_request__free_unpacked(bad, NULL);
    google__rpc__error_info__free_unpacked(info, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    grpc_slice_unref(s);
}

static void test_status_details_not_found(void **state)
{
    (void)state;
    struct books_error e;
    grpc_slice s;
    books_error_init(&e, NULL);
    books_error_set(&e, BOOKS_ENOTFOUND, "BOOK_NOT_FOUND", "book \"books/x\" does not exist");
    books_error_set_meta(&e, "name", "books/x");
    books_error_set_resource(&e, "books.example.com/Book", "books/x");
    assert_int_equal(codec_encode_status_details(&e, &s), 0);
    Google__Rpc__Status *st = decode_details(s);
    assert_int_equal(st->code, GRPC_STATUS_NOT_FOUND);
    assert_int_equal(st->n_details, 2);
    Google__Rpc__ErrorInfo *info = google__rpc__error_info__unpack(
        NULL, st->details[0]->value.len, st->details[0]->value.data);
    assert_int_equal(info->n_metadata, 1);
    assert_string_equal(info->metadata[0]->key, "name");
    assert_string_equal(info->metadata[0]->value, "books/x");
    assert_string_equal(st->details[1]->type_url, "type.googleapis.com/google.rpc.ResourceInfo");
    Google__Rpc__ResourceInfo *ri = google__rpc__resource_info__unpack(
        NULL, st->details[1]->value.len, st->details[1]->value.data);
    assert_string_equal(ri->resource_type, "books.example.com/Book");
    assert_string_equal(ri->resource_name, "books/x");
    google__rpc__resource_info__free_unpacked(ri, NULL);
    google__rpc__error_info__free_unpacked(info, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    grpc_slice_unref(s);
}


/* A retryable error tells the caller how long to wait (google.rpc.RetryInfo, AIP-193/194), in
 * seconds and nanoseconds of a Duration; without a delay none is sent. */
static void test_status_details_retry_info(void **state)
{
    (void)state;
    struct books_error e;
    grpc_slice s;
    books_error_init(&e, NULL);
    books_error_set(&e, BOOKS_ETHROTTLED, "STORE_THROTTLED", "throttled");
    books_error_set_retry(&e, 1250);
    assert_int_equal(codec_encode_status_details(&e, &s), 0);
    Google__Rpc__Status *st = decode_details(s);
    assert_int_equal(st->code, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(st->n_details, 2);
    assert_string_equal(st->details[1]->type_url, "type.googleapis.com/google.rpc.RetryInfo");
    Google__Rpc__RetryInfo *ri = google__rpc__retry_info__unpack(
        NULL, st->details[1]->value.len, st->details[1]->value.data);
    assert_non_null(ri);
    assert_non_null(ri->retry_delay);
    assert_int_equal(ri->retry_delay->seconds, 1);
    assert_int_equal(ri->retry_delay->nanos, 250000000);
    google__rpc__retry_info__free_unpacked(ri, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    grpc_slice_unref(s);

    books_error_clear(&e);
    books_error_set(&e, BOOKS_EREFUSED, "STORE_REFUSED", "refused");
    assert_int_equal(codec_encode_status_details(&e, &s), 0);
    st = decode_details(s);
    assert_int_equal(st->n_details, 1);
    google__rpc__status__free_unpacked(st, NULL);
    grpc_slice_unref(s);
}

/* Packs a CreateBookRequest with the given (possibly hostile) strings; lengths are explicit so
 * embedded NULs survive. Returns the packed length. */
static size_t pack_raw_create(uint8_t *out, const char *title, size_t title_len, const char *author1,
                              size_t author1_len, const char *id, size_t id_len)
{
    /* Hand-encoded: protobuf-c's own packer would stop at the NUL. */
    uint8_t book[256];
    size_t b = 0, n = 0;
    book[b++] = 0x12; /* display_name */
    book[b++] = (uint8_t)title_len;
    memcpy(book + b, title, title_len);
    b += title_len;
    book[b++] = 0x1a; /* authors[0] */
    book[b++] = 2;
    memcpy(book + b, "ok", 2);
    b += 2;
    book[b++] = 0x1a; /* authors[1] */
    book[b++] = (uint8_t)author1_len;
    memcpy(book + b, author1, author1_len);
    b += author1_len;
    out[n++] = 0x0a; /* book */
    out[n++] = (uint8_t)b;
    memcpy(out + n, book, b);
    n += b;
    out[n++] = 0x12; /* book_id */
    out[n++] = (uint8_t)id_len;
    memcpy(out + n, id, id_len);
    return n + id_len;
}

static void test_decode_rejects_nul_and_bad_utf8_with_paths(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[512];
    size_t len = pack_raw_create(wire, "be\0fore", 7, "Au\xff", 3, "abc\0def", 7);
    grpc_byte_buffer *bb = buffer_of(wire, len, 2);
    ProtobufCMessage *msg = NULL;
    assert_int_equal(
        codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err),
        BOOKS_EINVAL);
    assert_null(msg);
    assert_string_equal(f->err.reason, "FIELD_VIOLATION");
    assert_int_equal(f->err.n_violations, 3);
    assert_string_equal(f->err.violations[0].field, "book.display_name");
    assert_non_null(strstr(f->err.violations[0].description, "NUL"));
    assert_string_equal(f->err.violations[1].field, "book.authors[1]");
    assert_non_null(strstr(f->err.violations[1].description, "UTF-8"));
    assert_string_equal(f->err.violations[2].field, "book_id");
    assert_non_null(strstr(f->err.message, "book.authors[1]"));
    grpc_byte_buffer_destroy(bb);
}

static void test_decode_accepts_valid_utf8(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[512];
    /* 4-byte emoji, CJK, combining mark: all fine. */
    const char *title = "\xf0\x9f\x90\x89 \xe6\x9d\x91 e\xcc\x81";
    size_t len = pack_raw_create(wire, title, strlen(title), "\xd7\xa9\xd7\x9c", 4, "x", 1);
    grpc_byte_buffer *bb = buffer_of(wire, len, 1);
    ProtobufCMessage *msg = NULL;
    assert_int_equal(
        codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS, &f->arena, &msg, &f->err), 0);
    assert_string_equal(((Books__V1__CreateBookRequest *)msg)->book->display_name, title);
    codec_free_request(msg, &f->arena);
    grpc_byte_buffer_destroy(bb);
}

static void test_violations_are_capped(void **state)
{
    struct fixture *f = *state;
    char field[32];
    for (int i = 0; i < 103; i++) {
        snprintf(field, sizeof field, "book.authors[%d]", i);
        books_error_add_violation(&f->err, field, "must not be empty");
    }
    /* The first BOOKS_ERROR_MAX_VIOLATIONS are kept (grown in the arena), the rest counted. */
    assert_int_equal(f->err.n_violations, BOOKS_ERROR_MAX_VIOLATIONS);
    assert_int_equal(f->err.n_dropped, 103 - BOOKS_ERROR_MAX_VIOLATIONS);
    assert_string_equal(f->err.violations[31].field, "book.authors[31]");
    books_error_finish_fields(&f->err, "CreateBookRequest");
    /* The message lists what fits and says how many are in the details and how many were left
     * out. */
    assert_non_null(strstr(f->err.message, "in the BadRequest details, 71 not reported"));
    grpc_slice s;
    assert_int_equal(codec_encode_status_details(&f->err, &s), 0);
    Google__Rpc__Status *st =
        google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    Google__Rpc__BadRequest *bad = google__rpc__bad_request__unpack(
        NULL, st->details[1]->value.len, st->details[1]->value.data);
    assert_int_equal(bad->n_field_violations, BOOKS_ERROR_MAX_VIOLATIONS);
    google__rpc__bad_request__free_unpacked(bad, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    grpc_slice_unref(s);
}

/* The worst case: as many violations as fit, each with the longest field and description, and the
 * longest message. The trailer a client receives (grpc-message plus grpc-status-details-bin,
 * base64) must stay under the 8 KiB of metadata a default gRPC client accepts. */
static void test_violation_details_fit_a_default_client(void **state)
{
    struct fixture *f = *state;
    char field[BOOKS_ERROR_FIELD_BYTES], desc[BOOKS_ERROR_DESCRIPTION_BYTES];
    memset(field, 'f', sizeof field - 1);
    field[sizeof field - 1] = '\0';
    memset(desc, 'd', sizeof desc - 1);
    desc[sizeof desc - 1] = '\0';
    for (int i = 0; i < 100; i++)
        books_error_add_violation(&f->err, field, "%s", desc);
    assert_true(f->err.n_violations < BOOKS_ERROR_MAX_VIOLATIONS);
    assert_int_equal(f->err.n_violations + f->err.n_dropped, 100);
    assert_true(f->err.violation_bytes <= BOOKS_ERROR_MAX_VIOLATION_BYTES);
    books_error_finish_fields(&f->err, "CreateBookRequest");
    assert_true(strlen(f->err.message) < BOOKS_ERROR_MESSAGE_BYTES);
    grpc_slice s;
    assert_int_equal(codec_encode_status_details(&f->err, &s), 0);
    size_t details = GRPC_SLICE_LENGTH(s), base64 = (details + 2) / 3 * 4;
    /* grpc-status, grpc-message and grpc-status-details-bin, each counted as name + value + 32
     * (RFC 7541 section 4.1, as gRPC counts metadata size). */
    size_t trailer = (11 + 2 + 32) + (12 + BOOKS_ERROR_MESSAGE_BYTES + 32) + (23 + base64 + 32);
    assert_true(trailer < 8192);
    grpc_slice_unref(s);
}

static void test_violations_without_arena_are_counted(void **state)
{
    (void)state;
    struct books_error e;
    books_error_init(&e, NULL);
    for (int i = 0; i < BOOKS_ERROR_INLINE_VIOLATIONS + 3; i++)
        books_error_add_violation(&e, "f", "bad %d", i);
    assert_int_equal(e.n_violations, BOOKS_ERROR_INLINE_VIOLATIONS);
    assert_int_equal(e.n_dropped, 3);
}

static void test_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(rpc_status_of(0), GRPC_STATUS_OK);
    assert_int_equal(rpc_status_of(BOOKS_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_of(BOOKS_EBADMSG), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_of(BOOKS_ENOTFOUND), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(rpc_status_of(BOOKS_EEXIST), GRPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(rpc_status_of(BOOKS_ENOMEM), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rpc_status_of(BOOKS_ENOSPC), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rpc_status_of(BOOKS_EIO), GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_of(BOOKS_EUNAVAIL), GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_of(BOOKS_EUNIMPL), GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(rpc_status_of(BOOKS_EDEADLINE), GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_int_equal(rpc_status_of(BOOKS_ECORRUPT), GRPC_STATUS_DATA_LOSS);
    assert_int_equal(rpc_status_of(BOOKS_EINTERNAL), GRPC_STATUS_INTERNAL);
    assert_int_equal(rpc_status_of(-999), GRPC_STATUS_INTERNAL);
    assert_string_equal(rpc_status_name(GRPC_STATUS_NOT_FOUND), "NOT_FOUND");
    assert_string_equal(rpc_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(rpc_status_name((grpc_status_code)99), "UNKNOWN");
}

static void test_error_quote(void **state)
{
    (void)state;
    char q[64];
    assert_string_equal(books_error_quote(q, sizeof q, "books/a\"b"), "books/a\"b");
    assert_string_equal(books_error_quote(q, sizeof q, "a\nb\xff"), "a?b?");
    assert_string_equal(
        books_error_quote(q, sizeof q, "0123456789012345678901234567890123456789012345678901234"),
        "012345678901234567890123456789012345678901234567...");
}

static void test_arena(void **state)
{
    struct fixture *f = *state;
    void *p[200];
    for (int i = 0; i < 200; i++) {
        p[i] = arena_alloc(&f->arena, (size_t)(i * 13 % 97 + 1));
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % alignof(max_align_t), 0);
        memset(p[i], 0xab, (size_t)(i * 13 % 97 + 1));
    }
    void *big = arena_alloc(&f->arena, 1 << 20);
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    char *s = arena_strndup(&f->arena, "hello world", 5);
    assert_string_equal(s, "hello");
    assert_null(arena_alloc(&f->arena, SIZE_MAX - 8));
    arena_reset(&f->arena);
    assert_int_equal(f->arena.used, 0);
    assert_null(f->arena.chunks);
}

/* Packs a google.rpc.Status whose details are the given (type_url, packed message) pairs. */
static grpc_slice status_with(const char *const *type_urls, const ProtobufCMessage *const *msgs,
                              size_t n)
{
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    Google__Protobuf__Any any[4], *list[4];
    uint8_t bufs[4][256];
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++) {
        google__protobuf__any__init(&any[i]);
        any[i].type_url = (char *)type_urls[i];
        any[i].value.len = protobuf_c_message_pack(msgs[i], bufs[i]);
        any[i].value.data = bufs[i];
        list[i] = &any[i];
    }
    st.code = GRPC_STATUS_INVALID_ARGUMENT;
    st.message = "m";
    st.n_details = n;
    st.details = list;
    grpc_slice s = grpc_slice_malloc(google__rpc__status__get_packed_size(&st));
    google__rpc__status__pack(&st, GRPC_SLICE_START_PTR(s));
    return s;
}

static void assert_error_empty(const struct books_error *e)
{
    assert_null(e->reason);
    assert_null(e->meta_key);
    assert_null(e->resource_type);
    assert_int_equal(e->n_violations, 0);
}

static void test_status_details_decode_round_trip(void **state)
{
    struct fixture *f = *state;
    struct books_error sent;
    char field[32];
    grpc_slice s;
    books_error_init(&sent, &f->arena);
    /* More violations than fit inline, so decoding has to grow them in the arena too. */
    for (int i = 0; i < BOOKS_ERROR_INLINE_VIOLATIONS + 3; i++) {
        snprintf(field, sizeof field, "book.authors[%d]", i);
        books_error_add_violation(&sent, field, "author %d: must not be empty", i);
    }
    books_error_finish_fields(&sent, "CreateBookRequest");
    books_error_set_meta(&sent, "name", "books/\xe6\x97\xa5");
    books_error_set_resource(&sent, "books.example.com/Book", "books/\xe6\x97\xa5");
    assert_int_equal(codec_encode_status_details(&sent, &s), 0);

    assert_int_equal(codec_decode_status_details(&s, &f->err), 0);
    assert_int_equal(f->err.code, 0); /* the call's status, not the codec's business */
    assert_string_equal(f->err.message, "");
    assert_string_equal(f->err.reason, "FIELD_VIOLATION");
    assert_string_equal(f->err.meta_key, "name");
    assert_string_equal(f->err.meta_value, "books/\xe6\x97\xa5");
    assert_string_equal(f->err.resource_type, "books.example.com/Book");
    assert_string_equal(f->err.resource_name, "books/\xe6\x97\xa5");
    assert_int_equal(f->err.n_violations, sent.n_violations);
    assert_int_equal(f->err.n_dropped, 0);
    for (size_t i = 0; i < sent.n_violations; i++) {
        assert_string_equal(f->err.violations[i].field, sent.violations[i].field);
        assert_string_equal(f->err.violations[i].description, sent.violations[i].description);
    }
    grpc_slice_unref(s);
}

static void test_status_details_decode_not_found(void **state)
{
    struct fixture *f = *state;
    struct books_error sent;
    grpc_slice s;
    books_error_init(&sent, NULL);
    books_error_set(&sent, BOOKS_ENOTFOUND, "BOOK_NOT_FOUND", "book \"books/x\" does not exist");
    assert_int_equal(codec_encode_status_details(&sent, &s), 0);
    assert_int_equal(codec_decode_status_details(&s, &f->err), 0);
    assert_string_equal(f->err.reason, "BOOK_NOT_FOUND");
    assert_null(f->err.meta_key);
    assert_null(f->err.resource_type);
    assert_int_equal(f->err.n_violations, 0);
    grpc_slice_unref(s);

    /* An empty blob is a valid Status with no details: nothing to fill. */
    s = grpc_empty_slice();
    assert_int_equal(codec_decode_status_details(&s, &f->err), 0);
}

static void test_status_details_decode_skips_foreign_details(void **state)
{
    struct fixture *f = *state;
    Google__Rpc__ErrorInfo foreign = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__ErrorInfo ours = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__RetryInfo retry = GOOGLE__RPC__RETRY_INFO__INIT;
    foreign.reason = "RATE_LIMITED";
    foreign.domain = "googleapis.com";
    ours.reason = "BOOK_NOT_FOUND";
    ours.domain = BOOKS_ERROR_DOMAIN;
    const char *urls[] = {"type.googleapis.com/google.rpc.ErrorInfo",
                          "type.googleapis.com/google.rpc.RetryInfo",
                          "example.com/google.rpc.ErrorInfo"};
    const ProtobufCMessage *msgs[] = {&foreign.base, &retry.base, &ours.base};
    grpc_slice s = status_with(urls, msgs, 3);
    assert_int_equal(codec_decode_status_details(&s, &f->err), 0);
    assert_string_equal(f->err.reason, "BOOK_NOT_FOUND");
    grpc_slice_unref(s);
}

static void test_status_details_decode_garbage(void **state)
{
    struct fixture *f = *state;
    static const uint8_t garbage[][6] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* a varint that never ends */
        {0x1a, 0x7f, 0x00, 0x00, 0x00, 0x00}, /* details: length past the end */
        {0x0b, 0x00, 0x00, 0x00, 0x00, 0x00}, /* a group start tag */
    };
    grpc_slice s;
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        s = grpc_slice_from_copied_buffer((const char *)garbage[i], sizeof garbage[i]);
        assert_int_equal(codec_decode_status_details(&s, &f->err), BOOKS_EBADMSG);
        assert_error_empty(&f->err);
        grpc_slice_unref(s);
    }

    /* A well-formed Status whose BadRequest detail is not a BadRequest: rejected as a whole, even
     * though the ErrorInfo before it was fine. */
    Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__Status inner = GOOGLE__RPC__STATUS__INIT;
    info.reason = "FIELD_VIOLATION";
    info.domain = BOOKS_ERROR_DOMAIN;
    const char *urls[] = {"type.googleapis.com/google.rpc.ErrorInfo",
                          "type.googleapis.com/google.rpc.BadRequest"};
    const ProtobufCMessage *msgs[] = {&info.base, &inner.base};
    inner.code = 3; /* field 1 as a varint, where a BadRequest has a message */
    s = status_with(urls, msgs, 2);
    assert_int_equal(codec_decode_status_details(&s, &f->err), BOOKS_EBADMSG);
    assert_error_empty(&f->err);
    grpc_slice_unref(s);

    /* Every prefix of a real blob, and random bytes: an error code or a result, never a crash (run
     * under valgrind or ASan to see a leak on either path). */
    struct books_error sent;
    books_error_init(&sent, NULL);
    books_error_add_violation(&sent, "book.publisher", "required");
    books_error_set(&sent, BOOKS_EINVAL, "FIELD_VIOLATION", "bad");
    books_error_set_resource(&sent, "books.example.com/Book", "books/x");
    grpc_slice full;
    assert_int_equal(codec_encode_status_details(&sent, &full), 0);
    for (size_t n = 0; n < GRPC_SLICE_LENGTH(full); n++) {
        s = grpc_slice_from_copied_buffer((const char *)GRPC_SLICE_START_PTR(full), n);
        books_error_clear(&f->err);
        int rc = codec_decode_status_details(&s, &f->err);
        assert_true(rc == 0 || rc == BOOKS_EBADMSG);
        if (rc)
            assert_error_empty(&f->err);
        grpc_slice_unref(s);
    }
    grpc_slice_unref(full);
    srand(7);
    for (int round = 0; round < 2000; round++) {
        uint8_t bytes[64];
        size_t n = (size_t)(rand() % (int)sizeof bytes);
        for (size_t i = 0; i < n; i++)
            bytes[i] = (uint8_t)rand();
        s = grpc_slice_from_copied_buffer((const char *)bytes, n);
        books_error_clear(&f->err);
        int rc = codec_decode_status_details(&s, &f->err);
        assert_true(rc == 0 || rc == BOOKS_EBADMSG);
        grpc_slice_unref(s);
        arena_reset(&f->arena);
    }
}

static void test_status_details_decode_needs_an_arena(void **state)
{
    (void)state;
    struct books_error e;
    grpc_slice s = grpc_empty_slice();
    books_error_init(&e, NULL);
    assert_int_equal(codec_decode_status_details(&s, &e), BOOKS_EINVAL);
}

/* A CreateBookRequest whose book carries `n` empty authors (2 bytes each on the wire), into a
 * malloc'ed buffer; *len gets its size. */
static uint8_t *pack_many_authors(size_t n, size_t *len)
{
    size_t book_len = 2 * n, cap = book_len + 16, off = 0;
    uint8_t *w = malloc(cap);
    assert_non_null(w);
    w[off++] = 0x0a; /* book, length-delimited */
    for (size_t v = book_len; ; v >>= 7) { /* varint */
        w[off++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    for (size_t i = 0; i < n; i++) {
        w[off++] = 0x1a; /* authors (field 3), length 0 */
        w[off++] = 0x00;
    }
    *len = off;
    return w;
}

static void test_repeated_cap_refused_before_decoding(void **state)
{
    struct fixture *f = *state;
    size_t len;
    uint8_t *wire = pack_many_authors(1300000, &len); /* the 2.6 MB request of issue 8 */
    grpc_byte_buffer *bb = buffer_of(wire, len, 3);
    ProtobufCMessage *msg = NULL;
    assert_int_equal(codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS,
                                  &f->arena, &msg, &f->err),
                     BOOKS_EINVAL);
    assert_null(msg);
    assert_string_equal(f->err.reason, "FIELD_VIOLATION");
    assert_int_equal(f->err.n_violations, 1);
    assert_string_equal(f->err.violations[0].field, "book.authors");
    assert_non_null(strstr(f->err.message, "at most 100"));
    /* Nothing was unpacked: the arena never needed a heap chunk. */
    assert_null(f->arena.chunks);
    grpc_byte_buffer_destroy(bb);
    free(wire);

    /* Exactly at the cap is fine (the service then checks each entry). */
    wire = pack_many_authors(100, &len);
    bb = buffer_of(wire, len, 1);
    books_error_clear(&f->err);
    assert_int_equal(codec_decode(bb, &books__v1__create_book_request__descriptor, &LIMITS,
                                  &f->arena, &msg, &f->err),
                     0);
    assert_int_equal(((Books__V1__CreateBookRequest *)msg)->book->n_authors, 100);
    codec_free_request(msg, &f->arena);
    grpc_byte_buffer_destroy(bb);
    free(wire);
}

static void test_field_count_cap(void **state)
{
    struct fixture *f = *state;
    /* GetBookRequest with 1024 and 1025 occurrences of an unknown varint field 15 (key 0x78). */
    uint8_t wire[2 * (CODEC_MAX_FIELDS_PER_MESSAGE + 1)];
    for (size_t i = 0; i < CODEC_MAX_FIELDS_PER_MESSAGE + 1; i++) {
        wire[2 * i] = 0x78;
        wire[2 * i + 1] = 0x01;
    }
    ProtobufCMessage *msg = NULL;
    assert_int_equal(codec_decode_bytes(wire, 2 * CODEC_MAX_FIELDS_PER_MESSAGE,
                                        &books__v1__get_book_request__descriptor, &LIMITS,
                                        &f->arena, &msg, &f->err),
                     0);
    codec_free_request(msg, &f->arena);
    msg = NULL;
    assert_int_equal(codec_decode_bytes(wire, sizeof wire, &books__v1__get_book_request__descriptor,
                                        &LIMITS, &f->arena, &msg, &f->err),
                     BOOKS_EINVAL);
    assert_null(msg);
    assert_string_equal(f->err.reason, "MALFORMED_REQUEST");
    assert_non_null(strstr(f->err.message, "more than 1024 fields"));
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)((v & 0x7f) | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* A CreateBookRequest padded with fields this API does not have (a 1 MiB string at the top, a
 * 512 KiB one and a varint inside `book`, a fixed64 between known fields) decodes to exactly the
 * request without them, and the decoded request holds none of their bytes: a create that waits in
 * a queue must not keep megabytes a client added for nothing. */
static void test_unknown_fields_are_not_kept(void **state)
{
    struct fixture *f = *state;
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    char *authors[] = {"Ann", "Bo"};
    book.display_name = "Padded";
    book.n_authors = 2;
    book.authors = authors;
    book.publisher = "P";
    size_t known = protobuf_c_message_get_packed_size(&book.base);
    enum { TOP = 1u << 20, INNER = 1u << 19 };
    /* book (field 1) = its known bytes + field 99 (string, INNER bytes) + field 98 (varint);
     * then field 100 (string, TOP bytes), then field 101 (fixed64), then book_id (field 2). */
    size_t cap = known + INNER + TOP + 256;
    uint8_t *wire = malloc(cap), *p = wire;
    size_t inner_len = known + 2 + 3 + INNER + 2 + 2;
    *p++ = 0x0a; /* field 1 (book), length-delimited */
    p = put_varint(p, inner_len);
    uint8_t *inner = p;
    p += protobuf_c_message_pack(&book.base, p);
    *p++ = 0x9a; *p++ = 0x06; /* field 99, wire type 2 */
    *p++ = 0x80; *p++ = 0x80; *p++ = 0x20; /* INNER = 2^19 */
    memset(p, 'x', INNER);
    p += INNER;
    *p++ = 0x90; *p++ = 0x06; /* field 98, varint */
    *p++ = 0xff; *p++ = 0x01;
    assert_int_equal((size_t)(p - inner), inner_len);
    *p++ = 0xa2; *p++ = 0x06; /* field 100, wire type 2 */
    *p++ = 0x80; *p++ = 0x80; *p++ = 0x40; /* TOP = 2^20 */
    memset(p, 'y', TOP);
    p += TOP;
    *p++ = 0xa9; *p++ = 0x06; /* field 101, fixed64 */
    memset(p, 0x11, 8);
    p += 8;
    *p++ = 0x12; /* field 2: book_id "padded" */
    *p++ = 6;
    memcpy(p, "padded", 6);
    p += 6;
    assert_true((size_t)(p - wire) <= cap);

    ProtobufCMessage *msg = NULL;
    int rc = codec_decode_bytes(wire, (size_t)(p - wire), &books__v1__create_book_request__descriptor,
                                &LIMITS, &f->arena, &msg, &f->err);
    if (rc)
        fail_msg("decode: %s: %s", f->err.reason, f->err.message);
    const Books__V1__CreateBookRequest *got = (const Books__V1__CreateBookRequest *)msg;
    assert_string_equal(got->book_id, "padded");
    assert_string_equal(got->book->display_name, "Padded");
    assert_int_equal(got->book->n_authors, 2);
    assert_string_equal(got->book->authors[1], "Bo");
    assert_int_equal(got->base.n_unknown_fields, 0);
    assert_int_equal(got->book->base.n_unknown_fields, 0);
    /* What the decoded request holds: far less than the 1.5 MiB of padding. */
    assert_true(arena_heap_bytes(&f->arena) < 64 * 1024);
    codec_free_request(msg, &f->arena);
    free(wire);
}

/* `len` bytes at `data`, compressed as gRPC's gzip (window bits 31) or deflate (15), as one byte
 * buffer of `parts` slices marked with that algorithm. */
static grpc_byte_buffer *compressed_of(const uint8_t *data, size_t len, bool gzip, size_t parts)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, gzip ? 31 : 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len);
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    grpc_slice slices[4];
    size_t off = 0;
    for (size_t i = 0; i < parts; i++) {
        size_t k = i + 1 == parts ? n - off : n / parts;
        slices[i] = grpc_slice_from_copied_buffer((const char *)out + off, k);
        off += k;
    }
    grpc_byte_buffer *bb = grpc_raw_compressed_byte_buffer_create(
        slices, parts, gzip ? GRPC_COMPRESS_GZIP : GRPC_COMPRESS_DEFLATE);
    for (size_t i = 0; i < parts; i++)
        grpc_slice_unref(slices[i]);
    free(out);
    return bb;
}

static void test_compressed_requests(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[256];
    size_t len = pack_create_request(wire, sizeof wire);
    for (int gzip = 0; gzip <= 1; gzip++)
        for (size_t parts = 1; parts <= 3; parts++) {
            grpc_byte_buffer *bb = compressed_of(wire, len, gzip, parts);
            ProtobufCMessage *msg = NULL;
            assert_int_equal(codec_decode(bb, &books__v1__create_book_request__descriptor,
                                          &LIMITS, &f->arena, &msg, &f->err),
                             0);
            assert_string_equal(((Books__V1__CreateBookRequest *)msg)->book_id,
                                "the-dispossessed");
            codec_free_request(msg, &f->arena);
            grpc_byte_buffer_destroy(bb);
        }
}

static void test_compression_bomb_stops_at_the_limit(void **state)
{
    struct fixture *f = *state;
    /* A GetBookRequest whose name is 64 MiB of 'a' (about 64 KiB compressed), and one exactly at
     * a 1 MiB limit and one byte past it. */
    const size_t big = 64u << 20;
    uint8_t *msg_bytes = malloc(big + 16);
    assert_non_null(msg_bytes);
    for (int gzip = 0; gzip <= 1; gzip++) {
        static const struct codec_limits one_mib = {1u << 20, NULL, 0};
        struct {
            size_t total; /* encoded message size */
            const struct codec_limits *limits;
            int rc;
        } cases[] = {
            {big, &LIMITS, BOOKS_E2BIG},
            {1u << 20, &one_mib, 0},
            {(1u << 20) + 1, &one_mib, BOOKS_E2BIG},
        };
        for (size_t c = 0; c < 3; c++) {
            /* name: key 0x0a, a 4-byte varint length (forced long form), the bytes. */
            size_t name_len = cases[c].total - 5;
            msg_bytes[0] = 0x0a;
            msg_bytes[1] = (uint8_t)(0x80 | (name_len & 0x7f));
            msg_bytes[2] = (uint8_t)(0x80 | ((name_len >> 7) & 0x7f));
            msg_bytes[3] = (uint8_t)(0x80 | ((name_len >> 14) & 0x7f));
            msg_bytes[4] = (uint8_t)(name_len >> 21);
            memset(msg_bytes + 5, 'a', name_len);
            grpc_byte_buffer *bb = compressed_of(msg_bytes, cases[c].total, gzip, 2);
            ProtobufCMessage *msg = NULL;
            books_error_clear(&f->err);
            int rc = codec_decode(bb, &books__v1__get_book_request__descriptor, cases[c].limits,
                                  &f->arena, &msg, &f->err);
            assert_int_equal(rc, cases[c].rc);
            if (rc == 0) {
                assert_int_equal(strlen(((Books__V1__GetBookRequest *)msg)->name), name_len);
                codec_free_request(msg, &f->arena);
            } else {
                assert_string_equal(f->err.reason, "MESSAGE_TOO_LARGE");
                assert_int_equal(rpc_status_of(rc), GRPC_STATUS_RESOURCE_EXHAUSTED);
            }
            grpc_byte_buffer_destroy(bb);
            arena_reset(&f->arena);
        }
    }
    free(msg_bytes);
}

static void test_broken_compressed_streams(void **state)
{
    struct fixture *f = *state;
    uint8_t wire[256];
    size_t len = pack_create_request(wire, sizeof wire);
    for (int gzip = 0; gzip <= 1; gzip++) {
        grpc_byte_buffer *good = compressed_of(wire, len, gzip, 1);
        grpc_slice whole = good->data.raw.slice_buffer.slices[0];
        size_t n = GRPC_SLICE_LENGTH(whole);
        /* Every truncation, and the whole stream followed by garbage. */
        for (size_t cut = 0; cut <= n; cut++) {
            uint8_t tail[] = "junk";
            grpc_slice sl[2] = {grpc_slice_from_copied_buffer(
                                    (const char *)GRPC_SLICE_START_PTR(whole), cut),
                                grpc_slice_from_copied_buffer((const char *)tail, 4)};
            size_t nsl = cut == n ? 2 : 1;
            grpc_byte_buffer *bb = grpc_raw_compressed_byte_buffer_create(
                sl, nsl, gzip ? GRPC_COMPRESS_GZIP : GRPC_COMPRESS_DEFLATE);
            grpc_slice_unref(sl[0]);
            grpc_slice_unref(sl[1]);
            ProtobufCMessage *msg = NULL;
            books_error_clear(&f->err);
            assert_int_equal(codec_decode(bb, &books__v1__create_book_request__descriptor,
                                          &LIMITS, &f->arena, &msg, &f->err),
                             BOOKS_EBADMSG);
            assert_null(msg);
            grpc_byte_buffer_destroy(bb);
        }
        grpc_byte_buffer_destroy(good);
    }
    /* An algorithm the codec does not know. */
    grpc_slice sl = grpc_slice_from_copied_buffer("x", 1);
    grpc_byte_buffer *bb = grpc_raw_compressed_byte_buffer_create(
        &sl, 1, (grpc_compression_algorithm)GRPC_COMPRESS_ALGORITHMS_COUNT);
    grpc_slice_unref(sl);
    ProtobufCMessage *msg = NULL;
    books_error_clear(&f->err);
    assert_int_equal(codec_decode(bb, &books__v1__get_book_request__descriptor, &LIMITS,
                                  &f->arena, &msg, &f->err),
                     BOOKS_EUNIMPL);
    grpc_byte_buffer_destroy(bb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_decode_round_trip_single_and_split, setup, teardown),
        cmocka_unit_test(test_embedded_parts_match_packing),
        cmocka_unit_test_setup_teardown(test_decode_empty_and_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_every_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_random_bytes, setup, teardown),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_status_details_field_violations),
        cmocka_unit_test(test_status_details_not_found),
        cmocka_unit_test(test_status_details_retry_info),
        cmocka_unit_test_setup_teardown(test_decode_rejects_nul_and_bad_utf8_with_paths, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_decode_accepts_valid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_violations_are_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_violation_details_fit_a_default_client, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_repeated_cap_refused_before_decoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_count_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compressed_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compression_bomb_stops_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_compressed_streams, setup, teardown),
        cmocka_unit_test(test_violations_without_arena_are_counted),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_error_quote),
        cmocka_unit_test_setup_teardown(test_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_details_decode_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_details_decode_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_details_decode_skips_foreign_details, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status_details_decode_garbage, setup, teardown),
        cmocka_unit_test(test_status_details_decode_needs_an_arena),
        cmocka_unit_test_setup_teardown(test_unknown_fields_are_not_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
