/* books_main.c: wiring only for the `books` command-line client. argv and the environment ->
 * cli_parse -> help, version or cli_run -> exit status: 0 success, 1 the call failed, 2 usage
 * error (see cli.h). */
#include <grpc/support/log.h>
#include <stdio.h>
#include <stdlib.h>

#include "books/cli.h"
#include "books/error.h"

extern char **environ;

/* gRPC core writes its own ERROR lines to stderr (e.g. each failed TLS handshake) before the call
 * fails with a status that says the same; the CLI reports that status once, in its own format
 * (and with --json stderr must stay one JSON object). */
static void drop_core_log(gpr_log_func_args *args)
{
    (void)args;
}

int main(int argc, char **argv)
{
    struct cli_args args;
    char err[CLI_ERR_BYTES];
    int status;

    /* Setting either variable asks for core's diagnostics: then they are left alone. */
    if (!getenv("GRPC_VERBOSITY") && !getenv("GRPC_TRACE"))
        gpr_set_log_function(drop_core_log);
    switch (cli_parse(&args, argc, argv, environ, err, sizeof err)) {
    case 0:
        break;
    case BOOKS_EINVAL:
        fprintf(stderr, "books: %s\n", err);
        return CLI_EXIT_USAGE;
    default:
        fputs("books: out of memory\n", stderr);
        return CLI_EXIT_FAILED;
    }
    switch (args.action) {
    case CLI_HELP:
        cli_print_help(stdout, args.command);
        status = CLI_EXIT_OK;
        break;
    case CLI_VERSION:
        cli_print_version(stdout);
        status = CLI_EXIT_OK;
        break;
    default:
        status = cli_run(&args, stdout, stderr);
        break;
    }
    cli_args_cleanup(&args);
    if (fflush(stdout) != 0 && status == CLI_EXIT_OK) {
        perror("books: cannot write the output");
        status = CLI_EXIT_FAILED;
    }
    return status;
}
