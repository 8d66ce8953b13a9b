/* writes.c: the commit pipeline's backend for the firestore: store. A batch is written in rounds,
 * until every create is settled or its time is up:
 *   - the creates without a request id go out in BatchWrites, one write each with the
 *     precondition exists: false, so each gets its own status (BatchWrite is not atomic: a taken
 *     name fails only its create). Firestore refuses a request that writes one document twice, so
 *     a second create of a name (or of a request id) already in the round waits for the next;
 *   - the creates with a request id write each its book and its request document, both with
 *     exists: false, in a Commit (atomic: a book and its request id are kept together or not at
 *     all), shared by the round's creates; when a shared Commit meets a taken name (atomic, so
 *     nothing of it was written) each of its creates goes again in a Commit of its own, at once;
 *   - every request stays within FS_MAX_WRITES writes and max_request_bytes (each write's encoded
 *     size counted): a round whose creates do not fit in one goes out as several at once;
 *   - a write refused because a document exists is looked up: the request document tells a retry
 *     (same fingerprint: answered with the book that request made) from a reused id
 *     (BOOKS_EREUSED); a book whose write_id is this create's own is this create's write, which
 *     an earlier round made before its reply was lost; anything else is BOOKS_EEXIST;
 *   - a call that ends with a status retry.c's policy retries (UNAVAILABLE, RESOURCE_EXHAUSTED,
 *     ABORTED, INTERNAL, UNKNOWN, DEADLINE_EXCEEDED) goes again after the policy's backoff: the
 *     preconditions make that safe, and the lookup above settles a write whose reply was lost.
 * A create that an attempt may have written (its reply lost) is answered OK or BOOKS_EUNKNOWN,
 * never another error. One whose deadline (or timeout_ms, without one) leaves no room for another
 * attempt is answered then, before its deadline passes, with what its last attempt met:
 * BOOKS_ETHROTTLED when Firestore throttled it, BOOKS_EUNAVAIL, BOOKS_EABORTED; BOOKS_EDEADLINE
 * when its deadline passed before any attempt failed. */
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
    bool maybe_written;    /* an attempt ended without telling: it may be in Firestore */
    bool alone;            /* goes in a Commit of its own (a shared one met a taken name) */
    grpc_status_code last; /* the last attempt's failure (GRPC_STATUS_OK: none yet) */
    char write_id[33];
    char doc[FS_NAME_BYTES];
};

/* The calls of one round, and the committer thread waiting for them. */
struct round {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t left;
};

/* One BatchWrite or Commit of a round: its creates, their writes, and how it ended. */
struct commit_call {
    struct round *round;
    enum fs_method method;
    struct entry **entries; /* in write order: a BatchWrite one write each, a Commit two */
    size_t n;
    Google__Firestore__V1__Write **writes;
    size_t n_writes, bytes; /* bytes: the request's encoded size, as far as counted */
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
    if (st->code == GRPC_STATUS_OK && cc->method == FS_BATCH_WRITE) {
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
 * left (no connection: "failed to connect") did not write; one refused for a quota or the ramp-up
 * (RESOURCE_EXHAUSTED) was not applied. */
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

/* Settles `e` with an outcome the store knows: 0 (its book is written), BOOKS_EEXIST (its name
 * is another's), BOOKS_EREUSED (its request id is another request's). */
static void settle(struct entry *e, int rc)
{
    e->state = SETTLED;
    e->it->rc = rc; /* answered by the pipeline when the batch returns */
}

/* Settles `e` with a failure: BOOKS_EUNKNOWN instead when an attempt of it may have been applied
 * (the create may exist: only OK or UNKNOWN are true of it then). */
static void settle_error(struct entry *e, int rc)
{
    settle(e, e->maybe_written ? BOOKS_EUNKNOWN : rc);
}

/* The failure of a create that goes no further (its deadline leaves no time for another attempt,
 * or its time is up): what its last attempt met. */
static void settle_out_of_time(struct entry *e, bool callers_deadline)
{
    switch (e->last) {
    case GRPC_STATUS_OK: /* never tried, or only waited behind others */
        settle_error(e, callers_deadline ? BOOKS_EDEADLINE : BOOKS_EUNAVAIL);
        break;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: /* throttled throughout: retry after RetryInfo's delay */
        settle_error(e, BOOKS_ETHROTTLED);
        break;
    case GRPC_STATUS_ABORTED:
        settle_error(e, BOOKS_EABORTED);
        break;
    default: /* UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED: the store could not be reached */
        settle_error(e, BOOKS_EUNAVAIL);
        break;
    }
}

/* One write's status, from a call of method m: settles `e`, or marks it to check or to send
 * again (retry.c's policy). */
static void take_status(struct fs_store *st, struct entry *e, enum fs_method m,
                        const struct fs_status *s)
{
    if (s->code == GRPC_STATUS_OK) {
        settle(e, 0);
    } else if (s->code == GRPC_STATUS_ALREADY_EXISTS ||
               s->code == GRPC_STATUS_FAILED_PRECONDITION) {
        e->state = TO_CHECK;
    } else if (s->code == GRPC_STATUS_CANCELLED) { /* the store is draining: no more rounds */
        if (!strstr(s->message, "shutting down")) /* not refused before it was sent */
            e->maybe_written = true;
        settle_error(e, BOOKS_EUNAVAIL);
    } else if (fs_retry_code(m, s->code)) {
        if (unknown_outcome(s))
            e->maybe_written = true;
        e->last = s->code;
        e->state = TO_SEND;
    } else {
        log_msg(LOG_WARNING, "Firestore %s: a create of %s failed: %s (%s)", st->shown,
                e->it->book->name, rpc_status_name(s->code), s->message);
        settle_error(e, fs_status_error(s->code));
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
                settle_error(e, BOOKS_ECORRUPT);
            } else if (!store_request_matches(it->fingerprint, it->legacy_fingerprint, fp ? fp->data : NULL, fp ? fp->len : 0,
                                              legacy ? legacy->data : NULL,
                                              legacy ? legacy->len : 0)) {
                settle(e, BOOKS_EREUSED);
            } else if (wid && strcmp(wid, e->write_id) == 0) {
                settle(e, 0); /* this create's own write, whose reply was lost */
            } else {
                /* A retry: answered with the book the first request made. */
                ProtobufCMessage *bm = NULL;
                char bdoc[FS_NAME_BYTES];
                if (!fs_book_doc(&st->names, book, bdoc, sizeof bdoc)) {
                    settle_error(e, BOOKS_ECORRUPT);
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
                        settle(e, 0);
                    } else if (code != GRPC_STATUS_OK &&
                               fs_retry_code(FS_GET_DOCUMENT, code)) {
                        e->last = code;
                        e->state = TO_SEND;
                    } else {
                        settle_error(e, rc == BOOKS_ENOTFOUND ? BOOKS_ECORRUPT : rc);
                    }
                }
            }
            arena_cleanup(&a);
            return;
        }
        if (code != GRPC_STATUS_NOT_FOUND) {
            if (fs_retry_code(FS_GET_DOCUMENT, code)) {
                e->last = code;
                e->state = TO_SEND;
            } else {
                settle_error(e, fs_status_error(code));
            }
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
        settle(e, wid && strcmp(wid, e->write_id) == 0 ? 0 : BOOKS_EEXIST);
    } else if (code == GRPC_STATUS_NOT_FOUND || fs_retry_code(FS_GET_DOCUMENT, code)) {
        if (code != GRPC_STATUS_NOT_FOUND)
            e->last = code;
        e->state = TO_SEND; /* gone again, or no answer: the next round tells */
    } else {
        settle_error(e, fs_status_error(code));
    }
    arena_cleanup(&a);
}

/* ---- a round ------------------------------------------------------------------------------------- */

/* The bytes a write adds to a request: the Write message and its field's tag and length. */
static size_t write_bytes(const Google__Firestore__V1__Write *w)
{
    size_t n = protobuf_c_message_get_packed_size(&w->base);
    return n + 1 + (n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4);
}

/* Room for n more writes of `bytes` in call cc (a new call always takes its first create, however
 * large: a create whose writes alone pass the bound goes in a request of its own). */
static bool fits(const struct fs_store *st, const struct commit_call *cc, size_t n, size_t bytes)
{
    return cc->n == 0 || (cc->n_writes + n <= FS_MAX_WRITES &&
                          cc->bytes + bytes <= st->max_request_bytes);
}

/* The round's calls, and the arena of their writes. */
struct calls {
    struct commit_call *v;
    size_t n, cap;
    struct arena arena;
};

/* A new call of method m for up to `room` creates, or NULL (no memory). */
static struct commit_call *new_call(struct fs_store *st, struct calls *c, enum fs_method m,
                                    size_t room)
{
    if (c->n == c->cap)
        return NULL;
    struct commit_call *cc = &c->v[c->n];
    *cc = (struct commit_call){.method = m};
    cc->entries = arena_alloc(&c->arena, room * sizeof *cc->entries);
    cc->writes = arena_alloc(&c->arena, 2 * room * sizeof *cc->writes);
    if (!cc->entries || !cc->writes)
        return NULL;
    cc->bytes = strlen(st->names.database) + 8; /* the request's database field, and framing */
    c->n++;
    return cc;
}

/* Builds the round's calls from the creates to send, in order: each name and each request id at
 * most once (Firestore refuses a request that writes one document twice; a second create of a
 * name waits for the next round, which answers it against what the first left); the creates
 * without a request id in BatchWrites, those with one in shared Commits (or a Commit of its own
 * once `alone`), every call within FS_MAX_WRITES writes and max_request_bytes. A create whose
 * writes cannot be built is settled. */
static void build_round(struct fs_store *st, struct entry *v, size_t n, struct calls *c)
{
    struct commit_call *plain = NULL, *shared = NULL;
    size_t room = n;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = &v[i];
        if (e->state != TO_SEND)
            continue;
        bool twice = false;
        for (size_t k = 0; k < c->n && !twice; k++)
            for (size_t j = 0; j < c->v[k].n && !twice; j++) {
                const struct entry *o = c->v[k].entries[j];
                twice = strcmp(o->doc, e->doc) == 0 ||
                        (e->it->request_id[0] && strcmp(o->it->request_id, e->it->request_id) == 0);
            }
        if (twice)
            continue;
        struct fs_create_writes cw;
        int rc = fs_build_create(&st->names, e->it, e->write_id, st->request_ttl_s, &c->arena, &cw);
        if (rc != 0) {
            settle_error(e, rc);
            continue;
        }
        bool ided = cw.request != NULL;
        size_t nw = ided ? 2 : 1;
        size_t bytes = write_bytes(cw.book) + (ided ? write_bytes(cw.request) : 0);
        struct commit_call **open = !ided ? &plain : e->alone ? NULL : &shared;
        struct commit_call *cc = open ? *open : NULL;
        if (!cc || !fits(st, cc, nw, bytes)) {
            cc = new_call(st, c, ided ? FS_COMMIT : FS_BATCH_WRITE, e->alone ? 1 : room);
            if (!cc) {
                settle_error(e, BOOKS_ENOMEM);
                continue;
            }
            if (open)
                *open = cc;
        }
        cc->entries[cc->n++] = e;
        cc->writes[cc->n_writes++] = cw.book;
        if (ided)
            cc->writes[cc->n_writes++] = cw.request;
        cc->bytes += bytes;
    }
}

/* Sends the round's calls at once and waits for all of them (each call's deadline bounds it),
 * then takes their statuses. A shared Commit that met a taken name (atomic: nothing of it was
 * written) sends each of its creates again in a Commit of its own. */
static void send_round(struct fs_store *st, struct calls *c, uint64_t deadline_ns)
{
    struct round r = {.left = c->n};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    for (size_t k = 0; k < c->n; k++) {
        struct commit_call *cc = &c->v[k];
        cc->round = &r;
        arena_init(&cc->arena, cc->buf, sizeof cc->buf);
        if (cc->method == FS_BATCH_WRITE) {
            Google__Firestore__V1__BatchWriteRequest req =
                GOOGLE__FIRESTORE__V1__BATCH_WRITE_REQUEST__INIT;
            req.database = st->names.database;
            req.n_writes = cc->n_writes;
            req.writes = cc->writes;
            fs_unary(st->client, FS_BATCH_WRITE, &req.base, deadline_ns, call_done, cc);
        } else {
            Google__Firestore__V1__CommitRequest req = GOOGLE__FIRESTORE__V1__COMMIT_REQUEST__INIT;
            req.database = st->names.database;
            req.n_writes = cc->n_writes;
            req.writes = cc->writes;
            fs_unary(st->client, FS_COMMIT, &req.base, deadline_ns, call_done, cc);
        }
    }
    pthread_mutex_lock(&r.mu);
    while (r.left > 0) /* each call's deadline bounds this */
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);

    for (size_t k = 0; k < c->n; k++) {
        struct commit_call *cc = &c->v[k];
        if (cc->method == FS_BATCH_WRITE) { /* a status per write, or the call's own for all */
            for (size_t i = 0; i < cc->n; i++) {
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
                take_status(st, cc->entries[i], FS_BATCH_WRITE, &s);
            }
        } else if (cc->n > 1 && (cc->st.code == GRPC_STATUS_ALREADY_EXISTS ||
                                 cc->st.code == GRPC_STATUS_FAILED_PRECONDITION)) {
            log_msg(LOG_INFO,
                    "Firestore %s: a Commit of %zu creates met a taken name (%s); each goes "
                    "again in a Commit of its own",
                    st->shown, cc->n, rpc_status_name(cc->st.code));
            for (size_t i = 0; i < cc->n; i++)
                cc->entries[i]->alone = true; /* still TO_SEND: nothing of it was written */
        } else {
            for (size_t i = 0; i < cc->n; i++)
                take_status(st, cc->entries[i], FS_COMMIT, &cc->st);
        }
        if (cc->st.code != GRPC_STATUS_OK && fs_retry_code(cc->method, cc->st.code))
            atomic_fetch_add_explicit(&st->write_retries, 1, memory_order_relaxed);
        arena_cleanup(&cc->arena);
    }
}

/* ---- a batch ------------------------------------------------------------------------------------- */

/* Waits delay_ns before the next round, in slices, so that a drain (shutdown) ends the wait at
 * once: the loop then answers what is left. */
static void backoff_sleep(struct fs_store *st, uint64_t delay_ns)
{
    const uint64_t slice = 20ull * 1000000u;
    uint64_t until = fs_now_ns() + delay_ns, now;
    while (!atomic_load(&st->draining) && (now = fs_now_ns()) < until) {
        uint64_t ns = until - now < slice ? until - now : slice;
        nanosleep(&(struct timespec){0, (long)ns}, NULL);
    }
}

/* When `e` must be answered by: its caller's deadline, or timeout_ms after the batch began. */
static uint64_t due(const struct entry *e, uint64_t end)
{
    return e->it->deadline_ns && e->it->deadline_ns < end ? e->it->deadline_ns : end;
}

int fs_write_batch(void *self, struct commit_item *items, size_t n)
{
    struct fs_store *st = self;
    struct entry *v = calloc(n, sizeof *v);
    struct calls c = {.v = calloc(n + 2, sizeof *c.v), .cap = n + 2};
    uint64_t start = fs_now_ns(), end = start + (uint64_t)st->timeout_ms * 1000000u;
    unsigned char buf[8192];
    struct fs_backoff backoff;

    if (!v || !c.v) {
        free(v);
        free(c.v);
        return BOOKS_ENOMEM;
    }
    fs_backoff_init(&backoff);
    for (size_t i = 0; i < n; i++) {
        v[i].it = &items[i];
        v[i].state = TO_SEND;
        v[i].last = GRPC_STATUS_OK;
        random_hex(v[i].write_id);
        if (!fs_book_doc(&st->names, items[i].book->name, v[i].doc, sizeof v[i].doc))
            settle(&v[i], BOOKS_EINVAL);
    }
    for (;;) {
        uint64_t now = fs_now_ns(), latest = 0;
        size_t open = 0;
        bool draining = atomic_load(&st->draining), reachable = atomic_load(&st->reachable);
        for (size_t i = 0; i < n; i++) {
            struct entry *e = &v[i];
            if (e->state == SETTLED)
                continue;
            uint64_t d = due(e, end);
            if (draining || (!reachable && !e->maybe_written)) {
                settle_error(e, BOOKS_EUNAVAIL);
                continue;
            }
            if (now >= d) {
                settle_out_of_time(e, e->it->deadline_ns && d == e->it->deadline_ns);
                continue;
            }
            if (d > latest)
                latest = d;
            open++;
        }
        if (open == 0)
            break;
        for (size_t i = 0; i < n; i++)
            if (v[i].state == TO_CHECK)
                check(st, &v[i], fs_attempt_deadline(fs_now_ns(), latest, st->timeout_ms));
        c.n = 0;
        arena_init(&c.arena, buf, sizeof buf);
        build_round(st, v, n, &c);
        bool sent = c.n > 0;
        if (sent)
            send_round(st, &c, fs_attempt_deadline(fs_now_ns(), latest, st->timeout_ms));
        arena_cleanup(&c.arena);
        if (!sent)
            continue; /* only checks this time (or settled while building) */
        /* Creates that go again after a failure wait first (retry.c's backoff); one whose
         * deadline leaves no room for that and another attempt is answered now, before it. */
        bool wait = false;
        now = fs_now_ns();
        uint64_t delay = 0;
        for (size_t i = 0; i < n && !wait; i++)
            wait = v[i].state == TO_SEND && v[i].last != GRPC_STATUS_OK;
        if (!wait)
            continue;
        delay = fs_backoff_next_ns(&backoff);
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            struct entry *e = &v[i];
            if (e->state != TO_SEND)
                continue;
            if (!fs_retry_fits(now, delay, due(e, end)))
                settle_out_of_time(e, false);
            else
                any = true;
        }
        if (any)
            backoff_sleep(st, delay);
    }
    free(v);
    free(c.v);
    return 0;
}
