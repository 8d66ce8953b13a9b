/* commit_pipeline.c: group commit (commit_pipeline.h).
 *
 * Two queues, each a mutex, a condition variable and a double buffer: submit() appends to the
 * commit queue; the committer swaps the whole queue out (producers go on filling the other
 * buffer, and in steady state nothing is allocated), has the backend write it in batches of at
 * most batch_max, and appends each finished batch (every rc set) to the answer queue; the answerer
 * swaps that out and calls each done() in order. A thread of its own for the answers lets the
 * committer begin the next transaction at once, so one batch's fsync (or round trip) overlaps the
 * previous batch's replies, which the server encodes and sends from inside done(). Creates queued
 * while a batch commits form the next batch: that is the group commit. */
#include "books/commit_pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"

#define QUEUE_INITIAL_CAP 256

struct item_vec {
    struct commit_item *items;
    size_t n, cap;
};

struct commit_pipeline {
    struct commit_backend be;
    size_t batch_max;
    size_t max_queued; /* 0: no bound */
    char name[9]; /* at most 8 characters: with "-commit", a thread name fits 15 */
    char *log_name;

    pthread_t committer;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv; /* signalled when the queue becomes non-empty or closing is set */
    struct item_vec q;   /* guarded by q_mu */
    bool closing;        /* guarded by q_mu */
    bool draining;       /* guarded by q_mu: commit_pipeline_drain() ran */
    bool poked;          /* guarded by q_mu: commit_pipeline_poke() since the last idle() */

    pthread_t answerer;
    pthread_mutex_t a_mu;
    pthread_cond_t a_cv;     /* signalled when `answers` becomes non-empty or a_closing is set */
    struct item_vec answers; /* guarded by a_mu */
    bool a_closing;          /* guarded by a_mu */

    _Atomic uint64_t transactions, commits, rollbacks, books, largest, refused, expired;
};

static void stat_max(_Atomic uint64_t *m, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(m, memory_order_relaxed);

    while (v > cur && !atomic_compare_exchange_weak_explicit(m, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

/* Calls each done() in the order of p (but of items answered already) and drops the queue's
 * references; `made` goes to done() (the book itself when the backend set none). */
static void answer(struct commit_item *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct store_book *made = p[i].made;
        p[i].made = NULL;
        if (p[i].rc == 0 && !made)
            made = store_book_ref(p[i].book);
        if (p[i].rc != 0) {
            store_book_unref(made);
            made = NULL;
        }
        if (p[i].done && !p[i].answered)
            p[i].done(p[i].arg, p[i].rc, made);
        else
            store_book_unref(made);
        store_book_unref(p[i].book);
    }
}

void commit_pipeline_submit(struct commit_pipeline *p, const struct store_create_req *req,
                            store_create_done_fn done, void *arg)
{
    struct store_book *book = req ? req->book : NULL;
    int rc = 0;

    if (!book) {
        rc = BOOKS_EINVAL;
        goto refuse;
    }
    pthread_mutex_lock(&p->q_mu);
    if (p->closing || p->draining) {
        rc = BOOKS_EUNAVAIL;
    } else if (p->max_queued && p->q.n >= p->max_queued) {
        /* A store that does not keep up (a stalled database) must not make the queue, and the
         * calls waiting in it, grow without bound: refuse now, nothing done. */
        rc = BOOKS_EBUSY;
        atomic_fetch_add_explicit(&p->refused, 1, memory_order_relaxed);
    } else if (p->q.n == p->q.cap) {
        /* Rare: the buffers keep their size, so this happens only when a burst outgrows every
         * earlier one. Allocating under the lock is the price of never losing order. */
        size_t cap = p->q.cap ? p->q.cap * 2 : QUEUE_INITIAL_CAP;
        struct commit_item *items = realloc(p->q.items, cap * sizeof(*items));

        if (items) {
            p->q.items = items;
            p->q.cap = cap;
        } else {
            rc = BOOKS_ENOMEM;
        }
    }
    if (rc == 0) {
        struct commit_item *it = &p->q.items[p->q.n++];
        *it = (struct commit_item){.book = store_book_ref(book),
                                   .done = done,
                                   .arg = arg,
                                   .deadline_ns = req->deadline_ns,
                                   .pipeline = p};
        memcpy(it->request_id, req->request_id, sizeof it->request_id);
        it->request_id[STORE_REQUEST_ID_CHARS] = '\0';
        memcpy(it->fingerprint, req->fingerprint, sizeof it->fingerprint);
        memcpy(it->legacy_fingerprint, req->legacy_fingerprint, sizeof it->legacy_fingerprint);
        /* The committer waits only on an empty queue, so only the first entry needs a wake-up. */
        if (p->q.n == 1)
            pthread_cond_signal(&p->q_cv);
    }
    pthread_mutex_unlock(&p->q_mu);
    if (rc == 0)
        return;
refuse:
    if (done)
        done(arg, rc, NULL);
}

/* Passes a finished batch to the answerer. Without memory to queue it, answers inline. */
static void hand_over(struct commit_pipeline *p, struct commit_item *items, size_t n)
{
    bool inline_answer = false;

    pthread_mutex_lock(&p->a_mu);
    if (p->answers.n + n > p->answers.cap) {
        size_t cap = p->answers.cap ? p->answers.cap : QUEUE_INITIAL_CAP;
        struct commit_item *more;

        while (cap < p->answers.n + n)
            cap *= 2;
        more = realloc(p->answers.items, cap * sizeof(*more));
        if (more) {
            p->answers.items = more;
            p->answers.cap = cap;
        } else {
            inline_answer = true;
        }
    }
    if (!inline_answer) {
        memcpy(p->answers.items + p->answers.n, items, n * sizeof(*items));
        if (p->answers.n == 0)
            pthread_cond_signal(&p->a_cv);
        p->answers.n += n;
    }
    pthread_mutex_unlock(&p->a_mu);
    if (inline_answer)
        answer(items, n);
}

void commit_pipeline_answer_now(struct commit_item *it, int rc)
{
    struct commit_item copy = *it;
    if (it->answered)
        return;
    copy.rc = rc;
    copy.book = store_book_ref(it->book); /* the copy's own, dropped when it is answered */
    it->made = NULL;                      /* the copy's now */
    it->answered = true;
    if (rc == 0 && !copy.made) /* this create's own book was written */
        atomic_fetch_add_explicit(&it->pipeline->books, 1, memory_order_relaxed);
    hand_over(it->pipeline, &copy, 1);
}

/* Waits until `q` (guarded by mu, signalled on cv) has entries or *closing is set (or *poked, when
 * not NULL), then swaps the whole of `q` with *mine, whose entries the caller has consumed
 * (mine->n == 0). Returns false once closing is set and `q` is empty; true with mine->n == 0 when
 * poked. mu is not held on entry or return. */
static bool take_all(pthread_mutex_t *mu, pthread_cond_t *cv, struct item_vec *q,
                     const bool *closing, bool *poked, struct item_vec *mine)
{
    struct item_vec t;

    pthread_mutex_lock(mu);
    while (q->n == 0 && !*closing && !(poked && *poked))
        pthread_cond_wait(cv, mu);
    if (q->n == 0 && poked && *poked && !*closing) {
        *poked = false;
        pthread_mutex_unlock(mu);
        return true;
    }
    if (q->n == 0) {
        pthread_mutex_unlock(mu);
        return false;
    }
    t = *q;
    *q = *mine;
    *mine = t;
    pthread_mutex_unlock(mu);
    return true;
}

static void *answerer_main(void *arg)
{
    struct commit_pipeline *p = arg;
    struct item_vec mine = {NULL, 0, 0};
    char name[24];

    snprintf(name, sizeof name, "%s-answer", p->name);
    pthread_setname_np(pthread_self(), name);
    /* Ends once closing: the committer (already joined then) hands over no more. */
    while (take_all(&p->a_mu, &p->a_cv, &p->answers, &p->a_closing, NULL, &mine)) {
        answer(mine.items, mine.n);
        mine.n = 0;
    }
    free(mine.items);
    return NULL;
}

/* One transaction for items[0..n), then hands the batch to the answerer. Committer only. */
static void commit_batch(struct commit_pipeline *p, struct commit_item *items, size_t n)
{
    uint64_t written = 0;
    int rc;

    atomic_fetch_add_explicit(&p->transactions, 1, memory_order_relaxed);
    stat_max(&p->largest, n);
    for (size_t i = 0; i < n; i++)
        items[i].rc = 0;
    rc = p->be.write_batch(p->be.self, items, n);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            written += items[i].rc == 0 && !items[i].answered && !items[i].made;
        atomic_fetch_add_explicit(&p->commits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->books, written, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&p->rollbacks, 1, memory_order_relaxed);
        log_msg(LOG_WARNING, "store \"%s\": a transaction of %zu creates failed and was rolled "
                "back: %s", p->log_name, n, books_err_name(rc));
        for (size_t i = 0; i < n; i++)
            items[i].rc = rc;
    }
    hand_over(p, items, n);
}

/* Answers BOOKS_EDEADLINE, in order with the rest, for every create of v whose caller's deadline
 * has passed while it waited (it was never written: nothing is lost), and keeps the others. */
static void drop_expired(struct commit_pipeline *p, struct item_vec *v)
{
    uint64_t now = store_now_ns();
    size_t kept = 0, first = v->n;

    for (size_t i = 0; i < v->n; i++)
        if (v->items[i].deadline_ns && v->items[i].deadline_ns <= now) {
            first = i;
            break;
        }
    if (first == v->n)
        return;
    kept = first;
    for (size_t i = first; i < v->n; i++) {
        struct commit_item *it = &v->items[i];
        if (it->deadline_ns && it->deadline_ns <= now) {
            it->rc = BOOKS_EDEADLINE;
            atomic_fetch_add_explicit(&p->expired, 1, memory_order_relaxed);
            hand_over(p, it, 1);
        } else {
            v->items[kept++] = *it;
        }
    }
    v->n = kept;
}

static void *committer_main(void *arg)
{
    struct commit_pipeline *p = arg;
    struct item_vec batch = {NULL, 0, 0};
    char name[24];

    snprintf(name, sizeof name, "%s-commit", p->name);
    pthread_setname_np(pthread_self(), name);
    /* Takes the whole queue each time; creates arriving meanwhile fill the other buffer. Ends once
     * closing is set and everything queued has been committed and handed over. */
    while (take_all(&p->q_mu, &p->q_cv, &p->q, &p->closing, &p->poked, &batch)) {
        if (batch.n == 0) { /* poked */
            if (p->be.idle)
                p->be.idle(p->be.self);
            continue;
        }
        drop_expired(p, &batch);
        for (size_t off = 0; off < batch.n; off += p->batch_max) {
            size_t k = batch.n - off < p->batch_max ? batch.n - off : p->batch_max;

            commit_batch(p, batch.items + off, k);
        }
        batch.n = 0;
        if (p->be.idle)
            p->be.idle(p->be.self);
    }
    free(batch.items);
    return NULL;
}

static void destroy(struct commit_pipeline *p)
{
    free(p->q.items);
    free(p->answers.items);
    pthread_cond_destroy(&p->q_cv);
    pthread_mutex_destroy(&p->q_mu);
    pthread_cond_destroy(&p->a_cv);
    pthread_mutex_destroy(&p->a_mu);
    free(p->log_name);
    free(p);
}

int commit_pipeline_start(const struct commit_backend *backend, size_t batch_max, size_t max_queued,
                          const char *name, const char *log_name, struct commit_pipeline **out)
{
    struct commit_pipeline *p;

    if (!backend || !backend->write_batch || batch_max < 1 || !name || strlen(name) > 8 ||
        !log_name)
        return BOOKS_EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return BOOKS_ENOMEM;
    p->log_name = strdup(log_name);
    if (!p->log_name) {
        free(p);
        return BOOKS_ENOMEM;
    }
    p->be = *backend;
    p->batch_max = batch_max;
    p->max_queued = max_queued;
    snprintf(p->name, sizeof p->name, "%s", name);
    pthread_mutex_init(&p->q_mu, NULL);
    pthread_cond_init(&p->q_cv, NULL);
    pthread_mutex_init(&p->a_mu, NULL);
    pthread_cond_init(&p->a_cv, NULL);
    if (pthread_create(&p->answerer, NULL, answerer_main, p) != 0) {
        destroy(p);
        return BOOKS_EIO;
    }
    if (pthread_create(&p->committer, NULL, committer_main, p) != 0) {
        pthread_mutex_lock(&p->a_mu);
        p->a_closing = true;
        pthread_cond_signal(&p->a_cv);
        pthread_mutex_unlock(&p->a_mu);
        pthread_join(p->answerer, NULL);
        destroy(p);
        return BOOKS_EIO;
    }
    *out = p;
    return 0;
}

void commit_pipeline_poke(struct commit_pipeline *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->q_mu);
    p->poked = true;
    pthread_cond_signal(&p->q_cv);
    pthread_mutex_unlock(&p->q_mu);
}

void commit_pipeline_refuse_queued(struct commit_pipeline *p, int rc)
{
    struct item_vec left;
    if (!p)
        return;
    pthread_mutex_lock(&p->q_mu);
    left = p->q;
    p->q = (struct item_vec){NULL, 0, 0};
    pthread_mutex_unlock(&p->q_mu);
    for (size_t i = 0; i < left.n; i++)
        left.items[i].rc = rc;
    if (left.n)
        hand_over(p, left.items, left.n);
    free(left.items);
}

void commit_pipeline_drain(struct commit_pipeline *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->q_mu);
    p->draining = true; /* from here on the queue only empties */
    pthread_mutex_unlock(&p->q_mu);
    commit_pipeline_refuse_queued(p, BOOKS_EUNAVAIL);
}

void commit_pipeline_stop(struct commit_pipeline *p, struct commit_pipeline_stats *final)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->q_mu);
    p->closing = true;
    pthread_cond_signal(&p->q_cv);
    pthread_mutex_unlock(&p->q_mu);
    /* The committer writes everything queued and hands it over before it returns; then the
     * answerer calls the last done()s. */
    if (pthread_join(p->committer, NULL) != 0)
        abort();
    pthread_mutex_lock(&p->a_mu);
    p->a_closing = true;
    pthread_cond_signal(&p->a_cv);
    pthread_mutex_unlock(&p->a_mu);
    if (pthread_join(p->answerer, NULL) != 0)
        abort();
    if (final)
        commit_pipeline_stats(p, final);
    destroy(p);
}

void commit_pipeline_stats(const struct commit_pipeline *p, struct commit_pipeline_stats *out)
{
    out->transactions = atomic_load_explicit(&p->transactions, memory_order_relaxed);
    out->commits = atomic_load_explicit(&p->commits, memory_order_relaxed);
    out->rollbacks = atomic_load_explicit(&p->rollbacks, memory_order_relaxed);
    out->books_written = atomic_load_explicit(&p->books, memory_order_relaxed);
    out->largest_batch = atomic_load_explicit(&p->largest, memory_order_relaxed);
    out->refused = atomic_load_explicit(&p->refused, memory_order_relaxed);
    out->expired = atomic_load_explicit(&p->expired, memory_order_relaxed);
}
