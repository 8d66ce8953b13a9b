/* test_trace.c: the trace-context parsers. Well-formed headers give exactly the ids and sampling
 * flag Cloud Logging needs; anything malformed is rejected whole, so nothing unvalidated reaches a
 * log line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "books/trace.h"

static bool tp(const char *v, struct trace_context *t)
{
    return trace_parse_traceparent(v, strlen(v), t);
}

static bool cloud(const char *v, struct trace_context *t)
{
    return trace_parse_cloud(v, strlen(v), t);
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    struct trace_context t;
    assert_true(tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
    assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(t.span_id, "00f067aa0ba902b7");
    assert_true(t.sampled);
    assert_true(tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
    assert_false(t.sampled);
    assert_true(tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &t));
    assert_true(t.sampled);
    /* A later version may append fields after a '-'. */
    assert_true(tp("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", &t));
    assert_true(tp("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    struct trace_context t;
    const char *bad[] = {
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* v00 has 4 fields */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* forbidden version */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero parent id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   /* upper case */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   /* not hex */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e4736\"-0f067aa0ba902b7-01",  /* quote */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  /* later version, no '-' */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(tp(bad[i], &t));
}

static void test_cloud_valid(void **state)
{
    (void)state;
    struct trace_context t;
    assert_true(cloud("105445aa7843bc8bf206b12000100000/1;o=1", &t));
    assert_string_equal(t.trace_id, "105445aa7843bc8bf206b12000100000");
    assert_string_equal(t.span_id, "0000000000000001");
    assert_true(t.sampled);
    assert_true(cloud("105445AA7843BC8BF206B12000100000/18446744073709551615;o=0", &t));
    assert_string_equal(t.trace_id, "105445aa7843bc8bf206b12000100000");
    assert_string_equal(t.span_id, "ffffffffffffffff");
    assert_false(t.sampled);
    assert_true(cloud("105445aa7843bc8bf206b12000100000", &t));
    assert_string_equal(t.span_id, "");
    assert_false(t.sampled);
    assert_true(cloud("105445aa7843bc8bf206b12000100000/123", &t));
    assert_string_equal(t.span_id, "000000000000007b");
}

static void test_cloud_invalid(void **state)
{
    (void)state;
    struct trace_context t;
    const char *bad[] = {
        "",
        "105445aa7843bc8bf206b1200010000",                          /* 31 digits */
        "00000000000000000000000000000000/1;o=1",                   /* zero trace */
        "105445aa7843bc8bf206b12000100000/;o=1",                    /* empty span */
        "105445aa7843bc8bf206b12000100000/18446744073709551616",    /* span overflows */
        "105445aa7843bc8bf206b12000100000/1;o=2",                   /* options */
        "105445aa7843bc8bf206b12000100000/1;o=1;x",                 /* trailing junk */
        "105445aa7843bc8bf206b12000100000/1x",                      /* junk in span */
        "105445aa7843bc8bf206b1200010000z/1",                       /* not hex */
        "105445aa7843bc8bf206b12000100000\"/1",                     /* quote */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(cloud(bad[i], &t));
}

static void test_length_is_respected(void **state)
{
    (void)state;
    struct trace_context t;
    /* Values are not NUL-terminated in gRPC metadata: only `len` bytes count. */
    const char *v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01GARBAGE";
    assert_true(trace_parse_traceparent(v, 55, &t));
    assert_false(trace_parse_traceparent(v, 54, &t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid), cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_cloud_valid),       cmocka_unit_test(test_cloud_invalid),
        cmocka_unit_test(test_length_is_respected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
