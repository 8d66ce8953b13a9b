/* test_record_cache.c: the backend-neutral cache of book records. It hands out references to what
 * was put, never holds more than its budget, evicts the least recently used record of a shard,
 * keeps nothing with a budget of 0 or a record larger than a shard's share, and gives back every
 * reference it took (checked by reference counts here and by valgrind/ASan for the memory). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/create_wait.h"
#include "support/test_book.h"

#include "books/error.h"
#include "books/record_cache.h"
#include "books/store.h"

static struct store_book *book(const char *name, size_t title_len)
{
    static const char *authors[] = {"An Author"};
    char *title = malloc(title_len + 1);
    struct store_book *b = NULL;
    memset(title, 't', title_len);
    title[title_len] = '\0';
    assert_int_equal(test_book_new(name, title, authors, 1, "A Publisher", &b), 0);
    free(title);
    return b;
}

static unsigned refs(const struct store_book *b) { return atomic_load(&b->refs); }

static struct store_book *get(struct record_cache *c, const char *name)
{
    return record_cache_get(c, name, strlen(name), record_cache_hash(c, name, strlen(name)));
}

static void put(struct record_cache *c, struct store_book *b)
{
    record_cache_put(c, b, record_cache_hash(c, b->name, strlen(b->name)));
}

static void test_put_get_and_references(void **state)
{
    (void)state;
    struct record_cache *c = NULL;
    struct record_cache_stats st;
    assert_int_equal(record_cache_new(1 << 20, &c), 0);
    assert_true(record_cache_enabled(c));
    struct store_book *b = book("books/dune", 10);
    assert_null(get(c, "books/dune"));
    put(c, b);
    assert_int_equal(refs(b), 2); /* ours and the cache's */
    put(c, b);                    /* the same name again: kept once */
    assert_int_equal(refs(b), 2);
    struct store_book *got = get(c, "books/dune");
    assert_ptr_equal(got, b);
    assert_int_equal(refs(b), 3);
    store_book_unref(got);
    /* A prefix or an extension of the name is another name. */
    assert_null(get(c, "books/dun"));
    assert_null(get(c, "books/dunes"));
    record_cache_stats(c, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 3);
    assert_true(st.bytes >= b->size_bytes);
    record_cache_free(c); /* gives the cache's reference back */
    assert_int_equal(refs(b), 1);
    store_book_unref(b);
    record_cache_free(NULL);
}

static void test_budget_zero_keeps_nothing(void **state)
{
    (void)state;
    struct record_cache *c = NULL;
    assert_int_equal(record_cache_new(0, &c), 0);
    assert_false(record_cache_enabled(c));
    struct store_book *b = book("books/x", 1);
    put(c, b);
    assert_int_equal(refs(b), 1);
    assert_null(get(c, "books/x"));
    record_cache_free(c);
    store_book_unref(b);
}

static void test_budget_and_lru(void **state)
{
    (void)state;
    /* 16 shards of 4 KiB each: a shard holds a handful of 700-byte records. */
    const size_t budget = 64 * 1024;
    struct record_cache *c = NULL;
    struct record_cache_stats st;
    char name[32];
    assert_int_equal(record_cache_new(budget, &c), 0);
    struct store_book *hot = book("books/hot", 600);
    put(c, hot);
    struct store_book *all[2000];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "books/b%04d", i);
        all[i] = book(name, 600);
        put(c, all[i]);
        /* Used after every put: always the most recent of its shard, so never evicted. */
        struct store_book *h = get(c, "books/hot");
        assert_ptr_equal(h, hot);
        store_book_unref(h);
        record_cache_stats(c, &st);
        assert_true(st.bytes <= budget);
    }
    /* Most of the 2000 were evicted, and eviction gave their references back. */
    int cached = 0;
    for (int i = 0; i < 2000; i++)
        if (refs(all[i]) == 2)
            cached++;
        else
            assert_int_equal(refs(all[i]), 1);
    assert_true(cached > 0 && cached < 200);
    /* A record larger than a shard's share (4 KiB) is not cached. */
    struct store_book *big = book("books/big", 8000);
    put(c, big);
    assert_int_equal(refs(big), 1);
    assert_null(get(c, "books/big"));
    record_cache_free(c);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(refs(all[i]), 1);
        store_book_unref(all[i]);
    }
    assert_int_equal(refs(hot), 1);
    store_book_unref(hot);
    store_book_unref(big);
}

/* Readers and writers on overlapping names from several threads: every get returns the record of
 * the name asked for, and all references come back. */
struct shared {
    struct record_cache *c;
    struct store_book *books[64];
};

static void *hammer(void *arg)
{
    struct shared *sh = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    for (int i = 0; i < 20000; i++) {
        struct store_book *b = sh->books[rand_r(&seed) % 64];
        if (i % 3 == 0) {
            put(sh->c, b);
        } else {
            struct store_book *got = get(sh->c, b->name);
            if (got) {
                if (got != b)
                    abort();
                store_book_unref(got);
            }
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct shared sh;
    char name[32];
    assert_int_equal(record_cache_new(32 * 1024, &sh.c), 0);
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof name, "books/t%02d", i);
        sh.books[i] = book(name, 200);
    }
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &sh), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    record_cache_free(sh.c);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(refs(sh.books[i]), 1);
        store_book_unref(sh.books[i]);
    }
}

/* Lists every page of `s` (limit, max_bytes) into names[] (a "|" after each page); returns the
 * count of books. */
static size_t walk(struct store *s, size_t limit, size_t max_bytes, char *names, size_t len)
{
    struct store_book *out[64];
    char after[64] = "";
    size_t total = 0, n;
    names[0] = '\0';
    for (;;) {
        assert_int_equal(store_list_bounded(s, after, limit, max_bytes, out, &n), 0);
        for (size_t i = 0; i < n; i++) {
            strncat(names, out[i]->name + 6, len - strlen(names) - 1);
            strncat(names, ",", len - strlen(names) - 1);
            snprintf(after, sizeof after, "%s", out[i]->name);
            store_book_unref(out[i]);
        }
        strncat(names, "|", len - strlen(names) - 1);
        total += n;
        if (n < limit && (n == 0 || !max_bytes))
            return total;
        if (n == 0)
            return total;
    }
}

/* Above a backend that walks its names (sqlite:), a page is answered from the cached records as
 * far as the cache holds them, and from the backend from the first it does not: the pages are
 * the backend's own, book for book and cut for cut, whatever part of them is cached. */
static void test_cached_pages_are_the_backends(void **state)
{
    (void)state;
    char dir[] = "/tmp/books-test-cache-XXXXXX", uri[128], err[256], name[32];
    static char via_layer[8192], via_backend[8192];
    struct store *s = NULL;
    assert_non_null(mkdtemp(dir));
    snprintf(uri, sizeof uri, "sqlite:%s/books.db?cache_mb=1", dir);
    assert_int_equal(store_open(uri, NULL, &s, err, sizeof err), 0);
    struct store *below = record_cache_below(s);
    assert_true(below != s);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "books/b%02d", i);
        struct store_book *b = book(name, 100 + (size_t)(i * 97 % 3000));
        assert_int_equal(create_sync(s, b), 0);
        store_book_unref(b);
    }
    static const size_t limits[] = {1, 2, 7, 50}, bounds[] = {0, 1, 2500, 9000};
    for (int warm = 0; warm < 3; warm++) {
        /* 0: nothing cached; 1: every third book; 2: all of them */
        for (int i = 0; i < 40; i++) {
            struct store_book *b = NULL;
            snprintf(name, sizeof name, "books/b%02d", i);
            if (warm == 2 || (warm == 1 && i % 3 == 0)) {
                assert_int_equal(store_get(s, name, &b), 0);
                store_book_unref(b);
            }
        }
        for (size_t li = 0; li < 4; li++)
            for (size_t bi = 0; bi < 4; bi++) {
                size_t a = walk(s, limits[li], bounds[bi], via_layer, sizeof via_layer);
                size_t b = walk(below, limits[li], bounds[bi], via_backend, sizeof via_backend);
                assert_int_equal(a, 40);
                assert_int_equal(b, 40);
                assert_string_equal(via_layer, via_backend);
            }
    }
    store_close(s);
    snprintf(uri, sizeof uri, "rm -rf '%s'", dir);
    assert_int_equal(system(uri), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_and_references),
        cmocka_unit_test(test_budget_zero_keeps_nothing),
        cmocka_unit_test(test_budget_and_lru),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_cached_pages_are_the_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
