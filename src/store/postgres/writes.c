/* writes.c: the postgresql: store's creates (pg.h), as the commit pipeline's backend: its
 * committer thread owns the write connection and writes each batch as BEGIN, one INSERT ... SELECT
 * FROM unnest(the batch's columns) ON CONFLICT (name) DO NOTHING RETURNING name, COMMIT and a
 * Sync, sent in one write: one round trip per batch. A name the INSERT did not return was taken
 * (BOOKS_EEXIST): by an earlier book, by another instance, or by an earlier create of the same
 * batch (the rows go in in the batch's order, so the first of two wins). */
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

/* One statement for any batch size: the batch arrives as four text[] parameters, one per column
 * (authors as each row's own array literal), unnested back into rows in their order. Against one
 * VALUES row per book this spares PostgreSQL parsing and planning a statement of 4 x n parameters
 * for every batch size it meets (docs/performance.md, "Stores", has what that saved).
 * ORDER BY the ordinal keeps "the first of two equal names wins" exact. */
static const char insert_sql[] =
    "INSERT INTO books (name, display_name, publisher, authors) "
    "SELECT n, d, p, a::text[] FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) "
    "WITH ORDINALITY AS t(n, d, p, a, i) ORDER BY i "
    "ON CONFLICT (name) DO NOTHING RETURNING name";

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

/* The four parameters of items[0..n) into params[0..4): the array literals of the names, the
 * display names, the publishers and the rows' authors literals. */
static int bind_rows(struct pg_store *st, struct commit_item *const *items, size_t n,
                     const char *params[4])
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
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Marks items written (the names the INSERT returned: each at most once, to the first item that
 * asked for it) or taken (BOOKS_EEXIST). */
static int mark_items(const PGresult *res, struct commit_item *const *items, size_t n)
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
        const char *key = items[i]->book->name;
        const char **hit = rows ? bsearch(&key, names, rows, sizeof *names, cmp_str) : NULL;
        size_t k = hit ? (size_t)(hit - names) : 0;
        items[i]->rc = hit && !used[k] ? 0 : BOOKS_EEXIST;
        if (hit)
            used[k] = true;
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

/* One transaction for v[0..n): BEGIN, the statement_timeout of this transaction (the store's, or
 * less: what is left before the earliest caller's deadline), the INSERT, COMMIT and a Sync, sent
 * in one write: one round trip. Returns 0 with every v[i]->rc set, or the transaction's error
 * (rolled back); *shortened says whether a caller's deadline set the timeout. */
static int write_once(struct pg_store *st, struct commit_item *const *v, size_t n, bool *shortened)
{
    PGconn *conn = st->writer.conn;
    PGresult *begin = NULL, *limit = NULL, *insert = NULL, *commit = NULL, *sync = NULL;
    bool broken = false;
    const char *params[4];
    char set_timeout[64];
    uint64_t timeout_ms = (uint64_t)st->prm.statement_timeout_ms, first = earliest_deadline(v, n);
    int rc;

    *shortened = false;
    if (first) {
        uint64_t now = pg_now_ns(), left_ms = first > now ? (first - now) / 1000000u : 0;
        if (left_ms < 1)
            left_ms = 1;
        if (!timeout_ms || left_ms < timeout_ms) {
            timeout_ms = left_ms;
            *shortened = true;
        }
    }
    /* How long the connection may stay silent: the transaction's statements end by then. */
    uint64_t silence = timeout_ms ? (timeout_ms + 5000u) * 1000000u : 300ull * 1000000000u;
    snprintf(set_timeout, sizeof set_timeout, "SET LOCAL statement_timeout = %llu",
             (unsigned long long)timeout_ms);
    rc = bind_rows(st, v, n, params);
    if (rc != 0)
        return rc;
    broken = !PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
             !PQsendQueryParams(conn, set_timeout, 0, NULL, NULL, NULL, NULL, 0) ||
             !PQsendQueryParams(conn, insert_sql, 4, NULL, params, NULL, NULL, 0) ||
             !PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
             !PQpipelineSync(conn) || !pg_flush_all(st, conn);
    if (!broken)
        begin = query_result(conn, silence, &broken);
    if (!broken)
        limit = query_result(conn, silence, &broken);
    if (!broken)
        insert = query_result(conn, silence, &broken);
    if (!broken)
        commit = query_result(conn, silence, &broken);
    if (!broken)
        sync = next_result(conn, silence, &broken);
    if (broken || !sync || PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
        rc = BOOKS_EUNAVAIL;
    } else if (!insert || PQresultStatus(insert) != PGRES_TUPLES_OK) {
        rc = pg_error(conn, insert);
    } else if (!commit || PQresultStatus(commit) != PGRES_COMMAND_OK ||
               strcmp(PQcmdStatus(commit), "COMMIT") != 0) {
        rc = pg_error(conn, commit);
    } else {
        rc = mark_items(insert, v, n);
    }
    if (rc != 0 && !broken && PQstatus(conn) == CONNECTION_OK) {
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
    if (rc != 0)
        log_msg(LOG_WARNING, "PostgreSQL at %s: a transaction of %zu creates failed: %.200s",
                st->shown, n, broken ? "the connection broke" : PQerrorMessage(conn));
    PQclear(begin);
    PQclear(limit);
    PQclear(insert);
    PQclear(commit);
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

int pg_write_batch(void *self, struct commit_item *items, size_t n)
{
    struct pg_store *st = self;
    struct commit_item **v = st->pending;
    bool shortened;
    int rc;

    for (size_t i = 0; i < n; i++)
        v[i] = &items[i];
    /* A caller's deadline bounds the transaction (a locked table, a stalled database): when it
     * ends the transaction, the callers whose deadline passed are answered BOOKS_EDEADLINE
     * (nothing of theirs was written) and the others go again in a new one. */
    for (;;) {
        expire(v, &n);
        if (n == 0)
            return 0;
        rc = pg_link_ensure(st, &st->writer, true);
        if (rc != 0)
            return rc;
        rc = write_once(st, v, n, &shortened);
        if (rc == BOOKS_EDEADLINE && shortened)
            continue;
        if (rc == BOOKS_EDEADLINE)
            rc = BOOKS_EUNAVAIL; /* the store's own statement_timeout: a stalled database */
        return rc;
    }
}
