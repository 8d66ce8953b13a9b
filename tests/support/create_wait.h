/* create_wait.h: waiting for store_create()'s done() in unit tests (tests/support/create_wait.c).
 * store_create() answers through a callback, maybe on another thread; these helpers turn that into
 * a value a test can assert on. */
#ifndef BOOKS_TEST_CREATE_WAIT_H
#define BOOKS_TEST_CREATE_WAIT_H

#include <pthread.h>

#include "books/store.h"

/* One create's answer; `calls` lets a test check done() ran exactly once. */
struct create_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int rc; /* the books_err done() reported; 1 (not a books_err) until then */
    struct store_book *made; /* what done() reported with rc 0 (owned; create_wait_cleanup drops) */
};

/* Prepares `w` for one store_create(); pair with create_wait_cleanup(). */
void create_wait_init(struct create_wait *w);

/* Destroys the mutex and condition variable of `w` (after its done() has run). */
void create_wait_cleanup(struct create_wait *w);

/* A store_create_done_fn: `arg` is a struct create_wait *. Any thread. */
void create_wait_done(void *arg, int rc, struct store_book *made);

/* The rc of the first done() call, waiting for it if needed. */
int create_wait_rc(struct create_wait *w);

/* store_create() and wait for its answer; returns the rc done() reported. The caller keeps its
 * reference to `b`. */
int create_sync(struct store *s, struct store_book *b);

/* The same with an AIP-155 request_id (36 characters), fingerprint (32 bytes of `hash_byte`) and
 * legacy fingerprint (32 bytes of hash_byte ^ 0xff); *made (when not NULL) gets the book done()
 * reported (a reference the caller drops) or NULL. */
int create_sync_request(struct store *s, struct store_book *b, const char *request_id,
                        unsigned char hash_byte, struct store_book **made);

#endif
