/* store.c: the open sqlite: store (sq.h has the design): the read connection pool, get and list,
 * creates through the commit pipeline, checkpoints, close, statistics. */
#include "books/store_sqlite.h"

#include "sq.h"

#include "books/error.h"
#include "books/log.h"
#include "books/record_cache.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- reading rows ---------------------------------------------------------------------------- */

/* Builds a record from column `col` (the book blob) of the current row of `st` and `name`
 * (name_len bytes). A row whose blob is NULL, or whose name or blob store_book_new() refuses, is
 * damaged or foreign data. */
static int row_to_book(sqlite3_stmt *st, int col, const char *name, size_t name_len,
                       struct store_book **out)
{
    const uint8_t *blob = sqlite3_column_blob(st, col);
    size_t len = (size_t)sqlite3_column_bytes(st, col);

    if (!name || (!blob && (len > 0 || sqlite3_column_type(st, col) == SQLITE_NULL)))
        return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM ? BOOKS_ENOMEM
                                                                      : BOOKS_ECORRUPT;
    return store_book_new(name, name_len, blob ? blob : (const uint8_t *)"", len, out);
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

/* Opens one read-only connection with its statements. 0 or a books_err; msg gets SQLite's text. */
int sq_reader_open(struct sqlite_store *ss, struct reader **out, char *msg, size_t msglen)
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
        rc = sq_prepare(r->db, STORE_SQLITE_GET_SQL, &r->get);
    }
    if (rc == SQLITE_OK)
        rc = sq_prepare(r->db, STORE_SQLITE_LIST_FIRST_SQL, &r->list_first);
    if (rc == SQLITE_OK)
        rc = sq_prepare(r->db, STORE_SQLITE_LIST_AFTER_SQL, &r->list_after);
    if (rc == SQLITE_OK)
        rc = sq_prepare(r->db, STORE_SQLITE_NAMES_FIRST_SQL, &r->names_first);
    if (rc == SQLITE_OK)
        rc = sq_prepare(r->db, STORE_SQLITE_NAMES_AFTER_SQL, &r->names_after);
    if (rc != SQLITE_OK) {
        books_format_err(msg, msglen, "%s", r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        reader_close(r);
        return sq_map_rc(rc);
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

    *rc = sq_reader_open(ss, &r, msg, sizeof(msg));
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

static int sqlite_get(struct store *s, const char *name, struct store_book **out)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    struct reader *r;
    size_t len;
    int rc, step;

    if (!name)
        return BOOKS_ENOTFOUND;
    len = strlen(name);
    if (len > INT_MAX)
        return BOOKS_ENOTFOUND;
    r = reader_acquire(ss, &rc);
    if (!r)
        return rc;
    rc = sqlite3_bind_text(r->get, 1, name, (int)len, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        rc = sq_map_rc(rc);
    else if ((step = sqlite3_step(r->get)) == SQLITE_ROW)
        rc = row_to_book(r->get, 0, name, len, out);
    else
        rc = step == SQLITE_DONE ? BOOKS_ENOTFOUND : sq_map_rc(step);
    /* Ends the read transaction at once, so checkpoints go on. */
    sqlite3_reset(r->get);
    reader_release(ss, r);
    if (rc == BOOKS_ECORRUPT)
        log_msg(LOG_ERROR, "sqlite store \"%s\": the row of %s is not a book", ss->shown, name);
    return rc;
}

/* One walk of the primary key in a single read transaction: the page is one consistent
 * snapshot, built row by row until it is full. */
static int sqlite_list(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                       struct store_book **out, size_t *n_out)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    struct reader *r;
    sqlite3_stmt *st;
    size_t n = 0, bytes = 0;
    sqlite3_int64 lim = limit > INT_MAX ? INT_MAX : (sqlite3_int64)limit;
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
        st = r->list_first;
        rc = sqlite3_bind_int64(st, 1, lim);
    } else {
        st = r->list_after;
        rc = sqlite3_bind_text(st, 1, after_name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 2, lim);
    }
    rc = sq_map_rc(rc);
    while (rc == 0 && n < limit && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        rc = row_to_book(st, 1, name, (size_t)sqlite3_column_bytes(st, 0), &out[n]);
        if (rc == BOOKS_ECORRUPT)
            log_msg(LOG_ERROR, "sqlite store \"%s\": a row listed after \"%s\" is not a book",
                    ss->shown, after_name ? after_name : "");
        /* Rows are built one at a time as SQLite steps: the walk stops as soon as the page's bytes
         * are there, so a page of large books never builds more than its byte bound. */
        if (rc == 0 && store_page_full(out, ++n, max_bytes, &bytes))
            break;
    }
    if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = sq_map_rc(step);
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

/* store_ops.list_names: sqlite_list's walk, names only, in one read transaction. */
static int sqlite_list_names(struct store *s, const char *after_name, size_t limit,
                             bool (*visit)(void *arg, const char *name, size_t name_len),
                             void *arg)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    sqlite3_int64 lim = limit > INT_MAX ? INT_MAX : (sqlite3_int64)limit;
    sqlite3_stmt *st;
    int rc, step = SQLITE_DONE;
    struct reader *r = reader_acquire(ss, &rc);

    if (!r)
        return rc;
    if (!after_name || after_name[0] == '\0') {
        st = r->names_first;
        rc = sqlite3_bind_int64(st, 1, lim);
    } else {
        st = r->names_after;
        rc = sqlite3_bind_text(st, 1, after_name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 2, lim);
    }
    rc = sq_map_rc(rc);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name) {
            rc = sqlite3_errcode(r->db) == SQLITE_NOMEM ? BOOKS_ENOMEM : BOOKS_ECORRUPT;
            break;
        }
        if (!visit(arg, name, (size_t)sqlite3_column_bytes(st, 0)))
            break;
    }
    if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = sq_map_rc(step);
    sqlite3_reset(st);
    reader_release(ss, r);
    return rc;
}

/* ---- create: through the commit pipeline ------------------------------------------------------
 */

static void sqlite_create(struct store *s, const struct store_create_req *req,
                          store_create_done_fn done, void *arg)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;

    commit_pipeline_submit(ss->pipeline, req, done, arg);
}

/* One INSERT of item's book (and its request id, when it has one); returns its SQLite rc
 * (SQLITE_DONE when inserted). */
static int insert_book(struct sqlite_store *ss, const struct commit_item *it)
{
    const struct store_book *b = it->book;
    sqlite3_stmt *st = ss->insert;
    size_t len;
    const uint8_t *body = store_book_body(b, &len);
    int rc;

    /* SQLITE_STATIC: the bytes outlive the step (the queue holds a reference to the record). A
     * zero-length blob needs a non-NULL pointer, or SQLite binds NULL; the body always points into
     * the record. */
    rc = sqlite3_bind_text(st, 1, b->name, (int)b->name_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob64(st, 2, body, len, SQLITE_STATIC);
    if (rc == SQLITE_OK && it->request_id[0]) {
        rc = sqlite3_bind_text(st, 3, it->request_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_blob(st, 4, it->fingerprint, sizeof it->fingerprint, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
    } else if (rc == SQLITE_OK) {
        for (int i = 3; rc == SQLITE_OK && i <= 5; i++)
            rc = sqlite3_bind_null(st, i);
    }
    if (rc != SQLITE_OK)
        return rc;
    return sq_step_reset(st);
}

/* An item with a request_id seen before (AIP-155): rc 0 and `made` the book the earlier request
 * made (store_request_matches), or BOOKS_EREUSED. Returns SQLITE_DONE when the id is new,
 * SQLITE_ROW when it was found (item answered), or SQLite's error. The writer's own transaction
 * sees the items written before it in the same batch. */
static int find_request(struct sqlite_store *ss, struct commit_item *it)
{
    sqlite3_stmt *st = ss->find_request;
    int rc = sqlite3_bind_text(st, 1, it->request_id, -1, SQLITE_STATIC), step;

    if (rc != SQLITE_OK)
        return rc;
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        /* Columns: name, book, request_fingerprint, request_hash. */
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (store_request_matches(it->fingerprint, it->legacy_fingerprint, sqlite3_column_blob(st, 2),
                                  (size_t)sqlite3_column_bytes(st, 2), sqlite3_column_blob(st, 3),
                                  (size_t)sqlite3_column_bytes(st, 3)))
            it->rc = row_to_book(st, 1, name, (size_t)sqlite3_column_bytes(st, 0), &it->made);
        else
            it->rc = BOOKS_EREUSED;
    }
    sqlite3_reset(st);
    return step;
}

/* commit_backend.write_batch: BEGIN IMMEDIATE, per create a look-up of its request id and one
 * INSERT with one prepared statement, COMMIT (with synchronous=full, one fsync of the log for the
 * whole batch). Each create's outcome is its own statement's (sq.h). Committer thread only. */
int sq_write_batch(void *self, struct commit_item *items, size_t n)
{
    struct sqlite_store *ss = self;
    int fail = SQLITE_OK;
    int rc;

    rc = sq_step_reset(ss->begin);
    if (rc != SQLITE_DONE) {
        fail = rc;
        goto failed;
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i].request_id[0]) {
            rc = find_request(ss, &items[i]);
            if (rc == SQLITE_ROW)
                continue; /* answered from the earlier request */
            if (rc != SQLITE_DONE) {
                fail = rc;
                goto failed;
            }
        }
        rc = insert_book(ss, &items[i]);
        if (rc == SQLITE_DONE) {
            items[i].rc = 0;
        } else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
            /* Only this statement was undone; the transaction goes on. (The request id was
             * looked up above in this transaction, so a unique conflict is the name's.) */
            items[i].rc = BOOKS_EEXIST;
        } else if ((rc & 0xff) == SQLITE_CONSTRAINT || rc == SQLITE_TOOBIG ||
                   rc == SQLITE_MISMATCH) {
            /* A row the database's own rules refuse (a CHECK, a trigger, a size limit): SQLite
             * undid this statement alone, so this create fails and the others of the batch go
             * on to commit. */
            log_msg(LOG_WARNING, "sqlite store \"%s\": the database refused %s: %s", ss->shown,
                    items[i].book->name, sqlite3_errmsg(ss->writer));
            items[i].rc = BOOKS_EREFUSED;
        } else {
            fail = rc;
            goto failed;
        }
    }
    rc = sq_step_reset(ss->commit);
    if (rc != SQLITE_DONE && (rc & 0xff) == SQLITE_IOERR) {
        /* The log was written, and its fsync (or a write) failed: a commit record may be in the
         * log, which recovery replays. Whether these creates are stored is not known. */
        log_msg(LOG_ERROR, "sqlite store \"%s\": COMMIT failed with an I/O error (%s): the %zu "
                "creates of the batch may or may not be stored", ss->shown,
                sqlite3_errmsg(ss->writer), n);
        if (!sqlite3_get_autocommit(ss->writer))
            (void)sq_step_reset(ss->rollback);
        for (size_t i = 0; i < n; i++) {
            if (items[i].rc == 0)
                items[i].rc = BOOKS_EUNKNOWN;
            store_book_unref(items[i].made);
            items[i].made = NULL;
        }
        return 0;
    }
    if (rc != SQLITE_DONE) {
        fail = rc;
        goto failed;
    }
    return 0;

failed:
    /* After SQLITE_FULL, SQLITE_IOERR or a failed COMMIT SQLite may or may not have rolled back
     * already; whatever is left of the transaction goes now. Nothing of it becomes visible. */
    if (!sqlite3_get_autocommit(ss->writer) && sq_step_reset(ss->rollback) != SQLITE_DONE)
        log_msg(LOG_ERROR, "sqlite store \"%s\": ROLLBACK failed: %s", ss->shown,
                sqlite3_errmsg(ss->writer));
    log_msg(LOG_WARNING, "sqlite store \"%s\": %s (%d)", ss->shown, sqlite3_errstr(fail), fail);
    for (size_t i = 0; i < n; i++) {
        store_book_unref(items[i].made);
        items[i].made = NULL;
    }
    rc = sq_map_rc(fail);
    return rc ? rc : BOOKS_EIO;
}

/* sqlite3_wal_hook: runs inside every COMMIT on the committer thread, after the log is written
 * (and fsync'ed), with the number of pages now in the log. */
int sq_on_wal_commit(void *arg, sqlite3 *db, const char *name, int n_frames)
{
    struct sqlite_store *ss = arg;

    (void)db;
    (void)name;
    if (n_frames < ss->wal_backfilled)
        ss->wal_backfilled = 0; /* the log restarted from its beginning */
    ss->wal_frames = n_frames;
    return SQLITE_OK;
}

/* Forgets request_ids older than the retention, at most REQUEST_PURGE_MAX per pass, a pass every
 * REQUEST_PURGE_EVERY_S (sooner while a pass finds a full load). Committer, between batches. */
static void purge_requests(struct sqlite_store *ss)
{
    time_t now = time(NULL);
    int rc;

    if (now - ss->purged_at < REQUEST_PURGE_EVERY_S &&
        now - ss->purged_at < (time_t)ss->request_ttl_s)
        return;
    ss->purged_at = now;
    rc = sqlite3_bind_int64(ss->purge_requests, 1, (sqlite3_int64)(now - ss->request_ttl_s));
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(ss->purge_requests, 2, REQUEST_PURGE_MAX);
    if (rc == SQLITE_OK)
        rc = sq_step_reset(ss->purge_requests);
    if (rc != SQLITE_DONE)
        log_msg(LOG_WARNING, "sqlite store \"%s\": cannot forget old request ids: %s", ss->shown,
                sqlite3_errmsg(ss->writer));
    else if (sqlite3_changes(ss->writer) == REQUEST_PURGE_MAX)
        ss->purged_at = 0; /* more are due: again after the next batch */
}

/* commit_backend.idle: forgets old request ids, then replaces SQLite's automatic checkpoint,
 * which would run inside COMMIT and hold back every done() of that batch: here it runs after the
 * batch has been handed to the answerer, while the next batch gathers. PASSIVE: never waits for
 * readers; pages a reader still needs are copied next time. */
void sq_maybe_checkpoint(void *self)
{
    struct sqlite_store *ss = self;
    int n_log = 0, n_ckpt = 0;
    int rc;

    purge_requests(ss);
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
    sqlite3_finalize(ss->find_request);
    sqlite3_finalize(ss->purge_requests);
    ss->insert = ss->begin = ss->commit = ss->rollback = NULL;
    ss->find_request = ss->purge_requests = NULL;
    sqlite3_close(ss->writer); /* NULL is a no-op */
    ss->writer = NULL;
}

/* Frees what store_sqlite_open() built, in reverse; safe on a partly built store. `checkpoint`:
 * the store was open, fold the log into the database first. */
void sq_destroy(struct sqlite_store *ss, bool checkpoint)
{
    struct reader *r;

    while ((r = ss->idle) != NULL) {
        ss->idle = r->next;
        reader_close(r);
    }
    if (ss->writer && checkpoint) {
        /* Fold the log into the database and truncate it, so what stays on disk is one compact
         * file; closing the last connection would checkpoint too, this just makes it explicit. */
        if (sq_exec(ss->writer, "PRAGMA wal_checkpoint(TRUNCATE)") != SQLITE_OK)
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

    /* Commits everything queued and answers it, then reports what the store did. */
    commit_pipeline_stop(ss->pipeline, &ps);
    ss->pipeline = NULL;
    log_msg(LOG_INFO,
            "sqlite store \"%s\": closing; %llu books written in %llu transactions (largest "
            "%llu, %llu rolled back)",
            ss->shown, (unsigned long long)ps.books_written, (unsigned long long)ps.transactions,
            (unsigned long long)ps.largest_batch, (unsigned long long)ps.rollbacks);
    sq_destroy(ss, true);
}

const struct store_ops sq_ops = {
    .scheme = "sqlite",
    .get = sqlite_get,
    .list = sqlite_list,
    .create = sqlite_create,
    .close = sqlite_close,
    .list_names = sqlite_list_names,
};

int store_sqlite_stats(struct store *s, struct store_sqlite_stats *out)
{
    struct store *below = record_cache_below(s);
    struct sqlite_store *ss = (struct sqlite_store *)below;

    if (!below || below->ops != &sq_ops || !out)
        return BOOKS_EINVAL;
    struct commit_pipeline_stats ps = {0};
    struct record_cache_stats cs = {0};

    if (ss->pipeline)
        commit_pipeline_stats(ss->pipeline, &ps);
    (void)record_cache_layer_stats(s, &cs); /* zeros without a cache */
    out->transactions = ps.transactions;
    out->commits = ps.commits;
    out->rollbacks = ps.rollbacks;
    out->books_written = ps.books_written;
    out->largest_batch = ps.largest_batch;
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    return 0;
}
