/* unary.c: call objects and the unary call path of the server loop (call.h has the shared picture).
 *
 * For each registered method (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so the request message
 * arrives with the call) and for unregistered methods (generic requests, answered UNIMPLEMENTED
 * because core would otherwise park them until their deadline), each queue keeps a few requests
 * outstanding. When one is matched, a replacement is requested at once from the free list, then
 * the call is decoded, handed to its handler, and answered with ONE batch: initial metadata,
 * message, status (plus google.rpc.Status details on errors) and RECV_CLOSE_ON_SERVER. When that
 * batch completes, one log line is written and the call object goes back to the free list with its
 * arena reset: steady-state serving allocates no call objects. The streaming kinds branch off to
 * stream.c once matched, and come back here to finish.
 *
 * Handlers may answer later from another thread (a durable store's commit thread): rpc_reply_done
 * then encodes and starts the batch there, which gRPC core allows for a call nobody else is
 * touching; the completion still arrives on the owning worker's queue. */
#include "call.h"

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/codec.h"
#include "books/log.h"
#include "books/status.h"
#include "books/trace.h"

static void step_registered(struct tag *t, bool ok);
static void step_generic(struct tag *t, bool ok);
static void reply_done(struct rpc_reply *reply);
static void log_call(struct call *c);

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

void call_destroy(struct call *c)
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

void call_request_registered(struct worker *w, const struct method_slot *slot)
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
    atomic_fetch_add_explicit(&w->srv->outstanding, 1, memory_order_relaxed);
    e = grpc_server_request_registered_call(
        w->srv->server, slot->registered, &c->call, &c->deadline, &c->md,
        slot->method->kind == RPC_BIDI_STREAM ? NULL : &c->payload, w->cq, w->cq, &c->tag);
    if (e != GRPC_CALL_OK) {
        atomic_fetch_sub_explicit(&w->srv->outstanding, 1, memory_order_release);
        log_msg(LOG_ERROR, "grpc_server_request_registered_call(%s): %s", slot->method->path,
                grpc_call_error_to_string(e));
        call_put(w, c);
    }
}

void call_request_generic(struct worker *w)
{
    struct call *c = call_get(w);
    grpc_call_error e;
    if (!c) {
        log_msg(LOG_ERROR, "out of memory: cannot request a generic call");
        return;
    }
    c->slot = NULL;
    c->tag.step = step_generic;
    atomic_fetch_add_explicit(&w->srv->outstanding, 1, memory_order_relaxed);
    e = grpc_server_request_call(w->srv->server, &c->call, &c->details, &c->md, w->cq, w->cq,
                                 &c->tag);
    if (e != GRPC_CALL_OK) {
        atomic_fetch_sub_explicit(&w->srv->outstanding, 1, memory_order_release);
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
    c->reply.embedded = NULL;
    c->reply.n_embedded = 0;
    c->reply.embed_field = 0;
    books_error_init(&c->reply.error, &c->arena);
    c->reply.release = NULL;
    c->reply.release_arg = NULL;
    c->reply.deadline_ns = 0;
    c->reply.done = reply_done;
    c->reply.budget = &c->w->srv->budget;
    c->reply.charged = 0;
    c->reply.reserved = 0;
}

/* The call's own memory (its object, and what decoding took from the heap) against the budget of
 * calls in flight; false, with the error set, when it does not fit. */
static bool charge_call(struct call *c, size_t bytes)
{
    if (rpc_reply_charge(&c->reply, bytes))
        return true;
    books_error_set(&c->reply.error, BOOKS_EBUSY, "OVERLOADED",
                    "the server holds as much work in flight as its memory budget allows "
                    "(BOOKS_MEMORY_LIMIT_MB); nothing was done: retry with backoff");
    books_error_set_retry(&c->reply.error, 200); /* as the service's OVERLOADED (service.c) */
    return false;
}

/* A deadline further away than this is no deadline (gRPC's grpc-timeout reaches 10^8 hours, about
 * 11,000 years, whose nanoseconds overflow 64 bits). */
#define DEADLINE_HORIZON_S (100ull * 365 * 24 * 3600)

/* The call's deadline for the handler and the store (rpc_reply.deadline_ns): CLOCK_MONOTONIC
 * nanoseconds, 0 when the caller set none or one past DEADLINE_HORIZON_S. gpr's monotonic clock
 * counts from its own start, so the time left is what carries over. Sets *passed when it is
 * already over. */
static uint64_t deadline_ns(gpr_timespec deadline, bool *passed)
{
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    gpr_timespec mono = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    struct timespec ts;

    *passed = gpr_time_cmp(mono, now) <= 0;
    if (*passed || gpr_time_cmp(mono, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return 0;
    gpr_timespec left = gpr_time_sub(mono, now);
    if (left.tv_sec < 0 || (uint64_t)left.tv_sec >= DEADLINE_HORIZON_S)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
           (uint64_t)left.tv_sec * 1000000000u + (uint64_t)left.tv_nsec;
}

/* True when the call's deadline is over (never for a call without one). */
static bool deadline_passed(gpr_timespec deadline)
{
    gpr_timespec mono = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    return gpr_time_cmp(mono, gpr_now(GPR_CLOCK_MONOTONIC)) <= 0;
}

/* The request metadata core delivered with the call, counted as HTTP/2 counts a header list
 * (RFC 9113 section 6.5.2, SETTINGS_MAX_HEADER_LIST_SIZE: each field's name and value plus 32
 * bytes). Core keeps the pseudo-headers (:path, :authority, :method, :scheme) to itself; they are
 * not counted here, nor needed to be: the limit is on what a caller chooses to send. */
static size_t metadata_bytes(const grpc_metadata_array *md)
{
    size_t n = 0;
    for (size_t i = 0; i < md->count; i++)
        n += GRPC_SLICE_LENGTH(md->metadata[i].key) + GRPC_SLICE_LENGTH(md->metadata[i].value) +
             32;
    return n;
}

/* A call whose metadata is over the server's own limit (server.h: max_metadata_bytes, below the
 * transport's) is refused alone, RESOURCE_EXHAUSTED, instead of core dropping its connection. */
static bool metadata_fits(struct call *c, size_t max_bytes)
{
    size_t n = metadata_bytes(&c->md);
    if (n <= max_bytes)
        return true;
    books_error_set(&c->reply.error, BOOKS_E2BIG, "METADATA_TOO_LARGE",
                    "the call's metadata is %zu bytes (each entry's name and value plus 32, as "
                    "HTTP/2 counts a header list); this server accepts at most %zu "
                    "(BOOKS_MAX_METADATA_BYTES): send fewer or smaller metadata entries",
                    n, max_bytes);
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", max_bytes);
    books_error_set_meta(&c->reply.error, "max_metadata_bytes", limit);
    return false;
}

static void step_registered(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, tag);
    struct worker *w = c->w;
    const struct method_slot *slot = c->slot;
    int rc;

    if (!ok) { /* the server is shutting down: this request will never be matched */
        call_put(w, c);
        atomic_fetch_sub_explicit(&w->srv->outstanding, 1, memory_order_release);
        return;
    }
    atomic_fetch_add_explicit(&w->srv->in_flight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&((struct method_slot *)slot)->in_flight, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&w->srv->shutting_down, memory_order_relaxed))
        call_request_registered(w, slot);
    reply_prepare(c);
    if (!metadata_fits(c, w->srv->max_metadata_bytes)) {
        /* Nothing read, nothing done: every kind ends with the one status batch. */
        reply_done(&c->reply);
        return;
    }
    if (slot->method->kind == RPC_BIDI_STREAM) {
        stream_bidi_begin(c);
        return;
    }
    bool passed;
    c->reply.deadline_ns = deadline_ns(c->deadline, &passed);
    if (!charge_call(c, sizeof *c)) {
        reply_done(&c->reply);
        return;
    }
    if (passed) {
        /* No work for a call whose caller has already given up. */
        books_error_set(&c->reply.error, BOOKS_EDEADLINE, "DEADLINE_EXCEEDED",
                        c->payload ? "the client's deadline passed before the server started "
                                     "the call"
                                   : "the client's deadline passed before the request arrived");
        reply_done(&c->reply);
        return;
    }
    bool no_message = c->payload == NULL;
    rc = codec_decode(c->payload, slot->method->request, &slot->limits, &c->arena, &c->request,
                      &c->reply.error);
    if (rc && no_message && deadline_passed(c->deadline)) {
        /* Core hands over a call without its message when the deadline ends the wait for it:
         * the client gave up, it did not send a request without a message. */
        books_error_init(&c->reply.error, &c->arena);
        books_error_set(&c->reply.error, BOOKS_EDEADLINE, "DEADLINE_EXCEEDED",
                        "the client's deadline passed before the request arrived");
    }
    /* The request's bytes are not needed once decoded (strings were copied into the arena): give
     * them back now rather than when a durable store answers. */
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (rc || !charge_call(c, arena_heap_bytes(&c->arena))) {
        reply_done(&c->reply);
        return;
    }
    if (slot->method->kind == RPC_SERVER_STREAM) {
        stream_server_begin(c);
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
        atomic_fetch_sub_explicit(&w->srv->outstanding, 1, memory_order_release);
        return;
    }
    atomic_fetch_add_explicit(&w->srv->in_flight, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&w->srv->shutting_down, memory_order_relaxed))
        call_request_generic(w);
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

/* Records the status to send for `e` (OK when NULL or code 0): code, message and the AIP-193
 * details trailer. The message is also kept for the log line. */
void call_set_status(struct call *c, const struct books_error *e)
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

/* Encodes the reply and sends it as one batch. Runs on the handler's thread, which may not be the
 * worker's; it touches only this call, and the completion goes to the worker's queue. */
static void reply_done(struct rpc_reply *reply)
{
    struct call *c = container_of(reply, struct call, reply);
    grpc_op ops[4];
    size_t n = 0;

    memset(ops, 0, sizeof ops);
    if (reply->error.code == 0 && !reply->response && !(reply->n_embedded && !reply->embed_field))
        books_error_set(&reply->error, BOOKS_EINTERNAL, "INTERNAL", "the handler gave no response");
    if (reply->error.code == 0 && reply->n_embedded)
        codec_encode_embedded(reply->response, reply->embed_field, reply->embedded,
                              reply->n_embedded, &c->response);
    else if (reply->error.code == 0)
        codec_encode(reply->response, &c->response);
    /* The response is held (by core, until the client has read it) as long as the call lasts:
     * charged out of what the handler reserved, the rest past the limit (it exists already);
     * then the handler lets go of what it encoded from (its records' charge with them). */
    if (c->response)
        rpc_reply_hold(reply, grpc_byte_buffer_length(c->response));
    if (reply->release)
        reply->release(reply);
    reply->release = NULL;
    /* What is left of the reservation is given back: the answer is charged as what it holds. */
    if (reply->reserved && reply->budget) {
        budget_release(reply->budget, reply->reserved);
        reply->charged -= reply->reserved;
    }
    reply->reserved = 0;
    codec_free_request(c->request, &c->arena);
    c->request = NULL;

    n += initial_metadata_op(c, &ops[n]);
    call_set_status(c, &reply->error);
    if (reply->error.code == 0) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->response;
        n++;
    }
    n += status_op(c, &ops[n]);
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    c->tag.step = call_step_sent;
    start_batch(c, ops, n, &c->tag);
}

/* The end of a matched call: its log line, then the object goes back to the free list. */
void call_finished(struct call *c)
{
    struct worker *w = c->w;
    struct method_slot *slot = (struct method_slot *)c->slot;
    log_call(c);
    if (c->reply.charged) {
        budget_release(&w->srv->budget, c->reply.charged);
        c->reply.charged = 0;
    }
    call_put(w, c);
    if (slot)
        atomic_fetch_sub_explicit(&slot->in_flight, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->srv->in_flight, 1, memory_order_release);
    atomic_fetch_sub_explicit(&w->srv->outstanding, 1, memory_order_release);
}

void call_step_sent(struct tag *t, bool ok)
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
        r.code = rpc_status_name(c->code);
        r.message = c->code != GRPC_STATUS_OK ? c->reply.error.message : NULL;
        /* A cancelled call did not get our status: the client cancelled it, or its deadline
         * passed first (then the client saw DEADLINE_EXCEEDED, and so does the log). */
        char late[sizeof c->reply.error.message + 160];
        if (c->cancelled && !deadline_passed(c->deadline)) {
            r.code = "CANCELLED";
        } else if (c->cancelled) {
            r.code = "DEADLINE_EXCEEDED";
            if (c->code != GRPC_STATUS_DEADLINE_EXCEEDED) {
                snprintf(late, sizeof late,
                         "the client's deadline passed before the call was answered (the "
                         "answer, %s%s%s, was not delivered)",
                         rpc_status_name(c->code), r.message ? ": " : "",
                         r.message ? r.message : "");
                r.message = late;
            }
        }
        r.latency_us = log_now_us() - c->start_us;
        r.peer = peer;
        struct trace_context trace;
        r.trace = find_trace(&c->md, &trace) ? &trace : NULL;
        log_rpc(&r);
        gpr_free(peer);
    }
}
