/* server.h: the gRPC server (gRPC core C API, grpc/grpc.h). Owns the grpc_server, one completion
 * queue and one worker thread per configured thread, the registered-method table built from the
 * services it is given, the per-call state objects (every completion-queue tag is one), the channel
 * arguments (limits, keepalive) and the shutdown order. Calls to methods no service declares are
 * answered UNIMPLEMENTED. Never decides API semantics: that is the services' job. */
#ifndef BOOKS_SERVER_H
#define BOOKS_SERVER_H

#include <stddef.h>

#include "books/rpc.h"

struct server_options {
    int port;                   /* TCP port, 0..65535 (0: kernel picks one); bound on 0.0.0.0 and [::] */
    int threads;                /* worker threads (one completion queue each), >= 1 */
    int max_recv_bytes;         /* largest request message accepted; larger -> RESOURCE_EXHAUSTED */
    int max_concurrent_streams; /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection */
};

#define SERVER_ERR_BYTES 256

struct server;

/* Creates the server, registers every method of `services` (n of them, borrowed: they must outlive
 * the server), binds the port and starts the worker threads. On failure writes a message naming
 * the port or the cause to err and returns BOOKS_EUNAVAIL (port in use or not permitted),
 * BOOKS_EINVAL (bad options, duplicate method), BOOKS_ENOMEM. Calls grpc_init(). */
int server_start(const struct server_options *opts, const struct rpc_service *services, size_t n,
                 struct server **out, char *err, size_t errlen);

/* The port actually bound (useful when opts->port was taken from the environment). */
int server_port(const struct server *s);

/* Graceful shutdown (gRPC core's order): stop accepting calls, let calls in flight finish for up to
 * `grace_ms` milliseconds, cancel whatever is left, wait for every call to be released, stop the
 * worker threads and destroy the server. Blocks until all of that is done. Call once. */
void server_shutdown(struct server *s, int grace_ms);

/* Frees a server after server_shutdown() and calls grpc_shutdown(). NULL is a no-op. */
void server_free(struct server *s);

/* Worker threads when none are configured: the CPUs in this process's affinity mask (so a server
 * pinned with taskset runs as many threads as it has CPUs), at least 1. */
int server_default_threads(void);

#endif
