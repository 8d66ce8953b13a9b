/* create_wait.c: see create_wait.h. */
#include "create_wait.h"

#include <stdio.h>
#include <string.h>

void create_wait_init(struct create_wait *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->calls = 0;
    w->rc = 1;
    w->made = NULL;
}

void create_wait_cleanup(struct create_wait *w)
{
    store_book_unref(w->made);
    w->made = NULL;
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

void create_wait_done(void *arg, int rc, struct store_book *made)
{
    struct create_wait *w = arg;

    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->rc = rc;
    if (w->made) /* a second call is a bug the tests catch through `calls`; keep no leak */
        store_book_unref(w->made);
    w->made = made;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int create_wait_rc(struct create_wait *w)
{
    int rc;

    pthread_mutex_lock(&w->mu);
    while (w->calls == 0)
        pthread_cond_wait(&w->cv, &w->mu);
    rc = w->rc;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int create_sync_request(struct store *s, struct store_book *b, const char *request_id,
                        unsigned char hash_byte, struct store_book **made)
{
    struct create_wait w;
    struct store_create_req req = {.book = b};
    int rc;

    snprintf(req.request_id, sizeof req.request_id, "%s", request_id);
    memset(req.fingerprint, hash_byte, sizeof req.fingerprint);
    memset(req.legacy_fingerprint, hash_byte ^ 0xff, sizeof req.legacy_fingerprint);
    create_wait_init(&w);
    store_create(s, &req, create_wait_done, &w);
    rc = create_wait_rc(&w);
    if (made) {
        *made = w.made;
        w.made = NULL;
    }
    create_wait_cleanup(&w);
    return rc;
}

int create_sync(struct store *s, struct store_book *b)
{
    struct create_wait w;
    int rc;

    create_wait_init(&w);
    const struct store_create_req req = {.book = b};
    store_create(s, &req, create_wait_done, &w);
    rc = create_wait_rc(&w);
    create_wait_cleanup(&w);
    return rc;
}
