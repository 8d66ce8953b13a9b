/* stream.c: the streaming kinds of the server loop (call.h has the shared picture): server
 * streaming, where a handler sends messages from any thread until the call ends (health Watch), and
 * bidirectional streaming, one response per request in order, all on the worker (reflection). A
 * call gets here from unary.c once it is matched (and, for server streaming, decoded), and goes
 * back through call_finished() when it is over. */
#include "call.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "books/codec.h"
#include "books/error.h"

static void step_stream_sent(struct tag *t, bool ok);
static void step_stream_closed(struct tag *t, bool ok);
static void step_bidi_recv(struct tag *t, bool ok);

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

void stream_server_begin(struct call *c)
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
        call_set_status(c, err);
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

void stream_bidi_begin(struct call *c)
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
    call_set_status(c, &c->reply.error);
    status_op(c, &ops[0]);
    ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[1].data.recv_close_on_server.cancelled = &c->cancelled;
    c->tag.step = call_step_sent;
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
    c->reply.n_embedded = 0; /* bidi replies are packed whole */
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
