/* store_sqlite.c: the durable `sqlite:PATH` backend (alias `file:PATH`), on Debian's libsqlite3.
 *
 * The promise: a create whose done() reported 0 is in a committed, fsync'ed transaction before
 * done() runs, so it survives kill -9, a crash and (with synchronous=full) a power cut; a create
 * that reported an error left either the whole book or nothing, because every book is one row
 * written inside a transaction.
 *
 * On disk: one SQLite database in WAL mode, application_id BOOKS_APPLICATION_ID (so a file that
 * is not ours is told apart precisely), schema versioned with user_version and brought forward by
 * the `migrations` table, one step per version. Tables (both STRICT, both WITHOUT ROWID so the
 * primary key is the clustered b-tree and a lookup or keyset page is one index descent):
 *   books(name TEXT PRIMARY KEY, display_name TEXT, publisher TEXT, authors BLOB)
 *   meta(key TEXT PRIMARY KEY, value BLOB)   -- 'dataset_key': 32 random bytes, made once
 * `authors` holds each author followed by one NUL byte ("a\0b\0"; no authors: the empty blob).
 * Store strings are C strings, so no author contains a NUL: the encoding round-trips any UTF-8,
 * commas, newlines and every other would-be separator included, and decodes without copying.
 * Order: the BINARY collation compares with memcmp() and then by length, which for NUL-free UTF-8
 * is exactly strcmp() order, the store contract's (the database encoding is fixed to UTF-8 at
 * creation and checked at open: in UTF-16 BINARY would order differently).
 *
 * Threads and ownership:
 *  - Creates go through the commit pipeline (commit_pipeline.h): create() queues and returns, the
 *    pipeline's committer thread calls write_batch() here with everything queued (at most
 *    BATCH_MAX creates: BEGIN IMMEDIATE, one INSERT per create with one prepared statement,
 *    COMMIT, one fsync of the log for the whole batch), and its answerer thread calls each done()
 *    after the commit. The committer thread owns the write connection and its statements; no other
 *    thread touches them between store_sqlite_open() and close. A duplicate name, also within one
 *    batch, fails that INSERT alone (SQLite undoes just the statement): BOOKS_EEXIST for that
 *    call. Any other failure rolls the whole batch back and every call in it gets the mapped error
 *    (BOOKS_ENOSPC when full, BOOKS_EIO, ...); the next batch starts afresh, so the store recovers
 *    when space returns. group_commit=off sets the batch bound to 1.
 *  - Reads use a pool of read-only connections (WAL: readers never block the writer or each
 *    other), each with its get/list statements prepared once. A reader takes an idle connection
 *    from the pool's free list (the pool mutex guards only that list), uses it without any lock,
 *    resets its statement (ending the read transaction, so checkpoints are not held back) and
 *    gives it back. The pool opens connections lazily up to READERS_MAX, then makes callers wait.
 *    Connections are opened SQLITE_OPEN_NOMUTEX: each is used by one thread at a time, handed
 *    over through a mutex.
 *  - Records come out of store_book_new() (one allocation per book). The pipeline keeps a
 *    reference while a create is queued, and the record cache (record_cache.h) one per cached
 *    book: books never change once committed, so a cached record never goes stale and a cached
 *    GetBook does not touch SQLite at all. Reads fill the cache, creates do not.
 *  - Checkpoints (copying the log into the database file) are the committer's too, between
 *    batches (the pipeline's idle hook, after a batch is handed over), every CHECKPOINT_FRAMES
 *    pages (SQLite's automatic checkpoint would run inside COMMIT and delay a whole batch's
 *    answers).
 *  - close(): stops the pipeline (everything queued is committed and answered), closes the
 *    readers, checkpoints (TRUNCATE), closes the writer, then drops the lock.
 *
 * Start-up never scans the table and never modifies a file it rejects: it takes the lock, reads
 * the 100-byte header itself (not SQLite at all: "not a SQLite database"), then inspects with a
 * read-only connection (application_id, user_version, encoding, tables), and only then opens
 * for writing. */
#include "books/store_sqlite.h"

#include "books/commit_pipeline.h"
#include "books/error.h"
#include "books/log.h"
#include "books/options.h"
#include "books/record_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* "Book" in ASCII: PRAGMA application_id of every books database. */
#define BOOKS_APPLICATION_ID 0x426f6f6b
/* PRAGMA user_version this binary writes and reads; see `migrations`. */
#define SCHEMA_VERSION 1
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
/* Default budget of the record cache (see "the record cache"), MiB, as URI text. */
#define CACHE_MB_DEFAULT "16"
/* Author pointers decoded on the stack before falling back to malloc. */
#define AUTHORS_ON_STACK 32

static const char SQLITE_MAGIC[16] = "SQLite format 3"; /* and its NUL: 16 bytes */

/* ---- settings from the URI (kept apart from the runtime, as a table) ------------------------- */

struct sqlite_options {
    char *path;       /* owned */
    int sync_normal;  /* synchronous=normal (1) or full (0) */
    int group_commit; /* on (1) or off (0) */
    int max_size_mb;  /* 0: no cap */
    int cache_mb;
};

#define URI_FIELD(f) offsetof(struct sqlite_options, f)

static const struct opt_choice synchronous_values[] = {{"full", 0}, {"normal", 1}, {NULL, 0}};
static const struct opt_choice on_off[] = {{"on", 1}, {"off", 0}, {NULL, 0}};

/* The parameters after '?', walked by opt_parse_query() (options.h). Values are case-insensitive
 * words (RFC 3986 style) or decimal MiB. */
static const struct opt uri_params[] = {
    {.name = "synchronous",
     .set = opt_set_choice,
     .offset = URI_FIELD(sync_normal),
     .choices = synchronous_values,
     .def = "full"},
    {.name = "group_commit",
     .set = opt_set_choice,
     .offset = URI_FIELD(group_commit),
     .choices = on_off,
     .def = "on"},
    {.name = "max_size_mb",
     .set = opt_set_int,
     .offset = URI_FIELD(max_size_mb),
     .min = 1,
     .max = MAX_SIZE_MB_LIMIT}, /* no default: no cap */
    {.name = "cache_mb",
     .set = opt_set_int,
     .offset = URI_FIELD(cache_mb),
     .min = 0,
     .max = CACHE_MB_LIMIT,
     .def = CACHE_MB_DEFAULT},
};

#define N_URI_PARAMS (sizeof(uri_params) / sizeof(uri_params[0]))

/* ---- the store ------------------------------------------------------------------------------- */

struct reader {
    struct reader *next; /* in the pool's idle list */
    sqlite3 *db;
    sqlite3_stmt *get;
    sqlite3_stmt *list_first; /* whole rows: without the cache */
    sqlite3_stmt *list_after;
    sqlite3_stmt *names_first; /* names only: with the cache, rows come from it or from `get` */
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
    char *blob_buf; /* authors blob scratch (committer only) */
    size_t blob_cap;
    int wal_frames;     /* pages in the log after the last commit (committer only) */
    int wal_backfilled; /* of those, copied into the database by the last checkpoint */
    struct commit_pipeline *pipeline;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* signalled when a connection is returned or a slot frees */
    struct reader *idle;    /* guarded by pool_mu */
    size_t n_readers;       /* open or being opened; guarded by pool_mu */

    struct record_cache *cache;
};

static const struct store_ops sqlite_ops;

/* The one mapping from SQLite result codes to enum books_err. */
static int map_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_FULL:
        return BOOKS_ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return BOOKS_ECORRUPT;
    case SQLITE_NOMEM:
        return BOOKS_ENOMEM;
    default: /* SQLITE_BUSY, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_READONLY, ... */
        return BOOKS_EIO;
    }
}

/* Runs a statement that returns no rows (or ignores them) and resets it. Returns its SQLite rc:
 * SQLITE_DONE on success. */
static int step_reset(sqlite3_stmt *st)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    return rc;
}

/* Runs one SQL statement on `db` and reads its first column as an integer (PRAGMAs, counts).
 * Returns SQLITE_OK or an error rc. */
static int query_int(sqlite3 *db, const char *sql, long long *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Like query_int for a text result, copied into out (len bytes). */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);

        snprintf(out, len, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Global SQLite configuration, once per process and before SQLite initialises: per-allocation
 * memory statistics take a process-wide mutex on every malloc, which every reader and the writer
 * would contend on; we never read them. sqlite3_config() fails harmlessly (SQLITE_MISUSE) if
 * something else in the process initialised SQLite first. */
static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;

static void sqlite_configure(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* ---- reading rows ---------------------------------------------------------------------------- */

/* Builds a record from the current row of `st`. Columns: [name,] display_name, publisher,
 * authors; `name` NULL means the row has the name column first. */
static int row_to_book(sqlite3_stmt *st, const char *name, struct store_book **out)
{
    const char *stack_authors[AUTHORS_ON_STACK];
    const char **authors = stack_authors;
    const char *display, *publisher, *blob;
    size_t len, n_authors = 0;
    int col = 0;
    int rc;

    if (!name)
        name = (const char *)sqlite3_column_text(st, col++);
    display = (const char *)sqlite3_column_text(st, col);
    publisher = (const char *)sqlite3_column_text(st, col + 1);
    blob = sqlite3_column_blob(st, col + 2);
    len = (size_t)sqlite3_column_bytes(st, col + 2);
    if (!name || !display || !publisher || (len > 0 && !blob)) {
        /* NOT NULL columns read as NULL: either out of memory converting, or damaged data. */
        return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM ? BOOKS_ENOMEM
                                                                      : BOOKS_ECORRUPT;
    }
    if (len > 0 && blob[len - 1] != '\0')
        return BOOKS_ECORRUPT;
    /* The blob ends with a NUL (checked above), so memchr always finds one. */
    for (const char *p = blob, *end = blob + len; p < end;
         p = (const char *)memchr(p, 0, (size_t)(end - p)) + 1)
        n_authors++;
    if (n_authors > AUTHORS_ON_STACK) {
        authors = malloc(n_authors * sizeof(*authors));
        if (!authors)
            return BOOKS_ENOMEM;
    }
    /* Pointers into SQLite's copy of the blob, valid until the next step or reset; the record
     * copies them. */
    for (size_t i = 0, off = 0; i < n_authors; i++) {
        authors[i] = blob + off;
        off += strlen(blob + off) + 1;
    }
    rc = store_book_new(name, display, authors, n_authors, publisher, out);
    if (authors != stack_authors)
        free(authors);
    return rc;
}

/* ---- the read connection pool ---------------------------------------------------------------- */

static void reader_close(struct reader *r)
{
    if (!r)
        return;
    sqlite3_finalize(r->get);
    sqlite3_finalize(r->list_first);
    sqlite3_finalize(r->list_after);
    sqlite3_finalize(r->names_first);
    sqlite3_finalize(r->names_after);
    sqlite3_close(r->db);
    free(r);
}

static int prepare_persistent(sqlite3 *db, const char *sql, sqlite3_stmt **out)
{
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
}

/* Opens one read-only connection with its statements. 0 or a books_err; msg gets SQLite's text. */
static int reader_open(struct sqlite_store *ss, struct reader **out, char *msg, size_t msglen)
{
    struct reader *r = calloc(1, sizeof(*r));
    int rc;

    if (!r) {
        books_format_err(msg, msglen, "out of memory");
        return BOOKS_ENOMEM;
    }
    rc = sqlite3_open_v2(ss->path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(r->db, 1);
        sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);
        rc = prepare_persistent(
            r->db, "SELECT display_name, publisher, authors FROM books WHERE name = ?1", &r->get);
    }
    if (rc == SQLITE_OK)
        rc = prepare_persistent(r->db, STORE_SQLITE_LIST_FIRST_SQL, &r->list_first);
    if (rc == SQLITE_OK)
        rc = prepare_persistent(r->db, STORE_SQLITE_LIST_AFTER_SQL, &r->list_after);
    if (rc == SQLITE_OK)
        rc = prepare_persistent(r->db, STORE_SQLITE_NAMES_FIRST_SQL, &r->names_first);
    if (rc == SQLITE_OK)
        rc = prepare_persistent(r->db, STORE_SQLITE_NAMES_AFTER_SQL, &r->names_after);
    if (rc != SQLITE_OK) {
        books_format_err(msg, msglen, "%s", r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        reader_close(r);
        return map_sqlite(rc);
    }
    *out = r;
    return 0;
}

/* Takes an idle read connection, opening one when none is idle and fewer than READERS_MAX
 * exist, else waiting for one. NULL with *rc set when a new connection cannot be opened. */
static struct reader *reader_acquire(struct sqlite_store *ss, int *rc)
{
    struct reader *r;
    char msg[128];

    pthread_mutex_lock(&ss->pool_mu);
    for (;;) {
        if (ss->idle) {
            r = ss->idle;
            ss->idle = r->next;
            pthread_mutex_unlock(&ss->pool_mu);
            return r;
        }
        if (ss->n_readers < READERS_MAX)
            break;
        pthread_cond_wait(&ss->pool_cv, &ss->pool_mu);
    }
    ss->n_readers++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&ss->pool_mu);

    *rc = reader_open(ss, &r, msg, sizeof(msg));
    if (*rc == 0)
        return r;
    log_msg(LOG_WARNING, "sqlite store \"%s\": cannot open a read connection: %s", ss->shown, msg);
    pthread_mutex_lock(&ss->pool_mu);
    ss->n_readers--;
    pthread_cond_signal(&ss->pool_cv);
    pthread_mutex_unlock(&ss->pool_mu);
    return NULL;
}

static void reader_release(struct sqlite_store *ss, struct reader *r)
{
    pthread_mutex_lock(&ss->pool_mu);
    r->next = ss->idle;
    ss->idle = r;
    pthread_cond_signal(&ss->pool_cv);
    pthread_mutex_unlock(&ss->pool_mu);
}

/* ---- get, list ------------------------------------------------------------------------------- */

/* Reads the book `name` (len bytes, NUL-terminated) with r->get. Returns 0, BOOKS_ENOTFOUND, or
 * another books_err. */
static int reader_fetch(struct reader *r, const char *name, size_t len, struct store_book **out)
{
    int rc = sqlite3_bind_text(r->get, 1, name, (int)len, SQLITE_STATIC);
    int step;

    if (rc != SQLITE_OK)
        rc = map_sqlite(rc);
    else if ((step = sqlite3_step(r->get)) == SQLITE_ROW)
        rc = row_to_book(r->get, name, out);
    else
        rc = step == SQLITE_DONE ? BOOKS_ENOTFOUND : map_sqlite(step);
    /* Ends the read transaction at once (unless a list holds it), so checkpoints go on. */
    sqlite3_reset(r->get);
    return rc;
}

static int sqlite_get(struct store *s, const char *name, struct store_book **out)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    struct store_book *b = NULL;
    struct reader *r;
    size_t len;
    uint64_t hash = 0;
    int rc;

    if (!name)
        return BOOKS_ENOTFOUND;
    len = strlen(name);
    if (len > INT_MAX)
        return BOOKS_ENOTFOUND;
    if (record_cache_enabled(ss->cache)) {
        hash = record_cache_hash(ss->cache, name, len);
        b = record_cache_get(ss->cache, name, len, hash);
        if (b) {
            *out = b;
            return 0;
        }
    }
    r = reader_acquire(ss, &rc);
    if (!r)
        return rc;
    rc = reader_fetch(r, name, len, &b);
    reader_release(ss, r);
    if (rc != 0)
        return rc;
    if (record_cache_enabled(ss->cache))
        record_cache_put(ss->cache, b, hash);
    *out = b;
    return 0;
}

/* With the cache, the page's names come from SQLite (one walk of the primary key in a single
 * read transaction, so the page is one consistent snapshot) and each book from the cache, or on a
 * miss from `get` inside the same transaction. Without it, whole rows come from the walk. */
static int sqlite_list(struct store *s, const char *after_name, size_t limit,
                       struct store_book **out, size_t *n_out)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    sqlite3_int64 lim = limit > (size_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)limit;
    bool cached = record_cache_enabled(ss->cache);
    struct reader *r;
    sqlite3_stmt *st;
    size_t n = 0;
    int rc, step = SQLITE_DONE;

    if (limit == 0) {
        *n_out = 0;
        return 0;
    }
    r = reader_acquire(ss, &rc);
    if (!r)
        return rc;
    /* Two statements rather than `name > ''`: the contract lists from the very first name when
     * after_name is empty, and the empty string is a valid (if odd) name. */
    if (!after_name || after_name[0] == '\0') {
        st = cached ? r->names_first : r->list_first;
        rc = sqlite3_bind_int64(st, 1, lim);
    } else {
        st = cached ? r->names_after : r->list_after;
        rc = sqlite3_bind_text(st, 1, after_name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 2, lim);
    }
    rc = map_sqlite(rc);
    while (rc == 0 && n < limit && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (!cached) {
            rc = row_to_book(st, NULL, &out[n]);
        } else {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            size_t len = (size_t)sqlite3_column_bytes(st, 0);
            uint64_t hash;

            if (!name) {
                rc = BOOKS_ECORRUPT;
                break;
            }
            hash = record_cache_hash(ss->cache, name, len);
            out[n] = record_cache_get(ss->cache, name, len, hash);
            if (!out[n]) {
                rc = reader_fetch(r, name, len, &out[n]);
                if (rc == BOOKS_ENOTFOUND)
                    rc = BOOKS_ECORRUPT; /* listed, then not found in the same snapshot */
                if (rc == 0)
                    record_cache_put(ss->cache, out[n], hash);
            }
        }
        if (rc == 0)
            n++;
    }
    if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = map_sqlite(step);
    sqlite3_reset(st);
    reader_release(ss, r);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            store_book_unref(out[i]);
        return rc;
    }
    *n_out = n;
    return 0;
}

/* ---- create: through the commit pipeline ------------------------------------------------------ */

static void sqlite_create(struct store *s, struct store_book *book, store_create_done_fn done,
                          void *arg)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;

    commit_pipeline_submit(ss->pipeline, book, done, arg);
}

/* The authors blob of `b` (see the top): *out, *len. Store records lay their strings out one after
 * another, so the blob usually is the record's own memory; otherwise it is built in blob_buf.
 * SQLITE_OK or SQLITE_NOMEM. */
static int authors_blob(struct sqlite_store *ss, const struct store_book *b, const char **out,
                        size_t *len)
{
    const char *start = b->n_authors ? b->authors[0] : "";
    size_t total = 0;
    bool contiguous = true;

    for (size_t i = 0; i < b->n_authors; i++) {
        if (b->authors[i] != start + total)
            contiguous = false;
        total += strlen(b->authors[i]) + 1;
    }
    *len = total;
    if (contiguous) {
        *out = start;
        return SQLITE_OK;
    }
    if (total > ss->blob_cap) {
        char *buf = realloc(ss->blob_buf, total);

        if (!buf)
            return SQLITE_NOMEM;
        ss->blob_buf = buf;
        ss->blob_cap = total;
    }
    total = 0;
    for (size_t i = 0; i < b->n_authors; i++) {
        size_t l = strlen(b->authors[i]) + 1;

        memcpy(ss->blob_buf + total, b->authors[i], l);
        total += l;
    }
    *out = ss->blob_buf;
    return SQLITE_OK;
}

/* One INSERT; returns its SQLite rc (SQLITE_DONE when inserted). */
static int insert_book(struct sqlite_store *ss, const struct store_book *b)
{
    sqlite3_stmt *st = ss->insert;
    const char *authors;
    size_t len;
    int rc;

    rc = authors_blob(ss, b, &authors, &len);
    /* SQLITE_STATIC: the strings outlive the step (the queue holds a reference to the record).
     * A zero-length blob needs a non-NULL pointer, or SQLite binds NULL. */
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, b->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, b->display_name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, b->publisher, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob64(st, 4, authors, len, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return rc;
    return step_reset(st);
}

/* commit_backend.write_batch: BEGIN IMMEDIATE, one INSERT per create with one prepared statement,
 * COMMIT (with synchronous=full, one fsync of the log for the whole batch). A duplicate name, also
 * within the batch, fails that INSERT alone (SQLite undoes just the statement). Any other failure
 * rolls the whole batch back. Committer thread only. */
static int write_batch(void *self, struct commit_item *items, size_t n)
{
    struct sqlite_store *ss = self;
    int fail = SQLITE_OK;
    int rc;

    rc = step_reset(ss->begin);
    if (rc != SQLITE_DONE) {
        fail = rc;
        goto failed;
    }
    for (size_t i = 0; i < n; i++) {
        rc = insert_book(ss, items[i].book);
        if (rc == SQLITE_DONE) {
            items[i].rc = 0;
        } else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
            /* Only this statement was undone; the transaction goes on. */
            items[i].rc = BOOKS_EEXIST;
        } else {
            fail = rc;
            goto failed;
        }
    }
    rc = step_reset(ss->commit);
    if (rc != SQLITE_DONE) {
        fail = rc;
        goto failed;
    }
    return 0;

failed:
    /* After SQLITE_FULL, SQLITE_IOERR or a failed COMMIT SQLite may or may not have rolled back
     * already; whatever is left of the transaction goes now. Nothing of it becomes visible. */
    if (!sqlite3_get_autocommit(ss->writer) && step_reset(ss->rollback) != SQLITE_DONE)
        log_msg(LOG_ERROR, "sqlite store \"%s\": ROLLBACK failed: %s", ss->shown,
                sqlite3_errmsg(ss->writer));
    log_msg(LOG_WARNING, "sqlite store \"%s\": %s (%d)", ss->shown, sqlite3_errstr(fail), fail);
    rc = map_sqlite(fail);
    return rc ? rc : BOOKS_EIO;
}

/* sqlite3_wal_hook: runs inside every COMMIT on the committer thread, after the log is written
 * (and fsync'ed), with the number of pages now in the log. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int n_frames)
{
    struct sqlite_store *ss = arg;

    (void)db;
    (void)name;
    if (n_frames < ss->wal_backfilled)
        ss->wal_backfilled = 0; /* the log restarted from its beginning */
    ss->wal_frames = n_frames;
    return SQLITE_OK;
}

/* Replaces SQLite's automatic checkpoint, which would run inside COMMIT and hold back every
 * done() of that batch: here it runs after the batch has been handed to the answerer, while the
 * next batch gathers. PASSIVE: never waits for readers; pages a reader still needs are copied next
 * time. */
static void maybe_checkpoint(void *self)
{
    struct sqlite_store *ss = self;
    int n_log = 0, n_ckpt = 0;
    int rc;

    if (ss->wal_frames - ss->wal_backfilled < CHECKPOINT_FRAMES)
        return;
    rc = sqlite3_wal_checkpoint_v2(ss->writer, NULL, SQLITE_CHECKPOINT_PASSIVE, &n_log, &n_ckpt);
    if (rc != SQLITE_OK) {
        /* The log still holds every committed page: nothing is lost, the file just grows. */
        log_msg(LOG_WARNING, "sqlite store \"%s\": checkpoint failed: %s", ss->shown,
                sqlite3_errmsg(ss->writer));
        ss->wal_backfilled = ss->wal_frames; /* retry after another CHECKPOINT_FRAMES pages */
        return;
    }
    ss->wal_frames = n_log;
    ss->wal_backfilled = n_ckpt;
}

/* ---- close ----------------------------------------------------------------------------------- */

static void close_writer(struct sqlite_store *ss)
{
    sqlite3_finalize(ss->insert);
    sqlite3_finalize(ss->begin);
    sqlite3_finalize(ss->commit);
    sqlite3_finalize(ss->rollback);
    ss->insert = ss->begin = ss->commit = ss->rollback = NULL;
    sqlite3_close(ss->writer); /* NULL is a no-op */
    ss->writer = NULL;
}

/* Frees what store_sqlite_open() built, in reverse; safe on a partly built store. `checkpoint`:
 * the store was open, fold the log into the database first. */
static void destroy(struct sqlite_store *ss, bool checkpoint)
{
    struct reader *r;

    while ((r = ss->idle) != NULL) {
        ss->idle = r->next;
        reader_close(r);
    }
    if (ss->writer && checkpoint) {
        /* Fold the log into the database and truncate it, so what stays on disk is one compact
         * file; closing the last connection would checkpoint too, this just makes it explicit. */
        if (exec(ss->writer, "PRAGMA wal_checkpoint(TRUNCATE)") != SQLITE_OK)
            log_msg(LOG_WARNING, "sqlite store \"%s\": checkpoint at close failed: %s", ss->shown,
                    sqlite3_errmsg(ss->writer));
    }
    close_writer(ss);
    if (ss->lock_fd >= 0) {
        /* Delete while still holding the lock (see take_lock), then release it. */
        unlink(ss->lock_path);
        close(ss->lock_fd);
    }
    free(ss->lock_path);
    record_cache_free(ss->cache);
    free(ss->blob_buf);
    pthread_cond_destroy(&ss->pool_cv);
    pthread_mutex_destroy(&ss->pool_mu);
    free(ss->path);
    free(ss->shown);
    free(ss);
}

static void sqlite_close(struct store *s)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;

    struct commit_pipeline_stats ps;
    struct record_cache_stats cs;

    /* Commits everything queued and answers it, then reports what the store did. */
    commit_pipeline_stop(ss->pipeline, &ps);
    ss->pipeline = NULL;
    record_cache_stats(ss->cache, &cs);
    log_msg(LOG_INFO,
            "sqlite store \"%s\": closing; %llu books written in %llu transactions (largest "
            "%llu, %llu rolled back); record cache: %llu hits, %llu misses",
            ss->shown, (unsigned long long)ps.books_written, (unsigned long long)ps.transactions,
            (unsigned long long)ps.largest_batch, (unsigned long long)ps.rollbacks,
            (unsigned long long)cs.hits, (unsigned long long)cs.misses);
    destroy(ss, true);
}

static const struct store_ops sqlite_ops = {
    .scheme = "sqlite",
    .get = sqlite_get,
    .list = sqlite_list,
    .create = sqlite_create,
    .close = sqlite_close,
};

int store_sqlite_stats(struct store *s, struct store_sqlite_stats *out)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;

    if (!s || s->ops != &sqlite_ops || !out)
        return BOOKS_EINVAL;
    struct commit_pipeline_stats ps = {0};
    struct record_cache_stats cs;

    if (ss->pipeline)
        commit_pipeline_stats(ss->pipeline, &ps);
    record_cache_stats(ss->cache, &cs);
    out->transactions = ps.transactions;
    out->commits = ps.commits;
    out->rollbacks = ps.rollbacks;
    out->books_written = ps.books_written;
    out->largest_batch = ps.largest_batch;
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    return 0;
}

/* ---- opening: URI, paths, lock, inspection, schema ------------------------------------------- */

/* The message of a bad parameter; p->self is the URI after "sqlite:". */
static void report_param(struct opt_parser *p, const struct opt_problem *pr)
{
    const char *rest = p->self;
    char accepted[64], names[128];
    size_t off = 0;

    if (pr->kind == OPT_UNKNOWN) {
        names[0] = '\0';
        for (size_t i = 0; i < N_URI_PARAMS && off < sizeof(names); i++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                    uri_params[i].name);
        opt_fail(p, BOOKS_EINVAL,
                 "store URI \"sqlite:%s\": unknown parameter \"%.*s\"; accepted: %s", rest,
                 (int)(pr->name_len > 40 ? 40 : pr->name_len), pr->name, names);
        return;
    }
    opt_fail(p, BOOKS_EINVAL, "store URI \"sqlite:%s\": parameter \"%s\" %s; it takes %s", rest,
             pr->o->name,
             pr->kind == OPT_REPEATED        ? "is given twice"
             : pr->kind == OPT_MISSING_VALUE ? "has no value"
                                             : "has a bad value",
             opt_describe(pr->o, accepted, sizeof(accepted)));
}

static int parse_uri(const char *rest, struct sqlite_options *o, char *err, size_t errlen)
{
    const char *q = strchr(rest, '?');
    size_t path_len = q ? (size_t)(q - rest) : strlen(rest);
    struct opt_parser p = {
        .opts = uri_params,
        .n_opts = N_URI_PARAMS,
        .base = o,
        .report = report_param,
        .self = (void *)rest,
        .err = err,
        .errlen = errlen,
    };

    memset(o, 0, sizeof(*o));
    if (path_len == 0) {
        books_format_err(err, errlen,
                         "store URI \"sqlite:%s\": no database path; write sqlite:PATH, e.g. "
                         "sqlite:/var/lib/books/books.db",
                         rest);
        return BOOKS_EINVAL;
    }
    if (path_len == 8 && memcmp(rest, ":memory:", 8) == 0) {
        books_format_err(
            err, errlen,
            "store URI \"sqlite:%s\": an in-memory database is not durable; use memory:", rest);
        return BOOKS_EINVAL;
    }
    if (opt_load_defaults(&p) == 0 && q)
        opt_parse_query(&p, q + 1);
    if (p.rc == BOOKS_ENOMEM)
        books_format_err(err, errlen, "store URI \"sqlite:%s\": out of memory", rest);
    if (p.rc != 0)
        return p.rc;
    o->path = strndup(rest, path_len);
    if (!o->path) {
        books_format_err(err, errlen, "store URI \"sqlite:%s\": out of memory", rest);
        return BOOKS_ENOMEM;
    }
    return 0;
}

/* Canonical path of the database (symbolic links resolved, so two spellings of one file share
 * one lock) into *path, and its directory into dir (PATH_MAX bytes). */
static int resolve_paths(const char *shown, char **path, char *dir, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    const char *slash, *base;
    size_t dir_len;

    if (realpath(shown, buf)) {
        *path = strdup(buf);
        if (!*path)
            goto nomem;
        slash = strrchr(buf, '/');
        dir_len = slash == buf ? 1 : (size_t)(slash - buf);
        memcpy(dir, buf, dir_len);
        dir[dir_len] = '\0';
        return 0;
    }
    if (errno != ENOENT) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot resolve the path: %s", shown,
                         strerror(errno));
        return BOOKS_EIO;
    }
    /* The file does not exist yet: resolve its directory, which must. */
    slash = strrchr(shown, '/');
    base = slash ? slash + 1 : shown;
    if (base[0] == '\0') {
        books_format_err(err, errlen, "sqlite store \"%s\": the path names a directory, not a file",
                         shown);
        return BOOKS_EINVAL;
    }
    if (!slash) {
        snprintf(buf, sizeof(buf), ".");
    } else {
        dir_len = slash == shown ? 1 : (size_t)(slash - shown);
        if (dir_len >= sizeof(buf))
            goto toolong;
        memcpy(buf, shown, dir_len);
        buf[dir_len] = '\0';
    }
    if (!realpath(buf, dir)) {
        books_format_err(err, errlen, "sqlite store \"%s\": directory \"%s\": %s", shown, buf,
                         strerror(errno));
        return BOOKS_EIO;
    }
    if (strlen(dir) + 1 + strlen(base) >= PATH_MAX)
        goto toolong;
    if (asprintf(path, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", base) < 0) {
        *path = NULL;
        goto nomem;
    }
    return 0;
toolong:
    books_format_err(err, errlen, "sqlite store \"%s\": path too long", shown);
    return BOOKS_EINVAL;
nomem:
    books_format_err(err, errlen, "sqlite store \"%s\": out of memory", shown);
    return BOOKS_ENOMEM;
}

/* Takes the lock that keeps a second books-server off this database for our whole life.
 *
 * Why flock(2) on a separate PATH-lock file: SQLite itself locks the database with POSIX fcntl()
 * locks, which belong to the process and are all dropped when the process closes ANY descriptor
 * of the file; a descriptor of our own on the database would be a trap for SQLite's locks (and
 * flock on NFS is emulated with fcntl locks, where it would collide with SQLite's byte ranges).
 * A file SQLite never opens avoids both, and can be locked before the database exists, so two
 * first starts cannot both create it. flock locks belong to the open file description, so a
 * second store in this same process is refused too, and the kernel drops the lock when the
 * process dies: kill -9 leaves a file behind but no lock, and only the lock matters.
 *
 * The holder deletes the file when it lets go (close, or a start that fails), so a stopped
 * server leaves a clean directory. That is safe because a taker checks, once locked, that the
 * file it locked is still the one at the path; if the previous holder deleted it meanwhile, it
 * starts over. We write our pid into it for the "in use" message. */
static int take_lock(struct sqlite_store *ss, char *err, size_t errlen)
{
    char pid[32];
    struct stat by_fd, by_path;
    int fd;

    if (asprintf(&ss->lock_path, "%s-lock", ss->path) < 0) {
        ss->lock_path = NULL;
        books_format_err(err, errlen, "sqlite store \"%s\": out of memory", ss->shown);
        return BOOKS_ENOMEM;
    }
    for (;;) {
        fd = open(ss->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0) {
            books_format_err(err, errlen, "sqlite store \"%s\": cannot create lock file %s: %s",
                             ss->shown, ss->lock_path, strerror(errno));
            return BOOKS_EIO;
        }
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ssize_t n;

            if (errno == EINTR)
                continue;
            if (errno != EWOULDBLOCK) {
                books_format_err(err, errlen, "sqlite store \"%s\": cannot lock %s: %s", ss->shown,
                                 ss->lock_path, strerror(errno));
                close(fd);
                return BOOKS_EIO;
            }
            n = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            books_format_err(
                err, errlen,
                "sqlite store \"%s\": database in use by another books-server (pid %s holds "
                "the lock on %s)",
                ss->shown, pid[0] ? pid : "unknown", ss->lock_path);
            close(fd);
            return BOOKS_EIO;
        }
        if (fstat(fd, &by_fd) == 0 && stat(ss->lock_path, &by_path) == 0 &&
            by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino)
            break;
        close(fd); /* locked a file its holder deleted as it let go: take the new one */
    }
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) < 0) {
        /* Only the diagnostic is lost; the lock holds. */
    }
    ss->lock_fd = fd;
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the 100-byte database header without SQLite. *fresh: no file, or an empty one (SQLite
 * treats an empty file as an empty database). Our own descriptor is safe here: we hold the lock,
 * so no SQLite connection of this process has the file open whose fcntl locks close() could drop.
 */
static int check_header(struct sqlite_store *ss, bool *fresh, char *err, size_t errlen)
{
    unsigned char h[100];
    struct stat st;
    ssize_t n;
    int fd = open(ss->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    *fresh = false;
    if (fd < 0) {
        if (errno == ENOENT) {
            *fresh = true;
            return 0;
        }
        books_format_err(err, errlen, "sqlite store \"%s\": cannot open: %s", ss->shown,
                         strerror(errno));
        return BOOKS_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        books_format_err(err, errlen, "sqlite store \"%s\": not a regular file", ss->shown);
        return BOOKS_EIO;
    }
    /* SQLite would quietly open a file it may not write read-only and fail at the first create
     * ("attempt to write a readonly database"); refuse at start-up instead. */
    if (access(ss->path, W_OK) != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": the database file is not writable (%s)",
                         ss->shown, strerror(errno));
        close(fd);
        return BOOKS_EIO;
    }
    if (st.st_size == 0) {
        close(fd);
        *fresh = true;
        return 0;
    }
    n = pread(fd, h, sizeof(h), 0);
    close(fd);
    if (n < 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot read: %s", ss->shown,
                         strerror(errno));
        return BOOKS_EIO;
    }
    if ((size_t)n < sizeof(h) || memcmp(h, SQLITE_MAGIC, sizeof(SQLITE_MAGIC)) != 0) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": not a SQLite database (no SQLite header); left untouched",
            ss->shown);
        return BOOKS_ECORRUPT;
    }
    /* application_id lives at offset 68 and never changes once set, so a non-zero foreign value
     * is final even if newer pages sit in the log. 0 may still be ours (a database created in
     * WAL mode keeps its header in the log until a checkpoint): SQLite decides below. */
    if (be32(h + 68) != 0 && be32(h + 68) != BOOKS_APPLICATION_ID) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": a SQLite database of another application (application_id "
            "0x%08x), not a books database; left untouched",
            ss->shown, be32(h + 68));
        return BOOKS_ECORRUPT;
    }
    return 0;
}

/* Inspects an existing SQLite file read-only. *fresh when it is an empty database (no schema at
 * all, as left by a first start that died before its creating transaction committed). */
static int inspect(struct sqlite_store *ss, bool *fresh, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    long long app = 0, version = 0, objects = 0, tables = 0;
    char encoding[16] = "";
    int rc;

    rc = sqlite3_open_v2(ss->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = query_int(db, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK)
        rc = query_int(db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK)
        rc = query_int(db, "SELECT count(*) FROM sqlite_schema", &objects);
    if (rc == SQLITE_OK)
        rc = query_int(db,
                       "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                       "('books', 'meta')",
                       &tables);
    if (rc == SQLITE_OK)
        rc = query_text(db, "PRAGMA encoding", encoding, sizeof(encoding));
    if (rc != SQLITE_OK) {
        int books = map_sqlite(rc);

        books_format_err(err, errlen, "sqlite store \"%s\": %s (%s); left untouched", ss->shown,
                         books == BOOKS_ECORRUPT ? "not a SQLite database, or a damaged one"
                                                 : "cannot read the database",
                         db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return books == BOOKS_ECORRUPT ? BOOKS_ECORRUPT
               : books == BOOKS_ENOMEM ? BOOKS_ENOMEM
                                       : BOOKS_EIO;
    }
    sqlite3_close(db);

    *fresh = app == 0 && version == 0 && objects == 0;
    if (*fresh)
        return 0;
    if (app != BOOKS_APPLICATION_ID) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": a SQLite database of another application (application_id "
            "0x%08llx, %lld schema objects), not a books database; left untouched",
            ss->shown, app & 0xffffffffLL, objects);
        return BOOKS_ECORRUPT;
    }
    if (version > SCHEMA_VERSION) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": written by a newer books-server (schema version %lld, this "
            "binary knows up to %d); upgrade books-server",
            ss->shown, version, SCHEMA_VERSION);
        return BOOKS_ECORRUPT;
    }
    if (version < 1 || tables != 2 || strcmp(encoding, "UTF-8") != 0) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": a damaged books database (schema version %lld, %lld of 2 "
            "tables, encoding %s); left untouched",
            ss->shown, version, tables, encoding);
        return BOOKS_ECORRUPT;
    }
    return 0;
}

/* Schema version 0 -> 1: the tables and the data set's key. Runs inside the migration's
 * transaction; returns a SQLite rc. */
static int migrate_create(sqlite3 *db)
{
    uint8_t key[STORE_DATASET_KEY_BYTES];
    sqlite3_stmt *st = NULL;
    int rc;

    rc = exec(db, "CREATE TABLE books ("
                  " name TEXT PRIMARY KEY NOT NULL,"
                  " display_name TEXT NOT NULL,"
                  " publisher TEXT NOT NULL,"
                  " authors BLOB NOT NULL"
                  ") STRICT, WITHOUT ROWID;"
                  "CREATE TABLE meta ("
                  " key TEXT PRIMARY KEY NOT NULL,"
                  " value BLOB NOT NULL"
                  ") STRICT, WITHOUT ROWID;");
    if (rc != SQLITE_OK)
        return rc;
    if (store_new_dataset_key(key) != 0)
        return SQLITE_IOERR;
    rc = sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) VALUES ('dataset_key', ?1)", -1, &st,
                            NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, 1, key, sizeof(key), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    sqlite3_finalize(st);
    return rc;
}

/* Schema steps: migrations[v] takes a database from version v to v + 1. A future version adds a
 * row (and bumps SCHEMA_VERSION); old databases then walk every step in one transaction. */
static int (*const migrations[SCHEMA_VERSION])(sqlite3 *db) = {
    migrate_create, /* 0 -> 1 */
};

/* Brings the database to SCHEMA_VERSION in one IMMEDIATE transaction: all steps or none. */
static int migrate(struct sqlite_store *ss, char *err, size_t errlen)
{
    sqlite3 *db = ss->writer;
    long long version = 0;
    char sql[64];
    int rc;

    rc = exec(db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = query_int(db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK && (version < 0 || version > SCHEMA_VERSION))
        rc = SQLITE_CORRUPT; /* inspect() checked; only a concurrent writer could change it */
    for (long long v = version; rc == SQLITE_OK && v < SCHEMA_VERSION; v++)
        rc = migrations[v](db);
    if (rc == SQLITE_OK && version < SCHEMA_VERSION) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 BOOKS_APPLICATION_ID, SCHEMA_VERSION);
        rc = exec(db, sql);
    }
    if (rc == SQLITE_OK)
        rc = exec(db, "COMMIT");
    if (rc != SQLITE_OK) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot create the schema: %s",
                         ss->shown, sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db))
            exec(db, "ROLLBACK");
        return map_sqlite(rc);
    }
    return 0;
}

/* fsync of the directory, so a new database file's name is as durable as its content. */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    int fd;

    memcpy(dir, path, len);
    dir[len] = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int read_dataset_key(struct sqlite_store *ss, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ss->writer, "SELECT value FROM meta WHERE key = 'dataset_key'", -1,
                                &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW &&
        sqlite3_column_bytes(st, 0) == STORE_DATASET_KEY_BYTES) {
        memcpy(ss->base.dataset_key, sqlite3_column_blob(st, 0), STORE_DATASET_KEY_BYTES);
        sqlite3_finalize(st);
        return 0;
    }
    books_format_err(err, errlen, "sqlite store \"%s\": %s", ss->shown,
                     rc == SQLITE_ROW || rc == SQLITE_DONE
                         ? "a damaged books database (no data set key)"
                         : sqlite3_errmsg(ss->writer));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? BOOKS_ECORRUPT : map_sqlite(rc);
}

/* Opens and configures the write connection, creates or migrates the schema, reads the key and
 * prepares the committer's statements. */
static int open_writer(struct sqlite_store *ss, const struct sqlite_options *o, bool fresh,
                       char *err, size_t errlen)
{
    sqlite3 *db;
    char mode[16] = "";
    char sql[96];
    long long page_size = 0;
    int rc;

    rc = sqlite3_open_v2(ss->path, &ss->writer,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    db = ss->writer;
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* Belt and braces for check_header()'s test (e.g. a read-only mount it did not catch). */
    if (sqlite3_db_readonly(db, "main") == 1) {
        books_format_err(err, errlen, "sqlite store \"%s\": the database file is not writable",
                         ss->shown);
        return BOOKS_EIO;
    }
    /* Fixed before the first table exists: BINARY order is strcmp order only in UTF-8. */
    if (fresh && (rc = exec(db, "PRAGMA encoding = 'UTF-8'")) != SQLITE_OK)
        goto fail;
    rc = query_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
    if (rc != SQLITE_OK)
        goto fail;
    if (strcasecmp(mode, "wal") != 0) {
        books_format_err(err, errlen,
                         "sqlite store \"%s\": this file system does not support SQLite's WAL mode "
                         "(journal mode stays %s)",
                         ss->shown, mode);
        return BOOKS_EIO;
    }
    rc = exec(db, "PRAGMA synchronous = FULL");
    if (rc == SQLITE_OK) {
        rc = migrate(ss, err, errlen);
        if (rc != 0)
            return rc;
        if (fresh)
            sync_dir(ss->path);
    }
    /* FULL: every COMMIT fsyncs the log. NORMAL: the log is fsync'ed only at checkpoints, so a
     * committed transaction survives a process crash but not a power cut. */
    if (rc == SQLITE_OK && o->sync_normal)
        rc = exec(db, "PRAGMA synchronous = NORMAL");
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d; PRAGMA cache_size = -%d",
                 JOURNAL_SIZE_LIMIT_BYTES, WRITER_CACHE_KIB);
        rc = exec(db, sql);
    }
    /* Checkpoints are the committer's (maybe_checkpoint); this also turns off SQLite's own. */
    sqlite3_wal_hook(db, on_wal_commit, ss);
    if (rc == SQLITE_OK && o->max_size_mb) {
        rc = query_int(db, "PRAGMA page_size", &page_size);
        if (rc == SQLITE_OK && page_size > 0) {
            /* A cap below the current size leaves it at the current size: creates then fail
             * with BOOKS_ENOSPC and reads go on. */
            snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
                     (long long)o->max_size_mb * (1024 * 1024 / page_size));
            rc = exec(db, sql);
        }
    }
    if (rc != SQLITE_OK)
        goto fail;
    rc = read_dataset_key(ss, err, errlen);
    if (rc != 0)
        return rc;
    rc = prepare_persistent(db,
                            "INSERT INTO books(name, display_name, publisher, authors) "
                            "VALUES (?1, ?2, ?3, ?4)",
                            &ss->insert);
    if (rc == SQLITE_OK)
        rc = prepare_persistent(db, "BEGIN IMMEDIATE", &ss->begin);
    if (rc == SQLITE_OK)
        rc = prepare_persistent(db, "COMMIT", &ss->commit);
    if (rc == SQLITE_OK)
        rc = prepare_persistent(db, "ROLLBACK", &ss->rollback);
    if (rc != SQLITE_OK)
        goto fail;
    return 0;
fail:
    books_format_err(err, errlen, "sqlite store \"%s\": cannot open for writing: %s", ss->shown,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return map_sqlite(rc) == BOOKS_ENOMEM ? BOOKS_ENOMEM : BOOKS_EIO;
}

int store_sqlite_open(const char *rest, const struct store_limits *limits, struct store **out,
                      char *err, size_t errlen)
{
    struct sqlite_options o;
    struct sqlite_store *ss;
    struct reader *r = NULL;
    char dir[PATH_MAX];
    char msg[160];
    bool fresh = false;
    int rc;

    if (!rest || !out) {
        books_format_err(err, errlen, "store URI \"sqlite:\": missing");
        return BOOKS_EINVAL;
    }
    rc = parse_uri(rest, &o, err, errlen);
    if (rc != 0)
        return rc;
    pthread_once(&sqlite_config_once, sqlite_configure);

    ss = calloc(1, sizeof(*ss));
    if (!ss) {
        books_format_err(err, errlen, "sqlite store \"%s\": out of memory", o.path);
        free(o.path);
        return BOOKS_ENOMEM;
    }
    ss->base.ops = &sqlite_ops;
    ss->shown = o.path; /* owned by ss from here on; destroy() frees it */
    ss->lock_fd = -1;
    ss->batch_max = o.group_commit ? BATCH_MAX : 1;
    pthread_mutex_init(&ss->pool_mu, NULL);
    pthread_cond_init(&ss->pool_cv, NULL);
    /* The cache never takes more than the memory the process gives the store. */
    size_t cache_bytes = (size_t)o.cache_mb * 1024 * 1024;
    if (limits->memory_bytes && cache_bytes > limits->memory_bytes)
        cache_bytes = limits->memory_bytes;
    if (record_cache_new(cache_bytes, &ss->cache) != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": out of memory", ss->shown);
        rc = BOOKS_ENOMEM;
        goto fail;
    }

    rc = resolve_paths(ss->shown, &ss->path, dir, err, errlen);
    if (rc != 0)
        goto fail;
    /* SQLite creates PATH-wal and PATH-shm beside the database (and we PATH-lock); in a directory
     * it cannot write to, it would fail later and less clearly. */
    if (access(dir, W_OK | X_OK) != 0) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": directory %s is not writable (%s); the store creates its "
            "-wal, -shm and -lock files there",
            ss->shown, dir, strerror(errno));
        rc = BOOKS_EIO;
        goto fail;
    }
    rc = take_lock(ss, err, errlen);
    if (rc != 0)
        goto fail;
    rc = check_header(ss, &fresh, err, errlen);
    if (rc == 0 && !fresh)
        rc = inspect(ss, &fresh, err, errlen);
    if (rc != 0)
        goto fail;
    rc = open_writer(ss, &o, fresh, err, errlen);
    if (rc != 0)
        goto fail;
    /* One read connection now, so a problem with reading shows at start-up, not at the first
     * request; the rest open on demand. */
    rc = reader_open(ss, &r, msg, sizeof(msg));
    if (rc != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot open for reading: %s", ss->shown,
                         msg);
        goto fail;
    }
    ss->idle = r;
    ss->n_readers = 1;
    const struct commit_backend backend = {
        .self = ss, .write_batch = write_batch, .idle = maybe_checkpoint};
    rc = commit_pipeline_start(&backend, ss->batch_max, "books", ss->shown, &ss->pipeline);
    if (rc != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot start the commit threads",
                         ss->shown);
        goto fail;
    }
    *out = &ss->base;
    return 0;

fail:
    /* destroy() undoes whatever steps ran: readers, writer, lock, memory. */
    destroy(ss, false);
    return rc;
}
