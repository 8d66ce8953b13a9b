/* test_client.c: the blocking BooksService client (include/books/client.h), through its public
 * functions only, against two servers on loopback:
 *   - the real server (server_start() with BooksService over a memory: store, port 0): create, get
 *     and list round trips, and the errors that server sends, with their AIP-193 details decoded;
 *   - a stub written here on gRPC core's server API, which does what the real server never does on
 *     purpose: answer with any status and details, with no details or undecodable ones, with a
 *     response that is not a message or with none, or not at all (the deadline); and which shows
 *     what the client sent (the authorization and user-agent headers, the method, the request).
 * Plus the refusals of client_new(), targets nobody serves, client_free()'s cleanup (valgrind
 * and ASan check that nothing leaks), and which failures `books create` (cli_run()) retries with
 * the same request_id, against the stub. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "books/cli.h"
#include "books/client.h"
#include "books/codec.h"
#include "books/log.h"
#include "books/server.h"
#include "books/service.h"
#include "books/status.h"
#include "books/store.h"

/* The deadline of calls that should succeed: a bound on waiting, not on speed. */
#define CALL_TIMEOUT_MS 20000

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static struct client *client_for_port(int port, const char *token, const char *user_agent,
                                      int timeout_ms)
{
    char target[64];
    struct client *c = NULL;
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    struct client_options o = {
        .target = target, .token = token, .timeout_ms = timeout_ms, .user_agent = user_agent};
    assert_int_equal(client_new(&o, &c), 0);
    assert_non_null(c);
    return c;
}

/* A TCP port on loopback that nobody listens on, held (bound, not listening) until close(*fd), so
 * no other process can start listening there meanwhile: connections to it are refused. */
static int unserved_port(int *fd)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &alen), 0);
    return ntohs(a.sin_port);
}

/* ---- the real server ------------------------------------------------------------------------- */

#define MAX_RECV_BYTES (64 * 1024)

struct fixture {
    struct store *store;
    struct svc *svc;
    struct rpc_service service;
    struct server *server;
    struct client *client;
    struct arena arena;
    unsigned char buf[4096];
    struct client_error err;
};

static int setup(void **state)
{
    char err[STORE_ERR_BYTES > SERVER_ERR_BYTES ? STORE_ERR_BYTES : SERVER_ERR_BYTES];
    struct fixture *f = calloc(1, sizeof *f);
    assert_int_equal(store_open("memory:", NULL, &f->store, err, sizeof err), 0);
    assert_int_equal(svc_new(f->store, &f->svc), 0);
    svc_describe(f->svc, &f->service);
    /* One worker: the client makes one call at a time anyway, and the first call served proves
     * the worker has finished requesting its calls. (server_shutdown() destroys the grpc_server
     * before joining the workers, and a worker still in worker_main's first loop then requests a
     * call on a destroyed server: with two workers, one that starts late crashes the teardown of a
     * test served by the other. Reported; test_server is the place to pin it.) */
    struct server_options o = {
        .port = 0, .threads = 1, .max_recv_bytes = MAX_RECV_BYTES, .max_concurrent_streams = 100};
    assert_int_equal(server_start(&o, &f->service, 1, &f->server, err, sizeof err), 0);
    f->client = client_for_port(server_port(f->server), NULL, NULL, CALL_TIMEOUT_MS);
    arena_init(&f->arena, f->buf, sizeof f->buf);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    client_free(f->client);
    assert_int_equal(server_shutdown(f->server, 1000), 0);
    server_free(f->server);
    svc_free(f->svc);
    store_close(f->store);
    arena_cleanup(&f->arena);
    free(f);
    return 0;
}

static Books__V1__Book book_of(const char *title, size_t n_authors, char **authors,
                               const char *publisher)
{
    Books__V1__Book b = BOOKS__V1__BOOK__INIT;
    b.display_name = (char *)title;
    b.n_authors = n_authors;
    b.authors = authors;
    b.publisher = (char *)publisher;
    return b;
}

static char *herbert[] = {"Frank Herbert"};

static void create_ok(struct fixture *f, const char *id)
{
    Books__V1__Book in = book_of("Title", 1, herbert, "Publisher"), *out = NULL;
    if (client_create_book(f->client, &in, id, NULL, &f->arena, &out, &f->err) != 0)
        fail_msg("creating %s: %s", id, f->err.detail.message);
    codec_free_request(&out->base, &f->arena);
    arena_reset(&f->arena);
}

static void assert_same_book(const Books__V1__Book *got, const char *name,
                             const Books__V1__Book *want)
{
    assert_string_equal(got->name, name);
    assert_string_equal(got->display_name, want->display_name);
    assert_string_equal(got->publisher, want->publisher);
    assert_int_equal(got->n_authors, want->n_authors);
    for (size_t i = 0; i < want->n_authors; i++)
        assert_string_equal(got->authors[i], want->authors[i]);
}

static void test_create_then_get(void **state)
{
    struct fixture *f = *state;
    char *authors[] = {"Terry Pratchett", "Neil Gaiman", "\xC3\x89mile Zola"}; /* in this order */
    Books__V1__Book in = book_of("Good Omens \xE2\x80\x94 \xE6\x9D\xB1", 3, authors, "Gollancz");
    Books__V1__Book *out = NULL, *got = NULL;

    assert_int_equal(
        client_create_book(f->client, &in, "good-omens", NULL, &f->arena, &out, &f->err), 0);
    assert_int_equal(f->err.status, GRPC_STATUS_OK);
    assert_same_book(out, "books/good-omens", &in);
    codec_free_request(&out->base, &f->arena);

    assert_int_equal(client_get_book(f->client, "books/good-omens", &f->arena, &got, &f->err), 0);
    assert_int_equal(f->err.status, GRPC_STATUS_OK);
    assert_same_book(got, "books/good-omens", &in);
    codec_free_request(&got->base, &f->arena);
}

/* book_id NULL or "": the server names the book with a UUID4 (AIP-133), and it can be got by it. */
static void test_create_without_id(void **state)
{
    struct fixture *f = *state;
    Books__V1__Book in = book_of("Dune", 1, herbert, "Chilton"), *out = NULL, *got = NULL;
    const char *ids[] = {NULL, ""};
    char names[2][SVC_NAME_BYTES];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            client_create_book(f->client, &in, ids[i], NULL, &f->arena, &out, &f->err), 0);
        assert_int_equal(strncmp(out->name, "books/", 6), 0);
        assert_int_equal(strlen(out->name + 6), 36);
        assert_true(svc_valid_book_id(out->name + 6, 36));
        snprintf(names[i], sizeof names[i], "%s", out->name);
        codec_free_request(&out->base, &f->arena);
        assert_int_equal(client_get_book(f->client, names[i], &f->arena, &got, &f->err), 0);
        assert_same_book(got, names[i], &in);
        codec_free_request(&got->base, &f->arena);
        arena_reset(&f->arena);
    }
    assert_string_not_equal(names[0], names[1]);
}

/* Every book, page by page, in name order, each once; only the last page has no next token. */
static void test_list_pages(void **state)
{
    struct fixture *f = *state;
    const char *ids[] = {"delta", "alpha", "echo", "charlie", "bravo"};
    const char *sorted[] = {"books/alpha", "books/bravo", "books/charlie", "books/delta",
                            "books/echo"};
    for (size_t i = 0; i < 5; i++)
        create_ok(f, ids[i]);

    char token[512] = "";
    size_t seen = 0;
    int pages = 0;
    do {
        Books__V1__ListBooksResponse *page = NULL;
        assert_int_equal(client_list_books(f->client, 2, token, &f->arena, &page, &f->err), 0);
        pages++;
        assert_true(page->n_books >= 1 && page->n_books <= 2);
        for (size_t i = 0; i < page->n_books; i++) {
            assert_true(seen < 5);
            assert_string_equal(page->books[i]->name, sorted[seen++]);
        }
        assert_true(strlen(page->next_page_token) < sizeof token);
        snprintf(token, sizeof token, "%s", page->next_page_token);
        codec_free_request(&page->base, &f->arena);
        arena_reset(&f->arena);
        assert_true(pages <= 5);
    } while (token[0]);
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);

    /* The defaults: page_size 0 and a NULL token give the first (here the only) page. */
    Books__V1__ListBooksResponse *all = NULL;
    assert_int_equal(client_list_books(f->client, 0, NULL, &f->arena, &all, &f->err), 0);
    assert_int_equal(all->n_books, 5);
    assert_string_equal(all->next_page_token, "");
    codec_free_request(&all->base, &f->arena);
}

/* ---- errors from the real server, with their AIP-193 details --------------------------------- */

/* Checks the common part of a failed call: return value, status, code, message; and that *out was
 * left alone. */
static void assert_failed(int rc, const struct client_error *e, grpc_status_code status, int code,
                          const void *out, const void *sentinel)
{
    if (rc != code)
        fail_msg("returned %s (%s), expected %s; status %s: %s", books_err_name(rc),
                 rpc_status_name(e->status), books_err_name(code), rpc_status_name(e->status),
                 e->detail.message);
    assert_int_equal(e->status, status);
    assert_int_equal(e->detail.code, code);
    assert_true(strlen(e->detail.message) > 0);
    assert_ptr_equal(out, sentinel);
}

static bool has_violation(const struct books_error *e, const char *field)
{
    for (size_t i = 0; i < e->n_violations; i++)
        if (strcmp(e->violations[i].field, field) == 0)
            return strlen(e->violations[i].description) > 0;
    return false;
}

static Books__V1__Book *const SENTINEL_BOOK = (Books__V1__Book *)&SENTINEL_BOOK;

static void test_not_found(void **state)
{
    struct fixture *f = *state;
    Books__V1__Book *out = SENTINEL_BOOK;
    int rc = client_get_book(f->client, "books/nope", &f->arena, &out, &f->err);
    assert_failed(rc, &f->err, GRPC_STATUS_NOT_FOUND, BOOKS_ENOTFOUND, out, SENTINEL_BOOK);
    const struct books_error *d = &f->err.detail;
    assert_non_null(strstr(d->message, "books/nope"));
    assert_non_null(d->reason);
    assert_string_equal(d->reason, "BOOK_NOT_FOUND");
    assert_non_null(d->meta_key);
    assert_string_equal(d->meta_key, "name");
    assert_string_equal(d->meta_value, "books/nope");
    assert_non_null(d->resource_type);
    assert_string_equal(d->resource_type, SVC_RESOURCE_TYPE);
    assert_string_equal(d->resource_name, "books/nope");
    assert_int_equal(d->n_violations, 0);
}

static void test_invalid_argument(void **state)
{
    struct fixture *f = *state;
    Books__V1__Book *out = SENTINEL_BOOK;

    /* GetBook with a malformed name: one violation, on "name". */
    int rc = client_get_book(f->client, "shelves/x", &f->arena, &out, &f->err);
    assert_failed(rc, &f->err, GRPC_STATUS_INVALID_ARGUMENT, BOOKS_EINVAL, out, SENTINEL_BOOK);
    assert_string_equal(f->err.detail.reason, "FIELD_VIOLATION");
    assert_int_equal(f->err.detail.n_violations, 1);
    assert_true(has_violation(&f->err.detail, "name"));
    arena_reset(&f->arena);

    /* CreateBook with every field wrong: every violation comes back, each with its field. */
    Books__V1__Book empty = BOOKS__V1__BOOK__INIT;
    rc = client_create_book(f->client, &empty, "Not_An_Id", NULL, &f->arena, &out, &f->err);
    assert_failed(rc, &f->err, GRPC_STATUS_INVALID_ARGUMENT, BOOKS_EINVAL, out, SENTINEL_BOOK);
    assert_string_equal(f->err.detail.reason, "FIELD_VIOLATION");
    const char *fields[] = {"book_id", "book.display_name", "book.authors", "book.publisher"};
    for (size_t i = 0; i < 4; i++)
        if (!has_violation(&f->err.detail, fields[i]))
            fail_msg("no violation for %s", fields[i]);
    assert_int_equal(f->err.detail.n_violations, 4);
    arena_reset(&f->arena);

    /* ListBooks: a negative page size and a token this server never issued. */
    Books__V1__ListBooksResponse *page = (Books__V1__ListBooksResponse *)&page;
    rc = client_list_books(f->client, -1, "not-a-token", &f->arena, &page, &f->err);
    assert_failed(rc, &f->err, GRPC_STATUS_INVALID_ARGUMENT, BOOKS_EINVAL, page,
                  (Books__V1__ListBooksResponse *)&page);
    assert_true(has_violation(&f->err.detail, "page_size"));
    assert_true(has_violation(&f->err.detail, "page_token"));
    assert_int_equal(f->err.detail.n_violations, 2);
}

static void test_already_exists(void **state)
{
    struct fixture *f = *state;
    Books__V1__Book in = book_of("Dune", 1, herbert, "Chilton"), *out = SENTINEL_BOOK;
    create_ok(f, "dune");
    int rc = client_create_book(f->client, &in, "dune", NULL, &f->arena, &out, &f->err);
    assert_failed(rc, &f->err, GRPC_STATUS_ALREADY_EXISTS, BOOKS_EEXIST, out, SENTINEL_BOOK);
    assert_string_equal(f->err.detail.reason, "BOOK_ALREADY_EXISTS");
    assert_string_equal(f->err.detail.resource_type, SVC_RESOURCE_TYPE);
    assert_string_equal(f->err.detail.resource_name, "books/dune");
    assert_string_equal(f->err.detail.meta_value, "books/dune");
}

/* A request larger than the server accepts: RESOURCE_EXHAUSTED, whoever of gRPC core and the
 * codec refuses it. */
static void test_request_too_large(void **state)
{
    struct fixture *f = *state;
    char *title = malloc(MAX_RECV_BYTES + 1024);
    memset(title, 'x', MAX_RECV_BYTES + 1023);
    title[MAX_RECV_BYTES + 1023] = '\0';
    Books__V1__Book in = book_of(title, 1, herbert, "P"), *out = SENTINEL_BOOK;
    int rc = client_create_book(f->client, &in, "big", NULL, &f->arena, &out, &f->err);
    free(title);
    assert_int_equal(f->err.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rc, f->err.detail.code);
    assert_int_equal(rpc_status_of(rc), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_ptr_equal(out, SENTINEL_BOOK);
}

static void never_called(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    (void)self;
    (void)request;
    (void)reply;
    fail_msg("a method of the other service was called");
}

/* A server that does not host BooksService (another service only): UNIMPLEMENTED. */
static void test_unimplemented(void **state)
{
    (void)state;
    static const struct rpc_method other_methods[] = {
        {.path = "/test.v1.Other/Get",
         .request = &books__v1__get_book_request__descriptor,
         .handle = never_called},
    };
    static const struct rpc_service other = {
        .name = "test.v1.Other", .methods = other_methods, .n_methods = 1};
    struct server_options o = {
        .port = 0, .threads = 1, .max_recv_bytes = 4 << 20, .max_concurrent_streams = 10};
    struct server *s = NULL;
    char err[SERVER_ERR_BYTES];
    assert_int_equal(server_start(&o, &other, 1, &s, err, sizeof err), 0);
    struct client *c = client_for_port(server_port(s), NULL, NULL, CALL_TIMEOUT_MS);
    unsigned char buf[1024];
    struct arena a;
    struct client_error e;
    Books__V1__Book *out = SENTINEL_BOOK;
    arena_init(&a, buf, sizeof buf);
    int rc = client_get_book(c, "books/x", &a, &out, &e);
    assert_failed(rc, &e, GRPC_STATUS_UNIMPLEMENTED, BOOKS_EUNIMPL, out, SENTINEL_BOOK);
    client_free(c);
    arena_cleanup(&a);
    assert_int_equal(server_shutdown(s, 1000), 0);
    server_free(s);
}

/* ---- a stub server on gRPC core -------------------------------------------------------------- */

enum stub_mode {
    STUB_BOOK,       /* a Book named after the GetBookRequest's name, status OK */
    STUB_STATUS,     /* the status, message and details trailer configured */
    STUB_GARBAGE,    /* bytes that are no Book, status OK */
    STUB_NO_MESSAGE, /* status OK without a message */
    STUB_HANG,       /* nothing at all: waits until the client gives up */
};

#define STUB_MAX_CREATES 8

#define TAG_CALL ((void *)1)
#define TAG_SHUTDOWN ((void *)2)
#define TAG_BATCH ((void *)3)

struct stub {
    grpc_server *server;
    grpc_completion_queue *cq;      /* new calls and the shutdown (next) */
    grpc_completion_queue *call_cq; /* the calls' batches (pluck), waited on by the stub thread */
    pthread_t thread;
    int port;
    pthread_mutex_t mu;
    /* What to do with the next calls (set before calling). */
    enum stub_mode mode;
    grpc_status_code status;
    char message[BOOKS_ERROR_MESSAGE_BYTES];
    grpc_slice details; /* the grpc-status-details-bin value; empty: none sent */
    int book_after;     /* STUB_STATUS: from this call on (1-based), a Book instead; 0: never */
    /* What the last call carried. */
    int calls;
    char method[128];
    int n_authorization;
    char authorization[256];
    char user_agent[256];
    /* The request_id of each CreateBook, in order (at most STUB_MAX_CREATES). */
    int n_creates;
    char request_ids[STUB_MAX_CREATES][40];
};

static void copy_slice(char *dst, size_t cap, grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, GRPC_SLICE_START_PTR(s), n);
    dst[n] = '\0';
}

static void stub_batch(struct stub *s, grpc_call *call, grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(call, ops, n, TAG_BATCH, NULL) != GRPC_CALL_OK)
        abort();
    grpc_event ev = grpc_completion_queue_pluck(s->call_cq, TAG_BATCH,
                                                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
        abort();
}

static void stub_serve(struct stub *s, grpc_call *call, const grpc_call_details *details,
                       const grpc_metadata_array *md)
{
    grpc_byte_buffer *request = NULL, *response = NULL;
    int cancelled = 0;
    grpc_op ops[4];
    size_t n = 0;
    char name[128] = "";

    pthread_mutex_lock(&s->mu);
    s->calls++;
    copy_slice(s->method, sizeof s->method, details->method);
    s->n_authorization = 0;
    s->authorization[0] = s->user_agent[0] = '\0';
    for (size_t i = 0; i < md->count; i++) {
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization") == 0) {
            s->n_authorization++;
            copy_slice(s->authorization, sizeof s->authorization, md->metadata[i].value);
        } else if (grpc_slice_str_cmp(md->metadata[i].key, "user-agent") == 0) {
            copy_slice(s->user_agent, sizeof s->user_agent, md->metadata[i].value);
        }
    }
    enum stub_mode mode = s->mode;
    if (mode == STUB_STATUS && s->book_after > 0 && s->calls >= s->book_after)
        mode = STUB_BOOK;
    grpc_status_code status = s->status;
    grpc_slice message = grpc_slice_from_copied_string(s->message);
    grpc_slice details_bin = grpc_slice_ref(s->details);
    pthread_mutex_unlock(&s->mu);

    /* The request first, as a server must. */
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &request;
    stub_batch(s, call, ops, 1);
    if (request && strcmp(s->method, "/books.v1.BooksService/GetBook") == 0) {
        unsigned char buf[512];
        struct arena a;
        struct books_error e;
        ProtobufCMessage *m = NULL;
        arena_init(&a, buf, sizeof buf);
        books_error_init(&e, &a);
        if (codec_decode(request, &books__v1__get_book_request__descriptor, NULL, &a, &m, &e) ==
            0) {
            snprintf(name, sizeof name, "%s", ((Books__V1__GetBookRequest *)m)->name);
            codec_free_request(m, &a);
        }
        arena_cleanup(&a);
    } else if (request && strcmp(s->method, "/books.v1.BooksService/CreateBook") == 0) {
        unsigned char buf[1024];
        struct arena a;
        struct books_error e;
        ProtobufCMessage *m = NULL;
        arena_init(&a, buf, sizeof buf);
        books_error_init(&e, &a);
        if (codec_decode(request, &books__v1__create_book_request__descriptor, NULL, &a, &m, &e) ==
            0) {
            const Books__V1__CreateBookRequest *r = (const Books__V1__CreateBookRequest *)m;
            snprintf(name, sizeof name, "books/%s", r->book_id);
            pthread_mutex_lock(&s->mu);
            if (s->n_creates < STUB_MAX_CREATES)
                snprintf(s->request_ids[s->n_creates++], sizeof s->request_ids[0], "%s",
                         r->request_id);
            pthread_mutex_unlock(&s->mu);
            codec_free_request(m, &a);
        }
        arena_cleanup(&a);
    }

    memset(ops, 0, sizeof ops);
    grpc_metadata trailer = {.key = grpc_slice_from_static_string("grpc-status-details-bin"),
                             .value = details_bin};
    if (mode == STUB_HANG) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &cancelled;
        stub_batch(s, call, ops, n);
    } else {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        if (mode == STUB_BOOK) {
            Books__V1__Book b = book_of("Stub", 1, herbert, "Stub Press");
            b.name = name;
            codec_encode(&b.base, &response);
        } else if (mode == STUB_GARBAGE) {
            grpc_slice junk = grpc_slice_from_static_string("\xff\xff\xff");
            response = grpc_raw_byte_buffer_create(&junk, 1);
        }
        if (response) {
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = response;
        }
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = mode == STUB_STATUS ? status : GRPC_STATUS_OK;
        ops[n].data.send_status_from_server.status_details = mode == STUB_STATUS ? &message : NULL;
        if (mode == STUB_STATUS && !GRPC_SLICE_IS_EMPTY(details_bin)) {
            ops[n].data.send_status_from_server.trailing_metadata_count = 1;
            ops[n].data.send_status_from_server.trailing_metadata = &trailer;
        }
        n++;
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &cancelled;
        stub_batch(s, call, ops, n);
    }
    grpc_byte_buffer_destroy(request);
    grpc_byte_buffer_destroy(response);
    grpc_slice_unref(message);
    grpc_slice_unref(details_bin);
    grpc_call_unref(call);
}

static void *stub_run(void *arg)
{
    struct stub *s = arg;
    bool saw_shutdown = false;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        bool got = false;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        if (grpc_server_request_call(s->server, &call, &details, &md, s->call_cq, s->cq,
                                     TAG_CALL) != GRPC_CALL_OK)
            abort();
        for (;;) {
            grpc_event ev =
                grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type != GRPC_OP_COMPLETE)
                abort();
            if (ev.tag == TAG_SHUTDOWN) {
                saw_shutdown = true;
                continue; /* the pending request fails too; wait for it */
            }
            got = ev.success != 0;
            break;
        }
        if (got)
            stub_serve(s, call, &details, &md);
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
        if (!got)
            break; /* the server is shutting down */
    }
    while (!saw_shutdown) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        saw_shutdown = ev.type == GRPC_OP_COMPLETE && ev.tag == TAG_SHUTDOWN;
    }
    return NULL;
}

static struct stub *stub_start(void)
{
    struct stub *s = calloc(1, sizeof *s);
    grpc_init();
    pthread_mutex_init(&s->mu, NULL);
    s->details = grpc_empty_slice();
    s->server = grpc_server_create(NULL, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->call_cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    assert_true(s->port > 0);
    grpc_server_start(s->server);
    assert_int_equal(pthread_create(&s->thread, NULL, stub_run, s), 0);
    return s;
}

static void drain(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

static void stub_stop(struct stub *s)
{
    grpc_server_shutdown_and_notify(s->server, s->cq, TAG_SHUTDOWN);
    grpc_server_cancel_all_calls(s->server);
    pthread_join(s->thread, NULL);
    grpc_server_destroy(s->server);
    drain(s->cq);
    grpc_completion_queue_shutdown(s->call_cq);
    while (grpc_completion_queue_pluck(s->call_cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->call_cq);
    grpc_slice_unref(s->details);
    pthread_mutex_destroy(&s->mu);
    free(s);
    grpc_shutdown();
}

/* Sets what the stub answers: a status with a message, and details (NULL: no trailer). */
static void stub_answer(struct stub *s, enum stub_mode mode, grpc_status_code status,
                        const char *message, const struct books_error *details)
{
    pthread_mutex_lock(&s->mu);
    s->mode = mode;
    s->status = status;
    s->book_after = 0;
    snprintf(s->message, sizeof s->message, "%s", message ? message : "");
    grpc_slice_unref(s->details);
    s->details = grpc_empty_slice();
    if (details)
        assert_int_equal(codec_encode_status_details(details, &s->details), 0);
    pthread_mutex_unlock(&s->mu);
}

#define STUB_ALWAYS (-1)

/* Answers the next `failures` calls (STUB_ALWAYS: every call) with `status` and `message`, every
 * later one with a Book; and counts calls and creates from 0 again. */
static void stub_fail_then_book(struct stub *s, grpc_status_code status, const char *message,
                                int failures)
{
    stub_answer(s, STUB_STATUS, status, message, NULL);
    pthread_mutex_lock(&s->mu);
    s->book_after = failures == STUB_ALWAYS ? 0 : failures + 1;
    s->calls = 0;
    s->n_creates = 0;
    pthread_mutex_unlock(&s->mu);
}

static void stub_answer_bytes(struct stub *s, const char *bytes, size_t n)
{
    pthread_mutex_lock(&s->mu);
    grpc_slice_unref(s->details);
    s->details = grpc_slice_from_copied_buffer(bytes, n);
    pthread_mutex_unlock(&s->mu);
}

struct stub_fixture {
    struct stub *stub;
    struct arena arena;
    unsigned char buf[4096];
    struct client_error err;
};

static int stub_setup(void **state)
{
    struct stub_fixture *f = calloc(1, sizeof *f);
    f->stub = stub_start();
    arena_init(&f->arena, f->buf, sizeof f->buf);
    *state = f;
    return 0;
}

static int stub_teardown(void **state)
{
    struct stub_fixture *f = *state;
    stub_stop(f->stub);
    arena_cleanup(&f->arena);
    free(f);
    return 0;
}

/* ---- what the client sends ------------------------------------------------------------------- */

static void test_token_becomes_a_bearer_authorization(void **state)
{
    struct stub_fixture *f = *state;
    struct stub *s = f->stub;
    Books__V1__Book *out = NULL;
    stub_answer(s, STUB_BOOK, GRPC_STATUS_OK, NULL, NULL);

    struct client *c = client_for_port(s->port, "eyJhbGciOi.payload.sig-_~+/=", "books-cli/9.9.9",
                                       CALL_TIMEOUT_MS);
    for (int i = 0; i < 2; i++) { /* on every call, not only the first */
        assert_int_equal(client_get_book(c, "books/x", &f->arena, &out, &f->err), 0);
        assert_string_equal(out->name, "books/x"); /* the request reached the stub intact */
        codec_free_request(&out->base, &f->arena);
        pthread_mutex_lock(&s->mu);
        assert_string_equal(s->method, "/books.v1.BooksService/GetBook");
        assert_int_equal(s->n_authorization, 1);
        assert_string_equal(s->authorization, "Bearer eyJhbGciOi.payload.sig-_~+/=");
        /* The caller's user agent comes before gRPC's own. */
        assert_int_equal(strncmp(s->user_agent, "books-cli/9.9.9 ", 16), 0);
        assert_non_null(strstr(s->user_agent, "grpc-c/"));
        pthread_mutex_unlock(&s->mu);
    }
    /* The other two methods carry it too. */
    Books__V1__ListBooksResponse *page = NULL;
    stub_answer(s, STUB_STATUS, GRPC_STATUS_NOT_FOUND, "x", NULL);
    assert_int_equal(client_list_books(c, 0, NULL, &f->arena, &page, &f->err), BOOKS_ENOTFOUND);
    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->method, "/books.v1.BooksService/ListBooks");
    assert_string_equal(s->authorization, "Bearer eyJhbGciOi.payload.sig-_~+/=");
    pthread_mutex_unlock(&s->mu);
    Books__V1__Book in = book_of("T", 1, herbert, "P");
    assert_int_equal(client_create_book(c, &in, "t", NULL, &f->arena, &out, &f->err),
                     BOOKS_ENOTFOUND);
    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->method, "/books.v1.BooksService/CreateBook");
    assert_string_equal(s->authorization, "Bearer eyJhbGciOi.payload.sig-_~+/=");
    pthread_mutex_unlock(&s->mu);
    client_free(c);

    /* Without a token there is no authorization header at all. */
    stub_answer(s, STUB_BOOK, GRPC_STATUS_OK, NULL, NULL);
    c = client_for_port(s->port, NULL, NULL, CALL_TIMEOUT_MS);
    assert_int_equal(client_get_book(c, "books/y", &f->arena, &out, &f->err), 0);
    codec_free_request(&out->base, &f->arena);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->n_authorization, 0);
    assert_non_null(strstr(s->user_agent, "grpc-c/"));
    pthread_mutex_unlock(&s->mu);
    client_free(c);
}

/* ---- every status, with its details ---------------------------------------------------------- */

/* For each error a books server can send (every enum books_err, as rpc_status_of() maps it), the
 * client returns the status it got, the code nearest to it (which maps back to the same status),
 * the message, and every AIP-193 detail: reason, metadata, resource, field violations. */
static void test_every_status_comes_back_with_its_details(void **state)
{
    struct stub_fixture *f = *state;
    struct client *c = client_for_port(f->stub->port, NULL, NULL, CALL_TIMEOUT_MS);
    for (int code = BOOKS_EINVAL; code >= BOOKS_ERR_LOWEST; code--) {
        struct books_error sent;
        books_error_init(&sent, NULL);
        books_error_set(&sent, code, "SOME_REASON", "message for %s", books_err_name(code));
        books_error_set_meta(&sent, "name", "books/m");
        books_error_set_resource(&sent, SVC_RESOURCE_TYPE, "books/r");
        books_error_add_violation(&sent, "book.authors[2]", "is empty");
        books_error_add_violation(&sent, "book_id", "is not an id");
        grpc_status_code status = rpc_status_of(code);
        stub_answer(f->stub, STUB_STATUS, status, sent.message, &sent);

        Books__V1__Book *out = SENTINEL_BOOK;
        int rc = client_get_book(c, "books/x", &f->arena, &out, &f->err);
        const struct books_error *d = &f->err.detail;
        if (f->err.status != status)
            fail_msg("%s: status %s, sent %s", books_err_name(code), rpc_status_name(f->err.status),
                     rpc_status_name(status));
        assert_int_equal(rc, d->code);
        assert_true(rc < 0);
        assert_int_equal(rpc_status_of(rc), status);
        assert_ptr_equal(out, SENTINEL_BOOK);
        assert_string_equal(d->message, sent.message);
        assert_non_null(d->reason);
        assert_string_equal(d->reason, "SOME_REASON");
        assert_string_equal(d->meta_key, "name");
        assert_string_equal(d->meta_value, "books/m");
        assert_string_equal(d->resource_type, SVC_RESOURCE_TYPE);
        assert_string_equal(d->resource_name, "books/r");
        assert_int_equal(d->n_violations, 2);
        assert_string_equal(d->violations[0].field, "book.authors[2]");
        assert_string_equal(d->violations[0].description, "is empty");
        assert_string_equal(d->violations[1].field, "book_id");
        assert_string_equal(d->violations[1].description, "is not an id");
        arena_reset(&f->arena);
    }
    client_free(c);
}

/* The codes the header names, and statuses this server never sends (a proxy's, or Cloud Run's
 * UNAUTHENTICATED and PERMISSION_DENIED): their status and message, no reason (no ErrorInfo), and
 * BOOKS_EINTERNAL where no enum books_err matches. */
static void test_statuses_without_details(void **state)
{
    struct stub_fixture *f = *state;
    struct client *c = client_for_port(f->stub->port, NULL, NULL, CALL_TIMEOUT_MS);
    static const struct {
        grpc_status_code status;
        int code;
    } cases[] = {
        {GRPC_STATUS_NOT_FOUND, BOOKS_ENOTFOUND},
        {GRPC_STATUS_INVALID_ARGUMENT, BOOKS_EINVAL},
        {GRPC_STATUS_UNAVAILABLE, BOOKS_EUNAVAIL},
        {GRPC_STATUS_DEADLINE_EXCEEDED, BOOKS_EDEADLINE},
        {GRPC_STATUS_ALREADY_EXISTS, BOOKS_EEXIST},
        {GRPC_STATUS_UNIMPLEMENTED, BOOKS_EUNIMPL},
        {GRPC_STATUS_UNAUTHENTICATED, BOOKS_EINTERNAL},
        {GRPC_STATUS_PERMISSION_DENIED, BOOKS_EINTERNAL},
        {GRPC_STATUS_UNKNOWN, BOOKS_EUNKNOWN},
        {GRPC_STATUS_ABORTED, BOOKS_EABORTED},
        {GRPC_STATUS_FAILED_PRECONDITION, BOOKS_EREFUSED},
        {GRPC_STATUS_INTERNAL, BOOKS_EINTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "the proxy says %s", rpc_status_name(cases[i].status));
        stub_answer(f->stub, STUB_STATUS, cases[i].status, msg, NULL);
        Books__V1__Book *out = SENTINEL_BOOK;
        int rc = client_get_book(c, "books/x", &f->arena, &out, &f->err);
        assert_failed(rc, &f->err, cases[i].status, cases[i].code, out, SENTINEL_BOOK);
        assert_string_equal(f->err.detail.message, msg);
        assert_null(f->err.detail.reason);
        assert_int_equal(f->err.detail.n_violations, 0);
        arena_reset(&f->arena);
    }
    client_free(c);
}

/* A details trailer that is not a google.rpc.Status: left out, the status and message still come
 * back. */
static void test_undecodable_details_are_left_out(void **state)
{
    struct stub_fixture *f = *state;
    struct client *c = client_for_port(f->stub->port, NULL, NULL, CALL_TIMEOUT_MS);
    stub_answer(f->stub, STUB_STATUS, GRPC_STATUS_NOT_FOUND, "gone", NULL);
    stub_answer_bytes(f->stub, "\xff\xff\xff\xff", 4);
    Books__V1__Book *out = SENTINEL_BOOK;
    int rc = client_get_book(c, "books/x", &f->arena, &out, &f->err);
    assert_failed(rc, &f->err, GRPC_STATUS_NOT_FOUND, BOOKS_ENOTFOUND, out, SENTINEL_BOOK);
    assert_string_equal(f->err.detail.message, "gone");
    assert_null(f->err.detail.reason);
    assert_int_equal(f->err.detail.n_violations, 0);
    client_free(c);
}

/* OK with no response, or with bytes that are not the method's response: INTERNAL, BOOKS_EBADMSG,
 * *out untouched. */
static void test_bad_responses(void **state)
{
    struct stub_fixture *f = *state;
    struct client *c = client_for_port(f->stub->port, NULL, NULL, CALL_TIMEOUT_MS);
    const enum stub_mode modes[] = {STUB_NO_MESSAGE, STUB_GARBAGE};
    for (int i = 0; i < 2; i++) {
        stub_answer(f->stub, modes[i], GRPC_STATUS_OK, NULL, NULL);
        Books__V1__Book *out = SENTINEL_BOOK;
        int rc = client_get_book(c, "books/x", &f->arena, &out, &f->err);
        assert_failed(rc, &f->err, GRPC_STATUS_INTERNAL, BOOKS_EBADMSG, out, SENTINEL_BOOK);
        Books__V1__ListBooksResponse *page = (Books__V1__ListBooksResponse *)&page;
        rc = client_list_books(c, 0, NULL, &f->arena, &page, &f->err);
        assert_failed(rc, &f->err, GRPC_STATUS_INTERNAL, BOOKS_EBADMSG, page,
                      (Books__V1__ListBooksResponse *)&page);
        arena_reset(&f->arena);
    }
    client_free(c);
}

/* ---- the deadline ---------------------------------------------------------------------------- */

/* A server that takes the call and never answers: the call ends at the client's deadline with
 * DEADLINE_EXCEEDED, not earlier, and the client stays usable. */
static void test_deadline_against_a_server_that_does_not_answer(void **state)
{
    struct stub_fixture *f = *state;
    const int timeout_ms = 400;
    struct client *c = client_for_port(f->stub->port, NULL, NULL, timeout_ms);
    /* Connect first, so the deadline below is spent waiting for the answer alone. */
    stub_answer(f->stub, STUB_BOOK, GRPC_STATUS_OK, NULL, NULL);
    Books__V1__Book *out = NULL;
    assert_int_equal(client_get_book(c, "books/warm", &f->arena, &out, &f->err), 0);
    codec_free_request(&out->base, &f->arena);

    stub_answer(f->stub, STUB_HANG, GRPC_STATUS_OK, NULL, NULL);
    out = SENTINEL_BOOK;
    long t0 = now_ms();
    int rc = client_get_book(c, "books/x", &f->arena, &out, &f->err);
    long took = now_ms() - t0;
    assert_failed(rc, &f->err, GRPC_STATUS_DEADLINE_EXCEEDED, BOOKS_EDEADLINE, out, SENTINEL_BOOK);
    assert_null(f->err.detail.reason);
    if (took < timeout_ms - 20) /* gRPC's timer may round by a millisecond or so */
        fail_msg("gave up after %ld ms, before the %d ms deadline", took, timeout_ms);

    /* The next call gets its own deadline and works. */
    stub_answer(f->stub, STUB_BOOK, GRPC_STATUS_OK, NULL, NULL);
    assert_int_equal(client_get_book(c, "books/after", &f->arena, &out, &f->err), 0);
    assert_string_equal(out->name, "books/after");
    codec_free_request(&out->base, &f->arena);
    client_free(c);
}

/* A peer that accepts TCP connections and never speaks HTTP/2 (a listening socket nobody
 * accepts from): the call still ends at the deadline. */
static void test_deadline_against_a_silent_socket(void **state)
{
    (void)state;
    int fd;
    int port = unserved_port(&fd);
    assert_int_equal(listen(fd, 16), 0);
    const int timeout_ms = 400;
    struct client *c = client_for_port(port, NULL, NULL, timeout_ms);
    unsigned char buf[1024];
    struct arena a;
    struct client_error e;
    Books__V1__Book *out = SENTINEL_BOOK;
    arena_init(&a, buf, sizeof buf);
    long t0 = now_ms();
    int rc = client_get_book(c, "books/x", &a, &out, &e);
    long took = now_ms() - t0;
    assert_failed(rc, &e, GRPC_STATUS_DEADLINE_EXCEEDED, BOOKS_EDEADLINE, out, SENTINEL_BOOK);
    if (took < timeout_ms - 20)
        fail_msg("gave up after %ld ms, before the %d ms deadline", took, timeout_ms);
    client_free(c);
    arena_cleanup(&a);
    close(fd);
}

/* ---- targets and options --------------------------------------------------------------------- */

static void test_client_new_refuses_bad_options(void **state)
{
    (void)state;
    struct client *c = (struct client *)&c; /* must stay untouched */
    const struct client_options bad[] = {
        {.target = NULL, .timeout_ms = 1000},
        {.target = "", .timeout_ms = 1000},
        {.target = "127.0.0.1:1", .timeout_ms = 0},
        {.target = "127.0.0.1:1", .timeout_ms = -5},
        {.target = "127.0.0.1:1", .timeout_ms = 1000, .token = "abc\ndef"},
        {.target = "127.0.0.1:1", .timeout_ms = 1000, .token = "abc\r\nX-Injected: 1"},
        {.target = "127.0.0.1:1", .timeout_ms = 1000, .token = "\x01"},
        {.target = "127.0.0.1:1", .timeout_ms = 1000, .user_agent = "agent\r\nx: y"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (client_new(&bad[i], &c) != BOOKS_EINVAL)
            fail_msg("options %zu were not refused with BOOKS_EINVAL", i);
        assert_ptr_equal(c, (struct client *)&c);
    }
}

/* Targets nobody serves, or that cannot be reached: the call fails with UNAVAILABLE (or, when
 * resolving or connecting takes longer than the deadline, DEADLINE_EXCEEDED), the transport's own
 * message, and no AIP-193 reason: nothing from a books server came back. */
static void test_targets_nobody_serves(void **state)
{
    (void)state;
    int fd;
    char refused[64];
    snprintf(refused, sizeof refused, "127.0.0.1:%d", unserved_port(&fd));
    char refused_ipv4[80];
    snprintf(refused_ipv4, sizeof refused_ipv4, "ipv4:%s", refused);
    static const char *const unresolvable = "no-such-host.invalid:443";
    const struct {
        const char *target;
        bool tls;
        bool may_time_out; /* DNS may be slow or absent in a sandbox */
    } cases[] = {
        {refused, false, false},     {refused_ipv4, false, false},
        {refused, true, false},      {"unix:/nonexistent/books.sock", false, false},
        {unresolvable, false, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct client *c = NULL;
        struct client_options o = {
            .target = cases[i].target, .tls = cases[i].tls, .timeout_ms = 5000};
        assert_int_equal(client_new(&o, &c), 0); /* connecting is lazy */
        unsigned char buf[1024];
        struct arena a;
        struct client_error e;
        Books__V1__Book *out = SENTINEL_BOOK;
        arena_init(&a, buf, sizeof buf);
        int rc = client_get_book(c, "books/x", &a, &out, &e);
        if (!(e.status == GRPC_STATUS_UNAVAILABLE ||
              (cases[i].may_time_out && e.status == GRPC_STATUS_DEADLINE_EXCEEDED)))
            fail_msg("%s: status %s (%s)", cases[i].target, rpc_status_name(e.status),
                     e.detail.message);
        assert_int_equal(rc, e.detail.code);
        assert_int_equal(rc,
                         e.status == GRPC_STATUS_UNAVAILABLE ? BOOKS_EUNAVAIL : BOOKS_EDEADLINE);
        assert_true(strlen(e.detail.message) > 0);
        assert_null(e.detail.reason);
        assert_ptr_equal(out, SENTINEL_BOOK);
        client_free(c);
        arena_cleanup(&a);
    }
    close(fd);
}

/* A target gRPC cannot even parse gets a channel whose calls fail with a status (never a crash or
 * a hang), and that status is what the call returns. */
static void test_unparseable_target(void **state)
{
    (void)state;
    struct client *c = NULL;
    struct client_options o = {.target = "nosuchscheme:///x", .timeout_ms = 5000};
    assert_int_equal(client_new(&o, &c), 0);
    unsigned char buf[1024];
    struct arena a;
    struct client_error e;
    Books__V1__Book *out = SENTINEL_BOOK;
    arena_init(&a, buf, sizeof buf);
    int rc = client_get_book(c, "books/x", &a, &out, &e);
    assert_true(rc < 0);
    assert_true(e.status != GRPC_STATUS_OK);
    assert_int_equal(rc, e.detail.code);
    assert_ptr_equal(out, SENTINEL_BOOK);
    client_free(c);
    arena_cleanup(&a);
}

/* ---- cleanup --------------------------------------------------------------------------------- */

/* ---- `books create`'s retries (cli_run()) ------------------------------------------------------
 */

/* `books create --addr STUB --id x ... --retries RETRIES`, parsed by cli_parse() and run by
 * cli_run(): the exit status, and what it printed on stdout and stderr (*out, *errs: the caller
 * frees them). */
static int books_create(const struct stub *s, const char *retries, char **out, char **errs)
{
    char addr[32], err[CLI_ERR_BYTES];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s->port);
    char *argv[] = {
        "books", "create",   "--addr", addr,          "--id", "x",         "--title",
        "T",     "--author", "A",      "--publisher", "P",    "--retries", (char *)retries,
        NULL};
    char *const envp[] = {NULL};
    struct cli_args a;
    size_t out_len = 0, errs_len = 0;
    if (cli_parse(&a, (int)(sizeof argv / sizeof argv[0]) - 1, argv, envp, err, sizeof err) != 0)
        fail_msg("cli_parse: %s", err);
    FILE *o = open_memstream(out, &out_len), *e = open_memstream(errs, &errs_len);
    assert_non_null(o);
    assert_non_null(e);
    int status = cli_run(&a, o, e);
    assert_int_equal(fclose(o), 0);
    assert_int_equal(fclose(e), 0);
    cli_args_cleanup(&a);
    return status;
}

/* A create that ends UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN or ABORTED (what the server answers
 * for a store conflict, STORE_ABORTED: "... retry it") is tried again with the same request_id,
 * --retries times, and prints the book a later attempt makes; when the attempts run out it prints
 * the request_id to finish it with. Every other status is final: one call. */
static void test_cli_create_retries_with_the_same_request_id(void **state)
{
    struct stub_fixture *f = *state;
    struct stub *s = f->stub;
    static const grpc_status_code retried[] = {GRPC_STATUS_ABORTED, GRPC_STATUS_UNAVAILABLE,
                                               GRPC_STATUS_DEADLINE_EXCEEDED, GRPC_STATUS_UNKNOWN};
    static const grpc_status_code final[] = {
        GRPC_STATUS_FAILED_PRECONDITION, GRPC_STATUS_ALREADY_EXISTS,
        GRPC_STATUS_INVALID_ARGUMENT,    GRPC_STATUS_NOT_FOUND,
        GRPC_STATUS_RESOURCE_EXHAUSTED,  GRPC_STATUS_INTERNAL,
        GRPC_STATUS_PERMISSION_DENIED,   GRPC_STATUS_UNAUTHENTICATED,
        GRPC_STATUS_UNIMPLEMENTED};
    char *out = NULL, *errs = NULL, want[160];
    int rc;

    for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++) {
        const char *name = rpc_status_name(retried[i]);
        stub_fail_then_book(s, retried[i], "retry it", 2);
        rc = books_create(s, "3", &out, &errs);
        pthread_mutex_lock(&s->mu);
        if (rc != CLI_EXIT_OK || s->calls != 3 || s->n_creates != 3)
            fail_msg("%s: exit %d after %d calls; stderr: %s", name, rc, s->calls, errs);
        assert_int_equal(strlen(s->request_ids[0]), 36);
        assert_string_equal(s->request_ids[1], s->request_ids[0]);
        assert_string_equal(s->request_ids[2], s->request_ids[0]);
        snprintf(want, sizeof want,
                 "books: %s (retry it); retrying with request_id %s (attempt 2 of 4)\n", name,
                 s->request_ids[0]);
        pthread_mutex_unlock(&s->mu);
        if (!strstr(errs, want))
            fail_msg("%s: expected '%s' in stderr: %s", name, want, errs);
        assert_non_null(strstr(errs, "(attempt 3 of 4)\n"));
        assert_null(strstr(errs, "(attempt 4 of 4)"));
        assert_non_null(strstr(out, "books/x  \"Stub\""));
        free(out);
        free(errs);
    }

    /* The attempts run out: the last error, and how to finish the create later. */
    stub_fail_then_book(s, GRPC_STATUS_ABORTED, "retry it", STUB_ALWAYS);
    rc = books_create(s, "1", &out, &errs);
    assert_int_equal(rc, CLI_EXIT_FAILED);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->calls, 2);
    assert_int_equal(s->n_creates, 2);
    assert_string_equal(s->request_ids[1], s->request_ids[0]);
    snprintf(want, sizeof want, "retry with --request-id %s to get it", s->request_ids[0]);
    pthread_mutex_unlock(&s->mu);
    assert_non_null(strstr(errs, "ABORTED: retry it\n"));
    assert_non_null(strstr(errs, want));
    assert_string_equal(out, "");
    free(out);
    free(errs);

    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++) {
        const char *name = rpc_status_name(final[i]);
        stub_fail_then_book(s, final[i], "no", STUB_ALWAYS);
        rc = books_create(s, "3", &out, &errs);
        pthread_mutex_lock(&s->mu);
        if (rc != CLI_EXIT_FAILED || s->calls != 1)
            fail_msg("%s: exit %d after %d calls; stderr: %s", name, rc, s->calls, errs);
        pthread_mutex_unlock(&s->mu);
        assert_null(strstr(errs, "retrying"));
        assert_null(strstr(errs, "--request-id"));
        free(out);
        free(errs);
    }
}

/* client_free(NULL) is a no-op; clients made and freed, with and without calls, failed calls among
 * them, leave nothing behind (valgrind and ASan check), and each pairs its grpc_init() so gRPC
 * still works for the next. */
static void test_client_free(void **state)
{
    struct fixture *f = *state;
    client_free(NULL);
    for (int i = 0; i < 3; i++) {
        struct client *c = client_for_port(server_port(f->server), "t", "ua/1", CALL_TIMEOUT_MS);
        client_free(c); /* never called */
    }
    for (int i = 0; i < 3; i++) {
        struct client *c = client_for_port(server_port(f->server), "t", NULL, CALL_TIMEOUT_MS);
        Books__V1__Book *out = NULL;
        assert_int_equal(client_get_book(c, "books/none", &f->arena, &out, &f->err),
                         BOOKS_ENOTFOUND);
        arena_reset(&f->arena);
        client_free(c);
    }
    /* The fixture's own client still works after the others went. */
    create_ok(f, "still-here");
}

int main(void)
{
    log_init(LOG_ERROR, STDERR_FILENO); /* the server's per-call log lines are not this test's */
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define S(name) cmocka_unit_test_setup_teardown(name, stub_setup, stub_teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_then_get),
        T(test_create_without_id),
        T(test_list_pages),
        T(test_not_found),
        T(test_invalid_argument),
        T(test_already_exists),
        T(test_request_too_large),
        cmocka_unit_test(test_unimplemented),
        S(test_token_becomes_a_bearer_authorization),
        S(test_every_status_comes_back_with_its_details),
        S(test_statuses_without_details),
        S(test_undecodable_details_are_left_out),
        S(test_bad_responses),
        S(test_deadline_against_a_server_that_does_not_answer),
        S(test_cli_create_retries_with_the_same_request_id),
        cmocka_unit_test(test_deadline_against_a_silent_socket),
        cmocka_unit_test(test_client_new_refuses_bad_options),
        cmocka_unit_test(test_targets_nobody_serves),
        cmocka_unit_test(test_unparseable_target),
        T(test_client_free),
    };
#undef T
#undef S
    return cmocka_run_group_tests(tests, NULL, NULL);
}
