/* store_sqlite.h: the durable `sqlite:PATH` backend (src/store/sqlite/). Callers use it through
 * store.h like any backend; this header only adds what store.c's scheme table and the tests need:
 * the opener, counters (for diagnostics and for the tests that group commit batches and that the
 * record cache is used), and the list queries' SQL (so a test can EXPLAIN them). Nothing here may
 * be used to bypass the store interface for reads or writes. */
#ifndef BOOKS_STORE_SQLITE_H
#define BOOKS_STORE_SQLITE_H

#include <stdint.h>

#include "books/store.h"

/* Opens the store from the part of the URI after "sqlite:" (or its alias "file:"):
 * "PATH[?name=value[&name=value...]]", PATH taken literally up to the first '?'. Parameters:
 *   synchronous=full|normal  full (default): a create is acknowledged once its transaction is in
 *                            the write-ahead log and fsync'ed; survives kill -9, a kernel crash and
 *                            a power cut. normal: not fsync'ed at commit; survives a process crash
 *                            (kill -9), not a power cut or a kernel crash.
 *   group_commit=on|off      on (default): creates queued while a commit runs share the next
 *                            transaction and its one fsync. off: one transaction and fsync per
 *                            create (for comparison in benchmarks).
 *   max_size_mb=N            caps the database file at N MiB (1..1048576; PRAGMA max_page_count);
 *                            creates beyond it fail with BOOKS_ENOSPC, reads keep working. Default:
 *                            no cap beyond the disk.
 *   cache_mb=N               memory for the record cache above the store (record_cache.h:
 *                            0..65536, default 16; 0: none). Books never change once stored, so
 *                            the cache never goes stale; a cached GetBook does not touch SQLite.
 * Beside PATH the store keeps PATH-wal and PATH-shm (SQLite's) and PATH-lock (an flock(2) that
 * keeps a second books-server off the database; removed at close, left by kill -9, harmless).
 * Returns 0, BOOKS_EINVAL (bad URI; the message names the parameter), BOOKS_EIO (cannot open,
 * directory or file not writable, in use by another process), BOOKS_ECORRUPT (not a SQLite
 * database, not a books database, or written by a newer books-server), BOOKS_ENOMEM; err names PATH
 * and the cause. A file that is rejected is never modified. A database of an older schema is
 * migrated at open (sq.h), in one transaction, and logged. */
int store_sqlite_open(const char *rest, const struct store_limits *limits, struct store **out,
                      char *err, size_t errlen);

/* Counters since the store was opened. */
struct store_sqlite_stats {
    uint64_t transactions; /* write transactions begun: one per batch of creates */
    uint64_t commits;   /* of those, committed (each one fsync of the log with synchronous=full) */
    uint64_t rollbacks; /* of those, rolled back after an error (every create in it failed) */
    uint64_t books_written; /* books inserted by committed transactions */
    uint64_t largest_batch; /* most creates in one transaction */
    uint64_t cache_hits;    /* gets answered by the record cache above the store (0: no cache) */
    uint64_t cache_misses;  /* gets that had to read the book from SQLite */
};

/* Copies the counters (a consistent-enough snapshot: each counter is read atomically). `s` is what
 * store_open() returned (the cache layer above the store, or the store itself). Returns 0, or
 * BOOKS_EINVAL when `s` is not a sqlite store. Any thread. */
int store_sqlite_stats(struct store *s, struct store_sqlite_stats *out);

/* The reads behind store_get() and store_list() (exposed so the tests can EXPLAIN them): the row's
 * book is its encoded Book but the name (sq.h). BINARY collation (memcmp, then length) on UTF-8
 * text is strcmp order, as the store contract requires. */
#define STORE_SQLITE_GET_SQL "SELECT book FROM books WHERE name = ?1"
#define STORE_SQLITE_LIST_FIRST_SQL "SELECT name, book FROM books ORDER BY name LIMIT ?1"
#define STORE_SQLITE_LIST_AFTER_SQL                                                                \
    "SELECT name, book FROM books WHERE name > ?1 ORDER BY name LIMIT ?2"
/* store_ops.list_names: the same walk, names only (the record cache holds the books). */
#define STORE_SQLITE_NAMES_FIRST_SQL "SELECT name FROM books ORDER BY name LIMIT ?1"
#define STORE_SQLITE_NAMES_AFTER_SQL                                                               \
    "SELECT name FROM books WHERE name > ?1 ORDER BY name LIMIT ?2"

#endif
