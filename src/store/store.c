/* store.c: what every backend shares. It builds the immutable, reference-counted book records
 * the backends store and hand out, creates the random per-data-set key, and picks a backend from
 * the scheme of a store URI. It holds no state of its own and knows nothing about any backend's
 * internals: a new backend is one row in `backends` below. */
#include "books/store.h"

#include "books/error.h"
#include "books/store_postgres.h"
#include "books/store_sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

/* Adds `n` to `*total`; false if the sum would not fit in size_t. */
static int size_add(size_t *total, size_t n)
{
    if (n > SIZE_MAX - *total)
        return 0;
    *total += n;
    return 1;
}

/* Copies t and a NUL to `*cursor` and advances the cursor past them. */
static const char *copy_text(char **cursor, struct store_text t)
{
    char *dst = *cursor;

    memcpy(dst, t.p, t.len);
    dst[t.len] = '\0';
    *cursor += t.len + 1;
    return dst;
}

/* The authors of a record being built, given either as C strings or as counted strings. */
typedef struct store_text (*author_at_fn)(const void *authors, size_t i);

static struct store_text c_string_at(const void *authors, size_t i)
{
    const char *s = ((const char *const *)authors)[i];
    return (struct store_text){s, s ? strlen(s) : 0};
}

static struct store_text counted_at(const void *authors, size_t i)
{
    return ((const struct store_text *)authors)[i];
}

static bool usable(struct store_text t, int *rc)
{
    if (!t.p) {
        *rc = BOOKS_EINVAL;
        return false;
    }
    if (memchr(t.p, '\0', t.len)) {
        *rc = BOOKS_ECORRUPT;
        return false;
    }
    return true;
}

/* store_book_set_encoder()'s function, or NULL. */
static _Atomic(store_book_encoder_fn) book_encoder;

static int build(struct store_text name, struct store_text display_name, const void *authors,
                 author_at_fn author_at, size_t n_authors, struct store_text publisher,
                 struct store_book **out)
{
    size_t total = sizeof(struct store_book);
    struct store_book *b;
    const char **author_slots;
    char *cursor;
    int rc = 0;

    if (!out || (n_authors > 0 && !authors) || !usable(name, &rc) ||
        !usable(display_name, &rc) || !usable(publisher, &rc))
        return rc ? rc : BOOKS_EINVAL;

    /* The record, its author pointer array and every string share one block, so a record costs
     * one malloc and one free however many authors it has, and readers touch one region. The
     * pointer array follows the struct directly: sizeof(struct store_book) is a multiple of its
     * alignment, which is at least a pointer's, so the array is suitably aligned. */
    if (n_authors > (SIZE_MAX - total) / sizeof(char *))
        return BOOKS_ENOMEM;
    total += n_authors * sizeof(char *);
    for (size_t i = 0; i < n_authors; i++) {
        struct store_text a = author_at(authors, i);
        if (!usable(a, &rc))
            return rc;
        if (!size_add(&total, a.len) || !size_add(&total, 1))
            return BOOKS_ENOMEM;
    }
    if (!size_add(&total, name.len + 1) || !size_add(&total, display_name.len + 1) ||
        !size_add(&total, publisher.len + 1))
        return BOOKS_ENOMEM;

    b = malloc(total);
    if (!b)
        return BOOKS_ENOMEM;

    b->size_bytes = total;
    author_slots = (const char **)(b + 1);
    cursor = (char *)(author_slots + n_authors);
    atomic_init(&b->refs, 1);
    b->name = copy_text(&cursor, name);
    b->display_name = copy_text(&cursor, display_name);
    b->publisher = copy_text(&cursor, publisher);
    for (size_t i = 0; i < n_authors; i++)
        author_slots[i] = copy_text(&cursor, author_at(authors, i));
    /* Even with no authors this points into the block (at zero elements), never NULL, so
     * callers can loop over it without a special case. */
    b->authors = author_slots;
    b->n_authors = n_authors;
    b->wire = NULL;
    b->wire_len = 0;

    store_book_encoder_fn encode = atomic_load_explicit(&book_encoder, memory_order_acquire);
    if (encode) {
        size_t len = encode(b, NULL);
        uint8_t *wire = malloc(len ? len : 1);
        if (!wire || !size_add(&b->size_bytes, len)) {
            free(wire);
            free(b);
            return BOOKS_ENOMEM;
        }
        if (encode(b, wire) != len) /* the encoder broke its contract: a bug, not an input */
            abort();
        b->wire = wire;
        b->wire_len = len;
    }
    *out = b;
    return 0;
}

void store_book_set_encoder(store_book_encoder_fn fn)
{
    atomic_store_explicit(&book_encoder, fn, memory_order_release);
}

int store_book_new(const char *name, const char *display_name, const char *const *authors,
                   size_t n_authors, const char *publisher, struct store_book **out)
{
    if (!name || !display_name || !publisher)
        return BOOKS_EINVAL;
    return build((struct store_text){name, strlen(name)},
                 (struct store_text){display_name, strlen(display_name)}, authors, c_string_at,
                 n_authors, (struct store_text){publisher, strlen(publisher)}, out);
}

int store_book_new_counted(struct store_text name, struct store_text display_name,
                           const struct store_text *authors, size_t n_authors,
                           struct store_text publisher, struct store_book **out)
{
    return build(name, display_name, authors, counted_at, n_authors, publisher, out);
}

struct store_book *store_book_ref(struct store_book *b)
{
    /* Relaxed is enough: whoever calls this already holds a reference, so the record cannot be
     * freed meanwhile, and taking a reference publishes nothing. */
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void store_book_unref(struct store_book *b)
{
    if (!b)
        return;
    /* acq_rel: the release half orders this thread's reads of the record before the drop; the
     * acquire half, on the last drop, makes every other thread's reads happen before free(). */
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        free((void *)b->wire);
        free(b);
    }
}

/* ---- the waiting reads of an asynchronous backend ------------------------------------------- */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    size_t n;
    struct store_book *book;
};

static void waiter_init(struct waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = false;
}

static void waiter_signal(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void got_book(void *arg, int rc, struct store_book *book)
{
    struct waiter *w = arg;
    w->rc = rc;
    w->book = book;
    waiter_signal(w);
}

static void got_list(void *arg, int rc, size_t n)
{
    struct waiter *w = arg;
    w->rc = rc;
    w->n = n;
    waiter_signal(w);
}

int store_get_waiting(struct store *s, const char *name, struct store_book **out)
{
    struct waiter w;
    waiter_init(&w);
    s->ops->get_async(s, name, 0, got_book, &w);
    waiter_wait(&w);
    if (w.rc == 0)
        *out = w.book;
    return w.rc;
}

int store_list_waiting(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                       struct store_book **out, size_t *n_out)
{
    struct waiter w;
    waiter_init(&w);
    s->ops->list_async(s, after_name, limit, max_bytes, out, 0, got_list, &w);
    waiter_wait(&w);
    if (w.rc == 0)
        *n_out = w.n;
    return w.rc;
}

int store_new_dataset_key(uint8_t key[STORE_DATASET_KEY_BYTES])
{
    size_t got = 0;

    /* getrandom(2) without flags blocks only until the kernel's pool is first initialised, and
     * needs no file descriptor, so it works in a chroot or a container without /dev. Requests of
     * up to 256 bytes are not cut short once the pool is ready, but a signal can still interrupt
     * the wait, so loop on EINTR and on short reads alike. */
    while (got < STORE_DATASET_KEY_BYTES) {
        ssize_t n = getrandom(key + got, STORE_DATASET_KEY_BYTES - got, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return BOOKS_EIO;
        }
        got += (size_t)n;
    }
    return 0;
}

/* The backends this binary can open, by URI scheme. `form` is how the URI is written; it is what
 * the error message lists as accepted. Add a backend of this layer here and nowhere else; one
 * from a layer above (firestore:, a gRPC client) adds itself with store_register_backend(). */
struct backend {
    const char *scheme;
    const char *form;
    store_open_fn open;
};
static const struct backend builtin[] = {
    {"memory", "memory:", store_memory_open},
    {"sqlite", "sqlite:PATH", store_sqlite_open},
    {"file", "file:PATH", store_sqlite_open}, /* alias of sqlite: */
    {"postgresql", "postgresql://...", store_postgres_open},
    {"postgres", "postgres://...", store_postgres_open}, /* libpq's alias */
};
#define N_BUILTIN (sizeof builtin / sizeof builtin[0])
#define MAX_REGISTERED 4
static struct backend registered[MAX_REGISTERED];
static size_t n_registered;

static const struct backend *backend_at(size_t i)
{
    return i < N_BUILTIN ? &builtin[i] : &registered[i - N_BUILTIN];
}

int store_register_backend(const char *scheme, const char *form, store_open_fn open)
{
    if (!scheme || !form || !open)
        return BOOKS_EINVAL;
    for (size_t i = 0; i < N_BUILTIN + n_registered; i++)
        if (strcasecmp(backend_at(i)->scheme, scheme) == 0)
            return backend_at(i)->open == open ? 0 : BOOKS_EINVAL;
    if (n_registered == MAX_REGISTERED)
        return BOOKS_EINVAL;
    registered[n_registered++] = (struct backend){scheme, form, open};
    return 0;
}

/* Writes the accepted forms, "memory:, sqlite:PATH", to buf (len bytes). */
static void format_accepted(char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < N_BUILTIN + n_registered && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", backend_at(i)->form);

        if (n < 0)
            break;
        used += (size_t)n;
    }
}

int store_open(const char *uri, const struct store_limits *limits, struct store **out, char *err,
               size_t errlen)
{
    static const struct store_limits none = {0};
    char accepted[192];
    const char *colon;
    size_t scheme_len;

    format_accepted(accepted, sizeof(accepted));
    if (!uri || !out) {
        books_format_err(err, errlen, "store URI \"%s\": missing; accepted forms: %s",
                         uri ? uri : "(null)", accepted);
        return BOOKS_EINVAL;
    }

    colon = strchr(uri, ':');
    if (!colon || colon == uri) {
        books_format_err(err, errlen, "store URI \"%s\": no scheme before ':'; accepted forms: %s",
                         uri, accepted);
        return BOOKS_EINVAL;
    }

    /* RFC 3986 section 3.1: schemes compare case-insensitively. */
    scheme_len = (size_t)(colon - uri);
    for (size_t i = 0; i < N_BUILTIN + n_registered; i++) {
        const struct backend *be = backend_at(i);
        int rc;
        if (strlen(be->scheme) != scheme_len || strncasecmp(uri, be->scheme, scheme_len) != 0)
            continue;
        rc = be->open(colon + 1, limits ? limits : &none, out, err, errlen);
        if (rc == 0 && (*out)->display[0] == '\0')
            snprintf((*out)->display, sizeof (*out)->display, "%s", uri);
        return rc;
    }

    /* Only the scheme is echoed: the rest of an unknown URI may hold a password. */
    books_format_err(err, errlen, "store URI: unknown scheme \"%.*s\"; accepted forms: %s",
                     (int)(scheme_len > 32 ? 32 : scheme_len), uri, accepted);
    return BOOKS_EINVAL;
}
