/* conn.c: connecting to PostgreSQL and reading its errors (pg.h). The password reaches libpq and
 * nothing else: messages name a server by pg_describe(), which asks libpq for the user, host, port
 * and database only. */
#include "pg.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"

void pg_describe(const PGconn *conn, char *out, size_t len)
{
    const char *user = conn ? PQuser(conn) : NULL, *host = conn ? PQhost(conn) : NULL;
    const char *port = conn ? PQport(conn) : NULL, *db = conn ? PQdb(conn) : NULL;

    snprintf(out, len, "postgresql://%s@%s:%s/%s", user && *user ? user : "?",
             host && *host ? host : "localhost", port && *port ? port : "5432",
             db && *db ? db : "?");
}

/* libpq's messages end with a newline; keep one line. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
}

PGconn *pg_connect(const char *conninfo, int connect_timeout_s, int retry_ms, char *err,
                   size_t errlen)
{
    char timeout[16], shown[256], why[512];
    /* Later keywords override earlier ones, and `dbname` expands into everything the URI says: so
     * the URI's own connect_timeout, application_name and keepalives win over these defaults.
     * TCP keepalives after 30 s of silence, every 10 s, 3 unanswered: a peer that vanished (a
     * network partition, a machine that died) is noticed within about a minute even by a query
     * without a statement_timeout. */
    const char *keys[] = {"connect_timeout",   "fallback_application_name", "keepalives",
                          "keepalives_idle",   "keepalives_interval",       "keepalives_count",
                          "dbname",            NULL};
    const char *vals[] = {timeout, "books-server", "1", "30", "10", "3", conninfo, NULL};
    struct timespec start, now;
    long backoff_ms = 100, waited_ms = 0;

    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s);
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int attempt = 1;; attempt++) {
        PGconn *conn = PQconnectdbParams(keys, vals, 1);
        if (conn && PQstatus(conn) == CONNECTION_OK)
            return conn;
        pg_describe(conn, shown, sizeof shown);
        snprintf(why, sizeof why, "%s", conn ? PQerrorMessage(conn) : "out of memory");
        one_line(why);
        PQfinish(conn);
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited_ms + backoff_ms > retry_ms) {
            books_format_err(err, errlen,
                             "cannot connect to PostgreSQL at %s after %d attempt%s in %ld ms: %s",
                             shown, attempt, attempt == 1 ? "" : "s", waited_ms, why);
            return NULL;
        }
        log_msg(LOG_WARNING, "PostgreSQL at %s: %s; retrying in %ld ms", shown, why, backoff_ms);
        nanosleep(&(struct timespec){backoff_ms / 1000, (backoff_ms % 1000) * 1000000L}, NULL);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
}

int pg_sqlstate_error(const char *state)
{
    if (!state || strlen(state) != 5)
        return BOOKS_EUNAVAIL;
    /* 08: connection exceptions; 57P01-57P05: the server shutting down or restarting */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0)
        return BOOKS_EUNAVAIL;
    if (strcmp(state, "57014") == 0) /* query_canceled: a statement_timeout, or a cancel */
        return BOOKS_EDEADLINE;
    if (strcmp(state, "53100") == 0) /* disk_full: stays so until someone frees space */
        return BOOKS_ENOSPC;
    /* the rest of insufficient resources (53000, 53200 out_of_memory, 53300 too_many_connections,
     * 53400 configuration_limit_exceeded): the server turns work away for now */
    if (strncmp(state, "53", 2) == 0)
        return BOOKS_ETHROTTLED;
    if (strncmp(state, "40", 2) == 0) /* transaction rollback: serialization failure, deadlock */
        return BOOKS_EABORTED;
    /* 42: syntax or access rule (42501 insufficient_privilege, 42P01 undefined_table: the role or
     * the schema is wrong); 22 data exception, 23 integrity (a CHECK, a trigger: the unique ones
     * never reach here, ON CONFLICT takes them), 54 program limits (a row too big): the database
     * refuses, and will go on refusing until someone changes it */
    if (strncmp(state, "42", 2) == 0 || strncmp(state, "22", 2) == 0 ||
        strncmp(state, "23", 2) == 0 || strncmp(state, "54", 2) == 0)
        return BOOKS_EREFUSED;
    return BOOKS_EINTERNAL; /* XX internal error, 25 invalid transaction state, and the rest */
}

int pg_error(const PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (!conn || PQstatus(conn) != CONNECTION_OK || !state)
        return BOOKS_EUNAVAIL;
    return pg_sqlstate_error(state);
}

bool pg_row_refused(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
                     strncmp(state, "54", 2) == 0);
}

bool pg_layout_gone(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strcmp(state, "42703") == 0 || strcmp(state, "42P01") == 0 ||
                     strcmp(state, "0A000") == 0);
}

int pg_exec(PGconn *conn, const char *sql, ExecStatusType want, PGresult **out)
{
    PGresult *res = PQexec(conn, sql);
    int rc = res && PQresultStatus(res) == want ? 0 : pg_error(conn, res);

    if (out && rc == 0) {
        *out = res;
        return 0;
    }
    if (out)
        *out = NULL;
    PQclear(res);
    return rc;
}
