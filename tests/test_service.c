/* test_service.c: every API rule of books.v1.BooksService, called directly on the handlers over a
 * real memory store (AIP-122 names, AIP-131 Get, AIP-133 Create, AIP-132/158 List, AIP-193 error
 * contents). Generated ids are made deterministic by injecting the id generator; one test keeps
 * the default and checks that it yields UUID4s. Another wraps the store so creates finish later, as
 * a durable store's do, to pin down the asynchronous reply contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/codec.h"
#include "books/page_token.h"
#include "books/service.h"
#include "books/store.h"
#include "books/v1/books.pb-c.h"

struct fixture {
    struct store *store;
    struct svc *svc;
    int next_id;
    /* the reply of the last call */
    struct rpc_reply reply;
    struct arena arena;
    unsigned char buf[1024];
    int done_calls;
    /* what the server would send for the last reply, decoded as a client does (or NULL) */
    ProtobufCMessage *sent;
    size_t sent_bytes;
};

static struct fixture *current;

static void counting_id(void *arg, char out[SVC_NAME_BYTES])
{
    struct fixture *f = arg;
    snprintf(out, SVC_NAME_BYTES, "gen-%d", ++f->next_id);
}

static int setup(void **state)
{
    char err[STORE_ERR_BYTES];
    struct fixture *f = calloc(1, sizeof *f);
    assert_int_equal(store_open("memory:", NULL, &f->store, err, sizeof err), 0);
    assert_int_equal(svc_new(f->store, &f->svc), 0);
    svc_set_id_generator(f->svc, counting_id, f);
    arena_init(&f->arena, f->buf, sizeof f->buf);
    *state = f;
    current = f;
    return 0;
}

static void reply_finish(struct fixture *f)
{
    if (f->sent)
        protobuf_c_message_free_unpacked(f->sent, NULL);
    f->sent = NULL;
    if (f->reply.release)
        f->reply.release(&f->reply);
    f->reply.release = NULL;
    /* The server gives back what a call charged when the call is over. */
    if (f->reply.budget && f->reply.charged)
        budget_release(f->reply.budget, f->reply.charged);
    f->reply.charged = 0;
    arena_reset(&f->arena);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    reply_finish(f);
    arena_cleanup(&f->arena);
    svc_free(f->svc);
    store_close(f->store);
    free(f);
    return 0;
}

static void on_done(struct rpc_reply *r)
{
    (void)r;
    current->done_calls++;
}

/* Runs one handler, checks it answered exactly once, before returning, and decodes what the server
 * would send (rpc.h: the response packed, or its embedded parts with the rest) as a message of type
 * `desc` into f->sent, as a client would. */
static struct rpc_reply *call_as(struct fixture *f, rpc_unary_fn fn, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *desc)
{
    reply_finish(f);
    f->reply.arena = &f->arena;
    f->reply.response = NULL;
    f->reply.embedded = NULL;
    f->reply.n_embedded = 0;
    f->reply.embed_field = 0;
    books_error_init(&f->reply.error, &f->arena);
    f->reply.release = NULL;
    f->reply.release_arg = NULL;
    f->reply.done = on_done;
    f->done_calls = 0;
    fn(f->svc, req, &f->reply);
    assert_int_equal(f->done_calls, 1);
    if (f->reply.error.code == 0) {
        size_t n = f->reply.n_embedded
                       ? codec_embedded_write(f->reply.response, f->reply.embed_field,
                                              f->reply.embedded, f->reply.n_embedded, NULL)
                       : codec_pack(f->reply.response, NULL);
        uint8_t *sent = malloc(n + 1);
        size_t wrote = f->reply.n_embedded
                           ? codec_embedded_write(f->reply.response, f->reply.embed_field,
                                                  f->reply.embedded, f->reply.n_embedded, sent)
                           : codec_pack(f->reply.response, sent);
        assert_int_equal(wrote, n);
        f->sent = protobuf_c_message_unpack(desc, NULL, n, sent);
        f->sent_bytes = n;
        assert_non_null(f->sent); /* a message a client accepts */
        free(sent);
    }
    return &f->reply;
}

static struct rpc_reply *call(struct fixture *f, rpc_unary_fn fn, const ProtobufCMessage *req)
{
    return call_as(f, fn, req,
                   fn == svc_list_books ? &books__v1__list_books_response__descriptor
                                        : &books__v1__book__descriptor);
}

static struct rpc_reply *get_book(struct fixture *f, const char *name)
{
    Books__V1__GetBookRequest req = BOOKS__V1__GET_BOOK_REQUEST__INIT;
    req.name = (char *)name;
    return call(f, svc_get_book, &req.base);
}

static struct rpc_reply *create_book(struct fixture *f, const char *id, const char *title,
                                     size_t n_authors, char **authors, const char *publisher)
{
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    book.display_name = (char *)title;
    book.n_authors = n_authors;
    book.authors = authors;
    book.publisher = (char *)publisher;
    req.book = &book;
    req.book_id = (char *)(id ? id : "");
    return call(f, svc_create_book, &req.base);
}

static char *one_author[] = {"Author A"};

/* CreateBook with an AIP-155 request_id. */
static struct rpc_reply *create_with_authors(struct fixture *f, const char *id, const char *title,
                                             size_t n_authors, char **authors,
                                             const char *request_id)
{
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    book.display_name = (char *)title;
    book.n_authors = n_authors;
    book.authors = authors;
    book.publisher = "P";
    req.book = &book;
    req.book_id = (char *)(id ? id : "");
    req.request_id = (char *)request_id;
    return call(f, svc_create_book, &req.base);
}

static struct rpc_reply *create_with_request(struct fixture *f, const char *id, const char *title,
                                             const char *request_id)
{
    return create_with_authors(f, id, title, 1, one_author, request_id);
}

static void create_ok(struct fixture *f, const char *id)
{
    struct rpc_reply *r = create_book(f, id, "Title", 1, one_author, "Publisher");
    assert_int_equal(r->error.code, 0);
}

static struct rpc_reply *list_books(struct fixture *f, int page_size, const char *token)
{
    Books__V1__ListBooksRequest req = BOOKS__V1__LIST_BOOKS_REQUEST__INIT;
    req.page_size = page_size;
    req.page_token = (char *)(token ? token : "");
    return call(f, svc_list_books, &req.base);
}

static const Books__V1__Book *book_of(struct rpc_reply *r)
{
    assert_int_equal(r->error.code, 0);
    assert_ptr_equal(current->sent->descriptor, &books__v1__book__descriptor);
    return (const Books__V1__Book *)current->sent;
}

static const Books__V1__ListBooksResponse *page_of(struct rpc_reply *r)
{
    assert_int_equal(r->error.code, 0);
    assert_ptr_equal(current->sent->descriptor, &books__v1__list_books_response__descriptor);
    return (const Books__V1__ListBooksResponse *)current->sent;
}

static void assert_field_error(struct rpc_reply *r, size_t n, const char *const *fields)
{
    assert_int_equal(r->error.code, BOOKS_EINVAL);
    assert_string_equal(r->error.reason, "FIELD_VIOLATION");
    assert_int_equal(r->error.n_violations, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(r->error.violations[i].field, fields[i]);
        assert_true(strlen(r->error.violations[i].description) > 5);
        /* the status message names every bad field */
        assert_non_null(strstr(r->error.message, fields[i]));
    }
}

/* ---- the memory budget of calls in flight (rpc.h) ------------------------------------------- */

/* A ListBooks page is held to what the budget has room for: with room for about 200 KB a page of
 * large books stops early (with a next_page_token), is charged to the call, and walking the tokens
 * still gives every book once; with room for less than one large book the call is refused
 * UNAVAILABLE (OVERLOADED), and a create that does not fit is refused without being stored. */
static void test_budget_bounds_pages_and_creates(void **state)
{
    struct fixture *f = *state;
    static char big[500];
    char *authors[100], id[16];
    struct budget b;
    memset(big, 'x', sizeof big - 1);
    for (size_t i = 0; i < 100; i++)
        authors[i] = big;
    for (int i = 0; i < 30; i++) { /* about 50 KB each */
        snprintf(id, sizeof id, "big-%02d", i);
        assert_int_equal(create_book(f, id, "Big", 100, authors, "P")->error.code, 0);
    }
    budget_init(&b, 3 * 200 * 1024);
    f->reply.budget = &b;
    const Books__V1__ListBooksResponse *p = page_of(list_books(f, 50, NULL));
    assert_true(p->n_books >= 1 && p->n_books <= 4);
    assert_true(p->next_page_token[0] != '\0');
    assert_true(f->reply.charged >= p->n_books * 50000); /* the page's records are charged */
    /* ... out of the page's reservation (SVC_PAGE_RESERVE pages of a third of the room), not
     * beside it: a page is counted once while it is held */
    assert_true(f->reply.charged <= SVC_PAGE_RESERVE * (b.limit / SVC_PAGE_MEMORY_FACTOR));
    size_t seen = p->n_books;
    char token[PAGE_TOKEN_MAX_CHARS];
    while (p->next_page_token[0]) {
        snprintf(token, sizeof token, "%s", p->next_page_token);
        p = page_of(list_books(f, 50, token));
        seen += p->n_books;
        assert_true(seen <= 30);
    }
    assert_int_equal(seen, 30);
    reply_finish(f);
    assert_int_equal(budget_used(&b), 0);

    /* Less room than a page of one large book takes: refused, nothing read. */
    assert_true(budget_try_charge(&b, b.limit - SVC_PAGE_MEMORY_FACTOR * SVC_MIN_PAGE_BYTES + 1));
    struct rpc_reply *r = list_books(f, 50, NULL);
    assert_int_equal(r->error.code, BOOKS_EBUSY);
    assert_string_equal(r->error.reason, "OVERLOADED");
    /* A create whose record does not fit: refused, and the book is not there. */
    budget_init(&b, 16);
    r = create_book(f, "no-room", "T", 1, one_author, "P");
    assert_int_equal(r->error.code, BOOKS_EBUSY);
    f->reply.budget = NULL;
    assert_int_equal(get_book(f, "books/no-room")->error.code, BOOKS_ENOTFOUND);
}

/* ---- AIP-155 request ids ------------------------------------------------------------------------ */

/* A retried CreateBook (the same request_id and request) answers with the first call's book,
 * server-assigned name included, and makes no second book; a request_id in either case is one id;
 * the same id with another request is FAILED_PRECONDITION (REQUEST_ID_REUSED, naming the id); an id
 * that is not a UUID4 is a field violation. */
static void test_request_id(void **state)
{
    struct fixture *f = *state;
    char name[SVC_NAME_BYTES + 8];
    const char *rid = "0f2b8c1e-9d4a-4f6b-8c2d-1e5f7a9b0c3d";
    const char *rid_upper = "0F2B8C1E-9D4A-4F6B-8C2D-1E5F7A9B0C3D";

    snprintf(name, sizeof name, "%s", book_of(create_with_request(f, NULL, "Once", rid))->name);
    assert_string_equal(name, "books/gen-1");
    assert_string_equal(book_of(create_with_request(f, NULL, "Once", rid))->name, name);
    assert_string_equal(book_of(create_with_request(f, NULL, "Once", rid_upper))->name, name);
    assert_int_equal(page_of(list_books(f, 10, NULL))->n_books, 1);

    struct rpc_reply *r = create_with_request(f, NULL, "Another title", rid);
    assert_int_equal(r->error.code, BOOKS_EREUSED);
    assert_string_equal(r->error.reason, "REQUEST_ID_REUSED");
    assert_non_null(strstr(r->error.message, rid));
    /* A client-chosen id is part of the request too. */
    r = create_with_request(f, "chosen", "Once", rid);
    assert_int_equal(r->error.code, BOOKS_EREUSED);
    assert_int_equal(page_of(list_books(f, 10, NULL))->n_books, 1);

    /* Every author is part of the request, in order: a retry with the same authors finds the
     * book; the same authors in another order, or one author's text moved into the next, is
     * another request. */
    const char *rid2 = "6a1d3c2e-0b7f-4e8a-9c5d-2f4b6a8c0e1f";
    char *three[] = {"Ann", "Bo", "Cy"}, *swapped[] = {"Bo", "Ann", "Cy"},
         *moved[] = {"An", "nBo", "Cy"};
    snprintf(name, sizeof name, "%s", book_of(create_with_authors(f, NULL, "Three", 3, three, rid2))->name);
    assert_string_equal(book_of(create_with_authors(f, NULL, "Three", 3, three, rid2))->name, name);
    assert_int_equal(create_with_authors(f, NULL, "Three", 3, swapped, rid2)->error.code, BOOKS_EREUSED);
    assert_int_equal(create_with_authors(f, NULL, "Three", 3, moved, rid2)->error.code, BOOKS_EREUSED);
    assert_int_equal(create_with_authors(f, NULL, "Three", 2, three, rid2)->error.code, BOOKS_EREUSED);
    assert_int_equal(page_of(list_books(f, 10, NULL))->n_books, 2);

    static const char *const f_rid[] = {"request_id"};
    static const char *const bad[] = {"not-a-uuid", "0f2b8c1e-9d4a-3f6b-8c2d-1e5f7a9b0c3d",
                                      "0f2b8c1e9d4a4f6b8c2d1e5f7a9b0c3d", " " };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_field_error(create_with_request(f, NULL, "T", bad[i]), 1, f_rid);
}

/* ---- AIP-122 ids ------------------------------------------------------------------------------- */

static void test_book_id_rule(void **state)
{
    (void)state;
    const char *good[] = {"a", "b0042", "my-book", "a1", "z-9-z",
                          "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxy1",
                          "3f2b8c1e-9d4a-4f6b-8c2d-1e5f7a9b0c3d", "0f2b8c1e-9d4a-4f6b-bc2d-1e5f7a9b0c3d"};
    const char *bad[] = {"", "A", "1abc", "-a", "a-", "a_b", "a.b", "a b", "a/b", "Abc",
                         "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxy12",
                         "0f2b8c1e-9d4a-3f6b-8c2d-1e5f7a9b0c3d", /* version 3 */
                         "0f2b8c1e-9d4a-4f6b-cc2d-1e5f7a9b0c3d", /* wrong variant */
                         "0F2B8C1E-9D4A-4F6B-8C2D-1E5F7A9B0C3D", /* upper case */
                         "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(svc_valid_book_id(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(svc_valid_book_id(bad[i], strlen(bad[i])));
}

/* ---- GetBook (AIP-131) ------------------------------------------------------------------------- */

static void test_get_requires_name(void **state)
{
    static const char *const f_name[] = {"name"};
    assert_field_error(get_book(*state, ""), 1, f_name);
}

static void test_get_malformed_names(void **state)
{
    static const char *const f_name[] = {"name"};
    const char *bad[] = {"books",       "books/",   "shelves/x", "books/UPPER", "books/a/b",
                         "books/-a",    "books/a-", "books/a_b", "/books/a",    "books/a ",
                         "Books/a",     "books//a", "books/\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_field_error(get_book(*state, bad[i]), 1, f_name);
}

static void test_get_not_found(void **state)
{
    struct rpc_reply *r = get_book(*state, "books/nope");
    assert_int_equal(r->error.code, BOOKS_ENOTFOUND);
    assert_string_equal(r->error.reason, "BOOK_NOT_FOUND");
    assert_non_null(strstr(r->error.message, "books/nope"));
    assert_string_equal(r->error.meta_key, "name");
    assert_string_equal(r->error.meta_value, "books/nope");
    assert_string_equal(r->error.resource_type, SVC_RESOURCE_TYPE);
    assert_string_equal(r->error.resource_name, "books/nope");
}

static void test_get_returns_created_book(void **state)
{
    struct fixture *f = *state;
    char *authors[] = {"\xe6\x9d\x91\xe4\xb8\x8a\xe6\x98\xa5\xe6\xa8\xb9", "J. R. R. Tolkien"};
    assert_int_equal(
        create_book(f, "hobbit", "The Hobbit \xf0\x9f\x90\x89", 2, authors, "Allen & Unwin")
            ->error.code,
        0);
    const Books__V1__Book *b = book_of(get_book(f, "books/hobbit"));
    assert_int_equal(f->reply.n_embedded, 1); /* the record's wire form, sent as it is */
    assert_string_equal(b->name, "books/hobbit");
    assert_string_equal(b->display_name, "The Hobbit \xf0\x9f\x90\x89");
    assert_int_equal(b->n_authors, 2);
    assert_string_equal(b->authors[0], authors[0]);
    assert_string_equal(b->authors[1], authors[1]);
    assert_string_equal(b->publisher, "Allen & Unwin");
}

static void inner_done(void *arg, int rc, struct store_book *made);

/* A book the store holds is sent as the store keeps it: a field this binary's books.proto does not
 * have (a newer server's, sharing the store) reaches the client unchanged, on GetBook and on
 * ListBooks. */
static void test_stored_encoding_sent_as_is(void **state)
{
    struct fixture *f = *state;
    struct store_book *b;
    int rc = 1;
    /* display_name "T" (2), authors ["A"] (3), publisher "P" (4), and a field 15 string "new". */
    static const uint8_t body[] = {0x12, 1, 'T', 0x1a, 1, 'A', 0x22, 1, 'P', 0x7a, 3, 'n', 'e', 'w'};
    assert_int_equal(store_book_new("books/newer", 11, body, sizeof body, &b), 0);
    store_create_book(f->store, b, inner_done, &rc);
    assert_int_equal(rc, 0);
    store_book_unref(b);
    const Books__V1__Book *got = book_of(get_book(f, "books/newer"));
    assert_string_equal(got->display_name, "T");
    assert_int_equal(got->base.n_unknown_fields, 1); /* field 15, as it was stored */
    assert_int_equal(got->base.unknown_fields[0].tag, 15);
    const Books__V1__ListBooksResponse *p = page_of(list_books(f, 10, NULL));
    assert_int_equal(p->n_books, 1);
    assert_int_equal(p->books[0]->base.n_unknown_fields, 1);
}

/* ---- CreateBook (AIP-133) ---------------------------------------------------------------------- */

static void test_create_with_id(void **state)
{
    const Books__V1__Book *b =
        book_of(create_book(*state, "my-book", "Title", 1, one_author, "Pub"));
    assert_string_equal(b->name, "books/my-book");
    assert_string_equal(b->display_name, "Title");
}

static void test_create_assigns_id_when_empty(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(book_of(create_book(f, "", "T", 1, one_author, "P"))->name, "books/gen-1");
    assert_string_equal(book_of(create_book(f, NULL, "T", 1, one_author, "P"))->name,
                        "books/gen-2");
}

static void test_default_ids_are_uuid4(void **state)
{
    struct fixture *f = *state;
    char seen[3][SVC_NAME_BYTES];
    svc_set_id_generator(f->svc, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        const Books__V1__Book *b = book_of(create_book(f, "", "T", 1, one_author, "P"));
        assert_int_equal(strncmp(b->name, "books/", 6), 0);
        const char *id = b->name + 6;
        assert_int_equal(strlen(id), 36);
        assert_true(svc_valid_book_id(id, 36));
        assert_int_equal(id[14], '4');
        snprintf(seen[i], sizeof seen[i], "%s", id);
    }
    assert_string_not_equal(seen[0], seen[1]);
    assert_string_not_equal(seen[1], seen[2]);
    /* Past several refills of the random pool: every id a distinct, well-formed UUID4. */
    for (int i = 0; i < 300; i++)
        assert_int_equal(book_of(create_book(f, "", "T", 1, one_author, "P"))->name[6 + 14], '4');
    const Books__V1__ListBooksResponse *p = page_of(list_books(f, 1000, NULL));
    assert_int_equal(p->n_books, 303);
    for (size_t i = 0; i < p->n_books; i++) {
        const char *id = p->books[i]->name + 6;
        assert_true(svc_valid_book_id(id, strlen(id)));
        assert_true(strchr("89ab", id[19]) != NULL);
    }
}

static void test_create_ignores_output_only_name(void **state)
{
    struct fixture *f = *state;
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    book.name = "books/something-else";
    book.display_name = "T";
    book.n_authors = 1;
    book.authors = one_author;
    book.publisher = "P";
    req.book = &book;
    req.book_id = "chosen";
    assert_string_equal(book_of(call(f, svc_create_book, &req.base))->name, "books/chosen");
    /* Even a malformed name is ignored, not an error. */
    book.name = "garbage!!";
    req.book_id = "";
    assert_string_equal(book_of(call(f, svc_create_book, &req.base))->name, "books/gen-1");
    assert_int_equal(get_book(f, "books/something-else")->error.code, BOOKS_ENOTFOUND);
}

static void test_create_requires_book(void **state)
{
    static const char *const fields[] = {"book"};
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    assert_field_error(call(*state, svc_create_book, &req.base), 1, fields);
}

static void test_create_reports_every_missing_field(void **state)
{
    static const char *const fields[] = {"book.display_name", "book.authors", "book.publisher"};
    assert_field_error(create_book(*state, "x", "", 0, NULL, ""), 3, fields);
}

static void test_create_reports_bad_id_with_missing_fields(void **state)
{
    static const char *const fields[] = {"book_id", "book.display_name", "book.authors",
                                         "book.publisher"};
    assert_field_error(create_book(*state, "Bad_Id", "", 0, NULL, ""), 4, fields);
}

static void test_create_bad_ids(void **state)
{
    static const char *const fields[] = {"book_id"};
    const char *bad[] = {"-x", "x-", "X", "9lives", "a_b", "books/x",
                         "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxy12"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_field_error(create_book(*state, bad[i], "T", 1, one_author, "P"), 1, fields);
}

static void test_create_empty_author_entry(void **state)
{
    static const char *const fields[] = {"book.authors[2]"};
    char *authors[] = {"A", "B", "", "D"};
    assert_field_error(create_book(*state, "x", "T", 4, authors, "P"), 1, fields);
}

static void test_create_reports_every_empty_author(void **state)
{
    /* 52 bad fields: the first BOOKS_ERROR_MAX_VIOLATIONS are reported, the rest counted. */
    char *authors[SVC_MAX_AUTHORS];
    for (int i = 0; i < SVC_MAX_AUTHORS; i++)
        authors[i] = i % 2 ? "ok" : "";
    struct rpc_reply *r = create_book(*state, "x", "", SVC_MAX_AUTHORS, authors, "");
    assert_int_equal(r->error.code, BOOKS_EINVAL);
    assert_int_equal(r->error.n_violations, BOOKS_ERROR_MAX_VIOLATIONS);
    assert_int_equal(r->error.n_dropped, 2 + SVC_MAX_AUTHORS / 2 - BOOKS_ERROR_MAX_VIOLATIONS);
    assert_string_equal(r->error.violations[0].field, "book.display_name");
    assert_string_equal(r->error.violations[1].field, "book.authors[0]");
    assert_string_equal(r->error.violations[BOOKS_ERROR_MAX_VIOLATIONS - 1].field,
                        "book.authors[60]");
    assert_non_null(strstr(r->error.message, "20 not reported"));
}

static void test_create_limits(void **state)
{
    struct fixture *f = *state;
    static const char *const f_title[] = {"book.display_name"};
    static const char *const f_authors[] = {"book.authors"};
    static const char *const f_pub[] = {"book.publisher"};
    static const char *const f_author0[] = {"book.authors[0]"};
    char *big = malloc(SVC_MAX_DISPLAY_NAME_BYTES + 2);
    char *authors[SVC_MAX_AUTHORS + 1];
    memset(big, 'x', SVC_MAX_DISPLAY_NAME_BYTES + 1);
    big[SVC_MAX_DISPLAY_NAME_BYTES + 1] = '\0';
    assert_field_error(create_book(f, "x", big, 1, one_author, "P"), 1, f_title);
    big[SVC_MAX_DISPLAY_NAME_BYTES] = '\0'; /* exactly the limit is fine */
    assert_int_equal(create_book(f, "x", big, 1, one_author, "P")->error.code, 0);
    big[SVC_MAX_PUBLISHER_BYTES + 1] = '\0';
    assert_field_error(create_book(f, "y", "T", 1, one_author, big), 1, f_pub);
    char *long_author[] = {big};
    assert_field_error(create_book(f, "y", "T", 1, long_author, "P"), 1, f_author0);
    for (int i = 0; i <= SVC_MAX_AUTHORS; i++)
        authors[i] = "A";
    assert_field_error(create_book(f, "y", "T", SVC_MAX_AUTHORS + 1, authors, "P"), 1, f_authors);
    assert_int_equal(create_book(f, "y", "T", SVC_MAX_AUTHORS, authors, "P")->error.code, 0);
    free(big);
}

static void test_create_already_exists_keeps_original(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(create_book(f, "dup", "Original", 1, one_author, "P1")->error.code, 0);
    struct rpc_reply *r = create_book(f, "dup", "Replacement", 1, one_author, "P2");
    assert_int_equal(r->error.code, BOOKS_EEXIST);
    assert_string_equal(r->error.reason, "BOOK_ALREADY_EXISTS");
    assert_non_null(strstr(r->error.message, "books/dup"));
    assert_string_equal(r->error.resource_name, "books/dup");
    const Books__V1__Book *b = book_of(get_book(f, "books/dup"));
    assert_string_equal(b->display_name, "Original");
    assert_string_equal(b->publisher, "P1");
}

static void test_create_checks_fields_before_existence(void **state)
{
    static const char *const fields[] = {"book.publisher"};
    struct fixture *f = *state;
    create_ok(f, "dup");
    assert_field_error(create_book(f, "dup", "T", 1, one_author, ""), 1, fields);
}

/* A store whose creates finish later, from the test, like a group-committing durable store. */
struct deferred_store {
    struct store base;
    struct store *inner;
    store_create_done_fn done;
    void *arg;
    struct store_book *book;
};

static int deferred_get(struct store *s, const char *name, struct store_book **out)
{
    return store_get(((struct deferred_store *)s)->inner, name, out);
}
static int deferred_list(struct store *s, const char *after, size_t limit, size_t max_bytes,
                         struct store_book **out, size_t *n)
{
    return store_list_bounded(((struct deferred_store *)s)->inner, after, limit, max_bytes, out, n);
}
static void deferred_create(struct store *s, const struct store_create_req *req,
                            store_create_done_fn done, void *arg)
{
    struct deferred_store *d = (struct deferred_store *)s;
    d->done = done;
    d->arg = arg;
    d->book = store_book_ref(req->book);
}
static void deferred_close(struct store *s) { (void)s; }
static void inner_done(void *arg, int rc, struct store_book *made)
{
    *(int *)arg = rc;
    store_book_unref(made);
}

static void test_create_answers_when_store_finishes(void **state)
{
    struct fixture *f = *state;
    static const struct store_ops ops = {.scheme = "deferred", .get = deferred_get,
                                         .list = deferred_list, .create = deferred_create,
                                         .close = deferred_close};
    struct deferred_store d = {.base = {.ops = &ops}, .inner = f->store};
    struct svc *svc;
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    int rc = 1;

    assert_int_equal(svc_new(&d.base, &svc), 0);
    book.display_name = "Later";
    book.n_authors = 1;
    book.authors = one_author;
    book.publisher = "P";
    req.book = &book;
    req.book_id = "later";
    f->reply.arena = &f->arena;
    books_error_init(&f->reply.error, &f->arena);
    f->reply.response = NULL;
    f->reply.embedded = NULL;
    f->reply.n_embedded = 0;
    f->reply.release = NULL;
    f->reply.done = on_done;
    f->done_calls = 0;
    svc_create_book(svc, &req.base, &f->reply);
    assert_int_equal(f->done_calls, 0); /* parked until the store commits */
    assert_non_null(d.done);
    store_create_book(f->store, d.book, inner_done, &rc); /* the "commit" */
    assert_int_equal(rc, 0);
    d.done(d.arg, 0, store_book_ref(d.book));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->reply.error.code, 0);
    assert_int_equal(f->reply.n_embedded, 1); /* the record's encoding, as the server sends it */
    Books__V1__Book *sent =
        books__v1__book__unpack(NULL, f->reply.embedded[0].len, f->reply.embedded[0].data);
    assert_non_null(sent);
    assert_string_equal(sent->name, "books/later");
    assert_string_equal(sent->display_name, "Later");
    books__v1__book__free_unpacked(sent, NULL);
    store_book_unref(d.book);
    svc_free(svc);
}

/* ---- ListBooks (AIP-132, AIP-158) -------------------------------------------------------------- */

static void test_list_empty(void **state)
{
    const Books__V1__ListBooksResponse *p = page_of(list_books(*state, 0, NULL));
    assert_int_equal(p->n_books, 0);
    assert_string_equal(p->next_page_token, "");
}

static void test_list_default_page_size_and_order(void **state)
{
    struct fixture *f = *state;
    char id[16];
    /* Insert in a scrambled order; the list is in resource-name order. */
    for (int i = 0; i < 120; i++) {
        snprintf(id, sizeof id, "b%04d", (i * 37) % 120);
        create_ok(f, id);
    }
    const Books__V1__ListBooksResponse *p = page_of(list_books(f, 0, NULL));
    assert_int_equal(p->n_books, SVC_DEFAULT_PAGE_SIZE);
    assert_int_equal(f->reply.n_embedded, SVC_DEFAULT_PAGE_SIZE);
    for (size_t i = 0; i < p->n_books; i++) {
        char want[32];
        snprintf(want, sizeof want, "books/b%04d", (int)i);
        assert_string_equal(p->books[i]->name, want);
    }
    assert_true(strlen(p->next_page_token) > 0);
}

static void test_list_page_size_caps(void **state)
{
    struct fixture *f = *state;
    char id[16];
    for (int i = 0; i < SVC_MAX_PAGE_SIZE + 5; i++) {
        snprintf(id, sizeof id, "b%05d", i);
        create_ok(f, id);
    }
    assert_int_equal(page_of(list_books(f, SVC_MAX_PAGE_SIZE, NULL))->n_books, SVC_MAX_PAGE_SIZE);
    const Books__V1__ListBooksResponse *p = page_of(list_books(f, 5000, NULL));
    assert_int_equal(p->n_books, SVC_MAX_PAGE_SIZE);
    assert_true(strlen(p->next_page_token) > 0);
    p = page_of(list_books(f, 3, NULL));
    assert_int_equal(p->n_books, 3);
}

static void test_list_negative_page_size(void **state)
{
    static const char *const fields[] = {"page_size"};
    assert_field_error(list_books(*state, -1, NULL), 1, fields);
}

static void test_list_bad_token_and_size_together(void **state)
{
    static const char *const fields[] = {"page_size", "page_token"};
    assert_field_error(list_books(*state, -5, "garbage"), 2, fields);
}

/* Walks every page with the given page sizes (cycled), returning how many books were seen, and
 * checks strict order (so nothing repeats) and that only the last page has no token. */
static size_t walk(struct fixture *f, const int *sizes, size_t n_sizes, void (*between)(int page))
{
    char token[PAGE_TOKEN_MAX_CHARS] = "", last[SVC_NAME_BYTES + 8] = "";
    size_t seen = 0;
    for (int page = 0;; page++) {
        const Books__V1__ListBooksResponse *p =
            page_of(list_books(f, sizes[(size_t)page % n_sizes], token));
        for (size_t i = 0; i < p->n_books; i++) {
            assert_true(strcmp(p->books[i]->name, last) > 0);
            snprintf(last, sizeof last, "%s", p->books[i]->name);
            seen++;
        }
        if (!p->next_page_token[0])
            break;
        assert_true(p->n_books > 0);
        snprintf(token, sizeof token, "%s", p->next_page_token);
        if (between)
            between(page);
    }
    return seen;
}

static void test_list_walk_with_changing_page_size(void **state)
{
    struct fixture *f = *state;
    char id[16];
    static const int sizes[] = {7, 1, 50, 13};
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "b%04d", i);
        create_ok(f, id);
    }
    assert_int_equal(walk(f, sizes, 4, NULL), 300);
}

static void test_list_exact_multiple_has_empty_last_token(void **state)
{
    struct fixture *f = *state;
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "b%04d", i);
        create_ok(f, id);
    }
    const Books__V1__ListBooksResponse *p = page_of(list_books(f, 20, NULL));
    assert_int_equal(p->n_books, 20);
    assert_string_equal(p->next_page_token, "");
}

static int inserted;
static void insert_between_pages(int page)
{
    /* One book before every cursor (never seen) and one far after (seen once). */
    char id[16];
    snprintf(id, sizeof id, "a%04d", page);
    create_ok(current, id);
    snprintf(id, sizeof id, "z%04d", page);
    create_ok(current, id);
    inserted++;
}

static void test_list_inserts_between_pages(void **state)
{
    struct fixture *f = *state;
    char id[16];
    static const int sizes[] = {10};
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "m%04d", i);
        create_ok(f, id);
    }
    inserted = 0;
    size_t seen = walk(f, sizes, 1, insert_between_pages);
    /* Every original book once, plus every z-book (they sort after every cursor). */
    assert_int_equal(seen, 200 + (size_t)inserted);
}

static void test_list_tampered_token(void **state)
{
    static const char *const fields[] = {"page_token"};
    struct fixture *f = *state;
    char id[16], token[PAGE_TOKEN_MAX_CHARS];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "b%d", i);
        create_ok(f, id);
    }
    snprintf(token, sizeof token, "%s", page_of(list_books(f, 2, NULL))->next_page_token);
    assert_int_equal(list_books(f, 2, token)->error.code, 0);
    token[3] = token[3] == 'A' ? 'B' : 'A';
    assert_field_error(list_books(f, 2, token), 1, fields);
    token[3] = '\0';
    assert_field_error(list_books(f, 2, token), 1, fields);
    assert_field_error(list_books(f, 2, "50"), 1, fields);
}

static void test_list_foreign_token(void **state)
{
    static const char *const fields[] = {"page_token"};
    struct fixture *f = *state;
    char token[PAGE_TOKEN_MAX_CHARS], err[STORE_ERR_BYTES];
    struct store *other_store;
    struct svc *other;
    create_ok(f, "a");
    create_ok(f, "b");
    /* The same books in another data set: its tokens carry the same cursor but another key. */
    assert_int_equal(store_open("memory:", NULL, &other_store, err, sizeof err), 0);
    assert_int_equal(svc_new(other_store, &other), 0);
    struct svc *mine = f->svc;
    f->svc = other;
    create_ok(f, "a");
    create_ok(f, "b");
    snprintf(token, sizeof token, "%s", page_of(list_books(f, 1, NULL))->next_page_token);
    reply_finish(f);
    f->svc = mine;
    assert_field_error(list_books(f, 1, token), 1, fields);
    svc_free(other);
    store_close(other_store);
}

static void test_list_page_stays_under_client_limit(void **state)
{
    struct fixture *f = *state;
    char id[16];
    char *authors[SVC_MAX_AUTHORS];
    char *big = malloc(SVC_MAX_AUTHOR_BYTES + 1);
    memset(big, 'w', SVC_MAX_AUTHOR_BYTES);
    big[SVC_MAX_AUTHOR_BYTES] = '\0';
    for (int i = 0; i < SVC_MAX_AUTHORS; i++)
        authors[i] = big;
    /* Each book is ~52 KB encoded: 120 of them would be a 6 MB page. */
    for (int i = 0; i < 120; i++) {
        snprintf(id, sizeof id, "big%03d", i);
        assert_int_equal(create_book(f, id, "T", SVC_MAX_AUTHORS, authors, "P")->error.code, 0);
    }
    struct rpc_reply *r = list_books(f, 1000, NULL);
    const Books__V1__ListBooksResponse *p = page_of(r);
    assert_true(p->n_books > 0 && p->n_books < 120);
    assert_true(f->sent_bytes <= 4u * 1024 * 1024);
    assert_true(strlen(p->next_page_token) > 0);
    static const int sizes[] = {1000};
    assert_int_equal(walk(f, sizes, 1, NULL), 120);
    free(big);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_book_id_rule),
        T(test_budget_bounds_pages_and_creates),
        T(test_request_id),
        T(test_get_requires_name),
        T(test_get_malformed_names),
        T(test_get_not_found),
        T(test_get_returns_created_book),
        T(test_stored_encoding_sent_as_is),
        T(test_create_with_id),
        T(test_create_assigns_id_when_empty),
        T(test_default_ids_are_uuid4),
        T(test_create_ignores_output_only_name),
        T(test_create_requires_book),
        T(test_create_reports_every_missing_field),
        T(test_create_reports_bad_id_with_missing_fields),
        T(test_create_bad_ids),
        T(test_create_empty_author_entry),
        T(test_create_reports_every_empty_author),
        T(test_create_limits),
        T(test_create_already_exists_keeps_original),
        T(test_create_checks_fields_before_existence),
        T(test_create_answers_when_store_finishes),
        T(test_list_empty),
        T(test_list_default_page_size_and_order),
        T(test_list_page_size_caps),
        T(test_list_negative_page_size),
        T(test_list_bad_token_and_size_together),
        T(test_list_walk_with_changing_page_size),
        T(test_list_exact_multiple_has_empty_last_token),
        T(test_list_inserts_between_pages),
        T(test_list_tampered_token),
        T(test_list_foreign_token),
        T(test_list_page_stays_under_client_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
