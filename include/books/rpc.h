/* rpc.h: the contract between the server loop and the services it serves (books, health). A
 * service is a table of methods; a unary handler is a function of (service, request) that fills an
 * rpc_reply and calls rpc_reply_done() exactly once, inline or later from any thread. Handlers
 * never touch gRPC calls, byte buffers or the network, so cmocka tests call them directly.
 *
 * Threads: the server runs handlers on its worker threads, several at once (different calls of one
 * method on different workers), so a service object must be safe to use from many threads at once.
 * Each function type below says on which thread it is called, and each function from which threads
 * it may be called. */
#ifndef BOOKS_RPC_H
#define BOOKS_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "books/arena.h"
#include "books/budget.h"
#include "books/error.h"

struct rpc_reply;

/* Completion callback supplied by whoever runs the handler (the server, or a test). */
typedef void (*rpc_done_fn)(struct rpc_reply *reply);

/* What a handler produces. The server owns it (inside its per-call object) and prepares it before
 * calling the handler: arena set, error cleared, response NULL, done set. Used by one thread at a
 * time: the handler's, until it calls rpc_reply_done(), and then the server's. */
struct rpc_reply {
    struct arena *arena;            /* per-call memory for building the response */
    /* on success: the response message (in the arena or the handler's), or NULL when the embedded
     * parts below are the whole response */
    const ProtobufCMessage *response;
    struct books_error error;       /* on failure: error.code != 0, response ignored */
    /* Optional: called by the server after the response was encoded (or the call failed) to
     * release what the response pointed into (e.g. store_book references). Unary: on the thread
     * that called rpc_reply_done(), before that returns; bidi: on the worker, after the handler
     * returned. */
    void (*release)(struct rpc_reply *reply);
    void *release_arg;
    /* Optional (unary): parts of the response already encoded (a store's records, store.h), which
     * the server sends as they are: codec_encode_embedded(response, embed_field, embedded,
     * n_embedded). embed_field 0: the parts are the whole response, one after another (`response`
     * may then be NULL). embed_field N: each part is one occurrence of the response's repeated
     * message field number N, followed by `response`'s other fields (its own entries of field N are
     * not sent). The parts must stay valid until `release` runs. n_embedded 0: the server packs
     * `response`. */
    const struct codec_bytes *embedded;
    size_t n_embedded;
    unsigned embed_field;
    rpc_done_fn done;               /* set by the caller of the handler; see rpc_reply_done() */
    /* When the caller stops waiting: CLOCK_MONOTONIC time in nanoseconds, 0 for no deadline. A
     * handler passes it to work that may wait (a store's query), which then gives up at that time
     * (store_get_async(), store.h). */
    uint64_t deadline_ns;
    /* The memory budget of calls in flight (the server's; NULL: none) and the bytes this call holds
     * of it. The server charges the call object and the decoded request before the handler runs
     * and the encoded response when it is sent; a handler that keeps more while it waits (a queued
     * create's record) or needs room for a large response (a ListBooks page) charges it with
     * rpc_reply_charge(). Everything charged is given back when the call is over. */
    struct budget *budget;
    size_t charged;
    /* Of `charged`, what rpc_reply_reserve() set aside and no rpc_reply_hold() has taken yet;
     * what is left of it is given back when the reply is sent. */
    size_t reserved;
};

/* Charges n more bytes of the budget to this call if they fit: true, or false (nothing changed).
 * Always true without a budget. The handler's thread. */
static inline bool rpc_reply_charge(struct rpc_reply *reply, size_t n)
{
    if (!reply->budget)
        return true;
    if (!budget_try_charge(reply->budget, n))
        return false;
    reply->charged += n;
    return true;
}

/* Reserves n bytes of the budget for memory this call will hold once an answer arrives (a page of
 * books, a book from a store that answers later) if they fit: true, or false (nothing changed).
 * Calls admitted at the same time then each size their answer from what the others left, never
 * all from the same room. The reservation is given back when the reply is sent, after what the
 * answer really holds (the records a handler force-charges, the encoded response the server
 * charges) has been charged in its place. Always true without a budget. The handler's thread. */
static inline bool rpc_reply_reserve(struct rpc_reply *reply, size_t n)
{
    if (!rpc_reply_charge(reply, n))
        return false;
    reply->reserved += n;
    return true;
}

/* Charges n bytes of memory the call now holds (the records an answer brought, the encoded
 * response): out of what it reserved first, the rest past the limit (the memory exists already).
 * So a call's answer is counted once, as its reservation or as itself, never as both. No-op
 * without a budget. The handler's or the server's thread, for the call it is running. */
static inline void rpc_reply_hold(struct rpc_reply *reply, size_t n)
{
    if (!reply->budget)
        return;
    size_t from_reserve = n < reply->reserved ? n : reply->reserved;
    reply->reserved -= from_reserve;
    if (n > from_reserve) {
        budget_force_charge(reply->budget, n - from_reserve);
        reply->charged += n - from_reserve;
    }
}

/* Gives back n bytes of rpc_reply_hold() for memory the call no longer holds (records freed once
 * the response is encoded). No-op without a budget. */
static inline void rpc_reply_unhold(struct rpc_reply *reply, size_t n)
{
    if (!reply->budget || n == 0)
        return;
    budget_release(reply->budget, n);
    reply->charged -= n;
}

/* What the budget has room for now (SIZE_MAX without one): for sizing a response before building
 * it. A snapshot: other calls charge and release meanwhile (rpc_reply_reserve() makes it hold). */
static inline size_t rpc_reply_headroom(const struct rpc_reply *reply)
{
    return reply->budget ? budget_headroom(reply->budget) : SIZE_MAX;
}

/* Signals that `reply` is complete (response set, or error.code != 0). Exactly once per call, from
 * any thread: inline on the worker that runs the handler, or later from another thread (e.g. a
 * durable store's commit thread); for RPC_BIDI_STREAM, before the handler returns, on its thread.
 * For a unary call the server encodes and sends the reply inside it, on the calling thread. After
 * it returns, the handler must not touch the reply or the request. */
static inline void rpc_reply_done(struct rpc_reply *reply) { reply->done(reply); }

/* A unary handler. `self` is the service object from rpc_service.self; `request` is an unpacked
 * message of the method's request descriptor, valid until the handler calls rpc_reply_done().
 * Called from any thread: the server calls it on one of its workers, concurrently with other calls
 * on the other workers (tests call it directly). A handler that blocks holds up the other calls of
 * its worker's queue; one that must wait (a durable commit) returns and answers later. */
typedef void (*rpc_unary_fn)(void *self, const ProtobufCMessage *request, struct rpc_reply *reply);

/* A server-streaming call as its handler sees it (owned by the server). */
struct rpc_stream;

/* Starts a server-streaming call. The handler may keep `stream` and call rpc_stream_send() and
 * rpc_stream_finish() from any thread until the server calls the method's `close` for it (from
 * inside this call too). `request` is valid only during this call: copy what is needed. Called on
 * a worker thread, concurrently with other calls on the other workers. */
typedef void (*rpc_stream_start_fn)(void *self, const ProtobufCMessage *request,
                                    struct rpc_stream *stream);

/* Called exactly once per started stream, on the worker thread that serves the call, when the call
 * is over (finished, or cancelled by the client or by shutdown). After it returns the handler must
 * not touch `stream`. May be called while other threads are inside rpc_stream_send() for it only
 * if the handler does not serialise the two; handlers that keep a list of streams remove the
 * stream here under the same lock they hold while sending. */
typedef void (*rpc_stream_close_fn)(void *self, struct rpc_stream *stream);

/* Queues `msg` (encoded at once; the caller keeps msg) on the stream. At most one message is on
 * the wire at a time; a message queued while another is in flight replaces any older queued one
 * (the newest state wins, as for health Watch). Thread-safe: any thread, from the start handler
 * until the close hook has returned. Returns 0, or BOOKS_EUNAVAIL when the stream is finishing or
 * closed. */
int rpc_stream_send(struct rpc_stream *stream, const ProtobufCMessage *msg);

/* Ends the stream after the messages already queued: status OK when `err` is NULL or err->code is
 * 0, else err's status and AIP-193 details. Only the first call counts. Thread-safe: any thread,
 * from the start handler until the close hook has returned. */
void rpc_stream_finish(struct rpc_stream *stream, const struct books_error *err);

enum rpc_kind {
    RPC_UNARY = 0,       /* one request, one response: `handle` */
    RPC_SERVER_STREAM,   /* one request, a stream of responses: `start` and `close` */
    RPC_BIDI_STREAM,     /* a stream of requests, one response each, in order: `handle`, which
                          * must call rpc_reply_done() before it returns; an error ends the call */
};

/* The API's cap on how many entries a repeated field of a request may carry (e.g. a Book's
 * `authors`, at most 100). The codec refuses a request with more before decoding it, so a client
 * cannot make the server unpack a million entries only to be told "at most 100". */
struct rpc_field_limit {
    const ProtobufCMessageDescriptor *message; /* the message type that has the field */
    const char *field;                         /* the field's proto name, e.g. "authors" */
    size_t max_count;
};

/* One method. `path` is the HTTP/2 :path, "/{package}.{Service}/{Method}" (gRPC PROTOCOL-HTTP2). */
struct rpc_method {
    const char *path;
    const ProtobufCMessageDescriptor *request;
    enum rpc_kind kind;
    rpc_unary_fn handle;
    rpc_stream_start_fn start;
    rpc_stream_close_fn close;
    const struct rpc_field_limit *limits; /* caps on the request's repeated fields, or NULL */
    size_t n_limits;
};

/* A service: its fully-qualified name (for health) and its method table. The server reads both
 * from every worker at once: they must not change while a server uses them. */
struct rpc_service {
    const char *name;
    const struct rpc_method *methods;
    size_t n_methods;
    void *self;
};

/* grpc_init(), after switching abseil's mutex deadlock detection off once per process
 * (grpc_init.c says why), which must happen before gRPC core takes its first mutex: every user of
 * gRPC core in this project (the server, the firestore: store's client, the books CLI's client)
 * starts it through here. Pair each call with grpc_shutdown(). Any thread. */
void rpc_grpc_init(void);

#endif
