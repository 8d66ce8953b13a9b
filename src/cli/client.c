/* client.c: the blocking BooksService client. A unary call is the whole of gRPC's unary protocol
 * in one batch (send metadata, message and half-close; receive metadata, message and status), and
 * the caller's thread waits for that one batch with grpc_completion_queue_pluck, so no thread of
 * ours ever polls. The per-call state object is the batch's tag and lives on the caller's stack.
 *
 * Methods are registered with the channel once, so each call skips the path lookup. Responses and
 * error details are decoded by the codec (the only module that unpacks messages) into the caller's
 * arena. */
#include "books/client.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/codec.h"
#include "books/rpc.h"
#include "books/rpc_paths.h"
#include "books/status.h"

enum method { METHOD_GET_BOOK, METHOD_LIST_BOOKS, METHOD_CREATE_BOOK, N_METHODS };

static const struct method_info {
    const char *path;                           /* HTTP/2 :path */
    const ProtobufCMessageDescriptor *response; /* what a successful call returns */
} methods[N_METHODS] = {
    [METHOD_GET_BOOK] = {RPC_PATH_GET_BOOK, &books__v1__book__descriptor},
    [METHOD_LIST_BOOKS] = {RPC_PATH_LIST_BOOKS, &books__v1__list_books_response__descriptor},
    [METHOD_CREATE_BOOK] = {RPC_PATH_CREATE_BOOK, &books__v1__book__descriptor},
};

struct client {
    grpc_channel *channel;
    grpc_completion_queue *cq; /* pluck: only the thread making a call waits on it */
    void *registered[N_METHODS];
    grpc_metadata metadata[1]; /* sent with every call: authorization when there is a token */
    size_t n_metadata;
    int timeout_ms;
};

/* One call in flight: the batch's tag, and where its results land. */
struct call {
    grpc_call *call;
    grpc_metadata_array initial;
    grpc_metadata_array trailing;
    grpc_byte_buffer *response;
    grpc_status_code status;
    grpc_slice message;
};

static bool legal_header_value(const char *s)
{
    return grpc_header_nonbin_value_is_legal(grpc_slice_from_static_string(s)) != 0;
}

int client_new(const struct client_options *opts, struct client **out)
{
    struct client *c = NULL;
    grpc_channel_credentials *creds = NULL;
    /* Responses are inflated by the codec, never past CLIENT_MAX_RESPONSE_BYTES: gRPC core would
     * inflate a compressed response whole before checking its size. */
    grpc_arg argv[2] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, {.integer = 0}},
        {GRPC_ARG_STRING, GRPC_ARG_PRIMARY_USER_AGENT_STRING, {.string = NULL}},
    };
    grpc_channel_args args = {1, argv};

    if (!opts->target || !*opts->target || opts->timeout_ms <= 0 ||
        (opts->token && !legal_header_value(opts->token)) ||
        (opts->user_agent && !legal_header_value(opts->user_agent)))
        return BOOKS_EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return BOOKS_ENOMEM;
    c->timeout_ms = opts->timeout_ms;
    if (opts->token) {
        static const char scheme[] = "Bearer ";
        size_t n = strlen(opts->token);
        grpc_slice value = grpc_slice_malloc(sizeof scheme - 1 + n); /* aborts when out of memory */
        memcpy(GRPC_SLICE_START_PTR(value), scheme, sizeof scheme - 1);
        memcpy(GRPC_SLICE_START_PTR(value) + sizeof scheme - 1, opts->token, n);
        c->metadata[0].key = grpc_slice_from_static_string("authorization");
        c->metadata[0].value = value;
        c->n_metadata = 1;
    }

    rpc_grpc_init();
    /* The credentials object is reference-counted: the channel keeps its own reference. */
    creds = opts->tls ? grpc_ssl_credentials_create(NULL, NULL, NULL, NULL)
                      : grpc_insecure_credentials_create();
    if (opts->user_agent) {
        argv[1].value.string = (char *)opts->user_agent;
        args.num_args = 2;
    }
    /* Never NULL: on a bad target core returns a "lame" channel whose calls fail with a status. */
    c->channel = grpc_channel_create(opts->target, creds, &args);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    for (size_t i = 0; i < N_METHODS; i++)
        c->registered[i] = grpc_channel_register_call(c->channel, methods[i].path, NULL, NULL);
    *out = c;
    return 0;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    /* Every batch was plucked before its call returned, so the queue is empty: shutting it down
     * completes at once, and the pluck below only collects the shutdown. */
    grpc_channel_destroy(c->channel);
    grpc_completion_queue_shutdown(c->cq);
    while (
        grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
    for (size_t i = 0; i < c->n_metadata; i++)
        grpc_slice_unref(c->metadata[i].value);
    free(c);
    grpc_shutdown();
}

/* Fills err from a finished call's status, message and grpc-status-details-bin trailer. */
static int fail_from_status(struct call *st, struct client_error *err)
{
    static const char details_key[] = "grpc-status-details-bin";
    size_t n = GRPC_SLICE_LENGTH(st->message);

    err->status = st->status;
    err->detail.code = rpc_status_to_err(st->status);
    if (n >= sizeof err->detail.message)
        n = sizeof err->detail.message - 1;
    memcpy(err->detail.message, GRPC_SLICE_START_PTR(st->message), n);
    err->detail.message[n] = '\0';
    for (size_t i = 0; i < st->trailing.count; i++) {
        if (grpc_slice_str_cmp(st->trailing.metadata[i].key, details_key) == 0) {
            /* Core hands "-bin" values over base64-decoded. Details that do not parse are left
             * out: the status code and message still say what happened. */
            (void)codec_decode_status_details(&st->trailing.metadata[i].value, &err->detail);
            break;
        }
    }
    return err->detail.code;
}

static int fail_local(struct client_error *err, grpc_status_code status, int code,
                      const char *message)
{
    err->status = status;
    books_error_set(&err->detail, code, NULL, "%s", message);
    return code;
}

static int unary(struct client *c, enum method m, const ProtobufCMessage *request,
                 struct arena *arena, ProtobufCMessage **out, struct client_error *err)
{
    /* *out is written only on success (codec_decode leaves it alone otherwise). */
    struct call st = {0};
    grpc_byte_buffer *request_bb = NULL;
    grpc_op ops[6], *op = ops;
    gpr_timespec deadline;
    grpc_event ev;
    grpc_call_error ce;
    int rc;

    books_error_init(&err->detail, arena);
    err->status = GRPC_STATUS_OK;
    codec_encode(request, &request_bb);
    grpc_metadata_array_init(&st.initial);
    grpc_metadata_array_init(&st.trailing);
    st.message = grpc_empty_slice();
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                            gpr_time_from_millis(c->timeout_ms, GPR_TIMESPAN));
    st.call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                                  c->registered[m], deadline, NULL);

    memset(ops, 0, sizeof ops);
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = c->n_metadata;
    op->data.send_initial_metadata.metadata = c->n_metadata ? c->metadata : NULL;
    op++;
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = request_bb;
    op++;
    op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    op++;
    op->op = GRPC_OP_RECV_INITIAL_METADATA;
    op->data.recv_initial_metadata.recv_initial_metadata = &st.initial;
    op++;
    op->op = GRPC_OP_RECV_MESSAGE;
    op->data.recv_message.recv_message = &st.response;
    op++;
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &st.trailing;
    op->data.recv_status_on_client.status = &st.status;
    op->data.recv_status_on_client.status_details = &st.message;
    op++;

    ce = grpc_call_start_batch(st.call, ops, (size_t)(op - ops), &st, NULL);
    if (ce != GRPC_CALL_OK) {
        /* Only a bug gets here (client_new checked the metadata): say which, rather than abort a
         * command-line tool. */
        char what[160];
        snprintf(what, sizeof what, "could not start the call: %s", grpc_call_error_to_string(ce));
        rc = fail_local(err, GRPC_STATUS_INTERNAL, BOOKS_EINTERNAL, what);
        goto unref_call;
    }
    /* The call's deadline bounds the wait: the batch completes with DEADLINE_EXCEEDED at the
     * latest, so the pluck itself needs none. */
    ev = grpc_completion_queue_pluck(c->cq, &st, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
        abort(); /* an infinite pluck on a live queue returns only our tag */

    if (st.status != GRPC_STATUS_OK) {
        rc = fail_from_status(&st, err);
    } else if (!st.response) {
        rc = fail_local(err, GRPC_STATUS_INTERNAL, BOOKS_EBADMSG,
                        "the server ended the call with OK but sent no response message");
    } else {
        static const struct codec_limits limits = {.max_message_bytes = CLIENT_MAX_RESPONSE_BYTES};
        rc = codec_decode(st.response, methods[m].response, &limits, arena, out, &err->detail);
        if (rc) {
            char what[160];
            snprintf(what, sizeof what, "the server's response is not a valid %s message",
                     methods[m].response->name);
            books_error_clear(&err->detail);
            rc = fail_local(err, GRPC_STATUS_INTERNAL, BOOKS_EBADMSG, what);
        }
    }

    grpc_byte_buffer_destroy(st.response);
    grpc_slice_unref(st.message);
unref_call:
    grpc_call_unref(st.call);
    grpc_metadata_array_destroy(&st.initial);
    grpc_metadata_array_destroy(&st.trailing);
    grpc_byte_buffer_destroy(request_bb);
    return rc;
}

int client_get_book(struct client *c, const char *name, struct arena *arena, Books__V1__Book **out,
                    struct client_error *err)
{
    Books__V1__GetBookRequest req = BOOKS__V1__GET_BOOK_REQUEST__INIT;
    req.name = (char *)name;
    ProtobufCMessage *msg = NULL;
    int rc = unary(c, METHOD_GET_BOOK, &req.base, arena, &msg, err);
    if (rc == 0)
        *out = (Books__V1__Book *)msg;
    return rc;
}

int client_list_books(struct client *c, int32_t page_size, const char *page_token,
                      struct arena *arena, Books__V1__ListBooksResponse **out,
                      struct client_error *err)
{
    Books__V1__ListBooksRequest req = BOOKS__V1__LIST_BOOKS_REQUEST__INIT;
    req.page_size = page_size;
    req.page_token = (char *)(page_token ? page_token : "");
    ProtobufCMessage *msg = NULL;
    int rc = unary(c, METHOD_LIST_BOOKS, &req.base, arena, &msg, err);
    if (rc == 0)
        *out = (Books__V1__ListBooksResponse *)msg;
    return rc;
}

int client_create_book(struct client *c, const Books__V1__Book *book, const char *book_id,
                       const char *request_id, struct arena *arena, Books__V1__Book **out,
                       struct client_error *err)
{
    Books__V1__CreateBookRequest req = BOOKS__V1__CREATE_BOOK_REQUEST__INIT;
    req.book = (Books__V1__Book *)book;
    req.book_id = (char *)(book_id ? book_id : "");
    req.request_id = (char *)(request_id ? request_id : "");
    ProtobufCMessage *msg = NULL;
    int rc = unary(c, METHOD_CREATE_BOOK, &req.base, arena, &msg, err);
    if (rc == 0)
        *out = (Books__V1__Book *)msg;
    return rc;
}
