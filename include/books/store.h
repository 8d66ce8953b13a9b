/* store.h: the storage interface (a table of function pointers, as SQLite's sqlite3_io_methods)
 * and the book record it stores. Backends embed `struct store` first and fill in `ops`; callers
 * use the inline wrappers and never touch the table. A backend knows nothing about gRPC or
 * protobuf: it stores records, orders them by resource name and serves keyset pages.
 * Every backend must be thread-safe: any function may be called from any worker thread at once. */
#ifndef BOOKS_STORE_H
#define BOOKS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An immutable, reference-counted book. Built by store_book_new() in one allocation; after that no
 * field changes, so any number of threads may read it (e.g. encode it into a response) while
 * holding a reference, even as other books are inserted next to it. */
struct store_book {
    atomic_uint refs;
    const char *name;         /* resource name, "books/{book}" */
    const char *display_name; /* UTF-8, NUL-terminated */
    const char *publisher;
    const char *const *authors; /* n_authors strings */
    size_t n_authors;
    size_t size_bytes;          /* bytes the record holds (with `wire`), for memory budgets */
    /* The record in the API's wire form (an encoded books.v1.Book), made once when the record is
     * built, by the encoder registered with store_book_set_encoder(); NULL when none was
     * registered. Read-only like the rest; freed with the record. */
    const uint8_t *wire;
    size_t wire_len;
};

/* Writes the wire form of record `b` into out and returns its length in bytes; with out NULL only
 * returns the length. A pure function of the record's fields; any thread. */
typedef size_t (*store_book_encoder_fn)(const struct store_book *b, uint8_t *out);

/* Registers the encoder that every record built from now on gets its `wire` from (the API layer
 * registers its books.v1.Book packer: svc_new(), service.h), or NULL for none. The store layer
 * knows nothing of protobuf; it only keeps the bytes, so a GetBook or a ListBooks page sends each
 * record's bytes without packing it again. Records built earlier keep what they have. Any thread
 * (an atomic pointer), normally once at start-up. */
void store_book_set_encoder(store_book_encoder_fn fn);

/* Most authors a record read back from a database may have (the API lets a client send 100): a
 * row with more is damaged or foreign data, BOOKS_ECORRUPT. */
#define STORE_MAX_AUTHORS 1024

/* Builds a record holding copies of all the strings (one allocation, plus one for its wire form
 * when an encoder is registered), with one reference owned by the caller. Returns 0, BOOKS_EINVAL
 * if a pointer is NULL, BOOKS_ENOMEM. Any thread. */
int store_book_new(const char *name, const char *display_name, const char *const *authors,
                   size_t n_authors, const char *publisher, struct store_book **out);

/* A string given by pointer and length, not NUL-terminated (e.g. a field of a database row). */
struct store_text {
    const char *p;
    size_t len;
};

/* The same from counted strings (copied, each given a NUL). Returns 0, BOOKS_ECORRUPT when one
 * holds a NUL byte (a record's strings are C strings), BOOKS_EINVAL for a NULL pointer,
 * BOOKS_ENOMEM. Any thread. */
int store_book_new_counted(struct store_text name, struct store_text display_name,
                           const struct store_text *authors, size_t n_authors,
                           struct store_text publisher, struct store_book **out);

/* What record `b` adds to a page of encoded books (a ListBooksResponse): its wire form plus a field
 * tag and a length of at most 5 bytes, or size_bytes for a record without a wire form. Stores cut
 * pages with it (store_ops.list's max_bytes) and the service does too, so both stop at the same
 * book. */
static inline size_t store_book_page_bytes(const struct store_book *b)
{
    return b->wire ? b->wire_len + 6 : b->size_bytes;
}

/* Adds a reference (atomic; any thread). Returns `b`. */
struct store_book *store_book_ref(struct store_book *b);

/* Drops a reference; frees the record with the last one. NULL is a no-op. */
void store_book_unref(struct store_book *b);

struct store;

/* Called exactly once when a create has finished. rc is:
 *   0                the book is stored (for a durable backend, on stable storage); `made` is a
 *                    new reference, which the callee drops, to the book the request made: req->book
 *                    itself, or, for a request_id seen before (AIP-155), the book that earlier
 *                    request made;
 *   BOOKS_EEXIST     the name was taken; nothing changed;
 *   BOOKS_EREUSED    the request_id was seen before with a different request; nothing changed;
 *   BOOKS_EDEADLINE  the deadline passed before the create reached the database: nothing stored;
 *   BOOKS_EBUSY      the store's queue is full: nothing stored;
 *   BOOKS_EUNKNOWN   it may or may not be stored (a database connection broke after COMMIT was
 *                    sent and the store could not find out): a retry with the same request_id
 *                    tells;
 *   another negative enum books_err: nothing was stored.
 * `made` is NULL unless rc is 0. May run on any thread, possibly before store_create() returns. */
typedef void (*store_create_done_fn)(void *arg, int rc, struct store_book *made);

/* An AIP-155 request_id as stores keep it: a UUID4 in canonical lowercase form. */
#define STORE_REQUEST_ID_CHARS 36
/* A request's fingerprint (SHA-256 of what defines the create), which tells a retry of a request
 * from another request that reuses its request_id. */
#define STORE_REQUEST_HASH_BYTES 32
/* How long a store remembers a request_id by default, in seconds (store_limits.request_ttl_s). */
#define STORE_REQUEST_TTL_DEFAULT_S 86400

/* One create as a store sees it. */
struct store_create_req {
    struct store_book *book; /* the record; the caller keeps its reference */
    /* CLOCK_MONOTONIC nanoseconds after which the caller no longer waits (0: none). A create still
     * queued then is answered BOOKS_EDEADLINE without being written; one already being written is
     * answered when its transaction ends (a store may bound that transaction by it). */
    uint64_t deadline_ns;
    /* AIP-155: the request's id, NUL-terminated (STORE_REQUEST_ID_CHARS characters), or "" for
     * none; with one, `request_hash` is the request's fingerprint. The store keeps both with the
     * book, atomically (the same transaction), for at least store_limits.request_ttl_s, and a
     * later create with the same id, on any instance that shares the store, is answered with the
     * book this one made (same fingerprint) or BOOKS_EREUSED (another). Of concurrent creates
     * with one id, exactly one makes a book. Copied: the caller keeps `req`. */
    char request_id[STORE_REQUEST_ID_CHARS + 1];
    uint8_t request_hash[STORE_REQUEST_HASH_BYTES];
};

/* Called exactly once when an asynchronous get has finished: rc 0 with `book` a new reference the
 * callee must drop, or BOOKS_ENOTFOUND, BOOKS_EDEADLINE (the deadline passed first),
 * BOOKS_EUNAVAIL (the database cannot be reached), BOOKS_EIO, BOOKS_ENOMEM with `book` NULL. */
typedef void (*store_get_done_fn)(void *arg, int rc, struct store_book *book);

/* Called exactly once when an asynchronous list has finished: rc 0 with out[0..n) filled (new
 * references), or an error as for get (nothing to release). */
typedef void (*store_list_done_fn)(void *arg, int rc, size_t n);

/* Called when a store that depends on something outside the process (a database server) loses it
 * (available false) or gets it back (true). From a store thread; must not call into the store. */
typedef void (*store_state_fn)(void *arg, bool available);

struct store_ops {
    /* URI scheme this backend serves, e.g. "memory". */
    const char *scheme;

    /* Looks a book up by resource name. On success *out holds a new reference the caller must drop
     * with store_book_unref(). Returns 0, BOOKS_ENOTFOUND, BOOKS_EIO, BOOKS_ENOMEM. */
    int (*get)(struct store *s, const char *name, struct store_book **out);

    /* Keyset page: up to `limit` books whose names sort (bytewise, strcmp order) strictly after
     * `after_name` ("" or NULL: from the first book), in ascending order, written to out[0..]
     * (caller-provided array of `limit` pointers). Each is a new reference the caller drops.
     * *n_out is the count. A page deep in the collection costs what the first page costs.
     * `max_bytes` > 0 bounds the page's bytes as store_book_page_bytes() counts them: once it
     * holds two or more records that add up to more than max_bytes it stops and returns them (so
     * the last one is the first past the bound, and tells the caller that more follow); a store
     * that reads from a database never fetches much more than that. 0: no byte bound.
     * Returns 0, BOOKS_EIO, BOOKS_ENOMEM (nothing to release on failure). */
    int (*list)(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                struct store_book **out, size_t *n_out);

    /* Stores req->book under its name unless the name is taken. The backend takes its own
     * reference if it keeps the record; the caller keeps its own. `req` is read during the call
     * only. `done` is called exactly once (see store_create_done_fn); the call does not block on
     * I/O. */
    void (*create)(struct store *s, const struct store_create_req *req, store_create_done_fn done,
                   void *arg);

    /* Finishes pending writes, releases everything and frees `s`. No other call may be running
     * or follow. */
    void (*close)(struct store *s);

    /* Optional (NULL: store_get_async() and store_list_async() call get and list inline). The
     * asynchronous reads of a backend whose reads wait on a network (postgresql:): they return at
     * once and done() runs exactly once, later on a store thread, or inline when the call is
     * refused. `deadline_ns` is CLOCK_MONOTONIC time in nanoseconds after which the caller no
     * longer wants the answer (0: none): done() then gets BOOKS_EDEADLINE at that time, and the
     * query is cancelled in the database once nobody waits for it. `name` and `after_name` are
     * copied; `out` (limit pointers) must stay valid until done() runs. */
    void (*get_async)(struct store *s, const char *name, uint64_t deadline_ns,
                      store_get_done_fn done, void *arg);
    void (*list_async)(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                       struct store_book **out, uint64_t deadline_ns, store_list_done_fn done,
                       void *arg);

    /* Optional (NULL: the store is always available). Registers `fn` to hear of availability
     * changes (see store_state_fn); call once, before serving. */
    void (*watch)(struct store *s, store_state_fn fn, void *arg);

    /* Optional (NULL: a store that answers every call promptly). Shutdown: stop waiting on the
     * outside world for calls in flight. Every read queued or running is answered BOOKS_EUNAVAIL
     * now, every create still queued too (nothing of it was written), and so is every later call;
     * a create being written is answered when its transaction ends. Any thread; close() follows. */
    void (*drain)(struct store *s);
};

#define STORE_DATASET_KEY_BYTES 32

#define STORE_DISPLAY_BYTES 256

/* The base every backend embeds first. */
struct store {
    const struct store_ops *ops;
    /* How logs and messages name this data set ("memory:", "sqlite:/var/lib/books/books.db",
     * "postgresql://books@db:5432/books"): never a password. A backend may fill it in; otherwise
     * store_open() copies the URI it was given. */
    char display[STORE_DISPLAY_BYTES];
    /* Random bytes created with the data set and kept for its life (in memory for `memory:`, in
     * the database for durable backends). Secret: never sent to clients. The service keys its
     * AIP-158 page tokens with it, so a token only works against the data set that issued it. */
    uint8_t dataset_key[STORE_DATASET_KEY_BYTES];
};

#define STORE_ERR_BYTES 256

/* What the process lets a store keep in memory, from its memory budget (BOOKS_MEMORY_LIMIT_MB).
 * 0 means no limit. `memory:` caps its records at memory_bytes (creates past it fail with
 * BOOKS_ENOSPC); a durable backend caps its record cache at it. */
struct store_limits {
    size_t memory_bytes;
    /* How long request_ids are remembered, in seconds (0: STORE_REQUEST_TTL_DEFAULT_S). Each costs
     * a store its id, fingerprint and a time, about 100 bytes, until then. */
    uint32_t request_ttl_s;
    /* The most calls a queue of the store (creates waiting for a commit, reads waiting for a
     * database connection) may hold; past it a call is refused at once with BOOKS_EBUSY. 0: no
     * cap. */
    size_t max_queued;
};

/* Opens the backend named by `uri`: "memory:" (the default; data lives in this process only).
 * On failure writes a message naming the URI and the cause to err (errlen bytes) and returns
 * BOOKS_EINVAL (unknown or malformed URI), BOOKS_EIO (cannot open), BOOKS_ECORRUPT (not a books
 * data set), BOOKS_ENOMEM. `limits` may be NULL (no limits). The caller frees the store with
 * store_close(). */
int store_open(const char *uri, const struct store_limits *limits, struct store **out, char *err,
               size_t errlen);

/* How a backend opens: from the part of the URI after the scheme's ':' (store_open's contract). */
typedef int (*store_open_fn)(const char *rest, const struct store_limits *limits,
                             struct store **out, char *err, size_t errlen);

/* Adds a backend that lives in a layer above this one (firestore:, a gRPC client: see
 * store_firestore.h) to store_open()'s table, under `scheme` (matched without regard to ASCII
 * case), with `form` ("firestore://PROJECT[/DATABASE]") listed among the accepted forms. The
 * strings are static; nothing is copied. Registering the same scheme and function again is a
 * no-op. Returns 0, or BOOKS_EINVAL (a NULL argument, the scheme taken by another backend, or the
 * table's 4 places full). At start-up, before any store_open(), one thread. */
int store_register_backend(const char *scheme, const char *form, store_open_fn open);

/* store_ops.get and store_ops.list for a backend whose reads are asynchronous (get_async and
 * list_async set): each starts the asynchronous read without a deadline and waits on the calling
 * thread for its done(). Same contract as get and list (*out and *n_out untouched on failure);
 * for tests and tools: the server uses the asynchronous forms. */
int store_get_waiting(struct store *s, const char *name, struct store_book **out);
int store_list_waiting(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                       struct store_book **out, size_t *n_out);

/* Fills `key` with STORE_DATASET_KEY_BYTES random bytes from the kernel. 0 or BOOKS_EIO. */
int store_new_dataset_key(uint8_t key[STORE_DATASET_KEY_BYTES]);

static inline int store_get(struct store *s, const char *name, struct store_book **out)
{
    return s->ops->get(s, name, out);
}
/* store_create() of `b` without a deadline. */
static inline void store_create_book(struct store *s, struct store_book *b,
                                     store_create_done_fn done, void *arg)
{
    const struct store_create_req req = {.book = b};
    s->ops->create(s, &req, done, arg);
}
/* store_ops.list without a byte bound. */
static inline int store_list(struct store *s, const char *after_name, size_t limit,
                             struct store_book **out, size_t *n_out)
{
    return s->ops->list(s, after_name, limit, 0, out, n_out);
}
static inline int store_list_bounded(struct store *s, const char *after_name, size_t limit,
                                     size_t max_bytes, struct store_book **out, size_t *n_out)
{
    return s->ops->list(s, after_name, limit, max_bytes, out, n_out);
}
static inline void store_create(struct store *s, const struct store_create_req *req,
                                store_create_done_fn done, void *arg)
{
    s->ops->create(s, req, done, arg);
}
/* The asynchronous reads (see store_ops.get_async): for a backend without them, get or list runs
 * inline and done() is called before this returns. Any thread. */
static inline void store_get_async(struct store *s, const char *name, uint64_t deadline_ns,
                                   store_get_done_fn done, void *arg)
{
    struct store_book *b = NULL;
    int rc;
    if (s->ops->get_async) {
        s->ops->get_async(s, name, deadline_ns, done, arg);
        return;
    }
    rc = s->ops->get(s, name, &b);
    done(arg, rc, rc == 0 ? b : NULL);
}
static inline void store_list_async(struct store *s, const char *after_name, size_t limit,
                                    size_t max_bytes, struct store_book **out,
                                    uint64_t deadline_ns, store_list_done_fn done, void *arg)
{
    size_t n = 0;
    int rc;
    if (s->ops->list_async) {
        s->ops->list_async(s, after_name, limit, max_bytes, out, deadline_ns, done, arg);
        return;
    }
    rc = s->ops->list(s, after_name, limit, max_bytes, out, &n);
    done(arg, rc, rc == 0 ? n : 0);
}
/* Registers fn to hear when the store becomes unavailable and available again; a no-op for
 * stores that are always available. Before serving, one thread. */
static inline void store_watch(struct store *s, store_state_fn fn, void *arg)
{
    if (s->ops->watch)
        s->ops->watch(s, fn, arg);
}
/* store_ops.drain, a no-op for stores without it. NULL is a no-op. */
static inline void store_drain(struct store *s)
{
    if (s && s->ops->drain)
        s->ops->drain(s);
}
/* NULL is a no-op. */
static inline void store_close(struct store *s)
{
    if (s)
        s->ops->close(s);
}

/* The stop rule of store_ops.list's max_bytes, for backends: true once out[0..n) (n records read
 * so far, *bytes their running total, updated here with out[n-1]) should end the page. */
static inline bool store_page_full(struct store_book *const *out, size_t n, size_t max_bytes,
                                   size_t *bytes)
{
    *bytes += store_book_page_bytes(out[n - 1]);
    return max_bytes && n >= 2 && *bytes > max_bytes;
}

/* Backends (memory.c, ...): each opens from the part of the URI after the scheme's ':'.
 * `limits` is never NULL here (store_open passes zeros for "none"). */
int store_memory_open(const char *rest, const struct store_limits *limits, struct store **out,
                      char *err, size_t errlen);

#endif
