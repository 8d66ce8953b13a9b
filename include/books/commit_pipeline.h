/* commit_pipeline.h: group commit for durable store backends (sqlite:, postgresql:, firestore:).
 * Creates are queued by any thread without waiting for I/O; one committer thread takes everything
 * queued and has the backend write it in as few transactions as possible (at most batch_max
 * creates each: one fsync, or one round trip, for the lot); an answerer thread calls each
 * create's done() once it is settled, so the next transaction begins while the previous one's
 * answers are being sent. The pipeline knows nothing about SQL, gRPC or protobuf: a backend
 * supplies one function that writes a batch.
 *
 * Order of answers: done() runs in the order creates are handed to the answerer. A batch's
 * creates go over in queue order once write_batch returns; before that, a create whose deadline
 * passed while it was queued (never written), and one the backend settles early
 * (commit_pipeline_answer_now()), go over as soon as that happens, ahead of the batch.
 *
 * Thread safety: commit_pipeline_submit() from any thread at once; commit_pipeline_stats() from
 * any thread; commit_pipeline_start()/stop() from one thread, once each. The backend's functions
 * run on the committer thread only, one call at a time. done() callbacks run on the answerer
 * thread, never with a lock of the pipeline held; two exceptions: inline in submit() when the
 * pipeline refuses the create, and on the committer thread when the answer queue cannot grow
 * (out of memory). */
#ifndef BOOKS_COMMIT_PIPELINE_H
#define BOOKS_COMMIT_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "books/store.h"

/* One queued create as the backend sees it. */
struct commit_item {
    struct store_book *book;   /* the queue's reference; the backend only reads it */
    int rc;                    /* set by write_batch: 0 (written) or BOOKS_EEXIST (name taken) */
    /* Set by write_batch with rc 0 when the create's request_id was seen before: a reference to
     * the book that earlier request made, which the pipeline hands to done(). NULL: `book`. */
    struct store_book *made;
    char request_id[STORE_REQUEST_ID_CHARS + 1]; /* store_create_req's, "" for none */
    uint8_t fingerprint[STORE_FINGERPRINT_BYTES];        /* store_create_req's */
    uint8_t legacy_fingerprint[STORE_FINGERPRINT_BYTES]; /* store_create_req's */
    store_create_done_fn done; /* the pipeline's: who to tell */
    void *arg;
    uint64_t deadline_ns;      /* the caller's (store_create_req); 0: none. A backend bounds what
                                * it does for this create by it: writing, and learning the
                                * outcome of a write whose reply was lost */
    struct commit_pipeline *pipeline; /* the pipeline's own: see commit_pipeline_answer_now() */
    bool answered;             /* the pipeline's own: answered before its batch ended */
};

/* For a backend whose write_batch takes several transactions (a create retried alone, callers
 * whose deadline passed while the others go again): answers `it` with `rc` now, through the
 * answerer, instead of when write_batch returns; the pipeline then leaves it alone (its rc is no
 * longer read). Committer thread, inside write_batch, once per item at most. */
void commit_pipeline_answer_now(struct commit_item *it, int rc);

/* What a backend supplies. */
struct commit_backend {
    void *self;
    /* Writes items[0..n) (n >= 1), in one transaction or, when one create makes a transaction
     * fail, in as many as it takes for that create to fail alone. A name that is taken, by an
     * earlier book or by an earlier item of the same batch, fails that item alone: its rc is
     * BOOKS_EEXIST and the rest go on; so may any other error of one item (BOOKS_EDEADLINE: its
     * deadline passed before it was written). Returns 0 once every item's rc is set (rc 0: its
     * transaction committed durably), or a negative enum books_err for the whole batch after
     * rolling it back completely (nothing of it visible, rc values ignored): BOOKS_ENOSPC (full),
     * BOOKS_EIO / BOOKS_EUNAVAIL (retry later), BOOKS_ENOMEM, ... Committer thread only. */
    int (*write_batch)(void *self, struct commit_item *items, size_t n);
    /* Optional (may be NULL): called between batches, after a batch was handed to the answerer
     * and while the next one gathers, e.g. for a checkpoint, and once after each
     * commit_pipeline_poke() while no batch is waiting (e.g. to reconnect before the next
     * create). Committer thread only. */
    void (*idle)(void *self);
};

/* Counters since the pipeline started. */
struct commit_pipeline_stats {
    uint64_t transactions;  /* write_batch calls: one per batch */
    uint64_t commits;       /* of those, committed */
    uint64_t rollbacks;     /* of those, failed (every create in it failed) */
    uint64_t books_written; /* items committed with rc 0 */
    uint64_t largest_batch; /* most creates in one transaction */
    uint64_t refused;       /* submits refused because max_queued were queued */
    uint64_t expired;       /* creates whose deadline passed while queued (never written) */
};

struct commit_pipeline;

/* Starts the committer and answerer threads (named NAME-commit and NAME-answer, `name` at most 8
 * characters, for top -H, perf and gdb). `backend` is copied; its `self` must outlive the
 * pipeline. batch_max >= 1 bounds the creates per transaction (1: one transaction per create).
 * max_queued bounds the creates queued and not yet written (0: no bound). `log_name` names the
 * store in log lines (e.g. its path; copied). Returns 0, BOOKS_EINVAL, BOOKS_ENOMEM, or BOOKS_EIO
 * when a thread cannot start. */
int commit_pipeline_start(const struct commit_backend *backend, size_t batch_max, size_t max_queued,
                          const char *name, const char *log_name, struct commit_pipeline **out);

/* Queues a create of req->book (the pipeline takes its own reference; the request id and
 * fingerprints are copied) and returns at once. done(arg, rc, made) is called exactly once (store.h says what `made`
 * is): 0 once the book is committed, BOOKS_EEXIST, the item's own error, the batch's
 * error, BOOKS_EDEADLINE when req->deadline_ns passed while it was still queued (it was never
 * written), or, inline, BOOKS_EBUSY when max_queued creates are queued already, BOOKS_EUNAVAIL
 * after commit_pipeline_stop() began, BOOKS_ENOMEM when the queue cannot grow, BOOKS_EINVAL for a
 * NULL book. */
void commit_pipeline_submit(struct commit_pipeline *p, const struct store_create_req *req,
                            store_create_done_fn done, void *arg);

/* Shutdown is near: every create still queued (not yet being written) is answered BOOKS_EUNAVAIL
 * now (nothing of it was written), and so is every later submit; a batch being written is
 * answered when its transaction ends. NULL is a no-op. Any thread. */
void commit_pipeline_drain(struct commit_pipeline *p);

/* Has the committer call the backend's idle() soon, even while no create is queued: a backend
 * whose connection came back within reach reconnects before the next create needs it. Never
 * blocks, calls nothing of the backend's itself. NULL is a no-op. Any thread. */
void commit_pipeline_poke(struct commit_pipeline *p);

/* For a backend that knows creates cannot be written for now (no database to write to): answers
 * every create still queued, not yet taken by the committer, with rc now, in order, through the
 * answerer (nothing of them was written); later submits are queued as usual. Any thread (a
 * backend calls it from inside write_batch). NULL is a no-op. */
void commit_pipeline_refuse_queued(struct commit_pipeline *p, int rc);

/* Refuses new creates, lets the committer write everything queued, lets the answerer call every
 * done(), joins both threads and frees the pipeline. Blocks until all of that is done (as long as
 * the backend's write_batch takes). When `final` is not NULL it gets the counters as they ended.
 * NULL `p` is a no-op (and leaves `final` alone). */
void commit_pipeline_stop(struct commit_pipeline *p, struct commit_pipeline_stats *final);

/* Copies the counters (each read atomically). */
void commit_pipeline_stats(const struct commit_pipeline *p, struct commit_pipeline_stats *out);

#endif
