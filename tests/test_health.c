/* test_health.c: grpc.health.v1.Health (include/books/health.h, gRPC doc/health-checking.md) driven
 * directly through the rpc.h contract. Check: SERVING for "" and each hosted service once serving,
 * NOT_SERVING before that, after health_set_serving(false) and after shutdown, NOT_FOUND (with its
 * AIP-193 reason and the name) for anything else. Watch: the current status at once, each change
 * pushed (and only changes), SERVICE_UNKNOWN once for a name not hosted, nothing sent to a stream
 * after its close hook, and health_shutdown() ending every watcher with NOT_SERVING and status OK.
 *
 * Watch runs on an rpc_stream, which the server (src/rpc/) owns. health.c uses only two of the
 * server's functions, rpc_stream_send() and rpc_stream_finish(), so this file defines test doubles
 * of those two and its own struct rpc_stream: the linker takes them from this object and never
 * pulls the server's stream object out of libbooks_rpc.a (nothing else here needs it), so there is
 * no duplicate symbol. That gives an exact record of every message and every finish, with no
 * network, timing or coalescing in the way (driven through a real server and a gRPC core client,
 * the test would exercise the server's stream as much as health.c, and that stream lets the newest
 * message replace a queued one, so the exact sequence of statuses would depend on timing). The
 * doubles keep the real contract where health.c can observe it (a finishing stream refuses messages
 * with BOOKS_EUNAVAIL) and fail the test when a stream is used after its close hook. The same
 * protocol through the real server and a real client is tests/wire/test_health_watch.py. */
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

#include <cmocka.h>

#include "books/health.h"
#include "books/status.h"
#include "grpc/health/v1/health.pb-c.h"

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

#define BOOKS_SERVICE "books.v1.BooksService"

static const char *const hosted[] = {BOOKS_SERVICE, HEALTH_SERVICE_NAME,
                                     "grpc.reflection.v1.ServerReflection", NULL};

/* ---- the stream doubles ---------------------------------------------------------------------- */

#define MAX_SENT 64

/* What the server would have put on the wire for one Watch call. */
struct rpc_stream {
    pthread_mutex_t mu;
    int sent[MAX_SENT]; /* statuses of the first MAX_SENT messages accepted, in order */
    int n_sent;         /* messages accepted */
    int last;           /* the status of the last one */
    int finishes;       /* rpc_stream_finish() calls; only the first counts */
    int finish_code;    /* the first finish's error code; 0 for status OK */
    bool closed;        /* the close hook has run: the handler must not touch the stream */
    bool after_close;   /* ... and it did */
    bool slow;          /* sends take a while, as encoding and queuing a message does */
};

static struct rpc_stream *stream_new(void)
{
    struct rpc_stream *s = calloc(1, sizeof *s);
    assert_non_null(s);
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void stream_free(struct rpc_stream *s)
{
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int rpc_stream_send(struct rpc_stream *stream, const ProtobufCMessage *msg)
{
    /* As the server does: encode at once, so the message must be a complete HealthCheckResponse. */
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t buf[64];
    int status = -1, rc = 0;
    if (msg->descriptor == &grpc__health__v1__health_check_response__descriptor &&
        n <= sizeof buf && protobuf_c_message_pack(msg, buf) == n) {
        Grpc__Health__V1__HealthCheckResponse *r =
            grpc__health__v1__health_check_response__unpack(NULL, n, buf);
        if (r) {
            status = (int)r->status;
            grpc__health__v1__health_check_response__free_unpacked(r, NULL);
        }
    }
    if (stream->slow) /* widens the window a missing lock in health.c would leave open */
        nanosleep(&(struct timespec){0, 20000}, NULL);
    pthread_mutex_lock(&stream->mu);
    if (stream->closed) {
        stream->after_close = true;
        rc = BOOKS_EUNAVAIL;
    } else if (stream->finishes) { /* finishing: refused, as the server does */
        rc = BOOKS_EUNAVAIL;
    } else {
        if (stream->n_sent < MAX_SENT)
            stream->sent[stream->n_sent] = status;
        stream->n_sent++;
        stream->last = status;
    }
    pthread_mutex_unlock(&stream->mu);
    return rc;
}

void rpc_stream_finish(struct rpc_stream *stream, const struct books_error *err)
{
    pthread_mutex_lock(&stream->mu);
    if (stream->closed)
        stream->after_close = true;
    else if (stream->finishes++ == 0)
        stream->finish_code = err ? err->code : 0;
    pthread_mutex_unlock(&stream->mu);
}

/* The server's side of a Watch call's end: the close hook, then the stream is gone. */
static void server_closes(struct health *h, struct rpc_stream *s)
{
    health_watch_close(h, s);
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_mutex_unlock(&s->mu);
}

static struct rpc_stream *watch_with(struct health *h, const char *service, bool slow)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    struct rpc_stream *s = stream_new();
    s->slow = slow;
    req.service = (char *)service;
    health_watch_start(h, &req.base, s);
    return s;
}

static struct rpc_stream *watch(struct health *h, const char *service)
{
    return watch_with(h, service, false);
}

/* The statuses `s` received, compared with the list given (ending with -1). */
static void assert_sent(struct rpc_stream *s, ...)
{
    va_list ap;
    int i = 0, want;
    assert_true(s->n_sent <= MAX_SENT);
    va_start(ap, s);
    while ((want = va_arg(ap, int)) != -1) {
        if (i >= s->n_sent)
            fail_msg("message %d (status %d) was never sent; %d were", i, want, s->n_sent);
        if (s->sent[i] != want)
            fail_msg("message %d has status %d, expected %d", i, s->sent[i], want);
        i++;
    }
    va_end(ap);
    if (i != s->n_sent)
        fail_msg("%d messages sent, expected %d", s->n_sent, i);
    assert_false(s->after_close);
}

#define SENT(s, ...) assert_sent(s, __VA_ARGS__, -1)
#define NOTHING_SENT(s) assert_sent(s, -1)

/* ---- Check through an rpc_reply -------------------------------------------------------------- */

struct fixture {
    struct health *h;
    struct arena arena;
    unsigned char buf[512];
    struct rpc_reply reply;
    int done_calls;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_int_equal(health_new(hosted, &f->h), 0);
    assert_non_null(f->h);
    arena_init(&f->arena, f->buf, sizeof f->buf);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    health_free(f->h);
    arena_cleanup(&f->arena);
    free(f);
    return 0;
}

static void on_done(struct rpc_reply *r)
{
    /* The fixture that holds this reply. */
    struct fixture *f = (struct fixture *)((char *)r - offsetof(struct fixture, reply));
    f->done_calls++;
}

/* Runs Check for `service`; returns the serving status, or -1 with f->reply.error set. */
static int check(struct fixture *f, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    arena_reset(&f->arena);
    memset(&f->reply, 0, sizeof f->reply);
    f->reply.arena = &f->arena;
    books_error_init(&f->reply.error, &f->arena);
    f->reply.done = on_done;
    f->done_calls = 0;
    health_check(f->h, &req.base, &f->reply);
    /* Answered exactly once, before returning (health.h: "answers before returning"). */
    assert_int_equal(f->done_calls, 1);
    if (f->reply.error.code)
        return -1;
    const ProtobufCMessage *m = f->reply.response;
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, &grpc__health__v1__health_check_response__descriptor);
    return (int)((const Grpc__Health__V1__HealthCheckResponse *)m)->status;
}

static void test_check_hosted_services(void **state)
{
    struct fixture *f = *state;
    /* Not serving until told so (health_new). */
    assert_int_equal(check(f, ""), NOT_SERVING);
    assert_int_equal(check(f, BOOKS_SERVICE), NOT_SERVING);

    health_set_serving(f->h, true);
    assert_int_equal(check(f, ""), SERVING); /* "" is the server as a whole */
    for (const char *const *s = hosted; *s; s++)
        assert_int_equal(check(f, *s), SERVING);

    health_set_serving(f->h, false);
    assert_int_equal(check(f, ""), NOT_SERVING);
    for (const char *const *s = hosted; *s; s++)
        assert_int_equal(check(f, *s), NOT_SERVING);

    health_set_serving(f->h, true);
    assert_int_equal(check(f, BOOKS_SERVICE), SERVING);
}

static void test_check_unknown_service_is_not_found(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    /* Near misses of hosted names are other names. */
    const char *const unknown[] = {"books.v1.Nope",          "books.v1.booksservice",
                                   "books.v1.BooksService ", "books.v1",
                                   "BooksService",           "grpc.health.v1.Health.Check"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_int_equal(check(f, unknown[i]), -1);
        const struct books_error *e = &f->reply.error;
        assert_int_equal(e->code, BOOKS_ENOTFOUND);
        assert_int_equal(rpc_status_of(e->code), GRPC_STATUS_NOT_FOUND);
        /* AIP-193: a machine-readable reason, and the name in the message and the metadata. */
        assert_non_null(e->reason);
        assert_true(strlen(e->reason) > 0);
        assert_non_null(strstr(e->message, unknown[i]));
        assert_non_null(e->meta_key);
        assert_string_equal(e->meta_value, unknown[i]);
    }
    /* A hostile name is quoted, not echoed raw, and the answer is still NOT_FOUND. */
    assert_int_equal(check(f, "bad\nname\x7f"), -1);
    assert_int_equal(f->reply.error.code, BOOKS_ENOTFOUND);
    assert_null(strchr(f->reply.error.message, '\n'));
}

static void test_check_after_shutdown(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    health_shutdown(f->h);
    assert_int_equal(check(f, ""), NOT_SERVING);
    assert_int_equal(check(f, BOOKS_SERVICE), NOT_SERVING);
    /* Unknown names stay unknown. */
    assert_int_equal(check(f, "books.v1.Nope"), -1);
    assert_int_equal(f->reply.error.code, BOOKS_ENOTFOUND);
}

/* health.h: after health_shutdown() the server is NOT_SERVING "from now on". A late
 * health_set_serving(true) (a thread that has not heard of the shutdown yet) must not revive it:
 * Check would say SERVING while Watch calls say NOT_SERVING and end. */
static void test_shutdown_is_final(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    health_shutdown(f->h);
    health_set_serving(f->h, true);
    assert_int_equal(check(f, ""), NOT_SERVING);
    assert_int_equal(check(f, BOOKS_SERVICE), NOT_SERVING);
}

/* A service marked unavailable (its database is down) is NOT_SERVING on its own: "" (the process,
 * what a liveness probe asks) and the other services stay SERVING; it comes back when marked
 * available; only hosted services can be marked. */
static void test_one_service_unavailable(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    struct rpc_stream *all = watch(f->h, "");
    struct rpc_stream *books = watch(f->h, BOOKS_SERVICE);
    struct rpc_stream *other = watch(f->h, HEALTH_SERVICE_NAME);
    assert_int_equal(health_set_available(f->h, BOOKS_SERVICE, false), 0);
    assert_int_equal(check(f, ""), SERVING);
    assert_int_equal(check(f, BOOKS_SERVICE), NOT_SERVING);
    assert_int_equal(check(f, HEALTH_SERVICE_NAME), SERVING);
    assert_int_equal(health_set_available(f->h, BOOKS_SERVICE, false), 0); /* no change */
    assert_int_equal(health_set_available(f->h, BOOKS_SERVICE, true), 0);
    assert_int_equal(check(f, BOOKS_SERVICE), SERVING);
    SENT(all, SERVING);
    SENT(books, SERVING, NOT_SERVING, SERVING);
    SENT(other, SERVING);
    /* While the process itself is not serving, marking a service available does not make it so. */
    health_set_serving(f->h, false);
    assert_int_equal(health_set_available(f->h, BOOKS_SERVICE, true), 0);
    assert_int_equal(check(f, BOOKS_SERVICE), NOT_SERVING);
    assert_int_equal(health_set_available(f->h, "", false), BOOKS_ENOTFOUND);
    assert_int_equal(health_set_available(f->h, "no.such.Service", false), BOOKS_ENOTFOUND);
    server_closes(f->h, all);
    server_closes(f->h, books);
    server_closes(f->h, other);
    stream_free(all);
    stream_free(books);
    stream_free(other);
}

/* ---- Watch ----------------------------------------------------------------------------------- */

static void test_watch_first_message_is_the_current_status(void **state)
{
    struct fixture *f = *state;
    struct rpc_stream *before = watch(f->h, ""); /* before serving */
    SENT(before, NOT_SERVING);
    health_set_serving(f->h, true);
    struct rpc_stream *all = watch(f->h, "");
    struct rpc_stream *books = watch(f->h, BOOKS_SERVICE);
    SENT(all, SERVING);
    SENT(books, SERVING);
    /* The call stays open: nothing finished it. */
    assert_int_equal(all->finishes, 0);
    assert_int_equal(books->finishes, 0);
    server_closes(f->h, before);
    server_closes(f->h, all);
    server_closes(f->h, books);
    stream_free(before);
    stream_free(all);
    stream_free(books);
}

static void test_watch_pushes_every_change_and_only_changes(void **state)
{
    struct fixture *f = *state;
    struct rpc_stream *a = watch(f->h, "");
    struct rpc_stream *b = watch(f->h, HEALTH_SERVICE_NAME);
    health_set_serving(f->h, true);
    health_set_serving(f->h, true); /* no change: no message */
    health_set_serving(f->h, false);
    health_set_serving(f->h, false);
    health_set_serving(f->h, true);
    SENT(a, NOT_SERVING, SERVING, NOT_SERVING, SERVING);
    SENT(b, NOT_SERVING, SERVING, NOT_SERVING, SERVING);
    assert_int_equal(a->finishes + b->finishes, 0);
    server_closes(f->h, a);
    server_closes(f->h, b);
    stream_free(a);
    stream_free(b);
}

/* A name this server does not host: SERVICE_UNKNOWN once, the call stays open, and serving
 * changes are not sent to it (they are not about that name). */
static void test_watch_unknown_service(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    struct rpc_stream *u = watch(f->h, "books.v1.Nope");
    SENT(u, SERVICE_UNKNOWN);
    health_set_serving(f->h, false);
    health_set_serving(f->h, true);
    SENT(u, SERVICE_UNKNOWN);
    assert_int_equal(u->finishes, 0);
    server_closes(f->h, u);
    stream_free(u);
}

/* After the close hook (the client went away, or the call ended) the stream is never touched
 * again; the other watchers keep getting changes. */
static void test_close_hook_detaches_the_stream(void **state)
{
    struct fixture *f = *state;
    struct rpc_stream *gone = watch(f->h, "");
    struct rpc_stream *stays = watch(f->h, "");
    struct rpc_stream *third = watch(f->h, BOOKS_SERVICE);
    server_closes(f->h, gone); /* from the middle of the list, the end and the start */
    health_set_serving(f->h, true);
    server_closes(f->h, third);
    health_shutdown(f->h);
    SENT(gone, NOT_SERVING);
    assert_int_equal(gone->finishes, 0);
    SENT(third, NOT_SERVING, SERVING);
    assert_int_equal(third->finishes, 0);
    SENT(stays, NOT_SERVING, SERVING, NOT_SERVING);
    assert_int_equal(stays->finishes, 1);
    server_closes(f->h, stays);
    stream_free(gone);
    stream_free(stays);
    stream_free(third);
}

/* Shutdown: every watcher, whatever it watches, hears NOT_SERVING and its stream ends with status
 * OK, exactly once; later changes reach none of them. */
static void test_shutdown_ends_every_watcher_with_ok(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    struct rpc_stream *s[4] = {watch(f->h, ""), watch(f->h, BOOKS_SERVICE),
                               watch(f->h, HEALTH_SERVICE_NAME), watch(f->h, "books.v1.Nope")};
    health_shutdown(f->h);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s[i]->finishes, 1);
        assert_int_equal(s[i]->finish_code, 0); /* status OK */
        assert_int_equal(s[i]->sent[s[i]->n_sent - 1], NOT_SERVING);
    }
    SENT(s[0], SERVING, NOT_SERVING);
    SENT(s[3], SERVICE_UNKNOWN, NOT_SERVING);
    /* A change after shutdown reaches none of them (their streams are finishing: the server
     * refuses, as the double does), and nothing is finished twice. */
    int n_before[4];
    for (int i = 0; i < 4; i++)
        n_before[i] = s[i]->n_sent;
    health_set_serving(f->h, true);
    health_set_serving(f->h, false);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s[i]->n_sent, n_before[i]);
        assert_int_equal(s[i]->finishes, 1);
        server_closes(f->h, s[i]);
        stream_free(s[i]);
    }
}

/* A Watch that arrives after shutdown gets one NOT_SERVING and ends with OK before start returns,
 * hosted name or not. */
static void test_watch_after_shutdown_ends_at_once(void **state)
{
    struct fixture *f = *state;
    health_set_serving(f->h, true);
    health_shutdown(f->h);
    const char *const names[] = {"", BOOKS_SERVICE, "books.v1.Nope"};
    for (size_t i = 0; i < 3; i++) {
        struct rpc_stream *s = watch(f->h, names[i]);
        SENT(s, NOT_SERVING);
        assert_int_equal(s->finishes, 1);
        assert_int_equal(s->finish_code, 0);
        server_closes(f->h, s);
        stream_free(s);
    }
}

/* health_free() with watchers the server never closed (it always does; health frees defensively):
 * no leak under valgrind/ASan, and NULL is a no-op. */
static void test_free_with_watchers_left(void **state)
{
    (void)state;
    struct health *h = NULL;
    health_free(NULL);
    assert_int_equal(health_new(hosted, &h), 0);
    struct rpc_stream *a = watch(h, ""), *b = watch(h, "x");
    health_free(h);
    stream_free(a);
    stream_free(b);
}

/* ---- threads --------------------------------------------------------------------------------- */

struct churn {
    struct health *h;
    int rounds;
};

static void *toggle(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->rounds; i++)
        health_set_serving(c->h, i % 2 == 0);
    return NULL;
}

/* Watchers come and go while another thread flips the status: a stream is freed right after its
 * close hook returns, so a send to it afterwards is a use after free that valgrind or ASan report
 * (and the double flags one that starts after the close). Sends are slow, so a close hook that did
 * not wait for a send in progress (health.c's lock) would free the stream under it. */
static void *come_and_go(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        struct rpc_stream *s = watch_with(c->h, i % 3 ? "" : BOOKS_SERVICE, true);
        server_closes(c->h, s);
        pthread_mutex_lock(&s->mu);
        bool misused = s->after_close;
        pthread_mutex_unlock(&s->mu);
        stream_free(s);
        if (misused)
            return (void *)1;
    }
    return NULL;
}

static void test_changes_race_with_watchers_leaving(void **state)
{
    struct fixture *f = *state;
    struct churn c = {f->h, 1000};
    pthread_t t1, t2, t3;
    void *r2 = NULL, *r3 = NULL;
    assert_int_equal(pthread_create(&t1, NULL, toggle, &c), 0);
    assert_int_equal(pthread_create(&t2, NULL, come_and_go, &c), 0);
    assert_int_equal(pthread_create(&t3, NULL, come_and_go, &c), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, &r2);
    pthread_join(t3, &r3);
    assert_null(r2);
    assert_null(r3);
}

/* Two threads flip the status at once while watchers listen: when they stop, every watcher's last
 * message is the status Check gives, so no watcher is left believing a stale state (a change is
 * decided and sent to everyone under one lock; with slow sends, an unserialised older change
 * would overtake a newer one). */
static void test_watchers_end_on_the_final_status(void **state)
{
    struct fixture *f = *state;
    struct rpc_stream *s[3] = {watch_with(f->h, "", true), watch_with(f->h, BOOKS_SERVICE, true),
                               watch_with(f->h, "", true)};
    struct churn c1 = {f->h, 201}, c2 = {f->h, 200};
    pthread_t t1, t2;
    for (int round = 0; round < 10; round++) {
        assert_int_equal(pthread_create(&t1, NULL, toggle, &c1), 0);
        assert_int_equal(pthread_create(&t2, NULL, toggle, &c2), 0);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        int now = check(f, "");
        for (int i = 0; i < 3; i++) {
            pthread_mutex_lock(&s[i]->mu);
            int last = s[i]->last;
            pthread_mutex_unlock(&s[i]->mu);
            if (last != now)
                fail_msg("round %d: watcher %d last heard %d, Check says %d", round, i, last, now);
        }
    }
    for (int i = 0; i < 3; i++) {
        assert_false(s[i]->after_close);
        server_closes(f->h, s[i]);
        stream_free(s[i]);
    }
}

/* ---- the method table ------------------------------------------------------------------------ */

/* The paths clients call (gRPC doc/health-checking.md) and the kinds the server runs them as. */
static void test_describe(void **state)
{
    struct fixture *f = *state;
    struct rpc_service svc;
    health_describe(f->h, &svc);
    assert_string_equal(svc.name, "grpc.health.v1.Health");
    assert_ptr_equal(svc.self, f->h);
    assert_int_equal(svc.n_methods, 2);
    bool saw_check = false, saw_watch = false;
    for (size_t i = 0; i < svc.n_methods; i++) {
        const struct rpc_method *m = &svc.methods[i];
        assert_ptr_equal(m->request, &grpc__health__v1__health_check_request__descriptor);
        if (strcmp(m->path, "/grpc.health.v1.Health/Check") == 0) {
            saw_check = true;
            assert_int_equal(m->kind, RPC_UNARY);
            assert_ptr_equal(m->handle, health_check);
        } else if (strcmp(m->path, "/grpc.health.v1.Health/Watch") == 0) {
            saw_watch = true;
            assert_int_equal(m->kind, RPC_SERVER_STREAM);
            assert_ptr_equal(m->start, health_watch_start);
            assert_ptr_equal(m->close, health_watch_close);
        } else {
            fail_msg("unexpected method %s", m->path);
        }
    }
    assert_true(saw_check && saw_watch);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_check_hosted_services),
        T(test_check_unknown_service_is_not_found),
        T(test_check_after_shutdown),
        T(test_shutdown_is_final),
        T(test_one_service_unavailable),
        T(test_watch_first_message_is_the_current_status),
        T(test_watch_pushes_every_change_and_only_changes),
        T(test_watch_unknown_service),
        T(test_close_hook_detaches_the_stream),
        T(test_shutdown_ends_every_watcher_with_ok),
        T(test_watch_after_shutdown_ends_at_once),
        cmocka_unit_test(test_free_with_watchers_left),
        T(test_changes_race_with_watchers_leaving),
        T(test_watchers_end_on_the_final_status),
        T(test_describe),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
