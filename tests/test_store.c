/* test_store.c: the store conformance suite, plus unit tests of the record and the factory.
 *
 * The conformance tests only use the public store interface, and every one of them runs once per
 * row of `backends` below, each against a fresh, empty data set that open_fresh() creates and
 * close_fresh() destroys. Adding a backend is adding a row: a backend that keeps files gets a
 * fresh mkdtemp() directory per test to build its URI from, removed again in teardown. The
 * postgresql rows run when BOOKS_TEST_POSTGRES_URI names a PostgreSQL server (scripts/test.sh
 * starts one for the suite): each test gets a schema of its own there (search_path), dropped in
 * teardown.
 *
 * Creates may finish on another thread after store_create_book() returns (a durable backend acknowledges
 * once the write is on disk), so the tests always wait for done() rather than assume it ran. Worker
 * threads never call cmocka's assertions (they longjmp into the main thread's stack); they count
 * failures, which the main thread then asserts are zero. */
#include "books/error.h"
#include "books/store.h"
#include "books/store_firestore.h"
#include "support/create_wait.h"
#include "support/test_book.h"

#include <ftw.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NAME_BYTES 64

/* ---- backends under test --------------------------------------------------------------------- */

struct backend {
    const char *name;
    bool needs_dir; /* true: make_uri gets a fresh, empty directory of its own per test */
    /* Writes the URI of a fresh, empty data set to uri (len bytes). */
    void (*make_uri)(const char *dir, char *uri, size_t len);
};

static void uri_memory(const char *dir, char *uri, size_t len)
{
    (void)dir;
    snprintf(uri, len, "memory:");
}

/* The durable backend: a new database file in the test's own directory. */
static void uri_sqlite(const char *dir, char *uri, size_t len)
{
    snprintf(uri, len, "sqlite:%s/books.db", dir);
}

/* The same without its record cache: every read decodes rows from SQLite. */
static void uri_sqlite_nocache(const char *dir, char *uri, size_t len)
{
    snprintf(uri, len, "sqlite:%s/books.db?cache_mb=0", dir);
}

/* PostgreSQL: a fresh schema per test on the server of BOOKS_TEST_POSTGRES_URI, named after a
 * counter; `dir` carries the schema's name to fresh_close(). */
static const char *postgres_base(void)
{
    const char *base = getenv("BOOKS_TEST_POSTGRES_URI");
    return base && *base ? base : NULL;
}

static void postgres_admin(const char *sql)
{
    PGconn *c = PQconnectdb(postgres_base());
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "test_store: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void uri_postgres_schema(char *dir, char *uri, size_t len, const char *extra)
{
    static int counter;
    char sql[128];
    snprintf(dir, 64, "books_test_%d_%d", (int)getpid(), ++counter);
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", dir);
    postgres_admin(sql);
    snprintf(uri, len, "%s%soptions=-c%%20search_path%%3D%s%s", postgres_base(),
             strchr(postgres_base(), '?') ? "&" : "?", dir, extra);
}

static void uri_postgres(const char *dir, char *uri, size_t len)
{
    uri_postgres_schema((char *)dir, uri, len, "");
}

static void uri_postgres_nocache(const char *dir, char *uri, size_t len)
{
    uri_postgres_schema((char *)dir, uri, len, "&cache_mb=0&pool=3");
}

/* Firestore: a fresh collection per test in the emulator of FIRESTORE_EMULATOR_HOST (scripts/test.sh
 * starts one; without it these rows are skipped). */
static bool firestore_emulator(void)
{
    const char *host = getenv("FIRESTORE_EMULATOR_HOST");
    return host && *host;
}

static void uri_firestore_collection(char *uri, size_t len, const char *extra)
{
    static int counter;
    snprintf(uri, len, "firestore://books-test?collection=t%d_%d%s", (int)getpid(), ++counter,
             extra);
}

static void uri_firestore(const char *dir, char *uri, size_t len)
{
    (void)dir;
    uri_firestore_collection(uri, len, "");
}

static void uri_firestore_nocache(const char *dir, char *uri, size_t len)
{
    (void)dir;
    uri_firestore_collection(uri, len, "&cache_mb=0");
}

static const struct backend backends[] = {
    {"memory", false, uri_memory},
    {"sqlite", true, uri_sqlite},
    {"sqlite, no cache", true, uri_sqlite_nocache},
    {"postgresql", false, uri_postgres},
    {"postgresql, no cache, 3 readers", false, uri_postgres_nocache},
    {"firestore", false, uri_firestore},
    {"firestore, no cache", false, uri_firestore_nocache},
};

static bool is_firestore(const struct backend *be)
{
    return be->make_uri == uri_firestore || be->make_uri == uri_firestore_nocache;
}

static bool is_postgres(const struct backend *be)
{
    return be->make_uri == uri_postgres || be->make_uri == uri_postgres_nocache;
}

/* ---- fixture: one fresh store per test ------------------------------------------------------- */

struct fresh {
    const struct backend *be;
    char dir[PATH_MAX]; /* "" when the backend needs no directory */
    char uri[PATH_MAX + 64];
    struct store *s; /* NULL once a test has closed it itself */
};

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fresh_close(struct fresh *f)
{
    store_close(f->s);
    f->s = NULL;
    if (f->be && is_postgres(f->be) && f->dir[0]) {
        char sql[PATH_MAX + 64];
        snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", f->dir);
        postgres_admin(sql);
        f->dir[0] = '\0';
        return;
    }
    /* Depth-first, so files go before the directories that hold them. */
    if (f->dir[0] != '\0' && nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "test_store: cannot remove %s\n", f->dir);
    f->dir[0] = '\0';
}

/* Opens a fresh, empty data set of backend `be` into f. 0, or -1 with a message on stderr. */
static int fresh_open(const struct backend *be, struct fresh *f)
{
    char err[STORE_ERR_BYTES] = "";
    const char *tmp = getenv("TMPDIR");
    int rc;

    memset(f, 0, sizeof(*f));
    f->be = be;
    if (be->needs_dir) {
        snprintf(f->dir, sizeof(f->dir), "%s/test_store.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(f->dir)) {
            perror("test_store: mkdtemp");
            return -1;
        }
    }
    be->make_uri(f->dir, f->uri, sizeof(f->uri));
    rc = store_open(f->uri, NULL, &f->s, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "test_store: store_open(%s): %s (%s)\n", f->uri, books_err_name(rc), err);
        fresh_close(f);
        return -1;
    }
    return 0;
}

/* Setup: *state is the backend row (the test's prestate); replaces it with a struct fresh. */
static int open_fresh(void **state)
{
    struct fresh *f = malloc(sizeof(*f));

    if (!f)
        return -1;
    if (fresh_open(*state, f) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int close_fresh(void **state)
{
    struct fresh *f = *state;

    fresh_close(f);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static const char *const default_authors[] = {"Ursula K. Le Guin"};

/* Creates a book called `name` with fixed fields; returns the create's rc. */
static int create_named(struct store *s, const char *name)
{
    struct store_book *b = NULL;
    int rc;

    rc = test_book_new(name, "A Wizard of Earthsea", default_authors, 1, "Parnassus", &b);
    if (rc != 0)
        return rc;
    rc = create_sync(s, b);
    store_book_unref(b);
    return rc;
}

/* The same book: name and encoded Book, byte for byte (a store keeps the encoding as it is, or,
 * firestore:, maps it field by field and back). */
static void assert_same_book(const struct store_book *want, const struct store_book *got)
{
    assert_string_equal(got->name, want->name);
    assert_int_equal(got->wire_len, want->wire_len);
    assert_memory_equal(got->wire, want->wire, want->wire_len);
}

/* The Book a record holds, decoded (the test frees it with test_book_free). */
static Books__V1__Book *decoded(const struct store_book *b)
{
    Books__V1__Book *m = test_book_decode(b);
    assert_non_null(m);
    return m;
}

static void unref_all(struct store_book **books, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_book_unref(books[i]);
}

/* Lists one page and checks it holds exactly the names `want` (n_want of them), in order. */
static void assert_page(struct store *s, const char *after, size_t limit, const char *const *want,
                        size_t n_want)
{
    struct store_book *page[16];
    size_t n = 12345;

    assert_true(limit <= ARRAY_LEN(page));
    assert_int_equal(store_list(s, after, limit, page, &n), 0);
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(page[i]->name, want[i]);
    unref_all(page, n);
}

/* Fisher-Yates with a fixed xorshift seed: a shuffled order that is the same on every run. */
static uint32_t xorshift32(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void shuffle(size_t *idx, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = xorshift32(&seed) % i;
        size_t t = idx[i - 1];

        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* ---- conformance: get and create ------------------------------------------------------------- */

static void test_get_empty(void **state)
{
    struct fresh *f = *state;
    struct store_book *sentinel = (struct store_book *)&sentinel;
    struct store_book *got = sentinel;

    assert_int_equal(store_get(f->s, "books/none", &got), BOOKS_ENOTFOUND);
    assert_ptr_equal(got, sentinel); /* out-parameters stay untouched on failure */
    assert_int_equal(store_get(f->s, "", &got), BOOKS_ENOTFOUND);
}

static void test_list_empty(void **state)
{
    struct fresh *f = *state;

    assert_page(f->s, NULL, 10, NULL, 0);
    assert_page(f->s, "", 10, NULL, 0);
    assert_page(f->s, "books/a", 10, NULL, 0);
}

static void test_create_then_get_unicode_many_authors(void **state)
{
    struct fresh *f = *state;
    enum { N_AUTHORS = 100 };
    char author_bufs[N_AUTHORS][NAME_BYTES];
    const char *authors[N_AUTHORS];
    struct store_book *b = NULL;
    struct store_book *got = NULL;

    /* Multi-byte UTF-8 in every field: Cyrillic, CJK, combining marks, 4-byte emoji. */
    authors[0] = "Фёдор Достоевский";
    authors[1] = "村上春樹";
    /* NFD: "i" and "a" followed by a combining acute accent. */
    authors[2] = "Gabriel Garci\xcc\x81"
                 "a Ma\xcc\x81rquez";
    authors[3] = "\xf0\x9f\x93\x9a Anonymous";
    for (size_t i = 4; i < N_AUTHORS; i++) {
        snprintf(author_bufs[i], sizeof(author_bufs[i]), "Autor ñ %zu ✓", i);
        authors[i] = author_bufs[i];
    }
    assert_int_equal(test_book_new("books/unicode-1", "Сто лет одиночества — 百年の孤独 📚",
                                    authors, N_AUTHORS, "Éditions Gallimard", &b),
                     0);
    assert_int_equal(create_sync(f->s, b), 0);

    assert_int_equal(store_get(f->s, "books/unicode-1", &got), 0);
    assert_non_null(got);
    assert_same_book(b, got);
    store_book_unref(got);
    store_book_unref(b);
}

/* The smallest book the API makes: one one-letter author, one-letter title and publisher. */
static void test_create_then_get_minimal(void **state)
{
    struct fresh *f = *state;
    const char *const one[] = {"a"};
    struct store_book *b = NULL;
    struct store_book *got = NULL;

    assert_int_equal(test_book_new("books/m", "t", one, 1, "p", &b), 0);
    assert_int_equal(create_sync(f->s, b), 0);
    assert_int_equal(store_get(f->s, "books/m", &got), 0);
    assert_same_book(b, got);
    store_book_unref(got);
    store_book_unref(b);
}

static void test_create_duplicate(void **state)
{
    struct fresh *f = *state;
    const char *const first_authors[] = {"First Author", "Second Author"};
    const char *const dup_authors[] = {"Impostor"};
    struct store_book *first = NULL;
    struct store_book *dup = NULL;
    struct store_book *got = NULL;
    struct store_book *page[4];
    size_t n = 0;

    assert_int_equal(test_book_new("books/taken", "Original", first_authors, 2, "Pub A", &first),
                     0);
    assert_int_equal(test_book_new("books/taken", "Replacement", dup_authors, 1, "Pub B", &dup),
                     0);
    assert_int_equal(create_sync(f->s, first), 0);
    assert_int_equal(create_sync(f->s, dup), BOOKS_EEXIST);

    assert_int_equal(store_get(f->s, "books/taken", &got), 0);
    assert_same_book(first, got);
    store_book_unref(got);

    /* Still one book, not two with the same name. */
    assert_int_equal(store_list(f->s, NULL, ARRAY_LEN(page), page, &n), 0);
    assert_int_equal(n, 1);
    assert_same_book(first, page[0]);
    unref_all(page, n);

    store_book_unref(dup);
    store_book_unref(first);
}

/* done() runs exactly once per create, whatever the outcome, and by close at the latest. */
static void test_create_done_once(void **state)
{
    struct fresh *f = *state;
    enum { N = 40 };
    struct create_wait waits[N];
    struct store_book *books[N];
    char name[NAME_BYTES];

    for (size_t i = 0; i < N; i++) {
        /* Every fourth create reuses the previous name and must fail with BOOKS_EEXIST. */
        snprintf(name, sizeof(name), "books/once-%02zu", i % 4 == 3 ? i - 1 : i);
        assert_int_equal(test_book_new(name, "Once", default_authors, 1, "Pub", &books[i]), 0);
        create_wait_init(&waits[i]);
        store_create_book(f->s, books[i], create_wait_done, &waits[i]);
        assert_int_equal(create_wait_rc(&waits[i]), i % 4 == 3 ? BOOKS_EEXIST : 0);
    }
    /* Closing finishes pending work, so a late second call would have happened by now. */
    fresh_close(f);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(waits[i].calls, 1);
        create_wait_cleanup(&waits[i]);
        /* The store kept no reference: the caller's is the only one left. */
        assert_int_equal(atomic_load(&books[i]->refs), 1);
        store_book_unref(books[i]);
    }
}

/* Creates queued together (a durable store commits them as one batch) keep every byte of text that
 * a database would take as syntax (quotes, backslashes, braces, commas, NULL, empty authors), come
 * back exactly, and of two with the same name the first queued wins. */
static void test_create_batch_text_and_first_wins(void **state)
{
    struct fresh *f = *state;
    enum { N = 24 };
    static const char *const tricky[] = {"a \"quoted\" name", "back\\slash", "{braces}",
                                         "comma, separated", "NULL", "", "caf\xc3\xa9",
                                         "'single'"};
    struct create_wait waits[N];
    struct store_book *books[N];
    char name[NAME_BYTES], title[NAME_BYTES];

    for (size_t i = 0; i < N; i++) {
        /* every third create reuses the previous name: it must lose to the earlier one */
        snprintf(name, sizeof name, "books/batch-%02zu", i % 3 == 2 ? i - 1 : i);
        snprintf(title, sizeof title, "Title %zu \"%s\"", i, tricky[i % 8]);
        const char *authors[3] = {tricky[i % 8], tricky[(i + 3) % 8], tricky[(i + 5) % 8]};
        /* At least one author and a publisher: a book the API makes (firestore: refuses others
         * on reading, as not books: their REQUIRED fields are empty). */
        const char *publisher = tricky[(i + 1) % 8][0] ? tricky[(i + 1) % 8] : "-";
        assert_int_equal(test_book_new(name, title, authors, 1 + i % 3, publisher, &books[i]), 0);
        create_wait_init(&waits[i]);
    }
    for (size_t i = 0; i < N; i++) /* all queued before any answer is awaited */
        store_create_book(f->s, books[i], create_wait_done, &waits[i]);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(create_wait_rc(&waits[i]), i % 3 == 2 ? BOOKS_EEXIST : 0);
        if (i % 3 != 2) {
            struct store_book *got = NULL;
            assert_int_equal(store_get(f->s, books[i]->name, &got), 0);
            assert_same_book(books[i], got);
            store_book_unref(got);
        }
    }
    for (size_t i = 0; i < N; i++) {
        create_wait_cleanup(&waits[i]);
        store_book_unref(books[i]);
    }
}

/* A reader's reference outlives the store: records are refcounted, not owned by the store. */
static void test_get_ref_survives_close(void **state)
{
    struct fresh *f = *state;
    const char *const authors[] = {"Octavia E. Butler"};
    struct store_book *b = NULL;
    struct store_book *got = NULL;
    struct store_book *page[1];
    size_t n = 0;

    assert_int_equal(test_book_new("books/kindred", "Kindred", authors, 1, "Doubleday", &b), 0);
    assert_int_equal(create_sync(f->s, b), 0);
    assert_int_equal(store_get(f->s, "books/kindred", &got), 0);
    assert_int_equal(store_list(f->s, NULL, 1, page, &n), 0);
    assert_int_equal(n, 1);

    fresh_close(f);
    store_book_unref(b);
    store_book_unref(page[0]);
    /* Only the get's reference is left (valgrind/ASan check the fields are still readable). */
    assert_int_equal(atomic_load(&got->refs), 1);
    assert_string_equal(got->name, "books/kindred");
    Books__V1__Book *m = decoded(got);
    assert_string_equal(m->name, "books/kindred");
    assert_string_equal(m->display_name, "Kindred");
    assert_string_equal(m->authors[0], "Octavia E. Butler");
    assert_string_equal(m->publisher, "Doubleday");
    test_book_free(m);
    store_book_unref(got);
}

static bool key_is_zero(const uint8_t *key)
{
    for (size_t i = 0; i < STORE_DATASET_KEY_BYTES; i++)
        if (key[i] != 0)
            return false;
    return true;
}

static void test_dataset_key(void **state)
{
    struct fresh *f = *state;
    struct fresh other;

    assert_false(key_is_zero(f->s->dataset_key));
    assert_int_equal(fresh_open(f->be, &other), 0);
    assert_false(key_is_zero(other.s->dataset_key));
    assert_memory_not_equal(f->s->dataset_key, other.s->dataset_key, STORE_DATASET_KEY_BYTES);
    fresh_close(&other);
}

/* ---- conformance: list ----------------------------------------------------------------------- */

/* strcmp order is byte order: '-' (0x2d) < '0' (0x30) < 'A'..'Z' < 'a'..'z' < UTF-8 lead bytes,
 * whatever the locale and whatever the insertion order. */
static void test_list_order_bytewise(void **state)
{
    struct fresh *f = *state;
    const char *const inserted[] = {"books/b",  "books/a-1", "books/\xc3\xa9", "books/a",
                                    "books/z9", "books/Z",   "books/a0"};
    const char *const sorted[] = {"books/Z", "books/a",  "books/a-1",     "books/a0",
                                  "books/b", "books/z9", "books/\xc3\xa9"};

    for (size_t i = 0; i < ARRAY_LEN(inserted); i++)
        assert_int_equal(create_named(f->s, inserted[i]), 0);
    assert_page(f->s, NULL, 16, sorted, ARRAY_LEN(sorted));
}

static void test_list_after_name(void **state)
{
    struct fresh *f = *state;
    const char *const names[] = {"books/b", "books/d", "books/f"};

    for (size_t i = ARRAY_LEN(names); i > 0; i--)
        assert_int_equal(create_named(f->s, names[i - 1]), 0);

    assert_page(f->s, NULL, 10, names, 3);          /* NULL: from the first */
    assert_page(f->s, "", 10, names, 3);            /* "": from the first */
    assert_page(f->s, "books/a", 10, names, 3);     /* before the first key */
    assert_page(f->s, "books/b", 10, names + 1, 2); /* an exact key is excluded */
    assert_page(f->s, "books/d", 10, names + 2, 1);
    assert_page(f->s, "books/c", 10, names + 1, 2);     /* between two keys */
    assert_page(f->s, "books/b\x01", 10, names + 1, 2); /* just past a key */
    assert_page(f->s, "books/f", 10, NULL, 0);          /* the last key */
    assert_page(f->s, "books/z", 10, NULL, 0);          /* after the last key */
    assert_page(f->s, "books", 10, names, 3);           /* a prefix of every key */
}

static void test_list_limits(void **state)
{
    struct fresh *f = *state;
    const char *const names[] = {"books/b", "books/d", "books/f"};
    struct store_book *sentinel = (struct store_book *)&sentinel;
    struct store_book *page[2] = {sentinel, sentinel};
    size_t n = 12345;

    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        assert_int_equal(create_named(f->s, names[i]), 0);

    /* limit 0: nothing written to out, count 0. */
    assert_int_equal(store_list(f->s, NULL, 0, page, &n), 0);
    assert_int_equal(n, 0);
    assert_ptr_equal(page[0], sentinel);

    assert_page(f->s, NULL, 1, names, 1);
    assert_page(f->s, NULL, 3, names, 3);
    assert_page(f->s, NULL, 16, names, 3);          /* larger than the collection */
    assert_page(f->s, "books/b", 16, names + 1, 2); /* larger than what is left */
}

/* store_ops.list's max_bytes: a page stops after the first record that takes its bytes past the
 * bound, never before it holds two (so the last one tells that more follow), and holds every record
 * up to there; a walk that keeps what fits the bound (at least one) and resumes after the last kept
 * sees every book once, in order, for any bound. Books of 1 to 40 authors of 200 bytes each, so
 * pages cut at different places. */
static void test_list_byte_bound(void **state)
{
    struct fresh *f = *state;
    enum { N = 24, LIMIT = 16 };
    static char author[200];
    const char *authors[40];
    char name[NAME_BYTES], names[N][NAME_BYTES];
    memset(author, 'a', sizeof author - 1);
    for (size_t i = 0; i < 40; i++)
        authors[i] = author;
    for (size_t i = 0; i < N; i++) {
        struct store_book *b = NULL;
        snprintf(name, sizeof name, "books/p%02zu", i);
        snprintf(names[i], sizeof names[i], "%s", name);
        assert_int_equal(test_book_new(name, "T", authors, 1 + (i * 7) % 40, "P", &b), 0);
        assert_int_equal(create_sync(f->s, b), 0);
        store_book_unref(b);
    }
    static const size_t bounds[] = {1, 5000, 20000, 60000, (size_t)1 << 30};
    for (size_t k = 0; k < ARRAY_LEN(bounds); k++) {
        size_t max = bounds[k], seen = 0, pages = 0;
        char after[NAME_BYTES] = "";
        for (;;) {
            struct store_book *page[LIMIT];
            size_t n = 999, bytes = 0, keep = 0;
            assert_int_equal(store_list_bounded(f->s, after, LIMIT, max, page, &n), 0);
            if (n == 0)
                break;
            assert_true(++pages <= N);
            /* Never fewer than two while two are left; no stop before the bound was passed. */
            assert_true(n >= (N - seen >= 2 ? 2 : N - seen));
            for (size_t i = 0; i < n; i++) {
                bytes += store_book_page_bytes(page[i]);
                if (i + 1 < n && i >= 1)
                    assert_true(bytes <= max);
                if (i == 0 || bytes <= max)
                    keep = i + 1;
            }
            if (n < LIMIT && seen + n < N)
                assert_true(bytes > max); /* it stopped for the bound, not for the end */
            for (size_t i = 0; i < keep; i++)
                assert_string_equal(page[i]->name, names[seen + i]);
            seen += keep;
            snprintf(after, sizeof after, "%s", page[keep - 1]->name);
            unref_all(page, n);
        }
        assert_int_equal(seen, N);
        if (max == 1)
            assert_int_equal(pages, N); /* one book per page */
    }
}

/* ---- conformance: AIP-155 request ids -------------------------------------------------------- */

#define RID_A "11111111-1111-4111-8111-111111111111"
#define RID_B "22222222-2222-4222-8222-222222222222"

/* A new record named `name` (caller drops it). */
static struct store_book *new_named(const char *name, const char *title)
{
    struct store_book *b = NULL;
    assert_int_equal(test_book_new(name, title, default_authors, 1, "Parnassus", &b), 0);
    return b;
}

static size_t count_books(struct store *s)
{
    struct store_book *page[64];
    size_t n = 0;
    assert_int_equal(store_list(s, NULL, ARRAY_LEN(page), page, &n), 0);
    unref_all(page, n);
    return n;
}

/* A request id seen before answers with the book that first request made, whatever name the
 * retry carries (a server-assigned id differs on every attempt), and makes no second book; the
 * same id with another fingerprint is BOOKS_EREUSED; an id whose create failed (the name was
 * taken) is not remembered. */
static void test_request_id_replays_and_reuse(void **state)
{
    struct fresh *f = *state;
    struct store_book *first = new_named("books/first-try", "One"), *made = NULL;
    struct store_book *retry = new_named("books/second-try", "One"), *other = NULL;

    assert_int_equal(create_sync_request(f->s, first, RID_A, 0xa1, &made), 0);
    assert_non_null(made);
    assert_string_equal(made->name, "books/first-try");
    store_book_unref(made);
    made = NULL;
    assert_int_equal(create_sync_request(f->s, retry, RID_A, 0xa1, &made), 0);
    assert_non_null(made);
    assert_same_book(first, made); /* the first request's book, not the retry's */
    store_book_unref(made);
    made = NULL;
    assert_int_equal(store_get(f->s, "books/second-try", &other), BOOKS_ENOTFOUND);
    assert_int_equal(create_sync_request(f->s, retry, RID_A, 0xa2, &made), BOOKS_EREUSED);
    assert_null(made);
    assert_int_equal(count_books(f->s), 1);

    /* The name is taken: BOOKS_EEXIST, and RID_B stays free for a create that succeeds. */
    struct store_book *taken = new_named("books/first-try", "Two");
    assert_int_equal(create_sync_request(f->s, taken, RID_B, 0xb1, &made), BOOKS_EEXIST);
    assert_null(made);
    assert_int_equal(create_sync_request(f->s, retry, RID_B, 0xb1, &made), 0);
    assert_string_equal(made->name, "books/second-try");
    store_book_unref(made);
    assert_int_equal(count_books(f->s), 2);
    store_book_unref(taken);
    store_book_unref(first);
    store_book_unref(retry);
}

/* Eight creates with their own request ids queued at once, one of them for a name already taken
 * (a durable store may write them as one batch, or one transaction: Firestore's shared Commit):
 * that one alone fails with BOOKS_EEXIST, the others make their own books; sent again, as retries,
 * the seven get their books back and the eighth fails again, and nothing more is made. */
static void test_request_ids_at_once_one_name_taken(void **state)
{
    struct fresh *f = *state;
    enum { N = 8, TAKEN = 3 };
    struct create_wait waits[N];
    struct store_book *books[N];
    char name[NAME_BYTES];

    assert_int_equal(create_named(f->s, "books/taken"), 0);
    for (size_t i = 0; i < N; i++) {
        if (i == TAKEN)
            snprintf(name, sizeof name, "books/taken");
        else
            snprintf(name, sizeof name, "books/own-req-%zu", i);
        books[i] = new_named(name, "Own");
    }
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < N; i++) {
            struct store_create_req req = {.book = books[i]};
            snprintf(req.request_id, sizeof req.request_id,
                     "7d3f0c2a-5b1e-4c9d-8a6f-%012zu", i);
            memset(req.fingerprint, (int)(0x30 + i), sizeof req.fingerprint);
            create_wait_init(&waits[i]);
            store_create(f->s, &req, create_wait_done, &waits[i]);
        }
        for (size_t i = 0; i < N; i++) {
            if (i == TAKEN) {
                assert_int_equal(create_wait_rc(&waits[i]), BOOKS_EEXIST);
                assert_null(waits[i].made);
            } else {
                assert_int_equal(create_wait_rc(&waits[i]), 0);
                assert_non_null(waits[i].made);
                assert_string_equal(waits[i].made->name, books[i]->name);
            }
            create_wait_cleanup(&waits[i]);
        }
        assert_int_equal(count_books(f->s), N);
    }
    for (size_t i = 0; i < N; i++)
        store_book_unref(books[i]);
}

/* Eight creates with one request id queued at once (a durable store writes them in one batch),
 * each with its own name as server-assigned ids would be: exactly one book is made and every
 * answer names it. */
static void test_request_id_at_once(void **state)
{
    struct fresh *f = *state;
    enum { N = 8 };
    struct create_wait waits[N];
    struct store_book *books[N];
    char name[NAME_BYTES];

    for (size_t i = 0; i < N; i++) {
        snprintf(name, sizeof name, "books/dup-req-%zu", i);
        books[i] = new_named(name, "Same");
        create_wait_init(&waits[i]);
    }
    for (size_t i = 0; i < N; i++) {
        struct store_create_req req = {.book = books[i]};
        snprintf(req.request_id, sizeof req.request_id, "%s", RID_A);
        memset(req.fingerprint, 0x5a, sizeof req.fingerprint);
        store_create(f->s, &req, create_wait_done, &waits[i]);
    }
    const char *winner = NULL;
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(create_wait_rc(&waits[i]), 0);
        assert_non_null(waits[i].made);
        if (!winner)
            winner = waits[i].made->name;
        assert_string_equal(waits[i].made->name, winner);
    }
    assert_int_equal(count_books(f->s), 1);
    for (size_t i = 0; i < N; i++) {
        create_wait_cleanup(&waits[i]);
        store_book_unref(books[i]);
    }
}

/* Request ids are kept for the retention (store_limits.request_ttl_s), then forgotten: the same id
 * then makes a new book. A store forgets between its batches, so a create after the retention
 * gives it the chance. */
static void test_request_id_retention(void **state)
{
    struct fresh *f = *state;
    const struct store_limits limits = {.request_ttl_s = 1};
    char err[STORE_ERR_BYTES] = "";
    struct store_book *a = new_named("books/kept", "K"), *b = new_named("books/later", "K");
    struct store_book *nudge = new_named("books/nudge", "N"), *made = NULL;

    /* Reopen the same data set with a retention of one second. */
    store_close(f->s);
    assert_int_equal(store_open(f->uri, &limits, &f->s, err, sizeof err), 0);
    assert_int_equal(create_sync_request(f->s, a, RID_A, 0x11, &made), 0);
    store_book_unref(made);
    assert_int_equal(create_sync_request(f->s, b, RID_A, 0x11, &made), 0);
    assert_string_equal(made->name, "books/kept"); /* still remembered */
    store_book_unref(made);
    nanosleep(&(struct timespec){2, 500000000}, NULL);
    assert_int_equal(create_sync(f->s, nudge), 0);
    assert_int_equal(create_sync_request(f->s, b, RID_A, 0x11, &made), 0);
    assert_string_equal(made->name, "books/later"); /* forgotten: a new book */
    store_book_unref(made);
    assert_int_equal(count_books(f->s), 3);
    store_book_unref(a);
    store_book_unref(b);
    store_book_unref(nudge);
}

/* A keyset walk with a small page sees every book exactly once, in order. */
static void test_list_keyset_walk(void **state)
{
    struct fresh *f = *state;
    enum { N = 500, LIMIT = 7 };
    static char names[N][NAME_BYTES];
    size_t order[N];
    struct store_book *page[LIMIT];
    char after[NAME_BYTES] = "";
    size_t seen = 0;
    size_t pages = 0;
    size_t n;

    /* Zero-padded, so numeric order is strcmp order; inserted shuffled. */
    for (size_t i = 0; i < N; i++)
        snprintf(names[i], sizeof(names[i]), "books/walk-%03zu", i);
    shuffle(order, N, 0x5eed);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(create_named(f->s, names[order[i]]), 0);

    do {
        assert_int_equal(store_list(f->s, after, LIMIT, page, &n), 0);
        assert_true(n <= LIMIT);
        for (size_t i = 0; i < n; i++) {
            assert_true(seen < N);
            assert_string_equal(page[i]->name, names[seen]);
            seen++;
        }
        if (n > 0)
            snprintf(after, sizeof(after), "%s", page[n - 1]->name);
        unref_all(page, n);
        pages++;
    } while (n == LIMIT);
    assert_int_equal(seen, N);
    assert_int_equal(pages, N / LIMIT + 1);
}

/* ---- conformance: concurrency ----------------------------------------------------------------
 * Writers create distinct names while readers page through the collection and get names the
 * writers have seen acknowledged. Every page must be strictly ascending, every walk must see at
 * least every book acknowledged before it began, and every acknowledged name must be found. */

enum { N_WRITERS = 8, PER_WRITER = 2000, N_READERS = 4, PERM_STEP = 7919 };

/* Creates per writer. Under valgrind (tens of times slower, every thread serialised) a tenth of
 * them: memcheck is there for memory errors and leaks, which the smaller load exercises through the
 * same paths; the full load runs in the normal and the sanitizer builds. PERM_STEP is prime, so
 * it stays coprime with either count. */
/* A remote store tested through an emulator (firestore:, each create a call to a JVM) also
 * takes a tenth: the same interleavings, in seconds rather than minutes. */
static bool remote_backend;

static size_t per_writer(void)
{
    return RUNNING_ON_VALGRIND || remote_backend ? PER_WRITER / 10 : PER_WRITER;
}

struct concurrency {
    struct store *s;
    atomic_size_t acked[N_WRITERS]; /* writer w's first acked[w] creates are acknowledged */
    atomic_bool writers_done;
    atomic_uint failures;
    atomic_size_t walks;
    atomic_size_t gets;
};

struct worker {
    struct concurrency *c;
    unsigned id;
};

/* The k-th name writer w creates. PERM_STEP is prime and coprime with PER_WRITER, so k -> j is a
 * permutation and each writer inserts all over the key range rather than at its end. */
static void concurrency_name(char *buf, size_t len, unsigned w, size_t k)
{
    snprintf(buf, len, "books/c%04zu-w%u", (k * PERM_STEP) % per_writer(), w);
}

static void record_failure(struct concurrency *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void record_failure(struct concurrency *c, const char *fmt, ...)
{
    va_list ap;

    /* Print the first few only: one bug can fail thousands of checks. */
    if (atomic_fetch_add(&c->failures, 1) < 5) {
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

static void *writer_main(void *arg)
{
    struct worker *me = arg;
    struct concurrency *c = me->c;
    char name[NAME_BYTES];

    for (size_t k = 0; k < per_writer(); k++) {
        int rc;

        concurrency_name(name, sizeof(name), me->id, k);
        rc = create_named(c->s, name);
        if (rc != 0) {
            record_failure(c, "create %s: %s", name, books_err_name(rc));
            continue;
        }
        atomic_store_explicit(&c->acked[me->id], k + 1, memory_order_release);
    }
    return NULL;
}

static size_t total_acked(struct concurrency *c)
{
    size_t total = 0;

    for (unsigned w = 0; w < N_WRITERS; w++)
        total += atomic_load_explicit(&c->acked[w], memory_order_acquire);
    return total;
}

/* One full keyset walk with page sizes varying from 1 to 64. */
static void reader_walk(struct concurrency *c, uint32_t *rng)
{
    struct store_book *page[64];
    char after[NAME_BYTES] = "";
    size_t must_see = total_acked(c);
    size_t seen = 0;
    size_t n;

    do {
        size_t limit = 1 + xorshift32(rng) % ARRAY_LEN(page);
        int rc = store_list(c->s, after, limit, page, &n);

        if (rc != 0) {
            record_failure(c, "list after %s: %s", after, books_err_name(rc));
            return;
        }
        if (n > limit) {
            record_failure(c, "list returned %zu books for limit %zu", n, limit);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const char *prev = i == 0 ? after : page[i - 1]->name;

            /* Stop the walk at the first disorder: a list that repeats its after_name would
             * otherwise keep this loop going forever. */
            if (strcmp(prev, page[i]->name) >= 0) {
                record_failure(c, "list not ascending: \"%s\" then \"%s\"", prev, page[i]->name);
                unref_all(page, n);
                return;
            }
        }
        if (n > 0)
            snprintf(after, sizeof(after), "%s", page[n - 1]->name);
        seen += n;
        unref_all(page, n);
    } while (n > 0);
    if (seen < must_see)
        record_failure(c, "walk saw %zu books, %zu were acknowledged before it began", seen,
                       must_see);
    atomic_fetch_add(&c->walks, 1);
}

static void reader_get(struct concurrency *c, uint32_t *rng)
{
    unsigned w = xorshift32(rng) % N_WRITERS;
    size_t acked = atomic_load_explicit(&c->acked[w], memory_order_acquire);
    char name[NAME_BYTES];
    struct store_book *got = NULL;
    int rc;

    if (acked == 0)
        return;
    concurrency_name(name, sizeof(name), w, xorshift32(rng) % acked);
    rc = store_get(c->s, name, &got);
    if (rc != 0) {
        record_failure(c, "get %s (acknowledged): %s", name, books_err_name(rc));
        return;
    }
    if (strcmp(got->name, name) != 0)
        record_failure(c, "get %s returned %s", name, got->name);
    store_book_unref(got);
    atomic_fetch_add(&c->gets, 1);
}

static void *reader_main(void *arg)
{
    struct worker *me = arg;
    struct concurrency *c = me->c;
    uint32_t rng = 0x9e3779b9u + me->id;

    /* At least one round even if the writers are already done. */
    do {
        reader_walk(c, &rng);
        for (int i = 0; i < 50; i++)
            reader_get(c, &rng);
    } while (!atomic_load(&c->writers_done));
    return NULL;
}

static void test_concurrent_create_list_get(void **state)
{
    struct fresh *f = *state;
    static struct concurrency c; /* static: too big for comfort on the test's stack */
    struct worker writers[N_WRITERS];
    struct worker readers[N_READERS];
    pthread_t writer_threads[N_WRITERS];
    pthread_t reader_threads[N_READERS];
    struct store_book *page[100];
    char after[NAME_BYTES] = "";
    char name[NAME_BYTES];
    size_t total = 0;
    size_t n;

    memset(&c, 0, sizeof(c));
    c.s = f->s;
    remote_backend = is_firestore(f->be);
    for (unsigned i = 0; i < N_WRITERS; i++) {
        writers[i] = (struct worker){&c, i};
        assert_int_equal(pthread_create(&writer_threads[i], NULL, writer_main, &writers[i]), 0);
    }
    for (unsigned i = 0; i < N_READERS; i++) {
        readers[i] = (struct worker){&c, i};
        assert_int_equal(pthread_create(&reader_threads[i], NULL, reader_main, &readers[i]), 0);
    }
    for (unsigned i = 0; i < N_WRITERS; i++)
        assert_int_equal(pthread_join(writer_threads[i], NULL), 0);
    atomic_store(&c.writers_done, true);
    for (unsigned i = 0; i < N_READERS; i++)
        assert_int_equal(pthread_join(reader_threads[i], NULL), 0);

    print_message("concurrency: %zu walks, %zu gets while writing\n", atomic_load(&c.walks),
                  atomic_load(&c.gets));
    assert_int_equal(atomic_load(&c.failures), 0);
    assert_int_equal(total_acked(&c), (size_t)N_WRITERS * per_writer());

    /* Afterwards: exactly the books written, strictly ascending, each one found by name. */
    do {
        assert_int_equal(store_list(f->s, after, ARRAY_LEN(page), page, &n), 0);
        for (size_t i = 0; i < n; i++)
            assert_true(strcmp(i == 0 ? after : page[i - 1]->name, page[i]->name) < 0);
        if (n > 0)
            snprintf(after, sizeof(after), "%s", page[n - 1]->name);
        total += n;
        unref_all(page, n);
    } while (n > 0);
    assert_int_equal(total, (size_t)N_WRITERS * per_writer());
    for (unsigned w = 0; w < N_WRITERS; w++) {
        for (size_t k = 0; k < per_writer(); k++) {
            struct store_book *got = NULL;

            concurrency_name(name, sizeof(name), w, k);
            assert_int_equal(store_get(f->s, name, &got), 0);
            store_book_unref(got);
        }
    }
}

/* ---- store_open: the factory ----------------------------------------------------------------- */

static void test_open_errors(void **state)
{
    static const struct {
        const char *uri;
        const char *quoted; /* what the message must quote; NULL: the whole URI */
        const char *also;   /* another substring the message must contain */
    } cases[] = {
        {"nosuch:x", "\"nosuch\"", "memory:"}, /* unknown scheme: lists the accepted forms */
        {"memory", NULL, "memory:"},             /* no scheme at all */
        {"", NULL, "memory:"},                   /* empty */
        {":memory", NULL, "memory:"},            /* empty scheme */
        {"memory:extra", NULL, "takes no options"},
        {"memory:/tmp/x", NULL, "takes no options"},
        /* An unknown scheme's URI is not echoed past its scheme: it may hold a password. */
        {"postgresq://user:secret@db/books", "\"postgresq\"", "postgresql://"},
    };
    struct store *sentinel = (struct store *)&sentinel;
    char err[STORE_ERR_BYTES];
    char quoted[64];

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct store *s = sentinel;

        err[0] = '\0';
        assert_int_equal(store_open(cases[i].uri, NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
        assert_ptr_equal(s, sentinel);
        if (cases[i].quoted)
            snprintf(quoted, sizeof(quoted), "%s", cases[i].quoted);
        else
            snprintf(quoted, sizeof(quoted), "\"%s\"", cases[i].uri);
        if (!strstr(err, quoted) || !strstr(err, cases[i].also))
            fail_msg("store_open(\"%s\"): message \"%s\" lacks %s or %s", cases[i].uri, err, quoted,
                     cases[i].also);
        assert_null(strstr(err, "secret"));
    }
}

static void test_open_error_buffer(void **state)
{
    struct store *s = NULL;
    char err[10];

    (void)state;
    /* No buffer at all is allowed; a short one is truncated and still terminated. */
    assert_int_equal(store_open("nosuch:", NULL, &s, NULL, 0), BOOKS_EINVAL);
    memset(err, 'x', sizeof(err));
    assert_int_equal(store_open("nosuch:", NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_int_equal(store_open(NULL, NULL, &s, err, sizeof(err)), BOOKS_EINVAL);
    assert_null(s);
}

static void test_open_memory(void **state)
{
    struct store *s = NULL;
    char err[STORE_ERR_BYTES] = "";

    (void)state;
    assert_int_equal(store_open("memory:", NULL, &s, err, sizeof(err)), 0);
    assert_non_null(s);
    assert_string_equal(s->ops->scheme, "memory");
    store_close(s);
    /* RFC 3986: the scheme is case-insensitive. */
    assert_int_equal(store_open("MEMORY:", NULL, &s, err, sizeof(err)), 0);
    store_close(s);
    store_close(NULL);
}

/* memory: with a memory limit (a share of the process's budget): creates stop with BOOKS_ENOSPC
 * before the records pass it, reads go on, and what was stored is intact. */
static void test_memory_limit(void **state)
{
    const struct store_limits limits = {.memory_bytes = 64 * 1024};
    const char *authors[] = {"Someone"};
    struct store *s = NULL;
    char err[STORE_ERR_BYTES] = "", name[32];
    size_t stored = 0, held = 0;
    int rc = 0;

    (void)state;
    assert_int_equal(store_open("memory:", &limits, &s, err, sizeof(err)), 0);
    for (int i = 0; i < 10000 && rc == 0; i++) {
        struct store_book *b = NULL;
        snprintf(name, sizeof name, "books/b%05d", i);
        assert_int_equal(test_book_new(name, "A title", authors, 1, "A publisher", &b), 0);
        rc = create_sync(s, b);
        if (rc == 0) {
            stored++;
            held += b->size_bytes;
        }
        store_book_unref(b);
    }
    assert_int_equal(rc, BOOKS_ENOSPC);
    assert_true(stored > 100);
    assert_true(held <= limits.memory_bytes);
    /* Full is full for a taken name too, and reads still work. */
    struct store_book *b = NULL, *got = NULL;
    assert_int_equal(test_book_new("books/b00000", "T", authors, 1, "P", &b), 0);
    assert_int_equal(create_sync(s, b), BOOKS_ENOSPC);
    store_book_unref(b);
    assert_int_equal(store_get(s, "books/b00000", &got), 0);
    Books__V1__Book *m = decoded(got);
    assert_string_equal(m->display_name, "A title");
    test_book_free(m);
    store_book_unref(got);
    store_close(s);
}

/* ---- store_book: the record ------------------------------------------------------------------ */

static bool inside(const void *p, const void *block, size_t size)
{
    const char *c = p;
    const char *b = block;

    return c >= b && c < b + size;
}

/* A record is its name and its encoded Book: the wire form is field 1 (the name, as protobuf
 * encodes a string: key 0x0a, a varint length, the bytes) followed by the body, which is what a
 * store keeps; both are copies, in one allocation with the record. */
static void test_book_new_copies_into_one_block(void **state)
{
    char name[] = "books/dune";
    uint8_t body[] = {0x12, 0x04, 'D', 'u', 'n', 'e', 0x22, 0x01, 'C'};
    struct store_book *b = NULL;
    size_t block, len;

    (void)state;
    assert_int_equal(store_book_new(name, strlen(name), body, sizeof body, &b), 0);
    assert_int_equal(atomic_load(&b->refs), 1);

    /* Copies, not the caller's pointers: changing the inputs leaves the record alone. */
    name[0] = '#';
    body[2] = '#';
    assert_string_equal(b->name, "books/dune");
    assert_int_equal(b->name_len, strlen("books/dune"));
    static const uint8_t wire[] = {0x0a, 10,   'b', 'o', 'o', 'k', 's', '/', 'd', 'u', 'n', 'e',
                                   0x12, 0x04, 'D', 'u', 'n', 'e', 0x22, 0x01, 'C'};
    assert_int_equal(b->wire_len, sizeof wire);
    assert_memory_equal(b->wire, wire, sizeof wire);
    const uint8_t *got = store_book_body(b, &len);
    assert_int_equal(len, sizeof body);
    assert_memory_equal(got, wire + 12, len);
    assert_int_equal(store_book_page_bytes(b), sizeof wire + 6);

    /* One allocation: the name and the wire form lie inside the record's own block, which is
     * what size_bytes counts. */
    block = malloc_usable_size(b);
    assert_true(inside(b->name, b, block));
    assert_true(inside(b->wire, b, block));
    assert_true(inside(b->wire + b->wire_len - 1, b, block));
    assert_true(b->size_bytes <= block);
    assert_true(b->size_bytes >= sizeof *b + b->name_len + 1 + b->wire_len);
    store_book_unref(b);
}

/* The name's length takes more than one varint byte from 128 bytes on (STORE_MAX_NAME_BYTES is
 * 128): the wire form still starts with the name field and the body follows it exactly. */
static void test_book_new_long_name(void **state)
{
    char name[STORE_MAX_NAME_BYTES + 2];
    struct store_book *b = NULL;
    (void)state;
    memset(name, 'n', sizeof name);
    assert_int_equal(store_book_new(name, STORE_MAX_NAME_BYTES, (const uint8_t *)"\x12\x00", 2,
                                    &b),
                     0);
    assert_int_equal(b->wire[0], 0x0a);
    assert_int_equal(b->wire[1], 0x80); /* 128 = 0x80 0x01 */
    assert_int_equal(b->wire[2], 0x01);
    assert_int_equal(b->body_off, 3 + STORE_MAX_NAME_BYTES);
    store_book_unref(b);
    assert_int_equal(store_book_new(name, STORE_MAX_NAME_BYTES + 1, NULL, 0, &b), BOOKS_ECORRUPT);
}

static void test_book_new_bad_inputs(void **state)
{
    struct store_book *sentinel = (struct store_book *)&sentinel;
    struct store_book *b = sentinel;

    (void)state;
    assert_int_equal(store_book_new(NULL, 1, NULL, 0, &b), BOOKS_EINVAL);
    assert_int_equal(store_book_new("n", 1, NULL, 0, NULL), BOOKS_EINVAL);
    assert_int_equal(store_book_new("n", 0, NULL, 0, &b), BOOKS_EINVAL);    /* no name */
    assert_int_equal(store_book_new("n", 1, NULL, 3, &b), BOOKS_EINVAL);    /* NULL body */
    assert_int_equal(store_book_new("a\0b", 3, NULL, 0, &b), BOOKS_ECORRUPT); /* a NUL in it */
    assert_int_equal(store_book_new("n", 1, (const uint8_t *)"", STORE_MAX_BODY_BYTES + 1, &b),
                     BOOKS_ECORRUPT);
    assert_ptr_equal(b, sentinel);
    /* An empty body is a Book with every field at its default: a store keeps it as it is. */
    assert_int_equal(store_book_new("n", 1, NULL, 0, &b), 0);
    assert_int_equal(b->wire_len, 3);
    store_book_unref(b);
}

/* store_request_matches(): the fingerprint decides when one was stored; a legacy fingerprint
 * only for an id stored without one (by 363d47a); wrong lengths never match. */
static void test_request_matches(void **state)
{
    uint8_t fp[STORE_FINGERPRINT_BYTES], legacy[STORE_FINGERPRINT_BYTES],
        other[STORE_FINGERPRINT_BYTES];
    (void)state;
    memset(fp, 1, sizeof fp);
    memset(legacy, 2, sizeof legacy);
    memset(other, 3, sizeof other);
    assert_true(store_request_matches(fp, legacy, fp, sizeof fp, NULL, 0));
    assert_true(store_request_matches(fp, legacy, fp, sizeof fp, other, sizeof other));
    assert_false(store_request_matches(fp, legacy, other, sizeof other, legacy, sizeof legacy));
    assert_true(store_request_matches(fp, legacy, NULL, 0, legacy, sizeof legacy));
    assert_false(store_request_matches(fp, legacy, NULL, 0, other, sizeof other));
    assert_false(store_request_matches(fp, legacy, NULL, 0, NULL, 0));
    assert_false(store_request_matches(fp, legacy, fp, sizeof fp - 1, legacy, sizeof legacy));
    assert_false(store_request_matches(fp, legacy, NULL, 0, legacy, sizeof legacy + 1));
}

static void test_book_ref_unref(void **state)
{
    struct store_book *b = NULL;

    (void)state;
    assert_int_equal(store_book_new("n", 1, NULL, 0, &b), 0);
    assert_ptr_equal(store_book_ref(b), b);
    assert_int_equal(atomic_load(&b->refs), 2);
    store_book_unref(b);
    assert_int_equal(atomic_load(&b->refs), 1);
    store_book_unref(b); /* frees: valgrind/ASan report a leak or a double free */
    store_book_unref(NULL);
}

enum { REF_THREADS = 4, REF_ROUNDS = 100000 };

static void *ref_churn(void *arg)
{
    struct store_book *b = arg;

    for (int i = 0; i < REF_ROUNDS; i++)
        store_book_unref(store_book_ref(b));
    return NULL;
}

static void test_book_ref_threads(void **state)
{
    pthread_t threads[REF_THREADS];
    struct store_book *b = NULL;

    (void)state;
    assert_int_equal(store_book_new("n", 1, NULL, 0, &b), 0);
    for (int i = 0; i < REF_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, ref_churn, b), 0);
    for (int i = 0; i < REF_THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_int_equal(atomic_load(&b->refs), 1);
    store_book_unref(b);
}

static void test_new_dataset_key(void **state)
{
    uint8_t a[STORE_DATASET_KEY_BYTES];
    uint8_t b[STORE_DATASET_KEY_BYTES];

    (void)state;
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(store_new_dataset_key(a), 0);
    assert_int_equal(store_new_dataset_key(b), 0);
    assert_false(key_is_zero(a));
    assert_memory_not_equal(a, b, sizeof(a));
}

/* ---- main ------------------------------------------------------------------------------------ */

/* The conformance suite: runs unchanged against every row of `backends`. */
static const struct CMUnitTest conformance[] = {
    cmocka_unit_test_setup_teardown(test_get_empty, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_list_empty, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_create_then_get_unicode_many_authors, open_fresh,
                                    close_fresh),
    cmocka_unit_test_setup_teardown(test_create_then_get_minimal, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_create_duplicate, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_create_done_once, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_create_batch_text_and_first_wins, open_fresh,
                                    close_fresh),
    cmocka_unit_test_setup_teardown(test_get_ref_survives_close, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_dataset_key, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_list_order_bytewise, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_list_after_name, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_list_limits, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_list_keyset_walk, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_list_byte_bound, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_request_id_replays_and_reuse, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_request_id_at_once, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_request_ids_at_once_one_name_taken, open_fresh,
                                    close_fresh),
    cmocka_unit_test_setup_teardown(test_request_id_retention, open_fresh, close_fresh),
    cmocka_unit_test_setup_teardown(test_concurrent_create_list_get, open_fresh, close_fresh),
};

static const struct CMUnitTest units[] = {
    cmocka_unit_test(test_book_new_copies_into_one_block),
    cmocka_unit_test(test_book_new_long_name),
    cmocka_unit_test(test_book_new_bad_inputs),
    cmocka_unit_test(test_request_matches),
    cmocka_unit_test(test_book_ref_unref),
    cmocka_unit_test(test_book_ref_threads),
    cmocka_unit_test(test_new_dataset_key),
    cmocka_unit_test(test_open_errors),
    cmocka_unit_test(test_open_error_buffer),
    cmocka_unit_test(test_open_memory),
    cmocka_unit_test(test_memory_limit),
};

int main(void)
{
    store_firestore_register();
    int failed = cmocka_run_group_tests_name("store_book and store_open", units, NULL, NULL);

    for (size_t b = 0; b < ARRAY_LEN(backends); b++) {
        struct CMUnitTest tests[ARRAY_LEN(conformance)];
        char group[64];

        if (is_postgres(&backends[b]) && !postgres_base()) {
            printf("store conformance: %s: skipped (set BOOKS_TEST_POSTGRES_URI)\n",
                   backends[b].name);
            continue;
        }
        if (is_firestore(&backends[b]) && !firestore_emulator()) {
            printf("store conformance: %s: skipped (set FIRESTORE_EMULATOR_HOST)\n",
                   backends[b].name);
            continue;
        }
        /* Same tests, each given this backend's row as its prestate for open_fresh(). */
        memcpy(tests, conformance, sizeof(tests));
        for (size_t i = 0; i < ARRAY_LEN(tests); i++)
            tests[i].initial_state = (void *)&backends[b];
        snprintf(group, sizeof(group), "store conformance: %s", backends[b].name);
        failed += cmocka_run_group_tests_name(group, tests, NULL, NULL);
    }
    return failed == 0 ? 0 : 1;
}
