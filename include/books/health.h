/* health.h: grpc.health.v1.Health, Check and Watch (gRPC doc/health-checking.md). Knows the
 * services this server hosts and whether it is serving. Check answers SERVING or NOT_SERVING for ""
 * (the process: serving from start-up to shutdown) and each hosted service (the process's status,
 * or NOT_SERVING while the service is marked unavailable, e.g. BooksService while its database
 * cannot be reached), and the NOT_FOUND status for any other name. Watch sends the current status
 * at once and then every change (SERVICE_UNKNOWN, once, for a name it does not host), and ends
 * with status OK at shutdown. Any thread may call any function at any time, except health_free
 * (last, once the server is gone); handlers run on the server's workers. */
#ifndef BOOKS_HEALTH_H
#define BOOKS_HEALTH_H

#include <stdbool.h>

#include "books/rpc.h"
#include "books/rpc_paths.h"

#define HEALTH_SERVICE_NAME RPC_HEALTH_SERVICE /* "grpc.health.v1.Health" */

struct health;

/* Creates the health service, NOT_SERVING until health_set_serving(h, true). `services` is a
 * NULL-terminated list of service names (borrowed; must outlive h). Returns 0 or BOOKS_ENOMEM. */
int health_new(const char *const *services, struct health **out);

/* Frees h. NULL is a no-op. */
void health_free(struct health *h);

/* Sets the process's status, which every service follows ("" included): true SERVING, false
 * NOT_SERVING. Watchers are sent their new status when it changes. After health_shutdown() this
 * does nothing: shutdown is final. */
void health_set_serving(struct health *h, bool serving);

/* Marks one hosted service available or not, without touching "" or the other services: while
 * unavailable, Check and Watch say NOT_SERVING for it. Returns 0, or BOOKS_ENOTFOUND when the
 * server does not host `service` ("" is not a service here). Any thread. */
int health_set_available(struct health *h, const char *service, bool available);

/* Shutdown has begun: NOT_SERVING from now on, every watcher (whatever name it watches) is sent
 * NOT_SERVING and its stream is ended with status OK, and Watch calls that arrive later get one
 * NOT_SERVING and end at once.
 * Call before the server's graceful shutdown so open Watch streams do not hold it up. */
void health_shutdown(struct health *h);

/* Fills `out` with the health service's method table (self = h). */
void health_describe(struct health *h, struct rpc_service *out);

/* The Check handler (rpc_unary_fn); answers before returning. */
void health_check(void *h, const ProtobufCMessage *request, struct rpc_reply *reply);

/* The Watch handlers (rpc_stream_start_fn, rpc_stream_close_fn). */
void health_watch_start(void *h, const ProtobufCMessage *request, struct rpc_stream *stream);
void health_watch_close(void *h, struct rpc_stream *stream);

#endif
