/* call.h: what the three parts of the server loop share, and nothing outside src/rpc/ may see.
 * server.c owns the life cycle (start, worker threads, channel arguments, shutdown), unary.c the
 * call objects and the unary path (requesting calls, decode, handler, the one-batch reply, the log
 * line), stream.c server streaming and bidirectional streaming. The public side is server.h (the
 * life cycle) and rpc.h (what handlers see); the structures here stay private to this folder.
 *
 * Threads and queues: one completion queue per worker thread; each worker is the only thread that
 * calls grpc_completion_queue_next() on its queue, so everything a queue's events touch (the
 * worker's free list of call objects) needs no lock.
 *
 * Calls: every completion-queue tag is a `struct tag` whose step function runs on the worker that
 * polls the queue: a `struct call`'s `tag` (or a server stream's `close_tag`), or the server's
 * shutdown tag. A call object is taken from its worker's free list when a call is requested and
 * goes back to it, arena reset, when the call is over; only the worker's thread touches the free
 * list. */
#ifndef BOOKS_RPC_CALL_H
#define BOOKS_RPC_CALL_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "books/arena.h"
#include "books/codec.h"
#include "books/log.h"
#include "books/rpc.h"

/* Outstanding requests per method per queue: enough to absorb a burst of new streams without
 * them waiting in core's pending list, few enough to cost little memory. */
#define REQUESTS_PER_METHOD 4
/* Call objects a worker keeps for reuse beyond that; the rest are freed. */
#define MAX_FREE_CALLS 512
/* Inline arena per call: a request and its response views fit without a heap chunk. */
#define CALL_ARENA_BYTES 2048

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct server;
struct worker;

/* Opaque to handlers (rpc.h); a member of struct call, found again with container_of. */
struct rpc_stream {
    char unused;
};

/* Every completion-queue tag begins with this. */
struct tag {
    void (*step)(struct tag *t, bool ok);
};

struct method_slot {
    const struct rpc_method *method;
    void *self;            /* the service object passed to the handler */
    void *registered;      /* grpc_server_register_method's handle */
    struct codec_limits limits; /* what a request of this method may be */
    atomic_long in_flight;      /* this method's calls matched and not yet released */
};

struct call {
    struct tag tag;
    struct worker *w;
    const struct method_slot *slot; /* NULL for an unregistered (generic) call */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;      /* generic calls only */
    grpc_byte_buffer *payload;
    ProtobufCMessage *request;
    grpc_byte_buffer *response;
    grpc_status_code code;
    grpc_slice status_message;
    grpc_slice status_details_bin;
    grpc_metadata trailing;
    size_t n_trailing;
    int cancelled;
    uint64_t start_us;
    struct rpc_reply reply;
    struct arena arena;
    struct call *next_free;

    /* Streaming calls only. `mu` guards the fields below it: handlers send and finish from any
     * thread while the worker processes completions. */
    pthread_mutex_t mu;
    struct rpc_stream stream;       /* the handle given to a server-streaming handler */
    struct tag close_tag;           /* RECV_CLOSE_ON_SERVER of a server stream */
    grpc_byte_buffer *queued;       /* next message to send (newest wins) */
    unsigned outstanding;           /* batches in flight */
    bool md_sent, sending, finishing, status_started, closed, detached, answered;

    unsigned char arena_buf[CALL_ARENA_BYTES];
};

struct worker {
    struct server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool started;
    struct call *free_list;
    size_t n_free;
};

struct server {
    grpc_server *server;
    grpc_completion_queue *shutdown_cq;
    struct tag shutdown_tag;
    atomic_bool shutting_down;
    atomic_long in_flight; /* calls matched and not yet released */
    /* Call objects core holds a tag of: requested (matched or not) and not yet back on the free
     * list. Shutdown destroys the server only once this is 0, so no completion (a match still
     * queued, a request failed by the shutdown) can meet a destroyed server or queue. */
    atomic_long outstanding;
    /* What calls in flight may hold (rpc.h: rpc_reply.budget): call objects, decoded requests,
     * encoded responses, and what handlers charge. */
    struct budget budget;
    bool abandoned;        /* server_shutdown() gave up waiting for the store */
    void (*on_cancel)(void *arg); /* server_on_cancel() */
    void *on_cancel_arg;
    int port;
    size_t max_metadata_bytes; /* a call with more request metadata: RESOURCE_EXHAUSTED */
    size_t n_workers;
    struct worker *workers;
    size_t n_slots;
    struct method_slot *slots;
    grpc_resource_quota *quota; /* NULL: core's default (unlimited) */
    /* Workers that have made their first requests: server_start() returns only once every started
     * worker has, so a shutdown can never destroy the server under a worker's first request. */
    pthread_mutex_t ready_mu;
    pthread_cond_t ready_cv;
    size_t n_ready;
};

/* ---- unary.c: call objects, requesting calls, the status of a call ------------------------------
 * Each says which thread may call it: the worker that polls the queue, unless said otherwise. */

/* Frees a call object that is on no list and has no gRPC call (free-list teardown): the worker
 * as it exits, or server_shutdown() for a worker whose thread never started. */
void call_destroy(struct call *c);

/* Requests one call of `slot`'s method (or of any unregistered method) on w's queue, with a call
 * object from w's free list. On failure logs an error and requests nothing. Worker thread only. */
void call_request_registered(struct worker *w, const struct method_slot *slot);
void call_request_generic(struct worker *w);

/* Records the status to send for `e` (OK when NULL or code 0): code, message and the AIP-193
 * details trailer. Only the thread that currently holds the call: the handler's for a unary reply,
 * the worker's for bidi, any thread with c->mu held for a server stream. */
void call_set_status(struct call *c, const struct books_error *e);

/* The end of a matched call: its log line, then the object goes back to the free list and the
 * in-flight counts drop. Worker thread only, once per matched call. */
void call_finished(struct call *c);

/* Step of a call's last batch (status sent, RECV_CLOSE_ON_SERVER done): call_finished(). */
void call_step_sent(struct tag *t, bool ok);

/* ---- stream.c: the streaming kinds, entered from the worker once a call is matched ----------- */

/* Starts a server-streaming call whose request is decoded (c->request): RECV_CLOSE_ON_SERVER
 * first, then the method's start handler. Worker thread only. */
void stream_server_begin(struct call *c);

/* Starts a bidirectional call: initial metadata and the first RECV_MESSAGE. Worker thread only. */
void stream_bidi_begin(struct call *c);

/* ---- batches: small enough to inline on the unary path and the streaming one alike ----------- */

static inline void start_batch(struct call *c, const grpc_op *ops, size_t n, struct tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a malformed batch (or two of a kind at once) fails here; every batch the server
         * builds is well-formed and serialised, so this is a bug, not a runtime state. */
        log_msg(LOG_ERROR, "grpc_call_start_batch: %s", grpc_call_error_to_string(e));
        abort();
    }
}

/* Adds SEND_INITIAL_METADATA (empty) when the call has not sent it yet; returns 0 or 1. */
static inline size_t initial_metadata_op(struct call *c, grpc_op *op)
{
    if (c->md_sent)
        return 0;
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
    return 1;
}

/* Fills one SEND_STATUS_FROM_SERVER op from what call_set_status() recorded. Returns 1. */
static inline size_t status_op(struct call *c, grpc_op *op)
{
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = c->code;
    op->data.send_status_from_server.status_details =
        c->code != GRPC_STATUS_OK ? &c->status_message : NULL;
    op->data.send_status_from_server.trailing_metadata_count = c->n_trailing;
    op->data.send_status_from_server.trailing_metadata = c->n_trailing ? &c->trailing : NULL;
    return 1;
}

#endif
