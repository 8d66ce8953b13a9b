/* args.c: the `books` command line. Two tables drive it: the commands (name, synopsis, help) and
 * the options (an options.h table: flag, value placeholder, setter, where the value goes in struct
 * cli_args, which commands take it as tag bits, help). Parsing and --help both walk them, so an
 * option cannot be accepted without being documented, or documented for a command that rejects it.
 *
 * Parsing keeps going after the first problem only to find a --help or --version later on the
 * line (asking for help must work on a command line that is still wrong); the first problem is
 * the one reported. Required book fields are deliberately not checked here: the server validates
 * CreateBook and reports every bad field at once, and one set of rules is easier to keep right
 * than two. The environment (PORT, BOOKS_TOKEN) is read only where a flag did not decide, after
 * the command line, so a bad variable a flag overrides is no error. */
#include "books/cli.h"

#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/options.h"
#include "books/text.h"

#define DEFAULT_PORT 8080
#define MAX_TIMEOUT_S 86400
#define HELP_WIDTH 80
#define HELP_INDENT 24

#define STR(x) STR_(x)
#define STR_(x) #x

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
     "or missing one; nothing is checked here. Each create carries a fresh request_id (AIP-155), "
     "and a call that ends UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN or ABORTED (the store's "
     "conflict with another write) is retried with the same one (--retries times, waiting 0.1 s, "
     "then twice as long each time, at most 2 s): the server answers a retry with the book the "
     "first attempt made, so a reply lost on the way makes no second book. A create that still "
     "fails prints its request_id; --request-id ID retries it later."},
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

/* An option's tags are the commands that take it; CLI_NO_COMMAND's bit is "before the command". */
#define CMD(c) (1u << (c))
#define EVERY_COMMAND (CMD(CLI_NO_COMMAND) | CMD(CLI_CREATE) | CMD(CLI_GET) | CMD(CLI_LIST))
#define ARG(field) offsetof(struct cli_args, field)

static int set_seconds(const struct opt *o, void *base, const char *value);

static const struct opt options[] = {
    {.name = "id",
     .arg = "ID",
     .set = opt_set_borrowed,
     .offset = ARG(book_id),
     .tags = CMD(CLI_CREATE),
     .help = "The ID in the new book's name, books/ID (AIP-122): lowercase letters, digits and "
             "hyphens, starting with a letter, at most 63 characters; or a UUID4. Default: the "
             "server assigns a UUID4."},
    {.name = "title",
     .arg = "TITLE",
     .set = opt_set_borrowed,
     .offset = ARG(title),
     .tags = CMD(CLI_CREATE),
     .help = "The title (display_name)."},
    {.name = "author",
     .arg = "NAME",
     .set = opt_set_append,
     .free = opt_free_array,
     .offset = ARG(authors),
     .count_offset = ARG(n_authors),
     .tags = CMD(CLI_CREATE),
     .help = "An author. Repeat it for each author, in the order they are credited."},
    {.name = "publisher",
     .arg = "NAME",
     .set = opt_set_borrowed,
     .offset = ARG(publisher),
     .tags = CMD(CLI_CREATE),
     .help = "The publisher."},
    {.name = "request-id",
     .arg = "UUID",
     .set = opt_set_borrowed,
     .offset = ARG(request_id),
     .tags = CMD(CLI_CREATE),
     .help = "The request_id to send (AIP-155), e.g. the one a failed create printed, to retry "
             "it. Default: a fresh UUID4."},
    {.name = "retries",
     .arg = "N",
     .set = opt_set_int,
     .offset = ARG(retries),
     .min = 0,
     .max = 10,
     .def = "3",
     .tags = CMD(CLI_CREATE),
     .help = "Further attempts of a create that ends UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN or "
             "ABORTED, with the same request_id and growing waits (0.1 s doubling, at most 2 s). "
             "0: none. Default: 3."},
    {.name = "page-size",
     .arg = "N",
     .set = opt_set_int,
     .offset = ARG(page_size),
     .min = 0,
     .max = INT32_MAX,
     .accepts = "a whole number",
     .tags = CMD(CLI_LIST),
     .help = "Books per page. 0 (the default) lets the server choose (50); it returns at most "
             "1000."},
    {.name = "page-token",
     .arg = "TOKEN",
     .set = opt_set_borrowed,
     .offset = ARG(page_token),
     .tags = CMD(CLI_LIST),
     .help = "Print the page this token points to, as printed by an earlier 'books list'."},
    {.name = "all",
     .set = opt_set_switch,
     .offset = ARG(all),
     .tags = CMD(CLI_LIST),
     .help = "Print every book, following the page tokens to the last page."},
    {.name = "addr",
     .arg = "HOST:PORT",
     .set = opt_set_borrowed,
     .offset = ARG(addr),
     .tags = EVERY_COMMAND,
     .help = "The server. Default: localhost:$PORT, with PORT from the environment (default "
             "8080). A URL as Cloud Run prints it, https://NAME.run.app, means --tls and port "
             "443."},
    {.name = "tls",
     .set = opt_set_switch,
     .offset = ARG(tls),
     .tags = EVERY_COMMAND,
     .help = "Use TLS, checking the server's certificate against the system's roots. For a "
             "deployed service, e.g. Cloud Run: --tls --addr NAME.run.app:443."},
    {.name = "token",
     .arg = "TOKEN",
     .set = opt_set_borrowed,
     .offset = ARG(token),
     .tags = EVERY_COMMAND,
     .help = "Send \"authorization: Bearer TOKEN\" with each call. Default: $BOOKS_TOKEN. A "
             "private Cloud Run service takes an identity token: --token \"$(gcloud auth "
             "print-identity-token)\"."},
    {.name = "insecure-token",
     .set = opt_set_switch,
     .offset = ARG(insecure_token),
     .tags = EVERY_COMMAND,
     .help = "Send --token (or $BOOKS_TOKEN) over a plaintext connection to a host that is not "
             "this machine, where anyone on the network path can read it and use it. Without "
             "this, a token goes only over TLS or to a loopback address (localhost, 127.0.0.0/8, "
             "::1, unix:), as gRPC's own call credentials require; to an ipv4: or ipv6: list "
             "(ipv4:127.0.0.1:8080,127.0.0.2:8080) only when every address in it is one."},
    {.name = "timeout",
     .arg = "SECONDS",
     .set = set_seconds,
     .offset = ARG(timeout_ms),
     .max = MAX_TIMEOUT_S,
     .def = "10",
     .accepts = "a number of seconds above 0 and at most " STR(MAX_TIMEOUT_S) " (e.g. 10 or 2.5)",
     .tags = EVERY_COMMAND,
     .help = "The deadline of each call, in seconds (fractions allowed). Default: 10."},
    {.name = "json",
     .set = opt_set_switch,
     .offset = ARG(json),
     .tags = EVERY_COMMAND,
     .help = "Print results as proto3 JSON on stdout, and errors as AIP-193 JSON on stderr."},
    {.name = "help",
     .short_name = 'h',
     .action = CLI_HELP,
     .tags = EVERY_COMMAND,
     .help = "Print the help and exit."},
    {.name = "version",
     .short_name = 'V',
     .action = CLI_VERSION,
     .tags = EVERY_COMMAND,
     .help = "Print the version and exit."},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* ---- parsing ----------------------------------------------------------------------------- */

/* A user's text, safe to show inside quotes in a one-line message. */
#define Q(buf, s) text_quote(buf, sizeof buf, s, TEXT_QUOTE_ASCII)

/* What one cli_parse() collects besides struct cli_args (the opt_parser's self). */
struct parse {
    struct cli_args *args;
    const char *name;  /* get's NAME, as given */
    bool help_command; /* `books help [COMMAND]` */
};

/* Seconds as "10", "2.5" or ".25": more than 0 and at most o->max. Rounded up to whole
 * milliseconds, so a tiny timeout never becomes 0. No exponents, signs, "inf" or "nan". Stored as
 * int milliseconds. */
static int set_seconds(const struct opt *o, void *base, const char *value)
{
    size_t digits = 0, dots = 0;
    for (const char *s = value; *s; s++) {
        if (*s >= '0' && *s <= '9')
            digits++;
        else if (*s == '.')
            dots++;
        else
            return BOOKS_EINVAL;
    }
    if (!digits || dots > 1)
        return BOOKS_EINVAL;
    double seconds = strtod(value, NULL);
    if (!(seconds > 0) || seconds > (double)o->max)
        return BOOKS_EINVAL;
    double msd = seconds * 1000.0;
    int n = (int)msd;
    *(int *)(void *)((char *)base + o->offset) = n < msd ? n + 1 : n;
    return 0;
}

static const char *command_name(enum cli_command c)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (commands[i].command == c)
            return commands[i].name;
    return NULL;
}

static void report(struct opt_parser *p, const struct opt_problem *pr)
{
    const struct parse *st = p->self;
    const char *cmd = command_name(st->args->command);
    const struct opt *o = pr->o;
    char q[64], accepted[160];

    switch (pr->kind) {
    case OPT_UNKNOWN: {
        char flag[64];
        size_t len = pr->name_len < 40 ? pr->name_len : 40;
        snprintf(flag, sizeof flag, "%.*s", (int)len, pr->name);
        if (cmd)
            opt_fail(p, BOOKS_EINVAL, "unknown option '%s' for 'books %s'; see 'books %s --help'",
                     Q(q, flag), cmd, cmd);
        else
            opt_fail(p, BOOKS_EINVAL, "unknown option '%s'; see 'books --help'", Q(q, flag));
        return;
    }
    case OPT_MISSING_VALUE:
        opt_fail(p, BOOKS_EINVAL, "--%s needs a value: --%s %s", o->name, o->name, o->arg);
        return;
    case OPT_UNEXPECTED_VALUE:
        opt_fail(p, BOOKS_EINVAL, "--%s takes no value (got \"%s\")", o->name, Q(q, pr->value));
        return;
    case OPT_WRONG_TAG: {
        const char *owner = NULL;
        for (size_t c = 0; c < N_COMMANDS && !owner; c++)
            if (o->tags & CMD(commands[c].command))
                owner = commands[c].name;
        if (cmd)
            opt_fail(p, BOOKS_EINVAL,
                     "--%s is not an option of 'books %s' (it belongs to 'books %s'); see "
                     "'books %s --help'",
                     o->name, cmd, owner, cmd);
        else
            opt_fail(p, BOOKS_EINVAL, "--%s is an option of 'books %s': put it after the command",
                     o->name, owner);
        return;
    }
    case OPT_BAD_VALUE:
        opt_fail(p, BOOKS_EINVAL, "--%s: expected %s, got \"%s\"", o->name,
                 opt_describe(o, accepted, sizeof accepted), Q(q, pr->value));
        return;
    case OPT_REPEATED:
    case OPT_POSITIONAL:
        break;
    }
    abort(); /* the parser has a positional callback and walks no query string */
}

static void positional(struct opt_parser *p, const char *a)
{
    struct parse *st = p->self;
    struct cli_args *args = st->args;
    char q[64];

    if (args->command == CLI_NO_COMMAND) {
        const struct command *c = NULL;
        for (size_t i = 0; i < N_COMMANDS && !c; i++)
            if (strcmp(commands[i].name, a) == 0)
                c = &commands[i];
        if (c) {
            args->command = c->command;
            p->tags = CMD(c->command); /* from here on, that command's options */
        } else if (strcmp(a, "help") == 0 && !st->help_command) {
            st->help_command = true;
        } else {
            opt_fail(p, BOOKS_EINVAL,
                     "unknown command \"%s\"; the commands are create, get and list (see 'books "
                     "--help')",
                     Q(q, a));
        }
        return;
    }
    if (args->command == CLI_GET && !st->name) {
        st->name = a;
        return;
    }
    if (args->command == CLI_GET)
        opt_fail(p, BOOKS_EINVAL, "'books get' takes one NAME; unexpected extra argument \"%s\"",
                 Q(q, a));
    else
        opt_fail(p, BOOKS_EINVAL,
                 "'books %s' takes no arguments, only options; unexpected \"%s\" (see 'books %s "
                 "--help')",
                 command_name(args->command), Q(q, a), command_name(args->command));
}

/* Builds args->target from --addr, or from PORT when there is none. */
static int resolve_target(struct cli_args *args, char *const envp[], struct opt_parser *p)
{
    char q[64];
    const char *addr = args->addr, *rest = NULL, *default_port = NULL;
    size_t host_len, n;

    if (!addr) {
        const char *port = opt_getenv(envp, "PORT");
        long long v = DEFAULT_PORT;
        if (port && *port && text_parse_decimal(port, 1, 65535, &v) != 0) {
            opt_fail(p, BOOKS_EINVAL,
                     "PORT=\"%s\" in the environment is not a port (1 to 65535); fix it or pass "
                     "--addr HOST:PORT",
                     Q(q, port));
            return 0;
        }
        n = sizeof "localhost:65535";
        if (!(args->target = malloc(n)))
            return BOOKS_ENOMEM;
        snprintf(args->target, n, "localhost:%lld", v);
        return 0;
    }
    if (!*addr) {
        opt_fail(p, BOOKS_EINVAL, "--addr needs a value: --addr HOST:PORT");
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
        opt_fail(p, BOOKS_EINVAL, "--addr \"%s\": the URL has no host", Q(q, addr));
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

/* The port of an address in an ipv4: or ipv6: list: 1 to 5 digits, at most 65535. */
static bool is_list_port(const char *s, size_t n)
{
    long v = 0;
    if (n < 1 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535;
}

/* One address of an ipv4: or ipv6: target list (n bytes at s), in the forms of gRPC's naming doc
 * (doc/naming.md): IPv4 "A.B.C.D[:PORT]"; IPv6 "[ADDR][:PORT]" or "ADDR" (a port needs the
 * brackets). True when it is one of those and names this machine: 127.0.0.0/8, ::1 or
 * ::ffff:127.0.0.0/104. The address is read with inet_pton(3), as gRPC's resolver reads it;
 * anything else (a host name, a zone, a percent-escape, an empty entry) is false. */
static bool is_loopback_list_address(const char *s, size_t n, bool v6)
{
    char host[INET6_ADDRSTRLEN];
    const char *end = s + n, *h = s, *port = NULL;
    size_t host_len = n;

    if (!v6) {
        const char *colon = memchr(s, ':', n);
        if (colon) {
            host_len = (size_t)(colon - s);
            port = colon + 1;
        }
    } else if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        h = s + 1;
        host_len = (size_t)(close - h);
        if (close + 1 < end) {
            if (close[1] != ':')
                return false;
            port = close + 2;
        }
    }
    if (host_len == 0 || host_len >= sizeof host)
        return false;
    if (port && !is_list_port(port, (size_t)(end - port)))
        return false;
    memcpy(host, h, host_len);
    host[host_len] = '\0';
    if (!v6) {
        struct in_addr a;
        return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) != 1)
        return false;
    return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}

/* True when `target` (a gRPC target as resolve_target() made it) names only this machine:
 * localhost, 127.0.0.0/8, ::1, or unix sockets. An ipv4: or ipv6: target is a comma-separated list
 * of addresses (gRPC's naming doc), and every one of them must be loopback: gRPC may connect to any
 * of them. Otherwise *bad (*bad_len bytes) is what is not: the offending address of such a list,
 * else the whole target. */
static bool is_loopback_target(const char *t, const char **bad, size_t *bad_len)
{
    *bad = t;
    *bad_len = strlen(t);
    bool v6 = strncmp(t, "ipv6:", 5) == 0;
    if (v6 || strncmp(t, "ipv4:", 5) == 0) {
        /* Each address in the strict form is_loopback_list_address() knows: so nothing here is
         * read differently by gRPC's URI parser (no "//authority", no percent-escape that decodes
         * to a comma, no query). */
        for (const char *s = t + 5;; s++) {
            size_t n = strcspn(s, ",");
            if (!is_loopback_list_address(s, n, v6)) {
                *bad = s;
                *bad_len = n;
                return false;
            }
            s += n;
            if (!*s)
                return true;
        }
    }
    /* Every address of a unix: or unix-abstract: list is a socket on this machine. */
    if (strncmp(t, "unix:", 5) == 0 || strncmp(t, "unix-abstract:", 14) == 0)
        return true;
    if (strncmp(t, "dns:///", 7) == 0)
        t += 7;
    if (strncmp(t, "localhost", 9) == 0 && (t[9] == ':' || t[9] == '\0'))
        return true;
    if (strncmp(t, "[::1]", 5) == 0 && (t[5] == ':' || t[5] == '\0'))
        return true;
    if (strcmp(t, "::1") == 0)
        return true;
    if (strncmp(t, "127.", 4) == 0) {
        /* 127.a.b.c, each a decimal of 1-3 digits, then the port or the end */
        const char *p = t + 4;
        for (int part = 0; part < 3; part++) {
            size_t d = strspn(p, "0123456789");
            if (d < 1 || d > 3 || p[d] != (part < 2 ? '.' : p[d]))
                return false;
            p += d + (part < 2);
        }
        return *p == ':' || *p == '\0';
    }
    return false;
}

/* A bearer token goes into an HTTP/2 header: visible ASCII only. A token read from a file or a
 * command often ends in a newline, which this catches with a clear message. */
static void check_token(const char *token, const char *source, struct opt_parser *p)
{
    if (!*token) {
        opt_fail(p, BOOKS_EINVAL,
                 "%s is empty; pass a token (e.g. --token \"$(gcloud auth print-identity-token)\")",
                 source);
        return;
    }
    for (const unsigned char *s = (const unsigned char *)token; *s; s++) {
        if (*s <= 0x20 || *s >= 0x7f) {
            opt_fail(p, BOOKS_EINVAL,
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
    struct parse st = {.args = args};
    struct opt_parser p = {
        .opts = options,
        .n_opts = N_OPTIONS,
        .base = args,
        .tags = CMD(CLI_NO_COMMAND),
        .flags = OPT_DASHDASH_ENDS,
        .report = report,
        .positional = positional,
        .self = &st,
        .err = err,
        .errlen = errlen,
    };
    int rc = 0;

    memset(args, 0, sizeof *args);
    if (err && errlen)
        err[0] = '\0';
    /* Never NULL, even without --author: run_create hands it to protobuf-c as it is. */
    args->authors = calloc(1, sizeof *args->authors);
    if (!args->authors)
        return BOOKS_ENOMEM;
    opt_load_defaults(&p);
    opt_parse_argv(&p, argc, argv);
    if (p.rc == BOOKS_ENOMEM) {
        cli_args_cleanup(args);
        return BOOKS_ENOMEM;
    }

    if (p.action == CLI_HELP || st.help_command) {
        args->action = CLI_HELP;
        return 0;
    }
    if (p.action == CLI_VERSION) {
        args->action = CLI_VERSION;
        return 0;
    }
    if (!p.rc && args->command == CLI_NO_COMMAND)
        opt_fail(&p, BOOKS_EINVAL,
                 "missing command: books create, books get or books list (see 'books --help')");
    if (!p.rc && args->command == CLI_GET && !st.name)
        opt_fail(&p, BOOKS_EINVAL, "missing NAME: books get books/ID (see 'books get --help')");
    if (!p.rc) {
        if (args->token)
            check_token(args->token, "--token", &p);
        else if ((args->token = opt_getenv(envp, "BOOKS_TOKEN")) && !*args->token)
            args->token = NULL; /* an empty variable is an unset one */
        else if (args->token)
            check_token(args->token, "BOOKS_TOKEN", &p);
    }
    if (!p.rc)
        rc = resolve_target(args, envp, &p);
    const char *bad = NULL;
    size_t bad_len = 0;
    if (!rc && !p.rc && args->token && !args->tls && !args->insecure_token &&
        !is_loopback_target(args->target, &bad, &bad_len)) {
        /* The target is the user's --addr: quoted, like every echoed value; of a list, the
         * address that is not this machine, and the list. `one` holds that address, cut one byte
         * past what text_quote() shows, so that it still ends in "..." when cut. */
        char q[64], qlist[64], one[TEXT_QUOTE_MAX + 2];
        snprintf(one, sizeof one, "%.*s", (int)bad_len, bad);
        if (bad == args->target)
            opt_fail(&p, BOOKS_EINVAL,
                     "refusing to send the bearer token in plaintext to \"%s\", where anyone on "
                     "the way can read it: use --tls (or an https:// --addr), or --insecure-token "
                     "if this network is trusted",
                     Q(q, one));
        else
            opt_fail(&p, BOOKS_EINVAL,
                     "refusing to send the bearer token in plaintext to \"%s\" (an address of "
                     "\"%s\" that is not a loopback address), where anyone on the way can read "
                     "it: use --tls (or an https:// --addr), or --insecure-token if this network "
                     "is trusted",
                     Q(q, one), Q(qlist, args->target));
    }
    if (!rc && !p.rc && st.name) {
        /* A bare ID is the common case at a prompt; anything with a '/' goes as it is, and the
         * server says what is wrong with it. */
        size_t n = strlen(st.name) + sizeof "books/";
        if (!(args->name = malloc(n)))
            rc = BOOKS_ENOMEM;
        else
            snprintf(args->name, n, "%s%s", *st.name && !strchr(st.name, '/') ? "books/" : "",
                     st.name);
    }
    if (rc || p.rc) {
        cli_args_cleanup(args);
        return rc ? rc : p.rc;
    }
    return 0;
}

void cli_args_cleanup(struct cli_args *args)
{
    opt_cleanup(options, N_OPTIONS, args);
    free(args->target);
    free(args->name);
    memset(args, 0, sizeof *args);
}

/* ---- help -------------------------------------------------------------------------------- */

static const struct opt_help_style help_style = {
    .width = HELP_WIDTH,
    .indent = HELP_INDENT,
    .beside = true,
    .arg_sep = ' ',
};

/* The options of `commands_mask`: those of every command (global) or those of one command. */
static void print_options(FILE *f, unsigned commands_mask, bool global)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct opt *o = &options[i];
        if ((o->tags == EVERY_COMMAND) == global && (o->tags & commands_mask))
            opt_help_entry(f, o, &help_style);
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
        text_wrap(f, "A command-line client for the Books API (books.v1.BooksService, gRPC).", 0, 0,
                  HELP_WIDTH);
        fputs("\nCommands:\n", f);
        for (size_t i = 0; i < N_COMMANDS; i++)
            fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
        fputs("\nOptions:\n", f);
        print_options(f, EVERY_COMMAND, true);
        fputc('\n', f);
        text_wrap(f, exit_status_help, 0, 0, HELP_WIDTH);
        fputs("\nRun 'books COMMAND --help' for the options of a command.\n", f);
        return;
    }
    fprintf(f, "Usage: books %s %s [OPTIONS]\n\n", c->name, c->synopsis);
    text_wrap(f, c->help, 0, 0, HELP_WIDTH);
    fputc('\n', f);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].tags == CMD(c->command)) {
            fprintf(f, "Options of 'books %s':\n", c->name);
            print_options(f, CMD(c->command), false);
            fputc('\n', f);
            break;
        }
    }
    fputs("Options of every command:\n", f);
    print_options(f, CMD(c->command), true);
    fputc('\n', f);
    text_wrap(f, exit_status_help, 0, 0, HELP_WIDTH);
}

void cli_print_version(FILE *f)
{
    fprintf(f, "books %s (gRPC core %s)\n", BOOKS_VERSION, grpc_version_string());
}
