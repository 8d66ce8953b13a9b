/* server.c: the gRPC core server loop.
 *
 * Threads and queues: one completion queue per worker thread; each worker is the only thread that
 * calls grpc_completion_queue_next() on its queue, so everything a queue's events touch (the
 * worker's free list of call objects) needs no lock.
 *
 * Calls: every completion-queue tag is a `struct call` whose first member is a step function. For
 * each registered method (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so the request message
 * arrives with the call) and for unregistered methods (generic requests, answered UNIMPLEMENTED
 * because core would otherwise park them until their deadline), each queue keeps a few requests
 * outstanding. When one is matched, a replacement is requested at once from the free list, then
 * the call is decoded, handed to its handler, and answered with ONE batch: initial metadata,
 * message, status (plus google.rpc.Status details on errors) and RECV_CLOSE_ON_SERVER. When that
 * batch completes, one log line is written and the call object goes back to the free list with its
 * arena reset: steady-state serving allocates no call objects.
 *
 * Handlers may answer later from another thread (a durable store's commit thread): rpc_reply_done
 * then encodes and starts the batch there, which gRPC core allows for a call nobody else is
 * touching; the completion still arrives on the owning worker's queue.
 *
 * Shutdown (gRPC core's order): grpc_server_shutdown_and_notify, wait up to the grace period for
 * calls in flight, grpc_server_cancel_all_calls, wait for the shutdown tag, grpc_server_destroy,
 * shut down each worker queue and let its thread drain it to GRPC_QUEUE_SHUTDOWN, join, destroy. */
#include "books/server.h"
#include "books/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "books/codec.h"
#include "books/log.h"

/* Outstanding requests per method per queue: enough to absorb a burst of new streams without
 * them waiting in core's pending list, few enough to cost little memory. */
#define REQUESTS_PER_METHOD 4
/* Call objects a worker keeps for reuse beyond that; the rest are freed. */
#define MAX_FREE_CALLS 512
/* How often a graceful shutdown checks whether calls are still in flight. */
#define SHUTDOWN_POLL_MS 20
/* Room for every channel argument server_start() sets. */
#define MAX_CHANNEL_ARGS 20
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
    bool abandoned;        /* server_shutdown() gave up waiting for the store */
    int port;
    size_t n_workers;
    struct worker *workers;
    size_t n_slots;
    struct method_slot *slots;
    grpc_resource_quota *quota; /* NULL: core's default (unlimited) */
};

static void step_registered(struct tag *t, bool ok);
static void step_generic(struct tag *t, bool ok);
static void step_sent(struct tag *t, bool ok);
static void step_stream_sent(struct tag *t, bool ok);
static void step_stream_closed(struct tag *t, bool ok);
static void step_bidi_recv(struct tag *t, bool ok);
static void reply_done(struct rpc_reply *reply);
static void log_call(struct call *c);
static void call_finished(struct call *c);
static void stream_begin(struct call *c);
static void bidi_begin(struct call *c);

/* ---- call objects ------------------------------------------------------------------------------ */

static struct call *call_get(struct worker *w)
{
    struct call *c = w->free_list;
    if (c) {
        w->free_list = c->next_free;
        w->n_free--;
        return c;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->w = w;
    pthread_mutex_init(&c->mu, NULL);
    arena_init(&c->arena, c->arena_buf, sizeof c->arena_buf);
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    return c;
}

static void call_destroy(struct call *c)
{
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    arena_cleanup(&c->arena);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Releases what one call used and keeps the object for the next one. */
static void call_put(struct worker *w, struct call *c)
{
    if (c->call) {
        grpc_call_unref(c->call);
        c->call = NULL;
    }
    if (c->payload) {
        grpc_byte_buffer_destroy(c->payload);
        c->payload = NULL;
    }
    if (c->response) {
        grpc_byte_buffer_destroy(c->response);
        c->response = NULL;
    }
    grpc_slice_unref(c->status_message);
    grpc_slice_unref(c->status_details_bin);
    c->status_message = grpc_empty_slice();
    c->status_details_bin = grpc_empty_slice();
    c->n_trailing = 0;
    grpc_metadata_array_destroy(&c->md);
    grpc_metadata_array_init(&c->md);
    if (!c->slot) {
        grpc_call_details_destroy(&c->details);
        grpc_call_details_init(&c->details);
    }
    if (c->queued) {
        grpc_byte_buffer_destroy(c->queued);
        c->queued = NULL;
    }
    arena_reset(&c->arena);
    c->request = NULL;
    c->cancelled = 0;
    c->outstanding = 0;
    c->md_sent = c->sending = c->finishing = c->status_started = false;
    c->closed = c->detached = c->answered = false;
    if (w->n_free >= MAX_FREE_CALLS) {
        call_destroy(c);
        return;
    }
    c->next_free = w->free_list;
    w->free_list = c;
    w->n_free++;
}

/* ---- requesting calls -------------------------------------------------------------------------- */

static void request_registered(struct worker *w, const struct method_slot *slot)
{
    struct call *c = call_get(w);
    grpc_call_error e;
    if (!c) {
        log_msg(LOG_ERROR, "out of memory: cannot request a call for %s", slot->method->path);
        return;
    }
    c->slot = slot;
    c->tag.step = step_registered;
    /* A method registered without payload reading must not be given a payload pointer. */
    e = grpc_server_request_registered_call(
        w->srv->server, slot->registered, &c->call, &c->deadline, &c->md,
        slot->method->kind == RPC_BIDI_STREAM ? NULL : &c->payload, w->cq, w->cq, &c->tag);
    if (e != GRPC_CALL_OK) {
        log_msg(LOG_ERROR, "grpc_server_request_registered_call(%s): %s", slot->method->path,
                grpc_call_error_to_string(e));
        call_put(w, c);
    }
}

static void request_generic(struct worker *w)
{
    struct call *c = call_get(w);
    grpc_call_error e;
    if (!c) {
        log_msg(LOG_ERROR, "out of memory: cannot request a generic call");
        return;
    }
    c->slot = NULL;
    c->tag.step = step_generic;
    e = grpc_server_request_call(w->srv->server, &c->call, &c->details, &c->md, w->cq, w->cq,
                                 &c->tag);
    if (e != GRPC_CALL_OK) {
        log_msg(LOG_ERROR, "grpc_server_request_call: %s", grpc_call_error_to_string(e));
        call_put(w, c);
    }
}

/* ---- serving ----------------------------------------------------------------------------------- */

static void reply_prepare(struct call *c)
{
    c->start_us = log_now_us();
    c->reply.arena = &c->arena;
    c->reply.response = NULL;
    books_error_init(&c->reply.error, &c->arena);
    c->reply.release = NULL;
    c->reply.release_arg = NULL;
    c->reply.done = reply_done;
}

static bool deadline_passed(gpr_timespec deadline)
{
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    return gpr_time_cmp(gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC), now) <= 0;
}

static void step_registered(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, tag);
    struct worker *w = c->w;
    const struct method_slot *slot = c->slot;
    int rc;

    if (!ok) { /* the server is shutting down: this request will never be matched */
        call_put(w, c);
        return;
    }
    atomic_fetch_add_explicit(&w->srv->in_flight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&((struct method_slot *)slot)->in_flight, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&w->srv->shutting_down, memory_order_relaxed))
        request_registered(w, slot);
    reply_prepare(c);
    if (slot->method->kind == RPC_BIDI_STREAM) {
        bidi_begin(c);
        return;
    }
    if (deadline_passed(c->deadline)) {
        /* No work for a call whose caller has already given up. */
        books_error_set(&c->reply.error, BOOKS_EDEADLINE, "DEADLINE_EXCEEDED",
                        "the call's deadline passed before the server started it");
        reply_done(&c->reply);
        return;
    }
    rc = codec_decode(c->payload, slot->method->request, &slot->limits, &c->arena, &c->request,
                      &c->reply.error);
    /* The request's bytes are not needed once decoded (strings were copied into the arena): give
     * them back now rather than when a durable store answers. */
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (rc) {
        reply_done(&c->reply);
        return;
    }
    if (slot->method->kind == RPC_SERVER_STREAM) {
        stream_begin(c);
        return;
    }
    slot->method->handle(slot->self, c->request, &c->reply);
}

static void step_generic(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, tag);
    struct worker *w = c->w;
    char method[96];

    if (!ok) {
        call_put(w, c);
        return;
    }
    atomic_fetch_add_explicit(&w->srv->in_flight, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&w->srv->shutting_down, memory_order_relaxed))
        request_generic(w);
    reply_prepare(c);
    /* The method path is caller-chosen bytes: quote it before it goes into the message. */
    char raw[sizeof method];
    size_t len = GRPC_SLICE_LENGTH(c->details.method);
    if (len >= sizeof raw)
        len = sizeof raw - 1;
    memcpy(raw, GRPC_SLICE_START_PTR(c->details.method), len);
    raw[len] = '\0';
    books_error_quote(method, sizeof method, raw);
    books_error_set(&c->reply.error, BOOKS_EUNIMPL, "METHOD_NOT_FOUND",
                    "method %s is not implemented by this server", method);
    books_error_set_meta(&c->reply.error, "method", method);
    reply_done(&c->reply);
}

static void start_batch(struct call *c, const grpc_op *ops, size_t n, struct tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a malformed batch (or two of a kind at once) fails here; every batch this file
         * builds is well-formed and serialised, so this is a bug, not a runtime state. */
        log_msg(LOG_ERROR, "grpc_call_start_batch: %s", grpc_call_error_to_string(e));
        abort();
    }
}

/* Records the status to send for `e` (OK when NULL or code 0): code, message and the AIP-193
 * details trailer. The message is also kept for the log line. */
static void set_status(struct call *c, const struct books_error *e)
{
    if (!e || e->code == 0) {
        c->code = GRPC_STATUS_OK;
        return;
    }
    c->code = rpc_status_of(e->code);
    if (e != &c->reply.error)
        snprintf(c->reply.error.message, sizeof c->reply.error.message, "%s", e->message);
    grpc_slice_unref(c->status_message);
    c->status_message = grpc_slice_from_copied_string(e->message);
    grpc_slice_unref(c->status_details_bin);
    c->status_details_bin = grpc_empty_slice();
    c->n_trailing = 0;
    if (codec_encode_status_details(e, &c->status_details_bin) == 0) {
        c->trailing.key = grpc_slice_from_static_string("grpc-status-details-bin");
        c->trailing.value = c->status_details_bin;
        c->n_trailing = 1;
    }
}

/* Adds SEND_INITIAL_METADATA (empty) when the call has not sent it yet; returns 0 or 1. */
static size_t initial_metadata_op(struct call *c, grpc_op *op)
{
    if (c->md_sent)
        return 0;
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = true;
    return 1;
}

/* Fills one SEND_STATUS_FROM_SERVER op from what set_status() recorded. Returns 1. */
static size_t status_op(struct call *c, grpc_op *op)
{
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = c->code;
    op->data.send_status_from_server.status_details =
        c->code != GRPC_STATUS_OK ? &c->status_message : NULL;
    op->data.send_status_from_server.trailing_metadata_count = c->n_trailing;
    op->data.send_status_from_server.trailing_metadata = c->n_trailing ? &c->trailing : NULL;
    return 1;
}

/* Encodes the reply and sends it as one batch. Runs on the handler's thread, which may not be the
 * worker's; it touches only this call, and the completion goes to the worker's queue. */
static void reply_done(struct rpc_reply *reply)
{
    struct call *c = container_of(reply, struct call, reply);
    grpc_op ops[4];
    size_t n = 0;

    memset(ops, 0, sizeof ops);
    if (reply->error.code == 0 && !reply->response)
        books_error_set(&reply->error, BOOKS_EINTERNAL, "INTERNAL", "the handler gave no response");
    if (reply->error.code == 0)
        codec_encode(reply->response, &c->response);
    if (reply->release)
        reply->release(reply);
    reply->release = NULL;
    codec_free_request(c->request, &c->arena);
    c->request = NULL;

    n += initial_metadata_op(c, &ops[n]);
    set_status(c, &reply->error);
    if (reply->error.code == 0) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->response;
        n++;
    }
    n += status_op(c, &ops[n]);
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    c->tag.step = step_sent;
    start_batch(c, ops, n, &c->tag);
}

/* The end of a matched call: its log line, then the object goes back to the free list. */
static void call_finished(struct call *c)
{
    struct worker *w = c->w;
    struct method_slot *slot = (struct method_slot *)c->slot;
    log_call(c);
    call_put(w, c);
    if (slot)
        atomic_fetch_sub_explicit(&slot->in_flight, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->srv->in_flight, 1, memory_order_release);
}

static void step_sent(struct tag *t, bool ok)
{
    (void)ok;
    call_finished(container_of(t, struct call, tag));
}

/* The caller's trace context from its request metadata: W3C traceparent first, then Google's
 * x-cloud-trace-context (Cloud Run passes both on). */
static bool find_trace(const grpc_metadata_array *md, struct trace_context *out)
{
    const grpc_metadata *cloud = NULL;
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key;
        const grpc_slice *v = &md->metadata[i].value;
        if (grpc_slice_str_cmp(*k, "traceparent") == 0 &&
            trace_parse_traceparent((const char *)GRPC_SLICE_START_PTR(*v), GRPC_SLICE_LENGTH(*v),
                                    out))
            return true;
        if (grpc_slice_str_cmp(*k, "x-cloud-trace-context") == 0)
            cloud = &md->metadata[i];
    }
    return cloud && trace_parse_cloud((const char *)GRPC_SLICE_START_PTR(cloud->value),
                                      GRPC_SLICE_LENGTH(cloud->value), out);
}

/* One log line for a finished call. */
static void log_call(struct call *c)
{
    if (log_enabled(LOG_INFO)) {
        struct log_rpc r;
        char *peer = grpc_call_get_peer(c->call);
        if (c->slot) {
            r.method = c->slot->method->path;
            r.method_len = strlen(r.method);
        } else {
            r.method = (const char *)GRPC_SLICE_START_PTR(c->details.method);
            r.method_len = GRPC_SLICE_LENGTH(c->details.method);
        }
        /* A call the client cancelled (or whose deadline passed) did not get our status. */
        r.code = c->cancelled ? "CANCELLED" : rpc_status_name(c->code);
        r.latency_us = log_now_us() - c->start_us;
        r.peer = peer;
        r.message = c->code != GRPC_STATUS_OK ? c->reply.error.message : NULL;
        struct trace_context trace;
        r.trace = find_trace(&c->md, &trace) ? &trace : NULL;
        log_rpc(&r);
        gpr_free(peer);
    }
}

/* ---- server streaming (e.g. health Watch) -------------------------------------------------------
 * Two batches can be in flight: RECV_CLOSE_ON_SERVER (close_tag), started first so a client that
 * goes away is noticed, and one send batch (tag) at a time: a message, or finally the status.
 * The call is released when it is closed, the handler has let go of it (close hook), and no batch
 * is left in flight; all three are only ever decided on the worker's thread. */

static void stream_send_locked(struct call *c, grpc_byte_buffer *bb)
{
    grpc_op ops[2];
    size_t n;
    memset(ops, 0, sizeof ops);
    n = initial_metadata_op(c, ops);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    c->response = bb;
    c->sending = true;
    c->outstanding++;
    c->tag.step = step_stream_sent;
    start_batch(c, ops, n, &c->tag);
}

static void stream_status_locked(struct call *c)
{
    grpc_op ops[2];
    size_t n;
    memset(ops, 0, sizeof ops);
    n = initial_metadata_op(c, ops);
    n += status_op(c, &ops[n]);
    c->status_started = true;
    c->sending = true;
    c->outstanding++;
    c->tag.step = step_stream_sent;
    start_batch(c, ops, n, &c->tag);
}

static bool stream_releasable_locked(const struct call *c)
{
    return c->closed && c->detached && c->outstanding == 0;
}

static void stream_begin(struct call *c)
{
    const struct method_slot *slot = c->slot;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->code = GRPC_STATUS_OK;
    pthread_mutex_lock(&c->mu);
    c->outstanding = 1;
    c->close_tag.step = step_stream_closed;
    start_batch(c, &op, 1, &c->close_tag);
    pthread_mutex_unlock(&c->mu);
    slot->method->start(slot->self, c->request, &c->stream);
    codec_free_request(c->request, &c->arena);
    c->request = NULL;
}

int rpc_stream_send(struct rpc_stream *stream, const ProtobufCMessage *msg)
{
    struct call *c = container_of(stream, struct call, stream);
    grpc_byte_buffer *bb = NULL;
    codec_encode(msg, &bb);
    pthread_mutex_lock(&c->mu);
    if (c->finishing || c->closed) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return BOOKS_EUNAVAIL;
    }
    if (c->sending) {
        if (c->queued)
            grpc_byte_buffer_destroy(c->queued);
        c->queued = bb;
    } else {
        stream_send_locked(c, bb);
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void rpc_stream_finish(struct rpc_stream *stream, const struct books_error *err)
{
    struct call *c = container_of(stream, struct call, stream);
    pthread_mutex_lock(&c->mu);
    if (!c->finishing) {
        c->finishing = true;
        set_status(c, err);
        if (!c->sending && !c->closed)
            stream_status_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
}

static void step_stream_sent(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, tag);
    bool release;
    pthread_mutex_lock(&c->mu);
    c->outstanding--;
    c->sending = false;
    if (c->response) {
        grpc_byte_buffer_destroy(c->response);
        c->response = NULL;
    }
    if (ok && !c->closed && !c->status_started) {
        if (c->queued) {
            grpc_byte_buffer *bb = c->queued;
            c->queued = NULL;
            stream_send_locked(c, bb);
        } else if (c->finishing) {
            stream_status_locked(c);
        }
    }
    release = stream_releasable_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (release)
        call_finished(c);
}

static void step_stream_closed(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, close_tag);
    const struct method_slot *slot = c->slot;
    bool release;
    (void)ok;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    c->outstanding--;
    pthread_mutex_unlock(&c->mu);
    /* Outside the lock: the handler takes its own lock here, the one it holds while sending. */
    slot->method->close(slot->self, &c->stream);
    pthread_mutex_lock(&c->mu);
    c->detached = true;
    release = stream_releasable_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (release)
        call_finished(c);
}

/* ---- bidirectional streaming (e.g. server reflection) -------------------------------------------
 * Sequential batches on one tag: initial metadata + first RECV_MESSAGE; then for each request its
 * response + the next RECV_MESSAGE; when the client half-closes (no message), the status. Only the
 * worker's thread touches the call, so no lock is needed. */

static void bidi_answered(struct rpc_reply *reply)
{
    container_of(reply, struct call, reply)->answered = true;
}

static void bidi_begin(struct call *c)
{
    grpc_op ops[2];
    size_t n;
    memset(ops, 0, sizeof ops);
    n = initial_metadata_op(c, ops);
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->payload;
    c->tag.step = step_bidi_recv;
    start_batch(c, ops, n, &c->tag);
}

/* Ends the stream with the status in c->reply.error (OK when its code is 0). */
static void bidi_finish(struct call *c)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    set_status(c, &c->reply.error);
    status_op(c, &ops[0]);
    ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[1].data.recv_close_on_server.cancelled = &c->cancelled;
    c->tag.step = step_sent;
    start_batch(c, ops, 2, &c->tag);
}

static void step_bidi_recv(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, tag);
    const struct method_slot *slot = c->slot;
    grpc_op ops[2];
    int rc;

    if (c->response) { /* the previous answer is on the wire */
        grpc_byte_buffer_destroy(c->response);
        c->response = NULL;
    }
    if (!ok || !c->payload) { /* half-closed by the client, or the call is gone */
        bidi_finish(c);
        return;
    }
    arena_reset(&c->arena);
    books_error_init(&c->reply.error, &c->arena);
    c->reply.response = NULL;
    c->reply.release = NULL;
    c->reply.done = bidi_answered;
    c->answered = false;
    rc = codec_decode(c->payload, slot->method->request, &slot->limits, &c->arena, &c->request,
                      &c->reply.error);
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (rc) {
        bidi_finish(c);
        return;
    }
    slot->method->handle(slot->self, c->request, &c->reply);
    if (!c->answered) /* the contract: bidi handlers answer before returning */
        abort();
    if (c->reply.error.code == 0)
        codec_encode(c->reply.response, &c->response);
    if (c->reply.release)
        c->reply.release(&c->reply);
    c->reply.release = NULL;
    codec_free_request(c->request, &c->arena);
    c->request = NULL;
    if (c->reply.error.code) {
        bidi_finish(c);
        return;
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = c->response;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &c->payload;
    start_batch(c, ops, 2, &c->tag);
}

/* ---- threads ----------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    size_t i, j;
    for (i = 0; i < w->srv->n_slots; i++)
        for (j = 0; j < REQUESTS_PER_METHOD; j++)
            request_registered(w, &w->srv->slots[i]);
    for (j = 0; j < REQUESTS_PER_METHOD; j++)
        request_generic(w);
    for (;;) {
        gpr_timespec deadline =
            log_thread_pending()
                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                               gpr_time_from_millis(LOG_FLUSH_MS, GPR_TIMESPAN))
                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
        grpc_event ev = grpc_completion_queue_next(w->cq, deadline, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            log_thread_flush();
            continue;
        }
        struct tag *t = ev.tag;
        t->step(t, ev.success != 0);
    }
    log_thread_flush();
    while (w->free_list) {
        struct call *c = w->free_list;
        w->free_list = c->next_free;
        call_destroy(c);
    }
    w->n_free = 0;
    return NULL;
}

int server_default_threads(void)
{
    cpu_set_t set;
    int n;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

/* Why did core refuse the port? Bind a probe socket the same way to get errno for the message. */
static void describe_bind_failure(int port, char *err, size_t errlen)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    int fd, saved = 0, one = 1;

    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)port);
    a6.sin6_addr = in6addr_any;
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a6, sizeof a6) != 0)
            saved = errno;
        close(fd);
    }
    if (!saved) {
        memset(&a4, 0, sizeof a4);
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0)
                saved = errno;
            close(fd);
        }
    }
    if (saved == EADDRINUSE)
        snprintf(err, errlen,
                 "cannot listen on port %d: the port is already in use; stop the other server or "
                 "choose another port with PORT or --port",
                 port);
    else if (saved)
        snprintf(err, errlen, "cannot listen on port %d: %s", port, strerror(saved));
    else
        snprintf(err, errlen, "cannot listen on port %d (gRPC core refused the address)", port);
}

static void server_destroy_unstarted(struct server *s)
{
    if (s->server)
        grpc_server_destroy(s->server);
    /* s->workers is NULL when its own allocation is what failed. */
    for (size_t i = 0; s->workers && i < s->n_workers; i++)
        if (s->workers[i].cq) {
            grpc_completion_queue_shutdown(s->workers[i].cq);
            while (grpc_completion_queue_next(s->workers[i].cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                              NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
            grpc_completion_queue_destroy(s->workers[i].cq);
        }
    if (s->shutdown_cq) {
        grpc_completion_queue_shutdown(s->shutdown_cq);
        while (grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->shutdown_cq);
    }
    if (s->quota)
        grpc_resource_quota_unref(s->quota);
    free(s->workers);
    free(s->slots);
    free(s);
}

int server_start(const struct server_options *opts, const struct rpc_service *services, size_t n,
                 struct server **out, char *err, size_t errlen)
{
    struct server *s;
    grpc_server_credentials *creds;
    char addr[32];
    size_t i, j, k, started = 0;
    int rc;

    if (opts->threads < 1 || opts->port < 0 || opts->port > 65535 || opts->max_recv_bytes < 1 ||
        opts->max_concurrent_streams < 1) {
        snprintf(err, errlen, "invalid server options");
        return BOOKS_EINVAL;
    }
    grpc_init();
    s = calloc(1, sizeof *s);
    if (!s) {
        rc = BOOKS_ENOMEM;
        goto fail_alloc;
    }
    atomic_init(&s->shutting_down, false);
    atomic_init(&s->in_flight, 0);
    s->n_workers = (size_t)opts->threads;
    s->workers = calloc(s->n_workers, sizeof *s->workers);
    for (i = 0; i < n; i++)
        s->n_slots += services[i].n_methods;
    s->slots = calloc(s->n_slots ? s->n_slots : 1, sizeof *s->slots);
    if (!s->workers || !s->slots) {
        rc = BOOKS_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail_server;
    }

    grpc_arg args[MAX_CHANNEL_ARGS];
    size_t n_args = 0;
#define INT_ARG(key, v) (args[n_args++] = (grpc_arg){GRPC_ARG_INTEGER, (char *)(key), {.integer = (v)}})
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, opts->max_recv_bytes);
    INT_ARG(GRPC_ARG_MAX_CONCURRENT_STREAMS, opts->max_concurrent_streams);
    /* Core would inflate a compressed request whole before checking its size (a 256 MiB gzip
     * bomb costs 256 MiB); the codec inflates it instead, never past max_recv_bytes. */
    INT_ARG(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
    /* Keepalive: clients may ping every 10 s, with or without calls, without being sent a GOAWAY
     * (too_many_pings); the server itself probes idle connections every 2 minutes. A client that
     * pings more often gets 2 strikes, then GOAWAY ENHANCE_YOUR_CALM: that bounds a PING flood's
     * acks on a connection without calls. */
    INT_ARG(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    INT_ARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    INT_ARG(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIME_MS, 120000);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
    /* Core sets SO_REUSEPORT by default, which would let a second server bind a busy port and
     * steal half its connections. A busy port must be an error. */
    INT_ARG(GRPC_ARG_ALLOW_REUSEPORT, 0);
    /* A connection that has not finished the HTTP/2 preface and SETTINGS in 10 s is closed (core's
     * default is 120 s of a file descriptor and buffers per silent connection). */
    INT_ARG(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, SERVER_HANDSHAKE_TIMEOUT_MS);
    if (opts->max_connection_idle_ms > 0)
        INT_ARG(GRPC_ARG_MAX_CONNECTION_IDLE_MS, opts->max_connection_idle_ms);
    if (opts->max_connection_age_ms > 0) {
        INT_ARG(GRPC_ARG_MAX_CONNECTION_AGE_MS, opts->max_connection_age_ms);
        INT_ARG(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, SERVER_CONNECTION_AGE_GRACE_MS);
    }
    if (opts->max_metadata_bytes > 0)
        INT_ARG(GRPC_ARG_MAX_METADATA_SIZE, opts->max_metadata_bytes);
#undef INT_ARG
    if (opts->memory_quota_bytes > 0) {
        /* Everything core allocates for connections and calls (read buffers, HPACK tables, call
         * arenas) is charged to this quota; past it, core shrinks its read buffers and flow
         * control windows, sends GOAWAY to idle connections and cancels streams (HTTP/2
         * ENHANCE_YOUR_CALM; clients see RESOURCE_EXHAUSTED) rather than grow. */
        s->quota = grpc_resource_quota_create("books-server");
        grpc_resource_quota_resize(s->quota, opts->memory_quota_bytes);
        args[n_args].type = GRPC_ARG_POINTER;
        args[n_args].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
        args[n_args].value.pointer.p = s->quota;
        args[n_args].value.pointer.vtable = grpc_resource_quota_arg_vtable();
        n_args++;
    }
    grpc_channel_args channel_args = {n_args, args};
    s->server = grpc_server_create(&channel_args, NULL);

    for (i = 0, k = 0; i < n; i++)
        for (j = 0; j < services[i].n_methods; j++, k++) {
            struct method_slot *slot = &s->slots[k];
            slot->method = &services[i].methods[j];
            slot->self = services[i].self;
            slot->limits.max_message_bytes = (size_t)opts->max_recv_bytes;
            slot->limits.fields = slot->method->limits;
            slot->limits.n_fields = slot->method->n_limits;
            /* Bidirectional streams read their messages one by one; every other kind gets its
             * one request message together with the call. */
            slot->registered = grpc_server_register_method(
                s->server, slot->method->path, NULL,
                slot->method->kind == RPC_BIDI_STREAM ? GRPC_SRM_PAYLOAD_NONE
                                                      : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                0);
            if (!slot->registered) {
                snprintf(err, errlen, "cannot register method %s (registered twice?)",
                         slot->method->path);
                rc = BOOKS_EINVAL;
                goto fail_server;
            }
        }

    for (i = 0; i < s->n_workers; i++) {
        s->workers[i].srv = s;
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->workers[i].cq, NULL);
    }
    s->shutdown_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->shutdown_cq, NULL);

    /* A wildcard address makes core listen on [::] dual-stack where IPv6 exists, else 0.0.0.0. */
    snprintf(addr, sizeof addr, "0.0.0.0:%d", opts->port);
    creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        describe_bind_failure(opts->port, err, errlen);
        rc = BOOKS_EUNAVAIL;
        goto fail_server;
    }

    grpc_server_start(s->server);
    for (i = 0; i < s->n_workers; i++) {
        /* Each worker requests its own calls, so its free list never sees another thread. A
         * worker that cannot start requests nothing, and its queue stays empty. */
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            log_msg(LOG_WARNING, "could not start worker thread %zu of %zu; serving with fewer",
                    i + 1, s->n_workers);
            continue;
        }
        s->workers[i].started = true;
        started++;
    }
    if (started == 0) {
        snprintf(err, errlen, "cannot start any worker thread");
        server_shutdown(s, 0);
        server_free(s);
        return BOOKS_ENOMEM;
    }
    *out = s;
    return 0;

fail_server:
    server_destroy_unstarted(s);
fail_alloc:
    grpc_shutdown();
    return rc;
}

int server_port(const struct server *s) { return s->port; }

/* One warning naming every method that still has calls in flight, with their counts. */
static void log_unanswered(const struct server *s, long left, long waited_ms)
{
    char list[512];
    size_t off = 0;
    list[0] = '\0';
    for (size_t i = 0; i < s->n_slots && off < sizeof list; i++) {
        long n = atomic_load_explicit(&s->slots[i].in_flight, memory_order_relaxed);
        if (n > 0) {
            int w = snprintf(list + off, sizeof list - off, "%s%s: %ld", off ? ", " : "",
                             s->slots[i].method->path, n);
            off = w > 0 ? off + (size_t)w : off;
        }
    }
    log_msg(LOG_ERROR,
            "shutdown: %ld calls still unanswered after waiting %ld ms for the store (%s); "
            "leaving them: none was acknowledged to its client",
            left, waited_ms, off ? list : "no registered method");
}

long server_shutdown(struct server *s, int grace_ms)
{
    gpr_timespec deadline;
    grpc_event ev;
    size_t i;

    atomic_store(&s->shutting_down, true);
    s->shutdown_tag.step = NULL;
    grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &s->shutdown_tag);
    /* Core reports shutdown only once every connection is gone, and a client may keep an idle
     * connection open despite the GOAWAY. So wait in short slices: as soon as no call is left
     * (or the grace period is over), grpc_server_cancel_all_calls() also closes the connections. */
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                            gpr_time_from_millis(grace_ms, GPR_TIMESPAN));
    for (;;) {
        gpr_timespec slice = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(SHUTDOWN_POLL_MS, GPR_TIMESPAN));
        bool past = gpr_time_cmp(slice, deadline) >= 0;
        ev = grpc_completion_queue_next(s->shutdown_cq, past ? deadline : slice, NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT)
            break;
        long left = atomic_load_explicit(&s->in_flight, memory_order_acquire);
        if (left == 0 || past) {
            if (left)
                log_msg(LOG_WARNING,
                        "shutdown grace period of %d ms is over: cancelling %ld calls in flight",
                        grace_ms, left);
            grpc_server_cancel_all_calls(s->server);
            ev = grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                            NULL);
            break;
        }
    }
    /* A call whose handler answers later (a create waiting for the durable store's commit) is
     * still in flight after the cancel, and its reply, even to a cancelled call, is a batch on its
     * worker's queue: the queues must outlive it. The store answers every queued create promptly
     * (committed or failed), so wait for those answers while the workers still poll, but not
     * forever: a store stuck on a dead disk must not hold the process past its platform's kill. */
    for (long waited_ms = 0;; waited_ms += SHUTDOWN_POLL_MS) {
        long left = atomic_load_explicit(&s->in_flight, memory_order_acquire);
        if (left == 0)
            break;
        if (waited_ms >= SERVER_STORE_WAIT_MS) {
            log_unanswered(s, left, waited_ms);
            s->abandoned = true;
            return left;
        }
        if (waited_ms % 1000 == 0)
            log_msg(LOG_WARNING, "shutdown: waiting for the store to answer %ld calls", left);
        nanosleep(&(struct timespec){0, SHUTDOWN_POLL_MS * 1000000L}, NULL);
    }
    grpc_server_destroy(s->server);
    s->server = NULL;
    for (i = 0; i < s->n_workers; i++)
        grpc_completion_queue_shutdown(s->workers[i].cq);
    for (i = 0; i < s->n_workers; i++) {
        struct worker *w = &s->workers[i];
        if (w->started) {
            pthread_join(w->thread, NULL);
        } else {
            /* No thread ever polled this queue: drain it here. */
            for (;;) {
                ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                    break;
                ((struct tag *)ev.tag)->step(ev.tag, ev.success != 0);
            }
            while (w->free_list) {
                struct call *c = w->free_list;
                w->free_list = c->next_free;
                call_destroy(c);
            }
        }
        grpc_completion_queue_destroy(w->cq);
        w->cq = NULL;
    }
    grpc_completion_queue_shutdown(s->shutdown_cq);
    while (grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->shutdown_cq);
    s->shutdown_cq = NULL;
    return 0;
}

void server_free(struct server *s)
{
    /* An abandoned server still has calls whose late answers will touch it: keep it. */
    if (!s || s->abandoned)
        return;
    if (s->quota)
        grpc_resource_quota_unref(s->quota);
    free(s->workers);
    free(s->slots);
    free(s);
    grpc_shutdown();
}
