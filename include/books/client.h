/* client.h: a small blocking client for books.v1.BooksService over gRPC core, for the `books`
 * command line and its tests. It owns one channel and one pluck completion queue; each call is one
 * batch holding every op of a unary call, waited for with grpc_completion_queue_pluck. It never
 * prints, never exits and never retries: a failed call comes back as its status and AIP-193
 * details. Not thread-safe: one call at a time per client. */
#ifndef BOOKS_CLIENT_H
#define BOOKS_CLIENT_H

#include <grpc/status.h>
#include <stdbool.h>
#include <stdint.h>

#include "books/arena.h"
#include "books/error.h"
#include "books/v1/books.pb-c.h"

struct client;

/* Largest response message the client accepts, in bytes, after inflating a compressed one (gRPC
 * core's default receive limit, which it applies to the compressed size). */
#define CLIENT_MAX_RESPONSE_BYTES (4 * 1024 * 1024)

/* Plain data; the client copies what it keeps, so the strings need only outlive client_new(). */
struct client_options {
    const char *target;     /* gRPC target: "host:port" (DNS), "ipv4:1.2.3.4:80", "unix:/path" */
    bool tls;               /* TLS, verified against the system's roots (gRPC core's default
                             * roots: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH if set, else the system
                             * store); false: plaintext HTTP/2 (h2c) */
    const char *token;      /* NULL, or sent as "authorization: Bearer TOKEN" on every call (a
                             * Cloud Run identity token); printable ASCII only */
    int timeout_ms;         /* the deadline of each call, in milliseconds from its start; > 0 */
    const char *user_agent; /* NULL, or put before gRPC's own user-agent, e.g. "books-cli/0.1.0" */
};

/* How a call failed: its gRPC status and what the server said about it (AIP-193). */
struct client_error {
    grpc_status_code status; /* the call's status code; GRPC_STATUS_OK when nothing failed */
    /* detail.message: the status message (grpc-message), or what failed locally;
     * detail.code: the enum books_err nearest to `status` (the value the call returned);
     * detail.reason, meta_*, resource_*, violations: from the grpc-status-details-bin trailer
     * (codec_decode_status_details); reason is NULL when the server sent no ErrorInfo of
     * BOOKS_ERROR_DOMAIN (e.g. UNAVAILABLE from the client's own transport, or a proxy's error). */
    struct books_error detail;
};

/* Creates a client: calls grpc_init() (client_free() calls grpc_shutdown()), creates the channel
 * (connecting lazily, on the first call) and registers the three methods. Returns 0 with *out set
 * (free with client_free()), BOOKS_EINVAL when target is NULL or empty, timeout_ms <= 0, or the
 * token or user agent holds characters an HTTP/2 header value cannot carry, or BOOKS_ENOMEM. */
int client_new(const struct client_options *opts, struct client **out);

/* Destroys the channel and the completion queue, then calls grpc_shutdown(). NULL is a no-op. */
void client_free(struct client *c);

/* The three unary calls. Each blocks until the call ends: response, error status or deadline.
 * `err` is (re)initialised at the start with `arena` (books_error_init), so decoded error details
 * live in the arena; the response message is decoded into the arena too. Both stay valid until
 * the arena is reset; release a response with codec_free_request(msg, arena) before that.
 *
 * Returns 0 with *out set, or a negative enum books_err with *out untouched and err filled:
 *   the call ended with a non-OK status: err->status is it, the return value is err->detail.code
 *     (BOOKS_ENOTFOUND for NOT_FOUND, BOOKS_EINVAL for INVALID_ARGUMENT, BOOKS_EUNAVAIL for
 *     UNAVAILABLE, BOOKS_EDEADLINE for DEADLINE_EXCEEDED, ...; BOOKS_EINTERNAL where no enum
 *     books_err matches, e.g. UNAUTHENTICATED or PERMISSION_DENIED);
 *   the response is missing or not a valid message: GRPC_STATUS_INTERNAL, BOOKS_EBADMSG;
 *   out of memory before the call: GRPC_STATUS_RESOURCE_EXHAUSTED, BOOKS_ENOMEM. */
int client_get_book(struct client *c, const char *name, struct arena *arena, Books__V1__Book **out,
                    struct client_error *err);

/* page_size and page_token as in ListBooksRequest (0 and "" for the defaults; NULL token = ""). */
int client_list_books(struct client *c, int32_t page_size, const char *page_token,
                      struct arena *arena, Books__V1__ListBooksResponse **out,
                      struct client_error *err);

/* `book` is sent as CreateBookRequest.book (its name is ignored by the server); book_id NULL or ""
 * lets the server assign a UUID4; request_id (AIP-155) NULL or "" sends none. *out is the created
 * book, with its name. */
int client_create_book(struct client *c, const Books__V1__Book *book, const char *book_id,
                       const char *request_id, struct arena *arena, Books__V1__Book **out,
                       struct client_error *err);

#endif
