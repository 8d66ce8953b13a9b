/* fuzz_trace: the trace headers a caller sends (traceparent, x-cloud-trace-context), parsed by
 * trace_parse_traceparent() and trace_parse_cloud() from a heap block of exactly the input's size
 * with no NUL after it, as metadata values arrive (a pointer and a length). The input is the
 * header value; both parsers get it.
 * Properties, on success: trace_id is 32 lowercase hex digits, not all zero; span_id is 16
 * lowercase hex digits, not all zero (traceparent always; x-cloud-trace-context, or empty when
 * the header had no span or span 0); and the ids are the ones in the header. */
#include <string.h>

#include "books/trace.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static bool lower_hex(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

static void check_ids(const struct trace_context *t, bool span_required)
{
    FUZZ_CHECK(memchr(t->trace_id, '\0', sizeof t->trace_id) == t->trace_id + 32);
    FUZZ_CHECK(lower_hex(t->trace_id, 32));
    if (span_required || t->span_id[0]) {
        FUZZ_CHECK(memchr(t->span_id, '\0', sizeof t->span_id) == t->span_id + 16);
        FUZZ_CHECK(lower_hex(t->span_id, 16));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = fuzz_copy(data, size, false);
    struct trace_context t;

    memset(&t, 0x7f, sizeof t);
    if (trace_parse_traceparent(v, size, &t)) {
        check_ids(&t, true);
        FUZZ_CHECK(size >= 55);
        FUZZ_CHECK(memcmp(t.trace_id, v + 3, 32) == 0 && memcmp(t.span_id, v + 36, 16) == 0);
    }
    memset(&t, 0x7f, sizeof t);
    if (trace_parse_cloud(v, size, &t)) {
        check_ids(&t, false);
        FUZZ_CHECK(size >= 32);
        for (size_t i = 0; i < 32; i++) {
            char c = v[i] >= 'A' && v[i] <= 'F' ? (char)(v[i] - 'A' + 'a') : v[i];
            FUZZ_CHECK(t.trace_id[i] == c);
        }
    }
    free(v);
    return 0;
}
