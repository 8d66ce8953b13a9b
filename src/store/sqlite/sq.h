/* sq.h: what the files of the durable `sqlite:PATH` backend (alias `file:PATH`, on Debian's
 * libsqlite3) share; private to src/store/sqlite/.
 *   db.c     small SQLite helpers: the one result-code mapping, one-shot queries, statements
 *   store.c  the open store: the read pool, get and list, creates through the commit pipeline,
 *            checkpoints, close and statistics
 *   open.c   store_sqlite_open(): URI parameters, paths, the lock, inspection of an existing file,
 *            schema and migrations, the write connection
 *
 * The promise: a create whose done() reported 0 is in a committed, fsync'ed transaction before
 * done() runs, so it survives kill -9, a crash and (with synchronous=full) a power cut; a create
 * that reported an error left either the whole book or nothing, because every book is one row
 * written inside a transaction.
 *
 * On disk: one SQLite database in WAL mode, application_id BOOKS_APPLICATION_ID (so a file that
 * is not ours is told apart precisely), schema versioned with user_version and brought forward by
 * the `migrations` table of open.c, one step per version, all of them in one transaction. Tables
 * (both STRICT, both WITHOUT ROWID so the primary key is the clustered b-tree and a lookup or
 * keyset page is one index descent):
 *   books(name TEXT PRIMARY KEY,    -- the resource name, "books/{book}"
 *         book BLOB,                -- the encoded books.v1.Book but its name (store.h: the body)
 *         request_id TEXT,          -- AIP-155: store.h's request id model, on the book's row
 *         request_fingerprint BLOB, --   its fingerprint
 *         request_hash BLOB,        --   363d47a's fingerprint, only for ids that version stored
 *         created_at INTEGER)       --   when it was stored, seconds since the epoch
 *   meta(key TEXT PRIMARY KEY, value BLOB)   -- 'dataset_key': 32 random bytes, made once
 * The book is kept as the proto encodes it, so a field added to books.proto is stored, and read
 * back, with no change here; the row shows by hand with `sqlite3 PATH "SELECT hex(book) FROM
 * books WHERE name = 'books/x'" | xxd -r -p | protoc --decode=books.v1.Book ...` (README). A
 * request_id's row is found by a partial unique index; the committer clears the request columns
 * of rows older than the retention (store_limits.request_ttl_s).
 * Versions: 1 and 2 are 363d47a's (display_name, publisher and authors columns); 3 is this layout,
 * which version 2 databases reach by a migration that encodes each row's book from those columns
 * (legacy.h) in the migration's one transaction. Only one process opens a database at a time (the
 * lock), so no older server reads it meanwhile; after the migration an older server refuses it
 * ("written by a newer books-server").
 * Order: the BINARY collation compares with memcmp() and then by length, which for NUL-free UTF-8
 * is exactly strcmp() order, the store contract's (the database encoding is fixed to UTF-8 at
 * creation and checked at open: in UTF-16 BINARY would order differently).
 *
 * Threads and ownership:
 *  - Creates go through the commit pipeline (commit_pipeline.h): create() queues and returns, the
 *    pipeline's committer thread calls write_batch() here with everything queued (at most
 *    BATCH_MAX creates: BEGIN IMMEDIATE, per create a look-up of its request id and one INSERT,
 *    COMMIT, one fsync of the log for the whole batch), and its answerer thread calls each done()
 *    after the commit. The committer thread owns the write connection and its statements; no other
 *    thread touches them between store_sqlite_open() and close.
 *  - Each create's outcome is its own statement's: a name that is taken, also by an earlier create
 *    of the same batch, fails that INSERT alone (SQLite undoes just the statement): BOOKS_EEXIST;
 *    a request id found (also one an earlier create of the batch stored) answers the create by
 *    store_request_matches(); a row the database's own rules refuse fails alone
 *    (BOOKS_EREFUSED). A failure of the batch before COMMIT rolls it all back and every create in
 *    it gets the mapped error (BOOKS_ENOSPC when full, BOOKS_EIO, ...): nothing of it was stored.
 *    A COMMIT that fails with an I/O error (an fsync of the log that failed) may have left a
 *    commit record that recovery finds later: those creates are answered BOOKS_EUNKNOWN. The next
 *    batch starts afresh, so the store recovers when space returns. group_commit=off sets the
 *    batch bound to 1.
 *  - Reads use a pool of read-only connections (WAL: readers never block the writer or each
 *    other), each with its get/list statements prepared once; a read answers inline, on the
 *    caller's thread. A reader takes an idle connection
 *    from the pool's free list (the pool mutex guards only that list), uses it without any lock,
 *    resets its statement (ending the read transaction, so checkpoints are not held back) and
 *    gives it back. The pool opens connections lazily up to READERS_MAX, then makes callers wait.
 *    Connections are opened SQLITE_OPEN_NOMUTEX: each is used by one thread at a time, handed
 *    over through a mutex.
 *  - Records come out of store_book_new() (one allocation per book: its name and the row's book
 *    blob, copied). The pipeline keeps a reference while a create is queued; the record cache
 *    above this store (record_cache.h, cache_mb) keeps the books read.
 *  - Checkpoints (copying the log into the database file) are the committer's too, between
 *    batches (the pipeline's idle hook, after a batch is handed over), every CHECKPOINT_FRAMES
 *    pages (SQLite's automatic checkpoint would run inside COMMIT and delay a whole batch's
 *    answers).
 *  - close(): stops the pipeline (everything queued is committed and answered), closes the
 *    readers, checkpoints (TRUNCATE), closes the writer, then drops the lock.
 */
#ifndef BOOKS_SQ_H
#define BOOKS_SQ_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "books/commit_pipeline.h"
#include "books/store.h"

/* "Book" in ASCII: PRAGMA application_id of every books database. */
#define BOOKS_APPLICATION_ID 0x426f6f6b
/* PRAGMA user_version this binary writes and reads; see `migrations` in open.c. */
#define SCHEMA_VERSION 3
/* How often the committer forgets request_ids older than the retention, seconds, and at most how
 * many per pass (the pass runs between batches: it must stay short). */
#define REQUEST_PURGE_EVERY_S 60
#define REQUEST_PURGE_MAX 1000
/* Most creates in one transaction: bounds the time one batch holds the write lock and the delay
 * before its first done(). 1024 small books are a few hundred KiB of log. */
#define BATCH_MAX 1024
/* Most read connections (each with its own page cache, 2 MiB by default). */
#define READERS_MAX 16
/* How long a connection retries when another one holds a lock SQLite needs (WAL recovery, or a
 * checkpoint by another process such as the sqlite3 shell). */
#define BUSY_TIMEOUT_MS 5000
/* The log is truncated back to this size after a checkpoint that emptied it. */
#define JOURNAL_SIZE_LIMIT_BYTES (64 * 1024 * 1024)
/* The committer copies the log into the database (a checkpoint) once this many pages have been
 * appended since the last one: about 40 MiB with 4 KiB pages. SQLite's default, 1000, measured
 * 20% fewer creates per second: random book ids scatter inserts over the whole b-tree, and a
 * larger interval lets one checkpoint write a page touched by many transactions once. */
#define CHECKPOINT_FRAMES 10000
/* Page cache of the write connection (KiB): keeps the b-tree's interior and most leaves in
 * memory while inserts land at random places. Read connections keep SQLite's default. */
#define WRITER_CACHE_KIB 16384
#define MAX_SIZE_MB_LIMIT 1048576
#define CACHE_MB_LIMIT 65536
/* Default budget of the record cache above the store (record_cache.h), MiB, as URI text. */
#define CACHE_MB_DEFAULT "16"

/* ---- the store ------------------------------------------------------------------------------- */

struct reader {
    struct reader *next; /* in the pool's idle list */
    sqlite3 *db;
    sqlite3_stmt *get;
    sqlite3_stmt *list_first;
    sqlite3_stmt *list_after;
    sqlite3_stmt *names_first; /* store_ops.list_names */
    sqlite3_stmt *names_after;
};

struct sqlite_store {
    struct store base; /* first: a struct store * is a struct sqlite_store * */
    char *shown;       /* the path as the URI gave it: what messages name */
    char *path;        /* canonical path SQLite opens */
    char *lock_path;   /* path + "-lock" */
    int lock_fd;       /* holds flock(LOCK_EX) on lock_path for the store's life */
    size_t batch_max;  /* BATCH_MAX, or 1 with group_commit=off */

    /* Write side: owned by the pipeline's committer thread once it runs. */
    sqlite3 *writer;
    sqlite3_stmt *insert, *begin, *commit, *rollback;
    sqlite3_stmt *find_request, *purge_requests;
    uint32_t request_ttl_s;
    time_t purged_at; /* the last purge of old request_ids (committer only) */
    int wal_frames;     /* pages in the log after the last commit (committer only) */
    int wal_backfilled; /* of those, copied into the database by the last checkpoint */
    struct commit_pipeline *pipeline;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* signalled when a connection is returned or a slot frees */
    struct reader *idle;    /* guarded by pool_mu */
    size_t n_readers;       /* open or being opened; guarded by pool_mu */
};

/* The store's operations (store.c); store_sqlite_open() installs them. */
extern const struct store_ops sq_ops;

/* ---- db.c: any thread, on a connection it holds ------------------------------------------------
 */

/* The one mapping from SQLite result codes (extended or primary) to enum books_err: 0 for
 * SQLITE_OK/ROW/DONE, BOOKS_ENOSPC (FULL), BOOKS_ECORRUPT (CORRUPT, NOTADB), BOOKS_ENOMEM, else
 * BOOKS_EIO. */
int sq_map_rc(int rc);
/* Steps `st` until it stops returning rows, then resets it. Returns the last SQLite rc:
 * SQLITE_DONE on success. */
int sq_step_reset(sqlite3_stmt *st);
/* Runs one statement and reads the first column of its first row as an integer (PRAGMAs,
 * counts). SQLITE_OK, SQLITE_ERROR when there is no row, or SQLite's rc. */
int sq_query_int(sqlite3 *db, const char *sql, long long *out);
/* Like sq_query_int for text, copied NUL-terminated into out (len bytes, truncated). */
int sq_query_text(sqlite3 *db, const char *sql, char *out, size_t len);
/* sqlite3_exec() without callbacks: SQLITE_OK or SQLite's rc. */
int sq_exec(sqlite3 *db, const char *sql);
/* Prepares a statement kept for the connection's life (SQLITE_PREPARE_PERSISTENT); the caller
 * finalizes it. SQLite's rc. */
int sq_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out);

/* ---- store.c -----------------------------------------------------------------------------------
 */

/* Opens one read-only connection with its prepared statements into *out (the caller owns it until
 * it is in the pool). 0 or a books_err; msg (msglen bytes) gets SQLite's text. Any thread. */
int sq_reader_open(struct sqlite_store *ss, struct reader **out, char *msg, size_t msglen);
/* commit_backend.write_batch (commit_pipeline.h): one transaction for items[0..n). Committer
 * thread only. */
int sq_write_batch(void *self, struct commit_item *items, size_t n);
/* commit_backend.idle: a PASSIVE checkpoint once CHECKPOINT_FRAMES pages are in the log.
 * Committer thread only. */
void sq_maybe_checkpoint(void *self);
/* sqlite3_wal_hook() of the write connection: records the log's size. Committer thread. */
int sq_on_wal_commit(void *arg, sqlite3 *db, const char *name, int n_frames);
/* Frees what store_sqlite_open() built, in reverse, and is safe on a partly built store (the
 * pipeline must be stopped or never started). `checkpoint`: fold the log into the database
 * first. Start-up or closing thread only. */
void sq_destroy(struct sqlite_store *ss, bool checkpoint);

#endif
