/* store_postgres.h: the `postgresql://` backend (src/store/postgres/), for a deployment whose books
 * must outlive any one instance and be shared by many: Cloud SQL for PostgreSQL on Cloud Run,
 * AlloyDB, or any engine that speaks PostgreSQL's protocol and SQL (see README, "PostgreSQL").
 * Callers use it through store.h like any backend; this header adds the opener (for store.c's
 * scheme table) and counters for diagnostics and tests. */
#ifndef BOOKS_STORE_POSTGRES_H
#define BOOKS_STORE_POSTGRES_H

#include <stdint.h>

#include "books/store.h"

/* Opens the store from a libpq connection URI, `uri` being everything after "postgresql:" or
 * "postgres:" ("//user@host:5432/db?sslmode=require", or "///db?host=/cloudsql/P:R:I" for Cloud
 * Run's Cloud SQL socket). libpq reads the URI exactly as it documents (host, port, dbname, user,
 * sslmode, ...; the password from the URI, PGPASSWORD or a passfile), except for this store's own
 * parameters, which are taken out before libpq sees the rest:
 *   pool=N                  read connections, each with its thread (1..64, default 2)
 *   statement_timeout_ms=N  PostgreSQL's statement_timeout on every connection (0..3600000,
 *                           default 10000; 0: none): no query runs longer, whatever the caller
 *   startup_timeout_s=N     how long to keep retrying to connect at start-up (0..3600, default
 *                           30), with backoff, before giving up
 *   cache_mb=N              memory for the cache of book records (0..65536, default 16)
 *   group_commit=on|off     on (default): creates queued meanwhile share one transaction; off:
 *                           one transaction per create (for comparison)
 * Start-up (blocking, in the caller's thread): connect (with retries), bring the schema to this
 * binary's version under an advisory lock, open the read connections, start the threads.
 * Returns 0; BOOKS_EINVAL (a bad parameter); BOOKS_EUNAVAIL (the database cannot be reached
 * within startup_timeout_s: the message names the server, never the password); BOOKS_ECORRUPT (a
 * newer schema, or tables of another application); BOOKS_EIO; BOOKS_ENOMEM. */
int store_postgres_open(const char *uri, const struct store_limits *limits, struct store **out,
                        char *err, size_t errlen);

/* Counters since the store was opened. */
struct store_postgres_stats {
    uint64_t read_round_trips; /* pipelines of reads sent (each one Sync) */
    uint64_t reads;            /* get and list queries sent */
    uint64_t cancels;          /* queries cancelled in the database because every caller's
                                * deadline had passed */
    uint64_t reconnects;       /* connections re-established after being lost */
    uint64_t transactions;     /* write transactions (batches of creates) */
    uint64_t books_written;    /* books inserted by committed transactions */
    uint64_t largest_batch;    /* most creates in one transaction */
    uint64_t cache_hits, cache_misses;
};

/* Copies the counters. Returns 0, or BOOKS_EINVAL when `s` is not a postgresql store. Any
 * thread. */
int store_postgres_stats(struct store *s, struct store_postgres_stats *out);

/* The queries, exposed for tests (e.g. to EXPLAIN them). */
#define STORE_POSTGRES_GET_SQL                                                                     \
    "SELECT name, display_name, publisher, authors FROM books WHERE name = $1"
#define STORE_POSTGRES_LIST_FIRST_SQL                                                              \
    "SELECT name, display_name, publisher, authors FROM books ORDER BY name LIMIT $1"
#define STORE_POSTGRES_LIST_AFTER_SQL                                                              \
    "SELECT name, display_name, publisher, authors FROM books WHERE name > $1 ORDER BY name "      \
    "LIMIT $2"

#endif
