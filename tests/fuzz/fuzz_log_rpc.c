/* fuzz_log_rpc: the per-call log line (log_rpc, then log_thread_flush), which carries bytes a
 * client chose: the :path of its call (also of unknown methods) and the status message, which may
 * quote its input. Input: the bytes before the first NUL are the method (in a heap block of exactly
 * that size, not NUL-terminated, as log.h allows); what follows the NUL, if there is one, is the
 * status message (a C string). The call also carries a fixed peer, code and sampled trace context,
 * with a project set, so the trace fields are written too.
 * The log goes to a memfd; the property: exactly one line, and it is one valid JSON object (no raw
 * control characters, valid UTF-8) however the method and message look, even when cut to fit. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "books/log.h"
#include "books/trace.h"
#include "fuzz_common.h"

static int fd = -1;
static struct trace_context trace;
static char *readback;

#define READBACK_BYTES (1 << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    (void)argc;
    (void)argv;
    fd = memfd_create("books-fuzz-log", MFD_CLOEXEC);
    readback = malloc(READBACK_BYTES);
    if (fd < 0 || !readback || !trace_parse_traceparent(tp, sizeof tp - 1, &trace))
        abort();
    log_init(LOG_INFO, fd);
    log_set_project("fuzz-project");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t method_len = nul ? (size_t)(nul - data) : size;
    char *method = fuzz_copy(data, method_len, false);
    char *message = nul ? fuzz_copy(nul + 1, size - method_len - 1, true) : NULL;
    struct log_rpc r = {
        .method = method,
        .method_len = method_len,
        .code = "NOT_FOUND",
        .latency_us = 1234,
        .peer = "ipv4:127.0.0.1:50000",
        .message = message,
        .trace = &trace,
    };
    ssize_t n;

    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    log_rpc(&r);
    log_thread_flush();
    n = pread(fd, readback, READBACK_BYTES, 0);
    FUZZ_CHECK(n > 1);
    FUZZ_CHECK(readback[n - 1] == '\n' && memchr(readback, '\n', (size_t)n) == readback + n - 1);
    if (!fuzz_json_valid(readback, (size_t)n))
        fprintf(stderr, "fuzz: not JSON: %.*s\n", (int)(n > 2000 ? 2000 : n), readback);
    FUZZ_CHECK(fuzz_json_valid(readback, (size_t)n));
    FUZZ_CHECK(readback[0] == '{');
    free(method);
    free(message);
    return 0;
}
