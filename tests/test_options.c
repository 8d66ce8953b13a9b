/* test_options.c: the option table (options.h) on a table of its own that uses every setter: each
 * setter with good and bad values and its bounds, the walkers (defaults, environment, argv through
 * getopt_long, URI query strings) with the rules they keep (exact names, whole short flags, "--",
 * forgotten values, actions that win, tags, the first problem reported), getopt's re-entrancy over
 * many command lines in one process, and --help and Markdown from the same rows. Each test gets a
 * fresh destination and the teardown runs opt_cleanup(), so valgrind sees every path's memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/options.h"

/* The struct the table fills. */
struct dest {
    int n;
    char *owned;
    const char *borrowed;
    bool on;
    int level;
    const char **items;
    size_t n_items;
    int tiny; /* set only through the custom setter */
};

#define F(f) offsetof(struct dest, f)
#define TAG_A 0x1u
#define TAG_B 0x2u
#define ACT_HELP 1
#define ACT_VERSION 2

static const struct opt_choice levels[] = {
    {"low", 1}, {"high", 2}, {"hi", 2}, {"max", 3}, {NULL, 0},
};
static const struct opt_choice two[] = {{"on", 1}, {"off", 0}, {NULL, 0}};

/* A custom setter: "tiny" accepts only "x" or "y", stored as 1 or 2. */
static int set_tiny(const struct opt *o, void *base, const char *value)
{
    int *field = (int *)(void *)((char *)base + o->offset);
    if (value == NULL || (strcmp(value, "x") != 0 && strcmp(value, "y") != 0))
        return BOOKS_EINVAL;
    *field = value[0] == 'x' ? 1 : 2;
    return 0;
}

static const struct opt rows[] = {
    {.name = "num",
     .env = "T_NUM",
     .short_name = 'n',
     .arg = "N",
     .set = opt_set_int,
     .offset = F(n),
     .min = 1,
     .max = 100,
     .def = "10",
     .help = "A number."},
    {.name = "owned",
     .env = "T_OWNED",
     .arg = "TEXT",
     .set = opt_set_string,
     .free = opt_free_string,
     .offset = F(owned),
     .min = 1,
     .max = 8,
     .def = "dflt",
     .help = "An owned | piped string."},
    {.name = "borrowed",
     .arg = "TEXT",
     .set = opt_set_borrowed,
     .offset = F(borrowed),
     .tags = TAG_A,
     .help = "A borrowed string."},
    {.name = "on", .set = opt_set_switch, .offset = F(on), .tags = TAG_B, .help = "A switch."},
    {.name = "level",
     .env = "T_LEVEL",
     .arg = "L",
     .set = opt_set_choice,
     .offset = F(level),
     .choices = levels,
     .def = "low",
     .help = "A level."},
    {.name = "item",
     .arg = "I",
     .set = opt_set_append,
     .free = opt_free_array,
     .offset = F(items),
     .count_offset = F(n_items),
     .help = "Repeatable."},
    {.name = "tiny",
     .env = "T_TINY",
     .arg = "T",
     .set = set_tiny,
     .offset = F(tiny),
     .accepts = "x or y",
     .help = "Custom."},
    {.name = "help", .short_name = 'h', .action = ACT_HELP, .help = "Help."},
    {.name = "version", .short_name = 'V', .action = ACT_VERSION, .help = "Version."},
};

#define N_ROWS (sizeof rows / sizeof rows[0])

/* The problems the walkers described, as "KIND name[=value]" lines: only ever the first, since a
 * report function is called only while no problem is recorded. */
struct log {
    char text[4096];
    int n;
};

static const char *kind_name(enum opt_problem_kind k)
{
    static const char *const names[] = {"UNKNOWN",   "BAD_VALUE", "MISSING_VALUE", "UNEXPECTED",
                                        "WRONG_TAG", "REPEATED",  "POSITIONAL"};
    return names[k];
}

/* Writes "KIND name" as the message (so a test can see which problem was first) and logs it. */
static void report(struct opt_parser *p, const struct opt_problem *pr)
{
    struct log *l = p->self;
    size_t off = strlen(l->text);
    snprintf(l->text + off, sizeof l->text - off, "%s %.*s%s%s\n", kind_name(pr->kind),
             (int)pr->name_len, pr->name, pr->value ? "=" : "", pr->value ? pr->value : "");
    l->n++;
    opt_fail(p, BOOKS_EINVAL, "%s %.*s", kind_name(pr->kind), (int)pr->name_len, pr->name);
}

struct fixture {
    struct dest d;
    struct log log;
    char err[256];
    struct opt_parser p;
    char positionals[256];
};

static void keep_positional(struct opt_parser *p, const char *arg);

static void reset(struct fixture *f, unsigned tags, unsigned flags, bool with_positional)
{
    opt_cleanup(rows, N_ROWS, &f->d);
    memset(&f->d, 0, sizeof f->d);
    memset(&f->log, 0, sizeof f->log);
    memset(f->err, 'X', sizeof f->err);
    f->err[sizeof f->err - 1] = '\0';
    f->positionals[0] = '\0';
    f->p = (struct opt_parser){
        .opts = rows,
        .n_opts = N_ROWS,
        .base = &f->d,
        .tags = tags,
        .flags = flags,
        .report = report,
        .positional = with_positional ? keep_positional : NULL,
        .self = &f->log,
        .err = f->err,
        .errlen = sizeof f->err,
    };
}

static struct fixture *g_fixture; /* for keep_positional, whose self is the log */

/* Collects positional arguments as "a|b|"; "cmd-b" switches the accepted tags to TAG_B. */
static void keep_positional(struct opt_parser *p, const char *arg)
{
    size_t off = strlen(g_fixture->positionals);
    snprintf(g_fixture->positionals + off, sizeof g_fixture->positionals - off, "%s|", arg);
    if (strcmp(arg, "cmd-b") == 0)
        p->tags = TAG_B;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    g_fixture = f;
    reset(f, TAG_A, 0, false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    opt_cleanup(rows, N_ROWS, &f->d);
    opt_cleanup(rows, N_ROWS, &f->d); /* twice is harmless */
    free(f);
    return 0;
}

#define ARGV(...) ((char *const[]){"prog", __VA_ARGS__, NULL})

static int count(char *const v[])
{
    int n = 0;
    while (v[n] != NULL)
        n++;
    return n;
}

static int parse(struct fixture *f, char *const argv[])
{
    return opt_parse_argv(&f->p, count(argv), argv);
}

/* ---- setters --------------------------------------------------------------------------------- */

static void test_set_int(void **state)
{
    struct fixture *f = *state;
    const struct opt *o = &rows[0];
    static const char *const good[][2] = {
        {"1", "1"}, {"100", "100"}, {"0042", "42"}, {"000000000000000000000000007", "7"}};
    static const char *const bad[] = {"0",  "101",  "",    "-1",  "+1", " 1",
                                      "1 ", "0x10", "1e2", "1.0", "٣",  "99999999999999999999999",
                                      "abc"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(opt_set_int(o, &f->d, good[i][0]), 0);
        assert_int_equal(f->d.n, atoi(good[i][1]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f->d.n = 55;
        assert_int_equal(opt_set_int(o, &f->d, bad[i]), BOOKS_EINVAL);
        assert_int_equal(f->d.n, 55); /* untouched */
    }
    assert_int_equal(opt_set_int(o, &f->d, NULL), BOOKS_EINVAL);
    /* The widest int bounds. */
    struct opt wide = {.set = opt_set_int, .offset = F(n), .min = 0, .max = INT32_MAX};
    assert_int_equal(opt_set_int(&wide, &f->d, "2147483647"), 0);
    assert_int_equal(f->d.n, INT32_MAX);
    assert_int_equal(opt_set_int(&wide, &f->d, "2147483648"), BOOKS_EINVAL);
}

static void test_set_string_and_borrowed(void **state)
{
    struct fixture *f = *state;
    const struct opt *owned = &rows[1], *borrowed = &rows[2];
    char value[] = "abc";
    assert_int_equal(opt_set_string(owned, &f->d, value), 0);
    assert_string_equal(f->d.owned, "abc");
    assert_ptr_not_equal(f->d.owned, value); /* a copy */
    /* A second value replaces the first (valgrind sees the first freed). */
    assert_int_equal(opt_set_string(owned, &f->d, "12345678"), 0);
    assert_string_equal(f->d.owned, "12345678");
    /* Length bounds 1..8: the old value stays. */
    assert_int_equal(opt_set_string(owned, &f->d, ""), BOOKS_EINVAL);
    assert_int_equal(opt_set_string(owned, &f->d, "123456789"), BOOKS_EINVAL);
    assert_int_equal(opt_set_string(owned, &f->d, NULL), BOOKS_EINVAL);
    assert_string_equal(f->d.owned, "12345678");
    opt_free_string(owned, &f->d);
    assert_null(f->d.owned);
    opt_free_string(owned, &f->d);

    assert_int_equal(opt_set_borrowed(borrowed, &f->d, value), 0);
    assert_ptr_equal(f->d.borrowed, value);
    assert_int_equal(opt_set_borrowed(borrowed, &f->d, ""), 0); /* any string */
    assert_string_equal(f->d.borrowed, "");
    assert_int_equal(opt_set_borrowed(borrowed, &f->d, NULL), BOOKS_EINVAL);
}

static void test_set_switch_choice_custom(void **state)
{
    struct fixture *f = *state;
    int v = -1;
    assert_int_equal(opt_set_switch(&rows[3], &f->d, NULL), 0);
    assert_true(f->d.on);

    const struct opt *level = &rows[4];
    assert_int_equal(opt_set_choice(level, &f->d, "HIGH"), 0);
    assert_int_equal(f->d.level, 2);
    assert_int_equal(opt_set_choice(level, &f->d, "hi"), 0); /* an alias */
    assert_int_equal(f->d.level, 2);
    assert_int_equal(opt_set_choice(level, &f->d, "Max"), 0);
    assert_int_equal(f->d.level, 3);
    assert_int_equal(opt_set_choice(level, &f->d, "maximum"), BOOKS_EINVAL);
    assert_int_equal(opt_set_choice(level, &f->d, ""), BOOKS_EINVAL);
    assert_int_equal(opt_set_choice(level, &f->d, "high "), BOOKS_EINVAL);
    assert_int_equal(opt_set_choice(level, &f->d, NULL), BOOKS_EINVAL);
    assert_int_equal(f->d.level, 3);

    assert_int_equal(opt_choice_find(levels, "LOW", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(opt_choice_find(levels, "none", &v), BOOKS_EINVAL);
    assert_int_equal(v, 1);
    assert_int_equal(opt_choice_find(levels, NULL, &v), BOOKS_EINVAL);

    assert_int_equal(set_tiny(&rows[6], &f->d, "y"), 0);
    assert_int_equal(f->d.tiny, 2);
}

static void test_set_append(void **state)
{
    struct fixture *f = *state;
    const struct opt *item = &rows[5];
    const char *values[] = {"a", "", "-c", "d"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(opt_set_append(item, &f->d, values[i]), 0);
    assert_int_equal(f->d.n_items, 4);
    for (size_t i = 0; i < 4; i++)
        assert_ptr_equal(f->d.items[i], values[i]); /* borrowed strings, in order */
    assert_int_equal(opt_set_append(item, &f->d, NULL), BOOKS_EINVAL);
    assert_int_equal(f->d.n_items, 4);
    opt_free_array(item, &f->d);
    assert_null(f->d.items);
    assert_int_equal(f->d.n_items, 0);
    /* An array the caller allocated first grows the same way. */
    f->d.items = calloc(1, sizeof *f->d.items);
    assert_non_null(f->d.items);
    assert_int_equal(opt_set_append(item, &f->d, "x"), 0);
    assert_int_equal(opt_set_append(item, &f->d, "y"), 0);
    assert_string_equal(f->d.items[1], "y");
}

static void test_getenv(void **state)
{
    (void)state;
    char *const env[] = {"T_NUMX=1", "T_NUM", "T_NUM=5", "T_NUM=6", "EMPTY=", NULL};
    assert_string_equal(opt_getenv(env, "T_NUM"), "5"); /* the first, as getenv() */
    assert_string_equal(opt_getenv(env, "EMPTY"), "");
    assert_null(opt_getenv(env, "T_NU"));
    assert_null(opt_getenv(env, "NOPE"));
    assert_null(opt_getenv(NULL, "T_NUM"));
}

/* ---- problems -------------------------------------------------------------------------------- */

static void test_fail_keeps_the_first(void **state)
{
    struct fixture *f = *state;
    opt_fail(&f->p, BOOKS_EINVAL, "first %d", 1);
    opt_fail(&f->p, BOOKS_EINVAL, "second");
    assert_int_equal(f->p.rc, BOOKS_EINVAL);
    assert_string_equal(f->err, "first 1");
    opt_fail(&f->p, BOOKS_ENOMEM, "no memory");
    assert_int_equal(f->p.rc, BOOKS_ENOMEM);
    assert_string_equal(f->err, "no memory");
    opt_fail(&f->p, BOOKS_EINVAL, "later");
    opt_fail(&f->p, BOOKS_ENOMEM, "later too");
    assert_string_equal(f->err, "no memory");
    /* No buffer at all. */
    reset(f, TAG_A, 0, false);
    f->p.err = NULL;
    opt_fail(&f->p, BOOKS_EINVAL, "x");
    assert_int_equal(f->p.rc, BOOKS_EINVAL);
}

static void test_plain_report(void **state)
{
    struct fixture *f = *state;
    f->p.report = NULL;
    assert_int_equal(parse(f, ARGV("--num=0")), BOOKS_EINVAL);
    assert_string_equal(f->err, "\"--num\": expected an integer from 1 to 100, got \"0\"");
    reset(f, TAG_A, 0, false);
    f->p.report = NULL;
    assert_int_equal(parse(f, ARGV("stray")), BOOKS_EINVAL);
    assert_string_equal(f->err, "\"stray\": unexpected argument");
    reset(f, TAG_A, 0, false);
    f->p.report = NULL;
    assert_int_equal(parse(f, ARGV("--nope")), BOOKS_EINVAL);
    assert_string_equal(f->err, "\"--nope\": unknown option");
}

/* ---- defaults and environment ---------------------------------------------------------------- */

static void test_defaults(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(opt_load_defaults(&f->p), 0);
    assert_int_equal(f->d.n, 10);
    assert_string_equal(f->d.owned, "dflt");
    assert_int_equal(f->d.level, 1);
    assert_null(f->d.borrowed); /* no default: zero */
    assert_int_equal(f->d.tiny, 0);
    assert_int_equal(f->log.n, 0);
    /* Loading them again replaces the owned string (valgrind: no leak). */
    assert_int_equal(opt_load_defaults(&f->p), 0);
    assert_string_equal(f->d.owned, "dflt");
}

static void test_env(void **state)
{
    struct fixture *f = *state;
    char *const env[] = {"T_NUM=42", "T_OWNED=", "T_LEVEL=MAX", "T_TINY=x", NULL};
    assert_int_equal(opt_load_defaults(&f->p), 0);
    assert_int_equal(opt_load_env(&f->p, env), 0);
    assert_int_equal(f->d.n, 42);
    assert_string_equal(f->d.owned, "dflt"); /* "VAR=" is unset */
    assert_int_equal(f->d.level, 3);
    assert_int_equal(f->d.tiny, 1);
    assert_int_equal(opt_load_env(&f->p, NULL), 0);

    /* A bad value is named by its variable; the walk goes on, the first problem is kept. */
    reset(f, TAG_A, 0, false);
    char *const bad[] = {"T_NUM=0", "T_OWNED=toolongvalue", "T_LEVEL=mid", NULL};
    assert_int_equal(opt_load_env(&f->p, bad), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "BAD_VALUE T_NUM=0\n");
    assert_string_equal(f->err, "BAD_VALUE T_NUM");
    assert_int_equal(f->d.level, 0); /* every later value was still tried, and refused */
}

/* ---- argv ------------------------------------------------------------------------------------ */

static void test_argv_forms(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(parse(f, ARGV("--num", "5", "--owned=a=b", "--borrowed", "-dash", "--level",
                                   "high", "--item", "1", "--item=2", "-n", "7", "--tiny=y")),
                     0);
    assert_int_equal(f->d.n, 7); /* the later value wins */
    assert_string_equal(f->d.owned, "a=b");
    assert_string_equal(f->d.borrowed, "-dash"); /* a value may start with '-' */
    assert_int_equal(f->d.level, 2);
    assert_int_equal(f->d.n_items, 2);
    assert_string_equal(f->d.items[0], "1");
    assert_string_equal(f->d.items[1], "2");
    assert_int_equal(f->d.tiny, 2);
    assert_int_equal(f->p.action, 0);
    assert_string_equal(f->log.text, "");

    /* An empty value in both forms reaches the setter. */
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("--borrowed=", "--owned", "")), BOOKS_EINVAL);
    assert_string_equal(f->d.borrowed, "");
    assert_string_equal(f->log.text, "BAD_VALUE --owned=\n");
}

static void test_argv_is_not_modified(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"prog", "stray", "--num", "3", "other", "--on", NULL};
    char *copy[7];
    memcpy(copy, argv, sizeof argv);
    f->p.tags = TAG_A | TAG_B;
    f->p.positional = keep_positional;
    assert_int_equal(opt_parse_argv(&f->p, 6, argv), 0);
    assert_memory_equal(copy, argv, sizeof argv); /* no permutation */
    assert_string_equal(g_fixture->positionals, "stray|other|");
    assert_int_equal(f->d.n, 3);
    assert_true(f->d.on);
}

static void test_argv_exact_names(void **state)
{
    struct fixture *f = *state;
    /* getopt_long would take "--nu" for --num; here it is unknown, and its would-be value is an
     * argument of its own. */
    reset(f, TAG_A, 0, true);
    assert_int_equal(parse(f, ARGV("--nu", "5")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "UNKNOWN --nu\n");
    assert_string_equal(g_fixture->positionals, "5|");
    assert_int_equal(f->d.n, 0);
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("--nu=5", "--NUM=5", "--=5", "--num5")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "UNKNOWN --nu\n");
    assert_string_equal(f->err, "UNKNOWN --nu");
    /* An abbreviation never eats a --help that follows. */
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("--bor", "--help")), BOOKS_EINVAL);
    assert_int_equal(f->p.action, ACT_HELP);
    assert_null(f->d.borrowed);
}

static void test_argv_short_flags_are_whole(void **state)
{
    struct fixture *f = *state;
    /* "-hV" and "-n5" are not taken apart; "-h=x" is unknown too. */
    assert_int_equal(parse(f, ARGV("-hV", "-n5", "-h=x", "-x", "-")), BOOKS_EINVAL);
    assert_int_equal(f->p.action, 0);
    assert_string_equal(f->err, "UNKNOWN -hV");
    assert_int_equal(f->d.n, 0);
    reset(f, TAG_A, 0, true);
    assert_int_equal(parse(f, ARGV("-n", "9", "-", "")), 0);
    assert_int_equal(f->d.n, 9);
    assert_string_equal(g_fixture->positionals, "-||"); /* "-" and "" are arguments */
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("-n")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "MISSING_VALUE -n\n");
}

static void test_argv_values(void **state)
{
    struct fixture *f = *state;
    /* At the end: missing. */
    assert_int_equal(parse(f, ARGV("--num")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "MISSING_VALUE --num\n");
    /* A switch or an action given a value. */
    reset(f, TAG_A | TAG_B, 0, false);
    assert_int_equal(parse(f, ARGV("--on=yes", "--help=1")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "UNEXPECTED --on=yes\n"); /* only the first is described */
    assert_false(f->d.on);
    assert_int_equal(f->p.action, 0);
    /* Without OPT_DASHED_VALUE_MISSING the next argument is the value, whatever it is. */
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("--borrowed", "--num", "--owned", "--")), 0);
    assert_string_equal(f->d.borrowed, "--num");
    assert_string_equal(f->d.owned, "--");
    /* With it, "--flag --other" means the value was forgotten, and --other is read. */
    reset(f, TAG_A, OPT_DASHED_VALUE_MISSING, false);
    assert_int_equal(parse(f, ARGV("--borrowed", "--num", "3", "--owned=--odd", "--level", "-x")),
                     BOOKS_EINVAL);
    assert_string_equal(f->log.text, "MISSING_VALUE --borrowed\n");
    assert_null(f->d.borrowed);
    assert_int_equal(f->d.n, 3);
    assert_string_equal(f->d.owned, "--odd"); /* "=" passes anything */
    reset(f, TAG_A, OPT_DASHED_VALUE_MISSING, false);
    assert_int_equal(parse(f, ARGV("--owned", "-x")), 0);
    assert_string_equal(f->d.owned, "-x"); /* one dash is a value */
    reset(f, TAG_A, OPT_DASHED_VALUE_MISSING, false);
    assert_int_equal(parse(f, ARGV("--num", "--help")), BOOKS_EINVAL);
    assert_int_equal(f->p.action, ACT_HELP);
}

static void test_argv_double_dash(void **state)
{
    struct fixture *f = *state;
    /* Without OPT_DASHDASH_ENDS, "--" is an unknown option and the walk goes on. */
    reset(f, TAG_A, 0, true);
    assert_int_equal(parse(f, ARGV("a", "--", "--num", "4")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "UNKNOWN --\n");
    assert_int_equal(f->d.n, 4);
    /* With it, everything after is an argument, "--help" and "--" included. */
    reset(f, TAG_A, OPT_DASHDASH_ENDS, true);
    assert_int_equal(parse(f, ARGV("--num", "2", "--", "--help", "--", "-n")), 0);
    assert_string_equal(g_fixture->positionals, "--help|--|-n|");
    assert_int_equal(f->d.n, 2);
    assert_int_equal(f->p.action, 0);
}

static void test_argv_actions(void **state)
{
    struct fixture *f = *state;
    /* The first action wins, wherever it is and whatever went wrong before it. */
    assert_int_equal(parse(f, ARGV("--bogus", "--num=0", "stray", "-V", "--help")), BOOKS_EINVAL);
    assert_int_equal(f->p.action, ACT_VERSION);
    assert_string_equal(f->err, "UNKNOWN --bogus");
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("-h", "--version")), 0);
    assert_int_equal(f->p.action, ACT_HELP);
    /* As a value, an action flag is a value. */
    reset(f, TAG_A, 0, false);
    assert_int_equal(parse(f, ARGV("--borrowed", "-h")), 0);
    assert_int_equal(f->p.action, 0);
    assert_string_equal(f->d.borrowed, "-h");
}

static void test_argv_tags(void **state)
{
    struct fixture *f = *state;
    /* --borrowed is TAG_A's, --on TAG_B's; untagged rows go everywhere. A positional switches
     * the parser to TAG_B. */
    reset(f, TAG_A, 0, true);
    assert_int_equal(parse(f, ARGV("--borrowed=1", "--num=2", "cmd-b", "--on", "--borrowed=3")),
                     BOOKS_EINVAL);
    assert_string_equal(f->log.text, "WRONG_TAG --borrowed=3\n");
    assert_string_equal(f->d.borrowed, "1");
    assert_true(f->d.on);
    reset(f, TAG_A, 0, true);
    assert_int_equal(parse(f, ARGV("--on")), BOOKS_EINVAL);
    assert_string_equal(f->log.text, "WRONG_TAG --on\n");
    assert_false(f->d.on);
}

static void test_argv_first_problem_is_kept(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(parse(f, ARGV("--num=x", "--nope", "--level=mid", "stray")), BOOKS_EINVAL);
    assert_string_equal(f->err, "BAD_VALUE --num");
    assert_int_equal(f->log.n, 1); /* later problems are not even described */
    /* Problems from an earlier walker on the same parser come first. */
    reset(f, TAG_A, 0, false);
    char *const env[] = {"T_LEVEL=mid", NULL};
    opt_load_env(&f->p, env);
    assert_int_equal(parse(f, ARGV("--nope")), BOOKS_EINVAL);
    assert_string_equal(f->err, "BAD_VALUE T_LEVEL");
}

/* The walker resets getopt itself: many command lines in one process, of different lengths, even
 * after someone else's getopt loop stopped halfway. */
static void test_argv_reentrant(void **state)
{
    struct fixture *f = *state;
    char *other[] = {"other", "-a", "-b", "rest", NULL};
    optind = 0;
    assert_int_equal(getopt(4, other, "ab"), 'a'); /* stopped inside a foreign walk */
    for (int round = 0; round < 200; round++) {
        reset(f, TAG_A, 0, true);
        if (round % 2 == 0) {
            assert_int_equal(parse(f, ARGV("x", "--num", "3", "-n", "4", "--item=a", "y")), 0);
            assert_int_equal(f->d.n, 4);
            assert_int_equal(f->d.n_items, 1);
            assert_string_equal(g_fixture->positionals, "x|y|");
        } else {
            assert_int_equal(parse(f, ARGV("--level=max")), 0);
            assert_int_equal(f->d.level, 3);
            assert_int_equal(f->d.n, 0);
        }
    }
    /* Each argv freed right after its walk, as the fuzz targets do: getopt_long must not look
     * back into the last one, whatever the next one starts with (valgrind and ASan check). */
    static const char *const lines[][3] = {
        {"-h", NULL}, {"--", "x"},  {"-V", NULL},    {"-hx", NULL}, {"--num=1", NULL},
        {"-n", "2"},  {"--", NULL}, {"stray", "-h"}, {"-hx", "-V"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char *argv[4] = {strdup("prog"), NULL, NULL, NULL};
        int argc = 1;
        for (size_t j = 0; j < 3 && lines[i][j] != NULL; j++)
            argv[argc++] = strdup(lines[i][j]);
        reset(f, TAG_A, i % 2 ? OPT_DASHDASH_ENDS : 0, true);
        opt_parse_argv(&f->p, argc, argv);
        for (int j = 0; j < argc; j++)
            free(argv[j]);
    }
    /* argc 1, and argc 0 with no argv. */
    reset(f, TAG_A, 0, false);
    assert_int_equal(opt_parse_argv(&f->p, 1, (char *const[]){"prog", NULL}), 0);
    assert_int_equal(opt_parse_argv(&f->p, 0, (char *const[]){NULL}), 0);
}

/* ---- query strings --------------------------------------------------------------------------- */

static void test_query(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(opt_load_defaults(&f->p), 0);
    assert_int_equal(opt_parse_query(&f->p, "num=7&owned=ab=c&level=HIGH&tiny=x"), 0);
    assert_int_equal(f->d.n, 7);
    assert_string_equal(f->d.owned, "ab=c");
    assert_int_equal(f->d.level, 2);
    assert_int_equal(f->d.tiny, 1);

    static const struct {
        const char *query;
        const char *log;
    } bad[] = {
        {"", "UNKNOWN \n"},
        {"num=7&", "UNKNOWN \n"},
        {"&num=7", "UNKNOWN \n"},
        {"nope=1", "UNKNOWN nope\n"},
        {"NUM=1", "UNKNOWN NUM\n"},
        {"num", "MISSING_VALUE num\n"},
        {"num=", "BAD_VALUE num=\n"},
        {"num=101", "BAD_VALUE num=101\n"},
        {"num=5&num=6", "REPEATED num=6\n"},
        {"num=x&num=6", "BAD_VALUE num=x\n"},
        {"num&num", "MISSING_VALUE num\n"},
        {"level=mid&nope", "BAD_VALUE level=mid\n"},
        {"on=1", "WRONG_TAG on=1\n"},
        {"help=1", ""}, /* an action row: nothing happens */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reset(f, TAG_A, 0, false);
        int rc = opt_parse_query(&f->p, bad[i].query);
        if (strcmp(f->log.text, bad[i].log) != 0)
            fail_msg("query \"%s\": got \"%s\", want \"%s\"", bad[i].query, f->log.text,
                     bad[i].log);
        assert_int_equal(rc, bad[i].log[0] ? BOOKS_EINVAL : 0);
    }
}

/* Parameters no row has go to the positional callback when there is one, as written. */
static void test_query_passes_the_rest_on(void **state)
{
    struct fixture *f = *state;
    reset(f, TAG_A, 0, true);
    assert_int_equal(opt_parse_query(&f->p, "sslmode=require&num=3&x&connect_timeout=5"), 0);
    assert_int_equal(f->d.n, 3);
    assert_string_equal(g_fixture->positionals, "sslmode=require|x|connect_timeout=5|");
    assert_string_equal(f->log.text, "");
}

/* ---- help ------------------------------------------------------------------------------------ */

static void test_describe(void **state)
{
    (void)state;
    char buf[160];
    struct opt whole = {.set = opt_set_int, .min = 0, .max = 9, .accepts = "a whole number"};
    struct opt plain_string = {.set = opt_set_string};
    struct opt custom = {.set = set_tiny};
    struct opt binary = {.set = opt_set_choice, .choices = two};
    assert_string_equal(opt_describe(&rows[0], buf, sizeof buf), "an integer from 1 to 100");
    assert_string_equal(opt_describe(&whole, buf, sizeof buf), "a whole number from 0 to 9");
    assert_string_equal(opt_describe(&rows[1], buf, sizeof buf), "a non-empty string");
    assert_string_equal(opt_describe(&plain_string, buf, sizeof buf), "a string");
    assert_string_equal(opt_describe(&rows[4], buf, sizeof buf), "one of low, high, max");
    assert_string_equal(opt_describe(&binary, buf, sizeof buf), "on or off");
    assert_string_equal(opt_describe(&rows[6], buf, sizeof buf), "x or y");
    assert_string_equal(opt_describe(&custom, buf, sizeof buf), "a value");
    assert_string_equal(opt_describe(&rows[0], buf, 6), "an in"); /* cut to fit */
}

static char *capture_help(const struct opt *opts, size_t n, unsigned tags,
                          const struct opt_help_style *st)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    opt_print_help(f, opts, n, tags, st);
    fclose(f);
    return text;
}

static void test_help_below(void **state)
{
    (void)state;
    static const struct opt_help_style below = {
        .width = 40, .indent = 4, .arg_sep = '=', .env = true, .accepts = true};
    static const struct opt long_env[] = {
        {.name = "a-rather-long-flag",
         .env = "A_RATHER_LONG_VARIABLE",
         .arg = "N",
         .set = opt_set_int,
         .max = 5,
         .help = "Short."},
    };
    char *text = capture_help(rows, 2, 0, &below);
    assert_string_equal(text, "  -n, --num=N  (env T_NUM, default 10)\n"
                              "    A number. Accepts an integer from 1\n"
                              "    to 100.\n"
                              "  --owned=TEXT\n"
                              "    (env T_OWNED, default dflt)\n"
                              "    An owned | piped string. Accepts a\n"
                              "    non-empty string.\n");
    free(text);
    text = capture_help(long_env, 1, 0, &below);
    assert_string_equal(text, "  --a-rather-long-flag=N\n"
                              "    (env A_RATHER_LONG_VARIABLE, default none)\n"
                              "    Short. Accepts an integer from 0 to\n"
                              "    5.\n");
    free(text);
    /* Actions: no value, no "Accepts". */
    text = capture_help(rows + 7, 1, 0, &below);
    assert_string_equal(text, "  -h, --help\n    Help.\n");
    free(text);
}

static void test_help_beside(void **state)
{
    (void)state;
    static const struct opt_help_style beside = {
        .width = 30, .indent = 12, .beside = true, .arg_sep = ' '};
    static const struct opt quoted[] = {
        {.name = "q",
         .arg = "X",
         .set = opt_set_borrowed,
         .tags = TAG_B,
         .help = "Run \"a quoted phrase here\" now."},
    };
    char *text = capture_help(rows, N_ROWS, TAG_A, &beside); /* only --borrowed */
    assert_string_equal(text, "  --borrowed TEXT\n"
                              "            A borrowed string.\n");
    free(text);
    text = capture_help(rows, 1, 0, &beside);
    assert_string_equal(text, "  -n, --num N\n            A number.\n");
    free(text);
    text = capture_help(rows + 3, 1, 0, &beside);
    assert_string_equal(text, "  --on      A switch.\n");
    free(text);
    /* A quoted phrase is one word, even past the width. */
    text = capture_help(quoted, 1, 0, &beside);
    assert_string_equal(text, "  --q X     Run\n"
                              "            \"a quoted phrase here\"\n"
                              "            now.\n");
    free(text);
}

static void test_markdown(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    opt_print_markdown(f, rows, 2, 0);
    fclose(f);
    assert_string_equal(text, "| setting | flag | default | meaning |\n"
                              "|---|---|---|---|\n"
                              "| `T_NUM` | `--num` | `10` | A number. Accepts an integer from 1 to "
                              "100. |\n"
                              "| `T_OWNED` | `--owned` | `dflt` | An owned \\| piped string. "
                              "Accepts a non-empty string. |\n");
    free(text);
    /* Rows without .env are not settings; a row without default says so. */
    f = open_memstream(&text, &len);
    opt_print_markdown(f, rows + 2, N_ROWS - 2, 0);
    fclose(f);
    assert_non_null(strstr(text, "| `T_LEVEL` | `--level` | `low` | A level. Accepts one of low, "
                                 "high, max. |\n"));
    assert_non_null(strstr(text, "| `T_TINY` | `--tiny` | (none) | Custom. Accepts x or y. |\n"));
    assert_null(strstr(text, "--borrowed"));
    free(text);
}

static void test_cleanup(void **state)
{
    struct fixture *f = *state;
    struct dest zero = {0};
    opt_cleanup(rows, N_ROWS, &zero);
    opt_cleanup(rows, N_ROWS, NULL);
    assert_int_equal(parse(f, ARGV("--owned=x", "--item=a", "--item=b")), 0);
    opt_cleanup(rows, N_ROWS, &f->d);
    assert_null(f->d.owned);
    assert_null(f->d.items);
    assert_int_equal(f->d.n_items, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_set_int),
        T(test_set_string_and_borrowed),
        T(test_set_switch_choice_custom),
        T(test_set_append),
        T(test_getenv),
        T(test_fail_keeps_the_first),
        T(test_plain_report),
        T(test_defaults),
        T(test_env),
        T(test_argv_forms),
        T(test_argv_is_not_modified),
        T(test_argv_exact_names),
        T(test_argv_short_flags_are_whole),
        T(test_argv_values),
        T(test_argv_double_dash),
        T(test_argv_actions),
        T(test_argv_tags),
        T(test_argv_first_problem_is_kept),
        T(test_argv_reentrant),
        T(test_query),
        T(test_query_passes_the_rest_on),
        T(test_describe),
        T(test_help_below),
        T(test_help_beside),
        T(test_markdown),
        T(test_cleanup),
    };
    return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
