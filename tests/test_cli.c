/* test_cli.c: the `books` command line without a server: how argv and the environment become
 * struct cli_args (options on either side of the command, --flag=value, the last value winning,
 * authors in order, bare IDs, targets from PORT or a Cloud Run URL, tokens from the flag or
 * BOOKS_TOKEN, strict numbers), that every usage error is rejected with a message naming what to
 * fix, that --help and --version win over a wrong line, and the output formats: one escaped line
 * per book, proto3 JSON, and the two error shapes. The calls themselves are tested against the
 * real server in tests/wire/test_cli.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/arena.h"
#include "books/cli.h"
#include "books/error.h"

#define MAX_ARGS 16

/* Parses a NULL-terminated list of arguments (argv[0] is added) with `envp`. */
static int parse_env(struct cli_args *a, char *err, char *const envp[], ...)
{
    char *argv[MAX_ARGS + 1] = {"books"};
    int argc = 1;
    va_list ap;
    va_start(ap, envp);
    for (char *s; (s = va_arg(ap, char *)) != NULL;) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = s;
    }
    va_end(ap);
    argv[argc] = NULL;
    return cli_parse(a, argc, argv, envp, err, CLI_ERR_BYTES);
}

static char *const no_env[] = {NULL};

#define PARSE(a, err, ...) parse_env(a, err, no_env, __VA_ARGS__, (char *)NULL)

static void test_get_names(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];

    assert_int_equal(PARSE(&a, err, "get", "hobbit"), 0);
    assert_int_equal(a.action, CLI_RUN);
    assert_int_equal(a.command, CLI_GET);
    assert_string_equal(a.name, "books/hobbit"); /* a bare ID means books/ID */
    cli_args_cleanup(&a);

    assert_int_equal(PARSE(&a, err, "get", "books/hobbit"), 0);
    assert_string_equal(a.name, "books/hobbit");
    cli_args_cleanup(&a);

    /* Anything with a '/' goes as it is: the server says what is wrong with it. */
    assert_int_equal(PARSE(&a, err, "get", "shelves/1"), 0);
    assert_string_equal(a.name, "shelves/1");
    cli_args_cleanup(&a);
    assert_int_equal(PARSE(&a, err, "get", ""), 0);
    assert_string_equal(a.name, "");
    cli_args_cleanup(&a);

    /* After "--", a leading '-' is part of the name. */
    assert_int_equal(PARSE(&a, err, "get", "--", "-x"), 0);
    assert_string_equal(a.name, "books/-x");
    cli_args_cleanup(&a);
}

static void test_defaults(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    assert_int_equal(PARSE(&a, err, "list"), 0);
    assert_int_equal(a.command, CLI_LIST);
    assert_string_equal(a.target, "localhost:8080");
    assert_false(a.tls);
    assert_null(a.token);
    assert_int_equal(a.timeout_ms, 10000);
    assert_false(a.json);
    assert_int_equal(a.page_size, 0);
    assert_null(a.page_token);
    assert_false(a.all);
    cli_args_cleanup(&a);
    /* cleanup leaves a zeroed struct, and a second cleanup is harmless. */
    assert_null(a.target);
    cli_args_cleanup(&a);
}

static void test_options_on_both_sides_and_last_wins(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    assert_int_equal(PARSE(&a, err, "--addr", "a:1", "--json", "list", "--page-size=7",
                           "--addr=b:2", "--page-token", "tok", "--all", "--tls", "--timeout",
                           "2.5"),
                     0);
    assert_string_equal(a.target, "b:2");
    assert_true(a.json);
    assert_true(a.tls);
    assert_true(a.all);
    assert_int_equal(a.page_size, 7);
    assert_string_equal(a.page_token, "tok");
    assert_int_equal(a.timeout_ms, 2500);
    cli_args_cleanup(&a);
}

static void test_create_fields(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    assert_int_equal(PARSE(&a, err, "create", "--id", "hobbit", "--title", "The Hobbit", "--author",
                           "J. R. R. Tolkien", "--author=Christopher Tolkien", "--publisher",
                           "Allen & Unwin", "--author", "-dash"),
                     0);
    assert_int_equal(a.command, CLI_CREATE);
    assert_string_equal(a.book_id, "hobbit");
    assert_string_equal(a.title, "The Hobbit");
    assert_string_equal(a.publisher, "Allen & Unwin");
    assert_int_equal(a.n_authors, 3);
    assert_string_equal(a.authors[0], "J. R. R. Tolkien");
    assert_string_equal(a.authors[1], "Christopher Tolkien");
    assert_string_equal(a.authors[2], "-dash"); /* a value may start with '-' */
    cli_args_cleanup(&a);

    /* Missing fields are the server's to report (with every violation), not a usage error. */
    assert_int_equal(PARSE(&a, err, "create"), 0);
    assert_null(a.book_id);
    assert_null(a.title);
    assert_int_equal(a.n_authors, 0);
    cli_args_cleanup(&a);
}

static void test_page_size(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int ok;
        int32_t want;
    } cases[] = {
        {"0", 1, 0},    {"25", 1, 25},        {"2147483647", 1, INT32_MAX},
        {"-1", 0, 0},   {"2147483648", 0, 0}, {"10x", 0, 0},
        {"", 0, 0},     {" 1", 0, 0},         {"+1", 0, 0},
        {"0x10", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cli_args a;
        char err[CLI_ERR_BYTES];
        int rc = PARSE(&a, err, "list", "--page-size", (char *)cases[i].v);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_int_equal(a.page_size, cases[i].want);
            cli_args_cleanup(&a);
        } else {
            assert_int_equal(rc, BOOKS_EINVAL);
            assert_non_null(strstr(err, "--page-size"));
            assert_null(a.target); /* zeroed on failure: nothing to free */
        }
    }
}

static void test_timeout(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int want_ms; /* 0: rejected */
    } cases[] = {
        {"10", 10000}, {"2.5", 2500}, {".25", 250},
        {"1.", 1000},  {"0.0001", 1}, {"86400", 86400000},
        {"0", 0},      {"0.0", 0},    {"-1", 0},
        {"1e3", 0},    {"inf", 0},    {"nan", 0},
        {"86401", 0},  {"", 0},       {"1.2.3", 0},
        {".", 0},      {"5s", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cli_args a;
        char err[CLI_ERR_BYTES];
        int rc = PARSE(&a, err, "list", "--timeout", (char *)cases[i].v);
        if (cases[i].want_ms) {
            assert_int_equal(rc, 0);
            assert_int_equal(a.timeout_ms, cases[i].want_ms);
            cli_args_cleanup(&a);
        } else {
            assert_int_equal(rc, BOOKS_EINVAL);
            assert_non_null(strstr(err, "--timeout"));
        }
    }
}

static void test_target_from_port(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    char *port9000[] = {"HOME=/root", "PORT=9000", NULL};
    char *empty[] = {"PORT=", NULL};
    assert_int_equal(parse_env(&a, err, port9000, "list", (char *)NULL), 0);
    assert_string_equal(a.target, "localhost:9000");
    cli_args_cleanup(&a);
    assert_int_equal(parse_env(&a, err, empty, "list", (char *)NULL), 0);
    assert_string_equal(a.target, "localhost:8080");
    cli_args_cleanup(&a);
    /* --addr wins over PORT, even a bad PORT. */
    char *bad_port[] = {"PORT=abc", NULL};
    assert_int_equal(parse_env(&a, err, bad_port, "list", "--addr", "h:1", (char *)NULL), 0);
    assert_string_equal(a.target, "h:1");
    cli_args_cleanup(&a);

    static char *const bad[][2] = {
        {"PORT=abc", NULL}, {"PORT=0", NULL}, {"PORT=65536", NULL}, {"PORT=-1", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_env(&a, err, bad[i], "list", (char *)NULL), BOOKS_EINVAL);
        assert_non_null(strstr(err, "PORT"));
        assert_non_null(strstr(err, "--addr"));
    }
}

static void test_addr_urls(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        const char *target;
        bool tls;
    } cases[] = {
        {"https://books-abc-uc.a.run.app", "books-abc-uc.a.run.app:443", true},
        {"https://books-abc-uc.a.run.app/", "books-abc-uc.a.run.app:443", true},
        {"https://h:8443/some/path?q", "h:8443", true},
        {"http://localhost:8080", "localhost:8080", false},
        {"http://localhost", "localhost:80", false},
        {"https://[::1]/", "[::1]:443", true},
        {"https://[::1]:9", "[::1]:9", true},
        {"localhost:1", "localhost:1", false},
        {"unix:/tmp/books.sock", "unix:/tmp/books.sock", false},
        {"dns:///books.example.com:443", "dns:///books.example.com:443", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cli_args a;
        char err[CLI_ERR_BYTES];
        assert_int_equal(PARSE(&a, err, "list", "--addr", (char *)cases[i].addr), 0);
        assert_string_equal(a.target, cases[i].target);
        assert_int_equal(a.tls, cases[i].tls);
        cli_args_cleanup(&a);
    }
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    assert_int_equal(PARSE(&a, err, "list", "--addr", "https://"), BOOKS_EINVAL);
    assert_non_null(strstr(err, "no host"));
    assert_int_equal(PARSE(&a, err, "list", "--addr", ""), BOOKS_EINVAL);
    assert_non_null(strstr(err, "--addr"));
}

static void test_tokens(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    char *env[] = {"BOOKS_TOKEN=from-env", NULL};
    char *empty_env[] = {"BOOKS_TOKEN=", NULL};
    char *bad_env[] = {"BOOKS_TOKEN=abc\n", NULL};

    assert_int_equal(parse_env(&a, err, env, "list", (char *)NULL), 0);
    assert_string_equal(a.token, "from-env");
    cli_args_cleanup(&a);
    assert_int_equal(parse_env(&a, err, env, "list", "--token", "from-flag", (char *)NULL), 0);
    assert_string_equal(a.token, "from-flag");
    cli_args_cleanup(&a);
    assert_int_equal(parse_env(&a, err, empty_env, "list", (char *)NULL), 0);
    assert_null(a.token);
    cli_args_cleanup(&a);

    assert_int_equal(parse_env(&a, err, bad_env, "list", (char *)NULL), BOOKS_EINVAL);
    assert_non_null(strstr(err, "BOOKS_TOKEN"));
    assert_int_equal(PARSE(&a, err, "list", "--token", ""), BOOKS_EINVAL);
    assert_non_null(strstr(err, "--token is empty"));
    assert_int_equal(PARSE(&a, err, "list", "--token", "a b"), BOOKS_EINVAL);
    assert_non_null(strstr(err, "--token"));
    assert_int_equal(PARSE(&a, err, "list", "--token", "caf\xc3\xa9"), BOOKS_EINVAL);
}

/* A bearer token travels only where nobody else can read it: over TLS, or to this machine. To any
 * other host in plaintext it is refused, naming the way out, unless --insecure-token says so. */
static void test_token_never_in_plaintext_to_another_host(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    static const char *const loopback[] = {"localhost:8080", "127.0.0.1:80", "127.1.2.3:9",
                                           "[::1]:8080", "unix:/run/books.sock",
                                           "dns:///localhost:80", "ipv4:127.0.0.1:80"};
    static const char *const remote[] = {"10.0.0.1:80", "books.example.com:8080",
                                         "127.0.0.1.evil.example:80", "1127.0.0.1:80",
                                         "http://books.example.com", "[::2]:80"};
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", loopback[i]), 0);
        cli_args_cleanup(&a);
    }
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
        assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", remote[i]), BOOKS_EINVAL);
        assert_non_null(strstr(err, "refusing to send the bearer token in plaintext"));
        assert_non_null(strstr(err, "--tls"));
        assert_int_equal(
            PARSE(&a, err, "list", "--token", "t", "--addr", remote[i], "--insecure-token"), 0);
        cli_args_cleanup(&a);
        assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", remote[i], "--tls"), 0);
        cli_args_cleanup(&a);
    }
    /* The refused address is echoed quoted: an address with a newline stays one line. */
    assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", "evil\nhost:80"),
                     BOOKS_EINVAL);
    assert_non_null(strstr(err, "refusing to send the bearer token in plaintext"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", "https://x.a.run.app"), 0);
    assert_true(a.tls);
    cli_args_cleanup(&a);
    /* Without a token, any host goes. */
    assert_int_equal(PARSE(&a, err, "list", "--addr", "10.0.0.1:80"), 0);
    cli_args_cleanup(&a);
}

/* gRPC's ipv4: and ipv6: targets are comma-separated lists (its naming doc), and the channel may
 * connect to any address in one: a token goes in plaintext only when every address is loopback.
 * The message names the first address that is not, quoted, and the list. */
static void test_token_and_target_lists(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    static const char *const loopback[] = {
        "ipv4:127.0.0.1:8080,127.0.0.2:8081",
        "ipv4:127.0.0.1:1,127.255.255.254:65535,127.0.0.1",
        "ipv4:127.0.0.1", /* the port is optional: 443 */
        "ipv6:[::1]:8080,[::1]:8081",
        "ipv6:::1",
        "ipv6:[::1]",
        "ipv6:[::ffff:127.0.0.1]:80,[0:0:0:0:0:0:0:1]:81",
        "unix:/run/a.sock,/run/b.sock",
        "unix-abstract:books,other",
    };
    /* Each list, and the address the message must name. */
    static const struct {
        const char *target, *offending;
    } remote[] = {
        {"ipv4:127.0.0.1:1,203.0.113.5:443", "203.0.113.5:443"},
        {"ipv4:203.0.113.5:443,127.0.0.1:1", "203.0.113.5:443"},
        {"ipv4:127.0.0.1:1,127.0.0.2:2,10.0.0.1:3", "10.0.0.1:3"},
        {"ipv4:203.0.113.5:443", "203.0.113.5:443"},
        {"ipv4:128.0.0.1:80", "128.0.0.1:80"},
        {"ipv6:[::1]:80,[2001:db8::1]:443", "[2001:db8::1]:443"},
        {"ipv6:[::1]:80,[::ffff:203.0.113.5]:443", "[::ffff:203.0.113.5]:443"},
        {"ipv6:::2", "::2"},
        {"ipv6:[::127.0.0.1]:80", "[::127.0.0.1]:80"}, /* IPv4-compatible, not loopback */
    };
    /* Lists gRPC would read differently, or not at all: refused, naming the bad piece. */
    static const struct {
        const char *target, *offending;
    } malformed[] = {
        {"ipv4:", ""},
        {"ipv4:127.0.0.1:80,", ""},
        {"ipv4:127.0.0.1:80,,127.0.0.1:81", ""},
        {"ipv4:,127.0.0.1:80", ""},
        {"ipv4:localhost:80", "localhost:80"},
        {"ipv4:127.0.0.1:", "127.0.0.1:"},
        {"ipv4:127.0.0.1:65536", "127.0.0.1:65536"},
        {"ipv4:127.0.0.1:80:81", "127.0.0.1:80:81"},
        {"ipv4:127.0.0.1:8x", "127.0.0.1:8x"},
        {"ipv4:127.1:80", "127.1:80"},
        {"ipv4:127.0.0.01:80", "127.0.0.01:80"},
        {"ipv4:[127.0.0.1]:80", "[127.0.0.1]:80"},
        {"ipv4://127.0.0.1:80", "//127.0.0.1:80"},
        {"ipv4:///127.0.0.1:80", "///127.0.0.1:80"},
        /* percent-escapes gRPC's URI parser decodes: a comma, then another host */
        {"ipv4:127.0.0.1:80%2C203.0.113.5:443", "127.0.0.1:80%2C203.0.113.5:443"},
        {"ipv4:127.0.0.1:80?x", "127.0.0.1:80?x"},
        {"ipv6:[::1]:80,::1:80", "::1:80"},
        {"ipv6:[::1", "[::1"},
        {"ipv6:[::1]80", "[::1]80"},
        {"ipv6:[::1]:", "[::1]:"},
        {"ipv6:[]:80", "[]:80"},
        {"ipv6:[::1%lo]:80", "[::1%lo]:80"},
        {"ipv6:127.0.0.1", "127.0.0.1"},
    };
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        if (PARSE(&a, err, "list", "--token", "t", "--addr", loopback[i]) != 0)
            fail_msg("%s: %s", loopback[i], err);
        assert_string_equal(a.target, loopback[i]);
        cli_args_cleanup(&a);
    }
    for (int kind = 0; kind < 2; kind++) {
        size_t n = kind ? sizeof malformed / sizeof malformed[0] : sizeof remote / sizeof remote[0];
        for (size_t i = 0; i < n; i++) {
            const char *target = kind ? malformed[i].target : remote[i].target;
            const char *offending = kind ? malformed[i].offending : remote[i].offending;
            char want[128];
            if (PARSE(&a, err, "list", "--token", "t", "--addr", target) != BOOKS_EINVAL)
                fail_msg("%s: a token was allowed", target);
            snprintf(want, sizeof want, "plaintext to \"%s\" (an address of \"%s\" that is not",
                     offending, target);
            if (!strstr(err, want))
                fail_msg("%s: expected '%s' in: %s", target, want, err);
            assert_non_null(strstr(err, "--tls"));
            assert_non_null(strstr(err, "--insecure-token"));
            /* The ways out still work. */
            assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", target, "--tls"), 0);
            cli_args_cleanup(&a);
            assert_int_equal(
                PARSE(&a, err, "list", "--token", "t", "--addr", target, "--insecure-token"), 0);
            cli_args_cleanup(&a);
            /* And without a token, the list goes to gRPC as it is. */
            assert_int_equal(PARSE(&a, err, "list", "--addr", target), 0);
            cli_args_cleanup(&a);
        }
    }
    /* The token from the environment is held to the same rule. */
    char *const env[] = {"BOOKS_TOKEN=t", NULL};
    assert_int_equal(
        parse_env(&a, err, env, "list", "--addr", "ipv4:127.0.0.1:1,203.0.113.5:443", (char *)NULL),
        BOOKS_EINVAL);
    assert_non_null(strstr(err, "\"203.0.113.5:443\""));
    /* A hostile offending address is quoted too: one line, cut with "...". */
    assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr",
                           "ipv4:127.0.0.1:1,evil\nhost:80,127.0.0.1:2"),
                     BOOKS_EINVAL);
    assert_non_null(
        strstr(err, "to \"evil?host:80\" (an address of \"ipv4:127.0.0.1:1,evil?host:80,"));
    assert_null(strchr(err, '\n'));
    char long_list[200];
    snprintf(long_list, sizeof long_list, "ipv4:127.0.0.1:1,%0100d", 7);
    assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", long_list), BOOKS_EINVAL);
    assert_non_null(strstr(err, "to \"000000000000000000000000000000000000000000000000...\" ("));
    /* A single address is named as before, quoted. */
    assert_int_equal(PARSE(&a, err, "list", "--token", "t", "--addr", "10.0.0.1:80"), BOOKS_EINVAL);
    assert_non_null(strstr(err, "in plaintext to \"10.0.0.1:80\", where"));
}

/* Each bad line, and a piece of what its message must say. */
static void test_usage_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args[5];
        const char *says;
    } cases[] = {
        {{NULL}, "missing command"},
        {{"--json", NULL}, "missing command"},
        {{"bogus", NULL}, "unknown command \"bogus\""},
        {{"get", NULL}, "missing NAME"},
        {{"get", "a", "b", NULL}, "unexpected extra argument \"b\""},
        {{"list", "x", NULL}, "takes no arguments"},
        {{"create", "The Hobbit", NULL}, "takes no arguments"},
        {{"list", "--nope", NULL}, "unknown option '--nope' for 'books list'"},
        {{"list", "--nope=1", NULL}, "unknown option '--nope'"},
        {{"-x", "list", NULL}, "unknown option '-x'"},
        {{"get", "a", "--page-size", "3", NULL}, "--page-size is not an option of 'books get'"},
        {{"--title", "x", "create", NULL}, "--title is an option of 'books create'"},
        {{"create", "--title", NULL}, "--title needs a value"},
        {{"list", "--json=yes", NULL}, "--json takes no value"},
        {{"list", "--all=1", NULL}, "--all takes no value"},
        /* The first problem is the one reported. */
        {{"bogus", "--nope", NULL}, "unknown command"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[8] = {"books"};
        int argc = 1;
        for (size_t j = 0; cases[i].args[j]; j++)
            argv[argc++] = (char *)cases[i].args[j];
        struct cli_args a;
        char err[CLI_ERR_BYTES];
        assert_int_equal(cli_parse(&a, argc, argv, no_env, err, sizeof err), BOOKS_EINVAL);
        if (!strstr(err, cases[i].says))
            fail_msg("case %zu: message \"%s\" does not say \"%s\"", i, err, cases[i].says);
    }
}

static void test_help_and_version_win(void **state)
{
    (void)state;
    struct cli_args a;
    char err[CLI_ERR_BYTES];
    assert_int_equal(PARSE(&a, err, "create", "--bogus", "--help"), 0);
    assert_int_equal(a.action, CLI_HELP);
    assert_int_equal(a.command, CLI_CREATE);
    cli_args_cleanup(&a);
    assert_int_equal(PARSE(&a, err, "-h"), 0);
    assert_int_equal(a.action, CLI_HELP);
    assert_int_equal(a.command, CLI_NO_COMMAND);
    cli_args_cleanup(&a);
    assert_int_equal(PARSE(&a, err, "help", "list"), 0);
    assert_int_equal(a.action, CLI_HELP);
    assert_int_equal(a.command, CLI_LIST);
    cli_args_cleanup(&a);
    assert_int_equal(PARSE(&a, err, "get", "-V"), 0);
    assert_int_equal(a.action, CLI_VERSION);
    cli_args_cleanup(&a);
    assert_int_equal(PARSE(&a, err, "--help", "--version"), 0);
    assert_int_equal(a.action, CLI_HELP);
    cli_args_cleanup(&a);
    /* After "--" it is a name, not a flag. */
    assert_int_equal(PARSE(&a, err, "get", "--", "--help"), 0);
    assert_int_equal(a.action, CLI_RUN);
    assert_string_equal(a.name, "books/--help");
    cli_args_cleanup(&a);
}

/* The help lists every option of a command, and only those. */
static void test_help_text(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cli_print_help(f, CLI_LIST);
    fclose(f);
    assert_non_null(strstr(text, "Usage: books list"));
    assert_non_null(strstr(text, "--page-size N"));
    assert_non_null(strstr(text, "--page-token TOKEN"));
    assert_non_null(strstr(text, "--all"));
    assert_non_null(strstr(text, "--addr HOST:PORT"));
    assert_non_null(strstr(text, "--timeout SECONDS"));
    assert_non_null(strstr(text, "\"$(gcloud auth print-identity-token)\"")); /* not wrapped */
    assert_null(strstr(text, "--title"));
    free(text);

    f = open_memstream(&text, &len);
    cli_print_help(f, CLI_NO_COMMAND);
    fclose(f);
    assert_non_null(strstr(text, "create"));
    assert_non_null(strstr(text, "Exit status"));
    assert_null(strstr(text, "--page-size"));
    for (char *line = text; *line;) { /* nothing wider than 80 columns */
        size_t n = strcspn(line, "\n");
        assert_true(n <= 80);
        line += n + (line[n] != '\0');
    }
    free(text);
}

static char *format_book(const Books__V1__Book *b, bool json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(cli_print_book(f, b, json), 0);
    fclose(f);
    return text;
}

static void test_book_output(void **state)
{
    (void)state;
    char *authors[] = {"J. R. R. Tolkien", "C\\T"};
    Books__V1__Book b = BOOKS__V1__BOOK__INIT;
    b.name = "books/hobbit";
    b.display_name = "The \"Hobbit\"\n\x1b[31mred\xc2\x9b \xe6\x97\xa5";
    b.n_authors = 2;
    b.authors = authors;
    b.publisher = "Allen & Unwin";

    char *line = format_book(&b, false);
    assert_string_equal(line,
                        "books/hobbit  \"The \\\"Hobbit\\\"\\n\\x1b[31mred\\u009b \xe6\x97\xa5\""
                        "  by J. R. R. Tolkien, C\\\\T  (Allen & Unwin)\n");
    free(line);
    char *json = format_book(&b, true);
    assert_string_equal(json, "{\"name\":\"books/hobbit\",\"displayName\":\"The \\\"Hobbit\\\"\\n"
                              "\\u001b[31mred\xc2\x9b \xe6\x97\xa5\",\"authors\":[\"J. R. R. "
                              "Tolkien\",\"C\\\\T\"],\"publisher\":\"Allen & Unwin\"}\n");
    free(json);

    /* Empty fields: no "by", no parentheses; JSON keeps every key. */
    Books__V1__Book empty = BOOKS__V1__BOOK__INIT;
    empty.name = "books/e";
    line = format_book(&empty, false);
    assert_string_equal(line, "books/e  \"\"\n");
    free(line);
    json = format_book(&empty, true);
    assert_string_equal(json, "{\"name\":\"books/e\",\"displayName\":\"\",\"authors\":[],"
                              "\"publisher\":\"\"}\n");
    free(json);
}

static char *format_error(const struct client_error *e, bool json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(cli_print_error(f, e, json), 0);
    fclose(f);
    return text;
}

static void test_error_output(void **state)
{
    (void)state;
    struct client_error e;
    books_error_init(&e.detail, NULL);
    e.status = GRPC_STATUS_INVALID_ARGUMENT;
    books_error_set(&e.detail, BOOKS_EINVAL, "FIELD_VIOLATION", "invalid CreateBookRequest");
    books_error_add_violation(&e.detail, "book.display_name", "required: the book's title");
    books_error_add_violation(&e.detail, "book.authors[1]", "must not be \"empty\"");

    char *text = format_error(&e, false);
    assert_string_equal(text, "INVALID_ARGUMENT: invalid CreateBookRequest\n"
                              "  book.display_name: required: the book's title\n"
                              "  book.authors[1]: must not be \"empty\"\n");
    free(text);
    text = format_error(&e, true);
    assert_string_equal(
        text, "{\"error\":{\"code\":3,\"status\":\"INVALID_ARGUMENT\",\"message\":\"invalid "
              "CreateBookRequest\",\"details\":[{\"@type\":\"type.googleapis.com/"
              "google.rpc.ErrorInfo\",\"reason\":\"FIELD_VIOLATION\",\"domain\":"
              "\"books.example.com\",\"metadata\":{}},{\"@type\":\"type.googleapis.com/"
              "google.rpc.BadRequest\",\"fieldViolations\":[{\"field\":\"book.display_name\","
              "\"description\":\"required: the book's title\"},{\"field\":\"book.authors[1]\","
              "\"description\":\"must not be \\\"empty\\\"\"}]}]}}\n");
    free(text);

    /* A transport failure: no details at all. */
    books_error_init(&e.detail, NULL);
    e.status = GRPC_STATUS_UNAVAILABLE;
    books_error_set(&e.detail, BOOKS_EUNAVAIL, NULL, "failed to connect\r\n");
    text = format_error(&e, false);
    assert_string_equal(text, "UNAVAILABLE: failed to connect\\r\\n\n");
    free(text);
    text = format_error(&e, true);
    assert_string_equal(text, "{\"error\":{\"code\":14,\"status\":\"UNAVAILABLE\",\"message\":"
                              "\"failed to connect\\r\\n\",\"details\":[]}}\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_names),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_options_on_both_sides_and_last_wins),
        cmocka_unit_test(test_create_fields),
        cmocka_unit_test(test_page_size),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_target_from_port),
        cmocka_unit_test(test_addr_urls),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_token_never_in_plaintext_to_another_host),
        cmocka_unit_test(test_token_and_target_lists),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_and_version_win),
        cmocka_unit_test(test_help_text),
        cmocka_unit_test(test_book_output),
        cmocka_unit_test(test_error_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
