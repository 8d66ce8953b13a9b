/* config.c: the settings table and the code it drives. Each setting is one row (environment
 * variable, flag, type, bounds, offset into struct books_config, default, help); parsing the
 * defaults, the environment and the flags, --help and the README's Markdown table all walk the same
 * rows, so adding a setting means adding a row and a field, nothing else. Defaults are written as
 * text and go through the same parser as user input, so a default cannot be out of its own bounds.
 * This module only reads its arguments: no getenv(), no exit(), no printing except on request. */
#include "books/config.h"

#include "books/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum setting_type {
    SETTING_INT,       /* strict decimal within [min, max], stored as int */
    SETTING_STRING,    /* non-empty, stored as an owned char * */
    SETTING_LOG_LEVEL, /* log_level_parse() names, stored as int (enum log_level) */
    SETTING_PROJECT,   /* empty, or a Google Cloud project id; stored as an owned char * */
};

struct setting {
    const char *env;  /* environment variable; also the setting's name in the docs */
    const char *flag; /* long option, with its "--" */
    const char *arg;  /* placeholder for the value in --help ("N", "URI") */
    enum setting_type type;
    size_t offset; /* of the field in struct books_config */
    long min, max; /* SETTING_INT bounds, inclusive */
    const char *def;
    const char *help; /* one or two sentences; the accepted values are added from type and bounds */
};

#define FIELD(f) offsetof(struct books_config, f)

static const struct setting settings[] = {
    {.env = "PORT",
     .flag = "--port",
     .arg = "N",
     .type = SETTING_INT,
     .offset = FIELD(port),
     .min = 0,
     .max = 65535,
     .def = "8080",
     .help = "TCP port to listen on; 0 lets the kernel pick a free port (for tests)."},
    {.env = "BOOKS_STORE",
     .flag = "--store",
     .arg = "URI",
     .type = SETTING_STRING,
     .offset = FIELD(store),
     .def = "memory:",
     .help = "Store URI. memory: keeps the books in this process; they are lost when it exits. "
             "sqlite:PATH (alias file:PATH) keeps them durably in a SQLite database file; "
             "parameters after ?, see Durability."},
    {.env = "BOOKS_THREADS",
     .flag = "--threads",
     .arg = "N",
     .type = SETTING_INT,
     .offset = FIELD(threads),
     .min = 0,
     .max = 1024,
     .def = "0",
     .help = "Worker threads serving calls; 0 means one per CPU in the process's affinity mask."},
    {.env = "BOOKS_SHUTDOWN_GRACE_MS",
     .flag = "--shutdown-grace-ms",
     .arg = "MS",
     .type = SETTING_INT,
     .offset = FIELD(shutdown_grace_ms),
     .min = 0,
     .max = 600000,
     .def = "8000",
     .help = "Milliseconds that calls in flight get to finish after SIGTERM before they are "
             "cancelled."},
    {.env = "BOOKS_MAX_RECV_BYTES",
     .flag = "--max-recv-bytes",
     .arg = "BYTES",
     .type = SETTING_INT,
     .offset = FIELD(max_recv_bytes),
     .min = 1024,
     .max = 1073741824,
     .def = "4194304",
     .help = "Largest request message accepted, in bytes; a larger one fails with "
             "RESOURCE_EXHAUSTED."},
    {.env = "BOOKS_MAX_CONCURRENT_STREAMS",
     .flag = "--max-concurrent-streams",
     .arg = "N",
     .type = SETTING_INT,
     .offset = FIELD(max_concurrent_streams),
     .min = 1,
     .max = 65536,
     .def = "100",
     .help = "Most calls (HTTP/2 streams) a single client connection may have open at once."},
    {.env = "BOOKS_MEMORY_LIMIT_MB",
     .flag = "--memory-limit-mb",
     .arg = "MIB",
     .type = SETTING_INT,
     .offset = FIELD(memory_limit_mb),
     .min = 0,
     .max = 1048576,
     .def = "0",
     .help = "Memory this process may use, in MiB; 0 means the limit of its cgroup (Cloud Run sets "
             "it to the instance's memory), or 512 where there is none. Half of it is gRPC "
             "core's resource quota for connections and calls, and a quarter bounds the memory: "
             "store; past them calls fail with RESOURCE_EXHAUSTED instead of the process being "
             "killed."},
    {.env = "BOOKS_MAX_CONNECTION_IDLE_MS",
     .flag = "--max-connection-idle-ms",
     .arg = "MS",
     .type = SETTING_INT,
     .offset = FIELD(max_connection_idle_ms),
     .min = 0,
     .max = 86400000,
     .def = "300000",
     .help = "A client connection with no call for this many milliseconds is closed (GOAWAY); 0 "
             "keeps idle connections open."},
    {.env = "BOOKS_MAX_CONNECTION_AGE_MS",
     .flag = "--max-connection-age-ms",
     .arg = "MS",
     .type = SETTING_INT,
     .offset = FIELD(max_connection_age_ms),
     .min = 0,
     .max = 86400000,
     .def = "1800000",
     .help = "A client connection older than this many milliseconds (plus or minus 10%) is asked to "
             "reconnect (GOAWAY), its calls in flight get 60 s more; 0 means no age limit."},
    {.env = "BOOKS_MAX_METADATA_BYTES",
     .flag = "--max-metadata-bytes",
     .arg = "BYTES",
     .type = SETTING_INT,
     .offset = FIELD(max_metadata_bytes),
     .min = 1024,
     .max = 1048576,
     .def = "8192",
     .help = "Largest header list (request metadata) a call may send, in bytes; a call with more "
             "fails with RESOURCE_EXHAUSTED."},
    {.env = "GOOGLE_CLOUD_PROJECT",
     .flag = "--project",
     .arg = "ID",
     .type = SETTING_PROJECT,
     .offset = FIELD(project),
     .def = "",
     .help = "Google Cloud project id. With it, a call that carries trace context (traceparent or "
             "x-cloud-trace-context) is logged with logging.googleapis.com/trace, so Cloud Logging "
             "shows it under its trace."},
    {.env = "BOOKS_LOG_LEVEL",
     .flag = "--log-level",
     .arg = "LEVEL",
     .type = SETTING_LOG_LEVEL,
     .offset = FIELD(log_level),
     .def = "info",
     .help = "Lowest severity written to the JSON log on stdout."},
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* Flags that ask for something other than serving. They take no value. */
static const struct action_flag {
    const char *flag;
    const char *short_flag; /* or NULL */
    enum config_action action;
    const char *help;
} action_flags[] = {
    {"--help", "-h", CONFIG_HELP, "Print this help and exit."},
    {"--help-markdown", NULL, CONFIG_HELP_MARKDOWN,
     "Print the settings as the Markdown table in README.md and exit."},
    {"--version", "-V", CONFIG_VERSION, "Print the version and exit."},
};

#define N_ACTION_FLAGS (sizeof action_flags / sizeof action_flags[0])

/* A user's value made safe to print inside double quotes on a terminal: at most 48 bytes of it,
 * with quotes, backslashes and non-printable bytes shown as escapes. */
static void quote_value(char *out, size_t outlen, const char *v)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;
    for (i = 0; v[i] != '\0' && o + 5 < outlen && i < 48; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xF];
        } else {
            out[o++] = (char)c; /* UTF-8 bytes pass: the terminal shows them */
        }
    }
    if (v[i] != '\0' && o + 4 <= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* What a setting accepts, as a phrase that follows "expected" or "Accepts". */
static void describe_accepted(const struct setting *s, char *out, size_t outlen)
{
    switch (s->type) {
    case SETTING_INT:
        snprintf(out, outlen, "an integer from %ld to %ld", s->min, s->max);
        return;
    case SETTING_STRING:
        snprintf(out, outlen, "a non-empty string");
        return;
    case SETTING_LOG_LEVEL:
        snprintf(out, outlen, "one of debug, info, warning, error");
        return;
    case SETTING_PROJECT:
        snprintf(out, outlen, "a project id (lowercase letters, digits, '-', '.', ':'; starting "
                 "with a letter; at most 100 characters) or nothing");
        return;
    }
    abort(); /* a row with a type this switch does not know */
}

/* Strict decimal: digits only (no sign, blanks, base prefix or suffix), no overflow, in bounds. */
static bool parse_int(const char *v, long min, long max, long *out)
{
    unsigned long n = 0;
    if (*v == '\0')
        return false;
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9')
            return false;
        unsigned digit = (unsigned)(*v - '0');
        /* Past max is wrong however many digits follow; stopping here also rules out overflow. */
        if (digit > (unsigned long)max || n > ((unsigned long)max - digit) / 10)
            return false;
        n = n * 10 + digit;
    }
    if ((long)n < min)
        return false;
    *out = (long)n;
    return true;
}

/* A Google Cloud project id as it may appear in "projects/ID/traces/...": lowercase letters,
 * digits and hyphens (plus '.' and ':' of legacy domain-scoped ids), starting with a letter. The
 * empty string means "not set". Nothing else can reach a log line through it. */
static bool valid_project(const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return true;
    if (n > 100 || v[0] < 'a' || v[0] > 'z')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-' ||
              v[i] == '.' || v[i] == ':'))
            return false;
    return true;
}

/* Stores `value` into the setting's field of cfg. `name` is how the user wrote the setting (the
 * environment variable or the flag), for the error message. */
static int set_value(struct books_config *cfg, const struct setting *s, const char *value,
                     const char *name, char *err, size_t errlen)
{
    void *field = (char *)cfg + s->offset;
    bool ok = false;
    long n;
    enum log_level level;

    switch (s->type) {
    case SETTING_INT:
        ok = parse_int(value, s->min, s->max, &n);
        if (ok)
            *(int *)field = (int)n;
        break;
    case SETTING_STRING:
    case SETTING_PROJECT:
        ok = s->type == SETTING_STRING ? *value != '\0' : valid_project(value);
        if (ok) {
            char *copy = strdup(value);
            if (copy == NULL) {
                books_format_err(err, errlen, "out of memory while reading %s", name);
                return BOOKS_ENOMEM;
            }
            free(*(char **)field);
            *(char **)field = copy;
        }
        break;
    case SETTING_LOG_LEVEL:
        ok = log_level_parse(value, &level) == 0;
        if (ok)
            *(int *)field = (int)level;
        break;
    }
    if (!ok) {
        char shown[256], accepted[160];
        quote_value(shown, sizeof shown, value);
        describe_accepted(s, accepted, sizeof accepted);
        books_format_err(err, errlen, "%s=\"%s\" is not valid: expected %s", name, shown, accepted);
        return BOOKS_EINVAL;
    }
    return 0;
}

static const struct setting *find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strlen(settings[i].flag) == len && memcmp(settings[i].flag, arg, len) == 0)
            return &settings[i];
    return NULL;
}

static const struct action_flag *find_action(const char *arg)
{
    for (size_t i = 0; i < N_ACTION_FLAGS; i++) {
        const struct action_flag *a = &action_flags[i];
        if (strcmp(arg, a->flag) == 0 || (a->short_flag && strcmp(arg, a->short_flag) == 0))
            return a;
    }
    return NULL;
}

/* The value of "NAME=value" in envp, as getenv() would find it (the first match), or NULL. */
static const char *env_lookup(char *const envp[], const char *name)
{
    size_t len = strlen(name);
    if (envp == NULL)
        return NULL;
    for (size_t i = 0; envp[i] != NULL; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/* "--flag value" takes the next argument as the value unless it looks like a flag itself: then
 * the user most likely forgot the value, and "--store --port 80" should say so rather than store
 * books at "--port". "--flag=--odd" still passes such a value. */
static bool takes_next(int i, int argc, char *const argv[])
{
    return i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0;
}

/* The first action flag in argv, walking it as the parser does (a flag's separate value is not
 * mistaken for a flag), or CONFIG_RUN. */
static enum config_action scan_action(int argc, char *const argv[])
{
    for (int i = 1; i < argc; i++) {
        const struct action_flag *a = find_action(argv[i]);
        if (a != NULL)
            return a->action;
        if (strchr(argv[i], '=') == NULL && find_flag(argv[i], strlen(argv[i])) != NULL &&
            takes_next(i, argc, argv))
            i++;
    }
    return CONFIG_RUN;
}

static int load_defaults(struct books_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        int rc = set_value(cfg, &settings[i], settings[i].def, settings[i].env, err, errlen);
        if (rc == BOOKS_EINVAL)
            abort(); /* a default outside its own bounds: the table is wrong */
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int load_env(struct books_config *cfg, char *const envp[], char *err, size_t errlen)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = env_lookup(envp, settings[i].env);
        /* VAR= is how shells and container specs spell "not set"; treat it so. */
        if (v == NULL || *v == '\0')
            continue;
        int rc = set_value(cfg, &settings[i], v, settings[i].env, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int load_flags(struct books_config *cfg, int argc, char *const argv[], char *err,
                      size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (arg[0] == '-' && arg[1] != '\0')
                books_format_err(err, errlen, "unknown option \"%s\" (see --help)", arg);
            else
                books_format_err(err, errlen,
                        "unexpected argument \"%s\": settings are given as --flag=value "
                        "(see --help)",
                        arg);
            return BOOKS_EINVAL;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const struct setting *s = find_flag(arg, name_len);
        if (s == NULL && eq != NULL) {
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)name_len, arg);
            if (find_action(name) != NULL) {
                books_format_err(err, errlen, "%s takes no value", name);
                return BOOKS_EINVAL;
            }
        }
        if (s == NULL) {
            books_format_err(err, errlen, "unknown option \"%.*s\" (see --help)", (int)name_len, arg);
            return BOOKS_EINVAL;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (takes_next(i, argc, argv)) {
            value = argv[++i];
        } else {
            char accepted[160];
            describe_accepted(s, accepted, sizeof accepted);
            books_format_err(err, errlen, "%s needs a value: %s=%s, %s", s->flag, s->flag, s->arg, accepted);
            return BOOKS_EINVAL;
        }
        int rc = set_value(cfg, s, value, s->flag, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Order of business: an action flag (--help, --help-markdown, --version) anywhere in argv wins and
 * nothing else is validated, because someone asking for help with a broken command line or
 * environment should get the help, not one more error; the first such flag decides. cfg then
 * holds the defaults. Otherwise every value is validated, including environment values a flag
 * overrides: a typo in the environment is reported rather than silently masked. On failure cfg
 * is zeroed, so it holds nothing to free whatever the caller put in it; *action is untouched. */
int config_load(struct books_config *cfg, int argc, char *const argv[], char *const envp[],
                enum config_action *action, char *err, size_t errlen)
{
    struct books_config tmp = {0};
    enum config_action act = argv != NULL ? scan_action(argc, argv) : CONFIG_RUN;
    int rc = load_defaults(&tmp, err, errlen);
    if (rc == 0 && act == CONFIG_RUN)
        rc = load_env(&tmp, envp, err, errlen);
    if (rc == 0 && act == CONFIG_RUN && argv != NULL)
        rc = load_flags(&tmp, argc, argv, err, errlen);
    if (rc != 0) {
        config_cleanup(&tmp);
        memset(cfg, 0, sizeof *cfg);
        return rc;
    }
    *cfg = tmp;
    *action = act;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    return 0;
}

void config_cleanup(struct books_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].type == SETTING_STRING || settings[i].type == SETTING_PROJECT) {
            char **field = (char **)(void *)((char *)cfg + settings[i].offset);
            free(*field);
            *field = NULL;
        }
}

/* Prints `text` wrapped at 79 columns, each line indented by `indent` spaces. */
static void print_wrapped(FILE *f, int indent, const char *text)
{
    const int width = 79;
    int col = 0;
    while (*text != '\0') {
        size_t word = strcspn(text, " ");
        if (col > 0 && col + 1 + (int)word > width) {
            fputc('\n', f);
            col = 0;
        }
        if (col == 0) {
            fprintf(f, "%*s", indent, "");
            col = indent;
        } else {
            fputc(' ', f);
            col++;
        }
        fwrite(text, 1, word, f);
        col += (int)word;
        text += word;
        while (*text == ' ')
            text++;
    }
    if (col > 0)
        fputc('\n', f);
}

void config_print_help(FILE *f, const char *argv0)
{
    char line[512], accepted[160];
    fprintf(f,
            "Usage: %s [OPTION]...\n"
            "Serve the books.v1.BooksService gRPC API, logging JSON lines to stdout.\n"
            "\n"
            "Every setting comes from its flag (--flag=value or --flag value), else from its\n"
            "environment variable, else from its default.\n"
            "\n",
            argv0 != NULL ? argv0 : "books-server");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        describe_accepted(s, accepted, sizeof accepted);
        snprintf(line, sizeof line, "  %s=%s  (env %s, default %s)", s->flag, s->arg, s->env,
                 s->def[0] ? s->def : "none");
        if (strlen(line) <= 79)
            fprintf(f, "%s\n", line);
        else /* a long flag: its environment variable and default go on a line of their own */
            fprintf(f, "  %s=%s\n      (env %s, default %s)\n", s->flag, s->arg, s->env,
                    s->def[0] ? s->def : "none");
        snprintf(line, sizeof line, "%s Accepts %s.", s->help, accepted);
        print_wrapped(f, 6, line);
    }
    fputc('\n', f);
    for (size_t i = 0; i < N_ACTION_FLAGS; i++) {
        const struct action_flag *a = &action_flags[i];
        if (a->short_flag != NULL)
            fprintf(f, "  %s, %s\n", a->short_flag, a->flag);
        else
            fprintf(f, "  %s\n", a->flag);
        print_wrapped(f, 6, a->help);
    }
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

void config_print_markdown(FILE *f)
{
    char accepted[160];
    fputs("| setting | flag | default | meaning |\n", f);
    fputs("|---|---|---|---|\n", f);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        describe_accepted(s, accepted, sizeof accepted);
        if (s->def[0])
            fprintf(f, "| `%s` | `%s` | `%s` | ", s->env, s->flag, s->def);
        else
            fprintf(f, "| `%s` | `%s` | (none) | ", s->env, s->flag);
        print_cell(f, s->help);
        fputs(" Accepts ", f);
        print_cell(f, accepted);
        fputs(". |\n", f);
    }
}
