/* service.h: books.v1.BooksService (GetBook, ListBooks, CreateBook) as pure handlers over a store.
 * All API rules live here: AIP-122 resource names, AIP-131 Get, AIP-132/158 List with keyset
 * pagination and signed page tokens, AIP-133 Create, AIP-193 errors, AIP-203 field behavior.
 * Never touches gRPC or the network; the server decodes, calls a handler, and encodes. */
#ifndef BOOKS_SERVICE_H
#define BOOKS_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "books/rpc.h"
#include "books/rpc_paths.h"
#include "books/store.h"

#define SVC_SERVICE_NAME RPC_BOOKS_SERVICE /* "books.v1.BooksService" */
#define SVC_RESOURCE_TYPE "books.example.com/Book"

/* AIP-158 page sizes. */
#define SVC_DEFAULT_PAGE_SIZE 50
#define SVC_MAX_PAGE_SIZE 1000
/* A ListBooks page stops early once its encoded size would pass this many bytes, so a page always
 * fits the 4 MiB default receive limit of gRPC clients; at least one book is always returned. */
#define SVC_MAX_PAGE_BYTES (4u * 1024u * 1024u - 64u * 1024u)
/* A page is also held to what the memory budget of calls in flight has room for (rpc.h): its
 * records (text and wire form) and its encoded response take about this many times its encoded
 * size, so a page gets at most 1/SVC_PAGE_MEMORY_FACTOR of the room left. Below
 * SVC_MIN_PAGE_BYTES of room (a page that could not hold one book of the largest size) the call is
 * refused: UNAVAILABLE, reason OVERLOADED. */
#define SVC_PAGE_MEMORY_FACTOR 3u
#define SVC_MIN_PAGE_BYTES (64u * 1024u)

/* Field limits (bytes of UTF-8), enforced on CreateBook. */
#define SVC_MAX_DISPLAY_NAME_BYTES 1024
#define SVC_MAX_PUBLISHER_BYTES 512
#define SVC_MAX_AUTHOR_BYTES 512
#define SVC_MAX_AUTHORS 100

/* A {book} id is at most 63 characters (AIP-122), a UUID4 36; "books/" + id + NUL fits here. */
#define SVC_NAME_BYTES 72

struct svc;

/* Writes a new book id (NUL-terminated, at most 63 characters) to out. Used when CreateBook has no
 * book_id. The default draws a random UUID4 from libuuid in canonical lowercase form. */
typedef void (*svc_id_fn)(void *arg, char out[SVC_NAME_BYTES]);

/* Creates the service over `store` (borrowed: must outlive the service), and registers its
 * books.v1.Book packer with store_book_set_encoder() (store.h), so that every record built from
 * then on carries its wire form and responses send it without packing it again. Returns 0 or
 * BOOKS_ENOMEM. Start-up thread. */
int svc_new(struct store *store, struct svc **out);

/* Replaces the id generator (tests use a deterministic one). Not thread-safe: call before serving. */
void svc_set_id_generator(struct svc *svc, svc_id_fn fn, void *arg);

/* Frees the service (not the store). NULL is a no-op. */
void svc_free(struct svc *svc);

/* Fills `out` with the service's method table (self = svc). */
void svc_describe(struct svc *svc, struct rpc_service *out);

/* Handlers (rpc_unary_fn). Each calls rpc_reply_done() exactly once; GetBook and ListBooks do so
 * before returning, CreateBook when the store has finished (maybe later, on another thread).
 *   GetBook   (AIP-131): INVALID_ARGUMENT for an empty or malformed name, NOT_FOUND, or the Book.
 *   ListBooks (AIP-132, AIP-158): INVALID_ARGUMENT for page_size < 0 or a bad page_token.
 *   CreateBook(AIP-133): INVALID_ARGUMENT listing every missing or bad field, ALREADY_EXISTS, or
 *                        the created Book with its name. */
void svc_get_book(void *svc, const ProtobufCMessage *request, struct rpc_reply *reply);
void svc_list_books(void *svc, const ProtobufCMessage *request, struct rpc_reply *reply);
void svc_create_book(void *svc, const ProtobufCMessage *request, struct rpc_reply *reply);

/* AIP-122 id check: true when `id` (len bytes) matches ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ or is a
 * UUID4 in canonical lowercase form (8-4-4-4-12 hex, version 4, variant 10xx). */
bool svc_valid_book_id(const char *id, size_t len);

#endif
