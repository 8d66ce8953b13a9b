/* reflection.h: gRPC server reflection (grpc.reflection.v1 and v1alpha ServerReflection, gRPC
 * doc/server-reflection.md), answered from a FileDescriptorSet (protoc --include_imports) that is
 * generated at build time and embedded in the binary. Lets clients such as grpcurl or buf curl call
 * the server without the .proto files. Read-only after creation: any thread may use it. */
#ifndef BOOKS_REFLECTION_H
#define BOOKS_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "books/codec.h" /* books_descriptor_set, books_descriptor_set_len: the embedded set */
#include "books/rpc.h"
#include "books/rpc_paths.h"

/* "grpc.reflection.v1.ServerReflection" and "grpc.reflection.v1alpha.ServerReflection" */
#define REFLECTION_V1_SERVICE_NAME RPC_REFLECTION_V1_SERVICE
#define REFLECTION_V1ALPHA_SERVICE_NAME RPC_REFLECTION_V1ALPHA_SERVICE

struct reflection;

/* Indexes the serialized FileDescriptorSet `set` (len bytes, borrowed: must outlive the object) and
 * remembers `services` (NULL-terminated names, borrowed) for list_services. Returns 0, or
 * BOOKS_EINVAL when the set does not parse (message in err), BOOKS_ENOMEM. */
int reflection_new(const uint8_t *set, size_t len, const char *const *services,
                   struct reflection **out, char *err, size_t errlen);

/* Frees r. NULL is a no-op. */
void reflection_free(struct reflection *r);

/* Method tables for grpc.reflection.v1.ServerReflection and its v1alpha twin (the two protocols
 * are the same messages on the wire, so one handler serves both). */
void reflection_describe_v1(struct reflection *r, struct rpc_service *out);
void reflection_describe_v1alpha(struct reflection *r, struct rpc_service *out);

/* The ServerReflectionInfo handler for each request of the bidirectional stream (rpc_unary_fn,
 * RPC_BIDI_STREAM): answers file_by_filename and file_containing_symbol with the file and all it
 * imports, file_containing_extension, all_extension_numbers_of_type, list_services, and an
 * ErrorResponse (NOT_FOUND or INVALID_ARGUMENT) for unknown names or an empty request. */
void reflection_handle(void *r, const ProtobufCMessage *request, struct rpc_reply *reply);

#endif
