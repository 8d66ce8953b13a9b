/* health.c: grpc.health.v1.Health (gRPC doc/health-checking.md): Check, and Watch as a server
 * stream. The status of "" is the process's: SERVING from start-up to shutdown. Each hosted service
 * follows it and can also be marked unavailable on its own (BooksService while its database is
 * unreachable), so a liveness probe that asks for "" never restarts a healthy process for an
 * outage it cannot fix, while a client or load balancer asking for the service sees it. Watchers sit in a list under a mutex; every change is sent to each of them while
 * that mutex is held, and a watcher leaves the list (in the server's close hook) under the same
 * mutex, so a stream is never used after the server has let it go. At shutdown every watcher is
 * told NOT_SERVING and its stream is ended with status OK, so Watch calls do not hold the server's
 * graceful shutdown open. */
#include "books/health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#define STATUS_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define STATUS_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define STATUS_SERVICE_UNKNOWN                                                                     \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

/* Which name a watcher watches: the process (""), a hosted service (its index), or neither. */
#define WATCH_PROCESS (-1)
#define WATCH_UNKNOWN (-2)

struct watcher {
    struct rpc_stream *stream;
    int service; /* WATCH_PROCESS, WATCH_UNKNOWN, or an index into services */
    Grpc__Health__V1__HealthCheckResponse__ServingStatus sent; /* the last status sent */
    struct watcher *next;
};

struct health {
    const char *const *services;
    size_t n_services;
    pthread_mutex_t mu;
    bool serving;             /* under mu: the process, between start-up and shutdown */
    bool *unavailable;        /* under mu: per hosted service, set by health_set_available() */
    bool shut_down;           /* under mu */
    struct watcher *watchers; /* under mu */
};

int health_new(const char *const *services, struct health **out)
{
    struct health *h = calloc(1, sizeof *h);
    if (!h)
        return BOOKS_ENOMEM;
    h->services = services;
    while (services[h->n_services])
        h->n_services++;
    h->unavailable = calloc(h->n_services ? h->n_services : 1, sizeof *h->unavailable);
    if (!h->unavailable) {
        free(h);
        return BOOKS_ENOMEM;
    }
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
    free(h->unavailable);
    free(h);
}

/* WATCH_PROCESS for "", a service's index, or WATCH_UNKNOWN. */
static int service_index(const struct health *h, const char *name)
{
    if (name[0] == '\0') /* "" is the server as a whole */
        return WATCH_PROCESS;
    for (size_t i = 0; i < h->n_services; i++)
        if (strcmp(h->services[i], name) == 0)
            return (int)i;
    return WATCH_UNKNOWN;
}

/* The status of `service` (WATCH_PROCESS or an index). mu held. */
static Grpc__Health__V1__HealthCheckResponse__ServingStatus status_of(const struct health *h,
                                                                      int service)
{
    if (service == WATCH_UNKNOWN)
        return STATUS_SERVICE_UNKNOWN;
    if (!h->serving || (service >= 0 && h->unavailable[service]))
        return STATUS_NOT_SERVING;
    return STATUS_SERVING;
}

static void send_status(struct rpc_stream *stream,
                        Grpc__Health__V1__HealthCheckResponse__ServingStatus status)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = status;
    /* A stream that is already finishing or closed just refuses; nothing to do about it. */
    (void)rpc_stream_send(stream, &resp.base);
}

/* Sends each known watcher its status if it changed. mu held. */
static void notify(struct health *h)
{
    for (struct watcher *w = h->watchers; w; w = w->next) {
        Grpc__Health__V1__HealthCheckResponse__ServingStatus now = status_of(h, w->service);
        if (w->service != WATCH_UNKNOWN && now != w->sent) {
            send_status(w->stream, now);
            w->sent = now;
        }
    }
}

void health_set_serving(struct health *h, bool serving)
{
    pthread_mutex_lock(&h->mu);
    /* Shutdown is final: nothing serves again after it. */
    if (!h->shut_down) {
        h->serving = serving;
        notify(h);
    }
    pthread_mutex_unlock(&h->mu);
}

int health_set_available(struct health *h, const char *service, bool available)
{
    int i = service_index(h, service);
    if (i < 0)
        return BOOKS_ENOTFOUND;
    pthread_mutex_lock(&h->mu);
    h->unavailable[i] = !available;
    notify(h);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

void health_shutdown(struct health *h)
{
    pthread_mutex_lock(&h->mu);
    h->shut_down = true;
    h->serving = false;
    /* Every watcher hears NOT_SERVING, also one watching a name this server never hosted (as gRPC
     * C++'s health service does): whatever it watched is going away. Then its stream ends. */
    for (struct watcher *w = h->watchers; w; w = w->next) {
        send_status(w->stream, STATUS_NOT_SERVING);
        rpc_stream_finish(w->stream, NULL);
    }
    pthread_mutex_unlock(&h->mu);
}

static const struct rpc_method health_methods[] = {
    {.path = RPC_PATH_HEALTH_CHECK,
     .request = &grpc__health__v1__health_check_request__descriptor,
     .handle = health_check},
    {.path = RPC_PATH_HEALTH_WATCH,
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

void health_check(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    struct health *h = self;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)request;
    Grpc__Health__V1__HealthCheckResponse *resp;
    char q[64];

    int service = service_index(h, req->service);

    if (service == WATCH_UNKNOWN) {
        books_error_set(&reply->error, BOOKS_ENOTFOUND, "SERVICE_NOT_FOUND",
                        "this server does not host a service named \"%s\"; ask for \"\" (the "
                        "whole server) or a hosted service",
                        books_error_quote(q, sizeof q, req->service));
        books_error_set_meta(&reply->error, "service", q);
    } else if (!(resp = arena_alloc(reply->arena, sizeof *resp))) {
        books_error_set(&reply->error, BOOKS_ENOMEM, "OUT_OF_MEMORY", "the server is out of memory");
    } else {
        grpc__health__v1__health_check_response__init(resp);
        pthread_mutex_lock(&h->mu);
        resp->status = status_of(h, service);
        pthread_mutex_unlock(&h->mu);
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
    w->service = service_index(h, req->service);
    pthread_mutex_lock(&h->mu);
    w->next = h->watchers;
    h->watchers = w;
    if (h->shut_down) {
        send_status(stream, STATUS_NOT_SERVING);
        rpc_stream_finish(stream, NULL);
    } else {
        w->sent = status_of(h, w->service);
        send_status(stream, w->sent);
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
