/* server.h: the gRPC server (gRPC core C API, grpc/grpc.h). Owns the grpc_server, one completion
 * queue and one worker thread per configured thread, the registered-method table built from the
 * services it is given, the per-call state objects (every completion-queue tag is one), the channel
 * arguments (limits, keepalive) and the shutdown order. Calls to methods no service declares are
 * answered UNIMPLEMENTED. Never decides API semantics: that is the services' job.
 *
 * Threads: one thread owns a server, the one that starts it (main's): it alone calls
 * server_start(), server_shutdown() and server_free(), and it is never one of the server's workers
 * or a thread a handler waits on. Handlers and stream hooks run on the workers (rpc.h). */
#ifndef BOOKS_SERVER_H
#define BOOKS_SERVER_H

#include <stddef.h>

#include "books/budget.h"
#include "books/rpc.h"

struct server_options {
    int port;                   /* TCP port, 0..65535 (0: kernel picks one); bound on 0.0.0.0 and [::] */
    int threads;                /* worker threads (one completion queue each), >= 1 */
    int max_recv_bytes;         /* largest request message accepted; larger -> RESOURCE_EXHAUSTED */
    int max_concurrent_streams; /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection */
    /* What bounds the transport (0 in any of these: gRPC core's default). */
    size_t memory_quota_bytes;  /* gRPC core's resource quota: connection and call buffers */
    int max_connection_idle_ms; /* GOAWAY to a connection with no call for this long; 0: never */
    int max_connection_age_ms;  /* GOAWAY to a connection this old (+-10%); 0: no limit */
    /* Largest request metadata of one call, in bytes (name + value + 32 per entry, as HTTP/2
     * counts a header list); a call with more is answered RESOURCE_EXHAUSTED
     * (METADATA_TOO_LARGE) by the server, alone. 0: SERVER_DEFAULT_METADATA_BYTES. gRPC core
     * itself is given server_transport_metadata_bytes() of this. */
    int max_metadata_bytes;
    /* What calls in flight may hold at once, in bytes (rpc.h: rpc_reply.budget): call objects,
     * decoded requests, encoded responses, what handlers charge. A call that does not fit is
     * answered UNAVAILABLE (reason OVERLOADED) at once. 0: no limit. */
    size_t inflight_bytes;
};

#define SERVER_ERR_BYTES 256

/* max_metadata_bytes when none is given. */
#define SERVER_DEFAULT_METADATA_BYTES 65536
/* The least header list gRPC core accepts (see server_transport_metadata_bytes()). */
#define SERVER_TRANSPORT_METADATA_MIN_BYTES 131072

/* The header list limit given to gRPC core (GRPC_ARG_MAX_METADATA_SIZE, advertised as
 * SETTINGS_MAX_HEADER_LIST_SIZE) for a server whose per-call limit is `max_metadata_bytes`:
 * twice it, and at least SERVER_TRANSPORT_METADATA_MIN_BYTES, at most INT32_MAX. Why two limits:
 * core 1.51's HPACK parser fails a header list over its limit as a connection error (every call
 * on the connection ends, RESOURCE_EXHAUSTED or UNAVAILABLE, no GOAWAY), and has no softer limit
 * of its own (grpc.absolute_max_metadata_size came in later releases). Behind a front that
 * multiplexes many clients on one connection (Cloud Run), one oversized call would fail other
 * clients' calls. So core's limit stays well above anything a call should send, and the server
 * refuses a call over max_metadata_bytes itself, with RESOURCE_EXHAUSTED for that call alone.
 * Pure; any thread. */
int server_transport_metadata_bytes(int max_metadata_bytes);
/* A new connection must finish the HTTP/2 preface and SETTINGS within this time (milliseconds). */
#define SERVER_HANDSHAKE_TIMEOUT_MS 10000
/* Calls in flight on a connection past its maximum age get this much longer (milliseconds). */
#define SERVER_CONNECTION_AGE_GRACE_MS 60000

struct server;

/* Creates the server, registers every method of `services` (n of them, borrowed: they must outlive
 * the server), binds the port and starts the worker threads. On failure writes a message naming
 * the port or the cause to err and returns BOOKS_EUNAVAIL (port in use or not permitted),
 * BOOKS_EINVAL (bad options, duplicate method), BOOKS_ENOMEM. Calls grpc_init(). Called by the
 * thread that will own the server; the workers it starts may run handlers before it returns. */
int server_start(const struct server_options *opts, const struct rpc_service *services, size_t n,
                 struct server **out, char *err, size_t errlen);

/* The port actually bound (useful when opts->port was taken from the environment). Any thread,
 * from server_start()'s return until server_free() (the value never changes). */
int server_port(const struct server *s);

/* How long server_shutdown() waits, after the grace period and the cancel, while no call in flight
 * finishes (a store that does not answer the creates it holds), in milliseconds. With Cloud Run's
 * default 8 s grace this ends before its SIGKILL at 10 s when the store is stuck; calls that keep
 * finishing (workers draining a flood of reset streams) are waited for. */
#define SERVER_STORE_WAIT_MS 2000

/* Registers fn(arg), called by server_shutdown() right after it cancels the calls still in flight
 * at the end of the grace period: the moment for whoever answers calls later (a store waiting on
 * a database: store_drain()) to stop waiting and answer them now. The owning thread, before
 * server_shutdown(). */
void server_on_cancel(struct server *s, void (*fn)(void *arg), void *arg);

/* Graceful shutdown (gRPC core's order): stop accepting calls, let calls in flight finish for up to
 * `grace_ms` milliseconds, cancel whatever is left, wait for the calls still in flight to finish
 * (giving up after SERVER_STORE_WAIT_MS in which none did), stop the worker threads and destroy
 * the server. Blocks until all of
 * that is done. Call once, from the owning thread: not a worker (it joins them) and not a thread
 * that answers calls (a store's commit thread: it would wait for itself, then give up). Handlers
 * and hooks keep running on the workers and other threads while it waits; once it has returned 0,
 * every call has been answered and the workers are joined: no server thread calls a handler or
 * hook again. Returns 0, or the number of calls the store never answered: then an error line names
 * their methods, the server is left running for them (server_free() keeps it) and the caller
 * should exit without closing the store, since the store is stuck; none of those calls was
 * acknowledged to its client. */
long server_shutdown(struct server *s, int grace_ms);

/* Frees a server after server_shutdown() and calls grpc_shutdown(). NULL is a no-op, and so is a
 * server whose shutdown returned a non-zero count (it is deliberately leaked). The owning thread,
 * after server_shutdown() has returned. */
void server_free(struct server *s);

/* The budget of calls in flight (for logs and tests: used, peak, refused). Any thread, from
 * server_start()'s return until server_free(). */
const struct budget *server_budget(const struct server *s);

/* Worker threads when none are configured: the CPUs in this process's affinity mask (so a server
 * pinned with taskset runs as many threads as it has CPUs), at least 1. Any thread. */
int server_default_threads(void);

#endif
