/* server.c: the server loop's life cycle: server_start (channel arguments, method registration,
 * completion queues, the port, the worker threads), the workers' polling loop, and shutdown. What a
 * call does once a worker has it is in unary.c and stream.c; call.h has the shared picture and
 * structures.
 *
 * Each worker requests its own calls on its own queue and is the only thread that polls it, so its
 * free list of call objects never sees another thread.
 *
 * Shutdown (gRPC core's order): grpc_server_shutdown_and_notify, wait up to the grace period for
 * calls in flight, grpc_server_cancel_all_calls, wait for the shutdown tag, grpc_server_destroy,
 * shut down each worker queue and let its thread drain it to GRPC_QUEUE_SHUTDOWN, join, destroy. */
#include "books/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "books/log.h"
#include "call.h"

/* How often a graceful shutdown checks whether calls are still in flight. */
#define SHUTDOWN_POLL_MS 20
/* Room for every channel argument server_start() sets. */
#define MAX_CHANNEL_ARGS 20

/* ---- threads ----------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    size_t i, j;
    for (i = 0; i < w->srv->n_slots; i++)
        for (j = 0; j < REQUESTS_PER_METHOD; j++)
            call_request_registered(w, &w->srv->slots[i]);
    for (j = 0; j < REQUESTS_PER_METHOD; j++)
        call_request_generic(w);
    pthread_mutex_lock(&w->srv->ready_mu);
    w->srv->n_ready++;
    pthread_cond_signal(&w->srv->ready_cv);
    pthread_mutex_unlock(&w->srv->ready_mu);
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
    pthread_cond_destroy(&s->ready_cv);
    pthread_mutex_destroy(&s->ready_mu);
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
    rpc_grpc_init();
    s = calloc(1, sizeof *s);
    if (!s) {
        rc = BOOKS_ENOMEM;
        goto fail_alloc;
    }
    atomic_init(&s->shutting_down, false);
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->outstanding, 0);
    budget_init(&s->budget, opts->inflight_bytes);
    pthread_mutex_init(&s->ready_mu, NULL);
    pthread_cond_init(&s->ready_cv, NULL);
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
    /* Channelz counts every call and message per server and socket for the channelz service,
     * which this server does not host: 0.5% of a GetBook's instructions for nobody to read. */
    INT_ARG(GRPC_ARG_ENABLE_CHANNELZ, 0);
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
    /* The server refuses a call over its own limit (unary.c); core's, above it, only bounds what
     * a connection may make core buffer (server.h: server_transport_metadata_bytes). */
    s->max_metadata_bytes = opts->max_metadata_bytes > 0 ? (size_t)opts->max_metadata_bytes
                                                         : SERVER_DEFAULT_METADATA_BYTES;
    INT_ARG(GRPC_ARG_MAX_METADATA_SIZE, server_transport_metadata_bytes((int)s->max_metadata_bytes));
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
    /* Before anyone can shut the server down, every worker has requested its first calls (a
     * request made on a destroyed server crashes in core). */
    pthread_mutex_lock(&s->ready_mu);
    while (s->n_ready < started)
        pthread_cond_wait(&s->ready_cv, &s->ready_mu);
    pthread_mutex_unlock(&s->ready_mu);
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

int server_transport_metadata_bytes(int max_metadata_bytes)
{
    long long n = 2LL * (max_metadata_bytes > 0 ? max_metadata_bytes : SERVER_DEFAULT_METADATA_BYTES);
    if (n < SERVER_TRANSPORT_METADATA_MIN_BYTES)
        n = SERVER_TRANSPORT_METADATA_MIN_BYTES;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int server_port(const struct server *s) { return s->port; }

const struct budget *server_budget(const struct server *s) { return &s->budget; }

void server_on_cancel(struct server *s, void (*fn)(void *arg), void *arg)
{
    s->on_cancel = fn;
    s->on_cancel_arg = arg;
}

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
            "shutdown: %ld calls still unanswered after %ld ms without progress (%s); "
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
    /* The bound is on time without progress: after a flood (tens of thousands of streams opened
     * and reset), the workers may need seconds to drain calls that are already answered, and that
     * is progress, not a stuck store. */
    /* Whoever still holds calls (a store waiting on a database) answers them now. */
    if (s->on_cancel)
        s->on_cancel(s->on_cancel_arg);
    /* Every tag core holds counts, not only calls that are matched: a request the shutdown failed,
     * or a match still queued, must come back to its worker before the server is destroyed. */
    long last = -1, still_ms = 0;
    for (long waited_ms = 0;; waited_ms += SHUTDOWN_POLL_MS, still_ms += SHUTDOWN_POLL_MS) {
        long left = atomic_load_explicit(&s->outstanding, memory_order_acquire);
        if (left == 0)
            break;
        if (left != last) {
            last = left;
            still_ms = 0;
        }
        if (still_ms >= SERVER_STORE_WAIT_MS) {
            log_unanswered(s, left, still_ms);
            s->abandoned = true;
            return left;
        }
        /* Requests for calls not yet matched come back within a poll or two: only calls being
         * served are worth a line, once a second. */
        long serving = atomic_load_explicit(&s->in_flight, memory_order_acquire);
        if (waited_ms % 1000 == 0 && serving > 0)
            log_msg(LOG_WARNING, "shutdown: waiting for %ld calls to finish (answers from the store, "
                    "replies being sent)", serving);
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
    pthread_cond_destroy(&s->ready_cv);
    pthread_mutex_destroy(&s->ready_mu);
    free(s->workers);
    free(s->slots);
    free(s);
    grpc_shutdown();
}
