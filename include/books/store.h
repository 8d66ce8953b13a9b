/* store.h: the storage interface (a table of function pointers, as SQLite's sqlite3_io_methods)
 * and the book record it stores. Backends embed `struct store` first and fill in `ops`; callers
 * use the inline wrappers and never touch the table.
 *
 * A store knows resource names, request ids and encoded resources, never a resource's fields (as
 * Kubernetes' storage keeps encoded objects and leaves the schema to the API): a book is its
 * resource name and its encoded books.v1.Book, and books.proto is the one description of what a
 * Book holds. A backend keeps the encoded bytes as they are (sqlite:, postgresql:) or maps each
 * proto field to a field of its own by the descriptor (firestore:, a layer above this one); none
 * of them names a field of the Book. The API layer (service.c) builds the bytes and enforces the
 * AIP rules; this layer knows nothing about gRPC or protobuf.
 *
 * Layers (store_open() builds them): the backend, and above it the one record cache of the
 * process (record_cache.h) for backends whose reads cost a query. A backend never calls the cache.
 *
 * Every backend must be thread-safe: any function may be called from any worker thread at once. */
#ifndef BOOKS_STORE_H
#define BOOKS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the record -------------------------------------------------------------------------------- */

/* An immutable, reference-counted book: its resource name and its encoded books.v1.Book. Built by
 * store_book_new() in one allocation; after that nothing changes, so any number of threads may
 * read it (send its bytes in a response) while holding a reference, even as other books are
 * inserted next to it.
 *
 * `wire` is the Book as a response carries it: field 1 (`name`, books.proto's IDENTIFIER: the
 * resource name, the one field this layer knows, as the key it is) first, then `body`, the Book's
 * other fields as the API layer encoded them, which is what a store keeps beside the name. Both
 * are bytes of the protobuf binary encoding; a store never looks inside `body`. */
struct store_book {
    atomic_uint refs;
    const char *name;    /* resource name "books/{book}", NUL-terminated (a copy beside `wire`) */
    size_t name_len;     /* bytes of name, without the NUL */
    const uint8_t *wire; /* the encoded Book: the name field, then body */
    size_t wire_len;
    size_t body_off;     /* wire + body_off is the body, wire_len - body_off bytes long */
    size_t size_bytes;   /* bytes the record holds in memory, for memory budgets */
};

/* The Book's fields other than its name, encoded: what a store keeps. *len gets its length. */
static inline const uint8_t *store_book_body(const struct store_book *b, size_t *len)
{
    *len = b->wire_len - b->body_off;
    return b->wire + b->body_off;
}

/* Most bytes of a body a store accepts from its database (a row or a document read back): more is
 * damaged or foreign data, BOOKS_ECORRUPT. The API's own cap on a Book is smaller (service.h:
 * SVC_MAX_BOOK_BYTES); this one only keeps a damaged row from becoming a huge allocation. */
#define STORE_MAX_BODY_BYTES (4u * 1024 * 1024)
/* Longest resource name a store accepts from its database ("books/" and a 63-character id fit). */
#define STORE_MAX_NAME_BYTES 128

/* Builds a record from a resource name (name_len bytes, not NUL-terminated) and an encoded body
 * (body_len bytes), copying both into one allocation with the wire form described above; one
 * reference, owned by the caller. Returns 0; BOOKS_EINVAL for a NULL pointer or an empty name;
 * BOOKS_ECORRUPT for a name holding a NUL byte, or longer than STORE_MAX_NAME_BYTES, or a body
 * longer than STORE_MAX_BODY_BYTES (bytes a database gave back that no create made); BOOKS_ENOMEM.
 * The body is not parsed. Any thread. */
int store_book_new(const char *name, size_t name_len, const uint8_t *body, size_t body_len,
                   struct store_book **out);

/* What record `b` adds to a page of encoded books (a ListBooksResponse): its wire form plus a field
 * tag and a length of at most 5 bytes. Stores cut pages with it (store_ops.list's max_bytes) and
 * the service does too, so both stop at the same book. */
static inline size_t store_book_page_bytes(const struct store_book *b)
{
    return b->wire_len + 6;
}

/* Adds a reference (atomic; any thread). Returns `b`. */
struct store_book *store_book_ref(struct store_book *b);

/* Drops a reference; frees the record with the last one. NULL is a no-op. */
void store_book_unref(struct store_book *b);

/* ---- request ids (AIP-155) ------------------------------------------------------------------------
 *
 * Every store keeps a request id one way: a record of
 *   the id           (a UUID4 in canonical lowercase form, STORE_REQUEST_ID_CHARS characters),
 *   its fingerprint  (SHA-256 of the request's deterministic encoding: service.c),
 *   the legacy fingerprint (363d47a's, of the request's four fields; only where a store may be
 *                    shared with servers of that version, and for ids stored by them),
 *   the book it made (by resource name),
 *   when it was stored,
 * written in the same transaction as the book, unique by id, forgotten once older than the
 * retention (store_limits.request_ttl_s: "at least" that long). A create whose id a store holds is
 * answered by store_request_matches(): the same request gets the book that id made, any other
 * BOOKS_EREUSED. Of concurrent creates with one id, exactly one makes a book.
 *   memory:      a tree by id beside the books, with a list in age order;
 *   sqlite:      columns of the book's row under a unique index (sq.h);
 *   postgresql:  columns of the book's row under a unique index (schema.c);
 *   firestore:   a document C_requests/{id} written in the book's Commit (store_firestore.h). */

/* An AIP-155 request_id as stores keep it: a UUID4 in canonical lowercase form. */
#define STORE_REQUEST_ID_CHARS 36
/* A request's fingerprint, either kind: SHA-256, 32 bytes. */
#define STORE_FINGERPRINT_BYTES 32
/* How long a store remembers a request_id by default, in seconds (store_limits.request_ttl_s). */
#define STORE_REQUEST_TTL_DEFAULT_S 86400

/* One create as a store sees it. */
struct store_create_req {
    struct store_book *book; /* the record; the caller keeps its reference */
    /* CLOCK_MONOTONIC nanoseconds after which the caller no longer waits (0: none). A create still
     * queued then is answered BOOKS_EDEADLINE without being written; one already being written is
     * answered when its transaction ends, or BOOKS_EUNKNOWN when that cannot be learnt in time. */
    uint64_t deadline_ns;
    /* AIP-155: the request's id, NUL-terminated (STORE_REQUEST_ID_CHARS characters), or "" for
     * none; with one, `fingerprint` and `legacy_fingerprint` describe the request (see above). The
     * store keeps them with the book, atomically, for at least store_limits.request_ttl_s, and a
     * later create with the same id, on any instance that shares the store, is answered with the
     * book this one made (store_request_matches) or BOOKS_EREUSED. Copied: the caller keeps `req`. */
    char request_id[STORE_REQUEST_ID_CHARS + 1];
    uint8_t fingerprint[STORE_FINGERPRINT_BYTES];
    uint8_t legacy_fingerprint[STORE_FINGERPRINT_BYTES];
};

/* Whether a stored request id belongs to the request whose fingerprint and legacy fingerprint
 * are `fingerprint` and `legacy` (STORE_FINGERPRINT_BYTES each: a store_create_req's, or a commit
 * item's): the same request again, a retry. `stored` is the fingerprint kept with the id
 * (stored_len bytes; 0 when the id was stored by 363d47a, which kept only the legacy one),
 * `stored_legacy` the legacy fingerprint kept with it (0 bytes when none). The fingerprint
 * decides whenever one was stored; only an id stored without one is compared by its legacy
 * fingerprint. A length other than STORE_FINGERPRINT_BYTES never matches. Pure; any thread. */
bool store_request_matches(const uint8_t *fingerprint, const uint8_t *legacy,
                           const uint8_t *stored, size_t stored_len, const uint8_t *stored_legacy,
                           size_t legacy_len);

/* ---- the interface ------------------------------------------------------------------------------- */

struct store;

/* Called exactly once when a create has finished. rc is:
 *   0                the book is stored (for a durable backend, on stable storage); `made` is a
 *                    new reference, which the callee drops, to the book the request made: req->book
 *                    itself, or, for a request_id seen before (AIP-155), the book that earlier
 *                    request made;
 *   BOOKS_EEXIST     the name was taken; nothing changed;
 *   BOOKS_EREUSED    the request_id was seen before with a different request; nothing changed;
 *   BOOKS_EDEADLINE  the deadline passed before the create was written: nothing stored;
 *   BOOKS_EBUSY      the store's queue is full: nothing stored;
 *   BOOKS_EUNKNOWN   it may or may not be stored (the connection broke after the write was sent
 *                    and the store could not find out in time): a retry with the same request_id
 *                    tells;
 *   another negative enum books_err: nothing was stored.
 * `made` is NULL unless rc is 0. May run on any thread, possibly before store_create() returns. */
typedef void (*store_create_done_fn)(void *arg, int rc, struct store_book *made);

/* A record a store could not read as a book (a read answered BOOKS_ECORRUPT): where it is, as
 * the database names it (a document's path, a row's key), and what makes it not a book (e.g.
 * "field authors is an integer, not an array"). Text, NUL-terminated, truncated to fit; no byte
 * of it comes unquoted from the record's content. */
#define STORE_DAMAGE_BYTES 320
struct store_damage {
    char where[STORE_DAMAGE_BYTES];
    char why[STORE_DAMAGE_BYTES];
};

/* Called exactly once when an asynchronous get has finished: rc 0 with `book` a new reference the
 * callee must drop, or BOOKS_ENOTFOUND, BOOKS_EDEADLINE (the deadline passed first),
 * BOOKS_EUNAVAIL (the database cannot be reached), BOOKS_ECORRUPT, BOOKS_EIO, BOOKS_ENOMEM with
 * `book` NULL. `damage` names the record for BOOKS_ECORRUPT when the store can tell (else NULL,
 * and NULL with every other rc); it is valid during the call only. */
typedef void (*store_get_done_fn)(void *arg, int rc, struct store_book *book,
                                  const struct store_damage *damage);

/* Called exactly once when an asynchronous list has finished: rc 0 with out[0..n) filled (new
 * references), or an error as for get (nothing to release; `damage` as for get). */
typedef void (*store_list_done_fn)(void *arg, int rc, size_t n,
                                   const struct store_damage *damage);

/* Called when a store that depends on something outside the process (a database server) loses it
 * (available false) or gets it back (true). From a store thread; must not call into the store. */
typedef void (*store_state_fn)(void *arg, bool available);

struct store_ops {
    /* URI scheme this backend serves, e.g. "memory". */
    const char *scheme;

    /* Looks a book up by resource name. On success *out holds a new reference the caller must drop
     * with store_book_unref(). Returns 0, BOOKS_ENOTFOUND, BOOKS_ECORRUPT, BOOKS_EIO,
     * BOOKS_ENOMEM. */
    int (*get)(struct store *s, const char *name, struct store_book **out);

    /* Keyset page: up to `limit` books whose names sort (bytewise, strcmp order) strictly after
     * `after_name` ("" or NULL: from the first book), in ascending order, written to out[0..]
     * (caller-provided array of `limit` pointers). Each is a new reference the caller drops.
     * *n_out is the count. A page deep in the collection costs what the first page costs.
     * `max_bytes` > 0 bounds the page's bytes as store_book_page_bytes() counts them: once it
     * holds two or more records that add up to more than max_bytes it stops and returns them (so
     * the last one is the first past the bound, and tells the caller that more follow); a store
     * that reads from a database never fetches much more than that. 0: no byte bound.
     * Returns 0, BOOKS_ECORRUPT, BOOKS_EIO, BOOKS_ENOMEM (nothing to release on failure). */
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
     * asynchronous reads of a backend whose reads wait on a network (postgresql:, firestore:):
     * they return at once and done() runs exactly once, later on a store thread, or inline when
     * the call is refused. `deadline_ns` is CLOCK_MONOTONIC time in nanoseconds after which the
     * caller no longer wants the answer (0: none): done() then gets BOOKS_EDEADLINE at that time,
     * and the query is cancelled in the database once nobody waits for it. `name` and `after_name`
     * are copied; `out` (limit pointers) must stay valid until done() runs. */
    void (*get_async)(struct store *s, const char *name, uint64_t deadline_ns,
                      store_get_done_fn done, void *arg);
    void (*list_async)(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                       struct store_book **out, uint64_t deadline_ns, store_list_done_fn done,
                       void *arg);

    /* Optional (NULL: none), for the record cache layer above (record_cache.h): walks the names
     * `list` would return for the same after_name and limit, in order, in one read, calling
     * visit(arg, name, name_len) for each (name valid during the call only) until it returns
     * false; reads no book. Returns 0 or what `list` returns. A backend whose books are local
     * (sqlite:) offers it: a page whose records the cache holds then costs one walk of the names,
     * not a record built per row. */
    int (*list_names)(struct store *s, const char *after_name, size_t limit,
                      bool (*visit)(void *arg, const char *name, size_t name_len), void *arg);

    /* Optional (NULL: the store is always available). Registers `fn` to hear of availability
     * changes (see store_state_fn) and calls it once at once with the state now, so no change
     * between open and watch is missed; call once, before serving. */
    void (*watch)(struct store *s, store_state_fn fn, void *arg);

    /* Optional (NULL: a store that answers every call promptly). Shutdown: stop waiting on the
     * outside world for calls in flight. Every read queued or running is answered BOOKS_EUNAVAIL
     * now, every create still queued too (nothing of it was written), and so is every later call;
     * a create being written is answered when its transaction ends (BOOKS_EUNKNOWN when that is
     * lost). Any thread; close() follows. */
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
    /* Set by a backend's open: the bytes of record cache it asks store_open() to put above it (its
     * URI's cache_mb; 0: none), which store_open() caps at store_limits.memory_bytes. */
    size_t cache_bytes;
};

#define STORE_ERR_BYTES 256

/* What the process lets a store keep in memory, from its memory budget (BOOKS_MEMORY_LIMIT_MB).
 * 0 means no limit. `memory:` caps its records at memory_bytes (creates past it fail with
 * BOOKS_ENOSPC); the record cache above a durable backend is capped at it. */
struct store_limits {
    size_t memory_bytes;
    /* How long request_ids are remembered, in seconds (0: STORE_REQUEST_TTL_DEFAULT_S). Each costs
     * a store its id, fingerprints and a time, about 100 bytes, until then. */
    uint32_t request_ttl_s;
    /* The most calls a queue of the store (creates waiting for a commit, reads waiting for a
     * database connection) may hold; past it a call is refused at once with BOOKS_EBUSY. 0: no
     * cap. */
    size_t max_queued;
};

/* Opens the backend named by `uri` ("memory:", the default, keeps the data in this process only;
 * the others: store_sqlite.h, store_postgres.h, store_firestore.h) and puts the record cache the
 * backend asks for above it (record_cache.h). On failure writes a message naming the URI and the
 * cause to err (errlen bytes) and returns BOOKS_EINVAL (unknown or malformed URI), BOOKS_EIO
 * (cannot open), BOOKS_EUNAVAIL (its database cannot be reached), BOOKS_EREFUSED (the database
 * refuses the credentials), BOOKS_ECORRUPT (not a books data set), BOOKS_ENOMEM. `limits` may be
 * NULL (no limits). The caller frees the store with store_close(). */
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

/* CLOCK_MONOTONIC now, in nanoseconds (the clock of every deadline_ns). Any thread. */
uint64_t store_now_ns(void);

static inline int store_get(struct store *s, const char *name, struct store_book **out)
{
    return s->ops->get(s, name, out);
}
/* store_create() of `b` without a deadline or request id. */
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
    done(arg, rc, rc == 0 ? b : NULL, NULL);
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
    done(arg, rc, rc == 0 ? n : 0, NULL);
}
/* Registers fn to hear when the store becomes unavailable and available again, and tells it the
 * state now; a no-op for stores that are always available. Before serving, one thread. */
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
