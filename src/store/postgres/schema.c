/* schema.c: the postgresql: store's tables, versioned and migrated forward (pg.h).
 *
 *   books_schema(application text, version integer, dataset_key bytea)   -- exactly one row
 *   books(name text COLLATE "C" PRIMARY KEY, display_name text, publisher text, authors text[],
 *         request_id uuid UNIQUE, request_hash bytea, created_at timestamptz)  -- the last three:
 *                                                                              -- version 2
 * An AIP-155 request_id is kept on the row of the book its create made, with the request's
 * fingerprint and the time; the unique index makes a request_id claimed by one transaction wait
 * for it in any other, on any instance, so concurrent duplicates make one book. The writer clears
 * ids older than the retention.
 *
 * books_schema says whose tables these are ('books-server'), which version of them, and holds the
 * data set's random key, which signs page tokens: every instance on the database reads the same
 * key, so a page token from one instance works on all. Resource names use the "C" collation, so
 * the primary key orders them bytewise, as every store lists them.
 *
 * Opening runs under pg_advisory_lock(PG_SCHEMA_LOCK_KEY): of two servers starting at once on an
 * empty database one creates the tables, the other waits, then finds them made. Each migration
 * step runs in one transaction with the version bump, so a crash leaves the old version or the
 * new one. A newer schema, or a `books` table without our books_schema, is refused untouched. */
#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/log.h"

/* Migration from version i to version i + 1: migrations[i]. Version 0 is an empty database. */
static const char *const migrations[PG_SCHEMA_VERSION] = {
    /* 0 -> 1: the tables. The key is filled in by create_key below, in the same transaction. */
    "CREATE TABLE books_schema ("
    " application text NOT NULL,"
    " version integer NOT NULL,"
    " dataset_key bytea NOT NULL);"
    "CREATE TABLE books ("
    " name text COLLATE \"C\" NOT NULL PRIMARY KEY,"
    " display_name text NOT NULL,"
    " publisher text NOT NULL,"
    " authors text[] NOT NULL)",
    /* 1 -> 2: AIP-155 request ids on the books they made. */
    "ALTER TABLE books ADD COLUMN request_id uuid, ADD COLUMN request_hash bytea,"
    " ADD COLUMN created_at timestamptz;"
    "CREATE UNIQUE INDEX books_request_id ON books (request_id);"
    "CREATE INDEX books_request_age ON books (created_at) WHERE request_id IS NOT NULL",
};

static int fail(int rc, char *err, size_t errlen, const char *shown, const char *what,
                PGconn *conn)
{
    char why[256];
    snprintf(why, sizeof why, "%s", PQerrorMessage(conn));
    why[strcspn(why, "\n")] = '\0';
    books_format_err(err, errlen, "PostgreSQL at %s: %s%s%s", shown, what, *why ? ": " : "", why);
    return rc;
}

/* Runs migrations[from..PG_SCHEMA_VERSION) in one transaction, creating books_schema's row with a
 * new random key when starting from nothing. */
static int migrate(PGconn *conn, int from, const char *shown, char *err, size_t errlen)
{
    char sql[256], hex[2 * STORE_DATASET_KEY_BYTES + 1];
    uint8_t key[STORE_DATASET_KEY_BYTES];
    int rc = pg_exec(conn, "BEGIN", PGRES_COMMAND_OK, NULL);

    for (int v = from; rc == 0 && v < PG_SCHEMA_VERSION; v++)
        rc = pg_exec(conn, migrations[v], PGRES_COMMAND_OK, NULL);
    if (rc == 0 && from == 0) {
        rc = store_new_dataset_key(key);
        for (size_t i = 0; rc == 0 && i < sizeof key; i++)
            snprintf(hex + 2 * i, 3, "%02x", key[i]);
        snprintf(sql, sizeof sql,
                 "INSERT INTO books_schema (application, version, dataset_key) "
                 "VALUES ('books-server', %d, decode('%s', 'hex'))",
                 PG_SCHEMA_VERSION, hex);
        if (rc == 0)
            rc = pg_exec(conn, sql, PGRES_COMMAND_OK, NULL);
    } else if (rc == 0) {
        snprintf(sql, sizeof sql, "UPDATE books_schema SET version = %d", PG_SCHEMA_VERSION);
        rc = pg_exec(conn, sql, PGRES_COMMAND_OK, NULL);
    }
    if (rc == 0)
        rc = pg_exec(conn, "COMMIT", PGRES_COMMAND_OK, NULL);
    if (rc != 0) {
        fail(rc, err, errlen, shown, "cannot create or migrate the schema", conn);
        (void)pg_exec(conn, "ROLLBACK", PGRES_COMMAND_OK, NULL);
        return rc;
    }
    if (from > 0)
        log_msg(LOG_INFO, "PostgreSQL at %s: schema migrated from version %d to %d", shown, from,
                PG_SCHEMA_VERSION);
    return 0;
}

/* Reads books_schema: 0 with *version and the key, or BOOKS_ECORRUPT when it is not ours. */
static int read_schema(PGconn *conn, const char *shown, int *version,
                       uint8_t key[STORE_DATASET_KEY_BYTES], char *err, size_t errlen)
{
    PGresult *res = NULL;
    int rc = pg_exec(conn,
                     "SELECT application, version, encode(dataset_key, 'hex') FROM books_schema",
                     PGRES_TUPLES_OK, &res);
    if (rc != 0)
        return fail(rc, err, errlen, shown, "cannot read books_schema", conn);
    if (PQntuples(res) != 1 || PQnfields(res) != 3 ||
        strcmp(PQgetvalue(res, 0, 0), "books-server") != 0) {
        PQclear(res);
        books_format_err(err, errlen,
                         "PostgreSQL at %s: its table books_schema belongs to another application "
                         "(it does not say 'books-server'); use another database or schema",
                         shown);
        return BOOKS_ECORRUPT;
    }
    *version = atoi(PQgetvalue(res, 0, 1));
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

static int locked_open(PGconn *conn, const char *shown, uint8_t key[STORE_DATASET_KEY_BYTES],
                       char *err, size_t errlen)
{
    PGresult *res = NULL;
    int version = 0, rc;
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
    if (have_schema) {
        rc = read_schema(conn, shown, &version, key, err, errlen);
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
            books_format_err(err, errlen, "PostgreSQL at %s: books_schema says version %d",
                             shown, version);
            return BOOKS_ECORRUPT;
        }
    }
    if (version < PG_SCHEMA_VERSION) {
        rc = migrate(conn, version, shown, err, errlen);
        if (rc == 0)
            rc = read_schema(conn, shown, &version, key, err, errlen);
    }
    return rc;
}

int pg_schema_open(PGconn *conn, const char *shown, uint8_t key[STORE_DATASET_KEY_BYTES],
                   char *err, size_t errlen)
{
    char sql[96];
    int rc;

    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", PG_SCHEMA_LOCK_KEY);
    rc = pg_exec(conn, sql, PGRES_TUPLES_OK, NULL);
    if (rc != 0)
        return fail(rc, err, errlen, shown, "cannot take the schema lock", conn);
    rc = locked_open(conn, shown, key, err, errlen);
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", PG_SCHEMA_LOCK_KEY);
    (void)pg_exec(conn, sql, PGRES_TUPLES_OK, NULL);
    return rc;
}
