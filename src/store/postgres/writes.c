/* writes.c: the postgresql: store's creates (pg.h), as the commit pipeline's backend: its
 * committer thread owns the write connection and writes each batch as one transaction, sent in one
 * write and answered in one round trip:
 *   BEGIN; SET LOCAL statement_timeout; INSERT ... SELECT FROM unnest(the batch's columns)
 *   ON CONFLICT DO NOTHING RETURNING name; [SELECT the rows of the batch's request ids]; COMMIT
 * A name the INSERT did not return was taken (BOOKS_EEXIST), by an earlier book, by another
 * instance, or by an earlier create of the same batch (the rows go in in the batch's order, so the
 * first of two wins), unless its request_id (AIP-155) was: then the row of that id says which book
 * the request made (a retry: answered with it) or that the id belongs to another request
 * (BOOKS_EREUSED). The unique index on request_id makes a transaction that claims an id wait for
 * any other that claimed it, on any instance, so of concurrent duplicates one makes the book.
 *
 * What can go wrong, and what each create is told:
 *  - a caller's deadline: the transaction's statement_timeout is the earliest one (or the store's,
 *    when smaller); when it fires, the creates whose deadline passed are answered BOOKS_EDEADLINE
 *    (nothing of theirs was written) and the others go again;
 *  - one row the database refuses (a CHECK, a trigger, a size limit: SQLSTATE classes 22, 23, 54):
 *    the batch is split in halves and each half goes again, until the refused create fails alone
 *    (BOOKS_EREFUSED) and every other one commits;
 *  - the connection breaks after the transaction was sent: it may have committed. The writer
 *    reconnects and looks: a create with a request_id whose row is there committed (answered 0),
 *    one whose row is not goes again (the unique index settles a transaction still committing);
 *    a create without a request_id cannot be told from another client's, so it is answered
 *    BOOKS_EUNKNOWN, as is every create when the database stays unreachable;
 *  - anything else fails the creates of the transaction with its mapped error (pg_error). */
#include "pg.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"
#include "books/store_postgres.h"
#include "rows.h"

/* One statement for any batch size: the batch arrives as text[] parameters, one per column
 * (authors as each row's own array literal), unnested back into rows in their order. Against one
 * VALUES row per book this spares PostgreSQL parsing and planning a statement of 6 x n parameters
 * for every batch size it meets (docs/performance.md, "Stores", has what that saved). ORDER BY the
 * ordinal keeps "the first of two equal names (or request ids) wins" exact. */
static const char insert_sql[] =
    "INSERT INTO books (name, display_name, publisher, authors, request_id, request_hash, "
    "created_at) SELECT n, d, p, a::text[], r::uuid, decode(h, 'hex'), "
    "CASE WHEN r IS NULL THEN NULL ELSE now() END "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) "
    "WITH ORDINALITY AS t(n, d, p, a, r, h, i) ORDER BY i "
    "ON CONFLICT DO NOTHING RETURNING name";
/* The rows of the batch's request ids, as they are after the INSERT (binary results). */
static const char requests_sql[] =
    "SELECT request_id::text, request_hash, name, display_name, publisher, authors FROM books "
    "WHERE request_id = ANY($1::uuid[])";
/* After a broken connection: which of the batch's names are there, with which request id. */
static const char lookup_sql[] =
    "SELECT name, coalesce(request_id::text, '') FROM books WHERE name = ANY($1::text[])";
/* Request ids older than the retention are forgotten a few at a time, between batches. */
static const char purge_sql[] =
    "UPDATE books SET request_id = NULL, request_hash = NULL, created_at = NULL WHERE name IN "
    "(SELECT name FROM books WHERE request_id IS NOT NULL AND created_at < now() - "
    "make_interval(secs => $1::int) LIMIT 1000)";

/* How long the writer tries to learn what happened to a transaction whose connection broke. */
#define RESOLVE_MAX_NS (10ull * 1000000000u)
#define PURGE_EVERY_NS (60ull * 1000000000u)

/* Makes sure `*buf` holds `need` bytes. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    char *more = realloc(*buf, need);
    if (!more)
        return BOOKS_ENOMEM;
    *buf = more;
    *cap = need;
    return 0;
}

/* "{x,NULL,y}": an array literal of request ids (or the hex of their fingerprints, `hashes`) of
 * items[0..n), NULL for an item without one. Neither needs quoting: hexadecimal digits and '-'. */
static const char *ids_literal(struct pg_store *st, struct commit_item *const *items, size_t n,
                               bool hashes, size_t at)
{
    char *out = st->ids + at, *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        if (!items[i]->request_id[0]) {
            memcpy(p, "NULL", 4);
            p += 4;
        } else if (!hashes) {
            memcpy(p, items[i]->request_id, STORE_REQUEST_ID_CHARS);
            p += STORE_REQUEST_ID_CHARS;
        } else {
            for (size_t k = 0; k < STORE_REQUEST_HASH_BYTES; k++)
                p += sprintf(p, "%02x", items[i]->request_hash[k]);
        }
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* The six parameters of items[0..n) into params[0..6): the array literals of the names, the
 * display names, the publishers, the rows' authors literals, the request ids and their hashes. */
static int bind_rows(struct pg_store *st, struct commit_item *const *items, size_t n,
                     const char *params[6])
{
    const char **col = st->values; /* 4 * n: column c of row i at col[c * n + i] */
    size_t need = 0, off = 0;
    int rc;

    for (size_t i = 0; i < n; i++)
        need += pg_authors_literal_size(items[i]->book->authors, items[i]->book->n_authors);
    rc = reserve(&st->literals, &st->literals_cap, need);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const struct store_book *b = items[i]->book;
        size_t len = pg_authors_literal(b->authors, b->n_authors, st->literals + off,
                                        st->literals_cap - off);
        col[i] = b->name;
        col[n + i] = b->display_name;
        col[2 * n + i] = b->publisher;
        col[3 * n + i] = st->literals + off;
        off += len + 1;
    }
    need = 0;
    for (size_t c = 0; c < 4; c++)
        need += pg_authors_literal_size(col + c * n, n);
    rc = reserve(&st->arrays, &st->arrays_cap, need);
    if (rc != 0)
        return rc;
    off = 0;
    for (size_t c = 0; c < 4; c++) {
        params[c] = st->arrays + off;
        off += pg_authors_literal(col + c * n, n, st->arrays + off, st->arrays_cap - off) + 1;
    }
    /* ids: n * (36 or 4) + commas + braces; hashes: n * 64 + ...: 2 * n * 65 + 8 covers both */
    rc = reserve(&st->ids, &st->ids_cap, 2 * n * (2 * STORE_REQUEST_HASH_BYTES + 1) + 8);
    if (rc != 0)
        return rc;
    params[4] = ids_literal(st, items, n, false, 0);
    params[5] = ids_literal(st, items, n, true, strlen(params[4]) + 1);
    return 0;
}

static bool any_request_id(struct commit_item *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i]->request_id[0])
            return true;
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The row of `requests` (requests_sql's result) with request id `id`, or -1. */
static int request_row(const PGresult *requests, const char *id)
{
    for (int r = 0; requests && r < PQntuples(requests); r++)
        if ((size_t)PQgetlength(requests, r, 0) == STORE_REQUEST_ID_CHARS &&
            memcmp(PQgetvalue(requests, r, 0), id, STORE_REQUEST_ID_CHARS) == 0)
            return r;
    return -1;
}

/* Sets every item's rc (and `made` for a retried request) from the names the INSERT returned
 * (each at most once, to the first item that asked for it) and the rows of the request ids. */
static int mark_items(const PGresult *res, const PGresult *requests,
                      struct commit_item *const *items, size_t n)
{
    size_t rows = (size_t)PQntuples(res);
    const char **names = malloc((rows ? rows : 1) * sizeof *names);
    bool *used = calloc(rows ? rows : 1, sizeof *used);

    if (!names || !used) {
        free(names);
        free(used);
        return BOOKS_ENOMEM;
    }
    for (size_t i = 0; i < rows; i++)
        names[i] = PQgetvalue(res, (int)i, 0);
    qsort(names, rows, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct commit_item *it = items[i];
        const char *key = it->book->name;
        const char **hit = rows ? bsearch(&key, names, rows, sizeof *names, cmp_str) : NULL;
        size_t k = hit ? (size_t)(hit - names) : 0;
        bool inserted = hit && !used[k];
        if (hit)
            used[k] = true;
        if (inserted || !it->request_id[0]) {
            it->rc = inserted ? 0 : BOOKS_EEXIST;
            continue;
        }
        /* Not inserted, with a request id: the id's row, if any, says what happened. */
        int r = request_row(requests, it->request_id);
        if (r < 0) {
            it->rc = BOOKS_EEXIST; /* the name was taken; the id is new and stays so */
        } else if ((size_t)PQgetlength(requests, r, 1) != STORE_REQUEST_HASH_BYTES ||
                   memcmp(PQgetvalue(requests, r, 1), it->request_hash, STORE_REQUEST_HASH_BYTES) !=
                       0) {
            it->rc = BOOKS_EREUSED;
        } else {
            it->rc = pg_row_book(requests, r, 2, &it->made);
        }
    }
    free(names);
    free(used);
    return 0;
}

/* Reads the next result of the writer's pipeline, waiting as long as the transaction's statements
 * may run (plus a margin, `silence`); NULL ends a query's results. *broken when the connection
 * failed or fell silent for longer than that. */
static PGresult *next_result(PGconn *conn, uint64_t silence, bool *broken)
{
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
        }
    }
    return PQgetResult(conn);
}

/* One query's results: the first kept (the caller PQclear()s it), the rest dropped. */
static PGresult *query_result(PGconn *conn, uint64_t silence, bool *broken)
{
    PGresult *first = next_result(conn, silence, broken), *more;
    while (!*broken && first && (more = next_result(conn, silence, broken)) != NULL)
        PQclear(more);
    return first;
}

/* The earliest deadline of v[0..n), 0 when none has one. */
static uint64_t earliest_deadline(struct commit_item *const *v, size_t n)
{
    uint64_t first = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i]->deadline_ns && (!first || v[i]->deadline_ns < first))
            first = v[i]->deadline_ns;
    return first;
}

/* How one attempt at a transaction ended, beyond its books_err. */
struct attempt {
    bool shortened;   /* a caller's deadline set its statement_timeout */
    bool row_refused; /* it failed on one row's data (pg_row_refused) */
};

/* One transaction for v[0..n) (see the top), in one round trip. Returns 0 with every v[i]->rc
 * set; BOOKS_EUNKNOWN when the connection broke once the transaction was on its way (it may have
 * committed); or the transaction's error, rolled back. */
static int write_once(struct pg_store *st, struct commit_item *const *v, size_t n,
                      struct attempt *how)
{
    PGconn *conn = st->writer.conn;
    PGresult *res[5] = {NULL}, *sync = NULL; /* BEGIN, SET, INSERT, SELECT, COMMIT */
    bool broken = false, sent = false, with_ids = any_request_id(v, n);
    const char *params[6];
    char set_timeout[64];
    uint64_t timeout_ms = (uint64_t)st->prm.statement_timeout_ms, first = earliest_deadline(v, n);
    int rc;

    how->shortened = how->row_refused = false;
    if (first) {
        uint64_t now = pg_now_ns(), left_ms = first > now ? (first - now) / 1000000u : 0;
        if (left_ms < 1)
            left_ms = 1;
        if (!timeout_ms || left_ms < timeout_ms) {
            timeout_ms = left_ms;
            how->shortened = true;
        }
    }
    /* How long the connection may stay silent: the transaction's statements end by then. */
    uint64_t silence = timeout_ms ? (timeout_ms + 5000u) * 1000000u : 300ull * 1000000000u;
    snprintf(set_timeout, sizeof set_timeout, "SET LOCAL statement_timeout = %llu",
             (unsigned long long)timeout_ms);
    rc = bind_rows(st, v, n, params);
    if (rc != 0)
        return rc;
    broken =
        !PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(conn, set_timeout, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryParams(conn, insert_sql, 6, NULL, params, NULL, NULL, 0) ||
        (with_ids && !PQsendQueryParams(conn, requests_sql, 1, NULL, params + 4, NULL, NULL, 1)) ||
        !PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(conn);
    if (!broken) {
        sent = true; /* from here on the transaction may reach the server whole */
        broken = !pg_flush_all(st, conn);
    }
    for (int q = 0; q < 5 && !broken; q++)
        if (q != 3 || with_ids)
            res[q] = query_result(conn, silence, &broken);
    if (!broken)
        sync = next_result(conn, silence, &broken);

    PGresult *insert = res[2], *requests = res[3], *commit = res[4];
    bool insert_failed = insert && PQresultStatus(insert) != PGRES_TUPLES_OK &&
                         PQresultStatus(insert) != PGRES_PIPELINE_ABORTED;
    if (broken && sent && !insert_failed && !commit) {
        /* The COMMIT may have reached the server, and its answer did not come back. */
        rc = BOOKS_EUNKNOWN;
    } else if (broken || !sync || PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
        rc = BOOKS_EUNAVAIL; /* nothing committed: an INSERT error, or no COMMIT sent */
    } else if (!insert || PQresultStatus(insert) != PGRES_TUPLES_OK) {
        rc = pg_error(conn, insert);
        how->row_refused = pg_row_refused(insert);
    } else if (with_ids && (!requests || PQresultStatus(requests) != PGRES_TUPLES_OK)) {
        rc = pg_error(conn, requests);
    } else if (!commit || PQresultStatus(commit) != PGRES_COMMAND_OK ||
               strcmp(PQcmdStatus(commit), "COMMIT") != 0) {
        rc = pg_error(conn, commit);
    } else {
        rc = mark_items(insert, requests, v, n);
    }
    if (rc != 0 && rc != BOOKS_EUNKNOWN && !broken && PQstatus(conn) == CONNECTION_OK) {
        /* The INSERT failed, so COMMIT was skipped and the transaction is still open (aborted):
         * end it before the next batch. */
        PGresult *rb = NULL, *rs = NULL;
        bool b2 = !PQsendQueryParams(conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
                  !PQpipelineSync(conn) || !pg_flush_all(st, conn);
        if (!b2)
            rb = query_result(conn, silence, &b2);
        if (!b2)
            rs = next_result(conn, silence, &b2);
        PQclear(rb);
        PQclear(rs);
        broken = b2;
    }
    if (rc != 0 && rc != BOOKS_EDEADLINE)
        log_msg(LOG_WARNING, "PostgreSQL at %s: a transaction of %zu creates failed (%s): %.200s",
                st->shown, n, books_err_name(rc),
                broken ? "the connection broke" : PQerrorMessage(conn));
    for (int q = 0; q < 5; q++)
        PQclear(res[q]);
    PQclear(sync);
    if (broken || PQstatus(conn) != CONNECTION_OK)
        pg_link_down(st, &st->writer, true);
    return rc;
}

/* Answers BOOKS_EDEADLINE now for the items of v[0..*n) whose deadline has passed (nothing of
 * theirs was written) and keeps the rest (in order) in v. */
static void expire(struct commit_item **v, size_t *n)
{
    uint64_t now = pg_now_ns();
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        if (v[i]->deadline_ns && v[i]->deadline_ns <= now)
            commit_pipeline_answer_now(v[i], BOOKS_EDEADLINE);
        else
            v[kept++] = v[i];
    }
    *n = kept;
}

static void answer_all(struct commit_item **v, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++)
        commit_pipeline_answer_now(v[i], rc);
}

/* One query outside a transaction, for resolve(): sends it, reads its result. */
static PGresult *lookup(struct pg_store *st, const char *names)
{
    PGconn *conn = st->writer.conn;
    PGresult *res = NULL, *sync = NULL;
    bool broken = !PQsendQueryParams(conn, lookup_sql, 1, NULL, &names, NULL, NULL, 0) ||
                  !PQpipelineSync(conn) || !pg_flush_all(st, conn);
    uint64_t silence = 30ull * 1000000000u;
    if (!broken)
        res = query_result(conn, silence, &broken);
    if (!broken)
        sync = next_result(conn, silence, &broken);
    PQclear(sync);
    if (broken || !res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        if (broken || PQstatus(conn) != CONNECTION_OK)
            pg_link_down(st, &st->writer, true);
        return NULL;
    }
    return res;
}

/* The connection broke while v[0..*n) were committing. Finds out, on a new connection, which
 * committed: those with a request id whose row is there are answered 0; those without a request id
 * BOOKS_EUNKNOWN (a row with their name may be another client's); the rest (request id, no row)
 * stay in v to go again. Gives up after RESOLVE_MAX_NS or the earliest deadline: every item is
 * then BOOKS_EUNKNOWN. */
static void resolve(struct pg_store *st, struct commit_item **v, size_t *n)
{
    uint64_t until = pg_now_ns() + RESOLVE_MAX_NS, first = earliest_deadline(v, *n);
    PGresult *res = NULL;
    if (first && first < until)
        until = first;
    for (;;) {
        if (pg_link_ensure(st, &st->writer, true) == 0) {
            const char *params[6];
            if (bind_rows(st, v, *n, params) != 0) /* params[0]: the names' array literal */
                break;
            if ((res = lookup(st, params[0])) != NULL)
                break;
        }
        uint64_t now = pg_now_ns();
        if (now >= until)
            break;
        uint64_t wait = st->writer.retry_at_ns > now ? st->writer.retry_at_ns - now : 10000000u;
        if (now + wait > until)
            wait = until - now;
        nanosleep(&(struct timespec){(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)},
                  NULL);
    }
    if (!res) {
        log_msg(LOG_WARNING,
                "PostgreSQL at %s: cannot learn whether %zu creates committed; they "
                "are answered UNKNOWN",
                st->shown, *n);
        answer_all(v, *n, BOOKS_EUNKNOWN);
        *n = 0;
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        struct commit_item *it = v[i];
        int row = -1;
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, 0), it->book->name) == 0)
                row = r;
        if (!it->request_id[0])
            commit_pipeline_answer_now(it, BOOKS_EUNKNOWN);
        else if (row >= 0 && strcmp(PQgetvalue(res, row, 1), it->request_id) == 0)
            commit_pipeline_answer_now(it, 0); /* it committed */
        else
            v[kept++] = it; /* not (yet) there: goes again; the unique index settles a race */
    }
    PQclear(res);
    log_msg(LOG_INFO, "PostgreSQL at %s: after a broken connection, %zu of %zu creates go again",
            st->shown, kept, *n);
    *n = kept;
}

/* Writes v[0..n) as one transaction, again after a caller's deadline shortened it, and resolves a
 * broken connection; returns what a caller of write_batch sees: 0 (every item's rc set or the item
 * answered), or BOOKS_EREFUSED with *split when one row's data made it fail (the caller halves it),
 * or another error for all of v still unanswered. */
static int write_part(struct pg_store *st, struct commit_item **v, size_t n, bool *split)
{
    struct attempt how;
    int rc;

    *split = false;
    for (;;) {
        expire(v, &n);
        if (n == 0)
            return 0;
        rc = pg_link_ensure(st, &st->writer, true);
        if (rc != 0) {
            answer_all(v, n, rc);
            return 0;
        }
        rc = write_once(st, v, n, &how);
        if (rc == 0)
            return 0;
        if (rc == BOOKS_EDEADLINE && how.shortened)
            continue;
        if (rc == BOOKS_EUNKNOWN) {
            resolve(st, v, &n);
            continue;
        }
        if (rc == BOOKS_EDEADLINE)
            rc = BOOKS_EUNAVAIL; /* the store's own statement_timeout: a stalled database */
        if (rc == BOOKS_EREFUSED && how.row_refused && n > 1) {
            *split = true;
            return rc;
        }
        answer_all(v, n, rc);
        return 0;
    }
}

int pg_write_batch(void *self, struct commit_item *items, size_t n)
{
    struct pg_store *st = self;
    struct commit_item **v = st->pending;
    /* [start, length] of parts of v still to write, a stack: halving 1024 creates nests 10 deep,
     * each level leaving one half behind. */
    size_t parts[64][2], n_parts = 0;

    for (size_t i = 0; i < n; i++)
        v[i] = &items[i];
    parts[n_parts][0] = 0;
    parts[n_parts++][1] = n;
    while (n_parts) {
        size_t at = parts[n_parts - 1][0], len = parts[n_parts - 1][1];
        bool split;
        n_parts--;
        int rc = write_part(st, v + at, len, &split);
        if (rc == 0)
            continue;
        /* One row the database refuses sank the transaction: each half goes again, the first
         * half first (pushed last), until the refused create fails alone. */
        size_t half = len / 2;
        parts[n_parts][0] = at + half;
        parts[n_parts++][1] = len - half;
        parts[n_parts][0] = at;
        parts[n_parts++][1] = half;
        log_msg(LOG_WARNING,
                "PostgreSQL at %s: the database refused a row of a batch of %zu; "
                "writing it in halves",
                st->shown, len);
    }
    return 0;
}

void pg_writer_idle(void *self)
{
    struct pg_store *st = self;
    uint64_t now = pg_now_ns();
    char ttl[16];
    const char *params[1] = {ttl};
    PGresult *res = NULL, *sync = NULL;
    bool broken;

    if (now - st->purged_at_ns < PURGE_EVERY_NS &&
        now - st->purged_at_ns < (uint64_t)st->request_ttl_s * 1000000000u)
        return;
    st->purged_at_ns = now;
    if (pg_link_ensure(st, &st->writer, true) != 0)
        return;
    snprintf(ttl, sizeof ttl, "%u", st->request_ttl_s);
    broken = !PQsendQueryParams(st->writer.conn, purge_sql, 1, NULL, params, NULL, NULL, 0) ||
             !PQpipelineSync(st->writer.conn) || !pg_flush_all(st, st->writer.conn);
    if (!broken)
        res = query_result(st->writer.conn, 30ull * 1000000000u, &broken);
    if (!broken)
        sync = next_result(st->writer.conn, 30ull * 1000000000u, &broken);
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
