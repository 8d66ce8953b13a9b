/* store_postgres.h: the `postgresql://` backend (src/store/postgres/), for a deployment whose books
 * must outlive any one instance and be shared by many: Cloud SQL for PostgreSQL on Cloud Run,
 * AlloyDB, or any engine that speaks PostgreSQL's protocol and SQL (see README, "PostgreSQL").
 * Callers use it through store.h like any backend; this header adds the opener (for store.c's
 * scheme table) and the queries. */
#ifndef BOOKS_STORE_POSTGRES_H
#define BOOKS_STORE_POSTGRES_H

#include <stdint.h>

#include "books/store.h"

/* Opens the store from a libpq connection URI, `uri` being everything after "postgresql:" or
 * "postgres:" ("//user@host:5432/db?sslmode=require", or "///db?host=/cloudsql/P:R:I" for Cloud
 * Run's Cloud SQL socket, or "//user@pg0:5432,pg1:5432,pg2:5432/db" naming every node of a failover
 * manager's cluster). libpq reads the URI exactly as it documents (host, port, dbname, user,
 * sslmode, ...; the password from the URI, PGPASSWORD or a passfile), except that:
 *   - every connection (reads too) goes to a primary: target_session_attrs is read-write unless
 *     the URI says read-write or primary; any other value is BOOKS_EINVAL at open, naming it;
 *   - the hosts of a multi-host URI are tried all at once, the first that takes writes wins;
 *   - unless the URI sets them: fallback_application_name=books-server, and TCP keepalives (after
 *     silence_timeout_ms/2 s idle, every silence_timeout_ms/6 s, 3 probes) and tcp_user_timeout
 *     (silence_timeout_ms) (README, PostgreSQL, "Failover");
 * and except for this store's own parameters, which are taken out before libpq sees the rest:
 *   pool=N                  read connections, each with its thread (1..64, default 2)
 *   statement_timeout_ms=N  PostgreSQL's statement_timeout on every connection (0..3600000,
 *                           default 10000; 0: none): no query runs longer, whatever the caller
 *   startup_timeout_s=N     how long to keep retrying to connect at start-up (0..3600, default
 *                           30), with backoff, before giving up
 *   cache_mb=N              memory for the record cache above the store (record_cache.h:
 *                           0..65536, default 16)
 *   group_commit=on|off     on (default): creates queued meanwhile share one transaction; off:
 *                           one transaction per create (for comparison)
 *   synchronous_commit=on|remote_apply|remote_write|local|off  PostgreSQL's synchronous_commit,
 *                           set on every connection (default on: a create is acknowledged once
 *                           it is on the database's disk, and on its synchronous standbys')
 *   silence_timeout_ms=N    the longest, in milliseconds, a call waits on a database that does
 *                           not answer (100..3600000, default 5000): a connection silent for a
 *                           third of it is checked by a watchdog on a connection of its own
 *                           (src/store/postgres/watch.c); a database that answers nothing within it
 *                           makes calls fail fast (BOOKS_EUNAVAIL; BOOKS_EUNKNOWN for a create
 *                           that may have committed) and the store unavailable (store_watch)
 *                           until a primary answers
 *   contract=on|off         off (default): a database of the previous version (2) is expanded at
 *                           start-up and stays usable by servers of that version; on: it is also
 *                           contracted to version 3, which they cannot use, refused while one of
 *                           them is connected (schema.c; README, PostgreSQL, "Upgrades, and a
 *                           rolling deploy")
 * While serving, creates and reads are answered BOOKS_EUNAVAIL at once while no primary is known,
 * rather than queued until their deadline.
 * Start-up (blocking, in the caller's thread): connect (with retries), bring the schema to this
 * binary's version under an advisory lock (schema.c: create, expand, contract), open the read
 * connections, start the threads.
 * Returns 0; BOOKS_EINVAL (a bad parameter, a URI libpq cannot read, a target_session_attrs that
 * allows a standby); BOOKS_EUNAVAIL (no primary can be reached within startup_timeout_s: the
 * message names the servers and each one's reason, never the password); BOOKS_ECORRUPT (a newer
 * schema, or tables of another application); BOOKS_EREFUSED (contract=on while a server of the
 * previous version is connected); BOOKS_EIO; BOOKS_ENOMEM. */
int store_postgres_open(const char *uri, const struct store_limits *limits, struct store **out,
                        char *err, size_t errlen);

/* The reads, exposed for tests (e.g. to EXPLAIN them), for the two layouts a database may have
 * (schema.c): version 3, and version 2 expanded, whose rows written by servers of 363d47a have no
 * book but the columns of version 2, which the reads then return too (each NULL unless book is).
 * Results are binary: name, book[, display_name, publisher, authors]. */
#define STORE_POSTGRES_COLUMNS_V3 "b.name, b.book"
#define STORE_POSTGRES_COLUMNS_EXPANDED                                                            \
    "b.name, b.book, CASE WHEN b.book IS NULL THEN b.display_name END, "                           \
    "CASE WHEN b.book IS NULL THEN b.publisher END, CASE WHEN b.book IS NULL THEN b.authors END"
#define STORE_POSTGRES_GET_SQL(columns) "SELECT " columns " FROM books b WHERE b.name = $1"
/* A page is cut in the database by its bytes, so no result holds much more than a page (store.h:
 * store_ops.list's max_bytes): over the keyset's next LIMIT names, a running sum of each row's
 * bytes keeps the rows that begin within the byte bound, and always the first two; only those
 * rows are fetched whole. A record's page bytes (store_book_page_bytes) are never fewer than its
 * name's and book's bytes (or its version 2 columns' text), so the store's own stop rule, applied
 * to what comes back, always finds the row past the bound among them: the query never cuts a
 * page short. $LIMIT and $BYTES are the last two parameters. */
#define STORE_POSTGRES_ROW_BYTES_V3 "octet_length(name) + octet_length(book)"
#define STORE_POSTGRES_ROW_BYTES_EXPANDED                                                          \
    "octet_length(name) + coalesce(octet_length(book), octet_length(display_name) + "              \
    "octet_length(publisher) + coalesce(octet_length(array_to_string(authors, '')), 0))"
#define STORE_POSTGRES_PAGE_SQL(columns, row_bytes, where, lim, bytes)                             \
    "WITH keys AS (SELECT name, " row_bytes " AS sz FROM books " where " ORDER BY name LIMIT " lim \
    "), page AS (SELECT name, row_number() OVER w AS i, sum(sz) OVER w - sz AS before FROM keys "   \
    "WINDOW w AS (ORDER BY name ROWS UNBOUNDED PRECEDING)) "                                       \
    "SELECT " columns " FROM page JOIN books b ON b.name = page.name "                             \
    "WHERE page.i <= 2 OR page.before <= " bytes " ORDER BY page.name"
#define STORE_POSTGRES_LIST_FIRST_SQL(columns, row_bytes)                                          \
    STORE_POSTGRES_PAGE_SQL(columns, row_bytes, "", "$1", "$2::bigint")
#define STORE_POSTGRES_LIST_AFTER_SQL(columns, row_bytes)                                          \
    STORE_POSTGRES_PAGE_SQL(columns, row_bytes, "WHERE name > $1", "$2", "$3::bigint")

#endif
