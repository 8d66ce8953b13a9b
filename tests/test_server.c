/* test_server.c: the server's life cycle, driven through gRPC core's own client API on loopback:
 * start on a free port and serve a call, refuse bad options and a busy port with a message naming
 * it, survive every out-of-memory point of server_start() (calloc is wrapped with
 * -Wl,--wrap=calloc: only this project's objects are affected, not libgrpc), and bound the wait for
 * a store that never answers (run in a child process: the abandoned server is left running on
 * purpose, which only an exiting process may do). */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "books/codec.h"
#include "books/log.h"
#include "books/server.h"
#include "books/v1/books.pb-c.h"

/* ---- calloc that fails on request ------------------------------------------------------------ */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

/* 0: never fail; k > 0: the k-th call from now fails (and only that one). */
static atomic_int calloc_fail_at;

void *__wrap_calloc(size_t n, size_t size)
{
    int k = atomic_load(&calloc_fail_at);
    if (k > 0) {
        if (atomic_fetch_sub(&calloc_fail_at, 1) == 1)
            return NULL;
    }
    return __real_calloc(n, size);
}

/* ---- a service with two methods ---------------------------------------------------------------- */

static struct rpc_reply *held; /* the Hang call's reply, never answered */
static const char *self_path; /* this test binary (argv[0]; /proc/self/exe is valgrind under valgrind) */

/* Answers with the request itself (a GetBookRequest is a fine response message). */
static void echo(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    (void)self;
    reply->response = request;
    rpc_reply_done(reply);
}

/* Never answers: stands for a store stuck on a dead disk. */
static void hang(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    (void)self;
    (void)request;
    held = reply;
}

static const struct rpc_method test_methods[] = {
    {.path = "/test.v1.Test/Echo",
     .request = &books__v1__get_book_request__descriptor,
     .handle = echo},
    {.path = "/test.v1.Test/Hang",
     .request = &books__v1__get_book_request__descriptor,
     .handle = hang},
};

static const struct rpc_service test_service = {
    .name = "test.v1.Test", .methods = test_methods, .n_methods = 2, .self = NULL};

static struct server_options options(int port)
{
    struct server_options o = {
        .port = port, .threads = 2, .max_recv_bytes = 4 << 20, .max_concurrent_streams = 100};
    return o;
}

/* ---- a minimal client on gRPC core ------------------------------------------------------------- */

/* Calls `method` on 127.0.0.1:port with a GetBookRequest{name}, waiting at most `timeout_ms`.
 * Returns the status; *name_back gets the echoed name (caller frees) when there is a response. */
static grpc_status_code call(int port, const char *method, const char *name, int timeout_ms,
                             char **name_back)
{
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice path = grpc_slice_from_static_string(method);
    grpc_call *c = grpc_channel_create_call(ch, NULL, 0, cq, path, NULL, deadline, NULL);

    Books__V1__GetBookRequest req = BOOKS__V1__GET_BOOK_REQUEST__INIT;
    req.name = (char *)name;
    grpc_byte_buffer *bb = NULL, *resp = NULL;
    codec_encode(&req.base, &bb);
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    assert_int_equal(grpc_call_start_batch(c, ops, 6, (void *)1, NULL), GRPC_CALL_OK);
    grpc_event ev = grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                NULL);
    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    if (name_back) {
        *name_back = NULL;
        if (resp) {
            unsigned char buf[256];
            struct arena a;
            struct books_error e;
            ProtobufCMessage *m = NULL;
            arena_init(&a, buf, sizeof buf);
            books_error_init(&e, &a);
            if (codec_decode(resp, &books__v1__get_book_request__descriptor, NULL, &a, &m, &e) ==
                0) {
                *name_back = strdup(((Books__V1__GetBookRequest *)m)->name);
                codec_free_request(m, &a);
            }
            arena_cleanup(&a);
        }
    }
    grpc_byte_buffer_destroy(resp);
    grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(c);
    grpc_channel_destroy(ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return status;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- tests ------------------------------------------------------------------------------------- */

static void test_start_serve_stop(void **state)
{
    (void)state;
    struct server_options o = options(0);
    struct server *s = NULL;
    char err[SERVER_ERR_BYTES], *back = NULL;
    assert_int_equal(server_start(&o, &test_service, 1, &s, err, sizeof err), 0);
    assert_true(server_port(s) > 0);
    assert_int_equal(call(server_port(s), "/test.v1.Test/Echo", "books/x", 10000, &back),
                     GRPC_STATUS_OK);
    assert_string_equal(back, "books/x");
    free(back);
    /* Unknown methods are answered at once, not parked until the deadline. */
    assert_int_equal(call(server_port(s), "/test.v1.Test/Nope", "x", 10000, NULL),
                     GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(server_shutdown(s, 1000), 0);
    server_free(s);
}

/* A shutdown right after the start, many times: the workers may still be making their first
 * requests, and server_start() must not return before they have (a request on a destroyed server
 * crashes inside gRPC core). */
static void test_start_then_stop_at_once(void **state)
{
    (void)state;
    for (int i = 0; i < 40; i++) {
        struct server_options o = options(0);
        struct server *s = NULL;
        char err[SERVER_ERR_BYTES];
        assert_int_equal(server_start(&o, &test_service, 1, &s, err, sizeof err), 0);
        assert_int_equal(server_shutdown(s, 0), 0);
        server_free(s);
    }
}

static void test_bad_options(void **state)
{
    (void)state;
    struct server *s = (struct server *)&s; /* must stay untouched */
    char err[SERVER_ERR_BYTES];
    struct server_options o = options(0);
    o.threads = 0;
    assert_int_equal(server_start(&o, &test_service, 1, &s, err, sizeof err), BOOKS_EINVAL);
    o = options(70000);
    assert_int_equal(server_start(&o, &test_service, 1, &s, err, sizeof err), BOOKS_EINVAL);
    assert_ptr_equal(s, (struct server *)&s);
}

static void test_duplicate_method(void **state)
{
    (void)state;
    const struct rpc_service twice[2] = {test_service, test_service};
    struct server_options o = options(0);
    struct server *s = NULL;
    char err[SERVER_ERR_BYTES];
    assert_int_equal(server_start(&o, twice, 2, &s, err, sizeof err), BOOKS_EINVAL);
    assert_non_null(strstr(err, "/test.v1.Test/Echo"));
}

static void test_port_in_use(void **state)
{
    (void)state;
    /* Hold a port with a plain listening socket. */
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    int port = ntohs(a.sin6_port);

    struct server_options o = options(port);
    struct server *s = NULL;
    char err[SERVER_ERR_BYTES], want[32];
    assert_int_equal(server_start(&o, &test_service, 1, &s, err, sizeof err), BOOKS_EUNAVAIL);
    snprintf(want, sizeof want, "port %d", port);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "in use"));
    close(fd);
}

/* Each calloc that server_start() makes, failed in turn: every one gives BOOKS_ENOMEM (or, for a
 * call object a worker asks for, a logged error and one request fewer), never a crash or a leak.
 * Past the last one, the server starts and serves. */
static void test_out_of_memory_in_start(void **state)
{
    (void)state;
    int failed = 0, k;
    for (k = 1; k <= 64; k++) {
        struct server_options o = options(0);
        struct server *s = NULL;
        char err[SERVER_ERR_BYTES];
        o.threads = 1;
        atomic_store(&calloc_fail_at, k);
        int rc = server_start(&o, &test_service, 1, &s, err, sizeof err);
        if (rc != 0) {
            atomic_store(&calloc_fail_at, 0);
            assert_int_equal(rc, BOOKS_ENOMEM);
            assert_null(s);
            failed++;
            continue;
        }
        /* server_start() made fewer than k callocs itself; its worker may still meet the
         * failure when it requests its calls: the server must serve regardless. */
        char *back = NULL;
        assert_int_equal(call(server_port(s), "/test.v1.Test/Echo", "books/oom", 10000, &back),
                         GRPC_STATUS_OK);
        free(back);
        atomic_store(&calloc_fail_at, 0);
        assert_int_equal(server_shutdown(s, 1000), 0);
        server_free(s);
        if (k > 8)
            break; /* well past server_start's own allocations */
    }
    /* The server struct, the worker array and the method slots are allocated with calloc. */
    assert_true(failed >= 3);
}

/* In a child process (see main): a call whose handler never answers; server_shutdown() must give
 * up after SERVER_STORE_WAIT_MS and report it. */
static int child_abandon(void)
{
    struct server_options o = options(0);
    struct server *s = NULL;
    char err[SERVER_ERR_BYTES];
    log_init(LOG_WARNING, STDERR_FILENO);
    if (server_start(&o, &test_service, 1, &s, err, sizeof err) != 0)
        return 10;
    /* The client gives up after 300 ms; the handler still holds the call. */
    grpc_status_code st = call(server_port(s), "/test.v1.Test/Hang", "x", 300, NULL);
    if (st != GRPC_STATUS_DEADLINE_EXCEEDED)
        return 11;
    long t0 = now_ms();
    long left = server_shutdown(s, 0);
    long took = now_ms() - t0;
    if (left != 1 || held == NULL)
        return 12;
    if (took < SERVER_STORE_WAIT_MS || took > SERVER_STORE_WAIT_MS + 5000)
        return 13;
    log_thread_flush();
    _exit(0); /* as main.c does: the abandoned server is not torn down */
}

static void test_shutdown_gives_up_on_a_stuck_store(void **state)
{
    (void)state;
    char out[] = "/tmp/books-test-server-XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, STDERR_FILENO);
        execl(self_path, "test_server", "--child-abandon", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char log[4096] = "";
    ssize_t n = pread(fd, log, sizeof log - 1, 0);
    log[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child exited with status %d; its log:\n%s", status, log);
    /* The error line names the method and says nothing was acknowledged. */
    assert_non_null(strstr(log, "1 calls still unanswered"));
    assert_non_null(strstr(log, "/test.v1.Test/Hang: 1"));
}

int main(int argc, char **argv)
{
    (void)argc;
    if (argc == 2 && strcmp(argv[1], "--child-abandon") == 0) {
        grpc_init();
        return child_abandon();
    }
    self_path = argv[0];
    log_init(LOG_ERROR, STDOUT_FILENO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_serve_stop),
        cmocka_unit_test(test_start_then_stop_at_once),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_duplicate_method),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_out_of_memory_in_start),
        cmocka_unit_test(test_shutdown_gives_up_on_a_stuck_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
