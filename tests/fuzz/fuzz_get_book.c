/* fuzz_get_book: a GetBookRequest off the wire, served as the server (src/rpc/) serves it: decoded
 * with the server's limits, handled by svc_get_book over a memory: store holding the seeded books,
 * the Book or the error details encoded, the reply released. The input is the request message. */
#include <string.h>

#include "books/service.h"
#include "books/v1/books.pb-c.h"
#include "fuzz_common.h"

static struct store *store;
static struct svc *svc;
static const struct rpc_method *method;

static void cleanup(void)
{
    svc_free(svc);
    store_close(store);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    method = fuzz_open_service("/" SVC_SERVICE_NAME "/GetBook", &store, &svc);
    FUZZ_CHECK(method->handle == svc_get_book);
    FUZZ_CHECK(method->request == &books__v1__get_book_request__descriptor);
    atexit(cleanup);
    return 0;
}

static void check(const ProtobufCMessage *request, const struct rpc_reply *reply, void *arg)
{
    const Books__V1__GetBookRequest *req = (const Books__V1__GetBookRequest *)request;
    struct store_book *b = NULL;
    int rc = store_get(store, req->name, &b);
    (void)arg;
    switch (reply->error.code) {
    case 0: {
        /* The reply sends the stored book's encoding as it is. */
        Books__V1__Book *book = fuzz_reply_book(reply);
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(strcmp(book->name, req->name) == 0);
        FUZZ_CHECK(reply->n_embedded == 1 && reply->embedded[0].len == b->wire_len &&
                   memcmp(reply->embedded[0].data, b->wire, b->wire_len) == 0);
        books__v1__book__free_unpacked(book, NULL);
        break;
    }
    case BOOKS_ENOTFOUND:
        FUZZ_CHECK(rc == BOOKS_ENOTFOUND);
        FUZZ_CHECK(reply->error.resource_type != NULL);
        break;
    case BOOKS_EINVAL: /* a malformed name: never one the store holds */
        FUZZ_CHECK(rc == BOOKS_ENOTFOUND);
        FUZZ_CHECK(reply->error.n_violations == 1);
        break;
    default:
        FUZZ_CHECK(!"GetBook over memory: answers OK, NOT_FOUND or INVALID_ARGUMENT");
    }
    store_book_unref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_serve_opts opts = {
        .max_message_bytes = FUZZ_SERVER_MAX_MESSAGE_BYTES,
        .response_limit = CLIENT_MAX_RESPONSE_BYTES,
        .check = check,
    };
    fuzz_serve_unary(method, svc, data, size, &opts);
    return 0;
}
