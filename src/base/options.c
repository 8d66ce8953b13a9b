/* options.c: the option table's setters and walkers. Every walker ends in one place, apply(),
 * which runs the checks in a fixed order and calls the row's setter; so a value means the same
 * from a default, an environment variable, a flag or a query parameter, and a problem is reported
 * the same way wherever it came from. Messages are the caller's (its report function): this file
 * only says what went wrong and with which row.
 *
 * The argv walker leans on getopt_long(3) for what it does well (finding the row of a long or
 * short flag, splitting "--name=value", taking the next argument as the value) and keeps the
 * rules it does not have: names must be exact (glibc accepts any unambiguous prefix, and
 * "--por=1" setting the port would be a surprise), a short flag is a whole argument ("-hx" would
 * otherwise be -h and then -x, turning a typo into help), "--" may be an error rather than the
 * end of the options, and a forgotten value is not filled with the next flag. It runs getopt in
 * RETURN_IN_ORDER mode ("-" first in the optstring), so arguments come back in order, argv is
 * never permuted and the caller sees a command before the options that follow it. */
#include "books/options.h"

#include "books/error.h"
#include "books/text.h"

#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* getopt_long's value for the long option of row i (above every char and the '?', ':', 1 it
 * returns itself). */
#define LONG_BASE 0x1000

static void *field_of(const struct opt *o, void *base)
{
    return (char *)base + o->offset;
}

/* ---- setters ----------------------------------------------------------------------------- */

int opt_set_int(const struct opt *o, void *base, const char *value)
{
    long long v;
    if (o->min < INT_MIN || o->max > INT_MAX || o->min > o->max)
        abort(); /* the table promises what an int cannot hold */
    if (value == NULL || text_parse_decimal(value, o->min, o->max, &v) != 0)
        return BOOKS_EINVAL;
    *(int *)field_of(o, base) = (int)v;
    return 0;
}

int opt_set_string(const struct opt *o, void *base, const char *value)
{
    char **field = field_of(o, base);
    size_t n;
    char *copy;

    if (value == NULL)
        return BOOKS_EINVAL;
    n = strlen(value);
    if ((long long)n < o->min || (o->max > 0 && (long long)n > o->max))
        return BOOKS_EINVAL;
    copy = strdup(value);
    if (copy == NULL)
        return BOOKS_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

void opt_free_string(const struct opt *o, void *base)
{
    char **field = field_of(o, base);
    free(*field);
    *field = NULL;
}

int opt_set_borrowed(const struct opt *o, void *base, const char *value)
{
    if (value == NULL)
        return BOOKS_EINVAL;
    *(const char **)field_of(o, base) = value;
    return 0;
}

int opt_set_switch(const struct opt *o, void *base, const char *value)
{
    (void)value;
    *(bool *)field_of(o, base) = true;
    return 0;
}

int opt_choice_find(const struct opt_choice *choices, const char *name, int *value)
{
    if (name == NULL || choices == NULL)
        return BOOKS_EINVAL;
    for (const struct opt_choice *c = choices; c->name != NULL; c++) {
        if (strcasecmp(c->name, name) == 0) {
            *value = c->value;
            return 0;
        }
    }
    return BOOKS_EINVAL;
}

int opt_set_choice(const struct opt *o, void *base, const char *value)
{
    return opt_choice_find(o->choices, value, (int *)field_of(o, base));
}

int opt_set_append(const struct opt *o, void *base, const char *value)
{
    const char ***array = field_of(o, base);
    size_t *count = (size_t *)(void *)((char *)base + o->count_offset);
    const char **grown;

    if (value == NULL)
        return BOOKS_EINVAL;
    /* One realloc per value: a repeated flag is repeated a handful of times, never millions. */
    grown = realloc(*array, (*count + 1) * sizeof **array);
    if (grown == NULL)
        return BOOKS_ENOMEM;
    grown[(*count)++] = value;
    *array = grown;
    return 0;
}

void opt_free_array(const struct opt *o, void *base)
{
    const char ***array = field_of(o, base);
    free(*array);
    *array = NULL;
    *(size_t *)(void *)((char *)base + o->count_offset) = 0;
}

const char *opt_getenv(char *const envp[], const char *name)
{
    size_t len = strlen(name);
    if (envp == NULL)
        return NULL;
    for (size_t i = 0; envp[i] != NULL; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/* ---- problems ------------------------------------------------------------------------------ */

void opt_fail(struct opt_parser *p, int rc, const char *fmt, ...)
{
    va_list ap;
    if (p->rc == BOOKS_ENOMEM || (p->rc != 0 && rc != BOOKS_ENOMEM))
        return;
    p->rc = rc;
    if (p->err == NULL || p->errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
}

/* The message when the caller has no report function of its own: "NAME": what is wrong. */
static void plain_report(struct opt_parser *p, const struct opt_problem *pr)
{
    static const char *const what[] = {
        [OPT_UNKNOWN] = "unknown option",         [OPT_BAD_VALUE] = "bad value",
        [OPT_MISSING_VALUE] = "needs a value",    [OPT_UNEXPECTED_VALUE] = "takes no value",
        [OPT_WRONG_TAG] = "not accepted here",    [OPT_REPEATED] = "given twice",
        [OPT_POSITIONAL] = "unexpected argument",
    };
    char name[256], value[256], accepted[160];
    char cut[TEXT_QUOTE_MAX + 2]; /* one byte more than text_quote() keeps: it then adds "..." */

    snprintf(cut, sizeof cut, "%.*s", (int)(pr->name_len < sizeof cut ? pr->name_len : sizeof cut),
             pr->name);
    text_quote(name, sizeof name, cut, TEXT_QUOTE_ESCAPE);
    if (pr->kind == OPT_BAD_VALUE)
        opt_fail(p, BOOKS_EINVAL, "\"%s\": expected %s, got \"%s\"", name,
                 opt_describe(pr->o, accepted, sizeof accepted),
                 text_quote(value, sizeof value, pr->value, TEXT_QUOTE_ESCAPE));
    else
        opt_fail(p, BOOKS_EINVAL, "\"%s\": %s", name, what[pr->kind]);
}

static void report(struct opt_parser *p, enum opt_problem_kind kind, const struct opt *o,
                   const char *name, size_t name_len, const char *value)
{
    struct opt_problem pr = {kind, o, name, name_len, value};
    if (p->rc != 0)
        return; /* only the first problem is described */
    if (p->report != NULL)
        p->report(p, &pr);
    else
        plain_report(p, &pr);
    if (p->rc == 0)
        p->rc = BOOKS_EINVAL; /* a report that wrote nothing still leaves the walk failed */
}

/* The one place a value reaches a row, whichever walker found it. */
static void apply(struct opt_parser *p, const struct opt *o, const char *name, size_t name_len,
                  const char *value)
{
    int rc;
    if (o->action != 0) {
        if (p->action == 0)
            p->action = o->action; /* the first wins, as it would if each exited at once */
        return;
    }
    if (o->tags != 0 && (o->tags & p->tags) == 0) {
        report(p, OPT_WRONG_TAG, o, name, name_len, value);
        return;
    }
    rc = o->set(o, p->base, value);
    if (rc == BOOKS_ENOMEM)
        opt_fail(p, BOOKS_ENOMEM, "out of memory while reading %.*s", (int)name_len, name);
    else if (rc != 0)
        report(p, OPT_BAD_VALUE, o, name, name_len, value);
}

/* ---- defaults and environment ---------------------------------------------------------------- */

int opt_load_defaults(struct opt_parser *p)
{
    for (size_t i = 0; i < p->n_opts && p->rc != BOOKS_ENOMEM; i++) {
        const struct opt *o = &p->opts[i];
        if (o->def == NULL || o->set == NULL)
            continue;
        int rc = o->set(o, p->base, o->def);
        if (rc == BOOKS_EINVAL)
            abort(); /* a default outside its own bounds: the table is wrong */
        if (rc != 0)
            opt_fail(p, rc, "out of memory while reading the default of %s",
                     o->name ? o->name : o->env);
    }
    return p->rc;
}

int opt_load_env(struct opt_parser *p, char *const envp[])
{
    for (size_t i = 0; i < p->n_opts && p->rc != BOOKS_ENOMEM; i++) {
        const struct opt *o = &p->opts[i];
        const char *v = o->env != NULL ? opt_getenv(envp, o->env) : NULL;
        if (v == NULL || *v == '\0' || o->set == NULL)
            continue;
        int rc = o->set(o, p->base, v);
        if (rc == BOOKS_ENOMEM)
            opt_fail(p, rc, "out of memory while reading %s", o->env);
        else if (rc != 0)
            report(p, OPT_BAD_VALUE, o, o->env, strlen(o->env), v);
    }
    return p->rc;
}

/* ---- argv ------------------------------------------------------------------------------------ */

/* The row called `name` (len bytes): a long name after "--", or a short one after "-". */
static const struct opt *find_flag(const struct opt_parser *p, const char *arg, size_t len)
{
    for (size_t i = 0; i < p->n_opts; i++) {
        const struct opt *o = &p->opts[i];
        if (len > 2 && arg[1] == '-' && o->name != NULL && strlen(o->name) == len - 2 &&
            memcmp(o->name, arg + 2, len - 2) == 0)
            return o;
        if (len == 2 && arg[1] != '-' && o->short_name != 0 && arg[1] == (char)o->short_name)
            return o;
    }
    return NULL;
}

/* getopt_long refused arg (or found a row by an abbreviation we refuse): say why, from the
 * argument itself. */
static void refused(struct opt_parser *p, const char *arg)
{
    const char *eq = arg[1] == '-' ? strchr(arg, '=') : NULL; /* only long flags take "=" */
    size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    const struct opt *o = find_flag(p, arg, len);

    if (o != NULL && eq != NULL && o->arg == NULL)
        report(p, OPT_UNEXPECTED_VALUE, o, arg, len, eq + 1);
    else if (o != NULL && eq == NULL && o->arg != NULL)
        report(p, OPT_MISSING_VALUE, o, arg, len, NULL);
    else
        report(p, OPT_UNKNOWN, NULL, arg, len, NULL);
}

static void positional(struct opt_parser *p, const char *arg)
{
    if (p->positional != NULL)
        p->positional(p, arg);
    else
        report(p, OPT_POSITIONAL, NULL, arg, strlen(arg), arg);
}

int opt_parse_argv(struct opt_parser *p, int argc, char *const argv[])
{
    struct option longopts[OPT_MAX_ROWS + 1];
    char shorts[3 + 2 * OPT_MAX_ROWS + 1];
    size_t nl = 0, ns = 0;

    if (p->n_opts > OPT_MAX_ROWS)
        abort();        /* a table larger than the arrays below */
    shorts[ns++] = '-'; /* RETURN_IN_ORDER: non-options come back as 1, in order */
    shorts[ns++] = ':'; /* a missing value is ':', not a message on stderr */
    for (size_t i = 0; i < p->n_opts; i++) {
        const struct opt *o = &p->opts[i];
        if (o->name != NULL)
            longopts[nl++] = (struct option){o->name, o->arg ? required_argument : no_argument,
                                             NULL, LONG_BASE + (int)i};
        if (o->short_name != 0) {
            shorts[ns++] = (char)o->short_name;
            if (o->arg != NULL)
                shorts[ns++] = ':';
        }
    }
    longopts[nl] = (struct option){0};
    shorts[ns] = '\0';

    if (argc < 2)
        return p->rc;
    /* optind = 0 makes glibc start over, its hidden state included (where it was inside the last
     * argv), so a process can parse many command lines: the fuzz targets call config_load() and
     * cli_parse() millions of times, each argv freed after. That happens inside getopt_long, so it
     * is called once on argv[0] alone before the loop below may move optind itself. */
    optind = 0;
    opterr = 0;
    (void)getopt_long(1, argv, shorts, longopts, NULL);
    while (p->rc != BOOKS_ENOMEM) {
        int at = optind; /* the argument getopt_long looks at next */
        if (at >= argc)
            break;
        const char *arg = argv[at];
        if (strcmp(arg, "--") == 0) {
            if (p->flags & OPT_DASHDASH_ENDS) {
                for (int i = at + 1; i < argc && p->rc != BOOKS_ENOMEM; i++)
                    positional(p, argv[i]);
                break;
            }
            report(p, OPT_UNKNOWN, NULL, arg, 2, NULL);
            optind = at + 1;
            continue;
        }
        if (arg[0] == '-' && arg[1] != '-' && arg[1] != '\0' && arg[2] != '\0') {
            /* "-hx", "-h=x", "-p80": not something getopt_long should take apart. */
            report(p, OPT_UNKNOWN, NULL, arg, strlen(arg), NULL);
            optind = at + 1;
            continue;
        }
        int c = getopt_long(argc, argv, shorts, longopts, NULL);
        if (c == -1)
            break;
        if (c == 1) {
            positional(p, optarg);
            continue;
        }
        const struct opt *o = NULL;
        size_t len = strlen(arg);
        if (c >= LONG_BASE) {
            const char *eq = strchr(arg, '=');
            if (eq != NULL)
                len = (size_t)(eq - arg);
            o = &p->opts[c - LONG_BASE];
            if (len - 2 != strlen(o->name) || memcmp(arg + 2, o->name, len - 2) != 0)
                o = NULL; /* an abbreviation */
        } else if (c != '?' && c != ':') {
            o = find_flag(p, arg, len);
        }
        if (o == NULL) {
            refused(p, arg);
            optind = at + 1; /* an abbreviation may have taken the next argument as its value */
            continue;
        }
        const char *value = o->arg != NULL ? optarg : NULL;
        if (value != NULL && (p->flags & OPT_DASHED_VALUE_MISSING) && at + 1 < argc &&
            value == argv[at + 1] && strncmp(value, "--", 2) == 0) {
            report(p, OPT_MISSING_VALUE, o, arg, len, NULL);
            optind = at + 1; /* and read the "--flag" that followed as one */
            continue;
        }
        apply(p, o, arg, len, value);
    }
    optind = 0;
    return p->rc;
}

/* ---- URI query strings ----------------------------------------------------------------------- */

int opt_parse_query(struct opt_parser *p, const char *query)
{
    size_t len = strlen(query);
    /* A working copy, split in place, and one "seen" byte per row. */
    char *copy = malloc(len + 1 + p->n_opts);
    unsigned char *seen;

    if (copy == NULL) {
        opt_fail(p, BOOKS_ENOMEM, "out of memory");
        return p->rc;
    }
    memcpy(copy, query, len + 1);
    seen = (unsigned char *)copy + len + 1;
    memset(seen, 0, p->n_opts);
    for (char *seg = copy; seg != NULL && p->rc != BOOKS_ENOMEM;) {
        char *amp = strchr(seg, '&');
        if (amp != NULL)
            *amp = '\0';
        char *eq = strchr(seg, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - seg) : strlen(seg);
        size_t i;
        for (i = 0; i < p->n_opts; i++)
            if (p->opts[i].name != NULL && strlen(p->opts[i].name) == name_len &&
                memcmp(p->opts[i].name, seg, name_len) == 0)
                break;
        if (i == p->n_opts && p->positional != NULL) {
            p->positional(p, seg); /* someone else's parameter, e.g. libpq's */
        } else if (i == p->n_opts) {
            report(p, OPT_UNKNOWN, NULL, seg, name_len, NULL);
        } else {
            const struct opt *o = &p->opts[i];
            if (o->set == opt_set_borrowed || o->set == opt_set_append)
                abort(); /* a value that would point into the working copy */
            if (seen[i])
                report(p, OPT_REPEATED, o, seg, name_len, eq != NULL ? eq + 1 : NULL);
            else if (eq == NULL)
                report(p, OPT_MISSING_VALUE, o, seg, name_len, NULL);
            else
                apply(p, o, seg, name_len, eq + 1);
            seen[i] = 1;
        }
        seg = amp != NULL ? amp + 1 : NULL;
    }
    free(copy);
    return p->rc;
}

void opt_cleanup(const struct opt *opts, size_t n, void *base)
{
    if (base == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (opts[i].free != NULL)
            opts[i].free(&opts[i], base);
}

/* ---- help ------------------------------------------------------------------------------------ */

const char *opt_describe(const struct opt *o, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (o->set == opt_set_int) {
        snprintf(buf, len, "%s from %lld to %lld", o->accepts ? o->accepts : "an integer", o->min,
                 o->max);
    } else if (o->accepts != NULL) {
        snprintf(buf, len, "%s", o->accepts);
    } else if (o->set == opt_set_choice) {
        /* "a or b" for two words, "one of a, b, c" for more; aliases left out. */
        const char *names[16];
        size_t n = 0;
        for (const struct opt_choice *c = o->choices; c->name != NULL && n < 16; c++) {
            bool alias = false;
            for (const struct opt_choice *d = o->choices; d != c; d++)
                alias = alias || d->value == c->value;
            if (!alias)
                names[n++] = c->name;
        }
        size_t off = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < n && off < len; i++) {
            const char *sep = i == 0 ? (n > 2 ? "one of " : "") : (n == 2 ? " or " : ", ");
            int w = snprintf(buf + off, len - off, "%s%s", sep, names[i]);
            off += w > 0 ? (size_t)w : 0;
        }
    } else if (o->set == opt_set_string) {
        snprintf(buf, len, o->min > 0 ? "a non-empty string" : "a string");
    } else {
        snprintf(buf, len, "a value");
    }
    return buf;
}

void opt_help_entry(FILE *f, const struct opt *o, const struct opt_help_style *style)
{
    char head[160], text[2048], accepted[160];
    int n;

    if (o->short_name != 0)
        snprintf(head, sizeof head, "  -%c, --%s", o->short_name, o->name);
    else
        snprintf(head, sizeof head, "  --%s", o->name);
    if (o->arg != NULL)
        snprintf(head + strlen(head), sizeof head - strlen(head), "%c%s", style->arg_sep, o->arg);
    n = (int)strlen(head);
    fputs(head, f);
    if (style->env && o->env != NULL) {
        const char *def = o->def != NULL && o->def[0] != '\0' ? o->def : "none";
        int meta = snprintf(NULL, 0, "  (env %s, default %s)", o->env, def);
        if (n + meta <= style->width)
            fprintf(f, "  (env %s, default %s)", o->env, def);
        else /* a long flag: its environment variable and default go on a line of their own */
            fprintf(f, "\n%*s(env %s, default %s)", style->indent, "", o->env, def);
    }
    int col = n;
    if (!style->beside || n >= style->indent - 1) {
        fputc('\n', f);
        col = 0;
    }
    if (style->accepts && o->arg != NULL)
        snprintf(text, sizeof text, "%s Accepts %s.", o->help ? o->help : "",
                 opt_describe(o, accepted, sizeof accepted));
    else
        snprintf(text, sizeof text, "%s", o->help ? o->help : "");
    text_wrap(f, text, style->indent, col, style->width);
}

void opt_print_help(FILE *f, const struct opt *opts, size_t n, unsigned tags,
                    const struct opt_help_style *style)
{
    for (size_t i = 0; i < n; i++)
        if (tags == 0 || (opts[i].tags & tags) != 0)
            opt_help_entry(f, &opts[i], style);
}

/* A table cell: "|" would end the cell early, so it is escaped. */
static void print_cell(FILE *f, const char *text)
{
    for (; *text != '\0'; text++) {
        if (*text == '|')
            fputc('\\', f);
        fputc(*text, f);
    }
}

void opt_print_markdown(FILE *f, const struct opt *opts, size_t n, unsigned tags)
{
    char accepted[160];
    fputs("| setting | flag | default | meaning |\n", f);
    fputs("|---|---|---|---|\n", f);
    for (size_t i = 0; i < n; i++) {
        const struct opt *o = &opts[i];
        if (o->env == NULL || (tags != 0 && (o->tags & tags) == 0))
            continue;
        if (o->def != NULL && o->def[0] != '\0')
            fprintf(f, "| `%s` | `--%s` | `%s` | ", o->env, o->name, o->def);
        else
            fprintf(f, "| `%s` | `--%s` | (none) | ", o->env, o->name);
        print_cell(f, o->help ? o->help : "");
        fputs(" Accepts ", f);
        print_cell(f, opt_describe(o, accepted, sizeof accepted));
        fputs(". |\n", f);
    }
}
