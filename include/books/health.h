/* health.h: grpc.health.v1.Health/Check (gRPC doc/health-checking.md). Knows the services this
 * server hosts and whether it is serving; answers SERVING or NOT_SERVING for "" and each hosted
 * service, and NOT_FOUND for any other name. The status is one atomic word: any thread may read or
 * change it at any time. */
#ifndef BOOKS_HEALTH_H
#define BOOKS_HEALTH_H

#include <stdbool.h>

#include "books/rpc.h"

#define HEALTH_SERVICE_NAME "grpc.health.v1.Health"

struct health;

/* Creates the health service, NOT_SERVING until health_set_serving(h, true). `services` is a
 * NULL-terminated list of service names (borrowed; must outlive h). Returns 0 or BOOKS_ENOMEM. */
int health_new(const char *const *services, struct health **out);

/* Frees h. NULL is a no-op. */
void health_free(struct health *h);

/* Sets the status of every service ("" included): true SERVING, false NOT_SERVING. */
void health_set_serving(struct health *h, bool serving);

/* Fills `out` with the health service's method table (self = h). */
void health_describe(struct health *h, struct rpc_service *out);

/* The Check handler (rpc_unary_fn); answers before returning. */
void health_check(void *h, const ProtobufCMessage *request, struct rpc_reply *reply);

#endif
