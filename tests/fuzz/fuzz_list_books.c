/* fuzz_list_books: a ListBooksRequest off the wire, served as the server (src/rpc/) serves it
 * (decode with the server's limits, svc_list_books over a memory: store holding the seeded books,
 * encode, release). The store's data-set key is fuzz_dataset_key, so the seeds carry valid page
 * tokens. The input is the request message. */
#include <string.h>

#include "books/page_token.h"
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
    method = fuzz_open_service("/" SVC_SERVICE_NAME "/ListBooks", &store, &svc);
    FUZZ_CHECK(method->handle == svc_list_books);
    FUZZ_CHECK(method->request == &books__v1__list_books_request__descriptor);
    atexit(cleanup);
    return 0;
}

/* AIP-158 as the service promises it, checked against the store itself. */
static void check(const ProtobufCMessage *request, const struct rpc_reply *reply, void *arg)
{
    const Books__V1__ListBooksRequest *req = (const Books__V1__ListBooksRequest *)request;
    Books__V1__ListBooksResponse *resp;
    char after[8 + PAGE_TOKEN_MAX_CURSOR_BYTES + 1], cursor[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    struct store_book *next = NULL;
    size_t limit, n_next = 0;
    (void)arg;

    if (reply->error.code) {
        FUZZ_CHECK(reply->error.code == BOOKS_EINVAL);
        FUZZ_CHECK(reply->error.n_violations >= 1);
        return;
    }
    /* The page as a client decodes it (its books are the records' encodings, rpc.h). */
    resp = (Books__V1__ListBooksResponse *)fuzz_reply_decode(
        reply, &books__v1__list_books_response__descriptor);
    FUZZ_CHECK(req->page_size >= 0);
    limit = req->page_size == 0                   ? SVC_DEFAULT_PAGE_SIZE
            : req->page_size > SVC_MAX_PAGE_SIZE ? SVC_MAX_PAGE_SIZE
                                                  : (size_t)req->page_size;
    FUZZ_CHECK(resp->n_books <= limit);
    after[0] = '\0';
    if (req->page_token[0]) {
        FUZZ_CHECK(page_token_decode(fuzz_dataset_key, FUZZ_LIST_TOKEN_PURPOSE, req->page_token,
                                     cursor, sizeof cursor) == 0);
        snprintf(after, sizeof after, "books/%s", cursor);
    }
    for (size_t i = 0; i < resp->n_books; i++) {
        const char *prev = i ? resp->books[i - 1]->name : after;
        FUZZ_CHECK(strcmp(prev, resp->books[i]->name) < 0);
        FUZZ_CHECK(strncmp(resp->books[i]->name, "books/", 6) == 0);
    }
    /* next_page_token is empty exactly on the last page, and resumes after the last book. */
    if (resp->n_books)
        FUZZ_CHECK(store_list(store, resp->books[resp->n_books - 1]->name, 1, &next, &n_next) == 0);
    else
        FUZZ_CHECK(store_list(store, after, 1, &next, &n_next) == 0);
    FUZZ_CHECK((resp->next_page_token[0] != '\0') == (n_next == 1));
    if (n_next)
        store_book_unref(next);
    if (resp->next_page_token[0]) {
        FUZZ_CHECK(resp->n_books > 0);
        FUZZ_CHECK(page_token_decode(fuzz_dataset_key, FUZZ_LIST_TOKEN_PURPOSE,
                                     resp->next_page_token, cursor, sizeof cursor) == 0);
        FUZZ_CHECK(strcmp(cursor, resp->books[resp->n_books - 1]->name + 6) == 0);
    }
    books__v1__list_books_response__free_unpacked(resp, NULL);
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
