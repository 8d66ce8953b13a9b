/* test_config.c: config_load() against defaults, environments and command lines, good and bad;
 * the help, version and Markdown actions; and config_cleanup(). Each test gets a fresh fixture
 * (a config, an action and an error buffer) and the teardown frees the config, so valgrind's leak
 * check covers every path, the failing ones included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/config.h"
#include "books/error.h"

/* Not a value config_load() ever sets, to see whether it set one. */
#define UNSET_ACTION ((enum config_action)99)

struct fixture {
    struct books_config cfg;
    enum config_action action;
    char err[CONFIG_ERR_BYTES];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->action = UNSET_ACTION;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    config_cleanup(&f->cfg);
    free(f);
    return 0;
}

/* argv and envp as NULL-terminated literals; argv[0] is supplied. */
#define ARGS(...) ((char *const[]){"books-server", __VA_ARGS__, NULL})
#define NO_ARGS ((char *const[]){"books-server", NULL})
#define ENV(...) ((char *const[]){__VA_ARGS__, NULL})
#define NO_ENV ((char *const[]){NULL})

static int count(char *const v[])
{
    int n = 0;
    while (v[n] != NULL)
        n++;
    return n;
}

static int load(struct fixture *f, char *const argv[], char *const envp[])
{
    memset(f->err, 'X', sizeof f->err); /* a success must leave an empty string, not old bytes */
    f->err[sizeof f->err - 1] = '\0';
    f->action = UNSET_ACTION; /* a failure must leave it untouched */
    return config_load(&f->cfg, count(argv), argv, envp, &f->action, f->err, sizeof f->err);
}

/* Asserts a failed load: BOOKS_EINVAL, a message containing each of the `...` strings, and a
 * config holding nothing (so nothing could leak). */
static void expect_error(struct fixture *f, int rc, const char *want1, const char *want2)
{
    if (rc != BOOKS_EINVAL || strstr(f->err, want1) == NULL ||
        (want2 != NULL && strstr(f->err, want2) == NULL))
        print_error("rc=%d err=\"%s\" want \"%s\" and \"%s\"\n", rc, f->err, want1,
                    want2 ? want2 : "");
    assert_int_equal(rc, BOOKS_EINVAL);
    assert_non_null(strstr(f->err, want1));
    if (want2 != NULL)
        assert_non_null(strstr(f->err, want2));
    assert_null(f->cfg.store);
    assert_int_equal(f->action, UNSET_ACTION);
}

/* The integer settings with their bounds, as the brief and README define them. */
static const struct int_setting {
    const char *env;
    const char *flag;
    size_t offset;
    long min, max, def;
} int_settings[] = {
    {"PORT", "--port", offsetof(struct books_config, port), 0, 65535, 8080},
    {"BOOKS_THREADS", "--threads", offsetof(struct books_config, threads), 0, 1024, 0},
    {"BOOKS_SHUTDOWN_GRACE_MS", "--shutdown-grace-ms",
     offsetof(struct books_config, shutdown_grace_ms), 0, 600000, 8000},
    {"BOOKS_MAX_RECV_BYTES", "--max-recv-bytes", offsetof(struct books_config, max_recv_bytes),
     1024, 1073741824, 4194304},
    {"BOOKS_MAX_CONCURRENT_STREAMS", "--max-concurrent-streams",
     offsetof(struct books_config, max_concurrent_streams), 1, 65536, 100},
    {"BOOKS_MEMORY_LIMIT_MB", "--memory-limit-mb", offsetof(struct books_config, memory_limit_mb),
     0, 1048576, 0},
    {"BOOKS_MAX_CONNECTION_IDLE_MS", "--max-connection-idle-ms",
     offsetof(struct books_config, max_connection_idle_ms), 0, 86400000, 300000},
    {"BOOKS_MAX_CONNECTION_AGE_MS", "--max-connection-age-ms",
     offsetof(struct books_config, max_connection_age_ms), 0, 86400000, 1800000},
    {"BOOKS_MAX_METADATA_BYTES", "--max-metadata-bytes",
     offsetof(struct books_config, max_metadata_bytes), 1024, 1048576, 65536},
};

#define N_INT_SETTINGS (sizeof int_settings / sizeof int_settings[0])

static int field(const struct books_config *cfg, const struct int_setting *s)
{
    return *(const int *)((const char *)cfg + s->offset);
}

/* ---- defaults and precedence ----------------------------------------------------------------- */

static void test_defaults(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load(f, NO_ARGS, NO_ENV), 0);
    assert_int_equal(f->action, CONFIG_RUN);
    assert_string_equal(f->err, "");
    assert_int_equal(f->cfg.port, 8080);
    assert_string_equal(f->cfg.store, "memory:");
    assert_int_equal(f->cfg.threads, 0);
    assert_int_equal(f->cfg.shutdown_grace_ms, 8000);
    assert_int_equal(f->cfg.max_recv_bytes, 4194304);
    assert_int_equal(f->cfg.max_concurrent_streams, 100);
    assert_int_equal(f->cfg.log_level, LOG_INFO);
    assert_string_equal(f->cfg.project, "");
}

static void test_project_ids(void **state)
{
    struct fixture *f = *state;
    const char *good[] = {"my-project-123", "books", "example.com:my-project", "a"};
    const char *bad[] = {"My-Project", "1abc", "my project", "my_project", "proj/../x", "-x",
                         "p\"q",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                         "aaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char flag[160];
        snprintf(flag, sizeof flag, "--project=%s", good[i]);
        char *argv[] = {"books-server", flag, NULL};
        assert_int_equal(config_load(&f->cfg, 2, argv, NULL, &f->action, f->err, sizeof f->err),
                         0);
        assert_string_equal(f->cfg.project, good[i]);
        config_cleanup(&f->cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char env[160];
        snprintf(env, sizeof env, "GOOGLE_CLOUD_PROJECT=%s", bad[i]);
        char *envp[] = {env, NULL};
        assert_int_equal(config_load(&f->cfg, 0, NULL, envp, &f->action, f->err, sizeof f->err),
                         BOOKS_EINVAL);
        assert_non_null(strstr(f->err, "GOOGLE_CLOUD_PROJECT"));
    }
}

static void test_null_envp_and_argv(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(config_load(&f->cfg, 0, NULL, NULL, &f->action, f->err, sizeof f->err), 0);
    assert_int_equal(f->action, CONFIG_RUN);
    assert_int_equal(f->cfg.port, 8080);
    assert_string_equal(f->cfg.store, "memory:");
}

static void test_env_overrides_default(void **state)
{
    struct fixture *f = *state;
    char *const env[] = {"HOME=/root",
                         "PORTX=1", /* a longer name that starts with PORT */
                         "PORT",    /* no '=': not a value */
                         "PORT=9090",
                         "PORT=9191", /* a duplicate: the first wins, as with getenv() */
                         "BOOKS_STORE=sqlite:/var/lib/books.db",
                         "BOOKS_THREADS=4",
                         "BOOKS_SHUTDOWN_GRACE_MS=250",
                         "BOOKS_MAX_RECV_BYTES=1024",
                         "BOOKS_MAX_CONCURRENT_STREAMS=65536",
                         "BOOKS_LOG_LEVEL=WARN",
                         NULL};
    assert_int_equal(load(f, NO_ARGS, env), 0);
    assert_int_equal(f->cfg.port, 9090);
    assert_string_equal(f->cfg.store, "sqlite:/var/lib/books.db");
    assert_int_equal(f->cfg.threads, 4);
    assert_int_equal(f->cfg.shutdown_grace_ms, 250);
    assert_int_equal(f->cfg.max_recv_bytes, 1024);
    assert_int_equal(f->cfg.max_concurrent_streams, 65536);
    assert_int_equal(f->cfg.log_level, LOG_WARNING);
}

static void test_empty_env_is_unset(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load(f, NO_ARGS, ENV("PORT=", "BOOKS_STORE=", "BOOKS_LOG_LEVEL=")), 0);
    assert_int_equal(f->cfg.port, 8080);
    assert_string_equal(f->cfg.store, "memory:");
    assert_int_equal(f->cfg.log_level, LOG_INFO);
}

static void test_flag_overrides_env(void **state)
{
    struct fixture *f = *state;
    char *const env[] = {"PORT=1000", "BOOKS_STORE=memory:env", "BOOKS_THREADS=2",
                         "BOOKS_LOG_LEVEL=error", NULL};
    assert_int_equal(
        load(f,
             ARGS("--port", "2000", "--store=memory:flag", "--threads=3", "--log-level", "debug"),
             env),
        0);
    assert_int_equal(f->action, CONFIG_RUN);
    assert_int_equal(f->cfg.port, 2000);
    assert_string_equal(f->cfg.store, "memory:flag");
    assert_int_equal(f->cfg.threads, 3);
    assert_int_equal(f->cfg.log_level, LOG_DEBUG);
}

static void test_both_flag_forms_every_setting(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(
        load(f,
             ARGS("--port=1", "--store", "memory:x", "--threads", "7", "--shutdown-grace-ms=0",
                  "--max-recv-bytes", "2048", "--max-concurrent-streams=9", "--log-level=Warning"),
             NO_ENV),
        0);
    assert_int_equal(f->cfg.port, 1);
    assert_string_equal(f->cfg.store, "memory:x");
    assert_int_equal(f->cfg.threads, 7);
    assert_int_equal(f->cfg.shutdown_grace_ms, 0);
    assert_int_equal(f->cfg.max_recv_bytes, 2048);
    assert_int_equal(f->cfg.max_concurrent_streams, 9);
    assert_int_equal(f->cfg.log_level, LOG_WARNING);
}

static void test_last_flag_wins(void **state)
{
    struct fixture *f = *state;
    /* The second --store replaces (and frees) the first; valgrind would see a leak otherwise. */
    assert_int_equal(load(f, ARGS("--port=1", "--port", "2", "--store=a:", "--store=b:"), NO_ENV),
                     0);
    assert_int_equal(f->cfg.port, 2);
    assert_string_equal(f->cfg.store, "b:");
}

static void test_flag_value_may_contain_equals(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load(f, ARGS("--store=sqlite:/tmp/a=b.db"), NO_ENV), 0);
    assert_string_equal(f->cfg.store, "sqlite:/tmp/a=b.db");
    config_cleanup(&f->cfg);
    /* With "=", a value may even start with "--". */
    assert_int_equal(load(f, ARGS("--store=--odd"), NO_ENV), 0);
    assert_string_equal(f->cfg.store, "--odd");
}

static void test_int_bounds_accepted(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < N_INT_SETTINGS; i++) {
        const struct int_setting *s = &int_settings[i];
        char arg[64];
        long ends[] = {s->min, s->max};
        for (size_t j = 0; j < 2; j++) {
            snprintf(arg, sizeof arg, "%s=%ld", s->flag, ends[j]);
            assert_int_equal(load(f, ARGS(arg), NO_ENV), 0);
            assert_int_equal(field(&f->cfg, s), ends[j]);
            config_cleanup(&f->cfg);
        }
        /* Leading zeros are still plain decimal. */
        snprintf(arg, sizeof arg, "%s=000%ld", s->flag, s->max);
        assert_int_equal(load(f, ARGS(arg), NO_ENV), 0);
        assert_int_equal(field(&f->cfg, s), s->max);
        config_cleanup(&f->cfg);
    }
}

/* ---- bad values ------------------------------------------------------------------------------ */

/* Every kind of bad integer, for every integer setting, through the environment and both flag
 * forms. Each must fail with a message naming the setting and the accepted range. */
static void test_bad_ints(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "notaport",
        "-1",
        "+1",
        " 1",
        "1 ",
        "0x10",
        "80x",
        "1.5",
        "1e3",
        "99999999999999999999",
        "18446744073709551616",
        "٣", /* an Arabic-Indic digit: not ASCII decimal */
    };
    for (size_t i = 0; i < N_INT_SETTINGS; i++) {
        const struct int_setting *s = &int_settings[i];
        char range[96], too_big[32], too_small[32];
        snprintf(range, sizeof range, "expected an integer from %ld to %ld", s->min, s->max);
        snprintf(too_big, sizeof too_big, "%ld", s->max + 1);
        snprintf(too_small, sizeof too_small, "%ld", s->min - 1);
        const char *values[sizeof bad / sizeof bad[0] + 2];
        size_t n = 0;
        for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++)
            values[n++] = bad[j];
        values[n++] = too_big;
        if (s->min > 0)
            values[n++] = too_small;

        for (size_t j = 0; j < n; j++) {
            char env[128], name[96], flag_eq[128];
            snprintf(env, sizeof env, "%s=%s", s->env, values[j]);
            snprintf(name, sizeof name, "%s=\"", s->env);
            expect_error(f, load(f, NO_ARGS, ENV(env)), name, range);

            snprintf(flag_eq, sizeof flag_eq, "%s=%s", s->flag, values[j]);
            snprintf(name, sizeof name, "%s=\"", s->flag);
            expect_error(f, load(f, ARGS(flag_eq), NO_ENV), name, range);
            char flag[64], value[64]; /* argv strings are not const */
            snprintf(flag, sizeof flag, "%s", s->flag);
            snprintf(value, sizeof value, "%s", values[j]);
            expect_error(f, load(f, ARGS(flag, value), NO_ENV), name, range);
        }
    }
}

static void test_bad_value_message_exact(void **state)
{
    struct fixture *f = *state;
    expect_error(f, load(f, NO_ARGS, ENV("PORT=notaport")),
                 "PORT=\"notaport\" is not valid: expected an integer from 0 to 65535", NULL);
    assert_string_equal(f->err,
                        "PORT=\"notaport\" is not valid: expected an integer from 0 to 65535");
    expect_error(f, load(f, ARGS("--port=70000"), NO_ENV),
                 "--port=\"70000\" is not valid: expected an integer from 0 to 65535", NULL);
    expect_error(f, load(f, NO_ARGS, ENV("PORT=70000")), "PORT=\"70000\"", "0 to 65535");
}

static void test_bad_env_is_an_error_even_if_a_flag_overrides_it(void **state)
{
    struct fixture *f = *state;
    expect_error(f, load(f, ARGS("--port=80"), ENV("PORT=80x")), "PORT=\"80x\"", NULL);
}

static void test_empty_flag_value(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < N_INT_SETTINGS; i++) {
        char arg[64], name[64], flag[64];
        snprintf(arg, sizeof arg, "%s=", int_settings[i].flag);
        snprintf(flag, sizeof flag, "%s", int_settings[i].flag);
        snprintf(name, sizeof name, "%s=\"\" is not valid", int_settings[i].flag);
        expect_error(f, load(f, ARGS(arg), NO_ENV), name, "expected an integer");
        expect_error(f, load(f, ARGS(flag, ""), NO_ENV), name, NULL);
    }
    expect_error(f, load(f, ARGS("--store="), NO_ENV), "--store=\"\" is not valid", "non-empty");
    expect_error(f, load(f, ARGS("--store", ""), NO_ENV), "--store=\"\"", NULL);
    expect_error(f, load(f, ARGS("--log-level="), NO_ENV), "--log-level=\"\"", NULL);
}

static void test_missing_flag_value(void **state)
{
    struct fixture *f = *state;
    expect_error(f, load(f, ARGS("--port"), NO_ENV), "--port needs a value", "0 to 65535");
    expect_error(f, load(f, ARGS("--threads=2", "--store"), NO_ENV), "--store needs a value", NULL);
    /* The next argument is a flag: the value was forgotten, not "--port". */
    expect_error(f, load(f, ARGS("--store", "--port", "80"), NO_ENV), "--store needs a value",
                 NULL);
    expect_error(f, load(f, ARGS("--log-level"), NO_ENV), "--log-level needs a value",
                 "debug, info, warning, error");
}

static void test_unknown_flag(void **state)
{
    struct fixture *f = *state;
    expect_error(f, load(f, ARGS("--bogus"), NO_ENV), "unknown option \"--bogus\" (see --help)",
                 NULL);
    expect_error(f, load(f, ARGS("--bogus=1"), NO_ENV), "unknown option \"--bogus\"", NULL);
    expect_error(f, load(f, ARGS("--PORT=1"), NO_ENV), "unknown option \"--PORT\"", NULL);
    expect_error(f, load(f, ARGS("--por=1"), NO_ENV), "unknown option \"--por\"", NULL);
    expect_error(f, load(f, ARGS("-p", "80"), NO_ENV), "unknown option \"-p\"", NULL);
    expect_error(f, load(f, ARGS("--"), NO_ENV), "unknown option \"--\"", NULL);
    expect_error(f, load(f, ARGS("--help=yes"), NO_ENV), "--help takes no value", NULL);
}

static void test_positional_argument(void **state)
{
    struct fixture *f = *state;
    expect_error(f, load(f, ARGS("serve"), NO_ENV), "unexpected argument \"serve\"", NULL);
    expect_error(f, load(f, ARGS("--port=1", "8080"), NO_ENV), "unexpected argument \"8080\"",
                 NULL);
    expect_error(f, load(f, ARGS("-"), NO_ENV), "unexpected argument \"-\"", NULL);
}

static void test_bad_log_level(void **state)
{
    struct fixture *f = *state;
    const char *want = "expected one of debug, info, warning, error";
    expect_error(f, load(f, NO_ARGS, ENV("BOOKS_LOG_LEVEL=loud")), "BOOKS_LOG_LEVEL=\"loud\"",
                 want);
    expect_error(f, load(f, ARGS("--log-level", "verbose"), NO_ENV), "--log-level=\"verbose\"",
                 want);
    expect_error(f, load(f, ARGS("--log-level=info "), NO_ENV), "--log-level=\"info \"", want);
    expect_error(f, load(f, ARGS("--log-level=2"), NO_ENV), "--log-level=\"2\"", want);
}

static void test_error_leaves_nothing_allocated(void **state)
{
    struct fixture *f = *state;
    /* The store is already copied when the bad port is seen; it must be freed, and cfg zeroed
     * even though it held something before. */
    assert_int_equal(load(f, NO_ARGS, NO_ENV), 0);
    assert_non_null(f->cfg.store);
    config_cleanup(&f->cfg);
    f->cfg.port = 1234;
    expect_error(f, load(f, ARGS("--store=memory:x", "--port=bad"), ENV("BOOKS_STORE=memory:y")),
                 "--port=\"bad\"", NULL);
    assert_int_equal(f->cfg.port, 0);
}

static void test_error_value_is_quoted_safely(void **state)
{
    struct fixture *f = *state;
    expect_error(f, load(f, ARGS("--port=\x1b[2J\"\\\n"), NO_ENV),
                 "--port=\"\\x1b[2J\\\"\\\\\\x0a\"", NULL);
    for (const char *p = f->err; *p; p++)
        assert_true((unsigned char)*p >= 0x20);
    /* A very long value is shortened, and the message still says what is accepted. */
    char arg[2048];
    memset(arg, '9', sizeof arg - 1);
    arg[sizeof arg - 1] = '\0';
    memcpy(arg, "--threads=", 10);
    expect_error(f, load(f, ARGS(arg), NO_ENV), "...\" is not valid", "0 to 1024");
}

static void test_small_error_buffer(void **state)
{
    struct fixture *f = *state;
    char err[8];
    memset(err, 'X', sizeof err);
    assert_int_equal(config_load(&f->cfg, 2, ARGS("--bogus"), NO_ENV, &f->action, err, sizeof err),
                     BOOKS_EINVAL);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_memory_equal(err, "unknown", 7);
    /* No buffer at all is allowed too. */
    assert_int_equal(config_load(&f->cfg, 2, ARGS("--bogus"), NO_ENV, &f->action, NULL, 0),
                     BOOKS_EINVAL);
    assert_null(f->cfg.store);
}

/* ---- actions --------------------------------------------------------------------------------- */

static void expect_action(struct fixture *f, int rc, enum config_action want)
{
    assert_int_equal(rc, 0);
    assert_int_equal(f->action, want);
    /* The config holds the defaults, so the caller's cleanup path is the same as for a run. */
    assert_string_equal(f->cfg.store, "memory:");
    assert_int_equal(f->cfg.port, 8080);
    config_cleanup(&f->cfg);
}

static void test_actions(void **state)
{
    struct fixture *f = *state;
    expect_action(f, load(f, ARGS("--help"), NO_ENV), CONFIG_HELP);
    expect_action(f, load(f, ARGS("-h"), NO_ENV), CONFIG_HELP);
    expect_action(f, load(f, ARGS("--help-markdown"), NO_ENV), CONFIG_HELP_MARKDOWN);
    expect_action(f, load(f, ARGS("--version"), NO_ENV), CONFIG_VERSION);
    expect_action(f, load(f, ARGS("-V"), NO_ENV), CONFIG_VERSION);
}

static void test_action_wins_over_bad_values(void **state)
{
    struct fixture *f = *state;
    /* Asking for help with a broken command line or environment gets the help. */
    expect_action(f, load(f, ARGS("--port=bad", "--bogus", "stray", "--help"), ENV("PORT=x")),
                  CONFIG_HELP);
    expect_action(f, load(f, ARGS("--store=memory:x", "-V"), NO_ENV), CONFIG_VERSION);
    /* The first action flag decides. */
    expect_action(f, load(f, ARGS("--version", "--help"), NO_ENV), CONFIG_VERSION);
    expect_action(f, load(f, ARGS("--help-markdown", "-h"), NO_ENV), CONFIG_HELP_MARKDOWN);
    /* "--port --help": --port lacks a value, so --help is the flag it looks like. */
    expect_action(f, load(f, ARGS("--port", "--help"), NO_ENV), CONFIG_HELP);
}

static void test_action_as_flag_value_is_a_value(void **state)
{
    struct fixture *f = *state;
    /* "-h" right after "--store" is the store's value, as the parser reads it; not help. */
    assert_int_equal(load(f, ARGS("--store", "-h"), NO_ENV), 0);
    assert_int_equal(f->action, CONFIG_RUN);
    assert_string_equal(f->cfg.store, "-h");
}

/* ---- help and Markdown ----------------------------------------------------------------------- */

/* Runs `print` into a temporary file and returns what it wrote, NUL-terminated (caller frees). */
static char *capture(void (*print)(FILE *, void *), void *arg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    print(f, arg);
    long len = ftell(f);
    assert_true(len > 0);
    char *text = malloc((size_t)len + 1);
    assert_non_null(text);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    return text;
}

static void print_help(FILE *f, void *arg)
{
    config_print_help(f, arg);
}

static void print_markdown(FILE *f, void *arg)
{
    (void)arg;
    config_print_markdown(f);
}

static const struct {
    const char *env, *flag, *def;
} all_settings[] = {
    {"PORT", "--port", "8080"},
    {"BOOKS_STORE", "--store", "memory:"},
    {"BOOKS_THREADS", "--threads", "0"},
    {"BOOKS_SHUTDOWN_GRACE_MS", "--shutdown-grace-ms", "8000"},
    {"BOOKS_MAX_RECV_BYTES", "--max-recv-bytes", "4194304"},
    {"BOOKS_MAX_CONCURRENT_STREAMS", "--max-concurrent-streams", "100"},
    {"BOOKS_MEMORY_LIMIT_MB", "--memory-limit-mb", "0"},
    {"BOOKS_REQUEST_ID_TTL_S", "--request-id-ttl-s", "86400"},
    {"BOOKS_MAX_CONNECTION_IDLE_MS", "--max-connection-idle-ms", "300000"},
    {"BOOKS_MAX_CONNECTION_AGE_MS", "--max-connection-age-ms", "1800000"},
    {"BOOKS_MAX_METADATA_BYTES", "--max-metadata-bytes", "65536"},
    {"GOOGLE_CLOUD_PROJECT", "--project", ""},
    {"BOOKS_LOG_LEVEL", "--log-level", "info"},
};

#define N_ALL (sizeof all_settings / sizeof all_settings[0])

static void test_help_lists_every_setting(void **state)
{
    (void)state;
    char *help = capture(print_help, "/usr/bin/books-server");
    assert_non_null(strstr(help, "Usage: /usr/bin/books-server [OPTION]..."));
    for (size_t i = 0; i < N_ALL; i++) {
        char entry[128];
        snprintf(entry, sizeof entry, "  %s=", all_settings[i].flag);
        assert_non_null(strstr(help, entry));
        snprintf(entry, sizeof entry, "env %s, default %s)", all_settings[i].env,
                 all_settings[i].def[0] ? all_settings[i].def : "none");
        assert_non_null(strstr(help, entry));
    }
    assert_non_null(strstr(help, "an integer from 0 to 65535"));
    assert_non_null(strstr(help, "-h, --help"));
    assert_non_null(strstr(help, "--help-markdown"));
    assert_non_null(strstr(help, "-V, --version"));
    /* Wrapped for a terminal. */
    for (const char *line = help; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_true(nl - line <= 79);
        line = nl + 1;
    }
    free(help);

    help = capture(print_help, NULL);
    assert_non_null(strstr(help, "Usage: books-server "));
    free(help);
}

/* Number of cell separators in a table row: "|" not preceded by a backslash. */
static int count_pipes(const char *row, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++)
        if (row[i] == '|' && (i == 0 || row[i - 1] != '\\'))
            n++;
    return n;
}

static void test_markdown_table(void **state)
{
    (void)state;
    char *md = capture(print_markdown, NULL);
    const char *line = md;
    const char *nl = strchr(line, '\n');
    assert_non_null(nl);
    assert_memory_equal(line, "| setting | flag | default | meaning |\n", (size_t)(nl - line + 1));
    line = nl + 1;
    nl = strchr(line, '\n');
    assert_non_null(nl);
    assert_memory_equal(line, "|---|---|---|---|\n", (size_t)(nl - line + 1));

    /* One row per setting, in table order, and nothing else: the README embeds this verbatim. */
    for (size_t i = 0; i < N_ALL; i++) {
        line = nl + 1;
        nl = strchr(line, '\n');
        assert_non_null(nl);
        char start[160];
        if (all_settings[i].def[0])
            snprintf(start, sizeof start, "| `%s` | `%s` | `%s` | ", all_settings[i].env,
                     all_settings[i].flag, all_settings[i].def);
        else
            snprintf(start, sizeof start, "| `%s` | `%s` | (none) | ", all_settings[i].env,
                     all_settings[i].flag);
        assert_memory_equal(line, start, strlen(start));
        assert_true(nl - line > (long)strlen(start) + 10); /* a meaning follows */
        assert_memory_equal(nl - 2, " |", 2);
        assert_int_equal(count_pipes(line, (size_t)(nl - line)), 5);
    }
    assert_string_equal(nl + 1, "");
    assert_non_null(strstr(md, "Accepts an integer from 1024 to 1073741824."));
    assert_non_null(strstr(md, "Accepts one of debug, info, warning, error."));
    free(md);
}

/* ---- cleanup --------------------------------------------------------------------------------- */

static void test_cleanup_zeroed_and_twice(void **state)
{
    struct fixture *f = *state;
    struct books_config zero = {0};
    config_cleanup(&zero);
    config_cleanup(&zero);
    config_cleanup(NULL);
    assert_int_equal(load(f, ARGS("--store=memory:z"), NO_ENV), 0);
    config_cleanup(&f->cfg);
    assert_null(f->cfg.store);
    config_cleanup(&f->cfg);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_project_ids),
        T(test_null_envp_and_argv),
        T(test_env_overrides_default),
        T(test_empty_env_is_unset),
        T(test_flag_overrides_env),
        T(test_both_flag_forms_every_setting),
        T(test_last_flag_wins),
        T(test_flag_value_may_contain_equals),
        T(test_int_bounds_accepted),
        T(test_bad_ints),
        T(test_bad_value_message_exact),
        T(test_bad_env_is_an_error_even_if_a_flag_overrides_it),
        T(test_empty_flag_value),
        T(test_missing_flag_value),
        T(test_unknown_flag),
        T(test_positional_argument),
        T(test_bad_log_level),
        T(test_error_leaves_nothing_allocated),
        T(test_error_value_is_quoted_safely),
        T(test_small_error_buffer),
        T(test_actions),
        T(test_action_wins_over_bad_values),
        T(test_action_as_flag_value_is_a_value),
        T(test_help_lists_every_setting),
        T(test_markdown_table),
        T(test_cleanup_zeroed_and_twice),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
