/* schema.c: the postgresql: store's tables, versioned and migrated forward by expand and contract
 * (pg.h, README, PostgreSQL, "Upgrades, and a rolling deploy").
 *
 *   books_schema(application text, version integer, dataset_key bytea[, layout integer])
 *                                                             -- exactly one row
 *   books(name text COLLATE "C" PRIMARY KEY,  -- the resource name
 *         book bytea,                         -- the encoded books.v1.Book but its name (store.h)
 *         request_id uuid UNIQUE,             -- AIP-155, store.h's request id model, on the row
 *         request_fingerprint bytea,          --   the request's fingerprint
 *         request_hash bytea,                 --   363d47a's fingerprint of it
 *         created_at timestamptz)             --   when it was stored
 *
 * Versions and layouts:
 *   version 1, 2  363d47a's: display_name, publisher and authors (text[]) columns instead of
 *                 `book`, the request id with request_hash and created_at (version 2).
 *   expanded      version 2 with `book`, `request_fingerprint` and books_schema.layout = 3 added
 *                 (PG_LAYOUT_EXPANDED): what a server of this version makes of a version 2
 *                 database at start-up. Servers of 363d47a go on working on it unchanged: its
 *                 version still says 2, their columns are all there and this version fills them
 *                 too (store_legacy.h), with request_hash, so each side reads what the other
 *                 wrote and recognises the other's request ids. A row such a server wrote has no
 *                 `book`; this version builds it from the old columns when it reads the row.
 *   version 3     `book` NOT NULL, the old columns gone (PG_LAYOUT_CURRENT): a new database, or an
 *                 expanded one contracted by a server started with contract=on once no server
 *                 of 363d47a uses it (checked: pg_contract_ready()). Servers of 363d47a then refuse
 *                 it at start-up ("written by a newer books-server"). Servers of this version
 *                 that opened it expanded move to version 3's statements (pg_schema_layout() on
 *                 each new connection; a statement that meets the dropped columns replaces its
 *                 connection and goes again).
 * books_schema says whose tables these are ('books-server'), which version, and holds the data
 * set's random key, which signs page tokens: every instance on the database reads the same key,
 * so a page token from one instance works on all, of either version. Resource names use the "C"
 * collation, so the primary key orders them bytewise, as every store lists them.
 *
 * Opening runs under pg_advisory_lock(PG_SCHEMA_LOCK_KEY): of two servers starting at once on an
 * empty database one creates the tables, the other waits, then finds them made. Each step (create,
 * expand, contract) is one transaction with its version or layout change, so a crash leaves the
 * old state or the new one. A newer schema, or a `books` table without our books_schema, is
 * refused untouched. */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/log.h"
#include "books/store_legacy.h"
#include "rows.h"

/* A new database: version 3 directly. The key is filled in by migrate() in the same
 * transaction. */
static const char create_sql[] =
    "CREATE TABLE books_schema ("
    " application text NOT NULL,"
    " version integer NOT NULL,"
    " dataset_key bytea NOT NULL);"
    "CREATE TABLE books ("
    " name text COLLATE \"C\" NOT NULL PRIMARY KEY,"
    " book bytea NOT NULL,"
    " request_id uuid,"
    " request_fingerprint bytea,"
    " request_hash bytea,"
    " created_at timestamptz);"
    "CREATE UNIQUE INDEX books_request_id ON books (request_id);"
    "CREATE INDEX books_request_age ON books (created_at) WHERE request_id IS NOT NULL";

/* 363d47a's version 1 -> 2, for a version 1 database (request ids on the books they made). */
static const char v1_to_v2_sql[] =
    "ALTER TABLE books ADD COLUMN request_id uuid, ADD COLUMN request_hash bytea,"
    " ADD COLUMN created_at timestamptz;"
    "CREATE UNIQUE INDEX books_request_id ON books (request_id);"
    "CREATE INDEX books_request_age ON books (created_at) WHERE request_id IS NOT NULL";

/* Version 2 -> expanded: additions only, which servers of 363d47a never see. */
static const char expand_sql[] =
    "ALTER TABLE books ADD COLUMN book bytea, ADD COLUMN request_fingerprint bytea;"
    "ALTER TABLE books_schema ADD COLUMN layout integer;"
    "UPDATE books_schema SET layout = 3";

/* Expanded -> version 3, once every row has its book. */
static const char contract_sql[] =
    "ALTER TABLE books DROP COLUMN display_name, DROP COLUMN publisher, DROP COLUMN authors,"
    " ALTER COLUMN book SET NOT NULL;"
    "ALTER TABLE books_schema DROP COLUMN layout;"
    "UPDATE books_schema SET version = 3";

/* Rows of the old layout the contract converts per statement (pg_row_book() reads them as a row
 * whose book is NULL). */
#define BACKFILL_ROWS_SQL "1000"

static int fail(int rc, char *err, size_t errlen, const char *shown, const char *what,
                PGconn *conn)
{
    char why[256];
    snprintf(why, sizeof why, "%s", PQerrorMessage(conn));
    why[strcspn(why, "\n")] = '\0';
    books_format_err(err, errlen, "PostgreSQL at %s: %s%s%s", shown, what, *why ? ": " : "", why);
    return rc;
}

static int begin(PGconn *conn) { return pg_exec(conn, "BEGIN", PGRES_COMMAND_OK, NULL); }

/* Ends a step's transaction: COMMIT when rc is 0, else ROLLBACK and a message saying it could not
 * `what` ("create the schema"). Returns the step's outcome. */
static int end(PGconn *conn, int rc, const char *shown, const char *what, char *err,
               size_t errlen)
{
    if (rc == 0 && (rc = pg_exec(conn, "COMMIT", PGRES_COMMAND_OK, NULL)) == 0)
        return 0;
    (void)pg_exec(conn, "ROLLBACK", PGRES_COMMAND_OK, NULL);
    if (what) {
        char line[64];
        snprintf(line, sizeof line, "cannot %s", what);
        fail(rc, err, errlen, shown, line, conn);
    }
    return rc;
}

/* A new database: the tables of version 3 and books_schema's row with a new random key. */
static int create(PGconn *conn, const char *shown, char *err, size_t errlen)
{
    char sql[256], hex[2 * STORE_DATASET_KEY_BYTES + 1];
    uint8_t key[STORE_DATASET_KEY_BYTES];
    int rc = begin(conn);

    if (rc == 0)
        rc = pg_exec(conn, create_sql, PGRES_COMMAND_OK, NULL);
    if (rc == 0)
        rc = store_new_dataset_key(key);
    for (size_t i = 0; rc == 0 && i < sizeof key; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(sql, sizeof sql,
             "INSERT INTO books_schema (application, version, dataset_key) "
             "VALUES ('books-server', %d, decode('%s', 'hex'))",
             PG_SCHEMA_VERSION, hex);
    if (rc == 0)
        rc = pg_exec(conn, sql, PGRES_COMMAND_OK, NULL);
    return end(conn, rc, shown, "create the schema", err, errlen);
}

/* Version 1 or 2 -> expanded, in one transaction. */
static int expand(PGconn *conn, int from, const char *shown, char *err, size_t errlen)
{
    int rc = begin(conn);
    if (rc == 0 && from == 1)
        rc = pg_exec(conn, v1_to_v2_sql, PGRES_COMMAND_OK, NULL);
    if (rc == 0)
        rc = pg_exec(conn, expand_sql, PGRES_COMMAND_OK, NULL);
    if ((rc = end(conn, rc, shown, "expand the schema", err, errlen)) != 0)
        return rc;
    log_msg(LOG_INFO,
            "PostgreSQL at %s: schema version %d expanded for this version (books kept encoded "
            "beside the columns of version 2): servers of the previous version go on working on "
            "it; start one server with contract=on once none of them runs",
            shown, from);
    return 0;
}

/* Gives every row of the old layout its book (store_legacy_body() of its columns), a batch of
 * BACKFILL_ROWS at a time; inside the contract's transaction. */
static int backfill(PGconn *conn, size_t *rows)
{
    static const char *const select_sql =
        "SELECT name, NULL::bytea, display_name, publisher, authors FROM books WHERE book IS NULL "
        "ORDER BY name LIMIT " BACKFILL_ROWS_SQL;
    static const char *const update_sql =
        "UPDATE books b SET book = v.book FROM unnest($1::text[], $2::bytea[]) AS v(name, book) "
        "WHERE b.name = v.name";
    struct pg_array names, books;
    int rc = 0;

    pg_array_init(&names, PG_TEXT_OID);
    pg_array_init(&books, PG_BYTEA_OID);
    *rows = 0;
    for (;;) {
        PGresult *res = PQexecParams(conn, select_sql, 0, NULL, NULL, NULL, NULL, 1);
        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
            rc = pg_error(conn, res);
            PQclear(res);
            break;
        }
        int n = PQntuples(res);
        pg_array_reset(&names);
        pg_array_reset(&books);
        for (int i = 0; rc == 0 && i < n; i++) {
            struct store_book *b = NULL;
            rc = pg_row_book(res, i, 0, &b, NULL);
            if (rc == 0)
                rc = pg_array_add(&names, (const uint8_t *)b->name, b->name_len);
            if (rc == 0) {
                size_t len;
                const uint8_t *body = store_book_body(b, &len);
                rc = pg_array_add(&books, body, len);
            }
            store_book_unref(b);
        }
        PQclear(res);
        if (rc != 0 || n == 0)
            break;
        const char *values[2] = {pg_array_bytes(&names), pg_array_bytes(&books)};
        const int lengths[2] = {(int)pg_array_len(&names), (int)pg_array_len(&books)};
        const int formats[2] = {1, 1};
        res = PQexecParams(conn, update_sql, 2, NULL, values, lengths, formats, 0);
        rc = res && PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : pg_error(conn, res);
        PQclear(res);
        if (rc != 0)
            break;
        *rows += (size_t)n;
    }
    pg_array_free(&names);
    pg_array_free(&books);
    return rc;
}

int pg_contract_ready(PGconn *conn, char *why, size_t len)
{
    char sql[512];
    PGresult *res = NULL;
    /* The sessions of this database that use this server's application_name (every server of one
     * deployment connects with the same URI) and do not hold the shared advisory lock every
     * connection of this version holds (pg_hold_layout_lock): servers of an older version. */
    snprintf(sql, sizeof sql,
             "SELECT count(*), coalesce(string_agg(DISTINCT coalesce(host(client_addr), 'local'), "
             "', '), '') FROM pg_stat_activity a WHERE a.datname = current_database() AND "
             "a.pid <> pg_backend_pid() AND a.application_name = "
             "current_setting('application_name') AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE "
             "l.pid = a.pid AND l.locktype = 'advisory' AND l.classid = %lld AND l.objid = %d AND "
             "l.objsubid = 2)",
             PG_SCHEMA_LOCK_KEY, PG_LAYOUT_CURRENT);
    int rc = pg_exec(conn, sql, PGRES_TUPLES_OK, &res);
    if (rc != 0)
        return rc;
    long n = atol(PQgetvalue(res, 0, 0));
    snprintf(why, len, "%ld session%s of an older books-server (from %s)", n, n == 1 ? "" : "s",
             PQgetvalue(res, 0, 1));
    PQclear(res);
    return n == 0 ? 0 : BOOKS_EREFUSED;
}

/* Expanded -> version 3, in one transaction, refused while a server of the previous version is
 * connected. */
static int contract(PGconn *conn, const char *shown, char *err, size_t errlen)
{
    char why[256];
    size_t rows = 0;
    int rc = begin(conn);

    if (rc == 0) /* no new session of an old server can start meanwhile: the version says 2 */
        rc = pg_exec(conn, "LOCK TABLE books IN SHARE ROW EXCLUSIVE MODE", PGRES_COMMAND_OK,
                     NULL);
    if (rc == 0 && (rc = pg_contract_ready(conn, why, sizeof why)) == BOOKS_EREFUSED) {
        (void)end(conn, rc, shown, NULL, err, errlen);
        books_format_err(err, errlen,
                         "PostgreSQL at %s: contract=on, but %s still use the columns the "
                         "contract drops; stop them (route all traffic to this version and let "
                         "the old revision's instances end), then start again",
                         shown, why);
        return BOOKS_EREFUSED;
    }
    if (rc == 0)
        rc = backfill(conn, &rows);
    if (rc == 0)
        rc = pg_exec(conn, contract_sql, PGRES_COMMAND_OK, NULL);
    if ((rc = end(conn, rc, shown, "contract the schema", err, errlen)) != 0)
        return rc;
    log_msg(LOG_INFO,
            "PostgreSQL at %s: schema contracted to version %d (%zu books of the previous "
            "version encoded); servers of the previous version now refuse this database",
            shown, PG_SCHEMA_VERSION, rows);
    return 0;
}

/* Reads books_schema: 0 with *version, *layout and the key, or BOOKS_ECORRUPT when it is not
 * ours. to_jsonb() reads `layout` whether or not the column exists. */
static int read_schema(PGconn *conn, const char *shown, int *version, int *layout,
                       uint8_t key[STORE_DATASET_KEY_BYTES], char *err, size_t errlen)
{
    PGresult *res = NULL;
    int rc = pg_exec(conn,
                     "SELECT application, version, encode(dataset_key, 'hex'), "
                     "coalesce(to_jsonb(s) ->> 'layout', '') FROM books_schema s",
                     PGRES_TUPLES_OK, &res);
    if (rc != 0)
        return fail(rc, err, errlen, shown, "cannot read books_schema", conn);
    if (PQntuples(res) != 1 || PQnfields(res) != 4 ||
        strcmp(PQgetvalue(res, 0, 0), "books-server") != 0) {
        PQclear(res);
        books_format_err(err, errlen,
                         "PostgreSQL at %s: its table books_schema belongs to another application "
                         "(it does not say 'books-server'); use another database or schema",
                         shown);
        return BOOKS_ECORRUPT;
    }
    *version = atoi(PQgetvalue(res, 0, 1));
    *layout = atoi(PQgetvalue(res, 0, 3)); /* "" (no column): 0 */
    const char *hex = PQgetvalue(res, 0, 2);
    rc = strlen(hex) == 2 * STORE_DATASET_KEY_BYTES ? 0 : BOOKS_ECORRUPT;
    for (size_t i = 0; rc == 0 && i < STORE_DATASET_KEY_BYTES; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            rc = BOOKS_ECORRUPT;
        key[i] = (uint8_t)byte;
    }
    PQclear(res);
    if (rc != 0)
        books_format_err(err, errlen, "PostgreSQL at %s: books_schema.dataset_key is damaged "
                         "(not %d bytes)", shown, STORE_DATASET_KEY_BYTES);
    return rc;
}

static int locked_open(PGconn *conn, const char *shown, bool want_contract,
                       uint8_t key[STORE_DATASET_KEY_BYTES], int *layout_out, char *err,
                       size_t errlen)
{
    PGresult *res = NULL;
    int version = 0, layout = 0, rc;
    bool have_schema, have_books;

    rc = pg_exec(conn,
                 "SELECT to_regclass('books_schema') IS NOT NULL, to_regclass('books') IS NOT NULL",
                 PGRES_TUPLES_OK, &res);
    if (rc != 0)
        return fail(rc, err, errlen, shown, "cannot inspect the database", conn);
    have_schema = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    have_books = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    if (!have_schema && have_books) {
        books_format_err(err, errlen,
                         "PostgreSQL at %s: the database has a table named books that "
                         "books-server did not create (no books_schema beside it); use another "
                         "database or schema",
                         shown);
        return BOOKS_ECORRUPT;
    }
    if (!have_schema) {
        rc = create(conn, shown, err, errlen);
        if (rc != 0)
            return rc;
    }
    rc = read_schema(conn, shown, &version, &layout, key, err, errlen);
    if (rc != 0)
        return rc;
    if (version > PG_SCHEMA_VERSION) {
        books_format_err(err, errlen,
                         "PostgreSQL at %s: the schema is version %d, written by a newer "
                         "books-server; this one knows up to %d",
                         shown, version, PG_SCHEMA_VERSION);
        return BOOKS_ECORRUPT;
    }
    if (version < 1) {
        books_format_err(err, errlen, "PostgreSQL at %s: books_schema says version %d", shown,
                         version);
        return BOOKS_ECORRUPT;
    }
    if (version < PG_SCHEMA_VERSION && layout != PG_LAYOUT_CURRENT) {
        rc = expand(conn, version, shown, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (version < PG_SCHEMA_VERSION && want_contract) {
        rc = contract(conn, shown, err, errlen);
        if (rc != 0)
            return rc;
        version = PG_SCHEMA_VERSION;
    }
    *layout_out = version == PG_SCHEMA_VERSION ? PG_LAYOUT_CURRENT : PG_LAYOUT_EXPANDED;
    return 0;
}

int pg_schema_open(PGconn *conn, const char *shown, bool contract_schema,
                   uint8_t key[STORE_DATASET_KEY_BYTES], int *layout, char *err, size_t errlen)
{
    char sql[96];
    int rc;

    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", PG_SCHEMA_LOCK_KEY);
    rc = pg_exec(conn, sql, PGRES_TUPLES_OK, NULL);
    if (rc != 0)
        return fail(rc, err, errlen, shown, "cannot take the schema lock", conn);
    rc = locked_open(conn, shown, contract_schema, key, layout, err, errlen);
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", PG_SCHEMA_LOCK_KEY);
    (void)pg_exec(conn, sql, PGRES_TUPLES_OK, NULL);
    return rc;
}

int pg_hold_layout_lock(PGconn *conn)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock_shared(%lld, %d)", PG_SCHEMA_LOCK_KEY,
             PG_LAYOUT_CURRENT);
    return pg_exec(conn, sql, PGRES_TUPLES_OK, NULL);
}

int pg_schema_layout(PGconn *conn, int *layout)
{
    PGresult *res = NULL;
    int rc = pg_exec(conn, "SELECT version FROM books_schema", PGRES_TUPLES_OK, &res);
    if (rc == 0)
        *layout = PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) == PG_SCHEMA_VERSION
                      ? PG_LAYOUT_CURRENT
                      : PG_LAYOUT_EXPANDED;
    PQclear(res);
    return rc;
}
