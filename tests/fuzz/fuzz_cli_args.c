/* fuzz_cli_args: cli_parse() of the `books` command line and environment, then
 * cli_args_cleanup(). The input is split into argv and envp as fuzz_common.h says
 * (fuzz_args_build: byte 0 mod 64 strings are argv[1..], the rest envp; NUL-separated; argv[0] is
 * "books").
 * Properties: on success with CLI_RUN, a command is set and everything client_new() will check
 * holds already (cli_run() relies on it: "cli_parse() checked everything client_new() checks"): a
 * non-empty target, a positive timeout, a token of visible ASCII or none; GET has its name; at
 * most argc authors. On failure *args is zeroed and err holds a one-line message. */
#include <string.h>

#include "books/cli.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_args a;
    struct cli_args args, zero;
    char err[CLI_ERR_BYTES];
    int rc;

    fuzz_args_build(data, size, "books", &a);
    memset(&args, 0x5a, sizeof args);
    memset(&zero, 0, sizeof zero);
    memset(err, 0x5a, sizeof err);
    rc = cli_parse(&args, a.argc, a.argv, a.envp, err, sizeof err);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (rc == 0) {
        FUZZ_CHECK(args.action == CLI_RUN || args.action == CLI_HELP ||
                   args.action == CLI_VERSION);
        FUZZ_CHECK(args.authors != NULL && args.n_authors < (size_t)a.argc);
        if (args.action == CLI_RUN) {
            FUZZ_CHECK(args.command == CLI_CREATE || args.command == CLI_GET ||
                       args.command == CLI_LIST);
            FUZZ_CHECK(args.target != NULL && args.target[0] != '\0');
            FUZZ_CHECK(args.timeout_ms > 0 && args.timeout_ms <= 86400 * 1000);
            FUZZ_CHECK(args.page_size >= 0);
            if (args.token) {
                FUZZ_CHECK(args.token[0] != '\0');
                for (const unsigned char *p = (const unsigned char *)args.token; *p; p++)
                    FUZZ_CHECK(*p > 0x20 && *p < 0x7f);
            }
            if (args.command == CLI_GET)
                FUZZ_CHECK(args.name != NULL);
            else
                FUZZ_CHECK(args.name == NULL);
            FUZZ_CHECK(strchr(err, '\n') == NULL);
        }
    } else {
        FUZZ_CHECK(rc == BOOKS_EINVAL || rc == BOOKS_ENOMEM);
        FUZZ_CHECK(memcmp(&args, &zero, sizeof args) == 0);
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(strchr(err, '\n') == NULL); /* one line: every echoed value is quoted */
    }
    cli_args_cleanup(&args);
    fuzz_args_free(&a);
    return 0;
}
