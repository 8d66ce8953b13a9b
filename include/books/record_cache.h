/* record_cache.h: a bounded, sharded LRU cache of book records by resource name, and the one
 * layer that puts it above a store backend whose reads cost a query (sqlite:, postgresql:,
 * firestore:): store_open() builds the layer (record_cache_layer_new()) when the backend asks for
 * a cache (struct store.cache_bytes, from its URI's cache_mb); no backend calls the cache itself.
 * A book never changes and is never deleted once committed, so a cached record stays true for the
 * store's life: the cache needs no invalidation, only a bound. Reads fill it (a get that found its
 * book), creates do not, so a burst of creates does not push out what readers use. It never
 * touches a database, gRPC or protobuf.
 *
 * Thread safety: every function may be called from any thread at once, except
 * record_cache_free() and the layer's close, which must be the last calls. Each shard has its own
 * mutex, held only to find or link a node; records are released outside it. */
#ifndef BOOKS_RECORD_CACHE_H
#define BOOKS_RECORD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "books/store.h"

struct record_cache;

/* Counters since the cache was made. */
struct record_cache_stats {
    uint64_t hits;   /* record_cache_get() calls that found the record */
    uint64_t misses; /* record_cache_get() calls that did not */
    uint64_t bytes;  /* what the cached records and their nodes take now, in bytes */
};

/* Makes a cache that keeps at most `budget_bytes` of records (each counted as its
 * store_book.size_bytes plus the cache's node). A budget of 0 makes a cache that keeps nothing
 * (every get misses, every put is a no-op). The hash is seeded with random bytes, so clients, who
 * choose book ids, cannot precompute names that collide. Returns 0 or BOOKS_ENOMEM; the caller
 * frees *out with record_cache_free(). */
int record_cache_new(size_t budget_bytes, struct record_cache **out);

/* Releases every cached record (the cache's references) and the cache. NULL is a no-op. */
void record_cache_free(struct record_cache *c);

/* True when the cache can keep anything (its budget is not 0). */
bool record_cache_enabled(const struct record_cache *c);

/* The cache's hash of name[0..len): compute it once per lookup and pass it to get and put. */
uint64_t record_cache_hash(const struct record_cache *c, const char *name, size_t len);

/* A new reference to the cached record named name[0..len) (hash from record_cache_hash()), which
 * the caller drops with store_book_unref(); NULL when it is not cached. Marks it recently used. */
struct store_book *record_cache_get(struct record_cache *c, const char *name, size_t len,
                                    uint64_t hash);

/* Caches `b` (the cache takes its own reference; the caller keeps its own) unless its name is
 * cached already or it is larger than a shard's share of the budget; evicts the least recently
 * used records of its shard to stay within the budget. Out of memory: `b` is simply not cached. */
void record_cache_put(struct record_cache *c, struct store_book *b, uint64_t hash);

/* Copies the counters (each read atomically). */
void record_cache_stats(const struct record_cache *c, struct record_cache_stats *out);

/* ---- the layer ---------------------------------------------------------------------------------- */

/* Makes a store that serves `below` (a backend just opened; the layer owns it from now on, also on
 * failure, when it is closed) through a cache of `budget_bytes` (> 0): a get that hits answers
 * inline on the caller's thread without touching the backend; a get that misses asks the backend
 * (asynchronously when it has get_async) and caches what it found; lists, creates, watch and drain
 * pass through. display and dataset_key are the backend's. Returns 0 with *out (close it with
 * store_close(), which closes the backend, then frees the cache and logs its counters), or
 * BOOKS_ENOMEM. */
int record_cache_layer_new(struct store *below, size_t budget_bytes, struct store **out);

/* The backend below a cache layer (or `s` itself when it is not one): for a backend's own
 * diagnostics (store_sqlite_stats()). Any thread. */
struct store *record_cache_below(struct store *s);

/* The counters of the cache layer `s`: 0, or BOOKS_EINVAL when `s` is not a cache layer. */
int record_cache_layer_stats(struct store *s, struct record_cache_stats *out);

#endif
