/* commit_pipeline.h: group commit for durable store backends (sqlite:, postgresql:). Creates are
 * queued by any thread without waiting for I/O; one committer thread takes everything queued and
 * has the backend write it in as few transactions as possible (at most batch_max creates each:
 * one fsync, or one round trip, for the lot); only once a transaction has committed does an
 * answerer thread call each create's done(), in queue order. The next transaction begins while
 * the previous one's answers are being sent. The pipeline knows nothing about SQL, gRPC or
 * protobuf: a backend supplies one function that writes a batch in one transaction.
 *
 * Thread safety: commit_pipeline_submit() from any thread at once; commit_pipeline_stats() from
 * any thread; commit_pipeline_start()/stop() from one thread, once each. The backend's functions
 * run on the committer thread only, one call at a time. done() callbacks run on the answerer
 * thread (or inline in submit() when the pipeline refuses the create), never with a lock of the
 * pipeline held. */
#ifndef BOOKS_COMMIT_PIPELINE_H
#define BOOKS_COMMIT_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "books/store.h"

/* One queued create as the backend sees it. */
struct commit_item {
    struct store_book *book;   /* the queue's reference; the backend only reads it */
    int rc;                    /* set by write_batch: 0 (written) or BOOKS_EEXIST (name taken) */
    store_create_done_fn done; /* the pipeline's: who to tell */
    void *arg;
};

/* What a backend supplies. */
struct commit_backend {
    void *self;
    /* Writes items[0..n) (n >= 1) in one transaction. A name that is taken, by an earlier book
     * or by an earlier item of the same batch, fails that item alone: its rc is BOOKS_EEXIST and
     * the rest go on. Returns 0 once the transaction has committed durably (every rc set), or a
     * negative enum books_err for the whole batch after rolling it back completely (nothing of it
     * visible, rc values ignored): BOOKS_ENOSPC (full), BOOKS_EIO / BOOKS_EUNAVAIL (retry later),
     * BOOKS_ENOMEM, ... Committer thread only. */
    int (*write_batch)(void *self, struct commit_item *items, size_t n);
    /* Optional (may be NULL): called between batches, after a batch was handed to the answerer
     * and while the next one gathers, e.g. for a checkpoint. Committer thread only. */
    void (*idle)(void *self);
};

/* Counters since the pipeline started. */
struct commit_pipeline_stats {
    uint64_t transactions;  /* write_batch calls: one per batch */
    uint64_t commits;       /* of those, committed */
    uint64_t rollbacks;     /* of those, failed (every create in it failed) */
    uint64_t books_written; /* items committed with rc 0 */
    uint64_t largest_batch; /* most creates in one transaction */
};

struct commit_pipeline;

/* Starts the committer and answerer threads (named NAME-commit and NAME-answer, `name` at most 8
 * characters, for top -H, perf and gdb). `backend` is copied; its `self` must outlive the
 * pipeline. batch_max >= 1 bounds the creates per transaction (1: one transaction per create).
 * `log_name` names the store in log lines (e.g. its path; copied). Returns 0, BOOKS_EINVAL,
 * BOOKS_ENOMEM, or BOOKS_EIO when a thread cannot start. */
int commit_pipeline_start(const struct commit_backend *backend, size_t batch_max, const char *name,
                          const char *log_name, struct commit_pipeline **out);

/* Queues a create of `book` (the pipeline takes its own reference) and returns at once. done(arg,
 * rc) is called exactly once: 0 once the book is committed, BOOKS_EEXIST, the batch's error, or,
 * inline, BOOKS_EUNAVAIL after commit_pipeline_stop() began, BOOKS_ENOMEM when the queue cannot
 * grow, BOOKS_EINVAL for a NULL book. */
void commit_pipeline_submit(struct commit_pipeline *p, struct store_book *book,
                            store_create_done_fn done, void *arg);

/* Refuses new creates, lets the committer write everything queued, lets the answerer call every
 * done(), joins both threads and frees the pipeline. Blocks until all of that is done (as long as
 * the backend's write_batch takes). When `final` is not NULL it gets the counters as they ended.
 * NULL `p` is a no-op (and leaves `final` alone). */
void commit_pipeline_stop(struct commit_pipeline *p, struct commit_pipeline_stats *final);

/* Copies the counters (each read atomically). */
void commit_pipeline_stats(const struct commit_pipeline *p, struct commit_pipeline_stats *out);

#endif
