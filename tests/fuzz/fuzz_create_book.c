/* fuzz_create_book: a CreateBookRequest off the wire, served as the server (src/rpc/) serves it:
 * decoded with the server's limits and the method's own rpc_field_limits (book.authors at most 100,
 * from svc_describe()), svc_create_book over a fresh memory: store holding the seeded books (fresh
 * per input, so the store never grows and every input sees the same books), encode, release. Ids
 * the server assigns come from a counter (gen-1), not libuuid, so runs are reproducible. The input
 * is the request message. */
#include <string.h>

#include "books/service.h"
#include "books/v1/books.pb-c.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

struct ctx {
    struct store *store;
    unsigned ids;
};

static void check(const ProtobufCMessage *request, const struct rpc_reply *reply, void *arg)
{
    const Books__V1__CreateBookRequest *req = (const Books__V1__CreateBookRequest *)request;
    struct ctx *c = arg;
    struct store_book *stored = NULL;

    switch (reply->error.code) {
    case 0: {
        Books__V1__Book *book = fuzz_reply_book(reply);
        char want[SVC_NAME_BYTES + 8];
        snprintf(want, sizeof want, "books/%s", req->book_id[0] ? req->book_id : "gen-1");
        FUZZ_CHECK(strcmp(book->name, want) == 0);
        FUZZ_CHECK(req->book != NULL);
        FUZZ_CHECK(strcmp(book->display_name, req->book->display_name) == 0);
        FUZZ_CHECK(strcmp(book->publisher, req->book->publisher) == 0);
        FUZZ_CHECK(book->n_authors == req->book->n_authors);
        FUZZ_CHECK(book->n_authors >= 1 && book->n_authors <= SVC_MAX_AUTHORS);
        for (size_t i = 0; i < book->n_authors; i++)
            FUZZ_CHECK(strcmp(book->authors[i], req->book->authors[i]) == 0);
        /* What was acknowledged is what a GetBook reads back, byte for byte. */
        FUZZ_CHECK(store_get(c->store, book->name, &stored) == 0);
        FUZZ_CHECK(reply->n_embedded == 1 && reply->embedded[0].len == stored->wire_len &&
                   memcmp(reply->embedded[0].data, stored->wire, stored->wire_len) == 0);
        store_book_unref(stored);
        books__v1__book__free_unpacked(book, NULL);
        break;
    }
    case BOOKS_EEXIST:
        FUZZ_CHECK(reply->error.meta_key != NULL);
        FUZZ_CHECK(store_get(c->store, reply->error.meta_value, &stored) == 0);
        store_book_unref(stored);
        break;
    case BOOKS_EINVAL:
        FUZZ_CHECK(reply->error.n_violations + reply->error.n_dropped >= 1);
        break;
    default:
        FUZZ_CHECK(!"CreateBook over memory: answers OK, ALREADY_EXISTS or INVALID_ARGUMENT");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {0};
    struct svc *svc = NULL;
    const struct rpc_method *method =
        fuzz_open_service("/" SVC_SERVICE_NAME "/CreateBook", &c.store, &svc);

    svc_set_id_generator(svc, fuzz_counting_id, &c.ids);
    FUZZ_CHECK(method->handle == svc_create_book);
    FUZZ_CHECK(method->request == &books__v1__create_book_request__descriptor);
    FUZZ_CHECK(method->n_limits >= 1); /* the authors cap is the table's, not a copy */

    struct fuzz_serve_opts opts = {
        .max_message_bytes = FUZZ_SERVER_MAX_MESSAGE_BYTES,
        .response_limit = CLIENT_MAX_RESPONSE_BYTES,
        .check = check,
        .check_arg = &c,
    };
    fuzz_serve_unary(method, svc, data, size, &opts);
    svc_free(svc);
    store_close(c.store);
    return 0;
}
