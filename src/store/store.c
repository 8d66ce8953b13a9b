/* store.c: what every backend shares. It builds the immutable, reference-counted book records
 * the backends store and hand out, decides whether a stored request id is a retry's, creates the
 * random per-data-set key, and picks a backend from the scheme of a store URI (a built-in one from
 * `builtin` below, one of a layer above from `registered`), putting the record cache it asks for
 * above it. It knows nothing about any backend's internals. */
#include "books/store.h"

#include "books/error.h"
#include "books/record_cache.h"
#include "books/varint.h"
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
#include <time.h>

/* The key of the Book's field 1, `name` (books.proto: `string name = 1`, the resource name), as
 * the protobuf binary encoding writes it: (field number << 3) | wire type 2, length-delimited.
 * The one fact about the Book's encoding this layer holds: a record is its name and the rest. */
#define NAME_FIELD_KEY ((1u << 3) | 2u)

int store_book_new(const char *name, size_t name_len, const uint8_t *body, size_t body_len,
                   struct store_book **out)
{
    uint8_t head[1 + VARINT_MAX_BYTES];
    size_t head_len, total;
    struct store_book *b;
    char *copy;
    uint8_t *wire;

    if (!name || !out || (!body && body_len) || name_len == 0)
        return BOOKS_EINVAL;
    if (name_len > STORE_MAX_NAME_BYTES || memchr(name, '\0', name_len) ||
        body_len > STORE_MAX_BODY_BYTES)
        return BOOKS_ECORRUPT;
    head[0] = NAME_FIELD_KEY;
    head_len = (size_t)(varint_write(head + 1, name_len) - head);
    /* The record, its name as a C string and its wire form share one block: one malloc and one
     * free per record, and readers touch one region. The bounds above keep the sum far from
     * SIZE_MAX. */
    total = sizeof *b + name_len + 1 + head_len + name_len + body_len;
    b = malloc(total);
    if (!b)
        return BOOKS_ENOMEM;
    copy = (char *)(b + 1);
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    wire = (uint8_t *)copy + name_len + 1;
    memcpy(wire, head, head_len);
    memcpy(wire + head_len, name, name_len);
    if (body_len)
        memcpy(wire + head_len + name_len, body, body_len);
    atomic_init(&b->refs, 1);
    b->name = copy;
    b->name_len = name_len;
    b->wire = wire;
    b->body_off = head_len + name_len;
    b->wire_len = b->body_off + body_len;
    b->size_bytes = total;
    *out = b;
    return 0;
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
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

bool store_request_matches(const uint8_t *fingerprint, const uint8_t *legacy,
                           const uint8_t *stored, size_t stored_len, const uint8_t *stored_legacy,
                           size_t legacy_len)
{
    if (stored && stored_len)
        return stored_len == STORE_FINGERPRINT_BYTES &&
               memcmp(stored, fingerprint, STORE_FINGERPRINT_BYTES) == 0;
    return stored_legacy && legacy_len == STORE_FINGERPRINT_BYTES &&
           memcmp(stored_legacy, legacy, STORE_FINGERPRINT_BYTES) == 0;
}

uint64_t store_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

static void got_book(void *arg, int rc, struct store_book *book,
                     const struct store_damage *damage)
{
    (void)damage;
    struct waiter *w = arg;
    w->rc = rc;
    w->book = book;
    waiter_signal(w);
}

static void got_list(void *arg, int rc, size_t n, const struct store_damage *damage)
{
    (void)damage;
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
        const struct store_limits *lim = limits ? limits : &none;
        struct store *s = NULL;
        rc = be->open(colon + 1, lim, &s, err, errlen);
        if (rc != 0)
            return rc;
        if (s->display[0] == '\0')
            snprintf(s->display, sizeof s->display, "%s", uri);
        size_t cache = s->cache_bytes;
        if (lim->memory_bytes && cache > lim->memory_bytes)
            cache = lim->memory_bytes;
        if (cache) {
            /* The one record cache, above the backend (record_cache.h). */
            char shown[STORE_DISPLAY_BYTES];
            memcpy(shown, s->display, sizeof shown);
            rc = record_cache_layer_new(s, cache, out); /* closes s when it fails */
            if (rc != 0)
                books_format_err(err, errlen, "store %s: out of memory for its record cache",
                                 shown);
            return rc;
        }
        *out = s;
        return 0;
    }

    /* Only the scheme is echoed: the rest of an unknown URI may hold a password. */
    books_format_err(err, errlen, "store URI: unknown scheme \"%.*s\"; accepted forms: %s",
                     (int)(scheme_len > 32 ? 32 : scheme_len), uri, accepted);
    return BOOKS_EINVAL;
}
