/* memory.c: the `memory:` backend, the default. Books live in this process only and are
 * gone when it exits.
 *
 * What it owns: one red-black tree (libbsd's <bsd/sys/tree.h>, a well-kept implementation rather
 * than a hand-written one) ordered by resource name with strcmp, i.e. bytewise, which is the
 * order the store contract promises to list in. Each tree node owns one reference to its book.
 * A name lookup and the start of a keyset page are both O(log n), and walking a page is O(limit)
 * with RB_NEXT, so page 1000 costs what page 1 costs.
 *
 * Size: the records and tree nodes it holds are counted; with a limit (a share of the process's
 * memory budget, store_limits) a create that would pass it fails with BOOKS_ENOSPC (STORE_FULL),
 * so a flood of creates cannot take the process past its budget.
 *
 * Locking rule: one pthread rwlock guards the tree. get and list take the read lock only long
 * enough to find their nodes and take a reference on each book; create takes the write lock only
 * around the insert. Nothing is allocated, freed or called back while the lock is held: the node
 * is allocated before the lock, and done() runs after it is released, so a slow callback cannot
 * stall other threads. The lock prefers writers, because glibc's default (prefer readers) lets a
 * steady stream of list calls starve creates indefinitely.
 *
 * Request ids (AIP-155, store.h's one model): a second tree maps each request_id to the book its
 * create made, with the request's fingerprint and the time it was stored, and a list in that order
 * lets creates drop the ids older than the retention (store_limits.request_ttl_s) from its head.
 * Both change under the write lock together with the book tree, so a request_id and its book
 * appear at once; their nodes count against the store's memory limit like the books'. Nothing
 * older than this binary ever wrote here, so there are no legacy fingerprints to keep.
 *
 * Why refcounted records: a reader encodes a book into its response after the lock is released,
 * possibly while other threads insert or the store is being closed. The reference it took under
 * the lock keeps the record alive for exactly as long as it needs it, with no copy and no lock
 * held during encoding; records are immutable, so sharing them needs no further synchronisation. */
#include "books/error.h"
#include "books/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/sys/queue.h>
#include <bsd/sys/tree.h>

struct memory_node {
    RB_ENTRY(memory_node) link;
    const char *name;        /* book->name, kept here so the comparator touches one struct less */
    struct store_book *book; /* the tree's reference */
};

RB_HEAD(memory_tree, memory_node);

/* A request_id remembered: the book its create made (a reference) and the request's fingerprint. */
struct request_node {
    RB_ENTRY(request_node) link;
    TAILQ_ENTRY(request_node) age; /* in creation order */
    char id[STORE_REQUEST_ID_CHARS + 1];
    uint8_t fingerprint[STORE_FINGERPRINT_BYTES];
    struct store_book *book;
    uint64_t at_ns; /* CLOCK_MONOTONIC, when it was stored */
};

RB_HEAD(request_tree, request_node);
TAILQ_HEAD(request_list, request_node);

struct memory_store {
    struct store base; /* first: a struct store * is a struct memory_store * */
    pthread_rwlock_t lock;
    struct memory_tree tree;       /* guarded by lock */
    struct request_tree requests;  /* guarded by lock */
    struct request_list by_age;    /* guarded by lock: oldest first */
    size_t bytes;                  /* records and nodes held, guarded by lock */
    size_t max_bytes;              /* 0: no limit */
    uint64_t request_ttl_ns;
};

static int node_cmp(const struct memory_node *a, const struct memory_node *b)
{
    return strcmp(a->name, b->name);
}

static int request_cmp(const struct request_node *a, const struct request_node *b)
{
    return strcmp(a->id, b->id);
}

/* RB_GENERATE_STATIC prefixes what it generates with `__unused static`, but Debian's libbsd leaves
 * `__unused` undefined (it clashed with a struct member in old Linux headers, Debian #522773), so
 * the expansion does not even parse; and without the attribute the generated functions we never
 * call (RB_PREV) would fail -Werror=unused-function. Define it around the generator only. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#define MEMORY_UNDEF_UNUSED
#endif
RB_GENERATE_STATIC(memory_tree, memory_node, link, node_cmp)
RB_GENERATE_STATIC(request_tree, request_node, link, request_cmp)
#ifdef MEMORY_UNDEF_UNUSED
#undef __unused
#undef MEMORY_UNDEF_UNUSED
#endif

/* The pthread lock calls below can fail only on misuse (a lock not initialised, already held by
 * this thread) or on more than ~2^30 concurrent readers: states this file never creates. */
static void lock_read(struct memory_store *ms)
{
    if (pthread_rwlock_rdlock(&ms->lock) != 0)
        abort();
}

static void lock_write(struct memory_store *ms)
{
    if (pthread_rwlock_wrlock(&ms->lock) != 0)
        abort();
}

static void unlock(struct memory_store *ms)
{
    if (pthread_rwlock_unlock(&ms->lock) != 0)
        abort();
}

static int memory_get(struct store *s, const char *name, struct store_book **out)
{
    struct memory_store *ms = (struct memory_store *)s;
    struct memory_node key = {.name = name};
    struct memory_node *node;
    struct store_book *book = NULL;

    /* No book has a NULL name; answering "not found" beats crashing in strcmp. */
    if (!name)
        return BOOKS_ENOTFOUND;

    lock_read(ms);
    node = RB_FIND(memory_tree, &ms->tree, &key);
    if (node)
        book = store_book_ref(node->book);
    unlock(ms);

    if (!book)
        return BOOKS_ENOTFOUND;
    *out = book;
    return 0;
}

static int memory_list(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                       struct store_book **out, size_t *n_out)
{
    struct memory_store *ms = (struct memory_store *)s;
    struct memory_node *node;
    size_t n = 0, bytes = 0;

    if (limit == 0) {
        *n_out = 0;
        return 0;
    }

    lock_read(ms);
    if (!after_name || after_name[0] == '\0') {
        node = RB_MIN(memory_tree, &ms->tree);
    } else {
        /* Keyset: the first name >= after_name, then past it if it is after_name itself. The
         * name need not exist any more (or ever have): the page resumes where it would be. */
        struct memory_node key = {.name = after_name};

        node = RB_NFIND(memory_tree, &ms->tree, &key);
        if (node && strcmp(node->name, after_name) == 0)
            node = RB_NEXT(memory_tree, &ms->tree, node);
    }
    for (; node && n < limit; node = RB_NEXT(memory_tree, &ms->tree, node)) {
        out[n++] = store_book_ref(node->book);
        if (store_page_full(out, n, max_bytes, &bytes))
            break;
    }
    unlock(ms);

    *n_out = n;
    return 0;
}

/* Moves the request ids older than the retention out of the trees onto *expired (freed by the
 * caller after the lock is released). Write lock held. */
static void expire_requests(struct memory_store *ms, uint64_t now, struct request_list *expired)
{
    struct request_node *r;
    while ((r = TAILQ_FIRST(&ms->by_age)) != NULL && r->at_ns + ms->request_ttl_ns <= now) {
        TAILQ_REMOVE(&ms->by_age, r, age);
        RB_REMOVE(request_tree, &ms->requests, r);
        ms->bytes -= sizeof *r;
        TAILQ_INSERT_TAIL(expired, r, age);
    }
}

static void free_requests(struct request_list *list)
{
    struct request_node *r;
    while ((r = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, r, age);
        store_book_unref(r->book);
        free(r);
    }
}

static void memory_create(struct store *s, const struct store_create_req *req,
                          store_create_done_fn done, void *arg)
{
    struct memory_store *ms = (struct memory_store *)s;
    struct store_book *book = req->book, *made = NULL;
    struct memory_node *node = NULL;
    struct request_node *rq = NULL, *seen;
    struct request_list expired = TAILQ_HEAD_INITIALIZER(expired);
    bool with_id = req->request_id[0] != '\0';
    uint64_t now = store_now_ns();
    int rc = 0;

    if (!book) {
        rc = BOOKS_EINVAL;
        goto out;
    }
    /* Allocate before locking so the write lock is held for the insert alone. */
    node = calloc(1, sizeof(*node));
    rq = with_id ? calloc(1, sizeof(*rq)) : NULL;
    if (!node || (with_id && !rq)) {
        rc = BOOKS_ENOMEM;
        goto out;
    }
    node->name = book->name;
    node->book = book;
    if (rq) {
        memcpy(rq->id, req->request_id, sizeof rq->id);
        memcpy(rq->fingerprint, req->fingerprint, sizeof rq->fingerprint);
        rq->book = book;
        rq->at_ns = now;
    }

    size_t cost = book->size_bytes + sizeof(*node) + (rq ? sizeof(*rq) : 0);
    lock_write(ms);
    expire_requests(ms, now, &expired);
    if (rq && (seen = RB_FIND(request_tree, &ms->requests, rq)) != NULL) {
        /* A retry (the same fingerprint) gets the book of the first; another request, an error. */
        if (store_request_matches(req->fingerprint, req->legacy_fingerprint, seen->fingerprint, sizeof seen->fingerprint, NULL, 0))
            made = store_book_ref(seen->book);
        else
            rc = BOOKS_EREUSED;
    } else if (ms->max_bytes &&
               cost > ms->max_bytes - (ms->bytes < ms->max_bytes ? ms->bytes : ms->max_bytes)) {
        /* Full: the name may or may not be taken; a full store answers "full" either way. */
        rc = BOOKS_ENOSPC;
    } else if (RB_INSERT(memory_tree, &ms->tree, node) != NULL) {
        rc = BOOKS_EEXIST;
    } else {
        store_book_ref(book); /* the tree's own reference; readers see it only after unlock */
        node = NULL;          /* the tree's now */
        if (rq) {
            RB_INSERT(request_tree, &ms->requests, rq);
            TAILQ_INSERT_TAIL(&ms->by_age, rq, age);
            store_book_ref(book); /* the request's own */
            rq = NULL;
        }
        ms->bytes += cost;
        made = store_book_ref(book);
    }
    unlock(ms);
    free_requests(&expired);
out:
    free(node);
    free(rq);
    if (done)
        done(arg, rc, rc == 0 ? made : NULL);
}

static void memory_close(struct store *s)
{
    struct memory_store *ms = (struct memory_store *)s;
    struct memory_node *node;
    struct request_node *r;

    /* RB_NEXT climbs through parents, so walking the tree while freeing it would read freed
     * nodes; take each node out before freeing it instead. A book still referenced by a caller
     * survives its node. */
    while ((node = RB_MIN(memory_tree, &ms->tree)) != NULL) {
        RB_REMOVE(memory_tree, &ms->tree, node);
        store_book_unref(node->book);
        free(node);
    }
    while ((r = TAILQ_FIRST(&ms->by_age)) != NULL) {
        TAILQ_REMOVE(&ms->by_age, r, age);
        store_book_unref(r->book);
        free(r);
    }
    pthread_rwlock_destroy(&ms->lock);
    free(ms);
}

static const struct store_ops memory_ops = {
    .scheme = "memory",
    .get = memory_get,
    .list = memory_list,
    .create = memory_create,
    .close = memory_close,
};

int store_memory_open(const char *rest, const struct store_limits *limits, struct store **out,
                      char *err, size_t errlen)
{
    struct memory_store *ms = NULL;
    pthread_rwlockattr_t attr;
    int rc;

    if (!rest || rest[0] != '\0' || !out) {
        books_format_err(err, errlen,
                         "store URI \"memory:%s\": memory: takes no options (use \"memory:\")",
                         rest ? rest : "");
        return BOOKS_EINVAL;
    }

    ms = calloc(1, sizeof(*ms));
    if (!ms) {
        books_format_err(err, errlen, "store URI \"memory:\": out of memory");
        rc = BOOKS_ENOMEM;
        goto fail_alloc;
    }
    ms->base.ops = &memory_ops;
    ms->max_bytes = limits->memory_bytes;
    ms->request_ttl_ns =
        (uint64_t)(limits->request_ttl_s ? limits->request_ttl_s : STORE_REQUEST_TTL_DEFAULT_S) *
        1000000000u;
    RB_INIT(&ms->tree);
    RB_INIT(&ms->requests);
    TAILQ_INIT(&ms->by_age);

    rc = store_new_dataset_key(ms->base.dataset_key);
    if (rc != 0) {
        books_format_err(err, errlen, "store URI \"memory:\": cannot read random bytes: %s",
                         strerror(errno));
        goto fail_key;
    }

    if (pthread_rwlockattr_init(&attr) != 0) {
        books_format_err(err, errlen, "store URI \"memory:\": out of memory");
        rc = BOOKS_ENOMEM;
        goto fail_attr;
    }
    /* Writer-preferring, so creates are not starved by a stream of readers (see the top). The
     * NONRECURSIVE kind is the only writer-preferring one glibc implements; it forbids a thread
     * from taking the read lock twice, which this file never does. */
    if (pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) != 0 ||
        pthread_rwlock_init(&ms->lock, &attr) != 0) {
        books_format_err(err, errlen, "store URI \"memory:\": cannot create the lock");
        rc = BOOKS_EIO;
        goto fail_lock;
    }
    pthread_rwlockattr_destroy(&attr);

    *out = &ms->base;
    return 0;

fail_lock:
    pthread_rwlockattr_destroy(&attr);
fail_attr:
fail_key:
    free(ms);
fail_alloc:
    return rc;
}
