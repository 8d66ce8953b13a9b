/* test_resources.c: the memory budget's inputs. The cgroup limit files are parsed strictly (a wrong
 * number would size the whole process's budget), "max" and v1's "unlimited" mean no limit, v2
 * wins over v1, and the setting wins over both; the open-files limit is raised to the hard one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "books/error.h"
#include "books/resources.h"

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"max\n", 0, 0},
        {"max", 0, 0},
        {"536870912\n", 0, 536870912},
        {"1", 0, 1},
        {"9223372036854771712\n", 0, 0}, /* cgroup v1's "unlimited" */
        {"4611686018427387904", 0, 0},   /* 2^62: treated as unlimited */
        {"4611686018427387903", 0, 4611686018427387903ull},
        {"18446744073709551615", 0, 0},
        {"18446744073709551616", BOOKS_EINVAL, 0}, /* overflows */
        {"000000000000000000001", BOOKS_EINVAL, 0}, /* 21 digits */
        {"", BOOKS_EINVAL, 0},
        {"\n", BOOKS_EINVAL, 0},
        {"-1", BOOKS_EINVAL, 0},
        {"+5", BOOKS_EINVAL, 0},
        {" 5", BOOKS_EINVAL, 0},
        {"5 ", BOOKS_EINVAL, 0},
        {"5\n\n", BOOKS_EINVAL, 0},
        {"0x10", BOOKS_EINVAL, 0},
        {"maxx", BOOKS_EINVAL, 0},
        {"MAX", BOOKS_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t bytes = 12345;
        int rc = resources_parse_memory_limit(cases[i].text, strlen(cases[i].text), &bytes);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": rc %d, want %d", cases[i].text, rc, cases[i].rc);
        assert_int_equal(bytes, cases[i].rc ? 12345 : cases[i].bytes);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cgroup_files_and_budget(void **state)
{
    (void)state;
    char root[] = "/tmp/books-test-cgroup-XXXXXX", v1dir[64], v1[96], v2[96];
    enum resources_memory_source src;
    assert_non_null(mkdtemp(root));
    snprintf(v1dir, sizeof v1dir, "%s/memory", root);
    snprintf(v1, sizeof v1, "%s/memory.limit_in_bytes", v1dir);
    snprintf(v2, sizeof v2, "%s/memory.max", root);

    /* Nothing there: no limit; the budget falls back to the default. */
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 0);
    assert_int_equal(src, RESOURCES_MEMORY_NONE);
    assert_int_equal(resources_memory_budget(0, root, &src),
                     (uint64_t)RESOURCES_DEFAULT_MEMORY_MB << 20);
    assert_int_equal(src, RESOURCES_MEMORY_DEFAULT);

    /* v1 only. */
    assert_int_equal(mkdir(v1dir, 0700), 0);
    write_file(v1, "1073741824\n");
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 1073741824);
    assert_int_equal(src, RESOURCES_MEMORY_CGROUP_V1);
    write_file(v1, "9223372036854771712\n");
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 0);

    /* v2 wins; "max" is no limit; garbage is ignored (and v1's answer is not used then). */
    write_file(v1, "1073741824\n");
    write_file(v2, "536870912\n");
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 536870912);
    assert_int_equal(src, RESOURCES_MEMORY_CGROUP_V2);
    assert_int_equal(resources_memory_budget(0, root, &src), 536870912);
    write_file(v2, "max\n");
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 0);
    assert_int_equal(src, RESOURCES_MEMORY_NONE);
    write_file(v2, "lots\n");
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 1073741824);
    assert_int_equal(src, RESOURCES_MEMORY_CGROUP_V1);
    write_file(v2, "123456789012345678901234567890\n"); /* longer than any number */
    assert_int_equal(resources_cgroup_memory_limit(root, &src), 1073741824);

    /* The setting beats the cgroup. */
    write_file(v2, "536870912\n");
    assert_int_equal(resources_memory_budget(100, root, &src), 100u << 20);
    assert_int_equal(src, RESOURCES_MEMORY_SETTING);
    assert_string_equal(resources_memory_source_name(src), "setting");

    unlink(v1);
    rmdir(v1dir);
    unlink(v2);
    rmdir(root);
}

static void test_raise_nofile(void **state)
{
    (void)state;
    struct rlimit rl;
    uint64_t soft, hard;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    /* Lower the soft limit first so there is something to raise. */
    struct rlimit lower = {rl.rlim_max > 256 ? 256 : rl.rlim_max, rl.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lower), 0);
    assert_int_equal(resources_raise_nofile(&soft, &hard), 0);
    assert_int_equal(soft, rl.rlim_max);
    assert_int_equal(hard, rl.rlim_max);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(rl.rlim_cur, rl.rlim_max);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_cgroup_files_and_budget),
        cmocka_unit_test(test_raise_nofile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
