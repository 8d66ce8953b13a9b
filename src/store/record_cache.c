/* record_cache.c: the cache of book records (record_cache.h).
 *
 * CACHE_SHARDS independent shards (by name hash), each a chained hash table with an LRU list
 * under its own mutex, held only to find or link a node; records evicted are released after the
 * mutex. The budget is split evenly; a record larger than a shard's share is not cached. Each
 * cached record holds one reference of the cache's. The layer at the bottom of this file is the
 * cache's one user: it fills the cache with what gets found, never with creates. */
#include "books/record_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/log.h"

#define CACHE_SHARDS 16
#define CACHE_MIN_BUCKETS 64

struct cache_node {
    struct cache_node *chain;       /* next in the bucket */
    struct cache_node *prev, *next; /* LRU list: head.next is the most recently used */
    uint64_t hash;
    size_t bytes;
    struct store_book *book;
};

struct cache_shard {
    pthread_mutex_t mu;
    struct cache_node **buckets; /* n_buckets, a power of two */
    size_t n_buckets, n;
    size_t bytes, budget;
    struct cache_node lru; /* sentinel */
    char pad[64];          /* keep shards on separate cache lines */
};

struct record_cache {
    struct cache_shard shards[CACHE_SHARDS];
    bool enabled;
    uint64_t seed; /* of the hash, random per cache */
    _Atomic uint64_t hits, misses, bytes;
};

/* FNV-1a over the name from a random per-store seed, then MurmurHash3's 64-bit finaliser. The
 * finaliser spreads every input bit over the whole word: without it, names that differ only in
 * their last characters ("c000".."c399") differ only in FNV's low bits and would all pick the
 * same shard. The seed keeps clients (who choose book ids) from precomputing names that collide
 * into one chain. */
uint64_t record_cache_hash(const struct record_cache *c, const char *s, size_t len)
{
    uint64_t h = c->seed;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static void lru_unlink(struct cache_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static void lru_push_front(struct cache_shard *sh, struct cache_node *n)
{
    n->next = sh->lru.next;
    n->prev = &sh->lru;
    sh->lru.next->prev = n;
    sh->lru.next = n;
}

int record_cache_new(size_t budget_bytes, struct record_cache **out)
{
    uint8_t random[STORE_DATASET_KEY_BYTES];
    struct record_cache *c = calloc(1, sizeof(*c));

    if (!c)
        return BOOKS_ENOMEM;
    c->enabled = budget_bytes > 0;
    /* Without random bytes the cache still works; only the seed is predictable. */
    c->seed = 0xcbf29ce484222325ull; /* FNV's offset basis */
    if (store_new_dataset_key(random) == 0)
        memcpy(&c->seed, random, sizeof(c->seed));
    atomic_init(&c->hits, 0);
    atomic_init(&c->misses, 0);
    atomic_init(&c->bytes, 0);
    for (size_t i = 0; i < CACHE_SHARDS; i++) {
        struct cache_shard *sh = &c->shards[i];

        pthread_mutex_init(&sh->mu, NULL);
        sh->buckets = NULL;
        sh->n_buckets = sh->n = sh->bytes = 0;
        sh->budget = budget_bytes / CACHE_SHARDS;
        sh->lru.next = sh->lru.prev = &sh->lru;
    }
    *out = c;
    return 0;
}

void record_cache_free(struct record_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < CACHE_SHARDS; i++) {
        struct cache_shard *sh = &c->shards[i];
        struct cache_node *n = sh->lru.next;

        while (n != &sh->lru) {
            struct cache_node *next = n->next;

            store_book_unref(n->book);
            free(n);
            n = next;
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
    free(c);
}

bool record_cache_enabled(const struct record_cache *c) { return c->enabled; }

static struct cache_shard *cache_shard_of(struct record_cache *c, uint64_t hash)
{
    return &c->shards[(hash >> 32) % CACHE_SHARDS];
}

struct store_book *record_cache_get(struct record_cache *c, const char *name, size_t len,
                                    uint64_t hash)
{
    struct cache_shard *sh = cache_shard_of(c, hash);
    struct store_book *b = NULL;

    if (!c->enabled) {
        atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
        return NULL;
    }
    pthread_mutex_lock(&sh->mu);
    if (sh->n_buckets) {
        for (struct cache_node *n = sh->buckets[hash & (sh->n_buckets - 1)]; n; n = n->chain) {
            if (n->hash == hash && strncmp(n->book->name, name, len) == 0 &&
                n->book->name[len] == '\0') {
                lru_unlink(n);
                lru_push_front(sh, n);
                b = store_book_ref(n->book);
                break;
            }
        }
    }
    pthread_mutex_unlock(&sh->mu);
    atomic_fetch_add_explicit(b ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return b;
}

/* Doubles the bucket array (keeps the old one if memory is short). Shard mutex held. */
static void cache_grow(struct cache_shard *sh)
{
    size_t nb = sh->n_buckets ? sh->n_buckets * 2 : CACHE_MIN_BUCKETS;
    struct cache_node **b = calloc(nb, sizeof(*b));

    if (!b)
        return;
    for (size_t i = 0; i < sh->n_buckets; i++) {
        struct cache_node *n = sh->buckets[i];

        while (n) {
            struct cache_node *chain = n->chain;

            n->chain = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = chain;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->n_buckets = nb;
}

/* Removes n from its bucket. Shard mutex held. */
static void cache_unchain(struct cache_shard *sh, struct cache_node *n)
{
    struct cache_node **pp = &sh->buckets[n->hash & (sh->n_buckets - 1)];

    while (*pp != n)
        pp = &(*pp)->chain;
    *pp = n->chain;
}

void record_cache_put(struct record_cache *c, struct store_book *b, uint64_t hash)
{
    struct cache_shard *sh = cache_shard_of(c, hash);
    struct cache_node *node, *victims = NULL;
    size_t bytes = b->size_bytes + sizeof(struct cache_node), freed = 0;

    if (!c->enabled || bytes > sh->budget)
        return;
    node = malloc(sizeof(*node));
    if (!node)
        return;
    node->hash = hash;
    node->bytes = bytes;
    node->book = b;

    pthread_mutex_lock(&sh->mu);
    if (sh->n >= sh->n_buckets)
        cache_grow(sh);
    if (!sh->n_buckets) {
        pthread_mutex_unlock(&sh->mu);
        free(node);
        return;
    }
    for (struct cache_node *n = sh->buckets[hash & (sh->n_buckets - 1)]; n; n = n->chain) {
        if (n->hash == hash && strcmp(n->book->name, b->name) == 0) {
            /* Another reader cached the same book meanwhile; it is the same content. */
            pthread_mutex_unlock(&sh->mu);
            free(node);
            return;
        }
    }
    while (sh->bytes + bytes > sh->budget && sh->lru.prev != &sh->lru) {
        struct cache_node *old = sh->lru.prev;

        lru_unlink(old);
        cache_unchain(sh, old);
        sh->bytes -= old->bytes;
        freed += old->bytes;
        sh->n--;
        old->chain = victims;
        victims = old;
    }
    store_book_ref(b);
    node->chain = sh->buckets[hash & (sh->n_buckets - 1)];
    sh->buckets[hash & (sh->n_buckets - 1)] = node;
    lru_push_front(sh, node);
    sh->bytes += bytes;
    sh->n++;
    pthread_mutex_unlock(&sh->mu);
    atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->bytes, freed, memory_order_relaxed);

    /* Freeing records is done outside the mutex (readers may still hold them anyway). */
    while (victims) {
        struct cache_node *next = victims->chain;

        store_book_unref(victims->book);
        free(victims);
        victims = next;
    }
}

void record_cache_stats(const struct record_cache *c, struct record_cache_stats *out)
{
    out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed);
}

/* ---- the layer above a backend ---------------------------------------------------------------- */

struct cache_layer {
    struct store base; /* first: a struct store * is a struct cache_layer * */
    struct store_ops ops; /* layer_ops with the backend's scheme: the layer is that store */
    struct store *below;
    struct record_cache *cache;
};

static struct cache_layer *layer_of(struct store *s) { return (struct cache_layer *)s; }

static int layer_get(struct store *s, const char *name, struct store_book **out)
{
    struct cache_layer *l = layer_of(s);
    size_t len = name ? strlen(name) : 0;
    uint64_t hash = record_cache_hash(l->cache, name ? name : "", len);
    struct store_book *b = name ? record_cache_get(l->cache, name, len, hash) : NULL;
    int rc;

    if (b) {
        *out = b;
        return 0;
    }
    rc = store_get(l->below, name, &b);
    if (rc != 0)
        return rc;
    record_cache_put(l->cache, b, hash);
    *out = b;
    return 0;
}

/* A miss on its way to the backend: who to tell, and the hash to cache the answer under. */
struct layer_miss {
    struct cache_layer *l;
    store_get_done_fn done;
    void *arg;
    uint64_t hash;
};

static void layer_got(void *arg, int rc, struct store_book *b, const struct store_damage *damage)
{
    struct layer_miss m = *(struct layer_miss *)arg;
    free(arg);
    if (rc == 0)
        record_cache_put(m.l->cache, b, m.hash);
    m.done(m.arg, rc, b, damage);
}

static void layer_get_async(struct store *s, const char *name, uint64_t deadline_ns,
                            store_get_done_fn done, void *arg)
{
    struct cache_layer *l = layer_of(s);
    struct layer_miss *m;
    struct store_book *b;
    size_t len;
    uint64_t hash;

    if (!name) {
        done(arg, BOOKS_ENOTFOUND, NULL, NULL);
        return;
    }
    len = strlen(name);
    hash = record_cache_hash(l->cache, name, len);
    b = record_cache_get(l->cache, name, len, hash);
    if (b) {
        done(arg, 0, b, NULL);
        return;
    }
    m = malloc(sizeof *m);
    if (!m) {
        done(arg, BOOKS_ENOMEM, NULL, NULL);
        return;
    }
    *m = (struct layer_miss){l, done, arg, hash};
    store_get_async(l->below, name, deadline_ns, layer_got, m);
}

/* A page answered from the cache while the backend walks its names (store_ops.list_names). */
struct cached_page {
    struct cache_layer *l;
    struct store_book **out;
    size_t n, max_bytes, bytes;
    bool full;   /* the page's byte bound is reached */
    bool missed; /* a name whose record the cache does not hold: the rest comes from the backend */
};

static bool take_cached(void *arg, const char *name, size_t len)
{
    struct cached_page *p = arg;
    struct store_book *b =
        record_cache_get(p->l->cache, name, len, record_cache_hash(p->l->cache, name, len));
    if (!b) {
        p->missed = true;
        return false;
    }
    p->out[p->n++] = b;
    if (store_page_full(p->out, p->n, p->max_bytes, &p->bytes)) {
        p->full = true;
        return false;
    }
    return true;
}

/* A page of a backend with list_names: the records the cache holds, in the backend's order, as
 * long as it holds them; from the first it does not, the rest of the page is the backend's own
 * list (its records then cached), cut by the same byte rule over the whole page. Books never
 * change once stored, so a cached record is the row's. */
static int cached_list(struct cache_layer *l, const char *after_name, size_t limit,
                       size_t max_bytes, struct store_book **out, size_t *n_out)
{
    struct cached_page p = {.l = l, .out = out, .max_bytes = max_bytes};
    int rc = l->below->ops->list_names(l->below, after_name, limit, take_cached, &p);
    size_t m = 0;

    if (rc == 0 && p.missed && !p.full && p.n < limit) {
        const char *from = p.n ? out[p.n - 1]->name : after_name;
        size_t left = max_bytes == 0 ? 0 : max_bytes > p.bytes ? max_bytes - p.bytes : 1;
        rc = store_list_bounded(l->below, from, limit - p.n, left, out + p.n, &m);
        for (size_t i = 0; rc == 0 && i < m; i++) {
            struct store_book *b = out[p.n];
            record_cache_put(l->cache, b, record_cache_hash(l->cache, b->name, b->name_len));
            if (store_page_full(out, ++p.n, max_bytes, &p.bytes)) {
                for (size_t k = i + 1; k < m; k++) /* read past the page's bound: not kept */
                    store_book_unref(out[p.n + k - i - 1]);
                break;
            }
        }
    }
    if (rc != 0) {
        for (size_t i = 0; i < p.n; i++)
            store_book_unref(out[i]);
        return rc;
    }
    *n_out = p.n;
    return 0;
}

static int layer_list(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                      struct store_book **out, size_t *n_out)
{
    struct cache_layer *l = layer_of(s);
    if (limit > 0 && l->below->ops->list_names)
        return cached_list(l, after_name, limit, max_bytes, out, n_out);
    return store_list_bounded(l->below, after_name, limit, max_bytes, out, n_out);
}

static void layer_list_async(struct store *s, const char *after_name, size_t limit,
                             size_t max_bytes, struct store_book **out, uint64_t deadline_ns,
                             store_list_done_fn done, void *arg)
{
    struct cache_layer *l = layer_of(s);
    if (limit > 0 && l->below->ops->list_names && !l->below->ops->list_async) {
        /* A local backend's list answers inline anyway (store_list_async). */
        size_t n = 0;
        int rc = cached_list(l, after_name, limit, max_bytes, out, &n);
        done(arg, rc, rc == 0 ? n : 0, NULL);
        return;
    }
    store_list_async(l->below, after_name, limit, max_bytes, out, deadline_ns, done, arg);
}

static void layer_create(struct store *s, const struct store_create_req *req,
                         store_create_done_fn done, void *arg)
{
    store_create(layer_of(s)->below, req, done, arg);
}

static void layer_watch(struct store *s, store_state_fn fn, void *arg)
{
    store_watch(layer_of(s)->below, fn, arg);
}

static void layer_drain(struct store *s) { store_drain(layer_of(s)->below); }

static void layer_close(struct store *s)
{
    struct cache_layer *l = layer_of(s);
    struct record_cache_stats st;

    store_close(l->below); /* its threads may still answer reads through layer_got */
    record_cache_stats(l->cache, &st);
    log_msg(LOG_INFO, "store %s: record cache closing; %llu hits, %llu misses, %llu bytes held",
            l->base.display, (unsigned long long)st.hits, (unsigned long long)st.misses,
            (unsigned long long)st.bytes);
    record_cache_free(l->cache);
    free(l);
}

static const struct store_ops layer_ops = {
    .scheme = NULL, /* the backend's: record_cache_layer_new() */
    .get = layer_get,
    .list = layer_list,
    .create = layer_create,
    .close = layer_close,
    .get_async = layer_get_async,
    .list_async = layer_list_async,
    .watch = layer_watch,
    .drain = layer_drain,
};

int record_cache_layer_new(struct store *below, size_t budget_bytes, struct store **out)
{
    struct cache_layer *l = calloc(1, sizeof *l);

    if (!l || record_cache_new(budget_bytes, &l->cache) != 0) {
        free(l);
        store_close(below);
        return BOOKS_ENOMEM;
    }
    l->ops = layer_ops;
    l->ops.scheme = below->ops->scheme;
    l->base.ops = &l->ops;
    l->below = below;
    memcpy(l->base.display, below->display, sizeof l->base.display);
    memcpy(l->base.dataset_key, below->dataset_key, sizeof l->base.dataset_key);
    *out = &l->base;
    return 0;
}

static bool is_layer(const struct store *s) { return s && s->ops->close == layer_close; }

struct store *record_cache_below(struct store *s)
{
    return is_layer(s) ? layer_of(s)->below : s;
}

int record_cache_layer_stats(struct store *s, struct record_cache_stats *out)
{
    if (!is_layer(s) || !out)
        return BOOKS_EINVAL;
    record_cache_stats(layer_of(s)->cache, out);
    return 0;
}
