/* test_store_sqlite.c: what the durable `sqlite:` backend promises beyond the conformance suite
 * (test_store.c runs that suite against it): books and the data set key survive a reopen; the URI
 * parameters; every start-up error gives its code, names the path, and leaves the file byte for
 * byte as it was; a full database refuses creates with BOOKS_ENOSPC while reads go on, and
 * recovers with a larger cap; duplicates inside one batch; group commit really batches; done()
 * runs exactly once per create, close included; the list queries walk the primary key.
 *
 * Batching is made deterministic without timing or a test hook: the test's own SQLite connection
 * holds the write lock while it queues creates (see struct gate), so they land in one batch. Each
 * test gets its own mkdtemp() directory, removed in teardown. */
#include "books/error.h"
#include "books/log.h"
#include "books/store.h"
#include "books/store_sqlite.h"
#include "support/create_wait.h"
#include "support/test_book.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- fixture: a private directory ------------------------------------------------------------ */

struct fixture {
    char dir[PATH_MAX];
    char db[PATH_MAX + 16]; /* dir/books.db */
};

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        chmod(path, 0700);
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_store_sqlite.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/books.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    chmod(f->dir, 0700);
    if (nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "test_store_sqlite: cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static struct store *open_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct store *open_ok(const char *fmt, ...)
{
    char uri[PATH_MAX + 128];
    char err[STORE_ERR_BYTES] = "";
    struct store *s = NULL;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(uri, sizeof(uri), fmt, ap);
    va_end(ap);
    rc = store_open(uri, NULL, &s, err, sizeof(err));
    if (rc != 0)
        fail_msg("store_open(%s): %s: %s", uri, books_err_name(rc), err);
    return s;
}

static int create_book(struct store *s, const char *name, const char *title,
                       const char *const *authors, size_t n, const char *publisher)
{
    struct store_book *b = NULL;
    int rc = test_book_new(name, title, authors, n, publisher, &b);

    if (rc == 0)
        rc = create_sync(s, b);
    store_book_unref(b);
    return rc;
}

static int create_simple(struct store *s, const char *name)
{
    static const char *const authors[] = {"An Author"};

    return create_book(s, name, "A Title", authors, 1, "A Publisher");
}

/* Holds the committer back so that creates queue up into one batch, without timing and without
 * a hook in the store: the test's own connection takes SQLite's write lock (BEGIN IMMEDIATE), one
 * "gate" create is queued, and once the committer has taken that batch (its transaction counter
 * moved) it waits in BEGIN for the lock (the store's busy timeout is 5 s). Everything queued
 * until gate_open() then forms the next batch. */
struct gate {
    sqlite3 *db;
    struct create_wait w;
};

static struct store_sqlite_stats stats_of(struct store *s);

static void gate_close(struct store *s, const char *path, struct gate *g, const char *name)
{
    static const char *const authors[] = {"Gatekeeper"};
    struct store_book *b = NULL;
    uint64_t before = stats_of(s).transactions;

    assert_int_equal(sqlite3_open(path, &g->db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(g->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(test_book_new(name, "Gate", authors, 1, "Pub", &b), 0);
    create_wait_init(&g->w);
    store_create_book(s, b, create_wait_done, &g->w);
    store_book_unref(b);
    while (stats_of(s).transactions == before)
        sched_yield();
}

static void gate_open(struct gate *g)
{
    assert_int_equal(sqlite3_exec(g->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(g->db), SQLITE_OK);
    g->db = NULL;
}

/* Waits for the gate create's answer; returns its rc. */
static int gate_cleanup(struct gate *g)
{
    int rc = create_wait_rc(&g->w);

    create_wait_cleanup(&g->w);
    return rc;
}

static struct store_sqlite_stats stats_of(struct store *s)
{
    struct store_sqlite_stats st;

    assert_int_equal(store_sqlite_stats(s, &st), 0);
    return st;
}

/* Reads a whole regular file (small ones) into a malloc'ed buffer; NULL for anything else. */
static unsigned char *slurp(const char *path, size_t *len)
{
    struct stat st;
    unsigned char *buf;
    FILE *fp;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    buf = malloc((size_t)st.st_size + 1);
    if (buf && fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        free(buf);
        buf = NULL;
    }
    *len = (size_t)st.st_size;
    fclose(fp);
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* Runs SQL on the file with a connection of the test's own (never while a store has it open). */
static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sqlite3_exec(%s): %s", sql, msg ? msg : "?");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Expects store_open to fail with `want`, a message naming the path and containing `cause`,
 * the out-parameter untouched and the database file byte-identical (or still absent). */
static void expect_open_fails(const char *uri, const char *path, int want, const char *cause)
{
    struct store *sentinel = (struct store *)&sentinel;
    struct store *s = sentinel;
    char err[STORE_ERR_BYTES] = "";
    unsigned char *before, *after;
    size_t len_before = 0, len_after = 0;
    int rc;

    before = slurp(path, &len_before);
    rc = store_open(uri, NULL, &s, err, sizeof(err));
    if (rc != want)
        fail_msg("store_open(%s): got %s (%s), want %s", uri, books_err_name(rc), err,
                 books_err_name(want));
    assert_ptr_equal(s, sentinel);
    if (!strstr(err, path) || !strstr(err, cause))
        fail_msg("store_open(%s): message \"%s\" lacks the path or \"%s\"", uri, err, cause);
    after = slurp(path, &len_after);
    assert_int_equal(before != NULL, after != NULL);
    if (before) {
        assert_int_equal(len_before, len_after);
        assert_memory_equal(before, after, len_before);
    }
    free(before);
    free(after);
}

/* ---- reopen ---------------------------------------------------------------------------------- */

/* Authors that would break a naive encoding: separators, quotes, brackets, control characters,
 * empty strings, multi-byte UTF-8. */
static const char *const tricky_authors[] = {
    "Smith, John",  "a;b|c\td\ne", "\"quoted\" [json] {x}", "",
    "\x1f\x1e\x01", "\\",          "Ünïcödé 村上 📚",        "",
};

static void test_reopen_keeps_books_and_key(void **state)
{
    struct fixture *f = *state;
    uint8_t key[STORE_DATASET_KEY_BYTES];
    struct store_book *page[8];
    struct store_book *got = NULL;
    struct store *s;
    size_t n = 0;

    s = open_ok("sqlite:%s", f->db);
    memcpy(key, s->dataset_key, sizeof(key));
    assert_int_equal(create_book(s, "books/b", "Title, with comma", tricky_authors,
                                 ARRAY_LEN(tricky_authors), "Pub\nlisher"),
                     0);
    assert_int_equal(create_book(s, "books/a", "", NULL, 0, ""), 0); /* every field at its default */
    assert_int_equal(create_simple(s, "books/c"), 0);
    store_close(s);

    /* A clean close folds the log back and releases the lock file. */
    {
        char side[PATH_MAX + 32];

        snprintf(side, sizeof(side), "%s-lock", f->db);
        assert_false(exists(side));
        snprintf(side, sizeof(side), "%s-wal", f->db);
        assert_false(exists(side));
    }

    /* Through the file: alias, same data set. */
    s = open_ok("file:%s", f->db);
    assert_memory_equal(s->dataset_key, key, sizeof(key));
    assert_int_equal(store_list(s, NULL, ARRAY_LEN(page), page, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(page[0]->name, "books/a");
    Books__V1__Book *m = test_book_decode(page[0]);
    assert_non_null(m);
    assert_int_equal(m->n_authors, 0);
    assert_string_equal(m->display_name, "");
    test_book_free(m);
    assert_string_equal(page[1]->name, "books/b");
    assert_string_equal(page[2]->name, "books/c");
    for (size_t i = 0; i < n; i++)
        store_book_unref(page[i]);

    assert_int_equal(store_get(s, "books/b", &got), 0);
    m = test_book_decode(got);
    assert_non_null(m);
    assert_string_equal(m->display_name, "Title, with comma");
    assert_string_equal(m->publisher, "Pub\nlisher");
    assert_int_equal(m->n_authors, ARRAY_LEN(tricky_authors));
    for (size_t i = 0; i < ARRAY_LEN(tricky_authors); i++)
        assert_string_equal(m->authors[i], tricky_authors[i]);
    test_book_free(m);
    store_book_unref(got);
    /* Still refuses the same name after a restart. */
    assert_int_equal(create_simple(s, "books/c"), BOOKS_EEXIST);
    store_close(s);
}

/* A relative path works, and names resolve the same file. */
static void test_relative_path(void **state)
{
    struct fixture *f = *state;
    char cwd[PATH_MAX];
    struct store *s;
    struct store_book *got = NULL;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0);
    s = open_ok("sqlite:books.db");
    assert_int_equal(create_simple(s, "books/rel"), 0);
    store_close(s);
    assert_int_equal(chdir(cwd), 0);
    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(store_get(s, "books/rel", &got), 0);
    store_book_unref(got);
    store_close(s);
}

/* An empty file, or an empty SQLite database (a first start that died before its schema
 * committed), becomes a books database. */
static void test_empty_file_and_empty_database(void **state)
{
    struct fixture *f = *state;
    struct store *s;

    write_file(f->db, "", 0);
    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(create_simple(s, "books/x"), 0);
    store_close(s);

    assert_int_equal(unlink(f->db), 0);
    sql_exec(f->db, "PRAGMA journal_mode = WAL; PRAGMA user_version = 0");
    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(create_simple(s, "books/y"), 0);
    store_close(s);
}

/* ---- URI parameters -------------------------------------------------------------------------- */

static void test_uri_parameters(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *query;
        const char *names; /* the message must contain this */
    } bad[] = {
        {"?foo=1", "\"foo\""},
        {"?synchronous=fast", "\"synchronous\""},
        {"?synchronous", "\"synchronous\""},
        {"?synchronous=full&synchronous=normal", "\"synchronous\""},
        {"?group_commit=maybe", "\"group_commit\""},
        {"?max_size_mb=0", "\"max_size_mb\""},
        {"?max_size_mb=-1", "\"max_size_mb\""},
        {"?max_size_mb=12x", "\"max_size_mb\""},
        {"?max_size_mb=99999999", "\"max_size_mb\""},
        {"?group_commit=on&", "\"\""},
        {"?cache_mb=65537", "\"cache_mb\""},
        {"?cache_mb=", "\"cache_mb\""},
        {"?cache_mb=x", "\"cache_mb\""},
    };
    char uri[PATH_MAX + 128];
    char err[STORE_ERR_BYTES];
    struct store *s = NULL;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(uri, sizeof(uri), "sqlite:%s%s", f->db, bad[i].query);
        err[0] = '\0';
        assert_int_equal(store_open(uri, NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
        if (!strstr(err, bad[i].names))
            fail_msg("%s: message \"%s\" does not name %s", uri, err, bad[i].names);
        assert_false(exists(f->db)); /* refused before touching anything */
    }
    assert_int_equal(store_open("sqlite:", NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(store_open("sqlite:?synchronous=full", NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
    assert_int_equal(store_open("sqlite::memory:", NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
    assert_non_null(strstr(err, "memory:"));

    /* Every accepted value, case-insensitive; the scheme too (RFC 3986). */
    s = open_ok("SQLite:%s?synchronous=NORMAL&group_commit=off&max_size_mb=5", f->db);
    assert_string_equal(s->ops->scheme, "sqlite");
    assert_int_equal(create_simple(s, "books/p"), 0);
    store_close(s);
    s = open_ok("sqlite:%s?synchronous=full&group_commit=on&max_size_mb=1048576&cache_mb=0", f->db);
    assert_int_equal(create_simple(s, "books/q"), 0);
    store_close(s);
    s = open_ok("sqlite:%s?cache_mb=65536", f->db);
    store_close(s);
}

/* ---- start-up errors: code, message, file untouched ------------------------------------------ */

static void test_not_sqlite_files(void **state)
{
    struct fixture *f = *state;
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0,   0, 0, 13,
                                        'I',  'H', 'D', 'R', 0,    0,    0,    1,    0,   0, 0, 1,
                                        8,    6,   0,   0,   0,    0x1f, 0x15, 0xc4, 0x89};
    const char *text = "# books\nThis is a text file, not a database.\n";
    unsigned char noise[8192];
    char uri[PATH_MAX + 32];

    snprintf(uri, sizeof(uri), "sqlite:%s", f->db);
    write_file(f->db, text, strlen(text));
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a SQLite database");

    write_file(f->db, png, sizeof(png));
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a SQLite database");

    srand(7);
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (unsigned char)rand();
    write_file(f->db, noise, sizeof(noise));
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a SQLite database");

    /* The right magic on a damaged body: SQLite itself must say no, still read-only. */
    memcpy(noise, "SQLite format 3", 16);
    memset(noise + 60, 0, 12); /* user_version, incremental vacuum, application_id: 0 */
    write_file(f->db, noise, sizeof(noise));
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a SQLite database");

    /* Nothing was left behind beside the rejected file either (no -wal, -shm, -lock). */
    {
        char side[PATH_MAX + 32];

        snprintf(side, sizeof(side), "%s-lock", f->db);
        assert_false(exists(side));
        snprintf(side, sizeof(side), "%s-wal", f->db);
        assert_false(exists(side));
    }
}

static void test_other_sqlite_databases(void **state)
{
    struct fixture *f = *state;
    char uri[PATH_MAX + 32];

    snprintf(uri, sizeof(uri), "sqlite:%s", f->db);
    /* Another application that set its application_id (rejected from the header alone). */
    sql_exec(f->db,
             "PRAGMA application_id = 1196444237; CREATE TABLE t(x); INSERT INTO t VALUES(1)");
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a books database");
    assert_int_equal(unlink(f->db), 0);

    /* One that never set it, even with tables named like ours. */
    sql_exec(f->db, "CREATE TABLE books(name TEXT PRIMARY KEY); CREATE TABLE meta(k, v)");
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a books database");
    assert_int_equal(unlink(f->db), 0);

    /* A WAL-mode foreign database: inspecting it read-only must not checkpoint or change it. */
    sql_exec(f->db, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
                    "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "not a books database");
}

static void test_newer_schema(void **state)
{
    struct fixture *f = *state;
    char uri[PATH_MAX + 32];
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(create_simple(s, "books/old"), 0);
    store_close(s);
    sql_exec(f->db, "PRAGMA user_version = 4");
    snprintf(uri, sizeof(uri), "sqlite:%s", f->db);
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "newer books-server");

    /* A books database that lost a table is damaged, not new. */
    sql_exec(f->db, "PRAGMA user_version = 3; DROP TABLE meta");
    expect_open_fails(uri, f->db, BOOKS_ECORRUPT, "damaged");
}

static void test_not_a_file_or_missing_directory(void **state)
{
    struct fixture *f = *state;
    char uri[PATH_MAX + 64];
    char path[PATH_MAX + 32];

    snprintf(uri, sizeof(uri), "sqlite:%s", f->dir);
    expect_open_fails(uri, f->dir, BOOKS_EIO, "not a regular file");
    snprintf(path, sizeof(path), "%s/no/such/dir/books.db", f->dir);
    snprintf(uri, sizeof(uri), "sqlite:%s", path);
    expect_open_fails(uri, path, BOOKS_EIO, "No such file or directory");
}

/* Runs store_open(uri) as user nobody in a child (root writes anywhere, so a read-only
 * directory is only read-only to someone else); returns its rc and message, which come back
 * through a pipe as "rc\nmessage" (not the exit status: valgrind may rewrite that). */
static int open_as_nobody(const char *uri, char *err, size_t errlen)
{
    char buf[STORE_ERR_BYTES + 32];
    int fds[2];
    pid_t pid;
    int status = 0;
    size_t got = 0;
    ssize_t n;
    char *nl;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store *s = NULL;
        char msg[STORE_ERR_BYTES] = "";
        int rc = 1000;

        close(fds[0]);
        if (setgid(65534) == 0 && setuid(65534) == 0)
            rc = store_open(uri, NULL, &s, msg, sizeof(msg));
        if (rc == 0)
            store_close(s);
        n = snprintf(buf, sizeof(buf), "%d\n%s", rc, msg);
        if (write(fds[1], buf, (size_t)n) < 0)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    while (got < sizeof(buf) - 1 && (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    nl = strchr(buf, '\n');
    assert_non_null(nl);
    snprintf(err, errlen, "%s", nl + 1);
    return atoi(buf);
}

/* As root every file is writable, so the refusal is checked by opening as nobody (a child
 * process): it must fail with BOOKS_EIO, a message naming f->db and `cause`, and leave the file
 * byte for byte as it was. */
static void expect_nobody_refused(const char *uri, const char *db, const char *cause)
{
    char err[STORE_ERR_BYTES];
    unsigned char *before, *after;
    size_t lb = 0, la = 0;

    before = slurp(db, &lb);
    assert_int_equal(open_as_nobody(uri, err, sizeof(err)), BOOKS_EIO);
    if (!strstr(err, db) || !strstr(err, cause))
        fail_msg("message \"%s\" lacks the path or \"%s\"", err, cause);
    after = slurp(db, &la);
    assert_int_equal(lb, la);
    assert_memory_equal(before, after, lb);
    free(before);
    free(after);
}

static void test_read_only_directory(void **state)
{
    struct fixture *f = *state;
    char uri[PATH_MAX + 32];
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(create_simple(s, "books/ro"), 0);
    store_close(s);
    snprintf(uri, sizeof(uri), "sqlite:%s", f->db);
    assert_int_equal(chmod(f->dir, 0555), 0);
    assert_int_equal(chmod(f->db, 0644), 0);
    if (geteuid() != 0) {
        expect_open_fails(uri, f->db, BOOKS_EIO, "not writable");
    } else {
        expect_nobody_refused(uri, f->db, "not writable");
    }
    assert_int_equal(chmod(f->dir, 0700), 0);
}

/* A database file the server may not write (the directory is fine): refused at start-up, not at
 * the first create. */
static void test_read_only_file(void **state)
{
    struct fixture *f = *state;
    char uri[PATH_MAX + 32];
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(create_simple(s, "books/rofile"), 0);
    store_close(s);
    snprintf(uri, sizeof(uri), "sqlite:%s", f->db);
    assert_int_equal(chmod(f->db, 0444), 0);
    if (geteuid() != 0) {
        expect_open_fails(uri, f->db, BOOKS_EIO, "not writable");
    } else {
        assert_int_equal(chmod(f->dir, 0777), 0); /* nobody may write the directory, not the file */
        expect_nobody_refused(uri, f->db, "database file is not writable");
        assert_int_equal(chmod(f->dir, 0700), 0);
    }
}

static void test_locked_by_another_store(void **state)
{
    struct fixture *f = *state;
    char uri[PATH_MAX + 64];
    char link[PATH_MAX + 32];
    char pid[32];
    struct store *a, *b;

    a = open_ok("sqlite:%s", f->db);
    assert_int_equal(create_simple(a, "books/held"), 0);
    snprintf(uri, sizeof(uri), "sqlite:%s", f->db);
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    expect_open_fails(uri, f->db, BOOKS_EIO, "in use by another books-server");
    expect_open_fails(uri, f->db, BOOKS_EIO, pid);
    /* Another spelling of the same file (a symbolic link) is the same database. */
    snprintf(link, sizeof(link), "%s/alias.db", f->dir);
    assert_int_equal(symlink(f->db, link), 0);
    snprintf(uri, sizeof(uri), "sqlite:%s", link);
    expect_open_fails(uri, link, BOOKS_EIO, "in use");
    store_close(a);
    /* Free again once the holder closed. */
    b = open_ok("sqlite:%s", link);
    store_close(b);
}

/* ---- full database --------------------------------------------------------------------------- */

static void test_full_database(void **state)
{
    struct fixture *f = *state;
    enum { BIG = 60000 };
    char *big = malloc(BIG + 1);
    const char *authors[1];
    char name[64];
    struct store *s;
    struct store_book *got = NULL;
    struct store_book *page[4];
    size_t n = 0, created = 0;
    int rc = 0;

    assert_non_null(big);
    memset(big, 'x', BIG);
    big[BIG] = '\0';
    authors[0] = big;

    s = open_ok("sqlite:%s?max_size_mb=1", f->db);
    assert_int_equal(create_simple(s, "books/aaa-small"), 0);
    /* ~60 KB each: a 1 MiB cap fills within a few dozen. */
    for (size_t i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "books/big-%03zu", i);
        rc = create_book(s, name, "Big", authors, 1, "Pub");
        if (rc != 0)
            break;
        created++;
    }
    assert_int_equal(rc, BOOKS_ENOSPC);
    assert_true(created > 5);
    /* Still full; reads go on; the store still answers. */
    assert_int_equal(create_book(s, "books/zzz", "Big", authors, 1, "Pub"), BOOKS_ENOSPC);
    assert_int_equal(store_get(s, "books/aaa-small", &got), 0);
    store_book_unref(got);
    assert_int_equal(store_get(s, "books/big-000", &got), 0);
    Books__V1__Book *m = test_book_decode(got);
    assert_non_null(m);
    assert_int_equal(strlen(m->authors[0]), BIG);
    test_book_free(m);
    store_book_unref(got);
    assert_int_equal(store_get(s, "books/zzz", &got), BOOKS_ENOTFOUND);
    assert_int_equal(store_list(s, NULL, ARRAY_LEN(page), page, &n), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        store_book_unref(page[i]);
    {
        struct store_sqlite_stats st = stats_of(s);

        assert_true(st.rollbacks >= 2);
    }
    store_close(s);

    /* A larger cap: creates work again, nothing was lost. */
    s = open_ok("sqlite:%s?max_size_mb=4", f->db);
    assert_int_equal(create_book(s, "books/zzz", "Big", authors, 1, "Pub"), 0);
    snprintf(name, sizeof(name), "books/big-%03zu", created - 1);
    assert_int_equal(store_get(s, name, &got), 0);
    store_book_unref(got);
    store_close(s);
    free(big);
}

/* ---- batching -------------------------------------------------------------------------------- */

/* Duplicates inside one batch: the first wins, each later one alone gets BOOKS_EEXIST. */
static void test_duplicates_in_one_batch(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"books/x", "books/x", "books/y",
                                        "books/y", "books/x", "books/z"};
    static const int want[] = {0, BOOKS_EEXIST, 0, BOOKS_EEXIST, BOOKS_EEXIST, 0};
    struct create_wait w[ARRAY_LEN(names)];
    struct store_book *b[ARRAY_LEN(names)];
    struct store_sqlite_stats st;
    struct store_book *got = NULL;
    struct gate g;
    char title[32];
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    gate_close(s, f->db, &g, "books/gate");
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        static const char *const authors[] = {"A"};

        snprintf(title, sizeof(title), "Title %zu", i);
        assert_int_equal(test_book_new(names[i], title, authors, 1, "P", &b[i]), 0);
        create_wait_init(&w[i]);
        store_create_book(s, b[i], create_wait_done, &w[i]);
    }
    gate_open(&g);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        assert_int_equal(create_wait_rc(&w[i]), want[i]);
        create_wait_cleanup(&w[i]);
        store_book_unref(b[i]);
    }
    assert_int_equal(gate_cleanup(&g), 0);
    st = stats_of(s);
    assert_int_equal(st.transactions, 2); /* the gate's, then all six together */
    assert_int_equal(st.commits, 2);
    assert_int_equal(st.largest_batch, ARRAY_LEN(names));
    assert_int_equal(st.books_written, 4);
    assert_int_equal(store_get(s, "books/x", &got), 0);
    Books__V1__Book *m = test_book_decode(got);
    assert_non_null(m);
    assert_string_equal(m->display_name, "Title 0");
    test_book_free(m);
    store_book_unref(got);
    store_close(s);
}

enum { GC_THREADS = 8, GC_PER_THREAD = 25 };

struct gc_thread {
    struct store *s;
    unsigned id;
    struct create_wait w[GC_PER_THREAD];
};

static void *gc_main(void *arg)
{
    struct gc_thread *t = arg;
    static const char *const authors[] = {"Writer"};
    char name[64];

    for (unsigned k = 0; k < GC_PER_THREAD; k++) {
        struct store_book *b = NULL;

        snprintf(name, sizeof(name), "books/t%u-k%02u", t->id, k);
        if (test_book_new(name, "T", authors, 1, "P", &b) != 0)
            abort();
        create_wait_init(&t->w[k]);
        store_create_book(t->s, b, create_wait_done, &t->w[k]);
        store_book_unref(b);
    }
    return NULL;
}

/* 200 creates queued from 8 threads while a commit is under way: one more transaction, not 200
 * (and with group_commit=off, 200). */
static void run_group_commit(struct fixture *f, bool group)
{
    static struct gc_thread threads[GC_THREADS];
    pthread_t tids[GC_THREADS];
    struct store_sqlite_stats st;
    struct gate g;
    struct store *s;
    size_t total = 0;

    s = open_ok("sqlite:%s?group_commit=%s", f->db, group ? "on" : "off");
    gate_close(s, f->db, &g, "books/gate");
    for (unsigned i = 0; i < GC_THREADS; i++) {
        threads[i].s = s;
        threads[i].id = i;
        assert_int_equal(pthread_create(&tids[i], NULL, gc_main, &threads[i]), 0);
    }
    for (unsigned i = 0; i < GC_THREADS; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    gate_open(&g);
    for (unsigned i = 0; i < GC_THREADS; i++) {
        for (unsigned k = 0; k < GC_PER_THREAD; k++) {
            assert_int_equal(create_wait_rc(&threads[i].w[k]), 0);
            create_wait_cleanup(&threads[i].w[k]);
            total++;
        }
    }
    assert_int_equal(gate_cleanup(&g), 0);
    st = stats_of(s);
    print_message("group_commit=%s: %zu creates, %llu transactions, largest batch %llu\n",
                  group ? "on" : "off", total, (unsigned long long)st.transactions,
                  (unsigned long long)st.largest_batch);
    assert_int_equal(total, GC_THREADS * GC_PER_THREAD);
    assert_int_equal(st.books_written, total + 1);
    if (group) {
        assert_int_equal(st.transactions, 2);
        assert_int_equal(st.largest_batch, total);
    } else {
        assert_int_equal(st.transactions, total + 1);
        assert_int_equal(st.largest_batch, 1);
    }
    store_close(s);
}

static void test_group_commit_batches(void **state)
{
    run_group_commit(*state, true);
}

static void test_group_commit_off(void **state)
{
    run_group_commit(*state, false);
}

/* More than BATCH_MAX (1024) queued at once: split into bounded transactions. */
static void test_batch_bound(void **state)
{
    struct fixture *f = *state;
    enum { N = 2500 };
    static struct create_wait w[N];
    static const char *const authors[] = {"B"};
    struct store_sqlite_stats st;
    char name[64];
    struct gate g;
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    gate_close(s, f->db, &g, "books/gate");
    for (size_t i = 0; i < N; i++) {
        struct store_book *b = NULL;

        snprintf(name, sizeof(name), "books/n%05zu", i);
        assert_int_equal(test_book_new(name, "T", authors, 1, "P", &b), 0);
        create_wait_init(&w[i]);
        store_create_book(s, b, create_wait_done, &w[i]);
        store_book_unref(b);
    }
    gate_open(&g);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(create_wait_rc(&w[i]), 0);
        create_wait_cleanup(&w[i]);
    }
    assert_int_equal(gate_cleanup(&g), 0);
    st = stats_of(s);
    assert_int_equal(st.largest_batch, 1024);
    assert_int_equal(st.transactions, 1 + 3); /* 1024 + 1024 + 452 */
    store_close(s);
}

/* ---- done() exactly once, close included ----------------------------------------------------- */

enum { DC_THREADS = 4, DC_PER_THREAD = 150 };

struct dc_thread {
    struct store *s;
    unsigned id;
    struct create_wait w[DC_PER_THREAD];
};

/* Every 10th name repeats the previous one: BOOKS_EEXIST. */
static void dc_name(char *buf, size_t len, unsigned t, unsigned k)
{
    snprintf(buf, len, "books/d%u-%03u", t, k % 10 == 9 ? k - 1 : k);
}

static void *dc_main(void *arg)
{
    struct dc_thread *t = arg;
    static const char *const authors[] = {"Closer"};
    char name[64];

    for (unsigned k = 0; k < DC_PER_THREAD; k++) {
        struct store_book *b = NULL;

        dc_name(name, sizeof(name), t->id, k);
        if (test_book_new(name, "T", authors, 1, "P", &b) != 0)
            abort();
        create_wait_init(&t->w[k]);
        store_create_book(t->s, b, create_wait_done, &t->w[k]);
        store_book_unref(b);
    }
    return NULL;
}

static void test_done_once_including_close(void **state)
{
    struct fixture *f = *state;
    static struct dc_thread threads[DC_THREADS];
    pthread_t tids[DC_THREADS];
    char name[64];
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    for (unsigned i = 0; i < DC_THREADS; i++) {
        threads[i].s = s;
        threads[i].id = i;
        assert_int_equal(pthread_create(&tids[i], NULL, dc_main, &threads[i]), 0);
    }
    for (unsigned i = 0; i < DC_THREADS; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    /* Close with creates still queued: each is committed and answered before close returns. */
    store_close(s);
    for (unsigned i = 0; i < DC_THREADS; i++) {
        for (unsigned k = 0; k < DC_PER_THREAD; k++) {
            struct create_wait *w = &threads[i].w[k];

            assert_int_equal(w->calls, 1);
            assert_int_equal(w->rc, k % 10 == 9 ? BOOKS_EEXIST : 0);
            create_wait_cleanup(w);
        }
    }
    /* And they are on disk. */
    s = open_ok("sqlite:%s", f->db);
    for (unsigned i = 0; i < DC_THREADS; i++) {
        for (unsigned k = 0; k < DC_PER_THREAD; k++) {
            struct store_book *got = NULL;

            dc_name(name, sizeof(name), i, k);
            assert_int_equal(store_get(s, name, &got), 0);
            store_book_unref(got);
        }
    }
    store_close(s);
}

/* ---- the list queries walk the primary key --------------------------------------------------- */

/* EXPLAIN QUERY PLAN details of `sql`, joined with " | ". */
static void query_plan(sqlite3 *db, const char *sql, char *out, size_t len)
{
    char eqp[512];
    sqlite3_stmt *st = NULL;
    size_t used = 0;

    snprintf(eqp, sizeof(eqp), "EXPLAIN QUERY PLAN %s", sql);
    assert_int_equal(sqlite3_prepare_v2(db, eqp, -1, &st, NULL), SQLITE_OK);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW && used < len) {
        int n = snprintf(out + used, len - used, "%s%s", used ? " | " : "",
                         (const char *)sqlite3_column_text(st, 3));

        used += n > 0 ? (size_t)n : 0;
    }
    sqlite3_finalize(st);
}

/* Runs a list query to the end of its page; returns (vm steps, full-scan steps, sorts). */
static void run_page(sqlite3 *db, const char *sql, const char *after, int limit, int counters[3],
                     int *rows)
{
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (after) {
        sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, limit);
    } else {
        sqlite3_bind_int(st, 1, limit);
    }
    *rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        (*rows)++;
    counters[0] = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
    counters[1] = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0);
    counters[2] = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_SORT, 0);
    sqlite3_finalize(st);
}

static void test_list_uses_primary_key(void **state)
{
    struct fixture *f = *state;
    enum { N = 20000, LIMIT = 50 };
    char plan[512];
    int shallow[3], deep[3], first[3], rows = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    store_close(s);
    /* Fill the table directly (fast), in the store's own format. */
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    /* book: a Book of display_name "T" (field 2), one author "A" (3), publisher "P" (4). */
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO books(name, book) VALUES "
                                        "(printf('books/k%06d', ?1), x'1201541a0141220150')",
                                        -1, &ins, NULL),
                     SQLITE_OK);
    for (int i = 0; i < N; i++) {
        sqlite3_bind_int(ins, 1, i);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    assert_int_equal(sqlite3_exec(db, "COMMIT; ANALYZE", NULL, NULL, NULL), SQLITE_OK);

    query_plan(db, STORE_SQLITE_LIST_AFTER_SQL, plan, sizeof(plan));
    print_message("list after: %s\n", plan);
    assert_non_null(strstr(plan, "SEARCH books USING PRIMARY KEY (name>?)"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    query_plan(db, STORE_SQLITE_GET_SQL, plan, sizeof(plan));
    assert_string_equal(plan, "SEARCH books USING PRIMARY KEY (name=?)");
    query_plan(db, STORE_SQLITE_LIST_FIRST_SQL, plan, sizeof(plan));
    print_message("list first: %s\n", plan);
    /* A WITHOUT ROWID table is its primary key b-tree: this scan walks it in key order and stops
     * at the LIMIT (checked with the counters below). */
    assert_string_equal(plan, "SCAN books");

    /* The same work near the start and deep in the table, no sort, no full scan. */
    run_page(db, STORE_SQLITE_LIST_AFTER_SQL, "books/k000010", LIMIT, shallow, &rows);
    assert_int_equal(rows, LIMIT);
    run_page(db, STORE_SQLITE_LIST_AFTER_SQL, "books/k019000", LIMIT, deep, &rows);
    assert_int_equal(rows, LIMIT);
    print_message("vm steps: page at 10: %d, page at 19000: %d\n", shallow[0], deep[0]);
    assert_int_equal(shallow[0], deep[0]);
    assert_int_equal(shallow[1] + deep[1], 0);
    assert_int_equal(shallow[2] + deep[2], 0);
    run_page(db, STORE_SQLITE_LIST_FIRST_SQL, NULL, LIMIT, first, &rows);
    assert_int_equal(rows, LIMIT);
    assert_true(first[1] <= LIMIT); /* stopped at the limit, not a scan of 20000 rows */
    assert_int_equal(first[2], 0);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    /* And the store reads these rows back. */
    s = open_ok("sqlite:%s", f->db);
    {
        struct store_book *page[3];
        size_t n = 0;

        assert_int_equal(store_list(s, "books/k019998", 3, page, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(page[0]->name, "books/k019999");
        Books__V1__Book *m = test_book_decode(page[0]);
        assert_non_null(m);
        assert_string_equal(m->display_name, "T");
        assert_int_equal(m->n_authors, 1);
        assert_string_equal(m->authors[0], "A");
        assert_string_equal(m->publisher, "P");
        test_book_free(m);
        store_book_unref(page[0]);
    }
    store_close(s);
}

/* A row no create made (a name holding a NUL byte, written by hand) is damage, reported as
 * such by get and list alike. The store does not parse a book's encoding: the name is the part
 * of a row it relies on. */
static void test_damaged_row(void **state)
{
    struct fixture *f = *state;
    struct store_book *page[2];
    size_t n = 0;
    struct store *s;

    s = open_ok("sqlite:%s", f->db);
    store_close(s);
    sql_exec(f->db, "INSERT INTO books(name, book) "
                    "VALUES (CAST(x'626f6f6b732f6100' AS TEXT), x'1201')");
    s = open_ok("sqlite:%s", f->db);
    assert_int_equal(store_list(s, NULL, 2, page, &n), BOOKS_ECORRUPT);
    store_close(s);
}

/* The record cache: far smaller than the data, so it evicts all the time; every read must still
 * return exactly the stored book, from the cache or from SQLite, and the cache must be used. */
static void test_cache_evicts_and_stays_exact(void **state)
{
    struct fixture *f = *state;
    enum { N = 400, AUTHOR_BYTES = 3000 };
    static char author[AUTHOR_BYTES + 1];
    const char *authors[2] = {author, NULL};
    char name[64], title[64];
    struct store_sqlite_stats st;
    struct store_book *page[7];
    char after[64] = "";
    struct store *s;
    size_t seen = 0, n;

    /* 400 books of ~3 KB against 1 MiB (64 KiB per shard): most reads miss. */
    s = open_ok("sqlite:%s?cache_mb=1", f->db);
    memset(author, 'a', AUTHOR_BYTES);
    for (size_t i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "books/c%03zu", i);
        snprintf(title, sizeof(title), "Title %zu", i);
        author[0] = (char)('A' + i % 26);
        authors[1] = title;
        assert_int_equal(create_book(s, name, title, authors, 2, "P"), 0);
    }
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < N; i += 1 + (size_t)round) {
            struct store_book *got = NULL;

            snprintf(name, sizeof(name), "books/c%03zu", i);
            snprintf(title, sizeof(title), "Title %zu", i);
            assert_int_equal(store_get(s, name, &got), 0);
            assert_string_equal(got->name, name);
            Books__V1__Book *m = test_book_decode(got);
            assert_non_null(m);
            assert_string_equal(m->display_name, title);
            assert_int_equal(m->n_authors, 2);
            assert_int_equal(m->authors[0][0], 'A' + i % 26);
            assert_int_equal(strlen(m->authors[0]), AUTHOR_BYTES);
            assert_string_equal(m->authors[1], title);
            test_book_free(m);
            store_book_unref(got);
        }
    }
    do {
        assert_int_equal(store_list(s, after, ARRAY_LEN(page), page, &n), 0);
        for (size_t i = 0; i < n; i++) {
            snprintf(name, sizeof(name), "books/c%03zu", seen + i);
            snprintf(title, sizeof(title), "Title %zu", seen + i);
            assert_string_equal(page[i]->name, name);
            Books__V1__Book *m = test_book_decode(page[i]);
            assert_non_null(m);
            assert_string_equal(m->authors[1], title);
            test_book_free(m);
        }
        if (n)
            snprintf(after, sizeof(after), "%s", page[n - 1]->name);
        seen += n;
        for (size_t i = 0; i < n; i++)
            store_book_unref(page[i]);
    } while (n > 0);
    assert_int_equal(seen, N);
    /* A sequential sweep larger than an LRU cache misses throughout; a small working set hits. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < 10; i++) {
            struct store_book *got = NULL;

            snprintf(name, sizeof(name), "books/c%03zu", i);
            assert_int_equal(store_get(s, name, &got), 0);
            assert_string_equal(got->name, name);
            store_book_unref(got);
        }
    }
    st = stats_of(s);
    print_message("cache: %llu hits, %llu misses\n", (unsigned long long)st.cache_hits,
                  (unsigned long long)st.cache_misses);
    assert_true(st.cache_hits >= 10);
    assert_true(st.cache_misses > N); /* evictions: more misses than books */
    store_close(s);

    /* A cache big enough: the second read of everything is all hits. */
    s = open_ok("sqlite:%s", f->db);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < N; i++) {
            struct store_book *got = NULL;

            snprintf(name, sizeof(name), "books/c%03zu", i);
            assert_int_equal(store_get(s, name, &got), 0);
            store_book_unref(got);
        }
    }
    st = stats_of(s);
    assert_int_equal(st.cache_misses, N);
    assert_int_equal(st.cache_hits, N);
    store_close(s);
}

/* The committer folds the log into the database file on its own, between batches, long before
 * close (here: random names scatter 24,000 inserts of ~650 bytes over the b-tree, and each batch
 * rewrites most of its leaves: well past CHECKPOINT_FRAMES pages of log). */
static void test_checkpoint_between_batches(void **state)
{
    struct fixture *f = *state;
    enum { BATCHES = 24, PER_BATCH = 1000 };
    static struct create_wait w[PER_BATCH];
    static char author[601];
    const char *authors[] = {author};
    char name[64];
    struct stat st_db;
    struct store *s;
    uint32_t x = 12345;

    memset(author, 'c', sizeof(author) - 1);
    s = open_ok("sqlite:%s", f->db);
    for (int b = 0; b < BATCHES; b++) {
        struct gate g;

        snprintf(name, sizeof(name), "books/gate-%02d", b);
        gate_close(s, f->db, &g, name);
        for (size_t i = 0; i < PER_BATCH; i++) {
            struct store_book *book = NULL;

            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            snprintf(name, sizeof(name), "books/r%08x-%02d-%04zu", x, b, i);
            assert_int_equal(test_book_new(name, "T", authors, 1, "P", &book), 0);
            create_wait_init(&w[i]);
            store_create_book(s, book, create_wait_done, &w[i]);
            store_book_unref(book);
        }
        gate_open(&g);
        for (size_t i = 0; i < PER_BATCH; i++) {
            assert_int_equal(create_wait_rc(&w[i]), 0);
            create_wait_cleanup(&w[i]);
        }
        assert_int_equal(gate_cleanup(&g), 0);
    }
    /* Still open: without a checkpoint the database file would hold only the schema's pages. */
    assert_int_equal(stat(f->db, &st_db), 0);
    print_message("database file while open: %lld bytes\n", (long long)st_db.st_size);
    assert_true(st_db.st_size > 1024 * 1024);
    store_close(s);
}

static void test_stats_other_backend(void **state)
{
    struct store_sqlite_stats st;
    struct store *s = open_ok("memory:");

    (void)state;
    assert_int_equal(store_sqlite_stats(s, &st), BOOKS_EINVAL);
    assert_int_equal(store_sqlite_stats(NULL, &st), BOOKS_EINVAL);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_keeps_books_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_and_empty_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uri_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_sqlite_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_sqlite_databases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_file_or_missing_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_by_another_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_once_including_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_uses_primary_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_evicts_and_stays_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_between_batches, setup, teardown),
        cmocka_unit_test(test_stats_other_backend),
    };

    /* The store's warnings (a full database) are part of the story; its INFO lines are not. */
    log_init(LOG_WARNING, STDOUT_FILENO);
    return cmocka_run_group_tests_name("sqlite store", tests, NULL, NULL);
}
