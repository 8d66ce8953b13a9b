/* client.c: calls to Firestore on gRPC core's C client. One channel, one completion queue and one
 * thread (books-fs) that polls it and runs every call's continuation: nothing of the caller's
 * waits. A unary call is gRPC's whole unary protocol in one batch; a server-streaming call
 * (RunQuery) is a start batch, a status batch and one receive batch at a time, ended when all
 * three are back. Every call is on a list while in flight, so shutdown can cancel them all. The
 * channel's connectivity is watched on the same queue: an idle channel is asked to connect again
 * at once, so a stopped Firestore (or emulator) shows as unreachable without any call, and a
 * restarted one as reachable. */
#include "fs.h"

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/codec.h"
#include "books/error.h"
#include "books/log.h"
#include "books/rpc.h"

static const char *const method_paths[FS_N_METHODS] = {
    [FS_GET_DOCUMENT] = "/google.firestore.v1.Firestore/GetDocument",
    [FS_COMMIT] = "/google.firestore.v1.Firestore/Commit",
    [FS_BATCH_WRITE] = "/google.firestore.v1.Firestore/BatchWrite",
    [FS_RUN_QUERY] = "/google.firestore.v1.Firestore/RunQuery",
};

struct fs_tag {
    void (*step)(struct fs_tag *t, bool ok);
};

struct fs_call {
    struct fs_tag start_tag, message_tag, status_tag;
    struct fs_client *cl;
    grpc_call *call;
    grpc_byte_buffer *request, *received;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    int pending;  /* batches not yet back */
    bool stopped; /* the stream's reader asked to stop */
    fs_unary_done_fn unary_done;
    fs_stream_message_fn on_message;
    fs_stream_end_fn on_end;
    void *arg;
    struct fs_call *prev, *next; /* the in-flight list */
};

/* A wait of fs_client_later(): on the client's list, sorted by at_ns. */
struct fs_timer {
    uint64_t at_ns;
    void (*fn)(void *arg, bool cancelled);
    void *arg;
    struct fs_timer *next;
};

struct fs_client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    pthread_t thread, timer_thread;
    bool started, timer_started;
    void *registered[FS_N_METHODS];
    grpc_metadata md[3];
    size_t n_md;
    int timeout_ms;
    fs_reachable_fn reachable;
    void *reachable_arg;
    struct fs_tag watch_tag;
    grpc_connectivity_state last_state;
    pthread_mutex_t mu; /* the list, the timers, cancelled, stopping */
    pthread_cond_t cv;  /* the list emptied */
    pthread_cond_t timer_cv; /* (CLOCK_MONOTONIC) a timer added, cancelled, or stopping */
    struct fs_call *head;
    struct fs_timer *timers;
    size_t in_flight; /* calls on the list and timers not yet run: fs_client_free waits for 0 */
    bool cancelled; /* fs_client_cancel_all() ran: every call ends CANCELLED */
    bool stopping;  /* fs_client_free() ran: the watch stops */
};

uint64_t fs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static gpr_timespec deadline_of(const struct fs_client *c, uint64_t deadline_ns)
{
    uint64_t now = fs_now_ns(), left;
    if (!deadline_ns)
        left = (uint64_t)c->timeout_ms * 1000000u;
    else
        left = deadline_ns > now ? deadline_ns - now : 0;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_nanos((int64_t)left, GPR_TIMESPAN));
}

static void copy_status(const struct fs_call *call, struct fs_status *st)
{
    size_t n = GRPC_SLICE_LENGTH(call->details);
    st->code = call->status;
    if (n >= sizeof st->message)
        n = sizeof st->message - 1;
    memcpy(st->message, GRPC_SLICE_START_PTR(call->details), n);
    st->message[n] = '\0';
}

/* ---- the in-flight list ------------------------------------------------------------------------ */

/* Links a new call; false when the client has been cancelled (the call is not started). */
static bool link_call(struct fs_client *c, struct fs_call *call)
{
    pthread_mutex_lock(&c->mu);
    bool ok = !c->cancelled;
    if (ok) {
        call->next = c->head;
        call->prev = NULL;
        if (c->head)
            c->head->prev = call;
        c->head = call;
        c->in_flight++;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void unlink_call(struct fs_client *c, struct fs_call *call)
{
    pthread_mutex_lock(&c->mu);
    if (call->prev)
        call->prev->next = call->next;
    else
        c->head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (--c->in_flight == 0)
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void free_call(struct fs_call *call)
{
    if (call->call)
        grpc_call_unref(call->call);
    grpc_byte_buffer_destroy(call->request);
    grpc_byte_buffer_destroy(call->received);
    grpc_metadata_array_destroy(&call->initial);
    grpc_metadata_array_destroy(&call->trailing);
    grpc_slice_unref(call->details);
    free(call);
}

static struct fs_call *new_call(struct fs_client *c, enum fs_method m,
                                const ProtobufCMessage *request, uint64_t deadline_ns)
{
    struct fs_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->cl = c;
    grpc_metadata_array_init(&call->initial);
    grpc_metadata_array_init(&call->trailing);
    call->details = grpc_empty_slice();
    codec_encode(request, &call->request);
    call->call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                     c->cq, c->registered[m],
                                                     deadline_of(c, deadline_ns), NULL);
    return call;
}

/* The ops every call starts with: our metadata, the request, the half-close, and the server's
 * initial metadata. Fills ops[0..4); returns 4. */
static size_t request_ops(const struct fs_client *c, struct fs_call *call, grpc_op *ops)
{
    memset(ops, 0, 4 * sizeof *ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = call->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &call->initial;
    return 4;
}

/* The op that ends every call: the status, its message and the trailing metadata. */
static void status_op(struct fs_call *call, grpc_op *op)
{
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &call->trailing;
    op->data.recv_status_on_client.status = &call->status;
    op->data.recv_status_on_client.status_details = &call->details;
}

/* ---- unary calls ------------------------------------------------------------------------------- */

static void unary_step(struct fs_tag *t, bool ok)
{
    struct fs_call *call = (struct fs_call *)((char *)t - offsetof(struct fs_call, start_tag));
    struct fs_status st;
    (void)ok; /* a client batch with RECV_STATUS_ON_CLIENT always completes with ok */
    copy_status(call, &st);
    unlink_call(call->cl, call);
    call->unary_done(call->arg, &st, st.code == GRPC_STATUS_OK ? call->received : NULL);
    free_call(call);
}

static void fail_now(fs_unary_done_fn done, fs_stream_end_fn end, void *arg,
                     grpc_status_code code, const char *message)
{
    struct fs_status st = {.code = code};
    snprintf(st.message, sizeof st.message, "%s", message);
    if (done)
        done(arg, &st, NULL);
    else
        end(arg, &st);
}

/* A new call of `m` on the in-flight list, with who to tell (`done` for a unary call, `on_message`
 * and `on_end` for a stream); NULL once the caller has been told it could not start (out of
 * memory, or the client cancelled). */
static struct fs_call *open_call(struct fs_client *c, enum fs_method m,
                                 const ProtobufCMessage *request, uint64_t deadline_ns,
                                 fs_unary_done_fn done, fs_stream_message_fn on_message,
                                 fs_stream_end_fn on_end, void *arg)
{
    struct fs_call *call = new_call(c, m, request, deadline_ns);
    if (!call) {
        fail_now(done, on_end, arg, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    call->unary_done = done;
    call->on_message = on_message;
    call->on_end = on_end;
    call->arg = arg;
    if (!link_call(c, call)) {
        free_call(call);
        fail_now(done, on_end, arg, GRPC_STATUS_CANCELLED, "the store is shutting down");
        return NULL;
    }
    return call;
}

void fs_unary(struct fs_client *c, enum fs_method m, const ProtobufCMessage *request,
              uint64_t deadline_ns, fs_unary_done_fn done, void *arg)
{
    struct fs_call *call = open_call(c, m, request, deadline_ns, done, NULL, NULL, arg);
    grpc_op ops[6];
    if (!call)
        return;
    call->start_tag.step = unary_step;
    size_t n = request_ops(c, call, ops);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &call->received;
    status_op(call, &ops[n++]);
    grpc_call_error e = grpc_call_start_batch(call->call, ops, n, &call->start_tag, NULL);
    if (e != GRPC_CALL_OK) {
        unlink_call(c, call);
        free_call(call);
        fail_now(done, NULL, arg, GRPC_STATUS_INTERNAL, grpc_call_error_to_string(e));
    }
}

/* fs_unary_wait's meeting point: the client's thread fills it and signals. */
struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct fs_status st;
    grpc_byte_buffer *response;
};

static void wake(void *arg, const struct fs_status *st, grpc_byte_buffer *response)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->st = *st;
    w->response = response ? grpc_byte_buffer_copy(response) : NULL;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int fs_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc, struct arena *arena,
              ProtobufCMessage **out)
{
    static const struct codec_limits limits = {.max_message_bytes = FS_MAX_RESPONSE_BYTES};
    struct books_error e;
    books_error_init(&e, arena);
    return codec_decode(bb, desc, &limits, arena, out, &e);
}

grpc_status_code fs_unary_wait(struct fs_client *c, enum fs_method m,
                               const ProtobufCMessage *request, uint64_t deadline_ns,
                               const ProtobufCMessageDescriptor *desc, struct arena *arena,
                               ProtobufCMessage **out, struct fs_status *st)
{
    struct waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    *out = NULL;
    fs_unary(c, m, request, deadline_ns, wake, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done) /* the call's deadline bounds this wait */
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    *st = w.st;
    if (st->code == GRPC_STATUS_OK) {
        if (!w.response || fs_decode(w.response, desc, arena, out) != 0) {
            st->code = GRPC_STATUS_INTERNAL;
            snprintf(st->message, sizeof st->message, "Firestore's %s response does not decode",
                     desc->short_name);
            *out = NULL;
        }
    }
    grpc_byte_buffer_destroy(w.response);
    return st->code;
}

/* ---- server-streaming calls -------------------------------------------------------------------- */

static void stream_settle(struct fs_call *call)
{
    if (--call->pending > 0)
        return;
    struct fs_status st;
    copy_status(call, &st);
    unlink_call(call->cl, call);
    call->on_end(call->arg, &st);
    free_call(call);
}

static void stream_start_step(struct fs_tag *t, bool ok)
{
    (void)ok;
    stream_settle((struct fs_call *)((char *)t - offsetof(struct fs_call, start_tag)));
}

static void stream_status_step(struct fs_tag *t, bool ok)
{
    (void)ok;
    stream_settle((struct fs_call *)((char *)t - offsetof(struct fs_call, status_tag)));
}

/* Starts the batch that receives the stream's next message. */
static bool start_receive(struct fs_call *call)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &call->received;
    return grpc_call_start_batch(call->call, &op, 1, &call->message_tag, NULL) == GRPC_CALL_OK;
}

/* The next receive, from the client's thread (the only one that counts `pending` after start). */
static bool receive_next(struct fs_call *call)
{
    call->pending++;
    if (!start_receive(call)) {
        call->pending--;
        return false;
    }
    return true;
}

static void stream_message_step(struct fs_tag *t, bool ok)
{
    struct fs_call *call = (struct fs_call *)((char *)t - offsetof(struct fs_call, message_tag));
    grpc_byte_buffer *msg = call->received;
    call->received = NULL;
    if (ok && msg && !call->stopped) {
        bool more = call->on_message(call->arg, msg);
        grpc_byte_buffer_destroy(msg);
        if (!more) {
            call->stopped = true;
            grpc_call_cancel(call->call, NULL);
        } else if (!receive_next(call)) {
            call->stopped = true;
            grpc_call_cancel(call->call, NULL);
        }
    } else {
        grpc_byte_buffer_destroy(msg); /* the end of the stream, or after a stop */
    }
    stream_settle(call);
}

void fs_stream(struct fs_client *c, enum fs_method m, const ProtobufCMessage *request,
               uint64_t deadline_ns, fs_stream_message_fn on_message, fs_stream_end_fn on_end,
               void *arg)
{
    struct fs_call *call = open_call(c, m, request, deadline_ns, NULL, on_message, on_end, arg);
    grpc_op ops[4], status;
    if (!call)
        return;
    call->start_tag.step = stream_start_step;
    call->status_tag.step = stream_status_step;
    call->message_tag.step = stream_message_step;
    size_t n = request_ops(c, call, ops);
    status_op(call, &status);
    /* The queue's thread may run a completion as soon as a batch starts: pending counts all
     * three batches first. */
    call->pending = 3;
    if (grpc_call_start_batch(call->call, ops, n, &call->start_tag, NULL) != GRPC_CALL_OK ||
        grpc_call_start_batch(call->call, &status, 1, &call->status_tag, NULL) != GRPC_CALL_OK) {
        /* Only a bug gets here (the ops are fixed): nothing was started that could complete. */
        abort();
    }
    if (!start_receive(call))
        abort();
}

/* ---- connectivity ------------------------------------------------------------------------------ */

static void watch_again(struct fs_client *c)
{
    gpr_timespec never = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_channel_watch_connectivity_state(c->channel, c->last_state, never, c->cq, &c->watch_tag);
}

static void watch_step(struct fs_tag *t, bool ok)
{
    struct fs_client *c = (struct fs_client *)((char *)t - offsetof(struct fs_client, watch_tag));
    /* The channel is used under c->mu only, and only before fs_client_free() sets `stopping`
     * (under the same lock) and destroys it: a watch that completes after that leaves it alone. */
    pthread_mutex_lock(&c->mu);
    if (c->stopping || !ok) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    /* An idle channel connects again at once: reachability is known without a call. */
    grpc_connectivity_state was = c->last_state;
    grpc_connectivity_state s = grpc_channel_check_connectivity_state(c->channel, 1);
    c->last_state = s;
    watch_again(c);
    pthread_mutex_unlock(&c->mu);
    if (s != was) { /* told outside the lock: the listener takes locks of its own */
        if (s == GRPC_CHANNEL_READY)
            c->reachable(c->reachable_arg, true);
        else if (s == GRPC_CHANNEL_TRANSIENT_FAILURE || s == GRPC_CHANNEL_SHUTDOWN)
            c->reachable(c->reachable_arg, false);
    }
}

/* ---- waits between attempts ---------------------------------------------------------------------- */

void fs_client_later(struct fs_client *c, uint64_t at_ns, void (*fn)(void *arg, bool cancelled),
                     void *arg)
{
    struct fs_timer *t = malloc(sizeof *t);
    pthread_mutex_lock(&c->mu);
    bool now = c->cancelled || !t || !c->timer_started;
    if (!now) {
        *t = (struct fs_timer){.at_ns = at_ns, .fn = fn, .arg = arg};
        struct fs_timer **p = &c->timers;
        while (*p && (*p)->at_ns <= at_ns)
            p = &(*p)->next;
        t->next = *p;
        *p = t;
        c->in_flight++;
        pthread_cond_signal(&c->timer_cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (now) { /* cancelled (or no memory, no thread): the wait ends at once, as cancelled */
        free(t);
        fn(arg, true);
    }
}

/* The timer thread: runs each wait when it is due, or all of them, cancelled, once the client
 * is; ends when the client stops and none is left. */
static void *timer_main(void *arg)
{
    struct fs_client *c = arg;
    pthread_setname_np(pthread_self(), "books-fs-timer");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        struct fs_timer *t = c->timers;
        if (!t && c->stopping)
            break;
        uint64_t now = fs_now_ns();
        if (t && (c->cancelled || t->at_ns <= now)) {
            c->timers = t->next;
            bool cancelled = c->cancelled;
            pthread_mutex_unlock(&c->mu);
            t->fn(t->arg, cancelled); /* may start a call: counted before this wait is let go */
            free(t);
            pthread_mutex_lock(&c->mu);
            if (--c->in_flight == 0)
                pthread_cond_broadcast(&c->cv);
            continue;
        }
        if (!t) {
            pthread_cond_wait(&c->timer_cv, &c->mu);
        } else {
            struct timespec at = {(time_t)(t->at_ns / 1000000000u),
                                  (long)(t->at_ns % 1000000000u)};
            pthread_cond_timedwait(&c->timer_cv, &c->mu, &at);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- the thread -------------------------------------------------------------------------------- */

static void *client_main(void *arg)
{
    struct fs_client *c = arg;
    pthread_setname_np(pthread_self(), "books-fs");
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        if (ev.type == GRPC_OP_COMPLETE)
            ((struct fs_tag *)ev.tag)->step(ev.tag, ev.success != 0);
    }
}

static void add_md(struct fs_client *c, const char *key, const char *value)
{
    c->md[c->n_md].key = grpc_slice_from_static_string(key);
    c->md[c->n_md].value = grpc_slice_from_copied_string(value);
    c->n_md++;
}

int fs_client_new(const char *target, bool emulator, const char *project, const char *database_id,
                  fs_reachable_fn reachable, void *reachable_arg, struct fs_client **out,
                  char *err, size_t errlen)
{
    struct fs_client *c = calloc(1, sizeof *c);
    grpc_channel_credentials *creds;
    char value[FS_NAME_BYTES];
    /* Responses are inflated by the codec, never past FS_MAX_RESPONSE_BYTES (core would inflate
     * a compressed message whole before checking its size). Keepalive pings find a connection
     * that died quietly (a NAT, a restarted emulator) within 40 s. */
    grpc_arg argv[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         {.integer = (int)FS_MAX_RESPONSE_BYTES}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 30000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 10000}},
        {GRPC_ARG_STRING, GRPC_ARG_PRIMARY_USER_AGENT_STRING, {.string = "books-server"}},
        /* Reconnect quickly after an outage: 1 s first, at most 5 s apart. */
        {GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 200}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 2000}},
    };
    grpc_channel_args args = {sizeof argv / sizeof argv[0], argv};

    if (!c)
        return BOOKS_ENOMEM;
    rpc_grpc_init();
    c->timeout_ms = 10000;
    c->reachable = reachable;
    c->reachable_arg = reachable_arg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timer_main waits for fs_now_ns() times */
    pthread_cond_init(&c->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (emulator) {
        creds = grpc_insecure_credentials_create();
        add_md(c, "authorization", "Bearer owner");
    } else {
        creds = grpc_google_default_credentials_create(NULL);
        if (!creds) {
            books_format_err(err, errlen,
                             "store URI firestore:: no Application Default Credentials: set "
                             "GOOGLE_APPLICATION_CREDENTIALS to a service account key file, run "
                             "'gcloud auth application-default login', run on Google Cloud, or set "
                             "FIRESTORE_EMULATOR_HOST for the emulator");
            pthread_cond_destroy(&c->timer_cv);
            pthread_cond_destroy(&c->cv);
            pthread_mutex_destroy(&c->mu);
            free(c);
            grpc_shutdown();
            return BOOKS_EINVAL;
        }
    }
    /* Firestore routes a call by its database (the headers Google's client libraries send). */
    snprintf(value, sizeof value, "projects/%s/databases/%s", project, database_id);
    add_md(c, "google-cloud-resource-prefix", value);
    snprintf(value, sizeof value, "project_id=%s&database_id=%s", project, database_id);
    add_md(c, "x-goog-request-params", value);
    c->channel = grpc_channel_create(target, creds, &args);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_next(NULL);
    for (int m = 0; m < FS_N_METHODS; m++)
        c->registered[m] = grpc_channel_register_call(c->channel, method_paths[m], NULL, NULL);
    c->watch_tag.step = watch_step;
    c->last_state = grpc_channel_check_connectivity_state(c->channel, 1);
    watch_again(c);
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        books_format_err(err, errlen, "store URI firestore:: cannot start a thread");
        c->started = false;
        fs_client_free(c);
        return BOOKS_EIO;
    }
    c->started = true;
    if (pthread_create(&c->timer_thread, NULL, timer_main, c) != 0) {
        books_format_err(err, errlen, "store URI firestore:: cannot start a thread");
        fs_client_free(c);
        return BOOKS_EIO;
    }
    c->timer_started = true;
    *out = c;
    return 0;
}

void fs_client_set_timeout(struct fs_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

void fs_client_cancel_all(struct fs_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->cancelled = true;
    for (struct fs_call *call = c->head; call; call = call->next)
        grpc_call_cancel(call->call, NULL);
    pthread_cond_signal(&c->timer_cv); /* the waits end now, cancelled */
    pthread_mutex_unlock(&c->mu);
}

void fs_client_free(struct fs_client *c)
{
    if (!c)
        return;
    fs_client_cancel_all(c);
    pthread_mutex_lock(&c->mu);
    c->stopping = true; /* from here on watch_step leaves the channel alone */
    pthread_cond_signal(&c->timer_cv);
    while (c->in_flight > 0 && c->started) /* each cancelled call and wait ends promptly */
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (c->timer_started)
        pthread_join(c->timer_thread, NULL);
    /* Destroying the channel ends the connectivity watch (its tag comes back, not re-armed). */
    grpc_channel_destroy(c->channel);
    grpc_completion_queue_shutdown(c->cq);
    if (c->started) {
        pthread_join(c->thread, NULL);
    } else {
        while (grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    }
    grpc_completion_queue_destroy(c->cq);
    for (size_t i = 0; i < c->n_md; i++)
        grpc_slice_unref(c->md[i].value);
    pthread_cond_destroy(&c->timer_cv);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
    grpc_shutdown();
}

int fs_status_error(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK:
        return 0;
    case GRPC_STATUS_NOT_FOUND:
        return BOOKS_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS:
        return BOOKS_EEXIST;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return BOOKS_EDEADLINE;
    case GRPC_STATUS_ABORTED: /* contention on a document: retry */
        return BOOKS_EABORTED;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: /* a quota, the ramp-up: throttled, retry later */
        return BOOKS_ETHROTTLED;
    case GRPC_STATUS_PERMISSION_DENIED: /* the credentials lack a role: not retryable */
    case GRPC_STATUS_UNAUTHENTICATED:
        return BOOKS_EREFUSED;
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_CANCELLED: /* the store is shutting down */
        return BOOKS_EUNAVAIL;
    case GRPC_STATUS_INVALID_ARGUMENT: /* a request of ours Firestore refuses: a bug */
    case GRPC_STATUS_UNIMPLEMENTED:
        return BOOKS_EINTERNAL;
    case GRPC_STATUS_DATA_LOSS:
        return BOOKS_ECORRUPT;
    default:
        return BOOKS_EIO;
    }
}
