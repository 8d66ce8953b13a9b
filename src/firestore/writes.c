/* writes.c: the commit pipeline's backend for the firestore: store. A batch is written in rounds,
 * until every create is settled or its time is up:
 *   - the creates without a request id go out as one BatchWrite, one write each with the
 *     precondition exists: false, so each gets its own status (BatchWrite is not atomic: a taken
 *     name fails only its create). Firestore refuses a request that writes one document twice, so
 *     a second create of a name already in the round waits for the next round;
 *   - the creates with a request id write each its book and its request document, both with
 *     exists: false, in a Commit (atomic: a book and its request id are kept together or not at
 *     all): one Commit for them all, beside the BatchWrite; when it meets a taken name (atomic, so
 *     nothing of it was written) each goes again in a Commit of its own, at once;
 *   - a write refused because a document exists is looked up: the request document tells a retry
 *     (same fingerprint: answered with the book that request made) from a reused id
 *     (BOOKS_EREUSED); a book whose write_id is this create's own is this create's write, which
 *     an earlier round made before its reply was lost; anything else is BOOKS_EEXIST;
 *   - a call whose outcome is unknown (the connection broke, the deadline passed, Firestore said
 *     UNAVAILABLE or ABORTED after it may have applied the write) goes again in the next round:
 *     the preconditions make that safe, and the lookup above settles a write the lost reply had
 *     made.
 * Creates still unsettled at their deadline (or after timeout_ms) are answered BOOKS_EUNKNOWN when
 * a round may have written them, else BOOKS_EUNAVAIL. */
#include "fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"
#include "books/status.h"
#include "google/protobuf/timestamp.pb-c.h"

enum state { TO_SEND, TO_CHECK, SETTLED };

struct entry {
    struct commit_item *it;
    enum state state;
    bool maybe_written; /* a round's call ended without telling */
    char write_id[33];
    char doc[FS_NAME_BYTES];
};

/* The calls of one round, and the committer thread waiting for them. */
struct round {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t left;
};

struct commit_call {
    struct round *round;
    struct entry *e;        /* a Commit's create; NULL for the BatchWrite and a shared Commit */
    bool batch_write;       /* the BatchWrite: its response is decoded */
    struct entry **batch;   /* the BatchWrite's creates, in write order */
    size_t n_batch;
    struct fs_status st;
    Google__Firestore__V1__BatchWriteResponse *bw; /* decoded, in `arena` */
    struct arena arena;
    unsigned char buf[512];
};

static void random_hex(char out[33])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void call_done(void *arg, const struct fs_status *st, grpc_byte_buffer *response)
{
    struct commit_call *cc = arg;
    cc->st = *st;
    if (st->code == GRPC_STATUS_OK && cc->batch_write) {
        ProtobufCMessage *m = NULL;
        if (fs_decode(response, &google__firestore__v1__batch_write_response__descriptor,
                      &cc->arena, &m) == 0)
            cc->bw = (Google__Firestore__V1__BatchWriteResponse *)m;
        else {
            cc->st.code = GRPC_STATUS_INTERNAL;
            snprintf(cc->st.message, sizeof cc->st.message,
                     "Firestore's BatchWriteResponse does not decode");
        }
    }
    pthread_mutex_lock(&cc->round->mu);
    if (--cc->round->left == 0)
        pthread_cond_signal(&cc->round->cv);
    pthread_mutex_unlock(&cc->round->mu);
}

/* True for a status after which the write may or may not have been applied. A call that never
 * left (no connection: "failed to connect") did not write. */
static bool unknown_outcome(const struct fs_status *st)
{
    switch (st->code) {
    case GRPC_STATUS_UNAVAILABLE:
        return strstr(st->message, "failed to connect") == NULL;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_UNKNOWN:
    case GRPC_STATUS_INTERNAL:
    case GRPC_STATUS_CANCELLED:
        return true;
    default:
        return false;
    }
}

/* Goes again next round (the call did not settle it), or is settled now with its error. */
static bool retryable(grpc_status_code code)
{
    return code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_DEADLINE_EXCEEDED ||
           code == GRPC_STATUS_ABORTED || code == GRPC_STATUS_UNKNOWN ||
           code == GRPC_STATUS_INTERNAL;
}

static void settle(struct fs_store *st, struct entry *e, int rc)
{
    (void)st;
    e->state = SETTLED;
    e->it->rc = rc; /* answered by the pipeline when the batch returns */
}

/* One write's status: settles `e`, or marks it to check or to send again. */
static void take_status(struct fs_store *st, struct entry *e, const struct fs_status *s)
{
    if (s->code == GRPC_STATUS_OK) {
        settle(st, e, 0);
    } else if (s->code == GRPC_STATUS_ALREADY_EXISTS ||
               s->code == GRPC_STATUS_FAILED_PRECONDITION) {
        e->state = TO_CHECK;
    } else if (retryable(s->code) || s->code == GRPC_STATUS_CANCELLED) {
        if (unknown_outcome(s))
            e->maybe_written = true;
        e->state = TO_SEND;
        if (s->code == GRPC_STATUS_CANCELLED) /* the store is draining: no more rounds */
            settle(st, e, e->maybe_written ? BOOKS_EUNKNOWN : BOOKS_EUNAVAIL);
    } else {
        log_msg(LOG_WARNING, "Firestore %s: a create of %s failed: %s (%s)", st->shown,
                e->it->book->name, rpc_status_name(s->code), s->message);
        settle(st, e, fs_status_error(s->code));
    }
}

/* True when a request document's expire_at has passed. */
static bool expired(const Google__Firestore__V1__Document *d)
{
    for (size_t i = 0; i < d->n_fields; i++) {
        const Google__Firestore__V1__Value *v = d->fields[i]->value;
        if (strcmp(d->fields[i]->key, "expire_at") == 0 && v &&
            v->value_type_case == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_TIMESTAMP_VALUE &&
            v->timestamp_value) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            return v->timestamp_value->seconds < (int64_t)now.tv_sec;
        }
    }
    return false;
}

/* Deletes request document d if it has not changed since it was read. */
static void forget(struct fs_store *st, const Google__Firestore__V1__Document *d,
                   uint64_t deadline_ns)
{
    unsigned char buf[1024];
    struct arena a;
    struct fs_status s;
    ProtobufCMessage *m = NULL;
    Google__Firestore__V1__Precondition pre = GOOGLE__FIRESTORE__V1__PRECONDITION__INIT;
    Google__Firestore__V1__Write w = GOOGLE__FIRESTORE__V1__WRITE__INIT;
    Google__Firestore__V1__Write *writes[1] = {&w};
    Google__Firestore__V1__CommitRequest c = GOOGLE__FIRESTORE__V1__COMMIT_REQUEST__INIT;

    if (!d->update_time)
        return;
    pre.condition_type_case = GOOGLE__FIRESTORE__V1__PRECONDITION__CONDITION_TYPE_UPDATE_TIME;
    pre.update_time = d->update_time;
    w.operation_case = GOOGLE__FIRESTORE__V1__WRITE__OPERATION_DELETE;
    w.delete_ = d->name;
    w.current_document = &pre;
    c.database = st->names.database;
    c.n_writes = 1;
    c.writes = writes;
    arena_init(&a, buf, sizeof buf);
    (void)fs_unary_wait(st->client, FS_COMMIT, &c.base, deadline_ns,
                        &google__firestore__v1__commit_response__descriptor, &a, &m, &s);
    arena_cleanup(&a);
}

/* Looks up why a create's write was refused (see the top). Leaves e TO_SEND when it cannot tell
 * yet. */
static void check(struct fs_store *st, struct entry *e, uint64_t deadline_ns)
{
    struct commit_item *it = e->it;
    unsigned char buf[4096];
    struct arena a;
    struct fs_status s;
    ProtobufCMessage *m = NULL;
    Google__Firestore__V1__GetDocumentRequest req = GOOGLE__FIRESTORE__V1__GET_DOCUMENT_REQUEST__INIT;
    char name[FS_NAME_BYTES];

    arena_init(&a, buf, sizeof buf);
    if (it->request_id[0] && fs_request_doc(&st->names, it->request_id, name, sizeof name)) {
        req.name = name;
        grpc_status_code code = fs_unary_wait(st->client, FS_GET_DOCUMENT, &req.base, deadline_ns,
                                              &google__firestore__v1__document__descriptor, &a,
                                              &m, &s);
        if (code == GRPC_STATUS_OK && expired((void *)m)) {
            /* Kept past its retention (Firestore's TTL deletes within a day of expire_at): the
             * id is forgotten, as store.h says. Deleted only if unchanged since read, then the
             * create goes again. */
            forget(st, (void *)m, deadline_ns);
            e->state = TO_SEND;
            arena_cleanup(&a);
            return;
        }
        if (code == GRPC_STATUS_OK) {
            const Google__Firestore__V1__Document *d = (void *)m;
            const ProtobufCBinaryData *fp = fs_doc_bytes(d, "request_fingerprint");
            const ProtobufCBinaryData *legacy = fs_doc_bytes(d, "request_hash");
            const char *book = fs_doc_string(d, "book"), *wid = fs_doc_string(d, "write_id");
            if ((!fp && !legacy) || !book) {
                settle(st, e, BOOKS_ECORRUPT);
            } else if (!store_request_matches(it->fingerprint, it->legacy_fingerprint, fp ? fp->data : NULL, fp ? fp->len : 0,
                                              legacy ? legacy->data : NULL,
                                              legacy ? legacy->len : 0)) {
                settle(st, e, BOOKS_EREUSED);
            } else if (wid && strcmp(wid, e->write_id) == 0) {
                settle(st, e, 0); /* this create's own write, whose reply was lost */
            } else {
                /* A retry: answered with the book the first request made. */
                ProtobufCMessage *bm = NULL;
                char bdoc[FS_NAME_BYTES];
                if (!fs_book_doc(&st->names, book, bdoc, sizeof bdoc)) {
                    settle(st, e, BOOKS_ECORRUPT);
                } else {
                    req.name = bdoc;
                    code = fs_unary_wait(st->client, FS_GET_DOCUMENT, &req.base, deadline_ns,
                                         &google__firestore__v1__document__descriptor, &a, &bm, &s);
                    struct store_book *made = NULL;
                    int rc = code == GRPC_STATUS_OK
                                 ? fs_book_from_doc(&st->names, (void *)bm, &made, NULL)
                                 : fs_status_error(code);
                    if (rc == 0) {
                        it->made = made;
                        settle(st, e, 0);
                    } else if (!retryable(code)) {
                        settle(st, e, rc == BOOKS_ENOTFOUND ? BOOKS_ECORRUPT : rc);
                    } else {
                        e->state = TO_SEND;
                    }
                }
            }
            arena_cleanup(&a);
            return;
        }
        if (code != GRPC_STATUS_NOT_FOUND) {
            e->state = retryable(code) ? TO_SEND : (settle(st, e, fs_status_error(code)), SETTLED);
            arena_cleanup(&a);
            return;
        }
        /* No request document: the book's name is what was taken. */
    }
    req.name = e->doc;
    grpc_status_code code = fs_unary_wait(st->client, FS_GET_DOCUMENT, &req.base, deadline_ns,
                                          &google__firestore__v1__document__descriptor, &a, &m, &s);
    if (code == GRPC_STATUS_OK) {
        const char *wid = fs_doc_string((void *)m, "write_id");
        settle(st, e, wid && strcmp(wid, e->write_id) == 0 ? 0 : BOOKS_EEXIST);
    } else if (code == GRPC_STATUS_NOT_FOUND || retryable(code)) {
        e->state = TO_SEND; /* gone again, or no answer: the next round tells */
    } else {
        settle(st, e, fs_status_error(code));
    }
    arena_cleanup(&a);
}

/* True when the creates of `v` may share one Commit: no document written twice (Firestore refuses
 * such a request whole), and within its 500 writes. */
static bool distinct(struct entry **v, size_t n)
{
    if (n < 2 || 2 * n > FS_MAX_WRITES)
        return false;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(v[i]->doc, v[j]->doc) == 0 ||
                strcmp(v[i]->it->request_id, v[j]->it->request_id) == 0)
                return false;
    return true;
}

/* Sends one round: a BatchWrite of `plain`, and for `ided` one Commit of them all when `together`
 * (atomic: one taken name fails it, *conflict is set and they go again one Commit each), else a
 * Commit each; waits for all. */
static void send_round(struct fs_store *st, struct entry **plain, size_t n_plain,
                       struct entry **ided, size_t n_ided, bool together, bool *conflict,
                       uint64_t deadline_ns)
{
    struct round r = {.left = (n_plain ? 1 : 0) + (together ? 1 : n_ided)};
    struct commit_call *calls = calloc(n_ided + 1, sizeof *calls);
    unsigned char buf[8192];
    struct arena a;

    if (!calls) {
        for (size_t i = 0; i < n_plain; i++)
            settle(st, plain[i], BOOKS_ENOMEM);
        for (size_t i = 0; i < n_ided; i++)
            settle(st, ided[i], BOOKS_ENOMEM);
        return;
    }
    arena_init(&a, buf, sizeof buf);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    if (n_plain) {
        Google__Firestore__V1__Write **w = arena_alloc(&a, n_plain * sizeof *w);
        Google__Firestore__V1__BatchWriteRequest req =
            GOOGLE__FIRESTORE__V1__BATCH_WRITE_REQUEST__INIT;
        size_t nw = 0;
        for (size_t i = 0; w && i < n_plain; i++) {
            struct fs_create_writes cw;
            int rc = fs_build_create(&st->names, plain[i]->it, plain[i]->write_id,
                                     st->request_ttl_s, &a, &cw);
            if (rc != 0)
                settle(st, plain[i], rc);
            else
                plain[nw] = plain[i], w[nw++] = cw.book;
        }
        calls[0].round = &r;
        calls[0].batch_write = true;
        calls[0].batch = plain;
        calls[0].n_batch = nw;
        arena_init(&calls[0].arena, calls[0].buf, sizeof calls[0].buf);
        req.database = st->names.database;
        req.n_writes = nw;
        req.writes = w;
        if (!w || nw == 0) {
            r.left--;
            calls[0].n_batch = 0;
        } else {
            fs_unary(st->client, FS_BATCH_WRITE, &req.base, deadline_ns, call_done, &calls[0]);
        }
    }
    if (together) {
        struct commit_call *cc = &calls[1];
        Google__Firestore__V1__Write **w = arena_alloc(&a, 2 * n_ided * sizeof *w);
        Google__Firestore__V1__CommitRequest req = GOOGLE__FIRESTORE__V1__COMMIT_REQUEST__INIT;
        size_t nw = 0, ne = 0;
        for (size_t i = 0; w && i < n_ided; i++) {
            struct fs_create_writes cw;
            int rc = fs_build_create(&st->names, ided[i]->it, ided[i]->write_id,
                                     st->request_ttl_s, &a, &cw);
            if (rc != 0) {
                settle(st, ided[i], rc);
                continue;
            }
            ided[ne++] = ided[i];
            w[nw++] = cw.book;
            w[nw++] = cw.request;
        }
        cc->round = &r;
        cc->batch = ided;
        cc->n_batch = ne;
        arena_init(&cc->arena, cc->buf, sizeof cc->buf);
        req.database = st->names.database;
        req.n_writes = nw;
        req.writes = w;
        if (!w || ne == 0)
            r.left--;
        else
            fs_unary(st->client, FS_COMMIT, &req.base, deadline_ns, call_done, cc);
        n_ided = 0; /* none alone */
    }
    for (size_t i = 0; i < n_ided; i++) {
        struct commit_call *cc = &calls[i + 1];
        struct fs_create_writes cw;
        Google__Firestore__V1__Write *w[2];
        Google__Firestore__V1__CommitRequest req = GOOGLE__FIRESTORE__V1__COMMIT_REQUEST__INIT;
        cc->round = &r;
        cc->e = ided[i];
        arena_init(&cc->arena, cc->buf, sizeof cc->buf);
        int rc = fs_build_create(&st->names, ided[i]->it, ided[i]->write_id, st->request_ttl_s,
                                 &a, &cw);
        if (rc != 0) {
            settle(st, ided[i], rc);
            cc->e = NULL;
            pthread_mutex_lock(&r.mu);
            r.left--;
            pthread_mutex_unlock(&r.mu);
            continue;
        }
        w[0] = cw.book;
        w[1] = cw.request;
        req.database = st->names.database;
        req.n_writes = 2;
        req.writes = w;
        fs_unary(st->client, FS_COMMIT, &req.base, deadline_ns, call_done, cc);
    }
    pthread_mutex_lock(&r.mu);
    while (r.left > 0) /* each call's deadline bounds this */
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);

    /* The BatchWrite: a status per write, or the call's own for all. */
    if (n_plain && calls[0].n_batch) {
        struct commit_call *cc = &calls[0];
        for (size_t i = 0; i < cc->n_batch; i++) {
            struct fs_status s = cc->st;
            if (cc->st.code == GRPC_STATUS_OK) {
                if (!cc->bw || i >= cc->bw->n_status) {
                    s.code = GRPC_STATUS_INTERNAL;
                    snprintf(s.message, sizeof s.message, "BatchWrite answered no status");
                } else {
                    s.code = (grpc_status_code)cc->bw->status[i]->code;
                    snprintf(s.message, sizeof s.message, "%s",
                             cc->bw->status[i]->message ? cc->bw->status[i]->message : "");
                }
            }
            take_status(st, cc->batch[i], &s);
        }
        arena_cleanup(&cc->arena);
    }
    if (together && calls[1].n_batch) {
        struct commit_call *cc = &calls[1];
        if (cc->st.code == GRPC_STATUS_ALREADY_EXISTS ||
            cc->st.code == GRPC_STATUS_FAILED_PRECONDITION) {
            *conflict = true; /* nothing of it was written: each goes again alone */
            log_msg(LOG_INFO,
                    "Firestore %s: a Commit of %zu creates met a taken name (%s); each goes "
                    "again in a Commit of its own",
                    st->shown, cc->n_batch, rpc_status_name(cc->st.code));
        } else {
            for (size_t i = 0; i < cc->n_batch; i++)
                take_status(st, cc->batch[i], &cc->st);
        }
        arena_cleanup(&cc->arena);
    }
    for (size_t i = 0; i < n_ided; i++) {
        struct commit_call *cc = &calls[i + 1];
        if (cc->e)
            take_status(st, cc->e, &cc->st);
        arena_cleanup(&cc->arena);
    }
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    arena_cleanup(&a);
    free(calls);
}

int fs_write_batch(void *self, struct commit_item *items, size_t n)
{
    struct fs_store *st = self;
    struct entry *v = calloc(n, sizeof *v);
    struct entry **plain = calloc(n, sizeof *plain), **ided = calloc(n, sizeof *ided);
    uint64_t start = fs_now_ns(), end = start + (uint64_t)st->timeout_ms * 1000000u;
    unsigned backoff_ms = 50;
    bool alone = false; /* creates with request ids: one Commit each, after a shared one met a
                         * taken name */

    if (!v || !plain || !ided) {
        free(v);
        free(plain);
        free(ided);
        return BOOKS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].it = &items[i];
        v[i].state = TO_SEND;
        random_hex(v[i].write_id);
        if (!fs_book_doc(&st->names, items[i].book->name, v[i].doc, sizeof v[i].doc))
            settle(st, &v[i], BOOKS_EINVAL);
    }
    for (;;) {
        uint64_t now = fs_now_ns(), latest = 0;
        size_t n_plain = 0, n_ided = 0, open = 0;
        bool draining = atomic_load(&st->draining), reachable = atomic_load(&st->reachable);
        for (size_t i = 0; i < n; i++) {
            struct entry *e = &v[i];
            if (e->state == SETTLED)
                continue;
            uint64_t due = e->it->deadline_ns && e->it->deadline_ns < end ? e->it->deadline_ns
                                                                          : end;
            if (now >= due || draining || (!reachable && !e->maybe_written)) {
                settle(st, e,
                       e->maybe_written ? BOOKS_EUNKNOWN
                       : now >= due && e->it->deadline_ns && due == e->it->deadline_ns
                           ? BOOKS_EDEADLINE
                           : BOOKS_EUNAVAIL);
                continue;
            }
            if (due > latest)
                latest = due;
            open++;
        }
        if (open == 0)
            break;
        for (size_t i = 0; i < n; i++)
            if (v[i].state == TO_CHECK)
                check(st, &v[i], latest);
        /* This round's writes: one BatchWrite (each name once) and the Commits. */
        for (size_t i = 0; i < n; i++) {
            struct entry *e = &v[i];
            if (e->state != TO_SEND)
                continue;
            if (e->it->request_id[0]) {
                ided[n_ided++] = e;
                continue;
            }
            bool twice = false;
            for (size_t j = 0; j < n_plain && !twice; j++)
                twice = strcmp(plain[j]->doc, e->doc) == 0;
            if (!twice && n_plain < FS_MAX_WRITES)
                plain[n_plain++] = e;
        }
        if (n_plain || n_ided) {
            bool again_before = false;
            bool conflict = false;
            send_round(st, plain, n_plain, ided, n_ided, !alone && distinct(ided, n_ided),
                       &conflict, latest);
            if (conflict) {
                alone = true; /* the shared Commit met a taken name: one Commit each now */
                continue;
            }
            for (size_t i = 0; i < n; i++)
                again_before |= v[i].state == TO_SEND && v[i].maybe_written;
            if (again_before) { /* a lost reply or a refusal to go on: back off a little */
                nanosleep(&(struct timespec){0, (long)backoff_ms * 1000000L}, NULL);
                backoff_ms = backoff_ms < 800 ? backoff_ms * 2 : 1000;
            }
        }
    }
    free(v);
    free(plain);
    free(ided);
    return 0;
}
