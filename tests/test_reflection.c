/* test_reflection.c: server reflection (include/books/reflection.h, gRPC doc/server-reflection.md)
 * over the descriptor set embedded in the binary, through the handler as the server calls it.
 * list_services names exactly the hosted services; file_by_filename and file_containing_symbol (for
 * a service, a method, a message, a nested message, a field, an enum, an enum value, an extension),
 * file_containing_extension (by containing type and number) answer with the file first and then
 * every file it imports, each once, all of them FileDescriptorProtos that parse;
 * all_extension_numbers_of_type lists exactly the extensions the set declares; unknown names get an
 * in-band ErrorResponse NOT_FOUND and a request that asks nothing INVALID_ARGUMENT, never a failed
 * call. A small descriptor set built here covers what the embedded one lacks (an extension declared
 * inside a message, a diamond of imports, an import missing from the set, a file without package)
 * and reflection_new()'s refusals. Every response is packed and unpacked, as the wire would carry
 * it, before it is looked at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/reflection.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#define BOOKS_SERVICE "books.v1.BooksService"
#define HEALTH_SERVICE "grpc.health.v1.Health"
#define V1_SERVICE "grpc.reflection.v1.ServerReflection"
#define V1ALPHA_SERVICE "grpc.reflection.v1alpha.ServerReflection"


/* google.rpc.Code values, which the protocol's ErrorResponse.error_code carries. */
#define CODE_INVALID_ARGUMENT 3
#define CODE_NOT_FOUND 5

#define R_FILES                                                                                    \
    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE
#define R_NUMBERS                                                                                  \
    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE
#define R_SERVICES                                                                                 \
    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE
#define R_ERROR GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE

static const char *const hosted[] = {BOOKS_SERVICE, HEALTH_SERVICE, V1_SERVICE, V1ALPHA_SERVICE,
                                     NULL};

/* The files of books/v1/books.proto's import closure, as protoc records them. */
static const char *const books_closure[] = {
    "books/v1/books.proto",      "google/api/annotations.proto",
    "google/api/http.proto",     "google/protobuf/descriptor.proto",
    "google/api/client.proto",   "google/api/field_behavior.proto",
    "google/api/field_info.proto", "google/api/resource.proto",
};

/* ---- running the handler --------------------------------------------------------------------- */

#define MAX_FILES 32

struct fixture {
    struct reflection *r;
    struct arena arena;
    unsigned char buf[2048];
    struct rpc_reply reply;
    int done_calls;
    /* The last answer, as a client decodes it. */
    Grpc__Reflection__V1__ServerReflectionResponse *resp;
    Google__Protobuf__FileDescriptorProto *files[MAX_FILES];
    size_t n_files;
    /* A descriptor set built by the test (see build_set), kept while r borrows it. */
    uint8_t *set;
};

static void forget_answer(struct fixture *f)
{
    for (size_t i = 0; i < f->n_files; i++)
        google__protobuf__file_descriptor_proto__free_unpacked(f->files[i], NULL);
    f->n_files = 0;
    if (f->resp)
        grpc__reflection__v1__server_reflection_response__free_unpacked(f->resp, NULL);
    f->resp = NULL;
}

static int setup(void **state)
{
    char err[256];
    struct fixture *f = calloc(1, sizeof *f);
    assert_int_equal(reflection_new(books_descriptor_set, books_descriptor_set_len, hosted, &f->r,
                                    err, sizeof err),
                     0);
    arena_init(&f->arena, f->buf, sizeof f->buf);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    forget_answer(f);
    reflection_free(f->r);
    free(f->set);
    arena_cleanup(&f->arena);
    free(f);
    return 0;
}

static void on_done(struct rpc_reply *r)
{
    struct fixture *f = (struct fixture *)((char *)r - offsetof(struct fixture, reply));
    f->done_calls++;
}

/* Sends `req` (packed and unpacked first, so the handler sees what the server's decoder gives it)
 * and decodes the answer into f->resp, and f->files for a file answer. */
static Grpc__Reflection__V1__ServerReflectionResponse *
ask(struct fixture *f, const Grpc__Reflection__V1__ServerReflectionRequest *in)
{
    size_t n = grpc__reflection__v1__server_reflection_request__get_packed_size(in);
    uint8_t *wire = malloc(n + 1);
    assert_int_equal(grpc__reflection__v1__server_reflection_request__pack(in, wire), n);
    Grpc__Reflection__V1__ServerReflectionRequest *req =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, n, wire);
    free(wire);
    assert_non_null(req);

    forget_answer(f);
    arena_reset(&f->arena);
    memset(&f->reply, 0, sizeof f->reply);
    f->reply.arena = &f->arena;
    books_error_init(&f->reply.error, &f->arena);
    f->reply.done = on_done;
    f->done_calls = 0;
    reflection_handle(f->r, &req->base, &f->reply);
    /* A bidi handler answers before it returns (rpc.h), exactly once, and reflection's answers,
     * errors included, are messages on the stream: the call itself does not fail. */
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->reply.error.code, 0);
    assert_non_null(f->reply.response);
    assert_ptr_equal(f->reply.response->descriptor,
                     &grpc__reflection__v1__server_reflection_response__descriptor);

    n = protobuf_c_message_get_packed_size(f->reply.response);
    wire = malloc(n + 1);
    assert_int_equal(protobuf_c_message_pack(f->reply.response, wire), n);
    /* The response may point into the request (original_request): pack before freeing it. */
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    f->resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, n, wire);
    free(wire);
    assert_non_null(f->resp);
    /* The protocol echoes the request. */
    assert_non_null(f->resp->original_request);
    assert_int_equal(f->resp->original_request->message_request_case, in->message_request_case);
    if (f->resp->message_response_case == R_FILES) {
        const Grpc__Reflection__V1__FileDescriptorResponse *fr = f->resp->file_descriptor_response;
        assert_true(fr->n_file_descriptor_proto <= MAX_FILES);
        for (size_t i = 0; i < fr->n_file_descriptor_proto; i++) {
            f->files[i] = google__protobuf__file_descriptor_proto__unpack(
                NULL, fr->file_descriptor_proto[i].len, fr->file_descriptor_proto[i].data);
            if (!f->files[i])
                fail_msg("file %zu of the answer is not a FileDescriptorProto", i);
            f->n_files++;
        }
    }
    return f->resp;
}

static Grpc__Reflection__V1__ServerReflectionResponse *ask_file(struct fixture *f, const char *name)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = (char *)name;
    return ask(f, &req);
}

static Grpc__Reflection__V1__ServerReflectionResponse *ask_symbol(struct fixture *f,
                                                                  const char *symbol)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = (char *)symbol;
    return ask(f, &req);
}

static Grpc__Reflection__V1__ServerReflectionResponse *ask_extension(struct fixture *f,
                                                                     const char *type, int number)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Grpc__Reflection__V1__ExtensionRequest x = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    x.containing_type = (char *)type;
    x.extension_number = number;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    req.file_containing_extension = &x;
    return ask(f, &req);
}

static Grpc__Reflection__V1__ServerReflectionResponse *ask_numbers(struct fixture *f,
                                                                   const char *type)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    req.all_extension_numbers_of_type = (char *)type;
    return ask(f, &req);
}

/* ---- what an answer must be ------------------------------------------------------------------ */

static bool answered_file(const struct fixture *f, const char *name)
{
    for (size_t i = 0; i < f->n_files; i++)
        if (strcmp(f->files[i]->name, name) == 0)
            return true;
    return false;
}

/* A file answer: `first` first, then what it imports, transitively, each file once; every import
 * of every file in the answer is in the answer (except the names in `absent`, which the set does
 * not have), and the answer holds `n` files. */
static void expect_files_except(const struct fixture *f, const char *first, size_t n,
                                const char *const *absent)
{
    if (f->resp->message_response_case != R_FILES)
        fail_msg("expected a file answer starting with %s, got case %d%s%s", first,
                 (int)f->resp->message_response_case,
                 f->resp->message_response_case == R_ERROR ? ": " : "",
                 f->resp->message_response_case == R_ERROR ? f->resp->error_response->error_message
                                                           : "");
    assert_true(f->n_files >= 1);
    assert_string_equal(f->files[0]->name, first);
    for (size_t i = 0; i < f->n_files; i++) {
        for (size_t j = i + 1; j < f->n_files; j++)
            if (strcmp(f->files[i]->name, f->files[j]->name) == 0)
                fail_msg("%s is in the answer twice", f->files[i]->name);
        for (size_t d = 0; d < f->files[i]->n_dependency; d++) {
            const char *dep = f->files[i]->dependency[d];
            bool known_absent = false;
            for (const char *const *a = absent; a && *a; a++)
                known_absent |= strcmp(*a, dep) == 0;
            if (!known_absent && !answered_file(f, dep))
                fail_msg("%s imports %s, which the answer lacks", f->files[i]->name, dep);
        }
    }
    if (f->n_files != n)
        fail_msg("the answer for %s holds %zu files, expected %zu", first, f->n_files, n);
}

static void expect_files(const struct fixture *f, const char *first, size_t n)
{
    expect_files_except(f, first, n, NULL);
}

static void expect_error(const struct fixture *f, int code, const char *mentions)
{
    if (f->resp->message_response_case != R_ERROR)
        fail_msg("expected an ErrorResponse %d, got case %d", code,
                 (int)f->resp->message_response_case);
    assert_int_equal(f->resp->error_response->error_code, code);
    assert_true(strlen(f->resp->error_response->error_message) > 0);
    if (mentions)
        assert_non_null(strstr(f->resp->error_response->error_message, mentions));
}

/* ---- list_services --------------------------------------------------------------------------- */

static void expect_services(struct fixture *f, const char *const *want)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = (char *)""; /* the protocol's content is not checked */
    ask(f, &req);
    assert_int_equal(f->resp->message_response_case, R_SERVICES);
    const Grpc__Reflection__V1__ListServiceResponse *ls = f->resp->list_services_response;
    size_t n_want = 0;
    while (want[n_want])
        n_want++;
    assert_int_equal(ls->n_service, n_want);
    for (size_t i = 0; i < n_want; i++) {
        bool found = false;
        for (size_t j = 0; j < ls->n_service; j++)
            found |= strcmp(ls->service[j]->name, want[i]) == 0;
        if (!found)
            fail_msg("list_services lacks %s", want[i]);
    }
}

static void test_list_services_names_exactly_the_hosted_ones(void **state)
{
    struct fixture *f = *state;
    expect_services(f, hosted);
    /* Each listed service is one a client can then ask about. */
    for (const char *const *s = hosted; *s; s++) {
        ask_symbol(f, *s);
        assert_int_equal(f->resp->message_response_case, R_FILES);
    }
}

/* The list is the one given to reflection_new(), not every service the descriptor set declares
 * (the set also describes services this server might not host). */
static void test_list_services_follows_the_hosted_list(void **state)
{
    (void)state;
    static const char *const only_books[] = {BOOKS_SERVICE, NULL};
    struct fixture f2;
    char err[256];
    memset(&f2, 0, sizeof f2);
    assert_int_equal(reflection_new(books_descriptor_set, books_descriptor_set_len, only_books,
                                    &f2.r, err, sizeof err),
                     0);
    arena_init(&f2.arena, f2.buf, sizeof f2.buf);
    expect_services(&f2, only_books);
    forget_answer(&f2);
    reflection_free(f2.r);
    arena_cleanup(&f2.arena);
}

/* ---- file_by_filename ------------------------------------------------------------------------ */

static void test_file_by_filename(void **state)
{
    struct fixture *f = *state;
    size_t n = sizeof books_closure / sizeof books_closure[0];
    ask_file(f, "books/v1/books.proto");
    expect_files(f, "books/v1/books.proto", n);
    for (size_t i = 0; i < n; i++)
        assert_true(answered_file(f, books_closure[i]));
    /* The file is the one the API is: its package and service are there. */
    assert_string_equal(f->files[0]->package, "books.v1");
    assert_int_equal(f->files[0]->n_service, 1);
    assert_string_equal(f->files[0]->service[0]->name, "BooksService");

    /* Files that import nothing come alone. */
    ask_file(f, "google/protobuf/descriptor.proto");
    expect_files(f, "google/protobuf/descriptor.proto", 1);
    ask_file(f, "grpc/health/v1/health.proto");
    expect_files(f, "grpc/health/v1/health.proto", 1);
    ask_file(f, "grpc/reflection/v1alpha/reflection.proto");
    expect_files(f, "grpc/reflection/v1alpha/reflection.proto", 1);
    /* A file in the middle of the graph brings only its own imports. */
    ask_file(f, "google/api/annotations.proto");
    expect_files(f, "google/api/annotations.proto", 3);
}

static void test_unknown_file_is_not_found(void **state)
{
    struct fixture *f = *state;
    const char *const names[] = {"books/v1/nope.proto", "books.proto", "books/v1/books.proto ",
                                 "/books/v1/books.proto", ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ask_file(f, names[i]);
        expect_error(f, CODE_NOT_FOUND, names[i]);
    }
}

/* ---- file_containing_symbol ------------------------------------------------------------------ */

static void test_file_containing_symbol(void **state)
{
    struct fixture *f = *state;
    const size_t books_n = sizeof books_closure / sizeof books_closure[0];
    static const struct {
        const char *symbol, *file;
        size_t n_files;
    } cases[] = {
        {"books.v1.BooksService", "books/v1/books.proto", 0},                /* service */
        {"books.v1.BooksService.GetBook", "books/v1/books.proto", 0},        /* method */
        {"books.v1.BooksService.CreateBook", "books/v1/books.proto", 0},     /* method */
        {"books.v1.Book", "books/v1/books.proto", 0},                        /* message */
        {"books.v1.ListBooksResponse", "books/v1/books.proto", 0},           /* message */
        {"books.v1.Book.display_name", "books/v1/books.proto", 0},           /* field */
        {"books.v1.ListBooksRequest.page_token", "books/v1/books.proto", 0}, /* field */
        {".books.v1.Book", "books/v1/books.proto", 0}, /* as a descriptor's type_name has it */
        {"google.protobuf.DescriptorProto.ExtensionRange", "google/protobuf/descriptor.proto", 1},
        {"google.protobuf.DescriptorProto.ExtensionRange.start", "google/protobuf/descriptor.proto",
         1}, /* a nested message's field */
        {"google.api.ResourceDescriptor.History", "google/api/resource.proto", 2}, /* nested enum */
        {"google.api.FieldBehavior", "google/api/field_behavior.proto", 2},        /* enum */
        /* Enum values live beside their enum (protobuf's scoping), not inside it. */
        {"google.api.REQUIRED", "google/api/field_behavior.proto", 2},
        {"grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto", 1},
        {"google.protobuf.FieldDescriptorProto.TYPE_STRING", "google/protobuf/descriptor.proto", 1},
        /* Extensions, by their own names. */
        {"google.api.field_behavior", "google/api/field_behavior.proto", 2},
        {"google.api.http", "google/api/annotations.proto", 3},
        {"google.api.resource_reference", "google/api/resource.proto", 2},
        /* The other hosted services and their methods. */
        {"grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto", 1},
        {"grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
         "grpc/reflection/v1/reflection.proto", 1},
        {"grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ask_symbol(f, cases[i].symbol);
        expect_files(f, cases[i].file, cases[i].n_files ? cases[i].n_files : books_n);
    }
}

static void test_unknown_symbol_is_not_found(void **state)
{
    struct fixture *f = *state;
    const char *const names[] = {
        "books.v1.Nope",
        "books.v1.Boo",                      /* a prefix of a symbol */
        "books.v1.Books",                    /* a prefix of a symbol */
        "books.v1.BookX",                    /* a symbol plus one */
        "Book",                              /* not fully qualified */
        "books.v1.Book.nope",                /* no such field */
        "books.v1.BooksService.DeleteBook",  /* no such method */
        "google.api.FieldBehavior.REQUIRED", /* an enum value inside its enum */
        "books.v1.book",                     /* case matters */
        "",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ask_symbol(f, names[i]);
        expect_error(f, CODE_NOT_FOUND, names[i]);
    }
}

/* ---- extensions ------------------------------------------------------------------------------ */

static void test_file_containing_extension(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *type;
        int number;
        const char *file;
        size_t n_files;
    } cases[] = {
        {"google.protobuf.FieldOptions", 1052, "google/api/field_behavior.proto", 2},
        {"google.protobuf.FieldOptions", 1055, "google/api/resource.proto", 2},
        {"google.protobuf.MessageOptions", 1053, "google/api/resource.proto", 2},
        {"google.protobuf.FileOptions", 1053, "google/api/resource.proto", 2},
        {"google.protobuf.MethodOptions", 72295728, "google/api/annotations.proto", 3},
        {"google.protobuf.MethodOptions", 1051, "google/api/client.proto", 2},
        {"google.protobuf.ServiceOptions", 1049, "google/api/client.proto", 2},
        {".google.protobuf.FieldOptions", 1052, "google/api/field_behavior.proto", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ask_extension(f, cases[i].type, cases[i].number);
        expect_files(f, cases[i].file, cases[i].n_files);
    }
}

static void test_unknown_extension_is_not_found(void **state)
{
    struct fixture *f = *state;
    ask_extension(f, "google.protobuf.FieldOptions", 9999); /* no such number */
    expect_error(f, CODE_NOT_FOUND, "google.protobuf.FieldOptions");
    ask_extension(f, "google.protobuf.FieldOptions", 1053); /* 1053 extends other types */
    expect_error(f, CODE_NOT_FOUND, NULL);
    ask_extension(f, "google.protobuf.EnumOptions", 1052); /* 1052 extends another type */
    expect_error(f, CODE_NOT_FOUND, NULL);
    ask_extension(f, "books.v1.Nope", 1);
    expect_error(f, CODE_NOT_FOUND, "books.v1.Nope");
    ask_extension(f, "", 0);
    expect_error(f, CODE_NOT_FOUND, NULL);
}

/* The numbers, as a sorted list, for comparing. */
static int cmp_int32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void expect_numbers(struct fixture *f, const char *type, const char *base, size_t n,
                           const int32_t *want)
{
    ask_numbers(f, type);
    if (f->resp->message_response_case != R_NUMBERS)
        fail_msg("all_extension_numbers_of_type(%s): case %d", type,
                 (int)f->resp->message_response_case);
    const Grpc__Reflection__V1__ExtensionNumberResponse *en =
        f->resp->all_extension_numbers_response;
    assert_string_equal(en->base_type_name, base);
    if (en->n_extension_number != n)
        fail_msg("%s has %zu extension numbers, expected %zu", type, en->n_extension_number, n);
    int32_t got[16];
    assert_true(n <= 16);
    if (n)
        memcpy(got, en->extension_number, n * sizeof *got);
    qsort(got, n, sizeof *got, cmp_int32);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

static void test_all_extension_numbers_of_type(void **state)
{
    struct fixture *f = *state;
    /* Exactly what the set's files declare (the google/api protos), sorted. */
    static const int32_t field[] = {1052, 1055, 291403980}, method[] = {1051, 72295728},
                         service[] = {1049, 1050}, message[] = {1053};
    expect_numbers(f, "google.protobuf.FieldOptions", "google.protobuf.FieldOptions", 3, field);
    expect_numbers(f, "google.protobuf.MethodOptions", "google.protobuf.MethodOptions", 2, method);
    expect_numbers(f, "google.protobuf.ServiceOptions", "google.protobuf.ServiceOptions", 2,
                   service);
    expect_numbers(f, "google.protobuf.MessageOptions", "google.protobuf.MessageOptions", 1,
                   message);
    expect_numbers(f, ".google.protobuf.FileOptions", "google.protobuf.FileOptions", 1, message);
    /* A message type nothing extends: an empty list, not an error. */
    expect_numbers(f, "books.v1.Book", "books.v1.Book", 0, NULL);
    expect_numbers(f, "google.protobuf.EnumOptions", "google.protobuf.EnumOptions", 0, NULL);
}

static void test_extension_numbers_of_an_unknown_type(void **state)
{
    struct fixture *f = *state;
    ask_numbers(f, "books.v1.Nope");
    expect_error(f, CODE_NOT_FOUND, "books.v1.Nope");
    ask_numbers(f, "");
    expect_error(f, CODE_NOT_FOUND, NULL);
}

/* all_extension_numbers_of_type is about message types (gRPC's C++ server answers NOT_FOUND for
 * any other name, and reflection.c's own message says "no message type named ..."): a service, a
 * field or an enum value is not a type that has extensions. */
static void test_extension_numbers_only_for_message_types(void **state)
{
    struct fixture *f = *state;
    const char *const not_messages[] = {"books.v1.BooksService", "books.v1.Book.display_name",
                                        "google.api.REQUIRED", "google.api.FieldBehavior"};
    for (size_t i = 0; i < sizeof not_messages / sizeof not_messages[0]; i++) {
        ask_numbers(f, not_messages[i]);
        expect_error(f, CODE_NOT_FOUND, not_messages[i]);
    }
}

/* ---- requests that ask nothing --------------------------------------------------------------- */

static void ask_bytes(struct fixture *f, const uint8_t *bytes, size_t n)
{
    Grpc__Reflection__V1__ServerReflectionRequest *req =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, n, bytes);
    assert_non_null(req);
    ask(f, req);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
}

static void test_request_that_asks_nothing_is_invalid_argument(void **state)
{
    struct fixture *f = *state;
    /* No field at all. */
    ask_bytes(f, (const uint8_t *)"", 0);
    expect_error(f, CODE_INVALID_ARGUMENT, NULL);
    /* Only a host. */
    static const uint8_t host_only[] = {0x0a, 0x01, 'h'};
    ask_bytes(f, host_only, sizeof host_only);
    expect_error(f, CODE_INVALID_ARGUMENT, NULL);
    assert_string_equal(f->resp->valid_host, "h");
    /* A request kind from a newer protocol (field 9): unknown here, so nothing is asked. */
    static const uint8_t future[] = {0x4a, 0x01, 'x'};
    ask_bytes(f, future, sizeof future);
    expect_error(f, CODE_INVALID_ARGUMENT, NULL);
    /* The stream carries on: the next request is answered normally. */
    ask_symbol(f, "books.v1.Book");
    assert_int_equal(f->resp->message_response_case, R_FILES);
}

/* ---- a descriptor set built here ------------------------------------------------------------- */

static Google__Protobuf__FieldDescriptorProto *field(const char *name, int number,
                                                     const char *extendee)
{
    Google__Protobuf__FieldDescriptorProto *fd = calloc(1, sizeof *fd);
    google__protobuf__field_descriptor_proto__init(fd);
    fd->name = (char *)name;
    fd->has_number = 1;
    fd->number = number;
    fd->has_type = 1;
    fd->type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32;
    fd->extendee = (char *)extendee;
    return fd;
}

static Google__Protobuf__DescriptorProto *message(const char *name)
{
    Google__Protobuf__DescriptorProto *m = calloc(1, sizeof *m);
    google__protobuf__descriptor_proto__init(m);
    m->name = (char *)name;
    return m;
}

static Google__Protobuf__FileDescriptorProto *file(const char *name, const char *package)
{
    Google__Protobuf__FileDescriptorProto *fd = calloc(1, sizeof *fd);
    google__protobuf__file_descriptor_proto__init(fd);
    fd->name = (char *)name;
    fd->package = (char *)package;
    return fd;
}

#define ARRAY(T, ...)                                                                              \
    memcpy(malloc(sizeof((T[]){__VA_ARGS__})), (T[]){__VA_ARGS__}, sizeof((T[]){__VA_ARGS__}))
#define COUNT(T, ...) (sizeof((T[]){__VA_ARGS__}) / sizeof(T))

/* Frees what the builders above allocated (the strings are literals). */
static void free_message(Google__Protobuf__DescriptorProto *m)
{
    for (size_t i = 0; i < m->n_field; i++)
        free(m->field[i]);
    for (size_t i = 0; i < m->n_extension; i++)
        free(m->extension[i]);
    for (size_t i = 0; i < m->n_nested_type; i++)
        free_message(m->nested_type[i]);
    for (size_t i = 0; i < m->n_enum_type; i++) {
        for (size_t j = 0; j < m->enum_type[i]->n_value; j++)
            free(m->enum_type[i]->value[j]);
        free(m->enum_type[i]->value);
        free(m->enum_type[i]);
    }
    free(m->field);
    free(m->extension);
    free(m->nested_type);
    free(m->enum_type);
    free(m);
}

static void free_file(Google__Protobuf__FileDescriptorProto *fd)
{
    for (size_t i = 0; i < fd->n_message_type; i++)
        free_message(fd->message_type[i]);
    for (size_t i = 0; i < fd->n_extension; i++)
        free(fd->extension[i]);
    for (size_t i = 0; i < fd->n_service; i++) {
        for (size_t j = 0; j < fd->service[i]->n_method; j++)
            free(fd->service[i]->method[j]);
        free(fd->service[i]->method);
        free(fd->service[i]);
    }
    free(fd->message_type);
    free(fd->extension);
    free(fd->service);
    free(fd->dependency);
    free(fd);
}

/* The set, serialized (caller frees):
 *   t/d.proto  package t: message Base; message Outer { message Inner { int32 x = 1; }
 *              enum Kind { KIND_A = 0; } extend Base { int32 outer_ext = 100; } }
 *   t/b.proto  package t.b, imports t/d.proto: message B
 *   t/c.proto  package t.c, imports t/d.proto: extend t.Base { int32 c_ext = 101; }
 *   t/a.proto  package t.a, imports t/b.proto, t/c.proto and missing.proto (not in the set):
 *              service S { rpc M(...) }
 *   top.proto  no package: message Top; imports itself through cyc.proto, which imports top.proto
 *   cyc.proto  no package, imports top.proto */
static uint8_t *build_set(size_t *len)
{
    Google__Protobuf__FileDescriptorProto *d = file("t/d.proto", "t");
    Google__Protobuf__DescriptorProto *outer = message("Outer"), *inner = message("Inner");
    inner->n_field = 1;
    inner->field = ARRAY(Google__Protobuf__FieldDescriptorProto *, field("x", 1, NULL));
    Google__Protobuf__EnumDescriptorProto *kind = calloc(1, sizeof *kind);
    google__protobuf__enum_descriptor_proto__init(kind);
    kind->name = "Kind";
    Google__Protobuf__EnumValueDescriptorProto *ka = calloc(1, sizeof *ka);
    google__protobuf__enum_value_descriptor_proto__init(ka);
    ka->name = "KIND_A";
    ka->has_number = 1;
    kind->n_value = 1;
    kind->value = ARRAY(Google__Protobuf__EnumValueDescriptorProto *, ka);
    outer->n_nested_type = 1;
    outer->nested_type = ARRAY(Google__Protobuf__DescriptorProto *, inner);
    outer->n_enum_type = 1;
    outer->enum_type = ARRAY(Google__Protobuf__EnumDescriptorProto *, kind);
    outer->n_extension = 1;
    outer->extension =
        ARRAY(Google__Protobuf__FieldDescriptorProto *, field("outer_ext", 100, ".t.Base"));
    d->n_message_type = 2;
    d->message_type = ARRAY(Google__Protobuf__DescriptorProto *, message("Base"), outer);

    Google__Protobuf__FileDescriptorProto *b = file("t/b.proto", "t.b");
    b->n_dependency = 1;
    b->dependency = ARRAY(char *, "t/d.proto");
    b->n_message_type = 1;
    b->message_type = ARRAY(Google__Protobuf__DescriptorProto *, message("B"));

    Google__Protobuf__FileDescriptorProto *c = file("t/c.proto", "t.c");
    c->n_dependency = 1;
    c->dependency = ARRAY(char *, "t/d.proto");
    c->n_extension = 1;
    c->extension = ARRAY(Google__Protobuf__FieldDescriptorProto *, field("c_ext", 101, ".t.Base"));

    Google__Protobuf__FileDescriptorProto *a = file("t/a.proto", "t.a");
    a->n_dependency = 3;
    a->dependency = ARRAY(char *, "t/b.proto", "t/c.proto", "missing.proto");
    Google__Protobuf__ServiceDescriptorProto *s = calloc(1, sizeof *s);
    google__protobuf__service_descriptor_proto__init(s);
    s->name = "S";
    Google__Protobuf__MethodDescriptorProto *m = calloc(1, sizeof *m);
    google__protobuf__method_descriptor_proto__init(m);
    m->name = "M";
    m->input_type = ".t.b.B";
    m->output_type = ".t.b.B";
    s->n_method = 1;
    s->method = ARRAY(Google__Protobuf__MethodDescriptorProto *, m);
    a->n_service = 1;
    a->service = ARRAY(Google__Protobuf__ServiceDescriptorProto *, s);

    Google__Protobuf__FileDescriptorProto *top = file("top.proto", NULL);
    top->n_message_type = 1;
    top->message_type = ARRAY(Google__Protobuf__DescriptorProto *, message("Top"));
    top->n_dependency = 1;
    top->dependency = ARRAY(char *, "cyc.proto");
    Google__Protobuf__FileDescriptorProto *cyc = file("cyc.proto", NULL);
    cyc->n_dependency = 1;
    cyc->dependency = ARRAY(char *, "top.proto");

    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    Google__Protobuf__FileDescriptorProto *files[] = {d, b, c, a, top, cyc};
    set.n_file = sizeof files / sizeof files[0];
    set.file = files;
    *len = google__protobuf__file_descriptor_set__get_packed_size(&set);
    uint8_t *out = malloc(*len);
    assert_int_equal(google__protobuf__file_descriptor_set__pack(&set, out), *len);
    for (size_t i = 0; i < set.n_file; i++)
        free_file(files[i]);
    return out;
}

static int setup_built(void **state)
{
    static const char *const services[] = {"t.a.S", NULL};
    char err[256];
    size_t len;
    struct fixture *f = calloc(1, sizeof *f);
    f->set = build_set(&len);
    assert_int_equal(reflection_new(f->set, len, services, &f->r, err, sizeof err), 0);
    arena_init(&f->arena, f->buf, sizeof f->buf);
    *state = f;
    return 0;
}

static void test_imports_each_once_in_a_diamond(void **state)
{
    struct fixture *f = *state;
    static const char *const absent[] = {"missing.proto", NULL};
    /* a -> b -> d, a -> c -> d, a -> missing: d once, missing left out. */
    ask_file(f, "t/a.proto");
    expect_files_except(f, "t/a.proto", 4, absent);
    ask_symbol(f, "t.a.S.M");
    expect_files_except(f, "t/a.proto", 4, absent);
    ask_file(f, "t/c.proto");
    expect_files(f, "t/c.proto", 2);
    /* An import cycle (which protoc would refuse) still ends, with both files once. */
    ask_file(f, "top.proto");
    expect_files(f, "top.proto", 2);
}

static void test_symbols_of_every_kind_in_a_built_set(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *symbol, *file;
        size_t n;
    } cases[] = {
        {"t.Outer", "t/d.proto", 1},
        {"t.Outer.Inner", "t/d.proto", 1},
        {"t.Outer.Inner.x", "t/d.proto", 1},
        {"t.Outer.Kind", "t/d.proto", 1},
        {"t.Outer.KIND_A", "t/d.proto", 1},
        {"t.Outer.outer_ext", "t/d.proto", 1},
        {"t.c.c_ext", "t/c.proto", 2},
        {"t.b.B", "t/b.proto", 2},
        {"Top", "top.proto", 2}, /* no package: the bare name */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ask_symbol(f, cases[i].symbol);
        expect_files(f, cases[i].file, cases[i].n);
    }
    ask_symbol(f, ".Top");
    expect_files(f, "top.proto", 2);
    ask_symbol(f, "t.Outer.Kind.KIND_A");
    expect_error(f, CODE_NOT_FOUND, NULL);
}

/* An extension declared inside a message is found by its containing type and number, like one at
 * file level, and both are listed for the type. */
static void test_nested_and_file_level_extensions(void **state)
{
    struct fixture *f = *state;
    static const int32_t both[] = {100, 101};
    ask_extension(f, "t.Base", 100);
    expect_files(f, "t/d.proto", 1);
    ask_extension(f, "t.Base", 101);
    expect_files(f, "t/c.proto", 2);
    ask_extension(f, "t.Outer", 100); /* declared in Outer, but extends Base */
    expect_error(f, CODE_NOT_FOUND, NULL);
    expect_numbers(f, "t.Base", "t.Base", 2, both);
    expect_numbers(f, "t.Outer", "t.Outer", 0, NULL);
    static const char *const only_s[] = {"t.a.S", NULL};
    expect_services(f, only_s);
}

/* ---- reflection_new() ------------------------------------------------------------------------ */

static void test_new_refuses_what_is_not_a_descriptor_set(void **state)
{
    (void)state;
    struct reflection *r = (struct reflection *)&r; /* must stay untouched */
    char err[256];
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t wrong_field[] = {0x12, 0x00};            /* field 2, not 1 */
    static const uint8_t too_long[] = {0x0a, 0x05, 0x0a, 0x01};   /* length past the end */
    static const uint8_t bad_varint[] = {0x0a, 0xff, 0xff, 0xff}; /* length never ends */
    static const uint8_t not_a_file[] = {0x0a, 0x02, 0xff, 0xff}; /* framed, but no message */
    static const uint8_t nameless[] = {0x0a, 0x02, 0x12, 0x00};   /* a file without a name */
    static const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = {
        {garbage, sizeof garbage},
        {wrong_field, sizeof wrong_field},
        {too_long, sizeof too_long},
        {bad_varint, sizeof bad_varint},
        {not_a_file, sizeof not_a_file},
        {nameless, sizeof nameless},
        {garbage, 0}, /* an empty set describes nothing to serve */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* In a heap block of exactly its size, so valgrind reports a read past the end. */
        uint8_t *copy = malloc(bad[i].n ? bad[i].n : 1);
        memcpy(copy, bad[i].p, bad[i].n);
        err[0] = '\0';
        int rc = reflection_new(copy, bad[i].n, hosted, &r, err, sizeof err);
        free(copy);
        if (rc != BOOKS_EINVAL)
            fail_msg("case %zu was not refused with BOOKS_EINVAL", i);
        assert_true(strlen(err) > 0);
        assert_ptr_equal(r, (struct reflection *)&r);
    }
    /* The embedded set cut short: refused, or (cut between two files) a smaller set; never a
     * crash or a leak. */
    for (size_t n = 1; n < books_descriptor_set_len; n += 211) {
        struct reflection *cut = NULL;
        int rc = reflection_new(books_descriptor_set, n, hosted, &cut, err, sizeof err);
        assert_true(rc == 0 || rc == BOOKS_EINVAL);
        reflection_free(cut);
    }
    reflection_free(NULL);
}

/* ---- the method tables ----------------------------------------------------------------------- */

static void test_describe(void **state)
{
    struct fixture *f = *state;
    struct rpc_service v1, v1alpha;
    reflection_describe_v1(f->r, &v1);
    reflection_describe_v1alpha(f->r, &v1alpha);
    assert_string_equal(v1.name, V1_SERVICE);
    assert_string_equal(v1alpha.name, V1ALPHA_SERVICE);
    const struct rpc_service *both[] = {&v1, &v1alpha};
    for (int i = 0; i < 2; i++) {
        assert_ptr_equal(both[i]->self, f->r);
        assert_int_equal(both[i]->n_methods, 1);
        const struct rpc_method *m = &both[i]->methods[0];
        assert_int_equal(m->kind, RPC_BIDI_STREAM);
        assert_ptr_equal(m->handle, reflection_handle);
        assert_ptr_equal(m->request, &grpc__reflection__v1__server_reflection_request__descriptor);
    }
    assert_string_equal(v1.methods[0].path,
                        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    assert_string_equal(v1alpha.methods[0].path,
                        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define B(name) cmocka_unit_test_setup_teardown(name, setup_built, teardown)
    const struct CMUnitTest tests[] = {
        T(test_list_services_names_exactly_the_hosted_ones),
        cmocka_unit_test(test_list_services_follows_the_hosted_list),
        T(test_file_by_filename),
        T(test_unknown_file_is_not_found),
        T(test_file_containing_symbol),
        T(test_unknown_symbol_is_not_found),
        T(test_file_containing_extension),
        T(test_unknown_extension_is_not_found),
        T(test_all_extension_numbers_of_type),
        T(test_extension_numbers_of_an_unknown_type),
        T(test_extension_numbers_only_for_message_types),
        T(test_request_that_asks_nothing_is_invalid_argument),
        B(test_imports_each_once_in_a_diamond),
        B(test_symbols_of_every_kind_in_a_built_set),
        B(test_nested_and_file_level_extensions),
        cmocka_unit_test(test_new_refuses_what_is_not_a_descriptor_set),
        T(test_describe),
    };
#undef T
#undef B
    return cmocka_run_group_tests(tests, NULL, NULL);
}
