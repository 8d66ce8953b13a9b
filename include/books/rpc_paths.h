/* rpc_paths.h: the one place the names of the hosted gRPC services and the HTTP/2 :path of each of
 * their methods ("/{package}.{Service}/{Method}", gRPC PROTOCOL-HTTP2) are written. The server's
 * method tables (service.c, health.c, reflection.c) and the client (client.c) use these; nothing
 * else spells a path. Constants only: no code, no threads.
 *
 * Why constants rather than paths built from protoc-c's service descriptors at start-up: a path is
 * read at registration (server and client), but also on every call (the server's log line names the
 * method), so a string literal costs nothing anywhere, and the method tables stay static const, as
 * struct rpc_method has them. And grpc.reflection.v1alpha has no protoc-c descriptor in this build
 * (its messages are v1's), so it could not be derived the same way. What keeps them honest is
 * tests/test_rpc_paths.c: every constant here equals "/" + service full name + "/" + method name
 * of the protoc-c service descriptors (books__v1__books_service__descriptor and the health and
 * reflection v1 ones) and of the descriptor set reflection serves (which has v1alpha); every method
 * that set declares has a constant; and every method table the api layer serves uses them, with
 * the request type the descriptor names. */
#ifndef BOOKS_RPC_PATHS_H
#define BOOKS_RPC_PATHS_H

/* Fully-qualified service names (package + service), as health and reflection report them. */
#define RPC_BOOKS_SERVICE "books.v1.BooksService"
#define RPC_HEALTH_SERVICE "grpc.health.v1.Health"
#define RPC_REFLECTION_V1_SERVICE "grpc.reflection.v1.ServerReflection"
#define RPC_REFLECTION_V1ALPHA_SERVICE "grpc.reflection.v1alpha.ServerReflection"

/* books.v1.BooksService (proto/books/v1/books.proto) */
#define RPC_PATH_GET_BOOK "/" RPC_BOOKS_SERVICE "/GetBook"
#define RPC_PATH_LIST_BOOKS "/" RPC_BOOKS_SERVICE "/ListBooks"
#define RPC_PATH_CREATE_BOOK "/" RPC_BOOKS_SERVICE "/CreateBook"

/* grpc.health.v1.Health (grpc/health/v1/health.proto) */
#define RPC_PATH_HEALTH_CHECK "/" RPC_HEALTH_SERVICE "/Check"
#define RPC_PATH_HEALTH_WATCH "/" RPC_HEALTH_SERVICE "/Watch"

/* grpc.reflection.v1 and v1alpha ServerReflection (grpc/reflection/v1{,alpha}/reflection.proto) */
#define RPC_PATH_REFLECTION_V1_INFO "/" RPC_REFLECTION_V1_SERVICE "/ServerReflectionInfo"
#define RPC_PATH_REFLECTION_V1ALPHA_INFO "/" RPC_REFLECTION_V1ALPHA_SERVICE "/ServerReflectionInfo"

#endif
