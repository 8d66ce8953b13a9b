/* health.c: grpc.health.v1.Health (gRPC doc/health-checking.md): Check, and Watch as a server
 * stream. The serving state is one flag shared by every service this server hosts: they start and
 * stop together. Watchers sit in a list under a mutex; every change is sent to each of them while
 * that mutex is held, and a watcher leaves the list (in the server's close hook) under the same
 * mutex, so a stream is never used after the server has let it go. At shutdown every watcher is
 * told NOT_SERVING and its stream is ended with status OK, so Watch calls do not hold the server's
 * graceful shutdown open. */
#include "books/health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#define STATUS_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define STATUS_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define STATUS_SERVICE_UNKNOWN                                                                     \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

struct watcher {
    struct rpc_stream *stream;
    bool known; /* a hosted service (or ""): it follows the serving state */
    struct watcher *next;
};

struct health {
    const char *const *services;
    atomic_bool serving;
    pthread_mutex_t mu;
    bool shut_down;           /* under mu */
    struct watcher *watchers; /* under mu */
};

int health_new(const char *const *services, struct health **out)
{
    struct health *h = calloc(1, sizeof *h);
    if (!h)
        return BOOKS_ENOMEM;
    h->services = services;
    atomic_init(&h->serving, false);
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    return 0;
}

void health_free(struct health *h)
{
    if (!h)
        return;
    /* The server has closed every stream by now, so the list is empty; free defensively. */
    while (h->watchers) {
        struct watcher *w = h->watchers;
        h->watchers = w->next;
        free(w);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus current(struct health *h)
{
    return atomic_load(&h->serving) ? STATUS_SERVING : STATUS_NOT_SERVING;
}

static void send_status(struct rpc_stream *stream,
                        Grpc__Health__V1__HealthCheckResponse__ServingStatus status)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = status;
    /* A stream that is already finishing or closed just refuses; nothing to do about it. */
    (void)rpc_stream_send(stream, &resp.base);
}

void health_set_serving(struct health *h, bool serving)
{
    pthread_mutex_lock(&h->mu);
    if (atomic_exchange(&h->serving, serving) != serving)
        for (struct watcher *w = h->watchers; w; w = w->next)
            if (w->known)
                send_status(w->stream, current(h));
    pthread_mutex_unlock(&h->mu);
}

void health_shutdown(struct health *h)
{
    pthread_mutex_lock(&h->mu);
    h->shut_down = true;
    atomic_store(&h->serving, false);
    /* Every watcher hears NOT_SERVING, also one watching a name this server never hosted (as gRPC
     * C++'s health service does): whatever it watched is going away. Then its stream ends. */
    for (struct watcher *w = h->watchers; w; w = w->next) {
        send_status(w->stream, STATUS_NOT_SERVING);
        rpc_stream_finish(w->stream, NULL);
    }
    pthread_mutex_unlock(&h->mu);
}

static const struct rpc_method health_methods[] = {
    {.path = "/grpc.health.v1.Health/Check",
     .request = &grpc__health__v1__health_check_request__descriptor,
     .handle = health_check},
    {.path = "/grpc.health.v1.Health/Watch",
     .request = &grpc__health__v1__health_check_request__descriptor,
     .kind = RPC_SERVER_STREAM,
     .start = health_watch_start,
     .close = health_watch_close},
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
        resp->status = current(h);
        reply->response = &resp->base;
    }
    rpc_reply_done(reply);
}

void health_watch_start(void *self, const ProtobufCMessage *request, struct rpc_stream *stream)
{
    struct health *h = self;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)request;
    struct watcher *w = calloc(1, sizeof *w);
    struct books_error oom;

    if (!w) {
        books_error_init(&oom, NULL);
        books_error_set(&oom, BOOKS_ENOMEM, "OUT_OF_MEMORY", "the server is out of memory");
        rpc_stream_finish(stream, &oom);
        return;
    }
    w->stream = stream;
    /* The protocol: an unknown service is reported as SERVICE_UNKNOWN and the call stays open
     * (the service could appear later). */
    w->known = hosts(h, req->service);
    pthread_mutex_lock(&h->mu);
    w->next = h->watchers;
    h->watchers = w;
    if (h->shut_down) {
        send_status(stream, STATUS_NOT_SERVING);
        rpc_stream_finish(stream, NULL);
    } else {
        send_status(stream, w->known ? current(h) : STATUS_SERVICE_UNKNOWN);
    }
    pthread_mutex_unlock(&h->mu);
}

void health_watch_close(void *self, struct rpc_stream *stream)
{
    struct health *h = self;
    pthread_mutex_lock(&h->mu);
    for (struct watcher **p = &h->watchers; *p; p = &(*p)->next)
        if ((*p)->stream == stream) {
            struct watcher *w = *p;
            *p = w->next;
            free(w);
            break;
        }
    pthread_mutex_unlock(&h->mu);
}
