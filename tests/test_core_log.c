/* test_core_log.c: gRPC core's gpr_log lines come out of the JSON log (core_log.h). The log points
 * at a temporary file; core's own filter is opened with gpr_set_log_verbosity (grpc_init is not
 * needed for gpr_log), and each test reads back what one gpr_log call wrote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <grpc/support/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "books/core_log.h"
#include "books/log.h"

static FILE *g_file;

static int setup(void **state)
{
    (void)state;
    g_file = tmpfile();
    if (!g_file)
        return -1;
    log_init(LOG_DEBUG, fileno(g_file));
    core_log_install();
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_init(LOG_INFO, -1);
    fclose(g_file);
    return 0;
}

/* Everything written since the last call, NUL-terminated, in a static buffer. */
static const char *output(void)
{
    static char buf[16384];
    static long done;
    long end = lseek(fileno(g_file), 0, SEEK_END);
    size_t n = (size_t)(end - done);
    assert_true(n < sizeof buf);
    assert_int_equal(pread(fileno(g_file), buf, n, done), (ssize_t)n);
    buf[n] = '\0';
    done = end;
    return buf;
}

static void test_severity_mapping(void **state)
{
    (void)state;
    assert_int_equal(core_log_level(GPR_LOG_SEVERITY_DEBUG), LOG_DEBUG);
    assert_int_equal(core_log_level(GPR_LOG_SEVERITY_INFO), LOG_INFO);
    assert_int_equal(core_log_level(GPR_LOG_SEVERITY_ERROR), LOG_ERROR);
    assert_int_equal(core_log_level((gpr_log_severity)42), LOG_ERROR);
}

static void test_each_severity_is_one_json_line(void **state)
{
    (void)state;
    static const struct {
        gpr_log_severity sev;
        const char *name;
    } cases[] = {{GPR_LOG_SEVERITY_DEBUG, "DEBUG"},
                 {GPR_LOG_SEVERITY_INFO, "INFO"},
                 {GPR_LOG_SEVERITY_ERROR, "ERROR"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gpr_log("src/core/x/hpack_parser.cc", 1218, cases[i].sev, "Error parsing %s", "metadata");
        const char *out = output();
        char want[128];
        snprintf(want, sizeof want, "{\"severity\":\"%s\",\"message\":\"Error parsing metadata\"",
                 cases[i].name);
        assert_true(strncmp(out, want, strlen(want)) == 0);
        assert_non_null(strstr(out, ",\"logger\":\"grpc-core\",\"file\":"
                                    "\"src/core/x/hpack_parser.cc\",\"line\":1218}\n"));
        assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1); /* exactly one line */
    }
}

static void test_text_is_escaped(void **state)
{
    (void)state;
    gpr_log("f.cc", 7, GPR_LOG_SEVERITY_ERROR, "key=content-type value=\"a\nb\\\x01\xff\"");
    const char *out = output();
    assert_non_null(strstr(out, "\"message\":\"key=content-type value=\\\"a\\nb\\\\\\u0001"));
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
}

static void test_our_level_filters_core_lines(void **state)
{
    (void)state;
    log_init(LOG_ERROR, fileno(g_file));
    gpr_log("f.cc", 1, GPR_LOG_SEVERITY_INFO, "trace line");
    assert_string_equal(output(), "");
    gpr_log("f.cc", 2, GPR_LOG_SEVERITY_ERROR, "error line");
    assert_non_null(strstr(output(), "\"severity\":\"ERROR\",\"message\":\"error line\""));
    /* Core's own filter comes first. */
    log_init(LOG_DEBUG, fileno(g_file));
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    gpr_log("f.cc", 3, GPR_LOG_SEVERITY_DEBUG, "filtered by core");
    assert_string_equal(output(), "");
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_DEBUG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_severity_mapping),
        cmocka_unit_test(test_each_severity_is_one_json_line),
        cmocka_unit_test(test_text_is_escaped),
        cmocka_unit_test(test_our_level_filters_core_lines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
