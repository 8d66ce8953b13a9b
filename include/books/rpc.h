/* rpc.h: the contract between the server loop and the services it serves (books, health). A
 * service is a table of methods; a unary handler is a function of (service, request) that fills an
 * rpc_reply and calls rpc_reply_done() exactly once, inline or later from any thread. Handlers
 * never touch gRPC calls, byte buffers or the network, so cmocka tests call them directly. */
#ifndef BOOKS_RPC_H
#define BOOKS_RPC_H

#include <protobuf-c/protobuf-c.h>

#include "books/arena.h"
#include "books/error.h"

struct rpc_reply;

/* Completion callback supplied by whoever runs the handler (the server, or a test). */
typedef void (*rpc_done_fn)(struct rpc_reply *reply);

/* What a handler produces. The server owns it (inside its per-call object) and prepares it before
 * calling the handler: arena set, error cleared, response NULL, done set. */
struct rpc_reply {
    struct arena *arena;            /* per-call memory for building the response */
    const ProtobufCMessage *response; /* on success: the response message (in the arena or the handler's) */
    struct books_error error;       /* on failure: error.code != 0, response ignored */
    /* Optional: called by the server after the response was encoded (or the call failed) to
     * release what the response pointed into (e.g. store_book references). */
    void (*release)(struct rpc_reply *reply);
    void *release_arg;
    rpc_done_fn done;               /* set by the caller of the handler; see rpc_reply_done() */
};

/* Signals that `reply` is complete (response set, or error.code != 0). Exactly once per call.
 * After it returns, the handler must not touch the reply or the request. */
static inline void rpc_reply_done(struct rpc_reply *reply) { reply->done(reply); }

/* A unary handler. `self` is the service object from rpc_service.self; `request` is an unpacked
 * message of the method's request descriptor, valid until the handler calls rpc_reply_done(). */
typedef void (*rpc_unary_fn)(void *self, const ProtobufCMessage *request, struct rpc_reply *reply);

/* One method. `path` is the HTTP/2 :path, "/{package}.{Service}/{Method}" (gRPC PROTOCOL-HTTP2). */
struct rpc_method {
    const char *path;
    const ProtobufCMessageDescriptor *request;
    rpc_unary_fn handle;
};

/* A service: its fully-qualified name (for health) and its method table. */
struct rpc_service {
    const char *name;
    const struct rpc_method *methods;
    size_t n_methods;
    void *self;
};

#endif
