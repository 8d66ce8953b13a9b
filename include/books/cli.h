/* cli.h: the `books` command line. Parsing (src/cli/args.c) turns argv and the environment into
 * struct cli_args, driven by one options.h table (flag, value, setter, which commands take it,
 * help), which also writes --help. Running a command (cli.c) calls the client and prints the
 * result (print.c) for people (one line per book) or as JSON for scripts. This module never exits
 * and never reads the environment itself: main passes it in.
 * Threads: cli_parse() walks argv with getopt_long(3), whose state is global: one thread at a
 * time (main's). The printing functions and cli_run() keep no state: any thread, each with its
 * own FILEs and arguments. */
#ifndef BOOKS_CLI_H
#define BOOKS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "books/client.h"

/* Exit statuses of `books` (also what cli_run() returns). FAILED: the call ended with a non-OK
 * status, or the output could not be written. USAGE: a bad command line or environment; a message
 * on stderr says what to fix. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILED 1
#define CLI_EXIT_USAGE 2

enum cli_command { CLI_NO_COMMAND = 0, CLI_CREATE, CLI_GET, CLI_LIST };

enum cli_action {
    CLI_RUN = 0, /* run args.command */
    CLI_HELP,    /* -h/--help (or `books help [COMMAND]`): cli_print_help(args.command) */
    CLI_VERSION, /* -V/--version: cli_print_version() */
};

/* Everything the command line said. Strings point into argv or envp unless marked owned. */
struct cli_args {
    enum cli_action action;
    enum cli_command command;
    /* Every command */
    const char *addr;  /* --addr as given, or NULL */
    char *target;      /* owned: the gRPC target, from --addr or localhost:$PORT */
    bool tls;          /* --tls, or an https:// --addr */
    const char *token; /* --token, else $BOOKS_TOKEN (when non-empty), else NULL */
    bool insecure_token; /* --insecure-token: a token may go in plaintext to another host */
    int timeout_ms;    /* --timeout SECONDS, in milliseconds; default 10000 */
    bool json;         /* --json */
    /* create */
    const char *book_id;   /* --id, or NULL: the server assigns a UUID4 */
    const char *request_id; /* --request-id, or NULL: a fresh UUID4 per create (AIP-155) */
    int retries;           /* --retries: further attempts after UNAVAILABLE, DEADLINE_EXCEEDED,
                            * UNKNOWN or ABORTED, with the same request_id; default 3 */
    const char *title;     /* --title, or NULL (the server reports it missing) */
    const char *publisher; /* --publisher, or NULL */
    const char **authors;  /* owned array (not the strings): each --author, in order */
    size_t n_authors;
    /* get */
    char *name; /* owned: the NAME argument; a bare ID ("hobbit") becomes "books/hobbit" */
    /* list */
    int32_t page_size;      /* --page-size, >= 0; 0: the server's default */
    const char *page_token; /* --page-token, or NULL: the first page */
    bool all;               /* --all: follow next_page_token to the last page */
};

#define CLI_ERR_BYTES 512

/* Parses argv[1..argc-1] with `envp` (NULL-terminated "NAME=value" strings, like environ; PORT
 * and BOOKS_TOKEN are read from it). Options may come before or after the command, as "--flag
 * VALUE" or "--flag=VALUE"; a later single-valued option overrides an earlier one; "--" ends the
 * options; "--flag VALUE" takes the next argument whatever it is (so "--author -dash" works);
 * short flags are whole arguments ("-h", never "-hV"); long flags are named exactly (no
 * abbreviations). When -h/--help or -V/--version appears anywhere (or `books help [COMMAND]`),
 * returns 0 with that action and nothing else validated. Returns 0 with *args filled (free with
 * cli_args_cleanup(); args->authors is never NULL then), or BOOKS_EINVAL with a one-line message
 * naming the option or argument to fix in err (errlen bytes; the first problem on the line) and
 * *args zeroed, or BOOKS_ENOMEM. argv and envp are only read, and must outlive *args. */
int cli_parse(struct cli_args *args, int argc, char *const argv[], char *const envp[], char *err,
              size_t errlen);

/* Frees what args owns. Safe on a zeroed struct; leaves it zeroed. */
void cli_args_cleanup(struct cli_args *args);

/* The usage text: the general one for CLI_NO_COMMAND, else that command's. */
void cli_print_help(FILE *f, enum cli_command command);

/* "books VERSION (gRPC core VERSION)". */
void cli_print_version(FILE *f);

/* Runs args->command (action CLI_RUN): results on `out`, errors and hints on `errf`. Returns an
 * exit status rather than an enum books_err, because that is all main does with it:
 * CLI_EXIT_OK, or CLI_EXIT_FAILED after printing the failure. */
int cli_run(const struct cli_args *args, FILE *out, FILE *errf);

/* Output formats, exposed for tests. A book: one line "NAME  \"TITLE\"  by A, B  (PUBLISHER)" with
 * control characters, backslashes (and quotes in the title) escaped, or with `json` one proto3
 * JSON object (lowerCamelCase names, every field present) and a newline. Returns 0 or
 * BOOKS_ENOMEM. */
int cli_print_book(FILE *f, const Books__V1__Book *book, bool json);

/* A failed call: "STATUS: message" and one "  field: description" line per field violation, or
 * with `json` the AIP-193 JSON error object {"error":{"code","status","message","details"}}.
 * Returns 0 or BOOKS_ENOMEM. */
int cli_print_error(FILE *f, const struct client_error *err, bool json);

#endif
