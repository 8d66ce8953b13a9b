/* fs.h: the firestore: store's private parts (src/firestore/ only). client.c drives calls to
 * Firestore on gRPC core's C client from one thread of its own; docs.c turns books into documents
 * and back; store.c is the store (store.h's operations); writes.c the commit pipeline's backend. */
#ifndef BOOKS_FS_H
#define BOOKS_FS_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "books/arena.h"
#include "books/commit_pipeline.h"
#include "books/store.h"
#include "google/firestore/v1/firestore.pb-c.h"

/* Largest response accepted from Firestore, in bytes (after inflating): a RunQuery message holds
 * one document (at most 1 MiB in Firestore), a BatchWrite response 500 statuses. */
#define FS_MAX_RESPONSE_BYTES (4u * 1024 * 1024)
/* Most writes the store puts in one BatchWrite or Commit: Google's BulkWriter's batch bound.
 * Firestore itself takes more in a Commit since March 2023; what binds is its 10 MiB request
 * limit, which max_request_bytes keeps under. */
#define FS_MAX_WRITES 500
/* max_request_bytes: its default (production refuses a request over 10 MiB, 10,485,760 bytes),
 * its default against the emulator (which refuses a gRPC message over 4 MiB), and its range. */
#define FS_MAX_REQUEST_BYTES_DEFAULT (9u * 1024 * 1024)
#define FS_MAX_REQUEST_BYTES_EMULATOR (4u * 1024 * 1024 - 64 * 1024)
#define FS_MAX_REQUEST_BYTES_MIN (64 * 1024)
#define FS_MAX_REQUEST_BYTES_MAX (10 * 1024 * 1024)
/* Longest document path we build: prefix, collection, "_requests", an id. */
#define FS_NAME_BYTES 1024

enum fs_method { FS_GET_DOCUMENT, FS_COMMIT, FS_BATCH_WRITE, FS_RUN_QUERY, FS_N_METHODS };

/* ---- client.c ----------------------------------------------------------------------------------- */

struct fs_client;

/* How a finished call ended: gRPC's status and message (a C string, truncated). */
struct fs_status {
    grpc_status_code code;
    char message[256];
};

/* A unary call's end, on the client's thread: `response` (NULL unless status OK) is the caller's
 * to keep or destroy (grpc_byte_buffer_destroy) — the client destroys it after this returns. */
typedef void (*fs_unary_done_fn)(void *arg, const struct fs_status *st, grpc_byte_buffer *response);
/* A streaming call's message, on the client's thread: return true for the next one, false to
 * stop (the call is cancelled; its end follows). `msg` is destroyed after this returns. */
typedef bool (*fs_stream_message_fn)(void *arg, grpc_byte_buffer *msg);
/* A streaming call's end (once, after its last message), on the client's thread. */
typedef void (*fs_stream_end_fn)(void *arg, const struct fs_status *st);
/* The channel's reachability changed (true: READY; false: TRANSIENT_FAILURE or SHUTDOWN). */
typedef void (*fs_reachable_fn)(void *arg, bool reachable);

/* Makes the channel and starts the thread. `target` host:port; `emulator`: insecure, with
 * "authorization: Bearer owner"; else TLS with Application Default Credentials. `database` is
 * projects/P/databases/D (routing headers). Returns 0, BOOKS_EINVAL (no credentials: message in
 * err), BOOKS_ENOMEM, BOOKS_EIO (no thread). */
int fs_client_new(const char *target, bool emulator, const char *project, const char *database_id,
                  fs_reachable_fn reachable, void *reachable_arg, struct fs_client **out,
                  char *err, size_t errlen);
/* Cancels every call in flight (each ends CANCELLED), and every later call ends CANCELLED at
 * once. Any thread. */
void fs_client_cancel_all(struct fs_client *c);
/* Cancels what is in flight, waits for every call to end, stops the thread, frees. */
void fs_client_free(struct fs_client *c);

/* Starts a unary call of `m` with `request` (packed here; the caller keeps it), ending at
 * deadline_ns (CLOCK_MONOTONIC ns; 0: default_timeout_ms from now). done() runs exactly once on
 * the client's thread (also for a call that cannot start: status INTERNAL or CANCELLED). */
void fs_unary(struct fs_client *c, enum fs_method m, const ProtobufCMessage *request,
              uint64_t deadline_ns, fs_unary_done_fn done, void *arg);
/* The same, waiting for it on the caller's thread (never the client's), and decoding the
 * response of type `desc` into `arena` (*out; NULL unless OK). Returns the status code. A
 * response that does not decode ends with status INTERNAL. */
grpc_status_code fs_unary_wait(struct fs_client *c, enum fs_method m,
                               const ProtobufCMessage *request, uint64_t deadline_ns,
                               const ProtobufCMessageDescriptor *desc, struct arena *arena,
                               ProtobufCMessage **out, struct fs_status *st);
/* Starts a server-streaming call (RunQuery); on_message for each message, on_end once. */
void fs_stream(struct fs_client *c, enum fs_method m, const ProtobufCMessage *request,
               uint64_t deadline_ns, fs_stream_message_fn on_message, fs_stream_end_fn on_end,
               void *arg);
/* Decodes a response (codec_decode with FS_MAX_RESPONSE_BYTES). 0 or a books_err. */
int fs_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc, struct arena *arena,
              ProtobufCMessage **out);

/* The default deadline of calls, in ms (set once at open, before any call). */
void fs_client_set_timeout(struct fs_client *c, int timeout_ms);

/* Runs fn(arg, false) at at_ns (CLOCK_MONOTONIC ns) on the client's timer thread, or
 * fn(arg, true) as soon as the client is cancelled (fs_client_cancel_all; also when it already
 * was): exactly once either way. fs_client_free() waits for every one. For waits between attempts
 * (retry.c) that must not block the client's thread. fn must not block. Any thread. */
void fs_client_later(struct fs_client *c, uint64_t at_ns, void (*fn)(void *arg, bool cancelled),
                     void *arg);

/* ---- retry.c: the one retry policy of the calls to Firestore ------------------------------------- */

/* Whether a call of method m that ended with `code` goes again (when its deadline leaves time):
 * UNAVAILABLE, RESOURCE_EXHAUSTED, INTERNAL and DEADLINE_EXCEEDED for every method; ABORTED and
 * UNKNOWN too for Commit and BatchWrite (retry.c says why). Pure; any thread. */
bool fs_retry_code(enum fs_method m, grpc_status_code code);

/* Jittered exponential backoff: 100 ms, x1.3 per attempt, at most 60 s; each delay uniform in the
 * upper half of its step. One per call being retried (not shared between threads). */
struct fs_backoff {
    uint32_t next_ms;
};
void fs_backoff_init(struct fs_backoff *b);
/* The wait before the next attempt, in ns, and steps the backoff. */
uint64_t fs_backoff_next_ns(struct fs_backoff *b);
/* True when an attempt started after waiting delay_ns from now_ns still ends before deadline_ns
 * with a little time to run. */
bool fs_retry_fits(uint64_t now_ns, uint64_t delay_ns, uint64_t deadline_ns);
/* The deadline of one attempt started at now_ns for a call due at deadline_ns (0: none): 50 ms
 * before it (so a failure still reaches the caller in time), and at most timeout_ms from now (so
 * an attempt that hangs is given up and tried again while the caller's time lasts). */
uint64_t fs_attempt_deadline(uint64_t now_ns, uint64_t deadline_ns, int timeout_ms);

/* ---- docs.c ------------------------------------------------------------------------------------ */

/* The store's naming: projects/P/databases/D, its documents, the three collections. */
struct fs_names {
    char database[256];            /* projects/P/databases/D */
    char documents[272];           /* projects/P/databases/D/documents */
    char collection[128];          /* the books' collection id */
    char requests[160];            /* collection + "_requests" */
    char meta[160];                /* collection + "_meta" */
};

/* Writes the document name of book `name` ("books/{id}") to out. False when it does not fit. */
bool fs_book_doc(const struct fs_names *n, const char *name, char *out, size_t len);
/* Writes the document name of request `request_id` to out. */
bool fs_request_doc(const struct fs_names *n, const char *request_id, char *out, size_t len);
/* Builds a record from a book document (docs.c: the Book's fields by the descriptor): 0;
 * BOOKS_ECORRUPT (not a document of this collection, a field of the wrong type, a REQUIRED field
 * missing), with `damage` (may be NULL) naming the document's path and the field; BOOKS_ENOMEM. */
int fs_book_from_doc(const struct fs_names *n, const Google__Firestore__V1__Document *d,
                     struct store_book **out, struct store_damage *damage);
/* A string / bytes field of `d` by key, or NULL when absent or of another type. */
const char *fs_doc_string(const Google__Firestore__V1__Document *d, const char *key);
const ProtobufCBinaryData *fs_doc_bytes(const Google__Firestore__V1__Document *d, const char *key);

/* The messages of one create's writes, built in `arena`. */
struct fs_create_writes {
    Google__Firestore__V1__Write *book;    /* C/{book}, exists: false */
    Google__Firestore__V1__Write *request; /* C_requests/{id}, exists: false; NULL without id */
};
/* Builds them for commit item `it` with write id `write_id` (32 hex digits): the book document
 * holds the Book's fields (docs.c) and write_id, the request document store.h's request id record
 * (book, request_hash: the legacy fingerprint, request_fingerprint, write_id, expire_at). 0 or
 * BOOKS_ENOMEM (or BOOKS_EINVAL for a name too long). The strings point into `it` and `arena`. */
int fs_build_create(const struct fs_names *n, const struct commit_item *it, const char *write_id,
                    uint32_t request_ttl_s, struct arena *arena, struct fs_create_writes *out);

/* ---- errors ------------------------------------------------------------------------------------ */

/* The store's reading of a Firestore status (see README, "Firestore"): a books_err. */
int fs_status_error(grpc_status_code code);

/* CLOCK_MONOTONIC now, in ns. */
uint64_t fs_now_ns(void);

/* ---- store.c: the URI ---------------------------------------------------------------------------- */

#define FS_PROJECT_BYTES 128
#define FS_DATABASE_BYTES 64

/* The store's own parameters after '?' (store_firestore.h). */
struct fs_params {
    char *collection; /* owned: fs_params_free() */
    int cache_mb;
    int group_commit;
    int timeout_ms;
    int startup_timeout_s;
    int max_request_bytes; /* 0: not given (the default depends on the emulator: store.c) */
};

/* Parses everything after "firestore:" ("//P[/D][?q]", "" or "?q") into the project id, the
 * database id and the parameters (defaults filled in). "" takes the project from
 * $GOOGLE_CLOUD_PROJECT, else from the metadata server ($GCE_METADATA_HOST or
 * metadata.google.internal, 2 s at most). Returns 0, or BOOKS_EINVAL with a message in err (prm
 * still to be freed either way), BOOKS_ENOMEM. */
int fs_parse_uri(const char *rest, char project[FS_PROJECT_BYTES],
                 char database[FS_DATABASE_BYTES], struct fs_params *prm, char *err,
                 size_t errlen);
void fs_params_free(struct fs_params *prm);

/* ---- store.c / writes.c ----------------------------------------------------------------------- */

struct fs_store {
    struct store base;
    struct fs_client *client;
    struct fs_names names;
    struct commit_pipeline *pipeline;
    uint32_t request_ttl_s;
    size_t max_queued;
    int timeout_ms;
    size_t max_request_bytes; /* most bytes of one BatchWrite or Commit request (writes.c) */
    atomic_long reads_in_flight;
    _Atomic uint64_t read_retries, write_retries; /* attempts made again (retry.c's policy) */
    atomic_bool reachable;
    atomic_bool draining;
    pthread_mutex_t state_mu; /* watch fn and the last state told */
    store_state_fn state_fn;
    void *state_arg;
    bool told_reachable;
    char shown[STORE_DISPLAY_BYTES];
};

/* Tells the watcher when reachability changes (any thread). */
void fs_set_reachable(struct fs_store *st, bool reachable);
/* commit_backend.write_batch for this store. */
int fs_write_batch(void *self, struct commit_item *items, size_t n);

#endif
