/* open.c: store_sqlite_open() (sq.h has the design). Start-up never scans the table and never
 * modifies a file it rejects: it takes the lock, reads the 100-byte header itself, inspects with a
 * read-only connection, and only then opens for writing. */
#include "books/store_sqlite.h"

#include "sq.h"

#include "books/error.h"
#include "books/log.h"
#include "books/options.h"
#include "books/store_legacy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char SQLITE_MAGIC[16] = "SQLite format 3"; /* and its NUL: 16 bytes */

/* ---- settings from the URI (kept apart from the runtime, as a table) ------------------------- */

struct sqlite_options {
    char *path;       /* owned */
    int sync_normal;  /* synchronous=normal (1) or full (0) */
    int group_commit; /* on (1) or off (0) */
    int max_size_mb;  /* 0: no cap */
    int cache_mb;
};

#define URI_FIELD(f) offsetof(struct sqlite_options, f)

static const struct opt_choice synchronous_values[] = {{"full", 0}, {"normal", 1}, {NULL, 0}};
static const struct opt_choice on_off[] = {{"on", 1}, {"off", 0}, {NULL, 0}};

/* The parameters after '?', walked by opt_parse_query() (options.h). Values are case-insensitive
 * words (RFC 3986 style) or decimal MiB. */
static const struct opt uri_params[] = {
    {.name = "synchronous",
     .set = opt_set_choice,
     .offset = URI_FIELD(sync_normal),
     .choices = synchronous_values,
     .def = "full"},
    {.name = "group_commit",
     .set = opt_set_choice,
     .offset = URI_FIELD(group_commit),
     .choices = on_off,
     .def = "on"},
    {.name = "max_size_mb",
     .set = opt_set_int,
     .offset = URI_FIELD(max_size_mb),
     .min = 1,
     .max = MAX_SIZE_MB_LIMIT}, /* no default: no cap */
    {.name = "cache_mb",
     .set = opt_set_int,
     .offset = URI_FIELD(cache_mb),
     .min = 0,
     .max = CACHE_MB_LIMIT,
     .def = CACHE_MB_DEFAULT},
};

#define N_URI_PARAMS (sizeof(uri_params) / sizeof(uri_params[0]))

/* Global SQLite configuration, once per process and before SQLite initialises: per-allocation
 * memory statistics take a process-wide mutex on every malloc, which every reader and the writer
 * would contend on; we never read them. sqlite3_config() fails harmlessly (SQLITE_MISUSE) if
 * something else in the process initialised SQLite first. */
static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;

static void sqlite_configure(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* ---- opening: URI, paths, lock, inspection, schema ------------------------------------------- */

/* The message of a bad parameter; p->self is the URI after "sqlite:". */
static void report_param(struct opt_parser *p, const struct opt_problem *pr)
{
    const char *rest = p->self;
    char accepted[64], names[128];
    size_t off = 0;

    if (pr->kind == OPT_UNKNOWN) {
        names[0] = '\0';
        for (size_t i = 0; i < N_URI_PARAMS && off < sizeof(names); i++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                    uri_params[i].name);
        opt_fail(p, BOOKS_EINVAL,
                 "store URI \"sqlite:%s\": unknown parameter \"%.*s\"; accepted: %s", rest,
                 (int)(pr->name_len > 40 ? 40 : pr->name_len), pr->name, names);
        return;
    }
    opt_fail(p, BOOKS_EINVAL, "store URI \"sqlite:%s\": parameter \"%s\" %s; it takes %s", rest,
             pr->o->name,
             pr->kind == OPT_REPEATED        ? "is given twice"
             : pr->kind == OPT_MISSING_VALUE ? "has no value"
                                             : "has a bad value",
             opt_describe(pr->o, accepted, sizeof(accepted)));
}

static int parse_uri(const char *rest, struct sqlite_options *o, char *err, size_t errlen)
{
    const char *q = strchr(rest, '?');
    size_t path_len = q ? (size_t)(q - rest) : strlen(rest);
    struct opt_parser p = {
        .opts = uri_params,
        .n_opts = N_URI_PARAMS,
        .base = o,
        .report = report_param,
        .self = (void *)rest,
        .err = err,
        .errlen = errlen,
    };

    memset(o, 0, sizeof(*o));
    if (path_len == 0) {
        books_format_err(err, errlen,
                         "store URI \"sqlite:%s\": no database path; write sqlite:PATH, e.g. "
                         "sqlite:/var/lib/books/books.db",
                         rest);
        return BOOKS_EINVAL;
    }
    if (path_len == 8 && memcmp(rest, ":memory:", 8) == 0) {
        books_format_err(
            err, errlen,
            "store URI \"sqlite:%s\": an in-memory database is not durable; use memory:", rest);
        return BOOKS_EINVAL;
    }
    if (opt_load_defaults(&p) == 0 && q)
        opt_parse_query(&p, q + 1);
    if (p.rc == BOOKS_ENOMEM)
        books_format_err(err, errlen, "store URI \"sqlite:%s\": out of memory", rest);
    if (p.rc != 0)
        return p.rc;
    o->path = strndup(rest, path_len);
    if (!o->path) {
        books_format_err(err, errlen, "store URI \"sqlite:%s\": out of memory", rest);
        return BOOKS_ENOMEM;
    }
    return 0;
}

/* Canonical path of the database (symbolic links resolved, so two spellings of one file share
 * one lock) into *path, and its directory into dir (PATH_MAX bytes). */
static int resolve_paths(const char *shown, char **path, char *dir, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    const char *slash, *base;
    size_t dir_len;

    if (realpath(shown, buf)) {
        *path = strdup(buf);
        if (!*path)
            goto nomem;
        slash = strrchr(buf, '/');
        dir_len = slash == buf ? 1 : (size_t)(slash - buf);
        memcpy(dir, buf, dir_len);
        dir[dir_len] = '\0';
        return 0;
    }
    if (errno != ENOENT) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot resolve the path: %s", shown,
                         strerror(errno));
        return BOOKS_EIO;
    }
    /* The file does not exist yet: resolve its directory, which must. */
    slash = strrchr(shown, '/');
    base = slash ? slash + 1 : shown;
    if (base[0] == '\0') {
        books_format_err(err, errlen, "sqlite store \"%s\": the path names a directory, not a file",
                         shown);
        return BOOKS_EINVAL;
    }
    if (!slash) {
        snprintf(buf, sizeof(buf), ".");
    } else {
        dir_len = slash == shown ? 1 : (size_t)(slash - shown);
        if (dir_len >= sizeof(buf))
            goto toolong;
        memcpy(buf, shown, dir_len);
        buf[dir_len] = '\0';
    }
    if (!realpath(buf, dir)) {
        books_format_err(err, errlen, "sqlite store \"%s\": directory \"%s\": %s", shown, buf,
                         strerror(errno));
        return BOOKS_EIO;
    }
    if (strlen(dir) + 1 + strlen(base) >= PATH_MAX)
        goto toolong;
    if (asprintf(path, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", base) < 0) {
        *path = NULL;
        goto nomem;
    }
    return 0;
toolong:
    books_format_err(err, errlen, "sqlite store \"%s\": path too long", shown);
    return BOOKS_EINVAL;
nomem:
    books_format_err(err, errlen, "sqlite store \"%s\": out of memory", shown);
    return BOOKS_ENOMEM;
}

/* Takes the lock that keeps a second books-server off this database for our whole life.
 *
 * Why flock(2) on a separate PATH-lock file: SQLite itself locks the database with POSIX fcntl()
 * locks, which belong to the process and are all dropped when the process closes ANY descriptor
 * of the file; a descriptor of our own on the database would be a trap for SQLite's locks (and
 * flock on NFS is emulated with fcntl locks, where it would collide with SQLite's byte ranges).
 * A file SQLite never opens avoids both, and can be locked before the database exists, so two
 * first starts cannot both create it. flock locks belong to the open file description, so a
 * second store in this same process is refused too, and the kernel drops the lock when the
 * process dies: kill -9 leaves a file behind but no lock, and only the lock matters.
 *
 * The holder deletes the file when it lets go (close, or a start that fails), so a stopped
 * server leaves a clean directory. That is safe because a taker checks, once locked, that the
 * file it locked is still the one at the path; if the previous holder deleted it meanwhile, it
 * starts over. We write our pid into it for the "in use" message. */
static int take_lock(struct sqlite_store *ss, char *err, size_t errlen)
{
    char pid[32];
    struct stat by_fd, by_path;
    int fd;

    if (asprintf(&ss->lock_path, "%s-lock", ss->path) < 0) {
        ss->lock_path = NULL;
        books_format_err(err, errlen, "sqlite store \"%s\": out of memory", ss->shown);
        return BOOKS_ENOMEM;
    }
    for (;;) {
        fd = open(ss->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0) {
            books_format_err(err, errlen, "sqlite store \"%s\": cannot create lock file %s: %s",
                             ss->shown, ss->lock_path, strerror(errno));
            return BOOKS_EIO;
        }
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ssize_t n;

            if (errno == EINTR)
                continue;
            if (errno != EWOULDBLOCK) {
                books_format_err(err, errlen, "sqlite store \"%s\": cannot lock %s: %s", ss->shown,
                                 ss->lock_path, strerror(errno));
                close(fd);
                return BOOKS_EIO;
            }
            n = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            books_format_err(
                err, errlen,
                "sqlite store \"%s\": database in use by another books-server (pid %s holds "
                "the lock on %s)",
                ss->shown, pid[0] ? pid : "unknown", ss->lock_path);
            close(fd);
            return BOOKS_EIO;
        }
        if (fstat(fd, &by_fd) == 0 && stat(ss->lock_path, &by_path) == 0 &&
            by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino)
            break;
        close(fd); /* locked a file its holder deleted as it let go: take the new one */
    }
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) < 0) {
        /* Only the diagnostic is lost; the lock holds. */
    }
    ss->lock_fd = fd;
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the 100-byte database header without SQLite. *fresh: no file, or an empty one (SQLite
 * treats an empty file as an empty database). Our own descriptor is safe here: we hold the lock,
 * so no SQLite connection of this process has the file open whose fcntl locks close() could drop.
 */
static int check_header(struct sqlite_store *ss, bool *fresh, char *err, size_t errlen)
{
    unsigned char h[100];
    struct stat st;
    ssize_t n;
    int fd = open(ss->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    *fresh = false;
    if (fd < 0) {
        if (errno == ENOENT) {
            *fresh = true;
            return 0;
        }
        books_format_err(err, errlen, "sqlite store \"%s\": cannot open: %s", ss->shown,
                         strerror(errno));
        return BOOKS_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        books_format_err(err, errlen, "sqlite store \"%s\": not a regular file", ss->shown);
        return BOOKS_EIO;
    }
    /* SQLite would quietly open a file it may not write read-only and fail at the first create
     * ("attempt to write a readonly database"); refuse at start-up instead. */
    if (access(ss->path, W_OK) != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": the database file is not writable (%s)",
                         ss->shown, strerror(errno));
        close(fd);
        return BOOKS_EIO;
    }
    if (st.st_size == 0) {
        close(fd);
        *fresh = true;
        return 0;
    }
    n = pread(fd, h, sizeof(h), 0);
    close(fd);
    if (n < 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot read: %s", ss->shown,
                         strerror(errno));
        return BOOKS_EIO;
    }
    if ((size_t)n < sizeof(h) || memcmp(h, SQLITE_MAGIC, sizeof(SQLITE_MAGIC)) != 0) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": not a SQLite database (no SQLite header); left untouched",
            ss->shown);
        return BOOKS_ECORRUPT;
    }
    /* application_id lives at offset 68 and never changes once set, so a non-zero foreign value
     * is final even if newer pages sit in the log. 0 may still be ours (a database created in
     * WAL mode keeps its header in the log until a checkpoint): SQLite decides below. */
    if (be32(h + 68) != 0 && be32(h + 68) != BOOKS_APPLICATION_ID) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": a SQLite database of another application (application_id "
            "0x%08x), not a books database; left untouched",
            ss->shown, be32(h + 68));
        return BOOKS_ECORRUPT;
    }
    return 0;
}

/* Inspects an existing SQLite file read-only. *fresh when it is an empty database (no schema at
 * all, as left by a first start that died before its creating transaction committed). */
static int inspect(struct sqlite_store *ss, bool *fresh, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    long long app = 0, version = 0, objects = 0, tables = 0;
    char encoding[16] = "";
    int rc;

    rc = sqlite3_open_v2(ss->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sq_query_int(db, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK)
        rc = sq_query_int(db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK)
        rc = sq_query_int(db, "SELECT count(*) FROM sqlite_schema", &objects);
    if (rc == SQLITE_OK)
        rc = sq_query_int(db,
                          "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                          "('books', 'meta')",
                          &tables);
    if (rc == SQLITE_OK)
        rc = sq_query_text(db, "PRAGMA encoding", encoding, sizeof(encoding));
    if (rc != SQLITE_OK) {
        int books = sq_map_rc(rc);

        books_format_err(err, errlen, "sqlite store \"%s\": %s (%s); left untouched", ss->shown,
                         books == BOOKS_ECORRUPT ? "not a SQLite database, or a damaged one"
                                                 : "cannot read the database",
                         db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return books == BOOKS_ECORRUPT ? BOOKS_ECORRUPT
               : books == BOOKS_ENOMEM ? BOOKS_ENOMEM
                                       : BOOKS_EIO;
    }
    sqlite3_close(db);

    *fresh = app == 0 && version == 0 && objects == 0;
    if (*fresh)
        return 0;
    if (app != BOOKS_APPLICATION_ID) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": a SQLite database of another application (application_id "
            "0x%08llx, %lld schema objects), not a books database; left untouched",
            ss->shown, app & 0xffffffffLL, objects);
        return BOOKS_ECORRUPT;
    }
    if (version > SCHEMA_VERSION) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": written by a newer books-server (schema version %lld, this "
            "binary knows up to %d); upgrade books-server",
            ss->shown, version, SCHEMA_VERSION);
        return BOOKS_ECORRUPT;
    }
    if (version < 1 || tables != 2 || strcmp(encoding, "UTF-8") != 0) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": a damaged books database (schema version %lld, %lld of 2 "
            "tables, encoding %s); left untouched",
            ss->shown, version, tables, encoding);
        return BOOKS_ECORRUPT;
    }
    return 0;
}

/* Schema version 0 -> 1: the tables and the data set's key. Runs inside the migration's
 * transaction; returns a SQLite rc. */
static int migrate_create(sqlite3 *db)
{
    uint8_t key[STORE_DATASET_KEY_BYTES];
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sq_exec(db, "CREATE TABLE books ("
                     " name TEXT PRIMARY KEY NOT NULL,"
                     " display_name TEXT NOT NULL,"
                     " publisher TEXT NOT NULL,"
                     " authors BLOB NOT NULL"
                     ") STRICT, WITHOUT ROWID;"
                     "CREATE TABLE meta ("
                     " key TEXT PRIMARY KEY NOT NULL,"
                     " value BLOB NOT NULL"
                     ") STRICT, WITHOUT ROWID;");
    if (rc != SQLITE_OK)
        return rc;
    if (store_new_dataset_key(key) != 0)
        return SQLITE_IOERR;
    rc = sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) VALUES ('dataset_key', ?1)", -1, &st,
                            NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, 1, key, sizeof(key), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    sqlite3_finalize(st);
    return rc;
}

/* Schema version 1 -> 2: AIP-155 request ids on the books they made (sq.h). */
static int migrate_request_ids(sqlite3 *db)
{
    return sq_exec(db, "ALTER TABLE books ADD COLUMN request_id TEXT;"
                       "ALTER TABLE books ADD COLUMN request_hash BLOB;"
                       "ALTER TABLE books ADD COLUMN created_at INTEGER;"
                       "CREATE UNIQUE INDEX books_request_id ON books(request_id)"
                       " WHERE request_id IS NOT NULL;"
                       "CREATE INDEX books_request_age ON books(created_at)"
                       " WHERE request_id IS NOT NULL;");
}

/* books_legacy_body(display_name, publisher, authors): the SQL function of migrate_book_blob, the
 * encoded Book body of a row of schema 2 (store_legacy.h), whose `authors` blob holds each author
 * followed by one NUL byte ("a\0b\0"; no authors: the empty blob). A row that is not one of those
 * (a NULL, a blob without its last NUL, more authors than STORE_LEGACY_MAX_AUTHORS) fails the
 * migration, naming it. */
static void legacy_body_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    struct store_text authors[STORE_LEGACY_MAX_AUTHORS];
    const char *display = (const char *)sqlite3_value_text(argv[0]);
    const char *publisher = (const char *)sqlite3_value_text(argv[1]);
    const char *blob = sqlite3_value_blob(argv[2]);
    size_t len = (size_t)sqlite3_value_bytes(argv[2]), n = 0;
    uint8_t *body;

    (void)argc;
    if (!display || !publisher || sqlite3_value_type(argv[2]) == SQLITE_NULL ||
        (len > 0 && (!blob || blob[len - 1] != '\0'))) {
        sqlite3_result_error(ctx, "a row of schema version 2 is damaged (a NULL column, or an "
                                  "authors blob not ending in NUL)", -1);
        return;
    }
    for (const char *p = blob, *end = blob + len; p < end; n++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (n == STORE_LEGACY_MAX_AUTHORS) {
            sqlite3_result_error(ctx, "a row of schema version 2 has too many authors", -1);
            return;
        }
        authors[n] = (struct store_text){p, (size_t)(nul - p)};
        p = nul + 1;
    }
    const struct store_legacy_book b = {
        .display_name = {display, (size_t)sqlite3_value_bytes(argv[0])},
        .publisher = {publisher, (size_t)sqlite3_value_bytes(argv[1])},
        .authors = authors,
        .n_authors = n,
    };
    size_t size = store_legacy_body(&b, NULL);
    body = sqlite3_malloc64(size ? size : 1);
    if (!body) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    store_legacy_body(&b, body);
    sqlite3_result_blob64(ctx, body, size, sqlite3_free);
}

/* Schema version 2 -> 3: each book as its encoded Book (sq.h) instead of three columns, and the
 * request ids' new fingerprint column; the fingerprints version 2 stored stay in request_hash,
 * where store_request_matches() compares retries of those requests. The rows are copied into a
 * table of the new layout, which then takes the old one's place and its indexes. */
static int migrate_book_blob(sqlite3 *db)
{
    int rc = sqlite3_create_function(db, "books_legacy_body", 3,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, legacy_body_fn,
                                     NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sq_exec(db, "CREATE TABLE books_v3 ("
                         " name TEXT PRIMARY KEY NOT NULL,"
                         " book BLOB NOT NULL,"
                         " request_id TEXT,"
                         " request_fingerprint BLOB,"
                         " request_hash BLOB,"
                         " created_at INTEGER"
                         ") STRICT, WITHOUT ROWID;"
                         "INSERT INTO books_v3 (name, book, request_id, request_hash, created_at)"
                         " SELECT name, books_legacy_body(display_name, publisher, authors),"
                         " request_id, request_hash, created_at FROM books ORDER BY name;"
                         "DROP TABLE books;"
                         "ALTER TABLE books_v3 RENAME TO books;"
                         "CREATE UNIQUE INDEX books_request_id ON books(request_id)"
                         " WHERE request_id IS NOT NULL;"
                         "CREATE INDEX books_request_age ON books(created_at)"
                         " WHERE request_id IS NOT NULL;");
    (void)sqlite3_create_function(db, "books_legacy_body", 3, SQLITE_UTF8, NULL, NULL, NULL,
                                  NULL);
    return rc;
}

/* Schema steps: migrations[v] takes a database from version v to v + 1. A new database walks
 * every step too (with no rows, the copies cost nothing), so each step runs at every first start;
 * an old one walks the steps it lacks; all of them in one transaction (migrate()). A future
 * version adds a row and bumps SCHEMA_VERSION. */
static int (*const migrations[SCHEMA_VERSION])(sqlite3 *db) = {
    migrate_create,      /* 0 -> 1 */
    migrate_request_ids, /* 1 -> 2 */
    migrate_book_blob,   /* 2 -> 3 */
};

/* Brings the database to SCHEMA_VERSION in one IMMEDIATE transaction: all steps or none. */
static int migrate(struct sqlite_store *ss, char *err, size_t errlen)
{
    sqlite3 *db = ss->writer;
    long long version = 0;
    char sql[64];
    int rc;

    rc = sq_exec(db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = sq_query_int(db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK && (version < 0 || version > SCHEMA_VERSION))
        rc = SQLITE_CORRUPT; /* inspect() checked; only a concurrent writer could change it */
    for (long long v = version; rc == SQLITE_OK && v < SCHEMA_VERSION; v++)
        rc = migrations[v](db);
    if (rc == SQLITE_OK && version < SCHEMA_VERSION) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 BOOKS_APPLICATION_ID, SCHEMA_VERSION);
        rc = sq_exec(db, sql);
    }
    if (rc == SQLITE_OK)
        rc = sq_exec(db, "COMMIT");
    if (rc != SQLITE_OK) {
        books_format_err(err, errlen,
                         "sqlite store \"%s\": cannot %s the schema (from version %lld to %d): "
                         "%s; the database is left as it was",
                         ss->shown, version ? "migrate" : "create", version, SCHEMA_VERSION,
                         sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db))
            sq_exec(db, "ROLLBACK");
        rc = sq_map_rc(rc);
        return rc ? rc : BOOKS_EIO;
    }
    if (version > 0 && version < SCHEMA_VERSION)
        log_msg(LOG_INFO, "sqlite store \"%s\": schema migrated from version %lld to %d",
                ss->shown, version, SCHEMA_VERSION);
    return 0;
}

/* fsync of the directory, so a new database file's name is as durable as its content. */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    int fd;

    memcpy(dir, path, len);
    dir[len] = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int read_dataset_key(struct sqlite_store *ss, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ss->writer, "SELECT value FROM meta WHERE key = 'dataset_key'", -1,
                                &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW &&
        sqlite3_column_bytes(st, 0) == STORE_DATASET_KEY_BYTES) {
        memcpy(ss->base.dataset_key, sqlite3_column_blob(st, 0), STORE_DATASET_KEY_BYTES);
        sqlite3_finalize(st);
        return 0;
    }
    books_format_err(err, errlen, "sqlite store \"%s\": %s", ss->shown,
                     rc == SQLITE_ROW || rc == SQLITE_DONE
                         ? "a damaged books database (no data set key)"
                         : sqlite3_errmsg(ss->writer));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? BOOKS_ECORRUPT : sq_map_rc(rc);
}

/* Opens and configures the write connection, creates or migrates the schema, reads the key and
 * prepares the committer's statements. */
static int open_writer(struct sqlite_store *ss, const struct sqlite_options *o, bool fresh,
                       char *err, size_t errlen)
{
    sqlite3 *db;
    char mode[16] = "";
    char sql[96];
    long long page_size = 0;
    int rc;

    rc = sqlite3_open_v2(ss->path, &ss->writer,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    db = ss->writer;
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* Belt and braces for check_header()'s test (e.g. a read-only mount it did not catch). */
    if (sqlite3_db_readonly(db, "main") == 1) {
        books_format_err(err, errlen, "sqlite store \"%s\": the database file is not writable",
                         ss->shown);
        return BOOKS_EIO;
    }
    /* Fixed before the first table exists: BINARY order is strcmp order only in UTF-8. */
    if (fresh && (rc = sq_exec(db, "PRAGMA encoding = 'UTF-8'")) != SQLITE_OK)
        goto fail;
    rc = sq_query_text(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
    if (rc != SQLITE_OK)
        goto fail;
    if (strcasecmp(mode, "wal") != 0) {
        books_format_err(err, errlen,
                         "sqlite store \"%s\": this file system does not support SQLite's WAL mode "
                         "(journal mode stays %s)",
                         ss->shown, mode);
        return BOOKS_EIO;
    }
    rc = sq_exec(db, "PRAGMA synchronous = FULL");
    if (rc == SQLITE_OK) {
        rc = migrate(ss, err, errlen);
        if (rc != 0)
            return rc;
        if (fresh)
            sync_dir(ss->path);
    }
    /* FULL: every COMMIT fsyncs the log. NORMAL: the log is fsync'ed only at checkpoints, so a
     * committed transaction survives a process crash but not a power cut. */
    if (rc == SQLITE_OK && o->sync_normal)
        rc = sq_exec(db, "PRAGMA synchronous = NORMAL");
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d; PRAGMA cache_size = -%d",
                 JOURNAL_SIZE_LIMIT_BYTES, WRITER_CACHE_KIB);
        rc = sq_exec(db, sql);
    }
    /* Checkpoints are the committer's (sq_maybe_checkpoint); this also turns off SQLite's own. */
    sqlite3_wal_hook(db, sq_on_wal_commit, ss);
    if (rc == SQLITE_OK && o->max_size_mb) {
        rc = sq_query_int(db, "PRAGMA page_size", &page_size);
        if (rc == SQLITE_OK && page_size > 0) {
            /* A cap below the current size leaves it at the current size: creates then fail
             * with BOOKS_ENOSPC and reads go on. */
            snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
                     (long long)o->max_size_mb * (1024 * 1024 / page_size));
            rc = sq_exec(db, sql);
        }
    }
    if (rc != SQLITE_OK)
        goto fail;
    rc = read_dataset_key(ss, err, errlen);
    if (rc != 0)
        return rc;
    rc = sq_prepare(db,
                    "INSERT INTO books(name, book, request_id, request_fingerprint, created_at) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)",
                    &ss->insert);
    if (rc == SQLITE_OK)
        rc = sq_prepare(db,
                        "SELECT name, book, request_fingerprint, request_hash FROM books "
                        "WHERE request_id = ?1",
                        &ss->find_request);
    if (rc == SQLITE_OK)
        rc = sq_prepare(db,
                        "UPDATE books SET request_id = NULL, request_fingerprint = NULL, "
                        "request_hash = NULL, created_at = NULL WHERE name IN (SELECT name FROM "
                        "books WHERE request_id IS NOT NULL AND created_at < ?1 LIMIT ?2)",
                        &ss->purge_requests);
    if (rc == SQLITE_OK)
        rc = sq_prepare(db, "BEGIN IMMEDIATE", &ss->begin);
    if (rc == SQLITE_OK)
        rc = sq_prepare(db, "COMMIT", &ss->commit);
    if (rc == SQLITE_OK)
        rc = sq_prepare(db, "ROLLBACK", &ss->rollback);
    if (rc != SQLITE_OK)
        goto fail;
    return 0;
fail:
    books_format_err(err, errlen, "sqlite store \"%s\": cannot open for writing: %s", ss->shown,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return sq_map_rc(rc) == BOOKS_ENOMEM ? BOOKS_ENOMEM : BOOKS_EIO;
}

int store_sqlite_open(const char *rest, const struct store_limits *limits, struct store **out,
                      char *err, size_t errlen)
{
    struct sqlite_options o;
    struct sqlite_store *ss;
    struct reader *r = NULL;
    char dir[PATH_MAX];
    char msg[160];
    bool fresh = false;
    int rc;

    if (!rest || !out) {
        books_format_err(err, errlen, "store URI \"sqlite:\": missing");
        return BOOKS_EINVAL;
    }
    rc = parse_uri(rest, &o, err, errlen);
    if (rc != 0)
        return rc;
    pthread_once(&sqlite_config_once, sqlite_configure);

    ss = calloc(1, sizeof(*ss));
    if (!ss) {
        books_format_err(err, errlen, "sqlite store \"%s\": out of memory", o.path);
        free(o.path);
        return BOOKS_ENOMEM;
    }
    ss->base.ops = &sq_ops;
    ss->shown = o.path; /* owned by ss from here on; sq_destroy() frees it */
    ss->lock_fd = -1;
    ss->batch_max = o.group_commit ? BATCH_MAX : 1;
    pthread_mutex_init(&ss->pool_mu, NULL);
    pthread_cond_init(&ss->pool_cv, NULL);
    /* The record cache store_open() puts above the store (record_cache.h). */
    ss->base.cache_bytes = (size_t)o.cache_mb * 1024 * 1024;
    ss->request_ttl_s = limits->request_ttl_s ? limits->request_ttl_s : STORE_REQUEST_TTL_DEFAULT_S;
    ss->purged_at = time(NULL);

    rc = resolve_paths(ss->shown, &ss->path, dir, err, errlen);
    if (rc != 0)
        goto fail;
    /* SQLite creates PATH-wal and PATH-shm beside the database (and we PATH-lock); in a directory
     * it cannot write to, it would fail later and less clearly. */
    if (access(dir, W_OK | X_OK) != 0) {
        books_format_err(
            err, errlen,
            "sqlite store \"%s\": directory %s is not writable (%s); the store creates its "
            "-wal, -shm and -lock files there",
            ss->shown, dir, strerror(errno));
        rc = BOOKS_EIO;
        goto fail;
    }
    rc = take_lock(ss, err, errlen);
    if (rc != 0)
        goto fail;
    rc = check_header(ss, &fresh, err, errlen);
    if (rc == 0 && !fresh)
        rc = inspect(ss, &fresh, err, errlen);
    if (rc != 0)
        goto fail;
    rc = open_writer(ss, &o, fresh, err, errlen);
    if (rc != 0)
        goto fail;
    /* One read connection now, so a problem with reading shows at start-up, not at the first
     * request; the rest open on demand. */
    rc = sq_reader_open(ss, &r, msg, sizeof(msg));
    if (rc != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot open for reading: %s", ss->shown,
                         msg);
        goto fail;
    }
    ss->idle = r;
    ss->n_readers = 1;
    const struct commit_backend backend = {
        .self = ss, .write_batch = sq_write_batch, .idle = sq_maybe_checkpoint};
    rc = commit_pipeline_start(&backend, ss->batch_max, limits->max_queued, "books", ss->shown,
                               &ss->pipeline);
    if (rc != 0) {
        books_format_err(err, errlen, "sqlite store \"%s\": cannot start the commit threads",
                         ss->shown);
        goto fail;
    }
    *out = &ss->base;
    return 0;

fail:
    /* sq_destroy() undoes whatever steps ran: readers, writer, lock, memory. */
    sq_destroy(ss, false);
    return rc;
}
