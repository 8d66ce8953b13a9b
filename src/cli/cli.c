/* cli.c: the `books` command line. Two tables drive it: the commands (name, synopsis, help) and
 * the options (flag, value placeholder, type, where the value goes in struct cli_args, which
 * commands take it, help). Parsing and --help both walk them, so an option cannot be accepted
 * without being documented, or documented for a command that rejects it.
 *
 * Parsing keeps going after the first problem only to find a --help or --version later on the
 * line (asking for help must work on a command line that is still wrong); the first problem is
 * the one reported. Required book fields are deliberately not checked here: the server validates
 * CreateBook and reports every bad field at once, and one set of rules is easier to keep right
 * than two.
 *
 * Output for people is one line per book, with control characters escaped so that a title cannot
 * break the one-book-per-line layout or send escape sequences to the terminal. JSON output is the
 * proto3 JSON mapping; every string goes through json_escape_append(). */
#include "books/cli.h"
#include "books/status.h"

#include <errno.h>
#include <grpc/grpc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "books/codec.h"
#include "books/error.h"
#include "books/json.h"

#define DEFAULT_PORT 8080
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_S 86400
#define USER_AGENT "books-cli/" BOOKS_VERSION
#define HELP_WIDTH 80
#define HELP_INDENT 24

/* ---- the tables -------------------------------------------------------------------------- */

static const struct command {
    const char *name;
    enum cli_command command;
    const char *synopsis; /* what follows "books NAME" in the usage line */
    const char *summary;  /* one line, for the list of commands */
    const char *help;     /* the paragraph of `books NAME --help` */
} commands[] = {
    {"create", CLI_CREATE,
     "[--id ID] --title TITLE --author NAME [--author NAME]... --publisher NAME", "Create a book.",
     "Creates a book (CreateBook) and prints it, with the resource name the server gave it. "
     "Without --id the server assigns a UUID4. The server checks every field and reports each bad "
     "or missing one; nothing is checked here."},
    {"get", CLI_GET, "NAME", "Get a book by its resource name.",
     "Gets one book (GetBook) and prints it. NAME is the book's resource name, books/ID; a bare "
     "ID (no '/') means books/ID."},
    {"list", CLI_LIST, "[--page-size N] [--page-token TOKEN] [--all]",
     "List books in resource-name order.",
     "Lists books (ListBooks) in resource-name order, one line each. Without --all it prints one "
     "page and, when there are more, the command for the next page on stderr; --all follows the "
     "page tokens to the end (each page is one call, with its own --timeout). With --json the "
     "output is one ListBooksResponse object; with --all it holds every book and no "
     "nextPageToken."},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

enum opt_type {
    OPT_SWITCH,    /* no value: sets a bool */
    OPT_STRING,    /* the value as given: a const char * into argv */
    OPT_AUTHOR,    /* appended to authors */
    OPT_PAGE_SIZE, /* a decimal int32 >= 0 */
    OPT_SECONDS,   /* a positive decimal number of seconds, stored as int milliseconds */
    OPT_HELP,      /* action flags: no value */
    OPT_VERSION,
};

#define CMD(c) (1u << (c))
#define EVERY_COMMAND (CMD(CLI_NO_COMMAND) | CMD(CLI_CREATE) | CMD(CLI_GET) | CMD(CLI_LIST))
#define ARG(field) offsetof(struct cli_args, field)

static const struct option {
    const char *flag;
    const char *short_flag; /* or NULL */
    const char *arg;        /* the value's placeholder in --help; NULL: the option takes none */
    enum opt_type type;
    size_t offset;     /* of the field in struct cli_args (unused for OPT_AUTHOR, actions) */
    unsigned commands; /* CMD() bits of the commands that take it */
    const char *help;
} options[] = {
    {"--id", NULL, "ID", OPT_STRING, ARG(book_id), CMD(CLI_CREATE),
     "The ID in the new book's name, books/ID (AIP-122): lowercase letters, digits and hyphens, "
     "starting with a letter, at most 63 characters; or a UUID4. Default: the server assigns a "
     "UUID4."},
    {"--title", NULL, "TITLE", OPT_STRING, ARG(title), CMD(CLI_CREATE),
     "The title (display_name)."},
    {"--author", NULL, "NAME", OPT_AUTHOR, 0, CMD(CLI_CREATE),
     "An author. Repeat it for each author, in the order they are credited."},
    {"--publisher", NULL, "NAME", OPT_STRING, ARG(publisher), CMD(CLI_CREATE), "The publisher."},
    {"--page-size", NULL, "N", OPT_PAGE_SIZE, ARG(page_size), CMD(CLI_LIST),
     "Books per page. 0 (the default) lets the server choose (50); it returns at most 1000."},
    {"--page-token", NULL, "TOKEN", OPT_STRING, ARG(page_token), CMD(CLI_LIST),
     "Print the page this token points to, as printed by an earlier 'books list'."},
    {"--all", NULL, NULL, OPT_SWITCH, ARG(all), CMD(CLI_LIST),
     "Print every book, following the page tokens to the last page."},
    {"--addr", NULL, "HOST:PORT", OPT_STRING, ARG(addr), EVERY_COMMAND,
     "The server. Default: localhost:$PORT, with PORT from the environment (default 8080). A URL "
     "as Cloud Run prints it, https://NAME.run.app, means --tls and port 443."},
    {"--tls", NULL, NULL, OPT_SWITCH, ARG(tls), EVERY_COMMAND,
     "Use TLS, checking the server's certificate against the system's roots. For a deployed "
     "service, e.g. Cloud Run: --tls --addr NAME.run.app:443."},
    {"--token", NULL, "TOKEN", OPT_STRING, ARG(token), EVERY_COMMAND,
     "Send \"authorization: Bearer TOKEN\" with each call. Default: $BOOKS_TOKEN. A private Cloud "
     "Run service takes an identity token: --token \"$(gcloud auth print-identity-token)\"."},
    {"--timeout", NULL, "SECONDS", OPT_SECONDS, ARG(timeout_ms), EVERY_COMMAND,
     "The deadline of each call, in seconds (fractions allowed). Default: 10."},
    {"--json", NULL, NULL, OPT_SWITCH, ARG(json), EVERY_COMMAND,
     "Print results as proto3 JSON on stdout, and errors as AIP-193 JSON on stderr."},
    {"--help", "-h", NULL, OPT_HELP, 0, EVERY_COMMAND, "Print the help and exit."},
    {"--version", "-V", NULL, OPT_VERSION, 0, EVERY_COMMAND, "Print the version and exit."},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* ---- parsing ----------------------------------------------------------------------------- */

/* The state of one cli_parse(): the first problem found, and what the line asked for. */
struct parse {
    char *err;
    size_t errlen;
    bool failed;
    bool help, version;
};

static void fail(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct parse *p, const char *fmt, ...)
{
    va_list ap;
    if (p->failed)
        return;
    p->failed = true;
    if (!p->err || !p->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
}

/* A user's text, safe to show inside quotes in a one-line message. */
#define Q(buf, s) books_error_quote(buf, sizeof buf, s)

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static const char *command_name(enum cli_command c)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (commands[i].command == c)
            return commands[i].name;
    return NULL;
}

static const struct option *find_option(const char *a, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        if ((strlen(o->flag) == len && strncmp(o->flag, a, len) == 0) ||
            (o->short_flag && strlen(o->short_flag) == len && strncmp(o->short_flag, a, len) == 0))
            return o;
    }
    return NULL;
}

static const char *env_get(char *const envp[], const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

/* Strict decimal in [0, max]: digits only, no sign, no blanks, no overflow. */
static bool parse_uint(const char *v, unsigned long max, unsigned long *out)
{
    unsigned long n = 0;
    if (!*v)
        return false;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return false;
        unsigned long d = (unsigned long)(*v - '0');
        if (n > (max - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

/* Seconds as "10", "2.5" or ".25": more than 0 and at most MAX_TIMEOUT_S. Rounded up to whole
 * milliseconds, so a tiny timeout never becomes 0. No exponents, signs, "inf" or "nan". */
static bool parse_seconds(const char *v, int *ms)
{
    size_t digits = 0, dots = 0;
    for (const char *s = v; *s; s++) {
        if (*s >= '0' && *s <= '9')
            digits++;
        else if (*s == '.')
            dots++;
        else
            return false;
    }
    if (!digits || dots > 1)
        return false;
    double seconds = strtod(v, NULL);
    if (!(seconds > 0) || seconds > MAX_TIMEOUT_S)
        return false;
    double msd = seconds * 1000.0;
    int n = (int)msd;
    *ms = n < msd ? n + 1 : n;
    return true;
}

/* Stores one option's value. */
static void apply(struct cli_args *args, const struct option *o, const char *value, struct parse *p)
{
    char q[64];
    char *field = (char *)args + o->offset;
    unsigned long n;

    switch (o->type) {
    case OPT_SWITCH:
        *(bool *)field = true;
        return;
    case OPT_STRING:
        *(const char **)field = value;
        return;
    case OPT_AUTHOR:
        args->authors[args->n_authors++] = value;
        return;
    case OPT_PAGE_SIZE:
        if (!parse_uint(value, INT32_MAX, &n))
            fail(p, "%s: expected a whole number from 0 to %d, got \"%s\"", o->flag, INT32_MAX,
                 Q(q, value));
        else
            *(int32_t *)field = (int32_t)n;
        return;
    case OPT_SECONDS:
        if (!parse_seconds(value, (int *)field))
            fail(p,
                 "%s: expected a number of seconds above 0 and at most %d (e.g. 10 or 2.5), "
                 "got \"%s\"",
                 o->flag, MAX_TIMEOUT_S, Q(q, value));
        return;
    case OPT_HELP:
    case OPT_VERSION:
        break;
    }
    abort(); /* action flags never get here */
}

static void parse_option(struct cli_args *args, int argc, char *const argv[], int *i,
                         struct parse *p)
{
    char q[64];
    const char *a = argv[*i];
    /* Only long options take "=VALUE"; "-h=x" is simply unknown. */
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    const struct option *o = find_option(a, len);
    const char *value = NULL;
    const char *cmd = command_name(args->command);

    if (!o) {
        char flag[64];
        snprintf(flag, sizeof flag, "%.*s", (int)(len < 40 ? len : 40), a);
        if (cmd)
            fail(p, "unknown option '%s' for 'books %s'; see 'books %s --help'", Q(q, flag), cmd,
                 cmd);
        else
            fail(p, "unknown option '%s'; see 'books --help'", Q(q, flag));
        return;
    }
    if (o->arg) {
        if (eq)
            value = eq + 1;
        else if (*i + 1 < argc)
            value = argv[++*i];
        else {
            fail(p, "%s needs a value: %s %s", o->flag, o->flag, o->arg);
            return;
        }
    } else if (eq) {
        fail(p, "%s takes no value (got \"%s\")", o->flag, Q(q, eq + 1));
        return;
    }
    if (o->type == OPT_HELP || o->type == OPT_VERSION) {
        /* The first of them wins, as it would if each exited at once. */
        if (!p->help && !p->version)
            *(o->type == OPT_HELP ? &p->help : &p->version) = true;
        return;
    }
    if (!(o->commands & CMD(args->command))) {
        const char *owner = NULL;
        for (size_t c = 0; c < N_COMMANDS && !owner; c++)
            if (o->commands & CMD(commands[c].command))
                owner = commands[c].name;
        if (cmd)
            fail(p,
                 "%s is not an option of 'books %s' (it belongs to 'books %s'); see "
                 "'books %s --help'",
                 o->flag, cmd, owner, cmd);
        else
            fail(p, "%s is an option of 'books %s': put it after the command", o->flag, owner);
        return;
    }
    apply(args, o, value, p);
}

static void parse_positional(struct cli_args *args, const char *a, const char **name,
                             bool *help_command, struct parse *p)
{
    char q[64];
    if (args->command == CLI_NO_COMMAND) {
        const struct command *c = find_command(a);
        if (c) {
            args->command = c->command;
        } else if (strcmp(a, "help") == 0 && !*help_command) {
            *help_command = true; /* `books help [COMMAND]` */
        } else {
            fail(p,
                 "unknown command \"%s\"; the commands are create, get and list (see 'books "
                 "--help')",
                 Q(q, a));
        }
        return;
    }
    if (args->command == CLI_GET && !*name) {
        *name = a;
        return;
    }
    if (args->command == CLI_GET)
        fail(p, "'books get' takes one NAME; unexpected extra argument \"%s\"", Q(q, a));
    else
        fail(p,
             "'books %s' takes no arguments, only options; unexpected \"%s\" (see 'books %s "
             "--help')",
             command_name(args->command), Q(q, a), command_name(args->command));
}

/* Builds args->target from --addr, or from PORT when there is none. */
static int resolve_target(struct cli_args *args, char *const envp[], struct parse *p)
{
    char q[64];
    const char *addr = args->addr, *rest = NULL, *default_port = NULL;
    size_t host_len, n;

    if (!addr) {
        const char *port = env_get(envp, "PORT");
        unsigned long v = DEFAULT_PORT;
        if (port && *port && (!parse_uint(port, 65535, &v) || v == 0)) {
            fail(p,
                 "PORT=\"%s\" in the environment is not a port (1 to 65535); fix it or pass "
                 "--addr HOST:PORT",
                 Q(q, port));
            return 0;
        }
        n = sizeof "localhost:65535";
        if (!(args->target = malloc(n)))
            return BOOKS_ENOMEM;
        snprintf(args->target, n, "localhost:%lu", v);
        return 0;
    }
    if (!*addr) {
        fail(p, "--addr needs a value: --addr HOST:PORT");
        return 0;
    }
    if (strncmp(addr, "https://", 8) == 0) {
        rest = addr + 8;
        default_port = "443";
        args->tls = true;
    } else if (strncmp(addr, "http://", 7) == 0) {
        rest = addr + 7;
        default_port = "80";
    } else {
        /* host:port, or any other gRPC target ("unix:/path", "dns:///host:port"): as given. */
        return (args->target = strdup(addr)) ? 0 : BOOKS_ENOMEM;
    }
    /* A URL: keep the authority, drop any path, add the scheme's port when none is given. */
    host_len = strcspn(rest, "/?#");
    if (host_len == 0) {
        fail(p, "--addr \"%s\": the URL has no host", Q(q, addr));
        return 0;
    }
    const char *bracket = memchr(rest, ']', host_len);
    const char *after_host = bracket ? bracket + 1 : rest;
    bool has_port = memchr(after_host, ':', host_len - (size_t)(after_host - rest)) != NULL;
    n = host_len + 1 + strlen(default_port) + 1;
    if (!(args->target = malloc(n)))
        return BOOKS_ENOMEM;
    if (has_port)
        snprintf(args->target, n, "%.*s", (int)host_len, rest);
    else
        snprintf(args->target, n, "%.*s:%s", (int)host_len, rest, default_port);
    return 0;
}

/* A bearer token goes into an HTTP/2 header: visible ASCII only. A token read from a file or a
 * command often ends in a newline, which this catches with a clear message. */
static void check_token(const char *token, const char *source, struct parse *p)
{
    if (!*token) {
        fail(p, "%s is empty; pass a token (e.g. --token \"$(gcloud auth print-identity-token)\")",
             source);
        return;
    }
    for (const unsigned char *s = (const unsigned char *)token; *s; s++) {
        if (*s <= 0x20 || *s >= 0x7f) {
            fail(p,
                 "%s holds a character a bearer token cannot have (byte 0x%02x at offset %zu: "
                 "only visible ASCII, no spaces or newlines)",
                 source, *s, (size_t)((const char *)s - token));
            return;
        }
    }
}

int cli_parse(struct cli_args *args, int argc, char *const argv[], char *const envp[], char *err,
              size_t errlen)
{
    struct parse p = {.err = err, .errlen = errlen};
    const char *name = NULL;
    bool options_done = false, help_command = false;
    int rc = 0;

    memset(args, 0, sizeof *args);
    if (err && errlen)
        err[0] = '\0';
    args->timeout_ms = DEFAULT_TIMEOUT_MS;
    /* Room for every argument to be an author: no reallocation while parsing. */
    args->authors = calloc(argc > 0 ? (size_t)argc : 1, sizeof *args->authors);
    if (!args->authors)
        return BOOKS_ENOMEM;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0)
            options_done = true;
        else if (!options_done && a[0] == '-' && a[1] != '\0')
            parse_option(args, argc, argv, &i, &p);
        else
            parse_positional(args, a, &name, &help_command, &p);
    }

    if (p.help || help_command) {
        args->action = CLI_HELP;
        return 0;
    }
    if (p.version) {
        args->action = CLI_VERSION;
        return 0;
    }
    if (!p.failed && args->command == CLI_NO_COMMAND)
        fail(&p, "missing command: books create, books get or books list (see 'books --help')");
    if (!p.failed && args->command == CLI_GET && !name)
        fail(&p, "missing NAME: books get books/ID (see 'books get --help')");
    if (!p.failed) {
        if (args->token)
            check_token(args->token, "--token", &p);
        else if ((args->token = env_get(envp, "BOOKS_TOKEN")) && !*args->token)
            args->token = NULL; /* an empty variable is an unset one */
        else if (args->token)
            check_token(args->token, "BOOKS_TOKEN", &p);
    }
    if (!p.failed)
        rc = resolve_target(args, envp, &p);
    if (!rc && !p.failed && name) {
        /* A bare ID is the common case at a prompt; anything with a '/' goes as it is, and the
         * server says what is wrong with it. */
        size_t n = strlen(name) + sizeof "books/";
        if (!(args->name = malloc(n)))
            rc = BOOKS_ENOMEM;
        else
            snprintf(args->name, n, "%s%s", *name && !strchr(name, '/') ? "books/" : "", name);
    }
    if (rc || p.failed) {
        cli_args_cleanup(args);
        return rc ? rc : BOOKS_EINVAL;
    }
    return 0;
}

void cli_args_cleanup(struct cli_args *args)
{
    free(args->authors);
    free(args->target);
    free(args->name);
    memset(args, 0, sizeof *args);
}

/* ---- help -------------------------------------------------------------------------------- */

/* Writes `text` word-wrapped to HELP_WIDTH columns, every line but the first indented by
 * `indent` (the caller has already written `col` columns of the first). Quotes must pair up. */
static void wrap(FILE *f, const char *text, int indent, int col)
{
    const char *s = text;
    while (*s) {
        /* A "quoted phrase" is one word: a command to copy must not be split across lines. */
        size_t word = 0;
        for (bool quoted = false; s[word] && (quoted || s[word] != ' '); word++)
            if (s[word] == '"')
                quoted = !quoted;
        if (col > indent && col + 1 + (int)word > HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(s, 1, word, f);
        col += (int)word;
        s += word;
        while (*s == ' ')
            s++;
    }
    fputc('\n', f);
}

static void print_options(FILE *f, unsigned commands_mask, bool global)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        if ((o->commands == EVERY_COMMAND) != global || !(o->commands & commands_mask))
            continue;
        char head[64];
        int n =
            snprintf(head, sizeof head, "  %s%s%s%s%s", o->short_flag ? o->short_flag : "",
                     o->short_flag ? ", " : "", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        fputs(head, f);
        if (n >= HELP_INDENT - 1) {
            fprintf(f, "\n%*s", HELP_INDENT, "");
            n = HELP_INDENT;
        } else {
            fprintf(f, "%*s", HELP_INDENT - n, "");
            n = HELP_INDENT;
        }
        wrap(f, o->help, HELP_INDENT, n);
    }
}

static const char exit_status_help[] =
    "Exit status: 0 on success; 1 when the call failed (the status code, message and field "
    "violations are printed on stderr); 2 for a usage error.";

void cli_print_help(FILE *f, enum cli_command command)
{
    const struct command *c = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (commands[i].command == command)
            c = &commands[i];
    if (!c) {
        fputs("Usage: books [OPTIONS] COMMAND [ARGS]\n\n", f);
        wrap(f, "A command-line client for the Books API (books.v1.BooksService, gRPC).", 0, 0);
        fputs("\nCommands:\n", f);
        for (size_t i = 0; i < N_COMMANDS; i++)
            fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
        fputs("\nOptions:\n", f);
        print_options(f, EVERY_COMMAND, true);
        fputc('\n', f);
        wrap(f, exit_status_help, 0, 0);
        fputs("\nRun 'books COMMAND --help' for the options of a command.\n", f);
        return;
    }
    fprintf(f, "Usage: books %s %s [OPTIONS]\n\n", c->name, c->synopsis);
    wrap(f, c->help, 0, 0);
    fputc('\n', f);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].commands == CMD(c->command)) {
            fprintf(f, "Options of 'books %s':\n", c->name);
            print_options(f, CMD(c->command), false);
            fputc('\n', f);
            break;
        }
    }
    fputs("Options of every command:\n", f);
    print_options(f, CMD(c->command), true);
    fputc('\n', f);
    wrap(f, exit_status_help, 0, 0);
}

void cli_print_version(FILE *f)
{
    fprintf(f, "books %s (gRPC core %s)\n", BOOKS_VERSION, grpc_version_string());
}

/* ---- output ------------------------------------------------------------------------------ */

/* A growable buffer for one JSON document (or one line of it). */
struct jbuf {
    char *data;
    size_t len, cap;
    bool oom;
};

static void jb_reserve(struct jbuf *b, size_t more)
{
    if (b->oom || more <= b->cap - b->len)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap - b->len < more)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return;
    }
    b->data = d;
    b->cap = cap;
}

static void jb_raw(struct jbuf *b, const char *s)
{
    size_t n = strlen(s);
    jb_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void jb_str(struct jbuf *b, const char *s)
{
    size_t n = strlen(s);
    /* An escape is at most six bytes per input byte ("\u00XX", "\ufffd"), so with this much room
     * json_escape_append() always writes the whole string. */
    jb_reserve(b, 6 * n + 2);
    if (b->oom)
        return;
    b->data[b->len++] = '"';
    json_escape_append(b->data, &b->len, b->len + 6 * n, s, n);
    b->data[b->len++] = '"';
}

static void jb_int(struct jbuf *b, long v)
{
    char num[24];
    snprintf(num, sizeof num, "%ld", v);
    jb_raw(b, num);
}

/* Writes and empties the buffer; BOOKS_ENOMEM when building it ran out of memory. */
static int jb_flush(struct jbuf *b, FILE *f)
{
    if (b->oom)
        return BOOKS_ENOMEM;
    fwrite(b->data, 1, b->len, f);
    b->len = 0;
    return 0;
}

static void jb_free(struct jbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* proto3 JSON of a Book. Every field is written, even when empty, so scripts can rely on the
 * keys; proto3 JSON parsers accept fields at their default values. */
static void json_book(struct jbuf *b, const Books__V1__Book *book)
{
    jb_raw(b, "{\"name\":");
    jb_str(b, book->name);
    jb_raw(b, ",\"displayName\":");
    jb_str(b, book->display_name);
    jb_raw(b, ",\"authors\":[");
    for (size_t i = 0; i < book->n_authors; i++) {
        if (i)
            jb_raw(b, ",");
        jb_str(b, book->authors[i]);
    }
    jb_raw(b, "],\"publisher\":");
    jb_str(b, book->publisher);
    jb_raw(b, "}");
}

/* Text for a terminal: backslash, control characters (C0, DEL, and C1 as UTF-8) and, inside
 * quotes, '"' are escaped, so a value stays on its line and cannot drive the terminal. Strings
 * reached us through codec_decode(), which accepts only valid UTF-8. */
static void put_text(FILE *f, const char *s, bool quoted)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '\\' || (quoted && c == '"')) {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else if (c == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fprintf(f, "\\u%04x", p[1]);
            p++;
        } else {
            fputc(c, f);
        }
    }
}

static void print_book_line(FILE *f, const Books__V1__Book *book)
{
    put_text(f, book->name, false);
    fputs("  \"", f);
    put_text(f, book->display_name, true);
    fputc('"', f);
    if (book->n_authors) {
        fputs("  by ", f);
        for (size_t i = 0; i < book->n_authors; i++) {
            if (i)
                fputs(", ", f);
            put_text(f, book->authors[i], false);
        }
    }
    if (*book->publisher) {
        fputs("  (", f);
        put_text(f, book->publisher, false);
        fputc(')', f);
    }
    fputc('\n', f);
}

int cli_print_book(FILE *f, const Books__V1__Book *book, bool json)
{
    struct jbuf b = {0};
    int rc;
    if (!json) {
        print_book_line(f, book);
        return 0;
    }
    json_book(&b, book);
    jb_raw(&b, "\n");
    rc = jb_flush(&b, f);
    jb_free(&b);
    return rc;
}

/* The AIP-193 JSON error: google.rpc.Status in the shape Google's HTTP APIs return it. */
static void json_error(struct jbuf *b, const struct client_error *err)
{
    const struct books_error *d = &err->detail;
    bool first = true;
    jb_raw(b, "{\"error\":{\"code\":");
    jb_int(b, (long)err->status);
    jb_raw(b, ",\"status\":");
    jb_str(b, rpc_status_name(err->status));
    jb_raw(b, ",\"message\":");
    jb_str(b, d->message);
    jb_raw(b, ",\"details\":[");
    if (d->reason) {
        jb_raw(b, "{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":");
        jb_str(b, d->reason);
        jb_raw(b, ",\"domain\":");
        jb_str(b, BOOKS_ERROR_DOMAIN);
        jb_raw(b, ",\"metadata\":{");
        if (d->meta_key) {
            jb_str(b, d->meta_key);
            jb_raw(b, ":");
            jb_str(b, d->meta_value);
        }
        jb_raw(b, "}}");
        first = false;
    }
    if (d->n_violations) {
        jb_raw(b, first ? "" : ",");
        jb_raw(b, "{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":[");
        for (size_t i = 0; i < d->n_violations; i++) {
            jb_raw(b, i ? ",{\"field\":" : "{\"field\":");
            jb_str(b, d->violations[i].field);
            jb_raw(b, ",\"description\":");
            jb_str(b, d->violations[i].description);
            jb_raw(b, "}");
        }
        jb_raw(b, "]}");
        first = false;
    }
    if (d->resource_type) {
        jb_raw(b, first ? "" : ",");
        jb_raw(b, "{\"@type\":\"type.googleapis.com/google.rpc.ResourceInfo\",\"resourceType\":");
        jb_str(b, d->resource_type);
        jb_raw(b, ",\"resourceName\":");
        jb_str(b, d->resource_name);
        jb_raw(b, "}");
    }
    jb_raw(b, "]}}\n");
}

int cli_print_error(FILE *f, const struct client_error *err, bool json)
{
    const struct books_error *d = &err->detail;
    if (json) {
        struct jbuf b = {0};
        json_error(&b, err);
        int rc = jb_flush(&b, f);
        jb_free(&b);
        return rc;
    }
    fputs(rpc_status_name(err->status), f);
    if (d->message[0]) {
        fputs(": ", f);
        put_text(f, d->message, false);
    }
    fputc('\n', f);
    for (size_t i = 0; i < d->n_violations; i++) {
        fputs("  ", f);
        put_text(f, d->violations[i].field, false);
        fputs(": ", f);
        put_text(f, d->violations[i].description, false);
        fputc('\n', f);
    }
    if (d->n_dropped)
        fprintf(f, "  (%zu more field violations not shown)\n", d->n_dropped);
    return 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

static int out_of_memory(struct client_error *err)
{
    err->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
    books_error_set(&err->detail, BOOKS_ENOMEM, NULL, "out of memory");
    return BOOKS_ENOMEM;
}

static int run_get(struct client *c, const struct cli_args *a, struct arena *arena, FILE *out,
                   struct client_error *err)
{
    Books__V1__Book *book = NULL;
    int rc = client_get_book(c, a->name, arena, &book, err);
    if (rc)
        return rc;
    rc = cli_print_book(out, book, a->json);
    codec_free_request(&book->base, arena);
    return rc ? out_of_memory(err) : 0;
}

static int run_create(struct client *c, const struct cli_args *a, struct arena *arena, FILE *out,
                      struct client_error *err)
{
    Books__V1__Book in = BOOKS__V1__BOOK__INIT, *book = NULL;
    in.display_name = (char *)(a->title ? a->title : "");
    in.n_authors = a->n_authors;
    in.authors = (char **)a->authors;
    in.publisher = (char *)(a->publisher ? a->publisher : "");
    int rc = client_create_book(c, &in, a->book_id, arena, &book, err);
    if (rc)
        return rc;
    rc = cli_print_book(out, book, a->json);
    codec_free_request(&book->base, arena);
    return rc ? out_of_memory(err) : 0;
}

/* One page, or with --all every page, each page one call. Pages are printed as they arrive, so
 * memory stays one page whatever the size of the collection; the arena is reset between pages
 * (the next token is copied out first). */
static int run_list(struct client *c, const struct cli_args *a, struct arena *arena, FILE *out,
                    FILE *errf, struct client_error *err)
{
    struct jbuf b = {0};
    char *token = NULL;
    size_t total = 0;
    int rc = 0;

    if (a->page_token && !(token = strdup(a->page_token)))
        return out_of_memory(err);
    for (bool first = true;; first = false) {
        Books__V1__ListBooksResponse *resp = NULL;
        rc = client_list_books(c, a->page_size, token, arena, &resp, err);
        if (rc)
            break;
        const char *next = resp->next_page_token;
        bool last = !a->all || !*next;
        if (a->json) {
            if (first)
                jb_raw(&b, "{\"books\":[");
            for (size_t i = 0; i < resp->n_books; i++) {
                if (total + i)
                    jb_raw(&b, ",");
                json_book(&b, resp->books[i]);
            }
            if (last) {
                jb_raw(&b, "]");
                if (*next) {
                    jb_raw(&b, ",\"nextPageToken\":");
                    jb_str(&b, next);
                }
                jb_raw(&b, "}\n");
            }
            rc = jb_flush(&b, out);
        } else {
            for (size_t i = 0; i < resp->n_books; i++)
                print_book_line(out, resp->books[i]);
        }
        total += resp->n_books;
        if (!rc && last && !a->json) {
            if (total == 0)
                fputs("no books\n", errf);
            if (*next) {
                /* Where people look, but not in the way of `books list | wc -l`. */
                fputs("next page: books list", errf);
                if (a->page_size)
                    fprintf(errf, " --page-size %d", (int)a->page_size);
                fputs(" --page-token ", errf);
                put_text(errf, next, false);
                fputc('\n', errf);
            }
        }
        if (!rc && !last && token && strcmp(token, next) == 0) {
            /* A server that hands back the token it was given would keep --all going forever. */
            err->status = GRPC_STATUS_INTERNAL;
            books_error_set(&err->detail, BOOKS_EINTERNAL, NULL,
                            "the server returned the page token it was sent; stopping --all");
            rc = BOOKS_EINTERNAL;
        }
        char *copy = rc || last ? NULL : strdup(next);
        codec_free_request(&resp->base, arena);
        if (rc || last)
            break;
        if (!copy) {
            rc = out_of_memory(err);
            break;
        }
        free(token);
        token = copy;
        arena_reset(arena);
    }
    if (rc == BOOKS_ENOMEM && err->status == GRPC_STATUS_OK)
        rc = out_of_memory(err);
    free(token);
    jb_free(&b);
    return rc;
}

/* Next steps for the failures people meet first. Not with --json: stderr is then one JSON object.
 */
static void print_hint(FILE *f, const struct cli_args *a, const struct client_error *err)
{
    if (err->detail.reason)
        return; /* the server itself answered, and its message says what to fix */
    switch (err->status) {
    case GRPC_STATUS_UNAVAILABLE:
        fprintf(f,
                "hint: no server answered at %s (%s); check --addr%s and that the server is "
                "running\n",
                a->target, a->tls ? "TLS" : "plaintext", a->tls ? " and --tls" : "");
        break;
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_PERMISSION_DENIED:
        if (!a->token)
            fputs("hint: a private Cloud Run service needs an identity token: --token "
                  "\"$(gcloud auth print-identity-token)\" (or BOOKS_TOKEN)\n",
                  f);
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        fprintf(f, "hint: no answer within %.3g s; a longer --timeout may help\n",
                a->timeout_ms / 1000.0);
        break;
    default:
        break;
    }
}

int cli_run(const struct cli_args *args, FILE *out, FILE *errf)
{
    struct client_options opts = {
        .target = args->target,
        .tls = args->tls,
        .token = args->token,
        .timeout_ms = args->timeout_ms,
        .user_agent = USER_AGENT,
    };
    struct client *c = NULL;
    struct client_error err;
    struct arena arena;
    unsigned char arena_buf[16384];
    int rc, status = CLI_EXIT_OK;

    rc = client_new(&opts, &c);
    if (rc) {
        /* cli_parse() checked everything client_new() checks; only memory can be short. */
        fprintf(errf, "books: cannot set up a client for %s: %s\n", args->target,
                books_err_name(rc));
        return CLI_EXIT_FAILED;
    }
    arena_init(&arena, arena_buf, sizeof arena_buf);
    books_error_init(&err.detail, &arena);
    err.status = GRPC_STATUS_OK;
    switch (args->command) {
    case CLI_CREATE:
        rc = run_create(c, args, &arena, out, &err);
        break;
    case CLI_GET:
        rc = run_get(c, args, &arena, out, &err);
        break;
    case CLI_LIST:
        rc = run_list(c, args, &arena, out, errf, &err);
        break;
    case CLI_NO_COMMAND:
        abort(); /* cli_parse() never returns CLI_RUN without a command */
    }
    if (rc) {
        /* Whatever the page(s) before printed goes out before the error. */
        fflush(out);
        if (cli_print_error(errf, &err, args->json) != 0)
            fprintf(errf, "%s: %s\n", rpc_status_name(err.status), err.detail.message);
        if (!args->json)
            print_hint(errf, args, &err);
        status = CLI_EXIT_FAILED;
    }
    arena_cleanup(&arena);
    client_free(c);
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(errf, "books: cannot write the output: %s\n", strerror(errno));
        status = CLI_EXIT_FAILED;
    }
    return status;
}
