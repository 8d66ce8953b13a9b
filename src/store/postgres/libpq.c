/* libpq.c: libpq, loaded when the first postgresql: store opens instead of when the process starts.
 *
 * libpq is the only library of the server that pulls in a large tree of others (GnuTLS, Kerberos,
 * LDAP, SASL, nettle, p11-kit, ...: 19 shared objects): linked normally, every start of the server
 * maps and relocates them, about 20 ms of its start-up on the machines of docs/performance.md and
 * 1-2 MiB of RSS, also for the memory: and sqlite: stores that never use them. Here the binary
 * links none of it: pg_libpq_load() dlopen()s Debian's libpq.so.5 (the soname of every libpq since
 * PostgreSQL 8.2) and looks up the functions the store calls; the definitions below carry libpq's
 * own names and prototypes (libpq-fe.h, checked by the compiler) and forward to them, so the rest of
 * the backend calls libpq as usual. Nothing else changes: the same library, the same calls.
 *
 * Threads: any. store_postgres_open() calls pg_libpq_load() first, which reports a missing or too
 * old libpq as an error; a forwarder called before that loads it itself (once, pthread_once), and
 * aborts with the reason when it cannot: it must not jump through NULL. */
#include "pg.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"

#define LIBPQ_SONAME "libpq.so.5"

/* Every libpq function the backend calls (and the tests, through the same names). */
#define LIBPQ_FUNCTIONS(X)                                                                         \
    X(PQbackendPID) X(PQcancel) X(PQclear) X(PQcmdStatus) X(PQcmdTuples) X(PQconnectPoll)          \
    X(PQconnectStartParams) X(PQconninfoFree) X(PQconninfoParse) X(PQconsumeInput) X(PQdb)         \
    X(PQenterPipelineMode) X(PQerrorMessage) X(PQexec) X(PQexecParams) X(PQfinish) X(PQflush)      \
    X(PQfreeCancel) X(PQfreemem) X(PQgetCancel) X(PQgetisnull) X(PQgetlength) X(PQgetResult)       \
    X(PQgetvalue) X(PQhost) X(PQisBusy) X(PQnfields) X(PQntuples) X(PQparameterStatus)             \
    X(PQpipelineSync) X(PQport) X(PQprepare) X(PQresultErrorField) X(PQresultErrorMessage)         \
    X(PQresultStatus) X(PQsendQueryParams) X(PQsendQueryPrepared) X(PQsetnonblocking) X(PQsocket)  \
    X(PQstatus) X(PQuser)

/* The looked-up functions, typed from libpq-fe.h's own declarations. */
#define DECLARE_POINTER(f) static __typeof__(f) *p_##f;
LIBPQ_FUNCTIONS(DECLARE_POINTER)
#undef DECLARE_POINTER

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static atomic_bool loaded;
static char load_error[STORE_ERR_BYTES];

static void load(void)
{
    void *lib = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error,
                 "cannot load %s, PostgreSQL's client library (Debian package libpq5): %s",
                 LIBPQ_SONAME, why ? why : "unknown error");
        return;
    }
#define LOOK_UP(f)                                                                                 \
    {                                                                                              \
        void *sym = dlsym(lib, #f);                                                                \
        if (!sym) {                                                                                \
            snprintf(load_error, sizeof load_error,                                                \
                     "%s has no %s: a libpq older than PostgreSQL 14 (pipeline mode)",             \
                     LIBPQ_SONAME, #f);                                                            \
            return;                                                                                \
        }                                                                                          \
        memcpy(&p_##f, &sym, sizeof p_##f); /* object to function pointer: POSIX */                \
    }
    LIBPQ_FUNCTIONS(LOOK_UP)
#undef LOOK_UP
    atomic_store(&loaded, true); /* the library stays loaded for the life of the process */
}

int pg_libpq_load(char *err, size_t errlen)
{
    pthread_once(&load_once, load);
    if (atomic_load(&loaded))
        return 0;
    books_format_err(err, errlen, "postgresql store: %s", load_error);
    return BOOKS_EIO;
}

/* The function pointer of `f`, loading libpq first if nobody has (a test that calls libpq before
 * it opens a store); a libpq that cannot be loaded then aborts: see the top. */
#define FN(f) (atomic_load_explicit(&loaded, memory_order_acquire) ? p_##f : (need(#f), p_##f))

static void need(const char *name)
{
    pthread_once(&load_once, load);
    if (atomic_load(&loaded))
        return;
    fprintf(stderr, "books-server: %s: %s\n", name, load_error);
    abort();
}

/* ---- libpq's functions, forwarded ------------------------------------------------------------- */

int PQbackendPID(const PGconn *conn) { return FN(PQbackendPID)(conn); }
int PQcancel(PGcancel *cancel, char *errbuf, int errbufsize)
{
    return FN(PQcancel)(cancel, errbuf, errbufsize);
}
void PQclear(PGresult *res) { FN(PQclear)(res); }
char *PQcmdStatus(PGresult *res) { return FN(PQcmdStatus)(res); }
char *PQcmdTuples(PGresult *res) { return FN(PQcmdTuples)(res); }
PostgresPollingStatusType PQconnectPoll(PGconn *conn) { return FN(PQconnectPoll)(conn); }
PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values,
                             int expand_dbname)
{
    return FN(PQconnectStartParams)(keywords, values, expand_dbname);
}
void PQconninfoFree(PQconninfoOption *connOptions) { FN(PQconninfoFree)(connOptions); }
PQconninfoOption *PQconninfoParse(const char *conninfo, char **errmsg)
{
    return FN(PQconninfoParse)(conninfo, errmsg);
}
int PQconsumeInput(PGconn *conn) { return FN(PQconsumeInput)(conn); }
char *PQdb(const PGconn *conn) { return FN(PQdb)(conn); }
int PQenterPipelineMode(PGconn *conn) { return FN(PQenterPipelineMode)(conn); }
char *PQerrorMessage(const PGconn *conn) { return FN(PQerrorMessage)(conn); }
PGresult *PQexec(PGconn *conn, const char *query) { return FN(PQexec)(conn, query); }
PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    return FN(PQexecParams)(conn, command, nParams, paramTypes, paramValues, paramLengths,
                            paramFormats, resultFormat);
}
void PQfinish(PGconn *conn) { FN(PQfinish)(conn); }
int PQflush(PGconn *conn) { return FN(PQflush)(conn); }
void PQfreeCancel(PGcancel *cancel) { FN(PQfreeCancel)(cancel); }
void PQfreemem(void *ptr) { FN(PQfreemem)(ptr); }
PGcancel *PQgetCancel(PGconn *conn) { return FN(PQgetCancel)(conn); }
char *PQresultErrorMessage(const PGresult *res) { return FN(PQresultErrorMessage)(res); }
int PQgetisnull(const PGresult *res, int tup_num, int field_num)
{
    return FN(PQgetisnull)(res, tup_num, field_num);
}
int PQgetlength(const PGresult *res, int tup_num, int field_num)
{
    return FN(PQgetlength)(res, tup_num, field_num);
}
PGresult *PQgetResult(PGconn *conn) { return FN(PQgetResult)(conn); }
char *PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
    return FN(PQgetvalue)(res, tup_num, field_num);
}
char *PQhost(const PGconn *conn) { return FN(PQhost)(conn); }
int PQisBusy(PGconn *conn) { return FN(PQisBusy)(conn); }
int PQnfields(const PGresult *res) { return FN(PQnfields)(res); }
int PQntuples(const PGresult *res) { return FN(PQntuples)(res); }
const char *PQparameterStatus(const PGconn *conn, const char *paramName)
{
    return FN(PQparameterStatus)(conn, paramName);
}
int PQpipelineSync(PGconn *conn) { return FN(PQpipelineSync)(conn); }
char *PQport(const PGconn *conn) { return FN(PQport)(conn); }
PGresult *PQprepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                    const Oid *paramTypes)
{
    return FN(PQprepare)(conn, stmtName, query, nParams, paramTypes);
}
char *PQresultErrorField(const PGresult *res, int fieldcode)
{
    return FN(PQresultErrorField)(res, fieldcode);
}
ExecStatusType PQresultStatus(const PGresult *res) { return FN(PQresultStatus)(res); }
int PQsendQueryParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                      const char *const *paramValues, const int *paramLengths,
                      const int *paramFormats, int resultFormat)
{
    return FN(PQsendQueryParams)(conn, command, nParams, paramTypes, paramValues, paramLengths,
                                 paramFormats, resultFormat);
}
int PQsendQueryPrepared(PGconn *conn, const char *stmtName, int nParams,
                        const char *const *paramValues, const int *paramLengths,
                        const int *paramFormats, int resultFormat)
{
    return FN(PQsendQueryPrepared)(conn, stmtName, nParams, paramValues, paramLengths,
                                   paramFormats, resultFormat);
}
int PQsetnonblocking(PGconn *conn, int arg) { return FN(PQsetnonblocking)(conn, arg); }
int PQsocket(const PGconn *conn) { return FN(PQsocket)(conn); }
ConnStatusType PQstatus(const PGconn *conn) { return FN(PQstatus)(conn); }
char *PQuser(const PGconn *conn) { return FN(PQuser)(conn); }
