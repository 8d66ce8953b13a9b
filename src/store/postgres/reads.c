/* reads.c: the postgresql: store's reads (pg.h). Each reader thread owns one connection in libpq's
 * pipeline mode and serves the shared queue: it takes everything queued (at most READ_BATCH_MAX),
 * sends it as prepared statements with binary results and one Sync, and reads the answers in
 * order, so many calls in flight share few connections and one round trip per batch. A request
 * whose deadline passes is answered BOOKS_EDEADLINE then (its result, when it comes, is dropped),
 * and once every request of a batch has been answered that way the reader cancels what the
 * connection runs (PQcancel): nobody waits for it. A broken connection fails the requests caught
 * in it with BOOKS_EUNAVAIL and is reconnected with backoff (pg_link_ensure). */
#include "pg.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/log.h"
#include "books/store_postgres.h"
#include "rows.h"

/* Reads one reader sends in one pipeline (one Sync, one round trip). */
#define READ_BATCH_MAX 64

/* Builds the record of row `i` of a binary result (name, display_name, publisher, authors). */
static int row_book(const PGresult *res, int i, struct store_book **out)
{
    struct store_text f[3];
    struct store_text *authors = NULL;
    size_t n = 0;
    int rc;

    if (PQnfields(res) != 4)
        return BOOKS_ECORRUPT;
    for (int c = 0; c < 3; c++) {
        if (PQgetisnull(res, i, c))
            return BOOKS_ECORRUPT;
        f[c].p = PQgetvalue(res, i, c);
        f[c].len = (size_t)PQgetlength(res, i, c);
    }
    authors = malloc(STORE_MAX_AUTHORS * sizeof *authors);
    if (!authors)
        return BOOKS_ENOMEM;
    rc = pg_decode_text_array((const uint8_t *)PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3),
                              authors, STORE_MAX_AUTHORS, &n);
    if (rc == 0)
        rc = store_book_new_counted(f[0], f[1], authors, n, f[2], out);
    free(authors);
    return rc;
}

/* ---- reads ----------------------------------------------------------------------------------- */

static void answer_read(struct pg_store *st, struct read_req *r, int rc, struct store_book *book,
                        size_t n)
{
    (void)st;
    if (r->answered) {
        store_book_unref(book);
        return;
    }
    r->answered = true;
    if (r->list)
        r->list_done(r->arg, rc, rc == 0 ? n : 0);
    else
        r->get_done(r->arg, rc, rc == 0 ? book : NULL);
}

/* Fills the answer of request `r` from its result; frees nothing of the result. */
static void finish_read(struct pg_store *st, PGconn *conn, struct read_req *r,
                        const PGresult *res)
{
    int rows, rc = 0;

    if (r->answered)
        return;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        answer_read(st, r, pg_error(conn, res), NULL, 0);
        return;
    }
    rows = PQntuples(res);
    if (!r->list) {
        struct store_book *b = NULL;
        rc = rows == 0 ? BOOKS_ENOTFOUND : row_book(res, 0, &b);
        if (rc == 0 && record_cache_enabled(st->cache))
            record_cache_put(st->cache, b,
                             record_cache_hash(st->cache, b->name, strlen(b->name)));
        answer_read(st, r, rc, b, 0);
        return;
    }
    if ((size_t)rows > r->limit)
        rc = BOOKS_ECORRUPT;
    for (int i = 0; rc == 0 && i < rows; i++) {
        rc = row_book(res, i, &r->out[i]);
        if (rc != 0)
            for (int k = 0; k < i; k++)
                store_book_unref(r->out[k]);
    }
    answer_read(st, r, rc, NULL, rc == 0 ? (size_t)rows : 0);
}

/* Waits until a result can be read without blocking. Meanwhile answers each request of
 * batch[from..n) whose deadline passes with BOOKS_EDEADLINE, and once all of them are answered,
 * cancels what the connection is running (nobody waits for it). False: the connection broke. */
static bool wait_result(struct reader *rd, struct read_req **batch, size_t from, size_t n,
                        bool *cancelled)
{
    PGconn *conn = rd->link.conn;
    uint64_t heard = pg_now_ns(), silence = pg_silence_ns(rd->st);

    while (PQisBusy(conn)) {
        uint64_t now = pg_now_ns(), next = silence ? heard + silence : 0;
        if (silence && now >= heard + silence)
            return false; /* nothing for longer than any query may run: the link is dead */
        bool all_answered = true;
        for (size_t i = from; i < n; i++) {
            struct read_req *r = batch[i];
            if (!r->answered && r->deadline_ns && r->deadline_ns <= now)
                answer_read(rd->st, r, BOOKS_EDEADLINE, NULL, 0);
            if (!r->answered) {
                all_answered = false;
                if (r->deadline_ns && (!next || r->deadline_ns < next))
                    next = r->deadline_ns;
            }
        }
        if (all_answered && from < n && !*cancelled) {
            char why[256];
            PGcancel *c = PQgetCancel(conn);
            if (c && PQcancel(c, why, sizeof why))
                atomic_fetch_add_explicit(&rd->st->st_cancels, 1, memory_order_relaxed);
            PQfreeCancel(c);
            *cancelled = true;
        }
        int timeout = -1;
        if (next) {
            uint64_t ms = (next - now + 999999) / 1000000;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        struct pollfd p = {PQsocket(conn), POLLIN, 0};
        if (poll(&p, 1, timeout) > 0) {
            if (!PQconsumeInput(conn))
                return false;
            heard = pg_now_ns();
        }
        if (PQstatus(conn) != CONNECTION_OK)
            return false;
    }
    return true;
}

/* One round trip for batch[0..n) on the reader's connection. */
static void run_batch(struct reader *rd, struct read_req **batch, size_t n)
{
    struct pg_store *st = rd->st;
    PGconn *conn = rd->link.conn;
    bool cancelled = false, broken = false;
    size_t i = 0;

    for (size_t k = 0; k < n && !broken; k++) {
        struct read_req *r = batch[k];
        char limit[24];
        const char *values[2];
        int nvalues;
        const char *stmt;

        snprintf(limit, sizeof limit, "%zu", r->limit);
        if (!r->list) {
            stmt = "get";
            values[0] = r->key;
            nvalues = 1;
        } else if (r->key[0] == '\0') {
            stmt = "list_first";
            values[0] = limit;
            nvalues = 1;
        } else {
            stmt = "list_after";
            values[0] = r->key;
            values[1] = limit;
            nvalues = 2;
        }
        /* Text parameters, binary results (resultFormat 1): lengths exact, arrays unquoted. */
        broken = !PQsendQueryPrepared(conn, stmt, nvalues, values, NULL, NULL, 1);
    }
    broken = broken || !PQpipelineSync(conn) || !pg_flush_all(conn);
    atomic_fetch_add_explicit(&st->st_round_trips, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->st_reads, n, memory_order_relaxed);

    /* Each query's results end with a NULL; the batch ends with PGRES_PIPELINE_SYNC. */
    for (i = 0; i < n && !broken; i++) {
        PGresult *res, *first = NULL;
        if (!wait_result(rd, batch, i, n, &cancelled)) {
            broken = true;
            break;
        }
        while ((res = PQgetResult(conn)) != NULL) {
            if (!first)
                first = res;
            else
                PQclear(res);
            if (!wait_result(rd, batch, i, n, &cancelled)) {
                broken = true;
                break;
            }
        }
        if (!broken)
            finish_read(st, conn, batch[i], first);
        PQclear(first);
    }
    if (!broken) {
        PGresult *res;
        if (wait_result(rd, batch, n, n, &cancelled) && (res = PQgetResult(conn)) != NULL &&
            PQresultStatus(res) == PGRES_PIPELINE_SYNC)
            PQclear(res);
        else
            broken = true;
    }
    if (broken) {
        log_msg(LOG_WARNING, "PostgreSQL at %s: a read connection broke: %.200s", st->shown,
                PQerrorMessage(conn));
        for (; i < n; i++)
            answer_read(st, batch[i], BOOKS_EUNAVAIL, NULL, 0);
        pg_link_down(st, &rd->link, false);
    }
}

/* Takes up to `max` queued requests, waiting for one; 0 once closing and empty. */
static size_t take_reads(struct pg_store *st, struct read_req **batch, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&st->mu);
    while (!st->head && !st->closing)
        pthread_cond_wait(&st->cv, &st->mu);
    while (st->head && n < max) {
        batch[n++] = st->head;
        st->head = st->head->next;
    }
    if (!st->head)
        st->tail = NULL;
    else
        pthread_cond_signal(&st->cv); /* more for another reader */
    pthread_mutex_unlock(&st->mu);
    return n;
}

void *pg_reader_main(void *arg)
{
    struct reader *rd = arg;
    struct pg_store *st = rd->st;
    struct read_req *batch[READ_BATCH_MAX];
    size_t n;

    pthread_setname_np(pthread_self(), "books-pg-read");
    while ((n = take_reads(st, batch, READ_BATCH_MAX)) > 0) {
        if (pg_link_ensure(st, &rd->link, false) != 0) {
            for (size_t i = 0; i < n; i++)
                answer_read(st, batch[i], BOOKS_EUNAVAIL, NULL, 0);
        } else {
            run_batch(rd, batch, n);
        }
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
    }
    return NULL;
}

static void enqueue(struct pg_store *st, struct read_req *r)
{
    bool refused;
    r->next = NULL;
    pthread_mutex_lock(&st->mu);
    refused = st->closing;
    if (!refused) {
        if (st->tail)
            st->tail->next = r;
        else
            st->head = r;
        st->tail = r;
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    if (refused) {
        answer_read(st, r, BOOKS_EUNAVAIL, NULL, 0);
        free(r);
    }
}

static struct read_req *new_req(const char *key)
{
    size_t len = key ? strlen(key) : 0;
    struct read_req *r = calloc(1, sizeof *r + len + 1);
    if (r && len)
        memcpy(r->key, key, len);
    return r;
}

void pg_get_async(struct store *s, const char *name, uint64_t deadline_ns,
                         store_get_done_fn done, void *arg)
{
    struct pg_store *st = (struct pg_store *)s;
    struct read_req *r;

    if (!name) {
        done(arg, BOOKS_ENOTFOUND, NULL);
        return;
    }
    if (record_cache_enabled(st->cache)) {
        size_t len = strlen(name);
        struct store_book *b =
            record_cache_get(st->cache, name, len, record_cache_hash(st->cache, name, len));
        if (b) {
            done(arg, 0, b);
            return;
        }
    }
    r = new_req(name);
    if (!r) {
        done(arg, BOOKS_ENOMEM, NULL);
        return;
    }
    r->deadline_ns = deadline_ns;
    r->get_done = done;
    r->arg = arg;
    enqueue(st, r);
}

void pg_list_async(struct store *s, const char *after_name, size_t limit,
                          struct store_book **out, uint64_t deadline_ns, store_list_done_fn done,
                          void *arg)
{
    struct pg_store *st = (struct pg_store *)s;
    struct read_req *r;

    if (limit == 0) {
        done(arg, 0, 0);
        return;
    }
    r = new_req(after_name);
    if (!r) {
        done(arg, BOOKS_ENOMEM, 0);
        return;
    }
    r->list = true;
    r->limit = limit;
    r->out = out;
    r->deadline_ns = deadline_ns;
    r->list_done = done;
    r->arg = arg;
    enqueue(st, r);
}

/* The synchronous reads of the store interface wait for the asynchronous ones (tests and tools;
 * the server uses the asynchronous forms). */
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

int pg_get(struct store *s, const char *name, struct store_book **out)
{
    struct waiter w;
    waiter_init(&w);
    pg_get_async(s, name, 0, got_book, &w);
    waiter_wait(&w);
    if (w.rc == 0)
        *out = w.book;
    return w.rc;
}

int pg_list(struct store *s, const char *after_name, size_t limit, struct store_book **out,
                   size_t *n_out)
{
    struct waiter w;
    waiter_init(&w);
    pg_list_async(s, after_name, limit, out, 0, got_list, &w);
    waiter_wait(&w);
    if (w.rc == 0)
        *n_out = w.n;
    return w.rc;
}

