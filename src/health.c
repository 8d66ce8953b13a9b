/* health.c: grpc.health.v1.Health/Check (gRPC doc/health-checking.md). The serving state is one
 * atomic flag shared by every service this server hosts: they start and stop together. A service
 * name the server does not host gets the NOT_FOUND status the protocol prescribes. */
#include "books/health.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

struct health {
    const char *const *services;
    atomic_bool serving;
};

int health_new(const char *const *services, struct health **out)
{
    struct health *h = calloc(1, sizeof *h);
    if (!h)
        return BOOKS_ENOMEM;
    h->services = services;
    atomic_init(&h->serving, false);
    *out = h;
    return 0;
}

void health_free(struct health *h) { free(h); }

void health_set_serving(struct health *h, bool serving) { atomic_store(&h->serving, serving); }

static const struct rpc_method health_methods[] = {
    {"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor,
     health_check},
};

void health_describe(struct health *h, struct rpc_service *out)
{
    out->name = HEALTH_SERVICE_NAME;
    out->methods = health_methods;
    out->n_methods = sizeof health_methods / sizeof health_methods[0];
    out->self = h;
}

static bool hosts(const struct health *h, const char *name)
{
    if (name[0] == '\0') /* "" is the server as a whole */
        return true;
    for (const char *const *s = h->services; *s; s++)
        if (strcmp(*s, name) == 0)
            return true;
    return false;
}

void health_check(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    struct health *h = self;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)request;
    Grpc__Health__V1__HealthCheckResponse *resp;
    char q[64];

    if (!hosts(h, req->service)) {
        books_error_set(&reply->error, BOOKS_ENOTFOUND, "SERVICE_NOT_FOUND",
                        "this server does not host a service named \"%s\"; ask for \"\" (the "
                        "whole server) or a hosted service",
                        books_error_quote(q, sizeof q, req->service));
        books_error_set_meta(&reply->error, "service", q);
    } else if (!(resp = arena_alloc(reply->arena, sizeof *resp))) {
        books_error_set(&reply->error, BOOKS_ENOMEM, "OUT_OF_MEMORY", "the server is out of memory");
    } else {
        grpc__health__v1__health_check_response__init(resp);
        resp->status = atomic_load(&h->serving)
                           ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                           : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        reply->response = &resp->base;
    }
    rpc_reply_done(reply);
}
