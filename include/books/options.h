/* options.h: options as one declarative table, in the manner of nginx's directives. A row names an
 * option (long flag, short flag, environment variable, URI query parameter), says where its value
 * goes (a typed setter and the offsetof a field), what it accepts (bounds, choices), its default as
 * text, its help and its tags; walkers fill a caller's struct from the defaults, an environment,
 * an argv (getopt_long(3)) or a URI query string, and the same rows print --help and a Markdown
 * table. The daemon's settings, the CLI's flags and the store URIs' parameters all go through it.
 * This module never exits, never reads the process's environment itself (callers pass envp) and
 * writes only into the caller's struct, the caller's error buffer, and the FILE it is given.
 *
 * Threads: opt_parse_argv() uses getopt_long(3)'s global state (optind, optarg, opterr), so it may
 * run in one thread at a time, and not while the caller is inside a getopt loop of its own; it is
 * meant for a program's start-up. Everything else here keeps no state of its own: any thread,
 * each with its own struct opt_parser and destination. */
#ifndef BOOKS_OPTIONS_H
#define BOOKS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct opt;

/* A typed slot setter: reads `value` (NUL-terminated; NULL for an option without a value) and
 * stores it into the field at (char *)base + o->offset. Returns 0, BOOKS_EINVAL (a value it does
 * not accept: the field is untouched) or BOOKS_ENOMEM. A setter never prints and never formats a
 * message: the walker reports the problem, naming the option as the user wrote it. */
typedef int (*opt_set_fn)(const struct opt *o, void *base, const char *value);

/* Frees what a setter allocated into its field and zeroes the field; safe on a zeroed field. */
typedef void (*opt_free_fn)(const struct opt *o, void *base);

/* One accepted word of opt_set_choice(). Matched case-insensitively. A name whose value an earlier
 * name of the same list already has is an alias: accepted, but not listed in help or messages. */
struct opt_choice {
    const char *name; /* NULL ends the list */
    int value;
};

/* One row of a table. Rows are static const data; designated initializers, zero for "none". */
struct opt {
    const char *name;    /* long flag without "--" ("port"), or the query parameter ("cache_mb") */
    const char *env;     /* environment variable read by opt_load_env(), or NULL */
    int short_name;      /* short flag ('h' for -h), or 0. Always a whole argument: no "-hV", no
                          * "-p80"; a short flag with a value takes the next argument */
    const char *arg;     /* placeholder of the value in help ("N", "URI"); NULL: takes no value */
    opt_set_fn set;      /* the typed setter; NULL only for action rows */
    opt_free_fn free;    /* what opt_cleanup() calls for this row, or NULL: nothing to free */
    size_t offset;       /* offsetof() the field in the destination struct */
    size_t count_offset; /* opt_set_append(): offsetof() the size_t count beside the array */
    long long min, max;  /* opt_set_int(): the bounds, inclusive, within int. opt_set_string():
                          * the length bounds in bytes (max 0: no upper bound) */
    const struct opt_choice *choices; /* opt_set_choice(): the accepted words */
    const char *def;     /* the default as text, parsed by the setter like user input, so it cannot
                          * be out of its own bounds; NULL: none (the field keeps its zero) */
    const char *accepts; /* what the value is, for messages and help: for opt_set_int() the noun
                          * before "from MIN to MAX" (default "an integer"); for a custom setter
                          * the whole phrase ("a number of seconds above 0"). NULL: derived */
    const char *help;    /* one or more sentences */
    unsigned tags;       /* caller-defined bits (the CLI: the commands that take the option); the
                          * argv and query walkers accept a row only when tags == 0 or
                          * (tags & parser->tags) != 0 */
    int action;          /* non-zero: an action flag (--help, --version) that takes no value and
                          * has no setter; the first one on the command line is kept in
                          * parser->action, and the caller decides what it means */
};

/* ---- setters: each documents the field type it writes ------------------------------------- */

/* int: a strict decimal (text_parse_decimal(): digits only, then strtonum(3)) within
 * [o->min, o->max], which must lie within int (a table that says otherwise aborts). */
int opt_set_int(const struct opt *o, void *base, const char *value);

/* char *, owned: a copy of value (its length within o->min..o->max, so .min = 1 refuses the empty
 * string); the field's old value is freed. Pair with .free = opt_free_string. */
int opt_set_string(const struct opt *o, void *base, const char *value);
void opt_free_string(const struct opt *o, void *base);

/* const char *, borrowed: points at value itself (into argv or envp, which must outlive the
 * destination). Any string, the empty one included. Not for opt_parse_query(). */
int opt_set_borrowed(const struct opt *o, void *base, const char *value);

/* bool: set to true. For rows without .arg (a switch). */
int opt_set_switch(const struct opt *o, void *base, const char *value);

/* int: the value of the o->choices entry whose name equals value, ignoring ASCII case. */
int opt_set_choice(const struct opt *o, void *base, const char *value);

/* const char **, an owned array of borrowed strings, with its size_t count at o->count_offset:
 * value is appended (a repeated option, in order). The array grows with realloc(3); it may start
 * NULL or hold anything from an earlier realloc/malloc. Not for opt_parse_query(). Pair with
 * .free = opt_free_array (frees the array, not the strings; zeroes the count). */
int opt_set_append(const struct opt *o, void *base, const char *value);
void opt_free_array(const struct opt *o, void *base);

/* The entry of `choices` whose name equals name ignoring ASCII case: 0 with *value set, or
 * BOOKS_EINVAL with *value untouched (also when name is NULL). */
int opt_choice_find(const struct opt_choice *choices, const char *name, int *value);

/* The value of "NAME=value" in envp (NULL-terminated "NAME=value" strings, like environ; may be
 * NULL), as getenv(3) would find it: the first match. NULL when absent. Points into envp. */
const char *opt_getenv(char *const envp[], const char *name);

/* ---- walkers ------------------------------------------------------------------------------- */

/* What went wrong with one option, for the caller's report function. */
enum opt_problem_kind {
    OPT_UNKNOWN,          /* no row of that name (name: as written, up to any '=') */
    OPT_BAD_VALUE,        /* the setter refused `value` */
    OPT_MISSING_VALUE,    /* a row with .arg got no value */
    OPT_UNEXPECTED_VALUE, /* a row without .arg got "=value" */
    OPT_WRONG_TAG,        /* a row whose tags share no bit with parser->tags */
    OPT_REPEATED,         /* a query parameter given a second time */
    OPT_POSITIONAL,       /* an argument that is no option, and parser->positional is NULL */
};

struct opt_problem {
    enum opt_problem_kind kind;
    const struct opt *o; /* the row, or NULL for OPT_UNKNOWN and OPT_POSITIONAL */
    const char *name;    /* as the user wrote it: "--port", "-x", "PORT", "cache_mb"; not */
    size_t name_len;     /* NUL-terminated at name_len (it may be followed by "=value") */
    const char *value;   /* the value, for OPT_BAD_VALUE, OPT_UNEXPECTED_VALUE, OPT_POSITIONAL */
};

/* argv: "--" ends the options, every later argument goes to the positional callback. Without it
 * "--" is reported as an unknown option. */
#define OPT_DASHDASH_ENDS 0x1u
/* argv: "--flag --other": a value that would come from the next argument but starts with "--"
 * is taken as a forgotten value (OPT_MISSING_VALUE, and "--other" is read as an option), so
 * "--store --port 80" says so rather than storing books at "--port". "--flag=--odd" still
 * passes such a value. Without it the next argument is the value whatever it looks like. */
#define OPT_DASHED_VALUE_MISSING 0x2u

/* One walk's settings and outcome. The caller fills the first block (designated initializer),
 * zeroes the rest, and may run several walkers with one parser (defaults, then the environment,
 * then argv): problems accumulate, and the first one is the one kept. */
struct opt_parser {
    const struct opt *opts;
    size_t n_opts;  /* at most OPT_MAX_ROWS */
    void *base;     /* the struct the rows' offsets point into */
    unsigned tags;  /* rows accepted by the argv and query walkers; see struct opt's tags */
    unsigned flags; /* OPT_DASHDASH_ENDS, OPT_DASHED_VALUE_MISSING */
    /* Formats the message of a problem, normally with one opt_fail(p, BOOKS_EINVAL, ...). Called
     * only while no problem is recorded, so it describes the first one. NULL: a plain message. */
    void (*report)(struct opt_parser *p, const struct opt_problem *problem);
    /* Gets each argument that is not an option, in order (after "--" too, with
     * OPT_DASHDASH_ENDS); may change p->tags (the CLI: a command selects its options) and call
     * opt_fail(). NULL: each is reported as OPT_POSITIONAL. */
    void (*positional)(struct opt_parser *p, const char *arg);
    void *self; /* the caller's, for its callbacks */
    char *err;  /* the first problem's message (errlen bytes, NUL-terminated; may be NULL) */
    size_t errlen;
    /* Outcome. */
    int rc;     /* 0 while nothing went wrong; else the first problem's code (BOOKS_EINVAL), or
                 * BOOKS_ENOMEM, which replaces any other and stops every walker */
    int action; /* the first action row's .action a walker met (opt_parse_argv(), or a query
                 * parameter naming one), or 0 */
};

/* Most rows in one table (the argv walker builds getopt_long's arrays on the stack). */
#define OPT_MAX_ROWS 64

/* Records a problem: when p->rc is 0 (or rc is BOOKS_ENOMEM), sets p->rc = rc and formats the
 * message into p->err; otherwise does nothing, so the first problem is the one kept. */
void opt_fail(struct opt_parser *p, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets every row that has a .def from it. A default its own setter refuses is a broken table:
 * abort(). Returns p->rc (BOOKS_ENOMEM when a copy failed). */
int opt_load_defaults(struct opt_parser *p);

/* Sets every row that has an .env from envp (as opt_getenv() finds it; envp may be NULL). An
 * empty value ("VAR=") is how shells and container specs spell "not set" and is skipped. A value
 * the setter refuses is reported as OPT_BAD_VALUE named by the variable. Returns p->rc. */
int opt_load_env(struct opt_parser *p, char *const envp[]);

/* Walks argv[1..argc-1] with getopt_long(3) (optind reset first, error printing off), in order:
 * long flags as "--name value" or "--name=value", named exactly (getopt_long's abbreviations
 * are refused as unknown), short flags as whole arguments, other arguments to p->positional.
 * Keeps going after a problem, to find an action row later on the line (asking for help must
 * work on a wrong line): a later value for a single-valued row replaces an earlier one. For each
 * option, in this order: unknown, missing or unexpected value, action (recorded, nothing set),
 * wrong tag, then the setter. Returns p->rc. argv is not modified (no permutation). */
int opt_parse_argv(struct opt_parser *p, int argc, char *const argv[]);

/* Walks a URI query string, "name=value&name=value" (without the '?'; "" is one empty, hence
 * unknown, parameter, so a caller with no '?' does not call this). Names match exactly; values
 * are taken as they are (no percent-decoding: paths and our values never need it) and may not be
 * kept (no opt_set_borrowed or opt_set_append rows). A name given twice is OPT_REPEATED; one
 * without '=' is OPT_MISSING_VALUE. A name no row has is OPT_UNKNOWN, or, when p->positional is
 * set, handed to it whole ("name=value" as written, valid only during the call), for a backend
 * that passes the rest on (libpq's parameters). Returns p->rc (BOOKS_ENOMEM: no memory for a
 * working copy). */
int opt_parse_query(struct opt_parser *p, const char *query);

/* Calls every row's .free on base: afterwards nothing in base is owned. Safe on a zeroed struct
 * and twice. */
void opt_cleanup(const struct opt *opts, size_t n, void *base);

/* ---- help ---------------------------------------------------------------------------------- */

/* What a row accepts, as a phrase that can follow "expected" or "Accepts": "an integer from 0 to
 * 65535", "a non-empty string", "full or normal", "one of debug, info, warning, error", or the
 * row's .accepts. Written into buf (len bytes, NUL-terminated, cut to fit). Returns buf. */
const char *opt_describe(const struct opt *o, char *buf, size_t len);

/* How opt_help_entry() lays out a row. */
struct opt_help_style {
    int width;    /* columns of the terminal text */
    int indent;   /* column where the help text starts (and its later lines) */
    bool beside;  /* the help starts on the flag's line when the flag ends before `indent` - 1;
                   * false: always on the lines below */
    char arg_sep; /* between the flag and its placeholder: '=' ("--port=N") or ' ' */
    bool env;     /* after the flag: "  (env NAME, default D)" for rows with .env (on a line of
                   * its own at `indent` when it does not fit); D is "none" without a default */
    bool accepts; /* after the help of rows with a value: " Accepts <opt_describe()>." */
};

/* One row of --help: "  -h, --help" or "  --port=N" (two spaces first), then its help wrapped
 * with text_wrap(). */
void opt_help_entry(FILE *f, const struct opt *o, const struct opt_help_style *style);

/* opt_help_entry() of every row whose tags share a bit with `tags` (0: every row), in order. */
void opt_print_help(FILE *f, const struct opt *opts, size_t n, unsigned tags,
                    const struct opt_help_style *style);

/* The rows with an .env whose tags share a bit with `tags` (0: all) as a Markdown table, one
 * line each: | setting | flag | default | meaning |, with the default `in code` or "(none)" and the
 * meaning followed by "Accepts <opt_describe()>."; "|" in the text is escaped. */
void opt_print_markdown(FILE *f, const struct opt *opts, size_t n, unsigned tags);

#endif
