/* test_commit_pipeline.c: group commit over a fake backend. Every create is answered exactly once,
 * after its batch was written and on the answerer thread; a taken name fails alone; a failed batch
 * fails every create in it and the next batch starts afresh; creates queued while a batch is being
 * written share the next one (the group commit), never more than batch_max; answers keep the order
 * of submission; stop writes and answers everything queued first; a poke has the committer call
 * idle() without a batch; a backend can refuse what is queued behind the batch it writes. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "support/test_book.h"

#include "books/commit_pipeline.h"
#include "books/error.h"

/* ---- a fake backend ---------------------------------------------------------------------------- */

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hold;          /* write_batch waits while this is set */
    bool in_batch;      /* a write_batch is running */
    int fail_next;      /* the next batch returns this (0: none) */
    int refuse_queued;  /* the next batch refuses what is queued behind it with this (0: none) */
    struct commit_pipeline *p;
    size_t batches, largest, idles;
    char names[4096][24]; /* everything written, in order */
    size_t n_names;
};

static int fake_write(void *self, struct commit_item *items, size_t n)
{
    struct fake *f = self;
    pthread_mutex_lock(&f->mu);
    f->in_batch = true;
    pthread_cond_broadcast(&f->cv);
    while (f->hold)
        pthread_cond_wait(&f->cv, &f->mu);
    f->in_batch = false;
    f->batches++;
    if (n > f->largest)
        f->largest = n;
    int rc = f->fail_next;
    f->fail_next = 0;
    if (f->refuse_queued) {
        commit_pipeline_refuse_queued(f->p, f->refuse_queued);
        f->refuse_queued = 0;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool taken = strncmp(items[i].book->name, "books/dup", 9) == 0;
        for (size_t k = 0; !taken && k < f->n_names; k++)
            taken = strcmp(f->names[k], items[i].book->name) == 0;
        if (taken) {
            items[i].rc = BOOKS_EEXIST;
        } else {
            snprintf(f->names[f->n_names++], sizeof f->names[0], "%s", items[i].book->name);
            items[i].rc = 0;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void fake_idle(void *self)
{
    struct fake *f = self;
    pthread_mutex_lock(&f->mu);
    f->idles++;
    pthread_mutex_unlock(&f->mu);
}

static struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    return f;
}

static void fake_free(struct fake *f)
{
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void set_hold(struct fake *f, bool hold)
{
    pthread_mutex_lock(&f->mu);
    f->hold = hold;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void wait_in_batch(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    while (!f->in_batch)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static struct commit_pipeline *start_capped(struct fake *f, size_t batch_max, size_t max_queued)
{
    const struct commit_backend be = {.self = f, .write_batch = fake_write, .idle = fake_idle};
    struct commit_pipeline *p = NULL;
    assert_int_equal(
        commit_pipeline_start(&be, batch_max, max_queued, "test", "fake store", &p), 0);
    f->p = p;
    return p;
}

static struct commit_pipeline *start(struct fake *f, size_t batch_max)
{
    return start_capped(f, batch_max, 0);
}

/* ---- answers ----------------------------------------------------------------------------------- */

struct answer {
    atomic_int calls;
    int rc;
    pthread_t thread;
    int order; /* when it was answered, across all answers */
};

static atomic_int answered;

/* done() calls that broke the contract: a book with every success, none otherwise. Counted here
 * (done() runs on the answerer thread, where cmocka cannot fail a test), checked by wait_answers. */
static atomic_int bad_made;

static void done(void *arg, int rc, struct store_book *made)
{
    struct answer *a = arg;
    if ((rc == 0) != (made != NULL))
        atomic_fetch_add(&bad_made, 1);
    store_book_unref(made);
    a->rc = rc;
    a->thread = pthread_self();
    a->order = atomic_fetch_add(&answered, 1);
    atomic_fetch_add(&a->calls, 1);
}

static void wait_answers(int n)
{
    for (int i = 0; i < 10000 && atomic_load(&answered) < n; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    assert_true(atomic_load(&answered) >= n);
    assert_int_equal(atomic_load(&bad_made), 0);
}

static struct store_book *book(const char *name)
{
    static const char *authors[] = {"A"};
    struct store_book *b = NULL;
    assert_int_equal(test_book_new(name, "T", authors, 1, "P", &b), 0);
    return b;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void submit_by(struct commit_pipeline *p, const char *name, uint64_t deadline_ns,
                      struct answer *a)
{
    struct store_book *b = book(name);
    const struct store_create_req req = {.book = b, .deadline_ns = deadline_ns};
    commit_pipeline_submit(p, &req, done, a);
    store_book_unref(b); /* the pipeline holds its own reference */
}

static void submit(struct commit_pipeline *p, const char *name, struct answer *a)
{
    submit_by(p, name, 0, a);
}

/* Holds the fake in write_batch with one create (`first`, answered in a[0]), then queues n more
 * behind it (PREFIX-01 ... , answered in a[1..n]). */
static void queue_behind_held_batch(struct fake *f, struct commit_pipeline *p, const char *first,
                                    const char *prefix, struct answer *a, int n)
{
    char name[32];
    set_hold(f, true);
    submit(p, first, &a[0]);
    wait_in_batch(f);
    for (int i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "%s-%02d", prefix, i);
        submit(p, name, &a[i]);
    }
}

/* ---- tests ------------------------------------------------------------------------------------- */

static void test_answers_once_in_order_after_commit(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1024);
    static struct answer a[100];
    char name[32];
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "books/b%03d", i);
        submit(p, i == 50 ? "books/dup-50" : name, &a[i]);
    }
    wait_answers(100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(atomic_load(&a[i].calls), 1);
        assert_int_equal(a[i].rc, i == 50 ? BOOKS_EEXIST : 0);
        assert_int_equal(a[i].order, i); /* submission order */
        assert_false(pthread_equal(a[i].thread, pthread_self()));
    }
    struct commit_pipeline_stats st;
    commit_pipeline_stop(p, &st);
    assert_int_equal(st.books_written, 99);
    assert_int_equal(st.commits, st.transactions);
    assert_int_equal(st.rollbacks, 0);
    assert_int_equal(f->n_names, 99);
    assert_true(f->idles >= 1);
    fake_free(f);
}

static void test_group_commit_and_batch_max(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 7);
    static struct answer a[51];
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    /* The first create's batch is held in write_batch while 50 more queue up. */
    queue_behind_held_batch(f, p, "books/first", "books/g", a, 50);
    assert_int_equal(atomic_load(&answered), 0); /* nothing answered before its commit */
    set_hold(f, false);
    wait_answers(51);
    struct commit_pipeline_stats st;
    commit_pipeline_stop(p, &st);
    /* 1 + ceil(50 / 7) = 9 transactions, none larger than 7. */
    assert_int_equal(st.transactions, 9);
    assert_int_equal(st.largest_batch, 7);
    assert_int_equal(f->largest, 7);
    assert_int_equal(st.books_written, 51);
    fake_free(f);
}

static void test_failed_batch_fails_all_then_recovers(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1024);
    static struct answer a[11];
    struct commit_pipeline_stats st;
    char name[32];
    /* The next batch written fails as a whole (say, the disk is full). */
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    pthread_mutex_lock(&f->mu);
    f->fail_next = BOOKS_ENOSPC;
    f->hold = true;
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "books/x%02d", i);
        submit(p, name, &a[i]);
    }
    set_hold(f, false);
    wait_answers(10);
    /* Every create of a failed batch gets its error: the first one alone, or all ten, depending on
     * how they were batched, but never a mix within a batch. */
    int failed = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(atomic_load(&a[i].calls), 1);
        assert_true(a[i].rc == 0 || a[i].rc == BOOKS_ENOSPC);
        failed += a[i].rc == BOOKS_ENOSPC;
    }
    assert_true(failed >= 1);
    for (int i = 1; i < 10; i++)
        if (a[i].rc == BOOKS_ENOSPC)
            assert_int_equal(a[i - 1].rc, BOOKS_ENOSPC); /* the failed ones are the first batch */
    struct answer later = {0};
    submit(p, "books/x00", &later); /* failed before, so not taken */
    wait_answers(11);
    assert_int_equal(later.rc, 0);
    commit_pipeline_stop(p, &st);
    assert_int_equal(st.rollbacks, 1);
    assert_int_equal(st.books_written, (uint64_t)(10 - failed + 1));
    fake_free(f);
}

struct stopper {
    struct commit_pipeline *p;
};

static void *stop_thread(void *arg)
{
    struct stopper *s = arg;
    commit_pipeline_stop(s->p, NULL);
    return NULL;
}

static void test_stop_writes_and_answers_everything_queued(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1024);
    static struct answer a[50];
    char name[32];
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    set_hold(f, true);
    submit(p, "books/s00", &a[0]);
    wait_in_batch(f);
    for (int i = 1; i < 50; i++) {
        snprintf(name, sizeof name, "books/s%02d", i);
        submit(p, name, &a[i]);
    }
    struct stopper s = {p};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_thread, &s), 0);
    set_hold(f, false);
    pthread_join(t, NULL);
    /* stop returned: every create was written and answered before. */
    assert_int_equal(atomic_load(&answered), 50);
    for (int i = 0; i < 50; i++)
        assert_int_equal(a[i].rc, 0);
    assert_int_equal(f->n_names, 50);
    fake_free(f);
}

static void test_refusals_inline(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1);
    struct answer a = {0};
    atomic_store(&answered, 0);
    const struct store_create_req no_book = {.book = NULL};
    commit_pipeline_submit(p, &no_book, done, &a);
    assert_int_equal(a.rc, BOOKS_EINVAL);
    assert_true(pthread_equal(a.thread, pthread_self()));
    commit_pipeline_stop(p, NULL);
    commit_pipeline_stop(NULL, NULL);
    /* Bad arguments. */
    const struct commit_backend none = {.self = f};
    struct commit_pipeline *q = NULL;
    assert_int_equal(commit_pipeline_start(&none, 1, 0, "x", "x", &q), BOOKS_EINVAL);
    const struct commit_backend be = {.self = f, .write_batch = fake_write};
    assert_int_equal(commit_pipeline_start(&be, 0, 0, "x", "x", &q), BOOKS_EINVAL);
    assert_int_equal(commit_pipeline_start(&be, 1, 0, "too-long-name", "x", &q), BOOKS_EINVAL);
    assert_null(q);
    fake_free(f);
}

/* A store that does not keep up (its backend held in a batch) fills the queue to max_queued; past
 * it every create is refused at once with BOOKS_EBUSY on the caller's thread, nothing written;
 * once the backend moves again the queue drains and creates are taken again. */
static void test_queue_cap_refuses_at_once(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start_capped(f, 1024, 8);
    static struct answer a[20];
    char name[32];
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    set_hold(f, true);
    submit(p, "books/in-batch", &a[0]);
    wait_in_batch(f); /* taken off the queue: the 8 below fill it */
    for (int i = 1; i <= 12; i++) {
        snprintf(name, sizeof name, "books/q%02d", i);
        submit(p, name, &a[i]);
    }
    for (int i = 9; i <= 12; i++) {
        assert_int_equal(atomic_load(&a[i].calls), 1);
        assert_int_equal(a[i].rc, BOOKS_EBUSY);
        assert_true(pthread_equal(a[i].thread, pthread_self()));
    }
    assert_int_equal(atomic_load(&answered), 4); /* the refused ones only */
    set_hold(f, false);
    wait_answers(13);
    for (int i = 0; i <= 8; i++)
        assert_int_equal(a[i].rc, 0);
    submit(p, "books/after", &a[13]);
    wait_answers(14);
    assert_int_equal(a[13].rc, 0);
    struct commit_pipeline_stats st;
    commit_pipeline_stop(p, &st);
    assert_int_equal(st.refused, 4);
    assert_int_equal(st.books_written, 10);
    assert_int_equal(f->n_names, 10);
    fake_free(f);
}

/* A create whose deadline passes while it waits behind a stalled batch is answered
 * BOOKS_EDEADLINE and never written; creates without a deadline, or with one still ahead, are. */
static void test_expired_creates_are_answered_not_written(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1024);
    static struct answer a[4];
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    set_hold(f, true);
    submit(p, "books/stalled", &a[0]);
    wait_in_batch(f);
    uint64_t now = mono_ns();
    submit_by(p, "books/short", now + 20 * 1000000u, &a[1]);      /* 20 ms */
    submit_by(p, "books/long", now + 600 * 1000000000ull, &a[2]); /* 10 min */
    submit_by(p, "books/none", 0, &a[3]);
    nanosleep(&(struct timespec){0, 60 * 1000000}, NULL); /* past the short one's deadline */
    set_hold(f, false);
    wait_answers(4);
    assert_int_equal(a[0].rc, 0);
    assert_int_equal(a[1].rc, BOOKS_EDEADLINE);
    assert_int_equal(a[2].rc, 0);
    assert_int_equal(a[3].rc, 0);
    struct commit_pipeline_stats st;
    commit_pipeline_stop(p, &st);
    assert_int_equal(st.expired, 1);
    for (size_t k = 0; k < f->n_names; k++)
        assert_string_not_equal(f->names[k], "books/short");
    assert_int_equal(f->n_names, 3);
    fake_free(f);
}

static size_t idles(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->idles;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* A poke has the committer call idle() once, with no create queued and no batch written. */
static void test_poke_calls_idle_without_a_batch(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1024);
    assert_int_equal(idles(f), 0);
    commit_pipeline_poke(p);
    for (int i = 0; i < 5000 && idles(f) == 0; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    assert_int_equal(idles(f), 1);
    nanosleep(&(struct timespec){0, 20 * 1000000}, NULL);
    assert_int_equal(idles(f), 1); /* once per poke */
    assert_int_equal(f->batches, 0);
    commit_pipeline_poke(NULL); /* a no-op */
    struct commit_pipeline_stats st;
    commit_pipeline_stop(p, &st);
    assert_int_equal(st.transactions, 0);
    fake_free(f);
}

/* A backend that finds nothing can be written refuses, from inside write_batch, the creates queued
 * behind its batch: answered at once with its error, in order, never written; later ones are
 * queued as usual. */
static void test_refuse_queued_answers_those_behind_the_batch(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct commit_pipeline *p = start(f, 1024);
    static struct answer a[6];
    memset(a, 0, sizeof a);
    atomic_store(&answered, 0);
    queue_behind_held_batch(f, p, "books/in-batch", "books/behind", a, 4);
    pthread_mutex_lock(&f->mu);
    f->refuse_queued = BOOKS_EUNAVAIL;
    pthread_mutex_unlock(&f->mu);
    set_hold(f, false);
    wait_answers(5);
    assert_int_equal(a[0].rc, 0);
    for (int i = 1; i <= 4; i++) {
        assert_int_equal(a[i].rc, BOOKS_EUNAVAIL);
        assert_int_equal(atomic_load(&a[i].calls), 1);
        if (i > 1)
            assert_true(a[i - 1].order < a[i].order);
    }
    submit(p, "books/after", &a[5]);
    wait_answers(6);
    assert_int_equal(a[5].rc, 0);
    commit_pipeline_stop(p, NULL);
    assert_int_equal(f->n_names, 2);
    for (size_t k = 0; k < f->n_names; k++)
        assert_null(strstr(f->names[k], "behind"));
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_once_in_order_after_commit),
        cmocka_unit_test(test_group_commit_and_batch_max),
        cmocka_unit_test(test_failed_batch_fails_all_then_recovers),
        cmocka_unit_test(test_stop_writes_and_answers_everything_queued),
        cmocka_unit_test(test_refusals_inline),
        cmocka_unit_test(test_queue_cap_refuses_at_once),
        cmocka_unit_test(test_expired_creates_are_answered_not_written),
        cmocka_unit_test(test_poke_calls_idle_without_a_batch),
        cmocka_unit_test(test_refuse_queued_answers_those_behind_the_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
