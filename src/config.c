/* config.c: the server's settings as one option table (options.h) and the messages it reports.
 * Each setting is one row (environment variable, flag, setter, bounds, offset into struct
 * books_config, default, help); the defaults, the environment, the flags, --help and the README's
 * Markdown table all walk the same rows, so adding a setting means adding a row and a field,
 * nothing else. Defaults are written as text and go through the same setter as user input, so a
 * default cannot be out of its own bounds. This module only reads its arguments: no getenv(), no
 * exit(), no printing except on request. */
#include "books/config.h"

#include "books/error.h"
#include "books/options.h"
#include "books/text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Tags: the settings (in the README's table), and the flags that ask for something else. */
#define SETTING 0x1u
#define ACTION 0x2u

#define FIELD(f) offsetof(struct books_config, f)

static int set_project(const struct opt *o, void *base, const char *value);

static const struct opt settings[] = {
    {.env = "PORT",
     .name = "port",
     .arg = "N",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(port),
     .min = 0,
     .max = 65535,
     .def = "8080",
     .help = "TCP port to listen on; 0 lets the kernel pick a free port (for tests)."},
    {.env = "BOOKS_STORE",
     .name = "store",
     .arg = "URI",
     .set = opt_set_string,
     .free = opt_free_string,
     .min = 1,
     .tags = SETTING,
     .offset = FIELD(store),
     .def = "memory:",
     .help = "Store URI. memory: keeps the books in this process; they are lost when it exits. "
             "sqlite:PATH (alias file:PATH) keeps them durably in a SQLite database file; "
             "parameters after ?, see Durability. postgresql://USER@HOST:PORT/DB (alias "
             "postgres://) keeps them in PostgreSQL, shared by any number of instances; see "
             "PostgreSQL. firestore://PROJECT[/DATABASE] keeps them in Cloud Firestore, shared "
             "and serverless; see Firestore."},
    {.env = "BOOKS_THREADS",
     .name = "threads",
     .arg = "N",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(threads),
     .min = 0,
     .max = 1024,
     .def = "0",
     .help = "Worker threads serving calls; 0 means one per CPU in the process's affinity mask."},
    {.env = "BOOKS_SHUTDOWN_GRACE_MS",
     .name = "shutdown-grace-ms",
     .arg = "MS",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(shutdown_grace_ms),
     .min = 0,
     .max = 600000,
     .def = "8000",
     .help = "Milliseconds that calls in flight get to finish after SIGTERM before they are "
             "cancelled."},
    {.env = "BOOKS_MAX_RECV_BYTES",
     .name = "max-recv-bytes",
     .arg = "BYTES",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(max_recv_bytes),
     .min = 1024,
     .max = 1073741824,
     .def = "4194304",
     .help = "Largest request message accepted, in bytes; a larger one fails with "
             "RESOURCE_EXHAUSTED."},
    {.env = "BOOKS_MAX_CONCURRENT_STREAMS",
     .name = "max-concurrent-streams",
     .arg = "N",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(max_concurrent_streams),
     .min = 1,
     .max = 65536,
     .def = "100",
     .help = "Most calls (HTTP/2 streams) a single client connection may have open at once."},
    {.env = "BOOKS_MEMORY_LIMIT_MB",
     .name = "memory-limit-mb",
     .arg = "MIB",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(memory_limit_mb),
     .min = 0,
     .max = 1048576,
     .def = "0",
     .help = "Memory this process may use, in MiB; 0 means the limit of its cgroup (Cloud Run sets "
             "it to the instance's memory), or 512 where there is none. Half of it is gRPC "
             "core's resource quota for connections and calls, a quarter bounds what the store "
             "keeps (the memory: store's books, the record caches) and an eighth what calls in "
             "flight hold; past them calls fail with RESOURCE_EXHAUSTED (store full) or "
             "UNAVAILABLE (overloaded) instead of the process being killed."},
    {.env = "BOOKS_REQUEST_ID_TTL_S",
     .name = "request-id-ttl-s",
     .arg = "SECONDS",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(request_id_ttl_s),
     .min = 1,
     .max = 2678400,
     .def = "86400",
     .help = "How long the store remembers a CreateBook request_id (AIP-155), in seconds: a retry "
             "within this time gets the book the first call made. Each costs about 100 bytes "
             "until then."},
    {.env = "BOOKS_MAX_CONNECTION_IDLE_MS",
     .name = "max-connection-idle-ms",
     .arg = "MS",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(max_connection_idle_ms),
     .min = 0,
     .max = 86400000,
     .def = "300000",
     .help = "A client connection with no call for this many milliseconds is closed (GOAWAY); 0 "
             "keeps idle connections open."},
    {.env = "BOOKS_MAX_CONNECTION_AGE_MS",
     .name = "max-connection-age-ms",
     .arg = "MS",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(max_connection_age_ms),
     .min = 0,
     .max = 86400000,
     .def = "1800000",
     .help = "A client connection older than this many milliseconds (plus or minus 10%) is asked to "
             "reconnect (GOAWAY), its calls in flight get 60 s more; 0 means no age limit."},
    {.env = "BOOKS_MAX_METADATA_BYTES",
     .name = "max-metadata-bytes",
     .arg = "BYTES",
     .set = opt_set_int,
     .tags = SETTING,
     .offset = FIELD(max_metadata_bytes),
     .min = 1024,
     .max = 1048576,
     .def = "65536",
     .help = "Largest request metadata a call may send, in bytes (each entry's name and value "
             "plus 32, as HTTP/2 counts a header list); a call with more fails alone with "
             "RESOURCE_EXHAUSTED (METADATA_TOO_LARGE). gRPC core is given twice this, at least "
             "128 KiB, as the connection's header list limit: past that, core closes the whole "
             "connection (see Operating it: request metadata)."},
    {.env = "GOOGLE_CLOUD_PROJECT",
     .name = "project",
     .arg = "ID",
     .set = set_project,
     .free = opt_free_string,
     .accepts = "a project id (lowercase letters, digits, '-', '.', ':'; starting with a "
                "letter; at most 100 characters) or nothing",
     .tags = SETTING,
     .offset = FIELD(project),
     .def = "",
     .help = "Google Cloud project id. With it, a call that carries trace context (traceparent or "
             "x-cloud-trace-context) is logged with logging.googleapis.com/trace, so Cloud Logging "
             "shows it under its trace."},
    {.env = "BOOKS_LOG_LEVEL",
     .name = "log-level",
     .arg = "LEVEL",
     .set = opt_set_choice,
     .choices = log_level_choices,
     .tags = SETTING,
     .offset = FIELD(log_level),
     .def = "info",
     .help = "Lowest severity written to the JSON log on stdout."},
    /* Flags that ask for something other than serving. They take no value. */
    {.name = "help",
     .short_name = 'h',
     .action = CONFIG_HELP,
     .tags = ACTION,
     .help = "Print this help and exit."},
    {.name = "help-markdown",
     .action = CONFIG_HELP_MARKDOWN,
     .tags = ACTION,
     .help = "Print the settings as the Markdown table in README.md and exit."},
    {.name = "version",
     .short_name = 'V',
     .action = CONFIG_VERSION,
     .tags = ACTION,
     .help = "Print the version and exit."},
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* A Google Cloud project id as it may appear in "projects/ID/traces/...": lowercase letters,
 * digits and hyphens (plus '.' and ':' of legacy domain-scoped ids), starting with a letter. The
 * empty string means "not set". Nothing else can reach a log line through it. */
static int set_project(const struct opt *o, void *base, const char *value)
{
    size_t n = strlen(value);
    if (n > 100 || (n > 0 && (value[0] < 'a' || value[0] > 'z')))
        return BOOKS_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!((value[i] >= 'a' && value[i] <= 'z') || (value[i] >= '0' && value[i] <= '9') ||
              value[i] == '-' || value[i] == '.' || value[i] == ':'))
            return BOOKS_EINVAL;
    return opt_set_string(o, base, value);
}

/* The messages, one per kind of problem. A setting is named as the user wrote it (the environment
 * variable or the flag); a bad value is shown escaped, so it cannot break the line or drive the
 * terminal. */
static void report(struct opt_parser *p, const struct opt_problem *pr)
{
    char shown[256], accepted[160];
    int n = (int)pr->name_len;
    switch (pr->kind) {
    case OPT_BAD_VALUE:
        opt_fail(p, BOOKS_EINVAL, "%.*s=\"%s\" is not valid: expected %s", n, pr->name,
                 text_quote(shown, sizeof shown, pr->value, TEXT_QUOTE_ESCAPE),
                 opt_describe(pr->o, accepted, sizeof accepted));
        return;
    case OPT_MISSING_VALUE:
        opt_fail(p, BOOKS_EINVAL, "--%s needs a value: --%s=%s, %s", pr->o->name, pr->o->name,
                 pr->o->arg, opt_describe(pr->o, accepted, sizeof accepted));
        return;
    case OPT_UNEXPECTED_VALUE:
        opt_fail(p, BOOKS_EINVAL, "%.*s takes no value", n, pr->name);
        return;
    case OPT_POSITIONAL:
        opt_fail(p, BOOKS_EINVAL,
                 "unexpected argument \"%s\": settings are given as --flag=value (see --help)",
                 pr->value);
        return;
    case OPT_UNKNOWN:
    case OPT_WRONG_TAG: /* every row is accepted: not reached */
    case OPT_REPEATED:  /* only query strings repeat */
        break;
    }
    opt_fail(p, BOOKS_EINVAL, "unknown option \"%.*s\" (see --help)", n, pr->name);
}

/* Order of business: an action flag (--help, --help-markdown, --version) anywhere in argv wins and
 * nothing else counts, because someone asking for help with a broken command line or environment
 * should get the help, not one more error; the first such flag decides. cfg then holds the
 * defaults. Otherwise every value is validated, including environment values a flag overrides: a
 * typo in the environment is reported rather than silently masked, and the first problem (the
 * environment's before the flags') is the one reported. On failure cfg is zeroed, so it holds
 * nothing to free whatever the caller put in it; *action is untouched. */
int config_load(struct books_config *cfg, int argc, char *const argv[], char *const envp[],
                enum config_action *action, char *err, size_t errlen)
{
    struct books_config tmp = {0};
    struct opt_parser p = {
        .opts = settings,
        .n_opts = N_SETTINGS,
        .base = &tmp,
        .tags = SETTING | ACTION,
        .flags = OPT_DASHED_VALUE_MISSING,
        .report = report,
        .err = err,
        .errlen = errlen,
    };

    opt_load_defaults(&p);
    opt_load_env(&p, envp);
    if (argv != NULL)
        opt_parse_argv(&p, argc, argv);
    if (p.action != 0 && p.rc != BOOKS_ENOMEM) {
        /* Start again from the defaults alone. */
        opt_cleanup(settings, N_SETTINGS, &tmp);
        memset(&tmp, 0, sizeof tmp);
        p.rc = 0;
        opt_load_defaults(&p);
    }
    if (p.rc != 0) {
        opt_cleanup(settings, N_SETTINGS, &tmp);
        memset(cfg, 0, sizeof *cfg);
        return p.rc;
    }
    *cfg = tmp;
    *action = p.action != 0 ? (enum config_action)p.action : CONFIG_RUN;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    return 0;
}

void config_cleanup(struct books_config *cfg)
{
    opt_cleanup(settings, N_SETTINGS, cfg);
}

static const struct opt_help_style help_style = {
    .width = 79,
    .indent = 6,
    .beside = false,
    .arg_sep = '=',
    .env = true,
    .accepts = true,
};

void config_print_help(FILE *f, const char *argv0)
{
    fprintf(f,
            "Usage: %s [OPTION]...\n"
            "Serve the books.v1.BooksService gRPC API, logging JSON lines to stdout.\n"
            "\n"
            "Every setting comes from its flag (--flag=value or --flag value), else from its\n"
            "environment variable, else from its default.\n"
            "\n",
            argv0 != NULL ? argv0 : "books-server");
    opt_print_help(f, settings, N_SETTINGS, SETTING, &help_style);
    fputc('\n', f);
    opt_print_help(f, settings, N_SETTINGS, ACTION, &help_style);
}

void config_print_markdown(FILE *f)
{
    opt_print_markdown(f, settings, N_SETTINGS, SETTING);
}
