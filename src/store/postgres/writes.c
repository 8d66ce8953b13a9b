/* writes.c: the postgresql: store's creates (pg.h), as the commit pipeline's backend: its
 * committer thread owns the write connection and writes a batch in rounds, each one transaction
 * sent in one write and answered in one round trip:
 *   BEGIN; SET LOCAL statement_timeout; INSERT ... SELECT FROM unnest(the round's columns)
 *   ON CONFLICT DO NOTHING RETURNING name; [SELECT the rows of the round's request ids]; COMMIT
 *
 * An exact outcome for every create:
 *  - A round never holds two creates of one name or one request id (the later one waits for the
 *    next round, which answers it against what the first left: ALREADY_EXISTS, or the first's
 *    book for a retry), so each name the INSERT returns is exactly one create's own row: that
 *    create is stored (0). A create the INSERT did not return met a row that holds its name or its
 *    request id (ON CONFLICT DO NOTHING covers every unique index): when the round's look-up finds
 *    its request id, store_request_matches() decides (the book that request made, or
 *    BOOKS_EREUSED); otherwise its name is taken (BOOKS_EEXIST). The unique index on request_id
 *    makes a transaction that claims an id wait for any other that claimed it, on any instance,
 *    so of concurrent duplicates one makes the book.
 *  - A COMMIT whose CommandComplete arrived committed, whatever is lost after it (the Sync's
 *    ReadyForQuery, the connection).
 *  - A round whose COMMIT's result is lost with the connection may have committed. Its creates
 *    without a request id are answered BOOKS_EUNKNOWN at once (a row with their name could be
 *    anyone's). Those with one are looked up by request id on a new connection as soon as a
 *    primary answers (the old one's successor after a failover), with the fingerprint compared:
 *    found, they are settled as above; not found, they go again (the unique index settles a
 *    transaction of the lost connection that is still committing). Each waits for a primary
 *    until its own deadline, and not at all once the watchdog has found the database silent:
 *    then BOOKS_EUNKNOWN. Such a create never gets a definite error afterwards: only OK, the
 *    outcome of a transaction of its own, or BOOKS_EUNKNOWN.
 *  - While no primary is known (pg_reach) nothing waits for one but those lost creates: a batch
 *    is answered BOOKS_EUNAVAIL at once, and so are the creates queued behind a lost round.
 *  - A session that takes no writes (SQLSTATE 25006, read_only_sql_transaction: a standby, or a
 *    primary made read-only) fails the round with BOOKS_EUNAVAIL (nothing of it committed) and is
 *    dropped: the next attempt finds the primary; nothing is ever written through it.
 *  - A caller's deadline: the round's statement_timeout is its earliest (or the store's, when
 *    smaller); when it fires, the creates whose deadline passed are answered BOOKS_EDEADLINE
 *    (nothing of theirs was written) and the others go again. Every time written into SQL is
 *    clamped to what PostgreSQL takes (statement_timeout at most INT_MAX ms).
 *  - One row the database refuses (a CHECK, a trigger, a size limit: SQLSTATE classes 22, 23, 54)
 *    fails the round: it is split in halves and each half goes again, until the refused create
 *    fails alone (BOOKS_EREFUSED) and every other one commits.
 *  - Anything else fails the round's creates with its mapped error (pg_error): nothing of the
 *    round committed.
 * While the database is expanded (schema.c), each row also gets the columns of version 2, which
 * servers of 363d47a read (store_legacy.h), and the request's legacy fingerprint in request_hash,
 * which they compare. Parameters are arrays in PostgreSQL's binary format (rows.h). */
#include "pg.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"
#include "books/store_legacy.h"
#include "books/store_postgres.h"
#include "rows.h"

#define INSERT_HEAD                                                                                \
    "INSERT INTO books (name, book, request_id, request_fingerprint, created_at"
#define INSERT_FROM                                                                                \
    " FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[]"
/* One statement for any round size: the round arrives as one array parameter per column,
 * unnested back into rows. Against one VALUES row per book this spares PostgreSQL parsing and
 * planning a statement of its own for every round size it meets (docs/performance.md, "Stores"). */
static const char insert_v3_sql[] =
    INSERT_HEAD ") SELECT t.n, t.b, t.r::uuid, t.f, "
                "CASE WHEN t.r IS NULL THEN NULL ELSE now() END" INSERT_FROM
                ") AS t(n, b, r, f) ON CONFLICT DO NOTHING RETURNING name";
static const char insert_expanded_sql[] =
    INSERT_HEAD ", request_hash, display_name, publisher, authors) SELECT t.n, t.b, t.r::uuid, "
                "t.f, CASE WHEN t.r IS NULL THEN NULL ELSE now() END, t.h, t.d, t.p, t.a::text[]"
                INSERT_FROM ", $5::bytea[], $6::text[], $7::text[], $8::text[]) "
                "AS t(n, b, r, f, h, d, p, a) ON CONFLICT DO NOTHING RETURNING name";
/* The rows of request ids ($1, the round's ids), as they are: in the round's transaction after
 * its INSERT, or after a lost connection. Columns: id, fingerprint, legacy fingerprint, then the
 * book's (rows.h). */
#define REQUESTS_SQL(columns)                                                                      \
    "SELECT b.request_id::text, b.request_fingerprint, b.request_hash, " columns                   \
    " FROM books b WHERE b.request_id = ANY($1::text[]::uuid[])"
static const char requests_v3_sql[] = REQUESTS_SQL(STORE_POSTGRES_COLUMNS_V3);
static const char requests_expanded_sql[] = REQUESTS_SQL(STORE_POSTGRES_COLUMNS_EXPANDED);
/* Request ids older than the retention are forgotten a few at a time, between batches. */
static const char purge_sql[] =
    "UPDATE books SET request_id = NULL, request_fingerprint = NULL, request_hash = NULL, "
    "created_at = NULL WHERE name IN (SELECT name FROM books WHERE request_id IS NOT NULL AND "
    "created_at < now() - make_interval(secs => $1::int) LIMIT 1000)";

/* How long the writer tries to learn what happened to a create without a deadline whose
 * transaction's connection broke. */
#define RESOLVE_MAX_NS (10ull * 1000000000u)
/* How often a lost round's creates look whether another connection has found a primary. */
#define RESOLVE_POLL_NS (20ull * 1000000u)
#define PURGE_EVERY_NS (60ull * 1000000000u)
/* How long a connection may stay silent while nothing bounds the transaction. */
#define UNBOUNDED_SILENCE_NS (300ull * 1000000000u)
/* Most parameters one INSERT takes (the expanded layout's). */
#define MAX_PARAMS 8

/* One create of the batch, as the writer follows it. */
struct entry {
    struct commit_item *it;
    bool settled;        /* answered (commit_pipeline_answer_now) */
    bool maybe;          /* a round of it was lost with its connection: it may be stored */
    uint64_t lost_at_ns; /* when it first was */
};

struct pg_writer {
    struct pg_array col[MAX_PARAMS]; /* the INSERT's parameters, one array per column */
    char *literals;                  /* the round's authors literals (expanded), one after another */
    size_t literals_cap;
    struct store_text *authors; /* STORE_LEGACY_MAX_AUTHORS, for store_legacy_fields() */
    struct entry *entries;      /* the batch: WRITE_BATCH_MAX */
};

int pg_writer_new(struct pg_store *st)
{
    static const uint32_t oids[MAX_PARAMS] = {PG_TEXT_OID,  PG_BYTEA_OID, PG_TEXT_OID,
                                              PG_BYTEA_OID, PG_BYTEA_OID, PG_TEXT_OID,
                                              PG_TEXT_OID,  PG_TEXT_OID};
    struct pg_writer *w = calloc(1, sizeof *w);
    if (!w)
        return BOOKS_ENOMEM;
    for (int c = 0; c < MAX_PARAMS; c++)
        pg_array_init(&w->col[c], oids[c]);
    w->authors = malloc(STORE_LEGACY_MAX_AUTHORS * sizeof *w->authors);
    w->entries = malloc(PG_WRITE_BATCH_MAX * sizeof *w->entries);
    if (!w->authors || !w->entries) {
        pg_writer_free(w);
        return BOOKS_ENOMEM;
    }
    st->w = w;
    return 0;
}

void pg_writer_free(struct pg_writer *w)
{
    if (!w)
        return;
    for (int c = 0; c < MAX_PARAMS; c++)
        pg_array_free(&w->col[c]);
    free(w->literals);
    free(w->authors);
    free(w->entries);
    free(w);
}

/* Whether the writer's connection was set up for the expanded layout (its statements follow). */
static bool expanded(const struct pg_store *st) { return st->writer.layout == PG_LAYOUT_EXPANDED; }

/* Answers `e` with rc now (once: a create already settled is left alone). */
static void settle(struct entry *e, int rc)
{
    if (e->settled)
        return;
    e->settled = true;
    commit_pipeline_answer_now(e->it, rc);
}

/* An error for a create that may be stored already (a lost round) is BOOKS_EUNKNOWN: it never
 * gets a definite error it cannot be sure of. */
static void settle_error(struct entry *e, int rc)
{
    settle(e, rc != 0 && e->maybe ? BOOKS_EUNKNOWN : rc);
}

/* ---- parameters ---------------------------------------------------------------------------- */

/* The round's columns as array parameters (INSERT_HEAD's order; the expanded layout adds the
 * legacy fingerprint and the columns of version 2). A create whose body is not a Book the old
 * columns can hold is settled BOOKS_EINTERNAL here and left out: *n shrinks. */
static int bind_round(struct pg_store *st, struct entry **v, size_t *n, int *n_params)
{
    struct pg_writer *w = st->w;
    size_t kept = 0, lit = 0;
    int ncol = expanded(st) ? 8 : 4, rc = 0;

    for (int c = 0; c < MAX_PARAMS; c++)
        pg_array_reset(&w->col[c]);
    for (size_t i = 0; i < *n && rc == 0; i++) {
        const struct commit_item *it = v[i]->it;
        const struct store_book *b = it->book;
        bool id = it->request_id[0] != '\0';
        size_t len;
        const uint8_t *body = store_book_body(b, &len);
        struct store_legacy_book lb;

        if (expanded(st)) {
            if (store_legacy_fields(body, len, w->authors, STORE_LEGACY_MAX_AUTHORS, &lb) != 0) {
                log_msg(LOG_ERROR, "PostgreSQL at %s: the book %s cannot be given the columns "
                        "of version 2", st->shown, b->name);
                settle_error(v[i], BOOKS_EINTERNAL);
                continue;
            }
            size_t need = lit + pg_authors_literal_size(lb.authors, lb.n_authors);
            if (need > w->literals_cap) {
                size_t cap = need * 2;
                char *more = realloc(w->literals, cap);
                if (!more) {
                    rc = BOOKS_ENOMEM;
                    break;
                }
                w->literals = more;
                w->literals_cap = cap;
            }
            size_t l = pg_authors_literal(lb.authors, lb.n_authors, w->literals + lit,
                                          w->literals_cap - lit);
            rc = pg_array_add(&w->col[4], id ? it->legacy_fingerprint : NULL,
                              STORE_FINGERPRINT_BYTES);
            if (rc == 0)
                rc = pg_array_add(&w->col[5], (const uint8_t *)lb.display_name.p,
                                  lb.display_name.len);
            if (rc == 0)
                rc = pg_array_add(&w->col[6], (const uint8_t *)lb.publisher.p, lb.publisher.len);
            if (rc == 0)
                rc = pg_array_add(&w->col[7], (const uint8_t *)w->literals + lit, l);
            lit += l + 1;
        }
        if (rc == 0)
            rc = pg_array_add(&w->col[0], (const uint8_t *)b->name, b->name_len);
        if (rc == 0)
            rc = pg_array_add(&w->col[1], body, len);
        if (rc == 0)
            rc = pg_array_add(&w->col[2], id ? (const uint8_t *)it->request_id : NULL,
                              STORE_REQUEST_ID_CHARS);
        if (rc == 0)
            rc = pg_array_add(&w->col[3], id ? it->fingerprint : NULL, STORE_FINGERPRINT_BYTES);
        v[kept++] = v[i];
    }
    *n = kept;
    *n_params = ncol;
    return rc;
}

/* ---- results ------------------------------------------------------------------------------- */

/* Reads the next result of the writer's pipeline, waiting while the connection keeps answering
 * within `silence` of the last byte; NULL ends a query's results. *broken when the connection
 * failed or fell silent for longer than that. */
static PGresult *next_result(struct link *l, uint64_t silence, bool *broken)
{
    PGconn *conn = l->conn;
    uint64_t heard = pg_now_ns();

    while (PQisBusy(conn)) {
        uint64_t now = pg_now_ns();
        if (now >= heard + silence) {
            *broken = true;
            return NULL;
        }
        uint64_t ms = (heard + silence - now + 999999) / 1000000;
        struct pollfd p = {PQsocket(conn), POLLIN, 0};
        int n = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (n > 0) {
            if (!PQconsumeInput(conn)) {
                *broken = true;
                return NULL;
            }
            heard = pg_now_ns();
            pg_link_heard(l, heard);
        }
    }
    return PQgetResult(conn);
}

/* One query's results: the first kept (the caller PQclear()s it), the rest dropped. */
static PGresult *query_result(struct link *l, uint64_t silence, bool *broken)
{
    PGresult *first = next_result(l, silence, broken), *more;
    while (!*broken && first && (more = next_result(l, silence, broken)) != NULL)
        PQclear(more);
    return first;
}

/* The row of `requests` (REQUESTS_SQL's result) with request id `id`, or -1. */
static int request_row(const PGresult *requests, const char *id)
{
    for (int r = 0; requests && r < PQntuples(requests); r++)
        if ((size_t)PQgetlength(requests, r, 0) == STORE_REQUEST_ID_CHARS &&
            memcmp(PQgetvalue(requests, r, 0), id, STORE_REQUEST_ID_CHARS) == 0)
            return r;
    return -1;
}

/* Settles `e` from row r of a REQUESTS_SQL result: the same request (the book it made) or
 * another (BOOKS_EREUSED). */
static void settle_by_request(struct pg_store *st, struct entry *e, const PGresult *requests,
                              int r)
{
    struct commit_item *it = e->it;
    struct store_damage damage;
    const uint8_t *fp = PQgetisnull(requests, r, 1) ? NULL
                                                    : (const uint8_t *)PQgetvalue(requests, r, 1);
    const uint8_t *legacy =
        PQgetisnull(requests, r, 2) ? NULL : (const uint8_t *)PQgetvalue(requests, r, 2);
    if (!store_request_matches(it->fingerprint, it->legacy_fingerprint, fp, fp ? (size_t)PQgetlength(requests, r, 1) : 0, legacy,
                               legacy ? (size_t)PQgetlength(requests, r, 2) : 0)) {
        settle(e, BOOKS_EREUSED);
        return;
    }
    int rc = pg_row_book(requests, r, 3, &it->made, &damage);
    if (rc == BOOKS_ECORRUPT)
        log_msg(LOG_ERROR, "PostgreSQL at %s: %s is not a book: %s", st->shown, damage.where,
                damage.why);
    settle_error(e, rc);
}

static int cmp_name(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    return strcmp(x->it->book->name, y->it->book->name);
}

/* Settles every create of the round from its own row: the names the INSERT returned (each one
 * create's: the round's names are distinct) and the rows of its request ids. */
static int settle_round(struct pg_store *st, const PGresult *insert, const PGresult *requests,
                        struct entry **v, size_t n)
{
    struct entry **by_name = malloc((n ? n : 1) * sizeof *by_name);
    bool *inserted = calloc(n ? n : 1, sizeof *inserted);
    if (!by_name || !inserted) {
        free(by_name);
        free(inserted);
        return BOOKS_ENOMEM;
    }
    memcpy(by_name, v, n * sizeof *v);
    qsort(by_name, n, sizeof *by_name, cmp_name);
    for (int r = 0; r < PQntuples(insert); r++) {
        size_t lo = 0, hi = n;
        const char *name = PQgetvalue(insert, r, 0);
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            int c = strcmp(by_name[mid]->it->book->name, name);
            if (c == 0) {
                inserted[mid] = true;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct entry *e = by_name[i];
        int r;
        if (inserted[i])
            settle(e, 0); /* its own row */
        else if (e->it->request_id[0] && (r = request_row(requests, e->it->request_id)) >= 0)
            settle_by_request(st, e, requests, r);
        else
            settle(e, BOOKS_EEXIST);
    }
    free(by_name);
    free(inserted);
    return 0;
}

/* ---- one round ------------------------------------------------------------------------------ */

enum outcome {
    COMMITTED,   /* every create of the round is settled */
    FAILED,      /* nothing committed: rc says why */
    ROW_REFUSED, /* nothing committed: one row's data (pg_row_refused) */
    TIMED_OUT,   /* nothing committed: the statement_timeout of a caller's deadline fired */
    CONTRACTED,  /* nothing committed: an expanded statement met a schema another server has
                  * contracted meanwhile (pg_layout_gone) */
    LOST,        /* the connection broke once the transaction was on its way: it may have
                  * committed */
};

/* The earliest deadline of v[0..n), 0 when none has one. */
static uint64_t earliest_deadline(struct entry *const *v, size_t n)
{
    uint64_t first = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = v[i]->it->deadline_ns;
        if (d && (!first || d < first))
            first = d;
    }
    return first;
}

/* Ends an aborted transaction (its INSERT failed, so COMMIT was skipped) before the next round. */
static bool roll_back(struct pg_store *st, PGconn *conn, uint64_t silence)
{
    PGresult *rb = NULL, *rs = NULL;
    bool broken = !PQsendQueryParams(conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
                  !PQpipelineSync(conn) || !pg_flush_all(st, &st->writer);
    if (!broken)
        rb = query_result(&st->writer, silence, &broken);
    if (!broken)
        rs = next_result(&st->writer, silence, &broken);
    PQclear(rb);
    PQclear(rs);
    return !broken;
}

/* The first result of res[0..n) that reports an error, or NULL. */
static PGresult *first_error(PGresult *const *res, int n)
{
    for (int q = 0; q < n; q++)
        if (res[q] && PQresultStatus(res[q]) == PGRES_FATAL_ERROR)
            return res[q];
    return NULL;
}

/* One transaction for the round v[0..*n) (distinct names and request ids), in one round trip.
 * Creates settled while binding leave v; *n is what remains. */
static enum outcome write_round(struct pg_store *st, struct entry **v, size_t *n_io, int *rc_out)
{
    PGconn *conn = st->writer.conn;
    PGresult *res[5] = {NULL}, *sync = NULL; /* BEGIN, SET, INSERT, SELECT, COMMIT */
    bool broken = false, sent = false, with_ids = false, shortened = false;
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS], formats[MAX_PARAMS], n_params = 0;
    char set_timeout[64], why[256] = "";
    uint64_t timeout_ms = (uint64_t)st->prm.statement_timeout_ms, first;
    enum outcome out = FAILED;
    size_t n = *n_io;
    int rc = bind_round(st, v, &n, &n_params);

    *n_io = n;
    *rc_out = 0;
    if (rc != 0) {
        *rc_out = rc;
        return FAILED;
    }
    if (n == 0)
        return COMMITTED; /* every create of it was settled while binding */
    for (size_t i = 0; i < n; i++)
        with_ids |= v[i]->it->request_id[0] != '\0';
    for (int c = 0; c < n_params; c++) {
        values[c] = pg_array_bytes(&st->w->col[c]);
        lengths[c] = (int)pg_array_len(&st->w->col[c]);
        formats[c] = 1;
    }
    first = earliest_deadline(v, n);
    if (first) {
        uint64_t now = pg_now_ns(), left_ms = first > now ? (first - now) / 1000000u : 0;
        if (left_ms < 1)
            left_ms = 1;
        if (!timeout_ms || left_ms < timeout_ms) {
            timeout_ms = left_ms;
            shortened = true;
        }
    }
    if (timeout_ms > INT_MAX) /* statement_timeout's range: 0 .. INT_MAX milliseconds */
        timeout_ms = INT_MAX;
    /* How long the connection may stay silent: the transaction's statements end by then. */
    uint64_t silence = timeout_ms ? (timeout_ms + 5000u) * 1000000u : UNBOUNDED_SILENCE_NS;
    snprintf(set_timeout, sizeof set_timeout, "SET LOCAL statement_timeout = %llu",
             (unsigned long long)timeout_ms);
    pg_link_wait_begin(&st->writer, pg_now_ns());
    broken =
        !PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(conn, set_timeout, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(conn, expanded(st) ? insert_expanded_sql : insert_v3_sql, n_params,
                           NULL, values, lengths, formats, 1) ||
        (with_ids && !PQsendQueryParams(conn, expanded(st) ? requests_expanded_sql
                                                           : requests_v3_sql,
                                        1, NULL, values + 2, lengths + 2, formats + 2, 1));
    /* Once COMMIT is queued, libpq may send it (it flushes a full buffer by itself): from here on
     * the transaction may reach the server whole. */
    sent = !broken && PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    broken = !sent || !PQpipelineSync(conn) || !pg_flush_all(st, &st->writer);
    for (int q = 0; q < 5 && !broken; q++)
        if (q != 3 || with_ids)
            res[q] = query_result(&st->writer, silence, &broken);
    if (!broken)
        sync = next_result(&st->writer, silence, &broken);

    PGresult *insert = res[2], *requests = res[3], *commit = res[4], *error = first_error(res, 5);
    if (commit && PQresultStatus(commit) == PGRES_COMMAND_OK &&
        strcmp(PQcmdStatus(commit), "COMMIT") == 0) {
        /* Its CommandComplete arrived: committed, whatever came (or did not come) after it. */
        if (settle_round(st, insert, requests, v, n) != 0)
            /* No memory to tell which were inserted: each is stored or its name was taken. */
            for (size_t i = 0; i < n; i++) {
                v[i]->maybe = true;
                settle_error(v[i], BOOKS_EUNKNOWN);
            }
        out = COMMITTED;
    } else if (error) {
        /* A statement failed (the INSERT, or BEGIN, SET, the look-up, COMMIT): the transaction
         * aborted; nothing of it committed. */
        rc = pg_error(conn, error);
        snprintf(why, sizeof why, "%s", PQresultErrorMessage(error));
        why[strcspn(why, "\n")] = '\0';
        out = error == insert && pg_row_refused(insert)  ? ROW_REFUSED
              : rc == BOOKS_EDEADLINE && shortened       ? TIMED_OUT
              : expanded(st) && pg_layout_gone(error)    ? CONTRACTED
                                                         : FAILED;
    } else if (broken && sent) {
        out = LOST; /* the COMMIT may have reached the server, and its answer did not come back */
    } else {
        rc = BOOKS_EUNAVAIL; /* nothing went out, or no answer says what happened: not committed */
    }
    if (out == FAILED && rc == BOOKS_EDEADLINE)
        rc = BOOKS_EUNAVAIL; /* the store's own statement_timeout: a stalled database */
    if (out == FAILED && pg_read_only(error))
        broken = true; /* a session that takes no writes (25006): drop it, find the primary */
    if (out != COMMITTED && out != LOST && !broken && PQstatus(conn) == CONNECTION_OK)
        broken = !roll_back(st, conn, silence); /* end the aborted transaction (harmless if over) */
    if (!why[0])
        snprintf(why, sizeof why, "%s", broken ? "the connection broke" : PQerrorMessage(conn));
    if (out != COMMITTED && out != TIMED_OUT && out != CONTRACTED)
        log_msg(LOG_WARNING, "PostgreSQL at %s: a transaction of %zu creates %s (%s): %.200s",
                st->shown, n, out == LOST ? "lost its connection before its COMMIT's answer"
                                          : "failed",
                out == LOST ? "BOOKS_EUNKNOWN" : books_err_name(rc), why);
    for (int q = 0; q < 5; q++)
        PQclear(res[q]);
    PQclear(sync);
    pg_link_wait_end(&st->writer);
    if (broken || PQstatus(conn) != CONNECTION_OK)
        pg_link_down(st, &st->writer, true);
    *rc_out = rc;
    return out;
}

/* ---- a lost round ----------------------------------------------------------------------------- */

/* Waits until `until_ns`, or sooner once another connection of the store finds a primary (the
 * epoch moves from `epoch`), in slices of RESOLVE_POLL_NS. */
static void wait_for_primary(struct pg_store *st, uint64_t epoch, uint64_t until_ns)
{
    for (;;) {
        uint64_t now = pg_now_ns();
        if (now >= until_ns || atomic_load(&st->epoch) != epoch)
            return;
        uint64_t step = until_ns - now < RESOLVE_POLL_NS ? until_ns - now : RESOLVE_POLL_NS;
        nanosleep(&(struct timespec){(time_t)(step / 1000000000u), (long)(step % 1000000000u)},
                  NULL);
    }
}

/* The creates of v[0..n) whose round was lost (each `maybe`): looks their request ids up on a new
 * connection as soon as a primary answers (the writer's own attempts, at once then with the short
 * backoff, and any other connection's: the epoch), settling each found (store_request_matches);
 * those not found stay open (to go again). Each waits for that until its own deadline
 * (RESOLVE_MAX_NS after its loss without one), or not at all once the watchdog has found the
 * database silent (pg_store.silenced: the brief gives those UNKNOWN at once): then it is answered
 * BOOKS_EUNKNOWN. Meanwhile, while no primary is known, the creates queued behind are answered
 * BOOKS_EUNAVAIL at once (commit_pipeline_refuse_queued) rather than held up. */
static void resolve(struct pg_store *st, struct entry **v, size_t n)
{
    struct pg_array ids;
    pg_array_init(&ids, PG_TEXT_OID);
    for (;;) {
        uint64_t now = pg_now_ns(), next = 0, epoch = atomic_load(&st->epoch);
        size_t open = 0;
        pg_array_reset(&ids);
        for (size_t i = 0; i < n; i++) {
            struct entry *e = v[i];
            if (e->settled)
                continue;
            uint64_t until = e->it->deadline_ns ? e->it->deadline_ns
                                                : e->lost_at_ns + RESOLVE_MAX_NS;
            if (now >= until || atomic_load(&st->silenced)) {
                settle_error(e, BOOKS_EUNKNOWN);
                continue;
            }
            if (!next || until < next)
                next = until;
            open++;
            (void)pg_array_add(&ids, (const uint8_t *)e->it->request_id, STORE_REQUEST_ID_CHARS);
        }
        if (open == 0)
            break;
        if (atomic_load(&st->unreachable))
            commit_pipeline_refuse_queued(st->pipeline, BOOKS_EUNAVAIL);
        if (!ids.failed && pg_link_ensure_until(st, &st->writer, true, next) == 0) {
            PGconn *conn = st->writer.conn;
            PGresult *res = NULL, *sync = NULL;
            const char *values[1] = {pg_array_bytes(&ids)};
            int lengths[1] = {(int)pg_array_len(&ids)}, formats[1] = {1};
            pg_link_wait_begin(&st->writer, pg_now_ns());
            bool broken = !PQsendQueryParams(conn, expanded(st) ? requests_expanded_sql
                                                                : requests_v3_sql,
                                             1, NULL, values, lengths, formats, 1) ||
                          !PQpipelineSync(conn) || !pg_flush_all(st, &st->writer);
            now = pg_now_ns();
            uint64_t silence = next > now ? next - now : 1000000u;
            if (!broken)
                res = query_result(&st->writer, silence, &broken);
            if (!broken)
                sync = next_result(&st->writer, silence, &broken);
            pg_link_wait_end(&st->writer);
            PQclear(sync);
            if (!broken && res && PQresultStatus(res) == PGRES_TUPLES_OK) {
                size_t again = 0;
                for (size_t i = 0; i < n; i++) {
                    int r;
                    if (v[i]->settled)
                        continue;
                    if ((r = request_row(res, v[i]->it->request_id)) >= 0)
                        settle_by_request(st, v[i], res, r);
                    else
                        again++; /* not there: it goes again; the unique index settles a race */
                }
                PQclear(res);
                log_msg(LOG_INFO, "PostgreSQL at %s: after a lost connection, %zu of %zu creates "
                        "were found stored; %zu go again", st->shown, open - again, open, again);
                break;
            }
            PQclear(res);
            if (broken || PQstatus(conn) != CONNECTION_OK)
                pg_link_down(st, &st->writer, true);
        }
        /* Not reached yet: wait for the next attempt the backoff allows, a primary found by
         * another connection, or the next deadline. */
        now = pg_now_ns();
        uint64_t wake = atomic_load(&st->unreachable) ? next
                        : st->writer.retry_at_ns > now ? st->writer.retry_at_ns
                                                       : now + RESOLVE_POLL_NS;
        if (wake > next)
            wake = next;
        wait_for_primary(st, epoch, wake);
    }
    pg_array_free(&ids);
}

/* ---- a part of the batch ------------------------------------------------------------------------ */

/* Compacts v[0..*n) to the creates still open, answering those whose deadline has passed
 * (BOOKS_EDEADLINE: nothing of theirs was written; BOOKS_EUNKNOWN for one that may be). */
static void keep_open(struct entry **v, size_t *n)
{
    uint64_t now = pg_now_ns();
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        struct entry *e = v[i];
        if (e->settled)
            continue;
        if (e->it->deadline_ns && e->it->deadline_ns <= now) {
            settle_error(e, BOOKS_EDEADLINE);
            continue;
        }
        v[kept++] = e;
    }
    *n = kept;
}

/* For pick_round: an index into v, sorted by a key of its create (the name, or the request id),
 * then by index, so the first of equal keys is the earliest create. */
struct keyed {
    const char *key;
    size_t i;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Marks in later[] every create of v[0..n) that an earlier one shares `name` (false) or request id
 * (true) with. */
static void mark_later(struct entry **v, size_t n, bool by_id, struct keyed *k, bool *later)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct commit_item *it = v[i]->it;
        if (by_id && !it->request_id[0])
            continue;
        k[m++] = (struct keyed){by_id ? it->request_id : it->book->name, i};
    }
    qsort(k, m, sizeof *k, cmp_keyed);
    for (size_t j = 1; j < m; j++)
        if (strcmp(k[j].key, k[j - 1].key) == 0)
            later[k[j].i] = true;
}

/* Picks the next round out of v[0..n) (n >= 1) into round[]: in order, every create that no
 * earlier create of v shares its name or its request id with (the others wait for a later round,
 * by when the earlier one is settled). Sorting keeps it O(n log n) for a batch of
 * PG_WRITE_BATCH_MAX. Returns its size (at least 1: the first create is always in it). */
static size_t pick_round(struct entry **v, size_t n, struct entry **round)
{
    struct keyed *k = malloc((n ? n : 1) * sizeof *k);
    bool *later = calloc(n ? n : 1, sizeof *later);
    size_t m = 0;
    if (!k || !later) {
        /* Without memory to sort, one create at a time is a round of distinct creates. */
        free(k);
        free(later);
        round[0] = v[0];
        return 1;
    }
    mark_later(v, n, false, k, later);
    mark_later(v, n, true, k, later);
    for (size_t i = 0; i < n; i++)
        if (!later[i])
            round[m++] = v[i];
    free(k);
    free(later);
    return m;
}

/* Writes v[0..n) (a private array: it is compacted here) until every create is settled. Halves
 * are written recursively: 1024 creates nest 10 deep. */
static void write_part(struct pg_store *st, struct entry **v, size_t n)
{
    struct entry **round = malloc((n ? n : 1) * sizeof *round);
    if (!round) {
        for (size_t i = 0; i < n; i++)
            if (!v[i]->settled)
                settle_error(v[i], BOOKS_ENOMEM);
        return;
    }
    for (;;) {
        keep_open(v, &n);
        if (n == 0)
            break;
        /* No primary known (pg_reach): answered now, not held until the next attempt or their
         * deadline; the creates of a lost round that may be stored get BOOKS_EUNKNOWN. */
        if (atomic_load(&st->unreachable) || pg_link_ensure(st, &st->writer, true) != 0) {
            for (size_t i = 0; i < n; i++)
                settle_error(v[i], BOOKS_EUNAVAIL);
            break;
        }
        size_t k = pick_round(v, n, round);
        int rc;
        switch (write_round(st, round, &k, &rc)) {
        case COMMITTED:
        case TIMED_OUT: /* keep_open answers those whose deadline passed; the rest go again */
            break;
        case ROW_REFUSED:
            if (k == 1) {
                log_msg(LOG_WARNING, "PostgreSQL at %s: the database refused %s", st->shown,
                        round[0]->it->book->name);
                settle_error(round[0], BOOKS_EREFUSED);
                break;
            }
            log_msg(LOG_WARNING,
                    "PostgreSQL at %s: the database refused a row of a round of %zu creates; "
                    "writing it in halves",
                    st->shown, k);
            for (size_t half = 0; half < 2; half++) {
                size_t from = half ? k / 2 : 0, len = half ? k - k / 2 : k / 2;
                struct entry **part = malloc(len * sizeof *part);
                if (!part) {
                    for (size_t i = from; i < from + len; i++)
                        if (!round[i]->settled)
                            settle_error(round[i], BOOKS_ENOMEM);
                    continue;
                }
                memcpy(part, round + from, len * sizeof *part);
                write_part(st, part, len);
                free(part);
            }
            break;
        case LOST: {
            size_t with_ids = 0;
            uint64_t now = pg_now_ns();
            for (size_t i = 0; i < k; i++) {
                if (round[i]->settled)
                    continue;
                if (!round[i]->maybe)
                    round[i]->lost_at_ns = now;
                round[i]->maybe = true;
                if (!round[i]->it->request_id[0])
                    settle(round[i], BOOKS_EUNKNOWN); /* a row with its name could be anyone's */
                else
                    round[with_ids++] = round[i];
            }
            resolve(st, round, with_ids);
            break;
        }
        case CONTRACTED:
            /* A new connection reads the layout again (setup): version 3 now, the round goes
             * again with its statements; still expanded, the column really is missing. */
            if (pg_link_replace(st, &st->writer, true) == 0 && !expanded(st))
                break;
            for (size_t i = 0; i < k; i++)
                settle_error(round[i], rc);
            break;
        case FAILED:
            for (size_t i = 0; i < k; i++)
                settle_error(round[i], rc);
            break;
        }
    }
    free(round);
}

int pg_write_batch(void *self, struct commit_item *items, size_t n)
{
    struct pg_store *st = self;
    struct entry *e = st->w->entries;
    struct entry **v = malloc((n ? n : 1) * sizeof *v);

    if (!v)
        return BOOKS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        e[i] = (struct entry){.it = &items[i]};
        v[i] = &e[i];
    }
    write_part(st, v, n);
    free(v);
    return 0; /* every create was answered (commit_pipeline_answer_now) */
}

void pg_writer_idle(void *self)
{
    struct pg_store *st = self;
    uint64_t now = pg_now_ns();
    char ttl[16];
    const char *params[1] = {ttl};
    PGresult *res = NULL, *sync = NULL;
    bool broken;

    /* Poked (a primary was found while the writer had no connection), or after a batch that
     * broke it: the connection is made now, before a create has to wait for it. */
    if (!st->writer.conn)
        (void)pg_link_ensure(st, &st->writer, true);
    if (now - st->purged_at_ns < PURGE_EVERY_NS &&
        now - st->purged_at_ns < (uint64_t)st->request_ttl_s * 1000000000u)
        return;
    st->purged_at_ns = now;
    if (pg_link_ensure(st, &st->writer, true) != 0)
        return;
    snprintf(ttl, sizeof ttl, "%u", st->request_ttl_s);
    pg_link_wait_begin(&st->writer, pg_now_ns());
    broken = !PQsendQueryParams(st->writer.conn, purge_sql, 1, NULL, params, NULL, NULL, 0) ||
             !PQpipelineSync(st->writer.conn) || !pg_flush_all(st, &st->writer);
    if (!broken)
        res = query_result(&st->writer, 30ull * 1000000000u, &broken);
    if (!broken)
        sync = next_result(&st->writer, 30ull * 1000000000u, &broken);
    pg_link_wait_end(&st->writer);
    if (!broken && res && PQresultStatus(res) == PGRES_COMMAND_OK &&
        strcmp(PQcmdTuples(res), "1000") == 0)
        st->purged_at_ns = 0; /* more are due: again after the next batch */
    else if (!broken && (!res || PQresultStatus(res) != PGRES_COMMAND_OK))
        log_msg(LOG_WARNING, "PostgreSQL at %s: cannot forget old request ids: %.200s", st->shown,
                PQerrorMessage(st->writer.conn));
    PQclear(res);
    PQclear(sync);
    if (broken)
        pg_link_down(st, &st->writer, true);
}
