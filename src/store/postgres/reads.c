/* reads.c: the postgresql: store's reads (pg.h). Each reader thread owns one connection in libpq's
 * pipeline mode and serves the shared queue: it takes what is queued (at most READ_BATCH_MAX
 * requests, of them at most LISTS_PER_BATCH pages), sends it as prepared statements with binary
 * results and one Sync, and reads the answers in order, so many calls in flight share few
 * connections and one round trip per batch.
 *
 * Every wait has a bound:
 *  - a queued request is answered BOOKS_EDEADLINE at its deadline by the sweeper thread, whatever
 *    the readers are doing; the queue holds at most max_queued requests (then BOOKS_EBUSY), and
 *    while no reader has a connection, or no primary is known (pg_reach), a request is answered
 *    BOOKS_EUNAVAIL at once (and every queued one, when the store becomes unreachable);
 *  - a request being run is answered BOOKS_EDEADLINE at its deadline by its reader; once every
 *    request of the batch is answered, the query is cancelled in the database (PQcancel, on a
 *    thread of its own: it connects, and must not block the reader) and the reader waits at most
 *    CANCEL_GRACE_NS more for the results before it drops the connection;
 *  - a cancel cancels only its own batch: PostgreSQL cancels whatever the connection's backend
 *    runs when the request arrives (and ignores one that finds it idle), and PQcancel returns once
 *    the server has taken the request, so a reader sends nothing more on that connection until
 *    its cancel has returned; one that takes longer than CANCEL_WAIT_NS (a slow network to the
 *    server) costs the connection instead, which the reader replaces;
 *  - a connection silent while a batch waits is watched (watch.c): when the database does not
 *    answer a probe within silence_timeout_ms, or says that the connection's server process is
 *    not working on anything, the watchdog pulls its plug and the batch is answered
 *    BOOKS_EUNAVAIL; in any case no result, and no byte sent, for longer than any query may run
 *    (statement_timeout + 5 s) means the link is dead;
 *  - a list never fetches much more than its page's bytes: the query itself cuts the page
 *    (STORE_POSTGRES_LIST_*_SQL), so no PGresult holds a thousand large rows.
 * Links: a reader whose connection breaks, or whose idle connection the server closes (noticed
 * within IDLE_CHECK_NS), reconnects on its own (to the primary, whichever host it is now) with
 * backoff before it takes more work, so no caller meets a dead connection after an outage, and a
 * new primary is found within RECONNECT_MAX_MS of its promotion even while nobody reads;
 * pg_link_state() tells the store's listener. */
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
/* Pages in one pipeline: their results arrive into libpq's buffer together, each up to a page's
 * bytes. */
#define LISTS_PER_BATCH 2
/* An idle reader looks at its connection this often (a server that restarted closed it). */
#define IDLE_CHECK_NS (500ull * 1000000u)
/* After the cancel, how long a reader waits for the results of a batch nobody waits for. */
#define CANCEL_GRACE_NS (5ull * 1000000000u)
/* Cancel requests in flight at once (each a short-lived thread); more are skipped: the
 * statement_timeout ends those queries anyway. */
#define MAX_CANCELS 4
/* How long a reader waits for its cancel to reach the server before it drops the connection. */
#define CANCEL_WAIT_NS (2ull * 1000000000u)
/* While a query runs, a reader looks at the store's drain flag this often. */
#define DRAIN_CHECK_NS (100ull * 1000000u)
/* With statement_timeout 0 a query may run for ever; a silent connection is still taken for dead
 * after this long (libpq's TCP keepalives, set in conn.c, notice a dead peer sooner). */
#define UNBOUNDED_SILENCE_NS (300ull * 1000000000u)

/* ---- answering ------------------------------------------------------------------------------- */

static void answer_read(struct read_req *r, int rc, struct store_book *book, size_t n,
                        const struct store_damage *damage)
{
    if (r->answered) {
        store_book_unref(book);
        return;
    }
    r->answered = true;
    if (rc != BOOKS_ECORRUPT)
        damage = NULL;
    if (r->list)
        r->list_done(r->arg, rc, rc == 0 ? n : 0, damage);
    else
        r->get_done(r->arg, rc, rc == 0 ? book : NULL, damage);
}

/* At most one line a second about reads the database refused (each caller gets its status). */
static void log_read_error(struct pg_store *st, const PGresult *res)
{
    static _Atomic uint64_t last_ns;
    uint64_t now = pg_now_ns(), was = atomic_load_explicit(&last_ns, memory_order_relaxed);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (now - was < 1000000000u ||
        !atomic_compare_exchange_strong_explicit(&last_ns, &was, now, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    if (state && strcmp(state, "57014") == 0)
        return; /* a statement_timeout: the caller's DEADLINE_EXCEEDED says it */
    char why[256];
    snprintf(why, sizeof why, "%s", PQresultErrorMessage(res));
    why[strcspn(why, "\n")] = '\0';
    log_msg(LOG_WARNING, "PostgreSQL at %s: a read failed (SQLSTATE %s): %s", st->shown,
            state ? state : "none", why);
}

/* Fills the answer of request `r` from its result; frees nothing of the result. */
static void finish_read(struct reader *rd, struct read_req *r, const PGresult *res)
{
    struct pg_store *st = rd->st;
    struct store_damage damage = {{0}, {0}};
    int rows, rc = 0;
    size_t bytes = 0, n = 0;

    if (r->answered)
        return;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res && rd->link.layout == PG_LAYOUT_EXPANDED && pg_layout_gone(res) && !r->retried) {
            r->again = true; /* another server contracted the schema: again on version 3 */
            rd->contracted = true;
            return;
        }
        if (res)
            log_read_error(st, res);
        answer_read(r, pg_error(rd->link.conn, res), NULL, 0, NULL);
        return;
    }
    rows = PQntuples(res);
    if (!r->list) {
        struct store_book *b = NULL;
        rc = rows == 0 ? BOOKS_ENOTFOUND : pg_row_book(res, 0, 0, &b, &damage);
        if (rc == BOOKS_ECORRUPT)
            log_msg(LOG_ERROR, "PostgreSQL at %s: %s is not a book: %s", st->shown, damage.where,
                    damage.why);
        answer_read(r, rc, b, 0, &damage);
        return;
    }
    if ((size_t)rows > r->limit) {
        rc = BOOKS_ECORRUPT;
        snprintf(damage.where, sizeof damage.where, "a page of table books");
        snprintf(damage.why, sizeof damage.why, "more rows than the query's limit");
    }
    /* The query cut the page by its estimate of the bytes; the records' own sizes decide. */
    for (int i = 0; rc == 0 && i < rows; i++) {
        rc = pg_row_book(res, i, 0, &r->out[n], &damage);
        if (rc == 0 && store_page_full(r->out, ++n, r->max_bytes, &bytes))
            break;
    }
    if (rc == BOOKS_ECORRUPT)
        log_msg(LOG_ERROR, "PostgreSQL at %s: %s is not a book: %s", st->shown, damage.where,
                damage.why);
    if (rc != 0)
        for (size_t k = 0; k < n; k++)
            store_book_unref(r->out[k]);
    answer_read(r, rc, NULL, rc == 0 ? n : 0, &damage);
}

/* ---- cancelling ------------------------------------------------------------------------------ */

static _Atomic int cancels_running;

/* A cancel in flight, shared by its thread and the reader that sent it; the last of the two to let
 * go frees it, so neither waits on the other for longer than it wants (the reader gives up after
 * CANCEL_WAIT_NS, a thread stuck connecting outlives it harmlessly). */
struct pg_cancel {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: running became false */
    bool running;
    int refs;
    PGcancel *c;
};

static void cancel_drop(struct pg_cancel *k)
{
    pthread_mutex_lock(&k->mu);
    bool last = --k->refs == 0;
    pthread_mutex_unlock(&k->mu);
    if (last) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        free(k);
    }
}

static void *cancel_main(void *arg)
{
    struct pg_cancel *k = arg;
    char why[256];
    pthread_setname_np(pthread_self(), "books-pg-cancel");
    /* Returns once the server has closed the cancel connection, i.e. has signalled the backend
     * (libpq's PQcancel waits for that on purpose). */
    (void)PQcancel(k->c, why, sizeof why);
    PQfreeCancel(k->c);
    pthread_mutex_lock(&k->mu);
    k->running = false;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    cancel_drop(k);
    atomic_fetch_sub(&cancels_running, 1);
    return NULL;
}

/* Asks the server to cancel what the reader's connection runs, without waiting: PQcancel opens a
 * connection of its own and waits for the server, so it runs on a detached thread. True when a
 * cancel was sent off (reader_quiesce() waits for it before the connection is used again). */
static bool cancel_async(struct reader *rd)
{
    struct pg_store *st = rd->st;
    pthread_attr_t attr;
    pthread_condattr_t ca;
    pthread_t t;
    struct pg_cancel *k;

    if (atomic_fetch_add(&cancels_running, 1) >= MAX_CANCELS) {
        atomic_fetch_sub(&cancels_running, 1);
        return false;
    }
    k = calloc(1, sizeof *k);
    if (k)
        k->c = PQgetCancel(rd->link.conn);
    if (!k || !k->c || pthread_attr_init(&attr) != 0) {
        if (k)
            PQfreeCancel(k->c);
        free(k);
        atomic_fetch_sub(&cancels_running, 1);
        return false;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    k->running = true;
    k->refs = 2;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bool started = pthread_create(&t, &attr, cancel_main, k) == 0;
    pthread_attr_destroy(&attr);
    if (!started) {
        PQfreeCancel(k->c);
        k->refs = 1;
        cancel_drop(k);
        atomic_fetch_sub(&cancels_running, 1);
        return false;
    }
    rd->cancel = k;
    atomic_fetch_add_explicit(&st->st_cancels, 1, memory_order_relaxed);
    return true;
}

/* Before the reader sends another query on its connection, and before its thread ends: waits
 * until its last cancel has reached the server (so that it cannot cancel that query), at most
 * CANCEL_WAIT_NS; past that the connection is dropped (and replaced when it is needed). The
 * reader's thread. */
static void reader_quiesce(struct reader *rd)
{
    struct pg_cancel *k = rd->cancel;
    if (!k)
        return;
    if (!rd->link.conn) { /* its backend is gone with the connection: nothing left to hit */
        rd->cancel = NULL;
        cancel_drop(k);
        return;
    }
    uint64_t until = pg_now_ns() + CANCEL_WAIT_NS;
    struct timespec at = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
    pthread_mutex_lock(&k->mu);
    while (k->running && pg_now_ns() < until)
        pthread_cond_timedwait(&k->cv, &k->mu, &at);
    bool still = k->running;
    pthread_mutex_unlock(&k->mu);
    rd->cancel = NULL;
    cancel_drop(k);
    if (still && rd->link.conn) {
        log_msg(LOG_WARNING, "PostgreSQL at %s: a cancel request took over %llu ms to reach the "
                "server; its read connection is replaced so that it cannot cancel another query",
                rd->st->shown, (unsigned long long)(CANCEL_WAIT_NS / 1000000u));
        pg_link_down(rd->st, &rd->link, false);
    }
}

/* ---- one batch ------------------------------------------------------------------------------- */

static bool draining(struct pg_store *st)
{
    return atomic_load_explicit(&st->draining, memory_order_relaxed);
}

/* Waits until a result can be read without blocking. Meanwhile answers each request of
 * batch[from..n) whose deadline passes with BOOKS_EDEADLINE (every one of them, with
 * BOOKS_EUNAVAIL, once the store drains), and once all of them are answered cancels what the
 * connection runs and gives it CANCEL_GRACE_NS. False: the connection broke, fell silent, or is
 * given up. */
static bool wait_result(struct reader *rd, struct read_req **batch, size_t from, size_t n,
                        bool *cancelled, uint64_t *given_up_at)
{
    PGconn *conn = rd->link.conn;
    uint64_t heard = pg_now_ns(), silence = pg_silence_ns(rd->st);

    if (!silence)
        silence = UNBOUNDED_SILENCE_NS;
    while (PQisBusy(conn)) {
        uint64_t now = pg_now_ns(), next = heard + silence;
        bool drain = draining(rd->st), all_answered = true;
        if (now >= heard + silence)
            return false; /* nothing for longer than any query may run: the link is dead */
        for (size_t i = from; i < n; i++) {
            struct read_req *r = batch[i];
            if (!r->answered && drain)
                answer_read(r, BOOKS_EUNAVAIL, NULL, 0, NULL);
            else if (!r->answered && r->deadline_ns && r->deadline_ns <= now)
                answer_read(r, BOOKS_EDEADLINE, NULL, 0, NULL);
            if (!r->answered) {
                all_answered = false;
                if (r->deadline_ns && r->deadline_ns < next)
                    next = r->deadline_ns;
            }
        }
        if (all_answered && from < n) {
            if (drain && *cancelled)
                return false; /* shutting down: no grace, drop the connection */
            if (!*cancelled) {
                cancel_async(rd);
                *cancelled = true;
                *given_up_at = now;
            }
            if (now >= *given_up_at + CANCEL_GRACE_NS)
                return false; /* the server keeps running it: drop the connection instead */
            if (*given_up_at + CANCEL_GRACE_NS < next)
                next = *given_up_at + CANCEL_GRACE_NS;
        }
        /* Look at the drain flag at least this often: a shutdown must not wait for a query. */
        if (next > now + DRAIN_CHECK_NS)
            next = now + DRAIN_CHECK_NS;
        uint64_t ms = (next - now + 999999) / 1000000;
        struct pollfd p = {PQsocket(conn), POLLIN, 0};
        int ready = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (ready > 0) {
            if (!PQconsumeInput(conn))
                return false;
            heard = pg_now_ns();
            pg_link_heard(&rd->link, heard);
        }
        if (PQstatus(conn) != CONNECTION_OK)
            return false;
        /* Not checking `drain` before the loop's end: a batch whose every request is answered
         * is cancelled above and given CANCEL_GRACE_NS, like one whose deadlines passed. */
    }
    return true;
}

static void bind_read(const struct read_req *r, char limit[24], char bytes[24],
                      const char **stmt, const char *values[3], int *nvalues)
{
    snprintf(limit, 24, "%zu", r->limit);
    /* 0 (no bound) as the largest byte count PostgreSQL's bigint comparison takes. */
    snprintf(bytes, 24, "%zu", r->max_bytes ? r->max_bytes : (size_t)INT64_MAX);
    if (!r->list) {
        *stmt = "get";
        values[0] = r->key;
        *nvalues = 1;
    } else if (r->key[0] == '\0') {
        *stmt = "list_first";
        values[0] = limit;
        values[1] = bytes;
        *nvalues = 2;
    } else {
        *stmt = "list_after";
        values[0] = r->key;
        values[1] = limit;
        values[2] = bytes;
        *nvalues = 3;
    }
}

/* One round trip for batch[0..n) on the reader's connection. */
static void run_batch(struct reader *rd, struct read_req **batch, size_t n)
{
    struct pg_store *st = rd->st;
    PGconn *conn = rd->link.conn;
    bool cancelled = false, broken = false;
    uint64_t given_up_at = 0;
    size_t i = 0;

    pg_link_wait_begin(&rd->link, pg_now_ns());
    for (size_t k = 0; k < n && !broken; k++) {
        char limit[24], bytes[24];
        const char *values[3], *stmt;
        int nvalues;
        bind_read(batch[k], limit, bytes, &stmt, values, &nvalues);
        /* Text parameters, binary results (resultFormat 1): lengths exact, arrays unquoted. */
        broken = !PQsendQueryPrepared(conn, stmt, nvalues, values, NULL, NULL, 1);
    }
    broken = broken || !PQpipelineSync(conn) || !pg_flush_all(st, &rd->link);
    atomic_fetch_add_explicit(&st->st_round_trips, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->st_reads, n, memory_order_relaxed);

    /* Each query's results end with a NULL; the batch ends with PGRES_PIPELINE_SYNC. */
    for (i = 0; i < n && !broken; i++) {
        PGresult *res, *first = NULL;
        if (!wait_result(rd, batch, i, n, &cancelled, &given_up_at)) {
            broken = true;
            break;
        }
        while ((res = PQgetResult(conn)) != NULL) {
            if (!first)
                first = res;
            else
                PQclear(res);
            if (!wait_result(rd, batch, i, n, &cancelled, &given_up_at)) {
                broken = true;
                break;
            }
        }
        if (!broken)
            finish_read(rd, batch[i], first);
        PQclear(first);
    }
    if (!broken) {
        PGresult *res;
        if (wait_result(rd, batch, n, n, &cancelled, &given_up_at) &&
            (res = PQgetResult(conn)) != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC)
            PQclear(res);
        else
            broken = true;
    }
    if (broken) {
        if (!cancelled)
            log_msg(LOG_WARNING, "PostgreSQL at %s: a read connection broke: %.200s", st->shown,
                    PQerrorMessage(conn));
        for (; i < n; i++)
            answer_read(batch[i], BOOKS_EUNAVAIL, NULL, 0, NULL);
        pg_link_down(st, &rd->link, false);
    }
    pg_link_wait_end(&rd->link);
}

/* ---- the queue ------------------------------------------------------------------------------- */

/* Unlinks r (its predecessor prev, NULL for the head) from the queue. st->mu held. */
static void unlink_req(struct pg_store *st, struct read_req *prev, struct read_req *r)
{
    if (prev)
        prev->next = r->next;
    else
        st->head = r->next;
    if (st->tail == r)
        st->tail = prev;
    st->n_queued--;
}

/* Takes up to READ_BATCH_MAX queued requests (at most LISTS_PER_BATCH of them pages), in queue
 * order, skipping pages past that cap for the next batch. st->mu held. */
static size_t take_batch(struct pg_store *st, struct read_req **batch)
{
    struct read_req *prev = NULL, *r = st->head;
    size_t n = 0, lists = 0;
    while (r && n < READ_BATCH_MAX) {
        struct read_req *next = r->next;
        if (r->list && lists == LISTS_PER_BATCH) {
            prev = r;
        } else {
            lists += r->list;
            unlink_req(st, prev, r);
            batch[n++] = r;
        }
        r = next;
    }
    if (st->head)
        pthread_cond_signal(&st->cv); /* more for another reader */
    return n;
}

/* The reads of batch[0..n) marked `again` (finish_read), once more on the reader's new
 * connection, as one batch; without one (`replaced` false) they are answered BOOKS_EUNAVAIL. */
static void run_again(struct reader *rd, struct read_req **batch, size_t n, bool replaced)
{
    struct read_req *again[READ_BATCH_MAX];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct read_req *r = batch[i];
        if (!r->again)
            continue;
        r->again = false;
        r->retried = true;
        if (!replaced)
            answer_read(r, BOOKS_EUNAVAIL, NULL, 0, NULL);
        else
            again[m++] = r;
    }
    if (m)
        run_batch(rd, again, m);
    for (size_t i = 0; i < m; i++)
        if (again[i]->again) { /* met it again: the column really is missing */
            again[i]->again = false;
            answer_read(again[i], BOOKS_EREFUSED, NULL, 0, NULL);
        }
    rd->contracted = false;
}

/* Makes sure the reader has a connection, waiting out the backoff (woken early by closing). True
 * when it has one; false when closing or still down. st->mu not held. */
static bool reader_link(struct reader *rd)
{
    struct pg_store *st = rd->st;
    if (pg_link_ensure(st, &rd->link, false) == 0)
        return true;
    pthread_mutex_lock(&st->mu);
    if (!st->closing) {
        struct timespec until;
        uint64_t at = rd->link.retry_at_ns;
        /* pthread condition variables here wait on CLOCK_MONOTONIC (pg_store_init_sync). */
        until.tv_sec = (time_t)(at / 1000000000u);
        until.tv_nsec = (long)(at % 1000000000u);
        pthread_cond_timedwait(&st->cv, &st->mu, &until);
    }
    pthread_mutex_unlock(&st->mu);
    return false;
}

void *pg_reader_main(void *arg)
{
    struct reader *rd = arg;
    struct pg_store *st = rd->st;
    struct read_req *batch[READ_BATCH_MAX];

    pthread_setname_np(pthread_self(), "books-pg-read");
    for (;;) {
        size_t n = 0;
        if (!rd->link.conn && !reader_link(rd)) {
            pthread_mutex_lock(&st->mu);
            bool done = st->closing;
            pthread_mutex_unlock(&st->mu);
            if (done) {
                reader_quiesce(rd);
                return NULL;
            }
            continue;
        }
        pthread_mutex_lock(&st->mu);
        if (!st->head && !st->closing) {
            struct timespec until;
            uint64_t at = pg_now_ns() + IDLE_CHECK_NS;
            until.tv_sec = (time_t)(at / 1000000000u);
            until.tv_nsec = (long)(at % 1000000000u);
            pthread_cond_timedwait(&st->cv, &st->mu, &until);
        }
        if (st->closing && !st->head) {
            pthread_mutex_unlock(&st->mu);
            reader_quiesce(rd);
            return NULL;
        }
        n = take_batch(st, batch);
        pthread_mutex_unlock(&st->mu);
        if (n == 0) {
            /* Idle: a connection the server closed (a restart, pg_terminate_backend) is noticed
             * and replaced now rather than when a caller's query meets it. */
            (void)pg_link_ensure(st, &rd->link, false);
            continue;
        }
        /* A cancel still on its way could hit this batch: wait for it (or lose the connection),
         * then a connection the server closed while it was idle is replaced before the batch. */
        reader_quiesce(rd);
        if (pg_link_ensure(st, &rd->link, false) != 0) {
            for (size_t i = 0; i < n; i++)
                answer_read(batch[i], BOOKS_EUNAVAIL, NULL, 0, NULL);
        } else {
            run_batch(rd, batch, n);
        }
        if (rd->contracted) {
            /* Its statements are for a layout the database no longer has: a new connection
             * prepares version 3's (setup), and the reads that met it go again on it. */
            rd->contracted = false;
            bool replaced = rd->link.conn && pg_link_replace(st, &rd->link, false) == 0;
            run_again(rd, batch, n, replaced);
        }
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
    }
}

/* The sweeper: answers queued requests at their deadline (the readers may all be busy, or be
 * reconnecting) and, once the store drains, every queued request. */
void *pg_sweeper_main(void *arg)
{
    struct pg_store *st = arg;
    pthread_setname_np(pthread_self(), "books-pg-sweep");
    pthread_mutex_lock(&st->mu);
    for (;;) {
        uint64_t now = pg_now_ns(), next = now + 1000000000u;
        bool drain = draining(st);
        struct read_req *expired = NULL, *prev = NULL, *r = st->head;
        while (r) {
            struct read_req *following = r->next;
            if (drain || (r->deadline_ns && r->deadline_ns <= now)) {
                unlink_req(st, prev, r);
                r->next = expired;
                expired = r;
            } else {
                if (r->deadline_ns && r->deadline_ns < next)
                    next = r->deadline_ns;
                prev = r;
            }
            r = following;
        }
        if (expired) {
            pthread_mutex_unlock(&st->mu);
            while (expired) {
                r = expired;
                expired = r->next;
                answer_read(r, drain ? BOOKS_EUNAVAIL : BOOKS_EDEADLINE, NULL, 0, NULL);
                free(r);
            }
            pthread_mutex_lock(&st->mu);
            continue;
        }
        if (st->sweeper_stop)
            break;
        st->sweep_at_ns = next;
        struct timespec until = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        pthread_cond_timedwait(&st->sweep_cv, &st->mu, &until);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

void pg_reads_refuse_queued(struct pg_store *st)
{
    struct read_req *all;
    pthread_mutex_lock(&st->mu);
    all = st->head;
    st->head = st->tail = NULL;
    st->n_queued = 0;
    pthread_mutex_unlock(&st->mu);
    while (all) {
        struct read_req *r = all;
        all = r->next;
        answer_read(r, BOOKS_EUNAVAIL, NULL, 0, NULL);
        free(r);
    }
}

static void enqueue(struct pg_store *st, struct read_req *r)
{
    int refused = 0;
    r->next = NULL;
    pthread_mutex_lock(&st->mu);
    if (st->closing || draining(st))
        refused = BOOKS_EUNAVAIL;
    else if (!atomic_load_explicit(&st->readers_up_now, memory_order_relaxed) ||
             atomic_load_explicit(&st->unreachable, memory_order_relaxed))
        refused = BOOKS_EUNAVAIL; /* no reader has a connection, no primary: an outage; fail fast */
    else if (st->max_queued && st->n_queued >= st->max_queued)
        refused = BOOKS_EBUSY;
    if (!refused) {
        if (st->tail)
            st->tail->next = r;
        else
            st->head = r;
        st->tail = r;
        st->n_queued++;
        pthread_cond_signal(&st->cv);
        if (r->deadline_ns && r->deadline_ns < st->sweep_at_ns)
            pthread_cond_signal(&st->sweep_cv);
    }
    pthread_mutex_unlock(&st->mu);
    if (refused) {
        answer_read(r, refused, NULL, 0, NULL);
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
        done(arg, BOOKS_ENOTFOUND, NULL, NULL);
        return;
    }
    r = new_req(name);
    if (!r) {
        done(arg, BOOKS_ENOMEM, NULL, NULL);
        return;
    }
    r->deadline_ns = deadline_ns;
    r->get_done = done;
    r->arg = arg;
    enqueue(st, r);
}

void pg_list_async(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                   struct store_book **out, uint64_t deadline_ns, store_list_done_fn done,
                   void *arg)
{
    struct pg_store *st = (struct pg_store *)s;
    struct read_req *r;

    if (limit == 0) {
        done(arg, 0, 0, NULL);
        return;
    }
    r = new_req(after_name);
    if (!r) {
        done(arg, BOOKS_ENOMEM, 0, NULL);
        return;
    }
    r->list = true;
    r->limit = limit;
    r->max_bytes = max_bytes;
    r->out = out;
    r->deadline_ns = deadline_ns;
    r->list_done = done;
    r->arg = arg;
    enqueue(st, r);
}
