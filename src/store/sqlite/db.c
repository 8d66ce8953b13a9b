/* db.c: small SQLite helpers of the sqlite: backend (sq.h). */
#include "sq.h"

#include "books/error.h"
#include "books/log.h"

#include <stdio.h>

/* The one mapping from SQLite result codes to enum books_err. */
int sq_map_rc(int rc)
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
int sq_step_reset(sqlite3_stmt *st)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    return rc;
}

/* Runs one SQL statement on `db` and reads the first column of its first row into *out (an integer)
 * or out/len (text, copied, truncated), whichever is given. SQLITE_OK, SQLITE_ERROR when there is
 * no row, or SQLite's rc. */
static int query_first(sqlite3 *db, const char *sql, long long *num, char *text, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = text ? sqlite3_column_text(st, 0) : NULL;
        if (num)
            *num = sqlite3_column_int64(st, 0);
        else
            snprintf(text, len, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

int sq_query_int(sqlite3 *db, const char *sql, long long *out)
{
    return query_first(db, sql, out, NULL, 0);
}

int sq_query_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
    return query_first(db, sql, NULL, out, len);
}

int sq_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Prepares a statement kept for the connection's life (SQLITE_PREPARE_PERSISTENT). */
int sq_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out)
{
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
}
