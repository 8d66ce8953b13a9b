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
/* Field limits (bytes of UTF-8), enforced on CreateBook: the AIP rules this API gives its fields. */
#define SVC_MAX_DISPLAY_NAME_BYTES 1024
#define SVC_MAX_PUBLISHER_BYTES 512
#define SVC_MAX_AUTHOR_BYTES 512
#define SVC_MAX_AUTHORS 100
/* The bound on every field at once, known now or added to books.proto later: a Book's fields
 * other than its name take at most this many bytes encoded (CreateBook: INVALID_ARGUMENT beyond
 * it). The fields above take at most about 53 KiB; a Firestore document holds at most 1 MiB. */
#define SVC_MAX_BOOK_BYTES (128u * 1024u)

/* A {book} id is at most 63 characters (AIP-122), a UUID4 36; "books/" + id + NUL fits here. */
#define SVC_NAME_BYTES 72
/* The largest encoded Book with its name: what a GetBook reserves of the budget of calls in
 * flight at admission (rpc.h), before the store answers. */
#define SVC_MAX_RECORD_BYTES (SVC_MAX_BOOK_BYTES + SVC_NAME_BYTES + 8u)

/* A page is also held to what the memory budget of calls in flight has room for (rpc.h): it gets
 * at most 1/SVC_PAGE_MEMORY_FACTOR of the room left, and admission reserves SVC_PAGE_RESERVE times
 * its bytes (its records, then its encoded response) before the store is asked, so concurrent
 * lists size their pages from what the others left. Below SVC_MIN_PAGE_BYTES of room (a page that
 * could not hold one book of the largest size) the call is refused: UNAVAILABLE, reason
 * OVERLOADED. */
#define SVC_PAGE_MEMORY_FACTOR 3u
#define SVC_PAGE_RESERVE 2u
#define SVC_MIN_PAGE_BYTES SVC_MAX_RECORD_BYTES

struct svc;

/* Writes a new book id (NUL-terminated, at most 63 characters) to out. Used when CreateBook has no
 * book_id. The default draws a random UUID4 from libuuid in canonical lowercase form. */
typedef void (*svc_id_fn)(void *arg, char out[SVC_NAME_BYTES]);

/* Creates the service over `store` (borrowed: must outlive the service). Returns 0 or
 * BOOKS_ENOMEM. Start-up thread. */
int svc_new(struct store *store, struct svc **out);

/* Replaces the id generator (tests use a deterministic one). Not thread-safe: call before serving. */
void svc_set_id_generator(struct svc *svc, svc_id_fn fn, void *arg);

/* Frees the service (not the store). NULL is a no-op. */
void svc_free(struct svc *svc);

/* Fills `out` with the service's method table (self = svc). */
void svc_describe(struct svc *svc, struct rpc_service *out);

/* Handlers (rpc_unary_fn). Each calls rpc_reply_done() exactly once, when the store has answered:
 * before returning for a store that answers inline (memory:, sqlite:, a cached book), later on a
 * store thread for one whose reads or writes wait on a network or a disk (postgresql:,
 * firestore:, and every durable create). Replies send the stored encodings (rpc.h: embedded).
 *   GetBook   (AIP-131): INVALID_ARGUMENT for an empty or malformed name, NOT_FOUND, or the Book.
 *   ListBooks (AIP-132, AIP-158): INVALID_ARGUMENT for page_size < 0 or a bad page_token.
 *   CreateBook(AIP-133): INVALID_ARGUMENT listing every missing or bad field, ALREADY_EXISTS,
 *                        FAILED_PRECONDITION for a reused request_id (AIP-155), or the created
 *                        Book with its name.
 * Every read and list is refused UNAVAILABLE (OVERLOADED) when the memory it may hold does not fit
 * the budget of calls in flight (rpc.h). */
void svc_get_book(void *svc, const ProtobufCMessage *request, struct rpc_reply *reply);
void svc_list_books(void *svc, const ProtobufCMessage *request, struct rpc_reply *reply);
void svc_create_book(void *svc, const ProtobufCMessage *request, struct rpc_reply *reply);

/* AIP-122 id check: true when `id` (len bytes) matches ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ or is a
 * UUID4 in canonical lowercase form (8-4-4-4-12 hex, version 4, variant 10xx). */
bool svc_valid_book_id(const char *id, size_t len);

#endif
